/**
 * Transaction isolation levels, as TypeORM names them. Declared here rather than imported from
 * `typeorm/driver/types/IsolationLevel`: that deep path does not resolve for consumers under
 * `moduleResolution: bundler` (TypeORM's "exports" maps it without an extension), which turned
 * `TransactionOptions.isolation` into an error in their type-check.
 */
export type IsolationLevel = 'READ UNCOMMITTED' | 'READ COMMITTED' | 'REPEATABLE READ' | 'SERIALIZABLE' | 'SNAPSHOT';
