#!/usr/bin/env node
// Runs *.test.ts files with Node's own test runner (Node 20's runner does not
// discover .ts files by itself) and the project's TypeScript loader
// (scripts/ts-loader.mjs, whose cache is warmed first), with the summary reporter.
//
// Usage: node scripts/run-tests.mjs [--static] [FOLDER|FILE ...] [NODE-TEST-FLAGS ...]
//   no FOLDER     the fast tier (scripts/test-tiers.mjs): what `npm test` runs
//   --static      the type check and lint as well, run next to the tests so that no
//                 core idles (both single-threaded); incremental: tsc keeps its build
//                 info and eslint its cache (by content) under node_modules/.cache/atls
//                 (CI starts without them); their output is printed only on failure
// The CLI tests run bin/atls.js, which loads dist/: when src/ is newer, dist/ is
// compiled first (scripts/dist-fresh.mjs).
// Environment: ATLS_TEST_CONCURRENCY (files at once, default: cores + 1: a CLI
// test waits on its processes), ATLS_TEST_REPORTER (a node:test reporter name or
// file instead of the summary).
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, join, dirname, resolve } from 'node:path';
import { spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { FAST_TIER } from './test-tiers.mjs';
import { distStaleness } from './dist-fresh.mjs';
import { ROOT as TS_ROOT, TRANSFORM_OPTIONS, readCache, stamp, writeCache } from './ts-hooks.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const reporter = join(root, 'scripts', 'test-reporter.mjs');

function collect(path, out) {
  const st = statSync(path);
  if (st.isFile()) {
    if (path.endsWith('.test.ts')) out.push(path);
    return out;
  }
  for (const name of readdirSync(path).sort()) collect(join(path, name), out);
  return out;
}

/** Runs a command; resolves with its exit code and (when captured) its output. */
function run(cmd, args, capture) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: root, stdio: capture ? ['ignore', 'pipe', 'pipe'] : 'inherit' });
    let output = '';
    if (capture) {
      child.stdout.on('data', (d) => (output += d));
      child.stderr.on('data', (d) => (output += d));
    }
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 1 : 0), output }));
  });
}

const bin = (name) => join(root, 'node_modules', '.bin', name);
const cache = (name) => join(root, 'node_modules', '.cache', 'atls', name);
const STATIC_CHECKS = [
  ['type check', bin('tsc'), ['--noEmit', '--incremental', '--tsBuildInfoFile', cache('typecheck.tsbuildinfo')]],
  ['lint', bin('eslint'), ['--cache', '--cache-strategy', 'content', '--cache-location', cache('eslintcache'), '.']],
  // `npm install` builds atls/browser (prepare): a Node-only import reaching it fails there, not in the tests.
  ['browser build', process.execPath, [join(root, 'scripts', 'build-browser.mjs'), '--check']],
];
/** The TypeScript half of `npm run build` (dist/ for bin/atls.js). */
const BUILD = ['build of dist/', bin('tsc'), ['-p', 'tsconfig.build.json']];

/** Runs named commands at the same time; resolves with whether all passed and a report (the output of those that failed). */
async function checks(list) {
  const started = Date.now();
  const results = await Promise.all(list.map(([, cmd, args]) => run(cmd, args, true)));
  let report = '';
  for (const [i, r] of results.entries()) if (r.code !== 0) report += `\n${list[i][0]} FAILED:\n${r.output}\n`;
  const ok = report === '';
  const took = ((Date.now() - started) / 1000).toFixed(1);
  return { ok, report: `${report}${ok ? 'ok' : 'FAILED'}: ${list.map(([name]) => name).join(', ')} (${took} s)\n` };
}

const args = process.argv.slice(2);
const wantStatic = args.includes('--static');
const roots = args.filter((a) => !a.startsWith('-'));
const passThrough = args.filter((a) => a.startsWith('-') && a !== '--static');

const stale = distStaleness();
if (stale) {
  process.stdout.write(`dist/ is older than src/ (${stale}): building it\n`);
  const build = await checks([BUILD]);
  process.stdout.write(build.report);
  if (!build.ok) process.exit(1);
}

/** Transpiles every .ts file whose cached JavaScript is missing or stale, in one esbuild service, so that no test process has to. */
async function warmTypeScript() {
  const sources = ['src', 'test', 'bench'].flatMap((d) => typeScriptIn(join(TS_ROOT, d), []));
  const stale = [];
  for (const source of sources) {
    const line = stamp(source);
    if (readCache(source, line) === undefined) stale.push([source, line]);
  }
  if (stale.length === 0) return;
  const { transform } = await import('esbuild');
  await Promise.all(
    stale.map(async ([source, line]) => {
      const { code } = await transform(readFileSync(source, 'utf8'), { ...TRANSFORM_OPTIONS, sourcefile: basename(source) });
      writeCache(source, line, code);
    }),
  );
}

function typeScriptIn(dir, out) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== 'node_modules' && entry.name !== 'out') typeScriptIn(path, out);
    } else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

await warmTypeScript();

const files = (roots.length ? roots.map((r) => resolve(r)) : FAST_TIER.map((r) => join(root, r))).flatMap((r) => collect(r, []));
if (files.length === 0) {
  console.error('run-tests: no test files found');
  process.exit(1);
}
// Printed after the tests, whose dots would break its lines.
const staticDone = wantStatic ? checks(STATIC_CHECKS) : Promise.resolve({ ok: true, report: '' });
const concurrency = process.env.ATLS_TEST_CONCURRENCY ?? String(availableParallelism() + 1);
const reporterFlags = passThrough.some((a) => a.startsWith('--test-reporter'))
  ? []
  : [`--test-reporter=${process.env.ATLS_TEST_REPORTER ?? reporter}`, '--test-reporter-destination=stdout'];
const started = Date.now();
const r = await run(
  process.execPath,
  ['--import', join(root, 'scripts', 'ts-loader.mjs'), '--test', `--test-concurrency=${concurrency}`, ...reporterFlags, ...passThrough, ...files],
  false,
);
process.stdout.write(`(${((Date.now() - started) / 1000).toFixed(1)} s)\n`);
const statics = await staticDone;
process.stdout.write(statics.report);
process.exit(r.code !== 0 ? r.code : statics.ok ? 0 : 1);
