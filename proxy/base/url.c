/* Upstream URLs from parsed parts. See url.h.
 *
 * Why the rules are this strict: the joined URL goes to libcurl (which resolves dot segments
 * itself) and to the native clients (which send the path verbatim), and then to upstreams and
 * their front proxies, each of which may decode and normalise differently. So a client may
 * use only bytes that mean the same to all of them: no dot segment in any spelling, no escape
 * that turns into a separator after one decoding, and nothing that could be read as userinfo
 * or a Windows path separator. */
#include "base/url.h"
#include "base/utf8.h"

#include <string.h>
#include <strings.h>

/* Byte classes of RFC 3986 sections 2 and 3.3, one table lookup per byte (every request's path and
 * query pass through here): U unreserved, S sub-delims, C ':', A '@', P '/', Q '?'. */
enum { U = 1, S = 2, C = 4, A = 8, P = 16, Q = 32 };
static unsigned char url_class[256];

__attribute__((constructor)) static void url_class_init(void) {
  for (int c = 0; c < 256; c++) {
    unsigned char k = 0;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~')
      k |= U;
    if (c != 0 && strchr("!$&'()*+,;=", c))
      k |= S;
    k |= c == ':' ? C : c == '@' ? A : c == '/' ? P : c == '?' ? Q : 0;
    url_class[c] = k;
  }
}

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* The byte of the escape at p ("%XX", n bytes available), or -1 when it is not one. */
static int escape_at(const char *p, size_t n) {
  if (n < 3 || p[0] != '%')
    return -1;
  int hi = hexval((unsigned char)p[1]), lo = hexval((unsigned char)p[2]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

int pd_url_parse_base(const char *url, size_t len, pd_url_base_t *out) {
  memset(out, 0, sizeof *out);
  size_t skip;
  if (len >= 7 && strncasecmp(url, "http://", 7) == 0)
    skip = 7;
  else if (len >= 8 && strncasecmp(url, "https://", 8) == 0)
    skip = 8;
  else
    return PD_URL_EBASE;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)url[i];
    if (c <= ' ' || c >= 0x7f || c == '\\' || c == '#')
      return PD_URL_EBASE;
  }
  out->scheme = url;
  out->scheme_len = skip - 3;
  const char *a = url + skip, *end = url + len;
  const char *ae = a;
  while (ae < end && *ae != '/' && *ae != '?')
    ae++;
  if (ae == a)
    return PD_URL_EBASE;
  out->authority = a;
  out->authority_len = (size_t)(ae - a);
  /* The host follows the last '@' (userinfo may hold anything else but '/', '?' and '#'). */
  const char *h = a;
  for (const char *p = a; p < ae; p++)
    if (*p == '@')
      h = p + 1;
  const char *he;
  if (h < ae && *h == '[') {
    he = memchr(h, ']', (size_t)(ae - h));
    if (!he)
      return PD_URL_EBASE;
    he++;
  } else {
    he = h;
    while (he < ae && *he != ':')
      he++;
  }
  if (he == h || (*h == '[' && he - h < 3))
    return PD_URL_EBASE;
  out->host = h;
  out->host_len = (size_t)(he - h);
  if (he < ae) {
    if (*he != ':' || he + 1 == ae || ae - (he + 1) > 5)
      return PD_URL_EBASE;
    long port = 0;
    for (const char *p = he + 1; p < ae; p++) {
      if (*p < '0' || *p > '9')
        return PD_URL_EBASE;
      port = port * 10 + (*p - '0');
    }
    if (port < 1 || port > 65535)
      return PD_URL_EBASE;
    out->port = he + 1;
    out->port_len = (size_t)(ae - (he + 1));
  }
  const char *q = ae;
  while (q < end && *q != '?')
    q++;
  if (q == ae) {
    out->path = "/";
    out->path_len = 1;
  } else {
    out->path = ae;
    out->path_len = (size_t)(q - ae);
  }
  if (q < end) {
    out->query = q + 1;
    out->query_len = (size_t)(end - (q + 1));
  }
  return 0;
}

