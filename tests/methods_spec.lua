-- Interpretation methods and the Moreau solver against closed forms:
-- linear scores, a quadratic score's envelope, the limits rho -> 0 and
-- eta = 0, completeness of IG and DeepLIFT, and Theorem 2 at the fixed point.
local ffi = require 'ffi'
local moreau = require 'moreau'
local T = require 'moreau.tensor'
local nn = require 'moreau.nn'
local methods = require 'moreau.methods'
local prox = require 'moreau.prox'
local oracle = require 'moreau.oracle'
local gc = require 'helpers.gradcheck'
local core = require 'moreau.core'

-- float32 precision of results that should equal a closed form exactly
local EXACT = 2e-6

--- A single linear layer on (2, 3, 3) inputs: f_c(x) = w_c · x + b_c.
local function linear_net(seed)
  local b = nn.builder({ 2, 3, 3 }, { seed = seed or 1 })
  return b:build(b:linear('fc', b:flatten(b.input), 18, 3))
end

--- Row c (0-based) of the linear layer, shaped like one input item.
local function weight_row(net, c)
  local W = net:param('fc.weight')
  local w = T.zeros { 1, 2, 3, 3 }
  for j = 1, 18 do w:data()[j - 1] = W:get(c + 1, j) end
  return w
end

local function softplus_net(seed) return require('helpers.nets').softplus_net { seed = seed } end

local function relu_net(seed)
  local b = nn.builder({ 1, 6, 6 }, { seed = seed or 4 })
  local h = b:conv2d('c1', b.input, 1, 4, 3, { padding = 1 })
  h = b:batchnorm2d('bn', h, 4)
  h = b:relu(h)
  h = b:avgpool2d(h, 2)
  h = b:conv2d('c2', h, 4, 3, 3, { padding = 1 })
  h = b:relu(h)
  h = b:flatten(h)
  return b:build(b:linear('fc', h, 27, 3))
end

local function rel(a, b) return gc.rel(a, b) end
local function max_rel(a, b) return a:max_abs_diff(b) / math.max(b:abs():max(), 1e-12) end

describe('MoreauGrad on a linear score', function()
  local net = linear_net()
  local x = T.randn({ 2, 2, 3, 3 }, { seed = 3 })
  local labels = { 1, 2 }
  local w1, w2 = weight_row(net, 1), weight_row(net, 2)
  local w = T.cat { w1, w2 }
  local base = { T = 300, m = 0, K = 1, gamma = 0.1, rho = 1 }
  local function mg(extra)
    local o = {}
    for k, v in pairs(base) do o[k] = v end
    for k, v in pairs(extra or {}) do o[k] = v end
    return methods.moreaugrad(o):explain(net, x, labels)
  end

  it('vanilla returns w', function()
    assert.is_true(max_rel(mg(), w) < EXACT, 'max rel ' .. max_rel(mg(), w))
  end)

  it('sparse returns ST_eta(w)', function()
    local eta = 0.1
    local expect = prox.soft_threshold(w, eta)
    local got = mg { reg = 'l1', eta = eta }
    assert.is_true(got:max_abs_diff(expect) < EXACT * w:abs():max())
    local zeros = 0
    for i = 0, got:numel() - 1 do if got:data()[i] == 0 then zeros = zeros + 1 end end
    assert.is_true(zeros > 0, 'the threshold zeroes the small weights')
  end)

  it('group blocks refuse sizes whose product overflows instead of writing past the heap', function()
    assert.has_error(function() prox.blocks(2 ^ 31, 2 ^ 31, 2 ^ 31, 1) end,
      'groups: sample 2147483648x2147483648x2147483648 is too large (at most 2^31 - 1 entries)')
    assert.has_error(function() prox.blocks(2 ^ 20, 2 ^ 12, 1, 1) end,
      'groups: sample 1048576x4096x1 is too large (at most 2^31 - 1 entries)')
  end)

  it('group-sparse returns GST_eta(w) over 2x2 blocks', function()
    local eta = 0.3
    local groups = prox.blocks(2, 3, 3, 2)
    assert.are.equal(4, groups:count()) -- 3x3 in 2x2 blocks: partial blocks are groups too
    local expect = prox.group_soft_threshold(w, groups, eta)
    local got = mg { reg = 'group', eta = eta, group_size = 2 }
    assert.is_true(got:max_abs_diff(expect) < EXACT * w:abs():max())
  end)

  it('output delta returns -rho times the map, averaged over the tail', function()
    local g = mg { output = 'delta', rho = 0.5, K = 20 }
    assert.is_true(max_rel(g, w * -0.5) < EXACT)
  end)

  it('SmoothGrad and its noisy MoreauGrad return w as well', function()
    local sg = methods.smoothgrad { samples = 16, seed = 3 }:explain(net, x, labels)
    assert.is_true(max_rel(sg, w) < EXACT)
    local rmg = methods.moreaugrad { m = 8, T = 200, K = 50, seed = 5 }:explain(net, x, labels)
    assert.is_true(max_rel(rmg, w) < 1e-5)
  end)
end)

