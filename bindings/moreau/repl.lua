--- moreau.repl — an interactive LuaJIT session with moreau loaded.
--
-- Line editing and history come from GNU readline (Debian's libreadline8),
-- history is kept in ~/.moreau_history. Expressions print their values;
-- tensors print their shape, device, min/max/mean and a corner of the values.
-- `help(x)` describes a module, a method, a solver or a recipe file.
--
--   moreau> net = models.pretrained 'resnet_fmnist'
--   moreau> x = data.normalize(data.get(data.fashion_mnist{split='test'}, 1), {0.286}, {0.353})
--   moreau> s = prox.solver(net, x, {9}, { reg = 'l1', T = 300, m = 8 })
--   moreau> s:step(); s
--   moreau> s:set { eta = 1e-2 }; for i = 1, 50 do s:step() end; s:stats(1)
local ffi = require 'ffi'

local repl = {}

local rl = require('moreau.core').readline() -- nil without libreadline: plain io.read

local function read_line(prompt)
  if rl then
    local p = rl.readline(prompt)
    if p == nil then return nil end
    local s = ffi.string(p)
    ffi.C.free(p)
    if s:match('%S') then rl.add_history(s) end
    return s
  end
  io.write(prompt)
  io.flush()
  return io.read('*l')
end

--- A readable one-line (or few-line) rendering of any value.
function repl.pretty(v, depth)
  depth = depth or 0
  local T = require 'moreau.tensor'
  if T.is(v) then return tostring(v) end
  if type(v) == 'table' then
    local mt = getmetatable(v)
    if mt and mt.__tostring then return tostring(v) end
    if depth > 1 then return '{...}' end
    local parts, n = {}, 0
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(keys) do
      n = n + 1
      if n > 24 then parts[#parts + 1] = '...' break end
      local key = type(k) == 'number' and '' or (tostring(k) .. ' = ')
      parts[#parts + 1] = key .. repl.pretty(v[k], depth + 1)
    end
    return '{ ' .. table.concat(parts, ', ') .. ' }'
  elseif type(v) == 'string' then
    return ('%q'):format(v)
  end
  return tostring(v)
end

--- Describes an object: a module's functions, a method's options, a solver's
-- state, a recipe file's parameters.
function repl.help(obj)
  if obj == nil then
    return [[
moreau REPL: the modules are loaded as globals: moreau, T (tensor), nn, models,
data, oracle, prox, methods, viz, report. help(x) describes x:
  help(methods)              the interpretation methods
  help(methods.moreaugrad{}) a method's options
  help(s)                    a solver's state (s = prox.solver(net, x, labels, opts))
  help('recipes/explain.lua') a recipe's parameters]]
  end
  if type(obj) == 'string' then
    local ok, r = pcall(require('moreau.recipe').load, obj)
    if ok then return require('moreau.recipe').help(r) end
    return 'no recipe at ' .. obj .. ': ' .. tostring(r)
  end
  if type(obj) == 'table' then
    if obj.name and obj.opts and obj.explain then
      return ('%s — %s\noptions: %s'):format(obj.name, obj.doc or '', repl.pretty(obj.opts))
    end
    if obj.opts and obj.step then
      return tostring(obj) .. '\noptions: ' .. repl.pretty(obj.opts) ..
        '\nmethods: step(), run{callback=}, delta(), grad(), stats(n), set{rho=, eta=, gamma=}, result()'
    end
    local names = {}
    for k, v in pairs(obj) do
      if type(v) == 'function' and not tostring(k):match('^_') then names[#names + 1] = k end
    end
    table.sort(names)
    return 'functions: ' .. table.concat(names, ', ')
  end
  return type(obj) .. ': ' .. tostring(obj)
end

--- The environment of the session: moreau's modules as globals.
function repl.env()
  local moreau = require 'moreau'
  local env = setmetatable({}, { __index = _G })
  env.moreau = moreau
  for _, m in ipairs { 'tensor', 'nn', 'models', 'data', 'oracle', 'prox', 'methods', 'viz', 'report' } do
    env[m] = moreau[m]
  end
  env.T = env.tensor
  env.help = function(x) print(repl.help(x)) end
  return env
end

--- Evaluates one chunk in env. RETURN: ok, results (packed) or error message,
-- incomplete (true when the chunk needs more lines).
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
  local res = { pcall(f) }
  if not res[1] then return false, res[2] end
  return true, { n = select('#', unpack(res)) - 1, unpack(res, 2) }
end

--- Runs the loop until end of input.
function repl.start()
  local home = os.getenv('HOME')
  local hist = home and (home .. '/.moreau_history')
  if rl and hist then rl.read_history(hist) end
  local env = repl.env()
  print(('moreau %s REPL (LuaJIT %s). help() for a start; Ctrl-D leaves.'):format(env.moreau.version,
    jit and jit.version or ''))
  local buffer = nil
  while true do
    local line = read_line(buffer and '    .. ' or 'moreau> ')
    if line == nil then break end
    buffer = buffer and (buffer .. '\n' .. line) or line
    local ok, res, incomplete = repl.eval(buffer, env)
    if ok then
      for i = 1, res.n do print(repl.pretty(res[i])) end
      buffer = nil
    elseif incomplete then
      -- wait for more lines
    else
      print('error: ' .. tostring(res))
      buffer = nil
    end
  end
  if rl and hist then rl.write_history(hist) end
  print()
end

return repl
