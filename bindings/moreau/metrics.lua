--- moreau.metrics — how much an explanation changes, and how sparse it is.
--
-- Every metric works per batch item and returns a Lua array of numbers, one
-- per item. Maps are tensors (N, ...) — (N, C, H, W) for the image metrics
-- (ssim) — and a pair of maps must have the same shape.
--
--   local d   = metrics.normalized_distance(E, E2)        -- {0.31, 0.12, ...}
--   local top = metrics.topk_intersection(E, E2)          -- share of the top-k kept
--   local s   = metrics.ssim(E, E2)                       -- display preset
--   local L   = metrics.local_lipschitz(net, method, x, labels, { samples = 20 })
--
-- Pair metrics (a: the original map, b: the attacked one):
--   normalized_distance  ‖a/‖a‖ − b/‖b‖‖₂ (a zero map stays the zero vector)
--   topk_intersection    |top_k(a) ∩ top_k(b)| / k, k = max(1, floor(frac · nnz(a))),
--                        frac = 0.4, nnz over all C·H·W entries; ranks |a| (signed = true:
--                        a itself, as the authors); ties broken by the lower index; NaN
--                        when a has no nonzero entry
--   ssim                 Wang et al. 2004 (see metrics.ssim)
--   spearman             Pearson correlation of the ranks, ties given their average rank;
--                        NaN when a map is constant
-- Single-map metrics:
--   gini                 Gini sparseness index of |a| (Hurley & Rickard 2009): with c the
--                        sorted |a| (ascending), n entries,
--                        G = 1 − 2 Σ_k (c_k/‖c‖₁)·(n − k + ½)/n;  0 for a zero map
--   sparsity             fraction of entries exactly 0
-- Robustness estimates that explain perturbed inputs (Quantus's definitions):
--   local_lipschitz, max_sensitivity (see below)
local T = require 'moreau.tensor'
local oracle = require 'moreau.oracle'

local floor, abs, sqrt, min, max = math.floor, math.abs, math.sqrt, math.min, math.max
local NAN = 0 / 0

local metrics = {}

--- N, d and the data pointer of a map; with b, checks that b matches.
local function items(a, b, what)
  if not T.is(a) then error(what .. ': expected a tensor, got ' .. type(a), 3) end
  if b ~= nil then
    if not T.is(b) then error(what .. ': expected a tensor, got ' .. type(b), 3) end
    local sa, sb = a:shape(), b:shape()
    local same = #sa == #sb
    for i = 1, #sa do same = same and sa[i] == sb[i] end
    if not same then
      error(('%s: maps of shapes %s and %s differ'):format(what, table.concat(sa, 'x'), table.concat(sb, 'x')), 3)
    end
  end
  local N = a:size(1)
  return N, a:numel() / N
end

-- ------------------------------------------------------------ distances

--- ‖a/‖a‖ − b/‖b‖‖₂ per item. ARGS: a, b (N, ...). RETURN: Lua array.
function metrics.normalized_distance(a, b)
  local N, d = items(a, b, 'normalized_distance')
  local pa, pb = a:data(), b:data()
  local out = {}
  for n = 0, N - 1 do
    local na, nb = 0, 0
    for j = n * d, n * d + d - 1 do
      na, nb = na + pa[j] * pa[j], nb + pb[j] * pb[j]
    end
    na, nb = sqrt(na), sqrt(nb)
    local sa, sb = na > 0 and 1 / na or 0, nb > 0 and 1 / nb or 0
    local s = 0
    for j = n * d, n * d + d - 1 do s = s + (pa[j] * sa - pb[j] * sb) ^ 2 end
    out[n + 1] = sqrt(s)
  end
  return out
end

-- --------------------------------------------------------------- top-k

--- The 0-based indices of the k largest keys of item n (ties: lower index first).
local function top_indices(p, n, d, k, signed)
  local idx = {}
  for j = 0, d - 1 do idx[j + 1] = j end
  local base = n * d
  local key = signed and function(j) return p[base + j] end or function(j) return abs(p[base + j]) end
  table.sort(idx, function(x, y)
    local kx, ky = key(x), key(y)
    if kx ~= ky then return kx > ky end
    return x < y
  end)
  local out = {}
  for i = 1, k do out[i] = idx[i] end
  return out
end

--- Share of the original's top-k entries that stay in the attacked map's top-k.
-- ARGS: a (original), b (attacked), opts {frac = 0.4, k (absolute, overrides
-- frac), signed = false}. RETURN: Lua array (NaN for an all-zero a).
function metrics.topk_intersection(a, b, opts)
  opts = opts or {}
  local N, d = items(a, b, 'topk_intersection')
  local frac, signed = opts.frac or 0.4, opts.signed or false
  local pa, pb = a:data(), b:data()
  local out = {}
  for n = 0, N - 1 do
    local k = opts.k
    if not k then
      local nnz = 0
      for j = n * d, n * d + d - 1 do if pa[j] ~= 0 then nnz = nnz + 1 end end
      k = nnz > 0 and max(1, floor(frac * nnz)) or 0
    end
    k = min(k, d)
    if k == 0 then
      out[n + 1] = NAN
    else
      local ta, tb = top_indices(pa, n, d, k, signed), top_indices(pb, n, d, k, signed)
      local inb = {}
      for _, j in ipairs(tb) do inb[j] = true end
      local c = 0
      for _, j in ipairs(ta) do if inb[j] then c = c + 1 end end
      out[n + 1] = c / k
    end
  end
  return out
end

-- ---------------------------------------------------------------- SSIM

--- The normalized 1-D Gaussian window of `size` taps (center (size−1)/2).
local function gauss1d(size, sigma)
  local w, s, c = {}, 0, (size - 1) / 2
  for i = 0, size - 1 do
    w[i] = math.exp(-((i - c) ^ 2) / (2 * sigma * sigma))
    s = s + w[i]
  end
  for i = 0, size - 1 do w[i] = w[i] / s end
  return w
end

--- Separable filtering of an H×W plane (0-based Lua array, row-major) with
-- the window w (size taps). mode 'valid': output (H−size+1)×(W−size+1);
-- 'same': H×W with zero padding (PyTorch's conv2d with padding size//2).
local function filter2d(img, H, W, w, size, mode)
  local r = floor(size / 2)
  local oh, ow, off
  if mode == 'valid' then oh, ow, off = H - size + 1, W - size + 1, 0 else oh, ow, off = H, W, -r end
  local tmp = {} -- rows H, columns ow: along w
  for h = 0, H - 1 do
    for x = 0, ow - 1 do
      local s = 0
      for i = 0, size - 1 do
        local c = x + off + i
        if c >= 0 and c < W then s = s + w[i] * img[h * W + c] end
      end
      tmp[h * ow + x] = s
    end
  end
  local out = {}
  for y = 0, oh - 1 do
    for x = 0, ow - 1 do
      local s = 0
      for i = 0, size - 1 do
        local rr = y + off + i
        if rr >= 0 and rr < H then s = s + w[i] * tmp[rr * ow + x] end
      end
      out[y * ow + x] = s
    end
  end
  return out, oh * ow
end

--- Mean SSIM of two H×W planes (0-based arrays) over the filter's outputs.
local function ssim_plane(X, Y, H, W, w, size, mode, C1, C2)
  local n = H * W
  local XX, YY, XY = {}, {}, {}
  for i = 0, n - 1 do
    XX[i], YY[i], XY[i] = X[i] * X[i], Y[i] * Y[i], X[i] * Y[i]
  end
  local ux, m = filter2d(X, H, W, w, size, mode)
  local uy = filter2d(Y, H, W, w, size, mode)
  local uxx = filter2d(XX, H, W, w, size, mode)
  local uyy = filter2d(YY, H, W, w, size, mode)
  local uxy = filter2d(XY, H, W, w, size, mode)
  local s = 0
  for i = 0, m - 1 do
    local a, b = ux[i], uy[i]
    local vx, vy, vxy = uxx[i] - a * a, uyy[i] - b * b, uxy[i] - a * b
    s = s + ((2 * a * b + C1) * (2 * vxy + C2)) / ((a * a + b * b + C1) * (vx + vy + C2))
  end
  return s / m, m
end

--- Structural similarity (Wang et al. 2004): 11×11 Gaussian window, sigma 1.5,
-- population (biased) local statistics, C1 = (0.01 L)², C2 = (0.03 L)².
-- ARGS: a, b (N, C, H, W), or (N, H, W) / (H, W)-like 3-D maps;
--   opts {preset = 'display' | 'pytorch_ssim', window = 11, sigma = 1.5,
--         percentile = 99 (display)}.
-- Presets:
--   display       (default) each map is first normalized for display exactly as
--                 moreau.viz.normalize does (s = Σ_c |map|, clipped at its 99th
--                 percentile q, divided by q), then SSIM of the two H×W planes with
--                 L = 1, averaged over the valid window positions — what
--                 skimage.metrics.structural_similarity(gaussian_weights=True,
--                 use_sample_covariance=False, data_range=1) returns. Needs H, W >= 11.
--   pytorch_ssim  the raw maps, each channel filtered by a zero-padded 'same'
--                 convolution, C1 = 0.01², C2 = 0.03² (L = 1), the mean over all
--                 channels and positions — pytorch-ssim's ssim(img1, img2) for one item.
-- RETURN: Lua array.
function metrics.ssim(a, b, opts)
  opts = opts or {}
  local N = items(a, b, 'ssim')
  local preset = opts.preset or 'display'
  local size, sigma = opts.window or 11, opts.sigma or 1.5
  local s = a:shape()
  local Cn, H, W
  if #s == 4 then Cn, H, W = s[2], s[3], s[4]
  elseif #s == 3 then Cn, H, W = 1, s[2], s[3]
  else error('ssim: maps must be (N, C, H, W) or (N, H, W), got ' .. table.concat(s, 'x'), 2) end
  local w = gauss1d(size, sigma)
  local out = {}
  if preset == 'display' then
    if H < size or W < size then
      error(('ssim: display preset needs H and W >= %d (the window), got %dx%d'):format(size, H, W), 2)
    end
    local viz = require 'moreau.viz'
    local a4, b4 = a, b
    if #s == 3 then a4, b4 = a:reshape { N, 1, H, W }, b:reshape { N, 1, H, W } end
    for n = 1, N do
      local ta = viz.normalize(a4, { item = n, percentile = opts.percentile })
      local tb = viz.normalize(b4, { item = n, percentile = opts.percentile })
      local X, Y = {}, {}
      for i = 0, H * W - 1 do X[i], Y[i] = ta[i + 1], tb[i + 1] end
      out[n] = ssim_plane(X, Y, H, W, w, size, 'valid', 0.01 ^ 2, 0.03 ^ 2)
    end
  elseif preset == 'pytorch_ssim' then
    local pa, pb = a:data(), b:data()
    local plane = H * W
    for n = 0, N - 1 do
      local acc = 0
      for c = 0, Cn - 1 do
        local X, Y = {}, {}
        local base = (n * Cn + c) * plane
        for i = 0, plane - 1 do X[i], Y[i] = pa[base + i], pb[base + i] end
        acc = acc + ssim_plane(X, Y, H, W, w, size, 'same', 0.01 ^ 2, 0.03 ^ 2)
      end
      out[n + 1] = acc / Cn
    end
  else
    error("ssim: unknown preset '" .. tostring(preset) .. "' (display or pytorch_ssim)", 2)
  end
  return out
end

-- ------------------------------------------------------------ Spearman

--- Average ranks (1-based) of the values p[base .. base+d−1].
local function ranks(p, base, d)
  local idx = {}
  for j = 0, d - 1 do idx[j + 1] = j end
  table.sort(idx, function(x, y)
    local vx, vy = p[base + x], p[base + y]
    if vx ~= vy then return vx < vy end
    return x < y
  end)
  local r = {}
  local i = 1
  while i <= d do
    local j = i
    while j < d and p[base + idx[j + 1]] == p[base + idx[i]] do j = j + 1 end
    local avg = (i + j) / 2
    for q = i, j do r[idx[q]] = avg end
    i = j + 1
  end
  return r
end

--- Spearman rank correlation per item (average ranks for ties).
-- ARGS: a, b (N, ...). RETURN: Lua array (NaN when a map is constant).
function metrics.spearman(a, b)
  local N, d = items(a, b, 'spearman')
  local out = {}
  for n = 0, N - 1 do
    local ra, rb = ranks(a:data(), n * d, d), ranks(b:data(), n * d, d)
    local mean = (d + 1) / 2
    local sab, saa, sbb = 0, 0, 0
    for j = 0, d - 1 do
      local x, y = ra[j] - mean, rb[j] - mean
      sab, saa, sbb = sab + x * y, saa + x * x, sbb + y * y
    end
    out[n + 1] = (saa > 0 and sbb > 0) and sab / sqrt(saa * sbb) or NAN
  end
  return out
end

-- ------------------------------------------------------------ sparseness

--- Gini index of |a| per item (Hurley & Rickard 2009). RETURN: Lua array.
function metrics.gini(a)
  local N, d = items(a, nil, 'gini')
  local p = a:data()
  local out = {}
  for n = 0, N - 1 do
    local c, l1 = {}, 0
    for j = 0, d - 1 do
      c[j + 1] = abs(p[n * d + j])
      l1 = l1 + c[j + 1]
    end
    if l1 == 0 then
      out[n + 1] = 0
    else
      table.sort(c)
      local s = 0
      for k = 1, d do s = s + (c[k] / l1) * ((d - k + 0.5) / d) end
      out[n + 1] = 1 - 2 * s
    end
  end
  return out
end

--- Fraction of entries exactly 0 per item. RETURN: Lua array.
function metrics.sparsity(a)
  local N, d = items(a, nil, 'sparsity')
  local p = a:data()
  local out = {}
  for n = 0, N - 1 do
    local z = 0
    for j = n * d, n * d + d - 1 do if p[j] == 0 then z = z + 1 end end
    out[n + 1] = z / d
  end
  return out
end

-- ----------------------------------------------- robustness (Quantus)

--- Quantus's normalise_by_negative, per item, in place: a / max a when a >= 0,
-- a / |min a| when a <= 0, else positives / max and negatives / |min|; a zero
-- map stays zero.
function metrics.normalise_by_negative(E)
  local N = E:size(1)
  local d, p = E:numel() / N, E:data()
  for n = 0, N - 1 do
    local lo, hi = math.huge, -math.huge
    for j = n * d, n * d + d - 1 do lo, hi = min(lo, p[j]), max(hi, p[j]) end
    for j = n * d, n * d + d - 1 do
      local v = p[j]
      if v > 0 then p[j] = v / hi elseif v < 0 then p[j] = v / -lo end
    end
  end
  return E
end

local function robustness_opts(opts, defaults, what)
  local o = {}
  for k, v in pairs(defaults) do o[k] = v end
  for k, v in pairs(opts or {}) do
    if defaults[k] == nil then error(("metrics.%s: unknown option '%s'"):format(what, tostring(k)), 3) end
    o[k] = v
  end
  return o
end

--- The common Monte-Carlo loop: for sample j = 0..samples−1, x_j = x + noise_j
-- (noise of item n from the counter-based RNG: seed, stream = n, offset = j·d),
-- explains x_j with the same method (its own seed and x's noise keys, passed as
-- explain's ids: common random numbers for stochastic methods, whose noise is
-- otherwise keyed by the item's content), and keeps the max over j of
-- ratio(a, a_j, x, x_j) per item.
local function monte_carlo(net, method, x, labels, o, noise, ratio, what)
  if not T.is(x) then error('metrics.' .. what .. ': x must be a tensor', 3) end
  local N = x:size(1)
  local d = x:numel() / N
  oracle.labels(labels, N) -- checks them
  local function prep(E)
    if o.normalise then metrics.normalise_by_negative(E) end
    if o.abs then E:apply_(abs) end
    return E
  end
  local ids = require('moreau.methods').item_keys(x, labels)
  local a = prep(method:explain(net, x, labels, ids))
  local best = {}
  for n = 1, N do best[n] = 0 end
  for j = 0, o.samples - 1 do
    local xj = x:clone()
    local px = xj:data()
    for n = 0, N - 1 do
      local z = noise(d, n, j)
      local pz = z:data()
      for i = 0, d - 1 do px[n * d + i] = px[n * d + i] + pz[i] end
    end
    local aj = prep(method:explain(net, xj, labels, ids))
    local pa, pj, p0 = a:data(), aj:data(), x:data()
    for n = 0, N - 1 do
      local r = ratio(pa, pj, p0, px, n * d, d)
      if r > best[n + 1] then best[n + 1] = r end
    end
  end
  return best
end

--- Local Lipschitz estimate (Alvarez-Melis & Jaakkola 2018), as Quantus's
-- LocalLipschitzEstimate: max over samples of ‖a − a_j‖₂ / ‖x − x_j‖₂ with
-- x_j = x + N(mean, std²) per entry.
-- ARGS: net, method, x, labels, opts {samples = 200, std = 0.1, mean = 0,
--   normalise = true (Quantus's normalise_by_negative on both maps), abs = false,
--   seed = 0}. RETURN: Lua array.
function metrics.local_lipschitz(net, method, x, labels, opts)
  local o = robustness_opts(opts, { samples = 200, std = 0.1, mean = 0, normalise = true, abs = false,
    seed = 0 }, 'local_lipschitz')
  return monte_carlo(net, method, x, labels, o, function(d, n, j)
    return T.randn({ d }, { seed = o.seed, stream = n, offset = j * d, mean = o.mean, std = o.std })
  end, function(pa, pj, p0, px, base, d)
    local num, den = 0, 0
    for i = base, base + d - 1 do
      num, den = num + (pa[i] - pj[i]) ^ 2, den + (p0[i] - px[i]) ^ 2
    end
    return den > 0 and sqrt(num) / sqrt(den) or 0
  end, 'local_lipschitz')
end

--- Max-Sensitivity (Yeh et al. 2019), as Quantus's MaxSensitivity: max over
-- samples of ‖a − a_j‖_F / ‖x‖_F with x_j = x + U(−radius, radius) per entry.
-- ARGS: net, method, x, labels, opts {samples = 200, radius = 0.2 (Quantus's
--   lower_bound), normalise = false, abs = false, seed = 0}. RETURN: Lua array.
function metrics.max_sensitivity(net, method, x, labels, opts)
  local o = robustness_opts(opts, { samples = 200, radius = 0.2, normalise = false, abs = false, seed = 0 },
    'max_sensitivity')
  return monte_carlo(net, method, x, labels, o, function(d, n, j)
    return T.rand({ d }, { seed = o.seed, stream = n, offset = j * d, lo = -o.radius, hi = o.radius })
  end, function(pa, pj, p0, _, base, d)
    local num, den = 0, 0
    for i = base, base + d - 1 do
      num, den = num + (pa[i] - pj[i]) ^ 2, den + p0[i] ^ 2
    end
    return den > 0 and sqrt(num) / sqrt(den) or 0
  end, 'max_sensitivity')
end

return metrics
