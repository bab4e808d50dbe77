/**
 * The `atls` command validates what it is given (choices, files, ports, URLs)
 * and says in one line which flag to change; `certs` never replaces a PKI
 * unless told to. One-shot commands run in the test's process (helpers/cli.ts,
 * atlsInProcess); a daemon's flags are checked by starting its process.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { atlsInProcess } from '../helpers/cli.js';

describe('atls options', () => {
  const dir = mkdtempSync(join(tmpdir(), 'atls-options-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('certs refuses to replace an existing PKI without --force', async () => {
    const out = join(dir, 'pki');
    assert.equal((await atlsInProcess(['certs', '--out', out])).status, 0);
    const ca = readFileSync(join(out, 'ca.pem'), 'utf8');
    const again = await atlsInProcess(['certs', '--out', out]);
    assert.equal(again.status, 1);
    assert.match(again.stderr, /^atls: .*ca\.pem exists; pass --force .*\[INVALID_ARGUMENT\]\n$/);
    assert.equal(readFileSync(join(out, 'ca.pem'), 'utf8'), ca, 'the CA is untouched');
    const forced = await atlsInProcess(['certs', '--out', out, '--force']);
    assert.equal(forced.status, 0, forced.stderr);
    assert.notEqual(readFileSync(join(out, 'ca.pem'), 'utf8'), ca);
  });

  it('choices are checked: demo --mode foo is a usage error', async () => {
    const r = await atlsInProcess(['demo', '--mode', 'foo']);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /argument 'foo' is invalid\. Allowed choices are exported, records/);
  });

  it('files, ports and URLs are checked, naming the flag and the fix', async () => {
    const notPem = join(dir, 'not.pem');
    writeFileSync(notPem, 'hello');
    const cases: Array<[string[], RegExp]> = [
      [['fetch', 'http://localhost:1/x', '--ca', join(dir, 'missing.pem')], /--ca .*missing\.pem: no such file; check the path/],
      [['fetch', 'http://localhost:1/x', '--ca', notPem], /--ca .*not\.pem: not PEM/],
      [['serve', '--listen', '127.0.0.1:70000', '--echo'], /--listen wants HOST:PORT with a port from 0 to 65535/],
      [['serve', '--listen', '127.0.0.1:0', '--upstream', 'ftp://x', '--cert', notPem, '--key', notPem], /--upstream wants an http:\/\/ or https:\/\/ URL/],
      [['proxy', '--listen', '127.0.0.1:0', '--to', 'http://[bad'], /--to wants a URL like http:\/\/127\.0\.0\.1:3000/],
    ];
    for (const [args, message] of cases) {
      const r = await atlsInProcess(args);
      assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, message);
      assert.match(r.stderr, /\[INVALID_ARGUMENT\]/);
    }
  });
});
