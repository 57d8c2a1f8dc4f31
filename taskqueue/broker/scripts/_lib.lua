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

-- Metrics, written by the scripts that change a task's state, in the same call, so
-- they cost no extra round trip. m is the queue's metrics hash (see Keys.metrics_prefix).
-- HIST_BOUNDS_MS is defined above this file by broker/scripts.py (HISTOGRAM_BOUNDS_MS).
-- The 0-based index of the first bucket whose bound is >= ms (binary search).
local function bucket_of(ms)
  local lo, hi = 1, #HIST_BOUNDS_MS + 1
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if ms <= HIST_BOUNDS_MS[mid] then hi = mid else lo = mid + 1 end
  end
  return lo - 1
end

-- Counters of a batch, summed here and written once per field at the end (a batch of
-- tasks of one name costs one HINCRBY per field, not one per task): add(key, field, n)
-- adds, flush() writes.
local function tally()
  local sums, order = {}, {}
  local function add(key, field, n)
    local slot = sums[key]
    if not slot then
      slot = {}
      sums[key] = slot
      order[#order + 1] = key
    end
    slot[field] = (slot[field] or 0) + n
  end
  local function flush()
    for _, key in ipairs(order) do
      for field, n in pairs(sums[key]) do
        redis.call('HINCRBY', key, field, n)
      end
    end
  end
  return add, flush
end

-- Add one observation (ms) to the 'exec' or 'wait' histogram of a task name, through
-- add(key, field, n): redis.call's HINCRBY, or a tally's add.
local function observe(m, kind, name, ms, add)
  if not name or name == '' or not ms or ms < 0 then return end
  add = add or function(key, field, n) redis.call('HINCRBY', key, field, n) end
  add(m, kind .. '.' .. bucket_of(ms) .. '|' .. name, 1)
  add(m, kind .. '.sum|' .. name, ms)
end

-- Count an event (processed, failed, retried, dead) for a task name.
local function count_task(m, counter, name)
  if name and name ~= '' then
    redis.call('HINCRBY', m, counter .. '|' .. name, 1)
  end
end

-- n more finished tasks (default 1) in the throughput ring: 60 one-second slots, each holding
-- a count and the epoch second it counts for; a slot from an older minute restarts.
local function count_finished(m, now, n)
  n = n or 1
  local sec = math.floor(now / 1000)
  local slot = sec % 60
  if tonumber(redis.call('HGET', m, 'tpt.' .. slot)) == sec then
    redis.call('HINCRBY', m, 'tp.' .. slot, n)
  else
    redis.call('HSET', m, 'tpt.' .. slot, sec, 'tp.' .. slot, n)
  end
end

-- History ---------------------------------------------------------------------------------
-- The per-minute history (Keys.minutes_prefix): one hash per queue and minute, fields per
-- task name. `add(key, field, n)` adds to a field (ack.lua sums a batch first, fail.lua
-- increments at once); `minutes` is the queue's prefix (Keys.minutes), retention_ms 0 means
-- no history. Returns the key written (nil when none), for history_expire.
local function history_add(add, minutes, now, retention_ms, name, ok, runtime)
  if retention_ms <= 0 then return nil end
  local key = minutes .. math.floor(now / 60000)
  if not name or name == '' then name = '?' end
  add(key, (ok and 'ok|' or 'fail|') .. name, 1)
  if runtime and runtime >= 0 then
    add(key, 'h' .. bucket_of(runtime) .. '|' .. name, 1)
    add(key, 'ms|' .. name, runtime)
  end
  return key
end

-- A minute's hash lives retention_ms after its minute ends (the same deadline each time).
local function history_expire(key, now, retention_ms)
  redis.call('PEXPIREAT', key, (math.floor(now / 60000) + 1) * 60000 + retention_ms)
end

-- Put a task in its queue's dead-letter set, which is bounded by size and age.
-- d = {task_prefix, history_prefix, done_prefix, dead_key, stats_key, metrics_key, max, ttl}
-- Returns how many older dead tasks were dropped to respect the bounds.
local function bury(id, reason, now, d)
  local task_key = d.task_prefix .. id
  redis.call('HSET', task_key, 'status', 'DEAD', 'reason', reason, 'finished_ms', now, 'token', '')
  redis.call('PEXPIRE', task_key, d.ttl)
  redis.call('PEXPIRE', d.history_prefix .. id, d.ttl)
  redis.call('ZADD', d.dead_key, now, id)
  redis.call('HINCRBY', d.stats_key, 'dead', 1)
  count_task(d.metrics_key, 'dead', redis.call('HGET', task_key, 'name'))
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
