import type { DataSource } from 'typeorm';

/**
 * What differs between TypeORM 0.3.x and 1.x, in one place. 0.3 names the DataSource of a
 * manager, query runner or query builder `.connection`; 1.x adds `.dataSource` (and keeps
 * `.connection`). Everything in the adapter reads it through `dataSourceOf`.
 */
export function dataSourceOf(x: unknown): DataSource | undefined {
  if (x === null || typeof x !== 'object') return undefined;
  const o = x as { dataSource?: DataSource; connection?: DataSource };
  return o.dataSource ?? o.connection;
}

/** A DataSource's name, as people see it in messages (`default` when it has none). */
export function dataSourceName(ds: DataSource | undefined): string {
  return (ds?.options as { name?: string } | undefined)?.name ?? 'default';
}

/** How people tell DataSources apart in messages: `DataSource 'default' (postgres 127.0.0.1:5432/shop)`. */
export function describeDataSource(ds: DataSource | undefined): string {
  if (!ds) return 'a DataSource';
  const o = ds.options as { type?: string; url?: string; host?: string; port?: number; database?: unknown };
  let where = '';
  try {
    const url = o.url ? new URL(o.url) : undefined;
    const host = url?.hostname || o.host;
    const port = (url?.port ? Number(url.port) : undefined) ?? o.port;
    const database = (ds.driver as { database?: unknown } | undefined)?.database ?? o.database ?? url?.pathname.slice(1);
    where = `${host ?? ''}${port ? `:${port}` : ''}${typeof database === 'string' && database ? `/${database}` : ''}`;
  } catch {
    /* an unparsable url: the type alone */
  }
  return `DataSource '${dataSourceName(ds)}' (${o.type}${where ? ` ${where}` : ''})`;
}

let version: string | undefined;

/** The version of the TypeORM this process loaded. */
export function typeormVersion(): string {
  if (version === undefined) {
    try {
      // typeorm's exports map does not export package.json: read it beside the resolved entry
      const fs = require('node:fs') as typeof import('node:fs');
      const path = require('node:path') as typeof import('node:path');
      let dir = path.dirname(require.resolve('typeorm'));
      while (!fs.existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
      version = String(JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).version);
    } catch {
      version = 'unknown';
    }
  }
  return version;
}
