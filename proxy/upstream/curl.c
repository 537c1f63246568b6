/* The libcurl client: https:// upstreams (and every upstream under PONDER_UPSTREAM_CLIENT=curl),
 * on the worker's loop with curl's multi_socket pattern. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "upstream/upstream_int.h"

#define EASY_POOL_MAX 64

typedef struct cxfer cxfer_t;

typedef struct sock_ctx {
  uv_poll_t poll;
  curl_socket_t fd;
  pd_curlup_t *u;
  struct sock_ctx *prev, *next;
} sock_ctx_t;

struct pd_curlup {
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t timer;
  int in_api; /* inside a libcurl call that may run our callbacks */
  int closing;
  int pending_closes;
  void (*on_closed)(void *);
  void *on_closed_ud;
  cxfer_t *xfers;    /* live transfers */
  cxfer_t *deferred; /* cancelled or to add once libcurl returns */
  sock_ctx_t *socks;
  CURL *pool[EASY_POOL_MAX];
  int npool;
};

struct cxfer {
  pd_xfer_t base; /* first: the front casts */
  pd_curlup_t *u;
  CURL *easy;
  struct curl_slist *hdrs;
  char *url, *method, *body;
  char *ca_file, *cert_file, *key_file;
  int tls_insecure;
  int http1_only;             /* "http2: false": ALPN offers HTTP/1.1 only */
  char *proxy;                /* the `proxy` key; NULL: libcurl reads the environment */
  struct curl_slist *connect; /* tls.server_name: the URL names it, this maps it to the host */
  size_t body_len;
  long connect_timeout_ms, timeout_ms;
  long stall_ms;     /* stall_timeout_ms; 0 = none */
  long max_age_ms;   /* max_conn_age_ms; 0 = none (libcurl counts whole seconds) */
  uint64_t start_ms; /* loop ms: the call began */
  uint64_t deadline; /* loop ms: timeout_ms from start_ms, retries included; 0 = none */
  int retries, attempt;
  pd_xfer_cbs_t cbs;
  void *ud;
  int added;    /* in the multi */
  int want_add; /* to be added once libcurl returns */
  int cancelled;
  int deferred; /* on u->deferred */
  int in_cb;
  int head_done; /* on_head delivered */
  long rx_body;  /* body bytes delivered to on_data */
  int discard;   /* a retryable status: swallow this attempt's body */
  int paused;
  int fail_pending; /* libcurl refused the handle: report it from the loop */
  int out_of_time;  /* the planned retry would start after the deadline: report a timeout */
  int reader_abort; /* on_data asked to stop: the caller's decision, not an upstream failure */
  char errbuf[CURL_ERROR_SIZE];
  pd_xhead_t head;
  uv_timer_t retry_timer;
  int retry_timer_active, retry_timer_inited;
  /* The stall bound, ours rather than CURLOPT_LOW_SPEED_*: those count whole seconds and keep
   * counting while the transfer is paused. rx_ms (loop ms) is the attempt's last byte received,
   * else its start or the caller's resume; the callbacks only write it, and the timer, when it
   * fires, checks it and re-arms itself for what is left. */
  uv_timer_t stall_timer;
  int stall_timer_inited;
  uint64_t rx_ms;
  int open_handles; /* timers still to close before the memory goes */
  uint64_t start_ns;
  cxfer_t *prev, *next, *dnext;
};

static void check_multi_info(pd_curlup_t *u);
static void xfer_destroy(cxfer_t *x);
static void xfer_cancel(cxfer_t *x);
static void fail_later(cxfer_t *x);

/* ---- libuv <-> libcurl glue (curl's multi-uv pattern) -------------------------------------- */

static void run_deferred(pd_curlup_t *u) {
  while (u->deferred) {
    cxfer_t *x = u->deferred;
    u->deferred = x->dnext;
    x->deferred = 0;
    if (x->cancelled) {
      xfer_destroy(x);
    } else if (x->want_add) {
      x->want_add = 0;
      if (curl_multi_add_handle(u->multi, x->easy) == CURLM_OK)
        x->added = 1;
      else
        fail_later(x);
    }
  }
}

