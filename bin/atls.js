#!/usr/bin/env node
// The `atls` command. Runs the compiled CLI (built by `npm install` / `npm run build`).
import { existsSync } from 'node:fs';
const entry = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(entry)) {
  console.error('atls: not built yet; run `npm install` (or `npm run build`) in the project folder');
  process.exit(2);
}
await import(entry.href);
