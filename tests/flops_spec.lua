-- net:flops(): forward FLOPs per item, a multiply-add counted as 2 FLOPs,
-- conv2d and linear only (bindings/moreau/nn.lua). Truth: a hand count of a
-- tiny network, and the counts the benchmark printed for the zoo models before
-- the counter moved into nn (scripts/bench.lua's forward_flops), which agree
-- with the published MAC counts: ResNet-18 on CIFAR 555.42 M MACs, EfficientNet-B0
-- 0.39 G MACs (torchvision's model table), at 2 FLOPs per MAC.
local nn = require 'moreau.nn'
local models = require 'moreau.models'

describe('net:flops', function()
  it('counts conv2d (stride, padding, groups) and linear by hand, nothing else', function()
    local b = nn.builder({ 2, 5, 5 }, { seed = 1 })
    local h = b:conv2d('c1', b.input, 2, 4, 3, { padding = 1 })     -- 5x5 out
    h = b:batchnorm2d('bn1', h, 4)
    h = b:softplus(h)
    h = b:conv2d('c2', h, 4, 4, 3, { stride = 2, padding = 1, groups = 2 }) -- 3x3 out
    h = b:maxpool2d(h, 1)
    local net = b:build(b:linear('fc', b:flatten(h), 36, 3))
    local c1 = 2 * 4 * 2 * 3 * 3 * 5 * 5       -- 2·Cout·Cin·kh·kw·Ho·Wo = 3600
    local c2 = 2 * 4 * (4 / 2) * 3 * 3 * 3 * 3 -- groups 2: Cin/groups = 2 → 1296
    local fc = 2 * 36 * 3                      -- 216
    assert.are.equal(c1 + c2 + fc, net:flops())
    assert.are.equal(5112, net:flops())
  end)

  it('names the weight it cannot find', function()
    local b = nn.builder({ 6 }, { seed = 1 })
    local net = b:build(b:linear(nil, b.input, 6, 2, { bias = false })) -- weight 'weight', node label 'linear'
    assert.has_error(function() net:flops() end, "net: no parameter named 'linear.weight'")
  end)

  it('gives the zoo models the counts the benchmark printed', function()
    local r18 = models.resnet18_cifar { activation = 'softplus', beta = 1, num_classes = 10, seed = 0 }
    assert.are.equal(1110845440, r18:flops()) -- 2 x 555,422,720 MACs
    local fm = models.resnet_fmnist { beta = 10, width = 1, num_classes = 10, seed = 0 }
    assert.are.equal(74313216, fm:flops())
    local eff = models.efficientnet_b0 {}
    assert.are.equal(771629504, eff:flops()) -- 2 x 385.8 M MACs
  end)
end)
