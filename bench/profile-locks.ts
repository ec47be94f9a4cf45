/**
 * Profiles the uncontended lock paths: 2,000 sequential operations of each of @Pessimistic,
 * @AdvisoryLock, lock() (in transaction()) and withLock on one backend, 1,000 rows.
 *
 *   node --cpu-prof --cpu-prof-dir=/tmp/prof -r ts-node/register/transpile-only bench/profile-locks.ts [postgres|mariadb] [ops]
 *
 * Prints the wall time per operation of each path; the .cpuprofile shows where the client CPU goes.
 */
import 'reflect-metadata';
import { installLocking, lock, transaction, withLock } from '../src';
import { createDataSource, teardownBackends, type BackendName } from '../test/support/backends';
import { ORMLOCK_PROCESS_VARIANTS, applyRuntimeEntityDecorators } from './charge-variants';
import { BENCH_ENTITIES, BenchUser, ROW_COUNT } from './entities';

async function main(): Promise<void> {
  const backend = (process.argv[2] ?? 'postgres') as BackendName;
  const ops = Number(process.argv[3] ?? 2000);
  applyRuntimeEntityDecorators();
  const ds = await createDataSource(backend, BENCH_ENTITIES, { poolSize: 10 });
  if (!ds) throw new Error(`${backend} is not reachable`);
  const handle = await installLocking(ds);
  try {
    const repo = ds.getRepository(BenchUser);
    if ((await repo.count()) < ROW_COUNT) {
      await repo.clear();
      await repo.insert(Array.from({ length: ROW_COUNT }, () => ({ credits: 1_000_000_000 })));
    }
    const ids = (await repo.find({ select: { id: true } })).map((u) => u.id);
    const byId = (id: string) => ORMLOCK_PROCESS_VARIANTS.find((v) => v.id === id)!;
    const paths: Array<[string, (id: number) => Promise<void>]> = [];
    for (const id of ['pessimistic', 'advisory', 'hand-locked', 'hand-advisory']) {
      const prepared = await byId(id).prepare({ ds, backend, ids });
      paths.push([id, (i) => prepared.charge(i)]);
    }
    const users = await repo.findBy({});
    const userOf = new Map(users.map((u) => [u.id, u]));
    paths.push(['lock()', (i) => transaction(async () => {
      const u = await lock(userOf.get(i)!);
      await repo.update({ id: i }, { credits: u.credits - 1 });
    })]);
    paths.push(['withLock', (i) => withLock(userOf.get(i)!, async (u) => {
      await repo.update({ id: i }, { credits: u.credits - 1 });
    })]);
    const only = process.env.PROFILE_ONLY?.split(',');
    for (const [name, run] of paths) {
      if (only && !only.includes(name)) continue;
      for (let k = 0; k < 200; k++) await run(ids[k % ids.length]);
      const started = process.hrtime.bigint();
      const cpu0 = process.cpuUsage();
      for (let k = 0; k < ops; k++) await run(ids[(k * 7919) % ids.length]);
      const wall = Number(process.hrtime.bigint() - started) / 1e3 / ops;
      const cpu = process.cpuUsage(cpu0);
      console.log(`${backend} ${name.padEnd(14)} wall ${wall.toFixed(0)} µs/op, cpu ${((cpu.user + cpu.system) / ops).toFixed(0)} µs/op`);
    }
  } finally {
    await handle.uninstall();
    await ds.destroy();
    await teardownBackends().catch(() => undefined);
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
