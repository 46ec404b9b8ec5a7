--- moreau.options — the one way methods, attacks and other option-taking
-- constructors fill in defaults and refuse unknown names.
local options = {}

--- A new table: defaults, then opts on top. defaults._extra lists names that
-- are accepted without a default (derived later). Unknown names raise
-- "WHO: unknown option 'NAME'" at `level` (default: the caller's caller).
function options.fill(who, defaults, opts, level)
  local o = {}
  for k, v in pairs(defaults) do o[k] = v end
  for k, v in pairs(opts or {}) do
    if defaults[k] == nil and not (defaults._extra and defaults._extra[k]) then
      error(("%s: unknown option '%s'"):format(who, tostring(k)), (level or 2) + 1)
    end
    o[k] = v
  end
  o._extra = nil
  return o
end

return options