static void socket_action(pd_curlup_t *u, curl_socket_t fd, int flags) {
  int running;
  u->in_api++;
  curl_multi_socket_action(u->multi, fd, flags, &running);
  u->in_api--;
  if (u->in_api == 0) {
    check_multi_info(u);
    run_deferred(u);
  }
}

static void on_poll(uv_poll_t *h, int status, int events) {
  sock_ctx_t *s = h->data;
  int flags = 0;
  if (status < 0)
    flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE)
    flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE)
    flags |= CURL_CSELECT_OUT;
  socket_action(s->u, s->fd, flags);
}

static void on_timer(uv_timer_t *t) {
  socket_action(t->data, CURL_SOCKET_TIMEOUT, 0);
}

static void on_sock_closed(uv_handle_t *h) {
  sock_ctx_t *s = h->data;
  pd_curlup_t *u = s->u;
  free(s);
  if (u->closing && --u->pending_closes == 0 && u->on_closed)
    u->on_closed(u->on_closed_ud);
}

static void sock_close(sock_ctx_t *s) {
  pd_curlup_t *u = s->u;
  if (s->prev)
    s->prev->next = s->next;
  else
    u->socks = s->next;
  if (s->next)
    s->next->prev = s->prev;
  uv_poll_stop(&s->poll);
  if (u->closing)
    u->pending_closes++;
  uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static int on_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp) {
  (void)e;
  pd_curlup_t *u = userp;
  sock_ctx_t *s = socketp;
  if (what == CURL_POLL_REMOVE) {
    /* Tolerate a remove for a socket never announced. */
    if (s) {
      sock_close(s);
      curl_multi_assign(u->multi, fd, NULL);
    }
    return 0;
  }
  if (!s) {
    s = calloc(1, sizeof *s);
    if (!s)
      return -1;
    s->fd = fd;
    s->u = u;
    if (uv_poll_init_socket(u->loop, &s->poll, fd) < 0) {
      free(s);
      return -1;
    }
    s->poll.data = s;
    s->next = u->socks;
    if (u->socks)
      u->socks->prev = s;
    u->socks = s;
    curl_multi_assign(u->multi, fd, s);
  }
  int events = 0;
  if (what & CURL_POLL_IN)
    events |= UV_READABLE;
  if (what & CURL_POLL_OUT)
    events |= UV_WRITABLE;
  uv_poll_start(&s->poll, events, on_poll);
  return 0;
}

static int on_timer_change(CURLM *m, long timeout_ms, void *userp) {
  (void)m;
  pd_curlup_t *u = userp;
  if (timeout_ms < 0) {
    uv_timer_stop(&u->timer);
  } else {
    /* Never call libcurl from here. A 0 ms libuv timer already defers to the loop's next
     * timer phase (the poll phase then does not block), so libcurl runs outside this
     * callback without the 1 ms wait that curl's multi-uv example adds to every request. */
    uv_timer_start(&u->timer, on_timer, (uint64_t)timeout_ms, 0);
  }
  return 0;
}

pd_curlup_t *pd_curlup_new(uv_loop_t *loop, int max_host_connections) {
  static int global_init;
  if (!global_init) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    global_init = 1;
  }
  pd_curlup_t *u = calloc(1, sizeof *u);
  if (!u)
    return NULL;
  u->loop = loop;
  u->multi = curl_multi_init();
  if (!u->multi)
    goto fail_multi;
  if (uv_timer_init(loop, &u->timer) < 0)
    goto fail_timer;
  u->timer.data = u;
  curl_multi_setopt(u->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(u->multi, CURLMOPT_SOCKETDATA, u);
  curl_multi_setopt(u->multi, CURLMOPT_TIMERFUNCTION, on_timer_change);
  curl_multi_setopt(u->multi, CURLMOPT_TIMERDATA, u);
  if (max_host_connections > 0) {
    curl_multi_setopt(u->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)max_host_connections);
    curl_multi_setopt(u->multi, CURLMOPT_MAXCONNECTS, (long)max_host_connections);
  }
  return u;
fail_timer:
  curl_multi_cleanup(u->multi);
fail_multi:
  free(u);
  return NULL;
}

static void on_upstream_timer_closed(uv_handle_t *h) {
  pd_curlup_t *u = h->data;
  if (--u->pending_closes == 0 && u->on_closed)
    u->on_closed(u->on_closed_ud);
}

