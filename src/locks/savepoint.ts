import { rolledBackTo, savepointOpened, savepointReleased } from '../context/connection-model';
import type { Installation } from '../installations';
import type { PortConnection } from '../orm/port';

let nextSavepoint = 1;

/**
 * Runs `work` inside a savepoint of `connection`'s open transaction: a failure rolls back to the
 * savepoint, so the transaction stays usable. When the database ended the whole transaction
 * instead (MySQL/MariaDB 1213, or 1205 with innodb_rollback_on_timeout), the savepoint is gone
 * too: the original error comes out converted (DeadlockError, LockTimeoutError — retryable),
 * never an error about the savepoint.
 */
export async function inSavepoint<T>(inst: Installation, connection: PortConnection, prefix: string, work: () => Promise<T>): Promise<T> {
  const name = `${prefix}_${nextSavepoint++}`;
  await connection.query(`SAVEPOINT ${name}`);
  savepointOpened(connection, name);
  let result: T;
  try {
    result = await work();
  } catch (error) {
    const converted = inst.dialect.convertError(error);
    try {
      await connection.query(`ROLLBACK TO SAVEPOINT ${name}`);
      rolledBackTo(connection, name);
    } catch {
      throw converted ?? error; // the transaction itself is gone: report why, not the savepoint
    }
    throw error;
  }
  await connection.query(`RELEASE SAVEPOINT ${name}`);
  savepointReleased(connection, name);
  return result;
}
