-- The REPL's Ctrl-C and history: the engine's interrupt request (in this
-- process), then `scripts/moreau repl` itself driven through a pseudo-terminal
-- (util-linux `script`), typing lines and Ctrl-C as a user would.
local ffi = require 'ffi'
local lfs = require 'lfs'
local core = require 'moreau.core'
local T = require 'moreau.tensor'
local prox = require 'moreau.prox'
local oracle = require 'moreau.oracle'
local train = require 'moreau.train'
local repl = require 'moreau.repl'
local nets = require 'helpers.nets'
local C = core.C

local root = core.root
local tmp = require('helpers.cli').tmpdir()

-- The message of an error, without the "file:line: " prefix.
local function message(f)
  local ok, err = pcall(f)
  assert.is_false(ok, 'expected an error')
  return (tostring(err):gsub('^[^:]*:%d+: ', ''))
end

describe('the interrupt request', function()
  after_each(function() C.mr_interrupt_clear() end)

  it('is set, read and cleared; the check fails with MR_EINTR "interrupted" while it is pending', function()
    C.mr_interrupt_clear()
    assert.are.equal(0, C.mr_interrupted())
    assert.are.equal(0, C.mr_interrupt_check())
    C.mr_interrupt_request()
    assert.are.equal(1, C.mr_interrupted())
    assert.are.equal(C.MR_EINTR, C.mr_interrupt_check())
    assert.are.equal('interrupted', ffi.string(C.mr_last_error()))
    assert.are.equal(1, C.mr_interrupted(), 'the request stays pending until cleared')
    C.mr_interrupt_clear()
    assert.are.equal(0, C.mr_interrupted())
  end)

  it('stops the Moreau solver between iterations; cleared, it resumes to the same map bit for bit', function()
    local seed = 7
    local net = nets.softplus_net { seed = seed }
    local x = T.randn({ 2, 1, 6, 6 }, { seed = seed })
    local opts = { T = 12, K = 4, m = 3, reg = 'l1', seed = seed }
    local whole = prox.solver(net, x, { 0, 2 }, opts):run():result()

    -- in C (run without a callback): nothing runs while the request is pending
    local s = prox.solver(net, x, { 0, 2 }, opts)
    C.mr_interrupt_request()
    assert.are.equal('interrupted', message(function() s:run() end))
    assert.are.equal(0, s:stats(1).iter)
    -- from Lua, requested after iteration 5: iteration 6 does not start
    C.mr_interrupt_clear()
    assert.are.equal('interrupted', message(function()
      s:run { callback = function(_, t) if t == 5 then C.mr_interrupt_request() end end }
    end))
    assert.are.equal(5, s:stats(1).iter)
    C.mr_interrupt_clear()
    s:run()
    assert.are.equal(12, s:stats(1).iter)
    assert.are.equal(0, s:result():max_abs_diff(whole), 'seed ' .. seed)
  end)

  it('stops the oracles (every sampling round and method chunk) and the optimizer step, changing nothing', function()
    local net = nets.softplus_net { seed = 3 }
    local x = T.randn({ 1, 1, 6, 6 }, { seed = 3 })
    C.mr_interrupt_request()
    assert.are.equal('interrupted', message(function() oracle.grad(net, x, { 1 }) end))
    assert.are.equal('interrupted', message(function() oracle.hvp(net, x, { 1 }, T.ones { 1, 1, 6, 6 }) end))
    assert.are.equal('interrupted', message(function()
      require('moreau.methods').smoothgrad { samples = 4 }:explain(net, x, { 1 })
    end))
    C.mr_interrupt_clear()
    local opt = train.sgd { lr = 0.1 }:build(net)
    local p = net:params()[1]
    local g = net:grad(p.name)
    g:fill(1)
    local before = p.tensor:clone()
    C.mr_interrupt_request()
    assert.are.equal('interrupted', message(function() opt:step() end))
    assert.are.equal(0, p.tensor:max_abs_diff(before))
    assert.are.equal(0, opt:steps())
    C.mr_interrupt_clear()
    opt:step()
    assert.are.equal(1, opt:steps())
  end)

  it('stops a Lua loop evaluated by the REPL (a debug hook), which keeps the environment', function()
    local env = repl.env()
    assert.is_true((repl.eval('v = 6 * 7', env)))
    C.mr_interrupt_request()
    -- (loops bounded at 5 s, so that a hook that never fires fails the test instead of hanging it)
    local ok, err = repl.eval("local t = os.clock() while os.clock() - t < 5 do end return 'ran out'", env)
    assert.is_false(ok)
    assert.are.equal('interrupted', err)
    ok, err = repl.eval('function spin() local t, i = os.clock(), 0 while os.clock() - t < 5 do i = i + 1 end end; spin()',
      env)
    assert.are.equal('interrupted', err)
    C.mr_interrupt_clear()
    local res
    ok, res = repl.eval('v', env)
    assert.is_true(ok)
    assert.are.equal(42, res[1])
    assert.is_nil(debug.gethook(), 'the hook is removed after the evaluation')
  end)
end)

