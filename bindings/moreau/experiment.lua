--- moreau.experiment — what the paper's recipes share: the shipped model and
-- its test images, the table of methods as the figures name them, progress
-- lines, and summary statistics.
--
--   local ex = require 'moreau.experiment'
--   local net, card, test = ex.model(p.model)
--   local x, labels, idx = ex.images(net, card, test, { n = 8, start = 0 })
--   for _, m in ipairs(ex.methods { preset = 'paper', seed = 0 }) do ... m.make() ... end
local moreau = require 'moreau'
local options = require 'moreau.options'

local experiment = {}

--- The shipped model, its card and its test set (normalized as the card says).
-- ARGS: name ('resnet_fmnist'). RETURN: net, card, test data set.
function experiment.model(name)
  local net, card = moreau.models.pretrained(name or 'resnet_fmnist')
  local test = moreau.data.fashion_mnist { split = 'test' }
  return net, card, test
end

--- A batch of test images, normalized. opts: n (required, >= 1), start = 0
-- (0-based index of the first), which = 'all' | 'correct' | 'misclassified'
-- (by the model's prediction).
-- RETURN: x (n, C, H, W), labels (true 0-based ids), indices (0-based), predictions.
function experiment.images(net, card, test, opts)
  local o = options.fill('experiment.images', { start = 0, which = 'all', _extra = { n = true },
    _domains = { n = 'int >= 1', start = 'int >= 0', which = 'one of all, correct, misclassified' } }, opts)
  if o.n == nil then error("experiment.images: option 'n' (the number of images) is required", 2) end
  local data = moreau.data
  local norm = card.data.normalization
  local want, start, which = o.n, o.start, o.which
  local picked, preds, labels = {}, {}, {}
  local batch = 256
  local i = start
  while #picked < want and i < test.n do
    local j = math.min(test.n - 1, i + batch - 1)
    local xb = data.normalize(test.images:narrow(i + 1, j + 1), norm.mean, norm.std)
    local pred = moreau.attacks.predict(net, xb)
    for k = i, j do
      local ok = pred[k - i + 1] == test.labels[k + 1]
      if which == 'all' or (which == 'correct' and ok) or (which == 'misclassified' and not ok) then
        if #picked < want then
          picked[#picked + 1] = k
          preds[#preds + 1] = pred[k - i + 1]
          labels[#labels + 1] = test.labels[k + 1]
        end
      end
    end
    i = j + 1
  end
  if #picked == 0 then error('experiment.images: no ' .. which .. ' test images from index ' .. start, 2) end
  local items = {}
  for k, idx in ipairs(picked) do items[k] = test.images:select(idx + 1) end
  local x = data.normalize(moreau.tensor.cat(items), norm.mean, norm.std)
  return x, labels, picked, preds
end

--- The keys experiment.methods knows, as a domain of moreau.options (recipes
-- declare their `methods` lists with it, so a wrong name is refused, with the
-- valid ones, before anything runs).
experiment.METHODS = 'one of gradient, input_x_gradient, integrated_gradients, deeplift, smoothgrad, ' ..
  'sparsified_smoothgrad, moreaugrad, sparse_moreaugrad, group_moreaugrad'

--- The methods of the paper's figures, in their order, with their titles.
-- opts: seed = 0; preset = 'paper' (the authors' settings: T 300, m 32, 256
-- Sparsified SmoothGrad samples) or 'fast' (T 100, m 8, fewer samples);
-- moreau = a table overriding MoreauGrad's options; samples (SmoothGrad),
-- ssg_samples (Sparsified SmoothGrad), ig_steps (Integrated Gradients): the
-- preset's unless given; only = list of keys (experiment.METHODS; default all);
-- eta_l1, eta_group: the sparsity weights. Their defaults (0.1 and 0.2) are
-- scaled to the shipped model, whose logit gradients are large (median |∇f|
-- 0.067 per pixel): the authors' 5e-3 / 5e-2, set for ImageNet, leave its maps
-- dense; 0.1 / 0.2 make about 40% of the entries zero on test images 0-3,
-- comparable to Sparsified SmoothGrad's averaged map, as the paper
-- standardizes sparsity.
-- RETURN: a list of {key, title, make = function() -> method}.
experiment.methods_defaults = {
  preset = 'paper', seed = 0, eta_l1 = 0.1, eta_group = 0.2,
  _extra = { moreau = true, samples = true, ssg_samples = true, ig_steps = true, only = true },
  _domains = { preset = 'one of paper, fast', seed = 'seed', eta_l1 = 'num >= 0', eta_group = 'num >= 0',
    moreau = 'table', samples = 'int >= 1', ssg_samples = 'int >= 1', ig_steps = 'int >= 1', only = 'table' },
}

function experiment.methods(opts)
  opts = options.fill('experiment.methods', experiment.methods_defaults, opts)
  for i, k in ipairs(opts.only or {}) do
    options.check('experiment.methods', ('only[%d]'):format(i), k, experiment.METHODS, 2)
  end
  local M = moreau.methods
  local fast = opts.preset == 'fast'
  local seed = opts.seed
  local mg = { T = fast and 100 or 300, m = fast and 8 or 32, K = fast and 30 or 101, seed = seed }
  for k, v in pairs(opts.moreau or {}) do mg[k] = v end
  local function with(extra)
    local o = {}
    for k, v in pairs(mg) do o[k] = v end
    for k, v in pairs(extra or {}) do o[k] = v end
    return o
  end
  local sg = opts.samples or (fast and 16 or 50)
  local list = {
    { key = 'gradient', title = 'Gradient', make = function() return M.gradient() end },
    { key = 'input_x_gradient', title = 'Input x Grad', make = function() return M.input_x_gradient() end },
    { key = 'integrated_gradients', title = 'Integ. Grad',
      make = function() return M.integrated_gradients { steps = opts.ig_steps or (fast and 16 or 50) } end },
    { key = 'deeplift', title = 'DeepLIFT', make = function() return M.deeplift() end },
    { key = 'smoothgrad', title = 'SmoothGrad', make = function() return M.smoothgrad { samples = sg, seed = seed } end },
    { key = 'sparsified_smoothgrad', title = 'Sparsified SG',
      make = function() return M.sparsified_smoothgrad { samples = opts.ssg_samples or (fast and 32 or 256), seed = seed } end },
    { key = 'moreaugrad', title = 'MoreauGrad', make = function() return M.moreaugrad(with()) end },
    { key = 'sparse_moreaugrad', title = 'Sparse MG',
      make = function() return M.moreaugrad(with { reg = 'l1', eta = opts.eta_l1 }) end },
    { key = 'group_moreaugrad', title = 'Group-Sparse MG',
      make = function() return M.moreaugrad(with { reg = 'group', eta = opts.eta_group }) end },
  }
  if opts.only and #opts.only > 0 then
    local keep, out = {}, {}
    for _, k in ipairs(opts.only) do keep[k] = true end
    for _, m in ipairs(list) do if keep[m.key] then out[#out + 1] = m end end
    list = out
  end
  return list
end

--- Wall-clock seconds (os.clock counts CPU time of every thread).
function experiment.now() return require('moreau.core').C.mr_wall_seconds() end

--- A progress line on stderr: "label  i/n  elapsed  left".
function experiment.progress(label, i, n, t0)
  local el = experiment.now() - t0
  local left = i > 0 and el / i * (n - i) or 0
  local tty = require('moreau.core').C.mr_stderr_is_terminal() == 1
  io.stderr:write(tty and '\r' or '', ('%-40s %4d/%-4d  %6.0f s elapsed  %6.0f s left'):format(label, i, n, el, left))
  if i == n or not tty then io.stderr:write('\n') end
  io.stderr:flush()
end

--- Mean and (population) standard deviation of a list, skipping nil/NaN.
function experiment.mean_std(list)
  local s, n = 0, 0
  for _, v in ipairs(list) do if v == v then s, n = s + v, n + 1 end end
  if n == 0 then return 0 / 0, 0 / 0 end
  local m = s / n
  local q = 0
  for _, v in ipairs(list) do if v == v then q = q + (v - m) ^ 2 end end
  return m, math.sqrt(q / n)
end

--- The class name of a 0-based id.
function experiment.class_name(card, c)
  local classes = (card and card.data and card.data.classes) or moreau.data.fashion_mnist_classes
  return classes[c + 1] or tostring(c)
end

return experiment
