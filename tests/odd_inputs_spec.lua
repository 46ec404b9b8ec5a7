-- Odd values at the public entry points that take a count, index, size,
-- axis or value: a string, NaN, ±inf, a fraction or a negative number gets a
-- clear error naming the argument, never a raw FFI conversion error, and
-- never a silent wrong answer (NaN or inf stored as INT_MIN, 1.5 truncated to
-- 1). An integer cdata (2LL, an element of an int64_t array) is taken as its
-- value where an integer is expected.
local ffi = require 'ffi'
local T = require 'moreau.tensor'
local nn = require 'moreau.nn'
local metrics = require 'moreau.metrics'
local error_with = require('helpers.asserts').error_with

local NAN, INF = 0 / 0, 1 / 0

-- a builder on (4, 3) samples and its input node
local function tokens()
  local b = nn.builder({ 4, 3 })
  return b, b.input
end

describe('op attributes given to the builder', function()
  it('an integer attribute refuses fractions, NaN, inf and strings, naming the attribute', function()
    local b, x = tokens()
    error_with(function() b:slice(x, 0, 1.5, 3) end, "nn: op attribute 'start' must be an integer, got 1.5")
    error_with(function() b:slice(x, 0, 0, INF) end, "nn: op attribute 'end' must be an integer, got inf")
    error_with(function() b:slice(x, 0, '1', 3) end, "nn: op attribute 'start' must be a number, got '1'")
    error_with(function() b:gather(x, 0, NAN) end, "nn: op attribute 'index' must be an integer, got nan")
    error_with(function() b:reshape(x, { 2, 6.5 }) end, "nn: op attribute 'shape' must be an integer, got 6.5")
    error_with(function() b:transpose(x, { '1', 0 }) end, "nn: op attribute 'perm' must be a number, got '1'")
    error_with(function() b:concat({ x, x }, INF) end,
      "nn: op attribute 'axis' must be an integer in the int32 range, got inf")
    error_with(function() b:concat({ x, x }, 2 ^ 31) end,
      "nn: op attribute 'axis' must be an integer in the int32 range, got 2147483648")
    local c = nn.builder({ 1, 6, 6 })
    -- a stride of 1.5 was truncated to 1; NaN reached the op as INT_MIN
    error_with(function() c:conv2d('c', c.input, 1, 2, 3, { stride = 1.5 }) end,
      "nn: op attribute 'stride' must be an integer in the int32 range, got 1.5")
    error_with(function() c:maxpool2d(c.input, NAN, { stride = 1 }) end,
      "nn: op attribute 'kernel' must be an integer in the int32 range, got nan")
    error_with(function() c:maxpool2d(c.input, '2', { stride = 1 }) end, "nn: op attribute 'kernel' must be a number, got '2'")
    error_with(function() c:pad(c.input, { 0, 1.5, 0, 0, 0, 0 }) end,
      "nn: op attribute 'pads' must be an integer in the int32 range, got 1.5")
    -- a float attribute takes any number; a string is named
    error_with(function() c:dropout(c.input, '0.5') end, "nn: op attribute 'p' must be a number, got '0.5'")
    error_with(function() c:softplus(c.input, { beta = {} }) end, "nn: op attribute 'beta' must be a number, got a table")
  end)

  it('integer cdata is taken exactly, INT64_MAX as a slice end too', function()
    local b, x = tokens()
    -- ONNX writes "to the end" as INT64_MAX; as a Lua number it would not fit
    assert.are.same({ 3, 3 }, b:shape(b:slice(x, 0, 1LL, 9223372036854775807LL)))
    assert.are.same(b:shape(b:slice(x, 0, 1, nil)), b:shape(b:slice(x, 0, 1LL, 9223372036854775807LL)))
    assert.are.same({ 3 }, b:shape(b:gather(x, 0, ffi.new('int64_t[1]', { -1 })[0])))
    local c = nn.builder({ 1, 6, 6 })
    assert.are.same({ 2, 2, 2 }, c:shape(c:conv2d('c', c.input, 1, 2, 3LL, { stride = 2LL })))
  end)
end)

