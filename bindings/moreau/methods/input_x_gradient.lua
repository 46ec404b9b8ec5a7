--- moreau.methods.input_x_gradient — input times gradient.
--
--   E = x ⊙ g(x), g = ∇f_c         explain_vjp: u ⊙ g + H(x)(x ⊙ u)
local oracle = require 'moreau.oracle'
local common = require 'moreau.methods.common'

local M = {
  name = 'input_x_gradient',
  doc = 'input times gradient x ⊙ ∇f_c(x)',
  defaults = { score = 'logit', _domains = { score = common.SCORE } },
  vjp_kind = 'exact',
}

--- ARGS: self, net, x (N, ...), lab (int32_t[N]). RETURN: x ⊙ ∇f_c(x), like x.
function M.explain(self, net, x, lab)
  return common.grad(net, x, lab, oracle.score_kind(self.opts.score)):mul_(x)
end

--- ARGS: self, net, x, lab, u (tensor like x, or function E -> tensor).
-- RETURN: u ⊙ g + H(x)(x ⊙ u), E.
function M.explain_vjp(self, net, x, lab, u)
  local kind = oracle.score_kind(self.opts.score)
  local g = common.grad(net, x, lab, kind)
  local E = g:clone():mul_(x)
  local U = common.cotangent(u, E, self.name, x)
  local hv = common.hvp(net, x, lab, kind, U:clone():mul_(x))
  return hv:add_(U:clone():mul_(g)), E
end

-- The table of options is documented here, at the end of the file: followed
-- by M's constructor, LDoc would list M's fields as the options.

--- The options of input_x_gradient: only the common option score
-- (moreau.methods.common).
--
-- Common options (@{moreau.methods.common}), with their defaults here:
-- score = 'logit'.
-- @table options

return M
