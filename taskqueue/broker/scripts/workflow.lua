-- Write the part of a workflow (chain, group, chord, depends_on) that lives in this slot
-- group, in one call, so it is written whole or not at all: the runnable members through
-- enqueue.lua's own body (broker/scripts.py wraps it as plain_enqueue(KEYS, ARGV), so they
-- are written exactly as enqueue() writes a task), the WAITING members, the edges from
-- each dependency in this group to its dependents, and the workflow's record.
-- Nothing is written when a dependency named from outside the workflow is not stored.
-- KEYS[1] .. KEYS[ARGV[1]] the keys of enqueue.lua, then: workflow prefix, workflows zset,
--   then Keys.workflow_keys (see _lib_workflow.lua)
-- ARGV[1] number of enqueue.lua keys  ARGV[2] number of enqueue.lua arguments,
--   then those arguments (the runnable members),
--   then: ttl ms (records of tasks cancelled at once), workflow id ('' none), its kind,
--   its members (JSON), its total, its queue;
--   then a count and that many ids of dependencies that must exist (from outside);
--   then a count and 11 fields per WAITING member: id, payload, queue, task name,
--   max_retries, signature, nonce, delay ms (-1: none), on_dep_fail, dependencies (JSON,
--   for readers), the ids it waits for (NUL-separated);
--   then a count and 2 fields per edge: the dependency's id, the dependents-list entry.
-- Returns enqueue.lua's reply for the runnable members, or an error naming a missing
-- dependency ('NODEP <id>') or a WAITING member whose id is taken ('EXISTS <id>'): then
-- nothing was written.
local nk, na = tonumber(ARGV[1]), tonumber(ARGV[2])
local ek, ea = {}, {}
for i = 1, nk do ek[i] = KEYS[i] end
for i = 1, na do ea[i] = ARGV[2 + i] end
local wf_prefix, wf_index = KEYS[nk + 1], KEYS[nk + 2]
local W = wf_keys()
local p = 3 + na
local ttl, wf_id, wf_kind, wf_members, wf_total, wf_queue =
  tonumber(ARGV[p]), ARGV[p + 1], ARGV[p + 2], ARGV[p + 3], ARGV[p + 4], ARGV[p + 5]
p = p + 6
local n_must = tonumber(ARGV[p])
for i = 1, n_must do
  local id = ARGV[p + i]
  if redis.call('EXISTS', W.tp .. id) == 0 then
    return redis.error_reply('NODEP ' .. id .. ' is not stored; nothing was enqueued')
  end
end
p = p + n_must + 1
for j = 0, tonumber(ARGV[p]) - 1 do
  local id = ARGV[p + 1 + j * 11]
  if redis.call('EXISTS', W.tp .. id) == 1 then
    return redis.error_reply('EXISTS ' .. id .. ' is the id of a stored task; nothing was enqueued')
  end
end

local out = plain_enqueue(ek, ea)
if type(out) == 'table' and out.err then return out end

local now = now_ms()
local n_wait = tonumber(ARGV[p])
local counts = {}
for j = 0, n_wait - 1 do
  local b = p + 1 + j * 11
  local id, queue = ARGV[b], ARGV[b + 2]
  local t = W.tp .. id
  redis.call('HSET', t, 'payload', ARGV[b + 1], 'queue', queue, 'name', ARGV[b + 3],
    'max_retries', ARGV[b + 4], 'sig', ARGV[b + 5], 'attempts', 0, 'enqueued_ms', now,
    'token', '', 'status', 'WAITING', 'due_ms', '', 'nonce', ARGV[b + 6], 'wf_delay', ARGV[b + 7],
    'on_dep_fail', ARGV[b + 8], 'deps', ARGV[b + 9], 'wf_id', wf_id)
  local awaited = {}
  local rest = ARGV[b + 10]
  local pos = 1
  while true do
    local k = string.find(rest, WF_SEP, pos, true)
    if not k then
      if pos <= #rest then awaited[#awaited + 1] = string.sub(rest, pos) end
      break
    end
    awaited[#awaited + 1] = string.sub(rest, pos, k - 1)
    pos = k + 1
  end
  for c = 1, #awaited, 500 do
    redis.call('SADD', W.deps .. id, unpack(awaited, c, math.min(c + 499, #awaited)))
  end
  redis.call('SADD', W.waiting .. queue, id)
  counts[queue] = (counts[queue] or 0) + 1
end
for queue, n in pairs(counts) do
  redis.call('HINCRBY', W.sp .. queue, 'enqueued', n)
end
p = p + 1 + n_wait * 11

local n_edges = tonumber(ARGV[p])
for j = 0, n_edges - 1 do
  wf_link(W, ARGV[p + 1 + j * 2], ARGV[p + 2 + j * 2], now, ttl)
end

if wf_id ~= '' then
  redis.call('HSET', wf_prefix .. wf_id, 'kind', wf_kind, 'created_ms', now, 'members', wf_members,
    'total', wf_total, 'queue', wf_queue)
  redis.call('PEXPIRE', wf_prefix .. wf_id, ttl * 2)
  redis.call('ZADD', wf_index, now, wf_id)
  redis.call('ZREMRANGEBYSCORE', wf_index, '-inf', now - ttl * 2)
end
return out
