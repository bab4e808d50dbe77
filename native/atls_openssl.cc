// atls native engine: OpenSSL SSL objects driven through memory BIOs
// (draft-friel-tls-atls-00 Appendix B.1), exposed to JavaScript with Node-API.
//
// Everything is synchronous: JavaScript hands in one peer flight, C++ runs the
// state machine until OpenSSL reports SSL_ERROR_WANT_READ, and hands back the
// bytes it wrote (the next flight) plus a list of events. No sockets, no
// timers, no threads. The OpenSSL used is the one inside the node binary
// (Node exports its symbols); nothing else is linked.
//
// Ownership: CtxState owns an SSL_CTX and is shared (std::shared_ptr) by the
// JS Context wrapper and every Connection made from it; a Connection owns its
// SSL (which owns its BIOs). Both are freed on close/destroy, on error, or by
// the wrapper's finalizer when JavaScript drops the object.

#include <napi.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <ctime>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <vector>

namespace {

std::atomic<long> g_live_ctx{0};
std::atomic<long> g_live_conn{0};
int g_ctx_index = -1;
int g_ssl_index = -1;
BIO_METHOD* g_dgram_method = nullptr;

using Bytes = std::vector<uint8_t>;

// ---------------------------------------------------------------- helpers

struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Deleter>;

// Reads every certificate in a PEM blob, or one DER certificate.
bool ReadCerts(const Bytes& in, std::vector<X509Ptr>* out) {
  if (in.empty()) return false;
  BIO* bio = BIO_new_mem_buf(in.data(), static_cast<int>(in.size()));
  if (bio == nullptr) return false;
  static const char kPem[] = "-----BEGIN";
  bool pem = std::search(in.begin(), in.end(), kPem, kPem + sizeof(kPem) - 1) != in.end();
  if (pem) {
    for (;;) {
      X509* x = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
      if (x == nullptr) break;
      out->emplace_back(x);
    }
    ERR_clear_error();  // the loop ends on a "no start line" error
  } else {
    X509* x = d2i_X509_bio(bio, nullptr);
    if (x != nullptr) out->emplace_back(x);
  }
  BIO_free(bio);
  return !out->empty();
}

EVP_PKEY* ReadKey(const Bytes& in) {
  if (in.empty()) return nullptr;
  BIO* bio = BIO_new_mem_buf(in.data(), static_cast<int>(in.size()));
  if (bio == nullptr) return nullptr;
  EVP_PKEY* k = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  if (k == nullptr) {
    (void)BIO_reset(bio);
    k = d2i_PrivateKey_bio(bio, nullptr);
  }
  BIO_free(bio);
  return k;
}

Bytes GetBytes(const Napi::Object& o, const char* name) {
  Napi::Value v = o.Get(name);
  if (!v.IsTypedArray()) return Bytes();
  Napi::Uint8Array a = v.As<Napi::Uint8Array>();
  return Bytes(a.Data(), a.Data() + a.ByteLength());
}

std::string GetString(const Napi::Object& o, const char* name) {
  Napi::Value v = o.Get(name);
  if (!v.IsString()) return std::string();
  return v.As<Napi::String>().Utf8Value();
}

bool GetBool(const Napi::Object& o, const char* name) {
  Napi::Value v = o.Get(name);
  return v.IsBoolean() && v.As<Napi::Boolean>().Value();
}

int64_t GetInt(const Napi::Object& o, const char* name, int64_t dflt) {
  Napi::Value v = o.Get(name);
  if (!v.IsNumber()) return dflt;
  return v.As<Napi::Number>().Int64Value();
}

// The first queued OpenSSL error as text, then clears the queue.
std::string TakeErrorString(unsigned long* first_code) {
  unsigned long first = 0;
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    if (first == 0) first = e;
  }
  if (first_code != nullptr) *first_code = first;
  if (first == 0) return std::string();
  char buf[256];
  ERR_error_string_n(first, buf, sizeof(buf));
  return std::string(buf);
}

// A plain Uint8Array copy (not a Buffer: callers compare with Uint8Array values).
Napi::Value ToBuffer(Napi::Env env, const uint8_t* p, size_t n) {
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, n);
  if (n > 0) memcpy(ab.Data(), p, n);
  return Napi::Uint8Array::New(env, n, ab, 0);
}

// ----------------------------------------------- datagram queue BIO (DTLS)
// DTLS needs datagram semantics: each BIO_write is one datagram and each
// BIO_read returns one whole datagram. OpenSSL 3.0 has no BIO_s_dgram_mem,
// so this is a minimal one. The engine splits input into records and queues
// one record per datagram (a datagram of whole records is valid, RFC 6347 §4.1.1).

struct DgramQueue {
  std::deque<Bytes> packets;
};

int DqWrite(BIO* b, const char* data, int len) {
  BIO_clear_retry_flags(b);
  auto* q = static_cast<DgramQueue*>(BIO_get_data(b));
  if (q == nullptr || len < 0) return -1;
  q->packets.emplace_back(reinterpret_cast<const uint8_t*>(data),
                          reinterpret_cast<const uint8_t*>(data) + len);
  return len;
}

int DqRead(BIO* b, char* out, int len) {
  BIO_clear_retry_flags(b);
  auto* q = static_cast<DgramQueue*>(BIO_get_data(b));
  if (q == nullptr || len < 0) return -1;
  if (q->packets.empty()) {
    BIO_set_retry_read(b);
    return -1;
  }
  Bytes& p = q->packets.front();
  size_t n = std::min(static_cast<size_t>(len), p.size());  // datagram semantics: truncate
  if (n > 0) memcpy(out, p.data(), n);
  q->packets.pop_front();
  return static_cast<int>(n);
}

long DqCtrl(BIO* b, int cmd, long /*num*/, void* /*ptr*/) {
  auto* q = static_cast<DgramQueue*>(BIO_get_data(b));
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;
    case BIO_CTRL_PENDING:
      return (q == nullptr || q->packets.empty()) ? 0 : static_cast<long>(q->packets.front().size());
    case BIO_CTRL_WPENDING:
      return 0;
    case BIO_CTRL_DGRAM_GET_FALLBACK_MTU:
      return 1200;
    default:
      return 0;  // no MTU query, no peer address, timeouts are the caller's
  }
}

int DqCreate(BIO* b) {
  BIO_set_data(b, new DgramQueue());
  BIO_set_init(b, 1);
  return 1;
}

int DqDestroy(BIO* b) {
  if (b == nullptr) return 0;
  delete static_cast<DgramQueue*>(BIO_get_data(b));
  BIO_set_data(b, nullptr);
  return 1;
}

// -------------------------------------------------------------- context

struct SniEntry {
  X509* cert = nullptr;
  EVP_PKEY* key = nullptr;
  STACK_OF(X509)* chain = nullptr;
};

struct CtxState {
  SSL_CTX* ctx = nullptr;
  bool server = false;
  bool dtls = false;
  bool request_cert = false;
  bool require_cert = false;
  bool psk = false;
  Bytes alpn;  // wire format (RFC 7301 §3.1)
  bool has_ticket_keys = false;
  uint8_t ticket_name[16] = {};
  uint8_t ticket_hmac[16] = {};
  uint8_t ticket_aes[16] = {};
  Bytes cookie_secret;
  std::string psk_hint;
  uint32_t max_early_data = 0;
  std::map<std::string, SniEntry> sni;

  CtxState() { ++g_live_ctx; }
  ~CtxState() {
    for (auto& kv : sni) {
      X509_free(kv.second.cert);
      EVP_PKEY_free(kv.second.key);
      sk_X509_pop_free(kv.second.chain, X509_free);
    }
    OPENSSL_cleanse(ticket_hmac, sizeof(ticket_hmac));
    OPENSSL_cleanse(ticket_aes, sizeof(ticket_aes));
    if (!cookie_secret.empty()) OPENSSL_cleanse(cookie_secret.data(), cookie_secret.size());
    SSL_CTX_free(ctx);
    --g_live_ctx;
  }
};

class Connection;

CtxState* CtxOf(SSL* s) {
  return static_cast<CtxState*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(s), g_ctx_index));
}

Connection* ConnOf(SSL* s) { return static_cast<Connection*>(SSL_get_ex_data(s, g_ssl_index)); }

// TLS 1.3 server: hands the client's application traffic secret to its Connection (defined below it).
void KeylogCb(const SSL* s, const char* line);

// Session tickets with the caller's 48-byte key: name(16) | HMAC-SHA256 key(16) | AES-128-CBC key(16),
// the same split as Node's `ticketKeys` (RFC 5077 §4 recommended ticket format).
int TicketKeyCb(SSL* s, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
                EVP_CIPHER_CTX* cctx, EVP_MAC_CTX* hctx, int enc) {
  CtxState* st = CtxOf(s);
  if (st == nullptr || !st->has_ticket_keys) return -1;
  OSSL_PARAM params[3];
  params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, st->ticket_hmac, 16);
  params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>("SHA256"), 0);
  params[2] = OSSL_PARAM_construct_end();
  if (enc != 0) {
    memcpy(key_name, st->ticket_name, 16);
    if (RAND_bytes(iv, 16) <= 0) return -1;
    if (EVP_EncryptInit_ex(cctx, EVP_aes_128_cbc(), nullptr, st->ticket_aes, iv) != 1) return -1;
    if (EVP_MAC_CTX_set_params(hctx, params) != 1) return -1;
    return 1;
  }
  // Unknown key name: not an error, just no resumption (RFC 5077 §3.3).
  if (CRYPTO_memcmp(key_name, st->ticket_name, 16) != 0) return 0;
  if (EVP_MAC_CTX_set_params(hctx, params) != 1) return -1;
  if (EVP_DecryptInit_ex(cctx, EVP_aes_128_cbc(), nullptr, st->ticket_aes, iv) != 1) return -1;
  return 1;
}

// RFC 8446 §4.2.9: a ClientHello without psk_key_exchange_modes can resume with no ticket, and servers
// SHOULD NOT send tickets incompatible with the advertised modes. OpenSSL 3.0 sends them anyway, and
// each costs a session encoding (Go's crypto/tls without a session cache is such a client).
int ClientHelloCb(SSL* s, int* /*alert*/, void* /*arg*/) {
  const unsigned char* ext = nullptr;
  size_t len = 0;
  if (SSL_client_hello_get0_ext(s, TLSEXT_TYPE_psk_kex_modes, &ext, &len) == 0) SSL_set_num_tickets(s, 0);
  return SSL_CLIENT_HELLO_SUCCESS;
}

