--- moreau.attacks — perturbations of the input that change an explanation
-- (interpretation attacks) or a prediction (PGD), all with one calling convention.
--
--   local atk = attacks.topk { eps = 10, iters = 10 }
--   local x2, info = atk:run(net, method, x, labels)   -- x2 like x; info per item
--   print(atk.name, atk.opts.alpha)                    -- every option in force
--
-- Attacks (docs/methods.md §9 pins them):
--   topk         Ghorbani et al. 2019, top-k, L2-bounded: minimize the share of the
--                explanation's mass that stays on the clean map's top-k entries
--   mass_center  Ghorbani et al. 2019, center of mass: maximize how far the saliency
--                map's center of mass moves from the clean one
--   gaussian     x + s·N(0, I), seeded; redraws an item whose predicted label changes
--   pgd          classification PGD (Madry et al. 2018) on the cross-entropy of the
--                true label, L∞ or L2
--
-- The two interpretation attacks differentiate the explanation through
-- method:explain_abs_vjp (moreau.explain_vjp): exact Hessian-vector products
-- for gradient maps, the authors' surrogate for MoreauGrad and Sparsified
-- SmoothGrad; topk{adaptive = true} differentiates MoreauGrad through its
-- solver's fixed point instead (attacks.moreaugrad_vjp). They need a smooth
-- network (softplus): ReLU has no curvature.
-- Stochastic methods (smoothgrad, sparsified_smoothgrad, moreaugrad with m > 0)
-- explain every iterate with fresh noise, as the authors do: the map of step t
-- uses seed = method.opts.seed + t (t = 0 is the clean x, so the clean map is
-- exactly method:explain's), recorded in info.seeds. Every iterate of item n
-- draws its noise under the clean item's key (methods.item_keys of x, passed
-- as explain's ids), never under the iterate's own content: the noise follows
-- the item, as the seed schedule says, and not the pixels the attack moved.
--
-- Like every method, an attack evaluates the inference-mode network and
-- changes no parameter or buffer, even after net:train() (README, "Training
-- mode").
--
-- "Label kept" means the network's predicted class (argmax of its output) at
-- x' equals its prediction at the clean x, whatever `labels` says; `labels`
-- are the classes explained (interpretation attacks) or the true classes (PGD).
--
-- The box [lo, hi] (default: none) is applied after the L2-ball projection;
-- when x itself lies in the box the result stays in both.
local ffi = require 'ffi'
local core = require 'moreau.core'
local T = require 'moreau.tensor'
local oracle = require 'moreau.oracle'
local methods = require 'moreau.methods'
local options = require 'moreau.options'
local C, check, handle = core.C, core.check, core.handle

local attacks = {}

local Attack = {}
Attack.__index = Attack
attacks.Attack = Attack

local INF = math.huge

local function check_box(who, o, level)
  local show = options.show
  if o.lo == math.huge or o.hi == -math.huge then
    error(("%s: the box [lo, hi] = [%s, %s] holds no point (lo may be -inf, hi +inf)"):format(who, show(o.lo),
      show(o.hi)), level + 1)
  end
  if not (o.lo <= o.hi) then
    error(("%s: option 'lo' (%s) must be <= option 'hi' (%s)"):format(who,
      options.show(o.lo), options.show(o.hi)), level + 1)
  end
end

--- Declares an attack: name, defaults, run(self, net, method, x, lab, labels),
-- finish(o) (derived defaults), doc.
local names = {}
local function define(name, defaults, run, finish, doc)
  names[#names + 1] = name
  attacks[name] = function(opts)
    local o = options.fill('attacks.' .. name, defaults, opts, 2)
    check_box('attacks.' .. name, o, 2)
    if finish then finish(o, 2) end
    return setmetatable({ name = name, opts = o, domains = defaults._domains, doc = doc, _run = run }, Attack)
  end
end

--- The perturbed batch. ARGS: net, method (a moreau.methods method; unused by
-- gaussian and pgd), x (N, ...), labels (0-based class ids).
-- RETURN: x' (a new tensor like x), info (a Lua array, one table per item, and
-- fields shared by the batch).
function Attack:run(net, method, x, labels)
  if not T.is(x) then error(self.name .. ':run: x must be a tensor', 2) end
  if not x:isfinite() then error(self.name .. ':run: x contains NaN or infinite values', 2) end
  local lab = core.labels(labels, core.size(x, 1))
  return self:_run(net, method, x, lab, labels)
end

function Attack:__tostring() return options.describe(self.name, self.opts) end

-- --------------------------------------------------------------- helpers

--- Predicted class (0-based) of every item: argmax of the network's output in
-- inference mode (net:forward_inference), whatever net:train()/eval() says.
function attacks.predict(net, x)
  local y = net:forward_inference(x)
  local N = core.size(y, 1)
  local arg = ffi.new('int64_t[?]', N)
  check(C.mr_tensor_argmax_items(arg, handle(y))) -- the first largest; NaN never wins
  local out = {}
  for n = 1, N do out[n] = tonumber(arg[n - 1]) end
  return out
end

--- x ← x − alpha·sign(g) (sign(0) = sign(NaN) = 0), computed in double.
local function sign_step(x, g, alpha) x:add_(g:clone():sign_(), -alpha) end

-- The objectives below compute on copies of the maps' entries (core.floats),
-- never on tensor memory, and write W back with core.store.
local floats, store = core.floats, core.store

local function project(xp, x, o)
  check(C.mr_proj_l2_ball(handle(xp), handle(x), o.eps))
  if o.lo > -INF or o.hi < INF then check(C.mr_proj_box(handle(xp), o.lo, o.hi)) end
end

local function copy_item(dst, src, n) check(C.mr_tensor_copy_items(handle(dst), n, handle(src), n, 1)) end

--- True for methods whose map depends on a noise seed.
function attacks.is_stochastic(method)
  local n = method.name
  return n == 'smoothgrad' or n == 'sparsified_smoothgrad' or (n == 'moreaugrad' and method.opts.m > 0)
end

--- The method that explains step t: the same options, seed + t for stochastic
-- methods; and the noise keys of its items (the clean x's, nil for
-- deterministic methods). ARGS: method, t, fresh, x and labels (the clean batch).
local function method_at(method, t, fresh, x, labels)
  local ids = attacks.is_stochastic(method) and methods.item_keys(x) or nil
  if not (fresh and attacks.is_stochastic(method)) or t == 0 then return method, method.opts.seed, ids end
  local o = {}
  for k, v in pairs(method.opts) do o[k] = v end
  o.seed = method.opts.seed + t
  return methods.create(method.name, o), o.seed, ids
end

-- ------------------------------------------- the implicit-function VJP

attacks.implicit_defaults = { cg_iters = 100, cg_tol = 1e-6, indefinite = 'minres', _extra = { ids = true },
  _domains = { cg_iters = 'int >= 1', cg_tol = 'num > 0', indefinite = 'one of minres, error', ids = 'table' } }

--- The derivative of MoreauGrad's map through the solver's fixed point
-- (the implicit function theorem), as a vector-Jacobian product: Σ_j u_j
-- ∂E_j/∂x for E = −δ*/ρ, the map method:explain computes (docs/methods.md §7).
--
-- The system. δ* minimizes F(δ) = f(x + δ) + ‖δ‖²/(2ρ) + η‖δ‖₁ (reg = 'l1';
-- η = 0 for reg = 'none'). On its support S = {j: δ*_j ≠ 0} optimality reads
--   ∇_S f(x + δ*) + δ*_S/ρ + η sign(δ*_S) = 0,      δ*_{S^c} = 0,
-- and off S, |∇_j f(x + δ*)| <= η. Where that inequality is strict (strict
-- complementarity) S and the signs are locally constant, so differentiating
-- in x with H = ∇²f(x + δ*) (∂/∂x of ∇f(x + δ) is H too: f sees x + δ) gives
--   (I + ρ H_SS) ∂δ*_S/∂x = −ρ H_{S,:},   ∂δ*_{S^c}/∂x = 0,
-- hence ∂E_S/∂x = (I + ρ H_SS)⁻¹ H_{S,:}, ∂E_{S^c}/∂x = 0, and
--   VJP = H (P_Sᵀ w),   (I + ρ H_SS) w = u_S,
-- P_S the restriction to S. w is found by conjugate gradients on exact HVPs
-- (moreau.oracle; certify.cg_batch), u_S ↦ u_S + ρ (H P_Sᵀ u_S)_S, then one more HVP gives the
-- VJP: cg + 1 batched HVP passes per item. For reg = 'none', S is every entry.
--
-- The kinks. An entry with |∇_j f(x + δ*)| = η exactly (δ*_j = 0 on the
-- threshold of the soft-threshold) is where the map is not differentiable;
-- the VJP holds S fixed there, i.e. it is the one-sided derivative that
-- keeps such entries out of the support. S is the support of the solver's
-- last iterate δ_T (the fixed point's estimate), at which H is taken; the
-- map E is the solver's own (its tail average).
--
-- Definiteness. At a strict local minimum of F, H_SS + I/ρ is positive
-- definite, so I + ρ H_SS is, and CG applies. It is not when ρ exceeds 1/λ
-- on S (λ the weak convexity there: the prox objective is then nonconvex and
-- its fixed point may be a saddle) or the solver has not converged: CG then
-- meets a direction p with pᵀ(I + ρ H_SS)p <= 0. The item is then flagged
-- and solved again from 0 by MINRES (certify.minres_batch), which needs only
-- symmetry and a nonsingular system: the implicit function theorem holds at
-- any nondegenerate fixed point, minimum or not. info.cg[n].method says which
-- solver gave item n's answer; opts.indefinite = 'error' raises instead
-- ("... is not positive definite (p'Ap = ... at CG iteration ...)").
--
-- Noise (m > 0). The solver then minimizes the smoothed score h(y) = E f(y + z)
-- with fresh draws every iteration; H is replaced by the mean of M = m exact
-- Hessians at x + δ_T + s ε_i over fixed draws (certify.smoothed_hvp: the
-- method's seed, the items' noise keys), and the noise scale s = sigma·range(x)
-- is held constant. That is the IFT of the smoothed problem estimated from
-- m draws, not the derivative of one noisy run.
--
-- The solver is run to a tolerance: the VJP is that of the fixed point, and
-- matches finite differences of the map once the solver has converged
-- (tests/adaptive_attack_spec.lua: T = 2000, K = 1).
-- ARGS: net, method (a moreaugrad method, reg 'none' or 'l1'), x (N, ...),
-- labels, u (a tensor like x, or a function E -> tensor: the cotangent of
-- E), opts {cg_iters = 100, cg_tol = 1e-6 (stop at ‖r‖ <= cg_tol·‖u_S‖; the
-- same for MINRES), indefinite = 'minres' (or 'error'), ids (the items' noise
-- ids, as explain takes them)}.
-- RETURN: vjp (like x), E (the map), info {cg = a Lua array per item of
-- {method ('cg' or 'minres'), iters, residual (‖r‖/‖u_S‖), converged,
-- curvature (the pᵀAp <= 0 CG met, if any)}, support = a Lua array of |S|}.
-- Errors: another method or reg = 'group' (GST's curvature term is not
-- implemented); with indefinite = 'error', an indefinite system (named by
-- item and CG iteration).
function attacks.moreaugrad_vjp(net, method, x, labels, u, opts)
  local o = options.fill('attacks.moreaugrad_vjp', attacks.implicit_defaults, opts, 2)
  if type(method) ~= 'table' or method.name ~= 'moreaugrad' then
    error('attacks.moreaugrad_vjp: needs a moreaugrad method, got ' ..
      (type(method) == 'table' and tostring(method.name) or type(method)), 2)
  end
  local mo = method.opts
  if mo.reg == 'group' then
    error("attacks.moreaugrad_vjp: reg = 'group' is not supported (the group soft-threshold adds a curvature " ..
      "term to the implicit system); use reg = 'none' or 'l1'", 2)
  end
  if not T.is(x) then error('attacks.moreaugrad_vjp: x must be a tensor', 2) end
  local prox = require 'moreau.prox'
  local common = require 'moreau.methods.common'
  local N, d = core.size(x, 1), core.numel(x) / core.size(x, 1)
  local lab = core.labels(labels, N)
  local keys = o.ids and common.keys(x, o.ids, 'attacks.moreaugrad_vjp', 3) or common.keys(x, nil,
    'attacks.moreaugrad_vjp', 3)
  local s = prox.solver(net, x, lab, mo, keys)
  s:run()
  method.last_solver = s
  local E = s:result()
  local dT = s:delta()
  local U = common.cotangent(u, E, 'moreaugrad', x)
  local pU, pd = floats(U), floats(dT)
  local point = x + dT
  local apply = require('moreau.certify').smoothed_hvp(net, point, x, lab,
    { sigma = mo.sigma, samples = mo.m, seed = mo.seed, score = mo.score, chunk = mo.chunk, keys = keys })
  local sparse = mo.reg == 'l1'
  local inS = function(j) return not sparse or pd[j] ~= 0 end
  local rho = mo.rho
  -- (I + ρ H_SS) V on S and 0 off S, for every item at once (V is 0 off S)
  local function applyA(V)
    local HV = apply(V)
    for j = 0, N * d - 1 do HV[j] = inS(j) and V[j] + rho * HV[j] or 0 end
    return HV
  end
  local X, B = ffi.new('double[?]', N * d), ffi.new('double[?]', N * d)
  local info = { cg = {}, support = {} }
  local active = {}
  for n = 0, N - 1 do
    local cnt = 0
    for j = n * d, n * d + d - 1 do
      if inS(j) then B[j], cnt = pU[j], cnt + 1 end
    end
    info.support[n + 1] = cnt
    info.cg[n + 1] = { iters = 0, residual = 0, converged = false, method = 'cg' }
    active[n] = true
  end
  local certify = require 'moreau.certify'
  local flagged = certify.cg_batch(applyA, B, X, N, d, active, o.cg_iters, o.cg_tol, info.cg)
  if #flagged > 0 then
    local n = flagged[1]
    if o.indefinite == 'error' then
      error(("attacks.moreaugrad_vjp: the implicit system I + rho*H_SS of item %d is not positive definite " ..
        "(p'Ap = %.6g at CG iteration %d): rho = %s exceeds 1/lambda on the support, or the solver has not " ..
        "converged (raise T)"):format(n + 1, info.cg[n + 1].curvature, info.cg[n + 1].iters, options.show(rho)), 0)
    end
    local act = {}
    for _, f in ipairs(flagged) do
      act[f] = true
      ffi.fill(X + f * d, d * 8)
    end
    certify.minres_batch(applyA, B, X, N, d, act, o.cg_iters, o.cg_tol, info.cg)
  end
  local HW = apply(X) -- H (P_Sᵀ w): X is zero off S
  local out = T.zeros(core.shape(x))
  local po = floats(out)
  for j = 0, N * d - 1 do po[j] = HW[j] end
  store(out, po)
  point:free()
  return out, E, info
end

-- ----------------------------------------------- interpretation attacks

--- The common loop of the top-k and mass-center attacks (Ghorbani et al.):
-- for t = 0..iters, explain x_t, evaluate J per item, keep x_t as the item's
-- best if its predicted label equals the clean prediction and J is the lowest
-- so far (x_0 = x is a candidate), then x_{t+1} = P(x_t − alpha·sign(∇J)).
-- obj.init(E0) -> state; obj.eval(E, state) -> J (Lua array), W (∂J/∂|E|).
local function interpretation_attack(self, net, method, x, lab, labels, obj)
  local o = self.opts
  if type(method) ~= 'table' or not method.explain_abs_vjp then
    error(self.name .. ':run: needs a method from moreau.methods', 3)
  end
  local N, d = core.size(x, 1), core.numel(x) / core.size(x, 1)
  local clean = attacks.predict(net, x)
  local info = { seeds = {}, J = {} }
  local state
  local best, bestJ, kept, lastkept = x:clone(), {}, {}, {}
  local xp = x:clone()
  local iters = o.eps > 0 and o.iters or 0
  for t = 0, iters do
    local m, seed, ids = method_at(method, t, o.fresh_noise, x, labels)
    info.seeds[t] = seed
    -- A non-finite map, objective or direction would be read as "no
    -- progress" (an all-NaN map scores like a zero map, NaN < J is false,
    -- sign(NaN) = 0): the loop stops with an error instead.
    local function diverged(n, what)
      error(("%s:run: the attack diverged at iteration %d (item %d: %s): change the options of %s " ..
        "or the model (alpha is now %s)"):format(self.name, t, n, what, method.name, tostring(o.alpha)), 0)
    end
    local function check_map(E)
      -- at t = 0 the map is the clean one: a non-finite entry there is bad
      -- input, named by item and position, not a divergence of the attack
      if t == 0 then require('moreau.metrics').check_map(E, self.name .. ':run', 'the clean map', 4) end
      for n = 1, N do
        if not E:narrow(n):isfinite() then diverged(n, 'the map of ' .. method.name .. ' is not finite') end
      end
    end
    local J, vjp
    if t < iters and o.adaptive and m.name == 'moreaugrad' then
      -- the adaptive attack: ∂J/∂x through the solver's fixed point
      -- (attacks.moreaugrad_vjp), with ∂J/∂E = ∂J/∂|E| ⊙ sign(E)
      local cg, _map
      vjp, _map, cg = attacks.moreaugrad_vjp(net, m, xp, labels, function(E)
        check_map(E)
        state = state or obj.init(E)
        local W
        J, W = obj.eval(E, state)
        local pw, pe = floats(W), floats(E)
        for j = 0, core.numel(E) - 1 do
          pw[j] = pe[j] > 0 and pw[j] or (pe[j] < 0 and -pw[j] or 0)
        end
        return store(W, pw)
      end, { cg_iters = o.cg_iters, cg_tol = o.cg_tol, ids = ids })
      info.cg = info.cg or {}
      info.cg[t] = cg.cg
    elseif t < iters then
      vjp = m:explain_abs_vjp(net, xp, labels, function(E)
        check_map(E)
        state = state or obj.init(E)
        local W
        J, W = obj.eval(E, state)
        return W
      end, ids)
    else
      local E = m:explain(net, xp, labels, ids)
      check_map(E)
      state = state or obj.init(E)
      J = obj.eval(E, state)
    end
    local pred = t == 0 and clean or attacks.predict(net, xp)
    for n = 1, N do
      if not (J[n] > -INF and J[n] < INF) then diverged(n, 'objective ' .. tostring(J[n])) end
      if vjp and not vjp:narrow(n):isfinite() then diverged(n, 'the gradient of the objective is not finite') end
    end
    for n = 1, N do
      info.J[n] = info.J[n] or {}
      info.J[n][t] = J[n]
      lastkept[n] = pred[n] == clean[n]
      if t == 0 then
        bestJ[n], kept[n] = J[n], 0
      elseif lastkept[n] and J[n] < bestJ[n] then
        bestJ[n], kept[n] = J[n], t
        copy_item(best, xp, n - 1)
      end
    end
    if t < iters then
      sign_step(xp, vjp, o.alpha)
      project(xp, x, o)
    end
  end
  for n = 1, N do
    info[n] = {
      kept = kept[n],              -- iterate index of x' (0: the clean x)
      J = bestJ[n],                -- objective at x'
      J_clean = info.J[n][0],      -- objective at x
      label = clean[n],            -- predicted label of x and of x'
      label_kept = true,           -- x' keeps the clean prediction by construction
      last_label_kept = lastkept[n], -- whether the last iterate kept it
    }
  end
  info.state = state
  return best, info
end

-- The domains of the options every L2-ball attack shares (moreau.options).
-- iters = 0 (or eps = 0) returns x itself: the noise floor of a metric.
local BALL = { eps = 'num >= 0', iters = 'int >= 0', alpha = 'num > 0', lo = 'num or inf', hi = 'num or inf',
  fresh_noise = 'bool' }
local function ball_domains(extra)
  local d = {}
  for k, v in pairs(BALL) do d[k] = v end
  for k, v in pairs(extra) do d[k] = v end
  return d
end

local function finish_ball(o, level)
  o.alpha = o.alpha or o.eps / 100
end

-- top-k: J = A/B, A = Σ M ⊙ |E|, B = Σ |E|; ∂J/∂|E| = (M·B − A)/B², M ∈ [0, 1]
-- the clean map's top-k memberships (moreau.metrics.topk_members).
-- An all-zero map has J = 1 and no gradient (nothing can move off the top-k).

--- The default k: Ghorbani et al., 2019, use k = 1000 of the 224·224 = 50176 pixels
-- of ImageNet maps, about 2%; here 2% of the C·H·W entries, at least 1.
-- A k given above d (the C·H·W entries of an item) raises: its top-k would be
-- the whole map, which no perturbation can move.
function attacks.topk_k(o, d)
  if o.k > d then
    error(("attacks.topk: option 'k' must be at most the %d entries of an item, got %d"):format(d, o.k), 4)
  end
  local k = o.k > 0 and o.k or math.floor(o.k_frac * d + 0.5)
  return math.max(1, math.min(d, k))
end

--- The top-k mask M of the clean map: moreau.metrics's top-k rule, so a zero
-- entry is never in it (a clean map with fewer than k nonzero entries gives a
-- mask of those entries) and a tie at the k-th place is shared, M(j) = (k − g)/t
-- for each of the t tied entries, instead of being broken by position.
local function topk_mask(E, n, k)
  return (require('moreau.metrics').topk_members(E, n + 1, k, false))
end

local topk_defaults = { eps = 10, iters = 10, k = 0, k_frac = 0.02, lo = -INF, hi = INF,
  fresh_noise = true, adaptive = false, cg_iters = 100, cg_tol = 1e-6, _extra = { alpha = true },
  _domains = ball_domains { k = 'int >= 0', k_frac = 'num in (0, 1]', adaptive = 'bool', cg_iters = 'int >= 1',
    cg_tol = 'num > 0' } }

--- The top-k interpretation attack (Ghorbani et al., 2019), in an L2 ball.
-- It minimizes the share of the map's mass on the clean map's top-k entries,
-- J = Σ M ⊙ |E| / Σ |E| (M the top-k mask), by x ← P(x − alpha·sign(∇J)),
-- keeping each item's best iterate whose predicted label is unchanged.
-- ARGS: opts {eps = 10 (L2 radius), iters = 10, alpha = eps/100 (step),
-- k = 0 (0: k_frac of the C·H·W entries, attacks.topk_k), k_frac = 0.02,
-- fresh_noise = true (a stochastic method's seed + t at step t),
-- lo = -inf, hi = inf (the box), adaptive = false (true: for a moreaugrad
-- method, ∇J through the solver's fixed point, attacks.moreaugrad_vjp,
-- instead of the authors' surrogate; other methods keep their explain_vjp,
-- which is already their map's derivative or, for Sparsified SmoothGrad,
-- its derivative with the selection held constant), cg_iters = 100 and
-- cg_tol = 1e-6 (the adaptive attack's conjugate gradients; info.cg[t]
-- records, per step t, each item's CG iterations and relative residual)}.
-- RETURN: an Attack (attack:run).
-- @function topk
define('topk', topk_defaults, function(self, net, method, x, lab, labels)
  local N, d = core.size(x, 1), core.numel(x) / core.size(x, 1)
  local k = attacks.topk_k(self.opts, d)
  local xp, info = interpretation_attack(self, net, method, x, lab, labels, {
    init = function(E0)
      require('moreau.metrics').check_map(E0, 'topk:run', 'the clean map', 4)
      local masks = {}
      for n = 0, N - 1 do masks[n] = topk_mask(E0, n, k) end
      return masks
    end,
    eval = function(E, masks)
      local J, W = {}, T.zeros(core.shape(E))
      local pe, pw = floats(E), floats(W)
      for n = 0, N - 1 do
        local A, B, M = 0, 0, masks[n]
        for j = 0, d - 1 do
          local a = math.abs(pe[n * d + j])
          B = B + a
          if M[j] then A = A + M[j] * a end
        end
        if B > 0 then
          J[n + 1] = A / B
          for j = 0, d - 1 do pw[n * d + j] = ((M[j] or 0) * B - A) / (B * B) end
        else
          J[n + 1] = 1
        end
      end
      store(W, pw)
      return J, W
    end,
  })
  info.k = k
  info.state = nil
  return xp, info
end, finish_ball, 'top-k interpretation attack (Ghorbani et al. 2019), L2 ball')

--- The center-of-mass interpretation attack (Ghorbani et al., 2019), in
-- an L2 ball.
-- Mass center: s(h, w) = Σ_c |E(c, h, w)|, S = Σ s, C(E) = Σ s·(h, w) / S (0-based
-- row and column). Maximizes D = ‖C(E(x')) − C(E(x))‖₂, i.e. minimizes J = −D:
--   ∂J/∂|E(c, h, w)| = −⟨(h, w) − C', e⟩ / S,  e = (C' − C0)/D.
-- At D = 0 (the first step) the direction is undefined; e is then the unit
-- vector from the image center to C0 (pushing the mass outwards), or a seeded
-- random direction if C0 is the center.
-- ARGS: opts {eps = 10 (L2 radius), iters = 10, alpha = eps/100 (step),
-- seed = 0, fresh_noise = true, lo = -inf, hi = inf (the box)}.
-- RETURN: an Attack (attack:run).
-- @function mass_center
define('mass_center', { eps = 10, iters = 10, lo = -INF, hi = INF, seed = 0,
  fresh_noise = true, _extra = { alpha = true }, _domains = ball_domains { seed = 'seed' } }, function(self, net, method, x, lab, labels)
  if core.ndim(x) ~= 4 then error('mass_center:run: needs (N, C, H, W) inputs', 3) end
  local N, Cn, Hh, Ww = core.size(x, 1), core.size(x, 2), core.size(x, 3), core.size(x, 4)
  local d, hw = Cn * Hh * Ww, Hh * Ww
  local function center(pe, n)
    local p, S, ch, cw = pe + n * d, 0, 0, 0
    for c = 0, Cn - 1 do
      for h = 0, Hh - 1 do
        for w = 0, Ww - 1 do
          local a = math.abs(p[c * hw + h * Ww + w])
          S, ch, cw = S + a, ch + a * h, cw + a * w
        end
      end
    end
    if S == 0 then return nil, nil, 0 end
    return ch / S, cw / S, S
  end
  local o = self.opts
  local xp, info = interpretation_attack(self, net, method, x, lab, labels, {
    init = function(E0)
      local st = {}
      local streams = methods.perturbation_streams(x)
      local pe = floats(E0)
      for n = 0, N - 1 do
        local h0, w0 = center(pe, n)
        h0, w0 = h0 or (Hh - 1) / 2, w0 or (Ww - 1) / 2
        local eh, ew = h0 - (Hh - 1) / 2, w0 - (Ww - 1) / 2
        local r = math.sqrt(eh * eh + ew * ew)
        if r < 1e-9 then
          local z = T.randn({ 2 }, { seed = o.seed, stream = streams[n + 1] })
          eh, ew = z:get(1), z:get(2)
          r = math.sqrt(eh * eh + ew * ew)
        end
        st[n] = { h0 = h0, w0 = w0, eh = eh / r, ew = ew / r }
      end
      return st
    end,
    eval = function(E, st)
      local J, W = {}, T.zeros(core.shape(E))
      local pe, pw = floats(E), floats(W)
      for n = 0, N - 1 do
        local ch, cw, S = center(pe, n)
        local s = st[n]
        if S == 0 then
          J[n + 1] = 0
        else
          local dh, dw = ch - s.h0, cw - s.w0
          local D = math.sqrt(dh * dh + dw * dw)
          J[n + 1] = -D
          local eh, ew = s.eh, s.ew
          if D > 1e-12 then eh, ew = dh / D, dw / D end
          for c = 0, Cn - 1 do
            for h = 0, Hh - 1 do
              for w = 0, Ww - 1 do
                pw[n * d + c * hw + h * Ww + w] = -((h - ch) * eh + (w - cw) * ew) / S
              end
            end
          end
        end
      end
      store(W, pw)
      return J, W
    end,
  })
  for n = 1, N do
    info[n].displacement = -info[n].J
  end
  info.state = nil
  return xp, info
end, finish_ball, 'center-of-mass interpretation attack (Ghorbani et al. 2019), L2 ball')

-- ------------------------------------------------------------- gaussian

--- x + s·z, z ~ N(0, I) from (seed, stream = the item's perturbation stream,
-- methods.perturbation_streams, offset = try·d), clipped to
-- the box. With keep_label, an item whose predicted label changes is redrawn,
-- up to `tries` draws; if none keeps it, the last draw is returned and
-- info[n].label_kept is false.
-- @function gaussian
define('gaussian', { s = 0.1, seed = 0, tries = 10, keep_label = true, lo = -INF, hi = INF,
  _domains = { s = 'num >= 0', seed = 'seed', tries = 'int >= 1', keep_label = 'bool', lo = 'num or inf',
    hi = 'num or inf' } },
  function(self, net, _, x, lab)
    local o = self.opts
    local N, d = core.size(x, 1), core.numel(x) / core.size(x, 1)
    local clean = o.keep_label and attacks.predict(net, x) or nil
    local xp = x:clone()
    local info = {}
    local todo = {}
    for n = 0, N - 1 do todo[#todo + 1] = n end
    local streams = methods.perturbation_streams(x)
    for r = 0, o.tries - 1 do
      for _, n in ipairs(todo) do
        -- x + z rounds to float before the clamp; rounding is monotone, so
        -- this is the float of the clamp of the exact sum
        local y = x:narrow(n + 1)
        y:add_(T.randn(core.shape(y), { seed = o.seed, stream = streams[n + 1], offset = r * d, std = o.s }))
        y:clamp_(o.lo, o.hi)
        check(C.mr_tensor_copy_items(handle(xp), n, handle(y), 0, 1))
        info[n + 1] = { tries = r + 1, label_kept = true }
      end
      if not o.keep_label then break end
      local pred = attacks.predict(net, xp)
      local again = {}
      for _, n in ipairs(todo) do
        if pred[n + 1] ~= clean[n + 1] then
          again[#again + 1] = n
          info[n + 1].label_kept = false
        end
      end
      todo = again
      if #todo == 0 then break end
    end
    return xp, info
  end, nil, 'Gaussian random perturbation x + s·N(0, I)')

-- ------------------------------------------------------------------ PGD

--- Projected gradient ascent on CE(x') = −log softmax_c(f(x')), c the true label:
--   linf: x' ← clip_{[x−eps, x+eps] ∩ box}(x' + alpha·sign(∇CE))
--   l2:   x' ← P_{ball ∩ box}(x' + alpha·∇CE/‖∇CE‖₂)   (per item)
-- random_start: x' starts uniform in the L∞ box, or uniform in the L2 ball
-- (direction N(0, I) normalized, radius eps·U^{1/d}), seeded (seed, stream = the
-- item's perturbation stream, methods.perturbation_streams).
-- Defaults: eps 8/255 (linf) or 0.5 (l2), alpha = 2.5·eps/steps (Madry et al.).
-- Returns the last iterate.
-- @function pgd
define('pgd', { norm = 'linf', steps = 10, random_start = false, seed = 0,
  lo = -INF, hi = INF, _extra = { eps = true, alpha = true },
  _domains = { norm = 'one of linf, l2', steps = 'int >= 0', random_start = 'bool', seed = 'seed',
    lo = 'num or inf', hi = 'num or inf', eps = 'num >= 0', alpha = 'num > 0' } }, function(self, net, _, x, lab)
  local o = self.opts
  local N, d = core.size(x, 1), core.numel(x) / core.size(x, 1)
  local xp = x:clone()
  local function proj()
    if o.norm == 'linf' then
      check(C.mr_proj_linf_ball(handle(xp), handle(x), o.eps))
      if o.lo > -INF or o.hi < INF then check(C.mr_proj_box(handle(xp), o.lo, o.hi)) end
    else
      project(xp, x, o)
    end
  end
  local scale = ffi.new('double[?]', N)
  if o.random_start and o.eps > 0 then
    local streams = methods.perturbation_streams(x)
    local noise = T.zeros(core.shape(x))
    for n = 0, N - 1 do
      local stream, z = streams[n + 1]
      if o.norm == 'linf' then
        z = T.rand({ 1, d }, { seed = o.seed, stream = stream, lo = -o.eps, hi = o.eps })
        scale[n] = 1
      else
        z = T.randn({ 1, d }, { seed = o.seed, stream = stream })
        local u = T.rand({ 1 }, { seed = o.seed, stream = stream, offset = 2 * d + 1 }):get(1)
        scale[n] = o.eps * u ^ (1 / d) / math.max(z:norm(), 1e-30)
      end
      check(C.mr_tensor_copy_items(handle(noise), n, handle(z), 0, 1))
    end
    check(C.mr_tensor_add_items_(handle(xp), handle(noise), scale)) -- x' = x + scale_n · z_n
    proj()
  end
  local function loss(xx)
    local lp, g = oracle.grad(net, xx, lab, { score = 'log_softmax' })
    for n = 1, N do lp[n] = -lp[n] end
    return lp, g -- g = ∇ log p_c = −∇CE
  end
  local clean_loss = loss(x)
  for t = 1, o.steps do
    local l, g = loss(xp)
    for n = 1, N do
      if not (l[n] < INF) or not g:narrow(n):isfinite() then
        error(("pgd:run: the attack diverged at step %d (item %d: cross-entropy %s): lower eps (now %s) or " ..
          "alpha (now %s), or keep the input in a box (lo, hi)"):format(t, n, tostring(l[n]), tostring(o.eps),
          tostring(o.alpha)), 3)
      end
    end
    if o.norm == 'linf' then
      sign_step(xp, g, o.alpha)
    else
      check(C.mr_tensor_dot_items(scale, handle(g), handle(g))) -- ‖g_n‖²
      for n = 0, N - 1 do
        local s = scale[n]
        scale[n] = -(s > 0 and o.alpha / math.sqrt(s) or 0) -- −0 for g = 0: p + (−0)·g = p − 0·g, bit for bit
      end
      check(C.mr_tensor_add_items_(handle(xp), handle(g), scale)) -- x' − alpha·g/‖g‖ per item
    end
    proj()
  end
  local final = loss(xp)
  local pred0, pred = attacks.predict(net, x), attacks.predict(net, xp)
  local info = {}
  for n = 1, N do
    info[n] = { loss_clean = clean_loss[n], loss = final[n], label_clean = pred0[n], label = pred[n],
      fooled = pred[n] ~= lab[n - 1] }
  end
  return xp, info
end, function(o, level)
  o.eps = o.eps or (o.norm == 'linf' and 8 / 255 or 0.5)
  o.alpha = o.alpha or 2.5 * o.eps / math.max(o.steps, 1)
end, 'projected gradient descent on the cross-entropy (Madry et al. 2018)')

--- The names of all attacks, sorted.
function attacks.list()
  local out = {}
  for i, n in ipairs(names) do out[i] = n end
  table.sort(out)
  return out
end

--- An attack by name (for recipes and the command line). Unknown names raise.
function attacks.create(name, opts)
  for _, n in ipairs(attacks.list()) do
    if n == name then return attacks[name](opts) end
  end
  error("attacks: unknown attack '" .. tostring(name) .. "' (" .. table.concat(attacks.list(), ', ') .. ')', 2)
end

return attacks
