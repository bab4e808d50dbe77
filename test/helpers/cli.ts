/**
 * Running the `atls` command as a user would, from the sources (through tsx,
 * so no build is needed): one-shot, in the background, and as a daemon whose
 * first stdout line says where it listens.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

export const CLI_MAIN = join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');
const TSX = ['--import', 'tsx'];

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `atls ARGS` to completion (blocking this process: no servers of this process may be needed). */
export function atls(args: string[], input?: Uint8Array | string, cwd?: string): CliResult {
  const r = spawnSync(process.execPath, [...TSX, CLI_MAIN, ...args], {
    encoding: 'utf8',
    ...(cwd ? { cwd } : {}),
    ...(input !== undefined ? { input: typeof input === 'string' ? input : Buffer.from(input) } : {}),
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Like {@link atls} without blocking this process (whose servers must keep answering). */
export function atlsAsync(args: string[], input?: string): Promise<CliResult> {
  const child = spawn(process.execPath, [...TSX, CLI_MAIN, ...args], { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
  if (input !== undefined) child.stdin!.end(input);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on('close', (status) => resolve({ status, stdout, stderr })));
}

/** Starts a long-running subcommand and resolves with the first stdout line. */
export function startDaemon(args: string[]): Promise<{ child: ChildProcess; line: string }> {
  const child = spawn(process.execPath, [...TSX, CLI_MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve({ child, line: out.slice(0, nl) });
    });
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) => reject(new Error(`${args[0]} exited ${code}: ${err}`)));
  });
}

/** Stops a daemon and waits for it to exit. */
export function stop(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

/** The first http:// or coap:// URL in a ready line. */
export function urlIn(line: string, scheme: 'http' | 'coap' = 'http'): string {
  const m = new RegExp(`(${scheme}://\\S+)`).exec(line);
  if (!m) throw new Error(`no ${scheme} URL in ${JSON.stringify(line)}`);
  return m[1]!;
}
