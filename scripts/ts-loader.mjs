// `node --import ./scripts/ts-loader.mjs file.ts`: runs this project's TypeScript
// (scripts/ts-hooks.mjs), with stack traces in .ts lines. The test runner
// (scripts/run-tests.mjs) uses it instead of tsx, and warms its cache first.
import { register } from 'node:module';

process.setSourceMapsEnabled(true);
register('./ts-hooks.mjs', import.meta.url);
