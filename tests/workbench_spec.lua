-- The researcher's workbench: the moreau command, recipe parameters, results
-- folders, re-runs, the sandbox for shared recipes, the REPL, the results page.
local lfs = require 'lfs'
local cjson = require 'cjson'
local recipe = require 'moreau.recipe'
local sandbox = require 'moreau.sandbox'
local repl = require 'moreau.repl'
local core = require 'moreau.core'

local root = core.root
local tmp = require('helpers.cli').tmpdir()

local cli = require 'helpers.cli'
local moreau, write, read = cli.moreau, cli.write, cli.read

-- A small recipe with typed parameters that writes a picture and a table.
local demo = tmp .. '/demo.lua'
write(demo, [[
local moreau = require 'moreau'
return {
  name = 'demo',
  description = 'a tiny recipe for the tests',
  params = {
    n = { type = 'int', default = 3, help = 'how many' },
    scale = { type = 'number', default = 0.5, help = 'a factor' },
    tag = { type = 'string', default = 'x', help = 'a label' },
    flag = { type = 'bool', default = false, help = 'a switch' },
    values = { type = 'list', default = { 1, 2 }, help = 'some numbers' },
  },
  writes = { 'pic.png', 'table.csv' },
  run = function(p, rep)
    local viz = moreau.viz
    local x = moreau.tensor.randn({ 1, 1, 8, 8 }, { seed = p.n })
    rep:image('pic.png', viz.upscale(viz.heatmap(x), 4), 'a heatmap')
    rep:table('table.csv', { 'i', 'value' }, { { 1, p.scale }, { 2, p.n } }, 'numbers')
    rep.results.sum = x:sum()
  end,
}
]])

