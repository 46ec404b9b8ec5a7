-- Pointwise op families: activations (relu, softplus, silu, sigmoid, tanh),
-- elementwise (add, broadcast mul), shape (flatten, dropout) and softmax /
-- log-softmax.
--
-- Three kinds of truth: finite differences of VJP, JVP and the VJP tangent
-- (helpers.gradcheck; relative error ‖a−b‖/‖a+b‖ below TOL, inputs kept at
-- least 0.1 from every kink so that x ± h v with h = 1e-2 never crosses one),
-- closed forms computed in Lua in double precision, and bit-identical results
-- across thread counts. Every random input comes from a fixed seed, printed in
-- the failure message.
local ffi = require 'ffi'
local moreau = require 'moreau'
local core = require 'moreau.core'
local T = require 'moreau.tensor'
local nn = require 'moreau.nn'
local gc = require 'helpers.gradcheck'
-- These specs compare thread counts: the team must be the count asked for,
-- not fewer threads because another process is busy (moreau.set_adaptive_threads).
require('moreau').set_adaptive_threads(false)

-- Float32 forward, central differences with h = 1e-2: truncation ~h² and
-- rounding ~eps/h put the expected error near 1e-5; 1e-3 leaves room.
local TOL = gc.FD_TOL

-- ------------------------------------------------------------- helpers

local function has_op(name)
  local names = core.C.mr_op_names()
  local i = 0
  while names[i] ~= nil do
    if ffi.string(names[i]) == name then return true end
    i = i + 1
  end
  return false
end

local away = gc.away

-- The finite-difference checks of a network built by opts.build(b, x),
-- asserted below opts.tol or TOL, the label and seed in a failure's message.
local fdcheck = gc.fdcheck

local function log1p(u)
  if math.abs(u) < 1e-4 then return u - u * u / 2 + u * u * u / 3 end
  return math.log(1 + u)
end
local function sigmoid(z)
  if z >= 0 then return 1 / (1 + math.exp(-z)) end
  local e = math.exp(z)
  return e / (1 + e)
end
local function softplus(x, beta, thr)
  beta, thr = beta or 1, thr or 20
  local z = beta * x
  if z > thr then return x end
  return (math.max(z, 0) + log1p(math.exp(-math.abs(z)))) / beta
end
local function tanh(x)
  local e = math.exp(-2 * math.abs(x))
  return (x < 0 and -1 or 1) * (1 - e) / (1 + e)
end
-- s'(z) = s(z) s(-z) and tanh'(x) = 4e/(1+e)², e = e^{-2|x|}: no cancellation in the tails
local function dsigmoid(z) return sigmoid(z) * sigmoid(-z) end
local function dtanh(x)
  local e = math.exp(-2 * math.abs(x))
  return 4 * e / (1 + e) ^ 2
end
--- v rounded to float32
local function f32(v) return tonumber(ffi.new('float', v)) end

--- Asserts |got − want| <= rtol |want| + atol entry by entry (and as many entries as want).
local assert_close = require('helpers.asserts').close

local function assert_bits_equal(a, b, what)
  assert.are.equal(a:numel(), b:numel())
  local n = a:numel() * 4
  if ffi.string(a:data(), n) ~= ffi.string(b:data(), n) then
    error(what .. ': results differ bit for bit', 2)
  end
end

local one_op_net = gc.one_op_net

-- Values spanning both tails, the origin and the softplus default threshold.
local SWEEP = { -100, -40, -20.5, -5, -1.25, -0.3, 0, 0.3, 1.25, 5, 19.5, 20.5, 40, 100 }

-- ------------------------------------------------------------- activations

