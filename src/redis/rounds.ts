/**
 * One round of a Lua script over the nodes of a Redlock (or a Redis semaphore): sent to every
 * node in parallel, each answer recorded as it comes, resolved as soon as the caller's quorum
 * rule has decided, every node answered, or the round's deadline passed. Never rejects: a node
 * that is down, closed or failing is a vote that did not grant.
 */
import type { Redis } from './redis-client';
import type { Deadline, Deadlines, Expiring } from './deadlines';
import type { NodeCommand, PlainCommand } from './scripts';

/**
 * What one node answered in one round. `resent`: the answer is to the script sent again with EVAL
 * after NOSCRIPT (a restarted node), written after whatever the caller sent to that node meanwhile.
 */
export type NodeCall<T> =
  { node: number; outcome: 'ok'; reply: T; resent?: true } | { node: number; outcome: 'error' | 'timeout' | 'not_ready' | 'pending'; error: string };

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

/** When a round is decided early, from the answers so far (in the order they came). */
export type RoundDecider<T> = (answered: Array<NodeCall<T>>) => boolean;

/**
 * Runs a script (or a plain command) on the given nodes in parallel and never rejects. Resolves with one NodeCall
 * per node (in `nodes` order) as soon as every node answered, or `decided(answers so far)` is
 * true, or `timeoutMs` passed (a deadline of `deadlines`). A node that is down (reconnecting) or
 * closed is sent nothing (`not_ready`); one that has not answered when the round resolves is
 * `pending` (decided early) or `timeout`, and its answer, when it comes, goes to `onLate`.
 * Give no `decided` when only every answer can decide (a quorum of every node): then the
 * answers are not collected a second time for it.
 */
export function runRound<T>(
  clients: readonly Redis[],
  deadlines: Deadlines,
  nodes: readonly number[],
  script: NodeCommand,
  keys: readonly string[],
  args: readonly string[],
  timeoutMs: number,
  decided?: RoundDecider<T>,
  onLate?: (call: NodeCall<T>) => void,
): Promise<Array<NodeCall<T>>> {
  // One argument list for every node (ioredis flattens and copies it): EVALSHA sha numkeys keys… args…,
  // or a plain command's keys… args…
  const argv: Array<string | number> = 'sha' in script ? [script.sha, keys.length] : [];
  for (const k of keys) argv.push(k);
  for (const a of args) argv.push(a);
  return sendRound(clients, deadlines, nodes, script, argv, timeoutMs, decided, onLate);
}

/**
 * `runRound` with the command's arguments as sent, made by the caller (EVALSHA: `[sha, numkeys,
 * keys…, args…]`; a plain command: `[keys…, args…]`), so a caller that keeps the fixed part can
 * build them in one array literal. The array is not kept (ioredis copies it).
 */
export function sendRound<T>(
  clients: readonly Redis[],
  deadlines: Deadlines,
  nodes: readonly number[],
  script: NodeCommand,
  argv: ReadonlyArray<string | number>,
  timeoutMs: number,
  decided?: RoundDecider<T>,
  onLate?: (call: NodeCall<T>) => void,
): Promise<Array<NodeCall<T>>> {
  const issued = issue(clients, nodes, script, argv);
  return new Promise((resolve, reject) => {
    follow(clients, deadlines, nodes, script, argv, issued, new Round<T, Array<NodeCall<T>>>(nodes, timeoutMs, decided, onLate, undefined, resolve, reject));
  });
}

/**
 * What a caller of `settleIssued` does with a round: `settled` turns its answers into what the
 * round's promise resolves with (called as the round resolves, in the same tick: no promise
 * derived from the round's), `late` takes each answer that comes after. One object (the caller's
 * state of the attempt) instead of a closure for each.
 */
export interface RoundListener<T, R> {
  settled(calls: Array<NodeCall<T>>): R | PromiseLike<R>;
  late(call: NodeCall<T>): void;
}

/** A listener for a round whose answers nobody needs (a best-effort cleanup). */
export const IGNORE_ANSWERS: RoundListener<unknown, void> = {
  settled: () => undefined,
  late: () => undefined,
};

/**
 * A round's commands as written (`issue`): per node, the ioredis promise of its command, or the
 * client's status when it was not connected (nothing sent).
 */
export type Issued = Array<Promise<unknown> | string>;

/**
 * Writes the command to every node that is connected (or connecting: ioredis queues it), before
 * any of the round's bookkeeping: a caller that issues first and sets up what decides the round
 * afterwards does that work while the nodes answer, not between an answer and its next command.
 * Follow it with `settleIssued` in the same tick (nothing else handles the commands' promises).
 * Never throws: a client that throws instead of returning a promise is a failing node.
 */
export function issue(clients: readonly Redis[], nodes: readonly number[], script: NodeCommand, argv: ReadonlyArray<string | number>): Issued {
  const issued: Issued = new Array(nodes.length);
  const lua = 'sha' in script;
  for (let i = 0; i < nodes.length; i++) {
    const client = clients[nodes[i]];
    const status = client.status;
    try {
      issued[i] = !SEND_STATUSES.has(status)
        ? status
        : lua
          ? (client.evalsha as unknown as SendArgv).call(client, argv)
          : (client[(script as PlainCommand).command] as unknown as SendArgv).call(client, argv);
    } catch (error) {
      issued[i] = Promise.reject(error);
    }
  }
  return issued;
}

