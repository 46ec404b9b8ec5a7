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
--   print(x:numel(), table.concat(x:shape(), 'x'))
--   x:add_(y, 0.5):mul_(2)             -- in place; the arithmetic runs in C
--
-- The elementwise work and the reductions run in the engine
-- (engine/src/core/tensor_math.c, declared in moreau.h): each elementwise op
-- computes in double and rounds once to float, each reduction accumulates in
-- double in storage order. Lua never walks tensor memory itself; `x:data()`
-- is the one explicit escape hatch (see there).
local ffi = require 'ffi'
local core = require 'moreau.core'
local options = require 'moreau.options'
local C, check, handle = core.C, core.check, core.handle

local T = {}
local Tensor = {}
Tensor.__index = Tensor
T.Tensor = Tensor

local shape_buf = ffi.new('int64_t[4]')
local out_buf = ffi.new('mr_tensor*[1]')
local get_shape = ffi.new('int64_t[4]')
local one = ffi.new('float[1]')
local dbl = ffi.new('double[1]')

local function fill_shape(shape, level)
  if type(shape) ~= 'table' then error('tensor: shape must be a table such as {2, 3}', level + 1) end
  local nd = #shape
  if nd < 1 or nd > 4 then error('tensor: shape must have 1..4 dims, got ' .. nd, level + 1) end
  for i = 1, nd do
    local d = shape[i]
    -- int64 in the engine; 2^62 leaves room for the element count's products
    if type(d) ~= 'number' or not (d >= 1) or d ~= math.floor(d) then
      error(('tensor: dim %d of the shape must be a positive integer, got %s'):format(i, options.show(d)),
        level + 1)
    elseif d >= 2 ^ 62 then
      error(('tensor: dim %d of the shape must be below 2^62, got %s'):format(i, options.show(d)), level + 1)
    end
    shape_buf[i - 1] = d
  end
  return nd
end

local tensor_ptr = ffi.typeof('mr_tensor*')
local function must_be_tensor_ptr(who, ptr)
  if not (ffi.istype(tensor_ptr, ptr) and ptr ~= nil) then
    error(('tensor.%s: expected a non-NULL mr_tensor* from the engine, got %s'):format(who, options.show(ptr)), 3)
  end
end
--- Wraps an owned `mr_tensor*` (from a C call that returns a new tensor): the
-- wrapper frees it when collected.
-- The pointer is kept out of the object's fields (moreau.core's handles).
-- Errors: ptr not a non-NULL `mr_tensor*`.
function T.wrap(ptr)
  must_be_tensor_ptr('wrap', ptr)
  return core.attach(setmetatable({}, Tensor), ffi.gc(ptr, C.mr_tensor_free))
end

local borrowed = setmetatable({}, { __mode = 'k' })
--- Wraps a borrowed `mr_tensor*` owned by `owner` (kept alive by the wrapper).
-- (the owner is kept in moreau.core's private tables, not in a field a
-- recipe could clear: the owner outlives every tensor borrowed from it)
-- Errors: ptr not a non-NULL `mr_tensor*`.
function T.borrow(ptr, owner)
  must_be_tensor_ptr('borrow', ptr)
  local t = core.attach(setmetatable({}, Tensor), ptr, owner)
  borrowed[t] = true
  return t
end

local Freed = {}
--- True if v is a moreau tensor.
-- (A freed tensor is still a tensor: using it raises "the tensor was freed".)
function T.is(v)
  local mt = getmetatable(v)
  return mt == Tensor or mt == Freed
end

--- A new zero-filled tensor. ARGS: shape (table of 1..4 positive integers).
function T.zeros(shape)
  local nd = fill_shape(shape, 2)
  check(C.mr_tensor_new(out_buf, nd, shape_buf))
  return T.wrap(out_buf[0])
end

