-- Store a successful outcome and release the lease, only if the caller still
-- holds the lease (its token matches): a late answer from an attempt that
-- lost its lease, or timed out, never overwrites a newer outcome.
-- KEYS[1] task hash  KEYS[2] leases zset  KEYS[3] done list  KEYS[4] stats hash
-- KEYS[5] history list
-- ARGV[1] id  ARGV[2] token  ARGV[3] result bytes  ARGV[4] result ttl ms  ARGV[5] runtime ms
-- Returns 1 when stored, 0 when the token no longer matches (nothing written).
-- The same ack repeated (its reply was lost) finds its token in 'acked' and returns 1.
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[2] then
  if redis.call('HGET', KEYS[1], 'acked') == ARGV[2] then
    return 1
  end
  return 0
end
local now = now_ms()
local ttl = tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'status', 'SUCCEEDED', 'result', ARGV[3], 'finished_ms', now,
  'token', '', 'acked', ARGV[2], 'runtime_ms', ARGV[5])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[5], ttl)
redis.call('HINCRBY', KEYS[4], 'processed', 1)
signal_done(KEYS[3], ttl)
return 1
