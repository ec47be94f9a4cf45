/**
 * What a Redlock node needs of an ioredis client, written structurally: the published .d.ts
 * then import nothing from `ioredis`, so an application without it type-checks with
 * `skipLibCheck: false`. An ioredis `Redis` client satisfies it; `new Redlock` checks at run time
 * that it is one (and not a Cluster).
 */
export interface Redis {
  /** ioredis' connection status ('ready', 'connecting', 'wait', 'end', …). */
  readonly status: string;
  eval(...args: any[]): Promise<unknown>;
  evalsha(...args: any[]): Promise<unknown>;
  /** A semaphore permit's release. */
  zrem(...args: any[]): Promise<unknown>;
  quit(...args: any[]): Promise<unknown>;
  disconnect(...args: any[]): void;
}
