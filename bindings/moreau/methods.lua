--- moreau.methods — interpretation methods, all with one calling convention.
--
--   local m = methods.moreaugrad { rho = 1, eta = 5e-3, reg = 'l1' }
--   local maps = m:explain(net, x, labels)      -- a tensor shaped like x
--   print(m.name, m.opts.seed)                  -- every option in force, defaults included
--
-- One file per method under moreau/methods/ (as torch/optim keeps one
-- algorithm per file), each with its defaults, explain and explain_vjp, and
-- the math it computes; moreau/methods/common.lua holds what they share.
-- This module assembles the registry. Methods (docs/methods.md pins the math):
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
local bit = require 'bit'
local core = require 'moreau.core'
local T = require 'moreau.tensor'
local oracle = require 'moreau.oracle'
local options = require 'moreau.options'
local common = require 'moreau.methods.common'
local C = core.C

local methods = {}

--- The method files (moreau/methods/<name>.lua), in the order of methods.list.
methods.files = { 'deeplift', 'gradient', 'input_x_gradient', 'integrated_gradients', 'moreaugrad',
  'smoothgrad', 'sparsified_smoothgrad' }

local impls = {}
for _, name in ipairs(methods.files) do
  local impl = require('moreau.methods.' .. name)
  impls[name] = impl
  -- The constructor: options filled from the file's defaults and checked
  -- against their domains, then the file's own checks (configure).
  methods[name] = function(opts)
    local o = options.fill('methods.' .. name, impl.defaults, opts, 2)
    oracle.score_kind(o.score) -- raises on unknown scores
    local m = common.new(impl, o)
    if impl.configure then impl.configure(m) end
    return m
  end
end

--- The method file behind a method object or name (its defaults, explain,
-- explain_vjp, vjp_kind), or nil for an unknown name.
function methods.impl(m)
  return impls[type(m) == 'table' and m.name or m]
end

-- ------------------------------------------------- shared pieces, public

--- Checks that x is a batch of the network's inputs: (N, input shape...), the
-- batch dim first (README "The rules on hard cases"). Raises at `level`.
methods.check_input = common.check_input

--- Copies per forward pass (moreau.methods.common.chunk_size).
methods.chunk_size = common.chunk_size

--- Nodes and weights of integrated gradients' path integral (moreau.methods.common.ig_rule).
methods.ig_rule = common.ig_rule

--- The baseline tensor of IG / DeepLIFT (moreau.methods.common.baseline_of).
methods.baseline_of = common.baseline_of

--- The noise key of every item of x (docs/determinism.md): a Lua array of N
-- uint64_t cdata, ids[n] when ids are given, else the content key (FNV-1a 64
-- of the item's shape and float32 bytes, SplitMix64-mixed; moreau.h
-- mr_item_keys; not the label, so all classes of an image share its noise).
-- Pass them as explain's ids to give other inputs (an attacked copy) the same
-- noise. ARGS: x (N, ...), ids (optional).
function methods.item_keys(x, ids)
  if not T.is(x) then error('methods.item_keys: x must be a tensor', 2) end
  local keys = common.keys(x, ids, 'methods.item_keys', 3)
  local out = {}
  for n = 1, core.size(x, 1) do out[n] = keys[n - 1] end
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

--- The names of all methods, sorted.
function methods.list()
  local names = {}
  for i, name in ipairs(methods.files) do names[i] = name end
  table.sort(names)
  return names
end

--- A method by name (for recipes and the command line). Unknown names raise.
function methods.create(name, opts)
  if type(name) ~= 'string' or not impls[name] then
    error("methods: unknown method '" .. tostring(name) .. "' (" .. table.concat(methods.list(), ', ') .. ')', 2)
  end
  return methods[name](opts)
end

return methods
