-- The escape suite of `moreau run --sandbox` (docs/sandbox.md): one hostile
-- recipe per kind of escape, each asserting that it fails — nothing written
-- outside the results folder, no command run on the host, nothing read that
-- was not lent, no host state changed. Two groups:
--   * recipes through the whole path (`moreau run --sandbox`), both walls;
--   * payloads with every power of LuaJIT (ffi, os.execute, io.open), run
--     confined exactly as a recipe is (moreau.isolation.command): what a
--     recipe that broke the Lua wall, for example by corrupting memory through
--     a raw pointer, could still do. The operating system's wall must hold alone.
local ffi = require 'ffi'
local lfs = require 'lfs'
local cjson = require 'cjson'
local core = require 'moreau.core'
local isolation = require 'moreau.isolation'

local root = isolation.realpath(core.root)
local tmp = require('helpers.cli').tmpdir()
tmp = isolation.realpath(tmp)

local cli = require 'helpers.cli'
local moreau, write, read = cli.moreau, cli.write, cli.read

-- A host file the recipes try to read, and a variable they try to see.
local secret_dir = tmp .. '/host-secrets'
lfs.mkdir(secret_dir)
write(secret_dir .. '/token.txt', 'SECRET-7f3a')
ffi.cdef 'int setenv(const char *name, const char *value, int overwrite);'
ffi.C.setenv('MOREAU_TEST_SECRET', 'SECRET-ENV-91c2', 1)

local n = 0
--- Runs `body` as a sandboxed recipe's run function; returns output, exit code, results folder.
local function run_recipe(body, opts)
  n = n + 1
  local path = ('%s/hostile%d.lua'):format(tmp, n)
  write(path, (opts and opts.top or '') ..
    ("\nreturn { name = 'hostile', run = function(p, rep)\n%s\nend }\n"):format(body))
  local out_dir = ('%s/out%d'):format(tmp, n)
  local out, rc = moreau(('run --sandbox %s %q --out=%q'):format(opts and opts.flags or '', path, out_dir))
  return out, rc, out_dir
end

--- Runs a LuaJIT payload (full powers) confined as a recipe is; returns its stdout and exit status.
local function run_payload(code, opts)
  n = n + 1
  local path = ('%s/payload%d.lua'):format(tmp, n)
  local out_dir = ('%s/pout%d'):format(tmp, n)
  lfs.mkdir(out_dir)
  write(path, 'io.stdout:setvbuf("no")\n' .. code)
  opts = opts or {}
  opts.recipe, opts.out = path, out_dir
  local argv = isolation.command(opts, { isolation.luajit(), path })
  local log = out_dir .. '/stdout.txt'
  -- the payload's output goes to a file inside its folder
  local quoted = {}
  for i, a in ipairs(argv) do quoted[i] = ("'%s'"):format(a:gsub("'", "'\\''")) end
  local rc = os.execute(table.concat(quoted, ' ') .. ' > ' .. log .. ' 2>&1')
  if type(rc) == 'number' and rc > 255 then rc = rc / 256 end
  return read(log) or '', rc, out_dir
end

