--- moreau.explain_vjp — derivatives of explanations with respect to the input.
--
-- Every gradient-based method of moreau.methods has two calls:
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
-- (moreau.oracle.hvp, forward-over-reverse). Each method's VJP lives next to
-- its explain, in moreau/methods/<name>.lua, with its formula:
--
--   gradient               H(x) u
--   input_x_gradient       u ⊙ g + H(x)(x ⊙ u)
--   integrated_gradients   u ⊙ Σ_k w_k g_k + Σ_k w_k α_k H(p_k)((x − x0) ⊙ u)
--   smoothgrad             (1/t) Σ H_i v_i (v_i by variant) + the noise scale's term
--   sparsified_smoothgrad  the surrogate with the selection held constant
--   moreaugrad             the authors' surrogate 1[δ̄ ≠ 0] ⊙ |g(x + δ_T)|
--
-- deeplift has no explain_vjp (DeepLIFT's multipliers are not a gradient): calling it raises.
--
-- This module answers which derivative a method has; the calls themselves are
-- on every method object (moreau.methods.common).
local M = {}

local function impl(m) return require('moreau.methods').impl(m) end

--- True if method m has explain_vjp (every method but deeplift).
function M.supported(m)
  local i = impl(m)
  return i ~= nil and i.explain_vjp ~= false and i.explain_vjp ~= nil
end

--- Which derivative explain_vjp returns: 'exact' (of explain itself) or
-- 'surrogate' (sparsified_smoothgrad, moreaugrad: see their files).
function M.kind(m)
  local i = impl(m)
  return i and i.vjp_kind == 'surrogate' and 'surrogate' or 'exact'
end

return M
