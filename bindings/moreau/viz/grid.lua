--- moreau.viz.grid — canvases in a labeled grid (part of moreau.viz:
-- viz.grid), as the paper lays out its figures: rows = images, columns =
-- methods, titles above and to the left.
local canvas = require 'moreau.viz.canvas'
local color = require 'moreau.viz.color'
local font = require 'moreau.viz.font'

local floor, max = math.floor, math.max
local text_size = font.text_size

local grid = {}

--- A column title as lines no wider than `limit` pixels at `scale`: broken
-- greedily at spaces and after hyphens ('Group-Sparse MG' -> 'Group-',
-- 'Sparse MG'), and at the title's own '\n'; a word wider than limit keeps
-- a line of its own (its column widens to it). RETURN: a list of lines.
function grid.wrap(str, limit, scale)
  local lines = {}
  local function width(t) return (text_size(t, scale)) end
  for para in (tostring(str) .. '\n'):gmatch('(.-)\n') do
    local line = ''
    for word in para:gmatch('%S+') do
      local k = 0
      for piece in word:gmatch('[^%-]*%-*') do
        if piece ~= '' then
          k = k + 1
          -- a new word after a space; the rest of a hyphenated word joins without one
          local cand = line == '' and piece or (line .. (k > 1 and '' or ' ') .. piece)
          if line ~= '' and width(cand) > limit then
            lines[#lines + 1] = line
            line = piece
          else
            line = cand
          end
        end
      end
    end
    lines[#lines + 1] = line
  end
  return lines
end

--- Canvases in a labeled grid (rows = images, columns = methods) on white.
-- ARGS: opts {
--   rows       = { {canvas, canvas, ...}, ... } (false/nil leaves a cell empty;
--                rows may be short),
--   col_titles = { 'str', ... } (optional, above the columns, centred; a
--                title wider than its column's cells is wrapped to them,
--                grid.wrap, so that it never runs into its neighbours),
--   row_titles = { 'str', ... } (optional, left of the rows, right-aligned),
--   title      = 'str' (optional, centred on top, drawn at title_scale),
--   pad        = 4 (pixels between and around everything),
--   scale      = 1 (integer: cells are upscaled by it, nearest neighbour),
--   text_scale = 1 (integer: size of the titles' font),
--   title_scale = 2 * text_scale (integer: size of the title's font),
--   border     = light gray (a 1-pixel frame drawn around each cell inside
--                the padding when pad >= 2; false for none) }
-- Layout, with cw_j = max(widest cell of column j (after scale), width of its
--   title's widest line + gap), rh_i = max(tallest cell of row i, height of
--   its title), where a column title is wrapped (grid.wrap) to the width of
--   its cells less gap, and gap = max(0, 2·advance·text_scale − pad): the
--   titles of neighbouring columns stay at least two character widths apart
--   (pad + gap), more than the one of a space between the words of a title,
--   so that they never touch or read as one title. Wrapped lines are
--   centred and stacked; the titles sit on the cells' top edge.
--   TH = title and text height + pad or 0, CH = col_titles and tallest + pad or 0,
--   RW = row_titles and widest + pad or 0:
--   width  = pad + RW + sum_j cw_j + pad * (ncols - 1) + pad
--   height = pad + TH + CH + sum_i rh_i + pad * (nrows - 1) + pad
--   (at least title width + 2 pad: a wider title widens the canvas and the
--   grid is centred under it). Cells are centred in their slot.
-- RETURN: canvas, layout {width, height, cols = {x, w ...}, rows = {y, h ...}}
--   (x, y: the top-left pixel of each column / row slot).
function grid.grid(opts)
  if type(opts) ~= 'table' or type(opts.rows) ~= 'table' or #opts.rows == 0 then
    error('viz.grid: opts.rows must be a non-empty table of rows of canvases', 2)
  end
  local pad = opts.pad or 4
  if type(pad) ~= 'number' or pad < 0 or pad ~= floor(pad) then
    error('viz.grid: pad must be an integer >= 0, got ' .. tostring(pad), 2)
  end
  local scale = font.check_scale(opts.scale, 'viz.grid', 2)
  local ts = font.check_scale(opts.text_scale, 'viz.grid (text_scale)', 2)
  local tts = font.check_scale(opts.title_scale or 2 * ts, 'viz.grid (title_scale)', 2)
  local border = opts.border == nil and { 200, 200, 200 } or opts.border
  if border then color.parse(border, 'viz.grid (border)', 2) end
  local rows = opts.rows
  local nrows, ncols = #rows, 0
  for i, row in ipairs(rows) do
    if type(row) ~= 'table' then error(('viz.grid: row %d is a %s, not a table'):format(i, type(row)), 2) end
    local n = table.maxn(row)
    for j = 1, n do
      if row[j] and not canvas.is(row[j]) then
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
  local title_lines = {}
  if col_titles then
    local gap = max(0, 2 * font.advance * ts - pad)
    for j = 1, ncols do
      if col_titles[j] then
        -- a column without cells keeps its title on one line
        local limit = cw[j] > 0 and max(cw[j] - gap, 1) or math.huge
        local lines = grid.wrap(col_titles[j], limit, ts)
        local w, h = text_size(table.concat(lines, '\n'), ts)
        title_lines[j] = lines
        cw[j] = max(cw[j], w + gap)
        CH = max(CH, h)
      end
    end
    CH = CH + pad
  end
  if row_titles then
    for i = 1, nrows do
      if row_titles[i] then
        local w, h = text_size(row_titles[i], ts)
        RW = max(RW, w)
        rh[i] = max(rh[i], h)
      end
    end
    RW = RW + pad
  end
  local title_w, title_h
  if opts.title then
    title_w, title_h = text_size(opts.title, tts)
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

  local out = canvas.new(width, height)
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
  if opts.title then out:text(1 + floor((width - title_w) / 2), 1 + pad, opts.title, 'black', tts) end
  if col_titles then
    for j = 1, ncols do
      if col_titles[j] then
        local lines = title_lines[j]
        local _, h = text_size(table.concat(lines, '\n'), ts)
        local c = layout.cols[j]
        local y0 = 1 + pad + TH + (CH - pad - h)
        for li, line in ipairs(lines) do
          local w = text_size(line, ts)
          out:text(c.x + floor((c.w - w) / 2), y0 + (li - 1) * font.line * ts, line, 'black', ts)
        end
      end
    end
  end
  for i = 1, nrows do
    local rsl = layout.rows[i]
    if row_titles and row_titles[i] then
      local w, h = text_size(row_titles[i], ts)
      out:text(1 + shift + pad + (RW - pad - w), rsl.y + floor((rsl.h - h) / 2), row_titles[i], 'black', ts)
    end
    for j = 1, ncols do
      local c = rows[i][j]
      if c then
        if scale > 1 then c = canvas.upscale(c, scale) end
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

return grid
