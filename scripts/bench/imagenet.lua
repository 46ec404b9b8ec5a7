--- scripts/bench/imagenet.lua — the section `imagenet`: efficientnet_b0 at
-- 224x224 (docs/models.md; the EfficientNet paper's own setting), random
-- weights, engine and PyTorch (torchvision's efficientnet_b0 with the
-- engine's weights loaded) side by side:
--   (a) forward + input gradient (the class logit's gradient with respect to
--       the input, no weight gradients) at --imagenet_batch, median of
--       --repeats after one warm-up call;
--   (b) one Sparse MoreauGrad explanation (docs/methods.md §7, the settings of
--       the section `moreau`) of one image, --imagenet_T iterations of
--       --imagenet_m noisy copies, in a fresh process (this file's `child`,
--       run as scripts/bench.lua --child=imagenet).
-- The weights are torchvision's own random initialization (written by
-- bench_torch.py efficientnet_init, loaded into both); without PyTorch the
-- engine's (PyTorch's per-layer default, under which the activations of
-- this deep net fade towards 0: the timings are the same, the maps say
-- little). The two models are checked to be the same network: equal
-- parameter counts, and the logits of a 2-image check batch through both.
local B = ...
local moreau = require 'moreau'
local T, models = moreau.tensor, moreau.models

local SIZE = 224

local function build(seed, weights)
  local net = models.efficientnet_b0 { image_size = SIZE, num_classes = 1000, seed = seed }
  if weights and weights ~= '' then models.load(net, weights) end
  return net
end

--- The child: one explanation in this fresh process; prints "BENCH_JSON {...}".
local function child(o)
  moreau.set_num_threads(o.threads)
  moreau.set_precision(o.precision)
  B.explain_child(o, build(o.seed, o.weights), { 1, 3, SIZE, SIZE })
end

local function max_abs(t)
  local m = 0
  for i = 0, t:numel() - 1 do m = math.max(m, math.abs(t:data()[i])) end
  return m
end

