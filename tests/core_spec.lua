-- The core: tensors, errors, the counter-based RNG, module hygiene.
local ffi = require 'ffi'
local moreau = require 'moreau'
local T = require 'moreau.tensor'
local core = require 'moreau.core'
-- These specs compare thread counts: the team must be the count asked for,
-- not fewer threads because another process is busy (moreau.set_adaptive_threads).
require('moreau').set_adaptive_threads(false)
local C = core.C

describe('tensors', function()
  it('are created zero-filled with the given shape', function()
    local x = T.zeros { 2, 3, 4, 5 }
    assert.are.same({ 2, 3, 4, 5 }, x:shape())
    assert.are.equal(120, x:numel())
    assert.are.equal(0, x:sum())
    assert.is_true(ffi.istype('float*', x:data()))
  end)

  it('index from 1 in every dim, row-major', function()
    local x = T.from({ 1, 2, 3, 4, 5, 6 }, { 2, 3 })
    assert.are.equal(6, x:get(2, 3))
    assert.are.equal(4, x:get(2, 1))
    x:set(9, 1, 2)
    assert.are.equal(9, x:data()[1])
  end)

  it('do arithmetic, reductions, narrow, cat and reshape', function()
    local a = T.from({ 1, 2, 3, 4 }, { 2, 2 })
    local b = T.from({ 4, 3, 2, 1 }, { 2, 2 })
    assert.are.same({ 5, 5, 5, 5 }, (a + b):totable())
    assert.are.same({ -3, -1, 1, 3 }, (a - b):totable())
    assert.are.same({ 2, 4, 6, 8 }, (a * 2):totable())
    assert.are.equal(20, a:dot(b))
    assert.are.equal(4, a:max())
    assert.are.same({ 3, 4 }, a:narrow(2):totable())
    assert.are.same({ 4, 2 }, T.cat({ a, b }):shape())
    assert.are.same({ 4 }, a:reshape { 4 }:shape())
    assert.are.same({ 1, 2, 1, 2, 3, 4, 3, 4 }, a:repeat_items(2):totable())
  end)

  it('reject bad shapes and indices with clear messages', function()
    assert.has_error(function() T.zeros { 2, 0 } end,
      'tensor: dim 2 of the shape must be a positive integer, got 0')
    assert.has_error(function() T.zeros { 1, 1, 1, 1, 1 } end, 'tensor: shape must have 1..4 dims, got 5')
    assert.has_error(function() T.zeros { 2, 2 }:get(3, 1) end, 'tensor: index 3 out of range 1..2 in dim 1')
    assert.has_error(function() T.from({ 1, 2, 3 }, { 2, 2 }) end,
      'tensor.from: 3 values for shape 2x2 (4 elements)')
    assert.has_error(function() T.zeros { 2, 2 }:reshape { 3 } end)
    -- Tensor:to was a placeholder (one device only): removed until a backend needs it
    assert.is_nil(T.Tensor.to)
  end)

  it('print shape, device and statistics', function()
    local s = tostring(T.from({ 1, 2, 3, 4 }, { 1, 4 }))
    assert.truthy(s:find('tensor 1x4 float32 cpu', 1, true))
    assert.truthy(s:find('max 4', 1, true))
  end)

  it('free explicitly once, and collect otherwise', function()
    local x = T.zeros { 10 }
    x:free()
    assert.are.equal('tensor (freed)', tostring(x))
    collectgarbage()
  end)

  it('report NaN through mr_tensor_check_finite', function()
    local x = T.zeros { 3 }
    x:data()[1] = 0 / 0
    assert.are.equal(C.MR_EINVAL, C.mr_tensor_check_finite(core.handle(x), 'x'))
    assert.are.equal('x: entry 1 is NaN', ffi.string(C.mr_last_error()))
  end)
end)

describe('the counter-based RNG', function()
  it('is Philox-4x32-10 (Random123 known-answer vectors)', function()
    local out = ffi.new('uint32_t[4]')
    local cases = {
      { { 0, 0, 0, 0 }, { 0, 0 }, { 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8 } },
      { { 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff }, { 0xffffffff, 0xffffffff },
        { 0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd } },
      { { 0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344 }, { 0xa4093822, 0x299f31d0 },
        { 0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1 } },
    }
    for _, c in ipairs(cases) do
      C.mr_philox4x32(out, ffi.new('uint32_t[4]', c[1]), ffi.new('uint32_t[2]', c[2]))
      for i = 1, 4 do assert.are.equal(c[3][i], tonumber(out[i - 1])) end
    end
  end)

  it('gives value k of a stream whatever the offset and split of the request', function()
    local whole = T.randn({ 1000 }, { seed = 42, stream = 3 })
    local part = T.randn({ 997 }, { seed = 42, stream = 3, offset = 3 })
    for i = 0, 996 do assert.are.equal(whole:data()[i + 3], part:data()[i]) end
    local other = T.randn({ 1000 }, { seed = 42, stream = 4 })
    assert.is_true(whole:max_abs_diff(other) > 0.5)
  end)

  it('gives the same bits on 1 and 2 threads', function()
    moreau.set_num_threads(1)
    local a = T.randn({ 300000 }, { seed = 7, stream = 1 })
    moreau.set_num_threads(2)
    local b = T.randn({ 300000 }, { seed = 7, stream = 1 })
    moreau.set_num_threads(0)
    local pa = ffi.cast('uint32_t*', a:data())
    local pb = ffi.cast('uint32_t*', b:data())
    local same = true
    for i = 0, 299999 do same = same and pa[i] == pb[i] end
    assert.is_true(same)
  end)

  it('has the moments of N(mean, std^2) and U(0, 1)', function()
    local x = T.randn({ 200000 }, { seed = 1, mean = 2, std = 3 })
    local m = x:mean()
    local v = (x - m):dot(x - m) / x:numel()
    assert.is_true(math.abs(m - 2) < 0.03, 'mean ' .. m)
    assert.is_true(math.abs(math.sqrt(v) - 3) < 0.03, 'std ' .. math.sqrt(v))
    local u = T.rand({ 200000 }, { seed = 1 })
    assert.is_true(u:min() > 0 and u:max() < 1)
    assert.is_true(math.abs(u:mean() - 0.5) < 0.005)
  end)
end)

describe('the module', function()
  it('reports its version and backend', function()
    assert.are.equal('0.1.0', moreau.version)
    assert.truthy(moreau.backend_info():find('cpu', 1, true))
  end)

  it('sets no globals when its modules load', function()
    local before = {}
    for k in pairs(_G) do before[k] = true end
    for _, name in ipairs { 'tensor', 'nn', 'oracle', 'core' } do
      assert.is_table(moreau[name])
    end
    for k in pairs(_G) do
      assert.is_true(before[k] ~= nil, 'global set: ' .. tostring(k))
    end
  end)

  it('raises on an unknown submodule', function()
    assert.has_error(function() return moreau.nosuchthing end, "moreau: no module 'nosuchthing'")
  end)
end)

describe('tensor load and save', function()
  it('round-trip through safetensors, by name or as a table', function()
    local path = os.tmpname()
    local x = T.randn({ 2, 3 }, { seed = 5 })
    T.save(path, x)
    assert.are.equal(0, T.load(path, 'tensor'):max_abs_diff(x))
    T.save(path, { a = x, b = x * 2 }, { note = 'hi' })
    local t, meta = T.load(path)
    assert.are.equal(0, t.b:max_abs_diff(x * 2))
    assert.are.equal('hi', meta.note)
    assert.has_error(function() T.load(path, 'c') end)
    os.remove(path)
  end)
end)
