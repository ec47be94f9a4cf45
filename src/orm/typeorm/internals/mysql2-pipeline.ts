import { probeError } from './patch';

/**
 * Opening statements (`START TRANSACTION`, `SET TRANSACTION ISOLATION LEVEL …`) written to a
 * mysql2 connection's socket just ahead of a statement, without waiting for their answers: one
 * round trip for both. The MySQL protocol answers every command on its own and in order, and the
 * server reads the next command only once it has answered the one before, so it runs them as if
 * each had been awaited; mysql2 itself writes a command only after the previous one was answered.
 *
 * How: the statement's own command (mysql2's `Query`, made by the connection's `query()`) is
 * taken as the connection queues it (`addCommand`); when its turn comes it writes the opening
 * statements first, then itself as usual, and it reads their answers (one OK each) before its
 * own. Should one fail, the statement's answer is still read (the connection stays in step) and
 * its callback gets that failure instead. Everything else — formatting the values, the result,
 * timeouts, errors — is mysql2's own.
 *
 * Not on a compressed connection (`compress: true`: its packets are framed differently); the
 * caller checks `pipelines` first.
 */

/** What is read and written of a mysql2 connection (`Connection`, `PoolConnection`; 3.x). */
interface CoreConnection {
  addCommand(command: unknown): unknown;
  write(buffer: Buffer): unknown;
  sequenceId: number;
  clientEncoding?: string;
  config?: { compress?: unknown };
}

/** What is read and replaced of the statement's command (`Query`). */
interface QueryCommand {
  execute: (this: QueryCommand, packet: Packet | null, connection: CoreConnection) => boolean;
  onResult?: (error: unknown, ...rest: unknown[]) => unknown;
}

interface Packet {
  isError(): boolean;
  asError(encoding?: string): Error & { sql?: string };
}

/** The mysql2 connection behind a driver connection: itself, or the one a `promise()` wrapper holds. */
function coreOf(client: unknown): Partial<CoreConnection> | undefined {
  const c = client as (Partial<CoreConnection> & { connection?: Partial<CoreConnection> }) | null | undefined;
  if (typeof c?.addCommand === 'function') return c;
  return typeof c?.connection?.addCommand === 'function' ? c.connection : undefined;
}

/** Whether opening statements can be written ahead of a statement on this driver connection (mysql2, not compressed). */
export function pipelines(client: unknown): boolean {
  const core = coreOf(client);
  return core !== undefined && !core.config?.compress;
}

/**
 * Calls `send()` (which hands one statement to the driver connection `client`, synchronously)
 * so that the command it queues writes `opening` just ahead of itself. Throws a LockConfigError
 * naming the internal before anything is sent when the connection does not have mysql2's
 * shape, and after, when no command was queued during `send()`.
 */
export function sendPipelined<R>(client: unknown, opening: readonly string[], send: () => R): R {
  const core = coreOf(client);
  if (!core || typeof core.write !== 'function' || typeof core.sequenceId !== 'number') throw notMysql2('the driver connection is not a mysql2 connection');
  const queue = core.addCommand!;
  const own = Object.prototype.hasOwnProperty.call(core, 'addCommand');
  const restore = () => {
    if (own) core.addCommand = queue;
    else delete core.addCommand;
  };
  let taken = false;
  core.addCommand = function (this: CoreConnection, command: unknown) {
    restore();
    taken = true;
    writeAhead(command as QueryCommand, opening);
    return queue.call(this, command);
  };
  let sent: R;
  try {
    sent = send();
  } finally {
    restore();
  }
  if (!taken) throw notMysql2('its query() queued no command');
  return sent;
}

/** Makes `command` write `opening` ahead of itself and read their answers before its own. */
function writeAhead(command: QueryCommand, opening: readonly string[]): void {
  const execute = command.execute;
  const onResult = command.onResult;
  if (typeof execute !== 'function' || typeof onResult !== 'function') throw notMysql2('the statement’s command has no execute() or no callback');
  const packets = opening.map(packetOf);
  let answersDue = -1; // -1: not written yet
  let failed: (Error & { sql?: string }) | undefined;
  command.onResult = function (this: unknown, error: unknown, ...rest: unknown[]) {
    return failed ? onResult.call(this, failed) : onResult.call(this, error, ...rest);
  };
  command.execute = function (this: QueryCommand, packet: Packet | null, connection: CoreConnection): boolean {
    if (answersDue < 0) {
      answersDue = packets.length;
      for (const p of packets) connection.write(p);
      return execute.call(this, packet, connection); // writes the statement itself (sequence id 0)
    }
    if (answersDue > 0 && packet) {
      const statement = opening[packets.length - answersDue];
      answersDue--;
      if (packet.isError() && !failed) {
        failed = packet.asError(connection.clientEncoding);
        failed.sql = statement;
      }
      // each command's answer counts its packets from 1: the next one's too
      connection.sequenceId = 1;
      return false;
    }
    return execute.call(this, packet, connection);
  };
}

/**
 * The packet of an opening statement, made once per text: they are the few texts TypeORM sends to
 * begin (`START TRANSACTION`, one `SET TRANSACTION ISOLATION LEVEL …` per level). A written
 * buffer is not changed by the socket, so one serves every write.
 */
const packetByText = new Map<string, Buffer>();
const MAX_PACKETS = 64;

function packetOf(sql: string): Buffer {
  let packet = packetByText.get(sql);
  if (!packet) {
    if (packetByText.size >= MAX_PACKETS) packetByText.clear();
    packetByText.set(sql, (packet = comQuery(sql)));
  }
  return packet;
}

/** A COM_QUERY packet of an ASCII statement, sequence id 0 (a command's first packet). */
function comQuery(sql: string): Buffer {
  const length = sql.length + 1;
  const packet = Buffer.allocUnsafe(4 + length);
  packet.writeUIntLE(length, 0, 3);
  packet[3] = 0;
  packet[4] = 0x03; // COM_QUERY
  packet.write(sql, 5, 'ascii');
  return packet;
}

function notMysql2(problem: string) {
  return probeError([{ patch: 'BEGIN written ahead of the first statement (mysql2)', problem }]);
}
