/* One origin as every native framing reaches it: scheme://host:port with its TLS settings and
 * its proxy (one origin per distinct combination), the address connections dial (the origin's,
 * or the proxy's), the TLS context with its session cache, and why calls to it fail at once
 * when it cannot be used. The framings embed a pd_origin_t first in their own origin, which
 * adds their pools and queues. */
#ifndef PD_ORIGIN_H
#define PD_ORIGIN_H

#include <stdlib.h>

#include "base/list.h"
#include "upstream/proxy.h"
#include "upstream/tls.h"
#include "upstream/upstream_int.h"

struct pd_origin;

/* What a framing's backend and its origins share (the backend embeds one; each origin points to
 * it): its origins, connections and transfers, the proxy environment, the connection slots an
 * origin gets when a call names none, and the backend's close: every connection and lookup
 * left reports once (pd_origin_owner_part_closed) and on_closed runs after the last, from the
 * loop. */
typedef struct pd_origin_owner {
  uv_loop_t *loop;
  struct pd_origin *origins; /* newest first (pd_origin_get) */
  pd_list_t conns;           /* every connection not yet freed (the framing's links) */
  pd_list_t xfers;           /* every live transfer (pd_xfer_base_t.blink) */
  pd_proxy_env_t proxy_env;  /* read once */
  int max_conns;             /* slots per origin when the call sets none; 0 = no limit */
  int closing;
  int pending_closes;
  void (*on_closed)(void *);
  void *on_closed_ud;
  uv_timer_t close_timer; /* only so that on_closed always runs from the loop */
} pd_origin_owner_t;

/* Sets w up on loop (max_conns: see above). Returns 0, or a libuv error. */
int pd_origin_owner_init(pd_origin_owner_t *w, uv_loop_t *loop, int max_conns);
/* The backend starts closing: on_closed(ud) runs once every part counted in pending_closes
 * (the close timer, and whatever the framing adds) has reported. */
void pd_origin_owner_close(pd_origin_owner_t *w, void (*on_closed)(void *), void *ud);
/* After the framing counted its connections: cancels the lookups under way and closes the
 * timer, each counted too. */
void pd_origin_owner_close_rest(pd_origin_owner_t *w);
/* One part of a closing backend is done. */
void pd_origin_owner_part_closed(pd_origin_owner_t *w);
/* Frees the origins (made by pd_origin_get with this offset) and the proxy environment. */
void pd_origin_owner_free(pd_origin_owner_t *w, size_t offset);

