-- Delete chosen dead letters of one queue: the index entry and everything the
-- task left (record, history, done signal, captured output). An id that is not
-- in the queue's dead-letter set (requeued meanwhile) is left alone.
-- KEYS[1] the queue's dead zset  KEYS[2] task prefix  KEYS[3] history prefix
-- KEYS[4] done prefix  KEYS[5] logs prefix
-- ARGV: task ids
-- Returns how many were deleted.
local n = 0
for _, id in ipairs(ARGV) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    redis.call('DEL', KEYS[2] .. id, KEYS[3] .. id, KEYS[4] .. id, KEYS[5] .. id)
    n = n + 1
  end
end
return n
