-- ONNX import (moreau.models.onnx, mr_net_from_onnx): parity with PyTorch on
-- committed fixtures, the ReLU -> softplus swap, and the loader's errors.
--
-- The fixtures (tests/fixtures/onnx/) are made by scripts/export_onnx.py:
-- torchvision's ResNet-18, ResNet-50 and VGG-11-bn structures at reduced width
-- and resolution, its VisionTransformer at 32x32 with 2 layers of 2 heads, and
-- two small nets using every op the reader maps, exported by
-- torch.onnx.export (opset 13, 17 for the newer ops; dynamic batch axis), with references computed
-- in float64 by PyTorch from the float32-rounded weights and inputs, as
-- tests/models_spec.lua's fixtures are. What is measured is the engine's
-- float32 arithmetic (plus the exporter's float32 folding of batchnorm into
-- the convolutions), so the bounds are those of models_spec:
--
--   logits, input gradients          ‖a − b‖ / ‖b‖ ≤ 1e-4
--   Hessian-vector products          ‖a − b‖ / ‖b‖ ≤ 1e-3
--   ReLU networks' HVPs              exactly 0, as PyTorch's (piecewise linear)
--
-- (measured when written: logits ≤ 1.4e-5, gradients ≤ 3e-6, HVPs ≤ 9e-6).
local T = require 'moreau.tensor'
local models = require 'moreau.models'
local oracle = require 'moreau.oracle'
local st = require 'moreau.safetensors'
local methods = require 'moreau.methods'

local D = 'tests/fixtures/onnx/'
local TOL = { logits = 1e-4, grad = 1e-4, hvp = 1e-3 }

--- ‖a − b‖ / ‖b‖ in double precision.
local function rel(a, b)
  assert.are.equal(b:numel(), a:numel())
  local num, den, pa, pb = 0, 0, a:data(), b:data()
  for i = 0, a:numel() - 1 do
    num = num + (pa[i] - pb[i]) ^ 2
    den = den + pb[i] ^ 2
  end
  return math.sqrt(num) / math.sqrt(den)
end

local function assert_close(what, a, b, tol)
  local e = rel(a, b)
  if not (e <= tol) then error(('%s: relative error %.3g > %.3g'):format(what, e, tol), 2) end
  return e
end

local function max_abs(t)
  local m, p = 0, t:data()
  for i = 0, t:numel() - 1 do m = math.max(m, math.abs(p[i])) end
  return m
end

local function labels_of(t)
  local l = {}
  for i = 0, t.__labels:numel() - 1 do l[i + 1] = t.__labels:data()[i] end
  return l
end

--- The message of a failing call (asserting that it fails).
local function fails(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, 'expected an error')
  return tostring(err)
end

local function tmpname()
  local p = os.tmpname()
  os.remove(p)
  return p
end

-- ------------------------------------------------------------ parity

local PARITY = {
  { name = 'tiny_ops', nodes = 21, curved = true }, -- softplus, sigmoid, tanh: a real HVP
  { name = 'tiny_modern', nodes = 36, curved = true }, -- layernorm, GELU, hardswish, softmax (opset 17)
  -- the same net at opset 14: LayerNorm split into ReduceMean, Sub, Pow, Sqrt, Div, matched back into one
  -- `layernorm` (its weight and bias follow as a Mul and an Add: four nodes more)
  { name = 'tiny_modern_op14', nodes = 40, curved = true, has = 'layernorm' },
  { name = 'resnet18', nodes = 50 },
  { name = 'resnet50', nodes = 123 },
  { name = 'vgg11_bn', nodes = 27 },
  -- torchvision's VisionTransformer (vit_b_16's class) at 32x32: Shape arithmetic on
  -- the dynamic batch axis, the class token expanded to the batch, attention over
  -- (L, N, E) with N merged into the heads, matmul of two computed values
  { name = 'vit_tiny', nodes = 77, curved = true },
}

