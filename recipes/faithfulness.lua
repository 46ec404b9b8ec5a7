-- Faithfulness of each method's maps on the shipped model: deletion and
-- insertion AUCs (Petsiuk et al. 2018), ROAD with noisy linear imputation in
-- most- and least-relevant-first order (Rong et al. 2022) and pixel-flipping's
-- AOPC (Bach et al. 2015; Samek et al. 2017), over test images and several
-- seeds (mean, standard deviation over images, spread over seeds), next to
-- a random ranking (uniform noise as the map) as the floor.
--
--   moreau run recipes/faithfulness.lua --images=16 --seeds=3
--
-- Maps explain the predicted class (the label: only correctly classified
-- images are used). Pixels are ranked by |map| summed over channels (--abs;
-- the gradient-based maps' signs say in which direction a pixel moves the
-- score, not whether it is used); ties go to the lower position. Deletion and
-- pixel flipping set pixels to 0 in the network's input units (the data set's
-- mean gray level); insertion starts from the image blurred by an 11-tap
-- Gaussian of sigma 5 (the RISE authors' choice); scores are class
-- probabilities except pixel flipping's (the logit). The seed sets the
-- methods' noise, ROAD's imputation noise and the random ranking.
local moreau = require 'moreau'
local ex = require 'moreau.experiment'
local viz, F, T = moreau.viz, moreau.faithfulness, moreau.tensor

-- key, title, function, options, the summary it keeps, the direction that is better
local METRICS = {
  { 'deletion', 'Deletion AUC (MoRF; lower is more faithful)', 'deletion', { order = 'morf' }, 'auc', 'lower' },
  { 'insertion', 'Insertion AUC (MoRF; higher is more faithful)', 'insertion', { order = 'morf' }, 'auc', 'higher' },
  { 'road_morf', 'ROAD AUC, MoRF (lower is more faithful)', 'road', { order = 'morf' }, 'auc', 'lower' },
  { 'road_lerf', 'ROAD AUC, LeRF (higher is more faithful)', 'road', { order = 'lerf' }, 'auc', 'higher' },
  { 'pixel_flipping', 'Pixel-flipping AOPC of the logit (MoRF; higher is more faithful)', 'pixel_flipping',
    { order = 'morf' }, 'aopc', 'higher' },
}

return {
  name = 'faithfulness',
  description = 'Deletion, insertion, ROAD (MoRF/LeRF) and pixel-flipping per method, over seeds',
  params = {
    images = { type = 'int', default = 16, domain = 'int >= 1', help = 'correctly classified test images' },
    start = { type = 'int', default = 0, domain = 'int >= 0', help = 'index of the first test image' },
    model = { type = 'string', default = 'resnet_fmnist', domain = 'string', help = 'shipped model' },
    methods = { type = 'list', default = { 'gradient', 'smoothgrad', 'integrated_gradients', 'moreaugrad',
      'sparse_moreaugrad' }, domain = ex.METHODS, help = 'methods evaluated' },
    random = { type = 'bool', default = true, domain = 'bool', help = 'add a random ranking (uniform noise as the map) as a floor' },
    abs = { type = 'bool', default = true, domain = 'bool', help = 'rank pixels by |map| (false: the signed map)' },
    step = { type = 'int', default = 28, domain = 'int >= 1', help = 'pixels per step of deletion and insertion' },
    pf_step = { type = 'int', default = 16, domain = 'int >= 1', help = 'pixels per step of pixel flipping' },
    fractions = { type = 'list', default = { 0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9 }, domain = 'num in [0, 1)',
      help = 'ROAD: fractions of the pixels removed' },
    sigma = { type = 'number', default = 0.01, domain = 'num >= 0', help = 'ROAD: imputation noise (input units)' },
    T = { type = 'int', default = 100, domain = 'int >= 1', help = 'MoreauGrad iterations' },
    m = { type = 'int', default = 8, domain = 'int >= 0', help = 'MoreauGrad noise samples per iteration' },
    samples = { type = 'int', default = 16, domain = 'int >= 1', help = 'SmoothGrad samples' },
    ig_steps = { type = 'int', default = 16, domain = 'int >= 1', help = 'integrated-gradients steps' },
    seed = { type = 'int', default = 0, domain = 'seed', help = 'the first seed' },
    seeds = { type = 'int', default = 3, domain = 'int >= 1', help = 'runs with seeds seed, seed+1, ...' },
    chunk = { type = 'int', default = 256, domain = 'int >= 1', help = 'perturbed images per forward pass' },
  },
  writes = { 'faithfulness.csv', 'paired_random.csv', 'deletion.png', 'insertion.png', 'road_morf.png', 'results.json' },
  method_options = true,
  run = function(p, rep)
    local net, card, test = ex.model(p.model)
    local x, labels, idx = ex.images(net, card, test, { n = p.images, start = p.start, which = 'correct' })
    local seeds = {}
    for i = 0, p.seeds - 1 do seeds[#seeds + 1] = p.seed + i end
    -- per[key][metric][seed index] = per-image values; curves[key][metric] = sum of curves (for the plots)
    local per, curves, keys, titles = {}, {}, {}, {}
    local fractions = {}
    local t0, done, total = ex.now(), 0, nil
    for si, seed in ipairs(seeds) do
      local list = ex.methods { seed = seed, only = p.methods, samples = p.samples, ig_steps = p.ig_steps,
        moreau = { T = p.T, m = p.m, K = math.max(1, math.floor(p.T / 3)) }, overrides = p }
      if p.random then
        list[#list + 1] = { key = 'random', title = 'Random ranking', make = function()
          return { explain = function(_, _, xx)
            return T.rand(xx:shape(), { seed = seed, stream = 0x5EED })
          end }
        end }
      end
      total = total or #seeds * #list
      for _, m in ipairs(list) do
        ex.progress(('faithfulness: seed %d, %s'):format(seed, m.key), done, total, t0)
        local map = m.make():explain(net, x, labels)
        if si == 1 then
          keys[#keys + 1], titles[m.key] = m.key, m.title
          per[m.key], curves[m.key] = {}, {}
        end
        for _, spec in ipairs(METRICS) do
          local key, kind, o = spec[1], spec[3], {}
          for k, v in pairs(spec[4]) do o[k] = v end
          o.abs, o.chunk = p.abs, p.chunk
          if kind == 'road' then o.fractions, o.sigma, o.seed = p.fractions, p.sigma, seed
          elseif kind == 'pixel_flipping' then o.step = p.pf_step
          else o.step = p.step end
          local r = F[kind](net, x, map, labels, o)
          per[m.key][key] = per[m.key][key] or {}
          per[m.key][key][si] = r[spec[5]]
          fractions[key] = r.fractions
          local c = curves[m.key][key] or {}
          for _, cv in ipairs(r.curves) do
            for s, v in ipairs(cv) do c[s] = (c[s] or 0) + v / (#r.curves * #seeds) end
          end
          curves[m.key][key] = c
        end
        done = done + 1
      end
    end
    ex.progress('faithfulness', total, total, t0)
    -- a row per method: for each metric the mean over images and seeds, the
    -- standard deviation over images (the mean of the seeds' standard
    -- deviations) and the spread over seeds (largest seed mean − smallest)
    local header, rows, summary = { 'method' }, {}, {}
    for _, spec in ipairs(METRICS) do
      for _, w in ipairs { 'mean', 'sd', 'seeds' } do header[#header + 1] = spec[1] .. ' ' .. w end
    end
    for _, key in ipairs(keys) do
      local row = { key }
      summary[key] = {}
      for _, spec in ipairs(METRICS) do
        local means, sds = {}, {}
        for si = 1, #seeds do means[si], sds[si] = ex.mean_std(per[key][spec[1]][si]) end
        local mean, sd = ex.mean_std(means), ex.mean_std(sds)
        local lo, hi = math.huge, -math.huge
        for _, v in ipairs(means) do lo, hi = math.min(lo, v), math.max(hi, v) end
        row[#row + 1], row[#row + 2], row[#row + 3] = mean, sd, hi - lo
        summary[key][spec[1]] = { mean = mean, sd = sd, spread = hi - lo, seed_means = means }
      end
      rows[#rows + 1] = row
    end
    -- paired with the random ranking on the same images: per image the
    -- difference of the seed-averaged values, its mean over the images, the
    -- standard error of that mean (sample sd / sqrt(images)), and the images
    -- where the method beats the floor in the metric's better direction
    local paired, prow = {}, {}
    if p.random then
      local function seed_avg(key, metric)
        local out, seeds_v = {}, per[key][metric]
        for i = 1, #idx do
          local s = 0
          for si = 1, #seeds do s = s + seeds_v[si][i] end
          out[i] = s / #seeds
        end
        return out
      end
      local phead = { 'method' }
      for _, spec in ipairs(METRICS) do
        for _, w in ipairs { 'diff', 'se', 'better' } do phead[#phead + 1] = spec[1] .. ' ' .. w end
      end
      for _, key in ipairs(keys) do
        if key ~= 'random' then
          local row = { key }
          paired[key] = {}
          for _, spec in ipairs(METRICS) do
            local a, b = seed_avg(key, spec[1]), seed_avg('random', spec[1])
            local d, n = {}, #a
            for i = 1, n do d[i] = a[i] - b[i] end
            local mean = ex.mean_std(d)
            local q = 0
            for i = 1, n do q = q + (d[i] - mean) ^ 2 end
            local se = n > 1 and math.sqrt(q / (n - 1)) / math.sqrt(n) or 0 / 0
            local better = 0
            for i = 1, n do if (spec[6] == 'lower' and d[i] < 0) or (spec[6] == 'higher' and d[i] > 0) then better = better + 1 end end
            row[#row + 1], row[#row + 2], row[#row + 3] = mean, se, better
            paired[key][spec[1]] = { diff = mean, se = se, better = better, images = n }
          end
          prow[#prow + 1] = row
        end
      end
      rep:table('paired_random.csv', phead, prow,
        ('Each method minus the random ranking on the same %d images (seed-averaged): mean difference, its ' ..
          'standard error, and the images where the method is better'):format(#idx))
    end
    rep:table('faithfulness.csv', header, rows,
      ('Faithfulness over %d images and %d seed(s): mean, standard deviation over images, spread of the seed ' ..
        'means'):format(#idx, #seeds))
    for _, spec in ipairs { METRICS[1], METRICS[2], METRICS[3] } do
      local series = {}
      for _, key in ipairs(keys) do
        series[#series + 1] = { name = titles[key], x = fractions[spec[1]], y = curves[key][spec[1]] }
      end
      rep:image(spec[1] .. '.png', viz.line_plot { series = series, title = spec[2]:gsub(' AUC', ' curve'),
        xlabel = 'fraction of pixels ' .. (spec[1] == 'insertion' and 'inserted' or 'removed'),
        ylabel = 'class probability' }, ('Mean curve over %d images and %d seed(s)'):format(#idx, #seeds))
    end
    rep.results.images = idx
    rep.results.seeds = seeds
    rep.results.metrics = (function()
      local t = {}
      for i, spec in ipairs(METRICS) do t[i] = { key = spec[1], title = spec[2], summary = spec[5] } end
      return t
    end)()
    rep.results.summary = summary
    rep.results.paired_random = paired
    rep.results.per_image = per
    rep.results.mean_curves = curves
    rep.results.fractions = fractions
  end,
}
