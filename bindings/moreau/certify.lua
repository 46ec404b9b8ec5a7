--- moreau.certify — robustness certificates of explanations: Levine et al.'s
-- top-k certificate for Sparsified SmoothGrad, and the MoreauGrad paper's
-- Corollary 1 bound with the weak-convexity modulus λ estimated by Lanczos on
-- exact Hessian-vector products (docs/evaluation.md, "Certificates").
--
--   local c = certify.sparsified_smoothgrad_topk(net, x, labels, { radius = 0.1, k = 20 })
--   print(c[1].certified, c[1].k)           -- entries of the top-k certified to stay in it
--   local b = certify.moreaugrad_bound(net, x, labels, { eps = 0.5, rho = 1 })
--   print(b[1].lambda, b[1].bound)          -- λ̂ and ε / min(ρ, 1/λ̂ − ρ)
--
-- Both functions evaluate the inference-mode network and change no parameter
-- or buffer (README, "Training mode").
local ffi = require 'ffi'
local core = require 'moreau.core'
local T = require 'moreau.tensor'
local oracle = require 'moreau.oracle'
local options = require 'moreau.options'
local C, check, handle = core.C, core.check, core.handle

local certify = {}

-- ------------------------------------------------------ the normal law

local SQRT2PI = math.sqrt(2 * math.pi)

--- The standard normal density φ(z) = exp(−z²/2)/√(2π).
local function pdf(z) return math.exp(-0.5 * z * z) / SQRT2PI end

--- The standard normal distribution function Φ(z), to about 1e-15 absolute.
-- |z| < 3: the series Φ(z) = ½ + φ(z) Σ_{n≥0} z^{2n+1}/(1·3···(2n+1))
-- (Abramowitz and Stegun 26.2.11); z <= −3: the lower tail by Laplace's
-- continued fraction Φ(z) = φ(z)/(u + 1/(u + 2/(u + 3/(u + …)))), u = −z
-- (A&S 26.2.14), evaluated bottom-up over 80 levels; z >= 3: 1 − Φ(−z).
-- ARGS: z (a number; ±inf give 0 and 1). RETURN: Φ(z) in [0, 1].
function certify.normal_cdf(z)
  if z ~= z then error('certify.normal_cdf: z is NaN', 2) end
  if z == -math.huge then return 0 end
  if z == math.huge then return 1 end
  if z >= 3 then return 1 - certify.normal_cdf(-z) end
  if z <= -3 then
    local u, f = -z, 0
    for n = 80, 1, -1 do f = n / (u + f) end
    return pdf(z) / (u + f)
  end
  local term, sum, z2 = z, z, z * z
  for n = 1, 200 do
    term = term * z2 / (2 * n + 1)
    sum = sum + term
    if math.abs(term) < 1e-17 * math.abs(sum) then break end
  end
  return 0.5 + pdf(z) * sum
end

--- The standard normal quantile Φ⁻¹(p): bisection of Φ on [−40, 40] to the
-- last bit (Φ is monotone; 0 and 1 give ∓inf). ARGS: p in [0, 1].
-- RETURN: z with Φ(z) = p. Errors: p outside [0, 1] or NaN.
function certify.normal_quantile(p)
  if not (p >= 0 and p <= 1) then
    error('certify.normal_quantile: p must be in [0, 1], got ' .. options.show(p), 2)
  end
  if p == 0 then return -math.huge end
  if p == 1 then return math.huge end
  local lo, hi = -40, 40
  for _ = 1, 200 do
    local mid = 0.5 * (lo + hi)
    if mid == lo or mid == hi then break end
    if certify.normal_cdf(mid) < p then lo = mid else hi = mid end
  end
  return 0.5 * (lo + hi)
end

local Phi, Phinv = certify.normal_cdf, certify.normal_quantile

-- ------------------------------------- Levine et al. 2019: top-k certificate

