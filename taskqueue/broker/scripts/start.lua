-- Mark leased tasks as started (their code is running) and publish the worker's
-- thread states. The worker sends marks only for tasks still running a moment
-- after they started, batched (see the worker's state publisher), so a quick task
-- costs no round trip and goes from LEASED (read as PENDING) straight to its
-- outcome. Fenced by the lease token: a mark for a lease that was lost, or whose
-- outcome is already stored, writes nothing.
-- KEYS[1] task prefix  KEYS[2] this worker's hash
-- ARGV[1] thread states (JSON; '' : leave them), then 3 per task: id, token, ms since its code started
-- Returns one 1 (marked) or 0 (lease no longer held) per task.
local tp = KEYS[1]
local now = now_ms()
if ARGV[1] ~= '' and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], 'info', ARGV[1])
end
local out = {}
for i = 2, #ARGV, 3 do
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
