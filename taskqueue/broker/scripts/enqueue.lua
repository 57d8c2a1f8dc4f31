-- Write one task: its hash, then either its queue entry or its schedule entry.
-- Atomic, so a task is fully enqueued or not at all.
-- KEYS[1] task hash      KEYS[2] queue list   KEYS[3] queue wake list
-- KEYS[4] scheduled zset KEYS[5] scheduler wake list KEYS[6] queue stats hash
-- ARGV[1] id  ARGV[2] payload  ARGV[3] queue  ARGV[4] task name  ARGV[5] max_retries
-- ARGV[6] signature ('' unsigned)  ARGV[7] delay ms (<0: none)  ARGV[8] eta ms (0: none)
-- Returns 1, or 0 when a task with that id exists already (nothing written).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local now = now_ms()
local delay, eta = tonumber(ARGV[7]), tonumber(ARGV[8])
redis.call('HSET', KEYS[1], 'payload', ARGV[2], 'queue', ARGV[3], 'name', ARGV[4],
  'max_retries', ARGV[5], 'sig', ARGV[6], 'attempts', 0, 'enqueued_ms', now, 'token', '')
redis.call('HINCRBY', KEYS[6], 'enqueued', 1)
if delay >= 0 or eta > 0 then
  local due = eta > 0 and eta or now + delay
  redis.call('HSET', KEYS[1], 'status', 'SCHEDULED', 'due_ms', due)
  redis.call('ZADD', KEYS[4], due, ARGV[1])
  wake(KEYS[5])
else
  redis.call('HSET', KEYS[1], 'status', 'PENDING')
  redis.call('RPUSH', KEYS[2], ARGV[1])
  wake(KEYS[3])
end
return 1
