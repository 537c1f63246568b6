/* The upstream client's front (see upstream/upstream.h): pd_upstream_t picks a framing per call
 * (native HTTP/1.1, native HTTP/2, or libcurl) and dispatches through its const ops table; and
 * what the framings share besides the transfer base (xfer.c): the one response head table with
 * its drop rules, and URL splitting. Owns the framings' backends it creates; a transfer is owned
 * by its framing until its on_done. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "upstream/upstream_int.h"

/* The front: http:// upstreams go to the native HTTP/1.1 client, those with "http2: true" to
 * the native HTTP/2 (h2c) client; https:// ones to the native HTTP/2 client (ALPN offering h2
 * and HTTP/1.1; it hands an origin whose server chose HTTP/1.1 to the HTTP/1.1 client), with
 * "http2: false" to the HTTP/1.1 client; URLs with credentials to libcurl.
 * PONDER_UPSTREAM_CLIENT=curl sends every upstream that is not h2c through libcurl (a diagnostic
 * switch, and how the test suite keeps the libcurl path covered). After the start, every call
 * on a transfer goes through its framing's ops table. */
struct pd_upstream {
  pd_curlup_t *curl;
  pd_h1up_t *h1;
  pd_h2up_t *h2;
  int all_curl;
  int pending_closes;
  void (*on_closed)(void *);
  void *on_closed_ud;
};

pd_upstream_t *pd_upstream_new(uv_loop_t *loop, int max_host_connections) {
  pd_upstream_t *u = calloc(1, sizeof *u);
  if (!u)
    return NULL;
  const char *client = getenv("PONDER_UPSTREAM_CLIENT");
  u->all_curl = client && strcmp(client, "curl") == 0;
  u->curl = pd_curlup_new(loop, max_host_connections);
  if (!u->curl)
    goto fail_curl;
  u->h1 = pd_h1up_new(loop, max_host_connections);
  if (!u->h1)
    goto fail_h1;
  u->h2 = pd_h2up_new(loop, max_host_connections, u->h1);
  if (!u->h2)
    goto fail_h2;
  return u;
fail_h2:
  pd_h1up_free(u->h1);
fail_h1:
  pd_curlup_free(u->curl);
fail_curl:
  free(u);
  return NULL;
}

static void on_part_closed(void *ud) {
  pd_upstream_t *u = ud;
  if (--u->pending_closes == 0 && u->on_closed)
    u->on_closed(u->on_closed_ud);
}

void pd_upstream_close(pd_upstream_t *u, void (*on_closed)(void *ud), void *ud) {
  u->on_closed = on_closed;
  u->on_closed_ud = ud;
  u->pending_closes = 3;
  pd_curlup_close(u->curl, on_part_closed, u);
  pd_h2up_close(u->h2, on_part_closed, u); /* first: its calls handed over cancel theirs */
  pd_h1up_close(u->h1, on_part_closed, u);
}

void pd_upstream_free(pd_upstream_t *u) {
  if (!u)
    return;
  pd_curlup_free(u->curl);
  pd_h1up_free(u->h1);
  pd_h2up_free(u->h2);
  free(u);
}

/* http:// or https:// without credentials in the authority (libcurl handles those). Sets *tls
 * for https://. */
static int native_url(const char *url, int *tls) {
  const char *auth, *path;
  long n = pd_url_split(url, &auth, &path, tls);
  return n > 0 && !memchr(auth, '@', (size_t)n);
}

/* What log lines name a call by: its request id and where it went. */
static void label(pd_xfer_t *x, const pd_xfer_opts_t *o) {
  x->reqid[0] = '\0';
  for (const char *const *h = o->headers; h && *h; h++)
    if (strncasecmp(*h, "x-request-id:", 13) == 0) {
      const char *v = *h + 13;
      v += strspn(v, " \t");
      size_t n = strcspn(v, "\r\n");
      if (n >= sizeof x->reqid)
        n = sizeof x->reqid - 1;
      memcpy(x->reqid, v, n);
      x->reqid[n] = '\0';
      break;
    }
  /* scheme "://" [userinfo "@"] authority path ["?" query]: userinfo and query may hold keys. */
  const char *url = o->url, *sep = strstr(url, "://");
  size_t slen = sep ? (size_t)(sep - url) + 3 : 0;
  const char *auth = url + slen;
  size_t alen = strcspn(auth, "/?#");
  const char *at = memchr(auth, '@', alen);
  if (at) {
    alen -= (size_t)(at + 1 - auth);
    auth = at + 1;
  }
  const char *path = auth + alen;
  size_t plen = strcspn(path, "?#");
  /* Three pieces, cut to fit (no printf: this runs for every upstream call). */
  size_t k = 0;
  const char *part[3] = {url, auth, path};
  size_t len[3] = {slen, alen, plen};
  for (int i = 0; i < 3; i++) {
    size_t n = len[i] < sizeof x->target - 1 - k ? len[i] : sizeof x->target - 1 - k;
    memcpy(x->target + k, part[i], n);
    k += n;
  }
  x->target[k] = '\0';
}

