-- Workflows (DESIGN 10): a task WAITING for dependencies, decided by the script that
-- stores a dependency's final outcome, in the same call. Prepended after _lib.lua.
--
-- A script that may settle a task passes Keys.workflow_keys LAST in its KEYS; wf_keys()
-- reads them; each script documents its own KEYS, these are its last twelve:
-- KEYS[1] .. KEYS[12] of wf_keys():
--   task prefix, history prefix, done prefix, queue prefix, wake prefix, scheduled zset,
--   scheduler wake list, stats prefix, deps prefix, dependents prefix, outbox, waiting prefix.
-- Per task X in its group: dependents:X lists its dependents, one entry
-- "task prefix NUL queue NUL id NUL input index NUL wants result (0/1)". Per WAITING
-- task D: deps:D is the set of dependency ids D still waits for; D's hash holds
-- on_dep_fail ('cancel', 'run', 'fail'), wf_delay (ms, -1: none) and, for each input,
-- 'in.<index>' (the result of that dependency, msgpack).
--
-- Exactly once: a notice "X ended S" is applied to D by SREM X from deps:D; only the
-- call whose SREM removed X acts on it, and only the call that empties the set while D
-- is WAITING releases D (and D is PENDING from then on). A notice applied twice, or
-- one that arrives after D was cancelled, changes nothing.
--
-- On a single server every group is the same: a dependent's notice is applied here,
-- in the outcome's own call. On a Redis Cluster a dependent in another slot group gets
-- a notice in this group's outbox (a ZSET scored by time), which a relay applies to
-- the dependent's group with wf_apply.lua and then removes (broker/dependencies.py).

local WF_NKEYS = 12
local WF_SEP = '\0'
local WF_FINAL = {SUCCEEDED = 1, FAILED = 1, DEAD = 1, CANCELLED = 1}

local function wf_keys()
  local n = #KEYS - WF_NKEYS
  return {tp = KEYS[n + 1], hp = KEYS[n + 2], dp = KEYS[n + 3], qp = KEYS[n + 4], wp = KEYS[n + 5],
    scheduled = KEYS[n + 6], wake_sched = KEYS[n + 7], sp = KEYS[n + 8], deps = KEYS[n + 9],
    dependents = KEYS[n + 10], outbox = KEYS[n + 11], waiting = KEYS[n + 12]}
end

-- s split at its first n - 1 separators (the last part may hold anything, result bytes too).
local function wf_split(s, n)
  local out, pos = {}, 1
  for i = 1, n - 1 do
    local j = string.find(s, WF_SEP, pos, true)
    if not j then return nil end
    out[i] = string.sub(s, pos, j - 1)
    pos = j + 1
  end
  out[n] = string.sub(s, pos)
  return out
end

-- A notice: dependent queue, dependent id, dependency id, its task name, its status,
-- input index, wants result, root cause id, then info (result bytes, or a reason).
local function wf_notice(n)
  return table.concat({n.queue, n.id, n.from, n.from_name, n.status, n.idx, n.wants, n.cause, n.info}, WF_SEP)
end

local function wf_parse(s)
  local p = wf_split(s, 9)
  if not p then return nil end
  return {queue = p[1], id = p[2], from = p[3], from_name = p[4], status = p[5], idx = p[6],
    wants = p[7], cause = p[8], info = p[9]}
end

-- Make a WAITING task runnable: its queue, or the scheduled set when it has a delay.
local function wf_release(W, id, queue, delay, now)
  local t = W.tp .. id
  redis.call('DEL', W.deps .. id)
  redis.call('SREM', W.waiting .. queue, id)
  redis.call('HINCRBY', t, 'wf_released', 1)  -- 1 for ever: the proof of "released exactly once"
  if delay and delay >= 0 then
    redis.call('HSET', t, 'status', 'SCHEDULED', 'due_ms', now + delay, 'enqueued_ms', now)
    redis.call('ZADD', W.scheduled, now + delay, id)
    wake(W.wake_sched)
  else
    redis.call('HSET', t, 'status', 'PENDING', 'enqueued_ms', now)
    redis.call('RPUSH', W.qp .. queue, id)
    wake(W.wp .. queue)
  end
end

