--- moreau.safetensors — read and write HuggingFace safetensors files.
--
-- The engine parses and validates the whole header (dtypes, shapes, offsets
-- against the file size) before any data is read; every error names the file
-- and what is wrong. F32 tensors load as they are; F64, F16 and BF16 are
-- converted to float32; integer tensors are listed but cannot be loaded,
-- except that PyTorch's `num_batches_tracked` counters are skipped.
--
--   local st = require 'moreau.safetensors'
--   st.save('w.safetensors', { ['fc.weight'] = W, ['fc.bias'] = b }, { epoch = '3' })
--   local tensors, meta = st.load('w.safetensors')   -- name -> tensor, key -> string
--   st.load_net(net, 'w.safetensors', { strict = true })
--   st.save_net(net, 'w.safetensors', { trained_by = 'recipes/train_fmnist.lua' })
--
--   local f = st.open('w.safetensors')  -- lazy: names and shapes, one tensor at a time
--   for _, name in ipairs(f:names()) do print(name, table.concat(f:shape(name), 'x')) end
--   local W = f:get('fc.weight')
local ffi = require 'ffi'
local core = require 'moreau.core'
local T = require 'moreau.tensor'
local C, check, handle = core.C, core.check, core.handle

local st = {}

-- ------------------------------------------------------------ metadata

-- Metadata is a JSON object whose values are strings. lua-cjson turns the
-- table into JSON text and back; the engine checks that text on both sides
-- (UTF-8, strings only, unique keys) and writes the keys sorted, so the file's
-- bytes do not depend on the order of the table. A private cjson instance, so
-- no other module's settings reach it.
local json = require('cjson').new()

-- The metadata table (string keys; string, number or boolean values, numbers
-- and booleans written with tostring) as JSON text; nil gives nil.
local function metadata_json(meta, level)
  if meta == nil then return nil end
  if type(meta) ~= 'table' then
    error('safetensors: metadata must be a table of strings, got ' .. type(meta), level + 1)
  end
  local strings = {}
  for k, v in pairs(meta) do
    if type(k) ~= 'string' then
      error('safetensors: metadata keys must be strings, got ' .. type(k), level + 1)
    end
    if type(v) ~= 'string' and type(v) ~= 'number' and type(v) ~= 'boolean' then
      error(("safetensors: metadata value of '%s' is a %s; give a string"):format(k, type(v)), level + 1)
    end
    strings[k] = tostring(v)
    -- the engine's strings end at a NUL: it would cut the text short without a word
    if k:find('\0', 1, true) or strings[k]:find('\0', 1, true) then
      error(("safetensors: metadata key or value of '%s' holds a NUL byte"):format((k:gsub('%z', '\\0'))),
        level + 1)
    end
  end
  return json.encode(strings)
end

-- --------------------------------------------------------- files, lazily

local File = {}
File.__index = File
st.File = File

local handle_buf = ffi.new('mr_safetensors*[1]')
local tensor_buf = ffi.new('mr_tensor*[1]')
local ndim_buf = ffi.new('int[1]')
local shape_buf = ffi.new('int64_t[4]')

--- Opens and validates a safetensors file. RETURN: a File with :names(),
-- :has(name), :shape(name), :get(name), :metadata(), :close().
local function open(path, level)
  if type(path) ~= 'string' then
    error('safetensors: path must be a string, got ' .. type(path), level + 1)
  end
  check(C.mr_safetensors_load(handle_buf, path), level + 1)
  return core.attach(setmetatable({ path = path }, File), ffi.gc(handle_buf[0], C.mr_safetensors_free))
end

--- Opens a .safetensors file (reads and checks its header and data).
-- Errors: path not a string; a file that cannot be read, is over the
-- loader's size budget, or is malformed (the engine's message says which).
-- RETURN: a File.
function st.open(path) return open(path, 2) end

local function live(self, level)
  if handle(self) == nil then error('safetensors: ' .. self.path .. ' is closed', level + 1) end
  return handle(self)
end

--- Tensor names, sorted.
function File:names()
  local p = live(self, 2)
  local names = {}
  for i = 0, C.mr_safetensors_count(p) - 1 do names[i + 1] = ffi.string(C.mr_safetensors_name(p, i)) end
  return names
end

local function index(self, name, level)
  local p = live(self, level + 1)
  if type(name) ~= 'string' then
    error('safetensors: tensor name must be a string, got ' .. type(name), level + 1)
  end
  local i = C.mr_safetensors_find(p, name)
  if i < 0 then error(ffi.string(C.mr_last_error()), level + 1) end
  return p, i
