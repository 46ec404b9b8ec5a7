--- moreau.faithfulness — does a map point at what the model uses? Perturbation
-- curves: remove (or insert) the pixels a map ranks first and watch the score.
--
--   local F = moreau.metrics.faithfulness          -- this module (also moreau.faithfulness)
--   local r = F.deletion(net, x, maps, labels)      -- Petsiuk et al., 2018
--   print(r.auc[1], #r.curves[1], r.fractions[2])
--   local q = F.road(net, x, maps, labels, { order = 'lerf', seed = 0 })
--
-- Four curves, each in most-relevant-first ('morf') or least-relevant-first
-- ('lerf') order (docs/evaluation.md, "Faithfulness", states the choices):
--   deletion        Petsiuk, Das and Saenko 2018 (RISE): pixels set to a baseline
--                   (default 'zero'), class probability, `step` pixels a step
--   insertion       Petsiuk et al., 2018: start from the baseline (default 'blur',
--                   their blurred image), put the pixels of x back in order
--   pixel_flipping  Bach et al., 2015 (LRP): pixels set to the baseline one at a
--                   time (step = 1), the class logit f_c(x) (the classifier's
--                   output before the softmax); summarized also by the AOPC of
--                   Samek et al., 2017
--   road            Rong, Leemann, Borisov, Kasneci and Kasneci 2022 (ROAD):
--                   fractions of the pixels removed and filled by noisy linear
--                   imputation (faithfulness.noisy_linear_imputation)
--
-- Shared definitions:
--   Features   a feature is a pixel (h, w) with all its channels; its relevance is
--              r = Σ_c map[c, h, w] (abs = true: Σ_c |map[c, h, w]|). A map may be
--              shaped like x, (N, C, H, W), or (N, 1, H, W) for a pixel map. Flat
--              inputs (N, d) have d one-entry features (road needs an image).
--   Order      morf: r descending; lerf: r ascending. Ties are broken by the
--              position, the lower flat position p = h·W + w first, in both
--              orders, so a ranking is deterministic and documented
--              (faithfulness.ranking); lerf is therefore not morf reversed
--              when r has ties.
--   Steps      after step s the first k_s features of the order are perturbed:
--              k_s = min(s·step, P) for s = 0..S, S = ceil(P / step), P the number
--              of features (deletion, insertion, pixel flipping); road: k_s =
--              floor(f_s·P + ½) for the given fractions f_s. The curve's x axis is
--              the fraction k_s / P (road: f_s).
--   Score      'probability' (softmax of the logits, computed in double, of the
--              given class) or 'logit' (the class's output itself).
--   AUC        the trapezoidal rule over the fraction axis, divided by its span
--              (x_S − x_0): the mean height of the curve, in units of the score
--              (deletion and insertion span [0, 1], so it is Petsiuk et al.'s AUC).
--              Lower is better for deletion/pixel flipping/road in morf order,
--              higher for insertion in morf order and for deletion/road in lerf.
--   AOPC       (1/(S+1)) Σ_{s=0..S} (y_0 − y_s), Samek, Binder, Montavon,
--              Lapuschkin and Müller 2017, "Evaluating the visualization of what a
--              deep neural network has learned", Eq. 12, for one image.
--   Batching   the perturbed images of all steps and all items go through the
--              network together, `chunk` images per forward pass (item-major:
--              item 1's steps, then item 2's); the net's inference pass is batch
--              invariant (docs/determinism.md), so chunk changes no bit.
--   Baseline   'zero' (0 in the network's input units: the data set's mean pixel
--              for inputs normalized by the mean), 'mean' (each item's per-channel
--              mean of x), 'blur' (x blurred per channel by a normalized separable
--              Gaussian of blur_size taps and standard deviation blur_sigma taps,
--              zero padded to the same size, as the RISE authors' evaluation
--              code (an 11-tap kernel of sigma 5)), a number, or a tensor shaped
--              like x.
-- What every curve function returns, the result table:
--   curves     Lua array of N curves, each the score at every step (step 0, the
--              unperturbed image for deletion/pixel flipping/road at fraction 0,
--              the baseline for insertion, first)
--   fractions  the x axis: k_s / P (road: the fractions given)
--   counts     k_s, the pixels perturbed at each step
--   auc        per item: trapezoid over the fractions / their span
--   aopc       per item: (1/(S+1)) Σ_s (y_0 − y_s) (Samek et al., 2017)
--   accuracy   per step: the share of items whose prediction (the first largest
--              output) is their label (ROAD's accuracy curve)
--   options    the options in force
local ffi = require 'ffi'
local core = require 'moreau.core'
local T = require 'moreau.tensor'
local options = require 'moreau.options'

local floor, ceil, max, min, exp, sqrt, abs = math.floor, math.ceil, math.max, math.min, math.exp, math.sqrt,
  math.abs

local faith = {}

local function shape_str(s) return table.concat(s, 'x') end

--- (N, C, H, W) of x; flat (N, d) inputs are read as (N, 1, 1, d).
local function dims4(t)
  local s = core.shape(t)
  if #s == 4 then return s[1], s[2], s[3], s[4] end
  if #s == 2 then return s[1], 1, 1, s[2] end
  return nil
end

--- Checks x against the net and the map against x; returns N, C, H, W and
-- the map's channel count.
local function check_inputs(who, net, x, map, level)
  level = level + 1
  local metrics = require 'moreau.metrics'
  if type(net) ~= 'table' or getmetatable(net) ~= require('moreau.nn').Net then
    error(who .. ': net must be a moreau.nn network, got ' .. type(net), level)
  end
  if not T.is(x) then error(who .. ': x must be a tensor, got ' .. type(x), level) end
  if not T.is(map) then error(who .. ': map must be a tensor, got ' .. type(map), level) end
  require('moreau.methods.common').check_input(who, net, x, level)
  local N, Cx, H, W = dims4(x)
  if not N then
    error(('%s: x has shape %s; it must be (N, C, H, W) or (N, d)'):format(who, shape_str(core.shape(x))), level)
  end
  local sm, sx = core.shape(map), core.shape(x)
  local ok = #sm == #sx and sm[1] == N
  if ok and #sx == 4 then ok = (sm[2] == Cx or sm[2] == 1) and sm[3] == H and sm[4] == W
  elseif ok then ok = sm[2] == sx[2] end
  if not ok then
    error(('%s: map has shape %s, x has shape %s; the map must be shaped like x%s'):format(who, shape_str(sm),
      shape_str(sx), #sx == 4 and (' or (N, 1, H, W) = %dx1x%dx%d'):format(N, H, W) or ''), level)
  end
  metrics.check_map(x, who, 'x', level)
  metrics.check_map(map, who, 'map', level)
  return N, Cx, H, W, (#sm == 4 and sm[2] or 1)
end

--- The relevance of each pixel of item n (0-based) of map: Σ_c map[c, p]
-- (abs: Σ_c |map[c, p]|), summed in double over c in order.
local function relevance(mp, n, Cm, P, use_abs)
  local r = {}
  local base = n * Cm * P
  for p = 0, P - 1 do
    local s = 0
    for c = 0, Cm - 1 do
      local v = mp[base + c * P + p]
      s = s + (use_abs and abs(v) or v)
    end
    r[p] = s
  end
  return r
end

--- The perturbation order of item n (0-based): a Lua array of the P pixel
-- positions (0-based, p = h·W + w), most relevant first (morf) or least
-- relevant first (lerf), ties broken by the lower position first.
local function order_of(mp, n, Cm, P, order, use_abs)
  local r = relevance(mp, n, Cm, P, use_abs)
  local idx = {}
  for p = 0, P - 1 do idx[p + 1] = p end
  if order == 'morf' then
    table.sort(idx, function(a, b)
      if r[a] ~= r[b] then return r[a] > r[b] end
      return a < b
    end)
  else
    table.sort(idx, function(a, b)
      if r[a] ~= r[b] then return r[a] < r[b] end
      return a < b
    end)
  end
  return idx
end

--- The perturbation order of every item of a map, as the curves use it.
-- ARGS: map (N, C, H, W) or (N, d), finite; opts {order = 'morf' | 'lerf',
--   abs = false}. Relevance of pixel p: r_p = Σ_c map[c, p] (abs: Σ_c |map|);
--   morf sorts r descending, lerf ascending, ties by the lower flat position
--   p = h·W + w first in both.
-- RETURN: a Lua array of N Lua arrays of the H·W (flat: d) positions, 0-based.
-- Errors: a map that is not batch first, or has NaN/Inf (metrics.check_map's
-- message); an unknown order.
function faith.ranking(map, opts)
  local who = 'faithfulness.ranking'
  local o = options.fill(who, { order = 'morf', abs = false,
    _domains = { order = 'one of morf, lerf', abs = 'bool' } }, opts)
  require('moreau.metrics').check_map(map, who, 'map', 2)
  local N, Cm, H, W = dims4(map)
  local mp = core.floats(map)
  local out = {}
  for n = 0, N - 1 do out[n + 1] = order_of(mp, n, Cm, H * W, o.order, o.abs) end
  return out
end

-- ------------------------------------------------------------- baselines

--- The normalized 1-D Gaussian of `size` taps, center (size − 1)/2.
local function gauss1d(size, sigma)
  local w, s, c = {}, 0, (size - 1) / 2
  for i = 0, size - 1 do
    w[i] = exp(-((i - c) ^ 2) / (2 * sigma * sigma))
    s = s + w[i]
  end
  for i = 0, size - 1 do w[i] = w[i] / s end
  return w
end

--- The baseline image of every item, as a new tensor shaped like x.
local function baseline_of(who, x, o, level)
  local b = o.baseline
  local N, Cx, H, W = dims4(x)
  local P = H * W
  if T.is(b) then
    options.check_shape(who, 'baseline', b, x, level + 1)
    require('moreau.metrics').check_map(b, who, 'baseline', level + 1)
    return b:clone()
  elseif type(b) == 'number' then
    return T.full(core.shape(x), b)
  end
  local out = T.zeros(core.shape(x))
  if b == 'zero' then return out end
  -- copies (core.floats), never tensor memory: the module runs in sandboxed
  -- recipes too, where tensor:data is refused
  local xp, bp = core.floats(x), core.floats(out)
  if b == 'mean' then
    for n = 0, N - 1 do
      for c = 0, Cx - 1 do
        local base, s = (n * Cx + c) * P, 0
        for p = 0, P - 1 do s = s + xp[base + p] end
        s = s / P
        for p = 0, P - 1 do bp[base + p] = s end
      end
    end
    return core.store(out, bp)
  end
  -- blur: separable, zero padded to the same size (conv2d with padding size//2)
  local size, w = o.blur_size, gauss1d(o.blur_size, o.blur_sigma)
  local r = floor(size / 2)
  local tmp = {}
  for n = 0, N - 1 do
    for c = 0, Cx - 1 do
      local base = (n * Cx + c) * P
      for h = 0, H - 1 do
        for q = 0, W - 1 do
          local s = 0
          for i = 0, size - 1 do
            local cc = q - r + i
            if cc >= 0 and cc < W then s = s + w[i] * xp[base + h * W + cc] end
          end
          tmp[h * W + q] = s
        end
      end
      for h = 0, H - 1 do
        for q = 0, W - 1 do
          local s = 0
          for i = 0, size - 1 do
            local rr = h - r + i
            if rr >= 0 and rr < H then s = s + w[i] * tmp[rr * W + q] end
          end
          bp[base + h * W + q] = s
        end
      end
    end
  end
  return core.store(out, bp)
end

local BASELINES = { zero = true, mean = true, blur = true }

local function check_baseline(who, b, level)
  if T.is(b) or (type(b) == 'number' and b == b and b > -math.huge and b < math.huge) or
    (type(b) == 'string' and BASELINES[b]) then
    return
  end
  error(("%s: option 'baseline' must be one of zero, mean, blur, a finite number or a tensor shaped like x, " ..
    'got %s'):format(who, options.show(b)), level + 1)
end

-- ------------------------------------------- noisy linear imputation (ROAD)

-- The 8 neighbours (dh, dw, weight) of ROAD's linear imputation: 1/6 for the
-- 4 direct ones, 1/12 for the 4 diagonal ones (Rong et al., 2022).
local NEIGHBOURS = {
  { -1, 0, 1 / 6 }, { 1, 0, 1 / 6 }, { 0, -1, 1 / 6 }, { 0, 1, 1 / 6 },
  { -1, -1, 1 / 12 }, { -1, 1, 1 / 12 }, { 1, -1, 1 / 12 }, { 1, 1, 1 / 12 },
}

--- Solves ROAD's linear system for one plane: every removed pixel i equals
-- the weighted mean of its neighbours inside the image,
--   (Σ_{j∈N(i)} w_ij) u_i − Σ_{j∈N(i)∩U} w_ij u_j = Σ_{j∈N(i)\U} w_ij x_j,
-- a symmetric positive definite system (weakly diagonally dominant, and
-- irreducibly so while some pixel is kept), by conjugate gradients from u = 0
-- in double until ‖r‖₂ <= tol·‖b‖₂. Writes u into out (0-based pixel array).
local function solve_plane(xp, base, H, W, removed, list, nb, tol, who, level)
  local m = #list
  local bvec, u, r, pvec, Ap = {}, {}, {}, {}, {}
  local bb = 0
  for k = 1, m do
    local i = list[k]
    local h, w = floor(i / W), i % W
    local s = 0
    for _, e in ipairs(NEIGHBOURS) do
      local hh, ww = h + e[1], w + e[2]
      if hh >= 0 and hh < H and ww >= 0 and ww < W then
        local j = hh * W + ww
        if not removed[j] then s = s + e[3] * xp[base + j] end
      end
    end
    bvec[k], u[k], r[k], pvec[k] = s, 0, s, s
    bb = bb + s * s
  end
  if bb == 0 then return u end
  local function apply(v, out)
    for k = 1, m do
      local e = nb[k]
      local s = e.diag * v[k]
      for t = 1, #e.idx do s = s - e.w[t] * v[e.idx[t]] end
      out[k] = s
    end
  end
  local rr = bb
  local stop = tol * tol * bb
  local maxit = 10 * m + 100
  for _ = 1, maxit do
    if rr <= stop then return u end
    apply(pvec, Ap)
    local pAp = 0
    for k = 1, m do pAp = pAp + pvec[k] * Ap[k] end
    local alpha = rr / pAp
    local rr2 = 0
    for k = 1, m do
      u[k] = u[k] + alpha * pvec[k]
      r[k] = r[k] - alpha * Ap[k]
      rr2 = rr2 + r[k] * r[k]
    end
    local beta = rr2 / rr
    for k = 1, m do pvec[k] = r[k] + beta * pvec[k] end
    rr = rr2
  end
  if rr <= stop then return u end
  error(('%s: the imputation did not reach ‖r‖ <= %g·‖b‖ in %d conjugate-gradient iterations (‖r‖/‖b‖ = %g)')
    :format(who, tol, maxit, sqrt(rr / bb)), level + 1)
end

--- The removed pixels' neighbour lists: for the k-th removed pixel, the sum of
-- the weights of its neighbours inside the image (diag) and its removed
-- neighbours' list indices and weights.
local function neighbour_lists(H, W, removed, list)
  local where = {}
  for k, i in ipairs(list) do where[i] = k end
  local nb = {}
  for k, i in ipairs(list) do
    local h, w = floor(i / W), i % W
    local e = { diag = 0, idx = {}, w = {} }
    for _, d in ipairs(NEIGHBOURS) do
      local hh, ww = h + d[1], w + d[2]
      if hh >= 0 and hh < H and ww >= 0 and ww < W then
        e.diag = e.diag + d[3]
        local j = hh * W + ww
        if removed[j] then e.idx[#e.idx + 1], e.w[#e.w + 1] = where[j], d[3] end
      end
    end
    nb[k] = e
  end
  return nb
end

--- Imputes the pixels `list` (0-based positions) of item n of x into dst
-- (float*, the item's C·P entries), noise from (seed, stream, offset).
local function impute_item(xp, dp, n, Cx, H, W, list, o, stream, offset, who, level)
  local P = H * W
  local removed = {}
  for _, i in ipairs(list) do removed[i] = true end
  local nb = neighbour_lists(H, W, removed, list)
  for c = 0, Cx - 1 do
    local base = (n * Cx + c) * P
    for p = 0, P - 1 do dp[c * P + p] = xp[base + p] end
    if #list > 0 then
      local u = solve_plane(xp, base, H, W, removed, list, nb, o.tol, who, level + 1)
      local z
      if o.sigma > 0 then
        z = core.floats(T.randn({ 1, #list }, { seed = o.seed, stream = stream, offset = offset + c * P,
          std = o.sigma }))
      end
      for k, i in ipairs(list) do dp[c * P + i] = u[k] + (z and z[k - 1] or 0) end
    end
  end
end

--- Noisy linear imputation (ROAD, Rong et al., 2022): every removed pixel is
-- set, in each channel, to the weighted mean of its 8 neighbours inside the
-- image (weights 1/6 for the direct ones, 1/12 for the diagonal ones,
-- renormalized by the weights of the neighbours that exist at a border), the
-- removed neighbours being unknowns themselves: a sparse linear system over the
-- removed pixels, symmetric positive definite while at least one pixel is kept,
-- solved by conjugate gradients from 0 in double until ‖r‖₂ <= tol·‖b‖₂ (at
-- most 10·m + 100 iterations for m removed pixels). Then Gaussian noise
-- N(0, sigma²) is added to each imputed entry, drawn from the counter-based
-- RNG with (seed, stream = the item's perturbation stream
-- (methods.perturbation_streams), offset = c·H·W for channel c), so an item's
-- imputation does not depend on its batch.
-- ARGS: x (N, C, H, W), finite; removed (N, 1, H, W), 1 where a pixel is
--   removed (all its channels), 0 where kept; opts {sigma = 0.01 (input units,
--   >= 0), seed = 0, tol = 1e-10 (> 0)}.
-- RETURN: a new tensor shaped like x.
-- Errors: shapes; an entry of removed other than 0 and 1; an item with every
-- pixel removed (nothing to impute from).
function faith.noisy_linear_imputation(x, removed, opts)
  local who = 'faithfulness.noisy_linear_imputation'
  local o = options.fill(who, { sigma = 0.01, seed = 0, tol = 1e-10,
    _domains = { sigma = 'num >= 0', seed = 'seed', tol = 'num > 0' } }, opts)
  local metrics = require 'moreau.metrics'
  if not T.is(x) or core.ndim(x) ~= 4 then
    error(who .. ': x must be a tensor (N, C, H, W)' .. (T.is(x) and ', got ' .. shape_str(core.shape(x)) or ''), 2)
  end
  metrics.check_map(x, who, 'x', 2)
  local N, Cx, H, W = dims4(x)
  if not T.is(removed) or core.ndim(removed) ~= 4 or core.size(removed, 1) ~= N or core.size(removed, 2) ~= 1
    or core.size(removed, 3) ~= H or core.size(removed, 4) ~= W then
    error(('%s: removed must be a tensor (N, 1, H, W) = %dx1x%dx%d, got %s'):format(who, N, H, W,
      T.is(removed) and shape_str(core.shape(removed)) or type(removed)), 2)
  end
  local P = H * W
  local rp = core.floats(removed)
  local streams = require('moreau.methods').perturbation_streams(x)
  local out = T.zeros(core.shape(x))
  local xp, op = core.floats(x), core.floats(out)
  for n = 0, N - 1 do
    local list = {}
    for p = 0, P - 1 do
      local v = rp[n * P + p]
      if v == 1 then list[#list + 1] = p
      elseif v ~= 0 then
        error(('%s: removed must hold 0 (kept) or 1 (removed), got %s at item %d, position %d'):format(who,
          options.show(tonumber(v)), n + 1, p + 1), 2)
      end
    end
    if #list == P then
      error(('%s: item %d has all %d pixels removed; the imputation needs at least one kept pixel'):format(who,
        n + 1, P), 2)
    end
    impute_item(xp, op + n * Cx * P, n, Cx, H, W, list, o, streams[n + 1], 0, who, 2)
  end
  return core.store(out, op)
end

-- ------------------------------------------------------------ the curves

local common_defaults = {
  order = 'morf', score = 'probability', abs = false, chunk = 256, blur_size = 11, blur_sigma = 5,
}
local common_domains = {
  order = 'one of morf, lerf', score = 'one of probability, logit', abs = 'bool', chunk = 'int >= 1',
  blur_size = 'odd >= 3', blur_sigma = 'num > 0', step = 'int >= 1', baseline = 'any', sigma = 'num >= 0',
  seed = 'seed', tol = 'num > 0', fractions = 'table',
}

local function defaults_for(kind)
  local d = {}
  for k, v in pairs(common_defaults) do d[k] = v end
  d._domains = common_domains
  if kind == 'road' then
    d.fractions, d.sigma, d.seed, d.tol = { 0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9 }, 0.01, 0, 1e-10
  else
    d._extra = { step = true }
    d.baseline = kind == 'insertion' and 'blur' or 'zero'
    if kind == 'pixel_flipping' then d.step, d.score = 1, 'logit' end
  end
  return d
end

--- The curve of every item: builds the perturbed images in chunks, runs them
-- through net:forward_inference, reads the scores.
local function curves(kind, net, x, map, labels, opts, level)
  local who = 'faithfulness.' .. kind
  local o = options.fill(who, defaults_for(kind), opts, level)
  local N, Cx, H, W, Cm = check_inputs(who, net, x, map, level)
  local out = net:output_shape()
  if #out ~= 1 then
    error(('%s: the network must output class scores (K), got %s per item'):format(who, table.concat(out, 'x')),
      level)
  end
  local K = out[1]
  local lab = core.labels(labels, N, nil, who, level, K) -- the scores are read at row[label] below
  local P = H * W
  local counts, fractions = {}, {}
  if kind == 'road' then
    if #o.fractions < 2 then
      error(("%s: option 'fractions' must list at least 2 fractions, got %d"):format(who, #o.fractions), level)
    end
    for s, f in ipairs(o.fractions) do
      if type(f) ~= 'number' or not (f >= 0 and f < 1) then
        error(("%s: option 'fractions' must hold numbers in [0, 1) (all pixels removed leave nothing to impute " ..
          'from), got %s at %d'):format(who, options.show(f), s), level)
      end
      if s > 1 and f <= o.fractions[s - 1] then
        error(("%s: option 'fractions' must increase, got %s after %s"):format(who, options.show(f),
          options.show(o.fractions[s - 1])), level)
      end
      counts[s], fractions[s] = floor(f * P + 0.5), f
    end
    if #core.shape(x) ~= 4 then error(who .. ': road imputes from neighbouring pixels: x must be (N, C, H, W)', level) end
  else
    check_baseline(who, o.baseline, level)
    local step = o.step or (H == 1 and 1 or W)
    if step > P then
      error(("%s: option 'step' must be at most the %d pixels of an item, got %d"):format(who, P, step), level)
    end
    local S = ceil(P / step)
    for s = 0, S do counts[s + 1], fractions[s + 1] = min(s * step, P), min(s * step, P) / P end
    o.step = step
  end
  local nsteps = #counts
  local mp = core.floats(map)
  local orders = {}
  for n = 0, N - 1 do orders[n + 1] = order_of(mp, n, Cm, P, o.order, o.abs) end
  local base = kind ~= 'road' and baseline_of(who, x, o, level) or nil
  local streams = kind == 'road' and require('moreau.methods').perturbation_streams(x) or nil
  local xp = core.floats(x)
  local bp = base and core.floats(base)
  local d = Cx * P
  -- fills slot (float*, d entries) with item n (0-based) after step s (1-based)
  local function fill(slot, n, s)
    local k = counts[s]
    local ord = orders[n + 1]
    if kind == 'road' then
      local list = {}
      for t = 1, k do list[t] = ord[t] end
      -- the offsets of step s's noise start past every earlier step's (d per step)
      impute_item(xp, slot, n, Cx, H, W, list, o, streams[n + 1], (s - 1) * d, who, level + 1)
      return
    end
    -- deletion / pixel flipping: x, first k pixels from the baseline;
    -- insertion: the baseline, first k pixels from x
    local from, other = xp, bp
    if kind == 'insertion' then from, other = bp, xp end
    ffi.copy(slot, from + n * d, d * 4)
    for t = 1, k do
      local p = ord[t]
      for c = 0, Cx - 1 do slot[c * P + p] = other[n * d + c * P + p] end
    end
  end
  local total = N * nsteps
  local score = {}
  local predicted = {}
  local xs = core.shape(x)
  local done = 0
  while done < total do
    local m = min(o.chunk, total - done)
    local shape = { m }
    for i = 2, #xs do shape[i] = xs[i] end
    local bptr = ffi.new('float[?]', m * d)
    for j = 0, m - 1 do
      local g = done + j
      fill(bptr + j * d, floor(g / nsteps), g % nsteps + 1)
    end
    local y = net:forward_inference(core.store(T.zeros(shape), bptr))
    -- the scores are indexed below at j·K + label: size them from the engine's
    -- record of y, never from a method a (sandboxed) recipe could replace
    local ys = T.is(y) and core.shape(y) or nil
    if not ys or #ys ~= 2 or ys[1] ~= m or ys[2] ~= K then
      error(('%s: the network returned %s for a batch of %d; expected %dx%d class scores'):format(who,
        ys and shape_str(ys) or type(y), m, m, K), level)
    end
    local yp = core.floats(y)
    for j = 0, m - 1 do
      local g = done + j
      local n = floor(g / nsteps)
      local row = yp + j * K
      local c = lab[n]
      local v
      if o.score == 'logit' then
        v = tonumber(row[c])
      else
        local mx = -math.huge
        for q = 0, K - 1 do mx = max(mx, tonumber(row[q])) end
        local z = 0
        for q = 0, K - 1 do z = z + exp(tonumber(row[q]) - mx) end
        v = exp(tonumber(row[c]) - mx) / z
      end
      local arg = 0
      for q = 1, K - 1 do if row[q] > row[arg] then arg = q end end
      score[g + 1], predicted[g + 1] = v, arg
    end
    done = done + m
  end
  local res = { kind = kind, options = o, fractions = fractions, counts = counts, curves = {}, auc = {}, aopc = {},
    accuracy = {} }
  local span = fractions[nsteps] - fractions[1]
  for s = 1, nsteps do res.accuracy[s] = 0 end
  for n = 1, N do
    local cv = {}
    for s = 1, nsteps do
      cv[s] = score[(n - 1) * nsteps + s]
      if predicted[(n - 1) * nsteps + s] == lab[n - 1] then res.accuracy[s] = res.accuracy[s] + 1 end
    end
    local a, drop = 0, 0
    for s = 1, nsteps - 1 do a = a + (fractions[s + 1] - fractions[s]) * (cv[s] + cv[s + 1]) / 2 end
    for s = 1, nsteps do drop = drop + (cv[1] - cv[s]) end
    res.curves[n], res.auc[n], res.aopc[n] = cv, a / span, drop / nsteps
  end
  for s = 1, nsteps do res.accuracy[s] = res.accuracy[s] / N end
  return res
end

--- Deletion curve and AUC (Petsiuk, Das and Saenko 2018, "RISE: Randomized
-- Input Sampling for Explanation of Black-box Models"): the pixels
-- are removed in the map's order, `step` at a time, each set to the baseline,
-- and the class probability is recorded after each step; a faithful map
-- makes it fall fast (low AUC in morf order).
-- ARGS: net; x (N, C, H, W) or (N, d), the net's input, finite; map shaped
--   like x or (N, 1, H, W), finite; labels (Lua array of N 0-based classes, or
--   one class for all); opts {order = 'morf' | 'lerf', step = W (pixels per
--   step: one image row's worth, as the RISE authors remove 224 pixels a step on
--   224×224 images; flat inputs: 1), baseline = 'zero' | 'mean' | 'blur' | number | tensor,
--   score = 'probability' | 'logit', abs = false, chunk = 256 (perturbed images
--   per forward pass), blur_size = 11, blur_sigma = 5}.
-- RETURN: the result table (the module's header).
-- Errors: a map of another shape, or with NaN/Inf; an unknown order, score or
-- baseline; step above the pixels of an item; labels that are not classes.
function faith.deletion(net, x, map, labels, opts)
  local r = curves('deletion', net, x, map, labels, opts, 3)
  return r
end

--- Insertion curve and AUC (Petsiuk et al., 2018): start from the
-- baseline (default: x blurred, as the RISE authors) and put the pixels of x
-- back in the map's order, `step` at a time; a faithful map makes the class
-- probability rise fast (high AUC in morf order).
-- ARGS: as faithfulness.deletion; baseline defaults to 'blur'.
-- RETURN: the result table. Errors: as faithfulness.deletion.
function faith.insertion(net, x, map, labels, opts)
  local r = curves('insertion', net, x, map, labels, opts, 3)
  return r
end

--- Pixel-flipping (Bach, Binder, Montavon, Klauschen, Müller and Samek 2015,
-- "On Pixel-Wise Explanations for Non-Linear Classifier Decisions by
-- Layer-Wise Relevance Propagation"): the pixels are flipped to the baseline
-- one at a time (step = 1) in the map's order and the classifier's output
-- f_c (score = 'logit') is recorded; the AOPC (Samek et al., 2017) summarizes
-- the curve next to the AUC.
-- ARGS: as faithfulness.deletion, with step = 1, baseline = 'zero' and
--   score = 'logit' by default.
-- RETURN: the result table. Errors: as faithfulness.deletion.
function faith.pixel_flipping(net, x, map, labels, opts)
  local r = curves('pixel_flipping', net, x, map, labels, opts, 3)
  return r
end

--- ROAD, RemOve And Debias (Rong, Leemann, Borisov, Kasneci and Kasneci 2022,
-- "A Consistent and Efficient Evaluation Strategy for Attribution Methods"):
-- at each fraction f, the first floor(f·P + ½) pixels of the map's order are
-- removed and filled by noisy linear imputation
-- (faithfulness.noisy_linear_imputation: the weighted mean of the 8 neighbours,
-- 1/6 direct and 1/12 diagonal, by conjugate gradients to ‖r‖ <= tol·‖b‖, plus
-- N(0, sigma²) noise), so the removal itself leaks no shape of the mask; the
-- class probability (and the accuracy) is recorded at each fraction without
-- retraining. The noise of step s of an item uses offsets (s−1)·C·H·W +
-- c·H·W of the item's perturbation stream: the same in morf and lerf order.
-- ARGS: net; x (N, C, H, W); map; labels; opts {order, fractions = {0, 0.1,
--   .., 0.9} (increasing, in [0, 1)), sigma = 0.01, seed = 0, tol = 1e-10,
--   score = 'probability', abs = false, chunk = 256}.
-- RETURN: the result table. Errors: as faithfulness.deletion; fractions that
-- do not increase or leave [0, 1); flat inputs.
function faith.road(net, x, map, labels, opts)
  local r = curves('road', net, x, map, labels, opts, 3)
  return r
end

return faith
