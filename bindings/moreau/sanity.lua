--- moreau.sanity — sanity checks for saliency maps (Adebayo, Gilmer, Muelly,
-- Goodfellow, Hardt and Kim 2018, "Sanity Checks for Saliency Maps"): does a
-- map change when the model it explains is destroyed?
--
--   local S = moreau.sanity
--   local r = S.model_randomization(net, methods.gradient(), x, labels, { mode = 'cascading' })
--   for i, layer in ipairs(r.layers) do print(layer, r.mean_spearman[i], r.mean_ssim[i]) end
--   local q = S.random_logit(net, methods.smoothgrad(), x, labels)
--
-- Model-parameter randomisation re-initializes the parameters of one layer
-- (independent) or of every layer from the top down to it (cascading) on a copy
-- of the network (the caller's net is never changed), explains the same images
-- for the same classes again, and compares each map with the original one.
-- A method whose maps stay similar once the weights are random does not
-- depend on what the model learned, and fails the check.
--
-- Similarity, per image: the Spearman rank correlation of |map| with |original|
-- (metrics.spearman on the absolute values, ties given their average rank; NaN
-- when a map is constant, such as an all-zero sparse map) and SSIM
-- (metrics.ssim, its display preset: each map summed over channels in
-- absolute value, clipped at its 99th percentile, scaled to [0, 1]; needs
-- H, W >= 11), as Adebayo et al., report both on absolute-value maps.
--
-- Re-initialization (PyTorch's reset_parameters for the layer's type, from
-- the counter-based RNG with (seed, stream = the parameter's index in
-- net:params()), the same numbers moreau.nn gives a fresh network built with
-- that seed):
--   Conv2d, Linear  weight and bias U(−1/√fan_in, 1/√fan_in), fan_in = the
--                   weight's entries per output (kaiming_uniform_ with a = √5
--                   gives that bound), as (2u − 1)·bound in double
--   BatchNorm2d     weight 1, bias 0, running_mean 0, running_var 1 (PyTorch's
--                   reset_parameters resets the running statistics too)
-- A layer is the parameters that share a prefix (the name before the last
-- dot: 'layer1.0.conv1'); granularity = 'block' groups them by the first
-- component of the name instead ('layer1', 'fc'). Layers are ordered from the
-- top (the last created, next to the output) down.
local core = require 'moreau.core'
local T = require 'moreau.tensor'
local options = require 'moreau.options'

local sqrt, floor = math.sqrt, math.floor

local sanity = {}

local function check_net(who, net, level)
  if type(net) ~= 'table' or getmetatable(net) ~= require('moreau.nn').Net then
    error(who .. ': net must be a moreau.nn network, got ' .. type(net), level + 1)
  end
end

