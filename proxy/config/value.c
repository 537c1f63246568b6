/* Reading one config value (value.h): problems and their report, ${VAR} substitution, the
 * scalar readers with the exact messages --check-config prints, and the shared validators. */
#include "config/value.h"
#include "base/array.h"
#include "base/buf.h"
#include "base/url.h"
#include "base/utf8.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_PROBLEMS 200

static void oom(void) {
  fputs("ponder: out of memory\n", stderr);
  abort();
}

void *pd_value_xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p)
    oom();
  return p;
}

char *pd_value_xstrdup(const char *s) {
  if (!s)
    return NULL;
  char *d = strdup(s);
  if (!d)
    oom();
  return d;
}

char *pd_value_xstrndup(const char *s, size_t n) {
  char *d = strndup(s, n);
  if (!d)
    oom();
  return d;
}

void pd_value_set(char **dst, char *owned) {
  free(*dst);
  *dst = owned;
}

static void add(pd_buf_t *b, const char *s, size_t n) {
  if (pd_buf_append(b, s, n) < 0)
    oom();
}

static void adds(pd_buf_t *b, const char *s) {
  add(b, s, strlen(s));
}

static char *take(pd_buf_t *b) {
  add(b, "", 0);
  size_t len;
  char *p = pd_buf_steal(b, &len);
  if (!p)
    return pd_value_xstrdup("");
  return p;
}

/* ---- problems ---- */

static void vproblem(pd_value_ctx_t *c, int line, const char *fmt, va_list ap) {
  if (c->nprobs >= MAX_PROBLEMS) {
    c->dropped++;
    return;
  }
  char *msg;
  if (vasprintf(&msg, fmt, ap) < 0)
    oom();
  if (c->nprobs == c->cap) {
    void *p = pd_array_grow(c->probs, &c->cap, sizeof *c->probs, 16);
    if (!p)
      oom();
    c->probs = p;
  }
  c->probs[c->nprobs].line = line;
  c->probs[c->nprobs].msg = msg;
  c->nprobs++;
}

void pd_value_problem(pd_value_ctx_t *c, int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vproblem(c, line, fmt, ap);
  va_end(ap);
}

void pd_value_at(pd_value_ctx_t *c, const pd_yaml_node_t *n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vproblem(c, n ? n->line : 0, fmt, ap);
  va_end(ap);
}

static int problem_order(const pd_value_problem_t *p) {
  return p->line < 0 ? INT_MAX : p->line;
}

/* Sorted by line (stable), so problems found in a later pass still read top to bottom. */
char *pd_value_join(pd_value_ctx_t *c) {
  for (size_t i = 1; i < c->nprobs; i++) {
    pd_value_problem_t p = c->probs[i];
    size_t j = i;
    while (j > 0 && problem_order(&c->probs[j - 1]) > problem_order(&p)) {
      c->probs[j] = c->probs[j - 1];
      j--;
    }
    c->probs[j] = p;
  }
  pd_buf_t b;
  pd_buf_init(&b);
  char num[32];
  for (size_t i = 0; i < c->nprobs; i++) {
    if (i)
      adds(&b, "\n");
    if (c->probs[i].line >= 0) {
      adds(&b, c->file);
      if (c->probs[i].line > 0) {
        snprintf(num, sizeof num, ":%d", c->probs[i].line);
        adds(&b, num);
      }
      adds(&b, ": ");
    }
    adds(&b, c->probs[i].msg);
  }
  if (c->dropped) {
    snprintf(num, sizeof num, "%zu", c->dropped);
    adds(&b, "\n");
    adds(&b, c->file);
    adds(&b, ": ... and ");
    adds(&b, num);
    adds(&b, " more problems");
  }
  return take(&b);
}

void pd_value_ctx_free(pd_value_ctx_t *c) {
  for (size_t i = 0; i < c->nprobs; i++)
    free(c->probs[i].msg);
  free(c->probs);
  c->probs = NULL;
  c->nprobs = c->cap = 0;
}

/* ---- ${VAR} substitution ---- */

