/**
 * Fencing tokens minted in a database (`new Redlock(clients, { fencing: { dataSource } })`): one
 * counter row per lock key, moved by the statement that hands the token out (see the dialects'
 * fencing.ts). The token is minted after a quorum granted the lease and before it is handed out;
 * the lease is handed out only if it is still valid then. Why the tokens of one key strictly
 * increase, whatever happened to Redis: a later lease on the key is granted (on a quorum) only
 * after this one's key is gone there, which is after its validity ended, which is after its
 * token's statement returned (committed); so the later statement sees this counter value and
 * answers a larger one. Redis holds no part of the token, so FLUSHALL, restarts and quorum
 * changes cannot move it back; new processes read the same rows.
 */
import { createHash } from 'crypto';
import type { FencingDialect } from '../dialects/dialect';
import { badOption } from '../faults/options';
import { missingTable } from '../faults/migrations';
import { leaseDatabase } from './lease-database';

export const DEFAULT_FENCING_TABLE = 'ormlock_fencing';

export interface FencingOptions {
  /** The installed database that holds the counters: a TypeORM DataSource given to `installLocking`. */
  dataSource: object;
  /** Counter table (default `ormlock_fencing`); create it with `createFencingTable`. */
  table?: string;
}

/** Checks a fencing table name: an identifier, so that it can be quoted into SQL. */
export function checkFencingTable(table: unknown, where: string): string {
  if (typeof table !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(table)) {
    throw badOption(where, 'table', 'an identifier of letters, digits and _ (at most 63)', table);
  }
  return table;
}

/** Longest key stored as is (UTF-8 bytes); longer ones are stored as `sha256:<hex>`. */
const MAX_KEY_BYTES = 190;

export class DatabaseFencing {
  readonly table: string;
  private readonly handle: object;

  constructor(options: FencingOptions | undefined, where: string) {
    if (!options || typeof options !== 'object') throw badOption(where, 'fencing', '{ dataSource, table? }', options);
    this.table = checkFencingTable(options.table ?? DEFAULT_FENCING_TABLE, `${where} fencing`);
    this.handle = options.dataSource;
    leaseDatabase(this.handle, `${where} fencing`); // fails now, before any lease, when not installed
  }

  /** The dataSource given (so `using(…, { transaction: true })` defaults to it). */
  get dataSource(): object {
    return this.handle;
  }

  /** A new token for a lease on `resources` (the Redis keys, namespace and prefix included). */
  async mint(resources: readonly string[]): Promise<bigint> {
    const db = leaseDatabase(this.handle, 'Redlock fencing');
    const keys = counterKeys(resources);
    try {
      return await db.fencing.nextToken(db.run, this.table, keys);
    } catch (error) {
      throw this.explain(error, db.fencing, db.dialect.convertError(error));
    }
  }

  private explain(error: unknown, fencing: FencingDialect, converted: Error | undefined): unknown {
    if (fencing.isMissingTable(error)) {
      return missingTable('Redlock fencing', `the counter table "${this.table}"`, 'createFencingTable', this.table, DEFAULT_FENCING_TABLE, error);
    }
    return converted ?? error;
  }
}

function counterKeys(resources: readonly string[]): string[] {
  const keys = resources.map((r) => (Buffer.byteLength(r, 'utf8') <= MAX_KEY_BYTES ? r : `sha256:${createHash('sha256').update(r, 'utf8').digest('hex')}`));
  return keys.length === 1 ? keys : [...new Set(keys)].sort();
}
