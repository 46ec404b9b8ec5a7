--- scripts/bench/batch.lua — the section `batch`: many images explained at
-- once by the engine against PyTorch's batch-1 loop.
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

--- Issue 7's target 2: many images explained at once in the engine against
-- PyTorch's batch-1 loop, images per second.
local function batch_section()
  local p = prepare('resnet_fmnist')
  local net = build_model('resnet_fmnist', { beta = p.arch.beta or 10, width = p.arch.width or 1,
    num_classes = p.arch.num_classes or 10 }, p.weights)
  local n = opts.images
  local ok, test = pcall(moreau.data.fashion_mnist, { split = 'test' })
  local x, note
  if ok then
    local card_ok, card = pcall(models.card, 'resnet_fmnist')
    local norm = card_ok and card.data and card.data.normalization or
      { mean = moreau.data.FASHION_MNIST_MEAN, std = moreau.data.FASHION_MNIST_STD }
    x = moreau.data.normalize(moreau.data.subset(test, 1, n).images, norm.mean, norm.std)
    note = ('the first %d Fashion-MNIST test images'):format(n)
  else
    x = T.randn({ n, 1, 28, 28 }, { seed = opts.seed, stream = 8 })
    note = ('%d random N(0, 1) images (Fashion-MNIST not installed)'):format(n)
  end
  local logits = net:forward(x)
  local labels = {}
  for i = 1, n do labels[i] = argmax(logits:select(i)) end
  local method = moreau.methods.moreaugrad { reg = 'l1', rho = 1, gamma = 0.1, eta = 5e-3, sigma = 0.1,
    T = opts.batch_T, m = opts.batch_m, K = math.min(101, opts.batch_T), seed = opts.seed,
    chunk = opts.batch_chunk }
  progress('batch: engine, %d images at once, T = %d, m = %d ...', n, opts.batch_T, opts.batch_m)
  local t0 = now()
  method:explain(net, x, labels)
  local te = now() - t0
  progress('batch: engine %.2f s', te)
  local tt
  if torch_info then
    local input, lab = tmp .. '/batch_x.f32', tmp .. '/batch_labels.json'
    write_f32(input, x)
    local f = assert(io.open(lab, 'w'))
    f:write(cjson.encode(labels))
    f:close()
    progress('batch: torch, the batch-1 loop over %d images ...', n)
    tt = torch_run('batch', { { 'weights', p.weights }, { 'input', input }, { 'labels', lab },
      { 'images', n }, { 'T', opts.batch_T }, { 'm', opts.batch_m }, { 'threads', opts.threads },
      { 'beta', p.arch.beta or 10 }, { 'width', p.arch.width or 1 },
      { 'num-classes', p.arch.num_classes or 10 } }).seconds
    progress('batch: torch %.2f s', tt)
  end
  print(('== batch: Sparse MoreauGrad of %s on resnet_fmnist (%s), T = %d, m = %d, %d threads')
    :format(note, p.note, opts.batch_T, opts.batch_m, opts.threads))
  print(('  engine: all %d images at once, items x copies batched, %d per forward pass;'):format(n,
    opts.batch_chunk))
  print('  torch: one image at a time, its m copies in one batch (the batch-1 loop)')
  local rows = { { 'side', 'seconds', 'images/s' }, { 'engine', ('%.2f'):format(te), ('%.2f'):format(n / te) } }
  if tt then
    rows[#rows + 1] = { 'torch', ('%.2f'):format(tt), ('%.2f'):format(n / tt) }
    rows[#rows + 1] = { 'engine images/s / torch images/s', '', ('%.2fx'):format(tt / te) }
  else
    rows[#rows + 1] = { 'torch', 'not run: ' .. tostring(torch_why), '' }
  end
  print_table(rows)
  print()
end

return { run = batch_section }
