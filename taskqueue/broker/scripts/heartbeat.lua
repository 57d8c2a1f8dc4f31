-- One call per heartbeat interval per worker process: renew the leases of the
-- tasks it still holds, refresh its registry entry, forget dead workers.
-- KEYS[1] leases zset  KEYS[2] workers zset  KEYS[3] this worker's hash  KEYS[4] task prefix
-- ARGV[1] worker id  ARGV[2] lease ms  ARGV[3] registry ttl ms  ARGV[4] info (JSON)
-- ARGV[5..] pairs of task id, token
-- Returns {ids whose cancellation was requested, ids whose lease was lost}
local now = now_ms()
local lease_until = now + tonumber(ARGV[2])
local cancelled, lost = {}, {}
for i = 5, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local fields = redis.call('HMGET', KEYS[4] .. id, 'token', 'cancel_requested')
  if fields[1] == token then
    redis.call('ZADD', KEYS[1], 'XX', lease_until, id)
    if fields[2] == '1' then cancelled[#cancelled + 1] = id end
  else
    lost[#lost + 1] = id
  end
end
local ttl = tonumber(ARGV[3])
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
redis.call('HSET', KEYS[3], 'info', ARGV[4], 'heartbeat_ms', now)
redis.call('PEXPIRE', KEYS[3], ttl)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
return {cancelled, lost}
