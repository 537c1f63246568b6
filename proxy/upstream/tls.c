/* TLS under the native upstream clients: libssl over memory BIOs (see tls.h). Owns the SSL_CTX
 * of each origin, its one cached session, and each connection's SSL object and BIO pair. */
#include "upstream/tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pd_tls_ctx {
  SSL_CTX *ssl;
  SSL_SESSION *sess; /* the latest resumable session the server gave; NULL when none */
  char *name;        /* SNI and the name checked */
  int name_is_ip;
  int verify;
};

struct pd_tls {
  pd_tls_ctx_t *ctx;
  SSL *ssl;
  BIO *rbio; /* network -> libssl */
  BIO *wbio; /* libssl -> network */
};

/* A new session ticket: it replaces the cached one (servers rotate them; the latest is the one
 * most likely still accepted). The cache keeps a copy: the session given is the connection's
 * own, and libssl marks that one not resumable when the connection ends without a close_notify
 * (a server that just closes its socket after the response). */
static int on_new_session(SSL *ssl, SSL_SESSION *sess) {
  pd_tls_ctx_t *ctx = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
  SSL_SESSION *copy = ctx ? SSL_SESSION_dup(sess) : NULL;
  if (!copy)
    return 0;
  if (ctx->sess)
    SSL_SESSION_free(ctx->sess);
  ctx->sess = copy;
  return 0; /* sess stays the connection's */
}

static void openssl_reason(char *err, size_t n, const char *what) {
  unsigned long e = ERR_peek_last_error();
  const char *r = e ? ERR_reason_error_string(e) : NULL;
  snprintf(err, n, "%s%s%s", what, r ? ": " : "", r ? r : "");
  ERR_clear_error();
}

pd_tls_ctx_t *pd_tls_ctx_new(const pd_tls_opts_t *o, char *err, size_t errlen) {
  pd_tls_ctx_t *ctx = calloc(1, sizeof *ctx);
  if (!ctx) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  const char *name = o->server_name && *o->server_name ? o->server_name : o->host;
  ctx->name = strdup(name ? name : "");
  unsigned char ip[16];
  ctx->name_is_ip = inet_pton(AF_INET, ctx->name ? ctx->name : "", ip) == 1 ||
                    inet_pton(AF_INET6, ctx->name ? ctx->name : "", ip) == 1;
  ctx->verify = o->verify;
  ctx->ssl = SSL_CTX_new(TLS_client_method());
  if (!ctx->name || !ctx->ssl) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  SSL_CTX_set_min_proto_version(ctx->ssl, TLS1_2_VERSION);
  SSL_CTX_set_app_data(ctx->ssl, ctx);
  /* Client-side caching through the callback only: the one session lives in ctx->sess. */
  SSL_CTX_set_session_cache_mode(ctx->ssl,
                                 SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx->ssl, on_new_session);
  if (o->verify) {
    int ok = o->ca_file ? SSL_CTX_load_verify_locations(ctx->ssl, o->ca_file, NULL)
                        : SSL_CTX_set_default_verify_paths(ctx->ssl);
    if (ok != 1) {
      char what[200];
      snprintf(what, sizeof what, "could not load the CA file %s", o->ca_file ? o->ca_file : "");
      openssl_reason(err, errlen, o->ca_file ? what : "could not load the system trust store");
      goto fail;
    }
    SSL_CTX_set_verify(ctx->ssl, SSL_VERIFY_PEER, NULL);
  } else {
    SSL_CTX_set_verify(ctx->ssl, SSL_VERIFY_NONE, NULL);
  }
  if (o->cert_file || o->key_file) {
    char what[200];
    if (!o->cert_file || !o->key_file) {
      snprintf(err, errlen, "tls.cert_file and tls.key_file go together");
      goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx->ssl, o->cert_file) != 1) {
      snprintf(what, sizeof what, "could not load the client certificate %s", o->cert_file);
      openssl_reason(err, errlen, what);
      goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx->ssl, o->key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx->ssl) != 1) {
      snprintf(what, sizeof what, "could not load the client key %s", o->key_file);
      openssl_reason(err, errlen, what);
      goto fail;
    }
  }
  static const unsigned char alpn_h2[] = "\x02h2\x08http/1.1";
  static const unsigned char alpn_h1[] = "\x08http/1.1";
  if (o->h2)
    SSL_CTX_set_alpn_protos(ctx->ssl, alpn_h2, sizeof alpn_h2 - 1);
  else
    SSL_CTX_set_alpn_protos(ctx->ssl, alpn_h1, sizeof alpn_h1 - 1);
  return ctx;
