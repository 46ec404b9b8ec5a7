--- moreau.nn — build networks in Lua; run them through the engine.
--
-- Two levels:
--
-- 1. Modules, as in PyTorch, composed into containers; parameter names follow
--    PyTorch's state_dict (a child's name, a dot, the parameter name):
--
--      local nn = require 'moreau.nn'
--      local model = nn.Sequential {
--        nn.Conv2d(1, 8, 3, { padding = 1 }), nn.Softplus { beta = 10 },
--        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
--      }
--      local net = nn.build(model, { 1, 28, 28 }, { seed = 0 })   -- names 0.weight, 4.bias, ...
--
--    A module is any table with `build(self, b, x, prefix) -> node`; write your
--    own for blocks with skips (see moreau.models). nn.Named{{'conv1', m}, ...}
--    names children explicitly.
--
-- 2. The builder underneath, one engine node per call:
--
--      local b = nn.builder { 3, 32, 32 }
--      local h = b:conv2d('conv1', b.input, 3, 16, 3, { padding = 1, bias = false })
--      h = b:relu(h)
--      local net = b:build(h)
--
-- Parameters are initialized as PyTorch does (weights and biases uniform in
-- ±1/sqrt(fan_in), batchnorm weight 1, bias 0, running var 1), from the
-- counter-based RNG with (seed, stream = parameter index): the same seed gives
-- the same network everywhere.
local bit = require 'bit'
local ffi = require 'ffi'
local core = require 'moreau.core'
local T = require 'moreau.tensor'
local C, check, handle = core.C, core.check, core.handle

local nn = {}

-- ------------------------------------------------------------- the Net

local Net = {}
Net.__index = Net
nn.Net = Net

local out_tensor = ffi.new('mr_tensor*[1]')

local function new_like_output(self, N)
  local s = self:output_shape()
  table.insert(s, 1, N)
  return T.zeros(s)
end

local function check_input(self, x, what)
  if not T.is(x) then error(what .. ': expected a tensor, got ' .. type(x), 3) end
end

--- One forward pass by `pass` (mr_net_forward or mr_net_forward_inference);
-- a copy of the output.
local function run_forward(self, x, what, pass)
  check_input(self, x, what)
  self._x = x -- the reverse pass reads x: keep it alive
  check(pass(handle(self), handle(x), nil))
  check(C.mr_tensor_clone(out_tensor, C.mr_net_output_get(handle(self))))
  return T.wrap(out_tensor[0])
end

--- y = net(x), in the net's mode (net:train() / net:eval(); the training API).
-- ARGS: x (N, input shape...). RETURN: a new tensor (N, output shape...).
function Net:forward(x) return run_forward(self, x, 'forward', C.mr_net_forward) end

--- y = the inference-mode function of x, whatever net:train()/eval() says:
-- batchnorm uses its running statistics, dropout is the identity, and no
-- parameter, buffer or dropout counter changes (README, "Training mode").
-- Predictions inside methods, attacks and metrics use it. A following
-- backward differentiates this inference pass.
-- ARGS: x (N, input shape...). RETURN: a new tensor (N, output shape...).
function Net:forward_inference(x)
  return run_forward(self, x, 'forward_inference', C.mr_net_forward_inference)
end

--- Reverse pass after forward: gx = J^T gy. With opts.params, parameter
-- gradients are accumulated into net:grad(name). RETURN: gx (like x).
function Net:backward(gy, opts)
  check_input(self, gy, 'backward')
  if not self._x then error('backward: run forward first', 2) end
  local gx = T.zeros(core.shape(self._x))
  check(C.mr_net_backward(handle(self), handle(gy), handle(gx), (opts and opts.params) and 1 or 0))
  return gx
end

--- Forward pass with a tangent. RETURN: y, dy = J(x) v.
function Net:jvp(x, v)
  check_input(self, x, 'jvp')
  check_input(self, v, 'jvp')
  self._x = x
  local N = core.size(x, 1)
  local y, dy = new_like_output(self, N), new_like_output(self, N)
  check(C.mr_net_jvp(handle(self), handle(x), handle(v), handle(y), handle(dy)))
  return y, dy
end

--- Reverse pass after jvp (forward-over-reverse). dgy may be nil (zero).
-- RETURN: gx = J^T gy, dgx = d/de [J(x+e v)^T (gy + e dgy)].
function Net:hvp_backward(gy, dgy)
  check_input(self, gy, 'hvp_backward')
  if not self._x then error('hvp_backward: run jvp first', 2) end
  local gx, dgx = T.zeros(core.shape(self._x)), T.zeros(core.shape(self._x))
  check(C.mr_net_hvp_backward(handle(self), handle(gy), dgy and handle(dgy) or nil, handle(gx), handle(dgx)))
  return gx, dgx
end

function Net:__call(x) return self:forward(x) end

