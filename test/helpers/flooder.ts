/**
 * A flooder in its own process (own event loop, own descriptors), so that
 * its rate does not depend on the honest clients the test runs meanwhile.
 * Run as `node --import tsx test/helpers/flooder.ts '<json FloodPlan>'`;
 * prints `ready` when it starts and one JSON line ({@link FloodResult}) when done. Every flood is
 * bounded: a fixed time, and for HTTP a bounded backlog per connection.
 *
 * - `http-hello`: the same ClientHello POSTed again and again, pipelined on 64
 *   keep-alive connections.
 * - `coap-hello`: the same ClientHello as NON POSTs from many UDP ports.
 * - `coap-block1`: first blocks of Block1 transfers that never finish.
 * - `idle`: `count` TCP connections that send nothing, held open as long as
 *   the server keeps them.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { decodeMessage, encodeMessage, getOption, pathOptions, uintOption } from '../../src/coap/packet.js';
import { CoapCode, MessageType, OptionNumber } from '../../src/coap/constants.js';
import { blockOption } from '../../src/coap/blockwise.js';
import { MEDIA_TYPE_FLIGHT } from '../../src/http/constants.js';

export interface FloodPlan {
  kind: 'http-hello' | 'coap-hello' | 'coap-block1' | 'idle';
  /** Server port (HTTP or CoAP) on 127.0.0.1. */
  port: number;
  /** Attempts per second (new connections per second for `idle`). */
  rate: number;
  /** At most this long; the parent may end it earlier by writing `stop` on stdin. */
  durationMs: number;
  /** Source addresses (127.x.y.z), used in turn. */
  from: string[];
  /** ClientHello, hex (`*-hello`). */
  hello?: string;
  /** `idle`: connections to hold. */
  count?: number;
}

export interface FloodResult {
  sent: number;
  answered: number;
  /** Achieved send rate per second. */
  rate: number;
  /** `idle`: most connections open at once, and how many the server closed. */
  peakOpen?: number;
  closedByServer?: number;
  errors: number;
  elapsedMs: number;
}

/** Set when the parent writes `stop` on stdin: the flood ends early. */
let stopped = false;
process.stdin.on('data', (d: Buffer) => {
  if (d.toString().includes('stop')) stopped = true;
});
/** How long the flood ran, in ms. */
let elapsedMs = 0;

/** Calls `send` so that `rate` per second are reached on average, catching up after a late timer (bounded). */
function paced(rate: number, durationMs: number, send: () => boolean): Promise<number> {
  return new Promise((resolve) => {
    const start = performance.now();
    let sent = 0;
    const timer = setInterval(() => {
      const elapsed = performance.now() - start;
      elapsedMs = elapsed;
      if (elapsed >= durationMs || stopped) {
        clearInterval(timer);
        resolve(sent);
        return;
      }
      const due = Math.min(Math.floor((elapsed * rate) / 1000) - sent, rate / 10); // at most 100 ms of catch-up
      for (let i = 0; i < due; i++) {
        if (!send()) break;
        sent++;
      }
    }, 5);
  });
}

async function udpSockets(from: string[], n: number): Promise<UdpSocket[]> {
  return Promise.all(
    Array.from({ length: n }, (_, i) => new Promise<UdpSocket>((resolve) => {
      const s = createSocket('udp4');
      s.bind(0, from[i % from.length], () => resolve(s));
    })),
  );
}

async function floodHttpHello(plan: FloodPlan): Promise<FloodResult> {
  // Raw keep-alive sockets with pipelined requests: the rate sent does not
  // wait for the server's answers (an attacker does not care for them).
  const hello = Buffer.from(plan.hello!, 'hex');
  const request = Buffer.concat([
    Buffer.from(`POST /.well-known/atls HTTP/1.1\r\nHost: 127.0.0.1:${plan.port}\r\nContent-Type: ${MEDIA_TYPE_FLIGHT}\r\nContent-Length: ${hello.length}\r\n\r\n`),
    hello,
  ]);
  let answered = 0;
  let errors = 0;
  const sockets: net.Socket[] = [];
  const open = (i: number): void => {
    const s = net.connect({ host: '127.0.0.1', port: plan.port, localAddress: plan.from[i % plan.from.length] });
    s.setNoDelay(true);
    let tail = '';
    s.on('data', (d: Buffer) => {
      const text = tail + d.toString('latin1');
      answered += text.split('HTTP/1.1 ').length - 1; // one status line per answer
      tail = text.slice(-8);
    });
    s.on('error', () => errors++);
    s.on('close', () => {
      if (sockets[i] === s && !stopping) open(i); // the server closed it: a new one
    });
    sockets[i] = s;
  };
  let stopping = false;
  for (let i = 0; i < 64; i++) open(i);
  let next = 0;
  const sent = await paced(plan.rate, plan.durationMs, () => {
    for (let k = 0; k < sockets.length; k++) {
      const s = sockets[next++ % sockets.length]!;
      // Bounded: at most 256 KiB waiting in this process per socket.
      if (s.writableLength > 256 * 1024 || s.destroyed) continue;
      s.write(request);
      return true;
    }
    return false;
  });
  await new Promise((r) => setTimeout(r, 500)); // late answers
  stopping = true;
  for (const s of sockets) s.destroy();
  return { sent, answered, errors, rate: (sent * 1000) / elapsedMs, elapsedMs };
}

