/* HTTP proxies for the native upstream clients (see proxy.h): the choice of proxy per call, the
 * CONNECT request, and the reader of the proxy's reply. Owns the copies of the environment. */
#include "upstream/proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define REPLY_MAX 8192 /* a proxy's reply head longer than this is refused */

static char *env_dup(const char *a, const char *b) {
  const char *v = getenv(a);
  if ((!v || !*v) && b)
    v = getenv(b);
  return v && *v ? strdup(v) : NULL;
}

void pd_proxy_env_load(pd_proxy_env_t *e) {
  e->https_proxy = env_dup("https_proxy", "HTTPS_PROXY");
  e->http_proxy = env_dup("http_proxy", NULL);
  if (!e->https_proxy)
    e->https_proxy = env_dup("all_proxy", "ALL_PROXY");
  if (!e->http_proxy)
    e->http_proxy = env_dup("all_proxy", "ALL_PROXY");
  e->no_proxy = env_dup("no_proxy", "NO_PROXY");
}

void pd_proxy_env_free(pd_proxy_env_t *e) {
  free(e->https_proxy);
  free(e->http_proxy);
  free(e->no_proxy);
  memset(e, 0, sizeof *e);
}

/* no_proxy: entries apart by commas (blanks around them ignored); "*" matches every host; an
 * entry matches the host itself and every name under it (".example.com" as "example.com"). */
static int no_proxy_match(const char *list, const char *host, size_t hlen) {
  const char *p = list;
  while (*p) {
    p += strspn(p, " \t,");
    size_t n = strcspn(p, ",");
    const char *e = p;
    p += n;
    while (n > 0 && (e[n - 1] == ' ' || e[n - 1] == '\t'))
      n--;
    if (n == 1 && *e == '*')
      return 1;
    if (n > 0 && *e == '.') {
      e++;
      n--;
    }
    if (n == 0 || n > hlen)
      continue;
    if (strncasecmp(host + hlen - n, e, n) == 0 && (n == hlen || host[hlen - n - 1] == '.'))
      return 1;
  }
  return 0;
}

const char *pd_proxy_pick(const pd_proxy_env_t *e, const char *configured, int tls,
                          const char *auth, size_t alen) {
  const char *p = configured && *configured ? configured : tls ? e->https_proxy : e->http_proxy;
  if (!p || !e->no_proxy)
    return p;
  const char *host = auth;
  size_t hlen = alen;
  if (alen > 0 && *auth == '[') {
    const char *br = memchr(auth, ']', alen);
    host = auth + 1;
    hlen = br ? (size_t)(br - host) : alen - 1;
  } else {
    for (size_t i = alen; i > 0; i--)
      if (auth[i - 1] == ':') {
        hlen = i - 1;
        break;
      }
  }
  return no_proxy_match(e->no_proxy, host, hlen) ? NULL : p;
}

/* The '@' that ends the userinfo of an authority of n bytes (the last one), or NULL. */
static const char *last_at(const char *a, size_t n) {
  while (n > 0 && a[n - 1] != '@')
    n--;
  return n ? a + n - 1 : NULL;
}

long pd_proxy_authority(const char *url, char *out, size_t cap) {
  const char *a = url;
  const char *sep = strstr(url, "://");
  if (sep) {
    if ((size_t)(sep - url) != 4 || strncasecmp(url, "http", 4) != 0)
      return -1; /* https://, socks5://: not spoken here */
    a = sep + 3;
  }
  size_t n = strcspn(a, "/?#");
  const char *at = last_at(a, n);
  if (at) { /* credentials for the proxy (pd_proxy_auth_line): not part of the address */
    n -= (size_t)(at + 1 - a);
    a = at + 1;
  }
  if (n == 0 || n + 6 > cap)
    return -1;
  memcpy(out, a, n);
  out[n] = '\0';
  /* A port is there when the last ':' comes after any IPv6 literal's ']'. */
  const char *colon = strrchr(out, ':'), *br = strrchr(out, ']');
  if (!colon || (br && colon < br)) {
    memcpy(out + n, ":1080", 6);
    n += 5;
  }
  return (long)n;
}

static int hexval(int c) {
  return c >= '0' && c <= '9'   ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                : -1;
}

/* Percent-decodes n bytes of p onto the end of out. */
static void pct_decode(pd_buf_t *out, const char *p, size_t n, int *bad) {
  for (size_t i = 0; i < n; i++) {
    char ch = p[i];
    if (ch == '%' && i + 2 < n && hexval((unsigned char)p[i + 1]) >= 0 &&
        hexval((unsigned char)p[i + 2]) >= 0) {
      ch = (char)(hexval((unsigned char)p[i + 1]) * 16 + hexval((unsigned char)p[i + 2]));
      i += 2;
    }
    if (pd_buf_append(out, &ch, 1) < 0)
      *bad = 1;
  }
}

