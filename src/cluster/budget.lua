-- One budget of one client app, shared by every replica: a GCRA per window (per-second, and
-- optionally hourly; one theoretical arrival time each) and a Retry-After pause, decided in one
-- atomic step on Redis's clock. Times are microseconds.
--
-- KEYS[1]  the budget's hash: ts, th (the windows' TATs), pause (end), streak
-- ARGV[1]  'take' | 'charge' | 'pause' | 'end_streak' | 'peek'
-- ARGV[2..5]  per-second interval, per-second tolerance, hourly interval (0: none), hourly
--             tolerance
-- take:   ARGV[6] longest wait accepted   -> {granted 1/0, wait, paused 1/0}
-- charge: (into debt, no check)          -> {1, 0, 0}
-- pause:  ARGV[6] asked pause (-1: default doubling), ARGV[7] cap, ARGV[8] default
--                                         -> {1, pause left, 1}
-- peek:                                   -> {0, pause left, 0}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local key = KEYS[1]
local mode = ARGV[1]
local ivs, tols = tonumber(ARGV[2]), tonumber(ARGV[3])
local ivh, tolh = tonumber(ARGV[4]), tonumber(ARGV[5])
local f = redis.call('HMGET', key, 'ts', 'th', 'pause', 'streak')
local ts = tonumber(f[1]) or 0
local th = tonumber(f[2]) or 0
local pause = tonumber(f[3]) or 0
local streak = tonumber(f[4]) or 0

-- Keeps the hash as long as it holds anything a fresh budget would not: a spent window or a
-- pause (and a second more for the streak).
local function keep()
  local last = math.max(ts, th, pause)
  local ms = math.ceil(math.max(last - now, 0) / 1000) + 1000
  redis.call('PEXPIRE', key, ms)
end

if mode == 'take' then
  local max_wait = tonumber(ARGV[6])
  local at = math.max(now, pause, ts - tols)
  if ivh > 0 then at = math.max(at, th - tolh) end
  local paused = 0
  if pause > now and pause >= at then paused = 1 end
  if at - now > max_wait then
    return {0, at - now, paused}
  end
  ts = math.max(ts, at) + ivs
  if ivh > 0 then th = math.max(th, at) + ivh end
  redis.call('HSET', key, 'ts', ts, 'th', th)
  keep()
  return {1, at - now, paused}
elseif mode == 'charge' then
  ts = math.max(ts, now) + ivs
  if ivh > 0 then th = math.max(th, now) + ivh end
  redis.call('HSET', key, 'ts', ts, 'th', th)
  keep()
  return {1, 0, 0}
elseif mode == 'pause' then
  local asked = tonumber(ARGV[6])
  local cap = tonumber(ARGV[7])
  if asked < 0 then
    asked = tonumber(ARGV[8]) * math.pow(2, math.min(streak, 20))
    streak = streak + 1
    redis.call('HSET', key, 'streak', streak)
  end
  local till = now + math.min(asked, cap)
  if till > pause then
    pause = till
    redis.call('HSET', key, 'pause', pause)
  end
  keep()
  return {1, math.max(pause - now, 0), 1}
elseif mode == 'end_streak' then
  if streak > 0 then redis.call('HDEL', key, 'streak') end
  return {1, 0, 0}
end
return {0, math.max(pause - now, 0), 0}
