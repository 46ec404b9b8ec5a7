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
local ffi = require 'ffi'
local cjson = require 'cjson'
local moreau = require 'moreau'
local core = require 'moreau.core'
local T, models, C = moreau.tensor, moreau.models, core.C

local SIZE = 224

local function build(seed, weights)
  local net = models.efficientnet_b0 { image_size = SIZE, num_classes = 1000, seed = seed }
  if weights and weights ~= '' then models.load(net, weights) end
  return net
end

--- The Sparse MoreauGrad settings of the section `moreau` (docs/methods.md §7).
local function method(T_, m, seed)
  return moreau.methods.moreaugrad { reg = 'l1', rho = 1, gamma = 0.1, eta = 5e-3, sigma = 0.1,
    T = T_, m = m, K = math.min(101, T_), seed = seed }
end

--- The child: one explanation in this fresh process; prints "BENCH_JSON {...}".
local function child(o)
  moreau.set_num_threads(o.threads)
  moreau.set_precision(o.precision)
  local net = build(o.seed, o.weights)
  local x = B.read_f32(o.input, { 1, 3, SIZE, SIZE })
  local rss_before = B.proc_status('VmRSS')
  local t0 = B.now()
  local map = method(o.T, o.m, o.seed):explain(net, x, { o.label })
  local seconds = B.now() - t0
  local peak = B.proc_status('VmHWM')
  if o.out ~= '' then B.write_f32(o.out, map) end
  io.stdout:write('BENCH_JSON ', cjson.encode {
    seconds = seconds, peak_rss = peak, rss_before = rss_before, workspace = net:workspace_bytes(),
    threads = moreau.get_num_threads(),
  }, '\n')
end

local function engine_child(p)
  local cmd = table.concat({
    'LUA_PATH=' .. B.shell_quote(B.lua_path), B.shell_quote(B.luajit), B.shell_quote(B.here .. '/bench.lua'),
    '--child=imagenet', '--weights=' .. B.shell_quote(p.weights), '--input=' .. B.shell_quote(p.input),
    '--label=' .. p.label, '--T=' .. B.opts.imagenet_T, '--m=' .. B.opts.imagenet_m,
    '--threads=' .. B.opts.threads, '--seed=' .. B.opts.seed, '--out=' .. B.shell_quote(p.out_engine),
    '--precision=' .. B.opts.precision,
  }, ' ')
  return B.child_result(cmd)
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
  local x = T.randn({ N, 3, SIZE, SIZE }, { seed = o.seed, stream = N })
  local lab = ffi.new('int32_t[?]', N)
  for i = 0, N - 1 do lab[i] = i % 1000 end
  local scores = ffi.new('float[?]', N)
  local g = T.zeros(x:shape())
  B.progress('engine: efficientnet_b0 forward + input gradient, batch %d ...', N)
  local tg = B.time_median(function()
    core.check(C.mr_oracle_grad(core.handle(net), core.handle(x), lab, C.MR_SCORE_LOGIT, scores, core.handle(g)))
  end, o.repeats)
  B.progress('engine: %.0f ms', tg * 1e3)
  local ws = net:workspace_bytes()

  -- (b) one explanation: a random image, the class the net ranks first
  local p = { weights = weights, input = B.tmp .. '/efficientnet_x.f32',
    out_engine = B.tmp .. '/efficientnet_engine.f32', out_torch = B.tmp .. '/efficientnet_torch.f32' }
  local xe = T.randn({ 1, 3, SIZE, SIZE }, { seed = o.seed, stream = 7 })
  B.write_f32(p.input, xe)
  p.label = B.argmax(net:forward(xe))
  local nparams = net:num_params()
  -- the parent's workspace goes before the child runs (the machine's memory is shared)
  net, x, g = nil, nil, nil
  collectgarbage()
  collectgarbage()
  B.progress('engine: Sparse MoreauGrad on efficientnet_b0, T = %d, m = %d (a fresh process) ...', o.imagenet_T,
    o.imagenet_m)
  local e = engine_child(p)
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
  print(('  K = %d; each iteration is one forward + input gradient of the m noisy copies as one batch)'):format(
    math.min(101, o.imagenet_T)))
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