void pd_curlup_close(pd_curlup_t *u, void (*on_closed)(void *ud), void *ud) {
  u->closing = 1;
  u->on_closed = on_closed;
  u->on_closed_ud = ud;
  u->pending_closes = 1; /* the timer; sockets add themselves */
  while (u->xfers)
    xfer_cancel(u->xfers);
  run_deferred(u);
  curl_multi_cleanup(u->multi);
  u->multi = NULL;
  for (int i = 0; i < u->npool; i++)
    curl_easy_cleanup(u->pool[i]);
  u->npool = 0;
  while (u->socks)
    sock_close(u->socks);
  uv_close((uv_handle_t *)&u->timer, on_upstream_timer_closed);
}

void pd_curlup_free(pd_curlup_t *u) {
  free(u);
}

/* ---- transfers ----------------------------------------------------------------------------- */

static void deliver_head(cxfer_t *x) {
  if (x->head_done || x->cancelled)
    return;
  x->head_done = 1;
  x->in_cb++;
  pd_xhead_emit(&x->head, x->cbs.on_head, x->ud);
  x->in_cb--;
}

static size_t on_header_line(char *ptr, size_t size, size_t nmemb, void *userdata) {
  cxfer_t *x = userdata;
  size_t n = size * nmemb;
  if (x->cancelled)
    return 0;
  x->rx_ms = uv_now(x->u->loop);
  if (n >= 5 && strncmp(ptr, "HTTP/", 5) == 0) {
    /* A status line starts a new header block (after 100 Continue, say). */
    const char *sp = memchr(ptr, ' ', n);
    pd_xhead_reset(&x->head);
    x->head.status = sp ? atoi(sp + 1) : 0;
    return n;
  }
  size_t len = n;
  while (len > 0 && (ptr[len - 1] == '\r' || ptr[len - 1] == '\n'))
    len--;
  if (len == 0) {
    /* End of a header block. Only the origin's final head counts: an informational one, or a
     * proxy's answer to CONNECT (suppressed, but never trusted), is forgotten here so that
     * nothing of it leaks into the head that follows. libcurl records the origin's status as
     * CURLINFO_RESPONSE_CODE, a proxy's as CURLINFO_HTTP_CONNECTCODE. */
    long code = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    if (x->head.status < 200 || code != x->head.status) {
      pd_xhead_reset(&x->head);
      return n;
    }
    if (pd_xfer_retryable_status(x->head.status) && x->attempt < x->retries &&
        pd_xfer_retry_fits(x->deadline, uv_now(x->u->loop),
                           pd_xfer_status_delay(&x->head, x->attempt))) {
      x->discard = 1;
      return n;
    }
    deliver_head(x);
    return x->cancelled ? 0 : n;
  }
  const char *colon = memchr(ptr, ':', len);
  if (!colon)
    return n;
  size_t nlen = (size_t)(colon - ptr);
  const char *v = colon + 1;
  while (v < ptr + len && (*v == ' ' || *v == '\t'))
    v++;
  pd_xhead_add(&x->head, ptr, nlen, v, (size_t)(ptr + len - v));
  return n;
}

static size_t on_write_data(char *ptr, size_t size, size_t nmemb, void *userdata) {
  cxfer_t *x = userdata;
  size_t n = size * nmemb;
  if (x->cancelled)
    return 0;
  x->rx_ms = uv_now(x->u->loop);
  if (x->discard)
    return n;
  deliver_head(x);
  if (x->cancelled)
    return 0;
  if (x->paused) /* paused by the caller before this attempt: libcurl keeps the data */
    return CURL_WRITEFUNC_PAUSE;
  x->rx_body += (long)n;
  x->in_cb++;
  int rc = x->cbs.on_data ? x->cbs.on_data(x->ud, ptr, n) : 0;
  x->in_cb--;
  if (rc < 0)
    x->reader_abort = 1;
  if (x->cancelled || rc < 0)
    return 0;
  if (rc > 0 && !x->paused) {
    x->paused = 1;
    curl_easy_pause(x->easy, CURLPAUSE_RECV);
  }
  return n;
}

static CURL *easy_get(pd_curlup_t *u) {
  if (u->npool > 0)
    return u->pool[--u->npool];
  return curl_easy_init();
}

