-- The data-set command end to end (moreau.dataset, docs/store.md): a job
-- killed with SIGKILL at several points and run again ends with the same
-- maps, byte for byte, as an uninterrupted run; 1 process and 3 shards
-- merged give the same maps; a full disk and a read-only store give a clear
-- error and leave the store valid. Small on purpose: 16 Fashion-MNIST test
-- images, a few samples, T = 24.
local lfs = require 'lfs'
local store = require 'moreau.store'
local core = require 'moreau.core'
local cli = require 'helpers.cli'

local tmp = cli.tmpdir()
local root = require('moreau.isolation').realpath(core.root)

-- the run every test repeats: its parameters must not change between them
local N = 16
local JOB = ('explain --data=fashion-mnist:test --range=0:%d --methods=gradient,smoothgrad,sparse_moreaugrad ' ..
  '--preset=fast --smoothgrad.samples=6 --sparse_moreaugrad.T=24 --sparse_moreaugrad.m=4 --seed=3'):format(N)
local METHODS = { 'gradient', 'smoothgrad', 'sparse_moreaugrad' }

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- the command line of the job into path (batch: images per pass)
local function job(path, batch, extra)
  return ('%s --batch=%d --store=%s%s'):format(JOB, batch or 4, sh_quote(path), extra and (' ' .. extra) or '')
end

local function moreau_env(env, args)
  local p = io.popen(('%s MOREAU_LIB=%s %s/scripts/moreau --progress=off %s 2>&1; echo "rc=$?"'):format(env or '',
    sh_quote(core.lib_path), sh_quote(root), args))
  local out = p:read('*a')
  p:close()
  local rc = tonumber(out:match('rc=(%d+)%s*$'))
  return out:gsub('rc=%d+%s*$', ''), rc
end

local function sleep(s) os.execute(('sleep %g'):format(s)) end

local function alive(pid) return os.execute(('kill -0 %d 2>/dev/null'):format(pid)) == 0 end

-- finished images of a store being written, or nil while it is not there yet
local function count(path)
  if not lfs.attributes(path) then return nil end
  local ok, s = pcall(store.open, path, { readonly = true })
  if not ok then return nil end
  local okc, n = pcall(s.count, s)
  s:close()
  return okc and n or nil
end

-- every map of a store: "image/method" -> bytes (shapes checked on the way)
local function maps_of(path)
  local s = store.open(path, { readonly = true })
  local out, n = {}, 0
  for _, id in ipairs(s:images()) do
    for _, m in ipairs(METHODS) do
      local bytes, shape = s:map_bytes(id, m)
      assert(bytes, ('image %d has no %s map in %s'):format(id, m, path))
      assert.are.same({ 1, 1, 28, 28 }, shape)
      out[id .. '/' .. m] = bytes
      n = n + 1
    end
  end
  local ok, why = s:check()
  assert(ok, why)
  s:close()
  return out, n
end

local reference -- the uninterrupted run's maps
local ref_path = tmp .. '/ref.db'

