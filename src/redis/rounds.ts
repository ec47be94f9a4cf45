/**
 * One round of a Lua script over the nodes of a Redlock (or a Redis semaphore): sent to every
 * node in parallel, each answer recorded as it comes, resolved as soon as the caller's quorum
 * rule has decided, every node answered, or the round's deadline passed. Never rejects: a node
 * that is down, closed or failing is a vote that did not grant.
 */
import type { Redis } from './redis-client';
import type { Deadline, Deadlines } from './deadlines';
import type { NodeCommand, PlainCommand } from './scripts';

/** What one node answered in one round. */
export type NodeCall<T> = { node: number; outcome: 'ok'; reply: T } | { node: number; outcome: 'error' | 'timeout' | 'not_ready' | 'pending'; error: string };

/** Client statuses in which a command is sent (ioredis queues it until ready). */
export const SEND_STATUSES = new Set(['ready', 'connecting', 'connect']);

/** An ioredis command called with one array of arguments (ioredis flattens its arguments). */
type SendArgv = (argv: ReadonlyArray<string | number>) => Promise<unknown>;

export function count<T>(items: readonly T[], predicate: (item: T) => boolean): number {
  let n = 0;
  for (const item of items) if (predicate(item)) n++;
  return n;
}

/** `host:port` (or the socket path) of a client, for messages; `#i` when it has no options. */
export function nodeAddress(client: Redis, node: number): string {
  const options = (client as unknown as { options?: { host?: string; port?: number; path?: string } }).options;
  if (!options) return `#${node}`;
  return options.path ?? `${options.host ?? '127.0.0.1'}:${options.port ?? 6379}`;
}

/**
 * Runs a script (or a plain command) on the given nodes in parallel and never rejects. Resolves with one NodeCall
 * per node (in `nodes` order) as soon as every node answered, or `decided(answers so far)` is
 * true, or `timeoutMs` passed (a deadline of `deadlines`). A node that is down (reconnecting) or
 * closed is sent nothing (`not_ready`); one that has not answered when the round resolves is
 * `pending` (decided early) or `timeout`, and its answer, when it comes, goes to `onLate`.
 */
export function runRound<T>(
  clients: readonly Redis[],
  deadlines: Deadlines,
  nodes: readonly number[],
  script: NodeCommand,
  keys: readonly string[],
  args: string[],
  timeoutMs: number,
  decided?: (answered: Array<NodeCall<T>>) => boolean,
  onLate?: (call: NodeCall<T>) => void,
): Promise<Array<NodeCall<T>>> {
  return new Promise((resolve) => {
    const results: Array<NodeCall<T> | undefined> = new Array(nodes.length);
    const answered: Array<NodeCall<T>> = [];
    let settled = false;
    let deadline: Deadline | undefined;
    const finish = (unanswered: 'pending' | 'timeout'): void => {
      settled = true;
      deadline?.cancel();
      const error = unanswered === 'timeout' ? `no answer within ${timeoutMs} ms` : 'no answer yet when the quorum decided';
      resolve(nodes.map((node, i) => results[i] ?? { node, outcome: unanswered, error }));
    };
    const record = (i: number, call: NodeCall<T>): void => {
      if (settled) return onLate?.(call);
      results[i] = call;
      answered.push(call);
      if (answered.length === nodes.length) {
        // every node answered (the usual end): the results as they are, in `nodes` order
        settled = true;
        deadline?.cancel();
        resolve(results as Array<NodeCall<T>>);
      } else if (decided?.(answered)) finish('pending');
    };
    // One argument list for every node (ioredis flattens and copies it): EVALSHA sha numkeys keys… args…,
    // or a plain command's keys… args…
    const lua = 'sha' in script ? script : undefined;
    const argv: Array<string | number> = lua ? [lua.sha, keys.length] : [];
    for (const k of keys) argv.push(k);
    for (const a of args) argv.push(a);
    for (let i = 0; i < nodes.length; i++) {
      const node = nodes[i];
      const client = clients[node];
      if (!SEND_STATUSES.has(client.status)) {
        record(i, { node, outcome: 'not_ready', error: `not connected (status ${client.status})` });
        continue;
      }
      const answered = (reply: unknown) => record(i, { node, outcome: 'ok', reply: reply as T });
      const failed = (error: unknown) => {
        // once more with EVAL when the node does not have the script cached (restarted)
        if (lua && error instanceof Error && error.message.startsWith('NOSCRIPT')) {
          (client.eval as unknown as SendArgv)
            .call(client, [lua.source, ...argv.slice(1)])
            .then(answered, (again: unknown) => record(i, { node, outcome: 'error', error: again instanceof Error ? again.message : String(again) }));
        } else record(i, { node, outcome: 'error', error: error instanceof Error ? error.message : String(error) });
      };
      const sent = lua
        ? (client.evalsha as unknown as SendArgv).call(client, argv)
        : (client[(script as PlainCommand).command] as unknown as SendArgv).call(client, argv);
      sent.then(answered, failed);
    }
    if (!settled) deadline = deadlines.add(timeoutMs, () => finish('timeout'));
  });
}
