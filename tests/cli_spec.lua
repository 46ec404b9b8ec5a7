-- The command line catches mistakes before anything runs: `--key value` and
-- `-h` read as `--key=value` and `--help`, unknown names are refused with the
-- valid ones and the nearest, and every method option of the main job can be
-- set as `--METHOD.OPTION=VALUE` (moreau.recipe.params, experiment.method_option).
local lfs = require 'lfs'
local cjson = require 'cjson'
local options = require 'moreau.options'
local recipe = require 'moreau.recipe'
local experiment = require 'moreau.experiment'
local asserts = require 'helpers.asserts'
local function core_root() return require('moreau.isolation').realpath(require('moreau.core').root) end

local tmp = require('helpers.cli').tmpdir()

local cli = require 'helpers.cli'
local moreau, write, read = cli.moreau, cli.write, cli.read

-- a recipe that records its parameters and builds its methods as the shipped ones do
local probe = tmp .. '/probe.lua'
write(probe, [[
local ex = require 'moreau.experiment'
return {
  name = 'probe',
  params = {
    n = { type = 'int', default = 1, domain = 'int >= 1', help = 'a count' },
    flag = { type = 'bool', default = false, help = 'a switch' },
    methods = { type = 'list', default = { 'moreaugrad' }, domain = ex.METHODS, help = 'methods' },
  },
  method_options = true,
  run = function(p, rep)
    local list = ex.methods { preset = 'fast', only = p.methods, overrides = p }
    rep.results.n, rep.results.flag = p.n, p.flag
    rep.results.opts = list[1].opts
  end,
}
]])

describe('the command line', function()
  it('reads --key value as --key=value for parameters that take a value, and -h as --help', function()
    local args = options.normalize_args({ '--n', '3', '--flag', '--out', 'dir', '-h', '--tag=x' }, function(k)
      return k == 'n' or k == 'out' or k == 'tag'
    end)
    assert.are.same({ '--n=3', '--flag', '--out=dir', '--help', '--tag=x' }, args)
    -- a value-taking key with no value after it is refused, naming it
    assert.has_error(function() options.normalize_args({ '--n', '--flag' }, function() return true end) end,
      "parameter 'n' needs a value: --n=VALUE or --n VALUE")

    local out, rc = moreau(('run %q --n 4 --flag --out %q'):format(probe, tmp .. '/r1'))
    assert.are.equal(0, rc, out)
    local res = cjson.decode(read(tmp .. '/r1/results.json'))
    assert.are.equal(4, res.n)
    assert.is_true(res.flag)
    out, rc = moreau(('run %q -h'):format(probe))
    assert.are.equal(0, rc, out)
    assert.truthy(out:find('--n ', 1, true) and out:find('--KEY.OPTION=VALUE', 1, true), out)
  end)

  it('refuses a parameter that takes a value given none', function()
    local out, rc = moreau(('run %q --n'):format(probe))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find("parameter 'n' needs a value: --n=VALUE or --n VALUE", 1, true), out)
    out, rc = moreau('explain --image --methods=gradient')
    assert.are.equal(1, rc, out)
    assert.truthy(out:find("parameter 'image' needs a value", 1, true), out)
    out, rc = moreau('explain stray')
    assert.are.equal(1, rc, out)
    assert.truthy(out:find('unexpected argument stray (parameters are --key=value or --key value; ' ..
      '`moreau explain --help` lists them)', 1, true), out)
  end)

  it('refuses a stray word, naming it and where the parameters are listed', function()
    local out, rc = moreau(('run %q --flag yes'):format(probe))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find('unexpected argument yes (parameters are --key=value or --key value; `moreau run ' ..
      probe .. ' --help` lists them)', 1, true), out)
  end)

  it('suggests the nearest name for an unknown parameter or option', function()
    local r = recipe.load(probe)
    asserts.error_with(function() recipe.params(r, { flgg = 'true' }) end,
      "probe: unknown parameter 'flgg' (parameters: flag, methods, n) (did you mean 'flag'?)")
    asserts.error_with(function() options.fill('tool', { steps = 1, alpha = 2 }, { stpes = 3 }) end,
      "tool: unknown option 'stpes' (alpha, steps) (did you mean 'steps'?)")
    assert.are.equal('', options.nearest('zzzzzz', { 'alpha', 'steps' }))
  end)

  it('suggests the name for one given in another case, however short', function()
    local out, rc = moreau('explain --METHODS=gradient')
    assert.are.equal(1, rc, out)
    assert.truthy(out:find("explain: unknown parameter 'METHODS' (parameters: baseline, classes, fast, fit, image, index, " ..
      "label, max_bytes, methods, model, normalize, precision, scale, seed, softplus) (did you mean 'methods'?)", 1, true), out)
    assert.are.equal(" (did you mean 'T'?)", options.nearest('t', { 'K', 'T', 'm' }))
    assert.are.equal(" (did you mean 'fast'?)", options.nearest('FAST', { 'paper', 'fast' }))
    -- a value in another case too
    out, rc = moreau('explain --methods=Gradient')
    assert.are.equal(1, rc, out)
    assert.truthy(out:find("got 'Gradient' (did you mean 'gradient'?)", 1, true), out)
  end)

  it('refuses an option given twice, naming both values, before anything runs', function()
    local out, rc = moreau(('explain --T=5 --methods=gradient --T=7 --out=%q'):format(tmp .. '/twice'))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find('option --T is given twice: --T=5 and --T=7 (give it once)', 1, true), out)
    assert.is_nil(lfs.attributes(tmp .. '/twice'))
    -- `--key value` reads as --key=value, so it counts too; so does a dash for an underscore
    out, rc = moreau(('run %q --n 2 --n=3'):format(probe))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find('option --n is given twice: --n=2 and --n=3 (give it once)', 1, true), out)
    asserts.error_with(function() options.parse_args { '--memory_budget=1', '--memory-budget=2' } end,
      'option --memory_budget is given twice: --memory_budget=1 and --memory-budget=2 (give it once)')
    -- -h and --help together are still help
    out, rc = moreau('explain -h --help')
    assert.are.equal(0, rc, out)
  end)

  it('refuses an item repeated in a list, naming it, before anything runs', function()
    local out, rc = moreau(('explain --methods=gradient,smoothgrad,gradient --out=%q'):format(tmp .. '/rep'))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find("explain: parameter 'methods' lists 'gradient' twice (items 1 and 3); give each once",
      1, true), out)
    assert.is_nil(lfs.attributes(tmp .. '/rep'))
    -- numbers are items too: 1 and 1.0 are one value
    asserts.error_with(function() recipe.params(recipe.load('recipes/rho_eta_sweep.lua'), { rhos = '0.1,1,1.0' }) end,
      "rho_eta_sweep: parameter 'rhos' lists 1 twice (items 2 and 3); give each once")
  end)