for _, m in ipairs(PARITY) do
  describe('ONNX parity with PyTorch: ' .. m.name, function()
    local t, net, labels
    setup(function()
      t = st.load(D .. m.name .. '.safetensors')
      net = models.onnx(D .. m.name .. '.onnx')
      labels = labels_of(t)
    end)

    it('maps every node the output depends on', function()
      assert.are.equal(m.nodes, #net:nodes())
      if m.has then
        local found = false
        for _, nd in ipairs(net:nodes()) do found = found or nd.op == m.has end
        assert.is_true(found, m.name .. ' has a ' .. m.has .. ' node')
      end
      assert.are.equal('onnx', net.model.name)
      local s = t.__x:shape()
      table.remove(s, 1)
      assert.are.same(s, net:input_shape())
      assert.are.same({ t.__logits:shape()[2] }, net:output_shape())
    end)

    it(('logits and input gradients within %g'):format(TOL.logits), function()
      local e1 = assert_close('logits', net:forward(t.__x), t.__logits, TOL.logits)
      local _, g = oracle.grad(net, t.__x, labels)
      local e2 = assert_close('grad', g, t.__grad, TOL.grad)
      print(('  %s: logits rel %.2e, grad rel %.2e'):format(m.name, e1, e2))
    end)

    it(m.curved and ('HVP within %g'):format(TOL.hvp) or 'HVP exactly 0 (piecewise linear)', function()
      local hv = oracle.hvp(net, t.__x, labels, t.__v)
      if m.curved then
        local e = assert_close('hvp', hv, t.__hvp, TOL.hvp)
        print(('  %s: hvp rel %.2e'):format(m.name, e))
      else
        assert.are.equal(0, max_abs(t.__hvp))
        assert.are.equal(0, max_abs(hv))
      end
    end)
  end)
end

describe('ONNX models work as zoo models', function()
  it('every method explains an imported model; weights save and load by name', function()
    local net = models.onnx(D .. 'tiny_ops.onnx')
    local t = st.load(D .. 'tiny_ops.safetensors')
    local labels = labels_of(t)
    for _, name in ipairs { 'gradient', 'smoothgrad', 'moreaugrad', 'deeplift' } do
      local map = methods.create(name, name == 'smoothgrad' and { samples = 4, seed = 1 } or
        name == 'moreaugrad' and { T = 3 } or nil):explain(net, t.__x, labels)
      assert.are.same(t.__x:shape(), map:shape())
      assert.is_true(max_abs(map) > 0, name)
    end
    local path = tmpname() .. '.safetensors'
    models.save(net, path)
    local again = models.onnx(D .. 'tiny_ops.onnx')
    for _, p in ipairs(again:params()) do p.tensor:fill(0) end
    models.load(again, path)
    os.remove(path)
    assert.are.equal(0, rel(again:forward(t.__x), net:forward(t.__x)))
  end)

  it('ViT: each item alone gives its logits in the batch (N is moved and merged, never mixed); methods explain it',
    function()
      local net = models.onnx(D .. 'vit_tiny.onnx')
      local t = st.load(D .. 'vit_tiny.safetensors')
      local y = net:forward(t.__x)
      for n = 1, t.__x:shape()[1] do
        assert.are.equal(0, rel(net:forward(t.__x:select(n)), y:select(n)), 'item ' .. n)
      end
      local labels = labels_of(t)
      for _, name in ipairs { 'gradient', 'smoothgrad', 'moreaugrad' } do
        local map = methods.create(name, name == 'smoothgrad' and { samples = 4, seed = 1 } or
          name == 'moreaugrad' and { T = 3 } or nil):explain(net, t.__x, labels)
        assert.are.same(t.__x:shape(), map:shape())
        assert.is_true(max_abs(map) > 0, name)
      end
    end)

  it('typed initializer fields, Constant, Identity, Gemm transB/alpha/beta, opset-11 LogSoftmax', function()
    -- float_data, DOUBLE, FLOAT16 and raw_data initializers; the reference is float64 numpy
    local net = models.onnx(D .. 'mlp_typed.onnx')
    local t = st.load(D .. 'mlp_typed.safetensors')
    local e = assert_close('logits', net:forward(t.__x), t.__logits, 1e-6)
    print(('  mlp_typed: logits rel %.2e'):format(e))
    local names = {}
    for _, p in ipairs(net:params()) do names[#names + 1] = p.name end
    assert.are.same({ 'w1', 'b1', 'w2', 'b2' }, names)
  end)

  it('external data beside the model loads as the same network', function()
    local a, b = models.onnx(D .. 'conv_ok.onnx'), models.onnx(D .. 'ext_ok.onnx')
    local x = T.zeros { 2, 3, 8, 8 }
    x:apply_(function() return 0.5 end)
    assert.are.equal(0, rel(b:forward(x), a:forward(x)))
  end)
end)

-- ------------------------------------------------- softplus on request

describe('ONNX ReLU -> softplus(beta) on request', function()
  local t, labels
  setup(function()
    t = st.load(D .. 'resnet18.safetensors')
    labels = labels_of(t)
  end)

  it('matches PyTorch with every nn.ReLU replaced by nn.Softplus(beta = 5), HVP included', function()
    local net = models.onnx(D .. 'resnet18.onnx', { softplus = 5 })
    assert.are.equal(5, net.model.options.softplus)
    local e1 = assert_close('logits', net:forward(t.__x), t.__sp_logits, TOL.logits)
    local _, g = oracle.grad(net, t.__x, labels)
    local e2 = assert_close('grad', g, t.__sp_grad, TOL.grad)
    local hv = oracle.hvp(net, t.__x, labels, t.__v)
    local e3 = assert_close('hvp', hv, t.__sp_hvp, TOL.hvp)
    assert.is_true(max_abs(hv) > 0)
    print(('  resnet18 softplus(5): logits %.2e, grad %.2e, hvp %.2e'):format(e1, e2, e3))
  end)

  -- softplus_β(x) − relu(x) ∈ (0, ln 2 / β]; through the network the logits
  -- move by at most K ln 2 / β. Measured on this fixture when written:
  -- K = 2.9 at β = 30, 1.7 at 100, 1.3 at 1000, 0.45 at 10^4; asserted K ≤ 4.
  it('logits approach the ReLU network as beta grows: max |Δ| ≤ 4 ln2 / beta, decreasing', function()
    local relu = models.onnx(D .. 'resnet18.onnx'):forward(t.__x)
    local last = math.huge
    for _, beta in ipairs { 30, 100, 300, 1000, 10000 } do
      local y = models.onnx(D .. 'resnet18.onnx', { softplus = beta }):forward(t.__x)
      local d, py, pr = 0, y:data(), relu:data()
      for i = 0, y:numel() - 1 do d = math.max(d, math.abs(py[i] - pr[i])) end
      print(('  beta %6g: max |logit - relu logit| = %.3e = %.2f ln2/beta'):format(beta, d, d * beta / math.log(2)))
      assert.is_true(d <= 4 * math.log(2) / beta, ('beta %g: %g'):format(beta, d))
      assert.is_true(d < last)
      last = d
    end
  end)

  it('refuses a negative or NaN beta, naming the option', function()
    local err = fails(models.onnx, D .. 'resnet18.onnx', { softplus = -1 })
    assert.truthy(err:find("models.onnx: option 'softplus' must be", 1, true), err)
    err = fails(models.onnx, D .. 'resnet18.onnx', { softplus = 0 / 0 })
    assert.truthy(err:find("option 'softplus'", 1, true), err)
    err = fails(models.onnx, D .. 'resnet18.onnx', { max_bytes = 1.5 })
    assert.truthy(err:find("models.onnx: option 'max_bytes' must be an integer >= 0 (bytes; 0: the loader budget plus four times the file), got 1.5",
      1, true), err)
    err = fails(models.onnx, D .. 'resnet18.onnx', { beta = 2 })
    assert.truthy(err:find("models.onnx: unknown option 'beta'", 1, true), err)
  end)
end)

-- ------------------------------------------------------------- errors

describe('ONNX loader errors', function()
  local function err_of(name) return fails(models.onnx, D .. name) end

  it('an unsupported op names the node, its index and the op type', function()
    local e = err_of('bad_op.onnx')
    assert.truthy(e:find("onnx: " .. D .. "bad_op.onnx: node 'act7' (#1, LeakyRelu): op type 'LeakyRelu' is not supported",
      1, true), e)
  end)

  it('an unsupported attribute value names the node and the attribute', function()
    local e = err_of('bad_attr.onnx')
    assert.truthy(e:find("node 'conv' (#0, Conv): attribute 'auto_pad' = 'SAME_UPPER' is not supported", 1, true), e)
  end)

  it('an initializer whose bytes do not match its dims', function()
    local e = err_of('bad_init_size.onnx')
    assert.truthy(e:find("tensor 'w' (FLOAT, 108 elements) has 424 bytes of raw_data, expected 432", 1, true), e)
  end)

  it('hostile dims: negative, and a product past int64', function()
    local e = err_of('bad_dims_negative.onnx')
    assert.truthy(e:find("tensor 'w' has dims 4x-3x3x3: a negative dim", 1, true), e)
    e = err_of('bad_dims_overflow.onnx')
    assert.truthy(e:find("tensor 'w' has dims 2147483648x2147483648x2147483648x3: their product overflows int64", 1, true), e)
  end)

  it('a dangling input and a cycle', function()
    local e = err_of('bad_dangling.onnx')
    assert.truthy(e:find("node 'act7' (#1, Relu): input 'nowhere' is dangling", 1, true), e)
    e = err_of('bad_cycle.onnx')
    assert.truthy(e:find("node 'act7' (#1, Relu): the graph has a cycle through this node", 1, true), e)
  end)

  it('a Reshape that merges the batch axis with the others names the node', function()
    -- (N, 4, 8, 8) -> (-1, 2) is read as N outermost, (N*128) x 2; the pooling after it needs N first alone
    local e = err_of('bad_reshape_batch.onnx')
    assert.truthy(e:find("node 'gap' (#3, GlobalAveragePool): input 0 ('a') is (N*128)x2: the batch axis N is not " ..
      "its first dim alone; moreau maps this op with N first", 1, true), e)
  end)

  it('a node name of 5000 characters is cut so the reason survives; a Constant names itself; a declared output shape is shown', function()
    local e = err_of('bad_long_name.onnx')
    assert.truthy(e:find("node '" .. ('n'):rep(96) .. "...' (#1, LeakyRelu): op type 'LeakyRelu' is not supported",
      1, true), e)
    e = err_of('bad_dropout_train.onnx')
    assert.truthy(e:find("node 'train_flag' (#1, Constant): tensor '' has data type BOOL (9)", 1, true), e)
    e = err_of('bad_output_shape.onnx')
    assert.truthy(e:find("the graph output 'y' is declared as Nx7, the mapped network gives Nx4", 1, true), e)
  end)

  it('Div by a constant rounds once, bit for bit as PyTorch (x / 3, not x * (1/3))', function()
    local net = models.onnx(D .. 'div_const.onnx')
    local x = T.zeros { 2, 64 }
    for i = 0, x:numel() - 1 do x:data()[i] = 1 + i / 7 end
    local y, f = net:forward(x), require('ffi').new('float[1]')
    local differ = 0
    for i = 0, x:numel() - 1 do
      f[0] = x:data()[i] / 3 -- a float32 quotient, rounded once from the exact one (53 >= 2 * 24 + 2 bits)
      assert.are.equal(f[0], y:data()[i])
      f[0] = 1 / 3; f[0] = x:data()[i] * f[0] -- the float32 reciprocal, then the float32 product
      if f[0] ~= y:data()[i] then differ = differ + 1 end
    end
    assert.is_true(differ > 0, 'the inputs include ones where x * (1/3) rounds differently')
  end)

  it('x.reshape(-1, E) of N x L x E (every item\'s tokens as rows) keeps N outermost: a MatMul, then back to N x 12', function()
    local net = models.onnx(D .. 'rows_reshape.onnx')
    local x = T.randn({ 3, 4, 16 }, { seed = 5 })
    local y, w = net:forward(x), net:param('w')
    assert.are.same({ 3, 12 }, y:shape())
    local px, pw, py = x:data(), w:data(), y:data()
    for r = 0, 11 do -- row r of the (3*4) x 16 matrix times w (16 x 3)
      for c = 0, 2 do
        local s = 0
        for k = 0, 15 do s = s + px[r * 16 + k] * pw[k * 3 + c] end
        assert.is_true(math.abs(py[r * 3 + c] - s) <= 1e-5 * math.max(1, math.abs(s)), ('row %d col %d'):format(r, c))
      end
    end
    -- each item alone gives its own rows (N is outermost, items do not mix)
    local one = net:forward(x:narrow(2, 2))
    for k = 0, 11 do assert.are.equal(py[12 + k], one:data()[k]) end
  end)

  it('an attention scale from a traced shape (Pow and Sqrt of a constant) folds: x * 6^-0.5 / sqrt 6', function()
    local net = models.onnx(D .. 'scale_fold.onnx')
    local x = T.randn({ 2, 4, 6 }, { seed = 9 })
    local y, f = net:forward(x), require('ffi').new('float[3]')
    f[1] = 6 ^ -0.5
    f[2] = math.sqrt(6)
    for e = 0, x:numel() - 1 do
      f[0] = x:data()[e] * f[1]
      f[0] = f[0] / f[2]
      assert.are.equal(f[0], y:data()[e])
    end
  end)

  it('LayerNorm split into seven nodes is one layernorm only when both means are over the last axis', function()
    local net = models.onnx(D .. 'layernorm_split.onnx')
    local ops = {}
    for _, nd in ipairs(net:nodes()) do ops[#ops + 1] = nd.op end
    assert.are.equal('input layernorm', table.concat(ops, ' '))
    local x = T.randn({ 2, 4, 6 }, { seed = 3 })
    local y = net:forward(x)
    for row = 0, 7 do -- (x - mean) / sqrt(var + eps) over each row of 6, in double
      local px, m, v = x:data(), 0, 0
      for k = 0, 5 do m = m + px[row * 6 + k] / 6 end
      for k = 0, 5 do v = v + (px[row * 6 + k] - m) ^ 2 / 6 end
      for k = 0, 5 do
        local want = (px[row * 6 + k] - m) / math.sqrt(v + 1e-5)
        assert.is_true(math.abs(y:data()[row * 6 + k] - want) <= 1e-5, ('row %d entry %d'):format(row, k))
      end
    end
    -- the variance over axis 1 instead: not a LayerNorm, refused at the broadcast Sub, never mapped as one
    local e = err_of('bad_layernorm_axes.onnx')
    assert.truthy(e:find("node 'centre' (#1, Sub)", 1, true), e)
  end)

  it('a class token left constant by a batch-1 export says to export with a dynamic batch axis', function()
    local e = err_of('bad_cls_batch1.onnx')
    assert.truthy(e:find("node 'tokens' (#0, Concat): input 0 ('cls') is a constant; moreau maps this op on values " ..
      "computed from the graph input (exported at the fixed batch 1, a ViT's class token is expanded to a constant: " ..
      "export with a dynamic batch axis, dynamic_axes)", 1, true), e)
  end)

  it('a NaN weight is refused, naming the tensor (a ReLU would hide it in the logits)', function()
    local e = err_of('bad_nan_weight.onnx')
    assert.truthy(e:find("tensor 'w' holds NaN at element 5; moreau refuses non-finite weights and constants", 1, true), e)
  end)

  it('a Reshape to 1x-1 is the batch axis only in a graph exported at the fixed batch 1', function()
    local e = err_of('bad_reshape_one.onnx')
    assert.truthy(e:find("node 'one_row' (#3, Reshape): target shape 1x-1 of an Nx4x1x1 input merges the batch axis N " ..
      "with others", 1, true), e)
    local one, ref = models.onnx(D .. 'reshape_one_batch1.onnx'), models.onnx(D .. 'conv_ok.onnx')
    local x = T.zeros { 3, 3, 8, 8 }
    for i = 0, x:numel() - 1 do x:data()[i] = math.sin(i) end
    local a, b = one:forward(x), ref:forward(x)
    assert.are.same({ 3, 4 }, a:shape())
    for i = 0, b:numel() - 1 do assert.are.equal(b:data()[i], a:data()[i]) end
  end)

  it('shape arithmetic on the batch axis that is not exact for every N', function()
    local e = err_of('bad_shape_add.onnx')
    assert.truthy(e:find("node 'plus_one' (#2, Add): N + 1 is not one number or one multiple of the batch size N " ..
      "for every N; moreau folds shapes exactly", 1, true), e)
  end)

  it('a shape counting N where a number is needed; a computed value expanded to another shape', function()
    local e = err_of('bad_slice_n.onnx')
    assert.truthy(e:find("node 'slice_to_n' (#2, Slice): input 2 ('n') counts the batch axis N (a shape taken from " ..
      "a computed value); moreau needs a number known when the graph is read", 1, true), e)
    e = err_of('bad_expand_value.onnx')
    assert.truthy(e:find("node 'expand' (#0, Expand): expanding the computed value Nx4x6 to 1x4x4x6 is not supported",
      1, true), e)
  end)

  it('a Reshape whose computed target moves N in the row-major order', function()
    local e = err_of('bad_reshape_mix.onnx')
    assert.truthy(e:find("node 'mix' (#3, Reshape): target shape 4xNx6 of the input Nx4x6 mixes the batch axis N " ..
      "with other dims (N does not keep its place in the row-major order)", 1, true), e)
  end)

  it('a product over the batch (x^T x), an op needing N first, N left inside the output', function()
    local e = err_of('bad_matmul_batch.onnx')
    assert.truthy(e:find("node 'gram' (#2, MatMul): inputs 'xt' (4x6xN) and 'xs' (4xNx6) hold the batch axis N " ..
      "in different places", 1, true), e)
    e = err_of('bad_conv_layout.onnx')
    assert.truthy(e:find("node 'conv' (#1, Conv): input 0 ('xs') is 3xNx4x4: the batch axis N is not its first " ..
      "dim alone; moreau maps this op with N first", 1, true), e)
    e = err_of('bad_output_layout.onnx')
    assert.truthy(e:find("the graph output 'y' is 4xNx6: the batch axis N is not its first dim", 1, true), e)
  end)

  it('a fixed batch axis other than 1', function()
    local e = err_of('bad_batch.onnx')
    assert.truthy(e:find("graph input 'x' has a fixed batch axis of 8", 1, true), e)
  end)

  it('external data that leaves the model folder, or is shorter than the tensor', function()
    local e = err_of('bad_ext_escape.onnx')
    assert.truthy(e:find("external data location '../onnx/ext_ok.bin' leaves the model's folder", 1, true), e)
    e = err_of('bad_ext_slashes.onnx')
    assert.truthy(e:find("tensor 'w': external data location '///' names a folder, not a file", 1, true), e)
    e = err_of('bad_ext_length.onnx')
    assert.truthy(e:find("external data 'ext_ok.bin' holds 428 bytes at offset 0 of a 432-byte file; the tensor needs 432",
      1, true), e)
  end)

  it('a truncated file, cut anywhere, is refused (never a smaller network)', function()
    local f = assert(io.open(D .. 'resnet18.onnx', 'rb'))
    local bytes = f:read('*a')
    f:close()
    local path = tmpname() .. '.onnx'
    for _, n in ipairs { 1, 16, 200, math.floor(#bytes / 2), #bytes - 300, #bytes - 20, #bytes - 1 } do
      local g = assert(io.open(path, 'wb'))
      g:write(bytes:sub(1, n))
      g:close()
      local e = fails(models.onnx, path)
      assert.truthy(e:find('onnx: ' .. path .. ': ', 1, true), e)
      assert.truthy(e:find('not a valid ONNX model', 1, true) or e:find('no opset', 1, true)
        or e:find('no graph', 1, true), ('cut at %d: %s'):format(n, e))
    end
    os.remove(path)
  end)

  it('inputs the fuzzer found (engine/fuzz/regressions/onnx)', function()
    -- a Reshape of constants (folded) whose input 0 is the empty name, inputs after it given
    local e = fails(models.onnx, 'engine/fuzz/regressions/onnx/fold_missing_input0.onnx')
    assert.truthy(e:find("node '/Reshape' (#25, Reshape): input 0 is missing", 1, true), e)
    -- a folded Slice of constants with a step of INT64_MAX: its entry count overflowed (UBSan, in the
    -- sanitizer build of this suite); the model is refused later, at a Pad
    e = fails(models.onnx, 'engine/fuzz/regressions/onnx/fold_slice_huge_step.onnx')
    assert.truthy(e:find("node '/Pad' (#43, Pad): input 'pads' has 2 entries, expected 8", 1, true), e)
  end)

  it('a model over the budget, and a file that is not there', function()
    local e = fails(models.onnx, D .. 'resnet18.onnx', { max_bytes = 4096 })
    assert.truthy(e:find('the file (188', 1, true) and e:find('is over the budget of 4096 bytes', 1, true), e)
    -- the default scales with the file: a model bigger than the loader budget
    -- loads by default (a full-size ResNet-50, 102 MB, against 256 MiB), and
    -- a budget a file cannot fill caps what it can make
    local data = require 'moreau.data'
    data.set_loader_budget(4096)
    local ok, net = pcall(models.onnx, D .. 'resnet18.onnx')
    local too_big = fails(models.onnx, D .. 'tiny_modern.onnx', { max_bytes = 4096 })
    data.set_loader_budget(nil)
    assert.is_true(ok, tostring(net))
    assert.truthy(too_big:find('is over the budget of 4096 bytes (mr_onnx_options.max_bytes; its default is the ' ..
      'loader budget, mr_set_loader_budget, plus four times the file)', 1, true), too_big)
    e = fails(models.onnx, D .. 'nothing.onnx')
    assert.truthy(e:find('onnx: cannot open ' .. D .. 'nothing.onnx', 1, true), e)
    e = fails(models.onnx, 42)
    assert.truthy(e:find('models.onnx: path must be a string, got number', 1, true), e)
  end)
end)

-- ------------------------------------------------------ the C example

describe('examples/onnx_gradient.c', function()
  -- built by CMake next to the library under test
  local core = require 'moreau.core'
  local exe = (core.lib_path:match('^(.*)/[^/]*$') or '.') .. '/onnx_gradient'

  local function run(args)
    local p = assert(io.popen(exe .. ' ' .. args .. ' 2>&1; echo "rc=$?"'))
    local out = p:read('*a')
    p:close()
    return out
  end

  it('prints the score and gradient norm the Lua oracle computes', function()
    local out = run(D .. 'resnet18.onnx 3')
    local score, norm = out:match('^class 3: score (%S+), |gradient| (%S+)\nrc=0')
    assert.truthy(score, out)
    local net = models.onnx(D .. 'resnet18.onnx')
    local x = T.zeros { 1, 3, 32, 32 }
    x:fill(0.5)
    local s, g = oracle.grad(net, x, { 3 })
    assert.is_true(math.abs(tonumber(score) - s[1]) <= 1e-5 * math.abs(s[1]), out)
    assert.is_true(math.abs(tonumber(norm) - g:norm()) <= 1e-5 * g:norm(), out)
  end)

  it('reports the loader error and exits 1', function()
    local out = run(D .. 'bad_op.onnx')
    assert.truthy(out:find("onnx_gradient: onnx: " .. D .. "bad_op.onnx: node 'act7' (#1, LeakyRelu)", 1, true), out)
    assert.truthy(out:find('rc=1', 1, true), out)
  end)
end)

-- ------------------------------------------------------ the command line

describe('moreau explain --model=FILE.onnx', function()
  local cli = require 'helpers.cli'
  local tmp = cli.tmpdir()
  local model = D .. 'resnet50.onnx' -- torchvision's ResNet-50 at width 1/16 taking 3x64x64

  it('explains a 224x224 photo-like picture: resized to the graph input, ImageNet-normalized, named classes', function()
    -- smooth shading and a few blobs, as a photograph has, not noise
    local x = T.zeros { 1, 3, 224, 224 }
    local p = x:data()
    for c = 0, 2 do
      for i = 0, 223 do
        for j = 0, 223 do
          local v = 0.5 + 0.3 * math.sin(i / (19 + 7 * c)) * math.cos(j / 23)
            + 0.2 * math.exp(-((i - 80) ^ 2 + (j - 150 + 20 * c) ^ 2) / 900)
          p[(c * 224 + i) * 224 + j] = math.min(1, math.max(0, v))
        end
      end
    end
    local photo = tmp .. '/photo.png'
    require('moreau.data').save_png(photo, x)
    local names = {}
    for k = 0, 9 do names[#names + 1] = 'class_' .. string.char(97 + k) end
    cli.write(tmp .. '/names.txt', table.concat(names, '\n') .. '\n')
    local out, rc = cli.moreau(('explain --model=%s --image=%q --classes=%q --methods=gradient,moreaugrad --fast ' ..
      '--moreaugrad.T=3 --out=%q'):format(model, photo, tmp .. '/names.txt', tmp .. '/run'))
    assert.are.equal(0, rc, out)
    assert.truthy(out:find(('explain: %s is 224 wide × 224 high with 3 channels; %s takes 64 wide × 64 high with ' ..
      '3 channels: resized to 64 wide × 64 high'):format(photo, model), 1, true), out)
    local results = require('cjson').decode(cli.read(tmp .. '/run/results.json'))
    -- the page's prediction is the network's on the preprocessed picture
    local img = require('moreau.data').load_image(photo, { channels = 3, size = { 64, 64 } })
    local m = models.IMAGENET_NORMALIZATION
    local logits = models.onnx(model):forward(require('moreau.data').normalize(img, m.mean, m.std)):totable()
    local pred = 0
    for i = 2, #logits do if logits[i] > logits[pred + 1] then pred = i - 1 end end
    assert.are.equal(pred, results.prediction.label)
    assert.are.equal(names[pred + 1], results.prediction.class)
    assert.is_true(math.abs(results.prediction.logits[1] - logits[1]) <= 1e-5 * math.max(1, math.abs(logits[1])))
    assert.are.equal('onnx', results.model.card.architecture)
    assert.truthy(cli.read(tmp .. '/run/index.html'):find(names[pred + 1], 1, true))
    assert.truthy(cli.read(tmp .. '/run/gradient.png'))
  end)

  it('refuses a class-names file of the wrong length, a missing --image, ONNX options for a shipped model', function()
    cli.write(tmp .. '/three.txt', 'a\nb\nc\n')
    local out, rc = cli.moreau(('explain --model=%s --image=%q --classes=%q --methods=gradient --out=%q'):format(
      model, tmp .. '/photo.png', tmp .. '/three.txt', tmp .. '/bad1'))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find(('%s names 3 classes (one per line); %s has 10'):format(tmp .. '/three.txt', model), 1, true),
      out)
    out, rc = cli.moreau(('explain --model=%s --methods=gradient --out=%q'):format(model, tmp .. '/bad2'))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find(('explain: --model=%s needs --image=PATH'):format(model), 1, true), out)
    out, rc = cli.moreau(('explain --softplus=10 --methods=gradient --out=%q'):format(tmp .. '/bad3'))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find('explain: --classes, --normalize, --softplus and --max_bytes apply to an ONNX --model ' ..
      '(a .onnx file); resnet_fmnist is a shipped model', 1, true), out)
    out, rc = cli.moreau(('explain --model=%s --image=%q --methods=gradient --out=%q'):format(D .. 'bad_op.onnx',
      tmp .. '/photo.png', tmp .. '/bad4'))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find("node 'act7' (#1, LeakyRelu): op type 'LeakyRelu' is not supported", 1, true), out)
    -- a model that does not take images; a budget too small for the file, and the option that raises it
    out, rc = cli.moreau(('explain --model=%s --image=%q --methods=gradient --out=%q'):format(D .. 'mlp_typed.onnx',
      tmp .. '/photo.png', tmp .. '/bad5'))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find(('explain: --model=%s takes inputs of shape N x '):format(D .. 'mlp_typed.onnx'), 1, true)
      and out:find('; explain needs an image model, N x C x H x W', 1, true), out)
    out, rc = cli.moreau(('explain --model=%s --image=%q --methods=gradient --max_bytes=2000 --out=%q'):format(model,
      tmp .. '/photo.png', tmp .. '/bad6'))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find('max_bytes', 1, true) and out:find('(on the command line: --max_bytes=N)', 1, true), out)
  end)

  it('unnormalized inputs: the baseline caption says 0 is black, results.json the normalization; .ONNX loads', function()
    local upper = tmp .. '/Tiny.ONNX'
    cli.write(upper, cli.read(D .. 'tiny_ops.onnx'))
    local x = T.zeros { 1, 3, 16, 16 }
    for i = 0, x:numel() - 1 do x:data()[i] = 0.5 + 0.4 * math.sin(i / 7) end
    require('moreau.data').save_png(tmp .. '/small.png', x)
    local out, rc = cli.moreau(('explain --model=%s --image=%q --normalize=none --methods=integrated_gradients ' ..
      '--fast --out=%q'):format(upper, tmp .. '/small.png', tmp .. '/none'))
    assert.are.equal(0, rc, out)
    local page = cli.read(tmp .. '/none/index.html')
    assert.truthy(page:find('Baseline x0: 0 = black (the model takes its inputs unnormalized)', 1, true))
    assert.falsy(page:find('mean grey', 1, true))
    local results = require('cjson').decode(cli.read(tmp .. '/none/results.json'))
    assert.are.same({ mean = 0, std = 1 }, results.normalization)
  end)

  it('a ViT: DeepLIFT (no LayerNorm rule) is skipped with the reason when every method runs, an error when named', function()
    local vit = D .. 'vit_tiny.onnx'
    local x = T.zeros { 1, 3, 32, 32 }
    for i = 0, x:numel() - 1 do x:data()[i] = 0.5 + 0.4 * math.sin(i / 7) end
    require('moreau.data').save_png(tmp .. '/v32.png', x)
    local out, rc = cli.moreau(('explain --model=%s --image=%q --fast --moreaugrad.T=3 --sparse_moreaugrad.T=3 ' ..
      '--group_moreaugrad.T=3 --out=%q'):format(vit, tmp .. '/v32.png', tmp .. '/vit'))
    assert.are.equal(0, rc, out)
    assert.truthy(out:find("explain: DeepLIFT skipped, the other methods ran: node 74 '/encoder/ln/LayerNormalization' " ..
      "(layernorm) has no exact DeepLIFT rule", 1, true), out)
    local results = require('cjson').decode(cli.read(tmp .. '/vit/results.json'))
    assert.truthy(results.skipped.deeplift and results.methods.group_moreaugrad and not results.methods.deeplift)
    out, rc = cli.moreau(('explain --model=%s --image=%q --methods=gradient,deeplift --out=%q'):format(vit,
      tmp .. '/v32.png', tmp .. '/vit2'))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find('has no exact DeepLIFT rule', 1, true), out)
  end)

  it('an all-zero sparse map names eta and a value on the scale of the model\'s gradient', function()
    local out, rc = cli.moreau(('explain --model=%s --image=%q --methods=sparse_moreaugrad --fast ' ..
      '--sparse_moreaugrad.T=3 --sparse_moreaugrad.eta=1000 --out=%q'):format(D .. 'tiny_ops.onnx',
      tmp .. '/small.png', tmp .. '/zero'))
    assert.are.equal(0, rc, out)
    assert.truthy(out:find('explain: the sparse_moreaugrad map is all zero: its eta = 1000 (absolute, score per ' ..
      'normalized input unit) is above what this model\'s gradient reaches (largest entry ', 1, true), out)
    local g = tonumber(out:match("gradient reaches %(largest entry ([^ ]+) at the input%)"))
    local eta = tonumber(out:match('try %-%-sparse_moreaugrad%.eta=([^%s]+)'))
    assert.truthy(g and eta and g > 0 and math.abs(eta - g / 10) <= 0.01 * g, out)
    assert.truthy(cli.read(tmp .. '/zero/index.html'):find('map is all zero', 1, true))
  end)
end)