int AlpnSelectCb(SSL* s, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                 unsigned int inlen, void* /*arg*/) {
  CtxState* st = CtxOf(s);
  if (st == nullptr || st->alpn.empty()) return SSL_TLSEXT_ERR_NOACK;
  unsigned char* sel = nullptr;
  int r = SSL_select_next_proto(&sel, outlen, st->alpn.data(), static_cast<unsigned int>(st->alpn.size()), in,
                                inlen);
  if (r != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_ALERT_FATAL;  // RFC 7301 §3.2: no_application_protocol
  }
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

int ServerNameCb(SSL* s, int* /*alert*/, void* /*arg*/) {
  CtxState* st = CtxOf(s);
  const char* name = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
  if (st == nullptr || name == nullptr || st->sni.empty()) return SSL_TLSEXT_ERR_OK;
  std::string n(name);
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return static_cast<char>(tolower(c)); });
  auto it = st->sni.find(n);
  if (it == st->sni.end()) return SSL_TLSEXT_ERR_OK;  // the default certificate serves other names
  if (SSL_use_cert_and_key(s, it->second.cert, it->second.key, it->second.chain, 1) != 1) {
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  return SSL_TLSEXT_ERR_OK;
}

unsigned int PskServerCb(SSL* s, const char* identity, unsigned char* psk, unsigned int max_psk_len);
unsigned int PskClientCb(SSL* s, const char* hint, char* identity, unsigned int max_identity_len,
                         unsigned char* psk, unsigned int max_psk_len);
int NewSessionCb(SSL* s, SSL_SESSION* sess);
void InfoCb(const SSL* s, int where, int ret);
int CookieGenerateCb(SSL* s, unsigned char* cookie, unsigned int* cookie_len);
int CookieVerifyCb(SSL* s, const unsigned char* cookie, unsigned int cookie_len);

// ------------------------------------------------------------ Context (JS)

class Context : public Napi::ObjectWrap<Context> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Context", {});
  }

  explicit Context(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Context>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) {
      Napi::TypeError::New(env, "Context(options)").ThrowAsJavaScriptException();
      return;
    }
    std::string err = Build(info[0].As<Napi::Object>());
    if (!err.empty()) {
      state_.reset();
      Napi::Error e = Napi::Error::New(env, err);
      e.Set("atlsCode", Napi::String::New(env, "INVALID_ARGUMENT"));
      e.ThrowAsJavaScriptException();
    }
  }

  std::shared_ptr<CtxState> state() const { return state_; }

 private:
  std::string Build(const Napi::Object& o) {
    ERR_clear_error();
    auto st = std::make_shared<CtxState>();
    st->server = GetBool(o, "server");
    st->dtls = GetBool(o, "dtls");
    const SSL_METHOD* method = st->dtls ? DTLS_method() : TLS_method();
    st->ctx = SSL_CTX_new(method);
    if (st->ctx == nullptr) return "SSL_CTX_new failed: " + TakeErrorString(nullptr);
    SSL_CTX* ctx = st->ctx;
    SSL_CTX_set_ex_data(ctx, g_ctx_index, st.get());

    // Peer-initiated renegotiation is refused (RFC 5746 is not enough for an API without sockets).
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    // Send exactly the configured chain: no trust anchors pulled from the store
    // into flights (bytes matter on constrained links).
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_NO_AUTO_CHAIN);

    if (st->dtls) {
      SSL_CTX_set_min_proto_version(ctx, DTLS1_2_VERSION);
      SSL_CTX_set_max_proto_version(ctx, DTLS1_2_VERSION);
    } else {
      int minv = static_cast<int>(GetInt(o, "minVersion", TLS1_2_VERSION));
      int maxv = static_cast<int>(GetInt(o, "maxVersion", TLS1_3_VERSION));
      if (SSL_CTX_set_min_proto_version(ctx, minv) != 1 || SSL_CTX_set_max_proto_version(ctx, maxv) != 1) {
        return "bad protocol version bounds";
      }
    }

    std::string ciphers = GetString(o, "cipherList");
    if (!ciphers.empty() && SSL_CTX_set_cipher_list(ctx, ciphers.c_str()) != 1) {
      return "no usable cipher in '" + ciphers + "'";
    }
    std::string suites = GetString(o, "cipherSuites");
    if (!suites.empty() && SSL_CTX_set_ciphersuites(ctx, suites.c_str()) != 1) {
      return "no usable TLS 1.3 suite in '" + suites + "'";
    }
    std::string groups = GetString(o, "groups");
    if (!groups.empty() && SSL_CTX_set1_groups_list(ctx, groups.c_str()) != 1) {
      return "bad groups '" + groups + "'";
    }
    std::string sigalgs = GetString(o, "sigalgs");
    if (!sigalgs.empty() && SSL_CTX_set1_sigalgs_list(ctx, sigalgs.c_str()) != 1) {
      return "bad sigalgs '" + sigalgs + "'";
    }

    // Own certificate chain and key.
    Bytes cert = GetBytes(o, "cert");
    Bytes key = GetBytes(o, "key");
    if (!cert.empty() || !key.empty()) {
      std::string e = UseCertAndKey(ctx, nullptr, cert, key);
      if (!e.empty()) return e;
    }

    // Trust anchors.
    Napi::Value ca = o.Get("ca");
    if (ca.IsArray()) {
      X509_STORE* store = SSL_CTX_get_cert_store(ctx);
      Napi::Array arr = ca.As<Napi::Array>();
      for (uint32_t i = 0; i < arr.Length(); i++) {
        Napi::Value v = arr.Get(i);
        if (!v.IsTypedArray()) return "ca entries must be bytes";
        Napi::Uint8Array a = v.As<Napi::Uint8Array>();
        std::vector<X509Ptr> certs;
        if (!ReadCerts(Bytes(a.Data(), a.Data() + a.ByteLength()), &certs)) return "cannot parse a ca certificate";
        for (auto& c : certs) {
          if (X509_STORE_add_cert(store, c.get()) != 1) ERR_clear_error();  // duplicates are fine
        }
      }
    }

    st->alpn = GetBytes(o, "alpn");
    if (st->server) {
      if (!st->alpn.empty()) SSL_CTX_set_alpn_select_cb(ctx, AlpnSelectCb, nullptr);
      st->request_cert = GetBool(o, "requestCert");
      st->require_cert = GetBool(o, "requireCert");
      if (st->require_cert) {
        // OpenSSL verifies the chain and sends the alert itself (RFC 8446 §4.4.2.4).
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
      } else if (st->request_cert) {
        // Asked, not required: no certificate is fine, but one that is sent must
        // verify (the node engine's policy, docs/decisions.md E9).
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
      }
      std::string sid = GetString(o, "sessionIdContext");
      if (sid.empty()) sid = "atls";
      if (sid.size() > SSL_MAX_SID_CTX_LENGTH) sid.resize(SSL_MAX_SID_CTX_LENGTH);
      SSL_CTX_set_session_id_context(ctx, reinterpret_cast<const unsigned char*>(sid.data()),
                                     static_cast<unsigned int>(sid.size()));
      Bytes tk = GetBytes(o, "ticketKeys");
      if (!tk.empty()) {
        if (tk.size() != 48) return "ticketKeys must be 48 bytes";
        memcpy(st->ticket_name, tk.data(), 16);
        memcpy(st->ticket_hmac, tk.data() + 16, 16);
        memcpy(st->ticket_aes, tk.data() + 32, 16);
        OPENSSL_cleanse(tk.data(), tk.size());
        st->has_ticket_keys = true;
        SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, TicketKeyCb);
      }
      if (!st->dtls) SSL_CTX_set_client_hello_cb(ctx, ClientHelloCb, nullptr);
      int64_t tickets = GetInt(o, "ticketCount", -1);
      if (tickets >= 0) {
        SSL_CTX_set_num_tickets(ctx, static_cast<size_t>(std::min<int64_t>(tickets, 16)));
        if (tickets == 0) SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
      }
      int64_t early = GetInt(o, "maxEarlyData", 0);
      if (early > 0 && !st->dtls) {
        st->max_early_data = static_cast<uint32_t>(std::min<int64_t>(early, 1 << 20));
        SSL_CTX_set_max_early_data(ctx, st->max_early_data);
        SSL_CTX_set_recv_max_early_data(ctx, std::max<uint32_t>(st->max_early_data, 16384));
        // Anti-replay (RFC 8446 §8.1): with early data on and SSL_OP_NO_ANTI_REPLAY off, OpenSSL
        // issues stateful single-use tickets kept in this context's session cache.
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
        SSL_CTX_sess_set_cache_size(ctx, GetInt(o, "sessionCacheSize", 20000));
      } else {
        // Stateless tickets only: no per-session server memory.
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        // Early data is refused; up to 16 KiB of it is skipped so that the
        // handshake goes on (RFC 8446 §4.2.10), OpenSSL's default.
        SSL_CTX_set_max_early_data(ctx, 0);
      }
      st->cookie_secret = GetBytes(o, "cookieSecret");
      if (st->dtls) {
        SSL_CTX_set_cookie_generate_cb(ctx, CookieGenerateCb);
        SSL_CTX_set_cookie_verify_cb(ctx, CookieVerifyCb);
      }
      st->psk = GetBool(o, "psk");
      if (st->psk) {
        SSL_CTX_set_psk_server_callback(ctx, PskServerCb);
        st->psk_hint = GetString(o, "pskHint");
        if (!st->psk_hint.empty()) SSL_CTX_use_psk_identity_hint(ctx, st->psk_hint.c_str());
      }
      Napi::Value sni = o.Get("sni");
      if (sni.IsArray()) {
        Napi::Array arr = sni.As<Napi::Array>();
        for (uint32_t i = 0; i < arr.Length(); i++) {
          Napi::Value v = arr.Get(i);
          if (!v.IsObject()) return "bad sni entry";
          Napi::Object e = v.As<Napi::Object>();
          std::string name = GetString(e, "name");
          std::transform(name.begin(), name.end(), name.begin(),
                         [](unsigned char c) { return static_cast<char>(tolower(c)); });
          std::vector<X509Ptr> certs;
          if (!ReadCerts(GetBytes(e, "cert"), &certs)) return "cannot parse sni certificate for " + name;
          EVP_PKEY* k = ReadKey(GetBytes(e, "key"));
          if (k == nullptr) return "cannot parse sni key for " + name;
          SniEntry ent;
          ent.cert = certs[0].release();
          ent.key = k;
          ent.chain = sk_X509_new_null();
          for (size_t j = 1; j < certs.size(); j++) sk_X509_push(ent.chain, certs[j].release());
          if (X509_check_private_key(ent.cert, ent.key) != 1) {
            X509_free(ent.cert);
            EVP_PKEY_free(ent.key);
            sk_X509_pop_free(ent.chain, X509_free);
            return "sni key does not match certificate for " + name;
          }
          st->sni[name] = ent;
        }
        if (!st->sni.empty()) SSL_CTX_set_tlsext_servername_callback(ctx, ServerNameCb);
      }
    } else {
      if (GetBool(o, "verifyPeer")) SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
      // Client sessions go to the caller as `ticket` events, never to an internal cache.
      SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
      SSL_CTX_sess_set_new_cb(ctx, NewSessionCb);
      SSL_CTX_set_psk_client_callback(ctx, PskClientCb);
    }
    SSL_CTX_set_info_callback(ctx, InfoCb);
    ERR_clear_error();
    state_ = std::move(st);
    return std::string();
  }

  static std::string UseCertAndKey(SSL_CTX* ctx, SSL* /*ssl*/, const Bytes& cert, const Bytes& key) {
    std::vector<X509Ptr> certs;
    if (!ReadCerts(cert, &certs)) return "cannot parse certificate";
    EVP_PKEY* k = ReadKey(key);
    if (k == nullptr) return "cannot parse private key";
    if (SSL_CTX_use_certificate(ctx, certs[0].get()) != 1) {
      EVP_PKEY_free(k);
      return "certificate rejected: " + TakeErrorString(nullptr);
    }
    for (size_t i = 1; i < certs.size(); i++) {
      if (SSL_CTX_add1_chain_cert(ctx, certs[i].get()) != 1) {
        EVP_PKEY_free(k);
        return "chain certificate rejected";
      }
    }
    int ok = SSL_CTX_use_PrivateKey(ctx, k);
    EVP_PKEY_free(k);
    if (ok != 1) return "private key rejected: " + TakeErrorString(nullptr);
    if (SSL_CTX_check_private_key(ctx) != 1) return "private key does not match certificate";
    return std::string();
  }

  std::shared_ptr<CtxState> state_;
};

