import { checkFunction } from '../arguments';
import { resolveInstallation, type Installation } from '../installations';
import { ambientTx, currentFrame, liveTxs } from './store';
import { hookOutsideTransaction } from '../faults/context';

/**
 * Commit hooks: work registered on the ambient transaction that runs once it has ended —
 * `afterCommit` after the outermost COMMIT, `afterRollback` after a ROLLBACK, `afterCompletion`
 * after either — in registration order. Hooks live per connection, in a stack of levels: a
 * savepoint (a `nested` transaction, a TypeORM or MikroORM nested transaction) opens a level;
 * releasing it hands its hooks to the level below, rolling back to it drops them. A hook's error
 * goes to the installation's observers (event `hook_failed`) and never fails the transaction.
 */

export type CompletionOutcome = 'commit' | 'rollback';

interface Hook {
  readonly seq: number;
  readonly on: CompletionOutcome | 'completion';
  readonly fn: (outcome: CompletionOutcome) => unknown;
  readonly inst: Installation;
  readonly name: string;
}

let nextSeq = 1;
/** Hooks per connection: level 0 is the transaction, each later one a savepoint inside it. */
const levels = new WeakMap<object, Hook[][]>();

export interface CommitHookOptions {
  /** Which installation's ambient transaction, when transactions of several are open. */
  dataSource?: unknown;
}

/** Runs `fn` after the ambient transaction's outermost COMMIT (not after a rollback). Outside a transaction: TransactionRequiredError. */
export function afterCommit(fn: () => unknown, options?: CommitHookOptions): void {
  register('afterCommit', 'commit', fn, options);
}

/** Runs `fn` after the ambient transaction rolled back (not after a commit). Outside a transaction: TransactionRequiredError. */
export function afterRollback(fn: () => unknown, options?: CommitHookOptions): void {
  register('afterRollback', 'rollback', fn, options);
}

/** Runs `fn('commit' | 'rollback')` once the ambient transaction has ended, either way. Outside a transaction: TransactionRequiredError. */
export function afterCompletion(fn: (outcome: CompletionOutcome) => unknown, options?: CommitHookOptions): void {
  register('afterCompletion', 'completion', fn, options);
}

function register(name: string, on: Hook['on'], fn: (outcome: CompletionOutcome) => unknown, options?: CommitHookOptions): void {
  checkFunction(`${name}(fn)`, fn, 'fn');
  const tx = options?.dataSource !== undefined ? ambientTx(resolveInstallation(`${name}()`, { explicit: options.dataSource })) : liveTxs(currentFrame()).pop();
  if (!tx) {
    throw hookOutsideTransaction(name);
  }
  let stack = levels.get(tx.connection);
  if (!stack) levels.set(tx.connection, (stack = [[]]));
  stack[stack.length - 1].push({ seq: nextSeq++, on, fn, inst: tx.inst, name });
}

/** A savepoint opened on `connection`: hooks registered from now on belong to it. */
export function savepointStarted(connection: object): void {
  const stack = levels.get(connection);
  if (stack) stack.push([]);
  else levels.set(connection, [[], []]);
}

/**
 * The innermost savepoint of `connection` ended: released (`commit`), its hooks join the level
 * below; rolled back to (`rollback`), they are dropped.
 */
export function savepointEnded(connection: object, outcome: CompletionOutcome): void {
  const stack = levels.get(connection);
  if (!stack || stack.length < 2) return;
  const top = stack.pop()!;
  if (outcome === 'commit') stack[stack.length - 1].push(...top);
}

/** Drops every hook registered on `connection` (a savepoint with a connection of its own, as MikroORM's nested transactions have, rolled back). */
export function dropHooks(connection: object): void {
  levels.delete(connection);
}

/**
 * The transaction on `connections` (a connection, or a MikroORM root with its savepoints' wrappers)
 * ended with `outcome`: runs the hooks that apply, in registration order, each awaited; errors
 * go to the observers. Idempotent: a second call for the same end finds nothing to run.
 */
export function transactionCompleted(connections: Iterable<object>, outcome: CompletionOutcome): Promise<void> {
  let hooks: Hook[] | undefined;
  for (const c of connections) {
    const stack = levels.get(c);
    if (!stack) continue;
    levels.delete(c);
    hooks ??= [];
    for (const level of stack) hooks.push(...level);
  }
  // the common case, nothing registered: no list, no async function to run
  return hooks?.length ? runHooks(hooks, outcome) : NOTHING_TO_RUN;
}

/** What `transactionCompleted` returns when no hook was registered (a caller may skip awaiting it). */
export const NOTHING_TO_RUN: Promise<void> = Promise.resolve();

async function runHooks(hooks: Hook[], outcome: CompletionOutcome): Promise<void> {
  hooks.sort((a, b) => a.seq - b.seq);
  for (const hook of hooks) {
    if (hook.on !== 'completion' && hook.on !== outcome) continue;
    try {
      await hook.fn(outcome);
    } catch (error) {
      hook.inst.emit({
        type: 'hook_failed',
        kind: 'transaction',
        target: `${hook.name}${hook.fn.name ? ` (${hook.fn.name})` : ''}`,
        error,
      });
    }
  }
}
