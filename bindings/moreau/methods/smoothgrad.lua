--- moreau.methods.smoothgrad — SmoothGrad (Smilkov et al., 2017) and its
-- variants, and the noisy-copy machinery of the SmoothGrad family
-- (sparsified_smoothgrad uses it too).
--
-- Copy i of item n is p_i = x_n + s_n ε_i, s_n = sigma (max x_n − min x_n)
-- (0 for a constant image), ε_i ~ N(0, I) from (seed, stream = the item's
-- noise key, offset = i d). The engine is the one home of the scale, the
-- keys and the offsets: mr_smoothgrad draws them for the map, and
-- mr_noise_scales, mr_noise_copies hand the same copies to explain_vjp.
--
--   variant  E                                           explain_vjp
--   mean     (1/t) Σ g_i                                 (1/t) Σ H_i u
--   square   (1/t) Σ g_i²                                (1/t) Σ H_i (2 g_i ⊙ u)
--   vargrad  (1/t) Σ (g_i − m)², m = (1/t) Σ g_i         (1/t) Σ H_i (2 (g_i − m) ⊙ u)
--            (VarGrad, Adebayo et al. 2018; the engine sums by Welford's update: never negative)
--
-- The scale s_n depends on x through max x_n and min x_n, and its derivative
-- is included (exact almost everywhere): with v_i the vector fed to H_i, the
-- entry holding max x_n gets + sigma (1/t) Σ_i ⟨H_i v_i, ε_i⟩ and the entry
-- holding min x_n the same with a minus sign. So the VJP is the derivative of
-- the map explain computes, and finite differences of explain check it.
local ffi = require 'ffi'
local core = require 'moreau.core'
local T = require 'moreau.tensor'
local oracle = require 'moreau.oracle'
local common = require 'moreau.methods.common'
local C, check, handle = core.C, core.check, core.handle

--- The options of smoothgrad: its own below and the common options samples,
-- sigma, chunk, memory_budget, seed and score (moreau.methods.common).
-- `M.defaults` holds their default values, `M.defaults._domains` their
-- domains.
--
-- Common options (@{moreau.methods.common}), with their defaults here:
-- samples = 50, sigma = 0.15, chunk = 0, memory_budget = 0, seed = 0,
-- score = 'logit'.
-- @table options
-- @field variant 'mean' (SmoothGrad), 'square' (the mean of g²) or 'vargrad' (the
-- variance of g, VarGrad) (default: 'mean')

local M = {
  name = 'smoothgrad',
  doc = 'SmoothGrad (Smilkov et al. 2017): noise std sigma·(max x − min x), 0 for a constant image; VarGrad by Welford',
  -- sigma >= 0: sigma = 0 is the plain gradient (every noisy copy is x).
  defaults = { samples = 50, sigma = 0.15, variant = 'mean', chunk = 0, memory_budget = 0, seed = 0,
    score = 'logit', _domains = { samples = 'int >= 1', sigma = 'num >= 0', variant = 'one of mean, square, vargrad',
      chunk = 'int >= 0', memory_budget = 'bytes', seed = 'seed', score = common.SCORE } },
  vjp_kind = 'exact',
}

--- The engine's options for the SmoothGrad family. ARGS: o (a method's
-- options), mode (MR_SG_*), keys (uint64_t[N]). RETURN: mr_smoothgrad_opts.
local function engine_opts(o, mode, keys)
  local so = ffi.new('mr_smoothgrad_opts')
  so.samples, so.chunk, so.mode = o.samples, o.chunk, mode
  so.score_kind, so.sigma, so.seed = oracle.score_kind(o.score), o.sigma, o.seed
  so.clip_frac, so.keep_frac = o.clip or 0, o.keep or 0
  so.keys, so.memory_budget = keys, o.memory_budget
  return so
end

--- The map of the SmoothGrad family by the engine (mr_smoothgrad).
-- ARGS: net, x (N, ...), lab (int32_t[N]), o (options), mode (MR_SG_*), keys.
-- RETURN: a tensor like x.
function M.engine_map(net, x, lab, o, mode, keys)
  local out = T.zeros(core.shape(x))
  check(C.mr_smoothgrad(handle(out), handle(net), handle(x), lab, engine_opts(o, mode, keys)))
  return out
end

--- The noisy copies of explain, chunk by chunk (HVP passes: `chunk` copies per
-- pass). RETURN: a sampler table { N, d, t, imax, imin, sigma (the float32
-- sigma the engine scales by) } with s.chunks(fn): fn(xb, lb, eps, k, p0) for
-- each chunk of k copies from copy p0 (eps: ε of each copy, k·d floats).
local function sampler(net, x, lab, o, keys)
  local N, d = core.size(x, 1), core.numel(x) / core.size(x, 1)
  local t = o.samples
  if t < 1 then error('smoothgrad: samples must be >= 1, got ' .. tostring(t), 4) end
  local so = engine_opts(o, C.MR_SG_MEAN, keys)
  local std = ffi.new('float[?]', N)
  local imax, imin = ffi.new('int64_t[?]', N), ffi.new('int64_t[?]', N)
  check(C.mr_noise_scales(std, imax, imin, handle(x), so.sigma))
  local copies = N * t
  -- xb, eps, vb, g, hv per copy and the tangent buffers of the network
  local chunk = common.chunk_size(net, o, copies, 20 * d + 4, true)
  local s = { N = N, d = d, t = t, sigma = tonumber(so.sigma), imax = {}, imin = {} }
  for n = 0, N - 1 do s.imax[n], s.imin[n] = tonumber(imax[n]), tonumber(imin[n]) end
  function s.chunks(fn)
    for p0 = 0, copies - 1, chunk do
      local k = math.min(chunk, copies - p0)
      local xb = T.zeros(common.batch_shape(x, k))
      local eps = ffi.new('float[?]', k * d)
      local lb = ffi.new('int32_t[?]', k)
      check(C.mr_noise_copies(handle(xb), eps, handle(x), std, keys, so.seed, t, p0))
      for q = 0, k - 1 do lb[q] = lab[math.floor((p0 + q) / t)] end
      fn(xb, lb, eps, k, p0)
      xb:free() -- the collector does not see its size; the budget counts it
    end
  end
  return s
