--- moreau.viz.font — a 5x7 bitmap font of our own for printable ASCII
-- (32..126), for titles and tick labels (part of moreau.viz: viz.font and
-- viz.text_size; canvas:text draws with it).
--
-- Each glyph is 8 rows of 5 columns, '#' = ink: capitals and digits use rows
-- 1..7, lower case rows 3..7, and row 8 holds the descenders (g j p q y , _).
-- A character advances 6 pixels; lines are 10 apart. This file knows nothing
-- of pixels: font.draw reports where the ink goes and the canvas puts it there.
local bit = require 'bit'

local floor, max = math.floor, math.max

local font = {}

local GLYPH_W, GLYPH_H, ADVANCE, LINE = 5, 8, 6, 10

-- The metrics, in pixels at scale 1: glyph_w, glyph_h (a glyph's ink box),
-- advance (per character), line (per line).
font.glyph_w, font.glyph_h, font.advance, font.line = GLYPH_W, GLYPH_H, ADVANCE, LINE

local glyph_rows = {
  [' '] = '..... ..... ..... ..... ..... ..... ..... .....',
  ['!'] = '..#.. ..#.. ..#.. ..#.. ..#.. ..... ..#.. .....',
  ['"'] = '.#.#. .#.#. .#.#. ..... ..... ..... ..... .....',
  ['#'] = '.#.#. .#.#. ##### .#.#. ##### .#.#. .#.#. .....',
  ['$'] = '..#.. .#### #.#.. .###. ..#.# ####. ..#.. .....',
  ['%'] = '##... ##..# ...#. ..#.. .#... #..## ...## .....',
  ['&'] = '.##.. #..#. #.#.. .#... #.#.# #..#. .##.# .....',
  ["'"] = '..#.. ..#.. .#... ..... ..... ..... ..... .....',
  ['('] = '...#. ..#.. .#... .#... .#... ..#.. ...#. .....',
  [')'] = '.#... ..#.. ...#. ...#. ...#. ..#.. .#... .....',
  ['*'] = '..... ..#.. #.#.# .###. #.#.# ..#.. ..... .....',
  ['+'] = '..... ..#.. ..#.. ##### ..#.. ..#.. ..... .....',
  [','] = '..... ..... ..... ..... ..... .##.. ..#.. .#...',
  ['-'] = '..... ..... ..... ##### ..... ..... ..... .....',
  ['.'] = '..... ..... ..... ..... ..... .##.. .##.. .....',
  ['/'] = '..... ....# ...#. ..#.. .#... #.... ..... .....',
  ['0'] = '.###. #...# #..## #.#.# ##..# #...# .###. .....',
  ['1'] = '..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###. .....',
  ['2'] = '.###. #...# ....# ...#. ..#.. .#... ##### .....',
  ['3'] = '##### ...#. ..#.. ...#. ....# #...# .###. .....',
  ['4'] = '...#. ..##. .#.#. #..#. ##### ...#. ...#. .....',
  ['5'] = '##### #.... ####. ....# ....# #...# .###. .....',
  ['6'] = '..##. .#... #.... ####. #...# #...# .###. .....',
  ['7'] = '##### ....# ...#. ..#.. .#... .#... .#... .....',
  ['8'] = '.###. #...# #...# .###. #...# #...# .###. .....',
  ['9'] = '.###. #...# #...# .#### ....# ...#. .##.. .....',
  [':'] = '..... .##.. .##.. ..... .##.. .##.. ..... .....',
  [';'] = '..... .##.. .##.. ..... .##.. ..#.. .#... .....',
  ['<'] = '...#. ..#.. .#... #.... .#... ..#.. ...#. .....',
  ['='] = '..... ..... ##### ..... ##### ..... ..... .....',
  ['>'] = '.#... ..#.. ...#. ....# ...#. ..#.. .#... .....',
  ['?'] = '.###. #...# ....# ...#. ..#.. ..... ..#.. .....',
  ['@'] = '.###. #...# ....# .##.# #.#.# #.#.# .###. .....',
  ['A'] = '.###. #...# #...# ##### #...# #...# #...# .....',
  ['B'] = '####. #...# #...# ####. #...# #...# ####. .....',
  ['C'] = '.###. #...# #.... #.... #.... #...# .###. .....',
  ['D'] = '###.. #..#. #...# #...# #...# #..#. ###.. .....',
  ['E'] = '##### #.... #.... ####. #.... #.... ##### .....',
  ['F'] = '##### #.... #.... ####. #.... #.... #.... .....',
  ['G'] = '.###. #...# #.... #.### #...# #...# .#### .....',
  ['H'] = '#...# #...# #...# ##### #...# #...# #...# .....',
  ['I'] = '.###. ..#.. ..#.. ..#.. ..#.. ..#.. .###. .....',
  ['J'] = '..### ...#. ...#. ...#. ...#. #..#. .##.. .....',
  ['K'] = '#...# #..#. #.#.. ##... #.#.. #..#. #...# .....',
  ['L'] = '#.... #.... #.... #.... #.... #.... ##### .....',
  ['M'] = '#...# ##.## #.#.# #.#.# #...# #...# #...# .....',
  ['N'] = '#...# #...# ##..# #.#.# #..## #...# #...# .....',
  ['O'] = '.###. #...# #...# #...# #...# #...# .###. .....',
  ['P'] = '####. #...# #...# ####. #.... #.... #.... .....',
  ['Q'] = '.###. #...# #...# #...# #.#.# #..#. .##.# .....',
  ['R'] = '####. #...# #...# ####. #.#.. #..#. #...# .....',
  ['S'] = '.#### #.... #.... .###. ....# ....# ####. .....',
  ['T'] = '##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#.. .....',
  ['U'] = '#...# #...# #...# #...# #...# #...# .###. .....',
  ['V'] = '#...# #...# #...# #...# #...# .#.#. ..#.. .....',
  ['W'] = '#...# #...# #...# #.#.# #.#.# #.#.# .#.#. .....',
  ['X'] = '#...# #...# .#.#. ..#.. .#.#. #...# #...# .....',
  ['Y'] = '#...# #...# .#.#. ..#.. ..#.. ..#.. ..#.. .....',
  ['Z'] = '##### ....# ...#. ..#.. .#... #.... ##### .....',
  ['['] = '.###. .#... .#... .#... .#... .#... .###. .....',
  ['\\'] = '..... #.... .#... ..#.. ...#. ....# ..... .....',
  [']'] = '.###. ...#. ...#. ...#. ...#. ...#. .###. .....',
  ['^'] = '..#.. .#.#. #...# ..... ..... ..... ..... .....',
  ['_'] = '..... ..... ..... ..... ..... ..... ..... #####',
  ['`'] = '.#... ..#.. ...#. ..... ..... ..... ..... .....',
  ['a'] = '..... ..... .###. ....# .#### #...# .#### .....',
  ['b'] = '#.... #.... #.##. ##..# #...# #...# ####. .....',
  ['c'] = '..... ..... .###. #.... #.... #...# .###. .....',
  ['d'] = '....# ....# .##.# #..## #...# #...# .#### .....',
  ['e'] = '..... ..... .###. #...# ##### #.... .###. .....',
  ['f'] = '..##. .#..# .#... ###.. .#... .#... .#... .....',
  ['g'] = '..... ..... .#### #...# #...# .#### ....# .###.',
  ['h'] = '#.... #.... #.##. ##..# #...# #...# #...# .....',
  ['i'] = '..#.. ..... .##.. ..#.. ..#.. ..#.. .###. .....',
  ['j'] = '...#. ..... ..##. ...#. ...#. ...#. #..#. .##..',
  ['k'] = '#.... #.... #..#. #.#.. ##... #.#.. #..#. .....',
  ['l'] = '.##.. ..#.. ..#.. ..#.. ..#.. ..#.. .###. .....',
  ['m'] = '..... ..... ##.#. #.#.# #.#.# #...# #...# .....',
  ['n'] = '..... ..... #.##. ##..# #...# #...# #...# .....',
  ['o'] = '..... ..... .###. #...# #...# #...# .###. .....',
  ['p'] = '..... ..... ####. #...# #...# ####. #.... #....',
  ['q'] = '..... ..... .##.# #..## #...# .#### ....# ....#',
  ['r'] = '..... ..... #.##. ##..# #.... #.... #.... .....',
  ['s'] = '..... ..... .###. #.... .###. ....# ####. .....',
  ['t'] = '.#... .#... ###.. .#... .#... .#..# ..##. .....',
  ['u'] = '..... ..... #...# #...# #...# #..## .##.# .....',
  ['v'] = '..... ..... #...# #...# #...# .#.#. ..#.. .....',
  ['w'] = '..... ..... #...# #...# #.#.# #.#.# .#.#. .....',
  ['x'] = '..... ..... #...# .#.#. ..#.. .#.#. #...# .....',
  ['y'] = '..... ..... #...# #...# #...# .#### ....# .###.',
  ['z'] = '..... ..... ##### ...#. ..#.. .#... ##### .....',
  ['{'] = '...#. ..#.. ..#.. .#... ..#.. ..#.. ...#. .....',
  ['|'] = '..#.. ..#.. ..#.. ..#.. ..#.. ..#.. ..#.. .....',
  ['}'] = '.#... ..#.. ..#.. ...#. ..#.. ..#.. .#... .....',
  ['~'] = '..... ..... .#... #.#.# ...#. ..... ..... .....',
}
-- drawn for bytes outside 32..126: a hollow box
-- drawn for bytes outside 32..126: a hollow box
local missing_rows = '##### #...# #...# #...# #...# #...# ##### .....'

-- glyphs[byte] = { row bits (bit 4 = leftmost column), ... } (8 rows)
local function parse_glyph(rows, ch)
  local bits = {}
  for row in rows:gmatch('%S+') do
    assert(#row == GLYPH_W and not row:find('[^#.]'), 'viz font: bad row in glyph ' .. ch)
    local v = 0
    for k = 1, GLYPH_W do v = v * 2 + (row:sub(k, k) == '#' and 1 or 0) end
    bits[#bits + 1] = v
  end
  assert(#bits == GLYPH_H, 'viz font: glyph ' .. ch .. ' needs ' .. GLYPH_H .. ' rows')
  return bits
end
local glyphs = {}
for ch, rows in pairs(glyph_rows) do glyphs[ch:byte()] = parse_glyph(rows, ch) end
local missing_glyph = parse_glyph(missing_rows, 'missing')

--- The rows of the glyph for a byte (a hollow box outside 32..126):
-- 8 numbers, bit 4 the leftmost column.
function font.bits(byte) return glyphs[byte] or missing_glyph end

--- The largest text scale (one character then spans 1280 x 2048 pixels).
font.MAX_SCALE = 256

--- Checks a text scale (an integer in 1..font.MAX_SCALE). ARGS: scale (nil = 1); what (the caller's name);
-- level (error level as the caller's error() would take it). RETURN: scale.
function font.check_scale(scale, what, level)
  scale = scale or 1
  if type(scale) ~= 'number' or scale < 1 or scale ~= floor(scale) then
    error(what .. ': scale must be an integer >= 1, got ' .. tostring(scale), level + 1)
  end
  -- drawing visits scale² pixels per glyph dot: inf never ended, and a glyph
  -- at 256 (1280 x 2048 pixels with its descender row) is already larger than any title
  if scale > font.MAX_SCALE then
    error(('%s: scale must be at most %d, got %s'):format(what, font.MAX_SCALE, tostring(scale)), level + 1)
  end
  return scale
end
local check_scale = font.check_scale

local function text_lines(str)
  local lines = {}
  for line in (str .. '\n'):gmatch('([^\n]*)\n') do lines[#lines + 1] = line end
  return lines
end

--- The size of text as drawn by canvas:text. ARGS: str, scale (default 1).
-- RETURN: w, h in pixels: w = scale * (6 * longest line - 1) (0 for no
-- characters), h = scale * (10 * lines - 2) (a single line is 8 * scale).
function font.text_size(str, scale)
  str = tostring(str)
  scale = check_scale(scale, 'viz.text_size', 2)
  local lines = text_lines(str)
  local longest = 0
  for _, l in ipairs(lines) do longest = max(longest, #l) end
  return longest > 0 and scale * (ADVANCE * longest - 1) or 0, scale * (LINE * #lines - 2)
end

--- Where the ink of a text goes ('\n' starts a new line).
-- ARGS: str (string); scale (integer >= 1, already checked); rotated (true:
--   turned 90 degrees counter-clockwise, reading bottom to top);
--   ink(dx, dy) (called once per ink pixel, with its offset from the top-left
--   of the text's box: 0 <= dx < w, 0 <= dy < h as drawn).
-- RETURN: w, h (as font.text_size; the box of rotated text is h wide, w tall).
function font.draw(str, scale, rotated, ink)
  local tw, th = font.text_size(str, scale)
  local lines = text_lines(str)
  for li, line in ipairs(lines) do
    for ci = 1, #line do
      local bits = glyphs[line:byte(ci)] or missing_glyph
      local gx = (ci - 1) * ADVANCE * scale
      local gy = (li - 1) * LINE * scale
      for row = 1, GLYPH_H do
        local v = bits[row]
        if v ~= 0 then
          for col = 1, GLYPH_W do
            if bit.band(v, bit.lshift(1, GLYPH_W - col)) ~= 0 then
              for sy = 0, scale - 1 do
                for sx = 0, scale - 1 do
                  local px, py = gx + (col - 1) * scale + sx, gy + (row - 1) * scale + sy
                  if rotated then
                    ink(py, tw - 1 - px)
                  else
                    ink(px, py)
                  end
                end
              end
            end
          end
        end
      end
    end
  end
  return tw, th
end

return font