typedef struct pd_origin {
  struct pd_origin *next; /* the backend's origins, newest first (pd_origin_get) */
  pd_origin_owner_t *own;
  /* The pool's bounds, from the calls' options (part of the key: upstreams that differ in them
   * keep pools of their own): connections open or opening at once (0 = no limit), and when a
   * connection retires (takes no new call): after max_requests calls, or max_age_ms after its
   * connect started (0 = never). nconns counts the open or opening ones. */
  int max_conns;
  int nconns;
  long max_requests;
  uint64_t max_age_ms;
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
  /* The connections waiting for dial's addresses (pd_origin_conn_t.rlink), oldest first. */
  pd_list_t resolve_wait;
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

/* One connection's way to its origin, as both native framings dial it: the lookup when dial's
 * addresses are stale (one per origin, the connections waiting in resolve_wait), then the
 * connect to those addresses in order. A framing embeds one in each connection
 * (pd_origin_conn_init); a failure found inside a call or by the lookup is kept in err and
 * reported from the framing's timer, fired at 0 ms, never inside the call. Owns nothing. */
typedef struct pd_origin_conn {
  uv_connect_t req; /* req.data: the framing's connection */
  uv_tcp_t *tcp;
  uv_connect_cb on_connect; /* the framing's: status < 0 = try the next address, or fail */
  uv_timer_t *timer;        /* the framing's connection timer and its callback */
  uv_timer_cb on_timer;
  pd_list_t rlink; /* in the origin's resolve_wait while the lookup runs */
  int idx;         /* dial's address being tried */
  int resolving;   /* no address yet: a failure is the lookup's */
  int err;         /* a failure for the timer to report; 0 = none */
  uint64_t start;  /* loop ms: the connect timeout, and the connection's age, run from here */
  long calls;      /* calls it has taken (pd_origin_conn_take) */
} pd_origin_conn_t;

/* Sets k up for a connection whose socket is tcp (data: the framing's connection, for req). */
void pd_origin_conn_init(pd_origin_conn_t *k, uv_tcp_t *tcp, uv_connect_cb on_connect, void *data,
                         uv_timer_t *timer, uv_timer_cb on_timer, uint64_t now);
/* Starts k towards o: connects to dial's first address when they are fresh, else waits for
 * o's lookup (starting it; resolved is the pd_origin_resolve callback, which calls
 * pd_origin_conn_resolved; NULL: o's owner's, which reports to lookup_closed instead while the
 * backend closes). */
void pd_origin_conn_start(pd_origin_t *o, pd_origin_conn_t *k, uv_loop_t *loop,
                          void (*resolved)(pd_origin_t *o, int status));
/* Connects k to dial's address idx. */
void pd_origin_conn_to(pd_origin_t *o, pd_origin_conn_t *k, int idx);
/* o's lookup ended with status: each waiting connection connects to the first address, or
 * gets status as its failure. */
void pd_origin_conn_resolved(pd_origin_t *o, int status);
/* Takes k out of o's resolve_wait (a no-op when it does not wait). */
static inline void pd_origin_conn_leave(pd_origin_conn_t *k) {
  pd_list_remove(&k->rlink);
}
/* Whether a connection whose connect (not lookup) failed at address idx has another to try. */
static inline int pd_origin_conn_has_next(const pd_origin_t *o, int resolving, int idx) {
  return !resolving && idx + 1 < o->dial->naddrs;
}
/* The message for a failed lookup (resolving) or connect, with libuv's status, into msg. */
void pd_origin_conn_msg(const pd_origin_t *o, int resolving, int status, char *msg, size_t n);

/* Connection slots: whether o may open another connection. */
static inline int pd_origin_has_slot(const pd_origin_t *o) {
  return !o->max_conns || o->nconns < o->max_conns;
}
/* Whether connection k may take another call now (max_requests, max_age_ms; the clock is
 * read only when an age bound is set). */
static inline int pd_origin_conn_usable(const pd_origin_t *o, const pd_origin_conn_t *k,
                                        uv_loop_t *loop) {
  return (!o->max_requests || k->calls < o->max_requests) &&
         (!o->max_age_ms || uv_now(loop) - k->start < o->max_age_ms);
}
/* Connection k takes a call: counted against max_requests. */
static inline void pd_origin_conn_take(pd_origin_conn_t *k) {
  k->calls++;
}

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
/* o is the origin for auth with these TLS settings (tls_key, NULL for http://), proxy and the
 * pool bounds of op (own's slots when op sets none). */
int pd_origin_is(const pd_origin_t *o, const char *auth, size_t alen, const char *tls_key,
                 const char *proxy, const pd_xfer_opts_t *op, const pd_origin_owner_t *own);
/* The origin of a call to auth (TLS settings tls_key, NULL for http://; op's proxy and pool
 * bounds) among own's origins, else a new one: size bytes calloc'd (the framing's origin, its
 * pd_origin_t at offset), set up with pd_origin_init and linked at the head. Returns its
 * pd_origin_t, or NULL when out of memory. pd_origin_owner_free frees them. */
pd_origin_t *pd_origin_get(pd_origin_owner_t *own, size_t size, size_t offset, const char *auth,
                           size_t alen, const char *tls_key, const pd_xfer_opts_t *op, int alpn_h2);
/* For a framing's start (or adopt): the origin of a call to op->url, found or made as
 * pd_origin_get does (size, offset, alpn_h2 as there); *path is the URL's path. NULL while own
 * closes, for a URL that does not parse, for http:// when tls_only, or when out of memory.
 * Inline: every call starts with it, on the hot path. */
static inline pd_origin_t *pd_origin_of_call(pd_origin_owner_t *own, size_t size, size_t offset,
                                             const pd_xfer_opts_t *op, int alpn_h2, int tls_only,
                                             const char **path) {
  const char *auth;
  int tls;
  long alen = pd_url_split(op->url, &auth, path, &tls);
  if (own->closing || alen < 0 || (tls_only && !tls))
    return NULL;
  char *tls_key = tls ? pd_tls_xfer_key(op) : NULL;
  if (tls && !tls_key)
    return NULL;
  pd_origin_t *o = pd_origin_get(own, size, offset, auth, (size_t)alen, tls_key, op, alpn_h2);
  free(tls_key);
  return o;
}

/* Sets o up (o zeroed by the caller); alpn_h2: TLS offers h2 by ALPN. A TLS context or proxy
 * that cannot be built is no failure here: o->bad says why, and the framing fails its calls.
 * Returns 0, or -1 (out of memory, an authority that does not parse) with nothing to free. */
int pd_origin_init(pd_origin_t *o, const char *auth, size_t alen, const char *tls_key,
                   const char *proxy, const pd_xfer_opts_t *op, int alpn_h2);
void pd_origin_free(pd_origin_t *o);

#endif
