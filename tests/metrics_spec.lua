-- Metrics (moreau.metrics): hand-computed values, properties (identical maps,
-- symmetry, one-hot and constant maps), and reference numbers from skimage /
-- scipy / numpy (tests/fixtures/metrics.lua, made by
-- scripts/make_metric_fixtures.py) on maps both sides build from the same
-- integer formulas. The rules of the module header: zeros and ties (issue 11's
-- example, closed forms, invariance under permutations of the positions), the
-- one NaN/Inf check, and batch-first shapes.
local T = require 'moreau.tensor'
local nn = require 'moreau.nn'
local methods = require 'moreau.methods'
local metrics = require 'moreau.metrics'
local data = require 'moreau.data'
local error_with = require('helpers.asserts').error_with

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
    { 'topk_abs', function() return metrics.topk_intersection(a, b) end, 1e-15 },
    { 'topk_signed', function() return metrics.topk_intersection(a, b, { signed = true }) end, 1e-15 },
    { 'topk_ac', function() return metrics.topk_intersection(a, c) end, 1e-15 },
    { 'topk_ca', function() return metrics.topk_intersection(c, a) end, 1e-15 },
    { 'topk_ca_signed', function() return metrics.topk_intersection(c, a, { signed = true }) end, 1e-15 },
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

  it('topk_intersection: k = 40% of the features (nonzero entries) of a', function()
    local a = row { 5, 0, 3, 0, 1, 2, 0, -4, 0, 0 } -- 5 nonzeros: k = 2, top |a|: entries 1 and 8
    local b = row { 5, 1, 0, 0, 0, 0, 0, 0, 6, 0 } -- top 2: entries 9 and 1
    assert.are.same({ 0.5 }, metrics.topk_intersection(a, b))
    -- signed: the features are the 4 positive entries, k = 1: entry 1 (5) against entry 9 (6)
    assert.are.same({ 0 }, metrics.topk_intersection(a, b, { signed = true }))
    -- signed, k = 2: entries 1 and 3 against 9 and 1
    assert.are.same({ 0.5 }, metrics.topk_intersection(a, b, { signed = true, k = 2 }))
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
      'ssim: display preset needs H and W >= 11 (the window), got H = 8, W = 8')
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
    local streams = methods.perturbation_streams(x)
    local z1 = T.randn({ 36 }, { seed = 4, stream = streams[1], std = 0.1 })
    local z2 = T.randn({ 36 }, { seed = 4, stream = streams[2], std = 0.1 })
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

-- ------------------------------------------------- zeros, ties, positions

--- t with the entries of each item moved by perm: entry j (1-based) goes to perm[j].
local function permuted(t, perm)
  local N = t:size(1)
  local d = t:numel() / N
  local out = T.zeros(t:shape())
  local p, q = t:data(), out:data()
  for n = 0, N - 1 do
    for j = 1, d do q[n * d + perm[j] - 1] = p[n * d + j - 1] end
  end
  return out
end

--- A map of integers in -4..4 (many ties, about 1/9 zeros), seeded.
local function tied_map(shape, seed, stream)
  local u = T.rand(shape, { seed = seed, stream = stream })
  local t = T.zeros(shape)
  for i = 0, t:numel() - 1 do t:data()[i] = math.floor(9 * u:data()[i]) - 4 end
  return t
end

