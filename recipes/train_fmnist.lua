--- recipes/train_fmnist.lua — trains the shipped Fashion-MNIST model:
-- moreau.models.resnet_fmnist (softplus, beta 10) on Fashion-MNIST from
-- Debian's dataset-fashion-mnist, normalized with the data set's mean and std,
-- with random crops (2-pixel padding) and horizontal flips, SGD with Nesterov
-- momentum 0.9, weight decay 5e-4, batch 128 and a cosine learning-rate
-- schedule with a short linear warmup. It checkpoints the weights after every
-- epoch and, at the end, writes a JSON card next to them (architecture,
-- options, data, per-epoch history, final test accuracy, time per epoch, the
-- command).
--
--   luajit recipes/train_fmnist.lua --epochs=10 --out=models/resnet_fmnist.safetensors
--   luajit recipes/train_fmnist.lua --subset=6000 --epochs=1 --out=/tmp/t.safetensors   (timing)
--   moreau train --epochs=10                  (weights into the results folder)
--   moreau train --epochs=8 --weights=models/resnet_fmnist.safetensors   (replaces the shipped model)
--
-- The file is a moreau recipe (it returns {name, params, run}, for `moreau
-- run` / `moreau train`, where --out names the results folder and --weights
-- the weights) and also runs as a script (`luajit recipes/train_fmnist.lua`,
-- where --out is an alias of --weights). Options: run with --help.
local function script_dir()
  local src = debug.getinfo(1, 'S').source
  return (src:sub(1, 1) == '@' and src:sub(2) or src):match('^(.*)/[^/]*$') or '.'
end
-- Run from a source tree without an installed moreau: find bindings/ next to recipes/.
if not pcall(require, 'moreau.core') then
  local root = script_dir() .. '/..'
  package.path = root .. '/bindings/?.lua;' .. root .. '/bindings/?/init.lua;' .. package.path
end

local moreau = require 'moreau'
local data = require 'moreau.data'
local models = require 'moreau.models'
local train = require 'moreau.train'

local params = {
  epochs = { type = 'int', default = 8, domain = 'int >= 1', help = 'passes over the training set' },
  weights = { type = 'string', default = '', domain = 'string', file = 'write',
    help = "weights (safetensors, checkpointed every epoch; the card goes next to it as .json); '': " ..
      'resnet_fmnist.safetensors in the results folder (moreau run/train) or the current folder (a script), ' ..
      'never the shipped model unless named' },
  seed = { type = 'int', default = 0, domain = 'seed', help = 'initialization, shuffling and augmentation' },
  lr = { type = 'number', default = 0.1, domain = 'num >= 0', help = 'peak learning rate (cosine schedule down to 0)' },
  momentum = { type = 'number', default = 0.9, domain = 'num in [0, 1)', help = 'SGD Nesterov momentum' },
  weight_decay = { type = 'number', default = 5e-4, domain = 'num >= 0', help = 'L2 weight decay' },
  batch_size = { type = 'int', default = 128, domain = 'int >= 1', help = 'batch size' },
  warmup = { type = 'number', default = 1, domain = 'num >= 0', help = 'epochs of linear learning-rate warmup' },
  augment = { type = 'bool', default = true, domain = 'bool', help = 'random crop (pad 2) + horizontal flip' },
  label_smoothing = { type = 'number', default = 0, domain = 'num in [0, 1]', help = 'cross-entropy label smoothing' },
  beta = { type = 'number', default = 10, domain = 'num > 0', help = 'softplus beta of the model' },
  width = { type = 'number', default = 1, domain = 'num > 0', help = 'channel multiplier of the model' },
  subset = { type = 'int', default = 0, domain = 'int >= 0', help = 'train on the first N images only (0: all 60000), for timing' },
  test_subset = { type = 'int', default = 0, domain = 'int >= 0', help = 'evaluate on the first N test images only (0: all 10000)' },
  threads = { type = 'int', default = 0, domain = 'int in [0, 4096]', help = 'engine threads (0: all cores)' },
  progress = { type = 'string', default = 'auto', domain = 'one of auto, tty, lines, off', help = 'auto, tty, lines or off' },
  data_dir = { type = 'string', default = '', domain = 'string', file = 'read', help = "Fashion-MNIST directory (empty: $MOREAU_FMNIST_DIR or Debian's)" },
}

