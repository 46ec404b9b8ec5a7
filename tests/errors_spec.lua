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

describe('command-line argument checks', function()
  local moreau = require('helpers.cli').moreau

  it('bench checks its lists up front and lists every section in --help', function()
    for args, msg in pairs {
      ['--batches=0,x'] = "bench: option 'batches' must be a comma-separated list of integers >= 1, got '0,x' (item '0')",
      ['--batches=1,x'] = "got '1,x' (item 'x')",
      ['--batches=1,,2'] = "got '1,,2' (an empty item)",
      ['--only='] = "bench: option 'only' must be a comma-separated list of section names, got '' (an empty item)",
      ['--models=foo'] = "bench: option 'models' must be a comma-separated list of model names",
      ['--only=resnet5'] = "bench: unknown section 'resnet5' in --only (forward, moreau, peak, train, batch, methods, " ..
        "imagenet, resnet50, precision, denormals)",
    } do
      local out, rc = moreau('bench ' .. args)
      assert.are_not.equal(0, rc, out)
      assert.truthy(out:find(msg, 1, true), args .. ': ' .. out)
      assert.falsy(out:find('==', 1, true), args .. ' ran a section: ' .. out)
    end
    local out, rc = moreau('bench --help')
    assert.are.equal(0, rc, out)
    assert.truthy(out:find('--only=forward,moreau,peak,train,batch,methods', 1, true), out)
    assert.truthy(out:find('resnet50 (only when named)', 1, true), out)
  end)

  it('explain checks --label against the model card before loading the weights', function()
    local out, rc = moreau('explain --label=10')
    assert.are_not.equal(0, rc, out)
    assert.truthy(out:find('explain: --label=10 is outside the classes of resnet_fmnist (0..9; -1: the predicted class)',
      1, true), out)
    assert.falsy(out:find('explain.lua:', 1, true), 'a file:line message: ' .. out)
    assert.falsy(out:find('predicted', 1, true) and out:find('explaining', 1, true), 'ran the model: ' .. out)
  end)
end)