describe('the sandbox: hostile recipes through moreau run --sandbox', function()
  it('a replaced string.sub and string metatable do not let a write leave the folder', function()
    local target = tmp .. '/via-string.png'
    local out = run_recipe(([[
      -- the write guard compares strings: make every comparison say "inside"
      local inside = rep.dir:gsub('^%%./', ''):gsub('/+$', '') .. '/'
      local s = getmetatable('').__index
      s.sub = function() return inside end
      s.find = function() return nil end
      pcall(function() moreau.viz.canvas(2, 2):save_png(%q) end)
    ]]):format(target), { top = "local moreau = require 'moreau'" })
    assert.is_nil(read(target), out)
  end)

  it('code at the top of the file runs under the write guard and the walls', function()
    local target = tmp .. '/top-level.png'
    local out, rc = run_recipe('', { top = ("require('moreau').viz.canvas(2, 2):save_png(%q)"):format(target) })
    assert.are.equal(1, rc, out)
    assert.truthy(out:find("sandbox: writing '" .. target .. "' is not allowed", 1, true), out)
    assert.is_nil(read(target))
  end)

  it('a report redirected to another folder writes nothing there', function()
    local elsewhere = tmp .. '/redirected'
    lfs.mkdir(elsewhere)
    local out = run_recipe(([[
      rep.dir = %q
      rep.results.injected = true
      pcall(function() rep:note('x') end)
      pcall(function() rep:table('t.csv', {'a'}, {{1}}) end)
    ]]):format(elsewhere))
    assert.is_nil(lfs.attributes(elsewhere .. '/results.json'), out)
    assert.is_nil(lfs.attributes(elsewhere .. '/index.html'), out)
    assert.is_nil(lfs.attributes(elsewhere .. '/t.csv'), out)
  end)

  it("an error object's __tostring runs confined too", function()
    local target = tmp .. '/tostring.txt'
    local out, rc = run_recipe(([[
      error(setmetatable({}, { __tostring = function()
        pcall(function() require('moreau').viz.canvas(2, 2):save_png(%q) end)
        return 'hostile error'
      end }))
    ]]):format(target))
    assert.are.equal(1, rc, out)
    assert.is_nil(read(target))
  end)

  it("a recipe's monkey-patches end with its process", function()
    local _, rc1 = run_recipe([[
      local metrics = require('moreau').metrics
      metrics.spearman = function() return 1 end
      require('moreau.tensor').Tensor.sum = function() return 42 end
    ]])
    assert.are.equal(0, rc1)
    local out, rc2 = run_recipe([[
      local moreau = require 'moreau'
      local a = moreau.tensor.from({ 1, 2, 3 }, { 1, 3 })
      local b = moreau.tensor.from({ 3, 2, 1 }, { 1, 3 })
      print('spearman', moreau.metrics.spearman(a, b)[1], 'sum', a:sum())
    ]])
    assert.are.equal(0, rc2, out)
    assert.truthy(out:find('spearman%s+%-1%s+sum%s+6'), out)
  end)

  it('sees no environment variable of the caller and no file it was not lent', function()
    local out, rc = run_recipe(([[
      print('env', tostring(os.getenv('MOREAU_TEST_SECRET')), tostring(os.getenv('HOME')))
      local ok, err = pcall(function() return require('moreau').data.load_image(%q) end)
      print('image', ok, err)
    ]]):format(secret_dir .. '/token.txt'))
    assert.are.equal(0, rc, out)
    assert.truthy(out:find('env\tnil\t/tmp', 1, true), out)
    assert.falsy(out:find('SECRET', 1, true), out)
    assert.truthy(out:find('image\tfalse', 1, true), out)
  end)

  it('a link planted in the results folder does not carry a write out', function()
    local target = tmp .. '/link-target.png'
    write(target, 'original')
    local out_dir = tmp .. '/linked'
    lfs.mkdir(out_dir)
    lfs.link(target, out_dir .. '/pic.png', true)
    local path = tmp .. '/linker.lua'
    write(path, "return { name = 'linker', run = function(p, rep) " ..
      "rep:image('pic.png', require('moreau').viz.canvas(2, 2)) end }")
    local out, rc = moreau(('run --sandbox %q --out=%q'):format(path, out_dir))
    assert.are.equal(1, rc, out)
    assert.are.equal('original', read(target))
  end)

  it('stops a recipe that runs past its CPU time, with a message naming the limit', function()
    -- the wall-clock limit (2x the CPU seconds by default) is raised, so that
    -- on a busy machine, where 1 CPU second takes longer, the CPU limit ends it
    local out, rc = run_recipe('while true do end', { flags = '--cpu-seconds=1 --wall-seconds=120' })
    assert.are.equal(1, rc, out)
    assert.truthy(out:find('the recipe ran out of CPU time (limit 1 s', 1, true), out)
  end)

  it('a recipe file name with dots and slashes names a folder under results/ only', function()
    local dir = tmp .. '/cwd'
    lfs.mkdir(dir)
    write(dir .. '/..evil..lua', "return { run = function() end }")
    local p = io.popen(('cd %q && MOREAU_LIB=%q %q/scripts/moreau run --sandbox ./..evil..lua 2>&1; echo "rc=$?"')
      :format(dir, core.lib_path, root))
    local out = p:read('*a')
    p:close()
    assert.truthy(out:find('rc=0', 1, true), out)
    local names = {}
    for f in lfs.dir(dir .. '/results') do if f ~= '.' and f ~= '..' then names[#names + 1] = f end end
    assert.are.equal(1, #names, out)
    assert.truthy(names[1]:match('^__evil_%-%d+%-%d+$'), names[1])
  end)

  it('refuses limits it cannot read, before running anything', function()
    local out, rc = moreau('run --sandbox --memory=lots ' .. tmp .. '/nothing.lua')
    assert.are.equal(1, rc, out)
    assert.truthy(out:find('--memory must be a byte count such as 8G, 512M or 1048576, got lots', 1, true), out)
    out, rc = moreau('run --confined ' .. tmp .. '/nothing.lua')
    assert.are.equal(1, rc, out)
    assert.truthy(out:find('--confined is what --sandbox runs inside its confined process', 1, true), out)
  end)
end)

describe('the sandbox: memory stays intact whatever a recipe does with the objects it holds', function()
  it('freeing a borrowed parameter, or a batch a solver reads, leaves the engine nothing freed to read', function()
    local out, rc = run_recipe([[
      local moreau = require 'moreau'
      local T = moreau.tensor
      local net = moreau.models.pretrained('resnet_fmnist')
      local w = net:params()[1].tensor
      w.owner = nil                      -- no field holds the owner: nothing to clear
      w:free()                           -- lets go of the borrowed view only
      local y = net:forward(T.rand { 1, 1, 28, 28 })
      print('forward', y:isfinite(), y:numel())
      local x = T.rand { 1, 1, 28, 28 }
      local s = moreau.prox.solver(net, x, { 0 }, { T = 2, m = 1, K = 2, reg = 'l1' })
      print('free x', pcall(x.free, x))
      s.x = nil
      for i = 1, 300000 do local t = { i, tostring(i) } end -- the collector runs
      print('step', pcall(s.step, s))
    ]])
    assert.are.equal(0, rc, out)
    assert.truthy(out:find('forward\ttrue\t10', 1, true), out)
    assert.truthy(out:find("free x\tfalse\t[^\n]*tensor:free: the tensor is in use by a moreau solver %(prox.solver%)"), out)
    assert.truthy(out:find('step\ttrue', 1, true), out)
  end)

  it('a replaced tensor method cannot make moreau size a buffer wrong', function()
    local out, rc = run_recipe([[
      local T, metrics = require 'moreau.tensor', require 'moreau.metrics'
      local a, b = T.rand { 20000, 2 }, T.rand { 20000, 2 }
      T.Tensor.size = function() return 1 end
      T.Tensor.numel = function() return 1 end
      T.Tensor.shape = function() return { 1, 1 } end
      local d = metrics.normalized_distance(a, b)
      print('items', #d)
      local t = {}
      for i = 1, 100000 do t[i] = { i } end
      print('heap intact')
    ]])
    assert.are.equal(0, rc, out)
    assert.truthy(out:find('items\t20000', 1, true), out)
    assert.truthy(out:find('heap intact', 1, true), out)
  end)

  it('a network parameter or input shape longer than 4 dims is refused, not copied past its buffer', function()
    local out, rc = run_recipe([[
      local nn = require 'moreau.nn'
      local b = nn.builder { 4 }
      local shape = {}
      for i = 1, 64 do shape[i] = 0x4141414141 end
      print('param', pcall(b.param, b, 'w', shape, 'weight'))
      print('input', pcall(nn.builder, shape))
    ]])
    assert.are.equal(0, rc, out)
    assert.truthy(out:find('param\tfalse\t[^\n]*builder:param: the shape is a table of 1..4 dims'), out)
    assert.truthy(out:find('input\tfalse\t[^\n]*nn.builder: the shape is a table of 1..3 dims'), out)
  end)

  it("sees its own copy through the strings' metatable, not the host's string table", function()
    local out, rc, dir = run_recipe([[
      local mt = getmetatable('')
      mt.__index.sub = function() return 'x' end
      mt.__index.find = function() return nil end
      print('own copy', string.sub('abc', 1, 1), ('abc'):sub(1, 1))
      local T = require 'moreau.tensor'
      print('guard', pcall(T.save, '../escaped.safetensors', T.zeros { 1 }))
    ]])
    assert.are.equal(0, rc, out)
    assert.truthy(out:find('own copy\tx\ta', 1, true), out)
    assert.truthy(out:find("guard\tfalse\t[^\n]*writing '../escaped.safetensors' is not allowed"), out)
    assert.is_nil(read(dir .. '/../escaped.safetensors'))
  end)
end)

describe('the sandbox: what the new-user trial found', function()
  it("a results.json's parameter names are parameter names: not 'out=DIR', not a dash for an underscore", function()
    for _, key in ipairs { 'out=' .. tmp .. '/planted', 'data-dir', '--out', 'a b' } do
      write(tmp .. '/keys.json', cjson.encode { recipe = 'explain', params = { [key] = 'x' } })
      local out, rc = moreau(('run --from=%q --out=%q'):format(tmp .. '/keys.json', tmp .. '/k1'))
      assert.are.equal(1, rc, out)
      assert.truthy(out:find('records a parameter named', 1, true), out)
      out, rc = moreau(('run --sandbox --from=%q'):format(tmp .. '/keys.json'))
      assert.are.equal(1, rc, out)
    end
    assert.is_nil(lfs.attributes(tmp .. '/planted'))
    assert.is_nil(lfs.attributes(tmp .. '/k1/results.json'))
  end)

  it("the caller's environment is nowhere inside, not even in the sandbox's init process", function()
    local out, rc = run_payload([[
      for _, pid in ipairs { '1', 'self' } do
        local f = io.open('/proc/' .. pid .. '/environ', 'rb')
        print(pid, f and f:read('*a'):gsub('%z', ' ') or 'unreadable')
        if f then f:close() end
      end
    ]])
    assert.are.equal(0, rc, out)
    assert.falsy(out:find('SECRET-ENV-91c2', 1, true), out)
  end)

  it('a replaced rep.path or rep.dir moves no write out of the folder; / and /dev are read-only', function()
    local out, rc, dir = run_recipe(([[
      rep.path = function(_, f) return %q .. '/' .. f end
      rep.dir = %q
      rep:table('moved.csv', { 'x' }, { { 1 } })
      print('shm', pcall(require('moreau.tensor').save, '/dev/shm/fill', require('moreau.tensor').zeros { 1 }))
    ]]):format(tmp, tmp))
    assert.are.equal(0, rc, out)
    assert.is_nil(read(tmp .. '/moved.csv'))
    assert.truthy(read(dir .. '/moved.csv'), out)
    local pout, prc = run_payload([[
      for _, p in ipairs { '/planted', '/dev/shm/planted', '/dev/planted' } do
        local f = io.open(p, 'w')
        print(p, f ~= nil)
        if f then f:close() end
      end
      local f = io.open('/dev/null', 'w')
      print('null', f ~= nil and f:write('x') ~= nil)
    ]])
    assert.are.equal(0, prc, pout)
    for _, p in ipairs { '/planted', '/dev/shm/planted', '/dev/planted' } do
      assert.truthy(pout:find(p .. '\tfalse', 1, true), pout)
    end
    assert.truthy(pout:find('null\ttrue', 1, true), pout)
  end)

  it('ends with the process that started it', function()
    local beat = tmp .. '/beat'
    lfs.mkdir(beat)
    write(tmp .. '/heartbeat.lua', [[
      return { name = 'heartbeat', run = function(p, rep)
        local T = require 'moreau.tensor'
        for i = 1, 600 do
          T.save(rep:path('beat.safetensors'), T.full({ 1 }, i))
          local t = os.clock() while os.clock() - t < 0.1 do end
        end
      end }
    ]])
    -- the caller: a shell that starts the run in the background, then is killed
    local p = io.popen(('MOREAU_LIB=%q %q/scripts/moreau run --sandbox %q --out=%q >/dev/null 2>&1 & echo $!')
      :format(core.lib_path, core.root, tmp .. '/heartbeat.lua', beat))
    local pid = p:read('*l')
    p:close()
    local function beats()
      return lfs.attributes(beat .. '/beat.safetensors', 'modification') or 0
    end
    local t0 = os.time()
    while beats() == 0 and os.time() - t0 < 60 do os.execute('sleep 0.2') end
    assert.truthy(beats() > 0, 'the run started')
    -- kill the luajit process the command runs as (scripts/moreau execs it)
    os.execute('kill -9 ' .. pid)
    os.execute('sleep 2')
    local size = lfs.attributes(beat .. '/beat.safetensors', 'change')
    os.execute('sleep 2')
    assert.are.equal(size, lfs.attributes(beat .. '/beat.safetensors', 'change'), 'the run still writes')
  end)

  it('prints through io.stderr and io.stdout as the shipped recipes do', function()
    local out, rc = run_recipe([[
      io.stderr:write('to stderr\n')
      io.stdout:write('to stdout\n'):flush()
      print('read', pcall(function() return io.stdin end))
    ]])
    assert.are.equal(0, rc, out)
    assert.truthy(out:find('to stderr', 1, true) and out:find('to stdout', 1, true), out)
    assert.truthy(out:find('read\tfalse\t[^\n]*io.stdin is not available'), out)
  end)

  it('repeats a run whose list parameter was left at its empty default', function()
    write(tmp .. '/lists.lua', "return { name = 'lists', params = { xs = { type = 'list', default = {} }, " ..
      "n = { type = 'int', default = 1 } }, run = function(p, rep) rep.results.count = #p.xs end }\n")
    write(tmp .. '/empty-list.json', cjson.encode { recipe = 'lists', recipe_file = tmp .. '/lists.lua',
      params = { xs = setmetatable({}, cjson.array_mt), n = 3 } })
    local out, rc = moreau(('run --trust --from=%q --out=%q'):format(tmp .. '/empty-list.json', tmp .. '/el'))
    assert.are.equal(0, rc, out)
    local res = cjson.decode(read(tmp .. '/el/results.json'))
    assert.are.equal(3, res.params.n)
    assert.are.equal(0, res.count)
  end)

  it('leaves no results folder when it refuses a run before the recipe writes anything', function()
    local before = {}
    for name in lfs.dir(root .. '/results') do before[name] = true end
    local out, rc = moreau(('run --sandbox %q --no-such-param=1'):format(root .. '/recipes/explain.lua'))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find("unknown parameter 'no_such_param'", 1, true), out)
    for name in lfs.dir(root .. '/results') do assert.truthy(before[name], 'left behind: ' .. name) end
    out, rc = moreau(('run --sandbox --memory=300M %q'):format(root .. '/recipes/explain.lua'))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find('moreau run: --memory must be at least 1G', 1, true), out)
  end)
end)

describe('the sandbox: the terminal', function()
  it("shows a recipe's escape sequences as text, not as commands to the terminal", function()
    local out, rc = run_recipe([[
      io.write('clip\27]52;c;ZXZpbA==\7 title\27]0;owned\7 bell\7 ok\r\n')
      print('tab\tkept')
    ]])
    assert.are.equal(0, rc, out)
    assert.falsy(out:find('\27', 1, true), out)
    assert.falsy(out:find('\7', 1, true), out)
    assert.truthy(out:find('clip?]52;c;ZXZpbA==? title?]0;owned? bell? ok\r\n', 1, true), out)
    assert.truthy(out:find('tab\tkept', 1, true), out)
  end)
end)

describe('the sandbox: the results page is drawn by moreau, not by the recipe', function()
  it('whatever the recipe does to its report, its page.json or index.html', function()
    local outside = tmp .. '/page-outside.html'
    write(outside, 'untouched')
    local out, rc, dir = run_recipe(([[
      rep.html = function() return '<script>alert(1)</script>' end
      rep:note('<script>alert(2)</script>')
    ]]), {})
    assert.are.equal(0, rc, out)
    local page = read(dir .. '/index.html')
    assert.falsy(page:find('<script', 1, true), page)
    assert.truthy(page:find('&lt;script&gt;alert(2)&lt;/script&gt;', 1, true), page)
    assert.truthy(page:find('Content-Security-Policy', 1, true), page)
    assert.are.equal('untouched', read(outside))
  end)

  it('a link or malformed page data left in the folder changes nothing outside it', function()
    local outside = tmp .. '/link-target.html'
    write(outside, 'untouched')
    local out, rc, dir = run_payload(([[
      os.remove('index.html')
      os.execute('ln -s %s index.html')
      local f = io.open('page.json', 'w') f:write('{"name": "x", "items": [{"kind": "figure", "images": 5}]}') f:close()
      f = io.open('results.json', 'w') f:write('{"error": "<b>bold</b>", "params": 7}') f:close()
    ]]):format(outside))
    assert.are.equal(0, rc, out)
    local report = require 'moreau.report'
    isolation.replace_file(dir, 'index.html', report.render(dir))
    assert.are.equal('untouched', read(outside))
    assert.are.equal('file', lfs.symlinkattributes(dir .. '/index.html', 'mode'))
    local page = read(dir .. '/index.html')
    assert.truthy(page:find('&lt;b&gt;bold&lt;/b&gt;', 1, true), page)
    assert.truthy(page:find('page.json cannot be drawn', 1, true), page)
    -- nothing at all: a page that says so
    local empty = tmp .. '/empty-run'
    lfs.mkdir(empty)
    isolation.replace_file(empty, 'index.html', report.render(empty, 'the confined run was ended by signal 9'))
    page = read(empty .. '/index.html')
    assert.truthy(page:find('the confined run was ended by signal 9; results.json is missing', 1, true), page)
  end)
end)

describe('the sandbox: a results.json someone sent', function()
  local victim = tmp .. '/victim'
  lfs.mkdir(victim)

  it('cannot choose the results folder of a run: not with --sandbox, not without', function()
    local from = tmp .. '/from-out'
    lfs.mkdir(from)
    write(from .. '/writer.lua', "return { name = 'writer', params = {}, run = function(p, rep) " ..
      "rep:table('planted.csv', { 'x' }, {}) end }\n")
    write(from .. '/results.json', cjson.encode { recipe = 'writer', recipe_file = from .. '/writer.lua',
      params = { out = victim } })
    local out, rc = moreau(('run --sandbox --from=%q --out=%q'):format(from .. '/results.json', from .. '/run'))
    assert.are.equal(0, rc, out)
    assert.is_nil(read(victim .. '/planted.csv'))
    assert.truthy(read(from .. '/run/planted.csv'), out)
  end)

  it('unconfined, cannot name a file for a shipped recipe to write or read unless the user gives it', function()
    write(tmp .. '/weights.json', cjson.encode { recipe = 'train_fmnist',
      params = { weights = victim .. '/notes.txt', epochs = 1, subset = 64, test_subset = 64, progress = 'off' } })
    write(victim .. '/notes.txt', 'precious')
    local out, rc = moreau(('run --from=%q --out=%q'):format(tmp .. '/weights.json', tmp .. '/w1'))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find('sets --weights=' .. victim .. '/notes.txt, a file the recipe would write outside ' ..
      'its results folder', 1, true), out)
    assert.are.equal('precious', read(victim .. '/notes.txt'))
    write(tmp .. '/image.json', cjson.encode { recipe = 'explain', params = { image = '/etc/hostname' } })
    out, rc = moreau(('run --from=%q --out=%q'):format(tmp .. '/image.json', tmp .. '/w2'))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find('sets --image=/etc/hostname, a file the recipe would read', 1, true), out)
  end)
