/**
 * What a demo scenario is: one file in examples/scenarios/ exporting `scenario` (or a default
 * export) of this shape. The demo finds every file there, runs each scenario twice — without
 * the lock and with it — and prints the anomalies of both runs.
 *
 * ```ts
 * // examples/scenarios/s3-worker.ts
 * export const scenario: Scenario = {
 *   name: 'S3Worker', strategy: 'withAdvisoryLock', order: 30,
 *   async run(ds, { locked }) { …; return { anomalies, detail: '…' }; },
 * };
 * ```
 */
import type { DataSource } from 'typeorm';

export interface ScenarioResult {
  /** What went wrong: lost updates, duplicate positions, overlapping runs… 0 when the lock works. */
  anomalies: number;
  /** One short line for people (what was counted). */
  detail?: string;
}

export interface ScenarioOptions {
  /** false: the control run without the lock; true: the same work with it. */
  locked: boolean;
}

export interface Scenario {
  /** Short name, shown in the table (the seed's name for it). */
  name: string;
  /** The ormlock strategy that fixes it, shown in the table. */
  strategy: string;
  /** Sort key in the table (lower first); scenarios without one come last, by name. */
  order?: number;
  /** Why it cannot run here (e.g. no Redis), or undefined when it can. Checked before `run`. */
  unavailable?(): Promise<string | undefined> | string | undefined;
  /** Runs the scenario on an installed DataSource with the examples' schema migrated. */
  run(ds: DataSource, options: ScenarioOptions): Promise<ScenarioResult | number>;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
