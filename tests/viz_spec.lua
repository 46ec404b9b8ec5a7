-- moreau.viz: the paper's display normalization (closed forms worked by hand),
-- color maps, the font, grid layout, line plots, and PNG round trips.
--
-- The pictures made here go to a fresh temp dir, removed at the end; set
-- MOREAU_VIZ_KEEP=/some/dir to keep them there and look at them.
local ffi = require 'ffi'
local core = require 'moreau.core'
local T = require 'moreau.tensor'
local viz = require 'moreau.viz'
local C = core.C

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local keep = os.getenv('MOREAU_VIZ_KEEP')
local tmp
local function path(name) return tmp .. '/' .. name end

setup(function()
  if keep and #keep > 0 then
    os.execute('mkdir -p ' .. shell_quote(keep))
    tmp = keep
  else
    local p = assert(io.popen('mktemp -d'))
    tmp = p:read('*l')
    p:close()
    assert(tmp and #tmp > 0, 'mktemp -d failed')
  end
end)

teardown(function()
  if tmp and not (keep and #keep > 0) then os.execute('rm -rf ' .. shell_quote(tmp)) end
end)

local assert_error_with = require('helpers.asserts').error_with

-- the gray levels of a canvas, row-major, asserting r = g = b
local function grays(cv)
  local t = {}
  for y = 1, cv.height do
    for x = 1, cv.width do
      local r, g, b = cv:get(x, y)
      assert.are.equal(r, g)
      assert.are.equal(r, b)
      t[#t + 1] = r
    end
  end
  return t
end

local function count_color(cv, c)
  local n = 0
  for y = 1, cv.height do
    for x = 1, cv.width do
      local r, g, b = cv:get(x, y)
      if r == c[1] and g == c[2] and b == c[3] then n = n + 1 end
    end
  end
  return n
end

-- Two Gaussian bumps, one positive and one negative: a stand-in saliency map.
local function blobs(c, h, w, seed)
  local x = T.zeros { 1, c, h, w }
  for ci = 1, c do
    for i = 1, h do
      for j = 1, w do
        local v = math.exp(-((i - h * 0.55) ^ 2 + (j - w * 0.4) ^ 2) / (h * 1.2))
          - 0.6 * math.exp(-((i - h * 0.3) ^ 2 + (j - w * (0.7 + 0.05 * seed)) ^ 2) / (h * 0.4))
        x:set(v * (1 + 0.1 * ci), 1, ci, i, j)
      end
    end
  end
  return x
end

describe('viz.heatmap (sum |map| over channels, clip at the 99th percentile, scale)', function()
  it('gives the bytes worked by hand for a 2-channel 2x2 map', function()
    -- |c1| + |c2| = {0, 0.25, 1, 1}; the 99th percentile of those, at
    -- position 0.99 * 3 = 2.97 between the two 1s, is 1; bytes round(255 t).
    local m = T.from({ 0, -0.25, 0.5, 1, 0, 0, -0.5, 0 }, { 1, 2, 2, 2 })
    local cv, q = viz.heatmap(m)
    assert.are.equal(2, cv.width)
    assert.are.equal(2, cv.height)
    assert.are.equal(1, q)
    assert.are.same({ 0, 64, 255, 255 }, grays(cv))
  end)

  it('interpolates the percentile between order statistics and clips above it', function()
    -- values 0..99 in a 10x10 map: position 0.99 * 99 = 98.01, q = 98.01;
    -- 49 -> round(255 * 49 / 98.01) = round(127.487) = 127; 98 -> round(254.97) = 255;
    -- 99 > q is clipped to 255; 1 -> round(2.6018) = 3.
    local v = {}
    for i = 0, 99 do v[i + 1] = i end
    local cv, q = viz.heatmap(T.from(v, { 1, 1, 10, 10 }))
    assert.is_true(math.abs(q - 98.01) < 1e-4)
    local g = grays(cv)
    assert.are.equal(0, g[1])
    assert.are.equal(3, g[2])
    assert.are.equal(127, g[50])
    assert.are.equal(255, g[99])
    assert.are.equal(255, g[100])
  end)

  it('keeps the rest of the map visible when one pixel is a huge outlier', function()
    -- 32x32 = 1024 values: the 99th percentile sits at position 1012.77,
    -- between two ordinary pixels, so the outlier does not set the scale.
    local m = T.zeros { 1, 1, 32, 32 }
    for i = 1, 32 do
      for j = 1, 32 do m:set(j <= 16 and 1 or 0.5, 1, 1, i, j) end
    end
    m:set(1e6, 1, 1, 5, 5)
    local cv, q = viz.heatmap(m)
    assert.are.equal(1, q)
    assert.are.same({ 255, 255, 255 }, { cv:get(5, 5) })
    assert.are.same({ 255, 255, 255 }, { cv:get(3, 9) })
    assert.are.same({ 128, 128, 128 }, { cv:get(20, 9) }) -- round(127.5) = 128
    -- scaling by the max instead would have made every other pixel 0
  end)

  it('shows a very sparse map by its max when its 99th percentile is 0', function()
    local m = T.zeros { 1, 1, 20, 20 } -- 2 nonzeros of 400 (< 1%)
    m:set(-4, 1, 1, 2, 3)
    m:set(2, 1, 1, 7, 7)
    local cv, q = viz.heatmap(m)
    assert.are.equal(4, q)
    assert.are.equal(255, (cv:get(3, 2)))
    assert.are.equal(128, (cv:get(7, 7)))
    assert.are.equal(0, (cv:get(1, 1)))
  end)

  it('leaves an all-zero map at zero, with no NaN', function()
    local cv, q = viz.heatmap(T.zeros { 2, 3, 4, 5 }, { item = 2 })
    assert.are.equal(0, q)
    for _, v in ipairs(grays(cv)) do assert.are.equal(0, v) end
    local t = viz.normalize(T.zeros { 1, 3, 4, 5 })
    for _, v in ipairs(t) do assert.are.equal(0, v) end
  end)

  it('takes the item it is asked for from (N, C, H, W)', function()
    local m = T.zeros { 2, 1, 1, 2 }
    m:set(1, 1, 1, 1, 1)
    m:set(1, 2, 1, 1, 2)
    assert.are.same({ 255, 0 }, grays(viz.heatmap(m)))
    assert.are.same({ 0, 255 }, grays(viz.heatmap(m, { item = 2 })))
    assert.are.same({ 0, 255 }, grays(viz.heatmap(T.from({ 0, -3 }, { 1, 1, 1, 2 }))))
  end)

  it('refuses 3-D and 2-D tensors: maps are batch first, as metrics read them', function()
    -- a (3, H, W) tensor is three gray maps to moreau.metrics; viz used to draw it as one RGB map
    for _, f in ipairs { 'heatmap', 'signed', 'normalize', 'image' } do
      assert_error_with(function() viz[f](T.ones { 3, 4, 5 }) end, 'viz.' .. f .. ': expected (N, C, H, W), got '
        .. '3x4x5, a 3-D tensor; maps and images are batch first: add a batch dim, x:reshape{1, 3, 4, 5}')
      assert_error_with(function() viz[f](T.ones { 4, 5 }) end,
        'viz.' .. f .. ': expected (N, C, H, W), got 4x5; maps and images are batch first')
    end
    assert_error_with(function() viz.overlay(viz.canvas(5, 4), T.ones { 1, 4, 5 }) end,
      'viz.heatmap: expected (N, C, H, W), got 1x4x5, a 3-D tensor')
  end)

  it('uses the viridis anchors at the ends and honours opts.percentile', function()
    local cv = viz.heatmap(T.from({ 0, 1 }, { 1, 1, 1, 2 }), { cmap = 'viridis' })
    assert.are.same({ 0x44, 0x01, 0x54 }, { cv:get(1, 1) })
    assert.are.same({ 0xFD, 0xE7, 0x25 }, { cv:get(2, 1) })
    -- percentile 50 of {0, 2, 4}: 2, so 2 -> 255, 4 clipped to 255
    assert.are.same({ 0, 255, 255 }, grays(viz.heatmap(T.from({ 0, 2, 4 }, { 1, 1, 1, 3 }), { percentile = 50 })))
  end)

  it('rejects NaN, inf, bad shapes, items, percentiles and color maps clearly', function()
    local m = T.zeros { 1, 2, 3, 4 }
    m:set(0 / 0, 1, 2, 3, 1)
    assert_error_with(function() viz.heatmap(m) end, 'viz.heatmap: the map has NaN at (c=2, h=3, w=1) of item 1')
    m:set(math.huge, 1, 2, 3, 1)
    assert_error_with(function() viz.signed(m) end, 'viz.signed: the map has inf')
    assert_error_with(function() viz.heatmap(T.zeros { 784 }) end,
      'viz.heatmap: expected (N, C, H, W), got 784; maps and images are batch first')
    assert_error_with(function() viz.heatmap({ 1, 2 }) end, 'viz.heatmap: expected a moreau tensor, got table')
    assert_error_with(function() viz.heatmap(T.zeros { 2, 1, 2, 2 }, { item = 3 }) end,
      'viz.heatmap: item 3 outside 1..2')
    assert_error_with(function() viz.heatmap(T.zeros { 1, 1, 2, 2 }, { percentile = 0 }) end,
      'viz.heatmap: opts.percentile must be in (0, 100], got 0')
    assert_error_with(function() viz.heatmap(T.zeros { 1, 1, 2, 2 }, { cmap = 'jet' }) end,
      "viz: unknown color map 'jet' (known: bwr, diverging, gray, grey, viridis)")
  end)
end)

describe('viz.signed (diverging, symmetric scaling by the percentile of |sum|)', function()
  it('draws zero white, +v and -v in mirror colors, and the clip value at the dark ends', function()
    local m = blobs(3, 16, 16, 0)
    local neg = -m
    local a, qa = viz.signed(m)
    local b, qb = viz.signed(neg)
    assert.are.equal(qa, qb)
    local reds, blues = 0, 0
    for y = 1, 16 do
      for x = 1, 16 do
        local r1, g1, b1 = a:get(x, y)
        local r2, g2, b2 = b:get(x, y)
        assert.are.same({ r1, g1, b1 }, { b2, g2, r2 })
        if r1 > b1 then reds = reds + 1 elseif b1 > r1 then blues = blues + 1 end
      end
    end
    assert.is_true(reds > 0 and blues > 0)
    local cv = viz.signed(T.from({ 0, 2, -2, 1 }, { 1, 1, 1, 4 }), { percentile = 100 })
    assert.are.same({ 255, 255, 255 }, { cv:get(1, 1) })
    assert.are.same({ 165, 15, 21 }, { cv:get(2, 1) })
    assert.are.same({ 21, 15, 165 }, { cv:get(3, 1) })
    assert.are.same({ viz.diverging(0.5) }, { cv:get(4, 1) })
    -- sums over channels before taking the sign: +1 and -1 cancel to white
    local c2 = viz.signed(T.from({ 1, 5, -1, 0 }, { 1, 2, 1, 2 }))
    assert.are.same({ 255, 255, 255 }, { c2:get(1, 1) })
    -- all zero: white, no NaN
    local z, q = viz.signed(T.zeros { 1, 1, 4, 4 })
    assert.are.equal(0, q)
    assert.are.equal(16, count_color(z, { 255, 255, 255 }))
  end)
end)

describe('viz.image, viz.overlay and viz.upscale', function()
  it('undo a normalization and turn grey into RGB', function()
    -- (img - 0.5) / 0.25: 0 -> 0.5 -> 128; -2 -> 0 -> 0; 1 -> 0.75 -> 191; 3 -> clamped 255
    local x = T.from({ 0, -2, 1, 3 }, { 1, 1, 2, 2 })
    assert.are.same({ 128, 0, 191, 255 }, grays(viz.image(x, { mean = 0.5, std = 0.25 })))
    local rgb = viz.image(T.from({ 1, 0, 0.5 }, { 1, 3, 1, 1 }))
    assert.are.same({ 255, 0, 128 }, { rgb:get(1, 1) })
    local un = viz.image(T.from({ 0, 0, 0 }, { 1, 3, 1, 1 }), { mean = { 0.2, 0.4, 0.6 }, std = { 1, 1, 1 } })
    assert.are.same({ 51, 102, 153 }, { un:get(1, 1) })
    assert_error_with(function() viz.image(T.zeros { 1, 2, 4, 4 }) end, 'viz.image: expected 1 or 3 channels, got 2')
    assert_error_with(function() viz.image(T.zeros { 1, 3, 4, 4 }, { mean = { 1, 2 } }) end,
      'viz.image: opts.mean must be a number or a table of 3 numbers')
  end)

  it('blend a heat map into an image, upscaling a smaller one', function()
    local img = viz.canvas(4, 4, { 0, 0, 0 })
    local heat = viz.canvas(2, 2, { 200, 100, 50 })
    local o = viz.overlay(img, heat, 0.5)
    assert.are.equal(4, o.width)
    assert.are.same({ 100, 50, 25 }, { o:get(4, 4) })
    local o2 = viz.overlay(img, T.from({ 0, 1, 1, 0 }, { 1, 1, 2, 2 }), 1)
    assert.are.same({ 0xFD, 0xE7, 0x25 }, { o2:get(3, 1) })
    assert_error_with(function() viz.overlay(img, viz.canvas(3, 3), 0.5) end,
      'viz.overlay: heat is 3 wide × 3 high, image is 4 wide × 4 high')
    assert_error_with(function() viz.overlay(img, heat, 2) end, 'viz.overlay: alpha must be a number in [0, 1]')
  end)

  it('upscale by nearest neighbour', function()
    local c = viz.canvas(2, 1)
    c:set(1, 1, { 10, 20, 30 })
    local u = viz.upscale(c, 3)
    assert.are.equal(6, u.width)
    assert.are.equal(3, u.height)
    assert.are.same({ 10, 20, 30 }, { u:get(3, 3) })
    assert.are.same({ 255, 255, 255 }, { u:get(4, 1) })
    assert_error_with(function() viz.upscale(c, 1.5) end, 'viz.upscale: k must be an integer >= 1, got 1.5')
  end)
end)

describe('the bitmap font', function()
  it('draws every printable character inside its box, each one distinct', function()
    local f = viz.font
    for _, scale in ipairs { 1, 2 } do
      local seen = {}
      for code = 32, 126 do
        local ch = string.char(code)
        local m = 3 -- margin that must stay blank
        local gw, gh = f.glyph_w * scale, f.glyph_h * scale
        local cv = viz.canvas(gw + 2 * m, gh + 2 * m)
        local w, h = cv:text(1 + m, 1 + m, ch, { 0, 0, 0 }, scale)
        assert.are.equal(gw, w)
        assert.are.equal(gh, h)
        local ink, key = 0, {}
        for y = 1, cv.height do
          for x = 1, cv.width do
            local r = cv:get(x, y)
            local inside = x > m and x <= m + gw and y > m and y <= m + gh
            if r == 0 then
              assert(inside, ('glyph %q draws outside its box at (%d, %d)'):format(ch, x, y))
              ink = ink + 1
            end
            key[#key + 1] = r == 0 and '#' or '.'
          end
        end
        if code == 32 then
          assert.are.equal(0, ink)
        else
          assert(ink > 0, ('glyph %q draws nothing'):format(ch))
        end
        key = table.concat(key)
        assert(not seen[key], ('glyphs %q and %q look the same'):format(seen[key] or '', ch))
        seen[key] = ch
      end
    end
  end)

  it('measures and lays out lines as canvas:text draws them', function()
    assert.are.same({ 6 * 5 - 1, 8 }, { viz.text_size('hello') })
    assert.are.same({ 2 * (6 * 3 - 1), 2 * (10 * 2 - 2) }, { viz.text_size('ab\ncde', 2) })
    local cv = viz.canvas(40, 20)
    cv:text(1, 1, 'I\nI')
    assert.are.same({ 0, 0, 0 }, { cv:get(3, 2) })  -- stem of the first I
    assert.are.same({ 0, 0, 0 }, { cv:get(3, 12) }) -- the second line starts 10 lower
    assert_error_with(function() cv:text(1, 1, 'x', 'mauve') end, 'canvas:text: unknown color "mauve"')
  end)
end)

describe('viz.grid', function()
  it('is as large as its documented layout, with cells where the layout says', function()
    local a, b = viz.canvas(28, 28, { 255, 0, 0 }), viz.canvas(20, 10, { 0, 0, 255 })
    local pad, scale = 4, 2
    local g, L = viz.grid {
      rows = { { a, b, a }, { b, a } },
      col_titles = { 'input', 'gradient', 'MoreauGrad' },
      row_titles = { 'shirt', 'boot (7)' },
      title = 'maps', pad = pad, scale = scale,
    }
    local tw = function(s) return (viz.text_size(s)) end
    -- columns: max(cell widths * scale, title width + gap), gap = max(0, 2 advances - pad) keeping
    -- neighbouring titles two characters apart ('MoreauGrad', one word, is wider than its cells)
    local gap = math.max(0, 2 * viz.font.advance - pad)
    local cw = { math.max(56, tw('input') + gap), math.max(56, tw('gradient') + gap),
      math.max(56, tw('MoreauGrad') + gap) }
    assert.are.equal(67, cw[3])
    local rh = { 56, 56 }
    local RW = tw('boot (7)') + pad
    local TH, CH = 16 + pad, 8 + pad
    assert.are.equal(pad + RW + cw[1] + cw[2] + cw[3] + 2 * pad + pad, g.width)
    assert.are.equal(pad + TH + CH + rh[1] + rh[2] + pad + pad, g.height)
    assert.are.equal(g.width, L.width)
    assert.are.equal(g.height, L.height)
    -- cell (1, 1) is centred in its slot; the empty cell (2, 3) stays white
    local x11 = L.cols[1].x + math.floor((cw[1] - 56) / 2)
    assert.are.same({ 255, 0, 0 }, { g:get(x11, L.rows[1].y) })
    assert.are.same({ 255, 0, 0 }, { g:get(x11 + 55, L.rows[1].y + 55) })
    assert.are.same({ 255, 255, 255 }, { g:get(L.cols[3].x + 20, L.rows[2].y + 20) })
    -- titles put ink where they go: above the columns, left of the rows
    local ink = 0
    for y = 1 + pad + TH, pad + TH + CH do
      for x = L.cols[2].x, L.cols[2].x + cw[2] - 1 do
        if g:get(x, y) == 0 then ink = ink + 1 end
      end
    end
    assert.is_true(ink > 0)
    g:save_png(path('grid_layout.png'))
  end)

  it('wraps long column titles to their cells: neighbouring titles never touch (title pixels read back)', function()
    local titles = { 'Sparsified SmoothGrad', 'Group-Sparse MoreauGrad', 'Integrated Gradients (riemann_right)',
      'MoreauGrad', 'x', 'Input x Gradient', 'SmoothGrad' }
    for _, case in ipairs { { pad = 0, ts = 1, scale = 1 }, { pad = 8, ts = 2, scale = 4 }, { pad = 2, ts = 2, scale = 3 },
      { pad = 30, ts = 1, scale = 1 } } do
      local what = ('pad %d, text_scale %d, scale %d'):format(case.pad, case.ts, case.scale)
      local row = {}
      for j = 1, #titles do row[j] = viz.canvas(28, 28, { 0, 0, 255 }) end
      local g, L = viz.grid { rows = { row }, col_titles = titles, pad = case.pad, text_scale = case.ts,
        scale = case.scale, border = false }
      -- the ink (black) of the title band above the cells, column by column
      local first, last = {}, {}
      for y = 1, L.rows[1].y - 1 do
        for x = 1, g.width do
          local r, gr, b = g:get(x, y)
          if r == 0 and gr == 0 and b == 0 then
            local owner
            for j, c in ipairs(L.cols) do
              if x >= c.x and x < c.x + c.w then owner = j end
            end
            assert.truthy(owner, ('%s: title ink at (%d, %d) outside every column'):format(what, x, y))
            first[owner] = math.min(first[owner] or x, x)
            last[owner] = math.max(last[owner] or x, x)
          end
        end
      end
      -- every title is drawn, and the blank between neighbours is at least two character widths:
      -- wider than a space between two words of one title (1 + 6 pixels per text_scale)
      local space = 2 * viz.font.advance * case.ts
      for j = 1, #titles do
        assert.truthy(first[j], what .. ': no ink for title ' .. j)
        if j > 1 then
          local blank = first[j] - last[j - 1] - 1
          assert.is_true(blank >= space and blank > (1 + viz.font.advance) * case.ts,
            ('%s: titles %d and %d are %d pixels apart'):format(what, j - 1, j, blank))
        end
      end
      -- a title that fits its cells keeps their width ('x'), and wrapping keeps every word
      if case.scale == 4 then assert.are.equal(112, L.cols[5].w) end
    end
    local wrap = require('moreau.viz.grid').wrap
    assert.are.same({ 'Group-', 'Sparse MG' }, wrap('Group-Sparse MG', 60, 1))
    assert.are.same({ 'Sparsified', 'SG' }, wrap('Sparsified SG', 60, 1))
    assert.are.same({ 'Input x', 'Grad' }, wrap('Input x Grad', 50, 1))
    assert.are.same({ 'MoreauGrad' }, wrap('MoreauGrad', 10, 1)) -- a word longer than the limit keeps its line
    assert.are.same({ 'a b', 'c' }, wrap('a b\nc', 1000, 1))
  end)

  it('without titles is just cells and padding, and rejects non-canvases', function()
    local g = viz.grid { rows = { { viz.canvas(3, 5), viz.canvas(7, 2) } }, pad = 1 }
    assert.are.equal(1 + 3 + 1 + 7 + 1, g.width)
    assert.are.equal(1 + 5 + 1, g.height)
    assert_error_with(function() viz.grid { rows = { { viz.canvas(2, 2), T.zeros { 2, 2 } } } } end,
      'viz.grid: cell (1, 2) is a table, not a canvas')
    assert_error_with(function() viz.grid {} end, 'viz.grid: opts.rows must be a non-empty table')
  end)

  it('shows maps of a few methods readably (picture written for a look)', function()
    local rows, titles = {}, {}
    for i = 1, 3 do
      local m = blobs(1, 28, 28, i)
      local img = viz.image(m:abs())
      rows[i] = { img, viz.heatmap(m), viz.heatmap(m, { cmap = 'viridis' }), viz.signed(m), viz.overlay(img, m, 0.6) }
      titles[i] = 'item ' .. i
    end
    local g = viz.grid {
      rows = rows, scale = 4, title = 'MoreauGrad (rho = 1, 28x28)',
      col_titles = { 'input', '|map| gray', '|map| viridis', 'signed', 'overlay' }, row_titles = titles,
    }
    assert.are.equal(3, #rows)
    g:save_png(path('grid_methods.png'))
  end)
end)

describe('viz.line_plot', function()
  it('draws every series in its own color, with a legend and error bars', function()
    local eps = { 0, 0.1, 0.2, 0.4, 0.8 }
    local series = {
      { name = 'MoreauGrad', x = eps, y = { 0.9, 0.86, 0.8, 0.71, 0.6 }, err = { 0.01, 0.03, 0.03, 0.05, 0.04 } },
      { name = 'SmoothGrad', x = eps, y = { 0.9, 0.7, 0.6, 0.45, 0.3 } },
      { name = 'Gradient', x = eps, y = { 0.9, 0.5, 0.35, 0.2, 0.1 } },
      { name = 'Sparse MoreauGrad', x = eps, y = { 0.92, 0.88, 0.83, 0.76, 0.66 }, color = { 200, 0, 200 } },
    }
    local cv, frame = viz.line_plot { series = series, title = 'Top-k intersection under attack',
      xlabel = 'attack budget epsilon (L2)', ylabel = 'top-k intersection' }
    assert.are.equal(640, cv.width)
    assert.are.equal(400, cv.height)
    local colors = { viz.palette[1], viz.palette[2], viz.palette[3], { 200, 0, 200 } }
    for i, c in ipairs(colors) do
      local n = count_color(cv, c)
      assert(n > 200, ('series %d color drawn on %d pixels'):format(i, n))
    end
    -- the frame's corners are drawn
    assert.are.same({ 60, 60, 60 }, { cv:get(frame.x0, frame.y0) })
    assert.are.same({ 60, 60, 60 }, { cv:get(frame.x1, frame.y1) })
    cv:save_png(path('line_plot.png'))
  end)

  it('plots on a log x axis, and rejects bad series clearly', function()
    local cv = viz.line_plot { series = { { name = 'loss', x = { 1e-3, 1e-2, 0.1, 1, 10 }, y = { 5, 3, 2, 1.5, 1.4 } } },
      logx = true, title = 'log x', xlabel = 'rho', ylabel = 'loss', width = 480, height = 300 }
    assert.are.equal(480, cv.width)
    assert.is_true(count_color(cv, viz.palette[1]) > 100)
    cv:save_png(path('line_plot_logx.png'))
    assert_error_with(function() viz.line_plot { series = { { name = 's', x = { 1, 2 }, y = { 1 } } } } end,
      'viz.line_plot: series 1 (s): x has 2 values and y has 1')
    assert_error_with(function() viz.line_plot { series = { { name = 's', x = { 1, 2 }, y = { 1, 0 / 0 } } } } end,
      'viz.line_plot: series 1 (s): y[2] is nan, not a finite number')
    assert_error_with(function() viz.line_plot { series = { { name = 's', x = { 0, 1 }, y = { 1, 2 } } }, logx = true } end,
      'logx needs x > 0')
  end)
end)

describe('canvas:save_png', function()
  it('writes a PNG that reads back with the same pixels', function()
    local cv = viz.canvas(7, 5)
    for y = 1, 5 do
      for x = 1, 7 do cv:set(x, y, { (x * 37) % 256, (y * 53) % 256, (x * y * 11) % 256 }) end
    end
    cv:text(1, 1, 'A', { 3, 2, 1 })
    local p = path('roundtrip.png')
    cv:save_png(p)
    local out = ffi.new('mr_tensor*[1]')
    core.check(C.mr_image_load(out, p, 3, 0, 0))
    local img = T.wrap(out[0])
    assert.are.same({ 1, 3, 5, 7 }, img:shape())
    for y = 1, 5 do
      for x = 1, 7 do
        local r, g, b = cv:get(x, y)
        assert.are.equal(r, math.floor(img:get(1, 1, y, x) * 255 + 0.5))
        assert.are.equal(g, math.floor(img:get(1, 2, y, x) * 255 + 0.5))
        assert.are.equal(b, math.floor(img:get(1, 3, y, x) * 255 + 0.5))
      end
    end
    -- and the tensor view of the canvas matches too
    assert.is_true(cv:to_tensor():max_abs_diff(img) < 1e-6)
  end)

  it('raises the engine message when the file cannot be written', function()
    assert_error_with(function() viz.canvas(2, 2):save_png(path('no/such/dir/x.png')) end, 'no/such/dir/x.png')
  end)
end)

describe('a canvas', function()
  -- every value a recipe without the debug library can reach from v: table
  -- keys and values and metatables, recursively. RETURN: the paths of the
  -- cdata and userdata found.
  local function raw_values(v, name)
    local seen, found = {}, {}
    local function walk(x, path)
      local t = type(x)
      if t == 'cdata' or t == 'userdata' then found[#found + 1] = path; return end
      if t ~= 'table' or seen[x] then return end
      seen[x] = true
      for k, y in pairs(x) do
        walk(k, path .. '[key ' .. tostring(k) .. ']')
        walk(y, path .. '.' .. tostring(k))
      end
      if getmetatable(x) ~= nil then walk(getmetatable(x), path .. '<metatable>') end
    end
    walk(v, name)
    return found
  end

  it('holds no reachable raw buffer, whatever made it', function()
    local m = blobs(1, 6, 5, 0)
    local made = {
      canvas = viz.canvas(3, 2), heatmap = viz.heatmap(m), signed = viz.signed(m), image = viz.image(m:abs()),
      overlay = viz.overlay(viz.canvas(5, 6), m), upscale = viz.upscale(viz.canvas(2, 2), 2),
      clone = viz.canvas(2, 2):clone(), grid = viz.grid { rows = { { viz.canvas(2, 2) } }, title = 't' },
      line_plot = viz.line_plot { series = { { x = { 1, 2 }, y = { 1, 2 } } }, width = 120, height = 90 },
    }
    for how, cv in pairs(made) do
      assert.are.same({}, raw_values(cv, how))
      for _, field in ipairs { 'pix', 'data', 'ptr', 'buf', 'bytes', 'clip' } do
        assert.is_nil(rawget(cv, field), how .. '.' .. field)
        assert.is_false(type(cv[field]) == 'cdata' or type(cv[field]) == 'table', how .. '.' .. field)
      end
    end
    assert.are.same({}, raw_values(viz, 'viz'))
    for _, part in ipairs { 'canvas', 'color', 'normalize', 'maps', 'font', 'grid', 'plot' } do
      assert.are.same({}, raw_values(require('moreau.viz.' .. part), 'moreau.viz.' .. part))
    end
  end)

  it('reaches a sandboxed recipe without its bytes', function()
    local env = require('moreau.sandbox').env()
    local chunk = assert(env.load([[
      local cv = moreau.viz.canvas(2, 2)
      local ok, err = pcall(cv.set, cv, 5, 5, 'red')
      local found = {}
      for k, v in pairs(cv) do found[#found + 1] = tostring(k) end
      return rawget(cv, 'pix'), cv.pix, err, #found, pcall(require, 'moreau.viz.canvas')
    ]], 'recipe'))
    local raw, pix, err, nfields, ok_req = chunk()
    assert.is_nil(raw)
    assert.is_nil(pix)
    assert.truthy(tostring(err):find('canvas:set: pixel (5, 5) outside x in 1..2, y in 1..2', 1, true), tostring(err))
    assert.are.equal(0, nfields)
    assert.is_false(ok_req) -- the parts stay behind moreau.viz
  end)

  it('refuses reads and writes outside itself with a clear error', function()
    local cv = viz.canvas(2, 3, 'black')
    assert_error_with(function() cv:set(3, 1, 'red') end, 'canvas:set: pixel (3, 1) outside x in 1..2, y in 1..3')
    assert_error_with(function() cv:set(1, 0, 'red') end, 'canvas:set: pixel (1, 0) outside x in 1..2, y in 1..3')
    assert_error_with(function() cv:set(1.5, 1, 'red') end, 'canvas:set: pixel (1.5, 1) outside x in 1..2, y in 1..3')
    assert_error_with(function() cv:set(1e9, 1e9, 'red') end, 'canvas:set: pixel (1000000000, 1000000000) outside')
    assert_error_with(function() cv:get(1, 4) end, 'canvas:get: pixel (1, 4) outside x in 1..2, y in 1..3')
    assert_error_with(function() cv:get('1', 1) end, 'canvas:get: pixel (1, 1) outside x in 1..2, y in 1..3')
    -- its size cannot be changed from outside, nor a buffer planted
    assert_error_with(function() cv.width = 1000 end,
      "canvas: field 'width' cannot be set (a canvas changes only through its methods)")
    assert_error_with(function() cv.pix = 0 end, "canvas: field 'pix' cannot be set")
    rawset(cv, 'width', 1000) -- shadows the property for readers, not the canvas's own size
    assert_error_with(function() cv:set(3, 1, 'red') end, 'canvas:set: pixel (3, 1) outside x in 1..2, y in 1..3')
    -- the methods check what they are called on
    assert_error_with(function() viz.Canvas.get({}, 1, 1) end, 'canvas:get: expected a canvas (from viz.canvas), got table')
    assert_error_with(function() viz.Canvas.fill_rect(setmetatable({}, getmetatable(cv)), 1, 1, 1, 1) end,
      'canvas:fill_rect: expected a canvas (from viz.canvas), got table')
    assert.is_false(viz.is_canvas(setmetatable({}, getmetatable(cv))))
    -- nothing above wrote a pixel
    for y = 1, 3 do for x = 1, 2 do assert.are.same({ 0, 0, 0 }, { cv:get(x, y) }) end end
  end)

  it('cuts drawing at its edges and at a clip box inside them', function()
    local cv = viz.canvas(3, 3)
    cv:fill_rect(-1e6, -1e6, 3e6, 1e6 + 3, 'black') -- rows up to -1e6 + 1e6 + 3 - 1 = 2, all columns
    assert.are.equal(6, count_color(cv, { 0, 0, 0 }))
    -- a 5-pixel brush on row 3 covers rows 1..5; the outline and the glyphs'
    -- ink fall outside; the blit's only visible pixel is (3, 1)
    cv:line(-50, 3, 50, 3, 'red', 5):rect(-10, -10, 100, 100, 'blue'):text(-3, -3, 'WWW', 'blue', 3)
    cv:blit(viz.canvas(10, 10, 'green'), 3, -8)
    assert.are.equal(8, count_color(cv, { 214, 39, 40 }))
    assert.are.same({ 44, 160, 44 }, { cv:get(3, 1) })
    local c = viz.canvas(4, 4, 'white'):clip(2, 2, 3, 1e9)
    c:fill_rect(1, 1, 4, 4, 'black')
    assert.are.equal(6, count_color(c, { 0, 0, 0 })) -- columns 2..3, rows 2..4
    c:set(1, 1, 'black') -- inside the canvas, outside the clip box: nothing drawn
    assert.are.same({ 255, 255, 255 }, { c:get(1, 1) })
    c:clip():set(1, 1, 'black')
    assert.are.same({ 0, 0, 0 }, { c:get(1, 1) })
    assert_error_with(function() c:clip(1, 1, 2) end,
      'canvas:clip: the box must be four numbers x0, y0, x1, y1, got 1, 1, 2, nil')
  end)

  it('has whole-canvas loops that stay inside their canvases', function()
    local canvas = require 'moreau.viz.canvas'
    local a, b = viz.canvas(2, 2, { 10, 20, 30 }), viz.canvas(2, 2, { 110, 120, 131 })
    -- round(0.75 * 10 + 0.25 * 110) = 35, round(0.75 * 30 + 0.25 * 131) = round(55.25) = 55
    assert.are.same({ 35, 45, 55 }, { canvas.blend(a, b, 0.25):get(2, 2) })
    assert_error_with(function() canvas.blend(a, viz.canvas(2, 3), 0.5) end, 'canvas.blend: sizes differ, 2 wide × 2 high and 2 wide × 3 high')
    assert_error_with(function() canvas.blend(a, {}, 0.5) end, 'canvas.blend: expected two canvases')
    local p = canvas.paint(3, 2, function(i) return i, 2 * i, 255 - i end)
    assert.are.same({ 4, 8, 251 }, { p:get(2, 2) }) -- pixel i = (2 - 1) * 3 + 2 - 1 = 4
    assert_error_with(function() viz.upscale(viz.canvas(300, 2), 200) end,
      'viz.upscale: size must be two integers in 1..32768, got 60000 wide × 400 high')
  end)
end)

describe('errors', function()
  it('point at the caller of the public function, through the parts', function()
    local here = 'viz_spec.lua:'
    local m3 = T.ones { 3, 4, 5 }
    assert_error_with(function() viz.heatmap(m3) end, here, 'viz.heatmap: expected (N, C, H, W)')
    assert_error_with(function() viz.signed(m3) end, here, 'viz.signed: expected (N, C, H, W)')
    assert_error_with(function() viz.normalize(m3) end, here, 'viz.normalize: expected (N, C, H, W)')
    assert_error_with(function() viz.image(m3) end, here, 'viz.image: expected (N, C, H, W)')
    assert_error_with(function() viz.overlay(viz.canvas(5, 4), m3) end, here, 'viz.heatmap: expected (N, C, H, W)')
    assert_error_with(function() viz.heatmap(T.ones { 1, 1, 2, 2 }, { percentile = 101 }) end, here, 'opts.percentile')
    assert_error_with(function() viz.signed(T.ones { 1, 1, 2, 2 }, { cmap = 'jet' }) end, here, 'unknown color map')
    assert_error_with(function() viz.percentile({}, 50) end, here, 'viz.percentile: no values')
    assert_error_with(function() viz.text_size('a', 0) end, here, 'viz.text_size: scale must be an integer >= 1')
    assert_error_with(function() viz.canvas(0, 1) end, here, 'viz.canvas: size must be two integers')
    assert_error_with(function() viz.canvas(1, 1):text(1, 1, 'a', 'black', 0) end, here, 'canvas:text: scale')
    assert_error_with(function() viz.canvas(1, 1):set(2, 1) end, here, 'canvas:set: pixel (2, 1)')
    assert_error_with(function() viz.grid { rows = { { 1 } } } end, here, 'viz.grid: cell (1, 1) is a number')
    assert_error_with(function() viz.grid { rows = { { viz.canvas(1, 1) } }, border = 'mauve' } end, here,
      'viz.grid (border): unknown color "mauve"')
    assert_error_with(function() viz.line_plot { series = { { x = { 1 }, y = { 1 } } }, width = 10 } end, here,
      'viz.line_plot: 10 wide × 400 high is too small')
  end)
end)

describe('the module', function()
  local function shell(cmd)
    local p = assert(io.popen(cmd .. ' 2>&1'))
    local out = p:read('*a')
    p:close()
    return out
  end
  local parts = {
    canvas = 'new', color = 'colormap', normalize = 'normalize', maps = 'heatmap', font = 'text_size',
    grid = 'grid', plot = 'line_plot',
  }

  it('is split into parts that each load on their own, set no globals and do not need moreau.viz', function()
    -- every file in the folder is a listed part
    local lfs = require 'lfs'
    for f in lfs.dir('bindings/moreau/viz') do
      if f:match('%.lua$') then assert.is_string(parts[f:sub(1, -5)], 'part ' .. f .. ' is listed here') end
    end
    for part, fn in pairs(parts) do
      local out = shell(('luajit -e %s'):format(shell_quote(
        "package.path = 'bindings/?.lua;bindings/?/init.lua;' .. package.path; " ..
        "local g = {}; for k in pairs(_G) do g[k] = true end; " ..
        "local m = require 'moreau.viz." .. part .. "'; " ..
        "for k in pairs(_G) do if not g[k] then io.write('global ', k, '; ') end end; " ..
        "if package.loaded['moreau.viz'] then io.write('moreau.viz loaded; ') end; " ..
        "io.write(type(m." .. fn .. "))")))
      assert.are.equal('function', out, 'moreau.viz.' .. part)
    end
  end)

  it('is installed with its parts, and loads from the installed tree alone', function()
    local build = core.lib_path:match('^(.*)/[^/]+$')
    local prefix = path('prefix')
    assert.are.equal('', shell(('env -u LD_PRELOAD cmake --install %s --prefix %s >/dev/null'):format(
      shell_quote(build), shell_quote(prefix))))
    local lua_dir = prefix .. '/share/lua/5.1'
    for part in pairs(parts) do
      local f = lua_dir .. '/moreau/viz/' .. part .. '.lua'
      assert.truthy(io.open(f), f .. ' installed')
    end
    local lib = prefix .. '/lib/libmoreau.so'
    if not io.open(lib) then lib = prefix .. '/lib/x86_64-linux-gnu/libmoreau.so' end
    -- a LUA_PATH without the default entries: only the installed tree can answer
    local out = shell(('MOREAU_LIB=%s MOREAU_HEADER=%s LUA_PATH=%s luajit -e %s'):format(shell_quote(lib),
      shell_quote(prefix .. '/include/moreau.h'), shell_quote(lua_dir .. '/?.lua;' .. lua_dir .. '/?/init.lua'),
      shell_quote("local viz = require 'moreau.viz'; " ..
        "io.write(package.searchpath('moreau.viz.canvas', package.path), ' '); " ..
        "local cv = viz.heatmap(require('moreau.tensor').from({ 0, 1 }, { 1, 1, 1, 2 })); " ..
        "io.write((cv:get(2, 1)))")))
    assert.are.equal(lua_dir .. '/moreau/viz/canvas.lua 255', out)
  end)


  it('sets no globals when it loads, and is moreau.viz', function()
    local before = {}
    for k in pairs(_G) do before[k] = true end
    package.loaded['moreau.viz'] = nil
    local fresh = require 'moreau.viz'
    for k in pairs(_G) do
      assert.is_true(before[k] ~= nil, 'global set: ' .. tostring(k))
    end
    assert.is_function(fresh.heatmap)
    assert.is_function(require('moreau').viz.grid)
  end)
end)

describe('viz.colorbar (the strip a panel was coloured with)', function()
  it('runs its colour map left to right: t = x / (width - 1)', function()
    local g = viz.colorbar('gray', { width = 11, height = 3 })
    assert.are.equal(11, g.width)
    assert.are.equal(3, g.height)
    -- gray: byte round(255 t), t = 0, 0.1, ..., 1; every row the same
    for x = 1, 11 do
      local v = math.floor(255 * (x - 1) / 10 + 0.5)
      for y = 1, 3 do assert.are.same({ v, v, v }, { g:get(x, y) }) end
    end
    -- diverging: the ends are viz.signed's -1 and +1 colours, white in the middle
    local d = viz.colorbar('diverging', { width = 5, height = 1 })
    assert.are.same({ viz.diverging(-1) }, { d:get(1, 1) })
    assert.are.same({ 255, 255, 255 }, { d:get(3, 1) })
    assert.are.same({ viz.diverging(1) }, { d:get(5, 1) })
    assert.are.same({ viz.diverging(-0.5) }, { d:get(2, 1) })
    -- viridis: its published ends, #440154 and #FDE725
    local v = viz.colorbar('viridis', { width = 2, height = 1 })
    assert.are.same({ 0x44, 0x01, 0x54 }, { v:get(1, 1) })
    assert.are.same({ 0xFD, 0xE7, 0x25 }, { v:get(2, 1) })
    -- the default size is a 28x28 map at scale 4
    local def = viz.colorbar('gray')
    assert.are.equal(112, def.width)
    assert.are.equal(10, def.height)
  end)

  it('rejects bad sizes and colour maps clearly', function()
    assert_error_with(function() viz.colorbar('gray', { width = 1 }) end,
      'viz.colorbar: width must be an integer >= 2, got 1')
    assert_error_with(function() viz.colorbar('gray', { width = 8, height = 0 }) end,
      'viz.colorbar: size must be two integers in 1..32768, got 8 wide × 0 high')
    assert_error_with(function() viz.colorbar('jet') end, "viz: unknown color map 'jet'")
  end)
end)

describe('viz.grid with title_scale', function()
  it('draws the title at title_scale and the column titles at text_scale (layout as documented)', function()
    local a = viz.canvas(10, 10, { 255, 0, 0 })
    local pad = 4
    local g = viz.grid { rows = { { a, a } }, col_titles = { 'a', 'b' }, title = 'T', text_scale = 2,
      title_scale = 3, pad = pad }
    -- TH = 3 * 8 + pad, CH = 2 * 8 + pad; a title wider than the cells widens the columns
    local _, th = viz.text_size('T', 3)
    local _, ch = viz.text_size('a', 2)
    assert.are.equal(24, th)
    assert.are.equal(16, ch)
    assert.are.equal(pad + (th + pad) + (ch + pad) + 10 + pad, g.height)
    -- the default stays twice the text scale
    local d = viz.grid { rows = { { a } }, title = 'T', text_scale = 2, pad = pad }
    assert.are.equal(pad + (32 + pad) + 10 + pad, d.height)
    assert_error_with(function() viz.grid { rows = { { a } }, title = 'T', title_scale = 0 } end,
      'viz.grid (title_scale): scale must be an integer >= 1, got 0')
  end)
end)

describe('drawing with coordinates that are not pixels', function()
  local viz = require 'moreau.viz'
  it('is refused with the method named: NaN, infinities, far-off points, a huge brush', function()
    local cv = viz.canvas(8, 8)
    local NAN = 0 / 0
    assert.has_error(function() cv:rect(1, NAN, 3, 3, 'red') end,
      'canvas:rect: coordinates and sizes must be finite numbers within ±2^24 pixels, got nan')
    assert.has_error(function() cv:line(1, 1, NAN, 4, 'red') end,
      'canvas:line: coordinates and sizes must be finite numbers within ±2^24 pixels, got nan')
    assert.has_error(function() cv:line(1, 1, 1e15, 4, 'red') end,
      'canvas:line: coordinates and sizes must be finite numbers within ±2^24 pixels, got 1e+15')
    assert.has_error(function() cv:line(1, 1, 4, 4, 'red', 1e6) end,
      'canvas:line: width must be a number of pixels in [1, 256], got 1000000')
    assert.has_error(function() cv:fill_rect(1, 1, math.huge, 2, 'red') end,
      'canvas:fill_rect: coordinates and sizes must be finite numbers within ±2^24 pixels, got inf')
    assert.has_error(function() cv:blit(viz.canvas(2, 2), NAN, 1) end,
      'canvas:blit: coordinates and sizes must be finite numbers within ±2^24 pixels, got nan')
    assert.has_error(function() cv:text(NAN, 1, 'x') end,
      'canvas:text: coordinates and sizes must be finite numbers within ±2^24 pixels, got nan')
    -- the canvas is untouched and still usable
    local before = { cv:get(4, 4) }
    cv:line(-100, -100, 100, 100, 'red')
    assert.are_not.same(before, { cv:get(4, 4) })
  end)

  it('a plot of a diverged series or NaN limits is refused, naming the axis', function()
    assert.has_error(function() viz.line_plot { series = { { x = { 1, 2 }, y = { -1e308, 1e308 } } } } end,
      'viz.line_plot: the y axis of the data [-1e+308, 1e+308] is not a finite range (a diverged series? give opts.ylim)')
    assert.has_error(function()
      viz.line_plot { series = { { x = { 1, 2 }, y = { 1, 2 } } }, xlim = { 0 / 0, 1 } }
    end, 'viz.line_plot: the x axis limits (opts.xlim) [nan, 1] is not a finite range')
  end)
end)
