-- One call per heartbeat interval per worker process: renew the leases of the
-- tasks it still holds, refresh its registry entry and the task registry,
-- forget dead workers.
-- The task registry: a worker's task set (the names it serves) is a SET under
-- its digest, shared by every process with the same tasks and queues; per queue
-- and name a ZSET says which task sets serve it until when; one ZSET and one
-- HASH list every live task name and what is known of it (default queue,
-- parameters), for `taskqueue tasks` and for enqueueing by name. Tasks parked
-- because no live worker served their name go back to the front of their queue
-- once a worker that serves them (on that queue) publishes its set.
-- KEYS[1] leases zset  KEYS[2] workers zset  KEYS[3] this worker's hash  KEYS[4] task prefix
-- KEYS[5] task set of this worker (SET)  KEYS[6] servers prefix  KEYS[7] task names zset
-- KEYS[8] task definitions hash  KEYS[9] parked prefix (LIST per task name)
-- KEYS[10] queue prefix  KEYS[11] wake prefix  KEYS[12] unserved zset
-- ARGV[1] worker id  ARGV[2] lease ms  ARGV[3] registry ttl ms  ARGV[4] info (JSON)
-- ARGV[5] task-set digest ('' : publish no task set)  ARGV[6] number of queues Q
-- ARGV[7 .. 6+Q] queues served  ARGV[7+Q] number of tasks N
-- then N pairs: task name, definition (JSON)
-- then pairs of task id, token (the leases held)
-- Returns {ids whose cancellation was requested, ids whose lease was lost}
local now = now_ms()
local lease_until = now + tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local digest = ARGV[5]
local nq = tonumber(ARGV[6])
local queues = {}
for i = 7, 6 + nq do queues[#queues + 1] = ARGV[i] end
local nt = tonumber(ARGV[7 + nq])
local first_task = 8 + nq
local first_lease = first_task + 2 * nt

if digest ~= '' then
  local names = {}
  for i = first_task, first_lease - 1, 2 do
    local name = ARGV[i]
    names[#names + 1] = name
    redis.call('HSET', KEYS[8], name, ARGV[i + 1])
    redis.call('ZADD', KEYS[7], 'GT', now + ttl, name)
    for _, queue in ipairs(queues) do
      local s = KEYS[6] .. queue .. ':' .. name
      redis.call('ZADD', s, now + ttl, digest)
      redis.call('ZREMRANGEBYSCORE', s, '-inf', now)
      redis.call('PEXPIRE', s, ttl)
    end
  end
  local serves_queue = {}
  for _, queue in ipairs(queues) do serves_queue[queue] = true end
  for _, name in ipairs(names) do
    local p = KEYS[9] .. name
    if redis.call('LLEN', p) > 0 then
      local ids = redis.call('LRANGE', p, 0, 999)
      local back, order, keep = {}, {}, {}
      for _, id in ipairs(ids) do
        local f = redis.call('HMGET', KEYS[4] .. id, 'status', 'queue')
        if f[1] == 'PENDING' and f[2] and serves_queue[f[2]] then
          if not back[f[2]] then back[f[2]] = {}; order[#order + 1] = f[2] end
          table.insert(back[f[2]], id)
          redis.call('HDEL', KEYS[4] .. id, 'unserved_ms')
          redis.call('ZREM', KEYS[12], id)
        elseif f[1] == 'PENDING' then
          keep[#keep + 1] = id  -- on a queue this worker does not serve: still parked
        end
        -- anything else (cancelled, expired meanwhile): a stale entry, dropped
      end
      redis.call('LTRIM', p, #ids, -1)
      for i = 1, #keep, 500 do
        redis.call('RPUSH', p, unpack(keep, i, math.min(i + 499, #keep)))
      end
      for _, queue in ipairs(order) do
        local list = back[queue]
        for i = #list, 1, -1 do redis.call('LPUSH', KEYS[10] .. queue, list[i]) end
        wake(KEYS[11] .. queue)
      end
    end
  end
  redis.call('DEL', KEYS[5])
  redis.call('SADD', KEYS[5], '')  -- no task is named '': the set exists even when it serves nothing
  for i = 1, #names, 500 do
    redis.call('SADD', KEYS[5], unpack(names, i, math.min(i + 499, #names)))
  end
  redis.call('PEXPIRE', KEYS[5], ttl)
  -- forget names nobody has served for a day (their definitions too)
  for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[7], '-inf', now - 86400000, 'LIMIT', 0, 100)) do
    redis.call('ZREM', KEYS[7], gone)
    redis.call('HDEL', KEYS[8], gone)
  end
end

local cancelled, lost = {}, {}
for i = first_lease, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local fields = redis.call('HMGET', KEYS[4] .. id, 'token', 'cancel_requested')
  if fields[1] == token then
    redis.call('ZADD', KEYS[1], 'XX', lease_until, id)
    if fields[2] == '1' then cancelled[#cancelled + 1] = id end
  else
    lost[#lost + 1] = id
  end
end
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
redis.call('HSET', KEYS[3], 'info', ARGV[4], 'heartbeat_ms', now)
redis.call('PEXPIRE', KEYS[3], ttl)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
return {cancelled, lost}
