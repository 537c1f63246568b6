/* The origin every native framing shares (see origin.h): its key, its dialled address, its TLS
 * context and proxy, its address lookup, and each connection's lookup and connect with
 * address fallback (pd_origin_conn_*). Owns the strings and the context it builds. */
#include "upstream/origin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *pd_origin_proxy_for(const pd_proxy_env_t *env, const pd_xfer_opts_t *op, int tls,
                                const char *auth, size_t alen) {
  return pd_proxy_pick(env, op->proxy, tls, auth, alen);
}

static int slots_of(const pd_xfer_opts_t *op, const pd_origin_owner_t *own) {
  return op->max_connections > 0 ? op->max_connections : own ? own->max_conns : 0;
}

int pd_origin_is(const pd_origin_t *o, const char *auth, size_t alen, const char *tls_key,
                 const char *proxy, const pd_xfer_opts_t *op, const pd_origin_owner_t *own) {
  return o->a.alen == alen && memcmp(o->a.authority, auth, alen) == 0 &&
         (tls_key ? o->tls_key && strcmp(o->tls_key, tls_key) == 0 : !o->tls_key) &&
         (proxy ? o->proxy && strcmp(o->proxy, proxy) == 0 : !o->proxy) &&
         o->max_conns == slots_of(op, own) &&
         o->max_requests == (op->max_conn_requests > 0 ? op->max_conn_requests : 0) &&
         o->max_age_ms == (uint64_t)(op->max_conn_age_ms > 0 ? op->max_conn_age_ms : 0);
}

pd_origin_t *pd_origin_get(pd_origin_owner_t *own, size_t size, size_t offset, const char *auth,
                           size_t alen, const char *tls_key, const pd_xfer_opts_t *op,
                           int alpn_h2) {
  pd_origin_t **list = &own->origins;
  const char *proxy = pd_origin_proxy_for(&own->proxy_env, op, tls_key != NULL, auth, alen);
  for (pd_origin_t *o = *list; o; o = o->next)
    if (pd_origin_is(o, auth, alen, tls_key, proxy, op, own))
      return o;
  char *mem = calloc(1, size);
  if (!mem)
    return NULL;
  pd_origin_t *o = (pd_origin_t *)(mem + offset);
  if (pd_origin_init(o, auth, alen, tls_key, proxy, op, alpn_h2) < 0) {
    free(mem);
    return NULL;
  }
  o->own = own;
  o->max_conns = slots_of(op, own);
  o->next = *list;
  *list = o;
  return o;
}

static char *dup_or_null(const char *s, int *bad) {
  if (!s)
    return NULL;
  char *d = strdup(s);
  if (!d)
    *bad = 1;
  return d;
}

int pd_origin_init(pd_origin_t *o, const char *auth, size_t alen, const char *tls_key,
                   const char *proxy, const pd_xfer_opts_t *op, int alpn_h2) {
  o->dial = &o->a;
  o->max_conns = slots_of(op, NULL);
  o->max_requests = op->max_conn_requests > 0 ? op->max_conn_requests : 0;
  o->max_age_ms = (uint64_t)(op->max_conn_age_ms > 0 ? op->max_conn_age_ms : 0);
  /* A call handed to another framing keeps the pool it was made for. */
  o->tls_opts.max_connections = op->max_connections;
  o->tls_opts.max_conn_requests = op->max_conn_requests;
  o->tls_opts.max_conn_age_ms = op->max_conn_age_ms;
  pd_list_init(&o->waiters);
  pd_list_init(&o->resolve_wait);
  if (pd_origin_addr_init(&o->a, auth, alen, tls_key ? "443" : "80") < 0)
    return -1;
  int oom = 0;
  if (proxy) {
    char pauth[300];
    o->proxy = dup_or_null(proxy, &oom);
    long n = pd_proxy_authority(proxy, pauth, sizeof pauth);
    if (n < 0 || pd_origin_addr_init(&o->pa, pauth, (size_t)n, "1080") < 0)
      snprintf(o->bad, sizeof o->bad, "unusable proxy URL (only http://host:port is supported)");
    else
      o->dial = &o->pa;
    o->proxy_auth = pd_proxy_auth_line(proxy);
  }
  if (tls_key) {
    o->tls_key = dup_or_null(tls_key, &oom);
    pd_xfer_opts_t *t = &o->tls_opts;
    t->tls_insecure = op->tls_insecure;
    t->tls_ca_file = dup_or_null(op->tls_ca_file, &oom);
    t->tls_cert_file = dup_or_null(op->tls_cert_file, &oom);
    t->tls_key_file = dup_or_null(op->tls_key_file, &oom);
    t->tls_server_name = dup_or_null(op->tls_server_name, &oom);
    t->proxy = o->proxy;
    char err[sizeof o->bad];
    o->tls = pd_tls_ctx_from_xfer(op, o->a.host, alpn_h2, err, sizeof err);
    if (!o->tls && !o->bad[0])
      memcpy(o->bad, err, sizeof o->bad);
  }
  if (oom) {
    pd_origin_free(o);
    return -1;
  }
  return 0;
}

