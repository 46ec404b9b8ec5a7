--- scripts/bench/resnet50.lua — the section `resnet50`: torchvision's
-- resnet50 at 224x224 (1000 classes, random weights) read from ONNX by
-- moreau.models.onnx, next to PyTorch running the torchvision model:
--   0. bench_torch.py resnet50_export builds resnet50 from --seed
--      (torchvision's initialization, batchnorm statistics of one batch),
--      saves its weights and exports it to results/bench/resnet50_seedS.onnx
--      (eval mode: the exporter folds each batchnorm into its conv); the
--      engine loads that file and its logits on a check batch of 2 images
--      must match PyTorch's before anything is timed;
--   (a) forward + input gradient (the class logit's gradient with respect to
--       the input, no weight gradients) at --imagenet_batch, median of
--       --repeats after one warm-up call;
--   (b) one Sparse MoreauGrad explanation (docs/methods.md §7, the settings of
--       the section `moreau`) of one image, --imagenet_T iterations of
--       --imagenet_m noisy copies, in a fresh process on each side (this
--       file's `child`, run as scripts/bench.lua --child=resnet50).
-- The ONNX file and the weights (about 100 MB each) stay in results/bench/
-- (ignored by git) after the run. Needs PyTorch: without it the section says
-- so and measures nothing.
local B = ...
local moreau = require 'moreau'
local T, models = moreau.tensor, moreau.models

local SIZE = 224
-- The largest |engine logit - PyTorch logit| accepted, relative to the
-- largest |logit|: float32 through 53 convolutions, with batchnorm folded into the
-- convolutions on the engine's side and applied after them on PyTorch's,
-- differs by ~3e-5 (relative) on the seed-0 network; a different network
-- differs by O(1).
local PARITY_TOL = 1e-3

local function load(path) return models.onnx(path) end -- the default budget scales with the file

--- The child: one explanation in this fresh process; prints "BENCH_JSON {...}".
local function child(o)
  moreau.set_num_threads(o.threads)
  moreau.set_precision(o.precision)
  B.explain_child(o, load(o.weights), { 1, 3, SIZE, SIZE })
end

local function loadavg() return (B.read_all('cat /proc/loadavg 2>/dev/null'):match('^(%S+ %S+ %S+)')) or '?' end

local function resnet50_section()
  local o = B.opts
  if not B.torch_info then
    print('== resnet50: not run: PyTorch exports the model this section reads (torch: ' .. B.torch_why .. ')')
    print()
    return
  end
  local load_start = loadavg()
  -- the checkout's results/ (ignored by git), its path without the '..' of B.root
  local dir = B.read_all('cd ' .. B.shell_quote(B.root) .. ' && pwd -P'):gsub('%s+$', '') .. '/results/bench'
  if not os.execute('mkdir -p ' .. B.shell_quote(dir)) then error('bench: cannot create ' .. dir, 0) end
  local p = { onnx = ('%s/resnet50_seed%d.onnx'):format(dir, o.seed),
    weights = ('%s/resnet50_seed%d.safetensors'):format(dir, o.seed),
    input = B.tmp .. '/resnet50_x.f32', check = B.tmp .. '/resnet50_check.f32',
    out_engine = B.tmp .. '/resnet50_engine.f32', out_torch = B.tmp .. '/resnet50_torch.f32' }

  -- 0. the same network on both sides, checked before anything is timed
  local xc = T.randn({ 2, 3, SIZE, SIZE }, { seed = o.seed, stream = 224 })
  B.write_f32(p.check, xc)
  B.progress('torch: torchvision resnet50, random weights, exported to %s ...', p.onnx)
  local ex = B.torch_run('resnet50_export', { { 'out', p.onnx }, { 'weights', p.weights }, { 'seed', o.seed },
    { 'check-input', p.check }, { 'check-n', 2 } })
  local t0 = B.now()
  local net = load(p.onnx)
  local load_s = B.now() - t0
  local yc = net:forward(xc)
  local diff, top = 0, 0
  for i = 0, yc:numel() - 1 do
    diff = math.max(diff, math.abs(yc:data()[i] - ex.check_logits[i + 1]))
    top = math.max(top, math.abs(ex.check_logits[i + 1]))
  end
  if not (diff <= PARITY_TOL * top) then
    error(('bench: resnet50: the engine\'s logits of the check batch differ from PyTorch\'s by up to %.3e ' ..
      '(largest |logit| %.3e, tolerance %.0e of it): %s is not read as the network PyTorch exported; ' ..
      'nothing was timed'):format(diff, top, PARITY_TOL, p.onnx), 0)
  end

  -- (a) forward + input gradient at one batch
  local N = o.imagenet_batch
  local tg = B.time_input_grad(net, N, SIZE, 'resnet50')
  local ws = net:workspace_bytes()
  local nparams = net:num_params()

  -- (b) one explanation: a random image, the class the net ranks first
  local xe = T.randn({ 1, 3, SIZE, SIZE }, { seed = o.seed, stream = 7 })
  B.write_f32(p.input, xe)
  p.label = B.argmax(net:forward(xe))
  -- the parent's workspace goes before the children run (the machine's memory is shared)
  net = nil
  collectgarbage()
  collectgarbage()
  B.progress('engine: Sparse MoreauGrad on resnet50, T = %d, m = %d (a fresh process) ...', o.imagenet_T,
    o.imagenet_m)
  local e = B.imagenet_child('resnet50', p.onnx, p)
  B.progress('engine: %.2f s', e.seconds)

  B.progress('torch: resnet50 forward + input gradient, batch %d ...', N)
  local tr = B.torch_run('resnet50_grad', { { 'threads', o.threads }, { 'repeats', o.repeats }, { 'batch', N },
    { 'weights', p.weights } })
  B.progress('torch: %.0f ms', tr.grad_s * 1e3)
  B.progress('torch: Sparse MoreauGrad on resnet50, T = %d, m = %d (a fresh process) ...', o.imagenet_T,
    o.imagenet_m)
  local tm = B.torch_run('resnet50_moreau', { { 'threads', o.threads }, { 'weights', p.weights },
    { 'input', p.input }, { 'label', p.label }, { 'T', o.imagenet_T }, { 'm', o.imagenet_m },
    { 'seed', o.seed }, { 'out', p.out_torch } })
  B.progress('torch: %.2f s', tm.seconds)
  local cos = B.cosine(B.read_f32(p.out_engine, { 1, 3, SIZE, SIZE }), B.read_f32(p.out_torch, { 1, 3, SIZE, SIZE }))

  local gflop = B.GRAD_FACTOR * ex.flops * N / 1e9
  print(('== resnet50: torchvision resnet50 (random weights, seed %d, 3x%dx%d, 1000 classes) from ONNX, %d threads')
    :format(o.seed, SIZE, SIZE, o.threads))
  print(('  forward %.3f GFLOP per image (conv and linear multiply-adds x 2); forward + input gradient counted %dx')
    :format(ex.flops / 1e9, B.GRAD_FACTOR))
  B.print_table {
    { 'case', 'engine', 'torch', 'engine/torch' },
    { ('forward+input-grad, batch %d, median of %d'):format(N, o.repeats), B.fmt_s(tg), B.fmt_s(tr.grad_s),
      ('%.2fx'):format(tg / tr.grad_s) },
    { '  GFLOP/s', ('%.0f'):format(gflop / tg), ('%.0f'):format(gflop / tr.grad_s), '' },
    { ('Sparse MoreauGrad, T = %d, m = %d, one image'):format(o.imagenet_T, o.imagenet_m),
      ('%.2f s'):format(e.seconds), ('%.2f s'):format(tm.seconds), ('%.2fx'):format(e.seconds / tm.seconds) },
  }
  print(('  engine: %s parameters (batchnorm folded), loaded in %.2f s; workspace after batch %d: %s;')
    :format(tostring(nparams), load_s, N, B.mib(ws)))
  print(('  explanation peak resident set: engine %s, torch %s; the engine sends the m copies through in chunks')
    :format(B.mib(e.peak_rss), B.mib(tm.peak_rss)))
  print(('  that fit its memory budget (methods.memory_budget, %s: workspace %s), PyTorch all m at once')
    :format(B.mib(e.budget), B.mib(e.workspace)))
  print(('  torch: torchvision resnet50, %s parameters (batchnorm kept), the same weights;'):format(
    tostring(tr.num_params)))
  print(('  check batch of 2 before timing: max |logit difference| %.2e (largest |logit| %.2e)'):format(diff, top))
  print('  (Sparse MoreauGrad: docs/methods.md §7, reg l1, rho 1, gamma 0.1, eta 5e-3, sigma 0.1,')
  print(('  K = %d; each iteration is one forward + input gradient of the m noisy copies)'):format(
    math.min(101, o.imagenet_T)))
  print(('  explanation of class %d: cosine(engine map, torch map) = %s (different noise generators)'):format(
    p.label, cos == cos and ('%.3f'):format(cos) or 'n/a (an all-zero map)'))
  print(('  load average %s at the start of the section, %s at its end; engine/torch > 1: the engine takes longer')
    :format(load_start, loadavg()))
  print(('  model files kept: %s and its weights'):format(p.onnx))
  print()
end

return { run = resnet50_section, child = child }
