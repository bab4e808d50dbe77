/**
 * The `atls` command: one subcommand per file in this folder, loaded on
 * demand so that `atls inspect` does not pay for the HTTP stack.
 * Exit codes: 0 success, 2 usage error, otherwise the class of the failure
 * (src/cli/failures.ts; curl's numbers where curl has the class), with one
 * line on stderr naming the likely fix.
 * @module
 */
import { createRequire } from 'node:module';
import { Command, CommanderError } from 'commander';
import { commandSpecs } from './commands.js';
import { explainFailure, type Flags } from './failures.js';

const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };

const program = new Command('atls')
  .description('Application-Layer TLS: TLS sessions carried inside HTTP and CoAP bodies')
  .version(`atls ${version} (node ${process.version}, OpenSSL ${process.versions.openssl})`, '-V, --version', 'print the version')
  .showHelpAfterError()
  .exitOverride();

for (const spec of commandSpecs) spec.register(program);

// The flags of the subcommand that runs, so that a failure can name the one to change.
let flags: Flags = {};
program.hook('preAction', async (_program, action) => {
  flags = action.opts();
  // curl -s: nothing on stderr but the error line, and that only with -S.
  if (flags.silent === true) await quiet();
});

/** Drops every notice that is not the failure itself: the engine fallback line and Node's process warnings. */
async function quiet(): Promise<void> {
  (await import('../engines/index.js')).setEngineFallbackNotice(undefined);
  process.removeAllListeners('warning');
}

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) process.exit(e.exitCode === 0 ? 0 : 2);
  const { exitCode, line } = explainFailure(e, flags);
  if (flags.silent !== true || flags.showError === true) process.stderr.write(`atls: ${line}\n`);
  process.exit(exitCode);
}
