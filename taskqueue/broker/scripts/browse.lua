-- Read one page of an index of tasks (a queue list, the scheduled, leases or a
-- dead-letter zset) with the fields the dashboard shows, in one round trip.
-- Filters (task name, status) are applied while reading, and the read is
-- bounded: it looks at no more than ARGV[4] entries, and says where it stopped,
-- so a filter over a long index costs a bounded time per page, never a full scan.
-- Read-only.
-- KEYS[1] the index (list or zset)  KEYS[2] task prefix
-- ARGV[1] 'list' (head first), 'zset' (lowest score first) or 'zrev' (highest first)
-- ARGV[2] offset of the first entry to look at  ARGV[3] most rows to return
-- ARGV[4] most entries to look at  ARGV[5] task name ('' any)  ARGV[6] status ('' any)
-- Returns {entries in the index, offset to continue from (-1: the end was reached),
--          rows: {id, score ('' for a list), the task's fields as FIELDS below}...}
local FIELDS = {'status', 'queue', 'name', 'attempts', 'max_retries', 'payload', 'error', 'reason',
  'enqueued_ms', 'started_ms', 'finished_ms', 'due_ms', 'runtime_ms', 'worker'}
local kind, offset, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local budget, name, status = tonumber(ARGV[4]), ARGV[5], ARGV[6]
local total
if kind == 'list' then total = redis.call('LLEN', KEYS[1]) else total = redis.call('ZCARD', KEYS[1]) end
local rows, pos, looked = {}, offset, 0
local step = (name == '' and status == '') and limit or 100
while #rows < limit and looked < budget and pos < total do
  local n = math.min(step, budget - looked)
  local chunk
  if kind == 'list' then
    chunk = redis.call('LRANGE', KEYS[1], pos, pos + n - 1)
  elseif kind == 'zset' then
    chunk = redis.call('ZRANGE', KEYS[1], pos, pos + n - 1, 'WITHSCORES')
  else
    chunk = redis.call('ZREVRANGE', KEYS[1], pos, pos + n - 1, 'WITHSCORES')
  end
  local width = kind == 'list' and 1 or 2
  if #chunk == 0 then break end
  for i = 1, #chunk, width do
    if #rows >= limit then break end
    local id = chunk[i]
    pos = pos + 1
    looked = looked + 1
    local f = redis.call('HMGET', KEYS[2] .. id, unpack(FIELDS))
    if (name == '' or f[3] == name) and (status == '' or f[1] == status) then
      local row = {id, width == 2 and chunk[i + 1] or ''}
      for j = 1, #FIELDS do row[#row + 1] = f[j] or '' end
      rows[#rows + 1] = row
    end
  end
end
if pos >= total then pos = -1 end
return {total, pos, rows}
