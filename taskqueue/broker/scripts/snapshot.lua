-- Read everything a monitor shows, in one round trip and at one instant: queue
-- depths, counters and metrics histograms, live workers, the newest dead
-- letters, the next scheduled tasks, the periodic tasks and the autoscaler
-- counters (a superset of what read_metrics reads). Read-only; its cost depends on the number of
-- queues, live workers, periodic definitions and the two limits, never on how
-- many tasks the queues hold (LLEN and ZCARD are O(1)).
-- KEYS[1] workers zset  KEYS[2] leases zset  KEYS[3] scheduled zset  KEYS[4] paused set
-- KEYS[5] worker prefix KEYS[6] task prefix  KEYS[7] queue prefix    KEYS[8] dead prefix
-- KEYS[9] stats prefix KEYS[10] periodic hash KEYS[11] periodic next-run zset
-- KEYS[12] metrics prefix KEYS[13] autoscaler hash KEYS[14] unserved zset
-- ARGV[1] dead letters to list (newest first, over all queues)
-- ARGV[2] scheduled tasks to list (soonest first)  ARGV[3..] queue names
-- Returns {now_ms, leased count, scheduled count, paused queue names,
--          workers: {id, info JSON, heartbeat_ms}...,
--          queues: {pending, dead letters, {stats hash}, {metrics hash},
--                   {enqueued_ms, due_ms} of the task at the head} per queue,
--          dead: {id, died_ms, name, queue, reason, attempts, error}...,
--          scheduled: {id, due_ms, name, queue, status, attempts}...,
--          periodic documents (HGETALL), periodic next runs (name, ms...),
--          autoscaler hash (HGETALL), unserved count}
-- The leased count includes prefetched tasks: readers count the running ones from the
-- workers' published thread states (their info's slots).
local now = now_ms()
local dead_limit, sched_limit = tonumber(ARGV[1]), tonumber(ARGV[2])

local workers = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
  local h = redis.call('HMGET', KEYS[5] .. id, 'info', 'heartbeat_ms')
  if h[1] then
    workers[#workers + 1] = {id, h[1], h[2] or ''}
  end
end

local queues, candidates = {}, {}
for i = 3, #ARGV do
  local q = ARGV[i]
  local head = redis.call('LINDEX', KEYS[7] .. q, 0)
  local oldest = {}
  if head then
    oldest = redis.call('HMGET', KEYS[6] .. head, 'enqueued_ms', 'due_ms')
  end
  queues[#queues + 1] = {redis.call('LLEN', KEYS[7] .. q), redis.call('ZCARD', KEYS[8] .. q),
    redis.call('HGETALL', KEYS[9] .. q), redis.call('HGETALL', KEYS[12] .. q), oldest}
  if dead_limit > 0 then
    local newest = redis.call('ZREVRANGE', KEYS[8] .. q, 0, dead_limit - 1, 'WITHSCORES')
    for j = 1, #newest, 2 do
      candidates[#candidates + 1] = {newest[j], tonumber(newest[j + 1])}
    end
  end
end

table.sort(candidates, function(a, b) return a[2] > b[2] end)
local dead = {}
for i = 1, math.min(dead_limit, #candidates) do
  local id = candidates[i][1]
  local f = redis.call('HMGET', KEYS[6] .. id, 'name', 'queue', 'reason', 'attempts', 'error')
  dead[#dead + 1] = {id, candidates[i][2], f[1] or '', f[2] or '', f[3] or '', f[4] or '0', f[5] or ''}
end

local scheduled = {}
if sched_limit > 0 then
  local soonest = redis.call('ZRANGE', KEYS[3], 0, sched_limit - 1, 'WITHSCORES')
  for j = 1, #soonest, 2 do
    local id = soonest[j]
    local f = redis.call('HMGET', KEYS[6] .. id, 'name', 'queue', 'status', 'attempts')
    scheduled[#scheduled + 1] = {id, tonumber(soonest[j + 1]), f[1] or '', f[2] or '', f[3] or '',
      f[4] or '0'}
  end
end

return {now, redis.call('ZCARD', KEYS[2]), redis.call('ZCARD', KEYS[3]),
  redis.call('SMEMBERS', KEYS[4]), workers, queues, dead, scheduled,
  redis.call('HGETALL', KEYS[10]), redis.call('ZRANGE', KEYS[11], 0, -1, 'WITHSCORES'),
  redis.call('HGETALL', KEYS[13]), redis.call('ZCARD', KEYS[14])}
