-- scripts/bench_dataset.lua — throughput of the data-set command next to a
-- PyTorch batch-1 loop of the same methods, in one run (README, "Explaining
-- a data set"):
--
--   LUA_PATH='bindings/?.lua;bindings/?/init.lua;;' luajit scripts/bench_dataset.lua \
--     [--images=10000] [--torch_images=200] [--threads=2] [--dir=results/bench-dataset]
--
-- 1. `moreau explain --data=fashion-mnist:test --range=0:IMAGES --methods=
--    gradient,smoothgrad,sparse_moreaugrad --sparse_moreaugrad.T=100
--    --sparse_moreaugrad.m=16` (SmoothGrad: the paper preset's 50 samples)
--    into DIR/bench.db, timed on the wall clock; each method's images/s from
--    the seconds the store records per (image, method);
-- 2. scripts/bench_dataset.py: Debian's PyTorch explains the first
--    TORCH_IMAGES images one at a time with the same methods and settings,
--    each explaining the class the store's map explains.
-- Prints both and their ratios as one JSON object on the last line.
local ffi = require 'ffi'
local moreau = require 'moreau'
local store = require 'moreau.store'
local core = require 'moreau.core'

local o = { images = 10000, torch_images = 200, threads = 2, dir = 'results/bench-dataset' }
for _, a in ipairs { ... } do
  local k, v = a:match('^%-%-([%w_]+)=(.*)$')
  if not k or o[k] == nil then error('bench_dataset: unknown argument ' .. a .. ' (--images, --torch_images, --threads, --dir)', 0) end
  o[k] = tonumber(v) or v
end
local root = require('moreau.isolation').realpath(core.root)
require('moreau.report').mkdir_p(o.dir)
local db = o.dir .. '/bench.db'
local t0 = core.C.mr_wall_seconds()
local cmd = ('MOREAU_LIB=%q %q/scripts/moreau --threads=%d --progress=lines explain --data=fashion-mnist:test ' ..
  '--range=0:%d --methods=gradient,smoothgrad,sparse_moreaugrad --sparse_moreaugrad.T=100 ' ..
  '--sparse_moreaugrad.m=16 --store=%q'):format(core.lib_path, root, o.threads, o.images, db)
io.stderr:write(cmd, '\n')
assert(os.execute(cmd) == 0, 'the data-set command failed')
local wall = core.C.mr_wall_seconds() - t0

local s = store.open(db, { readonly = true })
local res = { engine = { images = s:count(), wall_s = wall, images_per_s = s:count() / wall, threads = o.threads,
  backend = s:info().versions.backend }, torch = nil }
for _, m in ipairs { 'gradient', 'smoothgrad', 'sparse_moreaugrad' } do
  local secs = s:metric(m, 'seconds')
  local sum = 0
  for _, v in ipairs(secs) do sum = sum + v end
  res.engine[m .. '_images_per_s'] = #secs / sum
end
res.engine.options = s:params()

-- the first torch_images images, normalized, and the classes explained
local test = moreau.data.fashion_mnist { split = 'test' }
local card = moreau.models.card('resnet_fmnist')
local n = math.min(o.torch_images, s:count())
local x = moreau.data.normalize(test.images:narrow(1, n), card.data.normalization.mean, card.data.normalization.std)
local f = assert(io.open(o.dir .. '/x.f32', 'wb'))
f:write(ffi.string(x:data(), 4 * x:numel()))
f:close()
local targets = {}
for i = 1, n do targets[i] = s:image(i - 1).target end
s:close()
f = assert(io.open(o.dir .. '/labels.json', 'wb'))
f:write('[' .. table.concat(targets, ',') .. ']')
f:close()
local p = io.popen(('/usr/bin/python3 %q/scripts/bench_dataset.py --input=%q --labels=%q --images=%d --threads=%d ' ..
  '--weights=%q/models/resnet_fmnist.safetensors --samples=50 --T=100 --m=16 --K=100 --eta=0.1'):format(root,
  o.dir .. '/x.f32', o.dir .. '/labels.json', n, o.threads, root))
local out = p:read('*a')
p:close()
local line = out:match('([^\n]+)%s*$')
local ok, t = pcall(require('cjson').decode, line or '')
if ok then
  res.torch = t
  for _, m in ipairs { 'gradient', 'smoothgrad', 'sparse_moreaugrad', 'all' } do
    local e = m == 'all' and res.engine.images_per_s or res.engine[m .. '_images_per_s']
    res['speedup_' .. m] = e / t[m .. '_images_per_s']
  end
else
  res.torch_error = out
end
print(require('cjson').encode(res))
