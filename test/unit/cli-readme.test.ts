/**
 * The README documents the `atls` command as it is: a row of its command
 * table for every subcommand (and `serve ... --coap`), and every exit code of
 * src/cli/failures.ts in its "Exit codes" paragraph.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { commandSpecs } from '../../src/cli/commands.js';
import { EXIT } from '../../src/cli/failures.js';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

it('the command table has a row for every subcommand, serve --coap and -V', () => {
  const rows = readme.split('\n').filter((l) => /^\| `atls [^`]*` \|/.test(l));
  const commands = rows.map((r) => /^\| `atls ([^\s`]+)/.exec(r)![1]!);
  for (const { name } of commandSpecs) assert.ok(commands.includes(name), `README command table lacks atls ${name}`);
  assert.ok(rows.some((r) => /^\| `atls serve [^`]*--coap HOST:PORT/.test(r)), 'a row for serve --coap');
  assert.ok(commands.includes('-V'), 'a row for atls -V');
});

it('every exit code is documented under "Exit codes"', () => {
  const at = readme.indexOf('Exit codes (');
  assert.ok(at >= 0, 'README has an "Exit codes" paragraph');
  const paragraph = readme.slice(at, readme.indexOf('\n\n', at)); // "...: 0 success; 1 any other failure ...; 6 could not resolve ..."
  const documented = new Set([...paragraph.matchAll(/[:;]\s+(\d+) /g)].map((m) => Number(m[1])));
  for (const [name, code] of Object.entries(EXIT)) assert.ok(documented.has(code), `exit code ${code} (${name}) is not in the README`);
  for (const code of documented) assert.ok((Object.values(EXIT) as number[]).includes(code), `README documents exit code ${code}, which the command does not use`);
});
