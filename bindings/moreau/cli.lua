--- moreau.cli — the `moreau` command.
--
--   moreau explain [--index=N | --image=PATH] [--key=value ...]   the main job (recipes/explain.lua)
--   moreau explain --data=SET --store=RUN.db [--range=A:B] [--shard=K/N] ...
--                                                                  a data set into a results store (moreau.dataset)
--   moreau merge RUN-*.db -o RUN.db                                combine the stores of shards
--   moreau run RECIPE.lua [--key=value ...] [--help]               run a recipe into a results folder
--   moreau run --from results/NAME-.../results.json                re-run with the same parameters
--                                                                  (a shipped recipe; any other recipe file
--                                                                  only with --sandbox, or --trust)
--   moreau run --sandbox RECIPE.lua ...                            run someone else's recipe with only the moreau API
--   moreau train [--key=value ...]                                 recipes/train_fmnist.lua
--   moreau bench [--key=value ...]                                 scripts/bench.lua
--   moreau repl                                                    LuaJIT with moreau loaded
--   moreau info | --version | --help
local core = require 'moreau.core'

local cli = {}

local function usage()
  return [[
usage: moreau [--threads=N] [--traceback] [--progress=MODE] COMMAND [ARGS]
  (options here as everywhere: --key=value or --key value, each once; -h is --help)

  --threads=N           threads of the engine (default: OMP_NUM_THREADS, else every core)
  --traceback           an error shows every frame of the stack, moreau's own too
                        (also: the environment variable MOREAU_TRACEBACK set)
  --progress=MODE       long engine calls: tty (a line redrawn on a terminal; the default),
                        lines (a line at each tenth of the work, for logs), off
                        (also: MOREAU_PROGRESS=MODE)

commands:
  explain [--index=N | --image=PATH] [--key=value ...]
                        explain one image with every method (the shipped model by default)
  explain --data=SET --store=RUN.db [--range=A:B] [--methods=...] [--shard=K/N] [--batch=64]
                        explain a data set into a results store (SQLite; docs/store.md); the same
                        command again resumes; shards from --shard, SLURM arrays or mpirun
  merge SHARD.db ... -o RUN.db   combine the stores of a run's shards
  run RECIPE [--key=value ...]   run a recipe; --help lists its parameters
  run --from results.json        re-run a recorded run with its parameters: a shipped recipe
                                 as it is; any other recipe file the results.json names only
                                 with --sandbox (confined) or --trust (you vouch for the file)
  run --sandbox [--cpu-seconds=N] [--wall-seconds=N] [--memory=8G] [--file-size=4G] [--read=PATH] RECIPE ...
                                 run a shared recipe with only the moreau API available
  train [--key=value ...]        train the Fashion-MNIST model (recipes/train_fmnist.lua)
  bench [--key=value ...]        benchmarks, engine next to PyTorch when installed
  repl                           an interactive LuaJIT session with moreau loaded
  info                           version, backend, BLAS, threads, models shipped
  --version, --help]]
end

local function recipes_dir()
  return require('moreau.isolation').realpath(core.root .. '/recipes') or (core.root .. '/recipes')
end

--- Resolves a recipe argument: a path, or a name under recipes/.
local function find_recipe(name)
  local candidates = { name, recipes_dir() .. '/' .. name, recipes_dir() .. '/' .. name .. '.lua' }
  for _, p in ipairs(candidates) do
    local f = io.open(p, 'r')
    if f then f:close() return p end
  end
  error(("moreau: no recipe '%s' (looked in the current folder and %s)"):format(name, recipes_dir()), 0)
end

