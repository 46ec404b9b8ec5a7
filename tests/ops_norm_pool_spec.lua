-- Batch normalization and pooling ops (engine/src/ops/batchnorm.c, pool.c):
-- forward values against hand-computed ones and a naive Lua reference,
-- VJP / JVP / VJP tangent against central finite differences (helpers.gradcheck),
-- batchnorm's training mode (batch statistics, running-stat updates and the
-- full batch-statistics gradient) against values computed in Lua and finite
-- differences of the training-mode forward, shape errors, and bit-identical
-- results across thread counts.
local moreau = require 'moreau'
local T = require 'moreau.tensor'
local ffi = require 'ffi'
local nn = require 'moreau.nn'
local gc = require 'helpers.gradcheck'
-- These specs compare thread counts: the team must be the count asked for,
-- not fewer threads because another process is busy (moreau.set_adaptive_threads).
require('moreau').set_adaptive_threads(false)

-- Relative error ‖a−b‖/‖a+b‖ between two flat Lua arrays (or tensors).
local function rel_list(a, b)
  local num, den = 0, 0
  for i = 1, #a do
    num = num + (a[i] - b[i]) ^ 2
    den = den + (a[i] + b[i]) ^ 2
  end
  if den == 0 then return math.sqrt(num) end
  return math.sqrt(num / den)
end