fail:
  pd_tls_ctx_free(ctx);
  return NULL;
}

void pd_tls_ctx_free(pd_tls_ctx_t *ctx) {
  if (!ctx)
    return;
  if (ctx->sess)
    SSL_SESSION_free(ctx->sess);
  SSL_CTX_free(ctx->ssl);
  free(ctx->name);
  free(ctx);
}

pd_tls_t *pd_tls_new(pd_tls_ctx_t *ctx) {
  pd_tls_t *t = calloc(1, sizeof *t);
  if (!t)
    return NULL;
  t->ctx = ctx;
  t->ssl = SSL_new(ctx->ssl);
  t->rbio = BIO_new(BIO_s_mem());
  t->wbio = BIO_new(BIO_s_mem());
  if (!t->ssl || !t->rbio || !t->wbio) {
    BIO_free(t->rbio);
    BIO_free(t->wbio);
    SSL_free(t->ssl);
    free(t);
    return NULL;
  }
  /* An empty memory BIO means "more to come", not the end. */
  BIO_set_mem_eof_return(t->rbio, -1);
  BIO_set_mem_eof_return(t->wbio, -1);
  SSL_set_bio(t->ssl, t->rbio, t->wbio);
  SSL_set_connect_state(t->ssl);
  if (!ctx->name_is_ip && ctx->name[0])
    SSL_set_tlsext_host_name(t->ssl, ctx->name);
  if (ctx->verify) {
    X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);
    X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (ctx->name_is_ip)
      X509_VERIFY_PARAM_set1_ip_asc(vp, ctx->name);
    else
      X509_VERIFY_PARAM_set1_host(vp, ctx->name, 0);
  }
  if (ctx->sess)
    SSL_set_session(t->ssl, ctx->sess);
  return t;
}

void pd_tls_free(pd_tls_t *t) {
  if (!t)
    return;
  SSL_free(t->ssl); /* frees both BIOs */
  free(t);
}

