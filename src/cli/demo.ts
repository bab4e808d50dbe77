/** `atls demo` / `npm start`: the draft's Figure 8 on this machine. */
import { runFigure8 } from '../demo/figure8.js';

export async function runDemo(opts: Record<string, unknown>): Promise<void> {
  const width = 10;
  const result = await runFigure8({
    mode: opts.mode === 'records' ? 'records' : 'exported',
    log: (hop, line) => process.stdout.write(`[${hop}]`.padEnd(width + 2) + line + '\n'),
  });
  if (!result.confidential) process.exitCode = 1;
}
