--- Assertions the specs share.
local luassert = require 'luassert'

local asserts = {}

--- Asserts that f raises an error whose message contains every given piece
-- (plain text, not patterns). RETURN: the message.
function asserts.error_with(f, ...)
  local ok, err = pcall(f)
  luassert.is_false(ok, 'expected an error')
  err = tostring(err)
  for i = 1, select('#', ...) do
    local piece = select(i, ...)
    assert(err:find(piece, 1, true), ('error message %q lacks %q'):format(err, piece))
  end
  return err
end

--- Asserts that tensor `got` has #want entries and that each is within
-- rtol |want| + atol (atol default 0) of the Lua number want[i]; a failure is
-- raised at the caller, naming `what`, the 1-based entry and both values.
function asserts.close(got, want, rtol, atol, what)
  local p = got:data()
  if got:numel() ~= #want then
    error(('%s: %d entries, expected %d'):format(what, got:numel(), #want), 2)
  end
  for i = 0, got:numel() - 1 do
    local a, b = p[i], want[i + 1]
    if not (math.abs(a - b) <= rtol * math.abs(b) + (atol or 0)) then
      error(('%s: entry %d is %.9g, expected %.9g'):format(what, i + 1, a, b), 2)
    end
  end
end

return asserts
