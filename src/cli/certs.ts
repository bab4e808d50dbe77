/** `atls certs --out DIR`: a development PKI (ECDSA P-256). */
import { writeDevPki } from '../pki.js';

export async function runCerts(opts: { out: string }): Promise<void> {
  const files = await writeDevPki(opts.out);
  for (const path of Object.values(files)) process.stdout.write(`${path}\n`);
}
