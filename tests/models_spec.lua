-- The model zoo: torchvision names and shapes, parameter counts, cost, option
-- checking, and parity with PyTorch on committed fixtures.
--
-- The fixtures (tests/fixtures/<model>.safetensors) are made by
-- scripts/make_fixtures.py: reduced-width models with random weights and
-- batchnorm far from the identity, inputs and weights rounded to float32,
-- references computed in float64 by PyTorch from those rounded values. What
-- is left to measure is the engine's float32 arithmetic, so the bounds are:
--
--   logits, scores, input gradients  ‖a − b‖ / ‖b‖ ≤ 1e-4
--   Hessian-vector products          ‖a − b‖ / ‖b‖ ≤ 1e-3
--
-- Why these numbers: one float32 rounding is 6e-8; a conv output sums up to
-- K = 9·C_in ≈ 600..4600 products, whose rounding errors grow like √K·6e-8 ≈
-- 1e-6..4e-6 per layer (blocked BLAS sums do better than that); through
-- ~20..50 layers of a forward and as many of a reverse pass this stays under
-- 1e-4 with margin. The HVP is a forward-over-reverse tangent: it adds the
-- second derivatives of softplus/SiLU/sigmoid (σ(βx)(1 − σ(βx)), which
-- cancels where σ is near 0 or 1) and the difference terms of the tangent,
-- and it is the smallest of the three in relative size where curvature is
-- low, so it gets ten times the room.
local T = require 'moreau.tensor'
local models = require 'moreau.models'
local oracle = require 'moreau.oracle'
local st = require 'moreau.safetensors'

local FIXTURES = 'tests/fixtures/'
local TOL = { logits = 1e-4, grad = 1e-4, hvp = 1e-3 }

--- ‖a − b‖ / ‖b‖, summed in double precision.
local function rel(a, b)
  local num, den = 0, 0
  local pa, pb = a:data(), b:data()
  assert.are.equal(b:numel(), a:numel())
  for i = 0, a:numel() - 1 do
    num = num + (pa[i] - pb[i]) ^ 2
    den = den + pb[i] ^ 2
  end
  return math.sqrt(num) / math.sqrt(den)
end

