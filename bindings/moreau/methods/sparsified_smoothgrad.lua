--- moreau.methods.sparsified_smoothgrad — Sparsified SmoothGrad (Levine et al., 2019).
--
--   E = (1/t) Σ_i S_i,  S_i = 1[kept] (1 if |g_i| >= τ_i, else |g_i|/τ_i)
--
-- over the noisy copies of moreau.methods.smoothgrad, with τ_i the
-- (clip·d)-th largest |g_i| and kept the entries with |g_i| >= the
-- (keep·d)-th largest and |g_i| > 0; τ_i = 0 (fewer nonzero entries than
-- clip·d) clips every kept nonzero entry to 1, the limit of min(a, τ)/τ
-- (the engine is the one home of the rule: mr_smoothgrad for the map,
-- mr_sparsify_counts and mr_sparsify_thresholds for explain_vjp).
--
-- explain_vjp is the derivative of the surrogate with the selection held
-- constant (the kept set, τ_i, and which entries are clipped, so clipped
-- entries are constants 1), plus the noise scale's term of smoothgrad:
--   VJP = (1/t) Σ H_i (u ⊙ 1[kept] ⊙ sign(g_i) ⊙ 1[|g_i| < τ_i] / τ_i)
local C = require('moreau.core').C
local common = require 'moreau.methods.common'
local smoothgrad = require 'moreau.methods.smoothgrad'

--- The options of sparsified_smoothgrad: its own below and the common options samples,
-- sigma, chunk, memory_budget, seed and score (moreau.methods.common).
-- `M.defaults` holds their default values, `M.defaults._domains` their
-- domains.
--
-- Common options (@{moreau.methods.common}), with their defaults here:
-- samples = 256, sigma = 0.1, chunk = 0, memory_budget = 0, seed = 0,
-- score = 'logit'.
-- @table options
-- @field clip fraction of entries at or above the clip value τ (the (clip·d)-th largest
-- |g|), which count 1 (default: 0.01)
-- @field keep fraction of entries kept per sample (those at or above the (keep·d)-th
-- largest |g|) (default: 0.1)

local M = {
  name = 'sparsified_smoothgrad',
  doc = 'Sparsified SmoothGrad (Levine et al. 2019): kept entries at or above tau count 1, so tau = 0 keeps them',
  defaults = { samples = 256, sigma = 0.1, clip = 0.01, keep = 0.1, chunk = 0, memory_budget = 0, seed = 0,
    score = 'logit', _domains = { samples = 'int >= 1', sigma = 'num >= 0', clip = 'num in (0, 1]',
      keep = 'num in (0, 1]', chunk = 'int >= 0', memory_budget = 'bytes', seed = 'seed', score = common.SCORE } },
  vjp_kind = 'surrogate',
}

--- ARGS: self, net, x (N, ...), lab (int32_t[N]), keys (uint64_t[N]). RETURN: E, like x.
function M.explain(self, net, x, lab, keys)
  return smoothgrad.engine_map(net, x, lab, self.opts, C.MR_SG_SPARSIFIED, keys)
end

--- ARGS: self, net, x, lab, u (tensor like x, or function E -> tensor), keys.
-- RETURN: the surrogate's VJP above, E.
function M.explain_vjp(self, net, x, lab, u, keys)
  return smoothgrad.family_vjp(self, net, x, lab, u, 'sparsified', keys)
end

return M