--- Runs the recipe file at `path` with its command-line arguments (what
-- `moreau run` and `moreau explain` do): parses and checks the parameters,
-- prints the recipe's help for `--help`, else runs it into a results folder
-- (`--out=DIR`, or a new one under results/). ARGS: path; args (Lua array of
-- strings); opts {command = name for messages, sandbox = true inside a
-- confined run}. Errors (level 0, for the command line): an unexpected
-- argument, a parameter the recipe refuses, the recipe's own error.
-- RETURN: the report (moreau.report), or nothing after `--help`.
function cli.run_recipe(path, args, opts)
  local recipe = require 'moreau.recipe'
  local options = require 'moreau.options'
  local r
  if opts and opts.sandbox then
    -- inside the confined process: the write guard holds from the recipe's first line on;
    -- no bytecode can be made (none can be loaded either), and what the recipe
    -- prints reaches the terminal line by line (a run a limit ends loses nothing)
    string.dump = nil
    io.stdout:setvbuf('line')
    local out = recipe.parse_args(options.normalize_args(args, function(k) return k == 'out' end)).out
    if out then require('moreau.sandbox').confine(out) end
    r = require('moreau.sandbox').load(path)
  else
    r = recipe.load(path)
  end
  -- `--key value` and `-h` read as `--key=value` and `--help`, now that the parameters' types are known
  local given, rest = recipe.parse_args(options.normalize_args(args, function(k) return recipe.takes_value(r, k) end))
  if #rest > 0 then
    error(('moreau run: unexpected argument %s (parameters are --key=value or --key value; `moreau %s --help` ' ..
      'lists them)'):format(rest[1], opts and opts.command or ('run ' .. tostring(r.path))), 0)
  end
  if given.help then
    print(recipe.help(r))
    return
  end
  -- --out names the results folder of any recipe; recipes do not declare it.
  local out = given.out
  given.out = nil
  local p = recipe.params(r, given)
  local on_start
  if opts and opts.sandbox then
    on_start = function(rep) require('moreau.sandbox').confine(rep.dir) end
  end
  local ok, rep = pcall(recipe.run, r, p, { out = out, on_start = on_start })
  if opts and opts.sandbox then require('moreau.sandbox').release() end
  if not ok then error(rep, 0) end
  -- (a confined run's page is drawn, and announced, by the process that started it)
  if not (opts and opts.sandbox) then io.stderr:write('results: ', rep.dir, '/index.html\n') end
  return rep
end

local commands = {}

--- The recipe a results.json names: the shipped recipe of that name when
-- there is one, else its recorded file, which a results.json someone sent
-- could point anywhere — that one runs only sandboxed or when the user trusts it.
local function recorded_recipe(results, path, sandbox, trust)
  local name = results.recipe
  if type(name) == 'string' and name:match('^[%w_%-]+$') then
    local shipped = recipes_dir() .. '/' .. name .. '.lua'
    local file = results.recipe_file
    local f = io.open(shipped, 'r')
    if f and (file == nil or file == shipped or tostring(file):match('[^/]+$') == name .. '.lua') then
      f:close()
      local isolation = require 'moreau.isolation'
      if file ~= nil and isolation.realpath(tostring(file)) ~= isolation.realpath(shipped) then
        io.stderr:write(('moreau run --from: %s names %s; running the shipped recipe %s\n'):format(path,
          tostring(file), isolation.realpath(shipped)))
      end
      return shipped
    end
    if f then f:close() end
  end
  local file = results.recipe_file or name
  if type(file) ~= 'string' then error('moreau run --from: ' .. path .. ' names no recipe', 0) end
  if not file:match('%.lua$') then
    error(('moreau run --from: %s names %s as its recipe, which is not a .lua file'):format(path, file), 0)
  end
  if not (sandbox or trust) then
    error(('moreau run --from: %s names the recipe file %s, which is not a shipped recipe; a results.json ' ..
      'may come from anyone, so run it confined with `moreau run --sandbox --from=%s`, or add --trust if you ' ..
      'wrote that file yourself'):format(path, file, path), 0)
  end
  return find_recipe(file)
end

--- The recorded parameters of a results.json as `--key=value` arguments.
-- A results.json may come from anyone, so what it says is replayed only
-- where it cannot reach outside the run: never `--out` or `--help` (the
-- results folder is yours: a fresh one, or the --out you give), and, when the
-- recipe runs unconfined and untrusted, no parameter that names a file
-- (declared `file = 'read'` or `'write'` in the recipe) unless it is the
-- default or you give it yourself on the command line. A parameter you give
-- on the command line is not replayed: your value is the one that runs.
local function replayed_args(results, path, file, args, confined_or_trusted)
  local options = require 'moreau.options'
  local mine = options.parse_args(args) -- the keys the caller gave (with a value or not)
  local r = not confined_or_trusted and require('moreau.recipe').load(file) or nil -- a shipped recipe: loading it is safe
  local out, keys = {}, {}
  -- the caller's own --methods (not 'all'): a recorded option of a method it
  -- leaves out is not replayed (experiment.methods refuses an option for a
  -- method that does not run; the recorded run ran it)
  local running
  if type(mine.methods) == 'string' and mine.methods ~= 'all' then
    running = {}
    for m in mine.methods:gmatch('[^,]+') do running[m] = true end
  end
  if type(results.params) ~= 'table' then results.params = {} end
  for k in pairs(results.params) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, raw in ipairs(keys) do
    -- a parameter's name as a recipe declares it (a method option has one dot);
    -- anything else ('out=DIR', a dash for an underscore) would parse as another
    -- argument than the one it says
    if type(raw) ~= 'string' or not (raw:match('^[%a_][%w_]*$') or raw:match('^[%a_][%w_]*%.[%a_][%w_]*$')) then
      error(("moreau run --from: %s records a parameter named %s, which is not a parameter name (letters, " ..
        "digits and '_', a method option with one dot); it was not written by moreau"):format(path,
        require('moreau.options').show(raw)), 0)
    end
    local k, v = raw, results.params[raw]
    local spec = r and r.params[k]
    local of_method = k:match('^([%a_][%w_]*)%.')
    if k == 'out' or k == 'help' then
      -- dropped: the results folder and --help are the caller's
    elseif of_method and running and not running[of_method] then
      io.stderr:write(('moreau run --from: --%s not replayed: %s is not among your --methods=%s\n'):format(k,
        of_method, mine.methods))
    elseif mine[k] ~= nil then
      -- the caller gives it again on the command line: the caller's value wins
    elseif type(v) == 'table' and #v == 0 then
      -- an empty list (the recipe's default, recorded as []) is not a value the command line can give
    elseif type(v) ~= 'string' and type(v) ~= 'number' and type(v) ~= 'boolean' and type(v) ~= 'table' then
      error(("moreau run --from: %s records --%s as %s, not a value"):format(path, k, type(v)), 0)
    elseif spec and spec.file and mine[k] == nil and v ~= spec.default then
      error(("moreau run --from: %s sets --%s=%s, a file the recipe would %s outside its results folder; a " ..
        "results.json may come from anyone, so give --%s yourself, or add --trust if you made this " ..
        "results.json"):format(path, k, tostring(v), spec.file == 'write' and 'write' or 'read', k), 0)
    else
      if type(v) == 'table' then
        for i, item in ipairs(v) do
          if type(item) ~= 'string' and type(item) ~= 'number' then
            error(("moreau run --from: %s records --%s with item %d a %s, not a value"):format(path, k, i,
              type(item)), 0)
          end
        end
        v = table.concat(v, ',')
      end
      out[#out + 1] = ('--%s=%s'):format(k, tostring(v))
    end
  end
  return out
end

--- The options of `run --sandbox` that the person running it gives before
-- RECIPE: the limits of moreau.isolation and extra read-only paths.
local function sandbox_option(a, limits)
  local k, v = a:match('^%-%-([%w%-]+)=(.*)$')
  if k == 'cpu-seconds' or k == 'wall-seconds' then
    local n = tonumber(v)
    if not n or n < 1 or n ~= math.floor(n) or n > 2 ^ 30 then
      error(('moreau run: --%s must be an integer in [1, 2^30], got %s'):format(k, v), 0)
    end
    limits[k == 'cpu-seconds' and 'cpu_seconds' or 'wall_seconds'] = n
  elseif k == 'memory' or k == 'file-size' then
    local n, unit = v:match('^(%d+)([KMGkmg]?)$')
    if not n then
      error(('moreau run: --%s must be a byte count such as 8G, 512M or 1048576, got %s'):format(k, v), 0)
    end
    local bytes = tonumber(n) * ({ [''] = 1, k = 2 ^ 10, m = 2 ^ 20, g = 2 ^ 30 })[unit:lower()]
    if k == 'memory' and bytes < 2 ^ 30 then
      error(('moreau run: --memory must be at least 1G (OpenBLAS and oneDNN reserve their pools at start), ' ..
        'got %s'):format(v), 0)
    end
    limits[k == 'memory' and 'memory' or 'file_size'] = v
  elseif k == 'read' then
    limits.read[#limits.read + 1] = v
  else
    return false
  end
  return true
end

--- `run --sandbox`: the recipe runs in its own process, confined by the
-- operating system (moreau.isolation), into a results folder made here.
local function run_isolated(path, args, limits)
  local isolation = require 'moreau.isolation'
  local recipe = require 'moreau.recipe'
  -- the recipe is not loaded here (its code runs only confined): of its
  -- arguments only --out and --help are read, the rest the confined run reads
  args = require('moreau.options').normalize_args(args, function(k) return k == 'out' end)
  local given = recipe.parse_args(args)
  local out, fresh = nil, not given.out
  if not given.help then
    if given.out then
      require('moreau.report').mkdir_p(given.out)
    else
      local name = (path:match('([^/]+)%.lua$') or path:match('[^/]+$') or 'recipe'):gsub('[^%w_%-]', '_')
      given.out = require('moreau.report').new_run_dir(name)
    end
    out = isolation.realpath(given.out)
  end
  local rargs = {}
  for _, a in ipairs(args) do
    if not a:match('^%-%-out=') then rargs[#rargs + 1] = a end
  end
  limits.recipe, limits.out, limits.args = path, out, rargs
  local status = isolation.run(limits)
  local why = isolation.explain_status(status, limits)
  if out and why and fresh then
    -- refused before the recipe wrote anything (a misspelt parameter, a
    -- launcher refusal): the fresh folder made for it goes again
    local lfs = require 'lfs'
    local empty = true
    for name in lfs.dir(out) do
      if name ~= '.' and name ~= '..' then empty = false break end
    end
    if empty then
      lfs.rmdir(out)
      error(why, 0)
    end
  end
  if out then
    -- the page is drawn here, from the run's data, not taken from the run:
    -- whatever the recipe did to its report or its own index.html, the page
    -- is moreau's (escaped, no script)
    isolation.replace_file(out, 'index.html', require('moreau.report').render(out, why))
    if not why then io.stderr:write('results: ', out, '/index.html\n') end
  end
  if why then error(why .. (out and ('; results folder: ' .. out) or ''), 0) end
end

function commands.run(args)
  local first = table.remove(args, 1)
  local sandbox, trust, confined = false, false, false
  local limits = { read = {} }
  while first == '--sandbox' or first == '--trust' or first == '--confined' or
      (sandbox and first and sandbox_option(first, limits)) do
    if first == '--sandbox' then sandbox = true
    elseif first == '--trust' then trust = true
    elseif first == '--confined' then confined = true end
    first = table.remove(args, 1)
  end
  if confined then
    -- what --sandbox runs inside its confined process (moreau.isolation sets MOREAU_CONFINED)
    if os.getenv('MOREAU_CONFINED') ~= '1' then
      error('moreau run: --confined is what --sandbox runs inside its confined process; run `moreau run --sandbox RECIPE`', 0)
    end
    if first == nil then error('moreau run: give a recipe', 0) end
    return cli.run_recipe(first, args, { sandbox = true })
  end
  if not sandbox and next(limits.read) then error('moreau run: --read applies to --sandbox only', 0) end
  if first == nil then error('moreau run: give a recipe (a file, or a name under recipes/)', 0) end
  if first:match('^%-%-from=') or first == '--from' then
    local path = first:match('^%-%-from=(.*)$') or table.remove(args, 1)
    local results = require('moreau.report').read(path)
    local file = recorded_recipe(results, path, sandbox, trust)
    local rargs = replayed_args(results, path, file, args, sandbox or trust)
    for _, a in ipairs(args) do rargs[#rargs + 1] = a end
    if sandbox then return run_isolated(file, rargs, limits) end
    return cli.run_recipe(file, rargs)
  end
  if trust then error('moreau run: --trust applies to --from only', 0) end
  if sandbox then return run_isolated(find_recipe(first), args, limits) end
  return cli.run_recipe(find_recipe(first), args)
end

function commands.explain(args)
  if require('moreau.dataset').wants(args) then return require('moreau.dataset').command(args) end
  return cli.run_recipe(find_recipe('explain'), args, { command = 'explain' })
end
function commands.merge(args) return require('moreau.dataset').merge_command(args) end
function commands.train(args) return cli.run_recipe(find_recipe('train_fmnist'), args, { command = 'train' }) end

function commands.bench(args)
  local path = core.root .. '/scripts/bench.lua'
  local f = loadfile(path)
  if not f then error('moreau bench: ' .. path .. ' is missing', 0) end
  return f(unpack(args))
end

function commands.repl() return require('moreau.repl').start() end

function commands.info()
  local moreau = require 'moreau'
  print('moreau ' .. moreau.version)
  print('backend: ' .. moreau.backend_info())
  -- adaptive: fewer while other processes keep the cores busy (moreau.set_adaptive_threads)
  print(('threads: %d (%s)'):format(moreau.get_num_threads(), moreau.get_adaptive_threads() and
    'adaptive: fewer while other processes keep cores busy; MOREAU_ADAPTIVE_THREADS=0 fixes it' or
    'fixed: the team is always that size'))
  -- bf16 is available where set_precision accepts it (the CPU's AVX-512 BF16 or AMX);
  -- the precision in force is put back
  local precision = moreau.get_precision()
  local ok_bf16, why = pcall(moreau.set_precision, 'bf16')
  moreau.set_precision(precision)
  print(('precision: %s (bf16 %s)'):format(precision, ok_bf16 and 'available: --precision=bf16' or
    ('not available: ' .. tostring(why):gsub('^[^\n]-:%d+: ', ''))))
  print('cuda: not available in this build')
  print('library: ' .. core.lib_path)
  local ok, models = pcall(require, 'moreau.models')
  if ok and models.shipped then
    for _, name in ipairs(models.shipped()) do print('model shipped: ' .. name) end
  end
end

-- The options before the command, read as a command's own options are
-- (moreau.options.normalize_args, parse_args): `--key=value` or `--key value`,
-- `-h` for --help, each at most once, an unknown one refused with the valid
-- names and the nearest. true: the option takes a value.
local GLOBAL = { threads = true, progress = true, traceback = false, help = false, version = false }

-- The global options at the head of args (removed from it), as a table key ->
-- string; raises (level 0) on an unknown, repeated or value-less option.
local function global_options(args)
  local options = require 'moreau.options'
  local head = {}
  while args[1] and args[1]:match('^%-') do
    local a = table.remove(args, 1)
    head[#head + 1] = a
    local k = a:match('^%-%-([%w_%-%.]+)$')
    -- `--threads 2`: the value comes along (a missing one is refused by normalize_args)
    if k and GLOBAL[(k:gsub('-', '_'))] and args[1] and not args[1]:match('^%-%-') then
      head[#head + 1] = table.remove(args, 1)
    end
  end
  local ok, given, rest = pcall(function()
    return options.parse_args(options.normalize_args(head, function(k) return GLOBAL[k] == true end))
  end)
  if not ok then error('moreau: ' .. tostring(given), 0) end
  local names = {}
  for k in pairs(GLOBAL) do names[#names + 1] = '--' .. k end
  table.sort(names)
  local valid = table.concat(names, ', ') .. ', -h'
  if #rest > 0 then
    error(("moreau: unknown option '%s' before the command (options there: %s)"):format(rest[1], valid), 0)
  end
  for k, v in pairs(given) do
    if GLOBAL[k] == nil then
      error(("moreau: unknown option '--%s' before the command (options there: %s)%s"):format(k, valid,
        options.nearest('--' .. k, names)), 0)
    end
    if GLOBAL[k] == false and v ~= 'true' then
      error(("moreau: option '--%s' takes no value, got --%s=%s"):format(k, k, v), 0)
    end
  end
  return given
end

-- The recipe behind each command that runs one: its messages start with the
-- recipe's name ("explain: ...", "train_fmnist: ...").
local RECIPE_OF = { explain = 'explain', train = 'train_fmnist', bench = 'bench' }

--- The line an error of command CMD prints: "moreau CMD: MESSAGE", once. A
-- message that names moreau already stays as it is; one that starts with
-- the name of the command or of its recipe ("explain: --index=...") has that
-- name replaced, not preceded ("moreau explain: --index=...", never
-- "moreau explain: explain: ...").
function cli.error_line(cmd, msg)
  if msg:match('^moreau[ :]') then return msg end
  for _, name in ipairs { cmd, RECIPE_OF[cmd] } do
    if msg:sub(1, #name + 2) == name .. ': ' then return ('moreau %s: %s'):format(cmd, msg:sub(#name + 3)) end
  end
  return ('moreau %s: %s'):format(cmd, msg)
end

--- Entry point. ARGS: the command line arguments (a Lua array).
function cli.main(args)
  -- options before the command: --threads=N, the engine's thread count
  -- (default: OMP_NUM_THREADS, else every core); --traceback, every frame of
  -- an error; --progress=MODE; --help; --version
  local ok_g, global = pcall(global_options, args)
  if not ok_g then
    io.stderr:write(tostring(global), '\n')
    return 2
  end
  if global.traceback then require('moreau.recipe').want_traceback = true end
  if global.threads then
    local n = tonumber(global.threads)
    if not require('moreau.options').domain('int in [1, 4096]').ok(n) then
      io.stderr:write(('moreau: --threads must be an integer in [1, 4096], got %s\n'):format(global.threads))
      return 2
    end
    core.C.mr_set_num_threads(n)
  end
  local progress = global.progress or os.getenv('MOREAU_PROGRESS') or 'tty'
  -- long engine calls draw a progress line when stderr is a terminal (tty),
  -- or print one at each tenth of the work (lines, for logs), or nothing (off)
  local ok_p = pcall(require('moreau').set_progress, progress)
  if not ok_p then
    io.stderr:write(('moreau: --progress (or MOREAU_PROGRESS) must be off, tty or lines, got %s\n'):format(progress))
    return 2
  end
  if global.help then
    print(usage())
    return 0
  end
  if global.version then
    print('moreau ' .. core.version())
    return 0
  end
  local cmd = table.remove(args, 1)
  if cmd == nil or cmd == 'help' then
    print(usage())
    return 0
  end
  local fn = commands[cmd]
  if not fn then
    local names = {}
    for name in pairs(commands) do names[#names + 1] = name end
    table.sort(names)
    io.stderr:write(("moreau: unknown command '%s' (commands: %s)%s\n%s\n"):format(cmd, table.concat(names, ', '),
      require('moreau.options').nearest(cmd, names), usage()))
    return 2
  end
  local ok, err = xpcall(function() return fn(args) end, function(e)
    if require('moreau.recipe').traceback() then return debug.traceback(e) end
    return e
  end)
  if not ok then
    io.stderr:write(cli.error_line(cmd, tostring(err)), '\n')
    return 1
  end
  return 0
end

return cli
