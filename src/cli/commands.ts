/**
 * The command-line contract in one table: every subcommand, its arguments
 * and flags. Actions live in their own files and are imported on demand.
 * @module
 */
import { Option, type Command } from 'commander';
import type { CliIo } from './io.js';

/** One subcommand: how to register it on the program. */
export interface CommandSpec {
  name: string;
  register(program: Command, io: CliIo): void;
}

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

const engineOption = (): Option =>
  new Option('--engine <name>', 'TLS engine for the ATLS session').choices(['node', 'openssl']);
const modeOption = (): Option =>
  new Option('--mode <mode>', 'exported: key export + protected messages; records: all data in TLS records')
    .choices(['exported', 'records'])
    .default('exported');
const ciphersOption = (): Option =>
  new Option('--ciphers <list>', 'TLS 1.2 cipher suites, OpenSSL names, colon separated (ECDHE-ECDSA-AES256-GCM-SHA384:...)');
const ciphersuitesOption = (): Option =>
  new Option('--ciphersuites <list>', 'TLS 1.3 suites, colon separated (TLS_AES_256_GCM_SHA384:TLS_AES_128_CCM_SHA256:...)');
const policyOption = (): Option =>
  new Option('--policy <policy>', 'always: ATLS; auto: plain HTTPS when the transport verifies end to end, else ATLS; never: plain')
    .choices(['always', 'auto', 'never'])
    .default('always');
const addressCheckOption = (): Option =>
  new Option('--address-check <on|off>', 'CoAP: answer a ClientHello with more than 3x its size only at an address that repeated an Echo value (RFC 9175 §2.4); off only behind something that verifies addresses')
    .choices(['on', 'off'])
    .default('on');
const versionOption = (): Option =>
  new Option('--tls-version <version>', 'only this TLS version (default: 1.2 or 1.3)').choices(['1.2', '1.3']);

/** Logs and metrics of the long-running commands (src/cli/observe.ts). */
function withObservability(c: Command): Command {
  return c
    .addOption(new Option('--log-format <format>', 'one log line per event, as JSON or key=value text').choices(['json', 'text']).default('text'))
    .addOption(new Option('--log-level <level>', 'least severe events logged').choices(['error', 'warn', 'info', 'debug']).default('info'))
    .option('--metrics <host:port>', 'serve Prometheus metrics at http://HOST:PORT/metrics');
}

/** Timeouts and limits of `serve` (defaults in docs/security.md). */
function withLimits(c: Command): Command {
  return c
    .option('--max-connections <n>', 'open HTTP connections; at the cap the longest-idle one is closed (default 8192)')
    .option('--max-connections-per-peer <n>', 'open HTTP connections of one address or IPv6 /64 (default 1024)')
    .option('--headers-timeout <seconds>', 'time to send the request headers (default 10)')
    .option('--request-timeout <seconds>', 'time to send the whole request (default 30)')
    .option('--keep-alive-timeout <seconds>', 'idle time between requests on a connection (default 5)')
    .option('--max-half-open <n>', 'handshakes in progress; at the cap the busiest peer\'s oldest gives way (default 1000)')
    .option('--max-sessions <n>', 'sessions held, half-open or established (default 100000 HTTP, 10000 CoAP)')
    .option('--handshake-timeout <seconds>', 'a half-open handshake is forgotten after this long (default 30)')
    .option('--session-ttl <seconds>', 'idle lifetime of an established session (default 3600)')
    .option('--trusted-proxy <cidr>', 'believe Forwarded / X-Forwarded-For from this reverse proxy (repeatable)', collect, []);
}

