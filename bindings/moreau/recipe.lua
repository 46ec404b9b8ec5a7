--- moreau.recipe — load, parameterize and run recipe files.
--
-- A recipe is a Lua file that returns a table:
--
--   return {
--     name = 'rho_eta_sweep',
--     description = 'Figure 2: MoreauGrad maps over rho and eta',
--     params = {
--       images = { type = 'int', default = 4, domain = 'int >= 1', help = 'test images to explain' },
--       seed   = { type = 'int', default = 0, domain = 'seed', help = 'seed of every random draw' },
--       rhos   = { type = 'list', default = { 0.1, 1, 3 }, domain = 'num > 0', help = 'values of rho' },
--     },
--     writes = { 'grid.png', 'results.json' },
--     run = function(p, rep)       -- p: typed parameters; rep: the report (moreau.report) of the results folder
--       ...
--     end,
--   }
--
-- `moreau run FILE --key=value ...` parses the parameters against their
-- declared types (int, number, string, bool, list) and domains (moreau.options'
-- language; for a list, the domain of each item), creates the results folder
-- results/NAME-YYYYmmdd-HHMMSS/, runs the recipe, and writes results.json with
-- every parameter, the git revision and library versions, so the run can be
-- repeated elsewhere (`moreau run --from results.json`).
local options = require 'moreau.options'

local recipe = {}

--- Loads a recipe file in an environment of its own (its globals do not leak).
-- ARGS: path, env (optional table of globals; default: a fresh table over _G)
-- RETURN: the recipe table, with .path set.
function recipe.load(path, env)
  local f, err = loadfile(path)
  if not f then error('recipe: cannot load ' .. tostring(err), 2) end
  env = env or setmetatable({}, { __index = _G })
  setfenv(f, env)
  local ok, r = pcall(f)
  if not ok then error('recipe: ' .. tostring(r), 2) end
  if type(r) ~= 'table' or type(r.run) ~= 'function' then
    error('recipe: ' .. path .. ' must return a table with a run function', 2)
  end
  -- the name names the results folder: letters, digits, '_' and '-' only
  r.name = r.name or (path:match('([^/]+)%.lua$') or 'recipe'):gsub('[^%w_%-]', '_')
  if type(r.name) ~= 'string' or not r.name:match('^[%w_%-]+$') then
    error(("recipe: %s: name %s must be letters, digits, '_' or '-' (it names the results folder)"):format(path,
      type(r.name) == 'string' and "'" .. r.name .. "'" or type(r.name)), 2)
  end
  r.params = r.params or {}
  r.path = path
  if type(r.params) ~= 'table' then error(('recipe: %s: params must be a table'):format(path), 2) end
  options.check_params('recipe: ' .. path, r.params, 2)
  return r
end

--- Typed parameters from defaults and command-line strings
-- (`--key=value`), or from a table of values (a results.json's, say),
-- by moreau.options.params: unknown keys,
-- values of the wrong type and values outside their domain raise
-- "NAME: parameter 'K' ...". A recipe that sets `method_options = true`
-- (one that builds its methods with experiment.methods) also takes
-- `--KEY.OPTION=VALUE`, one option of one method (`--moreaugrad.T=100`,
-- `--smoothgrad.samples=20`), read and checked by experiment.method_option;
-- they stay in the table under their dotted names (so results.json records
-- them and `--from` repeats them). RETURN: table name -> value.
function recipe.params(r, given)
  local plain, dotted = {}, {}
  for k, v in pairs(given or {}) do
    if r.method_options and type(k) == 'string' and k:find('.', 1, true) then dotted[k] = v else plain[k] = v end
  end
  local p = options.params(r.name, r.params, plain)
  for k, v in pairs(dotted) do p[k] = require('moreau.experiment').method_option(r.name, k, v) end
  return p
end

--- Whether a command-line option of recipe r takes a value, so that
-- `--key value` reads as `--key=value` (moreau.options.normalize_args): every parameter
-- but a bool, `--out`, and a recipe's `--KEY.OPTION`.
function recipe.takes_value(r, key)
  if key == 'out' or (r.method_options and key:find('.', 1, true)) then return true end
  local spec = r.params[key]
  return spec ~= nil and spec.type ~= 'bool'
end

--- The help text of a recipe: description and parameters with defaults.
function recipe.help(r)
  local lines = { ('%s — %s'):format(r.name, r.description or ''), '', 'parameters:' }
  local names = {}
  for k in pairs(r.params) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    local s = r.params[k]
    local d = s.default
    if type(d) == 'table' then d = table.concat(d, ',') end
    lines[#lines + 1] = ('  --%-14s %-7s %s (default %s)'):format(k, s.type or 'string', s.help or '', tostring(d))
  end
  if r.method_options then
    lines[#lines + 1] = '\n  --KEY.OPTION=VALUE   one option of one method, over the preset: KEY is a name of'
    lines[#lines + 1] = '                       --methods, OPTION one of its options (--moreaugrad.T=100,'
    lines[#lines + 1] = '                       --sparse_moreaugrad.eta=0.05, --smoothgrad.samples=20)'
  end
  if r.writes then lines[#lines + 1] = '\nwrites: ' .. table.concat(r.writes, ', ') end
  return table.concat(lines, '\n')
end

--- Parses command-line arguments (moreau.options.parse_args):
-- `--key=value` and `--flag`.
-- RETURN: table of strings, list of the other arguments.
recipe.parse_args = options.parse_args

--- Whether errors carry the whole stack: the moreau command's traceback
-- flag (`moreau --traceback`), or the
-- environment variable MOREAU_TRACEBACK set to anything.
function recipe.traceback()
  return recipe.want_traceback or os.getenv('MOREAU_TRACEBACK') ~= nil
end

--- The message of an error raised while the recipe at `path` ran, pointing
-- at the recipe: when the message starts with a position in another file (a
-- line of moreau's own code that failed on what the recipe gave it), the
-- recipe's innermost line on the stack comes first and the library's position
-- follows in brackets. Messages that already name the recipe, or no file,
-- stay as they are. Call it from the error handler (the stack is still there).
function recipe.locate_error(e, path)
  local msg = tostring(e)
  local pos, rest = msg:match('^([^\n]-:%d+): (.*)$')
  if not pos or not path or pos:sub(1, #path) == path then return msg end
  for level = 2, 200 do
    local info = debug.getinfo(level, 'Sl')
    if not info then break end
    if info.source == '@' .. path and info.currentline > 0 then
      return ('%s:%d: %s [raised at %s; --traceback shows every frame]'):format(path, info.currentline, rest, pos)
    end
  end
  return msg
end

--- Runs a recipe: creates its results folder, runs it, writes results.json.
-- ARGS: r (from recipe.load), p (from recipe.params), opts {out = folder,
--   on_start = function(report) run before the recipe}
-- RETURN: the report (moreau.report), whose .dir is the results folder.
function recipe.run(r, p, opts)
  local report = require 'moreau.report'
  local rep = report.new(r.name, { dir = opts and opts.out, recipe = r.path, params = p })
  if opts and opts.on_start then opts.on_start(rep) end
  local t0 = os.clock()
  local wall0 = os.time()
  local ok, err = xpcall(function() return r.run(p, rep) end, function(e)
    return recipe.traceback() and debug.traceback(e) or recipe.locate_error(e, r.path)
  end)
  rep.results.seconds_cpu = os.clock() - t0
  rep.results.seconds_wall = os.time() - wall0
  if not ok then
    rep.results.error = tostring(err)
    rep:finish()
    error(err, 0)
  end
  rep:finish()
  return rep
end

return recipe