pd_xfer_t *pd_xfer_start(pd_upstream_t *u, const pd_xfer_opts_t *o, const pd_xfer_cbs_t *cbs,
                         void *ud) {
  pd_xfer_t *x;
  int tls = 0, native = native_url(o->url, &tls);
  /* h2c stays native under PONDER_UPSTREAM_CLIENT=curl (libcurl's h2c needs an upgrade). */
  if (native && o->http2 && (!tls || !u->all_curl))
    x = pd_h2up_start(u->h2, o, cbs, ud);
  else if (native && !u->all_curl)
    x = pd_h1up_start(u->h1, o, cbs, ud);
  else
    x = pd_curlup_start(u->curl, o, cbs, ud);
  if (x)
    label(x, o);
  return x;
}

void pd_xfer_pause(pd_xfer_t *x) {
  x->ops->pause(x);
}

void pd_xfer_resume(pd_xfer_t *x) {
  x->ops->resume(x);
}

void pd_xfer_cancel(pd_xfer_t *x) {
  x->ops->cancel(x);
}

double pd_xfer_elapsed(const pd_xfer_t *x) {
  return x->ops->elapsed(x);
}

/* ---- the response head, as both clients collect it ----------------------------------------- */

void pd_xhead_init(pd_xhead_t *h) {
  memset(h, 0, sizeof *h);
  pd_buf_init(&h->pairs);
  h->content_length = -1;
  h->retry_after_ms = -1;
}

void pd_xhead_reset(pd_xhead_t *h) {
  h->status = 0;
  h->content_length = -1;
  h->retry_after_ms = -1;
  free(h->content_type);
  h->content_type = NULL;
  pd_buf_reset(&h->pairs);
}

void pd_xhead_free(pd_xhead_t *h) {
  free(h->content_type);
  h->content_type = NULL;
  pd_buf_free(&h->pairs);
}

/* Headers that describe this hop or that ponder sets itself: never relayed. */
static int is_hop_by_hop(const char *name, size_t n) {
  static const char *const skip[] = {"connection",
                                     "keep-alive",
                                     "transfer-encoding",
                                     "te",
                                     "trailer",
                                     "upgrade",
                                     "proxy-authenticate",
                                     "proxy-authorization",
                                     "content-length",
                                     "date",
                                     "server",
                                     "x-request-id",
                                     NULL};
  for (int i = 0; skip[i]; i++)
    if (strlen(skip[i]) == n && strncasecmp(skip[i], name, n) == 0)
      return 1;
  return 0;
}

static long parse_retry_after(const char *v, size_t n, int is_ms) {
  char tmp[32];
  if (n == 0 || n >= sizeof tmp)
    return -1;
  memcpy(tmp, v, n);
  tmp[n] = '\0';
  char *endp;
  double d = strtod(tmp, &endp);
  if (endp == tmp || d < 0)
    return -1; /* an HTTP date: use the backoff instead */
  return is_ms ? (long)d : (long)(d * 1000);
}

/* RFC 9110 tchar: what a field name may hold. Letters, digits and '-' first: every header line
 * of every upstream reply passes through here. */
static int is_tchar(unsigned char ch) {
  if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z')
    return 1;
  if ((ch >= '0' && ch <= '9') || ch == '-')
    return 1;
  switch (ch) {
  case '!':
  case '#':
  case '$':
  case '%':
  case '&':
  case '\'':
  case '*':
  case '+':
  case '.':
  case '^':
  case '_':
  case '`':
  case '|':
  case '~':
    return 1;
  default:
    return 0;
  }
}

