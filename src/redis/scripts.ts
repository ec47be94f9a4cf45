/**
 * The Lua scripts of the Redis leases. Each runs atomically on ONE node; the quorum logic
 * lives in redlock.ts. Scripts are sent with EVALSHA and fall back to EVAL once on NOSCRIPT
 * (a restarted node has an empty script cache), so the user's clients are never mutated
 * (no `defineCommand`).
 *
 * Key layout (see redlock.ts `keyspace`): KEYS of acquire are [fenceCounter, lock1..lockN];
 * release and extend take only [lock1..lockN]. Lock values are 32 hex digits, unique per
 * acquisition attempt (lease-value.ts), so "value matches" means "this very lease".
 *
 * Fencing counters are integers kept as decimal strings; Lua numbers are doubles, so they are
 * exact up to 2^53 (9·10^15 acquisitions: ~285 years at a million a second).
 */
import { createHash } from 'crypto';

export interface LuaScript {
  readonly name: string;
  readonly source: string;
  readonly sha: string;
}

export function script(name: string, source: string): LuaScript {
  return { name, source, sha: createHash('sha1').update(source).digest('hex') };
}

/**
 * One plain command instead of a script, sent as `command KEYS… ARGV…` (a semaphore's release is
 * `ZREM holders value`): one command on the node instead of a script's call.
 */
export interface PlainCommand {
  readonly name: string;
  readonly command: 'zrem';
}

/** What a round sends to each node: a script (EVALSHA, EVAL on NOSCRIPT) or a plain command. */
export type NodeCommand = LuaScript | PlainCommand;

/**
 * Acquire all lock keys on this node, or none, and move the node's fencing counter.
 * KEYS[1] = fencing counter, KEYS[2..] = lock keys.
 * ARGV[1] = lease value, ARGV[2] = ttl ms, ARGV[3] = highest fencing token the client has seen.
 * Returns the token (an integer ≥ 1) when granted, −i when lock key i (1-based among the lock
 * keys) is held by another lease: one integer, so the reply costs no array on either side.
 *
 * A key already holding THIS lease's value counts as granted (a late reply of an earlier
 * attempt of the same acquisition), so an acquisition never blocks itself.
 * The node's answer is max(counter, seen) + 1, stored as the new counter (a node that lost its
 * data catches up): INCR, and only when that is not above `seen`, SET seen + 1. One key (the
 * common case) costs one SET NX on a free key and one INCR.
 */
export const ACQUIRE = script(
  'acquire',
  `
if #KEYS == 2 then
  if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
    if redis.call('GET', KEYS[2]) ~= ARGV[1] then
      return -1
    end
    redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
  end
else
  for i = 2, #KEYS do
    local v = redis.call('GET', KEYS[i])
    if v and v ~= ARGV[1] then
      return -(i - 1)
    end
  end
  for i = 2, #KEYS do
    redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
  end
end
local t = redis.call('INCR', KEYS[1])
local seen = tonumber(ARGV[3])
if t <= seen then
  t = seen + 1
  redis.call('SET', KEYS[1], string.format('%.0f', t))
end
return t
`,
);

/**
 * Acquire all lock keys on this node, or none, without a fencing counter (a Redlock whose
 * tokens come from the database). KEYS = lock keys, ARGV[1] = lease value, ARGV[2] = ttl ms.
 * Returns 0 when granted, i when lock key i (1-based) is held by another lease.
 */
export const ACQUIRE_PLAIN = script(
  'acquire-plain',
  `
if #KEYS == 1 then
  if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    if redis.call('GET', KEYS[1]) ~= ARGV[1] then
      return 1
    end
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  end
  return 0
end
for i = 1, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if v and v ~= ARGV[1] then
    return i
  end
end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
end
return 0
`,
);

/**
 * Raise the fencing counter to at least ARGV[1] (never lowers it). KEYS[1] = counter.
 * Used after an acquisition whose granting nodes answered different counters, so that a
 * majority of nodes has counter >= the token handed out (see redlock.ts, "Fencing tokens").
 */
export const BUMP = script(
  'bump',
  `
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1])
end
return 1
`,
);

/**
 * Compare-and-delete: delete each lock key only if it still holds this lease's value.
 * KEYS = lock keys, ARGV[1] = value. Returns how many keys were deleted; a key that expired
 * or now belongs to another lease is left alone.
 */
export const RELEASE = script(
  'release',
  `
local n = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
    n = n + 1
  end
end
return n
`,
);

/**
 * Compare-and-extend: PEXPIRE every lock key, only if ALL of them still hold this lease's
 * value (all or nothing on this node). KEYS = lock keys, ARGV[1] = value, ARGV[2] = ttl ms.
 * Returns 1 when extended, 0 when any key expired or belongs to another lease.
 */
export const EXTEND = script(
  'extend',
  `
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) ~= ARGV[1] then
    return 0
  end
end
for i = 1, #KEYS do
  redis.call('PEXPIRE', KEYS[i], ARGV[2])
end
return 1
`,
);
