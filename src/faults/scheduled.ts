/**
 * The faults of scheduled locks (src/locks/scheduled*.ts, the dialects' scheduled parts; a missing
 * table: ./migrations). One factory per fault, one wording; the caller throws what it returns.
 */
import { LockError, LockLostError } from '../errors';

/** The database answered a statement in a shape ormlock does not expect (a driver or server change). */
export function unexpectedResult(statement: string, missing: string, result: unknown): LockError {
  return new LockError(`${statement} returned ${missing} (got ${JSON.stringify(result)}); the database driver answered in a shape ormlock does not know`);
}

/** A scheduled job still ran when its `lockAtMostFor` passed (src/locks/scheduled.ts). */
export function scheduledOverran(name: string, lockAtMostForMs: number): LockLostError {
  return new LockLostError(`scheduled job '${name}': lockAtMostFor (${lockAtMostForMs} ms) passed while it still ran; another instance may run it now`, {
    key: name,
  });
}
