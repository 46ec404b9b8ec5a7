-- PyTorch parity of the interpretation methods on a small softplus CNN, from
-- tests/fixtures/methods.safetensors (made by scripts/make_method_fixtures.py:
-- float32 weights and inputs, references computed in float64 from them).
--
-- Every comparison is the relative error ‖a − b‖/‖b‖ (b the float64
-- reference), measured in double and printed. Bounds: float32 arithmetic on a
-- network this size gives ~1e-7..1e-6 (measured: 7e-8..6e-7, VarGrad 6e-6);
-- the bounds below leave headroom:
--   DET       1e-5   gradient, input × gradient, IG, DeepLIFT, SmoothGrad mean / square
--   VAR       1e-5   VarGrad by Welford's update (measured 3e-7; E[g²] − E[g]², as before, lost digits: 6e-6)
--   SOLVER    1e-5   MoreauGrad m = 0 (30 float32 iterations of a contraction; T and K
--                    are chosen so the tail still moves: T or K off by one changes the
--                    map by ~5e-3, and eta off by 0.1% by ~7e-4, so the bound catches both)
--   SPARSE    1e-5   Sparsified SmoothGrad: the top-k cut has a relative gap of at least
--                    1.5e-4 between the kept and the next |g| at every sample (the script
--                    refuses seeds with a gap below 1e-4), far above float32 error, so
--                    no selection flips and the map is compared like a deterministic one.
-- The noise of the sampling methods is the engine's own (Philox-4x32-10, keyed
-- by each item's content key as moreau.h's mr_item_keys defines it),
-- reproduced in the script; __rng_normal checks the generator alone and the
-- metadata's item_keys the key hash alone, so that a failure there is told
-- apart from one in a method.
local ffi = require 'ffi'
local T = require 'moreau.tensor'
local nn = require 'moreau.nn'
local st = require 'moreau.safetensors'
local methods = require 'moreau.methods'
local core = require 'moreau.core'

local FIXTURE = 'tests/fixtures/methods.safetensors'
local DET, VAR, SOLVER, SPARSE = 1e-5, 1e-5, 1e-5, 1e-5

-- The options the script used (its OPTS table); keep the two in step.
local IG_STEPS = 16
local SG = { samples = 32, sigma = 0.15, seed = 7 }
local SPARSIFIED = { samples = 32, sigma = 0.1, seed = 11, clip = 0.01, keep = 0.1 }
local SPARSIFIED_C05_K25 = { samples = 32, sigma = 0.1, seed = 12, clip = 0.05, keep = 0.25 }
local MG = { m = 0, T = 30, gamma = 0.1, rho = 1, K = 10 }
local MG_ETA = { none = 0, l1 = 0.05, group = 0.2 }
local MG_GROUP_SIZE, MG_K_DELTA = 2, 5

--- The script's nn.Sequential, so the parameter names are 0.weight ... 5.bias.
local function build_net()
  return nn.build(nn.Sequential {
    nn.Conv2d(2, 4, 3, { padding = 1 }), nn.Softplus { beta = 3 },
    nn.Conv2d(4, 4, 3, { stride = 2, padding = 1 }), nn.Softplus { beta = 3 },
    nn.Flatten(), nn.Linear(64, 3),
  }, { 2, 7, 7 })
end

--- ‖a − b‖/‖b‖ in double.
local function rel(a, b)
  assert(a:numel() == b:numel(), ('sizes differ: %d vs %d'):format(a:numel(), b:numel()))
  local pa, pb, num, den = a:data(), b:data(), 0, 0
  for i = 0, a:numel() - 1 do
    num = num + (pa[i] - pb[i]) ^ 2
    den = den + pb[i] ^ 2
  end
  return math.sqrt(num) / math.sqrt(den)
end

local function opts(base, extra)
  local o = {}
  for k, v in pairs(base) do o[k] = v end
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

