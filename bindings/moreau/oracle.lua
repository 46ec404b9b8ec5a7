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
local C, check, handle, labels_of = core.C, core.check, core.handle, core.labels

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
  local N = core.size(x, 1)
  local kind = oracle.score_kind(opts and opts.score)
  local lab = labels_of(labels, N)
  local scores = ffi.new('float[?]', N)
  local grad = T.zeros(core.shape(x))
  check(C.mr_oracle_grad(handle(net), handle(x), lab, kind, scores, handle(grad)))
  return scores_table(scores, N), grad
end

--- Exact Hessian-vector product by forward-over-reverse.
-- ARGS: net, x (N, ...), labels, v (like x), opts {score = 'logit'}
-- RETURN: hv (like x), scores, grad
function oracle.hvp(net, x, labels, v, opts)
  if not T.is(x) or not T.is(v) then error('oracle.hvp: x and v must be tensors', 2) end
  local N = core.size(x, 1)
  local kind = oracle.score_kind(opts and opts.score)
  local lab = labels_of(labels, N)
  local scores = ffi.new('float[?]', N)
  local grad, hv = T.zeros(core.shape(x)), T.zeros(core.shape(x))
  check(C.mr_oracle_hvp(handle(net), handle(x), lab, kind, handle(v), scores, handle(grad), handle(hv)))
  return hv, scores_table(scores, N), grad
end

return oracle
