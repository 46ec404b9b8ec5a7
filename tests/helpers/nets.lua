--- Small networks the specs share.
local nn = require 'moreau.nn'

local nets = {}

--- conv 3x3 (1 -> 4) → softplus → conv 3x3 stride 2 (4 -> 4) → softplus → linear
-- to 3 classes, on 1×size×size inputs (softplus: smooth, so HVPs and finite
-- differences are meaningful). ARGS: opts {size = 6, beta = 3, seed = 2}.
function nets.softplus_net(opts)
  opts = opts or {}
  local size, beta = opts.size or 6, opts.beta or 3
  local b = nn.builder({ 1, size, size }, { seed = opts.seed or 2 })
  local h = b:conv2d('c1', b.input, 1, 4, 3, { padding = 1 })
  h = b:softplus(h, { beta = beta })
  h = b:conv2d('c2', h, 4, 4, 3, { stride = 2, padding = 1 })
  h = b:softplus(h, { beta = beta })
  local half = math.ceil(size / 2)
  return b:build(b:linear('fc', b:flatten(h), 4 * half * half, 3))
end

return nets
