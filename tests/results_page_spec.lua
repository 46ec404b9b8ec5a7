-- The results page (moreau.report, recipes/explain.lua): the prediction as
-- text, each method's absolute / signed / overlay views with colour bars,
-- clip values, settings and time, the baseline of IG and DeepLIFT, a failed
-- run's error on its page, one folder per run, and the page as headless
-- Chromium shows it (text from its DOM, colours from a screenshot).
--
-- The browser part needs chromium; without it those tests are pending, with
-- the reason (scripts/test installs it under CI or MOREAU_BROWSER_TESTS=1).
local lfs = require 'lfs'
local cjson = require 'cjson'
local core = require 'moreau.core'
local report = require 'moreau.report'
local viz = require 'moreau.viz'
local cli = require 'helpers.cli'
local assert_error_with = require('helpers.asserts').error_with

local moreau, write, read = cli.moreau, cli.write, cli.read

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
-- the checkout and the library as absolute paths (the concurrent runs below start in other folders)
local function absolute(p) return p:sub(1, 1) == '/' and p or lfs.currentdir() .. '/' .. p end
local root, lib = absolute(core.root), absolute(core.lib_path)

local tmp = require('helpers.cli').tmpdir()
teardown(function() os.execute('rm -rf ' .. shell_quote(tmp)) end)

local function has(text, piece) return text:find(piece, 1, true) ~= nil end
local function assert_has(text, piece)
  assert.is_true(has(text, piece), ('%q missing from:\n%s'):format(piece, text))
end

-- One explain run shared by the tests that read its page (gradient and IG on
-- test image 0, an Ankle boot the model predicts at p = 0.997).
local explained
local function explain_page()
  if not explained then
    local dir = tmp .. '/explain'
    local out, rc = moreau(('explain --fast --methods=gradient,integrated_gradients --index=0 --out=%s'):format(
      shell_quote(dir)))
    assert.are.equal(0, rc, out)
    explained = { dir = dir, html = read(dir .. '/index.html'), res = cjson.decode(read(dir .. '/results.json')) }
  end
  return explained
end

-- A recipe that writes a picture, then fails with markup in its message.
local failing = tmp .. '/failing.lua'
write(failing, [[
local moreau = require 'moreau'
return {
  name = 'failing',
  params = {},
  run = function(p, rep)
    rep:image('before.png', moreau.viz.canvas(8, 8, 'red'), '<script>alert(1)</script> caption')
    error('<img src=x onerror=alert(1)> & the run broke', 0)
  end,
}
]])

