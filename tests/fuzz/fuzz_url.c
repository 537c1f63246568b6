/* Fuzz target: the pass-through URL joiner (proxy/base/url.c). The first byte picks a base URL from
 * a fixed set (with and without port, path, query, userinfo, IPv6) and where the rest of the
 * input splits into the client's rest of path and its query. Property: either the joiner
 * refuses, or the joined URL
 *   - read back as the native clients read it (authority up to the first '/', '?' or '#'), and
 *     by libcurl's URL parser (the https:// path), has the base's scheme, host and port;
 *   - has a path that starts with the base path, continues at a '/' and holds no dot segment
 *     and no escaped '/', '.' or '\' after any number of decodings (so libcurl, which resolves
 *     dot segments, leaves the path as it is);
 *   - carries the base's query and then the client's, unchanged.
 * A plain rest ("/" and [a-z0-9] segments) must never be refused. */
#include <curl/curl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/url.h"

static const char *const BASES[] = {
    "http://127.0.0.1",
    "https://api.deepseek.com",
    "http://localhost:8080/v1",
    "http://h:1/a/b/",
    "http://[::1]:9/v1?api-version=1",
    "http://u:p@h.example/v1",
    "HTTPS://API.example.com:443/openai/deployments/d?",
    "http://127.0.0",
};
#define NBASES (sizeof BASES / sizeof *BASES)

static int hexv(int c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  c |= 0x20;
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decodes every %XX of s[0..n) into out (n bytes of room); returns the new length. */
static size_t decode(const char *s, size_t n, char *out) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '%' && i + 2 < n && hexv((unsigned char)s[i + 1]) >= 0 &&
        hexv((unsigned char)s[i + 2]) >= 0) {
      out[k++] = (char)(hexv((unsigned char)s[i + 1]) * 16 + hexv((unsigned char)s[i + 2]));
      i += 2;
    } else {
      out[k++] = s[i];
    }
  }
  return k;
}

/* A segment is safe when no number of decodings makes it "." or "..", or puts a '/' or '\'
 * (or an overlong '.' or '/') into it. */
static void check_segment(const char *s, size_t n) {
  char *a = malloc(n + 1), *b = malloc(n + 1);
  if (!a || !b)
    abort();
  memcpy(a, s, n);
  size_t len = n;
  for (int round = 0; round < 8; round++) {
    if ((len == 1 && a[0] == '.') || (len == 2 && a[0] == '.' && a[1] == '.'))
      abort();
    for (size_t i = 0; i < len; i++) {
      unsigned char c = (unsigned char)a[i];
      if (c == '/' || c == '\\' || c == 0xc0 || c == 0xc1)
        abort();
    }
    size_t m = decode(a, len, b);
    if (m == len)
      break;
    memcpy(a, b, m);
    len = m;
  }
  free(a);
  free(b);
}

/* The host and port libcurl reads from url (NULL on a parse failure; caller frees both). */
static int curl_parts(const char *url, char **scheme, char **host, char **port) {
  CURLU *u = curl_url();
  if (!u)
    abort();
  int rc = curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
                   curl_url_get(u, CURLUPART_SCHEME, scheme, 0) == CURLUE_OK &&
                   curl_url_get(u, CURLUPART_HOST, host, 0) == CURLUE_OK &&
                   curl_url_get(u, CURLUPART_PORT, port, CURLU_DEFAULT_PORT) == CURLUE_OK
               ? 0
               : -1;
  curl_url_cleanup(u);
  return rc;
}

static char *curl_path(const char *url) {
  CURLU *u = curl_url();
  char *p = NULL;
  if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_PATH, &p, 0) != CURLUE_OK)
    abort();
  curl_url_cleanup(u);
  return p;
}

static int plain_rest(const char *r, size_t n) {
  if (n == 0)
    return 1;
  if (r[0] != '/')
    return 0;
  for (size_t i = 0; i < n; i++) {
    char c = r[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '/'))
      return 0;
    if (c == '/' && i + 1 < n && r[i + 1] == '/')
      return 0;
  }
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  const char *base_url = BASES[data[0] % NBASES];
  size_t split = data[1] % (size - 1);
  const char *rest = (const char *)data + 2, *query = rest + split;
  size_t rest_len = split, query_len = size - 2 - split;
  pd_url_base_t b;
  if (pd_url_parse_base(base_url, strlen(base_url), &b) != 0)
    abort();
  pd_buf_t out;
  pd_buf_init(&out);
  int rc = pd_url_join(&b, rest, rest_len, query, query_len, &out);
  if (rc != 0) {
    if (out.len != 0 || (plain_rest(rest, rest_len) && query_len == 0))
      abort();
    pd_buf_free(&out);
    return 0;
  }
  const char *u = pd_buf_data(&out);
  if (strlen(u) != out.len)
    abort(); /* no NUL inside */
  /* Scheme and authority, as the native clients split them. */
  const char *sep = strstr(u, "://");
  if (!sep || (size_t)(sep - u) != b.scheme_len || strncasecmp(u, b.scheme, b.scheme_len) != 0)
    abort();
  const char *a = sep + 3;
  size_t alen = strcspn(a, "/?#");
  if (alen != b.authority_len || memcmp(a, b.authority, alen) != 0)
    abort();
  /* The path: the base path (without trailing slashes), then '/' or the end. */
  const char *path = a + alen;
  size_t plen = strcspn(path, "?#");
  if (path[plen] == '#')
    abort();
  size_t bl = b.path_len;
  while (bl > 0 && b.path[bl - 1] == '/')
    bl--;
  if (plen < bl || memcmp(path, b.path, bl) != 0 || path[0] != '/')
    abort();
  if (plen > bl && path[bl] != '/')
    abort();
  if (rest_len == 0 ? plen != b.path_len : plen != bl + rest_len)
    abort();
  for (size_t i = 0; i < plen; i++)
    if (path[i] == '\\' || path[i] == '@' || (unsigned char)path[i] <= ' ' ||
        (unsigned char)path[i] >= 0x7f)
      abort();
  for (size_t i = 0; i + 2 < plen; i++)
    if (path[i] == '%' && ((path[i + 1] == '2' && strchr("eEfF", path[i + 2])) ||
                           (path[i + 1] == '5' && strchr("cC", path[i + 2]))))
      abort();
  for (size_t i = bl; i < plen;) {
    size_t s = i + 1, e = s;
    while (e < plen && path[e] != '/')
      e++;
    check_segment(path + s, e - s);
    i = e;
  }
  /* The query: the base's, '&', the client's. */
  const char *q = path + plen;
  size_t want_q =
      (b.query || query_len ? 1 : 0) + b.query_len + (b.query_len && query_len) + query_len;
  if (strlen(q) != want_q || (query_len && memcmp(q + want_q - query_len, query, query_len)))
    abort();
  /* libcurl reads the same scheme, host and port, and resolves no dot segment away. */
  char *s0 = NULL, *h0 = NULL, *p0 = NULL, *s1 = NULL, *h1 = NULL, *p1 = NULL;
  if (curl_parts(base_url, &s0, &h0, &p0) != 0)
    abort();
  if (curl_parts(u, &s1, &h1, &p1) != 0 || strcmp(s0, s1) || strcmp(h0, h1) || strcmp(p0, p1))
    abort();
  char *cp = curl_path(u);
  if (strlen(cp) != plen || memcmp(cp, path, plen) != 0)
    abort();
  curl_free(cp);
  curl_free(s0), curl_free(h0), curl_free(p0), curl_free(s1), curl_free(h1), curl_free(p1);
  pd_buf_free(&out);
  return 0;
}
