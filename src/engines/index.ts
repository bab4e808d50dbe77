/**
 * The engine registry: which TLS engines this process can use.
 *
 * Each entry loads its engine on first use and may report why it cannot
 * (e.g. a native addon that was not built). Adding an engine is one line in
 * {@link ENGINES}.
 *
 * @example
 * ```ts
 * for (const engine of availableEngines()) console.log(engine.name, engine.capabilities);
 * const conn = getEngine('node').createClient({ serverName: 'localhost', ca });
 * ```
 * @module
 */
import { AtlsError } from '../errors.js';
import type { TlsEngine } from './types.js';
import { nodeEngine } from './node.js';
import { loadOpensslEngine } from './openssl.js';
import { webcryptoEngine } from './webcrypto/index.js';

/** What an engine loader returns: the engine, or the reason it is unavailable. */
export type EngineLoad = { engine: TlsEngine; reason?: undefined } | { engine: undefined; reason: string };

/** Engines in order of preference for {@link defaultEngine}. */
const ENGINES: ReadonlyArray<{ name: TlsEngine['name']; load: () => EngineLoad }> = [
  // The native engine is preferred wherever its addon builds and loads.
  { name: 'openssl', load: loadOpensslEngine },
  { name: 'node', load: () => ({ engine: nodeEngine }) },
  // Client only (a TLS 1.3 client for browsers): never the default.
  {
    name: 'webcrypto',
    load: () =>
      globalThis.crypto?.subtle ? { engine: webcryptoEngine } : { engine: undefined, reason: 'no Web Crypto API (globalThis.crypto.subtle)' },
  },
];

let warned = false;
/** Where the one line about falling back to the node engine goes; `atls fetch -s` drops it. */
let fallbackNotice: (line: string) => void = (line) => console.warn(line);

/** Replaces where {@link defaultEngine} says that it fell back to the node engine (undefined: nowhere). */
export function setEngineFallbackNotice(print: ((line: string) => void) | undefined): void {
  fallbackNotice = print ?? (() => undefined);
}

const loaded = new Map<string, EngineLoad>();

function load(name: string): EngineLoad {
  let hit = loaded.get(name);
  if (!hit) {
    const entry = ENGINES.find((e) => e.name === name);
    if (!entry) return { engine: undefined, reason: `unknown engine ${JSON.stringify(name)}` };
    try {
      hit = entry.load();
    } catch (e) {
      hit = { engine: undefined, reason: e instanceof Error ? e.message : String(e) };
    }
    loaded.set(name, hit);
  }
  return hit;
}

/** Names of every engine this build knows, available or not. */
export function engineNames(): TlsEngine['name'][] {
  return ENGINES.map((e) => e.name);
}

/** Every engine that loads in this process and has both roles, in order of preference. */
export function availableEngines(): TlsEngine[] {
  return clientEngines().filter((e) => e.capabilities.server);
}

/**
 * Why `engine` cannot act as a client for `version` (with a client
 * certificate when asked), or undefined when it can: the skip reason of
 * test suites that run every client engine.
 */
export function clientLacks(engine: TlsEngine, version: 'TLSv1.2' | 'TLSv1.3', clientCertificate = false): string | undefined {
  const caps = engine.capabilities;
  if (!caps.tlsVersions.includes(version)) return `the ${engine.name} engine speaks ${caps.tlsVersions.join(', ')} only`;
  if (clientCertificate && !caps.clientCertificates) return `the ${engine.name} engine has no client certificates`;
  return undefined;
}

/** Every engine that loads in this process, client-only ones included, in order of preference. */
export function clientEngines(): TlsEngine[] {
  return ENGINES.map((e) => load(e.name).engine).filter((e): e is TlsEngine => e !== undefined);
}

/**
 * The engine called `name`; throws ENGINE_UNAVAILABLE with the reason when it
 * cannot be used here.
 */
export function getEngine(name: string): TlsEngine {
  const r = load(name);
  if (!r.engine) throw new AtlsError('ENGINE_UNAVAILABLE', `TLS engine ${name} is unavailable: ${r.reason}`);
  return r.engine;
}

/** Why `name` is unavailable, or undefined when it is available. */
export function engineUnavailableReason(name: string): string | undefined {
  return load(name).reason;
}

/** The preferred available engine (the node engine is always available). */
export function defaultEngine(): TlsEngine {
  const native = load('openssl');
  if (!native.engine && !warned) {
    warned = true;
    fallbackNotice(`atls: native OpenSSL engine unavailable (${native.reason}); using the node engine`);
  }
  const first = availableEngines()[0];
  if (!first) throw new AtlsError('ENGINE_UNAVAILABLE', 'no TLS engine is available');
  return first;
}
