--- moreau.isolation — run a shared recipe in its own confined process.
--
-- `moreau run --sandbox RECIPE` comes here. The recipe never runs in the
-- process that called it: this module starts `moreau-sandbox` (built from
-- engine/tools/sandbox.c), which sets resource limits, confines the new
-- process with bubblewrap (namespaces: no network, a filesystem that holds
-- only what a recipe needs) and a seccomp filter, and then runs the moreau
-- command inside with `run --confined`: the recipe loads into the Lua sandbox
-- (moreau.sandbox, the second wall) and writes its own results.json and
-- index.html into the one folder it may write. The caller writes nothing on
-- the recipe's behalf. The threat model is docs/sandbox.md.
--
--   what the confined process sees      how
--   read-only: /usr and the links into  moreau-sandbox binds them
--   it, ld.so.cache, /etc/alternatives
--   read-only: moreau's modules,        isolation.read_paths (below)
--   library, header, models, the
--   Fashion-MNIST folder, the recipe,
--   each --read=PATH the person gave
--   read-write: the results folder      --rw
--   environment: only the variables     isolation.environment (below)
--   moreau reads (MOREAU_*, LUA_PATH,
--   LUA_CPATH, OMP_*, OPENBLAS_*, the
--   sanitizer runtime's)
--
-- Limits (the person running it sets them before RECIPE; a recipe cannot):
--   --cpu-seconds=N   CPU time of the whole run (default 3600)
--   --memory=BYTES    address space, e.g. 8G (default 8G)
--   --file-size=BYTES the largest file it may write (default 4G)
local ffi = require 'ffi'
local lfs = require 'lfs'
local core = require 'moreau.core'

local isolation = {}

isolation.DEFAULTS = { cpu_seconds = 3600, memory = '8G', file_size = '4G' }

ffi.cdef [[
typedef int moreau_pid_t;
int posix_spawnp(moreau_pid_t *pid, const char *file, const void *file_actions, const void *attrp,
                 char *const argv[], char *const envp[]);
moreau_pid_t waitpid(moreau_pid_t pid, int *status, int options);
char *realpath(const char *path, char *resolved);
void free(void *p);
extern char **environ;
int moreau_open(const char *path, int flags, ...) __asm__("open");
long moreau_write(int fd, const void *buf, unsigned long n) __asm__("write");
int moreau_close(int fd) __asm__("close");
int moreau_rename(const char *from, const char *to) __asm__("rename");
int moreau_unlink(const char *path) __asm__("unlink");
int moreau_getpid(void) __asm__("getpid");
]]

--- The absolute, link-free form of an existing path, or nil.
function isolation.realpath(path)
  local p = ffi.C.realpath(path, nil)
  if p == nil then return nil end
  local s = ffi.string(p)
  ffi.C.free(p)
  return s
end

local function dirname(path) return path:match('^(.*)/[^/]*$') or '.' end

--- The launcher: next to the library in a build tree, or where `make install` put it.
function isolation.launcher()
  local ok, install = pcall(require, 'moreau._install')
  local candidates = { dirname(core.lib_path) .. '/moreau-sandbox', ok and install.sandbox or nil }
  for _, p in pairs(candidates) do
    if p and lfs.attributes(p, 'mode') == 'file' then return p end
  end
  return nil
end

--- Runs argv (a Lua array of strings, argv[1] found on PATH) and waits.
-- RETURNS: the exit status, or 128 + the signal that ended it.
function isolation.spawn(argv)
  local n = #argv
  local cargv = ffi.new('char *[?]', n + 1)
  local keep = {}
  for i = 1, n do
    keep[i] = ffi.new('char[?]', #argv[i] + 1, argv[i])
    cargv[i - 1] = keep[i]
  end
  cargv[n] = nil
  local pid = ffi.new('moreau_pid_t[1]')
  local rc = ffi.C.posix_spawnp(pid, argv[1], nil, nil, cargv, ffi.C.environ)
  if rc ~= 0 then error(('isolation: cannot start %s (error %d)'):format(argv[1], rc), 2) end
  local status = ffi.new('int[1]')
  while ffi.C.waitpid(pid[0], status, 0) < 0 do
    if ffi.errno() ~= 4 then error('isolation: waitpid failed (error ' .. ffi.errno() .. ')', 2) end -- 4: EINTR
  end
  local s = status[0]
  if bit.band(s, 0x7f) == 0 then return bit.band(bit.rshift(s, 8), 0xff) end
  return 128 + bit.band(s, 0x7f)
end

local O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW, O_CLOEXEC = 1, 64, 128, 131072, 524288 -- Linux

--- Writes `text` as dir/name where a confined run may have left anything
-- (a link to elsewhere, a folder, a file it keeps open): into a new file
-- created exclusively beside it, never through a link, then renamed over
-- dir/name (rename replaces a link itself, never its target).
-- ERRORS: the file cannot be written.
function isolation.replace_file(dir, name, text)
  -- a name the run could not have planted in advance: a few tries, each new
  local tmp, fd
  for _ = 1, 8 do
    tmp = ('%s/.%s.%d.%d.%d'):format(dir, name, ffi.C.moreau_getpid(), os.time(), math.random(1, 2 ^ 30))
    fd = ffi.C.moreau_open(tmp, O_WRONLY + O_CREAT + O_EXCL + O_NOFOLLOW + O_CLOEXEC, ffi.new('int', 420))
    if fd >= 0 or ffi.errno() ~= 17 then break end -- 17: EEXIST
  end
  if fd < 0 then error(('isolation: cannot create %s (error %d)'):format(tmp, ffi.errno()), 2) end
  local done = 0
  while done < #text do
    local n = tonumber(ffi.C.moreau_write(fd, ffi.cast('const char *', text) + done, #text - done))
    if n <= 0 then
      ffi.C.moreau_close(fd)
      ffi.C.moreau_unlink(tmp)
      error(('isolation: cannot write %s (error %d)'):format(tmp, ffi.errno()), 2)
    end
    done = done + n
  end
  ffi.C.moreau_close(fd)
  if ffi.C.moreau_rename(tmp, dir .. '/' .. name) ~= 0 then
    local err = ffi.errno()
    ffi.C.moreau_unlink(tmp)
    error(('isolation: cannot replace %s/%s (error %d)'):format(dir, name, err), 2)
  end
end

--- The environment the confined process gets: what moreau reads, nothing else.
function isolation.environment()
  local env = { 'HOME=/tmp', 'PATH=/usr/bin:/bin', 'LC_ALL=C', 'MOREAU_CONFINED=1' }
  local names = { 'LUA_PATH', 'LUA_CPATH', 'LD_PRELOAD', 'ASAN_OPTIONS', 'UBSAN_OPTIONS', 'MOREAU_SANITIZE',
    'MOREAU_TRACEBACK', 'OMP_NUM_THREADS', 'OMP_WAIT_POLICY', 'OMP_PROC_BIND', 'OMP_PLACES', 'OPENBLAS_CORETYPE',
    'OPENBLAS_L2_SIZE', 'OPENBLAS_VERBOSE' }
  for _, k in ipairs(names) do
    local v = os.getenv(k)
    if v then env[#env + 1] = k .. '=' .. v end
  end
  -- Where moreau finds itself and its data, resolved by this process.
  env[#env + 1] = 'MOREAU_LIB=' .. isolation.realpath(core.lib_path)
  env[#env + 1] = 'MOREAU_HEADER=' .. isolation.realpath(core.header_path)
  return env
end

--- Folders of the Lua module search path that lie outside /usr (a source tree, a prefix).
local function module_dirs(out)
  for _, spec in ipairs { package.path, package.cpath } do
    for template in spec:gmatch('[^;]+') do
      local dir = template:match('^(/.-)/[^/]*%?')
      local real = dir and isolation.realpath(dir)
      if real and not real:match('^/usr/') then out[#out + 1] = real end
    end
  end
end

--- Every path the confined run reads, as absolute real paths.
-- ARGS: recipe (path of the recipe file), extra (array of paths the person named with --read).
function isolation.read_paths(recipe_path, extra)
  local paths = {}
  local function add(p)
    local real = p and isolation.realpath(p)
    if real then paths[#paths + 1] = real end
  end
  add(core.root .. '/bindings')
  add(core.root .. '/recipes')
  add(core.root .. '/scripts/moreau.lua')
  add(core.lib_path)
  add(core.header_path)
  local ok_inst, install = pcall(require, 'moreau._install')
  if ok_inst then add(install.root) end
  add(require('moreau.models').dir())
  local data = require 'moreau.data'
  add(os.getenv('MOREAU_FMNIST_DIR') or data.FASHION_MNIST_DIR)
  module_dirs(paths)
  add(recipe_path)
  for _, p in ipairs(extra or {}) do
    local real = isolation.realpath(p)
    if not real then error(("moreau run --sandbox: --read=%s does not exist"):format(p), 0) end
    paths[#paths + 1] = real
  end
  -- Drop duplicates and paths under another one (bwrap would bind them twice).
  table.sort(paths)
  local out = {}
  for _, p in ipairs(paths) do
    local last = out[#out]
    if not (last and (p == last or p:sub(1, #last + 1) == last .. '/')) then out[#out + 1] = p end
  end
  return out
end

--- The luajit running this process (the confined run uses the same one).
function isolation.luajit()
  local i = -1
  while arg and arg[i - 1] do i = i - 1 end
  local exe = arg and arg[i]
  if exe and exe:find('/') then return isolation.realpath(exe) or exe end
  for dir in (os.getenv('PATH') or '/usr/bin'):gmatch('[^:]+') do
    local p = dir .. '/' .. (exe or 'luajit')
    if lfs.attributes(p, 'mode') == 'file' then return isolation.realpath(p) end
  end
  return '/usr/bin/luajit'
end

--- The command line that runs `command` (a Lua array: program and arguments)
-- confined exactly as a recipe is. ARGS: opts {recipe = path read-only,
-- out = the one writable folder (absolute) or nil, read = extra read-only
-- paths, cpu_seconds, wall_seconds (default twice cpu_seconds), memory, file_size}, command.
-- ERRORS: the launcher is not built.
function isolation.command(opts, command)
  local launcher = isolation.launcher()
  if not launcher then
    error('moreau run --sandbox: the sandbox launcher moreau-sandbox is not built (run scripts/setup)', 0)
  end
  local argv = { launcher }
  for _, p in ipairs(isolation.read_paths(opts.recipe and isolation.realpath(opts.recipe), opts.read)) do
    argv[#argv + 1] = '--ro=' .. p
  end
  if opts.out then
    argv[#argv + 1] = '--rw=' .. opts.out
    argv[#argv + 1] = '--chdir=' .. opts.out
  end
  for _, e in ipairs(isolation.environment()) do argv[#argv + 1] = '--env=' .. e end
  -- AddressSanitizer reserves terabytes of address space for its shadow
  -- memory: the sanitizer build of the tests runs without the memory limit.
  local memory = opts.memory or isolation.DEFAULTS.memory
  if os.getenv('MOREAU_SANITIZE') then memory = 'unlimited' end
  argv[#argv + 1] = '--cpu-seconds=' .. tostring(opts.cpu_seconds or isolation.DEFAULTS.cpu_seconds)
  -- the launcher's default wall-clock limit is twice the CPU seconds
  if opts.wall_seconds then argv[#argv + 1] = '--wall-seconds=' .. tostring(opts.wall_seconds) end
  argv[#argv + 1] = '--memory=' .. tostring(memory)
  argv[#argv + 1] = '--file-size=' .. tostring(opts.file_size or isolation.DEFAULTS.file_size)
  argv[#argv + 1] = '--'
  for _, a in ipairs(command) do argv[#argv + 1] = a end
  return argv
end

--- Runs `moreau run --confined RECIPE --out=DIR ARGS...` under moreau-sandbox.
-- ARGS: opts as for isolation.command, plus args (the recipe's arguments).
-- RETURNS: the exit status of the confined run (see isolation.explain_status).
-- ERRORS: the launcher is not built; it cannot be started.
function isolation.run(opts)
  local command = { isolation.luajit(), isolation.realpath(core.root .. '/scripts/moreau.lua') }
  if require('moreau.recipe').want_traceback then command[#command + 1] = '--traceback' end
  for _, a in ipairs { 'run', '--confined', isolation.realpath(opts.recipe) } do command[#command + 1] = a end
  if opts.out then command[#command + 1] = '--out=' .. opts.out end
  for _, a in ipairs(opts.args or {}) do command[#command + 1] = a end
  io.stdout:flush()
  io.stderr:flush()
  return isolation.spawn(isolation.command(opts, command))
end

--- A sentence for a confined run's exit status, or nil when it succeeded.
function isolation.explain_status(status, opts)
  if status == 0 then return nil end
  if status == 128 + 24 or status == 128 + 9 then
    return ('the recipe ran out of CPU time (limit %s s; the person running it may raise it with --cpu-seconds=N)')
      :format(tostring(opts.cpu_seconds or isolation.DEFAULTS.cpu_seconds))
  end
  if status == 128 + 14 then
    return ('the recipe ran past its wall-clock limit (%s s; the person running it may raise it with ' ..
      '--wall-seconds=N)'):format(tostring(opts.wall_seconds or
      2 * (opts.cpu_seconds or isolation.DEFAULTS.cpu_seconds)))
  end
  if status == 128 + 25 then
    return ('the recipe wrote a file larger than the limit (%s; raise it with --file-size=BYTES)')
      :format(tostring(opts.file_size or isolation.DEFAULTS.file_size))
  end
  if status == 125 then return 'the sandbox could not be set up (see the message above)' end
  if status == 126 then return 'the sandbox launcher refused its arguments (see the message above)' end
  if status > 128 then return ('the confined run was ended by signal %d'):format(status - 128) end
  return ('the confined run failed (exit status %d)'):format(status)
end

return isolation
