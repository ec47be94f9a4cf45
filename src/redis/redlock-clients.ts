/**
 * The nodes of a Redlock as users give them: one ioredis client per independent Redis node.
 * Checked once at construction (not a client, a Cluster, the same client twice) and before each
 * acquisition (a lazyConnect client never connected). A client that was closed, ended or fails
 * is not an error here: it is a node that is down, a failed vote in every round (rounds.ts).
 */
import { badRedisClient, noRedisClients } from '../faults/redis';
import type { Redis } from './redis-client';
import { nodeAddress } from './rounds';

/** What a Redlock node is: an ioredis client (not a Cluster) of an independent Redis node. */
export type RedlockClient = Redis;

/** The clients as a frozen list, or LockConfigError naming the first one that cannot be a node. */
export function checkClients(clients: RedlockClient | readonly RedlockClient[]): readonly RedlockClient[] {
  const list: RedlockClient[] = Array.isArray(clients) ? [...clients] : clients == null ? [] : [clients as RedlockClient];
  if (list.length === 0) {
    throw noRedisClients();
  }
  const seen = new Set<unknown>();
  list.forEach((client, i) => {
    const c = client as unknown as Partial<Redis> & { isCluster?: boolean };
    if (!c || typeof c.evalsha !== 'function' || typeof c.eval !== 'function' || typeof c.status !== 'string') {
      throw badRedisClient(i, 'is not an ioredis client');
    }
    if (c.isCluster) {
      throw badRedisClient(
        i,
        'is an ioredis Cluster; Redlock needs one client per independent node (a cluster is one node to Redlock, and its keys may sit on different shards)',
      );
    }
    if (seen.has(client)) {
      throw badRedisClient(i, 'is given twice; each node must be a distinct client (a duplicate would vote twice)');
    }
    seen.add(client);
  });
  return Object.freeze(list);
}

/** A client that was never connected (lazyConnect) is a configuration error. */
export function assertClientsUsable(clients: readonly RedlockClient[]): void {
  for (let i = 0; i < clients.length; i++) {
    const client = clients[i];
    if (client.status !== 'wait') continue;
    throw badRedisClient(i, `(${nodeAddress(client, i)}) is not usable: it was created with lazyConnect and never connected: call client.connect() first`, {
      status: client.status,
    });
  }
}
