/**
 * Joins a client and a server EngineConnection with an in-memory "network":
 * passes each side's flight to the other until both are quiet, counting round
 * trips and recording flight sizes. A failing side's `alertFlight` is
 * delivered like any flight, so tests see both ends of a failure.
 *
 * @example
 * ```ts
 * const run = await pump(engine.createClient(c), engine.createServer(s));
 * assert.equal(run.roundTrips, 2);
 * assert.ok(handshakeOf(run.events.client));
 * ```
 */
import type { EngineConnection, EngineEvent, HandshakeInfo } from '../../src/engines/types.js';
import { AtlsError } from '../../src/errors.js';

export type Side = 'client' | 'server';

/** One flight that crossed the wire. */
export interface WireFlight {
  from: Side;
  bytes: number;
}

/** What happened while pumping. */
export interface PairRun {
  /** Client flights delivered to the server (a full TLS 1.3 or 1.2 handshake takes 2). */
  roundTrips: number;
  /** Every flight delivered, in order, including empty ones and alert flights. */
  flights: WireFlight[];
  events: Record<Side, EngineEvent[]>;
  /** The error each side failed with, if it did. */
  errors: Partial<Record<Side, AtlsError>>;
}

/** Options for {@link pump}. */
export interface PumpOptions {
  /** Give up (throw) after this many deliveries (default 12). */
  maxDeliveries?: number;
  /** Rewrites a flight in transit: fault injection. `index` counts deliveries from 0. */
  tamper?: (flight: Uint8Array, from: Side, index: number) => Uint8Array;
}

const other = (s: Side): Side => (s === 'client' ? 'server' : 'client');

function asAtlsError(e: unknown): AtlsError {
  if (e instanceof AtlsError) return e;
  throw e; // anything else is a bug the test must see
}

/**
 * Runs a handshake (client.start() first) and returns when neither side has
 * anything more to send. Never throws for TLS failures: they land in `errors`.
 */
export async function pump(client: EngineConnection, server: EngineConnection, opts: PumpOptions = {}): Promise<PairRun> {
  const run: PairRun = { roundTrips: 0, flights: [], events: { client: [], server: [] }, errors: {} };
  let flight: Uint8Array;
  try {
    const first = await client.start();
    run.events.client.push(...first.events);
    flight = first.flight;
  } catch (e) {
    run.errors.client = asAtlsError(e);
    flight = run.errors.client.alertFlight;
  }
  await continuePump({ client, server }, run, 'client', flight, opts);
  return run;
}

/**
 * Delivers `flight` from `from` to the other side and keeps going until quiet.
 * Exposed for tests that need to start from the middle (e.g. after write()).
 */
export async function continuePump(
  conns: Record<Side, EngineConnection>,
  run: PairRun,
  from: Side,
  flight: Uint8Array,
  opts: PumpOptions = {},
): Promise<PairRun> {
  const max = opts.maxDeliveries ?? 12;
  let deliveries = run.flights.length;
  for (;;) {
    const to = other(from);
    if (flight.length === 0) break; // quiet: nothing more to say
    if (run.errors[to]) break; // the receiver already failed: nothing more reaches it
    if (deliveries >= max) throw new Error(`pump: no quiet after ${max} deliveries (${describe(run)})`);
    const wire = opts.tamper ? opts.tamper(flight, from, deliveries) : flight;
    deliveries++;
    run.flights.push({ from, bytes: wire.length });
    if (to === 'server') run.roundTrips++;
    try {
      const step = await conns[to].receive(wire);
      run.events[to].push(...step.events);
      flight = step.flight;
    } catch (e) {
      run.errors[to] = asAtlsError(e);
      flight = run.errors[to].alertFlight;
    }
    from = to;
  }
  return run;
}

/** Sends `data` from one side with write() and delivers the records (and any reply) to the other. */
export async function send(conns: Record<Side, EngineConnection>, run: PairRun, from: Side, data: Uint8Array): Promise<Uint8Array> {
  const step = await conns[from].write(data);
  run.events[from].push(...step.events);
  const before = run.events[other(from)].length;
  await continuePump(conns, run, from, step.flight);
  return received(run.events[other(from)].slice(before));
}

/** The handshake info in a list of events, if the handshake completed. */
export function handshakeOf(events: readonly EngineEvent[]): HandshakeInfo | undefined {
  for (const e of events) if (e.type === 'handshake') return e.info;
  return undefined;
}

/** All application data in a list of events, joined. */
export function received(events: readonly EngineEvent[]): Uint8Array {
  const parts = events.flatMap((e) => (e.type === 'data' ? [e.data] : []));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** The session states from `ticket` events. */
export function ticketsOf(events: readonly EngineEvent[]): Uint8Array[] {
  return events.flatMap((e) => (e.type === 'ticket' ? [e.session] : []));
}

/** A one-line account of a run for assertion messages. */
export function describe(run: PairRun): string {
  const flights = run.flights.map((f) => `${f.from[0]}${f.bytes}`).join(' ');
  const errs = (['client', 'server'] as const)
    .filter((s) => run.errors[s])
    .map((s) => `${s}: ${run.errors[s]!.code}/${run.errors[s]!.alert?.name ?? '-'} (${run.errors[s]!.message})`)
    .join('; ');
  return `flights [${flights}]${errs ? ` errors ${errs}` : ''}`;
}
