/**
 * A real `redis-server` for the cluster suite: its own free port on 127.0.0.1,
 * its own temp directory, no persistence (a restart loses everything, as a
 * crashed cache would), no system service involved.
 *
 * @example
 * ```ts
 * const redis = await startRedis(t);   // undefined after a skip
 * if (!redis) return;
 * t.after(() => redis.stop());
 * const store = new RedisSessionStore({ url: redis.url });
 * await redis.restart();               // same port, empty
 * ```
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { findTool, freePort, REQUIRE_INTEROP, requireTool, ToolProcess } from './tools.js';

/** A running redis-server. */
export interface RedisServer {
  port: number;
  /** `redis://127.0.0.1:<port>` */
  url: string;
  /** The current process (changes on restart). */
  process: ToolProcess;
  /** SIGKILL then start again on the same port: every key is gone. */
  restart(options?: { downMs?: number }): Promise<void>;
  /** Stops the server and removes its directory. */
  stop(): Promise<void>;
  /** One `redis-cli`-free command through a fresh connection (INFO, FLUSHALL, ...). */
  command(...args: string[]): Promise<unknown>;
}

/** Where redis-server is (Debian installs it in /usr/bin), or undefined. */
export function redisServerPath(): string | undefined {
  return findTool('redis-server');
}

/** Starts redis-server, or skips the test (fails with ATLS_REQUIRE_INTEROP=1) when it is not installed. */
export async function startRedis(t: TestContext): Promise<RedisServer | undefined> {
  const bin = requireTool(t, 'redis-server');
  if (!bin) return undefined;
  return launchRedis(bin);
}

/**
 * For `before` hooks (which cannot skip): redis-server, or undefined when it
 * is not installed (each test then skips); throws with ATLS_REQUIRE_INTEROP=1.
 */
export async function redisIfInstalled(): Promise<RedisServer | undefined> {
  const bin = redisServerPath();
  if (!bin) {
    if (REQUIRE_INTEROP) throw new Error('redis-server not installed and ATLS_REQUIRE_INTEROP=1');
    return undefined;
  }
  return launchRedis(bin);
}

/** Starts redis-server at `bin` (no test context: for the benchmark). */
export async function launchRedis(bin: string): Promise<RedisServer> {
  const dir = await mkdtemp(join(tmpdir(), 'atls-redis-'));
  let port = 0;
  const spawnOn = async (p: number): Promise<ToolProcess> => {
    const proc = ToolProcess.spawn(bin, [
      '--port', String(p), '--bind', '127.0.0.1', '--dir', dir,
      '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--loglevel', 'warning',
    ]);
    // A port taken between freePort() and the bind shows as an early exit.
    await Promise.race([
      waitReady(p),
      proc.exited.then((x) => Promise.reject(new Error(`redis-server exited ${JSON.stringify(x)}: ${proc.tail()}`))),
    ]);
    return proc;
  };
  let proc: ToolProcess | undefined;
  for (let attempt = 0; !proc; attempt++) {
    port = await freePort();
    try {
      proc = await spawnOn(port);
    } catch (e) {
      if (attempt >= 4) throw e;
    }
  }
  const server: RedisServer = {
    port,
    url: `redis://127.0.0.1:${port}`,
    process: proc,
    async restart({ downMs = 0 } = {}) {
      await server.process.kill(0);
      if (downMs > 0) await new Promise((r) => setTimeout(r, downMs));
      server.process = await spawnOn(port);
    },
    async stop() {
      await server.process.kill(200);
      await rm(dir, { recursive: true, force: true });
    },
    command: (...args) => rawCommand(port, args),
  };
  return server;
}

/** Polls with PING until the server answers. */
async function waitReady(port: number): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      if ((await rawCommand(port, ['PING'])) === 'PONG') return;
    } catch (e) {
      if (i > 200) throw e;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * One command over a fresh TCP connection, in RESP (the reply parsed just
 * enough for PING, INFO and integers). Kept free of the client library the
 * store uses, so the tests observe Redis independently of it.
 */
async function rawCommand(port: number, args: readonly string[]): Promise<unknown> {
  const { connect } = await import('node:net');
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    sock.on('error', reject);
    sock.on('connect', () => {
      const parts = [`*${args.length}\r\n`, ...args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`)];
      sock.write(parts.join(''));
    });
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const text = buf.toString('latin1');
      const eol = text.indexOf('\r\n');
      if (eol === -1) return;
      const head = text.slice(0, eol);
      const kind = head[0];
      if (kind === '+' || kind === '-' || kind === ':') {
        sock.end();
        if (kind === '-') reject(new Error(head.slice(1)));
        else resolve(kind === ':' ? Number(head.slice(1)) : head.slice(1));
      } else if (kind === '$') {
        const n = Number(head.slice(1));
        if (n < 0) {
          sock.end();
          resolve(null);
        } else if (buf.length >= eol + 2 + n + 2) {
          sock.end();
          resolve(buf.subarray(eol + 2, eol + 2 + n).toString('latin1'));
        }
      } else {
        sock.end();
        reject(new Error(`unexpected reply ${head}`));
      }
    });
  });
}

/** `INFO commandstats` as calls per command name (`evalsha`, `hgetall`, ...). */
export async function commandCalls(redis: RedisServer): Promise<Map<string, number>> {
  const info = String(await redis.command('INFO', 'commandstats'));
  const out = new Map<string, number>();
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out.set(m[1]!, Number(m[2]));
  return out;
}

/**
 * The commands clients sent while `fn` ran, by name (lower case), seen with
 * MONITOR: commands that Lua scripts run inside Redis are left out (MONITOR
 * tags them `lua`), so this counts network round trips, not work.
 */
export async function clientCommandsDuring(redis: RedisServer, fn: () => Promise<void>): Promise<Map<string, number>> {
  const { Redis } = await import('ioredis');
  const watcher = new Redis(redis.url, { lazyConnect: true });
  await watcher.connect();
  const monitor = await watcher.monitor();
  const seen = new Map<string, number>();
  monitor.on('monitor', (_time: string, args: string[], source: string) => {
    if (source === 'lua' || args.length === 0) return;
    const name = args[0]!.toLowerCase();
    seen.set(name, (seen.get(name) ?? 0) + 1);
  });
  // A PING through another connection marks the start: once MONITOR shows it, we see everything after.
  const marker = async (tag: string): Promise<void> => {
    const done = new Promise<void>((resolve) => {
      const on = (_t: string, args: string[]): void => {
        if (args[0]?.toLowerCase() === 'echo' && args[1] === tag) {
          monitor.off('monitor', on);
          resolve();
        }
      };
      monitor.on('monitor', on);
    });
    await redis.command('ECHO', tag);
    await done;
  };
  try {
    await marker('atls-start');
    seen.clear();
    await fn();
    await marker('atls-end');
    seen.delete('echo');
    return seen;
  } finally {
    monitor.disconnect();
    watcher.disconnect();
  }
}
