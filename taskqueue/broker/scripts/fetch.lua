-- Lease up to ARGV[3] tasks from the highest-priority non-empty queues, after
-- two bounded maintenance steps that any worker may do (both are idempotent):
--   1. tasks whose lease expired (their worker died) go back to the front of
--      their queue with the attempt counted, or to the dead letters when the
--      attempts are spent;
--   2. scheduled tasks (delays, retries) that are due move to their queue.
-- A leased task is LEASED (a reader sees PENDING): it sits in the worker's
-- prefetch buffer until start.lua (or its outcome) says its code started.
-- Each leased task's queue wait (from enqueue, or from the due time of a delay or
-- retry, to now) goes into its queue's metrics hash.
-- With a scan window (ARGV[8] > 0) the worker leases only tasks whose name is in
-- its task set (KEYS[12]); a task it cannot run stays in place for a worker that
-- can (that worker's task-set wake list is pushed), and a task that no live
-- worker serves is parked out of the queue (so nothing waits behind it) until a
-- worker that serves it publishes its task set (heartbeat.lua puts it back), or
-- for ARGV[7] ms from when it was first seen; then it is buried as unknown-task. A task whose cancellation was asked for while a worker held
-- it (it was given back, or that worker died) ends CANCELLED here, never leased.
-- KEYS[1] task prefix  KEYS[2] history prefix  KEYS[3] done prefix
-- KEYS[4] queue prefix KEYS[5] wake prefix    KEYS[6] dead prefix
-- KEYS[7] stats prefix KEYS[8] leases zset    KEYS[9] scheduled zset
-- KEYS[10] paused set KEYS[11] metrics prefix KEYS[12] this worker's task set
-- KEYS[13] servers prefix (ZSET per queue and task name: task-set digest -> expiry ms)
-- KEYS[14] task-set wake prefix  KEYS[15] unserved zset (task id -> first seen ms)
-- KEYS[16] parked prefix (LIST per task name of the tasks no live worker serves)
-- KEYS[17] limit prefix (flow control: a task held back by its rate or concurrency limit
--          leaves the queue until it may run, see _lib_limits.lua)
-- then, last: Keys.workflow_keys (workflows: a task buried or cancelled here tells its dependents)
-- ARGV[1] worker id  ARGV[2] lease ms  ARGV[3] max tasks  ARGV[4] dead max size
-- ARGV[5] dead ttl ms  ARGV[6] maintenance batch  ARGV[7] unserved grace ms
-- ARGV[8] scan window (0: lease whatever comes, no task-set check)  ARGV[9..] queue names, by priority
-- Returns {now, next_due, dropped, taskset_missing, then 6 fields per task:
--          id, payload, signature, attempts, token, queue}
-- taskset_missing is 1 when a scan window was asked for but the caller's task set is
-- not in Redis (it expired or was flushed): nothing is leased, since nothing could be
-- told apart; the caller publishes its set and fetches again.
-- next_due is the earliest scheduled time or lease deadline (-1: none), so an
-- idle worker knows how long it may block.
local tp, hp, dp, qp, wp, deadp, sp = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local leases, scheduled, paused, mp = KEYS[8], KEYS[9], KEYS[10], KEYS[11]
local taskset, servers, setwake, unserved, parked = KEYS[12], KEYS[13], KEYS[14], KEYS[15], KEYS[16]
local lp = KEYS[17]
local worker, lease_ms, want = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local dead_max, dead_ttl, batch = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local grace, window = tonumber(ARGV[7]), tonumber(ARGV[8])
local now = now_ms()
local dropped = 0
local W = wf_keys()  -- workflows

local function dead_args(queue)
  return {task_prefix = tp, history_prefix = hp, done_prefix = dp, dead_key = deadp .. queue,
          stats_key = sp .. queue, metrics_key = mp .. queue, max = dead_max, ttl = dead_ttl}
end

-- 1. Expired leases: the worker that held them stopped heart-beating.
for _, id in ipairs(redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, batch)) do
  redis.call('ZREM', leases, id)
  local t = tp .. id
  local fields = redis.call('HMGET', t, 'queue', 'attempts', 'max_retries', 'status', 'limit')
  if fields[1] and (fields[4] == 'RUNNING' or fields[4] == 'LEASED') then
    if fields[5] then limits_release(lp, tp, qp, wp, id, fields[5]) end  -- flow control
    local attempts, max_retries = tonumber(fields[2]) or 0, tonumber(fields[3]) or 0
    redis.call('RPUSH', hp .. id, '{"event":"lease-expired","at_ms":' .. now ..
      ',"attempt":' .. attempts .. ',"message":"the worker running this attempt stopped renewing its lease"}')
    redis.call('HINCRBY', sp .. fields[1], 'lease_expired', 1)
    if attempts > max_retries then
      local why = 'lease-expired: the task was running on a worker that died, ' .. attempts .. ' times'
      dropped = dropped + bury(id, why, now, dead_args(fields[1]))
      wf_finished(W, id, 'DEAD', why, now, dead_ttl)  -- workflows
    else
      redis.call('HSET', t, 'status', 'PENDING', 'token', '')
      redis.call('LPUSH', qp .. fields[1], id)
      wake(wp .. fields[1])
    end
  end
