/**
 * Finding and running the external TLS tools of the interop suite
 * (`openssl`, `gnutls-cli`, `gnutls-serv`).
 *
 * Skip rule: a missing tool skips the test with a printed reason, unless
 * `ATLS_REQUIRE_INTEROP=1` is set (CI sets it), in which case the test fails.
 *
 * @example
 * ```ts
 * test('gnutls-cli -> our server', async (t) => {
 *   const cli = requireTool(t, 'gnutls-cli');
 *   if (!cli) return; // skipped
 *   const p = ToolProcess.spawn(cli, ['-p', String(port), 'localhost']);
 *   t.after(() => p.kill());
 *   await p.waitFor(/Handshake was completed/, 5000);
 * });
 * ```
 */
import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { createServer } from 'node:net';
import { delimiter, join } from 'node:path';
import type { TestContext } from 'node:test';

/** True when CI demands the interop suite: missing tools fail instead of skipping. */
export const REQUIRE_INTEROP = process.env.ATLS_REQUIRE_INTEROP === '1';

const found = new Map<string, string | undefined>();

/** The absolute path of an executable on `PATH`, or undefined. Cached. */
export function findTool(name: string): string | undefined {
  if (found.has(name)) return found.get(name);
  let hit: string | undefined;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      hit = candidate;
      break;
    } catch {
      // not here
    }
  }
  found.set(name, hit);
  return hit;
}

/**
 * The tool's path, or undefined after skipping the test (`t.skip`) with the
 * reason printed. With `ATLS_REQUIRE_INTEROP=1` a missing tool throws instead.
 */
export function requireTool(t: TestContext, name: string): string | undefined {
  const path = findTool(name);
  if (path) return path;
  const reason = `${name} not installed`;
  if (REQUIRE_INTEROP) throw new Error(`${reason} and ATLS_REQUIRE_INTEROP=1`);
  t.skip(reason); // printed by the runner: "# SKIP gnutls-cli not installed"
  return undefined;
}

/**
 * A TCP port that was free on 127.0.0.1 a moment ago, for tools that cannot
 * listen on port 0 and report the port (gnutls-serv). Racy by nature: callers
 * retry on "address in use".
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Output above this many characters is dropped (tools are chatty but bounded). */
const MAX_OUTPUT = 1 << 20;

const running = new Set<ToolProcess>();

/** A child process whose stdout and stderr are collected as text. */
export class ToolProcess {
  /** Everything the tool wrote to stdout so far. */
  stdout = '';
  /** Everything the tool wrote to stderr so far. */
  stderr = '';
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private readonly waiters = new Set<() => void>();

  private constructor(
    readonly command: string,
    readonly args: readonly string[],
    private readonly child: ChildProcessWithoutNullStreams,
  ) {
    child.stdout.setEncoding('latin1');
    child.stderr.setEncoding('latin1');
    child.stdout.on('data', (s: string) => {
      if (this.stdout.length < MAX_OUTPUT) this.stdout += s;
      this.notify();
    });
    child.stderr.on('data', (s: string) => {
      if (this.stderr.length < MAX_OUTPUT) this.stderr += s;
      this.notify();
    });
    // Writing to a tool that already quit must not crash the test process.
    child.stdin.on('error', () => undefined);
    this.exited = new Promise((resolve) => {
      child.once('close', (code, signal) => {
        this.exitInfo = { code, signal };
        running.delete(this);
        this.notify();
        resolve(this.exitInfo);
      });
      child.once('error', (e) => {
        this.stderr += `\nspawn error: ${String(e)}`;
        this.exitInfo = { code: -1, signal: null };
        running.delete(this);
        this.notify();
        resolve(this.exitInfo);
      });
    });
  }

  /** Starts `command args...` with piped stdio; stdin stays open until {@link endInput}. */
  static spawn(command: string, args: readonly string[], options: { cwd?: string } = {}): ToolProcess {
    const child = spawn(command, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(options.cwd ? { cwd: options.cwd } : {}),
      env: { ...process.env, LC_ALL: 'C' },
    });
    const p = new ToolProcess(command, args, child);
    running.add(p);
    return p;
  }

  /** The process id (undefined when spawning failed). */
  get pid(): number | undefined {
    return this.child.pid;
  }

  /** stdout and stderr together (for assertions and failure messages). */
  get output(): string {
    return `${this.stdout}\n${this.stderr}`;
  }

  /** The command line, for the README and failure messages. */
  get commandLine(): string {
    return [this.command, ...this.args].join(' ');
  }

  /** True once the process has exited. */
  get hasExited(): boolean {
    return this.exitInfo !== undefined;
  }

  /** Writes text to the tool's stdin. */
  write(text: string): void {
    if (!this.child.stdin.destroyed) this.child.stdin.write(text);
  }

  /** Closes the tool's stdin (EOF). */
  endInput(): void {
    if (!this.child.stdin.destroyed) this.child.stdin.end();
  }

  /**
   * Resolves with the first match of `re` in stdout+stderr; rejects after
   * `timeoutMs` or when the process exits without printing it.
   */
  waitFor(re: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined = undefined;
      const check = (): void => {
        const m = this.output.match(re);
        if (m) {
          done();
          resolve(m);
        } else if (this.exitInfo) {
          done();
          reject(new Error(`${this.command} exited (${JSON.stringify(this.exitInfo)}) before printing ${re}:\n${this.tail()}`));
        }
      };
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      timer = setTimeout(() => {
        done();
        reject(new Error(`timeout after ${timeoutMs} ms waiting for ${re} from ${this.command}:\n${this.tail()}`));
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }

  /**
   * Sends SIGTERM (then SIGKILL after `graceMs`, default 1 s) and waits for
   * the exit. Tools that clean up on SIGTERM but take longer (squid acts on
   * its next 1 s tick) need a longer grace.
   */
  async kill(graceMs = 1000): Promise<void> {
    if (this.exitInfo) return;
    this.child.kill('SIGTERM');
    const grace = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(grace);
  }

  /** The last lines of output, for error messages. */
  tail(chars = 2000): string {
    const all = this.output;
    return all.length > chars ? `...${all.slice(-chars)}` : all;
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }
}

/** Kills every tool process still running (use in `after` hooks). */
export async function killAllTools(): Promise<void> {
  await Promise.all([...running].map((p) => p.kill()));
}
