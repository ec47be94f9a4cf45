/**
 * The port's connection on its own, so that the dialects can name it without importing the port
 * (which names the dialect).
 */
/** One database connection, as strategies and dialects use it. */
export interface PortConnection {
  query(sql: string, parameters?: unknown[]): Promise<any>;
  /** True while a transaction (or a savepoint inside one) is open on it. */
  readonly isTransactionActive: boolean;
  /** True once it went back to the pool (or was closed). */
  readonly isReleased: boolean;
  /** The ORM's manager bound to this connection: what user code inside the scope gets. */
  readonly manager: any;
  /**
   * The object that stands for the database connection itself, when several of these wrap one
   * (MikroORM's savepoint contexts share their root's); the connection model keys on it. Default: this object.
   */
  readonly physical?: object;
}
