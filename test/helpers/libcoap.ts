/**
 * Finding libcoap's example programs (Debian `libcoap3-bin`). Debian installs
 * them as `coap-client-notls`, `coap-client-openssl`, `coap-client-gnutls`
 * (and the same for `coap-server`), with `coap-client` / `coap-server` only as
 * alternatives that may be absent. Same skip rule as `requireTool`.
 *
 * @example
 * ```ts
 * const client = requireLibcoap(t, 'coap-client');
 * if (!client) return; // skipped
 * ```
 */
import type { TestContext } from 'node:test';
import { findTool, requireTool } from './tools.js';

/** The first installed variant of `coap-client` or `coap-server`, or undefined after skipping. */
export function requireLibcoap(t: TestContext, name: 'coap-client' | 'coap-server'): string | undefined {
  for (const variant of [name, `${name}-notls`, `${name}-openssl`, `${name}-gnutls`]) {
    const path = findTool(variant);
    if (path) return path;
  }
  return requireTool(t, name); // skips (or fails with ATLS_REQUIRE_INTEROP=1), printing the reason
}
