/* TLS for the native upstream clients: OpenSSL's libssl driven through memory BIOs, so the
 * sockets stay libuv's and no TLS call ever blocks or touches a file descriptor. A context
 * (pd_tls_ctx_t) holds one origin's settings (trust store or CA file, client certificate,
 * verification, the name sent as SNI and checked, the ALPN list) and its session cache: one
 * resumable session, replaced by every new ticket the server sends. A pd_tls_t is one
 * connection's TLS state: ciphertext read from the socket goes in with pd_tls_feed, plaintext
 * comes out of pd_tls_read; plaintext to send goes in with pd_tls_write and the ciphertext to
 * write to the socket comes out of pd_tls_take. Nothing here knows about HTTP. */
#ifndef PD_TLS_H
#define PD_TLS_H

#include <stddef.h>
#include <sys/types.h>

#include <uv.h>

#include "upstream/upstream.h"

typedef struct pd_tls_ctx pd_tls_ctx_t;
typedef struct pd_tls pd_tls_t;

typedef struct pd_tls_opts {
  const char *ca_file;   /* NULL: the system's trust store */
  const char *cert_file; /* client certificate (PEM), with key_file; NULL: none */
  const char *key_file;
  int verify;              /* check the certificate chain and the name */
  const char *server_name; /* SNI and the name checked; NULL: host */
  const char *host;        /* the URL's host (without brackets) */
  int h2;                  /* offer "h2" by ALPN (else "http/1.1") */
} pd_tls_opts_t;

/* Builds a context. Returns NULL with a message in err (the cause: a file that could not be
 * read, a key that does not match its certificate). The files are read now, once. */
pd_tls_ctx_t *pd_tls_ctx_new(const pd_tls_opts_t *o, char *err, size_t errlen);
void pd_tls_ctx_free(pd_tls_ctx_t *ctx);

/* Starts a client connection under ctx (offering the cached session, if any). NULL when out of
 * memory. */
pd_tls_t *pd_tls_new(pd_tls_ctx_t *ctx);
void pd_tls_free(pd_tls_t *t);

/* Ciphertext received from the socket. Returns 0, or -1 when out of memory. */
int pd_tls_feed(pd_tls_t *t, const char *p, size_t n);
/* Advances the handshake over what was fed: 1 done, 0 more bytes needed (send pd_tls_take's
 * bytes first), -1 failed with the cause in err (unknown CA, name mismatch, expired
 * certificate, the server's alert), -2 the server speaks none of the protocols offered by ALPN
 * (err says so too). */
int pd_tls_handshake(pd_tls_t *t, char *err, size_t errlen);
/* The protocol the server chose by ALPN: 2 for h2, 1 otherwise. */
int pd_tls_alpn_h2(const pd_tls_t *t);

enum { PD_TLS_AGAIN = 0, PD_TLS_EOF = -1, PD_TLS_ERR = -2 };
/* Decrypts what was fed: > 0 bytes written to buf, PD_TLS_AGAIN when more ciphertext is
 * needed, PD_TLS_EOF on the server's close_notify, PD_TLS_ERR on bad records (err says why). */
ssize_t pd_tls_read(pd_tls_t *t, char *buf, size_t cap, char *err, size_t errlen);
/* Encrypts plaintext for sending. Returns 0, or -1. */
int pd_tls_write(pd_tls_t *t, const void *p, size_t n);
/* Bytes of ciphertext waiting to be written to the socket. */
size_t pd_tls_pending(const pd_tls_t *t);
/* Moves up to n waiting ciphertext bytes to dst; returns how many. */
size_t pd_tls_take(pd_tls_t *t, char *dst, size_t n);

/* Writes every waiting ciphertext byte to s in one write of its own (the bytes are copied);
 * done(arg, status), when given, runs once that write ended (status < 0: it failed, or the
 * stream was closed first). Returns 0 or a libuv error (then done never runs). */
int pd_tls_send(pd_tls_t *t, uv_stream_t *s, void (*done)(void *arg, int status), void *arg);

/* For the native clients: the TLS settings of a transfer as one string (equal settings, equal
 * strings: the key that tells origins apart). Returns a malloc'd string, or NULL. */
char *pd_tls_xfer_key(const pd_xfer_opts_t *o);
/* pd_tls_ctx_new for a transfer's settings, host being its URL's host. */
pd_tls_ctx_t *pd_tls_ctx_from_xfer(const pd_xfer_opts_t *o, const char *host, int h2, char *err,
                                   size_t errlen);

#endif
