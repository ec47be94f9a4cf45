import type { EntityManager } from '@mikro-orm/core';
import type { PortConnection } from '../port';

/**
 * One database connection of a MikroORM instance, as the ORM port sees it: a transaction context
 * (a knex transaction, MikroORM's `em.getTransactionContext()`) and the EntityManager bound to it.
 *
 * Every root transaction on an installed MikroORM runs on a connection pinned for its whole life
 * (internals/connection.ts): after COMMIT/ROLLBACK ormlock still runs its end-of-transaction work
 * (MySQL/MariaDB releases the session locks that stand in for transaction-scoped advisory locks)
 * on that same connection, before it goes back to the pool.
 */
export interface RootState {
  /** The driver connection the transaction runs on (knex's raw connection). */
  readonly raw: unknown;
  /** True when ormlock acquired `raw` and gives it back after the transaction. */
  readonly ownsRaw: boolean;
  released: boolean;
  /** Wrappers of this root's transaction and of its savepoints (nested transactions). */
  readonly members: Set<MikroOrmConnection>;
  /**
   * What the connection model keys this root by: the driver connection (`raw`) when there is one,
   * so that a transaction begun on a pinned connection (a session lock's) and the pinned connection
   * itself are one connection to the model, as they are one to the database.
   */
  readonly physical?: object;
}

type Trx = { isCompleted(): boolean };

export class MikroOrmConnection implements PortConnection {
  constructor(
    /** The EntityManager bound to the transaction (a fork), or a fork without one (session connections). */
    readonly manager: EntityManager,
    /** The knex transaction, undefined for a plain pinned connection. */
    readonly trx: Trx | undefined,
    readonly root: RootState,
  ) {
    root.members.add(this);
  }

  get isTransactionActive(): boolean {
    return this.trx !== undefined && !this.trx.isCompleted();
  }

  get isReleased(): boolean {
    return this.root.released;
  }

  /** The physical connection (the driver connection, else the root's state): a savepoint's wrapper shares its root's (see the connection model). */
  get physical(): object {
    return this.root.physical ?? this.root;
  }

  /**
   * Runs one statement: inside the transaction while it is open (through MikroORM, so it is logged
   * like the ORM's own), else on the pinned connection itself. PostgreSQL placeholders (`$1`) are
   * rewritten to MikroORM's `?`.
   */
  async query(sql: string, parameters: unknown[] = []): Promise<any> {
    const { text, params } = questionMarks(sql, parameters);
    const connection = this.manager.getConnection('write') as any;
    if (this.isTransactionActive) return connection.execute(text, params, 'all', this.trx);
    if (this.root.released || !this.root.raw) {
      throw new Error('ormlock: this MikroORM connection was already given back to the pool');
    }
    const knex = connection.getKnex();
    const formatted = connection.platform.formatQuery(text, params);
    const q = knex.raw(formatted);
    q._connection = this.root.raw; // knex's runner uses a builder's own connection when it has one
    return connection.transformRawResult(await q, 'all');
  }
}

/** `$1 … $n` (PostgreSQL style, as the dialects write them) → `?` in order, with the parameters reordered. */
export function questionMarks(sql: string, parameters: unknown[]): { text: string; params: unknown[] } {
  if (!/\$\d/.test(sql)) return { text: sql, params: parameters };
  const params: unknown[] = [];
  const text = sql.replace(/\$(\d+)/g, (_, n: string) => {
    params.push(parameters[Number(n) - 1]);
    return '?';
  });
  return { text, params };
}

const rootOfTrx = new WeakMap<object, RootState>();
const wrapperOfTrx = new WeakMap<object, MikroOrmConnection>();

/** Remembers the root state of a transaction (a root one, or a savepoint of one). */
export function registerTransaction(trx: object, root: RootState): void {
  rootOfTrx.set(trx, root);
}

export function rootStateOf(trx: object): RootState | undefined {
  return rootOfTrx.get(trx);
}

export function newRootState(raw: unknown, ownsRaw: boolean): RootState {
  return { raw, ownsRaw, released: false, members: new Set(), physical: raw !== null && typeof raw === 'object' ? raw : undefined };
}

/** The one PortConnection of a transaction context (created on first use, bound to `em`). */
export function connectionFor(em: EntityManager, trx: object): MikroOrmConnection {
  let conn = wrapperOfTrx.get(trx);
  if (!conn) {
    let root = rootOfTrx.get(trx);
    if (!root) {
      // a transaction begun before ormlock was installed: not pinned, nothing to run after its end
      root = newRootState(undefined, false);
      rootOfTrx.set(trx, root);
    }
    conn = new MikroOrmConnection(em, trx as Trx, root);
    wrapperOfTrx.set(trx, conn);
  }
  return conn;
}

/** The wrapper of a transaction context, if one was made. */
export function knownConnection(trx: object): MikroOrmConnection | undefined {
  return wrapperOfTrx.get(trx);
}
