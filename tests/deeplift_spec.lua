-- DeepLIFT's rules (README "DeepLIFT's rules"): summation-to-delta through
-- max pooling and products in closed form, completeness on every net of the
-- zoo, and the networks it refuses.
local T = require 'moreau.tensor'
local nn = require 'moreau.nn'
local models = require 'moreau.models'
local methods = require 'moreau.methods'
local oracle = require 'moreau.oracle'
local asserts = require 'helpers.asserts'

--- Sets a parameter to a flat list of values.
local function set(net, name, values)
  local p = net:param(name):data()
  for i, v in ipairs(values) do p[i - 1] = v end
end

--- Per item: Σ attributions − (f_c(x) − f_c(x0)), and |f_c(x) − f_c(x0)|.
local function gaps(net, x, x0, labels, dl)
  local fx = oracle.grad(net, x, labels)
  local f0 = oracle.grad(net, x0, labels)
  local out = {}
  for n = 1, x:size(1) do
    local want = fx[n] - f0[n]
    out[n] = { gap = dl:narrow(n):sum() - want, want = want }
  end
  return out
end

--- Completeness against a zero baseline and against x0: every item's gap
-- within rel·|f(x) − f(x0)| + abs. `say` prints each gap (zoo nets).
local function assert_complete(net, x, x0, labels, rel, abs, say)
  for _, base in ipairs { 0, x0 } do
    local dl = methods.deeplift { baseline = base }:explain(net, x, labels)
    local xb = T.is(base) and base or T.zeros(x:shape())
    for n, g in ipairs(gaps(net, x, xb, labels, dl)) do
      if say then print(('    item %d: f(x) - f(x0) = %.6g, gap %.3g'):format(n, g.want, g.gap)) end
      assert.is_true(math.abs(g.gap) <= rel * math.abs(g.want) + abs,
        ('%sitem %d: gap %g of %g'):format(say and say .. ' ' or '', n, g.gap, g.want))
    end
  end
end

describe('DeepLIFT: max pooling', function()
  -- x (1x1x2) -> conv 1x1 (weight 1, bias 0.5) -> maxpool 1x2 -> fc 1 -> 2 (weights 2, 1; no bias).
  local function pool_net()
    local b = nn.builder({ 1, 1, 2 })
    local h = b:conv2d('lin', b.input, 1, 1, 1)
    h = b:maxpool2d(h, { 1, 2 })
    local net = b:build(b:linear('fc', b:flatten(h), 1, 2, { bias = false }))
    set(net, 'lin.weight', { 1 })
    set(net, 'lin.bias', { 0.5 })
    set(net, 'fc.weight', { 2, 1 })
    return net
  end

  it('splits the max exactly when the argmax moves (the plain gradient missed by 8 and 4)', function()
    -- x = (6, 1), x0 = (0, 4): max 6.5 at x (entry 1), 4.5 at x0 (entry 2); Δy = 2.
    -- The gradient rule gave 2·6 and 1·6 for class 0 and 1, missing 2·2 and 1·2 by 8 and 4.
    -- Rule: p = 6 − 1 = 5, q = 4 − 0 = 4, t = 5/9: m = (5/9, 4/9),
    -- contributions w·(5/9 · 6, 4/9 · (−3)) = w·(10/3, −4/3), summing to 2w.
    local net = pool_net()
    local x = T.from({ 6, 1, 6, 1 }, { 2, 1, 1, 2 })
    local x0 = T.from({ 0, 4, 0, 4 }, { 2, 1, 1, 2 })
    local labels = { 0, 1 }
    local dl = methods.deeplift { baseline = x0 }:explain(net, x, labels)
    local want = { 2 * 10 / 3, 2 * -4 / 3, 10 / 3, -4 / 3 }
    for i = 1, 4 do
      assert.is_true(math.abs(dl:data()[i - 1] - want[i]) <= 1e-6 * math.abs(want[i]),
        ('entry %d: %.9g, want %.9g'):format(i, dl:data()[i - 1], want[i]))
    end
    local g = gaps(net, x, x0, labels, dl)
    assert.are.equal(4, g[1].want)
    assert.are.equal(2, g[2].want)
    assert.is_true(math.abs(g[1].gap) <= 1e-6, 'item 1 gap ' .. g[1].gap)
    assert.is_true(math.abs(g[2].gap) <= 1e-6, 'item 2 gap ' .. g[2].gap)
  end)

  it('is the gradient when x and x0 share the argmax, and splits equal margins evenly', function()
    local net = pool_net()
    -- Same argmax (entry 2): all of Δy = 5 − 2 = 3 to it, multiplier 1 (class 0: weight 2).
    local x, x0 = T.from({ 1, 5 }, { 1, 1, 1, 2 }), T.from({ 0, 2 }, { 1, 1, 1, 2 })
    local dl = methods.deeplift { baseline = x0 }:explain(net, x, { 0 })
    assert.are.same({ 0, 6 }, { dl:data()[0], dl:data()[1] })
    -- x = (2, 3), x0 = (3, 2): argmaxes 2 and 1, margins p = 1, q = 1, t = 1/2:
    -- contributions (1/2 · (−1), 1/2 · 1) = (−1/2, 1/2), Σ = 0 = Δy (class 1: weight 1).
    x, x0 = T.from({ 2, 3 }, { 1, 1, 1, 2 }), T.from({ 3, 2 }, { 1, 1, 1, 2 })
    dl = methods.deeplift { baseline = x0 }:explain(net, x, { 1 })
    assert.are.same({ -0.5, 0.5 }, { dl:data()[0], dl:data()[1] })
  end)

  it('is complete through overlapping, padded windows (random net, seed 21)', function()
    print('  seed 21')
    local b = nn.builder({ 2, 9, 9 }, { seed = 21 })
    local h = b:conv2d('c1', b.input, 2, 4, 3, { padding = 1 })
    h = b:relu(h)
    h = b:maxpool2d(h, 3, { stride = 2, padding = 1 })
    h = b:conv2d('c2', h, 4, 4, 3, { padding = 1 })
    h = b:tanh(h)
    h = b:maxpool2d(h, 2, { ceil_mode = true })
    local net = b:build(b:linear('fc', b:flatten(h), 36, 5))
    local x = T.randn({ 3, 2, 9, 9 }, { seed = 21 })
    local x0 = T.randn({ 3, 2, 9, 9 }, { seed = 22 })
    local labels = { 0, 3, 4 }
    assert_complete(net, x, x0, labels, 1e-5, 1e-6)
  end)
end)

