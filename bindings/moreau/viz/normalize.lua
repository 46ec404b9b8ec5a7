--- moreau.viz.normalize — the display normalization of saliency maps, as
-- numbers (part of moreau.viz: viz.normalize and viz.percentile; viz.heatmap
-- and viz.signed paint what this computes).
--
-- As the MoreauGrad paper (Zhang and Farnia) shows its maps (docs/methods.md §11): a map of one item,
-- (C, H, W), becomes s(h, w) = sum_c |map(c, h, w)|, then
--   t(h, w) = min(s(h, w), q) / q,   q = the 99th percentile of s
-- (percentile with linear interpolation between order statistics, as numpy's
-- default: position p/100 * (n - 1) in the sorted values). Clipping at a high
-- percentile instead of the max keeps one outlier pixel from turning the rest
-- of the map black. Signed maps use d(h, w) = sum_c map(c, h, w) and
-- u = clamp(d / q, -1, 1) with q the percentile of |d|, so zero is the middle
-- of a diverging color map and +v and -v are mirror colors.
local T = require 'moreau.tensor'

local floor, min, max, abs = math.floor, math.min, math.max, math.abs

local normalize = {}

-- The values of item `item` (1-based) of a tensor, as a flat Lua array
-- (row-major within the item). The one place viz reads tensor elements: it
-- goes through the tensor's public accessors (select, totable), never its
-- memory.
local function item_values(x, item)
  return x:select(item):totable()
end

