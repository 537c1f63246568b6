/* One origin as every native framing reaches it: scheme://host:port with its TLS settings and
 * its proxy (one origin per distinct combination), the address connections dial (the origin's,
 * or the proxy's), the TLS context with its session cache, and why calls to it fail at once
 * when it cannot be used. The framings embed a pd_origin_t first in their own origin, which
 * adds their pools and queues. */
#ifndef PD_ORIGIN_H
#define PD_ORIGIN_H

#include "base/list.h"
#include "upstream/proxy.h"
#include "upstream/tls.h"
#include "upstream/upstream_int.h"

typedef struct pd_origin {
  pd_origin_addr_t a; /* a.authority is the key (and the Host header / :authority) */
  /* Through a proxy: its URL (part of the key) and address; dial is where connections go
   * (&pa through a proxy, else &a). */
  char *proxy;
  char *proxy_auth; /* "Proxy-Authorization: Basic ...\r\n" from the proxy URL's credentials */
  pd_origin_addr_t pa;
  pd_origin_addr_t *dial;
  /* https://: the TLS settings (part of the key) and the context built from them; NULL for
   * http://. tls_opts keeps the settings themselves (strings owned), for handing a call over
   * to another framing. */
  char *tls_key;
  pd_tls_ctx_t *tls;
  pd_xfer_opts_t tls_opts;
  char bad[160]; /* why calls to it fail at once (a TLS file unreadable, a bad proxy); "" */
  /* The framing's transfers waiting for a connection (or a stream), oldest first: each links
   * in with a pd_list_t of its own (pd_list_init'ed when it is made). */
  pd_list_t waiters;
  /* Resolving dial's host: one lookup at a time (pd_origin_resolve), its outcome to resolved. */
  uv_getaddrinfo_t gai;
  int resolving;
  void (*resolved)(struct pd_origin *o, int status);
} pd_origin_t;

/* Looks dial's host up unless a lookup is under way already; done(o, status) runs from the
 * loop with dial's addresses set (status 0) or a libuv error, also when the lookup was
 * cancelled (uv_cancel on &o->gai while closing). Returns 0, or a libuv error (done will not
 * run). */
int pd_origin_resolve(pd_origin_t *o, uv_loop_t *loop, void (*done)(pd_origin_t *o, int status));

/* The waiter queue: a transfer's link joins at the tail, or at the head (a transfer that had
 * its turn already and found no room); the oldest waiter's link, or NULL; leaving it is
 * pd_list_remove (a no-op for a transfer not waiting) and pd_list_linked tells whether it
 * waits. */
static inline void pd_origin_wait(pd_origin_t *o, pd_list_t *link, int front) {
  if (front)
    pd_list_insert_head(&o->waiters, link);
  else
    pd_list_insert_tail(&o->waiters, link);
}

static inline pd_list_t *pd_origin_next_waiter(const pd_origin_t *o) {
  return pd_list_first(&o->waiters);
}

/* The proxy a call to auth takes (see pd_proxy_pick), for pd_origin_is and pd_origin_init. */
const char *pd_origin_proxy_for(const pd_proxy_env_t *env, const pd_xfer_opts_t *op, int tls,
                                const char *auth, size_t alen);
/* o is the origin for auth with these TLS settings (tls_key, NULL for http://) and proxy. */
int pd_origin_is(const pd_origin_t *o, const char *auth, size_t alen, const char *tls_key,
                 const char *proxy);
/* Sets o up (o zeroed by the caller); alpn_h2: TLS offers h2 by ALPN. A TLS context or proxy
 * that cannot be built is no failure here: o->bad says why, and the framing fails its calls.
 * Returns 0, or -1 (out of memory, an authority that does not parse) with nothing to free. */
int pd_origin_init(pd_origin_t *o, const char *auth, size_t alen, const char *tls_key,
                   const char *proxy, const pd_xfer_opts_t *op, int alpn_h2);
void pd_origin_free(pd_origin_t *o);

#endif
