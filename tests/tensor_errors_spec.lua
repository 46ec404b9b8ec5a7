-- Bad arguments to the Lua tensor API: each raises a message that names the
-- argument and the rule, never a raw Lua error, a C-side 0-based index, or a
-- silently substituted value (README "The rules on hard cases").
local T = require 'moreau.tensor'
local error_with = require('helpers.asserts').error_with

describe('tensor argument checks', function()
  it('refuse RNG seeds a Lua number cannot name exactly, instead of another seed', function()
    for _, bad in ipairs { -1, 0 / 0, 2 ^ 63, 0.5, math.huge } do
      error_with(function() T.randn({ 2 }, { seed = bad }) end,
        "tensor.randn: option 'seed' must be an integer in [0, 2^53)")
      error_with(function() T.rand({ 2 }, { seed = bad }) end,
        "tensor.rand: option 'seed' must be an integer in [0, 2^53)")
    end
    error_with(function() T.randn({ 2 }, { stream = -3 }) end, "tensor.randn: option 'stream' must be")
    error_with(function() T.rand({ 2 }, { offset = 1.5 }) end, "tensor.rand: option 'offset' must be")
    error_with(function() T.randn({ 2 }, 7) end, 'tensor.randn: opts must be a table, got 7')
    -- the largest valid seed and a uint64 key still run, and a seed is reproducible
    assert.are.same(T.randn({ 3 }, { seed = 2 ^ 53 - 1 }):totable(), T.randn({ 3 }, { seed = 2 ^ 53 - 1 }):totable())
    assert.are.equal(3, T.rand({ 3 }, { stream = 0xFFFFFFFFFFFFFFFFULL }):numel())
  end)

  it('refuse data.permutation seeds and streams outside the seed domain', function()
    local data = require 'moreau.data'
    error_with(function() data.permutation(5, -1) end, "data.permutation: option 'seed' must be an integer in [0, 2^53)")
    error_with(function() data.permutation(5, 0, 0.5) end, "data.permutation: option 'stream' must be")
    error_with(function() data.permutation(2.5) end, 'data.permutation: n must be an integer in [0, 2^31), got 2.5')
  end)

  it('name the repeats argument of repeat_items', function()
    local x = T.zeros { 2, 1 }
    error_with(function() x:repeat_items(0) end,
      "tensor:repeat_items: option 'repeats' must be an integer >= 1, got 0")
    error_with(function() x:repeat_items(1.5) end,
      "tensor:repeat_items: option 'repeats' must be an integer >= 1, got 1.5")
    assert.are.same({ 4, 1 }, x:repeat_items(2):shape())
  end)

  it('refuse narrow without integer items', function()
    local x = T.zeros { 3, 2 }
    error_with(function() x:narrow() end, 'tensor:narrow: items i..j must be integers, got nil..nil')
    error_with(function() x:narrow(1.5, 2) end, 'tensor:narrow: items i..j must be integers, got 1.5..2')
    error_with(function() x:narrow(0 / 0) end, 'tensor:narrow: items i..j must be integers, got nan..nan')
    error_with(function() x:narrow(2, 4) end, 'tensor:narrow: items 2..4 outside 1..3')
  end)

  it('refuse infinite and huge dims, naming the 1-based dim', function()
    error_with(function() T.zeros { 2, math.huge } end, 'tensor: dim 2 of the shape must be below 2^62, got inf')
    error_with(function() T.zeros { 2 ^ 62 } end, 'tensor: dim 1 of the shape must be below 2^62')
    error_with(function() T.zeros { 3, 0 / 0 } end, 'tensor: dim 2 of the shape must be a positive integer, got nan')
  end)

  it('say that a freed tensor was freed, for methods, operators and arguments', function()
    local x, y = T.ones { 2 }, T.ones { 2 }
    x:free()
    error_with(function() x:numel() end, 'tensor: the tensor was freed (x:free())')
    error_with(function() return x + 1 end, 'tensor: the tensor was freed (x:free())')
    error_with(function() y:add_(x) end, 'tensor: the tensor was freed (x:free())')
    error_with(function() T.cat { y, x } end, 'tensor: the tensor was freed (x:free())')
    assert.are.equal('tensor (freed)', tostring(x))
    x:free() -- a second free does nothing
    assert.is_true(T.is(x))
    assert.are.equal(2, y:sum())
  end)

  it('refuse a cat list that holds something other than tensors', function()
    local x = T.zeros { 1, 2 }
    error_with(function() T.cat { x, 3 } end, 'tensor.cat: entry 2 is 3, not a tensor')
    error_with(function() T.cat(x) end, 'tensor.cat: expected a list of tensors, got a tensor of shape 1x2')
    error_with(function() T.cat(nil) end, 'tensor.cat: expected a list of tensors, got nil')
  end)

  it('refuse dot of tensors with the same element count but another shape', function()
    local a, b = T.ones { 2, 3 }, T.ones { 3, 2 }
    error_with(function() a:dot(b) end, 'dot: shapes 2x3 and 3x2 differ')
    error_with(function() return a:dot(T.ones { 6 }) end, 'dot: shapes 2x3 and 6 differ')
    assert.are.equal(6, a:dot(T.ones { 2, 3 }))
  end)
end)

describe('tensor shapes past int64 (issue 13)', function()
  it('mr_tensor_new names the shape whose float32 bytes overflow int64', function()
    local ffi = require 'ffi'
    local C = require('moreau.core').C
    local out = ffi.new('mr_tensor*[1]')
    assert.are.equal(C.MR_ESHAPE, C.mr_tensor_new(out, 2, ffi.new('int64_t[2]', { 2 ^ 31, 2 ^ 31 })))
    assert.are.equal('tensor: shape 2147483648x2147483648 has more than 2^61 entries (numel*4 bytes overflows int64)',
      ffi.string(C.mr_last_error()))
    assert.are.equal(C.MR_ESHAPE, C.mr_tensor_new(out, 4, ffi.new('int64_t[4]', { 2 ^ 20, 2 ^ 20, 2 ^ 20, 2 })))
    assert.are.equal('tensor: shape 1048576x1048576x1048576x2 has more than 2^61 entries (numel*4 bytes overflows '
      .. 'int64)', ffi.string(C.mr_last_error()))
    assert.is_true(out[0] == nil)
  end)
end)
