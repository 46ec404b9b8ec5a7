-- The adaptive attack (attacks.topk{adaptive = true}) and its gradient,
-- attacks.moreaugrad_vjp: the implicit-function VJP of MoreauGrad's map
-- against central finite differences of the converged solver's map (vanilla
-- and sparse, off the soft-threshold's kinks); against a dense solve of
-- (I + ρH) w = u when the system is indefinite (MINRES); CG and MINRES on
-- known systems (certify.cg_batch, certify.minres_batch); the errors; the
-- attack itself; and its recipe at tiny size.
local T = require 'moreau.tensor'
local core = require 'moreau.core'
local ffi = require 'ffi'
local oracle = require 'moreau.oracle'
local methods = require 'moreau.methods'
local attacks = require 'moreau.attacks'
local asserts = require 'helpers.asserts'

local SEED = 5

local net = require('helpers.nets').softplus_net { size = 6, beta = 2, seed = 3 }
local x = T.randn({ 2, 1, 6, 6 }, { seed = SEED })
local labels = attacks.predict(net, x)
local N, d = 2, 36

local function item_dot(a, b, n)
  local pa, pb, s = core.floats(a), core.floats(b), 0
  for j = n * d, n * d + d - 1 do s = s + pa[j] * pb[j] end
  return s
end

