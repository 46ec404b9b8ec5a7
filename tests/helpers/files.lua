--- Binary files in a scratch folder the spec owns.
local files = {}

--- path, write, read for the folder that dir() returns when they are called
-- (specs create their folder in setup): path(name) joins; write(name, bytes)
-- writes and returns the path; read(path) returns the bytes.
function files.in_dir(dir)
  local function path(name) return dir() .. '/' .. name end
  local function write(name, bytes)
    local f = assert(io.open(path(name), 'wb'))
    f:write(bytes)
    f:close()
    return path(name)
  end
  local function read(p)
    local f = assert(io.open(p, 'rb'))
    local s = f:read('*a')
    f:close()
    return s
  end
  return path, write, read
end

return files
