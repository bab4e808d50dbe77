#!/usr/bin/env node
// Runs *.test.ts files with Node's own test runner and tsx (Node 20's runner
// does not discover .ts files by itself), with the summary reporter.
//
// Usage: node scripts/run-tests.mjs [--static] [FOLDER|FILE ...] [NODE-TEST-FLAGS ...]
//   no FOLDER     the fast tier (scripts/test-tiers.mjs): what `npm test` runs
//   --static      first the type check and lint, side by side (they are single-threaded)
//   --test-reporter=spec (or any node:test flag) is passed through
// Environment: ATLS_TEST_CONCURRENCY (files at once, default 2), ATLS_TEST_REPORTER
// (a node:test reporter name or file instead of the summary).
import { readdirSync, statSync } from 'node:fs';
import { join, dirname, resolve } from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { FAST_TIER } from './test-tiers.mjs';

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

/** Type check and lint at the same time; prints their output only when they fail. */
async function staticChecks() {
  const bin = (name) => join(root, 'node_modules', '.bin', name);
  const started = Date.now();
  const checks = [
    ['type check', bin('tsc'), ['--noEmit']],
    ['lint', bin('eslint'), ['.']],
  ];
  const results = await Promise.all(checks.map(([, cmd, args]) => run(cmd, args, true)));
  let failed = false;
  for (const [i, r] of results.entries()) {
    if (r.code !== 0) {
      failed = true;
      process.stdout.write(`\n${checks[i][0]} FAILED:\n${r.output}\n`);
    }
  }
  const took = ((Date.now() - started) / 1000).toFixed(1);
  process.stdout.write(`${failed ? 'FAILED' : 'ok'}: type check and lint (${took} s)\n`);
  return !failed;
}

const args = process.argv.slice(2);
const wantStatic = args.includes('--static');
const roots = args.filter((a) => !a.startsWith('-'));
const passThrough = args.filter((a) => a.startsWith('-') && a !== '--static');

if (wantStatic && !(await staticChecks())) process.exit(1);

const files = (roots.length ? roots.map((r) => resolve(r)) : FAST_TIER.map((r) => join(root, r))).flatMap((r) => collect(r, []));
if (files.length === 0) {
  console.error('run-tests: no test files found');
  process.exit(1);
}
const concurrency = process.env.ATLS_TEST_CONCURRENCY ?? '2';
const reporterFlags = passThrough.some((a) => a.startsWith('--test-reporter'))
  ? []
  : [`--test-reporter=${process.env.ATLS_TEST_REPORTER ?? reporter}`, '--test-reporter-destination=stdout'];
const started = Date.now();
const r = await run(
  process.execPath,
  ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, ...reporterFlags, ...passThrough, ...files],
  false,
);
process.stdout.write(`(${((Date.now() - started) / 1000).toFixed(1)} s)\n`);
process.exit(r.code);
