-- The main job: explain one image with every method on the shipped model.
--
--   moreau explain                          Fashion-MNIST test image 0
--   moreau explain --index=17 --fast        fewer solver iterations and samples
--   moreau explain --image=shirt.png        any image file, resized to the model's input
--
-- Writes grid.png (the input, then one heatmap per method, as the paper shows
-- them: sum of |map| over channels, clipped at the 99th percentile), one PNG per
-- method, and results.json with the model's prediction, every method's options
-- and seed, the map's sparsity and the seconds it took.
local moreau = require 'moreau'
local data, viz = moreau.data, moreau.viz
local experiment = require 'moreau.experiment'

local function softmax(logits)
  local m, s, p = -math.huge, 0, {}
  for _, z in ipairs(logits) do m = math.max(m, z) end
  for i, z in ipairs(logits) do p[i] = math.exp(z - m); s = s + p[i] end
  for i = 1, #p do p[i] = p[i] / s end
  return p
end

return {
  name = 'explain',
  description = 'explain one image with every method on a shipped model (the main job)',
  params = {
    index = { type = 'int', default = 0, domain = 'int >= 0', help = 'Fashion-MNIST test image (0-based)' },
    image = { type = 'string', default = '', domain = 'string', file = 'read', help = 'an image file instead of a test image' },
    label = { type = 'int', default = -1, domain = 'int >= -1', help = 'class to explain (-1: the predicted class)' },
    model = { type = 'string', default = 'resnet_fmnist', domain = 'string', help = 'shipped model' },
    methods = { type = 'list', default = {}, domain = experiment.METHODS, help = 'methods to run (default: all)' },
    fast = { type = 'bool', default = false, domain = 'bool', help = 'T = 100, m = 8 and fewer samples' },
    seed = { type = 'int', default = 0, domain = 'seed', help = 'seed of every noise draw' },
    scale = { type = 'int', default = 4, domain = 'int >= 1', help = 'pixels per input pixel in the pictures' },
  },
  writes = { 'grid.png', 'METHOD.png', 'results.json', 'index.html' },
  method_options = true, -- --METHOD.OPTION=VALUE (moreau.recipe.params)
  run = function(p, rep)
    -- every method's options are checked before the model loads
    local table_of_methods = experiment.methods { preset = p.fast and 'fast' or 'paper', seed = p.seed,
      overrides = p }
    -- The label is checked against the model card's classes before the
    -- weights load (a class id is 0-based, as in the data sets).
    local ok, card0 = pcall(moreau.models.card, p.model)
    if not ok then error('explain: --model: ' .. tostring(card0):gsub('^[^\n]-:%d+: ', ''), 0) end
    local n_classes = (card0.model.options or {}).num_classes
      or (card0.data and card0.data.classes and #card0.data.classes)
    if n_classes and p.label >= n_classes then
      error(('explain: --label=%d is outside the classes of %s (0..%d; -1: the predicted class)'):format(p.label,
        p.model, n_classes - 1), 0)
    end
    local net, card = moreau.models.pretrained(p.model)
    local norm = card.data.normalization
    local shape = net:input_shape()
    local x, source, true_label
    if p.image ~= '' then
      local img = data.load_image(p.image, { channels = shape[1], size = { shape[2], shape[3] } })
      x = data.normalize(img, norm.mean, norm.std)
      source = p.image
    else
      local test = data.fashion_mnist { split = 'test' }
      if p.index < 0 or p.index >= test.n then
        error(('explain: --index=%d is outside the test set (0..%d)'):format(p.index, test.n - 1), 0)
      end
      local img
      img, true_label = data.get(test, p.index + 1)
      x = data.normalize(img, norm.mean, norm.std)
      source = ('fashion-mnist test image %d'):format(p.index)
    end
    local classes = card.data.classes or data.fashion_mnist_classes
    local logits = net:forward_inference(x):totable()
    local probs = softmax(logits)
    local pred = 0
    for i = 2, #logits do if logits[i] > logits[pred + 1] then pred = i - 1 end end
    local label = p.label >= 0 and p.label or pred
    local function class_name(c) return classes and classes[c + 1] or tostring(c) end
    io.stderr:write(('explain: %s, true %s, predicted %s (p = %.3f), explaining %s\n'):format(source,
      true_label and class_name(true_label) or '?', class_name(pred), probs[pred + 1], class_name(label)))

    local wanted = {}
    for _, m in ipairs(p.methods) do wanted[m] = true end
    local row = { viz.upscale(viz.image(x, { mean = norm.mean, std = norm.std }), p.scale) }
    local titles = { 'Input' }
    local per_method = {}
    for _, entry in ipairs(table_of_methods) do
      if #p.methods == 0 or wanted[entry.key] then
        local m = entry.make()
        local t0 = experiment.now()
        local map = m:explain(net, x, { label })
        local seconds = experiment.now() - t0
        local sparsity = moreau.metrics.sparsity(map)[1]
        local heat = viz.upscale(viz.heatmap(map), p.scale)
        rep:image(entry.key .. '.png', heat, entry.title)
        row[#row + 1] = heat
        titles[#titles + 1] = entry.title
        per_method[entry.key] = { method = m.name, options = m.opts, seconds = seconds,
          sparsity = sparsity, l2 = map:norm() }
        io.stderr:write(('  %-22s %7.2f s  sparsity %.3f\n'):format(entry.key, seconds, sparsity))
      end
    end
    for k in pairs(wanted) do
      if not per_method[k] then error("explain: unknown method '" .. k .. "'", 0) end
    end
    local grid = viz.grid { rows = { row }, col_titles = titles,
      title = ('%s: %s -> %s'):format(p.model, true_label and class_name(true_label) or source, class_name(label)) }
    rep:image('grid.png', grid, 'every method on ' .. source)
    rep.results.input = { source = source, true_label = true_label, true_class = true_label and class_name(true_label) }
    rep.results.prediction = { label = pred, class = class_name(pred), probabilities = probs, logits = logits }
    rep.results.explained_label = label
    rep.results.model = { name = p.model, card = card.model, test_accuracy = card.results and card.results.test_accuracy }
    rep.results.methods = per_method
    local rows = {}
    for _, entry in ipairs(table_of_methods) do
      local r = per_method[entry.key]
      if r then rows[#rows + 1] = { entry.key, r.seconds, r.sparsity, r.l2 } end
    end
    rep:table('methods.csv', { 'method', 'seconds', 'sparsity', 'l2 norm' }, rows, 'time and sparsity of each map')
  end,
}
