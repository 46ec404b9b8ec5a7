--- scripts/bench/moreau.lua — the section `moreau`: one Sparse MoreauGrad
-- explanation per model in a fresh process (the child, this file's `child`,
-- run as scripts/bench.lua --child=moreau), its seconds and peak memory.
local B = ...
local moreau = require 'moreau'
local cjson = require 'cjson'
local T = moreau.tensor

--- Sparse MoreauGrad (docs/methods.md §7) on one image, in this fresh process; prints
-- one line "BENCH_JSON {...}" with seconds, peak and prior resident set, the
-- net's workspace bytes, and writes the map to B.opts.out.
local function child_moreau(o)
  moreau.set_num_threads(o.threads)
  moreau.set_precision(o.precision)
  local net = B.build_model(o.model, o, o.weights)
  local shape = net:input_shape()
  table.insert(shape, 1, 1)
  local x = B.read_f32(o.input, shape)
  local rss_before = B.proc_status('VmRSS')
  local t0 = B.now()
  local method = moreau.methods.moreaugrad { reg = 'l1', rho = 1, gamma = 0.1, eta = 5e-3, sigma = 0.1,
    T = o.T, m = o.m, K = math.min(101, o.T), seed = o.seed }
  local map = method:explain(net, x, { o.label })
  local seconds = B.now() - t0
  local peak = B.proc_status('VmHWM')
  if o.out ~= '' then B.write_f32(o.out, map) end
  -- the plain input gradient of the explained class too (the precision
  -- section compares it where the sparse map is all zeros), after the timing
  if o.grad_out ~= '' then B.write_f32(o.grad_out, select(2, moreau.oracle.grad(net, x, { o.label }))) end
  local zeros = 0
  for i = 0, map:numel() - 1 do if map:data()[i] == 0 then zeros = zeros + 1 end end
  local act, wts = B.activation_weight_bytes(net, math.max(o.m, 1))
  io.stdout:write('BENCH_JSON ', cjson.encode {
    seconds = seconds, peak_rss = peak, rss_before = rss_before, activations = act, weights = wts,
    workspace = net:workspace_bytes(), sparsity = zeros / map:numel(),
    T = o.T, m = o.m, K = method.opts.K, threads = moreau.get_num_threads(),
    precision = moreau.get_precision(), bf16_passes = moreau.conv_bf16_passes(),
    onednn_passes = (moreau.conv_backend_counts()),
  }, '\n')
end

--- Runs the child on prepared model p in precision `precision` (default
-- --precision); the map goes to TMP/NAME_engine[OUT_TAG].f32, and with
-- out_tag the input gradient to TMP/NAME_engineOUT_TAG_grad.f32.
local function engine_child(p, precision, out_tag)
  local tag = B.tmp .. '/' .. p.name .. '_engine' .. (out_tag or '')
  local cmd = table.concat({
    'LUA_PATH=' .. B.shell_quote(B.lua_path), B.shell_quote(B.luajit), B.shell_quote(B.here .. '/bench.lua'),
    '--child=moreau', '--model=' .. p.name, '--weights=' .. B.shell_quote(p.weights),
    '--input=' .. B.shell_quote(p.input), '--label=' .. p.label, '--T=' .. B.opts.T, '--m=' .. B.opts.m,
    '--threads=' .. B.opts.threads, '--seed=' .. B.opts.seed, '--precision=' .. (precision or B.opts.precision),
    '--out=' .. B.shell_quote(tag .. '.f32'),
    '--beta=' .. (p.arch.beta or 0), '--width=' .. (p.arch.width or 1), '--num_classes=' .. (p.arch.num_classes or 10),
    out_tag and '--grad_out=' .. B.shell_quote(tag .. '_grad.f32') or '',
  }, ' ')
  return B.child_result(cmd)
end

