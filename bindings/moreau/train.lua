--- moreau.train — train a network: cross-entropy, SGD / Adam, learning-rate
-- schedules, and a fit loop with seeded shuffling, augmentation, a progress
-- line, per-epoch evaluation and checkpoints (C underneath: engine/src/train.c).
--
--   local train = require 'moreau.train'
--   local steps = epochs * math.ceil(ds.n / 128)
--   local history = train.fit(net, ds, {
--     epochs = 30, batch_size = 128, seed = 0,
--     optimizer = train.sgd { lr = 0.1, momentum = 0.9, nesterov = true, weight_decay = 5e-4 },
--     schedule = train.cosine(0.1, steps, 0),
--     augment = { pad = 2, flip = true, pad_value = 0 },
--     test = test_ds, checkpoint = 'models/net.safetensors',
--   })
--   local acc, loss = train.evaluate(net, test_ds, { batch_size = 512 })
--
-- One training step is (train.step): forward in training mode (batchnorm batch
-- statistics), cross-entropy and its gradient, zero the parameter gradients,
-- backward with parameter gradients, one optimizer step.
--
-- A data set is moreau.data's: {images = (N, C, H, W) tensor, labels = Lua
-- array of 0-based class ids, n = N}. Labels given to the functions here may be
-- a Lua array of class ids, an int32_t cdata array, or a number (every item).
local ffi = require 'ffi'
local core = require 'moreau.core'
local T = require 'moreau.tensor'
local options = require 'moreau.options'
local C, check, handle = core.C, core.check, core.handle

local train = {}

-- ---------------------------------------------------------------- helpers

