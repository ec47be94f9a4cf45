/**
 * The faults of the bounded pool wait (the ORM ports' `connect` with a PoolWait): a call that
 * already holds connections cannot get one more. One factory per fault, one wording for every
 * ORM; the caller throws what it returns.
 */
import { PoolExhaustedError } from '../errors';

/** No connection became free within `waitMs` while the call holds `held` of `poolSize`; `setting` names the ORM's pool size option. */
export function poolExhausted(
  caller: string | undefined,
  label: string,
  waitMs: number | undefined,
  held: number | undefined,
  poolSize: number,
  setting: string,
): PoolExhaustedError {
  return new PoolExhaustedError(
    `${caller ?? 'ormlock'}: no connection of ${label} became free within ${waitMs} ms, and this call already holds ` +
      `${held} of the pool's ${poolSize}; waiting longer could wait forever (every connection held by a caller waiting for one more). ` +
      `Enlarge the pool (${setting}), avoid requires_new / session locks inside held connections, or raise connectionTimeoutMs.`,
    { held, poolSize, waitedMs: waitMs },
  );
}