describe('metrics: zeros and ties', function()
  --- Issue 11's example: the clean map is nonzero (strictly decreasing) on the
  -- first 100 pixels of a 1x1x28x28 image, the attacked map all zero.
  local function example()
    local a, b = T.zeros { 1, 1, 28, 28 }, T.zeros { 1, 1, 28, 28 }
    for i = 0, 99 do a:data()[i] = 100 - i end
    local flip = {}
    for j = 1, 784 do
      local h, w = math.floor((j - 1) / 28), (j - 1) % 28
      flip[j] = (27 - h) * 28 + w + 1
    end
    return a, b, flip
  end

  it('a zero entry is never a top-k feature: an all-zero attacked map scores 0, flipped or not', function()
    local a, b, flip = example()
    local af, bf = permuted(a, flip), permuted(b, flip)
    for _, o in ipairs { {}, { k = 200 }, { k = 40 }, { signed = true }, { signed = true, k = 200 } } do
      assert.are.same({ 0 }, metrics.topk_intersection(a, b, o))
      assert.are.same({ 0 }, metrics.topk_intersection(af, bf, o))
    end
    -- fewer than k features (k = 200 > 100): the top-k set of a is its 100 features
    assert.are.same({ 1 }, metrics.topk_intersection(a, a, { k = 200 }))
    local half = a:clone()
    for i = 50, 99 do half:data()[i] = 0 end
    assert.are.same({ 0.5 }, metrics.topk_intersection(a, half, { k = 200 }))
    assert.are.same({ 0.5 }, metrics.topk_intersection(af, permuted(half, flip), { k = 200 }))
    -- the attacked map has fewer than k features: only those can match
    assert.are.same({ 50 / 80 }, metrics.topk_intersection(a, half, { k = 80 }))
    -- an all-zero original has no top-k features: NaN, with or without k
    for _, o in ipairs { {}, { k = 5 } } do
      local v = metrics.topk_intersection(b, a, o)[1]
      assert.is_true(v ~= v, 'NaN for an all-zero original')
    end
    local neg = metrics.topk_intersection(row { -1, -2, 0 }, row { 1, 2, 3 }, { signed = true })
    assert.is_true(neg[1] ~= neg[1], 'signed: NaN when a has no positive entry')
  end)

  it('a tie at the k-th place is shared: memberships (k - g)/t, fuzzy intersection', function()
    -- a: entry 1 above, entries 2..4 tied for the one place left (1/3 each)
    local a = row { 3, 2, 2, 2, 0, 0 }
    local m, size, f = metrics.topk_members(a, 1, 2)
    assert.are.same({ [0] = 1, [1] = 1 / 3, [2] = 1 / 3, [3] = 1 / 3 }, m)
    assert.are.equal(2, size)
    assert.are.equal(1 / 3, f)
    -- b's top 2 are entries 4 and 5: they share min(1/3, 1) of entry 4
    close(metrics.topk_intersection(a, row { 0, 0, 0, 5, 4, 0 }, { k = 2 })[1], (1 / 3) / 2, 1e-16)
    -- reversed positions, the same score (a lower-index rule gives 0 one way, 1/2 the other)
    close(metrics.topk_intersection(row { 0, 0, 2, 2, 2, 3 }, row { 0, 4, 5, 0, 0, 0 }, { k = 2 })[1],
      (1 / 3) / 2, 1e-16)
    -- both maps split a tie: min(1/3, 1/3) on entries 2 and 3
    close(metrics.topk_intersection(row { 2, 2, 2, 0 }, row { 0, 1, 1, 1 }, { k = 1 })[1], 2 / 3, 1e-16)
    -- a tied map against itself keeps everything
    assert.are.same({ 1 }, metrics.topk_intersection(a, a, { k = 2 }))
    assert.are.same({ 1 }, metrics.topk_intersection(row { 1, 1, 1, 1, 1 }, row { 1, 1, 1, 1, 1 }, { k = 2 }))
    -- a block that fits entirely is not split
    local m2, size2, f2 = metrics.topk_members(row { 3, 2, 2, 1 }, 1, 3)
    assert.are.same({ [0] = 1, [1] = 1, [2] = 1 }, m2)
    assert.are.same({ 3, 1 }, { size2, f2 })
    -- signed: negative entries are not features
    local m3, size3 = metrics.topk_members(row { -5, 0, 2, -1 }, 1, 3, true)
    assert.are.same({ [2] = 1 }, m3)
    assert.are.equal(1, size3)
    -- k is a count of places
    for _, k in ipairs { 0, 2.5, -1 } do
      error_with(function() metrics.topk_intersection(a, a, { k = k }) end,
        "topk_intersection: option 'k' must be an integer >= 1, got " .. tostring(k))
      error_with(function() metrics.topk_members(a, 1, k) end, 'metrics.topk_members: k must be an integer >= 1')
    end
  end)

  it('topk_members: the checks every metric runs, items 1-based', function()
    local a = T.from({ 3, 1, 2, 0, 5, 4 }, { 2, 3 })
    error_with(function() metrics.topk_members(row { 1, 0 / 0, 2 }, 1, 1) end,
      'metrics.topk_members: item 1 of the map has NaN at position 2 of 3')
    error_with(function() metrics.topk_members(row { 1, 2, math.huge }, 1, 1) end,
      'metrics.topk_members: item 1 of the map has Inf at position 3 of 3')
    error_with(function() metrics.topk_members(T.zeros { 1, 2, 2 }, 1, 1) end,
      'metrics.topk_members: the map is 1x2x2, a 3-D tensor')
    error_with(function() metrics.topk_members(nil, 1, 1) end, 'metrics.topk_members: the map must be a tensor, got nil')
    error_with(function() metrics.topk_members({ 1, 2 }, 1, 1) end,
      'metrics.topk_members: the map must be a tensor, got table')
    for _, n in ipairs { 0, 3, 1.5, -1 } do
      error_with(function() metrics.topk_members(a, n, 1) end,
        ('metrics.topk_members: item %s outside 1..2'):format(tostring(n)))
    end
    error_with(function() metrics.topk_members(a, nil, 1) end, 'metrics.topk_members: item nil outside 1..2')
    local m = metrics.topk_members(a, 2, 1)
    assert.are.same({ [1] = 1 }, m) -- item 2 is {0, 5, 4}: the top-1 is position 1 (0-based)
  end)

  it('spearman: zeros are one tie block with their average rank', function()
    -- ranks of a = (0, 2, 0, 1): (1.5, 4, 1.5, 3), of b: (1, 4, 2, 3); centered at 2.5,
    -- Σ xy = 1.5 + 2.25 + 0.5 + 0.25 = 4.5, Σ x² = 4.5, Σ y² = 5
    local want = 4.5 / math.sqrt(4.5 * 5)
    close(metrics.spearman(row { 0, 2, 0, 1 }, row { 1, 4, 2, 3 })[1], want, 1e-15)
    close(metrics.spearman(row { 2, 0, 1, 0 }, row { 4, 1, 3, 2 })[1], want, 1e-15, 'permuted')
  end)

  for _, seed in ipairs { 1, 2, 3 } do
    it(('no score depends on where the entries sit (random permutations, seed %d)'):format(seed), function()
      local shape = { 2, 3, 7, 9 }
      local a, b = tied_map(shape, seed, 1), tied_map(shape, seed, 2)
      -- b agrees with a on about half the entries, so the top-k sets overlap
      for i = 0, a:numel() - 1, 2 do b:data()[i] = a:data()[i] end
      local perm = data.permutation(189, seed, 3)
      local ap, bp = permuted(a, perm), permuted(b, perm)
      local function all(x, y)
        return {
          metrics.topk_intersection(x, y), metrics.topk_intersection(x, y, { signed = true }),
          metrics.topk_intersection(x, y, { k = 10 }), metrics.topk_intersection(x, y, { k = 57 }),
          metrics.topk_intersection(x, y, { k = 170 }), metrics.topk_intersection(x, y, { k = 170, signed = true }),
          metrics.spearman(x, y), metrics.gini(x), metrics.sparsity(x),
        }
      end
      local before, after = all(a, b), all(ap, bp)
      for i = 1, #before do
        for n = 1, 2 do
          assert(before[i][n] == after[i][n], ('seed %d, score %d, item %d: %.17g before, %.17g permuted')
            :format(seed, i, n, before[i][n], after[i][n]))
        end
      end
      -- the scores are not trivial: ties straddle the k-th place
      local _, _, f = metrics.topk_members(a, 1, 10)
      assert(f > 0 and f < 1, ('seed %d: no split tie at k = 10'):format(seed))
    end)
  end
end)

