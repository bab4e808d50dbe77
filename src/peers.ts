/**
 * Who a peer is, for fairness limits: an IPv4 address, or the /64 an IPv6
 * address lies in (one subscriber usually gets a whole /64, RFC 6177), and
 * behind a trusted reverse proxy the client address it reports in
 * `Forwarded` (RFC 7239) or `X-Forwarded-For`, never a header from anyone else.
 *
 * @example
 * ```ts
 * peerGroup('2001:db8:1:2:aaaa::1'); // '2001:db8:1:2::/64'
 * const proxies = new TrustedProxies(['10.0.0.0/8']);
 * proxies.clientAddress('10.1.2.3', { forwarded: 'for=198.51.100.7' }); // '198.51.100.7'
 * ```
 * @module
 */
import { BlockList, isIP, isIPv4, isIPv6 } from 'node:net';
import { AtlsError } from './errors.js';

/** Expands an IPv6 address to its eight 16-bit groups. */
function ipv6Groups(address: string): number[] | undefined {
  let a = address;
  const zone = a.indexOf('%');
  if (zone >= 0) a = a.slice(0, zone);
  let tail: number[] = [];
  const lastColon = a.lastIndexOf(':');
  const v4 = a.slice(lastColon + 1);
  if (isIPv4(v4)) {
    const [p, q, r, s] = v4.split('.').map(Number) as [number, number, number, number];
    tail = [(p << 8) | q, (r << 8) | s];
    a = a.slice(0, lastColon + 1) + '0';
  }
  const halves = a.split('::');
  if (halves.length > 2) return undefined;
  const parse = (s: string): number[] => (s === '' ? [] : s.split(':').map((h) => parseInt(h, 16)));
  const head = parse(halves[0]!);
  const rest = halves.length === 2 ? parse(halves[1]!) : [];
  if (tail.length > 0) (rest.length > 0 || halves.length === 2 ? rest : head).splice(-1, 1, ...tail);
  const fill = 8 - head.length - rest.length;
  const groups = halves.length === 2 ? [...head, ...new Array<number>(Math.max(0, fill)).fill(0), ...rest] : head;
  return groups.length === 8 && groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : undefined;
}

/**
 * The fairness group of an address: IPv4 (also IPv4-mapped IPv6) as it is,
 * IPv6 as its /64 prefix, anything unparsable as itself.
 */
export function peerGroup(address: string | undefined): string {
  if (!address) return 'unknown';
  if (isIPv4(address)) return address;
  if (!isIPv6(address)) return address;
  const g = ipv6Groups(address);
  if (!g) return address;
  // ::ffff:a.b.c.d is an IPv4 peer on a dual-stack socket.
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) {
    return `${g[6]! >> 8}.${g[6]! & 0xff}.${g[7]! >> 8}.${g[7]! & 0xff}`;
  }
  return `${g.slice(0, 4).map((x) => x.toString(16)).join(':')}::/64`;
}

/** Strips `[...]`, a port and quotes from one `for=` / X-Forwarded-For element. */
function bareAddress(node: string): string | undefined {
  let s = node.trim().replace(/^"|"$/g, '');
  if (s.startsWith('[')) {
    const end = s.indexOf(']');
    s = end > 0 ? s.slice(1, end) : '';
  } else if (isIPv4(s.split(':')[0] ?? '') && s.includes(':')) {
    s = s.split(':')[0]!;
  }
  return isIP(s) ? s : undefined;
}

/** Longest forwarding header looked at (a chain of a few hundred hops at most). */
const MAX_FORWARDING_HEADER = 4096;

/**
 * The reverse proxies whose `Forwarded` / `X-Forwarded-For` headers are
 * believed: addresses or CIDR ranges. With none configured, the socket's
 * address is the client's.
 */
export class TrustedProxies {
  private readonly list = new BlockList();
  readonly size: number;

  constructor(entries: readonly string[] = []) {
    for (const e of entries) {
      const [addr = '', bits] = e.split('/');
      const type = isIPv4(addr) ? 'ipv4' : isIPv6(addr) ? 'ipv6' : undefined;
      const max = type === 'ipv4' ? 32 : 128;
      const prefix = bits === undefined ? max : Number(bits);
      if (!type || !Number.isInteger(prefix) || prefix < 0 || prefix > max) {
        throw new AtlsError('INVALID_ARGUMENT', `trusted proxy ${JSON.stringify(e)} is not an address or CIDR range`);
      }
      this.list.addSubnet(addr, prefix, type);
    }
    this.size = entries.length;
  }

  /** True when `address` is one of the trusted proxies. */
  trusts(address: string | undefined): boolean {
    if (!address || this.size === 0) return false;
    const type = isIPv4(address) ? 'ipv4' : isIPv6(address) ? 'ipv6' : undefined;
    if (!type) return false;
    const g = type === 'ipv6' ? ipv6Groups(address) : undefined;
    if (g && g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) {
      return this.list.check(`${g[6]! >> 8}.${g[6]! & 0xff}.${g[7]! >> 8}.${g[7]! & 0xff}`, 'ipv4');
    }
    return this.list.check(address, type);
  }

  /**
   * The client's address: walking the forwarding chain from the nearest hop
   * back, the first address that is not a trusted proxy (RFC 7239 §7.4:
   * only hops we trust may add to the chain). `Forwarded` wins over
   * `X-Forwarded-For`. The socket's address when it is not a trusted proxy.
   */
  clientAddress(socketAddress: string | undefined, headers: { forwarded?: string | null | undefined; xForwardedFor?: string | null | undefined }): string | undefined {
    if (!this.trusts(socketAddress)) return socketAddress;
    let chain: string[] = [];
    const fwd = headers.forwarded;
    if (fwd) {
      for (const element of fwd.slice(0, MAX_FORWARDING_HEADER).split(',')) {
        for (const pair of element.split(';')) {
          const eq = pair.indexOf('=');
          if (eq > 0 && pair.slice(0, eq).trim().toLowerCase() === 'for') chain.push(pair.slice(eq + 1));
        }
      }
    } else if (headers.xForwardedFor) {
      chain = headers.xForwardedFor.slice(0, MAX_FORWARDING_HEADER).split(',');
    }
    let client = socketAddress;
    for (let i = chain.length - 1; i >= 0; i--) {
      const a = bareAddress(chain[i]!);
      if (!a) break; // "unknown", an obfuscated node: stop at the last hop we can name
      client = a;
      if (!this.trusts(a)) break;
    }
    return client;
  }
}
