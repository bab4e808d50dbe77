// Whether dist/ (what bin/atls.js runs) was compiled from the current src/:
// every src/**/*.ts has its dist/**/*.js, written no earlier than the source.
// run-tests.mjs rebuilds when it is not; the CLI tests refuse to run a stale build.
import { readdirSync, statSync } from 'node:fs';
import { join, dirname, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Source files under `dir`, relative to src/ (declaration files emit nothing). */
function sources(dir, out = []) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) sources(path, out);
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push(relative(join(ROOT, 'src'), path));
  }
  return out;
}

/** Why dist/ is older than src/ (the first such file), or undefined when it is fresh. */
export function distStaleness() {
  for (const rel of sources(join(ROOT, 'src'))) {
    const built = join(ROOT, 'dist', rel.replace(/\.ts$/, '.js'));
    let builtAt;
    try {
      builtAt = statSync(built).mtimeMs;
    } catch {
      return `dist/${relative(join(ROOT, 'dist'), built)} is missing`;
    }
    if (statSync(join(ROOT, 'src', rel)).mtimeMs > builtAt) return `src/${rel} is newer than its build`;
  }
  return undefined;
}
