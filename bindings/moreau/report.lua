--- moreau.report — a results folder: PNGs, CSV tables, results.json and an
-- index.html page that shows them together.
--
--   local rep = report.new('compare_methods', { params = p })
--   rep:image('grid.png', canvas, 'All methods on 8 test images')
--   rep:table('metrics.csv', { 'method', 'distance' }, rows, 'Top-k attack, eps = 1')
--   rep.results.per_image = {...}       -- anything JSON-serializable
--   rep:finish()                        -- writes results.json and index.html
--
-- results.json holds the recipe, its parameters, the git revision, the
-- library versions and the date, next to what the recipe put in rep.results.
local ffi = require 'ffi'
local cjson = require('cjson').new()
cjson.encode_invalid_numbers('null') -- a NaN in a result must not lose the whole file
local core = require 'moreau.core'

local report = {}
local Report = {}
Report.__index = Report

local function mkdir_p(dir)
  local lfs = require 'lfs'
  local path = ''
  for part in dir:gmatch('[^/]+') do
    path = (path == '' and (dir:sub(1, 1) == '/' and '/' or '') or path .. '/') .. part
    if not lfs.attributes(path) then
      local ok, err = lfs.mkdir(path)
      if not ok then error('report: cannot create ' .. path .. ': ' .. tostring(err), 3) end
    end
  end
end
report.mkdir_p = mkdir_p