describe('methods: PyTorch parity (float64 references, softplus CNN)', function()
  local fx, meta = st.load(FIXTURE)
  local net = build_net()
  net:load(FIXTURE, { strict = false }) -- the file also holds the __ references
  local x = fx.__x
  local labels = {}
  for i = 0, fx.__labels:numel() - 1 do labels[i + 1] = math.floor(fx.__labels:data()[i] + 0.5) end

  -- Compares, prints the error (busted prints it in verbose runs) and asserts.
  local function agree(what, got, ref, bound)
    local e = rel(got, fx[ref])
    print(('  parity %-34s rel %.3e  (bound %.0e)'):format(what, e, bound))
    assert.is_true(e <= bound, ('%s: relative error %.3e > %.0e'):format(what, e, bound))
  end

  it('the weights load by their nn.Sequential names and the logits agree', function()
    for _, name in ipairs { '0.weight', '0.bias', '2.weight', '2.bias', '5.weight', '5.bias' } do
      assert.are.equal(0, net:param(name):max_abs_diff(fx[name]), name)
    end
    agree('logits', net:forward(x), '__logits', DET)
  end)

  it('the engine draws the noise the script reproduces (Philox-4x32-10 + Box-Muller)', function()
    local ref = fx.__rng_normal
    local got = T.zeros { ref:numel() }
    core.check(core.C.mr_rng_normal(got:data(), ref:numel(), 7, 1, 3, 0, 1))
    -- Box-Muller runs through libm in double and is rounded once to float32:
    -- a different libm could move a value by one float32 ulp, no more.
    for i = 0, ref:numel() - 1 do
      local a, b = got:data()[i], ref:data()[i]
      assert.is_true(math.abs(a - b) <= 2 ^ -23 * math.max(math.abs(b), 1e-30) * 1.0001,
        ('normal %d: engine %.9g, script %.9g'):format(i, a, b))
    end
  end)

  it('the engine hashes each item to the noise key the script computes (FNV-1a 64 + SplitMix64)', function()
    local want = {}
    for hex in meta.item_keys:gmatch('%x+') do want[#want + 1] = hex end
    local got = methods.item_keys(x)
    assert.are.equal(#want, #got)
    for n = 1, #got do
      assert.are.equal(want[n], ('%016x'):format(got[n]):sub(1, 16), 'item ' .. n)
    end
  end)

  it('gradient', function()
    agree('gradient', methods.gradient():explain(net, x, labels), '__gradient', DET)
  end)

  it('input x gradient', function()
    agree('input_x_gradient', methods.input_x_gradient():explain(net, x, labels), '__input_x_gradient', DET)
  end)

  for _, rule in ipairs { 'riemann_right', 'gauss_legendre', 'trapezoid' } do
    it('integrated gradients, ' .. rule .. ', ' .. IG_STEPS .. ' steps', function()
      local m = methods.integrated_gradients { steps = IG_STEPS, rule = rule }
      agree('ig ' .. rule, m:explain(net, x, labels), '__ig_' .. rule, DET)
    end)
  end

  for _, variant in ipairs { 'mean', 'square', 'vargrad' } do
    it('smoothgrad ' .. variant .. ' with the engine\'s noise', function()
      local m = methods.smoothgrad(opts(SG, { variant = variant }))
      agree('smoothgrad ' .. variant, m:explain(net, x, labels), '__smoothgrad_' .. variant,
        variant == 'vargrad' and VAR or DET)
    end)
  end

  it('smoothgrad does not depend on the chunk size', function()
    local whole = methods.smoothgrad(opts(SG, { variant = 'mean' })):explain(net, x, labels)
    local chunked = methods.smoothgrad(opts(SG, { variant = 'mean', chunk = 5 })):explain(net, x, labels)
    agree('smoothgrad mean, chunk 5', chunked, '__smoothgrad_mean', DET)
    assert.are.equal(0, chunked:max_abs_diff(whole))
  end)

  it('sparsified smoothgrad (clip 0.01, keep 0.1)', function()
    agree('sparsified_smoothgrad', methods.sparsified_smoothgrad(SPARSIFIED):explain(net, x, labels),
      '__sparsified_smoothgrad', SPARSE)
  end)

  it('sparsified smoothgrad (clip 0.05, keep 0.25)', function()
    agree('sparsified_smoothgrad c05 k25',
      methods.sparsified_smoothgrad(SPARSIFIED_C05_K25):explain(net, x, labels),
      '__sparsified_smoothgrad_c05_k25', SPARSE)
  end)

  it('deeplift (rescale rule, zero baseline)', function()
    agree('deeplift', methods.deeplift():explain(net, x, labels), '__deeplift', DET)
  end)

  for _, case in ipairs { { 'vanilla', 'none' }, { 'sparse', 'l1' }, { 'group', 'group' } } do
    local name, reg = case[1], case[2]
    local o = opts(MG, { reg = reg, eta = MG_ETA[reg] })
    if reg == 'group' then o.group_size = MG_GROUP_SIZE end

    it('moreaugrad ' .. name .. ', m = 0, output gradient', function()
      agree('moreaugrad ' .. name, methods.moreaugrad(o):explain(net, x, labels), '__mg_' .. name, SOLVER)
    end)

    it('moreaugrad ' .. name .. ', m = 0, output delta, K = ' .. MG_K_DELTA, function()
      local od = opts(o, { output = 'delta', K = MG_K_DELTA })
      agree('moreaugrad ' .. name .. ' delta', methods.moreaugrad(od):explain(net, x, labels),
        '__mg_' .. name .. '_delta', SOLVER)
    end)
  end
end)
