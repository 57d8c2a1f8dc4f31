-- Read a queue's per-minute history (see Keys.minutes_prefix) summed into points of
-- ARGV[3] minutes each, so a long range costs the reader a few hundred small maps, not
-- one per minute. Read-only; its cost is one HGETALL per minute in the range.
-- KEYS[1] the queue's minute prefix (minutes:<queue>:, the epoch minute follows)
-- ARGV[1] first epoch minute  ARGV[2] number of points  ARGV[3] minutes per point
-- Returns one flat {field, count, ...} list per point, oldest first.
local first, points, step = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for p = 0, points - 1 do
  local sums, order = {}, {}
  for m = first + p * step, first + (p + 1) * step - 1 do
    local h = redis.call('HGETALL', KEYS[1] .. m)
    for i = 1, #h, 2 do
      local f = h[i]
      if not sums[f] then sums[f] = 0; order[#order + 1] = f end
      sums[f] = sums[f] + tonumber(h[i + 1])
    end
  end
  local flat = {}
  for _, f in ipairs(order) do
    flat[#flat + 1] = f
    flat[#flat + 1] = sums[f]
  end
  out[#out + 1] = flat
end
return out
