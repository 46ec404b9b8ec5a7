--- scripts/bench/denormals.lua — the section `denormals`: how many subnormal
-- float32 values the network passes write on realistic inputs (the engine's
-- subnormal census, mr_set_subnormal_census), per op and pass, for a Sparse
-- MoreauGrad explanation (--batch_T iterations of --batch_m noisy copies),
-- SmoothGrad (--samples) and Integrated Gradients (--steps) of each model's
-- bench image. Some CPUs compute on subnormals many times more slowly; this
-- is the check that decides whether the engine needs flush-to-zero
-- (docs/promises.md, "Subnormal numbers").
local B = ...
local ffi = require 'ffi'
local moreau = require 'moreau'
local core = require 'moreau.core'
local C = core.C

local PASS_NAMES = { [0] = 'forward', 'vjp', 'jvp', 'vjp_tangent' }

local function denormals_section()
  local names = C.mr_op_names()
  local sub, values = ffi.new('int64_t[1]'), ffi.new('int64_t[1]')
  for _, name in ipairs(B.list(B.opts.models)) do
    local p = B.prepare(name)
    local net = B.build_model(name, p.arch, p.weights)
    B.progress('denormals: %s ...', name)
    C.mr_set_subnormal_census(1)
    moreau.methods.moreaugrad { reg = 'l1', rho = 1, gamma = 0.1, eta = 5e-3, sigma = 0.1,
      T = B.opts.batch_T, m = B.opts.batch_m, K = B.opts.batch_T, seed = B.opts.seed }:explain(net, p.x, { p.label })
    moreau.methods.smoothgrad { samples = B.opts.samples, sigma = 0.15, seed = B.opts.seed }:explain(net, p.x,
      { p.label })
    moreau.methods.integrated_gradients { steps = B.opts.steps }:explain(net, p.x, { p.label })
    C.mr_set_subnormal_census(0)
    print(('== denormals: %s (%s), %s: Sparse MoreauGrad T %d m %d, SmoothGrad %d, IG %d'):format(name, p.note,
      p.input_note, B.opts.batch_T, B.opts.batch_m, B.opts.samples, B.opts.steps))
    local rows = { { 'op', 'pass', 'subnormal', 'values written', 'fraction' } }
    local total_sub, total = 0, 0
    local i = 0
    while names[i] ~= nil do
      for pass = 0, 3 do
        core.check(C.mr_subnormal_census(i, pass, sub, values))
        local s, v = tonumber(sub[0]), tonumber(values[0])
        if v > 0 then
          rows[#rows + 1] = { ffi.string(names[i]), PASS_NAMES[pass], tostring(s), tostring(v), ('%.1e'):format(s / v) }
          total_sub, total = total_sub + s, total + v
        end
      end
      i = i + 1
    end
    rows[#rows + 1] = { 'all', '', tostring(total_sub), tostring(total), ('%.1e'):format(total > 0 and total_sub / total or 0) }
    B.print_table(rows)
    print()
  end
end

return { run = denormals_section }
