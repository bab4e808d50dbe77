/**
 * Helpers for the native engine's own tests (test/native): get the engine or
 * skip, and drive a client and a server connection against each other with
 * a trace of every flight and event.
 *
 * Skip rule: without a built addon the tests skip with the reason printed,
 * unless `ATLS_REQUIRE_NATIVE=1` (CI sets it), in which case they fail.
 *
 * @example
 * ```ts
 * const engine = nativeEngineOrSkip(t);
 * if (!engine) return;
 * const r = await drive(engine.createClient(c), engine.createServer(s));
 * assert.equal(r.client.handshake?.version, 'TLSv1.3');
 * ```
 */
import type { TestContext } from 'node:test';
import { loadOpensslEngine } from '../../src/engines/openssl.js';
import type { EngineConnection, EngineEvent, EngineStep, HandshakeInfo, TlsEngine } from '../../src/engines/types.js';

/** True when CI demands the native engine: a missing addon fails instead of skipping. */
export const REQUIRE_NATIVE = process.env.ATLS_REQUIRE_NATIVE === '1';

/** The native engine, or undefined after skipping the test with the reason. */
export function nativeEngineOrSkip(t: TestContext): TlsEngine | undefined {
  const r = loadOpensslEngine();
  if (r.engine) return r.engine;
  if (REQUIRE_NATIVE) throw new Error(`native engine unavailable and ATLS_REQUIRE_NATIVE=1: ${r.reason}`);
  console.log(`# skip: ${r.reason}`);
  t.skip(r.reason);
  return undefined;
}

/** What one side saw during {@link drive}. */
export interface SideTrace {
  events: EngineEvent[];
  handshake: HandshakeInfo | undefined;
  tickets: Uint8Array[];
  data: Uint8Array[];
}

/** The result of {@link drive}: both sides' traces and every flight in order. */
export interface DriveResult {
  client: SideTrace;
  server: SideTrace;
  /** Flights in the order sent; `from` is the sender. */
  flights: { from: 'client' | 'server'; bytes: Uint8Array; datagrams?: Uint8Array[] }[];
}

function side(): SideTrace {
  return { events: [], handshake: undefined, tickets: [], data: [] };
}

function absorb(trace: SideTrace, step: EngineStep): void {
  for (const ev of step.events) {
    trace.events.push(ev);
    if (ev.type === 'handshake') trace.handshake = ev.info;
    else if (ev.type === 'ticket') trace.tickets.push(ev.session);
    else if (ev.type === 'data') trace.data.push(ev.data);
  }
}

/**
 * Runs `client.start()` and then ping-pongs flights until a side has nothing
 * to send. `maxFlights` bounds the exchange. `tamper` may rewrite or drop (by
 * returning undefined) a flight in transit.
 */
export async function drive(
  client: EngineConnection,
  server: EngineConnection,
  opts: {
    maxFlights?: number;
    tamper?: (from: 'client' | 'server', bytes: Uint8Array, index: number) => Uint8Array | undefined;
  } = {},
): Promise<DriveResult> {
  const result: DriveResult = { client: side(), server: side(), flights: [] };
  let step = await client.start();
  absorb(result.client, step);
  let from: 'client' | 'server' = 'client';
  const max = opts.maxFlights ?? 12;
  for (let i = 0; i < max && step.flight.length > 0; i++) {
    result.flights.push({ from, bytes: step.flight, ...(step.datagrams ? { datagrams: step.datagrams } : {}) });
    const bytes = opts.tamper ? opts.tamper(from, step.flight, i) : step.flight;
    if (bytes === undefined) break;
    const to = from === 'client' ? server : client;
    step = await to.receive(bytes);
    from = from === 'client' ? 'server' : 'client';
    absorb(from === 'client' ? result.client : result.server, step);
  }
  return result;
}

/** Concatenated text of the `data` events of a trace. */
export function text(trace: SideTrace): string {
  return trace.data.map((d) => Buffer.from(d).toString('utf8')).join('');
}
