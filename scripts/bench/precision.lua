--- scripts/bench/precision.lua — the section `precision`: the moreau
-- section's Sparse MoreauGrad explanation run in fp32 and in bf16
-- (moreau.set_precision), each in a fresh process, and the same for PyTorch
-- (fp32 against torch.autocast('cpu', dtype=torch.bfloat16)): the seconds of
-- each, the speed-up, and how far each side's bf16 map is from its fp32 map.
-- Both runs of a side draw the same noise (same seed, same generator), so the
-- maps differ by the precision alone.
local B = ...
local moreau = require 'moreau'
local metrics = require 'moreau.metrics'
local M = assert(loadfile(B.here .. '/bench/moreau.lua'))(B)

--- |map| summed over channels, as (1, H·W): the per-pixel importance the
-- explain recipe draws (README, "explain").
local function pixel_importance(map)
  local s = map:shape() -- (1, C, H, W)
  local C, HW = s[2], s[3] * s[4]
  local out = moreau.tensor.zeros({ 1, HW })
  local a, o = map:data(), out:data()
  for c = 0, C - 1 do
    for j = 0, HW - 1 do o[j] = o[j] + math.abs(a[c * HW + j]) end
  end
  return out
end

--- How far map b (bf16) is from map a (fp32): cosine similarity of the maps
-- and the share of a's top-40% pixels (by |map| summed over channels; zero
-- pixels are never top-k) that are among b's top 40%.
local function distance(a, b)
  local pa = pixel_importance(a)
  local any = false
  for j = 0, pa:numel() - 1 do if pa:data()[j] ~= 0 then any = true break end end
  if not any then return 0 / 0, 0 / 0 end
  return B.cosine(a, b), metrics.topk_intersection(pa, pixel_importance(b), { frac = 0.4 })[1]
end

local function fmt(v, f) return v == nil and '-' or (v ~= v and 'n/a' or (f or '%.4f'):format(v)) end

--- Runs one explanation of prepared model p per precision and side, --repeats
-- times in alternation (fp32, bf16, fp32, ...: a load that comes and goes
-- hits both alike); keeps the median seconds and the first run's files.
local function measure(p, bf16_ok)
  local r = { p = p, secs = {} }
  local function add(key, s)
    r.secs[key] = r.secs[key] or {}
    table.insert(r.secs[key], s)
  end
  for rep = 1, B.opts.repeats do
    for _, prec in ipairs { 'fp32', 'bf16' } do
      if prec == 'fp32' or bf16_ok then
        B.progress('engine: Sparse MoreauGrad on %s in %s, T = %d, m = %d, run %d of %d (a fresh process) ...',
          p.name, prec, B.opts.T, B.opts.m, rep, B.opts.repeats)
        local e = M.engine_child(p, prec, '_' .. prec)
        B.progress('engine: %.2f s', e.seconds)
        add('e_' .. prec, e.seconds)
        r['e_' .. prec] = r['e_' .. prec] or e
      end
      if B.torch_info then
        B.progress('torch: Sparse MoreauGrad on %s in %s, T = %d, m = %d, run %d of %d (a fresh process) ...',
          p.name, prec, B.opts.T, B.opts.m, rep, B.opts.repeats)
        local out = B.tmp .. '/' .. p.name .. '_torch_' .. prec
        local t = B.torch_run('moreau', { { 'model', p.name }, { 'weights', p.weights }, { 'input', p.input },
          { 'label', p.label }, { 'T', B.opts.T }, { 'm', B.opts.m }, { 'threads', B.opts.threads },
          { 'seed', B.opts.seed }, { 'out', out .. '.f32' }, { 'grad-out', out .. '_grad.f32' },
          { 'beta', p.arch.beta or 1 }, { 'width', p.arch.width or 1 },
          { 'num-classes', p.arch.num_classes or 10 }, { 'precision', prec } })
        B.progress('torch: %.2f s', t.seconds)
        add('t_' .. prec, t.seconds)
        r['t_' .. prec] = r['t_' .. prec] or t
      end
    end
  end
  for key, xs in pairs(r.secs) do r.secs[key] = B.median(xs) end
  for _, side in ipairs { 'engine', 'torch' } do
    local k = side:sub(1, 1)
    if r[k .. '_bf16'] then
      local function read(prec, what)
        return B.read_f32(B.tmp .. '/' .. p.name .. '_' .. side .. '_' .. prec .. what .. '.f32', p.shape)
      end
      r[k .. '_cos'], r[k .. '_top'] = distance(read('fp32', ''), read('bf16', ''))
      r[k .. '_gcos'], r[k .. '_gtop'] = distance(read('fp32', '_grad'), read('bf16', '_grad'))
    end
  end
  return r
end

