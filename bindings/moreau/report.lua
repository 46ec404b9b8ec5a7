--- moreau.report — a results folder: PNGs, CSV tables, results.json and an
-- index.html page that shows them together.
--
--   local rep = report.new('compare_methods', { params = p })
--   rep:image('grid.png', canvas, 'All methods on 8 test images')
--   rep:table('metrics.csv', { 'method', 'distance' }, rows, 'Top-k attack, eps = 1')
--   rep:figure { images = { { file = 'g.png', canvas = heat, label = '|grad|' } },
--     caption = 'the gradient', details = { { 'time', '0.1 s' } } }
--   rep:html_table { header = { 'class', 'p' }, rows = { { 'Coat', 0.62 } }, caption = 'top 5' }
--   rep.results.per_image = {...}       -- anything JSON-serializable
--   rep:finish()                        -- writes results.json and index.html
--
-- results.json holds the recipe, its parameters, the git revision, the
-- library versions and the date, next to what the recipe put in rep.results.
--
-- The page is text in the browser's own fonts (system-ui, sans-serif; nothing
-- is fetched) around the PNGs. Every string a recipe gives (captions, labels,
-- cells, notes, the error of a failed run) is HTML-escaped, so none becomes
-- markup, and the page's Content-Security-Policy forbids script anyway. A run
-- whose recipe raised (results.error, set by moreau.recipe.run) shows the
-- message in a box at the top of the page.
local ffi = require 'ffi'
local cjson = require('cjson').new()
cjson.encode_invalid_numbers('null') -- a NaN in a result must not lose the whole file
local core = require 'moreau.core'

local report = {}
local Report = {}
Report.__index = Report

-- The folder of each report, as it was made: the report's own methods write
-- only there, whatever its `dir` field or its `path` method says later (a
-- sandboxed recipe holds the report object and may change both).
local folders = setmetatable({}, { __mode = 'k' })

local function mkdir_p(dir)
  local lfs = require 'lfs'
  local path = ''
  for part in dir:gmatch('[^/]+') do
    path = (path == '' and (dir:sub(1, 1) == '/' and '/' or '') or path .. '/') .. part
    if not lfs.attributes(path) then
      local ok, err = lfs.mkdir(path)
      -- another run may have made it between the check and the mkdir (runs
      -- started together all make results/): that is no error
      if not ok and lfs.attributes(path, 'mode') ~= 'directory' then
        error('report: cannot create ' .. path .. ': ' .. tostring(err), 3)
      end
    end
  end
end
--- Creates the folder `dir` and its missing parents, as `mkdir -p` does (a
-- folder made meanwhile by another run is no error). Errors: a part that
-- cannot be created (the message names it and why).
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
  local rep = setmetatable({
    name = name, dir = dir, items = {}, written = {},
    results = {
      recipe = name, recipe_file = opts.recipe, params = opts.params or {},
      git = report.git_revision(), versions = report.versions(), date = os.date('!%Y-%m-%dT%H:%M:%SZ'),
    },
  }, Report)
  folders[rep] = dir
  return rep
end

--- The path of a file inside the folder.
local function target(self, file)
  local dir = folders[self]
  if not dir then error('report: not a report made by report.new', 3) end
  if type(file) ~= 'string' or file == '' or file:find('/', 1, true) or file:find('..', 1, true) then
    error("report: '" .. tostring(file) .. "' must be a plain file name inside the results folder", 3)
  end
  -- a link already in the folder would carry the write elsewhere: refused
  -- (the OS sandbox is the wall that holds; this check is the second)
  local attr = require('lfs').symlinkattributes(dir .. '/' .. file)
  if attr and attr.mode ~= 'file' then
    error(("report: '%s' in the results folder is a %s, not a plain file: not written"):format(file, attr.mode), 3)
  end
  return core.check_write(dir .. '/' .. file, 3)
end

