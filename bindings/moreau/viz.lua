--- moreau.viz — saliency maps as pictures: heat maps, grids, line plots, PNG.
--
-- Pure Lua over the engine's PNG writer (mr_png_write_rgb8). Everything draws
-- into a *canvas*: width x height RGB pixels, 8 bits per channel, row-major,
-- interleaved (HWC), in an FFI array. Pixel coordinates are 1-based, (1, 1) is
-- the top-left pixel, x grows right and y grows down.
--
--   local viz = require 'moreau.viz'
--   local heat = viz.heatmap(grad, { item = 1 })          -- (N,C,H,W) map
--   local pic = viz.grid {
--     rows = { { viz.image(x), heat, viz.signed(grad) } },
--     col_titles = { 'input', '|grad|', 'grad' }, scale = 4,
--   }
--   pic:save_png('/tmp/maps.png')
--
-- Display normalization (docs/methods.md §11, the paper's figures): a map of one item,
-- (C, H, W), becomes s(h, w) = sum_c |map(c, h, w)|, then
--   t(h, w) = min(s(h, w), q) / q,   q = the 99th percentile of s
-- (percentile with linear interpolation between order statistics, as numpy's
-- default: position p/100 * (n - 1) in the sorted values). Clipping at a high
-- percentile instead of the max keeps one outlier pixel from turning the rest
-- of the map black. Signed maps use d(h, w) = sum_c map(c, h, w) and
-- u = clamp(d / q, -1, 1) with q the percentile of |d|, so zero is the middle
-- of a diverging color map and +v and -v are mirror colors.
--
-- A value t in [0, 1] becomes the byte round(255 t) (as mr_image_write_png).
local ffi = require 'ffi'
local bit = require 'bit'
local core = require 'moreau.core'
local T = require 'moreau.tensor'
local C, check = core.C, core.check

local floor, min, max, abs = math.floor, math.min, math.max, math.abs

local viz = {}

-- ===================================================================== canvas

local Canvas = {}
Canvas.__index = Canvas
viz.Canvas = Canvas

local function to_byte(t) -- t in [0, 1] (clamped) -> 0..255
  if t <= 0 then return 0 end
  if t >= 1 then return 255 end
  return floor(255 * t + 0.5)
end
viz.to_byte = to_byte

local named_colors = {
  black = { 0, 0, 0 }, white = { 255, 255, 255 }, gray = { 128, 128, 128 },
  red = { 214, 39, 40 }, green = { 44, 160, 44 }, blue = { 31, 119, 180 },
}

-- A color is {r, g, b} with bytes 0..255, '#rrggbb', or a name above.
local function color_of(c, what, level)
  if c == nil then return 0, 0, 0 end
  if type(c) == 'string' then
    if named_colors[c] then c = named_colors[c]
    else
      local r, g, b = c:match('^#(%x%x)(%x%x)(%x%x)$')
      if not r then
        error(('%s: unknown color %q (use {r, g, b}, "#rrggbb" or one of black, white, gray, red, green, blue)')
          :format(what, c), level + 1)
      end
      return tonumber(r, 16), tonumber(g, 16), tonumber(b, 16)
    end
  end
  if type(c) ~= 'table' or type(c[1]) ~= 'number' or type(c[2]) ~= 'number' or type(c[3]) ~= 'number' then
    error(what .. ': a color must be {r, g, b} with numbers 0..255, got ' .. tostring(c), level + 1)
  end
  return max(0, min(255, floor(c[1] + 0.5))), max(0, min(255, floor(c[2] + 0.5))),
    max(0, min(255, floor(c[3] + 0.5)))
end

local function check_size(w, h, what, level)
  if type(w) ~= 'number' or type(h) ~= 'number' or w < 1 or h < 1 or w ~= floor(w) or h ~= floor(h)
      or w > 32768 or h > 32768 then
    error(('%s: size must be two integers in 1..32768, got %s x %s'):format(what, tostring(w), tostring(h)),
      level + 1)
  end
end

--- A new canvas filled with one color.
-- ARGS: width, height (integers 1..32768); bg (color, default white).
-- RETURN: a canvas {width, height, pix = uint8_t[height * width * 3]}.
function viz.canvas(width, height, bg)
  check_size(width, height, 'viz.canvas', 2)
  local r, g, b = 255, 255, 255
  if bg ~= nil then r, g, b = color_of(bg, 'viz.canvas', 2) end
  local n = width * height * 3
  local pix = ffi.new('uint8_t[?]', n)
  if r == g and g == b then
    ffi.fill(pix, n, r)
  else
    for i = 0, n - 1, 3 do pix[i], pix[i + 1], pix[i + 2] = r, g, b end
  end
  return setmetatable({ width = width, height = height, pix = pix }, Canvas)
end

--- True if v is a canvas.
function viz.is_canvas(v) return getmetatable(v) == Canvas end

--- A copy of the canvas.
function Canvas:clone()
  local c = viz.canvas(self.width, self.height)
  ffi.copy(c.pix, self.pix, self.width * self.height * 3)
  return c
end

--- The pixel at (x, y), 1-based. RETURN: r, g, b (bytes).
function Canvas:get(x, y)
  if x < 1 or y < 1 or x > self.width or y > self.height or x ~= floor(x) or y ~= floor(y) then
    error(('canvas:get: pixel (%s, %s) outside 1..%d x 1..%d'):format(tostring(x), tostring(y),
      self.width, self.height), 2)
  end
  local o = ((y - 1) * self.width + (x - 1)) * 3
  return self.pix[o], self.pix[o + 1], self.pix[o + 2]
end

-- Unchecked write of bytes; pixels outside the canvas (or its clip box) are skipped.
local function put(self, x, y, r, g, b)
  local cl = self.clip
  if cl then
    if x < cl[1] or y < cl[2] or x > cl[3] or y > cl[4] then return end
  elseif x < 1 or y < 1 or x > self.width or y > self.height then
    return
  end
  local o = ((y - 1) * self.width + (x - 1)) * 3
  local p = self.pix
  p[o], p[o + 1], p[o + 2] = r, g, b
end

--- Sets the pixel at (x, y) (silently nothing outside the canvas). RETURN: self.
function Canvas:set(x, y, color)
  local r, g, b = color_of(color, 'canvas:set', 2)
  put(self, floor(x), floor(y), r, g, b)
  return self
end

--- Fills the w x h rectangle whose top-left pixel is (x, y). RETURN: self.
function Canvas:fill_rect(x, y, w, h, color)
  local r, g, b = color_of(color, 'canvas:fill_rect', 2)
  x, y = floor(x), floor(y)
  for yy = y, y + h - 1 do
    for xx = x, x + w - 1 do put(self, xx, yy, r, g, b) end
  end
  return self
end

--- Draws the 1-pixel outline of the w x h rectangle at (x, y). RETURN: self.
function Canvas:rect(x, y, w, h, color)
  local r, g, b = color_of(color, 'canvas:rect', 2)
  x, y = floor(x), floor(y)
  for xx = x, x + w - 1 do put(self, xx, y, r, g, b); put(self, xx, y + h - 1, r, g, b) end
  for yy = y, y + h - 1 do put(self, x, yy, r, g, b); put(self, x + w - 1, yy, r, g, b) end
  return self
end

local function line_bytes(self, x0, y0, x1, y1, r, g, b, width)
  -- Bresenham from (x0, y0) to (x1, y1); a width above 1 stamps a square
  -- brush of that side centred on each pixel of the thin line.
  x0, y0, x1, y1 = floor(x0 + 0.5), floor(y0 + 0.5), floor(x1 + 0.5), floor(y1 + 0.5)
  local lo, hi = -floor((width - 1) / 2), floor(width / 2)
  local dx, dy = abs(x1 - x0), -abs(y1 - y0)
  local sx, sy = x0 < x1 and 1 or -1, y0 < y1 and 1 or -1
  local err = dx + dy
  while true do
    if width <= 1 then put(self, x0, y0, r, g, b)
    else
      for oy = lo, hi do for ox = lo, hi do put(self, x0 + ox, y0 + oy, r, g, b) end end
    end
    if x0 == x1 and y0 == y1 then break end
    local e2 = 2 * err
    if e2 >= dy then err = err + dy; x0 = x0 + sx end
    if e2 <= dx then err = err + dx; y0 = y0 + sy end
  end
end

--- Draws a straight line between two pixels (inclusive).
-- ARGS: x0, y0, x1, y1 (pixels, rounded); color; width (pixels, default 1).
-- RETURN: self.
function Canvas:line(x0, y0, x1, y1, color, width)
  local r, g, b = color_of(color, 'canvas:line', 2)
  line_bytes(self, x0, y0, x1, y1, r, g, b, width or 1)
  return self
end

--- Copies src onto this canvas with src's top-left pixel at (x, y); parts
-- outside are cut off. RETURN: self.
function Canvas:blit(src, x, y)
  if not viz.is_canvas(src) then error('canvas:blit: src must be a canvas, got ' .. type(src), 2) end
  x, y = floor(x), floor(y)
  local sw, dw = src.width, self.width
  for sy = 1, src.height do
    local ty = y + sy - 1
    if ty >= 1 and ty <= self.height then
      local x_from, x_to = max(1, 2 - x), min(sw, dw - x + 1)
      if x_from <= x_to then
        ffi.copy(self.pix + ((ty - 1) * dw + (x + x_from - 2)) * 3,
          src.pix + ((sy - 1) * sw + (x_from - 1)) * 3, (x_to - x_from + 1) * 3)
      end
    end
  end
  return self
end

--- The canvas as a new (1, 3, H, W) tensor in [0, 1] (byte / 255).
function Canvas:to_tensor()
  local w, h = self.width, self.height
  local t = T.zeros { 1, 3, h, w }
  local d, p, plane = t:data(), self.pix, w * h
  for i = 0, plane - 1 do
    d[i], d[plane + i], d[2 * plane + i] = p[3 * i] / 255, p[3 * i + 1] / 255, p[3 * i + 2] / 255
  end
  return t
end

--- Writes the canvas as an 8-bit RGB PNG (through the engine's
-- mr_png_write_rgb8). ARGS: path (string). RETURN: self. Raises the engine's
-- message when the file cannot be written.
function Canvas:save_png(path)
  if type(path) ~= 'string' then error('canvas:save_png: path must be a string, got ' .. type(path), 2) end
  core.check_write(path, 2)
  check(C.mr_png_write_rgb8(path, self.pix, self.width, self.height, 3))
  return self
end

function Canvas:__tostring()
  return ('canvas %dx%d rgb8'):format(self.width, self.height)
end

-- ================================================================ color maps
--
-- A color map turns t in [0, 1] into bytes r, g, b: piecewise-linear
-- interpolation between anchor colors at evenly spaced t, rounded.

local function anchored(anchors)
  local n = #anchors - 1
  return function(t)
    if t ~= t then error('viz: color map given NaN', 3) end
    t = t <= 0 and 0 or (t >= 1 and 1 or t)
    local s = t * n
    local i = min(floor(s), n - 1)
    local f = s - i
    local a, b = anchors[i + 1], anchors[i + 2]
    return floor(a[1] + f * (b[1] - a[1]) + 0.5), floor(a[2] + f * (b[2] - a[2]) + 0.5),
      floor(a[3] + f * (b[3] - a[3]) + 0.5)
  end
end

-- viridis (the matplotlib default, a perceptually uniform sequential map):
-- its colors at t = 0, 1/8, ..., 1, as published (#440154 ... #FDE725).
local viridis_anchors = {
  { 0x44, 0x01, 0x54 }, { 0x47, 0x2D, 0x7B }, { 0x3B, 0x52, 0x8B }, { 0x2C, 0x72, 0x8E },
  { 0x21, 0x90, 0x8C }, { 0x27, 0xAD, 0x81 }, { 0x5D, 0xC8, 0x63 }, { 0xAA, 0xDC, 0x32 },
  { 0xFD, 0xE7, 0x25 },
}

-- The diverging map, by the magnitude u = |s| in [0, 1] of a signed value:
-- white -> light -> dark red for s > 0; blue is the same with r and b swapped,
-- so +v and -v get mirror colors exactly.
local red_half = anchored { { 255, 255, 255 }, { 244, 165, 130 }, { 214, 96, 77 }, { 165, 15, 21 } }

--- The diverging (blue-white-red) color of a signed value s in [-1, 1]
-- (clamped): -1 dark blue, 0 white, +1 dark red. RETURN: r, g, b.
function viz.diverging(s)
  if s ~= s then error('viz.diverging: NaN', 2) end
  if s >= 0 then return red_half(s) end
  local r, g, b = red_half(-s)
  return b, g, r
end

local colormaps = {
  gray = function(t)
    if t ~= t then error('viz: color map given NaN', 3) end
    local v = to_byte(t)
    return v, v, v
  end,
  viridis = anchored(viridis_anchors),
  bwr = function(t) return viz.diverging(2 * t - 1) end,
}
colormaps.grey = colormaps.gray
colormaps.diverging = colormaps.bwr
viz.colormaps = colormaps

--- The color map function for a name (gray/grey, viridis, bwr/diverging) or
-- the function itself. ARGS: name_or_fn. RETURN: f(t) -> r, g, b.
function viz.colormap(name, level)
  if type(name) == 'function' then return name end
  local f = colormaps[name]
  if not f then
    local known = {}
    for k in pairs(colormaps) do known[#known + 1] = k end
    table.sort(known)
    error(("viz: unknown color map '%s' (known: %s)"):format(tostring(name), table.concat(known, ', ')),
      (level or 1) + 1)
  end
  return f
end

-- ==================================================================== maps

-- The planes of one item of a map (N, C, H, W): item opts.item (default 1).
-- Maps are batch first everywhere in moreau, so a 3-D (C, H, W) or 2-D tensor
-- is refused (metrics would read its first dim as the batch): one map is
-- x:reshape{1, C, H, W}. Checks for NaN / inf.
-- RETURN: p (float* at the item), c, h, w.
local function item_planes(x, opts, what, level)
  if not T.is(x) then
    error(what .. ': expected a moreau tensor, got ' .. type(x), level + 1)
  end
  local s = x:shape()
  local nd = #s
  local p = x:data()
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
  p = p + (item - 1) * c * h * w
  for i = 0, c * h * w - 1 do
    local v = p[i]
    if v ~= v or v == math.huge or v == -math.huge then
      local ci, r = floor(i / (h * w)), i % (h * w)
      error(('%s: the map has %s at (c=%d, h=%d, w=%d) of item %d (shape %s)'):format(what,
        v ~= v and 'NaN' or 'inf', ci + 1, floor(r / w) + 1, r % w + 1, item, table.concat(s, 'x')),
        level + 1)
    end
  end
  return p, c, h, w
end

--- The p-th percentile of a Lua array of numbers (it is sorted in place):
-- linear interpolation at position p/100 * (n - 1) of the sorted values
-- (numpy's default). ARGS: values (array, n >= 1), p in [0, 100].
function viz.percentile(values, p)
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

local function check_percentile(opts, what, level)
  local p = opts.percentile or 99
  if type(p) ~= 'number' or p ~= p or p <= 0 or p > 100 then
    error(what .. ': opts.percentile must be in (0, 100], got ' .. tostring(opts.percentile), level + 1)
  end
  return p
end

-- The clip value q of nonnegative values a: their percentile, or, when that
-- is 0 but some value is not (fewer nonzero pixels than 1 - p/100 of the map,
-- as in a very sparse map), their max, so such a map does not go black.
-- 0 only for an all-zero map.
local function clip_value(a, p)
  local n = #a
  local sorted = {}
  for i = 1, n do sorted[i] = a[i] end
  local q = viz.percentile(sorted, p)
  if q <= 0 then q = sorted[n] end
  return q
end

--- The paper's display normalization of one item of a map, as numbers.
-- ARGS: map (tensor (N, C, H, W)); opts {item = 1, percentile = 99}.
-- RETURN: t (Lua array of H*W numbers in [0, 1], row-major), h, w, q (the
--   clip value: the percentile of sum_c |map|; 0 for an all-zero map, whose
--   t is all 0).
local function normalize(map, opts, what, level)
  local p = check_percentile(opts, what, level + 1)
  local x, c, h, w = item_planes(map, opts, what, level + 1)
  local plane = h * w
  local s = {}
  for i = 0, plane - 1 do
    local acc = 0
    for ci = 0, c - 1 do acc = acc + abs(x[ci * plane + i]) end
    s[i + 1] = acc
  end
  local q = clip_value(s, p)
  if q > 0 then
    for i = 1, plane do s[i] = min(s[i], q) / q end
  end
  return s, h, w, q
end
function viz.normalize(map, opts)
  local t, h, w, q = normalize(map, opts or {}, 'viz.normalize', 2) -- not a tail call: keeps the error level
  return t, h, w, q
end

local function paint(values, h, w, f)
  local cv = viz.canvas(w, h)
  local pix = cv.pix
  for i = 1, h * w do
    local r, g, b = f(values[i])
    local o = (i - 1) * 3
    pix[o], pix[o + 1], pix[o + 2] = r, g, b
  end
  return cv
end

--- A map shown as the paper shows it: sum of |map| over channels, clipped at
-- the 99th percentile, scaled to [0, 1], through a color map.
-- ARGS: map (tensor (N, C, H, W); no NaN or inf);
--   opts {item = 1 (which batch item), percentile = 99,
--         cmap = 'gray' (or 'viridis', 'bwr', or a function t -> r, g, b)}.
-- RETURN: canvas (W x H), q (the clip value; 0 for an all-zero map, which is
--   drawn as t = 0 everywhere).
function viz.heatmap(map, opts)
  opts = opts or {}
  local f = viz.colormap(opts.cmap or 'gray', 2)
  local t, h, w, q = normalize(map, opts, 'viz.heatmap', 2)
  return paint(t, h, w, f), q
end

--- A signed map (e.g. a raw gradient) on a diverging color map: per pixel
-- d = sum of map over channels, u = clamp(d / q, -1, 1) with q the 99th
-- percentile of |d|; -1 is dark blue, 0 white, +1 dark red.
-- ARGS: map (as heatmap); opts {item = 1, percentile = 99,
--   cmap = nil (the diverging map; a named map gets t = (u + 1) / 2)}.
-- RETURN: canvas (W x H), q (0 for an all-zero map, drawn all white).
function viz.signed(map, opts)
  opts = opts or {}
  local p = check_percentile(opts, 'viz.signed', 2)
  local f
  if opts.cmap ~= nil then
    local g = viz.colormap(opts.cmap, 2)
    f = function(u) return g((u + 1) / 2) end
  else
    f = viz.diverging
  end
  local x, c, h, w = item_planes(map, opts, 'viz.signed', 2)
  local plane = h * w
  local d, a = {}, {}
  for i = 0, plane - 1 do
    local acc = 0
    for ci = 0, c - 1 do acc = acc + x[ci * plane + i] end
    d[i + 1], a[i + 1] = acc, abs(acc)
  end
  local q = clip_value(a, p)
  for i = 1, plane do
    d[i] = q > 0 and max(-1, min(1, d[i] / q)) or 0
  end
  return paint(d, h, w, f), q
end

local function per_channel(v, c, default, what, name, level)
  if v == nil then
    local t = {}
    for i = 1, c do t[i] = default end
    return t
  end
  if type(v) == 'number' then
    local t = {}
    for i = 1, c do t[i] = v end
    return t
  end
  if type(v) ~= 'table' or #v ~= c then
    error(('%s: opts.%s must be a number or a table of %d numbers'):format(what, name, c), level + 1)
  end
  return v
end

--- An input image item as a canvas.
-- ARGS: x (tensor (N, C, H, W) with C = 1 (grey) or 3 (RGB),
--   values in [0, 1] after un-normalizing; clamped);
--   opts {item = 1, mean = nil, std = nil (numbers or tables of C numbers: the
--   normalization x = (img - mean) / std to undo, img = x * std + mean)}.
-- RETURN: canvas (W x H).
function viz.image(x, opts)
  opts = opts or {}
  local p, c, h, w = item_planes(x, opts, 'viz.image', 2)
  if c ~= 1 and c ~= 3 then
    error(('viz.image: expected 1 or 3 channels, got %d (shape %s)'):format(c, table.concat(x:shape(), 'x')), 2)
  end
  local mean = per_channel(opts.mean, c, 0, 'viz.image', 'mean', 2)
  local std = per_channel(opts.std, c, 1, 'viz.image', 'std', 2)
  local cv = viz.canvas(w, h)
  local pix, plane = cv.pix, h * w
  for i = 0, plane - 1 do
    for k = 0, 2 do
      local ci = c == 1 and 0 or k
      pix[3 * i + k] = to_byte(p[ci * plane + i] * std[ci + 1] + mean[ci + 1])
    end
  end
  return cv
end

--- Nearest-neighbour upscaling by an integer factor (each pixel becomes a
-- k x k block). ARGS: canvas; k (integer >= 1). RETURN: a new canvas
-- (k W x k H).
function viz.upscale(cv, k)
  if not viz.is_canvas(cv) then error('viz.upscale: expected a canvas, got ' .. type(cv), 2) end
  if type(k) ~= 'number' or k < 1 or k ~= floor(k) then
    error('viz.upscale: k must be an integer >= 1, got ' .. tostring(k), 2)
  end
  local w, h = cv.width, cv.height
  local out = viz.canvas(w * k, h * k)
  local src, dst, ow = cv.pix, out.pix, w * k
  for y = 0, h - 1 do
    local row = dst + (y * k) * ow * 3
    for x = 0, w - 1 do
      local s = (y * w + x) * 3
      local r, g, b = src[s], src[s + 1], src[s + 2]
      for j = 0, k - 1 do
        local o = (x * k + j) * 3
        row[o], row[o + 1], row[o + 2] = r, g, b
      end
    end
    for j = 1, k - 1 do ffi.copy(row + j * ow * 3, row, ow * 3) end
  end
  return out
end

--- A heat map laid over an image: each pixel (1 - alpha) * image + alpha * heat.
-- ARGS: image (canvas); heat (canvas of the same size, or of a size that
--   divides it by one integer factor, which is upscaled; or a map tensor,
--   drawn by viz.heatmap with opts.cmap, default 'viridis');
--   alpha (number in [0, 1], default 0.5); opts {cmap, item, percentile} (for a map).
-- RETURN: a new canvas of the image's size.
function viz.overlay(img, heat, alpha, opts)
  opts = opts or {}
  if not viz.is_canvas(img) then error('viz.overlay: image must be a canvas, got ' .. type(img), 2) end
  alpha = alpha == nil and 0.5 or alpha
  if type(alpha) ~= 'number' or alpha ~= alpha or alpha < 0 or alpha > 1 then
    error('viz.overlay: alpha must be a number in [0, 1], got ' .. tostring(alpha), 2)
  end
  if T.is(heat) then
    heat = viz.heatmap(heat, { cmap = opts.cmap or 'viridis', item = opts.item, percentile = opts.percentile })
  elseif not viz.is_canvas(heat) then
    error('viz.overlay: heat must be a canvas or a map tensor, got ' .. type(heat), 2)
  end
  if heat.width ~= img.width or heat.height ~= img.height then
    local k = img.width / heat.width
    if k ~= floor(k) or heat.height * k ~= img.height then
      error(('viz.overlay: heat is %dx%d, image is %dx%d (sizes must match or differ by one integer factor)')
        :format(heat.width, heat.height, img.width, img.height), 2)
    end
    heat = viz.upscale(heat, k)
  end
  local out = viz.canvas(img.width, img.height)
  local a, b, o = img.pix, heat.pix, out.pix
  for i = 0, img.width * img.height * 3 - 1 do
    o[i] = floor((1 - alpha) * a[i] + alpha * b[i] + 0.5)
  end
  return out
end

-- ==================================================================== font
--
-- A 5x7 bitmap font of our own for printable ASCII (32..126), with one more
-- row below the baseline for descenders: each glyph is 8 rows of 5 columns,
-- '#' = ink. Capitals and digits use rows 1..7, lower case rows 3..7 (+ row 8
-- for g j p q y , _). A character advances 6 pixels; lines are 10 apart.

local GLYPH_W, GLYPH_H, ADVANCE, LINE = 5, 8, 6, 10

local glyph_rows = {
  [' '] = '..... ..... ..... ..... ..... ..... ..... .....',
  ['!'] = '..#.. ..#.. ..#.. ..#.. ..#.. ..... ..#.. .....',
  ['"'] = '.#.#. .#.#. .#.#. ..... ..... ..... ..... .....',
  ['#'] = '.#.#. .#.#. ##### .#.#. ##### .#.#. .#.#. .....',
  ['$'] = '..#.. .#### #.#.. .###. ..#.# ####. ..#.. .....',
  ['%'] = '##... ##..# ...#. ..#.. .#... #..## ...## .....',
  ['&'] = '.##.. #..#. #.#.. .#... #.#.# #..#. .##.# .....',
  ["'"] = '..#.. ..#.. .#... ..... ..... ..... ..... .....',
  ['('] = '...#. ..#.. .#... .#... .#... ..#.. ...#. .....',
  [')'] = '.#... ..#.. ...#. ...#. ...#. ..#.. .#... .....',
  ['*'] = '..... ..#.. #.#.# .###. #.#.# ..#.. ..... .....',
  ['+'] = '..... ..#.. ..#.. ##### ..#.. ..#.. ..... .....',
  [','] = '..... ..... ..... ..... ..... .##.. ..#.. .#...',
  ['-'] = '..... ..... ..... ##### ..... ..... ..... .....',
  ['.'] = '..... ..... ..... ..... ..... .##.. .##.. .....',
  ['/'] = '..... ....# ...#. ..#.. .#... #.... ..... .....',
  ['0'] = '.###. #...# #..## #.#.# ##..# #...# .###. .....',
  ['1'] = '..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###. .....',
  ['2'] = '.###. #...# ....# ...#. ..#.. .#... ##### .....',
  ['3'] = '##### ...#. ..#.. ...#. ....# #...# .###. .....',
  ['4'] = '...#. ..##. .#.#. #..#. ##### ...#. ...#. .....',
  ['5'] = '##### #.... ####. ....# ....# #...# .###. .....',
  ['6'] = '..##. .#... #.... ####. #...# #...# .###. .....',
  ['7'] = '##### ....# ...#. ..#.. .#... .#... .#... .....',
  ['8'] = '.###. #...# #...# .###. #...# #...# .###. .....',
  ['9'] = '.###. #...# #...# .#### ....# ...#. .##.. .....',
  [':'] = '..... .##.. .##.. ..... .##.. .##.. ..... .....',
  [';'] = '..... .##.. .##.. ..... .##.. ..#.. .#... .....',
  ['<'] = '...#. ..#.. .#... #.... .#... ..#.. ...#. .....',
  ['='] = '..... ..... ##### ..... ##### ..... ..... .....',
  ['>'] = '.#... ..#.. ...#. ....# ...#. ..#.. .#... .....',
  ['?'] = '.###. #...# ....# ...#. ..#.. ..... ..#.. .....',
  ['@'] = '.###. #...# ....# .##.# #.#.# #.#.# .###. .....',
  ['A'] = '.###. #...# #...# ##### #...# #...# #...# .....',
  ['B'] = '####. #...# #...# ####. #...# #...# ####. .....',
  ['C'] = '.###. #...# #.... #.... #.... #...# .###. .....',
  ['D'] = '###.. #..#. #...# #...# #...# #..#. ###.. .....',
  ['E'] = '##### #.... #.... ####. #.... #.... ##### .....',
  ['F'] = '##### #.... #.... ####. #.... #.... #.... .....',
  ['G'] = '.###. #...# #.... #.### #...# #...# .#### .....',
  ['H'] = '#...# #...# #...# ##### #...# #...# #...# .....',
  ['I'] = '.###. ..#.. ..#.. ..#.. ..#.. ..#.. .###. .....',
  ['J'] = '..### ...#. ...#. ...#. ...#. #..#. .##.. .....',
  ['K'] = '#...# #..#. #.#.. ##... #.#.. #..#. #...# .....',
  ['L'] = '#.... #.... #.... #.... #.... #.... ##### .....',
  ['M'] = '#...# ##.## #.#.# #.#.# #...# #...# #...# .....',
  ['N'] = '#...# #...# ##..# #.#.# #..## #...# #...# .....',
  ['O'] = '.###. #...# #...# #...# #...# #...# .###. .....',
  ['P'] = '####. #...# #...# ####. #.... #.... #.... .....',
  ['Q'] = '.###. #...# #...# #...# #.#.# #..#. .##.# .....',
  ['R'] = '####. #...# #...# ####. #.#.. #..#. #...# .....',
  ['S'] = '.#### #.... #.... .###. ....# ....# ####. .....',
  ['T'] = '##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#.. .....',
  ['U'] = '#...# #...# #...# #...# #...# #...# .###. .....',
  ['V'] = '#...# #...# #...# #...# #...# .#.#. ..#.. .....',
  ['W'] = '#...# #...# #...# #.#.# #.#.# #.#.# .#.#. .....',
  ['X'] = '#...# #...# .#.#. ..#.. .#.#. #...# #...# .....',
  ['Y'] = '#...# #...# .#.#. ..#.. ..#.. ..#.. ..#.. .....',
  ['Z'] = '##### ....# ...#. ..#.. .#... #.... ##### .....',
  ['['] = '.###. .#... .#... .#... .#... .#... .###. .....',
  ['\\'] = '..... #.... .#... ..#.. ...#. ....# ..... .....',
  [']'] = '.###. ...#. ...#. ...#. ...#. ...#. .###. .....',
  ['^'] = '..#.. .#.#. #...# ..... ..... ..... ..... .....',
  ['_'] = '..... ..... ..... ..... ..... ..... ..... #####',
  ['`'] = '.#... ..#.. ...#. ..... ..... ..... ..... .....',
  ['a'] = '..... ..... .###. ....# .#### #...# .#### .....',
  ['b'] = '#.... #.... #.##. ##..# #...# #...# ####. .....',
  ['c'] = '..... ..... .###. #.... #.... #...# .###. .....',
  ['d'] = '....# ....# .##.# #..## #...# #...# .#### .....',
  ['e'] = '..... ..... .###. #...# ##### #.... .###. .....',
  ['f'] = '..##. .#..# .#... ###.. .#... .#... .#... .....',
  ['g'] = '..... ..... .#### #...# #...# .#### ....# .###.',
  ['h'] = '#.... #.... #.##. ##..# #...# #...# #...# .....',
  ['i'] = '..#.. ..... .##.. ..#.. ..#.. ..#.. .###. .....',
  ['j'] = '...#. ..... ..##. ...#. ...#. ...#. #..#. .##..',
  ['k'] = '#.... #.... #..#. #.#.. ##... #.#.. #..#. .....',
  ['l'] = '.##.. ..#.. ..#.. ..#.. ..#.. ..#.. .###. .....',
  ['m'] = '..... ..... ##.#. #.#.# #.#.# #...# #...# .....',
  ['n'] = '..... ..... #.##. ##..# #...# #...# #...# .....',
  ['o'] = '..... ..... .###. #...# #...# #...# .###. .....',
  ['p'] = '..... ..... ####. #...# #...# ####. #.... #....',
  ['q'] = '..... ..... .##.# #..## #...# .#### ....# ....#',
  ['r'] = '..... ..... #.##. ##..# #.... #.... #.... .....',
  ['s'] = '..... ..... .###. #.... .###. ....# ####. .....',
  ['t'] = '.#... .#... ###.. .#... .#... .#..# ..##. .....',
  ['u'] = '..... ..... #...# #...# #...# #..## .##.# .....',
  ['v'] = '..... ..... #...# #...# #...# .#.#. ..#.. .....',
  ['w'] = '..... ..... #...# #...# #.#.# #.#.# .#.#. .....',
  ['x'] = '..... ..... #...# .#.#. ..#.. .#.#. #...# .....',
  ['y'] = '..... ..... #...# #...# #...# .#### ....# .###.',
  ['z'] = '..... ..... ##### ...#. ..#.. .#... ##### .....',
  ['{'] = '...#. ..#.. ..#.. .#... ..#.. ..#.. ...#. .....',
  ['|'] = '..#.. ..#.. ..#.. ..#.. ..#.. ..#.. ..#.. .....',
  ['}'] = '.#... ..#.. ..#.. ...#. ..#.. ..#.. .#... .....',
  ['~'] = '..... ..... .#... #.#.# ...#. ..... ..... .....',
}
-- drawn for bytes outside 32..126: a hollow box
local missing_rows = '##### #...# #...# #...# #...# #...# ##### .....'

-- glyphs[byte] = { row bits (bit 4 = leftmost column), ... } (8 rows)
local function parse_glyph(rows, ch)
  local bits = {}
  for row in rows:gmatch('%S+') do
    assert(#row == GLYPH_W and not row:find('[^#.]'), 'viz font: bad row in glyph ' .. ch)
    local v = 0
    for k = 1, GLYPH_W do v = v * 2 + (row:sub(k, k) == '#' and 1 or 0) end
    bits[#bits + 1] = v
  end
  assert(#bits == GLYPH_H, 'viz font: glyph ' .. ch .. ' needs ' .. GLYPH_H .. ' rows')
  return bits
end
local glyphs = {}
for ch, rows in pairs(glyph_rows) do glyphs[ch:byte()] = parse_glyph(rows, ch) end
local missing_glyph = parse_glyph(missing_rows, 'missing')

--- The font's metrics: glyph_w, glyph_h (ink box), advance (per character),
-- line (per line), in pixels at scale 1; and bits(byte) -> the glyph's rows.
viz.font = {
  glyph_w = GLYPH_W, glyph_h = GLYPH_H, advance = ADVANCE, line = LINE,
  bits = function(byte) return glyphs[byte] or missing_glyph end,
}

local function check_scale(scale, what, level)
  scale = scale or 1
  if type(scale) ~= 'number' or scale < 1 or scale ~= floor(scale) then
    error(what .. ': scale must be an integer >= 1, got ' .. tostring(scale), level + 1)
  end
  return scale
end

local function text_lines(str)
  local lines = {}
  for line in (str .. '\n'):gmatch('([^\n]*)\n') do lines[#lines + 1] = line end
  return lines
end

--- The size of text as drawn by canvas:text. ARGS: str, scale (default 1).
-- RETURN: w, h in pixels: w = scale * (6 * longest line - 1) (0 for no
-- characters), h = scale * (10 * lines - 2) (a single line is 8 * scale).
function viz.text_size(str, scale)
  str = tostring(str)
  scale = check_scale(scale, 'viz.text_size', 2)
  local lines = text_lines(str)
  local longest = 0
  for _, l in ipairs(lines) do longest = max(longest, #l) end
  return longest > 0 and scale * (ADVANCE * longest - 1) or 0, scale * (LINE * #lines - 2)
end

-- Draws text with its top-left ink-box corner at (x, y); rotated = true turns
-- it 90 degrees counter-clockwise (read bottom to top) with the text's box
-- placed with its top-left at (x, y).
local function draw_text(self, x, y, str, r, g, b, scale, rotated)
  local tw, th = viz.text_size(str, scale)
  local lines = text_lines(str)
  for li, line in ipairs(lines) do
    for ci = 1, #line do
      local bits = glyphs[line:byte(ci)] or missing_glyph
      local gx = (ci - 1) * ADVANCE * scale
      local gy = (li - 1) * LINE * scale
      for row = 1, GLYPH_H do
        local v = bits[row]
        if v ~= 0 then
          for col = 1, GLYPH_W do
            if bit.band(v, bit.lshift(1, GLYPH_W - col)) ~= 0 then
              for sy = 0, scale - 1 do
                for sx = 0, scale - 1 do
                  local px, py = gx + (col - 1) * scale + sx, gy + (row - 1) * scale + sy
                  if rotated then
                    put(self, x + py, y + tw - 1 - px, r, g, b)
                  else
                    put(self, x + px, y + py, r, g, b)
                  end
                end
              end
            end
          end
        end
      end
    end
  end
  return tw, th
end

--- Draws text (printable ASCII; '\n' starts a new line; other bytes show as a
-- hollow box) with the top-left of its box at pixel (x, y); only ink pixels
-- are painted.
-- ARGS: x, y (1-based pixel); str; color (default black); scale (integer >= 1,
--   default 1: 5x7 glyphs + a descender row, 6 pixels per character).
-- RETURN: w, h (the text's box, as viz.text_size).
function Canvas:text(x, y, str, color, scale)
  local r, g, b = color_of(color, 'canvas:text', 2)
  scale = check_scale(scale, 'canvas:text', 2)
  return draw_text(self, floor(x), floor(y), tostring(str), r, g, b, scale, false)
end

--- As canvas:text, turned 90 degrees counter-clockwise (reads bottom to top),
-- its box (h wide, w tall) with the top-left at (x, y). RETURN: h, w.
function Canvas:text_vertical(x, y, str, color, scale)
  local r, g, b = color_of(color, 'canvas:text_vertical', 2)
  scale = check_scale(scale, 'canvas:text_vertical', 2)
  local tw, th = draw_text(self, floor(x), floor(y), tostring(str), r, g, b, scale, true)
  return th, tw
end

-- ==================================================================== grid

--- Canvases in a labeled grid (rows = images, columns = methods) on white.
-- ARGS: opts {
--   rows       = { {canvas, canvas, ...}, ... } (false/nil leaves a cell empty;
--                rows may be short),
--   col_titles = { 'str', ... } (optional, above the columns, centred),
--   row_titles = { 'str', ... } (optional, left of the rows, right-aligned),
--   title      = 'str' (optional, centred on top, drawn at 2x text_scale),
--   pad        = 4 (pixels between and around everything),
--   scale      = 1 (integer: cells are upscaled by it, nearest neighbour),
--   text_scale = 1 (integer: size of the titles' font),
--   border     = light gray (a 1-pixel frame drawn around each cell inside
--                the padding when pad >= 2; false for none) }
-- Layout, with cw_j = max(widest cell of column j (after scale), width of its
--   title), rh_i = max(tallest cell of row i, height of its title),
--   TH = title and text height + pad or 0, CH = col_titles and tallest + pad or 0,
--   RW = row_titles and widest + pad or 0:
--   width  = pad + RW + sum_j cw_j + pad * (ncols - 1) + pad
--   height = pad + TH + CH + sum_i rh_i + pad * (nrows - 1) + pad
--   (at least title width + 2 pad: a wider title widens the canvas and the
--   grid is centred under it). Cells are centred in their slot.
-- RETURN: canvas, layout {width, height, cols = {x, w ...}, rows = {y, h ...}}
--   (x, y: the top-left pixel of each column / row slot).
function viz.grid(opts)
  if type(opts) ~= 'table' or type(opts.rows) ~= 'table' or #opts.rows == 0 then
    error('viz.grid: opts.rows must be a non-empty table of rows of canvases', 2)
  end
  local pad = opts.pad or 4
  if type(pad) ~= 'number' or pad < 0 or pad ~= floor(pad) then
    error('viz.grid: pad must be an integer >= 0, got ' .. tostring(pad), 2)
  end
  local scale = check_scale(opts.scale, 'viz.grid', 2)
  local ts = check_scale(opts.text_scale, 'viz.grid (text_scale)', 2)
  local border = opts.border == nil and { 200, 200, 200 } or opts.border
  if border then color_of(border, 'viz.grid (border)', 2) end
  local rows = opts.rows
  local nrows, ncols = #rows, 0
  for i, row in ipairs(rows) do
    if type(row) ~= 'table' then error(('viz.grid: row %d is a %s, not a table'):format(i, type(row)), 2) end
    local n = table.maxn(row)
    for j = 1, n do
      if row[j] and not viz.is_canvas(row[j]) then
        error(('viz.grid: cell (%d, %d) is a %s, not a canvas'):format(i, j, type(row[j])), 2)
      end
    end
    ncols = max(ncols, n)
  end
  local col_titles, row_titles = opts.col_titles, opts.row_titles
  if col_titles then ncols = max(ncols, #col_titles) end
  if ncols == 0 then error('viz.grid: no cells', 2) end
  if row_titles and #row_titles > nrows then
    error(('viz.grid: %d row titles for %d rows'):format(#row_titles, nrows), 2)
  end

  local cw, rh = {}, {}
  for j = 1, ncols do cw[j] = 0 end
  for i = 1, nrows do rh[i] = 0 end
  for i = 1, nrows do
    for j = 1, ncols do
      local c = rows[i][j]
      if c then
        cw[j] = max(cw[j], c.width * scale)
        rh[i] = max(rh[i], c.height * scale)
      end
    end
  end
  local CH, RW, TH = 0, 0, 0
  if col_titles then
    for j = 1, ncols do
      if col_titles[j] then
        local w, h = viz.text_size(col_titles[j], ts)
        cw[j] = max(cw[j], w)
        CH = max(CH, h)
      end
    end
    CH = CH + pad
  end
  if row_titles then
    for i = 1, nrows do
      if row_titles[i] then
        local w, h = viz.text_size(row_titles[i], ts)
        RW = max(RW, w)
        rh[i] = max(rh[i], h)
      end
    end
    RW = RW + pad
  end
  local title_w, title_h
  if opts.title then
    title_w, title_h = viz.text_size(opts.title, 2 * ts)
    TH = title_h + pad
  end
  local width = pad + RW + pad * (ncols - 1) + pad
  for j = 1, ncols do width = width + cw[j] end
  local height = pad + TH + CH + pad * (nrows - 1) + pad
  for i = 1, nrows do height = height + rh[i] end
  local shift = 0 -- a title wider than the grid widens it; the grid is centred
  if opts.title and title_w + 2 * pad > width then
    shift = floor((title_w + 2 * pad - width) / 2)
    width = title_w + 2 * pad
  end

  local out = viz.canvas(width, height)
  local layout = { width = width, height = height, cols = {}, rows = {} }
  local x = 1 + shift + pad + RW
  for j = 1, ncols do
    layout.cols[j] = { x = x, w = cw[j] }
    x = x + cw[j] + pad
  end
  local y = 1 + pad + TH + CH
  for i = 1, nrows do
    layout.rows[i] = { y = y, h = rh[i] }
    y = y + rh[i] + pad
  end
  if opts.title then out:text(1 + floor((width - title_w) / 2), 1 + pad, opts.title, 'black', 2 * ts) end
  if col_titles then
    for j = 1, ncols do
      if col_titles[j] then
        local w, h = viz.text_size(col_titles[j], ts)
        local c = layout.cols[j]
        out:text(c.x + floor((c.w - w) / 2), 1 + pad + TH + (CH - pad - h), col_titles[j], 'black', ts)
      end
    end
  end
  for i = 1, nrows do
    local rsl = layout.rows[i]
    if row_titles and row_titles[i] then
      local w, h = viz.text_size(row_titles[i], ts)
      out:text(1 + shift + pad + (RW - pad - w), rsl.y + floor((rsl.h - h) / 2), row_titles[i], 'black', ts)
    end
    for j = 1, ncols do
      local c = rows[i][j]
      if c then
        if scale > 1 then c = viz.upscale(c, scale) end
        local csl = layout.cols[j]
        local cx, cy = csl.x + floor((csl.w - c.width) / 2), rsl.y + floor((rsl.h - c.height) / 2)
        -- a thin frame in the padding, so a map with a white background
        -- (zero on the diverging map) still shows where it ends
        if border and pad >= 2 then out:rect(cx - 1, cy - 1, c.width + 2, c.height + 2, border) end
        out:blit(c, cx, cy)
      end
    end
  end
  return out, layout
end

-- =============================================================== line plot

-- Distinct colors for series, in order (the common categorical "tab10" set).
viz.palette = {
  { 31, 119, 180 }, { 255, 127, 14 }, { 44, 160, 44 }, { 214, 39, 40 }, { 148, 103, 189 },
  { 140, 86, 75 }, { 227, 119, 194 }, { 127, 127, 127 }, { 188, 189, 34 }, { 23, 190, 207 },
}

local function nice_step(span, target)
  -- the 1, 2 or 5 x 10^k step giving about `target` intervals over span
  local raw = span / target
  local e = floor(math.log10(raw))
  local base = 10 ^ e
  local m = raw / base
  local f = m < 1.5 and 1 or (m < 3.5 and 2 or (m < 7.5 and 5 or 10))
  return f * base
end

-- Linear axis: range [lo, hi] widened to whole steps; ticks and labels.
local function linear_axis(lo, hi, target)
  if hi - lo <= 0 then
    local d = lo ~= 0 and abs(lo) * 0.1 or 1
    lo, hi = lo - d, hi + d
  end
  local step = nice_step(hi - lo, target)
  local a, b = floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
  local ticks = {}
  local decimals = max(0, -floor(math.log10(step) + 1e-9))
  local big = max(abs(a), abs(b))
  for k = 0, floor((b - a) / step + 0.5) do
    local v = a + k * step
    if abs(v) < step * 1e-6 then v = 0 end
    local label
    if big >= 1e6 or step < 1e-4 then label = ('%.3g'):format(v)
    else label = (('%%.%df'):format(decimals)):format(v) end
    ticks[#ticks + 1] = { v = v, label = label }
  end
  return a, b, ticks
end

local function log_label(v)
  if v >= 1e-3 and v < 1e5 then return ('%g'):format(v) end
  return ('%.0e'):format(v):gsub('e%+?(%-?)0*(%d)', 'e%1%2')
end

-- Log axis over positive [lo, hi]: in log10 units, widened to whole decades;
-- ticks at 10^k (and 2, 5 x 10^k when the range spans under 3 decades).
local function log_axis(lo, hi)
  local a, b = floor(math.log10(lo) + 1e-9), math.ceil(math.log10(hi) - 1e-9)
  if b <= a then b = a + 1 end
  local ticks = {}
  for k = a, b do
    ticks[#ticks + 1] = { v = k, label = log_label(10 ^ k) }
    if b - a < 3 and k < b then
      for _, m in ipairs { 2, 5 } do
        ticks[#ticks + 1] = { v = k + math.log10(m), label = log_label(m * 10 ^ k), minor = true }
      end
    end
  end
  return a, b, ticks
end

local function check_series(series, level)
  if type(series) ~= 'table' or #series == 0 then
    error('viz.line_plot: opts.series must be a non-empty table of {name=, x=, y=}', level + 1)
  end
  for i, s in ipairs(series) do
    if type(s) ~= 'table' then error(('viz.line_plot: series %d is a %s, not a table'):format(i, type(s)), level + 1) end
    local what = ('viz.line_plot: series %d'):format(i) .. (s.name and ' (' .. tostring(s.name) .. ')' or '')
    if type(s.x) ~= 'table' or type(s.y) ~= 'table' then error(what .. ': x and y must be tables', level + 1) end
    if #s.x ~= #s.y or #s.x == 0 then
      error(('%s: x has %d values and y has %d (need the same number, at least 1)'):format(what, #s.x, #s.y),
        level + 1)
    end
    if s.err ~= nil and (type(s.err) ~= 'table' or #s.err ~= #s.y) then
      error(('%s: err must be a table of %d values like y'):format(what, #s.y), level + 1)
    end
    for k = 1, #s.x do
      for _, f in ipairs { 'x', 'y', 'err' } do
        local v = s[f] and s[f][k]
        if s[f] and (type(v) ~= 'number' or v ~= v or v == math.huge or v == -math.huge) then
          error(('%s: %s[%d] is %s, not a finite number'):format(what, f, k, tostring(v)), level + 1)
        end
      end
    end
  end
end

--- A line plot: axes with numeric tick labels, light grid lines, one colored
-- line with point markers per series, optional error bars, a legend.
-- ARGS: opts {
--   series = { {name = 'str', x = {...}, y = {...}, err = {...} (optional,
--             half-heights of error bars), color = {r, g, b} (optional)}, ... },
--   title, xlabel, ylabel (strings, optional),
--   width = 640, height = 400,
--   logx = false, logy = false (log10 axes; values must be > 0),
--   xlim, ylim = {lo, hi} (optional; data outside is clipped),
--   legend = 'auto' ('top-right', 'top-left', 'bottom-right', 'bottom-left',
--            or false; 'auto' picks the corner covering the fewest points) }
-- Series colors default to viz.palette in order.
-- RETURN: canvas (width x height), frame {x0, y0, x1, y1} (the plot area's
--   corner pixels).
function viz.line_plot(opts)
  if type(opts) ~= 'table' then error('viz.line_plot: expected a table of options', 2) end
  local series = opts.series
  check_series(series, 2)
  local W, H = opts.width or 640, opts.height or 400
  check_size(W, H, 'viz.line_plot', 2)
  local logx, logy = opts.logx, opts.logy

  -- data ranges (in axis units: log10 for log axes)
  local xmin, xmax, ymin, ymax = math.huge, -math.huge, math.huge, -math.huge
  for i, s in ipairs(series) do
    for k = 1, #s.x do
      local x, y, e = s.x[k], s.y[k], s.err and abs(s.err[k]) or 0
      if logx and x <= 0 then
        error(('viz.line_plot: series %d: x[%d] = %g but logx needs x > 0'):format(i, k, x), 2)
      end
      if logy and y - e <= 0 then
        error(('viz.line_plot: series %d: y[%d] - err = %g but logy needs values > 0'):format(i,
          k, y - e), 2)
      end
      xmin, xmax = min(xmin, x), max(xmax, x)
      ymin, ymax = min(ymin, y - e), max(ymax, y + e)
    end
  end
  if opts.xlim then xmin, xmax = opts.xlim[1], opts.xlim[2] end
  if opts.ylim then ymin, ymax = opts.ylim[1], opts.ylim[2] end
  local function fx(v) return logx and math.log10(v) or v end
  local function fy(v) return logy and math.log10(v) or v end

  -- Ticks that fit: `room(ticks)` is the pixel gap a tick label needs; a
  -- linear axis asks for fewer intervals, a log axis drops its 2x/5x ticks,
  -- then every other decade, until neighbouring ticks are that far apart.
  local function fit_axis(lo, hi, log, span_px, target, room)
    local a, b, ticks
    if log then
      a, b, ticks = log_axis(lo, hi)
      local function fits(kept) -- the first gap is the smallest one
        return #kept < 2 or span_px * (kept[2].v - kept[1].v) / (b - a) >= room(kept)
      end
      if fits(ticks) then return a, b, ticks end
      for every = 1, b - a do
        local kept = {}
        for _, t in ipairs(ticks) do
          if not t.minor and (t.v - a) % every == 0 then kept[#kept + 1] = t end
        end
        if #kept <= 2 or fits(kept) then return a, b, kept end
      end
    end
    for n = target, 1, -1 do
      a, b, ticks = linear_axis(lo, hi, n)
      if #ticks <= 2 or span_px / (#ticks - 1) >= room(ticks) then break end
    end
    return a, b, ticks
  end

  -- margins from the text they hold
  local top = 10 + (opts.title and 16 + 8 or 0)
  local bottom = 4 + 4 + 8 + (opts.xlabel and 8 + 8 or 0) + 10
  local right = 16
  local y0, y1 = 1 + top, H - bottom
  local ya, yb, yticks = fit_axis(ymin, ymax, logy, y1 - y0, 5, function() return 20 end)
  local ylab_w = 0
  for _, t in ipairs(yticks) do ylab_w = max(ylab_w, (viz.text_size(t.label))) end
  local left = 8 + (opts.ylabel and 8 + 6 or 0) + ylab_w + 4 + 4
  local x0, x1 = 1 + left, W - right
  if x1 - x0 < 20 or y1 - y0 < 20 then
    error(('viz.line_plot: %dx%d is too small for the axes and labels'):format(W, H), 2)
  end
  local xa, xb, xticks = fit_axis(xmin, xmax, logx, x1 - x0, 6, function(ticks)
    local w = 0
    for _, t in ipairs(ticks) do w = max(w, (viz.text_size(t.label))) end
    return w + 12
  end)
  local function px(v) return x0 + (fx(v) - xa) / (xb - xa) * (x1 - x0) end
  local function py(v) return y1 - (fy(v) - ya) / (yb - ya) * (y1 - y0) end

  local cv = viz.canvas(W, H)
  local black, grid_c, frame_c = { 0, 0, 0 }, { 225, 225, 225 }, { 60, 60, 60 }
  -- grid lines and ticks
  for _, t in ipairs(xticks) do
    local x = floor(x0 + (t.v - xa) / (xb - xa) * (x1 - x0) + 0.5)
    cv:line(x, y0, x, y1, grid_c)
    cv:line(x, y1, x, y1 + 4, frame_c)
    local w = viz.text_size(t.label)
    cv:text(x - floor(w / 2), y1 + 8, t.label, black)
  end
  for _, t in ipairs(yticks) do
    local y = floor(y1 - (t.v - ya) / (yb - ya) * (y1 - y0) + 0.5)
    cv:line(x0, y, x1, y, grid_c)
    cv:line(x0 - 4, y, x0, y, frame_c)
    local w = viz.text_size(t.label)
    cv:text(x0 - 8 - w, y - 3, t.label, black)
  end
  cv:rect(x0, y0, x1 - x0 + 1, y1 - y0 + 1, frame_c)
  if opts.title then
    local w = viz.text_size(opts.title, 2)
    cv:text(1 + floor((W - w) / 2), 11, opts.title, black, 2)
  end
  if opts.xlabel then
    local w = viz.text_size(opts.xlabel)
    cv:text(x0 + floor((x1 - x0 - w) / 2), y1 + 8 + 8 + 8, opts.xlabel, black)
  end
  if opts.ylabel then
    local w = viz.text_size(opts.ylabel)
    cv:text_vertical(9, y0 + floor((y1 - y0 - w) / 2), opts.ylabel, black)
  end

  -- the series, clipped to the frame widened by a marker's half-width (so
  -- points on the axis range's ends show whole)
  cv.clip = { x0 - 3, y0 - 3, x1 + 3, y1 + 3 }
  local colors = {}
  for i, s in ipairs(series) do
    local r, g, b = color_of(s.color or viz.palette[(i - 1) % #viz.palette + 1], 'viz.line_plot', 2)
    colors[i] = { r, g, b }
    for k = 1, #s.x do
      local X, Y = px(s.x[k]), py(s.y[k])
      if k > 1 then line_bytes(cv, px(s.x[k - 1]), py(s.y[k - 1]), X, Y, r, g, b, 2) end
      if s.err then
        local e = abs(s.err[k])
        local ya_, yb_ = py(s.y[k] - e), py(s.y[k] + e)
        line_bytes(cv, X, ya_, X, yb_, r, g, b, 1)
        line_bytes(cv, X - 3, ya_, X + 3, ya_, r, g, b, 1)
        line_bytes(cv, X - 3, yb_, X + 3, yb_, r, g, b, 1)
      end
      local mx, my = floor(X + 0.5), floor(Y + 0.5)
      for oy = -2, 2 do for ox = -2, 2 do put(cv, mx + ox, my + oy, r, g, b) end end
    end
  end

  -- the legend
  local where = opts.legend == nil and 'auto' or opts.legend
  if where then
    local names, lw = {}, 0
    for i, s in ipairs(series) do
      names[i] = tostring(s.name or ('series ' .. i))
      lw = max(lw, (viz.text_size(names[i])))
    end
    local bw, bh = 6 + 20 + 6 + lw + 6, 4 + 12 * #series + 2
    local corners = {
      ['top-right'] = { x1 - 6 - bw, y0 + 6 }, ['top-left'] = { x0 + 6, y0 + 6 },
      ['bottom-right'] = { x1 - 6 - bw, y1 - 6 - bh }, ['bottom-left'] = { x0 + 6, y1 - 6 - bh },
    }
    local pos
    if where == 'auto' then
      local best = math.huge
      for _, name in ipairs { 'top-right', 'top-left', 'bottom-right', 'bottom-left' } do
        local c, n = corners[name], 0
        local function hit(X, Y)
          if X >= c[1] - 4 and X <= c[1] + bw + 4 and Y >= c[2] - 4 and Y <= c[2] + bh + 4 then n = n + 1 end
        end
        for _, s in ipairs(series) do
          for k = 1, #s.x do
            local X, Y = px(s.x[k]), py(s.y[k])
            hit(X, Y)
            hit(X, Y) -- a marker counts more than a stretch of line
            if k > 1 then -- points along the segment from the previous point
              local PX, PY = px(s.x[k - 1]), py(s.y[k - 1])
              for f = 1, 15 do hit(PX + (X - PX) * f / 16, PY + (Y - PY) * f / 16) end
            end
          end
        end
        if n < best then best, pos = n, c end
      end
    else
      pos = corners[where]
      if not pos then
        error("viz.line_plot: legend must be 'auto', 'top-right', 'top-left', 'bottom-right', "
          .. "'bottom-left' or false, got " .. tostring(where), 2)
      end
    end
    cv.clip = nil
    local lx, ly = pos[1], pos[2]
    cv:fill_rect(lx, ly, bw, bh, 'white')
    cv:rect(lx, ly, bw, bh, { 160, 160, 160 })
    for i = 1, #series do
      local c = colors[i]
      local yy = ly + 4 + (i - 1) * 12
      line_bytes(cv, lx + 6, yy + 3, lx + 6 + 20, yy + 3, c[1], c[2], c[3], 2)
      for oy = -2, 2 do for ox = -2, 2 do put(cv, lx + 16 + ox, yy + 3 + oy, c[1], c[2], c[3]) end end
      cv:text(lx + 6 + 20 + 6, yy, names[i], black)
    end
  end
  cv.clip = nil
  return cv, { x0 = x0, y0 = y0, x1 = x1, y1 = y1 }
end

return viz
