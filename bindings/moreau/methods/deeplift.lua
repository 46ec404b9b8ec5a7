--- moreau.methods.deeplift — DeepLIFT (Shrikumar et al., 2017).
--
--   E = (x − x0) ⊙ multipliers of one reverse pass with an exact rule per op
--   (linear ops keep their VJP, elementwise nonlinearities the rescale rule,
--   max pooling and products their exact splits: README "DeepLIFT's rules"),
--   so Σ_j E_j = f_c(x) − f_c(x0) per item. Baseline x0 = 0 unless given.
--
-- No explain_vjp: DeepLIFT's multipliers are not a gradient.
local T = require 'moreau.tensor'
local core = require 'moreau.core'
local common = require 'moreau.methods.common'
local C, check, handle = core.C, core.check, core.handle

local M = {
  name = 'deeplift',
  doc = 'DeepLIFT (Shrikumar et al. 2017): linear, rescale, max-pool and product rules; complete',
  defaults = { baseline = 0, score = 'logit', _domains = { baseline = 'tensor or num', score = common.SCORE } },
  explain_vjp = false,
  vjp_kind = nil,
}

--- ARGS: self, net, x (N, ...), lab (int32_t[N]). RETURN: the attributions, like x.
function M.explain(self, net, x, lab)
  if self.opts.score ~= 'logit' then error('deeplift: only the logit score is supported', 3) end
  local out = T.zeros(core.shape(x))
  local base = nil
  if T.is(self.opts.baseline) or self.opts.baseline ~= 0 then
    base = common.baseline_of('deeplift', self.opts, x, 3)
  end
  check(C.mr_deeplift(handle(out), handle(net), handle(x), base and handle(base) or nil, lab))
  return out
end

-- The table of options is documented here, at the end of the file: followed
-- by M's constructor, LDoc would list M's fields as the options.

--- The options of deeplift: only the common options baseline and score
-- (moreau.methods.common).
--
-- Common options (@{moreau.methods.common}), with their defaults here:
-- baseline = 0, score = 'logit'.
-- @table options

return M
