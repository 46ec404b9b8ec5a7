-- The adaptive team size (engine/src/backend/cpu/threads.c): the engine's
-- loops use fewer threads while other processes keep cores busy, and results
-- never depend on the team.
local moreau = require 'moreau'
local core = require 'moreau.core'
local T = require 'moreau.tensor'
local oracle = require 'moreau.oracle'
local nets = require 'helpers.nets'
local cli = require 'helpers.cli'

local tmp = cli.tmpdir()

-- Starts n busy single-thread processes (shell loops, each ended after 60 s
-- whatever happens). RETURN: a function that stops them.
local function busy(n)
  local pids = tmp .. '/busy.pids'
  os.remove(pids)
  for _ = 1, n do
    assert(os.execute(("(timeout 60 sh -c 'while :; do :; done' >/dev/null 2>&1 & echo $! >> %q)"):format(pids)) == 0)
  end
  return function()
    for pid in io.lines(pids) do os.execute('kill ' .. pid .. ' 2>/dev/null') end
  end
end

local function bits_equal(a, b)
  return a:numel() == b:numel() and a:max_abs_diff(b) == 0
end

describe('the adaptive team size', function()
  local limit_before = moreau.get_num_threads()
  after_each(function()
    moreau.set_num_threads(0)
    moreau.set_adaptive_threads(true)
  end)

  it('is on by default and can be turned off; off, the team is the limit', function()
    assert.is_true(moreau.get_adaptive_threads())
    local net = nets.softplus_net { seed = 1 }
    local x = T.randn({ 4, 1, 6, 6 }, { seed = 1 })
    moreau.set_num_threads(3)
    moreau.set_adaptive_threads(false)
    assert.is_false(moreau.get_adaptive_threads())
    oracle.grad(net, x, { 0, 1, 2, 0 })
    assert.are.equal(3, moreau.get_threads_in_use())
    assert.are.equal(3, moreau.get_num_threads())
    moreau.set_adaptive_threads(true)
    oracle.grad(net, x, { 0, 1, 2, 0 })
    local t = moreau.get_threads_in_use()
    assert.is_true(t >= 1 and t <= 3, 'team ' .. t)
  end)

  -- get_adaptive_threads() in a fresh process with MOREAU_ADAPTIVE_THREADS=value
  local function adaptive_with(value)
    local cmd = ("env MOREAU_ADAPTIVE_THREADS=%q MOREAU_LIB=%q LUA_PATH='bindings/?.lua;bindings/?/init.lua;;' " ..
      "luajit -e \"io.write(tostring(require('moreau').get_adaptive_threads()))\" 2>&1"):format(value, core.lib_path)
    local p = assert(io.popen(('cd %q && %s'):format(core.root, cmd)))
    local out = p:read('*a')
    p:close()
    return out
  end

  it('MOREAU_ADAPTIVE_THREADS=0 (off, false, no) turns it off for the process; another value is refused', function()
    for _, v in ipairs { '0', 'off', 'FALSE', 'no' } do assert.are.equal('false', adaptive_with(v), v) end
    for _, v in ipairs { '1', 'on', 'True', 'yes', '' } do assert.are.equal('true', adaptive_with(v), v) end
    for _, v in ipairs { 'garbage', '2', 'of' } do
      local out = adaptive_with(v)
      assert.truthy(out:find(("moreau: MOREAU_ADAPTIVE_THREADS must be 0, off, false or no (a fixed team) or 1, on, " ..
        "true or yes (the default), got '%s'"):format(v), 1, true), out)
    end
  end)

  it('refuses a thread count or a switch it cannot use, and keeps the old one', function()
    moreau.set_num_threads(2)
    for _, bad in ipairs { -5, 1e9, 2.5, 0 / 0, '2', true } do
      local ok, err = pcall(moreau.set_num_threads, bad)
      assert.is_false(ok, tostring(bad))
      assert.truthy(tostring(err):find('moreau.set_num_threads: n must be an integer in 0..4096 (0 or nil: the default), got',
        1, true), tostring(err))
      assert.are.equal(2, moreau.get_num_threads())
    end
    assert.are.equal(core.C.MR_EINVAL, core.C.mr_set_num_threads(-1))
    assert.are.equal('threads: the count must be 0 (the default) or in 1..4096, got -1',
      require('ffi').string(core.C.mr_last_error()))
    assert.are.equal(core.C.MR_EINVAL, core.C.mr_set_num_threads(4097))
    assert.are.equal(2, moreau.get_num_threads())
    for _, bad in ipairs { 0, 'false', 1 } do
      local ok, err = pcall(moreau.set_adaptive_threads, bad)
      assert.is_false(ok)
      assert.truthy(tostring(err):find('moreau.set_adaptive_threads: on must be true or false, got', 1, true), err)
    end
    assert.is_true(moreau.get_adaptive_threads())
  end)

  it('shrinks while other processes keep every core busy, and the results do not change', function()
    local cores = limit_before
    if cores < 2 then
      print('\nSKIPPED: one core only: there is no team to shrink')
      return
    end
    local seed = 5
    local net = nets.softplus_net { seed = seed }
    local x = T.randn({ 8, 1, 6, 6 }, { seed = seed })
    local labels = { 0, 1, 2, 0, 1, 2, 0, 1 }
    moreau.set_adaptive_threads(false)
    local _, ref = oracle.grad(net, x, labels)
    moreau.set_adaptive_threads(true)
    moreau.set_num_threads(cores)
    -- `cores` busy processes beside a team of `cores` threads: the others hold
    -- at least half of the machine, so the team must shrink within a few looks
    -- (one every 0.2 s)
    local stop = busy(cores)
    local smallest = cores
    local ok, err = pcall(function()
      local t0 = core.C.mr_wall_seconds()
      while core.C.mr_wall_seconds() - t0 < 5 and smallest == cores do
        local _, g = oracle.grad(net, x, labels)
        assert(bits_equal(g, ref), 'the gradient changed with the team size (seed ' .. seed .. ')')
        smallest = math.min(smallest, moreau.get_threads_in_use())
      end
    end)
    stop()
    assert(ok, err)
    assert.is_true(smallest < cores, ('the team stayed at %d threads with %d busy processes'):format(cores, cores))
  end)
end)

