--- moreau.tensor — float32 tensors, batch first (N, C, H, W), owned by the engine.
--
-- A tensor is a Lua object around an `mr_tensor*`. Owned tensors free their
-- memory when collected (ffi.gc is attached at birth; `x:free()` frees now).
-- Borrowed tensors (a network's parameters) keep their owner alive.
--
-- Indices are 1-based, as in Lua and torch7; class ids are 0-based, as in the
-- data sets.
--
--   local T = require 'moreau.tensor'
--   local x = T.zeros{2, 3, 32, 32}
--   local p = x:data()                 -- float*, valid while x lives
--   print(x:numel(), table.concat(x:shape(), 'x'))
local ffi = require 'ffi'
local core = require 'moreau.core'
local C, check = core.C, core.check

local T = {}
local Tensor = {}
Tensor.__index = Tensor
T.Tensor = Tensor

local shape_buf = ffi.new('int64_t[4]')
local out_buf = ffi.new('mr_tensor*[1]')

local function fill_shape(shape, level)
  if type(shape) ~= 'table' then error('tensor: shape must be a table such as {2, 3}', level + 1) end
  local nd = #shape
  if nd < 1 or nd > 4 then error('tensor: shape must have 1..4 dims, got ' .. nd, level + 1) end
  for i = 1, nd do
    local d = shape[i]
    if type(d) ~= 'number' or d < 1 or d ~= math.floor(d) then
      error(('tensor: dim %d of the shape must be a positive integer, got %s'):format(i, tostring(d)), level + 1)
    end
    shape_buf[i - 1] = d
  end
  return nd
end

--- Wraps an owned `mr_tensor*` (from a C call that returns a new tensor): the
-- wrapper frees it when collected.
function T.wrap(ptr)
  return setmetatable({ ptr = ffi.gc(ptr, C.mr_tensor_free) }, Tensor)
end

--- Wraps a borrowed `mr_tensor*` owned by `owner` (kept alive by the wrapper).
function T.borrow(ptr, owner)
  return setmetatable({ ptr = ptr, owner = owner }, Tensor)
end

--- True if v is a moreau tensor.
function T.is(v) return getmetatable(v) == Tensor end

--- A new zero-filled tensor. ARGS: shape (table of 1..4 positive integers).
function T.zeros(shape)
  local nd = fill_shape(shape, 2)
  check(C.mr_tensor_new(out_buf, nd, shape_buf))
  return T.wrap(out_buf[0])
end

--- A new tensor filled with v.
function T.full(shape, v) return T.zeros(shape):fill(v) end
function T.ones(shape) return T.full(shape, 1) end

--- A new tensor of the given shape holding the numbers of a flat Lua array
-- (row-major), or of a nested table when shape is omitted is not supported:
-- give the shape. ARGS: values (flat array), shape (table).
function T.from(values, shape)
  shape = shape or { #values }
  local x = T.zeros(shape)
  if #values ~= x:numel() then
    error(('tensor.from: %d values for shape %s (%d elements)'):format(#values,
      table.concat(shape, 'x'), x:numel()), 2)
  end
  local p = x.ptr.data
  for i = 1, #values do p[i - 1] = values[i] end
  return x
end

--- Standard normal (mean, std) noise from the counter-based RNG: the same
-- (seed, stream) gives the same numbers everywhere.
-- ARGS: shape; opts {seed = 0, stream = 0, offset = 0, mean = 0, std = 1}
function T.randn(shape, opts)
  opts = opts or {}
  local x = T.zeros(shape)
  check(C.mr_rng_normal(x.ptr.data, x.ptr.numel, opts.seed or 0, opts.stream or 0,
    opts.offset or 0, opts.mean or 0, opts.std or 1))
  return x
end

--- Uniform numbers in (lo, hi) (default (0, 1)) from the counter-based RNG.
-- ARGS: shape; opts {seed = 0, stream = 0, offset = 0, lo = 0, hi = 1}
function T.rand(shape, opts)
  opts = opts or {}
  local x = T.zeros(shape)
  check(C.mr_rng_uniform(x.ptr.data, x.ptr.numel, opts.seed or 0, opts.stream or 0, opts.offset or 0))
  local lo, hi = opts.lo or 0, opts.hi or 1
  if lo ~= 0 or hi ~= 1 then
    local p, w = x.ptr.data, hi - lo
    for i = 0, tonumber(x.ptr.numel) - 1 do p[i] = lo + w * p[i] end
  end
  return x
end

--- Concatenates tensors along the batch dimension (all other dims equal).
function T.cat(list)
  if #list == 0 then error('tensor.cat: empty list', 2) end
  local s = list[1]:shape()
  local n = 0
  for i, t in ipairs(list) do
    local si = t:shape()
    if #si ~= #s then error('tensor.cat: tensor ' .. i .. ' has a different number of dims', 2) end
    for d = 2, #s do
      if si[d] ~= s[d] then
        error(('tensor.cat: tensor %d has shape %s, expected Nx%s'):format(i, table.concat(si, 'x'),
          table.concat(s, 'x', 2)), 2)
      end
    end
    n = n + si[1]
  end
  s[1] = n
  local out = T.zeros(s)
  local off = 0
  for _, t in ipairs(list) do
    local k = tonumber(t.ptr.numel)
    ffi.copy(out.ptr.data + off, t.ptr.data, k * 4)
    off = off + k
  end
  return out
end

-- ------------------------------------------------------------ accessors

function Tensor:data() return self.ptr.data end
function Tensor:numel() return tonumber(self.ptr.numel) end
function Tensor:dim() return tonumber(self.ptr.ndim) end
function Tensor:device() return self.ptr.device == C.MR_DEVICE_CPU and 'cpu' or 'cuda' end

--- The shape as a new Lua table.
function Tensor:shape()
  local s = {}
  for i = 0, self.ptr.ndim - 1 do s[i + 1] = tonumber(self.ptr.shape[i]) end
  return s
end

--- Size of dim i (1-based).
function Tensor:size(i) return tonumber(self.ptr.shape[i - 1]) end

local function offset(self, idx, level)
  local nd = self.ptr.ndim
  if #idx ~= nd then error(('tensor: %d indices for a %d-dim tensor'):format(#idx, nd), level + 1) end
  local off = 0
  for d = 0, nd - 1 do
    local i, n = idx[d + 1], tonumber(self.ptr.shape[d])
    if type(i) ~= 'number' or i < 1 or i > n or i ~= math.floor(i) then
      error(('tensor: index %s out of range 1..%d in dim %d'):format(tostring(i), n, d + 1), level + 1)
    end
    off = off * n + (i - 1)
  end
  return off
end

--- Element at 1-based indices: x:get(n, c, h, w).
function Tensor:get(...) return tonumber(self.ptr.data[offset(self, { ... }, 2)]) end
--- Sets the element at 1-based indices: x:set(v, n, c, h, w). Returns x.
function Tensor:set(v, ...)
  self.ptr.data[offset(self, { ... }, 2)] = v
  return self
end

--- All elements as a flat Lua array (row-major).
function Tensor:totable()
  local t, p = {}, self.ptr.data
  for i = 0, self:numel() - 1 do t[i + 1] = tonumber(p[i]) end
  return t
end

-- ---------------------------------------------------------- new tensors

function Tensor:clone()
  check(C.mr_tensor_clone(out_buf, self.ptr))
  return T.wrap(out_buf[0])
end

--- A copy with another shape (same number of elements).
function Tensor:reshape(shape)
  local y = self:clone()
  local nd = fill_shape(shape, 2)
  check(C.mr_tensor_reshape(y.ptr, nd, shape_buf))
  return y
end

--- Items i..j (1-based, inclusive) of the batch dim, as a new tensor.
function Tensor:narrow(i, j)
  local s = self:shape()
  j = j or i
  if i < 1 or j > s[1] or i > j then
    error(('tensor:narrow: items %d..%d outside 1..%d'):format(i, j, s[1]), 2)
  end
  local per = self:numel() / s[1]
  s[1] = j - i + 1
  local y = T.zeros(s)
  ffi.copy(y.ptr.data, self.ptr.data + (i - 1) * per, s[1] * per * 4)
  return y
end

--- Item n of the batch as a (1, ...) tensor.
function Tensor:select(n) return self:narrow(n, n) end

--- Repeats each batch item k times (item-major: 1,1,..,2,2,..).
function Tensor:repeat_items(k)
  local s = self:shape()
  local per = self:numel() / s[1]
  local n = s[1]
  s[1] = n * k
  local y = T.zeros(s)
  for i = 0, n - 1 do
    for r = 0, k - 1 do
      ffi.copy(y.ptr.data + (i * k + r) * per, self.ptr.data + i * per, per * 4)
    end
  end
  return y
end

-- ------------------------------------------------------------ in place

function Tensor:fill(v)
  local p = self.ptr.data
  for i = 0, self:numel() - 1 do p[i] = v end
  return self
end

function Tensor:copy(src)
  check(C.mr_tensor_copy(self.ptr, src.ptr))
  return self
end

--- Elementwise arithmetic (add_, mul_ and the operators over them) needs the
-- same shape (an equal element count is not enough); dot and max_abs_diff run
-- over the elements in storage order and need only the same count.
local function same_size(a, b, what, level, strict)
  if not T.is(b) then error(what .. ': expected a tensor, got ' .. type(b), level + 1) end
  local ok = a:numel() == b:numel()
  if ok and strict then
    local sa, sb = a:shape(), b:shape()
    ok = #sa == #sb
    for i = 1, #sa do ok = ok and sa[i] == sb[i] end
  end
  if not ok then
    error(('%s: shapes %s and %s differ'):format(what, table.concat(a:shape(), 'x'),
      table.concat(b:shape(), 'x')), level + 1)
  end
end

--- self += alpha * y (alpha defaults to 1). Returns self.
function Tensor:add_(y, alpha)
  alpha = alpha or 1
  if type(y) == 'number' then
    local p = self.ptr.data
    for i = 0, self:numel() - 1 do p[i] = p[i] + y end
    return self
  end
  same_size(self, y, 'add_', 2, true)
  local p, q = self.ptr.data, y.ptr.data
  for i = 0, self:numel() - 1 do p[i] = p[i] + alpha * q[i] end
  return self
end

--- self *= s (a number, or a tensor elementwise). Returns self.
function Tensor:mul_(s)
  local p = self.ptr.data
  if type(s) == 'number' then
    for i = 0, self:numel() - 1 do p[i] = p[i] * s end
  else
    same_size(self, s, 'mul_', 2, true)
    local q = s.ptr.data
    for i = 0, self:numel() - 1 do p[i] = p[i] * q[i] end
  end
  return self
end

--- Applies f to every element in place. Returns self.
function Tensor:apply_(f)
  local p = self.ptr.data
  for i = 0, self:numel() - 1 do p[i] = f(p[i]) end
  return self
end

function Tensor:free()
  if self.owner == nil and self.ptr ~= nil then
    C.mr_tensor_free(ffi.gc(self.ptr, nil))
  end
  self.ptr = nil
end

-- ---------------------------------------------------------- arithmetic

function Tensor.__add(a, b)
  if type(a) == 'number' then a, b = b, a end
  return a:clone():add_(b)
end
function Tensor.__sub(a, b)
  if type(a) == 'number' then return (-b):add_(a) end
  if type(b) == 'number' then return a:clone():add_(-b) end
  return a:clone():add_(b, -1)
end
function Tensor.__mul(a, b)
  if type(a) == 'number' then a, b = b, a end
  return a:clone():mul_(b)
end
function Tensor.__div(a, b)
  if type(b) ~= 'number' then error('tensor: division by a tensor is not defined; use mul_ with a reciprocal', 2) end
  return a:clone():mul_(1 / b)
end
function Tensor.__unm(a) return a:clone():mul_(-1) end
function Tensor.__len(a) return a:numel() end

function Tensor:abs() return self:clone():apply_(math.abs) end

-- ----------------------------------------------------------- reductions

function Tensor:sum()
  local s, p = 0, self.ptr.data
  for i = 0, self:numel() - 1 do s = s + p[i] end
  return s
end
function Tensor:mean() return self:sum() / self:numel() end
function Tensor:min()
  local m, p = math.huge, self.ptr.data
  for i = 0, self:numel() - 1 do if p[i] < m then m = p[i] end end
  return tonumber(m)
end
function Tensor:max()
  local m, p = -math.huge, self.ptr.data
  for i = 0, self:numel() - 1 do if p[i] > m then m = p[i] end end
  return tonumber(m)
end
function Tensor:dot(y)
  same_size(self, y, 'dot', 2)
  local s, p, q = 0, self.ptr.data, y.ptr.data
  for i = 0, self:numel() - 1 do s = s + p[i] * q[i] end
  return s
end
function Tensor:norm() return math.sqrt(self:dot(self)) end
--- Largest |self - y| over all elements.
function Tensor:max_abs_diff(y)
  same_size(self, y, 'max_abs_diff', 2)
  local m, p, q = 0, self.ptr.data, y.ptr.data
  for i = 0, self:numel() - 1 do
    local d = math.abs(p[i] - q[i])
    if d > m or d ~= d then m = d end
  end
  return m
end

--- True if every element is finite.
function Tensor:isfinite()
  local p = self.ptr.data
  for i = 0, self:numel() - 1 do
    local v = p[i]
    if v ~= v or v == math.huge or v == -math.huge then return false end
  end
  return true
end

-- ------------------------------------------------------------- printing

function Tensor:__tostring()
  if self.ptr == nil then return 'tensor (freed)' end
  local n = self:numel()
  local s = ('tensor %s float32 %s  min %.4g  max %.4g  mean %.4g'):format(
    table.concat(self:shape(), 'x'), self:device(), self:min(), self:max(), self:mean())
  local corner, p = {}, self.ptr.data
  for i = 0, math.min(n, 6) - 1 do corner[#corner + 1] = ('%.4g'):format(p[i]) end
  return s .. '\n  [' .. table.concat(corner, ', ') .. (n > 6 and ', ...]' or ']')
end

-- ---------------------------------------------------------- load / save

--- Saves tensors to a safetensors file. ARGS: path, x (a tensor, saved under
-- the name 'tensor', or a table name -> tensor), metadata (table of strings).
function T.save(path, x, metadata)
  local tensors = T.is(x) and { tensor = x } or x
  require('moreau.safetensors').save(path, tensors, metadata)
end

--- Loads a safetensors file: the tensor `name`, or (no name) a table name ->
-- tensor and the metadata.
function T.load(path, name)
  local tensors, metadata = require('moreau.safetensors').load(path)
  if name == nil then return tensors, metadata end
  if tensors[name] == nil then
    error(("tensor.load: %s holds no tensor named '%s'"):format(path, tostring(name)), 2)
  end
  return tensors[name]
end

--- Moves to a device. Only 'cpu' exists in this build.
function Tensor:to(device)
  if device == 'cpu' then return self end
  error("tensor:to: device '" .. tostring(device) .. "' is not available in this build (cpu only)", 2)
end

return T