end

-- 2. Due scheduled tasks, oldest first.
for _, id in ipairs(redis.call('ZRANGEBYSCORE', scheduled, '-inf', now, 'LIMIT', 0, batch)) do
  redis.call('ZREM', scheduled, id)
  local t = tp .. id
  local fields = redis.call('HMGET', t, 'queue', 'status')
  if fields[1] and (fields[2] == 'SCHEDULED' or fields[2] == 'RETRYING') then
    redis.call('HSET', t, 'status', 'PENDING')
    redis.call('RPUSH', qp .. fields[1], id)
    wake(wp .. fields[1])
  end
end

-- Bury a task that no live worker served for the grace period (first seen at since).
local function bury_unserved(id, name, queue, since)
  redis.call('ZREM', unserved, id)
  local why = "unknown-task: no live worker serves a task named '" .. name ..
    "' on queue " .. queue .. ' (waited ' .. math.floor((now - since) / 1000) .. ' s for one)'
  dropped = dropped + bury(id, why, now, dead_args(queue))
  wf_finished(W, id, 'DEAD', why, now, dead_ttl)  -- workflows
end

-- 2b. Parked tasks whose grace ran out: still no live worker serves them.
if window > 0 then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', unserved, '-inf', now - grace, 'LIMIT', 0, batch)) do
    redis.call('ZREM', unserved, id)
    local f = redis.call('HMGET', tp .. id, 'status', 'name', 'queue', 'unserved_ms')
    if f[2] then redis.call('LREM', parked .. f[2], 1, id) end
    if f[1] == 'PENDING' and f[3] then
      bury_unserved(id, f[2] or '', f[3], tonumber(f[4]) or now)
    end
  end
end

-- 3. Lease tasks, highest priority first, FIFO within a queue.
-- Queue entries come from Redis, so anyone who can write there controls them:
-- an entry that is not a well-formed task is buried with a reason, never run,
-- never dropped silently, and never allowed to make this script fail half-way.
local KNOWN = {LEASED = 1, RUNNING = 1, SCHEDULED = 1, RETRYING = 1, SUCCEEDED = 1, FAILED = 1, DEAD = 1, CANCELLED = 1, WAITING = 1}

-- A task id the client can address again: UTF-8 text without braces, at most 512 bytes.
local function valid_id(id)
  local n = #id
  if n == 0 or n > 512 or string.find(id, '[{}]') then return false end
  if not string.find(id, '[\128-\255]') then return true end
  local i = 1
  while i <= n do
    local c = string.byte(id, i)
    local extra, lo, hi = 0, 0x80, 0xBF
    if c < 0x80 then extra = 0
    elseif c >= 0xC2 and c <= 0xDF then extra = 1
    elseif c >= 0xE0 and c <= 0xEF then
      extra = 2
      if c == 0xE0 then lo = 0xA0 elseif c == 0xED then hi = 0x9F end
    elseif c >= 0xF0 and c <= 0xF4 then
      extra = 3
      if c == 0xF0 then lo = 0x90 elseif c == 0xF4 then hi = 0x8F end
    else return false end
    for j = 1, extra do
      local b = string.byte(id, i + j)
      if not b or b < lo or b > hi then return false end
      lo, hi = 0x80, 0xBF
    end
    i = i + extra + 1
  end
  return true
