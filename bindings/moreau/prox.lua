--- moreau.prox — proximal operators, projections, and the Moreau solver.
--
--   ST_a(v)_i  = sign(v_i) max(|v_i| − a, 0)
--   GST_a(v)_S = max(1 − a/‖v_S‖₂, 0) v_S          (groups S: a group map)
--
-- The solver minimizes f_c(x + δ) + ‖δ‖²/(2ρ) + η R(δ) by proximal gradient
-- (docs/methods.md §7) and can be driven whole from C or stepped from Lua:
--
--   local s = prox.solver(net, x, labels, { rho = 1, eta = 5e-3, reg = 'l1', T = 300, m = 32 })
--   s:step()                       -- one iteration
--   print(s:stats(1))              -- iter, score, objective, grad_norm, delta_norm, sparsity
--   local d = s:delta()            -- a copy of δ_t
--   s:set { eta = 1e-2 }           -- change a knob between iterations
--   s:run { callback = function(s, t) ... end }
--   local map = s:result()         -- −mean(tail δ)/ρ, or the tail mean (output = 'delta')
local ffi = require 'ffi'
local core = require 'moreau.core'
local T = require 'moreau.tensor'
local oracle = require 'moreau.oracle'
local C, check, handle = core.C, core.check, core.handle

local prox = {}

-- v when it is a number (a number cdata counts: the FFI converts it); else
-- raises "prox.WHO: NAME must be a number, got V" at the caller's caller,
-- where the FFI would raise a raw conversion error. The engine checks the
-- range (finite, >= 0, lo <= hi) and names the value.
local function number_arg(who, name, v)
  if type(v) == 'number' or type(v) == 'cdata' and tonumber(v) ~= nil and not ffi.istype('complex', v) then
    return v
  end
  error(('prox.%s: %s must be a number, got %s'):format(who, name, require('moreau.options').show(v)), 3)
end

-- v as a positive integer (an integer cdata counts as its value); else raises
-- "prox.WHO: NAME must be a positive integer, got V" at the caller's caller
-- (NaN and inf reached the engine as INT64_MIN, 1.5 as 1).
local function size_arg(who, name, v)
  local n = v
  if type(v) == 'cdata' and (ffi.istype('int64_t', v) or ffi.istype('uint64_t', v)) and v < 2 ^ 53 then
    n = tonumber(v)
  end
  if type(n) ~= 'number' or n ~= math.floor(n) or not (n >= 1 and n < 2 ^ 53) then
    error(('prox.%s: %s must be a positive integer, got %s'):format(who, name,
      type(v) == 'cdata' and tostring(v) or require('moreau.options').show(v)), 3)
  end
  return n
end

-- ------------------------------------------------------------ operators

--- ST_a(v) as a new tensor. ARGS: v (tensor), a (>= 0).
function prox.soft_threshold(v, a)
  local out = v:clone()
  check(C.mr_prox_soft_threshold(handle(out), number_arg('soft_threshold', 'a', a)))
  return out
end

--- GST_a(v) per batch item, as a new tensor. ARGS: v (N, ...), groups (prox.groups), a (>= 0).
function prox.group_soft_threshold(v, groups, a)
  local out = v:clone()
  check(C.mr_prox_group_soft_threshold(handle(out), handle(groups), number_arg('group_soft_threshold', 'a', a)))
  return out
end

--- Projection of each item of x onto the L2 ball of radius r around the matching item of center.
function prox.project_l2_ball(x, center, r)
  local out = x:clone()
  check(C.mr_proj_l2_ball(handle(out), handle(center), number_arg('project_l2_ball', 'r', r)))
  return out
end

--- Projection onto the box [lo, hi].
function prox.project_box(x, lo, hi)
  local out = x:clone()
  check(C.mr_proj_box(handle(out), number_arg('project_box', 'lo', lo), number_arg('project_box', 'hi', hi)))
  return out
end

-- --------------------------------------------------------------- groups

