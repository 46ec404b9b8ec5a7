--- scripts/bench/peak.lua — the section `peak`: this machine's FP32 FMA
-- throughput (scripts/fma_peak.c), also the yardstick of forward's % of peak.
local B = ...
local ffi = require 'ffi'
local moreau = require 'moreau'
local core = require 'moreau.core'
local cjson = require 'cjson'
local T, models, C = moreau.tensor, moreau.models, core.C
local opts, here, tmp, torch_info, torch_why = B.opts, B.here, B.tmp, B.torch_info, B.torch_why
local list, now, proc_status, read_all, shell_quote = B.list, B.now, B.proc_status, B.read_all, B.shell_quote
local time_median, write_f32, read_f32, mib, fmt_s = B.time_median, B.write_f32, B.read_f32, B.mib, B.fmt_s
local print_table, progress, build_model, GRAD_FACTOR = B.print_table, B.progress, B.build_model, B.GRAD_FACTOR
local activation_weight_bytes, argmax, torch_run, prepare = B.activation_weight_bytes, B.argmax, B.torch_run, B.prepare
local luajit, lua_path = B.luajit, B.lua_path

--- {isa = {threads = GFLOP/s}}, best = max over ISAs per thread count; nil when cc fails.
local function measure_peak()
  local exe = tmp .. '/fma_peak'
  local log = read_all(('cc -O2 -march=native -fopenmp %s -o %s 2>&1'):format(
    shell_quote(here .. '/fma_peak.c'), shell_quote(exe)))
  if not io.open(exe, 'r') then
    progress('could not compile scripts/fma_peak.c:\n%s', log)
    return nil
  end
  progress('measuring the FP32 FMA peak (scripts/fma_peak.c) ...')
  local counts = opts.threads == 1 and '1' or ('1 ' .. opts.threads)
  local out = read_all(shell_quote(exe) .. ' ' .. counts)
  local peak = { best = {} }
  for isa, n, g in out:gmatch('(%w+) (%d+) ([%d%.]+)') do
    n, g = tonumber(n), tonumber(g)
    peak[isa] = peak[isa] or {}
    peak[isa][n] = g
    peak.best[n] = math.max(peak.best[n] or 0, g)
  end
  return peak
end

local function print_peak(peak)
  print('== peak: FP32 FMA throughput of this machine (scripts/fma_peak.c, independent FMA chains per thread)')
  if not peak then print('  (not measured: cc failed)') print() return end
  local counts = {}
  for n in pairs(peak.best) do counts[#counts + 1] = n end
  table.sort(counts)
  local rows = { { 'instruction set' } }
  for _, n in ipairs(counts) do rows[1][#rows[1] + 1] = ('%d thread%s'):format(n, n > 1 and 's' or '') end
  for _, isa in ipairs { 'avx512', 'avx2' } do
    if peak[isa] then
      local r = { isa }
      for _, n in ipairs(counts) do r[#r + 1] = peak[isa][n] and ('%.1f GFLOP/s'):format(peak[isa][n]) or '-' end
      rows[#rows + 1] = r
    end
  end
  print_table(rows)
  print()
end

return { measure = measure_peak, print = print_peak }
