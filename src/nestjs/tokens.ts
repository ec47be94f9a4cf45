/** Injection tokens of `ormlock/nestjs` (symbols: they never collide with a user's string tokens). */

/** The options given to `OrmlockModule.forRoot` (or returned by `forRootAsync`'s factory). */
export const ORMLOCK_MODULE_OPTIONS = Symbol.for('ormlock.nestjs.options');
/** The `Redlock` built from `redis: { nodes }` (what `@InjectRedlock()` injects). */
export const ORMLOCK_REDLOCK = Symbol.for('ormlock.nestjs.redlock');
