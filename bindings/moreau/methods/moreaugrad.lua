--- moreau.methods.moreaugrad — MoreauGrad (Zhang & Farnia 2023): the
-- gradient of the Moreau envelope of the class score, −mean(tail δ)/ρ of the
-- solver of moreau.prox; sparse with reg = l1, group-sparse with reg = group,
-- unregularized with m = 0 (README, docs/ have the solver and its options).
--
-- explain_vjp is the authors' surrogate S = 1[δ̄ ≠ 0] ⊙ |g(x + δ_T)| with δ_T
-- (the solver's last iterate) and the support of δ̄ held constant:
--   VJP = H(x + δ_T)(u ⊙ 1[δ̄ ≠ 0] ⊙ sign(g(x + δ_T)))
-- the derivative of the surrogate, NOT of the solver's output (the solver is
-- not differentiated). S models |E|, so explain_abs_vjp passes w straight
-- through; a third return value holds { surrogate = S, delta_T = δ_T,
-- point = x + δ_T }.
local core = require 'moreau.core'
local T = require 'moreau.tensor'
local oracle = require 'moreau.oracle'
local prox = require 'moreau.prox'
local common = require 'moreau.methods.common'

local defaults = {}
for k, v in pairs(prox.defaults) do defaults[k] = v end
defaults.K = nil -- derived: min(101, T) unless given
defaults._extra = { eta = true, reg = true, group_size = true, groups = true, K = true }
defaults._domains = prox.domains

--- The options of moreaugrad: those of moreau.prox's solver below and the
-- common options sigma, chunk, memory_budget, seed and score
-- (moreau.methods.common). `M.defaults` holds their default values (the
-- solver's, prox.defaults), `M.defaults._domains` their domains.
--
-- Common options (@{moreau.methods.common}), with their defaults here:
-- sigma = 0.1, chunk = 0, memory_budget = 0, seed = 0, score = 'logit'.
-- @table options
-- @field rho ρ of the Moreau envelope min_δ f(x + δ) + ‖δ‖²/(2ρ): larger, a smoother map
-- (default: 1)
-- @field gamma γ, the proximal-gradient step size: δ ← prox(δ − γ (g + δ/ρ))
-- (default: 0.1)
-- @field T iterations of the solver (default: 300)
-- @field m noise samples averaged per iteration (0: deterministic, the plain gradient at
-- x + δ) (default: 32)
-- @field K the map averages the last K iterates δ_{T−K+1..T} (the tail average)
-- (default: unset, which is min(101, T))
-- @field reg regularizer of δ: 'none', 'l1' (sparse, soft-threshold) or 'group'
-- (group-sparse) (default: unset, which is 'group' when groups or group_size is
-- given and eta is not 0, else 'l1' when eta > 0, else 'none')
-- @field eta η, the weight of the regularizer (the prox threshold is γη)
-- (default: unset, which is the authors' 5e-3 for reg = 'l1', 5e-2 for
-- 'group', 0 for 'none')
-- @field group_size side g of the g×g pixel groups of the group regularizer (over all
-- channels) (default: unset, which is prox.default_group_size(H), about H/16)
-- @field groups an explicit group map (prox.groups) instead of g×g blocks
-- (default: unset)
-- @field output 'gradient': the map −mean(δ)/ρ (MoreauGrad); 'delta': the mean δ itself
-- (default: 'gradient')
-- @field accelerated FISTA with restart instead of the plain proximal-gradient step
-- (default: false)
-- @field tol stop an image once ‖δ_{t+1} − δ_t‖ <= tol·max(1, ‖δ_t‖) (0: always run T
-- iterations) (default: 0)

local M = {
  name = 'moreaugrad',
  doc = 'MoreauGrad (Zhang & Farnia 2023): gradient of the Moreau envelope; sparse with reg = l1, group-sparse with reg = group',
  defaults = defaults,
  vjp_kind = 'surrogate',
  -- the surrogate models |E|: explain_abs_vjp passes its weights straight through
  models_abs = true,
}

--- Records the derived defaults too: K = min(101, T), eta by regularizer.
function M.configure(m)
  local o = m.opts
  if o.K == nil then o.K = math.min(101, o.T) end
  local derived = prox.solver_options(o, 3, 'methods.moreaugrad')
  o.reg, o.eta = derived.reg, derived.eta
end

--- ARGS: self, net, x (N, ...), lab (int32_t[N]), keys (uint64_t[N]).
-- RETURN: the map, like x; self.last_solver keeps the solver (its stats).
function M.explain(self, net, x, lab, keys)
  local s = prox.solver(net, x, lab, self.opts, keys)
  self.opts.group_size = s.opts.group_size -- derived from H when group-sparse and not given
  s:run()
  self.last_solver = s
  return s:result()
end

--- ARGS: self, net, x, lab, u (tensor like x, or function E -> tensor), keys.
-- RETURN: the surrogate's VJP above, E, { surrogate, delta_T, point }.
function M.explain_vjp(self, net, x, lab, u, keys)
  local kind = oracle.score_kind(self.opts.score)
  local s = prox.solver(net, x, lab, self.opts, keys)
  s:run()
  self.last_solver = s
  local E = s:result()
  local dT = s:delta()
  local xs = x + dT
  local g = common.grad(net, xs, lab, kind)
  local U = common.cotangent(u, E, self.name, x)
  local v = T.zeros(core.shape(x))
  local S = T.zeros(core.shape(x))
  -- on copies of the values (core.floats): v = u ⊙ sign(g), S = |g| where E ≠ 0
  local pv, pu, pg, pe, ps = core.floats(v), core.floats(U), core.floats(g), core.floats(E), core.floats(S)
  for j = 0, core.numel(x) - 1 do
    if pe[j] ~= 0 then
      pv[j] = pu[j] * common.sign(pg[j])
      ps[j] = math.abs(pg[j])
    end
  end
  core.store(v, pv)
  core.store(S, ps)
  local hv = common.hvp(net, xs, lab, kind, v)
  return hv, E, { surrogate = S, delta_T = dT, point = xs }
end

return M
