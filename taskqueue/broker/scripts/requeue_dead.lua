-- Move dead tasks back to their queue with their attempts reset.
-- KEYS[1] dead zset  KEYS[2] task prefix  KEYS[3] queue prefix  KEYS[4] wake prefix
-- KEYS[5] done prefix
-- ARGV[1] task id ('' = the oldest ARGV[2] tasks)  ARGV[2] batch size
-- Returns how many tasks were requeued.
local ids
if ARGV[1] ~= '' then
  ids = {ARGV[1]}
else
  ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
end
local n = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    local t = KEYS[2] .. id
    local queue = redis.call('HGET', t, 'queue')
    if queue then
      redis.call('HSET', t, 'status', 'PENDING', 'attempts', 0, 'token', '')
      redis.call('HDEL', t, 'reason', 'error', 'result', 'finished_ms', 'cancel_requested')
      redis.call('PERSIST', t)
      redis.call('DEL', KEYS[5] .. id)
      redis.call('RPUSH', KEYS[3] .. queue, id)
      wake(KEYS[4] .. queue)
      n = n + 1
    end
  end
end
return n
