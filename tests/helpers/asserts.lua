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

return asserts