--- The rule of certify.sparsified_smoothgrad_topk on one map: with v sorted
-- in decreasing order (ranks 0-based), the number of ranks i < k with
--   Φ(Φ⁻¹(clip(v_i − e)) − 2r/s) − e > v_{2k−1−i}
-- (a rank 2k − 1 − i past the last holds), counted from i = 0 until the first
-- that fails (the left side falls and the right side rises with i).
-- r = 0 shifts by 0; s = 0 with r > 0 certifies nothing.
-- ARGS: values (a Lua array of the d entries of one map, in [0, 1], any
-- order; not changed), k (1..d), radius (r >= 0), noise_std (s >= 0),
-- hoeffding (e >= 0). RETURN: an integer in 0..k.
function certify.certified_overlap(values, k, radius, noise_std, hoeffding)
  local d = #values
  if type(k) ~= 'number' or k ~= math.floor(k) or k < 1 or k > d then
    error(('certify.certified_overlap: k must be an integer in 1..%d, got %s'):format(d, options.show(k)), 2)
  end
  local v = {}
  for j = 1, d do v[j] = values[j] end
  table.sort(v, function(a, b) return a > b end)
  local e = hoeffding
  local shift = radius == 0 and 0 or (noise_std > 0 and 2 * radius / noise_std or math.huge)
  local m = 0
  for i = 0, k - 1 do
    local r = 2 * k - 1 - i -- the outsider that must overtake rank i
    if r <= d - 1 then
      local lo = math.min(1, math.max(0, v[i + 1] - e))
      -- shift = inf (s = 0, r > 0): the lower bound is 0, even for lo = 1
      local low = shift == math.huge and 0 or Phi(Phinv(lo) - shift)
      if not (low - e > v[r + 1]) then break end
    end
    m = m + 1
  end
  return m
end

certify.topk_defaults = {
  radius = 0, k = 0, k_frac = 0.02, alpha = 0.05,
  _extra = { method = true },
  _domains = { radius = 'num >= 0', k = 'int >= 0', k_frac = 'num in (0, 1]', alpha = 'num in (0, 1)',
    method = 'table' },
}

