/**
 * The package as an npm user gets it: `npm pack`, then `npm install` of the
 * tarball and hono into an empty project, and there the README's command-line
 * example, its library example and every file of examples/, with plain node.
 * Also the same package on a machine without a C++ compiler and without the
 * prebuilt addon: one line says so and the node engine does the work.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../helpers/tools.js';

const repo = join(import.meta.dirname, '..', '..');
const readme = readFileSync(join(repo, 'README.md'), 'utf8');

function sh(cwd: string, command: string, env: NodeJS.ProcessEnv = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('sh', ['-c', command], { cwd, encoding: 'utf8', env: { ...process.env, ...env } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The fenced block that follows `marker` in the README. */
function readmeBlock(marker: string): string {
  const at = readme.indexOf(marker);
  assert.ok(at >= 0, `README has ${marker}`);
  const m = /```[a-z]*\n([\s\S]*?)```/.exec(readme.slice(at));
  assert.ok(m, `a code block follows ${marker}`);
  return m[1]!;
}

/**
 * Starts a command in the background; resolves with the first stdout line.
 * `npx atls` runs as node_modules/.bin/atls so that the process to stop is the command itself.
 */
function background(cwd: string, command: string): Promise<{ child: ChildProcess; line: string }> {
  const child = spawn('sh', ['-c', `exec ${command.replace(/^npx atls /, 'node_modules/.bin/atls ')}`], {
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve({ child, line: out.slice(0, out.indexOf('\n')) });
    });
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) => reject(new Error(`${command} exited ${code}: ${err}`)));
  });
}

