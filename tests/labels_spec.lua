-- Class labels given as LuaJIT cdata: 1LL, 1ULL, an element of an int64_t[?]
-- array, or the array itself (what a reader of a .npy int64 file or a C
-- caller hands over). core.labels converts them exactly, so every public
-- entry that takes labels gives the same numbers as with Lua numbers, and
-- refuses what is not a class id (a fraction, a value beyond int32, a class
-- the network lacks) with the usual message, never a raw FFI error or a
-- label wrapped modulo 2^32.
local ffi = require 'ffi'
local T = require 'moreau.tensor'
local core = require 'moreau.core'
local methods = require 'moreau.methods'
local oracle = require 'moreau.oracle'
local attacks = require 'moreau.attacks'
local metrics = require 'moreau.metrics'
local faith = require 'moreau.faithfulness'
local sanity = require 'moreau.sanity'
local certify = require 'moreau.certify'
local train = require 'moreau.train'
local prox = require 'moreau.prox'
local nets = require 'helpers.nets'
local error_with = require('helpers.asserts').error_with

local SEED = 16

-- The values of an int32_t[n] as a Lua array.
local function values(a, n)
  local t = {}
  for i = 0, n - 1 do t[i + 1] = a[i] end
  return t
end

describe('core.labels takes integer cdata exactly', function()
  it('converts 1LL, 1ULL, int64_t and uint64_t arrays and their elements', function()
    local i64 = ffi.new('int64_t[3]', { 2, 0, 1 })
    local u64 = ffi.new('uint64_t[3]', { 2, 0, 1 })
    assert.are.same({ 1, 1 }, values(core.labels(1LL, 2), 2))
    assert.are.same({ 1, 1 }, values(core.labels(1ULL, 2), 2))
    assert.are.same({ 2, 2 }, values(core.labels(i64[0], 2), 2))
    assert.are.same({ 2, 0, 1 }, values(core.labels(i64, 3), 3))
    assert.are.same({ 2, 0, 1 }, values(core.labels(u64, 3), 3))
    assert.are.same({ 2, 0, 1 }, values(core.labels({ i64[0], 0ULL, 1 }, 3), 3))
    assert.are.same({ 7, 8 }, values(core.labels(ffi.new('int16_t[2]', { 7, 8 }), 2), 2))
    assert.are.same({ 3 }, values(core.labels(ffi.new('double', 3), 1), 1))
    -- the int32_t arrays moreau passes on itself still go through unchanged
    local into = ffi.new('int32_t[2]', { 4, 5 })
    assert.are.equal(into, core.labels(into, 2, into))
    assert.are.same({ 4, 5 }, values(core.labels(into, 2), 2))
  end)

  it('refuses fractions, bool, complex and values beyond int32, naming them in full', function()
    error_with(function() core.labels(ffi.new('double', 2.5), 2) end,
      'oracle: labels = 2.5 is not an integer class id')
    error_with(function() core.labels(ffi.new('double[2]', { 1, 2.5 }), 2) end,
      'oracle: labels[2] = 2.5 is not an integer class id')
    error_with(function() core.labels(ffi.new('float[1]', { 0 / 0 }), 1) end,
      'oracle: labels[1] = nan is not an integer class id')
    error_with(function() core.labels(ffi.new('bool', true), 1) end,
      'oracle: labels = cdata<bool> is not an integer class id')
    error_with(function() core.labels(ffi.new('complex', 1, 2), 1) end,
      'oracle: labels = 1+2i is not an integer class id')
    -- 2^32 would wrap to 0 on the store into int32_t; 2^63 - 1 is shown exactly
    error_with(function() core.labels(4294967296LL, 1) end,
      'oracle: labels = 4294967296 is outside the int32 range of class ids')
    error_with(function() core.labels(ffi.new('int64_t[2]', { 0, 4294967296LL }), 2) end,
      'oracle: labels[2] = 4294967296 is outside the int32 range of class ids')
    error_with(function() core.labels({ 0, 9223372036854775807LL }, 2) end,
      'oracle: labels[2] = 9223372036854775807 is outside the int32 range of class ids')
    error_with(function() core.labels(18446744073709551615ULL, 1) end,
      'oracle: labels = 18446744073709551615 is outside the int32 range of class ids')
    error_with(function() core.labels(-1LL, 1, nil, 'who', 1, 3) end,
      'who: labels = -1 is outside 0..2 (the network has 3 classes)')
    error_with(function() core.labels(ffi.new('struct { int32_t c; }'), 1) end,
      'oracle: labels must be a table of class ids, got ctype<struct')
  end)
end)

