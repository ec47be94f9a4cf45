import type { ScheduledHold, ScheduledStorage } from '../locks/scheduled-storage';
import type { Redlock } from './redlock';

/**
 * On one node, ends a scheduled run held by lease value ARGV[1] (KEYS[1]: the job's key):
 * the key keeps living until `lockAtLeastFor` (ARGV[3]) after the run took it, judged by the
 * node's own clock — the time the run held it is lockAtMostFor (ARGV[2]) minus the key's PTTL —
 * and is deleted at once when that has already passed. A key another lease holds is left alone.
 */
const END_RUN = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local rest = tonumber(ARGV[3]) - (tonumber(ARGV[2]) - redis.call('PTTL', KEYS[1]))
if rest > 0 then
  redis.call('PEXPIRE', KEYS[1], math.floor(rest))
  return 2
end
redis.call('DEL', KEYS[1])
return 1
`;

/**
 * Scheduled-job locks in Redis: a run is a lease of the Redlock on `scheduled:<name>`
 * (SET NX PX lockAtMostFor on a quorum of nodes, never extended); its end shortens the key's
 * TTL on every node to what is left of lockAtLeastFor (END_RUN), by the nodes' clocks.
 */
export class RedisScheduledStorage implements ScheduledStorage {
  readonly label: string;

  constructor(private readonly redlock: Redlock) {
    this.label = `Redis (${redlock.clients.length} node${redlock.clients.length === 1 ? '' : 's'})`;
  }

  async tryAcquire(name: string, lockAtMostForMs: number): Promise<ScheduledHold | null> {
    const started = Date.now();
    const lease = await this.redlock.tryAcquire(`scheduled:${name}`, lockAtMostForMs);
    if (!lease) return null;
    const [key] = lease.resources;
    return {
      token: lease.fencingToken,
      validMs: Math.max(0, lease.expiresAt - started),
      end: async (lockAtLeastForMs) => {
        await Promise.all(
          this.redlock.clients.map((client) =>
            client.eval(END_RUN, 1, key, lease.value, String(lockAtMostForMs), String(lockAtLeastForMs)).catch(() => undefined),
          ),
        );
      },
    };
  }
}