int pd_tls_feed(pd_tls_t *t, const char *p, size_t n) {
  while (n > 0) {
    int k = BIO_write(t->rbio, p, n > 1 << 30 ? 1 << 30 : (int)n);
    if (k <= 0)
      return -1;
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

/* What a failed certificate check means, in the words an operator searches for. */
static const char *verify_cause(long v) {
  switch (v) {
  case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
  case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
  case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
  case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
  case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
  case X509_V_ERR_CERT_UNTRUSTED:
    return "unknown CA";
  case X509_V_ERR_HOSTNAME_MISMATCH:
  case X509_V_ERR_IP_ADDRESS_MISMATCH:
    return "name mismatch";
  case X509_V_ERR_CERT_HAS_EXPIRED:
    return "expired certificate";
  case X509_V_ERR_CERT_NOT_YET_VALID:
    return "certificate not yet valid";
  default:
    return "certificate rejected";
  }
}

static void describe_failure(pd_tls_t *t, const char *stage, char *err, size_t n) {
  long v = SSL_get_verify_result(t->ssl);
  if (t->ctx->verify && v != X509_V_OK) {
    snprintf(err, n, "TLS %s failed: %s (%s, checked against %s)", stage, verify_cause(v),
             X509_verify_cert_error_string(v), t->ctx->name);
    ERR_clear_error();
    return;
  }
  char what[64];
  snprintf(what, sizeof what, "TLS %s failed", stage);
  openssl_reason(err, n, what);
}

int pd_tls_handshake(pd_tls_t *t, char *err, size_t errlen) {
  int rc = SSL_do_handshake(t->ssl);
  if (rc == 1)
    return 1;
  int e = SSL_get_error(t->ssl, rc);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
    return 0;
  int no_alpn = ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL;
  describe_failure(t, "handshake", err, errlen);
  return no_alpn ? -2 : -1;
}

int pd_tls_alpn_h2(const pd_tls_t *t) {
  const unsigned char *p;
  unsigned int n;
  SSL_get0_alpn_selected(t->ssl, &p, &n);
  return n == 2 && memcmp(p, "h2", 2) == 0 ? 2 : 1;
}

ssize_t pd_tls_read(pd_tls_t *t, char *buf, size_t cap, char *err, size_t errlen) {
  /* Nothing fed and nothing decrypted left: SSL_read would only fail with WANT_READ, at the
   * price of its error path on every read that ends a response. */
  if (BIO_ctrl_pending(t->rbio) == 0 && SSL_pending(t->ssl) == 0)
    return PD_TLS_AGAIN;
  int k = SSL_read(t->ssl, buf, cap > 1 << 30 ? 1 << 30 : (int)cap);
  if (k > 0)
    return k;
  switch (SSL_get_error(t->ssl, k)) {
  case SSL_ERROR_WANT_READ:
  case SSL_ERROR_WANT_WRITE:
    return PD_TLS_AGAIN;
  case SSL_ERROR_ZERO_RETURN:
    return PD_TLS_EOF;
  default:
    describe_failure(t, "read", err, errlen);
    return PD_TLS_ERR;
  }
}

int pd_tls_write(pd_tls_t *t, const void *p, size_t n) {
  const char *s = p;
  while (n > 0) {
    int k = SSL_write(t->ssl, s, n > 1 << 30 ? 1 << 30 : (int)n);
    if (k <= 0) {
      ERR_clear_error();
      return -1;
    }
    s += k;
    n -= (size_t)k;
  }
  return 0;
}

size_t pd_tls_pending(const pd_tls_t *t) {
  return BIO_ctrl_pending(t->wbio);
}

size_t pd_tls_take(pd_tls_t *t, char *dst, size_t n) {
  int k = BIO_read(t->wbio, dst, n > 1 << 30 ? 1 << 30 : (int)n);
  return k > 0 ? (size_t)k : 0;
}

char *pd_tls_xfer_key(const pd_xfer_opts_t *o) {
  const char *f[4] = {o->tls_ca_file, o->tls_cert_file, o->tls_key_file, o->tls_server_name};
  size_t n = 4;
  for (int i = 0; i < 4; i++)
    n += (f[i] ? strlen(f[i]) : 0) + 2;
  char *k = malloc(n), *w = k;
  if (!k)
    return NULL;
  *w++ = o->tls_insecure ? '0' : '1';
  *w++ = o->http2 ? '2' : '1'; /* what ALPN offers */
  /* Unit separators between the fields; a field that is absent differs from an empty one. */
  for (int i = 0; i < 4; i++) {
    *w++ = '\x1f';
    if (f[i]) {
      *w++ = '=';
      size_t m = strlen(f[i]);
      memcpy(w, f[i], m);
      w += m;
    }
  }
  *w = '\0';
  return k;
}

pd_tls_ctx_t *pd_tls_ctx_from_xfer(const pd_xfer_opts_t *o, const char *host, int h2, char *err,
                                   size_t errlen) {
  pd_tls_opts_t t = {.ca_file = o->tls_ca_file,
                     .cert_file = o->tls_cert_file,
                     .key_file = o->tls_key_file,
                     .verify = !o->tls_insecure,
                     .server_name = o->tls_server_name,
                     .host = host,
                     .h2 = h2};
  return pd_tls_ctx_new(&t, err, errlen);
}

typedef struct tls_write {
  uv_write_t req;
  void (*done)(void *, int);
  void *arg;
  char data[];
} tls_write_t;

static void on_tls_written(uv_write_t *req, int status) {
  tls_write_t *w = req->data;
  void (*done)(void *, int) = w->done;
  void *arg = w->arg;
  free(w);
  if (done)
    done(arg, status);
}

int pd_tls_send(pd_tls_t *t, uv_stream_t *s, void (*done)(void *arg, int status), void *arg) {
  size_t n = pd_tls_pending(t);
  if (n == 0 && !done)
    return 0;
  tls_write_t *w = malloc(sizeof *w + n);
  if (!w)
    return UV_ENOMEM;
  w->done = done;
  w->arg = arg;
  w->req.data = w;
  n = pd_tls_take(t, w->data, n);
  uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
  int rc = uv_write(&w->req, s, &b, 1, on_tls_written);
  if (rc < 0)
    free(w);
  return rc;
}
