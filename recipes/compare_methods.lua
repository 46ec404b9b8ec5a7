-- Figure 4: every method on a set of Fashion-MNIST test images.
--
--   moreau run recipes/compare_methods.lua --images=6 [--preset=fast]
--   moreau run recipes/compare_methods.lua --images=6 --store=RUN.db
--
-- With --store, the maps are read from a results store of `moreau explain
-- --data=fashion-mnist:test` (docs/store.md) instead of computed: its
-- methods (or those of --methods), with the options they were made with.
local moreau = require 'moreau'
local ex = require 'moreau.experiment'
local viz = moreau.viz

return {
  name = 'compare_methods',
  description = 'Figure 4: a grid of all methods (columns) on test images (rows)',
  params = {
    images = { type = 'int', default = 6, domain = 'int >= 1', help = 'test images (rows)' },
    start = { type = 'int', default = 0, domain = 'int >= 0', help = 'index of the first test image' },
    model = { type = 'string', default = 'resnet_fmnist', domain = 'string', help = 'shipped model' },
    preset = { type = 'string', default = 'paper', domain = 'one of paper, fast', help = "method settings: 'paper' or 'fast'" },
    methods = { type = 'list', default = {}, domain = ex.METHODS, help = 'methods (default: all)' },
    seed = { type = 'int', default = 0, domain = 'seed', help = 'seed of every noise draw' },
    scale = { type = 'int', default = 3, domain = 'int >= 1', help = 'pixels per input pixel' },
    store = { type = 'string', default = '', domain = 'string', file = 'read',
      help = 'read the maps from this results store (moreau explain --data=fashion-mnist:test) instead of computing them' },
  },
  writes = { 'grid.png', 'methods.csv', 'results.json' },
  method_options = true, -- --METHOD.OPTION=VALUE (moreau.recipe.params)
  run = function(p, rep)
    local st
    if p.store ~= '' then
      st = require('moreau.store').open(p.store, { readonly = true })
      local sp = st:params()
      if sp.data ~= 'fashion-mnist:test' or sp.model ~= p.model or sp.target ~= 'predicted' then
        error(('compare_methods: --store=%s holds maps of --data=%s, --model=%s, --target=%s; this recipe shows ' ..
          'the predicted class of fashion-mnist:test images under --model=%s'):format(p.store, tostring(sp.data),
          tostring(sp.model), tostring(sp.target), p.model), 0)
      end
      if #p.methods == 0 then p.methods = sp.methods end
      rep:param_shown('preset', 'the store\'s options (--store)')
    end
    local list = ex.methods { preset = p.preset, seed = p.seed, only = p.methods, overrides = p }
    if #p.methods == 0 or p.methods[1] == 'all' then -- the default, or 'all', runs them all: the page says which
      local keys = {}
      for k, m in ipairs(list) do keys[k] = m.key end
      rep:param_shown('methods', 'all: ' .. table.concat(keys, ', '))
    end
    local net, card, test = ex.model(p.model)
    local norm = card.data.normalization
    local x, labels, idx, preds = ex.images(net, card, test, { n = p.images, start = p.start })
    local rows, row_titles = {}, {}
    for n = 1, #idx do
      rows[n] = { viz.upscale(viz.image(x, { item = n, mean = norm.mean, std = norm.std }), p.scale) }
      row_titles[n] = ('#%d %s'):format(idx[n], ex.class_name(card, labels[n]))
    end
    local titles, table_rows, per = { 'Input' }, {}, {}
    local t0 = ex.now()
    local work, work_total = 0, 0
    for _, m in ipairs(list) do work_total = work_total + ex.cost(m) end
    for k, m in ipairs(list) do
      ex.progress('compare_methods: ' .. m.key, k - 1, #list, t0, work, work_total)
      work = work + ex.cost(m)
      local method = m.make()
      local t1 = ex.now()
      local maps, seconds
      if st then
        local ok, got = pcall(st.maps, st, m.key, idx)
        if not ok then error('compare_methods: ' .. tostring(got):gsub('^[^\n]-:%d+: ', ''), 0) end
        maps = got
        local secs, ids = st:metric(m.key, 'seconds')
        local by = {}
        for i, id in ipairs(ids) do by[id] = secs[i] end
        seconds = 0
        for _, id in ipairs(idx) do seconds = seconds + by[id] end
        method = { opts = st:options(m.key) }
      else
        maps = method:explain(net, x, preds)       -- explain the predicted class, as the paper
        seconds = ex.now() - t1
      end
      local sp = moreau.metrics.sparsity(maps)
      local g = moreau.metrics.gini(maps)
      for n = 1, #idx do rows[n][#rows[n] + 1] = viz.upscale(viz.heatmap(maps, { item = n }), p.scale) end
      titles[#titles + 1] = m.title
      local msp, _ = ex.mean_std(sp)
      local mg, _ = ex.mean_std(g)
      table_rows[#table_rows + 1] = { m.key, seconds / #idx, msp, mg }
      per[m.key] = { options = method.opts, seconds = seconds, sparsity = sp, gini = g }
    end
    ex.progress('compare_methods', #list, #list, t0)
    -- which class each row explains, as text on the page (the grid's row
    -- titles give the true class; every map explains the predicted one)
    local image_rows = {}
    for n = 1, #idx do
      image_rows[n] = { idx[n], ex.class_name(card, labels[n]), ex.class_name(card, preds[n]),
        preds[n] == labels[n] and '' or 'misclassified' }
    end
    rep:html_table { id = 'images', header = { 'test image', 'true class', 'predicted = explained class', 'note' },
      rows = image_rows, caption = 'the rows of the grid' }
    local with_baseline = false
    for _, m in ipairs(list) do
      if m.method == 'integrated_gradients' or m.method == 'deeplift' then with_baseline = true end
    end
    rep:note('Each panel is the sum over channels of |map|, normalized on its own: clipped at its own 99th '
      .. 'percentile (white: that value and above, black: 0), so colours are not comparable between panels.'
      .. (with_baseline and ' Integrated Gradients and DeepLIFT start from a baseline of 0 in normalized units, '
        .. 'the data set mean (mean grey), not black.' or ''))
    -- the bitmap font drawn twice its size, to read at 100%
    rep:image('grid.png', viz.grid { rows = rows, col_titles = titles, row_titles = row_titles, text_scale = 2,
      title_scale = 2, pad = 8, title = 'Interpretation maps of ' .. p.model .. ' (each explains the predicted class)',
    },
      'All methods on test images ' .. table.concat(idx, ', ') .. ', each explaining the predicted class')
    rep:table('methods.csv', { 'method', 'seconds per image', 'sparsity', 'gini' }, table_rows,
      'Cost and sparsity of each method (mean over the images)')
    rep.results.images = idx
    rep.results.labels = labels
    rep.results.predictions = preds
    rep.results.methods = per
    if st then
      rep.results.store = { path = p.store, params = st:params(), info = st:info() }
      st:close()
    end
  end,
}
