/**
 * Retrying an answer that says "unavailable, come back later" (HTTP 503 with
 * Retry-After, CoAP 5.03 with Max-Age): bounded in count and in wait, with
 * jitter so that clients refused together do not come back together.
 *
 * @example
 * const wait = retryDelayMs(parseRetryAfter(res.headers.get('retry-after')), attempt, resolveUnavailableRetry(opts));
 * if (wait !== undefined) await sleep(wait, undefined, { signal });
 */

/** How a client retries an "unavailable" answer (see {@link resolveUnavailableRetry} for defaults). */
export interface UnavailableRetryOptions {
  /** Retries after the first attempt (default 3; 0 turns retrying off). */
  retries?: number;
  /** Longest wait the server may ask for, in ms (default 5000); a longer Retry-After / Max-Age is not waited for. */
  maxWaitMs?: number;
}

export const DEFAULT_UNAVAILABLE_RETRIES = 3;
export const DEFAULT_UNAVAILABLE_MAX_WAIT_MS = 5000;

/** The options with their defaults applied. */
export function resolveUnavailableRetry(options: UnavailableRetryOptions | undefined): Required<UnavailableRetryOptions> {
  const retries = options?.retries ?? DEFAULT_UNAVAILABLE_RETRIES;
  const maxWaitMs = options?.maxWaitMs ?? DEFAULT_UNAVAILABLE_MAX_WAIT_MS;
  return {
    retries: Number.isFinite(retries) ? Math.max(0, Math.floor(retries)) : 0,
    maxWaitMs: Number.isFinite(maxWaitMs) ? Math.max(0, maxWaitMs) : 0,
  };
}

/**
 * Seconds from a Retry-After field value (RFC 9110 §10.2.3: delay-seconds or
 * an HTTP-date), or undefined when absent or not one of the two.
 */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (value === null) return undefined;
  const v = value.trim();
  if (/^\d{1,10}$/.test(v)) return Number(v);
  // HTTP-date (IMF-fixdate, or the obsolete forms Date.parse reads); a date in the past means now.
  if (!/^[A-Za-z]{3},? /.test(v)) return undefined;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, (at - now) / 1000);
}

/**
 * The wait before retry number `attempt + 1` (ms), or undefined when the
 * answer must surface: no delay given, retries used up, or a delay above
 * the cap (waiting less than the server asked would only be refused again).
 * Jitter adds up to a quarter of the delay (at least 100 ms), never less than asked.
 */
export function retryDelayMs(seconds: number | undefined, attempt: number, options: Required<UnavailableRetryOptions>): number | undefined {
  if (seconds === undefined || attempt >= options.retries) return undefined;
  const base = seconds * 1000;
  if (base > options.maxWaitMs) return undefined;
  return base + Math.random() * Math.max(100, base / 4);
}
