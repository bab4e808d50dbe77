#!/usr/bin/env node
// Builds the optional native OpenSSL engine (native/, binding.gyp) with node-gyp.
// Never fails the install: without the addon the library uses the Node engine.
import { existsSync } from 'node:fs';
if (!existsSync(new URL('../binding.gyp', import.meta.url))) {
  console.log('atls: no native engine in this tree; using the Node engine');
  process.exit(0);
}
