--- moreau.viz — saliency maps as pictures: heat maps, grids, line plots, PNG.
--
-- Pure Lua over the engine's PNG writer (mr_png_write_rgb8). Everything draws
-- into a *canvas*: width x height RGB pixels, 8 bits per channel, row-major,
-- interleaved (HWC). Pixel coordinates are 1-based, (1, 1) is the top-left
-- pixel, x grows right and y grows down. A canvas's bytes are private: they
-- are read and written only through its methods, which check coordinates.
--
--   local viz = require 'moreau.viz'
--   local heat = viz.heatmap(grad, { item = 1 })          -- (N,C,H,W) map
--   local pic = viz.grid {
--     rows = { { viz.image(x), heat, viz.signed(grad) } },
--     col_titles = { 'input', '|grad|', 'grad' }, scale = 4,
--   }
--   pic:save_png('/tmp/maps.png')
--
-- This file gathers the public names; each part lives in moreau/viz/:
--   canvas.lua     the canvas and its drawing methods (the only code that
--                  touches pixel bytes)
--   color.lua      colors, color maps (gray, viridis, diverging), the palette
--   normalize.lua  the paper's display normalization (sum_c |map|, clipped
--                  at the 99th percentile), as numbers
--   maps.lua       heatmap, signed, image, overlay, colorbar: maps and images
--                  as canvases
--   font.lua       a 5x7 bitmap font for titles and labels
--   grid.lua       labeled grids of canvases
--   plot.lua       line plots
local canvas = require 'moreau.viz.canvas'
local color = require 'moreau.viz.color'
local normalize = require 'moreau.viz.normalize'
local maps = require 'moreau.viz.maps'
local font = require 'moreau.viz.font'
local grid = require 'moreau.viz.grid'
local plot = require 'moreau.viz.plot'

local viz = {}

-- the canvas
viz.Canvas = canvas.Canvas
viz.canvas = canvas.new
viz.is_canvas = canvas.is
viz.upscale = canvas.upscale

-- colors
viz.to_byte = color.to_byte
viz.diverging = color.diverging
viz.colormaps = color.colormaps
viz.colormap = color.colormap
viz.palette = color.palette

-- maps
viz.percentile = normalize.percentile
viz.normalize = normalize.normalize
viz.heatmap = maps.heatmap
viz.signed = maps.signed
viz.image = maps.image
viz.overlay = maps.overlay
viz.colorbar = maps.colorbar

-- text
--- The font's metrics: glyph_w, glyph_h (ink box), advance (per character),
-- line (per line), in pixels at scale 1; and bits(byte) -> the glyph's rows.
viz.font = {
  glyph_w = font.glyph_w, glyph_h = font.glyph_h, advance = font.advance, line = font.line,
  bits = font.bits,
}
viz.text_size = font.text_size

-- layouts
viz.grid = grid.grid
viz.line_plot = plot.line_plot

return viz