// --------------------------------------------------------- Connection (JS)

struct PendingEvent {
  enum Kind { kData, kEarlyData, kTicket, kAlert, kClosed, kHandshake } kind;
  Bytes bytes;
  int level = 0;
  int desc = 0;
};

class Connection : public Napi::ObjectWrap<Connection> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Connection",
                       {
                           InstanceMethod("start", &Connection::Start),
                           InstanceMethod("receive", &Connection::Receive),
                           InstanceMethod("write", &Connection::Write),
                           InstanceMethod("close", &Connection::Close),
                           InstanceMethod("exportKeyingMaterial", &Connection::Export),
                           InstanceMethod("dtlsTimeout", &Connection::DtlsTimeout),
                           InstanceMethod("dtlsHandleTimeout", &Connection::DtlsHandleTimeout),
                           InstanceMethod("destroy", &Connection::Destroy),
                           InstanceMethod("keepPeerTrafficSecret", &Connection::KeepPeerTrafficSecret),
                           InstanceMethod("peerTrafficSecret", &Connection::PeerTrafficSecret),
                       });
  }

  explicit Connection(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Connection>(info) {
    ++g_live_conn;
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsObject()) {
      Napi::TypeError::New(env, "Connection(context, options)").ThrowAsJavaScriptException();
      return;
    }
    Context* c = Napi::ObjectWrap<Context>::Unwrap(info[0].As<Napi::Object>());
    if (c == nullptr || !c->state()) {
      Napi::TypeError::New(env, "bad context").ThrowAsJavaScriptException();
      return;
    }
    ctx_ = c->state();
    Napi::Object o = info[1].As<Napi::Object>();
    std::string err = Setup(env, o);
    if (!err.empty()) {
      FreeSsl();
      Napi::Error e = Napi::Error::New(env, err);
      e.Set("atlsCode", Napi::String::New(env, "INVALID_ARGUMENT"));
      e.ThrowAsJavaScriptException();
    }
  }

  ~Connection() override {
    FreeSsl();
    --g_live_conn;
  }

  // Called from OpenSSL callbacks (same thread, inside one of our methods).
  Napi::Env env() const { return Env(); }
  std::vector<PendingEvent>& events() { return events_; }
  const Bytes& cookie_peer() const { return dtls_peer_; }

  unsigned int ServerPsk(const char* identity, unsigned char* psk, unsigned int max_len) {
    if (!has_psk_lookup_ || identity == nullptr) return 0;
    Napi::Env e = Env();
    // The lookup lives on the JS object (not a strong C++ reference), so a
    // closure that refers back to the connection cannot keep it alive forever.
    Napi::Value fn = Value().Get(kLookupKey);
    if (!fn.IsFunction()) return 0;
    Napi::Value r = fn.As<Napi::Function>().Call({Napi::String::New(e, identity)});
    if (e.IsExceptionPending()) {
      e.GetAndClearPendingException();
      lookup_threw_ = true;
      return 0;
    }
    if (!r.IsTypedArray()) return 0;  // unknown identity
    Napi::Uint8Array k = r.As<Napi::Uint8Array>();
    if (k.ByteLength() == 0 || k.ByteLength() > max_len) return 0;
    memcpy(psk, k.Data(), k.ByteLength());
    psk_identity_used_ = identity;
    return static_cast<unsigned int>(k.ByteLength());
  }

  unsigned int ClientPsk(char* identity, unsigned int max_identity_len, unsigned char* psk, unsigned int max_psk_len) {
    if (psk_key_.empty() || psk_identity_.size() + 1 > max_identity_len || psk_key_.size() > max_psk_len) return 0;
    memcpy(identity, psk_identity_.c_str(), psk_identity_.size() + 1);
    memcpy(psk, psk_key_.data(), psk_key_.size());
    psk_offered_ = true;
    return static_cast<unsigned int>(psk_key_.size());
  }

  void OnAlert(bool read, int level, int desc) {
    if (read) {
      last_read_alert_ = desc;
      last_read_level_ = level;
      if (level != 2 && desc != SSL_AD_CLOSE_NOTIFY) {
        PendingEvent ev{PendingEvent::kAlert, {}, level, desc};
        events_.push_back(std::move(ev));
      }
    } else if (level == 2 || desc != SSL_AD_CLOSE_NOTIFY) {
      last_sent_alert_ = desc;
    }
  }

 private:
  std::string Setup(Napi::Env env, const Napi::Object& o) {
    ERR_clear_error();
    ssl_ = SSL_new(ctx_->ctx);
    if (ssl_ == nullptr) return "SSL_new failed: " + TakeErrorString(nullptr);
    // Tell V8 what a live SSL weighs, so that dropped connections are
    // collected (and freed by the finalizer) before native memory piles up.
    Napi::MemoryManagement::AdjustExternalMemory(env, kSslWeight);
    weighed_ = true;
    SSL_set_ex_data(ssl_, g_ssl_index, this);
    BIO* rbio;
    BIO* wbio;
    if (ctx_->dtls) {
      rbio = BIO_new(g_dgram_method);
      wbio = BIO_new(g_dgram_method);
    } else {
      rbio = BIO_new(BIO_s_mem());
      wbio = BIO_new(BIO_s_mem());
    }
    if (rbio == nullptr || wbio == nullptr) {
      BIO_free(rbio);
      BIO_free(wbio);
      return "BIO_new failed";
    }
    if (!ctx_->dtls) {
      // An empty memory BIO means "would block", not EOF.
      BIO_set_mem_eof_return(rbio, -1);
      BIO_set_mem_eof_return(wbio, -1);
    }
    SSL_set_bio(ssl_, rbio, wbio);
    rbio_ = rbio;
    wbio_ = wbio;

    if (ctx_->dtls) {
      SSL_set_options(ssl_, SSL_OP_NO_QUERY_MTU);
      int64_t mtu = GetInt(o, "mtu", 1200);
      if (mtu < 256 || mtu > 65535 || SSL_set_mtu(ssl_, static_cast<long>(mtu)) <= 0) {
        return "bad DTLS MTU";
      }
      // The caller's timer drives retransmission; start at the given value (RFC 6347 §4.2.4.1: 1 s).
      int64_t t0 = GetInt(o, "dtlsInitialTimeoutMs", 0);
      if (t0 > 0) {
        initial_timeout_us_ = static_cast<unsigned int>(std::min<int64_t>(t0, 60000) * 1000);
        DTLS_set_timer_cb(ssl_, [](SSL* s, unsigned int prev) -> unsigned int {
          Connection* c = ConnOf(s);
          unsigned int t0us = c != nullptr ? c->initial_timeout_us_ : 1000000;
          if (prev == 0) return t0us;
          unsigned int next = prev * 2;  // RFC 6347 §4.2.4.1: double, up to 60 s
          return next > 60000000 ? 60000000 : next;
        });
      }
    }

    if (ctx_->server) {
      SSL_set_accept_state(ssl_);
      Napi::Value f = o.Get("pskLookup");
      if (f.IsFunction()) {
        Value().Set(kLookupKey, f);
        has_psk_lookup_ = true;
      }
      if (ctx_->dtls && !ctx_->cookie_secret.empty()) {
        SSL_set_options(ssl_, SSL_OP_COOKIE_EXCHANGE);  // RFC 6347 §4.2.1
        std::string peer = GetString(o, "dtlsPeer");
        dtls_peer_.assign(peer.begin(), peer.end());
      }
      early_enabled_ = ctx_->max_early_data > 0;
    } else {
      SSL_set_connect_state(ssl_);
      std::string sn = GetString(o, "serverName");
      bool verify = GetBool(o, "verifyPeer");
      if (!sn.empty()) {
        server_name_ = sn;
        bool is_ip = false;
        {
          ASN1_OCTET_STRING* ip = a2i_IPADDRESS(sn.c_str());
          if (ip != nullptr) {
            is_ip = true;
            ASN1_OCTET_STRING_free(ip);
          }
          ERR_clear_error();
        }
        // RFC 6066 §3: literal IP addresses are not sent in SNI.
        if (!is_ip && SSL_set_tlsext_host_name(ssl_, sn.c_str()) != 1) return "bad serverName";
        if (verify) {
          X509_VERIFY_PARAM* p = SSL_get0_param(ssl_);
          X509_VERIFY_PARAM_set_hostflags(p, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
          int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(p, sn.c_str()) : X509_VERIFY_PARAM_set1_host(p, sn.c_str(), 0);
          if (ok != 1) return "bad serverName";
        }
      }
      if (!ctx_->alpn.empty() &&
          SSL_set_alpn_protos(ssl_, ctx_->alpn.data(), static_cast<unsigned int>(ctx_->alpn.size())) != 0) {
        return "bad ALPN list";
      }
      Bytes pk = GetBytes(o, "pskKey");
      if (!pk.empty()) {
        psk_identity_ = GetString(o, "pskIdentity");
        psk_key_ = pk;
      }
      Bytes sess = GetBytes(o, "session");
      if (!sess.empty()) {
        const unsigned char* p = sess.data();
        SSL_SESSION* s = d2i_SSL_SESSION(nullptr, &p, static_cast<long>(sess.size()));
        if (s == nullptr) {
          ERR_clear_error();
          return "session: not a serialized TLS session";
        }
        int ok = SSL_set_session(ssl_, s);
        offered_session_ = ok == 1;
        max_early_ = SSL_SESSION_get_max_early_data(s);
        SSL_SESSION_free(s);
        ERR_clear_error();
      }
      early_data_ = GetBytes(o, "earlyData");
    }
    (void)env;
    ERR_clear_error();
    return std::string();
  }

  void FreeSsl() {
    if (ssl_ != nullptr) {
      SSL_set_ex_data(ssl_, g_ssl_index, nullptr);
      SSL_free(ssl_);  // frees both BIOs
      ssl_ = nullptr;
      rbio_ = wbio_ = nullptr;
    }
    if (weighed_) {
      weighed_ = false;
      Napi::MemoryManagement::AdjustExternalMemory(Env(), -kSslWeight);
    }
    if (!psk_key_.empty()) OPENSSL_cleanse(psk_key_.data(), psk_key_.size());
    psk_key_.clear();
    if (!peer_secret_.empty()) OPENSSL_cleanse(peer_secret_.data(), peer_secret_.size());
    peer_secret_.clear();
    has_psk_lookup_ = false;
  }

  bool CheckUsable(Napi::Env env) {
    if (ssl_ == nullptr) {
      Napi::Error e = Napi::Error::New(env, "connection destroyed");
      e.Set("atlsCode", Napi::String::New(env, "CLOSED"));
      e.ThrowAsJavaScriptException();
      return false;
    }
    return true;
  }

  void Drain(Bytes* out) {
    if (ctx_->dtls) {
      auto* q = static_cast<DgramQueue*>(BIO_get_data(wbio_));
      for (auto& p : q->packets) {
        out->insert(out->end(), p.begin(), p.end());
        datagram_sizes_.push_back(static_cast<uint32_t>(p.size()));
      }
      q->packets.clear();
      return;
    }
    char* data = nullptr;
    long n = BIO_get_mem_data(wbio_, &data);
    if (n > 0) out->insert(out->end(), data, data + n);
    (void)BIO_reset(wbio_);
  }

  // Feeds peer bytes to the read BIO. DTLS input is split into records, one per datagram.
  void Feed(const uint8_t* p, size_t n) {
    if (n == 0) return;
    if (!ctx_->dtls) {
      BIO_write(rbio_, p, static_cast<int>(n));
      return;
    }
    auto* q = static_cast<DgramQueue*>(BIO_get_data(rbio_));
    size_t off = 0;
    while (off < n) {
      // RFC 6347 §4.1: type(1) version(2) epoch(2) sequence(6) length(2) = 13 bytes.
      if (n - off < 13) {
        q->packets.emplace_back(p + off, p + n);  // a runt: DTLS discards it
        break;
      }
      size_t len = (static_cast<size_t>(p[off + 11]) << 8) | p[off + 12];
      size_t end = std::min(n, off + 13 + len);
      q->packets.emplace_back(p + off, p + end);
      off = end;
    }
  }

  // Runs the state machine until OpenSSL wants to read; returns the result object.
  Napi::Value Pump(Napi::Env env, bool after_write = false) {
    Bytes out;
    bool fatal = false;
    int ssl_err = 0;
    ERR_clear_error();
    if (!handshake_done_ && !after_write) {
      if (ctx_->server && early_enabled_ && !early_finished_) {
        // RFC 8446 §4.2.10: the server reads early data before completing the handshake.
        for (;;) {
          size_t n = 0;
          int r = SSL_read_early_data(ssl_, buf_, sizeof(buf_), &n);
          if (r == SSL_READ_EARLY_DATA_SUCCESS) {
            if (n > 0) events_.push_back(PendingEvent{PendingEvent::kEarlyData, Bytes(buf_, buf_ + n)});
            continue;
          }
          if (r == SSL_READ_EARLY_DATA_FINISH) {
            early_finished_ = true;
            break;
          }
          ssl_err = SSL_get_error(ssl_, 0);
          if (ssl_err != SSL_ERROR_WANT_READ) fatal = true;
          break;
        }
      }
      if (!fatal && (early_finished_ || !(ctx_->server && early_enabled_))) {
        int r = SSL_do_handshake(ssl_);
        if (r == 1) {
          handshake_done_ = true;
          events_.push_back(PendingEvent{PendingEvent::kHandshake, {}});
          // Early data not sent or rejected is not sent again here: RFC 8446 §4.2.10, a TLS
          // implementation SHOULD NOT resend it; the caller sees earlyData != "accepted" and decides.
        } else {
          ssl_err = SSL_get_error(ssl_, r);
          if (ssl_err != SSL_ERROR_WANT_READ) fatal = true;
        }
      }
    }
    if (!fatal && handshake_done_ && !after_write) {
      for (;;) {
        int r = SSL_read(ssl_, buf_, sizeof(buf_));
        if (r > 0) {
          if (!events_.empty() && events_.back().kind == PendingEvent::kData) {
            events_.back().bytes.insert(events_.back().bytes.end(), buf_, buf_ + r);
          } else {
            events_.push_back(PendingEvent{PendingEvent::kData, Bytes(buf_, buf_ + r)});
          }
          continue;
        }
        ssl_err = SSL_get_error(ssl_, r);
        if (ssl_err == SSL_ERROR_WANT_READ) break;
        if (ssl_err == SSL_ERROR_ZERO_RETURN) {
          if (!closed_) events_.push_back(PendingEvent{PendingEvent::kClosed, {}});
          closed_ = true;
          // Answer the peer's close_notify with ours (RFC 8446 §6.1).
          if ((SSL_get_shutdown(ssl_) & SSL_SENT_SHUTDOWN) == 0) (void)SSL_shutdown(ssl_);
          break;
        }
        fatal = true;
        break;
      }
    }
    Drain(&out);
    return Result(env, out, fatal, ssl_err);
  }

  bool WriteAll(const uint8_t* p, size_t n) {
    size_t off = 0;
    while (off < n) {
      size_t w = 0;
      int r = SSL_write_ex(ssl_, p + off, n - off, &w);
      if (r != 1) return false;
      off += w;
    }
    return true;
  }

  // A memory BIO keeps the capacity of the largest flight or record it ever held
  // (BIO_reset keeps the buffer): an idle connection that once carried 64 KiB would
  // keep ~170 KB. Between calls both BIOs are normally empty; swap an empty BIO
  // that holds a buffer for a fresh one (no allocation until bytes arrive).
  void ReleaseBioBuffers() {
    if (ssl_ == nullptr || ctx_->dtls) return;
    if (HoldsEmptyBuffer(rbio_)) {
      BIO* fresh = NewMemBio();
      if (fresh != nullptr) {
        SSL_set0_rbio(ssl_, fresh);  // frees the old one
        rbio_ = fresh;
      }
    }
    if (HoldsEmptyBuffer(wbio_)) {
      BIO* fresh = NewMemBio();
      if (fresh != nullptr) {
        SSL_set0_wbio(ssl_, fresh);
        wbio_ = fresh;
      }
    }
  }

  static bool HoldsEmptyBuffer(BIO* b) {
    if (b == nullptr || BIO_ctrl_pending(b) != 0) return false;
    BUF_MEM* bm = nullptr;
    BIO_get_mem_ptr(b, &bm);
    return bm != nullptr && bm->max > 0;
  }

  static BIO* NewMemBio() {
    BIO* b = BIO_new(BIO_s_mem());
    if (b != nullptr) BIO_set_mem_eof_return(b, -1);  // an empty memory BIO means "would block", not EOF
    return b;
  }

  Napi::Value Result(Napi::Env env, const Bytes& out, bool fatal, int ssl_err) {
    ReleaseBioBuffers();
    // The common step (a flight, nothing else to report) is the flight alone: each property
    // added through Node-API is a runtime call, and a server's first flight reports nothing.
    if (!fatal && events_.empty() && !(ctx_ && ctx_->dtls)) {
      ERR_clear_error();
      return ToBuffer(env, out.data(), out.size());
    }
    Napi::Object res = Napi::Object::New(env);
    res.Set("flight", ToBuffer(env, out.data(), out.size()));
    if (ctx_ && ctx_->dtls) {
      Napi::Array d = Napi::Array::New(env, datagram_sizes_.size());
      for (uint32_t k = 0; k < datagram_sizes_.size(); k++) d.Set(k, datagram_sizes_[k]);
      res.Set("datagrams", d);
      datagram_sizes_.clear();
    }
    Napi::Array evs = Napi::Array::New(env, events_.size());
    uint32_t i = 0;
    for (auto& ev : events_) {
      Napi::Object e = Napi::Object::New(env);
      switch (ev.kind) {
        case PendingEvent::kData:
        case PendingEvent::kEarlyData:
          e.Set("type", "data");
          e.Set("data", ToBuffer(env, ev.bytes.data(), ev.bytes.size()));
          if (ev.kind == PendingEvent::kEarlyData) e.Set("early", true);
          break;
        case PendingEvent::kTicket:
          e.Set("type", "ticket");
          e.Set("session", ToBuffer(env, ev.bytes.data(), ev.bytes.size()));
          break;
        case PendingEvent::kAlert:
          e.Set("type", "alert");
          e.Set("level", ev.level);
          e.Set("description", ev.desc);
          break;
        case PendingEvent::kClosed:
          e.Set("type", "closed");
          break;
        case PendingEvent::kHandshake:
          e.Set("type", "handshake");
          e.Set("info", HandshakeInfo(env));
          break;
      }
      evs.Set(i++, e);
    }
    events_.clear();
    res.Set("events", evs);
    if (fatal) {
      unsigned long code = 0;
      std::string msg = TakeErrorString(&code);
      Napi::Object err = Napi::Object::New(env);
      err.Set("sslError", ssl_err);
      err.Set("message", msg);
      err.Set("lib", static_cast<double>(ERR_GET_LIB(code)));
      err.Set("reason", static_cast<double>(ERR_GET_REASON(code)));
      const char* rs = code != 0 ? ERR_reason_error_string(code) : nullptr;
      err.Set("reasonString", rs != nullptr ? rs : "");
      long vr = SSL_get_verify_result(ssl_);
      err.Set("verifyResult", static_cast<double>(vr));
      if (vr != X509_V_OK) err.Set("verifyError", X509_verify_cert_error_string(vr));
      if (last_sent_alert_ >= 0) err.Set("alertSent", last_sent_alert_);
      if (last_read_alert_ >= 0) err.Set("alertReceived", last_read_alert_);
      if (lookup_threw_) err.Set("lookupThrew", true);
      err.Set("handshakeDone", handshake_done_);
      err.Set("tls13", SSL_version(ssl_) == TLS1_3_VERSION);
      res.Set("error", err);
      // A failed SSL is useless: free it now (memory), keep the wrapper for sticky errors.
      FreeSsl();
    }
    ERR_clear_error();
    return res;
  }

  // The handshake summary as an array in the order of kInfoFields (absent: a hole), made
  // into a HandshakeInfo by src/engines/openssl.ts: array elements cost less through
  // Node-API than named properties, each of which is a runtime call.
  Napi::Array HandshakeInfo(Napi::Env env) {
    Napi::Array o = Napi::Array::New(env, kInfoFields);
    int v = SSL_version(ssl_);
    o.Set(0u, v == TLS1_3_VERSION ? "TLSv1.3" : v == DTLS1_2_VERSION ? "DTLSv1.2" : "TLSv1.2");
    const SSL_CIPHER* c = SSL_get_current_cipher(ssl_);
    const char* sn = c != nullptr ? SSL_CIPHER_standard_name(c) : nullptr;
    o.Set(1u, sn != nullptr ? sn : (c != nullptr ? SSL_CIPHER_get_name(c) : ""));
    const unsigned char* alpn = nullptr;
    unsigned int alpn_len = 0;
    SSL_get0_alpn_selected(ssl_, &alpn, &alpn_len);
    if (alpn_len > 0) o.Set(2u, std::string(reinterpret_cast<const char*>(alpn), alpn_len));
    if (ctx_->server) {
      const char* name = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name);
      if (name != nullptr) o.Set(3u, name);
    } else if (!server_name_.empty()) {
      o.Set(3u, server_name_);
    }
    // Peer chain as sent, leaf first (the server-side stack omits the leaf).
    Napi::Array certs = Napi::Array::New(env);
    uint32_t n = 0;
    STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl_);
    if (ctx_->server) {
      X509* leaf = SSL_get0_peer_certificate(ssl_);
      if (leaf != nullptr) certs.Set(n++, Der(env, leaf));
    }
    for (int i = 0; chain != nullptr && i < sk_X509_num(chain); i++) certs.Set(n++, Der(env, sk_X509_value(chain, i)));
    o.Set(4u, certs);
    STACK_OF(X509)* verified = SSL_get0_verified_chain(ssl_);
    long vr = SSL_get_verify_result(ssl_);
    bool has_peer_cert = SSL_get0_peer_certificate(ssl_) != nullptr;
    if (has_peer_cert) {
      o.Set(8u, vr == X509_V_OK && verified != nullptr);
      if (vr != X509_V_OK) o.Set(9u, X509_verify_cert_error_string(vr));
      if (verified != nullptr) {
        Napi::Array va = Napi::Array::New(env);
        for (int i = 0; i < sk_X509_num(verified); i++) va.Set(static_cast<uint32_t>(i), Der(env, sk_X509_value(verified, i)));
        o.Set(10u, va);
      }
    }
    bool reused = SSL_session_reused(ssl_) == 1;
    bool external_psk = false;
    if (ctx_->server) {
      external_psk = !psk_identity_used_.empty() && (v != TLS1_3_VERSION || reused);
      if (external_psk) o.Set(5u, psk_identity_used_);
    } else {
      const SSL_CIPHER* cc = SSL_get_current_cipher(ssl_);
      bool psk_suite = cc != nullptr && SSL_CIPHER_get_auth_nid(cc) == NID_auth_psk;
      external_psk = psk_offered_ && (v == TLS1_3_VERSION ? (reused && !offered_session_) : psk_suite);
      if (external_psk) o.Set(5u, psk_identity_);
    }
    o.Set(6u, reused && !external_psk);
    const char* ed = "none";
    int eds = SSL_get_early_data_status(ssl_);
    if (ctx_->server) {
      if (eds == SSL_EARLY_DATA_ACCEPTED) ed = "accepted";
      else if (eds == SSL_EARLY_DATA_REJECTED) ed = "rejected";
    } else if (early_attempted_) {
      ed = eds == SSL_EARLY_DATA_ACCEPTED ? "accepted" : "rejected";
    }
    o.Set(7u, ed);
    return o;
  }
  static constexpr uint32_t kInfoFields = 11;  // version, cipherSuite, alpn, serverName, peerCertificates,
                                               // pskIdentity, resumed, earlyData, peerVerified, verifyError, verifiedChain

  static Napi::Value Der(Napi::Env env, X509* x) {
    unsigned char* der = nullptr;
    int len = i2d_X509(x, &der);
    if (len <= 0) return ToBuffer(env, nullptr, 0);
    Napi::Value b = ToBuffer(env, der, static_cast<size_t>(len));
    OPENSSL_free(der);
    return b;
  }

  // ---- JS methods

  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckUsable(env)) return env.Undefined();
    if (ctx_->server || started_) {
      Napi::Error e = Napi::Error::New(env, "start() is for a client, once");
      e.Set("atlsCode", Napi::String::New(env, "INVALID_STATE"));
      e.ThrowAsJavaScriptException();
      return env.Undefined();
    }
    started_ = true;
    ERR_clear_error();
    if (!early_data_.empty() && offered_session_ && max_early_ > 0 && early_data_.size() <= max_early_) {
      // RFC 8446 §4.2.10: early data rides with the ClientHello on resumption.
      size_t written = 0;
      int r = SSL_write_early_data(ssl_, early_data_.data(), early_data_.size(), &written);
      if (r == 1 && written == early_data_.size()) {
        early_attempted_ = true;
        Bytes out;
        Drain(&out);
        return Result(env, out, false, 0);
      }
      int e = SSL_get_error(ssl_, r);
      if (e != SSL_ERROR_WANT_READ) {
        Bytes out;
        Drain(&out);
        return Result(env, out, true, e);
      }
      early_attempted_ = true;
      Bytes out;
      Drain(&out);
      return Result(env, out, false, 0);
    }
    return Pump(env);
  }

  Napi::Value Receive(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckUsable(env)) return env.Undefined();
    if (info.Length() < 1 || !info[0].IsTypedArray()) {
      Napi::TypeError::New(env, "receive(bytes)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Uint8Array a = info[0].As<Napi::Uint8Array>();
    Feed(a.Data(), a.ByteLength());
    return Pump(env);
  }

  Napi::Value Write(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckUsable(env)) return env.Undefined();
    if (info.Length() < 1 || !info[0].IsTypedArray()) {
      Napi::TypeError::New(env, "write(bytes)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (!handshake_done_) {
      Napi::Error e = Napi::Error::New(env, "handshake not complete");
      e.Set("atlsCode", Napi::String::New(env, "NOT_ESTABLISHED"));
      e.ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Uint8Array a = info[0].As<Napi::Uint8Array>();
    ERR_clear_error();
    bool ok = a.ByteLength() == 0 || WriteAll(a.Data(), a.ByteLength());
    Bytes out;
    Drain(&out);
    return Result(env, out, !ok, ok ? 0 : SSL_get_error(ssl_, -1));
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckUsable(env)) return env.Undefined();
    ERR_clear_error();
    // close_notify (RFC 8446 §6.1); we do not wait for the peer's.
    if (handshake_done_ || SSL_in_init(ssl_) == 0) (void)SSL_shutdown(ssl_);
    Bytes out;
    Drain(&out);
    // The SSL stays until destroy(): the peer's close_notify may still arrive.
    return Result(env, out, false, 0);
  }

  Napi::Value Export(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckUsable(env)) return env.Undefined();
    if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsString()) {
      Napi::TypeError::New(env, "exportKeyingMaterial(length, label[, context])").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (!handshake_done_) {
      Napi::Error e = Napi::Error::New(env, "handshake not complete");
      e.Set("atlsCode", Napi::String::New(env, "NOT_ESTABLISHED"));
      e.ThrowAsJavaScriptException();
      return env.Undefined();
    }
    int64_t len = info[0].As<Napi::Number>().Int64Value();
    std::string label = info[1].As<Napi::String>().Utf8Value();
    if (len <= 0 || len > 8160) {
      Napi::Error e = Napi::Error::New(env, "bad export length");
      e.Set("atlsCode", Napi::String::New(env, "INVALID_ARGUMENT"));
      e.ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Bytes ctxb;
    int use_ctx = 0;
    if (info.Length() > 2 && info[2].IsTypedArray()) {
      Napi::Uint8Array a = info[2].As<Napi::Uint8Array>();
      ctxb.assign(a.Data(), a.Data() + a.ByteLength());
      use_ctx = 1;  // RFC 5705 §4: an empty context differs from no context in TLS 1.2
    }
    Bytes out(static_cast<size_t>(len));
    ERR_clear_error();
    static const unsigned char kEmpty[1] = {0};
    int ok = SSL_export_keying_material(ssl_, out.data(), out.size(), label.data(), label.size(),
                                        ctxb.empty() ? kEmpty : ctxb.data(), ctxb.size(), use_ctx);
    if (ok != 1) {
      std::string m = TakeErrorString(nullptr);
      Napi::Error e = Napi::Error::New(env, "export failed: " + m);
      e.Set("atlsCode", Napi::String::New(env, "INVALID_ARGUMENT"));
      e.ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Value b = ToBuffer(env, out.data(), out.size());
    OPENSSL_cleanse(out.data(), out.size());
    return b;
  }

  Napi::Value DtlsTimeout(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (ssl_ == nullptr || !ctx_->dtls) return env.Undefined();
    struct timeval tv;
    if (DTLSv1_get_timeout(ssl_, &tv) != 1) return env.Undefined();
    double ms = static_cast<double>(tv.tv_sec) * 1000.0 + static_cast<double>(tv.tv_usec) / 1000.0;
    return Napi::Number::New(env, ms);
  }

  Napi::Value DtlsHandleTimeout(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckUsable(env)) return env.Undefined();
    ERR_clear_error();
    Bytes out;
    int r = ctx_->dtls ? DTLSv1_handle_timeout(ssl_) : 0;
    Drain(&out);
    return Result(env, out, r < 0, r < 0 ? SSL_ERROR_SSL : 0);
  }

  Napi::Value Destroy(const Napi::CallbackInfo& info) {
    FreeSsl();
    return info.Env().Undefined();
  }

  // Records mode authenticates the client's records before OpenSSL reads them (RFC 8446 §5.2 and RFC 5246
  // §7.2.2 make a bad one fatal). The callback goes on the context only then: other contexts format no key
  // log lines.
  Napi::Value KeepPeerTrafficSecret(const Napi::CallbackInfo& info) {
    keep_peer_secret_ = true;
    if (ssl_ != nullptr && !ctx_->dtls) SSL_CTX_set_keylog_callback(ctx_->ctx, KeylogCb);
    return info.Env().Undefined();
  }

  // Client random then client_application_traffic_secret_0 (TLS 1.3) or master secret (TLS 1.2), handed
  // over once; undefined before the handshake completed.
  Napi::Value PeerTrafficSecret(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!handshake_done_ || peer_secret_.empty()) return env.Undefined();
    Napi::Buffer<uint8_t> out = Napi::Buffer<uint8_t>::Copy(env, peer_secret_.data(), peer_secret_.size());
    OPENSSL_cleanse(peer_secret_.data(), peer_secret_.size());
    peer_secret_.clear();
    return out;
  }

 public:
  // NSS key log line "<label> <client random> <secret>", kept when asked for: CLIENT_TRAFFIC_SECRET_0
  // (TLS 1.3, client_application_traffic_secret_0) or CLIENT_RANDOM (TLS 1.2, the master secret). Kept as
  // client random (32 bytes) then secret: the TLS 1.2 key expansion needs both randoms (RFC 5246 §6.3).
  void OnKeylog(const char* line) {
    if (!keep_peer_secret_) return;
    const char* rest = nullptr;
    for (const char* label : {"CLIENT_TRAFFIC_SECRET_0 ", "CLIENT_RANDOM "}) {
      size_t n = std::strlen(label);
      if (std::strncmp(line, label, n) == 0) rest = line + n;
    }
    if (rest == nullptr) return;
    static const size_t kRandom = 32;
    const char* space = std::strchr(rest, ' ');
    if (space == nullptr || static_cast<size_t>(space - rest) != 2 * kRandom) return;
    size_t n = std::strlen(space + 1) / 2;
    if (n == 0 || n > EVP_MAX_MD_SIZE) return;
    auto digit = [](char ch) -> int {
      if (ch >= '0' && ch <= '9') return ch - '0';
      if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
      if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
      return -1;
    };
    Bytes secret(kRandom + n);
    for (size_t i = 0; i < secret.size(); ++i) {
      const char* hex = i < kRandom ? rest + 2 * i : space + 1 + 2 * (i - kRandom);
      int hi = digit(hex[0]);
      int lo = digit(hex[1]);
      if (hi < 0 || lo < 0) {
        OPENSSL_cleanse(secret.data(), secret.size());
        return;
      }
      secret[i] = static_cast<uint8_t>((hi << 4) | lo);
    }
    if (!peer_secret_.empty()) OPENSSL_cleanse(peer_secret_.data(), peer_secret_.size());
    peer_secret_ = std::move(secret);
  }

  unsigned int initial_timeout_us_ = 1000000;

 private:
  std::shared_ptr<CtxState> ctx_;
  SSL* ssl_ = nullptr;
  BIO* rbio_ = nullptr;
  BIO* wbio_ = nullptr;
  std::vector<PendingEvent> events_;
  std::vector<uint32_t> datagram_sizes_;
  static constexpr const char* kLookupKey = "__atlsPskLookup";
  // Rough native footprint of one SSL in a handshake (state, session, certificates).
  static constexpr int64_t kSslWeight = 32 * 1024;
  bool weighed_ = false;
  bool has_psk_lookup_ = false;
  std::string psk_identity_;
  Bytes psk_key_;
  std::string psk_identity_used_;
  bool psk_offered_ = false;
  bool lookup_threw_ = false;
  std::string server_name_;
  Bytes dtls_peer_;
  Bytes early_data_;
  bool keep_peer_secret_ = false;
  Bytes peer_secret_;
  uint32_t max_early_ = 0;
  bool offered_session_ = false;
  bool early_attempted_ = false;
  bool early_enabled_ = false;
  bool early_finished_ = false;
  bool handshake_done_ = false;
  bool started_ = false;
  bool closed_ = false;
  int last_sent_alert_ = -1;
  int last_read_alert_ = -1;
  int last_read_level_ = 0;
  // One read buffer for all connections: every call is synchronous on the JS
  // thread, and a per-connection 16 KiB array made each wrapper expensive to allocate.
  static uint8_t buf_[16384];
};

