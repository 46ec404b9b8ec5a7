--- moreau.repl — an interactive LuaJIT session with moreau loaded.
--
-- Line editing, tab completion and history come from GNU readline (Debian's
-- libreadline8; without it the session reads plain lines). In an interactive
-- session (its input a terminal) every line goes to the history file as it
-- is entered: $MOREAU_HISTORY, else ~/.moreau_history, capped at
-- repl.HISTORY_LINES lines; input from a pipe or a file (a script fed to the
-- REPL) neither reads nor writes the history. Expressions print their values;
-- sequences print in index order; tensors print their shape, device,
-- min/max/mean and a 2-D slice. `help(x)` shows the doc comment of a
-- function, the options of a method, a module's functions.
--
-- Ctrl-C at the prompt drops the line being typed (and an unfinished
-- multi-line chunk); during an evaluation it stops the running call with the
-- error "interrupted" and keeps the session and its variables. A C handler
-- (mr_interrupt_install_sigint) sets the engine's interrupt request; the
-- engine's long loops check it, and a debug hook checks it in Lua code. Code
-- typed at the prompt (and the functions it defines) runs in LuaJIT's
-- interpreter, because the JIT's compiled loops never call debug hooks;
-- library code stays compiled and stops at its next engine call.
--
--   moreau> net = models.pretrained 'resnet_fmnist'
--   moreau> x = data.normalize(data.get(data.fashion_mnist{split='test'}, 1), {0.286}, {0.353})
--   moreau> s = prox.solver(net, x, {9}, { reg = 'l1', T = 300, m = 8 })
--   moreau> s:step(); s
--   moreau> s:set { eta = 1e-2 }; for i = 1, 50 do s:step() end; s:stats(1)
local ffi = require 'ffi'
local core = require 'moreau.core'
local C = core.C

local repl = {}

--- Lines kept in the history file.
repl.HISTORY_LINES = 10000
--- Entries of a table printed before the rest is elided.
repl.MAX_ENTRIES = 24

-- ------------------------------------------------------------ printing

local function is_identifier(k)
  return type(k) == 'string' and k:match('^[%a_][%w_]*$') ~= nil
end

