-- Claim one slot of a periodic task and enqueue its run, in one atomic step.
-- The slot is taken only if the task's next run in periodic-due still equals
-- the slot the caller saw (compare-and-set), and only once it is due by the
-- server clock: of any number of schedulers racing for a slot, exactly one
-- wins, whatever their local clocks say.
-- KEYS[1] periodic-due zset  KEYS[2] periodic hash  KEYS[3] task hash of this run
-- KEYS[4] queue list  KEYS[5] queue wake list  KEYS[6] queue stats hash
-- KEYS[7] paused periodic names set
-- ARGV[1] periodic name  ARGV[2] slot ms, as the caller saw it  ARGV[3] next slot ms
-- ARGV[4] definition JSON to store with the claim  ARGV[5] '1' run it, '0' skip it (missed run)
-- ARGV[6] task id  ARGV[7] payload  ARGV[8] queue  ARGV[9] task name  ARGV[10] max_retries
-- ARGV[11] signature ('' unsigned)  ARGV[12] now ms (0: the server clock)
-- ARGV[13] definition JSON to store instead when the task is paused (the slot skipped)
-- Returns {code, next run ms}: 1 enqueued, 2 skipped by the missed-run policy,
-- 3 advanced but not enqueued (a task for this slot exists already), 4 skipped: paused,
-- 0 another scheduler claimed it (next run is the current one), -1 not due yet,
-- -2 the periodic task is not registered (removed from Redis).
local now = tonumber(ARGV[12])
if now <= 0 then now = now_ms() end
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then
  return {-2, -1}
end
score = tonumber(score)
local slot, next_run = tonumber(ARGV[2]), tonumber(ARGV[3])
if score ~= slot then
  return {0, score}
end
if slot > now then
  return {-1, score}
end
redis.call('ZADD', KEYS[1], 'XX', next_run, ARGV[1])
-- paused: the slot is claimed and advanced like any other, recorded as skipped, not run
if redis.call('SISMEMBER', KEYS[7], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[13])
  return {4, next_run}
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
if ARGV[5] ~= '1' then
  return {2, next_run}
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  return {3, next_run}
end
redis.call('HSET', KEYS[3], 'payload', ARGV[7], 'queue', ARGV[8], 'name', ARGV[9],
  'max_retries', ARGV[10], 'sig', ARGV[11], 'attempts', 0, 'enqueued_ms', now, 'token', '',
  'status', 'PENDING', 'due_ms', slot, 'periodic', ARGV[1])
redis.call('HINCRBY', KEYS[6], 'enqueued', 1)
redis.call('RPUSH', KEYS[4], ARGV[6])
wake(KEYS[5])
return {1, next_run}