static int field_ok(const char *name, size_t nlen, const char *v, size_t vlen) {
  if (nlen == 0)
    return 0;
  for (size_t i = 0; i < nlen; i++)
    if (!is_tchar((unsigned char)name[i]))
      return 0;
  /* No early exit: a branch-free loop the compiler vectorises (values are checked whole). */
  unsigned bad = 0;
  for (size_t i = 0; i < vlen; i++) {
    unsigned char ch = (unsigned char)v[i];
    bad |= (unsigned)((ch < 0x20) & (ch != '\t')) | (unsigned)(ch == 0x7f);
  }
  return !bad;
}

int pd_xhead_add(pd_xhead_t *h, const char *name, size_t nlen, const char *v, size_t vlen) {
  /* An upstream is semi-trusted: a CR or LF relayed in a value would split the client's
   * response, so such a field is dropped whole, before anything reads it. */
  if (!field_ok(name, nlen, v, vlen))
    return -1;
  if (nlen == 12 && strncasecmp(name, "content-type", 12) == 0) {
    free(h->content_type);
    h->content_type = strndup(v, vlen);
  } else if (nlen == 14 && strncasecmp(name, "content-length", 14) == 0) {
    char tmp[24];
    size_t k = vlen < sizeof tmp - 1 ? vlen : sizeof tmp - 1;
    memcpy(tmp, v, k);
    tmp[k] = '\0';
    h->content_length = strtol(tmp, NULL, 10);
  } else if (nlen == 11 && strncasecmp(name, "retry-after", 11) == 0) {
    long ms = parse_retry_after(v, vlen, 0);
    if (ms >= 0 && h->retry_after_ms < 0)
      h->retry_after_ms = ms;
  } else if (nlen == 14 && strncasecmp(name, "retry-after-ms", 14) == 0) {
    long ms = parse_retry_after(v, vlen, 1);
    if (ms >= 0)
      h->retry_after_ms = ms;
  }
  if (is_hop_by_hop(name, nlen))
    return 0;
  char *w = pd_buf_reserve(&h->pairs, nlen + vlen + 2);
  if (!w)
    return 0;
  for (size_t i = 0; i < nlen; i++)
    w[i] = (char)tolower((unsigned char)name[i]);
  w[nlen] = '\0';
  memcpy(w + nlen + 1, v, vlen);
  w[nlen + 1 + vlen] = '\0';
  pd_buf_commit(&h->pairs, nlen + vlen + 2);
  return 0;
}

#define MAX_RELAYED_HEADERS 64

void pd_xhead_emit(const pd_xhead_t *h, void (*on_head)(void *, const pd_xfer_head_t *), void *ud) {
  if (!on_head)
    return;
  const char *pairs[2 * MAX_RELAYED_HEADERS + 1];
  size_t n = 0;
  const char *p = h->pairs.len ? pd_buf_data(&h->pairs) : NULL;
  const char *end = p ? p + h->pairs.len : NULL;
  while (p && p < end && n < MAX_RELAYED_HEADERS) {
    const char *name = p;
    p += strlen(p) + 1;
    if (p >= end)
      break;
    const char *value = p;
    p += strlen(p) + 1;
    pairs[2 * n] = name;
    pairs[2 * n + 1] = value;
    n++;
  }
  pairs[2 * n] = NULL;
  pd_xfer_head_t head = {h->status, h->content_type, h->content_length, pairs, n};
  on_head(ud, &head);
}

/* ---- URLs, as the native clients split them ------------------------------------------------ */

char *pd_url_target(const char *path) {
  size_t plen = strcspn(path, "#");
  if (plen > 0 && path[0] != '?')
    return strndup(path, plen);
  char *t = malloc(plen + 2);
  if (t) {
    t[0] = '/';
    memcpy(t + 1, path, plen);
    t[plen + 1] = '\0';
  }
  return t;
}

long pd_url_split(const char *url, const char **auth, const char **path, int *tls) {
  const char *a;
  if (strncasecmp(url, "http://", 7) == 0) {
    a = url + 7;
    *tls = 0;
  } else if (strncasecmp(url, "https://", 8) == 0) {
    a = url + 8;
    *tls = 1;
  } else {
    return -1;
  }
  size_t n = strcspn(a, "/?#");
  if (n == 0)
    return -1;
  *auth = a;
  *path = a + n;
  return (long)n;
}