static void easy_put(pd_curlup_t *u, CURL *e) {
  if (!u->closing && u->npool < EASY_POOL_MAX) {
    curl_easy_reset(e);
    u->pool[u->npool++] = e;
  } else {
    curl_easy_cleanup(e);
  }
}

static void xfer_free(cxfer_t *x) {
  pd_xhead_free(&x->head);
  free(x->ca_file);
  free(x->cert_file);
  free(x->key_file);
  free(x->proxy);
  curl_slist_free_all(x->connect);
  free(x->url);
  free(x->method);
  free(x->body);
  free(x);
}

static void on_xfer_timer_closed(uv_handle_t *h) {
  cxfer_t *x = h->data;
  if (--x->open_handles == 0)
    xfer_free(x);
}

/* tls.server_name under libcurl, which takes SNI and the name it checks from the URL: the URL
 * names server_name, and CURLOPT_CONNECT_TO sends that name's connections to the URL's real
 * host and port. Returns 0, or -1 when out of memory. */
static int server_name_url(cxfer_t *x, const char *name) {
  const char *sep = strstr(x->url, "://");
  if (!sep || strncasecmp(x->url, "https", 5) != 0)
    return 0;
  const char *auth = sep + 3;
  size_t alen = strcspn(auth, "/?#");
  if (memchr(auth, '@', alen))
    return 0; /* credentials in the URL: left as they are */
  const char *hs = auth, *he, *port = NULL;
  if (*auth == '[') {
    he = memchr(auth, ']', alen);
    if (!he)
      return 0;
    he++;
  } else {
    he = memchr(auth, ':', alen);
    if (!he)
      he = auth + alen;
  }
  if (he < auth + alen && *he == ':')
    port = he + 1;
  size_t plen = port ? (size_t)(auth + alen - port) : 0;
  char *url = malloc(strlen(x->url) + strlen(name) + 8);
  char *map = malloc(strlen(name) + (size_t)(he - hs) + 2 * plen + 16);
  if (!url || !map) {
    free(url);
    free(map);
    return -1;
  }
  sprintf(url, "%.*s%s%s%.*s%s", (int)(auth - x->url), x->url, name, port ? ":" : "", (int)plen,
          port ? port : "", auth + alen);
  sprintf(map, "%s:%.*s:%.*s:%.*s", name, port ? (int)plen : 3, port ? port : "443", (int)(he - hs),
          hs, port ? (int)plen : 3, port ? port : "443");
  x->connect = curl_slist_append(NULL, map);
  free(map);
  if (!x->connect) {
    free(url);
    return -1;
  }
  free(x->url);
  x->url = url;
  return 0;
}

static void xfer_destroy(cxfer_t *x) {
  pd_curlup_t *u = x->u;
  if (x->added && u->multi)
    curl_multi_remove_handle(u->multi, x->easy);
  x->added = 0;
  if (x->easy)
    easy_put(u, x->easy);
  x->easy = NULL;
  curl_slist_free_all(x->hdrs);
  x->hdrs = NULL;
  if (x->prev)
    x->prev->next = x->next;
  else if (u->xfers == x)
    u->xfers = x->next;
  if (x->next)
    x->next->prev = x->prev;
  x->prev = x->next = NULL;
  x->open_handles = x->retry_timer_inited + x->stall_timer_inited;
  if (x->open_handles == 0) {
    xfer_free(x);
    return;
  }
  if (x->retry_timer_inited)
    uv_close((uv_handle_t *)&x->retry_timer, on_xfer_timer_closed);
  if (x->stall_timer_inited) {
    uv_timer_stop(&x->stall_timer);
    uv_close((uv_handle_t *)&x->stall_timer, on_xfer_timer_closed);
  }
}

/* The attempt about to start may take what is left of the call's time. Returns 0 when none is
 * left. */
static int set_attempt_timeout(cxfer_t *x) {
  if (!x->deadline)
    return 1;
  uint64_t now = uv_now(x->u->loop);
  if (now >= x->deadline)
    return 0;
  curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, (long)(x->deadline - now));
  return 1;
}

