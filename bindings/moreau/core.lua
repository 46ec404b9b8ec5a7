--- moreau.core — the one module that talks to C.
--
-- It reads the declarations of engine/include/moreau.h (the block between
-- MR_CDEF_BEGIN and MR_CDEF_END) into ffi.cdef, so there is no second,
-- hand-kept copy of the API, and loads libmoreau. Everything else in the Lua
-- face goes through `core.C` and `core.check`.
--
-- Where things are found, first hit wins:
--   library: $MOREAU_LIB; the installed path (moreau/_install.lua); build/ next to bindings/
--   header:  $MOREAU_HEADER; the installed path; engine/include/ next to bindings/
local ffi = require 'ffi'

local core = {}

local function module_dir()
  local src = debug.getinfo(1, 'S').source
  return (src:sub(1, 1) == '@' and src:sub(2) or src):match('^(.*)/[^/]*$') or '.'
end

local function exists(path)
  local f = path and io.open(path, 'rb')
  if f then f:close() return true end
  return false
end

local here = module_dir()                  -- .../bindings/moreau
local ok_inst, install = pcall(require, 'moreau._install')
if not ok_inst then install = {} end
-- The source tree when run from it (bindings/moreau/../..), else the installed data folder.
local root = here .. '/../..'
if not exists(root .. '/engine/include/moreau.h') and install.root then root = install.root end

local function first_existing(...)
  for i = 1, select('#', ...) do
    local p = select(i, ...)
    if exists(p) then return p end
  end
end

core.header_path = first_existing(os.getenv('MOREAU_HEADER'), install.header,
                                  root .. '/engine/include/moreau.h')
core.lib_path = first_existing(os.getenv('MOREAU_LIB'), install.lib, root .. '/build/libmoreau.so')
core.root = root
if not core.header_path then
  error('moreau: cannot find moreau.h (set MOREAU_HEADER or build from the source tree)', 0)
end
if not core.lib_path then
  error('moreau: cannot find libmoreau.so (build it with scripts/setup, or set MOREAU_LIB)', 0)
end

do
  local f = assert(io.open(core.header_path, 'rb'))
  local text = f:read('*a')
  f:close()
  local decls = text:match('/%* MR_CDEF_BEGIN %*/(.-)/%* MR_CDEF_END %*/')
  if not decls then error('moreau: ' .. core.header_path .. ' has no MR_CDEF block', 0) end
  ffi.cdef(decls)
end

core.C = ffi.load(core.lib_path)
local C = core.C

