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
  if getmetatable(net) ~= moreau.nn.Net then
    error('experiment.images: net must be a moreau.nn network (experiment.model gives net, card, test)', 2)
  end
  if type(card) ~= 'table' or type(card.data) ~= 'table' or type(card.data.normalization) ~= 'table' then
    error('experiment.images: card must be a model card with data.normalization (experiment.model gives it)', 2)
  end
  if type(test) ~= 'table' or type(test.n) ~= 'number' then
    error('experiment.images: test must be a data set (experiment.model gives it)', 2)
  end
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
experiment.METHODS = 'one of all, gradient, input_x_gradient, integrated_gradients, deeplift, smoothgrad, ' ..
  'sparsified_smoothgrad, moreaugrad, sparse_moreaugrad, group_moreaugrad'

--- The methods of the paper's figures, in their order, with their titles.
-- opts: seed = 0; preset = 'paper' (the authors' settings: T 300, m 32, 256
-- Sparsified SmoothGrad samples) or 'fast' (T 100, m 8, fewer samples);
-- moreau = a table overriding MoreauGrad's options; samples (SmoothGrad),
-- ssg_samples (Sparsified SmoothGrad), ig_steps (Integrated Gradients): the
-- preset's unless given; only = list of keys (experiment.METHODS; default,
-- an empty list or 'all' alone: every method; 'all' with other keys is refused);
-- eta_l1, eta_group: the sparsity weights. Their defaults (0.1 and 0.2) are
-- scaled to the shipped model, whose logit gradients are large (median |∇f|
-- 0.067 per pixel): the authors' 5e-3 / 5e-2, set for ImageNet, leave its maps
-- dense; 0.1 / 0.2 make about 40% of the entries zero on test images 0-3,
-- comparable to Sparsified SmoothGrad's averaged map, as the paper
-- standardizes sparsity. overrides = a table whose 'KEY.OPTION' entries set
-- one option of one entry last, over everything above (a recipe's
-- parameters: `--moreaugrad.T=100`, experiment.method_option); a T below the
-- preset's K lowers K to T unless K is given too; an entry named there that
-- `only` leaves out is refused (its option would have no effect).
-- RETURN: a list of {key, title, method (the moreau.methods name), opts,
-- make = function() -> the method}.
experiment.methods_defaults = {
  preset = 'paper', seed = 0, eta_l1 = 0.1, eta_group = 0.2,
  _extra = { moreau = true, samples = true, ssg_samples = true, ig_steps = true, only = true, overrides = true },
  _domains = { preset = 'one of paper, fast', seed = 'seed', eta_l1 = 'num >= 0', eta_group = 'num >= 0',
    moreau = 'table', samples = 'int >= 1', ssg_samples = 'int >= 1', ig_steps = 'int >= 1', only = 'table',
    overrides = 'table' },
}

-- key, title, the moreau.methods name, and its options under opts (the
-- filled experiment.methods options)
local function method_table(opts)
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
  return {
    { 'gradient', 'Gradient', 'gradient', {} },
    { 'input_x_gradient', 'Input x Grad', 'input_x_gradient', {} },
    { 'integrated_gradients', 'Integ. Grad', 'integrated_gradients',
      { steps = opts.ig_steps or (fast and 16 or 50) } },
    { 'deeplift', 'DeepLIFT', 'deeplift', {} },
    { 'smoothgrad', 'SmoothGrad', 'smoothgrad', { samples = opts.samples or (fast and 16 or 50), seed = seed } },
    { 'sparsified_smoothgrad', 'Sparsified SG', 'sparsified_smoothgrad',
      { samples = opts.ssg_samples or (fast and 32 or 256), seed = seed } },
    { 'moreaugrad', 'MoreauGrad', 'moreaugrad', with() },
    { 'sparse_moreaugrad', 'Sparse MG', 'moreaugrad', with { reg = 'l1', eta = opts.eta_l1 } },
    { 'group_moreaugrad', 'Group-Sparse MG', 'moreaugrad', with { reg = 'group', eta = opts.eta_group } },
  }