char *pd_proxy_auth_line(const char *url) {
  const char *a = strstr(url, "://");
  a = a ? a + 3 : url;
  size_t n = strcspn(a, "/?#");
  const char *at = last_at(a, n);
  if (!at)
    return NULL;
  size_t ulen = (size_t)(at - a);
  const char *colon = memchr(a, ':', ulen);
  size_t user_len = colon ? (size_t)(colon - a) : ulen;
  int bad = 0;
  pd_buf_t cred;
  pd_buf_init(&cred);
  pct_decode(&cred, a, user_len, &bad);
  if (pd_buf_append(&cred, ":", 1) < 0)
    bad = 1;
  if (colon)
    pct_decode(&cred, colon + 1, ulen - user_len - 1, &bad);
  static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const unsigned char *in = (const unsigned char *)(cred.len ? pd_buf_data(&cred) : "");
  size_t len = cred.len;
  static const char pre[] = "Proxy-Authorization: Basic ";
  char *line = bad ? NULL : malloc(sizeof pre + 4 * ((len + 2) / 3) + 2);
  if (line) {
    char *w = line + sizeof pre - 1;
    memcpy(line, pre, sizeof pre - 1);
    for (size_t i = 0; i < len; i += 3) {
      unsigned v = (unsigned)in[i] << 16 | (i + 1 < len ? (unsigned)in[i + 1] << 8 : 0) |
                   (i + 2 < len ? in[i + 2] : 0);
      *w++ = b64[v >> 18 & 63];
      *w++ = b64[v >> 12 & 63];
      *w++ = i + 1 < len ? b64[v >> 6 & 63] : '=';
      *w++ = i + 2 < len ? b64[v & 63] : '=';
    }
    memcpy(w, "\r\n", 3);
  }
  pd_buf_free(&cred);
  return line;
}

typedef struct connect_write {
  uv_write_t req;
  void (*done)(void *, int);
  void *arg;
  char data[];
} connect_write_t;

static void on_connect_written(uv_write_t *req, int status) {
  connect_write_t *w = req->data;
  void (*done)(void *, int) = w->done;
  void *arg = w->arg;
  free(w);
  done(arg, status);
}

int pd_proxy_send_connect(uv_stream_t *s, const char *authority, size_t alen, const char *auth_line,
                          void (*done)(void *arg, int status), void *arg) {
  size_t cap = 2 * alen + 64 + (auth_line ? strlen(auth_line) : 0);
  connect_write_t *w = malloc(sizeof *w + cap);
  if (!w)
    return UV_ENOMEM;
  int n = snprintf(w->data, cap, "CONNECT %.*s HTTP/1.1\r\nHost: %.*s\r\n%s\r\n", (int)alen,
                   authority, (int)alen, authority, auth_line ? auth_line : "");
  w->done = done;
  w->arg = arg;
  w->req.data = w;
  uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
  int rc = uv_write(&w->req, s, &b, 1, on_connect_written);
  if (rc < 0)
    free(w);
  return rc;
}

int pd_proxy_reply(pd_buf_t *acc, const char *p, size_t n, char *err, size_t errlen) {
  if (n > REPLY_MAX || acc->len + n > REPLY_MAX) {
    snprintf(err, errlen, "the proxy's reply to CONNECT is over %d bytes", REPLY_MAX);
    return -1;
  }
  if (pd_buf_append(acc, p, n) < 0) {
    snprintf(err, errlen, "out of memory reading the proxy's reply");
    return -1;
  }
  const char *s = pd_buf_data(acc);
  size_t len = acc->len;
  const char *end = NULL;
  for (size_t i = 0; i + 3 < len; i++)
    if (s[i] == '\r' && s[i + 1] == '\n' && s[i + 2] == '\r' && s[i + 3] == '\n') {
      end = s + i + 4;
      break;
    }
  if (!end)
    return 0;
  /* "HTTP/1.x NNN reason" */
  if (len < 12 || memcmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1') || s[8] != ' ' ||
      s[9] < '1' || s[9] > '5' || s[10] < '0' || s[10] > '9' || s[11] < '0' || s[11] > '9' ||
      (len > 12 && s[12] != ' ' && s[12] != '\r')) {
    snprintf(err, errlen, "the proxy answered CONNECT with something other than HTTP");
    return -1;
  }
  int status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
  if (status < 200 || status > 299) {
    /* The reason phrase is the proxy's: only printable bytes of it are kept. */
    char reason[64];
    size_t k = 0;
    for (const char *r = s + 13; r < end - 4 && *r != '\r' && k + 1 < sizeof reason; r++)
      if (*r >= 0x20 && *r < 0x7f)
        reason[k++] = *r;
    reason[k] = '\0';
    snprintf(err, errlen, "the proxy refused the tunnel: %d%s%s", status, k ? " " : "", reason);
    return -1;
  }
  if (end != s + len) {
    snprintf(err, errlen, "the proxy sent bytes after its reply to CONNECT");
    return -1;
  }
  return 1;
}