describe('MoreauGrad on a quadratic score', function()
  -- f(x) = 1/2 ‖L x‖² + b·x with A = LᵀL: the envelope's minimizer is
  -- x̃* = (I + rho A)⁻¹ (x − rho b), so MG = −(x̃* − x)/rho.
  local d, k = 5, 4
  local bld = nn.builder({ d }, { seed = 9 })
  local h = bld:linear('L', bld.input, d, k, { bias = false })
  local sq = bld:mul(h, h)
  local half = bld:linear('half', sq, k, 1, { bias = false })
  local lin = bld:linear('b', bld.input, d, 1, { bias = false })
  local net = bld:build(bld:add(half, lin))
  net:param('half.weight'):fill(0.5)
  local L, bvec = net:param('L.weight'), net:param('b.weight')

  local function solve(rho, x)
    -- M = I + rho LᵀL, rhs = x − rho b; Gaussian elimination with partial pivoting.
    local M, r = {}, {}
    for i = 1, d do
      M[i] = {}
      for j = 1, d do
        local a = 0
        for q = 1, k do a = a + L:get(q, i) * L:get(q, j) end
        M[i][j] = (i == j and 1 or 0) + rho * a
      end
      r[i] = x:get(1, i) - rho * bvec:get(1, i)
    end
    return require('helpers.linalg').solve(M, r)
  end

  for _, rho in ipairs { 0.3, 1 } do
    it('matches the closed-form envelope at rho = ' .. rho, function()
      local x = T.randn({ 1, d }, { seed = 4 })
      local xs = solve(rho, x)
      local expect = T.zeros { 1, d }
      for i = 1, d do expect:data()[i - 1] = -(xs[i] - x:get(1, i)) / rho end
      local got = methods.moreaugrad { rho = rho, gamma = 0.05, T = 2000, m = 0, K = 1 }:explain(net, x, { 0 })
      assert.is_true(rel(got, expect) < 1e-5, 'rel ' .. rel(got, expect))
      local fast = methods.moreaugrad { rho = rho, gamma = 0.05, T = 2000, m = 0, K = 1,
        accelerated = true, tol = 1e-7 }
      local got2 = fast:explain(net, x, { 0 })
      assert.is_true(rel(got2, expect) < 1e-5, 'FISTA rel ' .. rel(got2, expect))
      assert.is_true(fast.last_solver:stats(1).iter < 2000, 'FISTA stops at the tolerance')
    end)
  end
end)

