-- Loaders with budgets (issue 13, deliverable 4): image and IDX headers that
-- declare more than the loader budget or more than the file can hold are
-- refused before anything is allocated; the two image over-reads (16-bit PNM
-- converted to another channel count, a 0x0 image resized) and the IDX size
-- overflow are regression-tested here. Every bomb is built by the test.
local ffi = require 'ffi'
local core = require 'moreau.core'
local T = require 'moreau.tensor'
local data = require 'moreau.data'
local C = core.C
local assert_error_with = require('helpers.asserts').error_with

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local tmp
local path, write, read = require('helpers.files').in_dir(function() return tmp end)

local function le16(v) return string.char(v % 256, math.floor(v / 256) % 256) end
local function le32(v) return le16(v % 65536) .. le16(math.floor(v / 65536)) end
local function be16(v) return string.char(math.floor(v / 256) % 256, v % 256) end
local function be32(v) return be16(math.floor(v / 65536)) .. be16(v % 65536) end
-- CRC-32 of PNG chunks (ISO 3309, reflected polynomial 0xEDB88320).
local function crc32(s)
  local bit = require 'bit'
  local c = 0xFFFFFFFF
  for i = 1, #s do
    c = bit.bxor(c, s:byte(i))
    for _ = 1, 8 do
      c = bit.band(c, 1) == 1 and bit.bxor(bit.rshift(c, 1), 0xEDB88320) or bit.rshift(c, 1)
    end
  end
  c = bit.bnot(c)
  return c < 0 and c + 2 ^ 32 or c
