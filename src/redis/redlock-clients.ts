/**
 * The nodes of a Redlock as users give them: one ioredis client per independent Redis node.
 * Checked once at construction (not a client, a Cluster, the same client twice) and before each
 * acquisition (a lazyConnect client never connected). A client that was closed, ended or fails
 * is not an error here: it is a node that is down, a failed vote in every round (rounds.ts).
 */
import { LockConfigError } from '../errors';
import type { Redis } from './redis-client';
import { nodeAddress } from './rounds';

/** What a Redlock node is: an ioredis client (not a Cluster) of an independent Redis node. */
export type RedlockClient = Redis;

/** The clients as a frozen list, or LockConfigError naming the first one that cannot be a node. */
export function checkClients(clients: RedlockClient | readonly RedlockClient[]): readonly RedlockClient[] {
  const list: RedlockClient[] = Array.isArray(clients) ? [...clients] : clients == null ? [] : [clients as RedlockClient];
  if (list.length === 0) {
    throw new LockConfigError('Redlock needs at least one ioredis client (one per independent Redis node)');
  }
  const seen = new Set<unknown>();
  list.forEach((client, i) => {
    const c = client as unknown as Partial<Redis> & { isCluster?: boolean };
    if (!c || typeof c.evalsha !== 'function' || typeof c.eval !== 'function' || typeof c.status !== 'string') {
      throw new LockConfigError(`Redlock: clients[${i}] is not an ioredis client`, { node: i });
    }
    if (c.isCluster) {
      throw new LockConfigError(
        `Redlock: clients[${i}] is an ioredis Cluster; Redlock needs one client per independent node (a cluster is one node to Redlock, and its keys may sit on different shards)`,
        { node: i },
      );
    }
    if (seen.has(client)) {
      throw new LockConfigError(`Redlock: clients[${i}] is given twice; each node must be a distinct client (a duplicate would vote twice)`, { node: i });
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
    throw new LockConfigError(
      `Redlock: clients[${i}] (${nodeAddress(client, i)}) is not usable: it was created with lazyConnect and never connected: call client.connect() first`,
      { node: i, status: client.status },
    );
  }
}
