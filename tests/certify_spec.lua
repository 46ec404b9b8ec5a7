-- Certificates (moreau.certify): the normal law against tabulated values;
-- Levine et al.'s top-k rule on hand-computed maps and, end to end, on a
-- linear score whose Sparsified SmoothGrad map is known in closed form;
-- Lanczos against a known spectrum and against the exact smallest eigenvalue
-- of a small net's full Hessian built column by column from HVPs; Corollary
-- 1's bound from λ; and the certificates recipe at small size with zero
-- violations.
local T = require 'moreau.tensor'
local nn = require 'moreau.nn'
local core = require 'moreau.core'
local ffi = require 'ffi'
local oracle = require 'moreau.oracle'
local methods = require 'moreau.methods'
local certify = require 'moreau.certify'
local asserts = require 'helpers.asserts'

local SEED = 18

local function close(a, b, tol, what)
  assert(math.abs(a - b) <= tol, ('%s: %.17g vs %.17g (tol %g, seed %d)'):format(what or '', a, b, tol, SEED))
end

describe('certify: the normal law', function()
  it('matches tabulated values of Phi and its quantile', function()
    close(certify.normal_cdf(0), 0.5, 1e-16)
    close(certify.normal_cdf(1.96), 0.9750021048517795, 1e-15)
    close(certify.normal_cdf(-1), 0.15865525393145707, 1e-15)
    close(certify.normal_cdf(-3), 0.0013498980316300946, 1e-16)
    close(certify.normal_cdf(-5) / 2.866515718791939e-07, 1, 1e-12)
    close(certify.normal_cdf(4), 0.9999683287581669, 1e-15)
    close(certify.normal_quantile(0.975), 1.959963984540054, 1e-13)
    close(certify.normal_quantile(0.15), -1.0364333894937898, 1e-13)
    close(certify.normal_quantile(1e-10), -6.361340902404056, 1e-10)
    assert.are.equal(-math.huge, certify.normal_quantile(0))
    assert.are.equal(math.huge, certify.normal_quantile(1))
    asserts.error_with(function() certify.normal_quantile(1.5) end,
      'certify.normal_quantile: p must be in [0, 1], got 1.5')
  end)
end)