-- Queue (here) or post (outbox) a notice for every dependent of `id`, which just ended
-- with `status`; `info` is its result (SUCCEEDED) or why it ended.
local function wf_collect(W, id, status, info, cause, now, ttl, work)
  local list = W.dependents .. id
  local entries = redis.call('LRANGE', list, 0, -1)
  if #entries == 0 then return end
  redis.call('PEXPIRE', list, ttl)
  local name = redis.call('HGET', W.tp .. id, 'name') or ''
  for _, entry in ipairs(entries) do
    local e = wf_split(entry, 5)
    if e then
      local n = {queue = e[2], id = e[3], from = id, from_name = name, status = status, idx = e[4],
        wants = e[5], cause = cause, info = info}
      if status == 'SUCCEEDED' and e[5] ~= '1' then n.info = '' end
      if e[1] == W.tp then
        work[#work + 1] = n
      else
        redis.call('ZADD', W.outbox, now, wf_notice(n))
      end
    end
  end
end

-- Apply notices to dependents of this group, and what follows from them (a dependent
-- cancelled or failed by its policy notifies its own dependents: a work list, not
-- recursion, so a chain of any length fits).
local function wf_apply(W, work, now, ttl)
  local i = 1
  while i <= #work do
    local n = work[i]
    i = i + 1
    local t = W.tp .. n.id
    if redis.call('SREM', W.deps .. n.id, n.from) == 1 then
      local f = redis.call('HMGET', t, 'status', 'on_dep_fail', 'queue', 'wf_delay')
      if f[1] == 'WAITING' then
        local ok = n.status == 'SUCCEEDED'
        if ok and n.wants == '1' then
          redis.call('HSET', t, 'in.' .. n.idx, n.info)
        end
        if not ok and f[2] ~= 'run' then
          local final = f[2] == 'fail' and 'FAILED' or 'CANCELLED'
          local reason = 'dependency ' .. n.from .. ' (' .. n.from_name .. ') ended ' .. n.status
          if n.info ~= '' then reason = reason .. ': ' .. n.info end
          redis.call('HSET', t, 'status', final, 'reason', reason, 'finished_ms', now, 'token', '',
            'wf_cause', n.cause)
          redis.call('PEXPIRE', t, ttl)
          redis.call('PEXPIRE', W.hp .. n.id, ttl)
          redis.call('DEL', W.deps .. n.id)
          redis.call('SREM', W.waiting .. (f[3] or ''), n.id)
          redis.call('HINCRBY', W.sp .. (f[3] or ''), 'dependency_' .. string.lower(final), 1)
          signal_done(W.dp .. n.id, ttl)
          wf_collect(W, n.id, final, reason, n.cause, now, ttl, work)
        elseif redis.call('SCARD', W.deps .. n.id) == 0 then
          wf_release(W, n.id, f[3], tonumber(f[4]), now)
        end
      end
    end
  end
end

-- The hook of every outcome script: task `id` (of this group) just ended with `status`.
-- `info`: its result bytes when SUCCEEDED, else its reason ('' when none).
local function wf_finished(W, id, status, info, now, ttl)
  local work = {}
  local cause = id
  if status ~= 'SUCCEEDED' then
    cause = redis.call('HGET', W.tp .. id, 'wf_cause') or id
  end
  wf_collect(W, id, status, info or '', cause, now, ttl, work)
  if #work > 0 then wf_apply(W, work, now, ttl) end
end

-- Record that task `from` (of this group) has a dependent; when `from` is final already
-- (or gone), notify at once. `entry` is the dependents-list entry (see the header).
local function wf_link(W, from, entry, now, ttl)
  local f = redis.call('HMGET', W.tp .. from, 'status', 'result', 'reason')
  if f[1] and not WF_FINAL[f[1]] then
    redis.call('RPUSH', W.dependents .. from, entry)
    redis.call('HSET', W.tp .. from, 'wf', '1')
    return
  end
  if f[1] then  -- listed all the same, for readers (h.dependents); it expires with the task
    redis.call('RPUSH', W.dependents .. from, entry)
    local left = redis.call('PTTL', W.tp .. from)
    if left > 0 then redis.call('PEXPIRE', W.dependents .. from, left) end
  end
  local e = wf_split(entry, 5)
  local status = f[1] or 'EXPIRED'
  local info = status == 'SUCCEEDED' and (e[5] == '1' and (f[2] or '') or '') or (f[3] or '')
  local cause = from
  if status ~= 'SUCCEEDED' then cause = redis.call('HGET', W.tp .. from, 'wf_cause') or from end
  local n = {queue = e[2], id = e[3], from = from, from_name = redis.call('HGET', W.tp .. from, 'name') or '',
    status = status, idx = e[4], wants = e[5], cause = cause, info = info}
  if e[1] == W.tp then
    wf_apply(W, {n}, now, ttl)
  else
    redis.call('ZADD', W.outbox, now, wf_notice(n))
  end
end
