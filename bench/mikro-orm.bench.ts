/**
 * `npm run bench:mikro-orm` — ormlock on MikroORM against hand-written MikroORM, on PostgreSQL and
 * MariaDB: "charge a user" (read the user, subtract 1 credit, flush) in a transaction, with 1 and 8
 * concurrent workers on 1,000 rows (a random row per op, so the cost measured is the client's and
 * the statements', not lock waits).
 *
 *   npx ts-node --transpile-only bench/mikro-orm.bench.ts [--quick] [--backends postgres,mariadb] [--cell-ms N]
 *
 * Pairs (the same run, interleaved rounds):
 * - row lock: `em.transactional` + `em.findOne(…, { lockMode: PESSIMISTIC_WRITE })` vs `@Pessimistic()` on the method;
 * - version: MikroORM's `@Property({ version: true })` vs `@Versioned()` on the entity (single-row flushes);
 * - advisory: `em.transactional` + a hand-written `pg_advisory_xact_lock` / `GET_LOCK … RELEASE_LOCK` vs `@AdvisoryLock(key)`.
 * Round trips per operation are counted at knex (every statement sent, BEGIN/COMMIT included) and
 * checked against the round-trip budget: a lock costs at most one statement more than the same work
 * unlocked (two where the database has no transaction-scoped advisory lock: the release after COMMIT),
 * and @Versioned none more than MikroORM's own version check. The exit code is non-zero only when
 * a budget is exceeded, never because of timings.
 */
import 'reflect-metadata';
import { Entity, LockMode, MikroORM, PrimaryKey, Property } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql'; // the SQL EntityManager (execute), the same class for every SQL driver
import { AdvisoryLock, Pessimistic, Versioned } from '../src';
import { installLocking } from '../src/orm/mikro-orm';
import { BACKENDS, teardownBackends, type BackendName } from '../test/support/backends';
import { createMikroOrm, logStatements } from '../test/support/mikro-suite';
import { rng, runCell, warmUp, type CellResult } from './harness';

@Entity({ tableName: 'mb_users' })
class MbUser {
  @PrimaryKey({ type: 'integer' }) id!: number;
  @Property({ type: 'integer' }) credits!: number;
}

@Entity({ tableName: 'mb_hand_versioned_users' })
class MbHandVersionedUser {
  @PrimaryKey({ type: 'integer' }) id!: number;
  @Property({ type: 'integer' }) credits!: number;
  @Property({ type: 'integer', version: true }) version!: number;
}

@Versioned()
@Entity({ tableName: 'mb_versioned_users' })
class MbVersionedUser {
  @PrimaryKey({ type: 'integer' }) id!: number;
  @Property({ type: 'integer' }) credits!: number;
  @Property({ type: 'integer', version: true }) version!: number;
}

const ROWS = 1000;
const ENTITIES = [MbUser, MbHandVersionedUser, MbVersionedUser];

type Variant = { name: string; pair: string; handWritten: boolean; op: (id: number) => Promise<unknown> };

function variants(orm: MikroORM, backend: BackendName): Variant[] {
  const fresh = () => orm.em.fork() as EntityManager;
  const charge = async (em: EntityManager, cls: typeof MbUser, id: number, lockMode?: LockMode) => {
    const u = await em.findOneOrFail(cls, id, lockMode ? { lockMode } : {});
    u.credits -= 1;
  };
  class Service {
    @Pessimistic()
    async pessimistic(id: number) {
      await charge(orm.em as EntityManager, MbUser, id);
    }
    @AdvisoryLock((id: number) => ['mb-charge', id])
    async advisory(id: number) {
      await charge(orm.em as EntityManager, MbUser, id);
    }
  }
  const service = new Service();
  const advisorySql = backend === 'postgres' ? 'select pg_advisory_xact_lock(hashtextextended(?, 0))' : 'select get_lock(?, -1)';
  return [
    { name: 'unlocked (em.transactional)', pair: 'reference', handWritten: true, op: (id) => fresh().transactional((em) => charge(em, MbUser, id)) },
    {
      name: 'hand-written lockMode PESSIMISTIC_WRITE',
      pair: 'row lock',
      handWritten: true,
      op: (id) => fresh().transactional((em) => charge(em, MbUser, id, LockMode.PESSIMISTIC_WRITE)),
    },
    { name: '@Pessimistic()', pair: 'row lock', handWritten: false, op: (id) => service.pessimistic(id) },
    {
      name: "MikroORM's version: true",
      pair: 'version',
      handWritten: true,
      op: (id) => fresh().transactional((em) => charge(em, MbHandVersionedUser as never, id)),
    },
    { name: '@Versioned()', pair: 'version', handWritten: false, op: (id) => fresh().transactional((em) => charge(em, MbVersionedUser as never, id)) },
    {
      name: 'hand-written advisory lock',
      pair: 'advisory',
      handWritten: true,
      op: async (id) => {
        const em = fresh();
        const key = `mb-charge:${id}`;
        if (backend === 'postgres') {
          return em.transactional(async (tx) => {
            await tx.execute(advisorySql, [key]);
            await charge(tx, MbUser, id);
          });
        }
        // MySQL/MariaDB have no transaction-scoped advisory lock, and MikroORM gives the connection back at
        // COMMIT: the usual hand-written form releases inside the transaction, i.e. before COMMIT (the next
        // holder may read the old data — ormlock releases after COMMIT, on the same connection)
        return em.transactional(async (tx) => {
          await tx.execute(advisorySql, [key]);
          await charge(tx, MbUser, id);
          await tx.flush();
          await tx.execute('select release_lock(?)', [key]);
        });
      },
    },
    { name: '@AdvisoryLock(key)', pair: 'advisory', handWritten: false, op: (id) => service.advisory(id) },
  ];
}

