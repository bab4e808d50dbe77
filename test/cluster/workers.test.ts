/**
 * `atls serve --workers 2` on one port, no `--store`: 200 sessions x 3
 * requests, every POST on a fresh TCP connection (so node:cluster hands them
 * to either worker), zero failures; both workers did work. Then a worker is
 * killed: the primary starts it again and clients carry on (re-handshaking
 * where the dead worker held their handshake). Records mode too. With
 * `--coap`, the Echo key survives the CoAP worker: its successor verifies the
 * values it issued.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { Agent, buildConnector } from 'undici';
import { createAtlsClient } from '../../src/http/index.js';
import { testPki } from '../helpers/pki.js';
import { startServe, type ServeProcess } from '../helpers/serve.js';
import { createSocket } from 'node:dgram';
import { CoapEndpoint } from '../../src/coap/endpoint.js';
import { CoapCode, OptionNumber } from '../../src/coap/constants.js';
import { getOption, type CoapMessage } from '../../src/coap/packet.js';
import { postClientHello } from '../helpers/coap-hello.js';

const started: ServeProcess[] = [];
after(async () => {
  for (const s of started) await s.stop();
});

/** An undici dispatcher with keep-alive off that counts the TCP connections it opens. */
function freshConnections(): { agent: Agent; count(): number } {
  let n = 0;
  const connect = buildConnector({});
  const agent = new Agent({
    pipelining: 0,
    connect: (opts, callback) => {
      n++;
      return connect(opts, callback);
    },
  });
  return { agent, count: () => n };
}

