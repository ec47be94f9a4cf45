import * as crypto from 'node:crypto';
import type { LockConfigError } from '../errors';
import { invalidAdvisoryKey } from '../faults/keys';

/**
 * Advisory-lock keys: validation, the canonical text of a key, its stable 64-bit hash
 * (PostgreSQL) and its bounded name (MySQL/MariaDB GET_LOCK). Pure functions, no database.
 *
 * Canonical text (what is hashed and compared):
 * - a string is its JSON text: `'charge:5'` → `"charge:5"`;
 * - an integer (number or bigint) is its decimal digits: `5` and `5n` → `5` (the same lock);
 * - a non-integer number is its ECMAScript shortest round-trip text: `1.5` → `1.5`;
 * - an array is ONE composite key: `['charge', 5]` → `["charge",5]`.
 * So `1` and `'1'` are different locks (type-tagged by the JSON quotes), `1` and `1n` the same.
 *
 * 64-bit key: the first 8 bytes, big-endian, as a signed integer, of
 * `SHA-256("ormlock:advisory:v1" NUL namespace NUL canonical)` (UTF-8). Identical in every
 * process, platform and Node version, and reproducible in any language.
 */

/** One part of a key. */
export type AdvisoryKeyPart = string | number | bigint;
/** One lock's key: a scalar, or an array of scalars that together form ONE composite key. */
export type AdvisoryKeyValue = AdvisoryKeyPart | readonly AdvisoryKeyPart[];

/** Several distinct locks, taken together in one canonical order (made by `advisoryKeys`). */
export class AdvisoryKeySet {
  readonly keys: readonly AdvisoryKeyValue[];
  constructor(keys: readonly AdvisoryKeyValue[]) {
    this.keys = Object.freeze([...keys]);
  }
}

/**
 * Asks for several distinct locks (not one composite key), e.g. to move credits between
 * two accounts: `withAdvisoryLock(advisoryKeys(`acct:${a}`, `acct:${b}`), fn)`. They are taken
 * in one canonical order, so callers naming them in any order can never deadlock.
 */
export function advisoryKeys(...keys: AdvisoryKeyValue[]): AdvisoryKeySet {
  return new AdvisoryKeySet(keys);
}

/** What `@AdvisoryLock`, `withAdvisoryLock` and `advisoryLockExists` accept. */
export type AdvisoryKey = AdvisoryKeyValue | AdvisoryKeySet;

/** A validated key with everything a dialect needs to name it. */
export interface ResolvedAdvisoryKey {
  /** The key as given. */
  readonly key: AdvisoryKeyValue;
  readonly namespace: string;
  /** Canonical text (see the module comment). */
  readonly canonical: string;
  /** For people: a string key as is, other keys as their canonical text. */
  readonly display: string;
  /** The signed 64-bit key (PostgreSQL `bigint`). */
  readonly int64: bigint;
  /** The same 8 bytes as 16 lowercase hex digits. */
  readonly hex: string;
}

const HASH_PREFIX = 'ormlock:advisory:v1';

/** Marks a constant key given to an entity-class `@AdvisoryLock` (its key function returns it), so installLocking can check it. */
export const STATIC_ADVISORY_KEY = Symbol('ormlock.staticAdvisoryKey');

/** Who asked, for error messages: a label, or a label with the method / entity it names. */
export type KeySubject = string | { readonly label: string; readonly method?: string; readonly entity?: string };

/** Validates one key (not a set); throws LockConfigError naming `subject`. */
export function canonicalAdvisoryKey(key: unknown, subject: KeySubject): string {
  if (Array.isArray(key)) {
    if (key.length === 0) throw bad(subject, key, 'an empty array is not a key');
    return `[${key.map((part, i) => canonicalPart(part, subject, key, `element ${i}`)).join(',')}]`;
  }
  return canonicalPart(key, subject, key, 'the key');
}

function canonicalPart(part: unknown, subject: KeySubject, key: unknown, where: string): string {
  switch (typeof part) {
    case 'string':
      if (part.length === 0) throw bad(subject, key, `${where} is an empty string`);
      return JSON.stringify(part);
    case 'bigint':
      return part.toString();
    case 'number':
      if (!Number.isFinite(part)) throw bad(subject, key, `${where} is ${part}, not a finite number`);
      return Number.isInteger(part) ? BigInt(part).toString() : String(part);
    default: {
      const what = part === null ? 'null' : Array.isArray(part) ? 'a nested array' : typeof part;
      throw bad(subject, key, `${where} is ${what}; a key is a string, number, bigint or an array of them`);
    }
  }
}

function bad(subject: KeySubject, key: unknown, why: string): LockConfigError {
  const s = typeof subject === 'string' ? { label: subject, method: subject } : subject;
  return invalidAdvisoryKey(s.label, describeKey(key), why, { key, method: s.method, entity: s.entity });
}