static void on_origin_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  pd_origin_t *o = req->data;
  o->resolving = 0;
  status = pd_origin_addr_resolved(o->dial, status, res, uv_now(req->loop));
  o->resolved(o, status);
}

int pd_origin_resolve(pd_origin_t *o, uv_loop_t *loop, void (*done)(pd_origin_t *o, int status)) {
  if (o->resolving)
    return 0;
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  o->gai.data = o;
  o->resolved = done;
  int rc = uv_getaddrinfo(loop, &o->gai, on_origin_resolved, o->dial->host, o->dial->port, &hints);
  if (rc == 0)
    o->resolving = 1;
  return rc;
}

/* ---- a connection's lookup and connect ------------------------------------------------------ */

void pd_origin_conn_init(pd_origin_conn_t *k, uv_tcp_t *tcp, uv_connect_cb on_connect, void *data,
                         uv_timer_t *timer, uv_timer_cb on_timer, uint64_t now) {
  k->req.data = data;
  k->tcp = tcp;
  k->on_connect = on_connect;
  k->timer = timer;
  k->on_timer = on_timer;
  pd_list_init(&k->rlink);
  k->idx = 0;
  k->resolving = 0;
  k->err = 0;
  k->start = now;
  k->calls = 0;
}

/* The framing's timer reports err: no callback of the framing runs inside the call. */
static void conn_defer(pd_origin_conn_t *k, int err) {
  k->err = err;
  uv_timer_start(k->timer, k->on_timer, 0, 0);
}

void pd_origin_conn_to(pd_origin_t *o, pd_origin_conn_t *k, int idx) {
  k->idx = idx;
  k->resolving = 0;
  int rc =
      uv_tcp_connect(&k->req, k->tcp, (const struct sockaddr *)&o->dial->addrs[idx], k->on_connect);
  if (rc < 0)
    conn_defer(k, rc);
}

/* The owner's lookup callback: while its backend closes the lookup only counts as closed. */
static void owner_resolved(pd_origin_t *o, int status) {
  if (o->own && o->own->closing) {
    pd_origin_owner_part_closed(o->own);
    return;
  }
  pd_origin_conn_resolved(o, status);
}

void pd_origin_conn_start(pd_origin_t *o, pd_origin_conn_t *k, uv_loop_t *loop,
                          void (*resolved)(pd_origin_t *o, int status)) {
  if (!resolved)
    resolved = owner_resolved;
  if (pd_origin_addr_fresh(o->dial, uv_now(loop))) {
    pd_origin_conn_to(o, k, 0);
    return;
  }
  k->resolving = 1;
  pd_list_insert_tail(&o->resolve_wait, &k->rlink);
  int rc = pd_origin_resolve(o, loop, resolved);
  if (rc < 0) {
    pd_origin_conn_leave(k);
    conn_defer(k, rc);
  }
}

void pd_origin_conn_resolved(pd_origin_t *o, int status) {
  pd_list_t *l;
  while ((l = pd_list_first(&o->resolve_wait))) {
    pd_origin_conn_t *k = pd_list_entry(l, pd_origin_conn_t, rlink);
    pd_origin_conn_leave(k);
    if (status == 0)
      pd_origin_conn_to(o, k, 0);
    else
      conn_defer(k, status); /* still resolving: the failure is the lookup's */
  }
}

void pd_origin_conn_msg(const pd_origin_t *o, int resolving, int status, char *msg, size_t n) {
  if (resolving)
    snprintf(msg, n, "Could not resolve %s: %s (%s)", o->proxy ? "proxy" : "host", o->dial->host,
             uv_strerror(status));
  else
    snprintf(msg, n, "Failed to connect to %s%s port %s: %s", o->proxy ? "proxy " : "",
             o->dial->host, o->dial->port, uv_strerror(status));
}

void pd_origin_free(pd_origin_t *o) {
  pd_origin_addr_free(&o->a);
  if (o->dial == &o->pa)
    pd_origin_addr_free(&o->pa);
  free(o->proxy);
  free(o->proxy_auth);
  free(o->tls_key);
  pd_tls_ctx_free(o->tls);
  free((char *)o->tls_opts.tls_ca_file);
  free((char *)o->tls_opts.tls_cert_file);
  free((char *)o->tls_opts.tls_key_file);
  free((char *)o->tls_opts.tls_server_name);
  memset(o, 0, sizeof *o);
}

/* ---- the backend's shared core ------------------------------------------------------------ */

