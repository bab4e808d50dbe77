/**
 * Hono middleware: answers the ATLS endpoints, runs every inner request
 * through the same Hono app (so existing routes serve it unchanged) with the
 * authenticated peer in `c.get('atls')`, and leaves every other request alone.
 *
 * @example
 * ```ts
 * const app = new Hono<{ Variables: AtlsVariables }>();
 * app.use(atls({ tls: { cert, key }, app }));
 * app.get('/hello', (c) => c.text(`hello ${c.get('atls')?.subject ?? 'plain HTTP'}`));
 * ```
 * @module
 */
import { createAtlsHandler, type AtlsHandler, type AtlsHandlerOptions } from './server.js';
import type { AtlsPeer } from './peer.js';

/**
 * What the middleware uses of Hono's `Context`, written out so that these
 * types compile without `hono` installed (it is an optional peer): a Hono
 * context is one, and a function taking it is a Hono middleware.
 */
export interface HonoContext {
  req: { raw: Request };
  env?: unknown;
  set(key: 'atls', value: AtlsPeer): void;
  text(text: string, status?: number): Response | Promise<Response>;
}

/** A Hono middleware, as far as this module needs one. */
export type HonoMiddleware = (c: HonoContext, next: () => Promise<void>) => Promise<Response | void>;

/** Variables the middleware sets: `atls` is the peer on inner requests, undefined on plain ones. */
export interface AtlsVariables {
  atls: AtlsPeer | undefined;
}

/** The app the inner requests are dispatched to: anything with Hono's `fetch`. */
export interface FetchApp {
  fetch(request: Request, env?: unknown, executionCtx?: never): Response | Promise<Response>;
  /** A Hono app's `use`: when present, the middleware also guards every route of the app (see {@link atls}). */
  use?(path: string, ...handlers: HonoMiddleware[]): unknown;
}

/** Options of {@link atls}: the handler's, with `app` being the Hono app itself. */
export interface AtlsMiddlewareOptions extends Omit<AtlsHandlerOptions, 'app'> {
  /** The Hono app that serves the inner requests (usually the one `use`-ing this middleware). */
  app: FetchApp;
  /** Only let inner requests through to the app's routes, never plain ones (default false). */
  requireAtls?: boolean;
}

/** The middleware function, with the handler behind it (stats, close). */
export type AtlsMiddleware = HonoMiddleware & { handler: AtlsHandler };

/**
 * Creates the middleware. Inner requests are recognised by object identity
 * (a WeakMap the middleware fills), so no header of a plain request can
 * pretend to be an authenticated one.
 *
 * Mounted globally (`app.use(atls(...))`) or on the endpoint path only
 * (`app.use('/.well-known/atls', atls(...))`, the usual Hono style): when
 * `app` is a Hono app, the middleware also registers a guard for every path
 * of it, which sets `c.get('atls')` on inner requests and enforces
 * `requireAtls` on plain ones. Create it before the routes it guards (Hono
 * runs handlers in registration order).
 */
export function atls(options: AtlsMiddlewareOptions): AtlsMiddleware {
  const peers = new WeakMap<Request, AtlsPeer>();
  const outerContexts = new WeakMap<Request, HonoContext>();
  const handler = createAtlsHandler({
    ...options,
    app: (inner, peer, { outer }) => {
      peers.set(inner, peer);
      const c = outerContexts.get(outer);
      return options.app.fetch(inner, c?.env);
    },
  });
  /** Every request of the app: inner ones get their peer, plain ones meet requireAtls. */
  const guard = async (c: HonoContext, next: () => Promise<void>, isEndpoint: boolean): Promise<Response | undefined> => {
    const peer = peers.get(c.req.raw);
    if (peer) {
      c.set('atls', peer);
      await next();
      return undefined;
    }
    if (options.requireAtls && !isEndpoint) return c.text('this service answers through ATLS only\n', 403);
    await next();
    return undefined;
  };
  const middleware: HonoMiddleware = async function atlsMiddleware(c, next) {
    const raw = c.req.raw;
    if (!peers.has(raw) && handler.matches(new URL(raw.url).pathname)) {
      outerContexts.set(raw, c);
      return handler(raw);
    }
    return guard(c, next, false);
  };
  // Mounted on a path, the middleware never sees the app's other routes: guard them from here.
  options.app.use?.('*', async function atlsGuard(c, next) {
    return guard(c, next, handler.matches(new URL(c.req.raw.url).pathname));
  });
  return Object.assign(middleware, { handler });
}
