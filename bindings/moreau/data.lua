--- moreau.data — data sets, normalization and batches.
--
--   local data = require 'moreau.data'
--   local ds = data.fashion_mnist{ split = 'test' }        -- Debian's dataset-fashion-mnist
--   local x, c = data.get(ds, 1)                           -- (1, 1, 28, 28), class id
--   local xn = data.normalize(ds.images, ds.mean, ds.std)  -- per channel, a new tensor
--   for xb, yb, idx in data.batches(ds, 64, { shuffle = true, seed = 1 }) do ... end
--
-- A data set is a plain table:
--   images   tensor (N, C, H, W), float32 in [0, 1]
--   labels   Lua array of N class ids, 0-based as in the data sets (labels[i]
--            is the class of item i; items are 1-based). nil for an image folder
--            without class subfolders.
--   n        N
--   classes  Lua array of class names; classes[c + 1] names class id c
--   mean, std  per-channel normalization constants (tables of C numbers) when
--            the data set has standard ones (Fashion-MNIST, CIFAR-10)
--   name, split, files (image folders: the path of each item)
--
-- Items are 1-based (ds.labels[i], data.get(ds, i)); class ids are 0-based.
local ffi = require 'ffi'
local core = require 'moreau.core'
local T = require 'moreau.tensor'
local options = require 'moreau.options'
local C, check, handle = core.C, core.check, core.handle

local data = {}

-- ------------------------------------------------------------- constants

--- The ten Fashion-MNIST classes, in class-id order (id 0 = 'T-shirt/top').
data.fashion_mnist_classes = { 'T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal',
  'Shirt', 'Sneaker', 'Bag', 'Ankle boot' }
--- The ten CIFAR-10 classes, in class-id order.
data.cifar10_classes = { 'airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse',
  'ship', 'truck' }

-- Per-channel statistics of the training sets (pixels in [0, 1]), the
-- constants recipes normalize with.
data.FASHION_MNIST_MEAN = { 0.2860 }
data.FASHION_MNIST_STD = { 0.3530 }
data.CIFAR10_MEAN = { 0.4914, 0.4822, 0.4465 }
data.CIFAR10_STD = { 0.2470, 0.2435, 0.2616 }

--- Where Debian's dataset-fashion-mnist package puts its files.
data.FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist'

local function copy(t)
  local r = {}
  for i, v in ipairs(t) do r[i] = v end
  return r
end

local function exists(path)
  local f = io.open(path, 'rb')
  if f then f:close() return true end
  return false
end

local function int32_to_table(p, n)
  local t = {}
  for i = 0, n - 1 do t[i + 1] = p[i] end
  return t
end

local img_out = ffi.new('mr_tensor*[1]')
local lab_out = ffi.new('int32_t*[1]')
local n_out = ffi.new('int64_t[1]')

-- ------------------------------------------------------------- raw files

-- The loaders below raise the engine's message at `level` (1 = their caller),
-- so a failure inside data.fashion_mnist points at the recipe's line.
local function idx_images(path, level)
  check(C.mr_idx_load_images(img_out, path), level + 1)
  return T.wrap(img_out[0])
end

local function idx_labels(path, level)
  check(C.mr_idx_load_labels(lab_out, n_out, path), level + 1)
  local p, n = lab_out[0], tonumber(n_out[0])
  local t = int32_to_table(p, n)
  C.mr_labels_free(p)
  return t
end

local function cifar_batch(path, level)
  check(C.mr_cifar_load(img_out, lab_out, n_out, path), level + 1)
  local x = T.wrap(img_out[0])
  local p, n = lab_out[0], tonumber(n_out[0])
  local t = int32_to_table(p, n)
  C.mr_labels_free(p)
  return x, t
end

