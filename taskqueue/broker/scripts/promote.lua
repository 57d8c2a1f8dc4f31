-- One scheduler tick: move due scheduled tasks (delays, retries) to their
-- queues, oldest first, and report which periodic tasks are due. When nothing
-- is due it costs TIME and two one-element ZRANGEs.
-- KEYS[1] scheduled zset  KEYS[2] task prefix  KEYS[3] queue prefix  KEYS[4] wake prefix
-- KEYS[5] periodic-due zset  KEYS[6] periodic hash
-- ARGV[1] most tasks to move  ARGV[2] most due periodic tasks to report
-- ARGV[3] now ms (0: the server clock; tests pass an injected clock)
-- Returns {now, moved, next scheduled due (-1: none), next periodic run after now (-1: none),
--          then 3 fields per due periodic task: name, due ms, stored definition JSON}
-- "next scheduled due" may be <= now when more than ARGV[1] tasks were due.
local now = tonumber(ARGV[3])
if now <= 0 then now = now_ms() end
local max_tasks, max_periodic = tonumber(ARGV[1]), tonumber(ARGV[2])
local tp, qp, wp = KEYS[2], KEYS[3], KEYS[4]

local moved = 0
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if first[2] and tonumber(first[2]) <= now then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, max_tasks)) do
    redis.call('ZREM', KEYS[1], id)
    local t = tp .. id
    local fields = redis.call('HMGET', t, 'queue', 'status')
    if fields[1] and (fields[2] == 'SCHEDULED' or fields[2] == 'RETRYING') then
      redis.call('HSET', t, 'status', 'PENDING')
      redis.call('RPUSH', qp .. fields[1], id)
      wake(wp .. fields[1])
      moved = moved + 1
    end
    -- any other status (cancelled meanwhile, data expired): the entry is stale, drop it
  end
  first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
end

local out = {now, moved, -1, -1}
if first[2] then out[3] = tonumber(first[2]) end

local p = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
if p[2] and tonumber(p[2]) <= now then
  local due = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'WITHSCORES', 'LIMIT', 0, max_periodic)
  for i = 1, #due, 2 do
    out[#out + 1] = due[i]
    out[#out + 1] = due[i + 1]
    out[#out + 1] = redis.call('HGET', KEYS[6], due[i]) or ''
  end
  p = redis.call('ZRANGEBYSCORE', KEYS[5], '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
end
if p[2] then out[4] = tonumber(p[2]) end
return out