void KeylogCb(const SSL* s, const char* line) {
  Connection* c = ConnOf(const_cast<SSL*>(s));
  if (c != nullptr) c->OnKeylog(line);
}

uint8_t Connection::buf_[16384];

// ------------------------------------------------------- OpenSSL callbacks

unsigned int PskServerCb(SSL* s, const char* identity, unsigned char* psk, unsigned int max_psk_len) {
  Connection* c = ConnOf(s);
  return c != nullptr ? c->ServerPsk(identity, psk, max_psk_len) : 0;
}

unsigned int PskClientCb(SSL* s, const char* /*hint*/, char* identity, unsigned int max_identity_len,
                         unsigned char* psk, unsigned int max_psk_len) {
  Connection* c = ConnOf(s);
  return c != nullptr ? c->ClientPsk(identity, max_identity_len, psk, max_psk_len) : 0;
}

int NewSessionCb(SSL* s, SSL_SESSION* sess) {
  Connection* c = ConnOf(s);
  if (c == nullptr) return 0;
  int len = i2d_SSL_SESSION(sess, nullptr);
  if (len <= 0 || len > (1 << 20)) return 0;
  PendingEvent ev{PendingEvent::kTicket, Bytes(static_cast<size_t>(len))};
  unsigned char* p = ev.bytes.data();
  i2d_SSL_SESSION(sess, &p);
  c->events().push_back(std::move(ev));
  return 0;  // we keep no reference
}

