/**
 * The test tiers stay whole: every folder under test/ is either in the fast
 * tier (`npm test`) or a slow suite with its own `test:<folder>` script that
 * .ci/run runs, so that a new folder cannot silently drop out of CI.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
// @ts-expect-error plain ESM script without type declarations
import { FAST_TIER, NOT_SUITES } from '../../scripts/test-tiers.mjs';

const root = join(import.meta.dirname, '..', '..');
const fast = FAST_TIER as string[];
const notSuites = NOT_SUITES as string[];

it('every test folder is in the fast tier or has a script that .ci/run runs', () => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  const ci = readFileSync(join(root, '.ci', 'run'), 'utf8');
  assert.match(pkg.scripts.test ?? '', /scripts\/run-tests\.mjs --static$/, 'npm test: static checks, then the fast tier');
  assert.match(ci, /^npm test$/m);
  const folders = readdirSync(join(root, 'test'))
    .map((name) => `test/${name}`)
    .filter((f) => statSync(join(root, f)).isDirectory() && !notSuites.includes(f));
  for (const f of fast) assert.ok(folders.includes(f), `fast-tier folder ${f} exists`);
  for (const folder of folders.filter((f) => !fast.includes(f))) {
    const name = `test:${folder.slice('test/'.length)}`;
    const script = pkg.scripts[name];
    assert.ok(script?.includes(`scripts/run-tests.mjs ${folder}`), `package.json has "${name}" running ${folder}`);
    assert.match(ci, new RegExp(`^npm run ${name}$`, 'm'), `.ci/run runs npm run ${name}`);
  }
});
