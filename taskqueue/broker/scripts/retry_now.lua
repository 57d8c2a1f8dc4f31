-- Run tasks now, from the dashboard: a SCHEDULED or RETRYING task leaves the
-- scheduled set for the tail of its queue; a DEAD, FAILED or CANCELLED one goes
-- back to its queue with its attempts reset (as requeue_dead.lua does for the dead).
-- Any other state (pending, running, succeeded, unknown) is left alone.
-- KEYS[1] scheduled zset  KEYS[2] task prefix  KEYS[3] queue prefix  KEYS[4] wake prefix
-- KEYS[5] dead prefix  KEYS[6] done prefix
-- ARGV: task ids
-- Returns, per id, the status it had when it was moved, or '' when it was left alone.
local out = {}
for i, id in ipairs(ARGV) do
  local t = KEYS[2] .. id
  local f = redis.call('HMGET', t, 'status', 'queue')
  local status, queue = f[1], f[2]
  out[i] = ''
  if queue then
    if status == 'SCHEDULED' or status == 'RETRYING' then
      if redis.call('ZREM', KEYS[1], id) == 1 then
        redis.call('HSET', t, 'status', 'PENDING')
        out[i] = status
      end
    elseif status == 'DEAD' or status == 'FAILED' or status == 'CANCELLED' then
      redis.call('ZREM', KEYS[5] .. queue, id)
      redis.call('HSET', t, 'status', 'PENDING', 'attempts', 0, 'token', '')
      redis.call('HDEL', t, 'reason', 'error', 'result', 'finished_ms', 'cancel_requested')
      redis.call('PERSIST', t)
      redis.call('DEL', KEYS[6] .. id)
      out[i] = status
    end
    if out[i] ~= '' then
      redis.call('RPUSH', KEYS[3] .. queue, id)
      wake(KEYS[4] .. queue)
    end
  end
end
return out
