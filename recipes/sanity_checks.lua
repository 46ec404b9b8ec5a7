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
    seeds = { type = 'int', default = 3, domain = 'int >= 1', help = 'runs with seeds seed, seed+1, ...' },
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
    local seeds = {}
    for i = 0, p.seeds - 1 do seeds[#seeds + 1] = p.seed + i end
    -- raw[mode][key][seed index] = model_randomization's result (random_logit's for 'random_logit')
    local raw = { cascading = {}, independent = {}, random_logit = {} }
    local list
    local t0, done, total = ex.now(), 0, nil
    for si, seed in ipairs(seeds) do
      list = ex.methods { seed = seed, only = p.methods, samples = p.samples, ig_steps = p.ig_steps,
        moreau = { T = p.T, m = p.m, K = math.max(1, math.floor(p.T / 3)) }, overrides = p }
      total = total or #seeds * #list * 3
      for _, m in ipairs(list) do
        local method = m.make()
        for _, mode in ipairs { 'cascading', 'independent' } do
          ex.progress(('sanity_checks: seed %d, %s, %s'):format(seed, m.key, mode), done, total, t0)
          raw[mode][m.key] = raw[mode][m.key] or {}
          raw[mode][m.key][si] = S.model_randomization(net, method, x, labels, { mode = mode, seed = seed,
            granularity = p.granularity })
          done = done + 1
        end
        ex.progress(('sanity_checks: seed %d, %s, random logit'):format(seed, m.key), done, total, t0)
        raw.random_logit[m.key] = raw.random_logit[m.key] or {}
        raw.random_logit[m.key][si] = S.random_logit(net, method, x, labels, { seed = seed })
        done = done + 1
      end
    end
    -- the mean over images and seeds, the standard deviation over images (the
    -- mean of the seeds' standard deviations) and the spread over seeds
    -- (largest seed mean − smallest) of a list of per-seed per-image values
    local function summarize(per_seed)
      local means, sds = {}, {}
      for si, v in ipairs(per_seed) do means[si], sds[si] = ex.mean_std(v) end
      local lo, hi = math.huge, -math.huge
      for _, v in ipairs(means) do if v == v then lo, hi = math.min(lo, v), math.max(hi, v) end end
      return ex.mean_std(means), ex.mean_std(sds), hi >= lo and hi - lo or 0 / 0, means
    end
    local out = { cascading = {}, independent = {}, random_logit = {} }
    local rows, logit_rows = {}, {}
    for _, m in ipairs(list) do
      for _, mode in ipairs { 'cascading', 'independent' } do
        local entry = { mean_spearman = {}, sd_spearman = {}, spread_spearman = {}, mean_ssim = {}, sd_ssim = {},
          spread_ssim = {}, nan_spearman = {}, per_seed = {} }
        for si = 1, #seeds do
          local r = raw[mode][m.key][si]
          entry.per_seed[si] = { spearman = r.spearman, ssim = r.ssim }
        end
        for i, layer in ipairs(layers) do
          local sp, ss, nan = {}, {}, 0
          for si = 1, #seeds do
            local r = raw[mode][m.key][si]
            sp[si], ss[si] = r.spearman[i], r.ssim[i]
            for _, v in ipairs(r.spearman[i]) do if v ~= v then nan = nan + 1 end end
          end
          local ms, sds, sprs = summarize(sp)
          local mm, sdm, sprm = summarize(ss)
          entry.mean_spearman[i], entry.sd_spearman[i], entry.spread_spearman[i] = ms, sds, sprs
          entry.mean_ssim[i], entry.sd_ssim[i], entry.spread_ssim[i] = mm, sdm, sprm
          entry.nan_spearman[i] = nan
          rows[#rows + 1] = { m.key, mode, i, layer, ms, sds, sprs, mm, sdm, sprm, nan }
        end
        out[mode][m.key] = entry
      end
      local sp, ss, classes = {}, {}, {}
      for si = 1, #seeds do
        local q = raw.random_logit[m.key][si]
        sp[si], ss[si], classes[si] = q.spearman, q.ssim, q.classes
      end
      local ms, sds, sprs = summarize(sp)
      local mm, sdm, sprm = summarize(ss)
      out.random_logit[m.key] = { classes = classes, spearman = sp, ssim = ss, mean_spearman = ms, sd_spearman = sds,
        spread_spearman = sprs, mean_ssim = mm, sd_ssim = sdm, spread_ssim = sprm }
      logit_rows[#logit_rows + 1] = { m.key, ms, sds, sprs, mm, sdm, sprm }
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
            local y = e['mean_' .. what][i]
            -- every map constant (Spearman undefined for all images): no point, the table counts them
            if y == y then s.x[#s.x + 1], s.y[#s.y + 1], s.err[#s.err + 1] = i, y, e['sd_' .. what][i] end
          end
          if #s.x > 0 then series[#series + 1] = s end
        end
        local title = ('%s: %s to the original'):format(mode == 'cascading' and 'Cascading' or 'Independent',
          what == 'spearman' and 'Spearman of |map|' or 'SSIM')
        rep:image(('%s_%s.png'):format(mode, what), viz.line_plot { series = series, title = title,
          xlabel = xlabel, ylabel = what == 'spearman' and 'Spearman rank correlation' or 'SSIM' },
          ('%s randomisation, %s to the original map (mean ± sd over %d images, %d seed(s); 1 = %s alone%s; a ' ..
            'point where every map is constant, its Spearman undefined, is left out)'):format(mode,
            what == 'spearman' and 'Spearman of |map|' or 'SSIM', #idx, #seeds, layers[1],
            mode == 'cascading' and ', i = layers 1..i' or ', i = layer i alone'))
      end
    end
    rep:table('sanity.csv', { 'method', 'mode', 'step', 'layer', 'spearman mean', 'spearman sd', 'spearman seeds',
      'ssim mean', 'ssim sd', 'ssim seeds', 'spearman NaN (constant map)' }, rows,
      ('Similarity to the original map after model-parameter randomisation, over %d images and %d seed(s): ' ..
        'mean, standard deviation over images, spread of the seed means'):format(#idx, #seeds))
    rep:table('random_logit.csv', { 'method', 'spearman mean', 'spearman sd', 'spearman seeds', 'ssim mean',
      'ssim sd', 'ssim seeds' }, logit_rows,
      'Random-logit test: the map of a random other class against the label\'s map')
    rep.results.images = idx
    rep.results.seeds = seeds
    rep.results.layers = layers
    rep.results.cascading = out.cascading
    rep.results.independent = out.independent
    rep.results.random_logit = out.random_logit
  end,
}
