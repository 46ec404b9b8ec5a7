--- moreau.metrics — how much an explanation changes, and how sparse it is.
--
-- Every metric works per batch item and returns a Lua array of numbers, one
-- per item. Maps are batch first: (N, C, H, W), or (N, d) for flat maps; ssim
-- needs (N, C, H, W). A pair of maps must have the same shape.
--
--   local d   = metrics.normalized_distance(E, E2)        -- {0.31, 0.12, ...}
--   local top = metrics.topk_intersection(E, E2)          -- share of the top-k kept
--   local s   = metrics.ssim(E, E2)                       -- display preset
--   local L   = metrics.local_lipschitz(net, method, x, labels, { samples = 20 })
--
-- Rules that hold for every metric here:
--   Shapes   a map is (N, C, H, W) or (N, d), batch first; a 3-D tensor is refused
--            (is (3, H, W) one RGB map or three gray ones?) with a message saying to
--            add the batch dim, x:reshape{1, C, H, W}. Maps compared with each other
--            must have the same shape, not just the same number of entries.
--   NaN/Inf  every map (and the input x of the robustness estimates, and every map
--            they compute) goes through one check, metrics.check_map, which raises
--            "METRIC: item n of MAP has NaN at position j of d (c=.., h=.., w=..)"
--            for the first non-finite entry; items and positions are 1-based, j is
--            the flat position within the item. No metric returns a number for a
--            map it cannot read.
--   Zeros    a zero entry carries no attribution: it is never a top-k feature
--            (topk_intersection, the top-k attack). Spearman ranks every entry, so
--            the zeros of a map form one tie block; gini and sparsity count them as
--            entries of the map.
--   Ties     no rank-based score (topk_intersection, spearman, gini, sparsity)
--            depends on where the object sits in the image: each is the same, bit
--            for bit, for any permutation of the positions applied to both maps.
--            The entries tied at the k-th largest key share the places left in the
--            top-k equally (topk_intersection), tied entries share their average
--            rank (spearman), and sums run over sorted values (gini). (ssim is
--            spatial by design; normalized_distance is invariant up to rounding.)
--
-- Pair metrics (a: the original map, b: the attacked one):
--   normalized_distance  ‖a/‖a‖ − b/‖b‖‖₂ (a zero map stays the zero vector)
--   topk_intersection    share of the top-k features of a that are top-k features of
--                        b, k = max(1, floor(frac · F)), frac = 0.4, F the number of
--                        features of a: entries with |a| > 0 (signed = true: a > 0, as
--                        the authors rank a itself); ties and maps with fewer than k
--                        features: see metrics.topk_intersection; NaN when F = 0
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
local ffi = require 'ffi'
local core = require 'moreau.core'
local T = require 'moreau.tensor'
local oracle = require 'moreau.oracle'
local options = require 'moreau.options'

local C, check, handle = core.C, core.check, core.handle

local floor, sqrt = math.floor, math.sqrt
local NAN = 0 / 0

local metrics = {}

local function shape_str(t) return table.concat(core.shape(t), 'x') end

--- The shape convention: t must be a tensor (N, d) or (N, C, H, W).
-- `name` says which argument t is ('a', 'x', ...).
local function check_batched(t, what, name, level)
  if not T.is(t) then error(('%s: %s must be a tensor, got %s'):format(what, name, type(t)), level + 1) end
  local nd = core.ndim(t)
  if nd == 3 then
    local s = core.shape(t)
    error(('%s: %s is %s, a 3-D tensor; maps are batch first, (N, C, H, W) or (N, d): add a batch dim, '
      .. 'x:reshape{1, %d, %d, %d}'):format(what, name, shape_str(t), s[1], s[2], s[3]), level + 1)
  elseif nd ~= 2 and nd ~= 4 then
    error(('%s: %s is %s; maps are batch first, (N, C, H, W) or (N, d)'):format(what, name, shape_str(t)),
      level + 1)
  end
end

