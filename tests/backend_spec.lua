-- The backend seam (moreau.h, "backends"; docs/architecture.md): a second
-- backend added without touching any op. tests/backends/counting.c counts
-- every call the engine makes through the interface and delegates to the CPU
-- backend; these specs run networks on it and check the counts, that results
-- are the CPU's bit for bit, and the fallback rule (a pass the backend does
-- not support runs on "cpu", and the node says so).
local ffi = require 'ffi'
local core = require 'moreau.core'
local T = require 'moreau.tensor'
local nn = require 'moreau.nn'
local methods = require 'moreau.methods'
local gc = require 'helpers.gradcheck'
local C = core.C

ffi.cdef [[
int mr_counting_register(void);
int64_t mr_counting_runs(int op, int pass);
int64_t mr_counting_calls(const char *entry);
void mr_counting_reset(void);
void mr_counting_refuse(int op);
int mr_counting_fail(const char *entry);
]]

-- The test library is built next to the library under test (CMakeLists.txt).
-- The registry keeps pointers into it, so it must never be unloaded: it is
-- linked with -Wl,-z,nodelete, and this file-level reference keeps the
-- namespace alive too (docs/architecture.md, "How to add a backend", 3).
local lib_dir = core.lib_path:match('^(.*)/[^/]*$') or '.'
local counting = ffi.load(lib_dir .. '/libmoreau_counting.so')
core.check(counting.mr_counting_register())

local SEED = 5
local PASSES = { forward = C.MR_PASS_FORWARD, vjp = C.MR_PASS_VJP, jvp = C.MR_PASS_JVP,
                 vjp_tangent = C.MR_PASS_VJP_TANGENT }

-- op name -> index in mr_op_names() (the id a backend sees)
local op_ids, op_count = {}, 0
do
  local names = C.mr_op_names()
  while names[op_count] ~= nil do
    op_ids[ffi.string(names[op_count])] = op_count
    op_count = op_count + 1
  end
end

local function same_bits(a, b)
  if a:numel() ~= b:numel() then return false end
  return ffi.string(a:data(), 4 * a:numel()) == ffi.string(b:data(), 4 * b:numel())
end

-- Every op at least once, a fan-out (h feeds silu, tanh and sigmoid) and a
-- repeated input (mul of s with itself is not used: add(a, b) then mul by c).
local function all_ops_net()
  local b = nn.builder({ 2, 8, 8 }, { seed = SEED })
  local h = b:conv2d('c1', b.input, 2, 4, 3, { padding = 1 })
  h = b:batchnorm2d('bn', h, 4)
  h = b:op('relu', { h })
  local s = b:add(b:op('silu', { h }), b:op('tanh', { h }))
  h = b:mul(s, b:op('sigmoid', { h }))
  h = b:op('softmax', { h })
  h = b:maxpool2d(h, 2)
  h = b:conv2d('c2', h, 4, 4, 3, { padding = 1 })
  h = b:softplus(h, { beta = 2 })
  -- the ops of imported models (ops_imported_spec.lua)
  h = b:op('clip', { h }, nil, { min = -0.5, max = 6 })
  h = b:op('gelu', { b:op('hardswish', { b:op('hardsigmoid', { h }) }) })
  h = b:op('erf', { b:op('gelu', { h }, nil, { approximate = 1 }) })
  h = b:op('transpose', { h }, nil, { perm = { 0, 2, 1 } })
  h = b:op('pad', { h }, nil, { pads = { 0, 0, 1, 0, 0, 1 }, pad_mode = 1 })
  h = b:op('slice', { h }, nil, { axis = 2, start = 1, ['end'] = 5 })
  local token = b:param('token', { 4, 1, 4 }, 'weight', { uniform = 1 })
  h = b:op('concat', { h, b:op('constant', { h }, { token }) }, nil, { axis = 1 })
  h = b:op('reshape', { b:op('gather', { h }, nil, { axis = 1, index = 2 }) }, nil, { shape = { 4, 2, 2 } })
  h = b:op('layernorm', { h }, { b:param('ln.weight', { 2 }, 'weight', { uniform = 1 }),
    b:param('ln.bias', { 2 }, 'weight', { uniform = 1 }) })
  h = b:op('softmax', { h }, nil, { axis = -1 })
  h = b:avgpool2d(h, 2)
  h = b:op('reduce_mean', { h }, nil, { axes = 6, keepdims = 1 })
  h = b:adaptive_avgpool2d(h, { 1, 1 })
  h = b:dropout(b:op('flatten', { h }), 0.25)
  return b:build(b:op('log_softmax', { b:linear('fc', h, 4, 5) }))
