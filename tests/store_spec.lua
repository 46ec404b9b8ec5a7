-- moreau.store (docs/store.md): the SQLite results store written and read
-- back bit for bit, its refusals, exports, merge, shards from launcher
-- environments, the statistics over stores (closed forms and Student's t
-- tables), and the docs' Python snippet run against a store.
local ffi = require 'ffi'
local lfs = require 'lfs'
local store = require 'moreau.store'
local dataset = require 'moreau.dataset'
local T = require 'moreau.tensor'
local cli = require 'helpers.cli'

local tmp = cli.tmpdir()
local SEED = 20261130
print('store_spec seed ' .. SEED)

-- a map of deterministic pseudo-random floats (some exact zeros), from the seed
local function fake_map(id, j)
  local v = T.randn({ 1, 1, 4, 3 }, { seed = SEED, stream = id * 16 + j })
  v:set(0, 1, 1, 1, 1)
  return v
end

local PARAMS = { data = 'fashion-mnist:test', range = { 0, 6 }, seed = 7, methods = { 'a', 'b' },
  ['options.a'] = { T = 3, eta = 0.1 }, shard = '0/1' }

local function with(t, k, v)
  local o = {}
  for kk, vv in pairs(t) do o[kk] = vv end
  o[k] = v
  return o
end

local function put(s, id)
  s:put_image { image = id, source = 'test#' .. id, label = id % 3, prediction = (id + 1) % 3, target = (id + 1) % 3,
    probabilities = { 0.25, 0.5, 0.25 }, noise_key = 0x0123456789abcdefULL + id,
    methods = {
      { method = 'a', map = fake_map(id, 1), options = { T = 3 }, seconds = 0.5, metrics = { sparsity = 1 / 12, gini = id / 10 } },
      { method = 'b', map = fake_map(id, 2), options = {}, seconds = 0.25, metrics = { sparsity = 0 } },
    } }
end

local function bytes_of(t) return ffi.string(t:data(), 4 * t:numel()) end