/** A short, safe rendering of any value for error messages. */
export function describeKey(key: unknown): string {
  if (typeof key === 'string') return JSON.stringify(key.length > 80 ? `${key.slice(0, 77)}...` : key);
  if (typeof key === 'bigint') return `${key}n`;
  if (typeof key === 'function') return 'a function';
  if (typeof key === 'symbol') return key.toString();
  if (Array.isArray(key)) return `[${key.slice(0, 5).map(describeKey).join(', ')}${key.length > 5 ? ', …' : ''}]`;
  if (key === null || key === undefined || typeof key !== 'object') return String(key);
  return `an object (${(key as object).constructor?.name ?? 'Object'})`;
}

/** Validates `key` and computes its canonical text and 64-bit hash under `namespace`. */
export function resolveAdvisoryKey(key: unknown, namespace: string, subject: KeySubject): ResolvedAdvisoryKey {
  const type = typeof key;
  // a scalar key resolves the same way every time: its hash is computed once (a bounded cache)
  const cacheKey = type === 'string' || type === 'number' || type === 'bigint' ? `${type[0]}${namespace}\u0000${String(key)}` : undefined;
  const cached = cacheKey === undefined ? undefined : resolvedScalars.get(cacheKey);
  if (cached) return cached;
  const canonical = canonicalAdvisoryKey(key, subject);
  const digest = sha256(`${HASH_PREFIX}\u0000${namespace}\u0000${canonical}`);
  const resolved: ResolvedAdvisoryKey = Object.freeze({
    key: key as AdvisoryKeyValue,
    namespace,
    canonical,
    display: typeof key === 'string' ? key : canonical,
    int64: digest.readBigInt64BE(0),
    hex: digest.subarray(0, 8).toString('hex'),
  });
  if (cacheKey !== undefined) {
    if (resolvedScalars.size >= MAX_CACHED_KEYS) resolvedScalars.clear();
    resolvedScalars.set(cacheKey, resolved);
  }
  return resolved;
}

/** Node's one-shot digest (no Hash object per key; Node ≥ 20.12), else a Hash object. */
const oneShot = (crypto as { hash?: (algorithm: string, data: string, outputEncoding: 'buffer') => Buffer }).hash;

/** SHA-256 of `text` (UTF-8). */
function sha256(text: string): Buffer {
  return oneShot ? oneShot('sha256', text, 'buffer') : crypto.createHash('sha256').update(text, 'utf8').digest();
}

/** Scalar keys resolved so far (type letter, namespace, NUL, the key's text), at most MAX_CACHED_KEYS. */
const resolvedScalars = new Map<string, ResolvedAdvisoryKey>();
const MAX_CACHED_KEYS = 4096;

/** The keys of a key or key set, each resolved; a set must not be empty. */
export function resolveAdvisoryKeys(key: unknown, namespace: string, subject: KeySubject): ResolvedAdvisoryKey[] {
  if (key instanceof AdvisoryKeySet) {
    if (key.keys.length === 0) throw bad(subject, key, 'advisoryKeys() was given no keys');
    return key.keys.map((k) => resolveAdvisoryKey(k, namespace, subject));
  }
  return [resolveAdvisoryKey(key, namespace, subject)];
}

/**
 * A lock name of at most `maxBytes` UTF-8 bytes (MySQL allows 64 characters; bytes are the
 * safe bound on every server and charset). A string key whose `namespace:key` fits and has
 * no `#` is used as is (readable in `performance_schema.metadata_locks`). Every other key —
 * too long, containing `#` or a control character (MariaDB stops comparing names at a NUL), or
 * not a string (so `1` never collides with `'1'`) — becomes
 * `<readable prefix>#<16 hex digits of the 64-bit hash>`. Plain names never contain `#` and
 * hashed names contain exactly one, so the two forms cannot collide.
 */
export function boundedLockName(resolved: ResolvedAdvisoryKey, maxBytes = 64): string {
  const prefix = resolved.namespace ? `${resolved.namespace}:` : '';
  const readable = `${prefix}${resolved.display}`;
  const plain =
    typeof resolved.key === 'string' &&
    !readable.includes('#') &&
    // MariaDB compares GET_LOCK names only up to a NUL: names with control characters are hashed
    !/[\u0000-\u001f\u007f]/.test(readable) &&
    Buffer.from(readable, 'utf8').toString('utf8') === readable && // no lone surrogates
    Buffer.byteLength(readable, 'utf8') <= maxBytes;
  if (plain) {
    return readable;
  }
  const suffix = `#${resolved.hex}`;
  return `${truncateUtf8(readable.replace(/[#\u0000-\u001f\u007f]/g, '_'), maxBytes - suffix.length)}${suffix}`;
}

/** The longest prefix of `text` (whole code points) of at most `maxBytes` UTF-8 bytes. */
function truncateUtf8(text: string, maxBytes: number): string {
  let out = '';
  let bytes = 0;
  for (const ch of text) {
    const n = Buffer.byteLength(ch, 'utf8');
    if (bytes + n > maxBytes) break;
    out += ch;
    bytes += n;
  }
  return out;
}

/** PostgreSQL's pg_locks view splits a bigint advisory key into classid (high) and objid (low) 32 bits. */
export function splitInt64(int64: bigint): { classid: string; objid: string } {
  const unsigned = BigInt.asUintN(64, int64);
  return { classid: (unsigned >> 32n).toString(), objid: (unsigned & 0xffffffffn).toString() };
}