--- The certified top-k overlap of Sparsified SmoothGrad (Levine, Singla and
-- Feizi 2019, "Certifiably Robust Interpretation in Deep Learning").
--
-- The theorem. Let S(y) ∈ [0, 1]^d be the sparsified gradient of one noisy
-- copy (docs/methods.md §5: kept entries at or above τ count 1, the others
-- a/τ or 0) and ḡ(y) = E_z[S(y + z)], z ~ N(0, s² I), the smoothed map. Each
-- entry ḡ_j takes values in [0, 1], so y ↦ Φ⁻¹(ḡ_j(y)) is (1/s)-Lipschitz
-- in y (the Gaussian-smoothing bound of Salman et al. 2019, Lemma 2, which
-- Levine et al. extend to maps), and for ‖δ‖₂ <= r
--   Φ(Φ⁻¹(ḡ_j(x)) − r/s) <= ḡ_j(x + δ) <= Φ(Φ⁻¹(ḡ_j(x)) + r/s).
-- Sort ḡ(x) in decreasing order, v_0 >= v_1 >= … >= v_{d−1} (ranks 0-based).
-- Pushing the r lowest of the top k (ranks k−r … k−1) out of the top-k of
-- ḡ(x + δ) needs r entries from outside to overtake rank k − r; the r-th best
-- outsider is rank k − 1 + r = 2k − 1 − i with i = k − r. So rank i stays
-- certified when Φ(Φ⁻¹(v_i) − r/s) > Φ(Φ⁻¹(v_{2k−1−i}) + r/s), i.e.
--   Φ(Φ⁻¹(v_i) − 2r/s) > v_{2k−1−i},
-- and the certified overlap |top-k(x) ∩ top-k(x + δ)| >= #{i < k: that holds}
-- (the left side falls and the right side rises with i, so the ranks that
-- hold are 0 … m − 1). A rank 2k − 1 − i past d − 1 (2k > d) has no
-- outsider to overtake it: it holds.
--
-- The estimate. ḡ is estimated by the method's map E = (1/t) Σ_i S_i over its
-- t noisy copies. Each S_i(j) ∈ [0, 1], so Hoeffding's inequality and a union
-- bound over the d entries and both sides give, with probability >= 1 − α
-- over the noise, |E_j − ḡ_j(x)| <= e for every j at once, with
--   e = √(ln(2d/α) / (2t)).
-- The certificate then uses v_i − e (clipped to [0, 1]) on the left and
-- v_{2k−1−i} + e on the right: Φ(Φ⁻¹(v_i − e) − 2r/s) − e > v_{2k−1−i}, the
-- rule of the authors' released code. It holds with probability >= 1 − α.
--
-- The noise scale. The engine draws s = sigma·(max x − min x) per image
-- (docs/methods.md §4); the certificate is for the smoothed map with s fixed
-- at the clean image's value (reported as noise_std). A map recomputed at
-- x + δ by the method uses sigma·range(x + δ), which equals it only while
-- the perturbation leaves the image's range unchanged.
--
-- ARGS: net, x (N, ...), labels (0-based classes explained), opts {radius = 0
-- (the L2 radius r, input units), k = 0 (0: k_frac of the d entries, at least
-- 1, as attacks.topk_k), k_frac = 0.02, alpha = 0.05 (the failure probability
-- α), method = methods.sparsified_smoothgrad() (its samples t, sigma, clip,
-- keep, seed, score)}.
-- RETURN: a Lua array of N tables {certified (an integer in 0..k), k, radius,
-- noise_std (s), hoeffding (e), samples (t), alpha}, and the map E.
-- Errors: a method other than sparsified_smoothgrad; k above d; a non-finite x.
function certify.sparsified_smoothgrad_topk(net, x, labels, opts)
  local o = options.fill('certify.sparsified_smoothgrad_topk', certify.topk_defaults, opts, 2)
  if not T.is(x) then error('certify.sparsified_smoothgrad_topk: x must be a tensor', 2) end
  if not x:isfinite() then error('certify.sparsified_smoothgrad_topk: x contains NaN or infinite values', 2) end
  local methods = require 'moreau.methods'
  local method = o.method or methods.sparsified_smoothgrad()
  if type(method) ~= 'table' or method.name ~= 'sparsified_smoothgrad' then
    error(("certify.sparsified_smoothgrad_topk: option 'method' must be a sparsified_smoothgrad method " ..
      "(its map lies in [0, 1], which Hoeffding's bound needs), got %s"):format(
      type(method) == 'table' and tostring(method.name) or type(method)), 2)
  end
  local N, d = core.size(x, 1), core.numel(x) / core.size(x, 1)
  if o.k > d then
    error(("certify.sparsified_smoothgrad_topk: option 'k' must be at most the %d entries of an item, got %d")
      :format(d, o.k), 2)
  end
  local k = o.k > 0 and o.k or math.max(1, math.min(d, math.floor(o.k_frac * d + 0.5)))
  local E = method:explain(net, x, labels)
  local scales = ffi.new('float[?]', N)
  check(C.mr_noise_scales(scales, nil, nil, handle(x), method.opts.sigma))
  local t = method.opts.samples
  local e = math.sqrt(math.log(2 * d / o.alpha) / (2 * t))
  local pe = core.floats(E)
  local out = {}
  for n = 0, N - 1 do
    local v = {}
    for j = 0, d - 1 do v[j + 1] = pe[n * d + j] end
    local s = tonumber(scales[n])
    out[n + 1] = { certified = certify.certified_overlap(v, k, o.radius, s, e), k = k, radius = o.radius,
      noise_std = s, hoeffding = e, samples = t, alpha = o.alpha }
  end
  return out, E
end

-- ---------------------------------------------------------- Lanczos

--- Symmetric eigen-decomposition of a small dense matrix by cyclic Jacobi
-- rotations (Golub and Van Loan, §8.5), in double. ARGS: A (a Lua array of n
-- rows, each a Lua array of n numbers; not changed), n. RETURN: values (Lua
-- array), vectors (V[i][j]: entry i of eigenvector j).
local function jacobi_eigen(A, n)
  local a, V = {}, {}
  for i = 1, n do
    a[i], V[i] = {}, {}
    for j = 1, n do a[i][j], V[i][j] = A[i][j], i == j and 1 or 0 end
  end
  for _ = 1, 100 do
    local off, norm = 0, 0
    for i = 1, n do
      for j = 1, n do
        norm = norm + a[i][j] ^ 2
        if i ~= j then off = off + a[i][j] ^ 2 end
      end
    end
    if off <= 1e-30 * norm or off == 0 then break end
    for p = 1, n - 1 do
      for q = p + 1, n do
        if a[p][q] ~= 0 then
          local theta = (a[q][q] - a[p][p]) / (2 * a[p][q])
          local tt = (theta >= 0 and 1 or -1) / (math.abs(theta) + math.sqrt(theta * theta + 1))
          local c = 1 / math.sqrt(tt * tt + 1)
          local s = tt * c
          for r = 1, n do
            local arp, arq = a[r][p], a[r][q]
            a[r][p], a[r][q] = c * arp - s * arq, s * arp + c * arq
          end
          for r = 1, n do
            local apr, aqr = a[p][r], a[q][r]
            a[p][r], a[q][r] = c * apr - s * aqr, s * apr + c * aqr
          end
          for r = 1, n do
            local vrp, vrq = V[r][p], V[r][q]
            V[r][p], V[r][q] = c * vrp - s * vrq, s * vrp + c * vrq
          end
        end
      end
    end
  end
  local vals = {}
  for i = 1, n do vals[i] = a[i][i] end
  return vals, V
