-- Metrics (moreau.metrics): hand-computed values, properties (identical maps,
-- symmetry, one-hot and constant maps), and reference numbers from skimage /
-- scipy / numpy (tests/fixtures/metrics.lua, made by
-- scripts/make_metric_fixtures.py) on maps both sides build from the same
-- integer formulas.
local T = require 'moreau.tensor'
local nn = require 'moreau.nn'
local methods = require 'moreau.methods'
local metrics = require 'moreau.metrics'

local fixture = dofile('tests/fixtures/metrics.lua')

local function close(a, b, tol, what)
  assert(math.abs(a - b) <= tol, ('%s: %.17g vs %.17g (tol %g)'):format(what or '', a, b, tol))
end

local function row(values) return T.from(values, { 1, #values }) end

--- The fixture maps (see scripts/make_metric_fixtures.py): exact rationals rounded to float32.
local function fixture_maps()
  local s = fixture.shape
  local n = s[1] * s[2] * s[3] * s[4]
  local a, b, c = {}, {}, {}
  for i = 0, n - 1 do
    local v = (7919 * i + 13) % 1009
    local av = v % 7 == 0 and 0 or (v - 504) / 1009
    a[i + 1] = av
    b[i + 1] = av + (((131 * i + 7) % 97) - 48) / 388
    c[i + 1] = math.floor(16 * av) / 16
  end
  return T.from(a, s), T.from(b, s), T.from(c, s)
end

describe('metrics against skimage / scipy / numpy', function()
  local a, b, c = fixture_maps()
  local cases = {
    { 'ssim_display', function() return metrics.ssim(a, b) end, 1e-9 },
    { 'ssim_display_ac', function() return metrics.ssim(a, c, { preset = 'display' }) end, 1e-9 },
    { 'ssim_pytorch', function() return metrics.ssim(a, b, { preset = 'pytorch_ssim' }) end, 1e-9 },
    { 'spearman_ab', function() return metrics.spearman(a, b) end, 1e-12 },
    { 'spearman_ac', function() return metrics.spearman(a, c) end, 1e-12 },
    { 'normalized_distance', function() return metrics.normalized_distance(a, b) end, 1e-12 },
    { 'topk_abs', function() return metrics.topk_intersection(a, b) end, 0 },
    { 'topk_signed', function() return metrics.topk_intersection(a, b, { signed = true }) end, 0 },
    { 'gini_a', function() return metrics.gini(a) end, 1e-12 },
    { 'gini_c', function() return metrics.gini(c) end, 1e-12 },
    { 'sparsity_a', function() return metrics.sparsity(a) end, 0 },
    { 'sparsity_c', function() return metrics.sparsity(c) end, 0 },
  }
  for _, cs in ipairs(cases) do
    it(cs[1], function()
      local got, want = cs[2](), fixture[cs[1]]
      assert.are.equal(#want, #got)
      for n = 1, #want do close(got[n], want[n], cs[3], cs[1] .. ' item ' .. n) end
    end)
  end
end)

describe('metrics by hand', function()
  it('normalized_distance', function()
    close(metrics.normalized_distance(row { 3, 4 }, row { 4, 3 })[1], math.sqrt(2) / 5, 1e-15)
    close(metrics.normalized_distance(row { 3, 4 }, row { 6, 8 })[1], 0, 1e-15, 'scale-free')
    close(metrics.normalized_distance(row { 0, 0 }, row { 1, 0 })[1], 1, 0, 'a zero map stays zero')
  end)

  it('topk_intersection: k = 40% of the nonzeros of a', function()
    local a = row { 5, 0, 3, 0, 1, 2, 0, -4, 0, 0 } -- 5 nonzeros: k = 2, top |a|: entries 1 and 8
    local b = row { 5, 1, 0, 0, 0, 0, 0, 0, 6, 0 } -- top 2: entries 9 and 1
    assert.are.same({ 0.5 }, metrics.topk_intersection(a, b))
    -- signed: top 2 of a are entries 1 (5) and 3 (3)
    assert.are.same({ 0.5 }, metrics.topk_intersection(a, b, { signed = true }))
    assert.are.same({ 1 / 3 }, metrics.topk_intersection(a, b, { k = 3 }))
    local nan = metrics.topk_intersection(row { 0, 0 }, row { 1, 0 })[1]
    assert.is_true(nan ~= nan, 'NaN for a zero map')
  end)

  it('spearman, with ties', function()
    close(metrics.spearman(row { 1, 2, 3, 4 }, row { 1, 3, 2, 4 })[1], 0.8, 1e-15)
    close(metrics.spearman(row { 1, 2, 2, 3 }, row { 1, 2, 3, 4 })[1], 4.5 / math.sqrt(22.5), 1e-15)
    close(metrics.spearman(row { 1, 2, 3, 4 }, row { 4, 3, 2, 1 })[1], -1, 1e-15)
  end)

  it('gini: one-hot 1 − 1/n, constant 0, [1, 2, 3, 4] 0.25', function()
    close(metrics.gini(row { 0, 0, 5, 0 })[1], 0.75, 1e-15)
    close(metrics.gini(row { 0, 0, 0, 0, 0, 0, 0, -2 })[1], 1 - 1 / 8, 1e-15)
    close(metrics.gini(row { 3, 3, 3, 3, 3 })[1], 0, 1e-15)
    close(metrics.gini(row { 1, 2, 3, 4 })[1], 0.25, 1e-15)
    close(metrics.gini(row { -4, 2, 3, -1 })[1], 0.25, 1e-15, 'of |a|, order-free')
    assert.are.same({ 0 }, metrics.gini(row { 0, 0 }))
  end)

  it('sparsity', function()
    assert.are.same({ 0.5, 0 }, metrics.sparsity(T.from({ 0, 1, 0, 2, 1, 1, 1, 1 }, { 2, 4 })))
  end)
end)

describe('metrics: properties', function()
  local a, b = fixture_maps()
  it('identical maps: distance 0, intersection 1, SSIM 1, Spearman 1', function()
    for n, v in ipairs(metrics.normalized_distance(a, a)) do close(v, 0, 1e-12, 'distance ' .. n) end
    assert.are.same({ 1, 1 }, metrics.topk_intersection(a, a))
    assert.are.same({ 1, 1 }, metrics.topk_intersection(a, a, { signed = true }))
    for _, p in ipairs { 'display', 'pytorch_ssim' } do
      for _, v in ipairs(metrics.ssim(a, a, { preset = p })) do close(v, 1, 1e-12, p) end
    end
    for _, v in ipairs(metrics.spearman(a, a)) do close(v, 1, 1e-12) end
  end)

  it('SSIM is symmetric', function()
    for _, p in ipairs { 'display', 'pytorch_ssim' } do
      local ab, ba = metrics.ssim(a, b, { preset = p }), metrics.ssim(b, a, { preset = p })
      for n = 1, 2 do close(ab[n], ba[n], 1e-12, p) end
    end
  end)

  it('raises on mismatched shapes, small maps and unknown presets', function()
    assert.has_error(function() metrics.normalized_distance(row { 1, 2 }, row { 1, 2, 3 }) end,
      'normalized_distance: maps of shapes 1x2 and 1x3 differ')
    assert.has_error(function() metrics.ssim(T.zeros { 1, 1, 8, 8 }, T.zeros { 1, 1, 8, 8 }) end,
      'ssim: display preset needs H and W >= 11 (the window), got 8x8')
    assert.has_error(function() metrics.ssim(a, b, { preset = 'x' }) end,
      "metrics.ssim: option 'preset' must be one of 'display', 'pytorch_ssim', got 'x'")
  end)
end)

describe('metrics: local Lipschitz and max-sensitivity', function()
  local function softplus_net()
    local bld = nn.builder({ 1, 6, 6 }, { seed = 2 })
    local h = bld:conv2d('c1', bld.input, 1, 4, 3, { padding = 1 })
    h = bld:softplus(h, { beta = 3 })
    return bld:build(bld:linear('fc', bld:flatten(h), 144, 3))
  end
  local function linear_net()
    local bld = nn.builder({ 1, 6, 6 }, { seed = 1 })
    return bld:build(bld:linear('fc', bld:flatten(bld.input), 36, 3))
  end
  local x = T.randn({ 2, 1, 6, 6 }, { seed = 31 })
  local labels = { 1, 2 }

  it('are 0 for a linear score (the gradient map is constant)', function()
    local net, m = linear_net(), methods.gradient()
    for _, v in ipairs(metrics.local_lipschitz(net, m, x, labels, { samples = 3 })) do close(v, 0, 1e-6) end
    for _, v in ipairs(metrics.max_sensitivity(net, m, x, labels, { samples = 3 })) do close(v, 0, 1e-6) end
  end)

  it('one sample, by hand', function()
    local net, m = softplus_net(), methods.gradient()
    local E = m:explain(net, x, labels)
    local z1, z2 = T.randn({ 36 }, { seed = 4, stream = 0, std = 0.1 }), T.randn({ 36 }, { seed = 4, stream = 1, std = 0.1 })
    local xj = x:clone()
    for i = 0, 35 do
      xj:data()[i] = xj:data()[i] + z1:data()[i]
      xj:data()[36 + i] = xj:data()[36 + i] + z2:data()[i]
    end
    local Ej = m:explain(net, xj, labels)
    local got = metrics.local_lipschitz(net, m, x, labels, { samples = 1, seed = 4, normalise = false })
    for n = 1, 2 do
      local num, den = 0, 0
      for i = (n - 1) * 36, n * 36 - 1 do
        num = num + (E:data()[i] - Ej:data()[i]) ^ 2
        den = den + (x:data()[i] - xj:data()[i]) ^ 2
      end
      close(got[n], math.sqrt(num / den), 1e-9 * got[n])
    end
    -- normalise_by_negative: positives / max, negatives / |min|
    local q = metrics.normalise_by_negative(T.from({ 2, -4, 1, 0 }, { 1, 4 }))
    assert.are.same({ 1, -1, 0.5, 0 }, q:totable())
  end)

  it('are seeded maxima: more samples never give less', function()
    local net, m = softplus_net(), methods.smoothgrad { samples = 3, seed = 2 }
    local l2 = metrics.local_lipschitz(net, m, x, labels, { samples = 2, seed = 9 })
    local l4 = metrics.local_lipschitz(net, m, x, labels, { samples = 4, seed = 9 })
    assert.are.same(l4, metrics.local_lipschitz(net, m, x, labels, { samples = 4, seed = 9 }))
    local s2 = metrics.max_sensitivity(net, m, x, labels, { samples = 2 })
    local s4 = metrics.max_sensitivity(net, m, x, labels, { samples = 4 })
    for n = 1, 2 do
      assert.is_true(l2[n] > 0 and l4[n] >= l2[n])
      assert.is_true(s2[n] > 0 and s4[n] >= s2[n])
    end
    assert.has_error(function() metrics.max_sensitivity(net, m, x, labels, { n = 2 }) end,
      "metrics.max_sensitivity: unknown option 'n' (abs, normalise, radius, samples, seed)")
  end)
end)
