--- moreau.methods — interpretation methods, one calling convention:
--
--   local m = methods.moreaugrad { rho = 1, eta = 5e-3, reg = 'l1' }
--   local maps = m:explain(net, x, labels)      -- a tensor shaped like x
--   print(m.name, m.opts.seed)                  -- every option in force, defaults included
--
-- Methods (docs/methods.md pins the math):
--   gradient               ∇f_c(x)
--   input_x_gradient       x ⊙ ∇f_c(x)
--   integrated_gradients   (x − x0) ⊙ Σ_k w_k ∇f_c(x0 + α_k (x − x0))   rule: riemann_right | gauss_legendre | trapezoid
--   smoothgrad             (1/t) Σ ∇f_c(x + z_i), z ~ N(0, (σ·range)²); variant: mean | square | vargrad
--                          (VarGrad (1/t) Σ (g_i − mean)² by Welford's update: never negative)
--   sparsified_smoothgrad  Levine et al. 2019: keep the top 10% of |g| (ties at the cut kept), 1 where
--                          |g| >= τ (its 1%-largest), |g|/τ below; average (τ = 0: kept entries are 1)
--   deeplift               Δx ⊙ multipliers, one exact rule per op (README "DeepLIFT's rules"); baseline x0 = 0
--   moreaugrad             −mean(tail δ)/ρ of the Moreau solver; reg: none | l1 | group; m = 0: unregularized
--
-- Each constructor takes a table of options; unknown names raise, and every
-- option is checked against its declared domain (moreau.options; the
-- `_domains` of each defaults table, README "Option domains"). Sampling
-- methods (and integrated_gradients) take `chunk` (most copies per forward
-- pass; 0, the default: as many as fit in `memory_budget` bytes, 0 meaning the
-- global budget of methods.set_memory_budget, 256 MiB unless set) and `seed`.
--
-- An item's map depends only on (its image, its label, the options, the seed):
-- its noise comes from a stream keyed by the item's content, or by the id the
-- caller gives as explain's fourth argument (docs/determinism.md), so batch
-- sizes, batch positions, chunking and processes change nothing.
--
-- Training mode: every method explains the model as it predicts, even after
-- net:train(): batchnorm uses its running statistics and dropout is off, and
-- no parameter or buffer (running_mean, running_var) is ever changed, so the
-- map equals the one computed after net:eval() bit for bit (README, "Training
-- mode"). The same holds for explain_vjp, the attacks and the metrics.
local ffi = require 'ffi'
local bit = require 'bit'
local core = require 'moreau.core'
local T = require 'moreau.tensor'
local oracle = require 'moreau.oracle'
local prox = require 'moreau.prox'
local C, check = core.C, core.check

local methods = {}

local Method = {}
Method.__index = Method

--- Declares a method: name, defaults, and explain(self, net, x, labels, lab).
local function define(name, defaults, explain, doc)
  methods[name] = function(opts)
    local o = require('moreau.options').fill('methods.' .. name, defaults, opts, 2)
    oracle.score_kind(o.score) -- raises on unknown scores
    return setmetatable({ name = name, opts = o, domains = defaults._domains, doc = doc, _explain = explain }, Method)
  end
end

--- The maps of every item of x. ARGS: net, x (N, ...), labels (0-based ids),
-- ids (optional: N noise keys, see methods.item_keys; default: the items'
-- content keys). RETURN: a tensor shaped like x.
function Method:explain(net, x, labels, ids)
  if not T.is(x) then error(self.name .. ':explain: x must be a tensor', 2) end
  if not x:isfinite() then error(self.name .. ':explain: x contains NaN or infinite values', 2) end
  methods.check_input(self.name .. ':explain', net, x, 2)
  local lab = oracle.labels(labels, x:size(1))
  return self:_explain(net, x, lab, methods.keys(x, ids, self.name .. ':explain', 3))
end

--- Checks that x is a batch of the network's inputs: (N, input shape...), the
-- batch dim first (README "The rules on hard cases"). Raises at `level`.
function methods.check_input(who, net, x, level)
  local want, got = net:input_shape(), x:shape()
  local same = #got == #want + 1
  for i = 1, #want do same = same and got[i + 1] == want[i] end
  if not same then
    local hint = #got == #want and ('; add a batch dim, x:reshape{1, %s}'):format(table.concat(got, ', ')) or ''
    error(('%s: x has shape %s, the network takes (N, %s)%s'):format(who, table.concat(got, 'x'),
      table.concat(want, ', '), hint), level + 1)
  end
end

-- ------------------------------------------------- noise keys and memory

--- The N noise keys of a batch as a C array (uint64_t[N]) for the engine:
-- mr_item_keys over x and ids. ids: nil (content keys)
-- or a Lua array of N ids, each an integer in [0, 2^53) or a uint64_t cdata
-- (as methods.item_keys returns). Errors name the position and the problem,
-- raised at `level` as error() counts from here (3: the caller's caller).
function methods.keys(x, ids, who, level)
  local N = x:size(1)
  local idp
  if ids ~= nil then
    if type(ids) ~= 'table' or #ids ~= N then
      error(('%s: ids must be a Lua array of %d ids (one per item), got %s'):format(who, N,
        type(ids) == 'table' and #ids .. ' entries' or type(ids)), level)
    end
    idp = ffi.new('uint64_t[?]', N)
    for n = 1, N do
      local v = ids[n]
      if type(v) == 'number' and v == math.floor(v) and v >= 0 and v < 2 ^ 53 then
        idp[n - 1] = v
      elseif type(v) == 'cdata' and ffi.istype('uint64_t', v) then
        idp[n - 1] = v
      else
        error(('%s: ids[%d] = %s is not an integer in [0, 2^53) or a uint64_t'):format(who, n, tostring(v)),
          level)
      end
    end
  end
  local keys = ffi.new('uint64_t[?]', N)
  check(C.mr_item_keys(keys, x.ptr, idp))
  return keys
end

--- The noise key of every item of x (docs/determinism.md): a Lua array of N
-- uint64_t cdata, ids[n] when ids are given, else the content key (FNV-1a 64
-- of the item's shape and float32 bytes, SplitMix64-mixed; moreau.h
-- mr_item_keys; not the label, so all classes of an image share its noise).
-- Pass them as explain's ids to give other inputs (an attacked copy) the same
-- noise. ARGS: x (N, ...), ids (optional).
function methods.item_keys(x, ids)
  if not T.is(x) then error('methods.item_keys: x must be a tensor', 2) end
  local keys = methods.keys(x, ids, 'methods.item_keys', 3)
  local out = {}
  for n = 1, x:size(1) do out[n] = keys[n - 1] end
  return out
end

--- The random streams of perturbations that are not a method's own noise
-- (attacks' Gaussian draws and random starts, the robustness metrics'
-- samples): one per item, keyed like the methods' noise by the item itself
-- (its content key, methods.item_keys) so an item's perturbations do not
-- depend on its batch, but on a stream of their own: the key XOR a fixed
-- 64-bit tag (the golden-ratio constant 0x9E3779B97F4A7C15), so they never
-- replay the method's noise drawn from the same seed. ARGS: x (N, ...).
-- RETURN: Lua array of N uint64_t streams (docs/determinism.md).
function methods.perturbation_streams(x)
  local keys = methods.item_keys(x)
  for n = 1, #keys do keys[n] = bit.bxor(keys[n], 0x9E3779B97F4A7C15ULL) end
  return keys
end

--- Sets the memory budget (bytes) of chunk = 0 for every method in the
-- process; nil or 0 restores the default (256 MiB). RETURN: the budget in force.
function methods.set_memory_budget(bytes)
  if bytes ~= nil and (type(bytes) ~= 'number' or not (bytes >= 0 and bytes < 2 ^ 62) or bytes ~= math.floor(bytes)) then
    error('methods.set_memory_budget: bytes must be an integer in [0, 2^62), got ' .. tostring(bytes), 2)
  end
  C.mr_set_memory_budget(bytes or 0)
  return methods.memory_budget()
end

--- The memory budget in force (bytes).
function methods.memory_budget() return tonumber(C.mr_get_memory_budget()) end

--- Copies per forward pass: o.chunk, or (0) the most that fit the budget,
-- with per_copy bytes the caller holds per copy beside the network's workspace
-- (tangents: Hessian-vector products need twice the buffers).
function methods.chunk_size(net, o, copies, per_copy, tangents)
  if o.chunk > 0 then return math.min(o.chunk, copies) end
  local k = ffi.new('int64_t[1]')
  check(C.mr_auto_chunk(k, net.ptr, copies, tangents and 1 or 0, per_copy, o.memory_budget or 0))
  return tonumber(k[0])
end

function Method:__tostring()
  local keys = {}
  for k in pairs(self.opts) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = k .. '=' .. tostring(self.opts[k]) end
  return self.name .. '{' .. table.concat(parts, ', ') .. '}'
end

local function grad(net, x, lab, score)
  local g = T.zeros(x:shape())
  check(C.mr_oracle_grad(net.ptr, x.ptr, lab, oracle.score_kind(score), nil, g.ptr))
  return g
end

-- ------------------------------------------------------------- gradient

local SCORE = 'one of logit, log_softmax, softmax'

define('gradient', { score = 'logit', _domains = { score = SCORE } }, function(self, net, x, lab)
  return grad(net, x, lab, self.opts.score)
end, 'simple gradient ∇f_c(x) (Simonyan et al. 2014)')

define('input_x_gradient', { score = 'logit', _domains = { score = SCORE } }, function(self, net, x, lab)
  return grad(net, x, lab, self.opts.score):mul_(x)
end, 'input times gradient x ⊙ ∇f_c(x)')

-- ------------------------------------------------- integrated gradients

--- Nodes and weights of the path integral over [0, 1].
-- riemann_right: α_k = k/n, w = 1/n (the paper's eq. 3); trapezoid: α_k =
-- k/(n−1), half weights at the ends; gauss_legendre: Legendre roots mapped to [0, 1].
function methods.ig_rule(rule, n)
  local a, w = {}, {}
  if rule == 'riemann_right' then
    for k = 1, n do a[k], w[k] = k / n, 1 / n end
  elseif rule == 'trapezoid' then
    if n < 2 then
      error(("methods.integrated_gradients: option 'steps' must be an integer >= 2 with rule 'trapezoid', got %s")
        :format(tostring(n)), 3)
    end
    for k = 1, n do
      a[k] = (k - 1) / (n - 1)
      w[k] = (k == 1 or k == n) and 0.5 / (n - 1) or 1 / (n - 1)
    end
  elseif rule == 'gauss_legendre' then
    -- Newton's iteration on P_n from the Chebyshev guesses; P_n by the three-term recurrence.
    for k = 1, n do
      local t = math.cos(math.pi * (k - 0.25) / (n + 0.5))
      local dp
      for _ = 1, 100 do
        local p0, p1 = 1, t
        for j = 2, n do p0, p1 = p1, ((2 * j - 1) * t * p1 - (j - 1) * p0) / j end
        dp = n * (t * p1 - p0) / (t * t - 1)
        local dt = p1 / dp
        t = t - dt
        if math.abs(dt) < 1e-15 then break end
      end
      a[k] = (1 - t) / 2 -- t descends with k: nodes ascend in [0, 1]
      w[k] = 1 / ((1 - t * t) * dp * dp)
    end
  else
    error("integrated_gradients: unknown rule '" .. tostring(rule) ..
      "' (riemann_right, gauss_legendre or trapezoid)", 3)
  end
  return a, w
end

--- The baseline as a tensor: a number fills x's shape; a tensor must have x's
-- shape exactly (not only its element count).
--- The baseline tensor of IG / DeepLIFT: o.baseline as a tensor like x (a
-- number fills one), checked by shape and for NaN/Inf. Raises at `level`.
function methods.baseline_of(who, o, x, level)
  if not T.is(o.baseline) then return T.full(x:shape(), o.baseline) end
  local b = require('moreau.options').check_shape(who, 'baseline', o.baseline, x, level + 1)
  if not b:isfinite() then error(who .. ': option \'baseline\' contains NaN or infinite values', level + 1) end
  return b
end

-- steps >= 1 (>= 2 for trapezoid: checked by ig_rule when the method is made).
define('integrated_gradients', { steps = 50, rule = 'riemann_right', baseline = 0, chunk = 0,
  memory_budget = 0, score = 'logit', _domains = { steps = 'int >= 1',
    rule = 'one of riemann_right, gauss_legendre, trapezoid', baseline = 'tensor or num', chunk = 'int >= 0',
    memory_budget = 'bytes', score = SCORE } }, function(self, net, x, lab)
  local o = self.opts
  local alphas, weights = methods.ig_rule(o.rule, o.steps)
  local N, d = x:size(1), x:numel() / x:size(1)
  local x0 = methods.baseline_of('integrated_gradients', o, x, 3)
  local diff = x - x0
  local total = T.zeros(x:shape())
  -- All (item, step) points in order, `chunk` per forward pass (xb and g: 2 d floats per point).
  local chunk = methods.chunk_size(net, o, N * o.steps, 8 * d + 4)
  local P = N * o.steps
  for p0 = 0, P - 1, chunk do
    local k = math.min(chunk, P - p0)
    local s = x:shape()
    s[1] = k
    local xb = T.zeros(s)
    local lb = ffi.new('int32_t[?]', k)
    for q = 0, k - 1 do
      local n, step = math.floor((p0 + q) / o.steps), (p0 + q) % o.steps + 1
      local dst, a = xb:data() + q * d, alphas[step]
      local px0, pd = x0:data() + n * d, diff:data() + n * d
      for j = 0, d - 1 do dst[j] = px0[j] + a * pd[j] end
      lb[q] = lab[n]
    end
    local g = grad(net, xb, lb, o.score)
    for q = 0, k - 1 do
      local n, step = math.floor((p0 + q) / o.steps), (p0 + q) % o.steps + 1
      local dst, src, w = total:data() + n * d, g:data() + q * d, weights[step]
      for j = 0, d - 1 do dst[j] = dst[j] + w * src[j] end
    end
    -- freed now: the collector does not see their size, and the budget counts them
    xb:free()
    g:free()
  end
  return total:mul_(diff)
end, 'integrated gradients (Sundararajan et al. 2017), zero baseline')

-- ------------------------------------------------------------ SmoothGrad

local sg_modes = { mean = C.MR_SG_MEAN, square = C.MR_SG_SQUARE, vargrad = C.MR_SG_VAR }

local function smoothgrad(net, x, lab, o, mode, keys)
  local so = ffi.new('mr_smoothgrad_opts')
  so.samples, so.chunk, so.mode = o.samples, o.chunk, mode
  so.score_kind, so.sigma, so.seed = oracle.score_kind(o.score), o.sigma, o.seed
  so.clip_frac, so.keep_frac = o.clip or 0, o.keep or 0
  so.keys, so.memory_budget = keys, o.memory_budget
  local out = T.zeros(x:shape())
  check(C.mr_smoothgrad(out.ptr, net.ptr, x.ptr, lab, so))
  return out
end
methods._smoothgrad = smoothgrad -- explain_vjp takes its map E from here

-- sigma >= 0: sigma = 0 is the plain gradient (every noisy copy is x).
define('smoothgrad', { samples = 50, sigma = 0.15, variant = 'mean', chunk = 0, memory_budget = 0, seed = 0,
  score = 'logit', _domains = { samples = 'int >= 1', sigma = 'num >= 0', variant = 'one of mean, square, vargrad',
    chunk = 'int >= 0', memory_budget = 'bytes', seed = 'seed', score = SCORE } }, function(self, net, x, lab, keys)
  local mode = sg_modes[self.opts.variant]
  if not mode then
    error("smoothgrad: unknown variant '" .. tostring(self.opts.variant) .. "' (mean, square or vargrad)", 3)
  end
  return smoothgrad(net, x, lab, self.opts, mode, keys)
end, 'SmoothGrad (Smilkov et al. 2017): noise std sigma·(max x − min x), 0 for a constant image; VarGrad by Welford')

define('sparsified_smoothgrad', { samples = 256, sigma = 0.1, clip = 0.01, keep = 0.1, chunk = 0,
  memory_budget = 0, seed = 0, score = 'logit', _domains = { samples = 'int >= 1', sigma = 'num >= 0',
    clip = 'num in (0, 1]', keep = 'num in (0, 1]', chunk = 'int >= 0', memory_budget = 'bytes', seed = 'seed',
    score = SCORE } }, function(self, net, x, lab, keys)
  return smoothgrad(net, x, lab, self.opts, C.MR_SG_SPARSIFIED, keys)
end, 'Sparsified SmoothGrad (Levine et al. 2019): kept entries at or above tau count 1, so tau = 0 keeps them')

-- -------------------------------------------------------------- DeepLIFT

define('deeplift', { baseline = 0, score = 'logit', _domains = { baseline = 'tensor or num', score = SCORE } },
  function(self, net, x, lab)
  if self.opts.score ~= 'logit' then error('deeplift: only the logit score is supported', 3) end
  local out = T.zeros(x:shape())
  local base = nil
  if T.is(self.opts.baseline) or self.opts.baseline ~= 0 then
    base = methods.baseline_of('deeplift', self.opts, x, 3)
  end
  check(C.mr_deeplift(out.ptr, net.ptr, x.ptr, base and base.ptr or nil, lab))
  return out
end, 'DeepLIFT (Shrikumar et al. 2017): linear, rescale, max-pool and product rules; complete')

-- ------------------------------------------------------------ MoreauGrad

local mg_defaults = {}
for k, v in pairs(prox.defaults) do mg_defaults[k] = v end
mg_defaults.K = nil -- derived: min(101, T) unless given
mg_defaults._extra = { eta = true, reg = true, group_size = true, groups = true, K = true }
mg_defaults._domains = prox.domains

define('moreaugrad', mg_defaults, function(self, net, x, lab, keys)
  local s = prox.solver(net, x, lab, self.opts, keys)
  self.opts.group_size = s.opts.group_size -- derived from H when group-sparse and not given
  s:run()
  self.last_solver = s
  return s:result()
end, 'MoreauGrad (Zhang & Farnia 2023): gradient of the Moreau envelope; sparse with reg = l1, group-sparse with reg = group')

-- trapezoid needs steps >= 2: refused when the method is made, not when it runs.
do
  local make = methods.integrated_gradients
  methods.integrated_gradients = function(opts)
    local m = make(opts)
    methods.ig_rule(m.opts.rule, m.opts.steps)
    return m
  end
end

-- Record the derived defaults too: K = min(101, T), eta by regularizer.
do
  local make = methods.moreaugrad
  methods.moreaugrad = function(opts)
    local m = make(opts)
    local o = m.opts
    if o.K == nil then o.K = math.min(101, o.T) end
    local derived = prox.solver_options(o, 2, 'methods.moreaugrad')
    o.reg, o.eta = derived.reg, derived.eta
    return m
  end
end

-- Functions of this table that are not methods.
methods._helpers = { list = true, ig_rule = true, create = true, keys = true, item_keys = true,
  check_input = true, baseline_of = true,
  perturbation_streams = true,
  set_memory_budget = true, memory_budget = true, chunk_size = true, _smoothgrad = true }

--- The names of all methods, sorted.
function methods.list()
  local names = {}
  for k, v in pairs(methods) do
    if type(v) == 'function' and not methods._helpers[k] then names[#names + 1] = k end
  end
  table.sort(names)
  return names
end

--- A method by name (for recipes and the command line). Unknown names raise.
function methods.create(name, opts)
  local ctor = methods[name]
  if type(ctor) ~= 'function' or methods._helpers[name] then
    error("methods: unknown method '" .. tostring(name) .. "' (" .. table.concat(methods.list(), ', ') .. ')', 2)
  end
  return ctor(opts)
end

require('moreau.explain_vjp').install(methods)

return methods
