-- Store the successful outcomes of a batch of tasks and release their leases.
-- Each is stored only if the caller still holds its lease (the token matches):
-- a late answer from an attempt that lost its lease, or timed out, never
-- overwrites a newer outcome. Counters and histograms of the batch are summed
-- first and written once per field, and the "done" signal that result()
-- blocks on is only written for tasks somebody waits on (see watch.lua).
-- KEYS[1] task prefix  KEYS[2] history prefix  KEYS[3] done prefix
-- KEYS[4] stats prefix KEYS[5] metrics prefix  KEYS[6] leases zset
-- KEYS[7] minutes prefix (the per-minute history, Keys.minutes_prefix)
-- KEYS[8] limit prefix  KEYS[9] queue prefix  KEYS[10] wake prefix (flow control: a
--         finished task's concurrency slot goes to the oldest task held for it)
-- then, last: Keys.workflow_keys (workflows: a task with dependents tells them, _lib_workflow.lua)
-- ARGV[1] result ttl ms  ARGV[2] history retention ms (0: none),
-- then 5 per task: id, token, queue, result bytes, runtime ms
-- Returns one 1 (stored) or 0 (token no longer matches: nothing written) per task.
-- The same ack repeated (its reply was lost) finds its token in 'acked' and returns 1.
local tp, hp, dp, sp, mp, leases = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local ttl = tonumber(ARGV[1])
local W = wf_keys()  -- workflows
local now = now_ms()
local out, acked = {}, {}
local add, write_counts = tally()
local finished = {}
-- the per-minute history: keys written by this batch
local minutes, retention, minute_keys = KEYS[7], tonumber(ARGV[2]), {}
for i = 3, #ARGV, 5 do
  local id, token, queue, runtime = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 4])
  local t = tp .. id
  local f = redis.call('HMGET', t, 'token', 'name', 'attempts', 'waiters', 'acked', 'limit', 'wf')
  if f[1] ~= token then
    out[#out + 1] = f[5] == token and 1 or 0
  else
    redis.call('HSET', t, 'status', 'SUCCEEDED', 'result', ARGV[i + 3], 'finished_ms', now,
      'token', '', 'acked', token, 'runtime_ms', runtime, 'started_ms', now - math.max(runtime or 0, 0))
    redis.call('PEXPIRE', t, ttl)
    if (tonumber(f[3]) or 1) > 1 then
      redis.call('PEXPIRE', hp .. id, ttl)  -- only retried tasks have a history
    end
    if f[4] then
      signal_done(dp .. id, ttl)
    end
    acked[#acked + 1] = id
    if f[6] then limits_release(KEYS[8], tp, KEYS[9], KEYS[10], id, f[6]) end  -- flow control
    if f[7] then wf_finished(W, id, 'SUCCEEDED', ARGV[i + 3], now, ttl) end  -- workflows
    add(sp .. queue, 'processed', 1)
    local m = mp .. queue
    finished[m] = (finished[m] or 0) + 1
    local name = f[2]
    if name and name ~= '' then
      add(m, 'processed|' .. name, 1)
      observe(m, 'exec', name, runtime, add)
    end
    local hk = history_add(add, minutes .. queue .. ':', now, retention, name, true, runtime)
    if hk then minute_keys[hk] = true end
    out[#out + 1] = 1
  end
end
for i = 1, #acked, 500 do
  redis.call('ZREM', leases, unpack(acked, i, math.min(i + 499, #acked)))
end
write_counts()
for m, n in pairs(finished) do
  count_finished(m, now, n)
end
for key in pairs(minute_keys) do
  history_expire(key, now, retention)
end
return out