void InfoCb(const SSL* s, int where, int ret) {
  if ((where & SSL_CB_ALERT) == 0) return;
  Connection* c = ConnOf(const_cast<SSL*>(s));
  if (c == nullptr) return;
  c->OnAlert((where & SSL_CB_READ) != 0, (ret >> 8) & 0xff, ret & 0xff);
}

// DTLS cookie (RFC 6347 §4.2.1): HMAC-SHA256(secret, peer identity). Stateless on
// the server; the caller names the peer (for example "ip:port").
bool ComputeCookie(SSL* s, unsigned char* out, unsigned int* out_len) {
  CtxState* st = CtxOf(s);
  Connection* c = ConnOf(s);
  if (st == nullptr || c == nullptr || st->cookie_secret.empty()) return false;
  const Bytes& peer = c->cookie_peer();
  unsigned int len = 0;
  unsigned char mac[EVP_MAX_MD_SIZE];
  if (HMAC(EVP_sha256(), st->cookie_secret.data(), static_cast<int>(st->cookie_secret.size()),
           peer.empty() ? reinterpret_cast<const unsigned char*>("") : peer.data(), peer.size(), mac, &len) == nullptr) {
    return false;
  }
  memcpy(out, mac, len);
  *out_len = len;
  return true;
}

int CookieGenerateCb(SSL* s, unsigned char* cookie, unsigned int* cookie_len) {
  return ComputeCookie(s, cookie, cookie_len) ? 1 : 0;
}

