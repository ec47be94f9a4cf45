/**
 * What both adapters' patches of their ORM's internals share: the shape check of a method, its
 * replacement with an undo, and the patch lifecycle. A patch is probed before it is applied (a
 * reshaped internal fails loudly, naming it, and nothing is installed), applied once per patched
 * prototype however many installations use it, counted per user, and undone — the original
 * descriptors restored — when its last user goes. (The error of a failed probe: src/faults/internals.ts.)
 */

/** Problems unless `owner[method]` is a function whose source mentions each of `mentions` (the fields it relies on). */
export function expectMethod(owner: object | undefined, label: string, method: string, mentions: readonly string[] = []): string[] {
  const fn = owner && (owner as Record<string, unknown>)[method];
  if (typeof fn !== 'function') return [`${label}.${method} is not a function`];
  const source = Function.prototype.toString.call(fn);
  const missing = mentions.filter((m) => !source.includes(m));
  return missing.length ? [`${label}.${method} no longer uses ${missing.join(', ')}`] : [];
}

/** Replaces `owner[method]` with `wrap(original)`; returns the undo (which puts the original own descriptor back, or removes the own property). */
export function replaceMethod<F extends (...args: any[]) => any>(owner: object, method: string, wrap: (base: F) => F): () => void {
  const target = owner as Record<string, unknown>;
  const original = Object.getOwnPropertyDescriptor(target, method);
  const base = target[method] as F;
  target[method] = wrap(base);
  return () => {
    if (original) Object.defineProperty(target, method, original);
    else delete target[method];
  };
}

/**
 * One patch of an ORM's internals: what it replaces, a probe that checks the shape it relies on,
 * and how to apply it. Every patch of both adapters is one of these.
 */
export interface Patch {
  /** What it patches, as people name it: `SelectQueryBuilder.prototype.createLockExpression`, … */
  readonly name: string;
  /** The problems with the shape of what it patches (empty when it is as expected). */
  probe(): string[];
  /** Applies the patch; returns its undo, which restores what it replaced. */
  apply(): () => void;
}

/**
 * A patch and the prototype it patches, which is its identity: the same patch of two prototypes
 * (two copies of the ORM in one process) is applied and counted twice.
 */
export interface PatchSite<P extends Patch = Patch> {
  readonly owner: object;
  readonly patch: P;
}

/** The problems of a failed probe, by patch name. */
export type PatchProblems = Array<{ patch: string; problem: string }>;

/** One user's share of the applied patches. */
export interface PatchLease {
  /** Probes and applies what a declaration made later needs, counted for this user too (nothing once released). */
  extend(sites: readonly PatchSite[]): void;
  /** This user goes (once; again is a no-op): every patch it was the last user of is undone. */
  release(): void;
}

interface Applied {
  readonly name: string;
  readonly undo: () => void;
  /** Application order: the undo runs in the reverse of it (a later patch may wrap an earlier one's method). */
  readonly order: number;
  users: number;
}

/**
 * The patches of one adapter that are applied right now, per prototype, each with its user count.
 * An installation acquires the patches it needs (`acquire`) and releases them when it uninstalls.
 */
export class PatchLifecycle {
  private readonly applied = new Map<object, Map<string, Applied>>();
  private next = 0;

  /**
   * Probes the patches not applied yet, then applies them; counts one more user of each of `sites`.
   * A differing shape throws `fail(problems)` (every problem found), having applied nothing.
   */
  acquire(sites: readonly PatchSite[], fail: (problems: PatchProblems) => Error): PatchLease {
    const used: Applied[] = [];
    let released = false;
    const lease: PatchLease = {
      extend: (more) => {
        if (!released) used.push(...this.use(more, fail));
      },
      release: () => {
        if (released) return;
        released = true;
        this.drop(used.splice(0));
      },
    };
    lease.extend(sites);
    return lease;
  }

  /** The names of the patches applied right now, in the order they were applied (for tests and diagnostics). */
  patched(): string[] {
    return this.entries()
      .sort((a, b) => a.order - b.order)
      .map((e) => e.name);
  }

  private entries(): Applied[] {
    return [...this.applied.values()].flatMap((byName) => [...byName.values()]);
  }

  private use(sites: readonly PatchSite[], fail: (problems: PatchProblems) => Error): Applied[] {
    const fresh = sites.filter(({ owner, patch }) => !this.applied.get(owner)?.has(patch.name));
    const problems = fresh.flatMap(({ patch }) => patch.probe().map((problem) => ({ patch: patch.name, problem })));
    if (problems.length) throw fail(problems);
    return sites.map(({ owner, patch }) => {
      let byName = this.applied.get(owner);
      if (!byName) this.applied.set(owner, (byName = new Map()));
      let entry = byName.get(patch.name);
      if (!entry) byName.set(patch.name, (entry = { name: patch.name, undo: patch.apply(), order: this.next++, users: 0 }));
      entry.users++;
      return entry;
    });
  }

  /** One user fewer of each of `used`; those left without users are undone, the last applied first. */
  private drop(used: readonly Applied[]): void {
    for (const entry of used) entry.users--;
    const unused = new Set(used.filter((e) => e.users <= 0));
    for (const entry of [...unused].sort((a, b) => b.order - a.order)) {
      entry.undo();
      for (const [owner, byName] of this.applied) {
        if (byName.get(entry.name) !== entry) continue;
        byName.delete(entry.name);
        if (byName.size === 0) this.applied.delete(owner);
      }
    }
  }
}
