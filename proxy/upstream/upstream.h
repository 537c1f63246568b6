/* Upstream HTTP(S) client on the worker's libuv loop: native HTTP/1.1 (h1.c) and HTTP/2 (h2.c)
 * clients for http:// and https:// (TLS: tls.c, proxies: proxy.c), libcurl (curl.c) when
 * PONDER_UPSTREAM_CLIENT=curl, behind one interface. Connection reuse, a connect timeout per
 * attempt and a total timeout per call (its retries and their backoff included), bodies streamed as
 * they arrive, pause and resume for backpressure, cancellation at any point, and retries (connect
 * errors, 429, 5xx) while nothing of the call has been delivered. Transport failures are logged at
 * warn with the request id. */
#ifndef PD_UPSTREAM_H
#define PD_UPSTREAM_H

#include <stddef.h>
#include <uv.h>

typedef struct pd_upstream pd_upstream_t;
typedef struct pd_xfer pd_xfer_t;

/* Outcome of a transfer, given to on_done. */
enum {
  PD_XFER_OK = 0,
  PD_XFER_ECONNECT = -1, /* could not connect / resolve */
  PD_XFER_ETIMEOUT = -2, /* connect, stall or total timeout */
  PD_XFER_ERECV = -3,    /* the connection broke mid-response */
  PD_XFER_EOTHER = -4
};

typedef struct pd_xfer_head {
  int status;
  const char *content_type; /* NULL when absent */
  long content_length;      /* -1 when absent */
  /* Response headers worth relaying (hop-by-hop and framing headers removed): name/value
   * pairs, names lower-case. Valid during on_head only. */
  const char *const *headers;
  size_t nheaders;
} pd_xfer_head_t;

typedef struct pd_xfer_cbs {
  /* The final attempt's status and headers, before any body byte. */
  void (*on_head)(void *ud, const pd_xfer_head_t *h);
  /* Body bytes as they arrive; the bytes are consumed. Return 0 to go on, 1 to pause the
   * transfer after this piece (resume with pd_xfer_resume), -1 to abort it. */
  int (*on_data)(void *ud, const char *p, size_t n);
  /* The transfer ended: result is PD_XFER_*; errmsg is a human-readable reason. The transfer
   * is freed right after this returns. */
  void (*on_done)(void *ud, int result, const char *errmsg);
} pd_xfer_cbs_t;

typedef struct pd_xfer_opts {
  const char *method;         /* "GET", "POST", ... */
  const char *url;            /* copied */
  const char *const *headers; /* NULL-terminated array of "Name: value" lines; copied */
  char *body;                 /* taken: freed by the transfer; may be NULL */
  size_t body_len;
  long connect_timeout_ms; /* each attempt's connect */
  long timeout_ms;         /* the whole call, retries and backoff included; 0 = none */
  /* Each attempt fails as PD_XFER_ETIMEOUT when no byte of its response arrived for this long,
   * counted from the attempt's start (its connect included) and reset by every byte received;
   * time the caller holds the transfer paused does not count. 0 = none. */
  long stall_timeout_ms;
  int retries;
  /* HTTP/2: over http://, with prior knowledge (h2c); over https://, offered by ALPN (HTTP/1.1
   * when the server does not choose h2; 0 offers HTTP/1.1 only). Streams are multiplexed. */
  int http2;
  /* https:// only; strings are copied. NULL: the system's trust store, no client certificate,
   * the URL's host as SNI and as the name checked. */
  const char *tls_ca_file;
  const char *tls_cert_file, *tls_key_file;
  int tls_insecure; /* no certificate or host name check */
  const char *tls_server_name;
  /* An HTTP proxy URL (http://host:port) for this call; NULL: $https_proxy / $http_proxy and
   * $no_proxy decide, as curl reads them. */
  const char *proxy;
  /* The pool of the call's origin (native clients; libcurl as far as it allows): connections
   * open at once (0: the client's default), and when a connection takes no new call: after
   * max_conn_requests calls, or max_conn_age_ms after it was opened (0 = never). Calls that
   * differ in them keep pools of their own. */
  int max_connections;
  long max_conn_requests;
  long max_conn_age_ms;
} pd_xfer_opts_t;

pd_upstream_t *pd_upstream_new(uv_loop_t *loop, int max_host_connections);
/* Cancels every transfer (no callbacks) and closes the loop handles; on_closed runs after. */
void pd_upstream_close(pd_upstream_t *u, void (*on_closed)(void *ud), void *ud);
/* Frees the upstream after pd_upstream_close's on_closed ran. */
void pd_upstream_free(pd_upstream_t *u);

/* Starts a transfer. Callbacks never run inside this call. Returns NULL on failure. */
pd_xfer_t *pd_xfer_start(pd_upstream_t *u, const pd_xfer_opts_t *o, const pd_xfer_cbs_t *cbs,
                         void *ud);
void pd_xfer_pause(pd_xfer_t *x);
void pd_xfer_resume(pd_xfer_t *x);
/* Stops the transfer now; no callback runs after this call. Safe inside the callbacks. */
void pd_xfer_cancel(pd_xfer_t *x);
/* Seconds since the transfer (first attempt) started. */
double pd_xfer_elapsed(const pd_xfer_t *x);

#endif
