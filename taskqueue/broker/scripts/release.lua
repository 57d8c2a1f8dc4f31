-- Give back a task that was fetched but never started (graceful shutdown):
-- to the front of its queue, with the attempt not counted.
-- KEYS[1] task hash  KEYS[2] leases  KEYS[3] queue list  KEYS[4] queue wake list
-- ARGV[1] id  ARGV[2] token
-- Returns 1, or 0 when the lease was lost meanwhile (nothing written).
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], 'status', 'PENDING', 'token', '')
redis.call('HINCRBY', KEYS[1], 'attempts', -1)
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('LPUSH', KEYS[3], ARGV[1])
wake(KEYS[4])
return 1
