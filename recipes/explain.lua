-- The main job: explain one image with every method on the shipped model.
--
--   moreau explain                          Fashion-MNIST test image 0
--   moreau explain --index=17 --fast        fewer solver iterations and samples
--   moreau explain --image=shirt.png        any image file, resized to the model's input
--   moreau explain --baseline=black         IG and DeepLIFT from a black image
--   moreau explain --model=net.onnx --image=photo.jpg [--classes=names.txt]   an ONNX classifier
--   moreau explain --precision=bf16         convolutions in bfloat16 (AVX-512 BF16 / AMX CPUs;
--                                           maps differ from fp32: docs/promises.md, section 9)
--
-- Writes index.html: the prediction (true, predicted and explained class, the
-- top-5 softmax probabilities) as a table; grid.png (the input, then one map
-- per method as the paper shows them: sum of |map| over channels, clipped at
-- the 99th percentile); then one figure per method with three views, each
-- with a colour bar and its clip value: absolute (METHOD.png, the grid's
-- panel), signed (METHOD_signed.png, diverging map, clipped symmetrically)
-- and an overlay on the input (METHOD_overlay.png), the method's settings and
-- time under them. results.json holds the prediction, every method's options
-- and seed, the clip values, the map's sparsity and the seconds it took.
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

-- Maps in the units of the score (attributions that add up to a score
-- difference); the others are gradients: score per unit of normalized input.
local ATTRIBUTION = { input_x_gradient = true, integrated_gradients = true, deeplift = true }

-- The units of a method's map.
local function units_of(key, opts)
  local score = opts.score or 'logit'
  if ATTRIBUTION[key] then return score end
  -- MoreauGrad with output = 'delta' gives the solver's displacement itself
  if opts.output == 'delta' then return 'normalized input units (the solver\'s displacement delta)' end
  return score .. ' per normalized input unit'
end

-- The alpha of the overlay: each byte is (1 - alpha) input + alpha colour.
local OVERLAY_ALPHA = 0.5

-- A number in a few significant digits.
local function num(v) return ('%.3g'):format(v) end