--- The one NaN/Inf check of every metric (and of the top-k attack's clean map):
-- raises "WHAT: item n of NAME has NaN at position j of d (c=.., h=.., w=..)"
-- for the first non-finite entry in memory order; n and j are 1-based, j is the
-- flat position within the item (row-major over C·H·W), and (c, h, w), also
-- 1-based, is given for (N, C, H, W) maps.
-- ARGS: t (N, d) or (N, C, H, W); what (the metric); name (which map);
--   level (error level, default 1: the caller). RETURN: t.
function metrics.check_map(t, what, name, level)
  level = (level or 1) + 1
  check_batched(t, what, name, level)
  local N = core.size(t, 1)
  local d = core.numel(t) / N
  local first, v = t:find_nonfinite()
  if first then
    local i = first - 1
    local n, j = floor(i / d), i % d
    local where = ''
    if core.ndim(t) == 4 then
      local H, W = core.size(t, 3), core.size(t, 4)
      where = (' (c=%d, h=%d, w=%d)'):format(floor(j / (H * W)) + 1, floor(j / W) % H + 1, j % W + 1)
    end
    error(('%s: item %d of %s has %s at position %d of %d%s'):format(what, n + 1, name,
      v ~= v and 'NaN' or (v > 0 and 'Inf' or '-Inf'), j + 1, d, where), level)
  end
  return t
end

--- N and d of a map a (and b, which must have the same shape), after the
-- shape convention and the NaN/Inf check.
local function items(a, b, what)
  check_batched(a, what, 'a', 3)
  if b ~= nil then
    check_batched(b, what, 'b', 3)
    local sa, sb = core.shape(a), core.shape(b)
    local same = #sa == #sb
    for i = 1, #sa do same = same and sa[i] == sb[i] end
    if not same then
      error(('%s: maps of shapes %s and %s differ'):format(what, table.concat(sa, 'x'), table.concat(sb, 'x')), 3)
    end
  end
  metrics.check_map(a, what, 'a', 3)
  if b ~= nil then metrics.check_map(b, what, 'b', 3) end
  local N = core.size(a, 1)
  return N, core.numel(a) / N
end

--- A Lua array of the N numbers of a C array.
local function per_item(buf, N)
  local out = {}
  for n = 1, N do out[n] = tonumber(buf[n - 1]) end
  return out
end

-- ------------------------------------------------------------ distances

--- ‖a/‖a‖ − b/‖b‖‖₂ per item. ARGS: a, b (N, d) or (N, C, H, W), the same
-- shape, finite. RETURN: Lua array.
function metrics.normalized_distance(a, b)
  local N = items(a, b, 'normalized_distance')
  local buf = ffi.new('double[?]', N)
  check(C.mr_tensor_normalized_distance(buf, handle(a), handle(b)))
  return per_item(buf, N)
end

-- --------------------------------------------------------------- top-k

--- The top-k features of one item of a map, as memberships in [0, 1].
-- The features are the entries with key > 0 (key = |v|; signed: v), so a zero
-- entry (signed: a zero or negative one) is never a top-k feature. With F
-- features:
--   F <= k  each feature has membership 1: the set has F members, fewer than k
--           when F < k;
--   F > k   with v_k the k-th largest key, the g entries with key > v_k have
--           membership 1 and each of the t entries with key = v_k has (k − g)/t,
--           the probability that it is picked when the tie is broken uniformly at
--           random; memberships sum to k.
-- Ties are never broken by position, so the set moves with its entries under
-- any permutation of the positions. The map must be finite (metrics.check_map).
-- ARGS: t (N, d) or (N, C, H, W); n (item, 1-based); k (integer >= 1);
--   signed (boolean, default false).
-- RETURN: m (table: 0-based position within the item -> membership; members
--   only), size (the sum of memberships, min(k, F)), f (the membership of the
--   tied block, 1 when no block is split).
function metrics.topk_members(t, n, k, signed)
  local what = 'metrics.topk_members'
  metrics.check_map(t, what, 'the map', 2)
  local N = core.size(t, 1)
  if type(n) ~= 'number' or n ~= floor(n) or n < 1 or n > N then
    error(('%s: item %s outside 1..%d'):format(what, options.show(n), N), 2)
  end
  if type(k) ~= 'number' or k < 1 or k ~= floor(k) or k == math.huge then -- inf would reach C as INT64_MIN
    error(('%s: k must be an integer >= 1, got %s'):format(what, options.show(k)), 2)
  end
  local d = core.numel(t) / N
  local mb, sz, sh = ffi.new('double[?]', d), ffi.new('double[1]'), ffi.new('double[1]')
  check(C.mr_tensor_topk_members(mb, sz, sh, handle(t), n - 1, k, signed and 1 or 0), 2)
  local m = {}
  for j = 0, d - 1 do
    local v = mb[j]
    if v > 0 then m[j] = v end
  end
  return m, sz[0], sh[0]
end

--- Share of the original's top-k features that are top-k features of the
-- attacked map (the top-k intersection of Ghorbani et al., 2019), with the top-k sets
-- of metrics.topk_members: |T_k(a) ∩ T_k(b)| / |T_k(a)| where a membership
-- shared by a tied block counts as a fuzzy set, |A ∩ B| = Σ_j min(m_A(j), m_B(j))
-- (the ordinary count when no tie straddles the k-th place). Hence:
--   * zero entries are never top-k features: an all-zero b scores 0;
--   * the score is the same for any permutation of the positions applied to a
--     and b (bit for bit: the sum is taken over counts of membership pairs);
--   * b = a scores 1, ties or not;
--   * when a has F < k features (only with opts.k), T_k(a) is all F of them and
--     the score is the share of those that b keeps among its own top-k;
--   * NaN when a has no feature (an all-zero map; signed: no positive entry).
-- ARGS: a (original), b (attacked): (N, d) or (N, C, H, W), the same shape,
--   finite; opts {frac = 0.4 (k = max(1, floor(frac · F)), F the features of
--   a, counted over all C·H·W entries), k (absolute, overrides frac),
--   signed = false (rank a itself: features are the positive entries)}; frac in
--   (0, 1], k an integer in [1, d].
-- RETURN: Lua array, one score in [0, 1] (or NaN) per item.
function metrics.topk_intersection(a, b, opts)
  opts = options.fill('metrics.topk_intersection', { frac = 0.4, signed = false, _extra = { k = true },
    _domains = { frac = 'num in (0, 1]', k = 'int >= 1', signed = 'bool' } }, opts)
  local N, d = items(a, b, 'topk_intersection')
  local frac, signed = opts.frac, opts.signed
  if opts.k and opts.k > d then
    error(("metrics.topk_intersection: option 'k' must be at most the %d entries of an item, got %d"):format(d,
      opts.k), 2)
  end
  -- Σ_j min(m_a(j), m_b(j)) is summed in C as counts of membership pairs (1
  -- or the tied share of each map), so the order of the positions cannot matter.
  local buf = ffi.new('double[?]', N)
  check(C.mr_tensor_topk_intersection(buf, handle(a), handle(b), opts.k or 0, frac, signed and 1 or 0))
  return per_item(buf, N)
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

--- Structural similarity (Wang et al., 2004): 11×11 Gaussian window, sigma 1.5,
-- population (biased) local statistics, C1 = (0.01 L)², C2 = (0.03 L)².
-- ARGS: a, b (N, C, H, W), the same shape, finite;
--   opts {preset = 'display' | 'pytorch_ssim', window = 11 (odd, >= 3: the
--         window has a center tap, and one tap has no local variance, so SSIM
--         would reduce to its luminance term), sigma = 1.5 (> 0),
--         percentile = 99 (display; in (0, 100])}.
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
  opts = options.fill('metrics.ssim', { preset = 'display', window = 11, sigma = 1.5, percentile = 99,
    _domains = { preset = 'one of display, pytorch_ssim', window = 'odd >= 3', sigma = 'num > 0',
      percentile = 'num in (0, 100]' } }, opts)
  local N = items(a, b, 'ssim')
  local preset = opts.preset
  local size, sigma = opts.window, opts.sigma
  local s = core.shape(a)
  local Cn, H, W
  if #s ~= 4 then error('ssim: maps must be (N, C, H, W), got ' .. table.concat(s, 'x'), 2) end
  Cn, H, W = s[2], s[3], s[4]
  local w = gauss1d(size, sigma)
  local out = {}
  if preset == 'display' then
    if H < size or W < size then
      error(('ssim: display preset needs H and W >= %d (the window), got H = %d, W = %d'):format(size, H, W), 2)
    end
    local viz = require 'moreau.viz'
    for n = 1, N do
      local ta = viz.normalize(a, { item = n, percentile = opts.percentile })
      local tb = viz.normalize(b, { item = n, percentile = opts.percentile })
      local X, Y = {}, {}
      for i = 0, H * W - 1 do X[i], Y[i] = ta[i + 1], tb[i + 1] end
      out[n] = ssim_plane(X, Y, H, W, w, size, 'valid', 0.01 ^ 2, 0.03 ^ 2)
    end
  else -- pytorch_ssim (options.fill checked the domain)
    local pa, pb = a:totable(), b:totable()
    local plane = H * W
    for n = 0, N - 1 do
      local acc = 0
      for c = 0, Cn - 1 do
        local X, Y = {}, {}
        local base = (n * Cn + c) * plane
        for i = 0, plane - 1 do X[i], Y[i] = pa[base + i + 1], pb[base + i + 1] end
        acc = acc + ssim_plane(X, Y, H, W, w, size, 'same', 0.01 ^ 2, 0.03 ^ 2)
      end
      out[n + 1] = acc / Cn
    end
  end
  return out
end

-- ------------------------------------------------------------ Spearman

--- Spearman rank correlation per item: the Pearson correlation of the ranks of
-- the entries of a and of b (their signed values, over all C·H·W entries), as
-- scipy.stats.spearmanr. Tied entries, the zeros of a sparse map included,
-- share their average rank, so the score is the same for any permutation of the
-- positions applied to both maps (bit for bit while d³ < 2^51: the centered
-- ranks are multiples of ½ and their products sum exactly).
-- ARGS: a, b (N, d) or (N, C, H, W), the same shape, finite.
-- RETURN: Lua array (NaN when a map is constant).
function metrics.spearman(a, b)
  local N = items(a, b, 'spearman')
  local buf = ffi.new('double[?]', N)
  check(C.mr_tensor_spearman(buf, handle(a), handle(b)))
  return per_item(buf, N)
end

-- ------------------------------------------------------------ sparseness

--- Gini index of |a| per item (Hurley & Rickard 2009). Zeros count as entries
-- (more zeros: sparser); both sums run over the sorted |a|, so the index does
-- not depend on the order of the entries, bit for bit.
-- ARGS: a (N, d) or (N, C, H, W), finite. RETURN: Lua array (0 for a zero map).
function metrics.gini(a)
  local N = items(a, nil, 'gini')
  local buf = ffi.new('double[?]', N)
  check(C.mr_tensor_gini(buf, handle(a)))
  return per_item(buf, N)
end

--- Fraction of entries exactly 0 per item.
-- ARGS: a (N, d) or (N, C, H, W), finite. RETURN: Lua array.
function metrics.sparsity(a)
  local N, d = items(a, nil, 'sparsity')
  local z = ffi.new('int64_t[?]', N)
  check(C.mr_tensor_count_zero_items(z, handle(a)))
  local out = {}
  for n = 1, N do out[n] = tonumber(z[n - 1]) / d end
  return out
end

-- ----------------------------------------------- robustness (Quantus)

--- Quantus's normalise_by_negative, per item, in place: a / max a when a >= 0,
-- a / |min a| when a <= 0, else positives / max and negatives / |min|; a zero
-- map stays zero. ARGS: E (N, d) or (N, C, H, W), finite. RETURN: E.
function metrics.normalise_by_negative(E)
  metrics.check_map(E, 'metrics.normalise_by_negative', 'E', 2)
  check(C.mr_tensor_normalise_by_negative_(handle(E)))
  return E
end

-- samples >= 1; std and radius > 0 (a zero perturbation gives 0/0, read as 0).
local robustness_domains = { samples = 'int >= 1', std = 'num > 0', mean = 'num', radius = 'num > 0',
  normalise = 'bool', abs = 'bool', seed = 'seed' }

local function robustness_opts(opts, defaults, what)
  defaults._domains = robustness_domains
  return options.fill('metrics.' .. what, defaults, opts, 3)
end

--- The common Monte-Carlo loop: for sample j = 0..samples−1, x_j = x + noise_j
-- (computed in double, rounded to float)
-- (noise of item n from the counter-based RNG: seed, stream = its perturbation
-- stream, methods.perturbation_streams, offset = j·d: the same for the item
-- alone or in any batch),
-- explains x_j with the same method (its own seed and x's noise keys, passed as
-- explain's ids: common random numbers for stochastic methods, whose noise is
-- otherwise keyed by the item's content), and keeps the max over j of
-- ratio(a, a_j, x, x_j) per item.
-- x and every map go through metrics.check_map: a non-finite map would make the
-- ratio NaN, which the max would silently skip.
local function monte_carlo(net, method, x, labels, o, noise, ratio, what)
  if not T.is(x) then error('metrics.' .. what .. ': x must be a tensor', 3) end
  what = 'metrics.' .. what
  metrics.check_map(x, what, 'x', 3)
  local N = core.size(x, 1)
  local d = core.numel(x) / N
  core.labels(labels, N) -- checks them
  local function prep(E)
    if o.normalise then metrics.normalise_by_negative(E) end
    if o.abs then E:abs_() end
    return E
  end
  local methods = require 'moreau.methods'
  local ids, streams = methods.item_keys(x), methods.perturbation_streams(x)
  local a = prep(metrics.check_map(method:explain(net, x, labels, ids), what, 'the map of x', 3))
  local best = {}
  for n = 1, N do best[n] = 0 end
  local noise_j = T.zeros(core.shape(x))
  local num, den = ffi.new('double[?]', N), ffi.new('double[?]', N)
  for j = 0, o.samples - 1 do
    for n = 0, N - 1 do check(C.mr_tensor_copy_items(handle(noise_j), n, handle(noise(d, streams[n + 1], j)), 0, 1)) end
    local xj = x:clone():add_(noise_j)
    local aj = method:explain(net, xj, labels, ids)
    aj = prep(metrics.check_map(aj, what, ('the map of sample %d'):format(j + 1), 3))
    check(C.mr_tensor_sqdist_items(num, handle(a), handle(aj)))
    ratio(den, x, xj)
    for n = 0, N - 1 do
      local r = den[n] > 0 and sqrt(num[n]) / sqrt(den[n]) or NAN
      -- NaN (an undefined ratio) stays NaN: the max must not skip it
      if r ~= r or r > best[n + 1] then best[n + 1] = r end
    end
  end
  return best
end

--- Local Lipschitz estimate (Alvarez-Melis & Jaakkola 2018), as Quantus's
-- LocalLipschitzEstimate: max over samples of ‖a − a_j‖₂ / ‖x − x_j‖₂ with
-- x_j = x + N(mean, std²) per entry.
-- ARGS: net, method, x, labels, opts {samples = 200, std = 0.1, mean = 0,
--   normalise = true (Quantus's normalise_by_negative on both maps), abs = false,
--   seed = 0}. RETURN: Lua array (NaN for an item where some x_j = x: the
--   ratio is undefined).
function metrics.local_lipschitz(net, method, x, labels, opts)
  local o = robustness_opts(opts, { samples = 200, std = 0.1, mean = 0, normalise = true, abs = false,
    seed = 0 }, 'local_lipschitz')
  return monte_carlo(net, method, x, labels, o, function(d, stream, j)
    return T.randn({ 1, d }, { seed = o.seed, stream = stream, offset = j * d, mean = o.mean, std = o.std })
  end, function(den, x0, xj) -- ‖x − x_j‖²
    check(C.mr_tensor_sqdist_items(den, handle(x0), handle(xj)))
  end, 'local_lipschitz')
end

--- Max-Sensitivity (Yeh et al., 2019), as Quantus's MaxSensitivity: max over
-- samples of ‖a − a_j‖_F / ‖x‖_F with x_j = x + U(−radius, radius) per entry.
-- ARGS: net, method, x, labels, opts {samples = 200, radius = 0.2 (Quantus's
--   lower_bound), normalise = false, abs = false, seed = 0}. RETURN: Lua array
--   (NaN for an all-zero x: the ratio is undefined, not 0).
function metrics.max_sensitivity(net, method, x, labels, opts)
  local o = robustness_opts(opts, { samples = 200, radius = 0.2, normalise = false, abs = false, seed = 0 },
    'max_sensitivity')
  return monte_carlo(net, method, x, labels, o, function(d, stream, j)
    return T.rand({ 1, d }, { seed = o.seed, stream = stream, offset = j * d, lo = -o.radius, hi = o.radius })
  end, function(den, x0) -- ‖x‖²
    check(C.mr_tensor_dot_items(den, handle(x0), handle(x0)))
  end, 'max_sensitivity')
end

-- Faithfulness curves (deletion, insertion, pixel flipping, ROAD): the
-- module moreau.faithfulness, also reachable as moreau.metrics.faithfulness.
metrics.faithfulness = require 'moreau.faithfulness'

return metrics
