-- Does MoreauGrad's robustness survive an attack that knows the method? The
-- top-k attack (Ghorbani et al. 2019) with the authors' surrogate gradient
-- (attacks.topk) against the same attack differentiating through the Moreau
-- solver's fixed point (attacks.topk{adaptive = true}: the implicit function
-- theorem, attacks.moreaugrad_vjp), on the shipped model, for the simple
-- gradient, MoreauGrad and Sparse MoreauGrad. The score is the top-k
-- intersection (metrics.topk_intersection, the top 40% of the clean map)
-- between the clean map and the map of the attacked image, recomputed with
-- fresh noise for stochastic maps, as recipes/robustness.lua does; a higher
-- intersection is more robust.
--
--   moreau run recipes/adaptive_attack.lua --images=6 --eps=1 --seeds=3 --rhos=1,0.05 --T=30 --m=2
--
-- Each seed s runs every method with noise seed s; the table gives, per
-- method and attack, the mean over the seeds of the per-seed mean over the
-- images, the mean per-seed standard deviation over the images, and the
-- spread over the seeds (largest seed mean minus smallest). The gradient is
-- deterministic and its VJP exact: its adaptive row is its surrogate row.
--
-- At the authors' rho = 1 the shipped model's smoothed score is not
-- (1/rho)-weakly convex (lambda about 3 to 12, certify.moreaugrad_bound), so
-- the implicit systems are indefinite and MINRES solves them; rho = 0.05
-- is a setting where the theory's assumption holds for most images.
--
-- eps is in the network's input units (Fashion-MNIST normalized by mean
-- 0.286, std 0.353); attacked images stay in the box of valid pixels.
local moreau = require 'moreau'
local ex = require 'moreau.experiment'
local attacks, metrics = moreau.attacks, moreau.metrics

