-- Derivatives of explanations (moreau.explain_vjp) against central finite
-- differences of explain itself (exact methods) or of the surrogate the VJP
-- differentiates, rebuilt here from explain's pieces (Sparsified SmoothGrad,
-- MoreauGrad). Directional checks: for K random directions v,
--   a_k = ⟨vjp(u), v_k⟩   vs   b_k = (⟨u, E(x + h v_k)⟩ − ⟨u, E(x − h v_k)⟩) / 2h,
-- relative error ‖a − b‖/‖a + b‖ (tests/helpers/gradcheck.lua). The network is
-- float32 and smooth (softplus, beta 3); h = 1e-2 balances truncation (h²)
-- against rounding (eps/h). Bounds are about 5-10x the errors observed
-- (VJP_DEBUG=1 prints each one).
local ffi = require 'ffi'
local T = require 'moreau.tensor'
local nn = require 'moreau.nn'
local methods = require 'moreau.methods'
local oracle = require 'moreau.oracle'
local ev = require 'moreau.explain_vjp'
local gc = require 'helpers.gradcheck'

local SEED = 11
local H = 1e-2
local K = 8

local function softplus_net(seed) return require('helpers.nets').softplus_net { seed = seed } end

local net = softplus_net()
local x = T.randn({ 2, 1, 6, 6 }, { seed = SEED, stream = 1 })
local labels = { 0, 2 }
local u = T.randn({ 2, 1, 6, 6 }, { seed = SEED, stream = 2 })
-- The noise keys of x: finite differences of a sampling method's map move x,
-- which would change its content keys (and so its noise); the VJP is the
-- derivative at fixed keys, so the differences pass x's keys as ids.
local ids = methods.item_keys(x)

--- Relative error of ⟨vjp, v⟩ against central differences of ⟨u, F(x)⟩.
local function directional(F, vjp, opts)
  opts = opts or {}
  local h, k, u = opts.h or H, opts.K or K, opts.u or u
  local a, b = T.zeros { k }, T.zeros { k }
  for i = 1, k do
    local v = T.randn(x:shape(), { seed = SEED, stream = 100 + i })
    a:data()[i - 1] = vjp:dot(v)
    local fp = F(x:clone():add_(v, h)):dot(u)
    local fm = F(x:clone():add_(v, -h)):dot(u)
    b:data()[i - 1] = (fp - fm) / (2 * h)
  end
  return gc.rel(a, b)
end

local function assert_below(err, tol, what)
  if os.getenv("VJP_DEBUG") then io.stderr:write(("%-40s %.3g\n"):format(what, err)) end
  assert(err <= tol, ('%s: relative error %.3g > %.3g (seed %d)'):format(what, err, tol, SEED))
end

--- u with the entries where |ref| < frac·max|ref| zeroed: keeps the checks
-- of |·| off its kink at 0 (an entry crossing 0 inside ±h breaks the
-- difference quotient whatever h is).
local function off_kinks(uu, ref, frac)
  local out, thr = uu:clone(), frac * ref:abs():max()
  for j = 0, out:numel() - 1 do
    if math.abs(ref:data()[j]) < thr then out:data()[j] = 0 end
  end
  return out
end

local function max_rel(a, b) return a:max_abs_diff(b) / math.max(b:abs():max(), 1e-12) end

