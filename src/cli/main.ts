/**
 * The `atls` command: one subcommand per file in this folder, loaded on
 * demand so that `atls inspect` does not pay for the HTTP stack.
 * Exit codes: 0 success, 1 failure (one-line reason on stderr), 2 usage error.
 * @module
 */
import { Command, CommanderError } from 'commander';
import { AtlsError } from '../errors.js';
import { commandSpecs } from './commands.js';

const program = new Command('atls')
  .description('Application-Layer TLS: TLS sessions carried inside HTTP and CoAP bodies')
  .showHelpAfterError()
  .exitOverride();

for (const spec of commandSpecs) spec.register(program);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) process.exit(e.exitCode === 0 ? 0 : 2);
  const reason =
    e instanceof AtlsError
      ? `${e.message} [${e.code}${e.alert ? `, alert ${e.alert.name}` : ''}]`
      : e instanceof Error
        ? e.message
        : String(e);
  process.stderr.write(`atls: ${reason}\n`);
  process.exit(1);
}