--- The values of one item of a map (N, C, H, W): item opts.item (default 1).
-- Maps are batch first everywhere in moreau, so a 3-D (C, H, W) or 2-D tensor
-- is refused (metrics would read its first dim as the batch): one map is
-- x:reshape{1, C, H, W}. Checks for NaN / inf.
-- ARGS: x; opts {item}; what (the caller's name); level (error level as the
--   caller's error() would take it).
-- RETURN: v (Lua array of C*H*W numbers, v[c * H * W + h * W + w + 1] for
--   0-based c, h, w), c, h, w.
function normalize.item_planes(x, opts, what, level)
  if not T.is(x) then
    error(what .. ': expected a moreau tensor, got ' .. type(x), level + 1)
  end
  local s = x:shape()
  local nd = #s
  local n, c, h, w
  if nd == 4 then n, c, h, w = s[1], s[2], s[3], s[4]
  elseif nd == 3 then
    error(('%s: expected (N, C, H, W), got %s, a 3-D tensor; maps and images are batch first: add a '
      .. 'batch dim, x:reshape{1, %d, %d, %d}'):format(what, table.concat(s, 'x'), s[1], s[2], s[3]), level + 1)
  else
    error(('%s: expected (N, C, H, W), got %s; maps and images are batch first'):format(what,
      table.concat(s, 'x')), level + 1)
  end
  local item = opts.item or 1
  if type(item) ~= 'number' or item < 1 or item > n or item ~= floor(item) then
    error(('%s: item %s outside 1..%d'):format(what, tostring(item), n), level + 1)
  end
  local v = item_values(x, item)
  for i = 1, c * h * w do
    local e = v[i]
    if e ~= e or e == math.huge or e == -math.huge then
      local ci, r = floor((i - 1) / (h * w)), (i - 1) % (h * w)
      error(('%s: the map has %s at (c=%d, h=%d, w=%d) of item %d (shape %s)'):format(what,
        e ~= e and 'NaN' or 'inf', ci + 1, floor(r / w) + 1, r % w + 1, item, table.concat(s, 'x')),
        level + 1)
    end
  end
  return v, c, h, w
end
local item_planes = normalize.item_planes

--- The p-th percentile of a Lua array of numbers (it is sorted in place):
-- linear interpolation at position p/100 * (n - 1) of the sorted values
-- (numpy's default). ARGS: values (array, n >= 1), p in [0, 100].
function normalize.percentile(values, p)
  local n = #values
  if n == 0 then error('viz.percentile: no values', 2) end
  if type(p) ~= 'number' or p ~= p or p < 0 or p > 100 then
    error('viz.percentile: p must be in [0, 100], got ' .. tostring(p), 2)
  end
  table.sort(values)
  local pos = p / 100 * (n - 1)
  local i = floor(pos)
  local f = pos - i
  if i + 1 >= n then return values[n] end
  return values[i + 1] + f * (values[i + 2] - values[i + 1])
end

--- opts.percentile (default 99), checked to be in (0, 100].
function normalize.check_percentile(opts, what, level)
  local p = opts.percentile or 99
  if type(p) ~= 'number' or p ~= p or p <= 0 or p > 100 then
    error(what .. ': opts.percentile must be in (0, 100], got ' .. tostring(opts.percentile), level + 1)
  end
  return p
end
local check_percentile = normalize.check_percentile

-- The clip value q of nonnegative values a: their percentile, or, when that
-- is 0 but some value is not (fewer nonzero pixels than 1 - p/100 of the map,
-- as in a very sparse map), their max, so such a map does not go black.
-- 0 only for an all-zero map.
local function clip_value(a, p)
  local n = #a
  local sorted = {}
  for i = 1, n do sorted[i] = a[i] end
  local q = normalize.percentile(sorted, p)
  if q <= 0 then q = sorted[n] end
  return q
end

--- The paper's display normalization of one item of a map, as numbers.
-- ARGS: map (tensor (N, C, H, W)); opts {item = 1, percentile = 99}; what,
--   level (as item_planes).
-- RETURN: t (Lua array of H*W numbers in [0, 1], row-major), h, w, q (the
--   clip value: the percentile of sum_c |map|; 0 for an all-zero map, whose
--   t is all 0).
function normalize.magnitude(map, opts, what, level)
  local p = check_percentile(opts, what, level + 1)
  local x, c, h, w = item_planes(map, opts, what, level + 1)
  local plane = h * w
  local s = {}
  for i = 1, plane do
    local acc = 0
    for ci = 0, c - 1 do acc = acc + abs(x[ci * plane + i]) end
    s[i] = acc
  end
  local q = clip_value(s, p)
  if q > 0 then
    for i = 1, plane do s[i] = min(s[i], q) / q end
  end
  return s, h, w, q
end

--- viz.normalize: the display normalization of one item of a map.
-- ARGS: map (tensor (N, C, H, W); no NaN or inf); opts {item = 1, percentile = 99}.
-- RETURN: t (Lua array of H*W numbers in [0, 1], row-major), h, w, q (the
--   clip value; 0 for an all-zero map, whose t is all 0).
function normalize.normalize(map, opts)
  local t, h, w, q = normalize.magnitude(map, opts or {}, 'viz.normalize', 2) -- not a tail call: keeps the error level
  return t, h, w, q
end

--- The signed normalization of one item of a map: d = sum_c map(c, h, w),
-- u = clamp(d / q, -1, 1) with q the percentile of |d|.
-- ARGS: map; opts {item = 1, percentile = 99}; what, level (as item_planes).
-- RETURN: u (Lua array of H*W numbers in [-1, 1], row-major; all 0 for an
--   all-zero map), h, w, q (0 for an all-zero map).
function normalize.signed(map, opts, what, level)
  local p = check_percentile(opts, what, level + 1)
  local x, c, h, w = item_planes(map, opts, what, level + 1)
  local plane = h * w
  local d, a = {}, {}
  for i = 1, plane do
    local acc = 0
    for ci = 0, c - 1 do acc = acc + x[ci * plane + i] end
    d[i], a[i] = acc, abs(acc)
  end
  local q = clip_value(a, p)
  for i = 1, plane do
    d[i] = q > 0 and max(-1, min(1, d[i] / q)) or 0
  end
  return d, h, w, q
end

return normalize
