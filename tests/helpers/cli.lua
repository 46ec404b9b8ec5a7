--- The moreau command and plain files, as the workbench, sandbox and error
-- specs use them.
local core = require 'moreau.core'

local cli = {}

--- Runs `scripts/moreau ARGS` (a shell-quoted string) against the library
-- under test. RETURNS: its output (stdout and stderr together), its exit code.
function cli.moreau(args)
  local p = io.popen(('MOREAU_LIB=%q %q/scripts/moreau %s 2>&1; echo "rc=$?"'):format(core.lib_path, core.root, args))
  local out = p:read('*a')
  p:close()
  local rc = tonumber(out:match('rc=(%d+)%s*$'))
  return out:gsub('rc=%d+%s*$', ''), rc
end

--- A new empty folder for one spec's files (os.tmpname's name, made a folder).
function cli.tmpdir()
  local dir = os.tmpname()
  os.remove(dir)
  assert(require('lfs').mkdir(dir))
  return dir
end

--- Writes text to path (whole file).
function cli.write(path, text)
  local f = assert(io.open(path, 'wb'))
  f:write(text)
  f:close()
end

--- The bytes of path, or nil when it cannot be opened.
function cli.read(path)
  local f = io.open(path, 'rb')
  if not f then return nil end
  local s = f:read('*a')
  f:close()
  return s
end

return cli
