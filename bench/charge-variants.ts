/**
 * "Charge a user" — read the user, subtract 1 credit, write it back — done every way the
 * benchmark compares: hand-written TypeORM/SQL baselines and ormlock's decorators.
 *
 * ormlock is loaded lazily (`require('../src')`) and only by the decorated variants, so the
 * child processes (typeorm-transactional-worker.ts) can reuse the hand-written ones
 * without loading ormlock. Decorators that may not be built yet (AdvisoryLock, Versioned,
 * RetryOnConflict) are looked up at run time and applied by hand, the way TypeScript's
 * `__decorate` does.
 */
import type { DialectCapabilities } from '../src/dialects/dialect';
import type { DataSource, EntityManager, Repository } from 'typeorm';
import type { BackendName } from '../test/support/backends';
import { BenchHandVersionedUser, BenchUser, BenchVersionedUser } from './entities';
import { sleep } from './harness';

/** What a variant needs to build its operation. */
export interface VariantEnv {
  ds: DataSource;
  backend: BackendName;
  /** The seeded rows' ids (the same in every bench table); ids[0] is the hot row. */
  ids: number[];
}

/** A ready variant: `charge(id)` is one operation. */
export interface PreparedVariant {
  charge(id: number): Promise<void>;
  /** How many times the body ran (≥ operations when there were retries). */
  attempts?(): number;
  /**
   * Work the variant left for later (e.g. an observer's batch), done right after each of its
   * rounds and counted in that round's time and CPU, so the next variant does not pay for it.
   */
  settle?(): void;
  /** Remarks found while preparing (printed under the table, kept in results.json). */
  notes: string[];
}

/** Budget reference: the statements of the same work unlocked (see {@link PROBES}). */
export type ProbeId = 'unlocked-update' | 'unlocked-save';

export interface Budget {
  /** The unlocked work this variant is compared with. */
  reference: ProbeId;
  /**
   * Statements allowed on top of it (a lock: 1; a decorator: 0), or a function of the
   * database's capabilities where the budget depends on them.
   */
  extra: number | ((caps: DialectCapabilities) => number);
  /** Whether exceeding it fails `--quick` (the contract's variants do). */
  gating: boolean;
  /**
   * The variant retries: the budget applies to the path that succeeds (uncontended trace and
   * cells without retries); the statements of a failed attempt are reported, not gated.
   */
  retries?: boolean;
}

export interface VariantSpec {
  id: string;
  /** Short letter from the brief: a … e, primes for hand-written twins. */
  tag: string;
  label: string;
  /** Which table it writes (lost-update check). */
  entity: Function;
  /** Hand-written code (a baseline) or an ormlock decorator. */
  kind: 'hand' | 'ormlock' | 'other';
  /** The variant ratios are computed against (undefined: it is a reference itself). */
  ref?: string;
  /**
   * Hand-written code doing the same locking (the decorator's own overhead is measured
   * against the first); more entries split the difference further.
   */
  twins?: string[];
  /** True when the variant must never lose an update (it locks or checks versions). */
  serializes: boolean;
  budget?: Budget;
  /** Why the variant cannot run now (e.g. 'n/a (not built yet)'), or undefined. */
  unavailable?(): string | undefined;
  prepare(env: VariantEnv): Promise<PreparedVariant>;
}

const ormlock = (): any => require('../src');

/** Applies a method decorator by hand (what TypeScript's `__decorate` does). */
export function decorateMethod(cls: Function, key: string, ...decorators: Array<(...a: any[]) => any>): void {
  // Innermost (closest to the method) first, like stacked `@A() @B()` → B, then A.
  for (const decorator of [...decorators].reverse()) {
    const descriptor = Object.getOwnPropertyDescriptor(cls.prototype, key)!;
    const result = decorator(cls.prototype, key, descriptor);
    Object.defineProperty(cls.prototype, key, result ?? descriptor);
  }
}

// ---------------------------------------------------------------------------------------
// Hand-written bodies (TypeORM and SQL only)
// ---------------------------------------------------------------------------------------