describe('moreau.store', function()
  it('writes an image with all its maps and reads them back bit for bit', function()
    local path = tmp .. '/one.db'
    local s = store.open(path, { params = PARAMS })
    for id = 0, 2 do put(s, id) end
    assert.are.equal(3, s:count())
    assert.are.same({ 0, 1, 2 }, s:images())
    assert.are.same({ 'a', 'b' }, s:methods())
    local rec = s:image(1)
    assert.are.same({ image = 1, source = 'test#1', label = 1, prediction = 2, target = 2,
      probabilities = { 0.25, 0.5, 0.25 }, noise_key = '0123456789abcdf0' }, rec)
    assert.is_nil(s:image(5))
    for id = 0, 2 do
      assert.are.equal(bytes_of(fake_map(id, 1)), bytes_of(s:map(id, 'a')))
      assert.are.same({ 1, 1, 4, 3 }, s:map(id, 'b'):shape())
    end
    local maps, ids = s:maps('b')
    assert.are.same({ 3, 1, 4, 3 }, maps:shape())
    assert.are.same({ 0, 1, 2 }, ids)
    assert.are.equal(bytes_of(fake_map(2, 2)), bytes_of(maps:narrow(3, 3)))
    local v, vid = s:metric('a', 'gini')
    assert.are.same({ 0, 0.1, 0.2 }, v)
    assert.are.same({ 0, 1, 2 }, vid)
    assert.are.same({ 0.5, 0.5, 0.5 }, (s:metric('a', 'seconds')))
    assert.are.same({ T = 3 }, s:options('a'))
    assert.are.same(PARAMS, s:params())
    local info = s:info()
    assert.are.equal(store.SCHEMA, info.schema)
    assert.are.equal(require('moreau').version, info.versions.moreau)
    assert.is_string(info.git_revision)
    assert.is_true((s:check()))
    s:close()
    s:close() -- twice: no error
    assert.has_error(function() s:count() end, 'store ' .. path .. ': closed')
    -- reopened with the same parameters: resumes; with others: refused, naming the parameter
    s = store.open(path, { params = PARAMS })
    assert.are.equal(3, s:count())
    s:close()
    assert.has_error(function() store.open(path, { params = with(PARAMS, 'seed', 8) }) end,
      'store ' .. path .. ' was made with other parameters: seed is 7 in the store, 8 here; use another --store ' ..
      'for this run, or the same parameters to resume it')
    assert.has_error(function() store.open(path, { params = with(PARAMS, 'options.a', { T = 3, eta = 0.2 }) }) end,
      'store ' .. path .. ' was made with other parameters: options.a is {"T":3,"eta":0.10000000000000001} in the ' ..
      'store, {"T":3,"eta":0.20000000000000001} here; use another --store for this run, or the same parameters to resume it')
    assert.has_error(function() store.open(path, { params = with(PARAMS, 'extra', true) }) end,
      'store ' .. path .. ' was made with other parameters: extra is absent in the store, true here; use another ' ..
      '--store for this run, or the same parameters to resume it')
  end)

  it('refuses an image twice, and keeps the store as it was', function()
    local path = tmp .. '/twice.db'
    local s = store.open(path, { params = PARAMS })
    put(s, 4)
    assert.has_error(function() put(s, 4) end, 'store ' .. path .. ': image 4 is already there')
    assert.are.equal(1, s:count())
    assert.is_true((s:check()))
    -- a write that fails half way (a map that is not a tensor) leaves nothing of the image
    assert.has_error(function()
      s:put_image { image = 5, source = 'x', prediction = 0, target = 0, probabilities = { 1 }, noise_key = '00',
        methods = { { method = 'a', map = fake_map(5, 1) }, { method = 'b', map = 'not a tensor' } } }
    end)
    assert.are.same({ 4 }, s:images())
    assert.is_true((s:check()))
    s:close()
  end)

  it('refuses a missing file, a file that is not a store, and writes to a store opened read-only', function()
    assert.has_error(function() store.open(tmp .. '/none.db') end, 'store ' .. tmp .. '/none.db: no such file ' ..
      '(a store is created by `moreau explain --data=... --store=' .. tmp .. '/none.db`)')
    local other = tmp .. '/other.db'
    os.execute(("sqlite3 %q 'CREATE TABLE t (x)' 2>/dev/null || luajit -e 'io.open(\"%s\", \"wb\"):write(string.rep(\"x\", 4096))'")
      :format(other, other))
    local ok, err = pcall(store.open, other)
    assert.is_false(ok)
    assert.truthy(tostring(err):find('store ' .. other .. ': ', 1, true), err)
    assert.truthy(tostring(err):find('not a moreau store', 1, true) or tostring(err):find('not a database', 1, true), err)
    local s = store.open(tmp .. '/one.db', { readonly = true })
    assert.has_error(function() put(s, 9) end, 'store ' .. tmp .. '/one.db: opened read-only')
    s:close()
    assert.has_error(function() store.json({ f = print }) end,
      'store: value.f is a function; a store records strings, numbers, booleans and tables of them')
    assert.has_error(function() store.json(0 / 0) end, 'store: value is nan, which JSON cannot hold')
  end)

  it('exports every map to safetensors and a row per (image, method) to CSV', function()
    local s = store.open(tmp .. '/one.db', { readonly = true })
    local st_path = tmp .. '/one.safetensors'
    assert.are.equal(3, s:export_safetensors(st_path))
    local tensors, meta = require('moreau.safetensors').load(st_path)
    assert.are.equal(bytes_of(s:maps('a')), bytes_of(tensors.a))
    assert.are.equal(bytes_of(s:maps('b')), bytes_of(tensors.b))
    assert.are.equal('[0,1,2]', meta.image_ids)
    assert.are.same(PARAMS, require('cjson').decode(meta.params))
    local csv = tmp .. '/one.csv'
    assert.are.equal(6, s:export_csv(csv))
    local lines = {}
    for line in io.lines(csv) do lines[#lines + 1] = line end
    assert.are.equal('image,source,label,prediction,target,p_target,method,seconds,gini,sparsity', lines[1])
    assert.are.equal('1,test#1,1,2,2,0.25,a,0.5,0.1,0.0833333333', lines[4])
    assert.are.equal('1,test#1,1,2,2,0.25,b,0.25,,0', lines[5])
    s:close()
  end)

  it('merges the stores of shards, and refuses overlaps, gaps and other runs', function()
    local parts = {}
    for k = 0, 2 do
      parts[k + 1] = ('%s/m-%d-of-3.db'):format(tmp, k)
      local s = store.open(parts[k + 1], { params = with(PARAMS, 'shard', k .. '/3') })
      local lo, hi = store.shard_range(0, 6, k, 3)
      for id = lo, hi - 1 do put(s, id) end
      s:close()
    end
    local out = tmp .. '/merged.db'
    assert.are.equal(6, store.merge(parts, out))
    local m = store.open(out, { readonly = true })
    assert.are.same({ 0, 1, 2, 3, 4, 5 }, m:images())
    for id = 0, 5 do assert.are.equal(bytes_of(fake_map(id, 2)), bytes_of(m:map(id, 'b'))) end
    assert.are.equal('0/1', m:params().shard)
    assert.are.same(parts, m:info().merged_from)
    m:close()
    assert.has_error(function() store.merge(parts, out) end,
      'store.merge: ' .. out .. ' exists; the merged store is a new file (remove it, or name another)')
    assert.has_error(function() store.merge({ parts[1], parts[3] }, tmp .. '/m2.db') end,
      'store.merge: shard 1/3 is missing (given: 2 stores of 3 shards)')
    -- a shard store lacking an image of its block
    local gap = tmp .. '/g-1-of-3.db'
    local s = store.open(gap, { params = with(PARAMS, 'shard', '1/3') })
    put(s, 2)
    s:close()
    assert.has_error(function() store.merge({ parts[1], gap, parts[3] }, tmp .. '/m3.db') end,
      'store.merge: 1 image(s) of the range 0:6 are in no store, the first 3 (shard 1/3, ' .. gap ..
      ', is unfinished: run its command again to resume it)')
    assert.has_error(function() store.merge({ parts[1], parts[2], parts[2] }, tmp .. '/m4.db') end,
      'store.merge: ' .. parts[2] .. ' and ' .. parts[2] .. ' are both shard 1/3')
    local alien = tmp .. '/alien.db'
    s = store.open(alien, { params = with(with(PARAMS, 'shard', '1/3'), 'git_revision', 'abc1234') })
    s:close()
    assert.has_error(function() store.merge({ parts[1], alien, parts[3] }, tmp .. '/m5.db') end,
      'store.merge: ' .. parts[1] .. ' and ' .. alien .. ' come from different runs: git_revision is absent in ' ..
      parts[1] .. ', "abc1234" in ' .. alien)
    for _, f in ipairs { 'm2.db', 'm3.db', 'm4.db', 'm5.db' } do assert.is_nil(lfs.attributes(tmp .. '/' .. f)) end
  end)

  it('aggregates a metric across shards: mean, sd (n - 1) and the Student-t 95% interval', function()
    -- Student's t quantiles t_{0.975, nu} (tables; e.g. R's qt(0.975, nu))
    for nu, q in pairs { [1] = 12.706204736174698, [2] = 4.302652729749464, [5] = 2.570581835636314,
      [10] = 2.2281388519649385, [30] = 2.0422724563012373 } do
      assert.is_true(math.abs(store.t_quantile(0.975, nu) - q) < 1e-9 * q, ('t(0.975, %d) = %.15g'):format(nu,
        store.t_quantile(0.975, nu)))
    end
    assert.is_true(math.abs(store.t_quantile(0.975, 1e7) - 1.959963984540054) < 1e-6)
    local a = store.aggregate { 1, 2, 3, 4, 0 / 0 }
    assert.are.equal(4, a.n)
    assert.are.equal(2.5, a.mean)
    assert.is_true(math.abs(a.sd - math.sqrt(5 / 3)) < 1e-15)
    local hw = 3.182446305284263 * math.sqrt(5 / 3) / 2
    assert.is_true(math.abs(a.half_width - hw) < 1e-9, a.half_width)
    assert.is_true(math.abs(a.lo - (2.5 - hw)) < 1e-9 and math.abs(a.hi - (2.5 + hw)) < 1e-9)
    assert.are.equal('student-t', a.method)
    local one = store.aggregate { 3 }
    assert.are.equal(3, one.mean)
    assert.is_true(one.sd ~= one.sd)
    assert.has_error(function() store.aggregate({ 1, 'x' }) end, 'store.aggregate: values[2] is a string, not a number')
    -- across the three shard stores of the merge test: image id / 10 for gini
    local parts = {}
    for k = 0, 2 do parts[k + 1] = ('%s/m-%d-of-3.db'):format(tmp, k) end
    local g = store.aggregate_metric(parts, 'a', 'gini')
    assert.are.equal(6, g.n)
    assert.are.equal(3, g.stores)
    assert.is_true(math.abs(g.mean - 0.25) < 1e-15)
    assert.is_true(math.abs(g.sd - math.sqrt(0.035)) < 1e-15)
    assert.has_error(function() store.aggregate_metric({ parts[1], tmp .. '/merged.db' }, 'a', 'gini') end,
      'store.aggregate_metric: image 0 is in ' .. parts[1] .. ' and ' .. tmp .. '/merged.db')
  end)

  it('splits a range into shards that cover it once, and names their files', function()
    for _, case in ipairs { { 0, 10, 3 }, { 5, 6, 4 }, { 0, 10000, 16 }, { 7, 30, 7 } } do
      local a, b, n = case[1], case[2], case[3]
      local seen, prev_hi, sizes = {}, a, {}
      for k = 0, n - 1 do
        local lo, hi = store.shard_range(a, b, k, n)
        assert.are.equal(prev_hi, lo)
        prev_hi = hi
        sizes[#sizes + 1] = hi - lo
        for id = lo, hi - 1 do
          assert.is_nil(seen[id])
          seen[id] = true
          assert.are.equal(k, store.shard_of(id, a, b, n))
        end
      end
      assert.are.equal(b, prev_hi)
      assert.is_true(math.max(unpack(sizes)) - math.min(unpack(sizes)) <= 1)
    end
    assert.are.equal('RUN.db', store.shard_path('RUN.db', 0, 1))
    assert.are.equal('RUN-2-of-16.db', store.shard_path('RUN.db', 2, 16))
    assert.are.equal('out/run.v2-0-of-3.db', store.shard_path('out/run.v2.db', 0, 3))
    assert.are.equal('out.d/RUN-1-of-2', store.shard_path('out.d/RUN', 1, 2))
    assert.are.equal('part-3-16.db', store.shard_path('part-{K}-{N}.db', 3, 16))
  end)

  it('reads the shard from SLURM arrays, Open MPI and PMI, and refuses what it cannot read', function()
    local function env(t) return function(k) return t[k] end end
    local function shard(t) return { dataset.shard_from_env(env(t)) } end
    assert.are.same({ 0, 1 }, shard {})
    assert.are.same({ 3, 16, 'SLURM_ARRAY_TASK_ID=3, an array of 16 tasks' },
      shard { SLURM_ARRAY_TASK_ID = '3', SLURM_ARRAY_TASK_COUNT = '16', SLURM_ARRAY_TASK_MIN = '0', SLURM_ARRAY_TASK_MAX = '15' })
    -- --array=1-16: COUNT 16, ids 1..16
    assert.are.same({ 15, 16, 'SLURM_ARRAY_TASK_ID=16, an array of 16 tasks' },
      shard { SLURM_ARRAY_TASK_ID = '16', SLURM_ARRAY_TASK_COUNT = '16', SLURM_ARRAY_TASK_MIN = '1', SLURM_ARRAY_TASK_MAX = '16' })
    -- no COUNT (older Slurm): MAX + 1 when MIN is 0; steps
    assert.are.same({ 4, 8, 'SLURM_ARRAY_TASK_ID=4, an array of 8 tasks' }, shard { SLURM_ARRAY_TASK_ID = '4', SLURM_ARRAY_TASK_MAX = '7' })
    assert.are.same({ 2, 4, 'SLURM_ARRAY_TASK_ID=4, an array of 4 tasks' },
      shard { SLURM_ARRAY_TASK_ID = '4', SLURM_ARRAY_TASK_MIN = '0', SLURM_ARRAY_TASK_MAX = '6', SLURM_ARRAY_TASK_STEP = '2' })
    -- SLURM before MPI
    assert.are.same({ 1, 2, 'SLURM_ARRAY_TASK_ID=1, an array of 2 tasks' },
      shard { SLURM_ARRAY_TASK_ID = '1', SLURM_ARRAY_TASK_COUNT = '2', OMPI_COMM_WORLD_RANK = '0', OMPI_COMM_WORLD_SIZE = '5' })
    assert.are.same({ 2, 5, 'OMPI_COMM_WORLD_RANK=2 of OMPI_COMM_WORLD_SIZE=5' },
      shard { OMPI_COMM_WORLD_RANK = '2', OMPI_COMM_WORLD_SIZE = '5' })
    assert.are.same({ 0, 3, 'PMI_RANK=0 of PMI_SIZE=3' }, shard { PMI_RANK = '0', PMI_SIZE = '3' })
    assert.has_error(function() shard { SLURM_ARRAY_TASK_ID = '7', SLURM_ARRAY_TASK_COUNT = '3', SLURM_ARRAY_TASK_MAX = '7' } end,
      'the SLURM array (SLURM_ARRAY_TASK_ID=7, MIN=0, MAX=7, STEP=1, COUNT=3) is not one evenly stepped range of ' ..
      'task ids; give --shard=K/N to each task')
    assert.has_error(function() shard { SLURM_ARRAY_TASK_ID = '2' } end,
      'SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_COUNT nor SLURM_ARRAY_TASK_MAX: give --shard=K/N')
    assert.has_error(function() shard { OMPI_COMM_WORLD_RANK = '3', OMPI_COMM_WORLD_SIZE = '3' } end,
      'OMPI_COMM_WORLD_RANK=3 needs OMPI_COMM_WORLD_SIZE above it, got 3')
    assert.has_error(function() shard { PMI_RANK = 'x' } end, 'PMI_RANK=x is not a non-negative integer (decimal digits only)')
    -- srun without PMI: SLURM_PROCID of SLURM_STEP_NUM_TASKS (srun's step variables), after the MPI launchers
    assert.are.same({ 1, 2, 'SLURM_PROCID=1 of SLURM_STEP_NUM_TASKS=2' },
      shard { SLURM_PROCID = '1', SLURM_STEP_NUM_TASKS = '2', SLURM_NTASKS = '2', SLURM_STEP_ID = '0' })
    assert.are.same({ 3, 4, 'PMI_RANK=3 of PMI_SIZE=4' },
      shard { PMI_RANK = '3', PMI_SIZE = '4', SLURM_PROCID = '3', SLURM_STEP_NUM_TASKS = '4' })
    -- a batch script (sbatch --ntasks=4) is one process: SLURM_NTASKS is not the number of processes here
    assert.are.same({ 0, 1 }, shard { SLURM_PROCID = '0', SLURM_NTASKS = '4' })
    assert.has_error(function() shard { SLURM_PROCID = '2', SLURM_STEP_NUM_TASKS = '2' } end,
      'SLURM_PROCID=2 needs SLURM_STEP_NUM_TASKS above it, got 2')
    -- PMIx: the rank, and the size from srun's step (PMIx has no size variable)
    assert.are.same({ 5, 16, 'PMIX_RANK=5 of SLURM_STEP_NUM_TASKS=16' },
      shard { PMIX_RANK = '5', SLURM_STEP_NUM_TASKS = '16' })
    assert.has_error(function() shard { PMIX_RANK = '5' } end,
      'PMIX_RANK=5 is set, but PMIx gives the number of processes in no environment variable (and ' ..
      'SLURM_STEP_NUM_TASKS is unset): give --shard=K/N to each process')
    -- one strict reading of every number: digits only, bounded (no overflow to a negative count)
    assert.has_error(function() shard { SLURM_ARRAY_TASK_ID = '1', SLURM_ARRAY_TASK_COUNT = '99999999999999999999' } end,
      'SLURM_ARRAY_TASK_COUNT=99999999999999999999 is too large (at most 1000000)')
    assert.has_error(function() shard { SLURM_ARRAY_TASK_ID = '1', SLURM_ARRAY_TASK_COUNT = '1000001' } end,
      'SLURM_ARRAY_TASK_COUNT=1000001 is too large (at most 1000000)')
    for _, bad in ipairs { '0x3', '1e1', ' 1', '1 ', '+1', '-1', '1.0', '３' } do
      assert.has_error(function() shard { SLURM_ARRAY_TASK_ID = '1', SLURM_ARRAY_TASK_COUNT = bad } end,
        ('SLURM_ARRAY_TASK_COUNT=%s is not a non-negative integer (decimal digits only)'):format(bad))
      assert.has_error(function() shard { OMPI_COMM_WORLD_RANK = bad, OMPI_COMM_WORLD_SIZE = '4' } end,
        ('OMPI_COMM_WORLD_RANK=%s is not a non-negative integer (decimal digits only)'):format(bad))
    end
    assert.has_error(function() shard { OMPI_COMM_WORLD_RANK = '0', OMPI_COMM_WORLD_SIZE = '0' } end,
      'OMPI_COMM_WORLD_RANK=0 needs OMPI_COMM_WORLD_SIZE above it, got 0')
    assert.are.same({ 7, 1000000 }, { dataset.parse_shard('7/1000000') })
    assert.are.same({ 1, 3 }, { dataset.parse_shard('01/003') })
    assert.has_error(function() dataset.parse_shard('1/99999999999999999999') end,
      '--shard=1/99999999999999999999: N=99999999999999999999 is too large (at most 1000000)')
    assert.has_error(function() dataset.parse_shard('1/1000001') end,
      '--shard=1/1000001: N=1000001 is too large (at most 1000000)')
    assert.has_error(function() dataset.parse_shard('0x1/3') end,
      '--shard must be K/N with 0 <= K < N (K counts from 0), got 0x1/3')
    assert.are.same({ 2, 5 }, { dataset.parse_shard('2/5') })
    assert.has_error(function() dataset.parse_shard('5/5') end, '--shard must be K/N with 0 <= K < N (K counts from 0), got 5/5')
    assert.are.same({ 0, 10 }, { dataset.parse_range('', 10) })
    assert.are.same({ 3, 10 }, { dataset.parse_range('3:', 10) })
    assert.has_error(function() dataset.parse_range('3-5', 10) end, '--range must be A:B (0-based image ids, B excluded), got 3-5')
  end)

  it('lets one writer in at a time (a lock beside the store), and readers always', function()
    local path = tmp .. '/locked.db'
    local w = store.open(path, { params = PARAMS })
    put(w, 0)
    assert.truthy(lfs.attributes(path .. '-lock'), 'the lock file is beside the store')
    local msg = 'store ' .. path .. ': another process is writing this store (it holds the lock ' .. path ..
      '-lock); two processes cannot write one store: let the other finish (run the same command again afterwards ' ..
      'to resume), or give each process its own store (the shards of a run write RUN-K-of-N.db: --shard=K/N, or a ' ..
      'SLURM array or MPI launcher)'
    -- flock(2) locks an open file description: a second open in this process is a second writer
    assert.has_error(function() store.open(path, { params = PARAMS }) end, msg)
    -- readers: read-only, and store.open without params until it writes
    local r = store.open(path, { readonly = true })
    assert.are.equal(1, r:count())
    r:close()
    local r2 = store.open(path)
    assert.are.same({ 0 }, r2:images())
    assert.has_error(function() put(r2, 1) end, msg)
    assert.are.equal(1, r2:count())
    r2:close()
    -- another process: refused while the writer lives, let in once it is gone
    local broot = require('moreau.core').root .. '/bindings'
    local lua = ('package.path = %q .. package.path; '):format(broot .. '/?.lua;' .. broot .. '/?/init.lua;') ..
      ([[local s = require('moreau.store'); local ok, e = pcall(s.open, %q, { params = %s }); ]] ..
      [[print(ok and 'opened' or e); if ok then s = e; s:close() end]]):format(path,
      'require("cjson").decode(' .. ('%q'):format(require('cjson').encode(PARAMS)) .. ')')
    local function other()
      local f = io.open(tmp .. '/other_writer.lua', 'wb')
      f:write(lua)
      f:close()
      local p = io.popen(('MOREAU_LIB=%q luajit %q 2>&1'):format(require('moreau.core').lib_path,
        tmp .. '/other_writer.lua'))
      local out = p:read('*a')
      p:close()
      return out
    end
    local out = other()
    assert.truthy(out:find(msg, 1, true), out)
    w:close()
    assert.are.equal('opened\n', other())
    w = store.open(path, { params = PARAMS })
    put(w, 1)
    assert.are.same({ 0, 1 }, w:images())
    w:close()
  end)

  it('names the store and the parameter of a value that is not JSON, and a missing folder', function()
    local path = tmp .. '/badjson.db'
    local s = store.open(path, { params = PARAMS })
    s:close()
    local ffi_ok = os.execute(('sqlite3 %q "UPDATE params SET value = \'{\"T\":\' WHERE name = \'options.a\'"')
      :format(path)) == 0
    if not ffi_ok then
      pending('no sqlite3 shell to damage a store with')
      return
    end
    s = store.open(path, { readonly = true })
    local ok, err = pcall(s.params, s)
    s:close()
    assert.is_false(ok)
    assert.truthy(tostring(err):match('^store ' .. path:gsub('%p', '%%%0') .. ': parameter options%.a is not valid ' ..
      'JSON %(.+%): the store is damaged, or was written by another tool$'), err)
    assert.has_error(function() store.open(tmp .. '/no/such/folder/RUN.db', { params = PARAMS }) end,
      'store ' .. tmp .. '/no/such/folder/RUN.db: cannot create it: its folder ' .. tmp .. '/no/such/folder does ' ..
      'not exist (create it first, or give another --store)')
  end)

  it("runs the Python snippet of docs/store.md against a store (sqlite3 + numpy.frombuffer)", function()
    local py = '/usr/bin/python3'
    if os.execute(py .. ' -c "import numpy, sqlite3" >/dev/null 2>&1') ~= 0 then
      print('the Python snippet is not run: ' .. py .. ' cannot import numpy (Debian: python3-numpy); it is a ' ..
        'reader of the docs, no dependency of moreau')
      pending('numpy is not importable by ' .. py)
      return
    end
    local root = require('moreau.isolation').realpath(require('moreau.core').root)
    local doc = cli.read(root .. '/docs/store.md')
    local code = doc:match('```python\n(.-)```')
    assert.truthy(code, 'docs/store.md has a ```python block')
    cli.write(tmp .. '/snippet.py', code)
    -- a path with '#', '?', '%' and a space, which a URI must quote
    local odd = tmp .. '/odd #1? 100%'
    assert(lfs.mkdir(odd))
    cli.write(odd .. '/merged.db', cli.read(tmp .. '/merged.db'))
    local p = io.popen(('%s %q %q 2>&1'):format(py, tmp .. '/snippet.py', odd .. '/merged.db'))
    local out = p:read('*a')
    p:close()
    local s = store.open(tmp .. '/merged.db', { readonly = true })
    local lines = {}
    for line in out:gmatch('[^\n]+') do lines[#lines + 1] = line end
    assert.are.equal(12, #lines, out)
    local i = 0
    for _, id in ipairs(s:images()) do
      for _, method in ipairs(s:methods()) do
        i = i + 1
        local m = s:map(id, method)
        local vals = m:totable()
        local k, nz = 1, 0
        for j, v in ipairs(vals) do
          if math.abs(v) > math.abs(vals[k]) then k = j end
          if v ~= 0 then nz = nz + 1 end
        end
        local rec = s:image(id)
        local img, meth, shape, peak, count, p_target = lines[i]:match('^(%d+) (%S+) (%S+) (%S+) (%d+) (%S+)$')
        assert.are.equal(id, tonumber(img), lines[i])
        assert.are.equal(method, meth)
        assert.are.equal('1x1x4x3', shape)
        assert.are.equal(vals[k], tonumber(peak)) -- float32 -> double: exact on both sides
        assert.are.equal(nz, tonumber(count))
        assert.are.equal(rec.probabilities[rec.target + 1], tonumber(p_target))
      end
    end
    s:close()
  end)
end)
