-- The network graph and the gradient oracle: fan-out, workspace reuse,
-- shared gradient slots, determinism across thread counts, score kinds, exact
-- HVPs, error paths.
local ffi = require 'ffi'
local moreau = require 'moreau'
local T = require 'moreau.tensor'
local nn = require 'moreau.nn'
local oracle = require 'moreau.oracle'
local models = require 'moreau.models'
local gc = require 'helpers.gradcheck'
local core = require 'moreau.core'
-- These specs compare thread counts: the team must be the count asked for,
-- not fewer threads because another process is busy (moreau.set_adaptive_threads).
require('moreau').set_adaptive_threads(false)
local C = core.C

-- A small softplus net with a skip connection and a node feeding three
-- consumers: conv -> softplus -> (conv, add, mul) -> ... -> linear.
local function small_net(seed)
  local b = nn.builder({ 2, 6, 6 }, { seed = seed or 3 })
  local h = b:conv2d('c1', b.input, 2, 4, 3, { padding = 1 })
  h = b:softplus(h, { beta = 2 })
  local k = b:conv2d('c2', h, 4, 4, 3, { padding = 1 })
  k = b:tanh(k)
  local s = b:add(h, k)
  s = b:mul(s, h)
  s = b:adaptive_avgpool2d(s, 2)
  s = b:flatten(s)
  return b:build(b:linear('fc', s, 16, 5)), b
end

local function bits_equal(a, b)
  local pa, pb = ffi.cast('uint32_t*', a:data()), ffi.cast('uint32_t*', b:data())
  for i = 0, a:numel() - 1 do
    if pa[i] ~= pb[i] then return false end
  end
  return true
end

describe('a network', function()
  it('passes finite-difference checks through fan-out and skips (seed 5)', function()
    local r = gc.check { net = small_net(5), seed = 5, batch = 2 }
    gc.assert_ok(r, 2e-3)
  end)

  it('reports its shapes, nodes and parameters', function()
    local net = small_net()
    assert.are.same({ 2, 6, 6 }, net:input_shape())
    assert.are.same({ 5 }, net:output_shape())
    assert.are.equal(2 * 4 * 9 + 4 + 4 * 4 * 9 + 4 + 16 * 5 + 5, net:num_params())
    assert.are.equal('input', net:nodes()[1].op)
    assert.are.same({ 4, 6, 6 }, net:nodes()[2].shape)
    assert.truthy(tostring(net):find('net 2x6x6 -> 5', 1, true))
  end)

  it('allocates nothing once its workspace has grown to the batch', function()
    local net = small_net()
    local x = T.randn({ 4, 2, 6, 6 }, { seed = 1 })
    local v = T.randn({ 4, 2, 6, 6 }, { seed = 2 })
    local labels = ffi.new('int32_t[4]', { 0, 1, 2, 3 })
    local scores = ffi.new('float[4]')
    local g, hv = T.zeros(x:shape()), T.zeros(x:shape())
    assert.are.equal(0, C.mr_oracle_hvp(core.handle(net), core.handle(x), labels, 0, core.handle(v), scores, core.handle(g), core.handle(hv)))
    local before = C.mr_alloc_count()
    for _ = 1, 5 do
      assert.are.equal(0, C.mr_oracle_grad(core.handle(net), core.handle(x), labels, 0, scores, core.handle(g)))
      assert.are.equal(0, C.mr_oracle_hvp(core.handle(net), core.handle(x), labels, 0, core.handle(v), scores, core.handle(g), core.handle(hv)))
    end
    assert.are.equal(before, C.mr_alloc_count())
    -- a smaller batch reuses the same workspace
    local x2 = x:narrow(1, 2)
    local g2 = T.zeros(x2:shape())
    local before2 = C.mr_alloc_count()
    assert.are.equal(0, C.mr_oracle_grad(core.handle(net), core.handle(x2), labels, 0, scores, core.handle(g2)))
    assert.are.equal(before2, C.mr_alloc_count())
    assert.is_true(net:workspace_bytes() > 0)
  end)

  it('gives bit-identical gradients and HVPs on 1 and 2 threads', function()
    local net = small_net()
    local x = T.randn({ 8, 2, 6, 6 }, { seed = 11 })
    local v = T.randn({ 8, 2, 6, 6 }, { seed = 12 })
    local labels = { 0, 1, 2, 3, 4, 0, 1, 2 }
    moreau.set_num_threads(1)
    local _, g1 = oracle.grad(net, x, labels)
    local h1 = oracle.hvp(net, x, labels, v)
    moreau.set_num_threads(2)
    local _, g2 = oracle.grad(net, x, labels)
    local h2 = oracle.hvp(net, x, labels, v)
    moreau.set_num_threads(0)
    assert.is_true(bits_equal(g1, g2))
    assert.is_true(bits_equal(h1, h2))
  end)

  it('rejects a wrong input shape with a message naming both shapes', function()
    local net = small_net()
    assert.has_error(function() net:forward(T.zeros { 1, 3, 6, 6 }) end,
      'forward: input has shape 1x3x6x6, the network expects Nx2x6x6')
  end)

  it('rejects NaN input', function()
    local net = small_net()
    local x = T.zeros { 1, 2, 6, 6 }
    x:data()[5] = 0 / 0
    assert.has_error(function() net:forward(x) end, 'forward: input: entry 5 is NaN')
  end)

  it('rejects an unknown op and misshaped layers at build time', function()
    local b = nn.builder { 2, 6, 6 }
    assert.has_error(function() b:op('nosuchop', { b.input }, {}, {}, 'layer7') end,
      "layer7: unknown op 'nosuchop'")
    assert.has_error(function() b:linear('fc', b.input, 72, 3) end)
    assert.has_error(function() b:op('relu', { 99 }, {}, {}, 'r') end,
      'r: input 0 refers to node 99, which does not exist')
    assert.has_error(function() b:param('w', { 2 }) ; b:param('w', { 2 }) end,
      "mr_net_param: duplicate parameter name 'w'")
  end)

  it('errors on backward before forward', function()
    local net = small_net()
    assert.has_error(function() net:backward(T.zeros { 1, 5 }) end, 'backward: run forward first')
  end)

  it('names a missing parameter', function()
    local net = small_net()
    assert.has_error(function() net:param('c9.weight') end, "net: no parameter named 'c9.weight'")
  end)
end)

