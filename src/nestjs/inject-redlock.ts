import { Inject } from '@nestjs/common';
import { ORMLOCK_REDLOCK } from './tokens';

/**
 * Injects the `Redlock` that `OrmlockModule.forRoot({ redis: { nodes } })` built (one per
 * application, closed on `app.close()`).
 *
 * ```ts
 * @Injectable()
 * class Payouts {
 *   constructor(@InjectRedlock() readonly redlock: Redlock) {}
 *
 *   @DistributedLock((id: number) => `payout:${id}`, { redlock: (self: Payouts) => self.redlock, ttlMs: 5_000 })
 *   async pay(id: number) { … }
 * }
 * ```
 */
export function InjectRedlock(): PropertyDecorator & ParameterDecorator {
  return Inject(ORMLOCK_REDLOCK);
}