static int setup_easy(cxfer_t *x) {
  CURL *e = x->easy;
  curl_easy_setopt(e, CURLOPT_URL, x->url);
  curl_easy_setopt(e, CURLOPT_PRIVATE, x);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  /* The pool's bounds as far as libcurl has them: a connection's age (in whole seconds, at
   * least one); its slots are the multi handle's (the largest upstream's), and it has no bound
   * on the calls per connection. */
  if (x->max_age_ms > 0)
    curl_easy_setopt(e, CURLOPT_MAXLIFETIME_CONN, (long)((x->max_age_ms + 999) / 1000));
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write_data);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header_line);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, x->connect_timeout_ms);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 0L);
  set_attempt_timeout(x);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  /* Through an HTTP proxy ($https_proxy), the proxy's "200 Connection established" is not the
   * origin's response: it never reaches the header callback. */
  curl_easy_setopt(e, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
  if (x->ca_file)
    curl_easy_setopt(e, CURLOPT_CAINFO, x->ca_file);
  if (x->cert_file) {
    curl_easy_setopt(e, CURLOPT_SSLCERT, x->cert_file);
    curl_easy_setopt(e, CURLOPT_SSLKEY, x->key_file);
  }
  if (x->http1_only)
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  if (x->tls_insecure) {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (x->proxy)
    curl_easy_setopt(e, CURLOPT_PROXY, x->proxy);
  if (x->connect)
    curl_easy_setopt(e, CURLOPT_CONNECT_TO, x->connect);
  /* The same request line and framing as the native client (upstream_h1.c): a body, with any
   * method, goes with its Content-Length; POST, PUT and PATCH always carry one; nothing is
   * added to what the caller gave (no form Content-Type, no Accept: see pd_curlup_start). */
  int with_body = x->body || strcmp(x->method, "POST") == 0 || strcmp(x->method, "PUT") == 0 ||
                  strcmp(x->method, "PATCH") == 0;
  if (strcmp(x->method, "HEAD") == 0) {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else if (with_body) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body ? x->body : "");
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->body_len);
    if (strcmp(x->method, "POST") != 0)
      curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, x->method);
  } else if (strcmp(x->method, "GET") == 0) {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, x->method);
  }
  return 0;
}

static void xfer_reset_attempt(cxfer_t *x) {
  x->discard = 0;
  x->errbuf[0] = '\0';
  /* x->paused stays: the new attempt's first data is held by libcurl (on_write_data) until the
   * caller resumes. */
  pd_xhead_reset(&x->head);
}

static void on_stall_timer(uv_timer_t *t);

/* Starts the stall clock from now (an attempt starts, or the caller resumed). */
static void start_stall_clock(cxfer_t *x) {
  if (x->stall_ms <= 0)
    return;
  if (!x->stall_timer_inited) {
    if (uv_timer_init(x->u->loop, &x->stall_timer) < 0)
      return; /* no stall bound for this call; timeout_ms still holds */
    x->stall_timer.data = x;
    x->stall_timer_inited = 1;
  }
  x->rx_ms = uv_now(x->u->loop);
  uv_timer_start(&x->stall_timer, on_stall_timer, (uint64_t)x->stall_ms, 0);
}

static void add_handle(cxfer_t *x) {
  pd_curlup_t *u = x->u;
  start_stall_clock(x);
  if (u->in_api) {
    /* libcurl refuses re-entrant calls: add once it returns. */
    x->want_add = 1;
    if (!x->deferred) {
      x->deferred = 1;
      x->dnext = u->deferred;
      u->deferred = x;
    }
    return;
  }
  if (curl_multi_add_handle(u->multi, x->easy) == CURLM_OK)
    x->added = 1;
  else
    fail_later(x);
}

static const pd_xfer_ops_t CURL_OPS = {pd_curlup_pause, pd_curlup_resume, pd_curlup_cancel,
                                       pd_curlup_elapsed};