/** (a) dataSource.transaction + em.findOne({ lock: pessimistic_write }) + em.update. */
export async function handLockedCharge(ds: DataSource, id: number): Promise<void> {
  await ds.transaction(async (em) => {
    const user = await em.findOne(BenchUser, { where: { id }, lock: { mode: 'pessimistic_write' } });
    if (!user) throw new Error(`user ${id} not found`);
    await em.update(BenchUser, { id }, { credits: user.credits - 1 });
  });
}

/** (a′) dataSource.transaction + raw `SELECT … FOR UPDATE` + raw UPDATE. */
export function handRawCharge(backend: BackendName): (ds: DataSource, id: number) => Promise<void> {
  const [select, update] =
    backend === 'postgres'
      ? ['SELECT "id", "credits" FROM "bench_users" WHERE "id" = $1 FOR UPDATE', 'UPDATE "bench_users" SET "credits" = $1 WHERE "id" = $2']
      : ['SELECT `id`, `credits` FROM `bench_users` WHERE `id` = ? FOR UPDATE', 'UPDATE `bench_users` SET `credits` = ? WHERE `id` = ?'];
  return async (ds, id) => {
    await ds.transaction(async (em) => {
      const rows: Array<{ credits: number }> = await em.query(select, [id]);
      if (!rows.length) throw new Error(`user ${id} not found`);
      await em.query(update, [Number(rows[0].credits) - 1, id]);
    });
  };
}

/** Unlocked reference: the same work in a transaction without a lock (loses updates). */
export async function handUnlockedCharge(ds: DataSource, id: number): Promise<void> {
  await ds.transaction(async (em) => {
    const user = await em.findOne(BenchUser, { where: { id } });
    if (!user) throw new Error(`user ${id} not found`);
    await em.update(BenchUser, { id }, { credits: user.credits - 1 });
  });
}

/** The unversioned reference of @Versioned: findOne + save() (what the decorated body does). */
export async function handUnlockedSaveCharge(ds: DataSource, id: number): Promise<void> {
  await ds.transaction(async (em) => {
    const user = await em.findOne(BenchHandVersionedUser, { where: { id } });
    if (!user) throw new Error(`user ${id} not found`);
    user.credits -= 1;
    await em.save(user);
  });
}

/**
 * (c′) the advisory lock written by hand. PostgreSQL: one `pg_advisory_xact_lock` in the
 * transaction (released by COMMIT). MariaDB has no transaction-scoped advisory lock:
 * GET_LOCK before BEGIN and RELEASE_LOCK after COMMIT on the same connection (releasing
 * before COMMIT would let the next holder read the old row).
 */
export function handAdvisoryCharge(backend: BackendName): (ds: DataSource, id: number) => Promise<void> {
  const body = async (em: EntityManager, id: number) => {
    const user = await em.findOne(BenchUser, { where: { id } });
    if (!user) throw new Error(`user ${id} not found`);
    await em.update(BenchUser, { id }, { credits: user.credits - 1 });
  };
  if (backend === 'postgres') {
    return async (ds, id) => {
      await ds.transaction(async (em) => {
        await em.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`bench:charge:${id}`]);
        await body(em, id);
      });
    };
  }
  return async (ds, id) => {
    const qr = ds.createQueryRunner();
    await qr.connect();
    const name = `bench:charge:${id}`;
    try {
      // MariaDB answers a negative ("forever") timeout with NULL: wait up to a year instead.
      const [row] = await qr.query('SELECT GET_LOCK(?, ?) AS got', [name, 365 * 24 * 3600]);
      if (Number(row.got) !== 1) throw new Error(`GET_LOCK(${name}) failed`);
      try {
        await qr.startTransaction();
        try {
          await body(qr.manager, id);
          await qr.commitTransaction();
        } catch (error) {
          await qr.rollbackTransaction().catch(() => undefined);
          throw error;
        }
      } finally {
        await qr.query('SELECT RELEASE_LOCK(?)', [name]);
      }
    } finally {
      await qr.release();
    }
  };
}

/** Thrown by the hand-written optimistic body when the version moved. */
class HandConflict extends Error {}

/**
 * (d′) optimistic concurrency by hand: `UPDATE … SET version = version + 1 WHERE id = ? AND
 * version = ?`, affected rows checked, whole transaction retried (≤ 100 attempts) with the same
 * backoff as @RetryOnConflict's defaults: attempt n waits random(0, min(1000, 10·2^(n-1))) ms.
 */
