-- Batch and thread-count invariance of a net's four passes (docs/promises.md,
-- sections 2 and 3): item 40 of a batch of 64 gives the same bits alone, as
-- item 3 of a batch of 7 and as item 40 of 64, on 1, 2 and 3 threads, for
-- forward, VJP, JVP and the HVP's reverse pass. Used by
-- tests/batch_invariance_spec.lua and, in bf16, tests/precision_spec.lua.
local core = require 'moreau.core'
local T = require 'moreau.tensor'
local C = core.C

local invariance = {}

local BIG, POS_BIG = 64, 40   -- item 40 of a batch of 64
local SMALL, POS_SMALL = 7, 3 -- item 3 of a batch of 7
local THREADS = { 1, 2, 3 }

local function with_seed(seed, msg) return ('%s (seed %d)'):format(msg, seed) end

-- Rows 1..k of t, then row `item` (1-based) of t, then rows k+1..n-1: the
-- item at 0-based position k of a batch of n drawn from t's other rows.
local function place(t, item, k, n)
  local parts = {}
  if k > 0 then parts[#parts + 1] = t:narrow(1, k) end
  parts[#parts + 1] = t:select(item)
  if n - k - 1 > 0 then parts[#parts + 1] = t:narrow(k + 1, n - 1) end
  return T.cat(parts)
end

-- The four passes on batch x (tangent v, output cotangents u and w); returns
-- the rows of item `pos` (0-based) of each result.
local function passes(net, x, v, u, w, pos)
  local y = net:forward(x)
  local gx = net:backward(u)
  local _, dy = net:jvp(x, v)
  local _, dgx = net:hvp_backward(u, w)
  local r = {}
  for k, t in pairs { forward = y, vjp = gx, jvp = dy, hvp = dgx } do r[k] = t:select(pos + 1) end
  return r
end

-- Asserts item POS_BIG of random (BIG, input shape) data gives the same bits
-- alone, at POS_SMALL of SMALL items and at POS_BIG of BIG items, for every
-- thread count. opts: scale (input std, 1).
function invariance.check(net, seed, what, opts)
  opts = opts or {}
  net:eval()
  local shape = { BIG }
  for _, d in ipairs(net:input_shape()) do shape[#shape + 1] = d end
  local oshape = { BIG }
  for _, d in ipairs(net:output_shape()) do oshape[#oshape + 1] = d end
  local data = {
    x = T.randn(shape, { seed = seed, stream = 1, std = opts.scale or 1 }),
    v = T.randn(shape, { seed = seed, stream = 2 }),
    u = T.randn(oshape, { seed = seed, stream = 3 }),
    w = T.randn(oshape, { seed = seed, stream = 4 }),
  }
  local item = POS_BIG + 1
  local function batch(n, k)
    local b = {}
    for name, t in pairs(data) do b[name] = n == BIG and t or place(t, item, k, n) end
    return b
  end
  local layouts = { { n = 1, k = 0 }, { n = SMALL, k = POS_SMALL }, { n = BIG, k = POS_BIG } }
  local before = C.mr_get_num_threads()
  local ok, err = pcall(function()
    local ref
    for _, threads in ipairs(THREADS) do
      C.mr_set_num_threads(threads)
      for _, l in ipairs(layouts) do
        local b = batch(l.n, l.k)
        local r = passes(net, b.x, b.v, b.u, b.w, l.k)
        if not ref then
          ref = r
        else
          for _, pass in ipairs { 'forward', 'vjp', 'jvp', 'hvp' } do
            local d = r[pass]:max_abs_diff(ref[pass])
            assert(d == 0, with_seed(seed, ('%s: %s of the item at position %d of %d on %d threads '
              .. 'differs from the item alone on 1 thread by %.3g'):format(what, pass, l.k, l.n, threads, d)))
          end
        end
      end
    end
  end)
  C.mr_set_num_threads(before)
  if not ok then error(err, 0) end
end

return invariance