local Groups = {}
Groups.__index = Groups

local function wrap_groups(ptr)
  return core.attach(setmetatable({}, Groups), ffi.gc(ptr, C.mr_groups_free))
end

--- The default block size for an H-row image: about 16 blocks per side, as
-- g = 14 on 224×224 in the authors' code (28×28 → 2, 32×32 → 2).
function prox.default_group_size(H)
  H = size_arg('default_group_size', 'H', H)
  return math.max(1, math.floor(H / 16 + 0.5))
end

--- Non-overlapping g×g spatial blocks spanning all channels of a (C, H, W)
-- item; partial blocks at the border are groups too.
-- ARGS: C, H, W, g (or {gh, gw}). RETURN: a Groups object.
function prox.blocks(Cn, H, W, g)
  Cn, H, W = size_arg('blocks', 'C', Cn), size_arg('blocks', 'H', H), size_arg('blocks', 'W', W)
  local gh = size_arg('blocks', 'g', type(g) == 'table' and g[1] or g)
  local gw = size_arg('blocks', 'g', type(g) == 'table' and g[2] or g)
  local out = ffi.new('mr_groups*[1]')
  check(C.mr_groups_new_blocks(out, Cn, H, W, gh, gw))
  return wrap_groups(out[0])
end

--- Any group map: a Lua array of d group ids in [0, ngroups).
function prox.group_map(map, ngroups)
  local d = #map
  local m = ffi.new('int32_t[?]', math.max(d, 1), map)
  local out = ffi.new('mr_groups*[1]')
  check(C.mr_groups_new(out, d, m, ngroups))
  return wrap_groups(out[0])
end

--- The number of groups.
function Groups:count() return C.mr_groups_count(handle(self)) end
--- The number of entries of one batch item the groups cover (C·H·W for blocks).
function Groups:dim() return tonumber(C.mr_groups_dim(handle(self))) end

-- --------------------------------------------------------------- solver

--- The solver's defaults: the authors' code (docs/methods.md §7.4). reg and eta are
-- derived when not given: eta > 0 alone means sparse (L1), eta > 0 with
-- groups or group_size means group-sparse, no eta means vanilla; reg = 'l1'
-- or 'group' alone takes the authors' eta (5e-3 / 5e-2).
prox.defaults = {
  rho = 1, gamma = 0.1, T = 300, m = 32, sigma = 0.1, K = 101,
  reg = nil, eta = nil,    -- derived, see above
  group_size = nil,        -- nil: prox.default_group_size(H)
  output = 'gradient', score = 'logit', chunk = 0, memory_budget = 0,
  accelerated = false, tol = 0, seed = 0,
}

--- The domain of every solver option (moreau.options). K <= T is checked
-- after the defaults are filled; gamma > 0 alone does not make the iteration
-- converge (README "Option domains": a diverging run raises).
prox.domains = {
  rho = 'num > 0', gamma = 'num > 0', T = 'int >= 1', m = 'int >= 0', sigma = 'num >= 0', K = 'int >= 1',
  reg = 'one of none, l1, group', eta = 'num >= 0', group_size = 'int >= 1', groups = 'table',
  output = 'one of gradient, delta', score = 'one of logit, log_softmax, softmax', chunk = 'int >= 0',
  accelerated = 'bool', tol = 'num >= 0', seed = 'seed', memory_budget = 'bytes',
}

local regs = { none = C.MR_REG_NONE, l1 = C.MR_REG_L1, group = C.MR_REG_GROUP }
local outputs = { gradient = C.MR_MG_GRADIENT, delta = C.MR_MG_DELTA }