describe('recipes', function()
  it('declare typed parameters with defaults and help', function()
    local r = recipe.load(demo)
    local p = recipe.params(r, { n = '7', scale = '2.5', flag = 'true', values = '3,4,5' })
    assert.are.same({ n = 7, scale = 2.5, tag = 'x', flag = true, values = { 3, 4, 5 } }, p)
    assert.has_error(function() recipe.params(r, { n = '2.5' }) end, "demo: parameter 'n' expects int, got '2.5'")
    assert.has_error(function() recipe.params(r, { bogus = '1' }) end,
      "demo: unknown parameter 'bogus' (parameters: flag, n, scale, tag, values)")
    local help = recipe.help(r)
    assert.truthy(help:find('--scale', 1, true) and help:find('a factor (default 0.5)', 1, true))
  end)

  it('run into a results folder with results.json, and re-run from it with the same numbers', function()
    local out, rc = moreau(('run %q --n=5 --out=%q'):format(demo, tmp .. '/r1'))
    assert.are.equal(0, rc, out)
    local res = cjson.decode(read(tmp .. '/r1/results.json'))
    assert.are.equal('demo', res.recipe)
    assert.are.equal(5, res.params.n)
    assert.truthy(res.versions.moreau and res.versions.backend and res.date)
    assert.truthy(read(tmp .. '/r1/pic.png') and read(tmp .. '/r1/table.csv'):find('i,value', 1, true))
    -- a results.json names its recipe file: one that is not shipped runs only when the user says so
    out, rc = moreau(('run --from=%q --out=%q'):format(tmp .. '/r1/results.json', tmp .. '/r2'))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find('which is not a shipped recipe', 1, true), out)
    assert.is_nil(read(tmp .. '/r2/results.json'))
    out, rc = moreau(('run --trust --from=%q --out=%q'):format(tmp .. '/r1/results.json', tmp .. '/r2'))
    assert.are.equal(0, rc, out)
    local res2 = cjson.decode(read(tmp .. '/r2/results.json'))
    assert.are.equal(res.sum, res2.sum)
    assert.are.equal(5, res2.params.n)
  end)

  it('re-run from a results.json someone sent: only a shipped recipe runs unconfined', function()
    local evil, marker = tmp .. '/evil.lua', tmp .. '/marker'
    write(evil, ("return { name = 'evil', params = {}, run = function() " ..
      "local f = io.open(%q, 'w') f:write('ran') f:close() end }\n"):format(marker))
    -- the recorded file is not shipped: refused, nothing ran
    write(tmp .. '/evil.json', cjson.encode { recipe = 'evil', recipe_file = evil, params = {} })
    local out, rc = moreau(('run --from=%q --out=%q'):format(tmp .. '/evil.json', tmp .. '/e1'))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find('run it confined with `moreau run --sandbox --from=', 1, true), out)
    assert.is_nil(read(marker))
    -- confined, its write outside the results folder is refused
    out, rc = moreau(('run --sandbox --from=%q --out=%q'):format(tmp .. '/evil.json', tmp .. '/e2'))
    assert.are.equal(1, rc, out)
    assert.is_nil(read(marker))
    -- a shipped recipe's name with another file behind it: refused too
    write(tmp .. '/named.json', cjson.encode { recipe = 'explain', recipe_file = evil, params = { methods = 'gradient' } })
    out, rc = moreau(('run --from=%q --out=%q'):format(tmp .. '/named.json', tmp .. '/e3'))
    assert.are.equal(1, rc, out)
    assert.is_nil(read(marker))
    -- a colleague's run of a shipped recipe (their checkout's path): this checkout's recipe runs
    write(tmp .. '/theirs.json', cjson.encode { recipe = 'explain', recipe_file = '/elsewhere/moreau/recipes/explain.lua',
      params = { methods = 'gradient' } })
    out, rc = moreau(('run --from=%q --out=%q'):format(tmp .. '/theirs.json', tmp .. '/e4'))
    assert.are.equal(0, rc, out)
    assert.are.equal('explain', cjson.decode(read(tmp .. '/e4/results.json')).recipe)
    out, rc = moreau('run --trust recipes/explain.lua')
    assert.are.equal(1, rc, out)
    assert.truthy(out:find('--trust applies to --from only', 1, true), out)
  end)

  it('list their parameters with --help and report errors with file and line', function()
    local out, rc = moreau(('run %q --help'):format(demo))
    assert.are.equal(0, rc)
    assert.truthy(out:find('demo — a tiny recipe for the tests', 1, true))
    local bad = tmp .. '/bad.lua'
    write(bad, "return { name = 'bad', run = function(p, rep)\n  local x = nil\n  return x.field\nend }\n")
    out, rc = moreau(('run %q --out=%q'):format(bad, tmp .. '/r3'))
    assert.are.equal(1, rc)
    assert.truthy(out:find('bad.lua:3:', 1, true), out)
  end)
end)

