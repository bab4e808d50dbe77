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

  it('a peer-chosen issuer cannot forge a log line or drive the operator\'s terminal: text lines escape control characters', () => {
    const lines: string[] = [];
    const onEvent = new Observer(new EventLog('text', 'warn', (l) => lines.push(l)), new Metrics()).http('http');
    const issuer = 'CN=box\r\n2026-12-04T00:00:00.000Z error forged=1\u001b[2J\u0085\u2028\u007f end';
    onEvent({ type: 'transport', peer, report: report(issuer) });
    assert.equal(lines.length, 1);
    const line = lines[0]!;
    assert.equal(line.indexOf('\n'), line.length - 1, 'one line');
    // eslint-disable-next-line no-control-regex
    assert.doesNotMatch(line.slice(0, -1), /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/);
    assert.match(line, / issuer="CN=box\\r, 2026-12-04T00:00:00.000Z error forged=1\\u001b\[2J\\u0085\\u2028\\u007f end"$/m);
  });
});
