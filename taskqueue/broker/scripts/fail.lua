-- Record a failed attempt and apply the decision the worker took from the
-- task's retry policy: 'retry' (scheduled back through Redis), 'dead'
-- (dead-letter queue), 'failed' (final, not retried by policy) or
-- 'cancelled' (the task stopped because cancel() asked it to).
-- Fenced by the lease token like ack.lua. Also counts the attempt and its
-- execution time in the queue's metrics hash.
-- KEYS[1] task hash  KEYS[2] leases  KEYS[3] done list  KEYS[4] stats hash
-- KEYS[5] history list  KEYS[6] scheduled zset  KEYS[7] scheduler wake list
-- KEYS[8] dead zset of the queue  KEYS[9] task prefix  KEYS[10] history prefix
-- KEYS[11] done prefix  KEYS[12] metrics hash of the queue
-- KEYS[13] the queue's minutes prefix (per-minute history, Keys.minutes)
-- KEYS[14] limit prefix  KEYS[15] queue prefix  KEYS[16] wake prefix (flow control)
-- then, last: Keys.workflow_keys (workflows: a final failure tells the dependents, _lib_workflow.lua)
-- ARGV[1] id  ARGV[2] token  ARGV[3] action ('ratelimited' too: RateLimited raised,
--         see _lib_limits.lua)  ARGV[4] history entry (JSON)
-- ARGV[5] error (msgpack)  ARGV[6] retry delay ms  ARGV[7] reason
-- ARGV[8] result ttl ms  ARGV[9] dead max size  ARGV[10] dead ttl ms
-- ARGV[11] runtime ms of the attempt (-1: not measured)
-- ARGV[12] history retention ms (0: no history)
-- Returns {stored (0/1), dead entries dropped}
local task = redis.call('HMGET', KEYS[1], 'token', 'name', 'limit')
if task[1] ~= ARGV[2] then
  return {0, 0}
end
local now = now_ms()
local action = ARGV[3]
local name = task[2]
-- flow control (_lib_limits.lua): the slot goes back; RateLimited is not a failure
if task[3] then limits_release(KEYS[14], KEYS[9], KEYS[15], KEYS[16], ARGV[1], task[3]) end
if action == 'ratelimited' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('RPUSH', KEYS[5], ARGV[4])
  redis.call('HSET', KEYS[1], 'token', '')
  redis.call('HINCRBY', KEYS[4], 'rate_limited', 1)
  limits_rate_limited(KEYS[1], ARGV[1], KEYS[6], KEYS[7], KEYS[5], tonumber(ARGV[6]), now, tonumber(ARGV[8]))
  return {1, 0}
end
observe(KEYS[12], 'exec', name, tonumber(ARGV[11]))
-- the per-minute history: every failed attempt but a cancellation
if action ~= 'cancelled' then
  local retention = tonumber(ARGV[12]) or 0
  local hk = history_add(function(k, f, n) redis.call('HINCRBY', k, f, n) end,
    KEYS[13], now, retention, name, false, tonumber(ARGV[11]))
  if hk then history_expire(hk, now, retention) end
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('RPUSH', KEYS[5], ARGV[4])
redis.call('HSET', KEYS[1], 'error', ARGV[5], 'token', '')
redis.call('HINCRBY', KEYS[4], 'failed_attempts', 1)
if action == 'retry' then
  local due = now + tonumber(ARGV[6])
  redis.call('HSET', KEYS[1], 'status', 'RETRYING', 'due_ms', due)
  redis.call('ZADD', KEYS[6], due, ARGV[1])
  redis.call('HINCRBY', KEYS[4], 'retried', 1)
  count_task(KEYS[12], 'retried', name)
  wake(KEYS[7])
  return {1, 0}
end
if action ~= 'cancelled' then
  redis.call('HINCRBY', KEYS[4], 'failed', 1)
  count_task(KEYS[12], 'failed', name)
end
count_finished(KEYS[12], now)
if action == 'dead' then
  local dropped = bury(ARGV[1], ARGV[7], now, {task_prefix = KEYS[9], history_prefix = KEYS[10],
    done_prefix = KEYS[11], dead_key = KEYS[8], stats_key = KEYS[4], metrics_key = KEYS[12],
    max = tonumber(ARGV[9]), ttl = tonumber(ARGV[10])})
  wf_finished(wf_keys(), ARGV[1], 'DEAD', ARGV[7], now, tonumber(ARGV[10]))  -- workflows
  return {1, dropped}
end
local ttl = tonumber(ARGV[8])
local final = action == 'cancelled' and 'CANCELLED' or 'FAILED'
redis.call('HSET', KEYS[1], 'status', final, 'reason', ARGV[7], 'finished_ms', now)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[5], ttl)
signal_done(KEYS[3], ttl)
wf_finished(wf_keys(), ARGV[1], final, ARGV[7], now, ttl)  -- workflows
return {1, 0}