--- The spread over images: the input gradient of the predicted class of
-- each of the first --images Fashion-MNIST test images on the shipped
-- resnet_fmnist, in fp32 and in bf16 (one batch each, in this process):
-- the cosine per image, summarized by its median, 5th percentile, minimum
-- and the count below 0.9998. RETURN: a summary table, or nil and why not.
local function gradient_spread()
  local ok, test = pcall(moreau.data.fashion_mnist, { split = 'test' })
  if not ok then return nil, 'Fashion-MNIST is not installed' end
  local card_ok, card = pcall(moreau.models.card, 'resnet_fmnist')
  if not card_ok then return nil, 'the shipped resnet_fmnist is not there' end
  local net = moreau.models.pretrained('resnet_fmnist')
  local n = math.min(B.opts.images, test.n)
  local norm = card.data.normalization
  local x = moreau.data.normalize(moreau.data.subset(test, 1, n).images, norm.mean, norm.std)
  local logits = net:forward_inference(x)
  local classes = logits:numel() / n
  local labels = {}
  for i = 0, n - 1 do labels[i + 1] = B.argmax(logits:narrow(i + 1, i + 1)) end
  local before = moreau.get_precision()
  local _, g32 = moreau.oracle.grad(net, x, labels)
  g32 = g32:clone()
  moreau.set_precision('bf16')
  local ok16, g16 = pcall(function() local _, g = moreau.oracle.grad(net, x, labels) return g end)
  moreau.set_precision(before)
  if not ok16 then error(g16, 0) end
  local d = g32:numel() / n
  local a, b = g32:data(), g16:data()
  local cos, below = {}, 0
  for i = 0, n - 1 do
    local ab, aa, bb = 0, 0, 0
    for k = i * d, (i + 1) * d - 1 do ab, aa, bb = ab + a[k] * b[k], aa + a[k] * a[k], bb + b[k] * b[k] end
    cos[i + 1] = ab / math.sqrt(aa * bb)
    if cos[i + 1] < 0.9998 then below = below + 1 end
  end
  local worst_at = 1
  for i = 2, n do if cos[i] < cos[worst_at] then worst_at = i end end
  local sorted = { (table.unpack or unpack)(cos) }
  table.sort(sorted)
  return { n = n, classes = classes, median = sorted[math.floor(n / 2) + 1],
    p5 = sorted[math.max(1, math.floor(0.05 * n))], min = sorted[1], worst_image = worst_at - 1, below = below }
end

local function precision_section()
  -- Is bf16 there? The parent's own precision is put back afterwards.
  local before = moreau.get_precision()
  local bf16_ok, bf16_why = pcall(moreau.set_precision, 'bf16')
  moreau.set_precision(before)
  local results = {}
  for _, name in ipairs(B.list(B.opts.models)) do results[#results + 1] = measure(B.prepare(name), bf16_ok) end

  print(('== precision: one Sparse MoreauGrad explanation per image in fp32 and in bf16, T = %d, m = %d, %d threads')
    :format(B.opts.T, B.opts.m, B.opts.threads))
  print('  (the moreau section\'s settings; engine: moreau.set_precision(\'bf16\'), the convolutions\' inputs rounded to')
  print('  bfloat16 on oneDNN\'s bf16 kernels; torch: torch.autocast(\'cpu\', dtype=torch.bfloat16) around each forward;')
  print(('  each a fresh process, fp32 and bf16 in alternation, median of %d)'):format(B.opts.repeats))
  if not bf16_ok then
    print('  engine bf16: refused here: ' .. tostring(bf16_why))
  end
  local sides = { { 'e', 'engine' } }
  if B.torch_info then sides[2] = { 't', 'torch' } end
  local rows = { { 'model', 'side', 'fp32 s', 'bf16 s', 'speed-up', 'map cosine', 'map top-40%', 'grad cosine',
    'grad top-40%' } }
  for _, r in ipairs(results) do
    for _, sd in ipairs(sides) do
      local k = sd[1]
      local s32, s16 = r.secs[k .. '_fp32'], r.secs[k .. '_bf16']
      rows[#rows + 1] = { r.p.name, sd[2], ('%.2f'):format(s32), s16 and ('%.2f'):format(s16) or '-',
        s16 and ('%.2fx'):format(s32 / s16) or '-', fmt(r[k .. '_cos'], '%.5f'), fmt(r[k .. '_top'], '%.3f'),
        fmt(r[k .. '_gcos'], '%.5f'), fmt(r[k .. '_gtop'], '%.3f') }
    end
  end
  B.print_table(rows)
  print('  speed-up = fp32 s / bf16 s. The bf16 results against the same side\'s fp32 ones (same noise):')
  print('  map = the Sparse MoreauGrad map; grad = the input gradient of the explained class at the image;')
  print('  cosine of the two; top-40% = share of the fp32 one\'s top 40% pixels (|.| summed over channels,')
  print('  zeros never counted) among the bf16 one\'s (metrics.topk_intersection); n/a: an all-zero fp32 map')
  for _, r in ipairs(results) do
    local z = r.e_fp32.sparsity
    print(('  %s: map sparsity engine fp32 %.3f%s'):format(r.p.name, z,
      r.e_bf16 and (', bf16 %.3f; %d of the bf16 run\'s %d oneDNN conv passes in bf16 (all else float32)')
        :format(r.e_bf16.sparsity, r.e_bf16.bf16_passes, r.e_bf16.onednn_passes) or ''))
  end
  if bf16_ok then
    B.progress('precision: the input-gradient spread over %d test images ...', B.opts.images)
    local sp, why = gradient_spread()
    if sp then
      print(('  over images (engine): the input gradient of the predicted class of each of the first %d'):format(sp.n))
      print('  Fashion-MNIST test images, shipped resnet_fmnist, bf16 against fp32 (--images):')
      B.print_table({ { 'images', 'median cosine', '5th percentile', 'worst (0-based image)', 'below 0.9998' },
        { tostring(sp.n), ('%.5f'):format(sp.median), ('%.5f'):format(sp.p5),
          ('%.4f (%d)'):format(sp.min, sp.worst_image), tostring(sp.below) } })
    else
      print('  over images: not measured: ' .. why)
    end
  end
  print()
end

return { run = precision_section }
