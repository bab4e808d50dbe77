/**
 * The interception metric (draft §6.2): a `transport` event of an
 * intercepted session counts under its issuer, with a bounded label set.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EventLog, Metrics, Observer } from '../../src/cli/observe.js';
import type { AtlsPeer } from '../../src/http/peer.js';
import type { TransportReport } from '../../src/http/transport-report.js';

const report = (issuer: string, intercepted = true): TransportReport => ({ chain: [], verified: !intercepted, intercepted, subject: 'CN=svc', issuer });
const peer = { sessionId: 'x' } as AtlsPeer;

describe('atls_intercepted_sessions_total', () => {
  it('counts intercepted sessions by issuer, not the others, at most 100 issuers', async () => {
    const metrics = new Metrics();
    const onEvent = new Observer(new EventLog('json', 'error', () => undefined), metrics).http('http');
    onEvent({ type: 'transport', peer, report: report('CN=mitmproxy\nO=mitmproxy') });
    onEvent({ type: 'transport', peer, report: report('CN=mitmproxy\nO=mitmproxy') });
    onEvent({ type: 'transport', peer, report: report('CN=Service CA', false) });
    for (let i = 0; i < 120; i++) onEvent({ type: 'transport', peer, report: report(`CN=box ${i}`) });
    const text = await metrics.registry.metrics();
    assert.match(text, /atls_intercepted_sessions_total\{transport="http",issuer="CN=mitmproxy, O=mitmproxy"\} 2/);
    assert.doesNotMatch(text, /Service CA/);
    assert.match(text, /issuer="\(other\)"\} 21/);
  });
});
