--- moreau.viz.plot — line plots (part of moreau.viz: viz.line_plot): axes
-- with "nice" tick steps (1, 2 or 5 x 10^k), linear or log10, light grid
-- lines, one colored line with point markers per series, optional error
-- bars, a legend placed where it covers the fewest points.
local canvas = require 'moreau.viz.canvas'
local color = require 'moreau.viz.color'
local font = require 'moreau.viz.font'

local floor, min, max, abs = math.floor, math.min, math.max, math.abs
local text_size = font.text_size

local plot = {}

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
function plot.line_plot(opts)
  if type(opts) ~= 'table' then error('viz.line_plot: expected a table of options', 2) end
  local series = opts.series
  check_series(series, 2)
  local W, H = opts.width or 640, opts.height or 400
  canvas.check_size(W, H, 'viz.line_plot', 2)
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
  -- an axis is a finite span: limits that are not numbers, and data whose
  -- range overflows a double (a diverged series, ±1e308), cannot be drawn
  for _, ax in ipairs { { 'x', xmin, xmax, opts.xlim }, { 'y', ymin, ymax, opts.ylim } } do
    local name, lo, hi = ax[1], ax[2], ax[3]
    if type(lo) ~= 'number' or type(hi) ~= 'number' or not (hi - lo < math.huge) or lo ~= lo or hi ~= hi then
      error(('viz.line_plot: the %s axis %s [%s, %s] is not a finite range%s'):format(name,
        ax[4] and ('limits (opts.' .. name .. 'lim)') or 'of the data', tostring(lo), tostring(hi),
        ax[4] and '' or ' (a diverged series? give opts.' .. name .. 'lim)'), 2)
    end
  end
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
  for _, t in ipairs(yticks) do ylab_w = max(ylab_w, (text_size(t.label))) end
  local left = 8 + (opts.ylabel and 8 + 6 or 0) + ylab_w + 4 + 4
  local x0, x1 = 1 + left, W - right
  if x1 - x0 < 20 or y1 - y0 < 20 then
    error(('viz.line_plot: %d wide × %d high is too small for the axes and labels'):format(W, H), 2)
  end
  local xa, xb, xticks = fit_axis(xmin, xmax, logx, x1 - x0, 6, function(ticks)
    local w = 0
    for _, t in ipairs(ticks) do w = max(w, (text_size(t.label))) end
    return w + 12
  end)
  local function px(v) return x0 + (fx(v) - xa) / (xb - xa) * (x1 - x0) end
  local function py(v) return y1 - (fy(v) - ya) / (yb - ya) * (y1 - y0) end

  local cv = canvas.new(W, H)
  local black, grid_c, frame_c = { 0, 0, 0 }, { 225, 225, 225 }, { 60, 60, 60 }
  -- grid lines and ticks
  for _, t in ipairs(xticks) do
    local x = floor(x0 + (t.v - xa) / (xb - xa) * (x1 - x0) + 0.5)
    cv:line(x, y0, x, y1, grid_c)
    cv:line(x, y1, x, y1 + 4, frame_c)
    local w = text_size(t.label)
    cv:text(x - floor(w / 2), y1 + 8, t.label, black)
  end
  for _, t in ipairs(yticks) do
    local y = floor(y1 - (t.v - ya) / (yb - ya) * (y1 - y0) + 0.5)
    cv:line(x0, y, x1, y, grid_c)
    cv:line(x0 - 4, y, x0, y, frame_c)
    local w = text_size(t.label)
    cv:text(x0 - 8 - w, y - 3, t.label, black)
  end
  cv:rect(x0, y0, x1 - x0 + 1, y1 - y0 + 1, frame_c)
  if opts.title then
    local w = text_size(opts.title, 2)
    cv:text(1 + floor((W - w) / 2), 11, opts.title, black, 2)
  end
  if opts.xlabel then
    local w = text_size(opts.xlabel)
    cv:text(x0 + floor((x1 - x0 - w) / 2), y1 + 8 + 8 + 8, opts.xlabel, black)
  end
  if opts.ylabel then
    local w = text_size(opts.ylabel)
    cv:text_vertical(9, y0 + floor((y1 - y0 - w) / 2), opts.ylabel, black)
  end

  -- the series, clipped to the frame widened by a marker's half-width (so
  -- points on the axis range's ends show whole)
  cv:clip(x0 - 3, y0 - 3, x1 + 3, y1 + 3)
  local colors = {}
  for i, s in ipairs(series) do
    local c = { color.parse(s.color or color.palette[(i - 1) % #color.palette + 1], 'viz.line_plot', 2) }
    colors[i] = c
    for k = 1, #s.x do
      local X, Y = px(s.x[k]), py(s.y[k])
      if k > 1 then cv:line(px(s.x[k - 1]), py(s.y[k - 1]), X, Y, c, 2) end
      if s.err then
        local e = abs(s.err[k])
        local ya_, yb_ = py(s.y[k] - e), py(s.y[k] + e)
        cv:line(X, ya_, X, yb_, c, 1)
        cv:line(X - 3, ya_, X + 3, ya_, c, 1)
        cv:line(X - 3, yb_, X + 3, yb_, c, 1)
      end
      cv:fill_rect(floor(X + 0.5) - 2, floor(Y + 0.5) - 2, 5, 5, c) -- the point's 5x5 marker
    end
  end

  -- the legend
  local where = opts.legend == nil and 'auto' or opts.legend
  if where then
    local names, lw = {}, 0
    for i, s in ipairs(series) do
      names[i] = tostring(s.name or ('series ' .. i))
      lw = max(lw, (text_size(names[i])))
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
    cv:clip()
    local lx, ly = pos[1], pos[2]
    cv:fill_rect(lx, ly, bw, bh, 'white')
    cv:rect(lx, ly, bw, bh, { 160, 160, 160 })
    for i = 1, #series do
      local c = colors[i]
      local yy = ly + 4 + (i - 1) * 12
      cv:line(lx + 6, yy + 3, lx + 6 + 20, yy + 3, c, 2)
      cv:fill_rect(lx + 16 - 2, yy + 3 - 2, 5, 5, c)
      cv:text(lx + 6 + 20 + 6, yy, names[i], black)
    end
  end
  cv:clip()
  return cv, { x0 = x0, y0 = y0, x1 = x1, y1 = y1 }
end

return plot
