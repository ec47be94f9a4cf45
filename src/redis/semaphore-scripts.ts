/**
 * The Lua scripts of the Redis counting semaphore. Each runs atomically on ONE node; the quorum
 * logic lives in semaphore.ts.
 *
 * Per semaphore and node: a sorted set of holders (member = the permit's 128-bit random value,
 * score = when it expires, in ms of that node's own clock, read with TIME as PX would) and a
 * fencing counter hash { t = last token, o = value of the permit that took it }. Expired
 * holders are dropped at each acquisition; the set's own expiry follows its longest holder.
 */
import { script } from './scripts';

const NOW = `
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
`;

/**
 * KEYS[1] = holders, KEYS[2] = counter. ARGV[1] = value, ARGV[2] = ttl ms, ARGV[3] = permits,
 * ARGV[4] = highest token the client has seen for this semaphore.
 * Returns the node's token t = max(counter, seen) + 1 (stored, with this permit as its owner)
 * when a place was free (or this value already holds one: a late retry, looked up only when the
 * set is full), 0 when full.
 */
export const SEM_ACQUIRE = script(
  'semaphore-acquire',
  `${NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) and not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], string.format('%.0f', now + ttl), ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
local t = tonumber(redis.call('HGET', KEYS[2], 't') or '0') + 1
local seen = tonumber(ARGV[4])
if t <= seen then
  t = seen + 1
end
redis.call('HSET', KEYS[2], 't', string.format('%.0f', t), 'o', ARGV[1])
return t
`,
);

/**
 * Claims token ARGV[1] for the permit ARGV[2] on a node that answered a lower one: raises the
 * counter to it (owned by this permit) when below, confirms when it is already there with this
 * owner, refuses otherwise (another permit owns that token here). KEYS[1] = counter.
 * Returns 1 (claimed) or 0.
 */
export const SEM_CLAIM = script(
  'semaphore-claim',
  `
local t = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
local want = tonumber(ARGV[1])
if t < want then
  redis.call('HSET', KEYS[1], 't', ARGV[1], 'o', ARGV[2])
  return 1
end
if t == want and redis.call('HGET', KEYS[1], 'o') == ARGV[2] then
  return 1
end
return 0
`,
);

/**
 * Release and extend, one script (they share the lookup of the holder and of the node's clock):
 * KEYS[1] = holders, ARGV[1] = the permit's value; ARGV[2] = ttl ms to extend, absent to release.
 * - release (no ARGV[2]): removes the holder; 1 when it held a place that had not expired, else 0;
 * - extend: moves its expiry to now + ttl if it still holds an unexpired place: 1, else 0.
 * The clock is read only when the holder is there (a lost permit costs one ZSCORE).
 */
export const SEM_HOLD = script(
  'semaphore-hold',
  `
local expires = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not expires then
  return 0
end${NOW}
local live = tonumber(expires) > now
if not ARGV[2] then
  redis.call('ZREM', KEYS[1], ARGV[1])
elseif live then
  local ttl = tonumber(ARGV[2])
  redis.call('ZADD', KEYS[1], 'XX', string.format('%.0f', now + ttl), ARGV[1])
  if redis.call('PTTL', KEYS[1]) < ttl then
    redis.call('PEXPIRE', KEYS[1], ttl)
  end
end
if live then
  return 1
end
return 0
`,
);