export function handOptimisticCharge(counter: { attempts: number }): (ds: DataSource, id: number) => Promise<void> {
  return async (ds, id) => {
    for (let attempt = 1; ; attempt++) {
      counter.attempts++;
      try {
        await ds.transaction(async (em) => {
          const user = await em.findOne(BenchHandVersionedUser, { where: { id } });
          if (!user) throw new Error(`user ${id} not found`);
          // TypeORM adds `version = version + 1` to an update of an entity with a @VersionColumn.
          const result = await em.update(BenchHandVersionedUser, { id, version: user.version }, { credits: user.credits - 1 });
          if (result.affected !== 1) throw new HandConflict(`user ${id}: version ${user.version} is stale`);
        });
        return;
      } catch (error) {
        if (!(error instanceof HandConflict) || attempt >= 100) throw error;
        await sleep(Math.random() * Math.min(1000, 10 * 2 ** (attempt - 1)));
      }
    }
  };
}

// ---------------------------------------------------------------------------------------
// Probes: statements of the unlocked work, the reference of the round-trip budget
// ---------------------------------------------------------------------------------------

export const PROBES: Record<ProbeId, { label: string; run: (ds: DataSource, id: number) => Promise<void> }> = {
  'unlocked-update': { label: 'transaction + findOne + update, no lock', run: handUnlockedCharge },
  'unlocked-save': { label: 'transaction + findOne + save (entity with @VersionColumn), no check', run: handUnlockedSaveCharge },
};

// ---------------------------------------------------------------------------------------
// The variants
// ---------------------------------------------------------------------------------------

const notBuilt =
  (...names: string[]) =>
  () => {
    const missing = names.filter((n) => typeof ormlock()[n] !== 'function');
    return missing.length ? `n/a (not built yet: ${missing.join(', ')} not exported)` : undefined;
  };

const hand =
  (fn: (ds: DataSource, id: number) => Promise<void>, attempts?: () => number) =>
  async (env: VariantEnv): Promise<PreparedVariant> => ({ charge: (id) => fn(env.ds, id), attempts, notes: [] });

/** A service whose repositories are obtained up front (as injected ones would be). */
abstract class ChargeService {
  calls = 0;
  constructor(protected readonly users: Repository<BenchUser>) {}
  abstract charge(id: number): Promise<void>;
}

function unlockedBodyService(): new (users: Repository<BenchUser>) => ChargeService {
  return class extends ChargeService {
    async charge(id: number): Promise<void> {
      this.calls++;
      const user = await this.users.findOneByOrFail({ id });
      await this.users.update({ id }, { credits: user.credits - 1 });
    }
  };
}

export const HAND_LOCKED: VariantSpec = {
  id: 'hand-locked',
  tag: 'a',
  label: 'hand: tx + findOne(lock) + update',
  entity: BenchUser,
  kind: 'hand',
  serializes: true,
  prepare: hand(handLockedCharge),
};

/**
 * The A/A control: the same hand-written code as (a), measured as if it were a decorator over
 * (a). Its "overhead" and CPU share are the bench's noise: a decorator's figure means something
 * only where it lies outside this one's interval.
 */
export const HAND_LOCKED_AA: VariantSpec = {
  id: 'hand-locked-aa',
  tag: 'a=',
  label: 'A/A control: (a) again',
  entity: BenchUser,
  kind: 'hand',
  ref: 'hand-locked',
  twins: ['hand-locked'],
  serializes: true,
  prepare: hand(handLockedCharge),
};

export const HAND_RAW: VariantSpec = {
  id: 'hand-raw',
  tag: "a'",
  label: 'hand: tx + raw SELECT…FOR UPDATE + UPDATE',
  entity: BenchUser,
  kind: 'hand',
  ref: 'hand-locked',
  serializes: true,
  prepare: async (env) => hand(handRawCharge(env.backend))(env),
};

export const HAND_UNLOCKED: VariantSpec = {
  id: 'hand-tx',
  tag: "e'",
  label: 'hand: tx + findOne + update, NO lock',
  entity: BenchUser,
  kind: 'hand',
  serializes: false,
  prepare: hand(handUnlockedCharge),
};

