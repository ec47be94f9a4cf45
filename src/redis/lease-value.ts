import { randomFillSync } from 'crypto';

/**
 * A lease's value: 128 random bits as 32 hex digits, unique per acquisition attempt (what
 * release and extend compare against). Drawn from the CSPRNG 256 values at a time: one
 * `randomFillSync` per 4 KiB instead of one `randomBytes` call (and Buffer) per attempt.
 */
const POOL = Buffer.allocUnsafe(16 * 256);
let offset = POOL.length;

export function leaseValue(): string {
  if (offset === POOL.length) {
    randomFillSync(POOL);
    offset = 0;
  }
  const value = POOL.toString('hex', offset, offset + 16);
  offset += 16;
  return value;
}