/* Checks one segment's bytes (no '/' inside). */
static int check_segment(const char *s, size_t n) {
  if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
    return PD_URL_EDOT;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (url_class[c] & (U | S | C))
      continue;
    if (c != '%')
      return PD_URL_ECHAR; /* '@', '\', and everything RFC 3986 wants escaped */
    int v = escape_at(s + i, n - i);
    if (v < 0 || v == '/' || v == '.' || v == '\\' || v == '%' || v < 0x20 || v == 0x7f)
      return PD_URL_EENCODED;
    if (v < 0x80) {
      i += 2;
      continue;
    }
    /* A non-ASCII byte starts a UTF-8 sequence whose every byte is escaped: overlong forms
     * (%c0%ae is '.' to a lax decoder) are refused with the rest of what is not UTF-8. */
    unsigned char seq[4];
    size_t k = 0, j = i;
    while (k < 4) {
      int b = escape_at(s + j, n - j);
      if (b < 0)
        break;
      seq[k++] = (unsigned char)b;
      j += 3;
    }
    size_t len = pd_utf8_seq(seq, k);
    if (len == 0)
      return PD_URL_EENCODED;
    i += 3 * len - 1;
  }
  return 0;
}

int pd_url_check_rest(const char *rest, size_t len) {
  if (len == 0)
    return 0;
  if (rest[0] != '/')
    return PD_URL_EPATH;
  size_t i = 0;
  while (i < len) {
    size_t s = i + 1, e = s;
    while (e < len && rest[e] != '/')
      e++;
    if (e == s && e < len)
      return PD_URL_EPATH; /* "//": an empty segment before another one */
    int rc = check_segment(rest + s, e - s);
    if (rc < 0)
      return rc;
    i = e;
  }
  return 0;
}

int pd_url_check_query(const char *query, size_t len) {
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)query[i];
    if (url_class[c] & (U | S | C | A | P | Q))
      continue;
    if (c != '%' || escape_at(query + i, len - i) < 0)
      return PD_URL_EQUERY;
    i += 2;
  }
  return 0;
}

int pd_url_join(const pd_url_base_t *b, const char *rest, size_t rest_len, const char *query,
                size_t query_len, pd_buf_t *out) {
  int rc = pd_url_check_rest(rest, rest_len);
  if (rc == 0)
    rc = pd_url_check_query(query, query_len);
  if (rc < 0)
    return rc;
  size_t plen = b->path_len;
  if (rest_len > 0)
    while (plen > 0 && b->path[plen - 1] == '/')
      plen--; /* rest brings its own '/' */
  size_t total =
      b->scheme_len + 3 + b->authority_len + plen + rest_len + 1 + b->query_len + 1 + query_len + 1;
  char *w = pd_buf_reserve(out, total);
  if (!w)
    return PD_URL_ENOMEM;
  char *p = w;
#define PUT(s, n)                                                                                  \
  do {                                                                                             \
    if (n) /* memcpy's source must not be NULL even for 0 bytes (a request without a query) */     \
      memcpy(p, s, n);                                                                             \
    p += n;                                                                                        \
  } while (0)
  PUT(b->scheme, b->scheme_len);
  PUT("://", 3);
  PUT(b->authority, b->authority_len);
  PUT(b->path, plen);
  PUT(rest, rest_len);
  if (b->query || query_len)
    *p++ = '?';
  if (b->query)
    PUT(b->query, b->query_len);
  if (b->query_len && query_len)
    *p++ = '&';
  PUT(query, query_len);
#undef PUT
  *p = '\0';
  pd_buf_commit(out, (size_t)(p - w));
  return 0;
}

const char *pd_url_strerror(int code) {
  switch (code) {
  case PD_URL_EPATH:
    return "The request path has an empty segment ('//') or does not continue after /v1 with "
           "'/'.";
  case PD_URL_EDOT:
    return "The request path must not contain '.' or '..' segments.";
  case PD_URL_EENCODED:
    return "The request path must not contain an encoded '/', '.', '\\' or '%', an encoded "
           "control character, a malformed escape, or encoded bytes that are not UTF-8.";
  case PD_URL_ECHAR:
    return "The request path must not contain '@' or '\\', and other characters outside RFC "
           "3986 must be percent-encoded.";
  case PD_URL_EQUERY:
    return "The query string has a character that must be percent-encoded, or a malformed "
           "escape.";
  case PD_URL_ENOMEM:
    return "Out of memory.";
  default:
    return "The upstream base URL cannot be used.";
  }
}
