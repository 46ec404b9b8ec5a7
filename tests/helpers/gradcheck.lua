--- Finite-difference checks of a network's VJP, JVP, VJP tangent (HVP) and
-- parameter gradients, against central differences of the forward pass.
--
--   local gc = require 'helpers.gradcheck'
--   local r = gc.check {
--     input = { 3, 6, 6 }, batch = 2, seed = 7,
--     build = function(b, x) return b:conv2d('c', x, 3, 4, 3, { padding = 1 }) end,
--   }
--   -- r.jvp, r.vjp, r.hvp, r.hvp_dgy, r.adjoint: relative errors ‖a−b‖/‖a+b‖
--   gc.assert_ok(r, 1e-3)
--
-- What is compared (u, v random, seeded; F the network):
--   jvp      J v                       vs (F(x+hv) − F(x−hv)) / 2h
--   vjp      J^T u                     vs, coordinate by coordinate, (⟨u,F(x+h e_i)⟩ − ⟨u,F(x−h e_i)⟩) / 2h
--            (random directions instead of coordinates when x has more than opts.max_coords entries)
--   adjoint  ⟨u, J v⟩                  vs ⟨J^T u, v⟩  (no differencing)
--   hvp      d/de J(x+ev)^T u          vs (J(x+hv)^T u − J(x−hv)^T u) / 2h
--   hvp_dgy  tangent with dgy = w minus tangent with dgy = 0   vs J^T w
-- Sums are taken in double precision; the network computes in float32, so h
-- is a compromise between truncation (h²) and rounding (eps/h): 1e-2 by default.
local T = require 'moreau.tensor'
local nn = require 'moreau.nn'

local gc = {}

local function rel(a, b)
  local num, den = 0, 0
  local pa, pb = a:data(), b:data()
  for i = 0, a:numel() - 1 do
    num = num + (pa[i] - pb[i]) ^ 2
    den = den + (pa[i] + pb[i]) ^ 2
  end
  if den == 0 then return math.sqrt(num) end
  return math.sqrt(num) / math.sqrt(den)
end
gc.rel = rel

local function scalar_rel(a, b)
  local den = math.abs(a) + math.abs(b)
  if den == 0 then return 0 end
  return math.abs(a - b) / den
end

--- x + s*v as a new tensor
local function axpy(x, s, v) return x:clone():add_(v, s) end

--- Builds the network of opts.build on an input of opts.input.
function gc.net(opts)
  local b = nn.builder(opts.input, { seed = opts.seed or 0 })
  local out = opts.build(b, b.input)
  local net = b:build(out)
  if opts.init then opts.init(net) end
  return net
end

