-- Figure 2: MoreauGrad maps over rho (rho -> 0 is the simple gradient), and
-- Sparse MoreauGrad maps over eta (eta = 0 is vanilla MoreauGrad).
--
--   moreau run recipes/rho_eta_sweep.lua --images=3 --rhos=0,0.1,0.3,1,3 --etas=0,1e-3,5e-3,1e-2,5e-2
local moreau = require 'moreau'
local ex = require 'moreau.experiment'
local viz, methods = moreau.viz, moreau.methods

return {
  name = 'rho_eta_sweep',
  description = 'Figure 2: MoreauGrad over rho and Sparse MoreauGrad over eta',
  params = {
    images = { type = 'int', default = 3, domain = 'int >= 1', help = 'test images (rows)' },
    start = { type = 'int', default = 0, domain = 'int >= 0', help = 'index of the first test image' },
    model = { type = 'string', default = 'resnet_fmnist', domain = 'string', help = 'shipped model' },
    rhos = { type = 'list', default = { 0, 0.1, 0.3, 1, 3 }, domain = 'num >= 0', help = 'rho values (0: the simple gradient)' },
    etas = { type = 'list', default = { 0, 1e-3, 5e-3, 1e-2, 5e-2 }, domain = 'num >= 0', help = 'eta values of Sparse MoreauGrad (rho 1)' },
    T = { type = 'int', default = 300, domain = 'int >= 1', help = 'solver iterations' },
    m = { type = 'int', default = 32, domain = 'int >= 0', help = 'noise samples per iteration' },
    seed = { type = 'int', default = 0, domain = 'seed', help = 'seed of every noise draw' },
    scale = { type = 'int', default = 3, domain = 'int >= 1', help = 'pixels per input pixel' },
  },
  writes = { 'rho.png', 'eta.png', 'sweep.csv', 'results.json' },
  run = function(p, rep)
    local net, card, test = ex.model(p.model)
    local norm = card.data.normalization
    local x, labels, idx, preds = ex.images(net, card, test, { n = p.images, start = p.start })
    local K = math.min(101, p.T)
    local function rows_start()
      local rows, titles = {}, {}
      for n = 1, #idx do
        rows[n] = { viz.upscale(viz.image(x, { item = n, mean = norm.mean, std = norm.std }), p.scale) }
        titles[n] = ('#%d %s'):format(idx[n], ex.class_name(card, labels[n]))
      end
      return rows, titles
    end
    local table_rows, t0, total, done = {}, ex.now(), #p.rhos + #p.etas, 0
    local function sweep(name, values, make, label)
      local rows, row_titles = rows_start()
      local col_titles = { 'Input' }
      for _, v in ipairs(values) do
        ex.progress('rho_eta_sweep: ' .. name .. ' ' .. v, done, total, t0)
        local method = make(v)
        local maps = method:explain(net, x, preds)
        for n = 1, #idx do rows[n][#rows[n] + 1] = viz.upscale(viz.heatmap(maps, { item = n }), p.scale) end
        col_titles[#col_titles + 1] = label .. ' = ' .. v
        local sp = ex.mean_std(moreau.metrics.sparsity(maps))
        table_rows[#table_rows + 1] = { name, v, sp, method.name }
        done = done + 1
      end
      return viz.grid { rows = rows, col_titles = col_titles, row_titles = row_titles }
    end
    local rho_grid = sweep('rho', p.rhos, function(rho)
      if rho == 0 then return methods.gradient() end
      return methods.moreaugrad { rho = rho, T = p.T, m = p.m, K = K, seed = p.seed }
    end, 'rho')
    rep:image('rho.png', rho_grid, 'MoreauGrad over rho (rho = 0: the simple gradient)')
    local eta_grid = sweep('eta', p.etas, function(eta)
      return methods.moreaugrad { rho = 1, reg = 'l1', eta = eta, T = p.T, m = p.m, K = K, seed = p.seed }
    end, 'eta')
    ex.progress('rho_eta_sweep', total, total, t0)
    rep:image('eta.png', eta_grid, 'Sparse MoreauGrad over eta (rho = 1; eta = 0: vanilla MoreauGrad)')
    rep:table('sweep.csv', { 'parameter', 'value', 'sparsity', 'method' }, table_rows,
      'Fraction of exact zeros in the maps (mean over the images)')
    rep.results.images = idx
    rep.results.sweep = table_rows
  end,
}
