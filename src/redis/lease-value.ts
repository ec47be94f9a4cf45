import { randomFillSync } from 'crypto';

/**
 * A lease's value: 32 hex digits, unique per acquisition attempt (what release and extend
 * compare against): 96 random bits from the CSPRNG, drawn again every 2^28 values, then a
 * 28-bit counter after a fixed `1` digit. Unique without a draw per attempt: two values of one
 * process differ in the counter or in the random part; values of two processes (or of two
 * draws) are equal only if 96 random bits are. A hex string of a number below 2^31 costs a
 * fraction of formatting 16 random bytes as hex for each attempt.
 */
const RANDOM = Buffer.allocUnsafe(12);
const FIRST = 0x10000000;
const END = 0x20000000;
let prefix = '';
let counter = END;

export function leaseValue(): string {
  if (counter === END) {
    prefix = randomFillSync(RANDOM).toString('hex');
    counter = FIRST;
  }
  return prefix + (counter++).toString(16);
}
