/* The libcurl client: upstream URLs with credentials (and every upstream under
 * PONDER_UPSTREAM_CLIENT=curl), on the worker's loop with curl's multi_socket pattern. A
 * transfer carries the same base as the native framings' (xfer.c: callbacks, pause, retry
 * rules, the ending, its timer), whose timer here holds the retry delay, the deferred failure
 * and the stall bound; libcurl does the protocol, the connections and the per-attempt
 * deadlines. */
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
  pd_xfer_t base;    /* first: the front casts */
  pd_xfer_base_t xb; /* what every framing keeps the same way */
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
  long max_age_ms; /* max_conn_age_ms; 0 = none (libcurl counts whole seconds) */
  int send_length; /* the body goes with its Content-Length (pd_xfer_sends_length) */
  int added;       /* in the multi */
  int want_add;    /* to be added once libcurl returns */
  int deferred;    /* on u->deferred */
  long rx_body;    /* body bytes delivered to on_data */
  char errbuf[CURL_ERROR_SIZE];
  cxfer_t *prev, *next, *dnext;
};

/* The base timer's own mode (after PD_XT_*): the stall bound, ours rather than
 * CURLOPT_LOW_SPEED_*, which count whole seconds and keep counting while the transfer is
 * paused. xb.rx_ms is the attempt's last byte received, else its start or the caller's resume;
 * the callbacks only write it, and the timer, when it fires, checks it and re-arms itself for
 * what is left. Between attempts the same timer holds the retry delay. */
enum { T_STALL = PD_XT_FRAMING };

static void check_multi_info(pd_curlup_t *u);
static void xfer_destroy(cxfer_t *x);
static void xfer_cancel(cxfer_t *x);
static void fail_later(cxfer_t *x);
static const pd_xfer_base_ops_t XB_OPS;

/* ---- libuv <-> libcurl glue (curl's multi-uv pattern) -------------------------------------- */