end)

describe('method options on the command line', function()
  it('set one option of one method, typed by its domain, and are recorded for --from', function()
    local out, rc = moreau(('run %q --moreaugrad.T=7 --moreaugrad.accelerated=false --moreaugrad.output delta ' ..
      '--out=%q'):format(probe, tmp .. '/m1'))
    assert.are.equal(0, rc, out)
    local res = cjson.decode(read(tmp .. '/m1/results.json'))
    assert.are.equal(7, res.opts.T)
    assert.is_false(res.opts.accelerated)
    assert.are.equal('delta', res.opts.output)
    assert.are.equal(8, res.opts.m) -- the preset's, untouched
    assert.are.equal(7, res.opts.K) -- the preset's 30, lowered to T
    assert.are.equal(7, res.params['moreaugrad.T'])
    -- repeated from its results.json, with the same options
    out, rc = moreau(('run --trust --from=%q --out=%q'):format(tmp .. '/m1/results.json', tmp .. '/m2'))
    assert.are.equal(0, rc, out)
    assert.are.same(res.opts, cjson.decode(read(tmp .. '/m2/results.json')).opts)
    -- a parameter given again with --from is yours, not the recorded one (not "given twice")
    out, rc = moreau(('run --trust --from=%q --moreaugrad.T=5 --out=%q'):format(tmp .. '/m1/results.json',
      tmp .. '/m4'))
    assert.are.equal(0, rc, out)
    assert.are.equal(5, cjson.decode(read(tmp .. '/m4/results.json')).opts.T)
  end)

  it('for a method that does not run are refused, naming it and the methods that run', function()
    -- (a warning would scroll away among the progress lines, and results.json would record an unused option)
    local out, rc = moreau(('run %q --methods=moreaugrad --smoothgrad.samples=3 --moreaugrad.T=4 --out=%q')
      :format(probe, tmp .. '/m3'))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find('moreau run: --smoothgrad.samples=3 sets an option of smoothgrad, which does not run ' ..
      '(the methods that run: moreaugrad); add smoothgrad to --methods, or drop the option', 1, true), out)
    assert.falsy(out:find('moreaugrad.T', 1, true), out)
    -- the main job too, before anything runs (no method's line on stderr)
    out, rc = moreau(('explain --moreaugrad.T=5 --smoothgrad.samples=2 --methods=gradient --out=%q'):format(
      tmp .. '/m5'))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find('moreau explain: --moreaugrad.T=5, --smoothgrad.samples=2 set an option of moreaugrad, ' ..
      'smoothgrad, which do not run (the methods that run: gradient); add moreaugrad, smoothgrad to --methods, or ' ..
      'drop the options', 1, true), out)
    assert.falsy(out:find('sparsity', 1, true), out)
    -- the API says it the same way
    asserts.error_with(function()
      experiment.methods { only = { 'gradient' }, overrides = { ['deeplift.score'] = 'logit' } }
    end, '--deeplift.score=logit sets an option of deeplift, which does not run (the methods that ' ..
      'run: gradient); add deeplift to --methods, or drop the option')
  end)

  it('recorded for a method your --methods leaves out are not replayed by --from', function()
    local out, rc = moreau(('run %q --methods=moreaugrad,smoothgrad --smoothgrad.samples=3 --moreaugrad.T=4 ' ..
      '--out=%q'):format(probe, tmp .. '/f1'))
    assert.are.equal(0, rc, out)
    out, rc = moreau(('run --trust --from=%q --methods=moreaugrad --out=%q'):format(tmp .. '/f1/results.json',
      tmp .. '/f2'))
    assert.are.equal(0, rc, out)
    assert.truthy(out:find('moreau run --from: --smoothgrad.samples not replayed: smoothgrad is not among your ' ..
      '--methods=moreaugrad', 1, true), out)
    local res = cjson.decode(read(tmp .. '/f2/results.json'))
    assert.are.equal(4, res.opts.T)
    assert.is_nil(res.params['smoothgrad.samples'])
  end)

  it('apply to the entry they name only', function()
    local list = experiment.methods { preset = 'fast', overrides = { ['sparse_moreaugrad.eta'] = 0.05,
      ['smoothgrad.samples'] = 3 } }
    local by = {}
    for _, e in ipairs(list) do by[e.key] = e.opts end
    assert.are.equal(0.05, by.sparse_moreaugrad.eta)
    assert.are.equal(0.2, by.group_moreaugrad.eta)
    assert.are.equal(3, by.smoothgrad.samples)
    assert.are.equal(32, by.sparsified_smoothgrad.samples)
  end)

  it('are refused before anything runs: unknown method or option, wrong type, outside the domain', function()
    local function fails(arg, want)
      local out, rc = moreau(('run %q %s --out=%q'):format(probe, arg, tmp .. '/bad'))
      assert.are.equal(1, rc, out)
      assert.truthy(out:find(want, 1, true), arg .. ': ' .. out)
      -- refused with the parameters (no results folder), or when the methods are built (nothing explained)
      local res = read(tmp .. '/bad/results.json')
      assert.truthy(res == nil or cjson.decode(res).error, res)
    end
    fails('--moreaugrd.T=5', "probe: unknown method 'moreaugrd' in parameter 'moreaugrd.T' (methods: deeplift, " ..
      'gradient, group_moreaugrad, input_x_gradient, integrated_gradients, moreaugrad, smoothgrad, ' ..
      "sparse_moreaugrad, sparsified_smoothgrad) (did you mean 'moreaugrad'?)")
    fails('--moreaugrad.sigmaa=1', "probe: moreaugrad has no option 'sigmaa' (options: K, T, accelerated, chunk, " ..
      'eta, gamma, group_size, groups, m, memory_budget, output, reg, rho, score, seed, sigma, tol) ' ..
      "(did you mean 'sigma'?)")
    fails('--moreaugrad.T=2.5', "probe: parameter 'moreaugrad.T' expects an integer >= 1, got '2.5'")
    fails('--moreaugrad.T=0', "probe: parameter 'moreaugrad.T' must be an integer >= 1, got 0")
    fails('--moreaugrad.reg=l2', "probe: parameter 'moreaugrad.reg' must be one of 'none', 'l1', 'group', got 'l2'")
    fails('--moreaugrad.groups=1', "probe: option 'groups' of moreaugrad cannot be given on the command line " ..
      '(it takes a table)')
    -- checked with the others when the methods are built, before any image is explained
    fails('--moreaugrad.K=500', "methods.moreaugrad: option 'K' must be an integer in [1, T = 100], got 500")
  end)

  it('are not accepted by a recipe that does not build methods', function()
    local plain = tmp .. '/plain.lua'
    write(plain, "return { name = 'plain', params = {}, run = function() end }\n")
    local out, rc = moreau(('run %q --moreaugrad.T=5'):format(plain))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find("plain: unknown parameter 'moreaugrad.T' (it takes no parameters)", 1, true), out)
  end)
