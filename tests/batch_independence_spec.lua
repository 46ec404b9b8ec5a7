-- An item's map depends only on (its image, its label, the options, the seed
-- [, its id]) — docs/determinism.md. The same image is explained alone, as
-- item 3 of a batch of 7 and as item 40 of a batch of 64, with chunk 1, 5 and
-- automatic, and the maps are compared bit for bit. Then the memory budget of
-- the automatic chunk (issue 11, kind 7): peak engine memory with the
-- defaults, and maps equal for every chunk.
local ffi = require 'ffi'
local T = require 'moreau.tensor'
local nn = require 'moreau.nn'
local methods = require 'moreau.methods'
local prox = require 'moreau.prox'
local core = require 'moreau.core'
local C = core.C

local SEED = 21

local function softplus_net(seed) return require('helpers.nets').softplus_net { seed = seed } end

local net = softplus_net()
local z = T.randn({ 1, 1, 6, 6 }, { seed = SEED, stream = 1 }) -- the image followed
local ZLABEL = 1

--- A batch of N random images with z at position pos (1-based), and labels.
local function batch_with(N, pos)
  local items, labels = {}, {}
  for n = 1, N do
    if n == pos then
      items[n], labels[n] = z, ZLABEL
    else
      items[n], labels[n] = T.randn({ 1, 1, 6, 6 }, { seed = SEED, stream = 100 + n }), (n * 7) % 3
    end
  end
  return T.cat(items), labels
end

local placements = { { 1, 1 }, { 7, 3 }, { 64, 40 } }

