--- scripts/bench/batch.lua — the section `batch`: many images explained at
-- once by the engine against PyTorch's batch-1 loop.
local B = ...
local moreau = require 'moreau'
local cjson = require 'cjson'
local T, models = moreau.tensor, moreau.models

--- Issue 7's target 2: many images explained at once in the engine against
-- PyTorch's batch-1 loop, images per second.
local function batch_section()
  local p = B.prepare('resnet_fmnist')
  local net = B.build_model('resnet_fmnist', { beta = p.arch.beta or 10, width = p.arch.width or 1,
    num_classes = p.arch.num_classes or 10 }, p.weights)
  local n = B.opts.images
  local ok, test = pcall(moreau.data.fashion_mnist, { split = 'test' })
  local x, note
  if ok then
    local card_ok, card = pcall(models.card, 'resnet_fmnist')
    local norm = card_ok and card.data and card.data.normalization or
      { mean = moreau.data.FASHION_MNIST_MEAN, std = moreau.data.FASHION_MNIST_STD }
    x = moreau.data.normalize(moreau.data.subset(test, 1, n).images, norm.mean, norm.std)
    note = ('the first %d Fashion-MNIST test images'):format(n)
  else
    x = T.randn({ n, 1, 28, 28 }, { seed = B.opts.seed, stream = 8 })
    note = ('%d random N(0, 1) images (Fashion-MNIST not installed)'):format(n)
  end
  local logits = net:forward(x)
  local labels = {}
  for i = 1, n do labels[i] = B.argmax(logits:select(i)) end
  local method = moreau.methods.moreaugrad { reg = 'l1', rho = 1, gamma = 0.1, eta = 5e-3, sigma = 0.1,
    T = B.opts.batch_T, m = B.opts.batch_m, K = math.min(101, B.opts.batch_T), seed = B.opts.seed,
    chunk = B.opts.batch_chunk }
  B.progress('batch: engine, %d images at once, T = %d, m = %d ...', n, B.opts.batch_T, B.opts.batch_m)
  local t0 = B.now()
  method:explain(net, x, labels)
  local te = B.now() - t0
  B.progress('batch: engine %.2f s', te)
  local tt
  if B.torch_info then
    local input, lab = B.tmp .. '/batch_x.f32', B.tmp .. '/batch_labels.json'
    B.write_f32(input, x)
    local f = assert(io.open(lab, 'w'))
    f:write(cjson.encode(labels))
    f:close()
    B.progress('batch: torch, the batch-1 loop over %d images ...', n)
    tt = B.torch_run('batch', { { 'weights', p.weights }, { 'input', input }, { 'labels', lab },
      { 'images', n }, { 'T', B.opts.batch_T }, { 'm', B.opts.batch_m }, { 'threads', B.opts.threads },
      { 'beta', p.arch.beta or 10 }, { 'width', p.arch.width or 1 },
      { 'num-classes', p.arch.num_classes or 10 } }).seconds
    B.progress('batch: torch %.2f s', tt)
  end
  print(('== batch: Sparse MoreauGrad of %s on resnet_fmnist (%s), T = %d, m = %d, %d threads')
    :format(note, p.note, B.opts.batch_T, B.opts.batch_m, B.opts.threads))
  print(('  engine: all %d images at once, items x copies batched, %d per forward pass;'):format(n,
    B.opts.batch_chunk))
  print('  torch: one image at a time, its m copies in one batch (the batch-1 loop)')
  local rows = { { 'side', 'seconds', 'images/s' }, { 'engine', ('%.2f'):format(te), ('%.2f'):format(n / te) } }
  if tt then
    rows[#rows + 1] = { 'torch', ('%.2f'):format(tt), ('%.2f'):format(n / tt) }
    rows[#rows + 1] = { 'engine images/s / torch images/s', '', ('%.2fx'):format(tt / te) }
  else
    rows[#rows + 1] = { 'torch', 'not run: ' .. tostring(B.torch_why), '' }
  end
  B.print_table(rows)
  print()
end

return { run = batch_section }
