/**
 * Running the `atls` command as a user would: the installed bin, which loads
 * the compiled dist/ (a third of the CPU of running src/ through tsx, for the
 * hundreds of processes the CLI tests start). One-shot, in the background, and
 * as a daemon whose first stdout line says where it listens. `npm test`
 * compiles dist/ when src/ is newer; a file run on its own refuses a stale one.
 * A one-shot command whose process is not what a test checks (its flags, its
 * output, its exit code) runs inside the test's process instead
 * ({@link atlsInProcess}: the same code without half a second of start-up),
 * and so does a service a test only talks to ({@link startInProcess}).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { distStaleness } from '../../scripts/dist-fresh.mjs';
import { runAtls } from '../../src/cli/run.js';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'atls.js');

let checked = false;

/** The arguments of `node` that run `atls ARGS` (throws when dist/ is older than src/). */
export function atlsArgv(args: string[]): string[] {
  const stale = checked ? undefined : distStaleness();
  checked = stale === undefined;
  if (stale) throw new Error(`dist/ is stale (${stale}): run \`npm run build\` (npm test does it by itself)`);
  return [BIN, ...args];
}

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `atls ARGS` to completion (blocking this process: no servers of this process may be needed). */
export function atls(args: string[], input?: Uint8Array | string, cwd?: string): CliResult {
  const r = spawnSync(process.execPath, atlsArgv(args), {
    encoding: 'utf8',
    ...(cwd ? { cwd } : {}),
    ...(input !== undefined ? { input: typeof input === 'string' ? input : Buffer.from(input) } : {}),
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Like {@link atls} without blocking this process (whose servers must keep answering); `env` adds to this process's. */
export function atlsAsync(args: string[], input?: string, env?: NodeJS.ProcessEnv, cwd?: string): Promise<CliResult> {
  const child = spawn(process.execPath, atlsArgv(args), {
    stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    ...(cwd ? { cwd } : {}),
    ...(env ? { env: { ...process.env, ...env } } : {}),
  });
  if (input !== undefined) child.stdin!.end(input);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on('close', (status) => resolve({ status, stdout, stderr })));
}

/**
 * Runs a one-shot `atls ARGS` (fetch, certs, inspect, doctor, or a usage or
 * validation error of any subcommand) in this process, on buffers instead of
 * the standard streams: the exit code is what the process would exit with.
 */
export async function atlsInProcess(args: string[], input?: string | Uint8Array): Promise<CliResult> {
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  const status = await runAtls(args, {
    stdin: Readable.from(input === undefined ? [] : [Buffer.from(input)]),
    stdout: { write: (chunk: string | Uint8Array) => stdout.push(Buffer.from(chunk)) },
    stderr: { write: (chunk: string | Uint8Array) => stderr.push(Buffer.from(chunk)) },
  });
  return { status, stdout: Buffer.concat(stdout).toString(), stderr: Buffer.concat(stderr).toString() };
}

/** A running subcommand: its first stdout line, and every line so far (the first included, kept growing). */
export interface Daemon {
  child: ChildProcess;
  line: string;
  lines: string[];
}

/** Starts a long-running subcommand and resolves with the first stdout line. */
export function startDaemon(args: string[]): Promise<Daemon> {
  const child = spawn(process.execPath, atlsArgv(args), { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      let nl: number;
      while ((nl = out.indexOf('\n')) >= 0) {
        lines.push(out.slice(0, nl));
        out = out.slice(nl + 1);
        if (lines.length === 1) resolve({ child, line: lines[0]!, lines });
      }
    });
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) => reject(new Error(`${args[0]} exited ${code}: ${err}`)));
  });
}

/** A long-running subcommand run in this process: its ready line, and how to stop it. */
export interface InProcessDaemon {
  line: string;
  /** Ends the command (as SIGTERM would) and waits for it to finish. */
  stop(): Promise<void>;
}

/**
 * Starts `atls serve|proxy|gateway ARGS` in this process and resolves with
 * its ready line: for a service a test needs, not for the process itself
 * (its logs, signals and `--metrics` registry are process-wide: use
 * {@link startDaemon} for those).
 */
export async function startInProcess(args: string[]): Promise<InProcessDaemon> {
  let release!: () => void;
  const until = new Promise<void>((resolve) => (release = resolve));
  let out = '';
  let err = '';
  let ready!: (line: string) => void;
  const first = new Promise<string>((resolve) => (ready = resolve));
  const run = runAtls(args, {
    stdin: Readable.from([]),
    stdout: {
      write: (chunk: string | Uint8Array) => {
        out += Buffer.from(chunk).toString();
        const nl = out.indexOf('\n');
        if (nl >= 0) ready(out.slice(0, nl));
      },
    },
    stderr: { write: (chunk: string | Uint8Array) => (err += Buffer.from(chunk).toString()) },
    until,
  });
  const line = await Promise.race([first, run.then((code) => Promise.reject(new Error(`${args[0]} exited ${code}: ${err}`)))]);
  return {
    line,
    stop: async () => {
      release();
      const code = await run;
      if (code !== 0) throw new Error(`${args[0]} ended with ${code}: ${err}`);
    },
  };
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

/** A plain HTTP service that answers every request with JSON naming what it received. */
export async function startJsonUpstream(): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ upstream: true, method: req.method, path: req.url, body }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}
