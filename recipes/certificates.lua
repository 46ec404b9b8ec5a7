-- The paper's Corollary 1 (and Corollary 2 for Sparse MoreauGrad) against
-- attacks: ‖MG(x + δ) − MG(x)‖ <= ‖δ‖ / min(ρ, 1/λ − ρ) for a λ-weakly-convex
-- score and ρ < 1/λ. λ is estimated per image by certify.moreaugrad_bound
-- (Lanczos on exact HVPs) at the points the two envelopes' solutions visit:
-- x, x + δ*(x), x' and x' + δ*(x'), x' the attacked image. The change is
-- measured under the top-k attack (Ghorbani et al. 2019) with the authors'
-- surrogate gradient and with the adaptive one (attacks.topk{adaptive = true}),
-- and a violation is a change above the bound where the corollary applies.
--
--   moreau run recipes/certificates.lua --images=6 --rhos=0.001,0.005,0.02,1 --eps=0.3,1
--
-- The estimator. With m = 0 (the default here) the map is deterministic: the
-- solver's fixed point of the unsmoothed score, run T iterations with
-- gamma = rho/2 (the step of docs/methods.md §7.2 needs gamma < 2 rho). With
-- m > 0, MG(x') is computed with the clean image's noise keys and seed, the
-- same draws as MG(x) (common random numbers), λ is that of the smoothed score
-- from `samples` fixed draws, and the table reports the estimator's own noise
-- floor, ‖MG_seed(x) − MG_seed+1(x)‖, next to the change.
--
-- eps is in the network's input units (Fashion-MNIST normalized by mean
-- 0.286, std 0.353); attacked images stay in the box of valid pixels.
local moreau = require 'moreau'
local ex = require 'moreau.experiment'
local attacks, methods, certify = moreau.attacks, moreau.methods, moreau.certify
local T = moreau.tensor

local function item_norm(a, b, n)
  local d = a:narrow(n) - b:narrow(n)
  return d:norm()
end

return {
  name = 'certificates',
  description = "Corollary 1: MoreauGrad's certified bound against the change measured under the top-k attacks",
  params = {
    images = { type = 'int', default = 6, domain = 'int >= 1', help = 'correctly classified test images' },
    start = { type = 'int', default = 0, domain = 'int >= 0', help = 'index of the first test image' },
    model = { type = 'string', default = 'resnet_fmnist', domain = 'string', help = 'shipped model' },
    rhos = { type = 'list', default = { 0.001, 0.005, 0.02, 1 }, domain = 'num > 0', help = 'rho values' },
    eps = { type = 'list', default = { 0.3, 1 }, domain = 'num > 0', help = 'L2 radii of the attacks (input units)' },
    eta = { type = 'number', default = 0.1, domain = 'num > 0', help = 'eta of Sparse MoreauGrad' },
    T = { type = 'int', default = 50, domain = 'int >= 1', help = 'solver iterations (gamma = rho/2)' },
    m = { type = 'int', default = 0, domain = 'int >= 0', help = 'noise samples per solver iteration (0: deterministic)' },
    samples = { type = 'int', default = 8, domain = 'int >= 1', help = 'noise draws of the Hessian estimate when m > 0' },
    steps = { type = 'int', default = 30, domain = 'int >= 1', help = 'Lanczos steps' },
    iters = { type = 'int', default = 10, domain = 'int >= 0', help = 'attack iterations' },
    seed = { type = 'int', default = 0, domain = 'seed', help = 'seed of every noise draw' },
  },
  writes = { 'certificates.csv', 'results.json' },
  run = function(p, rep)
    local net, card, test = ex.model(p.model)
    local norm = card.data.normalization
    local lo, hi = (0 - norm.mean[1]) / norm.std[1], (1 - norm.mean[1]) / norm.std[1]
    local x, labels, idx = ex.images(net, card, test, { n = p.images, start = p.start, which = 'correct' })
    local N = #idx
    local ids = methods.item_keys(x)
    local rows, records = {}, {}
    local violations, applicable, total = 0, 0, 0
    local t0, done, work = ex.now(), 0, 2 * #p.rhos * #p.eps * 2
    for _, variant in ipairs { { key = 'moreaugrad', eta = 0 }, { key = 'sparse_moreaugrad', eta = p.eta } } do
      for _, rho in ipairs(p.rhos) do
        local opts = { rho = rho, gamma = rho / 2, T = p.T, m = p.m, K = math.min(p.T, 10), seed = p.seed,
          eta = variant.eta, reg = variant.eta > 0 and 'l1' or 'none' }
        local method = methods.moreaugrad(opts)
        local E0 = method:explain(net, x, labels, ids)
        local floor = {}
        if p.m > 0 then
          local o2 = {}
          for k, v in pairs(opts) do o2[k] = v end
          o2.seed = p.seed + 1
          local E1 = methods.moreaugrad(o2):explain(net, x, labels, ids)
          for n = 1, N do floor[n] = item_norm(E1, E0, n) end
        end
        local star0 = x + E0 * (-rho) -- x + δ*(x): δ̄ = −ρ·MG
        for _, eps in ipairs(p.eps) do
          for _, adaptive in ipairs { false, true } do
            ex.progress(('certificates: %s rho %g eps %g%s'):format(variant.key, rho, eps,
              adaptive and ' adaptive' or ''), done, work, t0)
            local atk = attacks.topk { eps = eps, iters = p.iters, lo = lo, hi = hi, adaptive = adaptive,
              fresh_noise = false }
            local xa = atk:run(net, method, x, labels)
            local Ea = method:explain(net, xa, labels, ids)
            local stara = xa + Ea * (-rho)
            local b = certify.moreaugrad_bound(net, x, labels, { rho = rho, sigma = method.opts.sigma,
              samples = p.m > 0 and p.samples or 0, seed = p.seed, steps = p.steps,
              points = { star0, xa, stara } })
            for n = 1, N do
              local delta = item_norm(xa, x, n)
              local change = item_norm(Ea, E0, n)
              local c = b[n]
              local bound = c.applies and delta / math.min(rho, (c.lambda > 0 and 1 / c.lambda or math.huge) - rho)
                or math.huge
              local violated = c.applies and change > bound
              total = total + 1
              if c.applies then applicable = applicable + 1 end
              if violated then violations = violations + 1 end
              rows[#rows + 1] = { variant.key, rho, eps, adaptive and 'adaptive' or 'surrogate', idx[n], delta,
                c.lambda, c.applies and 'yes' or 'no', change, bound, c.applies and change / bound or 0 / 0,
                floor[n] or 0, violated and 'VIOLATED' or '' }
              records[#records + 1] = { method = variant.key, rho = rho, eps = eps, adaptive = adaptive,
                image = idx[n], delta_norm = delta, lambda = c.lambda, applies = c.applies, change = change,
                bound = c.applies and bound or nil, ratio = c.applies and change / bound or nil,
                noise_floor = floor[n], violated = violated }
            end
            done = done + 1
          end
        end
      end
    end
    ex.progress('certificates', work, work, t0)
    rep:note(('%d cases (image, method, rho, eps, attack); the corollary applies (rho < 1/lambda) to %d; ' ..
      'violations: %d.'):format(total, applicable, violations))
    rep:table('certificates.csv', { 'method', 'rho', 'eps', 'attack', 'image', '|delta|', 'lambda', 'applies',
      '|MG(x+delta) - MG(x)|', 'bound', 'change/bound', 'noise floor', 'violated' }, rows,
      'Corollary 1 per image: the bound |delta| / min(rho, 1/lambda - rho) next to the measured change')
    rep.results.images = idx
    rep.results.cases = records
    rep.results.total, rep.results.applicable, rep.results.violations = total, applicable, violations
  end,
}