int CookieVerifyCb(SSL* s, const unsigned char* cookie, unsigned int cookie_len) {
  unsigned char expect[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!ComputeCookie(s, expect, &len)) return 0;
  return (cookie_len == len && CRYPTO_memcmp(cookie, expect, len) == 0) ? 1 : 0;
}


// ------------------------------------------------------------ AEAD

std::atomic<long> g_live_aead{0};

// One key and one direction of a protected-message channel (draft §7.2): the
// EVP_CIPHER_CTX is keyed once, and each message re-initialises only the IV
// (EVP_CipherInit_ex with NULL cipher and key), which is what makes this
// cheaper than node:crypto's new cipher object per message. The caller
// (src/protect/channel.ts) builds every nonce; this object never picks one.
// The context is freed by free() or by the wrapper's finalizer.
class Aead : public Napi::ObjectWrap<Aead> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Aead",
                       {InstanceMethod<&Aead::Seal>("seal"), InstanceMethod<&Aead::Open>("open"),
                        InstanceMethod<&Aead::SealAt>("sealAt"), InstanceMethod<&Aead::OpenAt>("openAt"),
                        InstanceMethod<&Aead::Free>("free")});
  }

  // new Aead(algorithm, key, tagLength, encrypt[, iv]): with the 12-byte IV, sealAt/openAt build each nonce.
  explicit Aead(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Aead>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 4 || !info[0].IsString() || !info[1].IsTypedArray() || !info[2].IsNumber() ||
        !info[3].IsBoolean() || (info.Length() > 4 && !info[4].IsUndefined() && !info[4].IsTypedArray())) {
      Fail(env, "Aead(algorithm, key, tagLength, encrypt[, iv])");
      return;
    }
    if (info.Length() > 4 && info[4].IsTypedArray()) {
      Napi::Uint8Array iv = info[4].As<Napi::Uint8Array>();
      if (iv.ByteLength() != sizeof(iv_)) { Fail(env, "iv must be 12 bytes"); return; }
      memcpy(iv_, iv.Data(), sizeof(iv_));
      has_iv_ = true;
    }
    std::string alg = info[0].As<Napi::String>().Utf8Value();
    Napi::Uint8Array key = info[1].As<Napi::Uint8Array>();
    int tag = info[2].As<Napi::Number>().Int32Value();
    encrypt_ = info[3].As<Napi::Boolean>().Value();
    int which = -1;
    for (int i = 0; i < kAlgorithms; i++) {
      if (alg == kAlgorithmNames[i]) which = i;
    }
    if (which < 0) { Fail(env, "unknown AEAD algorithm"); return; }
    ccm_ = which >= 3;
    const EVP_CIPHER* c = Fetched(which);
    if (c == nullptr) { ERR_clear_error(); Fail(env, "AEAD algorithm not available"); return; }
    // RFC 5116 §5.1, RFC 8439 §2.8: 16-byte tags; RFC 6655 §3 (CCM_8): 8.
    if (!(tag == 16 || (ccm_ && tag == 8))) { Fail(env, "bad tag length"); return; }
    if (key.ByteLength() != static_cast<size_t>(EVP_CIPHER_get_key_length(c))) { Fail(env, "bad key length"); return; }
    tag_len_ = tag;
    ctx_ = EVP_CIPHER_CTX_new();
    int enc = encrypt_ ? 1 : 0;
    // 12-byte nonces: GCM's and ChaCha20-Poly1305's default length (RFC 5116 §5.1, RFC 8439 §2.8), CCM's is set.
    bool ok = ctx_ != nullptr && EVP_CipherInit_ex(ctx_, c, nullptr, nullptr, nullptr, enc) == 1 &&
              (!ccm_ || EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_SET_IVLEN, 12, nullptr) == 1);
    // CCM fixes M (the tag length) before the key (RFC 3610 §2).
    if (ok && ccm_) ok = EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_SET_TAG, tag_len_, nullptr) == 1;
    if (ok) ok = EVP_CipherInit_ex(ctx_, nullptr, nullptr, key.Data(), nullptr, enc) == 1;
    if (!ok) {
      ERR_clear_error();
      Release();
      Fail(env, "AEAD setup failed");
      return;
    }
    g_live_aead++;
    counted_ = true;
    Napi::MemoryManagement::AdjustExternalMemory(env, kWeight);
  }

  ~Aead() override { Release(); }

 private:
  static constexpr int64_t kWeight = 1024;

  static void Fail(Napi::Env env, const char* msg) {
    Napi::Error e = Napi::Error::New(env, msg);
    e.Set("atlsCode", Napi::String::New(env, "INVALID_ARGUMENT"));
    e.ThrowAsJavaScriptException();
  }

  // The AEADs by name; CCM ones last (see ccm_).
  static constexpr int kAlgorithms = 5;
  static constexpr const char* kAlgorithmNames[kAlgorithms] = {"aes-128-gcm", "aes-256-gcm", "chacha20-poly1305", "aes-128-ccm",
                                                                "aes-256-ccm"};

  // Each cipher fetched from the default provider once per process and kept:
  // OpenSSL 3.0 looks a legacy EVP_aes_128_gcm() up again (names, locks) in
  // every EVP_CipherInit_ex, and a session makes two contexts at its first request.
  static const EVP_CIPHER* Fetched(int which) {
    static std::once_flag once;
    static EVP_CIPHER* fetched[kAlgorithms] = {};
    std::call_once(once, [] {
      static const char* const kOpensslNames[kAlgorithms] = {"AES-128-GCM", "AES-256-GCM", "ChaCha20-Poly1305", "AES-128-CCM",
                                                             "AES-256-CCM"};
      for (int i = 0; i < kAlgorithms; i++) fetched[i] = EVP_CIPHER_fetch(nullptr, kOpensslNames[i], nullptr);
      ERR_clear_error();
    });
    return fetched[which];
  }

  void Release() {
    OPENSSL_cleanse(iv_, sizeof(iv_));
    if (ctx_ == nullptr) return;
    EVP_CIPHER_CTX_free(ctx_);  // cleanses the key schedule
    ctx_ = nullptr;
    if (counted_) {
      g_live_aead--;
      Napi::MemoryManagement::AdjustExternalMemory(Env(), -kWeight);
    }
    counted_ = false;
  }

  // Arguments shared by seal/open: nonce (12 bytes), aad, input, out, at.
  struct Io {
    const uint8_t* nonce;
    const uint8_t* aad;
    size_t aad_len;
    const uint8_t* in;
    size_t in_len;
    uint8_t* out;
    size_t out_len;
  };

  bool Args(const Napi::CallbackInfo& info, Io* io, size_t extra) {
    Napi::Env env = info.Env();
    if (ctx_ == nullptr) { Fail(env, "AEAD freed"); return false; }
    if (info.Length() < 5 || !info[0].IsTypedArray() || !info[1].IsTypedArray() || !info[2].IsTypedArray() ||
        !info[3].IsTypedArray() || !info[4].IsNumber()) {
      Fail(env, "bad AEAD arguments");
      return false;
    }
    Napi::Uint8Array n = info[0].As<Napi::Uint8Array>();
    Napi::Uint8Array a = info[1].As<Napi::Uint8Array>();
    Napi::Uint8Array i = info[2].As<Napi::Uint8Array>();
    Napi::Uint8Array o = info[3].As<Napi::Uint8Array>();
    double at = info[4].As<Napi::Number>().DoubleValue();
    if (n.ByteLength() != 12) { Fail(env, "nonce must be 12 bytes"); return false; }
    // Bounds: the output (plus the tag when sealing) must fit at `at`.
    if (!(at >= 0) || at > static_cast<double>(o.ByteLength()) ||
        o.ByteLength() - static_cast<size_t>(at) < i.ByteLength() + extra ||
        i.ByteLength() > static_cast<size_t>(INT32_MAX) || a.ByteLength() > static_cast<size_t>(INT32_MAX)) {
      Fail(env, "AEAD output does not fit");
      return false;
    }
    static const uint8_t kEmpty[1] = {0};
    io->nonce = n.Data();
    io->aad = a.ByteLength() ? a.Data() : kEmpty;
    io->aad_len = a.ByteLength();
    io->in = i.ByteLength() ? i.Data() : kEmpty;
    io->in_len = i.ByteLength();
    io->out = o.ByteLength() ? o.Data() + static_cast<size_t>(at) : nullptr;
    io->out_len = o.ByteLength() - static_cast<size_t>(at);
    return true;
  }

  // Per message: the IV only; CCM also needs the plaintext length first (RFC 3610 §2.2).
  bool Begin(const Io& io) {
    int outl = 0;
    if (EVP_CipherInit_ex(ctx_, nullptr, nullptr, nullptr, io.nonce, -1) != 1) return false;
    if (ccm_ && EVP_CipherUpdate(ctx_, nullptr, &outl, nullptr, static_cast<int>(io.in_len)) != 1) return false;
    if (io.aad_len && EVP_CipherUpdate(ctx_, nullptr, &outl, io.aad, static_cast<int>(io.aad_len)) != 1) return false;
    return true;
  }

  // seal(nonce, aad, plaintext, out, at): ciphertext || tag into out at `at`.
  Napi::Value Seal(const Napi::CallbackInfo& info) {
    Io io;
    if (!encrypt_) { Fail(info.Env(), "AEAD is for opening"); return info.Env().Undefined(); }
    if (!Args(info, &io, static_cast<size_t>(tag_len_))) return info.Env().Undefined();
    uint8_t scratch[16];
    int outl = 0, finl = 0;
    bool ok = Begin(io);
    if (ok && (io.in_len || ccm_)) {
      ok = EVP_CipherUpdate(ctx_, io.in_len ? io.out : scratch, &outl, io.in, static_cast<int>(io.in_len)) == 1;
    }
    ok = ok && static_cast<size_t>(outl) <= io.in_len &&
         EVP_CipherFinal_ex(ctx_, io.out == nullptr ? scratch : io.out + outl, &finl) == 1 &&
         static_cast<size_t>(outl + finl) == io.in_len &&
         EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_GET_TAG, tag_len_, io.out + io.in_len) == 1;
    if (!ok) {
      ERR_clear_error();
      Fail(info.Env(), "AEAD seal failed");
      return info.Env().Undefined();
    }
    return info.Env().Undefined();
  }

  // open(nonce, aad, ciphertext, out, at, tag): true when the tag verifies;
  // on false the output bytes are zeroed (GCM writes them before the check).
  Napi::Value Open(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Io io;
    if (encrypt_) { Fail(env, "AEAD is for sealing"); return env.Undefined(); }
    if (!Args(info, &io, 0)) return env.Undefined();
    if (info.Length() < 6 || !info[5].IsTypedArray()) { Fail(env, "bad AEAD arguments"); return env.Undefined(); }
    Napi::Uint8Array t = info[5].As<Napi::Uint8Array>();
    if (t.ByteLength() != static_cast<size_t>(tag_len_)) return Napi::Boolean::New(env, false);
    uint8_t scratch[16];
    int outl = 0, finl = 0;
    bool ok;
    if (ccm_) {
      // The expected tag goes in before the length for CCM; the update is the verdict.
      ok = EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_SET_TAG, tag_len_, t.Data()) == 1 && Begin(io) &&
           EVP_DecryptUpdate(ctx_, io.in_len ? io.out : scratch, &outl, io.in, static_cast<int>(io.in_len)) == 1;
    } else {
      ok = Begin(io);
      if (ok && io.in_len) ok = EVP_DecryptUpdate(ctx_, io.out, &outl, io.in, static_cast<int>(io.in_len)) == 1;
      ok = ok && static_cast<size_t>(outl) <= io.in_len &&
           EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_SET_TAG, tag_len_, t.Data()) == 1 &&
           EVP_DecryptFinal_ex(ctx_, io.out == nullptr ? scratch : io.out + outl, &finl) == 1;
    }
    if (!ok) {
      ERR_clear_error();
      if (io.in_len) OPENSSL_cleanse(io.out, io.in_len);
    }
    return Napi::Boolean::New(env, ok);
  }

  // The bytes of a Uint8Array argument, with one Node-API call (the Napi:: wrappers make several per
  // array); false when it is not a Uint8Array.
  static bool Bytes(napi_env env, napi_value v, uint8_t** data, size_t* length) {
    napi_typedarray_type type;
    void* d = nullptr;
    if (napi_get_typedarray_info(env, v, &type, length, &d, nullptr, nullptr) != napi_ok || type != napi_uint8_array) {
      return false;
    }
    static uint8_t empty[1] = {0};
    *data = d != nullptr ? static_cast<uint8_t*>(d) : empty;
    return true;
  }

  // A sequence number's half: an integer 0..2^32-1.
  static bool Half(napi_env env, napi_value v, uint32_t* out) {
    double d;
    if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0 && d <= 4294967295.0) || d != static_cast<double>(static_cast<uint32_t>(d))) {
      return false;
    }
    *out = static_cast<uint32_t>(d);
    return true;
  }

  // The arguments sealAt and openAt share: (hi, lo, message, headerLength, other). The nonce is the
  // IV XOR the 64-bit sequence number hi:lo, big-endian, left-padded to 12 bytes (RFC 8446 §5.3).
  struct AtArgs {
    uint8_t nonce[12];
    uint8_t* msg;
    size_t msg_len;
    size_t header_len;
    uint8_t* other;
    size_t other_len;
    bool has_other;
  };

  bool ParseAt(const Napi::CallbackInfo& info, AtArgs* a, bool other_required) {
    napi_env env = info.Env();
    uint32_t hi = 0, lo = 0;
    uint32_t header = 0;
    if (ctx_ == nullptr) { Fail(info.Env(), "AEAD freed"); return false; }
    if (!has_iv_) { Fail(info.Env(), "AEAD made without an IV"); return false; }
    a->has_other = info.Length() > 4 && !info[4].IsUndefined();
    if (info.Length() < 4 || !Half(env, info[0], &hi) || !Half(env, info[1], &lo) || !Bytes(env, info[2], &a->msg, &a->msg_len) ||
        !Half(env, info[3], &header) || (other_required && !a->has_other) ||
        (a->has_other && !Bytes(env, info[4], &a->other, &a->other_len))) {
      Fail(info.Env(), "bad AEAD arguments");
      return false;
    }
    a->header_len = header;
    if (a->msg_len < a->header_len + static_cast<size_t>(tag_len_) || a->msg_len > static_cast<size_t>(INT32_MAX)) {
      Fail(info.Env(), "AEAD message does not fit");
      return false;
    }
    memcpy(a->nonce, iv_, sizeof(iv_));
    for (int i = 0; i < 4; i++) {
      a->nonce[4 + i] ^= static_cast<uint8_t>(hi >> (24 - 8 * i));
      a->nonce[8 + i] ^= static_cast<uint8_t>(lo >> (24 - 8 * i));
    }
    return true;
  }

  // sealAt(hi, lo, message, headerLength[, plaintext]): `message` is header || plaintext || tag, exactly;
  // the header is the AAD, the plaintext is encrypted where it stands (or copied there from `plaintext`
  // first), the tag fills the end. One Node-API call per array, no nonce or AAD arrays from JavaScript.
  Napi::Value SealAt(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    AtArgs a;
    if (!encrypt_) { Fail(env, "AEAD is for opening"); return env.Undefined(); }
    if (!ParseAt(info, &a, false)) return env.Undefined();
    size_t pt_len = a.msg_len - a.header_len - static_cast<size_t>(tag_len_);
    uint8_t* pt = a.msg + a.header_len;
    if (a.has_other) {
      if (a.other_len != pt_len) { Fail(env, "AEAD message does not fit"); return env.Undefined(); }
      if (pt_len) memmove(pt, a.other, pt_len);
    }
    Io io{a.nonce, a.msg, a.header_len, pt, pt_len, pt, pt_len + static_cast<size_t>(tag_len_)};
    uint8_t scratch[16];
    int outl = 0, finl = 0;
    bool ok = Begin(io);
    if (ok && (pt_len || ccm_)) ok = EVP_CipherUpdate(ctx_, pt_len ? pt : scratch, &outl, pt, static_cast<int>(pt_len)) == 1;
    ok = ok && static_cast<size_t>(outl) <= pt_len && EVP_CipherFinal_ex(ctx_, pt_len ? pt + outl : scratch, &finl) == 1 &&
         static_cast<size_t>(outl + finl) == pt_len && EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_GET_TAG, tag_len_, pt + pt_len) == 1;
    if (!ok) {
      ERR_clear_error();
      OPENSSL_cleanse(pt, pt_len);
      Fail(env, "AEAD seal failed");
    }
    return env.Undefined();
  }

  // openAt(hi, lo, message, headerLength, out): `message` is header || ciphertext || tag; the plaintext
  // goes to the start of `out`. True when the tag verifies; on false those bytes of `out` are zeroed.
  Napi::Value OpenAt(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    AtArgs a;
    if (encrypt_) { Fail(env, "AEAD is for sealing"); return env.Undefined(); }
    if (!ParseAt(info, &a, true)) return env.Undefined();
    size_t ct_len = a.msg_len - a.header_len - static_cast<size_t>(tag_len_);
    if (a.other_len < ct_len) { Fail(env, "AEAD output does not fit"); return env.Undefined(); }
    const uint8_t* ct = a.msg + a.header_len;
    uint8_t* tag = a.msg + a.header_len + ct_len;
    Io io{a.nonce, a.msg, a.header_len, ct, ct_len, a.other, a.other_len};
    uint8_t scratch[16];
    int outl = 0, finl = 0;
    bool ok;
    if (ccm_) {
      ok = EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_SET_TAG, tag_len_, tag) == 1 && Begin(io) &&
           EVP_DecryptUpdate(ctx_, ct_len ? a.other : scratch, &outl, ct, static_cast<int>(ct_len)) == 1;
    } else {
      ok = Begin(io);
      if (ok && ct_len) ok = EVP_DecryptUpdate(ctx_, a.other, &outl, ct, static_cast<int>(ct_len)) == 1;
      ok = ok && static_cast<size_t>(outl) <= ct_len && EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_SET_TAG, tag_len_, tag) == 1 &&
           EVP_DecryptFinal_ex(ctx_, ct_len ? a.other + outl : scratch, &finl) == 1;
    }
    if (!ok) {
      ERR_clear_error();
      if (ct_len) OPENSSL_cleanse(a.other, ct_len);
    }
    return Napi::Boolean::New(env, ok);
  }

  Napi::Value Free(const Napi::CallbackInfo& info) {
    Release();
    return info.Env().Undefined();
  }

  EVP_CIPHER_CTX* ctx_ = nullptr;
  bool encrypt_ = true;
  bool ccm_ = false;
  bool counted_ = false;
  int tag_len_ = 16;
  uint8_t iv_[12] = {};
  bool has_iv_ = false;
};

