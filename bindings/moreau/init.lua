--- moreau — explain image classifiers with MoreauGrad and its baselines.
--
--   local moreau = require 'moreau'
--   local net = moreau.models.resnet18_cifar{ num_classes = 10, activation = 'softplus' }
--   local scores, grad = moreau.oracle.grad(net, x, labels)
--
-- Submodules load on first use (moreau.tensor, moreau.nn, moreau.models,
-- moreau.data, moreau.oracle, moreau.prox, moreau.methods, moreau.attacks,
-- moreau.metrics, moreau.faithfulness, moreau.sanity, moreau.certify, moreau.store,
-- moreau.dataset, moreau.viz, moreau.report). No globals are set.
local core = require 'moreau.core'

local moreau = {
  version = core.version(),
}

-- An environment variable the engine reads must say something it understands.
if core.C.mr_adaptive_threads_env() < 0 then
  error(("moreau: MOREAU_ADAPTIVE_THREADS must be 0, off, false or no (a fixed team) or 1, on, true or yes " ..
    "(the default), got '%s'"):format(os.getenv('MOREAU_ADAPTIVE_THREADS')), 2)
end

--- The most threads the engine's loops and oneDNN use (OpenBLAS runs on one
-- thread inside them); n nil or 0: OMP_NUM_THREADS, else every core this
-- process may use (affinity mask, cgroup CPU quota). Results do not depend
-- on it (docs/determinism.md).
-- Errors: n not an integer in 0..4096 (0: the default).
function moreau.set_num_threads(n)
  n = n == nil and 0 or n
  if type(n) ~= 'number' or n ~= math.floor(n) or n < 0 or n > core.C.MR_MAX_THREADS then
    error(('moreau.set_num_threads: n must be an integer in 0..%d (0 or nil: the default), got %s'):format(
      core.C.MR_MAX_THREADS, require('moreau.options').show(n)), 2)
  end
  core.check(core.C.mr_set_num_threads(n))
end
--- The thread limit in force (moreau.set_num_threads): an integer in 1..4096.
function moreau.get_num_threads() return core.C.mr_get_num_threads() end
--- Adaptive team size, on by default: the engine uses fewer threads than
-- `get_num_threads()` while other processes keep cores busy, and all of them
-- again when the cores are free (looked at every 0.2 s from /proc/stat;
-- docs/architecture.md, "Threads"). Off (`false`), the team is always
-- `get_num_threads()`. MOREAU_ADAPTIVE_THREADS=0 (or off, false, no) turns
-- it off for a process; another value than those and 1, on, true, yes is an
-- error when moreau is loaded.
-- Timings only: results do not depend on the team size. Errors: `on` not a
-- boolean.
function moreau.set_adaptive_threads(on)
  if type(on) ~= 'boolean' then
    error('moreau.set_adaptive_threads: on must be true or false, got ' .. require('moreau.options').show(on), 2)
  end
  core.check(core.C.mr_set_adaptive_threads(on and 1 or 0))
end
--- Whether the adaptive team size is on (moreau.set_adaptive_threads): true or false.
function moreau.get_adaptive_threads() return core.C.mr_get_adaptive_threads() ~= 0 end
--- The team size in use now (1..get_num_threads()).
function moreau.get_threads_in_use() return core.C.mr_get_threads_in_use() end
--- The arithmetic of the convolutions, process-wide: 'fp32' (the default) or
-- 'bf16' (opt-in, for explanation passes). bf16 rounds each convolution's
-- inputs (activation or output gradient, and weight) to bfloat16 and
-- accumulates in float32 on oneDNN's AVX-512 BF16 / AMX kernels; everything
-- else stays float32. Maps then differ from fp32 ones: measured against
-- them, the shipped resnet_fmnist's Sparse MoreauGrad maps kept a cosine of
-- 0.9999 or more and 99% or more of their top-40% pixels on the test images
-- tried; its input gradients vary more from image to image: over the first
-- 200 test images a median cosine of 0.99968, a 5th percentile of 0.99271,
-- the worst 0.9752;
-- a whole explanation ran 1.3-1.7x faster on an AVX-512 BF16 CPU without AMX
-- (docs/promises.md, section 9, has the figures; `scripts/moreau bench
-- --only=precision` measures them). Thread-count and batch invariance still hold;
-- agreement with PyTorch's float32 to the tolerances of docs/promises.md does
-- not. Errors: an unknown name (the message names 'fp32' and 'bf16'); 'bf16'
-- where oneDNN dispatches no AVX-512 BF16 or AMX kernels (the message names
-- the instruction set it dispatches) or in a build without oneDNN; 'bf16'
-- while the conv backend is 'blas'.
function moreau.set_precision(name)
  if type(name) ~= 'string' then
    error(("moreau.set_precision: precision must be 'fp32' or 'bf16', got %s"):format(
      require('moreau.options').show(name)), 2)
  end
  core.check(core.C.mr_set_precision(name))
end
--- The arithmetic of the convolutions in force (moreau.set_precision): 'fp32' or 'bf16'.
function moreau.get_precision() return require('ffi').string(core.C.mr_get_precision()) end
--- Diagnostics: convolution passes oneDNN computed in bf16 (process-wide).
function moreau.conv_bf16_passes() return tonumber(core.C.mr_conv_bf16_passes()) end
local progress_modes = { off = 0, tty = 1, lines = 2 }
--- Progress lines of the long engine calls (the MoreauGrad solver per
-- iteration, SmoothGrad's copies) on stderr: 'off' (a library's default),
-- 'tty' (one line redrawn in place when stderr is a terminal, else nothing:
-- the moreau command and the REPL use it), 'lines' (a line at each tenth of
-- the work, for logs). RETURN: the previous mode's name.
-- Errors: a mode other than those three (the message names them).
function moreau.set_progress(mode)
  local m = progress_modes[mode]
  if not m then
    error(("moreau.set_progress: mode must be 'off', 'tty' or 'lines', got %s"):format(
      require('moreau.options').show(mode)), 2)
  end
  local old = core.check(core.C.mr_progress_set(m))
  for name, v in pairs(progress_modes) do if v == old then return name end end
end

--- One line naming the backends: BLAS and conv2d's kernels.
function moreau.backend_info() return require('ffi').string(core.C.mr_backend_info()) end
--- conv2d's kernels, process-wide: 'onednn' (the default when built with
-- libdnnl) or 'blas' (im2col + OpenBLAS). They agree to float32 rounding.
-- Errors: an unknown name; 'onednn' in a build without it.
function moreau.set_conv_backend(name) core.check(core.C.mr_set_conv_backend(name)) end
--- conv2d's kernels in use (moreau.set_conv_backend): 'onednn' or 'blas'.
function moreau.get_conv_backend() return require('ffi').string(core.C.mr_get_conv_backend()) end
--- Diagnostics: conv2d passes oneDNN computed, and passes it handed back to
-- im2col + OpenBLAS while it was the backend (process-wide counts).
function moreau.conv_backend_counts()
  local ffi = require 'ffi'
  local n = ffi.new('int64_t[2]')
  core.C.mr_conv_backend_counts(n, n + 1)
  return tonumber(n[0]), tonumber(n[1])
end

return setmetatable(moreau, {
  __index = function(t, name)
    local ok, mod = pcall(require, 'moreau.' .. name)
    if not ok then
      if tostring(mod):find("module 'moreau." .. name .. "' not found", 1, true) then
        error("moreau: no module '" .. tostring(name) .. "'", 2)
      end
      error(mod, 2)
    end
    rawset(t, name, mod)
    return mod
  end,
})
