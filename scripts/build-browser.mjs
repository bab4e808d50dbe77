// Builds `atls/browser` (dist/browser/atls.js): one ESM file for web pages.
// Modules with Node-only dependencies are replaced by their browser variants
// (BROWSER_VARIANTS); any other Node built-in on the path fails the build.
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = (p) => join(root, 'src', p);

/** Module (as resolved) -> its browser variant. */
const BROWSER_VARIANTS = new Map([
  [src('engines/index.ts'), src('engines/index.browser.ts')],
  [src('protect/aead.ts'), src('protect/aead.browser.ts')],
  // The record guard's HKDF-Expand-Label (server-side records mode; a page never builds a guard).
  [src('engines/tls13-alert.ts'), src('browser/tls13-alert.ts')],
  // Binary HTTP only takes reason phrases from node:http; a browser Response needs none.
  ['node:http', src('browser/node-http.ts')],
]);

const variants = {
  name: 'browser-variants',
  setup(b) {
    b.onResolve({ filter: /.*/ }, (args) => {
      if (args.path === 'node:http') return { path: BROWSER_VARIANTS.get('node:http') };
      if (args.path.startsWith('node:')) return { errors: [{ text: `${args.path} imported by ${args.importer} has no browser variant` }] };
      if (!args.path.startsWith('.')) return undefined;
      const ts = join(args.resolveDir, args.path).replace(/\.js$/, '.ts');
      const variant = BROWSER_VARIANTS.get(ts);
      return variant ? { path: variant } : undefined;
    });
  },
};

/** Bundles `atls/browser`; `write: false` only checks that every module resolves (the test runner's static checks). */
export async function buildBrowser(outfile = join(root, 'dist/browser/atls.js'), write = true) {
  const result = await build({
    entryPoints: [src('browser/index.ts')],
    outfile,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    sourcemap: true,
    metafile: true,
    legalComments: 'linked',
    plugins: [variants],
    logLevel: 'warning',
    write,
  });
  return result;
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv.includes('--check')) {
  await buildBrowser(undefined, false);
} else if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const r = await buildBrowser();
  const out = Object.entries(r.metafile.outputs).find(([f]) => f.endsWith('.js'));
  console.log(`atls/browser: ${out[0]} (${out[1].bytes} bytes)`);
}
