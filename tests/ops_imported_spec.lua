-- The ops of imported (ONNX) models: clip, hardsigmoid, hardswish, gelu, erf,
-- and the shape, normalization and product ops (docs/architecture.md, "Ops for
-- imported models").
--
-- Three kinds of truth: finite differences of VJP, JVP and the VJP tangent
-- (helpers.gradcheck; relative error ‖a−b‖/‖a+b‖ below TOL, inputs kept at
-- least 0.1 from every kink so that x ± h v with h = 1e-2 never crosses one),
-- closed forms in Lua in double precision, and forward values computed by
-- PyTorch in float64 (tests/fixtures/imported_ops.json, written by
-- scripts/make_imported_op_fixtures.py). Every random input comes from a fixed
-- seed, printed in the failure message.
local ffi = require 'ffi'
local T = require 'moreau.tensor'
local nn = require 'moreau.nn'
local gc = require 'helpers.gradcheck'
require('moreau').set_adaptive_threads(false)

-- Float32 forward, central differences with h = 1e-2 (as ops_pointwise_spec).
local TOL = gc.FD_TOL

local away = gc.away

-- The finite-difference checks of a network built by opts.build(b, x),
-- asserted below opts.tol or TOL, the label and seed in a failure's message.
local fdcheck = gc.fdcheck

--- Asserts |got − want| <= rtol |want| + atol entry by entry (and as many entries as want).
local assert_close = require('helpers.asserts').close

local one_op_net = gc.one_op_net

--- The error message of building one node of `op` on `input`.
local function build_error(input, op, attrs)
  local ok, err = pcall(one_op_net, input, op, attrs)
  assert.is_false(ok, op .. ' should have been refused')
  return tostring(err)
end

local FIX
local function fixtures()
  if not FIX then
    local f = assert(io.open('tests/fixtures/imported_ops.json', 'r'))
    FIX = require('cjson').decode(f:read('*a'))
    f:close()
  end
  return FIX
end

-- libm's erf (double), for the closed forms
pcall(ffi.cdef, 'double erf(double x);')
local function erf(v) return ffi.C.erf(v) end

-- ------------------------------------------------------------- activations

local ERF_C = 2 / math.sqrt(math.pi)

describe('imported activations', function()
  local acts = {
    { 'clip', { min = 0, max = 6 }, { 0, 6 }, 4 },
    { 'clip', { min = -0.5, max = 0.75 }, { -0.5, 0.75 }, 1 },
    { 'hardsigmoid', {}, { -3, 3 }, 3 },
    { 'hardsigmoid', { alpha = 0.2, beta = 0.5 }, { -2.5, 2.5 }, 3 },
    { 'hardswish', {}, { -3, 3 }, 3 },
    { 'gelu', {}, {}, 2 },
    { 'gelu', { approximate = 1 }, {}, 2 },
    { 'erf', {}, {}, 1 },
  }
  for i, a in ipairs(acts) do
    local op, attrs, kinks, scale = a[1], a[2], a[3], a[4]
    it(op .. ' ' .. require('moreau.options').show(attrs) .. ': VJP, JVP and VJP tangent match finite differences', function()
      local seed = 30 + i
      local r = fdcheck(op, {
        input = { 3, 4, 4 }, batch = 2, seed = seed,
        x = away({ 2, 3, 4, 4 }, seed, scale, kinks),
        build = function(b, x) return b:op(op, { x }, nil, attrs) end,
      })
      if op == 'gelu' or op == 'erf' or op == 'hardswish' then
        assert.is_true(r.hvp_norm > 0, op .. ' has curvature')
      end
    end)
  end

  it('forward values, first and second derivatives match closed forms', function()
    local xs = { -7, -3.5, -3, -2.9, -1.25, -0.3, 0, 0.3, 1.25, 2.9, 3, 3.5, 6, 7 }
    local n = #xs
    local x, ones, zeros = T.from(xs, { 1, n }), T.ones { 1, n }, T.zeros { 1, n }
    local function Phi(v) return 0.5 * (1 + erf(v / math.sqrt(2))) end
    local function phi(v) return math.exp(-v * v / 2) / math.sqrt(2 * math.pi) end
    local cases = {
      { 'clip', { min = 0, max = 6 }, function(v) return math.min(math.max(v, 0), 6) end,
        function(v) return (v > 0 and v < 6) and 1 or 0 end, function() return 0 end },
      { 'hardsigmoid', {}, function(v) return math.min(math.max(v / 6 + 0.5, 0), 1) end,
        function(v) return (v > -3 and v < 3) and 1 / 6 or 0 end, function() return 0 end },
      { 'hardswish', {}, function(v) return v * math.min(math.max(v + 3, 0), 6) / 6 end,
        function(v) if v < -3 then return 0 elseif v <= 3 then return v / 3 + 0.5 else return 1 end end,
        function(v) return (v >= -3 and v <= 3) and 1 / 3 or 0 end },
      { 'gelu', {}, function(v) return v * Phi(v) end, function(v) return Phi(v) + v * phi(v) end,
        function(v) return phi(v) * (2 - v * v) end },
      { 'erf', {}, erf, function(v) return ERF_C * math.exp(-v * v) end,
        function(v) return -2 * v * ERF_C * math.exp(-v * v) end },
    }
    for _, c in ipairs(cases) do
      local op = c[1]
      local net = one_op_net({ n }, op, c[2])
      local wf, wd, wd2 = {}, {}, {}
      for i, v in ipairs(xs) do wf[i], wd[i], wd2[i] = c[3](v), c[4](v), c[5](v) end
      assert_close(net:forward(x), wf, 1e-6, 1e-7, op .. ' forward')
      assert_close(net:backward(ones), wd, 1e-6, 1e-7, op .. ' derivative')
      net:jvp(x, ones)
      local _, dgx = net:hvp_backward(ones, zeros)
      assert_close(dgx, wd2, 1e-6, 1e-7, op .. " second derivative")
    end
  end)

  it('refuse degenerate attributes with a message naming them', function()
    assert.matches('clip: min must be below max', build_error({ 3 }, 'clip', {}), 1, true)
    assert.matches('clip: min must be below max', build_error({ 3 }, 'clip', { min = 2, max = 1 }), 1, true)
    assert.matches('clip: min and max must not be NaN', build_error({ 3 }, 'clip', { min = 0 / 0, max = 1 }), 1, true)
    assert.matches('hardsigmoid: alpha and beta must be finite',
      build_error({ 3 }, 'hardsigmoid', { alpha = 1 / 0 }), 1, true)
    assert.matches('gelu: approximate must be 0 (erf form) or 1 (tanh form), got 2',
      build_error({ 3 }, 'gelu', { approximate = 2 }), 1, true)
  end)
end)

-- ------------------------------------------------------------- layout

describe('layout ops', function()
  -- Each network puts a curved op (tanh) before and after the op under test,
  -- so that the VJP tangent has a second-order term to carry through it.
  local cases = {
    { 'reshape to 6x8', { 3, 4, 4 }, function(b, x) return b:op('reshape', { x }, nil, { shape = { 6, -1 } }) end },
    { 'reshape to 48', { 2, 3, 8 }, function(b, x) return b:op('reshape', { x }, nil, { shape = { 48 } }) end },
    { 'transpose 2,0,1', { 3, 4, 5 }, function(b, x) return b:op('transpose', { x }, nil, { perm = { 2, 0, 1 } }) end },
    { 'transpose 1,0', { 4, 6 }, function(b, x) return b:op('transpose', { x }, nil, { perm = { 1, 0 } }) end },
    { 'transpose 0,2,1', { 2, 3, 5 }, function(b, x) return b:op('transpose', { x }, nil, { perm = { 0, 2, 1 } }) end },
    { 'concat axis 0 of two branches', { 3, 4, 4 }, function(b, x)
      return b:op('concat', { b:op('sigmoid', { x }), x }, nil, { axis = 0 }) end },
    { 'concat axis -1, one input twice', { 3, 5 }, function(b, x) return b:op('concat', { x, x }, nil, { axis = -1 }) end },
    { 'concat axis 1 of a slice and the input', { 2, 3, 4 }, function(b, x)
      local s = b:op('slice', { x }, nil, { axis = 1, start = 1, ['end'] = 3 })
      return b:op('concat', { s, x }, nil, { axis = 1 }) end },
    { 'slice axis 2 step 2', { 2, 3, 7 }, function(b, x)
      return b:op('slice', { x }, nil, { axis = 2, start = 1, step = 2 }) end },
    { 'slice negative start, huge end', { 5, 4 }, function(b, x)
      return b:op('slice', { x }, nil, { axis = 0, start = -3, ['end'] = 2 ^ 62 }) end },
    { 'gather the class token', { 5, 4 }, function(b, x) return b:op('gather', { x }, nil, { axis = 0, index = 0 }) end },
    { 'gather index -1 of axis 2', { 2, 3, 4 }, function(b, x) return b:op('gather', { x }, nil, { axis = 2, index = -1 }) end },
    { 'pad zeros', { 2, 3, 4 }, function(b, x) return b:op('pad', { x }, nil, { pads = { 0, 1, 2, 1, 0, 3 } }) end },
    { 'pad reflect', { 2, 4, 5 }, function(b, x)
      return b:op('pad', { x }, nil, { pads = { 0, 3, 2, 0, 2, 4 }, pad_mode = 1 }) end },
    { 'pad reflect 1-D', { 5 }, function(b, x) return b:op('pad', { x }, nil, { pads = { 4, 0, 0, 3 }, pad_mode = 1 }) end },
  }
  for i, c in ipairs(cases) do
    it(c[1] .. ': VJP, JVP and VJP tangent match finite differences', function()
      local seed = 50 + i
      local r = fdcheck(c[1], {
        input = c[2], batch = 2, seed = seed,
        build = function(b, x) return b:op('tanh', { c[3](b, b:op('tanh', { x })) }) end,
      })
      assert.is_true(r.hvp_norm > 0)
    end)
  end

  it('constant: the parameter broadcast over the batch, its gradient the batch sum, none to the input', function()
    local b = nn.builder({ 3 })
    local p = b:param('token', { 2, 3 }, 'weight', function(t)
      for j = 0, 5 do t:data()[j] = j + 1 end
    end)
    local net = b:build(b:op('constant', { b.input }, { p }))
    assert.are.same({ 2, 3 }, net:output_shape())
    local y = net:forward(T.randn({ 2, 3 }, { seed = 3 }))
    assert.are.same({ 1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6 }, y:totable())
    net:zero_grad()
    local gy = T.from({ 1, 2, 3, 4, 5, 6, 10, 20, 30, 40, 50, 60 }, { 2, 2, 3 })
    local gx = net:backward(gy, { params = true })
    assert.are.same({ 0, 0, 0, 0, 0, 0 }, gx:totable())
    assert.are.same({ 11, 22, 33, 44, 55, 66 }, net:grad('token'):totable())
    local _, dy = net:jvp(T.randn({ 2, 3 }, { seed = 3 }), T.ones { 2, 3 })
    assert.are.same({ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }, dy:totable())
    -- constant + the input: the parameter gradient by finite differences too
    local net2 = gc.net { input = { 2, 3 }, seed = 4, build = function(bb, x)
      local q = bb:param('pos', { 2, 3 }, 'weight', { uniform = 1 })
      return bb:op('tanh', { bb:add(x, bb:op('constant', { x }, { q })) })
    end }
    local pr = gc.check_params(net2, { seed = 4 })
    assert.is_true(pr.pos < 1e-3, 'seed 4: parameter gradient error ' .. pr.pos)
    fdcheck('constant + input', { net = net2, batch = 2, seed = 4 })
  end)

  it('shapes and refusals name the problem', function()
    local b = nn.builder({ 2, 3, 4 })
    local function shape(op, attrs) return b:shape(b:op(op, { b.input }, nil, attrs)) end
    assert.are.same({ 4, 6 }, shape('reshape', { shape = { -1, 6 } }))
    assert.are.same({ 4, 2, 3 }, shape('transpose', { perm = { 2, 0, 1 } }))
    assert.are.same({ 2, 3, 2 }, shape('slice', { axis = -1, start = 1, step = 2 }))
    assert.are.same({ 2, 3, 1 }, shape('slice', { axis = 2, start = -1 }))
    assert.are.same({ 2, 4 }, shape('gather', { axis = 1, index = 2 }))
    assert.are.same({ 2, 6, 5 }, shape('pad', { pads = { 0, 1, 0, 0, 2, 1 } }))
    local e = function(...) return build_error({ 2, 3, 4 }, ...) end
    assert.matches('reshape: Nx2x3x4 has 24 entries per sample, the shape Nx2x2x5 20', e('reshape', { shape = { 2, 2, 5 } }), 1, true)
    assert.matches('reshape: the shape holds more than the 24 entries per sample of Nx2x3x4 (dim 1 is 5)',
      e('reshape', { shape = { 5, 5 } }), 1, true)
    assert.matches('reshape: 24 entries of Nx2x3x4 do not split into parts of 5', e('reshape', { shape = { 5, -1 } }), 1, true)
    assert.matches('reshape: shape_ndim must be 1..3', e('reshape', {}), 1, true)
    assert.matches('reshape: dim 1 of the shape must be positive or the one -1, got -1', e('reshape', { shape = { -1, -1 } }), 1, true)
    assert.matches('transpose: perm must be a permutation of the 3 per-sample dims of Nx2x3x4, got 0 at 1',
      e('transpose', { perm = { 0, 0, 1 } }), 1, true)
    assert.matches('slice: axis 3 is not a per-sample axis of Nx2x3x4', e('slice', { axis = 3 }), 1, true)
    assert.matches('slice: [3:0] of axis 1 of Nx2x3x4 is empty', e('slice', { axis = 1, start = 3 }), 1, true)
    assert.matches('slice: step must be positive', e('slice', { step = -1 }), 1, true)
    assert.matches('gather: index 4 is outside per-sample axis 2 (size 4) of Nx2x3x4', e('gather', { axis = 2, index = 4 }), 1, true)
    assert.matches('gather: the input needs 2..3 per-sample dims', build_error({ 5 }, 'gather', {}), 1, true)
    assert.matches('pad: reflect pads must be below the dim, got 3 and 0 for dim 1 of Nx2x3x4',
      e('pad', { pads = { 0, 3, 0, 0, 0, 0 }, pad_mode = 1 }), 1, true)
    assert.matches('pad: pads must be >= 0 (no cropping)', e('pad', { pads = { -1 } }), 1, true)
    assert.matches('pad: pads name dim 1, but Nx5 has 1 per-sample dims',
      build_error({ 5 }, 'pad', { pads = { 0, 1 } }), 1, true)
    assert.matches('pad: pad_mode must be 0 (zeros) or 1 (reflect), got 2', e('pad', { pad_mode = 2 }), 1, true)
    local ok, err = pcall(function()
      local bb = nn.builder({ 2, 3 })
      bb:op('concat', { bb.input, bb:op('transpose', { bb.input }, nil, { perm = { 1, 0 } }) }, nil, { axis = 0 })
    end)
    assert.is_false(ok)
    assert.matches('concat: inputs must agree but along axis 0, got Nx2x3 and Nx3x2', err, 1, true)
    ok, err = pcall(function()
      local bb = nn.builder({ 2 })
      bb:op('constant', { bb.input }, { bb:param('w', { 1, 2, 3, 4 }, 'weight') })
    end)
    assert.matches('constant: the parameter is the per-sample value (1..3 dims), got 1x2x3x4', err, 1, true)
  end)
end)

-- ------------------------------------------------------------- normalization

describe('layernorm, reduce_mean and softmax over an axis', function()
  local function ln(b, x, d, nparams, eps)
    local ps = {}
    if nparams >= 1 then ps[1] = b:param('ln.weight', { d }, 'weight', { uniform = 1.5 }) end
    if nparams >= 2 then ps[2] = b:param('ln.bias', { d }, 'weight', { uniform = 1 }) end
    return b:op('layernorm', { x }, ps, { eps = eps })
  end
  local cases = {
    { 'layernorm weight and bias', { 3, 4, 5 }, function(b, x) return ln(b, x, 5, 2) end },
    { 'layernorm weight only, eps 1e-6', { 7, 6 }, function(b, x) return ln(b, x, 6, 1, 1e-6) end },
    { 'layernorm without parameters, 1-D', { 9 }, function(b, x) return ln(b, x, 9, 0) end },
    { 'reduce_mean all axes', { 3, 4, 5 }, function(b, x) return b:op('reduce_mean', { x }) end },
    { 'reduce_mean axes 1,2 keepdims', { 3, 4, 5 }, function(b, x)
      return b:op('reduce_mean', { x }, nil, { axes = 6, keepdims = 1 }) end },
    { 'reduce_mean axis 0', { 3, 4, 5 }, function(b, x) return b:op('reduce_mean', { x }, nil, { axes = 1 }) end },
    { 'reduce_mean axis 1 of 2', { 6, 4 }, function(b, x) return b:op('reduce_mean', { x }, nil, { axes = 2 }) end },
    { 'softmax axis -1', { 2, 3, 4 }, function(b, x) return b:op('softmax', { x }, nil, { axis = -1 }) end },
    { 'softmax axis 1', { 2, 3, 4 }, function(b, x) return b:op('softmax', { x }, nil, { axis = 1 }) end },
    { 'log_softmax axis 2', { 2, 3, 4 }, function(b, x) return b:op('log_softmax', { x }, nil, { axis = 2 }) end },
  }
  for i, c in ipairs(cases) do
    it(c[1] .. ': VJP, JVP and VJP tangent match finite differences', function()
      local seed = 70 + i
      local r = fdcheck(c[1], {
        input = c[2], batch = 2, seed = seed,
        build = function(b, x) return b:op('tanh', { c[3](b, x) }) end,
      })
      assert.is_true(r.hvp_norm > 0)
      local pr = gc.check_params(r.net, { seed = seed })
      for name, err in pairs(pr) do
        assert(err < TOL, ('%s (seed %d): gradient of %s off by %g'):format(c[1], seed, name, err))
      end
    end)
  end

  it('layernorm normalizes each row: mean 0, variance 1 / (1 + eps / var)', function()
    local x = T.randn({ 3, 4, 8 }, { seed = 9, std = 3 })
    local y = one_op_net({ 4, 8 }, 'layernorm', {}):forward(x)
    local p, q = x:data(), y:data()
    for row = 0, 11 do
      local m, v, my, vy = 0, 0, 0, 0
      for k = 0, 7 do m = m + p[row * 8 + k] / 8 end
      for k = 0, 7 do v = v + (p[row * 8 + k] - m) ^ 2 / 8 end
      for k = 0, 7 do my = my + q[row * 8 + k] / 8 end
      for k = 0, 7 do vy = vy + (q[row * 8 + k] - my) ^ 2 / 8 end
      assert(math.abs(my) < 1e-6, 'seed 9: row mean ' .. my)
      assert(math.abs(vy - v / (v + 1e-5)) < 1e-5, 'seed 9: row variance ' .. vy)
    end
  end)

  it('softmax axis 0 is the default: the same bits as before', function()
    local x = T.randn({ 2, 3, 4, 5 }, { seed = 10 })
    local a = one_op_net({ 3, 4, 5 }, 'softmax', {}):forward(x)
    local b = one_op_net({ 3, 4, 5 }, 'softmax', { axis = -3 }):forward(x)
    assert.are.same(a:totable(), b:totable())
  end)

  it('refusals name the problem', function()
    assert.matches('softmax: axis 3 is not a per-sample axis of Nx2x3x4', build_error({ 2, 3, 4 }, 'softmax', { axis = 3 }), 1, true)
    assert.matches('log_softmax: axis -4 is not a per-sample axis of Nx2x3x4',
      build_error({ 2, 3, 4 }, 'log_softmax', { axis = -4 }), 1, true)
    assert.matches('reduce_mean: axes (bit i: per-sample axis i) must name axes of Nx2x3, got 4',
      build_error({ 2, 3 }, 'reduce_mean', { axes = 4 }), 1, true)
    assert.matches('reduce_mean: keepdims must be 0 or 1, got 2', build_error({ 2, 3 }, 'reduce_mean', { keepdims = 2 }), 1, true)
    assert.matches('layernorm: eps must be finite and >= 0 (0 means 1e-5), got -1',
      build_error({ 2, 3 }, 'layernorm', { eps = -1 }), 1, true)
    local ok, err = pcall(function()
      local b = nn.builder({ 2, 3 })
      b:op('layernorm', { b.input }, { b:param('w', { 2 }, 'weight') })
    end)
    assert.is_false(ok)
    assert.matches('layernorm: weight must be (3), the last dim of Nx2x3, got 2', err, 1, true)
    local b = nn.builder({ 2, 3, 4 })
    assert.are.same({ 1 }, b:shape(b:op('reduce_mean', { b.input })))
    assert.are.same({ 1, 1, 1 }, b:shape(b:op('reduce_mean', { b.input }, nil, { keepdims = 1 })))
    assert.are.same({ 2 }, b:shape(b:op('reduce_mean', { b.input }, nil, { axes = 6 })))
    assert.are.same({ 2, 1, 4 }, b:shape(b:op('reduce_mean', { b.input }, nil, { axes = 2, keepdims = 1 })))
  end)
end)

-- ------------------------------------------------------------- products

describe('matmul and matmul_param', function()
  local function T_(b, x, perm) return b:op('transpose', { x }, nil, { perm = perm }) end
  local cases = {
    { 'matmul batched (2x3x4 by 2x4x3), both activations', { 2, 3, 4 }, function(b, x)
      return b:op('matmul', { x, T_(b, b:op('tanh', { x }), { 0, 2, 1 }) }) end },
    { 'matmul 2-D (3x4 by 4x3)', { 3, 4 }, function(b, x)
      return b:op('matmul', { b:op('sigmoid', { x }), T_(b, x, { 1, 0 }) }) end },
    { 'matmul of an input with itself (x x)', { 2, 3, 3 }, function(b, x) return b:op('matmul', { x, x }) end },
    { 'matmul with a constant operand', { 3, 4 }, function(b, x)
      local w = b:param('w', { 4, 5 }, 'weight', { uniform = 1 })
      return b:op('matmul', { x, b:op('constant', { x }, { w }) }) end },
    { 'matmul_param weight and bias, 3-D tokens', { 2, 3, 4 }, function(b, x)
      return b:op('matmul_param', { x }, { b:param('fc.weight', { 4, 70 }, 'weight', { uniform = 0.5 }),
        b:param('fc.bias', { 70 }, 'weight', { uniform = 0.5 }) }) end },
    { 'matmul_param weight only, 2-D, more than one row block', { 70, 3 }, function(b, x)
      return b:op('matmul_param', { x }, { b:param('fc.weight', { 3, 2 }, 'weight', { uniform = 0.5 }) }) end },
  }
  for i, c in ipairs(cases) do
    it(c[1] .. ': VJP, JVP and VJP tangent match finite differences', function()
      local seed = 90 + i
      local r = fdcheck(c[1], {
        input = c[2], batch = 2, seed = seed,
        build = function(b, x) return b:op('tanh', { c[3](b, x) }) end,
      })
      assert.is_true(r.hvp_norm > 0)
      local pr = gc.check_params(r.net, { seed = seed, max_entries = 60 })
      for name, err in pairs(pr) do
        assert(err < TOL, ('%s (seed %d): gradient of %s off by %g'):format(c[1], seed, name, err))
      end
    end)
  end

  it('matmul of two activations: the HVP of <u, a b> is the bilinear cross term, exactly', function()
    -- f = <u, x x^T>: with no curvature but the cross term, dgx = u dx + u^T dx (closed form)
    local b = nn.builder({ 3, 2 })
    local net = b:build(b:op('matmul', { b.input, T_(b, b.input, { 1, 0 }) }))
    local x = T.randn({ 1, 3, 2 }, { seed = 12 })
    local v = T.randn({ 1, 3, 2 }, { seed = 12, stream = 2 })
    local u = T.randn({ 1, 3, 3 }, { seed = 12, stream = 3 })
    net:jvp(x, v)
    local _, dgx = net:hvp_backward(u, T.zeros { 1, 3, 3 })
    local U, V = u:totable(), v:totable() -- flat, row-major
    local want = {}
    for i = 1, 3 do
      for j = 1, 2 do
        local s = 0
        for k = 1, 3 do s = s + (U[(i - 1) * 3 + k] + U[(k - 1) * 3 + i]) * V[(k - 1) * 2 + j] end
        want[#want + 1] = s
      end
    end
    assert_close(dgx, want, 1e-5, 1e-6, 'seed 12: x x^T HVP')
  end)

  it('DeepLIFT through matmul (bilinear rule) and matmul_param (linear rule) sums to the output change', function()
    local b = nn.builder({ 3, 4 }, { seed = 13 })
    local h = b:op('matmul_param', { b.input }, { b:param('w', { 4, 4 }, 'weight', { uniform = 1 }) })
    h = b:op('matmul', { h, T_(b, b:op('tanh', { b.input }), { 1, 0 }) })
    local net = b:build(b:op('reshape', { h }, nil, { shape = { 9 } }))
    local x = T.randn({ 2, 3, 4 }, { seed = 13 })
    local targets = { 2, 7 }
    local attr = require('moreau.methods').create('deeplift', {}):explain(net, x, targets)
    local y, y0 = net:forward(x):clone(), net:forward(T.zeros { 2, 3, 4 }):clone()
    local a = attr:data()
    for n = 0, 1 do
      local s = 0
      for i = 0, 11 do s = s + a[n * 12 + i] end
      local want = y:data()[n * 9 + targets[n + 1]] - y0:data()[n * 9 + targets[n + 1]]
      assert(math.abs(s - want) <= 1e-5 * (1 + math.abs(want)),
        ('seed 13: item %d attributions sum to %.9g, the output changed by %.9g'):format(n, s, want))
    end
  end)

  it('refusals name the shapes', function()
    local ok, err = pcall(function()
      local b = nn.builder({ 3, 4 })
      b:op('matmul', { b.input, b.input })
    end)
    assert.is_false(ok)
    assert.matches('matmul: inputs must be NxBxnxk and NxBxkxm (or Nxnxk and Nxkxm), got Nx3x4 and Nx3x4', err, 1, true)
    ok, err = pcall(function()
      local b = nn.builder({ 3, 4 })
      b:op('matmul_param', { b.input }, { b:param('w', { 3, 4 }, 'weight') })
    end)
    assert.matches('matmul_param: weight must be (4, m) for input Nx3x4, got 3x4', err, 1, true)
    ok, err = pcall(function()
      local b = nn.builder({ 3, 4 })
      b:op('matmul_param', { b.input }, { b:param('w', { 4, 5 }, 'weight'), b:param('b', { 4 }, 'weight') })
    end)
    assert.matches('matmul_param: bias must be (5), got 4', err, 1, true)
  end)
end)

-- ------------------------------------------------------------- parameter operands

describe('add_param, sub_param, mul_param, div_param (broadcast parameter)', function()
  -- P in ±[0.5, 1.5]: away from 0, so that div_param is smooth over the differences
  local function fill_p(seed)
    return function(t)
      local u = T.randn(t:shape(), { seed = seed, stream = 9 }):data()
      local p = t:data()
      for j = 0, t:numel() - 1 do p[j] = (u[j] < 0 and -1 or 1) * (0.5 + math.min(math.abs(u[j]), 1)) end
    end
  end
  local shapes = { { 1 }, { 3, 1, 1 }, { 4 }, { 4, 1 }, { 3, 4, 4 }, { 1, 4, 4 } }
  for _, op in ipairs { 'add_param', 'sub_param', 'mul_param', 'div_param' } do
    for si, ps in ipairs(shapes) do
      local label = op .. ' by a ' .. table.concat(ps, 'x') .. ' parameter'
      it(label .. ': VJP, JVP, VJP tangent and the parameter gradient match finite differences', function()
        local seed = 110 + si
        local r = fdcheck(label, {
          input = { 3, 4, 4 }, batch = 2, seed = seed,
          build = function(b, x)
            return b:op('tanh', { b:op(op, { x }, { b:param('p', ps, 'weight', fill_p(seed)) }) })
          end,
        })
        assert.is_true(r.hvp_norm > 0)
        local pr = gc.check_params(r.net, { seed = seed })
        assert(pr.p and pr.p < TOL, ('%s (seed %d): parameter gradient off by %s'):format(label, seed, tostring(pr.p)))
      end)
    end
  end

  it('is one float operation per entry, as PyTorch: x / p is divided, not multiplied by 1/p', function()
    local b = nn.builder({ 3 })
    local p = b:param('p', { 3 }, 'buffer', function(t) t:data()[0], t:data()[1], t:data()[2] = 3, 7, 10 end)
    local net = b:build(b:op('div_param', { b.input }, { p }))
    local xs = { 1, 1, 3 }
    local y = net:forward(T.from(xs, { 1, 3 }))
    for i, d in ipairs { 3, 7, 10 } do
      local want = tonumber(ffi.new('float', xs[i] / d)) -- the correctly rounded float quotient
      assert.are.equal(want, y:data()[i - 1])
    end
  end)

  it('refuses a parameter that does not broadcast', function()
    local function err_of(ps)
      local ok, err = pcall(function()
        local b = nn.builder({ 3, 4, 4 })
        b:op('mul_param', { b.input }, { b:param('p', ps, 'buffer') })
      end)
      assert.is_false(ok)
      return err
    end
    assert.matches('mul_param: the parameter (3) must broadcast into the input\'s per-sample shape Nx3x4x4 (trailing dims 1 or equal)',
      err_of({ 3 }), 1, true)
    assert.matches('mul_param: the parameter (2x3x4x4)', err_of({ 2, 3, 4, 4 }), 1, true)
  end)
end)

-- ------------------------------------------------------------- sub, div

describe('sub and div of two activations', function()
  local function denom(b, x, sign)
    -- sign · (σ(x) + 0.5): |b| >= 0.5, smooth
    local one = b:param('half' .. sign, { 1 }, 'buffer', function(t) t:data()[0] = 0.5 end)
    local d = b:add_param(b:op('sigmoid', { x }), one)
    if sign < 0 then d = b:mul_param(d, b:param('minus', { 1 }, 'buffer', function(t) t:data()[0] = -1 end)) end
    return d
  end
  local cases = {
    { 'sub', function(b, x) return b:sub(b:op('tanh', { x }), x) end },
    { 'sub of an input from itself plus a branch', function(b, x) return b:sub(x, b:op('sigmoid', { x })) end },
    { 'div by a positive branch', function(b, x) return b:div(x, denom(b, x, 1)) end },
    { 'div by a negative branch', function(b, x) return b:div(b:op('tanh', { x }), denom(b, x, -1)) end },
  }
  for i, c in ipairs(cases) do
    it(c[1] .. ': VJP, JVP and VJP tangent match finite differences', function()
      local seed = 130 + i
      local r = fdcheck(c[1], {
        input = { 3, 4, 4 }, batch = 2, seed = seed,
        build = function(b, x) return b:op('tanh', { c[2](b, x) }) end,
      })
      assert.is_true(r.hvp_norm > 0)
    end)
  end

  it('div is the float quotient, and its curvature the closed form', function()
    -- f(a, b) = a / b with a = b = x: y = 1, and the VJP tangent of the pair
    -- gives, through both operands, dgx = gy (-1/x² + 2x/x³ - 1/x²) dx = 0
    local b = nn.builder({ 2 })
    local p = b:param('p', { 2 }, 'buffer', function(t) t:data()[0], t:data()[1] = 3, 7 end)
    local net = b:build(b:div(b.input, b:constant(b.input, p)))
    local y = net:forward(T.from({ 1, 1 }, { 1, 2 }))
    assert.are.equal(tonumber(ffi.new('float', 1 / 3)), y:data()[0])
    assert.are.equal(tonumber(ffi.new('float', 1 / 7)), y:data()[1])
    b = nn.builder({ 3 })
    net = b:build(b:div(b.input, b.input))
    local x = T.from({ 0.5, -2, 3 }, { 1, 3 })
    net:jvp(x, T.ones { 1, 3 })
    local _, dgx = net:hvp_backward(T.ones { 1, 3 }, T.zeros { 1, 3 })
    assert_close(dgx, { 0, 0, 0 }, 0, 1e-6, 'x / x curvature')
  end)

  it('refuse inputs of different shapes and DeepLIFT refuses div', function()
    local ok, err = pcall(function()
      local b = nn.builder({ 3, 4 })
      b:div(b.input, b:transpose(b.input, { 1, 0 }))
    end)
    assert.is_false(ok)
    assert.matches('div: inputs must have the same shape, got Nx3x4 and Nx4x3 (a constant operand: div_param)', err, 1, true)
    local b = nn.builder({ 3 })
    local net = b:build(b:div(b.input, b:op('sigmoid', { b.input })))
    ok, err = pcall(function()
      return require('moreau.methods').create('deeplift', {}):explain(net, T.ones { 1, 3 }, { 0 })
    end)
    assert.is_false(ok)
    assert.matches("deeplift: node 2 'div' (div) has no exact DeepLIFT rule", tostring(err), 1, true)
  end)
end)

-- ------------------------------------------------------------- the builder

describe('the builder methods of the imported ops', function()
  it('build the ops with PyTorch-style arguments', function()
    local b = nn.builder({ 3, 4, 4 }, { seed = 3 })
    local function op_of(id) return b.net:nodes()[id + 1].op end
    local x = b.input
    local h = b:relu6(x)
    assert.are.equal('clip', op_of(h))
    h = b:hardswish(b:hardsigmoid(b:gelu(b:erf(h), { approximate = 'tanh' })))
    assert.are.same({ 3, 4, 4 }, b:shape(h))
    assert.are.same({ 3, 16 }, b:shape(b:flatten_from(h, 1)))
    assert.are.same({ 48 }, b:shape(b:flatten_from(h, 0)))
    assert.are.same({ 3, 1, 16 }, b:shape(b:unsqueeze(b:flatten_from(h, 1), 1)))
    assert.are.same({ 3, 16 }, b:shape(b:squeeze(b:unsqueeze(b:flatten_from(h, 1), -1), -1)))
    assert.are.same({ 4, 4, 3 }, b:shape(b:transpose(h, { 1, 2, 0 })))
    assert.are.same({ 9, 4, 4 }, b:shape(b:concat({ h, x, h }, 0)))
    assert.are.same({ 3, 2, 4 }, b:shape(b:slice(h, 1, 1, nil, 2)))
    assert.are.same({ 3, 4 }, b:shape(b:gather(h, 2, -1)))
    assert.are.same({ 3, 5, 7 }, b:shape(b:pad(h, { 0, 1, 2, 0, 0, 1 }, 'reflect')))
    local ln = b:layernorm('norm', h, 4, { eps = 1e-6 })
    assert.are.equal('layernorm', op_of(ln))
    assert.is_not_nil(b.net:param('norm.weight'))
    assert.are.same({ 3, 1, 1 }, b:shape(b:reduce_mean(ln, { 1, 2 }, true)))
    assert.are.same({ 4 }, b:shape(b:reduce_mean(ln, { 0, -2 })))
    assert.are.same({ 3, 4, 4 }, b:shape(b:matmul(h, h)))
    assert.are.same({ 3, 4, 7 }, b:shape(b:matmul_param('proj', h, 4, 7)))
    local c = b:param('scale', { 3, 1, 1 }, 'weight', 'ones')
    for _, m in ipairs { 'add_param', 'sub_param', 'mul_param', 'div_param' } do
      assert.are.equal(m, op_of(b[m](b, h, c)))
    end
    assert.are.same({ 3, 1, 1 }, b:shape(b:constant(x, c)))
  end)

  it('refuse arguments the op cannot take, naming them', function()
    local b = nn.builder({ 3, 4 })
    assert.has_error(function() b:gelu(b.input, { approximate = 'fast' }) end,
      "builder:gelu: approximate is 'none' or 'tanh', got fast")
    assert.has_error(function() b:squeeze(b.input, 0) end, 'builder:squeeze: axis 0 of 3x4 is not a dim of size 1 that can go')
    assert.has_error(function() b:pad(b.input, { 1, 1 }) end,
      'builder:pad: pads lists 4 numbers (begins, then ends) for 2 per-sample dims')
    assert.has_error(function() b:concat({ b.input }, 0) end, 'builder:concat: give a list of 2 or more nodes')
    assert.has_error(function() b:flatten_from(b.input, 2) end, 'builder:flatten_from: start 2 is not a per-sample axis of 3x4')
  end)

  it('nn modules: ReLU6, Hardsigmoid, Hardswish, GELU and LayerNorm as torch.nn', function()
    local net = nn.build(nn.Sequential { nn.ReLU6(), nn.Hardsigmoid(), nn.Hardswish(),
      nn.GELU { approximate = 'tanh' }, nn.LayerNorm(5, { eps = 1e-6 }) }, { 2, 5 })
    local ops = {}
    for i, n in ipairs(net:nodes()) do if i > 1 then ops[#ops + 1] = n.op end end
    assert.are.same({ 'clip', 'hardsigmoid', 'hardswish', 'gelu', 'layernorm' }, ops)
    assert.is_not_nil(net:param('4.weight'))
    assert.is_not_nil(net:param('4.bias'))
  end)
end)

-- ------------------------------------------------------------- invariance

describe('the imported ops are batch and thread-count invariant', function()
  it('a small attention-and-conv network of every new op: the same bits for every batch and team', function()
    -- batches of 64 items of 512 entries: every op's parallel loop runs
    local b = nn.builder({ 8, 8, 8 }, { seed = 21 })
    local x = b:sub_param(b.input, b:param('mean', { 8, 1, 1 }, 'buffer', { uniform = 0.5 }))
    x = b:div_param(x, b:param('std', { 1 }, 'buffer', 'ones'))
    local h = b:hardswish(b:clip(b:gelu(x), -2, 6))
    h = b:pad(b:erf(h), { 0, 1, 1, 0, 1, 1 }, 'reflect')                            -- 8x10x10
    h = b:slice(h, 1, 1, 9)                                                          -- 8x8x10
    h = b:slice(h, 2, 0, nil, 1)
    h = b:slice(b:hardsigmoid(h), 2, 1, 9)                                           -- 8x8x8
    local t = b:transpose(b:reshape(h, { 8, 64 }), { 1, 0 })                         -- 64 tokens x 8
    t = b:add_param(t, b:param('pos', { 64, 8 }, 'weight', { uniform = 0.5 }))
    t = b:concat({ b:constant(t, b:param('cls', { 1, 8 }, 'weight', { uniform = 1 })), t }, 0) -- 65x8
    local n = b:layernorm('ln', t, 8, { eps = 1e-6 })
    local q = b:matmul_param('q', n, 8, 8)
    local att = b:op('softmax', { b:mul_param(b:matmul(q, b:transpose(n, { 1, 0 })),
      b:param('scale', { 1 }, 'buffer', 'ones')) }, nil, { axis = -1 })            -- 65x65
    local o = b:matmul(att, n)                                                       -- 65x8
    local cls = b:gather(o, 0, 0)                                                    -- 8
    local pooled = b:reduce_mean(o, { 0 })                                           -- 8
    local net = b:build(b:linear('head', b:concat({ cls, pooled }, 0), 16, 5))
    require('helpers.invariance').check(net, 21, 'imported ops')
  end)
end)

-- ------------------------------------------------------------- PyTorch

--- The node of fixture case c on the builder's input: its op on the input
-- (and, for a second input, a `constant` node holding it), its parameters
-- set from the fixture.
local function fixture_net(c)
  local b = nn.builder(c.inputs[1].shape_sample)
  local ins = { b.input }
  for k = 2, #c.inputs do
    local i = c.inputs[k]
    local pid = b:param('input' .. k, i.shape_sample, 'buffer', function(t)
      local p = t:data()
      for j = 1, #i.data do p[j - 1] = i.data[j] end
    end)
    ins[k] = b:op('constant', { b.input }, { pid })
  end
  local params = {}
  for k, pr in ipairs(c.params) do
    params[k] = b:param(pr.name, pr.shape, 'weight', function(t)
      local p = t:data()
      for j = 1, #pr.data do p[j - 1] = pr.data[j] end
    end)
  end
  return b:build(b:op(c.op, ins, params, c.attrs))
end

describe('imported ops against PyTorch (float64 references)', function()
  local cases = dofile('tests/fixtures/imported_ops.lua')
  it('every case of tests/fixtures/imported_ops.lua', function()
    assert.is_true(#cases >= 20)
    for _, c in ipairs(cases) do
      for _, i in ipairs(c.inputs) do
        i.shape_sample = {}
        for d = 2, #i.shape do i.shape_sample[d - 1] = i.shape[d] end
      end
      local net = fixture_net(c)
      local y = net:forward(T.from(c.inputs[1].data, c.inputs[1].shape))
      assert.are.same(c.y.shape, y:shape(), c.name .. ': output shape')
      -- float32 computation rounded once (or a float32 sum) against float64;
      -- single float operations (exact) bit for bit against PyTorch's float32
      if c.exact then
        assert_close(y, c.y.data, 0, 0, c.name)
      else
        assert_close(y, c.y.data, 2e-6, 1e-6, c.name)
      end
    end
  end)
end)
