-- The properties README "What each method guarantees" claims, one test each:
-- completeness of IG per quadrature rule (closed form on a quadratic score),
-- sensitivity, dummy features, implementation invariance and linearity in
-- the score.
local T = require 'moreau.tensor'
local nn = require 'moreau.nn'
local methods = require 'moreau.methods'
local oracle = require 'moreau.oracle'

local function set(net, name, values)
  local p = net:param(name):data()
  for i, v in ipairs(values) do p[i - 1] = v end
end

--- Every method with options small enough for a spec; the sampling ones seeded.
local function all_methods()
  return {
    gradient = methods.gradient(),
    input_x_gradient = methods.input_x_gradient(),
    ig_riemann_right = methods.integrated_gradients { steps = 8 },
    ig_trapezoid = methods.integrated_gradients { steps = 8, rule = 'trapezoid' },
    ig_gauss_legendre = methods.integrated_gradients { steps = 4, rule = 'gauss_legendre' },
    smoothgrad = methods.smoothgrad { samples = 8, seed = 3 },
    smoothgrad_square = methods.smoothgrad { samples = 8, seed = 3, variant = 'square' },
    vargrad = methods.smoothgrad { samples = 8, seed = 3, variant = 'vargrad' },
    sparsified_smoothgrad = methods.sparsified_smoothgrad { samples = 8, seed = 3 },
    deeplift = methods.deeplift(),
    moreaugrad = methods.moreaugrad { T = 20, m = 0 },
    moreaugrad_noisy = methods.moreaugrad { T = 10, m = 4, seed = 3 },
    moreaugrad_l1 = methods.moreaugrad { T = 20, m = 0, eta = 1e-3 },
  }
end

