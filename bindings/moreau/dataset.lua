--- moreau.dataset — explain a whole data set into a results store, and merge
-- the stores of shards (the `moreau explain --data=...` and `moreau merge`
-- commands; docs/store.md).
--
--   moreau explain --data=fashion-mnist:test --range=0:10000 \
--     --methods=gradient,smoothgrad,sparse_moreaugrad --store=RUN.db
--   moreau explain ... --store=RUN.db --shard=2/16      # or from SLURM / mpirun's environment
--   moreau merge RUN-*-of-16.db -o RUN.db
--
-- Images go through the methods in batches (`--batch`, 64 by default), and
-- each finished image is committed to the store in one transaction with all
-- its maps (moreau.store). Running the same command again resumes: the
-- images already in the store are skipped. An image's map depends only on
-- its image, the class explained, the options and the seed: its noise key is
-- the image's content key (docs/determinism.md), never its place in a batch,
-- so the batch size, a resume and the shards change no bit of any map.
local moreau = require 'moreau'
local options = require 'moreau.options'
local store = require 'moreau.store'

local dataset = {}

--- The parameters of the data-set command, as a recipe declares them
-- (moreau.recipe): `moreau explain --data=... --help` lists them. Method
-- options are given as `--KEY.OPTION=VALUE` (experiment.method_option).
dataset.spec = {
  name = 'explain',
  description = 'explain every image of a data set range into a results store (resumable, shardable)',
  params = {
    data = { type = 'string', default = '', domain = 'string',
      help = 'fashion-mnist:test | fashion-mnist:train | folder:PATH | cifar10:PATH (a .bin batch or its folder)' },
    range = { type = 'string', default = '', domain = 'string',
      help = 'images A:B (0-based, B excluded; A: to the end; default: all)' },
    store = { type = 'string', default = '', domain = 'string', file = 'write',
      help = 'the results store (SQLite); with shards RUN-K-of-N.db, or {K} and {N} in the name' },
    shard = { type = 'string', default = '', domain = 'string',
      help = 'K/N: this process explains the K-th (0-based) of N blocks of the range; default: from ' ..
        'SLURM_ARRAY_TASK_ID, OMPI_COMM_WORLD_RANK, PMI_RANK, srun\'s SLURM_PROCID or PMIX_RANK, else 0/1' },
    batch = { type = 'int', default = 64, domain = 'int >= 1', help = 'images per pass (changes no map)' },
    model = { type = 'string', default = 'resnet_fmnist', domain = 'string', help = 'shipped model' },
    methods = { type = 'list', default = { 'gradient', 'smoothgrad', 'sparse_moreaugrad' },
      domain = require('moreau.experiment').METHODS, help = 'methods to run' },
    preset = { type = 'string', default = 'paper', domain = 'one of paper, fast',
      help = "method settings: 'paper' or 'fast' (T = 100, m = 8, fewer samples)" },
    seed = { type = 'int', default = 0, domain = 'seed', help = 'seed of every noise draw' },
    target = { type = 'string', default = 'predicted', domain = 'one of predicted, label',
      help = "the class each map explains: the model's prediction or the true label" },
  },
  method_options = true,
}

--- Whether a `moreau explain` command line is the data-set command: it
-- names --data or --store.
function dataset.wants(args)
  for _, a in ipairs(args) do
    if a:match('^%-%-data$') or a:match('^%-%-data=') or a:match('^%-%-store$') or a:match('^%-%-store=') then
      return true
    end
  end
  return false
end

-- The largest shard count accepted (a bound far above any real job, so a
-- count that overflowed or was mistyped is refused, not wrapped around).
dataset.MAX_SHARDS = 1000000

-- A launcher's number (a rank, a size, an array task id) from its text: decimal
-- digits only (no sign, space, 0x, exponent), at most max. what names the
-- variable or option in the errors.
local function strict_int(v, what, max)
  if not tostring(v):match('^%d+$') then
    error(('%s=%s is not a non-negative integer (decimal digits only)'):format(what, tostring(v)), 0)
  end
  local digits = tostring(v):gsub('^0+(%d)', '%1')
  if #digits > 10 or tonumber(digits) > max then
    error(('%s=%s is too large (at most %d)'):format(what, tostring(v), max), 0)
  end
  return tonumber(digits)
