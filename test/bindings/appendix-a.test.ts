/**
 * docs/protocol.md §1.5 (draft Appendix A): every row of the table is run
 * again on its engine; HTTP round trips and flights must be exactly what
 * the table says, bytes within 2% (ECDSA signatures and ticket padding
 * vary from run to run).
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { testPki, type TestPki } from '../helpers/pki.js';
import { CONFIGURATIONS, TABLE_END, TABLE_START, measure } from '../helpers/appendix-a.js';
import { getEngine, engineUnavailableReason } from '../../src/engines/index.js';
import { REQUIRE_NATIVE } from '../helpers/native-drive.js';

const doc = readFileSync(new URL('../../docs/protocol.md', import.meta.url), 'utf8');
const table = doc.slice(doc.indexOf(TABLE_START), doc.indexOf(TABLE_END));
const rows = [...table.matchAll(/^\| ([^|]+) \| (node|openssl) \| (\d+) \| (\d+) \| (\d+) \|$/gm)].map((m) => ({
  configuration: m[1]!,
  engine: m[2] as 'node' | 'openssl',
  roundTrips: Number(m[3]),
  flights: Number(m[4]),
  bytes: Number(m[5]),
}));

describe('docs/protocol.md §1.5: configurations, round trips, flights, bytes', () => {
  let pki: TestPki;
  before(async () => {
    pki = await testPki();
  });

  it('lists every configuration on every engine that runs it', () => {
    const want = CONFIGURATIONS.flatMap((c) => (c.engines ?? ['openssl', 'node']).map((e) => `${c.name} / ${e}`));
    assert.deepEqual(new Set(rows.map((r) => `${r.configuration} / ${r.engine}`)), new Set(want));
  });

  for (const row of rows) {
    it(`${row.configuration}, ${row.engine}: ${row.roundTrips} round trips, ${row.flights} flights, ~${row.bytes} bytes`, async (t) => {
      const reason = engineUnavailableReason(row.engine);
      if (reason !== undefined) {
        if (REQUIRE_NATIVE) throw new Error(`${row.engine} unavailable: ${reason}`);
        t.skip(reason);
        return;
      }
      const c = CONFIGURATIONS.find((x) => x.name === row.configuration)!;
      const got = await measure(c, getEngine(row.engine), pki);
      assert.equal(got.roundTrips, row.roundTrips, 'HTTP round trips');
      assert.equal(got.flights, row.flights, 'flights');
      assert.ok(Math.abs(got.bytes - row.bytes) <= Math.max(32, row.bytes * 0.02), `bytes ${got.bytes}, table ${row.bytes}`);
      assert.equal(got.resumed, c.resumed === true, 'resumed as the configuration says');
      assert.equal(got.earlyData, c.earlyData ? 'accepted' : 'none', 'early data as the configuration says');
    });
  }
});
