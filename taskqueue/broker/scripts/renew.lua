-- The part of a worker's heartbeat that belongs to one slot group of queues (on a
-- single server: all of them; on a cluster: one queue): renew the leases of the
-- tasks it holds there, publish its task set for the fetch script, say which task
-- sets serve each (queue, task name), and put back at the front of their queue the
-- tasks parked because no live worker served their name, now that one does.
-- The namespace-wide part (worker registry, task names) is heartbeat.lua.
-- KEYS[1] leases zset  KEYS[2] task prefix  KEYS[3] this worker's task set (SET)
-- KEYS[4] servers prefix (ZSET per queue and task name)  KEYS[5] parked prefix (LIST per task name)
-- KEYS[6] queue prefix  KEYS[7] wake prefix  KEYS[8] unserved zset
-- ARGV[1] lease ms  ARGV[2] registry ttl ms  ARGV[3] task-set digest ('' : publish no task set)
-- ARGV[4] number of queues Q  ARGV[5 .. 4+Q] queues served (of this group)
-- ARGV[5+Q] number of task names N, then N task names, then pairs of task id, token (leases held)
-- Returns {ids whose cancellation was requested, ids whose lease was lost}
local now = now_ms()
local lease_until = now + tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local digest = ARGV[3]
local nq = tonumber(ARGV[4])
local queues = {}
for i = 5, 4 + nq do queues[#queues + 1] = ARGV[i] end
local nt = tonumber(ARGV[5 + nq])
local names = {}
for i = 6 + nq, 5 + nq + nt do names[#names + 1] = ARGV[i] end
local first_lease = 6 + nq + nt

if digest ~= '' then
  local serves_queue = {}
  for _, queue in ipairs(queues) do serves_queue[queue] = true end
  for _, name in ipairs(names) do
    for _, queue in ipairs(queues) do
      local s = KEYS[4] .. queue .. ':' .. name
      redis.call('ZADD', s, now + ttl, digest)
      redis.call('ZREMRANGEBYSCORE', s, '-inf', now)
      redis.call('PEXPIRE', s, ttl)
    end
    local p = KEYS[5] .. name
    if redis.call('LLEN', p) > 0 then
      local ids = redis.call('LRANGE', p, 0, 999)
      local back, order, keep = {}, {}, {}
      for _, id in ipairs(ids) do
        local f = redis.call('HMGET', KEYS[2] .. id, 'status', 'queue')
        if f[1] == 'PENDING' and f[2] and serves_queue[f[2]] then
          if not back[f[2]] then back[f[2]] = {}; order[#order + 1] = f[2] end
          table.insert(back[f[2]], id)
          redis.call('HDEL', KEYS[2] .. id, 'unserved_ms')
          redis.call('ZREM', KEYS[8], id)
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
        for i = #list, 1, -1 do redis.call('LPUSH', KEYS[6] .. queue, list[i]) end
        wake(KEYS[7] .. queue)
      end
    end
  end
  redis.call('DEL', KEYS[3])
  redis.call('SADD', KEYS[3], '')  -- no task is named '': the set exists even when it serves nothing
  for i = 1, #names, 500 do
    redis.call('SADD', KEYS[3], unpack(names, i, math.min(i + 499, #names)))
  end
  redis.call('PEXPIRE', KEYS[3], ttl)
end

local cancelled, lost = {}, {}
for i = first_lease, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local fields = redis.call('HMGET', KEYS[2] .. id, 'token', 'cancel_requested')
  if fields[1] == token then
    redis.call('ZADD', KEYS[1], 'XX', lease_until, id)
    if fields[2] == '1' then cancelled[#cancelled + 1] = id end
  else
    lost[#lost + 1] = id
  end
end
return {cancelled, lost}