local function numel(shape)
  local n = 1
  for _, d in ipairs(shape) do n = n * d end
  return n
end

-- D (linear, softplus) pairs on `width` features: 2D nodes after the input.
local function chain_net(depth, width)
  local b = nn.builder({ width }, { seed = 4 })
  local h = b.input
  for i = 1, depth do h = b:softplus(b:linear('l' .. i, h, width, width), { beta = 2 }) end
  return b:build(h)
end

-- Fan-out into three consumers, a skip, a node whose two inputs are one node
-- (mul(s, s)), and an output that is not the last node: the nodes after it
-- (one of them reading the skip) get no gradient buffer.
local function fanout_net(seed)
  local b = nn.builder({ 2, 6, 6 }, { seed = seed or 3 })
  local h = b:conv2d('c1', b.input, 2, 4, 3, { padding = 1 })
  h = b:softplus(h, { beta = 2 })
  local k = b:tanh(b:conv2d('c2', h, 4, 4, 3, { padding = 1 }))
  local s = b:add(h, k)
  s = b:mul(s, s)
  s = b:mul(s, h)
  s = b:flatten(b:adaptive_avgpool2d(s, 2))
  local out = b:linear('fc', s, 16, 5)
  b:softplus(b:add(out, b:linear('fc2', s, 16, 5)))
  b:tanh(k)
  return b:build(out)
end

-- B residual blocks on F features, the input being the first block's input:
--   h -> a = softplus(linear(h)) -> linear(a) -> add(., h) -> softplus -> next h
-- 5B nodes after the input, all of F features.
local function residual_mlp(B, F, seed)
  local b = nn.builder({ F }, { seed = seed or 4 })
  local h = b.input
  for i = 1, B do
    local a = b:softplus(b:linear('a' .. i, h, F, F), { beta = 2 })
    h = b:softplus(b:add(b:linear('b' .. i, a, F, F), h), { beta = 2 })
  end
  return b:build(h)
end

-- A net on which fan-out temporaries that take free slots cost more than
-- temporaries kept in slots of their own (found by a search over small DAGs;
-- the trace is in the test that uses it). Nodes and sample sizes:
--   1 linear(0) 8, 2 linear(1) 1, 3 linear(2) 1, 4 mul(3, 2) 1,
--   5 linear(4) 1, 6 mul(5, 5) 1, 7 linear(6) 8 (the output); the input has 4.
local function best_fit_trap(seed)
  local b = nn.builder({ 4 }, { seed = seed or 4 })
  local n2 = b:linear('l2', b:linear('l1', b.input, 4, 8), 8, 1)
  local n4 = b:mul(b:linear('l3', n2, 1, 1), n2)
  local n5 = b:linear('l5', n4, 1, 1)
  return b:build(b:linear('l7', b:mul(n5, n5), 1, 8))
