#!/usr/bin/env node
// Runs the native engine's own tests (test/native) against an AddressSanitizer
// build of the addon: heap overflows, use-after-free and double frees abort
// the run; leaks are reported by LeakSanitizer at exit and counted when their
// stack passes through the addon (node and V8 keep some allocations until exit
// by design; those are not ours).
//
// Usage: node scripts/native-memcheck.mjs        (npm run test:native-memcheck)
// Needs g++ with libasan (Debian: g++ pulls in libasan8). Exit code 0 = clean.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const addon = join(root, 'build', 'Debug', 'atls_openssl.node');

const build = spawnSync(process.execPath, [join(root, 'scripts', 'build-native.mjs'), '--sanitize'], { stdio: 'inherit' });
if (build.status !== 0 || !existsSync(addon)) {
  console.error('native-memcheck: the AddressSanitizer build failed');
  process.exit(1);
}
const libasan = spawnSync('g++', ['-print-file-name=libasan.so'], { encoding: 'utf8' }).stdout.trim();
if (!libasan || !existsSync(libasan)) {
  console.error('native-memcheck: libasan.so not found (g++ -print-file-name=libasan.so)');
  process.exit(1);
}

const logDir = mkdtempSync(join(tmpdir(), 'atls-asan-'));
const env = {
  ...process.env,
  LD_PRELOAD: libasan,
  // V8 and node are not instrumented: no ODR / init-order checks across them; leaks reported per process to files.
  ASAN_OPTIONS: `detect_leaks=1:abort_on_error=0:halt_on_error=1:detect_odr_violation=0:log_path=${join(logDir, 'asan')}`,
  LSAN_OPTIONS: 'report_objects=0:max_leaks=200:exitcode=0',
  ATLS_NATIVE_ADDON: addon,
  ATLS_REQUIRE_NATIVE: '1',
  ATLS_MEMORY_HANDSHAKES: process.env.ATLS_MEMORY_HANDSHAKES ?? '3000',
  ATLS_TEST_CONCURRENCY: '1',
};
// Default: the addon's own tests and the native AEAD's known-answer vectors.
const tests =
  process.argv.slice(2).length > 0
    ? process.argv.slice(2)
    : [join(root, 'test', 'native'), join(root, 'test', 'vectors', 'protect-native.test.ts')];
const run = spawnSync(process.execPath, [join(root, 'scripts', 'run-tests.mjs'), ...tests], { stdio: 'inherit', env, cwd: root });

// Sort the sanitizer reports: memory errors always count; leaks only with an addon frame.
let errors = 0;
let ourLeaks = 0;
let otherLeaks = 0;
for (const f of readdirSync(logDir)) {
  const text = readFileSync(join(logDir, f), 'utf8');
  if (/ERROR: AddressSanitizer/.test(text)) {
    errors++;
    console.error(text);
  }
  for (const block of text.split(/\n(?=(?:Direct|Indirect) leak of )/)) {
    if (!/^(?:Direct|Indirect) leak of /.test(block)) continue;
    if (/atls_openssl/.test(block)) {
      ourLeaks++;
      console.error(block.split('\n').slice(0, 25).join('\n'));
    } else {
      otherLeaks++;
    }
  }
}
rmSync(logDir, { recursive: true, force: true });
console.log(
  `native-memcheck: tests exit ${run.status}; AddressSanitizer errors ${errors}; leaks through the addon ${ourLeaks}; other leak reports (node/V8, ignored) ${otherLeaks}`,
);
process.exit(run.status === 0 && errors === 0 && ourLeaks === 0 ? 0 : 1);
