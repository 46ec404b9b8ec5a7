-- `cmake --install build --prefix P` gives a working moreau under any P, and
-- the installed tree still works after it is moved: the command, the Lua
-- modules (a plain LuaJIT finds them under P/share/lua/5.1), pkg-config and a
-- C program linked against the library, each run from another folder with
-- nothing of the source tree in its environment.
local lfs = require 'lfs'
local core = require 'moreau.core'

local tmp = require('helpers.cli').tmpdir()

local cli = require 'helpers.cli'
local write, read = cli.write, cli.read

-- a shell command run in `dir` without the test run's pointers into the
-- source tree (the sanitizer runtime's variables stay: the ASan build's
-- library needs them); RETURNS: its output, its exit code.
local function sh(dir, cmd)
  local quoted = "'" .. cmd:gsub("'", "'\\''") .. "'" -- for the outer shell: cmd's $(...) runs inside sh -c
  local p = io.popen(('cd %q && env -u MOREAU_LIB -u MOREAU_HEADER -u LUA_PATH -u LUA_CPATH -u MOREAU_MODELS ' ..
    'sh -c %s 2>&1; echo "rc=$?"'):format(dir, quoted))
  local out = p:read('*a')
  p:close()
  local rc = tonumber(out:match('rc=(%d+)%s*$'))
  return out:gsub('rc=%d+%s*$', ''), rc
end

local function find(prefix, name)
  local p = io.popen(('find %q -name %q | head -n 1'):format(prefix, name))
  local path = p:read('*l')
  p:close()
  return path
end