end
local function pad(s, n) assert(#s <= n) return s .. string.rep('\0', n - #s) end

local BUDGET = 256 * 1024 * 1024

setup(function()
  local p = assert(io.popen('mktemp -d'))
  tmp = p:read('*l')
  p:close()
  assert(tmp and #tmp > 0, 'mktemp -d failed')
end)

teardown(function()
  data.set_loader_budget(nil)
  if tmp then os.execute('rm -rf ' .. shell_quote(tmp)) end
end)

describe('the loader budget', function()
  it('defaults to 256 MiB, is set from Lua and C, and 0 or nil restores the default', function()
    assert.are.equal(BUDGET, data.loader_budget())
    assert.are.equal(BUDGET, tonumber(C.MR_LOADER_BUDGET_MIB) * 2 ^ 20)
    assert.are.equal(4096, data.set_loader_budget(4096))
    assert.are.equal(4096, tonumber(C.mr_get_loader_budget()))
    assert.are.equal(0, C.mr_set_loader_budget(0))
    assert.are.equal(BUDGET, data.loader_budget())
    data.set_loader_budget(100)
    assert.are.equal(BUDGET, data.set_loader_budget(nil))
    assert_error_with(function() data.set_loader_budget(-1) end,
      'data.set_loader_budget: bytes must be an integer in [0, 2^62), got -1')
  end)

  it('applies to images as loaded and as resized', function()
    data.save_png(path('small.png'), T.full({ 1, 3, 16, 16 }, 0.5))
    data.set_loader_budget(3000)
    assert_error_with(function() data.load_image(path('small.png')) end,
      "mr_image_load: '" .. path('small.png') .. "' declares a 16x16 image of 3 channels (3072 bytes as "
      .. 'float32 samples), over the loader budget of 3000 bytes (mr_set_loader_budget)')
    data.set_loader_budget(10000)
    assert.are.same({ 1, 3, 16, 16 }, data.load_image(path('small.png')):shape())
    assert_error_with(function() data.load_image(path('small.png'), { size = { 30, 30 } }) end,
      "mr_image_load: resizing '" .. path('small.png') .. "' to 30x30 with 3 channels needs 10800 bytes, "
      .. 'over the loader budget of 10000 bytes')
    data.set_loader_budget(nil)
    assert.are.same({ 1, 3, 30, 30 }, data.load_image(path('small.png'), { size = { 30, 30 } }):shape())
  end)
end)

describe('image bombs', function()
  local function over_budget(f, h, w, c, bytes)
    local err = assert_error_with(function() data.load_image(f) end,
      ("mr_image_load: '%s' declares a %dx%d image of %d channel%s (%s bytes as float32 samples), "
        .. 'over the loader budget of %d bytes'):format(f, h, w, c, c == 1 and '' or 's', bytes, BUDGET))
    return err
  end

  it('a 19-byte PGM header declaring 99999x99999', function()
    local f = write('bomb.pgm', 'P5\n99999 99999\n255\n')
    assert.are.equal(19, #read(f))
    over_budget(f, 99999, 99999, 1, '39999200004')
  end)

  -- GIF and BMP are refused by name before their headers are read: no
  -- decoder of either is reachable from a file
  local function refused(f, kind)
    assert_error_with(function() data.load_image(f) end,
      ("mr_image_load: '%s' is a %s file, which the loader refuses: it reads PNG, JPEG and binary PNM "
        .. '(P5, P6); convert the image to PNG (lossless) first'):format(f, kind))
  end

  it('a 54-byte BMP declaring 30000x30000 RGB: BMP is refused', function()
    local bmp = 'BM' .. le32(54) .. le32(0) .. le32(54)
      .. le32(40) .. le32(30000) .. le32(30000) .. le16(1) .. le16(24) .. le32(0) .. le32(0)
      .. le32(2835) .. le32(2835) .. le32(0) .. le32(0)
    local f = write('bomb.bmp', bmp)
    assert.are.equal(54, #bmp)
    refused(f, 'BMP')
  end)

  it('a 47-byte GIF declaring 65535x65535: GIF is refused', function()
    local f = write('bomb.gif', pad('GIF89a' .. le16(65535) .. le16(65535) .. '\0\0\0', 47))
    refused(f, 'GIF')
    refused(write('bomb87.gif', pad('GIF87a' .. le16(65535) .. le16(65535) .. '\0\0\0', 47)), 'GIF')
  end)

  it('a 320-byte JPEG declaring 65535x65535 RGB', function()
    local sof = '\255\216' .. '\255\192' .. be16(17) .. '\8' .. be16(65535) .. be16(65535) .. '\3'
      .. '\1\17\0' .. '\2\17\0' .. '\3\17\0'
    local f = write('bomb.jpg', pad(sof, 320))
    over_budget(f, 65535, 65535, 3, '51538034700')
  end)

  it('an 18-byte TGA: the format is unknown, no decoder reads it', function()
    local tga = '\0\0\2' .. string.rep('\0', 5) .. le16(0) .. le16(0) .. le16(65535) .. le16(65535) .. '\24\0'
    assert.are.equal(18, #tga)
    local f = write('bomb.tga', tga)
    assert_error_with(function() data.load_image(f) end,
      "mr_image_load: '" .. f .. "' is not a readable image: unknown image type (the loader reads PNG, "
      .. 'JPEG and binary PNM (P5, P6))')
  end)

  it('headers within the budget but more than the file can hold', function()
    local f = write('thin.pgm', 'P5\n1000 1000\n255\n\0\0')
    assert_error_with(function() data.load_image(f) end,
      "mr_image_load: '" .. f .. "' declares a 1000x1000 PNM image, which needs at least 1000000 bytes "
      .. 'of samples, but the file has 19 bytes')
    local sof = '\255\216' .. '\255\192' .. be16(11) .. '\8' .. be16(8000) .. be16(8000) .. '\1' .. '\1\17\0'
    local j = write('thin.jpg', pad(sof, 320))
    assert_error_with(function() data.load_image(j) end,
      "'" .. j .. "' declares a 8000x8000 JPEG image, which needs at least 62500 bytes at JPEG's 1024 "
      .. 'pixels per byte, but the file has 320 bytes')
    -- a PNG whose IHDR says 8000x8000 grey (1 bit): deflate's 1032:1 and 8
    -- pixels per byte need floor(64000000 / 8256) = 7751 bytes
    local ihdr = 'IHDR' .. be32(8000) .. be32(8000) .. '\1\0\0\0\0'
    local p = write('thin.png', '\137PNG\r\n\26\n' .. be32(13) .. ihdr .. be32(crc32(ihdr)) .. string.rep('\0', 100))
    assert_error_with(function() data.load_image(p) end,
      "'" .. p .. "' declares a 8000x8000 PNG image, which needs at least 7751 bytes at deflate's "
      .. '8256 pixels per byte, but the file has 133 bytes')
  end)
end)

describe('image over-reads', function()
  -- A 16-bit PPM / PGM (maxval 65535, samples big-endian).
  local function pnm16(kind, w, h, samples)
    local t = {}
    for i, v in ipairs(samples) do t[i] = be16(v) end
    return ('P%d\n%d %d\n65535\n'):format(kind, w, h) .. table.concat(t)
  end
  local function f32(v) return tonumber(ffi.new('float', v)) end

  it('a 16-bit PPM converted to grey and to RGBA: stb_image\'s conversion, no over-read', function()
    local w, h = 24, 16
    local s = {}
    for i = 0, w * h * 3 - 1 do s[#s + 1] = (i * 7919 + 13) % 65536 end
    local f = write('rgb16.ppm', pnm16(6, w, h, s))
    -- the conversions first: before the fix they read past stb's buffer (ASan)
    local g = data.load_image(f, { channels = 1 })
    local rgba = data.load_image(f, { channels = 4 })
    local rgb = data.load_image(f)
    assert.are.same({ 1, 3, h, w }, rgb:shape())
    -- samples are big-endian in the file (stb 2.27 left them byte-swapped)
    assert.are.equal(f32(s[1] / 65535), rgb:get(1, 1, 1, 1))
    assert.are.same({ 1, 1, h, w }, g:shape())
    for y = 1, h do
      for x = 1, w do
        local k = ((y - 1) * w + (x - 1)) * 3
        local r, gg, b = s[k + 1], s[k + 2], s[k + 3]
        local luma = math.floor((r * 77 + gg * 150 + b * 29) / 256)
        assert.are.equal(f32(luma / 65535), g:get(1, 1, y, x))
        assert.are.equal(f32(b / 65535), rgba:get(1, 3, y, x))
        assert.are.equal(1, rgba:get(1, 4, y, x))
      end
    end
    -- and resized after the conversion
    assert.are.same({ 1, 2, 5, 7 }, data.load_image(f, { channels = 2, size = { 5, 7 } }):shape())
  end)

  it('a 16-bit PGM converted to RGB', function()
    local f = write('grey16.pgm', pnm16(5, 3, 2, { 0, 65535, 32768, 1, 2, 40000 }))
    local x = data.load_image(f, { channels = 3 })
    assert.are.same({ 1, 3, 2, 3 }, x:shape())
    for k = 1, 3 do
      assert.are.equal(f32(40000 / 65535), x:get(1, k, 2, 3))
      assert.are.equal(1, x:get(1, k, 1, 2))
    end
  end)

  it('a 0x0 image is refused, resized or not', function()
    local f = write('empty.pgm', 'P5\n0')
    assert.are.equal(4, #read(f))
    local msg = "mr_image_load: '" .. f .. "' declares a 0x0 image with 1 channels: an image needs at "
      .. 'least one pixel and 1..4 channels'
    assert_error_with(function() data.load_image(f, { size = { 8, 8 } }) end, msg)
    assert_error_with(function() data.load_image(f) end, msg)
    local g = write('zero-height.pgm', 'P5\n5 0\n255\n')
    assert_error_with(function() data.load_image(g, { size = { 2, 2 } }) end, 'declares a 0x5 image')
  end)
end)

describe('IDX bombs', function()
  local function idx_header(count, rows, cols) return be32(0x803) .. be32(count) .. be32(rows) .. be32(cols) end
  local function gzip(p)
    assert(os.execute('gzip -kf ' .. shell_quote(p)) == 0, 'gzip failed')
    return p .. '.gz'
  end

  it('a small gzip declaring 16 GB of pixels is refused before decompressing', function()
    -- 1000000 images of 128x128: 16.4 GB of bytes, 65.5 GB as floats; the
    -- data is 1 MB of zeros, which gzip packs into about 1 kB
    local f = write('bomb-idx', idx_header(1000000, 128, 128) .. string.rep('\0', 1048576))
    local gz = gzip(f)
    assert.is_true(#read(gz) < 4096)
    assert_error_with(function() data.load_idx_images(gz) end,
      "mr_idx_load_images: '" .. gz .. "' declares 1000000 images of 128x128, 65536000000 bytes loaded, "
      .. 'over the loader budget of 268435456 bytes (mr_set_loader_budget)')
  end)

  it('a declared size within the budget but more than the file can hold', function()
    local f = write('thin-idx', idx_header(100, 256, 256) .. string.rep('\0', 20000))
    local gz = gzip(f)
    local n = #read(gz)
    assert_error_with(function() data.load_idx_images(gz) end,
      ("'%s' declares 100 images of 256x256, 6553600 bytes of data, more than its %d gzip bytes can "
        .. 'hold (deflate expands at most 1032:1)'):format(gz, n))
    -- a plain file costs no more than its size: its shortfall is reported with the counts
    assert_error_with(function() data.load_idx_images(f) end,
      "'" .. f .. "' is truncated: the header promises 100 images of 256x256, 6553600 bytes")
    local l = write('thin-labels', be32(0x801) .. be32(4000000) .. '\1\2\3')
    local lz = gzip(l)
    assert_error_with(function() data.load_idx_labels(lz) end,
      ("mr_idx_load_labels: '%s' declares 4000000 labels, 4000000 bytes of data, more than its %d gzip bytes")
        :format(lz, #read(lz)))
    data.set_loader_budget(1000)
    assert_error_with(function() data.load_idx_labels(l) end,
      'declares 4000000 labels, 16000000 bytes loaded, over the loader budget of 1000 bytes')
    data.set_loader_budget(nil)
  end)

  it('sides whose product overflows int64 are refused (UBSan flagged the old product)', function()
    local f = write('overflow-idx', idx_header(1, 4294967295, 4294967295))
    assert_error_with(function() data.load_idx_images(f) end,
      "'" .. f .. "': absurd size in the header: 1 images of 4294967295x4294967295")
  end)

  it('real-sized files still load', function()
    local f = write('ok-idx', idx_header(3, 28, 28) .. string.rep('\7', 3 * 784))
    assert.are.same({ 3, 1, 28, 28 }, data.load_idx_images(gzip(f)):shape())
  end)
end)

describe('inputs the fuzzers found (engine/fuzz/regressions)', function()
  -- stb_image 2.27 (which decoded JPEG here before libjpeg-turbo) wrote past
  -- its Huffman size table when a DHT segment's 16 code counts add up to more
  -- than 256; libjpeg refuses such a table, and a table cut short by the end
  -- of the file, and the loader passes its message on.
  local dir = core.root .. '/engine/fuzz/regressions/image'
  -- (the first one's DHT segment is longer than its tables: libjpeg names the length)
  for name, msg in pairs { ['jpeg_huffman_overflow_1.jpg'] = 'Bogus marker length',
    ['jpeg_huffman_overflow_2.jpg'] = 'Bogus Huffman table definition' } do
    it('refuses ' .. name .. ' with libjpeg\'s message', function()
      assert_error_with(function() data.load_image(dir .. '/' .. name) end,
        "/" .. name .. "' is not a readable image: " .. msg)
    end)
  end

  it('refuses jpeg_huffman_truncated.jpg: a table cut short, which stb would complete with zeros', function()
    assert_error_with(function() data.load_image(dir .. '/jpeg_huffman_truncated.jpg') end,
      "jpeg_huffman_truncated.jpg' is not a readable image: Premature end of JPEG file")
  end)

  it('refuses pnm_width_overflow.ppm: a width of 100 digits', function()
    assert_error_with(function() data.load_image(dir .. '/pnm_width_overflow.ppm') end,
      "its PNM width has more than 9 digits")
  end)

  it('refuses a PGM whose maximum value overflows an int, after a comment, built here', function()
    local file = write('maxval.pgm', 'P5\n# a comment\n2 2\n99999999999\n' .. string.rep('\0', 4))
    assert_error_with(function() data.load_image(file) end, "its PNM maximum value has more than 9 digits")
  end)

  it('refuses a JPEG whose Huffman table holds 265 symbols, built here', function()
    -- SOI, then one DHT segment: class/id 0x00, counts 0..0, 10 of length 15, 255 of length 16
    local counts = string.rep('\0', 14) .. string.char(10, 255)
    local symbols = string.rep('\1', 265)
    local dht = '\255\196' .. be16(2 + 17 + #symbols) .. '\0' .. counts .. symbols
    local file = write('huffman.jpg', '\255\216' .. dht .. '\255\217')
    assert_error_with(function() data.load_image(file) end,
      "huffman.jpg' is not a readable image: Bogus Huffman table definition")
  end)

  it('still reads a valid JPEG', function()
    local seed = read(core.root .. '/engine/fuzz/corpus/image/jpeg_rgb_000000')
    local file = write('ok.jpg', seed:sub(4))
    local img = data.load_image(file)
    assert.are.same({ 1, 3, 2, 3 }, img:shape())
  end)
end)
