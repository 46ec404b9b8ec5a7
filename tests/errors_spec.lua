-- Network-level argument checks of the Lua API: node and item indices, the
-- network argument of a method. Each bad value raises a message naming the
-- argument and its valid range in the API's own convention (0-based node
-- ids, 1-based batch items), never nil or another index's answer.
local T = require 'moreau.tensor'
local methods = require 'moreau.methods'
local prox = require 'moreau.prox'
local nets = require 'helpers.nets'
local error_with = require('helpers.asserts').error_with

describe('network-level argument checks', function()
  local net = nets.softplus_net { seed = 3 }
  local m = #net:nodes() - 1

  it('net:ran_on refuses node ids that are not integers in range', function()
    local x = T.randn({ 2, 1, 6, 6 }, { seed = 5 })
    print('seed 5')
    net:forward(x)
    for _, bad in ipairs { -1, 999, 0 / 0, 2 ^ 32 + 1, 1.9, m + 1 } do
      error_with(function() net:ran_on(bad) end,
        ('net:ran_on: node %s outside 0..%d'):format(require('moreau.options').show(bad), m))
    end
    error_with(function() net:ran_on('1') end, ("net:ran_on: node '1' outside 0..%d"):format(m))
    assert.is_nil(net:ran_on(0)) -- the input node runs no pass
    assert.are.equal('cpu', net:ran_on(1))
  end)

  it('solver:stats names the 1-based item and the valid range', function()
    local x = T.randn({ 1, 1, 6, 6 }, { seed = 6 })
    print('seed 6')
    local s = prox.solver(net, x, { 0 }, { rho = 1, eta = 0, reg = 'l1', T = 2, m = 0 })
    s:step()
    for _, bad in ipairs { 2, 0, 1.5 } do
      error_with(function() s:stats(bad) end,
        ('moreau solver:stats: item %s outside 1..1'):format(tostring(bad)))
    end
    assert.are.equal(1, s:stats(1).iter)
  end)

  it('method:explain refuses a net that is not a network', function()
    local x = T.randn({ 1, 1, 6, 6 }, { seed = 7 })
    print('seed 7')
    for _, name in ipairs { 'gradient', 'smoothgrad' } do
      error_with(function() methods[name]():explain(nil, x, { 0 }) end,
        name .. ':explain: net must be a moreau.nn network, got nil')
      error_with(function() methods[name]():explain({}, x, { 0 }) end,
        name .. ':explain: net must be a moreau.nn network, got a table')
    end
  end)
end)
