/**
 * Where scheduled-job locks live: the application's database (scheduled-database.ts) or Redis
 * (src/redis/scheduled-lease.ts). The strategy (scheduled.ts) only asks these.
 */
export interface ScheduledStorage {
  /** For messages: `DataSource 'default' (postgres, test)`, `Redis (3 nodes)`. */
  readonly label: string;
  /** One attempt, never waiting: the run's hold, or null when another holder has `name`. */
  tryAcquire(name: string, lockAtMostForMs: number): Promise<ScheduledHold | null>;
}

/** One run's hold of a job's lock. */
export interface ScheduledHold {
  /** The run's number (grows with each run of the job; database storage), or the lease's fencing token (Redis). */
  readonly token: bigint;
  /** How long the hold is guaranteed from the moment the attempt was sent (≤ lockAtMostFor). */
  readonly validMs: number;
  /** Ends the run: the lock stays taken until `lockAtLeastForMs` after it was taken, then it is free. */
  end(lockAtLeastForMs: number): Promise<void>;
}