--- The path of `file` in the results folder, for a recipe that writes the
-- file itself. Errors: file not a plain name (empty, or with '/' or '..'); a
-- link or a folder of that name already there; a sandboxed recipe writing
-- outside its folder. RETURN: the path.
function Report:path(file) return target(self, file) end

--- Saves a canvas (moreau.viz) as PNG and lists it on the page.
function Report:image(file, canvas, caption)
  if not require('moreau.viz').is_canvas(canvas) then
    error(('report:image: %s is not a picture (a moreau.viz canvas: viz.heatmap, viz.grid, ...)'):format(
      require('moreau.options').show(canvas)), 2)
  end
  canvas:save_png(target(self, file))
  self.written[file] = true
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
  local f = assert(io.open(target(self, file), 'w'))
  local line = {}
  for i, h in ipairs(header) do line[i] = csv_cell(h) end
  f:write(table.concat(line, ','), '\n')
  for _, r in ipairs(rows) do
    line = {}
    for i = 1, #header do line[i] = csv_cell(r[i] == nil and '' or r[i]) end
    f:write(table.concat(line, ','), '\n')
  end
  f:close()
  self.written[file] = true
  self.items[#self.items + 1] = { kind = 'table', file = file, caption = caption, header = header, rows = rows }
end

--- What the parameter table shows for parameter `name` instead of its
-- value, when the value alone does not say what ran: an empty `methods` list
-- means every method, so a recipe calls
-- rep:param_shown('methods', 'all: gradient, smoothgrad, ...'). Kept in
-- results.json as params_shown[name] (params keeps the value as given).
-- ARGS: name (a parameter's name), text (a string).
function Report:param_shown(name, text)
  if type(name) ~= 'string' or type(text) ~= 'string' then
    error('report:param_shown: name and text must be strings, got ' .. type(name) .. ' and ' .. type(text), 2)
  end
  self.results.params_shown = self.results.params_shown or {}
  self.results.params_shown[name] = text
end

--- A paragraph of text on the page.
function Report:note(text)
  self.items[#self.items + 1] = { kind = 'note', text = text }
end

--- A section heading on the page (an h2).
function Report:heading(text)
  if text == nil then error('report:heading: text is required', 2) end
  self.items[#self.items + 1] = { kind = 'heading', text = text }
end

local function check_text(v, what, level)
  if v ~= nil and type(v) ~= 'string' and type(v) ~= 'number' then
    error(('report:%s must be a string or a number, got %s'):format(what, type(v)), level + 1)
  end
  return v
end

-- ids the page gives its own parts (a recipe's figure cannot pose as the error box)
local PAGE_IDS = { error = true, params = true }

local function check_id(id, what, level)
  if id ~= nil and (type(id) ~= 'string' or not id:match('^[%a][%w_%-]*$')) then
    error(("report:%s: id must be a letter then letters, digits, '_' or '-', got %s"):format(what,
      require('moreau.options').show(id)), level + 1)
  end
  if PAGE_IDS[id] then
    error(("report:%s: id '%s' is the page's own (taken: error, params)"):format(what, id), level + 1)
  end
  return id
end

-- Checks a picture of a figure: a canvas to save as file, or (canvas nil) a
-- file this report saved already (or one of pending, the files this figure
-- saves). Writes nothing (report:figure saves the
-- pictures once every part of the figure has been checked).
-- RETURN: the path to save the canvas to (nil for a file already saved).
local function figure_image(self, file, cv, what, level, pending)
  if type(file) ~= 'string' then
    error(('report:figure: %s needs a file name, got %s'):format(what, type(file)), level + 1)
  end
  if cv == nil then
    if not self.written[file] and not pending[file] then
      error(("report:figure: %s '%s' has no canvas and was not saved by this report"):format(what, file),
        level + 1)
    end
    return nil
  end
  if not require('moreau.viz').is_canvas(cv) then
    error(('report:figure: %s is not a picture (a moreau.viz canvas), got %s'):format(what,
      require('moreau.options').show(cv)), level + 1)
  end
  local ok, path = pcall(target, self, file)
  if not ok then error((tostring(path):gsub('^[^\n]-:%d+: ', '')), level + 1) end
  return path
end

--- A figure: pictures side by side, each with a label and an optional colour
-- bar, then a caption and details in text (the browser's fonts) under them.
-- ARGS: spec {
--   images  = { { file = 'name.png' (a plain file name in the folder),
--                 canvas = a moreau.viz canvas, saved as file (nil: a file this
--                   report saved already, e.g. a colour bar shared by panels),
--                 label = text under the picture,
--                 alt = text for the image (default: the label),
--                 colorbar = nil or { file, canvas (as above), low, mid, high
--                   (texts at its left end, middle, right end), note (text
--                   under it, e.g. the clip value and how it was chosen) } },
--               ... } (at least one),
--   title   = text (optional: the figure's heading),
--   caption = text (optional),
--   details = { { 'name', 'value' }, ... } (optional: a list of settings),
--   id      = an anchor for the figure (a letter, then letters, digits, _ or -) }
-- Every text is escaped: it shows as written, never as markup.
function Report:figure(spec)
  if type(spec) ~= 'table' or type(spec.images) ~= 'table' or #spec.images == 0 then
    error('report:figure: spec.images must be a non-empty list of { file, canvas, label }', 2)
  end
  local item = { kind = 'figure', images = {}, title = check_text(spec.title, 'figure: title', 2),
    caption = check_text(spec.caption, 'figure: caption', 2), details = {}, id = check_id(spec.id, 'figure', 2) }
  local saves, pending = {}, {} -- { path, canvas, file }, written after every check passed
  local function picture(file, cv, what)
    local path = figure_image(self, file, cv, what, 3, pending)
    if path then
      saves[#saves + 1] = { path, cv, file }
      pending[file] = true
    end
    return file
  end
  for i, im in ipairs(spec.images) do
    if type(im) ~= 'table' then
      error(('report:figure: images[%d] must be a table { file, canvas, label }, got %s'):format(i, type(im)), 2)
    end
    local what = ('images[%d]'):format(i)
    local entry = { file = picture(im.file, im.canvas, what),
      label = check_text(im.label, 'figure: ' .. what .. '.label', 2),
      alt = check_text(im.alt, 'figure: ' .. what .. '.alt', 2) }
    local cb = im.colorbar
    if cb ~= nil then
      if type(cb) ~= 'table' then
        error(('report:figure: %s.colorbar must be a table { file, canvas, low, mid, high, note }'):format(what), 2)
      end
      entry.colorbar = { file = picture(cb.file, cb.canvas, what .. '.colorbar') }
      for _, k in ipairs { 'low', 'mid', 'high', 'note' } do
        entry.colorbar[k] = check_text(cb[k], ('figure: %s.colorbar.%s'):format(what, k), 2)
      end
    end
    item.images[i] = entry
  end
  if spec.details ~= nil and type(spec.details) ~= 'table' then
    error("report:figure: spec.details must be a list of { 'name', 'value' }", 2)
  end
  for i, d in ipairs(spec.details or {}) do
    if type(d) ~= 'table' or d[1] == nil then
      error(("report:figure: details[%d] must be { 'name', 'value' }"):format(i), 2)
    end
    item.details[i] = { check_text(d[1], 'figure: details name', 2), check_text(d[2], 'figure: details value', 2) }
  end
  for _, sv in ipairs(saves) do
    sv[2]:save_png(sv[1])
    self.written[sv[3]] = true
  end
  self.items[#self.items + 1] = item
end

--- A table shown on the page only (no CSV file: use report:table for data
-- others will read back). ARGS: spec { header = { text, ... }, rows = { {
-- cell, ... }, ... } (numbers shown with 6 significant digits), caption =
-- text (optional), id = an anchor (optional, as report:figure) }.
function Report:html_table(spec)
  if type(spec) ~= 'table' or type(spec.header) ~= 'table' or #spec.header == 0 or type(spec.rows) ~= 'table' then
    error('report:html_table: spec needs header (a non-empty list) and rows (a list of lists)', 2)
  end
  for i, r in ipairs(spec.rows) do
    if type(r) ~= 'table' then error(('report:html_table: rows[%d] must be a list of cells'):format(i), 2) end
  end
  self.items[#self.items + 1] = { kind = 'html_table', header = spec.header, rows = spec.rows,
    caption = check_text(spec.caption, 'html_table: caption', 2), id = check_id(spec.id, 'html_table', 2) }
end

local function html_escape(s)
  return (tostring(s):gsub('&', '&amp;'):gsub('<', '&lt;'):gsub('>', '&gt;'):gsub('"', '&quot;'):gsub("'", '&#39;'))
end

-- The page's style: the browser's own fonts (nothing fetched), pictures at
-- their pixel size and never smoothed.
local STYLE = table.concat {
  'body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;',
  'max-width:1200px;margin:2em auto;padding:0 1em;color:#222;line-height:1.4}',
  'h2{margin-top:1.6em;border-bottom:1px solid #ddd}',
  'figure{margin:1.5em 0}img{max-width:100%;image-rendering:pixelated;border:1px solid #ddd}',
  'figure.panels h3{margin:0 0 .4em 0;font-size:1.1em}',
  '.row{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}',
  '.panel{display:flex;flex-direction:column;width:min-content}.panel img{max-width:none}',
  '.panel .label{font-size:.9em;margin-top:2px}',
  '.cbar{margin-top:6px;font-size:.8em;color:#444}.cbar img{display:block;border:1px solid #bbb}',
  '.ticks{display:flex;justify-content:space-between;font-variant-numeric:tabular-nums}',
  'figcaption{margin-top:.5em}dl.details{display:grid;grid-template-columns:max-content auto;',
  'gap:2px 12px;margin:.4em 0 0 0;font-size:.9em}dl.details dt{font-weight:bold}dl.details dd{margin:0}',
  'table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}',
  'td.num{text-align:right;font-variant-numeric:tabular-nums}',
  'th{background:#f2f2f2}caption{font-weight:bold;padding:4px}code{background:#f5f5f5}',
  '#error{border:2px solid #b00020;background:#fdecee;color:#5a000d;padding:.8em 1em;margin:1em 0}',
  '#error pre{white-space:pre-wrap;margin:.4em 0 0 0;font-size:1em}',
}

-- A cell of a table as text on the page (numbers with 6 significant digits,
-- as in the CSV file; no CSV quoting: the page is not a CSV file).
local function cell_text(v)
  if v == nil then return '' end
  if type(v) == 'number' then return csv_cell(v) end
  return tostring(v)
end

-- A table cell: text left-aligned, a number (a number, or text that reads
-- as one: '0.25', '-1', '1e-05') right-aligned, so digits line up.
local function td(text)
  return (tonumber(text) and '<td class="num">' or '<td>') .. html_escape(text) .. '</td>'
end

local function table_html(out, attrs, caption_html, header, rows)
  out[#out + 1] = '<table' .. attrs .. '>'
  if caption_html then out[#out + 1] = '<caption>' .. caption_html .. '</caption>' end
  out[#out + 1] = '<tr>'
  for _, h in ipairs(header) do out[#out + 1] = '<th>' .. html_escape(h) .. '</th>' end
  out[#out + 1] = '</tr>'
  for _, r in ipairs(rows) do
    out[#out + 1] = '<tr>'
    for i = 1, #header do out[#out + 1] = td(cell_text(r[i])) end
    out[#out + 1] = '</tr>'
  end
  out[#out + 1] = '</table>'
end

local function figure_html(out, it)
  out[#out + 1] = '<figure class="panels"' .. (it.id and (' id="' .. html_escape(it.id) .. '"') or '') .. '>'
  if it.title then out[#out + 1] = '<h3>' .. html_escape(it.title) .. '</h3>' end
  out[#out + 1] = '<div class="row">'
  for _, im in ipairs(it.images) do
    local alt = im.alt or im.label or im.file
    out[#out + 1] = ('<div class="panel"><img src="%s" alt="%s">'):format(html_escape(im.file), html_escape(alt))
    if im.label then out[#out + 1] = '<div class="label">' .. html_escape(im.label) .. '</div>' end
    local cb = im.colorbar
    if cb then
      out[#out + 1] = ('<div class="cbar"><img src="%s" alt="colour bar"><div class="ticks"><span>%s</span>')
        :format(html_escape(cb.file), html_escape(cb.low or ''))
      if cb.mid then out[#out + 1] = '<span>' .. html_escape(cb.mid) .. '</span>' end
      out[#out + 1] = '<span>' .. html_escape(cb.high or '') .. '</span></div>'
      if cb.note then out[#out + 1] = '<div class="cnote">' .. html_escape(cb.note) .. '</div>' end
      out[#out + 1] = '</div>'
    end
    out[#out + 1] = '</div>'
  end
  out[#out + 1] = '</div>'
  if it.caption or #it.details > 0 then
    out[#out + 1] = '<figcaption>'
    if it.caption then out[#out + 1] = html_escape(it.caption) end
    if #it.details > 0 then
      out[#out + 1] = '<dl class="details">'
      for _, d in ipairs(it.details) do
        out[#out + 1] = ('<dt>%s</dt><dd>%s</dd>'):format(html_escape(d[1]), html_escape(d[2] == nil and '' or d[2]))
      end
      out[#out + 1] = '</dl>'
    end
    out[#out + 1] = '</figcaption>'
  end
  out[#out + 1] = '</figure>'
end

--- The page, as text (Report:finish writes it to index.html).
function Report:html()
  local out = {
    -- No script runs on a results page, whoever wrote the recipe: every string
    -- is escaped below, and the policy forbids script, plugins, frames, forms
    -- and anything fetched from elsewhere (images come from the folder itself).
    '<!doctype html><html><head><meta charset="utf-8">',
    '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src \'self\'; ',
    'style-src \'unsafe-inline\'; base-uri \'none\'; form-action \'none\'">',
    '<title>', html_escape(self.name), self.results.error and ' (failed)' or '', '</title>',
    '<style>', STYLE, '</style></head><body>',
    '<h1>', html_escape(self.name), '</h1>',
  }
  if self.results.error then
    -- a failed run says so first: what follows is whatever it wrote before the error
    out[#out + 1] = '<div id="error" role="alert"><strong>This run failed.</strong> '
      .. 'Whatever appears below was written before the error; results.json keeps the message.<pre>'
      .. html_escape(self.results.error) .. '</pre></div>'
  end
  out[#out + 1] = '<p>' .. html_escape(self.results.date) .. ' · moreau ' .. html_escape(self.results.versions.moreau)
    .. ' · git ' .. html_escape(self.results.git or 'unknown') .. ' · <a href="results.json">results.json</a></p>'
  local keys = {}
  for k in pairs(self.results.params or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  if #keys > 0 then
    out[#out + 1] = '<table id="params"><caption>parameters</caption>'
    for _, k in ipairs(keys) do
      local v = self.results.params[k]
      local shown = type(self.results.params_shown) == 'table' and self.results.params_shown[k]
      if type(shown) == 'string' then v = shown
      elseif type(v) == 'table' then v = table.concat(v, ', ') end
      out[#out + 1] = ('<tr><th>%s</th>%s</tr>'):format(html_escape(k), td(tostring(v)))
    end
    out[#out + 1] = '</table>'
  end
  for _, it in ipairs(self.items) do
    if it.kind == 'image' then
      out[#out + 1] = ('<figure><img src="%s" alt="%s"><figcaption>%s</figcaption></figure>'):format(
        html_escape(it.file), html_escape(it.caption or it.file), html_escape(it.caption or it.file))
    elseif it.kind == 'table' then
      table_html(out, ' class="results"', ('%s (<a href="%s">%s</a>)'):format(html_escape(it.caption or it.file),
        html_escape(it.file), html_escape(it.file)), it.header, it.rows)
    elseif it.kind == 'html_table' then
      table_html(out, ' class="results"' .. (it.id and (' id="' .. html_escape(it.id) .. '"') or ''),
        it.caption and html_escape(it.caption), it.header, it.rows)
    elseif it.kind == 'figure' then
      figure_html(out, it)
    elseif it.kind == 'heading' then
      out[#out + 1] = '<h2>' .. html_escape(it.text) .. '</h2>'
    else
      out[#out + 1] = '<p>' .. html_escape(it.text) .. '</p>'
    end
  end
  out[#out + 1] = '</body></html>\n'
  return table.concat(out)
end

--- Writes results.json, page.json (what the page shows, as data: the run's
-- name and its items) and index.html. RETURN: the folder.
function Report:finish()
  local f = assert(io.open(target(self, 'results.json'), 'w'))
  f:write(cjson.encode(self.results), '\n')
  f:close()
  f = assert(io.open(target(self, 'page.json'), 'w'))
  f:write(cjson.encode { name = self.name, items = self.items }, '\n')
  f:close()
  f = assert(io.open(target(self, 'index.html'), 'w'))
  f:write(self:html())
  f:close()
  return folders[self]
end

-- The text of a JSON file of the folder, or nil and why. Files over `most`
-- bytes are not read (a results folder is written by whoever ran the recipe).
local function folder_json(dir, file, most)
  local f = io.open(dir .. '/' .. file, 'rb')
  if not f then return nil, file .. ' is missing' end
  local text = f:read(most + 1)
  f:close()
  if text and #text > most then return nil, ('%s is over %d bytes'):format(file, most) end
  local ok, v = pcall(cjson.decode, text or '')
  if not ok or type(v) ~= 'table' then return nil, file .. ' is not a JSON object' end
  return v
end

--- The page of a results folder drawn again from its results.json and
-- page.json, by a process that did not run the recipe: `moreau run --sandbox`
-- draws the page of a confined run this way, so the page is this code's
-- (every string escaped, the Content-Security-Policy in place) whatever the
-- recipe did to its report object or its own index.html. A folder whose data
-- cannot be drawn (missing, too large, malformed) gets a page that says so,
-- with `failure` (the caller's message for a run that did not finish) when
-- given. RETURN: the HTML text.
function report.render(dir, failure)
  local results, why = folder_json(dir, 'results.json', 64 * 2 ^ 20)
  local page, why2 = folder_json(dir, 'page.json', 64 * 2 ^ 20)
  local name = type(page) == 'table' and type(page.name) == 'string' and page.name or 'run'
  local function draw(res, items)
    local rep = setmetatable({ name = name, dir = dir, items = items, results = res }, Report)
    local ok, html = pcall(rep.html, rep)
    return ok and html or nil
  end
  if results then
    results.versions = type(results.versions) == 'table' and results.versions or {}
    if type(results.params) ~= 'table' then results.params = {} end
    if failure and not results.error then results.error = failure end
    local html = draw(results, type(page) == 'table' and type(page.items) == 'table' and page.items or {})
    if html and page then return html end
    if html == nil then why2 = 'page.json cannot be drawn' end
  end
  -- what can be said without the recipe's data
  local parts = {}
  local recorded = type(results) == 'table' and type(results.error) == 'string' and results.error
  for _, part in ipairs { recorded ~= failure and recorded or false, failure or false, why or why2 or false } do
    if part then parts[#parts + 1] = part end
  end
  local note = table.concat(parts, '; ')
  return draw({ error = note ~= '' and note or 'the run left no page data', versions = {}, params = {} },
    { { kind = 'note', text = 'The pictures and tables of this run, if any, are the files of this folder.' } })
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