--- Training mode (on true or nil) or inference mode (on false), as
-- torch.nn.Module.train: in the training passes (forward, backward)
-- batchnorm then uses batch statistics and updates its running ones, and
-- dropout draws masks. The explanation passes ignore it (README, "Training
-- mode"). RETURN: self.
function Net:train(on)
  check(C.mr_net_set_training(handle(self), on == false and 0 or 1))
  return self
end
--- Inference mode, as torch.nn.Module.eval (self:train(false)). RETURN: self.
function Net:eval() return self:train(false) end
--- The seed of the dropout masks in training mode (the counter-based RNG:
-- stream = the node id, counter = the number of forward and jvp passes so
-- far; inference-only passes do not count). ARGS: s, an integer >= 0.
-- RETURN: self.
function Net:seed(s)
  -- an integer cdata >= 0 goes to the uint64_t exactly; a number must be an
  -- integer the double holds exactly (NaN, ±inf, -1 and 1.5 would convert
  -- to some other seed)
  local ok = type(s) == 'number' and s == math.floor(s) and s >= 0 and s < 2 ^ 53
    or type(s) == 'cdata' and (ffi.istype('uint64_t', s) or ffi.istype('int64_t', s) and s >= 0)
  if not ok then
    error(('net:seed: s must be an integer in [0, 2^53) or a uint64_t, got %s'):format(
      type(s) == 'cdata' and tostring(s) or require('moreau.options').show(s)), 2)
  end
  check(C.mr_net_set_seed(handle(self), s))
  return self
end
--- Sets every parameter gradient to 0 (they accumulate, `+=`, over
-- backward calls, as in PyTorch). RETURN: self.
function Net:zero_grad() check(C.mr_net_zero_grad(handle(self))) return self end

-- The id of parameter `name`; raises at the caller's caller, "net:WHO: name
-- must be a string ..." for anything but a string (the FFI would raise a raw
-- conversion error) and "net: no parameter named 'NAME'" for an unknown one.
local function param_id(self, who, name)
  if type(name) ~= 'string' then
    error(('net:%s: name must be a string (as the state_dict names it), got %s'):format(who,
      require('moreau.options').show(name)), 3)
  end
  local id = C.mr_net_param_find(handle(self), name)
  if id < 0 then error("net: no parameter named '" .. name .. "'", 3) end
  return id
end

--- Parameter `name` as a tensor that shares the network's memory.
function Net:param(name)
  local id = param_id(self, 'param', name)
  return T.borrow(C.mr_net_param_get(handle(self), id), self)
end

--- Gradient of parameter `name` (nil for buffers such as running statistics).
function Net:grad(name)
  local id = param_id(self, 'grad', name)
  local g = C.mr_net_param_grad_get(handle(self), id)
  return g ~= nil and T.borrow(g, self) or nil
end

--- All parameters in creation order: a list of {name=, kind='weight'|'buffer', tensor=}.
function Net:params()
  local list = {}
  for i = 0, C.mr_net_param_count(handle(self)) - 1 do
    list[#list + 1] = {
      name = ffi.string(C.mr_net_param_name(handle(self), i)),
      kind = C.mr_net_param_kind(handle(self), i) == C.MR_PARAM_WEIGHT and 'weight' or 'buffer',
      tensor = T.borrow(C.mr_net_param_get(handle(self), i), self),
    }
  end
  return list
end

--- Number of trained parameters (weights, not buffers).
function Net:num_params()
  local n = 0
  for _, p in ipairs(self:params()) do
    if p.kind == 'weight' then n = n + core.numel(p.tensor) end
  end
  return n
end

local function node_shape(self, node)
  local nd, s = ffi.new('int[1]'), ffi.new('int64_t[3]')
  check(C.mr_net_node_shape(handle(self), node, nd, s))
  local t = {}
  for i = 0, nd[0] - 1 do t[i + 1] = tonumber(s[i]) end
  return t
end

--- The per-sample input shape (the batch dimension left out): {1, 28, 28} for the shipped model.
function Net:input_shape() return node_shape(self, 0) end
--- The per-sample output shape (the batch dimension left out): {10} for the shipped model.
function Net:output_shape() return node_shape(self, self.output) end
--- Bytes of workspace the network holds now (activations, gradients,
-- tangents, scratch).
function Net:workspace_bytes() return tonumber(C.mr_net_workspace_bytes(handle(self))) end

--- Moves the network to the backend registered as `name` ("cpu", the default,
-- or one a library registered with mr_backend_register). The workspace is
-- freed: run a forward (or jvp) before a reverse pass.
function Net:set_backend(name)
  check(C.mr_net_set_backend(handle(self), name))
  self._x = nil
  return self
end

--- The name of the network's backend ('cpu' unless set_backend moved it).
function Net:backend() return ffi.string(C.mr_net_backend_name(handle(self))) end

--- The backend that ran node i's most recent pass (0-based node ids as in
-- net:nodes(), whose entry i + 1 it describes): the network's own backend, or
-- 'cpu' for a pass that backend does not support (the fallback rule). nil for
-- the input node (0) and for a node no pass has run yet. An i that is not an
-- integer in 0..#net:nodes()−1 raises "net:ran_on: node I outside 0..M".
function Net:ran_on(i)
  local m = C.mr_net_node_count(handle(self)) - 1
  if type(i) ~= 'number' or i ~= math.floor(i) or i < 0 or i > m then
    error(('net:ran_on: node %s outside 0..%d (0-based node ids, as net:nodes()[i + 1])'):format(
      require('moreau.options').show(i), m), 2)
  end
  local s = C.mr_net_node_ran_on(handle(self), i)
  return s ~= nil and ffi.string(s) or nil
end

--- The nodes: a list of {op=, label=, shape=}.
function Net:nodes()
  local list = {}
  for i = 0, C.mr_net_node_count(handle(self)) - 1 do
    list[#list + 1] = {
      op = ffi.string(C.mr_net_node_op(handle(self), i)),
      label = ffi.string(C.mr_net_node_label(handle(self), i)),
      shape = node_shape(self, i),
    }
  end
  return list
end

local edge_ids = ffi.new('int[8]') -- a node has at most 2 inputs and 4 parameters (graph.h)

-- The shape of the k-th (0-based) input node or parameter of node i.
local function input_shape(self, i, k)
  check(C.mr_net_node_inputs(edge_ids, 8, handle(self), i))
  return node_shape(self, edge_ids[k])
end
local function param_shape(self, i, k)
  check(C.mr_net_node_params(edge_ids, 8, handle(self), i))
  return core.shape(T.borrow(C.mr_net_param_get(handle(self), edge_ids[k]), self))
end

local function prod(shape)
  local n = 1
  for _, d in ipairs(shape) do n = n * d end
  return n
end