describe('DeepLIFT: products', function()
  it('is complete through x·x (the gradient rule missed by Σx²)', function()
    -- f_c = Σ_j w_cj x_j², w_0 = 1: with x0 = 0 the attributions are x_j² exactly.
    local b = nn.builder({ 1, 2, 2 })
    local h = b:mul(b.input, b.input)
    local net = b:build(b:linear('fc', b:flatten(h), 4, 2, { bias = false }))
    set(net, 'fc.weight', { 1, 1, 1, 1, 0.5, -2, 3, 0.25 })
    local x = T.from({ 1, -2, 3, 0.5 }, { 1, 1, 2, 2 })
    local dl = methods.deeplift():explain(net, x, { 0 })
    assert.are.same({ 1, 4, 9, 0.25 }, { dl:data()[0], dl:data()[1], dl:data()[2], dl:data()[3] })
    -- Against a baseline: w_j (x_j² − x0_j²), exact in float32 for these numbers.
    local x0 = T.from({ 0.5, 1, -1, 2 }, { 1, 1, 2, 2 })
    dl = methods.deeplift { baseline = x0 }:explain(net, x, { 1 })
    assert.are.same({ 0.5 * 0.75, -2 * 3, 3 * 8, 0.25 * -3.75 },
      { dl:data()[0], dl:data()[1], dl:data()[2], dl:data()[3] })
  end)

  it('is complete through a squeeze-excitation gate (broadcast mul, seed 31)', function()
    print('  seed 31')
    local b = nn.builder({ 3, 5, 5 }, { seed = 31 })
    local h = b:conv2d('c', b.input, 3, 4, 3, { padding = 1 })
    h = b:silu(h)
    local s = b:adaptive_avgpool2d(h, 1)
    s = b:conv2d('fc1', s, 4, 2, 1)
    s = b:silu(s)
    s = b:conv2d('fc2', s, 2, 4, 1)
    s = b:sigmoid(s)
    h = b:mul(h, s)
    local net = b:build(b:linear('fc', b:flatten(h), 100, 3))
    local x = T.randn({ 2, 3, 5, 5 }, { seed = 31 })
    local x0 = T.randn({ 2, 3, 5, 5 }, { seed = 32, std = 0.5 })
    local labels = { 2, 0 }
    assert_complete(net, x, x0, labels, 1e-5, 1e-6)
  end)
end)