-- Keys that are not the array part, in a stable order: numbers by value,
-- then strings, then anything else, each by its text.
local function key_order(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then
    local rank = { number = 1, string = 2 }
    return (rank[ta] or 3) < (rank[tb] or 3) or ((rank[ta] or 3) == (rank[tb] or 3) and ta < tb)
  end
  if ta == 'number' or ta == 'string' then return a < b end
  return tostring(a) < tostring(b)
end

--- A readable rendering of any value. Tables print their array part 1..n in
-- index order, then the other keys sorted; after repl.MAX_ENTRIES entries the
-- rest is elided with the count, `... (120 entries)`; tables inside tables
-- deeper than one level print as `{...}`.
function repl.pretty(v, depth)
  depth = depth or 0
  local T = require 'moreau.tensor'
  if T.is(v) then return tostring(v) end
  if type(v) == 'table' then
    local mt = getmetatable(v)
    if mt and mt.__tostring then return tostring(v) end
    if depth > 1 then return '{...}' end
    local n = 0
    while v[n + 1] ~= nil do n = n + 1 end
    local keys = {}
    for k in pairs(v) do
      if not (type(k) == 'number' and k >= 1 and k <= n and k == math.floor(k)) then keys[#keys + 1] = k end
    end
    table.sort(keys, key_order)
    local total = n + #keys
    if total == 0 then return '{}' end
    local parts = {}
    for i = 1, math.min(n, repl.MAX_ENTRIES) do parts[#parts + 1] = repl.pretty(v[i], depth + 1) end
    for _, k in ipairs(keys) do
      if #parts >= repl.MAX_ENTRIES then break end
      local key = is_identifier(k) and k or ('[' .. repl.pretty(k, 2) .. ']')
      parts[#parts + 1] = key .. ' = ' .. repl.pretty(v[k], depth + 1)
    end
    if total > #parts then parts[#parts + 1] = ('... (%d entries)'):format(total) end
    return '{ ' .. table.concat(parts, ', ') .. ' }'
  elseif type(v) == 'string' then
    return ('%q'):format(v)
  end
  return tostring(v)
end

-- ------------------------------------------------------------ completion

-- The fields a value offers after '.' or ':': its own string keys, then
-- those of the tables its metatables' __index chain reaches.
local function fields(v, methods_only)
  local out, seen = {}, {}
  local function add(t)
    for k, x in pairs(t) do
      if is_identifier(k) and not seen[k] and (not methods_only or type(x) == 'function')
          and k:sub(1, 2) ~= '__' then
        seen[k] = true
        out[#out + 1] = k
      end
    end
  end
  if type(v) == 'table' then add(v) end
  local mt = (type(v) == 'table' or type(v) == 'userdata' or type(v) == 'cdata') and getmetatable(v)
  if type(v) == 'string' then mt = getmetatable('') end
  for _ = 1, 8 do -- __index chains are short; the bound keeps a cycle finite
    if type(mt) ~= 'table' or type(mt.__index) ~= 'table' then break end
    add(mt.__index)
    mt = getmetatable(mt.__index)
  end
  return out
end

-- v[name] without calling anything: a raw field, or one of the tables its
-- metatables' __index chain reaches (an __index function is not called).
local function field(v, name)
  if type(v) == 'table' then
    local x = rawget(v, name)
    if x ~= nil then return x end
  end
  local mt = (type(v) == 'table' or type(v) == 'userdata' or type(v) == 'cdata') and getmetatable(v)
  for _ = 1, 8 do
    if type(mt) ~= 'table' or type(mt.__index) ~= 'table' then return nil end
    local x = rawget(mt.__index, name)
    if x ~= nil then return x end
    mt = getmetatable(mt.__index)
  end
end

--- Completions of `text` as trepl gives them: a global of env (or a Lua
-- keyword) for a plain name; a field after `a.b.`, a method after `a:`
-- (including the methods of the metatable's __index table). Only names are
-- looked up: nothing is called. ARGS: text (the word before the cursor),
-- env (the session's environment). RETURN: a sorted list of full words.
function repl.complete(text, env)
  local out = {}
  local path, sep, stem = text:match('^(.-)([%.:])([%w_]*)$')
  local candidates = {}
  if not path then
    stem = text
    candidates = fields(env) -- the session's names, then _G's (env's __index)
    for w in ('and break do else elseif end false for function goto if in local nil not or repeat return then true until while')
        :gmatch('%a+') do
      candidates[#candidates + 1] = w
    end
    path, sep = '', ''
  else
    if not path:match('^[%a_][%w_]*$') and not path:match('^[%a_][%w_]*[%.%w_]*[%w_]$') then return out end
    local v = env
    for name in path:gmatch('[^%.]+') do
      v = field(v, name)
      if v == nil then return out end
    end
    candidates = fields(v, sep == ':')
  end
  local seen = {}
  for _, k in ipairs(candidates) do
    if not seen[k] and k:sub(1, #stem) == stem then
      seen[k] = true
      out[#out + 1] = path .. sep .. k
    end
  end
  table.sort(out)
  return out
end

-- ------------------------------------------------------------ help

local source_lines = {}

local function lines_of(path)
  if source_lines[path] == nil then
    local f = io.open(path, 'rb')
    local t = false
    if f then
      t = {}
      for line in f:lines() do t[#t + 1] = line end
      f:close()
    end
    source_lines[path] = t
  end
  return source_lines[path] or nil
end

--- The doc comment of a Lua function: the contiguous comment lines
-- (`--`) just above the line that defines it (debug.getinfo's source file and linedefined),
-- with the dashes taken off, after the definition line itself.
-- RETURN: text, or nil and why not.
function repl.doc(fn)
  local info = debug.getinfo(fn, 'S')
  if info.what == 'C' then return nil, 'a built-in function (no Lua source)' end
  local src = info.source or ''
  if src:sub(1, 1) ~= '@' then return nil, 'a function typed at the prompt or loaded from a string' end
  local path = src:sub(2)
  local lines = lines_of(path)
  local where = ('%s:%d'):format(path, info.linedefined)
  if not lines or not lines[info.linedefined] then return nil, 'defined at ' .. where .. ' (source not readable)' end
  local doc = {}
  local i = info.linedefined - 1
  while i >= 1 and lines[i]:match('^%s*%-%-') do
    table.insert(doc, 1, (lines[i]:gsub('^%s*%-%-%-?%s?', '')))
    i = i - 1
  end
  local head = lines[info.linedefined]:gsub('^%s+', '')
  if #doc == 0 then return head .. '\n(no doc comment; defined at ' .. where .. ')' end
  return head .. '\n' .. table.concat(doc, '\n') .. '\n(' .. where .. ')'
end

-- The `@field name text` lines of the doc comment `@table <tag>` of a module
-- (text continued on the comment lines below, up to the next tag or the end
-- of the comment), into out[name] = text.
local function read_fields(module, tag, out)
  local path = package.searchpath(module, package.path)
  local lines = path and lines_of(path)
  if not lines then return out end
  local inside, name = false, nil
  for _, line in ipairs(lines) do
    local body = line:match('^%s*%-%-%-?%s?(.*)$')
    if not body then
      if inside then break end
    elseif body:match('^@table%s+' .. tag .. '%s*$') then
      inside = true
    elseif inside then
      local k, text = body:match('^@field%s+([%w_]+)%s+(.*)$')
      if k then
        name = k
        out[k] = text
      elseif body:match('^@') or not body:match('%S') then
        name = nil
      elseif name then
        out[name] = out[name] .. ' ' .. body
      end
    end
  end
  return out
end

--- What each option of a method means: the `@field` texts of its doc
-- comments, the method file's table `options` (moreau.methods.<name>) and
-- the shared `common_options` (moreau.methods.common), as the API reference
-- shows them. ARGS: name (a method's name). RETURN: { option = text }.
function repl.option_help(name)
  local out = read_fields('moreau.methods.common', 'common_options', {})
  return read_fields('moreau.methods.' .. name, 'options', out)
end

local function method_help(obj)
  local options = require 'moreau.options'
  local lines = { ('%s — %s'):format(obj.name, obj.doc or ''), 'options (the value in force, its domain, what it means):' }
  local names = {}
  for k in pairs(obj.opts) do names[#names + 1] = k end
  table.sort(names)
  local meaning = repl.option_help(obj.name)
  for _, k in ipairs(names) do
    local spec = obj.domains and obj.domains[k]
    local ok, d = pcall(options.domain, spec or 'any')
    local domain = spec and ok and d.text or ''
    lines[#lines + 1] = ('  %s = %s%s'):format(k, options.show(obj.opts[k]), domain ~= '' and ('  (' .. domain .. ')') or '')
    if meaning[k] then lines[#lines + 1] = '      ' .. meaning[k] end
  end
  lines[#lines + 1] = 'methods: explain(net, x, labels [, ids]), explain_vjp(net, x, labels, u [, ids]); ' ..
    'help(obj.explain) for more'
  return table.concat(lines, '\n')
end

--- Describes an object: a function's doc comment, a method's options, a
-- solver's state, a module's functions, a recipe file's parameters.
function repl.help(obj)
  if obj == nil then
    return [[
moreau REPL: the modules are loaded as globals: moreau, T (tensor), nn, models,
data, oracle, prox, methods, attacks, metrics, train, experiment, viz, report.
help(x) describes x:
  help(methods)              a module: its functions
  help(prox.solver)          a function: its doc comment (also help(x.sum), help(net.forward))
  help(methods.moreaugrad{}) a method: each option, its value, domain and meaning
  help(s)                    a solver's state (s = prox.solver(net, x, labels, opts))
  help('recipes/explain.lua') a recipe's parameters
Tab completes names and fields (x:<Tab> lists methods); Ctrl-C stops a running
call or drops the line being typed; Ctrl-D leaves.]]
  end
  if type(obj) == 'string' then
    local ok, r = pcall(require('moreau.recipe').load, obj)
    if ok then return require('moreau.recipe').help(r) end
    return 'no recipe at ' .. obj .. ': ' .. tostring(r)
  end
  if type(obj) == 'function' then
    local text, why = repl.doc(obj)
    return text or ('function: ' .. why)
  end
  if type(obj) == 'table' then
    if obj.name and obj.opts and obj.explain then return method_help(obj) end
    if obj.opts and obj.step then
      return tostring(obj) .. '\noptions: ' .. repl.pretty(obj.opts) ..
        '\nmethods: step(), run{callback=}, delta(), grad(), stats(n), set{rho=, eta=, gamma=}, result()'
    end
    local names = {}
    for _, k in ipairs(fields(obj)) do
      local ok, v = pcall(function() return obj[k] end)
      if ok and type(v) == 'function' and k:sub(1, 1) ~= '_' then names[#names + 1] = k end
    end
    table.sort(names)
    return 'functions: ' .. table.concat(names, ', ') .. '\n(help(x.name) shows one)'
  end
  return type(obj) .. ': ' .. tostring(obj)
end

-- ------------------------------------------------------------ evaluation

--- The environment of the session: moreau's modules as globals.
function repl.env()
  local moreau = require 'moreau'
  local env = setmetatable({}, { __index = _G })
  env.moreau = moreau
  for _, m in ipairs { 'tensor', 'nn', 'models', 'data', 'oracle', 'prox', 'methods', 'attacks', 'metrics',
    'train', 'experiment', 'viz', 'report' } do
    env[m] = moreau[m]
  end
  env.T = env.tensor
  env.help = function(x) print(repl.help(x)) end
  return env
end

-- Raises "interrupted" in Lua code while the engine's interrupt request is
-- pending: called by the count hook of an evaluation.
local function interrupt_hook()
  if C.mr_interrupted() ~= 0 then error('interrupted', 2) end
end

--- Evaluates one chunk in env. While it runs, a debug hook raises
-- "interrupted" every 1000 VM instructions if an interrupt is pending (the
-- chunk runs in the interpreter, where hooks are called: jit.off). RETURN:
-- ok, results (packed) or error message ("interrupted" when an interrupt
-- stopped it), incomplete (true when the chunk needs more lines).
function repl.eval(src, env)
  -- An expression prints its value; so does the last part of "statements; expression".
  local f, err = loadstring('return ' .. src, '=repl')
  if not f then
    local head, tail = src:match('^(.*);%s*([^;]-)%s*$')
    if head and tail ~= '' then f = loadstring(head .. '; return ' .. tail, '=repl') end
  end
  if not f then f, err = loadstring(src, '=repl') end
  if not f then
    return false, err, err:find("'<eof>'", 1, true) ~= nil
  end
  setfenv(f, env)
  jit.off(f, true)
  debug.sethook(interrupt_hook, '', 1000)
  local res = { pcall(f) }
  debug.sethook()
  if not res[1] then
    if C.mr_interrupted() ~= 0 then return false, 'interrupted' end
    return false, res[2]
  end
  return true, { n = select('#', unpack(res)) - 1, unpack(res, 2) }
end

-- ------------------------------------------------------------ input

--- The history file: $MOREAU_HISTORY, else ~/.moreau_history (nil without HOME).
function repl.history_path()
  local p = os.getenv('MOREAU_HISTORY')
  if p and p ~= '' then return p end
  local home = os.getenv('HOME')
  return home and (home .. '/.moreau_history') or nil
end

local EINTR = 4 -- Linux
local NEWLINE = 10

-- Readline's hooks: FFI callbacks, kept alive in this table for the session.
local anchors = {}

-- Sets up readline: our getc (so that Ctrl-C ends readline() with an empty
-- line instead of being lost in its read loop), completion over env, and
-- Lua's word breaks. RETURN: the readline library, or nil.
local function setup_readline(env)
  local rl = core.readline()
  if not rl then return nil end
  -- readline's own SIGINT handler would only redraw the line and resend the
  -- signal (readline manual, "Readline Signal Handling"); ours sets the
  -- interrupt request, and the getc below turns it into the end of the line.
  rl.rl_catch_signals = 0
  local byte = ffi.new('unsigned char[1]')
  local getc = function(stream)
    local fd = ffi.C.fileno(stream)
    while true do
      -- a press that came before read() began (read would not see it) or interrupted it
      if C.mr_interrupted() ~= 0 then
        rl.rl_replace_line('', 0)
        return NEWLINE
      end
      local n = ffi.C.read(fd, byte, 1)
      if n == 1 then return byte[0] end
      if n == 0 or ffi.errno() ~= EINTR then return -1 end
    end
  end
  jit.off(getc)
  anchors.getc = ffi.cast('rl_getc_func_t *', getc)
  rl.rl_getc_function = anchors.getc

  local matches, at = {}, 0
  local entry = function(_, state)
    if state == 0 then at = 0 end
    at = at + 1
    if matches[at] == nil then return nil end
    return ffi.C.strdup(matches[at]) -- readline frees it
  end
  local attempt = function(text)
    rl.rl_attempted_completion_over = 1 -- no file-name completion
    rl.rl_completion_append_character = 0
    local ok, list = pcall(repl.complete, ffi.string(text), env)
    matches = ok and list or {}
    if #matches == 0 then return nil end
    return rl.rl_completion_matches(text, anchors.entry)
  end
  jit.off(entry)
  jit.off(attempt)
  anchors.entry = ffi.cast('rl_compentry_func_t *', entry)
  anchors.attempt = ffi.cast('rl_completion_func_t *', attempt)
  rl.rl_attempted_completion_function = anchors.attempt
  -- a word ends at anything that cannot be inside a.b:c
  anchors.breaks = ffi.new('char[?]', 64, ' \t\n"\\\'`@$><=;|&{}()[],+-*/%^~#')
  rl.rl_basic_word_break_characters = anchors.breaks
  anchors.name = ffi.new('char[?]', 7, 'moreau')
  rl.rl_readline_name = anchors.name
  return rl
end

-- One line from readline or stdin. RETURN: the line; or nil at end of input;
-- or false when Ctrl-C ended the line (the interrupt request is cleared).
local function read_line(rl, prompt, hist)
  local s
  if rl then
    local p = rl.readline(prompt)
    if p ~= nil then
      s = ffi.string(p)
      ffi.C.free(p)
    end
  else
    io.write(prompt)
    io.flush()
    s = io.read('*l')
    if s == nil and C.mr_interrupted() ~= 0 then ffi.C.clearerr(ffi.C.stdin) end
  end
  if C.mr_interrupted() ~= 0 then
    C.mr_interrupt_clear()
    if not rl then io.write('\n') end
    return false
  end
  if s and rl and s:match('%S') then
    rl.add_history(s)
    if hist then rl.append_history(1, hist) end
  end
  return s
end
jit.off(read_line)

-- ------------------------------------------------------------ the loop

--- Whether the session is interactive: its input is a terminal (isatty(0)),
-- not a pipe or a file. Only an interactive session keeps a history.
function repl.interactive()
  core.readline() -- (declares isatty)
  return ffi.C.isatty(0) == 1
end

--- Runs the loop until end of input.
function repl.start()
  local env = repl.env()
  local rl = setup_readline(env)
  local hist = rl and repl.interactive() and repl.history_path()
  if hist then
    local f = io.open(hist, 'a') -- append_history writes only to an existing file
    if f then
      f:close()
      rl.read_history(hist)
      rl.history_truncate_file(hist, repl.HISTORY_LINES)
    else
      io.stderr:write('moreau repl: cannot write the history file ' .. hist .. '; history is not kept\n')
      hist = nil
    end
  end
  core.check(C.mr_interrupt_install_sigint(1))
  print(('moreau %s REPL (%s). help() for a start; Ctrl-C stops a call; Ctrl-D leaves.'):format(
    env.moreau.version, jit and jit.version or 'Lua'))
  local buffer = nil
  while true do
    local line = read_line(rl, buffer and '    .. ' or 'moreau> ', hist)
    if line == nil then break end
    if line == false then
      buffer = nil -- Ctrl-C: drop the line and the unfinished chunk
    else
      buffer = buffer and (buffer .. '\n' .. line) or line
      local ok, res, incomplete = repl.eval(buffer, env)
      if ok then
        for i = 1, res.n do
          local shown, text = pcall(repl.pretty, res[i])
          print(shown and text or ('error while printing the value: ' .. tostring(text)))
        end
        if C.mr_interrupted() ~= 0 then print('interrupted') end
        buffer = nil
      elseif incomplete then
        -- wait for more lines
      else
        print(res == 'interrupted' and res or ('error: ' .. tostring(res)))
        buffer = nil
      end
      C.mr_interrupt_clear()
    end
  end
  C.mr_interrupt_install_sigint(0)
  if hist then rl.history_truncate_file(hist, repl.HISTORY_LINES) end
  print()
end

return repl
