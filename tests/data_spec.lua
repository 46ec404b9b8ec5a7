-- Data I/O: IDX (Fashion-MNIST), CIFAR-10 batches, images and PNG, data sets,
-- normalization and batches. Bad files must fail with their specific message.
local ffi = require 'ffi'
local core = require 'moreau.core'
local T = require 'moreau.tensor'
local data = require 'moreau.data'
local C = core.C

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local tmp -- a fresh directory per run, removed at the end
local path, write, read = require('helpers.files').in_dir(function() return tmp end)

local function u32be(v)
  return string.char(math.floor(v / 16777216) % 256, math.floor(v / 65536) % 256,
    math.floor(v / 256) % 256, v % 256)
end

-- An IDX image file: magic 0x00000803, count, rows, cols, then the pixel bytes.
local function idx_images(count, rows, cols, pixels, magic)
  return u32be(magic or 0x803) .. u32be(count) .. u32be(rows) .. u32be(cols) .. pixels
end
local function idx_labels(labels, count)
  return u32be(0x801) .. u32be(count or #labels) .. string.char(unpack(labels))
end

local function bytes(n, f)
  local t = {}
  for i = 0, n - 1 do t[#t + 1] = string.char(f(i) % 256) end
  return table.concat(t)
end

local function gzip(p)
  assert(os.execute('gzip -kf ' .. shell_quote(p)) == 0, 'gzip failed')
  return p .. '.gz'
end

setup(function()
  local p = assert(io.popen('mktemp -d'))
  tmp = p:read('*l')
  p:close()
  assert(tmp and #tmp > 0, 'mktemp -d failed')
end)

teardown(function()
  if tmp then os.execute('rm -rf ' .. shell_quote(tmp)) end
end)

local assert_error_with = require('helpers.asserts').error_with

describe('Fashion-MNIST from dataset-fashion-mnist', function()
  local test_ds
  setup(function() test_ds = data.fashion_mnist { split = 'test' } end)

  it('has 10000 test items of 1x28x28 with labels 0..9 and the known first labels', function()
    assert.are.equal(10000, test_ds.n)
    assert.are.same({ 10000, 1, 28, 28 }, test_ds.images:shape())
    assert.are.equal(10000, #test_ds.labels)
    local counts = {}
    for _, c in ipairs(test_ds.labels) do
      assert.is_true(c >= 0 and c <= 9 and c == math.floor(c))
      counts[c] = (counts[c] or 0) + 1
    end
    for c = 0, 9 do assert.are.equal(1000, counts[c]) end
    assert.are.same({ 9, 2, 1, 1, 6 }, { unpack(test_ds.labels, 1, 5) })
    assert.are.equal('Ankle boot', test_ds.classes[test_ds.labels[1] + 1])
    assert.are.equal(10, #test_ds.classes)
    assert.are.equal('T-shirt/top', test_ds.classes[1])
  end)

  it('scales pixels to [0, 1] as x/255, with the known test-set mean 0.287', function()
    assert.are.equal(0, test_ds.images:min())
    assert.are.equal(1, test_ds.images:max())
    assert.are.equal('0.287', ('%.3f'):format(test_ds.images:mean()))
    -- pixel sum of the first test image, in bytes
    local x = data.get(test_ds, 1)
    assert.are.equal(33456, math.floor(x:sum() * 255 + 0.5))
    -- every value is an exact k/255
    local p = test_ds.images:data()
    for i = 0, 28 * 28 * 4 - 1 do
      local k = math.floor(p[i] * 255 + 0.5)
      assert.are.equal(tonumber(ffi.new('float', k / 255)), tonumber(p[i]))
    end
  end)

  it('has 60000 training items, 6000 per class, and the published mean and std', function()
    local ds = data.fashion_mnist { split = 'train' }
    assert.are.equal(60000, ds.n)
    assert.are.same({ 60000, 1, 28, 28 }, ds.images:shape())
    local counts = {}
    for _, c in ipairs(ds.labels) do counts[c] = (counts[c] or 0) + 1 end
    for c = 0, 9 do assert.are.equal(6000, counts[c]) end
    local m = ds.images:mean()
    assert.are.equal(('%.4f'):format(data.FASHION_MNIST_MEAN[1]), ('%.4f'):format(m))
    local p, n, s = ds.images:data(), ds.images:numel(), 0
    for i = 0, n - 1 do s = s + (p[i] - m) ^ 2 end
    assert.are.equal(('%.4f'):format(data.FASHION_MNIST_STD[1]), ('%.4f'):format(math.sqrt(s / n)))
    assert.are.same(data.FASHION_MNIST_MEAN, ds.mean)
    assert.are.same(data.FASHION_MNIST_STD, ds.std)
  end)

  it('rejects an unknown split and names a missing directory', function()
    assert_error_with(function() data.fashion_mnist { split = 'val' } end, "split must be 'train' or 'test'")
    assert_error_with(function() data.fashion_mnist { dir = path('nowhere') } end,
      'no train-images-idx3-ubyte(.gz) in ' .. path('nowhere'), 'MOREAU_FMNIST_DIR')
  end)

  it('takes its files from dir= or from $MOREAU_FMNIST_DIR', function()
    os.execute('mkdir -p ' .. shell_quote(path('fm')))
    local px = bytes(2 * 4, function(i) return i * 30 end)
    write('fm/t10k-images-idx3-ubyte', idx_images(2, 2, 2, px))
    gzip(path('fm/t10k-images-idx3-ubyte'))
    os.remove(path('fm/t10k-images-idx3-ubyte'))
    write('fm/t10k-labels-idx1-ubyte', idx_labels { 3, 7 })  -- plain works as well
    local ds = data.fashion_mnist { split = 'test', dir = path('fm') }
    assert.are.equal(2, ds.n)
    assert.are.same({ 3, 7 }, ds.labels)
    assert.are.same({ 2, 1, 2, 2 }, ds.images:shape())
    -- the environment variable, in a child process
    local cmd = ('MOREAU_FMNIST_DIR=%s luajit -e %s'):format(shell_quote(path('fm')), shell_quote(
      "package.path = 'bindings/?.lua;' .. package.path; " ..
      "local d = require('moreau.data').fashion_mnist{split = 'test'}; io.write(d.n, ' ', d.labels[2])"))
    local p = assert(io.popen(cmd))
    local out = p:read('*a')
    p:close()
    assert.are.equal('2 7', out)
  end)

  it('rejects a label file that does not match the images', function()
    os.execute('mkdir -p ' .. shell_quote(path('fm2')))
    write('fm2/train-images-idx3-ubyte', idx_images(2, 1, 1, '\1\2'))
    write('fm2/train-labels-idx1-ubyte', idx_labels { 1, 2, 3 })
    assert_error_with(function() data.fashion_mnist { dir = path('fm2') } end,
      'holds 2 images but', 'holds 3 labels')
  end)
end)

describe('IDX files', function()
  local px = bytes(3 * 2 * 5, function(i) return i * 37 + 11 end)

  local function check_images(x)
    assert.are.same({ 3, 1, 2, 5 }, x:shape())
    local p = x:data()
    for i = 0, 29 do
      local b = px:byte(i + 1)
      assert.are.equal(tonumber(ffi.new('float', b / 255)), tonumber(p[i]))
    end
  end

  it('round-trip a crafted file, plain and gzipped', function()
    local f = write('ok-images', idx_images(3, 2, 5, px))
    check_images(data.load_idx_images(f))
    local gz = gzip(f)
    assert.are_not.equal(read(f), read(gz))
    check_images(data.load_idx_images(gz))
    local l = write('ok-labels', idx_labels { 0, 255, 7 })
    assert.are.same({ 0, 255, 7 }, data.load_idx_labels(l))
    assert.are.same({ 0, 255, 7 }, data.load_idx_labels(gzip(l)))
  end)

  it('reject a wrong magic', function()
    local f = write('magic', 'PK\3\4' .. string.rep('\0', 40))
    assert_error_with(function() data.load_idx_images(f) end,
      "'" .. f .. "' is not an IDX file: magic 0x504b0304, expected 0x00000803")
    local l = write('labels-as-images', idx_labels { 1, 2 })
    assert_error_with(function() data.load_idx_images(l) end,
      "has 1 dimension (a label file?), expected 3", 'magic 0x00000801, expected 0x00000803')
    local i = write('images-as-labels', idx_images(1, 1, 1, '\0'))
    assert_error_with(function() data.load_idx_labels(i) end,
      "has 3 dimensions (an image file?), expected 1")
    local d = write('dtype', idx_images(1, 1, 1, '\0', 0x0D03))
    assert_error_with(function() data.load_idx_images(d) end,
      'IDX data type 0x0d is not supported', 'magic 0x00000d03')
  end)

  it('reject truncated data with the expected and found byte counts', function()
    local f = write('short', idx_images(3, 2, 5, px:sub(1, 20)))
    assert_error_with(function() data.load_idx_images(f) end,
      "'" .. f .. "' is truncated: the header promises 3 images of 2x5, 30 bytes of data after the "
      .. '16-byte header, found 20')
    assert_error_with(function() data.load_idx_images(gzip(f)) end, 'is truncated', 'found 20')
    local l = write('short-labels', idx_labels({ 1, 2 }, 5))
    assert_error_with(function() data.load_idx_labels(l) end,
      'the header promises 5 labels, 5 bytes of data after the 8-byte header, found 2')
    local h = write('short-header', u32be(0x803) .. u32be(3) .. '\0\0')
    assert_error_with(function() data.load_idx_images(h) end,
      'is truncated in its header: expected 16 bytes, found 10')
    local m = write('short-magic', '\0\0')
    assert_error_with(function() data.load_idx_images(m) end, 'shorter than the 4-byte IDX magic')
  end)

  it('reject a count larger than the data', function()
    local f = write('count', idx_images(1000, 2, 5, px))
    assert_error_with(function() data.load_idx_images(f) end,
      'the header promises 1000 images of 2x5, 10000 bytes of data', 'found 30')
  end)

  it('reject data beyond what the header promises', function()
    local f = write('long', idx_images(2, 2, 5, px))
    assert_error_with(function() data.load_idx_images(f) end,
      'holds more data than its header says: 2 images of 2x5, 20 bytes', 'found 10 more')
  end)

  it('reject absurd and zero sizes before allocating', function()
    local f = write('absurd', idx_images(4000000000, 65535, 65535, ''))
    assert_error_with(function() data.load_idx_images(f) end,
      'absurd size in the header: 4000000000 images of 65535x65535')
    local g = write('huge-count', idx_images(4000000000, 28, 28, px))
    assert_error_with(function() data.load_idx_images(g) end, 'absurd size in the header')
    local z = write('zero', idx_images(0, 28, 28, ''))
    assert_error_with(function() data.load_idx_images(z) end, 'dimension 0 of the header is 0')
  end)

  it('reject an empty file, a missing file and a corrupt gzip stream', function()
    local e = write('empty', '')
    assert_error_with(function() data.load_idx_images(e) end,
      "mr_idx_load_images: '" .. e .. "' is empty (expected an IDX images file)")
    assert_error_with(function() data.load_idx_labels(e) end, 'is empty (expected an IDX labels file)')
    assert_error_with(function() data.load_idx_images(path('missing.gz')) end,
      "cannot open '" .. path('missing.gz') .. "': No such file or directory")
    -- a gzip stream cut in the middle
    local big = write('big', idx_images(50, 20, 20, bytes(50 * 400, function(i) return (i * 7919) % 251 end)))
    local gz = read(gzip(big))
    local cut = write('cut.gz', gz:sub(1, math.floor(#gz / 2)))
    assert_error_with(function() data.load_idx_images(cut) end,
      "'" .. cut .. "': the gzip stream is corrupt or cut off (zlib: unexpected end of file)")
    -- flipped bytes inside the deflate stream
    local bad = gz:sub(1, 30) .. string.rep('\255', 40) .. gz:sub(71)
    local corrupt = write('corrupt.gz', bad)
    assert_error_with(function() data.load_idx_images(corrupt) end,
      "'" .. corrupt .. "': the gzip stream is corrupt or cut off (zlib: ")
    assert_error_with(function() data.load_idx_images(tmp) end, "'" .. tmp .. "' is not a regular file")
  end)

  it('check arguments in C', function()
    local out = ffi.new('mr_tensor*[1]')
    assert.are.equal(C.MR_EINVAL, C.mr_idx_load_images(nil, 'x'))
    assert.are.equal(C.MR_EINVAL, C.mr_idx_load_images(out, nil))
    assert.are.equal('mr_idx_load_images: path is NULL', ffi.string(C.mr_last_error()))
    assert.are.equal(C.MR_EINVAL, C.mr_idx_load_labels(nil, nil, 'x'))
    assert.are.equal(C.MR_EIO, C.mr_idx_load_images(out, path('missing')))
    assert.are.equal(C.MR_EFORMAT, C.mr_idx_load_images(out, write('empty2', '')))
    assert.is_true(out[0] == nil)
    C.mr_labels_free(nil)
  end)
end)

describe('CIFAR-10 binary batches', function()
  local function record(label, f)
    return string.char(label) .. bytes(3072, f)
  end

  it('load a crafted file: CHW planes in [0, 1] and labels', function()
    local f = write('c1.bin', record(3, function(i) return i end) .. record(9, function(i) return 255 - i end))
    local x, y = data.load_cifar_batch(f)
    assert.are.same({ 2, 3, 32, 32 }, x:shape())
    assert.are.same({ 3, 9 }, y)
    -- record 0: byte j of the planes is j % 256; plane 1 (green) starts at 1024
    assert.are.equal(tonumber(ffi.new('float', 5 / 255)), x:get(1, 1, 1, 6))
    assert.are.equal(tonumber(ffi.new('float', ((1024 + 32 + 2) % 256) / 255)), x:get(1, 2, 2, 3))
    assert.are.equal(tonumber(ffi.new('float', (255 - 3071 % 256) / 255)), x:get(2, 3, 32, 32))
  end)

  it('concatenate several files into one data set', function()
    local a = write('a.bin', record(1, function() return 0 end))
    local b = write('b.bin', record(2, function() return 255 end) .. record(0, function() return 51 end))
    local ds = data.cifar10 { files = { a, b } }
    assert.are.equal(3, ds.n)
    assert.are.same({ 3, 3, 32, 32 }, ds.images:shape())
    assert.are.same({ 1, 2, 0 }, ds.labels)
    assert.are.equal(0, ds.images:select(1):max())
    assert.are.equal(1, ds.images:select(2):min())
    assert.is_true(math.abs(ds.images:select(3):mean() - 0.2) < 1e-6)
    assert.are.equal('cat', ds.classes[4])
    assert.are.same(data.CIFAR10_MEAN, ds.mean)
    -- the dir form names the standard files
    assert_error_with(function() data.cifar10 { dir = tmp } end, 'data_batch_1.bin', 'No such file')
  end)

  it('reject a size that is not a multiple of 3073', function()
    local f = write('odd.bin', record(1, function() return 0 end) .. 'xyz')
    assert_error_with(function() data.load_cifar_batch(f) end,
      "its size 3076 is not a multiple of 3073", '1 records and 3 bytes left over')
  end)

  it('reject a label outside 0..9', function()
    local f = write('lab.bin', record(1, function() return 0 end) .. record(12, function() return 0 end))
    assert_error_with(function() data.load_cifar_batch(f) end,
      "record 1 (byte offset 3073) has label 12, expected 0..9")
  end)

  it('reject an empty, a missing and a non-regular file', function()
    assert_error_with(function() data.load_cifar_batch(write('empty.bin', '')) end, 'is empty')
    assert_error_with(function() data.load_cifar_batch(path('nope.bin')) end,
      "cannot open '" .. path('nope.bin') .. "': No such file or directory")
    assert_error_with(function() data.load_cifar_batch(tmp) end, 'is not a regular file')
    local imgs, labs, n = ffi.new('mr_tensor*[1]'), ffi.new('int32_t*[1]'), ffi.new('int64_t[1]')
    assert.are.equal(C.MR_EINVAL, C.mr_cifar_load(imgs, labs, nil, path('a.bin')))
    assert.are.equal(C.MR_EFORMAT, C.mr_cifar_load(imgs, labs, n, path('lab.bin')))
    assert.is_true(imgs[0] == nil and labs[0] == nil)
    assert.are.equal(0, tonumber(n[0]))
  end)
end)

describe('images', function()
  local function rand_image(shape, seed)
    return T.rand(shape, { seed = seed })
  end

  it('write a PNG and read it back to within 1/255, for 1, 3 and 4 channels', function()
    for _, c in ipairs { 1, 3, 4 } do
      local x = rand_image({ 1, c, 5, 7 }, c)
      local f = path(('rt%d.png'):format(c))
      data.save_png(f, x)
      assert.are.equal('\137PNG', read(f):sub(1, 4))
      local y = data.load_image(f)
      assert.are.same({ 1, c, 5, 7 }, y:shape())
      assert.is_true(x:max_abs_diff(y) <= 0.5 / 255 + 1e-6)
      -- the values read are exactly k/255
      local p = y:data()
      for i = 0, y:numel() - 1 do
        local k = math.floor(p[i] * 255 + 0.5)
        assert.are.equal(tonumber(ffi.new('float', k / 255)), tonumber(p[i]))
      end
    end
    -- values outside [0, 1] and NaN are clamped
    local z = T.from({ -1, 0.5, 2, 0 / 0 }, { 1, 1, 2, 2 })
    data.save_png(path('clamp.png'), z)
    local v = data.load_image(path('clamp.png')):totable()
    assert.are.same({ 0, tonumber(ffi.new('float', 128 / 255)), 1, 0 }, v)
  end)

  it('convert channels and resize on load', function()
    local x = T.full({ 1, 3, 8, 12 }, 0.4)
    data.save_png(path('flat.png'), x)
    local g = data.load_image(path('flat.png'), { channels = 1 })
    assert.are.same({ 1, 1, 8, 12 }, g:shape())
    local r = data.load_image(path('flat.png'), { size = { 4, 6 } })
    assert.are.same({ 1, 3, 4, 6 }, r:shape())
    local v = tonumber(ffi.new('float', 102 / 255))
    assert.is_true(math.abs(r:min() - v) < 1e-5 and math.abs(r:max() - v) < 1e-5)
    local up = data.load_image(path('flat.png'), { channels = 3, size = { 17, 5 } })
    assert.are.same({ 1, 3, 17, 5 }, up:shape())
    -- shrinking by 2 is antialiased: a checkerboard averages to grey (exactly
    -- inside; the clamped edges weigh the border pixels a little more)
    local cb = T.zeros { 1, 1, 8, 8 }
    for i = 1, 8 do for j = 1, 8 do cb:set((i + j) % 2, 1, 1, i, j) end end
    data.save_png(path('cb.png'), cb)
    local half = data.load_image(path('cb.png'), { size = { 4, 4 } })
    assert.is_true(math.abs(half:mean() - 0.5) < 1e-6 and half:max() - half:min() < 0.07)
    for i = 2, 3 do for j = 2, 3 do assert.is_true(math.abs(half:get(1, 1, i, j) - 0.5) < 1e-6) end end
  end)

  it('write raw 8-bit pixels with mr_png_write_rgb8', function()
    local w, h = 3, 2
    local px = ffi.new('uint8_t[?]', w * h * 3)
    for i = 0, w * h * 3 - 1 do px[i] = (i * 40) % 256 end
    core.check(C.mr_png_write_rgb8(path('raw.png'), px, w, h, 3))
    local y = data.load_image(path('raw.png'))
    assert.are.same({ 1, 3, 2, 3 }, y:shape())
    -- pixel (row 1, col 2) channel G is byte (1 * 3 + 2) * 3 + 1 = 16
    assert.are.equal(tonumber(ffi.new('float', (16 * 40 % 256) / 255)), y:get(1, 2, 2, 3))
    assert.are.equal(C.MR_EINVAL, C.mr_png_write_rgb8(path('raw.png'), px, w, h, 5))
    assert.are.equal('mr_png_write_rgb8: channels must be 1..4, got 5', ffi.string(C.mr_last_error()))
    assert.are.equal(C.MR_EINVAL, C.mr_png_write_rgb8(path('raw.png'), px, 0, h, 3))
    assert.are.equal(C.MR_EINVAL, C.mr_png_write_rgb8(path('raw.png'), nil, w, h, 3))
  end)

  it('reject corrupt, unknown and missing images with stb_image\'s reason', function()
    data.save_png(path('good.png'), rand_image({ 1, 3, 16, 16 }, 9))
    local png = read(path('good.png'))
    local cut = write('cut.png', png:sub(1, 60))
    assert_error_with(function() data.load_image(cut) end,
      "mr_image_load: '" .. cut .. "' is not a readable image: ")
    local crc = write('crc.png', png:sub(1, 40) .. string.char((png:byte(41) + 1) % 256) .. png:sub(42))
    assert_error_with(function() data.load_image(crc) end, 'is not a readable image')
    local txt = write('text.png', 'this is not an image at all\n')
    assert_error_with(function() data.load_image(txt) end, 'is not a readable image: unknown image type')
    assert_error_with(function() data.load_image(path('none.png')) end,
      "cannot open '" .. path('none.png') .. "': No such file or directory")
  end)

  it('check their arguments', function()
    assert_error_with(function() data.load_image(path('good.png'), { channels = 5 }) end,
      'channels must be 1 (grey), 3 (RGB), 2 or 4 (with alpha) or 0 (as in the file), got 5')
    assert_error_with(function() data.load_image(path('good.png'), { size = { 0, 10 } }) end,
      'size must be 0x0 (keep) or both sides in 1..32768, got 10 wide x 0 high')
    assert_error_with(function() data.save_png(path('x.png'), T.zeros { 1, 5, 4, 4 }) end,
      'mr_image_write_png: 1x5x4x4 has 5 channels')
    assert_error_with(function() data.save_png(path('x.png'), T.zeros { 2, 3, 4, 4 }) end,
      'data.save_png: expected an image (1, C, H, W), got 2x3x4x4')
    -- images are batch first everywhere: a 3-D tensor is refused, not read as one image
    assert_error_with(function() data.save_png(path('x.png'), T.zeros { 3, 4, 4 }) end,
      'data.save_png: expected an image (1, C, H, W), got 3x4x4, a 3-D tensor; images are batch first: '
      .. 'add a batch dim, x:reshape{1, 3, 4, 4}')
    assert_error_with(function() data.save_png(path('no/such/dir/x.png'), T.zeros { 1, 1, 4, 4 }) end,
      "cannot create '" .. path('no/such/dir/x.png') .. "': No such file or directory")
  end)
end)

describe('image folders', function()
  it('take classes from sorted subfolders and files in sorted order', function()
    os.execute('mkdir -p ' .. shell_quote(path('folder/dog')) .. ' ' .. shell_quote(path('folder/cat')))
    data.save_png(path('folder/dog/b.png'), T.full({ 1, 3, 6, 6 }, 0.2))
    data.save_png(path('folder/dog/a.png'), T.full({ 1, 3, 6, 6 }, 0.4))
    data.save_png(path('folder/cat/z.png'), T.full({ 1, 3, 6, 6 }, 0.6))
    write('folder/cat/notes.txt', 'not an image')
    local ds = data.image_folder { dir = path('folder') }
    assert.are.same({ 'cat', 'dog' }, ds.classes)
    assert.are.equal(3, ds.n)
    assert.are.same({ 0, 1, 1 }, ds.labels)
    assert.are.same({ path('folder/cat/z.png'), path('folder/dog/a.png'), path('folder/dog/b.png') }, ds.files)
    assert.are.same({ 3, 3, 6, 6 }, ds.images:shape())
    assert.is_true(math.abs(ds.images:select(2):mean() - 102 / 255) < 1e-6)
    local g = data.image_folder { dir = path('folder'), size = { 3, 4 }, channels = 1 }
    assert.are.same({ 3, 1, 3, 4 }, g.images:shape())
  end)

  it('without subfolders have no labels; sizes must agree unless size is given', function()
    os.execute('mkdir -p ' .. shell_quote(path('flat')))
    data.save_png(path('flat/1.png'), T.full({ 1, 1, 4, 4 }, 1))
    data.save_png(path('flat/2.png'), T.full({ 1, 1, 5, 4 }, 0))
    assert_error_with(function() data.image_folder { dir = path('flat') } end,
      path('flat/2.png') .. ' is C×H×W = 3x5x4, but ' .. path('flat/1.png') .. ' is 3x4x4; give size = {H, W}')
    local ds = data.image_folder { dir = path('flat'), size = { 4, 4 } }
    assert.is_nil(ds.labels)
    assert.are.same({}, ds.classes)
    assert.are.equal(2, ds.n)
    local x, c = data.get(ds, 1)
    assert.are.equal(1, x:min())
    assert.is_nil(c)
    assert_error_with(function() data.image_folder { dir = path('nothing-here') } end, 'cannot read directory')
    os.execute('mkdir -p ' .. shell_quote(path('void')))
    assert_error_with(function() data.image_folder { dir = path('void') } end, 'no image files in')
  end)

  it('count the whole set against the loader budget before allocating it', function()
    os.execute('mkdir -p ' .. shell_quote(path('many')))
    for i = 1, 5 do data.save_png(path(('many/%d.png'):format(i)), T.full({ 1, 1, 8, 8 }, 0.5)) end
    local old = data.loader_budget()
    data.set_loader_budget(4 * 64 * 4) -- four of the five 1x8x8 float32 images
    local ok, err = pcall(data.image_folder, { dir = path('many'), channels = 1 })
    data.set_loader_budget(old)
    assert.is_false(ok)
    assert.truthy(tostring(err):find('data.image_folder: 5 images of C×H×W = 1x8x8 take 1280 bytes as float32, over the ' ..
      'loader budget of 1024 bytes (data.set_loader_budget; or give size = {H, W})', 1, true), err)
    assert.are.equal(5, data.image_folder({ dir = path('many'), channels = 1 }).n)
  end)
end)

describe('normalization', function()
  it('normalize and denormalize per channel and round-trip', function()
    local x = T.rand({ 2, 3, 4, 5 }, { seed = 3 })
    local m, s = data.CIFAR10_MEAN, data.CIFAR10_STD
    local z = data.normalize(x, m, s)
    assert.are_not.equal(x, z)
    for n = 1, 2 do
      for c = 1, 3 do
        local v = (x:get(n, c, 2, 3) - m[c]) / s[c]
        assert.is_true(math.abs(z:get(n, c, 2, 3) - v) < 1e-5)
      end
    end
    assert.is_true(data.denormalize(z, m, s):max_abs_diff(x) < 1e-6)
    -- x itself is untouched
    assert.is_true(x:min() > 0 and x:max() < 1)
    -- one number for all channels
    local g = T.full({ 1, 1, 28, 28 }, data.FASHION_MNIST_MEAN[1])
    assert.is_true(data.normalize(g, data.FASHION_MNIST_MEAN, data.FASHION_MNIST_STD):norm() < 1e-5)
    assert.is_true(math.abs(data.normalize(T.ones { 1, 1, 2, 2 }, 0.5, 0.25):mean() - 2) < 1e-6)
  end)

  it('reject wrong channel counts and non-positive std', function()
    local x = T.zeros { 1, 3, 2, 2 }
    assert_error_with(function() data.normalize(x, { 0.1, 0.2 }, 1) end,
      'data.normalize: mean must be a number or a table of 1 or 3 numbers')
    assert_error_with(function() data.denormalize(x, 0, { 1, 0, 1 }) end, 'std[2] = 0 must be > 0')
    assert_error_with(function() data.normalize(T.zeros { 4 }, 0, 1) end, 'data.normalize: expected (N, C, H, W), got 4')
    -- batch first, as everywhere: a 3-D tensor is refused, not read as one image
    for _, f in ipairs { 'normalize', 'denormalize' } do
      assert_error_with(function() data[f](T.zeros { 3, 4, 4 }, 0, 1) end, 'data.' .. f .. ': expected (N, C, H, W), '
        .. 'got 3x4x4, a 3-D tensor; images are batch first: add a batch dim, x:reshape{1, 3, 4, 4}')
    end
  end)
end)

describe('items and batches', function()
  local function toy(n)
    local x = T.zeros { n, 1, 2, 2 }
    local labels = {}
    for i = 1, n do
      for k = 0, 3 do x:data()[(i - 1) * 4 + k] = i end
      labels[i] = i % 10
    end
    return { images = x, labels = labels, n = n, classes = {} }
  end

  it('get and subset copy items, 1-based', function()
    local ds = toy(7)
    local x, c = data.get(ds, 3)
    assert.are.same({ 1, 1, 2, 2 }, x:shape())
    assert.are.equal(3, x:min())
    assert.are.equal(3, c)
    local sub = data.subset(ds, 2, 4)
    assert.are.equal(3, sub.n)
    assert.are.same({ 2, 3, 4 }, sub.labels)
    assert.are.same({ 3, 1, 2, 2 }, sub.images:shape())
    assert.are.equal(2, sub.images:min())
    assert_error_with(function() data.get(ds, 8) end, 'data.get: item 8 outside 1..7')
    assert_error_with(function() data.subset(ds, 5, 9) end, 'data.subset: items 5..9 outside 1..7')
  end)

  local function epoch(ds, bs, opts)
    local order, sizes = {}, {}
    for x, y, idx in data.batches(ds, bs, opts) do
      sizes[#sizes + 1] = #idx
      assert.are.equal(#idx, x:size(1))
      for k, i in ipairs(idx) do
        order[#order + 1] = i
        assert.are.equal(i, x:data()[(k - 1) * 4])      -- the item's pixels
        assert.are.equal(ds.labels[i], y[k])            -- and its label
      end
    end
    return order, sizes
  end

  it('cover every index exactly once per epoch', function()
    local ds = toy(10)
    local order, sizes = epoch(ds, 3)
    assert.are.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, order)
    assert.are.same({ 3, 3, 3, 1 }, sizes)
    for _, seed in ipairs { 0, 1, 42 } do
      local o = epoch(ds, 4, { shuffle = true, seed = seed })
      local seen = {}
      for _, i in ipairs(o) do
        assert.is_nil(seen[i], 'index repeated, seed ' .. seed)
        seen[i] = true
      end
      assert.are.equal(10, #o)
    end
    local _, s2 = epoch(ds, 3, { drop_last = true })
    assert.are.same({ 3, 3, 3 }, s2)
  end)

  it('give the same order for the same seed and another for another seed or epoch', function()
    local ds = toy(50)
    local a = epoch(ds, 8, { shuffle = true, seed = 7 })
    local b = epoch(ds, 8, { shuffle = true, seed = 7 })
    local c = epoch(ds, 8, { shuffle = true, seed = 8 })
    local d = epoch(ds, 8, { shuffle = true, seed = 7, epoch = 1 })
    assert.are.same(a, b)
    assert.are_not.same(a, c)
    assert.are_not.same(a, d)
    -- the order is fixed by the counter-based RNG: pinned for seed 7
    assert.are.same(data.permutation(50, 7, 0), a)
    local p = data.permutation(10, 123, 0)
    local sorted = { unpack(p) }
    table.sort(sorted)
    assert.are.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, sorted)
    assert.are.same({ 1 }, data.permutation(1, 5))
  end)

  it('batch the real data set', function()
    local ds = data.subset(data.fashion_mnist { split = 'test' }, 1, 100)
    local n = 0
    for x, y in data.batches(ds, 32, { shuffle = true, seed = 1 }) do
      assert.are.equal(#y, x:size(1))
      assert.are.same({ 1, 28, 28 }, { x:size(2), x:size(3), x:size(4) })
      n = n + #y
    end
    assert.are.equal(100, n)
    assert_error_with(function() data.batches(ds, 0) end, 'batch_size must be a positive integer')
  end)
end)

describe('PNG sizes the writer takes in int (issue 13)', function()
  it('mr_png_write_rgb8 refuses (W*C+1)*H past 2^29 bytes before reading a pixel', function()
    -- 32768x32768 RGBA: stb_image_write's (W*C+1)*H = 4295000064 wrapped to 32768 bytes, then
    -- 4 GiB of rows were filtered into them; the 1-byte buffer shows no pixel is read now
    local px = ffi.new('uint8_t[1]')
    assert.are.equal(C.MR_EINVAL, C.mr_png_write_rgb8(path('huge.png'), px, 32768, 32768, 4))
    assert.are.equal('mr_png_write_rgb8: a 32768x32768 PNG of 4 channels has (W*C+1)*H = 4295000064 filtered '
      .. "bytes, more than the 536870912 the PNG writer's int sizes allow", ffi.string(C.mr_last_error()))
    assert.are.equal(C.MR_EINVAL, C.mr_png_write_rgb8(path('huge.png'), px, 32768, 16384, 1))
    assert.are.equal('mr_png_write_rgb8: a 16384x32768 PNG of 1 channels has (W*C+1)*H = 536887296 filtered '
      .. "bytes, more than the 536870912 the PNG writer's int sizes allow", ffi.string(C.mr_last_error()))
    assert.is_nil(io.open(path('huge.png'), 'rb'))
  end)
end)

describe('images of another aspect (load_image fit)', function()
  -- a 20x10 grey image whose row r (0-based) is r/255: covering 10x10 needs
  -- no resize, so the centre crop is rows 5..14 exactly
  local rows = {}
  for r = 0, 19 do for _ = 1, 10 do rows[#rows + 1] = r / 255 end end
  local tall = path('tall.png')
  data.save_png(tall, T.from(rows, { 1, 1, 20, 10 }))

  it("'crop' resizes to cover the size keeping the aspect, then cuts the centre", function()
    local img, done = data.load_image(tall, { size = { 10, 10 }, fit = 'crop' })
    assert.are.same({ 1, 1, 10, 10 }, img:shape())
    for y = 1, 10 do
      for x = 1, 10 do
        assert.are.equal(tonumber(ffi.new('float', (y + 4) / 255)), img:get(1, 1, y, x), ('pixel %d,%d'):format(y, x))
      end
    end
    assert.are.same({ top = 5, left = 0, from = { 20, 10 } }, done.cropped)
    assert.is_false(done.resized)
    assert.are.same({ 1, 20, 10 }, { done.file_channels, done.file_height, done.file_width })
    -- half the size: resized to 10x5 to cover 5x5, then rows 2..6 of it
    local small, d2 = data.load_image(tall, { size = { 5, 5 }, fit = 'crop' })
    assert.are.same({ 1, 1, 5, 5 }, small:shape())
    assert.are.same({ top = 2, left = 0, from = { 10, 5 } }, d2.cropped)
    assert.is_true(d2.resized)
  end)

  it("'stretch' (the default) resizes to the size whatever the aspect, and says so", function()
    local img, done = data.load_image(tall, { size = { 10, 10 } })
    assert.are.same({ 1, 1, 10, 10 }, img:shape())
    assert.is_false(done.cropped)
    assert.is_true(done.resized)
    assert.has_error(function() data.load_image(tall, { size = { 10, 10 }, fit = 'zoom' }) end,
      "data.load_image: option 'fit' must be one of 'stretch', 'crop', got 'zoom'")
  end)
end)

describe('every loader refuses a FIFO without blocking on it', function()
  -- opening a FIFO for reading blocks until a writer comes; the loaders open
  -- with O_NONBLOCK and refuse anything but a regular file (mr_open_regular)
  local dir
  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute('mkdir ' .. shell_quote(dir) .. ' && mkfifo ' .. shell_quote(dir .. '/f')) == 0)
  end)
  teardown(function() os.execute('rm -rf ' .. shell_quote(dir)) end)

  it('names the file', function()
    local f = dir .. '/f'
    assert_error_with(function() data.load_cifar_batch(f) end, 'is not a regular file')
    assert_error_with(function() data.load_idx_images(f) end, 'is not a regular file')
    assert_error_with(function() data.load_image(f) end, 'is not a regular file')
    assert_error_with(function() require('moreau.safetensors').load(f) end, f .. ': not a regular file')
    assert_error_with(function() require('moreau.models').onnx(f) end, 'onnx: ' .. f .. ' is not a regular file')
  end)
end)
