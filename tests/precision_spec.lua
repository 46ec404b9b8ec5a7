-- The precision setting (moreau.set_precision, mr_set_precision): fp32 is the
-- default and keeps its bits; bf16 is what moreau.h says it is (each conv's
-- inputs rounded to bfloat16, products accumulated in float32), keeps the
-- thread-count and batch invariance of docs/promises.md, moves maps by a
-- measured amount, and is refused with the instruction set named where
-- oneDNN has no bf16 kernels.
--
-- Truths: a conv computed in double from the bfloat16-rounded inputs (the
-- rounding written from its definition, round to nearest even at 8
-- significant bits); exact equality for the invariances; the fp32 maps for
-- the bf16 ones, within the bounds of docs/promises.md, section 9.
local ffi = require 'ffi'
local moreau = require 'moreau'
local core = require 'moreau.core'
local T = require 'moreau.tensor'
local models = require 'moreau.models'
local metrics = require 'moreau.metrics'
local gc = require 'helpers.gradcheck'
local cli = require 'helpers.cli'
local invariance = require 'helpers.invariance'
-- Thread counts are compared here: the team must be the count asked for,
-- not fewer threads because another process is busy (moreau.set_adaptive_threads).
moreau.set_adaptive_threads(false)
local C = core.C
local unpack = table.unpack or unpack

local function with_seed(seed, msg) return ('%s (seed %d)'):format(msg, seed) end

-- An error message without the 'file:line: ' position that error() prepends.
local function bare(err) return (tostring(err):gsub('^[^:]*:%d+: ', '')) end

-- The precision this process starts with, read before any test changes it.
local initial = moreau.get_precision()

-- Can this machine run bf16? (The refusal itself is tested below.)
local bf16_ok, bf16_why = pcall(moreau.set_precision, 'bf16')
moreau.set_precision('fp32')
local function need_bf16()
  if not bf16_ok then pending('no bf16 kernels here: ' .. bare(bf16_why)) end
  return bf16_ok
end

-- x rounded to bfloat16: round to nearest, ties to even, at 8 significant
-- bits (bfloat16 keeps float32's exponent and the top 7 stored bits of its
-- mantissa). frexp gives x = f·2^e with 0.5 <= |f| < 1, so |x|·2^(8−e) lies in
-- [128, 256) and its integer part is the 8 kept bits.
local function bf16(x)
  if x == 0 then return x end
  local f, e = math.frexp(x)
  local r = math.abs(f) * 256
  local lo = math.floor(r)
  local d = r - lo
  if d > 0.5 or (d == 0.5 and lo % 2 == 1) then lo = lo + 1 end
  return (f < 0 and -lo or lo) * 2 ^ (e - 8)
end

-- A copy of t with every entry rounded to bfloat16.
local function rounded(t)
  local out = t:clone()
  local p = out:data()
  for i = 0, out:numel() - 1 do p[i] = bf16(p[i]) end
  return out
end

-- Relative error ‖a − b‖/‖b‖ (sums in double).
local function rel(a, b)
  local num, den = 0, 0
  for i = 0, b:numel() - 1 do
    local d = a:data()[i] - b:data()[i]
    num, den = num + d * d, den + b:data()[i] ^ 2
  end
  return math.sqrt(num / den)
end

local function cosine(a, b)
  local ab, aa, bb = 0, 0, 0
  for i = 0, a:numel() - 1 do
    local x, y = a:data()[i], b:data()[i]
    ab, aa, bb = ab + x * y, aa + x * x, bb + y * y
  end
  return ab / math.sqrt(aa * bb)
end

