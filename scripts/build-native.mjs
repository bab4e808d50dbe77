#!/usr/bin/env node
// Builds the optional native OpenSSL engine (native/, binding.gyp) with node-gyp.
// Never fails the install: without the addon the library uses the Node engine.
// An installed package carries a prebuilt addon for linux-x64 (prebuilds/, made
// by scripts/prebuild.mjs when packing); when it loads here, nothing is compiled.
//
// The addon compiles against the OpenSSL headers that node ships and links no
// libssl (the symbols come from the node binary). node-gyp is pointed at the
// local headers with --nodedir so that nothing is downloaded.
//
// Usage: node scripts/build-native.mjs [--sanitize] [--quiet]
//   --sanitize  build with AddressSanitizer into build-asan/ (for scripts/native-memcheck.mjs)
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const sanitize = args.includes('--sanitize');
const quiet = args.includes('--quiet');

function done(msg, code = 0) {
  console.log(`atls: ${msg}`);
  process.exit(code);
}

if (!existsSync(join(root, 'binding.gyp'))) done('no native engine in this tree; using the Node engine');

/** The version text of a working addon at `path` (node's own OpenSSL), or an Error saying why not. */
function tryAddon(path) {
  try {
    const v = createRequire(import.meta.url)(path).opensslVersion();
    if (!String(v.text).includes(process.versions.openssl)) {
      return new Error(`built against ${v.headers} but node runs ${process.versions.openssl}`);
    }
    return String(v.text);
  } catch (e) {
    return e instanceof Error ? e : new Error(String(e));
  }
}

const prebuilt = join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'atls_openssl.node');
if (!sanitize && existsSync(prebuilt)) {
  const v = tryAddon(prebuilt);
  if (typeof v === 'string') done(`using the prebuilt native engine (${v})`);
}

/** A node "nodedir" holding include/node/openssl, or undefined. */
function findNodedir() {
  const candidates = [];
  if (process.env.npm_config_nodedir) candidates.push(process.env.npm_config_nodedir);
  const npm = spawnSync(process.platform === 'win32' ? 'npm.cmd' : 'npm', ['config', 'get', 'nodedir'], {
    encoding: 'utf8',
  });
  const fromNpm = npm.status === 0 ? npm.stdout.trim() : '';
  if (fromNpm && fromNpm !== 'undefined' && fromNpm !== 'null') candidates.push(fromNpm);
  candidates.push(join(dirname(process.execPath), '..')); // e.g. /usr for /usr/bin/node
  return candidates.find((d) => existsSync(join(d, 'include', 'node', 'openssl', 'ssl.h')) && existsSync(join(d, 'include', 'node', 'node_api.h')));
}

/**
 * node-gyp: the project's own (a development dependency) in a checkout, else the
 * one npm bundles and names in npm_config_node_gyp while it runs an install
 * script; an installed package depends on neither (it carries a prebuilt addon).
 */
function findNodeGyp() {
  try {
    return createRequire(join(root, 'package.json')).resolve('node-gyp/bin/node-gyp.js');
  } catch {
    const fromNpm = process.env.npm_config_node_gyp;
    return fromNpm && existsSync(fromNpm) ? fromNpm : undefined;
  }
}
const nodeGyp = findNodeGyp();
if (!nodeGyp) done('node-gyp not found; native engine not built, using the Node engine');
const nodedir = findNodedir();
if (!nodedir) done('node headers with OpenSSL not found; native engine not built, using the Node engine');

// The sanitizer build goes to build/Debug next to an existing build/Release
// (configure + build, not rebuild, which would wipe build/).
const steps = sanitize
  ? [
      ['configure', `--nodedir=${nodedir}`, '--debug', '--', '-Datls_sanitize=1'],
      ['build', `--nodedir=${nodedir}`, '--debug'],
    ]
  : [['rebuild', `--nodedir=${nodedir}`]];
const verbose = Boolean(process.env.ATLS_BUILD_VERBOSE) && !quiet;
for (const step of steps) {
  const r = spawnSync(process.execPath, [nodeGyp, '--loglevel=warn', ...step], {
    cwd: root,
    stdio: verbose ? 'inherit' : 'pipe',
    encoding: 'utf8',
  });
  if (r.status !== 0) {
    const why = `${r.stderr ?? ''}`.split('\n').filter((l) => /error/i.test(l))[0]?.trim() ?? `exit ${r.status}`;
    done(`native engine build failed (${why.slice(0, 160)}); using the Node engine (ATLS_BUILD_VERBOSE=1 shows the log)`);
  }
}

// The addon must use the very OpenSSL that node carries.
const built = join(root, 'build', sanitize ? 'Debug' : 'Release', 'atls_openssl.node');
if (!sanitize) {
  const v = tryAddon(built);
  if (typeof v === 'string') done(`native engine built (${v})`);
  done(`native engine built but not usable (${v.message.split('\n')[0]}); using the Node engine`);
}
done(`sanitizer build of the native engine in ${built}`);