describe('the packed package, installed into an empty project', () => {
  const work = mkdtempSync(join(tmpdir(), 'atls-package-'));
  const project = join(work, 'project');
  let tarball = '';
  const children: ChildProcess[] = [];

  before(() => {
    const pack = spawnSync('npm', ['pack', '--pack-destination', work, '--silent'], { cwd: repo, encoding: 'utf8' });
    assert.equal(pack.status, 0, pack.stderr);
    tarball = join(work, pack.stdout.trim().split('\n').pop()!);
    assert.ok(existsSync(tarball), tarball);
    assert.ok(!existsSync(join(repo, 'prebuilds')), 'postpack removes the prebuilt addon from the working tree');
    mkdirSync(project);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
    // Only the tarball and hono; the npm cache of this machine serves what it can.
    const install = sh(project, `npm install --no-audit --no-fund --prefer-offline ${JSON.stringify(tarball)} hono`);
    assert.equal(install.status, 0, install.stderr);
  });

  after(() => {
    for (const c of children) c.kill('SIGTERM');
    rmSync(work, { recursive: true, force: true });
  });

  it('carries LICENSE, the docs, the README links and a prebuilt addon that loads', () => {
    const pkg = join(project, 'node_modules', 'atls');
    assert.match(readFileSync(join(pkg, 'LICENSE'), 'utf8'), /^MIT License/);
    const links = [...readme.matchAll(/\]\(([^)#]+)(?:#[^)]*)?\)/g)].map((m) => m[1]!).filter((l) => !/^[a-z]+:/.test(l));
    assert.ok(links.length > 3);
    for (const link of links) assert.ok(existsSync(join(pkg, link)), `README link ${link} exists in the package`);
    if (process.platform === 'linux' && process.arch === 'x64') {
      assert.ok(existsSync(join(pkg, 'prebuilds', 'linux-x64', 'atls_openssl.node')));
      const doctor = sh(project, 'npx atls doctor --json');
      assert.equal(doctor.status, 0, doctor.stderr);
      const report = JSON.parse(doctor.stdout) as { defaultEngine: string };
      assert.equal(report.defaultEngine, 'openssl', 'the prebuilt native engine is used without compiling');
      assert.equal(doctor.stderr, '');
    }
  });

  it("runs the README's command-line example", async () => {
    const port = String(await freePort());
    const lines = readmeBlock('<!-- cli-example').trim().split('\n').map((l) => l.replaceAll('8443', port));
    let fetched = false;
    for (const line of lines) {
      if (line.endsWith('&')) {
        const { child, line: ready } = await background(project, line.slice(0, -1).trim());
        children.push(child);
        assert.match(ready, new RegExp(`127\\.0\\.0\\.1:${port}`));
        continue;
      }
      const r = sh(project, line);
      assert.equal(r.status, 0, `${line}\n${r.stderr}`);
      if (line.includes('atls fetch')) {
        fetched = true;
        assert.equal(r.stdout, 'hello');
        assert.match(r.stderr, /handshake: TLSv1\.3/);
      }
    }
    assert.ok(fetched, 'the example fetches');
  });

  it("runs the README's library example and every file of examples/ with plain node", () => {
    const examples = readdirSync(join(repo, 'examples')).filter((f) => f.endsWith('.mjs'));
    assert.ok(examples.length >= 2);
    for (const name of examples) {
      const source = readFileSync(join(repo, 'examples', name), 'utf8');
      assert.doesNotMatch(source, /from '\.\.?\//, `${name} imports the package, not relative paths`);
      cpSync(join(repo, 'examples', name), join(project, name));
      const r = sh(project, `node ${name}`);
      assert.equal(r.status, 0, `${name}: ${r.stderr}`);
      assert.equal(r.stderr, '', `${name} runs without warnings`);
      assert.ok(r.stdout.length > 0);
    }
    // The README shows examples/sessions.mjs verbatim (its header comment aside).
    const shown = readmeBlock('<!-- example: examples/sessions.mjs -->');
    const file = readFileSync(join(repo, 'examples', 'sessions.mjs'), 'utf8').replace(/^(\/\/.*\n)+\n?/, '');
    assert.equal(shown, file);
    assert.equal(sh(project, 'node sessions.mjs').stdout, 'hello\n');
  });

  it('a TypeScript consumer type-checks under strict settings (nodenext, skipLibCheck off), with hono and without it (an optional peer)', () => {
    const tsc = join(repo, 'node_modules', 'typescript', 'bin', 'tsc');
    const compilerOptions = {
      strict: true,
      exactOptionalPropertyTypes: true,
      noUncheckedIndexedAccess: true,
      module: 'nodenext',
      moduleResolution: 'nodenext',
      target: 'es2022',
      noEmit: true,
      skipLibCheck: false,
      typeRoots: [join(repo, 'node_modules', '@types')],
      types: ['node'],
    };
    writeFileSync(
      join(project, 'service.mts'),
      [
        "import { Hono } from 'hono';",
        "import { AtlsClientSession, AtlsServerSession, createDevPki, AtlsError } from 'atls';",
        "import { atls, atlsFetch, createAtlsServer, type AtlsVariables } from 'atls/http';",
        "import { AtlsCoapClient } from 'atls/coap';",
        "import { inspectFlight } from 'atls/records';",
        "const { ca, server: s } = await createDevPki();",
        "const app = new Hono<{ Variables: AtlsVariables }>();",
        'app.use(atls({ tls: { cert: s.cert, key: s.key }, app }));',
        "app.use('/.well-known/atls', atls({ tls: { cert: s.cert, key: s.key }, app, requireAtls: true }));",
        "app.get('/hello', (c) => c.text(`hello over ${c.get('atls')?.version ?? 'plain HTTP'}`));",
        "const res: Response = await atlsFetch('https://service.example/hello', { atls: { tls: { ca: ca.cert }, transport: { insecure: true } } });",
        "void [res, AtlsClientSession, AtlsServerSession, AtlsError, createAtlsServer, AtlsCoapClient, inspectFlight];",
      ].join('\n'),
    );
    writeFileSync(
      join(project, 'client.mts'),
      [
        "import { atlsFetch } from 'atls/http';",
        "import { AtlsError } from 'atls/errors';",
        "const res = await atlsFetch('http://localhost:8443/x', { method: 'POST', body: 'x', atls: { tls: { ca: '' } } });",
        'if (!res.ok) throw new AtlsError(\'INVALID_STATE\', `status ${res.status}`);',
      ].join('\n'),
    );
    // The README's Hono example as shown, its PEM strings declared.
    writeFileSync(join(project, 'readme-hono.mts'), `declare const cert: string, key: string, ca: string;\n${readmeBlock('Over HTTP, a service keeps its routes')}\nvoid res;\n`);
    writeFileSync(join(project, 'tsconfig.json'), JSON.stringify({ compilerOptions, files: ['service.mts', 'client.mts', 'readme-hono.mts'] }));
    const withHono = sh(project, `node ${JSON.stringify(tsc)} -p tsconfig.json`);
    assert.equal(withHono.status, 0, withHono.stdout + withHono.stderr);
    // A client-only project has no hono: the types of atls/http must not need it.
    writeFileSync(join(project, 'tsconfig.json'), JSON.stringify({ compilerOptions, files: ['client.mts'] }));
    const hono = join(project, 'node_modules', 'hono');
    renameSync(hono, `${hono}.away`);
    try {
      const without = sh(project, `node ${JSON.stringify(tsc)} -p tsconfig.json`);
      assert.equal(without.status, 0, without.stdout + without.stderr);
    } finally {
      renameSync(`${hono}.away`, hono);
    }
  });

  it('without a prebuilt addon or a C++ compiler: one line, then the node engine', async () => {
    const pkg = join(project, 'node_modules', 'atls');
    rmSync(join(pkg, 'prebuilds'), { recursive: true, force: true });
    rmSync(join(pkg, 'build'), { recursive: true, force: true });
    // What the install script does on such a machine (npm runs it with its own node-gyp): it must not fail the install.
    const build = sh(project, 'npm rebuild atls --foreground-scripts', { CXX: '/bin/false', CC: '/bin/false' });
    assert.equal(build.status, 0, build.stderr);
    const said = build.stdout.split('\n').filter((l) => l.startsWith('atls: '));
    assert.equal(said.length, 1, build.stdout);
    assert.match(said[0]!, /^atls: native engine build failed \(.*\); using the Node engine/);

    const doctor = sh(project, 'npx atls doctor --json');
    assert.equal(doctor.status, 0, doctor.stderr);
    assert.equal((JSON.parse(doctor.stdout) as { defaultEngine: string }).defaultEngine, 'node');
    const warning = doctor.stderr.trim().split('\n');
    assert.equal(warning.length, 1, doctor.stderr);
    assert.match(warning[0]!, /native OpenSSL engine unavailable .*build-native\.mjs.*; using the node engine/);
    const named = /node (\S+build-native\.mjs)/.exec(warning[0]!)?.[1];
    assert.ok(named !== undefined && existsSync(named), `the file the line names is in the package: ${warning[0]}`);
    if (!existsSync(join(project, 'pki'))) assert.equal(sh(project, 'npx atls certs --out pki').status, 0);

    const { child, line } = await background(project, 'npx atls serve --listen 127.0.0.1:0 --cert pki/server.pem --key pki/server.key --echo');
    children.push(child);
    const origin = new URL(/(http:\/\/\S+)/.exec(line)![1]!).origin.replace('127.0.0.1', 'localhost');
    const r = sh(project, `npx atls fetch ${origin}/x -X POST -d 'node engine' --ca pki/ca.pem`);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'node engine');
  });

  it('without a prebuilt addon but with a C++ compiler: npm rebuild compiles it with the node-gyp npm carries', async () => {
    const pkg = join(project, 'node_modules', 'atls');
    assert.ok(!existsSync(join(pkg, 'node_modules', 'node-gyp')) && !existsSync(join(project, 'node_modules', 'node-gyp')), 'node-gyp is not a dependency of the package');
    const build = sh(project, 'npm rebuild atls --foreground-scripts');
    assert.equal(build.status, 0, build.stderr);
    assert.match(build.stdout, /^atls: native engine built \(OpenSSL/m);
    const doctor = sh(project, 'npx atls doctor --json');
    assert.equal(doctor.status, 0, doctor.stderr);
    assert.equal((JSON.parse(doctor.stdout) as { defaultEngine: string }).defaultEngine, 'openssl');
    assert.equal(doctor.stderr, '');
  });
});