end)

describe('the sandbox: the operating system wall alone (payloads with every LuaJIT power)', function()
  local outside = tmp .. '/outside'
  lfs.mkdir(outside)

  it('cannot write outside its folder: not the caller\'s folders, not moreau\'s, not through a shell', function()
    local out, rc = run_payload(([[
      for _, p in ipairs { %q, %q, %q } do
        local f, err = io.open(p, 'w')
        print('open', p, f ~= nil, err)
        if f then f:write('escaped') f:close() end
      end
      print('sh', os.execute(%q))
    ]]):format(outside .. '/a.txt', root .. '/recipes/planted.lua', '/tmp/planted.txt',
      'touch ' .. outside .. '/b.txt'))
    assert.are.equal(0, rc, out)
    assert.is_nil(read(outside .. '/a.txt'))
    assert.is_nil(read(outside .. '/b.txt'))
    assert.is_nil(read(root .. '/recipes/planted.lua'))
  end)

  it('cannot read what it was not lent', function()
    local out, rc = run_payload(([[
      for _, p in ipairs { %q, '/etc/passwd', '/etc/shadow', '/root/.bash_history', '/proc/1/environ' } do
        local f = io.open(p, 'rb')
        local s = f and f:read(64)
        print('read', p, s and #s or 'refused', s and s:find('SECRET') and 'LEAK' or '')
      end
      print('env', os.getenv('MOREAU_TEST_SECRET'))
    ]]):format(secret_dir .. '/token.txt'))
    assert.are.equal(0, rc, out)
    assert.falsy(out:find('SECRET', 1, true), out)
    assert.falsy(out:find('LEAK', 1, true), out)
  end)

  it('has no network and no way to make one', function()
    local out, rc = run_payload([[
      local ffi = require 'ffi'
      ffi.cdef 'int socket(int, int, int); int socketpair(int, int, int, int *);'
      print('inet', ffi.C.socket(2, 1, 0), ffi.errno())
      print('inet6', ffi.C.socket(10, 2, 0), ffi.errno())
      print('unix', ffi.C.socket(1, 1, 0), ffi.errno())
    ]])
    assert.are.equal(0, rc, out)
    assert.truthy(out:find('inet\t-1\t1\n', 1, true), out)
    assert.truthy(out:find('inet6\t-1\t1\n', 1, true), out)
    assert.truthy(out:find('unix\t-1\t1\n', 1, true), out)
  end)

  it('cannot trace, read another process\'s memory, mount, or make namespaces', function()
    local out, rc = run_payload([[
      local ffi = require 'ffi'
      ffi.cdef [=[
        long ptrace(int, int, void *, void *);
        int unshare(int);
        int mount(const char *, const char *, const char *, unsigned long, const void *);
        long syscall(long, ...);
        int ioctl(int, unsigned long, ...);
      ]=]
      print('ptrace', tonumber(ffi.C.ptrace(16, 1, nil, nil)), ffi.errno())      -- PTRACE_ATTACH
      print('unshare', ffi.C.unshare(0x10000000), ffi.errno())         -- CLONE_NEWUSER
      print('mount', ffi.C.mount('none', '/tmp', 'tmpfs', 0, nil), ffi.errno())
      print('vmread', tonumber(ffi.C.syscall(310, 1, nil, 0, nil, 0, 0)), ffi.errno()) -- process_vm_readv
      print('tiocsti', ffi.C.ioctl(0, 0x5412, ffi.new('char[1]', 'x')), ffi.errno())
      print('kill-all', tonumber(ffi.C.syscall(62, -1, 9)))                   -- kill(-1, SIGKILL): only its own namespace
    ]])
    for _, name in ipairs { 'ptrace', 'unshare', 'mount', 'vmread', 'tiocsti' } do
      assert.truthy(out:find(name .. '\t%-1\t1\n'), name .. ': ' .. out)
    end
    assert.is_not_nil(rc)
  end)

  it('ends at the first system call of another ABI (x32), which the filter does not read', function()
    -- On x86-64 the x32 ABI's calls are the native numbers with bit 30 set;
    -- libseccomp's filter kills the process on any of them (SIGSYS), so no
    -- call can slip past the denylist under another number.
    if ffi.arch ~= 'x64' then pending('x86-64 only') return end
    local out, rc = run_payload([[
      local ffi = require 'ffi'
      ffi.cdef 'long syscall(long, ...);'
      print('native', tonumber(ffi.C.syscall(39)) > 0)                 -- getpid
      print('x32', tonumber(ffi.C.syscall(0x40000000 + 39)))
    ]])
    assert.truthy(out:find('native\ttrue', 1, true), out)
    assert.falsy(out:find('x32', 1, true), out)
    assert.are.equal(128 + 31, rc, out) -- SIGSYS
  end)

  it('runs out of memory at its limit instead of taking the machine\'s', function()
    if os.getenv('MOREAU_SANITIZE') then
      pending('AddressSanitizer needs terabytes of address space: this build runs without the memory limit')
      return
    end
    local out, rc = run_payload([[
      local ffi = require 'ffi'
      ffi.cdef 'void *malloc(size_t);'
      print('small', ffi.C.malloc(2^26) ~= nil)
      print('large', ffi.C.malloc(2^31) ~= nil)
    ]], { memory = '1G' })
    assert.are.equal(0, rc, out)
    assert.truthy(out:find('small\ttrue', 1, true), out)
    assert.truthy(out:find('large\tfalse', 1, true), out)
  end)

  it('inherits no descriptor of the caller but stdout and stderr, and reads nothing on stdin', function()
    local outside = tmp .. '/fd-outside.log'
    write(outside, '')
    -- the caller holds a file open for writing as descriptor 7 when it starts the run
    ffi.cdef 'int open(const char *, int, ...); int dup2(int, int); int close(int);'
    local fd = ffi.C.open(outside, 1 + 1024) -- O_WRONLY | O_APPEND
    assert.is_true(fd >= 0)
    assert.are.equal(7, ffi.C.dup2(fd, 7))
    local out, rc = run_payload([[
      local ffi = require 'ffi'
      ffi.cdef 'long write(int, const void *, unsigned long); long read(int, void *, unsigned long);'
      print('fd7', tonumber(ffi.C.write(7, 'escaped', 7)), ffi.errno())
      local b = ffi.new('char[8]')
      print('stdin', tonumber(ffi.C.read(0, b, 8)))
    ]])
    ffi.C.close(7)
    ffi.C.close(fd)
    assert.are.equal(0, rc, out)
    assert.truthy(out:find('fd7\t-1\t9', 1, true), out) -- EBADF
    assert.truthy(out:find('stdin\t0', 1, true), out) -- /dev/null: end of file
    assert.are.equal('', read(outside))
  end)

  it('cannot leave a set-user-ID or set-group-ID file behind', function()
    local out, rc, dir = run_payload([[
      local ffi = require 'ffi'
      ffi.cdef 'int chmod(const char *, unsigned); int open(const char *, int, ...);'
      local f = assert(io.open('tool', 'w')) f:write('#!/bin/sh\n') f:close()
      print('chmod suid', ffi.C.chmod('tool', tonumber('4755', 8)), ffi.errno())
      print('chmod sgid', ffi.C.chmod('tool', tonumber('2755', 8)), ffi.errno())
      print('create suid', ffi.C.open('tool2', 64 + 1, ffi.new('unsigned', tonumber('4755', 8))), ffi.errno())
      print('chmod plain', ffi.C.chmod('tool', tonumber('755', 8)))
    ]])
    assert.are.equal(0, rc, out)
    assert.truthy(out:find('chmod suid\t-1\t1', 1, true), out)
    assert.truthy(out:find('chmod sgid\t-1\t1', 1, true), out)
    assert.truthy(out:find('create suid\t-1\t1', 1, true), out)
    assert.truthy(out:find('chmod plain\t0', 1, true), out)
    assert.are.equal('rwxr-xr-x', lfs.attributes(dir .. '/tool', 'permissions'))
  end)

  it('has a /tmp of at most 256 MiB, and ends at its wall-clock limit', function()
    local out, rc = run_payload([[
      local f = assert(io.open('/tmp/fill', 'wb'))
      local block = string.rep('x', 1024 * 1024)
      local n = 0
      for i = 1, 400 do
        if not f:write(block) then break end
        n = i
      end
      f:close()
      print('tmp MiB', n)
    ]])
    assert.are.equal(0, rc, out)
    local mib = tonumber(out:match('tmp MiB\t(%d+)'))
    assert.truthy(mib and mib <= 256, out)
    out, rc = run_payload('os.execute("sleep 30") print("woke")', { wall_seconds = 2 })
    assert.are.equal(128 + 14, rc, out)
    assert.falsy(out:find('woke', 1, true), out)
  end)

  it('cannot write a file larger than its limit', function()
    local out, rc, dir = run_payload([[
      local f = assert(io.open('big.bin', 'wb'))
      f:write(string.rep('x', 2 * 1024 * 1024))
      f:close()
      print('wrote all')
    ]], { file_size = '1M' })
    assert.are.equal(128 + 25, rc, out)
    assert.falsy(out:find('wrote all', 1, true), out)
    assert.is_true(lfs.attributes(dir .. '/big.bin', 'size') <= 1024 * 1024)
  end)
end)

describe('the sandbox: the Lua wall hands a recipe no pointer', function()
  local sandbox = require 'moreau.sandbox'

  -- What a recipe may hold as cdata: 64-bit integers (noise keys, seeds) are
  -- values; any pointer, array, struct or C library namespace is an address
  -- it could free, wrap again, keep past its owner or index out of bounds.
  local function is_value(v)
    return type(v) == 'cdata' and (ffi.istype('uint64_t', v) or ffi.istype('int64_t', v))
  end

  --- Every path from `root` through table keys, values and metatables (the
  -- recipe has getmetatable and pairs; it has no debug, so no upvalues) that
  -- ends at a cdata or userdata that is not a value.
  local function pointers_within_reach(root)
    local found, seen, stack = {}, {}, { { root, 'recipe' } }
    while #stack > 0 do
      local v, path = unpack(table.remove(stack))
      local t = type(v)
      if (t == 'cdata' and not is_value(v)) or t == 'userdata' then
        found[#found + 1] = ('%s = %s'):format(path, tostring(v))
      elseif (t == 'table' or t == 'string' or t == 'cdata') and not seen[v] then
        seen[v] = true
        if t == 'table' then
          for k, x in next, v do
            stack[#stack + 1] = { k, path .. ' key ' .. tostring(k) }
            stack[#stack + 1] = { x, path .. '.' .. tostring(k) }
          end
        end
        local mt = debug.getmetatable(v)
        if mt ~= nil then stack[#stack + 1] = { mt, path .. ' <metatable>' } end
      end
    end
    table.sort(found)
    return found
  end

  -- A recipe that makes one of every kind of object the public modules hand
  -- out and returns them all, with its environment.
  local make_everything = [[
    local moreau = require 'moreau'
    local T, data, prox, methods, viz = moreau.tensor, moreau.data, moreau.prox, moreau.methods, moreau.viz
    local metrics, attacks, train, oracle = moreau.metrics, moreau.attacks, moreau.train, moreau.oracle
    local out = { env = _G }
    local net, card = moreau.models.pretrained('resnet_fmnist')
    out.net, out.card = net, card
    local test = data.fashion_mnist { split = 'test' }
    out.test = test
    local x, y = data.get(test, 1)
    x = data.normalize(x, card.data.normalization.mean, card.data.normalization.std)
    out.x, out.y, out.subset, out.perm = x, y, data.subset(test, 1, 2), data.permutation(5, 0)
    for bx, by, idx in data.batches(data.subset(test, 1, 2), 2) do out.batch = { bx, by, idx } end
    out.param, out.params = net:param(net:params()[1].name), net:params()
    out.scores, out.grad = oracle.grad(net, x, y)
    out.hv = oracle.hvp(net, x, y, out.grad)
    local solver = prox.solver(net, x, { y }, { T = 2, m = 2, K = 2 })
    solver:run()
    out.solver, out.result, out.stats = solver, solver:result(), solver:stats(1)
    out.groups = prox.blocks(1, 28, 28, 2)
    out.method = methods.create('moreaugrad', { T = 2, m = 2, K = 2 })
    out.map = out.method:explain(net, x, { y })
    out.item_keys, out.streams = methods.item_keys(x), methods.perturbation_streams(x)
    out.attack = attacks.create('topk', { iters = 1 })
    out.attacked = { out.attack:run(net, methods.create('gradient'), x, { y }) }
    out.lipschitz = metrics.local_lipschitz(net, methods.create('gradient'), x, { y }, { samples = 2 })
    out.members = { metrics.topk_members(out.map, 1, 5) }
    out.optimizer = train.sgd { lr = 0.1 }:build(net)
    out.loss = { train.cross_entropy(net:forward(x), { y }) }
    out.canvas = viz.heatmap(out.map)
    out.grid = viz.grid { rows = { { out.canvas } } }
    out.picture = out.canvas:to_tensor()
    return out
  ]]

  it('in what the public modules hand out, down to the metatables', function()
    local dir = tmp .. '/reach'
    lfs.mkdir(dir)
    local env = sandbox.env()
    local chunk = assert(loadstring(make_everything, '=make_everything'))
    setfenv(chunk, env)
    sandbox.confine(dir)
    local ok, everything = pcall(chunk)
    sandbox.release()
    assert(ok, everything)
    assert.are.same({}, pointers_within_reach(everything))
  end)

  it('the old ways to one fail with a clear error', function()
    local out, rc = run_recipe([[
      local T = require 'moreau.tensor'
      local x = T.zeros { 2 }
      print('field', x.ptr, rawget(x, 'ptr'))
      for k, v in pairs(x) do print('pair', k, v) end
      print('wrap', pcall(T.wrap, x.ptr))
      print('borrow', pcall(T.borrow, 12345, x))
      print('data', pcall(x.data, x))
      x:free()
      print('freed', pcall(x.sum, x))
    ]])
    assert.are.equal(0, rc, out)
    assert.truthy(out:find('field\tnil\tnil', 1, true), out)
    assert.falsy(out:find('pair', 1, true), out)
    assert.truthy(out:find('wrap\tfalse\t[^\n]*expected a non%-NULL mr_tensor%* from the engine, got nil'), out)
    assert.truthy(out:find('borrow\tfalse\t[^\n]*expected a non%-NULL mr_tensor%* from the engine, got 12345'), out)
    assert.truthy(out:find('data\tfalse\t[^\n]*not available in a sandboxed recipe'), out)
    assert.truthy(out:find('freed\tfalse\t[^\n]*the tensor was freed'), out)
  end)
end)