end

--- The methods of the paper's figures, in their order, with their titles:
-- opts, their defaults and the list it returns as experiment.methods_defaults
-- documents them. Errors: a key of `only` that is not in experiment.METHODS
-- (the message lists the valid ones), or 'all' mixed with names; an option
-- given for a method that does not run; an option value a method refuses
-- (checked before anything runs, with the method's message).
function experiment.methods(opts)
  opts = options.fill('experiment.methods', experiment.methods_defaults, opts)
  for i, k in ipairs(opts.only or {}) do
    options.check('experiment.methods', ('only[%d]'):format(i), k, experiment.METHODS, 2)
  end
  local keep
  if opts.only and #opts.only > 0 then
    keep = {}
    for _, k in ipairs(opts.only) do keep[k] = true end
    if keep.all then
      if #opts.only > 1 then
        error(("experiment.methods: option 'only' lists 'all' with other methods (%s); 'all' runs every method: " ..
          "give it alone, or list only the methods to run"):format(table.concat(opts.only, ', ')), 2)
      end
      keep = nil
    end
  end
  local list, known = {}, {}
  for _, row in ipairs(method_table(opts)) do known[row[1]] = true end
  -- an option for a method this list leaves out would have no effect: refused,
  -- naming the method and the methods that run (a warning on stderr scrolls
  -- away among the progress lines, and the run's record would carry an option
  -- it did not use)
  if opts.overrides and keep then
    local unused = {}
    for k, v in pairs(opts.overrides) do
      local mk = tostring(k):match('^([%w_]+)%.[%w_]+$')
      if mk and known[mk] and not keep[mk] then unused[#unused + 1] = ('--%s=%s'):format(tostring(k), tostring(v)) end
    end
    table.sort(unused)
    if #unused > 0 then
      local off, seen = {}, {}
      for _, u in ipairs(unused) do
        local mk = u:match('^%-%-([%w_]+)%.')
        if not seen[mk] then seen[mk], off[#off + 1] = true, mk end
      end
      local them = table.concat(off, ', ')
      error(("%s %s an option of %s, which %s not run (the methods that run: %s); add %s to --methods, " ..
        "or drop the option%s"):format(table.concat(unused, ', '), #unused > 1 and 'set' or 'sets', them,
        #off > 1 and 'do' or 'does', table.concat(opts.only, ', '), them, #unused > 1 and 's' or ''), 0)
    end
  end
  for _, row in ipairs(method_table(opts)) do
    local key, title, name, o = row[1], row[2], row[3], row[4]
    local given = {}
    for k, v in pairs(opts.overrides or {}) do
      local mk, ok = tostring(k):match('^([%w_]+)%.([%w_]+)$')
      if mk == key then o[ok], given[ok] = v, true end
    end
    -- a T set below the preset's K takes K with it (K <= T: the solver's
    -- noise-decay horizon cannot outlast its iterations), unless K is set too
    if given.T and not given.K and o.K and o.K > o.T then o.K = o.T end
    if not keep or keep[key] then
      -- every option checked now, before anything runs; the message without this file's position
      local ok, err = pcall(moreau.methods.create, name, o)
      if not ok then error((tostring(err):gsub('^[^\n]-:%d+: ', '')), 0) end
      list[#list + 1] = { key = key, title = title, method = name, opts = o,
        make = function() return moreau.methods.create(name, o) end }
    end
  end
  return list
end

--- A method option given on the command line,
-- as `--KEY.OPTION=VALUE` (KEY one of experiment.METHODS, OPTION one of that method's options), read by
-- the option's domain and checked by it: "WHO: parameter 'KEY.OPTION' ...".
-- Unknown keys and options raise with the valid names (and the nearest one).
-- Options that are not numbers, booleans or names (tensors, functions) cannot
-- be given this way. RETURN: the typed value.
function experiment.method_option(who, name, v)
  local key, opt = tostring(name):match('^([%w_]+)%.([%w_]+)$')
  local keys = {}
  for _, row in ipairs(method_table(options.fill('experiment.methods', experiment.methods_defaults, {}))) do
    keys[row[1]] = row[3]
  end
  if not key or not keys[key] then
    local names = {}
    for k in pairs(keys) do names[#names + 1] = k end
    table.sort(names)
    error(("%s: unknown method '%s' in parameter '%s' (methods: %s)%s"):format(who, tostring(key or name), name,
      table.concat(names, ', '), options.nearest(key or name, names)), 0)
  end
  local defaults = moreau.methods.impl(keys[key]).defaults
  local domain = (defaults._domains or {})[opt]
  local extra = defaults._extra or {}
  if (defaults[opt] == nil and not extra[opt]) or opt:match('^_') then
    local names = {}
    for k in pairs(defaults) do if not k:match('^_') then names[#names + 1] = k end end
    for k in pairs(extra) do if defaults[k] == nil then names[#names + 1] = k end end
    table.sort(names)
    error(("%s: %s has no option '%s' (options: %s)%s"):format(who, key, opt, table.concat(names, ', '),
      options.nearest(opt, names)), 0)
  end
  local kind = domain and domain:match('^%a+')
  local read = (kind == 'int' or kind == 'odd' or kind == 'seed' or kind == 'bytes') and options.types.int
    or kind == 'num' and options.types.number or kind == 'bool' and options.types.bool
    or (kind == 'one' or kind == 'string') and options.types.string
  if not read then
    error(("%s: option '%s' of %s cannot be given on the command line (it takes %s)"):format(who, opt, key,
      domain and options.domain(domain).text or 'a value of code'), 0)
  end
  local val = read(v)
  if val == nil then
    error(("%s: parameter '%s' expects %s, got '%s'"):format(who, name, options.domain(domain).text, tostring(v)), 0)
  end
  if not options.domain(domain).ok(val) then
    error(("%s: parameter '%s' must be %s, got %s%s"):format(who, name, options.domain(domain).text,
      options.show(val), options.suggest(domain, val)), 0)
  end
  return val
end

--- An image size as messages write it, width first and each side named
-- ("80 wide × 100 high"), since tensors hold it height first (C, H, W) and
-- a bare "100x80" reads either way. ARGS: width, height (pixels).
function experiment.size_text(width, height)
  return ('%d wide × %d high'):format(width, height)
end

--- Wall-clock seconds (os.clock counts CPU time of every thread).
function experiment.now() return require('moreau.core').C.mr_wall_seconds() end

--- The work of one entry of experiment.methods per image, in gradient
-- evaluations: T·m for MoreauGrad (T iterations of m noisy gradients; T when
-- m = 0), the samples of SmoothGrad, the steps of integrated gradients, 2 for
-- DeepLIFT (its forward and reverse pass over x and the baseline), 1 for the
-- gradient. A progress line's time left weighs the methods by it.
function experiment.cost(entry)
  local o = entry.opts or {}
  if entry.method == 'moreaugrad' then return (o.T or 300) * math.max(o.m or 32, 1) end
  if entry.method == 'smoothgrad' or entry.method == 'sparsified_smoothgrad' then return o.samples or 50 end
  if entry.method == 'integrated_gradients' then return o.steps or 50 end
  if entry.method == 'deeplift' then return 2 end
  return 1
end

--- A progress line on stderr: "label  i/n  elapsed  left". The time left is
-- the elapsed time scaled by the work left: by the counts i/n, or by
-- work_done / work_total when given (methods weighed by experiment.cost).
function experiment.progress(label, i, n, t0, work_done, work_total)
  local el = experiment.now() - t0
  local frac = (work_total and work_total > 0) and work_done / work_total or (n > 0 and i / n or 1)
  local left = frac > 0 and el / frac * (1 - frac) or 0
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
