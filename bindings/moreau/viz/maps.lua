--- moreau.viz.maps — saliency maps and input images as canvases (part of
-- moreau.viz: viz.heatmap, viz.signed, viz.image, viz.overlay, viz.colorbar).
--
-- The numbers come from moreau.viz.normalize (the paper's display
-- normalization), the colors from moreau.viz.color; each map item becomes a
-- W x H canvas, one pixel per map pixel.
local T = require 'moreau.tensor'
local canvas = require 'moreau.viz.canvas'
local color = require 'moreau.viz.color'
local norm = require 'moreau.viz.normalize'

local floor = math.floor
local to_byte = color.to_byte

local maps = {}

-- A w x h canvas whose pixel i (1-based, row-major) is f(values[i]).
local function paint(values, h, w, f)
  return canvas.paint(w, h, function(i) return f(values[i + 1]) end)
end

-- maps.heatmap's work (level: as the caller's error() would take it, so viz.overlay's errors
-- point at its own caller too)
local function heatmap(map, opts, level)
  local f = color.colormap(opts.cmap or 'gray', level + 1)
  local t, h, w, q = norm.magnitude(map, opts, 'viz.heatmap', level + 1)
  return paint(t, h, w, f), q
end
--- A map shown as the paper shows it: sum of |map| over channels, clipped at
-- the 99th percentile, scaled to [0, 1], through a color map.
-- ARGS: map (tensor (N, C, H, W); no NaN or inf);
--   opts {item = 1 (which batch item), percentile = 99,
--         cmap = 'gray' (or 'viridis', 'bwr', or a function t -> r, g, b)}.
-- RETURN: canvas (W x H), q (the clip value; 0 for an all-zero map, which is
--   drawn as t = 0 everywhere).
function maps.heatmap(map, opts)
  local cv, q = heatmap(map, opts or {}, 2) -- not a tail call: keeps the error level
  return cv, q
end

--- A signed map (e.g., a raw gradient) on a diverging color map: per pixel
-- d = sum of map over channels, u = clamp(d / q, -1, 1) with q the 99th
-- percentile of |d|; -1 is dark blue, 0 white, +1 dark red.
-- ARGS: map (as heatmap); opts {item = 1, percentile = 99,
--   cmap = nil (the diverging map; a named map gets t = (u + 1) / 2)}.
-- RETURN: canvas (W x H), q (0 for an all-zero map, drawn all white).
function maps.signed(map, opts)
  opts = opts or {}
  norm.check_percentile(opts, 'viz.signed', 2) -- before the color map, as the options read
  local f
  if opts.cmap ~= nil then
    local g = color.colormap(opts.cmap, 2)
    f = function(u) return g((u + 1) / 2) end
  else
    f = color.diverging
  end
  local d, h, w, q = norm.signed(map, opts, 'viz.signed', 2)
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
-- RETURN: canvas (W x H); each byte round(255 clamp(x * std + mean, 0, 1)).
function maps.image(x, opts)
  opts = opts or {}
  local p, c, h, w = norm.item_planes(x, opts, 'viz.image', 2)
  if c ~= 1 and c ~= 3 then
    error(('viz.image: expected 1 or 3 channels, got %d (shape %s)'):format(c, table.concat(x:shape(), 'x')), 2)
  end
  local mean = per_channel(opts.mean, c, 0, 'viz.image', 'mean', 2)
  local std = per_channel(opts.std, c, 1, 'viz.image', 'std', 2)
  local plane = h * w
  local function byte(ci, i) return to_byte(p[ci * plane + i + 1] * std[ci + 1] + mean[ci + 1]) end
  if c == 1 then
    return canvas.paint(w, h, function(i)
      local v = byte(0, i)
      return v, v, v
    end)
  end
  return canvas.paint(w, h, function(i) return byte(0, i), byte(1, i), byte(2, i) end)
end

--- A heat map laid over an image: each pixel (1 - alpha) * image + alpha * heat.
-- ARGS: image (canvas); heat (canvas of the same size, or of a size that
--   divides it by one integer factor, which is upscaled; or a map tensor,
--   drawn by viz.heatmap with opts.cmap, default 'viridis');
--   alpha (number in [0, 1], default 0.5); opts {cmap, item, percentile} (for a map).
-- RETURN: a new canvas of the image's size, each byte
--   round((1 - alpha) * image + alpha * heat).
function maps.overlay(img, heat, alpha, opts)
  opts = opts or {}
  if not canvas.is(img) then error('viz.overlay: image must be a canvas, got ' .. type(img), 2) end
  alpha = alpha == nil and 0.5 or alpha
  if type(alpha) ~= 'number' or alpha ~= alpha or alpha < 0 or alpha > 1 then
    error('viz.overlay: alpha must be a number in [0, 1], got ' .. tostring(alpha), 2)
  end
  if T.is(heat) then
    heat = heatmap(heat, { cmap = opts.cmap or 'viridis', item = opts.item, percentile = opts.percentile }, 2)
  elseif not canvas.is(heat) then
    error('viz.overlay: heat must be a canvas or a map tensor, got ' .. type(heat), 2)
  end
  if heat.width ~= img.width or heat.height ~= img.height then
    local k = img.width / heat.width
    if k ~= floor(k) or heat.height * k ~= img.height then
      error(('viz.overlay: heat is %d wide × %d high, image is %d wide × %d high (sizes must match or differ by one integer factor)')
        :format(heat.width, heat.height, img.width, img.height), 2)
    end
    heat = canvas.upscale(heat, k)
  end
  return canvas.blend(img, heat, alpha)
end

--- A colour bar: the colour map a panel was drawn with, as a horizontal
-- strip, low values on the left. For the absolute view (viz.heatmap) the
-- left end is t = 0 (map value 0) and the right end t = 1 (the clip value q
-- and above); for the signed view (viz.signed, cmap = 'diverging') the strip
-- runs u = -1 .. 1, left end -q (and below), middle 0, right end +q (and above).
-- Pixel column x (0-based) shows t = x / (width - 1) (or u = 2 t - 1).
-- The numbers belong next to it in text (the results page writes them in HTML).
-- ARGS: cmap ('gray', 'viridis', 'diverging' / 'bwr', or a function t -> r, g, b
--   over [0, 1]); opts {width = 112, height = 10 (pixels, integers >= 2 and >= 1)}.
-- RETURN: canvas (width x height).
function maps.colorbar(cmap, opts)
  opts = opts or {}
  local w, h = opts.width or 112, opts.height or 10
  if type(w) ~= 'number' or w < 2 or w ~= floor(w) then
    error('viz.colorbar: width must be an integer >= 2, got ' .. tostring(opts.width), 2)
  end
  canvas.check_size(w, h, 'viz.colorbar', 2)
  local f = color.colormap(cmap or 'gray', 2)
  local row = {}
  for x = 0, w - 1 do row[x] = { f(x / (w - 1)) } end
  return canvas.paint(w, h, function(i)
    local c = row[i % w]
    return c[1], c[2], c[3]
  end)
end

return maps