end)

describe('errors of a recipe', function()
  -- line 4 passes a number where a picture goes; line 5 trips over a library line
  local bad = tmp .. '/bad_recipe.lua'
  write(bad, [[
local moreau = require 'moreau'
return { name = 'bad_recipe', params = { which = { type = 'int', default = 1 } }, run = function(p, rep)
  local canvas = moreau.viz.heatmap(moreau.tensor.ones { 1, 1, 2, 2 })
  if p.which == 1 then rep:image('a.png', 5) end
  if p.which == 2 then canvas.save_png(nil, 'b.png') end
end }
]])

  it("point at the recipe's line that made the call", function()
    local out, rc = moreau(('run %q --out=%q'):format(bad, tmp .. '/e1'))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find(bad .. ':4: report:image: 5 is not a picture', 1, true), out)
    assert.are.equal(bad .. ':4: report:image: 5 is not a picture (a moreau.viz canvas: viz.heatmap, viz.grid, ...)',
      cjson.decode(read(tmp .. '/e1/results.json')).error)
  end)

  it("put the recipe's line first when moreau's own line raised, the library frames behind --traceback", function()
    -- a library chunk that fails on what a recipe chunk gave it
    local lib = assert(loadstring('return function(t) return t.field end', '@moreau/lib.lua'))()
    local rec = assert(loadstring('local lib = ...\nreturn function() local v = lib(nil) return v end', '@/r/recipe.lua'))(lib)
    local _, msg = xpcall(rec, function(e) return recipe.locate_error(e, '/r/recipe.lua') end)
    assert.are.equal("/r/recipe.lua:2: attempt to index local 't' (a nil value) [raised at moreau/lib.lua:1; " ..
      '--traceback shows every frame]', msg)
    -- a message that names the recipe already, or no file, stays as it is
    assert.are.equal('/r/recipe.lua:7: x', recipe.locate_error('/r/recipe.lua:7: x', '/r/recipe.lua'))
    assert.are.equal('explain: --index=99 is outside', recipe.locate_error('explain: --index=99 is outside', '/r/recipe.lua'))
    for _, flag in ipairs { '--traceback', '--threads=1 --traceback' } do
      out, rc = moreau(('%s run %q --which=2 --out=%q'):format(flag, bad, tmp .. '/e3'))
      assert.are.equal(1, rc, out)
      assert.truthy(out:find('stack traceback:', 1, true), out)
      assert.truthy(out:find(bad .. ':5:', 1, true), out)
    end
  end)
