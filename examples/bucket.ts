import { sleep } from './scenario';

/**
 * A stand-in for the S3 object the seed's S3Worker fetches, modifies and uploads: reads and
 * writes take a little while. With a fencing token, an upload older than the newest one seen
 * is refused, as a storage service guarding writes with Redlock's tokens would.
 */
export class Bucket {
  private body = '';
  private newestToken = -1n;
  /** Uploads refused because their fencing token was older than one already seen. */
  refused = 0;

  async fetchFile(): Promise<string> {
    await sleep(2);
    return this.body;
  }

  async uploadFile(body: string, fencingToken?: bigint): Promise<void> {
    await sleep(2);
    if (fencingToken !== undefined) {
      if (fencingToken < this.newestToken) {
        this.refused++;
        return;
      }
      this.newestToken = fencingToken;
    }
    this.body = body;
  }

  lines(): string[] {
    return this.body.split('\n').filter(Boolean);
  }
}
