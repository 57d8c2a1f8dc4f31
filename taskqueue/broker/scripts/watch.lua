-- Read a task for result(), and note that somebody waits for it, so that the
-- script that finishes it writes the done signal (ack.lua skips it otherwise).
-- Reading and noting in one script: a task cannot finish unnoticed in between.
-- KEYS[1] task hash
-- Returns the task's hash as a flat list (empty when there is no such task).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {}
end
redis.call('HSET', KEYS[1], 'waiters', 1)
return redis.call('HGETALL', KEYS[1])
