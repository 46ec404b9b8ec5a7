-- Sanity checks (moreau.sanity, Adebayo et al. 2018): the layers of a network
-- top first; re-initialization as PyTorch's defaults, seeded (every layer
-- re-initialized with seed s is the fresh network built with seed s, bit for
-- bit); the caller's network never changes; on a linear net the gradient map
-- is a row of the weight, so the similarities have closed forms in the
-- weights; cascading and independent agree at the top layer; the random-logit
-- test; errors. The sanity_checks recipe runs end to end at a small size.
local T = require 'moreau.tensor'
local nn = require 'moreau.nn'
local models = require 'moreau.models'
local methods = require 'moreau.methods'
local metrics = require 'moreau.metrics'
local S = require 'moreau.sanity'
local error_with = require('helpers.asserts').error_with

local function snapshot(net)
  local out = {}
  for _, p in ipairs(net:params()) do out[p.name] = p.tensor:totable() end
  return out
end

--- A 2-layer net on (1, 12, 12) images: fc1 144 -> 5, softplus, fc2 5 -> 4.
local function two_layer(seed)
  local b = nn.builder({ 1, 12, 12 }, { seed = seed })
  local h = b:softplus(b:linear('fc1', b:flatten(b.input), 144, 5))
  return b:build(b:linear('fc2', h, 5, 4))
end

