-- The registry of moreau.methods: one file per method under
-- bindings/moreau/methods/, each exporting defaults, explain and explain_vjp;
-- the entry check that scans x for NaN and infinities once per call; and the
-- engine's noise and sparsification helpers that explain_vjp shares with
-- mr_smoothgrad (mr_noise_copies, mr_sparsify_counts).
local ffi = require 'ffi'
local lfs = require 'lfs'
local core = require 'moreau.core'
local T = require 'moreau.tensor'
local methods = require 'moreau.methods'
local ev = require 'moreau.explain_vjp'
local C = core.C

local SEED = 11

--- The method files in the source tree (every .lua but the shared common.lua), sorted.
local function method_files()
  local names = {}
  for f in lfs.dir('bindings/moreau/methods') do
    local name = f:match('^(.+)%.lua$')
    if name and name ~= 'common' then names[#names + 1] = name end
  end
  table.sort(names)
  return names
end

local function net()
  return require('helpers.nets').softplus_net { seed = SEED }
end

describe('the methods registry', function()
  it('lists every method file, and only those', function()
    assert.are.same(method_files(), methods.list())
    assert.are.equal(7, #methods.list())
  end)

  it('each file exports its name, doc, defaults with domains, explain and explain_vjp', function()
    for _, name in ipairs(method_files()) do
      local impl = require('moreau.methods.' .. name)
      assert.are.equal(name, impl.name, name)
      assert.are.equal('string', type(impl.doc), name)
      assert.are.equal('table', type(impl.defaults), name)
      assert.are.equal('table', type(impl.defaults._domains), name)
      assert.are.equal('function', type(impl.explain), name)
      if name == 'deeplift' then
        -- false, not missing: DeepLIFT's multipliers are not a gradient
        assert.are.equal(false, impl.explain_vjp)
        assert.is_nil(impl.vjp_kind)
      else
        assert.are.equal('function', type(impl.explain_vjp), name)
        assert.truthy(impl.vjp_kind == 'exact' or impl.vjp_kind == 'surrogate', name)
      end
      assert.are.equal(impl, methods.impl(name))
      local m = methods.create(name)
      assert.are.equal(impl, methods.impl(m))
      assert.are.equal(name, m.name)
      assert.are.equal(impl.doc, m.doc)
      assert.are.equal(name ~= 'deeplift', ev.supported(m), name)
      assert.are.equal(impl.vjp_kind == 'surrogate' and 'surrogate' or 'exact', ev.kind(m), name)
    end
  end)

  it('has the surrogate kinds the explain_vjp header states', function()
    local surrogate = {}
    for _, name in ipairs(methods.list()) do
      if ev.kind(methods.create(name)) == 'surrogate' then surrogate[#surrogate + 1] = name end
    end
    assert.are.same({ 'moreaugrad', 'sparsified_smoothgrad' }, surrogate)
  end)

  it('refuses unknown names with the list of methods', function()
    assert.has_error(function() methods.create('lime') end,
      "methods: unknown method 'lime' (deeplift, gradient, input_x_gradient, integrated_gradients, moreaugrad, " ..
      "smoothgrad, sparsified_smoothgrad)")
    assert.has_error(function() methods.create('common') end,
      "methods: unknown method 'common' (deeplift, gradient, input_x_gradient, integrated_gradients, moreaugrad, " ..
      "smoothgrad, sparsified_smoothgrad)")
  end)
end)

describe('a non-finite input', function()
  -- small options so every method runs fast
  local OPTS = { integrated_gradients = { steps = 3 }, smoothgrad = { samples = 2 },
    sparsified_smoothgrad = { samples = 2 }, moreaugrad = { T = 3 } }

  --- Runs fn counting the isfinite scans of tensor x. RETURN: count, fn's error (or nil).
  local function scans_of(x, fn)
    local Tensor = T.Tensor
    local isfinite, count = Tensor.isfinite, 0
    Tensor.isfinite = function(self)
      if self == x then count = count + 1 end
      return isfinite(self)
    end
    local ok, err = pcall(fn)
    Tensor.isfinite = isfinite
    return count, (not ok) and err or nil
  end

  local function strip(err) return (tostring(err):gsub('^.-:%d+: ', '', 1)) end

  for _, name in ipairs(methods.list()) do
    it(name .. ': is reported once, at the entry, with the message of explain and explain_vjp', function()
      local m = methods.create(name, OPTS[name])
      local x = T.randn({ 2, 1, 6, 6 }, { seed = SEED, stream = 1 })
      local u = T.randn({ 2, 1, 6, 6 }, { seed = SEED, stream = 2 })
      local labels = { 0, 2 }
      local nt = net()
      -- a finite x is scanned once per call
      local count, err = scans_of(x, function() m:explain(nt, x, labels) end)
      assert.is_nil(err, name .. ': ' .. tostring(err))
      assert.are.equal(1, count, name .. ':explain scans of x (seed ' .. SEED .. ')')
      if ev.supported(m) then
        count, err = scans_of(x, function() m:explain_vjp(nt, x, labels, u) end)
        assert.is_nil(err, name .. ': ' .. tostring(err))
        assert.are.equal(1, count, name .. ':explain_vjp scans of x')
      end
      -- NaN and infinities: one scan, the error of today's message
      for _, bad in ipairs { 0 / 0, math.huge, -math.huge } do
        x:data()[37] = bad
        count, err = scans_of(x, function() m:explain(nt, x, labels) end)
        assert.are.equal(1, count)
        assert.are.equal(name .. ':explain: x contains NaN or infinite values', strip(err))
        count, err = scans_of(x, function() m:explain_vjp(nt, x, labels, u) end)
        if ev.supported(m) then
          assert.are.equal(1, count)
          assert.are.equal(name .. ':explain_vjp: x contains NaN or infinite values', strip(err))
        else
          assert.are.equal(0, count)
          assert.are.equal('deeplift:explain_vjp: not available (deeplift is not gradient-based)', strip(err))
        end
      end
    end)
  end

  it('is refused by the engine\'s SmoothGrad with the entry that holds it', function()
    local nt = net()
    local x = T.randn({ 2, 1, 6, 6 }, { seed = SEED, stream = 1 })
    x:data()[41] = 0 / 0
    local so = ffi.new('mr_smoothgrad_opts')
    so.samples, so.mode, so.sigma = 2, C.MR_SG_MEAN, 0.1
    local lab = ffi.new('int32_t[2]', { 0, 2 })
    local out = T.zeros(x:shape())
    assert.are.equal(C.MR_EINVAL, C.mr_smoothgrad(core.handle(out), core.handle(nt), core.handle(x), lab, so))
    assert.are.equal('input: entry 41 is NaN', ffi.string(C.mr_last_error()))
  end)
end)

describe('the engine as the one home of the noise', function()
  local x = T.randn({ 3, 1, 6, 6 }, { seed = SEED, stream = 1 })
  local N, d = 3, 36
  local keys = require('moreau.methods.common').keys(x, nil, 'test', 2)

  local function scales(sigma)
    local s = ffi.new('float[?]', N)
    assert.are.equal(0, C.mr_noise_scales(s, nil, nil, core.handle(x), sigma))
    return s
  end

  it('mr_noise_copies with sigma = 0 copies each item, exactly', function()
    local xb = T.zeros { 7, 1, 6, 6 }
    assert.are.equal(0, C.mr_noise_copies(core.handle(xb), nil, core.handle(x), scales(0), keys, 5, 4, 3))
    for q = 0, 6 do
      local n = math.floor((3 + q) / 4)
      for j = 0, d - 1 do
        assert.are.equal(x:data()[n * d + j], xb:data()[q * d + j], ('copy %d entry %d'):format(q, j))
      end
    end
  end)

  it('mr_noise_copies draws copy (n, i) = x_n + s_n z from (seed, key n, offset i d), z in eps', function()
    local s = scales(0.2)
    local xb, eps = T.zeros { 5, 1, 6, 6 }, ffi.new('float[?]', 5 * d)
    -- copies 4..8 of 3 items x 3 samples: (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)
    assert.are.equal(0, C.mr_noise_copies(core.handle(xb), eps, core.handle(x), s, keys, 9, 3, 4))
    local z = ffi.new('float[?]', d)
    for q = 0, 4 do
      local n, i = math.floor((4 + q) / 3), (4 + q) % 3
      assert.are.equal(0, C.mr_rng_normal(z, d, 9, keys[n], i * d, 0, 1))
      for j = 0, d - 1 do
        assert.are.equal(z[j], eps[q * d + j])
        -- x + s z in float32: within one rounding of each step
        local want = x:data()[n * d + j] + s[n] * z[j]
        assert.is_true(math.abs(xb:data()[q * d + j] - want) <= 1e-6 * (1 + math.abs(want)),
          ('copy %d entry %d: %.9g vs %.9g'):format(q, j, xb:data()[q * d + j], want))
      end
    end
  end)

  it('mr_noise_copies refuses copies past the end and a wrong shape', function()
    local xb = T.zeros { 2, 1, 6, 6 }
    assert.are.equal(C.MR_EINVAL, C.mr_noise_copies(core.handle(xb), nil, core.handle(x), scales(0.1), keys, 0, 2, 5))
    assert.are.equal('noise_copies: copies 5..6 out of range for 3 items x 2 samples', ffi.string(C.mr_last_error()))
    local bad = T.zeros { 2, 36 }
    assert.are.equal(C.MR_ESHAPE, C.mr_noise_copies(core.handle(bad), nil, core.handle(x), scales(0.1), keys, 0, 2, 0))
    assert.are.equal('noise_copies: xb 2x36 must be (k, sample shape) of x 3x1x6x6', ffi.string(C.mr_last_error()))
  end)

  it('mr_sparsify_counts takes the product in float32, as mr_smoothgrad does', function()
    local ck, kk = ffi.new('int64_t[1]'), ffi.new('int64_t[1]')
    -- 0.21f * 300 = 62.999996 in float32 (63 in double): 62;
    -- 0.41f * 300 = 123 in float32 (122.99999999999999 in double): 123
    assert.are.equal(0, C.mr_sparsify_counts(ck, kk, 300, 0.21, 0.41))
    assert.are.equal(62, tonumber(ck[0]))
    assert.are.equal(123, tonumber(kk[0]))
    -- at least one entry: floor(0.01 * 36) = 0 -> 1
    assert.are.equal(0, C.mr_sparsify_counts(ck, kk, 36, 0.01, 0.1))
    assert.are.equal(1, tonumber(ck[0]))
    assert.are.equal(3, tonumber(kk[0]))
    assert.are.equal(C.MR_EINVAL, C.mr_sparsify_counts(ck, kk, 36, 0, 0.1))
    assert.are.equal('smoothgrad: sparsified needs clip and keep fractions in (0, 1], got 0 and 0.1',
      ffi.string(C.mr_last_error()))
  end)
  it('mr_sparsify_thresholds gives tau and keep as the clip_k-th and keep_k-th largest |g|', function()
    local g = ffi.new('float[6]', { 0.5, -3, 2, 0, -1, 2 })
    local tau, keep, scratch = ffi.new('float[1]'), ffi.new('float[1]'), ffi.new('float[6]')
    -- |g| descending: 3, 2, 2, 1, 0.5, 0
    assert.are.equal(0, C.mr_sparsify_thresholds(tau, keep, g, 6, 2, 4, scratch))
    assert.are.equal(2, tau[0])
    assert.are.equal(1, keep[0])
    assert.are.equal(0, C.mr_sparsify_thresholds(tau, keep, g, 6, 1, 6, scratch))
    assert.are.equal(3, tau[0])
    assert.are.equal(0, keep[0])
    assert.are.equal(-3, g[1], 'g is left as it was')
    assert.are.equal(C.MR_EINVAL, C.mr_sparsify_thresholds(tau, keep, g, 6, 0, 4, scratch))
    assert.are.equal('sparsify_thresholds: clip_k (0) and keep_k (4) must be in [1, d = 6]',
      ffi.string(C.mr_last_error()))
    assert.are.equal(C.MR_EINVAL, C.mr_sparsify_thresholds(tau, keep, g, 6, 2, 7, scratch))
  end)
end)

describe('sizes the noise helpers take as plain numbers (issue 13)', function()
  local x = T.randn({ 3, 1, 6, 6 }, { seed = SEED, stream = 2 })
  local keys = require('moreau.methods.common').keys(x, nil, 'test', 2)
  local s = ffi.new('float[3]', { 0.1, 0.1, 0.1 })

  it('mr_noise_copies refuses a first copy whose end overflows int64 (it read past x before)', function()
    local xb = T.zeros { 2, 1, 6, 6 }
    local p0 = 0x7fffffffffffffffLL -- INT64_MAX
    assert.are.equal(C.MR_EINVAL, C.mr_noise_copies(core.handle(xb), nil, core.handle(x), s, keys, 0, 2, p0))
    assert.are.equal('noise_copies: 2 copies from copy 9223372036854775807: out of range for 3 items x 2 samples',
      ffi.string(C.mr_last_error()))
    assert.are.equal(C.MR_EINVAL, C.mr_noise_copies(core.handle(xb), nil, core.handle(x), s, keys, 0, 2147483647,
      ffi.new('int64_t', 2 ^ 40)))
    assert.are.equal('noise_copies: copies 1099511627776..1099511627777 out of range for 3 items x 2147483647 samples',
      ffi.string(C.mr_last_error()))
  end)

  it('mr_sparsify_counts caps the float32 product at d and refuses d < 1', function()
    local ck, kk = ffi.new('int64_t[1]'), ffi.new('int64_t[1]')
    -- float(16777219) = 16777220: the count was d + 1, and the selection read one entry past the item
    assert.are.equal(0, C.mr_sparsify_counts(ck, kk, 16777219, 1, 1))
    assert.are.equal(16777219, tonumber(ck[0]))
    assert.are.equal(16777219, tonumber(kk[0]))
    -- below the cap the float32 product is unchanged: float(16777219) * 0.5 = 8388610
    assert.are.equal(0, C.mr_sparsify_counts(ck, kk, 16777219, 0.5, 1))
    assert.are.equal(8388610, tonumber(ck[0]))
    -- INT64_MAX: float(d) = 2^63, whose cast back to int64 was undefined
    local dmax = 0x7fffffffffffffffLL
    assert.are.equal(0, C.mr_sparsify_counts(ck, kk, dmax, 1, 1))
    assert.is_true(ck[0] == dmax and kk[0] == dmax)
    for _, d in ipairs { 0, -5 } do
      assert.are.equal(C.MR_EINVAL, C.mr_sparsify_counts(ck, kk, d, 0.5, 0.5))
      assert.are.equal('sparsify_counts: d must be >= 1 entries, got ' .. d, ffi.string(C.mr_last_error()))
    end
  end)
end)
