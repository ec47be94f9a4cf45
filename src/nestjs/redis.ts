import { Redlock, type RedlockClient } from '../redis/redlock';
import { ioredis } from './optional-packages';
import type { OrmlockModuleOptions, OrmlockRedisNode } from './options';

/** An ioredis client (duck-typed: another copy of ioredis makes another class). */
function isClient(node: OrmlockRedisNode): node is RedlockClient {
  return (
    typeof node === 'object' && node !== null && typeof (node as RedlockClient).evalsha === 'function' && typeof (node as RedlockClient).quit === 'function'
  );
}

/** The module's Redlock and the clients it made for it (those it quits on shutdown). */
export class OrmlockRedis {
  private constructor(
    readonly redlock: Redlock | null,
    private readonly owned: RedlockClient[],
  ) {}

  /** Builds the Redlock of `options.redis` (null without one). */
  static from(options: OrmlockModuleOptions): OrmlockRedis {
    if (!options.redis) return new OrmlockRedis(null, []);
    const { nodes, ...redlockOptions } = options.redis;
    const owned: RedlockClient[] = [];
    const clients = nodes.map((node) => {
      if (isClient(node)) return node;
      const Redis = ioredis();
      const client = new Redis(node) as RedlockClient;
      owned.push(client);
      return client;
    });
    try {
      const namespace = redlockOptions.namespace ?? options.namespace;
      return new OrmlockRedis(new Redlock(clients, { ...redlockOptions, ...(namespace ? { namespace } : {}) }), owned);
    } catch (error) {
      for (const c of owned) c.disconnect();
      throw error;
    }
  }

  /** Quits the clients the module made (clients passed in stay the caller's). */
  async close(): Promise<void> {
    const owned = this.owned.splice(0);
    await Promise.all(
      owned.map((c) =>
        c.quit().then(
          () => undefined,
          () => c.disconnect(),
        ),
      ),
    );
  }
}