-- A method's options as one short line, by name ("T = 100, m = 8, ..."),
-- without the ones that only say how the work is split (chunk,
-- memory_budget: the map does not depend on them); the baseline as a word.
local function settings(opts, baseline_text)
  local keys = {}
  for k in pairs(opts) do
    if k ~= 'chunk' and k ~= 'memory_budget' then keys[#keys + 1] = k end
  end
  table.sort(keys, function(a, b) return a:lower() < b:lower() end)
  local parts = {}
  for _, k in ipairs(keys) do
    local v = opts[k]
    if k == 'baseline' then v = baseline_text
    elseif type(v) == 'number' then v = ('%.6g'):format(v)
    else v = tostring(v) end
    parts[#parts + 1] = k .. ' = ' .. v
  end
  return table.concat(parts, ', ')
end

-- The options as results.json keeps them (a baseline tensor becomes its
-- description and per-channel values).
local function options_record(opts, baseline_record)
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  if o.baseline ~= nil then o.baseline = baseline_record end
  return o
end

return {
  name = 'explain',
  description = 'explain one image with every method on a shipped model (the main job)',
  params = {
    index = { type = 'int', default = 0, domain = 'int >= 0', help = 'Fashion-MNIST test image (0-based)' },
    image = { type = 'string', default = '', domain = 'string', file = 'read', help = 'an image file instead of a test image' },
    fit = { type = 'string', default = 'crop', domain = 'one of crop, stretch',
      help = "--image of another aspect: 'crop' (resize keeping the aspect, cut the centre) or 'stretch'" },
    label = { type = 'int', default = -1, domain = 'int >= -1', help = 'class to explain (-1: the predicted class)' },
    model = { type = 'string', default = 'resnet_fmnist', domain = 'string',
      help = 'shipped model, or an ONNX classifier file (.onnx; with --image)' },
    classes = { type = 'string', default = '', domain = 'string', file = 'read',
      help = 'ONNX model: a file of class names, one per line' },
    normalize = { type = 'string', default = 'auto', domain = 'one of auto, imagenet, none',
      help = "ONNX model: input normalization; auto: ImageNet's mean and std for 3 channels, else none" },
    softplus = { type = 'number', default = 0, domain = 'num >= 0',
      help = 'ONNX model: replace every ReLU by softplus(beta = this); 0 keeps ReLU' },
    max_bytes = { type = 'number', default = 0, domain = 'num >= 0',
      help = "ONNX model: the most bytes its weights and graph may take (0: 256 MiB plus four times the file)" },
    methods = { type = 'list', default = {}, domain = experiment.METHODS, help = 'methods to run (default: all)' },
    fast = { type = 'bool', default = false, domain = 'bool', help = 'T = 100, m = 8 and fewer samples' },
    seed = { type = 'int', default = 0, domain = 'seed', help = 'seed of every noise draw' },
    scale = { type = 'int', default = 4, domain = 'int >= 1',
      help = 'pixels per input pixel in grid.png (each method\'s views: twice that)' },
    baseline = { type = 'string', default = 'zero', domain = 'one of zero, black',
      help = 'IG and DeepLIFT baseline: zero (normalized 0 = the data mean, grey) or black ((0 - mean) / std)' },
    precision = { type = 'string', default = 'fp32', domain = 'one of fp32, bf16',
      help = "the convolutions' arithmetic (moreau.set_precision): fp32, or bf16 where the CPU has AVX-512 BF16 or AMX" },
  },
  writes = { 'grid.png', 'input.png', 'METHOD.png', 'METHOD_signed.png', 'METHOD_overlay.png', 'colorbar_gray.png',
    'colorbar_diverging.png', 'colorbar_viridis.png', 'methods.csv', 'results.json', 'index.html' },
  method_options = true, -- --METHOD.OPTION=VALUE (moreau.recipe.params)
  run = function(p, rep)
    -- Options that would be ignored are refused, naming both, before anything
    -- runs: --index picks a test image and --fit says how a file is resized,
    -- so neither means anything with (resp. without) --image. (A recipe sees
    -- values, not what was typed: --index=0 and --fit=crop are the defaults.)
    if p.image ~= '' and p.index ~= 0 then
      error(('explain: --index=%d and --image=%s both name the image to explain: --index picks a Fashion-MNIST ' ..
        'test image, --image a file; give one'):format(p.index, p.image), 0)
    end
    if p.image == '' and p.fit ~= 'crop' then
      error(('explain: --fit=%s applies to --image only (how a file of another size is fitted to the model\'s ' ..
        'input); the Fashion-MNIST test image %d has the model\'s size: drop --fit, or give --image'):format(p.fit,
        p.index), 0)
    end
    -- the parameters that say "not this one" by a default, as the page shows them
    if p.image == '' then
      rep:param_shown('image', ('none (Fashion-MNIST test image %d)'):format(p.index))
      rep:param_shown('fit', ('%s (applies to --image only)'):format(p.fit))
    else
      rep:param_shown('index', ('%d (not used: --image gives the image)'):format(p.index))
    end
    if p.label < 0 then rep:param_shown('label', ('%d (the predicted class)'):format(p.label)) end
    -- every method's options are checked before the model loads
    -- (only: --methods, default every method; an option set for a method it leaves out is refused)
    local table_of_methods = experiment.methods { preset = p.fast and 'fast' or 'paper', seed = p.seed,
      only = p.methods, overrides = p }
    -- The label is checked against the model card's classes before the
    -- weights load (a class id is 0-based, as in the data sets).
    -- an ONNX file (docs/models.md, "ONNX import"): its own preprocessing and class names
    local onnx = p.model:lower():match('%.onnx$') ~= nil
    local mopts = onnx and { classes = p.classes, normalize = p.normalize, softplus = p.softplus,
      max_bytes = p.max_bytes } or nil
    if not onnx and (p.classes ~= '' or p.normalize ~= 'auto' or p.softplus ~= 0 or p.max_bytes ~= 0) then
      error(('explain: --classes, --normalize, --softplus and --max_bytes apply to an ONNX --model (a .onnx file); ' ..
        '%s is a shipped model'):format(p.model), 0)
    end
    if onnx and p.image == '' then
      error(('explain: --model=%s needs --image=PATH (the Fashion-MNIST test images fit the shipped model ' ..
        'only)'):format(p.model), 0)
    end
    -- (an ONNX file is read once: its card comes with its network)
    local ok, got, onnx_card
    if onnx then ok, got, onnx_card = pcall(moreau.models.pretrained, p.model, mopts)
    else ok, got = pcall(moreau.models.card, p.model) end
    if not ok then
      local why = tostring(got):gsub('^[^\n]-:%d+: ', '')
      if onnx and why:find('max_bytes', 1, true) then why = why .. ' (on the command line: --max_bytes=N)' end
      error('explain: --model: ' .. why, 0)
    end
    local card0, onnx_net = got, nil
    if onnx then card0, onnx_net = onnx_card, got end
    local n_classes = (card0.model.options or {}).num_classes
      or (card0.data and card0.data.classes and #card0.data.classes)
    if n_classes and p.label >= n_classes then
      error(('explain: --label=%d is outside the classes of %s (0..%d; -1: the predicted class)'):format(p.label,
        p.model, n_classes - 1), 0)
    end
    -- bf16 is refused here, before the model loads, where the CPU has no bf16 kernels
    local ok_p, why = pcall(moreau.set_precision, p.precision)
    if not ok_p then error('explain: --precision=' .. p.precision .. ': ' .. tostring(why), 0) end
    local net, card = onnx_net, card0
    if not onnx then net, card = moreau.models.pretrained(p.model) end
    local norm = card.data.normalization
    local shape = net:input_shape()
    if #shape ~= 3 then
      error(('explain: --model=%s takes inputs of shape N x %s; explain needs an image model, N x C x H x W'):format(
        p.model, table.concat(shape, ' x ')), 0)
    end
    local x, source, true_label
    if p.image ~= '' then
      -- (a file that cannot be read or fitted: the loader's reason, worded for the command line)
      local ok_i, img, done = pcall(data.load_image, p.image, { channels = shape[1], size = { shape[2], shape[3] },
        fit = p.fit })
      if not ok_i then
        error(('explain: --image=%s: %s'):format(p.image, tostring(img):gsub('^[^\n]-:%d+: ', '')
          :gsub("^data%.load_image: ", ''):gsub("fit = '(%a+)'", '--fit=%1')), 0)
      end
      x = data.normalize(img, norm.mean, norm.std)
      source = p.image
      -- say what was done to the picture: the model sees only this
      local said = {}
      if done.file_channels ~= shape[1] then
        said[#said + 1] = ('converted to %s%s'):format(shape[1] == 1 and 'grey (BT.601 luma)' or
          ('%d channels'):format(shape[1]), (done.file_channels == 2 or done.file_channels == 4) and
          (shape[1] == 1 or shape[1] == 3) and ', its alpha channel dropped' or '')
      end
      -- sizes width first, each side named (shapes hold them height first)
      local size = experiment.size_text
      if done.cropped then
        said[#said + 1] = ('resized to %s keeping its aspect, then the centre %s cut out ' ..
          '(--fit=stretch stretches instead)'):format(size(done.cropped.from[2], done.cropped.from[1]),
          size(shape[3], shape[2]))
      elseif done.resized then
        said[#said + 1] = ('resized to %s'):format(size(shape[3], shape[2]))
      end
      if #said > 0 then
        local text = ('explain: %s is %s with %d channel%s; %s takes %s with %d channel%s: %s'):format(p.image,
          size(done.file_width, done.file_height), done.file_channels, done.file_channels == 1 and '' or 's',
          p.model, size(shape[3], shape[2]), shape[1], shape[1] == 1 and '' or 's', table.concat(said, '; '))
        io.stderr:write(text, '\n')
        rep:note(text)
      end
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
    local classes = card.data.classes or (not onnx and data.fashion_mnist_classes) or nil
    local logits = net:forward_inference(x):totable()
    local probs = softmax(logits)
    local pred = 0
    for i = 2, #logits do if logits[i] > logits[pred + 1] then pred = i - 1 end end
    local label = p.label >= 0 and p.label or pred
    local function class_name(c) return classes and classes[c + 1] or tostring(c) end
    if p.label < 0 then
      rep:param_shown('label', ('%d (the predicted class: %s, %d)'):format(p.label, class_name(pred), pred))
    end
    io.stderr:write(('explain: %s, true %s, predicted %s (p = %.3f), explaining %s\n'):format(source,
      true_label and class_name(true_label) or '?', class_name(pred), probs[pred + 1], class_name(label)))

    -- The prediction, as text on the page: one sentence, then the top-k
    -- softmax probabilities (k = 5 or fewer classes), with the true and the
    -- explained class added below when they are not among them.
    local summary = ('Explaining class %s (%d); the model predicts %s (%d) with softmax p = %s; %s.'):format(
      class_name(label), label, class_name(pred), pred, num(probs[pred + 1]),
      true_label and ('true class %s (%d)'):format(class_name(true_label), true_label)
        or 'the true class is not known (an image file)')
    local order = {}
    for i = 1, #probs do order[i] = i - 1 end
    table.sort(order, function(a, b) return probs[a + 1] > probs[b + 1] or (probs[a + 1] == probs[b + 1] and a < b) end)
    local rank_of = {}
    for r, c in ipairs(order) do rank_of[c] = r end
    local function roles(c)
      local t = {}
      if c == pred then t[#t + 1] = 'predicted' end
      if c == true_label then t[#t + 1] = 'true' end
      if c == label then t[#t + 1] = 'explained' end
      return table.concat(t, ', ')
    end
    local k = math.min(5, #probs)
    local top, shown = {}, {}
    local function add_row(c)
      if shown[c] then return end
      shown[c] = true
      top[#top + 1] = { rank_of[c], ('%s (%d)'):format(class_name(c), c), ('%.4g'):format(probs[c + 1]),
        ('%.4g'):format(logits[c + 1]), roles(c) }
    end
    for r = 1, k do add_row(order[r]) end
    if true_label then add_row(true_label) end
    add_row(label)
    rep:heading('Prediction')
    rep:note(('%s, model %s.'):format(source, p.model))
    if p.precision == 'bf16' then
      rep:note('Convolutions in bfloat16 (--precision=bf16): the maps differ from the fp32 ones beyond float32 ' ..
        'rounding (docs/promises.md, section 9).')
    end
    rep:note(summary)
    rep:html_table { id = 'prediction', header = { 'rank', 'class', 'softmax p', 'logit', '' }, rows = top,
      caption = ('top %d of %d classes by softmax probability'):format(k, #probs) }

    -- IG and DeepLIFT integrate from a baseline x0. Its zero is 0 in
    -- normalized units, the data set's mean (a mean-grey image), not black;
    -- --baseline=black starts from black in pixel space: (0 - mean) / std per channel.
    local baseline_tensor, baseline_text, baseline_record
    local identity = true -- mean 0 and std 1 on every channel: normalized units are pixel units
    for c = 1, shape[1] do
      local mean = type(norm.mean) == 'table' and norm.mean[c] or norm.mean
      local std = type(norm.std) == 'table' and norm.std[c] or norm.std
      identity = identity and mean == 0 and std == 1
    end
    if p.baseline == 'black' then
      baseline_tensor = data.normalize(moreau.tensor.zeros(x:shape()), norm.mean, norm.std)
      local per_channel = {}
      for c = 1, shape[1] do
        per_channel[c] = (0 - (type(norm.mean) == 'table' and norm.mean[c] or norm.mean))
          / (type(norm.std) == 'table' and norm.std[c] or norm.std)
      end
      local vals = {}
      for c, v in ipairs(per_channel) do vals[c] = num(v) end
      baseline_text = ('black in pixel space, (0 - mean) / std = %s in normalized units'):format(
        table.concat(vals, ', '))
      baseline_record = { kind = 'black', normalized = per_channel }
    elseif identity then
      baseline_text = '0 = black (the model takes its inputs unnormalized)'
      baseline_record = { kind = 'zero', normalized = 0 }
    else
      baseline_text = '0 in normalized units = the data set mean (mean grey), not black'
      baseline_record = { kind = 'zero', normalized = 0 }
    end

    local ran = {}
    for _, entry in ipairs(table_of_methods) do ran[#ran + 1] = entry.key end
    -- the default (an empty list) or 'all' runs them all: the page says which
    if #p.methods == 0 or p.methods[1] == 'all' then rep:param_shown('methods', 'all: ' .. table.concat(ran, ', ')) end
    -- the input at --scale (the grid) and at twice that (each method's views)
    local input_pixels = viz.image(x, { mean = norm.mean, std = norm.std })
    local input, big_input = viz.upscale(input_pixels, p.scale), viz.upscale(input_pixels, 2 * p.scale)
    local row = { input }
    local titles = { 'Input' }
    local per_method, figures, skipped = {}, {}, {}
    local all_methods = #p.methods == 0 or p.methods[1] == 'all'
    for _, entry in ipairs(table_of_methods) do
      -- (a method with a baseline option: IG and DeepLIFT; make() reads entry.opts)
      if baseline_tensor and moreau.methods.impl(entry.method).defaults.baseline ~= nil then
        entry.opts.baseline = baseline_tensor
      end
      local m = entry.make()
      local t0 = experiment.now()
      local ok_m, map = pcall(m.explain, m, net, x, { label })
      if not ok_m then
        -- DeepLIFT has exact rules for some ops only (docs/methods.md): on a
        -- network with another (a ViT's LayerNorm), the default run of every
        -- method goes on without it and says why; asked for by name, it fails
        local why = tostring(map)
        if not (all_methods and entry.method == 'deeplift' and why:find('has no exact DeepLIFT rule', 1, true)) then
          error(map, 0)
        end
        local text = ('explain: DeepLIFT skipped, the other methods ran: %s'):format(why:gsub('^.-deeplift: ', ''))
        io.stderr:write(text, '\n')
        rep:note(text)
        skipped[entry.key] = text
        goto next_method
      end
      local seconds = experiment.now() - t0
      local sparsity = moreau.metrics.sparsity(map)[1]
      local abs_map, q_abs = viz.heatmap(map)
      local signed_map, q_signed = viz.signed(map)
      local heat = viz.upscale(abs_map, p.scale)
      row[#row + 1] = heat
      titles[#titles + 1] = entry.title
      per_method[entry.key] = { method = m.name, options = options_record(m.opts, baseline_record),
        seconds = seconds, sparsity = sparsity, l2 = map:norm(), sum = map:sum(), clip_abs = q_abs,
        clip_signed = q_signed }
      -- completeness (IG, DeepLIFT): sum of the map = f_c(x) - f_c(x0) for
      -- the logit f_c (exactly for DeepLIFT, up to the path rule's error for IG)
      if m.opts.baseline ~= nil and (m.opts.score or 'logit') == 'logit' then
        local x0 = baseline_tensor or moreau.tensor.full(x:shape(), m.opts.baseline)
        per_method[entry.key].score_difference = logits[label + 1] - net:forward_inference(x0):totable()[label + 1]
      end
      figures[#figures + 1] = { entry = entry, m = m,
        abs = viz.upscale(abs_map, 2 * p.scale), signed = viz.upscale(signed_map, 2 * p.scale),
        overlay = viz.overlay(big_input, map, OVERLAY_ALPHA, { cmap = 'viridis' }) }
      io.stderr:write(('  %-22s %7.2f s  sparsity %.3f\n'):format(entry.key, seconds, sparsity))
      -- An all-zero sparse map says nothing: the threshold eta is absolute
      -- (score per normalized input unit) and above what this model's
      -- gradient reaches; name the option and a scale that fits the model.
      if sparsity == 1 and (m.opts.eta or 0) > 0 then
        local _, g = moreau.oracle.grad(net, x, { label })
        local gmax = g:abs():max()
        local text = ('explain: the %s map is all zero: its eta = %g (absolute, score per normalized input unit) ' ..
          'is above what this model\'s gradient reaches (largest entry %.3g at the input); try ' ..
          '--%s.eta=%.2g'):format(entry.key, m.opts.eta, gmax, entry.key, gmax / 10)
        io.stderr:write(text, '\n')
        rep:note(text)
        per_method[entry.key].all_zero_hint = text
      end
      ::next_method::
    end

    -- The paper-style figure. Its text is drawn twice the bitmap font's size
    -- so it reads at 100%; the page carries the same labels in real fonts.
    local grid = viz.grid { rows = { row }, col_titles = titles, text_scale = 2, title_scale = 2, pad = 8,
      title = ('%s: explaining %s; predicted %s (p = %.3g)%s'):format(p.model, class_name(label), class_name(pred),
        probs[pred + 1], true_label and ('; true ' .. class_name(true_label)) or '') }
    rep:heading('All methods')
    rep:image('grid.png', grid, ('every method on %s, explaining class %s: sum over channels of |map|, each '
      .. 'panel clipped at its own 99th percentile (white: that value and above, black: 0)'):format(source,
      class_name(label)))

    rep:heading('Each method')
    rep:note('How each panel is normalized: every panel on its own (colours are not comparable between panels; '
      .. 'compare the clip values). Absolute: s = sum over channels of |map| per pixel, shown as min(s, q) / q '
      .. 'with q the 99th percentile of s over the map\'s pixels (its maximum when that percentile is 0). '
      .. 'Signed: d = sum over channels of map, shown as clamp(d / q, -1, 1) on a blue-white-red map with q the '
      .. '99th percentile of |d| (white is 0; blue negative, red positive). Overlay: '
      .. ('%g %% input + %g %% the absolute view in viridis. '):format(100 * (1 - OVERLAY_ALPHA), 100 * OVERLAY_ALPHA)
      .. 'Gradient-like maps are in units of the score per unit of normalized input; Input x Gradient, '
      .. 'Integrated Gradients and DeepLIFT in units of the score (each figure names its units).')
    rep:figure { id = 'input', title = 'Input', images = { { file = 'input.png', canvas = big_input,
      label = source } }, caption = ('%s, as the model sees it (un-normalized for display).'):format(source) }
    local bars = {
      gray = viz.colorbar('gray', { width = big_input.width }),
      diverging = viz.colorbar('diverging', { width = big_input.width }),
      viridis = viz.colorbar('viridis', { width = big_input.width }),
    }
    for i, f in ipairs(figures) do
      local key, m = f.entry.key, f.m
      local r = per_method[key]
      local function bar(name) return i == 1 and bars[name] or nil end
      local units = units_of(key, m.opts)
      local details = {
        { 'settings', settings(m.opts, (baseline_record.kind == 'black' or identity) and 'black (pixel space)'
          or '0 (data mean)') },
        { 'time', ('%.2f s'):format(r.seconds) },
        { 'units', units },
        { 'sparsity', ('%.3f (fraction of entries exactly 0)'):format(r.sparsity) },
        { 'L2 norm', ('%.4g'):format(r.l2) },
      }
      if r.score_difference then
        details[#details + 1] = { 'completeness', ('Σ map = %.5g; logit(x) - logit(x0) = %.5g'):format(r.sum,
          r.score_difference) }
      end
      local caption = ('%s (%s), explaining class %s.'):format(f.entry.title, m.name, class_name(label))
      if m.opts.baseline ~= nil then caption = caption .. ' Baseline x0: ' .. baseline_text .. '.' end
      rep:figure { id = 'method-' .. key, title = f.entry.title, caption = caption, details = details,
        images = {
          { file = key .. '.png', canvas = f.abs, label = 'absolute: Σc |map|',
            colorbar = { file = 'colorbar_gray.png', canvas = bar('gray'), low = '0', high = num(r.clip_abs),
              note = ('clip q = %s: 99th percentile of Σc |map|'):format(num(r.clip_abs)) } },
          { file = key .. '_signed.png', canvas = f.signed, label = 'signed: Σc map',
            colorbar = { file = 'colorbar_diverging.png', canvas = bar('diverging'), low = num(-r.clip_signed),
              mid = '0', high = num(r.clip_signed),
              note = ('clip ±q, q = %s: 99th percentile of |Σc map|'):format(num(r.clip_signed)) } },
          { file = key .. '_overlay.png', canvas = f.overlay,
            label = ('overlay: absolute view at %g %% over the input'):format(100 * OVERLAY_ALPHA),
            colorbar = { file = 'colorbar_viridis.png', canvas = bar('viridis'), low = '0', high = num(r.clip_abs),
              note = ('viridis, clipped as the absolute view (q = %s)'):format(num(r.clip_abs)) } },
        } }
    end

    rep.results.input = { source = source, true_label = true_label, true_class = true_label and class_name(true_label) }
    rep.results.prediction = { label = pred, class = class_name(pred), probabilities = probs, logits = logits }
    rep.results.explained_label = label
    rep.results.explained_class = class_name(label)
    rep.results.precision = moreau.get_precision()
    rep.results.baseline = baseline_record
    rep.results.normalization = { mean = norm.mean, std = norm.std } -- what the input was normalized with
    rep.results.model = { name = p.model, card = card.model, test_accuracy = card.results and card.results.test_accuracy }
    rep.results.methods = per_method
    if next(skipped) then rep.results.skipped = skipped end
    local rows = {}
    for _, entry in ipairs(table_of_methods) do
      local r = per_method[entry.key]
      if r then rows[#rows + 1] = { entry.key, r.seconds, r.sparsity, r.l2 } end
    end
    rep:table('methods.csv', { 'method', 'seconds', 'sparsity', 'l2 norm' }, rows, 'time and sparsity of each map')
  end,
}
