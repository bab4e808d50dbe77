// An existing Hono service gains ATLS without changing its routes, and a
// client reaches it with atlsFetch. Run: node examples/hono-service.mjs
import { createServer } from 'node:http';
import { Hono } from 'hono';
import { createDevPki } from 'atls';
import { atls, atlsFetch, toNodeListener } from 'atls/http';

const pki = await createDevPki();
const app = new Hono();
app.use(atls({ tls: { cert: pki.server.cert, key: pki.server.key }, app })); // answers POST /.well-known/atls
app.get('/hello', (c) => c.text(`hello over ${c.get('atls')?.version ?? 'plain HTTP'}`));

const server = createServer(toNodeListener((request) => app.fetch(request)));
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const { port } = server.address();

const res = await atlsFetch(`http://localhost:${port}/hello`, { atls: { tls: { ca: pki.ca.cert } } });
console.log(await res.text()); // hello over TLSv1.3
const plain = await fetch(`http://localhost:${port}/hello`);
console.log(await plain.text()); // hello over plain HTTP
server.closeAllConnections();
server.close();