local function imagenet_section()
  local o = B.opts
  local weights = B.tmp .. '/efficientnet_b0.safetensors'
  local init
  if B.torch_info then
    B.progress('torch: torchvision efficientnet_b0 random weights ...')
    init = B.torch_run('efficientnet_init', { { 'out', weights }, { 'seed', o.seed } })
  end
  local net = build(o.seed, init and weights)
  if not init then models.save(net, weights) end
  local flops = net:flops()
  local xc = T.randn({ 2, 3, SIZE, SIZE }, { seed = o.seed, stream = 224 })
  B.write_f32(B.tmp .. '/efficientnet_check.f32', xc)
  local yc = net:forward(xc)

  -- (a) forward + input gradient at one batch
  local N = o.imagenet_batch
  local tg = B.time_input_grad(net, N, SIZE, 'efficientnet_b0')
  local ws = net:workspace_bytes()

  -- (b) one explanation: a random image, the class the net ranks first
  local p = { weights = weights, input = B.tmp .. '/efficientnet_x.f32',
    out_engine = B.tmp .. '/efficientnet_engine.f32', out_torch = B.tmp .. '/efficientnet_torch.f32' }
  local xe = T.randn({ 1, 3, SIZE, SIZE }, { seed = o.seed, stream = 7 })
  B.write_f32(p.input, xe)
  p.label = B.argmax(net:forward(xe))
  local nparams = net:num_params()
  -- the parent's workspace goes before the child runs (the machine's memory is shared)
  net = nil
  collectgarbage()
  collectgarbage()
  B.progress('engine: Sparse MoreauGrad on efficientnet_b0, T = %d, m = %d (a fresh process) ...', o.imagenet_T,
    o.imagenet_m)
  local e = B.imagenet_child('imagenet', p.weights, p)
  B.progress('engine: %.2f s', e.seconds)

  local tr, tm, parity, cos
  if B.torch_info then
    B.progress('torch: efficientnet_b0 forward + input gradient, batch %d ...', N)
    tr = B.torch_run('efficientnet_grad', { { 'threads', o.threads }, { 'repeats', o.repeats }, { 'batch', N },
      { 'weights', weights }, { 'check-input', B.tmp .. '/efficientnet_check.f32' }, { 'check-n', 2 } })
    B.progress('torch: %.0f ms', tr.grad_s * 1e3)
    parity = 0
    for i = 0, yc:numel() - 1 do parity = math.max(parity, math.abs(yc:data()[i] - tr.check_logits[i + 1])) end
    B.progress('torch: Sparse MoreauGrad on efficientnet_b0, T = %d, m = %d (a fresh process) ...', o.imagenet_T,
      o.imagenet_m)
    tm = B.torch_run('efficientnet_moreau', { { 'threads', o.threads }, { 'weights', weights },
      { 'input', p.input }, { 'label', p.label }, { 'T', o.imagenet_T }, { 'm', o.imagenet_m },
      { 'seed', o.seed }, { 'out', p.out_torch } })
    B.progress('torch: %.2f s', tm.seconds)
    cos = B.cosine(B.read_f32(p.out_engine, { 1, 3, SIZE, SIZE }), B.read_f32(p.out_torch, { 1, 3, SIZE, SIZE }))
  end

  print(('== imagenet: efficientnet_b0 (%s, 3x%dx%d, 1000 classes), %d threads'):format(
    init and 'torchvision\'s random initialization' or 'the engine\'s random initialization', SIZE, SIZE,
    o.threads))
  print(('  %s parameters; forward %.3f GFLOP per image (conv and linear multiply-adds x 2)'):format(
    tostring(nparams), flops / 1e9))
  local hdr = { 'case', 'engine' }
  if B.torch_info then
    for _, h in ipairs { 'torch', 'engine/torch' } do hdr[#hdr + 1] = h end
  end
  local rows = { hdr }
  local ra = { ('forward+input-grad, batch %d, median of %d'):format(N, o.repeats), B.fmt_s(tg) }
  local rb = { ('Sparse MoreauGrad, T = %d, m = %d, one image'):format(o.imagenet_T, o.imagenet_m),
    ('%.2f s'):format(e.seconds) }
  if B.torch_info then
    ra[#ra + 1] = B.fmt_s(tr.grad_s)
    ra[#ra + 1] = ('%.2fx'):format(tg / tr.grad_s)
    rb[#rb + 1] = ('%.2f s'):format(tm.seconds)
    rb[#rb + 1] = ('%.2fx'):format(e.seconds / tm.seconds)
  end
  rows[2], rows[3] = ra, rb
  B.print_table(rows)
  print(('  engine workspace after batch %d: %s; explanation peak resident set: engine %s%s'):format(N, B.mib(ws),
    B.mib(e.peak_rss), tm and (', torch ' .. B.mib(tm.peak_rss)) or ''))
  print('  (Sparse MoreauGrad: docs/methods.md §7, reg l1, rho 1, gamma 0.1, eta 5e-3, sigma 0.1,')
  print(('  K = %d; each iteration is one forward + input gradient of the m noisy copies: the engine sends them')
    :format(math.min(101, o.imagenet_T)))
  print(('  through in chunks that fit its memory budget (methods.memory_budget, %s), PyTorch all m at once)')
    :format(B.mib(e.budget)))
  if B.torch_info then
    print(('  torch: torchvision efficientnet_b0, %s parameters, the same weights;'):format(
      tostring(tr.num_params)))
    print(('  max |logit difference| on a check batch of 2 = %.2e (logits up to %.2e)'):format(parity, max_abs(yc)))
    print(('  explanation of class %d: cosine(engine map, torch map) = %s (different noise generators)'):format(
      p.label, cos == cos and ('%.3f'):format(cos) or 'n/a (an all-zero map)'))
    print('  engine/torch > 1: the engine takes longer')
  end
  print()
end

return { run = imagenet_section, child = child }
