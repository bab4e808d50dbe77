/**
 * `atls/browser`: ATLS from a web page. The bundle (dist/browser/atls.js,
 * built by scripts/build-browser.mjs) holds the webcrypto TLS engine, the
 * session layer, exported-key protection and Binary HTTP, with no Node
 * built-ins.
 *
 * @example
 * ```ts
 * import { atlsFetch } from 'atls/browser';
 * const atls = { tls: { ca: caPem, serverName: 'localhost' } };
 * const res = await atlsFetch('/hello', { atls });
 * ```
 * @module
 */
export { atlsFetch, createAtlsFetch } from './fetch.js';
export type { BrowserAtlsClient, BrowserAtlsEvent, BrowserAtlsOptions, BrowserAtlsRequestInit } from './fetch.js';
export { webcryptoEngine } from '../engines/webcrypto/index.js';
export { inspectFlight } from '../records.js';
export { AtlsError } from '../errors.js';
