-- net:flops(): forward FLOPs per item, a multiply-add counted as 2 FLOPs, of
-- the ops that do matrix work: conv2d, linear, matmul and matmul_param
-- (bindings/moreau/nn.lua). Truth: hand counts of tiny networks (one of them
-- a two-head attention block), of ONNX fixtures, and the counts the benchmark printed for the zoo models before
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

  it('finds each node\'s weight through the graph, whatever its name', function()
    -- built without a name: the weight is 'weight' and the node 'linear'
    local b = nn.builder({ 6 }, { seed = 1 })
    local net = b:build(b:linear(nil, b.input, 6, 2, { bias = false }))
    assert.are.equal(2 * 6 * 2, net:flops())
    -- ONNX: weights are named by the exporter ('conv1.weight'), nodes by
    -- the graph ('/conv1/Conv'). Hand count of tiny_modern.onnx (3x16x16 in):
    --   stem conv 2x2 stride 2, 3 -> 8:   8·3·2·2 · 8·8   = 6144
    --   fc1 (MatMul (8,16) on 8x8 tokens, read as a 1x1 conv): 16·8 · 8·8 = 8192
    --   fc2 (16 -> 8, likewise):          8·16 · 8·8      = 8192
    --   squeeze-excite 1x1 conv 8 -> 8 on 1x1:  8·8       = 64
    --   depthwise 3x3 (groups 8) on 10x10:  8·1·3·3 · 10·10 = 7200
    --   head Gemm 24 -> 6:                6·24            = 144
    -- 29,936 multiply-adds
    local onnx = 'tests/fixtures/onnx/'
    assert.are.equal(2 * 29936, models.onnx(onnx .. 'tiny_modern.onnx'):flops())
    -- the reduced torchvision ResNet-18 and VGG-11-BN fixtures: the sum over
    -- the file's Conv nodes of numel(W)·Ho·Wo (shapes by onnx.shape_inference)
    -- and over its Gemm nodes of numel(W), times 2
    assert.are.equal(572032, models.onnx(onnx .. 'resnet18.onnx'):flops())
    assert.are.equal(1403520, models.onnx(onnx .. 'vgg11_bn.onnx'):flops())
  end)

  it('counts matmul of two activations and matmul_param: a two-head attention block by hand', function()
    -- tokens x (4, 6); q, k, v = x W (6x6 each); two heads of 3: q, v to
    -- (2, 4, 3), k to (2, 3, 4); s = q kᵀ (2, 4, 4); p = softmax(s); o = p v
    -- (2, 4, 3); a linear head on the 24 entries of o to 3 classes.
    local b = nn.builder({ 4, 6 }, { seed = 1 })
    local function heads(h, perm) return b:transpose(b:reshape(h, { 4, 2, 3 }), perm) end
    local q = heads(b:matmul_param('q', b.input, 6, 6), { 1, 0, 2 })
    local k = heads(b:matmul_param('k', b.input, 6, 6), { 1, 2, 0 })
    local v = heads(b:matmul_param('v', b.input, 6, 6), { 1, 0, 2 })
    local scores_node = b:matmul(q, k)
    local o = b:matmul(b:op('softmax', { scores_node }, nil, { axis = -1 }), v)
    assert.are.same({ 2, 4, 4 }, b:shape(scores_node))
    assert.are.same({ 2, 4, 3 }, b:shape(o))
    local net = b:build(b:linear('head', b:flatten(o), 24, 3))
    local proj = 3 * 4 * 6 * 6 -- q, k, v: 4 tokens · 6 in · 6 out each = 432
    local scores = 2 * 4 * 4 * 3 -- B·n·m·k of q kᵀ = 96
    local mix = 2 * 4 * 3 * 4 -- B·n·m·k of p v = 96
    local head = 24 * 3 -- 72
    assert.are.equal(2 * (proj + scores + mix + head), net:flops())
    assert.are.equal(1392, net:flops())
  end)

  it('counts a ViT with its attention: the vit_tiny fixture by hand', function()
    -- torchvision VisionTransformer on 3x32x32, patches 8x8 (16 + the class
    -- token = 17 tokens), width 32, 2 heads of 16, MLP 64, 2 layers, 10 classes
    local patches = 32 * 3 * 8 * 8 * 16 -- conv_proj: numel(W)·4·4 = 98,304
    local qkv = 17 * 32 * 96 -- in_proj (MatMul by the (32, 96) weight): 52,224
    local scores = 2 * 17 * 17 * 16 -- Q Kᵀ per head, B·n·m·k: 9,248
    local mix = 2 * 17 * 16 * 17 -- P V per head: 9,248
    local out = 17 * 32 * 32 -- out_proj: 17,408
    local mlp = 17 * 32 * 64 * 2 -- two layers of the MLP: 69,632
    local head = 32 * 10
    local macs = patches + 2 * (qkv + scores + mix + out + mlp) + head
    assert.are.equal(414144, macs)
    local net = models.onnx('tests/fixtures/onnx/vit_tiny.onnx')
    assert.are.equal(2 * macs, net:flops())
    -- the attention's two matmuls of activations are in the count: 2·4·9,248 FLOPs
    local n = 0
    for _, nd in ipairs(net:nodes()) do if nd.op == 'matmul' then n = n + 1 end end
    assert.are.equal(4, n)
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