local function sorted_keys(t)
  local k = {}
  for name in pairs(t) do k[#k + 1] = name end
  table.sort(k)
  return k
end

describe('integrated gradients: completeness per rule', function()
  -- f_c(x) = Σ_j v_cj h_j² + b_c, h = W x + a: a quadratic score with Hessian
  -- A_c = 2 Wᵀ diag(v_c) W. Along p(α) = x0 + α Δx the gradient is affine in α, so
  --   Σ IG = ∇f(x0)·Δx Σ_k w_k + Δxᵀ A Δx Σ_k w_k α_k,
  -- exact (= Δf) when Σ w_k = 1 and Σ w_k α_k = 1/2: trapezoid and Gauss–Legendre
  -- are; riemann_right has Σ w_k α_k = (n + 1)/(2n) and overshoots by Δxᵀ A Δx / (2n).
  local b = nn.builder({ 4 }, { seed = 61 })
  local h = b:linear('l1', b.input, 4, 3)
  local net = b:build(b:linear('l2', b:mul(h, h), 3, 2))
  local x = T.randn({ 2, 4 }, { seed = 62 })
  local x0 = T.randn({ 2, 4 }, { seed = 63, std = 0.5 })
  local labels = { 0, 1 }

  --- Δxᵀ A_c Δx = 2 Σ_j v_cj (W Δx)_j², in double.
  local function curvature(n, c)
    local W, v = net:param('l1.weight'), net:param('l2.weight')
    local s = 0
    for j = 1, 3 do
      local wdx = 0
      for i = 1, 4 do wdx = wdx + W:get(j, i) * (x:get(n, i) - x0:get(n, i)) end
      s = s + 2 * v:get(c + 1, j) * wdx * wdx
    end
    return s
  end

  local fx = oracle.grad(net, x, labels)
  local f0 = oracle.grad(net, x0, labels)
  for _, case in ipairs {
    { 'riemann_right', 4 }, { 'riemann_right', 7 }, { 'trapezoid', 2 }, { 'trapezoid', 5 },
    { 'gauss_legendre', 1 }, { 'gauss_legendre', 3 },
  } do
    local rule, steps = case[1], case[2]
    it(('%s, %d steps: Σ IG = Δf%s (seed 62)'):format(rule, steps,
      rule == 'riemann_right' and ' + ΔxᵀAΔx/(2n)' or ''), function()
      local ig = methods.integrated_gradients { rule = rule, steps = steps, baseline = x0 }
        :explain(net, x, labels)
      for n = 1, 2 do
        local want = fx[n] - f0[n]
        if rule == 'riemann_right' then want = want + curvature(n, labels[n]) / (2 * steps) end
        local got = ig:narrow(n):sum()
        assert.is_true(math.abs(got - want) <= 1e-5 * (math.abs(fx[n]) + math.abs(f0[n])),
          ('item %d: Σ IG %.8g, want %.8g (seed 62)'):format(n, got, want))
      end
    end)
  end

  it('every rule is exact on a linear score', function()
    local bl = nn.builder({ 5 }, { seed = 64 })
    local lin = bl:build(bl:linear('fc', bl.input, 5, 3))
    local xl = T.randn({ 1, 5 }, { seed = 64 })
    local fl = oracle.grad(lin, xl, { 2 })
    local fl0 = oracle.grad(lin, T.zeros { 1, 5 }, { 2 })
    for _, rule in ipairs { 'riemann_right', 'trapezoid', 'gauss_legendre' } do
      for _, steps in ipairs { 2, 3, 16 } do
        local got = methods.integrated_gradients { rule = rule, steps = steps }:explain(lin, xl, { 2 }):sum()
        assert.is_true(math.abs(got - (fl[1] - fl0[1])) <= 1e-6,
          ('%s %d: %.9g vs %.9g'):format(rule, steps, got, fl[1] - fl0[1]))
      end
    end
  end)
end)

describe('sensitivity', function()
  -- f(x) = 1 − relu(1 − x) (Sundararajan et al. 2017, §2.1): f(0) = 0, f(2) = 1, and
  -- f'(2) = 0. A baseline method gives the one changed feature a nonzero share (by
  -- completeness all of Δf); the gradient and input × gradient give 0 — they are not
  -- sensitive in this sense, and the README says so.
  local b = nn.builder({ 1 })
  local h = b:relu(b:linear('l1', b.input, 1, 1))
  local net = b:build(b:linear('l2', h, 1, 1))
  set(net, 'l1.weight', { -1 })
  set(net, 'l1.bias', { 1 })
  set(net, 'l2.weight', { -1 })
  set(net, 'l2.bias', { 1 })
  local x = T.from({ 2 }, { 1, 1 })

  it('IG and DeepLIFT give the changed feature a nonzero share; the gradient gives 0', function()
    assert.are.equal(1, methods.deeplift():explain(net, x, { 0 }):data()[0])
    for _, rule in ipairs { 'riemann_right', 'trapezoid', 'gauss_legendre' } do
      local a = methods.integrated_gradients { rule = rule, steps = 9 }:explain(net, x, { 0 }):data()[0]
      -- the path crosses the kink at α = 1/2: the quadrature error is at most 2 · (one step)
      assert.is_true(math.abs(a - 1) <= 2 * 2 / 9 and a > 0, rule .. ': ' .. a)
    end
    assert.are.equal(0, methods.gradient():explain(net, x, { 0 }):data()[0])
    assert.are.equal(0, methods.input_x_gradient():explain(net, x, { 0 }):data()[0])
  end)
end)