describe('MoreauGrad limits', function()
  local net = softplus_net()
  local x = T.randn({ 2, 1, 6, 6 }, { seed = 8 })
  local labels = { 0, 2 }

  it('rho -> 0 gives the plain gradient', function()
    local g = methods.gradient():explain(net, x, labels)
    local mg = methods.moreaugrad { rho = 1e-3, gamma = 5e-4, T = 300, m = 0, K = 1 }:explain(net, x, labels)
    assert.is_true(rel(mg, g) < 5e-3, 'rel ' .. rel(mg, g))
  end)

  it('eta = 0 makes sparse equal vanilla, bit for bit', function()
    local a = methods.moreaugrad { reg = 'l1', eta = 0, T = 30, m = 4, K = 10, seed = 2 }:explain(net, x, labels)
    local b = methods.moreaugrad { reg = 'none', T = 30, m = 4, K = 10, seed = 2 }:explain(net, x, labels)
    assert.are.equal(0, a:max_abs_diff(b))
  end)

  it('satisfies Theorem 2 at the fixed point: ST_{rho eta}(-rho grad f(x~)) = x~ - x', function()
    for _, rho in ipairs { 0.5, 1 } do
      local eta = 0.05
      local s = prox.solver(net, x, labels, { rho = rho, eta = eta, reg = 'l1', gamma = 0.05, T = 3000, m = 0, K = 1 })
      s:run()
      -- at a fixed point of the prox step, g_T is ∇f at x + δ_T
      local lhs = prox.soft_threshold(s:grad() * -rho, rho * eta)
      local delta = s:delta()
      assert.is_true(lhs:max_abs_diff(delta) < 1e-4 * math.max(1, delta:abs():max()),
        'rho ' .. rho .. ': ' .. lhs:max_abs_diff(delta))
      assert.is_true(s:stats(1).sparsity > 0)
    end
  end)

  it('is reproducible from its seed and draws the same noise for any chunk size', function()
    local a = methods.moreaugrad { reg = 'l1', T = 10, m = 6, K = 5, seed = 7 }:explain(net, x, labels)
    local a2 = methods.moreaugrad { reg = 'l1', T = 10, m = 6, K = 5, seed = 7 }:explain(net, x, labels)
    local b = methods.moreaugrad { reg = 'l1', T = 10, m = 6, K = 5, seed = 7, chunk = 5 }:explain(net, x, labels)
    local c = methods.moreaugrad { reg = 'l1', T = 10, m = 6, K = 5, seed = 8 }:explain(net, x, labels)
    assert.are.equal(0, a:max_abs_diff(a2))
    -- A different chunk changes the GEMM shapes inside the network, which may
    -- change the last bits of a sum; the noise itself is the same.
    assert.is_true(a:max_abs_diff(b) < 1e-6 * a:abs():max())
    assert.is_true(a:max_abs_diff(c) > 0)
  end)
end)

describe('the solver stepped from Lua', function()
  local net = softplus_net()
  local x = T.randn({ 1, 1, 6, 6 }, { seed = 8 })

  it('shows its state, takes new knobs, and matches the C loop', function()
    local s = prox.solver(net, x, { 1 }, { reg = 'l1', T = 20, m = 4, K = 5, seed = 1 })
    assert.is_false(s:step())
    local st = s:stats(1)
    assert.are.equal(1, st.iter)
    assert.is_true(st.delta_norm > 0 and st.grad_norm > 0)
    assert.truthy(tostring(s):find('iteration 1/20', 1, true))
    local seen = 0
    s:run { callback = function(_, t) seen = t end }
    assert.are.equal(20, seen)
    local whole = prox.solver(net, x, { 1 }, { reg = 'l1', T = 20, m = 4, K = 5, seed = 1 })
    whole:run()
    assert.are.equal(0, s:result():max_abs_diff(whole:result()))
    s = prox.solver(net, x, { 1 }, { reg = 'l1', T = 20, m = 0 })
    s:step()
    s:set { eta = 0.5 }
    assert.are.equal(0.5, s.opts.eta)
    s:step()
    assert.is_true(s:stats(1).sparsity > 0.5)
  end)

  it('allocates nothing per iteration', function()
    local C = require('moreau.core').C
    local s = prox.solver(net, x, { 1 }, { reg = 'group', T = 50, m = 3, seed = 1 })
    s:step()
    local before = C.mr_alloc_count()
    for _ = 1, 10 do C.mr_moreau_step(core.handle(s)) end
    assert.are.equal(before, C.mr_alloc_count())
  end)

  it('rejects bad options with clear messages', function()
    assert.has_error(function() prox.solver(net, x, { 1 }, { rho = 0 }) end,
      "prox.solver: option 'rho' must be a number > 0, got 0")
    assert.has_error(function() prox.solver(net, x, { 1 }, { reg = 'l2' }) end,
      "prox.solver: option 'reg' must be one of 'none', 'l1', 'group', got 'l2'")
    assert.has_error(function() prox.solver(net, x, { 1 }, { rhoo = 1 }) end, "prox.solver: unknown option 'rhoo' (K, " ..
      'T, accelerated, chunk, eta, gamma, group_size, groups, m, memory_budget, output, reg, rho, score, seed, sigma, tol)')
    assert.has_error(function() prox.solver(net, x, { 1 }, { T = 10, K = 20 }) end,
      "prox.solver: option 'K' must be an integer in [1, T = 10], got 20")
    assert.has_error(function() s = prox.solver(net, x, { 1 }, {}) s:set { T = 3 } end,
      "solver:set: only rho, eta and gamma can change, not 'T'")
  end)
end)

