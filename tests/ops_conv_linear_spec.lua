-- conv2d and linear: forward against a naive reference written from the
-- formula, VJP / JVP / VJP tangent and parameter gradients against central
-- differences, agreement of the three conv code paths (1x1 GEMM, direct
-- grouped loop, im2col + GEMM in batch chunks), bit-identical results across
-- thread counts, and the shape errors.
--
-- Both ops are affine in x and in the parameters, so central differences are
-- exact for any step h up to float32 rounding: h = 0.5 keeps rounding small
-- and the tolerances tight (relative error ‖a−b‖/‖a+b‖ below 1e-4).
package.path = './bindings/?.lua;./bindings/?/init.lua;./tests/?.lua;' .. package.path
local ffi = require 'ffi'
local core = require 'moreau.core'
local T = require 'moreau.tensor'
local nn = require 'moreau.nn'
local gc = require 'helpers.gradcheck'
-- These specs compare thread counts: the team must be the count asked for,
-- not fewer threads because another process is busy (moreau.set_adaptive_threads).
require('moreau').set_adaptive_threads(false)
local C = core.C
local unpack = table.unpack or unpack

local H = 0.5    -- finite-difference step (exact for affine maps)
local TOL = 1e-4 -- relative error bound for every derivative check

-- Parameters drawn from a seeded normal (std 1/sqrt(fan_in)), independent of
-- the builder's own initializer.
local function randn_init(seed, stream, std)
  return function(t)
    t:copy(T.randn(t:shape(), { seed = seed, stream = stream, std = std }))
  end
end

