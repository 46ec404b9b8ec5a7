--- moreau.oracle — class scores, input gradients and exact Hessian-vector
-- products of a network on whole batches (C underneath: engine/src/oracle.c).
--
--   local scores, grad = oracle.grad(net, x, labels)        -- f_c(x) per item, ∇x f_c(x)
--   local hv = oracle.hvp(net, x, labels, v)                -- ∇²x f_c(x)·v, exact
--
-- labels: a Lua array of 0-based class ids, one per batch item (or a number,
-- used for every item). opts.score: 'logit' (default, as the paper's code),
-- 'log_softmax' or 'softmax'. Both evaluate the inference-mode network
-- (running statistics, no dropout) whatever net:train()/eval() says, and change
-- no parameter or buffer (README, "Training mode").
local ffi = require 'ffi'
local core = require 'moreau.core'
local T = require 'moreau.tensor'
local C, check = core.C, core.check

local oracle = {}

local score_kinds = { logit = C.MR_SCORE_LOGIT, log_softmax = C.MR_SCORE_LOG_SOFTMAX,
  softmax = C.MR_SCORE_SOFTMAX }

--- The score kind constant for a name; raises on unknown names.
function oracle.score_kind(name)
  local k = score_kinds[name or 'logit']
  if not k then
    error("oracle: unknown score '" .. tostring(name) .. "' (logit, log_softmax or softmax)", 3)
  end
  return k
end

local INT32_MAX = 2 ^ 31 - 1

-- c when it is a class id the engine can hold (an integer in int32's range:
-- 2^32 would wrap to INT_MIN); else raises, naming labels[i] (or labels when
-- i is nil), at `level` (1: the caller of class_id).
local function class_id(c, i, who, level)
  if type(c) ~= 'number' or c ~= math.floor(c) or c - c ~= 0 then
    error(('%s: %s = %s is not an integer class id'):format(who, i and ('labels[%d]'):format(i) or 'labels',
      tostring(c)), level + 1)
  end
  if math.abs(c) > INT32_MAX then
    error(('%s: %s = %.0f is outside the int32 range of class ids'):format(who,
      i and ('labels[%d]'):format(i) or 'labels', c), level + 1)
  end
  return c
end

--- Labels as the engine takes them: one 0-based class id per batch item, as an
-- int32_t[N] cdata. The one home of this conversion (train.labels calls it).
-- ARGS: labels (a Lua array of N class ids, an int32_t cdata array of at
--   least N, or one number for every item), N (the batch size), into
--   (optional int32_t[>= N] to fill instead of a fresh array), who (the owner
--   named in errors, default 'oracle'), level (where errors point, 1: the
--   caller of oracle.labels; default 2, the caller's caller).
-- Errors: "WHO: K labels for a batch of N"; "WHO: labels[I] = V is not an
-- integer class id" (NaN, ±inf and fractions too; "labels = V" for one
-- number); "WHO: labels[I] = V is outside the int32 range of class ids";
-- "WHO: labels must be a table of class ids, got TYPE". The range 0..K-1 is
-- checked by the engine, which knows K.
-- RETURN: the cdata (`into` when given).
function oracle.labels(labels, N, into, who, level)
  who, level = who or 'oracle', (level or 2) + 1
  local out = into or ffi.new('int32_t[?]', math.max(N, 1))
  if type(labels) == 'number' then
    class_id(labels, nil, who, level + 1)
    for i = 0, N - 1 do out[i] = labels end
  elseif type(labels) == 'table' then
    if #labels ~= N then
      error(('%s: %d labels for a batch of %d'):format(who, #labels, N), level)
    end
    for i = 0, N - 1 do out[i] = class_id(labels[i + 1], i + 1, who, level + 1) end
  elseif type(labels) == 'cdata' then
    if labels ~= out then for i = 0, N - 1 do out[i] = labels[i] end end
  else
    error(('%s: labels must be a table of class ids, got %s'):format(who, type(labels)), level)
  end
  return out
end

local function scores_table(buf, N)
  local s = {}
  for i = 0, N - 1 do s[i + 1] = tonumber(buf[i]) end
  return s
end

--- Scores and input gradients in one forward + reverse pass.
-- ARGS: net, x (N, ...), labels, opts {score = 'logit'}
-- RETURN: scores (Lua array of N numbers), grad (tensor shaped like x)
function oracle.grad(net, x, labels, opts)
  if not T.is(x) then error('oracle.grad: x must be a tensor', 2) end
  local N = x:size(1)
  local kind = oracle.score_kind(opts and opts.score)
  local lab = oracle.labels(labels, N)
  local scores = ffi.new('float[?]', N)
  local grad = T.zeros(x:shape())
  check(C.mr_oracle_grad(net.ptr, x.ptr, lab, kind, scores, grad.ptr))
  return scores_table(scores, N), grad
end

--- Exact Hessian-vector product by forward-over-reverse.
-- ARGS: net, x (N, ...), labels, v (like x), opts {score = 'logit'}
-- RETURN: hv (like x), scores, grad
function oracle.hvp(net, x, labels, v, opts)
  if not T.is(x) or not T.is(v) then error('oracle.hvp: x and v must be tensors', 2) end
  local N = x:size(1)
  local kind = oracle.score_kind(opts and opts.score)
  local lab = oracle.labels(labels, N)
  local scores = ffi.new('float[?]', N)
  local grad, hv = T.zeros(x:shape()), T.zeros(x:shape())
  check(C.mr_oracle_hvp(net.ptr, x.ptr, lab, kind, v.ptr, scores, grad.ptr, hv.ptr))
  return hv, scores_table(scores, N), grad
end

return oracle
