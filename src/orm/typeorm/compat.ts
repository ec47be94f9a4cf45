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
