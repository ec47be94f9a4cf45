/**
 * The connection model against the database on MikroORM, by generated programs (see
 * test/support/model-program.ts): ormlock's transaction(), nested em.transactional (savepoints),
 * em.fork().transactional, a fork's em.begin/commit/rollback named as { dataSource }, advisory locks
 * of both scopes, row locks, throws, siblings, and killed connections — checked after each step
 * against pg_locks / IS_USED_LOCK and a second worker's try-lock; a deliberately broken model must
 * be caught and shrink to at most 6 steps; shrunk failures are kept as named regressions.
 */
import { MkLcRow } from '../fixtures/lost-connection';
import { describeEachMikroBackend } from '../support/mikro-suite';
import { modelBasedSuite } from '../support/model-suite';
import { mikroWorld } from '../support/model-worlds';

describeEachMikroBackend('the connection model against the database', [MkLcRow], (env) => {
  modelBasedSuite(
    () => mikroWorld(env),
    () => env.handle.dialect.capabilities,
    [
      [
        'a lock taken in a rolled-back nested em.transactional is gone, and taken again by the next call',
        [
          { t: 'emtx' },
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
        "a killed connection under em.begin: the fork's commit fails, the model forgets its locks",
        [{ t: 'begin' }, { t: 'xlock', key: 'mb-a' }, { t: 'end' }, { t: 'kill' }, { t: 'worker', key: 'mb-a' }],
      ],
      [
        "a transaction inside a session lock's pinned connection is the same connection to the model (it was two: the pinned root and the transaction's)",
        [
          { t: 'slock', key: 'mb-a' },
          { t: 'tx' },
          { t: 'xlock', key: 'mb-a' },
          { t: 'worker', key: 'mb-a' },
          { t: 'end' },
          { t: 'end' },
          { t: 'worker', key: 'mb-a' },
        ],
      ],
      [
        'a fork after em.begin() named as { dataSource }: ormlock calls join its transaction (they opened another connection)',
        [{ t: 'begin' }, { t: 'xlock', key: 'mb-a' }, { t: 'row' }, { t: 'worker', key: 'mb-a' }, { t: 'end' }, { t: 'worker', key: 'mb-a' }, { t: 'throw' }],
      ],
    ],
  );
});