-- Multiply-adds per item of the ops that do matrix work, from the node's
-- per-sample output shape `out` and its inputs' and parameters' shapes.
local madds = {
  -- Cout·(Cin/groups)·kh·kw per output position: numel(weight)·Ho·Wo
  conv2d = function(self, i, out) return prod(param_shape(self, i, 0)) * out[2] * out[3] end,
  -- in·out = numel(weight): samples are 1-D (linear.c)
  linear = function(self, i) return prod(param_shape(self, i, 0)) end,
  -- a (B, n, k) x b (B, k, m), or (n, k) x (k, m): k per entry of y
  matmul = function(self, i, out)
    local a = input_shape(self, i, 0)
    return prod(out) * a[#a]
  end,
  -- x (..., k) times W (k, m): k per entry of y (..., m)
  matmul_param = function(self, i, out) return prod(out) * param_shape(self, i, 0)[1] end,
}

--- Forward FLOPs per item (one sample of the batch), counted from the graph,
-- a multiply-add counting as 2 FLOPs (the convention of GFLOP/s figures, as
-- the bench reports them; MAC counts such as "0.56 GMACs" for ResNet-18 on
-- CIFAR are half of it). It counts the multiply-adds of every op that does
-- matrix work, with y the node's per-sample output:
--   conv2d        2·Cout·(Cin/groups)·kh·kw·Ho·Wo  (= 2·numel(weight)·Ho·Wo)
--   linear        2·in·out                         (= 2·numel(weight))
--   matmul        2·numel(y)·k  for a (B, n, k) x b (B, k, m), or (n, k) x
--                 (k, m): 2·B·n·k·m (attention's Q Kᵀ and P V)
--   matmul_param  2·numel(y)·k  for x (..., k) times W (k, m)
-- Nothing else is counted: bias adds, elementwise ops and activations,
-- normalization (batchnorm2d, layernorm), pooling, softmax, reductions,
-- residual adds and copies (reshape, transpose, concat, ...). The weight of
-- a node is found through the graph (the node's first parameter), whatever
-- its name, so a model imported from ONNX is counted as one built here. The
-- backward's input gradient costs as much again, a weight gradient once more.
-- RETURN: a number (an integer).
function Net:flops()
  local total = 0
  for i, nd in ipairs(self:nodes()) do
    local f = madds[nd.op]
    if f then total = total + 2 * f(self, i - 1, nd.shape) end
  end
  return total
end

function Net:__tostring()
  return ('net %s -> %s, %d nodes, %d parameters'):format(table.concat(self:input_shape(), 'x'),
    table.concat(self:output_shape(), 'x'), C.mr_net_node_count(handle(self)), self:num_params())
end

--- Loads weights by name from a safetensors file (see moreau.safetensors).
-- opts {strict = true}: the file may hold nothing the network lacks.
function Net:load(path, opts)
  require('moreau.safetensors').load_net(self, path, opts)
  return self
end

--- Saves every parameter to a safetensors file; metadata: a table of strings.
function Net:save(path, metadata)
  require('moreau.safetensors').save_net(self, path, metadata)
  return self
end

-- --------------------------------------------------------- the builder

local Builder = {}
Builder.__index = Builder

-- An integer argument of a builder method: a Lua number without fraction,
-- or an integer cdata (1LL, an element of an int64_t array) as its value;
-- with positive, at least 1 (and below 2^62, as a dim). Raises "WHO: NAME
-- must be an integer, got V" (or "a positive integer") at the caller's
-- caller otherwise, before any arithmetic on it.
local function int_arg(who, name, v, positive)
  local n = v
  if type(v) == 'cdata' and (ffi.istype('int64_t', v) or ffi.istype('uint64_t', v)) then
    n = (v < 2 ^ 53 and v > -2 ^ 53) and tonumber(v) or nil
  end
  if type(n) ~= 'number' or n ~= math.floor(n) or not (positive and n >= 1 and n < 2 ^ 62 or
      not positive and n > -2 ^ 31 and n < 2 ^ 31) then
    error(('%s: %s must be %s, got %s'):format(who, name, positive and 'a positive integer' or 'an integer',
      type(v) == 'cdata' and tostring(v) or require('moreau.options').show(v)), 3)
  end
  return n
end

-- The dims of `shape` (a Lua array of 1..most positive integers below 2^62)
-- in an int64_t[most]; raises "WHO: ..." at the caller's caller otherwise.
local function dims(who, shape, most, example)
  if type(shape) ~= 'table' or #shape < 1 or #shape > most then
    error(('%s: the shape is a table of 1..%d dims, e.g. %s, got %s'):format(who, most, example,
      require('moreau.options').show(shape)), 3)
  end
  local s = ffi.new('int64_t[?]', most)
  for i = 1, #shape do
    local d = shape[i]
    if type(d) ~= 'number' or d ~= math.floor(d) or not (d >= 1 and d < 2 ^ 62) then
      error(('%s: dim %d of the shape must be a positive integer, got %s'):format(who, i,
        require('moreau.options').show(d)), 3)
    end
    s[i - 1] = d
  end
  return s, #shape
end

--- A builder for a network whose samples have `input_shape` (e.g., {3, 32, 32}).
-- opts: {seed = 0} for the parameter initialization.
function nn.builder(input_shape, opts)
  local s, nd = dims('nn.builder', input_shape, 3, '{3, 32, 32}')
  local ptr = ffi.new('mr_net*[1]')
  check(C.mr_net_new(ptr))
  local net = core.attach(setmetatable({}, Net), ffi.gc(ptr[0], C.mr_net_free))
  local input = check(C.mr_net_input(handle(net), nd, s))
  local seed = (opts and opts.seed) or 0
  -- the parameters' U(-b, b) stream (mr_tensor_uniform_'s uint64_t seed)
  require('moreau.options').check('nn.builder', 'seed', seed, 'seed', 2)
  return setmetatable({ net = net, input = input, seed = seed }, Builder)
end

local attr_fields = {
  kernel = 2, stride = 2, padding = 2, dilation = 2, out_size = 2,
  groups = 1, ceil_mode = 1, count_include_pad = 1,
  beta = 1, threshold = 1, eps = 1, momentum = 1, p = 1,
  -- the ops of imported models (docs/architecture.md, "Ops for imported models")
  min = 1, max = 1, alpha = 1, approximate = 1, axis = 1, start = 1, ['end'] = 1, step = 1,
  index = 1, perm = 3, shape_ndim = 1, shape = 3, pads = 6, pad_mode = 1, axes = 1, keepdims = 1,
}

-- The float fields of mr_op_attrs; the int64_t ones; every other is int32_t.
local float_attrs = { beta = true, threshold = true, eps = true, momentum = true, p = true, min = true,
  max = true, alpha = true }
local int64_attrs = { start = true, ['end'] = true, step = true, index = true, shape = true }

-- v as a value of attribute k, checked before the FFI converts it (which
-- would raise a raw error on a string, store NaN or ±inf in an integer field
-- as INT_MIN, and drop a fraction): a float field takes any number (the op's
-- infer checks its range); an integer field an integer in the field's range.
-- A number cdata counts as its value; an int64_t (or uint64_t below 2^63)
-- goes into an int64_t field exactly. Raises at `level` (1: the caller).
local function attr_value(k, v, level)
  local shown = v
  if type(v) == 'cdata' then
    if int64_attrs[k] and (ffi.istype('int64_t', v) or (ffi.istype('uint64_t', v) and v < 2 ^ 63)) then
      return v
    end
    if tonumber(v) ~= nil and not ffi.istype('bool', v) and not ffi.istype('complex', v) then
      v = tonumber(v)
    end
  end
  local show = require('moreau.options').show
  if type(v) ~= 'number' then
    error(("nn: op attribute '%s' must be a number, got %s"):format(k, show(shown)), level + 1)
  end
  if float_attrs[k] then return v end
  local lim = int64_attrs[k] and 2 ^ 63 or 2 ^ 31
  if v ~= math.floor(v) or not (v >= -lim and v < lim) then
    error(("nn: op attribute '%s' must be an integer%s, got %s"):format(k,
      int64_attrs[k] and '' or ' in the int32 range', show(v)), level + 1)
  end
  return v
end

local function to_attrs(t)
  local a = ffi.new('mr_op_attrs')
  for k, v in pairs(t or {}) do
    local n = attr_fields[k]
    if not n then error("nn: unknown op attribute '" .. tostring(k) .. "'", 4) end
    if n >= 2 then
      if n == 2 and type(v) ~= 'table' then v = { v, v } end
      if type(v) ~= 'table' or #v > n then
        error(("nn: op attribute '%s' is a list of at most %d numbers"):format(k, n), 4)
      end
      for i = 1, #v do a[k][i - 1] = attr_value(k, v[i], 4) end
      if k == 'shape' then a.shape_ndim = #v end
    elseif type(v) == 'boolean' then
      a[k] = v and 1 or 0
    else
      a[k] = attr_value(k, v, 4)
    end
  end
  return a
end

--- Adds a parameter. ARGS: name (state_dict name), shape, kind ('weight' or
-- 'buffer'), init: 'zeros' | 'ones' | {uniform = bound} | function(tensor).
-- RETURN: its id.
function Builder:param(name, shape, kind, init)
  local s, nd = dims('builder:param', shape, 4, '{16, 3, 3, 3}')
  local id = check(C.mr_net_param(handle(self.net), name, nd,
    s, kind == 'buffer' and C.MR_PARAM_BUFFER or C.MR_PARAM_WEIGHT))
  local t = T.borrow(C.mr_net_param_get(handle(self.net), id), self.net)
  if init == 'ones' then
    t:fill(1)
  elseif type(init) == 'table' and init.uniform then
    -- U(−b, b) as (2u − 1)·b in double, u from stream (seed, param id)
    local b = init.uniform
    check(C.mr_tensor_uniform_(handle(t), self.seed, id, 0, 0, 1))
    t:apply_(function(u) return (2 * u - 1) * b end)
  elseif type(init) == 'function' then
    init(t)
  end
  return id
end

--- Adds a node. ARGS: op name, inputs (list of node ids), params (list of
-- ids), attrs (table of mr_op_attrs fields), label. RETURN: the node id.
function Builder:op(op, inputs, params, attrs, label)
  local ni, np = #inputs, #(params or {})
  local iv = ffi.new('int[?]', math.max(ni, 1), inputs)
  local pv = ffi.new('int[?]', math.max(np, 1), params or {})
  return check(C.mr_net_node(handle(self.net), op, iv, ni, pv, np, to_attrs(attrs), label or op), 2)
end

--- Per-sample output shape of a node.
function Builder:shape(node) return node_shape(self.net, node) end

--- Finishes: the output is `node` (default: the last one). RETURN: the Net.
function Builder:build(node)
  if node then check(C.mr_net_set_output(handle(self.net), node)) end
  self.net.output = node or (C.mr_net_node_count(handle(self.net)) - 1)
  return self.net
end

-- prefix.name, or name alone when prefix is nil or ''
local function join(prefix, name)
  if prefix == nil or prefix == '' then return name end
  return prefix .. '.' .. name
end
--- A parameter's dotted name as PyTorch's state_dict writes it: prefix .. '.'
-- .. name, or name alone when prefix is nil or '' (join('layer1.0', 'conv1')
-- is 'layer1.0.conv1').
nn.join = join

--- conv2d. ARGS: name (prefix of .weight/.bias), x, cin, cout, kernel (n or
-- {kh, kw}), opts {stride, padding, dilation, groups, bias = true}.
function Builder:conv2d(name, x, cin, cout, k, opts)
  opts = opts or {}
  local who = 'builder:conv2d'
  cin, cout = int_arg(who, 'cin', cin, true), int_arg(who, 'cout', cout, true)
  local kh = int_arg(who, 'kernel', type(k) == 'table' and k[1] or k, true)
  local kw = int_arg(who, 'kernel', type(k) == 'table' and k[2] or k, true)
  local groups = int_arg(who, "option 'groups'", opts.groups or 1, true)
  local fan_in = (cin / groups) * kh * kw
  local bound = 1 / math.sqrt(fan_in)
  local params = { self:param(join(name, 'weight'), { cout, cin / groups, kh, kw }, 'weight', { uniform = bound }) }
  if opts.bias ~= false then
    params[2] = self:param(join(name, 'bias'), { cout }, 'weight', { uniform = bound })
  end
  return self:op('conv2d', { x }, params, {
    kernel = { kh, kw }, stride = opts.stride or 1, padding = opts.padding or 0,
    dilation = opts.dilation or 1, groups = groups,
  }, name)
end

--- linear. ARGS: name, x (1-dim samples), fin, fout, opts {bias = true}.
function Builder:linear(name, x, fin, fout, opts)
  fin, fout = int_arg('builder:linear', 'in', fin, true), int_arg('builder:linear', 'out', fout, true)
  local bound = 1 / math.sqrt(fin)
  local params = { self:param(join(name, 'weight'), { fout, fin }, 'weight', { uniform = bound }) }
  if not opts or opts.bias ~= false then
    params[2] = self:param(join(name, 'bias'), { fout }, 'weight', { uniform = bound })
  end
  return self:op('linear', { x }, params, nil, name)
end

--- batchnorm2d. ARGS: name, x, channels, opts {eps = 1e-5, momentum = 0.1}.
function Builder:batchnorm2d(name, x, c, opts)
  opts = opts or {}
  local params = {
    self:param(join(name, 'weight'), { c }, 'weight', 'ones'),
    self:param(join(name, 'bias'), { c }, 'weight', 'zeros'),
    self:param(join(name, 'running_mean'), { c }, 'buffer', 'zeros'),
    self:param(join(name, 'running_var'), { c }, 'buffer', 'ones'),
  }
  return self:op('batchnorm2d', { x }, params, { eps = opts.eps or 1e-5, momentum = opts.momentum or 0.1 }, name)
end

for _, op in ipairs { 'relu', 'silu', 'sigmoid', 'tanh', 'flatten', 'softmax', 'log_softmax' } do
  Builder[op] = function(self, x, label) return self:op(op, { x }, nil, nil, label) end
end

--- softplus. opts {beta = 1, threshold = 20} as PyTorch.
function Builder:softplus(x, opts, label)
  opts = opts or {}
  return self:op('softplus', { x }, nil, { beta = opts.beta or 1, threshold = opts.threshold or 20 }, label)
end

--- maxpool2d. ARGS: x, kernel, opts {stride = kernel, padding = 0, ceil_mode = false}.
function Builder:maxpool2d(x, k, opts, label)
  opts = opts or {}
  return self:op('maxpool2d', { x }, nil, { kernel = k, stride = opts.stride or k,
    padding = opts.padding or 0, ceil_mode = opts.ceil_mode or false }, label)
end

--- avgpool2d, PyTorch defaults (count_include_pad = true).
function Builder:avgpool2d(x, k, opts, label)
  opts = opts or {}
  return self:op('avgpool2d', { x }, nil, { kernel = k, stride = opts.stride or k,
    padding = opts.padding or 0, ceil_mode = opts.ceil_mode or false,
    count_include_pad = opts.count_include_pad ~= false }, label)
end

--- adaptive average pooling to size (n or {oh, ow}).
function Builder:adaptive_avgpool2d(x, size, label)
  return self:op('adaptive_avgpool2d', { x }, nil, { out_size = size }, label)
end

--- Elementwise sum of nodes a and b of the same per-sample shape (a
-- residual connection); other shapes raise "add: inputs must have the same
-- shape" when the node is added. ARGS: a, b (node ids), label (optional name). RETURN: the node id.
function Builder:add(a, b, label) return self:op('add', { a, b }, nil, nil, label) end
--- Broadcast multiply: a (N,C,H,W) times b (N,C,1,1) or same shape.
function Builder:mul(a, b, label) return self:op('mul', { a, b }, nil, nil, label) end
--- Dropout with probability p (0.5 by default), as torch.nn.Dropout: in
-- training mode y = m ⊙ x / (1 − p) with m_i = [u_i >= p], u_i ~ U(0, 1);
-- the identity in inference mode and in every explanation pass.
-- ARGS: x (node id), p, label (optional name). RETURN: the node id.
function Builder:dropout(x, p, label) return self:op('dropout', { x }, nil, { p = p or 0.5 }, label) end

-- ------------------------------------------- ops of imported models
-- (docs/architecture.md, "Ops for imported models": the ONNX op each maps).
-- Axes count the per-sample dims from 0 (the batch dim N is never named); a
-- negative axis counts from the end.

--- clip: min(max(x, lo), hi), torch.clamp / ONNX Clip; the derivative is 0
-- on the bounds (PyTorch's hardtanh). ARGS: x (node id), lo, hi (numbers,
-- lo < hi; -math.huge / math.huge for no bound), label (optional). Errors:
-- "clip: min must be below max ..." when lo >= hi. RETURN: the node id.
function Builder:clip(x, lo, hi, label)
  return self:op('clip', { x }, nil, { min = lo, max = hi }, label)
end
--- ReLU6 (MobileNetV2): min(max(x, 0), 6), clip to [0, 6]. ARGS: x, label. RETURN: the node id.
function Builder:relu6(x, label) return self:clip(x, 0, 6, label) end
--- hardsigmoid: max(0, min(1, alpha x + beta)). ARGS: x, opts {alpha = 1/6,
-- beta = 1/2} (PyTorch's; ONNX HardSigmoid's default is 0.2, 0.5), label.
-- RETURN: the node id.
function Builder:hardsigmoid(x, opts, label)
  opts = opts or {}
  return self:op('hardsigmoid', { x }, nil, { alpha = opts.alpha or 1 / 6, beta = opts.beta or 0.5 }, label)
end
--- hardswish: x·relu6(x + 3)/6, as torch.nn.Hardswish (from "Searching for
-- MobileNetV3", Howard and others, 2019). ARGS: x, label. RETURN: the node id.
function Builder:hardswish(x, label) return self:op('hardswish', { x }, nil, nil, label) end
--- GELU (Hendrycks and Gimpel 2016): x·Φ(x), or with opts.approximate =
-- 'tanh' x (1 + tanh(√(2/π)(x + 0.044715 x³)))/2, as torch.nn.GELU. ARGS: x,
-- opts {approximate = 'none'}, label. RETURN: the node id.
function Builder:gelu(x, opts, label)
  local ap = opts and opts.approximate or 'none'
  if ap ~= 'none' and ap ~= 'tanh' then
    error("builder:gelu: approximate is 'none' or 'tanh', got " .. tostring(ap), 2)
  end
  return self:op('gelu', { x }, nil, { approximate = ap == 'tanh' and 1 or 0 }, label)
end
--- erf(x) = 2/√π ∫_0^x e^{−t²} dt, elementwise (ONNX Erf). ARGS: x, label. RETURN: the node id.
function Builder:erf(x, label) return self:op('erf', { x }, nil, nil, label) end

--- reshape: the same entries in row-major order with per-sample shape
-- `shape` (1..3 dims; one may be -1, inferred), a copy. ARGS: x, shape,
-- label. Errors name both shapes when the sizes differ. RETURN: the node id.
function Builder:reshape(x, shape, label)
  return self:op('reshape', { x }, nil, { shape = shape }, label)
end
--- squeeze: drops per-sample axis `axis`, which must be 1 (torch.squeeze(x,
-- axis + 1)), as a reshape. ARGS: x, axis, label. RETURN: the node id.
function Builder:squeeze(x, axis, label)
  axis = int_arg('builder:squeeze', 'axis', axis)
  local s = self:shape(x)
  local a = axis < 0 and axis + #s + 1 or axis + 1
  if s[a] ~= 1 or #s < 2 then
    error(('builder:squeeze: axis %d of %s is not a dim of size 1 that can go'):format(axis,
      table.concat(s, 'x')), 2)
  end
  table.remove(s, a)
  return self:reshape(x, s, label)
end
--- unsqueeze: inserts a per-sample axis of size 1 at `axis`
-- (torch.unsqueeze(x, axis + 1)), as a reshape. ARGS: x, axis (0..ndim;
-- negative from the end), label. RETURN: the node id.
function Builder:unsqueeze(x, axis, label)
  axis = int_arg('builder:unsqueeze', 'axis', axis)
  local s = self:shape(x)
  local a = axis < 0 and axis + #s + 2 or axis + 1
  if a < 1 or a > #s + 1 or #s >= 3 then
    error(('builder:unsqueeze: cannot insert axis %d into %s (at most 3 per-sample dims)'):format(axis,
      table.concat(s, 'x')), 2)
  end
  table.insert(s, a, 1)
  return self:reshape(x, s, label)
end
--- flatten of per-sample axes start..last into one (torch.flatten(x,
-- start + 1)), as a reshape; start 0 is builder:flatten. ARGS: x, start, label.
-- RETURN: the node id.
function Builder:flatten_from(x, start, label)
  start = int_arg('builder:flatten_from', 'start', start)
  local s, out = self:shape(x), {}
  if start < 0 then start = start + #s end
  if start < 0 or start >= #s then
    error(('builder:flatten_from: start %d is not a per-sample axis of %s'):format(start, table.concat(s, 'x')), 2)
  end
  for i = 1, start do out[i] = s[i] end
  out[start + 1] = -1
  return self:reshape(x, out, label)
end
--- transpose: output dim i is input dim perm[i] of the per-sample dims
-- (torch.permute without the batch dim; ONNX Transpose), a copy. ARGS: x,
-- perm (a list of 0-based per-sample dims), label. RETURN: the node id.
function Builder:transpose(x, perm, label)
  return self:op('transpose', { x }, nil, { perm = perm }, label)
end
--- concat along a per-sample axis (torch.cat): a list of 2 or more nodes is
-- a left chain of binary concat nodes. ARGS: list (node ids), axis, label.
-- Errors: "concat: inputs must agree but along axis ...". RETURN: the node id.
function Builder:concat(list, axis, label)
  if type(list) ~= 'table' or #list < 2 then error('builder:concat: give a list of 2 or more nodes', 2) end
  local h = list[1]
  for i = 2, #list do h = self:op('concat', { h, list[i] }, nil, { axis = axis }, label) end
  return h
end
--- slice: x[start : stop : step] along a per-sample axis (ONNX Slice; negative
-- start/stop count from the end and are clamped; stop nil means the end).
-- ARGS: x, axis, start, stop, step (1), label. RETURN: the node id.
function Builder:slice(x, axis, start, stop, step, label)
  return self:op('slice', { x }, nil, { axis = axis, start = start or 0, ['end'] = stop or 0, step = step or 1 }, label)
end
--- gather: x[index] along a per-sample axis, the axis dropped (ONNX Gather of
-- one index; the class token of a ViT is gather(x, 0, 0)). ARGS: x, axis,
-- index, label. RETURN: the node id.
function Builder:gather(x, axis, index, label)
  return self:op('gather', { x }, nil, { axis = axis, index = index }, label)
end
--- pad: pads = {begin_0, .., begin_{d-1}, end_0, .., end_{d-1}} entries around
-- the d per-sample dims (ONNX Pad's order without N); mode 'constant' (zeros)
-- or 'reflect'. ARGS: x, pads, mode, label. RETURN: the node id.
function Builder:pad(x, pads, mode, label)
  local d = #self:shape(x)
  if type(pads) ~= 'table' or #pads ~= 2 * d then
    error(('builder:pad: pads lists %d numbers (begins, then ends) for %d per-sample dims'):format(2 * d, d), 2)
  end
  if mode ~= nil and mode ~= 'constant' and mode ~= 'reflect' then
    error("builder:pad: mode is 'constant' or 'reflect', got " .. tostring(mode), 2)
  end
  local p = { 0, 0, 0, 0, 0, 0 }
  for i = 1, d do p[i], p[3 + i] = pads[i], pads[d + i] end
  return self:op('pad', { x }, nil, { pads = p, pad_mode = mode == 'reflect' and 1 or 0 }, label)
end
--- constant: the parameter `p` (an id from builder:param, 1..3 dims) as every
-- item's value; x (any node) only gives the batch size. ARGS: x, p, label.
-- RETURN: the node id.
function Builder:constant(x, p, label) return self:op('constant', { x }, { p }, nil, label) end

--- layernorm over the last per-sample dim (torch.nn.LayerNorm(d)).
-- Parameters name.weight (ones) and name.bias (zeros) unless opts.affine is
-- false. ARGS: name, x, d (the last dim), opts {eps = 1e-5, affine = true}.
-- RETURN: the node id.
function Builder:layernorm(name, x, d, opts)
  opts = opts or {}
  local params = {}
  if opts.affine ~= false then
    params = { self:param(join(name, 'weight'), { d }, 'weight', 'ones'),
      self:param(join(name, 'bias'), { d }, 'weight', 'zeros') }
  end
  return self:op('layernorm', { x }, params, { eps = opts.eps or 1e-5 }, name)
end
--- reduce_mean: the mean over per-sample axes (torch.mean(x, dims,
-- keepdim)). ARGS: x, axes (a list of per-sample axes; nil: all), keepdims
-- (false), label. RETURN: the node id.
function Builder:reduce_mean(x, axes, keepdims, label)
  local nd, mask = #self:shape(x), 0
  for _, a in ipairs(axes or {}) do
    a = int_arg('builder:reduce_mean', 'axis', a)
    if a < 0 then a = a + nd end
    if a < 0 or a >= nd then error(('builder:reduce_mean: axis %d is not a per-sample axis'):format(a), 2) end
    mask = bit.bor(mask, bit.lshift(1, a))
  end
  return self:op('reduce_mean', { x }, nil, { axes = mask, keepdims = keepdims and 1 or 0 }, label)
end
--- matmul of two nodes: per sample (B, n, k) x (B, k, m) or (n, k) x (k, m)
-- (torch.matmul without broadcasting; attention's Q Kᵀ and P V). ARGS: a,
-- b, label. RETURN: the node id.
function Builder:matmul(a, b, label) return self:op('matmul', { a, b }, nil, nil, label) end
--- x W (+ b) row by row for x (..., k) per sample, W (k, m) as ONNX MatMul
-- stores it. Parameters name.weight (k, m), name.bias (m) unless opts.bias is
-- false, U(−1/√k, 1/√k). ARGS: name, x, k, m, opts {bias = true}. RETURN: the node id.
function Builder:matmul_param(name, x, k, m, opts)
  k, m = int_arg('builder:matmul_param', 'k', k, true), int_arg('builder:matmul_param', 'm', m, true)
  local bound = 1 / math.sqrt(k)
  local params = { self:param(join(name, 'weight'), { k, m }, 'weight', { uniform = bound }) }
  if not opts or opts.bias ~= false then
    params[2] = self:param(join(name, 'bias'), { m }, 'weight', { uniform = bound })
  end
  return self:op('matmul_param', { x }, params, nil, name)
end
--- a − b of two nodes of the same per-sample shape (ONNX Sub). ARGS: a, b,
-- label. RETURN: the node id.
function Builder:sub(a, b, label) return self:op('sub', { a, b }, nil, nil, label) end
--- a / b of two nodes of the same per-sample shape (ONNX Div; DeepLIFT
-- refuses it). ARGS: a, b, label. RETURN: the node id.
function Builder:div(a, b, label) return self:op('div', { a, b }, nil, nil, label) end
--- x + p with the parameter p (an id from builder:param) broadcast into x's
-- per-sample shape (numpy's trailing rule). ARGS: x, p, label. RETURN: the node id.
function Builder:add_param(x, p, label) return self:op('add_param', { x }, { p }, nil, label) end
--- x − p, p broadcast as for add_param. ARGS: x, p, label. RETURN: the node id.
function Builder:sub_param(x, p, label) return self:op('sub_param', { x }, { p }, nil, label) end
--- x · p, p broadcast as for add_param. ARGS: x, p, label. RETURN: the node id.
function Builder:mul_param(x, p, label) return self:op('mul_param', { x }, { p }, nil, label) end
--- x / p (divided, as PyTorch), p broadcast as for add_param. ARGS: x, p, label. RETURN: the node id.
function Builder:div_param(x, p, label) return self:op('div_param', { x }, { p }, nil, label) end

-- ------------------------------------------------------------- modules

--- A module from a function(b, x, prefix) -> node.
function nn.module(build)
  return { build = function(_, b, x, prefix) return build(b, x, prefix) end }
end

local function leaf(fn) return setmetatable({}, { __index = { build = fn } }) end

--- torch.nn.Conv2d: cin -> cout channels, kernel k (n or {kh, kw}); opts {stride = 1,
-- padding = 0, dilation = 1, groups = 1, bias = true}. Parameters weight (cout, cin/groups, kh, kw), bias (cout).
function nn.Conv2d(cin, cout, k, opts)
  return leaf(function(_, b, x, prefix) return b:conv2d(prefix, x, cin, cout, k, opts) end)
end
--- torch.nn.Linear: fin -> fout features on 1-dim samples; opts {bias = true}. Parameters
-- weight (fout, fin), bias (fout).
function nn.Linear(fin, fout, opts)
  return leaf(function(_, b, x, prefix) return b:linear(prefix, x, fin, fout, opts) end)
end
--- torch.nn.BatchNorm2d over c channels; opts {eps = 1e-5, momentum = 0.1}. Parameters weight,
-- bias; buffers running_mean, running_var (num_batches_tracked is not kept).
function nn.BatchNorm2d(c, opts)
  return leaf(function(_, b, x, prefix) return b:batchnorm2d(prefix, x, c, opts) end)
end
--- torch.nn.Softplus: log(1 + exp(beta x)) / beta, linear above threshold; opts {beta = 1,
-- threshold = 20}.
function nn.Softplus(opts)
  return leaf(function(_, b, x, prefix) return b:softplus(x, opts, prefix) end)
end
--- torch.nn.MaxPool2d with kernel k; opts {stride = k, padding = 0, ceil_mode = false}.
function nn.MaxPool2d(k, opts)
  return leaf(function(_, b, x, prefix) return b:maxpool2d(x, k, opts, prefix) end)
end
--- torch.nn.AvgPool2d with kernel k; opts {stride = k, padding = 0, ceil_mode = false,
-- count_include_pad = true}.
function nn.AvgPool2d(k, opts)
  return leaf(function(_, b, x, prefix) return b:avgpool2d(x, k, opts, prefix) end)
end
--- torch.nn.AdaptiveAvgPool2d to size (n or {oh, ow}).
function nn.AdaptiveAvgPool2d(size)
  return leaf(function(_, b, x, prefix) return b:adaptive_avgpool2d(x, size, prefix) end)
end
--- torch.nn.Dropout with probability p (0.5 by default); the identity in inference mode.
function nn.Dropout(p)
  return leaf(function(_, b, x, prefix) return b:dropout(x, p, prefix) end)
end
--- torch.nn.Identity.
function nn.Identity() return leaf(function(_, _, x) return x end) end
--- torch.nn.SiLU: x·σ(x), σ(x) = 1/(1 + e^−x) (Elfwing et al., 2018). No arguments.
-- @function SiLU

--- torch.nn.Sigmoid: σ(x) = 1/(1 + e^−x). No arguments.
-- @function Sigmoid

--- torch.nn.Tanh: tanh(x). No arguments.
-- @function Tanh

--- torch.nn.Flatten: (N, C, H, W) to (N, C·H·W), all but the batch dim. No arguments.
-- @function Flatten

--- torch.nn.Softmax(dim = 1), over the first per-sample dim: e^x_i / Σ_j e^x_j. No arguments.
-- @function Softmax

--- torch.nn.LogSoftmax(dim = 1), over the first per-sample dim: x_i − log Σ_j e^x_j. No arguments.
-- @function LogSoftmax

--- torch.nn.ReLU, SiLU, Sigmoid, Tanh, Flatten (all but the batch dim), Softmax and LogSoftmax
-- (over the first per-sample dim, dim = 1), without arguments: nn.ReLU(), nn.SiLU(), ...
-- @function ReLU
for name, op in pairs { ReLU = 'relu', SiLU = 'silu', Sigmoid = 'sigmoid', Tanh = 'tanh',
  Flatten = 'flatten', Softmax = 'softmax', LogSoftmax = 'log_softmax' } do
  nn[name] = function() return leaf(function(_, b, x, prefix) return b[op](b, x, prefix) end) end
end

--- torch.nn.ReLU6: min(max(x, 0), 6). No arguments.
function nn.ReLU6() return leaf(function(_, b, x, prefix) return b:relu6(x, prefix) end) end
--- torch.nn.Hardsigmoid: max(0, min(1, x/6 + 1/2)). No arguments.
function nn.Hardsigmoid() return leaf(function(_, b, x, prefix) return b:hardsigmoid(x, nil, prefix) end) end
--- torch.nn.Hardswish: x·relu6(x + 3)/6. No arguments.
function nn.Hardswish() return leaf(function(_, b, x, prefix) return b:hardswish(x, prefix) end) end
--- torch.nn.GELU: x·Φ(x); opts {approximate = 'none' | 'tanh'}.
function nn.GELU(opts) return leaf(function(_, b, x, prefix) return b:gelu(x, opts, prefix) end) end
--- torch.nn.LayerNorm over the last dim d; opts {eps = 1e-5, affine = true}.
-- Parameters weight, bias.
function nn.LayerNorm(d, opts)
  return leaf(function(_, b, x, prefix) return b:layernorm(prefix, x, d, opts) end)
end

--- A chain of modules. Children are named '0', '1', ... as in PyTorch, or
-- explicitly: nn.Sequential{ {'conv1', m1}, {'bn1', m2} }.
function nn.Sequential(children)
  return leaf(function(_, b, x, prefix)
    for i, child in ipairs(children) do
      local name, m = tostring(i - 1), child
      if type(child) == 'table' and type(child[1]) == 'string' then name, m = child[1], child[2] end
      x = m:build(b, x, join(prefix, name))
    end
    return x
  end)
end
--- nn.Sequential under the name that says its children are named:
-- nn.Named{ {'conv1', m1}, {'bn1', m2} }.
nn.Named = nn.Sequential

--- Builds a module into a Net. ARGS: module, input shape, opts {seed = 0}.
function nn.build(module, input_shape, opts)
  local b = nn.builder(input_shape, opts)
  local out = module:build(b, b.input, '')
  return b:build(out)
end

return nn
