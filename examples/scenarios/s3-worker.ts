/**
 * The seed's S3Worker: fetch a file, modify it, upload it back — `with_advisory_lock
 * ("S3Worker-Lock")` so that two workers (in any process) never interleave. Without the lock,
 * two workers fetch the same version and the later upload drops the earlier one's change.
 * Here the "bucket" is in memory; the lock is the database's advisory lock.
 */
import type { DataSource } from 'typeorm';
import { AdvisoryLock } from '../../src';
import { race } from '../../src/testing';
import { Bucket } from '../bucket';
import { sleep, type Scenario } from '../scenario';

const WORKERS = 10;

class UnlockedS3Worker {
  constructor(protected readonly bucket: Bucket) {}
  async perform(job: number): Promise<void> {
    const file = await this.bucket.fetchFile(); // fetch_file
    await sleep(5);
    const modified = `${file}job ${job}\n`; // modify_file
    await this.bucket.uploadFile(modified); // upload_file
  }
}

class S3Worker extends UnlockedS3Worker {
  /** ActiveRecord::Base.with_advisory_lock("S3Worker-Lock") — a session lock, no transaction needed. */
  @AdvisoryLock('S3Worker-Lock', { scope: 'session' })
  override async perform(job: number): Promise<void> {
    await super.perform(job);
  }
}

export const scenario: Scenario = {
  name: 'S3Worker',
  strategy: "@AdvisoryLock('S3Worker-Lock')",
  order: 30,
  async run(_ds: DataSource, { locked }) {
    const bucket = new Bucket();
    const worker = locked ? new S3Worker(bucket) : new UnlockedS3Worker(bucket);
    const results = await race(WORKERS, (job) => worker.perform(job));
    const failed = results.filter((r) => r.status === 'rejected');
    if (failed.length) throw (failed[0] as PromiseRejectedResult).reason;
    const lost = WORKERS - bucket.lines().length;
    return { anomalies: lost, detail: `${lost} of ${WORKERS} jobs' changes lost from the file` };
  },
};
