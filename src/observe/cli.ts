/**
 * The `ormlock` command: `ormlock locks --url <postgres:// or mysql:// URL> [--json] [--watch] [--interval ms]`.
 * Connects with `pg` / `mysql2` directly (no DataSource, whatever the ORM), prints who waits on
 * whom. Redis leases are not database locks and are not shown.
 */
import { openConnection, targetFromUrl } from './connect';
import { dialectForServer } from '../dialects';
import { formatLockTable } from './format';
import { inspectWith } from './inspect-locks';
import { badCommandLine } from '../faults/observe';

const USAGE = `usage: ormlock locks --url <postgres://… | mysql://…> [--json] [--watch] [--interval <ms>]

  --url        the database to look at (default: $DATABASE_URL)
  --json       print the waits as JSON (with --watch: one JSON array per line)
  --watch      print again every --interval ms (default 1000) until interrupted
  --help, -h   print this help

It connects with the 'pg' driver (postgres://) or 'mysql2' (mysql:// and mariadb://), which must
be installed, whatever ORM the application uses. It shows database locks only: Redis leases
(Redlock) are not in the database and are not shown.
`;

/** `--help` / `-h` anywhere (or `help`): print the usage on stdout and exit 0. */
export function wantsHelp(argv: readonly string[]): boolean {
  return argv.some((a) => a === '--help' || a === '-h') || argv[0] === 'help';
}

interface Args {
  url?: string;
  json: boolean;
  watch: boolean;
  intervalMs: number;
}

export function parseArgs(argv: readonly string[]): Args {
  const [command, ...rest] = argv;
  if (command !== 'locks') throw badCommandLine(command ? `unknown command '${command}'` : '', USAGE);
  const args: Args = { json: false, watch: false, intervalMs: 1000, url: process.env.DATABASE_URL };
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    const value = (name: string) => {
      const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : rest[++i];
      if (v === undefined || v === '') throw badCommandLine(`${name} needs a value`, USAGE);
      return v;
    };
    if (a === '--json') args.json = true;
    else if (a === '--watch') args.watch = true;
    else if (a === '--url' || a.startsWith('--url=')) args.url = value('--url');
    else if (a === '--interval' || a.startsWith('--interval=')) {
      const n = Number(value('--interval'));
      if (!Number.isInteger(n) || n < 250)
        throw badCommandLine(
          `--interval: expected whole milliseconds ≥ 250 (MariaDB refreshes its lock tables only when unread for 0.1 s), got ${JSON.stringify(rest[i])}`,
          USAGE,
        );
      args.intervalMs = n;
    } else if (a === '--help' || a === '-h') throw badCommandLine('', USAGE);
    else throw badCommandLine(`unknown option '${a}'`, USAGE);
  }
  if (!args.url) throw badCommandLine('--url is required (or set DATABASE_URL)', USAGE);
  return args;
}

/** Runs the command; resolves with the exit code. */
export async function main(argv: readonly string[], out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr): Promise<number> {
  let args: Args;
  let target;
  if (wantsHelp(argv)) {
    out.write(USAGE);
    return 0;
  }
  try {
    args = parseArgs(argv);
    target = targetFromUrl(args.url!, '--url');
  } catch (error) {
    err.write(`${(error as Error).message}\n`);
    return 2;
  }
  let conn;
  try {
    conn = await openConnection(target);
  } catch (error) {
    err.write(`ormlock: cannot connect: ${(error as Error).message}\n`);
    return 1;
  }
  let stop = false;
  const onSignal = () => (stop = true);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const dialect = await dialectForServer(conn.family, conn.run);
    do {
      const waits = await inspectWith(conn.run, dialect);
      if (args.json) out.write(`${JSON.stringify(waits, null, args.watch ? undefined : 2)}\n`);
      else out.write(`${args.watch ? `\n${new Date().toISOString()}\n` : ''}${formatLockTable(waits)}\n`);
      if (args.watch && !stop) await new Promise((r) => setTimeout(r, args.intervalMs));
    } while (args.watch && !stop);
    return 0;
  } catch (error) {
    err.write(`ormlock: ${(error as Error).message}\n`);
    return 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await conn.close();
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`ormlock: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exit(1);
    },
  );
}
