-- Attacks (moreau.attacks): eps = 0 is the identity, results stay in the L2
-- ball and the box, the predicted label is kept, the top-k objective never
-- rises above the clean one (and falls on a smooth net), PGD raises the loss,
-- and the same seed gives the same bits.
local T = require 'moreau.tensor'
local nn = require 'moreau.nn'
local methods = require 'moreau.methods'
local attacks = require 'moreau.attacks'
local oracle = require 'moreau.oracle'

local SEED = 21

local function softplus_net(seed)
  return require('helpers.nets').softplus_net { size = 8, beta = 2, seed = seed or 3 }
end

local net = softplus_net()
-- inputs in the box [0, 1], as images
local x = T.rand({ 3, 1, 8, 8 }, { seed = SEED, stream = 1 })
local labels = attacks.predict(net, x)
local N, d = 3, 64

local function close_rel(a, b, tol)
  assert(math.abs(a - b) <= tol * math.abs(b), ('%.17g vs %.17g (rel tol %g)'):format(a, b, tol))
end

local function item_dist(a, b, n)
  local s = 0
  for j = n * d, n * d + d - 1 do s = s + (a:data()[j] - b:data()[j]) ^ 2 end
  return math.sqrt(s)
end

--- J = Σ M ⊙ |E'| / Σ |E'| with M the top-k of |E| (recomputed here, not by the attack).
local function topk_J(E, E2, k)
  local out = {}
  for n = 0, N - 1 do
    local idx = {}
    for j = 0, d - 1 do idx[j + 1] = j end
    table.sort(idx, function(a, b)
      local va, vb = math.abs(E:data()[n * d + a]), math.abs(E:data()[n * d + b])
      if va ~= vb then return va > vb end
      return a < b
    end)
    local A, B = 0, 0
    for i = 1, d do
      local a = math.abs(E2:data()[n * d + idx[i]])
      B = B + a
      if i <= k then A = A + a end
    end
    out[n + 1] = A / B
  end
  return out
end

describe('attacks: options', function()
  it('records defaults and derived values', function()
    local a = attacks.topk()
    assert.are.equal(10, a.opts.eps)
    assert.are.equal(0.1, a.opts.alpha)
    assert.are.equal(10, a.opts.iters)
    assert.are.equal(0.02, a.opts.k_frac)
    assert.are.equal(2.5 * (8 / 255) / 10, attacks.pgd().opts.alpha)
    assert.are.equal(0.5, attacks.pgd { norm = 'l2' }.opts.eps)
    assert.are.equal(16, attacks.topk_k(a.opts, 784)) -- Fashion-MNIST: 2% of 784
    assert.are.same({ 'gaussian', 'mass_center', 'pgd', 'topk' }, attacks.list())
    assert.is_true(attacks.is_stochastic(methods.smoothgrad()))
    assert.is_true(attacks.is_stochastic(methods.moreaugrad { m = 2 }))
    assert.is_false(attacks.is_stochastic(methods.moreaugrad { m = 0 }))
    assert.is_false(attacks.is_stochastic(methods.integrated_gradients()))
  end)

  it('rejects unknown options and bad values', function()
    assert.has_error(function() attacks.topk { epsilon = 1 } end, 
      "attacks.topk: unknown option 'epsilon' (adaptive, alpha, cg_iters, cg_tol, eps, fresh_noise, hi, iters, k, k_frac, lo)")
    assert.has_error(function() attacks.pgd { norm = 'l1' } end, 
      "attacks.pgd: option 'norm' must be one of 'linf', 'l2', got 'l1'")
    assert.has_error(function() attacks.topk { eps = -1 } end, 
      "attacks.topk: option 'eps' must be a number >= 0, got -1")
    assert.has_error(function() attacks.create('nope') end,
      "attacks: unknown attack 'nope' (gaussian, mass_center, pgd, topk)")
    assert.has_error(function() attacks.topk():run(net, methods.deeplift(), x, labels) end,
      'deeplift:explain_vjp: not available (deeplift is not gradient-based)')
  end)
end)