describe('explain_vjp of exact methods vs finite differences of explain', function()
  local cases = {
    { 'gradient', {}, 2e-4 },
    { 'gradient', { score = 'log_softmax' }, 2e-4 },
    { 'input_x_gradient', {}, 2e-4 },
    { 'integrated_gradients', { steps = 8 }, 2e-4 },
    { 'integrated_gradients', { steps = 5, rule = 'gauss_legendre', chunk = 3, baseline = 0.2 }, 2e-4 },
    { 'integrated_gradients', { steps = 4, rule = 'trapezoid', score = 'softmax' }, 2e-4 },
    { 'smoothgrad', { samples = 6, seed = 7, chunk = 5 }, 2e-4 },
    { 'smoothgrad', { samples = 6, seed = 7, variant = 'square' }, 2e-4 },
    { 'smoothgrad', { samples = 6, seed = 3, variant = 'vargrad', chunk = 4 }, 3e-4 },
  }
  for _, c in ipairs(cases) do
    local name, opts, tol = c[1], c[2], c[3]
    local label = name .. ' ' .. (next(opts) and methods[name](opts):__tostring() or '')
    it(label, function()
      local m = methods[name](opts)
      local vjp, E = m:explain_vjp(net, x, labels, u)
      local ref = m:explain(net, x, labels)
      -- E is explain's map, from the same noise
      assert_below(max_rel(E, ref), 1e-5, label .. ' map')
      local err = directional(function(xx) return m:explain(net, xx, labels, ids) end, vjp)
      assert_below(err, tol, label)
    end)
  end

  it('takes the cotangent as a function of the map', function()
    for _, m in ipairs { methods.gradient(), methods.integrated_gradients { steps = 4 },
      methods.smoothgrad { samples = 3, seed = 1 } } do
      local seen
      local a = m:explain_vjp(net, x, labels, function(E) seen = E return u end)
      local b, E = m:explain_vjp(net, x, labels, u)
      assert.is_true(T.is(seen) and seen:max_abs_diff(E) == 0, m.name .. ': u(E) saw the map')
      assert.is_true(a:max_abs_diff(b) <= 1e-6 * b:abs():max(), m.name)
    end
  end)

  it('explain_abs_vjp is explain_vjp with u = w ⊙ sign(E)', function()
    local m = methods.input_x_gradient()
    local w = off_kinks(u, m:explain(net, x, labels), 0.05)
    local a, E = m:explain_abs_vjp(net, x, labels, w)
    local su = w:clone()
    for j = 0, su:numel() - 1 do
      local e = E:data()[j]
      su:data()[j] = su:data()[j] * (e > 0 and 1 or e < 0 and -1 or 0)
    end
    local b = m:explain_vjp(net, x, labels, su)
    assert.is_true(a:max_abs_diff(b) == 0)
    local err = directional(function(xx) return m:explain(net, xx, labels):abs() end, a, { u = w })
    assert_below(err, 2e-4, 'abs input_x_gradient')
  end)

  it('the noise scale term matters: directions through max x and min x', function()
    -- v only on the extreme entries of each item: s changes along v.
    local m = methods.smoothgrad { samples = 4, seed = 5 }
    local vjp = m:explain_vjp(net, x, labels, u)
    local d = 36
    local v = T.zeros(x:shape())
    for n = 0, 1 do
      local p = x:data() + n * d
      local jmax, jmin = 0, 0
      for j = 1, d - 1 do
        if p[j] > p[jmax] then jmax = j end
        if p[j] < p[jmin] then jmin = j end
      end
      v:data()[n * d + jmax], v:data()[n * d + jmin] = 1, -0.5
    end
    local h = 1e-2
    local F = function(xx) return m:explain(net, xx, labels, ids):dot(u) end
    local fd = (F(x:clone():add_(v, h)) - F(x:clone():add_(v, -h))) / (2 * h)
    local a = vjp:dot(v)
    assert_below(math.abs(a - fd) / (math.abs(a) + math.abs(fd)), 2e-4, 'scale term')
  end)

  it('deeplift has no explain_vjp', function()
    assert.has_error(function() methods.deeplift():explain_vjp(net, x, labels, u) end,
      'deeplift:explain_vjp: not available (deeplift is not gradient-based)')
    assert.is_false(ev.supported(methods.deeplift()))
    assert.are.equal('surrogate', ev.kind(methods.moreaugrad()))
    assert.are.equal('exact', ev.kind(methods.smoothgrad()))
  end)

  it('rejects a cotangent of the wrong shape', function()
    assert.has_error(function() methods.gradient():explain_vjp(net, x, labels, T.zeros { 3 }) end,
      'gradient:explain_vjp: the cotangent must be a tensor shaped like x (2x1x6x6), got a tensor of shape 3')
    -- the same element count in another shape is refused too (a shape check, not a count check)
    assert.has_error(function() methods.gradient():explain_vjp(net, x, labels, T.zeros { 1, 72 }) end,
      'gradient:explain_vjp: the cotangent must be a tensor shaped like x (2x1x6x6), got a tensor of shape 1x72')
    assert.has_error(function() methods.gradient():explain_abs_vjp(net, x, labels, T.zeros { 2, 36 }) end,
      'gradient:explain_abs_vjp: w must be a tensor shaped like x (2x1x6x6), got a tensor of shape 2x36')
  end)
end)

