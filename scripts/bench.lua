--- scripts/bench.lua — the engine's speed and memory, next to PyTorch CPU on
-- the same machine in the same run.
--
--   scripts/moreau bench [--key=value ...]
--   LUA_PATH='bindings/?.lua;bindings/?/init.lua;;' luajit scripts/bench.lua [--key=value ...]
--
-- Sections (--only=forward,moreau,peak,train, all by default), one table each:
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
--            FLOPs are counted from the network graph: conv 2·Cout·(Cin/groups)
--            ·kh·kw·Ho·Wo per sample, linear 2·in·out, elementwise ops not
--            counted; forward + input gradient counts 2× the forward
--            (GRAD_FACTOR below: the backward's input-gradient GEMMs cost
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
-- With --torch=auto (the default) and Debian's python3-torch installed, each
-- table has PyTorch CPU's figures beside the engine's (scripts/bench_torch.py,
-- torch.set_num_threads the same; peak memory from ru_maxrss of a fresh
-- process), and the time ratio engine / torch (> 1: the engine is slower).
--
-- Options: --threads=2 --repeats=5 --batches=1,16,32 --T=300 --m=32
--   --images=64 --batch_T=20 --batch_m=16 --batch_chunk=64 --samples=50 --steps=50
--   --models=resnet18_cifar,resnet_fmnist --torch=auto|on|off --seed=0
--   --python=/usr/bin/python3 --keep (keep the temp folder)
-- A quick run: --T=5 --m=4 --repeats=3.
-- Both sides use OpenMP, whose threads spin-wait by default: on a machine
-- shared with other busy processes the 2-thread figures of both collapse
-- (each small parallel region waits a scheduler slice). Export
-- OMP_WAIT_POLICY=PASSIVE there, or compare at --threads=1; the header prints
-- the OpenMP/BLAS variables in force.
local ffi = require 'ffi'

local argv = { ... }

-- ------------------------------------------------------------ options

local function script_dir()
  local src = debug.getinfo(1, 'S').source
  src = src:sub(1, 1) == '@' and src:sub(2) or src
  return src:match('^(.*)/[^/]*$') or '.'
end

local here = script_dir()
local root = here .. '/..'

local defaults = {
  only = 'forward,moreau,peak,train,batch,methods', threads = 2, repeats = 5, batches = '1,16,32',
  T = 300, m = 32, models = 'resnet18_cifar,resnet_fmnist', torch = 'auto', seed = 0,
  images = 64, batch_T = 20, batch_m = 16, batch_chunk = 64, samples = 50, steps = 50,
  python = '', keep = false, help = false,
  -- the child process of one explanation (set by this script, not by users)
  child = '', model = '', weights = '', input = '', label = 0, out = '',
  beta = 0, width = 1, num_classes = 10,
}

local function parse(args)
  local o = {}
  for k, v in pairs(defaults) do o[k] = v end
  for _, a in ipairs(args) do
    local k, v = a:match('^%-%-([%w_]+)=(.*)$')
    if not k then k, v = a:match('^%-%-([%w_]+)$'), true end
    if not k then error('bench: arguments are --key=value, got ' .. a, 0) end
    if defaults[k] == nil then
      local keys = {}
      for name in pairs(defaults) do keys[#keys + 1] = name end
      table.sort(keys)
      error(("bench: unknown option --%s (%s)"):format(k, table.concat(keys, ', ')), 0)
    end
    if type(defaults[k]) == 'number' then
      local n = tonumber(v)
      if not n then error(('bench: --%s takes a number, got %s'):format(k, tostring(v)), 0) end
      v = n
    elseif type(defaults[k]) == 'boolean' then
      v = v == true or v == 'true' or v == '1'
    end
    o[k] = v
  end
  return o
end

local function list(s)
  local t = {}
  for w in tostring(s):gmatch('[^,%s]+') do t[#t + 1] = w end
  return t
end

local opts = parse(argv)
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

local moreau = require 'moreau'
local core = require 'moreau.core'
local T = moreau.tensor
local models = moreau.models
local cjson = require 'cjson'
local C = core.C

-- ------------------------------------------------------------ helpers

pcall(ffi.cdef, [[
typedef struct { long tv_sec; long tv_nsec; } mr_bench_timespec;
int clock_gettime(int clk_id, mr_bench_timespec *tp);
]])
local ts = ffi.new('mr_bench_timespec')
local function now()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + 1e-9 * tonumber(ts.tv_nsec)
end

--- A field of /proc/self/status in bytes (VmRSS: resident now, VmHWM: peak resident).
local function proc_status(field)
  local f = io.open('/proc/self/status', 'r')
  if not f then return 0 end
  for line in f:lines() do
    local kb = line:match('^' .. field .. ':%s*(%d+)')
    if kb then f:close() return tonumber(kb) * 1024 end
  end
  f:close()
  return 0
end

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function read_all(cmd)
  local p = io.popen(cmd, 'r')
  local out = p:read('*a')
  p:close()
  return out
end

local function median(xs)
  local s = {}
  for i, v in ipairs(xs) do s[i] = v end
  table.sort(s)
  return s[math.floor(#s / 2) + 1]
end

--- Median seconds of fn() over `repeats` calls, after one warm-up call.
local function time_median(fn, repeats)
  fn()
  local ts_ = {}
  for i = 1, repeats do
    local t0 = now()
    fn()
    ts_[i] = now() - t0
  end
  return median(ts_)
end

local function write_f32(path, x)
  local f = assert(io.open(path, 'wb'))
  f:write(ffi.string(x:data(), x:numel() * 4))
  f:close()
end

local function read_f32(path, shape)
  local x = T.zeros(shape)
  local f = assert(io.open(path, 'rb'))
  local s = f:read('*a')
  f:close()
  if #s ~= x:numel() * 4 then
    error(('bench: %s holds %d bytes, expected %d'):format(path, #s, x:numel() * 4), 0)
  end
  ffi.copy(x:data(), s, #s)
  return x
end

local function mib(b) return b and ('%.0f MiB'):format(b / 2 ^ 20) or '-' end
local function fmt_s(s)
  if not s then return '-' end
  if s < 1 then return ('%.1f ms'):format(s * 1e3) end
  return ('%.2f s'):format(s)
end

--- Prints rows (arrays of strings) as a table with aligned columns; the
-- first row is the header. Right-aligned except the first column.
local function print_table(rows)
  local w = {}
  for _, r in ipairs(rows) do
    for j, c in ipairs(r) do w[j] = math.max(w[j] or 0, #c) end
  end
  for i, r in ipairs(rows) do
    local parts = {}
    for j, c in ipairs(r) do
      parts[j] = j == 1 and (c .. (' '):rep(w[j] - #c)) or ((' '):rep(w[j] - #c) .. c)
    end
    print('  ' .. table.concat(parts, '  '))
    if i == 1 then
      local dash = {}
      for j = 1, #w do dash[j] = ('-'):rep(w[j]) end
      print('  ' .. table.concat(dash, '  '))
    end
  end
end

local function progress(...) io.stderr:write('bench: ', string.format(...), '\n') io.stderr:flush() end

-- ------------------------------------------------------------ models

--- The network `name` with the architecture options `a` (beta, width,
-- num_classes), weights loaded from `weights` when given.
local function build_model(name, a, weights)
  local net
  if name == 'resnet18_cifar' then
    net = models.resnet18_cifar { activation = 'softplus', beta = a.beta > 0 and a.beta or 1,
      num_classes = a.num_classes, seed = a.seed or 0 }
  elseif name == 'resnet_fmnist' then
    net = models.resnet_fmnist { beta = a.beta > 0 and a.beta or 10, width = a.width,
      num_classes = a.num_classes, seed = a.seed or 0 }
  else
    error('bench: unknown model ' .. tostring(name), 0)
  end
  if weights and weights ~= '' then models.load(net, weights) end
  return net
end

--- Forward FLOPs per sample, counted from the graph: conv 2·Cout·(Cin/groups)
-- ·kh·kw·Ho·Wo (= 2·numel(weight)·Ho·Wo), linear 2·in·out; elementwise ops,
-- batchnorm, pooling and adds are not counted.
local function forward_flops(net)
  local total = 0
  for _, nd in ipairs(net:nodes()) do
    if nd.op == 'conv2d' then
      total = total + 2 * net:param(nd.label .. '.weight'):numel() * nd.shape[2] * nd.shape[3]
    elseif nd.op == 'linear' then
      total = total + 2 * net:param(nd.label .. '.weight'):numel()
    end
  end
  return total
end

-- FLOPs of forward + input gradient, in forwards. Per conv (and linear) the
-- forward is Y = W·col(X), 2·Cout·(Cin/g)·kh·kw·HoWo; the input gradient is
-- col(dX) = Wᵀ·dY, a GEMM of exactly the same size. Only the weight gradient
-- dW = dY·col(X)ᵀ, which neither the engine's oracle nor the frozen PyTorch
-- model computes, would add a third forward's worth (3× is the training step's
-- count). PyTorch's profiler agrees: its convolution_backward takes as long as
-- the forward convolutions; at 3× PyTorch would run above the FMA peak.
local GRAD_FACTOR = 2

--- Bytes of one batch of n samples' activations (every node's output, the
-- input included) and of the parameters: the yardstick of issue 7's memory
-- target (peak within 1.5x of their sum).
local function activation_weight_bytes(net, n)
  local act = 0
  for _, nd in ipairs(net:nodes()) do
    local e = 1
    for _, d in ipairs(nd.shape) do e = e * d end
    act = act + 4 * n * e
  end
  return act, 4 * net:num_params()
end

local function argmax(y)
  local best, bi = -math.huge, 0
  for i = 0, y:numel() - 1 do
    if y:data()[i] > best then best, bi = y:data()[i], i end
  end
  return bi
end

-- ------------------------------------------------------------ the child: one explanation

--- Sparse MoreauGrad (docs/methods.md §7) on one image, in this fresh process; prints
-- one line "BENCH_JSON {...}" with seconds, peak and prior resident set, the
-- net's workspace bytes, and writes the map to opts.out.
local function child_moreau(o)
  moreau.set_num_threads(o.threads)
  local net = build_model(o.model, o, o.weights)
  local shape = net:input_shape()
  table.insert(shape, 1, 1)
  local x = read_f32(o.input, shape)
  local rss_before = proc_status('VmRSS')
  local t0 = now()
  local method = moreau.methods.moreaugrad { reg = 'l1', rho = 1, gamma = 0.1, eta = 5e-3, sigma = 0.1,
    T = o.T, m = o.m, K = math.min(101, o.T), seed = o.seed }
  local map = method:explain(net, x, { o.label })
  local seconds = now() - t0
  local peak = proc_status('VmHWM')
  if o.out ~= '' then write_f32(o.out, map) end
  local zeros = 0
  for i = 0, map:numel() - 1 do if map:data()[i] == 0 then zeros = zeros + 1 end end
  local act, wts = activation_weight_bytes(net, math.max(o.m, 1))
  io.stdout:write('BENCH_JSON ', cjson.encode {
    seconds = seconds, peak_rss = peak, rss_before = rss_before, activations = act, weights = wts,
    workspace = net:workspace_bytes(), sparsity = zeros / map:numel(),
    T = o.T, m = o.m, K = method.opts.K, threads = moreau.get_num_threads(),
  }, '\n')
end

if opts.child == 'moreau' then
  child_moreau(opts)
  return
elseif opts.child ~= '' then
  error('bench: unknown --child=' .. opts.child, 0)
end

-- ------------------------------------------------------------ the parent

local sections = {}
for _, s in ipairs(list(opts.only)) do
  if not ({ forward = 1, moreau = 1, peak = 1, train = 1, batch = 1, methods = 1 })[s] then
    error("bench: unknown section '" .. s .. "' in --only (forward, moreau, peak, train, batch, methods)", 0)
  end
  sections[s] = true
end
if opts.torch ~= 'auto' and opts.torch ~= 'on' and opts.torch ~= 'off' then
  error('bench: --torch is auto, on or off, got ' .. tostring(opts.torch), 0)
end

moreau.set_num_threads(opts.threads)
local tmp = read_all('mktemp -d /tmp/moreau-bench.XXXXXX'):gsub('%s+$', '')
if tmp == '' then error('bench: mktemp -d failed', 0) end

local luajit = (arg and arg[-1]) or 'luajit'
local lua_path = root .. '/bindings/?.lua;' .. root .. '/bindings/?/init.lua;' .. (os.getenv('LUA_PATH') or ';;')

-- PyTorch: found, or why not.
local python = opts.python ~= '' and opts.python or
  (io.open('/usr/bin/python3', 'r') and '/usr/bin/python3' or 'python3')
local torch_script = here .. '/bench_torch.py'
local torch_info, torch_why
if opts.torch ~= 'off' then
  local out = read_all(shell_quote(python) .. ' ' .. shell_quote(torch_script) .. ' probe 2>/dev/null')
  local ok, info = pcall(cjson.decode, out:match('([^\n]+)\n*$') or '')
  if ok and type(info) == 'table' and info.torch then
    torch_info = info
  else
    torch_why = python .. ' cannot import torch and torchvision (apt-get install python3-torch python3-torchvision)'
    if opts.torch == 'on' then error('bench: --torch=on but ' .. torch_why, 0) end
  end
else
  torch_why = '--torch=off'
end

--- Runs bench_torch.py TASK with options; returns its JSON result (a table).
local function torch_run(task, args)
  local parts = { shell_quote(python), shell_quote(torch_script), task }
  for _, kv in ipairs(args) do parts[#parts + 1] = shell_quote(('--%s=%s'):format(kv[1], tostring(kv[2]))) end
  local out = read_all(table.concat(parts, ' '))
  local last = out:match('([^\n]+)\n*$')
  local ok, res = pcall(cjson.decode, last or '')
  if not ok or type(res) ~= 'table' then
    error('bench: ' .. torch_script .. ' ' .. task .. ' gave no result:\n' .. out, 0)
  end
  return res
end

local function header()
  local cpu = 'unknown CPU'
  local f = io.open('/proc/cpuinfo', 'r')
  if f then
    for line in f:lines() do
      local name = line:match('^model name%s*:%s*(.-)%s*$')
      if name then cpu = name break end
    end
    f:close()
  end
  local cores = read_all('nproc 2>/dev/null'):gsub('%s+', '')
  local load = (read_all('cat /proc/loadavg 2>/dev/null'):match('^(%S+ %S+ %S+)')) or '?'
  print(('moreau bench — %s, %s cores, load average %s at start'):format(cpu, cores, load))
  print(('engine: moreau %s, %s, %d threads'):format(moreau.version, moreau.backend_info(), moreau.get_num_threads()))
  if torch_info then
    print(('torch:  PyTorch %s (torchvision %s), CPU, torch.set_num_threads(%d)'):format(
      torch_info.torch, torch_info.torchvision, opts.threads))
  else
    print('torch:  not run (' .. torch_why .. ')')
  end
  local env = {}
  for _, k in ipairs { 'OMP_WAIT_POLICY', 'GOMP_SPINCOUNT', 'OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS' } do
    if os.getenv(k) then env[#env + 1] = k .. '=' .. os.getenv(k) end
  end
  if #env > 0 then print('environment: ' .. table.concat(env, ' ')) end
  if opts.threads > 1 and not os.getenv('OMP_WAIT_POLICY') then
    print('note: OpenMP threads spin-wait by default; when other processes share the cores, 2-thread figures')
    print('      collapse for both sides (export OMP_WAIT_POLICY=PASSIVE, or compare at --threads=1)')
  end
  print(('command: moreau bench %s'):format(table.concat(argv, ' ')))
  print()
end

-- ------------------------------------------------------------ peak

--- {isa = {threads = GFLOP/s}}, best = max over ISAs per thread count; nil when cc fails.
local function measure_peak()
  local exe = tmp .. '/fma_peak'
  local log = read_all(('cc -O2 -march=native -fopenmp %s -o %s 2>&1'):format(
    shell_quote(here .. '/fma_peak.c'), shell_quote(exe)))
  if not io.open(exe, 'r') then
    progress('could not compile scripts/fma_peak.c:\n%s', log)
    return nil
  end
  progress('measuring the FP32 FMA peak (scripts/fma_peak.c) ...')
  local counts = opts.threads == 1 and '1' or ('1 ' .. opts.threads)
  local out = read_all(shell_quote(exe) .. ' ' .. counts)
  local peak = { best = {} }
  for isa, n, g in out:gmatch('(%w+) (%d+) ([%d%.]+)') do
    n, g = tonumber(n), tonumber(g)
    peak[isa] = peak[isa] or {}
    peak[isa][n] = g
    peak.best[n] = math.max(peak.best[n] or 0, g)
  end
  return peak
end

local function print_peak(peak)
  print('== peak: FP32 FMA throughput of this machine (scripts/fma_peak.c, independent FMA chains per thread)')
  if not peak then print('  (not measured: cc failed)') print() return end
  local counts = {}
  for n in pairs(peak.best) do counts[#counts + 1] = n end
  table.sort(counts)
  local rows = { { 'instruction set' } }
  for _, n in ipairs(counts) do rows[1][#rows[1] + 1] = ('%d thread%s'):format(n, n > 1 and 's' or '') end
  for _, isa in ipairs { 'avx512', 'avx2' } do
    if peak[isa] then
      local r = { isa }
      for _, n in ipairs(counts) do r[#r + 1] = peak[isa][n] and ('%.1f GFLOP/s'):format(peak[isa][n]) or '-' end
      rows[#rows + 1] = r
    end
  end
  print_table(rows)
  print()
end

-- ------------------------------------------------------------ forward

local function forward_section(peak)
  local net = build_model('resnet18_cifar', { beta = 1, width = 1, num_classes = 10 })
  local flops = forward_flops(net)
  local weights = tmp .. '/resnet18_cifar.safetensors'
  models.save(net, weights)
  -- The same weights and a check input go to PyTorch: its logits are compared with ours.
  local xc = T.randn({ 2, 3, 32, 32 }, { seed = opts.seed, stream = 99 })
  write_f32(tmp .. '/check.f32', xc)
  local yc = net:forward(xc)

  local rows = {}
  local batches = list(opts.batches)
  for _, b in ipairs(batches) do
    local N = tonumber(b)
    local x = T.randn({ N, 3, 32, 32 }, { seed = opts.seed, stream = N })
    local lab = ffi.new('int32_t[?]', N)
    for i = 0, N - 1 do lab[i] = i % 10 end
    local scores = ffi.new('float[?]', N)
    local g = T.zeros(x:shape())
    progress('engine: resnet18_cifar batch %d ...', N)
    local tf = time_median(function() core.check(C.mr_net_forward(net.ptr, x.ptr, nil)) end, opts.repeats)
    local tg = time_median(function()
      core.check(C.mr_oracle_grad(net.ptr, x.ptr, lab, C.MR_SCORE_LOGIT, scores, g.ptr))
    end, opts.repeats)
    rows[#rows + 1] = { N = N, tf = tf, tg = tg }
  end
  local ws = net:workspace_bytes()

  local tres, parity
  if torch_info then
    progress('torch: resnet18_cifar batches %s ...', opts.batches)
    tres = torch_run('forward', { { 'threads', opts.threads }, { 'repeats', opts.repeats },
      { 'batches', opts.batches }, { 'weights', weights }, { 'check-input', tmp .. '/check.f32' },
      { 'check-n', 2 } })
    for i, r in ipairs(rows) do
      local t = tres.batches[i]
      r.torch_f, r.torch_g = t.forward_s, t.grad_s
    end
    parity = 0
    for i = 0, yc:numel() - 1 do
      parity = math.max(parity, math.abs(yc:data()[i] - tres.check_logits[i + 1]))
    end
  end

  local pk = peak and peak.best[opts.threads]
  print(('== forward: resnet18_cifar (softplus beta 1, random weights, 3x32x32), %d threads, median of %d')
    :format(opts.threads, opts.repeats))
  print(('  FLOPs per image: forward %.3f G; forward + input gradient %.3f G = %dx forward (the backward\'s')
    :format(flops / 1e9, GRAD_FACTOR * flops / 1e9, GRAD_FACTOR))
  print('  input-gradient GEMMs Wt·dY count 1x the forward FLOPs; no weight gradients, which would add another 1x;')
  print('  elementwise ops not counted)')
  if pk then print(('  FP32 FMA peak at %d threads: %.1f GFLOP/s (section peak)'):format(opts.threads, pk)) end
  local hdr = { 'pass', 'batch', 'engine', 'GFLOP/s' }
  if pk then hdr[#hdr + 1] = '% peak' end
  if tres then
    for _, h in ipairs { 'torch', 'GFLOP/s' } do hdr[#hdr + 1] = h end
    if pk then hdr[#hdr + 1] = '% peak' end
    hdr[#hdr + 1] = 'engine/torch'
  end
  local out = { hdr }
  for _, pass in ipairs { { 'forward', 'tf', 'torch_f', 1 }, { 'forward+input-grad', 'tg', 'torch_g', GRAD_FACTOR } } do
    for _, r in ipairs(rows) do
      local f = pass[4] * flops * r.N
      local e = r[pass[2]]
      local line = { pass[1], tostring(r.N), fmt_s(e), ('%.1f'):format(f / e / 1e9) }
      if pk then line[#line + 1] = ('%.0f%%'):format(100 * f / e / 1e9 / pk) end
      if tres then
        local t = r[pass[3]]
        line[#line + 1] = fmt_s(t)
        line[#line + 1] = ('%.1f'):format(f / t / 1e9)
        if pk then line[#line + 1] = ('%.0f%%'):format(100 * f / t / 1e9 / pk) end
        line[#line + 1] = ('%.2fx'):format(e / t)
      end
      out[#out + 1] = line
    end
  end
  print_table(out)
  print(('  engine workspace after batch %s: %s'):format(batches[#batches], mib(ws)))
  if tres then
    print('  torch: forward under torch.no_grad(); forward+input-grad with parameters frozen (no weight gradients)')
    print(('  same weights in both: max |logit difference| on a check batch = %.2e'):format(parity))
    print('  engine/torch > 1: the engine takes longer')
  end
  print()
end

-- ------------------------------------------------------------ moreau

--- Model, weights file, input file and class for one explanation.
local function prepare(name)
  local p = { name = name }
  local net
  if name == 'resnet18_cifar' then
    net = build_model(name, { beta = 1, width = 1, num_classes = 10 })
    p.weights = tmp .. '/resnet18_cifar.safetensors'
    models.save(net, p.weights)
    p.note = 'softplus beta 1, random weights'
    local x = T.randn({ 1, 3, 32, 32 }, { seed = opts.seed, stream = 7 })
    p.x, p.input_note = x, 'a random N(0, 1) 3x32x32 image'
  elseif name == 'resnet_fmnist' then
    -- A snapshot of the shipped weights, so that both children read the same
    -- bytes even while a training run checkpoints over the file.
    local shipped = models.dir() .. '/resnet_fmnist.safetensors'
    local snapshot = tmp .. '/resnet_fmnist_shipped.safetensors'
    local card_ok, card = pcall(models.card, 'resnet_fmnist')
    local o = card_ok and card.model and card.model.options or {}
    local arch = { beta = o.beta or 10, width = o.width or 1, num_classes = o.num_classes or 10 }
    local ok = false
    if io.open(shipped, 'rb') then
      local rc = os.execute('cp ' .. shell_quote(shipped) .. ' ' .. shell_quote(snapshot))
      ok = (rc == 0 or rc == true) and pcall(function() net = build_model(name, arch, snapshot) end)
    end
    if ok and net then
      p.weights = snapshot
      p.note = 'the shipped weights, models/resnet_fmnist.safetensors' ..
        (card_ok and '' or ' (no model card yet: a checkpoint of a training run)')
    else
      net = build_model(name, arch)
      p.weights = tmp .. '/resnet_fmnist.safetensors'
      models.save(net, p.weights)
      p.note = 'RANDOM weights: models/resnet_fmnist.safetensors is not there (yet)'
    end
    local ok, test = pcall(moreau.data.fashion_mnist, { split = 'test' })
    if ok then
      local norm = card_ok and card.data and card.data.normalization or
        { mean = moreau.data.FASHION_MNIST_MEAN, std = moreau.data.FASHION_MNIST_STD }
      local img = moreau.data.get(test, 1)
      p.x = moreau.data.normalize(img, norm.mean, norm.std)
      p.input_note = 'Fashion-MNIST test image 0, normalized'
    else
      p.x = T.randn({ 1, 1, 28, 28 }, { seed = opts.seed, stream = 7 })
      p.input_note = 'a random N(0, 1) 1x28x28 image (Fashion-MNIST not installed)'
    end
  else
    error('bench: unknown model ' .. name .. ' in --models (resnet18_cifar, resnet_fmnist)', 0)
  end
  p.arch = net.model.options
  p.logits = net:forward(p.x)
  p.label = argmax(p.logits)
  p.input = tmp .. '/' .. name .. '_x.f32'
  write_f32(p.input, p.x)
  p.flops = forward_flops(net)
  p.shape = p.x:shape()
  return p
end

local function engine_child(p)
  local cmd = table.concat({
    'LUA_PATH=' .. shell_quote(lua_path), shell_quote(luajit), shell_quote(here .. '/bench.lua'),
    '--child=moreau', '--model=' .. p.name, '--weights=' .. shell_quote(p.weights),
    '--input=' .. shell_quote(p.input), '--label=' .. p.label, '--T=' .. opts.T, '--m=' .. opts.m,
    '--threads=' .. opts.threads, '--seed=' .. opts.seed, '--out=' .. shell_quote(tmp .. '/' .. p.name .. '_engine.f32'),
    '--beta=' .. (p.arch.beta or 0), '--width=' .. (p.arch.width or 1), '--num_classes=' .. (p.arch.num_classes or 10),
  }, ' ')
  local out = read_all(cmd)
  local line = out:match('BENCH_JSON ([^\n]+)')
  if not line then error('bench: the engine child gave no result:\n' .. out, 0) end
  return cjson.decode(line)
end

local function cosine(a, b)
  local ab, aa, bb = 0, 0, 0
  for i = 0, a:numel() - 1 do
    local x, y = a:data()[i], b:data()[i]
    ab, aa, bb = ab + x * y, aa + x * x, bb + y * y
  end
  if aa == 0 or bb == 0 then return 0 / 0 end
  return ab / math.sqrt(aa * bb)
end

local function moreau_section()
  local results = {}
  for _, name in ipairs(list(opts.models)) do
    local p = prepare(name)
    progress('engine: Sparse MoreauGrad on %s, T = %d, m = %d (a fresh process) ...', name, opts.T, opts.m)
    local e = engine_child(p)
    progress('engine: %.2f s', e.seconds)
    local t
    if torch_info then
      progress('torch: Sparse MoreauGrad on %s, T = %d, m = %d (a fresh process) ...', name, opts.T, opts.m)
      t = torch_run('moreau', { { 'model', name }, { 'weights', p.weights }, { 'input', p.input },
        { 'label', p.label }, { 'T', opts.T }, { 'm', opts.m }, { 'threads', opts.threads },
        { 'seed', opts.seed }, { 'out', tmp .. '/' .. name .. '_torch.f32' },
        { 'beta', p.arch.beta or 1 }, { 'width', p.arch.width or 1 }, { 'num-classes', p.arch.num_classes or 10 } })
      progress('torch: %.2f s', t.seconds)
      local me = read_f32(tmp .. '/' .. name .. '_engine.f32', p.shape)
      local mt = read_f32(tmp .. '/' .. name .. '_torch.f32', p.shape)
      t.cosine = cosine(me, mt)
      t.parity = 0
      for i = 0, p.logits:numel() - 1 do
        t.parity = math.max(t.parity, math.abs(p.logits:data()[i] - t.logits[i + 1]))
      end
    end
    results[#results + 1] = { p = p, e = e, t = t }
  end

  print(('== moreau: one Sparse MoreauGrad explanation per image, T = %d, m = %d, K = %d, %d threads')
    :format(opts.T, opts.m, results[1] and results[1].e.K or math.min(101, opts.T), opts.threads))
  print('  (docs/methods.md §7: reg l1, rho 1, gamma 0.1, eta 5e-3, sigma 0.1; the m noisy copies go through the net as one batch;')
  print('  each explanation runs in a fresh process; peak = its VmHWM / ru_maxrss, before = resident set before it starts)')
  for _, r in ipairs(results) do
    print(('  %s: %s; input %s, class %d; forward %.1f MFLOP per image'):format(r.p.name, r.p.note,
      r.p.input_note, r.p.label, r.p.flops / 1e6))
  end
  print(('  GFLOP/s counts T·m forward + input-gradient passes at %dx the forward FLOPs (elementwise ops not counted)')
    :format(GRAD_FACTOR))
  local hdr = { 'model', 'engine s/image', 'ms/iter', 'GFLOP/s' }
  if torch_info then
    for _, h in ipairs { 'torch s/image', 'ms/iter', 'GFLOP/s', 'engine/torch' } do hdr[#hdr + 1] = h end
  end
  local out = { hdr }
  for _, r in ipairs(results) do
    -- per iteration: m forward + input-gradient passes
    local f = opts.T * math.max(opts.m, 1) * GRAD_FACTOR * r.p.flops
    local line = { r.p.name, ('%.2f'):format(r.e.seconds), ('%.0f'):format(1e3 * r.e.seconds / opts.T),
      ('%.1f'):format(f / r.e.seconds / 1e9) }
    if r.t then
      line[#line + 1] = ('%.2f'):format(r.t.seconds)
      line[#line + 1] = ('%.0f'):format(1e3 * r.t.seconds / opts.T)
      line[#line + 1] = ('%.1f'):format(f / r.t.seconds / 1e9)
      line[#line + 1] = ('%.2fx'):format(r.e.seconds / r.t.seconds)
    end
    out[#out + 1] = line
  end
  print_table(out)
  print()
  local mem = { { 'model', 'engine peak', 'before', 'workspace', 'act + wts', 'used / (act + wts)' } }
  if torch_info then
    for _, h in ipairs { 'torch peak', 'before', 'peak engine/torch' } do mem[1][#mem[1] + 1] = h end
  end
  for _, r in ipairs(results) do
    -- used: what the explanation added to the process, plus the weights it
    -- reads (loaded before it starts)
    local used = r.e.peak_rss - r.e.rss_before + r.e.weights
    local line = { r.p.name, mib(r.e.peak_rss), mib(r.e.rss_before), mib(r.e.workspace),
      mib(r.e.activations + r.e.weights), ('%.2f'):format(used / (r.e.activations + r.e.weights)) }
    if r.t then
      line[#line + 1] = mib(r.t.peak_rss)
      line[#line + 1] = mib(r.t.rss_before)
      line[#line + 1] = ('%.2fx'):format(r.e.peak_rss / r.t.peak_rss)
    end
    mem[#mem + 1] = line
  end
  print_table(mem)
  print('  act + wts: one batch of m samples\' activations (every node\'s output) plus the parameters;')
  print('  used = peak - before + weights (the weights are loaded before the explanation starts)')
  if torch_info then
    print('  engine/torch > 1: the engine takes longer / holds more')
    for _, r in ipairs(results) do
      local cos = r.t.cosine == r.t.cosine and ('%.3f'):format(r.t.cosine) or 'n/a (an all-zero map)'
      print(('  %s: same weights in both: max |logit difference| %.1e; map sparsity engine %.3f, torch %.3f;'
        .. ' cosine(engine map, torch map) = %s'):format(r.p.name, r.t.parity, r.e.sparsity, r.t.sparsity, cos))
    end
  end
  if torch_info then
    print('  (the two draw their noise from different generators, Philox and torch.randn, so the maps agree')
    print('  only up to the noise; with m = 0 both are deterministic and agree to float rounding)')
  end
  if opts.T ~= 300 or opts.m ~= 32 then
    print(('  EXTRAPOLATED to T = 300, m = 32 (time x %.2f, linear in T·m; exact in T, as every iteration'):format(
      300 * 32 / (opts.T * math.max(opts.m, 1))))
    print('  costs the same, but only rough in m: small batches run less efficiently; memory does not grow with T):')
    for _, r in ipairs(results) do
      local k = 300 * 32 / (opts.T * math.max(opts.m, 1))
      print(('    %s: engine ~%.0f s/image%s'):format(r.p.name, r.e.seconds * k,
        r.t and ('; torch ~%.0f s/image'):format(r.t.seconds * k) or ''))
    end
  end
  print()
end

-- ------------------------------------------------------------ train

--- Training throughput of resnet_fmnist as recipes/train_fmnist.lua trains it
-- (batch 128, batchnorm batch statistics, cross-entropy, SGD with Nesterov
-- momentum and weight decay): median seconds per step, images per second.
local function train_section()
  local train = moreau.train
  local net = build_model('resnet_fmnist', { beta = 10, width = 1, num_classes = 10 })
  local n = 128
  local x = moreau.tensor.randn({ n, 1, 28, 28 }, { seed = opts.seed })
  local labels = {}
  for i = 1, n do labels[i] = (i - 1) % 10 end
  local opt = train.sgd { lr = 0.1, momentum = 0.9, nesterov = true, weight_decay = 5e-4 }:build(net)
  net:train()
  progress('train: engine, %d steps of batch %d', opts.repeats + 1, n)
  local te = time_median(function() train.step(net, opt, x, labels) end, opts.repeats)
  local tt
  if torch_info then
    progress('train: torch')
    tt = torch_run('train', { { 'threads', opts.threads }, { 'repeats', opts.repeats }, { 'batch', n } }).step_s
  end
  print(('== train: resnet_fmnist training step, batch %d, %d threads (median of %d)'):format(n, opts.threads,
    opts.repeats))
  local rows = { { 'side', 'seconds per step', 'images/s' }, { 'engine', fmt_s(te), ('%.0f'):format(n / te) } }
  if tt then
    rows[#rows + 1] = { 'torch', fmt_s(tt), ('%.0f'):format(n / tt) }
    rows[#rows + 1] = { 'engine/torch', ('%.2fx'):format(te / tt), '' }
  else
    rows[#rows + 1] = { 'torch', 'not run: ' .. tostring(torch_why), '' }
  end
  print_table(rows)
  print()
end

-- ------------------------------------------------------------ batch

--- Issue 7's target 2: many images explained at once in the engine against
-- PyTorch's batch-1 loop, images per second.
local function batch_section()
  local p = prepare('resnet_fmnist')
  local net = build_model('resnet_fmnist', { beta = p.arch.beta or 10, width = p.arch.width or 1,
    num_classes = p.arch.num_classes or 10 }, p.weights)
  local n = opts.images
  local ok, test = pcall(moreau.data.fashion_mnist, { split = 'test' })
  local x, note
  if ok then
    local card_ok, card = pcall(models.card, 'resnet_fmnist')
    local norm = card_ok and card.data and card.data.normalization or
      { mean = moreau.data.FASHION_MNIST_MEAN, std = moreau.data.FASHION_MNIST_STD }
    x = moreau.data.normalize(moreau.data.subset(test, 1, n).images, norm.mean, norm.std)
    note = ('the first %d Fashion-MNIST test images'):format(n)
  else
    x = T.randn({ n, 1, 28, 28 }, { seed = opts.seed, stream = 8 })
    note = ('%d random N(0, 1) images (Fashion-MNIST not installed)'):format(n)
  end
  local logits = net:forward(x)
  local labels = {}
  for i = 1, n do labels[i] = argmax(logits:select(i)) end
  local method = moreau.methods.moreaugrad { reg = 'l1', rho = 1, gamma = 0.1, eta = 5e-3, sigma = 0.1,
    T = opts.batch_T, m = opts.batch_m, K = math.min(101, opts.batch_T), seed = opts.seed,
    chunk = opts.batch_chunk }
  progress('batch: engine, %d images at once, T = %d, m = %d ...', n, opts.batch_T, opts.batch_m)
  local t0 = now()
  method:explain(net, x, labels)
  local te = now() - t0
  progress('batch: engine %.2f s', te)
  local tt
  if torch_info then
    local input, lab = tmp .. '/batch_x.f32', tmp .. '/batch_labels.json'
    write_f32(input, x)
    local f = assert(io.open(lab, 'w'))
    f:write(cjson.encode(labels))
    f:close()
    progress('batch: torch, the batch-1 loop over %d images ...', n)
    tt = torch_run('batch', { { 'weights', p.weights }, { 'input', input }, { 'labels', lab },
      { 'images', n }, { 'T', opts.batch_T }, { 'm', opts.batch_m }, { 'threads', opts.threads },
      { 'beta', p.arch.beta or 10 }, { 'width', p.arch.width or 1 },
      { 'num-classes', p.arch.num_classes or 10 } }).seconds
    progress('batch: torch %.2f s', tt)
  end
  print(('== batch: Sparse MoreauGrad of %s on resnet_fmnist (%s), T = %d, m = %d, %d threads')
    :format(note, p.note, opts.batch_T, opts.batch_m, opts.threads))
  print(('  engine: all %d images at once, items x copies batched, %d per forward pass;'):format(n,
    opts.batch_chunk))
  print('  torch: one image at a time, its m copies in one batch (the batch-1 loop)')
  local rows = { { 'side', 'seconds', 'images/s' }, { 'engine', ('%.2f'):format(te), ('%.2f'):format(n / te) } }
  if tt then
    rows[#rows + 1] = { 'torch', ('%.2f'):format(tt), ('%.2f'):format(n / tt) }
    rows[#rows + 1] = { 'engine images/s / torch images/s', '', ('%.2fx'):format(tt / te) }
  else
    rows[#rows + 1] = { 'torch', 'not run: ' .. tostring(torch_why), '' }
  end
  print_table(rows)
  print()
end

-- ------------------------------------------------------------ methods

--- SmoothGrad and Integrated Gradients on resnet18_cifar, one image, each
-- method's samples in one batch: median seconds per explanation.
local function methods_section()
  local p = prepare('resnet18_cifar')
  local net = build_model('resnet18_cifar', { beta = 1, width = 1, num_classes = 10 }, p.weights)
  local sg = moreau.methods.smoothgrad { samples = opts.samples, sigma = 0.15, seed = opts.seed }
  local ig = moreau.methods.integrated_gradients { steps = opts.steps }
  local reps = math.max(1, math.min(opts.repeats, 3))
  progress('methods: engine, SmoothGrad %d samples and IG %d steps ...', opts.samples, opts.steps)
  local e = {
    sg = time_median(function() sg:explain(net, p.x, { p.label }) end, reps),
    ig = time_median(function() ig:explain(net, p.x, { p.label }) end, reps),
  }
  local t
  if torch_info then
    progress('methods: torch ...')
    local r = torch_run('methods', { { 'weights', p.weights }, { 'input', p.input }, { 'label', p.label },
      { 'samples', opts.samples }, { 'steps', opts.steps }, { 'threads', opts.threads }, { 'repeats', reps } })
    t = { sg = r.smoothgrad_s, ig = r.ig_s }
  end
  print(('== methods: resnet18_cifar (%s), one image, %d threads (median of %d)'):format(p.note,
    opts.threads, reps))
  local rows = { { 'method', 'passes', 'engine', 'GFLOP/s' } }
  if t then for _, h in ipairs { 'torch', 'GFLOP/s', 'engine/torch' } do rows[1][#rows[1] + 1] = h end end
  for _, m in ipairs { { 'smoothgrad', 'sg', opts.samples }, { 'integrated_gradients', 'ig', opts.steps } } do
    local f = m[3] * GRAD_FACTOR * p.flops
    local line = { m[1], tostring(m[3]), fmt_s(e[m[2]]), ('%.1f'):format(f / e[m[2]] / 1e9) }
    if t then
      line[#line + 1] = fmt_s(t[m[2]])
      line[#line + 1] = ('%.1f'):format(f / t[m[2]] / 1e9)
      line[#line + 1] = ('%.2fx'):format(e[m[2]] / t[m[2]])
    end
    rows[#rows + 1] = line
  end
  print_table(rows)
  print()
end

-- ------------------------------------------------------------ main

local ok, err = pcall(function()
  header()
  local peak
  if sections.peak or sections.forward then peak = measure_peak() end
  if sections.peak then print_peak(peak) end
  if sections.forward then forward_section(peak) end
  if sections.moreau then moreau_section() end
  if sections.train then train_section() end
  if sections.batch then batch_section() end
  if sections.methods then methods_section() end
  local load = (read_all('cat /proc/loadavg 2>/dev/null'):match('^(%S+ %S+ %S+)')) or '?'
  print(('load average %s at the end (a busy machine makes every figure slower and noisier)'):format(load))
end)
if opts.keep then
  print('temp folder kept: ' .. tmp)
else
  os.execute('rm -rf ' .. shell_quote(tmp))
end
if not ok then error(err, 0) end