int pd_origin_owner_init(pd_origin_owner_t *w, uv_loop_t *loop, int max_conns) {
  w->loop = loop;
  pd_list_init(&w->conns);
  pd_list_init(&w->xfers);
  w->max_conns = max_conns > 0 ? max_conns : 0;
  int rc = uv_timer_init(loop, &w->close_timer);
  if (rc < 0)
    return rc;
  w->close_timer.data = w;
  pd_proxy_env_load(&w->proxy_env);
  return 0;
}

void pd_origin_owner_part_closed(pd_origin_owner_t *w) {
  if (w->closing && --w->pending_closes == 0 && w->on_closed)
    w->on_closed(w->on_closed_ud);
}

static void on_close_timer_closed(uv_handle_t *h) {
  pd_origin_owner_part_closed(h->data);
}

void pd_origin_owner_close(pd_origin_owner_t *w, void (*on_closed)(void *), void *ud) {
  w->closing = 1;
  w->on_closed = on_closed;
  w->on_closed_ud = ud;
  w->pending_closes = 1; /* the close timer */
}

void pd_origin_owner_close_rest(pd_origin_owner_t *w) {
  for (pd_origin_t *o = w->origins; o; o = o->next)
    if (o->resolving) {
      w->pending_closes++;
      uv_cancel((uv_req_t *)&o->gai);
    }
  uv_close((uv_handle_t *)&w->close_timer, on_close_timer_closed);
}

void pd_origin_owner_free(pd_origin_owner_t *w, size_t offset) {
  while (w->origins) {
    pd_origin_t *o = w->origins;
    w->origins = o->next;
    pd_origin_free(o);
    free((char *)o - offset);
  }
  pd_proxy_env_free(&w->proxy_env);
}

/* ---- an origin's (or a proxy's) address: the authority parsed, resolved, cached ------- */

int pd_origin_addr_init(pd_origin_addr_t *a, const char *auth, size_t alen,
                        const char *default_port) {
  memset(a, 0, sizeof *a);
  a->authority = strndup(auth, alen);
  a->alen = alen;
  const char *hs = auth, *he, *ps = NULL;
  if (*auth == '[') {
    hs = auth + 1;
    he = memchr(hs, ']', alen - 1);
    if (!he)
      goto fail;
    if (he + 1 < auth + alen) {
      if (he[1] != ':')
        goto fail;
      ps = he + 2;
    }
  } else {
    he = auth + alen;
    for (const char *p = auth; p < auth + alen; p++)
      if (*p == ':') {
        he = p;
        ps = p + 1;
      }
  }
  size_t plen = ps ? (size_t)(auth + alen - ps) : 0;
  if (!a->authority || he == hs || plen >= sizeof a->port)
    goto fail;
  a->host = strndup(hs, (size_t)(he - hs));
  if (!a->host)
    goto fail;
  if (ps && plen > 0) {
    memcpy(a->port, ps, plen);
    a->port[plen] = '\0';
  } else {
    snprintf(a->port, sizeof a->port, "%s", default_port);
  }
  char *end;
  long port = strtol(a->port, &end, 10);
  if (*end || port <= 0 || port > 65535)
    goto fail;
  struct sockaddr_in6 a6;
  struct sockaddr_in a4;
  if (uv_ip4_addr(a->host, (int)port, &a4) == 0) {
    memcpy(&a->addrs[0], &a4, sizeof a4);
    a->naddrs = 1;
    a->literal = 1;
  } else if (uv_ip6_addr(a->host, (int)port, &a6) == 0) {
    memcpy(&a->addrs[0], &a6, sizeof a6);
    a->naddrs = 1;
    a->literal = 1;
  }
  return 0;
fail:
  pd_origin_addr_free(a);
  return -1;
}

void pd_origin_addr_free(pd_origin_addr_t *a) {
  free(a->authority);
  free(a->host);
  a->authority = a->host = NULL;
}

int pd_origin_addr_fresh(const pd_origin_addr_t *a, uint64_t now) {
  return a->literal || (a->naddrs > 0 && now - a->resolved_at < PD_ORIGIN_RESOLVE_TTL_MS);
}

int pd_origin_addr_resolved(pd_origin_addr_t *a, int status, struct addrinfo *res, uint64_t now) {
  if (status == 0) {
    a->naddrs = 0;
    for (struct addrinfo *ai = res; ai && a->naddrs < PD_ORIGIN_MAX_ADDRS; ai = ai->ai_next)
      if ((ai->ai_family == AF_INET || ai->ai_family == AF_INET6) &&
          ai->ai_addrlen <= sizeof a->addrs[0])
        memcpy(&a->addrs[a->naddrs++], ai->ai_addr, ai->ai_addrlen);
    a->resolved_at = now;
    if (a->naddrs == 0)
      status = UV_EAI_NONAME;
  }
  uv_freeaddrinfo(res);
  return status;
}
