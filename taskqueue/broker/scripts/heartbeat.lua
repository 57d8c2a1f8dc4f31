-- The namespace-wide part of a worker's heartbeat, once per interval per worker
-- process: refresh its registry entry, publish the task names it serves (with their
-- definitions: default queue, parameters) for `taskqueue tasks` and for enqueueing
-- by name, and forget dead workers and names nobody served for a day. The leases
-- and the per-queue task registry are renewed by renew.lua, one call per slot group,
-- in the same round trip.
-- KEYS[1] workers zset  KEYS[2] this worker's hash  KEYS[3] task names zset
-- KEYS[4] task definitions hash
-- ARGV[1] worker id  ARGV[2] registry ttl ms  ARGV[3] info (JSON)
-- ARGV[4] '1' publish the task names that follow, '0' publish none
-- then pairs of task name, definition (JSON)
-- Returns 1.
local now = now_ms()
local ttl = tonumber(ARGV[2])
if ARGV[4] == '1' then
  for i = 5, #ARGV, 2 do
    redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1])
    redis.call('ZADD', KEYS[3], 'GT', now + ttl, ARGV[i])
  end
  for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now - 86400000, 'LIMIT', 0, 100)) do
    redis.call('ZREM', KEYS[3], gone)
    redis.call('HDEL', KEYS[4], gone)
  end
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('HSET', KEYS[2], 'info', ARGV[3], 'heartbeat_ms', now)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return 1
