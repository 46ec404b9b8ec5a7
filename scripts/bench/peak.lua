--- scripts/bench/peak.lua — the section `peak`: this machine's FP32 FMA
-- throughput (scripts/fma_peak.c), also the yardstick of forward's % of peak.
local B = ...

--- {isa = {threads = GFLOP/s}}, best = max over ISAs per thread count; nil when cc fails.
local function measure_peak()
  local exe = B.tmp .. '/fma_peak'
  local log = B.read_all(('cc -O2 -march=native -fopenmp %s -o %s 2>&1'):format(
    B.shell_quote(B.here .. '/fma_peak.c'), B.shell_quote(exe)))
  if not io.open(exe, 'r') then
    B.progress('could not compile scripts/fma_peak.c:\n%s', log)
    return nil
  end
  B.progress('measuring the FP32 FMA peak (scripts/fma_peak.c) ...')
  local counts = B.opts.threads == 1 and '1' or ('1 ' .. B.opts.threads)
  local out = B.read_all(B.shell_quote(exe) .. ' ' .. counts)
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
  B.print_table(rows)
  print()
end

return { measure = measure_peak, print = print_peak }