describe('sanity.layers and sanity.randomize', function()
  local seed = 3
  local net = models.resnet_fmnist { width = 0.25, seed = seed }

  it('lists the layers top first, with their types', function()
    local L = S.layers(net)
    assert.are.same({ 'fc', 'linear' }, { L[1].name, L[1].kind })
    assert.are.same({ 'conv1', 'conv2d' }, { L[#L].name, L[#L].kind })
    assert.are.same({ 'bn1', 'batchnorm2d' }, { L[#L - 1].name, L[#L - 1].kind })
    assert.are.same({ 'bn1.weight', 'bn1.bias', 'bn1.running_mean', 'bn1.running_var' }, L[#L - 1].params)
    local B = S.layers(net, { granularity = 'block' })
    local names = {}
    for i, l in ipairs(B) do names[i] = l.name end
    assert.are.same({ 'fc', 'layer3', 'layer2', 'layer1', 'bn1', 'conv1' }, names)
  end)

  it('every layer re-initialized with seed s is the fresh network of seed s, bit for bit', function()
    local all = {}
    for i, l in ipairs(S.layers(net)) do all[i] = l.name end
    local before = snapshot(net)
    local r = S.randomize(net, all, { seed = 11 })
    assert.are.same(snapshot(models.resnet_fmnist { width = 0.25, seed = 11 }), snapshot(r), 'seed 11')
    assert.are.same(before, snapshot(net), 'the caller net is unchanged')
    -- by block: the same
    assert.are.same(snapshot(r), snapshot(S.randomize(net, { 'fc', 'layer3', 'layer2', 'layer1', 'bn1', 'conv1' },
      { seed = 11, granularity = 'block' })))
  end)

  it('re-initializes only the named layer; batchnorm to weight 1, bias 0, mean 0, var 1', function()
    local trained = S.copy(net)
    for _, p in ipairs(trained:params()) do p.tensor:fill(0.375) end -- stands for trained values
    local r = S.randomize(trained, { 'layer2.0.bn1', 'layer1.0.conv2' }, { seed = 4 })
    local bound = 1 / math.sqrt(8 * 3 * 3) -- layer1 at width 0.25: 8 channels, 3x3
    for _, p in ipairs(r:params()) do
      local v = p.tensor:totable()
      if p.name:match('^layer2%.0%.bn1%.') then
        local want = (p.name:match('weight$') or p.name:match('running_var$')) and 1 or 0
        for _, e in ipairs(v) do assert.are.equal(want, e, p.name) end
      elseif p.name:match('^layer1%.0%.conv2%.') then
        for _, e in ipairs(v) do assert.is_true(math.abs(e) <= bound and e ~= 0.375, p.name) end
      else
        for _, e in ipairs(v) do assert.are.equal(0.375, e, p.name) end
      end
    end
  end)

  it('copies networks not built by moreau.models through rebuild', function()
    local a = two_layer(1)
    error_with(function() S.copy(a) end, 'sanity.copy: the network was not built by moreau.models')
    local c = S.copy(a, function() return two_layer(9) end)
    assert.are.same(snapshot(a), snapshot(c))
    error_with(function() S.copy(a, function() return models.resnet_fmnist { width = 0.25 } end) end,
      'sanity.copy: the rebuilt network has')
  end)
end)

describe('sanity.model_randomization on a linear score', function()
  -- f_c(x) = w_c · x + b_c: the gradient map of class c is row c of the weight,
  -- so after re-initialization it is row c of the new weight.
  local seed = 5
  local function linear(s)
    local b = nn.builder({ 1, 12, 12 }, { seed = s })
    return b:build(b:linear('fc', b:flatten(b.input), 144, 3))
  end
  local net = linear(1)
  local rebuild = function() return linear(0) end
  local x = T.randn({ 2, 1, 12, 12 }, { seed = seed })
  local labels = { 0, 2 }

  it('compares |w_c| with |w\'_c| by Spearman and SSIM', function()
    local r = S.model_randomization(net, methods.gradient(), x, labels, { seed = seed, rebuild = rebuild })
    assert.are.same({ 'fc' }, r.layers)
    local w = net:param('fc.weight'):totable()
    local w2 = S.randomize(net, { 'fc' }, { seed = seed, rebuild = rebuild }):param('fc.weight'):totable()
    local a, b = {}, {}
    for n, c in ipairs(labels) do
      for i = 1, 144 do a[(n - 1) * 144 + i], b[(n - 1) * 144 + i] = w[c * 144 + i], w2[c * 144 + i] end
    end
    local A, B = T.from(a, { 2, 1, 12, 12 }), T.from(b, { 2, 1, 12, 12 })
    assert.are.same(metrics.spearman(A:abs(), B:abs()), r.spearman[1], 'seed ' .. seed)
    assert.are.same(metrics.ssim(A, B), r.ssim[1], 'seed ' .. seed)
    assert.is_true(math.abs(r.mean_spearman[1]) < 0.3, 'independent random rows: small rank correlation')
  end)

  it('cascading and independent agree at the top layer and differ below it', function()
    local net2 = two_layer(2)
    local rb = function() return two_layer(0) end
    local m = methods.smoothgrad { samples = 3, seed = seed }
    local c = S.model_randomization(net2, m, x, labels, { seed = seed, rebuild = rb })
    local i = S.model_randomization(net2, m, x, labels, { seed = seed, rebuild = rb, mode = 'independent' })
    assert.are.same({ 'fc2', 'fc1' }, c.layers)
    assert.are.same(c.spearman[1], i.spearman[1], 'seed ' .. seed)
    assert.are_not.same(c.spearman[2], i.spearman[2], 'seed ' .. seed)
    -- the original map itself: similarity 1 against itself
    assert.are.same({ 1, 1 }, metrics.spearman(c.original:abs(), c.original:abs()))
  end)

  it('random logit: another class for each image, its map against the label\'s', function()
    local r = S.random_logit(net, methods.gradient(), x, labels, { seed = seed })
    for n = 1, 2 do
      assert.are_not.equal(labels[n], r.classes[n])
      assert.is_true(r.classes[n] >= 0 and r.classes[n] <= 2)
    end
    assert.are.same(r.classes, S.random_logit(net, methods.gradient(), x, labels, { seed = seed }).classes)
    local w = net:param('fc.weight'):totable()
    local a, b = {}, {}
    for n = 1, 2 do
      for i = 1, 144 do
        a[(n - 1) * 144 + i], b[(n - 1) * 144 + i] = w[labels[n] * 144 + i], w[r.classes[n] * 144 + i]
      end
    end
    assert.are.same(metrics.spearman(T.from(a, { 2, 1, 12, 12 }):abs(), T.from(b, { 2, 1, 12, 12 }):abs()),
      r.spearman)
  end)

  it('errors name the problem', function()
    error_with(function() S.model_randomization(net, methods.gradient(), x, labels, { mode = 'bottom_up' }) end,
      "sanity.model_randomization: option 'mode' must be one of 'cascading', 'independent', got 'bottom_up'")
    error_with(function() S.model_randomization(net, methods.gradient(), x, labels, { layers = { 'fc9' },
      rebuild = rebuild }) end, "sanity.model_randomization: no layer 'fc9' (granularity layer; layers, top first: fc)")
    error_with(function() S.model_randomization(net, 'gradient', x, labels) end,
      'sanity.model_randomization: method must be a moreau.methods method')
    error_with(function() S.randomize(net, { 'fc' }) end, 'sanity.copy: the network was not built by moreau.models')
    local one = nn.builder { 1, 12, 12 }
    local single = one:build(one:linear('fc', one:flatten(one.input), 144, 1))
    error_with(function() S.random_logit(single, methods.gradient(), x, { 0, 0 }) end,
      'sanity.random_logit: the network has one output')
    error_with(function() S.random_logit(net, methods.gradient(), x, { 0, 3 }) end,
      'sanity.random_logit: labels[2] = 3 is outside 0..2 (the network has 3 classes)')
  end)
end)

describe('the sanity_checks recipe', function()
  it('runs at a small size and writes its plots and numbers', function()
    local lfs = require 'lfs'
    local cjson = require 'cjson'
    local recipe = require 'moreau.recipe'
    local core = require 'moreau.core'
    local r = recipe.load(core.root .. '/recipes/sanity_checks.lua')
    local p = recipe.params(r, { images = '1', methods = 'gradient,sparse_moreaugrad', T = '4', m = '1',
      granularity = 'block', seeds = '2' })
    local dir = require('helpers.cli').tmpdir() .. '/sanity_checks'
    recipe.run(r, p, { out = dir })
    for _, f in ipairs(r.writes) do assert.truthy(lfs.attributes(dir .. '/' .. f), f) end
    local f = assert(io.open(dir .. '/results.json'))
    local res = cjson.decode(f:read('*a'))
    f:close()
    assert.are.same({ 'fc', 'layer3', 'layer2', 'layer1', 'bn1', 'conv1' }, res.layers)
    assert.are.same({ 0, 1 }, res.seeds)
    assert.are.equal(6, #res.cascading.gradient.mean_spearman)
    assert.are.equal(2, #res.cascading.gradient.per_seed)
    -- another seed re-initializes the weights differently: the similarities move
    assert.is_true(res.cascading.gradient.spread_ssim[1] > 0)
    assert.is_number(res.random_logit.gradient.mean_ssim)
  end)
end)
