-- Batch invariance of every network pass (issue 11, kind 6; README "Batch
-- independence"): item n's forward output, input gradient (VJP), JVP and
-- VJP tangent (the HVP's reverse pass) are the same bits whether the item is
-- computed alone, as item 3 of a batch of 7 or as item 40 of a batch of 64
-- (0-based positions), and whatever the thread count (1, 2, 3). The truth
-- is the item computed alone on one thread; every other (batch, position,
-- threads) must match it exactly (max |difference| = 0).
--
-- Covered: conv2d in each geometry class of the conv spec (im2col, first
-- layer with 1 and 3 channels, 1x1, depthwise, grouped GEMM, strided,
-- dilated, oneDNN's blocked shapes) on both backends; linear; batchnorm2d
-- (inference mode); max / average / adaptive pooling; softmax and
-- log_softmax; and the zoo nets as the model fixtures build them.
package.path = './bindings/?.lua;./bindings/?/init.lua;./tests/?.lua;' .. package.path
local core = require 'moreau.core'
local moreau = require 'moreau'
local T = require 'moreau.tensor'
local gc = require 'helpers.gradcheck'
local models = require 'moreau.models'
-- These specs compare thread counts: the team must be the count asked for,
-- not fewer threads because another process is busy (moreau.set_adaptive_threads).
require('moreau').set_adaptive_threads(false)
local C = core.C
local unpack = table.unpack or unpack

local check_invariant = require('helpers.invariance').check

local function randn_init(seed, stream, std)
  return function(t) t:copy(T.randn(t:shape(), { seed = seed, stream = stream, std = std })) end
end

local function conv(b, x, cin, cout, k, o, seed)
  local groups = o.groups or 1
  local params = {
    b:param('c.weight', { cout, cin / groups, k, k }, 'weight',
      randn_init(seed, 100, 1 / math.sqrt(cin / groups * k * k))),
    b:param('c.bias', { cout }, 'weight', randn_init(seed, 101, 1)),
  }
  return b:op('conv2d', { x }, params, { stride = o.stride, padding = o.padding,
    dilation = o.dilation, groups = o.groups }, 'c')
end

-- One case per geometry class of tests/ops_conv_linear_spec.lua, plus the
-- shapes of the zoo's stems and blocks. A softplus after the conv makes the
-- HVP's second-order term nonzero.
local conv_cases = {
  { name = 'first layer, 1 channel (FMNIST stem)', input = { 1, 28, 28 }, cout = 16, k = 3, o = { padding = 1 } },
  { name = 'first layer, 3 channels (CIFAR stem)', input = { 3, 32, 32 }, cout = 8, k = 3, o = { padding = 1 } },
  { name = 'im2col 3x3', input = { 16, 14, 14 }, cout = 16, k = 3, o = { padding = 1 } },
  { name = '3x3 stride 2', input = { 16, 14, 14 }, cout = 32, k = 3, o = { stride = 2, padding = 1 } },
  { name = 'blocked 64 -> 128 stride 2', input = { 64, 10, 10 }, cout = 128, k = 3, o = { stride = 2, padding = 1 } },
  { name = '1x1', input = { 24, 8, 8 }, cout = 40, k = 1, o = {} },
  { name = '1x1 stride 2 (shortcut)', input = { 16, 14, 14 }, cout = 32, k = 1, o = { stride = 2 } },
  { name = 'depthwise 3x3', input = { 16, 12, 12 }, cout = 16, k = 3, o = { groups = 16, padding = 1 } },
  { name = 'depthwise 5x5 stride 2', input = { 8, 12, 12 }, cout = 8, k = 5, o = { groups = 8, stride = 2, padding = 2 } },
  { name = 'grouped GEMM (8 per group)', input = { 16, 10, 10 }, cout = 16, k = 3, o = { groups = 2, padding = 1 } },
  { name = 'dilated', input = { 8, 12, 12 }, cout = 8, k = 3, o = { dilation = 2, padding = 2 } },
}

local backends = { 'blas' }
if C.mr_set_conv_backend('onednn') == 0 then table.insert(backends, 1, 'onednn') end
local default_backend = backends[1]
assert(C.mr_set_conv_backend(default_backend) == 0)

describe('batch invariance', function()
  for _, backend in ipairs(backends) do
    describe('conv2d [' .. backend .. ' backend]', function()
      before_each(function() moreau.set_conv_backend(backend) end)
      after_each(function() moreau.set_conv_backend(default_backend) end)
      for ci, case in ipairs(conv_cases) do
        it(case.name, function()
          local seed = 500 + ci
          local net = gc.net { input = case.input, seed = seed, build = function(b, x)
            return b:softplus(conv(b, x, case.input[1], case.cout, case.k, case.o, seed), { beta = 2 })
          end }
          check_invariant(net, seed, case.name)
        end)
      end
    end)
  end

  it('linear', function()
    local seed = 601
    local net = gc.net { input = { 300 }, seed = seed, build = function(b, x)
      local params = {
        b:param('fc.weight', { 200, 300 }, 'weight', randn_init(seed, 200, 1 / math.sqrt(300))),
        b:param('fc.bias', { 200 }, 'weight', randn_init(seed, 201, 1)),
      }
      return b:softplus(b:op('linear', { x }, params, nil, 'fc'))
    end }
    check_invariant(net, seed, 'linear')
  end)

  it('linear, one output (a scalar score)', function()
    local seed = 602
    local net = gc.net { input = { 37 }, seed = seed, build = function(b, x)
      return b:softplus(b:linear('fc', x, 37, 1))
    end }
    check_invariant(net, seed, 'linear 37 -> 1')
  end)

  it('batchnorm2d (inference mode)', function()
    local seed = 603
    local net = gc.net { input = { 6, 9, 9 }, seed = seed, build = function(b, x)
      return b:softplus(b:batchnorm2d('bn', b:softplus(x), 6))
    end, init = function(net)
      net:param('bn.weight'):copy(T.randn({ 6 }, { seed = seed, stream = 10 }))
      net:param('bn.bias'):copy(T.randn({ 6 }, { seed = seed, stream = 11 }))
      net:param('bn.running_mean'):copy(T.randn({ 6 }, { seed = seed, stream = 12 }))
      net:param('bn.running_var'):copy(T.rand({ 6 }, { seed = seed, stream = 13, lo = 0.5, hi = 2 }))
    end }
    check_invariant(net, seed, 'batchnorm2d')
  end)

  it('pooling: max, average, adaptive average', function()
    local seed = 604
    local net = gc.net { input = { 4, 13, 13 }, seed = seed, build = function(b, x)
      local h = b:softplus(x)
      local m = b:maxpool2d(h, 3, { stride = 2, padding = 1 })
      local a = b:avgpool2d(m, 2, { stride = 1 })
      return b:adaptive_avgpool2d(b:softplus(a), 3)
    end }
    check_invariant(net, seed, 'pooling')
  end)

  it('softmax and log_softmax', function()
    local seed = 605
    local net = gc.net { input = { 50 }, seed = seed, build = function(b, x)
      return b:log_softmax(b:softmax(b:softplus(x)))
    end }
    check_invariant(net, seed, 'softmax')
  end)

  -- The zoo nets with the fixtures' options (tests/models_spec.lua), on the
  -- default conv backend.
  local zoo = {
    { name = 'resnet_fmnist', build = models.resnet_fmnist, opts = { num_classes = 10, beta = 10, width = 1 } },
    { name = 'resnet18_cifar (width 1/8)', build = models.resnet18_cifar,
      opts = { num_classes = 10, activation = 'softplus', beta = 2, width = 0.125 } },
    { name = 'efficientnet_b0 (small)', build = models.efficientnet_b0,
      opts = { num_classes = 10, width = 0.125, depth = 1, image_size = 32 } },
  }
  for zi, m in ipairs(zoo) do
    it(m.name, function()
      local seed = 700 + zi
      local opts = {}
      for k, v in pairs(m.opts) do opts[k] = v end
      opts.seed = seed
      check_invariant(m.build(opts), seed, m.name)
    end)
  end
end)