end)

describe('the guides in docs/', function()
  local function lua_blocks(path)
    local text = assert(read(core_root() .. '/' .. path))
    local blocks = {}
    for code in text:gmatch('```lua\n(.-)```') do blocks[#blocks + 1] = code end
    return blocks
  end

  it('docs/recipes.md: the example recipe runs as printed, with method options', function()
    local file = tmp .. '/two_methods.lua'
    write(file, lua_blocks('docs/recipes.md')[1])
    local out, rc = moreau(('run %q --images=1 --moreaugrad.T=5 --out=%q'):format(file, tmp .. '/guide1'))
    assert.are.equal(0, rc, out)
    local csv = read(tmp .. '/guide1/gini.csv')
    assert.truthy(csv:find('gradient,0,', 1, true) and csv:find('moreaugrad,0,', 1, true), csv)
    assert.are.equal(5, cjson.decode(read(tmp .. '/guide1/results.json')).params['moreaugrad.T'])
  end)

  it('docs/models.md: a network described in Lua loads a state_dict and is explained', function()
    local dir = tmp .. '/guide2'
    lfs.mkdir(dir)
    local blocks = lua_blocks('docs/models.md')
    -- the weights a PyTorch user would have saved, and the picture to explain
    local prep = blocks[1]:gsub("moreau%.models%.load%(net, 'mynet%.safetensors'%)[^\n]*",
      "moreau.models.save(net, 'mynet.safetensors')")
      .. "\nmoreau.data.save_png('shirt.png', moreau.tensor.rand { 1, 1, 40, 30 })\n"
    write(dir .. '/prep.lua', prep)
    write(dir .. '/guide.lua', blocks[1] .. '\n' .. blocks[2] ..
      "\nprint('map', table.concat(map:shape(), 'x'), map:isfinite())\n")
    local env = ('cd %q && LUA_PATH=%q luajit'):format(dir, core_root() .. '/bindings/?.lua;' ..
      core_root() .. '/bindings/?/init.lua;;')
    for _, script in ipairs { 'prep.lua', 'guide.lua' } do
      local p = io.popen(('%s %s 2>&1; echo "rc=$?"'):format(env, script))
      local out = p:read('*a')
      p:close()
      assert.truthy(out:find('rc=0', 1, true), script .. ': ' .. out)
      if script == 'guide.lua' then assert.truthy(out:find('map\t1x1x28x28\ttrue', 1, true), out) end
    end
  end)
end)

describe('long calls', function()
  local function run(mode)
    local script = tmp .. '/progress.lua'
    write(script, ([[
      local moreau = require 'moreau'
      moreau.set_progress(%q)
      local net = require('helpers.nets').softplus_net { seed = 1 }
      local x = moreau.tensor.rand { 2, 1, 6, 6 }
      moreau.methods.create('moreaugrad', { T = 20, m = 2, K = 10, reg = 'l1', eta = 0.1 }):explain(net, x, { 0, 1 })
      moreau.methods.create('smoothgrad', { samples = 30, chunk = 6 }):explain(net, x, { 0, 1 })
      print('done')
    ]]):format(mode))
    local p = io.popen(('LUA_PATH=%q luajit %q 2>&1'):format(package.path, script))
    local out = p:read('*a')
    p:close()
    return out
  end

  it('report their progress on stderr when asked: a line at each tenth of the work', function()
    local out = run('lines')
    assert.truthy(out:find('  Sparse MoreauGrad: iteration 2/20  [%d.]+/s  %d+ s left\n'), out)
    assert.truthy(out:find('  Sparse MoreauGrad: iteration 20/20  ', 1, true), out)
    assert.truthy(out:find('  SmoothGrad: copy 60/60  ', 1, true), out)
    assert.truthy(out:find('done', 1, true), out)
  end)

  it('count a resumed solver on from where it stopped', function()
    local script = tmp .. '/resume.lua'
    write(script, [[
      local moreau = require 'moreau'
      moreau.set_progress('lines')
      local net = require('helpers.nets').softplus_net { seed = 1 }
      local s = moreau.prox.solver(net, moreau.tensor.rand { 1, 1, 6, 6 }, { 0 }, { T = 20, m = 2, K = 10 })
      for _ = 1, 10 do s:step() end
      s:run()
    ]])
    local p = io.popen(('LUA_PATH=%q luajit %q 2>&1'):format(package.path, script))
    local out = p:read('*a')
    p:close()
    assert.truthy(out:find('  MoreauGrad: iteration 11/20  ', 1, true), out)
    assert.truthy(out:find('  MoreauGrad: iteration 20/20  ', 1, true), out)
    assert.falsy(out:find('iteration [1-9]/20'), out)
  end)

  it('follow --progress and MOREAU_PROGRESS on the command line', function()
    local out, rc = moreau('--progress=loud info')
    assert.are.equal(2, rc, out)
    assert.truthy(out:find('moreau: --progress (or MOREAU_PROGRESS) must be off, tty or lines, got loud', 1, true), out)
    out, rc = moreau(('--progress=lines explain --methods=moreaugrad --moreaugrad.T=10 --moreaugrad.m=1 ' ..
      '--out=%q'):format(tmp .. '/pl'))
    assert.are.equal(0, rc, out)
    assert.truthy(out:find('  MoreauGrad: iteration 10/10  ', 1, true), out)
  end)

  it('stay quiet by default, and in tty mode when stderr is not a terminal', function()
    for _, mode in ipairs { 'off', 'tty' } do
      local out = run(mode)
      assert.are.equal('done\n', out:gsub('^%s+', ''))
    end
    assert.has_error(function() require('moreau').set_progress('loud') end,
      "moreau.set_progress: mode must be 'off', 'tty' or 'lines', got 'loud'")
  end)
end)

describe('explain --image', function()
  it('says what it did to a picture of another size, aspect and colour, here and on the page', function()
    local photo = tmp .. '/photo.png'
    require('moreau.data').save_png(photo, require('moreau.tensor').rand({ 1, 3, 40, 30 }, { seed = 3 }))
    local out, rc = moreau(('explain --image=%q --methods=gradient --out=%q'):format(photo, tmp .. '/img1'))
    assert.are.equal(0, rc, out)
    -- (the picture is 30 wide and 40 high: sizes are said width first, each side named)
    local said = ('explain: %s is 30 wide × 40 high with 3 channels; resnet_fmnist takes 28 wide × 28 high with ' ..
      '1 channel: converted to grey (BT.601 luma); resized to 28 wide × 37 high keeping its aspect, then the ' ..
      'centre 28 wide × 28 high cut out (--fit=stretch stretches instead)'):format(photo)
    assert.truthy(out:find(said, 1, true), out)
    assert.truthy(read(tmp .. '/img1/index.html'):find('resized to 28 wide × 37 high keeping its aspect', 1, true))
    out, rc = moreau(('explain --image=%q --fit=stretch --methods=gradient --out=%q'):format(photo, tmp .. '/img2'))
    assert.are.equal(0, rc, out)
    assert.truthy(out:find('converted to grey (BT.601 luma); resized to 28 wide × 28 high\n', 1, true), out)
    -- a transparent picture: its alpha is dropped, and that is said too
    local rgba = tmp .. '/rgba.png'
    require('moreau.data').save_png(rgba, require('moreau.tensor').rand({ 1, 4, 28, 28 }, { seed = 4 }))
    out, rc = moreau(('explain --image=%q --methods=gradient --out=%q'):format(rgba, tmp .. '/img3'))
    assert.are.equal(0, rc, out)
    assert.truthy(out:find('is 28 wide × 28 high with 4 channels; resnet_fmnist takes 28 wide × 28 high with ' ..
      '1 channel: converted to grey (BT.601 ' ..
      'luma), its alpha channel dropped\n', 1, true), out)
  end)
end)

describe('explain --image of a picture far wider or taller than the input', function()
  it('refuses the crop with the sizes and suggests --fit=stretch, never an internal message', function()
    -- 1200 wide × 1 high (and its transpose): covering 28 × 28 keeping the aspect needs 33600 pixels
    -- a side, over the 32768 the loader resizes to
    for _, c in ipairs { { 1200, 1, '33600 wide × 28 high' }, { 1, 1200, '28 wide × 33600 high' } } do
      local pgm = ('%s/strip_%dx%d.pgm'):format(tmp, c[1], c[2])
      write(pgm, ('P5 %d %d 255\n'):format(c[1], c[2]) .. ('\128'):rep(1200))
      local out, rc = moreau(('explain --image=%q --methods=gradient --out=%q'):format(pgm, tmp .. '/strip'))
      assert.are.equal(1, rc, out)
      assert.truthy(out:find(('moreau explain: --image=%s: --fit=crop would resize %s (%d wide × %d high) to %s ' ..
        'to cover 28 wide × 28 high keeping its aspect, over the 32768 pixels a side the loader resizes to; its ' ..
        'centre would keep 0.0833 %% of the picture: --fit=stretch resizes the whole picture to 28 wide × 28 high')
        :format(pgm, pgm, c[1], c[2], c[3]), 1, true), out)
      assert.falsy(out:find('mr_image_load', 1, true), out)
      -- stretched, it runs
      out, rc = moreau(('explain --image=%q --fit=stretch --methods=gradient --out=%q'):format(pgm,
        tmp .. '/strip_s'))
      assert.are.equal(0, rc, out)
      assert.truthy(out:find(('is %d wide × %d high with 1 channel; resnet_fmnist takes 28 wide × 28 high with ' ..
        '1 channel: resized to 28 wide × 28 high\n'):format(c[1], c[2]), 1, true), out)
      os.execute(('rm -rf %q'):format(tmp .. '/strip_s'))
    end
    -- data.load_image says it in its own terms
    asserts.error_with(function()
      require('moreau.data').load_image(tmp .. '/strip_1200x1.pgm', { channels = 1, size = { 28, 28 }, fit = 'crop' })
    end, "to 33600 wide × 28 high to cover 28 wide × 28 high keeping its aspect", "fit = 'stretch' resizes the whole")
  end)
end)

describe('options that conflict or do nothing', function()
  it('are refused before anything runs, naming both', function()
    local photo = tmp .. '/conflict.pgm'
    write(photo, 'P5 28 28 255\n' .. ('\64'):rep(28 * 28))
    local out, rc = moreau(('explain --index=3 --image=%q --methods=gradient --out=%q'):format(photo, tmp .. '/c1'))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find(('moreau explain: --index=3 and --image=%s both name the image to explain: --index ' ..
      'picks a Fashion-MNIST test image, --image a file; give one'):format(photo), 1, true), out)
    assert.falsy(out:find('sparsity', 1, true), out)
    out, rc = moreau(('explain --fit=stretch --methods=gradient --out=%q'):format(tmp .. '/c2'))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find("moreau explain: --fit=stretch applies to --image only (how a file of another size " ..
      "is fitted to the model's input); the Fashion-MNIST test image 0 has the model's size: drop --fit, or give " ..
      "--image", 1, true), out)
    assert.falsy(out:find('sparsity', 1, true), out)
  end)
