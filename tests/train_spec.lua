-- Training: cross-entropy, optimizers, schedules, augmentation, the fit loop,
-- and one SGD step of a conv + batchnorm + softplus + linear net against PyTorch
-- (tests/fixtures/train_step.safetensors, made by scripts/make_train_fixture.py).
local ffi = require 'ffi'
local core = require 'moreau.core'
local T = require 'moreau.tensor'
local nn = require 'moreau.nn'
local train = require 'moreau.train'
local gc = require 'helpers.gradcheck'
local C = core.C

local function close(a, b, tol, what)
  local err = math.abs(a - b) / math.max(math.abs(a) + math.abs(b), 1e-30)
  if not (err <= tol) then
    error(('%s: %.9g vs %.9g, relative error %.3g > %.3g'):format(what or 'value', a, b, err, tol), 2)
  end
end

local function lse(row)
  local m = -math.huge
  for _, v in ipairs(row) do m = math.max(m, v) end
  local s = 0
  for _, v in ipairs(row) do s = s + math.exp(v - m) end
  return m + math.log(s)
end

-- PyTorch's cross-entropy with label smoothing e, in double, and its gradient.
local function ce_ref(rows, labels, e)
  local N, K = #rows, #rows[1]
  local loss, grad = 0, {}
  for n, row in ipairs(rows) do
    local l = lse(row)
    for k = 1, K do
      local q = (k - 1 == labels[n] and 1 - e or 0) + e / K
      loss = loss + q * (l - row[k])
      grad[#grad + 1] = (math.exp(row[k] - l) - q) / N
    end
  end
  return loss / N, grad
end

local function flat(rows)
  local t = {}
  for _, r in ipairs(rows) do for _, v in ipairs(r) do t[#t + 1] = v end end
  return t
end

local function tmpname(suffix)
  local p = os.tmpname()
  os.remove(p)
  return p .. suffix
end

describe('cross-entropy', function()
  local rows = { { 1, 2, 3 }, { 0, 0, 0 }, { -2.5, 4, 0.5 }, { 30, -30, 0 } }
  local labels = { 2, 0, 0, 1 }
  local z = T.from(flat(rows), { 4, 3 })

  it('matches hand-computed values: loss = mean(lse - z_y), grad = (softmax - onehot) / N', function()
    -- item 1 by hand: log(e + e^2 + e^3) - 3;  item 2: log 3
    local by_hand = (math.log(math.exp(1) + math.exp(2) + math.exp(3)) - 3 + math.log(3)) / 2
    local loss2, g2 = train.cross_entropy(T.from({ 1, 2, 3, 0, 0, 0 }, { 2, 3 }), { 2, 0 })
    close(loss2, by_hand, 1e-6, 'loss')
    local s = math.exp(1) + math.exp(2) + math.exp(3)
    local want = { math.exp(1) / s / 2, math.exp(2) / s / 2, (math.exp(3) / s - 1) / 2,
      (1 / 3 - 1) / 2, 1 / 6, 1 / 6 }
    for i, w in ipairs(want) do assert.is_true(math.abs(g2:data()[i - 1] - w) < 1e-7, 'grad ' .. i) end

    local loss, g = train.cross_entropy(z, labels)
    local rl, rg = ce_ref(rows, labels, 0)
    close(loss, rl, 1e-6, 'loss')
    assert.is_true(gc.rel(g, T.from(rg, { 4, 3 })) < 1e-6)
  end)

  it('is stable for large logits (log-sum-exp by the row maximum)', function()
    local loss, g = train.cross_entropy(T.from({ 1000, 0, -1000, 1000 }, { 2, 2 }), { 1, 0 })
    close(loss, (1000 + 2000) / 2, 1e-6, 'loss')
    assert.are.same({ 0.5, -0.5, -0.5, 0.5 }, g:totable())
  end)

  it('has the gradient of its loss (central differences)', function()
    local _, g = train.cross_entropy(z, labels, { label_smoothing = 0.1 })
    local fd, h = T.zeros { 4, 3 }, 1e-2
    local zp = z:clone()
    for i = 0, 11 do
      local z0 = zp:data()[i]
      zp:data()[i] = z0 + h
      local lp = train.cross_entropy(zp, labels, { label_smoothing = 0.1, grad = false })
      zp:data()[i] = z0 - h
      local lm = train.cross_entropy(zp, labels, { label_smoothing = 0.1, grad = false })
      zp:data()[i] = z0
      fd:data()[i] = (lp - lm) / (2 * h)
    end
    local err = gc.rel(g, fd)
    assert.is_true(err < 2e-3, ('relative error %.3g'):format(err))
  end)

  it('smooths labels as PyTorch: target (1 - e) onehot + e / K', function()
    for _, e in ipairs { 0.1, 0.5, 1 } do
      local loss, g = train.cross_entropy(z, labels, { label_smoothing = e })
      local rl, rg = ce_ref(rows, labels, e)
      close(loss, rl, 1e-6, 'loss at e = ' .. e)
      assert.is_true(gc.rel(g, T.from(rg, { 4, 3 })) < 1e-6)
    end
    -- PyTorch 1.13, float64: F.cross_entropy(tensor([[1., 2, 3], [0, 0, 0]]), tensor([2, 0]), label_smoothing=0.2)
    close(train.cross_entropy(T.from({ 1, 2, 3, 0, 0, 0 }, { 2, 3 }), { 2, 0 }, { label_smoothing = 0.2 }),
      0.8531091265562452, 1e-7, 'torch value')
  end)

  it('counts top-1 hits, ties going to the first class', function()
    assert.are.equal(2, train.correct(z, labels))
    assert.are.equal(1, train.correct(T.from({ 5, 5, 1, 1 }, { 2, 2 }), { 0, 1 }))
  end)

  it('rejects bad labels, shapes and NaN with specific messages', function()
    assert.has_error(function() train.cross_entropy(z, { 2, 0, 3, 1 }) end,
      'cross_entropy: label 3 of item 2 is outside 0..2')
    assert.has_error(function() train.cross_entropy(z, { 2, 0, -1, 1 }) end,
      'cross_entropy: label -1 of item 2 is outside 0..2')
    assert.has_error(function() train.cross_entropy(z, { 1, 2 }) end, 'train: 2 labels for a batch of 4')
    assert.has_error(function() train.cross_entropy(T.zeros { 2, 3, 1 }, { 0, 0 }) end,
      'cross_entropy: logits must be (N, K), got 2x3x1')
    local bad = z:clone()
    bad:data()[4] = 0 / 0
    assert.has_error(function() train.cross_entropy(bad, labels) end,
      'cross_entropy: loss is NaN (item 1 has a non-finite logit)')
    assert.has_error(function() train.cross_entropy(z, labels, { label_smoothing = 1.5 }) end,
      "train.cross_entropy: option 'label_smoothing' must be a number in [0, 1], got 1.5")
    local lab = ffi.new('int32_t[4]', { 2, 0, 0, 1 })
    assert.are.equal(C.MR_ESHAPE, C.mr_cross_entropy(nil, core.handle(T.zeros { 4, 2 }), core.handle(z), lab, 0))
    assert.are.equal('cross_entropy: grad_logits has shape 4x2, logits 4x3', ffi.string(C.mr_last_error()))
    assert.are.equal(C.MR_EINVAL, C.mr_cross_entropy(nil, nil, core.handle(z), nil, 0))
  end)
end)

-- A net x(3) -> linear 3->2 -> batchnorm(2): two weights, two biases... and buffers.
local function small_net()
  local b = nn.builder({ 3 }, { seed = 3 })
  local h = b:linear('fc', b.input, 3, 2)
  h = b:batchnorm2d('bn', h, 2)
  return b:build(h)
end

-- Sets every weight's gradient to a deterministic function of (step, index).
local function set_grads(net, step)
  local gs = {}
  for pi, p in ipairs(net:params()) do
    if p.kind == 'weight' then
      local g = net:grad(p.name)
      for i = 0, g:numel() - 1 do
        g:data()[i] = math.sin(7 * pi + 3 * i + 11 * step) * (1 + 0.5 * step)
      end
      gs[p.name] = g:totable()
    end
  end
  return gs
end

local function weights(net)
  local w = {}
  for _, p in ipairs(net:params()) do w[p.name] = p.tensor:totable() end
  return w
end

local function assert_weights(net, want, tol, what)
  for _, p in ipairs(net:params()) do
    local got = p.tensor:totable()
    for i, v in ipairs(want[p.name]) do
      if not (math.abs(got[i] - v) <= tol * (1 + math.abs(v))) then
        error(('%s: %s[%d] = %.9g, expected %.9g'):format(what, p.name, i, got[i], v), 2)
      end
    end
  end
end

describe('optimizers', function()
  it('SGD: momentum buffers, weight decay and Nesterov over two steps, as torch.optim.SGD', function()
    for _, cfg in ipairs {
      { lr = 0.1, momentum = 0.9, weight_decay = 0.01, nesterov = false },
      { lr = 0.05, momentum = 0.8, weight_decay = 5e-4, nesterov = true },
      { lr = 0.2, momentum = 0, weight_decay = 0.1, nesterov = false },
    } do
      local net = small_net()
      local w, buf = weights(net), {}
      local opt = train.sgd(cfg):build(net)
      for step = 1, 2 do
        local gs = set_grads(net, step)
        for name, g in pairs(gs) do
          buf[name] = buf[name] or {}
          for i, gi in ipairs(g) do
            local d = gi + cfg.weight_decay * w[name][i]
            local b = step == 1 and d or cfg.momentum * buf[name][i] + d
            buf[name][i] = b
            if cfg.momentum == 0 then
              w[name][i] = w[name][i] - cfg.lr * d
            elseif cfg.nesterov then
              w[name][i] = w[name][i] - cfg.lr * (d + cfg.momentum * b)
            else
              w[name][i] = w[name][i] - cfg.lr * b
            end
          end
        end
        opt:step()
        assert_weights(net, w, 1e-6, ('sgd %s step %d'):format(tostring(opt.spec), step))
      end
      assert.are.equal(2, opt:steps())
    end
  end)

  it('Adam: moments, bias correction and L2 weight decay over two steps, as torch.optim.Adam', function()
    local cfg = { lr = 0.01, beta1 = 0.9, beta2 = 0.99, weight_decay = 0.05 }
    local net = small_net()
    local w, m, v = weights(net), {}, {}
    local opt = train.adam(cfg):build(net)
    for step = 1, 2 do
      local gs = set_grads(net, step)
      for name, g in pairs(gs) do
        m[name], v[name] = m[name] or {}, v[name] or {}
        for i, gi in ipairs(g) do
          local d = gi + cfg.weight_decay * w[name][i]
          m[name][i] = cfg.beta1 * (m[name][i] or 0) + (1 - cfg.beta1) * d
          v[name][i] = cfg.beta2 * (v[name][i] or 0) + (1 - cfg.beta2) * d * d
          local mhat = m[name][i] / (1 - cfg.beta1 ^ step)
          local denom = math.sqrt(v[name][i]) / math.sqrt(1 - cfg.beta2 ^ step) + 1e-8
          w[name][i] = w[name][i] - cfg.lr * mhat / denom
        end
      end
      opt:step()
      assert_weights(net, w, 1e-6, 'adam step ' .. step)
    end
  end)

  it('never touch buffers (running statistics)', function()
    local net = small_net()
    net:param('bn.running_mean'):fill(0.25)
    local opt = train.adam {}:build(net)
    set_grads(net, 1)
    opt:step()
    assert.are.same({ 0.25, 0.25 }, net:param('bn.running_mean'):totable())
    assert.are.same({ 1, 1 }, net:param('bn.running_var'):totable())
  end)

  it('set and read the learning rate', function()
    local opt = train.sgd { lr = 0.1 }:build(small_net())
    opt:set_lr(0.025)
    close(opt:lr(), 0.025, 1e-7)
    assert.has_error(function() opt:set_lr(-1) end, 'optim_set_lr: learning rate -1 must be finite and >= 0')
  end)

  it('refuse a step on a NaN gradient, changing nothing', function()
    local net = small_net()
    local opt = train.sgd { lr = 0.1, momentum = 0.9 }:build(net)
    set_grads(net, 1)
    local before = weights(net)
    net:grad('bn.weight'):data()[1] = 0 / 0
    assert.has_error(function() opt:step() end, "optim_step: the gradient of 'bn.weight' is NaN at entry 1")
    assert_weights(net, before, 0, 'unchanged')
    assert.are.equal(0, opt:steps())
  end)

  it('reject bad options with clear messages', function()
    assert.has_error(function() train.sgd { lr = 0.1, nesterov = true } end, 'train.sgd: nesterov needs momentum > 0')
    assert.has_error(function() train.sgd { learning_rate = 0.1 } end,
      "train.sgd: unknown option 'learning_rate' (lr, momentum, nesterov, weight_decay)")
    assert.has_error(function() train.sgd { momentum = 1 } end,
      "train.sgd: option 'momentum' must be a number in [0, 1), got 1")
    assert.has_error(function() train.adam { beta2 = -0.1 } end,
      "train.adam: option 'beta2' must be a number in [0, 1), got -0.1")
    local out = ffi.new('mr_optim*[1]')
    assert.are.equal(C.MR_EINVAL, C.mr_optim_new(out, core.handle(small_net()), 7, 0.1, 0, 0, 0, 0))
    assert.are.equal('optim: unknown kind 7 (MR_OPTIM_SGD or MR_OPTIM_ADAM)', ffi.string(C.mr_last_error()))
    assert.are.equal(C.MR_EINVAL, C.mr_optim_new(out, core.handle(small_net()), C.MR_OPTIM_ADAM, 0.1, 0.9, 0.999, 0, 1))
    assert.are.equal('optim: Adam has no Nesterov option', ffi.string(C.mr_last_error()))
    local b = nn.builder { 3 }
    local nw = b:build(b:relu(b.input))
    assert.are.equal(C.MR_EINVAL, C.mr_optim_new(out, core.handle(nw), C.MR_OPTIM_SGD, 0.1, 0, 0, 0, 0))
    assert.are.equal('optim_new: the network has no weights to train', ffi.string(C.mr_last_error()))
    C.mr_optim_free(nil)
  end)
end)

describe('learning-rate schedules', function()
  it('cosine with warmup', function()
    local f = train.cosine(0.1, 110, 10)
    close(f(0), 0.01, 1e-12)
    close(f(9), 0.1, 1e-12)
    close(f(10), 0.1, 1e-12)
    close(f(60), 0.05, 1e-12)
    close(f(35), 0.05 * (1 + math.cos(math.pi / 4)), 1e-12)
    assert.are.equal(0, f(110))
    local g = train.cosine(1, 4)
    close(g(0), 1, 1e-12)
    close(g(2), 0.5, 1e-12)
    assert.has_error(function() train.cosine(0.1, 10, 10) end,
      'train.cosine: warmup_steps 10 must be in [0, total_steps = 10)')
  end)

  it('step decay as StepLR', function()
    local f = train.step_lr(0.1, 30, 0.1)
    close(f(0), 0.1, 1e-12)
    close(f(29), 0.1, 1e-12)
    close(f(30), 0.01, 1e-12)
    close(f(95), 1e-4, 1e-12)
  end)
end)

describe('augmentation', function()
  local x = T.zeros { 3, 2, 4, 5 }
  for i = 0, x:numel() - 1 do x:data()[i] = i + 1 end

  it('with pad 0 is the identity or a horizontal mirror, per item', function()
    local y = train.augment(x, { pad = 0, seed = 5 })
    local flips = 0
    for b = 1, 3 do
      local same, mirror = true, true
      for c = 1, 2 do
        for i = 1, 4 do
          for j = 1, 5 do
            same = same and y:get(b, c, i, j) == x:get(b, c, i, j)
            mirror = mirror and y:get(b, c, i, j) == x:get(b, c, i, 6 - j)
          end
        end
      end
      assert.is_true(same or mirror)
      if mirror then flips = flips + 1 end
    end
    assert.is_true(flips >= 0 and flips <= 3)
  end)

  it('shifts by at most pad, fills the border with pad_value, and is seeded', function()
    local y = train.augment(x, { pad = 2, flip = false, pad_value = -7, seed = 1 })
    local z = train.augment(x, { pad = 2, flip = false, pad_value = -7, seed = 1 })
    assert.are.same(y:totable(), z:totable())
    for b = 1, 3 do
      -- find the shift: some entry of the item equals x(b, 1, i + dy, j + dx)
      local found = false
      for dy = -2, 2 do
        for dx = -2, 2 do
          local ok = true
          for c = 1, 2 do
            for i = 1, 4 do
              for j = 1, 5 do
                local si, sj = i + dy, j + dx
                local want = (si >= 1 and si <= 4 and sj >= 1 and sj <= 5) and x:get(b, c, si, sj) or -7
                ok = ok and y:get(b, c, i, j) == want
              end
            end
          end
          found = found or ok
        end
      end
      assert.is_true(found, 'item ' .. b)
    end
    local w = train.augment(x, { pad = 2, seed = 2 })
    assert.are_not.same(y:totable(), w:totable())
  end)
end)

-- A tiny conv net for 1x8x8 images.
local function conv_net(seed)
  return nn.build(nn.Sequential {
    nn.Conv2d(1, 4, 3, { padding = 1 }), nn.BatchNorm2d(4), nn.Softplus { beta = 2 },
    nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 2),
  }, { 1, 8, 8 }, { seed = seed or 0 })
end

-- Two classes: bright top half (0) or bright bottom half (1), plus noise.
local function toy_set(n, seed)
  local images = T.randn({ n, 1, 8, 8 }, { seed = seed, stream = 1, std = 0.3 })
  local labels = {}
  local p = images:data()
  for k = 0, n - 1 do
    local c = k % 2
    labels[k + 1] = c
    for i = 0, 7 do
      if (i < 4) == (c == 0) then
        for j = 0, 7 do p[k * 64 + i * 8 + j] = p[k * 64 + i * 8 + j] + 1 end
      end
    end
  end
  return { images = images, labels = labels, n = n }
end

describe('training steps', function()
  it('lower the loss of a small net on a tiny batch within 20 steps', function()
    local net = conv_net(1):train()
    local ds = toy_set(16, 4)
    local opt = train.sgd { lr = 0.1, momentum = 0.9 }:build(net)
    local first, last
    for s = 1, 20 do
      local loss = train.step(net, opt, ds.images, ds.labels)
      first = first or loss
      last = loss
    end
    assert.is_true(last < 0.5 * first, ('loss %.4f -> %.4f (seed 4)'):format(first, last))
  end)

  it('reproduce one PyTorch SGD step (nesterov, weight decay) with batchnorm batch statistics', function()
    local st = require 'moreau.safetensors'
    local fx = st.load('tests/fixtures/train_step.safetensors')
    local net = nn.build(nn.Sequential {
      nn.Conv2d(1, 3, 3, { padding = 1 }), nn.BatchNorm2d(3), nn.Softplus { beta = 2 },
      nn.Flatten(), nn.Linear(75, 4),
    }, { 1, 5, 5 })
    for _, p in ipairs(net:params()) do
      assert.is_not_nil(fx[p.name], p.name)
      p.tensor:copy(fx[p.name])
    end
    local labels = {}
    for i, v in ipairs(fx.__labels:totable()) do labels[i] = math.floor(v + 0.5) end
    local opt = train.sgd { lr = 0.1, momentum = 0.9, nesterov = true, weight_decay = 5e-4 }:build(net)
    net:train()
    local loss = train.step(net, opt, fx.__x, labels)
    -- Tolerances: PyTorch ran in float64, moreau in float32 with double sums.
    close(loss, fx.__loss:data()[0], 1e-5, 'loss')
    for _, p in ipairs(net:params()) do
      -- gradients: ‖a − b‖ <= 1e-5 ‖b‖ + 1e-6 (the conv bias feeds a batchnorm,
      -- so its exact gradient is 0 and only an absolute bound makes sense)
      if p.kind == 'weight' then
        local g, want = net:grad(p.name), fx['grad.' .. p.name]
        local d = (g - want):norm()
        assert.is_true(d <= 1e-5 * want:norm() + 1e-6, ('grad %s: |diff| %.3g, |grad| %.3g'):format(
          p.name, d, want:norm()))
      end
      -- weights and running statistics after: |a - b| <= 1e-5 (1 + |b|) entrywise
      local want = fx['after.' .. p.name]
      local d = p.tensor:max_abs_diff(want)
      assert.is_true(d <= 1e-5 * (1 + want:abs():max()), ('after %s: max |diff| %.3g'):format(p.name, d))
      -- and the update itself (after - before): ‖a − b‖ <= 1e-5 ‖b‖ + 1e-7
      -- (measured: about 4e-7 relative)
      if p.kind == 'weight' then
        local upd, wupd = p.tensor - fx[p.name], want - fx[p.name]
        local d = (upd - wupd):norm()
        assert.is_true(d <= 1e-5 * wupd:norm() + 1e-7, ('update %s: |diff| %.3g, |update| %.3g'):format(
          p.name, d, wupd:norm()))
      end
    end
  end)
end)

describe('fit and evaluate', function()
  it('train with shuffling, augmentation, a schedule, evaluation and checkpoints, reproducibly', function()
    local ds, test = toy_set(64, 7), toy_set(32, 8)
    local ckpt = tmpname('-%d.safetensors')
    local function run()
      local net = conv_net(2)
      local h = train.fit(net, ds, {
        epochs = 3, batch_size = 16, seed = 5, progress = 'off',
        optimizer = train.sgd { lr = 0.05, momentum = 0.9, nesterov = true, weight_decay = 5e-4 },
        schedule = train.cosine(0.05, 12, 2), augment = { pad = 1, flip = true },
        test = test, checkpoint = ckpt, metadata = { recipe = 'train_spec' },
      })
      return net, h
    end
    local net, h = run()
    assert.are.equal(3, #h)
    assert.are.equal(12, h.optimizer:steps())
    assert.is_true(h[3].test_acc >= 0.9, ('test accuracy %.3f (seed 5)'):format(h[3].test_acc))
    assert.is_true(h[3].train_loss < h[1].train_loss)
    local acc, loss = train.evaluate(net, test, { batch_size = 10 })
    close(acc, h[3].test_acc, 1e-12, 'accuracy')
    close(loss, h[3].test_loss, 1e-6, 'loss') -- other batch sizes: other float32 rounding
    -- the last checkpoint holds the final weights and the metadata
    local st = require 'moreau.safetensors'
    local w, meta = st.load(ckpt:format(3))
    assert.are.equal('3', meta.epoch)
    assert.are.equal('train_spec', meta.recipe)
    assert.are.equal(('%.6f'):format(h[3].test_acc), meta.test_accuracy)
    assert.are.equal(0, w['0.weight']:max_abs_diff(net:param('0.weight')))
    -- same seed, same bits
    local net2 = run()
    for _, p in ipairs(net:params()) do
      assert.are.equal(0, p.tensor:max_abs_diff(net2:param(p.name)), p.name)
    end
    for e = 1, 3 do os.remove(ckpt:format(e)) end
  end)

  it('stops with a clear message when the loss turns NaN', function()
    local ds = toy_set(16, 3)
    local net = conv_net(0)
    local function boom()
      train.fit(net, ds, { epochs = 1, batch_size = 8, progress = 'off',
        optimizer = train.sgd { lr = 1e30 } })
    end
    local ok, err = pcall(boom)
    assert.is_false(ok)
    assert.truthy(tostring(err):find('train.fit: epoch 1, batch 2: ', 1, true), err)
    assert.truthy(tostring(err):find('NaN', 1, true) or tostring(err):find('not finite', 1, true)
      or tostring(err):find('infinite', 1, true), err)
  end)

  it('print progress lines when stderr is not a terminal', function()
    local ds = toy_set(32, 1)
    local path = tmpname('.log')
    local f = assert(io.open(path, 'w'))
    local saved = io.stderr
    io.stderr = f -- the progress writer takes io.stderr when fit starts
    local ok, err = pcall(train.fit, conv_net(0), ds, { epochs = 1, batch_size = 8, progress = 'lines', log_every = 2 })
    io.stderr = saved
    f:close()
    assert.is_true(ok, err)
    local text = assert(io.open(path)):read('*a')
    os.remove(path)
    local lines = 0
    for line in text:gmatch('[^\n]+') do
      if line:find('^epoch 1/1 +%d+/4  loss') then lines = lines + 1 end
    end
    assert.are.equal(2, lines, text)
    assert.truthy(text:find('img/s', 1, true))
    assert.truthy(text:find('left', 1, true))
  end)

  it('reject unknown options', function()
    assert.has_error(function() train.fit(conv_net(0), toy_set(4, 1), { epoch = 2 }) end)
  end)
end)
