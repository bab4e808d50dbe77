#!/usr/bin/env node
// Builds the optional native OpenSSL engine (native/, binding.gyp) with node-gyp.
// Never fails the install: without the addon the library uses the Node engine.
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

let nodeGyp;
try {
  nodeGyp = createRequire(join(root, 'package.json')).resolve('node-gyp/bin/node-gyp.js');
} catch {
  done('node-gyp not installed; native engine not built, using the Node engine');
}
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
  try {
    const addon = createRequire(import.meta.url)(built);
    const v = addon.opensslVersion();
    if (!String(v.text).includes(process.versions.openssl)) {
      done(`native engine built against ${v.headers} but node runs ${process.versions.openssl}; not used`);
    }
    done(`native engine built (${v.text})`);
  } catch (e) {
    done(`native engine built but does not load (${e instanceof Error ? e.message : String(e)}); using the Node engine`);
  }
}
done(`sanitizer build of the native engine in ${built}`);
