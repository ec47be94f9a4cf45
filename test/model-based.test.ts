/**
 * The connection model against the database, by generated programs (see test/support/model-program.ts),
 * on TypeORM: a seeded run of 200 programs per database (a user's own QueryRunner transactions
 * among the steps), a seeded run of 50 programs with killed connections among the steps, a
 * deliberately broken model that the run must catch and shrink to a few steps, and the shrunk
 * failures found on the way, kept as named regressions.
 */
import { EDGE_ENTITIES } from './fixtures/edges';
import { modelBasedSuite } from './support/model-suite';
import { typeormWorld } from './support/model-worlds';
import { describeEachBackend } from './support/suite';

describeEachBackend('the connection model against the database', EDGE_ENTITIES, (env) => {
  modelBasedSuite(
    () => typeormWorld(env),
    () => env.handle.dialect.capabilities,
    [
      [
        'a lock taken in a savepoint that rolls back is gone, and taken again by the next call',
        [
          { t: 'tx' },
          { t: 'tx' },
          { t: 'xlock', key: 'mb-a' },
          { t: 'end' },
          { t: 'throw' },
          { t: 'worker', key: 'mb-a' },
          { t: 'xlock', key: 'mb-a' },
          { t: 'worker', key: 'mb-a' },
        ],
      ],
      [
        'siblings inside a session lock (no transaction): each opens its own transaction on the pinned connection, one after another',
        [
          { t: 'slock', key: 'mb-a' },
          { t: 'siblings', key: 'mb-b', secondTimeoutMs: 0 },
          { t: 'worker', key: 'mb-a' },
        ],
      ],
      [
        'a session lock inside a transaction that throws is released on the same connection',
        [{ t: 'tx' }, { t: 'slock', key: 'mb-a' }, { t: 'throw' }, { t: 'worker', key: 'mb-a' }, { t: 'throw' }],
      ],
      [
        'a lock body whose key its transaction already held: siblings inside it do not queue behind it (they hung)',
        [
          { t: 'tx' },
          { t: 'worker', key: 'mb-a' },
          { t: 'siblings', key: 'mb-a', secondTimeoutMs: 20 },
          { t: 'xlock', key: 'mb-a' },
          { t: 'worker', key: 'mb-a' },
          { t: 'worker', key: 'mb-a' },
          { t: 'siblings', key: 'mb-a', secondTimeoutMs: 0 },
        ],
      ],
      [
        'a row lock taken in a savepoint that rolls back is gone (PostgreSQL and MariaDB both release it)',
        [{ t: 'xlock', key: 'mb-a' }, { t: 'tx' }, { t: 'row' }, { t: 'throw' }, { t: 'worker', key: 'mb-a' }],
      ],
      [
        'a timed row lock, then an untimed advisory lock in the same transaction',
        [{ t: 'tx' }, { t: 'row', timeoutMs: 200 }, { t: 'xlock', key: 'mb-a' }, { t: 'tx' }, { t: 'row' }, { t: 'throw' }, { t: 'worker', key: 'mb-a' }],
      ],
      [
        'a killed connection: the model forgets its locks at once (it kept them until the dead QueryRunner was released)',
        [{ t: 'xlock', key: 'mb-a' }, { t: 'kill' }, { t: 'worker', key: 'mb-a' }],
      ],
      [
        "a killed user QueryRunner whose lock outlived its body: the dead runner's release makes the model forget it",
        [{ t: 'runner' }, { t: 'xlock', key: 'mb-a' }, { t: 'end' }, { t: 'kill' }, { t: 'worker', key: 'mb-a' }],
      ],
    ],
  );
});