-- The conv and its input gradient from the definition, in double, groups
-- allowed (stride s, padding p, no dilation):
--   y[n,o,i,j] = b[o] + Σ_{c,u,v} W[o,c,u,v] x[n, g(o)·Cg + c, i·s − p + u, j·s − p + v]
--   gx[n, g(o)·Cg + c, i·s − p + u, j·s − p + v] += W[o,c,u,v] gy[n,o,i,j]
local function ref_conv(x, w, bias, o, gy)
  local N, Cin, H, W = unpack(x:shape())
  local K, cg, kh, kw = unpack(w:shape())
  local s, p, G = o.stride or 1, o.padding or 0, o.groups or 1
  local kg = K / G
  local Ho, Wo = math.floor((H + 2 * p - kh) / s) + 1, math.floor((W + 2 * p - kw) / s) + 1
  local y, gx = T.zeros { N, K, Ho, Wo }, T.zeros(x:shape())
  local xp, wp, yp, gxp = x:data(), w:data(), y:data(), gx:data()
  local gyp = gy and gy:data()
  -- gx accumulates in a Lua table of doubles, rounded to float32 once
  local acc = {}
  for n = 0, N - 1 do
    for oc = 0, K - 1 do
      local g = math.floor(oc / kg)
      for i = 0, Ho - 1 do
        for j = 0, Wo - 1 do
          local sum = bias and bias:data()[oc] or 0
          local yi = ((n * K + oc) * Ho + i) * Wo + j
          for c = 0, cg - 1 do
            for u = 0, kh - 1 do
              local hh = i * s - p + u
              if hh >= 0 and hh < H then
                for v = 0, kw - 1 do
                  local ww = j * s - p + v
                  if ww >= 0 and ww < W then
                    local wv = wp[((oc * cg + c) * kh + u) * kw + v]
                    local xi = ((n * Cin + g * cg + c) * H + hh) * W + ww
                    sum = sum + wv * xp[xi]
                    if gyp then acc[xi] = (acc[xi] or 0) + wv * gyp[yi] end
                  end
                end
              end
            end
          end
          yp[yi] = sum
        end
      end
    end
  end
  for i, v in pairs(acc) do gxp[i] = v end
  return y, gx
end

-- One conv (with bias) as a net, parameters from a seeded normal.
local function conv_net(case, seed)
  return gc.net { input = case.input, seed = seed, build = function(b, x)
    return b:conv2d('c', x, case.input[1], case.cout, case.k, case.o)
  end }
end

-- Runs fn with the precision set to p, then puts fp32 back (also on error).
local function in_precision(p, fn)
  moreau.set_precision(p)
  local r = { pcall(fn) }
  moreau.set_precision('fp32')
  if not r[1] then error(r[2], 0) end
  return unpack(r, 2, table.maxn(r))
end