export const commandSpecs: CommandSpec[] = [
  {
    name: 'certs',
    register: (p, io) =>
      p
        .command('certs')
        .description('write a development PKI (ECDSA P-256): ca.pem, server.pem/key, client.pem/key')
        .requiredOption('--out <dir>', 'output folder (created if missing)')
        .option('--force', 'replace an existing PKI in the folder (whatever trusts its CA stops working)')
        .action(async (opts: { out: string; force?: boolean }) => (await import('./certs.js')).runCerts(opts, io)),
  },
  {
    name: 'serve',
    register: (p, io) =>
      withObservability(withLimits(p
        .command('serve')
        .description('run an ATLS endpoint (HTTP, optionally CoAP) in front of an upstream service or an echo')
        .requiredOption('--listen <host:port>', 'HTTP address to listen on')
        .option('--cert <file>', 'server certificate chain (PEM)')
        .option('--key <file>', 'server private key (PEM)')
        .option('--ca <file>', 'CA certificates for verifying client certificates (PEM)')
        .option('--require-client-cert', 'mutual authentication: refuse clients without a valid certificate')
        .addOption(new Option('--upstream <url>', 'reverse sidecar: forward inner requests to this HTTP service').conflicts('echo'))
        .option('--echo', 'answer every inner request 200 with its own body and Content-Type')
        .addOption(modeOption())
        .addOption(versionOption())
        .addOption(ciphersOption())
        .addOption(ciphersuitesOption())
        .addOption(engineOption())
        .option('--psk-identity <id>', 'accept a TLS external PSK with this identity')
        .option('--psk <hex>', 'the PSK, hex')
        .option('--coap <host:port>', 'also serve ATLS over CoAP/UDP here')
        .addOption(addressCheckOption())
        .option('--routing-tag <tag>', 'prefix session cookies with this tag, for load balancers')
        .option('--max-body <size>', 'largest inner request content, streamed or not, e.g. 64M, 1G (413 above; default 1G); bodies read whole: at most min(this, 16M), 1M by default')
        .option('--demo-page', 'also serve a web page at / that sends requests through ATLS from the browser')
        .option('--demo-ca <file>', 'what the demo page trusts for ATLS (PEM; default: the last certificate of --cert)')
        .option('--store <url>', 'where established sessions live: memory (default) or redis://HOST:PORT[/DB], shared by every process')
        .option('--store-key <file>', 'wrap session keys stored at rest with this 32-byte key (AES-256-GCM)')
        .option('--ticket-keys <file>', 'TLS session ticket keys (48 bytes), equal on every process, so resumption works on any')
        .option('--workers <n>', 'serve from N processes on one port (node:cluster); they share sessions')
        ))
        .action(async (opts: Record<string, unknown>) => (await import('./serve.js')).runServe(opts, io)),
  },
  {
    name: 'proxy',
    register: (p, io) =>
      withObservability(p
        .command('proxy')
        .description('forward sidecar: plain HTTP in, ATLS-protected requests out to the service')
        .requiredOption('--listen <host:port>', 'address for local plain-HTTP clients')
        .requiredOption('--to <url>', 'the ATLS service (its origin or endpoint URL)')
        .option('--ca <file>', 'CA that must have issued the service certificate (PEM)')
        .option('--cert <file>', 'client certificate for mutual authentication (PEM)')
        .option('--key <file>', 'client private key (PEM)')
        .option('--server-name <name>', 'name the service certificate must carry (default: host of --to)')
        .option('--psk-identity <id>', 'authenticate with a TLS external PSK')
        .option('--psk <hex>', 'the PSK, hex')
        .option('--proxy <url>', 'HTTP(S) proxy for the transport (default: HTTP_PROXY/HTTPS_PROXY)')
        .option('--insecure-transport', 'do not verify the transport TLS (ATLS still authenticates the service)')
        .option('--max-body <size>', 'largest body taken from a local client or from the service, e.g. 64M (413 above; default 1M)')
        .option('--request-timeout <seconds>', 'time a local client has to send its whole request (default 30; raise it for long uploads)')

        .option('--transport-ca <file>', 'trust store for the transport TLS, which --policy auto verifies against (default: Node roots)')
        .addOption(policyOption())
        .addOption(modeOption())
        .addOption(versionOption())
        .addOption(ciphersOption())
        .addOption(ciphersuitesOption())
        .addOption(engineOption())
        )
        .action(async (opts: Record<string, unknown>) => (await import('./proxy.js')).runProxy(opts, io)),
  },
  {
    name: 'fetch',
    register: (p, io) =>
      p
        .command('fetch')
        .description('send one request through ATLS (http(s):// or coap://) and print the inner response body')
        .argument('<url>', 'target URL')
        .option('-X, --request <method>', 'request method (default: GET, or POST with a body)')
        .option('-H, --header <header>', "request header 'Name: value' (repeatable)", collect, [])
        .option('-d, --data <data>', 'request body (POST unless -X), @FILE (CR/LF dropped) or @- for stdin; repeated: joined with &', collect)
        .option('--data-binary <data>', 'like -d, but @FILE and @- are sent byte for byte', collect)
        .option('--data-raw <data>', 'like -d, but a leading @ is sent as it is', collect)
        .option('-T, --upload-file <file>', 'PUT FILE (- for stdin) as the body, streamed as it is read; to URL/FILE when the URL ends with /')
        .option('-i, --include', 'print the inner response status line and headers before the body')
        .option('-I, --head', 'send HEAD and print the inner status line and headers only (http(s)://)')
        .option('-o, --output <file>', 'write the inner response body to FILE instead of stdout (- is stdout)')
        .option('-O, --remote-name', "write the inner response body to a file named as the URL path's last segment")
        .option('-w, --write-out <format>', 'print FORMAT after the transfer: %{http_code}, %{url_effective}, %{content_type}, %{size_download}, %{time_total}, %{method}; \\n, \\t, %%')
        .option('-s, --silent', 'print nothing on stderr: no error line (the exit code still tells), no notice')
        .option('-S, --show-error', 'with -s, still print the error line')
        .option('-f, --fail', 'exit 22, printing no body, when the inner status is 400 or more (CoAP 4.xx/5.xx)')
        .option('--fail-with-body', 'exit 22 when the inner status is 400 or more, after printing the body')
        .option('-L, --location', 'follow inner redirects (3xx with Location)')
        .option('--max-time <seconds>', 'give up after this long in all (exit 28)')
        .option('--connect-timeout <seconds>', 'give up connecting (CoAP: hearing anything) after this long (default 10; exit 28)')
        .option('--ca <file>', 'CA that must have issued the service certificate (PEM)')
        .option('--cert <file>', 'client certificate for mutual authentication (PEM)')
        .option('--key <file>', 'client private key (PEM)')
        .option('--server-name <name>', 'name the service certificate must carry (default: host of the URL)')
        .option('--psk-identity <id>', 'authenticate with a TLS external PSK')
        .option('--psk <hex>', 'the PSK, hex')
        .option('--proxy <url>', 'HTTP(S) proxy for the transport (default: HTTP_PROXY/HTTPS_PROXY)')
        .option('--insecure-transport', 'do not verify the transport TLS (ATLS still authenticates the service)')
        .option('--transport-ca <file>', 'trust store for the transport TLS, which --policy auto verifies against (default: Node roots)')
        .addOption(policyOption())
        .option('--block-size <n>', 'CoAP block-wise size, 16..1024')
        .option('--coap-proxy <url>', 'send every CoAP message through this CoAP forward proxy')
        .addOption(
          new Option('--inner <format>', 'coap:// only: inner message format; http reaches an HTTP service through a gateway')
            .choices(['coap', 'http'])
            .default('coap'),
        )
        .addOption(modeOption())
        .addOption(versionOption())
        .addOption(ciphersOption())
        .addOption(ciphersuitesOption())
        .addOption(engineOption())
        .option('-v, --verbose', 'print as it happens: outer HTTP requests (>) and responses (<), flights, the handshake, CoAP retransmissions')
        .addHelpText(
          'after',
          '\nExit codes (curl\'s numbers where curl has the class): 0 ok, 1 other failure, 2 usage, 6 could not resolve\n' +
            'the host, 7 could not connect, 8 not an ATLS endpoint, 22 inner status >= 400 with --fail, 23 cannot write\n' +
            '-o, 26 cannot read a -d @FILE, 28 timeout, 35 TLS handshake failed (outer HTTPS or ATLS), 47 too many\n' +
            'redirects, 56 connection broke, 60 certificate not trusted (outer HTTPS or ATLS), 63 body too large.',
        )
        .action(async (url: string, opts: Record<string, unknown>) => (await import('./fetch.js')).runFetch(url, opts, io)),
  },
  {
    name: 'inspect',
    register: (p, io) =>
      p
        .command('inspect')
        .description('decode an ATLS body without keys (what a middlebox can see): flights, protected messages, saved HTTP messages')
        .argument('[file]', 'file holding the body or a saved HTTP message; - or nothing for stdin')
        .option('--flight-length <n>', 'the body is N bytes of records, then a protected message (the atls-flight-length header)')
        .option('--content-type <type>', 'the body\'s HTTP media type (application/atls+octet-stream, application/atls-protected)')
        .option('--content-format <n>', 'the body\'s CoAP Content-Format (65000 records, 65001 protected CoAP, 65002 protected Binary HTTP)')
        .option('--json', 'print JSON instead of text')
        .option('--dtls', 'the body holds DTLS records')
        .option('--hex', 'the input is hex text rather than raw bytes')
        .action(async (file: string | undefined, opts: Record<string, unknown>) =>
          (await import('./inspect.js')).runInspectCommand(file, opts, io),
        ),
  },
  {
    name: 'doctor',
    register: (p, io) =>
      p
        .command('doctor')
        .description('report which TLS engines are available (and why not) and which is the default')
        .option('--json', 'print JSON')
        .action(async (opts: { json?: boolean }) => (await import('./doctor.js')).runDoctor(opts, io)),
  },
  {
    name: 'demo',
    register: (p, io) =>
      p
        .command('demo')
        .description('the draft Figure 8 scenario on one machine: client, intercepting middlebox, service')
        .addOption(modeOption())
        .action(async (opts: Record<string, unknown>) => (await import('./demo.js')).runDemo(opts, io)),
  },
  {
    name: 'gateway',
    register: (p, io) =>
      withObservability(p
        .command('gateway')
        .description('CoAP-to-HTTP gateway that forwards ATLS flights and protected messages unchanged')
        .requiredOption('--listen <host:port>', 'CoAP/UDP address to listen on')
        .requiredOption('--to <url>', 'the HTTP(S) ATLS service')
        .option('--insecure-transport', 'do not verify the transport TLS towards the service')
        .option('--transport-ca <file>', 'CA certificates for the outer HTTPS towards the service (PEM)')
        .addOption(addressCheckOption())
        )
        .action(async (opts: Record<string, unknown>) => (await import('./gateway.js')).runGateway(opts, io)),
  },
];