--- The git revision of the source tree (nil outside a checkout).
function report.git_revision()
  local p = io.popen('git -C "' .. core.root .. '" rev-parse --short HEAD 2>/dev/null')
  if not p then return nil end
  local rev = p:read('*l')
  p:close()
  if rev and #rev > 0 then
    local d = io.popen('git -C "' .. core.root .. '" status --porcelain 2>/dev/null | head -n 1')
    local dirty = d and d:read('*l')
    if d then d:close() end
    return rev .. ((dirty and #dirty > 0) and '+dirty' or '')
  end
end

--- Versions of what produced a result.
function report.versions()
  return {
    moreau = core.version(),
    luajit = jit and jit.version or _VERSION,
    backend = ffi.string(core.C.mr_backend_info()),
    threads = core.C.mr_get_num_threads(),
  }
end

--- A fresh folder results/NAME-YYYYmmdd-HHMMSS, or with -2, -3, ... when
-- another run made that one in the same second: mkdir creates it or fails if
-- it exists (exclusive create), so two runs never share a folder.
function report.new_run_dir(name)
  local lfs = require 'lfs'
  mkdir_p('results')
  local base = ('results/%s-%s'):format(name, os.date('%Y%m%d-%H%M%S'))
  for i = 1, 1000 do
    local dir = i == 1 and base or ('%s-%d'):format(base, i)
    if lfs.mkdir(dir) then return dir end
  end
  error('report: cannot create a new folder ' .. base .. '-N (1000 taken)', 3)
end

--- A new results folder. ARGS: name (letters, digits, '_' and '-': it names
-- the folder), opts {dir = folder (default: a new results/NAME-YYYYmmdd-HHMMSS,
-- made for this run alone), params, recipe (path)}.
function report.new(name, opts)
  opts = opts or {}
  if type(name) ~= 'string' or not name:match('^[%w_%-]+$') then
    error(("report: name %s must be letters, digits, '_' or '-' (it names the results folder)")
      :format(type(name) == 'string' and "'" .. name .. "'" or type(name)), 2)
  end
  local dir = opts.dir
  if dir then mkdir_p(dir) else dir = report.new_run_dir(name) end
  return setmetatable({
    name = name, dir = dir, items = {},
    results = {
      recipe = name, recipe_file = opts.recipe, params = opts.params or {},
      git = report.git_revision(), versions = report.versions(), date = os.date('!%Y-%m-%dT%H:%M:%SZ'),
    },
  }, Report)
end

--- The path of a file inside the folder.
function Report:path(file)
  if type(file) ~= 'string' or file == '' or file:find('/', 1, true) or file:find('..', 1, true) then
    error("report: '" .. tostring(file) .. "' must be a plain file name inside the results folder", 3)
  end
  -- a link already in the folder would carry the write elsewhere: refused
  -- (the OS sandbox of issue 13 is the wall that holds; this check is the second)
  local attr = require('lfs').symlinkattributes(self.dir .. '/' .. file)
  if attr and attr.mode ~= 'file' then
    error(("report: '%s' in the results folder is a %s, not a plain file: not written"):format(file, attr.mode), 3)
  end
  return core.check_write(self.dir .. '/' .. file, 3)
end

--- Saves a canvas (moreau.viz) as PNG and lists it on the page.
function Report:image(file, canvas, caption)
  if not require('moreau.viz').is_canvas(canvas) then
    error(('report:image: %s is not a picture (a moreau.viz canvas: viz.heatmap, viz.grid, ...)'):format(
      require('moreau.options').show(canvas)), 2)
  end
  canvas:save_png(self:path(file))
  self.items[#self.items + 1] = { kind = 'image', file = file, caption = caption }
end

local function csv_cell(v)
  if type(v) == 'number' then return ('%.6g'):format(v) end
  v = tostring(v)
  if v:find('[,"\n]') then v = '"' .. v:gsub('"', '""') .. '"' end
  return v
end

--- Writes a CSV table and shows it on the page. rows: arrays of cells.
function Report:table(file, header, rows, caption)
  local f = assert(io.open(self:path(file), 'w'))
  local line = {}
  for i, h in ipairs(header) do line[i] = csv_cell(h) end
  f:write(table.concat(line, ','), '\n')
  for _, r in ipairs(rows) do
    line = {}
    for i = 1, #header do line[i] = csv_cell(r[i] == nil and '' or r[i]) end
    f:write(table.concat(line, ','), '\n')
  end
  f:close()
  self.items[#self.items + 1] = { kind = 'table', file = file, caption = caption, header = header, rows = rows }
end

--- A paragraph of text on the page.
function Report:note(text)
  self.items[#self.items + 1] = { kind = 'note', text = text }
end

local function html_escape(s)
  return (tostring(s):gsub('&', '&amp;'):gsub('<', '&lt;'):gsub('>', '&gt;'):gsub('"', '&quot;'):gsub("'", '&#39;'))
end

function Report:html()
  local out = {
    -- No script runs on a results page, whoever wrote the recipe: every string
    -- is escaped below, and the policy forbids script, plugins, frames, forms
    -- and anything fetched from elsewhere (images come from the folder itself).
    '<!doctype html><html><head><meta charset="utf-8">',
    '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src \'self\'; ',
    'style-src \'unsafe-inline\'; base-uri \'none\'; form-action \'none\'">',
    '<title>', html_escape(self.name), '</title>',
    '<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}',
    'figure{margin:1.5em 0}img{max-width:100%;image-rendering:pixelated;border:1px solid #ddd}',
    'table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}',
    'th{background:#f2f2f2}caption{font-weight:bold;padding:4px}code{background:#f5f5f5}</style></head><body>',
    '<h1>', html_escape(self.name), '</h1>',
    '<p>', html_escape(self.results.date), ' · moreau ', html_escape(self.results.versions.moreau),
    ' · git ', html_escape(self.results.git or 'unknown'), ' · <a href="results.json">results.json</a></p>',
  }
  local keys = {}
  for k in pairs(self.results.params or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  if #keys > 0 then
    out[#out + 1] = '<table id="params"><caption>parameters</caption>'
    for _, k in ipairs(keys) do
      local v = self.results.params[k]
      if type(v) == 'table' then v = table.concat(v, ', ') end
      out[#out + 1] = ('<tr><th>%s</th><td>%s</td></tr>'):format(html_escape(k), html_escape(v))
    end
    out[#out + 1] = '</table>'
  end
  for _, it in ipairs(self.items) do
    if it.kind == 'image' then
      out[#out + 1] = ('<figure><img src="%s" alt="%s"><figcaption>%s</figcaption></figure>'):format(
        html_escape(it.file), html_escape(it.caption or it.file), html_escape(it.caption or it.file))
    elseif it.kind == 'table' then
      out[#out + 1] = ('<table class="results"><caption>%s (<a href="%s">%s</a>)</caption><tr>'):format(
        html_escape(it.caption or it.file), html_escape(it.file), html_escape(it.file))
      for _, h in ipairs(it.header) do out[#out + 1] = '<th>' .. html_escape(h) .. '</th>' end
      out[#out + 1] = '</tr>'
      for _, r in ipairs(it.rows) do
        out[#out + 1] = '<tr>'
        for i = 1, #it.header do out[#out + 1] = '<td>' .. html_escape(csv_cell(r[i] == nil and '' or r[i])) .. '</td>' end
        out[#out + 1] = '</tr>'
      end
      out[#out + 1] = '</table>'
    else
      out[#out + 1] = '<p>' .. html_escape(it.text) .. '</p>'
    end
  end
  out[#out + 1] = '</body></html>\n'
  return table.concat(out)
end

--- Writes results.json and index.html. RETURN: the folder.
function Report:finish()
  local f = assert(io.open(self:path('results.json'), 'w'))
  f:write(cjson.encode(self.results), '\n')
  f:close()
  f = assert(io.open(self:path('index.html'), 'w'))
  f:write(self:html())
  f:close()
  return self.dir
end

--- Reads a results.json back (to re-run with the same parameters).
function report.read(path)
  local f, err = io.open(path, 'r')
  if not f then error('report: cannot open ' .. tostring(err), 2) end
  local text = f:read('*a')
  f:close()
  local ok, t = pcall(cjson.decode, text)
  if not ok or type(t) ~= 'table' then error('report: ' .. path .. ' is not a results.json (' .. tostring(t) .. ')', 2) end
  return t
end

return report
