-- Flow control (DESIGN 11): uniqueness, debounce, rate limits and concurrency limits.
-- Prepended after _lib.lua. Every key here derives from `lp`, the limit prefix of the
-- task's queue group (Keys.limit_prefix), so a limit lives in the slot group its queue's
-- scripts already touch; the suffixes are written by the producer (taskqueue/limits):
--   lp .. 'rate:' .. s    HASH r (next free reservation, ms), s (next free start, ms)
--   lp .. 'conc:' .. s    SET of the task ids holding a concurrency slot
--   lp .. 'held:' .. s    LIST of task ids waiting for a concurrency slot (PENDING, out of
--                         their queue), oldest first
--   lp .. 'unique:' .. k  STRING: the id of the task that owns a uniqueness key (PX unique_for)
--   lp .. 'debounce:' .. k STRING: the id of the scheduled task that later calls replace
-- where s ("<queue> <bucket>") is the 'limit' field's suffix and k ("<queue> <key>") the
-- dedup request's. A task's 'limit' field is "<interval ms>|<concurrency>|<suffix>":
-- interval = period / N of its rate limit (0: none), concurrency 0: none.
-- KEYS[1] and on: none of its own; the calling script passes its keys (lp, tp, ...) in.

local LIMIT_FINAL = {SUCCEEDED = 1, FAILED = 1, DEAD = 1, CANCELLED = 1}
-- A rate limit admits a start at least this early (ms): one tick of the server clock, so
-- a limit above 1000/s is not capped at one start per millisecond.
local LIMIT_TOLERANCE_MS = 1

local function limit_parse(spec)
  local interval, conc, suffix = string.match(spec or '', '^([^|]*)|([^|]*)|(.+)$')
  return tonumber(interval) or 0, tonumber(conc) or 0, suffix
end

-- enqueue.lua: a request with a dedup spec "<u|d>|<ms>|<key suffix>".
-- 'u' (unique_for): the id of a live (not final) task that owns the key, else nil after
--   taking the key for `id` for ms.
-- 'd' (debounce): the id of the still-scheduled task of the key, whose payload this call
--   replaces and whose run it moves to now + ms; else nil after naming `id` in the key.
local function limits_dedup(lp, tp, scheduled, spec, id, payload, sig, now)
  local mode, ms, suffix = string.match(spec, '^(%a)|(%d+)|(.+)$')
  if not suffix then return nil end
  ms = tonumber(ms)
  if mode == 'u' then
    local key = lp .. 'unique:' .. suffix
    local other = redis.call('GET', key)
    if other and other ~= id then
      local status = redis.call('HGET', tp .. other, 'status')
      if status and not LIMIT_FINAL[status] then return other end
    end
    redis.call('SET', key, id, 'PX', math.max(1, ms))
    return nil
  end
  local key = lp .. 'debounce:' .. suffix
  local other = redis.call('GET', key)
  -- the key outlives its window a little, in case the workers are late to run the task
  local keep = ms + 60000
  if other and other ~= id and redis.call('HGET', tp .. other, 'status') == 'SCHEDULED' then
    redis.call('HSET', tp .. other, 'payload', payload, 'sig', sig, 'due_ms', now + ms)
    redis.call('ZADD', scheduled, now + ms, other)
    redis.call('PEXPIRE', key, keep)
    return other
  end
  redis.call('SET', key, id, 'PX', keep)
  return nil
end

-- enqueue.lua: note a limited task's bucket in the queue group's index (the dashboard):
-- suffix -> "<interval ms>|<concurrency>|<task name>".
local function limits_index(index, spec, name)
  local interval, conc, suffix = limit_parse(spec)
  if suffix then redis.call('HSET', index, suffix, interval .. '|' .. conc .. '|' .. name) end
end

