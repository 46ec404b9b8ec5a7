--- moreau.viz.color — colors and color maps (part of moreau.viz; the public
-- names are re-exported there: viz.to_byte, viz.diverging, viz.colormaps,
-- viz.colormap, viz.palette).
--
-- A color is {r, g, b} with bytes 0..255, '#rrggbb', or one of the names
-- below. A color map turns t in [0, 1] into bytes r, g, b: piecewise-linear
-- interpolation between anchor colors at evenly spaced t, rounded. A value
-- t in [0, 1] becomes the byte round(255 t) (as mr_image_write_png).
local floor, min, max = math.floor, math.min, math.max

local color = {}

--- t in [0, 1] (clamped) -> the byte round(255 t), 0..255.
function color.to_byte(t)
  if t <= 0 then return 0 end
  if t >= 1 then return 255 end
  return floor(255 * t + 0.5)
end
local to_byte = color.to_byte

local named_colors = {
  black = { 0, 0, 0 }, white = { 255, 255, 255 }, gray = { 128, 128, 128 },
  red = { 214, 39, 40 }, green = { 44, 160, 44 }, blue = { 31, 119, 180 },
}

--- The bytes of a color ({r, g, b}, '#rrggbb' or a name; nil is black).
-- ARGS: c; what (the caller's name, for the message); level (error level as
--   the caller's error() would take it).
-- RETURN: r, g, b (integers 0..255: table entries are rounded and clamped).
function color.parse(c, what, level)
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
  if type(c) ~= 'table' or type(c[1]) ~= 'number' or type(c[2]) ~= 'number' or type(c[3]) ~= 'number'
    or c[1] ~= c[1] or c[2] ~= c[2] or c[3] ~= c[3] then -- NaN has no byte (±inf clamps as any number)
    error(what .. ': a color must be {r, g, b} with numbers 0..255, got ' .. tostring(c), level + 1)
  end
  return max(0, min(255, floor(c[1] + 0.5))), max(0, min(255, floor(c[2] + 0.5))),
    max(0, min(255, floor(c[3] + 0.5)))
end

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
function color.diverging(s)
  if s ~= s then error('viz.diverging: NaN', 2) end
  if s >= 0 then return red_half(s) end
  local r, g, b = red_half(-s)
  return b, g, r
end

--- The named color maps: f(t in [0, 1]) -> r, g, b.
local colormaps = {
  gray = function(t)
    if t ~= t then error('viz: color map given NaN', 3) end
    local v = to_byte(t)
    return v, v, v
  end,
  viridis = anchored(viridis_anchors),
  bwr = function(t) return color.diverging(2 * t - 1) end,
}
colormaps.grey = colormaps.gray
colormaps.diverging = colormaps.bwr
color.colormaps = colormaps

--- The color map function for a name (gray/grey, viridis, bwr/diverging) or
-- the function itself. ARGS: name_or_fn; level (optional error level).
-- RETURN: f(t) -> r, g, b.
function color.colormap(name, level)
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

-- Distinct colors for series, in order (the common categorical "tab10" set).
color.palette = {
  { 31, 119, 180 }, { 255, 127, 14 }, { 44, 160, 44 }, { 214, 39, 40 }, { 148, 103, 189 },
  { 140, 86, 75 }, { 227, 119, 194 }, { 127, 127, 127 }, { 188, 189, 34 }, { 23, 190, 207 },
}

return color
