--- scripts/bench/common.lua — what the bench's sections share: clocks and
-- /proc readings, float32 files, table printing, the models, the PyTorch
-- runner, the header and the prepared inputs of one explanation. Loaded by
-- scripts/bench.lua with (opts, argv, here); returns a table B of these,
-- which each section file (scripts/bench/SECTION.lua) receives.
local ffi = require 'ffi'
local moreau = require 'moreau'
local T = moreau.tensor
local models = moreau.models
local cjson = require 'cjson'

local opts, argv, here = ...
local root = here .. '/..'

--- The words of a comma-separated string ('1,16,32' -> {'1', '16', '32'}).
local function list(s)
  local t = {}
  for w in tostring(s):gmatch('[^,%s]+') do t[#t + 1] = w end
  return t
end

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

-- ------------------------------------------------------------ the parent

-- Set by start(): the temp folder, how to run a child, and PyTorch (found, or why not).
local tmp, luajit, lua_path, python, torch_script, torch_info, torch_why

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

-- The instruction sets the figures depend on, in the order printed.
local ISA_FLAGS = { 'avx2', 'fma', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'avx512_fp16', 'amx_bf16', 'amx_tile' }

--- The first CPU of /proc/cpuinfo: "MODEL NAME (family F, model M)" and its
-- instruction sets among ISA_FLAGS (a VM's model name may be generic, as
-- "AMD EPYC": the family and model numbers tell the generation).
local function cpu_description()
  local f = io.open('/proc/cpuinfo', 'r')
  if not f then return 'unknown CPU', '?' end
  local info = {}
  for line in f:lines() do
    if line:match('^%s*$') then break end
    local k, v = line:match('^(.-)%s*:%s*(.-)%s*$')
    if k then info[k] = v end
  end
  f:close()
  local have = {}
  for flag in (info.flags or ''):gmatch('%S+') do have[flag] = true end
  local isa = {}
  for _, flag in ipairs(ISA_FLAGS) do if have[flag] then isa[#isa + 1] = flag end end
  local cpu = ('%s (family %s, model %s)'):format(info['model name'] or 'unknown CPU', info['cpu family'] or '?',
    info.model or '?')
  return cpu, #isa > 0 and table.concat(isa, ' ') or 'none of ' .. table.concat(ISA_FLAGS, ' ')
end

local function header()
  local cpu, isa = cpu_description()
  local cores = read_all('nproc 2>/dev/null'):gsub('%s+', '')
  local load = (read_all('cat /proc/loadavg 2>/dev/null'):match('^(%S+ %S+ %S+)')) or '?'
  print(('moreau bench — %s, %s cores, load average %s at start'):format(cpu, cores, load))
  print(('instruction sets: %s'):format(isa))
  print(('engine: moreau %s, %s, %d threads (%s)'):format(moreau.version, moreau.backend_info(),
    moreau.get_num_threads(), moreau.get_adaptive_threads() and 'adaptive: fewer while other processes keep cores busy'
      or 'fixed: MOREAU_ADAPTIVE_THREADS=0'))
  if torch_info then
    print(('torch:  PyTorch %s (torchvision %s), CPU, torch.set_num_threads(%d)'):format(
      torch_info.torch, torch_info.torchvision, opts.threads))
  else
    print('torch:  not run (' .. torch_why .. ')')
  end
  local env = {}
  for _, k in ipairs { 'OMP_WAIT_POLICY', 'GOMP_SPINCOUNT', 'OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS',
    'MOREAU_ADAPTIVE_THREADS' } do
    if os.getenv(k) then env[#env + 1] = k .. '=' .. os.getenv(k) end
  end
  if #env > 0 then print('environment: ' .. table.concat(env, ' ')) end
  if opts.threads > 1 and not os.getenv('OMP_WAIT_POLICY') then
    print('note: OpenMP threads spin-wait by default; when other processes share the cores, PyTorch\'s 2-thread')
    print('      figures collapse (and the engine\'s with MOREAU_ADAPTIVE_THREADS=0)')
  end
  print(('command: moreau bench %s'):format(table.concat(argv, ' ')))
  print()
end

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
  p.flops = net:flops()
  p.shape = p.x:shape()
  return p
end

--- Cosine similarity of two tensors of the same size (NaN when either is all
-- zeros: a direction is not defined).
local function cosine(a, b)
  local ab, aa, bb = 0, 0, 0
  local x, y = a:data(), b:data()
  for i = 0, a:numel() - 1 do
    ab, aa, bb = ab + x[i] * y[i], aa + x[i] * x[i], bb + y[i] * y[i]
  end
  if aa == 0 or bb == 0 then return 0 / 0 end
  return ab / math.sqrt(aa * bb)
end

--- Runs a child process of the bench (scripts/bench.lua --child=...) and
-- decodes its one "BENCH_JSON {...}" line; an error with its output if none.
local function child_result(cmd)
  local out = read_all(cmd)
  local line = out:match('BENCH_JSON ([^\n]+)')
  if not line then error('bench: the engine child gave no result:\n' .. out, 0) end
  return cjson.decode(line)
end

--- The Sparse MoreauGrad settings of the section `moreau` (docs/methods.md §7:
-- reg l1, rho 1, gamma 0.1, eta 5e-3, sigma 0.1, K = min(101, T)), T
-- iterations of m noisy copies.
local function sparse_moreaugrad(T_, m, seed)
  return moreau.methods.moreaugrad { reg = 'l1', rho = 1, gamma = 0.1, eta = 5e-3, sigma = 0.1,
    T = T_, m = m, K = math.min(101, T_), seed = seed }
end

--- The child of a 224x224 section (--child=imagenet, --child=resnet50): net
-- explains the image o.input (shape) for class o.label with
-- sparse_moreaugrad(o.T, o.m, o.seed) in this fresh process, writes the map
-- to o.out, and prints "BENCH_JSON {...}": seconds, peak and prior resident
-- set, the net's workspace bytes, threads and the methods' memory budget.
local function explain_child(o, net, shape)
  local x = read_f32(o.input, shape)
  local rss_before = proc_status('VmRSS')
  local t0 = now()
  local map = sparse_moreaugrad(o.T, o.m, o.seed):explain(net, x, { o.label })
  local seconds = now() - t0
  local peak = proc_status('VmHWM')
  if o.out ~= '' then write_f32(o.out, map) end
  io.stdout:write('BENCH_JSON ', cjson.encode {
    seconds = seconds, peak_rss = peak, rss_before = rss_before, workspace = net:workspace_bytes(),
    threads = moreau.get_num_threads(), budget = moreau.methods.memory_budget(),
  }, '\n')
end

--- Runs scripts/bench.lua --child=NAME (explain_child's parent side): the
-- model file `file`, p.input, p.label and p.out_engine, --imagenet_T
-- iterations of --imagenet_m copies; returns the child's result.
local function imagenet_child(name, file, p)
  return child_result(table.concat({
    'LUA_PATH=' .. shell_quote(lua_path), shell_quote(luajit), shell_quote(here .. '/bench.lua'),
    '--child=' .. name, '--weights=' .. shell_quote(file), '--input=' .. shell_quote(p.input),
    '--label=' .. p.label, '--T=' .. opts.imagenet_T, '--m=' .. opts.imagenet_m,
    '--threads=' .. opts.threads, '--seed=' .. opts.seed, '--out=' .. shell_quote(p.out_engine),
    '--precision=' .. opts.precision,
  }, ' '))
end

--- Median seconds (--repeats, after one warm-up call) of forward + input
-- gradient of net (the logit of class i mod 1000 for item i, no weight
-- gradients) at a batch of N N(0, 1) images 3 x size x size (seed --seed,
-- stream N); `name` for the progress lines.
local function time_input_grad(net, N, size, name)
  local core = require 'moreau.core'
  local x = T.randn({ N, 3, size, size }, { seed = opts.seed, stream = N })
  local lab = ffi.new('int32_t[?]', N)
  for i = 0, N - 1 do lab[i] = i % 1000 end
  local scores = ffi.new('float[?]', N)
  local g = T.zeros(x:shape())
  progress('engine: %s forward + input gradient, batch %d ...', name, N)
  local t = time_median(function()
    core.check(core.C.mr_oracle_grad(core.handle(net), core.handle(x), lab, core.C.MR_SCORE_LOGIT, scores,
      core.handle(g)))
  end, opts.repeats)
  progress('engine: %.0f ms', t * 1e3)
  return t
end

local B = {
  cosine = cosine, child_result = child_result, sparse_moreaugrad = sparse_moreaugrad,
  time_input_grad = time_input_grad,
  explain_child = explain_child, imagenet_child = imagenet_child,
  opts = opts, argv = argv, here = here, root = root, list = list, now = now, proc_status = proc_status,
  shell_quote = shell_quote, read_all = read_all, median = median, time_median = time_median,
  write_f32 = write_f32, read_f32 = read_f32, mib = mib, fmt_s = fmt_s, print_table = print_table,
  progress = progress, build_model = build_model, GRAD_FACTOR = GRAD_FACTOR,
  activation_weight_bytes = activation_weight_bytes, argmax = argmax, torch_run = torch_run, header = header,
  prepare = prepare,
}

--- The parent's setup: threads, a temp folder, the child's command and the
-- PyTorch probe; sets B.tmp, B.luajit, B.lua_path, B.torch_info, B.torch_why.
function B.start()
  moreau.set_num_threads(opts.threads)
  tmp = read_all('mktemp -d /tmp/moreau-bench.XXXXXX'):gsub('%s+$', '')
  if tmp == '' then error('bench: mktemp -d failed', 0) end

  luajit = (arg and arg[-1]) or 'luajit'
  lua_path = root .. '/bindings/?.lua;' .. root .. '/bindings/?/init.lua;' .. (os.getenv('LUA_PATH') or ';;')

  -- PyTorch: found, or why not.
  python = opts.python ~= '' and opts.python or
    (io.open('/usr/bin/python3', 'r') and '/usr/bin/python3' or 'python3')
  torch_script = here .. '/bench_torch.py'
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
  B.tmp, B.luajit, B.lua_path, B.torch_info, B.torch_why = tmp, luajit, lua_path, torch_info, torch_why
end

return B