describe('every public entry that takes labels takes int64 cdata', function()
  local net = nets.softplus_net { seed = 3 }
  local x = T.randn({ 2, 1, 6, 6 }, { seed = SEED })
  local as_numbers = { 2, 0 }
  local as_cdata = { ffi.new('int64_t[2]', { 2, 0 }), { 2LL, 0ULL } }

  -- f(labels) with Lua numbers and with each cdata form: the same results,
  -- and a raw FFI error (or a wrapped label) would fail here.
  local function same_for_all(name, f)
    print(name .. ': seed ' .. SEED)
    local want = f(as_numbers)
    for _, lab in ipairs(as_cdata) do assert.are.same(want, f(lab), name) end
    -- one id for the whole batch
    assert.are.same(f({ 1, 1 }), f(1LL), name .. ' with 1LL')
  end

  local function floats(t) return T.is(t) and t:totable() or t end

  it('oracle, methods and explain_vjp', function()
    same_for_all('oracle.grad', function(l) local s, g = oracle.grad(net, x, l); return { floats(s), floats(g) } end)
    same_for_all('oracle.hvp', function(l) return floats(oracle.hvp(net, x, l, x)) end)
    same_for_all('gradient', function(l) return floats(methods.gradient():explain(net, x, l)) end)
    same_for_all('smoothgrad', function(l)
      return floats(methods.smoothgrad({ samples = 3, seed = SEED }):explain(net, x, l))
    end)
    same_for_all('moreaugrad', function(l)
      return floats(methods.moreaugrad({ T = 3, m = 2, seed = SEED }):explain(net, x, l))
    end)
    same_for_all('explain_vjp', function(l) return floats(methods.gradient():explain_vjp(net, x, l, x)) end)
    same_for_all('prox.solver', function(l)
      local s = prox.solver(net, x, l, { T = 2, m = 0 })
      s:step()
      return s:stats(1).iter
    end)
  end)

  it('attacks, metrics, faithfulness, sanity and certify', function()
    same_for_all('pgd', function(l)
      return floats((attacks.create('pgd', { eps = 0.1, steps = 2 }):run(net, methods.gradient(), x, l)))
    end)
    same_for_all('max_sensitivity', function(l)
      return metrics.max_sensitivity(net, methods.gradient(), x, l, { samples = 2, seed = SEED })
    end)
    same_for_all('deletion', function(l)
      return faith.deletion(net, x, methods.gradient():explain(net, x, l), l, { step = 9 }).curves
    end)
    local big = nets.softplus_net { seed = 3, size = 12 }
    local xb = T.randn({ 2, 1, 12, 12 }, { seed = SEED }) -- SSIM's window needs 11 x 11
    same_for_all('random_logit', function(l)
      local r = sanity.random_logit(big, methods.gradient(), xb, l)
      return { r.classes, r.spearman }
    end)
    same_for_all('moreaugrad_bound', function(l)
      local b = certify.moreaugrad_bound(net, x, l, { samples = 0 })
      return { b[1].lambda, b[2].lambda } -- the curvature at each item's own class
    end)
  end)

  it('train: cross_entropy and correct', function()
    local logits = T.randn({ 2, 3 }, { seed = SEED })
    same_for_all('cross_entropy', function(l) return { train.cross_entropy(logits, l, { grad = false }) } end)
    same_for_all('correct', function(l) return train.correct(logits, l) end)
  end)

  it('a cdata label outside the classes gets the usual message', function()
    error_with(function() methods.gradient():explain(net, x, ffi.new('int64_t[2]', { 0, 3 })) end,
      'oracle.grad: label 3 of item 1 is outside 0..2')
    error_with(function() sanity.random_logit(net, methods.gradient(), x, { 0, 3LL }) end,
      'sanity.random_logit: labels[2] = 3 is outside 0..2 (the network has 3 classes)')
    error_with(function() methods.gradient():explain(net, x, { 0, 2.5 }) end,
      'oracle: labels[2] = 2.5 is not an integer class id')
    error_with(function() train.correct(T.zeros { 2, 3 }, ffi.new('int64_t[2]', { 0, 4294967296LL })) end,
      'train: labels[2] = 4294967296 is outside the int32 range of class ids')
  end)
end)
