--- scripts/bench/methods.lua — the section `methods`: SmoothGrad and
-- Integrated Gradients on resnet18_cifar, one image.
local B = ...
local moreau = require 'moreau'

--- SmoothGrad and Integrated Gradients on resnet18_cifar, one image, each
-- method's samples in one batch: median seconds per explanation.
local function methods_section()
  local p = B.prepare('resnet18_cifar')
  local net = B.build_model('resnet18_cifar', { beta = 1, width = 1, num_classes = 10 }, p.weights)
  local sg = moreau.methods.smoothgrad { samples = B.opts.samples, sigma = 0.15, seed = B.opts.seed }
  local ig = moreau.methods.integrated_gradients { steps = B.opts.steps }
  local reps = math.max(1, math.min(B.opts.repeats, 3))
  B.progress('methods: engine, SmoothGrad %d samples and IG %d steps ...', B.opts.samples, B.opts.steps)
  local e = {
    sg = B.time_median(function() sg:explain(net, p.x, { p.label }) end, reps),
    ig = B.time_median(function() ig:explain(net, p.x, { p.label }) end, reps),
  }
  local t
  if B.torch_info then
    B.progress('methods: torch ...')
    local r = B.torch_run('methods', { { 'weights', p.weights }, { 'input', p.input }, { 'label', p.label },
      { 'samples', B.opts.samples }, { 'steps', B.opts.steps }, { 'threads', B.opts.threads }, { 'repeats', reps } })
    t = { sg = r.smoothgrad_s, ig = r.ig_s }
  end
  print(('== methods: resnet18_cifar (%s), one image, %d threads (median of %d)'):format(p.note,
    B.opts.threads, reps))
  local rows = { { 'method', 'passes', 'engine', 'GFLOP/s' } }
  if t then for _, h in ipairs { 'torch', 'GFLOP/s', 'engine/torch' } do rows[1][#rows[1] + 1] = h end end
  for _, m in ipairs { { 'smoothgrad', 'sg', B.opts.samples }, { 'integrated_gradients', 'ig', B.opts.steps } } do
    local f = m[3] * B.GRAD_FACTOR * p.flops
    local line = { m[1], tostring(m[3]), B.fmt_s(e[m[2]]), ('%.1f'):format(f / e[m[2]] / 1e9) }
    if t then
      line[#line + 1] = B.fmt_s(t[m[2]])
      line[#line + 1] = ('%.1f'):format(f / t[m[2]] / 1e9)
      line[#line + 1] = ('%.2fx'):format(e[m[2]] / t[m[2]])
    end
    rows[#rows + 1] = line
  end
  B.print_table(rows)
  print()
end

return { run = methods_section }
