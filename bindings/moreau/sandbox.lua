--- moreau.sandbox — run a recipe someone else wrote with only the moreau API.
--
-- `moreau run --sandbox RECIPE` loads the file into an environment that has
-- the safe parts of Lua's standard library and moreau's public modules, and
-- nothing else:
--
--   refused                          how
--   ffi, any module but moreau's     require raises "sandbox: require 'ffi' is not allowed ..."
--   os.execute, os.remove, os.exit   os holds only time, clock, date, getenv
--   io.popen, io.open, files         io holds only write (to stdout)
--   load of bytecode                 load/loadstring accept text chunks only
--   debug, getfenv/setfenv           absent: they would reach the host's upvalues and environments
--   file writes outside the results  every moreau function that writes checks the path against
--   folder                           the run's folder (core.check_write)
--
-- This is the second wall. The first is the operating system: `moreau run
-- --sandbox` runs this environment only inside a process confined by
-- moreau.isolation (bubblewrap, seccomp, rlimits; docs/sandbox.md), because a
-- Lua environment alone cannot hold — the recipe would share the host's
-- memory, its string metatable and modules. What this wall does keep from a
-- recipe are pointers: no object it can reach holds one (moreau.core keeps
-- every engine pointer in private tables, and x:data() is refused here).
local core = require 'moreau.core'
local recipe = require 'moreau.recipe'

local sandbox = {}

--- The moreau modules a sandboxed recipe may require. Left out on purpose
-- (docs/sandbox.md, "Modules a sandboxed recipe cannot use"): certify (its
-- Lanczos and solver callbacks receive raw double arrays), store and dataset
-- (they open SQLite files at any path through the FFI and run whole jobs),
-- safetensors, repl, recipe, report, isolation, sandbox, core.
sandbox.modules = {
  'tensor', 'nn', 'models', 'data', 'oracle', 'prox', 'methods', 'viz', 'metrics', 'faithfulness', 'sanity',
  'attacks', 'train', 'experiment',
}

--- A table whose every field access raises a clear refusal.
local function refuse(what)
  return setmetatable({}, {
    __index = function(_, k)
      error(('sandbox: %s.%s is not available in a sandboxed recipe'):format(what, tostring(k)), 2)
    end,
    __newindex = function() error('sandbox: ' .. what .. ' is read-only here', 2) end,
  })
end

--- A copy of t with only the listed keys; other keys raise as refusals.
local function only(t, keys, what)
  local out = {}
  for _, k in ipairs(keys) do out[k] = t[k] end
  return setmetatable(out, getmetatable(refuse(what)))
end

local function copy(t)
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  return out
end

--- The environment of a sandboxed recipe.
function sandbox.env()
  local env = {}
  for _, name in ipairs { 'assert', 'error', 'ipairs', 'next', 'pairs', 'pcall', 'xpcall', 'print', 'select',
    'tonumber', 'tostring', 'type', 'unpack', 'rawequal', 'rawget', 'rawset', 'rawlen', 'setmetatable',
    'getmetatable', '_VERSION' } do
    env[name] = _G[name]
  end
  local getmetatable = getmetatable
  env.string = copy(string)
  env.string.dump = nil
  -- The strings' metatable is the host's: through it a recipe would reach the
  -- real string table, which moreau's own code calls (s:sub, s:find). The
  -- recipe sees a view whose __index is its own copy.
  local string_view = { __index = env.string }
  env.table, env.math, env.bit = copy(table), copy(math), copy(bit)
  env.getmetatable = function(v)
    if type(v) == 'string' then return string_view end
    return getmetatable(v)
  end
  env.os = only(os, { 'time', 'clock', 'date', 'getenv', 'difftime' }, 'os')
  -- writing to the terminal: io.write, io.stdout:write and io.stderr:write
  -- (the shipped recipes print their progress there), and flush
  local function stream(f)
    local s = {}
    s.write = function(self, ...)
      f:write(...)
      return self
    end
    s.flush = function() f:flush() end
    return setmetatable(s, getmetatable(refuse('io stream')))
  end
  local streams = { stdout = stream(io.stdout), stderr = stream(io.stderr) }
  env.io = only({ write = function(...) return io.write(...) end, stdout = streams.stdout, stderr = streams.stderr },
    { 'write', 'stdout', 'stderr' }, 'io')
  env.debug = refuse('debug')
  env.jit = nil

  local allowed = {}
  for _, m in ipairs(sandbox.modules) do allowed['moreau.' .. m] = true end
  local moreau_proxy
  env.require = function(name)
    if name == 'moreau' then return moreau_proxy end
    if allowed[name] then return require(name) end
    error(("sandbox: require '%s' is not allowed in a sandboxed recipe (only moreau and moreau.%s)"):format(
      tostring(name), table.concat(sandbox.modules, ', moreau.')), 2)
  end
  local real = require 'moreau'
  moreau_proxy = setmetatable({ version = real.version }, {
    __index = function(_, k)
      if allowed['moreau.' .. tostring(k)] then return require('moreau.' .. k) end
      error(("sandbox: moreau.%s is not available in a sandboxed recipe"):format(tostring(k)), 2)
    end,
  })
  env.moreau = moreau_proxy

  local function text_only(chunk, name, level)
    if type(chunk) == 'string' and chunk:byte(1) == 27 then
      error('sandbox: loading bytecode is not allowed in a sandboxed recipe', level)
    end
    if type(chunk) ~= 'string' then
      error('sandbox: load takes source text only in a sandboxed recipe', level)
    end
    local f, err = loadstring(chunk, name)
    if f then setfenv(f, env) end
    return f, err
  end
  env.load = function(chunk, name) return text_only(chunk, name, 3) end
  env.loadstring = env.load
  env.dofile = function() error('sandbox: dofile is not allowed in a sandboxed recipe', 2) end
  env.loadfile = function() error('sandbox: loadfile is not allowed in a sandboxed recipe', 2) end
  env._G = env
  return env
end

--- Loads a recipe file into a fresh sandbox environment.
function sandbox.load(path)
  local f = io.open(path, 'rb')
  if f then
    local head = f:read(1)
    f:close()
    if head and head:byte(1) == 27 then error('sandbox: ' .. path .. ' is bytecode; only source recipes run here', 2) end
  end
  local r = recipe.load(path, sandbox.env())
  r.sandboxed = true
  return r
end

-- the string functions the write guard uses, as they were when moreau loaded
local gsub, find, sub = string.gsub, string.find, string.sub

--- Confines every file write of moreau to `dir` (until sandbox.release).

function sandbox.confine(dir)
  core.sandboxed = true -- tensor:data() refuses (moreau.tensor)
  local root = gsub(dir, '/+$', '')
  core.write_guard = function(path, level)
    local p = gsub(tostring(path), '^%./', '')
    if find(p, '%.%.') or sub(p, 1, #root + 1) ~= root .. '/' then
      error(("sandbox: writing '%s' is not allowed: a sandboxed recipe writes only inside %s"):format(
        tostring(path), root), level + 1)
    end
  end
end

--- Lifts sandbox.confine: moreau writes files anywhere again.
function sandbox.release()
  core.write_guard = nil
  core.sandboxed = nil
end

return sandbox