describe('cmake --install --prefix P', function()
  local build = core.lib_path:match('^(.*)/[^/]+$')
  local first, prefix = tmp .. '/first', tmp .. '/moved/here'
  local elsewhere = tmp .. '/elsewhere'
  lfs.mkdir(elsewhere)
  lfs.mkdir(tmp .. '/moved')

  setup(function()
    local out, rc = sh(tmp, ('env -u LD_PRELOAD cmake --install %q --prefix %q'):format(build, first))
    assert.are.equal(0, rc, out)
    -- the installed tree moves: nothing in it may name where it was installed
    assert.is_true(os.rename(first, prefix))
  end)

  it('puts every part in its standard place, naming no absolute path of the install', function()
    for _, f in ipairs { 'libmoreau.so', 'moreau.h', 'init.lua', '_install.lua', 'explain.lua', 'moreau.lua',
      'moreau.pc', 'moreau-sandbox' } do
      assert.truthy(find(prefix, f), f .. ' installed')
    end
    assert.truthy(lfs.attributes(prefix .. '/bin/moreau'))
    for _, f in ipairs { prefix .. '/bin/moreau', find(prefix, '_install.lua'), find(prefix, 'moreau.pc') } do
      assert.is_nil(read(f):find(first, 1, true), f .. ' names the install prefix')
    end
  end)

  it('runs the moreau command from another folder on the installed library', function()
    local out, rc = sh(elsewhere, prefix .. '/bin/moreau info')
    assert.are.equal(0, rc, out)
    assert.truthy(out:find('library: ' .. prefix .. '/', 1, true), out)
    assert.truthy(out:find('model shipped: resnet_fmnist', 1, true), out)
    out, rc = sh(elsewhere, prefix .. '/bin/moreau explain --methods=gradient --out=res')
    assert.are.equal(0, rc, out)
    assert.truthy(read(elsewhere .. '/res/results.json'), out)
    -- through a link on PATH, as a package manager or a user's ~/bin would put it
    lfs.link(prefix .. '/bin/moreau', elsewhere .. '/moreau', true)
    out, rc = sh(elsewhere, './moreau --version')
    assert.are.equal(0, rc, out)
    assert.truthy(out:find('moreau ' .. core.version(), 1, true), out)
  end)

  it("lets a plain LuaJIT require 'moreau' from the installed modules", function()
    local lua_dir = find(prefix, 'init.lua'):match('^(.*)/moreau/init%.lua$')
    local out, rc = sh(elsewhere, ("LUA_PATH='%s/?.lua;%s/?/init.lua;;' luajit -e \"local m = require 'moreau' " ..
      "print(m.version, require('moreau.core').lib_path)\""):format(lua_dir, lua_dir))
    assert.are.equal(0, rc, out)
    assert.truthy(out:find(core.version() .. '\t' .. prefix .. '/', 1, true), out)
  end)

  it('gives pkg-config flags under the prefix, and a C program links and runs against the library', function()
    local pc_dir = find(prefix, 'moreau.pc'):match('^(.*)/[^/]+$')
    local out, rc = sh(elsewhere, ('PKG_CONFIG_PATH=%q pkg-config --cflags --libs moreau'):format(pc_dir))
    assert.are.equal(0, rc, out)
    assert.truthy(out:find('-I' .. prefix .. '/', 1, true), out)
    assert.truthy(out:find('-L' .. prefix .. '/', 1, true) and out:find('-lmoreau', 1, true), out)
    write(elsewhere .. '/use.c', [[
#include <moreau.h>
#include <stdio.h>
int main(void)
{
    mr_tensor *t = NULL;
    int64_t shape[2] = {2, 3};
    if (mr_tensor_new(&t, 2, shape) != 0) return 1;
    printf("moreau %s, %lld elements\n", mr_version(), (long long)mr_tensor_numel(t));
    mr_tensor_free(t);
    return 0;
}
]])
    -- the sanitizer build's library needs the sanitizer runtime at link time too
    local san = os.getenv('MOREAU_SANITIZE') and '-fsanitize=address,undefined ' or ''
    out, rc = sh(elsewhere, ('PKG_CONFIG_PATH=%q; export PKG_CONFIG_PATH; cc -std=c11 %suse.c -o use ' ..
      '$(pkg-config --cflags --libs moreau) -Wl,-rpath,$(pkg-config --variable=libdir moreau) && ./use'):format(
      pc_dir, san))
    assert.are.equal(0, rc, out)
    assert.truthy(out:find('moreau ' .. core.version() .. ', 6 elements', 1, true), out)
  end)

  it("builds examples/onnx_gradient.c with the command its own comment gives, and it runs", function()
    local pc_dir = find(prefix, 'moreau.pc'):match('^(.*)/[^/]+$')
    local src = read('examples/onnx_gradient.c')
    local build_line = src:match('%((cc onnx_gradient%.c [^\n]-)%) %*/')
    assert.truthy(build_line, 'the example states its build command')
    write(elsewhere .. '/onnx_gradient.c', src)
    local san = os.getenv('MOREAU_SANITIZE') and ' -fsanitize=address,undefined' or ''
    local model = lfs.currentdir() .. '/tests/fixtures/onnx/tiny_ops.onnx'
    local out, rc = sh(elsewhere, ('PKG_CONFIG_PATH=%q; export PKG_CONFIG_PATH; %s%s -o onnx_gradient ' ..
      '-Wl,-rpath,$(pkg-config --variable=libdir moreau) && ./onnx_gradient %q 1'):format(pc_dir, build_line, san, model))
    assert.are.equal(0, rc, out)
    assert.truthy(out:find('^class 1: score [-0-9.e]+, |gradient| [0-9.e]+'), out)
  end)
end)