--- Raises the engine's last error message if rc is negative; returns rc otherwise.
-- ARGS: rc (number from a C call), level (error level, default 2 = the caller's caller)
function core.check(rc, level)
  if rc < 0 then
    error(ffi.string(C.mr_last_error()), (level or 2) + 1)
  end
  return rc
end

-- ------------------------------------------------------------ handles
-- The engine object behind a Lua object (a tensor's mr_tensor*, a network's
-- mr_net*, a solver's, an optimizer's, an open safetensors file's) lives in
-- this module's tables, keyed by the Lua object, never in a field of it, and
-- so does every C array the engine object borrows. Code that holds only the
-- object (a sandboxed recipe: it cannot require moreau.core) can therefore
-- never reach a pointer: it cannot free one twice, wrap it again, keep it
-- past its owner or index an unchecked array (docs/sandbox.md). The keys are
-- weak, so collecting the object lets the pointer's finalizer (ffi.gc) run.
local handles = setmetatable({}, { __mode = 'k' })
local borrowed = setmetatable({}, { __mode = 'k' })
local released = setmetatable({}, { __mode = 'k' })

--- Binds the engine pointer ptr (and `keep`, anything the C object borrows
-- and that must live as long as it) to the Lua object obj. RETURN: obj.
function core.attach(obj, ptr, keep)
  handles[obj], borrowed[obj] = ptr, keep
  return obj
end

--- The engine pointer behind obj; nil for anything that is not a live
-- moreau object (the engine then reports the NULL argument by name). Raises
-- the message given to core.detach for an object released on purpose.
function core.handle(obj)
  local p = handles[obj]
  if p == nil and released[obj] then error(released[obj], 3) end
  return p
end
local handle = core.handle

--- Unbinds obj from its pointer and returns the pointer (the caller frees
-- it). `why`, when given, is the error every later core.handle(obj) raises.
function core.detach(obj, why)
  local p = handles[obj]
  handles[obj], borrowed[obj], released[obj] = nil, nil, why
  return p
end

local pins = setmetatable({}, { __mode = 'k' })
--- Marks tensor obj as borrowed by the engine object of `holder` (a solver
-- keeps the batch it explains): obj:free() is refused while holder lives, so
-- the engine never reads freed memory. `what` names holder in that refusal.
-- The marks are weak both ways: collecting holder lifts its mark.
function core.pin(obj, holder, what)
  local set = pins[obj]
  if not set then
    set = setmetatable({}, { __mode = 'k' })
    pins[obj] = set
  end
  set[holder] = what
end

--- What a live holder of obj is called (core.pin), or nil when none holds it.
function core.pinned_by(obj)
  local set = pins[obj]
  if set then
    local _, what = next(set)
    return what
  end
end

-- ------------------------------------------------------ sizes from C
-- The shape of a tensor as the engine holds it. moreau's own code sizes every
-- buffer it hands to C from these, never from a tensor method: a method is a
-- field of a shared class table that code holding a tensor (a sandboxed
-- recipe) can replace, and a buffer sized by a lying x:size(1) would let the
-- engine write past its end. Each raises the engine's message for a freed
-- tensor or a value that is not one ("tensor is NULL"), at the caller's caller.
local shape_buf = ffi.new('int64_t[4]')

--- Number of dims of tensor t (1..4).
function core.ndim(t) return core.check(C.mr_tensor_ndim(handle(t)), 2) end

--- Number of entries of tensor t.
function core.numel(t) return tonumber(core.check(C.mr_tensor_numel(handle(t)), 2)) end

--- The shape of tensor t as a new Lua table.
function core.shape(t)
  local s = {}
  for i = 0, core.check(C.mr_tensor_shape(handle(t), shape_buf), 2) - 1 do s[i + 1] = tonumber(shape_buf[i]) end
  return s
end

--- Size of dim i (1-based, 1..ndim) of tensor t. Raises "tensor:size: dim I
-- outside 1..ND" for any other i.
function core.size(t, i)
  local nd = core.check(C.mr_tensor_shape(handle(t), shape_buf), 2)
  if type(i) ~= 'number' or i < 1 or i > nd or i ~= math.floor(i) then
    error(('tensor:size: dim %s outside 1..%d'):format(tostring(i), nd), 2)
  end
  return tonumber(shape_buf[i - 1])
end

-- ------------------------------------------------------------- labels

local INT32_MAX = 2 ^ 31 - 1

-- The scalar number types a label may come as besides a Lua number: LuaJIT's
-- 1LL and 1ULL literals, an element read from an int64_t[?] or uint64_t[?]
-- array, or any other boxed integer or float cdata. bool and complex convert
-- to numbers too (tonumber gives 1 and the real part), so they are named and
-- refused.
local refused_scalar = { ffi.typeof('bool'), ffi.typeof('complex'), ffi.typeof('complex float') }

local function index0(a) return a[0] end -- raises unless a is an array or pointer

-- A label given as scalar cdata as a Lua number, exact, and the text that
-- names it in errors; nil when c is not a scalar number cdata. tonumber is
-- exact for every integer of magnitude up to 2^53, so an int64 that converts
-- to a number in int32's range is that number; a larger one may round, so
-- errors show its exact digits (tostring without the LL/ULL suffix).
local function scalar_label(c)
  for _, ct in ipairs(refused_scalar) do if ffi.istype(ct, c) then return nil end end
  local v = tonumber(c)
  if v == nil then return nil end
  if ffi.istype('int64_t', c) or ffi.istype('uint64_t', c) then
    return v, (tostring(c):gsub('U?LL$', ''))
  end
  return v, tostring(v)
end

-- c when it is a class id the engine can hold (an integer in int32's range:
-- 2^32 would wrap to INT_MIN); else raises, naming labels[i] (or labels when
-- i is nil), at `level` (1: the caller of class_id). A scalar number cdata
-- (1LL, 1ULL, an element of an int64_t array) counts as its value.
local function class_id(c, i, who, level, classes)
  local shown
  if type(c) == 'cdata' then
    local v, s = scalar_label(c)
    if v ~= nil then c, shown = v, s else shown = tostring(c):gsub(': 0x%x+$', '') end -- 'cdata<bool>', '1+2i'
  end
  local function name() return i and ('labels[%d]'):format(i) or 'labels' end
  if type(c) ~= 'number' or c ~= math.floor(c) or c - c ~= 0 then
    error(('%s: %s = %s is not an integer class id'):format(who, name(), shown or tostring(c)), level + 1)
  end
  if math.abs(c) > INT32_MAX then
    error(('%s: %s = %s is outside the int32 range of class ids'):format(who, name(),
      shown or ('%.0f'):format(c)), level + 1)
  end
  if classes and (c < 0 or c >= classes) then
    error(('%s: %s = %d is outside 0..%d (the network has %d class%s)'):format(who, name(), c, classes - 1,
      classes, classes == 1 and '' or 'es'), level + 1)
  end
  return c
end

--- Labels as the engine takes them: one 0-based class id per batch item, as an
-- int32_t[N] cdata. The one home of this conversion. Private to moreau, as
-- every C array is (see handles above): an int32_t[N] is not bounds checked.
-- ARGS: labels (a Lua array of N class ids, a cdata array of at least N ids
--   of any number type (int32_t, int64_t, uint64_t, ...), or one id for
--   every item; an id may be a Lua number or a scalar number cdata such as
--   1LL, 1ULL or an element of an int64_t[?] array, converted exactly),
--   N (the batch size), into (optional int32_t[>= N] to fill instead of a
--   fresh array), who (the owner named in errors, default 'oracle'), level
--   (where errors point, 1: the caller of core.labels; default 2, the
--   caller's caller), classes (optional K: check every id against 0..K-1
--   here, for Lua code that indexes logits itself; without it the engine
--   checks the range).
-- Errors: "WHO: K labels for a batch of N"; "WHO: labels[I] = V is not an
-- integer class id" (NaN, ±inf, fractions, bool and complex too; "labels =
-- V" for one id); "WHO: labels[I] = V is outside the int32 range of class
-- ids" (V in full, 2^63 - 1 too); "WHO: labels must be a table of class
-- ids, got TYPE" (a cdata that is neither a number nor an array names its
-- ctype); with classes, "WHO: labels[I] = V is outside 0..K-1 (the network
-- has K classes)". Without classes the range 0..K-1 is checked by the
-- engine, which knows K.
-- RETURN: the cdata (`into` when given).
function core.labels(labels, N, into, who, level, classes)
  who, level = who or 'oracle', (level or 2) + 1
  local out = into or ffi.new('int32_t[?]', math.max(N, 1))
  local kind = type(labels)
  if kind == 'cdata' then
    if tonumber(labels) ~= nil then kind = 'number' -- a scalar: 1LL, 1ULL, a boxed int (bool, complex refused below)
    elseif pcall(index0, labels) then kind = 'array'
    end
  end
  if kind == 'number' then
    local c = class_id(labels, nil, who, level, classes)
    for i = 0, N - 1 do out[i] = c end
  elseif kind == 'table' then
    if #labels ~= N then
      error(('%s: %d labels for a batch of %d'):format(who, #labels, N), level)
    end
    for i = 0, N - 1 do out[i] = class_id(labels[i + 1], i + 1, who, level, classes) end
  elseif kind == 'array' then
    -- every element checked, whatever the array's type: an int64_t 2^32 would
    -- wrap on the store into int32_t, a double 2.5 truncate to 2
    if labels ~= out then
      for i = 0, N - 1 do out[i] = class_id(labels[i], i + 1, who, level, classes) end
    elseif classes then
      for i = 0, N - 1 do class_id(out[i], i + 1, who, level, classes) end
    end
  else
    error(('%s: labels must be a table of class ids, got %s'):format(who,
      type(labels) == 'cdata' and tostring(ffi.typeof(labels)) or type(labels)), level)
  end
  return out
end

--- A copy of the entries of tensor t (a moreau.tensor) in a new float array,
-- for Lua code that computes on the values itself: it reads a copy, never
-- tensor memory, and core.store writes the results back. The array is
-- 0-based and unchecked, so it stays inside moreau (the sandbox does not
-- expose core). ARGS: t. RETURN: float[numel].
function core.floats(t)
  local n = tonumber(C.mr_tensor_numel(handle(t)))
  local buf = ffi.new('float[?]', n)
  core.check(C.mr_tensor_read(buf, handle(t), 0, n))
  return buf
end

--- Writes the numel floats of buf (from core.floats) into tensor t; a
-- buffer shorter than t (its real length, from ffi.sizeof) is refused, never
-- read past. RETURN: t.
function core.store(t, buf)
  local n = core.numel(t)
  local have = math.floor((ffi.sizeof(buf) or 0) / 4) -- a float[?] array's length
  if have < n then
    error(('core.store: a buffer of %s floats for a tensor of %d entries'):format(tostring(have), n), 2)
  end
  core.check(C.mr_tensor_write(handle(t), 0, buf, n))
  return t
end

--- Every Lua function that writes a file calls this first. It allows
-- everything, except inside a sandboxed recipe run (moreau.sandbox), which
-- confines writes to the run's results folder.
function core.check_write(path, level)
  if core.write_guard then core.write_guard(path, (level or 2) + 1) end
  return path
end

--- GNU readline for the REPL (declared here, the one module that calls
-- ffi.cdef), or nil when the library is absent. The libc functions the REPL
-- reads its input with (read, fileno, isatty, clearerr, stdin, strdup, free) are
-- declared either way, and so are readline's signal, getc and completion
-- hooks (readline manual, "Readline Signal Handling", "Completion Functions").
function core.readline()
  if core._readline ~= nil then return core._readline or nil end
  ffi.cdef [[
    typedef int rl_getc_func_t(void *);
    typedef char *rl_compentry_func_t(const char *, int);
    typedef char **rl_completion_func_t(const char *, int, int);
    char *readline(const char *prompt);
    void add_history(const char *line);
    int read_history(const char *filename);
    int write_history(const char *filename);
    int append_history(int nelements, const char *filename);
    int history_truncate_file(const char *filename, int nlines);
    void rl_replace_line(const char *text, int clear_undo);
    char **rl_completion_matches(const char *text, rl_compentry_func_t *entry);
    extern rl_getc_func_t *rl_getc_function;
    extern rl_completion_func_t *rl_attempted_completion_function;
    extern const char *rl_basic_word_break_characters;
    extern const char *rl_readline_name;
    extern int rl_catch_signals;
    extern int rl_attempted_completion_over;
    extern int rl_completion_append_character;
    void free(void *p);
    char *strdup(const char *s);
    int fileno(void *stream);
    int isatty(int fd);
    ssize_t read(int fd, void *buf, size_t count);
    void clearerr(void *stream);
    extern void *stdin;
  ]]
  core._readline = false
  for _, name in ipairs { 'readline', 'libreadline.so.8', 'libreadline.so' } do
    local ok, lib = pcall(ffi.load, name)
    if ok then core._readline = lib break end
  end
  return core._readline or nil
end

--- The engine's version string.
function core.version() return ffi.string(C.mr_version()) end

return core
