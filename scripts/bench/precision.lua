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
  local overlap = metrics.topk_intersection(pixel_importance(a), pixel_importance(b), { frac = 0.4 })[1]
  return M.cosine(a, b), overlap
end

local function fmt(v, f) return v == nil and '-' or (v ~= v and 'n/a' or (f or '%.4f'):format(v)) end

local function precision_section()
  -- Is bf16 there? The parent's own precision is put back afterwards.
  local before = moreau.get_precision()
  local bf16_ok, bf16_why = pcall(moreau.set_precision, 'bf16')
  moreau.set_precision(before)
  local results = {}
  for _, name in ipairs(B.list(B.opts.models)) do
    local p = B.prepare(name)
    local r = { p = p }
    for _, prec in ipairs { 'fp32', 'bf16' } do
      if prec == 'fp32' or bf16_ok then
        B.progress('engine: Sparse MoreauGrad on %s in %s, T = %d, m = %d (a fresh process) ...', name, prec,
          B.opts.T, B.opts.m)
        r['e_' .. prec] = M.engine_child(p, prec, '_' .. prec)
        B.progress('engine: %.2f s', r['e_' .. prec].seconds)
        r['me_' .. prec] = B.read_f32(B.tmp .. '/' .. name .. '_engine_' .. prec .. '.f32', p.shape)
      end
      if B.torch_info then
        B.progress('torch: Sparse MoreauGrad on %s in %s, T = %d, m = %d (a fresh process) ...', name, prec,
          B.opts.T, B.opts.m)
        local out = B.tmp .. '/' .. name .. '_torch_' .. prec .. '.f32'
        r['t_' .. prec] = B.torch_run('moreau', { { 'model', name }, { 'weights', p.weights }, { 'input', p.input },
          { 'label', p.label }, { 'T', B.opts.T }, { 'm', B.opts.m }, { 'threads', B.opts.threads },
          { 'seed', B.opts.seed }, { 'out', out }, { 'beta', p.arch.beta or 1 }, { 'width', p.arch.width or 1 },
          { 'num-classes', p.arch.num_classes or 10 }, { 'precision', prec } })
        B.progress('torch: %.2f s', r['t_' .. prec].seconds)
        r['mt_' .. prec] = B.read_f32(out, p.shape)
      end
    end
    if r.e_bf16 then r.e_cos, r.e_top = distance(r.me_fp32, r.me_bf16) end
    if r.t_bf16 then r.t_cos, r.t_top = distance(r.mt_fp32, r.mt_bf16) end
    results[#results + 1] = r
  end

  print(('== precision: one Sparse MoreauGrad explanation per image in fp32 and in bf16, T = %d, m = %d, %d threads')
    :format(B.opts.T, B.opts.m, B.opts.threads))
  print('  (the moreau section\'s settings; engine: moreau.set_precision(\'bf16\'), the convolutions\' inputs rounded to')
  print('  bfloat16 on oneDNN\'s bf16 kernels; torch: torch.autocast(\'cpu\', dtype=torch.bfloat16) around each forward)')
  if not bf16_ok then
    print('  engine bf16: refused here: ' .. tostring(bf16_why))
  end
  local hdr = { 'model', 'engine fp32 s', 'bf16 s', 'speed-up', 'cosine', 'top-40%' }
  if B.torch_info then
    for _, h in ipairs { 'torch fp32 s', 'bf16 s', 'speed-up', 'cosine', 'top-40%' } do hdr[#hdr + 1] = h end
  end
  local rows = { hdr }
  for _, r in ipairs(results) do
    local e32, e16 = r.e_fp32, r.e_bf16
    local line = { r.p.name, ('%.2f'):format(e32.seconds), e16 and ('%.2f'):format(e16.seconds) or '-',
      e16 and ('%.2fx'):format(e32.seconds / e16.seconds) or '-', fmt(r.e_cos), fmt(r.e_top, '%.3f') }
    if B.torch_info then
      local t32, t16 = r.t_fp32, r.t_bf16
      line[#line + 1] = ('%.2f'):format(t32.seconds)
      line[#line + 1] = ('%.2f'):format(t16.seconds)
      line[#line + 1] = ('%.2fx'):format(t32.seconds / t16.seconds)
      line[#line + 1] = fmt(r.t_cos)
      line[#line + 1] = fmt(r.t_top, '%.3f')
    end
    rows[#rows + 1] = line
  end
  B.print_table(rows)
  print('  speed-up = fp32 s / bf16 s; cosine and top-40% compare the bf16 map with the same side\'s fp32 map')
  print('  (top-40%: share of the fp32 map\'s top 40% pixels by |map| summed over channels kept by the bf16 map)')
  for _, r in ipairs(results) do
    if r.e_bf16 then
      print(('  %s: the engine\'s bf16 run: %d of its %d oneDNN conv passes in bf16 (all other ops in float32)')
        :format(r.p.name, r.e_bf16.bf16_passes, r.e_bf16.onednn_passes))
    end
  end
  print()
end

return { run = precision_section }
