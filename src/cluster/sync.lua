-- A write or purge: raise the generation (an iModel's or all pages'), count the change, and
-- announce it, in one step. A generation is the Redis time and the change count, so it never
-- repeats even after its key expired.
-- KEYS[1] the generation, KEYS[2] the change counter
-- ARGV[1] channel, ARGV[2] kind ('i' iModel, 'a' all), ARGV[3] iModel id, ARGV[4] keep ms
-- (0: keep forever)  -> the change count
local t = redis.call('TIME')
local n = redis.call('INCR', KEYS[2])
local generation = t[1] .. string.format('%06d', tonumber(t[2])) .. '.' .. n
if tonumber(ARGV[4]) > 0 then
  redis.call('SET', KEYS[1], generation, 'PX', ARGV[4])
else
  redis.call('SET', KEYS[1], generation)
end
redis.call('PUBLISH', ARGV[1], ARGV[2] .. ':' .. n .. ':' .. ARGV[3])
return n
