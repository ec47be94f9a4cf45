/**
 * Profiles the uncontended lock paths, one backend, 1,000 rows: the bench's variants (by id:
 * pessimistic, advisory, transactional, versioned and their hand-written twins) and lock()/withLock,
 * sequential operations taken in interleaved slices so that machine noise hits every path alike.
 *
 *   node --cpu-prof --cpu-prof-dir=/tmp/prof -r ts-node/register/transpile-only bench/profile-locks.ts [postgres|mariadb] [ops] [slices]
 *   PROFILE_ONLY=pessimistic,hand-locked …   (only these paths)
 *
 * Prints the async resources each path makes per operation (promises above all: a count, the same
 * in every run), then the wall and client CPU time per operation of each path (median over the
 * slices, and the mean); the .cpuprofile shows where the client CPU goes.
 */
import 'reflect-metadata';
import { createHook } from 'async_hooks';
import { installLocking, lock, transaction, withLock } from '../src';
import { createDataSource, teardownBackends, type BackendName } from '../test/support/backends';
import { ORMLOCK_PROCESS_VARIANTS, applyRuntimeEntityDecorators } from './charge-variants';
import { BENCH_ENTITIES, BenchHandVersionedUser, BenchUser, BenchVersionedUser, ROW_COUNT } from './entities';

const VARIANTS = ['hand-locked', 'pessimistic', 'hand-advisory', 'advisory', 'hand-tx', 'transactional', 'hand-optimistic', 'versioned'];

async function main(): Promise<void> {
  const backend = (process.argv[2] ?? 'postgres') as BackendName;
  const ops = Number(process.argv[3] ?? 2000);
  const slices = Number(process.argv[4] ?? 10);
  applyRuntimeEntityDecorators();
  const ds = await createDataSource(backend, BENCH_ENTITIES, { poolSize: 10 });
  if (!ds) throw new Error(`${backend} is not reachable`);
  const handle = await installLocking(ds);
  try {
    let ids: number[] = [];
    for (const entity of [BenchUser, BenchVersionedUser, BenchHandVersionedUser]) {
      const repo = ds.getRepository(entity);
      if ((await repo.count()) !== ROW_COUNT) {
        // raw statements: @Versioned refuses clear() and unversioned deletes of its entity
        await ds.query(`DELETE FROM ${ds.driver.escape(repo.metadata.tablePath)}`);
        await ds
          .createQueryBuilder()
          .insert()
          .into(entity)
          .values(Array.from({ length: ROW_COUNT }, () => ({ credits: 1_000_000_000 })))
          .execute();
      }
      ids = (await repo.find({ select: { id: true }, order: { id: 'ASC' } })).map((u) => u.id);
    }
    const only = process.env.PROFILE_ONLY?.split(',');
    const paths: Array<[string, (id: number) => Promise<void>]> = [];
    for (const id of VARIANTS) {
      if (only && !only.includes(id)) continue;
      const prepared = await ORMLOCK_PROCESS_VARIANTS.find((v) => v.id === id)!.prepare({ ds, backend, ids });
      paths.push([id, (i) => prepared.charge(i)]);
    }
    const repo = ds.getRepository(BenchUser);
    const userOf = new Map((await repo.findBy({})).map((u) => [u.id, u]));
    if (!only || only.includes('lock()')) {
      paths.push([
        'lock()',
        (i) =>
          transaction(async () => {
            const u = await lock(userOf.get(i)!);
            await repo.update({ id: i }, { credits: u.credits - 1 });
          }),
      ]);
    }
    if (!only || only.includes('withLock')) {
      paths.push([
        'withLock',
        (i) =>
          withLock(userOf.get(i)!, async (u) => {
            await repo.update({ id: i }, { credits: u.credits - 1 });
          }),
      ]);
    }
    for (const [, run] of paths) for (let k = 0; k < 200; k++) await run(ids[k % ids.length]);
    // async resources (promises above all) made per operation: a count, not a time, so it is the
    // same in every run; each promise costs the AsyncLocalStorage's hooks on top of its own making
    for (const [name, run] of paths) {
      const made = new Map<string, number>();
      const hook = createHook({ init: (_id, type) => void made.set(type, (made.get(type) ?? 0) + 1) });
      const n = 100;
      hook.enable();
      for (let k = 0; k < n; k++) await run(ids[k % ids.length]);
      hook.disable();
      const list = [...made].map(([type, c]) => `${type} ${Math.round((c / n) * 10) / 10}`).join(', ');
      console.log(`${backend} ${name.padEnd(16)} async resources per op: ${list}`);
    }
    const per = Math.max(1, Math.round(ops / slices));
    const taken = new Map(paths.map(([name]) => [name, { cpu: [] as number[], wall: [] as number[] }]));
    for (let s = 0; s < slices; s++) {
      for (const [name, run] of paths) {
        const started = process.hrtime.bigint();
        const cpu0 = process.cpuUsage();
        for (let k = 0; k < per; k++) await run(ids[((s * per + k) * 7919) % ids.length]);
        const cpu = process.cpuUsage(cpu0);
        taken.get(name)!.wall.push(Number(process.hrtime.bigint() - started) / 1e3 / per);
        taken.get(name)!.cpu.push((cpu.user + cpu.system) / per);
      }
    }
    const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[xs.length >> 1];
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    for (const [name, t] of taken) {
      console.log(
        `${backend} ${name.padEnd(16)} wall ${median(t.wall).toFixed(0)} µs/op, cpu ${median(t.cpu).toFixed(0)} µs/op (median of ${slices}; mean ${mean(t.cpu).toFixed(0)})`,
      );
    }
    // each decorator over its first twin: the median of the per-slice CPU ratios (same slice, same load)
    for (const [name, t] of taken) {
      const twin = ORMLOCK_PROCESS_VARIANTS.find((v) => v.id === name)?.twins?.[0];
      const other = twin ? taken.get(twin) : undefined;
      if (!other) continue;
      const ratios = t.cpu.map((c, i) => c / other.cpu[i]);
      const share = (median(ratios) - 1) * 100;
      console.log(`${backend} ${name} over ${twin}: cpu ${share >= 0 ? '+' : ''}${share.toFixed(1)} % (median of ${slices} slice ratios)`);
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