export const PESSIMISTIC: VariantSpec = {
  id: 'pessimistic',
  tag: 'b',
  label: '@Pessimistic()',
  entity: BenchUser,
  kind: 'ormlock',
  ref: 'hand-locked',
  twins: ['hand-locked'],
  serializes: true,
  budget: { reference: 'unlocked-update', extra: 1, gating: true },
  prepare: async ({ ds }) => {
    const Service = unlockedBodyService();
    decorateMethod(Service, 'charge', ormlock().Pessimistic());
    const service = new Service(ds.getRepository(BenchUser));
    return { charge: (id) => service.charge(id), attempts: () => service.calls, notes: [] };
  },
};

/** Not in the brief's list: the same with a wait limit, to show what `timeoutMs` costs. */
export const PESSIMISTIC_TIMEOUT: VariantSpec = {
  id: 'pessimistic-timeout',
  tag: 'b2',
  label: '@Pessimistic({ timeoutMs: 5000 })',
  entity: BenchUser,
  kind: 'ormlock',
  ref: 'hand-locked',
  twins: ['hand-locked'],
  serializes: true,
  budget: { reference: 'unlocked-update', extra: 1, gating: true },
  prepare: async ({ ds }) => {
    const Service = unlockedBodyService();
    decorateMethod(Service, 'charge', ormlock().Pessimistic({ timeoutMs: 5000 }));
    const service = new Service(ds.getRepository(BenchUser));
    return { charge: (id) => service.charge(id), attempts: () => service.calls, notes: [] };
  },
};

export const HAND_ADVISORY: VariantSpec = {
  id: 'hand-advisory',
  tag: "c'",
  label: 'hand: advisory lock SQL + findOne + update',
  entity: BenchUser,
  kind: 'hand',
  ref: 'hand-locked',
  serializes: true,
  prepare: async (env) => hand(handAdvisoryCharge(env.backend))(env),
};

export const ADVISORY: VariantSpec = {
  id: 'advisory',
  tag: 'c',
  label: '@AdvisoryLock((userId) => `charge:${userId}`)',
  entity: BenchUser,
  kind: 'ormlock',
  ref: 'hand-locked',
  twins: ['hand-advisory'],
  serializes: true,
  // One lock statement where the lock ends with the transaction (PostgreSQL); MySQL/MariaDB have
  // no such advisory lock, so GET_LOCK needs its RELEASE_LOCK after COMMIT (README, Design decisions).
  budget: { reference: 'unlocked-update', extra: (caps) => (caps.transactionAdvisoryLocks ? 1 : 2), gating: true },
  unavailable: notBuilt('AdvisoryLock'),
  prepare: async ({ ds, ids }) => {
    const lib = ormlock();
    const key = (userId: number) => `charge:${userId}`;
    const make = (withTransactional: boolean) => {
      const Service = unlockedBodyService();
      const decorators = withTransactional ? [lib.Transactional(), lib.AdvisoryLock(key)] : [lib.AdvisoryLock(key)];
      decorateMethod(Service, 'charge', ...decorators);
      return new Service(ds.getRepository(BenchUser));
    };
    // The contract: the decorator takes the lock and runs the body after it. If the method
    // form needs a surrounding transaction (TransactionRequiredError), say so and add one.
    let service = make(false);
    const notes: string[] = [];
    try {
      await service.charge(ids[2]);
    } catch (error) {
      if (!(error instanceof lib.TransactionRequiredError)) throw error;
      notes.push('@AdvisoryLock alone threw TransactionRequiredError; measured as @Transactional() @AdvisoryLock(key)');
      service = make(true);
    }
    return { charge: (id) => service.charge(id), attempts: () => service.calls, notes };
  },
};

/**
 * (d0) what the @Versioned body does, without the check: findOne + save(). Loses updates under
 * contention; it separates the cost of save() (TypeORM loads the row again to diff it) from
 * the cost of @Versioned + @RetryOnConflict.
 */