char *pd_value_expand(const char *s, const char **why) {
  pd_buf_t b;
  pd_buf_init(&b);
  add(&b, "", 0);
  const char *p = s;
  while (*p) {
    if (p[0] != '$' || p[1] != '{') {
      const char *d = strchr(p + 1, '$');
      size_t n = d ? (size_t)(d - p) : strlen(p);
      add(&b, p, n);
      p += n;
      continue;
    }
    const char *q = p + 2, *close = NULL;
    int depth = 1;
    for (const char *r = q; *r; r++) {
      if (r[0] == '$' && r[1] == '{') {
        depth++;
        r++;
      } else if (*r == '}' && --depth == 0) {
        close = r;
        break;
      }
    }
    if (!close) {
      *why = "unterminated ${";
      goto fail;
    }
    const char *ne = q;
    if (isalpha((unsigned char)*ne) || *ne == '_')
      while (isalnum((unsigned char)*ne) || *ne == '_')
        ne++;
    if (ne == q || (ne != close && (ne[0] != ':' || ne[1] != '-'))) {
      *why = "bad ${...}: expected ${NAME} or ${NAME:-default}";
      goto fail;
    }
    char *name = pd_value_xstrndup(q, (size_t)(ne - q));
    const char *val = getenv(name);
    free(name);
    if (ne != close && (!val || !*val)) {
      char *def = pd_value_xstrndup(ne + 2, (size_t)(close - ne - 2));
      char *exp = pd_value_expand(def, why);
      free(def);
      if (!exp)
        goto fail;
      adds(&b, exp);
      free(exp);
    } else if (val) {
      adds(&b, val);
    }
    p = close + 1;
  }
  return take(&b);
fail:
  pd_buf_free(&b);
  return NULL;
}

/* ---- scalar readers ---- */

static int utf8_valid(const char *s) {
  size_t n = strlen(s);
  const unsigned char *p = (const unsigned char *)s, *end = p + n;
  while (p < end) {
    if (*p < 0x80) {
      p++;
      continue;
    }
    size_t k = pd_utf8_seq(p, (size_t)(end - p));
    if (!k)
      return 0;
    p += k;
  }
  return 1;
}

int pd_value_scalar(pd_value_ctx_t *c, const pd_yaml_node_t *v, const char *key, const char *kind,
                    char **out) {
  if (pd_yaml_is_null(v))
    return PD_VALUE_ABSENT;
  if (v->kind != PD_YAML_SCALAR) {
    pd_value_at(c, v, "\"%s\" must be %s, not %s", key, kind, pd_yaml_kind_name(v));
    return PD_VALUE_BAD;
  }
  if (strlen(v->text) != v->len) {
    pd_value_at(c, v, "\"%s\" contains a NUL character", key);
    return PD_VALUE_BAD;
  }
  const char *why = NULL;
  char *s = pd_value_expand(v->text, &why);
  if (!s) {
    pd_value_at(c, v, "\"%s\": %s", key, why);
    return PD_VALUE_BAD;
  }
  if (!utf8_valid(s)) {
    pd_value_at(c, v, "\"%s\" is not valid UTF-8 after ${...} substitution", key);
    free(s);
    return PD_VALUE_BAD;
  }
  *out = s;
  return PD_VALUE_GOT;
}

int pd_value_text(pd_value_ctx_t *c, const pd_yaml_node_t *v, const char *key, char **out) {
  return pd_value_scalar(c, v, key, "a string", out);
}

int pd_value_str(pd_value_ctx_t *c, const pd_yaml_node_t *v, const char *key, char **dst) {
  char *s;
  int rc = pd_value_text(c, v, key, &s);
  if (rc == PD_VALUE_GOT)
    pd_value_set(dst, s);
  return rc;
}

int pd_value_nonempty(pd_value_ctx_t *c, const pd_yaml_node_t *v, const char *key, char **dst) {
  char *s;
  int rc = pd_value_text(c, v, key, &s);
  if (rc == PD_VALUE_GOT && !*s) {
    pd_value_at(c, v, "\"%s\" must not be empty", key);
    free(s);
    return PD_VALUE_BAD;
  }
  if (rc == PD_VALUE_GOT)
    pd_value_set(dst, s);
  return rc;
}

