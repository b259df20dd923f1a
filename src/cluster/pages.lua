-- The shared page tier. Times are Redis's, in microseconds. A page is valid only while its
-- iModel's generation and the all-pages generation are the ones it was filled under.
--
-- KEYS[1] the page (hash: v bytes, t stored at, gm, ga), KEYS[2] its fill lock,
-- KEYS[3] the iModel's generation, KEYS[4] the all-pages generation.
-- ARGV[1] 'lookup' | 'store' | 'release'
-- lookup: ARGV[2] freshness, ARGV[3] lock token ('' = do not lock), ARGV[4] lock ms
--   -> {page bytes or '', age or -1, lock (0 not asked, 1 taken, 2 held by another), gm, ga}
-- store: ARGV[2] bytes, ARGV[3] gm seen, ARGV[4] ga seen, ARGV[5] keep ms, ARGV[6] lock token
--   -> 1 stored, 0 refused (a write or purge came since the fill looked)
-- release: ARGV[2] lock token -> 1
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local gm = redis.call('GET', KEYS[3]) or '0'
local ga = redis.call('GET', KEYS[4]) or '0'
local mode = ARGV[1]

local function unlock(token)
  if token ~= '' and redis.call('GET', KEYS[2]) == token then
    redis.call('DEL', KEYS[2])
  end
end

if mode == 'lookup' then
  local p = redis.call('HMGET', KEYS[1], 'v', 't', 'gm', 'ga')
  local body, age = '', -1
  if p[1] and p[3] == gm and p[4] == ga then
    body = p[1]
    age = math.max(now - tonumber(p[2]), 0)
  end
  local lock = 0
  if ARGV[3] ~= '' and (age < 0 or age >= tonumber(ARGV[2])) then
    if redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[4]) then
      lock = 1
    else
      lock = 2
    end
  end
  return {body, age, lock, gm, ga}
elseif mode == 'store' then
  local stored = 0
  if gm == ARGV[3] and ga == ARGV[4] then
    redis.call('HSET', KEYS[1], 'v', ARGV[2], 't', now, 'gm', gm, 'ga', ga)
    redis.call('PEXPIRE', KEYS[1], ARGV[5])
    stored = 1
  end
  unlock(ARGV[6])
  return stored
end
unlock(ARGV[2])
return 1
