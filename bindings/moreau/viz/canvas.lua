--- moreau.viz.canvas — the canvas every picture is drawn into (part of
-- moreau.viz: viz.canvas, viz.is_canvas, viz.upscale, viz.Canvas).
--
-- A canvas is width x height RGB pixels, 8 bits per channel, row-major,
-- interleaved (HWC). Pixel coordinates are 1-based, (1, 1) is the top-left
-- pixel, x grows right and y grows down.
--
-- The bytes live in an FFI array that never leaves this file: a canvas object
-- holds no fields of its own (width and height are read-only properties), and
-- its pixels are reached only through the methods below, which check every
-- coordinate against the canvas's own size. So no recipe can read or write
-- outside a canvas, whatever it passes. The loops the other viz modules need
-- over whole canvases (painting a map, upscaling, blending) are here too, as
-- functions whose bounds come from the canvas itself.
local ffi = require 'ffi'
local core = require 'moreau.core'
local T = require 'moreau.tensor'
local color = require 'moreau.viz.color'
local font = require 'moreau.viz.font'
local C, check = core.C, core.check

local floor, min, max, abs = math.floor, math.min, math.max, math.abs
local color_of = color.parse

local canvas = {}

--- The canvas methods (viz.Canvas).
local Canvas = {}
canvas.Canvas = Canvas

-- The private state of each canvas: store[cv] = {pix = uint8_t[h * w * 3],
-- w = width, h = height, clip = nil or {x0, y0, x1, y1} inside the canvas}.
local store = setmetatable({}, { __mode = 'k' })

-- The state of a canvas, or a clear error for anything else.
local function state(self, what, level)
  local s = store[self]
  if not s then error(what .. ': expected a canvas (from viz.canvas), got ' .. type(self), level + 1) end
  return s
end

local meta = {
  __index = function(self, k)
    if k == 'width' then return state(self, 'canvas.width', 2).w end
    if k == 'height' then return state(self, 'canvas.height', 2).h end
    return Canvas[k]
  end,
  __newindex = function(_, k)
    error(("canvas: field '%s' cannot be set (a canvas changes only through its methods)"):format(tostring(k)), 2)
  end,
  __tostring = function(self)
    local s = state(self, 'canvas', 2)
    return ('canvas %d wide × %d high, rgb8'):format(s.w, s.h)
  end,
}