-- Direct runs: --key=value arguments checked against params (--out = --weights).
local function usage(msg)
  local keys = {}
  for k in pairs(params) do keys[#keys + 1] = k end
  table.sort(keys)
  local lines = { 'usage: luajit recipes/train_fmnist.lua [--key=value ...]', '' }
  for _, k in ipairs(keys) do
    local d = params[k].default
    lines[#lines + 1] = ('  --%-16s %s (default %s)'):format(k, params[k].help, d == '' and "''" or tostring(d))
  end
  lines[#lines + 1] = '  --out              the same as --weights'
  local text = table.concat(lines, '\n')
  if msg then
    io.stderr:write('train_fmnist: ', msg, '\n', text, '\n')
    os.exit(2)
  end
  print(text)
  os.exit(0)
end

local function parse(argv)
  local o = {}
  for k, spec in pairs(params) do o[k] = spec.default end
  for _, a in ipairs(argv or {}) do
    if a == '--help' or a == '-h' then usage() end
    local k, v = a:match('^%-%-([%w_%-]+)=(.*)$')
    if not k then usage(("cannot read argument '%s' (expected --key=value)"):format(a)) end
    k = k:gsub('-', '_')
    if k == 'out' then k = 'weights' end
    local spec = params[k]
    if not spec then usage(("unknown option '--%s'"):format(k)) end
    if spec.type == 'int' or spec.type == 'number' then
      local n = tonumber(v)
      if not n or (spec.type == 'int' and n ~= math.floor(n)) then
        usage(("option --%s needs %s, got '%s'"):format(k, spec.type == 'int' and 'an integer' or 'a number', v))
      end
      v = n
    elseif spec.type == 'bool' then
      local b = ({ ['1'] = true, ['true'] = true, yes = true, ['0'] = false, ['false'] = false, no = false })[v]
      if b == nil then usage(("option --%s needs true or false, got '%s'"):format(k, v)) end
      v = b
    end
    local d = spec.domain and require('moreau.options').domain(spec.domain)
    if d and not d.ok(v) then usage(("option --%s must be %s, got '%s'"):format(k, d.text, tostring(v))) end
    o[k] = v
  end
  return o
end

-- ---------------------------------------------------------------- JSON

local function json(v, indent)
  indent = indent or ''
  local t = type(v)
  if t == 'nil' then return 'null' end
  if t == 'boolean' then return tostring(v) end
  if t == 'number' then
    if v ~= v or v == math.huge or v == -math.huge then return 'null' end
    if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return ('%d'):format(v) end
    return ('%.10g'):format(v)
  end
  if t == 'string' then
    return '"' .. v:gsub('[%c"\\]', function(c)
      local e = { ['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }
      return e[c] or ('\\u%04x'):format(c:byte())
    end) .. '"'
  end
  local inner = indent .. '  '
  if #v > 0 or next(v) == nil then
    if next(v) == nil then return '[]' end
    local parts = {}
    for i, x in ipairs(v) do parts[i] = inner .. json(x, inner) end
    return '[\n' .. table.concat(parts, ',\n') .. '\n' .. indent .. ']'
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do parts[i] = inner .. json(k) .. ': ' .. json(v[k], inner) end
  return '{\n' .. table.concat(parts, ',\n') .. '\n' .. indent .. '}'
end

-- ---------------------------------------------------------------- main

--- Trains and writes the weights and the card. o: the parameters; rep: the
-- results folder under `moreau run` (nil when run as a script); command: the
-- command line recorded in the card and the weights' metadata.
local function main(o, rep, command)
  if o.threads > 0 then moreau.set_num_threads(o.threads) end
  if o.weights == '' then
    o.weights = rep and (rep.dir .. '/resnet_fmnist.safetensors') or 'resnet_fmnist.safetensors'
  end

  local function load_split(split, n)
    local ds = data.fashion_mnist { split = split, dir = o.data_dir ~= '' and o.data_dir or nil }
    if n > 0 and n < ds.n then ds = data.subset(ds, 1, n) end
    local raw = ds.images
    ds.images = data.normalize(raw, data.FASHION_MNIST_MEAN, data.FASHION_MNIST_STD)
    raw:free()
    return ds
  end
  local ds = load_split('train', o.subset)
  local test = load_split('test', o.test_subset)

  local net = models.resnet_fmnist { beta = o.beta, width = o.width, seed = o.seed }
  local steps_per_epoch = math.ceil(ds.n / o.batch_size)
  local total = steps_per_epoch * o.epochs
  local warmup = math.min(math.floor(o.warmup * steps_per_epoch), total - 1)
  -- The border of a crop is the background (raw 0) after normalization.
  local background = (0 - data.FASHION_MNIST_MEAN[1]) / data.FASHION_MNIST_STD[1]
  local optimizer = train.sgd { lr = o.lr, momentum = o.momentum, nesterov = true, weight_decay = o.weight_decay }
  local augment = o.augment and { pad = 2, flip = true, pad_value = background } or false

  local dir = o.weights:match('^(.*)/[^/]*$')
  if dir and dir ~= '' then os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "'") end
  local card_path = (o.weights:gsub('%.safetensors$', '')) .. '.json'


  io.stderr:write(('train_fmnist: %s, %d parameters; %d training / %d test images; %d epochs of %d steps; %s; %s\n')
    :format('resnet_fmnist', net:num_params(), ds.n, test.n, o.epochs, steps_per_epoch,
      tostring(optimizer), moreau.backend_info()))

  local history = train.fit(net, ds, {
    epochs = o.epochs, batch_size = o.batch_size, seed = o.seed,
    optimizer = optimizer, schedule = train.cosine(o.lr, total, warmup),
    label_smoothing = o.label_smoothing, augment = augment, test = test,
    checkpoint = o.weights, progress = o.progress,
    metadata = { model = 'resnet_fmnist', recipe = 'recipes/train_fmnist.lua', command = command,
      beta = tostring(o.beta), width = tostring(o.width) },
  })

  local epochs, sum_s, sum_train = {}, 0, 0
  for i, h in ipairs(history) do
    epochs[i] = { epoch = h.epoch, train_loss = h.train_loss, train_accuracy = h.train_acc,
      test_loss = h.test_loss, test_accuracy = h.test_acc, seconds = h.seconds,
      train_seconds = h.train_seconds, images_per_second = h.images_per_s, last_lr = h.lr }
    sum_s, sum_train = sum_s + h.seconds, sum_train + h.train_seconds
  end
  local last = history[#history]
-- The accuracy on the first 1000 test images, which the test suite re-checks against this card.
local first_1000 = train.evaluate(net, data.subset(test, 1, math.min(1000, test.n)), { batch_size = 250 })
  local card = {
    model = {
      architecture = 'resnet_fmnist', constructor = 'moreau.models.resnet_fmnist',
      options = { beta = o.beta, width = o.width, num_classes = 10, seed = o.seed, activation = 'softplus' },
      parameters = net:num_params(), input = { 1, 28, 28 }, weights = o.weights,
    },
    data = {
      name = 'fashion-mnist', source = 'Debian dataset-fashion-mnist', train_files = ds.files, test_files = test.files,
      train_images = ds.n, test_images = test.n,
      normalization = { mean = data.FASHION_MNIST_MEAN, std = data.FASHION_MNIST_STD },
      augmentation = augment and 'random crop 28 after 2-pixel padding (background value), horizontal flip p=0.5'
        or 'none',
    },
    training = {
      optimizer = { name = 'sgd', lr = o.lr, momentum = o.momentum, nesterov = true,
        weight_decay = o.weight_decay },
      schedule = { name = 'cosine', warmup_steps = warmup, total_steps = total, lr_min = 0 },
      epochs = o.epochs, batch_size = o.batch_size, seed = o.seed, label_smoothing = o.label_smoothing,
      loss = 'cross-entropy (mean)', batchnorm = 'batch statistics in training, momentum 0.1',
    },
    results = {
      test_accuracy = last.test_acc, test_loss = last.test_loss, first_1000_accuracy = first_1000,
      train_accuracy = last.train_acc, train_loss = last.train_loss,
      seconds_per_epoch = sum_s / #history, train_seconds_per_epoch = sum_train / #history,
      total_seconds = history.seconds, history = epochs,
    },
    environment = { moreau = moreau.version, backend = moreau.backend_info(),
      threads = moreau.get_num_threads(), date = os.date('!%Y-%m-%dT%H:%M:%SZ') },
    command = command,
  }
  local f = assert(io.open(card_path, 'w'))
  f:write(json(card), '\n')
  f:close()
  io.stderr:write(('train_fmnist: test accuracy %.2f%% after %d epochs (%.1f s per epoch); wrote %s and %s\n')
    :format(100 * last.test_acc, o.epochs, sum_s / #history, o.weights, card_path))
  if rep then
    rep.results.test_accuracy = last.test_acc
    rep.results.test_loss = last.test_loss
    rep.results.seconds_per_epoch = sum_s / #history
    rep.results.weights = o.weights
    rep.results.card = card_path
    rep.results.history = epochs
  end
  return card
end

local recipe = {
  name = 'train_fmnist',
  description = 'train the shipped softplus ResNet (moreau.models.resnet_fmnist) on Fashion-MNIST',
  params = params,
  writes = { 'resnet_fmnist.safetensors', 'resnet_fmnist.json' }, -- with the default --weights; else where it says
  run = function(p, rep)
    local args = {}
    for k, v in pairs(p) do args[#args + 1] = ('--%s=%s'):format(k, tostring(v)) end
    table.sort(args)
    return main(p, rep, 'moreau train ' .. table.concat(args, ' '))
  end,
}

-- Run as a script: luajit recipes/train_fmnist.lua --key=value ...
if type(arg) == 'table' and type(arg[0]) == 'string' and arg[0]:match('train_fmnist%.lua$') then
  local cmd = { 'luajit', arg[0] }
  for _, a in ipairs(arg) do cmd[#cmd + 1] = a end
  main(parse(arg), nil, table.concat(cmd, ' '))
end

return recipe
