/** `atls certs --out DIR [--force]`: a development PKI (ECDSA P-256). */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { AtlsError } from '../errors.js';
import { writeDevPki } from '../pki.js';
import type { CliIo } from './io.js';

const FILES = ['ca.pem', 'ca.key', 'server.pem', 'server.key', 'client.pem', 'client.key'];

export async function runCerts(opts: { out: string; force?: boolean }, io: CliIo): Promise<void> {
  const present = FILES.filter((f) => existsSync(join(opts.out, f)));
  if (present.length > 0 && opts.force !== true) {
    // A new CA silently breaks every server and client that trusts the old one.
    throw new AtlsError('INVALID_ARGUMENT', `${join(opts.out, present[0]!)} exists; pass --force to replace the PKI in ${opts.out}, or choose another --out`);
  }
  const files = await writeDevPki(opts.out);
  for (const path of Object.values(files)) io.stdout.write(`${path}\n`);
}