-- -------------------------------------------------------------- NaN / Inf

describe('metrics: NaN and Inf raise, naming the metric, the item and the position', function()
  local shape = { 2, 2, 12, 12 } -- d = 288
  --- A finite pair with v at entry j (0-based within item n, 1-based) of a or b.
  local function pair(which, n, j, v)
    local a, b = tied_map(shape, 7, 1), tied_map(shape, 7, 2)
    local t = which == 'a' and a or b
    t:data()[(n - 1) * 288 + j] = v
    return a, b
  end
  local pairs_ = {
    { 'normalized_distance', metrics.normalized_distance },
    { 'topk_intersection', metrics.topk_intersection },
    { 'topk_intersection', function(a, b) return metrics.topk_intersection(a, b, { signed = true, k = 3 }) end },
    { 'ssim', metrics.ssim },
    { 'ssim', function(a, b) return metrics.ssim(a, b, { preset = 'pytorch_ssim' }) end },
    { 'spearman', metrics.spearman },
  }
  local singles = { { 'gini', metrics.gini }, { 'sparsity', metrics.sparsity },
    { 'metrics.normalise_by_negative', metrics.normalise_by_negative } }
  -- (item, 0-based j, value, the message's tail)
  local spots = {
    { 1, 0, 0 / 0, 'item 1 of %s has NaN at position 1 of 288 (c=1, h=1, w=1)' },
    { 2, 287, math.huge, 'item 2 of %s has Inf at position 288 of 288 (c=2, h=12, w=12)' },
    { 2, 144 + 2 * 12 + 3, -math.huge, 'item 2 of %s has -Inf at position 172 of 288 (c=2, h=3, w=4)' },
    { 1, 13, 0 / 0, 'item 1 of %s has NaN at position 14 of 288 (c=1, h=2, w=2)' },
  }
  for _, m in ipairs(pairs_) do
    it(m[1], function()
      for _, sp in ipairs(spots) do
        for _, which in ipairs { 'a', 'b' } do
          local a, b = pair(which, sp[1], sp[2], sp[3])
          local err = error_with(function() m[2](a, b) end, m[1] .. ': ' .. sp[4]:format(which))
          assert(not err:find('metrics.lua'), 'raised at the caller: ' .. err)
        end
      end
    end)
  end
  for _, m in ipairs(singles) do
    it(m[1], function()
      local name = m[1] == 'metrics.normalise_by_negative' and 'E' or 'a'
      for _, sp in ipairs(spots) do
        local a = pair('a', sp[1], sp[2], sp[3])
        error_with(function() m[2](a) end, m[1] .. ': ' .. sp[4]:format(name))
      end
      -- (N, d) maps: the position alone
      error_with(function() m[2](T.from({ 1, 2, 3, 0 / 0 }, { 2, 2 })) end,
        m[1] .. ': item 2 of ' .. name .. ' has NaN at position 2 of 2')
    end)
  end

  describe('the robustness estimates check x and every map they compute', function()
    local bld = nn.builder({ 1, 6, 6 }, { seed = 1 })
    local net = bld:build(bld:linear('fc', bld:flatten(bld.input), 36, 3))
    local x = T.randn({ 2, 1, 6, 6 }, { seed = 31 })
    --- The gradient map, with NaN at entry 8 of item 2 from the `bad`-th call on.
    local function nan_method(bad)
      local calls, g = 0, methods.gradient()
      return { name = 'nan', explain = function(_, net_, x_, labels_)
        calls = calls + 1
        local E = g:explain(net_, x_, labels_)
        if calls >= bad then E:data()[36 + 7] = 0 / 0 end
        return E
      end }
    end
    for _, f in ipairs { 'local_lipschitz', 'max_sensitivity' } do
      it(f, function()
        local xn = x:clone()
        xn:data()[40] = math.huge
        error_with(function() metrics[f](net, methods.gradient(), xn, { 0, 1 }, { samples = 2 }) end,
          'metrics.' .. f .. ': item 2 of x has Inf at position 5 of 36 (c=1, h=1, w=5)')
        error_with(function() metrics[f](net, nan_method(1), x, { 0, 1 }, { samples = 2 }) end,
          'metrics.' .. f .. ': item 2 of the map of x has NaN at position 8 of 36 (c=1, h=2, w=2)')
        error_with(function() metrics[f](net, nan_method(3), x, { 0, 1 }, { samples = 3 }) end,
          'metrics.' .. f .. ': item 2 of the map of sample 2 has NaN at position 8 of 36')
      end)
    end
  end)
end)

-- ------------------------------------------------------------------ shapes

describe('metrics: maps are batch first, (N, C, H, W) or (N, d)', function()
  local m4 = T.ones { 1, 1, 28, 28 }
  local all = {
    { 'normalized_distance', metrics.normalized_distance, 2 },
    { 'topk_intersection', metrics.topk_intersection, 2 },
    { 'ssim', metrics.ssim, 2 },
    { 'spearman', metrics.spearman, 2 },
    { 'gini', metrics.gini, 1 },
    { 'sparsity', metrics.sparsity, 1 },
    { 'metrics.normalise_by_negative', metrics.normalise_by_negative, 1, 'E' },
  }
  for _, m in ipairs(all) do
    it(m[1] .. ' refuses a 3-D map and a 1-D tensor, and compares shapes, not sizes', function()
      local name = m[4] or 'a'
      local rgb = T.ones { 3, 28, 28 }
      error_with(function() m[2](rgb, rgb) end, m[1] .. ': ' .. name .. ' is 3x28x28, a 3-D tensor; maps are batch '
        .. 'first, (N, C, H, W) or (N, d): add a batch dim, x:reshape{1, 3, 28, 28}')
      error_with(function() m[2](T.ones { 784 }, T.ones { 784 }) end,
        m[1] .. ': ' .. name .. ' is 784; maps are batch first, (N, C, H, W) or (N, d)')
      if m[3] == 2 then
        error_with(function() m[2](m4, T.ones { 1, 784 }) end, m[1] .. ': maps of shapes 1x1x28x28 and 1x784 differ')
        error_with(function() m[2](m4, rgb) end, m[1] .. ': b is 3x28x28, a 3-D tensor')
        error_with(function() m[2](m4, T.ones { 28, 1, 28, 1 }) end,
          m[1] .. ': maps of shapes 1x1x28x28 and 28x1x28x1 differ')
      end
    end)
  end

  it('(N, d) maps work for every metric but ssim, and give the (N, C, H, W) values', function()
    local a, b = tied_map({ 2, 1, 12, 12 }, 5, 1), tied_map({ 2, 1, 12, 12 }, 5, 2)
    local af, bf = a:reshape { 2, 144 }, b:reshape { 2, 144 }
    assert.are.same(metrics.topk_intersection(a, b), metrics.topk_intersection(af, bf))
    assert.are.same(metrics.spearman(a, b), metrics.spearman(af, bf))
    assert.are.same(metrics.normalized_distance(a, b), metrics.normalized_distance(af, bf))
    assert.are.same(metrics.gini(a), metrics.gini(af))
    assert.are.same(metrics.sparsity(a), metrics.sparsity(af))
    error_with(function() metrics.ssim(af, bf) end, 'ssim: maps must be (N, C, H, W), got 2x144')
  end)

  it('local_lipschitz and max_sensitivity refuse a 3-D x', function()
    local bld = nn.builder({ 1, 6, 6 }, { seed = 1 })
    local net = bld:build(bld:linear('fc', bld:flatten(bld.input), 36, 3))
    for _, f in ipairs { 'local_lipschitz', 'max_sensitivity' } do
      error_with(function() metrics[f](net, methods.gradient(), T.ones { 1, 6, 6 }, { 0 }, { samples = 1 }) end,
        'metrics.' .. f .. ': x is 1x6x6, a 3-D tensor; maps are batch first, (N, C, H, W) or (N, d): add a '
        .. 'batch dim, x:reshape{1, 1, 6, 6}')
    end
  end)
end)
