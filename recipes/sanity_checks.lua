-- Sanity checks for saliency maps (Adebayo et al. 2018) on the shipped model:
-- model-parameter randomisation, cascading from the top layer and independent
-- per layer, and the random-logit test (Sixt et al. 2020), for each method.
-- Per randomized layer: the Spearman rank correlation of |map| with the
-- original |map| and SSIM (display preset), mean and standard deviation over
-- the images, as line plots and a table. A method that passes loses its
-- similarity once the weights it explains are random.
--
--   moreau run recipes/sanity_checks.lua --images=16 --granularity=block
--
-- Re-initialization is PyTorch's default for each layer type (conv/linear
-- uniform in ±1/sqrt(fan_in), batchnorm weight 1, bias 0, running statistics
-- 0 and 1), seeded by --seed, on a copy of the model (moreau.sanity).
local moreau = require 'moreau'
local ex = require 'moreau.experiment'
local viz, S = moreau.viz, moreau.sanity

return {
  name = 'sanity_checks',
  description = 'Adebayo et al. 2018: model-parameter randomisation (cascading, independent) and random logit',
  params = {
    images = { type = 'int', default = 16, domain = 'int >= 1', help = 'correctly classified test images' },
    start = { type = 'int', default = 0, domain = 'int >= 0', help = 'index of the first test image' },
    model = { type = 'string', default = 'resnet_fmnist', domain = 'string', help = 'shipped model' },
    methods = { type = 'list', default = { 'gradient', 'smoothgrad', 'integrated_gradients', 'moreaugrad',
      'sparse_moreaugrad' }, domain = ex.METHODS, help = 'methods checked' },
    granularity = { type = 'string', default = 'block', domain = 'one of layer, block',
      help = 'randomize by layer (every conv/bn/linear) or by block (conv1, bn1, layer1..3, fc)' },
    T = { type = 'int', default = 100, domain = 'int >= 1', help = 'MoreauGrad iterations' },
    m = { type = 'int', default = 8, domain = 'int >= 0', help = 'MoreauGrad noise samples per iteration' },
    samples = { type = 'int', default = 16, domain = 'int >= 1', help = 'SmoothGrad samples' },
    ig_steps = { type = 'int', default = 16, domain = 'int >= 1', help = 'integrated-gradients steps' },
    seed = { type = 'int', default = 0, domain = 'seed', help = 'seed of the re-initialization and of every noise draw' },
  },
  writes = { 'cascading_spearman.png', 'cascading_ssim.png', 'independent_spearman.png', 'independent_ssim.png',
    'sanity.csv', 'random_logit.csv', 'results.json' },
  method_options = true,
  run = function(p, rep)
    local net, card, test = ex.model(p.model)
    local x, labels, idx = ex.images(net, card, test, { n = p.images, start = p.start, which = 'correct' })
    local list = ex.methods { seed = p.seed, only = p.methods, samples = p.samples, ig_steps = p.ig_steps,
      moreau = { T = p.T, m = p.m, K = math.max(1, math.floor(p.T / 3)) }, overrides = p }
    local layers = {}
    for i, l in ipairs(S.layers(net, { granularity = p.granularity })) do layers[i] = l.name end
    local out = { cascading = {}, independent = {}, random_logit = {} }
    local rows, logit_rows = {}, {}
    local t0, total, done = ex.now(), #list * 3, 0
    for _, m in ipairs(list) do
      local method = m.make()
      for _, mode in ipairs { 'cascading', 'independent' } do
        ex.progress(('sanity_checks: %s, %s'):format(m.key, mode), done, total, t0)
        local r = S.model_randomization(net, method, x, labels, { mode = mode, seed = p.seed,
          granularity = p.granularity })
        local entry = { mean_spearman = {}, sd_spearman = {}, mean_ssim = {}, sd_ssim = {}, nan_spearman = {},
          spearman = r.spearman, ssim = r.ssim }
        for i, layer in ipairs(r.layers) do
          local ms, ss = ex.mean_std(r.spearman[i])
          local mm, sm = ex.mean_std(r.ssim[i])
          local nan = 0
          for _, v in ipairs(r.spearman[i]) do if v ~= v then nan = nan + 1 end end
          entry.mean_spearman[i], entry.sd_spearman[i], entry.mean_ssim[i], entry.sd_ssim[i] = ms, ss, mm, sm
          entry.nan_spearman[i] = nan
          rows[#rows + 1] = { m.key, mode, i, layer, ms, ss, mm, sm, nan }
        end
        out[mode][m.key] = entry
        done = done + 1
      end
      ex.progress(('sanity_checks: %s, random logit'):format(m.key), done, total, t0)
      local q = S.random_logit(net, method, x, labels, { seed = p.seed })
      local ms, ss = ex.mean_std(q.spearman)
      local mm, sm = ex.mean_std(q.ssim)
      out.random_logit[m.key] = { classes = q.classes, spearman = q.spearman, ssim = q.ssim, mean_spearman = ms,
        sd_spearman = ss, mean_ssim = mm, sd_ssim = sm }
      logit_rows[#logit_rows + 1] = { m.key, ms, ss, mm, sm }
      done = done + 1
    end
    ex.progress('sanity_checks', total, total, t0)
    local xlabel = ('layers randomized from the top (1 = %s, %d = %s)'):format(layers[1], #layers, layers[#layers])
    for _, mode in ipairs { 'cascading', 'independent' } do
      for _, what in ipairs { 'spearman', 'ssim' } do
        local series = {}
        for _, m in ipairs(list) do
          local e = out[mode][m.key]
          local s = { name = m.title, x = {}, y = {}, err = {} }
          for i = 1, #layers do
            s.x[i], s.y[i], s.err[i] = i, e['mean_' .. what][i], e['sd_' .. what][i]
            if s.y[i] ~= s.y[i] then s.y[i], s.err[i] = 0, 0 end -- every image NaN: drawn at 0, the table says so
          end
          series[#series + 1] = s
        end
        local title = ('%s randomisation: %s to the original map'):format(mode,
          what == 'spearman' and 'Spearman of |map|' or 'SSIM')
        rep:image(('%s_%s.png'):format(mode, what), viz.line_plot { series = series, title = title,
          xlabel = xlabel, ylabel = what == 'spearman' and 'Spearman rank correlation' or 'SSIM' },
          title .. (' (mean ± sd over %d images; 1 = %s alone%s)'):format(#idx, layers[1],
            mode == 'cascading' and ', i = layers 1..i' or ', i = layer i alone'))
      end
    end
    rep:table('sanity.csv', { 'method', 'mode', 'step', 'layer', 'spearman mean', 'spearman sd', 'ssim mean',
      'ssim sd', 'spearman NaN (constant map)' }, rows,
      ('Similarity to the original map after model-parameter randomisation, over %d images'):format(#idx))
    rep:table('random_logit.csv', { 'method', 'spearman mean', 'spearman sd', 'ssim mean', 'ssim sd' }, logit_rows,
      'Random-logit test: the map of a random other class against the label\'s map')
    rep.results.images = idx
    rep.results.layers = layers
    rep.results.cascading = out.cascading
    rep.results.independent = out.independent
    rep.results.random_logit = out.random_logit
  end,
}