end)

describe("'all' in a list of methods", function()
  it('is a valid name, listed in the errors, meaning every method alone and refused with others', function()
    local out, rc = moreau('explain --methods=al')
    assert.are.equal(1, rc, out)
    assert.truthy(out:find("moreau explain: parameter 'methods' item 1 must be one of 'all', 'gradient', " ..
      "'input_x_gradient',", 1, true), out)
    out, rc = moreau(('explain --methods=all,gradient --out=%q'):format(tmp .. '/all1'))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find("moreau explain: parameter 'methods' lists 'all' (item 1) with other names; 'all' " ..
      "means every one: give it alone, or list only the ones you want", 1, true), out)
    assert.is_nil(lfs.attributes(tmp .. '/all1'))
    -- alone it is every method, as the empty default is
    local every = experiment.methods { preset = 'fast' }
    local all = experiment.methods { preset = 'fast', only = { 'all' } }
    assert.are.equal(9, #all)
    for i = 1, #every do assert.are.equal(every[i].key, all[i].key) end
    asserts.error_with(function() experiment.methods { only = { 'gradient', 'all' } } end,
      "experiment.methods: option 'only' lists 'all' with other methods (gradient, all); 'all' runs every " ..
      "method: give it alone, or list only the methods to run")
  end)
end)

