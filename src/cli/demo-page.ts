/**
 * The demo page of `atls serve --demo-page`: a form for one inner request,
 * sent with `atls/browser` through ATLS to the endpoint that served the page,
 * and a log of the handshake (each flight as a middlebox sees it, without
 * keys) and the answer.
 *
 * The page and its script come over the same outer channel as the ATLS
 * bodies, so a middlebox that rewrites pages could replace them: the demo
 * shows the protocol, not a way to trust code delivered through an
 * intercepting proxy (docs/decisions.md, section browser).
 * @module
 */
import { readFileSync } from 'node:fs';
import { AtlsError } from '../errors.js';

/** The bundle, from the package's dist/ whether this runs from src/ or dist/. */
const BUNDLE = new URL('../../dist/browser/atls.js', import.meta.url);

const PAGE = (config: string): string => `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>ATLS from a web page</title>
<link rel="icon" href="data:,">
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 60em; padding: 0 1em; }
  fieldset { display: grid; grid-template-columns: 8em 1fr; gap: .4em .8em; border: 1px solid #bbb; }
  textarea, input, select { font: 13px ui-monospace, monospace; }
  pre { background: #f5f5f5; padding: .6em; overflow-x: auto; white-space: pre-wrap; font-size: 12px; }
  .sent { color: #1a4d8f; } .received { color: #2b6e2b; } .error { color: #a00; font-weight: bold; }
</style>
</head>
<body>
<h1>ATLS from a web page</h1>
<p>The request below is sent as a Binary HTTP message protected end to end with keys exported from a
TLS 1.3 session that this page runs itself (Web Crypto) inside ordinary HTTP POSTs: a TLS-intercepting
middlebox on the way sees the handshake and opaque protected messages, never the request or the answer.</p>
<form id="form">
<fieldset>
  <label for="method">Method</label>
  <select id="method"><option>POST</option><option>GET</option><option>PUT</option><option>DELETE</option></select>
  <label for="path">Path</label><input id="path" value="/hello">
  <label for="type">Content-Type</label><input id="type" value="text/plain">
  <label for="body">Body</label><textarea id="body" rows="3">hello from the browser</textarea>
  <span></span><button id="send" type="submit">Send through ATLS</button>
</fieldset>
</form>
<h2>Handshake and messages</h2>
<pre id="log"></pre>
<h2>Answer</h2>
<pre id="answer"></pre>
<script type="application/json" id="config">${config}</script>
<script type="module">
import { createAtlsFetch, inspectFlight } from './atls-browser.js';
const config = JSON.parse(document.getElementById('config').textContent);
const log = document.getElementById('log');
const answer = document.getElementById('answer');
const line = (text, cls) => { const s = document.createElement('span'); if (cls) s.className = cls; s.textContent = text + '\\n'; log.append(s); };
function describeFlight(bytes) {
  try {
    const f = inspectFlight(bytes);
    const hs = f.handshake.map((m) => m.name).join(', ');
    return f.records.map((r) => r.contentTypeName).join(' ') + (hs ? ' [' + hs + ']' : '');
  } catch (e) { return 'not TLS records'; }
}
const client = createAtlsFetch({
  tls: { ca: config.ca },
  onEvent(e) {
    if (e.type === 'flight') {
      const arrow = e.direction === 'sent' ? 'page -> server' : 'server -> page';
      const what = e.kind === 'protected' ? 'protected message (opaque)'
        : describeFlight(e.bytes.subarray(0, e.flightBytes)) + (e.kind === 'flight+protected' ? ' + protected message' : '');
      line(arrow + ' ' + e.bytes.length + ' B' + (e.status ? ' (HTTP ' + e.status + ')' : '') + ': ' + what, e.direction);
    } else if (e.type === 'handshake') {
      const i = e.info;
      line('handshake done: ' + i.version + ' ' + i.cipherSuite + ', server certificate ' + (i.peerVerified ? 'verified' : 'not verified')
        + ', ' + e.roundTrips + ' round trips, ' + e.durationMs + ' ms');
    } else {
      line('session lost (HTTP ' + e.status + '), handshaking again');
    }
  },
});
document.getElementById('form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const method = document.getElementById('method').value;
  const init = { method, headers: { 'content-type': document.getElementById('type').value } };
  if (method !== 'GET') init.body = document.getElementById('body').value;
  answer.textContent = '';
  try {
    const res = await client.fetch(document.getElementById('path').value, init);
    const headers = [...res.headers].map(([k, v]) => k + ': ' + v).join('\\n');
    answer.textContent = res.status + '\\n' + headers + '\\n\\n' + await res.text();
    answer.dataset.status = String(res.status);
  } catch (e) {
    answer.textContent = (e.code ? e.code + ': ' : '') + e.message;
    answer.className = 'error';
    answer.dataset.status = 'error';
  }
});
</script>
</body>
</html>
`;

/**
 * A Web handler for `/` (the page) and `/atls-browser.js` (the bundle); 404
 * for anything else. `trust` is the PEM the page trusts for ATLS.
 */
export function demoPageHandler(trust: string): (request: Request) => Promise<Response> {
  let bundle: Uint8Array;
  try {
    bundle = readFileSync(BUNDLE);
  } catch {
    throw new AtlsError('INVALID_ARGUMENT', `the browser bundle ${BUNDLE.pathname} is missing (run npm run build)`);
  }
  // JSON inside <script>: "<" escaped so that no certificate text can end the element.
  const page = PAGE(JSON.stringify({ ca: trust }).replace(/</g, '\\u003c'));
  return (request) => {
    const path = new URL(request.url).pathname;
    if (request.method !== 'GET' && request.method !== 'HEAD') return Promise.resolve(new Response('method not allowed\n', { status: 405 }));
    if (path === '/' || path === '/index.html') {
      return Promise.resolve(new Response(page, { headers: { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' } }));
    }
    if (path === '/atls-browser.js') {
      return Promise.resolve(new Response(bundle, { headers: { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-store' } }));
    }
    return Promise.resolve(new Response('not found\n', { status: 404, headers: { 'content-type': 'text/plain' } }));
  };
}