describe('DeepLIFT: completeness on the zoo', function()
  local zoo = {
    { 'resnet_fmnist', function() return models.resnet_fmnist { width = 0.25 } end, { 1, 28, 28 }, 2.5 },
    { 'resnet18_cifar relu', function() return models.resnet18_cifar { width = 0.125 } end, { 3, 32, 32 }, 2.5 },
    { 'resnet18_cifar softplus', function()
      return models.resnet18_cifar { width = 0.125, activation = 'softplus', beta = 2 } end, { 3, 32, 32 }, 2.5 },
    { 'efficientnet_b0', function()
      return models.efficientnet_b0 { width = 0.125, image_size = 32, num_classes = 10 } end, { 3, 32, 32 }, 3 },
  }
  for i, z in ipairs(zoo) do
    it(z[1] .. ' (seed ' .. (40 + i) .. ')', function()
      print(('  %s seed %d'):format(z[1], 40 + i))
      local net = z[2]()
      -- PyTorch's initialization shrinks the signal at every layer (the logits of
      -- the fresh nets move by 1e-3 or less); conv and linear weights × 2.5 (about
      -- He's scale; 3 for the deeper EfficientNet) keep it O(1). Non-trivial running statistics, so that
      -- batchnorm is a real affine map.
      for _, p in ipairs(net:params()) do
        local d = p.tensor
        if p.name:match('weight$') and d:dim() >= 2 then
          d:mul_(z[4])
        elseif p.name:match('running_mean$') then
          for j = 0, d:numel() - 1 do d:data()[j] = 0.1 * math.sin(j + 1) end
        elseif p.name:match('running_var$') then
          for j = 0, d:numel() - 1 do d:data()[j] = 1 + 0.5 * math.cos(j + 1) ^ 2 end
        end
      end
      local shape = { 2, z[3][1], z[3][2], z[3][3] }
      local x = T.randn(shape, { seed = 40 + i })
      local x0 = T.randn(shape, { seed = 50 + i, std = 0.3 })
      local labels = { 1, 7 }
      assert_complete(net, x, x0, labels, 1e-4, 0, z[1])
    end)
  end
end)

describe('DeepLIFT: what it refuses', function()
  it('refuses an output that depends on softmax or log-softmax, naming the node', function()
    for _, op in ipairs { 'softmax', 'log_softmax' } do
      local b = nn.builder({ 4 }, { seed = 1 })
      local h = b:linear('fc', b.input, 4, 3)
      local net = b:build(b[op](b, h, 'probs'))
      asserts.error_with(function() methods.deeplift():explain(net, T.ones { 1, 4 }, { 0 }) end,
        "deeplift: node 2 'probs' (" .. op .. ') has no exact DeepLIFT rule')
    end
  end)

  it('checks the baseline by shape, not by element count', function()
    local b = nn.builder({ 1, 1, 2 }, { seed = 1 })
    local net = b:build(b:linear('fc', b:flatten(b.input), 2, 3))
    local x = T.ones { 2, 1, 1, 2 }
    asserts.error_with(function() methods.deeplift { baseline = T.zeros { 1, 1, 2, 2 } }:explain(net, x, { 0, 1 }) end,
      "deeplift: option 'baseline' has shape 1x1x2x2, x has shape 2x1x1x2; they must be equal")
  end)

  it('explains the inference-mode function in training mode (README, Training mode)', function()
    local b = nn.builder({ 1, 4, 4 }, { seed = 1 })
    local y = b:batchnorm2d('bn', b.input, 1)
    local net = b:build(b:linear('fc', b:flatten(b:relu(y)), 16, 3))
    net:param('bn.running_mean'):fill(0.3)
    net:param('bn.running_var'):fill(2.0)
    local before = net:param('bn.running_mean'):clone()
    local x = T.randn({ 2, 1, 4, 4 }, { seed = 5 })
    local want = methods.deeplift():explain(net, x, { 0, 2 })
    net:train()
    local got = methods.deeplift():explain(net, x, { 0, 2 })
    assert.are.equal(0, got:max_abs_diff(want))
    assert.are.equal(0, net:param('bn.running_mean'):max_abs_diff(before))
  end)
end)
