-- Apply notices ("dependency X ended S") to dependents of this slot group: the relay
-- of a Redis Cluster (broker/dependencies.py), and the release of a workflow written
-- across groups (its runnable members wait for a 'hold' notice until every group is
-- written). Idempotent: a notice applied twice changes nothing (see _lib_workflow.lua).
-- KEYS[1] .. KEYS[12] Keys.workflow_keys of the dependents' group (see _lib_workflow.lua)
-- ARGV[1] ttl ms of records settled here, then one packed notice each (wf_notice)
-- Returns the number of notices this call posted to its own outbox (dependents of
-- dependents in other groups, for the relay to carry on).
local W = wf_keys()
local now = now_ms()
local ttl = tonumber(ARGV[1])
local before = redis.call('ZCARD', W.outbox)
local work = {}
for i = 2, #ARGV do
  local n = wf_parse(ARGV[i])
  if n then work[#work + 1] = n end
end
wf_apply(W, work, now, ttl)
return redis.call('ZCARD', W.outbox) - before