describe('integer arguments of builder methods', function()
  it('a size or axis that is not an integer is named before any arithmetic on it', function()
    local c = nn.builder({ 1, 6, 6 })
    error_with(function() c:conv2d('c', c.input, nil, 2, 3) end, 'builder:conv2d: cin must be a positive integer, got nil')
    error_with(function() c:conv2d('c', c.input, 1, 2, { 3, 0 }) end,
      'builder:conv2d: kernel must be a positive integer, got 0')
    error_with(function() c:conv2d('c', c.input, 1, 2, 3, { groups = 0.5 }) end,
      "builder:conv2d: option 'groups' must be a positive integer, got 0.5")
    local l = nn.builder({ 4 })
    error_with(function() l:linear('fc', l.input, '4', 2) end, "builder:linear: in must be a positive integer, got '4'")
    error_with(function() l:matmul_param('m', l.input, 4, INF) end,
      'builder:matmul_param: m must be a positive integer, got inf')
    local b, x = tokens()
    error_with(function() b:unsqueeze(x, NAN) end, 'builder:unsqueeze: axis must be an integer, got nan')
    error_with(function() b:squeeze(x, '0') end, "builder:squeeze: axis must be an integer, got '0'")
    error_with(function() b:flatten_from(x, 0.5) end, 'builder:flatten_from: start must be an integer, got 0.5')
    -- NaN and 1.5 went into the axes bit mask as 0 and 1
    error_with(function() b:reduce_mean(x, { NAN }) end, 'builder:reduce_mean: axis must be an integer, got nan')
    error_with(function() b:reduce_mean(x, { 1.5 }) end, 'builder:reduce_mean: axis must be an integer, got 1.5')
    assert.are.same({ 1, 4, 3 }, b:shape(b:unsqueeze(x, 0LL)))
    assert.are.same({ 4 }, b:shape(b:reduce_mean(x, { 1LL })))
    -- the kernel as 3LL: the same layer as 3 (the weight's bound and shape)
    print('seed 4')
    local w3 = nn.builder({ 1, 6, 6 }, { seed = 4 })
    local n3 = w3:build(w3:conv2d('c', w3.input, 1, 2, 3))
    local w3ll = nn.builder({ 1, 6, 6 }, { seed = 4 })
    local n3ll = w3ll:build(w3ll:conv2d('c', w3ll.input, 1LL, 2LL, 3LL))
    assert.are.same(n3:param('c.weight'):totable(), n3ll:param('c.weight'):totable())
  end)

  it('nn.builder checks its seed (the parameters\' random stream)', function()
    for _, bad in ipairs { -1, 1.5, NAN, '2' } do
      error_with(function() nn.builder({ 4 }, { seed = bad }) end,
        "nn.builder: option 'seed' must be an integer in [0, 2^53), got " .. require('moreau.options').show(bad))
    end
  end)
end)

describe('network arguments', function()
  local b = nn.builder({ 4 }, { seed = 1 })
  local net = b:build(b:dropout(b:linear('fc', b.input, 4, 2), 0.5))

  it('net:param and net:grad name a name that is not a string', function()
    error_with(function() net:param(1) end, 'net:param: name must be a string (as the state_dict names it), got 1')
    error_with(function() net:grad(NAN) end, 'net:grad: name must be a string (as the state_dict names it), got nan')
    error_with(function() net:param('fc.nope') end, "net: no parameter named 'fc.nope'")
  end)

  it('net:seed takes an integer in [0, 2^53) or a uint64_t, and refuses what would convert to another seed', function()
    for _, bad in ipairs { -1, 1.5, NAN, INF, '3' } do
      error_with(function() net:seed(bad) end,
        'net:seed: s must be an integer in [0, 2^53) or a uint64_t, got ' .. require('moreau.options').show(bad))
    end
    error_with(function() net:seed(-1LL) end, 'net:seed: s must be an integer in [0, 2^53) or a uint64_t, got -1LL')
    -- the same seed as a number and as cdata: the same dropout masks
    net:train(true)
    print('seed 2')
    local x = T.randn({ 8, 4 }, { seed = 2 })
    local a = net:seed(5):forward(x):totable()
    assert.are.same(a, net:seed(5ULL):forward(x):totable())
    assert.are.same(a, net:seed(5LL):forward(x):totable())
    assert.are_not.same(a, net:seed(6):forward(x):totable()) -- the masks do depend on the seed
  end)
end)

describe('tensor values', function()
  it('a value that is not a number is named', function()
    local x = T.zeros { 2, 3 }
    error_with(function() T.full({ 2 }, '1') end, "tensor.full: v must be a number, got '1'")
    error_with(function() x:fill({}) end, 'tensor:fill: v must be a number, got a table')
    error_with(function() x:set('1', 1, 1) end, "tensor:set: v must be a number, got '1'")
    error_with(function() T.from({ 1, '2' }, { 2 }) end, "tensor.from: values[2] must be a number, got '2'")
    error_with(function() x:add_(x, '2') end, "add_: alpha must be a number, got '2'")
    error_with(function() x:clamp_('0', 1) end, "clamp_: lo must be a number, got '0'")
    error_with(function() T.randn({ 2 }, { std = '1' }) end, "tensor.randn: option 'std' must be a number, got '1'")
    error_with(function() T.rand({ 2 }, { hi = true }) end, "tensor.rand: option 'hi' must be a number, got true")
    -- number cdata is a number
    assert.are.same({ 2, 2 }, T.full({ 2 }, 2LL):totable())
    assert.are.same({ 1, 3 }, T.from({ 1, ffi.new('double', 3) }, { 2 }):totable())
  end)

  it('metrics.topk_members refuses k = inf (it reached the engine as INT64_MIN)', function()
    local m = T.from({ 1, 2, 3, 4 }, { 1, 4 })
    error_with(function() metrics.topk_members(m, 1, INF) end, 'metrics.topk_members: k must be an integer >= 1, got inf')
  end)
end)

describe('prox operators, data and shards', function()
  local prox = require 'moreau.prox'
  local data = require 'moreau.data'
  local store = require 'moreau.store'
  local x = T.randn({ 1, 1, 4, 4 }, { seed = 3 })
  print('seed 3')

  it('prox names a threshold, radius or bound that is not a number, and a block size that is not an integer', function()
    error_with(function() prox.soft_threshold(x, '0.1') end, "prox.soft_threshold: a must be a number, got '0.1'")
    error_with(function() prox.project_l2_ball(x, x, {}) end, 'prox.project_l2_ball: r must be a number, got a table')
    error_with(function() prox.project_box(x, 0, '1') end, "prox.project_box: hi must be a number, got '1'")
    -- 1.5 was truncated to 1, NaN reached the engine as INT64_MIN
    error_with(function() prox.blocks(1, 4, 4, 1.5) end, 'prox.blocks: g must be a positive integer, got 1.5')
    error_with(function() prox.blocks(1, NAN, 4, 2) end, 'prox.blocks: H must be a positive integer, got nan')
    error_with(function() prox.default_group_size(INF) end, 'prox.default_group_size: H must be a positive integer, got inf')
    assert.are.equal(prox.blocks(1, 4, 4, 2):count(), prox.blocks(1LL, 4, 4, 2LL):count())
    assert.are.equal(prox.default_group_size(224), prox.default_group_size(224LL))
    error_with(function() prox.group_soft_threshold(x, prox.blocks(1, 4, 4, 2), '1') end,
      "prox.group_soft_threshold: a must be a number, got '1'")
  end)

  it('data.normalize refuses a mean or std that is not finite (every image would be NaN)', function()
    error_with(function() data.normalize(x, NAN, 1) end, 'data.normalize: mean[1] = nan must be finite')
    error_with(function() data.denormalize(x, 0, INF) end, 'data.denormalize: std[1] = inf must be finite')
    local ds = { n = 2, images = T.zeros { 2, 1, 2, 2 } }
    error_with(function() data.batches(ds, INF) end, 'data.batches: batch_size must be a positive integer, got inf')
  end)

  it('store.shard_range, shard_of and shard_path need integers 0 <= K < N', function()
    error_with(function() store.shard_range(0, 10, NAN, 3) end,
      'store.shard_range: shard nan of 3: need integers 0 <= K < N')
    error_with(function() store.shard_range(0, 10, 1, 1.5) end,
      'store.shard_range: shard 1 of 1.5: need integers 0 <= K < N')
    error_with(function() store.shard_range(5, 2, 0, 3) end,
      'store.shard_range: first..last must be image ids with 0 <= first <= last, got 5..2')
    error_with(function() store.shard_path('RUN.db', 3, 3) end,
      'store.shard_path: shard 3 of 3: need integers 0 <= K < N')
    error_with(function() store.shard_of('1', 0, 10, 3) end, "store.shard_of: id must be an image id, got '1'")
    assert.are.same({ 3, 6 }, { store.shard_range(0, 10, 1, 3) })
  end)
end)

describe('pictures', function()
  local viz = require 'moreau.viz'

  it('a text scale of inf is refused (drawing never ended), as is a NaN color', function()
    local cv = viz.canvas(8, 8)
    error_with(function() cv:text(1, 1, 'a', 'black', INF) end, 'canvas:text: scale must be at most 256, got inf')
    error_with(function() cv:text_vertical(1, 1, 'a', nil, 2 ^ 40) end, 'canvas:text_vertical: scale must be at most 256')
    error_with(function() viz.text_size('a', INF) end, 'viz.text_size: scale must be at most 256, got inf')
    assert.are.same({ 5 * 256, 8 * 256 }, { viz.text_size('a', 256) }) -- the largest scale still draws
    error_with(function() cv:set(1, 1, { NAN, 0, 0 }) end, 'canvas:set: a color must be {r, g, b} with numbers 0..255')
  end)
end)