// ------------------------------------------------------------ module

Napi::Value OpenSslVersion(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("text", OpenSSL_version(OPENSSL_VERSION));
  o.Set("number", static_cast<double>(OpenSSL_version_num()));
  o.Set("headers", OPENSSL_VERSION_TEXT);
  return o;
}

Napi::Value LiveObjects(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("contexts", static_cast<double>(g_live_ctx.load()));
  o.Set("connections", static_cast<double>(g_live_conn.load()));
  o.Set("aeads", static_cast<double>(g_live_aead.load()));
  return o;
}

// CPU time of the calling thread in ns (CLOCK_THREAD_CPUTIME_ID): the
// benchmark counts work, not wall time, on a machine that may be busy.
Napi::Value ThreadCpuNs(const Napi::CallbackInfo& info) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return Napi::Number::New(info.Env(), static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec));
}

// glibc's malloc figures (mallinfo2), for measuring what a process keeps
// outside V8's heap: OpenSSL objects, buffers and malloc memory freed but kept.
// Empty object where the C library is not glibc.
Napi::Value MallocInfo(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  struct mallinfo2 m = mallinfo2();
  o.Set("arena", static_cast<double>(m.arena));        // sbrk'd bytes of the main arena + mmapped arenas
  o.Set("mmapped", static_cast<double>(m.hblkhd));     // bytes of chunks served by their own mmap
  o.Set("inUse", static_cast<double>(m.uordblks));     // allocated bytes
  o.Set("free", static_cast<double>(m.fordblks));      // free bytes kept in the arenas
  o.Set("releasable", static_cast<double>(m.keepcost));  // free bytes at the top of the main heap
#endif
  return o;
}