describe('certify: the top-k certificate of Sparsified SmoothGrad', function()
  -- v sorted: 1, 0.9, 0.5, 0.1, 0, 0; k = 2, s = 1.
  -- e = 0: rank 0 vs rank 3 always holds (Φ⁻¹(1) = inf); rank 1 vs rank 2
  -- holds while Φ⁻¹(0.9) − 2r > Φ⁻¹(0.5) = 0, i.e. r < 1.2815515655446004/2.
  -- e = 0.05: rank 0 holds while Φ⁻¹(0.95) − 2r > Φ⁻¹(0.15), r < 1.3406435082226310;
  -- rank 1 while Φ⁻¹(0.85) − 2r > Φ⁻¹(0.55), r < 0.4553860213193579.
  local v = { 0.1, 0, 1, 0.5, 0, 0.9 }
  it('counts the ranks that hold, as computed by hand', function()
    assert.are.equal(2, certify.certified_overlap(v, 2, 0.64, 1, 0))
    assert.are.equal(1, certify.certified_overlap(v, 2, 0.641, 1, 0))
    assert.are.equal(1, certify.certified_overlap(v, 2, 100, 1, 0))
    assert.are.equal(2, certify.certified_overlap(v, 2, 0.455, 1, 0.05))
    assert.are.equal(1, certify.certified_overlap(v, 2, 0.456, 1, 0.05))
    assert.are.equal(1, certify.certified_overlap(v, 2, 1.34, 1, 0.05))
    assert.are.equal(0, certify.certified_overlap(v, 2, 1.341, 1, 0.05))
    -- the radius enters as 2r/s: s = 2 doubles the certified radius
    assert.are.equal(2, certify.certified_overlap(v, 2, 1.28, 2, 0))
    assert.are.equal(1, certify.certified_overlap(v, 2, 1.29, 2, 0))
    -- r = 0: only the sampling error separates the ranks: 0.9 − 0.2 > 0.5 + 0.2 fails
    assert.are.equal(2, certify.certified_overlap(v, 2, 0, 1, 0.19))
    assert.are.equal(1, certify.certified_overlap(v, 2, 0, 1, 0.21))
    -- s = 0 with r > 0: no smoothing, nothing certified
    assert.are.equal(0, certify.certified_overlap(v, 2, 0.1, 0, 0))
  end)

  it('a rank whose outsider lies past the map holds', function()
    -- d = 3, k = 2: rank 0 would need rank 3, which does not exist
    assert.are.equal(1, certify.certified_overlap({ 0.2, 1, 0.5 }, 2, 50, 1, 0))
    assert.are.equal(2, certify.certified_overlap({ 0.2, 1, 0.5 }, 2, 0, 1, 0))
    asserts.error_with(function() certify.certified_overlap(v, 7, 0, 1, 0) end,
      'certify.certified_overlap: k must be an integer in 1..6, got 7')
  end)

  it('on a linear score: the closed-form map, Hoeffding and the noise scale', function()
    -- f_c(x) = W_c·x: every noisy copy has the gradient W_c, so the map is the
    -- sparsified |W_c| itself (docs/methods.md §5) and the certificate is the
    -- rule applied to it with e = √(ln(2d/α)/(2t)) and s = sigma·range(x).
    local b = nn.builder({ 1, 4, 4 }, { seed = SEED })
    local net = b:build(b:linear('fc', b:flatten(b.input), 16, 3))
    local x = T.randn({ 2, 1, 4, 4 }, { seed = SEED })
    local labels = { 0, 2 }
    local _, g = oracle.grad(net, x, labels)
    local t, clip, keep, sigma = 64, 0.125, 0.5, 0.2
    local m = methods.sparsified_smoothgrad { samples = t, clip = clip, keep = keep, sigma = sigma, seed = SEED }
    local d = 16
    local e = math.sqrt(math.log(2 * d / 0.01) / (2 * t))
    local pg, px = core.floats(g), core.floats(x)
    for _, radius in ipairs { 0, 0.01, 0.05, 0.2 } do
      local c, E = certify.sparsified_smoothgrad_topk(net, x, labels, { radius = radius, k = 4, alpha = 0.01,
        method = m })
      local pe = core.floats(E)
      for n = 0, 1 do
        local a, lo, hi = {}, math.huge, -math.huge
        for j = 0, d - 1 do
          a[j + 1] = math.abs(pg[n * d + j])
          lo, hi = math.min(lo, px[n * d + j]), math.max(hi, px[n * d + j])
        end
        local sorted = {}
        for j = 1, d do sorted[j] = a[j] end
        table.sort(sorted, function(p, q) return p > q end)
        local tau, kappa = sorted[2], sorted[8] -- clip_k = 0.125·16 = 2, keep_k = 0.5·16 = 8
        local S = {}
        for j = 1, d do
          S[j] = a[j] >= tau and 1 or (a[j] >= kappa and a[j] / tau or 0)
          close(pe[n * d + j - 1], S[j], 1e-6, 'map entry')
        end
        local s = sigma * (hi - lo)
        close(c[n + 1].noise_std, s, 1e-6 * s, 'noise_std')
        close(c[n + 1].hoeffding, e, 1e-15, 'hoeffding')
        assert.are.equal(4, c[n + 1].k)
        assert.are.equal(certify.certified_overlap(S, 4, radius, s, e), c[n + 1].certified)
      end
      if radius == 0 then assert.is_true(c[1].certified >= 1, 'some rank certified at r = 0') end
      if radius == 0.2 then assert.is_true(c[1].certified < 4, 'the radius costs ranks') end
    end
  end)

  it('refuses another method, a k past the map and bad options', function()
    local net = require('helpers.nets').softplus_net()
    local x = T.randn({ 1, 1, 6, 6 }, { seed = SEED })
    asserts.error_with(function()
      certify.sparsified_smoothgrad_topk(net, x, { 0 }, { method = methods.smoothgrad() })
    end, "certify.sparsified_smoothgrad_topk: option 'method' must be a sparsified_smoothgrad method", 'got smoothgrad')
    asserts.error_with(function() certify.sparsified_smoothgrad_topk(net, x, { 0 }, { k = 37 }) end,
      "certify.sparsified_smoothgrad_topk: option 'k' must be at most the 36 entries of an item, got 37")
    asserts.error_with(function() certify.sparsified_smoothgrad_topk(net, x, { 0 }, { radius = -1 }) end,
      "certify.sparsified_smoothgrad_topk: option 'radius' must be a number >= 0, got -1")
    asserts.error_with(function() certify.sparsified_smoothgrad_topk(net, x, { 0 }, { alpha = 1 }) end,
      "certify.sparsified_smoothgrad_topk: option 'alpha' must be a number in (0, 1), got 1")
  end)
end)