-- ------------------------------------------------------- the REPL in a pty

ffi.cdef 'int poll(void *fds, unsigned long nfds, int timeout);'
local function sleep_ms(ms) ffi.C.poll(nil, 0, ms) end

local function have(cmd) return os.execute('command -v ' .. cmd .. ' >/dev/null 2>&1') == 0 end

local session_count = 0

-- Starts `scripts/moreau repl` under `script` (a pseudo-terminal), its input
-- a FIFO this process writes, its output a file this process reads. Every
-- wait has a deadline, and `timeout` ends the session after 90 s whatever
-- happens. RETURN: a session {send, expect, close, transcript}.
local function start_repl(history, command)
  session_count = session_count + 1
  local dir = ('%s/pty%d'):format(tmp, session_count)
  lfs.mkdir(dir)
  local fifo, out = dir .. '/in', dir .. '/out'
  assert(os.execute(('mkfifo %q'):format(fifo)) == 0)
  -- `script -c` runs the command through $SHELL -c; with `exec` no shell stays in
  -- the terminal's foreground group (dash, unlike bash, would wait there, take
  -- the Ctrl-C too and end the session with status 130). SHELL is pinned so that
  -- every machine runs the session the same way.
  local cmd = ('cd %q && env SHELL=/bin/sh MOREAU_HISTORY=%q MOREAU_LIB=%q TERM=dumb timeout 90 ' ..
    'script -qfec %q /dev/null < %q > %q 2>&1; echo "[exit $?]" >> %q'):format(root, history, core.lib_path,
    'exec ' .. (command or 'scripts/moreau repl'), fifo, out, out)
  assert(os.execute('( ' .. cmd .. ' ) &') == 0)
  local w = assert(io.open(fifo, 'w'))
  local s = { cursor = 1 }
  function s.transcript()
    local f = io.open(out, 'rb')
    local text = f and f:read('*a') or ''
    if f then f:close() end
    -- readline's bracketed-paste switches and carriage returns are not part of what is read
    return (text:gsub('\27%[%?2004[hl]', ''):gsub('\r', ''))
  end
  function s.send(text)
    w:write(text)
    w:flush()
  end
  -- Waits (at most `seconds`) for `text` after what earlier expects matched.
  function s.expect(text, seconds)
    local deadline = os.time() + (seconds or 20)
    while true do
      local all = s.transcript()
      local a, b = all:find(text, s.cursor, true)
      if a then
        s.cursor = b + 1
        return all:sub(a, b)
      end
      if os.time() > deadline then
        error(('no %q in the REPL output within %d s; the output:\n%s'):format(text, seconds or 20, all), 2)
      end
      sleep_ms(20)
    end
  end
  -- Ctrl-D, then the exit status of the session (nil if it did not end in 20 s).
  function s.close()
    s.send('\4')
    w:close()
    local deadline = os.time() + 20
    repeat
      local code = s.transcript():match('%[exit (%d+)%]')
      if code then return tonumber(code) end
      sleep_ms(20)
    until os.time() > deadline
  end
  return s
end

describe('the REPL fed from a pipe', function()
  it('runs the lines but keeps no history: it neither makes, reads nor appends to the file', function()
    local function run(history)
      local input = tmp .. '/pipe_input'
      local f = assert(io.open(input, 'w'))
      f:write('x = 1 + 1\nx * 21\n')
      f:close()
      local p = io.popen(('cd %q && cat %q | env MOREAU_HISTORY=%q MOREAU_LIB=%q scripts/moreau repl 2>&1; ' ..
        'echo "[exit $?]"'):format(root, input, history, core.lib_path))
      local out = p:read('*a')
      p:close()
      assert.truthy(out:find('[exit 0]', 1, true), out)
      assert.truthy(out:find('\n42\n', 1, true) or out:find(' 42\n', 1, true), out)
      return out
    end
    local fresh = tmp .. '/pipe_history'
    run(fresh)
    assert.is_nil(lfs.attributes(fresh), 'a piped session made a history file')
    -- an existing history (from terminal sessions) stays as it was
    local kept = tmp .. '/pipe_history2'
    local f = assert(io.open(kept, 'w'))
    f:write('old = 1\n')
    f:close()
    run(kept)
    f = assert(io.open(kept, 'r'))
    assert.are.equal('old = 1\n', f:read('*a'))
    f:close()
  end)
end)