local function rel_scores(a, b)
  local bt = T.from(a, { #a })
  return rel(bt, b)
end

local function assert_close(what, a, b, tol)
  local e = rel(a, b)
  if not (e <= tol) then
    error(('%s: relative error %.3g > %.3g'):format(what, e, tol), 2)
  end
  return e
end

--- "a\tb\tc" lines of a torchvision state_dict listing (comments skipped).
local function read_state_dict_list(path)
  local list = {}
  for line in io.lines(path) do
    if line:sub(1, 1) ~= '#' and line ~= '' then
      local name, shape, kind = line:match('^(%S+)\t(%S+)\t(%S+)$')
      assert(name, 'bad line in ' .. path .. ': ' .. line)
      list[#list + 1] = { name = name, shape = shape, kind = kind }
    end
  end
  return list
end

local function net_state_dict_list(net)
  local list = {}
  for _, p in ipairs(net:params()) do
    list[#list + 1] = { name = p.name, shape = table.concat(p.tensor:shape(), 'x'), kind = p.kind }
  end
  return list
end

--- Multiply-adds per image of the conv and linear nodes of a net.
local function multiply_adds(net)
  local total = 0
  for _, node in ipairs(net:nodes()) do
    if node.op == 'conv2d' or node.op == 'linear' then
      local w = net:param(node.label .. '.weight'):shape()
      local out = 1
      for _, d in ipairs(node.shape) do out = out * d end
      local per = 1
      for k = 2, #w do per = per * w[k] end -- cin/groups · kh · kw, or fin
      total = total + out * per
    end
  end
  return total
end

-- ------------------------------------------------------------ fixtures

local FIXTURE_MODELS = {
  { file = 'resnet18_cifar', build = models.resnet18_cifar,
    opts = { num_classes = 10, activation = 'softplus', beta = 2, width = 0.125 },
    relu = { num_classes = 10, activation = 'relu', width = 0.125 } },
  { file = 'resnet_fmnist', build = models.resnet_fmnist,
    opts = { num_classes = 10, beta = 10, width = 1 } },
  { file = 'efficientnet_b0', build = models.efficientnet_b0,
    opts = { num_classes = 10, width = 0.125, depth = 1, image_size = 32 } },
}

for _, m in ipairs(FIXTURE_MODELS) do
  describe('parity with PyTorch: ' .. m.file, function()
    local path = FIXTURES .. m.file .. '.safetensors'
    local t, meta, net, labels

    setup(function()
      t, meta = st.load(path)
      net = m.build(m.opts)
      models.load(net, path, { strict = false }) -- the fixture also holds the __ tensors
      labels = {}
      for i = 0, t.__labels:numel() - 1 do labels[i + 1] = t.__labels:data()[i] end
    end)

    it('fixture and model agree on every parameter name and shape', function()
      assert.are.equal(m.file, meta.model)
      local in_file = {}
      for name, tensor in pairs(t) do
        if name:sub(1, 2) ~= '__' then in_file[name] = table.concat(tensor:shape(), 'x') end
      end
      local in_net = {}
      for _, p in ipairs(net_state_dict_list(net)) do in_net[p.name] = p.shape end
      assert.are.same(in_file, in_net)
    end)

    it('refuses the fixture under strict loading, naming an extra tensor', function()
      local fresh = m.build(m.opts)
      local ok, err = pcall(models.load, fresh, path)
      assert.is_false(ok)
      assert.truthy(tostring(err):find('__', 1, true), err)
    end)

    it(('logits within %g'):format(TOL.logits), function()
      local y = net:forward(t.__x)
      local e = assert_close('logits', y, t.__logits, TOL.logits)
      print(('  %s logits rel %.2e'):format(m.file, e))
    end)

    for _, score in ipairs { 'logit', 'log_softmax' } do
      local sfx = score == 'logit' and '' or '_logsm'
      it(('%s score, input gradient within %g, HVP within %g'):format(score, TOL.grad, TOL.hvp), function()
        local s, g = oracle.grad(net, t.__x, labels, { score = score })
        local es = rel_scores(s, t['__scores' .. sfx])
        assert.is_true(es <= TOL.logits, ('scores: relative error %.3g'):format(es))
        local eg = assert_close('grad', g, t['__grad' .. sfx], TOL.grad)
        local hv, s2, g2 = oracle.hvp(net, t.__x, labels, t.__v, { score = score })
        local eh = assert_close('hvp', hv, t['__hvp' .. sfx], TOL.hvp)
        assert_close('grad from hvp', g2, t['__grad' .. sfx], TOL.grad)
        assert.is_true(rel_scores(s2, t['__scores' .. sfx]) <= TOL.logits)
        print(('  %s %s: scores %.2e grad %.2e hvp %.2e'):format(m.file, score, es, eg, eh))
      end)
    end

    if m.relu then
      it('the same weights with ReLU: logits and gradients', function()
        local rnet = m.build(m.relu)
        models.load(rnet, path, { strict = false })
        local y = rnet:forward(t.__x)
        local ey = assert_close('relu logits', y, t.__relu_logits, TOL.logits)
        local _, g = oracle.grad(rnet, t.__x, labels)
        local eg = assert_close('relu grad', g, t.__relu_grad, TOL.grad)
        print(('  %s relu: logits %.2e grad %.2e'):format(m.file, ey, eg))
      end)
    end
  end)
end

-- ------------------------------------------------------ architectures

describe('resnet18_cifar', function()
  it("has torchvision's names, shapes and kinds, in state_dict order (CIFAR stem)", function()
    local want = read_state_dict_list(FIXTURES .. 'resnet18_cifar_state_dict.txt')
    local net = models.resnet18_cifar { num_classes = 10 }
    assert.are.same(want, net_state_dict_list(net))
    assert.are.same({ 64, 3, 3, 3 }, net:param('conv1.weight'):shape()) -- 3x3, not ImageNet's 7x7
  end)

  it('has 11,173,962 parameters with 10 classes, for relu and softplus', function()
    assert.are.equal(11173962, models.resnet18_cifar { num_classes = 10 }:num_params())
    assert.are.equal(11173962, models.resnet18_cifar { activation = 'softplus', beta = 1 }:num_params())
  end)

  it('maps 3x32x32 to num_classes logits and scales its widths', function()
    local net = models.resnet18_cifar { num_classes = 7, width = 0.25 }
    assert.are.same({ 3, 32, 32 }, net:input_shape())
    assert.are.same({ 7 }, net:output_shape())
    assert.are.same({ 16, 3, 3, 3 }, net:param('conv1.weight'):shape())
    assert.are.same({ 128, 64, 1, 1 }, net:param('layer4.0.downsample.0.weight'):shape())
    -- every width is rounded to the nearest integer, at least 1
    local tiny = models.resnet18_cifar { width = 0.001 }
    assert.are.same({ 1, 3, 3, 3 }, tiny:param('conv1.weight'):shape())
    assert.are.same({ 10, 1 }, tiny:param('fc.weight'):shape())
    assert.are.same({ 2, 10 }, tiny:forward(T.zeros { 2, 3, 32, 32 }):shape())
  end)

  it('has no downsample where the stride is 1 and the channels stay', function()
    local names = {}
    for _, p in ipairs(models.resnet18_cifar { width = 0.125 }:params()) do names[p.name] = true end
    assert.is_nil(names['layer1.0.downsample.0.weight'])
    assert.is_nil(names['layer2.1.downsample.0.weight'])
    assert.is_true(names['layer2.0.downsample.1.running_var'])
  end)

  it('uses softplus with the given beta, or relu', function()
    local count = function(net, op)
      local n = 0
      for _, node in ipairs(net:nodes()) do if node.op == op then n = n + 1 end end
      return n
    end
    local sp = models.resnet18_cifar { activation = 'softplus', width = 0.125 }
    local re = models.resnet18_cifar { width = 0.125 }
    assert.are.equal(17, count(sp, 'softplus')) -- stem + 2 per block
    assert.are.equal(0, count(sp, 'relu'))
    assert.are.equal(17, count(re, 'relu'))
    assert.are.equal('resnet18_cifar', sp.model.name)
    assert.are.equal('softplus', sp.model.options.activation)
  end)
end)

describe('resnet_fmnist', function()
  it('has 0.3..1 M parameters (308,074) and costs under 40 M multiply-adds per image', function()
    local net = models.resnet_fmnist {}
    local n = net:num_params()
    assert.are.equal(308074, n)
    assert.is_true(n >= 3e5 and n <= 1e6)
    local macs = multiply_adds(net)
    assert.is_true(macs < 40e6, ('%d multiply-adds'):format(macs))
    assert.are.same({ 1, 28, 28 }, net:input_shape())
    assert.are.same({ 10 }, net:output_shape())
  end)

  it('uses softplus with beta 10 by default', function()
    local net = models.resnet_fmnist {}
    assert.are.equal(10, net.model.options.beta)
    for _, node in ipairs(net:nodes()) do assert.are_not.equal('relu', node.op) end
  end)

  it("has torchvision's ResNet names", function()
    local names = {}
    for _, p in ipairs(models.resnet_fmnist {}:params()) do names[#names + 1] = p.name end
    assert.are.equal('conv1.weight', names[1])
    assert.are.equal('fc.bias', names[#names])
    local set = {}
    for _, n in ipairs(names) do set[n] = true end
    for _, n in ipairs { 'bn1.running_var', 'layer1.0.conv2.weight', 'layer2.0.downsample.0.weight',
      'layer3.0.downsample.1.running_mean', 'fc.weight' } do
      assert.is_true(set[n], n)
    end
    assert.is_nil(set['layer1.0.downsample.0.weight'])
    assert.is_nil(set['layer4.0.conv1.weight'])
  end)
end)

describe('efficientnet_b0', function()
  it("has torchvision's names, shapes and kinds, in state_dict order", function()
    local want = read_state_dict_list(FIXTURES .. 'efficientnet_b0_state_dict.txt')
    local net = models.efficientnet_b0 {}
    assert.are.same(want, net_state_dict_list(net))
    assert.are.equal(5288548, net:num_params())
    assert.are.same({ 3, 224, 224 }, net:input_shape())
    assert.are.same({ 1000 }, net:output_shape())
  end)

  it('follows _make_divisible for widths and ceil for depths', function()
    assert.are.equal(8, models.make_divisible(4))
    assert.are.equal(16, models.make_divisible(10)) -- 8 would lose more than 10 %
    assert.are.equal(24, models.make_divisible(22))
    local net = models.efficientnet_b0 { width = 0.5, depth = 0.5, image_size = 64, num_classes = 5 }
    assert.are.same({ 16, 3, 3, 3 }, net:param('features.0.0.weight'):shape())
    assert.are.same({ 640, 160, 1, 1 }, net:param('features.8.0.weight'):shape())
    assert.are.same({ 5, 640 }, net:param('classifier.1.weight'):shape())
    local ok = pcall(net.param, net, 'features.3.1.block.0.0.weight')
    assert.is_false(ok) -- ceil(2 · 0.5) = 1 layer in stage 3
    assert.is_true(pcall(net.param, net, 'features.4.1.block.0.0.weight')) -- ceil(3 · 0.5) = 2
  end)

  it('uses SiLU, sigmoid gates with broadcast mul, and no ReLU', function()
    local ops = {}
    for _, node in ipairs(models.efficientnet_b0 { width = 0.125, image_size = 32 }:nodes()) do
      ops[node.op] = (ops[node.op] or 0) + 1
    end
    assert.are.equal(16, ops.sigmoid) -- one squeeze-excitation per MBConv block
    assert.are.equal(16, ops.mul)
    assert.is_nil(ops.relu)
    assert.is_nil(ops.softplus)
    assert.is_true(ops.silu > 16)
  end)
end)

-- ------------------------------------------------------------ errors

describe('model options', function()
  it('reject an unknown activation', function()
    assert.has_error(function() models.resnet18_cifar { activation = 'gelu' } end,
      "resnet18_cifar: option 'activation' must be one of 'relu', 'softplus', got 'gelu' (did you mean 'relu'?)")
  end)

  it('reject an unknown option, listing the known ones', function()
    assert.has_error(function() models.resnet18_cifar { widht = 2 } end,
      "resnet18_cifar: unknown option 'widht' (activation, beta, num_classes, seed, width) (did you mean 'width'?)")
    assert.has_error(function() models.resnet_fmnist { activation = 'relu' } end,
      "resnet_fmnist: unknown option 'activation' (beta, num_classes, seed, width)")
    assert.has_error(function() models.efficientnet_b0 { input_size = 32 } end,
      "efficientnet_b0: unknown option 'input_size' (depth, image_size, num_classes, seed, width)")
  end)

  it('reject bad values', function()
    assert.has_error(function() models.resnet18_cifar { num_classes = 0 } end,
      "resnet18_cifar: option 'num_classes' must be an integer >= 1, got 0")
    assert.has_error(function() models.resnet_fmnist { width = -1 } end,
      "resnet_fmnist: option 'width' must be a number > 0, got -1")
    assert.has_error(function() models.efficientnet_b0 { image_size = '32' } end,
      "efficientnet_b0: option 'image_size' must be an integer >= 1, got '32'")
    assert.has_error(function() models.resnet18_cifar(3) end,
      'resnet18_cifar: options must be a table, got 3')
  end)

  it('give a clear error on a wrong input shape', function()
    local net = models.resnet_fmnist { width = 0.25 }
    assert.has_error(function() net:forward(T.zeros { 2, 3, 28, 28 }) end,
      'forward: input has shape 2x3x28x28, the network expects Nx1x28x28')
    local ok, err = pcall(oracle.grad, net, T.zeros { 1, 1, 32, 32 }, { 0 })
    assert.is_false(ok)
    assert.truthy(tostring(err):find('the network expects Nx1x28x28', 1, true), err)
  end)
end)

-- ------------------------------------------------------------ weights

describe('models.save and models.load', function()
  it('round-trip every parameter and buffer, with the model in the metadata', function()
    local a = models.resnet_fmnist { width = 0.25, seed = 1 }
    a:param('bn1.running_mean'):fill(0.5)
    local path = os.tmpname()
    models.save(a, path, { note = 'test' })
    local b = models.resnet_fmnist { width = 0.25, seed = 2 }
    local x = T.rand({ 2, 1, 28, 28 }, { seed = 3 })
    assert.is_true(a:forward(x):max_abs_diff(b:forward(x)) > 0)
    models.load(b, path)
    assert.are.equal(0, a:forward(x):max_abs_diff(b:forward(x)))
    local _, meta = st.load(path)
    assert.are.equal('test', meta.note)
    assert.are.equal('resnet_fmnist{beta=10, num_classes=10, seed=1, width=0.25}', meta['moreau.model'])
    os.remove(path)
  end)

  it('fail clearly on a file of another model', function()
    local path = os.tmpname()
    models.save(models.resnet_fmnist { width = 0.25 }, path)
    local ok, err = pcall(models.load, models.resnet_fmnist { width = 0.5 }, path)
    assert.is_false(ok)
    assert.truthy(tostring(err):find('conv1.weight', 1, true), err)
    os.remove(path)
    assert.has_error(function() models.load({}, path) end, 'models.load: expected a Net as the first argument, got table')
  end)

  it('build the same weights from the same seed', function()
    local a = models.resnet_fmnist { width = 0.25, seed = 4 }
    local b = models.resnet_fmnist { width = 0.25, seed = 4 }
    local c = models.resnet_fmnist { width = 0.25, seed = 5 }
    assert.are.equal(0, a:param('layer2.0.conv1.weight'):max_abs_diff(b:param('layer2.0.conv1.weight')))
    assert.is_true(a:param('layer2.0.conv1.weight'):max_abs_diff(c:param('layer2.0.conv1.weight')) > 0)
  end)
end)