static void run_deferred(pd_curlup_t *u) {
  while (u->deferred) {
    cxfer_t *x = u->deferred;
    u->deferred = x->dnext;
    x->deferred = 0;
    if (x->xb.cancelled) {
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

/* Where both libcurl callbacks start: NULL for a cancelled transfer (returning 0 stops it), else
 * the transfer, its stall clock run from now. */
static cxfer_t *took_bytes(void *userdata) {
  cxfer_t *x = userdata;
  if (x->xb.cancelled)
    return NULL;
  x->xb.rx_ms = uv_now(x->u->loop);
  return x;
}

static size_t on_header_line(char *ptr, size_t size, size_t nmemb, void *userdata) {
  size_t n = size * nmemb;
  cxfer_t *x = took_bytes(userdata);
  if (!x)
    return 0;
  if (n >= 5 && strncmp(ptr, "HTTP/", 5) == 0) {
    /* A status line starts a new header block (after 100 Continue, say). */
    const char *sp = memchr(ptr, ' ', n);
    pd_xhead_reset(&x->xb.head);
    x->xb.head.status = sp ? atoi(sp + 1) : 0;
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
    if (x->xb.head.status < 200 || code != x->xb.head.status) {
      pd_xhead_reset(&x->xb.head);
      return n;
    }
    if (pd_xfer_retryable_status(x->xb.head.status) &&
        pd_xfer_base_may_retry(&x->xb, pd_xfer_status_delay(&x->xb.head, x->xb.attempt))) {
      x->xb.discard = 1;
      return n;
    }
    pd_xfer_base_head(&x->xb);
    return x->xb.cancelled ? 0 : n;
  }
  const char *colon = memchr(ptr, ':', len);
  if (!colon)
    return n;
  size_t nlen = (size_t)(colon - ptr);
  const char *v = colon + 1;
  while (v < ptr + len && (*v == ' ' || *v == '\t'))
    v++;
  pd_xhead_add(&x->xb.head, ptr, nlen, v, (size_t)(ptr + len - v));
  return n;
}

static size_t on_write_data(char *ptr, size_t size, size_t nmemb, void *userdata) {
  size_t n = size * nmemb;
  cxfer_t *x = took_bytes(userdata);
  if (!x)
    return 0;
  if (x->xb.discard)
    return n;
  pd_xfer_base_head(&x->xb);
  if (x->xb.cancelled)
    return 0;
  if (x->xb.paused) /* paused by the caller before this attempt: libcurl keeps the data */
    return CURL_WRITEFUNC_PAUSE;
  x->rx_body += (long)n;
  int r = pd_xfer_base_give(&x->xb, ptr, n);
  if (r == PD_GIVE_ABORT)
    x->xb.reader_abort = 1;
  if (r != PD_GIVE_OK)
    return 0;
  if (x->xb.paused) /* the caller asked for a pause */
    curl_easy_pause(x->easy, CURLPAUSE_RECV);
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
  pd_xfer_base_release(&x->xb); /* xfer_free once its timer has closed */
}

/* The attempt about to start may take what is left of the call's time. Returns 0 when none is
 * left. */
static int set_attempt_timeout(cxfer_t *x) {
  if (!x->xb.deadline)
    return 1;
  uint64_t now = uv_now(x->u->loop);
  if (now >= x->xb.deadline)
    return 0;
  curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, (long)(x->xb.deadline - now));
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
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, x->xb.connect_timeout_ms);
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
  /* The same request line and framing as the native clients (pd_xfer_sends_length): a body, with
   * any method, goes with its Content-Length; POST, PUT and PATCH always carry one; nothing is
   * added to what the caller gave (no form Content-Type, no Accept: see pd_curlup_start). */
  if (strcmp(x->method, "HEAD") == 0) {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else if (x->send_length) {
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
  x->errbuf[0] = '\0';
  /* paused stays: the new attempt's first data is held by libcurl (on_write_data) until the
   * caller resumes. */
  pd_xfer_base_new_attempt(&x->xb);
}

/* Starts the stall clock from now (an attempt starts, or the caller resumed). */
static void start_stall_clock(cxfer_t *x) {
  if (x->xb.stall_ms <= 0)
    return;
  x->xb.rx_ms = uv_now(x->u->loop);
  pd_xfer_base_arm(&x->xb, T_STALL, (uint64_t)x->xb.stall_ms);
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
  x->max_age_ms = o->max_conn_age_ms;
  x->send_length = pd_xfer_sends_length(o);
  x->base.ops = &CURL_OPS;
  pd_xfer_base_init(&x->xb, &XB_OPS, u->loop, o, cbs, ud);
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
  if (x->xb.paused || x->xb.cancelled)
    return;
  x->xb.paused = 1;
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
  if (!x->xb.paused || x->xb.cancelled)
    return;
  x->xb.paused = 0;
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
  if (x->xb.cancelled)
    return;
  x->xb.cancelled = 1;
  pd_curlup_t *u = x->u;
  pd_xfer_base_stop(&x->xb);
  if (u->in_api || x->xb.in_cb) {
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
  return pd_xfer_base_elapsed(&((const cxfer_t *)bx)->xb);
}

/* After the base's ending (pd_xfer_base_finish: the caller's on_done, unless cancelled): out
 * of the multi (xfer_destroy) and free. */
static void end_destroy(pd_xfer_base_t *t) {
  cxfer_t *x = pd_list_entry(t, cxfer_t, xb);
  deferred_unlink(x);
  xfer_destroy(x);
}

static void timer_closed(pd_xfer_base_t *t) {
  xfer_free(pd_list_entry(t, cxfer_t, xb));
}

/* The base timer came due: the retry delay ended, or the stall bound (from the loop, never
 * inside libcurl, so the handle can be taken out of the multi here, as check_multi_info does for
 * a transfer libcurl ended). */
static void fire(pd_xfer_base_t *t, int mode) {
  cxfer_t *x = pd_list_entry(t, cxfer_t, xb);
  pd_curlup_t *u = x->u;
  if (mode == PD_XT_RETRY) {
    if (!set_attempt_timeout(x)) {
      pd_xfer_base_time_out(t, t->attempt, 0);
      return;
    }
    xfer_reset_attempt(x);
    add_handle(x);
    return;
  }
  if (mode != T_STALL || t->paused || (!x->added && !x->want_add))
    return; /* between attempts, or paused: the resume or next attempt restarts it */
  uint64_t now = uv_now(u->loop), due = t->rx_ms + (uint64_t)t->stall_ms;
  if (now < due || u->in_api || !x->added) { /* not yet, or its add still deferred */
    pd_xfer_base_arm(t, T_STALL, due > now ? due - now : 1);
    return;
  }
  /* Same outcome as a timeout: not retried (the upstream may be working on the request). */
  char msg[128];
  pd_xfer_stall_msg(msg, sizeof msg, t->stall_ms);
  pd_xfer_base_finish(t, PD_XFER_ETIMEOUT, msg);
}

static const pd_xfer_base_ops_t XB_OPS = {fire, end_destroy, timer_closed};

static int retryable_connect_error(CURLcode rc) {
  return rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
         rc == CURLE_COULDNT_RESOLVE_PROXY;
}

/* Reports a transfer libcurl would not take, from the loop (never inside the caller). */
static void fail_later(cxfer_t *x) {
  pd_xfer_base_fail_soon(&x->xb, PD_XFER_EOTHER, "the upstream transfer could not be started");
}

/* Ends the attempt libcurl finished and starts the next after delay_ms, counting one. */
static void schedule_retry(cxfer_t *x, long delay_ms) {
  curl_multi_remove_handle(x->u->multi, x->easy);
  x->added = 0;
  x->xb.attempt++;
  /* replaces the stall bound: there is none between attempts, the next one restarts it */
  pd_xfer_base_arm(&x->xb, PD_XT_RETRY, (uint64_t)(delay_ms > 0 ? delay_ms : 1));
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
  return x->xb.head_done && !x->errbuf[0] && !x->xb.reader_abort &&
         (x->xb.head.content_length < 0 || x->rx_body == x->xb.head.content_length);
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
    if (x->xb.cancelled) {
      if (!x->deferred)
        xfer_destroy(x);
      continue;
    }
    char errmsg[CURL_ERROR_SIZE + 64];
    snprintf(errmsg, sizeof errmsg, "%s", x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
    if (x->xb.discard && rc == CURLE_OK) {
      long delay = pd_xfer_status_delay(&x->xb.head, x->xb.attempt);
      /* The retry was planned at the head; when the deadline now comes first, the call times
       * out (from the loop) instead. */
      if (!pd_xfer_retry_fits(x->xb.deadline, uv_now(u->loop), delay)) {
        curl_multi_remove_handle(u->multi, x->easy);
        x->added = 0;
        pd_xfer_base_time_out(&x->xb, x->xb.attempt + 1, 1);
        continue;
      }
      char why[32];
      snprintf(why, sizeof why, "status %d", x->xb.head.status);
      pd_xfer_log_retry(&x->base, x->xb.attempt, why, delay);
      schedule_retry(x, delay);
      continue;
    }
    long cdelay = pd_xfer_connect_delay(x->xb.attempt);
    if (retryable_connect_error(rc) && !x->xb.head_done && pd_xfer_base_may_retry(&x->xb, cdelay)) {
      pd_xfer_log_retry(&x->base, x->xb.attempt, errmsg, cdelay);
      schedule_retry(x, cdelay);
      continue;
    }
    x->xb.discard = 0; /* a retryable status whose body broke: report what we have */
    if (rc == CURLE_HTTP2_STREAM && answered_early(x))
      rc = CURLE_OK;
    pd_xfer_base_finish(&x->xb, map_result(rc), errmsg); /* the head first when OK */
  }
}
