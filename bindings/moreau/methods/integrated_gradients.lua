--- moreau.methods.integrated_gradients — integrated gradients (Sundararajan et al., 2017).
--
--   E = (x − x0) ⊙ Σ_k w_k g(p_k),  p_k = x0 + α_k (x − x0),  g = ∇f_c
--   explain_vjp: u ⊙ Σ_k w_k g_k + Σ_k w_k α_k H(p_k)((x − x0) ⊙ u)
--
-- Nodes α_k and weights w_k by rule (common.ig_rule): riemann_right (the
-- paper's eq. 3), trapezoid, gauss_legendre. The points of every (item, step)
-- go through the network `chunk` at a time by common.ig_path, the same loop
-- for the map and its VJP.
local T = require 'moreau.tensor'
local core = require 'moreau.core'
local C, check, handle = core.C, core.check, core.handle
local oracle = require 'moreau.oracle'
local common = require 'moreau.methods.common'

--- The options of integrated_gradients: its own below and the common
-- options baseline, chunk, memory_budget and score (moreau.methods.common).
-- `M.defaults` holds their default values, `M.defaults._domains` their
-- domains.
--
-- Common options (@{moreau.methods.common}), with their defaults here:
-- baseline = 0, chunk = 0, memory_budget = 0, score = 'logit'.
-- @table options
-- @field steps points on the path from the baseline to x (at least 2 for trapezoid)
-- (default: 50)
-- @field rule quadrature rule of the path integral: 'riemann_right', 'trapezoid' or
-- 'gauss_legendre' (Gauss–Legendre nodes on [0, 1]) (default: 'riemann_right')

local M = {
  name = 'integrated_gradients',
  doc = 'integrated gradients (Sundararajan et al. 2017), zero baseline',
  -- steps >= 1 (>= 2 for trapezoid: checked by configure when the method is made).
  defaults = { steps = 50, rule = 'riemann_right', baseline = 0, chunk = 0, memory_budget = 0, score = 'logit',
    _domains = { steps = 'int >= 1', rule = 'one of riemann_right, gauss_legendre, trapezoid',
      baseline = 'tensor or num', chunk = 'int >= 0', memory_budget = 'bytes', score = common.SCORE } },
  vjp_kind = 'exact',
}

--- trapezoid needs steps >= 2: refused when the method is made, not when it runs.
function M.configure(m)
  common.ig_rule(m.opts.rule, m.opts.steps, 4)
end

--- ARGS: self, net, x (N, ...), lab (int32_t[N]). RETURN: E, like x.
function M.explain(self, net, x, lab)
  local o = self.opts
  local kind = oracle.score_kind(o.score)
  -- xb and g: 2 d floats per point
  local path = common.ig_path(net, x, lab, o, 8 * (core.numel(x) / core.size(x, 1)) + 4)
  local total = T.zeros(core.shape(x))
  path.chunks(function(xb, lb, k, p0)
    local g = common.grad(net, xb, lb, kind)
    path.accumulate(total, g, k, p0)
    g:free() -- freed now: the collector does not see its size, and the budget counts it
  end)
  return total:mul_(path.diff)
end

--- ARGS: self, net, x, lab, u (tensor like x, or function E -> tensor).
-- RETURN: the VJP above, E. With u a function, a first pass gathers
-- Σ_k w_k g_k for E; otherwise the HVP pass gathers it on the way.
function M.explain_vjp(self, net, x, lab, u)
  local o = self.opts
  local kind = oracle.score_kind(o.score)
  local d = core.numel(x) / core.size(x, 1)
  -- xb, vb, g, hv per point and the tangent buffers of the network
  local path = common.ig_path(net, x, lab, o, 16 * d + 4, true)
  local diff = path.diff
  local G = T.zeros(core.shape(x)) -- Σ_k w_k g_k per item
  local U
  if type(u) == 'function' then
    path.chunks(function(xb, lb, k, p0)
      local g = common.grad(net, xb, lb, kind)
      path.accumulate(G, g, k, p0)
      g:free()
    end)
    U = common.cotangent(u, G:clone():mul_(diff), self.name, x)
  else
    U = common.cotangent(u, nil, self.name, x)
  end
  local du = diff:clone():mul_(U) -- (x − x0) ⊙ u, the same for every step
  local out = T.zeros(core.shape(x))
  local fresh = type(u) ~= 'function'
  local alphas, weights = path.alphas, path.weights
  local function walpha(step) return weights[step] * alphas[step] end
  path.chunks(function(xb, lb, k, p0)
    local vb = T.zeros(core.shape(xb))
    for q = 0, k - 1 do
      check(C.mr_tensor_copy_items(handle(vb), q, handle(du), math.floor((p0 + q) / o.steps), 1))
    end
    local hv, g = common.hvp(net, xb, lb, kind, vb)
    if fresh then path.accumulate(G, g, k, p0) end
    path.accumulate(out, hv, k, p0, walpha)
    vb:free()
    hv:free()
    g:free()
  end)
  out:add_(U:clone():mul_(G))
  return out, G:mul_(diff)
end

return M
