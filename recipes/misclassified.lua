-- Figure 7: maps of misclassified test images, with true and predicted labels.
--
--   moreau run recipes/misclassified.lua --images=6
local moreau = require 'moreau'
local ex = require 'moreau.experiment'
local viz = moreau.viz

return {
  name = 'misclassified',
  description = 'Figure 7: maps of misclassified test images (true and predicted labels)',
  params = {
    images = { type = 'int', default = 6, domain = 'int >= 1', help = 'misclassified images (rows)' },
    start = { type = 'int', default = 0, domain = 'int >= 0', help = 'search from this test index' },
    model = { type = 'string', default = 'resnet_fmnist', domain = 'string', help = 'shipped model' },
    preset = { type = 'string', default = 'paper', domain = 'one of paper, fast', help = "method settings: 'paper' or 'fast'" },
    methods = { type = 'list', default = { 'gradient', 'integrated_gradients', 'smoothgrad', 'sparsified_smoothgrad',
      'moreaugrad', 'sparse_moreaugrad', 'group_moreaugrad' }, domain = ex.METHODS, help = 'methods (columns)' },
    seed = { type = 'int', default = 0, domain = 'seed', help = 'seed of every noise draw' },
    scale = { type = 'int', default = 3, domain = 'int >= 1', help = 'pixels per input pixel' },
  },
  writes = { 'grid.png', 'images.csv', 'results.json' },
  method_options = true, -- --METHOD.OPTION=VALUE (moreau.recipe.params)
  run = function(p, rep)
    local list = ex.methods { preset = p.preset, seed = p.seed, only = p.methods, overrides = p }
    local net, card, test = ex.model(p.model)
    local norm = card.data.normalization
    local x, labels, idx, preds = ex.images(net, card, test, { n = p.images, start = p.start, which = 'misclassified' })
    local rows, row_titles, table_rows = {}, {}, {}
    for n = 1, #idx do
      rows[n] = { viz.upscale(viz.image(x, { item = n, mean = norm.mean, std = norm.std }), p.scale) }
      row_titles[n] = ('#%d %s->%s'):format(idx[n], ex.class_name(card, labels[n]), ex.class_name(card, preds[n]))
      table_rows[n] = { idx[n], ex.class_name(card, labels[n]), ex.class_name(card, preds[n]) }
    end
    local titles = { 'Input' }
    local t0 = ex.now()
    local work, work_total = 0, 0
    for _, m in ipairs(list) do work_total = work_total + ex.cost(m) end
    for k, m in ipairs(list) do
      ex.progress('misclassified: ' .. m.key, k - 1, #list, t0, work, work_total)
      work = work + ex.cost(m)
      local maps = m.make():explain(net, x, preds)      -- what made the model say the wrong class
      for n = 1, #idx do rows[n][#rows[n] + 1] = viz.upscale(viz.heatmap(maps, { item = n }), p.scale) end
      titles[#titles + 1] = m.title
    end
    ex.progress('misclassified', #list, #list, t0)
    rep:image('grid.png', viz.grid { rows = rows, col_titles = titles, row_titles = row_titles,
      title = 'Misclassified test images: true -> predicted' }, 'Maps of the predicted (wrong) class')
    rep:table('images.csv', { 'test index', 'true', 'predicted' }, table_rows, 'The misclassified images shown')
    rep.results.images = idx
    rep.results.labels = labels
    rep.results.predictions = preds
  end,
}