end

describe('the workspace', function()
  it('holds a chain in its activations plus two gradient-sized buffers, at any depth', function()
    -- In the reverse pass gy_i is live over steps [i, i+1] only, so on a chain
    -- two gradient slots alternate; no node feeds two consumers, so no step
    -- needs a fan-out temporary. Linear and softplus keep no state or scratch,
    -- so with F = 16 features and batch N the workspace is exactly, in floats,
    --   forward + backward   N F (2D + 2)             (y of the 2D nodes after the input)
    --   jvp + hvp_backward   N F (2D + (2D + 1) + 4)  (dy also of the input; dgy in its own slots)
    -- Dedicated fan-out buffers (gy, dgy of input 0 and 1) added N F 2 and
    -- N F 4; one gradient buffer per node took N F (2D + (2D + 1) + 4D) for the second.
    local N, F = 4, 16
    for _, D in ipairs { 8, 32 } do
      local net = chain_net(D, F)
      local x = T.randn({ N, F }, { seed = 1 })
      local y = net:forward(x)
      net:backward(T.randn(y:shape(), { seed = 2 }))
      assert.are.equal(4 * N * F * (2 * D + 2), net:workspace_bytes())
      net:jvp(x, T.randn({ N, F }, { seed = 3 }))
      net:hvp_backward(T.randn(y:shape(), { seed = 2 }))
      assert.are.equal(4 * N * F * (4 * D + 1 + 4), net:workspace_bytes())
    end
  end)

  it('folds the fan-out temporaries of a residual net into its gradient slots', function()
    -- Reverse steps of a block on input p (nodes p+1 linear, p+2 softplus,
    -- p+3 linear, p+4 add(p+3, p), p+5 softplus), gradients live at each:
    --   p+5: gy_{p+5}, gy_{p+4}        p+4: gy_{p+4}, gy_{p+3}, gy_p (the add writes the skip's)
    --   p+3: gy_{p+3}, gy_{p+2}, gy_p  p+2: gy_{p+2}, gy_{p+1}, gy_p
    --   p+1: gy_{p+1}, gy_p, t          (the linear's gradient for p goes to a temporary t, added to gy_p)
    -- So at most 3 are live at a step and, all F wide, 3 slots of F hold them
    -- all: t takes the slot gy_{p+2} left (for p = 0, gy_p is the caller's gx,
    -- so the first block needs 2). With B >= 2 blocks, batch N, no state or
    -- scratch, the workspace is exactly, in floats,
    --   forward + backward   N F (5B + 3)                (y of the 5B nodes; gy in 3 slots)
    --   jvp + hvp_backward   N F (5B + (5B + 1) + 2 * 3)  (dy also of the input; dgy in the same 3)
    -- Two dedicated fan-out buffers of the largest gradient (F) per set made
    -- that N F (5B + 3 + 2) and N F (10B + 1 + 6 + 4).
    local N, F = 3, 6
    for _, B in ipairs { 2, 4 } do
      local net = residual_mlp(B, F)
      local x = T.randn({ N, F }, { seed = 1 })
      local y = net:forward(x)
      net:backward(T.randn(y:shape(), { seed = 2 }))
      assert.are.equal(4 * N * F * (5 * B + 3), net:workspace_bytes())
      assert.is_true(net:workspace_bytes() < 4 * N * F * (5 * B + 3 + 2))
      net:jvp(x, T.randn({ N, F }, { seed = 3 }))
      net:hvp_backward(T.randn(y:shape(), { seed = 2 }))
      assert.are.equal(4 * N * F * (10 * B + 1 + 6), net:workspace_bytes())
      assert.is_true(net:workspace_bytes() < 4 * N * F * (10 * B + 1 + 6 + 4))
    end
  end)

  it('passes finite-difference checks with temporaries in shared slots, the input fanning out (seed 8)', function()
    local r = gc.check { net = residual_mlp(3, 5, 8), seed = 8, batch = 2 }
    gc.assert_ok(r, 2e-3)
  end)

  it('keeps temporaries in slots of their own where folding them takes more (seed 9)', function()
    -- Best fit, folded (slots A, B, ... with their per-sample sizes):
    --   step 7: gy_7 -> A(8); gy_6 -> B(1)
    --   step 6: gy_5 -> A; mul(5, 5) sends input 1 through t -> new C(1)
    --   step 5: gy_4 -> B (smallest fit of B, C)
    --   step 4: gy_3 -> C (smallest fit of A, C); gy_2 -> A (the only one free)
    --   step 3: t for gy_2 -> B
    --   step 2: gy_1 (8) -> B or C: neither fits; B grows to 8
    -- 8 + 8 + 1 = 17 floats a sample. Temporaries in slots of their own:
    --   step 7: A(8), B(1); step 6: gy_5 -> A, t of input 1 -> T1(1)
    --   step 5: gy_4 -> B; step 4: gy_3 -> A, gy_2 -> new C(1); step 3: t of input 0 -> T0(1)
    --   step 2: gy_1 -> A (fits)
    -- 8 + 1 + 1 + 1 + 1 = 12, which the planner keeps. Activations: 8 + 5 + 8 = 21
    -- (y), 4 + 21 (dy of the input and the nodes). Dedicated fan-out buffers of
    -- the largest gradient would have made the slots 10 + 2 * 8 = 26.
    local N = 3
    local net = best_fit_trap()
    local x = T.randn({ N, 4 }, { seed = 1 })
    local y = net:forward(x)
    net:backward(T.randn(y:shape(), { seed = 2 }))
    assert.are.equal(4 * N * (21 + 12), net:workspace_bytes())
    net:jvp(x, T.randn({ N, 4 }, { seed = 3 }))
    net:hvp_backward(T.randn(y:shape(), { seed = 2 }))
    assert.are.equal(4 * N * (21 + 25 + 2 * 12), net:workspace_bytes())
    local r = gc.check { net = best_fit_trap(9), seed = 9, batch = 2 }
    gc.assert_ok(r, 2e-3)
  end)

  it('holds resnet18_cifar in its activations plus a few gradient slots', function()
    -- Inside a BasicBlock the block input (its skip) stays live across the
    -- block while gradients alternate along the branch: 3 slots. The fan-out
    -- temporary at the block's first conv (the add wrote the skip's gradient
    -- first) takes the slot the branch is done with: 3 buffers of the largest
    -- node in all, where dedicated fan-out buffers made it 5. The rest is op
    -- scratch and state: a GEMM conv takes (cin kh kw + cout) Ho Wo floats per
    -- sample, at most 10 x its output here (3x3 or 1x1 kernels, cin <= cout),
    -- and batchnorm keeps 2C + 1 floats. One gradient buffer per node needed
    -- activations + gradients = 2 x the activations before any scratch.
    local net = models.resnet18_cifar { width = 0.125 }
    local N = 2
    local nodes = net:nodes()
    local act, max, state = 0, 0, 0
    for i = 2, #nodes do
      local n = numel(nodes[i].shape)
      act, max = act + n, math.max(max, n)
      if nodes[i].op == 'batchnorm2d' then state = state + 2 * nodes[i].shape[1] + 1 end
    end
    local y = net:forward(T.randn({ N, 3, 32, 32 }, { seed = 1 }))
    net:backward(T.randn(y:shape(), { seed = 2 }))
    local bytes = net:workspace_bytes()
    local bound = 4 * (N * act + N * max * (3 + 10) + state)
    assert.is_true(bytes <= bound, ('%d bytes, bound %d'):format(bytes, bound))
    assert.is_true(bytes < 4 * N * 2 * act, ('%d bytes vs %d'):format(bytes, 4 * N * 2 * act))
  end)

  it('gives the same bits on a second reverse pass through shared slots', function()
    -- The slots hold other nodes' gradients from the pass before; every
    -- input gradient is overwritten before it is read.
    local net = fanout_net(7)
    local x = T.randn({ 3, 2, 6, 6 }, { seed = 7 })
    local v = T.randn({ 3, 2, 6, 6 }, { seed = 8 })
    local u = T.randn({ 3, 5 }, { seed = 9 })
    local w = T.randn({ 3, 5 }, { seed = 10 })
    net:forward(x)
    local g1 = net:backward(u)
    local g2 = net:backward(u)
    net:jvp(x, v)
    local a1, h1 = net:hvp_backward(u, w)
    net:jvp(v, x) -- another pass in between
    net:hvp_backward(w, u)
    net:jvp(x, v)
    local a2, h2 = net:hvp_backward(u, w)
    net:forward(x)
    local g3 = net:backward(u)
    assert.is_true(bits_equal(g1, g2))
    assert.is_true(bits_equal(g1, g3))
    assert.is_true(bits_equal(g1, a1))
    assert.is_true(bits_equal(a1, a2))
    assert.is_true(bits_equal(h1, h2))
  end)

  it('passes finite-difference checks with an input used twice and nodes past the output (seed 6)', function()
    local r = gc.check { net = fanout_net(6), seed = 6, batch = 2 }
    gc.assert_ok(r, 2e-3)
  end)

  it('passes the seed straight through when the output is the input', function()
    -- no node has a gradient slot: gy lands in the caller's gx (and dgy in dgx)
    local b = nn.builder({ 5 }, { seed = 1 })
    b:linear('fc', b.input, 5, 5)
    local net = b:build(0)
    local x, u, w = T.randn({ 2, 5 }, { seed = 1 }), T.randn({ 2, 5 }, { seed = 2 }), T.randn({ 2, 5 }, { seed = 3 })
    net:forward(x)
    assert.is_true(bits_equal(u, net:backward(u)))
    net:jvp(x, w)
    local g, dg = net:hvp_backward(u, w)
    assert.is_true(bits_equal(u, g))
    assert.is_true(bits_equal(w, dg))
  end)

  it('refuses a reverse pass after the output node moved, until the next forward', function()
    local net = chain_net(3, 4)
    local x = T.randn({ 2, 4 }, { seed = 1 })
    local u = T.randn({ 2, 4 }, { seed = 2 })
    net:forward(x)
    assert.are.equal(0, C.mr_net_set_output(core.handle(net), 4))
    assert.has_error(function() net:backward(u) end,
      'backward: the output node moved to 4 after the forward pass; run it again')
    -- after a forward the slot map is for node 4: the gradient of the first two pairs
    net:forward(x)
    local g = net:backward(u)
    local b = nn.builder({ 4 }, { seed = 4 })
    local h = b.input
    for i = 1, 2 do h = b:softplus(b:linear('l' .. i, h, 4, 4), { beta = 2 }) end
    local short = b:build(h)
    short:forward(x)
    assert.is_true(bits_equal(g, short:backward(u)))
  end)
end)

describe('the gradient oracle', function()
  -- For a linear layer z = W x + b, every score has a closed form.
  local function linear_net()
    local b = nn.builder { 3 }
    local net = b:build(b:linear('fc', b.input, 3, 4))
    local W = net:param('fc.weight')
    for i = 0, 11 do W:data()[i] = (i % 5) * 0.25 - 0.5 end
    return net
  end

  it('returns the logit and its gradient (a row of W)', function()
    local net = linear_net()
    local x = T.from({ 0.5, -1, 2 }, { 1, 3 })
    local scores, g = oracle.grad(net, x, { 2 })
    local W, bias = net:param('fc.weight'), net:param('fc.bias')
    local z2 = bias:get(3)
    for j = 1, 3 do z2 = z2 + W:get(3, j) * x:get(1, j) end
    assert.is_true(math.abs(scores[1] - z2) < 1e-6)
    for j = 1, 3 do assert.are.equal(W:get(3, j), g:get(1, j)) end
    -- a linear score has no curvature
    local hv = oracle.hvp(net, x, { 2 }, T.ones { 1, 3 })
    assert.are.equal(0, hv:norm())
  end)

  it('computes log-softmax and softmax scores with exact gradients and HVPs (seed 21)', function()
    local net = small_net(21)
    local x = T.randn({ 3, 2, 6, 6 }, { seed = 21 })
    local v = T.randn({ 3, 2, 6, 6 }, { seed = 22 })
    local labels = { 1, 4, 0 }
    for _, score in ipairs { 'logit', 'log_softmax', 'softmax' } do
      local opts = { score = score }
      local s, g = oracle.grad(net, x, labels, opts)
      local hv = oracle.hvp(net, x, labels, v, opts)
      -- gradient: directional finite difference of the scores
      local h = 1e-2
      local sp = oracle.grad(net, x:clone():add_(v, h), labels, opts)
      local sm = oracle.grad(net, x:clone():add_(v, -h), labels, opts)
      for n = 1, 3 do
        local gv = g:narrow(n):dot(v:narrow(n))
        local fd = (sp[n] - sm[n]) / (2 * h)
        assert.is_true(math.abs(gv - fd) <= 2e-3 * (math.abs(gv) + math.abs(fd)) + 1e-6,
          ('%s grad item %d: %g vs %g'):format(score, n, gv, fd))
      end
      -- HVP: finite difference of the gradient
      local _, gp = oracle.grad(net, x:clone():add_(v, h), labels, opts)
      local _, gm = oracle.grad(net, x:clone():add_(v, -h), labels, opts)
      local fd = gp:add_(gm, -1):mul_(1 / (2 * h))
      assert.is_true(gc.rel(hv, fd) < 3e-3, score .. ' hvp rel ' .. gc.rel(hv, fd))
      if score == 'softmax' then
        for n = 1, 3 do assert.is_true(s[n] > 0 and s[n] < 1) end
      elseif score == 'log_softmax' then
        for n = 1, 3 do assert.is_true(s[n] < 0) end
      end
    end
  end)

  it('rejects labels out of range, wrong label counts and unknown scores', function()
    local net = linear_net()
    local x = T.zeros { 2, 3 }
    assert.has_error(function() oracle.grad(net, x, { 0, 4 }) end,
      'oracle.grad: label 4 of item 1 is outside 0..3')
    assert.has_error(function() oracle.grad(net, x, { 0 }) end, 'oracle: 1 labels for a batch of 2')
    assert.has_error(function() oracle.grad(net, x, { 0, 1 }, { score = 'prob' }) end,
      "oracle: unknown score 'prob' (logit, log_softmax or softmax)")
  end)
end)

describe('sample sizes at the C entry points (issue 13)', function()
  local function new_net()
    local p = ffi.new('mr_net*[1]')
    core.check(C.mr_net_new(p))
    return ffi.gc(p[0], C.mr_net_free)
  end

  it('mr_net_input refuses a sample whose dims multiply past int64 or past INT_MAX entries', function()
    local net = new_net()
    local huge = ffi.new('int64_t[3]', { 2 ^ 31, 2 ^ 31, 2 ^ 31 })
    assert.are.equal(C.MR_EINVAL, C.mr_net_input(net, 3, huge))
    assert.are.equal('mr_net_input: entries per sample = 2147483648*2147483648*2147483648 overflows int64',
      ffi.string(C.mr_last_error()))
    local big = ffi.new('int64_t[3]', { 3, 32768, 32768 })
    assert.are.equal(C.MR_EINVAL, C.mr_net_input(net, 3, big))
    assert.are.equal('mr_net_input: entries per sample = 3221225472 is over INT_MAX (2147483647), the most an '
      .. "int size parameter (OpenBLAS, oneDNN's int arguments, loop bounds) takes", ffi.string(C.mr_last_error()))
    assert.are.equal(0, C.mr_net_node_count(net))
    assert.are.equal(0, C.mr_net_input(net, 3, ffi.new('int64_t[3]', { 1, 32768, 32768 })))
  end)

  it('mr_net_node refuses an op output over INT_MAX entries (adaptive pooling to 2^31 - 1 squared)', function()
    -- the output's N * numel * 4 bytes wrapped to 0 in the workspace, which the pass then wrote past
    local net = new_net()
    assert.are.equal(0, C.mr_net_input(net, 3, ffi.new('int64_t[3]', { 1, 2, 2 })))
    local a = ffi.new('mr_op_attrs')
    a.out_size[0], a.out_size[1] = 2147483647, 2147483647
    local inputs = ffi.new('int[1]', { 0 })
    assert.are.equal(C.MR_EINVAL, C.mr_net_node(net, 'adaptive_avgpool2d', inputs, 1, nil, 0, a, 'pool'))
    assert.are.equal('pool: adaptive_avgpool2d output entries per sample = 4611686014132420609 is over INT_MAX '
      .. "(2147483647), the most an int size parameter (OpenBLAS, oneDNN's int arguments, loop bounds) takes",
      ffi.string(C.mr_last_error()))
    assert.are.equal(1, C.mr_net_node_count(net))
    a.out_size[0], a.out_size[1] = 3, 3
    assert.are.equal(1, C.mr_net_node(net, 'adaptive_avgpool2d', inputs, 1, nil, 0, a, 'pool'))
  end)
end)