end

--- Whether the file holds a tensor called `name`.
function File:has(name) return C.mr_safetensors_find(live(self, 2), name) >= 0 end

--- Shape of a tensor as a table ({} for a scalar).
function File:shape(name)
  local p, i = index(self, name, 2)
  check(C.mr_safetensors_shape(p, i, ndim_buf, shape_buf))
  local s = {}
  for k = 0, ndim_buf[0] - 1 do s[k + 1] = tonumber(shape_buf[k]) end
  return s
end

--- A new float32 tensor holding the named tensor (a scalar becomes shape {1}).
function File:get(name)
  local p, i = index(self, name, 2)
  check(C.mr_safetensors_get(tensor_buf, p, i))
  return T.wrap(tensor_buf[0])
end

--- The "__metadata__" object as a table of strings ({} if none).
function File:metadata()
  -- the engine has checked it: an object of strings with unique keys
  return json.decode(ffi.string(C.mr_safetensors_metadata(live(self, 2))))
end

--- Frees the file's memory now (otherwise when collected).
function File:close()
  local p = core.detach(self)
  if p ~= nil then C.mr_safetensors_free(ffi.gc(p, nil)) end
end

-- ------------------------------------------------------------- whole files

--- Loads every tensor of a file.
-- ARGS: path; opts {skip = function(name) -> bool} (default: skip names ending
-- in num_batches_tracked, PyTorch's integer counters).
-- RETURN: tensors (name -> tensor), metadata (key -> string).
function st.load(path, opts)
  local f = open(path, 2)
  local skip = opts and opts.skip or function(name) return name:sub(-19) == 'num_batches_tracked' end
  local tensors = {}
  for _, name in ipairs(f:names()) do
    if not skip(name) then
      local p, i = index(f, name, 2)
      check(C.mr_safetensors_get(tensor_buf, p, i), 2)
      tensors[name] = T.wrap(tensor_buf[0])
    end
  end
  local meta = f:metadata()
  f:close()
  return tensors, meta
end

--- Writes tensors (name -> tensor) and optional metadata (key -> string) to
-- path; names are sorted in the file. The file is replaced only once the
-- whole new one is written.
function st.save(path, tensors, metadata)
  if type(path) ~= 'string' then error('safetensors.save: path must be a string, got ' .. type(path), 2) end
  if type(tensors) ~= 'table' then error('safetensors.save: tensors must be a table name -> tensor', 2) end
  local names = {}
  for name, t in pairs(tensors) do
    if type(name) ~= 'string' then error('safetensors.save: tensor names must be strings', 2) end
    if name:find('\0', 1, true) then
      error(("safetensors.save: tensor name '%s' holds a NUL byte"):format((name:gsub('%z', '\\0'))), 2)
    end
    if not T.is(t) then error(("safetensors.save: '%s' is a %s, not a tensor"):format(name, type(t)), 2) end
    names[#names + 1] = name
  end
  table.sort(names)
  local n = #names
  local cnames = ffi.new('const char*[?]', math.max(n, 1))
  local ctensors = ffi.new('const mr_tensor*[?]', math.max(n, 1))
  for i, name in ipairs(names) do
    cnames[i - 1] = name -- the strings stay alive in `names`
    ctensors[i - 1] = handle(tensors[name])
  end
  core.check_write(path, 2)
  check(C.mr_safetensors_save(path, n, cnames, ctensors, metadata_json(metadata, 2)), 2)
end

--- Loads a network's parameters (weights and buffers) by name. Every parameter
-- must be in the file with its exact shape; with strict (the default) the file
-- may hold no other tensors, except num_batches_tracked. All or nothing: on
-- error the network is unchanged. ARGS: net (moreau.nn Net), path, opts {strict = true}.
function st.load_net(net, path, opts)
  if type(path) ~= 'string' then error('safetensors.load_net: path must be a string, got ' .. type(path), 2) end
  local strict = not (opts and opts.strict == false)
  check(C.mr_net_load(handle(net), path, strict and 1 or 0))
  return net
end

--- Saves every parameter of a network (weights and buffers) by name, with
-- optional metadata (key -> string).
function st.save_net(net, path, metadata)
  if type(path) ~= 'string' then error('safetensors.save_net: path must be a string, got ' .. type(path), 2) end
  core.check_write(path, 2)
  check(C.mr_net_save(handle(net), path, metadata_json(metadata, 2)))
  return net
end

return st
