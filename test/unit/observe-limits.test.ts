/**
 * Every fairness limit reaches the operator: a `limit.hit` log line naming
 * the limit and the peer, `*.evicted` / `*.refused` lines with the peer,
 * and the Prometheus counters by limit (HTTP sessions, CoAP block-wise
 * tables, the CoAP address check).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EventLog, Metrics, Observer } from '../../src/cli/observe.js';

describe('limits in logs and metrics', () => {
  it('names the limit and the peer in the log; counts by limit in the metrics', async () => {
    const lines: string[] = [];
    const observer = new Observer(new EventLog('json', 'debug', (l) => lines.push(l)), new Metrics());
    const http = observer.http();
    http({ type: 'limit', limit: 'sessions', peer: '192.0.2.9' });
    http({ type: 'evicted', what: 'session', peer: '192.0.2.9', reason: 'sessions' });
    const coap = observer.coap();
    coap({ type: 'limit', limit: 'transfers', peer: '2001:db8:1:2::/64' });
    coap({ type: 'evicted', what: 'transfer', peer: '2001:db8:1:2::/64', reason: 'transfers' });
    coap({ type: 'refused', what: 'transfer', peer: '198.51.100.4', reason: 'transfers-per-endpoint' });
    coap({ type: 'evicted', what: 'cached-response', peer: '198.51.100.5', reason: 'cached-responses' });
    coap({ type: 'address-check', peer: '203.0.113.7' });
    const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const has = (event: string, fields: Record<string, string>): boolean =>
      logged.some((l) => l.event === event && Object.entries(fields).every(([k, v]) => l[k] === v));
    assert.ok(has('limit.hit', { transport: 'http', limit: 'sessions', peer: '192.0.2.9' }));
    assert.ok(has('session.evicted', { transport: 'http', peer: '192.0.2.9', reason: 'sessions' }));
    assert.ok(has('limit.hit', { transport: 'coap', limit: 'transfers', peer: '2001:db8:1:2::/64' }));
    assert.ok(has('transfer.evicted', { peer: '2001:db8:1:2::/64' }));
    assert.ok(has('transfer.refused', { peer: '198.51.100.4', reason: 'transfers-per-endpoint' }));
    assert.ok(has('cached-response.evicted', { peer: '198.51.100.5' }));
    assert.ok(has('address.check', { transport: 'coap', peer: '203.0.113.7' }));
    const text = await observer.metrics!.registry.metrics();
    assert.match(text, /atls_limit_hits_total\{transport="http",limit="sessions"\} 1/);
    assert.match(text, /atls_limit_hits_total\{transport="coap",limit="transfers"\} 1/);
    assert.match(text, /atls_evictions_total\{transport="http",what="session",reason="sessions"\} 1/);
    assert.match(text, /atls_evictions_total\{transport="coap",what="cached-response",reason="cached-responses"\} 1/);
    assert.match(text, /atls_address_checks_total\{transport="coap"\} 1/);
  });
});