export const HAND_SAVE: VariantSpec = {
  id: 'hand-save',
  tag: 'd0',
  label: 'hand: tx + findOne + save(), NO check',
  entity: BenchHandVersionedUser,
  kind: 'hand',
  ref: 'hand-locked',
  serializes: false,
  prepare: hand(handUnlockedSaveCharge),
};

const handOptimisticCounter = { attempts: 0 };
export const HAND_OPTIMISTIC: VariantSpec = {
  id: 'hand-optimistic',
  tag: "d'",
  label: 'hand: UPDATE … WHERE version = ? + retry loop',
  entity: BenchHandVersionedUser,
  kind: 'hand',
  ref: 'hand-locked',
  serializes: true,
  prepare: hand(handOptimisticCharge(handOptimisticCounter), () => handOptimisticCounter.attempts),
};

let versionedApplied = false;
/**
 * Decorates {@link BenchVersionedUser} with `@Versioned()` when ormlock exports it. Call
 * before `installLocking` (which reads the entity declarations). Idempotent.
 */
export function applyRuntimeEntityDecorators(): string[] {
  const lib = ormlock();
  if (versionedApplied || typeof lib.Versioned !== 'function') return [];
  versionedApplied = true;
  const result = lib.Versioned()(BenchVersionedUser);
  if (typeof result === 'function' && result !== BenchVersionedUser) {
    return ['@Versioned() returned a replacement class; the benchmark keeps using the original'];
  }
  return [];
}

export const VERSIONED: VariantSpec = {
  id: 'versioned',
  tag: 'd',
  label: '@Versioned + @RetryOnConflict({ attempts: 100 })',
  entity: BenchVersionedUser,
  kind: 'ormlock',
  ref: 'hand-locked',
  twins: ['hand-optimistic', 'hand-save'],
  serializes: true,
  // @Versioned adds no statement: the check is in the UPDATE's WHERE.
  budget: { reference: 'unlocked-save', extra: 0, gating: true, retries: true },
  unavailable: notBuilt('Versioned', 'RetryOnConflict'),
  prepare: async ({ ds, ids }) => {
    const lib = ormlock();
    if (!versionedApplied) throw new Error('applyRuntimeEntityDecorators() was not called before installLocking');
    let outsideTx = 0;
    class Service {
      calls = 0;
      constructor(private readonly users: Repository<BenchVersionedUser>) {}
      async charge(id: number): Promise<void> {
        this.calls++;
        if (!lib.inTransaction(ds)) outsideTx++;
        const user = await this.users.findOneByOrFail({ id });
        user.credits -= 1;
        await this.users.save(user);
      }
    }
    decorateMethod(Service, 'charge', lib.RetryOnConflict({ attempts: 100 }));
    const service = new Service(ds.getRepository(BenchVersionedUser));
    const notes: string[] = [];
    await service.charge(ids[2]);
    if (outsideTx) notes.push('@RetryOnConflict did not open a transaction: the body ran outside one (save() opened its own)');
    return { charge: (id) => service.charge(id), attempts: () => service.calls, notes };
  },
};

export const TRANSACTIONAL: VariantSpec = {
  id: 'transactional',
  tag: 'e',
  label: 'ormlock @Transactional() (no lock)',
  entity: BenchUser,
  kind: 'ormlock',
  ref: 'hand-tx',
  twins: ['hand-tx'],
  serializes: false,
  budget: { reference: 'unlocked-update', extra: 0, gating: true },
  prepare: async ({ ds }) => {
    const Service = unlockedBodyService();
    decorateMethod(Service, 'charge', ormlock().Transactional());
    const service = new Service(ds.getRepository(BenchUser));
    return { charge: (id) => service.charge(id), attempts: () => service.calls, notes: [] };
  },
};

/** Everything measured in the ormlock process, in table order. */
export const ORMLOCK_PROCESS_VARIANTS: VariantSpec[] = [
  HAND_LOCKED,
  HAND_LOCKED_AA,
  HAND_RAW,
  PESSIMISTIC,
  PESSIMISTIC_TIMEOUT,
  HAND_ADVISORY,
  ADVISORY,
  HAND_OPTIMISTIC,
  HAND_SAVE,
  VERSIONED,
  HAND_UNLOCKED,
  TRANSACTIONAL,
];