/**
 * The round of commands `issue` wrote (with the same `clients`, `nodes`, `script` and `argv`),
 * resolved with what `listener.settled` makes of the answers (rejected when it throws). `now`: a
 * `performance.now()` reading taken as the commands were written (just before or after), if the
 * caller has one (the round's deadline counts from it instead of reading the clock again).
 */
export function settleIssued<T, R>(
  clients: readonly Redis[],
  deadlines: Deadlines,
  nodes: readonly number[],
  script: NodeCommand,
  argv: ReadonlyArray<string | number>,
  issued: Issued,
  timeoutMs: number,
  decided: RoundDecider<T> | undefined,
  listener: RoundListener<T, R>,
  now?: number,
): Promise<R> {
  return new Promise((resolve, reject) => {
    follow(clients, deadlines, nodes, script, argv, issued, new Round<T, R>(nodes, timeoutMs, decided, undefined, listener, resolve, reject), now);
  });
}

/** Records each issued command's answer in `round` as it comes (a node not sent to at once), then starts the round's deadline. */
function follow<T, R>(
  clients: readonly Redis[],
  deadlines: Deadlines,
  nodes: readonly number[],
  script: NodeCommand,
  argv: ReadonlyArray<string | number>,
  issued: Issued,
  round: Round<T, R>,
  now?: number,
): void {
  const lua = 'sha' in script ? script : undefined;
  for (let i = 0; i < nodes.length; i++) {
    const node = nodes[i];
    const sent = issued[i];
    if (typeof sent === 'string') {
      round.record(i, { node, outcome: 'not_ready', error: `not connected (status ${sent})` });
      continue;
    }
    sent.then(
      (reply: unknown) => round.record(i, { node, outcome: 'ok', reply: reply as T }),
      (error: unknown) => {
        // once more with EVAL when the node does not have the script cached (restarted)
        if (lua && error instanceof Error && error.message.startsWith('NOSCRIPT')) {
          const client = clients[node];
          (client.eval as unknown as SendArgv).call(client, [lua.source, ...argv.slice(1)]).then(
            (reply: unknown) => round.record(i, { node, outcome: 'ok', reply: reply as T, resent: true }),
            (again: unknown) => round.failed(i, node, again),
          );
        } else round.failed(i, node, error);
      },
    );
  }
  round.started(deadlines, now);
}

/** The state of one round: each node's answer as it comes, and when it is decided. */
class Round<T, R> implements Expiring {
  private readonly results: Array<NodeCall<T> | undefined>;
  /** The answers in the order they came, for `decided` (none without it). */
  private readonly answered: Array<NodeCall<T>> | undefined;
  private count = 0;
  private settled = false;
  private deadline: Deadline | undefined;

  constructor(
    private readonly nodes: readonly number[],
    private readonly timeoutMs: number,
    private readonly decided: RoundDecider<T> | undefined,
    private readonly onLate: ((call: NodeCall<T>) => void) | undefined,
    /** With a listener, the round resolves with `listener.settled(answers)`; without, with the answers. */
    private readonly listener: RoundListener<T, R> | undefined,
    private readonly resolve: (result: R | PromiseLike<R>) => void,
    private readonly reject: (error: unknown) => void,
  ) {
    this.results = new Array(nodes.length);
    if (decided) this.answered = [];
  }

  /** Every command was sent: the deadline runs (from `now`, a `performance.now()` reading, if given) unless every node already answered. */
  started(deadlines: Deadlines, now?: number): void {
    if (!this.settled) this.deadline = deadlines.add(this.timeoutMs, this, now);
  }

  record(i: number, call: NodeCall<T>): void {
    if (this.settled) {
      if (this.listener) this.listener.late(call);
      else this.onLate?.(call);
      return;
    }
    this.results[i] = call;
    if (++this.count === this.nodes.length) {
      // every node answered (the usual end): the results as they are, in `nodes` order
      this.settled = true;
      this.deadline?.cancel();
      this.conclude(this.results as Array<NodeCall<T>>);
    } else if (this.answered) {
      this.answered.push(call);
      if (this.decided!(this.answered)) this.finish('pending');
    }
  }

  failed(i: number, node: number, error: unknown): void {
    this.record(i, { node, outcome: 'error', error: error instanceof Error ? error.message : String(error) });
  }

  /** The deadline passed. */
  expire(): void {
    this.finish('timeout');
  }

  private finish(unanswered: 'pending' | 'timeout'): void {
    if (this.settled) return;
    this.settled = true;
    this.deadline?.cancel();
    const error = unanswered === 'timeout' ? `no answer within ${this.timeoutMs} ms` : 'no answer yet when the quorum decided';
    const { results } = this;
    this.conclude(this.nodes.map((node, i) => results[i] ?? { node, outcome: unanswered, error }));
  }

  private conclude(calls: Array<NodeCall<T>>): void {
    const listener = this.listener;
    if (!listener) {
      this.resolve(calls as unknown as R);
      return;
    }
    try {
      this.resolve(listener.settled(calls));
    } catch (error) {
      this.reject(error);
    }
  }
}