end

-- Keep a bad entry for inspection under an id that is safe to print and to use
-- in a key, whatever bytes the entry holds.
local function bury_entry(queue, raw, reason, has_task)
  local safe = 'bad-entry-' .. queue .. '-' .. redis.call('HINCRBY', sp .. queue, 'bad_entries', 1)
  if has_task then
    redis.call('RENAME', tp .. raw, tp .. safe)
    redis.call('HSET', tp .. safe, 'raw_id', raw, 'queue', queue)
  else
    redis.call('HSET', tp .. safe, 'payload', raw, 'queue', queue, 'name', '', 'attempts', 0,
      'max_retries', 0, 'enqueued_ms', now, 'error', '')
  end
  dropped = dropped + bury(safe, reason, now, dead_args(queue))
end

local out = {now, -1, 0, 0}
local taken = 0
local woken = {}
local count, write_counts = tally()  -- the wait histograms of the tasks leased
-- The leases of this call (deadline, id, ...), written by one ZADD: before anything reads
-- the lease set (a concurrency limit's liveness check) and at the end.
local lease_entries = {}
local function write_leases()
  if #lease_entries > 0 then
    redis.call('ZADD', leases, unpack(lease_entries))
    lease_entries = {}
  end
end

-- Lease one PENDING task: LEASED, a fresh token, the lease deadline, its wait observed.
local function lease(queue, id, fields)
  local t = tp .. id
  local attempts = (tonumber(fields[4]) or 0) + 1  -- digits or absent: consider() checked
  local token = worker .. ':' .. now .. ':' .. attempts
  redis.call('HSET', t, 'status', 'LEASED', 'token', token, 'worker', worker, 'leased_ms', now, 'queue', queue,
    'attempts', attempts)
  if fields[8] then
    redis.call('HDEL', t, 'unserved_ms')
    redis.call('ZREM', unserved, id)
  end
  lease_entries[#lease_entries + 1] = now + lease_ms
  lease_entries[#lease_entries + 1] = id
  if #lease_entries >= 1000 then write_leases() end  -- unpack() has a bounded stack
  local since = math.max(tonumber(fields[6]) or now, tonumber(fields[7]) or 0)
  observe(mp .. queue, 'wait', fields[5], math.max(0, now - since), count)
  out[#out + 1] = id
  out[#out + 1] = fields[1]
  out[#out + 1] = fields[2] or ''
  out[#out + 1] = attempts
  out[#out + 1] = token
  out[#out + 1] = queue
  taken = taken + 1
end

-- A task this worker cannot run: leave it in place for a live worker that can (and
-- wake that worker's task set), or park it out of the queue when nobody serves it.
-- Returns true when the entry leaves the queue.
local function not_mine(queue, id, fields)
  local name = fields[5]
  local live = redis.call('ZRANGEBYSCORE', servers .. queue .. ':' .. name, now, '+inf')
  if #live > 0 then
    for _, digest in ipairs(live) do
      if not woken[digest] then
        woken[digest] = true
        wake(setwake .. digest)
      end
    end
    return false
  end
  local since = tonumber(fields[8]) or now
  if now - since >= grace then
    bury_unserved(id, name, queue, since)
    return true
  end
  if not fields[8] then
    redis.call('HSET', tp .. id, 'unserved_ms', now)
    redis.call('ZADD', unserved, now, id)
  end
  redis.call('RPUSH', parked .. name, id)
  return true
end

-- Decide one queue entry. Returns true when it leaves the queue (leased, buried, stale).
local function consider(queue, id)
  local t = tp .. id
  local fields = redis.call('HMGET', t, 'payload', 'sig', 'status', 'attempts', 'name', 'enqueued_ms',
    'due_ms', 'unserved_ms', 'cancel_requested', 'limit', 'held')
  local status, attempts = fields[3], fields[4]
  if not fields[1] and not status then
    bury_entry(queue, id, 'bad-entry: no task is stored for this queue entry', false)
  elseif not valid_id(id) then
    bury_entry(queue, id, 'bad-entry: the task id is not UTF-8 text without braces (at most 512 bytes)', true)
  elseif status == 'PENDING' and (not fields[1] or (attempts and not string.match(attempts, '^%d%d?%d?%d?%d?%d?%d?%d?%d?$'))) then
    redis.call('HSET', t, 'queue', queue)
    dropped = dropped + bury(id, 'bad-entry: the task has no payload or a malformed attempts field',
      now, dead_args(queue))
  elseif status == 'PENDING' and fields[9] == '1' then
    -- cancel() reached a worker that then gave the task back (or died) before it started
    redis.call('HSET', t, 'status', 'CANCELLED', 'finished_ms', now, 'token', '')
    redis.call('PEXPIRE', t, dead_ttl)
    signal_done(dp .. id, dead_ttl)
    wf_finished(W, id, 'CANCELLED', 'cancelled', now, dead_ttl)  -- workflows
  elseif status == 'PENDING' then
    -- (a task written without a name field is leased: the worker reads the name in its payload)
    if window > 0 and fields[5] and fields[5] ~= '' and redis.call('SISMEMBER', taskset, fields[5]) == 0 then
      return not_mine(queue, id, fields)
    end
    -- flow control (_lib_limits.lua): held back by its rate or concurrency limit
    if fields[10] then
      write_leases()  -- limits_hold counts live holders by their lease
      if limits_hold(lp, tp, scheduled, leases, id, fields[10], fields[11], now) then
        return true
      end
    end
    lease(queue, id, fields)
  elseif not KNOWN[status] then
    redis.call('HSET', t, 'queue', queue)
    dropped = dropped + bury(id, 'bad-entry: the task has no valid status field', now, dead_args(queue))
  end
  -- a known status other than PENDING (cancelled, already final...): a stale entry, dropped
  return true
end

-- Take from one queue: read the head (plus the scan window), remove what was decided
-- (a leading run with one LTRIM, the rest one LREM each), keep what waits for others.
local function take_from(queue)
  local q = qp .. queue
  local kept = 0
  while taken < want do
    local n = want - taken + window
    local entries = redis.call('LRANGE', q, kept, kept + n - 1)
    if #entries == 0 then break end
    local prefix, removed = 0, {}
    for _, id in ipairs(entries) do
      if taken >= want then break end
      if consider(queue, id) then
        if kept == 0 then prefix = prefix + 1 else removed[#removed + 1] = id end
      else
        kept = kept + 1
      end
    end
    if prefix > 0 then redis.call('LTRIM', q, prefix, -1) end
    for _, id in ipairs(removed) do redis.call('LREM', q, 1, id) end
    if #entries < n or (window > 0 and kept >= window) then break end
  end
  if kept == 0 and redis.call('LLEN', q) == 0 then
    redis.call('DEL', wp .. queue)
  end
end

if window > 0 and redis.call('EXISTS', taskset) == 0 then
  out[4] = 1
  want = 0
end

for i = 9, #ARGV do
  if taken >= want then break end
  local queue = ARGV[i]
  if redis.call('SISMEMBER', paused, queue) == 0 then
    take_from(queue)
  end
end

if taken == 0 then
  local next_due = -1
  local s = redis.call('ZRANGE', scheduled, 0, 0, 'WITHSCORES')
  if s[2] then next_due = tonumber(s[2]) end
  local l = redis.call('ZRANGE', leases, 0, 0, 'WITHSCORES')
  if l[2] and (next_due < 0 or tonumber(l[2]) < next_due) then next_due = tonumber(l[2]) end
  out[2] = next_due
end
write_leases()
write_counts()
out[3] = dropped
return out