--- Fills in the defaults, checks names and domains, derives reg, eta and K.
-- ARGS: opts, level (1: the caller), who (the owner named in errors; default
-- 'prox.solver'). RETURN: a new table of options.
function prox.solver_options(opts, level, who)
  level = (level or 1) + 1
  who = who or 'prox.solver'
  local defaults = { _extra = { eta = true, reg = true, group_size = true, groups = true }, _domains = prox.domains }
  for k, v in pairs(prox.defaults) do defaults[k] = v end
  local o = require('moreau.options').fill(who, defaults, opts, level)
  if o.reg == nil then
    local grouped = o.groups ~= nil or o.group_size ~= nil
    o.reg = (o.eta == nil or o.eta > 0) and grouped and 'group' or ((o.eta or 0) > 0 and 'l1' or 'none')
  end
  if o.eta == nil then o.eta = (o.reg == 'l1' and 5e-3) or (o.reg == 'group' and 5e-2) or 0 end
  if o.reg == 'none' and o.eta > 0 then
    error(("%s: option 'eta' = %s has no effect with reg = 'none' (use reg = 'l1' or 'group', or eta = 0)")
      :format(who, require('moreau.options').show(o.eta)), level)
  end
  if opts == nil or opts.K == nil then o.K = math.min(o.K, o.T) end
  if o.K > o.T then
    error(("%s: option 'K' must be an integer in [1, T = %d], got %d"):format(who, o.T, o.K), level)
  end
  return o
end

local Solver = {}
Solver.__index = Solver
prox.Solver = Solver

--- A Moreau solver for the batch x with one class per item. Each item's noise
-- is keyed by the item (its content, or its id), and each item stops on its
-- own tolerance, so its map does not depend on the rest of the batch
-- (docs/determinism.md). chunk = 0 sizes the network batch from memory_budget.
-- ARGS: net, x (N, C, H, W), labels, opts (see prox.defaults), ids (optional:
-- a Lua array of N ids as methods.item_keys takes, or a uint64_t[N] of keys)
-- RETURN: a Solver; nothing runs until step or run.
function prox.solver(net, x, labels, opts, ids)
  local o = prox.solver_options(opts, 2)
  if not T.is(x) then error('moreau solver: x must be a tensor', 2) end
  local N = core.size(x, 1)
  local co = ffi.new('mr_moreau_opts')
  co.rho, co.eta, co.gamma, co.sigma, co.tol = o.rho, o.eta, o.gamma, o.sigma, o.tol
  co.T, co.m, co.K = o.T, o.m, o.K
  co.reg, co.output = regs[o.reg], outputs[o.output]
  co.score_kind = oracle.score_kind(o.score)
  co.chunk, co.accelerated, co.seed = o.chunk, o.accelerated and 1 or 0, o.seed
  local groups = o.groups
  if o.reg == 'group' and not groups then
    local s = core.shape(x)
    if #s ~= 4 then error('moreau solver: group-sparse needs (N, C, H, W) inputs or opts.groups', 2) end
    o.group_size = o.group_size or prox.default_group_size(s[3])
    groups = prox.blocks(s[2], s[3], s[4], o.group_size)
  end
  local lab = core.labels(labels, N)
  local keys = ids
  if type(ids) == 'table' then
    keys = require('moreau.methods.common').keys(x, ids, 'moreau solver', 3)
  elseif ids ~= nil and not (type(ids) == 'cdata' and not ffi.istype('uint64_t*', ids) and
      ffi.sizeof(ids) == 8 * N and ffi.istype('uint64_t', ids[0])) then
    -- a cdata is accepted only as a uint64_t[N] array (the size is checked: the engine reads N keys)
    error(('moreau solver: ids must be a Lua array of %d ids (one per item) or a uint64_t[%d], got %s'):format(N,
      N, type(ids) == 'cdata' and tostring(ffi.typeof(ids)) or type(ids)), 2)
  end
  co.keys, co.memory_budget = keys, o.memory_budget
  local out = ffi.new('mr_moreau*[1]')
  check(C.mr_moreau_new(out, handle(net), handle(x), lab, co, groups and handle(groups) or nil))
  -- The C solver borrows net, x, labels, keys and groups: moreau.core keeps them
  -- alive with the solver (privately: the public fields are for reading).
  local solver = core.attach(setmetatable({ net = net, x = x, groups = groups, opts = o, N = N, done = false },
    Solver), ffi.gc(out[0], C.mr_moreau_free), { net = net, x = x, groups = groups, labels = lab, keys = keys })
  core.pin(x, solver, 'a moreau solver (prox.solver)') -- x:free() waits for the solver
  return solver