describe('precision', function()
  it('is fp32 unless set', function()
    assert.are.equal('fp32', initial)
    assert.are.equal('fp32', moreau.get_precision())
    assert.are.equal('fp32', ffi.string(C.mr_get_precision()))
  end)

  it('fp32 after bf16 gives the bits fp32 gave before, and runs no bf16 pass', function()
    local seed = 11
    local net = models.resnet_fmnist { num_classes = 10, beta = 10, width = 1, seed = seed }
    net:eval()
    local x = T.randn({ 5, 1, 28, 28 }, { seed = seed, stream = 1 })
    local labels = { 0, 3, 5, 7, 9 }
    local count0 = moreau.conv_bf16_passes()
    local s1, g1 = moreau.oracle.grad(net, x, labels)
    assert.are.equal(count0, moreau.conv_bf16_passes())
    if bf16_ok then
      local s2, g2 = in_precision('bf16', function() return moreau.oracle.grad(net, x, labels) end)
      assert.is_true(moreau.conv_bf16_passes() > count0)
      assert(g2:max_abs_diff(g1) > 0, with_seed(seed, 'the bf16 gradient equals the fp32 one: bf16 did not run'))
      count0 = moreau.conv_bf16_passes()
    end
    local s3, g3 = moreau.oracle.grad(net, x, labels)
    assert.are.equal(count0, moreau.conv_bf16_passes())
    assert.are.equal(0, g3:max_abs_diff(g1), with_seed(seed, 'fp32 gradient changed'))
    assert.are.same(s1, s3, with_seed(seed, 'fp32 scores changed'))
  end)

  -- Each case: a geometry class of tests/ops_conv_linear_spec.lua that the
  -- zoo nets use. The first layer (3 channels) computes its input gradient
  -- on the float32 im2col path (conv2d_dnnl.c: oneDNN pads it to 16
  -- channels), so its gradient matches the unrounded reference instead.
  local cases = {
    { name = 'first layer, 3 channels', input = { 3, 12, 12 }, cout = 16, k = 3, o = { padding = 1 },
      fp32_backward = true },
    { name = '3x3, 16 -> 16', input = { 16, 9, 9 }, cout = 16, k = 3, o = { padding = 1 } },
    { name = 'blocked 64 -> 128 stride 2', input = { 64, 8, 8 }, cout = 128, k = 3, o = { stride = 2, padding = 1 } },
    { name = '1x1 stride 2 (shortcut)', input = { 32, 8, 8 }, cout = 48, k = 1, o = { stride = 2 } },
    { name = 'depthwise 3x3', input = { 16, 8, 8 }, cout = 16, k = 3, o = { groups = 16, padding = 1 } },
    { name = 'grouped, 8 per group', input = { 16, 7, 7 }, cout = 16, k = 3, o = { groups = 2, padding = 1 } },
  }
  -- Bounds (rel): against the reference from the rounded inputs, float32
  -- accumulation only (measured at most 1.5e-7 over these cases); against the
  -- unrounded one, bf16's rounding (measured 2e-3): the bf16 kernel ran.
  local NEAR, FAR = 2e-6, 1e-4
  for ci, case in ipairs(cases) do
    it('bf16 conv = the conv of the bf16-rounded inputs, float32 sums: ' .. case.name, function()
      if not need_bf16() then return end
      local seed = 100 + ci
      local net = conv_net(case, seed)
      local x = T.randn({ 2, unpack(case.input) }, { seed = seed, stream = 1 })
      local w, b = net:param('c.weight'), net:param('c.bias')
      local count0 = moreau.conv_bf16_passes()
      local y, gx, gy = in_precision('bf16', function()
        local yy = net:forward(x)
        local u = T.randn(yy:shape(), { seed = seed, stream = 2 })
        return yy, net:backward(u), u
      end)
      local passes = moreau.conv_bf16_passes() - count0
      local y_bf, gx_bf = ref_conv(rounded(x), rounded(w), b, case.o, rounded(gy))
      local y_32, gx_32 = ref_conv(x, w, b, case.o, gy)
      local e_near, e_far = rel(y, y_bf), rel(y, y_32)
      local g_near, g_far = rel(gx, gx_bf), rel(gx, gx_32)
      print(('  %s: rel error from the rounded-input / float32 reference: forward %.2g / %.2g, '
        .. 'input gradient %.2g / %.2g'):format(case.name, e_near, e_far, g_near, g_far))
      assert(e_near <= NEAR, with_seed(seed, ('forward: %.3g from the rounded-input reference'):format(e_near)))
      assert(e_far >= FAR, with_seed(seed, ('forward: only %.3g from the float32 reference'):format(e_far)))
      if case.fp32_backward then
        assert.are.equal(1, passes)
        local e = rel(gx, gx_32)
        assert(e <= NEAR, with_seed(seed, ('input gradient: %.3g from the float32 reference'):format(e)))
      else
        assert.are.equal(2, passes)
        assert(g_near <= NEAR, with_seed(seed, ('input gradient: %.3g from the rounded-input reference'):format(g_near)))
        assert(g_far >= FAR, with_seed(seed, ('input gradient: only %.3g from the float32 reference'):format(g_far)))
      end
    end)
  end

  -- docs/promises.md, sections 2 and 3, in bf16: item 40 of a batch of 64 and
  -- item 3 of a batch of 7 give the bits of the item alone on one thread, for
  -- the four passes, on 1, 2 and 3 threads. (The rounding to bf16 is per
  -- entry and the bf16 kernels, like the float32 ones, never split a sum
  -- between threads or across the batch.)
  local function check_invariant(net, seed, what)
    in_precision('bf16', function() invariance.check(net, seed, what .. ' in bf16') end)
  end

  local inv_cases = {
    { name = 'blocked 64 -> 128 stride 2', input = { 64, 10, 10 }, cout = 128, k = 3, o = { stride = 2, padding = 1 } },
    { name = 'depthwise 3x3', input = { 16, 12, 12 }, cout = 16, k = 3, o = { groups = 16, padding = 1 } },
    { name = 'depthwise on a 2x2 map', input = { 32, 2, 2 }, cout = 32, k = 3, o = { groups = 32, padding = 1 } },
  }
  for ci, case in ipairs(inv_cases) do
    it('keeps thread-count and batch invariance: ' .. case.name, function()
      if not need_bf16() then return end
      local seed = 300 + ci
      check_invariant(gc.net { input = case.input, seed = seed, build = function(b, x)
        return b:softplus(b:conv2d('c', x, case.input[1], case.cout, case.k, case.o), { beta = 2 })
      end }, seed, case.name)
    end)
  end
  local zoo = {
    { name = 'resnet_fmnist', build = models.resnet_fmnist, opts = { num_classes = 10, beta = 10, width = 1 } },
    { name = 'efficientnet_b0 (small)', build = models.efficientnet_b0,
      opts = { num_classes = 10, width = 0.125, depth = 1, image_size = 32 } },
  }
  for zi, m in ipairs(zoo) do
    it('keeps thread-count and batch invariance: ' .. m.name, function()
      if not need_bf16() then return end
      local seed = 400 + zi
      local opts = { seed = seed }
      for k, v in pairs(m.opts) do opts[k] = v end
      check_invariant(m.build(opts), seed, m.name)
    end)
  end

  -- Sparse MoreauGrad (the bench's settings, fewer iterations) in fp32 and in
  -- bf16 from the same noise: the cosine of the maps and the top-40% overlap
  -- of |map| summed over channels. Bounds: docs/promises.md, section 9. The
  -- random-weight resnet18_cifar has input gradients near 1e-5, under the
  -- bench's threshold gamma·eta = 5e-4 (an all-zero map in both precisions),
  -- so it gets eta = 2e-6, a map with zeros and features.
  local map_cases = {
    { name = 'the shipped resnet_fmnist', eta = 5e-3, cos = 0.999, top = 0.95, build = function()
      local net, card = models.pretrained('resnet_fmnist')
      -- Fashion-MNIST test image 0 when the data set is installed, else noise
      local ok, test = pcall(moreau.data.fashion_mnist, { split = 'test' })
      if not ok then return net, T.randn({ 1, 1, 28, 28 }, { seed = 501, stream = 7 }) end
      local norm = card.data.normalization
      return net, moreau.data.normalize(moreau.data.get(test, 1), norm.mean, norm.std)
    end },
    { name = 'resnet18_cifar (width 1/4, random weights)', eta = 2e-6, cos = 0.999, top = 0.95, build = function()
      local net = models.resnet18_cifar { num_classes = 10, activation = 'softplus', width = 0.25, seed = 502 }
      return net, T.randn({ 1, 3, 32, 32 }, { seed = 502, stream = 7 })
    end },
  }
  for mi, case in ipairs(map_cases) do
    it('moves a Sparse MoreauGrad map by a bounded amount: ' .. case.name, function()
      if not need_bf16() then return end
      local seed = 500 + mi
      local net, x = case.build()
      net:eval()
      local method = moreau.methods.moreaugrad { reg = 'l1', rho = 1, gamma = 0.1, eta = case.eta, sigma = 0.1,
        T = 30, m = 8, K = 15, seed = seed }
      local logits = net:forward(x)
      local label = { 0 } -- the predicted class
      for c = 1, logits:numel() - 1 do
        if logits:data()[c] > logits:data()[label[1]] then label[1] = c end
      end
      local a = method:explain(net, x, label)
      local b = in_precision('bf16', function() return method:explain(net, x, label) end)
      local function pix(t)
        local s = t:shape()
        local out = T.zeros { 1, s[3] * s[4] }
        for c = 0, s[2] - 1 do
          for j = 0, s[3] * s[4] - 1 do
            out:data()[j] = out:data()[j] + math.abs(t:data()[c * s[3] * s[4] + j])
          end
        end
        return out
      end
      local cos = cosine(a, b)
      local top = metrics.topk_intersection(pix(a), pix(b), { frac = 0.4 })[1]
      local zeros = 0
      for i = 0, a:numel() - 1 do if a:data()[i] == 0 then zeros = zeros + 1 end end
      print(('  %s: bf16 vs fp32 map: cosine %.5f, top-40%% overlap %.4f, fp32 map sparsity %.3f (seed %d)'):format(
        case.name, cos, top, zeros / a:numel(), seed))
      assert(a:max_abs_diff(b) > 0, with_seed(seed, 'the bf16 map equals the fp32 one: bf16 did not run'))
      assert(cos >= case.cos, with_seed(seed, ('cosine %.5f below %g'):format(cos, case.cos)))
      assert(top >= case.top, with_seed(seed, ('top-40%% overlap %.4f below %g'):format(top, case.top)))
    end)
  end

  describe('errors', function()
    it('an unknown name or a non-string names the allowed ones', function()
      local ok, err = pcall(moreau.set_precision, 'fp16')
      assert.is_false(ok)
      assert.are.equal("unknown precision 'fp16' (expected 'fp32' or 'bf16')", bare(err))
      ok, err = pcall(moreau.set_precision, nil)
      assert.is_false(ok)
      assert.are.equal("moreau.set_precision: precision must be 'fp32' or 'bf16', got nil", bare(err))
      assert.are.equal(C.MR_ENOTFOUND, C.mr_set_precision('BF16'))
      assert.are.equal(C.MR_EINVAL, C.mr_set_precision(nil))
      assert.are.equal('fp32', moreau.get_precision())
    end)

    -- The refusal where oneDNN has no bf16 kernels, by its real path: oneDNN
    -- reads DNNL_MAX_CPU_ISA when it first dispatches, and the check asks it
    -- which instruction set it dispatches (a fresh process, as the cap holds
    -- for the life of one). A build without oneDNN refuses with its own message.
    it('bf16 without AVX-512 BF16 / AMX kernels is refused, naming the instruction set', function()
      local script = os.tmpname()
      cli.write(script, [[
local ok, err = pcall(require('moreau').set_precision, 'bf16')
io.write(ok and 'accepted' or tostring(err), '\n', require('moreau').get_precision(), '\n')
]])
      local p = io.popen(('cd %q && DNNL_MAX_CPU_ISA=AVX512_CORE MOREAU_LIB=%q LUA_PATH=%q luajit %q 2>&1'):format(
        core.root, core.lib_path, 'bindings/?.lua;bindings/?/init.lua;;', script))
      local out = p:read('*a')
      p:close()
      os.remove(script)
      local msg, now = out:match('^(.-)\n(.-)\n$')
      assert.truthy(msg, out)
      if not moreau.backend_info():find('built without oneDNN', 1, true) then
        assert.are.equal("precision 'bf16' needs AVX-512 BF16 or AMX instructions (oneDNN's avx512_core_bf16 "
          .. "or avx512_core_amx); oneDNN dispatches avx512_core on this machine (the CPU lacks them, or "
          .. "DNNL_MAX_CPU_ISA caps them)", bare(msg))
      else
        assert.are.equal("precision 'bf16' runs on oneDNN's bf16 kernels and this build has no oneDNN "
          .. "(install libdnnl-dev and rebuild)", bare(msg))
      end
      assert.are.equal('fp32', now)
    end)

    it('bf16 and the blas conv backend refuse each other', function()
      if not need_bf16() then return end
      moreau.set_conv_backend('blas')
      local ok, err = pcall(moreau.set_precision, 'bf16')
      moreau.set_conv_backend('onednn')
      assert.is_false(ok)
      assert.are.equal("precision 'bf16' runs on the conv backend 'onednn' and the backend is 'blas' "
        .. "(set the conv backend to 'onednn' first)", bare(err))
      assert.are.equal('fp32', moreau.get_precision())
      moreau.set_precision('bf16')
      ok, err = pcall(moreau.set_conv_backend, 'blas')
      moreau.set_precision('fp32')
      assert.is_false(ok)
      assert.are.equal("conv backend 'blas' has no bf16 kernels and the precision is 'bf16' "
        .. "(set the precision to 'fp32' first)", bare(err))
      assert.are.equal('onednn', moreau.get_conv_backend())
    end)
  end)

  describe('on the command line', function()
    local tmp = cli.tmpdir()
    it('explain --precision: an unknown value names the allowed ones; bf16 is recorded', function()
      local out, rc = cli.moreau('explain --precision=fp16 --methods=gradient')
      assert.are.equal(1, rc, out)
      assert.truthy(out:find("explain: parameter 'precision' must be one of 'fp32', 'bf16', got 'fp16'", 1, true), out)
      if not need_bf16() then return end
      out, rc = cli.moreau(('explain --precision=bf16 --methods=gradient --out=%q'):format(tmp .. '/e'))
      assert.are.equal(0, rc, out)
      local res = require('cjson').decode(cli.read(tmp .. '/e/results.json'))
      assert.are.equal('bf16', res.precision)
    end)
    it('bench --precision: an unknown value names the allowed ones', function()
      local out, rc = cli.moreau('bench --precision=fp16 --only=peak')
      assert.are.equal(1, rc, out)
      assert.truthy(out:find("bench: option 'precision' must be one of 'fp32', 'bf16', got 'fp16'", 1, true), out)
    end)
  end)
end)