--- Checks a canvas size. ARGS: w, h; what (the caller's name); level (error
-- level as the caller's error() would take it).
function canvas.check_size(w, h, what, level)
  if type(w) ~= 'number' or type(h) ~= 'number' or w < 1 or h < 1 or w ~= floor(w) or h ~= floor(h)
      or w > 32768 or h > 32768 then
    error(('%s: size must be two integers in 1..32768, got %s wide × %s high'):format(what, tostring(w), tostring(h)),
      level + 1)
  end
end
local check_size = canvas.check_size

-- A new canvas over fresh bytes, without checks (the callers checked w, h).
local function new(w, h)
  local cv = setmetatable({}, meta)
  local s = { pix = ffi.new('uint8_t[?]', w * h * 3), w = w, h = h }
  store[cv] = s
  return cv, s
end

--- A new canvas filled with one color.
-- ARGS: width, height (integers 1..32768); bg (color, default white).
-- RETURN: a canvas (cv.width, cv.height read-only).
function canvas.new(width, height, bg)
  check_size(width, height, 'viz.canvas', 2)
  local r, g, b = 255, 255, 255
  if bg ~= nil then r, g, b = color_of(bg, 'viz.canvas', 2) end
  local cv, s = new(width, height)
  local pix, n = s.pix, width * height * 3
  if r == g and g == b then
    ffi.fill(pix, n, r)
  else
    for i = 0, n - 1, 3 do pix[i], pix[i + 1], pix[i + 2] = r, g, b end
  end
  return cv
end

--- True if v is a canvas.
function canvas.is(v) return store[v] ~= nil end

--- A copy of the canvas.
function Canvas:clone()
  local s = state(self, 'canvas:clone', 2)
  local c, d = new(s.w, s.h)
  ffi.copy(d.pix, s.pix, s.w * s.h * 3)
  return c
end

-- The pixel coordinates (x, y) checked against the canvas: integers in
-- 1..w x 1..h, else the error names the method.
local function check_pixel(s, x, y, what, level)
  if type(x) ~= 'number' or type(y) ~= 'number' or x < 1 or y < 1 or x > s.w or y > s.h
      or x ~= floor(x) or y ~= floor(y) then
    error(('%s: pixel (%s, %s) outside x in 1..%d, y in 1..%d'):format(what, tostring(x), tostring(y), s.w, s.h),
      level + 1)
  end
end

--- The pixel at (x, y) (integers, 1-based, inside the canvas, else an error).
-- RETURN: r, g, b (bytes).
function Canvas:get(x, y)
  local s = state(self, 'canvas:get', 2)
  check_pixel(s, x, y, 'canvas:get', 2)
  local o = ((y - 1) * s.w + (x - 1)) * 3
  local p = s.pix
  return p[o], p[o + 1], p[o + 2]
end

-- Write of bytes for the drawing methods: pixels outside the canvas (or its
-- clip box, which lies inside it) are skipped.
-- (written so that NaN, which fails every comparison, is skipped too)
local function put(s, x, y, r, g, b)
  local cl = s.clip
  if cl then
    if not (x >= cl[1] and y >= cl[2] and x <= cl[3] and y <= cl[4]) then return end
  elseif not (x >= 1 and y >= 1 and x <= s.w and y <= s.h) then
    return
  end
  local o = ((y - 1) * s.w + (x - 1)) * 3
  local p = s.pix
  p[o], p[o + 1], p[o + 2] = r, g, b
end

--- Sets the pixel at (x, y) (integers, 1-based, inside the canvas, else an
-- error; inside the canvas but outside its clip box, nothing is drawn).
-- RETURN: self.
function Canvas:set(x, y, c)
  local s = state(self, 'canvas:set', 2)
  check_pixel(s, x, y, 'canvas:set', 2)
  local r, g, b = color_of(c, 'canvas:set', 2)
  put(s, x, y, r, g, b)
  return self
end

--- Limits the drawing methods (set, fill_rect, rect, line, text) to the
-- pixels x0..x1, y0..y1 (inclusive; the box is cut to the canvas); with no
-- arguments, lifts the limit. blit and get ignore it. RETURN: self.
function Canvas:clip(x0, y0, x1, y1)
  local s = state(self, 'canvas:clip', 2)
  if x0 == nil and y0 == nil and x1 == nil and y1 == nil then
    s.clip = nil
    return self
  end
  for i = 1, 4 do
    local v = select(i, x0, y0, x1, y1)
    if type(v) ~= 'number' or v ~= v then
      error(('canvas:clip: the box must be four numbers x0, y0, x1, y1, got %s, %s, %s, %s'):format(
        tostring(x0), tostring(y0), tostring(x1), tostring(y1)), 2)
    end
  end
  s.clip = { max(1, floor(x0)), max(1, floor(y0)), min(s.w, floor(x1)), min(s.h, floor(y1)) }
  return self
end

-- The coordinates and sizes given to a drawing method: finite numbers within
-- ±2^24 pixels (a line's loop runs over its pixels, so a line to 1e15 would
-- never end; NaN would index nothing sensible), else an error naming the method.
local COORD_MAX = 2 ^ 24
local function check_coords(what, level, ...)
  for i = 1, select('#', ...) do
    local v = select(i, ...)
    if type(v) ~= 'number' or not (v >= -COORD_MAX and v <= COORD_MAX) then
      error(('%s: coordinates and sizes must be finite numbers within ±2^24 pixels, got %s'):format(what,
        tostring(v)), level + 1)
    end
  end
end

-- The drawable box {x0, y0, x1, y1}: the clip box, or the whole canvas.
local function box(s) return s.clip or { 1, 1, s.w, s.h } end

--- Fills the w x h rectangle whose top-left pixel is (x, y); parts outside
-- are cut off (the loops run over the visible part only). RETURN: self.
function Canvas:fill_rect(x, y, w, h, c)
  local s = state(self, 'canvas:fill_rect', 2)
  check_coords('canvas:fill_rect', 2, x, y, w, h)
  local r, g, b = color_of(c, 'canvas:fill_rect', 2)
  x, y = floor(x), floor(y)
  local bx = box(s)
  for yy = max(y, bx[2]), min(y + h - 1, bx[4]) do
    for xx = max(x, bx[1]), min(x + w - 1, bx[3]) do put(s, xx, yy, r, g, b) end
  end
  return self
end

--- Draws the 1-pixel outline of the w x h rectangle at (x, y); parts outside
-- are cut off. RETURN: self.
function Canvas:rect(x, y, w, h, c)
  local s = state(self, 'canvas:rect', 2)
  check_coords('canvas:rect', 2, x, y, w, h)
  local r, g, b = color_of(c, 'canvas:rect', 2)
  x, y = floor(x), floor(y)
  local bx = box(s)
  for xx = max(x, bx[1]), min(x + w - 1, bx[3]) do put(s, xx, y, r, g, b); put(s, xx, y + h - 1, r, g, b) end
  for yy = max(y, bx[2]), min(y + h - 1, bx[4]) do put(s, x, yy, r, g, b); put(s, x + w - 1, yy, r, g, b) end
  return self
end

--- Draws a straight line between two pixels (inclusive): Bresenham's line
-- between the rounded end points; a width above 1 stamps a square brush of
-- that side centred on each pixel of the thin line. Parts outside are cut off.
-- ARGS: x0, y0, x1, y1 (pixels, rounded); color; width (pixels, default 1).
-- RETURN: self.
function Canvas:line(x0, y0, x1, y1, c, width)
  local s = state(self, 'canvas:line', 2)
  check_coords('canvas:line', 2, x0, y0, x1, y1)
  local r, g, b = color_of(c, 'canvas:line', 2)
  width = width or 1
  if type(width) ~= 'number' or not (width >= 1 and width <= 256) then
    error(('canvas:line: width must be a number of pixels in [1, 256], got %s'):format(tostring(width)), 2)
  end
  x0, y0, x1, y1 = floor(x0 + 0.5), floor(y0 + 0.5), floor(x1 + 0.5), floor(y1 + 0.5)
  local lo, hi = -floor((width - 1) / 2), floor(width / 2)
  local dx, dy = abs(x1 - x0), -abs(y1 - y0)
  local sx, sy = x0 < x1 and 1 or -1, y0 < y1 and 1 or -1
  local err = dx + dy
  while true do
    if width <= 1 then put(s, x0, y0, r, g, b)
    else
      for oy = lo, hi do for ox = lo, hi do put(s, x0 + ox, y0 + oy, r, g, b) end end
    end
    if x0 == x1 and y0 == y1 then break end
    local e2 = 2 * err
    if e2 >= dy then err = err + dy; x0 = x0 + sx end
    if e2 <= dx then err = err + dx; y0 = y0 + sy end
  end
  return self
end

--- Copies src onto this canvas with src's top-left pixel at (x, y); parts
-- outside are cut off. RETURN: self.
function Canvas:blit(src, x, y)
  local d = state(self, 'canvas:blit', 2)
  local s = store[src]
  if not s then error('canvas:blit: src must be a canvas, got ' .. type(src), 2) end
  check_coords('canvas:blit', 2, x, y)
  x, y = floor(x), floor(y)
  local sw, dw = s.w, d.w
  for sy = 1, s.h do
    local ty = y + sy - 1
    if ty >= 1 and ty <= d.h then
      local x_from, x_to = max(1, 2 - x), min(sw, dw - x + 1)
      if x_from <= x_to then
        ffi.copy(d.pix + ((ty - 1) * dw + (x + x_from - 2)) * 3,
          s.pix + ((sy - 1) * sw + (x_from - 1)) * 3, (x_to - x_from + 1) * 3)
      end
    end
  end
  return self
end

--- Draws text (printable ASCII; '\n' starts a new line; other bytes show as a
-- hollow box) with the top-left of its box at pixel (x, y); only ink pixels
-- are painted, and those outside are cut off.
-- ARGS: x, y (1-based pixel); str; color (default black); scale (integer >= 1,
--   default 1: 5x7 glyphs + a descender row, 6 pixels per character).
-- RETURN: w, h (the text's box, as viz.text_size).
function Canvas:text(x, y, str, c, scale)
  local s = state(self, 'canvas:text', 2)
  check_coords('canvas:text', 2, x, y)
  local r, g, b = color_of(c, 'canvas:text', 2)
  scale = font.check_scale(scale, 'canvas:text', 2)
  x, y = floor(x), floor(y)
  return font.draw(tostring(str), scale, false, function(dx, dy) put(s, x + dx, y + dy, r, g, b) end)
end

--- As canvas:text, turned 90 degrees counter-clockwise (reads bottom to top),
-- its box (h wide, w tall) with the top-left at (x, y). RETURN: h, w.
function Canvas:text_vertical(x, y, str, c, scale)
  local s = state(self, 'canvas:text_vertical', 2)
  check_coords('canvas:text_vertical', 2, x, y)
  local r, g, b = color_of(c, 'canvas:text_vertical', 2)
  scale = font.check_scale(scale, 'canvas:text_vertical', 2)
  x, y = floor(x), floor(y)
  local tw, th = font.draw(tostring(str), scale, true, function(dx, dy) put(s, x + dx, y + dy, r, g, b) end)
  return th, tw
end

--- The canvas as a new (1, 3, H, W) tensor in [0, 1] (byte / 255).
function Canvas:to_tensor()
  local s = state(self, 'canvas:to_tensor', 2)
  local p, plane = s.pix, s.w * s.h
  local v = {}
  for k = 0, 2 do
    for i = 0, plane - 1 do v[k * plane + i + 1] = p[3 * i + k] / 255 end
  end
  return T.from(v, { 1, 3, s.h, s.w })
end

--- Writes the canvas as an 8-bit RGB PNG (through the engine's
-- mr_png_write_rgb8). ARGS: path (string). RETURN: self. Raises the engine's
-- message when the file cannot be written.
function Canvas:save_png(path)
  local s = state(self, 'canvas:save_png', 2)
  if type(path) ~= 'string' then error('canvas:save_png: path must be a string, got ' .. type(path), 2) end
  core.check_write(path, 2)
  check(C.mr_png_write_rgb8(path, s.pix, s.w, s.h, 3))
  return self
end

-- ---------------------------------------------------- whole-canvas loops

--- A new w x h canvas whose pixel i (0-based, row-major: i = (y - 1) w + x - 1)
-- has the color f(i) -> r, g, b (bytes). ARGS: w, h (checked as viz.canvas);
-- f. RETURN: the canvas.
function canvas.paint(w, h, f)
  check_size(w, h, 'viz.canvas', 2)
  local cv, s = new(w, h)
  local pix = s.pix
  for i = 0, w * h - 1 do
    local r, g, b = f(i)
    local o = i * 3
    pix[o], pix[o + 1], pix[o + 2] = r, g, b
  end
  return cv
end

--- Nearest-neighbour upscaling by an integer factor (each pixel becomes a
-- k x k block). ARGS: canvas; k (integer >= 1). RETURN: a new canvas
-- (k W x k H).
function canvas.upscale(cv, k)
  local s = store[cv]
  if not s then error('viz.upscale: expected a canvas, got ' .. type(cv), 2) end
  if type(k) ~= 'number' or k < 1 or k ~= floor(k) then
    error('viz.upscale: k must be an integer >= 1, got ' .. tostring(k), 2)
  end
  local w, h = s.w, s.h
  check_size(w * k, h * k, 'viz.upscale', 2)
  local out, o = new(w * k, h * k)
  local src, dst, ow = s.pix, o.pix, w * k
  for y = 0, h - 1 do
    local row = dst + (y * k) * ow * 3
    for x = 0, w - 1 do
      local si = (y * w + x) * 3
      local r, g, b = src[si], src[si + 1], src[si + 2]
      for j = 0, k - 1 do
        local oi = (x * k + j) * 3
        row[oi], row[oi + 1], row[oi + 2] = r, g, b
      end
    end
    for j = 1, k - 1 do ffi.copy(row + j * ow * 3, row, ow * 3) end
  end
  return out
end

--- Each byte of two canvases of the same size blended:
-- out = round((1 - alpha) a + alpha b) = floor((1 - alpha) a + alpha b + 0.5).
-- ARGS: a, b (canvases); alpha (number in [0, 1]). RETURN: a new canvas.
function canvas.blend(a, b, alpha)
  local sa, sb = store[a], store[b]
  if not sa or not sb then error('canvas.blend: expected two canvases', 2) end
  if sa.w ~= sb.w or sa.h ~= sb.h then
    error(('canvas.blend: sizes differ, %d wide × %d high and %d wide × %d high'):format(sa.w, sa.h, sb.w, sb.h), 2)
  end
  if type(alpha) ~= 'number' or alpha ~= alpha or alpha < 0 or alpha > 1 then
    error('canvas.blend: alpha must be a number in [0, 1], got ' .. tostring(alpha), 2)
  end
  local out, so = new(sa.w, sa.h)
  local pa, pb, po = sa.pix, sb.pix, so.pix
  for i = 0, sa.w * sa.h * 3 - 1 do
    po[i] = floor((1 - alpha) * pa[i] + alpha * pb[i] + 0.5)
  end
  return out
end

return canvas