end

--- One iteration. RETURN: true when T is reached or every item converged.
function Solver:step()
  local rc = check(C.mr_moreau_step(handle(self)))
  self.done = rc == 1
  return self.done
end

--- Iterates to the end. opts.callback(solver, t) runs after every iteration
-- (the loop then runs in Lua); return false from it to stop early.
function Solver:run(opts)
  local cb = opts and opts.callback
  if not cb then
    check(C.mr_moreau_run(handle(self)))
    self.done = true
    return self
  end
  while not self.done do
    self:step()
    if cb(self, self:stats(1).iter) == false then break end
  end
  return self
end

local clone_buf = ffi.new('mr_tensor*[1]')

--- A new tensor holding a copy of a borrowed one.
local function view_copy(ptr)
  check(C.mr_tensor_clone(clone_buf, ptr), 3)
  return T.wrap(clone_buf[0])
end

--- A copy of the current iterate δ_t.
function Solver:delta() return view_copy(C.mr_moreau_delta_get(handle(self))) end
--- A copy of the last gradient g_t.
function Solver:grad() return view_copy(C.mr_moreau_grad_get(handle(self))) end

--- Statistics of item n (1-based): iter, converged, score, objective,
-- grad_norm, delta_norm, step_norm, sparsity. An n that is not an integer in
-- 1..N raises "moreau solver:stats: item N outside 1..M".
function Solver:stats(n)
  n = n or 1
  if type(n) ~= 'number' or n ~= math.floor(n) or n < 1 or n > self.N then
    error(('moreau solver:stats: item %s outside 1..%d'):format(require('moreau.options').show(n), self.N), 2)
  end
  local st = ffi.new('mr_moreau_stats')
  check(C.mr_moreau_stats_get(handle(self), n - 1, st))
  return {
    iter = st.iter, converged = st.converged == 1, score = st.score, objective = st.objective,
    grad_norm = st.grad_norm, delta_norm = st.delta_norm, step_norm = st.step_norm,
    sparsity = st.sparsity,
  }
end

--- Changes rho, eta or gamma between iterations (domains as prox.domains).
function Solver:set(knobs)
  for k, v in pairs(knobs) do
    if k ~= 'rho' and k ~= 'eta' and k ~= 'gamma' then
      error("solver:set: only rho, eta and gamma can change, not '" .. tostring(k) .. "'", 2)
    end
    require('moreau.options').check('solver:set', k, v, prox.domains[k], 2)
  end
  local o = self.opts
  local rho, eta, gamma = knobs.rho or o.rho, knobs.eta or o.eta, knobs.gamma or o.gamma
  check(C.mr_moreau_set(handle(self), rho, eta, gamma))
  o.rho, o.eta, o.gamma = rho, eta, gamma
  return self
end

--- The map: −mean(tail δ)/ρ (output 'gradient') or the tail mean ('delta').
function Solver:result()
  local out = T.zeros(core.shape(self.x))
  check(C.mr_moreau_result(handle(self), handle(out)))
  return out
end

function Solver:__tostring()
  local s = self:stats(1)
  return ('moreau solver: %d items, iteration %d/%d, reg %s, rho %g, eta %g, gamma %g\n' ..
    '  item 1: objective %.6g  score %.6g  |grad| %.4g  |delta| %.4g  sparsity %.3f'):format(
    self.N, s.iter, self.opts.T, self.opts.reg, self.opts.rho, self.opts.eta, self.opts.gamma,
    s.objective, s.score, s.grad_norm, s.delta_norm, s.sparsity)
end

return prox
