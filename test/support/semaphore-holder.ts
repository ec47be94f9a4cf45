import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

/**
 * Starts test/fixtures/semaphore-worker.ts with `config` and resolves once it holds its permit
 * (it prints `held <token>`); the caller kills it.
 */
export async function startSemaphoreHolder(config: object): Promise<ChildProcess> {
  const fixture = path.join(__dirname, '..', 'fixtures', 'semaphore-worker.ts');
  const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', '-r', 'reflect-metadata', fixture, JSON.stringify(config)], {
    cwd: path.join(__dirname, '..', '..'),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (chunk) => {
      out += chunk.toString();
      if (out.includes('held')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`the semaphore holder exited with ${code}`)));
  });
  return child;
}
