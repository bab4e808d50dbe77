/**
 * The `atls` command as a process (bin/atls.js): src/cli/run.ts on the
 * process's streams. A failure exits with its code; success lets a
 * long-running subcommand (serve, proxy, gateway) keep the process alive.
 * @module
 */
import { processIo } from './io.js';
import { runAtls } from './run.js';

const code = await runAtls(process.argv.slice(2), processIo);
if (code !== 0) process.exit(code);