-- Options go through moreau.options.fill (defaults, `_domains`; options with
-- no default, such as fit's optimizer or schedule, are listed in `_extra`).

-- Labels (Lua array of class ids, int32_t cdata or one number) as an
-- int32_t[N] cdata, by core.labels (its one home), errors named 'train: ...'.
-- RETURN: the cdata (a fresh one unless `into` is given).
local function labels_of(labels, N, into)
  local out = core.labels(labels, N, into, 'train', 3) -- not a tail call: level 3 is our caller's caller
  return out
end

-- A wall clock in seconds (os.clock is CPU time, summed over threads).
local function now() return C.mr_wall_seconds() end
--- Wall-clock seconds (os.clock is CPU time, summed over threads).
train.now = now

local function stderr_is_tty() return C.mr_stderr_is_terminal() == 1 end

-- ------------------------------------------------------------------ loss

local loss_buf = ffi.new('float[1]')
local count_buf = ffi.new('int64_t[1]')

--- Mean cross-entropy of logits (N, K) against labels, as PyTorch's
-- nn.CrossEntropyLoss. ARGS: logits; labels; opts {label_smoothing = 0,
-- grad = true}. RETURN: loss (number), grad (tensor (N, K) = d loss / d logits,
-- or nil with grad = false).
function train.cross_entropy(logits, labels, opts)
  if not T.is(logits) then error('train.cross_entropy: logits must be a tensor', 2) end
  local o = options.fill('train.cross_entropy', { label_smoothing = 0, grad = true,
    _domains = { label_smoothing = 'num in [0, 1]', grad = 'bool' } }, opts)
  local N = core.size(logits, 1)
  local lab = labels_of(labels, N)
  local g = o.grad and T.zeros(core.shape(logits)) or nil
  check(C.mr_cross_entropy(loss_buf, g and handle(g) or nil, handle(logits), lab, o.label_smoothing))
  return tonumber(loss_buf[0]), g
end

--- Number of items whose top-1 class is their label.
function train.correct(logits, labels)
  if not T.is(logits) then error('train.correct: logits must be a tensor', 2) end
  local lab = labels_of(labels, core.size(logits, 1))
  check(C.mr_accuracy_count(count_buf, handle(logits), lab))
  return tonumber(count_buf[0])
end

-- ------------------------------------------------------------ optimizers

local Spec = {}
Spec.__index = Spec
local Optim = {}
Optim.__index = Optim
train.Spec, train.Optim = Spec, Optim

--- SGD as torch.optim.SGD (dampening 0): d = g + wd w; b = mu b + d (b = d at
-- the first step); w -= lr (d + mu b) with nesterov, lr b without.
-- ARGS: opts {lr = 0.1, momentum = 0, weight_decay = 0, nesterov = false}
-- RETURN: an optimizer description; :build(net) gives the optimizer.
function train.sgd(opts)
  local who = 'train.sgd'
  local o = options.fill(who, { lr = 0.1, momentum = 0, weight_decay = 0, nesterov = false,
    _domains = { lr = 'num >= 0', momentum = 'num in [0, 1)', weight_decay = 'num >= 0', nesterov = 'bool' } }, opts)
  if o.nesterov and o.momentum == 0 then error('train.sgd: nesterov needs momentum > 0', 2) end
  o.kind = 'sgd'
  return setmetatable(o, Spec)
end

--- Adam as torch.optim.Adam (eps 1e-8, L2 weight decay added to the gradient,
-- bias correction). ARGS: opts {lr = 1e-3, beta1 = 0.9, beta2 = 0.999,
-- weight_decay = 0} (betas = {b1, b2} also accepted)
function train.adam(opts)
  local who = 'train.adam'
  local domains = { lr = 'num >= 0', beta1 = 'num in [0, 1)', beta2 = 'num in [0, 1)', betas = 'table',
    weight_decay = 'num >= 0' }
  local o = options.fill(who, { lr = 1e-3, beta1 = 0.9, beta2 = 0.999, weight_decay = 0,
    _extra = { betas = true }, _domains = domains }, opts)
  if o.betas ~= nil then
    o.beta1 = options.check(who, 'betas[1]', o.betas[1], domains.beta1, 2)
    o.beta2 = options.check(who, 'betas[2]', o.betas[2], domains.beta2, 2)
  end
  o.betas = nil
  o.kind = 'adam'
  return setmetatable(o, Spec)
end

local optim_out = ffi.new('mr_optim*[1]')

--- The optimizer of this description over net's weights (state allocated now).
function Spec:build(net)
  if type(net) ~= 'table' or handle(net) == nil then error('optimizer:build: expected a moreau.nn Net', 2) end
  if self.kind == 'sgd' then
    check(C.mr_optim_new(optim_out, handle(net), C.MR_OPTIM_SGD, self.lr, self.momentum, 0,
      self.weight_decay, self.nesterov and 1 or 0))
  else
    check(C.mr_optim_new(optim_out, handle(net), C.MR_OPTIM_ADAM, self.lr, self.beta1, self.beta2,
      self.weight_decay, 0))
  end
  -- net is kept alive by the optimizer: the C object borrows it.
  return core.attach(setmetatable({ net = net, spec = self }, Optim), ffi.gc(optim_out[0], C.mr_optim_free))
end

--- A short description, e.g., "sgd lr=0.1 momentum=0.9 nesterov weight_decay=0.0005".
function Spec:__tostring()
  if self.kind == 'sgd' then
    return ('sgd lr=%g momentum=%g%s weight_decay=%g'):format(self.lr, self.momentum,
      self.nesterov and ' nesterov' or '', self.weight_decay)
  end
  return ('adam lr=%g beta1=%g beta2=%g weight_decay=%g'):format(self.lr, self.beta1, self.beta2,
    self.weight_decay)
end

--- One update of every weight from its accumulated gradient.
function Optim:step() check(C.mr_optim_step(handle(self))) return self end
--- Sets the learning rate of the next steps (a schedule calls it before
-- each step). Errors: lr negative or not finite. RETURN: self.
function Optim:set_lr(lr) check(C.mr_optim_set_lr(handle(self), lr)) return self end
--- The learning rate in force.
function Optim:lr() return tonumber(C.mr_optim_get_lr(handle(self))) end
--- The number of steps taken so far (t of Adam's bias corrections).
function Optim:steps() return tonumber(C.mr_optim_steps(handle(self))) end
--- Sets every parameter gradient of the network to 0 (net:zero_grad()):
-- a step does not, so call it before each backward. RETURN: self.
function Optim:zero_grad() self.net:zero_grad() return self end
--- Frees the optimizer's state now (else the collector does); a later call
-- on it raises "optimizer: freed".
function Optim:free()
  local p = core.detach(self, 'optimizer: freed (optimizer:free()); build a new one')
  if p ~= nil then C.mr_optim_free(ffi.gc(p, nil)) end
end

-- -------------------------------------------------------------- schedules

--- Cosine annealing with linear warmup, as a function step -> lr (step counts
-- optimizer steps from 0): lr0 (s + 1) / warmup for s < warmup, then
-- lr_min + (lr0 - lr_min) (1 + cos(pi (s - warmup) / (total - warmup))) / 2,
-- and lr_min from total on.
function train.cosine(lr0, total_steps, warmup_steps, lr_min)
  warmup_steps, lr_min = warmup_steps or 0, lr_min or 0
  if type(lr0) ~= 'number' or lr0 < 0 then error('train.cosine: lr0 must be a number >= 0', 2) end
  if type(total_steps) ~= 'number' or total_steps < 1 then
    error('train.cosine: total_steps must be >= 1', 2)
  end
  if warmup_steps < 0 or warmup_steps >= total_steps then
    error(('train.cosine: warmup_steps %s must be in [0, total_steps = %d)'):format(
      tostring(warmup_steps), total_steps), 2)
  end
  local span = total_steps - warmup_steps
  return function(s)
    if s < warmup_steps then return lr0 * (s + 1) / warmup_steps end
    if s >= total_steps then return lr_min end
    return lr_min + (lr0 - lr_min) * 0.5 * (1 + math.cos(math.pi * (s - warmup_steps) / span))
  end
end

--- Step decay as torch's StepLR: lr0 gamma^floor(step / step_size), a function
-- step -> lr (steps from 0, in whatever unit the caller counts).
function train.step_lr(lr0, step_size, gamma)
  gamma = gamma or 0.1
  if type(lr0) ~= 'number' or lr0 < 0 then error('train.step_lr: lr0 must be a number >= 0', 2) end
  if type(step_size) ~= 'number' or step_size < 1 then error('train.step_lr: step_size must be >= 1', 2) end
  return function(s) return lr0 * gamma ^ math.floor(s / step_size) end
end

-- ---------------------------------------------------------- augmentation

local aug_n = 384
local aug_u = ffi.new('float[?]', aug_n)

--- Random crop after zero padding and random horizontal flip, per item, as
-- torchvision's RandomCrop(H, padding = pad) then RandomHorizontalFlip(). Each
-- item draws three uniforms (row shift, column shift, flip) from the engine's
-- RNG: value numbers 3 (offset + k) .. 3 (offset + k) + 2 of (seed, stream) for
-- item k, so the same seed gives the same batch everywhere.
-- ARGS: x (B, C, H, W); opts {pad = 2, flip = true, pad_value = 0 (the value of
-- the border: for normalized data the normalized background), seed = 0,
-- stream = 0, offset = 0}
-- RETURN: a new tensor shaped like x.
function train.augment(x, opts)
  local o = options.fill('train.augment', { pad = 2, flip = true, pad_value = 0, seed = 0, stream = 0,
    offset = 0, _domains = { pad = 'int >= 0', flip = 'bool', pad_value = 'num', seed = 'seed', stream = 'seed',
      offset = 'seed' } }, opts)
  if not T.is(x) or core.ndim(x) ~= 4 then error('train.augment: x must be a (B, C, H, W) tensor', 2) end
  local B, Cc, H, W = core.size(x, 1), core.size(x, 2), core.size(x, 3), core.size(x, 4)
  local pad, pv = o.pad, o.pad_value
  if 3 * B > aug_n then
    aug_n = 3 * B
    aug_u = ffi.new('float[?]', aug_n)
  end
  check(C.mr_rng_uniform(aug_u, 3 * B, o.seed, o.stream, 3 * o.offset))
  local y = T.zeros(core.shape(x))
  -- the crop and flip move whole values, between copies of the entries (core.floats)
  local src, dst = core.floats(x), core.floats(y)
  local plane = H * W
  for b = 0, B - 1 do
    local dy = math.min(math.floor(aug_u[3 * b] * (2 * pad + 1)), 2 * pad) - pad
    local dx = math.min(math.floor(aug_u[3 * b + 1] * (2 * pad + 1)), 2 * pad) - pad
    local flip = o.flip and aug_u[3 * b + 2] < 0.5
    for c = 0, Cc - 1 do
      local base = (b * Cc + c) * plane
      for i = 0, H - 1 do
        local si = i + dy
        local row = base + i * W
        if si < 0 or si >= H then
          for j = 0, W - 1 do dst[row + j] = pv end
        else
          local srow = base + si * W
          for j = 0, W - 1 do
            local sj = (flip and (W - 1 - j) or j) + dx
            dst[row + j] = (sj >= 0 and sj < W) and src[srow + sj] or pv
          end
        end
      end
    end
  end
  return core.store(y, dst)
end

-- --------------------------------------------------------------- one step

local grad_cache = setmetatable({}, { __mode = 'k' }) -- net -> {N = grad tensor}

local function logits_grad(net, N, K)
  local per = grad_cache[net]
  if not per then per = {}; grad_cache[net] = per end
  local g = per[N]
  if not g then g = T.zeros { N, K }; per[N] = g end
  return g
end

local function check_net(net, who)
  if type(net) ~= 'table' or handle(net) == nil then error(who .. ': expected a moreau.nn Net', 3) end
end

--- One training step on a batch: forward (in the net's current mode; call
-- net:train() first for batch statistics), cross-entropy, zero gradients,
-- backward with parameter gradients, optimizer step.
-- ARGS: net, optim (from spec:build(net)), x (N, ...), labels, opts
-- {label_smoothing = 0}. RETURN: loss (mean, before the step), correct (top-1 count).
function train.step(net, optim, x, labels, opts)
  check_net(net, 'train.step')
  if getmetatable(optim) ~= Optim then error('train.step: optim must come from train.sgd{...}:build(net)', 2) end
  if not T.is(x) then error('train.step: x must be a tensor', 2) end
  local ls = opts and options.fill('train.step', { label_smoothing = 0, _domains = { label_smoothing = 'num in [0, 1]' } },
    opts).label_smoothing or 0
  local N = core.size(x, 1)
  local lab = labels_of(labels, N)
  check(C.mr_net_forward(handle(net), handle(x), nil))
  local z = C.mr_net_output_get(handle(net))
  local g = logits_grad(net, N, tonumber(C.mr_tensor_numel(z)) / N)
  check(C.mr_cross_entropy(loss_buf, handle(g), z, lab, ls))
  check(C.mr_accuracy_count(count_buf, z, lab))
  local loss, correct = tonumber(loss_buf[0]), tonumber(count_buf[0])
  check(C.mr_net_zero_grad(handle(net)))
  check(C.mr_net_backward(handle(net), handle(g), nil, 1))
  check(C.mr_optim_step(handle(optim)))
  return loss, correct
end

-- ----------------------------------------------------------- evaluation

local function batches(ds, bs, shuffle, seed, epoch)
  local data = require 'moreau.data'
  return data.batches(ds, bs, { shuffle = shuffle, seed = seed, epoch = epoch })
end

local function check_ds(ds, who)
  if type(ds) ~= 'table' or not T.is(ds.images) or type(ds.n) ~= 'number' or type(ds.labels) ~= 'table' then
    error(who .. ': expected a labelled data set {images =, labels =, n =} (moreau.data)', 3)
  end
end

--- Accuracy and mean cross-entropy of net on a labelled data set, in inference
-- mode (the net is left in inference mode).
-- ARGS: net, ds, opts {batch_size = 256}. RETURN: accuracy in [0, 1], mean loss.
function train.evaluate(net, ds, opts)
  check_net(net, 'train.evaluate')
  check_ds(ds, 'train.evaluate')
  local o = options.fill('train.evaluate', { batch_size = 256, _domains = { batch_size = 'int >= 1' } }, opts)
  net:eval()
  local lab = ffi.new('int32_t[?]', o.batch_size)
  local correct, loss_sum = 0, 0
  for x, y in batches(ds, o.batch_size, false) do
    local N = core.size(x, 1)
    labels_of(y, N, lab)
    check(C.mr_net_forward(handle(net), handle(x), nil))
    local z = C.mr_net_output_get(handle(net))
    check(C.mr_cross_entropy(loss_buf, nil, z, lab, 0))
    check(C.mr_accuracy_count(count_buf, z, lab))
    loss_sum = loss_sum + tonumber(loss_buf[0]) * N
    correct = correct + tonumber(count_buf[0])
    x:free()
  end
  return correct / ds.n, loss_sum / ds.n
end

-- ------------------------------------------------------------- progress

local function hms(s)
  if s ~= s or s == math.huge then return '?' end
  s = math.floor(s + 0.5)
  local h, m = math.floor(s / 3600), math.floor(s / 60) % 60
  if h > 0 then return ('%d:%02d:%02d'):format(h, m, s % 60) end
  return ('%d:%02d'):format(m, s % 60)
end
--- A duration of s seconds as progress lines write it: 'M:SS' or 'H:MM:SS'
-- (rounded to the second), '?' for NaN or inf.
train.hms = hms

-- A progress line on stderr: rewritten in place with \r on a terminal, else one
-- line every `every` batches.
local function progress(mode, every, out)
  out = out or io.stderr
  local tty = mode == 'tty' or (mode == 'auto' and stderr_is_tty())
  local last_draw, width = 0, 0
  local p = {}
  function p.update(s, final)
    local line = ('epoch %d/%d %5d/%d  loss %.4f  acc %5.2f%%  lr %.3g  %.0f img/s  left %s'):format(
      s.epoch, s.epochs, s.batch, s.batches, s.loss, 100 * s.acc, s.lr, s.rate, hms(s.left))
    if mode == 'off' then return end
    if tty then
      local t = now()
      if not final and t - last_draw < 0.2 then return end
      last_draw = t
      local pad = width > #line and (' '):rep(width - #line) or ''
      width = #line
      out:write('\r', line, pad)
      if final then out:write('\n'); width = 0 end
    elseif final or s.batch % every == 0 then
      out:write(line, '\n')
    end
    out:flush()
  end
  function p.say(msg)
    if mode == 'off' then return end
    out:write(msg, '\n')
    out:flush()
  end
  return p
end

-- ------------------------------------------------------------------ fit

local function is_callable(f)
  return type(f) == 'function' or (type(f) == 'table' and getmetatable(f) and getmetatable(f).__call)
end

--- Trains net on a labelled data set.
-- ARGS: net, ds (moreau.data: images, labels, n), opts:
--   epochs = 1, batch_size = 128, seed = 0 (shuffling, augmentation, dropout)
--   optimizer = train.sgd{lr = 0.1, momentum = 0.9, nesterov = true,
--               weight_decay = 5e-4} (a description or a built optimizer)
--   schedule  = nil (function step -> lr, steps counted over the whole run
--               from 0; nil keeps the optimizer's lr)
--   label_smoothing = 0
--   augment   = false | true | {pad = 2, flip = true, pad_value = 0}
--   test      = nil (a labelled data set evaluated after each epoch)
--   eval_batch_size = 256
--   checkpoint = nil (a path, '%d' replaced by the epoch: the net is saved
--               as safetensors after each epoch, with metadata)
--   metadata  = nil (extra metadata strings for the checkpoints)
--   progress  = 'auto' ('tty', 'lines', 'off'); log_every = 50 (batches, for 'lines')
--   on_epoch  = nil (function(stats) called after each epoch)
--   drop_last = false, max_batches = nil (stop each epoch early: timing runs)
-- RETURN: history, a list of per-epoch stats {epoch, train_loss, train_acc,
--   test_acc, test_loss, seconds, train_seconds, images_per_s, lr}
function train.fit(net, ds, opts)
  check_net(net, 'train.fit')
  check_ds(ds, 'train.fit')
  local o = options.fill('train.fit', {
    epochs = 1, batch_size = 128, seed = 0, label_smoothing = 0, augment = false, eval_batch_size = 256,
    progress = 'auto', log_every = 50, drop_last = false,
    _extra = { optimizer = true, schedule = true, test = true, checkpoint = true, metadata = true,
      on_epoch = true, max_batches = true },
    _domains = { epochs = 'int >= 1', batch_size = 'int >= 1', seed = 'seed', label_smoothing = 'num in [0, 1]',
      eval_batch_size = 'int >= 1', checkpoint = 'string', log_every = 'int >= 1', drop_last = 'bool',
      max_batches = 'int >= 1', metadata = 'table' },
  }, opts)
  if o.test ~= nil then check_ds(o.test, 'train.fit (test)') end
  if o.schedule ~= nil and not is_callable(o.schedule) then
    error('train.fit: schedule must be a function step -> lr', 2)
  end
  -- progress = true / false are 'auto' / 'off'
  if o.progress == false then o.progress = 'off' elseif o.progress == true then o.progress = 'auto' end
  options.check('train.fit', 'progress', o.progress, 'one of auto, tty, lines, off', 2)
  local aug = o.augment
  if aug == true then aug = {} end
  if aug then
    aug = options.fill('train.fit (augment)', { pad = 2, flip = true, pad_value = 0,
      _domains = { pad = 'int >= 0', flip = 'bool', pad_value = 'num' } }, aug)
  end

  local optim = o.optimizer or train.sgd { lr = 0.1, momentum = 0.9, nesterov = true, weight_decay = 5e-4 }
  if getmetatable(optim) == Spec then
    optim = optim:build(net)
  elseif getmetatable(optim) ~= Optim then
    error('train.fit: optimizer must be train.sgd{...} / train.adam{...} or a built optimizer', 2)
  end

  local bs, n = o.batch_size, ds.n
  local per_epoch = o.drop_last and math.floor(n / bs) or math.ceil(n / bs)
  if o.max_batches then per_epoch = math.min(per_epoch, o.max_batches) end
  if per_epoch < 1 then error(('train.fit: %d items make no batch of %d'):format(n, bs), 2) end
  local total = per_epoch * o.epochs
  local prog = progress(o.progress == 'lines' and 'lines' or o.progress, o.log_every)
  local lab = ffi.new('int32_t[?]', bs)
  local history = {}
  local step = optim:steps()
  local step0 = step
  local t_start = now()
  local train_time = 0
  net:seed(o.seed)

  for epoch = 1, o.epochs do
    net:train()
    local t0 = now()
    local seen, loss_sum, correct, k = 0, 0, 0, 0
    local lr = optim:lr()
    local data = require 'moreau.data'
    for x, y in data.batches(ds, bs, { shuffle = true, seed = o.seed, epoch = epoch, drop_last = o.drop_last }) do
      if k >= per_epoch then x:free(); break end
      k = k + 1
      local N = core.size(x, 1)
      local xb = x
      if aug then
        xb = train.augment(x, { pad = aug.pad, flip = aug.flip, pad_value = aug.pad_value,
          seed = o.seed, stream = 0x41554700 + epoch, offset = seen })
        x:free()
      end
      if o.schedule then
        lr = o.schedule(step)
        optim:set_lr(lr)
      end
      labels_of(y, N, lab)
      local ok, loss, c = pcall(train.step, net, optim, xb, lab, { label_smoothing = o.label_smoothing })
      xb:free()
      if not ok then
        error(('train.fit: epoch %d, batch %d: %s'):format(epoch, k, tostring(loss)), 2)
      end
      step = step + 1
      seen = seen + N
      loss_sum = loss_sum + loss * N
      correct = correct + c
      local el = now() - t0
      local done = step - step0
      local rate_steps = (train_time + el) / done
      prog.update({
        epoch = epoch, epochs = o.epochs, batch = k, batches = per_epoch,
        loss = loss_sum / seen, acc = correct / seen, lr = lr, rate = seen / math.max(el, 1e-9),
        left = (total - done) * rate_steps,
      }, k == per_epoch)
    end
    local t_train = now() - t0
    train_time = train_time + t_train
    local stats = {
      epoch = epoch, train_loss = loss_sum / seen, train_acc = correct / seen, lr = lr,
      train_seconds = t_train, images_per_s = seen / math.max(t_train, 1e-9), images = seen,
    }
    if o.test then
      stats.test_acc, stats.test_loss = train.evaluate(net, o.test, { batch_size = o.eval_batch_size })
    end
    net:eval()
    stats.seconds = now() - t0
    local msg = ('epoch %d/%d  train loss %.4f acc %.2f%%'):format(epoch, o.epochs, stats.train_loss,
      100 * stats.train_acc)
    if stats.test_acc then
      msg = msg .. ('  test loss %.4f acc %.2f%%'):format(stats.test_loss, 100 * stats.test_acc)
    end
    msg = msg .. ('  %.1fs (%.0f img/s)'):format(stats.seconds, stats.images_per_s)
    if o.checkpoint then
      local path = o.checkpoint:find('%d', 1, true) and o.checkpoint:format(epoch) or o.checkpoint
      local meta = { epoch = tostring(epoch), epochs = tostring(o.epochs), seed = tostring(o.seed),
        train_loss = ('%.6f'):format(stats.train_loss), train_accuracy = ('%.6f'):format(stats.train_acc),
        optimizer = tostring(optim.spec) }
      if stats.test_acc then
        meta.test_accuracy = ('%.6f'):format(stats.test_acc)
        meta.test_loss = ('%.6f'):format(stats.test_loss)
      end
      for key, v in pairs(o.metadata or {}) do meta[key] = tostring(v) end
      require('moreau.safetensors').save_net(net, path, meta)
      stats.checkpoint = path
      msg = msg .. '  -> ' .. path
    end
    prog.say(msg)
    history[epoch] = stats
    if o.on_epoch then o.on_epoch(stats) end
  end
  history.seconds = now() - t_start
  history.optimizer = optim
  return history
end

return train