end

local engine_modes = { mean = 'MR_SG_MEAN', square = 'MR_SG_SQUARE', vargrad = 'MR_SG_VAR',
  sparsified = 'MR_SG_SPARSIFIED' }

--- Σ u ⊙ ∂E/∂x for the SmoothGrad family. mode: mean, square, vargrad or
-- sparsified (moreau.methods.sparsified_smoothgrad has its surrogate).
-- RETURN: vjp, E (the map, by the engine: explain's own).
function M.family_vjp(self, net, x, lab, u, mode, keys)
  local o = self.opts
  local kind = oracle.score_kind(o.score)
  local s = sampler(net, x, lab, o, keys)
  local N, d, t = s.N, s.d, s.t
  local inv = 1 / t
  -- Sparsified: the engine's counts, and per copy its selection (τ, keep) in `sel`.
  local ck, kk, sel, scratch
  if mode == 'sparsified' then
    ck, kk = ffi.new('int64_t[1]'), ffi.new('int64_t[1]')
    check(C.mr_sparsify_counts(ck, kk, d, o.clip, o.keep))
    sel, scratch = ffi.new('float[2]'), ffi.new('float[?]', d)
  end
  -- The map E is explain's own (the engine, same keys and options); VarGrad's
  -- VJP also needs the mean m of the gradients.
  local E = M.engine_map(net, x, lab, o, C[engine_modes[mode]], keys)
  local mean = mode == 'vargrad' and M.engine_map(net, x, lab, o, C.MR_SG_MEAN, keys) or nil
  local U = common.cotangent(u, E, self.name, x)
  -- Σ_i H_i v_i with v_i = u ⊙ ∂φ/∂g at g_i, and ⟨H_i v_i, ε_i⟩ for the scale term.
  -- The loops below run on copies of the values (core.floats), written back
  -- with core.store; out is accumulated in its copy and stored at the end.
  local out = T.zeros(core.shape(x))
  local po, pU = core.floats(out), core.floats(U)
  local pmean = mean and core.floats(mean)
  local scale = {}
  for n = 0, N - 1 do scale[n] = 0 end
  s.chunks(function(xb, lb, eps, k, p0)
    local vb = T.zeros(core.shape(xb))
    local g = mode ~= 'mean' and common.grad(net, xb, lb, kind) or nil
    local pvb, pg = core.floats(vb), g and core.floats(g)
    for q = 0, k - 1 do
      local n = math.floor((p0 + q) / t)
      local pv, pu = pvb + q * d, pU + n * d
      if mode == 'mean' then
        ffi.copy(pv, pu, d * 4)
      else
        local gs = pg + q * d
        if mode == 'square' then
          for j = 0, d - 1 do pv[j] = 2 * gs[j] * pu[j] end
        elseif mode == 'vargrad' then
          local pm = pmean + n * d
          for j = 0, d - 1 do pv[j] = 2 * (gs[j] - pm[j]) * pu[j] end
        else
          -- the selection of this copy (entries below tau: τ = 0 has none)
          check(C.mr_sparsify_thresholds(sel, sel + 1, gs, d, ck[0], kk[0], scratch))
          local tau, keep = tonumber(sel[0]), tonumber(sel[1])
          for j = 0, d - 1 do
            local a = math.abs(gs[j])
            if a >= keep and a > 0 and a < tau then pv[j] = pu[j] * common.sign(gs[j]) / tau end
          end
        end
      end
    end
    core.store(vb, pvb)
    local hv, g2 = common.hvp(net, xb, lb, kind, vb)
    g2:free()
    local phv = core.floats(hv)
    for q = 0, k - 1 do
      local n = math.floor((p0 + q) / t)
      local dst, src, e = po + n * d, phv + q * d, eps + q * d
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
      local p = po + n * d
      p[s.imax[n]] = p[s.imax[n]] + s.sigma * scale[n]
      p[s.imin[n]] = p[s.imin[n]] - s.sigma * scale[n]
    end
  end
  return core.store(out, po), E
end

local variants = { mean = 'mean', square = 'square', vargrad = 'vargrad' }

local function variant(self)
  local mode = variants[self.opts.variant]
  if not mode then
    error("smoothgrad: unknown variant '" .. tostring(self.opts.variant) .. "' (mean, square or vargrad)", 4)
  end
  return mode
end

--- ARGS: self, net, x (N, ...), lab (int32_t[N]), keys (uint64_t[N]). RETURN: E, like x.
function M.explain(self, net, x, lab, keys)
  return M.engine_map(net, x, lab, self.opts, C[engine_modes[variant(self)]], keys)
end

--- ARGS: self, net, x, lab, u (tensor like x, or function E -> tensor), keys.
-- RETURN: the VJP of the header's table, E.
function M.explain_vjp(self, net, x, lab, u, keys)
  return M.family_vjp(self, net, x, lab, u, variant(self), keys)
end

return M
