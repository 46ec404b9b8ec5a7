-- Degenerate options (README "Option domains"): every option of every method,
-- attack, metric, solver, optimizer and recipe parameter has a declared
-- domain, and a value outside it raises a message naming the owner, the
-- option, the domain and the value; tensors that must match x are checked by
-- shape, not by element count; a Moreau solver that diverges stops with an
-- error naming the options to change and returns no map.
local ffi = require 'ffi'
local T = require 'moreau.tensor'
local nn = require 'moreau.nn'
local core = require 'moreau.core'
local options = require 'moreau.options'
local methods = require 'moreau.methods'
local attacks = require 'moreau.attacks'
local metrics = require 'moreau.metrics'
local prox = require 'moreau.prox'
local train = require 'moreau.train'
local recipe = require 'moreau.recipe'
local C = core.C

local NAN, INF = 0 / 0, math.huge
local SEED = 7

local function softplus_net(seed)
  local b = nn.builder({ 1, 6, 6 }, { seed = seed or 2 })
  local h = b:conv2d('c1', b.input, 1, 4, 3, { padding = 1 })
  h = b:softplus(h, { beta = 3 })
  return b:build(b:linear('fc', b:flatten(h), 144, 3))
end

--- A value as the messages show it (written out here, not taken from the code under test).
local function show(v)
  if type(v) == 'number' then
    if v == math.floor(v) and math.abs(v) < 1e18 then return ('%.0f'):format(v) end
    return tostring(v)
  end
  if type(v) == 'string' then return "'" .. v .. "'" end
  if type(v) == 'boolean' then return tostring(v) end
  return 'a ' .. type(v)
end

--- Walks cases {option, bad value, domain words}: make{[option] = value}
-- must raise exactly "WHO: option 'OPTION' must be WORDS, got SHOWN".
local function walk(who, make, cases)
  for _, c in ipairs(cases) do
    local name, bad, words, shown = c[1], c[2], c[3], c[4]
    local want = ("%s: option '%s' must be %s, got %s"):format(who, name, words, shown or show(bad))
    local ok, err = pcall(make, { [name] = bad })
    assert(not ok, ('%s{%s = %s} was accepted'):format(who, name, tostring(bad)))
    err = tostring(err):gsub('^[^:]*:%d+: ', ''):gsub(" %(did you mean '[^']*'%?%)$", '')
    assert.are.equal(want, err)
  end
end

local POS = 'a number > 0'
local NONNEG = 'a number >= 0'
local UNIT = 'a number in (0, 1]'
local INT1 = 'an integer >= 1'
local INT0 = 'an integer >= 0'
local SEEDW = 'an integer in [0, 2^53)'
local BOOL = 'true or false'
local BOUND = 'a number or ±inf (not NaN)'
local SCORE = "one of 'logit', 'log_softmax', 'softmax'"

-- bad values shared by the kinds of domain
local function ints(name, words, low)
  return { { name, low, words }, { name, low + 0.5, words }, { name, NAN, words, 'nan' }, { name, INF, words, 'inf' },
    { name, '3', words }, { name, 2 ^ 31, words .. ' (at most 2147483647)' } }
end
local function nums(name, words, low)
  return { { name, low, words }, { name, NAN, words, 'nan' }, { name, INF, words, 'inf' },
    { name, -INF, words, '-inf' }, { name, 'x', words } }
