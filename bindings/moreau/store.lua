--- moreau.store — the results store of a data-set run: one SQLite file.
--
--   local store = require 'moreau.store'
--   local s = store.open('RUN.db')                 -- an existing store, to read
--   for _, id in ipairs(s:images()) do
--     local rec = s:image(id)                      -- label, prediction, probabilities, ...
--     local map = s:map(id, 'smoothgrad')          -- a (1, C, H, W) tensor
--   end
--   s:export_safetensors('maps.safetensors'); s:export_csv('images.csv')
--   print(store.aggregate(s:metric('smoothgrad', 'sparsity')).mean)
--   s:close()
--
-- The schema, the guarantees and a Python reader are in docs/store.md.
--
-- Why SQLite, and why through LuaJIT's FFI: a store must survive `kill -9`
-- and a full disk at any moment, be read while it is written, and be read by
-- anyone's tools later; SQLite in WAL mode gives atomic transactions (an
-- image's rows are committed together or not at all), concurrent readers,
-- a busy timeout (and, beside it, a lock refusing a second writer), and a file format that Python's
-- standard library reads. Debian's Lua binding, LuaSQL 2.6
-- (lua-sql-sqlite3), has no parameter binding (its driver calls no
-- sqlite3_bind_* function): a float32 map could only travel as a hex
-- literal spliced into the SQL text (twice its size, parsed back each
-- time), and every text value (a file name of an image folder) would be
-- quoted by hand. The store needs ten functions of the C library (open,
-- prepare, bind, step, column, reset, finalize, exec, errmsg,
-- busy_timeout), so it declares them here and loads libsqlite3 itself.
local ffi = require 'ffi'
local T = require 'moreau.tensor'
local core = require 'moreau.core'

ffi.cdef [[
typedef struct sqlite3 sqlite3;
typedef struct sqlite3_stmt sqlite3_stmt;
int sqlite3_open_v2(const char *filename, sqlite3 **db, int flags, const char *vfs);
int sqlite3_close_v2(sqlite3 *db);
const char *sqlite3_errmsg(sqlite3 *db);
int sqlite3_extended_errcode(sqlite3 *db);
int sqlite3_busy_timeout(sqlite3 *db, int ms);
int sqlite3_db_readonly(sqlite3 *db, const char *name);
int sqlite3_exec(sqlite3 *db, const char *sql, void *callback, void *arg, char **errmsg);
void sqlite3_free(void *p);
int sqlite3_prepare_v2(sqlite3 *db, const char *sql, int nbytes, sqlite3_stmt **stmt, const char **tail);
int sqlite3_bind_blob(sqlite3_stmt *stmt, int i, const void *p, int n, void (*destructor)(void *));
int sqlite3_bind_double(sqlite3_stmt *stmt, int i, double v);
int sqlite3_bind_int64(sqlite3_stmt *stmt, int i, int64_t v);
int sqlite3_bind_null(sqlite3_stmt *stmt, int i);
int sqlite3_bind_text(sqlite3_stmt *stmt, int i, const char *p, int n, void (*destructor)(void *));
int sqlite3_step(sqlite3_stmt *stmt);
int sqlite3_reset(sqlite3_stmt *stmt);
int sqlite3_finalize(sqlite3_stmt *stmt);
int sqlite3_column_count(sqlite3_stmt *stmt);
int sqlite3_column_type(sqlite3_stmt *stmt, int i);
const void *sqlite3_column_blob(sqlite3_stmt *stmt, int i);
int sqlite3_column_bytes(sqlite3_stmt *stmt, int i);
double sqlite3_column_double(sqlite3_stmt *stmt, int i);
int64_t sqlite3_column_int64(sqlite3_stmt *stmt, int i);
const unsigned char *sqlite3_column_text(sqlite3_stmt *stmt, int i);
]]
-- the POSIX calls of the writer's lock (see lock below); declared once even
-- when another module declared them first
for _, decl in ipairs {
  'int open(const char *path, int flags, ...);', 'int close(int fd);', 'int flock(int fd, int operation);',
  'int access(const char *path, int mode);', 'char *strerror(int errnum);',
} do pcall(ffi.cdef, decl) end

local store = {}

-- The C library: Debian's libsqlite3-0 ships libsqlite3.so.0; the unversioned
-- name exists only with the -dev package.
local sql
do
  local ok, lib = pcall(ffi.load, 'libsqlite3.so.0')
  if not ok then ok, lib = pcall(ffi.load, 'sqlite3') end
  if ok then sql = lib end
end

local OK, ROW, DONE = 0, 100, 101
local OPEN_READONLY, OPEN_READWRITE, OPEN_CREATE = 0x1, 0x2, 0x4
local TYPE_INTEGER, TYPE_FLOAT, TYPE_TEXT, TYPE_BLOB = 1, 2, 3, 4
local TRANSIENT = ffi.cast('void (*)(void *)', -1) -- SQLITE_TRANSIENT: SQLite copies the bytes
-- primary result codes a full or unwritable disk gives (sqlite3.h)
local FULL, IOERR, READONLY, CANTOPEN, NOTADB, CORRUPT = 13, 10, 8, 14, 26, 11

--- The version of the store's schema (the `schema` row of the `run` table).
store.SCHEMA = 1

