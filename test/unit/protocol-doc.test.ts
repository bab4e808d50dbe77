/**
 * docs/protocol.md states what the code does: the error table of §1.4 row
 * by row against src/errors.ts.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { AtlsError, ERROR_CODES } from '../../src/errors.js';

const doc = readFileSync(new URL('../../docs/protocol.md', import.meta.url), 'utf8');

describe('docs/protocol.md §1.4 error table', () => {
  const section = doc.slice(doc.indexOf('### 1.4 Errors'), doc.indexOf('<!-- /section:session -->'));
  const rows = [...section.matchAll(/^\| `([A-Z_]+)` \| ([a-z, ]+) \| .+ \| (\d{3}) \| (\d\.\d\d) \|$/gm)];

  it('has one row per code, in the order of src/errors.ts', () => {
    assert.deepEqual(
      rows.map((r) => r[1]),
      [...ERROR_CODES],
    );
  });

  it('gives each code the status, CoAP code and default source the code has', () => {
    for (const [, code, sources, http, coap] of rows) {
      const e = new AtlsError(code as (typeof ERROR_CODES)[number], 'x');
      assert.equal(String(e.httpStatus), http, `${code} HTTP`);
      assert.equal(e.coapCode, coap, `${code} CoAP`);
      assert.ok(sources!.split(', ').includes(e.source), `${code}: default source ${e.source} listed in "${sources}"`);
    }
  });
});
