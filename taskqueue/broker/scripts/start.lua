-- Mark leased tasks as started: their code is running. The worker sends these
-- marks only for tasks still running a moment after they started (see the
-- worker's status publisher), batched, so a quick task costs no round trip and
-- goes from LEASED (read as PENDING) straight to its outcome. Fenced by the
-- lease token: a mark for a lease that was lost, or an outcome already stored,
-- writes nothing.
-- KEYS[1] task prefix
-- ARGV: 3 per task: id, token, ms since its code started
-- Returns one 1 (marked) or 0 (lease no longer held) per task.
local tp = KEYS[1]
local now = now_ms()
local out = {}
for i = 1, #ARGV, 3 do
  local t = tp .. ARGV[i]
  local f = redis.call('HMGET', t, 'token', 'status')
  if f[1] == ARGV[i + 1] and (f[2] == 'LEASED' or f[2] == 'RUNNING') then
    redis.call('HSET', t, 'status', 'RUNNING', 'started_ms', now - tonumber(ARGV[i + 2]))
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
