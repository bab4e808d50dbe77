/**
 * Fairness groups of peer addresses, the trusted-proxy client address, and
 * the half-open ledger's choice of what gives way.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TrustedProxies, peerGroup } from '../../src/peers.js';
import { FairShareLedger } from '../../src/store/fair-shares.js';

describe('peer groups', () => {
  it('IPv4 as it is, IPv6 by /64, IPv4-mapped IPv6 as IPv4', () => {
    assert.equal(peerGroup('192.0.2.7'), '192.0.2.7');
    assert.equal(peerGroup('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
    assert.equal(peerGroup('2001:db8:1:2:ffff:ffff:ffff:ffff'), '2001:db8:1:2::/64');
    assert.equal(peerGroup('::ffff:127.0.0.2'), '127.0.0.2');
    assert.equal(peerGroup('fe80::1%eth0'), 'fe80:0:0:0::/64');
    assert.equal(peerGroup(undefined), 'unknown');
  });

  it('believes Forwarded / X-Forwarded-For only from a trusted hop, and walks the chain back', () => {
    const t = new TrustedProxies(['10.0.0.0/8', '::1']);
    assert.equal(t.clientAddress('10.1.2.3', { forwarded: 'for=198.51.100.7;proto=https' }), '198.51.100.7');
    assert.equal(t.clientAddress('10.1.2.3', { forwarded: 'for="[2001:db8::1]:443"' }), '2001:db8::1');
    // A client that forges X-Forwarded-For in front of the real chain: the last untrusted hop wins.
    assert.equal(t.clientAddress('10.1.2.3', { xForwardedFor: '1.1.1.1, 198.51.100.9, 10.0.0.5' }), '198.51.100.9');
    assert.equal(t.clientAddress('203.0.113.5', { xForwardedFor: '1.1.1.1' }), '203.0.113.5', 'untrusted hop');
    assert.equal(t.clientAddress('::ffff:10.0.0.1', { xForwardedFor: '5.5.5.5' }), '5.5.5.5');
    assert.equal(t.clientAddress('::1', { forwarded: 'for=unknown' }), '::1');
    assert.equal(new TrustedProxies().clientAddress('10.1.2.3', { xForwardedFor: '1.1.1.1' }), '10.1.2.3', 'none trusted');
    assert.throws(() => new TrustedProxies(['10.0.0.0/33']), /CIDR/);
  });
});

describe('half-open ledger', () => {
  it('the heaviest peer gives way first, oldest first; a lone newcomer is never refused', () => {
    const l = new FairShareLedger<string>(4, 60_000);
    assert.deepEqual(l.admit('h1', 'h1', 'honest'), []);
    for (const k of ['a1', 'a2', 'a3']) assert.deepEqual(l.admit(k, k, 'attacker'), []);
    assert.deepEqual(l.admit('a4', 'a4', 'attacker').map((d) => d.value), ['a1']);
    assert.deepEqual(l.admit('h2', 'h2', 'other').map((d) => d.value), ['a2']);
    assert.ok(l.has('h1') && l.has('h2'));
    assert.equal(l.heldBy('attacker'), 2);
  });

  it('when every peer holds one slot, the oldest overall gives way; expired slots go first', () => {
    let now = 0;
    const l = new FairShareLedger<string>(3, 1000, () => now);
    l.admit('p', 'p', 'P');
    now = 10;
    l.admit('q', 'q', 'Q');
    l.admit('r', 'r', 'R');
    assert.deepEqual(l.admit('s', 's', 'S').map((d) => [d.value, d.reason]), [['p', 'pressure']]);
    now = 2000;
    assert.deepEqual(l.admit('t', 't', 'T').map((d) => [d.value, d.reason]), [['q', 'expired']]);
    assert.deepEqual(l.expired().map((d) => d.value), ['r', 's']);
    assert.equal(l.size, 1);
  });
});

describe('fair shares of established sessions', () => {
  it('the heaviest peer gives way, least recently used first; a newcomer at the top displaces its own', () => {
    const l = new FairShareLedger<undefined>(Number.POSITIVE_INFINITY, 60_000);
    for (const k of ['f1', 'f2', 'f3', 'f4']) l.admit(k, undefined, 'flooder');
    l.admit('h1', undefined, 'honest');
    l.touch('f1');
    assert.deepEqual(l.heaviest(), { peer: 'flooder', held: 4 });
    assert.deepEqual([l.giveWay('newcomer')].map((d) => [d?.key, d?.peer, d?.reason]), [['f2', 'flooder', 'pressure']]);
    assert.equal(l.giveWay('flooder')?.key, 'f3', "the heaviest newcomer's own oldest");
    assert.equal(l.giveWay('honest')?.key, 'h1', 'a tie (honest 1 + 1, flooder 2): the newcomer gives way itself');
    assert.equal(l.giveWay('other')?.key, 'f4', 'a lighter newcomer: the heaviest peer');
    assert.deepEqual(l.heaviest(), { peer: 'flooder', held: 1 });
  });

  it('heaviest() follows deletions; every peer at one: the least recently used overall', () => {
    let now = 0;
    const l = new FairShareLedger<undefined>(Number.POSITIVE_INFINITY, 1000, () => now);
    for (const p of ['A', 'B', 'C']) l.admit(p, undefined, p);
    l.admit('B2', undefined, 'B');
    assert.deepEqual(l.heaviest(), { peer: 'B', held: 2 });
    l.delete('B2');
    assert.equal(l.heaviest()?.held, 1);
    now = 500;
    l.touch('A');
    assert.equal(l.giveWay('D')?.key, 'B');
    now = 1200;
    assert.deepEqual([l.giveWay('D')].map((d) => [d?.key, d?.reason]), [['C', 'expired']]);
    assert.equal(l.size, 1);
    l.delete('A');
    assert.equal(l.heaviest(), undefined);
    assert.equal(l.giveWay('D'), undefined);
  });

  it('keeps the order a reference model keeps through random admissions, touches, deletions and give-ways', () => {
    // The order lives in linked lists on the slots (a Map moved to its end per touch slowed with size):
    // a plain array of [key, peer], oldest first, is the model.
    let seed = 7;
    const next = (n: number): number => (seed = (seed * 1103515245 + 12345) % 2147483648) % n;
    const l = new FairShareLedger<undefined>(Number.POSITIVE_INFINITY, 60_000);
    let model: Array<[string, string]> = [];
    for (let step = 0; step < 5000; step++) {
      const op = next(10);
      if (op < 4 || model.length === 0) {
        const key = `k${next(300)}`;
        const peer = `p${next(4)}`;
        l.admit(key, undefined, peer);
        model = model.filter(([k]) => k !== key).concat([[key, peer]]);
      } else if (op < 8) {
        const [key, peer] = model[next(model.length)]!;
        l.touch(key);
        model = model.filter(([k]) => k !== key).concat([[key, peer]]);
      } else if (op < 9) {
        const [key] = model[next(model.length)]!;
        assert.equal(l.delete(key), true);
        model = model.filter(([k]) => k !== key);
      } else {
        const newcomer = `p${next(5)}`;
        const held = (p: string): number => model.filter(([, q]) => q === p).length;
        let heaviest = '';
        for (const [, p] of model) if (held(p) > held(heaviest)) heaviest = p;
        const mine = held(newcomer) + 1;
        const from = mine > 1 && mine >= held(heaviest) ? newcomer : held(heaviest) > 1 ? heaviest : undefined;
        const expect = from === undefined ? model[0]! : model.find(([, p]) => p === from)!;
        const d = l.giveWay(newcomer);
        assert.equal(d?.key, expect[0], `step ${step}`);
        model = model.filter(([k]) => k !== expect[0]);
      }
      assert.equal(l.size, model.length);
    }
    for (const p of ['p0', 'p1', 'p2', 'p3']) assert.equal(l.heldBy(p), model.filter(([, q]) => q === p).length);
  });
});
