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
local TOL = 1e-3

--- A seeded normal tensor (std `scale`) whose entries are moved at least
-- `margin` away from each point of `kinks`.
local function away(shape, seed, scale, kinks, margin)
  local x = T.randn(shape, { seed = seed, stream = 1, std = scale or 1 })
  local p = x:data()
  margin = margin or 0.1
  for i = 0, x:numel() - 1 do
    for _, k in ipairs(kinks or {}) do
      local d = p[i] - k
      if math.abs(d) < margin then p[i] = k + (d < 0 and -margin or margin) end
    end
  end
  return x
end

--- Runs the finite-difference checks and asserts them, with the seed and a
-- label in the message.
local function fdcheck(label, opts)
  opts.seed = opts.seed or 1
  local r = gc.check(opts)
  local ok, err = pcall(gc.assert_ok, r, opts.tol or TOL)
  if not ok then error(('%s (seed %d): %s'):format(label, opts.seed, tostring(err)), 2) end
  return r
end

--- Asserts |got − want| <= rtol |want| + atol entry by entry.
local function assert_close(got, want, rtol, atol, what)
  local p = got:data()
  assert(got:numel() == #want, ('%s: %d entries, expected %d'):format(what, got:numel(), #want))
  for i = 0, got:numel() - 1 do
    local a, b = p[i], want[i + 1]
    if not (math.abs(a - b) <= rtol * math.abs(b) + (atol or 0)) then
      error(('%s: entry %d is %.9g, expected %.9g'):format(what, i + 1, a, b), 2)
    end
  end
end

local function one_op_net(input, op, attrs)
  local b = nn.builder(input)
  local y = b:op(op, { b.input }, nil, attrs)
  return b:build(y)
end

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
      -- float32 computation rounded once (or a float32 sum) against float64
      assert_close(y, c.y.data, 2e-6, 1e-6, c.name)
    end
  end)
end)