-- A conv2d node with explicit attrs (kernel attr left 0 unless opts.kernel_attr:
-- the kernel then comes from the weight's shape, as moreau.h documents).
-- opts: stride, padding, dilation, groups, bias (default true), seed, kernel_attr.
local function conv(b, name, x, cin, cout, kh, kw, opts)
  opts = opts or {}
  local groups = opts.groups or 1
  local fan_in = (cin / groups) * kh * kw
  local seed = opts.seed or 1
  local params = { b:param(name .. '.weight', { cout, cin / groups, kh, kw }, 'weight',
    randn_init(seed, 100, 1 / math.sqrt(fan_in))) }
  if opts.bias ~= false then
    params[2] = b:param(name .. '.bias', { cout }, 'weight', randn_init(seed, 101, 1))
  end
  local attrs = { stride = opts.stride, padding = opts.padding, dilation = opts.dilation,
    groups = opts.groups }
  if opts.kernel_attr then attrs.kernel = { kh, kw } end
  return b:op('conv2d', { x }, params, attrs, name)
end

local function linear(b, name, x, fin, fout, opts)
  opts = opts or {}
  local seed = opts.seed or 1
  local params = { b:param(name .. '.weight', { fout, fin }, 'weight',
    randn_init(seed, 200, 1 / math.sqrt(fin))) }
  if opts.bias ~= false then
    params[2] = b:param(name .. '.bias', { fout }, 'weight', randn_init(seed, 201, 1))
  end
  return b:op('linear', { x }, params, nil, name)
end

local function pair(v, default)
  if v == nil then return default, default end
  if type(v) == 'number' then return v, v end
  return v[1], v[2]
end

-- The conv from its definition, in double precision:
--   y[n,o,p,q] = b[o] + sum_{c,i,j} W[o,c,i,j] x[n, g(o) Cg + c, p sh - ph + i dh, q sw - pw + j dw]
local function ref_conv(x, w, bias, o)
  local N, Cin, Hh, Ww = x:size(1), x:size(2), x:size(3), x:size(4)
  local K, cg, kh, kw = w:size(1), w:size(2), w:size(3), w:size(4)
  local sh, sw = pair(o.stride, 1)
  local ph, pw = pair(o.padding, 0)
  local dh, dw = pair(o.dilation, 1)
  local G = o.groups or 1
  local kg = K / G
  local Ho = math.floor((Hh + 2 * ph - dh * (kh - 1) - 1) / sh) + 1
  local Wo = math.floor((Ww + 2 * pw - dw * (kw - 1) - 1) / sw) + 1
  local y = T.zeros { N, K, Ho, Wo }
  local xp, wp, yp = x:data(), w:data(), y:data()
  for n = 0, N - 1 do
    for oc = 0, K - 1 do
      local g = math.floor(oc / kg)
      for p = 0, Ho - 1 do
        for q = 0, Wo - 1 do
          local s = bias and bias:data()[oc] or 0
          for c = 0, cg - 1 do
            for i = 0, kh - 1 do
              local hh = p * sh - ph + i * dh
              if hh >= 0 and hh < Hh then
                for j = 0, kw - 1 do
                  local ww = q * sw - pw + j * dw
                  if ww >= 0 and ww < Ww then
                    s = s + wp[((oc * cg + c) * kh + i) * kw + j]
                      * xp[((n * Cin + g * cg + c) * Hh + hh) * Ww + ww]
                  end
                end
              end
            end
          end
          yp[((n * K + oc) * Ho + p) * Wo + q] = s
        end
      end
    end
  end
  return y
end

local function with_seed(seed, msg) return ('%s (seed %d)'):format(msg, seed) end

-- An error message without the 'file:line: ' position that error() prepends.
local function bare(err) return (tostring(err):gsub('^[^:]*:%d+: ', '')) end

-- The conv cases. Each: sample shape, Cout, kernel, attrs; `path` says which
-- code path of conv2d.c the shapes select (for the reader; the C decides).
local conv_cases = {
  { name = '3x3, padding 1, with bias', input = { 3, 6, 6 }, cout = 4, k = { 3, 3 },
    o = { padding = 1 }, path = 'gemm' },
  { name = '3x3, no bias', input = { 3, 5, 5 }, cout = 4, k = { 3, 3 },
    o = { padding = 1, bias = false }, path = 'gemm' },
  { name = 'stride 2, padding 1', input = { 2, 7, 7 }, cout = 3, k = { 3, 3 },
    o = { stride = 2, padding = 1 }, path = 'gemm' },
  { name = 'stride 2 with the kernel attr left 0 (scratch from the output size)',
    input = { 2, 8, 8 }, cout = 3, k = { 2, 2 }, o = { stride = 3 }, no_kernel_attr = true, path = 'gemm' },
  { name = 'dilation 2, padding 2', input = { 2, 7, 7 }, cout = 3, k = { 3, 3 },
    o = { dilation = 2, padding = 2 }, path = 'gemm' },
  { name = 'non-square kernel 2x3, stride (2,1), padding (0,1)', input = { 3, 6, 5 }, cout = 2,
    k = { 2, 3 }, o = { stride = { 2, 1 }, padding = { 0, 1 } }, path = 'gemm' },
  { name = 'non-square kernel 3x1, dilation (1,2)', input = { 2, 6, 7 }, cout = 3, k = { 3, 1 },
    o = { dilation = { 1, 2 } }, path = 'gemm' },
  { name = 'groups 2, 2 channels per group', input = { 4, 5, 5 }, cout = 6, k = { 3, 3 },
    o = { groups = 2, padding = 1 }, path = 'direct' },
  { name = 'groups 2, 5 channels per group', input = { 10, 4, 4 }, cout = 4, k = { 3, 3 },
    o = { groups = 2, padding = 1 }, path = 'gemm' },
  { name = 'depthwise (groups = Cin)', input = { 3, 6, 6 }, cout = 3, k = { 3, 3 },
    o = { groups = 3, padding = 1 }, path = 'direct' },
  { name = 'depthwise with multiplier 2, stride 2, no bias', input = { 3, 7, 7 }, cout = 6,
    k = { 3, 3 }, o = { groups = 3, padding = 1, stride = 2, bias = false }, path = 'direct' },
  { name = 'depthwise, non-square, dilation 2', input = { 2, 7, 6 }, cout = 2, k = { 3, 2 },
    o = { groups = 2, padding = { 2, 1 }, dilation = 2 }, path = 'direct' },
  { name = '1x1', input = { 5, 4, 4 }, cout = 3, k = { 1, 1 }, o = {}, path = '1x1' },
  { name = '1x1, no bias, groups 2', input = { 10, 3, 3 }, cout = 4, k = { 1, 1 },
    o = { groups = 2, bias = false }, path = '1x1' },
  { name = '1x1, groups 5 (2 channels per group)', input = { 10, 3, 3 }, cout = 5, k = { 1, 1 },
    o = { groups = 5 }, path = 'direct' },
  { name = '1x1 stride 2 (im2col)', input = { 3, 5, 5 }, cout = 2, k = { 1, 1 },
    o = { stride = 2 }, path = 'gemm' },
  { name = '1x1 stride 3, kernel attr left 0 (the recovered kernel overestimates: 2x1)',
    input = { 2, 8, 7 }, cout = 3, k = { 1, 1 }, o = { stride = 3 }, no_kernel_attr = true, path = 'gemm' },
  { name = '1x1 with padding 1', input = { 2, 3, 3 }, cout = 2, k = { 1, 1 },
    o = { padding = 1 }, path = 'gemm' },
}

-- Every conv2d spec runs once per backend this build has: oneDNN's kernels
-- (the default when built with libdnnl) and the engine's im2col + OpenBLAS.
local moreau = require 'moreau'
local backends = { 'blas' }
if core.C.mr_set_conv_backend('onednn') == 0 then table.insert(backends, 1, 'onednn') end
local default_backend = backends[1]
assert(core.C.mr_set_conv_backend(default_backend) == 0)

for _, backend in ipairs(backends) do
describe('conv2d [' .. backend .. ' backend]', function()
  before_each(function() moreau.set_conv_backend(backend) end)
  after_each(function() moreau.set_conv_backend(default_backend) end)
  local onednn_before, fallbacks_before
  setup(function() onednn_before, fallbacks_before = moreau.conv_backend_counts() end)

  for ci, case in ipairs(conv_cases) do
    local seed = 1000 + ci
    local function build_net(batch_seed)
      return gc.net {
        input = case.input, seed = seed,
        build = function(b, x)
          local o = {}
          for k, v in pairs(case.o) do o[k] = v end
          o.seed = batch_seed or seed
          o.kernel_attr = not case.no_kernel_attr
          return conv(b, 'conv', x, case.input[1], case.cout, case.k[1], case.k[2], o)
        end,
      }
    end

    describe(case.name .. ' [' .. case.path .. ']', function()
      it('forward matches the definition (batch 3)', function()
        local net = build_net()
        local x = T.randn({ 3, unpack(case.input) }, { seed = seed, stream = 1 })
        local y = net:forward(x)
        local bias = case.o.bias ~= false and net:param('conv.bias') or nil
        local yr = ref_conv(x, net:param('conv.weight'), bias, case.o)
        assert.are.same(yr:shape(), y:shape())
        local e = gc.rel(y, yr)
        assert(e < 1e-6, with_seed(seed, ('forward: relative error %.3g'):format(e)))
      end)

      it('VJP, JVP and VJP tangent match central differences (batch 2)', function()
        local r = gc.check { net = build_net(), batch = 2, seed = seed, h = H }
        gc.assert_ok(r, TOL)
        -- affine: the Hessian vanishes exactly
        assert(r.hvp_norm == 0, with_seed(seed, 'the VJP tangent with dgy = 0 is not 0'))
      end)

      it('weight and bias gradients match central differences (batch 3)', function()
        local net = build_net()
        local errs = gc.check_params(net, { batch = 3, seed = seed, h = H, max_entries = 1000 })
        local n = 0
        for name, e in pairs(errs) do
          n = n + 1
          assert(e < TOL, with_seed(seed, ('%s: relative error %.3g'):format(name, e)))
        end
        assert.are.equal(case.o.bias == false and 1 or 2, n)
      end)
    end)
  end

  it('accumulates parameter gradients (+=) and overwrites the input gradient (=)', function()
    local seed = 77
    local net = gc.net { input = { 3, 5, 5 }, seed = seed,
      build = function(b, x) return conv(b, 'c', x, 3, 4, 3, 3, { padding = 1, seed = seed }) end }
    local x = T.randn({ 2, 3, 5, 5 }, { seed = seed, stream = 1 })
    local u = T.randn({ 2, 4, 5, 5 }, { seed = seed, stream = 2 })
    net:zero_grad()
    net:forward(x)
    local g1 = net:backward(u, { params = true })
    local w1, b1 = net:grad('c.weight'):clone(), net:grad('c.bias'):clone()
    net:forward(x)
    local g2 = net:backward(u, { params = true })
    assert.are.equal(0, g1:max_abs_diff(g2))
    assert(gc.rel(net:grad('c.weight'), w1:clone():mul_(2)) < 1e-6, with_seed(seed, 'weight grad not doubled'))
    assert(gc.rel(net:grad('c.bias'), b1:clone():mul_(2)) < 1e-6, with_seed(seed, 'bias grad not doubled'))
    -- without params = true the parameter gradients are left alone
    net:forward(x)
    net:backward(u)
    assert(gc.rel(net:grad('c.weight'), w1:clone():mul_(2)) < 1e-6, with_seed(seed, 'weight grad touched'))
  end)

  -- Big enough that the im2col path splits the batch into chunks (the scratch
  -- is capped at 2^20 floats; here one sample needs (16*9 + 16) * 48*48 =
  -- 368640, so 2 samples per chunk and a batch of 13 is seven chunks; on the
  -- oneDNN backend the chunks carry the weight gradient).
  describe('a batch split into im2col chunks', function()
    local seed = 4242
    local function make()
      return gc.net { input = { 16, 48, 48 }, seed = seed,
        build = function(b, x) return conv(b, 'c', x, 16, 16, 3, 3, { padding = 1, seed = seed }) end }
    end

    it('gives each sample what it gets alone; parameter gradients sum over samples', function()
      local N = 13
      local net, net1 = make(), make()
      local x = T.randn({ N, 16, 48, 48 }, { seed = seed, stream = 1 })
      local u = T.randn({ N, 16, 48, 48 }, { seed = seed, stream = 2 })
      net:zero_grad()
      local y = net:forward(x)
      local gx = net:backward(u, { params = true })
      local ws, bs = T.zeros { 16, 16, 3, 3 }, T.zeros { 16 }
      for n = 1, N do
        net1:zero_grad()
        local yn = net1:forward(x:select(n))
        local gn = net1:backward(u:select(n), { params = true })
        assert(gc.rel(yn, y:select(n)) < 1e-6, with_seed(seed, 'forward of item ' .. n))
        assert(gc.rel(gn, gx:select(n)) < 1e-6, with_seed(seed, 'input gradient of item ' .. n))
        ws:add_(net1:grad('c.weight'))
        bs:add_(net1:grad('c.bias'))
      end
      assert(gc.rel(ws, net:grad('c.weight')) < 1e-5, with_seed(seed, 'weight gradient'))
      assert(gc.rel(bs, net:grad('c.bias')) < 1e-5, with_seed(seed, 'bias gradient'))
    end)
  end)

  -- Every path, forward, both reverse passes and the parameter gradients,
  -- bit for bit with 1 and with 3 threads.
  it('gives the same bits for every thread count', function()
    local seed = 99
    local cases = {
      { input = { 16, 64, 64 }, cout = 16, k = 3, o = { padding = 1 } },          -- im2col, one sample per chunk
      { input = { 8, 24, 24 }, cout = 8, k = 3, o = { groups = 8, padding = 1 } }, -- depthwise
      { input = { 8, 24, 24 }, cout = 12, k = 1, o = {} },                        -- 1x1
      { input = { 64, 10, 10 }, cout = 128, k = 3, o = { stride = 2, padding = 1 } }, -- blocked (oneDNN)
    }
    local before = C.mr_get_num_threads()
    finally(function() C.mr_set_num_threads(before) end)
    local function run(case, threads)
      C.mr_set_num_threads(threads)
      local N = 9
      local net = gc.net { input = case.input, seed = seed,
        build = function(b, x) return conv(b, 'c', x, case.input[1], case.cout, case.k, case.k, case.o) end }
      local x = T.randn({ N, unpack(case.input) }, { seed = seed, stream = 1 })
      local y = net:forward(x)
      local u = T.randn(y:shape(), { seed = seed, stream = 2 })
      net:zero_grad()
      local gx = net:backward(u, { params = true })
      local _, dy = net:jvp(x, x)
      local _, dgx = net:hvp_backward(u, u)
      return { y, gx, dy, dgx, net:grad('c.weight'):clone(), net:grad('c.bias'):clone() }
    end
    for i, case in ipairs(cases) do
      local a = run(case, 1)
      for _, threads in ipairs { 2, 3 } do
        local b = run(case, threads)
        for k = 1, #a do
          assert(a[k]:max_abs_diff(b[k]) == 0,
            with_seed(seed, ('case %d, result %d differs between 1 and %d threads'):format(i, k, threads)))
        end
      end
    end
  end)

  it('also builds through the nn DSL (nn.Conv2d) and names parameters as PyTorch', function()
    local net = nn.build(nn.Sequential { nn.Conv2d(3, 4, { 3, 2 }, { stride = 2, padding = 1 }) },
      { 3, 8, 8 }, { seed = 3 })
    assert.are.same({ 4, 4, 5 }, net:output_shape()) -- Ho = (8 + 2 - 3) // 2 + 1, Wo = (8 + 2 - 2) // 2 + 1
    assert.are.same({ 4, 3, 3, 2 }, net:param('0.weight'):shape())
    assert.are.same({ 4 }, net:param('0.bias'):shape())
    local x = T.randn({ 2, 3, 8, 8 }, { seed = 3, stream = 1 })
    local yr = ref_conv(x, net:param('0.weight'), net:param('0.bias'), { stride = 2, padding = 1 })
    assert(gc.rel(net:forward(x), yr) < 1e-6)
  end)

  -- Curvature comes from the activations; the conv and linear VJP tangents
  -- must carry it through (dgx = conv_transpose(dgy) at every layer).
  it('in a small network with curvature: VJP, JVP and the exact HVP', function()
    local seed = 515
    local r = gc.check { input = { 3, 6, 6 }, batch = 2, seed = seed, h = 1e-2,
      build = function(b, x)
        local h = conv(b, 'c1', x, 3, 4, 3, 3, { padding = 1, seed = seed })
        h = b:softplus(h, { beta = 2 })
        h = conv(b, 'dw', h, 4, 4, 3, 3, { groups = 4, stride = 2, padding = 1, seed = seed + 1 })
        h = b:tanh(h)
        h = conv(b, 'pw', h, 4, 6, 1, 1, { seed = seed + 2 })
        h = b:softplus(h)
        h = b:flatten(h)
        return linear(b, 'fc', h, 6 * 3 * 3, 5, { seed = seed + 3 })
      end }
    gc.assert_ok(r, 2e-3)
    assert(r.hvp_norm > 0, with_seed(seed, 'the HVP vanished'))
  end)

  describe('shape errors', function()
    local function try(input, cin, cout, kh, kw, attrs, wshape)
      local b = nn.builder(input)
      local w = b:param('c.weight', wshape or { cout, cin / ((attrs or {}).groups or 1), kh, kw }, 'weight')
      return pcall(b.op, b, 'conv2d', { b.input }, { w }, attrs, 'c')
    end
    local function expect(msg, ...)
      local ok, err = try(...)
      assert.is_false(ok)
      assert.are.equal(msg, bare(err))
    end

    it('wrong channel count', function()
      expect('c: conv2d: input has 3 channels, weight expects 4 (weight 8x4x3x3)', { 3, 8, 8 }, 4, 8, 3, 3)
    end)
    it('wrong channel count with groups', function()
      expect('c: conv2d: input has 6 channels, weight expects 2 per group x 2 groups = 4 (weight 4x2x3x3)',
        { 6, 8, 8 }, nil, nil, nil, nil, { groups = 2 }, { 4, 2, 3, 3 })
    end)
    it('groups not dividing the input channels', function()
      expect('c: conv2d: groups 4 does not divide the 6 input channels', { 6, 8, 8 }, nil, nil, nil, nil,
        { groups = 4 }, { 8, 2, 3, 3 })
    end)
    it('groups not dividing the output channels', function()
      expect('c: conv2d: groups 2 does not divide the 5 output channels (weight 5x2x3x3)', { 4, 8, 8 },
        nil, nil, nil, nil, { groups = 2 }, { 5, 2, 3, 3 })
    end)
    it('negative groups, stride, dilation and padding', function()
      expect('c: conv2d: groups must be positive, got -1', { 4, 8, 8 }, 4, 4, 3, 3, { groups = -1 },
        { 4, 4, 3, 3 })
      expect('c: conv2d: stride must be positive, got -2x-2', { 4, 8, 8 }, 4, 4, 3, 3, { stride = -2 })
      expect('c: conv2d: dilation must be positive, got 1x-1', { 4, 8, 8 }, 4, 4, 3, 3, { dilation = { 1, -1 } })
      expect('c: conv2d: padding must be >= 0, got -1x0', { 4, 8, 8 }, 4, 4, 3, 3, { padding = { -1, 0 } })
    end)
    it('kernel larger than the padded input', function()
      expect('c: conv2d: kernel 5x5 (dilated 5x5) is larger than the padded input 4x4 '
        .. '(input 4x4, padding 0x0)', { 2, 4, 4 }, 2, 3, 5, 5)
      expect('c: conv2d: kernel 3x3 (dilated 7x7) is larger than the padded input 8x6 '
        .. '(input 6x4, padding 1x1)', { 2, 6, 4 }, 2, 3, 3, 3, { dilation = 3, padding = 1 })
    end)
    it('kernel attribute not matching the weight', function()
      expect('c: conv2d: kernel 3x3 does not match weight 4x4x5x5', { 4, 8, 8 }, 4, 4, 5, 5, { kernel = 3 })
    end)
    it('weight that is not 4-D, input that is not (C, H, W), bad bias', function()
      expect('c: conv2d: weight must be 4-D (Cout, Cin/groups, kh, kw), got 4x36', { 4, 8, 8 }, nil, nil,
        nil, nil, nil, { 4, 36 })
      expect('c: conv2d: input samples must be (C, H, W), got 4x8', { 4, 8 }, 4, 4, 3, 3)
      local b = nn.builder { 4, 8, 8 }
      local w = b:param('c.weight', { 4, 4, 3, 3 }, 'weight')
      local bb = b:param('c.bias', { 5 }, 'weight')
      local ok, err = pcall(b.op, b, 'conv2d', { b.input }, { w, bb }, nil, 'c')
      assert.is_false(ok)
      assert.are.equal('c: conv2d: bias has shape 5, expected 4 (Cout)', bare(err))
    end)
  end)

  -- Last in the block: every pass above ran where this block says it ran.
  -- (oneDNN takes every geometry of the suite: strided, dilated, grouped,
  -- depthwise, negative right padding; a silent fallback would hide a bug.)
  it('ran every pass on this backend, with no fallback', function()
    local onednn, fallbacks = moreau.conv_backend_counts()
    assert.are.equal(fallbacks_before, fallbacks)
    if backend == 'onednn' then
      assert(onednn > onednn_before + 100, ('only %d oneDNN passes'):format(onednn - onednn_before))
    else
      assert.are.equal(onednn_before, onednn)
    end
  end)
end)
end

describe('conv2d backends', function()
  after_each(function() moreau.set_conv_backend(default_backend) end)

  it('names the backend in use and refuses unknown ones', function()
    assert.are.equal(default_backend, moreau.get_conv_backend())
    assert.truthy(moreau.backend_info():find('conv2d: ' .. default_backend, 1, true))
    local ok, err = pcall(moreau.set_conv_backend, 'cudnn')
    assert.is_false(ok)
    assert.truthy(tostring(err):find("unknown conv backend 'cudnn' (expected 'onednn' or 'blas')", 1, true))
    assert.are.equal(default_backend, moreau.get_conv_backend())
  end)

  -- oneDNN and the engine's path sum in different orders: they agree to
  -- float32 rounding, on layer shapes where oneDNN picks its blocked kernels
  -- (channels a multiple of 16) and where it does not.
  it('agree to float32 rounding on forward, input gradient, JVP and HVP', function()
    if #backends < 2 then
      pending('built without oneDNN')
      return
    end
    local seed = 2024
    local cases = {
      { input = { 64, 16, 16 }, cout = 64, k = 3, o = { padding = 1 } },
      { input = { 64, 16, 16 }, cout = 128, k = 3, o = { stride = 2, padding = 1 } },
      { input = { 64, 9, 9 }, cout = 32, k = 1, o = { stride = 2, bias = false } },
      { input = { 3, 32, 32 }, cout = 16, k = 3, o = { padding = 1 } },
      { input = { 32, 12, 12 }, cout = 32, k = 3, o = { groups = 32, padding = 1 } },
      { input = { 16, 11, 11 }, cout = 16, k = 3, o = { dilation = 2, padding = 1, groups = 2 } },
    }
    local function run(case, which)
      moreau.set_conv_backend(which)
      local net = gc.net { input = case.input, seed = seed,
        build = function(b, x) return conv(b, 'c', x, case.input[1], case.cout, case.k, case.k, case.o) end }
      local x = T.randn({ 5, unpack(case.input) }, { seed = seed, stream = 1 })
      local y = net:forward(x)
      local u = T.randn(y:shape(), { seed = seed, stream = 2 })
      local gx = net:backward(u)
      local _, dy = net:jvp(x, x)
      local _, dgx = net:hvp_backward(u, u)
      return { y:clone(), gx:clone(), dy:clone(), dgx:clone() }
    end
    for i, case in ipairs(cases) do
      local a, b = run(case, 'onednn'), run(case, 'blas')
      if i == 1 then -- proof that two different kernels ran: the last bits differ
        assert(a[1]:max_abs_diff(b[1]) > 0, 'forward: identical bits: was oneDNN used?')
        assert(a[2]:max_abs_diff(b[2]) > 0, 'input gradient: identical bits: was oneDNN used?')
      end
      for k = 1, #a do
        local e = gc.rel(a[k], b[k])
        assert(e < 1e-6, with_seed(seed, ('case %d, result %d: relative error %.3g'):format(i, k, e)))
      end
    end
  end)
end)

describe('linear', function()
  local cases = {
    { name = 'with bias, batch 3', fin = 7, fout = 5, batch = 3 },
    { name = 'no bias, batch 4', fin = 6, fout = 4, batch = 4, bias = false },
    { name = 'one output, batch 1', fin = 9, fout = 1, batch = 1 },
  }
  for ci, case in ipairs(cases) do
    local seed = 2000 + ci
    local function build_net()
      return gc.net { input = { case.fin }, seed = seed,
        build = function(b, x) return linear(b, 'fc', x, case.fin, case.fout, { bias = case.bias, seed = seed }) end }
    end
    describe(case.name, function()
      it('forward matches y = x W^T + b', function()
        local net = build_net()
        local x = T.randn({ case.batch, case.fin }, { seed = seed, stream = 1 })
        local y = net:forward(x)
        assert.are.same({ case.batch, case.fout }, y:shape())
        local w = net:param('fc.weight')
        local bias = case.bias ~= false and net:param('fc.bias') or nil
        local yr = T.zeros { case.batch, case.fout }
        for n = 1, case.batch do
          for o = 1, case.fout do
            local s = bias and bias:get(o) or 0
            for i = 1, case.fin do s = s + w:get(o, i) * x:get(n, i) end
            yr:set(s, n, o)
          end
        end
        local e = gc.rel(y, yr)
        assert(e < 1e-6, with_seed(seed, ('forward: relative error %.3g'):format(e)))
      end)
      it('VJP, JVP and VJP tangent match central differences', function()
        local r = gc.check { net = build_net(), batch = case.batch, seed = seed, h = H }
        gc.assert_ok(r, TOL)
        assert(r.hvp_norm == 0, with_seed(seed, 'the VJP tangent with dgy = 0 is not 0'))
      end)
      it('weight and bias gradients match central differences', function()
        local errs = gc.check_params(build_net(), { batch = case.batch, seed = seed, h = H, max_entries = 1000 })
        local n = 0
        for name, e in pairs(errs) do
          n = n + 1
          assert(e < TOL, with_seed(seed, ('%s: relative error %.3g'):format(name, e)))
        end
        assert.are.equal(case.bias == false and 1 or 2, n)
      end)
    end)
  end

  it('gives the same bits for every thread count', function()
    local seed = 31
    local before = C.mr_get_num_threads()
    finally(function() C.mr_set_num_threads(before) end)
    local function run(threads)
      C.mr_set_num_threads(threads)
      local net = gc.net { input = { 300 }, seed = seed,
        build = function(b, x) return linear(b, 'fc', x, 300, 200, { seed = seed }) end }
      local x = T.randn({ 64, 300 }, { seed = seed, stream = 1 })
      local y = net:forward(x)
      local u = T.randn(y:shape(), { seed = seed, stream = 2 })
      net:zero_grad()
      local gx = net:backward(u, { params = true })
      return { y, gx, net:grad('fc.weight'):clone(), net:grad('fc.bias'):clone() }
    end
    local a = run(1)
    for _, threads in ipairs { 2, 3 } do
      local b = run(threads)
      for k = 1, #a do
        assert(a[k]:max_abs_diff(b[k]) == 0,
          with_seed(seed, ('result %d differs between 1 and %d threads'):format(k, threads)))
      end
    end
  end)

  describe('shape errors', function()
    local function expect(msg, input, wshape, bshape)
      local b = nn.builder(input)
      local params = { b:param('fc.weight', wshape, 'weight') }
      if bshape then params[2] = b:param('fc.bias', bshape, 'weight') end
      local ok, err = pcall(b.op, b, 'linear', { b.input }, params, nil, 'fc')
      assert.is_false(ok)
      assert.are.equal(msg, bare(err))
    end
    it('wrong number of features', function()
      expect('fc: linear: input has 6 features, weight expects 5 (weight 3x5)', { 6 }, { 3, 5 })
    end)
    it('image samples must be flattened first', function()
      expect('fc: linear: input samples must be 1-D (features), got 2x3x3; flatten them first',
        { 2, 3, 3 }, { 4, 18 })
    end)
    it('weight not 2-D, bias of the wrong length', function()
      expect('fc: linear: weight must be 2-D (out, in), got 30', { 6 }, { 30 })
      expect('fc: linear: bias has shape 4, expected 3 (weight 3x6)', { 6 }, { 3, 6 }, { 4 })
    end)
  end)
end)
