--- scripts/bench/train.lua — the section `train`: resnet_fmnist training steps.
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

--- Training throughput of resnet_fmnist as recipes/train_fmnist.lua trains it
-- (batch 128, batchnorm batch statistics, cross-entropy, SGD with Nesterov
-- momentum and weight decay): median seconds per step, images per second.
local function train_section()
  local train = moreau.train
  local net = build_model('resnet_fmnist', { beta = 10, width = 1, num_classes = 10 })
  local n = 128
  local x = moreau.tensor.randn({ n, 1, 28, 28 }, { seed = opts.seed })
  local labels = {}
  for i = 1, n do labels[i] = (i - 1) % 10 end
  local opt = train.sgd { lr = 0.1, momentum = 0.9, nesterov = true, weight_decay = 5e-4 }:build(net)
  net:train()
  progress('train: engine, %d steps of batch %d', opts.repeats + 1, n)
  local te = time_median(function() train.step(net, opt, x, labels) end, opts.repeats)
  local tt
  if torch_info then
    progress('train: torch')
    tt = torch_run('train', { { 'threads', opts.threads }, { 'repeats', opts.repeats }, { 'batch', n } }).step_s
  end
  print(('== train: resnet_fmnist training step, batch %d, %d threads (median of %d)'):format(n, opts.threads,
    opts.repeats))
  local rows = { { 'side', 'seconds per step', 'images/s' }, { 'engine', fmt_s(te), ('%.0f'):format(n / te) } }
  if tt then
    rows[#rows + 1] = { 'torch', fmt_s(tt), ('%.0f'):format(n / tt) }
    rows[#rows + 1] = { 'engine/torch', ('%.2fx'):format(te / tt), '' }
  else
    rows[#rows + 1] = { 'torch', 'not run: ' .. tostring(torch_why), '' }
  end
  print_table(rows)
  print()
end

return { run = train_section }