pd_xfer_t *pd_curlup_start(pd_curlup_t *u, const pd_xfer_opts_t *o, const pd_xfer_cbs_t *cbs,
                           void *ud) {
  if (u->closing) {
    free(o->body);
    return NULL;
  }
  cxfer_t *x = calloc(1, sizeof *x);
  if (!x) {
    free(o->body);
    return NULL;
  }
  x->u = u;
  x->url = strdup(o->url);
  x->method = strdup(o->method);
  x->body = o->body;
  x->body_len = o->body_len;
  x->connect_timeout_ms = o->connect_timeout_ms;
  x->timeout_ms = o->timeout_ms;
  x->stall_ms = o->stall_timeout_ms;
  x->max_age_ms = o->max_conn_age_ms;
  x->retries = o->retries;
  x->cbs = *cbs;
  x->ud = ud;
  x->base.ops = &CURL_OPS;
  x->start_ns = uv_hrtime();
  x->start_ms = uv_now(u->loop);
  x->deadline = pd_xfer_deadline(x->start_ms, o->timeout_ms);
  int bad = 0;
  if (o->tls_ca_file && !(x->ca_file = strdup(o->tls_ca_file)))
    bad = 1;
  if (o->tls_cert_file && !(x->cert_file = strdup(o->tls_cert_file)))
    bad = 1;
  if (o->tls_key_file && !(x->key_file = strdup(o->tls_key_file)))
    bad = 1;
  x->tls_insecure = o->tls_insecure;
  x->http1_only = !o->http2;
  if (o->proxy && *o->proxy && !(x->proxy = strdup(o->proxy)))
    bad = 1;
  if (!bad && x->url && o->tls_server_name && *o->tls_server_name &&
      server_name_url(x, o->tls_server_name) < 0)
    bad = 1;
  pd_xhead_init(&x->head);
  xfer_reset_attempt(x);
  /* libcurl's defaults the native client does not have: an Expect on large bodies, an Accept,
   * and a form Content-Type on bodies. An empty "Name:" line removes libcurl's own. Framing
   * headers are libcurl's to write, as the native client's are its own. */
  int has_ct = 0, has_accept = 0, has_host = 0;
  x->hdrs = curl_slist_append(NULL, "Expect:");
  for (const char *const *h = o->headers; h && *h && x->hdrs; h++) {
    size_t nlen = strcspn(*h, ":");
    if ((nlen == 14 && strncasecmp(*h, "content-length", 14) == 0) ||
        (nlen == 17 && strncasecmp(*h, "transfer-encoding", 17) == 0))
      continue;
    has_ct |= nlen == 12 && strncasecmp(*h, "content-type", 12) == 0;
    has_accept |= nlen == 6 && strncasecmp(*h, "accept", 6) == 0;
    has_host |= nlen == 4 && strncasecmp(*h, "host", 4) == 0;
    struct curl_slist *l = curl_slist_append(x->hdrs, *h);
    if (!l)
      bad = 1;
    else
      x->hdrs = l;
  }
  if (x->hdrs && !has_ct)
    x->hdrs = curl_slist_append(x->hdrs, "Content-Type:");
  if (x->hdrs && !has_accept)
    x->hdrs = curl_slist_append(x->hdrs, "Accept:");
  if (x->hdrs && x->connect && !has_host) {
    /* The URL names server_name now; Host stays the configured URL's, as natively. */
    const char *a = strstr(o->url, "://") + 3;
    char line[300];
    snprintf(line, sizeof line, "Host: %.*s", (int)strcspn(a, "/?#"), a);
    x->hdrs = curl_slist_append(x->hdrs, line);
  }
  x->easy = easy_get(u);
  if (bad || !x->url || !x->method || !x->easy || !x->hdrs) {
    xfer_destroy(x);
    return NULL;
  }
  setup_easy(x);
  x->next = u->xfers;
  if (u->xfers)
    u->xfers->prev = x;
  u->xfers = x;
  add_handle(x);
  return &x->base;
}

void pd_curlup_pause(pd_xfer_t *bx) {
  cxfer_t *x = (cxfer_t *)bx;
  if (x->paused || x->cancelled)
    return;
  x->paused = 1;
  /* Between attempts (a retry pending) there is nothing to tell libcurl: the flag alone makes
   * the next attempt's first data wait (on_write_data) until the caller resumes. */
  if (!x->added)
    return;
  x->u->in_api++;
  curl_easy_pause(x->easy, CURLPAUSE_RECV);
  x->u->in_api--;
}