end
local function cat(...)
  local out = {}
  for _, t in ipairs { ... } do for _, c in ipairs(t) do out[#out + 1] = c end end
  return out
end
local seeds = { { 'seed', -1, SEEDW }, { 'seed', 1.5, SEEDW }, { 'seed', 2 ^ 53, SEEDW }, { 'seed', NAN, SEEDW, 'nan' } }
local function seed_cases() return seeds end

describe('option domains of the methods', function()
  it('gradient and input_x_gradient', function()
    walk('methods.gradient', methods.gradient, { { 'score', 'prob', SCORE }, { 'score', 1, SCORE } })
    walk('methods.input_x_gradient', methods.input_x_gradient, { { 'score', 'prob', SCORE } })
  end)

  it('integrated_gradients (steps = 0 used to return an all-zero map)', function()
    walk('methods.integrated_gradients', methods.integrated_gradients, cat(ints('steps', INT1, 0),
      ints('chunk', INT0, -1), {
        { 'steps', -3, INT1 },
        { 'rule', 'simpson', "one of 'riemann_right', 'gauss_legendre', 'trapezoid'" },
        { 'baseline', NAN, 'a tensor or a finite number', 'nan' },
        { 'baseline', 'zero', 'a tensor or a finite number' },
        { 'score', 'x', SCORE },
      }))
    assert.has_error(function() methods.integrated_gradients { rule = 'trapezoid', steps = 1 } end,
      "methods.integrated_gradients: option 'steps' must be an integer >= 2 with rule 'trapezoid', got 1")
  end)

  it('smoothgrad and sparsified_smoothgrad', function()
    local common = cat(ints('samples', INT1, 0), ints('chunk', INT0, -1), nums('sigma', NONNEG, -0.1), seed_cases(),
      { { 'score', 'x', SCORE } })
    walk('methods.smoothgrad', methods.smoothgrad, cat(common,
      { { 'variant', 'median', "one of 'mean', 'square', 'vargrad'" } }))
    walk('methods.sparsified_smoothgrad', methods.sparsified_smoothgrad, cat(common,
      nums('clip', UNIT, 0), nums('keep', UNIT, 0), { { 'clip', 1.5, UNIT }, { 'keep', 2, UNIT } }))
  end)

  it('deeplift', function()
    walk('methods.deeplift', methods.deeplift, { { 'baseline', INF, 'a tensor or a finite number', 'inf' },
      { 'baseline', {}, 'a tensor or a finite number', 'a table' } })
  end)

  it('moreaugrad: every solver option, and K <= T', function()
    walk('methods.moreaugrad', methods.moreaugrad, cat(nums('rho', POS, 0), nums('gamma', POS, 0),
      nums('sigma', NONNEG, -1), nums('eta', NONNEG, -1e-3), nums('tol', NONNEG, -1),
      ints('T', INT1, 0), ints('m', INT0, -1), ints('K', INT1, 0), ints('group_size', INT1, 0),
      ints('chunk', INT0, -1), seed_cases(), {
        { 'rho', -1, POS }, { 'gamma', -0.1, POS },
        { 'reg', 'l2', "one of 'none', 'l1', 'group'" },
        { 'output', 'map', "one of 'gradient', 'delta'" },
        { 'accelerated', 1, BOOL }, { 'accelerated', 'yes', BOOL },
        { 'groups', 3, 'a table' },
        { 'score', 'x', SCORE },
      }))
    assert.has_error(function() methods.moreaugrad { T = 10, K = 11 } end,
      "methods.moreaugrad: option 'K' must be an integer in [1, T = 10], got 11")
    assert.are.equal(10, methods.moreaugrad { T = 10 }.opts.K) -- derived K = min(101, T) is in range
  end)

  it('the Moreau solver and its knobs', function()
    local net, x = softplus_net(), T.randn({ 1, 1, 6, 6 }, { seed = SEED })
    walk('prox.solver', function(o) return prox.solver(net, x, { 1 }, o) end,
      cat(nums('rho', POS, 0), ints('T', INT1, 0), { { 'reg', 'lasso', "one of 'none', 'l1', 'group'" } }))
    local s = prox.solver(net, x, { 1 }, { T = 5, m = 0 })
    walk('solver:set', function(o) return s:set(o) end, cat(nums('rho', POS, 0), nums('gamma', POS, 0),
      nums('eta', NONNEG, -1)))
    assert.are.equal(1, s.opts.rho) -- a refused knob changes nothing
  end)

  it('every option of every method and attack has a domain, and every default lies in it', function()
    local function all(list, create)
      for _, name in ipairs(list) do
        local m = create(name)
        for k, v in pairs(m.opts) do
          local spec = m.domains[k]
          assert(spec, ('%s: option %s declares no domain'):format(name, k))
          assert(options.domain(spec).ok(v), ('%s: default %s = %s outside %s'):format(name, k, tostring(v), spec))
        end
      end
    end
    all(methods.list(), methods.create)
    all(attacks.list(), attacks.create)
    assert.are.equal(prox.domains, methods.moreaugrad().domains)
  end)
end)

describe('option domains of the attacks', function()
  local ball = cat(nums('eps', NONNEG, -1), ints('iters', INT0, -1), nums('alpha', POS, 0),
    { { 'lo', NAN, BOUND, 'nan' }, { 'hi', 'x', BOUND }, { 'fresh_noise', 0, BOOL } })
  it('topk', function()
    walk('attacks.topk', attacks.topk, cat(ball, ints('k', INT0, -1), nums('k_frac', UNIT, 0),
      { { 'k_frac', 1.01, UNIT } }))
  end)
  it('mass_center', function()
    walk('attacks.mass_center', attacks.mass_center, cat(ball, seed_cases()))
  end)
  it('gaussian', function()
    walk('attacks.gaussian', attacks.gaussian, cat(nums('s', NONNEG, -0.1), ints('tries', INT1, 0), seed_cases(),
      { { 'keep_label', 'no', BOOL }, { 'lo', NAN, BOUND, 'nan' } }))
  end)
  it('pgd', function()
    walk('attacks.pgd', attacks.pgd, cat(nums('eps', NONNEG, -1), nums('alpha', POS, 0), ints('steps', INT0, -1),
      seed_cases(), { { 'norm', 'l1', "one of 'linf', 'l2'" }, { 'random_start', 1, BOOL } }))
  end)
  it('a box with lo > hi, and a top-k larger than the map', function()
    assert.has_error(function() attacks.gaussian { lo = 1, hi = 0 } end,
      "attacks.gaussian: option 'lo' (1) must be <= option 'hi' (0)")
    assert.has_error(function() attacks.pgd { lo = 0.5, hi = -0.5 } end,
      "attacks.pgd: option 'lo' (0.5) must be <= option 'hi' (-0.5)")
    local net = softplus_net()
    local x = T.randn({ 1, 1, 6, 6 }, { seed = SEED })
    assert.has_error(function() attacks.topk { k = 37, iters = 1 }:run(net, methods.gradient(), x, { 0 }) end,
      "attacks.topk: option 'k' must be at most the 36 entries of an item, got 37")
  end)
end)

describe('option domains of the metrics', function()
  local a = T.randn({ 1, 1, 12, 12 }, { seed = SEED })
  local b = T.randn({ 1, 1, 12, 12 }, { seed = SEED + 1 })

  it('ssim: window = 0 scored 1.0 for unrelated maps, sigma = 0 gave NaN; both raise now', function()
    local function ssim(o) return metrics.ssim(a, b, o) end
    walk('metrics.ssim', ssim, cat(nums('sigma', POS, 0), {
      { 'window', 0, 'an odd integer >= 3' }, { 'window', 1, 'an odd integer >= 3' },
      { 'window', 4, 'an odd integer >= 3' }, { 'window', 3.5, 'an odd integer >= 3' },
      { 'percentile', 0, 'a number in (0, 100]' }, { 'percentile', 101, 'a number in (0, 100]' },
      { 'preset', 'skimage', "one of 'display', 'pytorch_ssim'" },
    }))
    walk('metrics.ssim', function(o) o.preset = 'pytorch_ssim' return ssim(o) end,
      { { 'window', 0, 'an odd integer >= 3' }, { 'sigma', 0, POS } })
  end)

  it('topk_intersection', function()
    walk('metrics.topk_intersection', function(o) return metrics.topk_intersection(a, b, o) end, cat(
      nums('frac', UNIT, 0), ints('k', INT1, 0), { { 'frac', 1.5, UNIT }, { 'signed', 1, BOOL } }))
    assert.has_error(function() metrics.topk_intersection(a, b, { fraction = 0.4 }) end,
      "metrics.topk_intersection: unknown option 'fraction' (frac, k, signed)")
    assert.has_error(function() metrics.topk_intersection(a, b, { k = 145 }) end,
      "metrics.topk_intersection: option 'k' must be at most the 144 entries of an item, got 145")
  end)

  it('local_lipschitz and max_sensitivity', function()
    local net, x = softplus_net(), T.randn({ 1, 1, 6, 6 }, { seed = SEED })
    local m = methods.gradient()
    walk('metrics.local_lipschitz', function(o) return metrics.local_lipschitz(net, m, x, { 0 }, o) end,
      cat(ints('samples', INT1, 0), nums('std', POS, 0), seed_cases(),
        { { 'mean', NAN, 'a finite number', 'nan' }, { 'normalise', 'yes', BOOL }, { 'abs', 0, BOOL } }))
    walk('metrics.max_sensitivity', function(o) return metrics.max_sensitivity(net, m, x, { 0 }, o) end,
      cat(ints('samples', INT1, 0), nums('radius', POS, 0), seed_cases()))
  end)
end)

describe('option domains of training', function()
  it('optimizers, the fit loop, augmentation and evaluation', function()
    walk('train.sgd', train.sgd, cat(nums('lr', NONNEG, -1), nums('momentum', 'a number in [0, 1)', 1),
      nums('weight_decay', NONNEG, -1), { { 'nesterov', 1, BOOL } }))
    walk('train.adam', train.adam, cat(nums('beta1', 'a number in [0, 1)', 1), nums('beta2', 'a number in [0, 1)', -0.1),
      { { 'betas', 0.9, 'a table' } }))
    assert.has_error(function() train.adam { betas = { 0.9, 1 } } end,
      "train.adam: option 'betas[2]' must be a number in [0, 1), got 1")
    local b = nn.builder({ 1, 4, 4 }, { seed = 1 })
    local net = b:build(b:linear('fc', b:flatten(b.input), 16, 2))
    local ds = { images = T.zeros { 4, 1, 4, 4 }, labels = { 0, 1, 0, 1 }, n = 4 }
    walk('train.fit', function(o) o.progress = 'off' return train.fit(net, ds, o) end, cat(ints('epochs', INT1, 0),
      ints('batch_size', INT1, 0), seed_cases(), nums('label_smoothing', 'a number in [0, 1]', -0.1),
      { { 'max_batches', 0, INT1 }, { 'log_every', 0, INT1 }, { 'drop_last', 'no', BOOL } }))
    walk('train.augment', function(o) return train.augment(ds.images, o) end, cat(ints('pad', INT0, -1),
      { { 'pad_value', NAN, 'a finite number', 'nan' }, { 'flip', 1, BOOL } }))
    walk('train.evaluate', function(o) return train.evaluate(net, ds, o) end, ints('batch_size', INT1, 0))
    assert.has_error(function() train.sgd(0.1) end, 'train.sgd: options must be a table, got 0.1')
  end)
end)

describe('recipe parameters', function()
  local lfs = require 'lfs'
  local function each_recipe(fn)
    for f in lfs.dir('recipes') do
      if f:match('%.lua$') then fn(recipe.load('recipes/' .. f), f) end
    end
  end

  it('every parameter of every shipped recipe declares a domain its default lies in', function()
    local count = 0
    each_recipe(function(r, f)
      for k, spec in pairs(r.params) do
        assert(spec.domain, ('%s: parameter %s declares no domain'):format(f, k))
        local d = options.domain(spec.domain)
        if spec.type == 'list' then
          for i, v in ipairs(spec.default) do assert(d.ok(v), ('%s: %s item %d'):format(f, k, i)) end
        else
          assert(d.ok(spec.default), ('%s: default of %s outside %s'):format(f, k, spec.domain))
        end
        count = count + 1
      end
    end)
    assert.is_true(count >= 50)
  end)

  it('refuse values outside the domain, naming the parameter, the item and the domain', function()
    local r = recipe.load('recipes/robustness.lua')
    assert.has_error(function() recipe.params(r, { images = '0' }) end,
      "robustness: parameter 'images' must be an integer >= 1, got 0")
    assert.has_error(function() recipe.params(r, { eps = '0.3,-1' }) end,
      "robustness: parameter 'eps' item 2 must be a number >= 0, got -1")
    assert.has_error(function() recipe.params(r, { ig_steps = '0' }) end,
      "robustness: parameter 'ig_steps' must be an integer >= 1, got 0")
    assert.has_error(function() recipe.params(r, { seed = '-2' }) end,
      "robustness: parameter 'seed' must be an integer in [0, 2^53), got -2")
    local c = recipe.load('recipes/compare_methods.lua')
    assert.has_error(function() recipe.params(c, { preset = 'slow' }) end,
      "compare_methods: parameter 'preset' must be one of 'paper', 'fast', got 'slow'")
    local t = recipe.load('recipes/train_fmnist.lua')
    assert.has_error(function() recipe.params(t, { momentum = '1' }) end,
      "train_fmnist: parameter 'momentum' must be a number in [0, 1), got 1")
    local s = recipe.load('recipes/rho_eta_sweep.lua')
    assert.has_error(function() recipe.params(s, { rhos = '0,nan' }) end,
      "rho_eta_sweep: parameter 'rhos' item 2 must be a number >= 0, got nan")
  end)
end)

describe('shapes are checked by shape, not by element count', function()
  local net = softplus_net()
  local x = T.randn({ 2, 1, 6, 6 }, { seed = SEED })

  it('a tensor baseline of integrated gradients and DeepLIFT', function()
    local flat = T.zeros { 2, 36 } -- 72 entries, as x
    assert.has_error(function() methods.integrated_gradients { baseline = flat, steps = 4 }:explain(net, x, { 0, 1 }) end,
      "integrated_gradients: option 'baseline' has shape 2x36, x has shape 2x1x6x6; they must be equal")
    assert.has_error(function()
      methods.integrated_gradients { baseline = flat, steps = 4 }:explain_vjp(net, x, { 0, 1 }, T.zeros(x:shape()))
    end, "integrated_gradients: option 'baseline' has shape 2x36, x has shape 2x1x6x6; they must be equal")
    assert.has_error(function() methods.deeplift { baseline = T.zeros { 1, 2, 6, 6 } }:explain(net, x, { 0, 1 }) end,
      "deeplift: option 'baseline' has shape 1x2x6x6, x has shape 2x1x6x6; they must be equal")
    -- a baseline of the right shape is used as given
    local x0 = T.full(x:shape(), 0.25)
    local a = methods.integrated_gradients { baseline = x0, steps = 4 }:explain(net, x, { 0, 1 })
    local b = methods.integrated_gradients { baseline = 0.25, steps = 4 }:explain(net, x, { 0, 1 })
    assert.are.equal(0, a:max_abs_diff(b))
  end)

  it('the engine: oracle, smoothgrad, DeepLIFT, the Moreau result and the L2-ball projection', function()
    local lab = ffi.new('int32_t[2]', { 0, 1 })
    local other = T.zeros { 2, 6, 6, 1 } -- the same 72 entries
    assert.are.equal(C.MR_ESHAPE, C.mr_oracle_grad(core.handle(net), core.handle(x), lab, C.MR_SCORE_LOGIT, nil, core.handle(other)))
    assert.are.equal('oracle.grad: grad has shape 2x6x6x1, x has 2x1x6x6', ffi.string(C.mr_last_error()))
    assert.are.equal(C.MR_ESHAPE, C.mr_oracle_hvp(core.handle(net), core.handle(x), lab, C.MR_SCORE_LOGIT, core.handle(other), nil, nil,
      core.handle(T.zeros(x:shape()))))
    local so = ffi.new('mr_smoothgrad_opts')
    so.samples, so.sigma = 2, 0.1
    assert.are.equal(C.MR_ESHAPE, C.mr_smoothgrad(core.handle(other), core.handle(net), core.handle(x), lab, so))
    assert.are.equal(C.MR_ESHAPE, C.mr_deeplift(core.handle(T.zeros(x:shape())), core.handle(net), core.handle(x), core.handle(other), lab))
    assert.are.equal('deeplift: baseline has shape 2x6x6x1, expected 2x1x6x6 (like x)',
      ffi.string(C.mr_last_error()))
    local s = prox.solver(net, x, { 0, 1 }, { T = 2, m = 0 })
    s:run()
    assert.are.equal(C.MR_ESHAPE, C.mr_moreau_result(core.handle(s), core.handle(other)))
    assert.are.equal('moreau_result: out has shape 2x6x6x1, the batch has shape 2x1x6x6',
      ffi.string(C.mr_last_error()))
    assert.are.equal(C.MR_ESHAPE, C.mr_proj_l2_ball(core.handle(other), core.handle(x), 1))
    local logits, lab2 = T.zeros { 2, 3 }, ffi.new('int32_t[2]', { 0, 1 })
    local loss = ffi.new('float[1]')
    assert.are.equal(C.MR_ESHAPE, C.mr_cross_entropy(loss, core.handle(T.zeros { 2, 3, 1 }), core.handle(logits), lab2, 0))
  end)

  it('elementwise tensor arithmetic', function()
    assert.has_error(function() return T.zeros { 2, 3 } + T.zeros { 3, 2 } end, 'add_: shapes 2x3 and 3x2 differ')
    assert.has_error(function() return T.zeros { 6 } * T.zeros { 1, 6 } end, 'mul_: shapes 6 and 1x6 differ')
  end)
end)

describe('a diverging Moreau solver', function()
  local net = softplus_net()
  local x = T.randn({ 2, 1, 6, 6 }, { seed = SEED })

  -- gamma = 50 with rho = 1: d -> (1 - gamma/rho) d = -49 d, |delta| explodes
  -- while still finite, and the bound 1000 rho max|g| catches it at once.
  it('stops with an error naming gamma and rho, while |delta| is still finite', function()
    for _, o in ipairs { { m = 0 }, { m = 4, seed = SEED }, { m = 0, accelerated = true }, { m = 0, reg = 'l1' } } do
      o.gamma, o.T = 50, 300
      local ok, err = pcall(function() return methods.moreaugrad(o):explain(net, x, { 0, 1 }) end)
      assert.is_false(ok)
      err = tostring(err)
      local it, dn = err:match('the solver diverged at iteration (%d+), item 1 of 2 %(|delta| = ([^,]+), bound')
      assert(it, err)
      assert.is_true(tonumber(it) <= 5 and tonumber(dn) < INF, err)
      assert.truthy(err:find('lower gamma (now 50) or raise rho (now 1)', 1, true), err)
    end
  end)

  it('refuses to step again or to return a map', function()
    local s = prox.solver(net, x, { 0, 1 }, { gamma = 50, T = 300, m = 0 })
    assert.has_error(function() s:run() end)
    assert.has_error(function() s:result() end,
      'moreau_result: the solver diverged; no map (lower gamma or raise rho)')
    assert.has_error(function() s:step() end, 'moreau_step: the solver diverged; make a new one with other options')
  end)

  it('catches a step size raised between iterations', function()
    local s = prox.solver(net, x, { 0, 1 }, { T = 300, m = 0 })
    for _ = 1, 5 do s:step() end
    s:set { gamma = 40 }
    local ok, err = pcall(function() for _ = 1, 20 do s:step() end end)
    assert.is_false(ok)
    assert.truthy(tostring(err):find('lower gamma (now 40)', 1, true), tostring(err))
  end)

  it('lets every run with gamma <= rho through (the bound is proved for it)', function()
    for _, o in ipairs { { gamma = 1, rho = 1 }, { gamma = 0.1, rho = 0.1 }, { gamma = 1e-3, rho = 1e-3 },
      { gamma = 1, rho = 1, accelerated = true }, { gamma = 1, rho = 1, m = 8, seed = SEED } } do
      o.T, o.m = 200, o.m or 0
      local map = methods.moreaugrad(o):explain(net, x, { 0, 1 })
      assert.is_true(map:isfinite())
    end
  end)
end)

describe('a diverging attack loop', function()
  -- a linear net whose logits overflow float32: every loss and map is non-finite
  local b = nn.builder({ 1, 4, 4 }, { seed = 1 })
  local net = b:build(b:linear('fc', b:flatten(b.input), 16, 2))
  net:param('fc.weight'):fill(1e38)
  local x = T.full({ 1, 1, 4, 4 }, 1)

  it('the interpretation attacks refuse a non-finite clean map instead of scoring it as a zero map', function()
    local b2 = nn.builder({ 1, 4, 4 }, { seed = 1 })
    local net2 = b2:build(b2:linear('fc', b2:softplus(b2:flatten(b2.input), { beta = 2 }), 16, 2))
    net2:param('fc.weight'):data()[3] = NAN -- the gradient map of class 0 holds a NaN
    local x2 = T.full({ 1, 1, 4, 4 }, 0.5)
    for _, name in ipairs { 'topk', 'mass_center' } do
      assert.has_error(function() attacks[name] { eps = 1, iters = 2 }:run(net2, methods.gradient(), x2, { 0 }) end,
        name .. ':run: item 1 of the clean map has NaN at position 4 of 16 (c=1, h=1, w=4)')
    end
  end)

  it('PGD stops with an error naming the step, the item and the loss', function()
    local ok, err = pcall(function() return attacks.pgd { steps = 3, eps = 0.1 }:run(net, nil, x, { 0 }) end)
    assert.is_false(ok)
    assert.truthy(tostring(err):find('pgd:run: the attack diverged at step 1 (item 1: cross-entropy', 1, true),
      tostring(err))
  end)
end)

-- Cases a new user's trial found (issue 11): each once silent or reported late.
describe('edges found by trying it as a new user', function()
  local net = softplus_net()
  local x = T.randn({ 2, 1, 6, 6 }, { seed = SEED, stream = 9 })
  local asserts = require 'helpers.asserts'

  it('numbers outside float32 are outside every numeric domain', function()
    asserts.error_with(function() methods.moreaugrad { rho = 1e39 } end,
      "option 'rho' must be a number > 0 (a float32 value: 0 or 1.2e-38 <= |v| <= 3.4e38), got 1e+39")
    asserts.error_with(function() methods.moreaugrad { rho = 1e-50 } end, "option 'rho' must be a number > 0")
    asserts.error_with(function() methods.smoothgrad { sigma = 1e39 } end, "option 'sigma' must be a number >= 0")
    asserts.error_with(function() methods.set_memory_budget(INF) end,
      'methods.set_memory_budget: bytes must be an integer in [0, 2^62), got inf')
  end)

  it('a baseline with NaN or Inf is named as the baseline', function()
    local b = T.zeros(x:shape())
    b:data()[5] = INF
    for _, name in ipairs { 'integrated_gradients', 'deeplift' } do
      asserts.error_with(function() methods[name] { baseline = b }:explain(net, x, { 0, 1 }) end,
        name .. ": option 'baseline' contains NaN or infinite values")
    end
  end)

  it('contradictory options are refused', function()
    asserts.error_with(function() methods.moreaugrad { reg = 'none', eta = 0.1 } end,
      "option 'eta' = 0.1 has no effect with reg = 'none'")
    asserts.error_with(function() attacks.topk { lo = INF } end, 'holds no point')
    asserts.error_with(function() attacks.pgd { hi = -INF } end, 'holds no point')
  end)

  it('group-sparse MoreauGrad records the group size it derived', function()
    local m = methods.moreaugrad { reg = 'group', T = 2, m = 0, K = 1 }
    m:explain(net, x, { 0, 1 })
    assert.are.equal(prox.default_group_size(6), m.opts.group_size)
  end)

  it('a method refuses x without the batch dim, saying so', function()
    asserts.error_with(function() methods.smoothgrad { samples = 2 }:explain(net, x:narrow(1, 1):reshape { 1, 6, 6 }, { 0 }) end,
      'smoothgrad:explain: x has shape 1x6x6, the network takes (N, 1, 6, 6); add a batch dim, x:reshape{1, 1, 6, 6}')
    asserts.error_with(function() methods.gradient():explain_vjp(net, x:reshape { 2, 36 }, { 0, 1 }, x) end,
      'gradient:explain_vjp: x has shape 2x36, the network takes (N, 1, 6, 6)')
  end)

  it('max-sensitivity of an all-zero x is NaN (undefined), not 0', function()
    local v = metrics.max_sensitivity(net, methods.gradient(), T.zeros { 1, 1, 6, 6 }, { 0 }, { samples = 2 })
    assert.is_true(v[1] ~= v[1])
  end)

  it('the Moreau solver takes cdata ids only as a uint64_t[N]', function()
    local short = ffi.new('uint64_t[1]')
    asserts.error_with(function() prox.solver(net, x, { 0, 1 }, { T = 2 }, short) end,
      'moreau solver: ids must be a Lua array of 2 ids (one per item) or a uint64_t[2]')
    prox.solver(net, x, { 0, 1 }, { T = 2 }, ffi.new('uint64_t[2]'))
  end)

  it('a list parameter must be non-empty, without empty items', function()
    local r = { name = 'r', params = { eps = { type = 'list', default = { 1 }, domain = 'num >= 0' } } }
    for _, bad in ipairs { '', '1,,2', ',1', '1,' } do
      asserts.error_with(function() recipe.params(r, { eps = bad }) end,
        "r: parameter 'eps' expects a non-empty comma-separated list without empty items, got '" .. bad .. "'")
    end
    assert.are.same({ 1, 2 }, recipe.params(r, { eps = '1,2' }).eps)
  end)

  it('a label that is not an integer is named with its value', function()
    asserts.error_with(function() methods.gradient():explain(net, x, { 0, 1.5 }) end,
      'oracle: labels[2] = 1.5 is not an integer class id')
  end)
end)

describe('review findings', function()
  local asserts = require 'helpers.asserts'
  local net = softplus_net()
  local x = T.randn({ 2, 1, 6, 6 }, { seed = SEED, stream = 11 })

  it('solver:set after convergence makes converged items iterate again', function()
    local s = prox.solver(net, x, { 0, 1 }, { reg = 'l1', eta = 1e-3, T = 300, m = 0, tol = 1e-3 })
    for _ = 1, 300 do if s:step() then break end end
    local before, it0 = s:result(), s:stats(1).iter
    assert.is_true(it0 < 300, 'converged before T')
    s:set { eta = 0.5 }
    for _ = 1, 5 do s:step() end
    assert.is_true(s:stats(1).iter > it0, 'item 1 iterates after set')
    assert.is_true(s:result():max_abs_diff(before) > 0, 'the new eta changes the map')
  end)

  it('memory_budget is a byte count: an integer', function()
    asserts.error_with(function() methods.smoothgrad { memory_budget = 1.5 } end,
      "methods.smoothgrad: option 'memory_budget' must be an integer in [0, 2^62), got 1.5")
    asserts.error_with(function() methods.moreaugrad { memory_budget = 1e30 } end,
      "option 'memory_budget' must be an integer in [0, 2^62)")
  end)

  it('explain_vjp of IG names a non-finite baseline', function()
    local b = T.zeros(x:shape())
    b:data()[3] = 0 / 0
    asserts.error_with(function() methods.integrated_gradients { baseline = b, steps = 2 }:explain_vjp(net, x, { 0, 1 }, x) end,
      "integrated_gradients: option 'baseline' contains NaN or infinite values")
  end)

  it('a shape error of explain points at the line that called explain', function()
    local line
    local function user()
      line = debug.getinfo(1, 'l').currentline + 1
      local m = methods.gradient():explain(net, x:reshape { 2, 36 }, { 0, 1 })
      return m
    end
    local ok, err = pcall(user)
    assert.is_false(ok)
    assert.truthy(tostring(err):find('options_spec.lua:' .. line .. ':', 1, true), err)
  end)
end)

describe('names outside a list', function()
  local asserts = require 'helpers.asserts'
  it('are refused with the valid names and the nearest one', function()
    asserts.error_with(function() methods.smoothgrad { variant = 'vargad' } end,
      "methods.smoothgrad: option 'variant' must be one of 'mean', 'square', 'vargrad', got 'vargad' (did you mean 'vargrad'?)")
    local ok, err = pcall(methods.smoothgrad, { variant = 'xyz' })
    assert.is_false(ok)
    assert.is_nil(tostring(err):find('did you mean', 1, true), err)
  end)

  it('recipe method lists are checked before anything runs', function()
    local r = recipe.load('recipes/explain.lua')
    asserts.error_with(function() recipe.params(r, { methods = 'gradient,smoothgrd' }) end,
      "explain: parameter 'methods' item 2 must be one of 'all', 'gradient', ",
      "got 'smoothgrd' (did you mean 'smoothgrad'?)")
  end)
end)

-- One parser (issue 12): options given as strings (recipe parameters, the
-- bench's command line) go through options.params; the labels of every
-- entry point through core.labels.
describe('options given as strings', function()
  local asserts = require 'helpers.asserts'
  local params = {
    n = { type = 'int', default = 2, domain = 'int >= 1' },
    rate = { type = 'number', default = 0.5, domain = 'num in (0, 1]' },
    mode = { type = 'string', default = 'fast', domain = 'one of fast, exact' },
    keep = { type = 'bool', default = false, domain = 'bool' },
    eps = { type = 'list', default = { 1 }, domain = 'num >= 0' },
  }

  it('split --key=value and --flag from the other arguments', function()
    local given, rest = options.parse_args { '--n=3', '--keep', 'file.lua', '--batch-size=8', '-x' }
    assert.are.same({ n = '3', keep = 'true', batch_size = '8' }, given)
    assert.are.same({ 'file.lua', '-x' }, rest)
  end)

  it('convert by type, check by domain, and name the owner with its noun', function()
    assert.are.same({ n = 3, rate = 0.25, mode = 'exact', keep = true, eps = { 0, 2 } },
      options.params('tool', params, { n = '3', rate = '0.25', mode = 'exact', keep = 'yes', eps = '0,2' }))
    assert.are.same({ n = 2, rate = 0.5, mode = 'fast', keep = false, eps = { 1 } }, options.params('tool', params, {}))
    asserts.error_with(function() options.params('tool', params, { m = '1' }, 'option') end,
      "tool: unknown option 'm' (options: eps, keep, mode, n, rate)")
    asserts.error_with(function() options.params('tool', params, { n = '1.5' }) end,
      "tool: parameter 'n' expects int, got '1.5'")
    asserts.error_with(function() options.params('tool', params, { keep = 'maybe' }) end,
      "tool: parameter 'keep' expects bool, got 'maybe'")
    asserts.error_with(function() options.params('tool', params, { n = '0' }, 'option') end,
      "tool: option 'n' must be an integer >= 1, got 0")
    asserts.error_with(function() options.params('tool', params, { rate = '0' }) end,
      "tool: parameter 'rate' must be a number in (0, 1], got 0")
    asserts.error_with(function() options.params('tool', params, { mode = 'exakt' }) end,
      "tool: parameter 'mode' must be one of 'fast', 'exact', got 'exakt' (did you mean 'exact'?)")
    asserts.error_with(function() options.params('tool', params, { eps = '1,-1' }) end,
      "tool: parameter 'eps' item 2 must be a number >= 0, got -1")
  end)

  it("take a list's 'all' (when its names include it) alone only", function()
    local lists = { only = { type = 'list', default = {}, domain = 'one of all, a, b' },
      plain = { type = 'list', default = { 'a' }, domain = 'one of a, b' } }
    assert.are.same({ 'all' }, options.params('tool', lists, { only = 'all' }).only)
    assert.are.same({ 'b', 'a' }, options.params('tool', lists, { only = 'b,a' }).only)
    asserts.error_with(function() options.params('tool', lists, { only = 'a,all' }) end,
      "tool: parameter 'only' lists 'all' (item 2) with other names; 'all' means every one: give it alone, or " ..
      "list only the ones you want")
    -- a list whose names do not include 'all' refuses it as any other name, listing the valid ones
    asserts.error_with(function() options.params('tool', lists, { plain = 'all' }) end,
      "tool: parameter 'plain' item 1 must be one of 'a', 'b', got 'all'")
  end)

  it('refuse a declaration with an unknown type or a domain outside the language', function()
    asserts.error_with(function() options.check_params('mine.lua', { a = { type = 'float' } }) end,
      "mine.lua: parameter 'a' has unknown type 'float'")
    asserts.error_with(function() options.check_params('mine.lua', { a = { type = 'int', domain = 'int ~ 3' } }) end,
      "mine.lua: parameter 'a': ", 'options: bad domain bound ~ 3')
    options.check_params('mine.lua', params)
  end)

  it('the bench declares its options the same way', function()
    local core = require 'moreau.core'
    local p = io.popen(('MOREAU_LIB=%q %q/scripts/moreau bench --threads=0 2>&1; echo "rc=$?"'):format(core.lib_path,
      core.root))
    local out = p:read('*a')
    p:close()
    assert.truthy(out:find("bench: option 'threads' must be an integer >= 1, got 0", 1, true), out)
    assert.truthy(out:find('rc=1', 1, true), out)
  end)
end)

describe('options of the recipes\' shared helpers', function()
  local asserts = require 'helpers.asserts'
  local ex = require 'moreau.experiment'
  it('experiment.methods checks its options and the method keys', function()
    asserts.error_with(function() ex.methods { preset = 'slow' } end,
      "experiment.methods: option 'preset' must be one of 'paper', 'fast', got 'slow'")
    asserts.error_with(function() ex.methods { only = { 'gradient', 'smoothgrd' } } end,
      "experiment.methods: option 'only[2]' must be one of 'all', 'gradient', ", "got 'smoothgrd' (did you mean 'smoothgrad'?)")
    asserts.error_with(function() ex.methods { samples = 0 } end,
      "experiment.methods: option 'samples' must be an integer >= 1, got 0")
    asserts.error_with(function() ex.methods { sample = 3 } end, "experiment.methods: unknown option 'sample'")
    local list = ex.methods { only = { 'smoothgrad', 'gradient' }, preset = 'fast', samples = 3 }
    assert.are.same({ 'gradient', 'smoothgrad' }, { list[1].key, list[2].key }) -- the figures' order
    assert.are.equal(3, list[2].make().opts.samples)
  end)

  it('experiment.images needs n and checks which', function()
    asserts.error_with(function() ex.images(nil, nil, nil, { start = 0 }) end,
      "experiment.images: option 'n' (the number of images) is required")
    asserts.error_with(function() ex.images(nil, nil, nil, { n = 2, which = 'wrong' }) end,
      "experiment.images: option 'which' must be one of 'all', 'correct', 'misclassified', got 'wrong'")
  end)
end)

describe('labels, one helper for the oracle and training', function()
  local asserts = require 'helpers.asserts'
  it('convert arrays, cdata and one number to int32', function()
    local a = core.labels({ 3, 0, 7 }, 3)
    assert.are.same({ 3, 0, 7 }, { a[0], a[1], a[2] })
    local b = core.labels(5, 2)
    assert.are.same({ 5, 5 }, { b[0], b[1] })
    local into = ffi.new('int32_t[4]')
    assert.are.equal(into, core.labels(a, 3, into))
    assert.are.same({ 3, 0, 7 }, { into[0], into[1], into[2] })
  end)

  it('name the owner, the position and the value of a bad label', function()
    local logits = T.zeros { 2, 3 }
    asserts.error_with(function() train.cross_entropy(logits, { 0, 1.5 }) end,
      'train: labels[2] = 1.5 is not an integer class id')
    asserts.error_with(function() train.cross_entropy(logits, { 0 }) end, 'train: 1 labels for a batch of 2')
    asserts.error_with(function() core.labels({ 0, NAN }, 2) end, 'oracle: labels[2] = nan is not an integer class id')
    asserts.error_with(function() core.labels({ INF }, 1) end, 'oracle: labels[1] = inf is not an integer class id')
    asserts.error_with(function() core.labels(0.5, 3) end, 'oracle: labels = 0.5 is not an integer class id')
    -- 2^32 would wrap to a valid-looking int32
    asserts.error_with(function() core.labels({ 2 ^ 32 }, 1) end,
      'oracle: labels[1] = 4294967296 is outside the int32 range of class ids')
    asserts.error_with(function() core.labels('0,1', 2) end, 'oracle: labels must be a table of class ids, got string')
  end)

  it('stay private: no public module hands out the unchecked int32 array', function()
    assert.is_nil(require('moreau.oracle').labels)
    assert.is_nil(train.labels)
  end)
end)
