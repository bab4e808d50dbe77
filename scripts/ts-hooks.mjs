// Module hooks that run this project's TypeScript under plain Node 20, for the
// test runner (scripts/ts-loader.mjs registers them). What tsx does, without its
// start-up cost (about 0.5 s of CPU per process, paid by every test file): each
// .ts file is transpiled once by esbuild (types dropped, as tsx and tsc's
// isolatedModules do) into a cache keyed by the source's mtime and size, and
// later processes read the cached JavaScript. The module keeps its own .ts URL,
// so import.meta.url, relative fixture paths and stack traces (inline source
// maps) are those of the source.
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join, relative, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const CACHE = join(ROOT, 'node_modules', '.cache', 'atls', 'ts');
const ROOT_URL = pathToFileURL(ROOT + sep).href;

/** What esbuild must know of tsconfig.json to emit what tsc would (class fields, type-only imports). */
const TSCONFIG = { compilerOptions: { target: 'ES2022', verbatimModuleSyntax: true, useDefineForClassFields: true } };
export const TRANSFORM_OPTIONS = { loader: 'ts', format: 'esm', target: 'node20', sourcemap: 'inline', tsconfigRaw: TSCONFIG };

/** The first line of a cached file: which version of the source it was made from. */
export function stamp(path) {
  const st = statSync(path);
  return `// ts-cache ${st.mtimeMs} ${st.size}\n`;
}

export function cachePath(source) {
  return join(CACHE, relative(ROOT, source).replace(/\.ts$/, '.js'));
}

/** Writes a cache entry whole (several test processes may write the same one at once). */
export function writeCache(source, stampLine, code) {
  const target = cachePath(source);
  mkdirSync(dirname(target), { recursive: true });
  const tmp = `${target}.${process.pid}.tmp`;
  writeFileSync(tmp, stampLine + code);
  renameSync(tmp, target);
}

/** The cached JavaScript of `source` if it was made from the version `stampLine` names, else undefined. */
export function readCache(source, stampLine) {
  try {
    const cached = readFileSync(cachePath(source), 'utf8');
    return cached.startsWith(stampLine) ? cached.slice(stampLine.length) : undefined;
  } catch {
    return undefined; // not cached yet
  }
}

let esbuild;
/** Transpiles one file now (a file the runner did not warm: a new one, or a run without the runner). */
function transpile(source, stampLine) {
  esbuild ??= createRequire(import.meta.url)('esbuild');
  const { code } = esbuild.transformSync(readFileSync(source, 'utf8'), { ...TRANSFORM_OPTIONS, sourcefile: basename(source) });
  writeCache(source, stampLine, code);
  return code;
}

const isOurTs = (url) => url.startsWith(ROOT_URL) && url.endsWith('.ts') && !url.includes('/node_modules/');

export async function resolve(specifier, context, next) {
  // TypeScript's ESM convention: `./x.js` names ./x.ts.
  if (specifier.startsWith('.') && specifier.endsWith('.js') && context.parentURL && isOurTs(context.parentURL)) {
    const ts = new URL(specifier.slice(0, -3) + '.ts', context.parentURL);
    try {
      if (statSync(ts).isFile()) return { url: ts.href, format: 'module', shortCircuit: true };
    } catch {
      // no .ts of that name: a real .js file (or a missing one, reported by Node)
    }
  }
  return next(specifier, context);
}

export async function load(url, context, next) {
  if (!isOurTs(url)) return next(url, context);
  const source = fileURLToPath(url);
  const stampLine = stamp(source);
  return { format: 'module', source: readCache(source, stampLine) ?? transpile(source, stampLine), shortCircuit: true };
}