describe('the moreau command', function()
  it('prints its version, info and help; rejects unknown commands', function()
    local out, rc = moreau('--version')
    assert.are.equal(0, rc)
    assert.truthy(out:find('moreau ' .. core.version(), 1, true))
    out = moreau('info')
    assert.truthy(out:find('backend: cpu', 1, true) and out:find('threads:', 1, true))
    out, rc = moreau('frobnicate')
    assert.are.equal(2, rc)
    assert.truthy(out:find("unknown command 'frobnicate'", 1, true))
    out, rc = moreau('run no_such_recipe')
    assert.are.equal(1, rc)
    assert.truthy(out:find("no recipe 'no_such_recipe'", 1, true))
  end)

  -- The benchmark (issue 7's figures) on tiny settings, engine side only: it
  -- must keep running end to end, every section printing its table.
  it('runs the benchmark sections end to end (tiny settings, no PyTorch)', function()
    local out, rc = moreau('bench --torch=off --only=moreau,train,batch,methods --models=resnet_fmnist'
      .. ' --T=2 --m=2 --repeats=1 --images=3 --batch_T=1 --batch_m=2 --batch_chunk=4 --samples=2 --steps=2')
    assert.are.equal(0, rc, out)
    for _, heading in ipairs { '== moreau:', '== train:', '== batch:', '== methods:', 'used / (act + wts)' } do
      assert.truthy(out:find(heading, 1, true), heading .. ' missing from:\n' .. out)
    end
    out, rc = moreau('bench --only=nonsense')
    assert.are_not.equal(0, rc)
    assert.truthy(out:find("unknown section 'nonsense'", 1, true), out)
  end)
end)

describe('the sandbox', function()
  local escapes = {
    { "require 'ffi'", "sandbox: require 'ffi' is not allowed in a sandboxed recipe" },
    { "require 'moreau.core'", "sandbox: require 'moreau.core' is not allowed" },
    { "return moreau.core", 'sandbox: moreau.core is not available in a sandboxed recipe' },
    { "os.execute('true')", 'sandbox: os.execute is not available in a sandboxed recipe' },
    { "os.remove('x')", 'sandbox: os.remove is not available in a sandboxed recipe' },
    { "io.popen('ls')", 'sandbox: io.popen is not available in a sandboxed recipe' },
    { "io.open('/etc/passwd')", 'sandbox: io.open is not available in a sandboxed recipe' },
    { "debug.getinfo(1)", 'sandbox: debug.getinfo is not available in a sandboxed recipe' },
    -- no bytecode can be made in the confined process, and none loaded (below)
    { "load(('').dump(function() end))", "attempt to call field 'dump' (a nil value)" },
    { "load('\\27LJ\\2')", 'sandbox: loading bytecode is not allowed in a sandboxed recipe' },
    { "dofile('/etc/passwd')", 'sandbox: dofile is not allowed in a sandboxed recipe' },
    { "loadfile('/etc/passwd')", 'sandbox: loadfile is not allowed in a sandboxed recipe' },
    { "assert(getfenv == nil and setfenv == nil); error('ok: no fenv')", 'ok: no fenv' },
    { "moreau.viz.canvas(2, 2):save_png('/tmp/escape.png')", "sandbox: writing '/tmp/escape.png' is not allowed" },
    { "moreau.nn.builder{2}:build():save('/tmp/escape.safetensors')", "sandbox: writing '/tmp/escape.safetensors'" },
    { "rep:image('../escape.png', moreau.viz.canvas(2, 2))", "report: '../escape.png' must be a plain file name" },
  }
  for i, case in ipairs(escapes) do
    it('refuses ' .. case[1], function()
      local path = ('%s/escape%d.lua'):format(tmp, i)
      write(path, ("return { name = 'escape', run = function(p, rep) %s end }"):format(case[1]))
      local out, rc = moreau(('run --sandbox %q --out=%q'):format(path, ('%s/sb%d'):format(tmp, i)))
      assert.are.equal(1, rc, out)
      assert.truthy(out:find(case[2], 1, true), out)
    end)
  end

  it('runs a well-behaved recipe and confines nothing afterwards', function()
    local out, rc = moreau(('run --sandbox %q --out=%q'):format(demo, tmp .. '/sbok'))
    assert.are.equal(0, rc, out)
    assert.truthy(read(tmp .. '/sbok/pic.png'))
    assert.is_nil(core.write_guard)
    sandbox.confine(tmp .. '/only')
    assert.has_error(function() core.check_write('/tmp/elsewhere') end)
    assert.are.equal(tmp .. '/only/x', core.check_write(tmp .. '/only/x'))
    sandbox.release()
  end)

  it('refuses a bytecode recipe file', function()
    local path = tmp .. '/bc.lua'
    write(path, string.dump(function() return {} end))
    assert.has_error(function() sandbox.load(path) end)
  end)
end)

describe('the REPL', function()
  it('evaluates expressions and statements, waits for unfinished chunks, prints tensors', function()
    local env = repl.env()
    local ok, res = repl.eval('1 + 2', env)
    assert.is_true(ok)
    assert.are.equal(3, res[1])
    ok = repl.eval('y = T.ones{2, 2}', env)
    assert.is_true(ok)
    local text = repl.pretty(env.y)
    assert.truthy(text:find('tensor 2x2 float32 cpu', 1, true) and text:find('mean 1', 1, true))
    local _, _, incomplete = repl.eval('for i = 1, 2 do', env)
    assert.is_true(incomplete)
    assert.truthy(repl.help(env.methods.moreaugrad {}):find('moreaugrad', 1, true))
    assert.truthy(repl.help(demo):find('--values', 1, true))
  end)
end)

describe('the results page', function()
  local chromium
  for _, c in ipairs { '/usr/bin/chromium', '/usr/bin/chromium-browser' } do
    if lfs.attributes(c) then chromium = c break end
  end

  it('shows every image and table in headless Chromium', function()
    if not chromium then
      print('\nSKIPPED: results page test: Chromium is not installed (scripts/test installs it under CI)')
      return
    end
    local dir = tmp .. '/page'
    local out, rc = moreau(('run %q --out=%q'):format(demo, dir))
    assert.are.equal(0, rc, out)
    local flags = '--headless --no-sandbox --disable-gpu --disable-quic --no-first-run ' ..
      '--disable-background-networking --disable-component-update --disable-sync ' ..
      '--user-data-dir=' .. tmp .. '/chrome-profile'
    local url = 'file://' .. (dir:sub(1, 1) == '/' and dir or (lfs.currentdir() .. '/' .. dir)) .. '/index.html'
    -- (without the sanitizer runtimes the ASan build preloads into this process)
    local p = io.popen(('env -u LD_PRELOAD %s %s --virtual-time-budget=3000 --dump-dom %q 2>/dev/null'):format(chromium, flags, url))
    local dom = p:read('*a')
    p:close()
    assert.truthy(dom:find('<table class="results">', 1, true))
    assert.truthy(dom:find('<table id="params">', 1, true))
    assert.truthy(dom:find('Content-Security-Policy', 1, true))
    assert.falsy(dom:find('<script', 1, true))
    -- the heatmap shows: the screenshot holds a block of strongly coloured
    -- pixels (a broken image would be a small grey icon and its caption)
    local shot = tmp .. '/results-page.png'
    os.execute(('env -u LD_PRELOAD %s %s --window-size=1100,900 --screenshot=%q %q >/dev/null 2>&1'):format(chromium, flags, shot, url))
    assert.truthy(lfs.attributes(shot), 'screenshot saved')
    local img = require('moreau.data').load_image(shot)
    local c, h, w = img:shape()[2], img:shape()[3], img:shape()[4]
    assert.are.equal(3, c)
    local coloured = 0
    for y = 0, h - 1 do
      for x = 0, w - 1 do
        local r, g, b = img:get(1, 1, y + 1, x + 1), img:get(1, 2, y + 1, x + 1), img:get(1, 3, y + 1, x + 1)
        if math.max(r, g, b) - math.min(r, g, b) > 0.3 then coloured = coloured + 1 end
      end
    end
    -- the 8x8 map upscaled 4x is 32x32 = 1024 pixels, mostly far from grey
    assert.is_true(coloured > 400, 'coloured pixels in the screenshot: ' .. coloured)
  end)
end)

describe('the REPL on "statements; expression"', function()
  it('prints the value of the last part', function()
    local env = repl.env()
    repl.eval('z = T.ones{3}', env)
    local ok, res = repl.eval('for i = 1, 2 do z:add_(1) end; z:sum()', env)
    assert.is_true(ok)
    assert.are.equal(9, res[1])
  end)
end)

describe('results folders', function()
  it('are made fresh for each run (exclusive create), and a recipe name cannot leave results/', function()
    local report = require 'moreau.report'
    local a, b = report.new('wb_fresh'), report.new('wb_fresh')
    finally(function() os.execute(('rm -rf %q %q'):format(a.dir, b.dir)) end)
    assert.are_not.equal(a.dir, b.dir)
    assert.has_error(function() report.new('../escape') end,
      "report: name '../escape' must be letters, digits, '_' or '-' (it names the results folder)")
    local bad = tmp .. '/dots.lua'
    write(bad, "return { name = '../../escape', run = function() end }\n")
    local out, rc = moreau(('run %q'):format(bad))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find("name '../../escape' must be letters, digits", 1, true), out)
  end)
end)

