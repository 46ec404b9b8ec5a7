-- Figures 5 and 6: the top-k interpretation attack (Ghorbani et al. 2019) at
-- several L2 radii against every method; maps before and after; the three
-- robustness metrics (normalized distance, top-k intersection, SSIM) as mean
-- and standard deviation over N test images, in tables and line plots.
--
--   moreau run recipes/robustness.lua --images=50 --eps=0,0.3,1,3,10 --seeds=3
--
-- eps = 0 is the noise floor: no attack, a fresh draw of a stochastic map.
--
--   moreau run recipes/robustness.lua --images=50 --store=RUN.db
--
-- With --store, the clean maps are read from a results store of `moreau
-- explain --data=fashion-mnist:test` (docs/store.md) instead of computed,
-- and every method is the store's, with the options and seed it was made
-- with (the attack differentiates through that same method); --T, --m,
-- --samples, --ig_steps and --seed are then the store's, and --seeds is 1.
--
-- eps is in the network's input units (Fashion-MNIST normalized by mean 0.286,
-- std 0.353, so one pixel step of 1/255 is 0.011); attacked images are kept in
-- the box of valid pixels [(0 − mean)/std, (1 − mean)/std]. Stochastic maps
-- are recomputed with fresh noise after the attack, as the authors do.
local moreau = require 'moreau'
local ex = require 'moreau.experiment'
local viz, attacks, metrics = moreau.viz, moreau.attacks, moreau.metrics

local metric_names = {
  { key = 'distance', title = 'normalized distance (lower is more robust)' },
  { key = 'topk', title = 'top-k intersection (higher is more robust)' },
  { key = 'ssim', title = 'SSIM (higher is more robust)' },
}