describe('attacks: eps = 0 returns x', function()
  for _, a in ipairs {
    attacks.topk { eps = 0 }, attacks.mass_center { eps = 0 }, attacks.pgd { eps = 0 },
    attacks.pgd { eps = 0, norm = 'l2', random_start = true }, attacks.gaussian { s = 0 },
  } do
    it(a.name, function()
      local x2 = a:run(net, methods.gradient(), x, labels)
      assert.are.equal(0, x2:max_abs_diff(x))
    end)
  end
end)

describe('attacks: top-k', function()
  local eps = 1.5
  local cases = {
    { methods.gradient(), {} },
    { methods.input_x_gradient(), { lo = 0, hi = 1 } },
    { methods.integrated_gradients { steps = 4 }, { iters = 4 } },
    { methods.smoothgrad { samples = 4, seed = 3 }, { iters = 4, lo = 0, hi = 1 } },
    { methods.moreaugrad { T = 20, m = 0, K = 5, reg = 'l1', eta = 0.003 }, { iters = 3 } },
  }
  for _, c in ipairs(cases) do
    local m, extra = c[1], c[2]
    local o = { eps = eps, k = 6 }
    for k, v in pairs(extra) do o[k] = v end
    local atk = attacks.topk(o)
    it(m.name .. ' ' .. tostring(atk), function()
      local x2, info = atk:run(net, m, x, labels)
      local pred = attacks.predict(net, x2)
      for n = 0, N - 1 do
        assert.is_true(item_dist(x2, x, n) <= eps * (1 + 1e-5), 'in the ball')
        assert.are.equal(labels[n + 1], pred[n + 1], 'label kept')
        assert.is_true(info[n + 1].J <= info[n + 1].J_clean, 'J(x\') <= J(x)')
        assert.is_true(info[n + 1].label_kept)
      end
      if o.lo then
        assert.is_true(x2:min() >= o.lo and x2:max() <= o.hi, 'in the box')
      end
      -- the objective, recomputed from the maps (same seeds as the attack)
      if not attacks.is_stochastic(m) then
        local E = m:explain(net, x, labels)
        local J = topk_J(E, m:explain(net, x2, labels), 6)
        local J0 = topk_J(E, E, 6)
        for n = 1, N do
          assert.is_true(math.abs(J[n] - info[n].J) < 1e-6, 'J as recorded')
          assert.is_true(J[n] <= J0[n] + 1e-12)
        end
      end
      local improved = 0
      for n = 1, N do if info[n].J < info[n].J_clean then improved = improved + 1 end end
      assert.is_true(improved > 0, 'the attack lowers J on some item')
    end)
  end

  it('stochastic methods: fresh noise per step, recorded; same seed, same bits', function()
    local m = methods.smoothgrad { samples = 3, seed = 40 }
    local atk = attacks.topk { eps = 1, iters = 3 }
    local a, ia = atk:run(net, m, x, labels)
    local b, ib = atk:run(net, m, x, labels)
    assert.are.equal(0, a:max_abs_diff(b))
    assert.are.same({ [0] = 40, 41, 42, 43 }, ia.seeds)
    assert.are.same(ia.J, ib.J)
    local c = atk:run(net, methods.smoothgrad { samples = 3, seed = 41 }, x, labels)
    assert.is_true(c:max_abs_diff(a) > 0, 'another seed, another path')
    local _, inf = attacks.topk { eps = 1, iters = 3, fresh_noise = false }:run(net, m, x, labels)
    assert.are.same({ [0] = 40, 40, 40, 40 }, inf.seeds)
  end)
end)

