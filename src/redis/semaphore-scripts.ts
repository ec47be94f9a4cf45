/**
 * The Lua scripts (and the plain release command) of the Redis counting semaphore. Each runs
 * atomically on ONE node; the quorum logic lives in semaphore.ts.
 *
 * Per semaphore and node: a sorted set of holders (member = the permit's value, unique per attempt,
 * score = when it expires, in ms of that node's own clock, read with TIME as PX would), a
 * fencing counter (a plain integer, INCR) and, written only by a claim (SEM_CLAIM), the value of
 * the permit that last claimed a token there. Expired holders are dropped by an acquisition that
 * finds the set full. The holder set has no expiry of its own: it never holds more than
 * `permits` members (released ones are removed, and Redis deletes an empty set), and the counter
 * has to outlive it anyway. Keeping no expiry saves the set a PEXPIRE (or PTTL) per grant.
 * (A number given to redis.call is sent as its shortest exact decimal: ms timestamps, integers
 * below 2^53, need no string.format.)
 *
 * What each call costs on the node was counted in instructions (valgrind's callgrind on
 * redis-server, one acquisition and one ZREM at a time): reading TIME and a PEXPIRE cost about
 * as much as a ZADD each, a HINCRBY half again an INCR. The acquisition below (TIME, ZCARD, ZADD,
 * INCR) costs the node slightly less than redis-semaphore's (ZREMRANGEBYSCORE, ZCARD, ZADD,
 * PEXPIRE).
 */
import { script, type PlainCommand } from './scripts';

const NOW = `
local clock = redis.call('TIME')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
`;

/**
 * KEYS[1] = holders, KEYS[2] = counter. ARGV[1] = value, ARGV[2] = ttl ms, ARGV[3] = permits,
 * ARGV[4] = highest token the client has seen for this semaphore.
 * Returns the node's token t = max(counter, seen) + 1 (stored) when a place was free (or this
 * value already holds one: a late retry, looked up only when the set is full), 0 when full.
 * Expired holders are swept only when the set looks full (below `permits` members there is a
 * place whether some expired or not), so an uncontended grant is TIME, ZCARD, ZADD and INCR.
 * The token is this permit's on this node without recording it: the counter passes each value
 * once, and a claim (SEM_CLAIM) is only ever sent to a node that answered a lower token.
 */
export const SEM_ACQUIRE = script(
  'semaphore-acquire',
  `${NOW}
local held = redis.call('ZCARD', KEYS[1])
local permits = tonumber(ARGV[3])
if held >= permits then
  held = held - redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  if held >= permits and not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
    return 0
  end
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local t = redis.call('INCR', KEYS[2])
local seen = tonumber(ARGV[4])
if t <= seen then
  t = seen + 1
  redis.call('SET', KEYS[2], string.format('%.0f', t))
end
return t
`,
);

/**
 * Claims token ARGV[1] for the permit ARGV[2] on a node that answered a lower one: raises the
 * counter to it and records this permit as its claimer when the counter is below it, confirms
 * when the counter is still at it and this permit claimed it (the counter never goes back, so
 * the claimer is this permit only while the counter is still the value this permit's claim
 * set), refuses otherwise (another permit owns that token here: it answered it, or claimed it).
 * KEYS[1] = counter, KEYS[2] = claimer. Returns 1 (claimed) or 0.
 */
export const SEM_CLAIM = script(
  'semaphore-claim',
  `
local t = tonumber(redis.call('GET', KEYS[1]) or '0')
local want = tonumber(ARGV[1])
if t < want then
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('SET', KEYS[2], ARGV[2])
  return 1
end
if t == want and redis.call('GET', KEYS[2]) == ARGV[2] then
  return 1
end
return 0
`,
);

/**
 * Extend: KEYS[1] = holders, ARGV[1] = the permit's value, ARGV[2] = ttl ms. Moves its expiry to
 * now + ttl if it still holds an unexpired place: 1, else 0 (an expired or released holder is
 * not brought back). The clock is read only when the holder is there.
 */
export const SEM_EXTEND = script(
  'semaphore-extend',
  `
local expires = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not expires then
  return 0
end${NOW}
if tonumber(expires) <= now then
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
return 1
`,
);

/**
 * Release: `ZREM holders value`, a plain command (no script). The member is the permit's own
 * value (unique per attempt, lease-value.ts), so it removes this permit and nothing else; 1 when it was still in the set, 0
 * when it was gone (expired and swept by an acquisition, or the set expired). A holder that
 * expired but was not yet swept also answers 1: nobody was admitted in its place on that node
 * (an acquisition sweeps expired holders before it counts). Whether the permit had expired is
 * the permit's own validity, which `release()` checks (LeaseProtocol.releaseChecksValidity).
 */
export const SEM_RELEASE: PlainCommand = { name: 'semaphore-release', command: 'zrem' };