describe('error messages of the command', function()
  it('name the command once: a recipe\'s own prefix is replaced, not doubled', function()
    local cli_mod = require 'moreau.cli'
    assert.are.equal('moreau explain: --index=1 is bad', cli_mod.error_line('explain', 'explain: --index=1 is bad'))
    assert.are.equal('moreau train: x', cli_mod.error_line('train', 'train_fmnist: x'))
    assert.are.equal('moreau bench: x', cli_mod.error_line('bench', 'bench: x'))
    assert.are.equal('moreau run: explain: x', cli_mod.error_line('run', 'explain: x'))
    assert.are.equal('moreau: x', cli_mod.error_line('explain', 'moreau: x'))
    local out, rc = moreau('explain --index=-2')
    assert.are.equal(1, rc, out)
    assert.truthy(out:find("moreau explain: parameter 'index' must be an integer >= 0, got -2", 1, true), out)
    assert.falsy(out:find('explain: explain:', 1, true), out)
  end)
end)

describe('the options before the command', function()
  local function threads(s) return tonumber(s:match('threads: (%d+)')) end
  it('read as a command\'s: --key value, -h, each once, unknown names refused with the nearest', function()
    local out, rc = moreau('--threads 1 info')
    assert.are.equal(0, rc, out)
    assert.are.equal(1, threads(out), out)
    out, rc = moreau('--threads=1 --threads=2 info')
    assert.are.equal(2, rc, out)
    assert.truthy(out:find('moreau: option --threads is given twice: --threads=1 and --threads=2 (give it once)',
      1, true), out)
    out, rc = moreau('--threads 1 --threads=2 info')
    assert.are.equal(2, rc, out)
    assert.truthy(out:find('option --threads is given twice', 1, true), out)
    out, rc = moreau('--Threads=2 info')
    assert.are.equal(2, rc, out)
    assert.truthy(out:find("moreau: unknown option '--Threads' before the command (options there: --help, " ..
      "--progress, --threads, --traceback, --version, -h) (did you mean '--threads'?)", 1, true), out)
    out, rc = moreau('--thread 2 info')
    assert.are.equal(2, rc, out)
    assert.truthy(out:find("(did you mean '--threads'?)", 1, true), out)
    out, rc = moreau('--threads')
    assert.are.equal(2, rc, out)
    assert.truthy(out:find("moreau: parameter 'threads' needs a value: --threads=VALUE or --threads VALUE", 1,
      true), out)
    out, rc = moreau('--traceback=yes info')
    assert.are.equal(2, rc, out)
    assert.truthy(out:find("moreau: option '--traceback' takes no value, got --traceback=yes", 1, true), out)
    out, rc = moreau('--progress off -h')
    assert.are.equal(0, rc, out)
    assert.truthy(out:find('usage: moreau', 1, true), out)
    out, rc = moreau('--threads=2 --version')
    assert.are.equal(0, rc, out)
    assert.truthy(out:find('moreau ' .. require('moreau.core').version(), 1, true), out)
    out, rc = moreau('Info')
    assert.are.equal(2, rc, out)
    assert.truthy(out:find("moreau: unknown command 'Info' (commands: bench, explain, info, merge, repl, run, train) " ..
      "(did you mean 'info'?)", 1, true), out)
  end)
end)

