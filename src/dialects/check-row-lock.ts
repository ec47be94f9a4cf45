import { rowLockUnsupported } from '../faults/row-locks';
import type { RowLockSpec } from '../locks/row-lock-options';
import type { DialectCapabilities } from './dialect';

/** Capability check shared by every dialect: says which option this database cannot honour. */
export function checkRowLockAgainst(caps: DialectCapabilities, dialectName: string, spec: RowLockSpec, subject: string, hasJoins = false): void {
  const refuse = (what: string, hint: string) => {
    throw rowLockUnsupported(subject, what, dialectName, hint);
  };
  if (!caps.rowLockModes.has(spec.mode)) {
    refuse(`row lock mode '${spec.mode}'`, `Use one of: ${[...caps.rowLockModes].join(', ')}.`);
  }
  if (spec.onLocked === 'nowait' && !caps.nowait) refuse(`onLocked 'nowait'`, 'Use timeoutMs instead.');
  if (spec.onLocked === 'skip_locked' && !caps.skipLocked) refuse(`onLocked 'skip_locked'`, 'Upgrade the server.');
  if (hasJoins && !caps.lockOf) {
    refuse(
      'a locked read with joins (it would lock the joined tables too: the database has no FOR UPDATE OF)',
      "Read the entity without joins and its relations in reads of their own: a many-to-one by the related entity's key; " +
        "a one-to-many with relationLoadStrategy: 'query' (TypeORM) or strategy: 'select-in' (MikroORM).",
    );
  }
}
