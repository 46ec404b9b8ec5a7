-- Faithfulness curves (moreau.faithfulness, also moreau.metrics.faithfulness):
-- closed forms on a linear score f(x) = w·x + b, where deleting pixel i moves
-- the logit by exactly −w_i x_i; ROAD's imputation by hand on 3×3 images;
-- curves of a 2-layer net against an independent numpy implementation
-- (tests/fixtures/faithfulness/fixture.lua, made by
-- scripts/make_faithfulness_fixtures.py); the tie-breaking rule; batching
-- invariance (the chunk size changes no bit); and the errors.
local T = require 'moreau.tensor'
local nn = require 'moreau.nn'
local models = require 'moreau.models'
local metrics = require 'moreau.metrics'
local F = require 'moreau.faithfulness'
local error_with = require('helpers.asserts').error_with

local fixture = dofile('tests/fixtures/faithfulness/fixture.lua')

local function close(a, b, tol, what)
  assert(math.abs(a - b) <= tol, ('%s: %.17g vs %.17g (tol %g)'):format(what or '', a, b, tol))
end

local function same_list(want, got, tol, what)
  assert.are.equal(#want, #got, what .. ': length')
  for i = 1, #want do close(want[i], got[i], tol, ('%s[%d]'):format(what, i)) end
end

--- f(x) = w·x + b on (1, 2, 2) images: one linear layer after a flatten.
-- w = (1, 2, −1, 0.5), b = 0.25; x = (1, 1, 2, 2): the contributions w_i x_i are
-- (1, 2, −2, 1), with a tie between positions 0 and 3; f(x) = 2.25.
local function linear_case()
  local b = nn.builder { 1, 2, 2 }
  local net = b:build(b:linear('fc', b:flatten(b.input), 4, 1))
  net:param('fc.weight'):copy(T.from({ 1, 2, -1, 0.5 }, { 1, 4 }))
  net:param('fc.bias'):copy(T.from({ 0.25 }, { 1 }))
  local x = T.from({ 1, 1, 2, 2 }, { 1, 1, 2, 2 })
  local map = T.from({ 1, 2, -2, 1 }, { 1, 1, 2, 2 }) -- input × gradient: w ⊙ x
  return net, x, map
end

describe('faithfulness on a linear score (closed forms)', function()
  local net, x, map = linear_case()
  local L = { score = 'logit', step = 1 }

  it('deletion, MoRF: each step removes exactly w_i x_i, ties by the lower position', function()
    -- order: position 1 (2), then the tie 0 and 3 (1 each: 0 first), then 2 (−2)
    local r = F.deletion(net, x, map, { 0 }, L)
    assert.are.same({ 1, 0, 3, 2 }, F.ranking(map)[1])
    assert.are.same({ 2.25, 0.25, -0.75, -1.75, 0.25 }, r.curves[1])
    assert.are.same({ 0, 0.25, 0.5, 0.75, 1 }, r.fractions)
    assert.are.same({ 0, 1, 2, 3, 4 }, r.counts)
    -- trapezoid: 0.25·[(2.25 + 0.25) + (0.25 − 0.75) + (−0.75 − 1.75) + (−1.75 + 0.25)]/2 = −0.25
    assert.are.equal(-0.25, r.auc[1])
    -- AOPC: mean of y_0 − y_s = (0 + 2 + 3 + 4 + 2)/5
    close(2.2, r.aopc[1], 1e-15, 'aopc')
  end)

  it('deletion, LeRF: ascending contributions, the tie still lower position first', function()
    local r = F.deletion(net, x, map, { 0 }, { score = 'logit', step = 1, order = 'lerf' })
    assert.are.same({ 2, 0, 3, 1 }, F.ranking(map, { order = 'lerf' })[1])
    assert.are.same({ 2.25, 4.25, 3.25, 2.25, 0.25 }, r.curves[1])
  end)

  it('insertion from a zero baseline adds w_i x_i back, most relevant first', function()
    local r = F.insertion(net, x, map, { 0 }, { score = 'logit', step = 1, baseline = 'zero' })
    assert.are.same({ 0.25, 2.25, 3.25, 4.25, 2.25 }, r.curves[1])
    -- 0.25·[(0.25 + 2.25) + (2.25 + 3.25) + (3.25 + 4.25) + (4.25 + 2.25)]/2 = 2.75
    assert.are.equal(2.75, r.auc[1])
  end)

  it('pixel-flipping is one pixel a step, the logit, the zero baseline by default', function()
    local r = F.pixel_flipping(net, x, map, { 0 })
    assert.are.same({ 2.25, 0.25, -0.75, -1.75, 0.25 }, r.curves[1])
    assert.are.equal(1, r.options.step)
    assert.are.equal('logit', r.options.score)
  end)

  it('a constant baseline c moves the logit by w_i (c − x_i); step 3 of 4 pixels ends at all 4', function()
    local r = F.deletion(net, x, map, { 0 }, { score = 'logit', step = 3, baseline = 1 })
    -- first 3 of the order (1, 0, 3) set to 1: x = (1, 1, 2, 1): 1 + 2 − 2 + 0.5 + 0.25
    assert.are.same({ 0, 3, 4 }, r.counts)
    assert.are.same({ 2.25, 1.75, 2.75 }, r.curves[1])
    assert.are.same({ 0, 0.75, 1 }, r.fractions)
  end)

  it('the probability of a one-output net is 1 at every step', function()
    local r = F.deletion(net, x, map, { 0 }, { step = 2 })
    assert.are.same({ 1, 1, 1 }, r.curves[1])
  end)

  it('the mean baseline is each channel mean of the item', function()
    -- mean of x = 1.5: deleting position 1 moves f by 2·(1.5 − 1) = 1
    local r = F.deletion(net, x, map, { 0 }, { score = 'logit', step = 1, baseline = 'mean' })
    assert.are.equal(3.25, r.curves[1][2])
  end)

  it('ROAD on the linear score: the logit of the imputed image', function()
    local r = F.road(net, x, map, { 0 }, { score = 'logit', sigma = 0, fractions = { 0, 0.25 } })
    -- P = 4, f = 0.25: one pixel, position 1 (h = 1, w = 2), removed; its neighbours
    -- inside the image: (1,1) direct x = 1, (2,2) direct x = 2, (2,1) diagonal x = 2:
    -- (1/6 + 2/6 + 2/12) / (1/6 + 1/6 + 1/12) = (8/12) / (5/12) = 1.6
    assert.are.same({ 0, 1 }, r.counts)
    close(2.25, r.curves[1][1], 0, 'f(x)')
    close(2.25 + 2 * (1.6 - 1), r.curves[1][2], 1e-6, 'f(imputed)')
  end)
end)

describe('ROAD noisy linear imputation', function()
  local x = T.from({ 1, 2, 3, 4, 5, 6, 7, 8, 10 }, { 1, 1, 3, 3 })
  local function mask(list)
    local m = T.zeros { 1, 1, 3, 3 }
    for _, p in ipairs(list) do m:set(1, 1, 1, math.floor(p / 3) + 1, p % 3 + 1) end
    return m
  end

  it('a removed interior pixel is the 1/6, 1/12 weighted mean of its 8 neighbours', function()
    local out = F.noisy_linear_imputation(x, mask { 4 }, { sigma = 0 })
    -- direct 2, 4, 6, 8; diagonal 1, 3, 7, 10: (20/6 + 21/12) / 1
    close(20 / 6 + 21 / 12, out:get(1, 1, 2, 2), 1e-6, 'center')
    for _, p in ipairs { 0, 1, 2, 3, 5, 6, 7, 8 } do
      assert.are.equal(x:get(1, 1, math.floor(p / 3) + 1, p % 3 + 1), out:get(1, 1, math.floor(p / 3) + 1, p % 3 + 1))
    end
  end)

  it('a corner pixel uses the neighbours that exist, weights renormalized', function()
    local out = F.noisy_linear_imputation(x, mask { 0 }, { sigma = 0 })
    -- (2/6 + 4/6 + 5/12) / (5/12) = 17/5
    close(17 / 5, out:get(1, 1, 1, 1), 1e-6, 'corner')
  end)

  it('two adjacent removed pixels solve their 2×2 system', function()
    -- removed 4 (center) and 5 (right middle). Center: u4 = (2+4+8)/6 + (1+3+7+10)/12 + u5/6;
    -- pixel 5: (5/12) u5 = (3 + 10... its neighbours: 2 (h0,w1 diag: 2), 3 (h0,w2 direct: 3),
    -- 4 (center, direct: u4), 7 (h2,w1 diag: 8), 8 (h2,w2 direct: 10):
    -- (1/6 + 1/6 + 1/6 + 1/12 + 1/12) u5 = (3 + 10)/6 + (2 + 8)/12 + u4/6
    local a4 = (2 + 4 + 8) / 6 + (1 + 3 + 7 + 10) / 12
    local a5 = (3 + 10) / 6 + (2 + 8) / 12
    -- u4 − u5/6 = a4; (2/3) u5 − u4/6 = a5
    local u5 = (a5 + a4 / 6) / (2 / 3 - 1 / 36)
    local u4 = a4 + u5 / 6
    local out = F.noisy_linear_imputation(x, mask { 4, 5 }, { sigma = 0 })
    close(u4, out:get(1, 1, 2, 2), 1e-5, 'u4')
    close(u5, out:get(1, 1, 2, 3), 1e-5, 'u5')
  end)

  it('adds seeded Gaussian noise on the removed pixels only', function()
    local seed = 7
    local m = mask { 0, 4, 8 }
    local clean = F.noisy_linear_imputation(x, m, { sigma = 0 })
    local a = F.noisy_linear_imputation(x, m, { sigma = 0.5, seed = seed })
    local b = F.noisy_linear_imputation(x, m, { sigma = 0.5, seed = seed })
    local c = F.noisy_linear_imputation(x, m, { sigma = 0.5, seed = seed + 1 })
    assert.are.same(a:totable(), b:totable(), 'seed ' .. seed)
    assert.are_not.same(a:totable(), c:totable(), 'seed ' .. seed)
    local ta, tc = a:totable(), clean:totable()
    for p = 0, 8 do
      if p == 0 or p == 4 or p == 8 then
        assert.are_not.equal(tc[p + 1], ta[p + 1], 'seed ' .. seed)
      else
        assert.are.equal(tc[p + 1], ta[p + 1])
      end
    end
  end)

  it('refuses a mask of other values and an item with every pixel removed', function()
    error_with(function() F.noisy_linear_imputation(x, T.full({ 1, 1, 3, 3 }, 0.5)) end,
      'removed must hold 0 (kept) or 1 (removed), got 0.5 at item 1, position 1')
    error_with(function() F.noisy_linear_imputation(x, T.ones { 1, 1, 3, 3 }) end,
      'item 1 has all 9 pixels removed')
    error_with(function() F.noisy_linear_imputation(x, T.zeros { 1, 1, 3, 2 }) end,
      'removed must be a tensor (N, 1, H, W) = 1x1x3x3, got 1x1x3x2')
  end)
end)

--- The fixture's 2-layer net, images, maps.
local function fixture_net()
  local s = fixture.shape
  local b = nn.builder { s[2], s[3], s[4] }
  local h = b:linear('fc1', b:flatten(b.input), s[2] * s[3] * s[4], 6)
  h = b:softplus(h)
  local net = b:build(b:linear('fc2', h, 6, 3))
  net:param('fc1.weight'):copy(T.from(fixture.fc1_weight, { 6, s[2] * s[3] * s[4] }))
  net:param('fc1.bias'):copy(T.from(fixture.fc1_bias, { 6 }))
  net:param('fc2.weight'):copy(T.from(fixture.fc2_weight, { 3, 6 }))
  net:param('fc2.bias'):copy(T.from(fixture.fc2_bias, { 3 }))
  return net, T.from(fixture.x, s), T.from(fixture.maps, s)
end

describe('faithfulness against an independent numpy implementation', function()
  local net, x, maps = fixture_net()

  it('has ties in map 1, so the tie-breaking rule is exercised', function()
    local m, P = maps:totable(), 16
    local seen, tie = {}, false
    for p = 1, P do
      local r = m[p] + m[P + p]
      if seen[r] then tie = true end
      seen[r] = true
    end
    assert.is_true(tie)
  end)

  for _, cs in ipairs(fixture.cases) do
    it(cs.name, function()
      local r = F[cs.kind](net, x, maps, fixture.labels, cs.opts)
      assert.are.same(cs.counts, r.counts)
      local rk = F.ranking(maps, { order = cs.opts.order, abs = cs.opts.abs })
      for n = 1, 2 do
        assert.are.same(cs.ranking[n], rk[n], 'ranking of item ' .. n)
        same_list(cs.curves[n], r.curves[n], 1e-5, cs.name .. ' curve ' .. n)
        close(cs.auc[n], r.auc[n], 1e-5, cs.name .. ' auc ' .. n)
        close(cs.aopc[n], r.aopc[n], 1e-5, cs.name .. ' aopc ' .. n)
      end
    end)
  end
end)

describe('faithfulness rules', function()
  it('breaks ties by the lower position first in both orders', function()
    local m = T.from({ 0, 1, 1, 0, 1, 0 }, { 1, 1, 2, 3 })
    assert.are.same({ 1, 2, 4, 0, 3, 5 }, F.ranking(m)[1])
    assert.are.same({ 0, 3, 5, 1, 2, 4 }, F.ranking(m, { order = 'lerf' })[1])
    assert.are.same({ 0, 1, 2, 3, 4, 5 }, F.ranking(T.zeros { 1, 1, 2, 3 })[1])
  end)

  it('ranks by Σ_c map (abs: Σ_c |map|); a (N, 1, H, W) map is one relevance per pixel', function()
    local net, x, maps = fixture_net()
    local s, m = fixture.shape, maps:totable()
    local P = s[3] * s[4]
    local sum = {}
    for n = 0, s[1] - 1 do
      for p = 1, P do sum[n * P + p] = m[n * 2 * P + p] + m[n * 2 * P + P + p] end
    end
    local pix = T.from(sum, { s[1], 1, s[3], s[4] })
    assert.are.same(F.ranking(maps), F.ranking(pix))
    local a = F.deletion(net, x, maps, fixture.labels)
    local b = F.deletion(net, x, pix, fixture.labels)
    assert.are.same(a.curves, b.curves)
  end)

  it('the chunk size changes no bit (every kind, a conv net)', function()
    local seed = 3
    local net = models.resnet_fmnist { width = 0.25, seed = seed }
    local x = T.randn({ 3, 1, 28, 28 }, { seed = seed })
    local map = T.randn({ 3, 1, 28, 28 }, { seed = seed + 1 })
    local labels = { 1, 4, 7 }
    for _, kind in ipairs { 'deletion', 'insertion', 'pixel_flipping', 'road' } do
      local opts = kind == 'pixel_flipping' and { step = 98 } or (kind == 'road' and { seed = seed } or {})
      local ref
      for _, chunk in ipairs { 1, 5, 29, 256 } do
        opts.chunk = chunk
        local r = F[kind](net, x, map, labels, opts)
        if not ref then ref = r else
          assert.are.same(ref.curves, r.curves, ('%s chunk %d (seed %d)'):format(kind, chunk, seed))
        end
      end
    end
  end)

  it('runs in a sandboxed recipe (copies, never tensor:data) with the same bits', function()
    local seed = 4
    local core = require 'moreau.core'
    local sandbox = require 'moreau.sandbox'
    local net = models.resnet_fmnist { width = 0.25, seed = seed }
    local x = T.randn({ 2, 1, 28, 28 }, { seed = seed })
    local map = T.randn({ 2, 1, 28, 28 }, { seed = seed + 1 })
    local recipe = assert(loadstring([[
      local net, x, map, kind, opts = ...
      return moreau.metrics.faithfulness[kind](net, x, map, { 3, 8 }, opts)
    ]]))
    setfenv(recipe, sandbox.env())
    for _, kind in ipairs { 'deletion', 'insertion', 'pixel_flipping', 'road' } do
      local opts = kind == 'pixel_flipping' and { step = 98 } or (kind == 'road' and { seed = seed } or
        { baseline = kind == 'deletion' and 'mean' or 'blur' })
      local ref = F[kind](net, x, map, { 3, 8 }, opts)
      core.sandboxed = true
      local ok, r = pcall(recipe, net, x, map, kind, opts)
      core.sandboxed = false
      assert(ok, r)
      assert.are.same(ref.curves, r.curves, ('%s (seed %d)'):format(kind, seed))
    end
  end)

  it('sizes the scores from the tensor the network returns, not from methods a recipe can replace', function()
    local net = models.resnet_fmnist { width = 0.25, seed = 1 }
    local x = T.randn({ 1, 1, 28, 28 }, { seed = 1 })
    local map = T.randn({ 1, 1, 28, 28 }, { seed = 2 })
    net.output_shape = function() return { 100000000 } end
    net.forward_inference = function() return T.zeros { 1, 1 } end
    error_with(function() F.deletion(net, x, map, { 99999999 }, { score = 'logit', step = 392 }) end,
      'faithfulness.deletion: the network returned 1x1 for a batch of 3; expected 3x100000000 class scores')
    net.output_shape = nil
    error_with(function() F.deletion(net, x, map, { 9 }, { step = 392 }) end,
      'faithfulness.deletion: the network returned 1x1 for a batch of 3; expected 3x10 class scores')
  end)

  it('is moreau.metrics.faithfulness', function()
    assert.are.equal(F, metrics.faithfulness)
    assert.are.equal(F, require('moreau').faithfulness)
  end)
end)

describe('faithfulness errors', function()
  local net, x, map = linear_case()
  it('name the problem', function()
    error_with(function() F.deletion(net, x, T.zeros { 1, 1, 2, 3 }, { 0 }) end,
      'faithfulness.deletion: map has shape 1x1x2x3, x has shape 1x1x2x2; the map must be shaped like x')
    local bad = map:clone()
    bad:set(0 / 0, 1, 1, 2, 1)
    error_with(function() F.insertion(net, x, bad, { 0 }) end,
      'faithfulness.insertion: item 1 of map has NaN at position 3 of 4 (c=1, h=2, w=1)')
    error_with(function() F.deletion(net, x, map, { 0 }, { order = 'random' }) end,
      "faithfulness.deletion: option 'order' must be one of 'morf', 'lerf', got 'random'")
    error_with(function() F.deletion(net, x, map, { 0 }, { baseline = 'black' }) end,
      "faithfulness.deletion: option 'baseline' must be one of zero, mean, blur, a finite number or a tensor " ..
      "shaped like x, got 'black'")
    error_with(function() F.deletion(net, x, map, { 0 }, { baseline = 0 / 0 }) end, "option 'baseline'")
    error_with(function() F.deletion(net, x, map, { 0 }, { baseline = T.zeros { 1, 1, 2, 3 } }) end,
      "option 'baseline' has shape 1x1x2x3, x has shape 1x1x2x2")
    error_with(function() F.pixel_flipping(net, x, map, { 0 }, { score = 'softmax' }) end,
      "option 'score' must be one of 'probability', 'logit'")
    error_with(function() F.deletion(net, x, map, { 0 }, { step = 5 }) end,
      "faithfulness.deletion: option 'step' must be at most the 4 pixels of an item, got 5")
    error_with(function() F.road(net, x, map, { 0 }, { baseline = 'zero' }) end,
      "faithfulness.road: unknown option 'baseline'")
    error_with(function() F.road(net, x, map, { 0 }, { fractions = { 0, 1 } }) end,
      "faithfulness.road: option 'fractions' must hold numbers in [0, 1)")
    error_with(function() F.road(net, x, map, { 0 }, { fractions = { 0.5, 0.25 } }) end,
      "option 'fractions' must increase, got 0.25 after 0.5")
    error_with(function() F.deletion(net, x, map, { 0, 1 }) end, '2 labels for a batch of 1')
    -- the scores are read at row[label] of the logits: a class outside 0..K-1 must never index them
    for _, f in ipairs { 'deletion', 'insertion', 'pixel_flipping', 'road' } do
      for _, c in ipairs { -1, 1, 1e9 } do
        error_with(function() F[f](net, x, map, { c }) end,
          ('faithfulness.%s: labels[1] = %d is outside 0..0 (the network has 1 class)'):format(f, c))
      end
      error_with(function() F[f](net, x, map, 1) end, 'labels = 1 is outside 0..0')
    end
    error_with(function() F.deletion(net, x:reshape { 1, 4 }, map, { 0 }) end, 'faithfulness.deletion: x has shape 1x4')
    error_with(function() F.ranking(map, { order = 'top' }) end, "option 'order' must be one of")
  end)
end)

describe('the faithfulness recipe', function()
  it('runs at a small size, with the random floor and two seeds', function()
    local lfs = require 'lfs'
    local cjson = require 'cjson'
    local recipe = require 'moreau.recipe'
    local core = require 'moreau.core'
    local r = recipe.load(core.root .. '/recipes/faithfulness.lua')
    local p = recipe.params(r, { images = '2', methods = 'gradient,sparse_moreaugrad', T = '4', m = '1',
      seeds = '2', step = '196', pf_step = '392', fractions = '0,0.5' })
    local dir = require('helpers.cli').tmpdir() .. '/faithfulness'
    recipe.run(r, p, { out = dir })
    for _, f in ipairs(r.writes) do assert.truthy(lfs.attributes(dir .. '/' .. f), f) end
    local f = assert(io.open(dir .. '/results.json'))
    local res = cjson.decode(f:read('*a'))
    f:close()
    assert.are.same({ 0, 1 }, res.seeds)
    for _, key in ipairs { 'gradient', 'sparse_moreaugrad', 'random' } do
      for _, metric in ipairs { 'deletion', 'insertion', 'road_morf', 'road_lerf', 'pixel_flipping' } do
        assert.are.equal(2, #res.summary[key][metric].seed_means, key .. ' ' .. metric)
      end
    end
    -- the gradient is deterministic and deletion has no noise: no spread over seeds
    assert.are.equal(0, res.summary.gradient.deletion.spread)
    assert.are.same({ 0, 0.5 }, res.fractions.road_morf)
    -- paired with the random floor: a difference, its standard error, a count of images
    local pr = res.paired_random.gradient.deletion
    assert.is_number(pr.diff)
    assert.are.equal(2, pr.images)
    assert.is_true(pr.better >= 0 and pr.better <= 2)
  end)
end)
