-- Cancel a task. Pending or scheduled: it will never run. Leased into a worker's
-- prefetch buffer (LEASED) or running: a flag, and a message to the worker, which
-- drops a task it has not started and passes the flag to one that has
-- (current_task().cancelled); threads cannot be killed.
-- KEYS[1] task hash  KEYS[2] queue prefix  KEYS[3] scheduled zset  KEYS[4] done list
-- KEYS[5] history list  KEYS[6] control prefix (a list per worker process)
-- KEYS[7] unserved zset (a pending task may wait there for a worker that serves it)
-- ARGV[1] id  ARGV[2] ttl ms for the cancelled record
-- ARGV[3] '1' push the message to the worker's control list here; '0' return the
-- worker instead (on a cluster the control lists are in another slot group)
-- then, last: Keys.workflow_keys (workflows: a WAITING task is cancelled too, and a cancelled
-- task tells its dependents, _lib_workflow.lua)
-- Returns {the status the task had (false when there is no such task),
--          the worker to tell (false when none, or when told here)}.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return {false, false}
end
local tell = false
local function finish()
  local now = now_ms()
  local ttl = tonumber(ARGV[2])
  redis.call('HSET', KEYS[1], 'status', 'CANCELLED', 'finished_ms', now, 'token', '')
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[5], ttl)
  signal_done(KEYS[4], ttl)
  wf_finished(wf_keys(), ARGV[1], 'CANCELLED', 'cancelled', now, ttl)  -- workflows
end
if status == 'PENDING' then
  redis.call('LREM', KEYS[2] .. redis.call('HGET', KEYS[1], 'queue'), 1, ARGV[1])
  redis.call('ZREM', KEYS[7], ARGV[1])
  finish()
elseif status == 'WAITING' then  -- workflows: it waited for dependencies
  local W = wf_keys()
  redis.call('DEL', W.deps .. ARGV[1])
  redis.call('SREM', W.waiting .. redis.call('HGET', KEYS[1], 'queue'), ARGV[1])
  finish()
elseif status == 'SCHEDULED' or status == 'RETRYING' then
  redis.call('ZREM', KEYS[3], ARGV[1])
  finish()
elseif status == 'RUNNING' or status == 'LEASED' then
  redis.call('HSET', KEYS[1], 'cancel_requested', 1)
  local worker = redis.call('HGET', KEYS[1], 'worker')
  if worker and ARGV[3] == '1' then
    redis.call('RPUSH', KEYS[6] .. worker, ARGV[1])
    redis.call('PEXPIRE', KEYS[6] .. worker, 60000)
  elseif worker then
    tell = worker
  end
end
return {status, tell}
