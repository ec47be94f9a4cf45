/** The tests' embedded PostgreSQL is the demo's: one implementation, in examples/embedded-postgres.ts. */
export { startEmbeddedPostgres, EmbeddedPostgresUnavailable, type EmbeddedPg } from '../../examples/embedded-postgres';