void pd_curlup_resume(pd_xfer_t *bx) {
  cxfer_t *x = (cxfer_t *)bx;
  if (!x->paused || x->cancelled)
    return;
  x->paused = 0;
  pd_curlup_t *u = x->u;
  if (!x->added)
    return; /* between attempts: libcurl holds nothing of ours */
  start_stall_clock(x);
  /* Unpausing may deliver buffered data right away, running our callbacks. */
  u->in_api++;
  curl_easy_pause(x->easy, CURLPAUSE_CONT);
  u->in_api--;
  if (u->in_api == 0) {
    check_multi_info(u);
    run_deferred(u);
  }
}

/* Takes x off the deferred list (before it is freed). */
static void deferred_unlink(cxfer_t *x) {
  if (!x->deferred)
    return;
  cxfer_t **pp = &x->u->deferred;
  while (*pp && *pp != x)
    pp = &(*pp)->dnext;
  if (*pp)
    *pp = x->dnext;
  x->deferred = 0;
}

static void xfer_cancel(cxfer_t *x) {
  if (x->cancelled)
    return;
  x->cancelled = 1;
  pd_curlup_t *u = x->u;
  if (x->retry_timer_active) {
    uv_timer_stop(&x->retry_timer);
    x->retry_timer_active = 0;
  }
  if (u->in_api || x->in_cb) {
    if (!x->deferred) {
      x->deferred = 1;
      x->dnext = u->deferred;
      u->deferred = x;
    }
    return;
  }
  deferred_unlink(x);
  xfer_destroy(x);
}

void pd_curlup_cancel(pd_xfer_t *x) {
  xfer_cancel((cxfer_t *)x);
}

double pd_curlup_elapsed(const pd_xfer_t *bx) {
  const cxfer_t *x = (const cxfer_t *)bx;
  return (double)(uv_hrtime() - x->start_ns) / 1e9;
}

/* The transfer's end: the caller's on_done (unless cancelled), then free. */
static void xfer_end(cxfer_t *x, int result, const char *msg) {
  if (!x->cancelled && x->cbs.on_done) {
    x->in_cb++;
    x->cbs.on_done(x->ud, result, msg);
    x->in_cb--;
  }
  deferred_unlink(x);
  xfer_destroy(x);
}

static void on_retry_timer(uv_timer_t *t) {
  cxfer_t *x = t->data;
  x->retry_timer_active = 0;
  if (x->cancelled)
    return;
  if (x->fail_pending || x->out_of_time || !set_attempt_timeout(x)) {
    int result = x->fail_pending ? PD_XFER_EOTHER : PD_XFER_ETIMEOUT;
    char msg[128];
    if (x->fail_pending)
      snprintf(msg, sizeof msg, "the upstream transfer could not be started");
    else
      snprintf(msg, sizeof msg, "Operation timed out after %lu milliseconds (%d attempts)",
               (unsigned long)(uv_now(x->u->loop) - x->start_ms), x->attempt);
    xfer_end(x, result, msg);
    return;
  }
  xfer_reset_attempt(x);
  add_handle(x);
}

/* The stall timer: no byte for stall_ms while the attempt runs and the caller has not paused
 * it. It runs from the loop, never inside libcurl, so the handle can be taken out of the multi
 * here, as check_multi_info does for a transfer libcurl ended. */
static void on_stall_timer(uv_timer_t *t) {
  cxfer_t *x = t->data;
  pd_curlup_t *u = x->u;
  if (x->cancelled || x->paused || (!x->added && !x->want_add))
    return; /* ended, between attempts, or paused: the resume or next attempt restarts it */
  uint64_t now = uv_now(u->loop), due = x->rx_ms + (uint64_t)x->stall_ms;
  if (now < due || u->in_api || !x->added) { /* not yet, or its add still deferred */
    uv_timer_start(t, on_stall_timer, due > now ? due - now : 1, 0);
    return;
  }
  /* Same outcome as a timeout: not retried (the upstream may be working on the request). */
  char msg[128];
  pd_xfer_stall_msg(msg, sizeof msg, x->stall_ms);
  curl_multi_remove_handle(u->multi, x->easy);
  x->added = 0;
  xfer_end(x, PD_XFER_ETIMEOUT, msg);
}

static int retryable_connect_error(CURLcode rc) {
  return rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
         rc == CURLE_COULDNT_RESOLVE_PROXY;
}

