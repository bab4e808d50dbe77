/**
 * The browser build's engine registry (scripts/build-browser.mjs puts it in
 * place of index.ts): the webcrypto engine is the only one a page has.
 * @module
 */
import type { TlsEngine } from './types.js';
import { webcryptoEngine } from './webcrypto/index.js';

export function defaultEngine(): TlsEngine {
  return webcryptoEngine;
}