return {
  name = 'adaptive_attack',
  description = "The top-k attack with the authors' surrogate against the adaptive (implicit-function) attack",
  params = {
    images = { type = 'int', default = 6, domain = 'int >= 1', help = 'correctly classified test images' },
    start = { type = 'int', default = 0, domain = 'int >= 0', help = 'index of the first test image' },
    model = { type = 'string', default = 'resnet_fmnist', domain = 'string', help = 'shipped model' },
    eps = { type = 'list', default = { 1 }, domain = 'num > 0', help = 'L2 radii of the attack (input units)' },
    rhos = { type = 'list', default = { 1, 0.05 }, domain = 'num > 0',
      help = "MoreauGrad's rho (1: the authors'; a small rho keeps rho < 1/lambda, where the envelope's problem is convex)" },
    iters = { type = 'int', default = 10, domain = 'int >= 1', help = 'attack iterations' },
    T = { type = 'int', default = 30, domain = 'int >= 1', help = 'MoreauGrad iterations inside the attack' },
    m = { type = 'int', default = 2, domain = 'int >= 0', help = 'MoreauGrad noise samples per iteration' },
    cg_iters = { type = 'int', default = 30, domain = 'int >= 1', help = 'CG (or MINRES) iterations of the adaptive attack' },
    cg_tol = { type = 'number', default = 1e-3, domain = 'num > 0', help = 'relative residual at which CG (MINRES) stops' },
    seed = { type = 'int', default = 0, domain = 'seed', help = 'the first seed' },
    seeds = { type = 'int', default = 3, domain = 'int >= 1', help = 'runs with seeds seed, seed+1, ...' },
  },
  writes = { 'adaptive.csv', 'results.json' },
  run = function(p, rep)
    local net, card, test = ex.model(p.model)
    local norm = card.data.normalization
    local lo, hi = (0 - norm.mean[1]) / norm.std[1], (1 - norm.mean[1]) / norm.std[1]
    local x, labels, idx = ex.images(net, card, test, { n = p.images, start = p.start, which = 'correct' })
    -- the rows: the gradient once, MoreauGrad and Sparse MoreauGrad per rho
    local entries = { { key = 'gradient', row = 'gradient', rho = nil } }
    for _, rho in ipairs(p.rhos) do
      entries[#entries + 1] = { key = 'moreaugrad', row = ('moreaugrad rho %g'):format(rho), rho = rho }
      entries[#entries + 1] = { key = 'sparse_moreaugrad', row = ('sparse_moreaugrad rho %g'):format(rho), rho = rho }
    end
    -- scores[row][attack][eps index][seed index] = per-image top-k intersections;
    -- objective[...] the same for J(x')/J(x), the attack's own objective under the step's noise
    local scores, objective, solver_stats, floors = {}, {}, {}, {}
    local t0, done, total = ex.now(), 0, p.seeds * #p.eps * (1 + 4 * #p.rhos)
    for si = 1, p.seeds do
      local seed = p.seed + si - 1
      for _, ent in ipairs(entries) do
        local mo = { T = p.T, m = p.m, K = math.max(1, math.floor(p.T / 2)) }
        if ent.rho then mo.rho, mo.gamma = ent.rho, math.min(0.1, ent.rho / 2) end
        local m = ex.methods { seed = seed, only = { ent.key }, moreau = mo }[1]
        local method = m.make()
        local clean = method:explain(net, x, labels)
        local fresh = method
        if attacks.is_stochastic(method) then
          local o = {}
          for k, v in pairs(method.opts) do o[k] = v end
          o.seed = method.opts.seed + 1000003
          fresh = moreau.methods.create(method.name, o)
        end
        -- the noise floor: the clean map against a fresh draw at the clean x
        floors[ent.row] = floors[ent.row] or {}
        floors[ent.row][si] = fresh == method and 1 or ex.mean_std(metrics.topk_intersection(clean,
          fresh:explain(net, x, labels)))
        scores[ent.row] = scores[ent.row] or { surrogate = {}, adaptive = {} }
        objective[ent.row] = objective[ent.row] or { surrogate = {}, adaptive = {} }
        for ei, eps in ipairs(p.eps) do
          for _, kind in ipairs { 'surrogate', 'adaptive' } do
            local list2, obj2 = scores[ent.row][kind], objective[ent.row][kind]
            list2[ei], obj2[ei] = list2[ei] or {}, obj2[ei] or {}
            if kind == 'adaptive' and ent.key == 'gradient' then
              list2[ei][si] = scores[ent.row].surrogate[ei][si]
              obj2[ei][si] = objective[ent.row].surrogate[ei][si]
            else
              ex.progress(('adaptive_attack: seed %d, %s, %s, eps %g'):format(seed, ent.row, kind, eps), done,
                total, t0)
              local atk = attacks.topk { eps = eps, iters = p.iters, lo = lo, hi = hi,
                adaptive = kind == 'adaptive', cg_iters = p.cg_iters, cg_tol = p.cg_tol }
              local xa, info = atk:run(net, method, x, labels)
              list2[ei][si] = metrics.topk_intersection(clean, fresh:explain(net, xa, labels))
              local ratios = {}
              for n = 1, #idx do ratios[n] = info[n].J / info[n].J_clean end
              obj2[ei][si] = ratios
              if kind == 'adaptive' then
                -- how the implicit systems were solved: CG, or MINRES when indefinite
                local cg, minres, conv, n = 0, 0, 0, 0
                for _, step in pairs(info.cg or {}) do
                  for _, c in ipairs(step) do
                    n = n + 1
                    if c.method == 'minres' then minres = minres + 1 else cg = cg + 1 end
                    if c.converged then conv = conv + 1 end
                  end
                end
                solver_stats[#solver_stats + 1] = { method = ent.row, seed = seed, eps = eps, systems = n,
                  cg = cg, minres = minres, converged = conv }
              end
              done = done + 1
            end
          end
        end
      end
    end
    ex.progress('adaptive_attack', total, total, t0)
    local rows, summary = {}, {}
    for _, ent in ipairs(entries) do
      for _, kind in ipairs { 'surrogate', 'adaptive' } do
        for ei, eps in ipairs(p.eps) do
          local means, sds, jm = {}, {}, {}
          for si = 1, p.seeds do
            means[si], sds[si] = ex.mean_std(scores[ent.row][kind][ei][si])
            jm[si] = ex.mean_std(objective[ent.row][kind][ei][si])
          end
          local mean, sd, jmean = ex.mean_std(means), ex.mean_std(sds), ex.mean_std(jm)
          local lo_m, hi_m = math.huge, -math.huge
          for _, v in ipairs(means) do lo_m, hi_m = math.min(lo_m, v), math.max(hi_m, v) end
          local floor = ex.mean_std(floors[ent.row])
          rows[#rows + 1] = { ent.row, kind, eps, mean, sd, hi_m - lo_m, jmean, floor }
          summary[#summary + 1] = { method = ent.row, attack = kind, eps = eps, mean = mean, sd_images = sd,
            spread_seeds = hi_m - lo_m, seed_means = means, objective_ratio = jmean, noise_floor = floor }
        end
      end
    end
    rep:table('adaptive.csv', { 'method', 'attack', 'eps', 'top-k intersection (mean)', 'sd over images',
      'spread over seeds', 'J(x\')/J(x)', 'noise floor' }, rows,
      'Top-k intersection of the clean and the attacked map (higher: ' ..
      'more robust); the attack\'s own objective at x\' relative to x (lower: the attack did better); the ' ..
      'noise floor: the clean map against a fresh draw at the clean x (1 for the gradient)')
    local srows = {}
    for _, s in ipairs(solver_stats) do
      srows[#srows + 1] = { s.method, s.seed, s.eps, s.systems, s.cg, s.minres, s.converged }
    end
    rep:html_table { header = { 'method', 'seed', 'eps', 'systems', 'CG', 'MINRES (indefinite)', 'converged' },
      rows = srows, caption = 'The implicit systems of the adaptive attack, per attack step and image' }
    rep.results.images = idx
    rep.results.summary = summary
    rep.results.solver = solver_stats
  end,
}