describe('the REPL in a terminal', function()
  if not have('script') then
    it('needs util-linux script', function()
      print('\nSKIPPED: REPL terminal tests: util-linux `script` is not installed')
    end)
    return
  end

  it('Ctrl-C at the prompt drops the line and the unfinished chunk; every line is in the history at once', function()
    local hist = tmp .. '/history'
    -- an old history longer than the cap: the session keeps the last HISTORY_LINES
    local f = assert(io.open(hist, 'w'))
    for i = 1, repl.HISTORY_LINES + 10 do f:write(('old = %d\n'):format(i)) end
    f:close()
    local s = start_repl(hist)
    s.expect('moreau> ')
    s.send('v = 6*7\n')
    s.expect('moreau> ')
    local lines = {}
    for line in io.lines(hist) do lines[#lines + 1] = line end
    assert.are.equal(repl.HISTORY_LINES + 1, #lines)
    assert.are.equal('old = 11', lines[1])
    assert.are.equal('v = 6*7', lines[#lines], 'written when entered, not at exit')

    s.send('x = 1 +\n')
    s.expect('    .. ')
    sleep_ms(100)
    s.send('\3')
    s.expect('moreau> ')
    s.send('x = 5\n') -- with "x = 1 +" still pending this would be "x = 1 +\nx = 5": a syntax error
    s.expect('moreau> ')
    s.send('zzz_partial')
    sleep_ms(200)
    s.send('\3')
    s.expect('moreau> ')
    s.send('print(x + 1)\n')
    s.expect('\n6\n')
    s.send('print(v)\n')
    s.expect('\n42\n')
    assert.are.equal(0, s.close(), s.transcript())
    local text = s.transcript()
    assert.falsy(text:find('error', 1, true), text)
    local all = {}
    for line in io.lines(hist) do all[#all + 1] = line end
    assert.are.same({ 'v = 6*7', 'x = 1 +', 'x = 5', 'print(x + 1)', 'print(v)' },
      { unpack(all, #all - 4) })
  end)

  it('Ctrl-C stops a Lua loop and a solver:run() in C, twice in a row too, and keeps the variables', function()
    local s = start_repl(tmp .. '/history2')
    s.expect('moreau> ')
    s.send('v = 6*7\n')
    s.expect('moreau> ')
    s.send("print('loo' .. 'ping'); while true do end\n")
    s.expect('looping')
    sleep_ms(300)
    s.send('\3')
    s.expect('interrupted')
    s.expect('moreau> ')
    s.send('print(v)\n')
    s.expect('\n42\n')
    s.expect('moreau> ')
    s.send("b = nn.builder({1, 6, 6}, {seed = 2}); net = b:build(b:linear('fc', b:flatten(b.input), 36, 3))\n")
    s.expect('moreau> ')
    s.send('s = prox.solver(net, T.ones{1, 1, 6, 6}, {1}, {T = 100000000, K = 1, m = 2})\n')
    s.expect('moreau> ')
    s.send("print('sol' .. 'ving'); s:run()\n")
    s.expect('solving')
    sleep_ms(300)
    s.send('\3\3') -- a second press while the first is pending must not end the process
    s.expect('interrupted')
    s.expect('moreau> ')
    s.send("print('iter ' .. tostring(s:stats(1).iter > 0 and s:stats(1).iter < 100000000), v)\n")
    s.expect('iter true\t42')
    s.expect('moreau> ')
    s.send('\3') -- at an empty prompt: a fresh prompt, the session goes on
    s.expect('moreau> ')
    s.send('print(v + 1)\n')
    s.expect('\n43\n')
    assert.are.equal(0, s.close(), s.transcript())
  end)

  it('Tab completes globals and fields', function()
    local s = start_repl(tmp .. '/history3')
    s.expect('moreau> ')
    s.send('vvvv_long_name = {answer = 17}\n')
    s.expect('moreau> ')
    s.send('print(vvvv_lo\t.ans\t)\n')
    s.expect('\n17\n')
    assert.are.equal(0, s.close(), s.transcript())
  end)

  it('works without libreadline (plain reads): Ctrl-C at the prompt and during a loop', function()
    -- the REPL as it runs where libreadline is absent: core.readline() then says there is none
    local script = tmp .. '/plain.lua'
    local f = assert(io.open(script, 'w'))
    f:write("local core = require 'moreau.core'; core.readline(); core._readline = false\n" ..
      "require('moreau.repl').start()\n")
    f:close()
    local s = start_repl(tmp .. '/history4',
      ("env LUA_PATH='bindings/?.lua;bindings/?/init.lua;;' luajit %s"):format(script))
    s.expect('moreau> ')
    s.send('v = 6*7\n')
    s.expect('moreau> ')
    s.send('x = 1 +\n')
    s.expect('    .. ')
    sleep_ms(100)
    s.send('\3')
    s.expect('moreau> ')
    s.send('x = 5\n')
    s.expect('moreau> ')
    s.send("print('loo' .. 'ping'); while true do end\n")
    s.expect('looping')
    sleep_ms(300)
    s.send('\3')
    s.expect('interrupted')
    s.expect('moreau> ')
    s.send('print(x + v)\n')
    s.expect('\n47\n')
    assert.are.equal(0, s.close(), s.transcript())
    assert.falsy(s.transcript():find('error', 1, true), s.transcript())
  end)
end)
