#!/usr/bin/env node
// `npm pack` / `npm publish` (prepack): puts the native addon built for this
// platform into prebuilds/<platform>-<arch>/, so that the package works with
// the native engine where no C++ compiler or install script runs
// (docs/decisions.md, "Packaging"). `--clean` (postpack) removes the folder
// again, so that a working tree never loads a stale copy.
import { copyFileSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const folder = join(root, 'prebuilds');
if (process.argv.includes('--clean')) {
  rmSync(folder, { recursive: true, force: true });
  process.exit(0);
}
const built = join(root, 'build', 'Release', 'atls_openssl.node');
if (!existsSync(built)) spawnSync(process.execPath, [join(root, 'scripts', 'build-native.mjs')], { stdio: 'inherit' });
if (!existsSync(built)) {
  // Packing still works; the package then falls back to the node engine on machines without a compiler.
  console.error(`atls: no native addon built for ${process.platform}-${process.arch}; the package ships none`);
  process.exit(0);
}
const target = join(folder, `${process.platform}-${process.arch}`);
mkdirSync(target, { recursive: true });
copyFileSync(built, join(target, 'atls_openssl.node'));
console.error(`atls: packed the native addon as prebuilds/${process.platform}-${process.arch}/atls_openssl.node`);
