/**
 * One run of the `atls` command: parses `argv` (without node and the script),
 * runs the subcommand and returns the exit code: 0 success, 2 usage error,
 * otherwise the class of the failure (src/cli/failures.ts; curl's numbers
 * where curl has the class), with one line on stderr naming the likely fix.
 * Subcommands are loaded on demand so that `atls inspect` does not pay for
 * the HTTP stack.
 * @module
 */
import { createRequire } from 'node:module';
import { Command, CommanderError } from 'commander';
import { commandSpecs } from './commands.js';
import { explainFailure, type Flags } from './failures.js';
import type { CliIo } from './io.js';

const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };

export async function runAtls(argv: string[], io: CliIo): Promise<number> {
  const program = new Command('atls')
    .description('Application-Layer TLS: TLS sessions carried inside HTTP and CoAP bodies')
    .version(`atls ${version} (node ${process.version}, OpenSSL ${process.versions.openssl})`, '-V, --version', 'print the version')
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) })
    .showHelpAfterError('(--help lists the options)')
    .exitOverride();
  for (const spec of commandSpecs) spec.register(program, io);

  // The flags of the subcommand that runs, so that a failure can name the one to change.
  let flags: Flags = {};
  program.hook('preAction', async (_program, action) => {
    flags = action.opts();
    // curl -s: nothing on stderr but the error line, and that only with -S.
    if (flags.silent === true) await io.silenceNotices?.();
  });

  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    const { exitCode, line } = explainFailure(e, flags);
    if (flags.silent !== true || flags.showError === true) io.stderr.write(`atls: ${line}\n`);
    return exitCode;
  }
}