-- fetch.lua: may this PENDING task start now? Returns true when it was held back, out of
-- its queue: for a concurrency slot in the bucket's held list (PENDING), for a rate token
-- in the scheduled zset at the moment its token is free (SCHEDULED, 'held' = 'rate': that
-- moment is reserved for it). Returns false after taking its slot and its token.
local function limits_hold(lp, tp, scheduled, leases, id, spec, held, now)
  local interval, conc, suffix = limit_parse(spec)
  if not suffix then return false end
  local t = tp .. id
  local ck
  if conc > 0 then
    ck = lp .. 'conc:' .. suffix
    local n = redis.call('SCARD', ck)
    if n >= conc then
      -- full by the count: a holder whose lease is gone (its worker died and the lease
      -- expired, or it was given back unstarted) gives its slot back here, then recount
      n = 0
      for _, m in ipairs(redis.call('SMEMBERS', ck)) do
        if m ~= id then
          if redis.call('ZSCORE', leases, m) then n = n + 1 else redis.call('SREM', ck, m) end
        end
      end
    end
    if n >= conc then
      redis.call('RPUSH', lp .. 'held:' .. suffix, id)
      if not held then redis.call('HSET', t, 'held', 'concurrency') end
      return true
    end
  end
  if interval > 0 then
    local rk = lp .. 'rate:' .. suffix
    local st = redis.call('HMGET', rk, 'r', 's')
    local r, s = tonumber(st[1]) or 0, tonumber(st[2]) or 0
    -- A start may come up to half an interval early (at least one tick of the server
    -- clock), so a task that came late lets the next one catch up, and still no window
    -- of one period holds more than N + 1 starts.
    local tol = math.max(LIMIT_TOLERANCE_MS, interval / 2)
    local due
    if held == 'rate' then
      -- its reserved moment came; it starts unless the last start is still too close
      -- (reserved tasks that all came late): then it waits for the next free one
      if s - now > tol then due = s end
    else
      local free = math.max(r, s)
      if free - now > tol then
        due = free  -- reserve the next free moment: later arrivals queue up behind it
        r = free + interval
      else
        r = math.max(free, now) + interval
      end
    end
    if not due then s = math.max(s, now) + interval end
    redis.call('HSET', rk, 'r', string.format('%.4f', r), 's', string.format('%.4f', s))
    redis.call('PEXPIRE', rk, math.ceil(math.max(r, s) - now + interval) + 1000)
    if due then
      due = math.ceil(due)
      redis.call('HSET', t, 'status', 'SCHEDULED', 'due_ms', due, 'held', 'rate')
      redis.call('ZADD', scheduled, due, id)
      return true
    end
  end
  if held then redis.call('HDEL', t, 'held') end
  if ck then redis.call('SADD', ck, id) end
  return false
end

-- ack.lua, fail.lua, and fetch.lua for an expired lease: the task gave its concurrency
-- slot back; the oldest task held for that slot goes to the front of its queue.
local function limits_release(lp, tp, qp, wp, id, spec)
  local _, conc, suffix = limit_parse(spec)
  if conc <= 0 or not suffix then return end
  redis.call('SREM', lp .. 'conc:' .. suffix, id)
  local hk = lp .. 'held:' .. suffix
  while true do
    local other = redis.call('LPOP', hk)
    if not other then return end
    local f = redis.call('HMGET', tp .. other, 'status', 'queue')
    if f[1] == 'PENDING' and f[2] then  -- (one cancelled while it was held is dropped)
      redis.call('LPUSH', qp .. f[2], other)
      wake(wp .. f[2])
      return
    end
  end
end

-- fail.lua, action 'ratelimited' (RateLimited raised in the task): back to the scheduled
-- zset for delay ms, the attempt not counted against max_retries; no failure counted.
local function limits_rate_limited(t, id, scheduled, wake_sched, history, delay_ms, now, ttl_ms)
  local due = now + delay_ms
  redis.call('HINCRBY', t, 'attempts', -1)
  redis.call('HSET', t, 'status', 'RETRYING', 'due_ms', due)
  redis.call('ZADD', scheduled, due, id)
  redis.call('PEXPIRE', history, delay_ms + ttl_ms)
  wake(wake_sched)
end