describe('explain_vjp of surrogates vs finite differences of the surrogate', function()
  it('Sparsified SmoothGrad: selection and tau held constant', function()
    local o = { samples = 5, seed = 9, clip = 0.1, keep = 0.5, sigma = 0.1 }
    local m = methods.sparsified_smoothgrad(o)
    local vjp, E = m:explain_vjp(net, x, labels, u)
    assert_below(max_rel(E, m:explain(net, x, labels)), 1e-5, 'sparsified map')
    local N, d, t = 2, 36, o.samples
    -- the noisy points of explain, rebuilt from the RNG: (seed, stream = x's key of item n, offset i·d)
    local f = ffi.new('float[1]')
    local function f32(v) f[0] = v return tonumber(f[0]) end
    local function points(xx)
      local pts = {}
      for n = 0, N - 1 do
        local item = xx:select(n + 1)
        local std = f32(f32(o.sigma) * f32(item:max() - item:min()))
        for i = 0, t - 1 do
          pts[#pts + 1] = T.randn({ 1, 1, 6, 6 }, { seed = o.seed, stream = ids[n + 1], offset = i * d, std = std })
            :add_(item)
        end
      end
      local lab = {}
      for n = 0, N - 1 do for _ = 1, t do lab[#lab + 1] = labels[n + 1] end end
      local _, g = oracle.grad(net, T.cat(pts), lab)
      return g
    end
    -- the selection at x: kept entries and tau per sample
    local g0 = points(x)
    local clip_k, keep_k = math.max(1, math.floor(0.1 * d)), math.max(1, math.floor(0.5 * d))
    local kept, tau = {}, {}
    for q = 0, N * t - 1 do
      local a = {}
      for j = 0, d - 1 do a[j + 1] = math.abs(g0:data()[q * d + j]) end
      local s = {}
      for j = 1, d do s[j] = a[j] end
      table.sort(s, function(p, r) return p > r end)
      -- kept[q][j]: 0 dropped, 1 kept below tau (|g|/tau), 2 kept and clipped (1)
      tau[q], kept[q] = s[clip_k], {}
      -- (sampling.c: kept entries at or above tau are 1, so tau = 0 clips them all)
      for j = 1, d do kept[q][j] = (a[j] < s[keep_k] or a[j] == 0) and 0 or a[j] < tau[q] and 1 or 2 end
    end
    local function surrogate(xx)
      local g = points(xx)
      local out = T.zeros(x:shape())
      for q = 0, N * t - 1 do
        local n = math.floor(q / t)
        for j = 1, d do
          local k = kept[q][j]
          if k > 0 then
            local s = k == 2 and 1 or math.abs(g:data()[q * d + j - 1]) / tau[q]
            out:data()[n * d + j - 1] = out:data()[n * d + j - 1] + s / t
          end
        end
      end
      return out
    end
    assert_below(max_rel(surrogate(x), E), 1e-5, 'surrogate at x is the map')
    assert_below(directional(surrogate, vjp), 2e-4, 'sparsified surrogate')
  end)

  for _, o in ipairs {
    { T = 30, m = 0, K = 1 },
    { T = 30, m = 0, K = 5, reg = 'l1', eta = 0.005 },
    { T = 20, m = 3, K = 4, reg = 'group', eta = 0.01, group_size = 2, seed = 4 },
  } do
    local m = methods.moreaugrad(o)
    it('MoreauGrad ' .. tostring(m) .. ': 1[δ̄ ≠ 0] ⊙ |∇f_c(x + δ_T)|, δ_T held constant', function()
      local _, E0, extra0 = m:explain_vjp(net, x, labels, u)
      local _, gT = oracle.grad(net, x + extra0.delta_T, labels)
      local w = off_kinks(u, gT, 0.05)
      local vjp, E, extra = m:explain_vjp(net, x, labels, w)
      assert.is_true(E:max_abs_diff(E0) == 0, 'deterministic')
      assert.is_true(m.last_solver ~= nil)
      assert.is_true(E:max_abs_diff(m:explain(net, x, labels)) == 0, 'E is the solver output')
      local dT, mask = extra.delta_T, E:clone():apply_(function(v) return v ~= 0 and 1 or 0 end)
      local function surrogate(xx)
        local _, g = oracle.grad(net, xx + dT, labels)
        return g:abs():mul_(mask)
      end
      assert.is_true(surrogate(x):max_abs_diff(extra.surrogate) == 0)
      assert_below(directional(surrogate, vjp, { u = w }), 2e-4, 'moreaugrad surrogate')
      -- explain_abs_vjp passes w straight through: the surrogate models |E|
      local a = m:explain_abs_vjp(net, x, labels, w)
      assert.is_true(a:max_abs_diff(vjp) == 0)
    end)
  end
end)