/** Sends `hello` once and takes the Echo value of the 4.01 answer, if any. */
function echoFor(s: UdpSocket, port: number, hello: Uint8Array): Promise<Uint8Array | undefined> {
  return new Promise((resolve) => {
    s.once('message', (m: Buffer) => resolve(getOption(decodeMessage(new Uint8Array(m)), OptionNumber.Echo)?.value));
    const options = [...pathOptions('/.well-known/atls'), uintOption(OptionNumber.ContentFormat, 65000)];
    s.send(encodeMessage({ type: MessageType.CON, code: CoapCode.POST, messageId: 1, token: new Uint8Array(randomBytes(4)), options, payload: hello }), port, '127.0.0.1');
  });
}

async function floodCoap(plan: FloodPlan): Promise<FloodResult> {
  const block1 = plan.kind === 'coap-block1';
  const sockets = await udpSockets(plan.from, block1 ? 20 : 64);
  let answered = 0;
  for (const s of sockets) s.on('message', () => answered++);
  const hello = block1 ? new Uint8Array(16) : new Uint8Array(Buffer.from(plan.hello!, 'hex'));
  // The flooder's own address is real: it fetches an Echo value once (RFC 9175), so that its replays
  // pass the address check and reach the ClientHello record, as a determined attacker's would.
  const echo = block1 ? undefined : await echoFor(sockets[0]!, plan.port, hello);
  let mid = 0;
  const sent = await paced(plan.rate, plan.durationMs, () => {
    const s = sockets[mid % sockets.length]!;
    const options = block1
      ? [
          ...pathOptions('/.well-known/atls'),
          { number: OptionNumber.RequestTag, value: new Uint8Array(randomBytes(4)) },
          uintOption(OptionNumber.ContentFormat, 65000),
          blockOption(OptionNumber.Block1, { num: 0, more: true, szx: 0 }),
        ]
      : [...pathOptions('/.well-known/atls'), uintOption(OptionNumber.ContentFormat, 65000), ...(echo ? [{ number: OptionNumber.Echo, value: echo }] : [])];
    s.send(encodeMessage({ type: MessageType.NON, code: CoapCode.POST, messageId: mid++ & 0xffff, token: new Uint8Array(randomBytes(4)), options, payload: hello }), plan.port, '127.0.0.1');
    return true;
  });
  await new Promise((r) => setTimeout(r, 500));
  for (const s of sockets) s.close();
  return { sent, answered, errors: 0, rate: (sent * 1000) / elapsedMs, elapsedMs };
}

async function floodIdle(plan: FloodPlan): Promise<FloodResult> {
  const open = new Set<net.Socket>();
  let connected = 0;
  let peakOpen = 0;
  let closedByServer = 0;
  let errors = 0;
  let opened = 0;
  let stopping = false;
  const sent = await paced(plan.rate, plan.durationMs, () => {
    if (opened >= plan.count!) return false; // each opened once: what the server closes stays closed
    const s = net.connect({ host: '127.0.0.1', port: plan.port, localAddress: plan.from[opened++ % plan.from.length] });
    open.add(s);
    let up = false;
    s.on('connect', () => {
      up = true;
      peakOpen = Math.max(peakOpen, ++connected);
    });
    s.on('error', () => errors++);
    s.resume(); // read what the server sends, so that its close is seen
    s.on('close', () => {
      open.delete(s);
      if (up) connected--;
      if (!stopping) closedByServer++;
    });
    return true;
  });
  stopping = true;
  for (const s of open) s.destroy();
  return { sent, answered: 0, errors, rate: (sent * 1000) / elapsedMs, elapsedMs, peakOpen, closedByServer };
}

const plan = JSON.parse(process.argv[2] ?? '{}') as FloodPlan;
process.stdout.write('ready\n');
const run = plan.kind === 'http-hello' ? floodHttpHello : plan.kind === 'idle' ? floodIdle : floodCoap;
const result = await run(plan);
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0); // stdin stays open otherwise