--- λ_min of a dense symmetric matrix by bisection on Sylvester's inertia:
-- the number of negative pivots of the LDLᵀ of A − σI is the number of
-- eigenvalues below σ (independent of certify's Jacobi and Lanczos code).
local function lambda_min_dense(A, n)
  local function below(sigma)
    local a = {}
    for i = 1, n do
      a[i] = {}
      for j = 1, n do a[i][j] = A[i][j] - (i == j and sigma or 0) end
    end
    local neg = 0
    for k = 1, n do
      local p = a[k][k]
      if p == 0 then p = 1e-300 end
      if p < 0 then neg = neg + 1 end
      for i = k + 1, n do
        local f = a[i][k] / p
        for j = k + 1, n do a[i][j] = a[i][j] - f * a[k][j] end
      end
    end
    return neg
  end
  local r = 0
  for i = 1, n do for j = 1, n do r = r + A[i][j] ^ 2 end end
  local lo, hi = -math.sqrt(r) - 1, math.sqrt(r) + 1
  for _ = 1, 200 do
    local mid = 0.5 * (lo + hi)
    if below(mid) == 0 then lo = mid else hi = mid end
  end
  return 0.5 * (lo + hi)
end

--- The full Hessian of item 1's score at x, column by column: apply(e_j).
local function full_matrix(apply, d)
  local H = {}
  for i = 1, d do H[i] = {} end
  for j = 1, d do
    local V = ffi.new('double[?]', d)
    V[j - 1] = 1
    local col = apply(V)
    for i = 1, d do H[i][j] = col[i - 1] end
  end
  return H
end

describe('certify: Lanczos', function()
  it('finds the smallest eigenvalue of a known spectrum, per item', function()
    local d = 40
    local r = certify.lanczos_min(function(V)
      local out = ffi.new('double[?]', 2 * d)
      for i = 0, d - 1 do
        out[i] = (i - 3) * V[i]                 -- item 1: −3, −2, …, 36
        out[d + i] = (0.5 + i * i) * V[d + i]   -- item 2: 0.5, 1.5, 4.5, …
      end
      return out
    end, 2, d, { steps = 40, tol = 1e-10, seed = SEED })
    close(r[1].theta, -3, 1e-8, 'item 1')
    close(r[2].theta, 0.5, 1e-8, 'item 2')
    close(r[1].theta_max, 36, 1e-8, 'item 1 max')
    assert.is_true(r[1].converged and r[2].converged)
    local short = certify.lanczos_min(function(V)
      local out = ffi.new('double[?]', d)
      for i = 0, d - 1 do out[i] = (i - 3) * V[i] end
      return out
    end, 1, d, { steps = 3, tol = 1e-10, seed = SEED })
    assert.is_false(short[1].converged)
    assert.is_true(short[1].theta >= -3 - 1e-12, 'a Ritz value never lies below the spectrum')
    assert.are.equal(3, short[1].steps)
  end)

  it("matches the exact smallest eigenvalue of a small net's full Hessian (from HVPs, column by column)", function()
    local net = require('helpers.nets').softplus_net { size = 6, beta = 2, seed = 3 }
    local x = T.randn({ 1, 1, 6, 6 }, { seed = SEED })
    local d, lab = 36, ffi.new('int32_t[1]', 1)
    for _, samples in ipairs { 0, 4 } do
      local o = { sigma = 0.1, samples = samples, seed = SEED, score = 'logit', chunk = 0 }
      local H = full_matrix(certify.smoothed_hvp(net, x, x, lab, o), d)
      if samples == 0 then
        -- the columns are oracle.hvp's own: check one against it directly
        local v = T.zeros({ 1, 1, 6, 6 })
        v:data()[5] = 1
        local hv = core.floats(oracle.hvp(net, x, { 1 }, v))
        for i = 1, d do close(H[i][6], hv[i - 1], 1e-7, 'column 6') end
      end
      local asym = 0
      for i = 1, d do for j = 1, d do asym = math.max(asym, math.abs(H[i][j] - H[j][i])) end end
      assert.is_true(asym < 1e-5, 'the HVP Hessian is symmetric to float rounding: ' .. asym)
      for i = 1, d do for j = 1, i - 1 do H[i][j] = 0.5 * (H[i][j] + H[j][i]); H[j][i] = H[i][j] end end
      local exact = lambda_min_dense(H, d)
      local b = certify.moreaugrad_bound(net, x, { 1 }, { eps = 0.1, rho = 0.5, sigma = 0.1, samples = samples,
        seed = SEED, steps = 36, tol = 1e-9 })
      local lz = b[1].lanczos[1]
      assert.is_true(lz.converged, 'converged')
      close(lz.theta, exact, 1e-5 * math.max(1, math.abs(exact)), ('samples %d: theta'):format(samples))
      -- the default 30 steps and tol 1e-4: θ − residual lies below the true λ_min or close to it
      local b2 = certify.moreaugrad_bound(net, x, { 1 }, { eps = 0.1, samples = samples, seed = SEED })
      local l2 = b2[1].lanczos[1]
      assert.is_true(l2.theta >= exact - 1e-6, 'Ritz value above the spectrum')
      assert.is_true(l2.theta - l2.residual <= exact + 1e-4 * math.abs(exact) + 1e-7,
        ('samples %d: θ − residual %.9g above λ_min %.9g'):format(samples, l2.theta - l2.residual, exact))
    end
  end)
end)

describe('certify: Corollary 1 for MoreauGrad', function()
  local net = require('helpers.nets').softplus_net { size = 6, beta = 2, seed = 3 }
  local x = T.randn({ 2, 1, 6, 6 }, { seed = SEED })

  it('bound = eps / min(rho, 1/lambda - rho), and none when rho >= 1/lambda', function()
    local b = certify.moreaugrad_bound(net, x, { 0, 1 }, { eps = 0.3, rho = 2, samples = 0 })
    for n = 1, 2 do
      local c = b[n]
      close(c.lambda, math.max(0, -(c.lanczos[1].theta - c.lanczos[1].residual)), 0, 'lambda')
      assert.is_true(c.lambda > 0, 'this net is not convex at x')
      local expect = c.lambda * 2 < 1 and 0.3 / math.min(2, 1 / c.lambda - 2) or math.huge
      assert.are.equal(c.lambda * 2 < 1, c.applies)
      close(c.bound, expect, 1e-12 * (expect < math.huge and expect or 1), 'bound')
      -- far past 1/λ the corollary does not apply
      local far = certify.moreaugrad_bound(net, x:narrow(n), { n - 1 }, { eps = 0.3, rho = 10 / c.lambda,
        samples = 0 })
      assert.is_false(far[1].applies)
      assert.are.equal(math.huge, far[1].bound)
    end
  end)

  it('takes the largest curvature over the given points', function()
    local shifted = x + T.randn({ 2, 1, 6, 6 }, { seed = SEED + 1 })
    local a = certify.moreaugrad_bound(net, x, { 0, 1 }, { samples = 0 })
    local s = certify.moreaugrad_bound(net, shifted, { 0, 1 }, { samples = 0 })
    local both = certify.moreaugrad_bound(net, x, { 0, 1 }, { samples = 0, points = { shifted } })
    for n = 1, 2 do close(both[n].lambda, math.max(a[n].lambda, s[n].lambda), 1e-12, 'max over points') end
    asserts.error_with(function() certify.moreaugrad_bound(net, x, { 0, 1 }, { points = { x:narrow(1) } }) end,
      'certify.moreaugrad_bound: points[1] must be a tensor shaped like x (2x1x6x6), got 1x1x6x6')
  end)

  it('the certificates recipe at small size: zero violations where the corollary applies', function()
    local recipe = require 'moreau.recipe'
    local r = recipe.load(core.root .. '/recipes/certificates.lua')
    local dir = require('helpers.cli').tmpdir() .. '/certificates'
    recipe.run(r, recipe.params(r, { images = '2', rhos = '0.002,0.005', eps = '1', T = '30', iters = '2',
      steps = '20' }), { out = dir })
    local f = assert(io.open(dir .. '/results.json'))
    local res = require('cjson').decode(f:read('*a'))
    f:close()
    assert.are.equal(16, res.total)
    assert.is_true(res.applicable >= 4, 'the corollary applies to some cases: ' .. res.applicable)
    assert.are.equal(0, res.violations)
    for _, c in ipairs(res.cases) do
      if c.applies then assert.is_true(c.change <= c.bound, ('image %d: %g > %g'):format(c.image, c.change, c.bound)) end
    end
  end)
end)