describe('dummy features and implementation invariance', function()
  local function base_net(extra)
    local b = nn.builder({ 2, 4, 4 }, { seed = 71 })
    local h = b:conv2d('c1', b.input, 2, 3, 3, { padding = 1 })
    h = b:softplus(h, { beta = 3 })
    if extra == 'identity' then
      -- a 1x1 conv with the identity matrix and zero bias, then dropout (the identity at
      -- inference): the same function, a different graph
      h = b:conv2d('id', h, 3, 3, 1)
      h = b:dropout(h, 0.3)
    end
    h = b:conv2d('c2', h, 3, 2, 3, { stride = 2, padding = 1 })
    h = b:softplus(h, { beta = 3 })
    h = b:flatten(h)
    if extra == 'split' then
      -- fc split in two: (W − W') h + b  +  W' h, W' = the fc weights of another seed
      local y1 = b:linear('fc', h, 8, 3)
      local y2 = b:linear('fc2', h, 8, 3, { bias = false })
      return b:build(b:add(y1, y2))
    end
    return b:build(b:linear('fc', h, 8, 3))
  end
  local ref = base_net()
  local function copy_from_ref(net)
    for _, name in ipairs { 'c1.weight', 'c1.bias', 'c2.weight', 'c2.bias', 'fc.weight', 'fc.bias' } do
      net:param(name):copy(ref:param(name))
    end
  end
  local ident = base_net('identity')
  copy_from_ref(ident)
  local idw, idb = ident:param('id.weight'), ident:param('id.bias')
  idw:fill(0)
  for c = 0, 2 do idw:data()[c * 3 + c] = 1 end
  idb:fill(0)
  local split = base_net('split')
  copy_from_ref(split)
  local fw, f2 = split:param('fc.weight'), split:param('fc2.weight')
  for i = 0, fw:numel() - 1 do fw:data()[i] = fw:data()[i] - f2:data()[i] end

  local x = T.randn({ 2, 2, 4, 4 }, { seed = 72 })
  local labels = { 0, 2 }

  it('an identity layer changes no map of any method, bit for bit (seed 72)', function()
    local ms = all_methods()
    for _, name in ipairs(sorted_keys(ms)) do
      local a = ms[name]:explain(ref, x, labels)
      local c = ms[name]:explain(ident, x, labels)
      assert.are.equal(0, a:max_abs_diff(c), name)
    end
  end)

  it('a split linear layer gives the same maps to float32 rounding (seed 72)', function()
    local ms = all_methods()
    for _, name in ipairs(sorted_keys(ms)) do
      -- the top-k cut and the soft-threshold are discontinuous: rounding could flip them
      if name ~= 'sparsified_smoothgrad' and name ~= 'moreaugrad_l1' then
        local a = ms[name]:explain(ref, x, labels)
        local c = ms[name]:explain(split, x, labels)
        local e = a:max_abs_diff(c) / a:abs():max()
        assert.is_true(e <= 1e-5, ('%s: relative difference %.3g'):format(name, e))
      end
    end
  end)

  it('a feature the score does not depend on gets exactly 0 from every method (seed 73)', function()
    -- every c1 tap on input channel 1 set to 0: f is constant in x[:, 1]
    local net = base_net()
    copy_from_ref(net)
    local w = net:param('c1.weight') -- (3, 2, 3, 3)
    for o = 0, 2 do
      for k = 0, 8 do w:data()[o * 18 + 9 + k] = 0 end
    end
    local xx = T.randn({ 2, 2, 4, 4 }, { seed = 73 })
    local ms = all_methods()
    for _, name in ipairs(sorted_keys(ms)) do
      local m = ms[name]:explain(net, xx, labels)
      for n = 0, 1 do
        for j = 0, 15 do
          assert.are.equal(0, m:data()[n * 32 + 16 + j], ('%s item %d entry %d'):format(name, n + 1, j))
        end
      end
    end
  end)
end)

describe('linearity in the score', function()
  -- Class 2's row of fc is 2·(class 0's) − 0.5·(class 1's), bias likewise, so
  -- f_2 = 2 f_0 − 0.5 f_1. Methods linear in the score map it the same way:
  -- the gradient, input × gradient, IG, SmoothGrad (mean; same noise for every
  -- class) and DeepLIFT (its multipliers are linear in the seed gy).
  local b = nn.builder({ 1, 5, 5 }, { seed = 81 })
  local h = b:conv2d('c1', b.input, 1, 3, 3, { padding = 1 })
  h = b:relu(h)
  h = b:maxpool2d(h, 2, { ceil_mode = true })
  h = b:silu(h)
  local net = b:build(b:linear('fc', b:flatten(h), 27, 3))
  local W, bias = net:param('fc.weight'), net:param('fc.bias')
  for j = 1, 27 do W:set(2 * W:get(1, j) - 0.5 * W:get(2, j), 3, j) end
  bias:set(2 * bias:get(1) - 0.5 * bias:get(2), 3)
  local x = T.randn({ 1, 1, 5, 5 }, { seed = 82 })

  it('maps of f_2 = 2 f_0 − 0.5 f_1 are 2 map_0 − 0.5 map_1 (seed 82)', function()
    local ms = {
      gradient = methods.gradient(), input_x_gradient = methods.input_x_gradient(),
      integrated_gradients = methods.integrated_gradients { steps = 8 },
      smoothgrad = methods.smoothgrad { samples = 8, seed = 5 }, deeplift = methods.deeplift(),
    }
    for _, name in ipairs(sorted_keys(ms)) do
      local m0 = ms[name]:explain(net, x, { 0 })
      local m1 = ms[name]:explain(net, x, { 1 })
      local m2 = ms[name]:explain(net, x, { 2 })
      local want = m0 * 2 - m1 * 0.5
      local e = m2:max_abs_diff(want) / math.max(want:abs():max(), 1e-12)
      assert.is_true(e <= 1e-5, ('%s: relative difference %.3g'):format(name, e))
    end
  end)
end)