return {
  name = 'robustness',
  description = 'Figures 5 and 6: top-k attack at several eps against every method, with robustness metrics',
  params = {
    images = { type = 'int', default = 50, domain = 'int >= 1', help = 'correctly classified test images' },
    start = { type = 'int', default = 0, domain = 'int >= 0', help = 'index of the first test image' },
    model = { type = 'string', default = 'resnet_fmnist', domain = 'string', help = 'shipped model' },
    eps = { type = 'list', default = { 0.3, 1, 3, 10 }, domain = 'num >= 0', help = 'L2 radii of the attack (input units)' },
    iters = { type = 'int', default = 10, domain = 'int >= 0', help = 'attack iterations' },
    methods = { type = 'list', default = { 'gradient', 'integrated_gradients', 'smoothgrad', 'sparsified_smoothgrad',
      'moreaugrad', 'sparse_moreaugrad' }, domain = ex.METHODS, help = 'methods attacked' },
    T = { type = 'int', default = 30, domain = 'int >= 1', help = 'MoreauGrad iterations inside the attack' },
    m = { type = 'int', default = 4, domain = 'int >= 0', help = 'MoreauGrad noise samples per iteration inside the attack' },
    samples = { type = 'int', default = 16, domain = 'int >= 1', help = 'SmoothGrad samples (Sparsified SmoothGrad: 2x)' },
    ig_steps = { type = 'int', default = 16, domain = 'int >= 1', help = 'integrated-gradients steps' },
    seed = { type = 'int', default = 0, domain = 'seed', help = 'seed of every noise draw (the first of --seeds)' },
    seeds = { type = 'int', default = 1, domain = 'int >= 1', help = 'runs with seeds seed, seed+1, ...; tables give the spread over them' },
    scale = { type = 'int', default = 3, domain = 'int >= 1', help = 'pixels per input pixel in the pictures' },
    store = { type = 'string', default = '', domain = 'string', file = 'read',
      help = 'read the clean maps, and the methods\' options, from this results store instead of computing them' },
  },
  writes = { 'maps.png', 'distance.csv', 'topk.csv', 'ssim.csv', 'distance.png', 'topk.png', 'ssim.png',
    'results.json' },
  method_options = true, -- --METHOD.OPTION=VALUE (moreau.recipe.params)
  run = function(p, rep)
    local net, card, test = ex.model(p.model)
    local norm = card.data.normalization
    local lo, hi = (0 - norm.mean[1]) / norm.std[1], (1 - norm.mean[1]) / norm.std[1]
    local x, labels, idx = ex.images(net, card, test, { n = p.images, start = p.start, which = 'correct' })
    local st
    if p.store ~= '' then
      st = require('moreau.store').open(p.store, { readonly = true })
      local sp = st:params()
      if sp.data ~= 'fashion-mnist:test' or sp.model ~= p.model then
        error(('robustness: --store=%s holds maps of --data=%s under --model=%s; this recipe attacks ' ..
          'fashion-mnist:test images under --model=%s'):format(p.store, tostring(sp.data), tostring(sp.model), p.model), 0)
      end
      if p.seeds ~= 1 then
        error(('robustness: --seeds=%d with --store: the store holds the maps of one seed (%d)'):format(p.seeds, sp.seed), 0)
      end
      -- the images are correctly classified: the predicted class is the label, whichever the store explained
      for n, id in ipairs(idx) do
        local rec = st:image(id)
        if not rec then
          error(('robustness: --store=%s does not hold test image %d (it holds %d images)'):format(p.store, id,
            st:count()), 0)
        end
        if rec.target ~= labels[n] then
          error(('robustness: --store=%s explains class %d of test image %d, the attack its label %d'):format(p.store,
            rec.target, id, labels[n]), 0)
        end
      end
      -- the default list, or 'all': the store's methods
      local default = { 'gradient', 'integrated_gradients', 'smoothgrad', 'sparsified_smoothgrad', 'moreaugrad',
        'sparse_moreaugrad' }
      if table.concat(p.methods, ',') == table.concat(default, ',') or (#p.methods == 1 and p.methods[1] == 'all') then
        p.methods = sp.methods
      end
      local have = {}
      for _, k in ipairs(sp.methods) do have[k] = true end
      for _, k in ipairs(p.methods) do
        if k ~= 'all' and not have[k] then
          error(('robustness: --store=%s has no maps of %s (it has %s)'):format(p.store, k, table.concat(sp.methods, ', ')), 0)
        end
      end
      p.seed = sp.seed
      rep:param_shown('seed', ('%d (the store\'s)'):format(sp.seed))
    end
    local seeds = {}
    for i = 0, p.seeds - 1 do seeds[#seeds + 1] = p.seed + i end
    -- results[method][eps][seed index] = {distance = {..}, topk = {..}, ssim = {..}}, one value per image
    local results, keys, titles = {}, {}, {}
    local maps_rows, row_titles = {}, {}
    local t0, done = ex.now(), 0
    local total
    for si, seed in ipairs(seeds) do
      local list = ex.methods { seed = seed, only = p.methods, samples = p.samples,
        ssg_samples = 2 * p.samples, ig_steps = p.ig_steps,
        moreau = { T = p.T, m = p.m, K = math.max(1, math.floor(p.T / 2)) }, overrides = p }
      total = total or #seeds * #list * #p.eps -- the methods that run ('all' stands for several)
      for _, m in ipairs(list) do
        local method, clean
        if st then
          -- the store's method, as it made the maps (its options as recorded)
          method = moreau.methods.create(m.method, st:options(m.key))
          clean = st:maps(m.key, idx)
        else
          method = m.make()
          clean = method:explain(net, x, labels)
        end
        if si == 1 then
          keys[#keys + 1], titles[m.key] = m.key, m.title
          results[m.key] = { options = method.opts }
        end
        for ei, eps in ipairs(p.eps) do
          ex.progress(('robustness: seed %d, %s eps %g'):format(seed, m.key, eps), done, total, t0)
          local atk = attacks.topk { eps = eps, iters = p.iters, lo = lo, hi = hi }
          local xa, info = atk:run(net, method, x, labels)
          -- the attacked map, with fresh noise for stochastic methods
          local fresh = method
          if attacks.is_stochastic(method) then
            local o = {}
            for k, v in pairs(method.opts) do o[k] = v end
            o.seed = method.opts.seed + 1000003
            fresh = moreau.methods.create(method.name, o)
          end
          local attacked = fresh:explain(net, xa, labels)
          local kept = 0
          for n = 1, #labels do if info[n] and info[n].label_kept ~= false then kept = kept + 1 end end
          results[m.key][ei] = results[m.key][ei] or { eps = eps, attack = atk.opts }
          results[m.key][ei][si] = {
            seed = seed, labels_kept = kept,
            distance = metrics.normalized_distance(clean, attacked),
            topk = metrics.topk_intersection(clean, attacked),
            ssim = metrics.ssim(clean, attacked),
          }
          if si == 1 and ei == #p.eps then
            local n = 1
            maps_rows[#maps_rows + 1] = {
              viz.upscale(viz.image(x, { item = n, mean = norm.mean, std = norm.std }), p.scale),
              viz.upscale(viz.heatmap(clean, { item = n }), p.scale),
              viz.upscale(viz.image(xa, { item = n, mean = norm.mean, std = norm.std }), p.scale),
              viz.upscale(viz.heatmap(attacked, { item = n }), p.scale),
            }
            row_titles[#row_titles + 1] = m.title
          end
          done = done + 1
        end
      end
    end
    ex.progress('robustness', total, total, t0)
    rep:image('maps.png', viz.grid { rows = maps_rows, row_titles = row_titles,
      col_titles = { 'Input', 'Map', ('Attacked (eps %g)'):format(p.eps[#p.eps]), 'Attacked map' },
      title = ('Top-k attack on test image %d'):format(idx[1]) }, 'Maps before and after the attack, largest eps')
    -- Per (method, eps): each seed's mean and standard deviation over the
    -- images; the table gives the mean of the seeds' means, the mean of their
    -- standard deviations (the spread over images), and the spread over seeds
    -- (largest seed mean minus smallest; 0 for deterministic methods).
    local summary = {}
    for _, metric in ipairs(metric_names) do
      local header = { 'method' }
      for _, what in ipairs { 'mean', 'sd', 'seeds' } do
        for _, eps in ipairs(p.eps) do header[#header + 1] = ('%s %g'):format(what, eps) end
      end
      local rows, series = {}, {}
      for _, key in ipairs(keys) do
        local means, sds, spreads = {}, {}, {}
        local s = { name = titles[key], x = {}, y = {}, err = {} }
        for ei, eps in ipairs(p.eps) do
          local seed_means, seed_sds = {}, {}
          for si = 1, #seeds do
            seed_means[si], seed_sds[si] = ex.mean_std(results[key][ei][si][metric.key])
          end
          local mean = ex.mean_std(seed_means)
          local sd = ex.mean_std(seed_sds)
          local lo_m, hi_m = math.huge, -math.huge
          for _, v in ipairs(seed_means) do lo_m, hi_m = math.min(lo_m, v), math.max(hi_m, v) end
          means[ei], sds[ei], spreads[ei] = mean, sd, hi_m - lo_m
          s.x[ei], s.y[ei], s.err[ei] = eps, mean, sd
        end
        local row = { key }
        for _, list in ipairs { means, sds, spreads } do
          for _, v in ipairs(list) do row[#row + 1] = v end
        end
        rows[#rows + 1], series[#series + 1] = row, s
      end
      summary[metric.key] = rows
      rep:table(metric.key .. '.csv', header, rows,
        ('%s: over %d images and %d seed(s): the mean, the standard deviation over images, and the spread ' ..
          'of the per-seed means'):format(metric.title, #idx, #seeds))
      local logx = true
      for _, eps in ipairs(p.eps) do logx = logx and eps > 0 end
      rep:image(metric.key .. '.png', viz.line_plot { series = series, logx = logx, title = metric.title,
        xlabel = 'eps (L2 radius)', ylabel = metric.key }, metric.title .. ' versus eps')
    end
    rep.results.images = idx
    rep.results.seeds = seeds
    rep.results.box = { lo, hi }
    rep.results.per_method = results
    rep.results.summary = summary
    if st then
      rep.results.store = { path = p.store, params = st:params(), info = st:info() }
      st:close()
    end
  end,
}