--- Runs every check. opts: input (sample shape), batch (2), seed (1), h (1e-2),
-- build(b, x) -> node, init(net) (optional: set parameters), x (optional input
-- tensor), scale (input std, 1), max_coords (400).
-- RETURN: table of relative errors and the net.
function gc.check(opts)
  local seed = opts.seed or 1
  local h = opts.h or 1e-2
  local net = opts.net or gc.net(opts)
  local shape = { opts.batch or 2 }
  for _, d in ipairs(net:input_shape()) do shape[#shape + 1] = d end
  local x = opts.x or T.randn(shape, { seed = seed, stream = 1, std = opts.scale or 1 })
  local v = T.randn(shape, { seed = seed, stream = 2 })
  local y = net:forward(x)
  local u = T.randn(y:shape(), { seed = seed, stream = 3 })
  local w = T.randn(y:shape(), { seed = seed, stream = 4 })
  local r = { seed = seed }

  local function f(xx) return net:forward(xx) end
  local function ufx(xx) return f(xx):dot(u) end

  -- JVP
  local _, dy = net:jvp(x, v)
  local fd = f(axpy(x, h, v)):add_(f(axpy(x, -h, v)), -1):mul_(1 / (2 * h))
  r.jvp = rel(dy, fd)

  -- VJP
  net:forward(x)
  local g = net:backward(u)
  r.adjoint = scalar_rel(u:dot(dy), g:dot(v))
  local n = x:numel()
  local max_coords = opts.max_coords or 400
  if n <= max_coords then
    local gfd = T.zeros(shape)
    local xp = x:clone()
    local p, q = xp:data(), gfd:data()
    for i = 0, n - 1 do
      local x0 = p[i]
      p[i] = x0 + h
      local fp = ufx(xp)
      p[i] = x0 - h
      local fm = ufx(xp)
      p[i] = x0
      q[i] = (fp - fm) / (2 * h)
    end
    r.vjp = rel(g, gfd)
  else
    local a, bb = T.zeros { 24 }, T.zeros { 24 }
    for k = 1, 24 do
      local d = T.randn(shape, { seed = seed, stream = 100 + k })
      a:data()[k - 1] = g:dot(d)
      bb:data()[k - 1] = (ufx(axpy(x, h, d)) - ufx(axpy(x, -h, d))) / (2 * h)
    end
    r.vjp = rel(a, bb)
  end

  -- VJP tangent (HVP)
  net:jvp(x, v)
  local _, dgx0 = net:hvp_backward(u, nil)
  net:jvp(axpy(x, h, v), v)
  local gp = net:hvp_backward(u, nil)
  net:jvp(axpy(x, -h, v), v)
  local gm = net:hvp_backward(u, nil)
  local hfd = gp:add_(gm, -1):mul_(1 / (2 * h))
  r.hvp = rel(dgx0, hfd)
  r.hvp_norm = dgx0:norm()
  net:jvp(x, v)
  local _, dgxw = net:hvp_backward(u, w)
  net:forward(x)
  local jw = net:backward(w)
  r.hvp_dgy = rel(dgxw:add_(dgx0, -1), jw)
  r.net = net
  r.ran_on = gc.ran_on(net)
  return r
end

--- The backend that ran each node's last pass: a list over nodes 1..output
-- (the input node runs nothing, and nodes past the output are not computed).
function gc.ran_on(net)
  local list = {}
  for i = 1, net.output do list[i] = net:ran_on(i) or 'nothing' end
  return list
end

--- Parameter gradients of ⟨u, F(x)⟩ against central differences, for every
-- weight (up to opts.max_entries entries each, spread evenly).
-- RETURN: table name -> relative error.
function gc.check_params(net, opts)
  opts = opts or {}
  local seed, h = opts.seed or 1, opts.h or 1e-2
  local shape = { opts.batch or 2 }
  for _, d in ipairs(net:input_shape()) do shape[#shape + 1] = d end
  local x = opts.x or T.randn(shape, { seed = seed, stream = 11 })
  local y = net:forward(x)
  local u = T.randn(y:shape(), { seed = seed, stream = 12 })
  net:zero_grad()
  net:forward(x)
  net:backward(u, { params = true })
  local errs = {}
  for _, p in ipairs(net:params()) do
    if p.kind == 'weight' then
      local grad = net:grad(p.name)
      local n = p.tensor:numel()
      local step = math.max(1, math.floor(n / (opts.max_entries or 64)))
      local count = 0
      for i = 0, n - 1, step do count = count + 1 end
      local a, bb = T.zeros { count }, T.zeros { count }
      local k, pd = 0, p.tensor:data()
      for i = 0, n - 1, step do
        local w0 = pd[i]
        pd[i] = w0 + h
        local fp = net:forward(x):dot(u)
        pd[i] = w0 - h
        local fm = net:forward(x):dot(u)
        pd[i] = w0
        a:data()[k] = grad:data()[i]
        bb:data()[k] = (fp - fm) / (2 * h)
        k = k + 1
      end
      errs[p.name] = rel(a, bb)
    end
  end
  return errs
end

--- Asserts every relative error in r is below tol (per-key overrides in
-- tols), with the seed in the message, and that every node ran on the
-- network's backend (r.ran_on).
function gc.assert_ok(r, tol, tols)
  -- every op ran through the backend interface, on the network's backend
  -- (tols.backend overrides it)
  local want = (tols and tols.backend) or (r.net and r.net:backend())
  for i, b in ipairs(r.ran_on or {}) do
    if b ~= want then
      error(('gradcheck: node %d (%s) ran on %s, expected %s (seed %s)'):format(i,
        r.net:nodes()[i + 1].op, b, want, tostring(r.seed)), 2)
    end
  end
  for _, k in ipairs { 'jvp', 'vjp', 'adjoint', 'hvp', 'hvp_dgy' } do
    local t = (tols and tols[k]) or tol
    if r[k] and not (r[k] <= t) then
      error(('gradcheck %s: relative error %.3g > %.3g (seed %s)'):format(k, r[k], t, tostring(r.seed)), 2)
    end
  end
end

--- The relative error the op specs' finite-difference checks allow: float32
-- forward, central differences with h = 1e-2, so truncation ~h² and rounding
-- ~eps/h put the expected error near 1e-5; 1e-3 leaves room.
gc.FD_TOL = 1e-3

--- gc.check(opts), then gc.assert_ok with opts.tol (default gc.FD_TOL); a
-- failure is raised at the caller, naming `label` and the seed (opts.seed,
-- default 1). RETURN: the relative errors, as gc.check.
function gc.fdcheck(label, opts)
  opts.seed = opts.seed or 1
  local r = gc.check(opts)
  local ok, err = pcall(gc.assert_ok, r, opts.tol or gc.FD_TOL)
  if not ok then error(('%s (seed %d): %s'):format(label, opts.seed, tostring(err)), 2) end
  return r
end

--- A network of one node of `op` (attributes attrs, no parameters) on
-- samples of shape `input`. RETURN: the network.
function gc.one_op_net(input, op, attrs)
  local b = nn.builder(input)
  return b:build(b:op(op, { b.input }, nil, attrs))
end

--- A seeded normal tensor (std `scale`, default 1) whose entries are moved
-- at least `margin` (default 0.1) away from each point of `kinks`, so central
-- differences never straddle a kink of the op under test.
function gc.away(shape, seed, scale, kinks, margin)
  local x = T.randn(shape, { seed = seed, stream = 1, std = scale or 1 })
  local p = x:data()
  margin = margin or 0.1
  for i = 0, x:numel() - 1 do
    for _, k in ipairs(kinks or {}) do
      local d = p[i] - k
      if math.abs(d) < margin then p[i] = k + (d < 0 and -margin or margin) end
    end
  end
  return x
end

return gc