end

-- An environment variable as a non-negative integer, or nil when unset;
-- raises when it is set to anything else. Set but empty (or blanks only) is
-- an error too, not "unset": a launcher that exports PMI_RANK= has failed to
-- give this process its rank, and reading that as "no launcher" would run
-- the whole job on every process. Counts (sizes, COUNT, MAX) are bounded by
-- MAX_SHARDS, task ids by 10^9.
local function env_int(getenv, name, count)
  local v = getenv(name)
  if v == nil then return nil end
  if v:match('^%s*$') then
    error(('%s is set but %s: a launcher sets it to a number (the job would otherwise run whole on ' ..
      'every process); unset it, or give --shard=K/N'):format(name, v == '' and 'empty' or ("blank ('" .. v .. "')")), 0)
  end
  return strict_int(v, name, count and dataset.MAX_SHARDS or 1e9)
end

--- The shard (k, n, where) this process takes from the launcher's
-- environment, when no `--shard` is given; the first of these that is set
-- decides:
--   1. SLURM job arrays (`sbatch --array=MIN-MAX[:STEP]`): k = (ID − MIN)/STEP
--      and n = SLURM_ARRAY_TASK_COUNT; without COUNT, n = (MAX − MIN)/STEP + 1.
--      MIN defaults to 0 and STEP to 1 when unset. An array that is not one
--      evenly stepped range (`--array=0,3,7`) is refused: give --shard.
--   2. Open MPI's mpirun: OMPI_COMM_WORLD_RANK / OMPI_COMM_WORLD_SIZE.
--   3. MPICH, Intel MPI and Slurm's srun with PMI: PMI_RANK / PMI_SIZE.
--   4. Slurm's srun without PMI (`srun -n 16 moreau explain ...`):
--      SLURM_PROCID / SLURM_STEP_NUM_TASKS. srun sets both for each task of
--      a job step (with SLURM_STEP_ID); a batch script itself has
--      SLURM_PROCID = 0 and SLURM_NTASKS (its --ntasks) but runs one process,
--      so SLURM_NTASKS is never read, and SLURM_PROCID without
--      SLURM_STEP_NUM_TASKS means one process (0/1).
--   5. PMIx (`srun --mpi=pmix`, PRRTE's prterun): PMIX_RANK. PMIx gives the
--      size of the job through its API (PMIX_JOB_SIZE), in no environment
--      variable: the size is SLURM_STEP_NUM_TASKS under srun, else it is
--      refused (give --shard).
-- Every number is decimal digits only; sizes and counts are at most
-- dataset.MAX_SHARDS (1,000,000). A variable that is read and set but empty
-- or blank is an error naming it (a broken launcher), not taken as unset.
-- ARGS: getenv (default os.getenv). RETURN: k, n, a text naming the source;
-- or 0, 1, nil outside any launcher. Errors name the variables and values.
function dataset.shard_from_env(getenv)
  getenv = getenv or os.getenv
  local id = env_int(getenv, 'SLURM_ARRAY_TASK_ID')
  if id then
    local min = env_int(getenv, 'SLURM_ARRAY_TASK_MIN') or 0
    local step = env_int(getenv, 'SLURM_ARRAY_TASK_STEP') or 1
    local max = env_int(getenv, 'SLURM_ARRAY_TASK_MAX')
    local count = env_int(getenv, 'SLURM_ARRAY_TASK_COUNT', true)
    if step < 1 then error(('SLURM_ARRAY_TASK_STEP=%d must be at least 1'):format(step), 0) end
    local span = max and (max - min) / step + 1
    local n = count or span
    if not n then
      error('SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_COUNT nor SLURM_ARRAY_TASK_MAX: give --shard=K/N', 0)
    end
    local k = (id - min) / step
    if (span and span ~= n) or k ~= math.floor(k) or k < 0 or k >= n then
      error(('the SLURM array (SLURM_ARRAY_TASK_ID=%d, MIN=%d, MAX=%s, STEP=%d, COUNT=%s) is not one evenly ' ..
        'stepped range of task ids; give --shard=K/N to each task'):format(id, min, tostring(max), step,
        tostring(count)), 0)
    end
    if n > dataset.MAX_SHARDS then
      error(('the SLURM array has %d tasks; at most %d shards'):format(n, dataset.MAX_SHARDS), 0)
    end
    return k, n, ('SLURM_ARRAY_TASK_ID=%d, an array of %d tasks'):format(id, n)
  end
  for _, pair in ipairs { { 'OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE' }, { 'PMI_RANK', 'PMI_SIZE' },
      { 'SLURM_PROCID', 'SLURM_STEP_NUM_TASKS' } } do
    local k = env_int(getenv, pair[1])
    local n = k and env_int(getenv, pair[2], true)
    if pair[1] == 'SLURM_PROCID' and k and not n then
      k = nil -- a batch script (no job step): one process
    end
    if k then
      if not n or n < 1 or k >= n then
        error(('%s=%d needs %s above it, got %s'):format(pair[1], k, pair[2], tostring(getenv(pair[2]))), 0)
      end
      return k, n, ('%s=%d of %s=%d'):format(pair[1], k, pair[2], n)
    end
  end
  local k = env_int(getenv, 'PMIX_RANK')
  if k then
    local n = env_int(getenv, 'SLURM_STEP_NUM_TASKS', true)
    if not n then
      error(('PMIX_RANK=%d is set, but PMIx gives the number of processes in no environment variable (and ' ..
        'SLURM_STEP_NUM_TASKS is unset): give --shard=K/N to each process'):format(k), 0)
    end
    if n < 1 or k >= n then
      error(('PMIX_RANK=%d needs SLURM_STEP_NUM_TASKS above it, got %d'):format(k, n), 0)
    end
    return k, n, ('PMIX_RANK=%d of SLURM_STEP_NUM_TASKS=%d'):format(k, n)
  end
  return 0, 1, nil
end

--- Reads the shard option's K/N. RETURN: k, n. Errors: anything but two
-- decimal integers with 0 <= K < N <= dataset.MAX_SHARDS (the message names
-- `--shard`).
function dataset.parse_shard(s)
  local ks, ns = tostring(s):match('^(%d+)/(%d+)$')
  if not ks then
    error(('--shard must be K/N with 0 <= K < N (K counts from 0), got %s'):format(tostring(s)), 0)
  end
  local n = strict_int(ns, '--shard=' .. tostring(s) .. ': N', dataset.MAX_SHARDS)
  local k = strict_int(ks, '--shard=' .. tostring(s) .. ': K', dataset.MAX_SHARDS)
  if n < 1 or k >= n then
    error(('--shard must be K/N with 0 <= K < N (K counts from 0), got %s'):format(tostring(s)), 0)
  end
  return k, n
end

--- Reads the range option's A:B against a data set of n images.
-- RETURN: first, last (0-based, last excluded). '' is 0:n, 'A:' is A:n.
function dataset.parse_range(s, n)
  if s == '' then return 0, n end
  local a, b = s:match('^(%d+):(%d*)$')
  if not a then error(('--range must be A:B (0-based image ids, B excluded), got %s'):format(s), 0) end
  a, b = tonumber(a), (b == '' and n or tonumber(b))
  if a >= b then error(('--range=%s is empty: A must be below B'):format(s), 0) end
  if b > n then error(('--range=%s goes past the data set, which holds %d images (ids 0..%d)'):format(s, n, n - 1), 0) end
  return a, b
end

-- The images of --data as a data set {images (N, C, H, W) in [0, 1],
-- labels (or nil), n, source(i) -> text}, fitted to the model's input.
local function load_data(spec, card, model)
  local data = moreau.data
  local input = card.model and card.model.input
  local kind, rest = spec:match('^([%w_%-]+):(.+)$')
  local ds
  if kind == 'fashion-mnist' then
    if rest ~= 'test' and rest ~= 'train' then
      error(('--data=%s: the split of fashion-mnist is test or train'):format(spec), 0)
    end
    ds = data.fashion_mnist { split = rest }
    ds.source = function(i) return ('fashion-mnist:%s#%d'):format(rest, i) end
  elseif kind == 'folder' then
    if not input then error(('--data=%s: the model %s has no input shape in its card'):format(spec, model), 0) end
    ds = data.image_folder { dir = rest, size = { input[2], input[3] }, channels = input[1] }
    ds.source = function(i) return ds.files[i + 1]:sub(#rest + 2) end
  elseif kind == 'cifar10' then
    local f = io.open(rest .. '/test_batch.bin', 'rb')
    if f then
      f:close()
      ds = data.cifar10 { dir = rest, split = 'test' }
    else
      ds = data.cifar10 { files = { rest } }
    end
    ds.source = function(i) return ('cifar10:%s#%d'):format(rest, i) end
  else
    error(('--data must be fashion-mnist:test, fashion-mnist:train, folder:PATH or cifar10:PATH, got %s')
      :format(spec == '' and "nothing (give --data)" or spec), 0)
  end
  if input then
    local s = ds.images:shape()
    if s[2] ~= input[1] or s[3] ~= input[2] or s[4] ~= input[3] then
      error(('--data=%s: its images are C×H×W = %dx%dx%d, but the model %s takes %dx%dx%d'):format(spec, s[2], s[3],
        s[4], model, input[1], input[2], input[3]), 0)
    end
  end
  return ds
end

-- What the maps depend on in the source tree, for the store's
-- `code_revision` parameter (docs/store.md, "What a resume compares"): the
-- git tree hashes of engine/, bindings/ and models/ at HEAD
-- (`git rev-parse HEAD:engine`, 12 hex digits each), "+dirty" when a tracked
-- file under them differs from HEAD. A commit that changes only the docs,
-- the tests or the recipes leaves it as it is, so a store made before it
-- still resumes and merges. Untracked files do not count: the store itself
-- may be made inside the tree. Outside a git checkout (an installed tree)
-- it is 'unknown', and a resume compares moreau_version only, as before.
-- The full commit is recorded too, in the run table (git_revision), as
-- information that no resume compares.
local function code_revision()
  local root = require('moreau.core').root
  local q = "'" .. root:gsub("'", "'\\''") .. "'"
  local parts = {}
  for _, dir in ipairs { 'engine', 'bindings', 'models' } do
    local p = io.popen('git -C ' .. q .. ' rev-parse --verify --quiet HEAD:' .. dir .. ' 2>/dev/null')
    local h = p and p:read('*l')
    if p then p:close() end
    if not h or not h:match('^%x+$') then return 'unknown' end
    parts[#parts + 1] = dir .. ':' .. h:sub(1, 12)
  end
  local d = io.popen('git -C ' .. q .. ' status --porcelain --untracked-files=no -- engine bindings models 2>/dev/null')
  local dirty = d and d:read('*l')
  if d then d:close() end
  return table.concat(parts, ' ') .. ((dirty and #dirty > 0) and '+dirty' or '')
end

-- The options a map depends on: chunk and memory_budget only say how the
-- work is split (docs/determinism.md), so a resume may change them.
local function map_options(opts)
  local o = {}
  for k, v in pairs(opts) do
    if k ~= 'chunk' and k ~= 'memory_budget' then o[k] = v end
  end
  return o
end

-- softmax in double, the largest logit subtracted first
local function softmax(z)
  local m, s, p = -math.huge, 0, {}
  for _, v in ipairs(z) do m = math.max(m, v) end
  for i, v in ipairs(z) do p[i] = math.exp(v - m); s = s + p[i] end
  for i = 1, #p do p[i] = p[i] / s end
  return p
end

-- "1h 02m", "3m 05s", "12s"
local function duration(s)
  if s ~= s or s == math.huge then return '?' end
  s = math.floor(s + 0.5)
  if s >= 3600 then return ('%dh %02dm'):format(s / 3600, (s % 3600) / 60) end
  if s >= 60 then return ('%dm %02ds'):format(s / 60, s % 60) end
  return ('%ds'):format(s)
end

-- Runs f; an error it raises loses Lua's "file:line: " prefix (the person
-- running the command needs what went wrong, not where in moreau), and one
-- that names nothing of the command is prefixed with what (the options).
local function plain(f, what)
  local r = { pcall(f) }
  if r[1] then return unpack(r, 2, table.maxn(r)) end
  local msg = tostring(r[2]):gsub('^[^\n]-%.lua:%d+: ', '')
  if not msg:find('--', 1, true) then msg = what .. ': ' .. msg end
  error(msg, 0)
end

-- SIGXFSZ: a write past the file-size limit (`ulimit -f`, RLIMIT_FSIZE)
-- sends it, and its default action kills the process (exit status 153 from
-- a shell) before SQLite sees the failed write. Ignored, the write fails with
-- EFBIG and the store reports it ("the disk refused a write"), keeping every
-- finished image. 25 is SIGXFSZ on Linux (x86-64, arm64 and every
-- architecture but MIPS, SPARC and Alpha: signal(7)), on FreeBSD and on macOS.
local SIGXFSZ = ({ Linux = 25, OSX = 25, BSD = 25 })[require('ffi').os]
local SIG_IGN = 1
local sigxfsz_ignored = false
local function ignore_sigxfsz()
  local ffi = require 'ffi'
  if sigxfsz_ignored or not SIGXFSZ or (ffi.os == 'Linux' and (ffi.arch == 'mips' or ffi.arch == 'mipsel')) then
    return
  end
  pcall(ffi.cdef, 'typedef void (*mr_sighandler_t)(int); mr_sighandler_t signal(int signum, mr_sighandler_t handler);')
  ffi.C.signal(SIGXFSZ, ffi.cast('mr_sighandler_t', SIG_IGN))
  sigxfsz_ignored = true
end

-- On a resume, the images already in the store must be the images the
-- command reads now: for each finished id of [lo, hi), its source and noise
-- key (the key of its normalized pixels, docs/determinism.md) as stored
-- against those of the data now. Raises at the first that differs, naming
-- the image, the stored and the current source.
local function same_data(s, path, ds, norm, lo, hi, finished, p)
  local ids = {}
  for id = lo, hi - 1 do if finished[id] then ids[#ids + 1] = id end end
  local B = math.max(1, p.batch)
  for b = 1, #ids, B do
    local e = math.min(#ids, b + B - 1)
    local items = {}
    for i = b, e do items[#items + 1] = ds.images:select(ids[i] + 1) end
    local raw = #items == 1 and items[1] or moreau.tensor.cat(items)
    local keys = moreau.methods.item_keys(moreau.data.normalize(raw, norm.mean, norm.std))
    for i = b, e do
      local id = ids[i]
      local rec = s:image(id)
      local k = keys[i - b + 1]
      local src, key = ds.source(id), type(k) == 'string' and k or require('bit').tohex(k, 16)
      if rec.source ~= src or rec.noise_key ~= key then
        error(('store %s: image %d was explained from %s (noise key %s), but --data=%s now gives %s (noise key %s) ' ..
          'for it: the data changed since the store was made; use a new --store for the changed data')
          :format(path, id, rec.source, rec.noise_key, p.data, src, key), 0)
      end
    end
  end
end

--- Runs the data-set job with typed parameters p (dataset.spec's, as
-- moreau.recipe.params gives them). opts {getenv = os.getenv,
-- progress = 'off' | 'tty' | 'lines' (default: the mode in force)}.
-- RETURN: {store = path, done = images in the store, computed = images
-- computed now, skipped = images found finished, shard = 'K/N'}.
-- Errors: bad --data, --range, --shard or method options; a store of other
-- parameters (names the first that differs); a failed write (disk full,
-- read-only file), after which the store holds every image finished before.
function dataset.run(p, opts)
  opts = opts or {}
  ignore_sigxfsz()
  local ex = require 'moreau.experiment'
  if p.store == '' then error('give --store=FILE, the results store (SQLite) the maps go to', 0) end
  local k, n, from = 0, 1, nil
  if p.shard ~= '' then
    k, n = dataset.parse_shard(p.shard)
    from = '--shard'
  else
    k, n, from = dataset.shard_from_env(opts.getenv)
  end
  local list = ex.methods { preset = p.preset, seed = p.seed, only = p.methods, overrides = p }
  local net, card = plain(function() return moreau.models.pretrained(p.model) end, '--model=' .. p.model)
  local ds = plain(function() return load_data(p.data, card, p.model) end, '--data=' .. p.data)
  local norm = card.data.normalization
  if p.target == 'label' and not ds.labels then
    error(('--target=label, but the images of --data=%s have no labels (a folder without class subfolders)')
      :format(p.data), 0)
  end
  local first, last = dataset.parse_range(p.range, ds.n)
  local lo, hi = store.shard_range(first, last, k, n)
  local path = store.shard_path(p.store, k, n)

  -- what every map of the run depends on: a store holding other values is refused
  local made = {}
  local params = {
    data = p.data, range = { first, last }, model = p.model, target = p.target, seed = p.seed, preset = p.preset,
    shard = ('%d/%d'):format(k, n), precision = moreau.get_precision(), conv_backend = moreau.get_conv_backend(),
    code_revision = code_revision(), moreau_version = moreau.version,
    methods = {},
  }
  for i, m in ipairs(list) do
    made[i] = m.make()
    params.methods[i] = m.key
    params['options.' .. m.key] = map_options(made[i].opts)
  end
  local oks, s = pcall(store.open, path, { params = params })
  if not oks then error((tostring(s):gsub('^[^\n]-:%d+: ', '')), 0) end
  local finished = {}
  for _, id in ipairs(s:images()) do finished[id] = true end
  local okv, errv = pcall(same_data, s, path, ds, norm, lo, hi, finished, p)
  if not okv then s:close() error(errv, 0) end
  local todo = {}
  for id = lo, hi - 1 do if not finished[id] then todo[#todo + 1] = id end end
  local total, skipped = hi - lo, (hi - lo) - #todo
  if from and n > 1 then
    io.stderr:write(('explain: shard %d/%d (%s): images %d:%d of %d:%d into %s\n'):format(k, n, from, lo, hi,
      first, last, path))
  end
  if skipped > 0 then
    io.stderr:write(('explain: %s holds %d of these %d images; resuming with the other %d\n'):format(path, skipped,
      total, #todo))
  end

  -- one progress line for the whole job; the engine's own lines are off meanwhile
  local restore = moreau.set_progress('off')
  local mode = opts.progress or restore
  local tty = require('moreau.core').C.mr_stderr_is_terminal() == 1
  local t0 = ex.now()
  local next_tenth = 1
  local function progress(done_now, final)
    if mode == 'off' then return end
    local el = ex.now() - t0
    local rate = done_now > 0 and done_now / el or 0
    local left = #todo - done_now
    local line = ('explain: %d/%d images, %.2f images/s, ETA %s'):format(skipped + done_now, total, rate,
      rate > 0 and duration(left / rate) or '?')
    if mode == 'tty' and tty then
      io.stderr:write('\r', line, '   ', final and '\n' or '')
    elseif final or (#todo > 0 and done_now >= next_tenth * #todo / 10) then
      io.stderr:write(line, '\n')
      while #todo > 0 and done_now >= next_tenth * #todo / 10 do next_tenth = next_tenth + 1 end
    end
    io.stderr:flush()
  end

  local ok, err = pcall(function()
    progress(0, #todo == 0)
    local b = 1
    while b <= #todo do
      local e = math.min(#todo, b + p.batch - 1)
      local items = {}
      for i = b, e do items[#items + 1] = ds.images:select(todo[i] + 1) end
      local raw = #items == 1 and items[1] or moreau.tensor.cat(items)
      local x = moreau.data.normalize(raw, norm.mean, norm.std)
      local B = e - b + 1
      local logits = net:forward_inference(x)
      local K = logits:size(2)
      local z = logits:totable()
      local recs, targets = {}, {}
      local keys = moreau.methods.item_keys(x)
      for i = 1, B do
        local row = {}
        for c = 1, K do row[c] = z[(i - 1) * K + c] end
        local pred = 0
        for c = 2, K do if row[c] > row[pred + 1] then pred = c - 1 end end -- the first largest
        local id = todo[b + i - 1]
        local label = ds.labels and ds.labels[id + 1] or nil
        targets[i] = p.target == 'label' and label or pred
        recs[i] = { image = id, source = ds.source(id), label = label, prediction = pred, target = targets[i],
          probabilities = softmax(row), noise_key = keys[i], methods = {} }
      end
      for mi, m in ipairs(list) do
        local t1 = ex.now()
        local maps = made[mi]:explain(net, x, targets)
        local sec = (ex.now() - t1) / B
        local sp, gi = moreau.metrics.sparsity(maps), moreau.metrics.gini(maps)
        for i = 1, B do
          recs[i].methods[mi] = { method = m.key, map = maps, item = i, options = params['options.' .. m.key],
            seconds = sec, metrics = { sparsity = sp[i], gini = gi[i] } }
        end
      end
      for i = 1, B do s:put_image(recs[i]) end
      b = e + 1
      progress(b - 1, b > #todo)
    end
  end)
  moreau.set_progress(restore)
  local done = s:count()
  s:close()
  if not ok then
    if mode ~= 'off' and tty then io.stderr:write('\n') end
    error(tostring(err):gsub('^[^\n]-:%d+: ', '') .. (done > 0 and ('; the store keeps its %d finished images, ' ..
      'and the same command resumes once the cause is gone'):format(done) or ''), 0)
  end
  return { store = path, done = done, computed = #todo, skipped = skipped, shard = params.shard }
end

--- The data-set command, which `moreau explain` runs when given a data set.
-- It parses the arguments by moreau.recipe's rules (`--key=value` or
-- `--key value`, unknown names refused with the nearest,
-- `--KEY.OPTION=VALUE`), prints the help for `--help`, else runs
-- dataset.run and says where the store is.
-- ARGS: args (Lua array). RETURN: dataset.run's table.
function dataset.command(args)
  local recipe = require 'moreau.recipe'
  local r = dataset.spec
  local given, rest = recipe.parse_args(options.normalize_args(args, function(k) return recipe.takes_value(r, k) end))
  if #rest > 0 then
    error(('unexpected argument %s (parameters are --key=value or --key value; `moreau explain --data=... --help` ' ..
      'lists them)'):format(rest[1]), 0)
  end
  if given.help then
    print(recipe.help(r))
    return
  end
  local p = recipe.params(r, given)
  local res = dataset.run(p)
  io.stderr:write(('explain: %s holds %d images (%d computed now)\n'):format(res.store, res.done, res.computed))
  return res
end

--- The merge command: combines the stores of a run's shards
-- (moreau.store.merge), as `moreau merge A.db B.db ... -o OUT.db` (or
-- `--out=OUT.db`). ARGS: args (Lua array). RETURN: the images merged.
function dataset.merge_command(args)
  local inputs, out = {}, nil
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == '-o' or a == '--out' then
      out = args[i + 1]
      if not out then error(a .. ' needs the merged store: -o FILE', 0) end
      i = i + 1
    elseif a:match('^%-%-out=') then
      out = a:match('^%-%-out=(.*)$')
    elseif a == '--help' or a == '-h' then
      print('usage: moreau merge SHARD.db ... -o OUT.db\n  combines the stores of one run\'s shards ' ..
        '(moreau explain --data=... --shard=K/N) into a new store')
      return
    elseif a:match('^%-') then
      error(("unknown option %s (usage: moreau merge SHARD.db ... -o OUT.db)"):format(a), 0)
    else
      inputs[#inputs + 1] = a
    end
    i = i + 1
  end
  if #inputs == 0 then error('give the shard stores to merge: moreau merge SHARD.db ... -o OUT.db', 0) end
  if not out then error('give the merged store: -o OUT.db', 0) end
  local ok, res = pcall(store.merge, inputs, out)
  if not ok then error((tostring(res):gsub('^[^\n]-:%d+: ', ''):gsub('^store%.merge: ', '')), 0) end
  io.stderr:write(('merge: %s holds %d images from %d stores\n'):format(out, res, #inputs))
  return res
end

return dataset
