/** `atls demo` / `npm start`: the draft's Figure 8 on this machine. */
import { runFigure8 } from '../demo/figure8.js';
import { CliExit, EXIT } from './failures.js';
import type { CliIo } from './io.js';

export async function runDemo(opts: Record<string, unknown>, io: CliIo): Promise<void> {
  const width = 10;
  const result = await runFigure8({
    mode: opts.mode === 'records' ? 'records' : 'exported',
    log: (hop, line) => io.stdout.write(`[${hop}]`.padEnd(width + 2) + line + '\n'),
  });
  if (!result.confidential) throw new CliExit(EXIT.failure, 'the demo failed: inner data was visible to the middlebox or the answers were wrong');
}