describe('the subnormal census', function()
  local ffi = require 'ffi'
  local gc = require 'helpers.gradcheck'
  local function count(name, pass)
    local names, i = core.C.mr_op_names(), 0
    while ffi.string(names[i]) ~= name do i = i + 1 end
    local s, v = ffi.new('int64_t[1]'), ffi.new('int64_t[1]')
    core.check(core.C.mr_subnormal_census(i, pass, s, v))
    return tonumber(s[0]), tonumber(v[0])
  end
  after_each(function() core.C.mr_set_subnormal_census(0) end)

  it('counts the subnormal values each pass writes, only while it is on', function()
    -- y = x·x with x = 1e-20: y = 1e-40 < 2^-126, subnormal; with gy = 1e-19
    -- each input slot of the vjp gets gy·x = 1e-39, subnormal too; 1 is not
    local net = gc.net { input = { 4 }, build = function(b, x) return b:mul(x, x) end }
    local x = T.from({ 1e-20, 1e-20, 1e-20, 1 }, { 1, 4 })
    net:forward(x)
    assert.are.same({ 0, 0 }, { count('mul', core.C.MR_PASS_FORWARD) })
    core.C.mr_set_subnormal_census(1)
    net:forward(x)
    net:backward(T.from({ 1e-19, 1e-19, 1e-19, 1e-19 }, { 1, 4 }))
    assert.are.same({ 3, 4 }, { count('mul', core.C.MR_PASS_FORWARD) })
    assert.are.same({ 6, 8 }, { count('mul', core.C.MR_PASS_VJP) })
    core.C.mr_set_subnormal_census(0)
    net:forward(x)
    assert.are.same({ 3, 4 }, { count('mul', core.C.MR_PASS_FORWARD) }, 'off: nothing more is counted')
    core.C.mr_set_subnormal_census(1)
    assert.are.same({ 0, 0 }, { count('mul', core.C.MR_PASS_FORWARD) }, 'on again: the counts start from 0')
  end)

  it('names an op or pass out of range', function()
    local s, v = ffi.new('int64_t[1]'), ffi.new('int64_t[1]')
    assert.are.equal(core.C.MR_EINVAL, core.C.mr_subnormal_census(-1, 0, s, v))
    assert.are.equal('subnormal census: no op -1, pass 0', ffi.string(core.C.mr_last_error()))
    assert.are.equal(core.C.MR_EINVAL, core.C.mr_subnormal_census(0, 4, s, v))
  end)
end)