describe('results files', function()
  it('are not written through a link already in the folder', function()
    local report = require 'moreau.report'
    local dir = tmp .. '/linked'
    local rep = report.new('linked', { dir = dir })
    local target = tmp .. '/outside.txt'
    write(target, 'keep')
    os.execute(('ln -s %q %q'):format(target, dir .. '/notes.csv'))
    assert.has_error(function() rep:table('notes.csv', { 'a' }, { { 1 } }) end,
      "report: 'notes.csv' in the results folder is a link, not a plain file: not written")
    assert.are.equal('keep', read(target))
  end)
end)

describe('the thread count', function()
  it('follows OMP_NUM_THREADS by default and --threads on the command line', function()
    local out = moreau('info')
    local function threads(s) return tonumber(s:match('threads: (%d+)')) end
    local p = io.popen(('OMP_NUM_THREADS=1 MOREAU_LIB=%q %q/scripts/moreau info 2>&1'):format(core.lib_path, root))
    local one = p:read('*a')
    p:close()
    assert.are.equal(1, threads(one), one)
    assert.are.equal(3, threads(moreau('--threads=3 info')))
    local bad, rc = moreau('--threads=0 info')
    assert.are.equal(2, rc)
    assert.truthy(bad:find('--threads must be an integer in [1, 4096]', 1, true), bad)
    assert.truthy(threads(out) >= 1)
  end)
end)

