--- moreau.options — the one way methods, attacks, metrics, the Moreau solver,
-- training and recipes fill in defaults, refuse unknown names and check every
-- value against its declared domain.
--
-- A defaults table may carry `_domains`, one domain per option, written in a
-- small language (README "Option domains" lists the rules):
--
--   int >= 1            an integer (a float with no fraction) >= 1, at most
--                       2^31 − 1 (the engine's int32 counts)
--   seed                an integer in [0, 2^53) (seeds are uint64 in the engine)
--   bytes               an integer in [0, 2^62) (a byte count: int64 in the engine)
--   int in [1, 8]       an integer in the closed range
--   odd >= 3            an odd integer >= 3
--   num > 0             a finite number > 0     (also >=, <, <=); every `num` is
--                       also a float32 value: 0 or 1.2e-38 <= |v| <= 3.4e38
--                       (the engine computes in float32, where a larger value
--                       is inf and a smaller one 0 or subnormal)
--   num in (0, 1]       a finite number in the range (brackets: closed, parens: open)
--   num                 any finite number
--   num or inf          any number but NaN (±inf allowed: an absent bound)
--   bool                true or false
--   one of a, b, c      one of the listed strings
--   tensor or num       a moreau tensor or a finite number
--   string, table, function, any
--
-- NaN and ±inf are outside every numeric domain unless it says "or inf".
-- A violation raises "WHO: option 'NAME' must be DOMAIN, got VALUE".
--
-- Options that arrive as strings (a recipe's parameters from `--key=value`,
-- the bench's command line) are declared as a table of parameters
--   { NAME = { type = 'int', default = 4, domain = 'int >= 1', help = '...' } }
-- (type: int, number, string, bool or list); options.params converts each
-- string by its type, then checks it against its domain (for a list, each
-- item), with the errors above worded "WHO: parameter 'NAME' ...".
local options = {}

local T -- moreau.tensor, loaded on first use (it needs the engine)

local function fmt_num(v)
  if v ~= v then return 'nan' end
  if v == math.huge then return 'inf' end
  if v == -math.huge then return '-inf' end
  if v == math.floor(v) and math.abs(v) < 1e18 then return ('%.0f'):format(v) end
  return tostring(v)
end

--- A value as the error messages show it: numbers plainly, strings quoted,
-- anything else by its type.
function options.show(v)
  if type(v) == 'number' then return fmt_num(v) end
  if type(v) == 'string' then return "'" .. v .. "'" end
  if type(v) == 'boolean' or v == nil then return tostring(v) end
  T = T or require 'moreau.tensor'
  if T.is(v) then return 'a tensor of shape ' .. table.concat(v:shape(), 'x') end
  return 'a ' .. type(v)
end

--- NAME{k1=v1, k2=v2, ...}: an object made from filled options (a method, an
-- attack), its options sorted by name, as print shows it.
function options.describe(name, opts)
  local keys = {}
  for k in pairs(opts) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = k .. '=' .. tostring(opts[k]) end
  return name .. '{' .. table.concat(parts, ', ') .. '}'
end

local function finite(v) return type(v) == 'number' and v == v and v > -math.huge and v < math.huge end
local function integer(v) return finite(v) and v == math.floor(v) end
local INT32 = 2 ^ 31 - 1
local function int32(v) return integer(v) and math.abs(v) <= INT32 end
local FLT_MAX, FLT_MIN = 3.4028234663852886e38, 1.1754943508222875e-38
local function float32(v) return finite(v) and (v == 0 or (math.abs(v) >= FLT_MIN and math.abs(v) <= FLT_MAX)) end

-- Comparisons of the language: each gives a test and its words.
local compare = {
  ['>'] = function(a) return function(v) return v > a end end,
  ['>='] = function(a) return function(v) return v >= a end end,
  ['<'] = function(a) return function(v) return v < a end end,
  ['<='] = function(a) return function(v) return v <= a end end,
}

-- A bound, then the rest of the domain after the kind: '>= 1' or 'in [0, 1)'.
local function bound(rest)
  if rest == '' then return function() return true end, '' end
  local op, a = rest:match('^(>=?)%s*(%S+)$')
  if not op then op, a = rest:match('^(<=?)%s*(%S+)$') end
  if op then
    local n = assert(tonumber(a), 'options: bad bound ' .. rest)
    return compare[op](n), ' ' .. op .. ' ' .. a
  end
  local l, lo, hi, r = rest:match('^in%s*([%[%(])%s*([^,]+),%s*([^%]%)]+)([%]%)])$')
  assert(l, 'options: bad domain bound ' .. rest)
  local nlo, nhi = assert(tonumber(lo)), assert(tonumber(hi))
  return function(v)
    return (l == '[' and v >= nlo or v > nlo) and (r == ']' and v <= nhi or v < nhi)
  end, (' in %s%s, %s%s'):format(l, lo, hi, r)
end

local compiled = {}

--- A domain string compiled to {ok = function(v) -> bool, text = 'an integer >= 1'}.
-- Raises (a programming error) on a string outside the language.
function options.domain(spec)
  if compiled[spec] then return compiled[spec] end
  local d
  local kind, rest = spec:match('^(%a+)%s*(.-)%s*$')
  if spec:match('^one of ') then
    local names, set = {}, {}
    for name in spec:sub(8):gmatch('[^,%s]+') do names[#names + 1] = "'" .. name .. "'"; set[name] = true end
    d = { ok = function(v) return set[v] == true end, text = 'one of ' .. table.concat(names, ', ') }
  elseif spec == 'num or inf' then
    d = { ok = function(v) return type(v) == 'number' and v == v end, text = 'a number or ±inf (not NaN)' }
  elseif spec == 'tensor or num' then
    d = { ok = function(v)
      T = T or require 'moreau.tensor'
      return finite(v) or T.is(v)
    end, text = 'a tensor or a finite number' }
  elseif kind == 'int' or kind == 'odd' or kind == 'num' then
    local test, words = bound(rest)
    local base = kind == 'num' and float32 or int32
    local odd = kind == 'odd'
    d = {
      ok = function(v) return base(v) and (not odd or v % 2 == 1) and test(v) end,
      text = (kind == 'int' and 'an integer' or kind == 'odd' and 'an odd integer'
        or (rest == '' and 'a finite number' or 'a number')) .. words,
    }
  elseif spec == 'bytes' then
    d = { ok = function(v) return integer(v) and v >= 0 and v < 2 ^ 62 end, text = 'an integer in [0, 2^62)' }
  elseif spec == 'seed' then
    d = { ok = function(v) return integer(v) and v >= 0 and v < 2 ^ 53 end, text = 'an integer in [0, 2^53)' }
  elseif spec == 'bool' then
    d = { ok = function(v) return type(v) == 'boolean' end, text = 'true or false' }
  elseif spec == 'string' or spec == 'table' or spec == 'function' then
    d = { ok = function(v) return type(v) == spec end, text = 'a ' .. spec }
  elseif spec == 'any' then
    d = { ok = function() return true end, text = 'anything' }
  else
    error('options: unknown domain ' .. spec, 2)
  end
  compiled[spec] = d
  return d
end

--- Edit distance of two short strings: insertions, deletions, substitutions
-- and swaps of two neighbouring letters count one each (the optimal string
-- alignment distance; a swap is the commonest typo: 'stpes' is one from 'steps').
local function edit_distance(a, b)
  local d = {}
  for i = 0, #a do d[i] = { [0] = i } end
  for j = 0, #b do d[0][j] = j end
  for i = 1, #a do
    for j = 1, #b do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      d[i][j] = math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
      if i > 1 and j > 1 and a:sub(i, i) == b:sub(j - 1, j - 1) and a:sub(i - 1, i - 1) == b:sub(j, j) then
        d[i][j] = math.min(d[i][j], d[i - 2][j - 2] + 1)
      end
    end
  end
  return d[#a][#b]
end

--- " (did you mean 'X'?)" naming the name in `names` (a list) nearest to the
-- string v, when v is X in another case ('METHODS', 'Fast'), or when X has 4
-- or more letters and v is within a third of its length in edits (a typo,
-- not another short name); else ''. Case does not count as an edit.
function options.nearest(v, names)
  if type(v) ~= 'string' then return '' end
  local best, bd
  for _, name in ipairs(names) do
    if type(name) == 'string' and v ~= name and v:lower() == name:lower() then
      return (" (did you mean '%s'?)"):format(name)
    end
  end
  for _, name in ipairs(names) do
    local dist = edit_distance(v:lower(), tostring(name):lower())
    if not bd or dist < bd then best, bd = name, dist end
  end
  if best and #best >= 4 and bd <= math.floor(#best / 3) then return (" (did you mean '%s'?)"):format(best) end
  return ''
end

--- options.nearest for a string v outside a 'one of' domain ('' for other domains).
function options.suggest(spec, v)
  if not spec:match('^one of ') then return '' end
  local names = {}
  for name in spec:sub(8):gmatch('[^,%s]+') do names[#names + 1] = name end
  return options.nearest(v, names)
end

--- Checks one value against a domain string; raises "WHO: option 'NAME' must
-- be DOMAIN, got VALUE" at `level` (1: the caller of check). RETURN: v.
function options.check(who, name, v, spec, level)
  local d = options.domain(spec)
  if not d.ok(v) then
    local text = d.text
    local kind = spec:match('^%a+')
    if integer(v) and math.abs(v) > INT32 and (kind == 'int' or kind == 'odd') then
      text = text .. ' (at most 2147483647)'
    elseif kind == 'num' and finite(v) and not float32(v) then
      text = text .. ' (a float32 value: 0 or 1.2e-38 <= |v| <= 3.4e38)'
    end
    error(("%s: option '%s' must be %s, got %s%s"):format(who, tostring(name), text, options.show(v),
      options.suggest(spec, v)), (level or 1) + 1)
  end
  return v
end

--- Whether tensors a and b have the same shape (same dims, same sizes).
function options.same_shape(a, b)
  local sa, sb = a:shape(), b:shape()
  if #sa ~= #sb then return false end
  for i = 1, #sa do if sa[i] ~= sb[i] then return false end end
  return true
end

--- Checks that the tensor option NAME has x's shape exactly (an equal element
-- count is not enough): raises "WHO: option 'NAME' has shape AxB, x has shape
-- CxD; they must be equal" at `level` (1: the caller). RETURN: t.
function options.check_shape(who, name, t, x, level)
  if not options.same_shape(t, x) then
    error(("%s: option '%s' has shape %s, x has shape %s; they must be equal"):format(who, name,
      table.concat(t:shape(), 'x'), table.concat(x:shape(), 'x')), (level or 1) + 1)
  end
  return t
end

--- The names a defaults table accepts, sorted, as "a, b, c".
local function known(defaults)
  local names = {}
  for k in pairs(defaults) do if k ~= '_extra' and k ~= '_domains' then names[#names + 1] = tostring(k) end end
  for k in pairs(defaults._extra or {}) do if defaults[k] == nil then names[#names + 1] = tostring(k) end end
  table.sort(names)
  return names
end

--- A new table: defaults, then opts on top. Every value given in opts is
-- checked against defaults._domains (the defaults themselves are the
-- author's: a test checks them; options without a domain are not checked).
-- defaults._extra lists names that are accepted without a default (derived
-- later). Unknown names raise "WHO: unknown option 'NAME' (KNOWN, ...)" at
-- `level` (default: the caller's caller); so do opts that are not a table.
function options.fill(who, defaults, opts, level)
  level = (level or 2) + 1
  if opts ~= nil and type(opts) ~= 'table' then
    error(('%s: options must be a table, got %s'):format(who, options.show(opts)), level)
  end
  local o = {}
  for k, v in pairs(defaults) do o[k] = v end
  local domains = defaults._domains or {}
  for k, v in pairs(opts or {}) do
    if defaults[k] == nil and not (defaults._extra and defaults._extra[k]) or k == '_extra' or k == '_domains' then
      error(("%s: unknown option '%s' (%s)%s"):format(who, tostring(k), table.concat(known(defaults), ', '),
        options.nearest(k, known(defaults))), level)
    end
    if domains[k] then options.check(who, k, v, domains[k], level) end
    o[k] = v
  end
  o._extra, o._domains = nil, nil
  return o
end

-- ------------------------------------------------- options given as strings

--- The types of a string parameter: each converts a string (or an already
-- typed value, e.g., from a results.json) to its value, or gives nil when it
-- cannot.
--   int     a number without a fraction ('3', '1e3')
--   number  any number tonumber reads
--   string  the text itself
--   bool    true/'true'/'1'/'yes' or false/'false'/'0'/'no'; a bare `--flag` is 'true'
--   list    comma-separated, at least one item, no empty item ('1,,2' and ''
--           are refused); items that read as numbers become numbers
options.types = {
  int = function(v)
    local n = tonumber(v)
    if n and n == math.floor(n) then return n end
  end,
  number = function(v) return tonumber(v) end,
  string = function(v) return tostring(v) end,
  bool = function(v)
    if v == true or v == 'true' or v == '1' or v == 'yes' then return true end
    if v == false or v == 'false' or v == '0' or v == 'no' then return false end
  end,
  list = function(v)
    if type(v) == 'table' then return #v > 0 and v or nil end
    local out = {}
    for item in (tostring(v) .. ','):gmatch('([^,]*),') do
      if item == '' then return nil end
      out[#out + 1] = tonumber(item) or item
    end
    return out
  end,
}

--- Checks a parameter table's declarations (a programming error of its
-- author, raised at `level`, 1: the caller): every type is one of
-- options.types and every domain is in the language. `where` names the
-- declaring file in the message: "WHERE: parameter 'K' has unknown type 'T'".
function options.check_params(where, params, level)
  level = (level or 1) + 1
  for k, spec in pairs(params) do
    if type(spec) ~= 'table' or not options.types[spec.type or 'string'] then
      error(("%s: parameter '%s' has unknown type '%s'"):format(where, tostring(k),
        tostring(type(spec) == 'table' and spec.type or spec)), level)
    end
    if spec.domain then
      local ok, err = pcall(options.domain, spec.domain)
      if not ok then error(("%s: parameter '%s': %s"):format(where, tostring(k), tostring(err)), level) end
    end
  end
end

--- Splits command-line arguments into key-value pairs,
-- `--key=value` / `--flag` (dashes in keys become underscores; a bare flag is the string 'true'; keys may hold
-- dots, as `--moreaugrad.T=100`) and the rest. A key given twice raises
-- "option --K is given twice: --K=A and --K=B (give it once)" at level 0 (a
-- command-line error): the last one would silently win.
-- RETURN: table key -> string, list of the other arguments in order.
function options.parse_args(args)
  local out, rest, given = {}, {}, {}
  local function put(key, v, a)
    if given[key] and key ~= 'help' then -- (-h --help is still help)
      error(("option --%s is given twice: %s and %s (give it once)"):format(key, given[key], a), 0)
    end
    out[key], given[key] = v, a
  end
  for _, a in ipairs(args) do
    local k, v = a:match('^%-%-([%w_%-%.]+)=(.*)$')
    if k then
      put((k:gsub('-', '_')), v, a)
    elseif a:match('^%-%-[%w_%-%.]+$') then
      put((a:sub(3):gsub('-', '_')), 'true', a)
    else
      rest[#rest + 1] = a
    end
  end
  return out, rest
end

--- The command line as options.parse_args reads it: `-h` becomes
-- `--help`, and `--key value` becomes `--key=value` when takes_value(key) says the key
-- takes a value (key with dashes as underscores); such a key with no value
-- after it raises "parameter 'K' needs a value". A bare `--flag` of any other
-- key stays a flag. RETURN: a new list.
function options.normalize_args(args, takes_value)
  local out, i = {}, 1
  while i <= #args do
    local a = args[i]
    local k = a:match('^%-%-([%w_%-%.]+)$')
    if a == '-h' then
      out[#out + 1] = '--help'
    elseif k and takes_value(k:gsub('-', '_')) then
      if args[i + 1] == nil or args[i + 1]:match('^%-%-') then
        error(("parameter '%s' needs a value: --%s=VALUE or --%s VALUE"):format(k:gsub('-', '_'), k, k), 0)
      end
      out[#out + 1] = ('--%s=%s'):format(k, args[i + 1])
      i = i + 1
    else
      out[#out + 1] = a
    end
    i = i + 1
  end
  return out
end

--- Typed values of a parameter table from their defaults and `given` (strings
-- from the command line, or typed values). Unknown names, values their type
-- cannot read, values outside their domain and an item repeated in a list
-- raise, at level 0 (these are the user's command-line errors, not a line of
-- code):
--   "WHO: unknown NOUN 'K' (NOUNs: a, b, c)"
--   "WHO: NOUN 'K' expects int, got '2.5'"
--   "WHO: NOUN 'K' lists 'x' twice (items 1 and 3); give each once"
--   "WHO: NOUN 'K' must be DOMAIN, got V"   (a list: "... 'K' item I must be ...")
--   "WHO: NOUN 'K' lists 'all' (item I) with other names; ..." (a list whose
--   domain names 'all' takes it alone)
-- ARGS: who, params (see the top of this file), given, noun (default 'parameter').
-- RETURN: table name -> value.
function options.params(who, params, given, noun)
  noun = noun or 'parameter'
  local p = {}
  for k, spec in pairs(params) do p[k] = spec.default end
  for k, v in pairs(given or {}) do
    local spec = params[k]
    if not spec then
      local names = {}
      for name in pairs(params) do names[#names + 1] = name end
      table.sort(names)
      error(("%s: unknown %s '%s' (%s)%s"):format(who, noun, tostring(k),
        #names > 0 and (noun .. 's: ' .. table.concat(names, ', ')) or ('it takes no ' .. noun .. 's'),
        options.nearest(k, names)), 0)
    end
    local val = options.types[spec.type or 'string'](v)
    if val == nil then
      local what = spec.type == 'list' and 'a non-empty comma-separated list without empty items' or
        (spec.type or 'string')
      error(("%s: %s '%s' expects %s, got '%s'"):format(who, noun, k, what,
        type(v) == 'table' and table.concat(v, ',') or tostring(v)), 0)
    end
    if spec.type == 'list' then
      -- a repeated item would run (and be reported) twice
      local first = {}
      for i, x in ipairs(val) do
        if x ~= x then
          -- NaN: not a key, and never equal to itself (its domain refuses it below)
        elseif first[x] then
          error(("%s: %s '%s' lists %s twice (items %d and %d); give each once"):format(who, noun, k,
            options.show(x), first[x], i), 0)
        else
          first[x] = i
        end
      end
    end
    p[k] = val
  end
  for k, spec in pairs(params) do
    if spec.domain then
      local d, v = options.domain(spec.domain), p[k]
      local function bad(what, x)
        error(("%s: %s '%s'%s must be %s, got %s%s"):format(who, noun, k, what, d.text, options.show(x),
          options.suggest(spec.domain, x)), 0)
      end
      if (spec.type or 'string') == 'list' then
        for i, x in ipairs(v) do if not d.ok(x) then bad(' item ' .. i, x) end end
        -- a list whose names include 'all' (every one of them): 'all' stands alone
        if #v > 1 and d.ok('all') then
          for i, x in ipairs(v) do
            if x == 'all' then
              error(("%s: %s '%s' lists 'all' (item %d) with other names; 'all' means every one: give it alone, " ..
                "or list only the ones you want"):format(who, noun, k, i), 0)
            end
          end
        end
      elseif not d.ok(v) then
        bad('', v)
      end
    end
  end
  return p
end

return options
