--- scripts/bench/train.lua — the section `train`: resnet_fmnist training steps.
local B = ...
local moreau = require 'moreau'

--- Training throughput of resnet_fmnist as recipes/train_fmnist.lua trains it
-- (batch 128, batchnorm batch statistics, cross-entropy, SGD with Nesterov
-- momentum and weight decay): median seconds per step, images per second.
local function train_section()
  local train = moreau.train
  local net = B.build_model('resnet_fmnist', { beta = 10, width = 1, num_classes = 10 })
  local n = 128
  local x = moreau.tensor.randn({ n, 1, 28, 28 }, { seed = B.opts.seed })
  local labels = {}
  for i = 1, n do labels[i] = (i - 1) % 10 end
  local opt = train.sgd { lr = 0.1, momentum = 0.9, nesterov = true, weight_decay = 5e-4 }:build(net)
  net:train()
  B.progress('train: engine, %d steps of batch %d', B.opts.repeats + 1, n)
  local te = B.time_median(function() train.step(net, opt, x, labels) end, B.opts.repeats)
  local tt
  if B.torch_info then
    B.progress('train: torch')
    tt = B.torch_run('train', { { 'threads', B.opts.threads }, { 'repeats', B.opts.repeats }, { 'batch', n } }).step_s
  end
  print(('== train: resnet_fmnist training step, batch %d, %d threads (median of %d)'):format(n, B.opts.threads,
    B.opts.repeats))
  local rows = { { 'side', 'seconds per step', 'images/s' }, { 'engine', B.fmt_s(te), ('%.0f'):format(n / te) } }
  if tt then
    rows[#rows + 1] = { 'torch', B.fmt_s(tt), ('%.0f'):format(n / tt) }
    rows[#rows + 1] = { 'engine/torch', ('%.2fx'):format(te / tt), '' }
  else
    rows[#rows + 1] = { 'torch', 'not run: ' .. tostring(B.torch_why), '' }
  end
  B.print_table(rows)
  print()
end

return { run = train_section }
