/**
 * `atls gateway --listen HOST:PORT --to URL`: the CoAP-to-HTTP gateway of the
 * draft's Figures 3 and 7. It forwards ATLS flights and protected messages
 * unchanged and logs what it sees of each (one line per message: sizes and
 * formats, never data; --log-format, --log-level, --metrics).
 */
import { Agent, fetch as undiciFetch } from 'undici';
import { AtlsCoapGateway, type FetchLike } from '../coap/gateway.js';
import { httpUrlFrom, parseHostPort, readPem, untilStopped } from './options.js';
import type { CliIo } from './io.js';
import { observerFrom } from './observe.js';

export async function runGateway(opts: Record<string, unknown>, io: CliIo): Promise<void> {
  const { host, port } = parseHostPort(opts.listen as string);
  const to = new URL(httpUrlFrom(opts.to as string, '--to'));
  // Draft §6.3: the hop to the service may go unverified; ATLS authenticates it.
  const insecure = opts.insecureTransport === true;
  const transportCa = typeof opts.transportCa === 'string' ? readPem(opts.transportCa, '--transport-ca') : undefined;
  const dispatcher =
    insecure || transportCa !== undefined
      ? new Agent({ connect: { rejectUnauthorized: !insecure, ...(transportCa !== undefined ? { ca: transportCa } : {}) } })
      : undefined;
  const fetchLike: FetchLike | undefined = dispatcher
    ? (input, init) => undiciFetch(input, { ...(init as object), dispatcher }) as unknown as Promise<Response>
    : undefined;
  const observer = await observerFrom(opts);
  const gateway = await AtlsCoapGateway.listen({
    to,
    host,
    port,
    ...(fetchLike ? { fetch: fetchLike } : {}),
    addressCheck: opts.addressCheck !== 'off',
    onEvent: observer.gateway(),
  });
  const metricsNote = observer.metricsUrl ? `, metrics at ${observer.metricsUrl}` : '';
  io.stdout.write(`atls: CoAP gateway at ${gateway.url} -> ${to.href}${metricsNote}\n`);
  await untilStopped(io);
  await gateway.close();
  await dispatcher?.close();
  await observer.close();
}
