import type { DataSource } from 'typeorm';
import type { LockDialect } from '../../dialects/dialect';
import { LockConfigError } from '../../errors';

export interface Installation {
  readonly dataSource: DataSource;
  readonly dialect: LockDialect;
}

const installations = new Map<DataSource, Installation>();

export function addInstallation(inst: Installation): void {
  installations.set(inst.dataSource, inst);
}

export function removeInstallation(ds: DataSource): void {
  installations.delete(ds);
}

export function installationOf(ds: DataSource): Installation | undefined {
  return installations.get(ds);
}

/** The installation for `ds`, or the only/first one; a LockConfigError when there is none. */
export function requireInstallation(ds?: DataSource): Installation {
  if (ds) {
    const inst = installations.get(ds);
    if (!inst) throw notInstalled();
    return inst;
  }
  const first = installations.values().next();
  if (first.done) throw notInstalled();
  return first.value;
}

/** The installation whose DataSource knows this entity class. */
export function installationForEntity(cls: Function): Installation | undefined {
  for (const inst of installations.values()) if (inst.dataSource.hasMetadata(cls)) return inst;
  return undefined;
}

function notInstalled(): LockConfigError {
  return new LockConfigError(
    'ormlock is not installed on this DataSource: call `await installLocking(dataSource)` after `dataSource.initialize()`.',
  );
}
