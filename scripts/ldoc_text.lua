--- The text format of the API reference (config.ld: format =
-- 'scripts.ldoc_text'), read the way moreau's doc comments are written:
-- paragraphs are separated by a blank comment line; a line indented two
-- spaces or more past the prose around it (code, tables, formulas) is shown
-- as written, in a <pre> block; `code` in backticks is code. LDoc calls the
-- function this module returns with each summary and description (every
-- line still carries the space after the comment's dashes) and puts the HTML
-- it returns into the page. LDoc loads it with require (its generic
-- formatter, ldoc/markup.lua), so `ldoc` runs from the repository root with
-- ./?.lua on the Lua path (scripts/docs sees to both).

-- The tags LDoc itself puts into the text before it reaches us: inline
-- code, reference links, and code blocks it has already formatted.
local KEEP = { code = true, a = true, pre = true, span = true }

-- Escapes &, < and > that are text, keeping the tags in KEEP and entities.
local function escape(s)
  s = s:gsub('&([#%w]*;?)', function(rest)
    if rest:match('^#?%w+;$') then return '&' .. rest end
    return '&amp;' .. rest
  end)
  return (s:gsub('<(/?)(%a*)([^<]?)', function(slash, tag, after)
    if KEEP[tag:lower()] and (after == '>' or after == ' ') then return '<' .. slash .. tag .. after end
    return '&lt;' .. slash .. tag .. after
  end))
end

local function indent_of(line)
  return #line:match('^ *')
end

-- LDoc has already turned the blocks indented by four spaces or more of a
-- module's description into highlighted <pre> blocks (its markdown step,
-- ldoc/markup.lua), with the indent of their first line taken off. They are
-- read back here as plain code lines (marked `ldoc`), so that the code block
-- they belong to is shown whole.
local function read_lines(text)
  local out, inside = {}, false
  for line in (text .. '\n'):gmatch('(.-)\r?\n') do
    line = line:gsub('\t', '    ')
    if line == '<pre>' and not inside then
      inside = 'first'
    elseif line == '</pre>' and inside then
      inside = false
    elseif inside then
      line = line:gsub('<span class="[%w_-]*">', ''):gsub('</span>', '')
      line = line:gsub('&lt;', '<'):gsub('&gt;', '>'):gsub('&quot;', '"'):gsub('&#39;', "'"):gsub('&amp;', '&')
      out[#out + 1] = { text = line, ldoc = true, first = inside == 'first' }
      inside = true
    else
      out[#out + 1] = { text = line }
    end
  end
  return out
end

local function blank(s) return not s:match('%S') end

--- Text to HTML. A line is prose when it is indented at most one space past
-- the prose around it (the description's own indent, or the text of a list
-- item `1. ` or `- `); two spaces or more past it, a line is code (a <pre>
-- block, up to the next prose line), as are the blocks LDoc formatted.
return function(text)
  local lines = read_lines(text)
  local base
  for _, l in ipairs(lines) do
    if not l.ldoc and not blank(l.text) then
      local i = indent_of(l.text)
      base = base and math.min(base, i) or i
    end
  end
  base = base or 0
  local out, para, code = {}, {}, nil
  local function flush()
    if #para > 0 then
      out[#out + 1] = { 'p', (escape(table.concat(para, '\n')):gsub('`([^`]+)`', '<code>%1</code>')) }
    end
    para = {}
    if code then
      while #code > 0 and blank(code[#code].text) do code[#code] = nil end
      local cut = math.huge
      for _, c in ipairs(code) do
        if not blank(c.text) then cut = math.min(cut, c.indent) end
      end
      local t = {}
      for k, c in ipairs(code) do
        t[k] = blank(c.text) and '' or escape(string.rep(' ', c.indent - cut) .. c.text:gsub('^ +', ''))
      end
      if #t > 0 then out[#out + 1] = { 'pre', table.concat(t, '\n') } end
      code = nil
    end
  end
  local prose = base      -- the indent of the prose in force
  local last = nil        -- what the line before was: 'prose', 'code' or nil (blank)
  local last_code = 0     -- the indent of the last code line
  local anchor = 0        -- where the block LDoc formatted began
  for _, l in ipairs(lines) do
    local s = l.text
    if l.ldoc and l.first then
      -- a block LDoc took out of the text: right after prose it continues
      -- that prose; right after code it is nested two deeper; after a blank
      -- line it is code
      anchor = (last == 'prose' and prose) or (last == 'code' and last_code + 2) or (prose + 2)
    end
    local i = l.ldoc and (anchor + indent_of(s)) or indent_of(s)
    if blank(s) then
      if code then code[#code + 1] = { text = '', indent = 0 } else flush() end
      last = nil
    else
      local marker = s:match('^ *(%d+%.%s+)') or s:match('^ *([-*•]%s+)')
      if i <= base + 1 and (code or marker) then flush() end
      if i <= base + 1 then
        -- the description's own indent (a new list item there starts a paragraph)
        prose = marker and (i + #marker) or base
      end
      if i <= prose + 1 then
        if code then flush() end
        para[#para + 1] = s:gsub('^ +', '')
        last = 'prose'
      else
        if not code then flush(); code = {} end
        code[#code + 1] = { text = s, indent = i }
        last, last_code = 'code', i
      end
    end
  end
  flush()
  if #out == 1 and out[1][1] == 'p' then return out[1][2] end
  -- Paragraphs after the first open with <p> and are never closed, as
  -- LDoc's own plain format writes them: the page's template may already
  -- hold the text inside a <p>, and a <pre> or the template's </p> ends one.
  local html = {}
  for k, b in ipairs(out) do
    if b[1] == 'p' then html[#html + 1] = (k > 1 and '<p>' or '') .. b[2]
    else html[#html + 1] = '<pre>' .. b[2] .. '</pre>' end
  end
  return table.concat(html, '\n')
end
