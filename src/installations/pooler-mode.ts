/**
 * `'transaction'`: a transaction-pooling pooler (PgBouncer `pool_mode = transaction`, RDS Proxy,
 * Supavisor's transaction mode): each transaction may run on another server connection, so
 * nothing may rely on session state. `'session'`: a session-pooling pooler (one server connection
 * per client connection for its whole life). `'none'`: a direct connection.
 */
export type PoolerMode = 'transaction' | 'session' | 'none';
