-- The bench's resnet50 section (scripts/bench/resnet50.lua, issue 16): it
-- reads a model that PyTorch exports, so without PyTorch it must say so and
-- time nothing, and it must not run unless named in --only.
local moreau = require('helpers.cli').moreau

describe('bench --only=resnet50', function()
  it('says why it does not run without PyTorch, and measures nothing', function()
    local out, rc = moreau('bench --torch=off --only=resnet50')
    assert.are.equal(0, rc, out)
    assert.truthy(out:find('== resnet50: not run: PyTorch exports the model this section reads ' ..
      '(torch: --torch=off)', 1, true), out)
    assert.falsy(out:find('forward+input-grad', 1, true), 'a timing ran: ' .. out)
  end)

  it('is not in the default set of sections', function()
    local out, rc = moreau('bench --help')
    assert.are.equal(0, rc, out)
    assert.truthy(out:find('precision, denormals and resnet50 only when named', 1, true), out)
  end)
end)