describe('the REPL printer', function()
  it('prints sequences in index order, then the other keys sorted, and elides long tables with the count', function()
    local twelve = {}
    for i = 1, 12 do twelve[i] = i end
    assert.are.equal('{ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 }', repl.pretty(twelve))
    assert.are.equal('{ 3, 4, [10] = 5, a = 1, b = { 1, 2, {...} }, ["x y"] = 2 }',
      repl.pretty { 3, 4, a = 1, b = { 1, 2, { 3 } }, [10] = 5, ['x y'] = 2 })
    assert.are.equal('{}', repl.pretty {})
    local long = {}
    for i = 1, 120 do long[i] = i * 10 end
    local text = repl.pretty(long)
    assert.truthy(text:find('^{ 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150, 160, 170, 180, ' ..
      '190, 200, 210, 220, 230, 240, %.%.%. %(120 entries%) }$'), text)
    assert.are.equal('"a\\"b"', repl.pretty('a"b'))
  end)

  it('prints a tensor as its summary and a 2-D slice: the last two dims of the first item, corners around ...', function()
    local T = require 'moreau.tensor'
    local x = T.zeros { 2, 3, 10, 12 }
    for i = 1, 10 do
      for j = 1, 12 do x:set(100 * i + j, 1, 1, i, j) end
    end
    assert.are.equal(table.concat({
      -- mean: sum_{i<=10, j<=12} (100 i + j) / 720 = (12·100·55 + 10·78) / 720 = 92.75
      'tensor 2x3x10x12 float32 cpu  min 0  max 1012  mean 92.75',
      '  [1, 1, :, :]',
      '  [[ 101,  102,  103,  ...,  110,  111,  112],',
      '   [ 201,  202,  203,  ...,  210,  211,  212],',
      '   [ 301,  302,  303,  ...,  310,  311,  312],',
      '   ...,',
      '   [ 801,  802,  803,  ...,  810,  811,  812],',
      '   [ 901,  902,  903,  ...,  910,  911,  912],',
      '   [1001, 1002, 1003,  ..., 1010, 1011, 1012]]' }, '\n'), tostring(x))
    local m = T.zeros { 2, 3 }
    m:set(0.5, 1, 2)
    m:set(-1.25, 2, 3)
    assert.are.equal('tensor 2x3 float32 cpu  min -1.25  max 0.5  mean -0.125\n' ..
      '  [[    0,   0.5,     0],\n   [    0,     0, -1.25]]', tostring(m))
    assert.are.equal('tensor 3 float32 cpu  min 1  max 1  mean 1\n  [1, 1, 1]', tostring(T.ones { 3 }))
  end)
end)