local function assert_close(got, want, tol, what)
  if T.is(got) then got = got:totable() end
  if T.is(want) then want = want:totable() end
  assert(#got == #want, ('%s: %d values, expected %d'):format(what, #got, #want))
  for i = 1, #want do
    local d = math.abs(got[i] - want[i])
    if not (d <= tol * math.max(1, math.abs(want[i]))) then
      error(('%s: entry %d is %.9g, expected %.9g'):format(what, i, got[i], want[i]), 2)
    end
  end
end

local function assert_small(err, tol, what, seed)
  if not (err <= tol) then
    error(('%s: relative error %.3g > %.3g (seed %s)'):format(what, err, tol, tostring(seed)), 2)
  end
end

local function iota(n, scale, offset)
  local t = {}
  for i = 1, n do t[i] = (i - 1) * (scale or 1) + (offset or 1) end
  return t
end

-- A one-op network over samples of `shape`.
local function one_op(shape, build, seed)
  local b = nn.builder(shape, { seed = seed or 0 })
  local out = build(b, b.input)
  return b:build(out)
end

-- x with pairwise distinct entries (a seeded shuffle of an arithmetic sequence
-- with spacing `gap`), so that a max-pool argmax does not move under the
-- finite-difference steps.
local function distinct(shape, seed, gap)
  local r = T.rand(shape, { seed = seed, stream = 9 })
  local n, rp = r:numel(), r:data()
  local idx = {}
  for i = 1, n do idx[i] = i - 1 end
  table.sort(idx, function(a, b) return rp[a] < rp[b] end)
  local x = T.zeros(shape)
  local p = x:data()
  for rank, i in ipairs(idx) do p[i] = (rank - 1 - n / 2) * gap end
  return x
end

-- Catches the error of f and returns its message.
local function error_of(f)
  local ok, msg = pcall(f)
  assert(not ok, 'expected an error')
  return tostring(msg)
end

local function assert_mentions(msg, text)
  if not msg:find(text, 1, true) then
    error(("error message %q does not mention %q"):format(msg, text), 2)
  end
end

-- ------------------------------------------------------- Lua references

-- PyTorch's pooling output size (dilation 1).
local function out_size(n, k, s, p, ceil)
  local o = math.floor((n + 2 * p - k + (ceil and (s - 1) or 0)) / s) + 1
  if ceil and (o - 1) * s >= n + p then o = o - 1 end
  return o
end

-- Naive pooling of a (N, C, H, W) tensor, walking every window position in
-- padded coordinates. kind: 'max' | 'avg'. RETURN: flat array, oh, ow.
local function ref_pool(x, kind, k, s, p, ceil, include_pad)
  local N, C, H, W = x:size(1), x:size(2), x:size(3), x:size(4)
  local OH, OW = out_size(H, k, s, p, ceil), out_size(W, k, s, p, ceil)
  local out = {}
  for n = 1, N do
    for c = 1, C do
      for oh = 0, OH - 1 do
        for ow = 0, OW - 1 do
          local best, sum, inside, padded = -math.huge, 0, 0, 0
          for i = 0, k - 1 do
            for j = 0, k - 1 do
              local h, w = oh * s - p + i, ow * s - p + j
              if h >= 0 and h < H and w >= 0 and w < W then
                local v = x:get(n, c, h + 1, w + 1)
                if v > best then best = v end
                sum, inside = sum + v, inside + 1
              end
              -- positions in the padding count for count_include_pad; ones
              -- past the padding (ceil_mode's last window) never do
              if h < H + p and w < W + p then padded = padded + 1 end
            end
          end
          out[#out + 1] = kind == 'max' and best or sum / (include_pad and padded or inside)
        end
      end
    end
  end
  return out, OH, OW
end

-- Naive adaptive average pooling: bins [floor(i H / oh), ceil((i+1) H / oh)).
local function ref_adaptive(x, oh, ow)
  local N, C, H, W = x:size(1), x:size(2), x:size(3), x:size(4)
  local out = {}
  for n = 1, N do
    for c = 1, C do
      for i = 0, oh - 1 do
        local h0, h1 = math.floor(i * H / oh), math.ceil((i + 1) * H / oh)
        for j = 0, ow - 1 do
          local w0, w1 = math.floor(j * W / ow), math.ceil((j + 1) * W / ow)
          local sum = 0
          for h = h0, h1 - 1 do
            for w = w0, w1 - 1 do sum = sum + x:get(n, c, h + 1, w + 1) end
          end
          out[#out + 1] = sum / ((h1 - h0) * (w1 - w0))
        end
      end
    end
  end
  return out
end

-- Batchnorm in training mode, in double: y, batch mean, biased and unbiased
-- variance per channel, for x (N, C, ...).
local function ref_bn_train(x, w, b, eps)
  local N, C = x:size(1), x:size(2)
  local S = x:numel() / (N * C)
  local p = x:data()
  local mean, var, uvar, y = {}, {}, {}, {}
  for c = 0, C - 1 do
    local s, ss = 0, 0
    for n = 0, N - 1 do
      for i = 0, S - 1 do s = s + p[(n * C + c) * S + i] end
    end
    local mu = s / (N * S)
    for n = 0, N - 1 do
      for i = 0, S - 1 do ss = ss + (p[(n * C + c) * S + i] - mu) ^ 2 end
    end
    mean[c + 1], var[c + 1], uvar[c + 1] = mu, ss / (N * S), ss / (N * S - 1)
  end
  for n = 0, N - 1 do
    for c = 0, C - 1 do
      for i = 0, S - 1 do
        local j = (n * C + c) * S + i
        y[j + 1] = (p[j] - mean[c + 1]) / math.sqrt(var[c + 1] + eps) * w[c + 1] + b[c + 1]
      end
    end
  end
  return y, mean, var, uvar
end

-- A batchnorm2d node with parameters bn.weight, bn.bias, bn.running_mean,
-- bn.running_var (zero-filled here; bn_net sets them), params of `nparam`
-- channels (default: the input's).
local function add_bn(b, x, C, opts, nparam)
  opts = opts or {}
  local params = {}
  for i, name in ipairs { 'weight', 'bias', 'running_mean', 'running_var' } do
    params[i] = b:param('bn.' .. name, { nparam or C }, i <= 2 and 'weight' or 'buffer')
  end
  return b:op('batchnorm2d', { x }, params, { eps = opts.eps, momentum = opts.momentum }, 'bn')
end

-- A batchnorm network with seeded, non-trivial weight, bias and running stats.
local function bn_net(shape, seed, opts)
  local C = shape[1]
  local net = one_op(shape, function(b, x) return add_bn(b, x, C, opts) end, seed)
  local r = T.randn({ 4, C }, { seed = seed, stream = 50 }):totable()
  local wt, bs = net:param('bn.weight'):data(), net:param('bn.bias'):data()
  local rm, rv = net:param('bn.running_mean'):data(), net:param('bn.running_var'):data()
  for c = 0, C - 1 do
    wt[c] = 1 + 0.5 * r[c + 1]
    bs[c] = r[C + c + 1]
    rm[c] = 0.3 * r[2 * C + c + 1]
    rv[c] = 0.5 + math.abs(r[3 * C + c + 1])
  end
  return net
end

-- ------------------------------------------------------------ batchnorm

describe('batchnorm2d', function()
  it('inference: y = (x - running_mean)/sqrt(running_var + eps) * w + b', function()
    local net = bn_net({ 2, 2, 2 }, 3, { eps = 1e-3 })
    local x = T.randn({ 2, 2, 2, 2 }, { seed = 3, stream = 1 })
    local y = net:forward(x)
    local w, b = net:param('bn.weight'):totable(), net:param('bn.bias'):totable()
    local rm, rv = net:param('bn.running_mean'):totable(), net:param('bn.running_var'):totable()
    local want = {}
    for n = 1, 2 do
      for c = 1, 2 do
        for h = 1, 2 do
          for ww = 1, 2 do
            want[#want + 1] = (x:get(n, c, h, ww) - rm[c]) / math.sqrt(rv[c] + 1e-3) * w[c] + b[c]
          end
        end
      end
    end
    assert_close(y, want, 1e-6, 'batchnorm inference (seed 3)')
    -- inference leaves the running statistics alone
    assert_close(net:param('bn.running_mean'), rm, 0, 'running_mean')
    assert_close(net:param('bn.running_var'), rv, 0, 'running_var')
  end)

  it('inference: VJP, JVP and VJP tangent match finite differences, (N, C, H, W), (N, C, L), (N, C)', function()
    for _, shape in ipairs { { 3, 4, 4 }, { 3, 5 }, { 5 } } do
      local seed = 11
      local net = bn_net(shape, seed)
      local r = gc.check { net = net, batch = 3, seed = seed }
      gc.assert_ok(r, 1e-3)
      local errs = gc.check_params(net, { batch = 3, seed = seed })
      assert_small(errs['bn.weight'], 1e-3, 'inference weight gradient', seed)
      assert_small(errs['bn.bias'], 1e-3, 'inference bias gradient', seed)
    end
  end)

  it('training: batch statistics, and running stats updated as PyTorch (unbiased var)', function()
    for _, case in ipairs { { shape = { 3, 2, 3 }, N = 2, mom = nil }, { shape = { 4 }, N = 5, mom = 0.25 } } do
      local seed = 21
      local C = case.shape[1]
      local net = bn_net(case.shape, seed, { momentum = case.mom })
      local mom = case.mom or 0.1
      local s = { case.N }
      for _, d in ipairs(case.shape) do s[#s + 1] = d end
      local w, b = net:param('bn.weight'):totable(), net:param('bn.bias'):totable()
      local rm, rv = net:param('bn.running_mean'):totable(), net:param('bn.running_var'):totable()
      net:train()
      for step = 1, 2 do
        local x = T.randn(s, { seed = seed, stream = step, mean = 0.5, std = 2 })
        local y = net:forward(x)
        local want, mean, _, uvar = ref_bn_train(x, w, b, 1e-5)
        assert_close(y, want, 2e-5, ('training forward, step %d (seed %d)'):format(step, seed))
        for c = 1, C do
          rm[c] = (1 - mom) * rm[c] + mom * mean[c]
          rv[c] = (1 - mom) * rv[c] + mom * uvar[c]
        end
        assert_close(net:param('bn.running_mean'), rm, 1e-6, 'running_mean, step ' .. step)
        assert_close(net:param('bn.running_var'), rv, 1e-6, 'running_var, step ' .. step)
      end
      -- back in inference mode the updated running statistics are used
      net:eval()
      local x = T.randn(s, { seed = seed, stream = 7 })
      local y = net:forward(x):totable()
      local p = x:data()
      local S = x:numel() / (case.N * C)
      for j = 0, x:numel() - 1 do
        local c = math.floor(j / S) % C + 1
        local want = (p[j] - rm[c]) / math.sqrt(rv[c] + 1e-5) * w[c] + b[c]
        assert(math.abs(y[j + 1] - want) < 1e-5 * math.max(1, math.abs(want)),
          ('inference after training, entry %d (seed %d)'):format(j, seed))
      end
    end
  end)

  it('training: input, weight and bias gradients match finite differences of the training forward', function()
    for _, case in ipairs { { shape = { 3, 3, 3 }, N = 2 }, { shape = { 4 }, N = 6 }, { shape = { 2, 2, 3 }, N = 1 } } do
      local seed = 31
      local h = 1e-2
      local net = bn_net(case.shape, seed)
      local s = { case.N }
      for _, d in ipairs(case.shape) do s[#s + 1] = d end
      local x = T.randn(s, { seed = seed, stream = 1 })
      net:train()
      local y = net:forward(x)
      local u = T.randn(y:shape(), { seed = seed, stream = 2 })
      net:zero_grad()
      local gx = net:backward(u, { params = true })
      local gw, gb = net:grad('bn.weight'):totable(), net:grad('bn.bias'):totable()
      -- The running statistics move on every training forward; the training
      -- output does not depend on them, but keep them fixed anyway so the
      -- check runs on exactly the network that produced the gradients.
      local rm, rv = net:param('bn.running_mean'), net:param('bn.running_var')
      local rm0, rv0 = rm:clone(), rv:clone()
      local function f(xx)
        local v = net:forward(xx):dot(u)
        rm:copy(rm0)
        rv:copy(rv0)
        return v
      end
      -- input gradient, coordinate by coordinate
      local fd = {}
      local xp = x:clone()
      local p = xp:data()
      for i = 0, x:numel() - 1 do
        local x0 = p[i]
        p[i] = x0 + h
        local fp = f(xp)
        p[i] = x0 - h
        local fm = f(xp)
        p[i] = x0
        fd[i + 1] = (fp - fm) / (2 * h)
      end
      assert_small(rel_list(gx:totable(), fd), 2e-3, 'training input gradient', seed)
      -- the batch-statistics gradient sums to zero over each channel
      local C, S = case.shape[1], x:numel() / (case.N * case.shape[1])
      local gp = gx:data()
      for c = 0, C - 1 do
        local sum, mag = 0, 0
        for n = 0, case.N - 1 do
          for i = 0, S - 1 do
            sum = sum + gp[(n * C + c) * S + i]
            mag = mag + math.abs(gp[(n * C + c) * S + i])
          end
        end
        assert(math.abs(sum) <= 1e-5 * math.max(1, mag), ('channel %d input gradient sums to %g (seed %d)'):format(c, sum, seed))
      end
      -- weight and bias gradients
      for _, pw in ipairs { { 'bn.weight', gw }, { 'bn.bias', gb } } do
        local t = net:param(pw[1])
        local tp = t:data()
        local fdw = {}
        for c = 0, t:numel() - 1 do
          local w0 = tp[c]
          tp[c] = w0 + h
          local fp = f(x)
          tp[c] = w0 - h
          local fm = f(x)
          tp[c] = w0
          fdw[c + 1] = (fp - fm) / (2 * h)
        end
        assert_small(rel_list(pw[2], fdw), 2e-3, 'training ' .. pw[1] .. ' gradient', seed)
      end
      net:eval()
    end
  end)

  it('training: parameter gradients accumulate (+=)', function()
    local seed = 41
    local net = bn_net({ 2, 3, 3 }, seed)
    net:train()
    local x = T.randn({ 2, 2, 3, 3 }, { seed = seed, stream = 1 })
    local u = T.randn({ 2, 2, 3, 3 }, { seed = seed, stream = 2 })
    net:zero_grad()
    net:forward(x)
    net:backward(u, { params = true })
    local once = net:grad('bn.weight'):totable()
    net:forward(x)
    net:backward(u, { params = true })
    local twice = net:grad('bn.weight'):totable()
    for i = 1, #once do once[i] = 2 * once[i] end
    assert_close(twice, once, 1e-6, 'accumulated weight gradient')
  end)

  it('gives bit-identical results for every thread count', function()
    local seed = 51
    local shape = { 8, 16, 16 } -- 32 x 8 x 16 x 16 entries: the parallel loops run
    local results = {}
    for _, threads in ipairs { 1, 3 } do
      moreau.set_num_threads(threads)
      local net = bn_net(shape, seed)
      net:train()
      local x = T.randn({ 32, 8, 16, 16 }, { seed = seed, stream = 1 })
      local y = net:forward(x)
      net:zero_grad()
      local gx = net:backward(y, { params = true })
      results[threads] = { y = y, gx = gx, gw = net:grad('bn.weight'):clone(),
        rv = net:param('bn.running_var'):clone() }
    end
    moreau.set_num_threads(0)
    for _, k in ipairs { 'y', 'gx', 'gw', 'rv' } do
      local a, b = results[1][k]:data(), results[3][k]:data()
      for i = 0, results[1][k]:numel() - 1 do
        assert(a[i] == b[i], ('%s[%d] differs between 1 and 3 threads (seed %d)'):format(k, i, seed))
      end
    end
  end)

  it('names the shapes when the channels do not match', function()
    local msg = error_of(function()
      one_op({ 16, 4, 4 }, function(b, x) return add_bn(b, x, 16, nil, 8) end)
    end)
    assert_mentions(msg, 'batchnorm2d: input has 16 channels, weight has 8')
  end)
end)

-- -------------------------------------------------------------- maxpool

describe('maxpool2d', function()
  local x16 = T.from(iota(16), { 1, 1, 4, 4 })
  local x25 = T.from(iota(25), { 1, 1, 5, 5 })

  local function maxpool(x, k, opts)
    local s = x:shape()
    local net = one_op({ s[2], s[3], s[4] }, function(b, h) return b:maxpool2d(h, k, opts) end)
    return net:forward(x), net
  end

  it('forward values by hand', function()
    assert_close(maxpool(x16, 2), { 6, 8, 14, 16 }, 0, 'k2')
    assert_close(maxpool(x16, 3, { stride = 2, padding = 1 }), { 6, 8, 14, 16 }, 0, 'k3 s2 p1')
    assert_close(maxpool(x25, 2, { ceil_mode = true }), { 7, 9, 10, 17, 19, 20, 22, 24, 25 }, 0, 'k2 ceil')
    -- 5x5, k2 s2 p1 ceil: a fourth window would start in the right padding,
    -- which PyTorch drops: 3x3, not 4x4
    local y = maxpool(x25, 2, { padding = 1, ceil_mode = true })
    assert.are.same({ 1, 1, 3, 3 }, y:shape())
    assert_close(y, { 1, 3, 5, 11, 13, 15, 21, 23, 25 }, 0, 'k2 p1 ceil')
    -- negative inputs: the padding is -inf, not 0
    local neg = T.from(iota(16, -1, -1), { 1, 1, 4, 4 })
    assert_close(maxpool(neg, 3, { stride = 2, padding = 1 }), { -1, -2, -5, -6 }, 0, 'padding is -inf')
  end)

  it('matches a naive reference on random inputs', function()
    local seed = 61
    for _, cfg in ipairs {
      { 3, 2, 1, false }, { 3, 2, 1, true }, { 2, 1, 0, false }, { 3, 3, 0, true }, { 2, 2, 1, true }, { 4, 3, 2, true },
    } do
      local k, s, p, ceil = cfg[1], cfg[2], cfg[3], cfg[4]
      local x = T.randn({ 2, 3, 7, 6 }, { seed = seed, stream = k * 100 + s * 10 + p })
      local y = maxpool(x, k, { stride = s, padding = p, ceil_mode = ceil })
      local want, oh, ow = ref_pool(x, 'max', k, s, p, ceil)
      assert.are.same({ 2, 3, oh, ow }, y:shape())
      assert_close(y, want, 0, ('maxpool k%d s%d p%d ceil=%s (seed %d)'):format(k, s, p, tostring(ceil), seed))
    end
  end)

  it('routes the gradient to the first maximum in row-major window order', function()
    local x = T.from({ 0, 5, 5, 1, 7, 7, 7, 7 }, { 2, 1, 2, 2 })
    local _, net = maxpool(x, 2)
    local gx = net:backward(T.from({ 2, 3 }, { 2, 1, 1, 1 }))
    assert_close(gx, { 0, 2, 0, 0, 3, 0, 0, 0 }, 0, 'ties')
    -- overlapping windows (stride < kernel) add up at a shared argmax
    local _, net2 = maxpool(x16, 3, { stride = 1 })
    local g = net2:backward(T.from({ 1, 2, 3, 4 }, { 1, 1, 2, 2 }))
    local want = iota(16, 0, 0)
    want[11], want[12], want[15], want[16] = 1, 2, 3, 4
    assert_close(g, want, 0, 'overlapping windows')
  end)

  it('VJP, JVP and VJP tangent match finite differences (stride != kernel, padding, ceil_mode)', function()
    local seed = 71
    for _, cfg in ipairs { { 3, 2, 1, false }, { 3, 2, 1, true }, { 2, 2, 1, true }, { 3, 1, 1, false } } do
      local k, s, p, ceil = cfg[1], cfg[2], cfg[3], cfg[4]
      local shape = { 2, 7, 6 }
      local net = one_op(shape, function(b, h) return b:maxpool2d(h, k, { stride = s, padding = p, ceil_mode = ceil }) end)
      local r = gc.check { net = net, batch = 2, seed = seed, x = distinct({ 2, 2, 7, 6 }, seed, 0.3) }
      local ok, err = pcall(gc.assert_ok, r, 1e-3)
      if not ok then error(('maxpool k%d s%d p%d ceil=%s: %s'):format(k, s, p, tostring(ceil), err)) end
    end
  end)

  it('names the op and the shapes on bad arguments', function()
    assert_mentions(error_of(function()
      one_op({ 1, 8, 8 }, function(b, x) return b:maxpool2d(x, 3, { padding = 2 }) end)
    end), 'maxpool2d: kernel 3x3 with padding 2 exceeds half the kernel')
    assert_mentions(error_of(function()
      one_op({ 1, 3, 3 }, function(b, x) return b:maxpool2d(x, 5) end)
    end), 'maxpool2d: input 1x3x3 with kernel 5x5')
    assert_mentions(error_of(function()
      one_op({ 12 }, function(b, x) return b:maxpool2d(x, 2) end)
    end), 'maxpool2d: expected input (N, C, H, W), got Nx12')
  end)
end)

-- -------------------------------------------------------------- avgpool

describe('avgpool2d', function()
  local x16 = T.from(iota(16), { 1, 1, 4, 4 })
  local x25 = T.from(iota(25), { 1, 1, 5, 5 })

  local function avgpool(x, k, opts)
    local s = x:shape()
    local net = one_op({ s[2], s[3], s[4] }, function(b, h) return b:avgpool2d(h, k, opts) end)
    return net:forward(x), net
  end

  it('forward values by hand, with and without count_include_pad', function()
    assert_close(avgpool(x16, 2), { 3.5, 5.5, 11.5, 13.5 }, 0, 'k2')
    local cfg = { padding = 1, ceil_mode = true }
    cfg.count_include_pad = true
    assert_close(avgpool(x25, 2, cfg), { 0.25, 1.25, 2.25, 4.25, 10, 12, 9.25, 20, 22 }, 1e-7, 'k2 p1 ceil, include pad')
    cfg.count_include_pad = false
    assert_close(avgpool(x25, 2, cfg), { 1, 2.5, 4.5, 8.5, 10, 12, 18.5, 20, 22 }, 1e-7, 'k2 p1 ceil, exclude pad')
    -- ceil_mode's last window runs past the input (there is no padding): it
    -- is divided by what it covers (6 and 4), not by 9, in both modes
    for _, inc in ipairs { true, false } do
      assert_close(avgpool(x16, 3, { stride = 2, ceil_mode = true, count_include_pad = inc }),
        { 6, 7.5, 12, 13.5 }, 1e-7, 'k3 s2 ceil, include pad ' .. tostring(inc))
    end
    -- k3 s1 p1 on 4x4: the corner window holds 4 entries, 5 padding zeros
    local inc = avgpool(x16, 3, { stride = 1, padding = 1, count_include_pad = true })
    local exc = avgpool(x16, 3, { stride = 1, padding = 1, count_include_pad = false })
    assert_close({ inc:get(1, 1, 1, 1), exc:get(1, 1, 1, 1) }, { 14 / 9, 14 / 4 }, 1e-6, 'corner')
  end)

  it('matches a naive reference on random inputs', function()
    local seed = 81
    for _, cfg in ipairs {
      { 3, 2, 1, false }, { 3, 2, 1, true }, { 2, 1, 0, false }, { 3, 3, 0, true }, { 2, 2, 1, true }, { 4, 3, 2, true },
    } do
      for _, inc in ipairs { true, false } do
        local k, s, p, ceil = cfg[1], cfg[2], cfg[3], cfg[4]
        local x = T.randn({ 2, 3, 7, 6 }, { seed = seed, stream = k * 100 + s * 10 + p })
        local y = avgpool(x, k, { stride = s, padding = p, ceil_mode = ceil, count_include_pad = inc })
        local want, oh, ow = ref_pool(x, 'avg', k, s, p, ceil, inc)
        assert.are.same({ 2, 3, oh, ow }, y:shape())
        assert_close(y, want, 1e-6, ('avgpool k%d s%d p%d ceil=%s include_pad=%s (seed %d)'):format(
          k, s, p, tostring(ceil), tostring(inc), seed))
      end
    end
  end)

  it('VJP, JVP and VJP tangent match finite differences', function()
    local seed = 91
    for _, cfg in ipairs { { 3, 2, 1, false }, { 3, 2, 1, true }, { 2, 2, 1, true }, { 3, 3, 0, true } } do
      for _, inc in ipairs { true, false } do
        local k, s, p, ceil = cfg[1], cfg[2], cfg[3], cfg[4]
        local net = one_op({ 2, 7, 6 }, function(b, h)
          return b:avgpool2d(h, k, { stride = s, padding = p, ceil_mode = ceil, count_include_pad = inc })
        end)
        local r = gc.check { net = net, batch = 2, seed = seed }
        local ok, err = pcall(gc.assert_ok, r, 1e-3)
        if not ok then
          error(('avgpool k%d s%d p%d ceil=%s include_pad=%s: %s'):format(k, s, p, tostring(ceil), tostring(inc), err))
        end
      end
    end
  end)

  it('names the op on bad arguments', function()
    assert_mentions(error_of(function()
      one_op({ 1, 8, 8 }, function(b, x) return b:avgpool2d(x, 2, { padding = { 1, 2 } }) end)
    end), 'avgpool2d: kernel 2x2 with padding 1x2 exceeds half the kernel')
  end)
end)

-- ----------------------------------------------------- adaptive avgpool

describe('adaptive_avgpool2d', function()
  local x25 = T.from(iota(25), { 1, 1, 5, 5 })

  local function adaptive(x, size)
    local s = x:shape()
    local net = one_op({ s[2], s[3], s[4] }, function(b, h) return b:adaptive_avgpool2d(h, size) end)
    return net:forward(x), net
  end

  it('forward values by hand: 5x5 -> 1x1 and 5x5 -> 3x3 (overlapping bins)', function()
    assert_close(adaptive(x25, 1), { 13 }, 1e-7, '1x1')
    assert_close(adaptive(x25, 3), { 4, 5.5, 7, 11.5, 13, 14.5, 19, 20.5, 22 }, 1e-6, '3x3')
    local y = adaptive(x25, { 2, 5 })
    assert.are.same({ 1, 1, 2, 5 }, y:shape())
    assert_close(y, { 6, 7, 8, 9, 10, 16, 17, 18, 19, 20 }, 1e-6, '2x5')
  end)

  it('matches a naive reference on random inputs', function()
    local seed = 101
    local x = T.randn({ 2, 3, 7, 5 }, { seed = seed, stream = 1 })
    for _, size in ipairs { { 1, 1 }, { 3, 3 }, { 3, 2 }, { 7, 5 }, { 4, 4 }, { 9, 6 } } do
      local y = adaptive(x, size)
      assert.are.same({ 2, 3, size[1], size[2] }, y:shape())
      assert_close(y, ref_adaptive(x, size[1], size[2]), 1e-6, ('adaptive %dx%d (seed %d)'):format(size[1], size[2], seed))
    end
  end)

  it('global pools (one window over the whole plane): the mean, and g / (H W) in every entry', function()
    -- the global path: 13x11 = 143 entries (17 blocks of 8 and a tail of 7),
    -- as adaptive 1x1 and as avgpool2d with the plane as its kernel
    local seed = 105
    local x = T.randn({ 2, 3, 13, 11 }, { seed = seed, stream = 1 })
    local gy = T.randn({ 2, 3, 1, 1 }, { seed = seed, stream = 2 })
    for name, build in pairs {
      adaptive = function(b, h) return b:adaptive_avgpool2d(h, 1) end,
      avgpool = function(b, h) return b:avgpool2d(h, { 13, 11 }) end,
    } do
      local net = one_op({ 3, 13, 11 }, build)
      assert_close(net:forward(x), ref_adaptive(x, 1, 1), 1e-6, ('%s forward (seed %d)'):format(name, seed))
      local gx = net:backward(gy)
      for n = 1, 2 do
        for c = 1, 3 do
          local want = tonumber(ffi.new('float', gy:get(n, c, 1, 1) / 143))
          for h = 1, 13 do
            for w = 1, 11 do
              if gx:get(n, c, h, w) ~= want then
                error(('%s: gx[%d,%d,%d,%d] = %.9g, expected %.9g (seed %d)'):format(name, n, c, h, w,
                  gx:get(n, c, h, w), want, seed))
              end
            end
          end
        end
      end
    end
  end)

  it('VJP, JVP and VJP tangent match finite differences', function()
    local seed = 111
    for _, size in ipairs { 1, 3, { 2, 4 } } do
      local net = one_op({ 2, 5, 5 }, function(b, h) return b:adaptive_avgpool2d(h, size) end)
      local r = gc.check { net = net, batch = 2, seed = seed }
      gc.assert_ok(r, 1e-3)
    end
  end)

  it('checks its input', function()
    assert_mentions(error_of(function()
      one_op({ 4, 4 }, function(b, x) return b:adaptive_avgpool2d(x, 2) end)
    end), 'adaptive_avgpool2d: expected input (N, C, H, W), got Nx4x4')
  end)
end)