static void arm_retry_timer(cxfer_t *x, long delay_ms) {
  if (!x->retry_timer_inited) {
    uv_timer_init(x->u->loop, &x->retry_timer);
    x->retry_timer.data = x;
    x->retry_timer_inited = 1;
  }
  x->retry_timer_active = 1;
  uv_timer_start(&x->retry_timer, on_retry_timer, (uint64_t)(delay_ms > 0 ? delay_ms : 1), 0);
}

/* Reports a transfer libcurl would not take, from the loop (never inside the caller). */
static void fail_later(cxfer_t *x) {
  x->fail_pending = 1;
  arm_retry_timer(x, 0);
}

static void schedule_retry(cxfer_t *x, long delay_ms) {
  pd_curlup_t *u = x->u;
  if (x->stall_timer_inited)
    uv_timer_stop(&x->stall_timer); /* no stall between attempts: the next one restarts it */
  curl_multi_remove_handle(u->multi, x->easy);
  x->added = 0;
  x->attempt++;
  arm_retry_timer(x, delay_ms);
}

static int map_result(CURLcode rc) {
  switch (rc) {
  case CURLE_OK:
    return PD_XFER_OK;
  case CURLE_COULDNT_CONNECT:
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY:
  case CURLE_SSL_CONNECT_ERROR:
    return PD_XFER_ECONNECT;
  case CURLE_OPERATION_TIMEDOUT:
    return PD_XFER_ETIMEOUT;
  case CURLE_RECV_ERROR:
  case CURLE_SEND_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_PARTIAL_FILE:
  case CURLE_HTTP2_STREAM:
  case CURLE_HTTP2:
    return PD_XFER_ERECV;
  default:
    return PD_XFER_EOTHER;
  }
}

/* A server may answer before the request body is all sent and then end the stream with
 * RST_STREAM NO_ERROR ("stop sending", RFC 9113 section 8.1; nginx's `return` does this).
 * libcurl then fails its send with CURLE_HTTP2_STREAM and no message of its own (a stream reset
 * with an error code, or one closed before the head, comes with one). The response stands when
 * its head was delivered and its body is whole, as far as a Content-Length tells. */
static int answered_early(const cxfer_t *x) {
  return x->head_done && !x->errbuf[0] && !x->reader_abort &&
         (x->head.content_length < 0 || x->rx_body == x->head.content_length);
}

static void check_multi_info(pd_curlup_t *u) {
  CURLMsg *msg;
  int left;
  while (u->multi && (msg = curl_multi_info_read(u->multi, &left))) {
    if (msg->msg != CURLMSG_DONE)
      continue;
    cxfer_t *x = NULL;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
    CURLcode rc = msg->data.result;
    if (!x)
      continue;
    if (x->cancelled) {
      if (!x->deferred)
        xfer_destroy(x);
      continue;
    }
    uint64_t now = uv_now(u->loop);
    char errmsg[CURL_ERROR_SIZE + 64];
    snprintf(errmsg, sizeof errmsg, "%s", x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
    if (x->discard && rc == CURLE_OK) {
      long delay = pd_xfer_status_delay(&x->head, x->attempt);
      char why[32];
      snprintf(why, sizeof why, "status %d", x->head.status);
      /* The retry was planned at the head; when the deadline now comes first, the call times
       * out (from the loop) instead. */
      if (!pd_xfer_retry_fits(x->deadline, now, delay)) {
        x->out_of_time = 1;
        delay = 0;
      } else {
        pd_xfer_log_retry(&x->base, x->attempt, why, delay);
      }
      schedule_retry(x, delay);
      continue;
    }
    long cdelay = pd_xfer_connect_delay(x->attempt);
    if (retryable_connect_error(rc) && !x->head_done && x->attempt < x->retries &&
        pd_xfer_retry_fits(x->deadline, now, cdelay)) {
      pd_xfer_log_retry(&x->base, x->attempt, errmsg, cdelay);
      schedule_retry(x, cdelay);
      continue;
    }
    if (x->discard) /* a retryable status whose body broke: report what we have */
      x->discard = 0;
    if (rc == CURLE_HTTP2_STREAM && answered_early(x))
      rc = CURLE_OK;
    if (rc == CURLE_OK)
      deliver_head(x);
    int result = map_result(rc);
    curl_multi_remove_handle(u->multi, x->easy);
    x->added = 0;
    xfer_end(x, result, errmsg);
  }
}
