-- Shared helpers, prepended to every script when it is loaded (see broker/scripts.py).
-- Times are milliseconds of the Redis server clock, so hosts with skewed clocks agree.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Wake one idle worker of a queue. The list is capped: tokens only pile up
-- while nobody listens, and a worker that finds the queue empty clears it.
local function wake(key)
  if redis.call('LLEN', key) < 64 then
    redis.call('RPUSH', key, '1')
  end
end

-- Mark a task finished so that result() waiters blocked on its done list return.
local function signal_done(done_key, ttl_ms)
  redis.call('DEL', done_key)
  redis.call('RPUSH', done_key, '1')
  redis.call('PEXPIRE', done_key, ttl_ms)
end

-- Put a task in its queue's dead-letter set, which is bounded by size and age.
-- d = {task_prefix, history_prefix, done_prefix, dead_key, stats_key, max, ttl}
-- Returns how many older dead tasks were dropped to respect the bounds.
local function bury(id, reason, now, d)
  local task_key = d.task_prefix .. id
  redis.call('HSET', task_key, 'status', 'DEAD', 'reason', reason, 'finished_ms', now, 'token', '')
  redis.call('PEXPIRE', task_key, d.ttl)
  redis.call('PEXPIRE', d.history_prefix .. id, d.ttl)
  redis.call('ZADD', d.dead_key, now, id)
  redis.call('HINCRBY', d.stats_key, 'dead', 1)
  signal_done(d.done_prefix .. id, d.ttl)
  local dropped = 0
  local function drop(victims)
    for _, v in ipairs(victims) do
      redis.call('ZREM', d.dead_key, v)
      redis.call('DEL', d.task_prefix .. v, d.history_prefix .. v, d.done_prefix .. v)
      dropped = dropped + 1
    end
  end
  drop(redis.call('ZRANGEBYSCORE', d.dead_key, '-inf', now - d.ttl, 'LIMIT', 0, 100))
  local excess = redis.call('ZCARD', d.dead_key) - d.max
  if excess > 0 then
    drop(redis.call('ZRANGE', d.dead_key, 0, excess - 1))
  end
  if dropped > 0 then
    redis.call('HINCRBY', d.stats_key, 'dead_dropped', dropped)
  end
  return dropped
end
