-- Delete up to ARGV[1] tasks from a pending queue or a dead-letter set, with their data;
-- or ('parked') every task of queue ARGV[3] parked because no live worker serves it.
-- KEYS[1] queue list or dead zset  KEYS[2] task prefix  KEYS[3] history prefix
-- KEYS[4] done prefix  KEYS[5] unserved zset (pending tasks waiting for a worker that serves them)
-- KEYS[6] parked prefix (LIST per task name)
-- ARGV[1] batch size  ARGV[2] 'list', 'zset' or 'parked'  ARGV[3] queue name (for 'parked')
-- Returns how many entries were removed; call again until it returns less than the batch.
local batch = tonumber(ARGV[1])
local ids
if ARGV[2] == 'parked' then
  local n = 0
  for _, id in ipairs(redis.call('ZRANGE', KEYS[5], 0, -1)) do
    local f = redis.call('HMGET', KEYS[2] .. id, 'queue', 'name')
    if f[1] == ARGV[3] or not f[1] then
      redis.call('ZREM', KEYS[5], id)
      if f[2] then redis.call('LREM', KEYS[6] .. f[2], 1, id) end
      redis.call('DEL', KEYS[2] .. id, KEYS[3] .. id, KEYS[4] .. id)
      if f[1] then n = n + 1 end
    end
  end
  return n
elseif ARGV[2] == 'list' then
  ids = redis.call('LRANGE', KEYS[1], 0, batch - 1)
  redis.call('LTRIM', KEYS[1], #ids, -1)
else
  ids = redis.call('ZRANGE', KEYS[1], 0, batch - 1)
  if #ids > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, #ids - 1) end
end
for _, id in ipairs(ids) do
  redis.call('DEL', KEYS[2] .. id, KEYS[3] .. id, KEYS[4] .. id)
  redis.call('ZREM', KEYS[5], id)
end
return #ids
