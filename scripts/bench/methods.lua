--- scripts/bench/methods.lua — the section `methods`: SmoothGrad and
-- Integrated Gradients on resnet18_cifar, one image.
local B = ...
local ffi = require 'ffi'
local moreau = require 'moreau'
local core = require 'moreau.core'
local cjson = require 'cjson'
local T, models, C = moreau.tensor, moreau.models, core.C
local opts, here, tmp, torch_info, torch_why = B.opts, B.here, B.tmp, B.torch_info, B.torch_why
local list, now, proc_status, read_all, shell_quote = B.list, B.now, B.proc_status, B.read_all, B.shell_quote
local time_median, write_f32, read_f32, mib, fmt_s = B.time_median, B.write_f32, B.read_f32, B.mib, B.fmt_s
local print_table, progress, build_model, GRAD_FACTOR = B.print_table, B.progress, B.build_model, B.GRAD_FACTOR
local activation_weight_bytes, argmax, torch_run, prepare = B.activation_weight_bytes, B.argmax, B.torch_run, B.prepare
local luajit, lua_path = B.luajit, B.lua_path

--- SmoothGrad and Integrated Gradients on resnet18_cifar, one image, each
-- method's samples in one batch: median seconds per explanation.
local function methods_section()
  local p = prepare('resnet18_cifar')
  local net = build_model('resnet18_cifar', { beta = 1, width = 1, num_classes = 10 }, p.weights)
  local sg = moreau.methods.smoothgrad { samples = opts.samples, sigma = 0.15, seed = opts.seed }
  local ig = moreau.methods.integrated_gradients { steps = opts.steps }
  local reps = math.max(1, math.min(opts.repeats, 3))
  progress('methods: engine, SmoothGrad %d samples and IG %d steps ...', opts.samples, opts.steps)
  local e = {
    sg = time_median(function() sg:explain(net, p.x, { p.label }) end, reps),
    ig = time_median(function() ig:explain(net, p.x, { p.label }) end, reps),
  }
  local t
  if torch_info then
    progress('methods: torch ...')
    local r = torch_run('methods', { { 'weights', p.weights }, { 'input', p.input }, { 'label', p.label },
      { 'samples', opts.samples }, { 'steps', opts.steps }, { 'threads', opts.threads }, { 'repeats', reps } })
    t = { sg = r.smoothgrad_s, ig = r.ig_s }
  end
  print(('== methods: resnet18_cifar (%s), one image, %d threads (median of %d)'):format(p.note,
    opts.threads, reps))
  local rows = { { 'method', 'passes', 'engine', 'GFLOP/s' } }
  if t then for _, h in ipairs { 'torch', 'GFLOP/s', 'engine/torch' } do rows[1][#rows[1] + 1] = h end end
  for _, m in ipairs { { 'smoothgrad', 'sg', opts.samples }, { 'integrated_gradients', 'ig', opts.steps } } do
    local f = m[3] * GRAD_FACTOR * p.flops
    local line = { m[1], tostring(m[3]), fmt_s(e[m[2]]), ('%.1f'):format(f / e[m[2]] / 1e9) }
    if t then
      line[#line + 1] = fmt_s(t[m[2]])
      line[#line + 1] = ('%.1f'):format(f / t[m[2]] / 1e9)
      line[#line + 1] = ('%.2fx'):format(e[m[2]] / t[m[2]])
    end
    rows[#rows + 1] = line
  end
  print_table(rows)
  print()
end

return { run = methods_section }
