--- moreau.methods.common — what every method file shares: the method object
-- (explain, explain_vjp, explain_abs_vjp), the checks at their entry, noise
-- keys, chunk sizes, the gradient and Hessian-vector product calls, and the
-- integrated-gradients path loop used by both its map and its VJP.
--
-- A method file (moreau.methods.<name>) returns a table:
--
--   name         the method's name (= the file's name)
--   doc          one line: what it computes and its source
--   defaults     option defaults with their `_domains` (moreau.options)
--   explain      function(self, net, x, lab, keys) -> map (a tensor like x)
--   explain_vjp  function(self, net, x, lab, u, keys) -> vjp, E[, extra],
--                or false where the map is not a derivative (deeplift)
--   vjp_kind     'exact' (the derivative of explain itself), 'surrogate'
--                (of a stated surrogate), nil without explain_vjp
--   models_abs   optional true: explain_vjp's surrogate models |E| already,
--                so explain_abs_vjp passes w through (moreaugrad)
--   configure    optional function(m): checks and derived options once the
--                options are filled (the method is refused when it raises)
--
-- lab is the int32_t[N] of core.labels, keys the uint64_t[N] of
-- common.keys. The entry (Method:explain, Method:explain_vjp) checks x once:
-- that it is a tensor, finite (the only scan of x for NaN and infinities in
-- Lua), and a batch of the network's inputs; then the labels and the ids.
local ffi = require 'ffi'
local core = require 'moreau.core'
local T = require 'moreau.tensor'
local oracle = require 'moreau.oracle'
local options = require 'moreau.options'
local C, check, handle = core.C, core.check, core.handle

--- The options several methods share (each method's `options` table names
-- those it takes). The REPL's `help(methods.<name>{})` prints these texts
-- too (moreau.repl reads them from here): this table is their one source.
-- @table common_options
-- @field score the class score explained: 'logit', 'log_softmax' or 'softmax'
-- of the logits (moreau.oracle)
-- @field chunk noisy copies per network batch (path points for
-- integrated_gradients); 0: as many as `memory_budget` allows. The map does
-- not depend on it
-- @field memory_budget bytes of workspace that chunk = 0 sizes the batch from
-- (0: the global budget of methods.set_memory_budget, 256 MiB unless set)
-- @field seed the noise seed; an image's noise also depends on its noise key
-- (its content, or the id given to explain: docs/determinism.md)
-- @field samples noisy copies averaged per image
-- @field sigma noise scale: the noise std is sigma·(max x − min x) per image
-- (0 for a constant image)
-- @field baseline the reference input x0: a number for every entry, or a
-- tensor shaped like x (0 is mean grey in normalized units, not black)

local common = {}

common.SCORE = 'one of logit, log_softmax, softmax'

local function sign(v) return (v > 0 and 1) or (v < 0 and -1) or 0 end
--- sign(v): 1, −1 or 0 (0 for 0 and NaN), of a Lua number.
common.sign = sign

-- ------------------------------------------------- input checks and keys

--- Checks that x is a batch of the network's inputs: (N, input shape...), the
-- batch dim first (README "The rules on hard cases"). Raises at `level`.
function common.check_input(who, net, x, level)
  local want, got = net:input_shape(), core.shape(x)
  local same = #got == #want + 1
  for i = 1, #want do same = same and got[i + 1] == want[i] end
  if not same then
    local hint = #got == #want and ('; add a batch dim, x:reshape{1, %s}'):format(table.concat(got, ', ')) or ''
    error(('%s: x has shape %s, the network takes (N, %s)%s'):format(who, table.concat(got, 'x'),
      table.concat(want, ', '), hint), level + 1)
  end
end

