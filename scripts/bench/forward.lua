--- scripts/bench/forward.lua — the section `forward`: resnet18_cifar forward
-- and forward + input gradient at --batches, GFLOP/s from net:flops().
local B = ...
local ffi = require 'ffi'
local moreau = require 'moreau'
local core = require 'moreau.core'
local T, models, C = moreau.tensor, moreau.models, core.C

local function forward_section(peak)
  local net = B.build_model('resnet18_cifar', { beta = 1, width = 1, num_classes = 10 })
  local flops = net:flops()
  local weights = B.tmp .. '/resnet18_cifar.safetensors'
  models.save(net, weights)
  -- The same weights and a check input go to PyTorch: its logits are compared with ours.
  local xc = T.randn({ 2, 3, 32, 32 }, { seed = B.opts.seed, stream = 99 })
  B.write_f32(B.tmp .. '/check.f32', xc)
  local yc = net:forward(xc)

  local rows = {}
  local batches = B.list(B.opts.batches)
  for _, b in ipairs(batches) do
    local N = tonumber(b)
    local x = T.randn({ N, 3, 32, 32 }, { seed = B.opts.seed, stream = N })
    local lab = ffi.new('int32_t[?]', N)
    for i = 0, N - 1 do lab[i] = i % 10 end
    local scores = ffi.new('float[?]', N)
    local g = T.zeros(x:shape())
    B.progress('engine: resnet18_cifar batch %d ...', N)
    local tf = B.time_median(function() core.check(C.mr_net_forward(core.handle(net), core.handle(x), nil)) end, B.opts.repeats)
    local tg = B.time_median(function()
      core.check(C.mr_oracle_grad(core.handle(net), core.handle(x), lab, C.MR_SCORE_LOGIT, scores, core.handle(g)))
    end, B.opts.repeats)
    rows[#rows + 1] = { N = N, tf = tf, tg = tg }
  end
  local ws = net:workspace_bytes()

  local tres, parity
  if B.torch_info then
    B.progress('torch: resnet18_cifar batches %s ...', B.opts.batches)
    tres = B.torch_run('forward', { { 'threads', B.opts.threads }, { 'repeats', B.opts.repeats },
      { 'batches', B.opts.batches }, { 'weights', weights }, { 'check-input', B.tmp .. '/check.f32' },
      { 'check-n', 2 } })
    for i, r in ipairs(rows) do
      local t = tres.batches[i]
      r.torch_f, r.torch_g = t.forward_s, t.grad_s
    end
    parity = 0
    for i = 0, yc:numel() - 1 do
      parity = math.max(parity, math.abs(yc:data()[i] - tres.check_logits[i + 1]))
    end
  end

  local pk = peak and peak.best[B.opts.threads]
  print(('== forward: resnet18_cifar (softplus beta 1, random weights, 3x32x32), %d threads, median of %d')
    :format(B.opts.threads, B.opts.repeats))
  print(('  FLOPs per image: forward %.3f G; forward + input gradient %.3f G = %dx forward (the backward\'s')
    :format(flops / 1e9, B.GRAD_FACTOR * flops / 1e9, B.GRAD_FACTOR))
  print('  input-gradient GEMMs Wt·dY count 1x the forward FLOPs; no weight gradients, which would add another 1x;')
  print('  elementwise ops not counted)')
  if pk then print(('  FP32 FMA peak at %d threads: %.1f GFLOP/s (section peak)'):format(B.opts.threads, pk)) end
  local hdr = { 'pass', 'batch', 'engine', 'GFLOP/s' }
  if pk then hdr[#hdr + 1] = '% peak' end
  if tres then
    for _, h in ipairs { 'torch', 'GFLOP/s' } do hdr[#hdr + 1] = h end
    if pk then hdr[#hdr + 1] = '% peak' end
    hdr[#hdr + 1] = 'engine/torch'
  end
  local out = { hdr }
  for _, pass in ipairs { { 'forward', 'tf', 'torch_f', 1 }, { 'forward+input-grad', 'tg', 'torch_g', B.GRAD_FACTOR } } do
    for _, r in ipairs(rows) do
      local f = pass[4] * flops * r.N
      local e = r[pass[2]]
      local line = { pass[1], tostring(r.N), B.fmt_s(e), ('%.1f'):format(f / e / 1e9) }
      if pk then line[#line + 1] = ('%.0f%%'):format(100 * f / e / 1e9 / pk) end
      if tres then
        local t = r[pass[3]]
        line[#line + 1] = B.fmt_s(t)
        line[#line + 1] = ('%.1f'):format(f / t / 1e9)
        if pk then line[#line + 1] = ('%.0f%%'):format(100 * f / t / 1e9 / pk) end
        line[#line + 1] = ('%.2fx'):format(e / t)
      end
      out[#out + 1] = line
    end
  end
  B.print_table(out)
  print(('  engine workspace after batch %s: %s'):format(batches[#batches], B.mib(ws)))
  if tres then
    print('  torch: forward under torch.no_grad(); forward+input-grad with parameters frozen (no weight gradients)')
    print(('  same weights in both: max |logit difference| on a check batch = %.2e'):format(parity))
    print('  engine/torch > 1: the engine takes longer')
  end
  print()
end

return { run = forward_section }