--- The map of z inside each placement, for method m: a list of tensors (1, 1, 6, 6).
local function maps_of_z(explain)
  local out = {}
  for _, p in ipairs(placements) do
    local x, labels = batch_with(p[1], p[2])
    out[#out + 1] = explain(x, labels):select(p[2])
  end
  return out
end

-- Bit for bit. The network kernels must be batch-invariant for this (the
-- GEMM of a batch of 64 against one of 1): if they are not, say so with the
-- relative difference, which then shows the noise and stopping parts are right.
local function same(a, b, what)
  local diff = a:max_abs_diff(b)
  assert(diff == 0, ('%s: maps differ by %.3g (relative %.3g; seed %d)'):format(what, diff,
    diff / math.max(b:abs():max(), 1e-30), SEED))
end

local cases = {
  { 'smoothgrad', { samples = 6, seed = 7 } },
  { 'smoothgrad', { samples = 6, seed = 7, variant = 'vargrad' } },
  { 'sparsified_smoothgrad', { samples = 6, seed = 7, clip = 0.1, keep = 0.5 } },
  { 'moreaugrad', { T = 4, m = 16, K = 2, reg = 'l1', eta = 0.005, seed = 3 } },
  { 'moreaugrad', { T = 200, m = 0, K = 5, tol = 1e-5, accelerated = true } },
  { 'integrated_gradients', { steps = 7 } },
}

describe('an item\'s map does not depend on its batch', function()
  for _, c in ipairs(cases) do
    local name, base = c[1], c[2]
    for _, chunk in ipairs { 1, 5, 0 } do
      local o = {}
      for k, v in pairs(base) do o[k] = v end
      o.chunk = chunk
      local m = methods[name](o)
      it(tostring(m) .. ': alone, item 3 of 7, item 40 of 64', function()
        local maps = maps_of_z(function(x, labels) return m:explain(net, x, labels) end)
        assert.is_true(maps[1]:abs():max() > 0, 'a nonzero map')
        same(maps[2], maps[1], tostring(m) .. ' item 3 of 7 vs alone')
        same(maps[3], maps[1], tostring(m) .. ' item 40 of 64 vs alone')
      end)
    end
    it(name .. ': chunk 1, 5 and automatic give the same map', function()
      local x, labels = batch_with(7, 3)
      local ref
      for _, chunk in ipairs { 0, 1, 5 } do
        local o = {}
        for k, v in pairs(base) do o[k] = v end
        o.chunk = chunk
        local E = methods[name](o):explain(net, x, labels)
        if ref then same(E, ref, name .. ' chunk ' .. chunk .. ' vs automatic') else ref = E end
      end
    end)
  end

  it('explain_vjp: the map and the VJP of an item do not depend on its batch', function()
    local u = T.randn({ 1, 1, 6, 6 }, { seed = SEED, stream = 2 })
    for _, m in ipairs { methods.smoothgrad { samples = 4, seed = 5 },
      methods.smoothgrad { samples = 4, seed = 5, variant = 'vargrad', chunk = 3 },
      methods.sparsified_smoothgrad { samples = 4, seed = 5, clip = 0.1, keep = 0.5 },
      methods.moreaugrad { T = 6, m = 4, K = 2, seed = 5 } } do
      local ref_v, ref_E
      for _, p in ipairs(placements) do
        local x, labels = batch_with(p[1], p[2])
        local U = T.zeros(x:shape())
        ffi.copy(U:data() + (p[2] - 1) * 36, u:data(), 36 * 4)
        local v, E = m:explain_vjp(net, x, labels, U)
        v, E = v:select(p[2]), E:select(p[2])
        if ref_v then
          same(E, ref_E, m.name .. ' explain_vjp map, batch ' .. p[1])
          same(v, ref_v, m.name .. ' explain_vjp, batch ' .. p[1])
        else
          ref_v, ref_E = v, E
        end
      end
      -- and E is explain's map
      same(ref_E, m:explain(net, z, { ZLABEL }), m.name .. ' explain_vjp map vs explain')
    end
  end)

  it('keys the noise by content, not by label: one changed pixel changes the key', function()
    local x = batch_with(7, 3)
    local keys = methods.item_keys(x)
    local kz = methods.item_keys(z)[1]
    assert.are.equal(kz, keys[3])
    local z2 = z:clone()
    z2:data()[17] = z2:data()[17] + 2 ^ -20
    assert.are_not.equal(kz, methods.item_keys(z2)[1])
    -- two copies of the same image share their key, hence their noise
    local twice = T.cat { z, z }
    local k2 = methods.item_keys(twice)
    assert.are.equal(k2[1], k2[2])
    local E = methods.smoothgrad { samples = 3, seed = 1 }:explain(net, twice, { ZLABEL, ZLABEL })
    same(E:select(2), E:select(1), 'two copies of one image')
    -- whatever the labels: the two classes' maps are those computed one at a time
    local other = (ZLABEL + 1) % 10
    local E2 = methods.smoothgrad { samples = 3, seed = 1 }:explain(net, twice, { ZLABEL, other })
    same(E2:select(2), methods.smoothgrad { samples = 3, seed = 1 }:explain(net, z, { other }), 'class 2 alone')
  end)

  it('takes ids from the caller: the same ids give the same noise to different images', function()
    local m = methods.smoothgrad { samples = 4, seed = 2 }
    local x, labels = batch_with(7, 3)
    -- ids given: the noise follows the id, whatever the position
    local a = m:explain(net, x, labels, { 11, 12, 13, 14, 15, 16, 17 })
    local b = m:explain(net, z, { ZLABEL }, { 13 })
    same(a:select(3), b, 'id 13 at position 3 vs alone')
    -- an id equal to the content key reproduces the default
    local c = m:explain(net, z, { ZLABEL }, methods.item_keys(z))
    same(c, m:explain(net, z, { ZLABEL }), 'content key as id')
    -- MoreauGrad's solver takes them too
    local s1 = prox.solver(net, x, labels, { T = 3, m = 2, K = 1, seed = 4 }, { 1, 2, 3, 4, 5, 6, 7 })
    local s2 = prox.solver(net, z, { ZLABEL }, { T = 3, m = 2, K = 1, seed = 4 }, { 3 })
    s1:run()
    s2:run()
    same(s1:result():select(3), s2:result(), 'solver ids')
  end)

  it('rejects bad ids naming the position', function()
    local m = methods.smoothgrad { samples = 2 }
    local x, labels = batch_with(7, 3)
    assert.has_error(function() m:explain(net, x, labels, { 1, 2 }) end,
      'smoothgrad:explain: ids must be a Lua array of 7 ids (one per item), got 2 entries')
    assert.has_error(function() m:explain(net, x, labels, { 1, 2, 3, -4, 5, 6, 7 }) end,
      'smoothgrad:explain: ids[4] = -4 is not an integer in [0, 2^53) or a uint64_t')
    assert.has_error(function() m:explain(net, x, labels, { 1, 2, 3, 4, 5.5, 6, 7 }) end,
      'smoothgrad:explain: ids[5] = 5.5 is not an integer in [0, 2^53) or a uint64_t')
    assert.has_error(function() m:explain(net, x, labels, 'abc') end,
      'smoothgrad:explain: ids must be a Lua array of 7 ids (one per item), got string')
  end)
end)

describe('perturbations of attacks and robustness metrics do not depend on the batch', function()
  local attacks = require 'moreau.attacks'
  local metrics = require 'moreau.metrics'

  it('gaussian, PGD random starts (linf, l2) and the mass-center direction of an item', function()
    local runs = {
      gaussian = function(x, l) return (attacks.gaussian { s = 0.3, seed = 3, keep_label = false }:run(net, nil, x, l)) end,
      pgd_linf = function(x, l)
        return (attacks.pgd { steps = 0, eps = 0.2, random_start = true, seed = 3 }:run(net, nil, x, l))
      end,
      pgd_l2 = function(x, l)
        return (attacks.pgd { norm = 'l2', steps = 0, eps = 0.5, random_start = true, seed = 3 }:run(net, nil, x, l))
      end,
    }
    for name, run in pairs(runs) do
      local got = maps_of_z(run)
      assert.is_true(got[1]:max_abs_diff(z) > 0, name .. ' moved z')
      for i = 2, #got do same(got[i], got[1], name .. ' at placement ' .. i) end
    end
  end)

  it('local_lipschitz and max_sensitivity of an item', function()
    for _, f in ipairs { 'local_lipschitz', 'max_sensitivity' } do
      local vals = {}
      for _, p in ipairs(placements) do
        if p[1] <= 7 then
          local x, labels = batch_with(p[1], p[2])
          vals[#vals + 1] = metrics[f](net, methods.gradient(), x, labels, { samples = 3, seed = 2 })[p[2]]
        end
      end
      assert.is_true(vals[1] > 0, f)
      assert.are.equal(vals[1], vals[2], f .. ': alone vs item 3 of 7')
    end
  end)

  it('the perturbation streams are not the method noise streams', function()
    local k, s = methods.item_keys(z)[1], methods.perturbation_streams(z)[1]
    assert.are_not.equal(k, s)
  end)
end)

describe('MoreauGrad stops each item on its own tolerance', function()
  -- m = 0 is deterministic: with a tolerance, an item that converges early
  -- must not keep iterating because a slower item shares its batch.
  -- z converges at iteration 19 (FISTA, tol 1e-5), item 2 of the batch at 21.
  for _, o in ipairs {
    { T = 400, m = 0, K = 1, tol = 1e-5, accelerated = true },  -- stops before the tail
    { T = 20, m = 0, K = 5, tol = 1e-5, accelerated = true },   -- stops inside the tail (4 of 5)
  } do
    it(('a converged item freezes (T %d, K %d): its map, iteration count and statistics are those it gets alone')
      :format(o.T, o.K), function()
      local alone = prox.solver(net, z, { ZLABEL }, o)
      alone:run()
      local x, labels = batch_with(7, 3)
      local together = prox.solver(net, x, labels, o)
      together:run()
      local st_alone, st = alone:stats(1), together:stats(3)
      assert.is_true(st_alone.converged and st_alone.iter < o.T, 'converges alone before T')
      assert.are.equal(st_alone.iter, st.iter)
      assert.is_true(st.converged)
      assert.are.equal(st_alone.objective, st.objective)
      same(together:result():select(3), alone:result(), 'moreau m = 0, tol')
      same(methods.moreaugrad(o):explain(net, x, labels):select(3), alone:result(), 'moreaugrad m = 0, tol')
      -- another item of the batch iterates longer, so the batch ran past z's stop
      local most = 0
      for n = 1, 7 do most = math.max(most, together:stats(n).iter) end
      assert.is_true(most > st.iter, 'the test needs a slower item in the batch')
    end)
  end
end)

describe('sampling methods bound their memory by default', function()
  local models = require 'moreau.models'

  it('the workspace estimate is what a pass of that batch holds', function()
    for _, tangents in ipairs { false, true } do
      local fresh = softplus_net(5)
      local est = ffi.new('int64_t[1]')
      core.check(C.mr_net_workspace_estimate(est, core.handle(fresh), 9, tangents and 1 or 0))
      local x = T.randn({ 9, 1, 6, 6 }, { seed = SEED })
      local oracle = require 'moreau.oracle'
      if tangents then
        oracle.hvp(fresh, x, 0, T.randn({ 9, 1, 6, 6 }, { seed = SEED, stream = 3 }))
      else
        oracle.grad(fresh, x, 0)
      end
      assert.are.equal(fresh:workspace_bytes(), tonumber(est[0]), tangents and 'hvp' or 'grad')
    end
  end)

  it('Sparsified SmoothGrad with its defaults on 4 Fashion-MNIST-sized images stays under the budget', function()
    local big = models.resnet_fmnist {}
    local x = T.rand({ 4, 1, 28, 28 }, { seed = SEED })
    -- the defaults but t = 32 (two passes of 120 and 8 copies): the bound holds
    -- per pass, and 4 x 256 copies of this ResNet take half a minute
    local m = methods.sparsified_smoothgrad { samples = 32 }
    local budget = methods.memory_budget()
    assert.are.equal(256 * 2 ^ 20, budget)
    C.mr_alloc_peak_reset()
    local base = tonumber(C.mr_alloc_live_bytes())
    m:explain(big, x, { 0, 1, 2, 3 })
    local used = tonumber(C.mr_alloc_peak_bytes()) - base
    print(('  sparsified_smoothgrad defaults, 4 images: peak %.1f MiB (budget %d MiB)'):format(used / 2 ^ 20,
      budget / 2 ^ 20))
    -- the budget covers the network and the per-copy buffers; the rest is O(N d)
    assert.is_true(used <= budget + 2 ^ 20, ('peak %d bytes > budget %d'):format(used, budget))
    -- and the old default (all 4 x 256 copies in one pass) would not fit
    local all = ffi.new('int64_t[1]')
    core.check(C.mr_net_workspace_estimate(all, core.handle(big), 4 * 256, 0))
    assert.is_true(tonumber(all[0]) > 4 * budget, 'one pass of every copy is far over the budget')
  end)

  it('honours a smaller budget from the option and from the global setter, with the same maps', function()
    -- the BLAS conv backend keeps no blocked copies outside the workspace, so
    -- the budget below is exactly the cost of 8 copies
    local backend = ffi.string(C.mr_get_conv_backend())
    core.check(C.mr_set_conv_backend('blas'))
    finally(function() C.mr_set_conv_backend(backend) end)
    local x, labels = batch_with(7, 3)
    -- (chunk 8: the BLAS GEMMs are not yet batch-invariant, so the reference
    -- takes the chunk the budget gives; other chunks are compared above)
    local ref = methods.sparsified_smoothgrad { samples = 16, seed = 3, clip = 0.1, keep = 0.5, chunk = 8 }
      :explain(net, x, labels)
    local per = ffi.new('int64_t[1]')
    core.check(C.mr_net_workspace_estimate(per, core.handle(net), 8, 0))
    local budget = tonumber(per[0]) + 8 * (2 * 36 * 4 + 8) -- room for 8 copies per pass
    for _, how in ipairs { 'option', 'global' } do
      local o = { samples = 16, seed = 3, clip = 0.1, keep = 0.5 }
      if how == 'option' then o.memory_budget = budget else methods.set_memory_budget(budget) end
      C.mr_alloc_peak_reset()
      local base = tonumber(C.mr_alloc_live_bytes())
      local E = methods.sparsified_smoothgrad(o):explain(net, x, labels)
      local used = tonumber(C.mr_alloc_peak_bytes()) - base
      methods.set_memory_budget(nil)
      same(E, ref, 'budget by ' .. how)
      -- the workspace may already hold more (it never shrinks); what was added stays in budget
      assert.is_true(used <= budget + 4 * 7 * 36 * 4 + 4096, how .. ': ' .. used .. ' > ' .. budget)
    end
    assert.are.equal(256 * 2 ^ 20, methods.memory_budget())
    -- integrated gradients and MoreauGrad take the same budget (8 points or copies per pass)
    for _, m in ipairs { methods.integrated_gradients { steps = 16, memory_budget = budget },
      methods.moreaugrad { T = 2, K = 1, m = 16, memory_budget = budget } } do
      local o8 = {}
      for key, v in pairs(m.opts) do o8[key] = v end
      o8.chunk, o8.memory_budget = 8, 0
      local ref8 = methods[m.name](o8):explain(net, x, labels)
      C.mr_alloc_peak_reset()
      local base = tonumber(C.mr_alloc_live_bytes())
      local E = m:explain(net, x, labels)
      local used = tonumber(C.mr_alloc_peak_bytes()) - base
      same(E, ref8, m.name .. ' by budget vs chunk 8')
      -- beyond the budget: O(N d) buffers (the map, the solver's iterates) only
      assert.is_true(used <= budget + 12 * 7 * 36 * 4 + 4096, m.name .. ': ' .. used .. ' > ' .. budget)
    end
    local k = ffi.new('int64_t[1]')
    core.check(C.mr_auto_chunk(k, core.handle(net), 7 * 16, 0, 2 * 36 * 4 + 8, budget))
    assert.are.equal(8, tonumber(k[0]))
    core.check(C.mr_auto_chunk(k, core.handle(net), 7 * 16, 0, 2 * 36 * 4 + 8, 1))
    assert.are.equal(1, tonumber(k[0]), 'one copy when nothing fits')
    assert.has_error(function() methods.set_memory_budget(-1) end,
      'methods.set_memory_budget: bytes must be an integer in [0, 2^62), got -1')
  end)
end)

describe('the memory budget with sizes past int64 (issue 13)', function()
  it('mr_net_workspace_estimate refuses a batch whose workspace passes 2^63 bytes', function()
    local bytes = ffi.new('int64_t[1]')
    assert.are.equal(C.MR_EINVAL, C.mr_net_workspace_estimate(bytes, core.handle(net), 0x4000000000000000LL, 0))
    assert.are.equal('mr_net_workspace_estimate: a batch of 4611686018427387904 needs more than 2^63 bytes',
      ffi.string(C.mr_last_error()))
    -- a batch within int64 is still estimated: linear in N for this net
    local a, b = ffi.new('int64_t[1]'), ffi.new('int64_t[1]')
    core.check(C.mr_net_workspace_estimate(a, core.handle(net), 2 ^ 20, 0))
    core.check(C.mr_net_workspace_estimate(b, core.handle(net), 2 ^ 21, 0))
    assert.is_true(b[0] > a[0] and a[0] > 0)
  end)

  it('mr_auto_chunk counts a per-copy cost past int64 as over any budget (it wrapped and fit)', function()
    local k = ffi.new('int64_t[1]')
    -- 50 copies of 2^62 bytes each wrapped to a negative cost, which "fit" every budget
    core.check(C.mr_auto_chunk(k, core.handle(net), 100, 0, 0x4000000000000000LL, 0))
    assert.are.equal(1, tonumber(k[0]))
    -- huge copy counts bisect within int32 and never multiply past int64
    core.check(C.mr_auto_chunk(k, core.handle(net), 0x7fffffffffffffffLL, 0, 0x7fffffffffffffffLL, 0))
    assert.are.equal(1, tonumber(k[0]))
    core.check(C.mr_auto_chunk(k, core.handle(net), 0x7fffffffffffffffLL, 1, 8, 0))
    assert.is_true(k[0] >= 1 and k[0] < 2 ^ 31)
  end)
end)