describe('the parameter table', function()
  it('shows which methods ran when the default (all) ran them, and the list as given otherwise', function()
    local dir = tmp .. '/all_methods'
    local out, rc = moreau(('explain --fast --index=0 --out=%s'):format(shell_quote(dir)))
    assert.are.equal(0, rc, out)
    local html = read(dir .. '/index.html')
    local row = html:match('<tr><th>methods</th><td>(.-)</td></tr>')
    assert.are.equal('all: gradient, input_x_gradient, integrated_gradients, deeplift, smoothgrad, ' ..
      'sparsified_smoothgrad, moreaugrad, sparse_moreaugrad, group_moreaugrad', row)
    -- results.json keeps the value as given (an empty list re-runs them all) and what the page showed
    local res = cjson.decode(read(dir .. '/results.json'))
    assert.are.equal(0, #res.params.methods)
    assert.are.equal(row, res.params_shown.methods)
    -- a list given on the command line is shown as given
    html = explain_page().html
    assert.are.equal('gradient, integrated_gradients', html:match('<tr><th>methods</th><td>(.-)</td></tr>'))
  end)

  it('says what a default that means "not this one" stands for, text left-aligned and numbers right', function()
    local html = explain_page().html
    local function row(k) return html:match('<tr><th>' .. k .. '</th>(<td.-</td>)</tr>') end
    assert.are.equal('<td>-1 (the predicted class: Ankle boot, 9)</td>', row('label'))
    assert.are.equal('<td>none (Fashion-MNIST test image 0)</td>', row('image'))
    assert.are.equal('<td>crop (applies to --image only)</td>', row('fit'))
    assert.are.equal('<td class="num">0</td>', row('index'))
    assert.are.equal('<td class="num">4</td>', row('scale'))
    assert.are.equal('<td>resnet_fmnist</td>', row('model'))
    assert_has(html, 'td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}')
    assert_has(html, 'td.num{text-align:right;font-variant-numeric:tabular-nums}')
    -- results.json keeps the values as given, and what the page showed
    local res = explain_page().res
    assert.are.equal(-1, res.params.label)
    assert.are.equal('', res.params.image)
    assert.are.equal('-1 (the predicted class: Ankle boot, 9)', res.params_shown.label)
    -- with --image, the index is the one not used
    local pgm = tmp .. '/shown.pgm'
    write(pgm, 'P5 28 28 255\n' .. ('\64'):rep(28 * 28))
    local dir = tmp .. '/shown_image'
    local out, rc = moreau(('explain --fast --methods=gradient --image=%s --out=%s'):format(shell_quote(pgm),
      shell_quote(dir)))
    assert.are.equal(0, rc, out)
    html = read(dir .. '/index.html')
    assert_has(html, '<tr><th>index</th><td>0 (not used: --image gives the image)</td></tr>')
    assert_has(html, ('<tr><th>image</th><td>%s</td></tr>'):format(pgm))
    assert_has(html, '<tr><th>fit</th><td>crop</td></tr>')
  end)

  it('refuses a shown value that is not a string', function()
    local rep = report.new('shown', { dir = tmp .. '/shown' })
    assert_error_with(function() rep:param_shown('methods', { 'gradient' }) end,
      'report:param_shown: name and text must be strings, got string and table')
  end)
end)

describe('report:figure and report:html_table', function()
  it('lay out pictures with labels, colour bars, captions and details, every text escaped', function()
    local dir = tmp .. '/unit'
    local rep = report.new('page_unit', { dir = dir })
    rep:figure {
      id = 'm1', title = '<b>Gradient</b>', caption = "it's <i>raw</i>", details = { { 'time', '<1 s' }, { 'n', 3 } },
      images = {
        { file = 'a.png', canvas = viz.canvas(4, 4, 'red'), label = '<script>x</script>',
          colorbar = { file = 'bar.png', canvas = viz.colorbar('gray', { width = 4 }), low = 0, high = '1 & more',
            note = 'q "quoted"' } },
        -- the colour bar saved above is used again without a canvas
        { file = 'b.png', canvas = viz.canvas(4, 4, 'blue'), label = 'signed', alt = 'signed map',
          colorbar = { file = 'bar.png', low = '-1', mid = '0', high = '1' } },
      },
    }
    rep:html_table { id = 'pred', header = { 'class', 'p' }, rows = { { 'Coat, long', 0.625 }, { 'Bag' } },
      caption = 'top <2>' }
    local html = rep:html()
    assert_has(html, '<figure class="panels" id="m1"><h3>&lt;b&gt;Gradient&lt;/b&gt;</h3><div class="row">')
    assert_has(html, '<div class="panel"><img src="a.png" alt="&lt;script&gt;x&lt;/script&gt;">'
      .. '<div class="label">&lt;script&gt;x&lt;/script&gt;</div>')
    assert_has(html, '<div class="cbar"><img src="bar.png" alt="colour bar"><div class="ticks"><span>0</span>'
      .. '<span>1 &amp; more</span></div><div class="cnote">q &quot;quoted&quot;</div></div>')
    assert_has(html, '<img src="b.png" alt="signed map"><div class="label">signed</div>')
    assert_has(html, '<span>-1</span><span>0</span><span>1</span>')
    assert_has(html, '<figcaption>it&#39;s &lt;i&gt;raw&lt;/i&gt;<dl class="details"><dt>time</dt><dd>&lt;1 s</dd>'
      .. '<dt>n</dt><dd>3</dd></dl></figcaption></figure>')
    -- a cell is text as written (no CSV quoting on the page), numbers in 6 digits; text is
    -- left-aligned, numbers right-aligned (class num)
    assert_has(html, '<table class="results" id="pred"><caption>top &lt;2&gt;</caption><tr><th>class</th>'
      .. '<th>p</th></tr><tr><td>Coat, long</td><td class="num">0.625</td></tr><tr><td>Bag</td><td></td></tr></table>')
    assert.is_nil(html:find('<script', 1, true))
    assert.is_nil(html:find('<i>', 1, true))
    for _, f in ipairs { 'a.png', 'b.png', 'bar.png' } do assert.truthy(lfs.attributes(dir .. '/' .. f), f) end
    -- text in the browser's fonts: nothing fetched, the policy forbids it
    assert_has(html, 'font-family:system-ui')
    assert_has(html, "default-src 'none'")
    assert.is_nil(html:find('@font-face', 1, true))
    assert.is_nil(html:find('<div id="error"', 1, true))
  end)

  it('refuse what they cannot show, naming the problem, at the caller', function()
    local rep = report.new('page_errors', { dir = tmp .. '/errors' })
    local cv = viz.canvas(2, 2)
    assert_error_with(function() rep:figure {} end,
      'report:figure: spec.images must be a non-empty list of { file, canvas, label }')
    local err = assert_error_with(function() rep:figure { images = { { file = 'x.png' } } } end,
      "report:figure: images[1] 'x.png' has no canvas and was not saved by this report")
    assert_has(err, 'results_page_spec.lua:')
    assert_error_with(function() rep:figure { images = { { file = 'x.png', canvas = 5 } } } end,
      'report:figure: images[1] is not a picture (a moreau.viz canvas), got 5')
    assert_error_with(function() rep:figure { images = { { file = '../x.png', canvas = cv } } } end,
      "report: '../x.png' must be a plain file name inside the results folder")
    assert_error_with(function() rep:figure { images = { { file = 'x.png', canvas = cv, label = {} } } } end,
      'report:figure: images[1].label must be a string or a number, got table')
    assert_error_with(function()
      rep:figure { images = { { file = 'x.png', canvas = cv, colorbar = { file = 'nope.png' } } } }
    end, "report:figure: images[1].colorbar 'nope.png' has no canvas and was not saved by this report")
    assert_error_with(function() rep:figure { id = '1 bad"', images = { { file = 'x.png', canvas = cv } } } end,
      "report:figure: id must be a letter then letters, digits, '_' or '-', got '1 bad\"'")
    assert_error_with(function() rep:figure { images = { { file = 'x.png', canvas = cv } }, details = { {} } } end,
      "report:figure: details[1] must be { 'name', 'value' }")
    assert_error_with(function() rep:figure { id = 'error', images = { { file = 'x.png', canvas = cv } } } end,
      "report:figure: id 'error' is the page's own (taken: error, params)")
    -- nothing is written by a figure that was refused
    assert.is_nil(lfs.attributes(tmp .. '/errors/x.png'))
    assert_error_with(function() rep:html_table { header = {}, rows = {} } end,
      'report:html_table: spec needs header (a non-empty list) and rows (a list of lists)')
    assert_error_with(function() rep:html_table { header = { 'a' }, rows = { 5 } } end,
      'report:html_table: rows[1] must be a list of cells')
    assert_error_with(function() rep:heading() end, 'report:heading: text is required')
  end)
end)

describe('a failed run', function()
  it('shows its error, escaped, in a box at the top of its page; results.json keeps it', function()
    local dir = tmp .. '/failed'
    local out, rc = moreau(('run %s --out=%s'):format(shell_quote(failing), shell_quote(dir)))
    assert.are.equal(1, rc, out)
    local html = read(dir .. '/index.html')
    local msg = '&lt;img src=x onerror=alert(1)&gt; &amp; the run broke'
    assert_has(html, '<div id="error" role="alert"><strong>This run failed.</strong>')
    assert_has(html, '<pre>' .. msg .. '</pre></div>')
    -- first thing after the heading, before what the run wrote
    assert.is_true(html:find('<div id="error"', 1, true) < html:find('before.png', 1, true))
    assert_has(html, '<title>failing (failed)</title>')
    assert_has(html, '&lt;script&gt;alert(1)&lt;/script&gt; caption')
    assert.is_nil(html:find('<script', 1, true))
    assert.is_nil(html:find('<img src=x', 1, true))
    assert.are.equal('<img src=x onerror=alert(1)> & the run broke', cjson.decode(read(dir .. '/results.json')).error)
  end)

  it('of explain says what was wrong on the page', function()
    local dir = tmp .. '/explain-failed'
    local out, rc = moreau(('explain --index=10000 --methods=gradient --out=%s'):format(shell_quote(dir)))
    assert.are.equal(1, rc, out)
    assert_has(read(dir .. '/index.html'),
      '<pre>explain: --index=10000 is outside the test set (0..9999)</pre>')
  end)
end)

describe('results folders', function()
  it('are one per run for runs started in the same second, in separate processes (exclusive create)', function()
    local dir = tmp .. '/same-second'
    lfs.mkdir(dir)
    -- four processes wait for the same whole second, then each asks for a folder
    local start = os.time() + 2
    local code = "local report = require 'moreau.report'; local ffi = require 'ffi'; "
      .. "ffi.cdef 'int poll(void *fds, unsigned long n, int timeout)'; local start = tonumber(os.getenv('START')); "
      .. "while os.time() < start do ffi.C.poll(nil, 0, 10) end; io.write(report.new_run_dir('same_second'))"
    local cmd = {}
    for i = 1, 4 do
      cmd[#cmd + 1] = ('(cd %s && START=%d MOREAU_LIB=%s LUA_PATH=%s luajit -e %s > out%d) &'):format(
        shell_quote(dir), start, shell_quote(lib),
        shell_quote(root .. '/bindings/?.lua;' .. root .. '/bindings/?/init.lua;;'), shell_quote(code), i)
    end
    os.execute(table.concat(cmd, ' ') .. ' wait')
    local got, seen = {}, {}
    for i = 1, 4 do
      local d = read(('%s/out%d'):format(dir, i))
      assert.truthy(d and d:match('^results/same_second%-%d+%-%d+'), tostring(d))
      assert.is_nil(seen[d], 'two processes got ' .. d)
      seen[d] = true
      got[#got + 1] = d
      assert.are.equal('directory', lfs.attributes(dir .. '/' .. d, 'mode'))
    end
    -- all in one second: the first took the plain name, the others -2, -3, -4
    table.sort(got)
    local base = got[1]
    assert.are.same({ base, base .. '-2', base .. '-3', base .. '-4' }, got)
  end)

  it('keep each run\'s files and error apart when several runs start together', function()
    local dir = tmp .. '/together'
    lfs.mkdir(dir)
    local demo = tmp .. '/demo.lua'
    write(demo, [[
local moreau = require 'moreau'
return {
  name = 'together',
  params = { n = { type = 'int', default = 1, help = 'which run' } },
  run = function(p, rep)
    if p.n == 3 then error('run 3 failed', 0) end
    rep:image('pic.png', moreau.viz.canvas(p.n, 1), 'run ' .. p.n)
    rep.results.n = p.n
  end,
}
]])
    local cmd = {}
    for i = 1, 4 do
      cmd[#cmd + 1] = ('(cd %s && MOREAU_LIB=%s %s run %s --n=%d >/dev/null 2>&1) &'):format(shell_quote(dir),
        shell_quote(lib), shell_quote(root .. '/scripts/moreau'), shell_quote(demo), i)
    end
    os.execute(table.concat(cmd, ' ') .. ' wait')
    local runs = 0
    for f in lfs.dir(dir .. '/results') do
      if f:match('^together%-') then
        runs = runs + 1
        local folder = dir .. '/results/' .. f
        local res = cjson.decode(read(folder .. '/results.json'))
        local n = res.params.n
        if n == 3 then
          assert.are.equal('run 3 failed', res.error)
          assert.is_nil(lfs.attributes(folder .. '/pic.png'), 'the failed run has no picture')
          assert_has(read(folder .. '/index.html'), '<pre>run 3 failed</pre>')
        else
          assert.is_nil(res.error)
          assert.are.equal(n, res.n)
          assert.are.equal(n, require('moreau.data').load_image(folder .. '/pic.png'):shape()[4])
          assert.is_nil(read(folder .. '/index.html'):find('<div id="error"', 1, true))
        end
      end
    end
    assert.are.equal(4, runs)
  end)
end)

describe("explain's page", function()
  it('shows true, predicted and explained class with the top-5 probabilities as text', function()
    local e = explain_page()
    local html, res = e.html, e.res
    assert.are.equal(9, res.prediction.label)
    assert_has(html, '<p>Explaining class Ankle boot (9); the model predicts Ankle boot (9) with softmax p = 0.997; '
      .. 'true class Ankle boot (9).</p>')
    assert_has(html, '<table class="results" id="prediction"><caption>top 5 of 10 classes by softmax probability'
      .. '</caption><tr><th>rank</th><th>class</th><th>softmax p</th><th>logit</th><th></th></tr>')
    assert_has(html, ('<tr><td class="num">1</td><td>Ankle boot (9)</td><td class="num">%s</td>'
      .. '<td class="num">%s</td><td>predicted, true, explained'
      .. '</td></tr>'):format(('%.4g'):format(res.prediction.probabilities[10]),
      ('%.4g'):format(res.prediction.logits[10])))
    -- five rows, in decreasing probability
    local _, rows = html:match('id="prediction">(.-)</table>'):gsub('<tr><td class="num">', '')
    assert.are.equal(5, rows)
    local last = math.huge
    local row = '<tr><td class="num">%d+</td><td>[^<]*</td><td class="num">([^<]*)</td>'
    for p in html:match('id="prediction">(.-)</table>'):gmatch(row) do
      assert.is_true(tonumber(p) <= last)
      last = tonumber(p)
    end
  end)

  it('has a figure per method: absolute, signed, overlay, colour bars with clip values, settings, time', function()
    local e = explain_page()
    local html, res, dir = e.html, e.res, e.dir
    for _, key in ipairs { 'gradient', 'integrated_gradients' } do
      local fig = html:match('<figure class="panels" id="method%-' .. key .. '">(.-)</figure>')
      assert.truthy(fig, key .. ' has a figure')
      local r = res.methods[key]
      for _, f in ipairs { key .. '.png', key .. '_signed.png', key .. '_overlay.png' } do
        assert_has(fig, '<img src="' .. f .. '"')
        assert.truthy(lfs.attributes(dir .. '/' .. f), f)
      end
      local q, qs = ('%.3g'):format(r.clip_abs), ('%.3g'):format(r.clip_signed)
      assert_has(fig, '<img src="colorbar_gray.png" alt="colour bar"><div class="ticks"><span>0</span><span>' .. q)
      assert_has(fig, 'clip q = ' .. q .. ': 99th percentile of Σc |map|')
      assert_has(fig, ('<img src="colorbar_diverging.png" alt="colour bar"><div class="ticks"><span>%s</span>'
        .. '<span>0</span><span>%s</span>'):format(('%.3g'):format(-r.clip_signed), qs))
      assert_has(fig, 'clip ±q, q = ' .. qs .. ': 99th percentile of |Σc map|')
      assert_has(fig, '<img src="colorbar_viridis.png"')
      assert_has(fig, ('<dt>time</dt><dd>%.2f s</dd>'):format(r.seconds))
      assert_has(fig, '<dt>settings</dt><dd>')
    end
    assert_has(html, 'steps = 16')
    -- the clip values are viz's: q of the absolute view is the 99th percentile of Σc |map|, and the
    -- absolute PNG is that map drawn at twice --scale (28 x 8 pixels)
    assert.are.equal(224, require('moreau.data').load_image(dir .. '/gradient.png'):shape()[4])
    assert.are.equal(224, require('moreau.data').load_image(dir .. '/colorbar_gray.png'):shape()[4])
    assert.is_true(res.methods.gradient.clip_abs > 0)
    -- how the panels are normalized, said once, truthfully (viz.normalize's rule)
    assert_has(html, 'How each panel is normalized: every panel on its own')
    assert_has(html,
      'with q the 99th percentile of s over the map&#39;s pixels (its maximum when that percentile is 0)')
    -- the baseline is said where IG's maps are, and only there
    local ig = html:match('id="method%-integrated_gradients">(.-)</figure>')
    assert_has(ig, 'Baseline x0: 0 in normalized units = the data set mean (mean grey), not black.')
    assert_has(ig, '<dt>completeness</dt><dd>Σ map = ')
    assert.is_nil(html:match('id="method%-gradient">(.-)</figure>'):find('Baseline', 1, true))
    -- the grid's title reads as what it is, not as a misclassification
    assert.is_nil(html:find('->', 1, true))
    local grid = require('moreau.data').load_image(dir .. '/grid.png')
    assert.is_true(grid:shape()[4] >= 3 * 112)
  end)

  it('--baseline=black starts DeepLIFT from (0 - mean) / std, and its map stays complete', function()
    local card = require('moreau.models').card('resnet_fmnist')
    local mean, std = card.data.normalization.mean[1], card.data.normalization.std[1]
    local sums = {}
    for _, b in ipairs { 'zero', 'black' } do
      local dir = tmp .. '/baseline-' .. b
      local out, rc = moreau(('explain --fast --methods=deeplift --baseline=%s --out=%s'):format(b, shell_quote(dir)))
      assert.are.equal(0, rc, out)
      local res = cjson.decode(read(dir .. '/results.json'))
      local d = res.methods.deeplift
      assert.are.equal(b, res.baseline.kind)
      assert.are.equal(b, d.options.baseline.kind)
      -- DeepLIFT is complete: Σ map = logit_c(x) − logit_c(x0), exactly up to float32 rounding
      assert.is_true(math.abs(d.sum - d.score_difference) <= 1e-4 * math.abs(d.score_difference),
        ('%s: sum %.9g, logit difference %.9g'):format(b, d.sum, d.score_difference))
      sums[b] = d.score_difference
      local html = read(dir .. '/index.html')
      if b == 'black' then
        assert.is_true(math.abs(res.baseline.normalized[1] - (0 - mean) / std) < 1e-12)
        assert_has(html, ('black in pixel space, (0 - mean) / std = %.3g in normalized units'):format((0 - mean) / std))
      else
        assert.are.equal(0, res.baseline.normalized)
      end
    end
    assert.is_true(math.abs(sums.zero - sums.black) > 0.1, 'the two baselines give different references')
    local out, rc = moreau('explain --baseline=white --methods=deeplift')
    assert.are.equal(1, rc, out)
    assert_has(out, "explain: parameter 'baseline' must be one of 'zero', 'black', got 'white'")
  end)

  it('keeps --index and --image working, and says when the true class is not known', function()
    local dir = tmp .. '/index3'
    local out, rc = moreau(('explain --fast --methods=gradient --index=3 --out=%s'):format(shell_quote(dir)))
    assert.are.equal(0, rc, out)
    local res = cjson.decode(read(dir .. '/results.json'))
    local test = require('moreau.data').fashion_mnist { split = 'test' }
    assert.are.equal(test.labels[4], res.input.true_label)
    assert_has(read(dir .. '/index.html'), 'fashion-mnist test image 3, model resnet_fmnist.')
    local png = tmp .. '/picture.png'
    local cv = viz.canvas(28, 28, 'black')
    cv:fill_rect(8, 4, 12, 20, 'white')
    cv:save_png(png)
    dir = tmp .. '/image'
    out, rc = moreau(('explain --fast --methods=gradient --image=%s --out=%s'):format(shell_quote(png),
      shell_quote(dir)))
    assert.are.equal(0, rc, out)
    local html = read(dir .. '/index.html')
    assert_has(html, 'the true class is not known (an image file).</p>')
    assert_has(html, '<table class="results" id="prediction">')
    assert.is_nil(html:find('<td>predicted, true', 1, true))
  end)
end)

describe('the results page in headless Chromium', function()
  local chromium
  for _, c in ipairs { '/usr/bin/chromium', '/usr/bin/chromium-browser' } do
    if lfs.attributes(c) then chromium = c break end
  end
  local flags = '--headless --no-sandbox --disable-gpu --disable-quic --no-first-run ' ..
    '--disable-background-networking --disable-component-update --disable-sync ' ..
    '--user-data-dir=' .. shell_quote(tmp .. '/chrome-profile')
  local function url(dir)
    return 'file://' .. (dir:sub(1, 1) == '/' and dir or (lfs.currentdir() .. '/' .. dir)) .. '/index.html'
  end
  -- (without the sanitizer runtimes the ASan build preloads into this process)
  local function dump_dom(dir)
    local p = io.popen(('env -u LD_PRELOAD %s %s --virtual-time-budget=3000 --dump-dom %s 2>/dev/null'):format(
      chromium, flags, shell_quote(url(dir))))
    local dom = p:read('*a')
    p:close()
    return dom
  end
  -- the screenshot's pixels as a function (x, y) -> r, g, b bytes (0-based x, y) and its size
  local function screenshot(dir, w, h)
    local shot = ('%s/shot-%d.png'):format(tmp, os.time())
    os.execute(('env -u LD_PRELOAD %s %s --window-size=%d,%d --screenshot=%s %s >/dev/null 2>&1'):format(
      chromium, flags, w, h, shell_quote(shot), shell_quote(url(dir))))
    assert.truthy(lfs.attributes(shot), 'screenshot saved')
    local img = require('moreau.data').load_image(shot)
    local s = img:shape()
    assert.are.equal(3, s[2])
    local H, W = s[3], s[4]
    local v = img:select(1):totable()
    local plane = H * W
    return function(x, y)
      local i = y * W + x + 1
      local function byte(t) return math.floor(t * 255 + 0.5) end
      return byte(v[i]), byte(v[plane + i]), byte(v[2 * plane + i])
    end, W, H
  end
  -- every picture on a page is a PNG of its own folder, and no tag carries a handler
  local function assert_inert(dom)
    assert.is_nil(dom:find('<script', 1, true))
    assert.is_nil(dom:find('<iframe', 1, true))
    assert.is_nil(dom:find('<object', 1, true))
    assert_has(dom, 'Content-Security-Policy')
    for tag in dom:gmatch('<%a[^>]*>') do
      assert.is_nil(tag:lower():match('%s on%a+='), 'handler in ' .. tag)
    end
    for tag in dom:gmatch('<img[^>]*>') do
      assert.truthy(tag:match('src="[%w_%-]+%.png"'), 'image from elsewhere: ' .. tag)
    end
  end

  it('shows the prediction as text, a red-and-blue signed panel and its colour bar, and runs nothing', function()
    if not chromium then
      pending('Chromium is not installed: the page was not checked in a browser (scripts/test installs it under CI '
        .. 'or with MOREAU_BROWSER_TESTS=1)')
      return
    end
    local dir = tmp .. '/browser'
    local out, rc = moreau(('explain --fast --methods=gradient --index=0 --out=%s'):format(shell_quote(dir)))
    assert.are.equal(0, rc, out)
    local dom = dump_dom(dir)
    -- text as the browser parsed it
    assert_has(dom, '<table class="results" id="prediction">')
    assert_has(dom, '<td>Ankle boot (9)</td>')
    assert_has(dom, '<td>predicted, true, explained</td>')
    assert_has(dom, 'Explaining class Ankle boot (9); the model predicts Ankle boot (9)')
    assert_has(dom, '<figure class="panels" id="method-gradient">')
    assert_has(dom, '<img src="colorbar_diverging.png" alt="colour bar">')
    assert_has(dom, '<div class="label">signed: Σc map</div>')
    assert_inert(dom)
    -- pixels: the signed panel (224 x 224) holds many red-ish and blue-ish
    -- pixels, more than its colour bar alone could (224 x 10 in all)
    local px, W, H = screenshot(dir, 1200, 3200)
    local red, blue = 0, 0
    for y = 0, H - 1 do
      for x = 0, W - 1 do
        local r, g, b = px(x, y)
        if r > 150 and r - b > 80 and r - g > 60 then red = red + 1 end
        if b > 150 and b - r > 80 and b - g > 40 then blue = blue + 1 end
      end
    end
    assert.is_true(red > 2500 and blue > 2500, ('red-ish %d, blue-ish %d pixels'):format(red, blue))
    -- the diverging colour bar: a row whose pixel x is the colour of -q,
    -- x + 111 / x + 112 white (0) and x + 223 the colour of +q
    local lr, lg, lb = viz.diverging(-1)
    local rr, rg, rb = viz.diverging(1)
    local function near(x, y, r, g, b)
      local pr, pg, pb = px(x, y)
      return math.abs(pr - r) <= 12 and math.abs(pg - g) <= 12 and math.abs(pb - b) <= 12
    end
    local found
    for y = 0, H - 1 do
      for x = 0, W - 224 do
        if near(x, y, lr, lg, lb) and near(x + 223, y, rr, rg, rb)
          and (near(x + 111, y, 255, 255, 255) or near(x + 112, y, 255, 255, 255)) then
          found = y
          break
        end
      end
      if found then break end
    end
    assert.truthy(found, 'the diverging colour bar is on the screen')
  end)

  it('shows a failed run\'s error in a box, escaped, and runs nothing', function()
    if not chromium then
      pending('Chromium is not installed: the page was not checked in a browser (scripts/test installs it under CI '
        .. 'or with MOREAU_BROWSER_TESTS=1)')
      return
    end
    local dir = tmp .. '/browser-failed'
    local out, rc = moreau(('run %s --out=%s'):format(shell_quote(failing), shell_quote(dir)))
    assert.are.equal(1, rc, out)
    local dom = dump_dom(dir)
    assert_has(dom, '<div id="error" role="alert"><strong>This run failed.</strong>')
    assert_has(dom, '&lt;img src=x onerror=alert(1)&gt; &amp; the run broke')
    assert_inert(dom)
    -- the box is drawn: its pink background (#fdecee) fills a wide band
    local px, W, H = screenshot(dir, 1100, 700)
    local pink = 0
    for y = 0, H - 1 do
      for x = 0, W - 1 do
        local r, g, b = px(x, y)
        if math.abs(r - 0xfd) <= 3 and math.abs(g - 0xec) <= 3 and math.abs(b - 0xee) <= 3 then pink = pink + 1 end
      end
    end
    assert.is_true(pink > 20000, 'pixels of the error box: ' .. pink)
  end)
end)