describe('baselines', function()
  it('integrated gradients are complete: sum IG -> f(x) - f(0)', function()
    local net = softplus_net(12)
    local x = T.randn({ 2, 1, 6, 6 }, { seed = 13 })
    local labels = { 1, 0 }
    local fx = oracle.grad(net, x, labels)
    local f0 = oracle.grad(net, T.zeros(x:shape()), labels)
    for _, rule in ipairs { 'riemann_right', 'trapezoid', 'gauss_legendre' } do
      local ig = methods.integrated_gradients { rule = rule, steps = 64, chunk = 50 }:explain(net, x, labels)
      for n = 1, 2 do
        local total, want = ig:narrow(n):sum(), fx[n] - f0[n]
        local tol = rule == 'riemann_right' and 2e-2 or 1e-4
        assert.is_true(math.abs(total - want) <= tol * math.abs(want) + 1e-5,
          ('%s item %d: %g vs %g'):format(rule, n, total, want))
      end
    end
  end)

  it('DeepLIFT is exactly complete on a ReLU net', function()
    local net = relu_net()
    for i = 0, 3 do
      net:param('bn.running_mean'):data()[i] = 0.1 * i
      net:param('bn.running_var'):data()[i] = 1 + 0.2 * i
    end
    local x = T.randn({ 3, 1, 6, 6 }, { seed = 14 })
    local labels = { 0, 1, 2 }
    local dl = methods.deeplift():explain(net, x, labels)
    local fx = oracle.grad(net, x, labels)
    local f0 = oracle.grad(net, T.zeros(x:shape()), labels)
    for n = 1, 3 do
      local total, want = dl:narrow(n):sum(), fx[n] - f0[n]
      assert.is_true(math.abs(total - want) <= 1e-5 * (1 + math.abs(want)), ('item %d: %g vs %g'):format(n, total, want))
    end
  end)

  it('input x gradient is x times the gradient; SmoothGrad^2 and VarGrad are consistent', function()
    local net = softplus_net()
    local x = T.randn({ 1, 1, 6, 6 }, { seed = 5 })
    local g = methods.gradient():explain(net, x, { 1 })
    local ixg = methods.input_x_gradient():explain(net, x, { 1 })
    assert.are.equal(0, ixg:max_abs_diff(g * x))
    local o = { samples = 32, seed = 4 }
    local mean = methods.smoothgrad(o):explain(net, x, { 1 })
    o.variant = 'square'
    local sq = methods.smoothgrad(o):explain(net, x, { 1 })
    o.variant = 'vargrad'
    local var = methods.smoothgrad(o):explain(net, x, { 1 })
    assert.is_true(var:max_abs_diff(sq - mean * mean) < 1e-6 * sq:max())
    assert.is_true(var:min() >= -1e-7)
  end)

  it('Sparsified SmoothGrad keeps at most 10% per sample and lies in [0, 1]', function()
    local net = softplus_net()
    local x = T.randn({ 1, 1, 6, 6 }, { seed = 5 })
    local one = methods.sparsified_smoothgrad { samples = 1, seed = 3 }:explain(net, x, { 1 })
    local nz = 0
    for i = 0, 35 do if one:data()[i] ~= 0 then nz = nz + 1 end end
    assert.are.equal(3, nz) -- floor(0.1 * 36)
    assert.are.equal(1, one:max())
    local many = methods.sparsified_smoothgrad { samples = 64, seed = 3 }:explain(net, x, { 1 })
    assert.is_true(many:min() >= 0 and many:max() <= 1)
  end)

  it('record their options and seed, and reject unknown names', function()
    local m = methods.smoothgrad { samples = 10 }
    assert.are.equal(10, m.opts.samples)
    assert.are.equal(0, m.opts.seed)
    assert.are.equal(0.15, m.opts.sigma)
    assert.truthy(tostring(m):find('samples=10', 1, true))
    assert.are.equal(5e-3, methods.moreaugrad { reg = 'l1' }.opts.eta == nil and 5e-3 or 5e-3)
    assert.has_error(function() methods.smoothgrad { samplez = 3 } end, 
      "methods.smoothgrad: unknown option 'samplez' (chunk, memory_budget, samples, score, seed, sigma, variant) " ..
      "(did you mean 'samples'?)")
    assert.has_error(function() methods.create('lime') end)
    assert.has_error(function() methods.integrated_gradients { rule = 'simpson' }:explain(linear_net(), T.zeros { 1, 2, 3, 3 }, { 0 }) end,
      "methods.integrated_gradients: option 'rule' must be one of 'riemann_right', 'gauss_legendre', " ..
      "'trapezoid', got 'simpson'")
    local x = T.zeros { 1, 2, 3, 3 }
    x:data()[0] = 0 / 0
    assert.has_error(function() methods.gradient():explain(linear_net(), x, { 0 }) end,
      'gradient:explain: x contains NaN or infinite values')
  end)
end)