int pd_value_long(pd_value_ctx_t *c, const pd_yaml_node_t *v, const char *key, long min, long max,
                  long *dst) {
  char *s;
  int rc = pd_value_scalar(c, v, key, "an integer", &s);
  if (rc != PD_VALUE_GOT)
    return rc;
  char *end;
  errno = 0;
  long n = strtol(s, &end, 10);
  int numeric = *s && !isspace((unsigned char)*s) && !*end;
  if (!numeric) {
    pd_value_at(c, v, "\"%s\" must be an integer (got \"%s\")", key, s);
    rc = PD_VALUE_BAD;
  } else if (errno == ERANGE || n < min || n > max) {
    if (min == 0 && *s == '-')
      pd_value_at(c, v, "\"%s\" must not be negative (got %s)", key, s);
    else if ((max == LONG_MAX || max == INT_MAX) && (*s == '-' || n < min))
      pd_value_at(c, v, "\"%s\" must be at least %ld (got %s)", key, min, s);
    else if (max == LONG_MAX || max == INT_MAX)
      pd_value_at(c, v, "\"%s\" is too large (got %s)", key, s);
    else
      pd_value_at(c, v, "\"%s\" must be between %ld and %ld (got %s)", key, min, max, s);
    rc = PD_VALUE_BAD;
  } else {
    *dst = n;
  }
  free(s);
  return rc;
}

int pd_value_int(pd_value_ctx_t *c, const pd_yaml_node_t *v, const char *key, int min, int max,
                 int *dst) {
  long n;
  int rc = pd_value_long(c, v, key, min, max, &n);
  if (rc == PD_VALUE_GOT)
    *dst = (int)n;
  return rc;
}

int pd_value_bool(pd_value_ctx_t *c, const pd_yaml_node_t *v, const char *key, int *dst) {
  char *s;
  int rc = pd_value_scalar(c, v, key, "true or false", &s);
  if (rc != PD_VALUE_GOT)
    return rc;
  if (!strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcasecmp(s, "on")) {
    *dst = 1;
  } else if (!strcasecmp(s, "false") || !strcasecmp(s, "no") || !strcasecmp(s, "off")) {
    *dst = 0;
  } else {
    pd_value_at(c, v, "\"%s\" must be true or false (got \"%s\")", key, s);
    rc = PD_VALUE_BAD;
  }
  free(s);
  return rc;
}

int pd_value_enum(pd_value_ctx_t *c, const pd_yaml_node_t *v, const char *key,
                  const char *const *names, int *dst) {
  char *s;
  int rc = pd_value_text(c, v, key, &s);
  if (rc != PD_VALUE_GOT)
    return rc;
  for (int i = 0; names[i]; i++) {
    if (!strcmp(s, names[i])) {
      *dst = i;
      free(s);
      return PD_VALUE_GOT;
    }
  }
  pd_buf_t b;
  pd_buf_init(&b);
  for (int i = 0; names[i]; i++) {
    adds(&b, i ? (names[i + 1] ? ", " : " or ") : "");
    adds(&b, names[i]);
  }
  char *list = take(&b);
  pd_value_at(c, v, "\"%s\" must be %s (got \"%s\")", key, list, s);
  free(list);
  free(s);
  return PD_VALUE_BAD;
}

int pd_value_seq(pd_value_ctx_t *c, const pd_yaml_node_t *v, const char *key) {
  if (pd_yaml_is_null(v))
    return PD_VALUE_ABSENT;
  if (v->kind != PD_YAML_SEQ) {
    pd_value_at(c, v, "\"%s\" must be a list, not %s", key, pd_yaml_kind_name(v));
    return PD_VALUE_BAD;
  }
  return PD_VALUE_GOT;
}

/* ---- validators ---- */

