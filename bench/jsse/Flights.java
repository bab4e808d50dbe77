import javax.net.ssl.*;
import java.nio.ByteBuffer;
import java.io.FileInputStream;
import java.security.KeyStore;

/**
 * Flights and ATLS round trips of a JSSE (Java 17 SSLEngine) handshake, both
 * ends in memory, as docs/protocol.md §1.5 counts them: a flight is what one
 * side sends before it needs the peer; each client flight is one HTTP round
 * trip. Runs TLS 1.2 and TLS 1.3, each twice on one SSLContext (the second
 * handshake resumes from the client session cache). Not part of the tests:
 *
 *   keytool -genkeypair -alias server -keyalg EC -groupname secp256r1 -sigalg SHA256withECDSA \
 *     -dname CN=localhost -validity 2 -keystore ks.p12 -storetype PKCS12 -storepass changeit -keypass changeit
 *   java bench/jsse/Flights.java     (Java 11+ runs a single source file; ks.p12 in the current folder)
 */
public class Flights {
  static SSLContext ctx() throws Exception {
    KeyStore ks = KeyStore.getInstance("PKCS12");
    ks.load(new FileInputStream("ks.p12"), "changeit".toCharArray());
    KeyManagerFactory kmf = KeyManagerFactory.getInstance("SunX509"); kmf.init(ks, "changeit".toCharArray());
    TrustManagerFactory tmf = TrustManagerFactory.getInstance("PKIX"); tmf.init(ks);
    SSLContext c = SSLContext.getInstance("TLS"); c.init(kmf.getKeyManagers(), tmf.getTrustManagers(), null); return c;
  }
  /** Runs engines until both are done; returns {flights, bytes}; a flight = all a side emits before it needs the peer. */
  static int[] run(SSLEngine cl, SSLEngine sv) throws Exception {
    ByteBuffer empty = ByteBuffer.allocate(0);
    ByteBuffer toServer = ByteBuffer.allocate(1 << 16), toClient = ByteBuffer.allocate(1 << 16);
    ByteBuffer app = ByteBuffer.allocate(1 << 16);
    cl.beginHandshake(); sv.beginHandshake();
    int flights = 0, bytes = 0, lastSide = 0; boolean clientTurn = true;
    StringBuilder log = new StringBuilder();
    for (int step = 0; step < 20; step++) {
      SSLEngine me = clientTurn ? cl : sv, peer = clientTurn ? sv : cl;
      ByteBuffer out = clientTurn ? toServer : toClient, in = clientTurn ? toClient : toServer;
      // take what the peer sent
      in.flip();
      while (in.hasRemaining()) { app.clear(); SSLEngineResult r = me.unwrap(in, app); runTasks(me); if (r.getStatus() != SSLEngineResult.Status.OK || r.bytesConsumed() == 0) break; }
      in.compact();
      // emit what it has
      int before = out.position();
      while (true) {
        SSLEngineResult.HandshakeStatus hs = me.getHandshakeStatus();
        if (hs != SSLEngineResult.HandshakeStatus.NEED_WRAP) break;
        SSLEngineResult r = me.wrap(empty, out); runTasks(me);
        if (r.bytesProduced() == 0 && r.getStatus() != SSLEngineResult.Status.OK) break;
      }
      int n = out.position() - before;
      // A side that speaks twice in a row (JSSE's TLS 1.3 client wraps its change_cipher_spec and Finished in two turns) sends one flight.
      if (n > 0) {
        if (lastSide != (clientTurn ? 1 : 2)) { flights++; log.append(clientTurn ? " C" : " S"); } else log.append('+');
        lastSide = clientTurn ? 1 : 2; bytes += n; log.append(n);
      }
      boolean clDone = cl.getHandshakeStatus() == SSLEngineResult.HandshakeStatus.NOT_HANDSHAKING;
      boolean svDone = sv.getHandshakeStatus() == SSLEngineResult.HandshakeStatus.NOT_HANDSHAKING;
      if (clDone && svDone && toServer.position() == 0 && toClient.position() == 0) break;
      clientTurn = !clientTurn;
    }
    System.out.println("  flights:" + log);
    return new int[] { flights, bytes };
  }
  static void runTasks(SSLEngine e) { Runnable t; while ((t = e.getDelegatedTask()) != null) t.run(); }
  public static void main(String[] a) throws Exception {
    SSLContext c = ctx();
    for (String v : new String[] { "TLSv1.2", "TLSv1.3" }) {
      for (int resumed = 0; resumed < 2; resumed++) {
        SSLEngine cl = c.createSSLEngine("localhost", 443); cl.setUseClientMode(true); cl.setEnabledProtocols(new String[] { v });
        SSLEngine sv = c.createSSLEngine(); sv.setUseClientMode(false); sv.setEnabledProtocols(new String[] { v });
        int[] r = run(cl, sv);
        System.out.println(v + (resumed == 1 ? " second" : " first") + ": " + r[0] + " flights, " + r[1] + " bytes, " + ((r[0] + 1) / 2) + " ATLS round trips, session " + java.util.HexFormat.of().formatHex(cl.getSession().getId()).substring(0, 8) + " created " + cl.getSession().getCreationTime());
      }
    }
  }
}
