--- scripts/bench.lua — the engine's speed and memory, next to PyTorch CPU on
-- the same machine in the same run.
--
--   scripts/moreau bench [--key=value ...]
--   LUA_PATH='bindings/?.lua;bindings/?/init.lua;;' luajit scripts/bench.lua [--key=value ...]
--
-- Sections (--only=forward,moreau,peak,train,batch,methods,imagenet, all by
-- default; precision, denormals and resnet50 only when named), one table each:
--   train    resnet_fmnist training steps (batch 128, batchnorm statistics,
--            SGD as recipes/train_fmnist.lua): seconds per step, images/s.
--   peak     the machine's FP32 FMA peak: scripts/fma_peak.c compiled here
--            with `cc -O2 -march=native -fopenmp` into a temp folder,
--            independent FMA chains on AVX-512 / AVX2 registers, 1 and
--            --threads threads. Measured whenever forward runs too, for its
--            %-of-peak column.
--   forward  resnet18_cifar (softplus, random weights) at --batches: the
--            forward pass and forward + input gradient (the class logit's
--            gradient with respect to the input, no weight gradients), median
--            of --repeats after one warm-up call, and the achieved GFLOP/s.
--            FLOPs are counted from the network graph (net:flops(), a
--            multiply-add = 2 FLOPs): conv 2·Cout·(Cin/groups)
--            ·kh·kw·Ho·Wo per sample, linear 2·in·out, elementwise ops not
--            counted; forward + input gradient counts 2× the forward
--            (GRAD_FACTOR in bench/common.lua: the backward's input-gradient GEMMs cost
--            as much as the forward's; no weight gradients are computed).
--   moreau   one full Sparse MoreauGrad explanation (docs/methods.md §7: reg l1, rho 1,
--            gamma 0.1, eta 5e-3, sigma 0.1, K = min(101, T), --T iterations of
--            --m noisy copies) of one image, on resnet18_cifar (softplus,
--            random weights) and resnet_fmnist (the shipped weights in
--            models/resnet_fmnist.safetensors, random ones while that file is
--            missing) — seconds per image, the peak resident set (VmHWM) and
--            the net's workspace bytes. Each explanation runs in a fresh
--            process (this script re-run with --child=moreau) so the peak is
--            that explanation's own.
--   batch    the shipped resnet_fmnist, Sparse MoreauGrad of --images test
--            images (--batch_T iterations of --batch_m noisy copies): the
--            engine explains them all at once (items x copies batched,
--            --batch_chunk per forward pass), PyTorch in the batch-1 loop a
--            researcher would write (one image's m copies per pass): images/s.
--   methods  resnet18_cifar, one image: SmoothGrad (--samples noisy copies,
--            sigma 0.15) and Integrated Gradients (--steps points, right
--            Riemann sum), each in one batch: median seconds.
--   denormals (only when named in --only) each model's bench image through
--            Sparse MoreauGrad (--batch_T, --batch_m), SmoothGrad and IG
--            with the engine's subnormal census on: the subnormal float32
--            values each op's passes wrote (engine only).
--   precision  the moreau section's explanation in fp32 and in bf16
--            (moreau.set_precision), each in a fresh process, on --models,
--            --repeats times with fp32 and bf16 in alternation: the median
--            seconds of each, the speed-up, and how far the bf16 map (and the
--            input gradient of the explained class) is from the fp32 one:
--            cosine similarity, and the top-40% overlap of |map| summed over
--            channels (metrics.topk_intersection, frac 0.4); the same for
--            PyTorch, fp32 against torch.autocast('cpu',
--            dtype=torch.bfloat16), the two sides each with their own noise
--            (the same seed in both of a side's runs, so only the precision
--            differs). Where oneDNN has no bf16 kernels the engine's bf16 run
--            is refused and the table says why. Then the spread over images:
--            the input gradient's bf16-vs-fp32 cosine on each of the first
--            --images Fashion-MNIST test images (shipped resnet_fmnist).
-- --precision=bf16 runs the engine's convolutions in bfloat16 in every
-- section (and the moreau section's PyTorch side under bf16 autocast); it is
-- refused before anything runs where the CPU has no bf16 kernels.
--   imagenet efficientnet_b0 at 224x224 (random weights; PyTorch: torchvision's
--            efficientnet_b0 with the same weights, checked by parameter count
--            and logits): forward + input gradient at --imagenet_batch (median
--            of --repeats), and one Sparse MoreauGrad explanation (the
--            settings of `moreau`, --imagenet_T iterations of --imagenet_m
--            noisy copies) in a fresh process. About a minute per side on
--            an idle 2-core machine at the defaults.
--   resnet50 (only when named) torchvision's resnet50 at 224x224 (random
--            weights from --seed, batchnorm statistics of one batch) exported
--            to ONNX by PyTorch into results/bench/ (ignored by git; kept
--            after the run) and read by moreau.models.onnx; the engine's
--            logits on a check batch of 2
--            must match PyTorch's (max |difference| <= 1e-3 of the largest
--            |logit|) before anything is timed. Then, as imagenet: forward +
--            input gradient at --imagenet_batch (median of --repeats after a
--            warm-up call) and one Sparse MoreauGrad explanation (--imagenet_T,
--            --imagenet_m) in a fresh process, engine (the ONNX graph,
--            batchnorm folded into the convolutions by the exporter) against
--            PyTorch (the torchvision model with the same weights, batchnorm
--            kept). Needs PyTorch (it writes the model). Not in the default
--            set: PyTorch's side alone takes minutes here (its explanation
--            5 min, the engine's 1 min, on the shared 2-core machine), and the
--            model files take 200 MB; scripts/BENCH_RESULTS.md has figures.
-- With --torch=auto (the default) and Debian's python3-torch installed, each
-- table has PyTorch CPU's figures beside the engine's (scripts/bench_torch.py,
-- torch.set_num_threads the same; peak memory from ru_maxrss of a fresh
-- process), and the time ratio engine / torch (> 1: the engine is slower).
--
-- --load=N runs N competing busy single-thread processes (shell loops) for
-- the whole run, started before the first section and stopped after the last
-- (each also stops by itself when the bench process is gone): every figure is
-- then "under load"; compare with the same command at --load=0.
-- Options: --threads=2 --repeats=5 --batches=1,16,32 --T=300 --m=32 --load=0 --precision=fp32
--   --imagenet_batch=16 --imagenet_T=20 --imagenet_m=16 (the imagenet and resnet50 sections)
--   --images=64 --batch_T=20 --batch_m=16 --batch_chunk=64 --samples=50 --steps=50
--   --models=resnet18_cifar,resnet_fmnist --torch=auto|on|off --seed=0
--   --python=/usr/bin/python3 --keep (keep the temp folder)
-- A quick run: --T=5 --m=4 --repeats=3.
-- Both sides use OpenMP, whose threads spin-wait by default: on a machine
-- shared with other busy processes, a fixed team's 2-thread figures collapse
-- (each small parallel region waits a scheduler slice for a descheduled
-- thread). The engine's team follows the cores other processes leave free
-- (docs/architecture.md, "Threads"; MOREAU_ADAPTIVE_THREADS=0 fixes it at
-- --threads); PyTorch's does not. The header prints the OpenMP/BLAS
-- variables in force.

-- The driver: the options, then each section from its own file,
-- scripts/bench/SECTION.lua (common.lua holds what they share).
local options = require 'moreau.options'

local argv = { ... }

-- ------------------------------------------------------------ options

local function script_dir()
  local src = debug.getinfo(1, 'S').source
  src = src:sub(1, 1) == '@' and src:sub(2) or src
  return src:match('^(.*)/[^/]*$') or '.'
end

local here = script_dir()

--- The options, declared as moreau.options parameters (type, default, domain).
local params = {
  only = { type = 'string', default = 'forward,moreau,peak,train,batch,methods,imagenet', domain = 'string' },
  threads = { type = 'int', default = 2, domain = 'int >= 1' },
  repeats = { type = 'int', default = 5, domain = 'int >= 1' },
  batches = { type = 'string', default = '1,16,32', domain = 'string' },
  T = { type = 'int', default = 300, domain = 'int >= 1' },
  m = { type = 'int', default = 32, domain = 'int >= 0' },
  models = { type = 'string', default = 'resnet18_cifar,resnet_fmnist', domain = 'string' },
  torch = { type = 'string', default = 'auto', domain = 'one of auto, on, off' },
  seed = { type = 'int', default = 0, domain = 'seed' },
  load = { type = 'int', default = 0, domain = 'int in [0, 64]' },
  precision = { type = 'string', default = 'fp32', domain = 'one of fp32, bf16' },
  images = { type = 'int', default = 64, domain = 'int >= 1' },
  batch_T = { type = 'int', default = 20, domain = 'int >= 1' },
  batch_m = { type = 'int', default = 16, domain = 'int >= 0' },
  batch_chunk = { type = 'int', default = 64, domain = 'int >= 0' },
  samples = { type = 'int', default = 50, domain = 'int >= 1' },
  steps = { type = 'int', default = 50, domain = 'int >= 1' },
  imagenet_batch = { type = 'int', default = 16, domain = 'int >= 1' },
  imagenet_T = { type = 'int', default = 20, domain = 'int >= 1' },
  imagenet_m = { type = 'int', default = 16, domain = 'int >= 0' },
  python = { type = 'string', default = '', domain = 'string' },
  keep = { type = 'bool', default = false, domain = 'bool' },
  help = { type = 'bool', default = false, domain = 'bool' },
  -- the child process of one explanation (set by this script, not by users)
  child = { type = 'string', default = '', domain = 'string' },
  model = { type = 'string', default = '', domain = 'string' },
  weights = { type = 'string', default = '', domain = 'string' },
  input = { type = 'string', default = '', domain = 'string' },
  label = { type = 'int', default = 0, domain = 'int >= 0' },
  out = { type = 'string', default = '', domain = 'string' },
  grad_out = { type = 'string', default = '', domain = 'string' },
  beta = { type = 'number', default = 0, domain = 'num >= 0' },
  width = { type = 'number', default = 1, domain = 'num > 0' },
  num_classes = { type = 'int', default = 10, domain = 'int >= 1' },
}

local given, rest = options.parse_args(argv)
if #rest > 0 then error('bench: arguments are --key=value, got ' .. rest[1], 0) end
local opts = options.params('bench', params, given, 'option')
io.stdout:setvbuf('line') -- tables and the children's progress on stderr stay in order
if opts.help then
  local f = io.open(here .. '/bench.lua', 'r')
  for line in f:lines() do
    if not line:match('^%-%-') then break end
    print((line:gsub('^%-%-%-? ?', '')))
  end
  f:close()
  return
end

-- The list options are checked whole before anything runs: a bad item would
-- otherwise fail mid-run, after minutes of the sections before it. An item
-- given twice is refused too (it would run, and be reported, twice), worded
-- as moreau.options.params words a repeated item of a recipe's list.
local function check_list(name, is_ok, want)
  local items, first = {}, {}
  for item in (opts[name] .. ','):gmatch('([^,]*),') do
    item = item:match('^%s*(.-)%s*$')
    if item == '' or not is_ok(item) then
      error(("bench: option '%s' must be a comma-separated list of %s, got '%s'%s"):format(name, want, opts[name],
        item == '' and ' (an empty item)' or (" (item '%s')"):format(item)), 0)
    end
    -- (batch sizes compare as numbers: '16' and '16.0' are one size)
    local key = tonumber(item) or item
    if first[key] then
      error(("bench: option '%s' lists '%s' twice (items %d and %d); give each once"):format(name, item,
        first[key], #items + 1), 0)
    end
    first[key] = #items + 1
    items[#items + 1] = item
  end
  return items
end
check_list('batches', function(v)
  local n = tonumber(v)
  return n ~= nil and n == math.floor(n) and n >= 1 and n <= 2 ^ 31 - 1
end, 'integers >= 1')
check_list('models', function(v) return v == 'resnet18_cifar' or v == 'resnet_fmnist' end,
  'model names (resnet18_cifar, resnet_fmnist)')

local only = check_list('only', function() return true end, 'section names')

local B = assert(loadfile(here .. '/bench/common.lua'))(opts, argv, here)

--- The section NAME: its file run with B (after B.start() in the parent).
local function section(name) return assert(loadfile(here .. '/bench/' .. name .. '.lua'))(B) end

-- The engine's precision for every section (the precision section compares
-- both whatever it is); refused here, before any work, where the CPU has no
-- bf16 kernels.
do
  local ok, err = pcall(require('moreau').set_precision, opts.precision)
  if not ok then error('bench: --precision=' .. opts.precision .. ': ' .. tostring(err), 0) end
end

if opts.child == 'moreau' then
  section('moreau').child(opts)
  return
elseif opts.child == 'imagenet' then
  section('imagenet').child(opts)
  return
elseif opts.child == 'resnet50' then
  section('resnet50').child(opts)
  return
elseif opts.child ~= '' then
  error('bench: unknown --child=' .. opts.child, 0)
end

-- ------------------------------------------------------------ the parent

local sections = {}
for _, s in ipairs(only) do
  if not ({ forward = 1, moreau = 1, peak = 1, train = 1, batch = 1, methods = 1, imagenet = 1, resnet50 = 1,
    precision = 1, denormals = 1 })[s] then
    error("bench: unknown section '" .. s .. "' in --only (forward, moreau, peak, train, batch, methods, imagenet, " ..
      "resnet50, precision, denormals)", 0)
  end
  sections[s] = true
end

B.start()

-- The competing load: N shell loops that burn a core each and end when this
-- process does (they test it every ~0.1 s), so a killed bench leaves none.
local load_pids = {}
local function start_load(n)
  if n == 0 then return end
  local me = B.read_all('echo $PPID'):match('%d+')
  for _ = 1, n do
    local cmd = ("sh -c 'while kill -0 %s 2>/dev/null; do i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; " ..
      "done' >/dev/null 2>&1 & echo $!"):format(me)
    load_pids[#load_pids + 1] = B.read_all(cmd):match('%d+')
  end
  os.execute('sleep 1') -- let them take their cores
end
local function stop_load()
  for _, pid in ipairs(load_pids) do os.execute('kill ' .. pid .. ' 2>/dev/null') end
end

local ok, err = pcall(function()
  start_load(opts.load)
  B.header()
  if opts.precision == 'bf16' then
    print('precision: bf16 (--precision): the engine\'s convolutions round their inputs to bfloat16 in every section')
  end
  if opts.load > 0 then
    print(('competing load: %d busy single-thread process%s running during every section (--load)'):format(
      opts.load, opts.load == 1 and '' or 'es'))
  end
  local peak
  if sections.peak or sections.forward then peak = section('peak').measure() end
  if sections.peak then section('peak').print(peak) end
  if sections.forward then section('forward').run(peak) end
  if sections.moreau then section('moreau').run() end
  if sections.train then section('train').run() end
  if sections.batch then section('batch').run() end
  if sections.methods then section('methods').run() end
  if sections.imagenet then section('imagenet').run() end
  if sections.resnet50 then section('resnet50').run() end
  if sections.denormals then section('denormals').run() end
  if sections.precision then section('precision').run() end
  local load = (B.read_all('cat /proc/loadavg 2>/dev/null'):match('^(%S+ %S+ %S+)')) or '?'
  print(('load average %s at the end (a busy machine makes every figure slower and noisier)'):format(load))
end)
stop_load()
if opts.keep then
  print('temp folder kept: ' .. B.tmp)
else
  os.execute('rm -rf ' .. B.shell_quote(B.tmp))
end
if not ok then error(err, 0) end
