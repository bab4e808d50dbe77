/** `atls doctor`: which TLS engines are available here, why not, and the default. */
import { defaultEngine, engineNames, engineUnavailableReason, getEngine } from '../engines/index.js';
import type { CliIo } from './io.js';

export async function runDoctor(opts: { json?: boolean }, io: CliIo): Promise<void> {
  const engines = engineNames().map((name) => {
    const reason = engineUnavailableReason(name);
    return reason === undefined
      ? { name, available: true, capabilities: getEngine(name).capabilities }
      : { name, available: false, reason };
  });
  const report = {
    node: process.version,
    openssl: process.versions.openssl,
    defaultEngine: defaultEngine().name,
    engines,
  };
  if (opts.json) {
    io.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    return;
  }
  io.stdout.write(`node ${report.node}, OpenSSL ${report.openssl}\n`);
  for (const e of engines) {
    if (e.available) {
      const caps = Object.entries(e.capabilities ?? {})
        .filter(([, on]) => on === true)
        .map(([k]) => k);
      const versions = e.capabilities?.tlsVersions.join('/') ?? '';
      io.stdout.write(`engine ${e.name}: available (${versions}; ${caps.join(', ') || 'basic'})\n`);
    } else {
      io.stdout.write(`engine ${e.name}: unavailable: ${e.reason}\n`);
    }
  }
  io.stdout.write(`default engine: ${report.defaultEngine}\n`);
}
