/** Runs one statement on some connection and returns its rows. */
export type RunQuery = (sql: string, parameters?: unknown[]) => Promise<any[]>;