--- The N noise keys of a batch as a C array (uint64_t[N]) for the engine:
-- mr_item_keys over x and ids. ids: nil (content keys)
-- or a Lua array of N ids, each an integer in [0, 2^53) or a uint64_t cdata
-- (as methods.item_keys returns). Errors name the position and the problem,
-- raised at `level` as error() counts from here (3: the caller's caller).
function common.keys(x, ids, who, level)
  local N = core.size(x, 1)
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
  check(C.mr_item_keys(keys, handle(x), idp))
  return keys
end

--- The checks at the entry of explain and explain_vjp, in this order: x is a
-- tensor, x is finite (its one scan), x is a batch of the network's inputs.
-- who: 'name:explain' or 'name:explain_vjp'. Raises at the caller's caller.
local function check_x(who, net, x)
  if getmetatable(net) ~= require('moreau.nn').Net then
    error(('%s: net must be a moreau.nn network, got %s'):format(who, require('moreau.options').show(net)), 3)
  end
  if not T.is(x) then error(who .. ': x must be a tensor', 3) end
  if not x:isfinite() then error(who .. ': x contains NaN or infinite values', 3) end
  common.check_input(who, net, x, 3)
end

-- ------------------------------------------------------ oracle calls

--- g(x) = ∇f_c(x) for a batch of points. ARGS: net, x (k, ...), lab
-- (int32_t[k]), kind (MR_SCORE_*). RETURN: a tensor like x.
function common.grad(net, x, lab, kind)
  local g = T.zeros(core.shape(x))
  check(C.mr_oracle_grad(handle(net), handle(x), lab, kind, nil, handle(g)))
  return g
end

--- H(x) v and g(x) for a batch of points (moreau.oracle: forward-over-reverse).
-- ARGS: as common.grad, v (like x). RETURN: hv, g.
function common.hvp(net, x, lab, kind, v)
  local g, hv = T.zeros(core.shape(x)), T.zeros(core.shape(x))
  check(C.mr_oracle_hvp(handle(net), handle(x), lab, kind, handle(v), nil, handle(g), handle(hv)))
  return hv, g
end

--- The cotangent of explain_vjp: u itself, or u(E) when u is a function.
-- Raises (at the explain_vjp caller's level) unless it is a tensor like x.
function common.cotangent(u, E, name, x)
  local U = type(u) == 'function' and u(E) or u
  if not T.is(U) or not options.same_shape(U, x) then
    error(('%s:explain_vjp: the cotangent must be a tensor shaped like x (%s), got %s'):format(name,
      table.concat(core.shape(x), 'x'), options.show(U)), 3)
  end
  return U
end

--- x's shape with the batch dim set to k.
function common.batch_shape(x, k)
  local s = core.shape(x)
  s[1] = k
  return s
end

--- Copies per forward pass: o.chunk, or (0) the most that fit the budget,
-- with per_copy bytes the caller holds per copy beside the network's workspace
-- (tangents: Hessian-vector products need twice the buffers).
function common.chunk_size(net, o, copies, per_copy, tangents)
  if o.chunk > 0 then return math.min(o.chunk, copies) end
  local k = ffi.new('int64_t[1]')
  check(C.mr_auto_chunk(k, handle(net), copies, tangents and 1 or 0, per_copy, o.memory_budget or 0))
  return tonumber(k[0])
end

--- The baseline tensor of IG / DeepLIFT: o.baseline as a tensor like x (a
-- number fills one), checked by shape and for NaN/Inf. Raises at `level`.
function common.baseline_of(who, o, x, level)
  if not T.is(o.baseline) then return T.full(core.shape(x), o.baseline) end
  local b = options.check_shape(who, 'baseline', o.baseline, x, level + 1)
  if not b:isfinite() then error(who .. ': option \'baseline\' contains NaN or infinite values', level + 1) end
  return b
end

-- ------------------------------------------------ the integrated-gradients path

--- Nodes and weights of the path integral over [0, 1].
-- riemann_right: α_k = k/n, w = 1/n (the paper's eq. 3); trapezoid: α_k =
-- k/(n−1), half weights at the ends; gauss_legendre: Legendre roots mapped to [0, 1].
-- ARGS: rule, n (steps), level (of its errors as error() counts them here; default 3).
-- RETURN: alphas, weights (Lua arrays of n numbers).
function common.ig_rule(rule, n, level)
  level = level or 3
  local a, w = {}, {}
  if rule == 'riemann_right' then
    for k = 1, n do a[k], w[k] = k / n, 1 / n end
  elseif rule == 'trapezoid' then
    if n < 2 then
      error(("methods.integrated_gradients: option 'steps' must be an integer >= 2 with rule 'trapezoid', got %s")
        :format(tostring(n)), level)
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
      "' (riemann_right, gauss_legendre or trapezoid)", level)
  end
  return a, w
end

--- The points p_k = x0 + α_k (x − x0) of integrated gradients for every
-- (item, step), in this order (item-major), `chunk` per forward pass; the one
-- loop behind IG's explain and its explain_vjp, so both see the same points in
-- the same chunks. ARGS: net, x (N, ...), lab (int32_t[N]), o (the method's
-- options: rule, steps, baseline, chunk, memory_budget), per_copy (bytes the
-- caller holds per point), tangents (true for Hessian-vector products).
-- RETURN: a path table { N, d, steps, alphas, weights, x0, diff = x − x0 }
-- with path.chunks(fn): calls fn(xb, lb, k, p0) for each chunk of k points
-- starting at point p0 (xb: (k, ...) the points, lb: int32_t[k] labels), then
-- frees xb (the collector does not see its size; the budget counts it).
function common.ig_path(net, x, lab, o, per_copy, tangents)
  local alphas, weights = common.ig_rule(o.rule, o.steps)
  local N, d = core.size(x, 1), core.numel(x) / core.size(x, 1)
  local x0 = common.baseline_of('integrated_gradients', o, x, 4)
  local diff = x - x0
  local P = N * o.steps
  local chunk = common.chunk_size(net, o, P, per_copy, tangents)
  local path = { N = N, d = d, steps = o.steps, alphas = alphas, weights = weights, x0 = x0, diff = diff }
  function path.chunks(fn)
    for p0 = 0, P - 1, chunk do
      local k = math.min(chunk, P - p0)
      local xb = T.zeros(common.batch_shape(x, k))
      local lb = ffi.new('int32_t[?]', k)
      for q = 0, k - 1 do
        local n, step = math.floor((p0 + q) / o.steps), (p0 + q) % o.steps + 1
        -- x_q = x0_n + α_step · (x − x0)_n, in double, rounded once
        check(C.mr_tensor_copy_items(handle(xb), q, handle(x0), n, 1))
        check(C.mr_tensor_add_item_(handle(xb), q, handle(diff), n, alphas[step]))
        lb[q] = lab[n]
      end
      fn(xb, lb, k, p0)
      xb:free()
    end
  end
  --- dst[n] += c_step · src[q] for the k points of a chunk (dst: N items like
  -- x, src: the chunk's k points); c = weights by default, or coef(step).
  function path.accumulate(dst, src, k, p0, coef)
    for q = 0, k - 1 do
      local n, step = math.floor((p0 + q) / o.steps), (p0 + q) % o.steps + 1
      check(C.mr_tensor_add_item_(handle(dst), n, handle(src), q, coef and coef(step) or weights[step]))
    end
  end
  return path
end

-- ------------------------------------------------------ the method object

local Method = {}
Method.__index = Method
common.Method = Method

--- A method object: name, opts (every option in force), domains, doc.
-- ARGS: impl (a method file's table), opts (filled and checked).
function common.new(impl, opts)
  return setmetatable({ name = impl.name, opts = opts, domains = impl.defaults._domains, doc = impl.doc,
    _impl = impl }, Method)
end

--- The maps of every item of x. ARGS: net, x (N, ...), labels (0-based ids),
-- ids (optional: N noise keys, see methods.item_keys; default: the items'
-- content keys). RETURN: a tensor shaped like x.
function Method:explain(net, x, labels, ids)
  local who = self.name .. ':explain'
  check_x(who, net, x)
  local lab = core.labels(labels, core.size(x, 1))
  return self._impl.explain(self, net, x, lab, common.keys(x, ids, who, 3))
end

--- Σ u ⊙ ∂E/∂x (moreau.explain_vjp has the math of each method). ARGS: net,
-- x (N, ...), labels, u (tensor like x, or function E -> tensor), ids
-- (optional, as explain's: the noise keys).
-- RETURN: vjp (like x), E (the map), extra (moreaugrad).
function Method:explain_vjp(net, x, labels, u, ids)
  local f = self._impl.explain_vjp
  if not f then
    error(self.name .. ':explain_vjp: not available (' .. self.name .. ' is not gradient-based)', 2)
  end
  local who = self.name .. ':explain_vjp'
  check_x(who, net, x)
  local lab = core.labels(labels, core.size(x, 1))
  if u == nil then error(who .. ': u is missing', 2) end
  return f(self, net, x, lab, u, common.keys(x, ids, who, 3))
end

--- Σ w ⊙ ∂|E|/∂x: w ⊙ sign(E) fed to explain_vjp; where the method's VJP is
-- of a surrogate that already models |E| (models_abs: moreaugrad), w goes
-- through as it is. ARGS: as explain_vjp. RETURN: as explain_vjp.
function Method:explain_abs_vjp(net, x, labels, w, ids)
  if self._impl.models_abs then return self:explain_vjp(net, x, labels, w, ids) end
  return self:explain_vjp(net, x, labels, function(E)
    local W = type(w) == 'function' and w(E) or w
    if not T.is(W) or not options.same_shape(W, E) then
      error(('%s:explain_abs_vjp: w must be a tensor shaped like x (%s), got %s'):format(self.name,
        table.concat(core.shape(E), 'x'), options.show(W)), 4)
    end
    return W:clone():mul_(E:clone():sign_()) -- w ⊙ sign(E), sign(0) = 0
  end, ids)
end

function Method:__tostring() return options.describe(self.name, self.opts) end

return common