local function same_as_reference(path)
  local got, n = maps_of(path)
  assert.are.equal(N * #METHODS, n, path .. ': not every image and method once')
  for key, bytes in pairs(reference) do
    assert(got[key] == bytes, ('%s: the map %s differs from the uninterrupted run'):format(path, key))
  end
end

describe('moreau explain --data (data-set command)', function()
  setup(function()
    local out, rc = moreau_env('', job(ref_path, 5))
    assert.are.equal(0, rc, out)
    reference = maps_of(ref_path)
  end)

  it('fills the store once: every image with every method, labels, predictions, probabilities', function()
    local s = store.open(ref_path, { readonly = true })
    assert.are.equal(N, s:count())
    assert.are.same(METHODS, s:methods())
    local test = require('moreau').data.fashion_mnist { split = 'test' }
    for _, id in ipairs(s:images()) do
      local rec = s:image(id)
      assert.are.equal(test.labels[id + 1], rec.label)
      assert.are.equal(rec.prediction, rec.target) -- --target=predicted, the default
      local sum = 0
      for _, q in ipairs(rec.probabilities) do sum = sum + q end
      assert.is_true(math.abs(sum - 1) < 1e-12, 'probabilities add up to ' .. sum)
      assert.are.equal(('fashion-mnist:test#%d'):format(id), rec.source)
      assert.truthy(rec.noise_key:match('^%x+$') and #rec.noise_key == 16, rec.noise_key)
    end
    local p = s:params()
    assert.are.equal(24, p['options.sparse_moreaugrad'].T)
    assert.are.same({ 0, N }, p.range)
    s:close()
  end)

  it('gives the same maps whatever the batch size, and the maps methods:explain gives the image alone', function()
    local path = tmp .. '/batch1.db'
    local out, rc = moreau_env('', job(path, 1))
    assert.are.equal(0, rc, out)
    same_as_reference(path)
    -- image 7 explained alone in this process: the stored bytes
    local moreau = require 'moreau'
    local ex = require 'moreau.experiment'
    local net, card = moreau.models.pretrained('resnet_fmnist')
    local test = moreau.data.fashion_mnist { split = 'test' }
    local norm = card.data.normalization
    local x = moreau.data.normalize(test.images:select(8), norm.mean, norm.std)
    local s = store.open(ref_path, { readonly = true })
    local rec = s:image(7)
    local list = ex.methods { preset = 'fast', seed = 3, only = { 'smoothgrad' }, overrides = { ['smoothgrad.samples'] = 6 } }
    local map = list[1].make():explain(net, x, { rec.target })
    assert.are.equal(s:map_bytes(7, 'smoothgrad'), require('ffi').string(map:data(), 4 * 784))
    s:close()
  end)

  it('resumes after SIGKILL at 0, some and all images: none lost, none twice, maps byte-identical', function()
    for _, point in ipairs { 0, 5, N } do
      local path = ('%s/kill%d.db'):format(tmp, point)
      local p = io.popen(('MOREAU_LIB=%s %s/scripts/moreau --progress=off %s >%s 2>&1 & echo $!'):format(
        sh_quote(core.lib_path), sh_quote(root), job(path, 2), sh_quote(path .. '.log')))
      local pid = tonumber(p:read('*l'))
      p:close()
      local seen
      for _ = 1, 3000 do
        seen = count(path)
        if seen and seen >= point then break end
        if not alive(pid) then break end
        sleep(0.01)
      end
      os.execute(('kill -9 %d 2>/dev/null'):format(pid))
      while alive(pid) do sleep(0.01) end
      local after = count(path) or 0
      print(('killed at %s finished images (asked: %d); the store then held %d'):format(tostring(seen), point, after))
      assert.is_true(after >= (seen or 0))
      if lfs.attributes(path) then
        local s = store.open(path, { readonly = true })
        local ok, why = s:check()
        assert(ok, why)
        s:close()
      end
      local out, rc = moreau_env('', job(path, 3)) -- another batch size: changes no map
      assert.are.equal(0, rc, out)
      if after > 0 then
        assert.truthy(out:find(('holds %d of these %d images; resuming'):format(after, N), 1, true), out)
      end
      same_as_reference(path)
    end
  end)

  it('refuses a store made with other parameters, naming the parameter', function()
    local out, rc = moreau_env('', (job(ref_path, 4):gsub('%-%-seed=3', '--seed=4')))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find('was made with other parameters: seed is 3 in the store, 4 here', 1, true), out)
    out, rc = moreau_env('', (job(ref_path, 4):gsub('sparse_moreaugrad%.T=24', 'sparse_moreaugrad.T=25')))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find('options.sparse_moreaugrad is {', 1, true) and out:find('"T":24', 1, true), out)
  end)

  it('1 process and 3 shards merged give bit-identical maps (environment variables, and mpirun when installed)', function()
    -- shards from a launcher's environment: Open MPI's variables, and a SLURM
    -- array's, one task each (tests/store_spec.lua reads every launcher's
    -- variables, PMI's too, without running a job)
    local launchers = {
      function(k) return ('OMPI_COMM_WORLD_RANK=%d OMPI_COMM_WORLD_SIZE=3'):format(k) end,
      function(k) return ('SLURM_ARRAY_TASK_ID=%d SLURM_ARRAY_TASK_MIN=1 SLURM_ARRAY_TASK_MAX=3'):format(k + 1) end,
    }
    for li, env in ipairs(launchers) do
      local dir = ('%s/env%d'):format(tmp, li)
      assert(lfs.mkdir(dir))
      for k = 0, 2 do
        local out, rc = moreau_env(env(k), job(dir .. '/RUN.db', 2))
        assert.are.equal(0, rc, out)
        assert.truthy(out:find(('shard %d/3'):format(k), 1, true), out)
      end
      local out, rc = moreau_env('', ('merge %s/RUN-0-of-3.db %s/RUN-1-of-3.db %s/RUN-2-of-3.db -o %s/RUN.db')
        :format(dir, dir, dir, dir))
      assert.are.equal(0, rc, out)
      same_as_reference(dir .. '/RUN.db')
    end
    -- real mpirun from Debian's Open MPI (scripts/setup installs openmpi-bin)
    local have = os.execute('command -v mpirun >/dev/null 2>&1') == 0
    if not have then
      print('mpirun is not installed: the shards ran by environment variables only')
      return
    end
    local dir = tmp .. '/mpi'
    assert(lfs.mkdir(dir))
    -- as root (CI) Open MPI wants --allow-run-as-root; --oversubscribe: 3 ranks on fewer cores
    local p = io.popen(('cd %s && MOREAU_LIB=%s mpirun --allow-run-as-root --oversubscribe -np 3 %s/scripts/moreau ' ..
      '--progress=off --threads=1 %s 2>&1; echo "rc=$?"'):format(sh_quote(dir), sh_quote(core.lib_path), sh_quote(root),
      job('RUN.db', 2)))
    local out = p:read('*a')
    p:close()
    assert.truthy(out:match('rc=0%s*$'), out)
    local rc
    out, rc = moreau_env('', ('merge %s/RUN-0-of-3.db %s/RUN-1-of-3.db %s/RUN-2-of-3.db -o %s/RUN.db')
      :format(dir, dir, dir, dir))
    assert.are.equal(0, rc, out)
    same_as_reference(dir .. '/RUN.db')
  end)

  it('merge refuses a missing shard, an unfinished one, and stores of another run', function()
    local dir = tmp .. '/env1'
    local out, rc = moreau_env('', ('merge %s/RUN-0-of-3.db %s/RUN-2-of-3.db -o %s/x.db'):format(dir, dir, tmp))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find('shard 1/3 is missing', 1, true), out)
    -- the whole run's store holds shard 0's images too
    out, rc = moreau_env('', ('merge %s/RUN-0-of-3.db %s -o %s/y.db'):format(dir, ref_path, tmp))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find(('image 0 is in both %s/RUN-0-of-3.db and %s (overlapping shards)'):format(dir, ref_path),
      1, true), out)
    local other = tmp .. '/seed4.db'
    out, rc = moreau_env('', job(other, 4, '--shard=1/3'):gsub('%-%-seed=3', '--seed=4'))
    assert.are.equal(0, rc, out)
    other = tmp .. '/seed4-1-of-3.db'
    out, rc = moreau_env('', ('merge %s/RUN-0-of-3.db %s -o %s/y.db'):format(dir, other, tmp))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find(('%s/RUN-0-of-3.db and %s come from different runs: seed is 3 in %s/RUN-0-of-3.db, 4 in %s')
      :format(dir, other, dir, other), 1, true), out)
    assert.is_nil(lfs.attributes(tmp .. '/y.db'))
    out, rc = moreau_env('', ('merge %s/RUN-0-of-3.db %s/RUN-1-of-3.db %s/RUN-2-of-3.db -o %s/RUN.db')
      :format(dir, dir, dir, dir))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find('exists; the merged store is a new file', 1, true), out)
  end)

  it('a launcher variable set but empty or blank is an error naming it, not "no launcher"', function()
    -- PMI_RANK= read as unset would run all 16 images on every rank of a broken launch
    local path = tmp .. '/empty-env.db'
    for _, c in ipairs {
      { "PMI_RANK='' PMI_SIZE=3", "PMI_RANK is set but empty" },
      { "PMI_RANK=1 PMI_SIZE=''", "PMI_SIZE is set but empty" },
      { "OMPI_COMM_WORLD_RANK='  ' OMPI_COMM_WORLD_SIZE=3", "OMPI_COMM_WORLD_RANK is set but blank ('  ')" },
      { "OMPI_COMM_WORLD_RANK=0 OMPI_COMM_WORLD_SIZE=' '", "OMPI_COMM_WORLD_SIZE is set but blank (' ')" },
      { "SLURM_ARRAY_TASK_ID='' SLURM_ARRAY_TASK_COUNT=3", "SLURM_ARRAY_TASK_ID is set but empty" },
      { "SLURM_ARRAY_TASK_ID=1 SLURM_ARRAY_TASK_COUNT=''", "SLURM_ARRAY_TASK_COUNT is set but empty" },
      -- srun's task count empty is not a batch script (SLURM_PROCID alone): it is refused
      { "SLURM_PROCID=1 SLURM_STEP_NUM_TASKS=''", "SLURM_STEP_NUM_TASKS is set but empty" },
      { "SLURM_PROCID='' SLURM_STEP_NUM_TASKS=2", "SLURM_PROCID is set but empty" },
      { "PMIX_RANK=''", "PMIX_RANK is set but empty" },
      { "PMIX_RANK=1 SLURM_STEP_NUM_TASKS=''", "SLURM_STEP_NUM_TASKS is set but empty" },
    } do
      local out, rc = moreau_env(c[1], job(path, 4))
      assert.are.equal(1, rc, c[1] .. ': ' .. out)
      assert.truthy(out:find(c[2] .. ': a launcher sets it to a number (the job would otherwise run whole on ' ..
        'every process); unset it, or give --shard=K/N', 1, true), c[1] .. ': ' .. out)
      assert.is_nil(lfs.attributes(path), c[1] .. ' wrote a store')
    end
    -- --shard decides alone: the launcher's variables are not read
    local out, rc = moreau_env("PMI_RANK='' PMI_SIZE=3", job(path, 4, '--shard=0/8'))
    assert.are.equal(0, rc, out)
    assert.truthy(out:find('shard 0/8', 1, true), out)
  end)

  it('a full disk (a file-size limit) stops with a clear error; the store stays valid and resumes', function()
    local path = tmp .. '/full.db'
    -- RLIMIT_FSIZE in the child (ulimit -f: 512-byte blocks in dash, 1024 in bash; either hits
    -- within a few images). No `trap '' XFSZ` here: the command itself ignores SIGXFSZ, so the
    -- write fails with EFBIG as on a full disk instead of the signal killing it (status 153)
    local out, rc = moreau_env('ulimit -f 160;', job(path, 1))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find('store ' .. path .. ': cannot ', 1, true), out)
    assert.truthy(out:find('the disk', 1, true), out)
    assert.truthy(out:find('the same command resumes', 1, true) or out:find('cannot start', 1, true), out)
    local before = count(path)
    print(('the file-size limit stopped the job after %s images'):format(tostring(before)))
    assert.is_true(before ~= nil and before < N)
    local s = store.open(path, { readonly = true })
    assert(s:check())
    s:close()
    out, rc = moreau_env('', job(path, 4))
    assert.are.equal(0, rc, out)
    same_as_reference(path)
  end)

  it('a read-only store gives a clear error and stays as it was', function()
    local dir = tmp .. '/ro'
    assert(lfs.mkdir(dir))
    local path = dir .. '/RUN.db'
    local out, rc = moreau_env('', job(path, 4):gsub('%-%-range=0:16', '--range=0:3'))
    assert.are.equal(0, rc, out)
    local bytes = cli.read(path)
    -- root ignores file permissions: a read-only bind mount (bubblewrap, which
    -- scripts/setup installs) makes the folder read-only for anyone
    local wrap
    if os.execute('bwrap --dev-bind / / --ro-bind ' .. sh_quote(dir) .. ' ' .. sh_quote(dir) ..
        ' sh -c "! touch ' .. sh_quote(dir .. '/probe') .. '" 2>/dev/null') == 0 then
      wrap = 'bwrap --dev-bind / / --ro-bind ' .. sh_quote(dir) .. ' ' .. sh_quote(dir) .. ' '
    elseif os.execute('[ "$(id -u)" -ne 0 ]') == 0 then
      os.execute('chmod a-w ' .. sh_quote(path) .. ' ' .. sh_quote(dir))
      wrap = ''
    else
      pending('no way to make a read-only store here: running as root without a working bwrap')
      return
    end
    local p = io.popen(('%senv MOREAU_LIB=%s %s/scripts/moreau --progress=off %s 2>&1; echo "rc=$?"'):format(wrap,
      sh_quote(core.lib_path), sh_quote(root), job(path, 4):gsub('%-%-range=0:16', '--range=0:3')))
    out = p:read('*a')
    p:close()
    os.execute('chmod u+w ' .. sh_quote(path) .. ' ' .. sh_quote(dir))
    assert.truthy(out:match('rc=1%s*$'), out)
    assert.truthy(out:find('store ' .. path .. ': ', 1, true) and out:find('read-only', 1, true), out)
    assert.are.equal(bytes, cli.read(path))
    local s = store.open(path, { readonly = true })
    assert(s:check())
    assert.are.equal(3, s:count())
    s:close()
  end)

  it('the comparison and robustness recipes read maps from a store: the same figures as computing them', function()
    local cjson = require 'cjson'
    local same = '--methods=gradient,smoothgrad,sparse_moreaugrad --seed=3 --sparse_moreaugrad.T=24 --sparse_moreaugrad.m=4'
    local function results(args)
      local dir = tmp .. '/r' .. tostring(math.random(1e9))
      local out, rc = moreau_env('', ('run %s --out=%s'):format(args, dir))
      assert.are.equal(0, rc, out)
      return cjson.decode(cli.read(dir .. '/results.json'))
    end
    local computed = results('compare_methods --images=3 --start=2 --preset=fast --smoothgrad.samples=6 ' .. same)
    local stored = results('compare_methods --images=3 --start=2 --store=' .. sh_quote(ref_path))
    for _, m in ipairs(METHODS) do
      assert.are.same(computed.methods[m].sparsity, stored.methods[m].sparsity)
      assert.are.same(computed.methods[m].gini, stored.methods[m].gini)
      assert.are.same(computed.methods[m].options.samples, stored.methods[m].options.samples)
    end
    -- robustness: the store's methods and options; computed with the same ones given by hand
    computed = results('robustness --images=2 --eps=0.5 --iters=1 --samples=6 --T=24 --m=4 --sparse_moreaugrad.K=24 ' .. same)
    stored = results('robustness --images=2 --eps=0.5 --iters=1 --store=' .. sh_quote(ref_path))
    assert.are.same(computed.summary, stored.summary)
    local out, rc = moreau_env('', ('run robustness --images=2 --seeds=2 --store=%s --out=%s/rbx'):format(sh_quote(ref_path), tmp))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find('--seeds=2 with --store: the store holds the maps of one seed (3)', 1, true), out)
    out, rc = moreau_env('', ('run compare_methods --images=2 --start=15 --store=%s --out=%s/cmx'):format(sh_quote(ref_path), tmp))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find('image 16 is not in the store (it holds 16 images)', 1, true), out)
  end)

  it('explains an image folder (class subfolders give the labels) and checks a data set against the model', function()
    local moreau = require 'moreau'
    local test = moreau.data.fashion_mnist { split = 'test' }
    local dir = tmp .. '/folder'
    assert(lfs.mkdir(dir))
    for c, name in ipairs { 'bags', 'shoes' } do
      assert(lfs.mkdir(dir .. '/' .. name))
      for i = 1, 2 do moreau.data.save_png(('%s/%s/%d.png'):format(dir, name, i), test.images:select(2 * c + i)) end
    end
    local out, rc = moreau_env('', ('explain --data=folder:%s --methods=gradient --store=%s/folder.db'):format(
      sh_quote(dir), sh_quote(tmp)))
    assert.are.equal(0, rc, out)
    local s = store.open(tmp .. '/folder.db', { readonly = true })
    assert.are.same({ 0, 1, 2, 3 }, s:images())
    local want = { { 0, 'bags/1.png' }, { 0, 'bags/2.png' }, { 1, 'shoes/1.png' }, { 1, 'shoes/2.png' } }
    for id = 0, 3 do
      local rec = s:image(id)
      assert.are.same(want[id + 1], { rec.label, rec.source })
    end
    s:close()
    -- CIFAR-10's binary format (a label byte, then 3x32x32 bytes per image) against a 1x28x28 model
    cli.write(tmp .. '/batch.bin', string.rep('\1' .. string.rep('\128', 3072), 2))
    out, rc = moreau_env('', ('explain --data=cifar10:%s --methods=gradient --store=%s/c.db'):format(
      sh_quote(tmp .. '/batch.bin'), sh_quote(tmp)))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find('its images are C×H×W = 3x32x32, but the model resnet_fmnist takes 1x28x28', 1, true), out)
    assert.is_nil(lfs.attributes(tmp .. '/c.db'))
    out, rc = moreau_env('', ('explain --data=folder:%s --target=label --methods=gradient --store=%s/f2.db'):format(
      sh_quote(dir .. '/bags'), sh_quote(tmp)))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find('--target=label, but the images of --data=folder:' .. dir .. '/bags have no labels', 1, true), out)
  end)

  it('refuses a second writer of a store while the first runs, and readers read it meanwhile', function()
    local path = tmp .. '/two.db'
    local args = job(path, 1)
    local p = io.popen(('MOREAU_LIB=%s %s/scripts/moreau --progress=off %s >%s 2>&1 & echo $!'):format(
      sh_quote(core.lib_path), sh_quote(root), args, sh_quote(tmp .. '/first.log')))
    local pid = tonumber(p:read('*l'))
    p:close()
    local t = 0
    while (count(path) or 0) < 1 and alive(pid) and t < 120 do sleep(0.1) t = t + 0.1 end
    assert.is_true(alive(pid), 'the first writer ended before the second started: ' .. cli.read(tmp .. '/first.log'))
    local seen = count(path) -- a reader while the first writes
    local out, rc = moreau_env('', args)
    assert.are.equal(1, rc, out)
    assert.truthy(out:find('store ' .. path .. ': another process is writing this store (it holds the lock ' ..
      path .. '-lock); two processes cannot write one store', 1, true), out)
    assert.truthy(out:find('RUN-K-of-N.db', 1, true), out)
    assert.is_true(seen >= 1)
    while alive(pid) do sleep(0.2) end
    same_as_reference(path)
    -- the first is gone: the same command now opens it (nothing left to do)
    out, rc = moreau_env('', args)
    assert.are.equal(0, rc, out)
    assert.truthy(out:find(('%s holds %d images (0 computed now)'):format(path, N), 1, true), out)
  end)

  it('refuses to resume when an image folder changed since the store was made, naming the image', function()
    local moreau = require 'moreau'
    local test = moreau.data.fashion_mnist { split = 'test' }
    local dir = tmp .. '/changing'
    assert(lfs.mkdir(dir))
    for c, name in ipairs { 'a', 'b' } do
      assert(lfs.mkdir(dir .. '/' .. name))
      for i = 0, 2 do moreau.data.save_png(('%s/%s/%d.png'):format(dir, name, i), test.images:select(3 * c + i)) end
    end
    local cmd = ('explain --data=folder:%s --methods=gradient --store=%s'):format(sh_quote(dir),
      sh_quote(tmp .. '/changing.db'))
    local out, rc = moreau_env('', cmd)
    assert.are.equal(0, rc, out)
    -- unchanged: resumes with nothing to do
    out, rc = moreau_env('', cmd)
    assert.are.equal(0, rc, out)
    assert.truthy(out:find('holds 6 images (0 computed now)', 1, true), out)
    -- a file renamed: every id after it now reads another file
    assert(os.rename(dir .. '/a/0.png', dir .. '/a/9.png'))
    out, rc = moreau_env('', cmd)
    assert.are.equal(1, rc, out)
    local function esc(t) return (t:gsub('%p', '%%%0')) end
    assert.truthy(out:find(esc(('store %s/changing.db: image 0 was explained from a/0.png (noise key '):format(tmp)) ..
      '%x+' .. esc(('), but --data=folder:%s now gives a/1.png (noise key '):format(dir)) .. '%x+' ..
      esc(') for it: the data changed since the store was made; use a new --store for the changed data')), out)
    -- the same file name with other pixels: the noise key tells
    assert(os.rename(dir .. '/a/9.png', dir .. '/a/0.png'))
    moreau.data.save_png(dir .. '/b/2.png', test.images:select(1))
    out, rc = moreau_env('', cmd)
    assert.are.equal(1, rc, out)
    assert.truthy(out:find('image 5 was explained from b/2.png (noise key ', 1, true), out)
    assert.truthy(out:find('now gives b/2.png (noise key ', 1, true), out)
    local s = store.open(tmp .. '/changing.db', { readonly = true })
    assert.are.equal(6, s:count())
    s:close()
  end)

  it('records the code revision of engine/, bindings/ and models/, not of the whole commit', function()
    local s = store.open(ref_path, { readonly = true })
    local params = s:params()
    local rev = params.code_revision
    local info = s:info()
    s:close()
    assert.is_nil(params.git_revision) -- the full commit is no parameter: a docs-only commit changes no store
    local git = io.popen(('git -C %s rev-parse HEAD:engine HEAD:bindings HEAD:models 2>/dev/null'):format(sh_quote(root)))
    local trees = {}
    for line in git:lines() do trees[#trees + 1] = line end
    git:close()
    if #trees ~= 3 then
      -- an installed tree (no .git): as before, nothing to key on
      assert.are.equal('unknown', rev)
      return
    end
    local want = ('engine:%s bindings:%s models:%s'):format(trees[1]:sub(1, 12), trees[2]:sub(1, 12),
      trees[3]:sub(1, 12))
    assert.truthy(rev == want or rev == want .. '+dirty', ('%s, want %s'):format(tostring(rev), want))
    -- the full commit stays in the run table, as information no resume compares
    assert.is_string(info.git_revision)
  end)

  it('names the problem without a Lua file:line: unknown model, missing folder, bad files, no folder for the store', function()
    -- Fashion-MNIST files whose label count is not the image count (IDX: big-endian magic and sizes)
    local fm = tmp .. '/fm'
    assert(lfs.mkdir(fm))
    local function be32(v) return string.char(math.floor(v / 2 ^ 24) % 256, math.floor(v / 2 ^ 16) % 256,
      math.floor(v / 2 ^ 8) % 256, v % 256) end
    cli.write(fm .. '/t10k-images-idx3-ubyte', be32(0x803) .. be32(2) .. be32(28) .. be32(28) .. string.rep('\0', 2 * 784))
    cli.write(fm .. '/t10k-labels-idx1-ubyte', be32(0x801) .. be32(3) .. '\1\2\3')
    -- a file that is not a CIFAR-10 batch, and a folder with a file that is no image
    cli.write(tmp .. '/notcifar.bin', string.rep('x', 1221))
    assert(lfs.mkdir(tmp .. '/junk'))
    assert(lfs.mkdir(tmp .. '/junk/x'))
    cli.write(tmp .. '/junk/x/0.png', 'garbage')
    local cases = {
      { '', '--model=nosuch --data=fashion-mnist:test --store=x.db',
        "--model=nosuch: models: no shipped model 'nosuch' (shipped: resnet_fmnist)" },
      { '', '--data=folder:' .. tmp .. '/nonexist --store=x.db',
        '--data=folder:' .. tmp .. '/nonexist: data.image_folder: cannot read directory ' .. tmp .. '/nonexist' },
      { '', '--data=cifar10:' .. tmp .. '/notcifar.bin --store=x.db', '--data=cifar10:' .. tmp .. '/notcifar.bin: ' ..
        "mr_cifar_load: '" .. tmp .. "/notcifar.bin' is not a CIFAR-10 binary batch: its size 1221 is not a multiple of 3073" },
      { '', '--data=folder:' .. tmp .. '/junk --store=x.db', '--data=folder:' .. tmp .. "/junk: mr_image_load: '" ..
        tmp .. "/junk/x/0.png' is not a readable image" },
      { 'export MOREAU_FMNIST_DIR=' .. sh_quote(fm) .. ';', '--data=fashion-mnist:test --store=x.db',
        '--data=fashion-mnist:test: data.fashion_mnist: ' .. fm .. '/t10k-images-idx3-ubyte holds 2 images but ' ..
        fm .. '/t10k-labels-idx1-ubyte holds 3 labels' },
      { '', '--data=fashion-mnist:test --range=0:2 --store=' .. tmp .. '/no/folder/RUN.db',
        'store ' .. tmp .. '/no/folder/RUN.db: cannot create it: its folder ' .. tmp .. '/no/folder does not exist' },
    }
    for _, c in ipairs(cases) do
      local out, rc = moreau_env(c[1] .. ' cd ' .. sh_quote(tmp) .. ' &&', 'explain --methods=gradient ' .. c[2])
      assert.are.equal(1, rc, out)
      assert.truthy(out:find('moreau explain: ' .. c[3], 1, true), ('%s\n-> %s'):format(c[2], out))
      assert.is_nil(out:find('%.lua:%d+:'), out)
    end
    assert.is_nil(lfs.attributes(tmp .. '/x.db'))
  end)

  it('refuses bad --data, --range and --shard before anything runs', function()
    local cases = {
      { '--data=mnist:test --store=x.db', '--data must be fashion-mnist:test, fashion-mnist:train, folder:PATH or cifar10:PATH, got mnist:test' },
      { '--data=fashion-mnist:test --range=5:2 --store=x.db', '--range=5:2 is empty' },
      { '--data=fashion-mnist:test --range=0:10001 --store=x.db', 'goes past the data set, which holds 10000 images' },
      { '--data=fashion-mnist:test --range=0:4 --shard=3/3 --store=x.db', '--shard must be K/N with 0 <= K < N' },
      { '--data=fashion-mnist:test --range=0:4', 'give --store=FILE' },
      { '--data=fashion-mnist:test --range=0:4 --store=x.db --bacth=3', "unknown parameter 'bacth'" },
    }
    for _, c in ipairs(cases) do
      local out, rc = moreau_env('cd ' .. sh_quote(tmp) .. ' &&', 'explain ' .. c[1])
      assert.are.equal(1, rc, out)
      assert.truthy(out:find(c[2], 1, true), ('%s\n-> %s'):format(c[1], out))
    end
    local out, rc = moreau_env('', 'explain --data=fashion-mnist:test --help')
    assert.are.equal(0, rc, out)
    assert.truthy(out:find('--shard', 1, true) and out:find('--range', 1, true), out)
  end)
end)
