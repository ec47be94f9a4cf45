/**
 * Quorum voting over the nodes' answers of one round (rounds.ts): how many nodes must grant,
 * when a round is decided, and what each node answered (for errors). Leases (redlock.ts) and
 * semaphore permits (semaphore.ts) vote the same way; only their quorums differ.
 */
import type { NodeCall } from './rounds';

/** What one node answered to one acquisition attempt (in `LockNotAvailableError.details.nodes`). */
export interface NodeResult {
  node: number;
  address: string;
  /** pending: no answer yet when the attempt was decided (its answer is handled when it comes). */
  result: 'granted' | 'locked' | 'error' | 'timeout' | 'not_ready' | 'pending';
  /** granted: the node's fencing counter answer. */
  token?: string;
  /** locked: which key was held by another lease. */
  lockedKey?: string;
  /** error / not_ready: why. */
  error?: string;
}

/** A lease's quorum on n nodes: a majority, ⌊n/2⌋ + 1. */
export function majority(n: number): number {
  return Math.floor(n / 2) + 1;
}

/**
 * A semaphore's quorum on n nodes with `permits` permits: ⌊n·N/(N+1)⌋ + 1 (at most n), so that
 * N + 1 permits can never all be granted (see semaphore.ts). A majority for N = 1.
 */
export function permitQuorum(n: number, permits: number): number {
  return Math.min(n, Math.floor((n * permits) / (permits + 1)) + 1);
}

/** An answer that granted, with its reply. */
export type Grant = { node: number; outcome: 'ok'; reply: number };

/** A grant of a script that answers a fencing token (≥ 1) when it grants. */
export const isTokenGrant = (c: NodeCall<number>): c is Grant => c.outcome === 'ok' && Number(c.reply) > 0;

/** A grant of a script that answers 0 when it grants (ACQUIRE_PLAIN). */
export const isZeroGrant = (c: NodeCall<number>): c is Grant => c.outcome === 'ok' && Number(c.reply) === 0;

/**
 * Decided early once `quorum` token grants answered the same highest token (so no node needs
 * raising); a refusal waits for every answer (the error lists them all).
 */
export function sameHighestToken(answered: ReadonlyArray<NodeCall<number>>, quorum: number): boolean {
  let max = 0;
  let atMax = 0;
  for (const c of answered) {
    if (!isTokenGrant(c)) continue;
    const t = Number(c.reply);
    if (t > max) {
      max = t;
      atMax = 1;
    } else if (t === max) atMax++;
  }
  return atMax >= quorum;
}

/** The token grants of a round as (node, token), and the highest token among them. */
export function tokenGrants(calls: ReadonlyArray<NodeCall<number>>): { granted: Array<{ node: number; token: bigint }>; highest: bigint } {
  const granted: Array<{ node: number; token: bigint }> = [];
  let highest = 0n;
  for (const c of calls) {
    if (!isTokenGrant(c)) continue;
    const token = BigInt(c.reply);
    granted.push({ node: c.node, token });
    if (token > highest) highest = token;
  }
  return { granted, highest };
}

/** A compare-and-extend answer: 1 extended, anything else the key is gone or another's. */
export const isExtended = (c: NodeCall<number>): boolean => c.outcome === 'ok' && Number(c.reply) === 1;
export const isMismatch = (c: NodeCall<number>): boolean => c.outcome === 'ok' && Number(c.reply) !== 1;
