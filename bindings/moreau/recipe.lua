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
--     run = function(p, ctx)       -- p: typed parameters; ctx.report: the results folder
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

--- Typed parameters from defaults and `--key=value` strings (or a table of
-- values, e.g. from a results.json), by moreau.options.params: unknown keys,
-- values of the wrong type and values outside their domain raise
-- "NAME: parameter 'K' ...". RETURN: table name -> value.
function recipe.params(r, given)
  return options.params(r.name, r.params, given)
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
  if r.writes then lines[#lines + 1] = '\nwrites: ' .. table.concat(r.writes, ', ') end
  return table.concat(lines, '\n')
end

--- Parses `--key=value` / `--flag` arguments (moreau.options.parse_args).
-- RETURN: table of strings, list of the other arguments.
recipe.parse_args = options.parse_args

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
    return os.getenv('MOREAU_TRACEBACK') and debug.traceback(e) or e
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