async function statementsPerOp(orm: MikroORM, log: string[], v: Variant, ids: () => number): Promise<number> {
  const n = 20;
  log.length = 0;
  for (let i = 0; i < n; i++) await v.op(ids());
  return log.length / n;
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const value = (name: string) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : undefined);
  const quick = argv.includes('--quick');
  const backends = (value('--backends')?.split(',') ?? BACKENDS) as BackendName[];
  const cellMs = Number(value('--cell-ms') ?? (quick ? 150 : 600));
  const rounds = quick ? 1 : 3;
  let over = 0;
  for (const backend of backends) {
    const orm = await createMikroOrm(backend, ENTITIES, { poolSize: 20 });
    if (!orm) {
      console.log(`\n${backend}: unavailable, skipped`);
      continue;
    }
    const log: string[] = [];
    logStatements(orm, log);
    const { installation } = await installLocking(orm, { namespace: 'mikro-bench' });
    const seed = orm.em.fork();
    for (const cls of ENTITIES) for (let i = 1; i <= ROWS; i++) seed.create(cls as typeof MbUser, { id: i, credits: 1_000_000 } as never);
    await seed.flush();
    const random = rng(7);
    const ids = () => 1 + Math.floor(random() * ROWS);
    const list = variants(orm, backend);
    const trips = new Map<string, number>();
    for (const v of list) {
      await warmUp(() => v.op(ids()), 100);
      trips.set(v.name, await statementsPerOp(orm, log, v, ids));
    }
    const results = new Map<string, Map<number, CellResult[]>>();
    for (const workers of [1, 8]) {
      for (let round = 0; round < rounds; round++) {
        for (const v of list) {
          const r = await runCell(() => v.op(ids()), { workers, durationMs: cellMs });
          const byWorkers = results.get(v.name) ?? new Map<number, CellResult[]>();
          byWorkers.set(workers, [...(byWorkers.get(workers) ?? []), r]);
          results.set(v.name, byWorkers);
        }
      }
    }
    const opsPerSec = (name: string, w: number) => {
      const cells = results.get(name)!.get(w)!;
      return cells.reduce((s, c) => s + c.ops, 0) / (cells.reduce((s, c) => s + c.elapsedMs, 0) / 1000);
    };
    const errors = (name: string) => [...results.get(name)!.values()].flat().reduce((s, c) => s + c.errors, 0);
    const reference = trips.get('unlocked (em.transactional)')!;
    console.log(
      `\nMikroORM ${orm.config.get('dbName')} on ${backend === 'postgres' ? 'PostgreSQL' : 'MariaDB'} — charge a user, ${ROWS} rows, ${rounds}×${cellMs} ms per cell`,
    );
    console.log('| variant | statements/op | budget | ops/s (1 worker) | ops/s (8 workers) | vs hand-written (8 workers) | errors |');
    console.log('|---|---|---|---|---|---|---|');
    for (const v of list) {
      const hand = list.find((h) => h.pair === v.pair && h.handWritten);
      const t = trips.get(v.name)!;
      const extra = v.pair === 'advisory' && !installation.dialect.capabilities.transactionAdvisoryLocks ? 2 : 1;
      const budget = v.pair === 'reference' ? reference : v.pair === 'version' ? trips.get("MikroORM's version: true")! : reference + extra;
      const ok = t <= budget + 1e-9;
      if (!ok) over++;
      const ratio = hand && !v.handWritten ? `${((opsPerSec(v.name, 8) / opsPerSec(hand.name, 8) - 1) * 100).toFixed(1)} %` : '—';
      console.log(
        `| ${v.name} | ${t.toFixed(2)} | ${ok ? '≤' : 'OVER'} ${budget.toFixed(2)} | ${opsPerSec(v.name, 1).toFixed(0)} | ${opsPerSec(v.name, 8).toFixed(0)} | ${ratio} | ${errors(v.name)} |`,
      );
    }
    await orm.close(true);
  }
  await teardownBackends();
  if (over) console.log(`\n${over} variant(s) over the round-trip budget`);
  return over ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    process.exit(2);
  },
);
