/**
 * The summary reporter of `npm test` (scripts/test-reporter.mjs): passes are
 * counted, not listed; a failure is printed in full with its file and its
 * file's output; skips are grouped by reason; one line of counts ends it.
 */
import { it, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const reporter = new URL('../../scripts/test-reporter.mjs', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'atls-reporter-'));
after(() => rmSync(dir, { recursive: true, force: true }));

it('counts passes, prints failures in full with the output of their file, groups skips', () => {
  const file = join(dir, 'sample.test.mjs');
  writeFileSync(
    file,
    [
      "import { it } from 'node:test';",
      ...Array.from({ length: 30 }, (_, i) => `it('passing number ${i}', () => {});`),
      "it('needs a tool', { skip: 'tool missing' }, () => {});",
      "it('also needs it', { skip: 'tool missing' }, () => {});",
      "it('breaks', () => { console.log('said before failing'); throw new Error('the reason it broke'); });",
    ].join('\n'),
  );
  // A runner of its own, not a child of this one (which Node would refuse to run files).
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_TEST_CONTEXT'));
  const r = spawnSync(process.execPath, ['--test', `--test-reporter=${reporter}`, '--test-reporter-destination=stdout', file], { cwd: dir, env, encoding: 'utf8' });
  assert.equal(r.status, 1, r.stderr);
  const out = r.stdout;
  assert.doesNotMatch(out, /passing number/, 'passes are not listed');
  assert.match(out, /^\.{30}/m, 'one dot per passing test');
  assert.match(out, /FAIL 1: breaks\n {2}in sample\.test\.mjs/);
  assert.match(out, /Error: the reason it broke/);
  assert.match(out, /--- output of sample\.test\.mjs\n(.*\n)*said before failing/);
  assert.match(out, /skipped:\n {2}2 x tool missing/);
  assert.match(out, /\nFAILED: 30 passed, 1 failed, 2 skipped, 0 todo, 0 cancelled, in 1 file\n$/);
  assert.ok(out.split('\n').length < 60, `a short report:\n${out}`);
});