local function support(E, n)
  local pe, out = core.floats(E), {}
  for j = n * d, n * d + d - 1 do out[#out + 1] = pe[j] ~= 0 and 1 or 0 end
  return table.concat(out)
end

describe('attacks.moreaugrad_vjp: the derivative through the fixed point', function()
  -- A converged, deterministic solve: m = 0, K = 1 (the last iterate), 2000
  -- iterations of step 0.1 at rho = 1 (contraction about 0.9 per step).
  for _, case in ipairs { { name = 'vanilla', eta = 0 }, { name = 'sparse', eta = 0.006 } } do
    it(case.name .. ': matches central differences of the converged map (seed ' .. SEED .. ')', function()
      local m = methods.moreaugrad { m = 0, T = 2000, K = 1, rho = 1, gamma = 0.1, eta = case.eta }
      local u = T.randn({ 2, 1, 6, 6 }, { seed = SEED + 2 })
      local v = T.randn({ 2, 1, 6, 6 }, { seed = SEED + 3 })
      local vjp, E, info = attacks.moreaugrad_vjp(net, m, x, labels, u, { cg_tol = 1e-10 })
      local h = 1e-2
      local xp, xm = x:clone():add_(v, h), x:clone():add_(v, -h)
      local Ep, Em = m:explain(net, xp, labels), m:explain(net, xm, labels)
      for n = 0, N - 1 do
        assert.are.equal('cg', info.cg[n + 1].method)
        assert.is_true(info.cg[n + 1].converged)
        if case.eta > 0 then
          -- off the kinks: the support is the same at x − hv, x and x + hv, and proper
          assert.are.equal(support(E, n), support(Ep, n))
          assert.are.equal(support(E, n), support(Em, n))
          assert.is_true(info.support[n + 1] > 0 and info.support[n + 1] < d,
            'a proper support: ' .. info.support[n + 1])
        else
          assert.are.equal(d, info.support[n + 1])
        end
        local fd = (item_dot(Ep, u, n) - item_dot(Em, u, n)) / (2 * h)
        local an = item_dot(vjp, v, n)
        local rel = math.abs(an - fd) / math.abs(an + fd)
        assert.is_true(rel < 1e-3, ('item %d: vjp·v %.9g, differences %.9g, relative error %.3g (seed %d)')
          :format(n + 1, an, fd, rel, SEED))
      end
    end)
  end

  it('an indefinite system falls back to MINRES, and matches a dense solve', function()
    -- rho = 200 and one iteration: I + ρH(x + δ_1) has negative eigenvalues
    -- (λ_min(H) is about −0.013 here), which CG detects.
    local rho = 200
    local m = methods.moreaugrad { m = 0, T = 1, K = 1, rho = rho }
    local u = T.randn({ 2, 1, 6, 6 }, { seed = SEED + 4 })
    local vjp, _, info = attacks.moreaugrad_vjp(net, m, x, labels, u, { cg_iters = 200, cg_tol = 1e-12 })
    local p = x + m.last_solver:delta()
    for n = 0, N - 1 do
      local c = info.cg[n + 1]
      assert.are.equal('minres', c.method)
      assert.is_true(c.curvature <= 0)
      -- the dense H of item n at x + δ_T, column by column from HVPs
      local pn = p:narrow(n + 1)
      local H = {}
      for j = 1, d do
        local e = T.zeros({ 1, 1, 6, 6 })
        e:data()[j - 1] = 1
        H[j] = core.floats(oracle.hvp(net, pn, { labels[n + 1] }, e))
      end
      -- (I + ρH) w = u by Gaussian elimination with partial pivoting, then H w
      local A, b = {}, {}
      local pu = core.floats(u)
      for i = 1, d do
        A[i] = {}
        for j = 1, d do A[i][j] = (i == j and 1 or 0) + rho * 0.5 * (H[j][i - 1] + H[i][j - 1]) end
        b[i] = pu[n * d + i - 1]
      end
      local w = require('helpers.linalg').solve(A, b)
      local pv = core.floats(vjp)
      local num, den = 0, 0
      for i = 1, d do
        local hw = 0
        for j = 1, d do hw = hw + H[j][i - 1] * w[j] end
        num, den = num + (pv[n * d + i - 1] - hw) ^ 2, den + hw ^ 2
      end
      assert.is_true(math.sqrt(num / den) < 1e-4, ('item %d: relative error %.3g'):format(n + 1, math.sqrt(num / den)))
    end
    asserts.error_with(function()
      attacks.moreaugrad_vjp(net, m, x, labels, u, { indefinite = 'error' })
    end, 'attacks.moreaugrad_vjp: the implicit system I + rho*H_SS of item 2 is not positive definite', 'at CG iteration 2', 'rho = 200')
  end)

  it('CG and MINRES solve known systems', function()
    local n = 12
    local function applyA(V)
      local out = ffi.new('double[?]', 2 * n)
      for i = 0, n - 1 do
        out[i] = (i + 1) * V[i]                -- item 1: positive definite
        out[n + i] = (i - 5.5) * V[n + i]      -- item 2: indefinite
      end
      return out
    end
    local B = ffi.new('double[?]', 2 * n)
    for j = 0, 2 * n - 1 do B[j] = math.sin(j + 1) end
    local X, st = ffi.new('double[?]', 2 * n), { {}, {} }
    local certify = require 'moreau.certify'
    local flagged = certify.cg_batch(applyA, B, X, 2, n, { [0] = true, [1] = true }, 50, 1e-12, st)
    assert.are.same({ 1 }, flagged)
    assert.is_true(st[1].converged)
    for i = 0, n - 1 do assert.is_true(math.abs(X[i] - B[i] / (i + 1)) < 1e-10) end
    local Y, st2 = ffi.new('double[?]', 2 * n), { {}, {} }
    certify.minres_batch(applyA, B, Y, 2, n, { [0] = true, [1] = true }, 50, 1e-12, st2)
    for i = 0, n - 1 do
      assert.is_true(math.abs(Y[i] - B[i] / (i + 1)) < 1e-9)
      assert.is_true(math.abs(Y[n + i] - B[n + i] / (i - 5.5)) < 1e-9)
    end
    assert.are.equal('minres', st2[2].method)
    assert.is_true(st2[2].converged)
  end)

  it('refuses group sparsity and other methods', function()
    asserts.error_with(function()
      attacks.moreaugrad_vjp(net, methods.moreaugrad { group_size = 2, m = 0, T = 2 }, x, labels, x)
    end, "attacks.moreaugrad_vjp: reg = 'group' is not supported")
    asserts.error_with(function() attacks.moreaugrad_vjp(net, methods.gradient(), x, labels, x) end,
      'attacks.moreaugrad_vjp: needs a moreaugrad method, got gradient')
    asserts.error_with(function() attacks.topk { adaptive = 1 } end,
      "attacks.topk: option 'adaptive' must be true or false, got 1")
    asserts.error_with(function() attacks.topk { cg_iters = 0 } end,
      "attacks.topk: option 'cg_iters' must be an integer >= 1, got 0")
  end)
end)

describe('attacks.topk{adaptive = true}', function()
  it('lowers the objective, stays in the ball, and records its solves', function()
    for _, m in ipairs { methods.moreaugrad { m = 0, T = 50, eta = 0.006 }, methods.moreaugrad { m = 2, T = 20 } } do
      local atk = attacks.topk { eps = 1, iters = 3, adaptive = true, k = 5 }
      local xa, info = atk:run(net, m, x, labels)
      for n = 1, N do
        assert.is_true(info[n].J <= info[n].J_clean)
        assert.is_true((xa:narrow(n) - x:narrow(n)):norm() <= 1 + 1e-5)
      end
      for t = 0, 2 do
        assert.are.equal(N, #info.cg[t])
        for n = 1, N do assert.is_true(info.cg[t][n].iters >= 1) end
      end
      assert.is_true(info[1].J < info[1].J_clean or info[2].J < info[2].J_clean, 'the attack made progress')
    end
  end)

  it('the adaptive_attack recipe at tiny size', function()
    local recipe = require 'moreau.recipe'
    local r = recipe.load(core.root .. '/recipes/adaptive_attack.lua')
    local dir = require('helpers.cli').tmpdir() .. '/adaptive_attack'
    recipe.run(r, recipe.params(r, { images = '2', seeds = '2', iters = '2', T = '10', m = '2', cg_iters = '10', rhos = '0.05' }),
      { out = dir })
    local f = assert(io.open(dir .. '/results.json'))
    local res = require('cjson').decode(f:read('*a'))
    f:close()
    assert.are.equal(6, #res.summary)
    assert.are.equal(res.summary[1].mean, res.summary[2].mean) -- the gradient: adaptive is its exact VJP
    for _, s in ipairs(res.summary) do
      assert.is_true(s.mean >= 0 and s.mean <= 1)
      assert.are.equal(2, #s.seed_means)
    end
    assert.is_true(#res.solver > 0)
  end)
end)