end

-- forward, backward (with parameter gradients), jvp and hvp_backward at one
-- point; every output in a list.
local function run_all(net)
  local x = T.randn({ 3, 2, 8, 8 }, { seed = SEED, stream = 1 })
  local v = T.randn({ 3, 2, 8, 8 }, { seed = SEED, stream = 2 })
  local u = T.randn({ 3, 5 }, { seed = SEED, stream = 3 })
  local out = { net:forward(x):clone() }
  net:zero_grad()
  out[#out + 1] = net:backward(u, { params = true })
  for _, p in ipairs(net:params()) do
    if p.kind == 'weight' then out[#out + 1] = net:grad(p.name):clone() end
  end
  local y, dy = net:jvp(x, v)
  out[#out + 1], out[#out + 2] = y, dy
  local gx, dgx = net:hvp_backward(u, u)
  out[#out + 1], out[#out + 2] = gx, dgx
  return out
end

local function op_counts(net)
  local per = {}
  for i, n in ipairs(net:nodes()) do
    if i > 1 then per[n.op] = (per[n.op] or 0) + 1 end
  end
  return per
end

describe('backends', function()
  after_each(function()
    counting.mr_counting_refuse(-1)
    counting.mr_counting_fail(nil)
  end)

  it('every op has CPU kernels for every pass, and the tables agree on the count', function()
    assert.is_true(op_count >= 17)
    local cpu = C.mr_backend_cpu()
    assert.are.equal('cpu', ffi.string(cpu.name))
    for name, id in pairs(op_ids) do
      for pass_name, pass in pairs(PASSES) do
        assert(cpu.supports(cpu.ctx, id, pass) == 1, name .. ' lacks a CPU ' .. pass_name)
      end
    end
    assert.are.equal(0, cpu.supports(cpu.ctx, op_count, C.MR_PASS_FORWARD))
  end)

  it('the all-ops network uses every op of mr_op_names() (a new op must join it)', function()
    local used = op_counts(all_ops_net())
    for name in pairs(op_ids) do
      assert(used[name], "op '" .. name .. "' is missing from all_ops_net (docs/architecture.md, How to add an op)")
    end
    for name in pairs(used) do assert(op_ids[name], "all_ops_net uses '" .. name .. "', not in mr_op_names()") end
  end)

  it('every op of mr_op_names() has a spec in tests/ops_*_spec.lua', function()
    local files = {}
    local ls = assert(io.popen('ls tests/ops_*_spec.lua'))
    for path in ls:lines() do files[#files + 1] = path end
    ls:close()
    assert.is_true(#files >= 3, 'found ' .. #files .. ' tests/ops_*_spec.lua files (run from the repository root)')
    local text = {}
    for _, path in ipairs(files) do
      local f = assert(io.open(path, 'r'))
      text[#text + 1] = f:read('*a')
      f:close()
    end
    text = table.concat(text, '\n')
    -- a builder call (b:conv2d(...)) or a quoted name (b:op('relu', ...))
    for name in pairs(op_ids) do
      local found = text:find(':' .. name .. '(', 1, true) or text:find("'" .. name .. "'", 1, true)
        or text:find('"' .. name .. '"', 1, true)
      assert(found, "op '" .. name .. "' appears in no tests/ops_*_spec.lua (docs/architecture.md, How to add an op)")
    end
  end)

  it('a network starts on cpu and records the backend of every pass', function()
    local net = all_ops_net()
    assert.are.equal('cpu', net:backend())
    assert.is_nil(net:ran_on(1)) -- no pass yet
    net:forward(T.randn({ 1, 2, 8, 8 }, { seed = SEED }))
    assert.is_nil(net:ran_on(0)) -- the input node runs nothing
    for i = 1, #net:nodes() - 1 do assert.are.equal('cpu', net:ran_on(i)) end
  end)

  it('runs every op on the counting backend, bit-identical to cpu, and counts each pass', function()
    local ref = run_all(all_ops_net())
    local net = all_ops_net():set_backend('counting')
    assert.are.equal('counting', net:backend())
    counting.mr_counting_reset()
    local got = run_all(net)
    assert.are.equal(#ref, #got)
    for k = 1, #ref do
      assert(same_bits(ref[k], got[k]), ('output %d differs from the CPU backend (seed %d)'):format(k, SEED))
    end
    for i = 1, #net:nodes() - 1 do assert.are.equal('counting', net:ran_on(i)) end
    -- run_all: forward then jvp run each node's forward once each (2 forwards),
    -- jvp once; backward and hvp_backward each run every node's vjp once, and
    -- hvp_backward its vjp_tangent once (every node is on the output's path).
    local want = { forward = 2, vjp = 2, jvp = 1, vjp_tangent = 1 }
    for op, nodes in pairs(op_counts(net)) do
      for pass_name, pass in pairs(PASSES) do
        assert.are.equal(want[pass_name] * nodes, tonumber(counting.mr_counting_runs(op_ids[op], pass)),
          op .. ' ' .. pass_name)
      end
    end
    -- the workspace came from the backend; the fan-out sums (h feeds three
    -- consumers: two adds per reverse pass, backward and hvp: gy and dgy;
    -- the input of concat feeds two: one add per pass) too
    assert.is_true(tonumber(counting.mr_counting_calls('alloc')) > 0)
    assert.are.equal(2 + 2 * 2 + (1 + 2), tonumber(counting.mr_counting_calls('add')))
    assert.is_true(tonumber(counting.mr_counting_calls('copy')) > 0)
  end)

  it('a pass the backend does not support falls back to cpu, and the node says so', function()
    local ref = run_all(all_ops_net())
    local net = all_ops_net():set_backend('counting')
    counting.mr_counting_refuse(op_ids.relu)
    counting.mr_counting_reset()
    local got = run_all(net)
    for k = 1, #ref do
      assert(same_bits(ref[k], got[k]), ('output %d differs from the CPU backend (seed %d)'):format(k, SEED))
    end
    for i, n in ipairs(net:nodes()) do
      if i > 1 then assert.are.equal(n.op == 'relu' and 'cpu' or 'counting', net:ran_on(i - 1), n.op) end
    end
    for _, pass in pairs(PASSES) do
      assert.are.equal(0, tonumber(counting.mr_counting_runs(op_ids.relu, pass)))
    end
    assert.are.equal(2 * 2, tonumber(counting.mr_counting_runs(op_ids.conv2d, C.MR_PASS_FORWARD)))
  end)

  it('finite-difference checks hold on the counting backend, every node on it', function()
    local net = gc.net { input = { 3, 6, 6 }, seed = SEED, build = function(b, x)
      local h = b:conv2d('c', x, 3, 4, 3, { padding = 1 })
      h = b:softplus(h, { beta = 2 })
      return b:linear('fc', b:op('flatten', { b:avgpool2d(h, 2) }), 36, 3)
    end }
    net:set_backend('counting')
    local r = gc.check { net = net, batch = 2, seed = SEED }
    gc.assert_ok(r, 1e-3)
    for _, b in ipairs(r.ran_on) do assert.are.equal('counting', b) end
  end)

  it('the sampler draws its noise and runs its adds through the backend', function()
    local function explain(net)
      local x = T.randn({ 2, 2, 8, 8 }, { seed = SEED, stream = 7 })
      return methods.smoothgrad { samples = 4, seed = SEED }:explain(net, x, { 1, 3 })
    end
    local ref = explain(all_ops_net())
    counting.mr_counting_reset()
    local got = explain(all_ops_net():set_backend('counting'))
    assert(same_bits(ref, got), 'smoothgrad differs from the CPU backend (seed ' .. SEED .. ')')
    assert.are.equal(2 * 4, tonumber(counting.mr_counting_calls('fill_normal')))
  end)

  it('DeepLIFT runs its passes on the backend', function()
    local function build()
      local b = nn.builder({ 4 }, { seed = SEED })
      local h = b:linear('l1', b.input, 4, 6)
      h = b:mul(b:op('tanh', { h }), h)
      return b:build(b:linear('l2', h, 6, 3))
    end
    local x = T.randn({ 2, 4 }, { seed = SEED })
    local ref = methods.create('deeplift', {}):explain(build(), x, { 0, 2 })
    counting.mr_counting_reset()
    local got = methods.create('deeplift', {}):explain(build():set_backend('counting'), x, { 0, 2 })
    assert(same_bits(ref, got), 'deeplift differs from the CPU backend (seed ' .. SEED .. ')')
    -- the bilinear rule re-runs mul's vjp at the midpoints: one more than the reverse pass
    assert.are.equal(2, tonumber(counting.mr_counting_runs(op_ids.mul, C.MR_PASS_VJP)))
  end)

  it('refuses an unknown backend name and a second registration of a name', function()
    local net = all_ops_net()
    assert.has_error(function() net:set_backend('nope') end, "mr_net_set_backend: no backend named 'nope'")
    assert.are.equal('cpu', net:backend())
    assert.are.equal(C.MR_EINVAL, C.mr_backend_register(C.mr_backend_cpu()))
    assert.are.equal("backend_register: a backend named 'cpu' is already registered",
      ffi.string(C.mr_last_error()))
    local partial = ffi.new('mr_backend')
    partial.name = 'partial'
    assert.are.equal(C.MR_EINVAL, C.mr_backend_register(partial))
    assert.are.equal("backend_register: 'partial' leaves an entry NULL", ffi.string(C.mr_last_error()))
    assert.is_true(C.mr_backend_get('partial') == nil)
  end)

  it('a reverse pass after a backend change asks for a forward first', function()
    local net = all_ops_net()
    net:forward(T.randn({ 1, 2, 8, 8 }, { seed = SEED }))
    net:set_backend('counting')
    -- the engine's own check (the Lua face checks earlier, with the same message)
    assert.are.equal(C.MR_ESTATE, C.mr_net_backward(core.handle(net), core.handle(T.zeros({ 1, 5 })), nil, 0))
    assert.are.equal('backward: run forward first', ffi.string(C.mr_last_error()))
    assert.has_error(function() net:backward(T.zeros { 1, 5 }) end, 'backward: run forward first')
  end)

  -- A failing entry surfaces as its own message, never as whatever message
  -- was set last: first leave an unrelated one behind.
  local function stale_message()
    C.mr_backend_register(nil)
    assert.are.equal('backend_register: the backend or its name is NULL', ffi.string(C.mr_last_error()))
  end

  it('a kernel that fails stops the pass with a message naming the backend, the pass and the op', function()
    local net = all_ops_net():set_backend('counting')
    local x = T.randn({ 1, 2, 8, 8 }, { seed = SEED })
    net:forward(x)
    assert.are.equal(C.MR_OK, counting.mr_counting_fail('run'))
    stale_message()
    assert.has_error(function() net:forward(x) end, "backend 'counting': forward of conv2d failed (MR_EINVAL)")
    -- the stopped forward leaves no point for a reverse pass
    assert.are.equal(C.MR_ESTATE, C.mr_net_backward(core.handle(net), core.handle(T.zeros({ 1, 5 })), nil, 0))
    assert.are.equal('backward: run forward first', ffi.string(C.mr_last_error()))
    -- the reverse passes report the same way (the last forward did not finish)
    counting.mr_counting_fail(nil)
    net:forward(x)
    counting.mr_counting_fail('run')
    stale_message()
    assert.are.equal(C.MR_EINVAL, C.mr_net_backward(core.handle(net), core.handle(T.zeros({ 1, 5 })), nil, 0))
    assert.are.equal("backend 'counting': vjp of log_softmax failed (MR_EINVAL)", ffi.string(C.mr_last_error()))
    -- a refused op runs on cpu, which does not fail: the next op reports
    counting.mr_counting_refuse(op_ids.conv2d)
    stale_message()
    assert.has_error(function() net:forward(x) end, "backend 'counting': forward of batchnorm2d failed (MR_EINVAL)")
    assert.are.equal(C.MR_EINVAL, counting.mr_counting_fail('alloc'))
  end)

  it('a fill_normal that fails stops the sampler with a message naming the backend and the entry', function()
    local net = all_ops_net():set_backend('counting')
    local x = T.randn({ 2, 2, 8, 8 }, { seed = SEED, stream = 7 })
    counting.mr_counting_fail('fill_normal')
    stale_message()
    assert.has_error(function() methods.smoothgrad { samples = 4, seed = SEED }:explain(net, x, { 1, 3 }) end,
      "backend 'counting': fill_normal failed (MR_EINVAL)")
  end)
end)
