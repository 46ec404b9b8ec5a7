-- Figure 3: how far MoreauGrad moves from the simple gradient as rho grows,
-- next to SmoothGrad as sigma grows: the normalized L2 distance
-- ‖g/‖g‖ − E/‖E‖‖ averaged over test images, as a line plot.
--
--   moreau run recipes/discrepancy.lua --images=16
local moreau = require 'moreau'
local ex = require 'moreau.experiment'
local viz, methods, metrics = moreau.viz, moreau.methods, moreau.metrics

return {
  name = 'discrepancy',
  description = 'Figure 3: distance from the simple gradient versus rho (MoreauGrad) and sigma (SmoothGrad)',
  params = {
    images = { type = 'int', default = 16, domain = 'int >= 1', help = 'test images averaged over' },
    start = { type = 'int', default = 0, domain = 'int >= 0', help = 'index of the first test image' },
    model = { type = 'string', default = 'resnet_fmnist', domain = 'string', help = 'shipped model' },
    rhos = { type = 'list', default = { 0.03, 0.1, 0.3, 1, 3 }, domain = 'num > 0', help = 'rho values of MoreauGrad' },
    sigmas = { type = 'list', default = { 0.03, 0.1, 0.15, 0.3, 0.5 }, domain = 'num >= 0', help = 'sigma values of SmoothGrad' },
    T = { type = 'int', default = 300, domain = 'int >= 1', help = 'MoreauGrad iterations' },
    m = { type = 'int', default = 32, domain = 'int >= 0', help = 'MoreauGrad noise samples per iteration' },
    samples = { type = 'int', default = 50, domain = 'int >= 1', help = 'SmoothGrad samples' },
    seed = { type = 'int', default = 0, domain = 'seed', help = 'seed of every noise draw' },
  },
  writes = { 'discrepancy.png', 'discrepancy.csv', 'results.json' },
  run = function(p, rep)
    local net, card, test = ex.model(p.model)
    local x, _, idx, preds = ex.images(net, card, test, { n = p.images, start = p.start })
    local g = methods.gradient():explain(net, x, preds)
    local rows, series = {}, {}
    local t0, total, done = ex.now(), #p.rhos + #p.sigmas, 0
    local function curve(name, values, make)
      local s = { name = name, x = {}, y = {}, err = {} }
      for _, v in ipairs(values) do
        ex.progress('discrepancy: ' .. name .. ' ' .. v, done, total, t0)
        local E = make(v):explain(net, x, preds)
        local mean, std = ex.mean_std(metrics.normalized_distance(g, E))
        s.x[#s.x + 1], s.y[#s.y + 1], s.err[#s.err + 1] = v, mean, std
        rows[#rows + 1] = { name, v, mean, std }
        done = done + 1
      end
      series[#series + 1] = s
    end
    curve('MoreauGrad (x = rho)', p.rhos, function(rho)
      return methods.moreaugrad { rho = rho, T = p.T, m = p.m, K = math.min(101, p.T), seed = p.seed }
    end)
    curve('SmoothGrad (x = sigma)', p.sigmas, function(sigma)
      return methods.smoothgrad { sigma = sigma, samples = p.samples, seed = p.seed }
    end)
    ex.progress('discrepancy', total, total, t0)
    rep:image('discrepancy.png', viz.line_plot { series = series, logx = true, title = 'Distance from the simple gradient',
      xlabel = 'rho (MoreauGrad) or sigma (SmoothGrad)', ylabel = 'normalized L2 distance' },
      ('Mean and standard deviation over %d test images'):format(#idx))
    rep:table('discrepancy.csv', { 'method', 'parameter', 'mean distance', 'std' }, rows,
      'Normalized L2 distance from the simple gradient')
    rep.results.images = idx
    rep.results.curves = series
  end,
}
