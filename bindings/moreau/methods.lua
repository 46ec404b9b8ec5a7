--- moreau.methods — interpretation methods, one calling convention:
--
--   local m = methods.moreaugrad { rho = 1, eta = 5e-3, reg = 'l1' }
--   local maps = m:explain(net, x, labels)      -- a tensor shaped like x
--   print(m.name, m.opts.seed)                  -- every option in force, defaults included
--
-- Methods (DESIGN §4 pins the math):
--   gradient               ∇f_c(x)
--   input_x_gradient       x ⊙ ∇f_c(x)
--   integrated_gradients   (x − x0) ⊙ Σ_k w_k ∇f_c(x0 + α_k (x − x0))   rule: riemann_right | gauss_legendre | trapezoid
--   smoothgrad             (1/t) Σ ∇f_c(x + z_i), z ~ N(0, (σ·range)²); variant: mean | square | vargrad
--   sparsified_smoothgrad  Levine et al. 2019: clip |g| at its 1%-largest τ, /τ, keep the top 10%, average
--   deeplift               Δx ⊙ multipliers, one exact rule per op (README "DeepLIFT's rules"); baseline x0 = 0
--   moreaugrad             −mean(tail δ)/ρ of the Moreau solver; reg: none | l1 | group; m = 0: unregularized
--
-- Each constructor takes a table of options; unknown names raise, and every
-- option is checked against its declared domain (moreau.options; the
-- `_domains` of each defaults table, README "Option domains"). Sampling
-- methods take `chunk` (most noisy copies per forward pass) and `seed`.
--
-- Training mode: every method explains the model as it predicts, even after
-- net:train(): batchnorm uses its running statistics and dropout is off, and
-- no parameter or buffer (running_mean, running_var) is ever changed, so the
-- map equals the one computed after net:eval() bit for bit (README, "Training
-- mode"). The same holds for explain_vjp, the attacks and the metrics.
local ffi = require 'ffi'
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

--- The maps of every item of x. ARGS: net, x (N, ...), labels (0-based ids).
-- RETURN: a tensor shaped like x.
function Method:explain(net, x, labels)
  if not T.is(x) then error(self.name .. ':explain: x must be a tensor', 2) end
  if not x:isfinite() then error(self.name .. ':explain: x contains NaN or infinite values', 2) end
  local lab = oracle.labels(labels, x:size(1))
  return self:_explain(net, x, lab)
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
local function baseline_of(who, o, x, level)
  if not T.is(o.baseline) then return T.full(x:shape(), o.baseline) end
  return require('moreau.options').check_shape(who, 'baseline', o.baseline, x, level + 1)
end

-- steps >= 1 (>= 2 for trapezoid: checked by ig_rule when the method is made).
define('integrated_gradients', { steps = 50, rule = 'riemann_right', baseline = 0, chunk = 0,
  score = 'logit', _domains = { steps = 'int >= 1', rule = 'one of riemann_right, gauss_legendre, trapezoid',
    baseline = 'tensor or num', chunk = 'int >= 0', score = SCORE } }, function(self, net, x, lab)
  local o = self.opts
  local alphas, weights = methods.ig_rule(o.rule, o.steps)
  local N, d = x:size(1), x:numel() / x:size(1)
  local x0 = baseline_of('integrated_gradients', o, x, 3)
  local diff = x - x0
  local total = T.zeros(x:shape())
  local chunk = o.chunk > 0 and o.chunk or N * o.steps
  -- All (item, step) points in order, `chunk` per forward pass.
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
  end
  return total:mul_(diff)
end, 'integrated gradients (Sundararajan et al. 2017), zero baseline')

-- ------------------------------------------------------------ SmoothGrad

local sg_modes = { mean = C.MR_SG_MEAN, square = C.MR_SG_SQUARE, vargrad = C.MR_SG_VAR }

local function smoothgrad(net, x, lab, o, mode)
  local so = ffi.new('mr_smoothgrad_opts')
  so.samples, so.chunk, so.mode = o.samples, o.chunk, mode
  so.score_kind, so.sigma, so.seed = oracle.score_kind(o.score), o.sigma, o.seed
  so.clip_frac, so.keep_frac = o.clip or 0, o.keep or 0
  local out = T.zeros(x:shape())
  check(C.mr_smoothgrad(out.ptr, net.ptr, x.ptr, lab, so))
  return out
end

-- sigma >= 0: sigma = 0 is the plain gradient (every noisy copy is x).
define('smoothgrad', { samples = 50, sigma = 0.15, variant = 'mean', chunk = 0, seed = 0,
  score = 'logit', _domains = { samples = 'int >= 1', sigma = 'num >= 0', variant = 'one of mean, square, vargrad',
    chunk = 'int >= 0', seed = 'seed', score = SCORE } }, function(self, net, x, lab)
  local mode = sg_modes[self.opts.variant]
  if not mode then
    error("smoothgrad: unknown variant '" .. tostring(self.opts.variant) .. "' (mean, square or vargrad)", 3)
  end
  return smoothgrad(net, x, lab, self.opts, mode)
end, 'SmoothGrad (Smilkov et al. 2017): noise std sigma·(max x − min x)')

define('sparsified_smoothgrad', { samples = 256, sigma = 0.1, clip = 0.01, keep = 0.1, chunk = 0,
  seed = 0, score = 'logit', _domains = { samples = 'int >= 1', sigma = 'num >= 0', clip = 'num in (0, 1]',
    keep = 'num in (0, 1]', chunk = 'int >= 0', seed = 'seed', score = SCORE } }, function(self, net, x, lab)
  return smoothgrad(net, x, lab, self.opts, C.MR_SG_SPARSIFIED)
end, 'Sparsified SmoothGrad (Levine et al. 2019)')

-- -------------------------------------------------------------- DeepLIFT

define('deeplift', { baseline = 0, score = 'logit', _domains = { baseline = 'tensor or num', score = SCORE } },
  function(self, net, x, lab)
  if self.opts.score ~= 'logit' then error('deeplift: only the logit score is supported', 3) end
  local out = T.zeros(x:shape())
  local base = nil
  if T.is(self.opts.baseline) or self.opts.baseline ~= 0 then
    base = baseline_of('deeplift', self.opts, x, 3)
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

define('moreaugrad', mg_defaults, function(self, net, x, lab)
  local s = prox.solver(net, x, lab, self.opts)
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

--- The names of all methods, sorted.
function methods.list()
  local names = {}
  for k, v in pairs(methods) do
    if type(v) == 'function' and k ~= 'list' and k ~= 'ig_rule' and k ~= 'create' then names[#names + 1] = k end
  end
  table.sort(names)
  return names
end

--- A method by name (for recipes and the command line). Unknown names raise.
function methods.create(name, opts)
  local ctor = methods[name]
  if type(ctor) ~= 'function' or name == 'list' or name == 'ig_rule' or name == 'create' then
    error("methods: unknown method '" .. tostring(name) .. "' (" .. table.concat(methods.list(), ', ') .. ')', 2)
  end
  return ctor(opts)
end

require('moreau.explain_vjp').install(methods)

return methods
