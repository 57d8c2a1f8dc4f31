-- Write one task: its queue (or schedule) entry and its hash.
-- Atomic, so a task is fully enqueued or not at all. Redis does not roll a
-- script back when a command fails half-way, so the only write that can fail
-- (the queue or schedule entry, if that key holds another type) comes first,
-- and the best-effort wake-up and counter come last, through pcall.
-- KEYS[1] task hash      KEYS[2] queue list   KEYS[3] queue wake list
-- KEYS[4] scheduled zset KEYS[5] scheduler wake list KEYS[6] queue stats hash
-- ARGV[1] id  ARGV[2] payload  ARGV[3] queue  ARGV[4] task name  ARGV[5] max_retries
-- ARGV[6] signature ('' unsigned)  ARGV[7] delay ms (<0: none)  ARGV[8] eta ms (0: none)
-- ARGV[9] nonce of this request
-- Returns 1, or 0 when a task with that id exists already (nothing written).
-- The same request repeated (its reply was lost with a dropped connection and
-- the client sent it again) finds its own nonce and returns 1 again.
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('HGET', KEYS[1], 'nonce') == ARGV[9] then
    return 1
  end
  return 0
end
local now = now_ms()
local delay, eta = tonumber(ARGV[7]), tonumber(ARGV[8])
local status, due, wake_key = 'PENDING', '', KEYS[3]
if delay >= 0 or eta > 0 then
  due = eta > 0 and eta or now + delay
  status, wake_key = 'SCHEDULED', KEYS[5]
  redis.call('ZADD', KEYS[4], due, ARGV[1])
else
  redis.call('RPUSH', KEYS[2], ARGV[1])
end
redis.call('HSET', KEYS[1], 'payload', ARGV[2], 'queue', ARGV[3], 'name', ARGV[4],
  'max_retries', ARGV[5], 'sig', ARGV[6], 'attempts', 0, 'enqueued_ms', now, 'token', '',
  'status', status, 'due_ms', due, 'nonce', ARGV[9])
redis.pcall('HINCRBY', KEYS[6], 'enqueued', 1)
redis.pcall('RPUSH', wake_key, '1')
redis.pcall('LTRIM', wake_key, 0, 63)
return 1
