--- moreau.models — the model zoo: networks built with moreau.nn whose
-- parameters carry torchvision's state_dict names, so that a PyTorch model
-- saved as safetensors loads by name.
--
--   local models = require 'moreau.models'
--   local net = models.resnet18_cifar { num_classes = 10, activation = 'softplus', beta = 1 }
--   models.load(net, 'resnet18_cifar.safetensors')     -- strict: every name must match
--   models.save(net, 'copy.safetensors', { note = 'fine-tuned' })
--
-- Every constructor takes one table of options, checks it (an unknown option
-- or value raises an error naming the constructor and what is allowed) and
-- returns a moreau.nn Net in inference mode, initialized as PyTorch initializes
-- a fresh model (conv/linear uniform in ±1/sqrt(fan_in), batchnorm weight 1,
-- bias 0, mean 0, var 1) from the counter-based RNG keyed by `seed`.
-- net.model = {name =, options =} records how it was built.
--
-- The models (input shape per sample; parameter counts are trained weights,
-- batchnorm running statistics not counted):
--
--   resnet18_cifar  3x32x32. torchvision's ResNet-18 adapted to CIFAR as is
--                   usual: conv1 is 3x3 stride 1 padding 1 (no bias), no
--                   max-pool; layer1..layer4 of two BasicBlocks with
--                   64, 128, 256, 512 channels (× width) and strides 1, 2, 2, 2;
--                   global average pool; fc. 11,173,962 parameters at width 1
--                   with 10 classes; 0.56 G multiply-adds per image.
--   resnet_fmnist   1x28x28. A small softplus ResNet for Fashion-MNIST, same
--                   names (conv1, bn1, layer1..3, fc):
--                     conv1 3x3 1->32, bn1, softplus                     28x28
--                     layer1: 1 BasicBlock 32->32,  stride 1             28x28
--                     layer2: 1 BasicBlock 32->64,  stride 2 (+ 1x1 ds)  14x14
--                     layer3: 1 BasicBlock 64->128, stride 2 (+ 1x1 ds)   7x7
--                     adaptive avg pool 1x1, flatten, fc 128->10
--                   308,074 parameters at width 1 with 10 classes;
--                   37.2 M multiply-adds per image (74 M floating-point
--                   operations counting × and + apart; about 40 % of it in
--                   layer1). It is explained T×m = thousands of times per
--                   image, so it is kept this small (width = 0.5 quarters
--                   it). beta defaults to 10: a softplus close to ReLU (the
--                   two differ by at most ln 2 / beta ≈ 0.07, on O(1)
--                   batchnormed inputs), yet with curvature bounded by
--                   beta/4 = 2.5, so that Hessian-vector products (attacks,
--                   MoreauGrad's smoothing) are meaningful and not spikes.
--   efficientnet_b0 3x(image_size)x(image_size), 224 by default. torchvision's
--                   efficientnet_b0: features.0 (conv 3x3 s2 + bn + SiLU),
--                   features.1..7 of MBConv blocks (expand 1x1 conv + bn + SiLU
--                   when the expand ratio is not 1, depthwise conv + bn + SiLU,
--                   squeeze-excitation fc1/fc2 1x1 convs with SiLU / Sigmoid,
--                   project 1x1 conv + bn, residual add when stride 1 and the
--                   channels agree; stochastic depth is the identity at
--                   inference), features.8 (1x1 conv to 4 × the last width,
--                   1280 at width 1, + bn + SiLU), avg pool, classifier.0
--                   (dropout 0.2, identity at inference), classifier.1 linear.
--                   Widths are torchvision's _make_divisible(c * width, 8),
--                   depths ceil(n * depth). 5,288,548 parameters at width 1
--                   with 1000 classes; 0.39 G multiply-adds per 224x224 image.
local nn = require 'moreau.nn'

local models = {}

-- ------------------------------------------------------------ options
-- Every builder fills its options with moreau.options (unknown names and
-- values outside their domains are refused with the house wording).
local options = require 'moreau.options'

--- Records how the net was built and puts it in inference mode.
local function finish(net, name, o)
  net.model = { name = name, options = o }
  net:eval()
  return net
end

-- ------------------------------------------------------------ ResNets

--- An activation applier (b, x, label) -> node for 'relu' or 'softplus'.
local function activation(o)
  if o.activation == 'softplus' then
    local sp = { beta = o.beta }
    return function(b, x, label) return b:softplus(x, sp, label) end
  end
  return function(b, x, label) return b:relu(x, label) end -- the domain admits relu or softplus
end

--- torchvision's BasicBlock under `prefix` (e.g. 'layer2.0'):
--   out = act(bn2(conv2(act(bn1(conv1(x))))) + shortcut(x)),
--   shortcut = downsample.1(downsample.0(x)) (1x1 conv, stride, no bias; bn)
--              when the stride is not 1 or the channels change; x otherwise.
-- Parameters are created in state_dict order (conv1, bn1, conv2, bn2, downsample).
local function basic_block(b, x, prefix, cin, cout, stride, act)
  local j = nn.join
  local h = b:conv2d(j(prefix, 'conv1'), x, cin, cout, 3, { stride = stride, padding = 1, bias = false })
  h = b:batchnorm2d(j(prefix, 'bn1'), h, cout)
  h = act(b, h, j(prefix, 'act1'))
  h = b:conv2d(j(prefix, 'conv2'), h, cout, cout, 3, { padding = 1, bias = false })
  h = b:batchnorm2d(j(prefix, 'bn2'), h, cout)
  local s = x
  if stride ~= 1 or cin ~= cout then
    s = b:conv2d(j(prefix, 'downsample.0'), x, cin, cout, 1, { stride = stride, bias = false })
    s = b:batchnorm2d(j(prefix, 'downsample.1'), s, cout)
  end
  h = b:add(h, s, j(prefix, 'add'))
  return act(b, h, j(prefix, 'act2'))
end

--- ResNet widths: channels × width, rounded to the nearest integer, at least 1.
-- (Exported as models.scale_channels so scripts/make_fixtures.py has a
-- documented rule to mirror.)
local function scale(c, width) return math.max(1, math.floor(c * width + 0.5)) end
--- ResNet widths: channels × width, rounded to the nearest integer, at least 1
-- (the rule scripts/make_fixtures.py mirrors). ARGS: c, width.
models.scale_channels = scale

--- A ResNet of BasicBlocks in torchvision's naming.
-- spec: input (sample shape), stem (channels of conv1, before width), stages
-- (list of {channels, blocks, stride}), num_classes, width, seed, act.
local function resnet(spec)
  local b = nn.builder(spec.input, { seed = spec.seed })
  local cin = spec.input[1]
  local c = scale(spec.stem, spec.width)
  local h = b:conv2d('conv1', b.input, cin, c, 3, { stride = 1, padding = 1, bias = false })
  h = b:batchnorm2d('bn1', h, c)
  h = spec.act(b, h, 'act')
  for i, st in ipairs(spec.stages) do
    local cout = scale(st[1], spec.width)
    for k = 0, st[2] - 1 do
      h = basic_block(b, h, ('layer%d.%d'):format(i, k), c, cout, k == 0 and st[3] or 1, spec.act)
      c = cout
    end
  end
  h = b:adaptive_avgpool2d(h, 1, 'avgpool')
  h = b:flatten(h, 'flatten')
  h = b:linear('fc', h, c, spec.num_classes)
  return b:build(h)
end

--- CIFAR ResNet-18 (3x32x32 input), torchvision names.
-- ARGS: opts {num_classes = 10, activation = 'relu' | 'softplus', beta = 1
--   (softplus only), width = 1 (channel multiplier), seed = 0 (initialization)}
-- RETURN: a Net, (N,3,32,32) -> (N,num_classes) logits.
function models.resnet18_cifar(opts)
  local who = 'resnet18_cifar'
  local o = options.fill(who, {
    num_classes = 10, activation = 'relu', beta = 1, width = 1, seed = 0,
    _domains = { num_classes = 'int >= 1', activation = 'one of relu, softplus', beta = 'num > 0',
                 width = 'num > 0', seed = 'seed' },
  }, opts)
  local act = activation(o)
  return finish(resnet {
    input = { 3, 32, 32 }, stem = 64,
    stages = { { 64, 2, 1 }, { 128, 2, 2 }, { 256, 2, 2 }, { 512, 2, 2 } },
    num_classes = o.num_classes, width = o.width, seed = o.seed, act = act,
  }, who, o)
end

--- Small softplus ResNet for Fashion-MNIST (1x28x28 input); see the top of
-- this file for the architecture and its cost.
-- ARGS: opts {num_classes = 10, beta = 10, width = 1, seed = 0}
-- RETURN: a Net, (N,1,28,28) -> (N,num_classes) logits.
function models.resnet_fmnist(opts)
  local who = 'resnet_fmnist'
  local o = options.fill(who, {
    num_classes = 10, beta = 10, width = 1, seed = 0,
    _domains = { num_classes = 'int >= 1', beta = 'num > 0', width = 'num > 0', seed = 'seed' },
  }, opts)
  local act = activation { activation = 'softplus', beta = o.beta }
  return finish(resnet {
    input = { 1, 28, 28 }, stem = 32,
    stages = { { 32, 1, 1 }, { 64, 1, 2 }, { 128, 1, 2 } },
    num_classes = o.num_classes, width = o.width, seed = o.seed, act = act,
  }, who, o)
end

-- ------------------------------------------------------- EfficientNet

--- torchvision's _make_divisible: v rounded to the nearest multiple of
-- divisor (at least divisor), not going down by more than 10 %.
local function make_divisible(v, divisor)
  divisor = divisor or 8
  local new_v = math.max(divisor, math.floor((v + divisor / 2) / divisor) * divisor)
  if new_v < 0.9 * v then new_v = new_v + divisor end
  return new_v
end
--- torchvision's _make_divisible: v rounded to the nearest multiple of
-- divisor (8 by default; at least divisor), not going down by more than 10 %.
models.make_divisible = make_divisible

-- EfficientNet-B0 stages: expand ratio, kernel, stride, in, out, layers.
local B0 = {
  { 1, 3, 1, 32, 16, 1 },
  { 6, 3, 2, 16, 24, 2 },
  { 6, 5, 2, 24, 40, 2 },
  { 6, 3, 2, 40, 80, 3 },
  { 6, 5, 1, 80, 112, 3 },
  { 6, 5, 2, 112, 192, 4 },
  { 6, 3, 1, 192, 320, 1 },
}

--- conv (no bias) + bn (+ SiLU): torchvision's Conv2dNormActivation under prefix
-- (prefix.0 conv, prefix.1 bn).
local function conv_bn(b, x, prefix, cin, cout, k, stride, groups, silu)
  local h = b:conv2d(nn.join(prefix, '0'), x, cin, cout, k,
    { stride = stride, padding = math.floor((k - 1) / 2), groups = groups, bias = false })
  h = b:batchnorm2d(nn.join(prefix, '1'), h, cout)
  if silu then h = b:silu(h, nn.join(prefix, '2')) end
  return h
end

--- torchvision's MBConv under prefix (e.g. 'features.2.0'), sub-modules
-- block.0..3 (block.0..2 without the expansion).
local function mbconv(b, x, prefix, expand, k, stride, cin, cout)
  local j = nn.join
  local exp_c = make_divisible(cin * expand)
  local h, i = x, 0
  local function sub() local p = j(prefix, 'block.' .. i) i = i + 1 return p end
  if exp_c ~= cin then h = conv_bn(b, h, sub(), cin, exp_c, 1, 1, 1, true) end
  h = conv_bn(b, h, sub(), exp_c, exp_c, k, stride, exp_c, true)
  -- squeeze-excitation: h * sigmoid(fc2(silu(fc1(avgpool(h))))), squeeze = max(1, cin // 4)
  local se, sq = sub(), math.max(1, math.floor(cin / 4))
  local s = b:adaptive_avgpool2d(h, 1, j(se, 'avgpool'))
  s = b:conv2d(j(se, 'fc1'), s, exp_c, sq, 1)
  s = b:silu(s, j(se, 'activation'))
  s = b:conv2d(j(se, 'fc2'), s, sq, exp_c, 1)
  s = b:sigmoid(s, j(se, 'scale_activation'))
  h = b:mul(h, s, j(se, 'scale'))
  h = conv_bn(b, h, sub(), exp_c, cout, 1, 1, 1, false)
  if stride == 1 and cin == cout then h = b:add(h, x, j(prefix, 'add')) end
  return h
end

--- EfficientNet-B0 as torchvision builds it (names features.*, classifier.1).
-- ARGS: opts {num_classes = 1000, width = 1 (width_mult), depth = 1
--   (depth_mult), image_size = 224, seed = 0}
-- RETURN: a Net, (N,3,S,S) -> (N,num_classes) logits, S = image_size.
function models.efficientnet_b0(opts)
  local who = 'efficientnet_b0'
  local o = options.fill(who, {
    num_classes = 1000, width = 1, depth = 1, image_size = 224, seed = 0,
    _domains = { num_classes = 'int >= 1', width = 'num > 0', depth = 'num > 0', image_size = 'int >= 1',
                 seed = 'seed' },
  }, opts)
  local b = nn.builder({ 3, o.image_size, o.image_size }, { seed = o.seed })
  local function ch(c) return make_divisible(c * o.width) end
  local c = ch(B0[1][4])
  local h = conv_bn(b, b.input, 'features.0', 3, c, 3, 2, 1, true)
  for si, st in ipairs(B0) do
    local expand, k, stride, cout = st[1], st[2], st[3], ch(st[5])
    local n = math.ceil(st[6] * o.depth)
    for li = 0, n - 1 do
      h = mbconv(b, h, ('features.%d.%d'):format(si, li), expand, k, li == 0 and stride or 1, c, cout)
      c = cout
    end
  end
  local last = 4 * c
  h = conv_bn(b, h, 'features.' .. (#B0 + 1), c, last, 1, 1, 1, true)
  h = b:adaptive_avgpool2d(h, 1, 'avgpool')
  h = b:flatten(h, 'flatten')
  h = b:dropout(h, 0.2, 'classifier.0')
  h = b:linear('classifier.1', h, last, o.num_classes)
  return finish(b:build(h), who, o)
end

-- ------------------------------------------------------------ weights

--- Loads weights by name from a safetensors file (PyTorch state_dict names;
-- num_batches_tracked is ignored).
-- ARGS: net, path, opts {strict = true: the file may hold no tensor the net
--   lacks; every parameter of the net must be in the file either way}
-- RETURN: net
function models.load(net, path, opts)
  if type(net) ~= 'table' or getmetatable(net) ~= nn.Net then
    error('models.load: expected a Net as the first argument, got ' .. type(net), 2)
  end
  if type(path) ~= 'string' then error('models.load: path must be a string, got ' .. type(path), 2) end
  local ok, err = pcall(net.load, net, path, opts)
  if not ok then error(err, 2) end
  return net
end

--- Saves every parameter and buffer of net by name to a safetensors file.
-- ARGS: net, path, metadata (optional table of strings; the model's name and
-- options are added under 'moreau.model' unless given)
-- RETURN: net
function models.save(net, path, metadata)
  if type(net) ~= 'table' or getmetatable(net) ~= nn.Net then
    error('models.save: expected a Net as the first argument, got ' .. type(net), 2)
  end
  if type(path) ~= 'string' then error('models.save: path must be a string, got ' .. type(path), 2) end
  local md = {}
  for k, v in pairs(metadata or {}) do md[k] = tostring(v) end
  if net.model and md['moreau.model'] == nil then
    local keys, parts = {}, {}
    for k in pairs(net.model.options) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do parts[#parts + 1] = k .. '=' .. tostring(net.model.options[k]) end
    md['moreau.model'] = net.model.name .. '{' .. table.concat(parts, ', ') .. '}'
  end
  local ok, err = pcall(net.save, net, path, next(md) and md or nil)
  if not ok then error(err, 2) end
  return net
end

-- ------------------------------------------------------------ ONNX

--- A network read from an ONNX model file (engine: mr_net_from_onnx), usable
-- by every method exactly like a zoo model. The graph's ops map onto the
-- engine's (docs/models.md, "ONNX import", lists what is supported); one
-- float32 graph input (N, sample shape) with a symbolic or unit batch axis,
-- one output; parameters are named after the initializers.
-- ARGS: path (a .onnx file; external data files beside it),
--   opts {softplus = 0 (> 0: every ReLU becomes softplus(beta = softplus),
--   log(1 + e^(beta x)) / beta, which differs from ReLU by at most
--   ln 2 / beta and has curvature for the attacks' Hessian-vector products;
--   0 keeps ReLU), max_bytes = 0 (the most bytes the model may take: file,
--   parsed form, external data and tensor copies; 0: the loader budget
--   plus four times the file's size)}
-- RETURN: a Net in inference mode; net.model = {name = 'onnx', options =
--   {path =, softplus =, max_bytes =}}.
-- Errors (raised with the engine's message, which starts "onnx: PATH: "):
--   an unsupported op, attribute or attribute value names the node, its
--   index and op type; a truncated or corrupt file, a tensor whose data does
--   not match its dims, hostile dims, a dangling input, a cycle, external data
--   leaving the model's folder; a model over the budget.
function models.onnx(path, opts)
  if type(path) ~= 'string' then error('models.onnx: path must be a string, got ' .. type(path), 2) end
  local o = options.fill('models.onnx', {
    softplus = 0, max_bytes = 0,
    _domains = { softplus = 'num >= 0' },
  }, opts)
  -- a byte count: an integer, past int32 and float32's exact range
  local mb = o.max_bytes
  if type(mb) ~= 'number' or mb ~= mb or mb < 0 or mb ~= math.floor(mb) or mb >= 2 ^ 53 then
    error(("models.onnx: option 'max_bytes' must be an integer >= 0 (bytes; 0: the loader budget plus four times the file), got %s"):format(
      options.show(mb)), 2)
  end
  local ffi = require 'ffi'
  local core = require 'moreau.core'
  local C = core.C
  local co = ffi.new('mr_onnx_options')
  co.softplus_beta = o.softplus
  co.max_bytes = mb
  local ptr = ffi.new('mr_net*[1]')
  core.check(C.mr_net_from_onnx(ptr, path, co))
  local net = core.attach(setmetatable({}, nn.Net), ffi.gc(ptr[0], C.mr_net_free))
  -- the engine builds only what the output depends on: the output is the last node
  net.output = C.mr_net_node_count(ptr[0]) - 1
  o.path = path
  return finish(net, 'onnx', o)
end

-- ----------------------------------------------------- shipped weights

--- The folder of the shipped weights: $MOREAU_MODELS, else models/ of the
-- source tree (share/moreau/models when installed).
function models.dir() return os.getenv('MOREAU_MODELS') or (require('moreau.core').root .. '/models') end

--- Names of the shipped models (those with a weights file and a card).
function models.shipped()
  local names = {}
  local ok, lfs = pcall(require, 'lfs')
  if ok and lfs.attributes(models.dir()) then
    for f in lfs.dir(models.dir()) do
      local name = f:match('^(.+)%.json$')
      if name and lfs.attributes(models.dir() .. '/' .. name .. '.safetensors') then names[#names + 1] = name end
    end
  end
  table.sort(names)
  return names
end

-- ImageNet's per-channel mean and standard deviation (torchvision's
-- transforms for its pretrained classifiers).
models.IMAGENET_NORMALIZATION = { mean = { 0.485, 0.456, 0.406 }, std = { 0.229, 0.224, 0.225 } }

--- A card for an ONNX file, as models.card gives for a shipped model: the
-- network (loaded once here, so that the file is checked and its classes
-- counted), its preprocessing and its class names.
local function onnx_card(path, opts)
  local o = options.fill('models.card', {
    classes = '', normalize = 'auto', softplus = 0, max_bytes = 0,
    _domains = { classes = 'string', normalize = 'one of auto, imagenet, none', softplus = 'num >= 0',
      max_bytes = 'num >= 0' },
  }, opts)
  local net = models.onnx(path, { softplus = o.softplus, max_bytes = o.max_bytes > 0 and o.max_bytes or nil })
  local shape, k = net:input_shape(), net:output_shape()
  if #k ~= 1 then
    error(('models: %s gives scores of shape %s per image; a classifier gives one score per class'):format(path,
      table.concat(k, 'x')), 3)
  end
  -- auto: ImageNet's statistics for a 3-channel image model, else none
  local norm = o.normalize
  if norm == 'auto' then norm = (#shape == 3 and shape[1] == 3) and 'imagenet' or 'none' end
  local normalization = norm == 'imagenet' and models.IMAGENET_NORMALIZATION or { mean = 0, std = 1 }
  if norm == 'imagenet' and not (#shape == 3 and shape[1] == 3) then
    error(('models: normalize = imagenet needs a 3-channel image model; %s takes %s'):format(path,
      table.concat(shape, 'x')), 3)
  end
  local classes
  if o.classes ~= '' then
    local f, why = io.open(o.classes, 'r')
    if not f then error('models: cannot read the class names: ' .. tostring(why), 3) end
    classes = {}
    for line in f:lines() do
      line = line:gsub('\r$', '')
      if line ~= '' then classes[#classes + 1] = line end
    end
    f:close()
    if #classes ~= k[1] then
      error(('models: %s names %d classes (one per line); %s has %d'):format(o.classes, #classes, path, k[1]), 3)
    end
  end
  local card = {
    model = { architecture = 'onnx', file = path, options = { num_classes = k[1], softplus = o.softplus } },
    data = { normalization = normalization, normalize = norm, classes = classes, input_shape = shape },
  }
  return card, net
end

--- The card (JSON) of a shipped model: architecture, options, data, training, results.
-- For a path ending in .onnx, a card built from the file instead: model
-- {architecture = 'onnx', file, options {num_classes, softplus}}, data
-- {normalization {mean, std}, normalize, classes (nil without a classes
-- file), input_shape}.
-- ARGS: name (a shipped model's name, or an .onnx path), opts (ONNX only:
--   {classes = '' (a file of class names, one per line, as many as the
--   model's classes), normalize = 'auto' (ImageNet's mean and std for a
--   3-channel image model, else none) | 'imagenet' | 'none', softplus = 0
--   and max_bytes = 0 (models.onnx's options; 0: its default budget)})
function models.card(name, opts)
  if type(name) == 'string' and name:lower():match('%.onnx$') then return (onnx_card(name, opts)) end
  if type(name) ~= 'string' or not name:match('^[%w_%-]+$') then
    error(("models: %s is not a model name (letters, digits, '_' and '-'; shipped: %s)%s"):format(
      require('moreau.options').show(name), table.concat(models.shipped(), ', '),
      type(name) == 'string' and name:find('[./]') and '; a model file must be ONNX, named *.onnx' or ''), 2)
  end
  local path = models.dir() .. '/' .. name .. '.json'
  local f = io.open(path, 'r')
  if not f then
    error(("models: no shipped model '%s' (shipped: %s)"):format(tostring(name),
      table.concat(models.shipped(), ', ')), 2)
  end
  local text = f:read('*a')
  f:close()
  local ok, card = pcall(require('cjson').decode, text)
  if not ok or type(card) ~= 'table' or type(card.model) ~= 'table' then
    error('models: ' .. path .. ' is not a model card', 2)
  end
  return card
end

--- A shipped model with its trained weights, in inference mode; or an ONNX
-- file's network and card (models.card).
-- ARGS: name (e.g. 'resnet_fmnist', or a path ending in .onnx), opts (ONNX
--   only: as models.card). RETURN: net, card
function models.pretrained(name, opts)
  if type(name) == 'string' and name:lower():match('%.onnx$') then
    local card, net = onnx_card(name, opts)
    return net, card
  end
  local card = models.card(name)
  local arch = card.model.architecture
  local build = models[arch]
  if type(build) ~= 'function' then error('models: card of ' .. name .. ' names unknown architecture ' .. tostring(arch), 2) end
  local opts = {}
  for k, v in pairs(card.model.options or {}) do
    if k ~= 'activation' or arch == 'resnet18_cifar' then opts[k] = v end
  end
  local net = build(opts)
  models.load(net, models.dir() .. '/' .. name .. '.safetensors')
  net:eval()
  return net, card
end

return models