/* Non-empty, and only letters, digits and the bytes of extra. */
static int chars_ok(const char *s, const char *extra) {
  if (!*s)
    return 0;
  for (; *s; s++)
    if (!isalnum((unsigned char)*s) && !strchr(extra, *s))
      return 0;
  return 1;
}

int pd_value_name_ok(const char *s) {
  return chars_ok(s, "_-.");
}

int pd_value_token_ok(const char *s) {
  return chars_ok(s, "!#$%&'*+-.^_`|~");
}

int pd_value_header_ok(const char *s) {
  return !strpbrk(s, "\r\n");
}

void pd_value_lower(char *s) {
  for (; *s; s++)
    *s = (char)tolower((unsigned char)*s);
}

void pd_value_strip_slashes(char *s) {
  size_t n = strlen(s);
  while (n > 0 && s[n - 1] == '/')
    s[--n] = '\0';
}

const char *pd_value_url_problem(const char *s) {
  size_t skip;
  if (!strncasecmp(s, "http://", 7))
    skip = 7;
  else if (!strncasecmp(s, "https://", 8))
    skip = 8;
  else
    return "must start with http:// or https://";
  if (!s[skip] || s[skip] == '/')
    return "has no host";
  for (const char *p = s; *p; p++)
    if ((unsigned char)*p <= ' ' || *p == 0x7f)
      return "must not contain spaces or control characters";
  pd_url_base_t b; /* what pass-through and forced calls are joined to (url.h) */
  if (pd_url_parse_base(s, strlen(s), &b) < 0)
    return "must be http(s)://HOST[:PORT][/PATH][?QUERY] with a port of 1..65535, ASCII only, "
           "without a fragment or a backslash";
  return NULL;
}

/* The proxy is spoken to in plain HTTP (CONNECT for https:// upstreams), so only http:// with
 * an explicit port; credentials are refused so that no secret sits in the URL (or its dump). */
const char *pd_value_proxy_problem(const char *s) {
  if (strncasecmp(s, "http://", 7) != 0)
    return "must start with http:// (an HTTP proxy: http://HOST:PORT)";
  pd_url_base_t b;
  if (pd_url_parse_base(s, strlen(s), &b) < 0 || !b.host_len)
    return "must be http://HOST:PORT with a port of 1..65535, ASCII only";
  if (memchr(b.authority, '@', b.authority_len))
    return "must not hold user:password@ (proxy credentials are not supported)";
  if (!b.port)
    return "needs a port: http://HOST:PORT";
  if (b.query || b.path_len != 1)
    return "must be http://HOST:PORT without a path or a query";
  return NULL;
}

const char *pd_value_listen(const char *s, char **host, int *port) {
  const char *colon;
  size_t hlen;
  const char *h = s;
  if (*s == '[') {
    const char *close = strchr(s, ']');
    if (!close || close[1] != ':')
      return "must be HOST:PORT (IPv6 as [ADDR]:PORT)";
    h = s + 1;
    hlen = (size_t)(close - h);
    colon = close + 1;
  } else {
    colon = strrchr(s, ':');
    if (!colon)
      return "must be HOST:PORT";
    hlen = (size_t)(colon - s);
    if (memchr(s, ':', hlen))
      return "must be HOST:PORT (write an IPv6 address as [ADDR]:PORT)";
  }
  if (hlen == 0)
    return "must be HOST:PORT with a non-empty HOST (0.0.0.0 for every interface)";
  for (size_t i = 0; i < hlen; i++)
    if ((unsigned char)h[i] <= ' ' || h[i] == '/' || h[i] == 0x7f)
      return "has a bad character in HOST";
  const char *p = colon + 1;
  if (!*p)
    return "must be HOST:PORT";
  long v = 0;
  for (; *p; p++) {
    if (!isdigit((unsigned char)*p))
      return "must be HOST:PORT with a numeric PORT";
    v = v * 10 + (*p - '0');
    if (v > 65535)
      return "has a PORT above 65535";
  }
  *host = pd_value_xstrndup(h, hlen);
  *port = (int)v;
  return NULL;
}
