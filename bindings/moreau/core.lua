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

--- A copy of the entries of tensor t (a moreau.tensor) in a new float array,
-- for Lua code that computes on the values itself: it reads a copy, never
-- tensor memory, and core.store writes the results back. The array is
-- 0-based and unchecked, so it stays inside moreau (the sandbox does not
-- expose core). ARGS: t. RETURN: float[numel].
function core.floats(t)
  local n = tonumber(C.mr_tensor_numel(t.ptr))
  local buf = ffi.new('float[?]', n)
  core.check(C.mr_tensor_read(buf, t.ptr, 0, n))
  return buf
end

--- Writes the numel floats of buf (from core.floats) into tensor t. RETURN: t.
function core.store(t, buf)
  core.check(C.mr_tensor_write(t.ptr, 0, buf, C.mr_tensor_numel(t.ptr)))
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
-- ffi.cdef), or nil when the library is absent.
function core.readline()
  if core._readline ~= nil then return core._readline or nil end
  ffi.cdef [[
    char *readline(const char *prompt);
    void add_history(const char *line);
    int read_history(const char *filename);
    int write_history(const char *filename);
    void free(void *p);
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