-- The h x w window of img (1, C, H, W) whose top-left pixel is (top, left),
-- 0-based, as a new tensor.
local function crop(img, top, left, h, w)
  local Cn, H, W = core.size(img, 2), core.size(img, 3), core.size(img, 4)
  local src = core.floats(img)
  local out = T.zeros { 1, Cn, h, w }
  local dst = core.floats(out)
  for c = 0, Cn - 1 do
    for y = 0, h - 1 do
      local from, to = (c * H + top + y) * W + left, (c * h + y) * w
      for x = 0, w - 1 do dst[to + x] = src[from + x] end
    end
  end
  return core.store(out, dst)
end

-- The largest side mr_image_load resizes to (its doc comment in moreau.h).
local IMAGE_MAX_SIDE = 32768

-- (probe: read the file's own size and channels first, to report them; the
-- image folder, which loads many files, does not)
local function image(path, opts, level, probe)
  opts = options.fill('data.load_image', { channels = 0, fit = 'stretch', _extra = { size = true },
    _domains = { fit = 'one of stretch, crop', size = 'table' } }, opts, level) -- channels: the engine checks them
  local h, w = 0, 0
  if opts.size then h, w = opts.size[1], opts.size[2] end
  local info = { resized = false, cropped = false }
  if opts.size and (probe or opts.fit == 'crop') then
    -- the file's own size and channels first (what was done is reported)
    check(C.mr_image_load(img_out, path, 0, 0, 0), level + 1)
    local full = T.wrap(img_out[0])
    info.file_channels, info.file_height, info.file_width = core.size(full, 2), core.size(full, 3),
      core.size(full, 4)
    full:free()
  end
  if opts.fit == 'crop' and opts.size then
    -- resize so the image covers h x w, keeping its aspect, and cut the
    -- centre (torchvision's Resize(min side) + CenterCrop)
    local H, W = info.file_height, info.file_width
    local scale = math.max(h / H, w / W)
    local rh, rw = math.max(h, math.floor(H * scale + 0.5)), math.max(w, math.floor(W * scale + 0.5))
    -- mr_image_load resizes to at most 32768 pixels a side (moreau.h): a
    -- picture far wider or taller than H x W would need more before its
    -- centre is cut; refused, with the sizes and the fit that does it
    if rh > IMAGE_MAX_SIDE or rw > IMAGE_MAX_SIDE then
      error(("data.load_image: fit = 'crop' would resize %s (%d wide × %d high) to %d wide × %d high to cover " ..
        "%d wide × %d high keeping its aspect, over the %d pixels a side the loader resizes to; its centre " ..
        "would keep %.3g %% of the picture: fit = 'stretch' resizes the whole picture to %d wide × %d high"):format(
        path, W, H, rw, rh, w, h, IMAGE_MAX_SIDE, 100 * (w * h) / (rw * rh), w, h), level)
    end
    check(C.mr_image_load(img_out, path, opts.channels, rh, rw), level + 1)
    local img = T.wrap(img_out[0])
    info.resized = rh ~= H or rw ~= W
    if rh == h and rw == w then return img, info end
    local top, left = math.floor((rh - h) / 2), math.floor((rw - w) / 2)
    info.cropped = { top = top, left = left, from = { rh, rw } }
    return crop(img, top, left, h, w), info
  end
  check(C.mr_image_load(img_out, path, opts.channels, h, w), level + 1)
  info.resized = opts.size ~= nil and (info.file_height == nil or h ~= info.file_height or w ~= info.file_width)
  return T.wrap(img_out[0]), info
end

--- Images of an IDX file (plain or .gz) as a tensor (N, 1, rows, cols) in [0, 1].
function data.load_idx_images(path) return idx_images(path, 2) end

--- Labels of an IDX file (plain or .gz) as a Lua array of 0-based class ids.
function data.load_idx_labels(path) return idx_labels(path, 2) end

--- Sets the loader budget (bytes) of every loader in the process: the most
-- bytes a loaded image (float32 samples, and its resized copy) or IDX file
-- (float32 pixels, int32 labels) may take, checked against the header before
-- anything is allocated; nil or 0 restores the default (256 MiB, see
-- mr_set_loader_budget in moreau.h). RETURN: the budget in force.
function data.set_loader_budget(bytes)
  if bytes ~= nil and (type(bytes) ~= 'number' or not (bytes >= 0 and bytes < 2 ^ 62) or bytes ~= math.floor(bytes)) then
    error('data.set_loader_budget: bytes must be an integer in [0, 2^62), got ' .. tostring(bytes), 2)
  end
  C.mr_set_loader_budget(bytes or 0)
  return data.loader_budget()
end

--- The loader budget in force (bytes).
function data.loader_budget() return tonumber(C.mr_get_loader_budget()) end

--- One CIFAR-10 binary batch: images (N, 3, 32, 32) in [0, 1], labels (Lua array).
function data.load_cifar_batch(path) return cifar_batch(path, 2) end

--- One image file as a (1, C, H, W) tensor in [0, 1].
-- ARGS: path; opts {channels = 0 (as in the file) | 1 | 3 | 4, size = {H, W}
--   (nil: keep), fit = 'stretch' (resize to H x W whatever the file's aspect)
--   | 'crop' (resize so the image covers H x W, keeping its aspect, then cut
--   the centre: torchvision's Resize + CenterCrop)}
-- RETURN: the image, and what was done {resized, cropped = false or {top,
--   left, from = {h, w}} (the window of the resized image, 0-based), and when
--   a size is given the file's file_channels, file_height, file_width}.
function data.load_image(path, opts) return image(path, opts, 2, true) end

--- Writes an image tensor (1, C, H, W), C in {1, 3, 4}, values in [0, 1]
-- (clamped), as an 8-bit PNG. Images are batch first, as everywhere in moreau:
-- a 3-D tensor is refused.
function data.save_png(path, img)
  if not T.is(img) then error('data.save_png: img must be a tensor, got ' .. type(img), 2) end
  if core.ndim(img) ~= 4 or core.size(img, 1) ~= 1 then
    local s = core.shape(img)
    local hint = #s == 3 and (', a 3-D tensor; images are batch first: add a batch dim, x:reshape{1, %d, %d, %d}')
      :format(s[1], s[2], s[3]) or ''
    error(('data.save_png: expected an image (1, C, H, W), got %s%s'):format(table.concat(s, 'x'), hint), 2)
  end
  core.check_write(path, 2)
  check(C.mr_image_write_png(path, handle(img)))
end

-- ------------------------------------------------------------ data sets

--- Fashion-MNIST from its gzipped (or plain) IDX files.
-- ARGS: opts {split = 'train' (60000 items) | 'test' (10000),
--             dir = nil (else $MOREAU_FMNIST_DIR, else data.FASHION_MNIST_DIR)}
-- RETURN: a data set: images (N, 1, 28, 28), labels, n, classes, mean, std
function data.fashion_mnist(opts)
  opts = opts or {}
  local split = opts.split or 'train'
  local prefix = ({ train = 'train', test = 't10k' })[split]
  if not prefix then
    error("data.fashion_mnist: split must be 'train' or 'test', got " .. tostring(split), 2)
  end
  local dir = opts.dir or os.getenv('MOREAU_FMNIST_DIR') or data.FASHION_MNIST_DIR
  local function find(stem)
    for _, name in ipairs { stem .. '.gz', stem } do
      local p = dir .. '/' .. name
      if exists(p) then return p end
    end
    error(('data.fashion_mnist: no %s(.gz) in %s (install Debian\'s dataset-fashion-mnist, '
      .. 'or pass dir= / set MOREAU_FMNIST_DIR)'):format(stem, dir), 3)
  end
  local ipath = find(prefix .. '-images-idx3-ubyte')
  local lpath = find(prefix .. '-labels-idx1-ubyte')
  local images = idx_images(ipath, 2)
  local labels = idx_labels(lpath, 2)
  if #labels ~= core.size(images, 1) then
    error(('data.fashion_mnist: %s holds %d images but %s holds %d labels'):format(ipath,
      core.size(images, 1), lpath, #labels), 2)
  end
  for i, c in ipairs(labels) do
    if c > 9 then
      error(('data.fashion_mnist: %s: label %d of item %d is outside 0..9'):format(lpath, c, i), 2)
    end
  end
  return {
    images = images, labels = labels, n = #labels,
    classes = copy(data.fashion_mnist_classes),
    mean = copy(data.FASHION_MNIST_MEAN), std = copy(data.FASHION_MNIST_STD),
    name = 'fashion-mnist', split = split, files = { images = ipath, labels = lpath },
  }
end

--- CIFAR-10 from binary batches the user brings.
-- ARGS: opts {files = {'data_batch_1.bin', ...}}  (in this order)
--   or  opts {dir = 'cifar-10-batches-bin', split = 'train' (data_batch_1..5) | 'test' (test_batch)}
-- RETURN: a data set: images (N, 3, 32, 32), labels, n, classes, mean, std
function data.cifar10(opts)
  opts = opts or {}
  local files = opts.files
  local split = opts.split
  if not files then
    if not opts.dir then error('data.cifar10: give files = {...} or dir = ...', 2) end
    split = split or 'train'
    if split == 'train' then
      files = {}
      for i = 1, 5 do files[i] = ('%s/data_batch_%d.bin'):format(opts.dir, i) end
    elseif split == 'test' then
      files = { opts.dir .. '/test_batch.bin' }
    else
      error("data.cifar10: split must be 'train' or 'test', got " .. tostring(split), 2)
    end
  end
  if type(files) == 'string' then files = { files } end
  if #files == 0 then error('data.cifar10: files is empty', 2) end
  local parts, labels, n = {}, {}, 0
  for i, f in ipairs(files) do
    local x, y = cifar_batch(f, 2)
    parts[i] = x
    for _, c in ipairs(y) do labels[#labels + 1] = c end
    n = n + core.size(x, 1)
  end
  local images
  if #parts == 1 then
    images = parts[1]
  else
    -- One allocation for the whole set; each part is freed as soon as it is copied.
    images = T.zeros { n, 3, 32, 32 }
    local item = 0
    for i, x in ipairs(parts) do
      check(C.mr_tensor_copy_items(handle(images), item, handle(x), 0, core.size(x, 1)))
      item = item + core.size(x, 1)
      x:free()
      parts[i] = nil
    end
  end
  return {
    images = images, labels = labels, n = n,
    classes = copy(data.cifar10_classes),
    mean = copy(data.CIFAR10_MEAN), std = copy(data.CIFAR10_STD),
    name = 'cifar10', split = split, files = copy(files),
  }
end

-- The image files of a folder: the formats mr_image_load reads (PNG, JPEG,
-- PNM), and BMP and GIF, which it refuses by name, so that a folder holding
-- them stops with that clear message instead of silently losing those images.
local image_ext = { png = true, jpg = true, jpeg = true, bmp = true, gif = true,
  ppm = true, pgm = true, pnm = true }

-- Entries of a directory (names, sorted bytewise) and whether each is a directory.
local function list_dir(dir)
  local ok, lfs = pcall(require, 'lfs')
  local names, isdir = {}, {}
  if ok then
    local okd, iter, state = pcall(lfs.dir, dir)
    if not okd then error(('cannot read directory %s: %s'):format(dir, tostring(iter)), 0) end
    for name in iter, state do
      if name ~= '.' and name ~= '..' then
        names[#names + 1] = name
        isdir[name] = lfs.attributes(dir .. '/' .. name, 'mode') == 'directory'
      end
    end
  else
    -- Without LuaFileSystem: ls, one name a line (names with newlines are not supported).
    local q = "'" .. dir:gsub("'", "'\\''") .. "'"
    local p = io.popen('ls -1A ' .. q .. ' 2>/dev/null && echo /ok')
    local okl = false
    for line in p:lines() do
      if line == '/ok' then okl = true else names[#names + 1] = line end
    end
    p:close()
    if not okl then error(('cannot read directory %s'):format(dir), 0) end
    for _, name in ipairs(names) do
      local t = io.popen('test -d ' .. q .. "/'" .. name:gsub("'", "'\\''") .. "' && echo d")
      isdir[name] = t:read('*l') == 'd'
      t:close()
    end
  end
  table.sort(names)
  return names, isdir
end

local function is_image(name)
  local ext = name:match('%.([^.]+)$')
  return ext ~= nil and image_ext[ext:lower()] == true and name:sub(1, 1) ~= '.'
end

--- A folder of images. With subfolders, each subfolder is a class (class ids in
-- sorted order of the subfolder names, as torchvision's ImageFolder; files
-- directly in dir are ignored); without, every image in dir is an item and
-- labels is nil. Files are taken in sorted order of their names.
-- ARGS: opts {dir, size = {H, W} (nil: every image must have the first one's
--             size), channels = 3 (1, 3 or 4)}
-- RETURN: a data set: images (N, C, H, W), labels (or nil), n, classes, files
function data.image_folder(opts)
  opts = opts or {}
  local dir = opts.dir
  if type(dir) ~= 'string' then error('data.image_folder: dir must be a path', 2) end
  local channels = opts.channels or 3
  local ok, names, isdir = pcall(list_dir, dir)
  if not ok then error('data.image_folder: ' .. tostring(names), 2) end
  local classes, files, labels = {}, {}, {}
  for _, name in ipairs(names) do
    if isdir[name] and name:sub(1, 1) ~= '.' then classes[#classes + 1] = name end
  end
  if #classes > 0 then
    for c, cname in ipairs(classes) do
      local okc, sub, subdir = pcall(list_dir, dir .. '/' .. cname)
      if not okc then error('data.image_folder: ' .. tostring(sub), 2) end
      for _, name in ipairs(sub) do
        if not subdir[name] and is_image(name) then
          files[#files + 1] = dir .. '/' .. cname .. '/' .. name
          labels[#labels + 1] = c - 1
        end
      end
    end
  else
    labels = nil
    for _, name in ipairs(names) do
      if not isdir[name] and is_image(name) then files[#files + 1] = dir .. '/' .. name end
    end
  end
  if #files == 0 then error('data.image_folder: no image files in ' .. dir, 2) end
  local images, per
  for i, f in ipairs(files) do
    local x = image(f, { channels = channels, size = opts.size }, 2, false)
    if i == 1 then
      local s = core.shape(x)
      s[1] = #files
      per = core.numel(x)
      -- the whole set against the loader budget before it is allocated (each
      -- file was checked alone; a thousand small files of large images are not)
      local bytes, budget = #files * per * 4, data.loader_budget()
      if bytes > budget then
        error(('data.image_folder: %d images of %s take %.0f bytes as float32, over the loader budget of %d ' ..
          'bytes (data.set_loader_budget; or give size = {H, W})'):format(#files, 'C×H×W = ' .. table.concat(s, 'x', 2), bytes,
          budget), 2)
      end
      images = T.zeros(s)
    elseif core.numel(x) ~= per or core.size(x, 3) ~= core.size(images, 3) then
      error(('data.image_folder: %s is C×H×W = %s, but %s is %s; give size = {H, W} to resize'):format(
        f, table.concat(core.shape(x), 'x', 2), files[1], table.concat(core.shape(images), 'x', 2)), 2)
    end
    check(C.mr_tensor_copy_items(handle(images), i - 1, handle(x), 0, 1))
    x:free()
  end
  return {
    images = images, labels = labels, n = #files, classes = classes, files = files,
    name = 'image_folder', dir = dir,
  }
end

-- --------------------------------------------------------- normalization

local function channel_stats(x, mean, std, what)
  local nd = core.ndim(x)
  if nd == 3 then
    local s = core.shape(x)
    error(('%s: expected (N, C, H, W), got %s, a 3-D tensor; images are batch first: add a batch dim, '
      .. 'x:reshape{1, %d, %d, %d}'):format(what, table.concat(s, 'x'), s[1], s[2], s[3]), 3)
  elseif nd ~= 4 then
    error(('%s: expected (N, C, H, W), got %s'):format(what, table.concat(core.shape(x), 'x')), 3)
  end
  local nc = core.size(x, nd - 2)
  local function per_channel(v, name)
    if type(v) == 'number' then v = { v } end
    if type(v) ~= 'table' or (#v ~= 1 and #v ~= nc) then
      error(('%s: %s must be a number or a table of 1 or %d numbers'):format(what, name, nc), 4)
    end
    local r = {}
    for c = 1, nc do
      r[c] = v[#v == 1 and 1 or c]
      if type(r[c]) ~= 'number' then error(('%s: %s[%d] is not a number'):format(what, name, c), 4) end
      if r[c] ~= r[c] or math.abs(r[c]) == math.huge then -- every image would come out NaN or ±inf
        error(('%s: %s[%d] = %s must be finite'):format(what, name, c, tostring(r[c])), 4)
      end
    end
    return r
  end
  local m, s = per_channel(mean, 'mean'), per_channel(std, 'std')
  for c = 1, nc do
    if not (s[c] > 0) then error(('%s: std[%d] = %s must be > 0'):format(what, c, tostring(s[c])), 3) end
  end
  local plane = core.size(x, nd - 1) * core.size(x, nd)
  return m, s, nc, plane, core.size(x, 1)
end

-- y = a[c] * x + b[c] per channel (in double, rounded once), into a new tensor.
local function affine(x, a, b, nc)
  local y = x:clone()
  local sa, sb = ffi.new('double[?]', nc), ffi.new('double[?]', nc)
  for c = 1, nc do sa[c - 1], sb[c - 1] = a[c], b[c] end
  check(C.mr_tensor_channel_affine_(handle(y), sa, sb))
  return y
end

--- (x - mean[c]) / std[c] per channel, as a new tensor.
-- ARGS: x (N, C, H, W); mean, std: numbers or tables of C numbers
function data.normalize(x, mean, std)
  local m, s, nc = channel_stats(x, mean, std, 'data.normalize')
  local a, b = {}, {}
  for c = 1, nc do a[c], b[c] = 1 / s[c], -m[c] / s[c] end
  return affine(x, a, b, nc)
end

--- x * std[c] + mean[c] per channel (the inverse of normalize), as a new tensor.
function data.denormalize(x, mean, std)
  local m, s, nc = channel_stats(x, mean, std, 'data.denormalize')
  return affine(x, s, m, nc)
end

-- ------------------------------------------------------- items and batches

local function check_ds(ds, what)
  if type(ds) ~= 'table' or not T.is(ds.images) or type(ds.n) ~= 'number' then
    error(what .. ': expected a data set (a table with images and n)', 3)
  end
end

--- Item i (1-based) as a (1, C, H, W) tensor and its class id (nil without labels).
function data.get(ds, i)
  check_ds(ds, 'data.get')
  if type(i) ~= 'number' or i < 1 or i > ds.n or i ~= math.floor(i) then
    error(('data.get: item %s outside 1..%d'):format(tostring(i), ds.n), 2)
  end
  return ds.images:select(i), ds.labels and ds.labels[i]
end

--- Items i..j (1-based, inclusive) as a new data set (images copied).
function data.subset(ds, i, j)
  check_ds(ds, 'data.subset')
  j = j or ds.n
  if type(i) ~= 'number' or type(j) ~= 'number' or i < 1 or j > ds.n or i > j
    or i ~= math.floor(i) or j ~= math.floor(j) then
    error(('data.subset: items %s..%s outside 1..%d'):format(tostring(i), tostring(j), ds.n), 2)
  end
  local sub = {}
  for k, v in pairs(ds) do sub[k] = v end
  sub.images = ds.images:narrow(i, j)
  sub.n = j - i + 1
  if ds.labels then
    sub.labels = {}
    for k = i, j do sub.labels[k - i + 1] = ds.labels[k] end
  end
  if ds.name == 'image_folder' and ds.files then
    sub.files = {}
    for k = i, j do sub.files[k - i + 1] = ds.files[k] end
  end
  return sub
end

--- A permutation of 1..n: Fisher-Yates driven by the engine's counter-based RNG
-- (uniforms of stream (seed, stream)), so a seed gives the same order on every
-- machine. j = floor(u * i) + 1 with u a float32 uniform, so the bias is below
-- n / 2^24. ARGS: n (integer >= 0); seed, stream (default 0; each an integer
-- in [0, 2^53), the options domain 'seed': the engine's counters are uint64).
function data.permutation(n, seed, stream)
  if type(n) ~= 'number' or n ~= math.floor(n) or not (n >= 0 and n < 2 ^ 31) then
    error('data.permutation: n must be an integer in [0, 2^31), got ' .. options.show(n), 2)
  end
  if seed ~= nil then options.check('data.permutation', 'seed', seed, 'seed', 2) end
  if stream ~= nil then options.check('data.permutation', 'stream', stream, 'seed', 2) end
  local perm = {}
  for i = 1, n do perm[i] = i end
  if n < 2 then return perm end
  local u = ffi.new('float[?]', n - 1)
  check(C.mr_rng_uniform(u, n - 1, seed or 0, stream or 0, 0))
  for i = n, 2, -1 do
    local j = math.floor(u[n - i] * i) + 1
    if j > i then j = i end
    perm[i], perm[j] = perm[j], perm[i]
  end
  return perm
end

--- Iterates over a data set in batches of batch_size items.
-- ARGS: ds; batch_size; opts {shuffle = false, seed = 0, epoch = 0 (the RNG
--       stream: pass the epoch number for a fresh order each epoch),
--       drop_last = false (skip a final short batch)}
-- RETURN: an iterator yielding x (B, C, H, W) (a new tensor), labels (Lua array
--         of B class ids, or nil), idx (Lua array of the B item numbers)
--   for x, y, idx in data.batches(ds, 64, { shuffle = true, seed = 1 }) do ... end
function data.batches(ds, batch_size, opts)
  check_ds(ds, 'data.batches')
  opts = opts or {}
  if type(batch_size) ~= 'number' or batch_size < 1 or batch_size ~= math.floor(batch_size)
    or batch_size == math.huge then
    error('data.batches: batch_size must be a positive integer, got ' .. tostring(batch_size), 2)
  end
  if opts.seed ~= nil then options.check('data.batches', 'seed', opts.seed, 'seed', 2) end
  if opts.epoch ~= nil then options.check('data.batches', 'epoch', opts.epoch, 'seed', 2) end
  local n = ds.n
  local order
  if opts.shuffle then
    order = data.permutation(n, opts.seed or 0, opts.epoch or 0)
  else
    order = {}
    for i = 1, n do order[i] = i end
  end
  local shape = core.shape(ds.images)
  local index = ffi.new('int64_t[?]', math.min(batch_size, n))
  local pos = 1
  return function()
    if pos > n then return nil end
    local b = math.min(batch_size, n - pos + 1)
    if b < batch_size and opts.drop_last then
      pos = n + 1
      return nil
    end
    shape[1] = b
    local x = T.zeros(shape)
    local y = ds.labels and {} or nil
    local idx = {}
    for k = 1, b do
      local i = order[pos + k - 1]
      index[k - 1] = i - 1
      idx[k] = i
      if y then y[k] = ds.labels[i] end
    end
    check(C.mr_tensor_index_select(handle(x), handle(ds.images), index, b))
    pos = pos + b
    return x, y, idx
  end
end

return data
