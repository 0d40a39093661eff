"""The Lua scripts that make each Redis counter operation atomic.

Redis runs a script without interleaving any other command, so "check every
limit, then take everything" cannot race with another gateway instance. Money is
in integer nano-dollars (exact in Lua's doubles up to 9e15, i.e. $9M); times are
epoch seconds passed in by the caller, so tests can drive the clock.

Key layout under the instance prefix ``P``:
  P rpm:<key>          zset   one member per admitted request, scored by its time
  P tpm:<key>:<n>      string tokens used in fixed window n
  P par:<key>          zset   one member per call in flight, scored by lease expiry
  P bud:<scope>        hash   spend, reserved, reset_at of a budget's period
  P res:<scope>        zset   "<ticket>:<amount>" per reservation, scored by lease expiry
  P fin:<ticket>       string set when a call is finished (a few minutes), against double counting
  P adm:<ticket>       string the amount reserved when less than asked (one lease), for retries
"""

from __future__ import annotations

# KEYS: rpm zset, tpm counter, parallel zset, clamp marker, then (budget hash,
#       reservation zset) per scope
# ARGV: now, window, rpm limit, tpm limit, parallel limit (-1: none), lease ttl, ticket,
#       amount, tpm retry seconds, then (max budget, period or 0) per scope
# Reply: {'ok', rpm used, tpm used, amount reserved} or a refusal (see ``refuse``).
ADMIT = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local rpm_limit = tonumber(ARGV[3])
local tpm_limit = tonumber(ARGV[4])
local par_limit = tonumber(ARGV[5])
local ttl = tonumber(ARGV[6])
local ticket = ARGV[7]
local amount = tonumber(ARGV[8])
local nscopes = (#KEYS - 4) / 2

-- a delivery repeated by a client retry finds its own entries: admitted already
-- (the script is atomic, so one entry found means all of them were taken)
if nscopes > 0 then
  if redis.call('ZSCORE', KEYS[6], ticket .. ':' .. ARGV[8]) then
    return {'ok', -1, -1, ARGV[8]}
  end
  local clamped = redis.call('GET', KEYS[4])
  if clamped then return {'ok', -1, -1, clamped} end
elseif (rpm_limit >= 0 and redis.call('ZSCORE', KEYS[1], ticket))
    or (par_limit >= 0 and redis.call('ZSCORE', KEYS[3], ticket)) then
  return {'ok', -1, -1, '0'}
end

for i = 1, nscopes do
  if redis.call('HEXISTS', KEYS[3 + 2 * i], 'spend') == 0 then
    local missing = {'seed'}
    for j = i, nscopes do
      if redis.call('HEXISTS', KEYS[3 + 2 * j], 'spend') == 0 then
        missing[#missing + 1] = j
      end
    end
    return missing
  end
end

local rpm_used = -1
if rpm_limit >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  rpm_used = redis.call('ZCARD', KEYS[1])
end
local tpm_used = -1
if tpm_limit >= 0 then
  tpm_used = tonumber(redis.call('GET', KEYS[2]) or '0')
end
local function refuse(reason, retry, scope, spent, reserved)
  return {reason, rpm_used, tpm_used, string.format('%.6f', retry), scope or 0,
          spent or 0, reserved or 0}
end

if rpm_limit >= 0 and rpm_used >= rpm_limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  local retry = window
  if oldest[2] then retry = tonumber(oldest[2]) + window - now end
  return refuse('rpm', retry)
end
if tpm_limit >= 0 and tpm_used >= tpm_limit then
  return refuse('tpm', tonumber(ARGV[9]))
end
if par_limit >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= par_limit then
    return refuse('parallel', 1)
  end
end

-- admitted while some of every budget is unreserved; reserves at most what is left
local take = amount
for i = 1, nscopes do
  local budget, leases = KEYS[3 + 2 * i], KEYS[4 + 2 * i]
  local max = tonumber(ARGV[8 + 2 * i])
  local period = tonumber(ARGV[9 + 2 * i])
  local stale = redis.call('ZRANGEBYSCORE', leases, '-inf', now)
  if #stale > 0 then
    local freed = 0
    for _, member in ipairs(stale) do
      freed = freed + tonumber(string.match(member, ':(%d+)$'))
    end
    if freed > 0 then
      redis.call('HINCRBY', budget, 'reserved', string.format('-%d', freed))
    end
    redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
  end
  local state = redis.call('HMGET', budget, 'spend', 'reserved', 'reset_at')
  local spent = tonumber(state[1])
  local reserved = tonumber(state[2] or '0')
  local reset_at = tonumber(state[3] or '0')
  if period > 0 then
    if reset_at <= 0 then
      reset_at = now + period
      redis.call('HSET', budget, 'reset_at', string.format('%.6f', reset_at))
    elseif now >= reset_at then
      reset_at = reset_at + period * (math.floor((now - reset_at) / period) + 1)
      spent = 0
      redis.call('HSET', budget, 'spend', 0, 'reset_at', string.format('%.6f', reset_at))
    end
  end
  if spent + reserved >= max then
    local retry = 0
    if period > 0 then retry = reset_at - now end
    return refuse('budget', retry, i, spent, reserved)
  end
  if max - spent - reserved < take then take = max - spent - reserved end
end

if rpm_limit >= 0 then
  redis.call('ZADD', KEYS[1], now, ticket)
  redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
end
if par_limit >= 0 then
  redis.call('ZADD', KEYS[3], now + ttl, ticket)
  redis.call('PEXPIRE', KEYS[3], math.ceil(ttl * 1000))
end
local taken = string.format('%d', take)
if take < amount then
  -- the reservation's member no longer names the amount asked: remember it for a retry
  redis.call('SET', KEYS[4], taken, 'PX', math.ceil(ttl * 1000))
end
local member = ticket .. ':' .. taken
for i = 1, nscopes do
  redis.call('HINCRBY', KEYS[3 + 2 * i], 'reserved', taken)
  redis.call('ZADD', KEYS[4 + 2 * i], now + ttl, member)
end
return {'ok', rpm_used, tpm_used, taken}
"""

# KEYS: done marker, tpm counter, parallel zset, then (budget hash, reservation zset) per scope
# ARGV: tokens, tpm counter ttl in ms, ticket, amount, cost, done marker ttl in ms
# The done marker makes a repeated delivery (client retry, queued retry) count nothing twice.
FINISH = """
if not redis.call('SET', KEYS[1], 1, 'NX', 'PX', ARGV[6]) then
  return 0
end
local tokens = tonumber(ARGV[1])
if tokens > 0 then
  redis.call('INCRBY', KEYS[2], tokens)
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
redis.call('ZREM', KEYS[3], ARGV[3])
local member = ARGV[3] .. ':' .. ARGV[4]
local cost = tonumber(ARGV[5])
for i = 1, (#KEYS - 3) / 2 do
  local budget, leases = KEYS[2 + 2 * i], KEYS[3 + 2 * i]
  if redis.call('ZREM', leases, member) == 1 and tonumber(ARGV[4]) > 0 then
    redis.call('HINCRBY', budget, 'reserved', '-' .. ARGV[4])
  end
  if cost > 0 and redis.call('HEXISTS', budget, 'spend') == 1 then
    redis.call('HINCRBY', budget, 'spend', ARGV[5])
  end
end
return 1
"""

# KEYS: budget hashes; ARGV: (spend, reset_at or '') per key. Set only where absent,
# so the first instance to seed wins and later seeds never overwrite live counts.
SEED = """
for i = 1, #KEYS do
  if redis.call('HEXISTS', KEYS[i], 'spend') == 0 then
    redis.call('HSET', KEYS[i], 'spend', ARGV[2 * i - 1])
    if ARGV[2 * i] ~= '' then
      redis.call('HSET', KEYS[i], 'reset_at', ARGV[2 * i])
    end
  end
end
return 1
"""