-- v when it is a number: a Lua number or a number cdata (2LL, a double read
-- from an array), which the FFI converts; else raises "WHO: NAME must be a
-- number, got V" at `level` (1: the caller), where the FFI would raise a raw
-- conversion error.
local function number_arg(who, name, v, level)
  if type(v) == 'number' or type(v) == 'cdata' and tonumber(v) ~= nil and not ffi.istype('complex', v) then
    return v
  end
  error(('%s: %s must be a number, got %s'):format(who, name, options.show(v)), level + 1)
end

--- A new tensor filled with v.
function T.full(shape, v) return T.zeros(shape):fill(number_arg('tensor.full', 'v', v, 2)) end
--- A new tensor filled with 1 (T.full(shape, 1)).
function T.ones(shape) return T.full(shape, 1) end

--- A new tensor of the given shape holding the numbers of a flat Lua array
-- (row-major), or of a nested table when shape is omitted is not supported:
-- give the shape. ARGS: values (flat array), shape (table).
function T.from(values, shape)
  shape = shape or { #values }
  local x = T.zeros(shape)
  if #values ~= core.numel(x) then
    error(('tensor.from: %d values for shape %s (%d elements)'):format(#values,
      table.concat(shape, 'x'), core.numel(x)), 2)
  end
  local n = #values
  local buf = ffi.new('float[?]', n)
  for i = 1, n do
    local v = values[i]
    if type(v) ~= 'number' then v = number_arg('tensor.from', ('values[%d]'):format(i), v, 2) end
    buf[i - 1] = v
  end
  check(C.mr_tensor_write(handle(x), 0, buf, n))
  return x
end

-- The counters of the RNG (seed, stream, offset) are uint64 in the engine; a
-- Lua number names each one exactly only as an integer in [0, 2^53) (options
-- domain 'seed'): any other value would silently select some other counter.
-- A uint64_t cdata (an item's key, as methods.perturbation_streams gives) is
-- exact and taken as it is.
local function check_counters(who, opts, level)
  if opts ~= nil and type(opts) ~= 'table' then
    error(('%s: opts must be a table, got %s'):format(who, options.show(opts)), level + 1)
  end
  opts = opts or {}
  for _, name in ipairs { 'seed', 'stream', 'offset' } do
    local v = opts[name]
    if v ~= nil and not (type(v) == 'cdata' and ffi.istype('uint64_t', v)) then
      options.check(who, name, v, 'seed', level + 1)
    end
  end
  return opts
end
--- Checks the RNG counters of opts (seed, stream, offset), as T.randn and
-- T.rand do: each an integer in [0, 2^53) or a uint64_t cdata.
-- ARGS: who (names the caller in messages), opts (table or nil), level (as
-- error's). Errors: opts not a table; a counter out of its domain.
-- RETURN: opts, or {} for nil.
T.check_counters = check_counters

--- Standard normal (mean, std) noise from the counter-based RNG: the same
-- (seed, stream) gives the same numbers everywhere.
-- ARGS: shape; opts {seed = 0, stream = 0, offset = 0, mean = 0, std = 1}
-- Errors: seed, stream or offset not an integer in [0, 2^53) nor a uint64_t.
function T.randn(shape, opts)
  opts = check_counters('tensor.randn', opts, 2)
  if opts.mean ~= nil then number_arg('tensor.randn', "option 'mean'", opts.mean, 2) end
  if opts.std ~= nil then number_arg('tensor.randn', "option 'std'", opts.std, 2) end
  local x = T.zeros(shape)
  check(C.mr_tensor_normal_(handle(x), opts.seed or 0, opts.stream or 0, opts.offset or 0, opts.mean or 0,
    opts.std or 1))
  return x
end

--- Uniform numbers in (lo, hi) (default (0, 1)) from the counter-based RNG:
-- lo + (hi − lo)·u, computed in double. ARGS: shape; opts {seed = 0,
-- stream = 0, offset = 0, lo = 0, hi = 1}, lo <= hi, both finite.
function T.rand(shape, opts)
  opts = check_counters('tensor.rand', opts, 2)
  if opts.lo ~= nil then number_arg('tensor.rand', "option 'lo'", opts.lo, 2) end
  if opts.hi ~= nil then number_arg('tensor.rand', "option 'hi'", opts.hi, 2) end
  local x = T.zeros(shape)
  check(C.mr_tensor_uniform_(handle(x), opts.seed or 0, opts.stream or 0, opts.offset or 0, opts.lo or 0,
    opts.hi or 1))
  return x
end

--- Concatenates tensors along the batch dimension (all other dims equal).
function T.cat(list)
  if type(list) ~= 'table' or T.is(list) then
    error('tensor.cat: expected a list of tensors, got ' .. options.show(list), 2)
  end
  if #list == 0 then error('tensor.cat: empty list', 2) end
  for i, t in ipairs(list) do
    if not T.is(t) then error(('tensor.cat: entry %d is %s, not a tensor'):format(i, options.show(t)), 2) end
  end
  local s = core.shape(list[1])
  local n = 0
  for i, t in ipairs(list) do
    local si = core.shape(t)
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
  local item = 0
  for _, t in ipairs(list) do
    local k = core.size(t, 1)
    check(C.mr_tensor_copy_items(handle(out), item, handle(t), 0, k))
    item = item + k
  end
  return out
end

-- ------------------------------------------------------------ accessors

--- The escape hatch: the raw float* of the numel entries, valid while x
-- lives (keep x referenced), unchecked: an index out of 0..numel−1 reads or
-- writes other memory. For code that hands tensor memory to another library;
-- the methods below do everything moreau's own arithmetic needs. Refused
-- while a sandboxed recipe runs (moreau.sandbox.confine .. release).
function Tensor:data()
  if core.sandboxed then error('tensor:data: the raw pointer is not available in a sandboxed recipe', 2) end
  return C.mr_tensor_data(handle(self))
end
--- The number of elements (the product of the shape).
-- (a freed tensor raises the engine's "tensor is NULL" message; the sizes
-- come from the engine through moreau.core, which moreau's own code calls)
function Tensor:numel() return core.numel(self) end
--- The number of dimensions (1..4).
function Tensor:dim() return core.ndim(self) end
--- Where the memory lives: every tensor of this build is in CPU memory.
function Tensor:device() return 'cpu' end

--- The shape as a new Lua table.
function Tensor:shape() return core.shape(self) end

--- Size of dim i (1-based, 1..x:dim()).
function Tensor:size(i) return core.size(self, i) end

local function offset(self, idx, level)
  local nd = check(C.mr_tensor_shape(handle(self), get_shape), level + 1)
  if #idx ~= nd then error(('tensor: %d indices for a %d-dim tensor'):format(#idx, nd), level + 1) end
  local off = 0
  for d = 0, nd - 1 do
    local i, n = idx[d + 1], tonumber(get_shape[d])
    if type(i) ~= 'number' or i < 1 or i > n or i ~= math.floor(i) then
      error(('tensor: index %s out of range 1..%d in dim %d'):format(tostring(i), n, d + 1), level + 1)
    end
    off = off * n + (i - 1)
  end
  return off
end

--- Element at 1-based indices: x:get(n, c, h, w).
function Tensor:get(...)
  check(C.mr_tensor_read(one, handle(self), offset(self, { ... }, 2), 1))
  return tonumber(one[0])
end
--- Sets the element at 1-based indices: x:set(v, n, c, h, w). Returns x.
function Tensor:set(v, ...)
  local off = offset(self, { ... }, 2)
  one[0] = number_arg('tensor:set', 'v', v, 2)
  check(C.mr_tensor_write(handle(self), off, one, 1))
  return self
end

--- All elements as a flat Lua array (row-major).
function Tensor:totable()
  local n = core.numel(self)
  local buf = ffi.new('float[?]', n)
  check(C.mr_tensor_read(buf, handle(self), 0, n))
  local t = {}
  for i = 0, n - 1 do t[i + 1] = tonumber(buf[i]) end
  return t
end

-- ---------------------------------------------------------- new tensors

--- A new tensor with the same shape and a copy of the elements.
function Tensor:clone()
  check(C.mr_tensor_clone(out_buf, handle(self)))
  return T.wrap(out_buf[0])
end

--- A copy with another shape (same number of elements).
function Tensor:reshape(shape)
  local y = self:clone()
  local nd = fill_shape(shape, 2)
  check(C.mr_tensor_reshape(handle(y), nd, shape_buf))
  return y
end

--- Items i..j (1-based, inclusive) of the batch dim, as a new tensor.
function Tensor:narrow(i, j)
  local s = core.shape(self)
  j = j or i
  if i == nil then
    error('tensor:narrow: items i..j must be integers, got nil..nil', 2)
  end
  for _, v in pairs { i = i, j = j } do
    if type(v) ~= 'number' or v ~= math.floor(v) or v ~= v then
      error(('tensor:narrow: items i..j must be integers, got %s..%s'):format(options.show(i),
        options.show(j)), 2)
    end
  end
  if i < 1 or j > s[1] or i > j then
    error(('tensor:narrow: items %s..%s outside 1..%d'):format(options.show(i), options.show(j), s[1]), 2)
  end
  s[1] = j - i + 1
  local y = T.zeros(s)
  check(C.mr_tensor_copy_items(handle(y), 0, handle(self), i - 1, s[1]))
  return y
end

--- Item n of the batch as a (1, ...) tensor.
function Tensor:select(n) return self:narrow(n, n) end

--- Repeats each batch item k times (item-major: 1,1,..,2,2,..).
function Tensor:repeat_items(k)
  options.check('tensor:repeat_items', 'repeats', k, 'int >= 1', 2)
  local s = core.shape(self)
  s[1] = s[1] * k
  local y = T.zeros(s)
  check(C.mr_tensor_repeat_interleave(handle(y), handle(self), k))
  return y
end

-- ------------------------------------------------------------ in place

--- Sets every element to the number v (rounded to float32). RETURN: self.
function Tensor:fill(v)
  check(C.mr_tensor_fill_(handle(self), number_arg('tensor:fill', 'v', v, 2)))
  return self
end

--- Copies the elements of src into self, in storage order (the shapes may
-- differ). Errors: a different number of elements. RETURN: self.
function Tensor:copy(src)
  check(C.mr_tensor_copy(handle(self), handle(src)))
  return self
end

--- Elementwise arithmetic (add_, mul_ and the operators over them) and dot
-- need the same shape (an equal element count is not enough); max_abs_diff
-- runs over the elements in storage order and needs only the same count.
local function same_size(a, b, what, level, strict)
  if not T.is(b) then error(what .. ': expected a tensor, got ' .. type(b), level + 1) end
  local ok = core.numel(a) == core.numel(b)
  if ok and strict then
    local sa, sb = core.shape(a), core.shape(b)
    ok = #sa == #sb
    for i = 1, #sa do ok = ok and sa[i] == sb[i] end
  end
  if not ok then
    error(('%s: shapes %s and %s differ'):format(what, table.concat(core.shape(a), 'x'),
      table.concat(core.shape(b), 'x')), level + 1)
  end
end

--- self += alpha * y (alpha defaults to 1). Returns self.
function Tensor:add_(y, alpha)
  alpha = number_arg('add_', 'alpha', alpha or 1, 2)
  if type(y) == 'number' then
    check(C.mr_tensor_add_scalar_(handle(self), y))
    return self
  end
  same_size(self, y, 'add_', 2, true)
  check(C.mr_tensor_add_(handle(self), handle(y), alpha))
  return self
end

--- self *= s (a number, or a tensor elementwise). Returns self.
function Tensor:mul_(s)
  if type(s) == 'number' then
    check(C.mr_tensor_mul_scalar_(handle(self), s))
  else
    same_size(self, s, 'mul_', 2, true)
    check(C.mr_tensor_mul_(handle(self), handle(s)))
  end
  return self
end

--- self = |self|, elementwise. Returns self.
function Tensor:abs_()
  check(C.mr_tensor_abs_(handle(self)))
  return self
end

--- self = sign(self): 1, −1 or 0 (0 for 0 and NaN). Returns self.
function Tensor:sign_()
  check(C.mr_tensor_sign_(handle(self)))
  return self
end

--- self = min(max(self, lo), hi), elementwise (NaN stays NaN); lo <= hi.
-- Returns self.
function Tensor:clamp_(lo, hi)
  lo = number_arg('clamp_', 'lo', lo or -math.huge, 2)
  hi = number_arg('clamp_', 'hi', hi or math.huge, 2)
  check(C.mr_tensor_clamp_(handle(self), lo, hi))
  return self
end

--- Applies the Lua function f to every element in place (through a copy of
-- the values: f sees numbers, never tensor memory). Returns self.
function Tensor:apply_(f)
  local n = core.numel(self)
  local buf = ffi.new('float[?]', n)
  check(C.mr_tensor_read(buf, handle(self), 0, n))
  for i = 0, n - 1 do buf[i] = f(buf[i]) end
  check(C.mr_tensor_write(handle(self), 0, buf, n))
  return self
end

--- Frees the memory now (a borrowed tensor only lets go of its owner). The
-- object stays a tensor whose every use raises "tensor: the tensor was freed
-- (x:free())"; tostring gives 'tensor (freed)'; a second free does nothing.
function Tensor:free()
  local holder = core.pinned_by(self)
  if holder then
    error(('tensor:free: the tensor is in use by %s, whose engine object reads it; it is freed when both are ' ..
      'collected'):format(holder), 2)
  end
  local p = core.detach(self, 'tensor: the tensor was freed (x:free()); it can no longer be used')
  if p ~= nil and not borrowed[self] then C.mr_tensor_free(ffi.gc(p, nil)) end
  setmetatable(self, Freed)
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
function Tensor.__len(a) return core.numel(a) end

--- A new tensor of the absolute values |x|.
function Tensor:abs() return self:clone():abs_() end

-- ----------------------------------------------------------- reductions

--- Sums run in double in storage order: the sum of every element.
function Tensor:sum()
  check(C.mr_tensor_sum(dbl, handle(self)))
  return dbl[0]
end
--- The mean of every element: sum() / numel(), in double.
function Tensor:mean() return self:sum() / core.numel(self) end
--- The smallest element, in double; NaN elements are skipped (+inf if all are NaN).
function Tensor:min()
  check(C.mr_tensor_min(dbl, handle(self)))
  return dbl[0]
end
--- The largest element, in double; NaN elements are skipped (-inf if all are NaN).
function Tensor:max()
  check(C.mr_tensor_max(dbl, handle(self)))
  return dbl[0]
end
--- The Euclidean (L2) norm over every element, sqrt(self:dot(self)), in double.
function Tensor:norm() return math.sqrt(self:dot(self)) end
--- Largest |self - y| over all elements (NaN if any difference is NaN).
function Tensor:max_abs_diff(y)
  same_size(self, y, 'max_abs_diff', 2)
  check(C.mr_tensor_max_abs_diff(dbl, handle(self), handle(y)))
  return dbl[0]
end

--- The dot product in double, in storage order; x and y need the same shape
-- (README: tensors are compared by shape, not by element count).
function Tensor:dot(y)
  same_size(self, y, 'dot', 2, true)
  check(C.mr_tensor_dot(dbl, handle(self), handle(y)))
  return dbl[0]
end

--- True if every element is finite.
function Tensor:isfinite()
  return tonumber(check(C.mr_tensor_find_nonfinite(handle(self)))) == core.numel(self)
end

--- The 1-based flat index of the first NaN or infinite element and its value,
-- or nil when every element is finite.
function Tensor:find_nonfinite()
  local i = tonumber(check(C.mr_tensor_find_nonfinite(handle(self))))
  if i == core.numel(self) then return nil end
  check(C.mr_tensor_read(one, handle(self), i, 1))
  return i + 1, tonumber(one[0])
end

-- ------------------------------------------------------------- printing

--- The shape, device, min/max/mean, then a 2-D slice as PyTorch's repr
-- shows one: the last two dims of the first item (a 1-D tensor is one row),
-- labelled with its index (1-based, `:` for the dims shown), rows and
-- columns beyond 8 elided to the first 3 and the last 3 with `...`.
function Tensor:__tostring()
  if handle(self) == nil then return 'tensor (freed)' end
  local shape = core.shape(self)
  local s = ('tensor %s float32 %s  min %.4g  max %.4g  mean %.4g'):format(
    table.concat(shape, 'x'), self:device(), self:min(), self:max(), self:mean())
  local nd = #shape
  local rows, cols = nd >= 2 and shape[nd - 1] or 1, shape[nd]
  -- the indices kept on each axis of the slice: all, or 1..3 and n-2..n around a gap (0)
  local function kept(n)
    if n <= 8 then
      local t = {}
      for i = 1, n do t[i] = i end
      return t
    end
    return { 1, 2, 3, 0, n - 2, n - 1, n }
  end
  local R, K = kept(rows), kept(cols)
  local row = ffi.new('float[?]', cols)
  local cells, width = {}, 1
  for a, r in ipairs(R) do
    cells[a] = {}
    if r > 0 then check(C.mr_tensor_read(row, handle(self), (r - 1) * cols, cols)) end
    for b, c in ipairs(K) do
      local text = (r == 0 or c == 0) and '...' or ('%.4g'):format(row[c - 1])
      cells[a][b] = text
      width = math.max(width, #text)
    end
  end
  local lines = {}
  for a = 1, #R do
    local parts = {}
    for b = 1, #K do parts[b] = (' '):rep(width - #cells[a][b]) .. cells[a][b] end
    if nd == 1 then
      lines[a] = '[' .. table.concat(parts, ', ') .. ']'
    elseif R[a] == 0 then
      lines[a] = ' ...,'
    else
      lines[a] = (a == 1 and '[[' or ' [') .. table.concat(parts, ', ') .. (a == #R and ']]' or '],')
    end
  end
  local index = {}
  for i = 1, nd - 2 do index[i] = '1' end
  if nd >= 2 then index[#index + 1] = ':' end
  index[#index + 1] = ':'
  local label = nd > 2 and ('  [' .. table.concat(index, ', ') .. ']\n') or ''
  return s .. '\n' .. label .. '  ' .. table.concat(lines, '\n  ')
end

-- ---------------------------------------------------------- load / save

--- Saves tensors to a safetensors file. ARGS: path, x (a tensor, saved under
-- the name 'tensor', or a table name -> tensor), metadata (table of strings).
function T.save(path, x, metadata)
  local tensors = T.is(x) and { tensor = x } or x
  local ok, err = pcall(require('moreau.safetensors').save, path, tensors, metadata)
  if not ok then error((tostring(err):gsub('^[^\n]-:%d+: ', '')), 2) end
end

--- Loads a safetensors file: the tensor `name`, or (no name) a table name ->
-- tensor and the metadata.
function T.load(path, name)
  local ok, tensors, metadata = pcall(require('moreau.safetensors').load, path)
  if not ok then error((tostring(tensors):gsub('^[^\n]-:%d+: ', '')), 2) end -- the caller's line, not ours
  if name == nil then return tensors, metadata end
  if tensors[name] == nil then
    error(("tensor.load: %s holds no tensor named '%s'"):format(path, tostring(name)), 2)
  end
  return tensors[name]
end

-- A freed tensor: the methods and operators of Tensor, but reading its
-- pointer (what every method and every engine call does) raises.
for k, v in pairs(Tensor) do
  if k:sub(1, 2) == '__' and k ~= '__index' then Freed[k] = v end
end
Freed.__tostring = function() return 'tensor (freed)' end
Freed.__index = function(_, k)
  if k == 'free' then return function() end end
  return Tensor[k]
end

return T