/** Worker pids of a primary and their CPU time so far (user + system, clock ticks). */
function workerCpu(primary: number): Map<number, number> {
  // Node children only (under tsx the primary also runs an esbuild service).
  const pids = execFileSync('ps', ['-o', 'pid=,comm=', '--ppid', String(primary)], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter(([pid, comm]) => Number(pid) > 0 && comm === 'node')
    .map(([pid]) => Number(pid));
  const out = new Map<number, number>();
  for (const pid of pids) {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    out.set(pid, Number(fields[11]) + Number(fields[12])); // utime, stime (proc(5) fields 14, 15)
  }
  return out;
}

async function run(serve: ServeProcess, sessions: number, requests: number, conns: ReturnType<typeof freshConnections>): Promise<string[]> {
  const pki = await testPki();
  const failures: string[] = [];
  const one = async (n: number): Promise<void> => {
    const c = createAtlsClient({ tls: { ca: pki.ca.cert, serverName: 'localhost' }, transport: { dispatcher: conns.agent } });
    try {
      for (let i = 0; i < requests; i++) {
        const body = `session ${n} request ${i}`;
        const res = await c.fetch(`http://127.0.0.1:${serve.port}/echo`, { method: 'POST', body });
        const got = await res.text();
        if (res.status !== 200 || got !== body) failures.push(`${body}: ${res.status} ${got.slice(0, 100)}`);
      }
    } catch (e) {
      failures.push(`session ${n}: ${String(e)}`);
    } finally {
      await c.close();
    }
  };
  for (let wave = 0; wave < sessions / 40; wave++) await Promise.all(Array.from({ length: 40 }, (_, i) => one(wave * 40 + i)));
  return failures;
}

describe('atls serve --workers 2, no --store', () => {
  it('200 sessions x 3 requests, each POST on a fresh TCP connection: zero failures, both workers busy', async () => {
    const serve = await startServe(['--echo', '--workers', '2']);
    started.push(serve);
    assert.match(serve.line, /store memory, 2 workers\)/);
    const cpuBefore = workerCpu(serve.child.pid!);
    assert.equal(cpuBefore.size, 2, 'two worker processes');
    const conns = freshConnections();
    const failures = await run(serve, 200, 3, conns);
    assert.deepEqual(failures, []);
    // 2 POSTs per handshake (the first request rides the second) + 2 more requests, each its own connection.
    assert.ok(conns.count() >= 200 * 4, `${conns.count()} TCP connections`);
    const cpuAfter = workerCpu(serve.child.pid!);
    for (const [pid, ticks] of cpuAfter) {
      const used = ticks - (cpuBefore.get(pid) ?? 0);
      assert.ok(used >= 10, `worker ${pid} used ${used} ticks: the work was not spread`);
    }
    await conns.agent.close();
  });

  it('a killed worker is started again; its sessions continue (store in the primary), clients carry on', async () => {
    const serve = await startServe(['--echo', '--workers', '2']);
    started.push(serve);
    const conns = freshConnections();
    assert.deepEqual(await run(serve, 40, 2, conns), []);
    const victim = [...workerCpu(serve.child.pid!).keys()][0]!;
    process.kill(victim, 'SIGKILL');
    // Until the new worker listens, the survivor takes every connection.
    assert.deepEqual(await run(serve, 40, 3, conns), []);
    for (let i = 0; i < 100 && workerCpu(serve.child.pid!).size < 2; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(workerCpu(serve.child.pid!).size, 2, 'the primary started a new worker');
    assert.match(serve.stderr(), /worker \d exited \(SIGKILL\); starting it again/);
    assert.deepEqual(await run(serve, 40, 3, conns), []);
    await conns.agent.close();
  });

  it('records mode: each session stays in the worker that minted it; flights reaching the other are relayed', async () => {
    const serve = await startServe(['--echo', '--workers', '2', '--mode', 'records']);
    started.push(serve);
    const conns = freshConnections();
    const pki = await testPki();
    const failures: string[] = [];
    await Promise.all(
      Array.from({ length: 40 }, async (_, n) => {
        const c = createAtlsClient({ mode: 'records', tls: { ca: pki.ca.cert, serverName: 'localhost' }, transport: { dispatcher: conns.agent } });
        try {
          for (let i = 0; i < 3; i++) {
            const res = await c.fetch(`http://127.0.0.1:${serve.port}/echo`, { method: 'POST', body: `r${n}.${i}` });
            if ((await res.text()) !== `r${n}.${i}`) failures.push(`r${n}.${i}: ${res.status}`);
          }
        } catch (e) {
          failures.push(`session ${n}: ${String(e)}`);
        } finally {
          await c.close();
        }
      }),
    );
    assert.deepEqual(failures, []);
    await conns.agent.close();
  });

  it('--metrics: the primary alone listens and each scrape sums every worker (handshakes counted once each)', async () => {
    const serve = await startServe(['--echo', '--workers', '2', '--metrics', '127.0.0.1:0']);
    started.push(serve);
    const url = /metrics at (http:\/\/\S+\/metrics)/.exec(serve.line)?.[1];
    assert.ok(url, `no metrics URL in ${serve.line}`);
    const conns = freshConnections();
    assert.deepEqual(await run(serve, 40, 2, conns), []);
    await conns.agent.close();
    const cpu = workerCpu(serve.child.pid!);
    assert.equal(cpu.size, 2, 'two worker processes');
    // Each scrape must see both workers: 40 handshakes in total, every time.
    for (let i = 0; i < 4; i++) {
      const text: string = await (await fetch(url)).text();
      const handshakes: string | undefined = /^atls_handshakes_total\{transport="http"\} (\d+)$/m.exec(text)?.[1];
      assert.equal(handshakes, '40', `scrape ${i}: ${text.split('\n').filter((l) => l.startsWith('atls_')).join('\n')}`);
    }
  });
});

/** A UDP port free at the time of asking (a restarted worker must bind the same one). */
async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const { port } = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** The pid of the worker with ATLS_WORKER_INDEX=`index`. */
function workerPid(primary: number, index: number): number | undefined {
  return [...workerCpu(primary).keys()].find((pid) => readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').includes(`ATLS_WORKER_INDEX=${index}`));
}

describe('atls serve --workers 2 --coap: the Echo key (RFC 9175) is shared', () => {
  it('an Echo value issued by the CoAP worker verifies in the worker that replaces it', async () => {
    const port = await freeUdpPort();
    const serve = await startServe(['--echo', '--workers', '2', '--coap', `127.0.0.1:${port}`]);
    started.push(serve);
    assert.match(serve.line, new RegExp(`coap://127\\.0\\.0\\.1:${port}`), 'the start-up line names the CoAP endpoint');
    const ep = await CoapEndpoint.bind();
    try {
      const first = await postClientHello(ep, { address: '127.0.0.1', port });
      assert.equal(first.code, CoapCode.Unauthorized, 'an unverified address gets 4.01 + Echo');
      const echo = getOption(first, OptionNumber.Echo);
      assert.ok(echo);
      const old = workerPid(serve.child.pid!, 0)!;
      process.kill(old, 'SIGKILL');
      let created: CoapMessage | undefined;
      for (let i = 0; i < 150 && created?.code !== CoapCode.Created; i++) {
        await new Promise((r) => setTimeout(r, 200));
        const pid = workerPid(serve.child.pid!, 0);
        if (pid === undefined || pid === old) continue;
        created = await postClientHello(ep, { address: '127.0.0.1', port }, [echo], 5000).catch(() => undefined);
        if (created?.code === CoapCode.Unauthorized) break; // the new worker does not know the old key
      }
      assert.equal(created?.code, CoapCode.Created, 'the new worker 0 took the Echo value the old one issued');
    } finally {
      await ep.close();
    }
  });

  it('--address-check off: a ClientHello is answered at once', async () => {
    const port = await freeUdpPort();
    const serve = await startServe(['--echo', '--coap', `127.0.0.1:${port}`, '--address-check', 'off']);
    started.push(serve);
    const ep = await CoapEndpoint.bind();
    try {
      assert.equal((await postClientHello(ep, { address: '127.0.0.1', port })).code, CoapCode.Created);
    } finally {
      await ep.close();
    }
  });
});