-- The schema (docs/store.md explains every column). WITHOUT ROWID keeps the
-- maps table ordered by (image, method), so reads and merges walk it in order.
local SCHEMA_SQL = [[
CREATE TABLE run (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE params (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE images (
  image INTEGER PRIMARY KEY,
  source TEXT NOT NULL,
  label INTEGER,
  prediction INTEGER NOT NULL,
  target INTEGER NOT NULL,
  probabilities BLOB NOT NULL,
  noise_key TEXT NOT NULL
);
CREATE TABLE maps (
  image INTEGER NOT NULL REFERENCES images(image),
  method TEXT NOT NULL,
  shape TEXT NOT NULL,
  map BLOB NOT NULL,
  options TEXT NOT NULL,
  seconds REAL NOT NULL,
  PRIMARY KEY (image, method)
) WITHOUT ROWID;
CREATE TABLE metrics (
  image INTEGER NOT NULL REFERENCES images(image),
  method TEXT NOT NULL,
  metric TEXT NOT NULL,
  value REAL,
  PRIMARY KEY (image, method, metric)
) WITHOUT ROWID;
]]

-- ------------------------------------------------------------ JSON, canonical

local cjson = require('cjson').new()

-- a JSON string; lua-cjson writes '/' as '\/', which JSON allows but nobody
-- reads well: every '/' of its output is so escaped, so '\/' -> '/' is exact
local function jstring(v) return (cjson.encode(v):gsub('\\/', '/')) end

-- A value as canonical JSON: object keys sorted, integers without a point,
-- other numbers with 17 significant digits (they read back to the same
-- double), so equal parameter tables give equal text and the store can
-- compare them as strings. Only strings, numbers, booleans and tables of them.
local function canonical(v, what)
  local t = type(v)
  if t == 'string' then return jstring(v)
  elseif t == 'boolean' then return tostring(v)
  elseif t == 'number' then
    if v ~= v or v == math.huge or v == -math.huge then
      error(('store: %s is %s, which JSON cannot hold'):format(what, tostring(v)), 0)
    end
    if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return ('%d'):format(v) end
    return ('%.17g'):format(v)
  elseif t == 'table' then
    local n = #v
    local count = 0
    for _ in pairs(v) do count = count + 1 end
    if count == n and (n > 0 or next(v) == nil) then
      local parts = {}
      for i = 1, n do parts[i] = canonical(v[i], what .. '[' .. i .. ']') end
      return '[' .. table.concat(parts, ',') .. ']'
    end
    local keys = {}
    for k in pairs(v) do
      if type(k) ~= 'string' then error(('store: %s has a key of type %s; keys must be strings'):format(what, type(k)), 0) end
      keys[#keys + 1] = k
    end
    table.sort(keys)
    local parts = {}
    for i, k in ipairs(keys) do parts[i] = jstring(k) .. ':' .. canonical(v[k], what .. '.' .. k) end
    return '{' .. table.concat(parts, ',') .. '}'
  end
  error(('store: %s is a %s; a store records strings, numbers, booleans and tables of them'):format(what, t), 0)
end

--- A value as the store writes it: canonical JSON (object keys sorted,
-- integers without a decimal point, other numbers with 17 significant
-- digits). Two equal tables give the same text. ARGS: v (string, number,
-- boolean or a table of them). Errors: a function, a tensor, NaN or ±inf.
function store.json(v) return canonical(v, 'value') end

-- ------------------------------------------------------------ the connection

local Store = {}
Store.__index = Store

local function errmsg(db) return ffi.string(sql.sqlite3_errmsg(db)) end

-- What a failed write means for the person running it, from SQLite's code.
local function why(db, rc)
  local primary = rc % 256
  local msg = errmsg(db)
  if primary == FULL then
    return msg .. ' (the disk or the database is full)'
  elseif primary == IOERR then
    return msg .. ' (the disk refused a write: full, over a file-size limit, or failing)'
  elseif primary == READONLY then
    return msg .. ' (the file or its folder is read-only)'
  end
  return msg
end

-- Raises a store error for rc: "store PATH: WHAT: SQLite's message (hint)".
local function fail(self, what, rc)
  error(('store %s: %s: %s'):format(self.path, what, why(self.db, rc)), 0)
end

-- Runs SQL text without results (several statements allowed).
local function exec(self, text, what)
  local rc = sql.sqlite3_exec(self.db, text, nil, nil, nil)
  if rc ~= OK then fail(self, what, rc) end
end

-- A prepared statement, cached per SQL text for the store's life.
local function stmt(self, text)
  local s = self.stmts[text]
  if s then return s end
  local out = ffi.new('sqlite3_stmt *[1]')
  local rc = sql.sqlite3_prepare_v2(self.db, text, #text, out, nil)
  if rc ~= OK then fail(self, 'cannot prepare "' .. text:gsub('%s+', ' ') .. '"', rc) end
  self.stmts[text] = out[0]
  return out[0]
end

-- Binds the values of args (a Lua array; nil entries as args.n gives) to s.
local function bind(s, args)
  for i = 1, args.n or #args do
    local v = args[i]
    local t = type(v)
    if v == nil then sql.sqlite3_bind_null(s, i)
    elseif t == 'number' then
      if v == math.floor(v) and math.abs(v) < 2 ^ 53 then sql.sqlite3_bind_int64(s, i, v)
      else sql.sqlite3_bind_double(s, i, v) end
    elseif t == 'string' then sql.sqlite3_bind_text(s, i, v, #v, TRANSIENT)
    elseif t == 'table' and v.blob then sql.sqlite3_bind_blob(s, i, v.blob, #v.blob, TRANSIENT)
    elseif t == 'table' and v.real then sql.sqlite3_bind_double(s, i, v.real)
    else error('store: cannot bind a ' .. t, 0) end
  end
end

-- Column i (0-based) of the current row as a Lua value: integers and reals
-- as numbers, text and blobs as strings, NULL as nil.
local function column(s, i)
  local t = sql.sqlite3_column_type(s, i)
  if t == TYPE_INTEGER then return tonumber(sql.sqlite3_column_int64(s, i))
  elseif t == TYPE_FLOAT then return sql.sqlite3_column_double(s, i)
  elseif t == TYPE_TEXT then return ffi.string(sql.sqlite3_column_text(s, i), sql.sqlite3_column_bytes(s, i))
  elseif t == TYPE_BLOB then
    local n = sql.sqlite3_column_bytes(s, i)
    return n > 0 and ffi.string(sql.sqlite3_column_blob(s, i), n) or ''
  end
  return nil
end

-- Runs a statement with args; calls each(row) per row (row: Lua array of the
-- columns) when given. Resets the statement whatever happens.
local function run(self, text, args, each, what)
  local s = stmt(self, text)
  sql.sqlite3_reset(s)
  bind(s, args or {})
  while true do
    local rc = sql.sqlite3_step(s)
    if rc == ROW then
      if each then
        local row = {}
        for i = 0, sql.sqlite3_column_count(s) - 1 do row[i + 1] = column(s, i) end
        local ok, err = pcall(each, row)
        if not ok then sql.sqlite3_reset(s) error(err, 0) end
      end
    elseif rc == DONE then
      break
    else
      sql.sqlite3_reset(s)
      fail(self, what or 'cannot run "' .. text:gsub('%s+', ' ') .. '"', rc)
    end
  end
  sql.sqlite3_reset(s)
end

-- All rows of a query as a Lua array of Lua arrays.
local function rows(self, text, args)
  local out = {}
  run(self, text, args, function(r) out[#out + 1] = r end)
  return out
end

-- ------------------------------------------------------------ the writer's lock

-- open(2) flags and flock(2) operations: the same numbers on Linux x86-64
-- and arm64 (asm-generic), which are the platforms moreau builds on.
local O_RDONLY, O_CREAT, O_CLOEXEC = 0, 0x40, 0x80000
local LOCK_EX, LOCK_NB = 2, 4
local EWOULDBLOCK, EINTR, EACCES, EROFS = 11, 4, 13, 30 -- errno values (asm-generic)

local function strerror(e) return ffi.string(ffi.C.strerror(e)) end

-- Takes the writer's lock of the store at path: an exclusive flock(2) on
-- the sidecar file PATH-lock (created when missing, never removed: removing
-- it would let a second writer lock a new file while the first holds the
-- old one). SQLite alone cannot refuse a second writer: it serializes the
-- two, which then interleave their images (docs/store.md, "One writer per
-- store"). The kernel releases the lock when the process ends however it
-- ends, so a store whose writer was killed (kill -9) resumes at once.
-- flock needs no write permission, so the file is opened read-only and a
-- store on a read-only file system reaches SQLite's clearer error.
-- RETURN: a box holding the file descriptor (closed, and the lock
-- released, by unlock or when collected). Errors name the store.
local function lock(path)
  local lpath = path .. '-lock'
  local fd = ffi.C.open(lpath, O_RDONLY + O_CLOEXEC)
  if fd < 0 then fd = ffi.C.open(lpath, O_RDONLY + O_CREAT + O_CLOEXEC, ffi.new('int', 420)) end -- 0644
  if fd < 0 then
    local e = ffi.errno()
    error(('store %s: cannot create its lock file %s: %s%s'):format(path, lpath, strerror(e),
      (e == EROFS or e == EACCES) and ' (the folder is read-only: the run cannot record anything there; give ' ..
      'another --store, or make it writable)' or ''), 0)
  end
  local rc
  repeat rc = ffi.C.flock(fd, LOCK_EX + LOCK_NB) until rc == 0 or ffi.errno() ~= EINTR
  if rc ~= 0 then
    local e = ffi.errno()
    ffi.C.close(fd)
    if e == EWOULDBLOCK then
      error(('store %s: another process is writing this store (it holds the lock %s); two processes cannot ' ..
        'write one store: let the other finish (run the same command again afterwards to resume), or give each ' ..
        'process its own store (the shards of a run write RUN-K-of-N.db: --shard=K/N, or a SLURM array or ' ..
        'MPI launcher)'):format(path, lpath), 0)
    end
    error(('store %s: cannot lock %s: %s'):format(path, lpath, strerror(e)), 0)
  end
  local box = ffi.new('int[1]', fd)
  return ffi.gc(box, function(b) if b[0] >= 0 then ffi.C.close(b[0]) b[0] = -1 end end)
end

local function unlock(box)
  if box and box[0] >= 0 then
    ffi.C.close(box[0])
    box[0] = -1
  end
end

local function file_exists(path)
  local f = io.open(path, 'rb')
  if f then f:close() return true end
  return false
end

-- The git revision and versions, as results.json records them (moreau.report).
local function provenance()
  local report = require 'moreau.report'
  return report.git_revision() or 'unknown', report.versions()
end

--- Opens a store, or creates it.
-- ARGS: path (the SQLite file); opts {
--   params = table name -> value (strings, numbers, booleans, tables of
--            them): the run's parameters. Given, the store is created when
--            the file does not exist (recording them, the git revision, the
--            versions and the date), and an existing store must hold the same
--            parameters: else the error names the first that differs, with
--            both values. Not given, the store must exist.
--   readonly = false: open for reading only (refuses every write),
--   ignore = {name = true}: parameters not compared (moreau.store.merge
--            ignores `shard`) }
-- RETURN: a Store (see its methods below). Errors: a missing file (no
-- params), a missing folder for a new store (names it), a file that is not a
-- moreau store (names what it lacks), another schema version, a read-only
-- file opened for writing, differing parameters, another process writing
-- the store. One writer at a time: opened with params (or at its first
-- put_image), a store takes an exclusive flock(2) on PATH-lock, released by
-- close or when the process ends (docs/store.md, "One writer per store");
-- readers take no lock.
-- Writes go through WAL (write-ahead logging) with synchronous=FULL: a
-- committed image survives a killed process and a power cut.
function store.open(path, opts)
  opts = opts or {}
  if not sql then
    error('store: cannot load the SQLite library libsqlite3.so.0 (install Debian\'s libsqlite3-0)', 2)
  end
  if type(path) ~= 'string' or path == '' then error('store.open: path must be a file name, got ' .. tostring(path), 2) end
  local exists = file_exists(path)
  if not exists and opts.params == nil then
    error(('store %s: no such file (a store is created by `moreau explain --data=... --store=%s`)'):format(path, path), 2)
  end
  if not exists then
    local dir = path:match('^(.*)/[^/]*$')
    if dir and dir ~= '' and ffi.C.access(dir, 0) ~= 0 then
      error(('store %s: cannot create it: its folder %s does not exist (create it first, or give another ' ..
        '--store)'):format(path, dir), 2)
    end
  end
  local flags = opts.readonly and OPEN_READONLY or (OPEN_READWRITE + OPEN_CREATE)
  local pdb = ffi.new('sqlite3 *[1]')
  local rc = sql.sqlite3_open_v2(path, pdb, flags, nil)
  local self = setmetatable({ path = path, db = pdb[0], stmts = {}, readonly = opts.readonly and true or false }, Store)
  if rc ~= OK then
    local m = pdb[0] ~= nil and why(pdb[0], rc) or ('SQLite code ' .. rc)
    if pdb[0] ~= nil then sql.sqlite3_close_v2(pdb[0]) end
    error(('store %s: cannot open: %s'):format(path, m), 2)
  end
  ffi.gc(self.db, sql.sqlite3_close_v2)
  sql.sqlite3_busy_timeout(self.db, 30000) -- another process writing: wait up to 30 s for its transaction
  if not opts.readonly and sql.sqlite3_db_readonly(self.db, 'main') == 1 then
    self:close()
    error(('store %s: the file is read-only (no write permission, or a read-only file system); the run ' ..
      'cannot record anything there: give another --store, or make it writable'):format(path), 2)
  end
  local ok, err = pcall(function()
    -- one writer at a time: the lock first, before anything is read or made
    if opts.params and not opts.readonly then self.lock = lock(path) end
    local has_sql = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'run'"
    local has = rows(self, has_sql)[1][1] == 1
    if not has then
      local any = rows(self, 'SELECT count(*) FROM sqlite_master')[1][1]
      if any > 0 or exists and opts.params == nil then
        error(('store %s: not a moreau store (an SQLite file without the run table)'):format(path), 0)
      end
      if opts.readonly then error(('store %s: empty file, not a moreau store'):format(path), 0) end
      exec(self, 'PRAGMA journal_mode = WAL', 'cannot switch to write-ahead logging')
      -- the check again and the tables in one immediate transaction, IF NOT
      -- EXISTS: a writer of an older moreau (no lock) racing this one makes
      -- the tables once, and this one then compares parameters as on a resume
      exec(self, 'BEGIN IMMEDIATE', 'cannot start creating the store')
      local okc, errc = pcall(function()
        if rows(self, has_sql)[1][1] == 1 then return end
        exec(self, (SCHEMA_SQL:gsub('CREATE TABLE', 'CREATE TABLE IF NOT EXISTS')), 'cannot create the tables')
        local git, versions = provenance()
        local info = { schema = store.SCHEMA, git_revision = git, versions = versions,
          created = os.date('!%Y-%m-%dT%H:%M:%SZ') }
        for k, v in pairs(info) do run(self, 'INSERT INTO run (key, value) VALUES (?, ?)', { k, canonical(v, k) }) end
        for k, v in pairs(opts.params) do
          run(self, 'INSERT INTO params (name, value) VALUES (?, ?)', { k, canonical(v, 'parameter ' .. k) })
        end
      end)
      if not okc then sql.sqlite3_exec(self.db, 'ROLLBACK', nil, nil, nil) error(errc, 0) end
      exec(self, 'COMMIT', 'cannot commit the new store')
    end
    local schema = self:info().schema
    if schema ~= store.SCHEMA then
      error(('store %s: schema version %s; this moreau reads version %d'):format(path, tostring(schema), store.SCHEMA), 0)
    end
    if not opts.readonly then
      exec(self, 'PRAGMA journal_mode = WAL', 'cannot switch to write-ahead logging')
      exec(self, 'PRAGMA synchronous = FULL', 'cannot set synchronous writes')
    end
    if opts.params then
      local diff = store.differ(self:params(), opts.params, opts.ignore)
      if diff then
        error(('store %s was made with other parameters: %s; use another --store for this run, or the ' ..
          'same parameters to resume it'):format(path, diff), 0)
      end
    end
  end)
  if not ok then
    self:close()
    error(err, 2)
  end
  return self
end

--- The first parameter on which two parameter tables differ, as text:
-- "NAME is A in the store, B here" (values as canonical JSON; "absent" for
-- a missing one), or nil when they agree. ARGS: a (the store's), b (the
-- command's), ignore (optional set of names not compared).
function store.differ(a, b, ignore)
  local names, seen = {}, {}
  for k in pairs(a) do if not seen[k] then seen[k], names[#names + 1] = true, k end end
  for k in pairs(b) do if not seen[k] then seen[k], names[#names + 1] = true, k end end
  -- the run's own parameters first, then the methods' options ('options.KEY')
  table.sort(names, function(x, y)
    local dx, dy = x:find('.', 1, true) ~= nil, y:find('.', 1, true) ~= nil
    if dx ~= dy then return dy end
    return x < y
  end)
  for _, k in ipairs(names) do
    if not (ignore and ignore[k]) then
      local va = a[k] ~= nil and canonical(a[k], k) or 'absent'
      local vb = b[k] ~= nil and canonical(b[k], k) or 'absent'
      if va ~= vb then return ('%s is %s in the store, %s here'):format(k, va, vb) end
    end
  end
  return nil
end

local function live(self)
  if not self.db then error('store ' .. tostring(self.path) .. ': closed', 3) end
end

-- A JSON value of the store, decoded; an error names the store and what
-- holds the text (a parameter, a row of the run table).
local function decode(self, text, what)
  local ok, v = pcall(cjson.decode, text)
  if not ok then
    error(('store %s: %s is not valid JSON (%s): the store is damaged, or was written by another tool')
      :format(self.path, what, tostring(v):gsub('^[^\n]-:%d+: ', '')), 0)
  end
  return v
end

--- The run's parameters as recorded (table name -> value). Errors: a value
-- that is not JSON (names the store and the parameter).
function Store:params()
  live(self)
  local out = {}
  for _, r in ipairs(rows(self, 'SELECT name, value FROM params')) do out[r[1]] = decode(self, r[2], 'parameter ' .. r[1]) end
  return out
end

--- What the store records of its making: schema, git_revision, versions
-- (moreau, luajit, backend, threads), created (UTC date).
function Store:info()
  live(self)
  local out = {}
  for _, r in ipairs(rows(self, 'SELECT key, value FROM run')) do out[r[1]] = decode(self, r[2], 'the run table\'s ' .. r[1]) end
  return out
end

--- Image ids that are finished (every method's map committed), ascending.
function Store:images()
  live(self)
  local out = {}
  for _, r in ipairs(rows(self, 'SELECT image FROM images ORDER BY image')) do out[#out + 1] = r[1] end
  return out
end

--- The number of finished images.
function Store:count()
  live(self)
  return rows(self, 'SELECT count(*) FROM images')[1][1]
end

--- The method keys of the store's maps, sorted.
function Store:methods()
  live(self)
  local out = {}
  for _, r in ipairs(rows(self, 'SELECT DISTINCT method FROM maps ORDER BY method')) do out[#out + 1] = r[1] end
  return out
end

-- float64 little-endian blob <-> Lua array (the probabilities)
local function f64_blob(list)
  local n = #list
  local buf = ffi.new('double[?]', math.max(n, 1))
  for i = 1, n do buf[i - 1] = list[i] end
  return ffi.string(buf, 8 * n)
end

local function f64_list(blob)
  local n = #blob / 8
  local buf = ffi.new('double[?]', math.max(n, 1))
  ffi.copy(buf, blob, #blob)
  local out = {}
  for i = 1, n do out[i] = buf[i - 1] end
  return out
end

--- One image's record: {image, source, label (nil without one), prediction,
-- target (the class explained), probabilities (Lua array, softmax of the
-- logits), noise_key (16 hex digits)}, or nil when the image is not finished.
function Store:image(id)
  live(self)
  local r = rows(self, 'SELECT image, source, label, prediction, target, probabilities, noise_key FROM images ' ..
    'WHERE image = ?', { id })[1]
  if not r then return nil end
  return { image = r[1], source = r[2], label = r[3], prediction = r[4], target = r[5],
    probabilities = f64_list(r[6]), noise_key = r[7] }
end

-- A tensor of the given shape from a float32 little-endian blob.
local function tensor_of(blob, shape, what)
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  if #blob ~= 4 * n then
    error(('store: %s holds %d bytes, but its shape %s needs %d'):format(what, #blob, table.concat(shape, 'x'), 4 * n), 0)
  end
  -- through mr_tensor_write, which turns NaNs with payloads into one plain NaN
  -- (a forged blob's NaN bits must never reach Lua: docs/sandbox.md)
  local t = T.zeros(shape)
  core.check(core.C.mr_tensor_write(core.handle(t), 0, ffi.cast('const float *', blob), n))
  return t
end

--- The map of (image id, method key) as a tensor of its recorded shape
-- ((1, C, H, W) for the data-set command), or nil when it is not there.
function Store:map(id, method)
  live(self)
  local r = rows(self, 'SELECT shape, map FROM maps WHERE image = ? AND method = ?', { id, method })[1]
  if not r then return nil end
  return tensor_of(r[2], cjson.decode(r[1]), ('the map of image %d, %s,'):format(id, method))
end

--- The raw bytes of a map (float32 little-endian) and its shape (Lua array),
-- or nil: what the tests compare bit for bit.
function Store:map_bytes(id, method)
  live(self)
  local r = rows(self, 'SELECT shape, map FROM maps WHERE image = ? AND method = ?', { id, method })[1]
  if not r then return nil end
  return r[2], cjson.decode(r[1])
end

--- The maps of method for the images ids (default: every finished image, in
-- ascending order) as one batch (N, C, H, W), and the ids. Errors: an image
-- without that method's map (names it), maps of different shapes.
function Store:maps(method, ids)
  live(self)
  ids = ids or self:images()
  if #ids == 0 then error(('store %s: no images'):format(self.path), 2) end
  local parts, shape = {}, nil
  for i, id in ipairs(ids) do
    local blob, s = self:map_bytes(id, method)
    if not blob and not self:image(id) then
      error(('store %s: image %s is not in the store (it holds %d images)'):format(self.path, tostring(id),
        self:count()), 2)
    elseif not blob then
      error(('store %s: image %s has no map of %s (methods there: %s)'):format(self.path, tostring(id),
        tostring(method), table.concat(self:methods(), ', ')), 2)
    end
    if s[1] ~= 1 then error(('store %s: map of image %d is a batch of %d'):format(self.path, id, s[1]), 2) end
    if shape and canonical(s, 'shape') ~= canonical(shape, 'shape') then
      error(('store %s: the maps of %s have different shapes (%s, %s)'):format(self.path, method,
        table.concat(shape, 'x'), table.concat(s, 'x')), 2)
    end
    shape = s
    parts[i] = blob
  end
  local full = { #ids }
  for k = 2, #shape do full[k] = shape[k] end
  return tensor_of(table.concat(parts), full, method .. "'s maps"), ids
end

--- The options a method ran with (table), as recorded with its maps.
function Store:options(method)
  live(self)
  local r = rows(self, 'SELECT options FROM maps WHERE method = ? LIMIT 1', { method })[1]
  return r and cjson.decode(r[1]) or nil
end

--- The values of one metric of one method over the finished images, in
-- ascending image order, and the ids. ARGS: method key, metric name
-- ('sparsity', 'gini', 'seconds': the seconds column of the maps).
function Store:metric(method, name)
  live(self)
  local q = name == 'seconds'
    and 'SELECT image, seconds FROM maps WHERE method = ? ORDER BY image'
    or 'SELECT image, value FROM metrics WHERE method = ? AND metric = ? ORDER BY image'
  local out, ids = {}, {}
  for _, r in ipairs(rows(self, q, name == 'seconds' and { method } or { method, name })) do
    ids[#ids + 1], out[#out + 1] = r[1], r[2] == nil and 0 / 0 or r[2]
  end
  return out, ids
end

local function hex(key)
  if type(key) == 'string' then return key end
  return require('bit').tohex(key, 16) -- uint64_t cdata: 16 hex digits
end

--- Writes one finished image with every method's map, in one transaction:
-- after a kill at any moment the store holds all of it or none of it.
-- ARGS: rec {image (id, integer >= 0), source (text: where it came from),
-- label (or nil), prediction, target (the class explained), probabilities
-- (Lua array), noise_key (uint64_t or 16 hex digits), methods = Lua array of
-- {method = key, map = tensor (1, C, H, W) (only the first item is
-- written when given a batch with `item`), item = 1-based item of map (default 1),
-- options = table, seconds = number, metrics = {name = number}}}.
-- Errors: the image already in the store (the message names it); a failed
-- write (disk full, read-only), after which the store is as before the call.
function Store:put_image(rec)
  live(self)
  if self.readonly then error(('store %s: opened read-only'):format(self.path), 2) end
  -- a store opened without params (to read) takes the writer's lock at its first write
  if not self.lock then
    local okl, errl = pcall(lock, self.path)
    if not okl then error(errl, 2) end
    self.lock = errl
  end
  exec(self, 'BEGIN IMMEDIATE', ('cannot start writing image %s'):format(tostring(rec.image)))
  local ok, err = pcall(function()
    if rows(self, 'SELECT count(*) FROM images WHERE image = ?', { rec.image })[1][1] > 0 then
      error(('store %s: image %d is already there'):format(self.path, rec.image), 0)
    end
    run(self, 'INSERT INTO images (image, source, label, prediction, target, probabilities, noise_key) ' ..
      'VALUES (?, ?, ?, ?, ?, ?, ?)', { rec.image, rec.source, rec.label, rec.prediction, rec.target,
      { blob = f64_blob(rec.probabilities) }, hex(rec.noise_key), n = 7 }, nil,
      ('cannot write image %d'):format(rec.image))
    for _, m in ipairs(rec.methods) do
      local x, item = m.map, m.item or 1
      local shape = x:shape()
      local per = x:numel() / shape[1]
      shape[1] = 1
      local blob = ffi.string(ffi.cast('float *', x:data()) + (item - 1) * per, 4 * per)
      run(self, 'INSERT INTO maps (image, method, shape, map, options, seconds) VALUES (?, ?, ?, ?, ?, ?)',
        { rec.image, m.method, canonical(shape, 'shape'), { blob = blob }, canonical(m.options or {}, 'options'),
          { real = m.seconds or 0 } }, nil, ('cannot write the %s map of image %d'):format(m.method, rec.image))
      local names = {}
      for k in pairs(m.metrics or {}) do names[#names + 1] = k end
      table.sort(names)
      for _, k in ipairs(names) do
        local v = m.metrics[k]
        run(self, 'INSERT INTO metrics (image, method, metric, value) VALUES (?, ?, ?, ?)',
          { rec.image, m.method, k, v == v and { real = v } or nil, n = 4 }, nil,
          ('cannot write metric %s of image %d'):format(k, rec.image))
      end
    end
  end)
  if not ok then
    sql.sqlite3_exec(self.db, 'ROLLBACK', nil, nil, nil)
    error(err, 2)
  end
  local okc, errc = pcall(exec, self, 'COMMIT', ('cannot commit image %d'):format(rec.image))
  if not okc then
    sql.sqlite3_exec(self.db, 'ROLLBACK', nil, nil, nil)
    error(errc, 2)
  end
end

--- Checks the file: SQLite's integrity check, and that every finished
-- image has the same number of maps. RETURN: true, or false and what is wrong.
function Store:check()
  live(self)
  local r = rows(self, 'PRAGMA integrity_check')
  if r[1][1] ~= 'ok' then return false, 'integrity_check: ' .. tostring(r[1][1]) end
  local per = rows(self, 'SELECT count(*) FROM maps GROUP BY image')
  local nimg = self:count()
  if #per ~= nimg then return false, ('%d images but maps for %d'):format(nimg, #per) end
  for i = 2, #per do
    if per[i][1] ~= per[1][1] then return false, 'images with different numbers of maps' end
  end
  return true
end

--- Closes the store (a WAL checkpoint folds the log into the file); further
-- calls on it raise. Closing twice is no error.
function Store:close()
  if not self.db then return end
  for _, s in pairs(self.stmts) do sql.sqlite3_finalize(s) end
  self.stmts = {}
  local db = self.db
  self.db = nil
  ffi.gc(db, nil)
  sql.sqlite3_close_v2(db)
  unlock(self.lock) -- after SQLite's last write (the checkpoint of the close)
  self.lock = nil
end

-- ------------------------------------------------------------ export

--- Writes every map to a safetensors file: one tensor per method, named by
-- its key, shaped (N, C, H, W) over the finished images in ascending order,
-- plus `image_ids`-free metadata: the ids (JSON list), the store's parameters
-- and git revision (moreau.safetensors' metadata is strings only).
-- ARGS: path. RETURN: the number of images.
function Store:export_safetensors(path)
  live(self)
  local st = require 'moreau.safetensors'
  local ids = self:images()
  if #ids == 0 then error(('store %s: no finished images to export'):format(self.path), 2) end
  local tensors = {}
  for _, m in ipairs(self:methods()) do tensors[m] = self:maps(m, ids) end
  local info = self:info()
  st.save(path, tensors, { image_ids = canonical(ids, 'ids'), params = canonical(self:params(), 'params'),
    git_revision = tostring(info.git_revision), moreau = tostring(info.versions and info.versions.moreau) })
  return #ids
end

-- A CSV field: quoted when it holds a comma, a quote or a line break (RFC 4180).
local function csv_field(v)
  if v == nil then return '' end
  if type(v) == 'number' then
    if v ~= v then return 'nan' end
    if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return ('%d'):format(v) end
    return ('%.9g'):format(v)
  end
  v = tostring(v)
  if v:find('[,"\r\n]') then return '"' .. v:gsub('"', '""') .. '"' end
  return v
end

--- Writes one CSV row per (image, method): image, source, label,
-- prediction, target, the probability of the target, method, seconds, and
-- one column per metric (RFC 4180 quoting; numbers with 9 significant
-- digits). The maps are not in it (export_safetensors has them).
-- ARGS: path. RETURN: the number of rows.
function Store:export_csv(path)
  live(self)
  local metric_names = {}
  for _, r in ipairs(rows(self, 'SELECT DISTINCT metric FROM metrics ORDER BY metric')) do
    metric_names[#metric_names + 1] = r[1]
  end
  local f, e = io.open(path, 'wb')
  if not f then error(('store: cannot write %s: %s'):format(path, tostring(e)), 2) end
  local header = { 'image', 'source', 'label', 'prediction', 'target', 'p_target', 'method', 'seconds' }
  for _, m in ipairs(metric_names) do header[#header + 1] = m end
  f:write(table.concat(header, ','), '\n')
  local n = 0
  for _, r in ipairs(rows(self, 'SELECT i.image, i.source, i.label, i.prediction, i.target, i.probabilities, ' ..
      'm.method, m.seconds FROM images i JOIN maps m ON m.image = i.image ORDER BY i.image, m.method')) do
    local p = f64_list(r[6])
    local fields = { r[1], r[2], r[3], r[4], r[5], p[r[5] + 1], r[7], r[8] }
    local vals = {}
    for _, q in ipairs(rows(self, 'SELECT metric, value FROM metrics WHERE image = ? AND method = ?', { r[1], r[7] })) do
      vals[q[1]] = q[2] == nil and 0 / 0 or q[2]
    end
    for j, m in ipairs(metric_names) do fields[8 + j] = vals[m] end
    -- by position: a missing label or metric is an empty field
    local line = {}
    for i = 1, #header do line[i] = csv_field(fields[i]) end
    f:write(table.concat(line, ','), '\n')
    n = n + 1
  end
  f:close()
  return n
end

-- ------------------------------------------------------------ merge

--- Combines the stores of the shards of one run into a new store at out.
-- Refuses (naming the store and what differs): stores whose parameters
-- differ other than `shard` (the git revision and moreau version are
-- parameters too), an image in two stores (names it and both), a shard
-- missing or given twice, and images of the run's range that no store holds
-- (names how many and the first, and the shard that lacks them). out must
-- not exist. Every row is copied as stored, so the merged maps are the
-- shards' bytes. ARGS: inputs (Lua array of paths), out (path).
-- RETURN: the number of images merged.
function store.merge(inputs, out)
  if type(inputs) ~= 'table' or #inputs == 0 then error('store.merge: give the shard stores to merge', 2) end
  if type(out) ~= 'string' or out == '' then error('store.merge: give the merged store with -o FILE', 2) end
  if file_exists(out) then
    error(('store.merge: %s exists; the merged store is a new file (remove it, or name another)'):format(out), 2)
  end
  local ok, res = pcall(function()
    local first, params, shards, owner = nil, nil, {}, {}
    local count = 0
    local stores = {}
    for _, path in ipairs(inputs) do
      local s = store.open(path, { readonly = true })
      stores[#stores + 1] = s
      local p = s:params()
      if not params then
        first, params = path, p
      else
        local d = store.differ(params, p, { shard = true })
        if d then
          error(('store.merge: %s and %s come from different runs: %s'):format(first, path,
            d:gsub(' in the store, ', ' in ' .. first .. ', '):gsub(' here$', ' in ' .. path)), 0)
        end
      end
      local okc, why_bad = s:check()
      if not okc then error(('store.merge: %s is damaged: %s'):format(path, why_bad), 0) end
      local sh = p.shard or '0/1'
      if shards[sh] then error(('store.merge: %s and %s are both shard %s'):format(shards[sh], path, sh), 0) end
      shards[sh] = path
      for _, id in ipairs(s:images()) do
        if owner[id] then
          error(('store.merge: image %d is in both %s and %s (overlapping shards)'):format(id, owner[id], path), 0)
        end
        owner[id] = path
        count = count + 1
      end
    end
    -- every shard of the run, and every image of each shard's range
    local N = tonumber(tostring(params.shard or '0/1'):match('/(%d+)$')) or 1
    for k = 0, N - 1 do
      if not shards[('%d/%d'):format(k, N)] then
        error(('store.merge: shard %d/%d is missing (given: %d stores of %d shards)'):format(k, N, #inputs, N), 0)
      end
    end
    local range = params.range
    if type(range) == 'table' and #range == 2 then
      local missing, first_missing = 0, nil
      for id = range[1], range[2] - 1 do
        if not owner[id] then
          missing = missing + 1
          first_missing = first_missing or id
        end
      end
      if missing > 0 then
        local k = store.shard_of(first_missing, range[1], range[2], N)
        error(('store.merge: %d image(s) of the range %d:%d are in no store, the first %d (shard %d/%d, %s, is ' ..
          'unfinished: run its command again to resume it)'):format(missing, range[1], range[2], first_missing, k, N,
          shards[('%d/%d'):format(k, N)]), 0)
      end
    end
    for _, s in ipairs(stores) do s:close() end
    local merged = {}
    for k, v in pairs(params) do merged[k] = v end
    merged.shard = '0/1'
    local dst = store.open(out, { params = merged })
    -- the run table says what made the shards, not the merge
    local src_info = store.open(first, { readonly = true })
    local info = src_info:info()
    src_info:close()
    -- one transaction per shard (SQLite attaches no file inside a
    -- transaction); a failure removes the new file, so no partial merge stays
    local okm, errm = pcall(function()
      exec(dst, 'BEGIN IMMEDIATE', 'cannot start the merge')
      for k, v in pairs(info) do
        if k ~= 'created' then run(dst, 'INSERT OR REPLACE INTO run (key, value) VALUES (?, ?)', { k, canonical(v, k) }) end
      end
      run(dst, 'INSERT OR REPLACE INTO run (key, value) VALUES (?, ?)', { 'merged_from', canonical(inputs, 'inputs') })
      exec(dst, 'COMMIT', 'cannot commit the merge')
      for _, path in ipairs(inputs) do
        run(dst, 'ATTACH DATABASE ? AS src', { path }, nil, 'cannot attach ' .. path)
        exec(dst, 'BEGIN IMMEDIATE', 'cannot start the merge')
        for _, tbl in ipairs { 'images', 'maps', 'metrics' } do
          exec(dst, ('INSERT INTO main.%s SELECT * FROM src.%s'):format(tbl, tbl), ('cannot copy %s from %s'):format(tbl, path))
        end
        exec(dst, 'COMMIT', 'cannot commit the merge')
        exec(dst, 'DETACH DATABASE src', 'cannot detach ' .. path)
      end
    end)
    if not okm then
      sql.sqlite3_exec(dst.db, 'ROLLBACK', nil, nil, nil)
      dst:close()
      os.remove(out)
      os.remove(out .. '-wal')
      os.remove(out .. '-shm')
      os.remove(out .. '-lock')
      error(errm, 0)
    end
    dst:close()
    return count
  end)
  if not ok then error((tostring(res):gsub('^[^\n]-:%d+: ', '')), 2) end
  return res
end

-- ------------------------------------------------------------ shards

-- Checks the integers of a shard: 0 <= first <= last, 0 <= k < n (k nil:
-- not checked); raises "WHO: ..." naming them at the caller's caller (a NaN
-- or 1.5 would give a range no shard has, a string a raw error).
local function shard_args(who, first, last, k, n)
  local function int(v) return type(v) == 'number' and v == math.floor(v) and v >= 0 and v < 2 ^ 53 end
  if not (int(first) and int(last) and first <= last) then
    error(('%s: first..last must be image ids with 0 <= first <= last, got %s..%s'):format(who,
      require('moreau.options').show(first), require('moreau.options').show(last)), 3)
  end
  if not (int(n) and n >= 1 and (k == nil or int(k) and k < n)) then
    error(('%s: shard %s of %s: need integers 0 <= K < N'):format(who, require('moreau.options').show(k),
      require('moreau.options').show(n)), 3)
  end
end

--- The image range [lo, hi) of shard k of n over [first, last): contiguous
-- blocks, shard k taking [first + ⌊k·L/n⌋, first + ⌊(k+1)·L/n⌋) with
-- L = last − first, so the blocks differ in size by at most one and depend
-- only on (first, last, k, n). ARGS: first, last, k (0-based), n.
function store.shard_range(first, last, k, n)
  shard_args('store.shard_range', first, last, k, n)
  local L = last - first
  return first + math.floor(k * L / n), first + math.floor((k + 1) * L / n)
end

--- The shard (0-based) that holds image id of [first, last) split n ways.
function store.shard_of(id, first, last, n)
  shard_args('store.shard_of', first, last, nil, n)
  if type(id) ~= 'number' then
    error(('store.shard_of: id must be an image id, got %s'):format(require('moreau.options').show(id)), 2)
  end
  for k = 0, n - 1 do
    local lo, hi = store.shard_range(first, last, k, n)
    if id >= lo and id < hi then return k end
  end
  return nil
end

--- The store file of shard k of n: PATH itself when n = 1; else PATH with
-- `{K}` and `{N}` replaced when it holds them (RUN-{K}.db), else
-- "-K-of-N" put before the extension (RUN.db -> RUN-2-of-16.db).
function store.shard_path(path, k, n)
  shard_args('store.shard_path', 0, 0, k, n)
  if type(path) ~= 'string' then
    error(('store.shard_path: path must be a string, got %s'):format(require('moreau.options').show(path)), 2)
  end
  if n == 1 then return path end
  if path:find('{K}', 1, true) then
    return (path:gsub('{K}', tostring(k)):gsub('{N}', tostring(n)))
  end
  local stem, ext = path:match('^(.-)(%.[^./]*)$')
  if not stem or stem == '' or stem:sub(-1) == '/' then stem, ext = path, '' end
  return ('%s-%d-of-%d%s'):format(stem, k, n, ext)
end

-- ------------------------------------------------------------ statistics

-- Regularized incomplete beta I_x(a, b) by its continued fraction (modified
-- Lentz's method; the expansion of Abramowitz & Stegun 26.5.8, as in
-- Numerical Recipes' betacf), used for Student's t distribution.
local function betacf(a, b, x)
  local tiny, eps = 1e-300, 1e-15
  local qab, qap, qam = a + b, a + 1, a - 1
  local c, d = 1, 1 - qab * x / qap
  if math.abs(d) < tiny then d = tiny end
  d = 1 / d
  local h = d
  for m = 1, 300 do
    local m2 = 2 * m
    local aa = m * (b - m) * x / ((qam + m2) * (a + m2))
    d = 1 + aa * d; if math.abs(d) < tiny then d = tiny end
    c = 1 + aa / c; if math.abs(c) < tiny then c = tiny end
    d = 1 / d
    h = h * d * c
    aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
    d = 1 + aa * d; if math.abs(d) < tiny then d = tiny end
    c = 1 + aa / c; if math.abs(c) < tiny then c = tiny end
    d = 1 / d
    local del = d * c
    h = h * del
    if math.abs(del - 1) < eps then break end
  end
  return h
end

-- log Γ(z), z > 0 (Lanczos, g = 7, n = 9; the coefficients of Godfrey's table)
local LANCZOS = { 0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313,
  -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7 }
local function lgamma(z)
  local x = LANCZOS[1]
  for i = 1, 8 do x = x + LANCZOS[i + 1] / (z - 1 + i) end
  local t = z - 1 + 7.5
  return 0.5 * math.log(2 * math.pi) + (z - 0.5) * math.log(t) - t + math.log(x)
end

local function ibeta(a, b, x)
  if x <= 0 then return 0 end
  if x >= 1 then return 1 end
  local bt = math.exp(lgamma(a + b) - lgamma(a) - lgamma(b) + a * math.log(x) + b * math.log(1 - x))
  if x < (a + 1) / (a + b + 2) then return bt * betacf(a, b, x) / a end
  return 1 - bt * betacf(b, a, 1 - x) / b
end

--- Student's t distribution: P(T <= t) with nu degrees of freedom, by
-- P(|T| > t) = I_{nu/(nu+t²)}(nu/2, 1/2). ARGS: t, nu (> 0).
function store.t_cdf(t, nu)
  local tail = ibeta(nu / 2, 0.5, nu / (nu + t * t)) / 2
  return t >= 0 and 1 - tail or tail
end

--- The quantile t_{p, nu} of Student's t distribution (p in (0.5, 1)), by
-- bisection on store.t_cdf to 1e-12. ARGS: p, nu.
function store.t_quantile(p, nu)
  local lo, hi = 0, 1
  while store.t_cdf(hi, nu) < p do lo, hi = hi, hi * 2 end
  for _ = 1, 200 do
    local mid = (lo + hi) / 2
    if store.t_cdf(mid, nu) < p then lo = mid else hi = mid end
    if hi - lo < 1e-12 * math.max(1, hi) then break end
  end
  return (lo + hi) / 2
end

--- Summary statistics of a list of values, NaN skipped: n, mean, sd (the
-- sample standard deviation, divisor n − 1), and the two-sided confidence
-- interval of the mean by Student's t: mean ± t_{1−α/2, n−1}·sd/√n (level
-- 1 − α, 0.95 by default; exact for normal values, and the normal
-- approximation's z_{0.975} = 1.96 is the limit for large n). With n = 1 sd
-- and the interval are NaN. ARGS: values (Lua array), level (default 0.95).
-- RETURN: {n, mean, sd, lo, hi, half_width, level, method = 'student-t'}.
function store.aggregate(values, level)
  level = level or 0.95
  if type(values) ~= 'table' then error('store.aggregate: values must be a Lua array of numbers', 2) end
  if not (type(level) == 'number' and level > 0 and level < 1) then
    error('store.aggregate: level must be in (0, 1), got ' .. tostring(level), 2)
  end
  local n, s = 0, 0
  for i, v in ipairs(values) do
    if type(v) ~= 'number' then error(('store.aggregate: values[%d] is a %s, not a number'):format(i, type(v)), 2) end
    if v == v then n, s = n + 1, s + v end
  end
  local out = { n = n, level = level, method = 'student-t' }
  if n == 0 then
    out.mean, out.sd, out.lo, out.hi, out.half_width = 0 / 0, 0 / 0, 0 / 0, 0 / 0, 0 / 0
    return out
  end
  local mean = s / n
  local q = 0
  for _, v in ipairs(values) do if v == v then q = q + (v - mean) ^ 2 end end
  out.mean = mean
  if n < 2 then
    out.sd, out.lo, out.hi, out.half_width = 0 / 0, 0 / 0, 0 / 0, 0 / 0
    return out
  end
  out.sd = math.sqrt(q / (n - 1))
  out.half_width = store.t_quantile(1 - (1 - level) / 2, n - 1) * out.sd / math.sqrt(n)
  out.lo, out.hi = mean - out.half_width, mean + out.half_width
  return out
end

--- store.aggregate of one metric of one method over several stores (the
-- shards of a run, or one store): their images pooled. Refuses stores of
-- different runs and an image in two of them. ARGS: paths (Lua array, or
-- one path), method key, metric name (as Store:metric), level.
-- RETURN: the aggregate table, with stores = #paths.
function store.aggregate_metric(paths, method, metric, level)
  if type(paths) == 'string' then paths = { paths } end
  local values, seen, params, first = {}, {}, nil, nil
  for _, path in ipairs(paths) do
    local s = store.open(path, { readonly = true })
    local ok, err = pcall(function()
      local p = s:params()
      if params then
        local d = store.differ(params, p, { shard = true })
        if d then error(('store.aggregate_metric: %s and %s come from different runs: %s'):format(first, path, d), 0) end
      else
        params, first = p, path
      end
      local v, ids = s:metric(method, metric)
      for i, id in ipairs(ids) do
        if seen[id] then error(('store.aggregate_metric: image %d is in %s and %s'):format(id, seen[id], path), 0) end
        seen[id] = path
        values[#values + 1] = v[i]
      end
    end)
    s:close()
    if not ok then error(err, 2) end
  end
  local out = store.aggregate(values, level)
  out.stores = #paths
  return out
end

return store
