-- Delete up to ARGV[1] tasks from a pending queue or a dead-letter set, with their data.
-- KEYS[1] queue list or dead zset  KEYS[2] task prefix  KEYS[3] history prefix
-- KEYS[4] done prefix  KEYS[5] unserved zset (pending tasks waiting for a worker that serves them)
-- ARGV[1] batch size  ARGV[2] 'list' or 'zset'
-- Returns how many entries were removed; call again until it returns less than the batch.
local batch = tonumber(ARGV[1])
local ids
if ARGV[2] == 'list' then
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