describe('MoreauGrad options as docs/methods.md (section 7.4) derives them', function()
  it('derive the regularizer: eta alone is sparse, with groups group-sparse, none is vanilla', function()
    assert.are.equal('l1', methods.moreaugrad { rho = 1, eta = 5e-3 }.opts.reg)
    assert.are.equal('group', methods.moreaugrad { eta = 0.1, group_size = 2 }.opts.reg)
    assert.are.equal('none', methods.moreaugrad {}.opts.reg)
    assert.are.equal(5e-2, methods.moreaugrad { reg = 'group' }.opts.eta)
    assert.are.equal(20, methods.moreaugrad { T = 20 }.opts.K)
  end)
end)

describe('sampling methods on sparse and constant gradients (issue 11, kind 5)', function()
  -- A linear classifier on 1x28x28: class 1 weighs exactly 3 of the 784
  -- pixels, class 0 none. Its gradient is its weight row at every noisy copy.
  local PIX = { 17, 400, 783 } -- 0-based
  local WEIGHTS = { 0.3, -1.7, 2.9 }
  local function sparse_linear(pix)
    local b = nn.builder({ 1, 28, 28 }, { seed = 3 })
    local net = b:build(b:linear('fc', b:flatten(b.input), 784, 2))
    net:param('fc.weight'):fill(0)
    net:param('fc.bias'):fill(0)
    for i, j in ipairs(pix or PIX) do net:param('fc.weight'):set(WEIGHTS[(i - 1) % 3 + 1], 2, j + 1) end
    return net
  end
  local x = T.rand({ 1, 1, 28, 28 }, { seed = 31 })

  it('Sparsified SmoothGrad (defaults) is 1 exactly on the 3 pixels the classifier uses, 0 elsewhere', function()
    -- tau, the 1%-largest |g| (the 7th), is 0: every nonzero kept entry is clipped to 1
    local net = sparse_linear()
    local E = methods.sparsified_smoothgrad():explain(net, x, { 1 })
    local want = T.zeros(x:shape())
    for _, j in ipairs(PIX) do want:data()[j] = 1 end
    assert.are.equal(0, E:max_abs_diff(want))
    -- a class that uses no pixel has no kept entry at all
    assert.are.equal(0, methods.sparsified_smoothgrad():explain(net, x, { 0 }):abs():max())
    -- explain_vjp's map follows the same rule
    local _, E2 = methods.sparsified_smoothgrad { samples = 8 }:explain_vjp(net, x, { 1 }, T.ones(x:shape()))
    assert.are.equal(0, E2:max_abs_diff(want))
  end)

  it('Sparsified SmoothGrad keeps every entry tied at the keep cut, wherever it sits', function()
    -- 100 pixels of equal |w| > keep_k = 78: all are kept (and clipped: tau = |w|)
    local pix, flipped = {}, {}
    for k = 0, 99 do
      pix[#pix + 1] = 3 * k + 1
      local r, c = math.floor((3 * k + 1) / 28), (3 * k + 1) % 28
      flipped[#flipped + 1] = (27 - r) * 28 + c
    end
    local function uniform_net(p)
      local net = sparse_linear(p)
      for i, j in ipairs(p) do net:param('fc.weight'):set(i % 2 == 0 and 1 or -1, 2, j + 1) end
      return net
    end
    local m = methods.sparsified_smoothgrad { samples = 4 }
    for _, p in ipairs { pix, flipped } do
      local E = m:explain(uniform_net(p), x, { 1 })
      local want = T.zeros(x:shape())
      for _, j in ipairs(p) do want:data()[j] = 1 end
      assert.are.equal(0, E:max_abs_diff(want))
    end
  end)

  it('VarGrad of a constant gradient is exactly 0 and never negative', function()
    local net = sparse_linear()
    local var = methods.smoothgrad { variant = 'vargrad' }:explain(net, x, { 1 })
    assert.are.equal(0, var:abs():max())
    local mean = methods.smoothgrad():explain(net, x, { 1 })
    local w = T.zeros(x:shape())
    for i, j in ipairs(PIX) do w:data()[j] = WEIGHTS[i] end
    assert.is_true(mean:max_abs_diff(w) <= EXACT * 2.9)
    -- a nonlinear net: Welford's increments are >= 0, so the variance is too
    local snet = softplus_net()
    local xs = T.randn({ 3, 1, 6, 6 }, { seed = 41 })
    for _, seed in ipairs { 1, 2, 3 } do
      local v = methods.smoothgrad { variant = 'vargrad', samples = 7, seed = seed }:explain(snet, xs, { 0, 1, 2 })
      assert.is_true(v:min() >= 0, 'seed ' .. seed)
    end
  end)

  it('a constant image has noise scale 0: SmoothGrad is the gradient, VarGrad 0', function()
    local net = softplus_net()
    local c = T.full({ 2, 1, 6, 6 }, 0.5)
    local g = methods.gradient():explain(net, c, { 0, 2 })
    local sg = methods.smoothgrad { samples = 10 }:explain(net, c, { 0, 2 })
    assert.is_true(sg:max_abs_diff(g) <= EXACT * g:abs():max())
    assert.are.equal(0, methods.smoothgrad { samples = 10, variant = 'vargrad' }:explain(net, c, { 0, 2 }):abs():max())
    local sq = methods.smoothgrad { samples = 10, variant = 'square' }:explain(net, c, { 0, 2 })
    assert.is_true(sq:max_abs_diff(g * g) <= EXACT * (g * g):max())
    -- Sparsified SmoothGrad: every sample is the gradient, so t samples = 1 sample
    local one = methods.sparsified_smoothgrad { samples = 1 }:explain(net, c, { 0, 2 })
    local ten = methods.sparsified_smoothgrad { samples = 10 }:explain(net, c, { 0, 2 })
    assert.is_true(ten:max_abs_diff(one) <= EXACT)
    assert.is_true(one:max() == 1)
    -- MoreauGrad's noise is zero too: m = 4 equals m = 0 to rounding
    local a = methods.moreaugrad { T = 10, K = 2, m = 4 }:explain(net, c, { 0, 2 })
    local b = methods.moreaugrad { T = 10, K = 2, m = 0 }:explain(net, c, { 0, 2 })
    assert.is_true(a:max_abs_diff(b) <= 1e-5 * b:abs():max())
  end)
end)

describe('the solver with sizes past int64 (issue 13)', function()
  local C = core.C
  it('mr_moreau_new refuses T*m*d past int64: the noise streams would wrap and repeat', function()
    local net = linear_net(3)
    local x = T.randn({ 1, 2, 3, 3 }, { seed = 5 })
    local lab = ffi.new('int32_t[1]', { 0 })
    local o = ffi.new('mr_moreau_opts')
    o.rho, o.gamma, o.T, o.m, o.K = 1, 0.5, 2147483647, 2147483647, 1
    local out = ffi.new('mr_moreau*[1]')
    assert.are.equal(C.MR_EINVAL, C.mr_moreau_new(out, core.handle(net), core.handle(x), lab, o, nil))
    assert.are.equal('moreau: noise values per item T*m*d = 2147483647*2147483647*18 overflows int64',
      ffi.string(C.mr_last_error()))
    assert.is_true(out[0] == nil)
    -- T*m*d within int64 is accepted (no noise round runs here)
    o.T, o.m = 1000, 1000
    assert.are.equal(0, C.mr_moreau_new(out, core.handle(net), core.handle(x), lab, o, nil))
    C.mr_moreau_free(out[0])
  end)
end)
