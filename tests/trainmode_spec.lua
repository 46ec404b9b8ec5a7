-- Training mode (README, "Training mode"): every explanation pass evaluates
-- the inference-mode function and never touches the model. After net:train(),
-- every method, explain_vjp, every attack, every metric that runs the network
-- and the oracle give the maps (and predictions) of net:eval() bit for bit —
-- the same code path runs, so no rounding is allowed — and every parameter and
-- buffer (running_mean, running_var) keeps its bits. Training itself still
-- follows net:train(): running statistics move, and explanations run between
-- training steps change nothing the steps compute (dropout's counter included).
--
-- Two networks: a small one with batchnorm (non-trivial running statistics)
-- and dropout, and the shipped resnet_fmnist (batchnorm in every block).
local ffi = require 'ffi'
local T = require 'moreau.tensor'
local nn = require 'moreau.nn'
local models = require 'moreau.models'
local methods = require 'moreau.methods'
local attacks = require 'moreau.attacks'
local metrics = require 'moreau.metrics'
local oracle = require 'moreau.oracle'
local train = require 'moreau.train'
local explain_vjp = require 'moreau.explain_vjp'

local SEED = 11

--- conv → batchnorm → softplus → conv → batchnorm → softplus → dropout(0.5) →
-- linear, with batchnorm weights, biases and running statistics drawn from
-- (seed, stream) so that batch statistics and running ones differ.
local function small_net(seed)
  seed = seed or SEED
  local b = nn.builder({ 1, 8, 8 }, { seed = seed })
  local h = b:conv2d('c1', b.input, 1, 4, 3, { padding = 1 })
  h = b:batchnorm2d('bn1', h, 4)
  h = b:softplus(h, { beta = 2 })
  h = b:conv2d('c2', h, 4, 4, 3, { stride = 2, padding = 1 })
  h = b:batchnorm2d('bn2', h, 4)
  h = b:softplus(h, { beta = 2 })
  h = b:dropout(b:flatten(h), 0.5, 'drop')
  local net = b:build(b:linear('fc', h, 64, 3))
  for i, p in ipairs(net:params()) do
    local lo, hi = -0.5, 0.5
    if p.name:find('running_var', 1, true) or p.name:find('bn%d.weight') then lo, hi = 0.5, 2 end
    if p.name:find('^bn') then
      p.tensor:copy(T.rand(p.tensor:shape(), { seed = seed, stream = 100 + i, lo = lo, hi = hi }))
    end
  end
  return net
end

local cases = {
  {
    name = 'small batchnorm + dropout net',
    make = function() return small_net(SEED) end,
    x = T.rand({ 2, 1, 8, 8 }, { seed = SEED, stream = 1 }),
    labels = { 0, 2 },
  },
  {
    name = 'resnet_fmnist',
    make = function() return models.pretrained 'resnet_fmnist' end,
    x = T.randn({ 1, 1, 28, 28 }, { seed = SEED, stream = 2 }), -- one item: the small net covers batches
    labels = { 3 },
  },
}

-- Fast options for every method of methods.list() (a new method without an
-- entry fails the coverage test below).
local method_opts = {
  deeplift = {},
  gradient = {},
  input_x_gradient = {},
  integrated_gradients = { steps = 4 },
  moreaugrad = { T = 3, m = 2, K = 2, seed = SEED },
  smoothgrad = { samples = 3, seed = SEED },
  sparsified_smoothgrad = { samples = 3, seed = SEED },
}

local function attack_opts(name)
  return ({
    topk = { eps = 1, iters = 2, alpha = 0.05 },
    mass_center = { eps = 1, iters = 2, alpha = 0.05 },
    gaussian = { s = 0.1, seed = SEED, tries = 2 },
    pgd = { steps = 2, seed = SEED, random_start = true },
  })[name]
end

--- The bits of every parameter and buffer: {name = {kind, clone}}.
local function snapshot(net)
  local s = {}
  for _, p in ipairs(net:params()) do s[#s + 1] = { name = p.name, kind = p.kind, t = p.tensor:clone() } end
  return s
end

--- Index of the first entry whose bits differ, or nil.
local function first_diff(a, b)
  if a:numel() ~= b:numel() then return -1 end
  local pa, pb = ffi.cast('uint32_t*', a:data()), ffi.cast('uint32_t*', b:data())
  for i = 0, a:numel() - 1 do
    if pa[i] ~= pb[i] then return i end
  end
  return nil
end

local function assert_bits(a, b, what)
  local i = first_diff(a, b)
  assert(i == nil, ('%s: differs at entry %s (%.9g vs %.9g; seed %d)'):format(what, tostring(i),
    i and i >= 0 and a:data()[i] or 0 / 0, i and i >= 0 and b:data()[i] or 0 / 0, SEED))
end

local function assert_untouched(net, snap, what)
  for k, p in ipairs(net:params()) do
    assert(p.name == snap[k].name)
    assert_bits(p.tensor, snap[k].t, ('%s: %s %s'):format(what, snap[k].kind, p.name))
  end
end

--- Runs f(net) on a fresh net in eval mode and on another in train mode;
-- asserts the results equal (compare(r_eval, r_train)) and both models
-- untouched. An error in train mode still restores eval() before raising.
local function eval_vs_train(case, what, f, compare)
  local a = case.make()
  local snap = snapshot(a)
  local r0 = { f(a) }
  assert_untouched(a, snap, what .. ' (eval)')
  local b = case.make()
  b:train()
  local ok, err = pcall(function()
    local r1 = { f(b) }
    assert_untouched(b, snap, what .. ' after net:train()')
    compare(r0, r1)
  end)
  b:eval()
  if not ok then error(err, 0) end
end

local function compare_tensors(what)
  return function(r0, r1)
    for i = 1, #r0 do
      if T.is(r0[i]) then assert_bits(r0[i], r1[i], ('%s: result %d after net:train()'):format(what, i)) end
    end
  end
end

describe('training mode: the coverage of this spec', function()
  it('has options for every method', function()
    for _, name in ipairs(methods.list()) do
      assert(method_opts[name], 'trainmode_spec: no options for method ' .. name)
    end
    for _, name in ipairs(attacks.list()) do
      assert(attack_opts(name), 'trainmode_spec: no options for attack ' .. name)
    end
  end)
end)

for _, case in ipairs(cases) do
  describe('training mode, ' .. case.name .. ':', function()
    local x, labels = case.x, case.labels

    for _, name in ipairs(methods.list()) do
      it(name .. ' explains the inference-mode net and touches no parameter or buffer', function()
        local m = methods.create(name, method_opts[name])
        eval_vs_train(case, name, function(net) return m:explain(net, x, labels) end, compare_tensors(name))
      end)
    end

    for _, name in ipairs(methods.list()) do
      local m = methods.create(name, method_opts[name])
      if explain_vjp.supported(m) then
        it(name .. ':explain_vjp (exact HVPs) ignores net:train()', function()
          local u = T.randn(x:shape(), { seed = SEED, stream = 3 })
          eval_vs_train(case, name .. ':explain_vjp', function(net)
            local vjp, E = m:explain_vjp(net, x, labels, u)
            return vjp, E
          end, compare_tensors(name .. ':explain_vjp'))
        end)
      end
    end

    it('oracle.grad and oracle.hvp ignore net:train()', function()
      local v = T.randn(x:shape(), { seed = SEED, stream = 4 })
      eval_vs_train(case, 'oracle', function(net)
        local scores, g = oracle.grad(net, x, labels, { score = 'log_softmax' })
        local hv, scores2, g2 = oracle.hvp(net, x, labels, v, { score = 'softmax' })
        return scores, g, hv, scores2, g2
      end, function(r0, r1)
        assert.are.same(r0[1], r1[1])
        assert.are.same(r0[4], r1[4])
        compare_tensors('oracle')(r0, r1)
      end)
    end)

    -- The interpretation attacks with every gradient-based method on the small
    -- net; with the gradient and (stochastic) MoreauGrad on resnet_fmnist.
    local attack_methods = case.name == 'resnet_fmnist' and { 'gradient', 'moreaugrad' } or methods.list()
    for _, aname in ipairs(attacks.list()) do
      for _, mname in ipairs(attack_methods) do
        local m = methods.create(mname, method_opts[mname])
        local uses_method = aname == 'topk' or aname == 'mass_center'
        if explain_vjp.supported(m) and (uses_method or mname == 'gradient') then
          it(('attack %s%s: same x\', same predictions, model untouched'):format(aname,
            uses_method and ' with ' .. mname or ''), function()
            local atk = attacks.create(aname, attack_opts(aname))
            eval_vs_train(case, 'attack ' .. aname, function(net)
              local xp, info = atk:run(net, m, x, labels)
              return xp, info, attacks.predict(net, xp)
            end, function(r0, r1)
              assert_bits(r0[1], r1[1], 'attack ' .. aname .. ": x'")
              assert.are.same(r0[2], r1[2])
              assert.are.same(r0[3], r1[3])
            end)
          end)
        end
      end
    end

    for _, mname in ipairs { 'gradient', 'smoothgrad' } do
      it('metrics.local_lipschitz and metrics.max_sensitivity (' .. mname .. ') ignore net:train()', function()
        local m = methods.create(mname, method_opts[mname])
        eval_vs_train(case, 'metrics', function(net)
          return metrics.local_lipschitz(net, m, x, labels, { samples = 2, seed = SEED }),
            metrics.max_sensitivity(net, m, x, labels, { samples = 2, seed = SEED })
        end, function(r0, r1)
          assert.are.same(r0[1], r1[1])
          assert.are.same(r0[2], r1[2])
        end)
      end)
    end

    it('net:forward_inference gives the eval-mode output; backward differentiates it', function()
      local gy = T.randn({ x:size(1), 3 }, { seed = SEED, stream = 5 })
      if case.name == 'resnet_fmnist' then gy = T.randn({ x:size(1), 10 }, { seed = SEED, stream = 5 }) end
      local a = case.make()
      local y0 = a:forward(x)
      local g0 = a:backward(gy)
      local b = case.make()
      local snap = snapshot(b)
      b:train()
      local y1 = b:forward_inference(x)
      local g1 = b:backward(gy)
      b:eval()
      assert_untouched(b, snap, 'forward_inference')
      assert_bits(y0, y1, 'forward_inference: output')
      assert_bits(g0, g1, 'backward after forward_inference: input gradient')
    end)
  end)
end

describe('training mode: the issue\'s example', function()
  it('resnet_fmnist: logits after net:train(), an explanation and net:eval() are the logits before', function()
    local net = models.pretrained 'resnet_fmnist'
    local x = T.randn({ 2, 1, 28, 28 }, { seed = SEED, stream = 8 })
    local y0 = net:forward(x)
    net:train()
    local m = methods.sparsified_smoothgrad(method_opts.sparsified_smoothgrad)
    local ok, err = pcall(function() m:explain(net, x, { 1, 4 }) end)
    net:eval()
    assert(ok, err)
    assert_bits(y0, net:forward(x), 'logits after train(), explain, eval()')
  end)
end)

describe('training mode: training still follows net:train()', function()
  local x = T.rand({ 4, 1, 8, 8 }, { seed = SEED, stream = 6 })
  local labels = { 0, 1, 2, 1 }

  it('moreau.train steps move the running statistics, and explanations between steps change nothing', function()
    -- a: explains with every method, an attack and a metric before each step;
    -- b: only steps. Same net, same data: every parameter and buffer must
    -- agree bit for bit (explanations neither write buffers nor advance the
    -- dropout counter), and the running statistics must have moved.
    local a, b = small_net(SEED), small_net(SEED)
    local snap = snapshot(a)
    local oa = train.sgd { lr = 0.1, momentum = 0.9 }:build(a)
    local ob = train.sgd { lr = 0.1, momentum = 0.9 }:build(b)
    a:train()
    b:train()
    for _ = 1, 2 do
      for _, name in ipairs(methods.list()) do methods.create(name, method_opts[name]):explain(a, x, labels) end
      attacks.topk(attack_opts('topk')):run(a, methods.gradient(), x, labels)
      metrics.local_lipschitz(a, methods.gradient(), x, labels, { samples = 1 })
      train.step(a, oa, x, labels)
      train.step(b, ob, x, labels)
    end
    a:eval()
    b:eval()
    assert_untouched(a, snapshot(b), 'training with explanations in between vs without')
    local moved = 0
    for k, p in ipairs(a:params()) do
      if p.kind == 'buffer' and first_diff(p.tensor, snap[k].t) ~= nil then moved = moved + 1 end
    end
    assert.are.equal(4, moved) -- bn1/bn2 running_mean and running_var
  end)

  it('an explanation that fails leaves the net in training mode and untouched', function()
    local a, b = small_net(SEED), small_net(SEED)
    local snap = snapshot(a)
    a:train()
    b:train()
    -- explain_vjp raises on the cotangent's shape after its gradient pass ran
    local ok, err = pcall(function() methods.gradient():explain_vjp(a, x, labels, T.zeros { 1 }) end)
    assert.is_false(ok)
    assert.truthy(tostring(err):find('gradient:explain_vjp: the cotangent must be a tensor shaped like x', 1, true))
    assert_untouched(a, snap, 'failed explanation')
    -- a training-mode forward after the error equals one on a twin that never explained
    local ya, yb = a:forward(x), b:forward(x)
    a:eval()
    b:eval()
    assert_bits(ya, yb, 'training forward after a failed explanation')
    assert_untouched(a, snapshot(b), 'running statistics after the training forward')
  end)

  it('net:forward_inference refuses bad input with a message naming it', function()
    local net = small_net(SEED)
    local bad = T.rand({ 1, 1, 8, 8 }, { seed = SEED, stream = 9 })
    bad:data()[5] = 0 / 0
    assert.has_error(function() net:forward_inference(T.zeros { 1, 1, 5, 5 }) end,
      'forward_inference: input has shape 1x1x5x5, the network expects Nx1x8x8')
    assert.has_error(function() net:forward_inference(bad) end, 'forward_inference: input: entry 5 is NaN')
    assert.has_error(function() net:forward_inference(3) end, 'forward_inference: expected a tensor, got number')
  end)

  it('a reverse pass differentiates the mode its forward ran in', function()
    -- forward in training mode (dropout mask, batch statistics), then eval():
    -- the backward must still be the training forward's (dropout's mask).
    local a, b = small_net(SEED), small_net(SEED)
    local gy = T.randn({ 4, 3 }, { seed = SEED, stream = 7 })
    a:train()
    b:train()
    a:forward(x)
    b:forward(x)
    a:eval()
    local ga, gb = a:backward(gy), b:backward(gy)
    b:eval()
    assert_bits(ga, gb, 'backward after eval() following a training forward')
  end)
end)
