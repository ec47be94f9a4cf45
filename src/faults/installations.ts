/**
 * The faults of choosing an installation (src/installations/): an
 * entity no installed ORM knows, a plain object, no installation, several candidates. One factory
 * per fault, one wording; the caller throws what it returns.
 */
import { describeValue } from '../describe-value';
import { LockConfigError } from '../errors';

/** `target` is not an entity of the installation labelled `label`. */
export function notAnEntity(caller: string, target: Function | undefined, label: string): LockConfigError {
  return new LockConfigError(
    `${caller}: ${target?.name ?? 'this class'} is not an entity of ${label}; add it to its entities, or pass { dataSource } naming the one it belongs to.`,
    { entity: target?.name },
  );
}

/** No live installation's ORM knows the entity class `cls`. */
export function notAnEntityOfAny(caller: string, cls: Function, installed: readonly string[]): LockConfigError {
  return new LockConfigError(`${caller}: ${cls.name} is not an entity of any installed ORM instance (installed: ${installed.join('; ')}).`, {
    entity: cls.name,
  });
}

/** A plain object ormlock has not seen loaded or saved: which entity it is cannot be known. */
export function plainObject(caller: string, where: string): LockConfigError {
  return new LockConfigError(
    `${caller}: this is a plain object, not an instance of an entity class, and it was not loaded or saved through ${where}: ` +
      'ormlock knows the entity of a plain object (an EntitySchema without `target`) only once TypeORM has loaded or saved it. ' +
      'Load it through a repository of the installed DataSource first (repository.findOneBy(…)), or give the EntitySchema a `target` class.',
  );
}

/** ormlock is not installed on `what` (or on anything); `entity`: the class, or its name. */
export function notInstalled(caller: string, what: string | undefined, entity: Function | string | undefined): LockConfigError {
  const name = typeof entity === 'function' ? entity.name : entity;
  return new LockConfigError(
    `${caller}: ormlock is not installed on ${what ?? 'any DataSource or MikroORM instance'}` +
      `${name ? ` (entity ${name})` : ''}: call \`await installLocking(dataSource)\` after \`dataSource.initialize()\` ` +
      '(or `installLocking(orm)` from ormlock/mikro-orm).',
    { entity: name },
  );
}

/** The entity was loaded through an ORM instance where ormlock is not installed. */
export function loadedElsewhere(caller: string, cls: Function | undefined, elsewhere: string): LockConfigError {
  return new LockConfigError(
    `${caller}: this ${cls?.name ?? 'entity'} was loaded through ${elsewhere}, where ormlock is not installed: its row is in that ` +
      'database, so no other installation can lock it. Call installLocking on that DataSource, or load the entity through an installed one.',
    { entity: cls?.name },
  );
}

/** Several installations could serve the call and nothing in it says which. */
export function ambiguousInstallation(caller: string, candidates: readonly string[], cls: Function | undefined): LockConfigError {
  return new LockConfigError(
    `${caller}: ormlock is installed on ${candidates.length} ORM instances (${candidates.join('; ')}) and nothing ` +
      `in this call says which one to use: pass { dataSource } (the DataSource or MikroORM instance), or call it inside a transaction of that one.`,
    { entity: cls?.name, candidates },
  );
}

/** A second installLocking on one ORM instance while the first is under way. */
export function installUnderWay(label: string): LockConfigError {
  return new LockConfigError(
    `installLocking: another installLocking call on ${label} is under way; install once per instance and share the handle it returns.`,
  );
}

/** installLocking was given something that is not the ORM instance it installs on; `hint` points to the other entry point. */
export function notAnOrmInstance(caller: string, expected: string, value: unknown, hint = ''): LockConfigError {
  return new LockConfigError(`${caller}: expected ${expected} (got ${describeValue(value)})${hint ? `; ${hint}` : ''}.`);
}

/** installLocking on an ORM instance that is installed already. */
export function alreadyInstalled(caller: string, label: string): LockConfigError {
  return new LockConfigError(`${caller}: already installed on ${label}; call uninstall() on its handle first.`);
}

/** installLocking on a MikroORM instance that is not connected (not initialized, or closed). */
export function notConnected(caller: string, label: string): LockConfigError {
  return new LockConfigError(
    `${caller}: ${label} is not connected (not initialized, or closed): call it after \`await MikroORM.init(…)\`, before \`orm.close()\`.`,
  );
}

/** `pooler: 'none'` declared where a connection pooler answers: the backend announced at connect (`handshakeId`) is not the one running statements (`backendId`). */
export function poolerNotNone(label: string, handshakeId: number | undefined, backendId: number | undefined): LockConfigError {
  return new LockConfigError(
    `installLocking: pooler: 'none' was given, but ${label} goes through a connection pooler (the server announced backend ` +
      `${handshakeId} at connect, and backend ${backendId} runs its statements). Say which pooling it does: ` +
      "pooler: 'transaction' (PgBouncer pool_mode = transaction, RDS Proxy, Supavisor port 6543) or pooler: 'session'.",
  );
}