// malloc_trim(0): gives free malloc pages back to the system (every arena,
// not only the top of the heap). Returns whether anything was released.
Napi::Value MallocTrim(const Napi::CallbackInfo& info) {
#if defined(__GLIBC__)
  return Napi::Boolean::New(info.Env(), malloc_trim(0) != 0);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  if (g_ctx_index < 0) g_ctx_index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  if (g_ssl_index < 0) g_ssl_index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  if (g_dgram_method == nullptr) {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "atls datagram queue");
    BIO_meth_set_write(m, DqWrite);
    BIO_meth_set_read(m, DqRead);
    BIO_meth_set_ctrl(m, DqCtrl);
    BIO_meth_set_create(m, DqCreate);
    BIO_meth_set_destroy(m, DqDestroy);
    g_dgram_method = m;
  }
  exports.Set("Context", Context::Init(env));
  exports.Set("Connection", Connection::Init(env));
  exports.Set("Aead", Aead::Init(env));
  exports.Set("opensslVersion", Napi::Function::New(env, OpenSslVersion));
  exports.Set("liveObjects", Napi::Function::New(env, LiveObjects));
  exports.Set("threadCpuNs", Napi::Function::New(env, ThreadCpuNs));
  exports.Set("mallocInfo", Napi::Function::New(env, MallocInfo));
  exports.Set("mallocTrim", Napi::Function::New(env, MallocTrim));
  return exports;
}

}  // namespace

NODE_API_MODULE(atls_openssl, InitModule)