describe('attacks: top-k mask follows the metrics\' zero and tie rule', function()
  -- A map equal to the input (E = x, x >= 0 in the box [0, 1], so ∂|E|/∂x = 1) and
  -- a network with zero weights (the prediction never changes): the objective's
  -- trajectory is a closed form of the clean map's top-k mask M.
  local identity = {
    name = 'identity', opts = { seed = 0 },
    explain = function(_, _, x) return x:clone() end,
    explain_abs_vjp = function(_, _, x, _, w) local E = x:clone() return w(E), E end,
  }
  local b = nn.builder({ 1, 4, 4 }, { seed = 1 })
  local flat = b:build(b:linear('fc', b:flatten(b.input), 16, 3))
  flat:param('fc.weight'):fill(0)
  local alpha = 0.01
  local function run(x0, k, iters)
    local _, info = attacks.topk { eps = 10, iters = iters or 1, k = k, alpha = alpha, lo = 0, hi = 1 }
      :run(flat, identity, x0, attacks.predict(flat, x0))
    return info
  end
  --- 16 pixels: value v at the given 1-based positions, `rest` elsewhere; perm moves pixel j to perm[j].
  local function image(spots, rest, perm)
    local x = T.full({ 1, 1, 4, 4 }, rest)
    for j, v in pairs(spots) do x:data()[(perm and perm[j] or j) - 1] = v end
    return x
  end
  local reversed = {}
  for j = 1, 16 do reversed[j] = 17 - j end

  it('a zero entry is never in the mask (3 nonzero entries, k = 6)', function()
    -- M = the 3 nonzero pixels: J0 = 1, ∂J = 0 on them, < 0 elsewhere, so the 13
    -- others rise by alpha: J1 = 1.2 / (1.2 + 13 alpha). Zero pixels in M (the old
    -- lower-index fill) would not rise: 1.2 / (1.2 + 10 alpha).
    for _, perm in ipairs { false, reversed } do
      local info = run(image({ [5] = 0.5, [8] = 0.4, [11] = 0.3 }, 0, perm or nil), 6)
      assert.are.equal(1, info.J[1][0])
      close_rel(info.J[1][1], 1.2 / (1.2 + 13 * alpha), 1e-6)
    end
  end)

  it('a tie at the k-th place is shared, whatever the positions', function()
    -- three pixels 0.5 tied for k = 2 places (M = 2/3 each), 13 pixels 0.1:
    -- A = 1, B = 2.8; the tied pixels fall and the others rise by alpha:
    -- J1 = 2 (0.5 − alpha) / (2.8 + 10 alpha). Breaking the tie by position would
    -- let the third pixel rise: 2 (0.5 − alpha) / (2.8 + 12 alpha).
    local spots = { [2] = 0.5, [7] = 0.5, [16] = 0.5 }
    local J = {}
    for i, perm in ipairs { false, reversed } do
      local info = run(image(spots, 0.1, perm or nil), 2, 3)
      close_rel(info.J[1][0], 1 / 2.8, 1e-6)
      close_rel(info.J[1][1], 2 * (0.5 - alpha) / (2.8 + 10 * alpha), 1e-6)
      J[i] = info.J[1]
    end
    for t = 0, 3 do close_rel(J[2][t], J[1][t], 1e-6) end
  end)

  it('refuses a clean map with NaN, naming the item and position', function()
    local nan = { name = 'nan', opts = { seed = 0 }, explain_abs_vjp = function(_, _, x, _, w)
      local E = x:clone()
      E:data()[16 + 4] = 0 / 0
      return w(E), E
    end }
    local x0 = T.full({ 2, 1, 4, 4 }, 0.5)
    assert.has_error(function() attacks.topk { k = 2 }:run(flat, nan, x0, { 0, 0 }) end,
      'topk:run: item 2 of the clean map has NaN at position 5 of 16 (c=1, h=2, w=1)')
  end)
end)

