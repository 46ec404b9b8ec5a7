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
      "mr_image_load: '" .. path('small.png') .. "' declares an image 16 wide x 16 high of 3 channels (3072 bytes as "
      .. 'float32 samples), over the loader budget of 3000 bytes (mr_set_loader_budget)')
    data.set_loader_budget(10000)
    assert.are.same({ 1, 3, 16, 16 }, data.load_image(path('small.png')):shape())
    assert_error_with(function() data.load_image(path('small.png'), { size = { 30, 30 } }) end,
      "mr_image_load: resizing '" .. path('small.png') .. "' to 30 wide x 30 high with 3 channels needs 10800 bytes, "
      .. 'over the loader budget of 10000 bytes')
    data.set_loader_budget(nil)
    assert.are.same({ 1, 3, 30, 30 }, data.load_image(path('small.png'), { size = { 30, 30 } }):shape())
  end)
end)

describe('image bombs', function()
  local function over_budget(f, h, w, c, bytes)
    local err = assert_error_with(function() data.load_image(f) end,
      ("mr_image_load: '%s' declares an image %d wide x %d high of %d channel%s (%s bytes as float32 "
        .. 'samples), over the loader budget of %d bytes'):format(f, w, h, c, c == 1 and '' or 's', bytes, BUDGET))
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
      "mr_image_load: '" .. f .. "' declares a PNM image 1000 wide x 1000 high, which needs at least 1000000 bytes "
      .. 'of samples, but the file has 19 bytes')
    local sof = '\255\216' .. '\255\192' .. be16(11) .. '\8' .. be16(8000) .. be16(8000) .. '\1' .. '\1\17\0'
    local j = write('thin.jpg', pad(sof, 320))
    assert_error_with(function() data.load_image(j) end,
      "'" .. j .. "' declares a JPEG image 8000 wide x 8000 high, which needs at least 62500 bytes at JPEG's 1024 "
      .. 'pixels per byte, but the file has 320 bytes')
    -- a PNG whose IHDR says 8000x8000 grey (1 bit): deflate's 1032:1 and 8
    -- pixels per byte need floor(64000000 / 8256) = 7751 bytes
    local ihdr = 'IHDR' .. be32(8000) .. be32(8000) .. '\1\0\0\0\0'
    local p = write('thin.png', '\137PNG\r\n\26\n' .. be32(13) .. ihdr .. be32(crc32(ihdr)) .. string.rep('\0', 100))
    assert_error_with(function() data.load_image(p) end,
      "'" .. p .. "' declares a PNG image 8000 wide x 8000 high, which needs at least 7751 bytes at deflate's "
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
    local msg = "mr_image_load: '" .. f .. "' declares an image 0 wide x 0 high with 1 channel: an image "
      .. 'needs at least one pixel and 1..4 channels'
    assert_error_with(function() data.load_image(f, { size = { 8, 8 } }) end, msg)
    assert_error_with(function() data.load_image(f) end, msg)
    local g = write('zero-height.pgm', 'P5\n5 0\n255\n')
    assert_error_with(function() data.load_image(g, { size = { 2, 2 } }) end, 'declares an image 5 wide x 0 high')
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

  it('resizes resize_72_to_50_rows.pgm: stb_image_resize\'s weight-sum assertion no longer aborts', function()
    -- the fuzzer asked for 4 channels at 50x3; stb asserted that the filter
    -- weights of an output row sum to less than 1.1 before normalizing them
    local x = data.load_image(dir .. '/resize_72_to_50_rows.pgm', { channels = 4, size = { 50, 3 } })
    assert.are.same({ 1, 4, 50, 3 }, x:shape())
    assert.is_true(x:min() >= 0 and x:max() <= 1)
    -- the normalization after the assertion is right: a constant image stays constant
    local flat = write('flat72.pgm', 'P5\n1 72\n255\n' .. string.rep('\51', 72))
    local y = data.load_image(flat, { size = { 50, 1 } })
    assert.is_true(math.abs(y:min() - 51 / 255) < 1e-6 and math.abs(y:max() - 51 / 255) < 1e-6)
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

describe('the decoders: libpng, libjpeg-turbo and the PNM reader', function()
  local function f32(v) return tonumber(ffi.new('float', v)) end

  -- A zlib stream of stored (uncompressed) deflate blocks (RFC 1950, 1951).
  local function zlib_stored(s)
    local bit = require 'bit'
    local a, b = 1, 0
    for i = 1, #s do
      a = (a + s:byte(i)) % 65521
      b = (b + a) % 65521
    end
    local t, i = { '\120\1' }, 1
    repeat
      local piece = s:sub(i, i + 65534)
      i = i + #piece
      t[#t + 1] = string.char(i > #s and 1 or 0) .. le16(#piece) .. le16(bit.band(bit.bnot(#piece), 0xFFFF)) .. piece
    until i > #s
    t[#t + 1] = be16(b) .. be16(a)
    return table.concat(t)
  end
  local function chunk(kind, body) return be32(#body) .. kind .. body .. be32(crc32(kind .. body)) end
  -- A PNG of the given rows (each a string of samples; filter 0 is added).
  local function png(w, h, depth, color_type, rows, extra)
    local raw = {}
    for i, r in ipairs(rows) do raw[i] = '\0' .. r end
    return '\137PNG\r\n\26\n' .. chunk('IHDR', be32(w) .. be32(h) .. string.char(depth, color_type, 0, 0, 0))
      .. (extra or '') .. chunk('IDAT', zlib_stored(table.concat(raw))) .. chunk('IEND', '')
  end

  it('a grey PNG with a tRNS chunk gains an alpha channel: 0 where the grey is the transparent one', function()
    local f = write('grey-trns.png', png(3, 2, 8, 0, { '\10\20\30', '\20\20\40' }, chunk('tRNS', be16(20))))
    local x = data.load_image(f)
    assert.are.same({ 1, 2, 2, 3 }, x:shape())
    assert.are.same({ f32(10 / 255), f32(20 / 255), f32(30 / 255), f32(20 / 255), f32(20 / 255), f32(40 / 255),
      1, 0, 1, 0, 0, 1 }, x:totable())
    -- asked for grey, the alpha is dropped
    assert.are.same({ 1, 1, 2, 3 }, data.load_image(f, { channels = 1 }):shape())
  end)

  it('a 16-bit grey PNG with tRNS: samples / 65535, alpha 0 or 1', function()
    local f = write('grey16-trns.png', png(2, 1, 16, 0, { be16(4660) .. be16(65535) }, chunk('tRNS', be16(4660))))
    assert.are.same({ f32(4660 / 65535), 1, 0, 1 }, data.load_image(f):totable())
  end)

  it('1, 2 and 4-bit grey and palette PNGs expand exactly', function()
    -- 2-bit grey 0, 1, 2, 3 -> 0, 85, 170, 255
    local g = write('grey2.png', png(4, 1, 2, 0, { string.char(0x1B) }))
    assert.are.same({ 0, f32(85 / 255), f32(170 / 255), 1 }, data.load_image(g):totable())
    -- a 1-bit palette of two colours, and a tRNS making the first transparent
    local p = write('pal1.png', png(2, 1, 1, 3, { string.char(0x40) },
      chunk('PLTE', '\255\0\0\0\0\255') .. chunk('tRNS', '\0')))
    assert.are.same({ 1, 0, 0, 0, 0, 1, 0, 1 }, data.load_image(p):totable()) -- R, G, B, A planes
  end)

  it('a corrupt PNG fails with libpng\'s message, a PNG bomb before its rows are allocated', function()
    local ok = png(2, 2, 8, 0, { '\1\2', '\3\4' })
    assert.are.same({ 1, 1, 2, 2 }, data.load_image(write('ok.png', ok)):shape())
    local crc = write('bad-crc.png', ok:sub(1, 29) .. '\0' .. ok:sub(31))
    assert_error_with(function() data.load_image(crc) end, "bad-crc.png' is not a readable image: IHDR: CRC error")
    local short = write('short-idat.png', png(2, 3, 8, 0, { '\1\2', '\3\4' }))
    assert_error_with(function() data.load_image(short) end, "short-idat.png' is not a readable image: Not enough image data")
    local bomb = write('bomb.png', png(60000, 60000, 1, 0, { '' }))
    assert_error_with(function() data.load_image(bomb) end,
      "bomb.png' declares an image 60000 wide x 60000 high of 1 channel (14400000000 bytes as float32 samples), over the loader budget")
  end)

  it('a PNM sample s is s / maxval; a sample over maxval and a bad header are refused', function()
    local f = write('max100.pgm', 'P5\n3 1\n100\n\0\50\100')
    assert.are.same({ 0, f32(50 / 100), 1 }, data.load_image(f):totable())
    assert_error_with(function() data.load_image(write('over.pgm', 'P5\n3 1\n100\n\0\101\100')) end,
      "over.pgm' is not a readable image: PNM sample 1 is 101, over the maximum value 100")
    assert_error_with(function() data.load_image(write('max0.pgm', 'P5\n3 1\n0\n\0\0\0')) end,
      'its PNM maximum value is 0, not in 1..65535')
    assert_error_with(function() data.load_image(write('max70000.pgm', 'P5\n1 1\n70000\n\0\0\0\0')) end,
      'its PNM maximum value is 70000, not in 1..65535')
    assert_error_with(function() data.load_image(write('nosep.pgm', 'P5\n1 1\n255x\0')) end,
      'its PNM header does not end with one whitespace character after the maximum value')
    -- the header fits the file-size check, the samples stop short
    assert_error_with(function() data.load_image(write('cut.ppm', 'P6\n2 2\n255\n' .. string.rep('\1', 11))) end,
      "cut.ppm' is not a readable image: its PNM samples end after 11 of 12 bytes (from byte offset 11)")
  end)

  -- Decoded by PIL 9.4 (libjpeg-turbo) from the same bytes, with the script
  -- below (Python, numpy; noise on gradients, quality 95, 4:2:2 chroma; and
  -- its first 8 columns as CMYK, quality 90):
  --   im = Image.open(io.BytesIO(b)); np.asarray(im.convert('RGB')).transpose(2, 0, 1).ravel()
  --   im.draft('L', im.size); np.asarray(im).ravel()   -- the luma Y, no chroma decoded
  -- stb_image 2.27, which decoded JPEG here before, was up to 117 levels off
  -- on the 4:2:2 image.
  local J422 = '\255\216\255\224\000\016JFIF\000\001\001\000\000\001\000\001\000\000\255\219\000C' ..
      '\000\002\001\001\001\001\001\002\001\001\001\002\002\002\002\002\004\003\002\002\002\002\005\004' ..
      '\004\003\004\006\005\006\006\006\005\006\006\006\007\009\008\006\007\009\007\006\006\008\011\008' ..
      '\009\010\010\010\010\010\006\008\011\012\011\010\012\009\010\010\010\255\219\000C\001\002\002' ..
      '\002\002\002\002\005\003\003\005\010\007\006\007\010\010\010\010\010\010\010\010\010\010\010\010' ..
      '\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010' ..
      '\010\010\010\010\010\010\010\010\010\010\010\010\010\010\255\192\000\017\008\000\008\000\016\003' ..
      '\001!\000\002\017\001\003\017\001\255\196\000\031\000\000\001\005\001\001\001\001\001\001\000' ..
      '\000\000\000\000\000\000\000\001\002\003\004\005\006\007\008\009\010\011\255\196\000\181\016\000' ..
      '\002\001\003\003\002\004\003\005\005\004\004\000\000\001}\001\002\003\000\004\017\005\018!' ..
      '1A\006\019Qa\007"q\0202\129\145\161\008#B\177\193\021R\209\240$' ..
      '3br\130\009\010\022\023\024\025\026%&\039()*456789:' ..
      'CDEFGHIJSTUVWXYZcdefghij' ..
      'stuvwxyz\131\132\133\134\135\136\137\138\146\147\148\149\150\151\152\153' ..
      '\154\162\163\164\165\166\167\168\169\170\178\179\180\181\182\183\184\185\186\194\195\196\197\198' ..
      '\199\200\201\202\210\211\212\213\214\215\216\217\218\225\226\227\228\229\230\231\232\233\234\241' ..
      '\242\243\244\245\246\247\248\249\250\255\196\000\031\001\000\003\001\001\001\001\001\001\001\001' ..
      '\001\000\000\000\000\000\000\001\002\003\004\005\006\007\008\009\010\011\255\196\000\181\017\000' ..
      '\002\001\002\004\004\003\004\007\005\004\004\000\001\002w\000\001\002\003\017\004\005!1' ..
      '\006\018AQ\007aq\019"2\129\008\020B\145\161\177\193\009#3R\240\021' ..
      'br\209\010\022$4\225%\241\023\024\025\026&\039()*56789' ..
      ':CDEFGHIJSTUVWXYZcdefghi' ..
      'jstuvwxyz\130\131\132\133\134\135\136\137\138\146\147\148\149\150\151' ..
      '\152\153\154\162\163\164\165\166\167\168\169\170\178\179\180\181\182\183\184\185\186\194\195\196' ..
      '\197\198\199\200\201\202\210\211\212\213\214\215\216\217\218\226\227\228\229\230\231\232\233\234' ..
      '\242\243\244\245\246\247\248\249\250\255\218\000\012\003\001\000\002\017\003\017\000?\000\230' ..
      '~(~\212Z\174\185$\250\022\155\012q\009v\162\013-d\006XdR\026' ..
      'F\132\182\004\131).epy\194\134\001\141y\022\161\227\029\127S\183e\212' ..
      '\245\171\150\135\237/&\196\153J\169bX"\200\020\030\140\225R<\245e\192' ..
      '\024\003\233\178,\139\011\151a\160\166\165\236\161\167\218\135#\165\255\000.\233+' ..
      '\190Oe\204\253\165G\207\245w+~\2470\171\023\031\2443\232\203\244f\200' ..
      '<,\200ibq\024x\172CQ\127\013\158\169k=\185\158\233&\154kg' ..
      '\202\156\165\255\217'
  local J422_RGB = { 41, 25, 37, 52, 55, 68, 78, 92, 121, 152, 181, 184, 220, 204, 231, 224, 59, 80, 100, 103, 95, 132, 157, 143, 172, 124, 182, 207, 226, 236, 240, 254, 96, 118, 111, 125, 158, 156, 190, 161, 194, 204, 212, 246, 226, 243, 248, 255, 87, 111, 122, 164, 171, 145, 186, 204, 222, 219, 253, 255, 254, 252, 254, 255, 162, 126, 149, 145, 176, 198, 217, 255, 247, 255, 254, 252, 254, 255, 251, 255, 166, 176, 201, 203, 255, 236, 217, 245, 248, 250, 251, 255, 244, 251, 255, 255, 182, 206, 221, 230, 212, 246, 246, 255, 255, 255, 250, 254, 253, 255, 255, 240, 231, 255, 242, 255, 255, 251, 255, 255, 254, 255, 255, 255, 255, 244, 241, 255, 243, 216, 213, 214, 207, 199, 176, 142, 111, 101, 106, 80, 82, 37, 42, 25, 219, 219, 201, 170, 134, 139, 128, 89, 112, 45, 79, 69, 53, 29, 4, 4, 192, 204, 180, 156, 139, 98, 114, 55, 47, 19, 0, 9, 0, 6, 1, 4, 146, 144, 102, 119, 127, 71, 55, 36, 39, 16, 25, 14, 7, 0, 0, 0, 134, 88, 89, 57, 55, 40, 25, 44, 3, 0, 0, 0, 3, 7, 0, 3, 111, 86, 47, 12, 63, 27, 0, 6, 5, 0, 0, 11, 0, 0, 1, 0, 50, 62, 52, 38, 0, 11, 0, 4, 1, 7, 0, 0, 0, 8, 16, 0, 14, 31, 0, 0, 2, 0, 4, 4, 0, 0, 0, 0, 14, 0, 0, 10, 59, 58, 102, 157, 212, 207, 129, 105, 145, 160, 145, 105, 97, 83, 160, 178, 85, 126, 185, 163, 67, 69, 114, 112, 148, 77, 83, 102, 158, 147, 68, 42, 216, 193, 99, 76, 125, 123, 144, 95, 101, 120, 171, 185, 80, 74, 116, 143, 56, 89, 113, 158, 154, 104, 107, 123, 166, 133, 76, 60, 112, 152, 189, 208, 182, 137, 140, 115, 122, 135, 162, 168, 54, 44, 98, 148, 194, 186, 106, 86, 134, 122, 109, 108, 199, 155, 58, 61, 89, 128, 182, 179, 75, 69, 137, 164, 71, 111, 155, 141, 40, 54, 92, 149, 196, 179, 69, 61, 131, 157, 129, 84, 189, 170, 58, 54, 116, 162, 209, 189, 88, 78, 138, 161, 154, 110, 87, 95 }
  local JCMYK = '\255\216\255\238\000\014Adobe\000d\000\000\000\000\000\255\219\000C\000\003' ..
      '\002\002\003\002\002\003\003\003\003\004\003\003\004\005\008\005\005\004\004\005\010\007\007\006' ..
      '\008\012\010\012\012\011\010\011\011\013\014\018\016\013\014\017\014\011\011\016\022\016\017\019' ..
      '\020\021\021\021\012\015\023\024\022\020\024\018\020\021\020\255\192\000\020\008\000\008\000\008' ..
      '\004C\017\000M\017\000Y\017\000K\017\000\255\196\000\031\000\000\001\005\001\001\001' ..
      '\001\001\001\000\000\000\000\000\000\000\000\001\002\003\004\005\006\007\008\009\010\011\255\196' ..
      '\000\181\016\000\002\001\003\003\002\004\003\005\005\004\004\000\000\001}\001\002\003\000\004' ..
      '\017\005\018!1A\006\019Qa\007"q\0202\129\145\161\008#B\177\193\021' ..
      'R\209\240$3br\130\009\010\022\023\024\025\026%&\039()*456' ..
      '789:CDEFGHIJSTUVWXYZcdef' ..
      'ghijstuvwxyz\131\132\133\134\135\136\137\138\146\147\148\149' ..
      '\150\151\152\153\154\162\163\164\165\166\167\168\169\170\178\179\180\181\182\183\184\185\186\194' ..
      '\195\196\197\198\199\200\201\202\210\211\212\213\214\215\216\217\218\225\226\227\228\229\230\231' ..
      '\232\233\234\241\242\243\244\245\246\247\248\249\250\255\218\000\014\004C\000M\000Y\000' ..
      'K\000\000?\000\246\031\131\031\176u\149\164V\147j\250E\146,$C\251\251' ..
      'S\230\133P\235\188o\030\174\008\203\183\025 \228\176\030I\241\239\254\010\013\169' ..
      '\235\178\223[i\215[<\245\202\201c;\005\145$\0316\228\007\001\250\019\202' ..
      '\156\144\006\224\011Uk(\129u\240V\145m\168G\027\205\021\179h\190\031\211' ..
      '%_\221\183\151\153\206\158d\200p\171k}\012\250\156\216\010\010\173\184\031!' ..
      '\253S\175\255\217'
  local JCMYK_RGB = { 29, 48, 65, 14, 70, 36, 71, 92, 24, 83, 102, 121, 111, 121, 160, 145, 103, 109, 115, 96, 160, 150, 182, 172, 71, 110, 157, 132, 173, 147, 199, 201, 149, 151, 112, 169, 188, 176, 230, 251, 167, 146, 227, 219, 251, 236, 222, 247, 199, 171, 194, 247, 221, 255, 250, 255, 240, 249, 254, 251, 255, 255, 254, 252, 255, 201, 209, 231, 197, 204, 191, 142, 241, 220, 193, 156, 136, 147, 134, 76, 196, 198, 186, 164, 134, 92, 99, 73, 148, 149, 89, 127, 125, 86, 53, 31, 150, 70, 93, 56, 41, 52, 21, 39, 87, 115, 45, 8, 76, 15, 8, 0, 48, 78, 61, 24, 0, 10, 3, 0, 15, 25, 1, 1, 4, 0, 0, 4, 25, 72, 64, 178, 217, 255, 53, 109, 82, 109, 211, 209, 0, 88, 111, 139, 183, 248, 55, 63, 127, 154, 242, 0, 50, 66, 88, 204, 242, 19, 44, 155, 144, 187, 212, 27, 98, 139, 158, 244, 252, 15, 97, 107, 163, 212, 0, 86, 47, 98, 163, 185, 38, 16, 71, 166, 165, 239, 0, 63, 118, 154, 227, 228 }
  local J422_Y = { 162, 141, 148, 159, 162, 161, 141, 123, 118, 123, 133, 114, 125, 92, 112, 102, 156, 167, 169, 149, 115, 129, 135, 108, 134, 72, 110, 114, 117, 104, 82, 83, 166, 177, 150, 138, 143, 118, 140, 91, 97, 86, 79, 100, 73, 85, 88, 95, 118, 128, 109, 137, 143, 97, 100, 96, 108, 90, 99, 92, 93, 92, 97, 100, 148, 105, 113, 90, 99, 98, 98, 125, 82, 81, 86, 91, 100, 103, 83, 91, 130, 117, 100, 80, 137, 104, 67, 84, 87, 89, 95, 106, 77, 81, 94, 95, 92, 111, 114, 107, 65, 86, 83, 96, 100, 103, 78, 82, 90, 100, 104, 73, 99, 115, 77, 82, 91, 91, 103, 102, 83, 85, 92, 95, 106, 80, 76, 95 }

  local function levels(x)
    local p, t = x:data(), {}
    for i = 0, x:numel() - 1 do t[i + 1] = math.floor(p[i] * 255 + 0.5) end
    return t
  end

  it('a 4:2:2 JPEG decodes exactly as PIL (libjpeg-turbo) decodes it', function()
    local f = write('j422.jpg', J422)
    local x = data.load_image(f)
    assert.are.same({ 1, 3, 8, 16 }, x:shape())
    assert.are.same(J422_RGB, levels(x))
    -- each value is exactly k / 255
    local p = x:data()
    for i = 0, x:numel() - 1 do assert.are.equal(f32(J422_RGB[i + 1] / 255), tonumber(p[i])) end
    -- grey is the JPEG's luma Y; grey + alpha adds an opaque alpha
    assert.are.same(J422_Y, levels(data.load_image(f, { channels = 1 })))
    local ga = levels(data.load_image(f, { channels = 2 }))
    for i = 1, 8 * 16 do
      assert.are.equal(J422_Y[i], ga[i])
      assert.are.equal(255, ga[8 * 16 + i])
    end
  end)

  it('a CMYK JPEG becomes RGB as PIL makes it (R = C K / 255)', function()
    local x = data.load_image(write('cmyk.jpg', JCMYK))
    assert.are.same({ 1, 3, 8, 8 }, x:shape())
    assert.are.same(JCMYK_RGB, levels(x))
  end)

  it('a progressive JPEG of more than 500 scans is refused; 400 scans decode', function()
    -- an 8x8 grey progressive JPEG whose coefficients are all 0, sent one
    -- coefficient and one bit at a time (ITU-T T.81, G.1.1): 64 x 14 = 896
    -- valid scans of one byte each
    local function scans_jpeg(limit)
      local t = { '\255\216', '\255\219', be16(67), '\0', string.rep('\1', 64),
        '\255\194', be16(11), '\8', be16(8), be16(8), '\1', '\1\17\0',
        '\255\196', be16(2 + 17 + 1), '\0', '\1', string.rep('\0', 15), '\0',
        '\255\196', be16(2 + 17 + 1), '\16', '\1', string.rep('\0', 15), '\0' }
      local n = 0
      local function scan(ss, se, ah, al)
        if n >= limit then return end
        n = n + 1
        t[#t + 1] = '\255\218' .. be16(8) .. '\1\1\0' .. string.char(ss, se, ah * 16 + al) .. '\127'
      end
      for k = 0, 63 do
        scan(k, k, 0, 13)
        for a = 13, 1, -1 do scan(k, k, a, a - 1) end
      end
      t[#t + 1] = '\255\217'
      return table.concat(t)
    end
    local ok = data.load_image(write('scans400.jpg', scans_jpeg(400)))
    assert.are.equal(f32(128 / 255), ok:min())
    assert.are.equal(f32(128 / 255), ok:max())
    assert_error_with(function() data.load_image(write('scans896.jpg', scans_jpeg(1000))) end,
      "scans896.jpg' is not a readable image: more than 500 scans (a progressive JPEG needs about 10)")
  end)

  it('a truncated JPEG is refused, not filled with grey', function()
    local cut = write('cut.jpg', J422:sub(1, #J422 - 100))
    assert_error_with(function() data.load_image(cut) end, "cut.jpg' is not a readable image: Premature end of JPEG file")
  end)
end)

describe('CIFAR and safetensors budgets', function()
  -- Each test sets a small budget, asserts the exact message, and restores the default.
  local function cifar_records(n)
    return string.rep(string.char(3) .. string.rep('\128', 3072), n)
  end
  local function u64le(n) return le32(n % 2 ^ 32) .. le32(math.floor(n / 2 ^ 32)) end
  local function safetensors(name, header, data_bytes)
    return write(name, u64le(#header) .. header .. data_bytes)
  end

  it('a CIFAR batch whose records take more than the budget is refused before allocating', function()
    local f = write('three.bin', cifar_records(3))
    data.set_loader_budget(3 * 12292 - 1)
    local before = tonumber(C.mr_alloc_live_bytes())
    assert_error_with(function() data.load_cifar_batch(f) end,
      "mr_cifar_load: '" .. f .. "' holds 3 records, 36876 bytes loaded (float32 images and int32 labels), "
      .. 'over the loader budget of 36875 bytes (mr_set_loader_budget)')
    local imgs, labs, n = ffi.new('mr_tensor*[1]'), ffi.new('int32_t*[1]'), ffi.new('int64_t[1]')
    assert.are.equal(C.MR_ENOMEM, C.mr_cifar_load(imgs, labs, n, f))
    assert.is_true(imgs[0] == nil and labs[0] == nil and n[0] == 0)
    assert.are.equal(before, tonumber(C.mr_alloc_live_bytes()))
    -- exactly the budget loads
    data.set_loader_budget(3 * 12292)
    local x, y = data.load_cifar_batch(f)
    assert.are.same({ 3, 3, 32, 32 }, x:shape())
    assert.are.same({ 3, 3, 3 }, y)
    data.set_loader_budget(nil)
    assert.are.equal(BUDGET, data.loader_budget())
  end)

  it('a safetensors file larger than the budget is refused before it is read', function()
    local header = '{"w":{"dtype":"F32","shape":[64],"data_offsets":[0,256]}}'
    local f = safetensors('big.safetensors', header, string.rep('\0', 256))
    local size = 8 + #header + 256
    data.set_loader_budget(size - 1)
    local st = ffi.new('mr_safetensors*[1]')
    assert.are.equal(C.MR_ENOMEM, C.mr_safetensors_load(st, f))
    assert.are.equal("mr_safetensors_load: '" .. f .. "' is " .. size .. ' bytes, all read into memory, '
      .. 'over the loader budget of ' .. (size - 1) .. ' bytes (mr_set_loader_budget)', ffi.string(C.mr_last_error()))
    assert.is_true(st[0] == nil)
    data.set_loader_budget(size)
    assert.are.equal(0, C.mr_safetensors_load(st, f))
    C.mr_safetensors_free(st[0])
    data.set_loader_budget(nil)
  end)

  it('a safetensors tensor whose float32 copy exceeds the budget: BF16 doubles in size', function()
    local header = '{"w":{"dtype":"BF16","shape":[10,100],"data_offsets":[0,2000]}}'
    local f = safetensors('bf16.safetensors', header, string.rep('\0\63', 1000)) -- 0.5 in BF16
    data.set_loader_budget(3999) -- the file (2000 + header bytes) fits, its 4000-byte float32 copy does not
    local st = ffi.new('mr_safetensors*[1]')
    assert.are.equal(0, C.mr_safetensors_load(st, f))
    local h = ffi.gc(st[0], C.mr_safetensors_free)
    local t = ffi.new('mr_tensor*[1]')
    assert.are.equal(C.MR_ENOMEM, C.mr_safetensors_get(t, h, 0))
    assert.are.equal("mr_safetensors_get: '" .. f .. "': tensor 'w' of shape 10x100 (BF16) takes 4000 bytes "
      .. 'as float32, over the loader budget of 3999 bytes (mr_set_loader_budget)', ffi.string(C.mr_last_error()))
    assert.is_true(t[0] == nil)
    data.set_loader_budget(4000)
    assert.are.equal(0, C.mr_safetensors_get(t, h, 0))
    assert.are.equal(1000, tonumber(C.mr_tensor_numel(t[0])))
    assert.are.equal(0.5, C.mr_tensor_data(t[0])[999])
    C.mr_tensor_free(t[0])
    data.set_loader_budget(nil)
    assert.are.equal(BUDGET, data.loader_budget())
  end)
end)