describe('the API reference', function()
  -- Builds the reference with LDoc into TMP/NAME (config.ld's text format,
  -- scripts/ldoc_text.lua, is loaded from the root) and asserts it built
  -- without a warning. RETURN: the folder and the source root, or nil (the
  -- test is then pending) when ldoc is not installed.
  local function build_reference(name)
    local p = io.popen('command -v ldoc')
    local ldoc = p:read('*l')
    p:close()
    if not ldoc then
      pending('ldoc is not installed (scripts/setup installs Debian\'s lua-ldoc)')
      return nil
    end
    local root = require('moreau.isolation').realpath(core.root)
    local out = tmp .. '/' .. name
    local q = io.popen(('cd %q && LUA_PATH="./?.lua;;" ldoc --fatalwarnings --dir %q . 2>&1; echo "rc=$?"'):format(root, out))
    local log = q:read('*a')
    q:close()
    assert.truthy(log:find('rc=0', 1, true), log)
    return out, root
  end

  it('builds from the doc comments with LDoc, without a warning, one page per module', function()
    local out, root = build_reference('api')
    if not out then return end
    for _, m in ipairs { 'moreau.tensor', 'moreau.nn', 'moreau.methods', 'moreau.prox', 'moreau.report',
      'moreau.experiment', 'moreau.viz' } do
      assert.truthy(lfs.attributes(out .. '/modules/' .. m .. '.html'), m)
    end
    local page = read(out .. '/modules/moreau.tensor.html')
    assert.truthy(page:find('Tensor:clamp_', 1, true), 'tensor methods are listed')
    page = read(out .. '/modules/moreau.nn.html')
    for _, m in ipairs { 'nn.Conv2d', 'nn.BatchNorm2d', 'nn.Sequential', 'nn.ReLU' } do
      assert.truthy(page:find(m, 1, true), m .. ' is in the reference')
    end
  end)

  -- The reference's anchors per module page: short name (after the last '.'
  -- or ':') -> true.
  local function anchors(out)
    local pages = {}
    for f in lfs.dir(out .. '/modules') do
      local mod = f:match('^(.*)%.html$')
      if mod then
        local set = {}
        for a in read(out .. '/modules/' .. f):gmatch('<a name = "([^"]*)"') do set[a:match('[^.:]*$')] = true end
        pages[mod] = set
      end
    end
    return pages
  end


  it('documents every public function: each module table\'s and each object method in the sources', function()
    local out, root = build_reference('api3')
    if not out then return end
    local pages = anchors(out)
    local missing, seen = {}, 0
    -- 1. every function field of every module's table; a function reachable
    -- under several names (viz.heatmap is maps.heatmap) needs one of them
    -- documented; methods.NAME and the like are documented by the page of
    -- the module of that name (moreau.methods.NAME)
    local names, documented = {}, {}
    for mod, set in pairs(pages) do
      local M = require(mod)
      if type(M) == 'table' then
        for k, v in pairs(M) do
          if type(v) == 'function' and type(k) == 'string' and not k:match('^_') then
            names[v] = names[v] or {}
            table.insert(names[v], mod .. '.' .. k)
            if set[k] or pages[mod .. '.' .. k] then documented[v] = true end
          end
        end
      end
    end
    for v, list in pairs(names) do
      seen = seen + 1
      table.sort(list)
      if not documented[v] then missing[#missing + 1] = table.concat(list, ' = ') end
    end
    -- 2. every method of an object (`function Class:name(`) in the module files
    local function scan(dir, mod)
      for f in lfs.dir(dir) do
        local path = dir .. '/' .. f
        if f:match('%.lua$') then
          local m = mod .. (f == 'init.lua' and '' or '.' .. f:gsub('%.lua$', ''))
          local n = 0
          for line in io.lines(path) do
            n = n + 1
            local class, name = line:match('^function ([%w_]+):([%w_]+)%s*%(')
            if name and not name:match('^_') then
              seen = seen + 1
              if not (pages[m] and pages[m][name]) then
                missing[#missing + 1] = ('%s:%s (%s, line %d)'):format(class, name, m, n)
              end
            end
          end
        elseif not f:match('^%.') and lfs.attributes(path, 'mode') == 'directory' then
          scan(path, mod .. '.' .. f)
        end
      end
    end
    scan(root .. '/bindings/moreau', 'moreau')
    table.sort(missing)
    assert.truthy(seen > 300, 'public functions found: ' .. seen)
    -- parameter lists show the ARGS text of each parameter (config.ld); a
    -- list none of whose entries has a text is left out
    local lists = 0
    for mod in pairs(pages) do
      local page = read(out .. '/modules/' .. mod .. '.html')
      for kind, list in page:gmatch('<h3>(%a+):</h3>%s*<ul>(.-)</ul>') do
        if kind == 'Parameters' or kind == 'Fields' then
          lists = lists + 1
          local any = false
          for t in list:gmatch('<span class="parameter">[%w_]+</span>(.-)</li>') do any = any or t:find('%S') ~= nil end
          assert.truthy(any, mod .. ': a list of bare parameter names:\n' .. list)
        end
      end
    end
    assert.truthy(lists > 50, 'parameter lists: ' .. lists)
    assert.truthy(read(out .. '/modules/moreau.recipe.html'):find(
      '<span class="parameter">env</span> optional table of globals; default: a fresh table over _G</li>', 1, true))
    assert.truthy(read(out .. '/modules/moreau.methods.gradient.html'):find(
      '<span class="parameter">lab</span> int32_t[N]</li>', 1, true))
    -- the layout (config.ld): code wraps instead of scrolling, the content
    -- column takes the window's width, module names break after a dot
    for _, f in ipairs { out .. '/index.html', out .. '/modules/moreau.html' } do
      local page = read(f)
      assert.truthy(page:find('pre { white-space: pre-wrap;', 1, true), f)
      assert.truthy(page:find('#content { width: auto;', 1, true), f)
      assert.truthy(page:find('>moreau.<wbr>methods.<wbr>sparsified_smoothgrad</a>', 1, true), f)
    end
    assert.are.same({}, missing, 'public functions without a doc comment in the reference:\n' ..
      table.concat(missing, '\n'))
  end)

  it("shows each method's every option with its default, the methods' real defaults", function()
    local out, root = build_reference('api4')
    if not out then return end
    local options = require 'moreau.options'
    local function text(html)
      return (html:gsub('<[^>]+>', ''):gsub('%s+', ' '):gsub('&lt;', '<'):gsub('&gt;', '>'):gsub('&quot;', '"')
        :gsub('&#39;', "'"):gsub('&amp;', '&'))
    end
    local methods = require 'moreau.methods'
    assert.truthy(#methods.files >= 7)
    for _, name in ipairs(methods.files) do
      local defaults = require('moreau.methods.' .. name).defaults
      local page = read(out .. '/modules/moreau.methods.' .. name .. '.html')
      local section = page:match('<a name = "options"></a>(.-)</dd>')
      assert.truthy(section, name .. ': no table options')
      local listed = {}
      -- the common options a method takes, with this method's defaults
      local common = text(section):match('Common options %(moreau%.methods%.common%), with their defaults here: (.-)%.%s')
      assert.truthy(common, name .. ': no line of common options in ' .. text(section))
      assert.truthy(section:find('href="../modules/moreau.methods.common.html', 1, true), name .. ': no link to common')
      for k, v in common:gmatch('([%w_]+) = ([^,]+)') do
        assert.is_nil(listed[k], name .. ': ' .. k .. ' listed twice')
        listed[k] = true
        assert.are.equal(options.show(defaults[k]), v, name .. ': the default of common option ' .. k)
      end
      -- its own options, each text ending in its default
      for k, html in section:gmatch('<span class="parameter">([%w_]+)</span>(.-)</li>') do
        assert.is_nil(listed[k], name .. ': ' .. k .. ' listed twice')
        listed[k] = true
        local v = text(html):match('%(default: (.-)%)%s*$')
        assert.truthy(v, name .. '.' .. k .. ': no default in ' .. text(html))
        if defaults[k] == nil then
          assert.truthy(v:match('^unset'), name .. '.' .. k .. ': no default in the code, but documented: ' .. v)
        else
          assert.are.equal(options.show(defaults[k]), v, name .. '.' .. k)
        end
      end
      -- and nothing else: every option the method takes, none it does not
      local takes = {}
      for k in pairs(defaults) do if not k:match('^_') then takes[k] = true end end
      for k in pairs(defaults._extra or {}) do takes[k] = true end
      assert.are.same(takes, listed, name .. ': the options listed')
    end
  end)

  -- every summary on every page (LDoc cuts a summary at the first '. ' or '? ')
  local function summaries(out)
    local found = {}
    local files = { out .. '/index.html' }
    for f in lfs.dir(out .. '/modules') do
      if f:match('%.html$') then files[#files + 1] = out .. '/modules/' .. f end
    end
    for _, f in ipairs(files) do
      local page = read(f)
      for s in page:gmatch('<td class="summary">(.-)</td>') do found[#found + 1] = { f, s } end
      local m = page:match('<h1>Module <code>.-</code></h1>%s*<p>(.-)</p>')
      if m then found[#found + 1] = { f, m } end
    end
    return found
  end

  it('shows whole first sentences as summaries, code examples as code, and each method\'s options', function()
    local out, root = build_reference('api2')
    if not out then return end
    -- summaries: a whole sentence, never cut after an abbreviation
    local all = summaries(out)
    assert.truthy(#all > 100, 'summaries found: ' .. #all)
    for _, fs in ipairs(all) do
      local text = fs[2]:gsub('<[^>]+>', ''):gsub('%s+', ' '):gsub('^ ', ''):gsub(' $', '')
      assert.truthy(text:match('[%.%?!]$'), fs[1] .. ': the summary does not end a sentence: ' .. text)
      for _, abbr in ipairs { 'et al.', 'e.g.', 'i.e.', 'cf.', 'vs.' } do
        assert.are_not.equal(abbr, text:sub(-#abbr), fs[1] .. ': the summary is cut after "' .. abbr .. '": ' .. text)
      end
      assert.falsy(text:find('<pre>', 1, true), fs[1] .. ': a code block in the summary: ' .. text)
    end
    local page = read(out .. '/modules/moreau.methods.smoothgrad.html')
    local summary = page:match('<h1>Module <code>.-</code></h1>%s*<p>(.-)</p>')
    assert.are.equal('moreau.methods.smoothgrad — SmoothGrad (Smilkov et al., 2017) and its\n' ..
      'variants, and the noisy-copy machinery of the SmoothGrad family\n(sparsified_smoothgrad uses it too).', summary)
    -- a module's example is one code block, its lines and indentation as written
    page = read(out .. '/modules/moreau.viz.html')
    assert.truthy(page:find("<pre>local viz = require 'moreau.viz'\n" ..
      "local heat = viz.heatmap(grad, { item = 1 })          -- (N,C,H,W) map\n" ..
      "local pic = viz.grid {\n  rows = { { viz.image(x), heat, viz.signed(grad) } },\n", 1, true), 'viz example')
    page = read(out .. '/modules/moreau.nn.html')
    assert.truthy(page:find("<pre>local nn = require 'moreau.nn'\nlocal model = nn.Sequential {\n" ..
      "  nn.Conv2d(1, 8, 3, { padding = 1 }), nn.Softplus { beta = 10 },", 1, true), 'nn example')
    -- each method's options, with the texts help() prints in the REPL
    local repl = require 'moreau.repl'
    for name, own in pairs {
      moreaugrad = { 'rho', 'gamma', 'T', 'm', 'K', 'reg', 'eta', 'group_size', 'groups', 'output', 'accelerated', 'tol' },
      smoothgrad = { 'variant' }, sparsified_smoothgrad = { 'clip', 'keep' },
      integrated_gradients = { 'steps', 'rule' },
      common = { 'score', 'chunk', 'memory_budget', 'seed', 'samples', 'sigma', 'baseline' },
    } do
      page = read(out .. '/modules/moreau.methods.' .. name .. '.html')
      local tag = name == 'common' and 'common_options' or 'options'
      page = page:match('<a name = "' .. tag .. '"></a>(.-)</dl>')
      assert.truthy(page, name .. ': no table ' .. tag)
      local meaning = repl.option_help(name == 'common' and 'gradient' or name)
      for _, k in ipairs(own) do
        local text = page:match('<span class="parameter">' .. k .. '</span>%s*(.-)%s*</li>')
        assert.truthy(text, name .. ': option ' .. k .. ' is not listed')
        text = text:gsub('%s+', ' '):gsub('&lt;', '<'):gsub('<code>(.-)</code>', '`%1`')
        assert.are.equal(meaning[k], text, name .. '.' .. k)
      end
    end
  end)
end)
