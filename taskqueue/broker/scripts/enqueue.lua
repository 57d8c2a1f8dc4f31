-- Write a batch of tasks (one for enqueue(), all of them for enqueue_many()):
-- for each, its queue (or schedule) entry and its hash. One script, so the
-- batch is atomic: all of it is written or none. Redis does not roll a script
-- back when a command fails half-way, so the types of the keys it will write
-- are checked before anything is written.
-- KEYS[1] task prefix  KEYS[2] queue prefix  KEYS[3] queue wake prefix
-- KEYS[4] scheduled zset  KEYS[5] scheduler wake list  KEYS[6] stats prefix
-- KEYS[7] limit prefix (flow control, _lib_limits.lua)  KEYS[8] limits index hash
-- ARGV: 11 per task: id, payload, queue, task name, max_retries, signature ('' unsigned),
--       delay ms (<0: none), eta ms (0: none), nonce of the request that carries it,
--       limit spec ('' none: see _lib_limits.lua), dedup spec ('' none: unique_for, debounce)
-- Returns one 1 per task written, 0 when a task with that id exists already, or the id
-- of the existing task a unique or debounced request collapsed into. The
-- same request repeated (its reply was lost with a dropped connection and the
-- client sent it again) finds its own nonce on its tasks and returns 1 for them.
local tp, qp, wp, scheduled, wake_sched, sp = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local STRIDE = 11
local function expect(key, kind)
  local t = redis.call('TYPE', key)
  t = t.ok or t
  if t ~= 'none' and t ~= kind then
    return redis.error_reply('WRONGTYPE ' .. key .. ' holds a ' .. t .. ', not a ' .. kind ..
      '; nothing was enqueued')
  end
end
-- A lone task without dedup (every delay()) skips these checks: its one write that can
-- meet a key of the wrong type (its queue entry, or its schedule entry) goes first, in
-- pcall, and a refusal removes the hash written before it (see first_write).
local lone = #ARGV == STRIDE and ARGV[11] == ''
if not lone then
  local checked = {}
  for i = 1, #ARGV, STRIDE do
    local queue = ARGV[i + 2]
    if not checked[queue] then
      checked[queue] = true
      local err = expect(qp .. queue, 'list')
      if err then return err end
    end
  end
  local err = expect(scheduled, 'zset')
  if err then return err end
end
-- A lone task's queue or schedule write; nil when it was refused, after undoing the task's
-- hash (new: EXISTS said so), with the error expect() would have given.
local function first_write(key, kind, written, ...)
  local ok = redis.pcall(...)
  if type(ok) == 'table' and ok.err then
    if written then redis.call('DEL', written) end
    return expect(key, kind) or ok
  end
end

local now = now_ms()
local out, pending, queues, counts, scheduled_n = {}, {}, {}, {}, 0
for i = 1, #ARGV, STRIDE do
  local id, queue, nonce = ARGV[i], ARGV[i + 2], ARGV[i + 8]
  local t = tp .. id
  -- flow control (_lib_limits.lua): a unique or debounced call may join an existing task
  local joined = false
  if ARGV[i + 10] ~= '' and redis.call('EXISTS', t) == 0 then
    joined = limits_dedup(KEYS[7], tp, scheduled, ARGV[i + 10], id, ARGV[i + 1], ARGV[i + 5], now)
  end
  if joined then
    out[#out + 1] = joined
  elseif redis.call('EXISTS', t) == 1 then  -- also catches an id repeated in the batch
    out[#out + 1] = redis.call('HGET', t, 'nonce') == nonce and 1 or 0
  else
    local delay, eta = tonumber(ARGV[i + 6]), tonumber(ARGV[i + 7])
    local status, due = 'PENDING', ''
    if delay >= 0 or eta > 0 then
      due = eta > 0 and eta or now + delay
      status = 'SCHEDULED'
      if lone then
        local err = first_write(scheduled, 'zset', nil, 'ZADD', scheduled, due, id)
        if err then return err end
      else
        redis.call('ZADD', scheduled, due, id)
      end
      scheduled_n = scheduled_n + 1
    else
      if not pending[queue] then
        pending[queue] = {}
        queues[#queues + 1] = queue
      end
      local ids = pending[queue]
      ids[#ids + 1] = id
    end
    redis.call('HSET', t, 'payload', ARGV[i + 1], 'queue', queue, 'name', ARGV[i + 3],
      'max_retries', ARGV[i + 4], 'sig', ARGV[i + 5], 'attempts', 0, 'enqueued_ms', now,
      'token', '', 'status', status, 'due_ms', due, 'nonce', nonce)
    if ARGV[i + 9] ~= '' then  -- flow control: the limits the fetch applies to it
      redis.call('HSET', t, 'limit', ARGV[i + 9])
      limits_index(KEYS[8], ARGV[i + 9], ARGV[i + 3])
    end
    counts[queue] = (counts[queue] or 0) + 1
    out[#out + 1] = 1
  end
end
local function wake_n(key, n)
  local tokens = {}
  for j = 1, math.min(n, 64) do tokens[j] = '1' end
  if redis.call('RPUSH', key, unpack(tokens)) > 64 then  -- nobody listened for a while
    redis.call('LTRIM', key, 0, 63)
  end
end
for _, queue in ipairs(queues) do
  local ids = pending[queue]
  if lone then
    local err = first_write(qp .. queue, 'list', tp .. ids[1], 'RPUSH', qp .. queue, ids[1])
    if err then return err end
  else
    for j = 1, #ids, 500 do
      redis.call('RPUSH', qp .. queue, unpack(ids, j, math.min(j + 499, #ids)))
    end
  end
  wake_n(wp .. queue, #ids)
end
if scheduled_n > 0 then
  wake_n(wake_sched, 1)
end
for queue, n in pairs(counts) do
  redis.call('HINCRBY', sp .. queue, 'enqueued', n)
end
return out