--- The layers of a network, top (next to the output) first.
-- ARGS: net; opts {granularity = 'layer' | 'block'}.
-- RETURN: a Lua array of {name =, kind = 'conv2d' | 'linear' | 'batchnorm2d' |
--   'block', params = {parameter names in creation order}}.
-- Errors: a layer whose type cannot be told from its parameters (a weight
-- that is not 4-D (conv2d) or 2-D (linear), and no running_mean).
function sanity.layers(net, opts)
  local who = 'sanity.layers'
  check_net(who, net, 2)
  local o = options.fill(who, { granularity = 'layer', _domains = { granularity = 'one of layer, block' } }, opts)
  local groups, order = {}, {}
  for _, p in ipairs(net:params()) do
    local prefix = p.name:match('^(.*)%.[^.]+$') or p.name
    if o.granularity == 'block' then prefix = p.name:match('^([^.]+)') end
    if not groups[prefix] then
      groups[prefix] = { name = prefix, params = {} }
      order[#order + 1] = prefix
    end
    local g = groups[prefix]
    g.params[#g.params + 1] = p.name
  end
  local out = {}
  for i = #order, 1, -1 do
    local g = groups[order[i]]
    if o.granularity == 'block' then
      g.kind = 'block'
    else
      local has_rm, wdim = false, nil
      for _, name in ipairs(g.params) do
        if name:match('%.running_mean$') then has_rm = true end
        if name:match('weight$') then wdim = core.ndim(net:param(name)) end
      end
      g.kind = has_rm and 'batchnorm2d' or (wdim == 4 and 'conv2d') or (wdim == 2 and 'linear') or nil
      if not g.kind then
        error(("%s: cannot tell the type of layer '%s' (parameters %s): a conv2d has a 4-D weight, a linear a " ..
          '2-D one, a batchnorm2d a running_mean'):format(who, g.name, table.concat(g.params, ', ')), 2)
      end
    end
    out[#out + 1] = g
  end
  return out
end

--- A copy of net: the same architecture rebuilt (net.model, set by
-- moreau.models, or opts.rebuild) with every parameter and buffer copied, in
-- inference mode, on the same backend.
-- ARGS: net; rebuild (optional function() -> a fresh network of the same
--   architecture, for networks not built by moreau.models).
-- RETURN: the copy. Errors: no way to rebuild; a rebuilt network whose
-- parameters differ in names or shapes.
function sanity.copy(net, rebuild)
  local who = 'sanity.copy'
  check_net(who, net, 2)
  local fresh
  if rebuild ~= nil then
    if type(rebuild) ~= 'function' then error(who .. ': rebuild must be a function, got ' .. type(rebuild), 2) end
    fresh = rebuild()
    check_net(who .. ': rebuild()', fresh, 2)
  elseif type(net.model) == 'table' then
    fresh = require('moreau.models')[net.model.name](net.model.options)
  else
    error(who .. ': the network was not built by moreau.models (it has no net.model); pass rebuild, a function ' ..
      'that builds the same architecture', 2)
  end
  local mine, theirs = net:params(), fresh:params()
  if #mine ~= #theirs then
    error(('%s: the rebuilt network has %d parameters, the network %d'):format(who, #theirs, #mine), 2)
  end
  for i, p in ipairs(mine) do
    local q = theirs[i]
    if q.name ~= p.name or not options.same_shape(p.tensor, q.tensor) then
      error(("%s: parameter %d of the rebuilt network is '%s' (%s), the network's '%s' (%s)"):format(who, i, q.name,
        table.concat(q.tensor:shape(), 'x'), p.name, table.concat(p.tensor:shape(), 'x')), 2)
    end
    q.tensor:copy(p.tensor)
  end
  if net:backend() ~= fresh:backend() then fresh:set_backend(net:backend()) end
  fresh:eval()
  return fresh
end

--- Re-initializes the parameters of one layer of `copy` in place (the module
-- header gives the rule).
local function reinit(copy, layer, index_of, seed)
  local fan_in
  if layer.kind == 'conv2d' or layer.kind == 'linear' then
    local w
    for _, name in ipairs(layer.params) do if name:match('weight$') then w = copy:param(name) end end
    fan_in = core.numel(w) / core.size(w, 1)
  end
  for _, name in ipairs(layer.params) do
    local t = copy:param(name)
    if layer.kind == 'batchnorm2d' then
      t:fill((name:match('%.weight$') or name:match('%.running_var$')) and 1 or 0)
    else
      local bound = 1 / sqrt(fan_in)
      local u = T.rand(t:shape(), { seed = seed, stream = index_of[name] })
      t:copy(u:apply_(function(v) return (2 * v - 1) * bound end))
    end
  end
end

--- Layers of net named in `names` (or all), in top-first order.
local function pick_layers(who, net, names, granularity, level)
  local all = sanity.layers(net, { granularity = granularity })
  if names == nil then return all end
  if type(names) ~= 'table' or #names == 0 then
    error(("%s: option 'layers' must be a non-empty list of layer names, got %s"):format(who, options.show(names)),
      level + 1)
  end
  local by = {}
  for _, l in ipairs(all) do by[l.name] = l end
  local want = {}
  for _, n in ipairs(names) do
    if not by[n] then
      local known = {}
      for _, l in ipairs(all) do known[#known + 1] = l.name end
      error(("%s: no layer '%s' (granularity %s; layers, top first: %s)"):format(who, tostring(n), granularity,
        table.concat(known, ', ')), level + 1)
    end
    want[n] = true
  end
  local out = {}
  for _, l in ipairs(all) do if want[l.name] then out[#out + 1] = l end end
  return out
end

--- A copy of net with the named layers re-initialized (PyTorch's default
-- init for each type, seeded; the module header). The caller's net is not
-- changed.
-- ARGS: net; layers (a list of layer names, sanity.layers); opts {seed = 0,
--   granularity = 'layer' | 'block', rebuild (sanity.copy)}.
-- RETURN: the new network.
-- Errors: an unknown layer name (the message lists them); as sanity.copy.
function sanity.randomize(net, layers, opts)
  local who = 'sanity.randomize'
  check_net(who, net, 2)
  local o = options.fill(who, { seed = 0, granularity = 'layer', _extra = { rebuild = true },
    _domains = { seed = 'seed', granularity = 'one of layer, block', rebuild = 'function' } }, opts)
  local list = pick_layers(who, net, layers, o.granularity, 2)
  local copy = sanity.copy(net, o.rebuild)
  local index_of = {}
  for i, p in ipairs(copy:params()) do index_of[p.name] = i - 1 end
  for _, l in ipairs(list) do
    if o.granularity == 'block' then
      -- a block re-initializes each of its layers by its own type
      for _, sub in ipairs(sanity.layers(copy)) do
        if sub.name == l.name or sub.name:sub(1, #l.name + 1) == l.name .. '.' then reinit(copy, sub, index_of, o.seed) end
      end
    else
      reinit(copy, l, index_of, o.seed)
    end
  end
  return copy
end

--- Spearman of |a| with |b| and SSIM (display preset) per item.
local function similarity(a, b, ssim_opts)
  local metrics = require 'moreau.metrics'
  return metrics.spearman(a:abs(), b:abs()), metrics.ssim(a, b, ssim_opts)
end

local function mean_finite(list)
  local s, n = 0, 0
  for _, v in ipairs(list) do if v == v then s, n = s + v, n + 1 end end
  return n > 0 and s / n or 0 / 0
end

local function check_method(who, method, level)
  if type(method) ~= 'table' or type(method.explain) ~= 'function' then
    error(who .. ': method must be a moreau.methods method (methods.gradient(), ...), got ' .. type(method), level + 1)
  end
end

--- Model-parameter randomisation test (Adebayo et al., 2018), cascading
-- (layers re-initialized from the top down: step i randomizes layers 1..i) or
-- independent (step i randomizes layer i alone). Every step explains x for the
-- same labels with the same method (stochastic methods draw the same noise:
-- it is keyed by the image) on a new copy; the caller's net is not changed.
-- ARGS: net; method (moreau.methods); x (N, C, H, W), H, W >= 11 (SSIM's
--   window); labels (0-based classes); opts {mode = 'cascading' |
--   'independent', seed = 0, granularity = 'layer' | 'block', layers (names,
--   default all, top first), rebuild (sanity.copy), ssim (options of
--   metrics.ssim)}.
-- RETURN: {layers = {names, top first}, mode, original (the map), spearman =
--   {[i] = per-item Lua array}, ssim = {[i] = ...}, mean_spearman = {[i] = mean
--   over the items whose value is not NaN}, mean_ssim = {...}}.
-- Errors: as sanity.randomize; method not a method; an unknown mode.
function sanity.model_randomization(net, method, x, labels, opts)
  local who = 'sanity.model_randomization'
  check_net(who, net, 2)
  check_method(who, method, 2)
  local o = options.fill(who, { mode = 'cascading', seed = 0, granularity = 'layer',
    _extra = { layers = true, rebuild = true, ssim = true },
    _domains = { mode = 'one of cascading, independent', seed = 'seed', granularity = 'one of layer, block',
      layers = 'table', rebuild = 'function', ssim = 'table' } }, opts)
  local list = pick_layers(who, net, o.layers, o.granularity, 2)
  local original = method:explain(net, x, labels)
  local res = { layers = {}, mode = o.mode, original = original, spearman = {}, ssim = {}, mean_spearman = {},
    mean_ssim = {} }
  local names = {}
  for i, l in ipairs(list) do
    res.layers[i] = l.name
    if o.mode == 'cascading' then names[#names + 1] = l.name else names = { l.name } end
    local copy = sanity.randomize(net, names, { seed = o.seed, granularity = o.granularity, rebuild = o.rebuild })
    local E = method:explain(copy, x, labels)
    res.spearman[i], res.ssim[i] = similarity(original, E, o.ssim)
    res.mean_spearman[i], res.mean_ssim[i] = mean_finite(res.spearman[i]), mean_finite(res.ssim[i])
  end
  return res
end

--- The random-logit test (Sixt, Granz and Landgraf 2020, "When Explanations
-- Lie: Why Many Modified BP Attributions Fail"): explain, for each image, a
-- class other than its label, drawn uniformly from the K − 1 others with the
-- counter-based RNG (seed, stream = the image's perturbation stream,
-- methods.perturbation_streams: c' = the floor(u·(K − 1))-th class other than
-- the label), and compare with the label's map. A map that does not depend on
-- the class explained stays similar.
-- ARGS: net; method; x (N, C, H, W), H, W >= 11; labels; opts {seed = 0,
--   ssim (options of metrics.ssim)}.
-- RETURN: {classes = {the random class of each item}, original, map,
--   spearman = per-item Lua array, ssim = ..., mean_spearman, mean_ssim}.
-- Errors: method not a method; a network with one output (no other class).
function sanity.random_logit(net, method, x, labels, opts)
  local who = 'sanity.random_logit'
  check_net(who, net, 2)
  check_method(who, method, 2)
  local o = options.fill(who, { seed = 0, _extra = { ssim = true }, _domains = { seed = 'seed', ssim = 'table' } },
    opts)
  local K = net:output_shape()[1]
  if K < 2 then error(who .. ': the network has one output; there is no other class to explain', 2) end
  if not T.is(x) then error(who .. ': x must be a tensor, got ' .. type(x), 2) end
  local N = core.size(x, 1)
  local lab = core.labels(labels, N, nil, who, 2, K)
  local streams = require('moreau.methods').perturbation_streams(x)
  local classes = {}
  for n = 1, N do
    local u = T.rand({ 1, 1 }, { seed = o.seed, stream = streams[n] }):get(1, 1)
    local k = floor(u * (K - 1))
    if k > K - 2 then k = K - 2 end
    classes[n] = k < lab[n - 1] and k or k + 1
  end
  local original = method:explain(net, x, labels)
  local E = method:explain(net, x, classes)
  local sp, ss = similarity(original, E, o.ssim)
  return { classes = classes, original = original, map = E, spearman = sp, ssim = ss,
    mean_spearman = mean_finite(sp), mean_ssim = mean_finite(ss) }
end

return sanity