describe('attacks: mass center', function()
  it('moves the center of mass, keeps the label, stays in the ball and box', function()
    local atk = attacks.mass_center { eps = 1.5, iters = 6, lo = 0, hi = 1 }
    local x2, info = atk:run(net, methods.gradient(), x, labels)
    local pred = attacks.predict(net, x2)
    local moved = 0
    for n = 0, N - 1 do
      assert.is_true(item_dist(x2, x, n) <= 1.5 * (1 + 1e-5))
      assert.are.equal(labels[n + 1], pred[n + 1])
      assert.is_true(info[n + 1].displacement >= 0)
      if info[n + 1].displacement > 0 then moved = moved + 1 end
    end
    assert.is_true(x2:min() >= 0 and x2:max() <= 1)
    assert.is_true(moved > 0)
  end)
end)

describe('attacks: gaussian', function()
  it('is seeded, clipped to the box, keeps the label', function()
    local a, ia = attacks.gaussian { s = 0.3, seed = 5, lo = 0, hi = 1 }:run(net, nil, x, labels)
    local b = attacks.gaussian { s = 0.3, seed = 5, lo = 0, hi = 1 }:run(net, nil, x, labels)
    local c = attacks.gaussian { s = 0.3, seed = 6, lo = 0, hi = 1 }:run(net, nil, x, labels)
    assert.are.equal(0, a:max_abs_diff(b))
    assert.is_true(a:max_abs_diff(c) > 0)
    assert.is_true(a:min() >= 0 and a:max() <= 1)
    local pred = attacks.predict(net, a)
    for n = 1, N do
      assert.is_true(ia[n].tries >= 1)
      if ia[n].label_kept then assert.are.equal(labels[n], pred[n]) end
    end
    -- noise of item n, draw 0: (seed, the item's perturbation stream, offset 0)
    local _, ib = attacks.gaussian { s = 0.3, seed = 5, keep_label = false }:run(net, nil, x, labels)
    local z = T.randn({ d }, { seed = 5, stream = methods.perturbation_streams(x)[2], std = 0.3 })
    local x2 = attacks.gaussian { s = 0.3, seed = 5, keep_label = false }:run(net, nil, x, labels)
    assert.is_true(math.abs(x2:data()[d] - (x:data()[d] + z:data()[0])) < 1e-6)
    assert.are.equal(1, ib[2].tries)
  end)

  it('reports items it could not keep', function()
    -- huge noise flips labels: after `tries` draws the last one is returned and reported
    local _, info = attacks.gaussian { s = 50, tries = 2, seed = 1 }:run(net, nil, x, labels)
    for n = 1, N do
      assert.is_true(info[n].tries <= 2)
      if not info[n].label_kept then assert.are.equal(2, info[n].tries) end
    end
  end)
end)

describe('attacks: PGD', function()
  local function ce(xx)
    local lp = oracle.grad(net, xx, labels, { score = 'log_softmax' })
    local s = 0
    for n = 1, N do s = s - lp[n] end
    return s
  end
  for _, o in ipairs {
    { norm = 'linf', eps = 0.1, steps = 10 },
    { norm = 'l2', eps = 1, steps = 10 },
    { norm = 'linf', eps = 0.1, steps = 5, random_start = true, seed = 3, lo = 0, hi = 1 },
    { norm = 'l2', eps = 1, steps = 5, random_start = true, seed = 3 },
  } do
    local atk = attacks.pgd(o)
    it(tostring(atk), function()
      local x2, info = atk:run(net, nil, x, labels)
      assert.is_true(ce(x2) > ce(x), 'the loss rises')
      for n = 0, N - 1 do
        assert.is_true(info[n + 1].loss > info[n + 1].loss_clean)
        if o.norm == 'l2' then
          assert.is_true(item_dist(x2, x, n) <= o.eps * (1 + 1e-5))
        end
      end
      if o.norm == 'linf' then assert.is_true(x2:max_abs_diff(x) <= o.eps * (1 + 1e-6)) end
      if o.lo then assert.is_true(x2:min() >= 0 and x2:max() <= 1) end
      local x3 = atk:run(net, nil, x, labels)
      assert.are.equal(0, x3:max_abs_diff(x2), 'deterministic')
    end)
  end
end)