describe('REPL completion', function()
  it('completes globals, fields after ".", methods after ":" (through the metatable), and calls nothing', function()
    local env = repl.env()
    assert.are.same({ 'methods', 'metrics' }, repl.complete('me', env))
    assert.are.same({ 'prox.solver', 'prox.solver_options' }, repl.complete('prox.sol', env))
    assert.are.same({ 'string.format' }, repl.complete('string.fo', env))
    env.x = require('moreau.tensor').ones { 2 }
    local m = repl.complete('x:', env)
    for _, name in ipairs { 'x:sum', 'x:shape', 'x:clone', 'x:max_abs_diff' } do
      assert.truthy(table.concat(m, ' '):find(name, 1, true), name)
    end
    assert.are.same({ 'x:max', 'x:max_abs_diff' }, repl.complete('x:max', env))
    assert.are.same({ 'while' }, repl.complete('whi', env))
    -- a field behind an __index function is not looked up by calling it
    local called = false
    env.lazy = setmetatable({}, { __index = function() called = true end })
    assert.are.same({}, repl.complete('lazy.a', env))
    assert.are.same({}, repl.complete('lazy.a.b', env))
    assert.is_false(called)
    assert.are.same({}, repl.complete('nosuch.x', env))
  end)
end)

describe('REPL help', function()
  local env = repl.env()

  it('shows the doc comment above a function: module functions, methods, tensor methods', function()
    local h = repl.help(env.prox.solver)
    assert.truthy(h:find('^function prox%.solver%(net, x, labels, opts, ids%)\nA Moreau solver for the batch x'), h)
    assert.truthy(h:find('RETURN: a Solver; nothing runs until step or run.', 1, true), h)
    assert.truthy(h:find('prox.lua:%d+%)$'), h)
    local x = env.T.ones { 2 }
    assert.truthy(repl.help(x.sum):find('^function Tensor:sum%(%)\nSums run in double'), repl.help(x.sum))
    local net = require('helpers.nets').softplus_net()
    assert.truthy(repl.help(net.forward):find('^function Net:forward'), repl.help(net.forward))
    assert.are.equal('function: a built-in function (no Lua source)', repl.help(print))
    assert.truthy(repl.help(loadstring('return function() end')()):find('typed at the prompt', 1, true))
    assert.truthy(repl.help(env.prox):find('solver, solver_options', 1, true), repl.help(env.prox))
  end)

  it('lists each option of a method with its value, domain and meaning', function()
    local h = repl.help(env.methods.moreaugrad { T = 50, accelerated = true, tol = 1e-3 })
    assert.truthy(h:find('^moreaugrad — MoreauGrad'), h)
    for _, want in ipairs {
      '  K = 50  (an integer >= 1)\n      the map averages the last K iterates',
      '  T = 50  (an integer >= 1)\n      iterations of the solver',
      '  accelerated = true  (true or false)\n      FISTA with restart',
      '  chunk = 0  (an integer >= 0)\n      noisy copies per network batch',
      "  output = 'gradient'  (one of 'gradient', 'delta')\n      'gradient': the map −mean(δ)/ρ",
      "  score = 'logit'  (one of 'logit', 'log_softmax', 'softmax')\n      the class score explained",
      '  tol = 0.001  (a number >= 0)\n      stop an image once',
    } do
      assert.truthy(h:find(want, 1, true), want .. '\nin\n' .. h)
    end
    -- every option of every method has a meaning
    for _, name in ipairs { 'gradient', 'input_x_gradient', 'integrated_gradients', 'smoothgrad',
      'sparsified_smoothgrad', 'deeplift', 'moreaugrad' } do
      local meaning = repl.option_help(name)
      for k in pairs(env.methods[name] {}.opts) do
        assert.truthy(meaning[k], name .. ': no meaning for option ' .. k)
      end
    end
  end)

  it('loads metrics, attacks, train and experiment as globals and names them in the overview', function()
    for _, m in ipairs { 'metrics', 'attacks', 'train', 'experiment' } do
      assert.are.equal(require('moreau.' .. m), env[m], m)
      assert.truthy(repl.help():find(m, 1, true), m)
    end
  end)
end)
