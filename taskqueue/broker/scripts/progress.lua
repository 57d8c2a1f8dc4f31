-- Store the progress of running tasks (taskqueue/progress.py), each only while the
-- caller still holds its lease: a late write never lands on a finished task, nor
-- recreates the hash of one whose record expired.
-- KEYS[1] and on: one task hash per task (of one slot group)
-- ARGV: 2 per task: lease token, progress (JSON)
-- Returns the number stored.
local n = 0
for i = 1, #KEYS do
  local token = ARGV[2 * i - 1]
  if token ~= '' and redis.call('HGET', KEYS[i], 'token') == token then
    redis.call('HSET', KEYS[i], 'progress', ARGV[2 * i])
    n = n + 1
  end
end
return n