end
certify._jacobi_eigen = jacobi_eigen

certify.lanczos_defaults = { steps = 30, tol = 1e-4, seed = 0,
  _domains = { steps = 'int >= 1', tol = 'num > 0', seed = 'seed' } }

--- The smallest eigenvalue of N symmetric operators at once by the Lanczos
-- iteration with full reorthogonalization (Golub and Van Loan, §10.1; every
-- new vector is orthogonalized twice against all earlier ones, "twice is
-- enough"). Item n's operator is A_n; apply(V) receives the N current
-- vectors as a double[N·d] (item n at offset n·d) and returns A_n v_n in a
-- double[N·d] or float[N·d]. The start vector of item n is a normal draw
-- (seed, stream n + 1), normalized.
--
-- After step j, θ is the smallest eigenvalue of the j×j tridiagonal T_j and
-- the residual of its Ritz pair is ‖A y − θ y‖ = β_j |s_j| (s the eigenvector
-- of T_j, s_j its last entry). Item n stops when that residual is at most
-- tol·max(|θ_min|, |θ_max|) (relative to the spectrum seen so far), or when
-- β_j = 0 (an invariant subspace: θ is exact), or after `steps` steps (not
-- converged). θ >= λ_min(A) always (Cauchy interlacing), and some eigenvalue
-- of A lies within the residual of θ.
-- ARGS: apply, N, d, opts {steps = 30 (at most d are used), tol = 1e-4, seed = 0}.
-- RETURN: a Lua array of N tables {theta (the smallest Ritz value), residual,
-- steps, converged, theta_max (the largest Ritz value)}.
function certify.lanczos_min(apply, N, d, opts)
  local o = options.fill('certify.lanczos_min', certify.lanczos_defaults, opts, 2)
  if type(apply) ~= 'function' then error('certify.lanczos_min: apply must be a function', 2) end
  local steps = math.min(o.steps, d)
  local Q = {} -- Q[n][j]: double[d], the j-th Lanczos vector of item n
  local alpha, beta, res, done = {}, {}, {}, {}
  local cur = ffi.new('double[?]', N * d)
  for n = 0, N - 1 do
    local z = core.floats(T.randn({ 1, d }, { seed = o.seed, stream = n + 1 }))
    local nrm = 0
    for j = 0, d - 1 do nrm = nrm + z[j] * z[j] end
    nrm = math.sqrt(nrm)
    local q = ffi.new('double[?]', d)
    for j = 0, d - 1 do q[j] = z[j] / nrm end
    Q[n], alpha[n], beta[n] = { q }, {}, {}
    res[n] = { theta = 0, residual = math.huge, steps = 0, converged = false, theta_max = 0 }
  end
  for j = 1, steps do
    local active = false
    for n = 0, N - 1 do
      if not done[n] then
        active = true
        ffi.copy(cur + n * d, Q[n][j], d * 8)
      else
        ffi.fill(cur + n * d, d * 8)
      end
    end
    if not active then break end
    local W = apply(cur)
    for n = 0, N - 1 do
      if not done[n] then
        local w = ffi.new('double[?]', d)
        local q = Q[n][j]
        local a = 0
        for i = 0, d - 1 do w[i] = W[n * d + i]; a = a + q[i] * w[i] end
        alpha[n][j] = a
        for _ = 1, 2 do -- full reorthogonalization, twice
          for l = 1, j do
            local ql, dot = Q[n][l], 0
            for i = 0, d - 1 do dot = dot + ql[i] * w[i] end
            for i = 0, d - 1 do w[i] = w[i] - dot * ql[i] end
          end
        end
        local b = 0
        for i = 0, d - 1 do b = b + w[i] * w[i] end
        b = math.sqrt(b)
        beta[n][j] = b
        -- the tridiagonal T_j and its eigenpairs
        local Tm = {}
        for r = 1, j do
          Tm[r] = {}
          for c = 1, j do Tm[r][c] = 0 end
          Tm[r][r] = alpha[n][r]
          if r > 1 then Tm[r][r - 1], Tm[r - 1][r] = beta[n][r - 1], beta[n][r - 1] end
        end
        local vals, V = jacobi_eigen(Tm, j)
        local imin, imax = 1, 1
        for r = 2, j do
          if vals[r] < vals[imin] then imin = r end
          if vals[r] > vals[imax] then imax = r end
        end
        local r = res[n]
        r.theta, r.theta_max, r.steps = vals[imin], vals[imax], j
        r.residual = b * math.abs(V[j][imin])
        local scale = math.max(math.abs(vals[imin]), math.abs(vals[imax]))
        if b <= 1e-12 * math.max(scale, 1e-300) or r.residual <= o.tol * scale then
          r.converged, done[n] = true, true
        elseif j < steps then
          for i = 0, d - 1 do w[i] = w[i] / b end
          Q[n][j + 1] = w
        end
      end
    end
  end
  local out = {}
  for n = 0, N - 1 do out[n + 1] = res[n] end
  return out
end

-- ------------------------------------------------ Krylov solvers
-- CG and MINRES on batched operators, for the adaptive attack's implicit
-- systems (attacks.moreaugrad_vjp). They live here, with Lanczos, and not in
-- moreau.attacks: their operators receive raw double arrays, which a
-- sandboxed recipe (moreau.sandbox, which offers moreau.attacks) must not get.

--- Conjugate gradients (Hestenes and Stiefel 1952) on N symmetric systems
-- A_n x_n = b_n at once, from x = 0: each iteration is one call of
-- applyA(V) (V: double[N·d], item n at offset n·d; returns a double[N·d]).
-- Item n stops when ‖r‖ <= tol·‖b_n‖ or after maxit iterations; a direction
-- with pᵀAp <= 0 (A_n not positive definite) stops it too and flags it.
-- ARGS: applyA, B (double[N·d]), X (double[N·d], receives x; zero on entry),
-- N, d, active (table: item index 0..N−1 → true), maxit, tol, stats (a Lua
-- array of N tables; iters, residual (‖r‖/‖b‖), converged, curvature are set).
-- RETURN: a Lua array of the flagged items (0-based), in order.
function certify.cg_batch(applyA, B, X, N, d, active, maxit, tol, stats)
  local R, P = ffi.new('double[?]', N * d), ffi.new('double[?]', N * d)
  local rr, bn, live, flagged = {}, {}, {}, {}
  for n = 0, N - 1 do
    if active[n] then
      local b2 = 0
      for j = n * d, n * d + d - 1 do R[j], P[j], b2 = B[j], B[j], b2 + B[j] * B[j] end
      rr[n], bn[n] = b2, math.sqrt(b2)
      live[n] = b2 > 0
      if b2 == 0 then stats[n + 1].converged = true end
    end
  end
  for it = 1, maxit do
    local V, any = ffi.new('double[?]', N * d), false
    for n = 0, N - 1 do
      if live[n] then any = true; ffi.copy(V + n * d, P + n * d, d * 8) end
    end
    if not any then break end
    local AP = applyA(V)
    for n = 0, N - 1 do
      if live[n] then
        local c = stats[n + 1]
        local pAp = 0
        for j = n * d, n * d + d - 1 do pAp = pAp + P[j] * AP[j] end
        c.iters = it
        if not (pAp > 0) then
          live[n], c.curvature = false, pAp
          flagged[#flagged + 1] = n
        else
          local a, new = rr[n] / pAp, 0
          for j = n * d, n * d + d - 1 do
            X[j] = X[j] + a * P[j]
            R[j] = R[j] - a * AP[j]
            new = new + R[j] * R[j]
          end
          c.residual = math.sqrt(new) / bn[n]
          if c.residual <= tol then c.converged, live[n] = true, false end
          local beta = new / rr[n]
          rr[n] = new
          for j = n * d, n * d + d - 1 do P[j] = R[j] + beta * P[j] end
        end
      end
    end
  end
  return flagged
end

--- MINRES (Paige and Saunders 1975) on N symmetric, possibly indefinite,
-- systems A_n x_n = b_n at once, from x = 0: the Lanczos process on A_n with
-- Givens rotations of its tridiagonal, which minimizes ‖b − A x‖ over the
-- Krylov space. One applyA call per iteration, as certify.cg_batch. Item n
-- stops when the residual estimate (φ̄, the last rotated right-hand side) is
-- at most tol·‖b_n‖, or after maxit iterations. ARGS: as certify.cg_batch
-- (stats[n].method becomes 'minres'; iters, residual, converged are set).
function certify.minres_batch(applyA, B, X, N, d, active, maxit, tol, stats)
  local n3 = N * d
  local R1, R2, Y = ffi.new('double[?]', n3), ffi.new('double[?]', n3), ffi.new('double[?]', n3)
  local W, W1, W2 = ffi.new('double[?]', n3), ffi.new('double[?]', n3), ffi.new('double[?]', n3)
  local st, live = {}, {}
  for n = 0, N - 1 do
    if active[n] then
      local b2 = 0
      for j = n * d, n * d + d - 1 do R1[j], R2[j], Y[j], b2 = B[j], B[j], B[j], b2 + B[j] * B[j] end
      local b1 = math.sqrt(b2)
      st[n] = { beta1 = b1, beta = b1, oldb = 0, dbar = 0, epsln = 0, phibar = b1, cs = -1, sn = 0 }
      live[n] = b1 > 0
      stats[n + 1].method, stats[n + 1].converged, stats[n + 1].iters = 'minres', b1 == 0, 0
    end
  end
  for it = 1, maxit do
    local V, any = ffi.new('double[?]', n3), false
    for n = 0, N - 1 do
      if live[n] then
        any = true
        local s = 1 / st[n].beta
        for j = n * d, n * d + d - 1 do V[j] = s * Y[j] end
      end
    end
    if not any then break end
    local AV = applyA(V)
    for n = 0, N - 1 do
      if live[n] then
        local q, c = st[n], stats[n + 1]
        local lo, hi = n * d, n * d + d - 1
        for j = lo, hi do Y[j] = AV[j] end
        if it >= 2 then
          local f = q.beta / q.oldb
          for j = lo, hi do Y[j] = Y[j] - f * R1[j] end
        end
        local alfa = 0
        for j = lo, hi do alfa = alfa + V[j] * Y[j] end
        local f = alfa / q.beta
        local y2 = 0
        for j = lo, hi do
          Y[j] = Y[j] - f * R2[j]
          R1[j], R2[j] = R2[j], Y[j]
          y2 = y2 + Y[j] * Y[j]
        end
        q.oldb, q.beta = q.beta, math.sqrt(y2)
        local oldeps = q.epsln
        local delta = q.cs * q.dbar + q.sn * alfa
        local gbar = q.sn * q.dbar - q.cs * alfa
        q.epsln = q.sn * q.beta
        q.dbar = -q.cs * q.beta
        local gamma = math.max(math.sqrt(gbar * gbar + q.beta * q.beta), 1e-300)
        q.cs, q.sn = gbar / gamma, q.beta / gamma
        local phi = q.cs * q.phibar
        q.phibar = q.sn * q.phibar
        for j = lo, hi do
          W1[j], W2[j] = W2[j], W[j]
          W[j] = (V[j] - oldeps * W1[j] - delta * W2[j]) / gamma
          X[j] = X[j] + phi * W[j]
        end
        c.iters, c.residual = it, math.abs(q.phibar) / q.beta1
        if c.residual <= tol or q.beta == 0 then c.converged, live[n] = true, false end
      end
    end
  end
end

-- ------------------------------------------ MoreauGrad: Corollary 1

certify.moreaugrad_defaults = {
  eps = 0, rho = 1, sigma = 0.1, samples = 16, seed = 0, steps = 30, tol = 1e-4, score = 'logit', chunk = 0,
  _extra = { points = true },
  _domains = { eps = 'num >= 0', rho = 'num > 0', sigma = 'num >= 0', samples = 'int >= 0', seed = 'seed',
    steps = 'int >= 1', tol = 'num > 0', score = 'one of logit, log_softmax, softmax', chunk = 'int >= 0',
    points = 'table' },
}

--- The Hessian-vector product of the smoothed score at a batch of points:
-- v ↦ (1/M) Σ_i ∇²f_c(p_n + s_n ε_i) v_n, with M fixed normal draws ε_i
-- (mr_noise_copies: seed, stream = item n's noise key, copy i at offset i·d,
-- as SmoothGrad draws them), s_n = sigma·range(x_n) of the clean item (held
-- constant: its derivative in x is not part of this Hessian); M = 0 or
-- sigma = 0: ∇²f_c(p_n) v_n itself. Exact HVPs by forward-over-reverse
-- (moreau.oracle), so the network must be twice differentiable (softplus):
-- a ReLU network's Hessian is 0 almost everywhere.
-- ARGS: net, p (N, ...: the points), x (the clean batch, like p), lab
-- (int32_t[N]), o {sigma, samples (M), seed, score, chunk (copies per pass, 0:
-- all), keys (optional uint64_t[N]: the noise keys; default the content keys
-- of x, methods.item_keys)}.
-- RETURN: apply(V): V a double[N·d] (item n at offset n·d) → a new double[N·d].
function certify.smoothed_hvp(net, p, x, lab, o)
  local common = require 'moreau.methods.common'
  local N, d = core.size(p, 1), core.numel(p) / core.size(p, 1)
  local kind = oracle.score_kind(o.score)
  local M = (o.sigma > 0 and o.samples > 0) and o.samples or 0
  local copies = math.max(M, 1)
  local pts = p
  local lb = ffi.new('int32_t[?]', N * copies)
  for q = 0, N * copies - 1 do lb[q] = lab[math.floor(q / copies)] end
  if M > 0 then
    local scales = ffi.new('float[?]', N)
    check(C.mr_noise_scales(scales, nil, nil, handle(x), o.sigma))
    local keys = o.keys or common.keys(x, nil, 'certify.smoothed_hvp', 4)
    pts = T.zeros(common.batch_shape(p, N * M))
    check(C.mr_noise_copies(handle(pts), nil, handle(p), scales, keys, o.seed, M, 0))
  end
  local chunk = (o.chunk or 0) > 0 and math.min(o.chunk, N * copies) or N * copies
  return function(V)
    local out = ffi.new('double[?]', N * d)
    local vb = T.zeros(core.shape(pts))
    local pv = core.floats(vb)
    for q = 0, N * copies - 1 do
      local n = math.floor(q / copies)
      for i = 0, d - 1 do pv[q * d + i] = V[n * d + i] end
    end
    core.store(vb, pv)
    for p0 = 0, N * copies - 1, chunk do
      local k = math.min(chunk, N * copies - p0)
      local xs, vs = pts, vb
      if k < N * copies then
        xs, vs = T.zeros(common.batch_shape(p, k)), T.zeros(common.batch_shape(p, k))
        check(C.mr_tensor_copy_items(handle(xs), 0, handle(pts), p0, k))
        check(C.mr_tensor_copy_items(handle(vs), 0, handle(vb), p0, k))
      end
      local hv, g = common.hvp(net, xs, lb + p0, kind, vs)
      local ph = core.floats(hv)
      for q = 0, k - 1 do
        local n = math.floor((p0 + q) / copies)
        for i = 0, d - 1 do out[n * d + i] = out[n * d + i] + ph[q * d + i] / copies end
      end
      hv:free()
      g:free()
      if xs ~= pts then xs:free(); vs:free() end
    end
    vb:free()
    return out
  end
end
local smoothed_hvp = certify.smoothed_hvp

--- The paper's Corollary 1 (Zhang and Farnia 2023, "MoreauGrad", §4): if the
-- score f_c is λ-weakly convex (f_c + (λ/2)‖·‖² convex) and 0 < ρ < 1/λ, then
-- for every ‖δ‖₂ <= ε
--   ‖MG_ρ(x + δ) − MG_ρ(x)‖₂ <= ε / min(ρ, 1/λ − ρ)
-- (Theorem 1 part 3: ∇f^ρ is 1/min(ρ, 1/λ − ρ)-Lipschitz); Corollary 2
-- gives the same bound for Sparse and Group-Sparse MoreauGrad. The engine's
-- map is −δ̄/ρ (docs/methods.md §7.1), the paper's Definition 5 up to sign:
-- the norm of a difference does not see the sign. With noise (m > 0) the
-- solver minimizes the smoothed score h(y) = E_z f_c(y + z), z ~ N(0, s² I),
-- s = sigma·range(x) (Proposition 1 makes h weakly convex), and λ is h's.
--
-- The estimate. λ = max(0, −λ_min(∇²h)) over the points the envelope's
-- solutions visit. At each point p of the batch and of opts.points, ∇²h(p) =
-- E_z ∇²f_c(p + z) is estimated by the mean of M = samples exact Hessians
-- (forward-over-reverse HVPs, moreau.oracle) at fixed draws z_i = s ε_i
-- (seed, the clean item's noise key), and its smallest eigenvalue by
-- certify.lanczos_min (steps, tol). The Ritz value θ is >= the smallest
-- eigenvalue of the estimated Hessian, so λ is taken from θ − residual:
--   lambda = max over points of max(0, −(θ − residual)).
-- This is an estimate, not a proof: λ is the curvature at finitely many
-- points under finitely many draws, while the corollary needs weak convexity
-- everywhere the solutions can go; the map itself is computed from finite
-- noise and finite iterations (recipes/certificates.lua compares the bound
-- with the change measured under the same estimator, and reports that
-- estimator's noise floor).
--
-- ARGS: net, x (N, ...), labels, opts {eps = 0 (L2 radius), rho = 1, sigma =
-- 0.1 (as the solver's), samples = 16 (M; 0: the unsmoothed score, the solver's
-- m = 0), seed = 0, steps = 30, tol = 1e-4 (Lanczos), score = 'logit', chunk = 0
-- (copies per HVP pass; 0: all), points (a Lua array of tensors like x: more
-- points at which to take the curvature, e.g. x + δ*, the attacked x')}.
-- RETURN: a Lua array of N tables {lambda, lambda_min (the most negative
-- θ − residual seen), bound (inf when ρ >= 1/λ: the corollary does not apply),
-- applies, lanczos (a Lua array, per point: theta, residual, steps, converged)}.
-- Errors: a point not shaped like x; a non-finite x or point.
function certify.moreaugrad_bound(net, x, labels, opts)
  local o = options.fill('certify.moreaugrad_bound', certify.moreaugrad_defaults, opts, 2)
  if not T.is(x) then error('certify.moreaugrad_bound: x must be a tensor', 2) end
  if not x:isfinite() then error('certify.moreaugrad_bound: x contains NaN or infinite values', 2) end
  local N, d = core.size(x, 1), core.numel(x) / core.size(x, 1)
  local lab = core.labels(labels, N)
  local pts = { x }
  local xs = table.concat(core.shape(x), 'x')
  for i, p in ipairs(o.points or {}) do
    if not T.is(p) or table.concat(core.shape(p), 'x') ~= xs then
      error(('certify.moreaugrad_bound: points[%d] must be a tensor shaped like x (%s), got %s'):format(i, xs,
        T.is(p) and table.concat(core.shape(p), 'x') or type(p)), 2)
    end
    if not p:isfinite() then
      error(('certify.moreaugrad_bound: points[%d] contains NaN or infinite values'):format(i), 2)
    end
    pts[#pts + 1] = p
  end
  local out = {}
  for n = 1, N do out[n] = { lambda = 0, lambda_min = math.huge, lanczos = {} } end
  for _, p in ipairs(pts) do
    local r = certify.lanczos_min(smoothed_hvp(net, p, x, lab, o), N, d,
      { steps = o.steps, tol = o.tol, seed = o.seed })
    for n = 1, N do
      local lo = r[n].theta - r[n].residual
      out[n].lanczos[#out[n].lanczos + 1] = r[n]
      out[n].lambda_min = math.min(out[n].lambda_min, lo)
      out[n].lambda = math.max(out[n].lambda, -lo)
    end
  end
  for n = 1, N do
    local c = out[n]
    c.applies = c.lambda * o.rho < 1
    c.bound = c.applies and o.eps / math.min(o.rho, (c.lambda > 0 and 1 / c.lambda or math.huge) - o.rho)
      or math.huge
    c.rho, c.eps = o.rho, o.eps
  end
  return out
end

return certify