describe('moreau info', function()
  it('says whether the thread team is adaptive, and the precision with bf16 available or why not', function()
    local moreau_api = require 'moreau'
    local out, rc = moreau('info')
    assert.are.equal(0, rc, out)
    assert.truthy(out:find('threads: %d+ %(adaptive: fewer while other processes keep cores busy; ' ..
      'MOREAU_ADAPTIVE_THREADS=0 fixes it%)\n'), out)
    local p = io.popen(('MOREAU_ADAPTIVE_THREADS=0 MOREAU_LIB=%q %q/scripts/moreau info 2>&1'):format(
      require('moreau.core').lib_path, require('moreau.core').root))
    local fixed = p:read('*a')
    p:close()
    assert.truthy(fixed:find('threads: %d+ %(fixed: the team is always that size%)\n'), fixed)
    -- bf16 as this machine has it: available, or the engine's reason
    local ok, why = pcall(moreau_api.set_precision, 'bf16')
    moreau_api.set_precision('fp32')
    if ok then
      assert.truthy(out:find('precision: fp32 (bf16 available: --precision=bf16)\n', 1, true), out)
    else
      assert.truthy(out:find('precision: fp32 (bf16 not available: ' .. tostring(why):gsub('^[^\n]-:%d+: ', ''),
        1, true), out)
    end
  end)
end)

describe('moreau bench list options', function()
  it('refuse an item given twice, as a recipe list does, before anything runs', function()
    for _, c in ipairs { { '--models=resnet_fmnist,resnet_fmnist', "option 'models' lists 'resnet_fmnist' twice " ..
      "(items 1 and 2)" }, { '--only=precision,precision', "option 'only' lists 'precision' twice (items 1 and 2)" },
      { '--batches=1,16,1.0', "option 'batches' lists '1.0' twice (items 1 and 3)" } } do
      local out, rc = moreau('bench --torch=off ' .. c[1])
      assert.are.equal(1, rc, out)
      assert.truthy(out:find('moreau bench: ' .. c[2] .. '; give each once', 1, true), c[1] .. ': ' .. out)
      assert.falsy(out:find('==', 1, true), out)
    end
  end)
end)
