/**
 * Child process of bench/run.ts. typeorm-transactional patches `Repository.prototype.manager`
 * (and the DataSource) globally, just like ormlock does, so it cannot share a process with
 * ormlock. Without ormlock loaded, this worker measures typeorm-transactional's
 * @Transactional() (unlocked body) and, in the same process, the hand-written
 * unlocked-transaction baseline it is compared with.
 * Progress goes to stderr; the result is one line on stdout: RESULT_MARKER + JSON.
 *
 * Spawned as: node -r ts-node/register/transpile-only -r reflect-metadata
 *             bench/typeorm-transactional-worker.ts --lib <lib> --config '<json>'
 */
import type { Repository } from 'typeorm';
import type { BackendName } from '../test/support/backends';
import { HAND_UNLOCKED, decorateMethod, type VariantSpec } from './charge-variants';
import { BenchUser } from './entities';
import { processMaxRssMb } from './harness';
import { benchBackend, type BackendRecord, type ProcessKind, type SuiteConfig } from './suite';

export const RESULT_MARKER = '@@ormlock-bench-result@@';

export type WorkerLib = 'typeorm-transactional';

export interface WorkerConfig extends SuiteConfig {
  backends: BackendName[];
}

export interface WorkerResult {
  process: ProcessKind;
  backends: BackendRecord[];
  maxRssMb: number;
  notes: string[];
}

const TT_TRANSACTIONAL: VariantSpec = {
  id: 'tt-transactional',
  tag: 'e-tt',
  label: 'typeorm-transactional @Transactional()',
  entity: BenchUser,
  kind: 'other',
  ref: 'hand-tx',
  serializes: false,
  // Not ormlock's budget; shown for comparison, never gating.
  budget: { reference: 'unlocked-update', extra: 0, gating: false },
  prepare: async ({ ds }) => {
    const tt = require('typeorm-transactional');
    class Service {
      calls = 0;
      constructor(private readonly users: Repository<BenchUser>) {}
      async charge(id: number): Promise<void> {
        this.calls++;
        const user = await this.users.findOneByOrFail({ id });
        await this.users.update({ id }, { credits: user.credits - 1 });
      }
    }
    decorateMethod(Service, 'charge', tt.Transactional());
    const service = new Service(ds.getRepository(BenchUser));
    return { charge: (id) => service.charge(id), attempts: () => service.calls, notes: [] };
  },
};

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const arg = (name: string) => {
    const i = argv.indexOf(name);
    if (i < 0 || i + 1 >= argv.length) throw new Error(`typeorm-transactional-worker: missing ${name}`);
    return argv[i + 1];
  };
  const lib = arg('--lib') as WorkerLib;
  const config = JSON.parse(arg('--config')) as WorkerConfig;
  const progress = (line: string) => process.stderr.write(`${line}\n`);
  const notes: string[] = [];

  let result: WorkerResult;
  if (lib === 'typeorm-transactional') {
    const tt = require('typeorm-transactional');
    // AsyncLocalStorage, like ormlock (the library's default is cls-hooked, which is slower).
    tt.initializeTransactionalContext({ storageDriver: tt.StorageDriver.ASYNC_LOCAL_STORAGE });
    notes.push('typeorm-transactional 0.5.0, storageDriver ASYNC_LOCAL_STORAGE');
    const backends: BackendRecord[] = [];
    for (const backend of config.backends) {
      backends.push(
        await benchBackend(backend, [HAND_UNLOCKED, TT_TRANSACTIONAL], config, {
          process: 'typeorm-transactional',
          progress,
          install: async (ds) => {
            tt.addTransactionalDataSource(ds);
            return () => void tt.deleteDataSourceByName('default');
          },
        }),
      );
    }
    result = { process: 'typeorm-transactional', backends, maxRssMb: processMaxRssMb(), notes };
  } else {
    throw new Error(`typeorm-transactional-worker: unknown --lib ${String(lib)}`);
  }
  process.stdout.write(`${RESULT_MARKER}${JSON.stringify(result)}\n`);
}

if (require.main === module) {
  main().then(
    () => process.exit(0),
    (error) => {
      process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
      process.exit(1);
    },
  );
}
