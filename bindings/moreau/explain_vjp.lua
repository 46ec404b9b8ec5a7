--- moreau.explain_vjp — derivatives of explanations with respect to the input.
--
-- Installs two calls on every gradient-based method of moreau.methods:
--
--   local vjp, E = method:explain_vjp(net, x, labels, u)
--       vjp = Σ_j u_j ∂E_j/∂x (a tensor like x), per batch item; E = the map
--       method:explain would return (computed on the way, same noise).
--   local vjp, E = method:explain_abs_vjp(net, x, labels, w)
--       vjp = Σ_j w_j ∂|E_j|/∂x, for objectives that see only |E| (the
--       interpretation attacks of moreau.attacks).
--
-- u (or w) is a tensor like x, or a function E -> tensor: the attacks need a
-- cotangent that depends on the map itself (u = ∂J/∂E), and a function lets one
-- call compute E, then u(E), then the VJP, without explaining twice.
--
-- Everything is built on the exact Hessian-vector product oracle
-- (moreau.oracle.hvp, forward-over-reverse). H(p) = ∇²f_c(p), g(p) = ∇f_c(p).
--
--   gradient               E = g(x)                 VJP = H(x) u
--   input_x_gradient       E = x ⊙ g(x)             VJP = u ⊙ g + H(x)(x ⊙ u)
--   integrated_gradients   E = (x−x0) ⊙ Σ_k w_k g(p_k),  p_k = x0 + α_k (x − x0)
--                          VJP = u ⊙ Σ_k w_k g_k + Σ_k w_k α_k H(p_k)((x − x0) ⊙ u)
--                          (same rule, steps and chunking as explain)
--   smoothgrad             p_i = x + s ε_i, s = sigma (max x − min x), ε_i the SAME
--                          noise as explain (seed, stream = the item's noise key,
--                          offset = i d); keys and s come from the engine
--                          (mr_item_keys, mr_noise_scales), E from mr_smoothgrad itself
--     mean                 E = (1/t) Σ g_i              VJP = (1/t) Σ H_i u
--     square               E = (1/t) Σ g_i²             VJP = (1/t) Σ H_i (2 g_i ⊙ u)
--     vargrad              E = (1/t) Σ (g_i − m)², m = (1/t) Σ g_i
--                                                       VJP = (1/t) Σ H_i (2 (g_i − m) ⊙ u)
--   sparsified_smoothgrad  the surrogate (1/t) Σ S_i, S_i = 1[kept] (1 if |g_i| >= τ_i, else
--                          |g_i|/τ_i) (sampling.c: τ_i = 0 clips every kept nonzero entry
--                          to 1) with the selection held constant: the kept set, τ_i, and
--                          which entries are clipped, so clipped entries are constants 1:
--                          VJP = (1/t) Σ H_i (u ⊙ 1[kept] ⊙ sign(g_i) ⊙ 1[|g_i| < τ_i] / τ_i)
--   moreaugrad             the authors' surrogate S = 1[δ̄ ≠ 0] ⊙ |g(x + δ_T)| with δ_T (the
--                          solver's last iterate) and the support of δ̄ held constant
--                          (docs/methods.md §8): VJP = H(x + δ_T)(u ⊙ 1[δ̄ ≠ 0] ⊙ sign(g(x + δ_T))).
--                          This is the derivative of the surrogate, NOT of the solver's
--                          output (the solver is not differentiated). S models |E|, so
--                          explain_abs_vjp passes w straight through; a third return value
--                          holds { surrogate = S, delta_T = δ_T, point = x + δ_T }.
--
-- The sampling methods' noise scale s depends on x through max x and min x. Its
-- derivative is included (exact almost everywhere): with v_i the vector fed to H_i
-- above, the entry holding max x_n gets + sigma (1/t) Σ_i ⟨H_i v_i, ε_i⟩ and the entry
-- holding min x_n the same with a minus sign. So the VJP is the derivative of the map
-- explain computes, and finite differences of explain check it in any direction.
--
-- deeplift has no explain_vjp (DeepLIFT's multipliers are not a gradient): calling it raises.
--
-- Loading: methods.lua ends with `require('moreau.explain_vjp').install(methods)`;
-- install is idempotent, and moreau.attacks calls it too.
local ffi = require 'ffi'
local core = require 'moreau.core'
local T = require 'moreau.tensor'
local oracle = require 'moreau.oracle'
local prox = require 'moreau.prox'
local options = require 'moreau.options'
local C, check = core.C, core.check

local M = {}
local ig_rule -- methods.ig_rule, set by install

local fbox = ffi.new('float[1]')
--- v rounded to float32 (to reproduce the engine's float arithmetic).
local function f32(v)
  fbox[0] = v
  return tonumber(fbox[0])
end

local function sign(v) return (v > 0 and 1) or (v < 0 and -1) or 0 end

--- g(x) for a batch of points (int32 labels), as a tensor.
local methods_ -- moreau.methods, set by install

local function grad(net, xb, lb, kind)
  local g = T.zeros(xb:shape())
  check(C.mr_oracle_grad(net.ptr, xb.ptr, lb, kind, nil, g.ptr))
  return g
end

--- H(x) v and g(x) for a batch of points.
local function hvp(net, xb, lb, kind, vb)
  local g, hv = T.zeros(xb:shape()), T.zeros(xb:shape())
  check(C.mr_oracle_hvp(net.ptr, xb.ptr, lb, kind, vb.ptr, nil, g.ptr, hv.ptr))
  return hv, g
end

local function resolve(u, E, name, x)
  local U = type(u) == 'function' and u(E) or u
  if not T.is(U) or not options.same_shape(U, x) then
    error(('%s:explain_vjp: the cotangent must be a tensor shaped like x (%s), got %s'):format(name,
      table.concat(x:shape(), 'x'), options.show(U)), 3)
  end
  return U
end

local function batch_shape(x, k)
  local s = x:shape()
  s[1] = k
  return s
end

-- ------------------------------------------------------ plain gradients

local vjps = {}

vjps.gradient = function(self, net, x, lab, u)
  local kind = oracle.score_kind(self.opts.score)
  local E = grad(net, x, lab, kind)
  local U = resolve(u, E, self.name, x)
  local hv = hvp(net, x, lab, kind, U)
  return hv, E
end

vjps.input_x_gradient = function(self, net, x, lab, u)
  local kind = oracle.score_kind(self.opts.score)
  local g = grad(net, x, lab, kind)
  local E = g:clone():mul_(x)
  local U = resolve(u, E, self.name, x)
  local hv = hvp(net, x, lab, kind, U:clone():mul_(x))
  return hv:add_(U:clone():mul_(g)), E
end

-- ------------------------------------------------- integrated gradients

vjps.integrated_gradients = function(self, net, x, lab, u)
  local o = self.opts
  local kind = oracle.score_kind(o.score)
  local alphas, weights = ig_rule(o.rule, o.steps)
  local N, d = x:size(1), x:numel() / x:size(1)
  local x0 = methods_.baseline_of('integrated_gradients', o, x, 3)
  local diff = x - x0
  local P = N * o.steps
  -- xb, vb, g, hv per point and the tangent buffers of the network
  local chunk = methods_.chunk_size(net, o, P, 16 * d + 4, true)
  -- Visits the (item, step) points in explain's order, `chunk` per pass;
  -- fn(xb, lb, k, p0) does the work for one chunk.
  local function chunks(fn)
    for p0 = 0, P - 1, chunk do
      local k = math.min(chunk, P - p0)
      local xb = T.zeros(batch_shape(x, k))
      local lb = ffi.new('int32_t[?]', k)
      for q = 0, k - 1 do
        local n, step = math.floor((p0 + q) / o.steps), (p0 + q) % o.steps + 1
        local dst, a = xb:data() + q * d, alphas[step]
        local px0, pd = x0:data() + n * d, diff:data() + n * d
        for j = 0, d - 1 do dst[j] = px0[j] + a * pd[j] end
        lb[q] = lab[n]
      end
      fn(xb, lb, k, p0)
      xb:free() -- the collector does not see its size; the budget counts it
    end
  end
  local G = T.zeros(x:shape()) -- Σ_k w_k g_k per item
  local function add_grads(g, k, p0)
    for q = 0, k - 1 do
      local n, step = math.floor((p0 + q) / o.steps), (p0 + q) % o.steps + 1
      local dst, src, w = G:data() + n * d, g:data() + q * d, weights[step]
      for j = 0, d - 1 do dst[j] = dst[j] + w * src[j] end
    end
  end
  local U
  if type(u) == 'function' then
    chunks(function(xb, lb, k, p0)
      local g = grad(net, xb, lb, kind)
      add_grads(g, k, p0)
      g:free()
    end)
    U = resolve(u, G:clone():mul_(diff), self.name, x)
  else
    U = resolve(u, nil, self.name, x)
  end
  local du = diff:clone():mul_(U) -- (x − x0) ⊙ u, the same for every step
  local out = T.zeros(x:shape())
  local fresh = type(u) ~= 'function'
  chunks(function(xb, lb, k, p0)
    local vb = T.zeros(xb:shape())
    for q = 0, k - 1 do
      local n = math.floor((p0 + q) / o.steps)
      ffi.copy(vb:data() + q * d, du:data() + n * d, d * 4)
    end
    local hv, g = hvp(net, xb, lb, kind, vb)
    if fresh then add_grads(g, k, p0) end
    for q = 0, k - 1 do
      local n, step = math.floor((p0 + q) / o.steps), (p0 + q) % o.steps + 1
      local dst, src, c = out:data() + n * d, hv:data() + q * d, weights[step] * alphas[step]
      for j = 0, d - 1 do dst[j] = dst[j] + c * src[j] end
    end
    vb:free()
    hv:free()
    g:free()
  end)
  out:add_(U:clone():mul_(G))
  return out, G:mul_(diff)
end

-- ------------------------------------------------------------ SmoothGrad

--- The noisy points of explain (sampling.h): copy i of item n is
-- x_n + s_n ε, ε from (seed, stream = K_n, offset = i·d), with the noise key
-- K_n and the scale s_n = sigma·(max x_n − min x_n) from the engine
-- (mr_item_keys, mr_noise_scales: one definition for explain and its VJP).
-- RETURN: a sampler table.
local function sampler(net, x, lab, o, keys)
  local N, d = x:size(1), x:numel() / x:size(1)
  local t = o.samples
  if t < 1 then error('smoothgrad: samples must be >= 1, got ' .. tostring(t), 4) end
  local std = ffi.new('float[?]', N)
  local imax, imin = ffi.new('int64_t[?]', N), ffi.new('int64_t[?]', N)
  check(C.mr_noise_scales(std, imax, imin, x.ptr, o.sigma))
  local copies = N * t
  -- xb, eps, vb, g, hv per copy and the tangent buffers of the network
  local chunk = methods_.chunk_size(net, o, copies, 20 * d + 4, true)
  local s = { N = N, d = d, t = t, std = std, sigma = f32(o.sigma), imax = {}, imin = {} }
  for n = 0, N - 1 do s.imax[n], s.imin[n] = tonumber(imax[n]), tonumber(imin[n]) end
  --- fn(xb, lb, eps, k, p0): eps holds ε of each copy (k·d floats).
  function s.chunks(fn)
    for p0 = 0, copies - 1, chunk do
      local k = math.min(chunk, copies - p0)
      local xb = T.zeros(batch_shape(x, k))
      local eps = ffi.new('float[?]', k * d)
      local lb = ffi.new('int32_t[?]', k)
      for q = 0, k - 1 do
        local n, i = math.floor((p0 + q) / t), (p0 + q) % t
        local dst, xn = xb:data() + q * d, x:data() + n * d
        check(C.mr_rng_normal(dst, d, o.seed, keys[n], i * d, 0, std[n]))
        check(C.mr_rng_normal(eps + q * d, d, o.seed, keys[n], i * d, 0, 1))
        for j = 0, d - 1 do dst[j] = dst[j] + xn[j] end
        lb[q] = lab[n]
      end
      fn(xb, lb, eps, k, p0)
      xb:free() -- the collector does not see its size; the budget counts it
    end
  end
  return s
end

--- The Sparsified SmoothGrad selection of one gradient (d floats), as
-- sampling.c: τ = the clip_k-th largest |g|, keep = the keep_k-th largest;
-- kept entries are |g| >= keep and > 0. RETURN: tau, keep threshold.
local function sparsify_thresholds(g, d, clip_k, keep_k, tmp)
  for j = 0, d - 1 do tmp[j + 1] = -math.abs(g[j]) end -- ascending -|g| = descending |g|
  for j = d + 1, #tmp do tmp[j] = nil end
  table.sort(tmp)
  return -tmp[clip_k], -tmp[keep_k]
end

local sg_engine_modes = { mean = 'MR_SG_MEAN', square = 'MR_SG_SQUARE', vargrad = 'MR_SG_VAR',
  sparsified = 'MR_SG_SPARSIFIED' }

local function sg_vjp(self, net, x, lab, u, mode, keys)
  local o = self.opts
  local kind = oracle.score_kind(o.score)
  local s = sampler(net, x, lab, o, keys)
  local N, d, t = s.N, s.d, s.t
  local inv = 1 / t
  local clip_k, keep_k
  if mode == 'sparsified' then
    if not (o.clip > 0 and o.clip <= 1 and o.keep > 0 and o.keep <= 1) then
      error('sparsified_smoothgrad: clip and keep must be in (0, 1]', 3)
    end
    clip_k = math.max(1, math.floor(f32(f32(o.clip) * d)))
    keep_k = math.max(1, math.floor(f32(f32(o.keep) * d)))
  end
  local tmp = {}
  -- The map E is explain's own (the engine, same keys and options); VarGrad's
  -- VJP also needs the mean m of the gradients.
  local E = methods_._smoothgrad(net, x, lab, o, C[sg_engine_modes[mode]], keys)
  local mean = mode == 'vargrad' and methods_._smoothgrad(net, x, lab, o, C.MR_SG_MEAN, keys) or nil
  local U = resolve(u, E, self.name, x)
  -- Pass 2: Σ_i H_i v_i with v_i = u ⊙ ∂φ/∂g at g_i, and ⟨H_i v_i, ε_i⟩ for the scale term.
  local out = T.zeros(x:shape())
  local scale = {}
  for n = 0, N - 1 do scale[n] = 0 end
  s.chunks(function(xb, lb, eps, k, p0)
    local vb = T.zeros(xb:shape())
    local g = mode ~= 'mean' and grad(net, xb, lb, kind) or nil
    for q = 0, k - 1 do
      local n = math.floor((p0 + q) / t)
      local pv, pu = vb:data() + q * d, U:data() + n * d
      if mode == 'mean' then
        ffi.copy(pv, pu, d * 4)
      else
        local gs = g:data() + q * d
        if mode == 'square' then
          for j = 0, d - 1 do pv[j] = 2 * gs[j] * pu[j] end
        elseif mode == 'vargrad' then
          local pm = mean:data() + n * d
          for j = 0, d - 1 do pv[j] = 2 * (gs[j] - pm[j]) * pu[j] end
        else
          -- the selection of this copy (entries below tau: τ = 0 has none)
          local tau, keep = sparsify_thresholds(gs, d, clip_k, keep_k, tmp)
          for j = 0, d - 1 do
            local a = math.abs(gs[j])
            if a >= keep and a > 0 and a < tau then pv[j] = pu[j] * sign(gs[j]) / tau end
          end
        end
      end
    end
    local hv, g2 = hvp(net, xb, lb, kind, vb)
    g2:free()
    for q = 0, k - 1 do
      local n = math.floor((p0 + q) / t)
      local dst, src, e = out:data() + n * d, hv:data() + q * d, eps + q * d
      local dot = 0
      for j = 0, d - 1 do
        dst[j] = dst[j] + inv * src[j]
        dot = dot + src[j] * e[j]
      end
      scale[n] = scale[n] + inv * dot
    end
    vb:free()
    hv:free()
    if g then g:free() end
  end)
  -- ∂s_n/∂x = sigma (e_argmax − e_argmin)
  for n = 0, N - 1 do
    if s.imax[n] ~= s.imin[n] then
      local p = out:data() + n * d
      p[s.imax[n]] = p[s.imax[n]] + s.sigma * scale[n]
      p[s.imin[n]] = p[s.imin[n]] - s.sigma * scale[n]
    end
  end
  return out, E
end

local sg_modes = { mean = 'mean', square = 'square', vargrad = 'vargrad' }

vjps.smoothgrad = function(self, net, x, lab, u, keys)
  local mode = sg_modes[self.opts.variant]
  if not mode then
    error("smoothgrad: unknown variant '" .. tostring(self.opts.variant) .. "' (mean, square or vargrad)", 3)
  end
  return sg_vjp(self, net, x, lab, u, mode, keys)
end

vjps.sparsified_smoothgrad = function(self, net, x, lab, u, keys)
  return sg_vjp(self, net, x, lab, u, 'sparsified', keys)
end

-- ------------------------------------------------------------ MoreauGrad

vjps.moreaugrad = function(self, net, x, lab, u, keys)
  local kind = oracle.score_kind(self.opts.score)
  local s = prox.solver(net, x, lab, self.opts, keys)
  s:run()
  self.last_solver = s
  local E = s:result()
  local dT = s:delta()
  local xs = x + dT
  local g = grad(net, xs, lab, kind)
  local U = resolve(u, E, self.name, x)
  local v = T.zeros(x:shape())
  local S = T.zeros(x:shape())
  local pv, pu, pg, pe, ps = v:data(), U:data(), g:data(), E:data(), S:data()
  for j = 0, x:numel() - 1 do
    if pe[j] ~= 0 then
      pv[j] = pu[j] * sign(pg[j])
      ps[j] = math.abs(pg[j])
    end
  end
  local hv = hvp(net, xs, lab, kind, v)
  return hv, E, { surrogate = S, delta_T = dT, point = xs }
end

-- ------------------------------------------------------------ installing

local function check_args(self, x, labels, what)
  if not T.is(x) then error(self.name .. ':' .. what .. ': x must be a tensor', 3) end
  if not x:isfinite() then error(self.name .. ':' .. what .. ': x contains NaN or infinite values', 3) end
  return oracle.labels(labels, x:size(1))
end

--- True if method m has explain_vjp (every method but deeplift).
function M.supported(m) return vjps[m.name] ~= nil end

--- Which derivative explain_vjp returns: 'exact' (of explain itself) or
-- 'surrogate' (sparsified_smoothgrad, moreaugrad: see the header).
function M.kind(m)
  return (m.name == 'moreaugrad' or m.name == 'sparsified_smoothgrad') and 'surrogate' or 'exact'
end

--- Puts explain_vjp and explain_abs_vjp on the methods' shared metatable.
-- ARGS: methods (the moreau.methods table). Idempotent.
function M.install(methods)
  ig_rule = methods.ig_rule
  methods_ = methods
  local probe = methods.gradient()
  local Method = getmetatable(probe)
  if Method.explain_vjp then return methods end

  --- Σ u ⊙ ∂E/∂x. ARGS: net, x (N, ...), labels, u (tensor like x, or
  -- function E -> tensor), ids (optional, as explain's: the noise keys).
  -- RETURN: vjp (like x), E (the map), extra (moreaugrad).
  function Method:explain_vjp(net, x, labels, u, ids)
    local f = vjps[self.name]
    if not f then
      error(self.name .. ':explain_vjp: not available (' .. self.name .. ' is not gradient-based)', 2)
    end
    local lab = check_args(self, x, labels, 'explain_vjp')
    methods.check_input(self.name .. ':explain_vjp', net, x, 2)
    if u == nil then error(self.name .. ':explain_vjp: u is missing', 2) end
    return f(self, net, x, lab, u, methods.keys(x, ids, self.name .. ':explain_vjp', 3))
  end

  --- Σ w ⊙ ∂|E|/∂x: w ⊙ sign(E) fed to explain_vjp; for moreaugrad the
  -- surrogate already models |E|, so w goes through as it is.
  -- ARGS: as explain_vjp. RETURN: as explain_vjp.
  function Method:explain_abs_vjp(net, x, labels, w, ids)
    if self.name == 'moreaugrad' then return self:explain_vjp(net, x, labels, w, ids) end
    return self:explain_vjp(net, x, labels, function(E)
      local W = type(w) == 'function' and w(E) or w
      if not T.is(W) or not options.same_shape(W, E) then
        error(('%s:explain_abs_vjp: w must be a tensor shaped like x (%s), got %s'):format(self.name,
          table.concat(E:shape(), 'x'), options.show(W)), 4)
      end
      local out = W:clone()
      local po, pe = out:data(), E:data()
      for j = 0, out:numel() - 1 do po[j] = po[j] * sign(pe[j]) end
      return out
    end, ids)
  end
  return methods
end

return M