describe('activations', function()
  local acts = {
    { 'relu', {}, { 0 } },
    { 'silu', {}, {} },
    { 'sigmoid', {}, {} },
    { 'tanh', {}, {} },
    { 'softplus', {}, {} },
  }
  for _, a in ipairs(acts) do
    local op, attrs, kinks = a[1], a[2], a[3]
    it(op .. ': VJP, JVP and VJP tangent match finite differences', function()
      local seed = 11
      fdcheck(op, {
        input = { 3, 4, 4 }, batch = 2, seed = seed,
        x = away({ 2, 3, 4, 4 }, seed, 1.5, kinks),
        build = function(b, x) return b:op(op, { x }, nil, attrs) end,
      })
    end)
  end

  it('softplus with beta ~= 1 and points on both sides of a threshold', function()
    -- beta 2, threshold 1: linear for x > 0.5. Inputs spread over [-3, 3],
    -- none within 0.1 of 0.5 (the derivative jumps there from s(1) to 1).
    local seed = 12
    local x = away({ 2, 3, 4, 4 }, seed, 1.5, { 0.5 })
    local lin, smooth = 0, 0
    for _, v in ipairs(x:totable()) do
      if 2 * v > 1 then lin = lin + 1 else smooth = smooth + 1 end
    end
    assert.is_true(lin > 10 and smooth > 10, ('seed %d: %d linear, %d smooth'):format(seed, lin, smooth))
    local r = fdcheck('softplus beta 2 threshold 1', {
      input = { 3, 4, 4 }, batch = 2, seed = seed, x = x,
      build = function(b, xx) return b:softplus(xx, { beta = 2, threshold = 1 }) end,
    })
    assert.is_true(r.hvp_norm > 0) -- the smooth branch has curvature
    -- beta < 1 with the default threshold (20): linear for x > 40
    fdcheck('softplus beta 0.5', {
      input = { 3, 4, 4 }, batch = 2, seed = seed, x = away({ 2, 3, 4, 4 }, seed, 30, { 40 }),
      build = function(b, xx) return b:softplus(xx, { beta = 0.5 }) end,
    })
  end)

  it('forward values and derivatives match closed forms', function()
    local n = #SWEEP
    local x = T.from(SWEEP, { 1, n })
    local ones = T.ones { 1, n }
    local cases = {
      relu = { {}, function(v) return math.max(v, 0) end, function(v) return v > 0 and 1 or 0 end },
      sigmoid = { {}, sigmoid, dsigmoid },
      tanh = { {}, tanh, dtanh },
      silu = { {}, function(v) return v * sigmoid(v) end,
        function(v) return sigmoid(v) + v * dsigmoid(v) end },
      softplus = { {}, softplus, function(v) return v > 20 and 1 or sigmoid(v) end },
      ['softplus beta 3 threshold 2'] = { { beta = 3, threshold = 2 },
        function(v) return softplus(v, 3, 2) end,
        function(v) return 3 * v > 2 and 1 or sigmoid(3 * v) end },
      ['softplus beta 0.25'] = { { beta = 0.25 }, function(v) return softplus(v, 0.25, 20) end,
        function(v) return 0.25 * v > 20 and 1 or sigmoid(0.25 * v) end },
    }
    for name, cse in pairs(cases) do
      local op = name:match('^%a+')
      local net = one_op_net({ n }, op, cse[1])
      local want_f, want_d = {}, {}
      for i, v in ipairs(SWEEP) do
        want_f[i] = cse[2](v)
        want_d[i] = cse[3](v)
      end
      local y = net:forward(x)
      assert.is_true(y:isfinite(), name .. ': non-finite output')
      -- a few float ulps: the exponentials are float (expf/log1pf, as PyTorch's CPU kernels)
      assert_close(y, want_f, 1e-6, 1e-30, name .. ' forward')
      local g = net:backward(ones)
      assert_close(g, want_d, 1e-6, 1e-30, name .. ' derivative')
    end
  end)

  it('softplus follows PyTorch at the threshold and stays finite past exp overflow', function()
    -- beta x == threshold exactly is the smooth branch (the test is beta x > threshold)
    local net = one_op_net({ 3 }, 'softplus', { beta = 2, threshold = 1 })
    local y = net:forward(T.from({ 0.5, 0.5000001, -0.5 }, { 1, 3 }))
    assert_close(y, { math.log(1 + math.exp(1)) / 2, 0.5000001, softplus(-0.5, 2, 1) }, 2e-7, 0, 'threshold')
    -- a threshold of 100 keeps x = 95 in the smooth branch, where exp(95) overflows float
    net = one_op_net({ 2 }, 'softplus', { threshold = 100 })
    y = net:forward(T.from({ 95, -95 }, { 1, 2 }))
    assert.is_true(y:isfinite())
    assert_close(y, { 95, softplus(-95) }, 2e-7, 1e-45, 'large threshold')
  end)

  it('second derivatives match closed forms (f\'\' via the VJP tangent)', function()
    -- dgx = f'(x) dgy + f''(x) dx gy; with dgy = 0, gy = dx = 1 it is f''(x).
    local xs = { -4, -1.5, -0.25, 0.25, 1.5, 4 }
    local n = #xs
    local x, ones = T.from(xs, { 1, n }), T.ones { 1, n }
    local d2 = {
      sigmoid = function(v) local s = sigmoid(v) return s * (1 - s) * (1 - 2 * s) end,
      tanh = function(v) local t = tanh(v) return -2 * t * (1 - t * t) end,
      silu = function(v) local s = sigmoid(v) return s * (1 - s) * (2 + v * (1 - 2 * s)) end,
      softplus = function(v) local s = sigmoid(v) return s * (1 - s) end,
      relu = function() return 0 end,
    }
    for op, f2 in pairs(d2) do
      local net = one_op_net({ n }, op)
      net:jvp(x, ones)
      local _, dgx = net:hvp_backward(ones, nil)
      local want = {}
      for i, v in ipairs(xs) do want[i] = f2(v) end
      assert_close(dgx, want, 1e-6, 1e-7, op .. " f''")
    end
  end)
end)

describe('silu and sigmoid (the vectorized e^{-|x|})', function()
  it('match their closed forms on a dense sweep, tails and the zero of silu\' included', function()
    -- every 1/16 over [-110, 110] (e^{-|x|} reaches the float subnormals and
    -- underflows), and x = -1.278464542761074, the zero of silu' = s (1 + x (1 - s)),
    -- where f' is all cancellation; 3522 entries, so both the vector body and
    -- the remainder loop of each pass run
    local xs = {}
    for i = -1760, 1760 do xs[#xs + 1] = i / 16 end
    xs[#xs + 1] = -1.278464542761074
    local n = #xs
    local x, ones = T.from(xs, { 1, n }), T.ones { 1, n }
    -- 1 - s(v) as s(-v) and 1 - 2 s as (1 - s) - s: no cancellation in the references either
    local cases = {
      silu = { function(v) return v * sigmoid(v) end, function(v) return sigmoid(v) + v * dsigmoid(v) end,
        function(v) local s, t = sigmoid(v), sigmoid(-v) return s * t * (2 + v * (t - s)) end },
      sigmoid = { sigmoid, dsigmoid, function(v) local s, t = sigmoid(v), sigmoid(-v) return s * t * (t - s) end },
    }
    for op, f in pairs(cases) do
      local want = { {}, {}, {} }
      for i, v in ipairs(xs) do
        local xv = f32(v) -- the input the net sees
        for k = 1, 3 do want[k][i] = f[k](xv) end
      end
      local net = one_op_net({ n }, op)
      assert_close(net:forward(x), want[1], 3e-7, 1e-44, op .. ' forward')
      assert_close(net:backward(ones), want[2], 3e-7, 1e-44, op .. ' derivative')
      net:jvp(x, ones)
      local _, dgx = net:hvp_backward(ones, nil)
      assert_close(dgx, want[3], 3e-7, 1e-44, op .. " f''")
    end
  end)
end)

describe('activations and NaN', function()
  it('a NaN input gives a NaN output, as in PyTorch (relu and softplus hid it as 0)', function()
    -- A network's input is refused when it holds a NaN, so the NaN is made
    -- inside: 0 times an infinite weight. n = 20000 takes the vectorized and
    -- threaded loops, n = 7 the short ones.
    for _, n in ipairs { 7, 20000 } do
      local x = T.zeros { 1, n }
      local p = x:data()
      for i = 0, n - 1 do p[i] = (i % 3 == 1) and 0 or (i % 5) - 2.5 end
      for _, case in ipairs { { 'relu' }, { 'softplus' }, { 'softplus', { beta = 10 } }, { 'silu' }, { 'sigmoid' },
        { 'tanh' }, { 'clip', { min = 0, max = 6 } }, { 'hardsigmoid' }, { 'hardswish' }, { 'gelu' } } do
        local op, attrs = case[1], case[2]
        local b = nn.builder({ n })
        local net = b:build(b:op(op, { b:mul_param(b.input, b:param('w', { n })) }, nil, attrs))
        local w = net:param('w'):data()
        for i = 0, n - 1 do w[i] = (i % 3 == 1) and math.huge or 1 end
        local y = net:forward(x):data()
        for i = 0, n - 1 do
          local want_nan = i % 3 == 1
          assert.are.equal(want_nan, y[i] ~= y[i], ('%s (n = %d): entry %d is %s'):format(op, n, i, tostring(y[i])))
        end
      end
    end
  end)
end)

-- ------------------------------------------------------------- add and mul

describe('add', function()
  it('VJP, JVP and VJP tangent of tanh(x) + sigmoid(x)', function()
    fdcheck('add', {
      input = { 2, 3, 3 }, batch = 2, seed = 21,
      build = function(b, x) return b:add(b:tanh(x), b:sigmoid(x)) end,
    })
  end)

  it('the same node as both inputs: y = 2 tanh(x)', function()
    local seed = 22
    local net = gc.net {
      input = { 2, 3, 3 },
      build = function(b, x) local t = b:tanh(x) return b:add(t, t) end,
    }
    local x = T.randn({ 2, 2, 3, 3 }, { seed = seed })
    local want = {}
    for i, v in ipairs(x:totable()) do want[i] = 2 * tanh(v) end
    assert_close(net:forward(x), want, 3e-7, 0, 'add(t, t) forward, seed ' .. seed)
    fdcheck('add(t, t)', { net = net, seed = seed })
    -- and the network input itself as both inputs: y = 2 x, gx = 2 gy
    net = gc.net { input = { 4 }, build = function(b, xx) return b:add(xx, xx) end }
    local u = T.randn({ 3, 4 }, { seed = seed, stream = 5 })
    net:forward(T.randn({ 3, 4 }, { seed = seed }))
    assert.is_true(net:backward(u):max_abs_diff(u:clone():mul_(2)) == 0)
  end)

  it('rejects inputs of different shapes, naming them', function()
    local b = nn.builder { 3, 4, 4 }
    local f = b:flatten(b.input)
    assert.has_error(function() b:add(b.input, f) end,
      'add: inputs must have the same shape, got Nx3x4x4 and Nx48')
  end)
end)

describe('mul', function()
  it('same-shape form: VJP, JVP and VJP tangent of tanh(x) * sigmoid(x)', function()
    fdcheck('mul same shape', {
      input = { 2, 3, 3 }, batch = 2, seed = 31,
      build = function(b, x) return b:mul(b:tanh(x), b:sigmoid(x)) end,
    })
  end)

  it('x * x: gradient 2 x gy and VJP tangent 2 dx gy exactly', function()
    local seed = 32
    local net = gc.net { input = { 5 }, build = function(b, x) return b:mul(x, x) end }
    local x = T.randn({ 2, 5 }, { seed = seed, stream = 1 })
    local v = T.randn({ 2, 5 }, { seed = seed, stream = 2 })
    local u = T.randn({ 2, 5 }, { seed = seed, stream = 3 })
    net:jvp(x, v)
    local gx, dgx = net:hvp_backward(u, nil)
    local wg, wh = {}, {}
    local px, pv, pu = x:data(), v:data(), u:data()
    for i = 0, 9 do
      wg[i + 1] = 2 * px[i] * pu[i]
      wh[i + 1] = 2 * pv[i] * pu[i]
    end
    assert_close(gx, wg, 1e-6, 0, 'x*x gradient, seed ' .. seed)
    assert_close(dgx, wh, 1e-6, 0, 'x*x VJP tangent, seed ' .. seed)
  end)

  it('broadcast form (squeeze-excitation): VJP, JVP and VJP tangent', function()
    if not has_op('adaptive_avgpool2d') then
      pending('needs adaptive_avgpool2d for the (N, C, 1, 1) gate')
      return
    end
    local r = fdcheck('mul broadcast', {
      input = { 3, 4, 4 }, batch = 2, seed = 33,
      build = function(b, x)
        local gate = b:sigmoid(b:adaptive_avgpool2d(x, 1))
        return b:mul(b:tanh(x), gate)
      end,
    })
    assert.is_true(r.hvp_norm > 0)
  end)

  it('broadcast form: forward multiplies each channel by its gate', function()
    if not has_op('adaptive_avgpool2d') then
      pending('needs adaptive_avgpool2d for the (N, C, 1, 1) gate')
      return
    end
    local b = nn.builder { 2, 3, 3 }
    local gate = b:adaptive_avgpool2d(b.input, 1)
    local net = b:build(b:mul(b.input, gate))
    local x = T.randn({ 2, 2, 3, 3 }, { seed = 34 })
    local p, want = x:data(), {}
    for nc = 0, 3 do
      local m = 0
      for i = 0, 8 do m = m + p[nc * 9 + i] end
      m = m / 9
      for i = 0, 8 do want[nc * 9 + i + 1] = p[nc * 9 + i] * m end
    end
    assert_close(net:forward(x), want, 1e-6, 1e-7, 'mul broadcast forward, seed 34')
  end)

  it('broadcast form: the gate\'s gradient sums gy x over the plane (closed form, 5x7 planes)', function()
    -- y = x m(x), m = mean of the plane: gx_i = gy_i m + (Σ_j gy_j x_j) / 35; the
    -- sum runs in blocks of 8 and a tail (35 = 4 x 8 + 3)
    local seed = 35
    local b = nn.builder { 2, 5, 7 }
    local net = b:build(b:mul(b.input, b:adaptive_avgpool2d(b.input, 1)))
    local x = T.randn({ 2, 2, 5, 7 }, { seed = seed, stream = 1 })
    local gy = T.randn({ 2, 2, 5, 7 }, { seed = seed, stream = 2 })
    net:forward(x)
    local gx = net:backward(gy)
    local p, g, want = x:data(), gy:data(), {}
    for nc = 0, 3 do
      local m, dot = 0, 0
      for i = 0, 34 do
        m = m + p[nc * 35 + i] / 35
        dot = dot + g[nc * 35 + i] * p[nc * 35 + i]
      end
      for i = 0, 34 do want[nc * 35 + i + 1] = g[nc * 35 + i] * m + dot / 35 end
    end
    assert_close(gx, want, 1e-6, 1e-7, 'mul broadcast gate gradient, seed ' .. seed)
  end)

  it('rejects a gate that is neither NxCx1x1 nor shaped like the input', function()
    local b = nn.builder { 3, 4, 4 }
    local f = b:flatten(b.input)
    assert.has_error(function() b:mul(b.input, f) end,
      'mul: input 1 must be NxCx1x1 or shaped like input 0 (NxCxHxW), got Nx3x4x4 and Nx48')
  end)
end)

-- ------------------------------------------------------------- flatten, dropout

describe('flatten', function()
  it('copies in row-major order and has identity derivatives', function()
    local net = one_op_net({ 3, 2, 2 }, 'flatten')
    assert.are.same({ 12 }, net:output_shape())
    local x = T.randn({ 2, 3, 2, 2 }, { seed = 41 })
    local y = net:forward(x)
    assert.are.same({ 2, 12 }, y:shape())
    assert.are.same(x:totable(), y:totable())
    fdcheck('flatten', {
      input = { 3, 2, 2 }, batch = 2, seed = 41,
      build = function(b, xx) return b:tanh(b:flatten(xx)) end,
    })
  end)
end)

describe('dropout', function()
  local shape = { 4, 1, 64, 64 } -- 16384 entries

  it('is the identity at inference', function()
    local net = one_op_net({ 1, 64, 64 }, 'dropout', { p = 0.5 })
    local x = T.randn(shape, { seed = 51 })
    assert.is_true(net:forward(x):max_abs_diff(x) == 0)
    local u = T.randn(shape, { seed = 51, stream = 2 })
    assert.is_true(net:backward(u):max_abs_diff(u) == 0)
    fdcheck('dropout at inference', {
      input = { 3, 2, 2 }, batch = 2, seed = 51,
      build = function(b, xx) return b:tanh(b:dropout(xx, 0.5)) end,
    })
  end)

  it('in training: keeps 1 - p of the entries, scaled by 1/(1 - p), the same mask backward', function()
    local seed, p = 52, 0.3
    local net = one_op_net({ 1, 64, 64 }, 'dropout', { p = p }):train():seed(seed)
    local x = T.rand(shape, { seed = seed, lo = 1, hi = 2 }) -- no zeros: y == 0 marks a dropped entry
    local y = net:forward(x)
    local u = T.rand(shape, { seed = seed, stream = 2, lo = 1, hi = 2 })
    local g = net:backward(u)
    local scale = f32(1 / f32(1 - f32(p))) -- as the engine computes it: 1.0f / (1.0f - p)
    local px, py, pu, pg = x:data(), y:data(), u:data(), g:data()
    local kept, n = 0, x:numel()
    for i = 0, n - 1 do
      if py[i] ~= 0 then
        kept = kept + 1
        assert(py[i] == f32(px[i] * scale), 'seed ' .. seed .. ': a kept entry is not x/(1-p)')
        assert(pg[i] == f32(pu[i] * scale), 'seed ' .. seed .. ': backward drops a kept entry')
      else
        assert(pg[i] == 0, 'seed ' .. seed .. ': backward keeps a dropped entry')
      end
    end
    -- kept ~ Binomial(n, 1 - p): 5 standard deviations
    local frac, sd = kept / n, math.sqrt(p * (1 - p) / n)
    assert(math.abs(frac - (1 - p)) < 5 * sd,
      ('seed %d: kept fraction %.4f, expected %.2f'):format(seed, frac, 1 - p))
  end)

  it('the same seed gives the same masks; each call and each seed a new one', function()
    local seed = 53
    local x = T.ones(shape)
    local function masks(s, calls)
      local net = one_op_net({ 1, 64, 64 }, 'dropout', { p = 0.5 }):train():seed(s)
      local out = {}
      for k = 1, calls do out[k] = net:forward(x) end
      return out
    end
    local a, b, c = masks(seed, 2), masks(seed, 2), masks(seed + 1, 1)
    assert_bits_equal(a[1], b[1], 'seed ' .. seed .. ', call 1')
    assert_bits_equal(a[2], b[2], 'seed ' .. seed .. ', call 2')
    assert.is_true(a[1]:max_abs_diff(a[2]) > 0, 'seed ' .. seed .. ': two calls drew the same mask')
    assert.is_true(a[1]:max_abs_diff(c[1]) > 0, 'seeds ' .. seed .. ', ' .. seed + 1 .. ' drew the same mask')
    -- reseeding a network restarts its sequence of masks
    local net = one_op_net({ 1, 64, 64 }, 'dropout', { p = 0.5 }):train():seed(seed)
    net:forward(x)
    net:seed(seed)
    assert_bits_equal(net:forward(x), a[1], 'after reseeding')
  end)

  it('rejects p outside [0, 1)', function()
    for _, p in ipairs { 1, 1.5, -0.1, 0 / 0 } do
      local b = nn.builder { 4 }
      local ok, err = pcall(b.dropout, b, b.input, p)
      assert.is_false(ok)
      assert.matches('dropout: p must be in [0, 1), got', err, 1, true)
    end
  end)
end)

-- ------------------------------------------------------------- softmax

local function row_softmax(xs, log)
  local m = -math.huge
  for _, v in ipairs(xs) do m = math.max(m, v) end
  local z = 0
  for _, v in ipairs(xs) do z = z + math.exp(v - m) end
  local out = {}
  for i, v in ipairs(xs) do out[i] = log and (v - m - math.log(z)) or math.exp(v - m) / z end
  return out
end

describe('softmax and log_softmax', function()
  for _, op in ipairs { 'softmax', 'log_softmax' } do
    it(op .. ' over (N, K): VJP, JVP and VJP tangent', function()
      local r = fdcheck(op, {
        input = { 7 }, batch = 3, seed = 61, scale = 2,
        build = function(b, x) return b:op(op, { x }) end,
      })
      assert.is_true(r.hvp_norm > 0)
    end)

    it(op .. ' over C of (N, C, H, W): VJP, JVP and VJP tangent', function()
      fdcheck(op .. ' NCHW', {
        input = { 4, 3, 2 }, batch = 2, seed = 62, scale = 2,
        build = function(b, x) return b:op(op, { x }) end,
      })
    end)

    it(op .. ' forward matches the closed form, also for huge logits', function()
      local rows = { { 1, 2, 3, -1 }, { 1000, 999, -1000, 0 }, { -500, -501, -502, -503 } }
      local flat, want = {}, {}
      for _, row in ipairs(rows) do
        for _, v in ipairs(row) do flat[#flat + 1] = v end
        for _, v in ipairs(row_softmax(row, op == 'log_softmax')) do want[#want + 1] = v end
      end
      local net = one_op_net({ 4 }, op)
      local y = net:forward(T.from(flat, { 3, 4 }))
      assert.is_true(y:isfinite())
      assert_close(y, want, 2e-7, 1e-30, op)
    end)
  end

  it('log_softmax composed with the class logit gives the gradient e_c - p', function()
    local xs = { 0.5, -1, 2, 0.25 }
    local net = one_op_net({ 4 }, 'log_softmax')
    net:forward(T.from(xs, { 1, 4 }))
    local g = net:backward(T.from({ 0, 0, 1, 0 }, { 1, 4 }))
    local p = row_softmax(xs)
    assert_close(g, { -p[1], -p[2], 1 - p[3], -p[4] }, 1e-6, 1e-8, 'log_softmax gradient')
  end)
end)

-- ------------------------------------------------------------- determinism

describe('thread counts', function()
  after_each(function() moreau.set_num_threads(0) end)

  it('give bit-identical forward, JVP, VJP and VJP tangent for every op of this family', function()
    -- 2 x 8 x 48 x 48 = 36864 entries: above every parallel-loop threshold
    local input = { 8, 48, 48 }
    local shape = { 2, 8, 48, 48 }
    local seed = 71
    local builds = {
      act = function(b, x)
        local h = b:softplus(b:silu(b:tanh(x)), { beta = 2, threshold = 1 })
        return b:relu(b:sigmoid(h))
      end,
      add_mul = function(b, x) return b:mul(b:add(b:tanh(x), x), b:sigmoid(x)) end,
      softmax = function(b, x) return b:log_softmax(b:softmax(x)) end,
      flatten = function(b, x) return b:tanh(b:flatten(b:dropout(x, 0.5))) end,
    }
    if has_op('adaptive_avgpool2d') then
      builds.mul_gate = function(b, x) return b:mul(x, b:sigmoid(b:adaptive_avgpool2d(x, 1))) end
    end
    local x = T.randn(shape, { seed = seed, stream = 1 })
    local v = T.randn(shape, { seed = seed, stream = 2 })
    for name, build in pairs(builds) do
      local net = gc.net { input = input, build = build }
      local out = {}
      for _, threads in ipairs { 1, 3, 8 } do
        moreau.set_num_threads(threads)
        local y, dy = net:jvp(x, v)
        local u = T.randn(y:shape(), { seed = seed, stream = 3 })
        local w = T.randn(y:shape(), { seed = seed, stream = 4 })
        local gx, dgx = net:hvp_backward(u, w)
        out[threads] = { y, dy, gx, dgx }
      end
      for _, threads in ipairs { 3, 8 } do
        for k, what in ipairs { 'y', 'dy', 'gx', 'dgx' } do
          assert_bits_equal(out[1][k], out[threads][k],
            ('%s: %s with 1 and %d threads (seed %d)'):format(name, what, threads, seed))
        end
      end
    end
    -- dropout masks in training mode
    local masks = {}
    for _, threads in ipairs { 1, 8 } do
      moreau.set_num_threads(threads)
      local net = one_op_net(input, 'dropout', { p = 0.5 }):train():seed(seed)
      masks[threads] = net:forward(x)
    end
    assert_bits_equal(masks[1], masks[8], 'dropout mask with 1 and 8 threads (seed ' .. seed .. ')')
  end)
end)
