// Two ATLS sessions in one process: the client's flights go to the server and
// back as plain byte buffers (over HTTP they are POST bodies), then a message
// is protected with keys exported from the TLS session.
// Run: node examples/sessions.mjs
import { AtlsClientSession, AtlsServerSession, createDevPki } from 'atls';

const { ca, server: serverCert } = await createDevPki();
const server = new AtlsServerSession({ tls: { cert: serverCert.cert, key: serverCert.key } });
const client = new AtlsClientSession({ tls: { ca: ca.cert, serverName: 'localhost' } });

let out = await client.start(); // ClientHello flight: POST it
while (client.state !== 'established') {
  const back = await server.receive(out.flight); // the server's flight: the 200 body
  out = await client.receive(back.flight);
}
const message = client.protect(new TextEncoder().encode('hello'));
console.log(new TextDecoder().decode(server.unprotect(message))); // hello
