--- moreau.methods.gradient — the simple gradient (Simonyan et al., 2014).
--
--   E = ∇f_c(x)                  explain_vjp: Σ u ⊙ ∂E/∂x = H(x) u, H = ∇²f_c
--
-- f_c is the class score (score: logit, log_softmax or softmax; moreau.oracle).
local oracle = require 'moreau.oracle'
local common = require 'moreau.methods.common'

local M = {
  name = 'gradient',
  doc = 'simple gradient ∇f_c(x) (Simonyan et al. 2014)',
  defaults = { score = 'logit', _domains = { score = common.SCORE } },
  vjp_kind = 'exact',
}

--- ARGS: self, net, x (N, ...), lab (int32_t[N]). RETURN: ∇f_c(x), like x.
function M.explain(self, net, x, lab)
  return common.grad(net, x, lab, oracle.score_kind(self.opts.score))
end

--- ARGS: self, net, x, lab, u (tensor like x, or function E -> tensor).
-- RETURN: H(x) u, E.
function M.explain_vjp(self, net, x, lab, u)
  local kind = oracle.score_kind(self.opts.score)
  local E = common.grad(net, x, lab, kind)
  local U = common.cotangent(u, E, self.name, x)
  local hv = common.hvp(net, x, lab, kind, U)
  return hv, E
end

-- The table of options is documented here, at the end of the file: followed
-- by M's constructor, LDoc would list M's fields as the options.

--- The options of gradient: only the common option score
-- (moreau.methods.common).
--
-- Common options (@{moreau.methods.common}), with their defaults here:
-- score = 'logit'.
-- @table options

return M