local function moreau_section()
  local results = {}
  for _, name in ipairs(B.list(B.opts.models)) do
    local p = B.prepare(name)
    B.progress('engine: Sparse MoreauGrad on %s, T = %d, m = %d (a fresh process) ...', name, B.opts.T, B.opts.m)
    local e = engine_child(p)
    B.progress('engine: %.2f s', e.seconds)
    local t
    if B.torch_info then
      B.progress('torch: Sparse MoreauGrad on %s, T = %d, m = %d (a fresh process) ...', name, B.opts.T, B.opts.m)
      t = B.torch_run('moreau', { { 'model', name }, { 'weights', p.weights }, { 'input', p.input },
        { 'label', p.label }, { 'T', B.opts.T }, { 'm', B.opts.m }, { 'threads', B.opts.threads },
        { 'seed', B.opts.seed }, { 'out', B.tmp .. '/' .. name .. '_torch.f32' },
        { 'beta', p.arch.beta or 1 }, { 'width', p.arch.width or 1 }, { 'num-classes', p.arch.num_classes or 10 },
        { 'precision', B.opts.precision } })
      B.progress('torch: %.2f s', t.seconds)
      local me = B.read_f32(B.tmp .. '/' .. name .. '_engine.f32', p.shape)
      local mt = B.read_f32(B.tmp .. '/' .. name .. '_torch.f32', p.shape)
      t.cosine = B.cosine(me, mt)
      t.parity = 0
      for i = 0, p.logits:numel() - 1 do
        t.parity = math.max(t.parity, math.abs(p.logits:data()[i] - t.logits[i + 1]))
      end
    end
    results[#results + 1] = { p = p, e = e, t = t }
  end

  print(('== moreau: one Sparse MoreauGrad explanation per image, T = %d, m = %d, K = %d, %d threads')
    :format(B.opts.T, B.opts.m, results[1] and results[1].e.K or math.min(101, B.opts.T), B.opts.threads))
  print('  (docs/methods.md §7: reg l1, rho 1, gamma 0.1, eta 5e-3, sigma 0.1; the m noisy copies go through the net as one batch;')
  if B.opts.precision == 'bf16' then
    print('  --precision=bf16: the engine\'s convolutions in bfloat16 (moreau.set_precision), PyTorch\'s forward under bf16 autocast)')
  end
  print('  each explanation runs in a fresh process; peak = its VmHWM / ru_maxrss, before = resident set before it starts)')
  for _, r in ipairs(results) do
    print(('  %s: %s; input %s, class %d; forward %.1f MFLOP per image'):format(r.p.name, r.p.note,
      r.p.input_note, r.p.label, r.p.flops / 1e6))
  end
  print(('  GFLOP/s counts T·m forward + input-gradient passes at %dx the forward FLOPs (elementwise ops not counted)')
    :format(B.GRAD_FACTOR))
  local hdr = { 'model', 'engine s/image', 'ms/iter', 'GFLOP/s' }
  if B.torch_info then
    for _, h in ipairs { 'torch s/image', 'ms/iter', 'GFLOP/s', 'engine/torch' } do hdr[#hdr + 1] = h end
  end
  local out = { hdr }
  for _, r in ipairs(results) do
    -- per iteration: m forward + input-gradient passes
    local f = B.opts.T * math.max(B.opts.m, 1) * B.GRAD_FACTOR * r.p.flops
    local line = { r.p.name, ('%.2f'):format(r.e.seconds), ('%.0f'):format(1e3 * r.e.seconds / B.opts.T),
      ('%.1f'):format(f / r.e.seconds / 1e9) }
    if r.t then
      line[#line + 1] = ('%.2f'):format(r.t.seconds)
      line[#line + 1] = ('%.0f'):format(1e3 * r.t.seconds / B.opts.T)
      line[#line + 1] = ('%.1f'):format(f / r.t.seconds / 1e9)
      line[#line + 1] = ('%.2fx'):format(r.e.seconds / r.t.seconds)
    end
    out[#out + 1] = line
  end
  B.print_table(out)
  print()
  local mem = { { 'model', 'engine peak', 'before', 'workspace', 'act + wts', 'used / (act + wts)' } }
  if B.torch_info then
    for _, h in ipairs { 'torch peak', 'before', 'peak engine/torch' } do mem[1][#mem[1] + 1] = h end
  end
  for _, r in ipairs(results) do
    -- used: what the explanation added to the process, plus the weights it
    -- reads (loaded before it starts)
    local used = r.e.peak_rss - r.e.rss_before + r.e.weights
    local line = { r.p.name, B.mib(r.e.peak_rss), B.mib(r.e.rss_before), B.mib(r.e.workspace),
      B.mib(r.e.activations + r.e.weights), ('%.2f'):format(used / (r.e.activations + r.e.weights)) }
    if r.t then
      line[#line + 1] = B.mib(r.t.peak_rss)
      line[#line + 1] = B.mib(r.t.rss_before)
      line[#line + 1] = ('%.2fx'):format(r.e.peak_rss / r.t.peak_rss)
    end
    mem[#mem + 1] = line
  end
  B.print_table(mem)
  print('  act + wts: one batch of m samples\' activations (every node\'s output) plus the parameters;')
  print('  used = peak - before + weights (the weights are loaded before the explanation starts)')
  if B.torch_info then
    print('  engine/torch > 1: the engine takes longer / holds more')
    for _, r in ipairs(results) do
      local cos = r.t.cosine == r.t.cosine and ('%.3f'):format(r.t.cosine) or 'n/a (an all-zero map)'
      print(('  %s: same weights in both: max |logit difference| %.1e; map sparsity engine %.3f, torch %.3f;'
        .. ' cosine(engine map, torch map) = %s'):format(r.p.name, r.t.parity, r.e.sparsity, r.t.sparsity, cos))
    end
  end
  if B.torch_info then
    print('  (the two draw their noise from different generators, Philox and torch.randn, so the maps agree')
    print('  only up to the noise; with m = 0 both are deterministic and agree to float rounding)')
  end
  if B.opts.T ~= 300 or B.opts.m ~= 32 then
    print(('  EXTRAPOLATED to T = 300, m = 32 (time x %.2f, linear in T·m; exact in T, as every iteration'):format(
      300 * 32 / (B.opts.T * math.max(B.opts.m, 1))))
    print('  costs the same, but only rough in m: small batches run less efficiently; memory does not grow with T):')
    for _, r in ipairs(results) do
      local k = 300 * 32 / (B.opts.T * math.max(B.opts.m, 1))
      print(('    %s: engine ~%.0f s/image%s'):format(r.p.name, r.e.seconds * k,
        r.t and ('; torch ~%.0f s/image'):format(r.t.seconds * k) or ''))
    end
  end
  print()
end

return { run = moreau_section, child = child_moreau, engine_child = engine_child }
