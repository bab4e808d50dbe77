// A summary reporter for node:test (`--test-reporter=./scripts/test-reporter.mjs`):
// passes are counted, failures are printed in full (the test's path, file and
// line, the error with its cause and stack, and the output of its file), skips
// are grouped by reason, and the slowest files are named so that a slow suite
// is visible before it becomes a habit.
import { inspect } from 'node:util';
import { relative } from 'node:path';

const SLOWEST_FILES = 5;
const OUTPUT_LINES_PER_FILE = 40;

const rel = (file) => (file ? relative(process.cwd(), file) : '(unknown file)');

export default async function* summaryReporter(source) {
  const counts = { pass: 0, fail: 0, skip: 0, todo: 0, cancelled: 0 };
  const failures = [];
  const skipReasons = new Map();
  const fileDurations = new Map();
  const fileOutput = new Map();
  const failedFiles = new Set();
  const namePath = new Map(); // file -> names by nesting, from test:start
  let dotsOnLine = 0;

  const pathOf = (data) => {
    const names = namePath.get(data.file) ?? [];
    return [...names.slice(0, data.nesting), data.name].join(' > ');
  };
  // A test per file (named after the file) wraps each isolated file's tests.
  const isFileWrapper = (data) => data.nesting === 0 && data.file !== undefined && data.name === data.file;

  for await (const { type, data } of source) {
    switch (type) {
      case 'test:start': {
        const names = namePath.get(data.file) ?? [];
        names[data.nesting] = data.name;
        names.length = data.nesting + 1;
        namePath.set(data.file, names);
        break;
      }
      case 'test:stdout':
      case 'test:stderr': {
        const lines = fileOutput.get(data.file) ?? [];
        lines.push(data.message);
        fileOutput.set(data.file, lines);
        break;
      }
      case 'test:pass':
      case 'test:fail': {
        if (isFileWrapper(data)) {
          fileDurations.set(data.file, data.details.duration_ms);
          if (type === 'test:fail') failedFiles.add(data.file);
          break;
        }
        if (data.details.type === 'suite') {
          // A suite fails by itself only when its hooks do; its tests are counted on their own.
          const error = data.details.error;
          if (type === 'test:fail' && error && !/subtests? failed/.test(String(error.message))) {
            counts.fail++;
            failures.push({ path: pathOf(data), data });
            failedFiles.add(data.file);
          }
          break;
        }
        if (data.todo !== undefined) counts.todo++;
        else if (data.skip !== undefined) {
          counts.skip++;
          const reason = typeof data.skip === 'string' ? data.skip : '(no reason given)';
          skipReasons.set(reason, (skipReasons.get(reason) ?? 0) + 1);
        } else if (type === 'test:pass') counts.pass++;
        else if (data.details.error?.failureType === 'cancelledByParent') counts.cancelled++;
        else {
          counts.fail++;
          failures.push({ path: pathOf(data), data });
          failedFiles.add(data.file);
        }
        // One dot per test so that a long run shows it is alive; an F marks a failure.
        yield type === 'test:pass' ? '.' : 'F';
        if (++dotsOnLine === 80) {
          dotsOnLine = 0;
          yield '\n';
        }
        break;
      }
      case 'test:complete':
        // Node 20 reports a file that failed outside any test (e.g. on import) only here.
        if (isFileWrapper(data)) {
          fileDurations.set(data.file, data.details.duration_ms);
          if (data.details.passed === false) failedFiles.add(data.file);
        }
        break;
      default:
        break;
    }
  }

  let out = dotsOnLine > 0 ? '\n' : '';
  for (const [i, f] of failures.entries()) {
    const { data } = f;
    // The file only: under a TypeScript loader the runner's line numbers are those of the compiled code; the stack has the real ones.
    out += `\n${'='.repeat(78)}\nFAIL ${i + 1}: ${f.path}\n  in ${rel(data.file)}\n\n`;
    const error = data.details.error;
    const shown = error?.code === 'ERR_TEST_FAILURE' && error.cause !== undefined ? error.cause : error;
    out += inspect(shown, { depth: 6, colors: false }).replace(/^/gm, '  ') + '\n';
  }
  for (const file of failedFiles) {
    if (!failures.some((f) => f.data.file === file)) {
      out += `\n${'='.repeat(78)}\nFAIL: ${rel(file)} failed outside its tests (import error, open handle or crash)\n`;
    }
    const lines = (fileOutput.get(file) ?? []).join('').trimEnd().split('\n');
    if (lines.length === 1 && lines[0] === '') continue;
    const shown = lines.slice(-OUTPUT_LINES_PER_FILE);
    const cut = lines.length > shown.length ? ` (last ${shown.length} of ${lines.length} lines)` : '';
    out += `\n--- output of ${rel(file)}${cut}\n${shown.join('\n')}\n`;
  }
  if (skipReasons.size > 0) {
    out += '\nskipped:\n';
    for (const [reason, n] of skipReasons) out += `  ${n} x ${reason}\n`;
  }
  const slowest = [...fileDurations].sort((a, b) => b[1] - a[1]).slice(0, SLOWEST_FILES);
  if (slowest.length > 0) {
    out += `\nslowest files: ${slowest.map(([file, ms]) => `${rel(file)} ${(ms / 1000).toFixed(1)} s`).join(', ')}\n`;
  }
  const files = fileDurations.size;
  out +=
    `\n${counts.fail > 0 || failedFiles.size > 0 ? 'FAILED' : 'ok'}: ` +
    `${counts.pass} passed, ${counts.fail} failed, ${counts.skip} skipped, ${counts.todo} todo, ` +
    `${counts.cancelled} cancelled, in ${files} file${files === 1 ? '' : 's'}\n`;
  yield out;
}
