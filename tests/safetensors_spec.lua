-- safetensors: round trips, dtype conversion, hostile files, network loading.
--
-- Hostile files are crafted byte by byte here, so each error path is shown with
-- its specific message; a seeded fuzz loop shows that damaged files fail with a
-- message and never crash the process.
local ffi = require 'ffi'
local bit = require 'bit'
local T = require 'moreau.tensor'
local nn = require 'moreau.nn'
local st = require 'moreau.safetensors'
local core = require 'moreau.core'
local C = core.C

local tmpdir = os.getenv('TMPDIR') or '/tmp'
local made = {}
local function tmpfile(tag)
  local p = ('%s/moreau_st_%d_%s_%d.safetensors'):format(tmpdir, os.time(), tag, #made + 1)
  made[#made + 1] = p
  return p
end

local function write_bytes(path, bytes)
  local f = assert(io.open(path, 'wb'))
  f:write(bytes)
  f:close()
  return path
end

local function read_bytes(path)
  local f = assert(io.open(path, 'rb'))
  local s = f:read('*a')
  f:close()
  return s
end

-- 8-byte little-endian unsigned integer (exact up to 2^53; `hi` gives the top 32 bits).
local function u64(n, hi)
  local b = {}
  for i = 1, 4 do b[i] = n % 256; n = math.floor(n / 256) end
  hi = hi or n
  for i = 5, 8 do b[i] = hi % 256; hi = math.floor(hi / 256) end
  return string.char(unpack(b))
end

-- A file: the header text, then the data bytes.
local function craft(tag, header, data)
  return write_bytes(tmpfile(tag), u64(#header) .. header .. (data or ''))
end

local function f32_bytes(values)
  local a = ffi.new('float[?]', #values, values)
  return ffi.string(a, 4 * #values)
end
local function f64_bytes(values)
  local a = ffi.new('double[?]', #values, values)
  return ffi.string(a, 8 * #values)
end
local function u16_bytes(values)
  local s = {}
  for i, v in ipairs(values) do s[i] = string.char(v % 256, math.floor(v / 256)) end
  return table.concat(s)
end

local function bits(x) -- float32 bits of every element
  local p = ffi.cast('uint32_t*', x:data())
  local out = {}
  for i = 0, x:numel() - 1 do out[i + 1] = tonumber(p[i]) end
  return out
end

-- Asserts that fn raises an error whose message contains each of the plain strings.
local function fails_with(fn, ...)
  local ok, err = pcall(fn)
  assert(not ok, 'expected an error, got success')
  err = tostring(err)
  for _, want in ipairs { ... } do
    if not err:find(want, 1, true) then
      error(('error message\n  %s\ndoes not contain\n  %s'):format(err, want), 2)
    end
  end
  return err
end

teardown(function()
  for _, p in ipairs(made) do os.remove(p) end
end)

describe('safetensors round trip', function()
  it('saves and loads float32 tensors bit-exactly, including NaN, inf, -0 and subnormals', function()
    local a = T.randn({ 2, 3, 4, 5 }, { seed = 7 })
    local b = T.from({ 0 / 0, 1 / 0, -1 / 0, -0.0, 1.4e-45, 3.4028235e38, -1e-40 }, { 7 })
    local c = T.from({ 42 }, { 1 })
    local path = tmpfile('rt')
    st.save(path, { ['layer.b'] = b, ['layer.a'] = a, c = c })
    local got, meta = st.load(path)
    assert.are.same({}, meta)
    assert.are.same({ 2, 3, 4, 5 }, got['layer.a']:shape())
    assert.are.same(bits(a), bits(got['layer.a']))
    assert.are.same(bits(b), bits(got['layer.b']))
    assert.are.same(bits(c), bits(got.c))
    local n = 0
    for _ in pairs(got) do n = n + 1 end
    assert.are.equal(3, n)
  end)

  it('writes the reference layout: sorted names, space-padded 8-byte-aligned header', function()
    local path = tmpfile('layout')
    st.save(path, { b = T.from({ 1, 2 }, { 2 }), a = T.from({ 3, 4, 5, 6, 7, 8 }, { 2, 3 }) }, { note = 'x' })
    local s = read_bytes(path)
    local n = 0
    for i = 8, 1, -1 do n = n * 256 + s:byte(i) end
    assert.are.equal(0, n % 8)
    local header = s:sub(9, 8 + n)
    local want = '{"__metadata__":{"note":"x"},' ..
        '"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},' ..
        '"b":{"dtype":"F32","shape":[2],"data_offsets":[24,32]}}'
    assert.are.equal(want, header:gsub(' +$', ''))
    assert.are.equal(n - #want, #header:match(' *$'))
    assert.are.equal(8 + n + 32, #s)
    assert.are.equal(f32_bytes { 3, 4, 5, 6, 7, 8, 1, 2 }, s:sub(9 + n))
  end)

  it('round-trips metadata, with characters that need escaping', function()
    local path = tmpfile('meta')
    local meta = { format = 'pt', note = 'line 1\nline "2"\t\\ \1 ünïcødé', epoch = 3 }
    st.save(path, { w = T.ones { 2 } }, meta)
    local _, got = st.load(path)
    assert.are.same({ format = 'pt', note = meta.note, epoch = '3' }, got)
    local f = st.open(path)
    assert.are.same(got, f:metadata())
    f:close()
  end)

  it('writes metadata bytes as the engine escapes them: "/" and DEL raw, controls as \\u00XX', function()
    local path = tmpfile('meta_bytes')
    st.save(path, { w = T.ones { 1 } }, { note = 'a/b\127\1"\\', ['k/ü'] = '𝔵' })
    local s = read_bytes(path)
    local n = 0
    for i = 8, 1, -1 do n = n * 256 + s:byte(i) end
    assert.are.equal('{"__metadata__":{"k/ü":"𝔵","note":"a/b\127\\u0001\\"\\\\"},' ..
      '"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', (s:sub(9, 8 + n):gsub(' +$', '')))
    local _, meta = st.load(path)
    assert.are.same({ note = 'a/b\127\1"\\', ['k/ü'] = '𝔵' }, meta)
  end)

  it('writes metadata keys sorted, whatever order they come in', function()
    -- from Lua: a table has no order; from C: the JSON text's order is not kept either
    local meta, want = {}, {}
    for i = 1, 40 do meta[('key%02d'):format(41 - i)] = tostring(i) end
    for i = 1, 40 do want[i] = ('"key%02d":"%d"'):format(i, 41 - i) end
    local path = tmpfile('meta_sorted')
    st.save(path, {}, meta)
    local s = read_bytes(path)
    assert.are.equal('{"__metadata__":{' .. table.concat(want, ',') .. '}}', (s:sub(9):gsub(' +$', '')))
    local rc = C.mr_safetensors_save(path, 0, nil, nil, '{"b":"2","a":"1","C":"0"}')
    assert.are.equal(0, rc)
    assert.are.equal('{"__metadata__":{"C":"0","a":"1","b":"2"}}', (read_bytes(path):sub(9):gsub(' +$', '')))
  end)

  it('saves an empty set of tensors', function()
    local path = tmpfile('empty_set')
    st.save(path, {})
    local got, meta = st.load(path)
    assert.are.same({}, got)
    assert.are.same({}, meta)
  end)

  it('opens lazily: names, shapes, one tensor at a time', function()
    local path = tmpfile('lazy')
    st.save(path, { x = T.zeros { 3, 1, 2 }, y = T.ones { 5 } })
    local f = st.open(path)
    assert.are.same({ 'x', 'y' }, f:names())
    assert.are.same({ 3, 1, 2 }, f:shape('x'))
    assert.is_true(f:has('y'))
    assert.is_false(f:has('z'))
    assert.are.same({ 1, 1, 1, 1, 1 }, f:get('y'):totable())
    fails_with(function() f:get('z') end, path, "no tensor named 'z'")
    f:close()
    fails_with(function() f:names() end, 'is closed')
  end)

  it('refuses bad arguments to save', function()
    local path = tmpfile('badsave')
    fails_with(function() st.save(path, { x = 3 }) end, "'x' is a number, not a tensor")
    fails_with(function() st.save(path, { __metadata__ = T.ones { 1 } }) end, "'__metadata__' cannot name a tensor")
    fails_with(function() st.save(path, { x = T.ones { 1 } }, { k = {} }) end, "metadata value of 'k' is a table")
    fails_with(function() st.save(path, { x = T.ones { 1 } }, { k = 'a\0b' }) end, "metadata key or value of 'k' holds a NUL byte")
    fails_with(function() st.save(path, { x = T.ones { 1 } }, { ['k\0'] = 'a' }) end, "metadata key or value of 'k\\0' holds")
    fails_with(function() st.save(path, { ['a\0b'] = T.ones { 1 } }) end, "tensor name 'a\\0b' holds a NUL byte")
    fails_with(function() C.mr_safetensors_save(path, 0, nil, nil, '[1]') ; core.check(-1) end,
      'metadata must be a JSON object of strings')
    fails_with(function() st.save('/nonexistent-dir/x.safetensors', { x = T.ones { 1 } }) end,
      '/nonexistent-dir/x.safetensors', 'cannot open for writing')
  end)

  it('refuses bad arguments to the C writer, naming each, and leaves the old file intact', function()
    local path = tmpfile('badsave_c')
    st.save(path, { old = T.ones { 2 } })
    local before = read_bytes(path)
    local one = T.ones { 1 }
    local function save(names, metadata)
      local n = #names
      local cn, ct = ffi.new('const char*[?]', n + 1), ffi.new('const mr_tensor*[?]', n + 1)
      for i, name in ipairs(names) do cn[i - 1], ct[i - 1] = name, core.handle(one) end
      return function() core.check(C.mr_safetensors_save(path, n, cn, ct, metadata)) end
    end
    fails_with(save({ 'x', 'y', 'x' }), path, "two tensors are named 'x'")
    fails_with(save({ 'x', '' }), path, 'tensor 1 has no name')
    fails_with(save({ 'x\255' }), path, "tensor name 'x\255' is not valid UTF-8")
    fails_with(save({ 'x' }, '{"a":"1","a":"2"}'), path, "metadata key 'a' appears twice")
    fails_with(save({ 'x' }, '{"a":"1"} {"b":"2"}'), path, 'metadata is not valid JSON')
    fails_with(save({ 'x' }, '{"a":"\255"}'), path, 'metadata is not valid UTF-8')
    fails_with(save({ 'x' }, '{"a":2}'), path, "metadata value of 'a' is not a string")
    local cn = ffi.new('const char*[1]', { 'x' })
    fails_with(function() core.check(C.mr_safetensors_save(path, 1, cn, nil, nil)) end,
      path, '1 tensors with NULL names or tensors')
    assert.are.equal(before, read_bytes(path))
  end)
end)

describe('safetensors dtype conversion', function()
  it('converts F64 to float32', function()
    -- the last two: just below and exactly at FLT_MAX + half an ulp (a tie: rounds to even, inf)
    local vals = { 1, -2.5, 0.1, 1e300, -1e300, 1e-300, 3.4028235677973362e38, 3.4028235677973366e38 }
    local hdr = ('{"d":{"dtype":"F64","shape":[%d],"data_offsets":[0,%d]}}'):format(#vals, 8 * #vals)
    local got = st.load(craft('f64', hdr, f64_bytes(vals))).d
    local want = ffi.new('float[8]', { 1, -2.5, 0.1, 1 / 0, -1 / 0, 0, 3.4028235e38, 1 / 0 })
    for i = 0, 7 do assert.are.equal(tonumber(want[i]), tonumber(got:data()[i])) end
  end)

  it('converts F16, including subnormals, infinities, NaN and -0', function()
    -- 1, -2, 0.5, 65504 (max), 2^-24 (smallest subnormal), 2^-14 (smallest normal),
    -- 0x03ff (largest subnormal), inf, -inf, NaN, -0
    local h = { 0x3C00, 0xC000, 0x3800, 0x7BFF, 0x0001, 0x0400, 0x03FF, 0x7C00, 0xFC00, 0x7E00, 0x8000 }
    local hdr = ('{"h":{"dtype":"F16","shape":[11],"data_offsets":[0,%d]}}'):format(2 * #h)
    local x = st.load(craft('f16', hdr, u16_bytes(h))).h
    local v = x:totable()
    assert.are.same({ 1, -2, 0.5, 65504, 2 ^ -24, 2 ^ -14, 1023 * 2 ^ -24, 1 / 0, -1 / 0 }, { unpack(v, 1, 9) })
    assert.is_true(v[10] ~= v[10])
    assert.are.equal(0x80000000, bits(x)[11])
  end)

  it('converts BF16 by widening', function()
    local h = { 0x3F80, 0xC020, 0x4049, 0x0001, 0x7F80 }
    local hdr = '{"b":{"dtype":"BF16","shape":[5],"data_offsets":[0,10]}}'
    local x = st.load(craft('bf16', hdr, u16_bytes(h))).b
    assert.are.same({ 0x3F800000, 0xC0200000, 0x40490000, 0x00010000, 0x7F800000 }, bits(x))
    assert.are.equal(3.140625, x:totable()[3])
  end)

  it('reads a scalar as shape {1} and reports its shape as {}', function()
    local path = craft('scalar', '{"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}', f32_bytes { 2.5 })
    local f = st.open(path)
    assert.are.same({}, f:shape('s'))
    local x = f:get('s')
    assert.are.same({ 1 }, x:shape())
    assert.are.equal(2.5, x:totable()[1])
  end)

  it('lists integer tensors but refuses to convert them, and skips num_batches_tracked', function()
    local hdr = '{"bn.num_batches_tracked":{"dtype":"I64","shape":[],"data_offsets":[0,8]},' ..
        '"idx":{"dtype":"I32","shape":[2],"data_offsets":[8,16]},' ..
        '"w":{"dtype":"F32","shape":[1],"data_offsets":[16,20]}}'
    local path = craft('int', hdr, u64(5) .. u64(1) .. f32_bytes { 1 })
    local f = st.open(path)
    assert.are.same({ 'bn.num_batches_tracked', 'idx', 'w' }, f:names())
    assert.are.same({ 2 }, f:shape('idx'))
    fails_with(function() f:get('idx') end, path, "tensor 'idx' has dtype I32, which does not convert to float32")
    fails_with(function() st.load(path) end, "tensor 'idx' has dtype I32")
    local got = st.load(path, { skip = function(n) return n ~= 'w' end })
    assert.are.same({ 1 }, got.w:totable())
  end)

  it('lists tensors with a zero dim or more than 4 dims but does not convert them', function()
    local hdr = '{"e":{"dtype":"F32","shape":[3,0],"data_offsets":[0,0]},' ..
        '"f":{"dtype":"F32","shape":[1,1,1,1,2],"data_offsets":[0,8]}}'
    local f = st.open(craft('odd', hdr, f32_bytes { 1, 2 }))
    assert.are.same({ 3, 0 }, f:shape('e'))
    fails_with(function() f:get('e') end, "tensor 'e' of shape 3x0 is empty")
    fails_with(function() f:shape('f') end, "tensor 'f' has 5 dims; moreau handles at most 4")
    fails_with(function() f:get('f') end, "tensor 'f' has 5 dims")
  end)
end)

describe('safetensors hostile files', function()
  local good = '{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'

  it('rejects a missing file', function()
    fails_with(function() st.load(tmpdir .. '/no-such-file.safetensors') end,
      'no-such-file.safetensors: cannot open')
  end)

  it('rejects an empty file', function()
    local p = write_bytes(tmpfile('empty'), '')
    fails_with(function() st.load(p) end, p .. ': empty file')
  end)

  it('rejects a file shorter than 8 bytes', function()
    local p = write_bytes(tmpfile('short'), '\5\0\0')
    fails_with(function() st.load(p) end, p .. ': truncated: 3 bytes, shorter than the 8-byte header length')
  end)

  it('rejects a header length larger than the file', function()
    local p = write_bytes(tmpfile('hlen'), u64(123456789) .. good .. f32_bytes { 1, 2 })
    fails_with(function() st.load(p) end,
      p .. ': header length 123456789 exceeds the file size ' .. (8 + #good + 8))
  end)

  it('rejects an absurd header length (2^63)', function()
    local p = write_bytes(tmpfile('huge'), u64(0, 0x80000000) .. good .. f32_bytes { 1, 2 })
    fails_with(function() st.load(p) end, p .. ': header length 9223372036854775808 exceeds the file size')
    p = write_bytes(tmpfile('huge2'), '\255\255\255\255\255\255\255\255' .. good)
    fails_with(function() st.load(p) end, ': header length 18446744073709551615 exceeds the file size')
  end)

  it('rejects invalid JSON', function()
    local p = craft('badjson', '{"w":{"dtype":"F32",', '')
    fails_with(function() st.load(p) end, p .. ': header is not valid JSON')
    p = craft('trailing', good .. ' x', f32_bytes { 1, 2 })
    fails_with(function() st.load(p) end, p .. ': header is not valid JSON')
    p = craft('nul', good:sub(1, 10) .. '\0' .. good:sub(12), f32_bytes { 1, 2 })
    fails_with(function() st.load(p) end, p .. ': header is not valid JSON (NUL byte')
    p = craft('zero', '', '')
    fails_with(function() st.load(p) end, p .. ': header is not valid JSON')
  end)

  it('rejects a header that is not UTF-8', function()
    local p = craft('utf8', '{"w\255":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', f32_bytes { 1, 2 })
    fails_with(function() st.load(p) end, p .. ': header is not valid UTF-8 (byte 3 of the header)')
  end)

  it('rejects JSON that is not an object', function()
    local p = craft('array', '[1, 2, 3]', '')
    fails_with(function() st.load(p) end, p .. ': header is [1,2,3], not a JSON object')
    p = craft('entry', '{"w":5}', '')
    fails_with(function() st.load(p) end, p .. ": tensor 'w': entry is 5, not an object")
    p = craft('meta', '{"__metadata__":{"a":1}}', '')
    fails_with(function() st.load(p) end, p .. ": __metadata__ value of 'a' is 1, not a string")
    p = craft('meta2', '{"__metadata__":[]}', '')
    fails_with(function() st.load(p) end, p .. ': __metadata__ is [], not an object')
  end)

  it('rejects entries with missing fields', function()
    local p = craft('nodtype', '{"w":{"shape":[2],"data_offsets":[0,8]}}', f32_bytes { 1, 2 })
    fails_with(function() st.load(p) end, p .. ": tensor 'w' has no \"dtype\"")
    p = craft('noshape', '{"w":{"dtype":"F32","data_offsets":[0,8]}}', f32_bytes { 1, 2 })
    fails_with(function() st.load(p) end, p .. ": tensor 'w' has no \"shape\"")
    p = craft('nooff', '{"w":{"dtype":"F32","shape":[2]}}', f32_bytes { 1, 2 })
    fails_with(function() st.load(p) end, p .. ": tensor 'w' has no \"data_offsets\"")
  end)

  it('rejects an unknown dtype', function()
    local p = craft('dtype', '{"w":{"dtype":"F31","shape":[2],"data_offsets":[0,8]}}', f32_bytes { 1, 2 })
    fails_with(function() st.load(p) end, p .. ": tensor 'w' has unknown dtype 'F31'")
    p = craft('dtype2', '{"w":{"dtype":4,"shape":[2],"data_offsets":[0,8]}}', f32_bytes { 1, 2 })
    fails_with(function() st.load(p) end, p .. ": tensor 'w': dtype 4 is not a string")
  end)

  it('rejects negative, non-integer or non-numeric shapes', function()
    local function shaped(tag, shape)
      return craft(tag, '{"w":{"dtype":"F32","shape":' .. shape .. ',"data_offsets":[0,8]}}', f32_bytes { 1, 2 })
    end
    local p = shaped('neg', '[-2]')
    fails_with(function() st.load(p) end, p .. ": tensor 'w': shape entry 0 is -2, not an integer in [0, 2^53)")
    p = shaped('frac', '[1, 2.5]')
    fails_with(function() st.load(p) end, ": tensor 'w': shape entry 1 is 2.5, not an integer in [0, 2^53)")
    p = shaped('str', '["2"]')
    fails_with(function() st.load(p) end, ": tensor 'w': shape entry 0 is \"2\", not an integer in [0, 2^53)")
    p = shaped('notarr', '2')
    fails_with(function() st.load(p) end, ": tensor 'w': shape 2 is not an array")
    p = shaped('big', '[1e300]')
    fails_with(function() st.load(p) end, "shape entry 0 is 1e+300, not an integer in [0, 2^53)")
  end)

  it('reads integers exactly below 2^53 and refuses those a double cannot hold exactly', function()
    -- 2^53 + 1 parses to the same double as 2^53: accepting it would read another number
    local ok = craft('int_max', '{"e":{"dtype":"F32","shape":[9007199254740991,0],"data_offsets":[0,0]}}', '')
    assert.are.same({ 9007199254740991, 0 }, st.open(ok):shape('e'))
    for _, big in ipairs { '9007199254740992', '9007199254740993' } do
      local p = craft('int_big', '{"e":{"dtype":"F32","shape":[' .. big .. ',0],"data_offsets":[0,0]}}', '')
      -- (the value is shown as cJSON prints the double: 9.00719925474099e+15)
      fails_with(function() st.open(p) end, p .. ": tensor 'e': shape entry 0 is 9.007",
        'not an integer in [0, 2^53)')
      p = craft('off_big', '{"e":{"dtype":"F32","shape":[0],"data_offsets":[' .. big .. ',' .. big .. ']}}', '')
      fails_with(function() st.open(p) end, p .. ": tensor 'e': data_offsets [9.007",
        'are not two integers in [0, 2^53)')
    end
  end)

  it('rejects a key repeated inside an entry or in __metadata__', function()
    local p = craft('dupfield', '{"w":{"dtype":"F32","shape":[2],"dtype":"F64","data_offsets":[0,8]}}',
      f32_bytes { 1, 2 })
    fails_with(function() st.load(p) end, p .. ": tensor 'w' has \"dtype\" twice")
    p = craft('dupmeta', '{"__metadata__":{"a":"1","b":"2","a":"3"}}', '')
    fails_with(function() st.load(p) end, p .. ": __metadata__ key 'a' appears twice")
  end)

  it('rejects shapes whose element count overflows', function()
    local p = craft('ovf', '{"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}}',
      f32_bytes { 1, 2 })
    fails_with(function() st.load(p) end, p .. ": tensor 'w': shape [4294967296,4294967296,16] has too many elements")
    p = craft('ovf2', '{"w":{"dtype":"F64","shape":[4294967296,1073741824],"data_offsets":[0,8]}}',
      f32_bytes { 1, 2 })
    fails_with(function() st.load(p) end, "has too many elements")
  end)

  it('rejects offsets out of range', function()
    local p = craft('rev', '{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}', f32_bytes { 1, 2 })
    fails_with(function() st.load(p) end, p .. ": tensor 'w': data_offsets [8, 0] are out of range: begin exceeds end")
    p = craft('past', '{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}', f32_bytes { 1, 2 })
    fails_with(function() st.load(p) end, p .. ": bytes [0, 8) of the data section belong to no tensor")
    p = craft('past2', '{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},' ..
      '"z":{"dtype":"F32","shape":[0],"data_offsets":[100,100]}}', f32_bytes { 1, 2 })
    fails_with(function() st.load(p) end, p .. ": tensor 'z': data_offsets [100, 100] are out of range")
    p = craft('negoff', '{"w":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}', f32_bytes { 1, 2 })
    fails_with(function() st.load(p) end, ": tensor 'w': data_offsets [-8,0] are not two integers in [0, 2^53)")
    p = craft('threeoff', '{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8,16]}}', f32_bytes { 1, 2 })
    fails_with(function() st.load(p) end, "data_offsets [0,8,16] are not two integers in [0, 2^53)")
  end)

  it('rejects offsets that do not match the shape', function()
    local p = craft('mismatch', '{"conv1.weight":{"dtype":"F32","shape":[8,3,3,3],"data_offsets":[0,100]}}',
      string.rep('\0', 100))
    fails_with(function() st.load(p) end,
      p .. ": tensor 'conv1.weight' data_offsets [0, 100] do not match shape 8x3x3x3 of F32 (864 bytes)")
    p = craft('mismatch16', '{"h":{"dtype":"F16","shape":[3],"data_offsets":[0,12]}}', string.rep('\0', 12))
    fails_with(function() st.load(p) end, "tensor 'h' data_offsets [0, 12] do not match shape 3 of F16 (6 bytes)")
  end)

  it('rejects overlapping entries, holes and leftovers', function()
    local p = craft('overlap', '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},' ..
      '"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', f32_bytes { 1, 2, 3 })
    fails_with(function() st.load(p) end, p .. ": tensors 'a' [0, 8] and 'b' [4, 12] overlap")
    p = craft('same', '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},' ..
      '"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', f32_bytes { 1, 2 })
    fails_with(function() st.load(p) end, p .. ": tensors 'a' [0, 8] and 'b' [0, 8] overlap")
    p = craft('hole', '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},' ..
      '"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}', f32_bytes { 1, 2, 3 })
    fails_with(function() st.load(p) end, p .. ": bytes [4, 8) of the data section belong to no tensor")
    p = craft('extra', good, f32_bytes { 1, 2, 3 })
    fails_with(function() st.load(p) end, p .. ": 4 bytes after the last tensor's data belong to no tensor")
    p = craft('dup', '{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},' ..
      '"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', f32_bytes { 1, 2 })
    fails_with(function() st.load(p) end, p .. ": tensor 'w' appears twice in the header")
    p = craft('nodata', '{}', f32_bytes { 1 })
    fails_with(function() st.load(p) end, p .. ': 4 bytes of data but no tensors in the header')
  end)

  it('rejects a truncated data section', function()
    local path = tmpfile('trunc_src')
    st.save(path, { a = T.ones { 4 }, b = T.ones { 4 } })
    local s = read_bytes(path)
    local p = write_bytes(tmpfile('trunc'), s:sub(1, #s - 3))
    fails_with(function() st.load(p) end,
      p .. ": truncated: tensor 'b' data_offsets [16, 32] run past the end of the data section (29 bytes)")
  end)

  it('survives random damage: every load succeeds or fails with a message (fuzz, seed 20240501)', function()
    -- A valid file with several dtypes and metadata.
    local hdr = '{"__metadata__":{"format":"pt","k":"v"},' ..
        '"a.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},' ..
        '"b":{"dtype":"F64","shape":[2],"data_offsets":[24,40]},' ..
        '"c":{"dtype":"F16","shape":[1,2],"data_offsets":[40,44]},' ..
        '"d":{"dtype":"BF16","shape":[2],"data_offsets":[44,48]},' ..
        '"n":{"dtype":"I64","shape":[],"data_offsets":[48,56]}}'
    local data = f32_bytes { 1, 2, 3, 4, 5, 6 } .. f64_bytes { 7, 8 } .. u16_bytes { 0x3C00, 0x4000 } ..
        u16_bytes { 0x3F80, 0x4000 } .. u64(9)
    local valid = u64(#hdr) .. hdr .. data
    local base = st.load(write_bytes(tmpfile('fuzz_base'), valid), { skip = function(n) return n == 'n' end })
    assert.are.same({ 1, 2, 3, 4, 5, 6 }, base['a.weight']:totable())

    -- xorshift32, so the sequence does not depend on the Lua version
    local seed = 20240501
    local state = seed
    local function rand(n)
      state = bit.bxor(state, bit.lshift(state, 13))
      state = bit.bxor(state, bit.rshift(state, 17))
      state = bit.bxor(state, bit.lshift(state, 5))
      return (state % n + n) % n + 1 -- 1..n
    end
    local interesting = { '\0', '"', '{', '}', '[', ']', ',', ':', '-', '9', 'e', '\255', ' ', '\\' }
    local path = tmpfile('fuzz')
    local ok_count, err_count = 0, 0
    for iter = 1, 400 do
      local b = { valid:byte(1, -1) }
      local kind = rand(4)
      if kind == 1 then      -- flip random bits anywhere
        for _ = 1, rand(4) do
          local i = rand(#b)
          b[i] = bit.bxor(b[i], bit.lshift(1, rand(8) - 1))
        end
      elseif kind == 2 then  -- put JSON-significant characters into the header
        for _ = 1, rand(3) do b[8 + rand(#hdr)] = interesting[rand(#interesting)]:byte() end
      elseif kind == 3 then  -- truncate
        for _ = #b, rand(#b), -1 do b[#b] = nil end
      else                   -- damage the header length
        b[rand(8)] = rand(256) - 1
      end
      local bytes = {}
      for i = 1, #b, 4096 do bytes[#bytes + 1] = string.char(unpack(b, i, math.min(#b, i + 4095))) end
      write_bytes(path, table.concat(bytes))
      local ok, err = pcall(st.load, path, { skip = function(n) return n == 'n' end })
      if ok then
        ok_count = ok_count + 1
      else
        err_count = err_count + 1
        if not tostring(err):find(path, 1, true) and not tostring(err):find('does not convert', 1, true)
            and not tostring(err):find('has 5 dims', 1, true) and not tostring(err):find('is empty', 1, true) then
          error(('fuzz iteration %d (seed %d): unexpected error: %s'):format(iter, seed, tostring(err)))
        end
      end
    end
    assert.is_true(err_count > 100, 'seed ' .. seed .. ': too few damaged files were rejected')
    assert.is_true(ok_count > 0, 'seed ' .. seed .. ': no damaged file loaded (bit flips in data should)')
  end)
end)

describe('safetensors and networks', function()
  -- Parameters only: loading and saving need no nodes.
  local function small_net(seed, conv_shape)
    local b = nn.builder({ 3, 8, 8 })
    local stream = 0
    local function rnd(x)
      stream = stream + 1
      x:copy(T.randn(x:shape(), { seed = seed, stream = stream }))
    end
    b:param('conv1.weight', conv_shape or { 4, 3, 3, 3 }, 'weight', rnd)
    b:param('bn1.weight', { 4 }, 'weight', rnd)
    b:param('bn1.running_mean', { 4 }, 'buffer', rnd)
    b:param('bn1.running_var', { 4 }, 'buffer', rnd)
    b:param('fc.weight', { 10, 4 }, 'weight', rnd)
    b:param('fc.bias', { 10 }, 'weight', rnd)
    return b:build()
  end

  local function params_bits(net)
    local out = {}
    for _, p in ipairs(net:params()) do out[p.name] = bits(p.tensor) end
    return out
  end

  it('saves and loads every parameter, weights and buffers, bit-exactly', function()
    local a, b = small_net(1), small_net(2)
    assert.are_not.same(params_bits(a), params_bits(b))
    local path = tmpfile('net')
    st.save_net(a, path, { arch = 'small' })
    st.load_net(b, path)
    assert.are.same(params_bits(a), params_bits(b))
    local tensors, meta = st.load(path)
    assert.are.same({ arch = 'small' }, meta)
    assert.are.same({ 'bn1.running_mean', 'bn1.running_var', 'bn1.weight', 'conv1.weight', 'fc.bias', 'fc.weight' },
      st.open(path):names())
    assert.are.same(bits(a:param('bn1.running_mean')), bits(tensors['bn1.running_mean']))
  end)

  it('ignores num_batches_tracked, even when strict, and accepts F16/F64 weights', function()
    local a = small_net(3)
    local tensors = st.load((function()
      local p = tmpfile('net_src'); st.save_net(a, p); return p
    end)())
    -- rebuild the file by hand with an I64 counter and fc.bias as F64
    local names = {}
    for n in pairs(tensors) do names[#names + 1] = n end
    names[#names + 1] = 'bn1.num_batches_tracked'
    table.sort(names)
    local parts, data, off = {}, {}, 0
    for _, n in ipairs(names) do
      local dtype, bytes, shape
      if n == 'bn1.num_batches_tracked' then
        dtype, bytes, shape = 'I64', u64(17), {}
      elseif n == 'fc.bias' then
        dtype, bytes, shape = 'F64', f64_bytes(tensors[n]:totable()), tensors[n]:shape()
      else
        dtype, bytes, shape = 'F32', f32_bytes(tensors[n]:totable()), tensors[n]:shape()
      end
      parts[#parts + 1] = ('"%s":{"dtype":"%s","shape":[%s],"data_offsets":[%d,%d]}'):format(n, dtype,
        table.concat(shape, ','), off, off + #bytes)
      data[#data + 1] = bytes
      off = off + #bytes
    end
    local p = craft('net_mixed', '{' .. table.concat(parts, ',') .. '}', table.concat(data))
    local b = small_net(4)
    st.load_net(b, p, { strict = true })
    assert.are.same(params_bits(a), params_bits(b))
  end)

  it('names a missing parameter and leaves the network unchanged', function()
    local a = small_net(5)
    local path = tmpfile('missing')
    local tensors = {}
    for _, p in ipairs(a:params()) do if p.name ~= 'fc.bias' then tensors[p.name] = p.tensor end end
    st.save(path, tensors)
    local b = small_net(6)
    local before = params_bits(b)
    fails_with(function() st.load_net(b, path) end, "missing parameter 'fc.bias' in " .. path)
    assert.are.same(before, params_bits(b))
    tensors['bn1.weight'] = nil
    st.save(path, tensors)
    fails_with(function() st.load_net(b, path) end, "missing parameter 'bn1.weight' in " .. path .. ' (and 1 more)')
  end)

  it('names a misshaped parameter with both shapes and leaves the network unchanged', function()
    local path = tmpfile('shape')
    st.save_net(small_net(7, { 4, 3, 7, 7 }), path)
    local b = small_net(8)
    local before = params_bits(b)
    fails_with(function() st.load_net(b, path) end,
      path .. ': conv1.weight: shape 4x3x7x7 in file, 4x3x3x3 in the network')
    assert.are.same(before, params_bits(b))
  end)

  it('rejects extra tensors under strict, accepts them otherwise', function()
    local a = small_net(9)
    local path = tmpfile('extra')
    local tensors = {}
    for _, p in ipairs(a:params()) do tensors[p.name] = p.tensor end
    tensors['head.weight'] = T.ones { 3 }
    st.save(path, tensors)
    local b = small_net(10)
    local before = params_bits(b)
    fails_with(function() st.load_net(b, path, { strict = true }) end,
      path .. ": tensor 'head.weight' is not a parameter of the network (strict load)")
    fails_with(function() st.load_net(b, path) end, "'head.weight' is not a parameter")
    assert.are.same(before, params_bits(b))
    st.load_net(b, path, { strict = false })
    assert.are.same(params_bits(a), params_bits(b))
  end)

  it('refuses integer tensors in place of parameters', function()
    local hdr = '{"w":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}}'
    local p = craft('netint', hdr, u64(0))
    local b = nn.builder({ 2 })
    b:param('w', { 2 }, 'weight')
    local net = b:build()
    fails_with(function() st.load_net(net, p) end, p .. ": tensor 'w' has dtype I32, which does not convert")
  end)

  it('leaves the network unchanged when the last parameter fails to convert after the others did', function()
    -- parameters are loaded in the network's order; fc.weight comes last and is I32 in the file
    local a = small_net(11)
    local names, parts, data, off = {}, {}, {}, 0
    for _, p in ipairs(a:params()) do names[#names + 1] = p.name end
    table.sort(names)
    for _, n in ipairs(names) do
      local t = a:param(n)
      local dtype, bytes = 'F32', f32_bytes(t:totable())
      if n == 'fc.weight' then dtype = 'I32' end
      parts[#parts + 1] = ('"%s":{"dtype":"%s","shape":[%s],"data_offsets":[%d,%d]}'):format(n, dtype,
        table.concat(t:shape(), ','), off, off + #bytes)
      data[#data + 1] = bytes
      off = off + #bytes
    end
    local p = craft('net_last_bad', '{' .. table.concat(parts, ',') .. '}', table.concat(data))
    local b = small_net(12)
    assert.are.equal('fc.weight', b:params()[5].name)
    local before = params_bits(b)
    fails_with(function() st.load_net(b, p) end, p .. ": tensor 'fc.weight' has dtype I32, which does not convert")
    assert.are.same(before, params_bits(b))
  end)

  it('names a file tensor of more than 4 dims in place of a parameter', function()
    local p = craft('net5d', '{"w":{"dtype":"F32","shape":[1,1,1,1,2],"data_offsets":[0,8]}}', f32_bytes { 1, 2 })
    local b = nn.builder({ 2 })
    b:param('w', { 2 }, 'weight')
    fails_with(function() st.load_net(b:build(), p) end, p .. ": tensor 'w' has 5 dims; moreau handles at most 4")
  end)

  it('reads a scalar in the file into a parameter of shape {1}, and names a scalar that does not fit', function()
    local p = craft('netscalar', '{"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}', f32_bytes { 2.5 })
    local b = nn.builder({ 2 })
    b:param('s', { 1 }, 'weight')
    local net = b:build()
    st.load_net(net, p)
    assert.are.same({ 2.5 }, net:param('s'):totable())
    b = nn.builder({ 2 })
    b:param('s', { 2 }, 'weight')
    fails_with(function() st.load_net(b:build(), p) end, p .. ': s: shape scalar in file, 2 in the network')
  end)

  it('walks the parameters of a const network with mr_net_param_value (what save_net writes)', function()
    local net = small_net(13)
    local n = C.mr_net_param_count(core.handle(net))
    assert.are.equal(6, n)
    for i = 0, n - 1 do
      assert.is_true(C.mr_net_param_value(core.handle(net), i) == C.mr_net_param_get(core.handle(net), i))
    end
    assert.is_true(C.mr_net_param_value(core.handle(net), -1) == nil)
    assert.is_true(C.mr_net_param_value(core.handle(net), n) == nil)
    assert.is_true(C.mr_net_param_value(nil, 0) == nil)
  end)
end)

describe('NaN payloads (docs/sandbox.md, "NaN payloads")', function()
  -- LuaJIT (GC64) keeps object tags in NaN doubles; its FFI does not normalize
  -- a float it converts, so these float32 bit patterns would read in Lua as a
  -- forged string, table or userdata (0xFFAC0000, 0xFF900000, 0xFFF00000).
  local payloads = { 0xFFAC0000, 0xFF900000, 0xFFF00000, 0x7FC00001, 0xFFC00000 }
  local function bits_of(t)
    local p = ffi.cast('uint32_t *', t:data())
    local out = {}
    for i = 0, t:numel() - 1 do out[i + 1] = tonumber(p[i]) end
    return out
  end

  it('a file\'s NaNs load as the one plain NaN 0x7FC00000, F32 and BF16', function()
    local data = {}
    for _, b in ipairs(payloads) do
      data[#data + 1] = string.char(bit.band(b, 0xff), bit.band(bit.rshift(b, 8), 0xff),
        bit.band(bit.rshift(b, 16), 0xff), bit.band(bit.rshift(b, 24), 0xff))
    end
    local bf = {}
    for _, b in ipairs(payloads) do
      bf[#bf + 1] = string.char(bit.band(bit.rshift(b, 16), 0xff), bit.band(bit.rshift(b, 24), 0xff))
    end
    local header = '{"w":{"dtype":"F32","shape":[5],"data_offsets":[0,20]},' ..
      '"h":{"dtype":"BF16","shape":[5],"data_offsets":[20,30]}}'
    local t = st.load(craft('nanpayload', header, table.concat(data) .. table.concat(bf)))
    for _, name in ipairs { 'w', 'h' } do
      for i, b in ipairs(bits_of(t[name])) do
        assert.are.equal(0x7FC00000, b, ('%s[%d] from 0x%08X'):format(name, i, payloads[i]))
        local v = t[name]:get(i)
        assert.are.equal('number', type(v))
        assert.is_true(v ~= v)
      end
    end
  end)

  it('tensor reads towards Lua and writes from Lua buffers carry no payload', function()
    local t = T.zeros { 5 }
    local p = ffi.cast('uint32_t *', t:data())
    for i, b in ipairs(payloads) do p[i - 1] = b end
    for i = 1, 5 do
      local v = t:get(i)
      assert.are.equal('number', type(v), ('get(%d) of 0x%08X'):format(i, payloads[i]))
      assert.is_true(v ~= v)
    end
    for _, v in ipairs(t:totable()) do assert.are.equal('number', type(v)) end
    local f = core.floats(t)
    for i = 0, 4 do assert.are.equal('number', type(f[i])) end
    local buf = ffi.new('uint32_t[5]', payloads)
    local u = T.zeros { 5 }
    core.check(C.mr_tensor_write(core.handle(u), 0, ffi.cast('const float *', buf), 5))
    for i, b in ipairs(bits_of(u)) do assert.are.equal(0x7FC00000, b, ('write of 0x%08X'):format(payloads[i])) end
  end)
end)
