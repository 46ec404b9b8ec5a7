-- The shipped model and the paper's recipes: the model's accuracy matches its
-- card, and every recipe runs end to end (with small settings) into a results
-- folder holding what it declares it writes.
local lfs = require 'lfs'
local cjson = require 'cjson'
local moreau = require 'moreau'
local recipe = require 'moreau.recipe'
local core = require 'moreau.core'

local tmp = require('helpers.cli').tmpdir()

describe('the shipped model', function()
  it('loads by name and matches its card on the first 1000 test images', function()
    local net, card = moreau.models.pretrained 'resnet_fmnist'
    assert.are.equal('resnet_fmnist', card.model.architecture)
    local test = moreau.data.fashion_mnist { split = 'test' }
    local sub = moreau.data.subset(test, 1, 1000)
    local norm = card.data.normalization
    sub.images = moreau.data.normalize(sub.images, norm.mean, norm.std)
    local acc = moreau.train.evaluate(net, sub, { batch_size = 250 })
    assert.is_number(card.results.first_1000_accuracy, 'the card records the first-1000 accuracy')
    assert.is_true(math.abs(acc - card.results.first_1000_accuracy) < 1e-9,
      ('accuracy %.4f, card %.4f'):format(acc, card.results.first_1000_accuracy))
    assert.is_true(card.results.test_accuracy >= 0.91, 'the card reports the >= 91% target')
  end)

  it('names the missing model when asked for one that is not shipped', function()
    assert.has_error(function() moreau.models.pretrained 'resnet_imagenet' end)
  end)
end)

--- Runs a recipe with parameters into a fresh folder; returns the folder and results.json.
local function run(name, args)
  local r = recipe.load(core.root .. '/recipes/' .. name .. '.lua')
  local p = recipe.params(r, args)
  local dir = tmp .. '/' .. name
  recipe.run(r, p, { out = dir })
  local f = assert(io.open(dir .. '/results.json'))
  local res = cjson.decode(f:read('*a'))
  f:close()
  for _, file in ipairs(r.writes or {}) do
    if not file:find('METHOD', 1, true) then
      assert.truthy(lfs.attributes(dir .. '/' .. file), name .. ' writes ' .. file)
    end
  end
  assert.truthy(lfs.attributes(dir .. '/index.html'))
  return dir, res
end

describe('the recipes', function()
  it('explain: the main job', function()
    local _, res = run('explain', { index = '3', fast = 'true', methods = 'gradient,sparse_moreaugrad' })
    assert.are.equal(2, #(function() local t = {} for k in pairs(res.methods) do t[#t + 1] = k end return t end)())
    assert.is_number(res.prediction.label)
    assert.are.equal(0, res.params.seed)
  end)

  it('compare_methods', function()
    local _, res = run('compare_methods', { images = '2', preset = 'fast', methods = 'gradient,smoothgrad,sparse_moreaugrad' })
    assert.are.equal(2, #res.images)
  end)

  it('misclassified', function()
    local _, res = run('misclassified', { images = '1', preset = 'fast', methods = 'gradient,moreaugrad' })
    assert.are_not.equal(res.labels[1], res.predictions[1])
  end)

  it('rho_eta_sweep', function()
    run('rho_eta_sweep', { images = '1', rhos = '0,1', etas = '0,0.01', T = '10', m = '2' })
  end)

  it('discrepancy', function()
    local _, res = run('discrepancy', { images = '2', rhos = '0.1,1', sigmas = '0.1,0.3', T = '10', m = '2', samples = '4' })
    assert.are.equal(2, #res.curves)
  end)

  it('train_fmnist writes its weights into the results folder, never over the shipped model', function()
    local lfs = require 'lfs'
    local shipped = core.root .. '/models/resnet_fmnist.safetensors'
    local before = lfs.attributes(shipped, 'modification')
    local dir, res = run('train_fmnist', { epochs = '1', subset = '128', test_subset = '64', batch_size = '64' })
    assert.are.equal(dir .. '/resnet_fmnist.safetensors', res.weights)
    assert.truthy(lfs.attributes(res.weights), 'weights written')
    assert.are.equal(before, lfs.attributes(shipped, 'modification'))
  end)

  it('robustness', function()
    local _, res = run('robustness', { images = '2', eps = '0,3', iters = '2', seeds = '2',
      methods = 'gradient,sparse_moreaugrad', T = '6', m = '2', samples = '4' })
    assert.are.equal(2, #res.summary.distance)
    assert.are.same({ 0, 1 }, res.seeds)
    -- row: method, mean at each eps, sd over images at each eps, spread over seeds at each eps
    local grad_row, smg_row = res.summary.distance[1], res.summary.distance[2]
    assert.are.equal(7, #grad_row)
    assert.are.equal(0, grad_row[2])                    -- eps 0: the gradient's own map again
    assert.are.equal(0, grad_row[6])                    -- deterministic: no spread over seeds
    assert.is_true(smg_row[2] > 0)                      -- eps 0: a fresh noise draw differs
    assert.is_true(smg_row[6] > 0 or smg_row[7] > 0)    -- two seeds, two different means
  end)
end)
