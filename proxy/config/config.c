/* ponder configuration: loading (libyaml document API), validation, defaults and dump.
 *
 * The loader walks the YAML node graph against the schema of SPEC section 3 and keeps going
 * after a problem, so one run of --check-config reports every mistake in a file. Every string
 * it stores is heap-owned by the config. */
#include "config/config.h"
#include "base/log.h"
#include "base/url.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define MAX_ROUNDS 32
#define MAX_WORKERS 1024
#define MAX_PROBLEMS 200

#define PRINTF(a, b) __attribute__((format(printf, a, b)))

static const char CHATML_SYSTEM[] = "<|im_start|>system\n{content}<|im_end|>\n";
static const char CHATML_USER[] = "<|im_start|>user\n{content}<|im_end|>\n";
static const char CHATML_ASSISTANT[] = "<|im_start|>assistant\n{content}<|im_end|>\n";
static const char CHATML_START[] = "<|im_start|>assistant\n";

static const char *const MODE_NAMES[] = {"chat", "prefill", "completions", NULL};
static const char *const DIALECT_NAMES[] = {"vllm", "deepseek", "mistral", "llamacpp", NULL};
static const char *const REASONING_NAMES[] = {"field", "inline", "hidden", NULL};
static const char *const LEVEL_NAMES[] = {"error", "warn", "info", "debug", NULL};
static const char *const LIMIT_PARAMS[] = {"max_tokens", "max_completion_tokens", NULL};

/* Allocation failures while loading a config are fatal: there is nothing sensible to serve. */
static void oom(void) {
  fputs("ponder: out of memory\n", stderr);
  abort();
}

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p)
    oom();
  return p;
}

static void *xrealloc(void *p, size_t n) {
  p = realloc(p, n ? n : 1);
  if (!p)
    oom();
  return p;
}

static char *xstrdup(const char *s) {
  if (!s)
    return NULL;
  char *d = strdup(s);
  if (!d)
    oom();
  return d;
}

static char *xstrndup(const char *s, size_t n) {
  char *d = strndup(s, n);
  if (!d)
    oom();
  return d;
}

/* Replaces an owned string. */
static void set_str(char **dst, char *owned) {
  free(*dst);
  *dst = owned;
}

/* ---- growable string ---- */

typedef struct {
  char *p;
  size_t len, cap;
} sbuf_t;

static void sb_add(sbuf_t *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    b->cap = (b->len + n + 1) * 2;
    b->p = xrealloc(b->p, b->cap);
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void sb_adds(sbuf_t *b, const char *s) {
  sb_add(b, s, strlen(s));
}

static char *sb_take(sbuf_t *b) {
  if (!b->p)
    return xstrdup("");
  char *p = b->p;
  b->p = NULL;
  b->len = b->cap = 0;
  return p;
}

/* ---- problems ---- */

typedef struct {
  int line; /* > 0: a line of the file; 0: the file itself; < 0: not about the file */
  char *msg;
} problem_t;

typedef struct {
  const char *file;
  yaml_document_t *doc;
  problem_t *probs;
  size_t nprobs, cap, dropped;
} ctx_t;

static void vproblem(ctx_t *c, int line, const char *fmt, va_list ap) {
  if (c->nprobs >= MAX_PROBLEMS) {
    c->dropped++;
    return;
  }
  char *msg;
  if (vasprintf(&msg, fmt, ap) < 0)
    oom();
  if (c->nprobs == c->cap) {
    c->cap = c->cap ? c->cap * 2 : 16;
    c->probs = xrealloc(c->probs, c->cap * sizeof *c->probs);
  }
  c->probs[c->nprobs].line = line;
  c->probs[c->nprobs].msg = msg;
  c->nprobs++;
}

static PRINTF(3, 4) void problem(ctx_t *c, int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vproblem(c, line, fmt, ap);
  va_end(ap);
}

static int line_of(const yaml_node_t *n) {
  return n ? (int)n->start_mark.line + 1 : 0;
}

/* A problem located at a node's first line. */
static PRINTF(3, 4) void at(ctx_t *c, const yaml_node_t *n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vproblem(c, line_of(n), fmt, ap);
  va_end(ap);
}

static int problem_order(const problem_t *p) {
  return p->line < 0 ? INT_MAX : p->line;
}

/* Sorted by line (stable), so problems found in a later pass still read top to bottom. */
static char *join_problems(ctx_t *c) {
  for (size_t i = 1; i < c->nprobs; i++) {
    problem_t p = c->probs[i];
    size_t j = i;
    while (j > 0 && problem_order(&c->probs[j - 1]) > problem_order(&p)) {
      c->probs[j] = c->probs[j - 1];
      j--;
    }
    c->probs[j] = p;
  }
  sbuf_t b = {0};
  char num[32];
  for (size_t i = 0; i < c->nprobs; i++) {
    if (i)
      sb_adds(&b, "\n");
    if (c->probs[i].line >= 0) {
      sb_adds(&b, c->file);
      if (c->probs[i].line > 0) {
        snprintf(num, sizeof num, ":%d", c->probs[i].line);
        sb_adds(&b, num);
      }
      sb_adds(&b, ": ");
    }
    sb_adds(&b, c->probs[i].msg);
  }
  if (c->dropped) {
    snprintf(num, sizeof num, "%zu", c->dropped);
    sb_adds(&b, "\n");
    sb_adds(&b, c->file);
    sb_adds(&b, ": ... and ");
    sb_adds(&b, num);
    sb_adds(&b, " more problems");
  }
  return sb_take(&b);
}

static void free_problems(ctx_t *c) {
  for (size_t i = 0; i < c->nprobs; i++)
    free(c->probs[i].msg);
  free(c->probs);
}

/* ---- small validators ---- */

static int utf8_valid(const unsigned char *s) {
  while (*s) {
    unsigned char b = *s;
    int n;
    uint32_t cp;
    if (b < 0x80) {
      s++;
      continue;
    } else if ((b & 0xE0) == 0xC0) {
      n = 1, cp = b & 0x1F;
    } else if ((b & 0xF0) == 0xE0) {
      n = 2, cp = b & 0x0F;
    } else if ((b & 0xF8) == 0xF0) {
      n = 3, cp = b & 0x07;
    } else {
      return 0;
    }
    for (int i = 1; i <= n; i++) {
      if ((s[i] & 0xC0) != 0x80)
        return 0;
      cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return 0;
    s += n + 1;
  }
  return 1;
}

/* Route, variant and upstream names end up in headers, log lines and metric labels. */
static int name_valid(const char *s) {
  if (!*s)
    return 0;
  for (; *s; s++)
    if (!isalnum((unsigned char)*s) && !strchr("_-.", *s))
      return 0;
  return 1;
}

/* RFC 9110 token characters (header field names). */
static int token_valid(const char *s) {
  if (!*s)
    return 0;
  for (; *s; s++)
    if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
      return 0;
  return 1;
}

/* Header values (and api keys, which become one) must not smuggle in another header. */
static int header_value_valid(const char *s) {
  return !strpbrk(s, "\r\n");
}

static void lower(char *s) {
  for (; *s; s++)
    *s = (char)tolower((unsigned char)*s);
}

/* NULL when s is an acceptable base URL, else why not. */
static const char *url_problem(const char *s) {
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

/* Trailing slashes go, so that base_url + "/chat/completions" has exactly one. */
static void strip_slashes(char *s) {
  size_t n = strlen(s);
  while (n > 0 && s[n - 1] == '/')
    s[--n] = '\0';
}

/* "HOST:PORT" or "[V6]:PORT"; the host is stored without brackets. */
static const char *parse_listen(const char *s, char **host, int *port) {
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
  *host = xstrndup(h, hlen);
  *port = (int)v;
  return NULL;
}

/* ---- ${VAR} substitution ---- */

/* Expands ${VAR} and ${VAR:-default} (the default also when VAR is empty, as in sh; defaults
 * may themselves hold ${...}). Returns a heap string, or NULL with *why set. */
static char *expand(const char *s, const char **why) {
  sbuf_t b = {0};
  sb_add(&b, "", 0);
  const char *p = s;
  while (*p) {
    if (p[0] != '$' || p[1] != '{') {
      const char *d = strchr(p + 1, '$');
      size_t n = d ? (size_t)(d - p) : strlen(p);
      sb_add(&b, p, n);
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
    char *name = xstrndup(q, (size_t)(ne - q));
    const char *val = getenv(name);
    free(name);
    if (ne != close && (!val || !*val)) {
      char *def = xstrndup(ne + 2, (size_t)(close - ne - 2));
      char *exp = expand(def, why);
      free(def);
      if (!exp)
        goto fail;
      sb_adds(&b, exp);
      free(exp);
    } else if (val) {
      sb_adds(&b, val);
    }
    p = close + 1;
  }
  return sb_take(&b);
fail:
  free(b.p);
  return NULL;
}

/* ---- node access ---- */

enum { BAD = -1, ABSENT = 0, GOT = 1 };

static yaml_node_t *node(ctx_t *c, int id) {
  return yaml_document_get_node(c->doc, id);
}

/* A plain empty, "~" or "null" scalar: the key is treated as absent and its default applies. */
static int is_null(const yaml_node_t *n) {
  if (!n)
    return 1;
  if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
    return 0;
  const char *v = (const char *)n->data.scalar.value;
  return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL");
}

static const char *type_name(const yaml_node_t *n) {
  switch (n->type) {
  case YAML_MAPPING_NODE:
    return "a mapping";
  case YAML_SEQUENCE_NODE:
    return "a list";
  default:
    return "a scalar";
  }
}

/* The substituted text of a scalar value; kind names what was expected ("a string").
 * GOT: *out is heap; ABSENT: null; BAD: reported. */
static int get_scalar(ctx_t *c, yaml_node_t *v, const char *key, const char *kind, char **out) {
  if (is_null(v))
    return ABSENT;
  if (v->type != YAML_SCALAR_NODE) {
    at(c, v, "\"%s\" must be %s, not %s", key, kind, type_name(v));
    return BAD;
  }
  const char *raw = (const char *)v->data.scalar.value;
  if (strlen(raw) != v->data.scalar.length) {
    at(c, v, "\"%s\" contains a NUL character", key);
    return BAD;
  }
  const char *why = NULL;
  char *s = expand(raw, &why);
  if (!s) {
    at(c, v, "\"%s\": %s", key, why);
    return BAD;
  }
  if (!utf8_valid((const unsigned char *)s)) {
    at(c, v, "\"%s\" is not valid UTF-8 after ${...} substitution", key);
    free(s);
    return BAD;
  }
  *out = s;
  return GOT;
}

static int get_text(ctx_t *c, yaml_node_t *v, const char *key, char **out) {
  return get_scalar(c, v, key, "a string", out);
}

/* A string value replacing *dst (which the caller owns). */
static int get_str(ctx_t *c, yaml_node_t *v, const char *key, char **dst) {
  char *s;
  int rc = get_text(c, v, key, &s);
  if (rc == GOT)
    set_str(dst, s);
  return rc;
}

/* A string that must not be empty. */
static int get_nonempty(ctx_t *c, yaml_node_t *v, const char *key, char **dst) {
  char *s;
  int rc = get_text(c, v, key, &s);
  if (rc == GOT && !*s) {
    at(c, v, "\"%s\" must not be empty", key);
    free(s);
    return BAD;
  }
  if (rc == GOT)
    set_str(dst, s);
  return rc;
}

static int get_long(ctx_t *c, yaml_node_t *v, const char *key, long min, long max, long *dst) {
  char *s;
  int rc = get_scalar(c, v, key, "an integer", &s);
  if (rc != GOT)
    return rc;
  char *end;
  errno = 0;
  long n = strtol(s, &end, 10);
  int numeric = *s && !isspace((unsigned char)*s) && !*end;
  if (!numeric) {
    at(c, v, "\"%s\" must be an integer (got \"%s\")", key, s);
    rc = BAD;
  } else if (errno == ERANGE || n < min || n > max) {
    if (min == 0 && *s == '-')
      at(c, v, "\"%s\" must not be negative (got %s)", key, s);
    else if ((max == LONG_MAX || max == INT_MAX) && (*s == '-' || n < min))
      at(c, v, "\"%s\" must be at least %ld (got %s)", key, min, s);
    else if (max == LONG_MAX || max == INT_MAX)
      at(c, v, "\"%s\" is too large (got %s)", key, s);
    else
      at(c, v, "\"%s\" must be between %ld and %ld (got %s)", key, min, max, s);
    rc = BAD;
  } else {
    *dst = n;
  }
  free(s);
  return rc;
}

static int get_int(ctx_t *c, yaml_node_t *v, const char *key, int min, int max, int *dst) {
  long n;
  int rc = get_long(c, v, key, min, max, &n);
  if (rc == GOT)
    *dst = (int)n;
  return rc;
}

static int get_bool(ctx_t *c, yaml_node_t *v, const char *key, int *dst) {
  char *s;
  int rc = get_scalar(c, v, key, "true or false", &s);
  if (rc != GOT)
    return rc;
  if (!strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcasecmp(s, "on")) {
    *dst = 1;
  } else if (!strcasecmp(s, "false") || !strcasecmp(s, "no") || !strcasecmp(s, "off")) {
    *dst = 0;
  } else {
    at(c, v, "\"%s\" must be true or false (got \"%s\")", key, s);
    rc = BAD;
  }
  free(s);
  return rc;
}

static int get_enum(ctx_t *c, yaml_node_t *v, const char *key, const char *const *names, int *dst) {
  char *s;
  int rc = get_text(c, v, key, &s);
  if (rc != GOT)
    return rc;
  for (int i = 0; names[i]; i++) {
    if (!strcmp(s, names[i])) {
      *dst = i;
      free(s);
      return GOT;
    }
  }
  sbuf_t b = {0};
  for (int i = 0; names[i]; i++) {
    sb_adds(&b, i ? (names[i + 1] ? ", " : " or ") : "");
    sb_adds(&b, names[i]);
  }
  at(c, v, "\"%s\" must be %s (got \"%s\")", key, b.p, s);
  free(b.p);
  free(s);
  return BAD;
}

/* Starts a list. GOT: items and n set; ABSENT: null; BAD: reported. */
static int get_seq(ctx_t *c, yaml_node_t *v, const char *key, yaml_node_item_t **items, size_t *n) {
  if (is_null(v))
    return ABSENT;
  if (v->type != YAML_SEQUENCE_NODE) {
    at(c, v, "\"%s\" must be a list, not %s", key, type_name(v));
    return BAD;
  }
  *items = v->data.sequence.items.start;
  *n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
  return GOT;
}

/* ---- mapping iteration: unknown and duplicate keys are reported here, once ---- */

typedef struct {
  ctx_t *c;
  yaml_node_t *map;
  yaml_node_pair_t *cur;
  const char *what;
  const char *const *known;
} iter_t;

static int edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 40 || lb > 40)
    return 99;
  int d[41][41];
  for (size_t i = 0; i <= la; i++)
    d[i][0] = (int)i;
  for (size_t j = 0; j <= lb; j++)
    d[0][j] = (int)j;
  for (size_t i = 1; i <= la; i++) {
    for (size_t j = 1; j <= lb; j++) {
      int m = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
      if (d[i - 1][j] + 1 < m)
        m = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < m)
        m = d[i][j - 1] + 1;
      d[i][j] = m;
    }
  }
  return d[la][lb];
}

/* GOT when v is a mapping, ABSENT when null, BAD (reported) otherwise. */
static int iter_start(iter_t *it, ctx_t *c, yaml_node_t *v, const char *what,
                      const char *const *known) {
  memset(it, 0, sizeof *it);
  if (is_null(v))
    return ABSENT;
  if (v->type != YAML_MAPPING_NODE) {
    at(c, v, "%s must be a mapping, not %s", what, type_name(v));
    return BAD;
  }
  it->c = c;
  it->map = v;
  it->cur = v->data.mapping.pairs.start;
  it->what = what;
  it->known = known;
  return GOT;
}

/* The next known key that is not a repeat; 0 at the end. */
static int iter_next(iter_t *it, const char **key, yaml_node_t **kn, yaml_node_t **vn) {
  if (!it->map)
    return 0;
  ctx_t *c = it->c;
  while (it->cur < it->map->data.mapping.pairs.top) {
    yaml_node_pair_t *pair = it->cur++;
    yaml_node_t *k = node(c, pair->key), *v = node(c, pair->value);
    if (!k || k->type != YAML_SCALAR_NODE) {
      at(c, k, "keys in %s must be strings", it->what);
      continue;
    }
    const char *name = (const char *)k->data.scalar.value;
    int dup = 0;
    for (yaml_node_pair_t *q = it->map->data.mapping.pairs.start; q < pair; q++) {
      yaml_node_t *qk = node(c, q->key);
      if (qk && qk->type == YAML_SCALAR_NODE && !strcmp((const char *)qk->data.scalar.value, name))
        dup = 1;
    }
    if (dup) {
      at(c, k, "duplicate key \"%s\" in %s", name, it->what);
      continue;
    }
    if (it->known) {
      int ok = 0, best = 3;
      const char *hint = NULL;
      for (const char *const *kk = it->known; *kk; kk++) {
        if (!strcmp(*kk, name)) {
          ok = 1;
          break;
        }
        int d = edit_distance(*kk, name);
        if (d < best) {
          best = d;
          hint = *kk;
        }
      }
      if (!ok) {
        if (hint)
          at(c, k, "unknown key \"%s\" in %s (did you mean \"%s\"?)", name, it->what, hint);
        else
          at(c, k, "unknown key \"%s\" in %s", name, it->what);
        continue;
      }
    }
    *key = name;
    *kn = k;
    *vn = v;
    return 1;
  }
  return 0;
}

/* ---- policies ---- */

void pd_config_policy_defaults(pd_policy_t *p) {
  memset(p, 0, sizeof *p);
  p->mode = PD_MODE_CHAT;
  p->rounds = 2;
  p->think_budget = 8192;
  p->answer_budget = 2048;
  p->min_think_tokens = 0;
  p->max_think_tokens = 0;
  p->prompts.think = "Think for up to {think_budget} tokens.";
  p->prompts.wait = "Wait? Did I make a mistake?";
  p->prompts.cont = "Continue your thinking where you left off, correcting any mistakes if there "
                    "is any. Think for up to {think_budget} tokens.";
  p->prompts.answer = "Now provide the final answer. Respond in under {answer_budget} tokens!!!";
  p->prefill.dialect = PD_DIALECT_VLLM;
  p->prefill.think_open = "<think>\n";
  p->prefill.think_close = "</think>";
  p->prefill.wait = "Wait";
  p->prefill.answer_open = "\n\n";
  p->prefill.length_cut = "\nFinal Answer:";
  p->tmpl.system = (char *)CHATML_SYSTEM;
  p->tmpl.user = (char *)CHATML_USER;
  p->tmpl.assistant = (char *)CHATML_ASSISTANT;
  p->tmpl.assistant_start = (char *)CHATML_START;
  p->template_name = "chatml";
}

/* Deep copy: every string of dst becomes heap-owned. */
static void policy_copy(pd_policy_t *dst, const pd_policy_t *src) {
  *dst = *src;
  dst->prompts.think = xstrdup(src->prompts.think);
  dst->prompts.wait = xstrdup(src->prompts.wait);
  dst->prompts.cont = xstrdup(src->prompts.cont);
  dst->prompts.answer = xstrdup(src->prompts.answer);
  dst->prefill.think_open = xstrdup(src->prefill.think_open);
  dst->prefill.think_close = xstrdup(src->prefill.think_close);
  dst->prefill.wait = xstrdup(src->prefill.wait);
  dst->prefill.answer_open = xstrdup(src->prefill.answer_open);
  dst->prefill.length_cut = xstrdup(src->prefill.length_cut);
  dst->tmpl.system = xstrdup(src->tmpl.system);
  dst->tmpl.user = xstrdup(src->tmpl.user);
  dst->tmpl.assistant = xstrdup(src->tmpl.assistant);
  dst->tmpl.assistant_start = xstrdup(src->tmpl.assistant_start);
  dst->template_name = xstrdup(src->template_name);
}

static void policy_init(pd_policy_t *p) {
  pd_policy_t d;
  pd_config_policy_defaults(&d);
  policy_copy(p, &d);
}

static void policy_free(pd_policy_t *p) {
  free(p->prompts.think);
  free(p->prompts.wait);
  free(p->prompts.cont);
  free(p->prompts.answer);
  free(p->prefill.think_open);
  free(p->prefill.think_close);
  free(p->prefill.wait);
  free(p->prefill.answer_open);
  free(p->prefill.length_cut);
  free(p->tmpl.system);
  free(p->tmpl.user);
  free(p->tmpl.assistant);
  free(p->tmpl.assistant_start);
  free(p->template_name);
}

static const char *const PROMPT_KEYS[] = {"think", "wait", "continue", "answer", NULL};
static const char *const PREFILL_KEYS[] = {"dialect",     "think_open", "think_close", "wait",
                                           "answer_open", "length_cut", NULL};
static const char *const TEMPLATE_KEYS[] = {"system", "user", "assistant", "assistant_start", NULL};
static const char *const FORCING_KEYS[] = {"mode",
                                           "rounds",
                                           "think_budget",
                                           "answer_budget",
                                           "min_think_tokens",
                                           "max_think_tokens",
                                           "prompts",
                                           "prefill",
                                           "template",
                                           NULL};

static void set_chatml(pd_policy_t *p) {
  set_str(&p->tmpl.system, xstrdup(CHATML_SYSTEM));
  set_str(&p->tmpl.user, xstrdup(CHATML_USER));
  set_str(&p->tmpl.assistant, xstrdup(CHATML_ASSISTANT));
  set_str(&p->tmpl.assistant_start, xstrdup(CHATML_START));
  set_str(&p->template_name, xstrdup("chatml"));
}

static void parse_template(ctx_t *c, yaml_node_t *v, pd_policy_t *p) {
  static const char usage[] = "\"template\" must be \"chatml\" or a mapping of system, user, "
                              "assistant and assistant_start";
  if (is_null(v))
    return;
  if (v->type == YAML_SEQUENCE_NODE) {
    at(c, v, "%s, not a list", usage);
    return;
  }
  if (v->type == YAML_SCALAR_NODE) {
    char *s;
    if (get_text(c, v, "template", &s) != GOT)
      return;
    if (!strcmp(s, "chatml"))
      set_chatml(p);
    else
      at(c, v, "%s (got \"%s\")", usage, s);
    free(s);
    return;
  }
  iter_t it;
  const char *key;
  yaml_node_t *kn, *vn;
  char *parts[4] = {0};
  int ok = 1;
  iter_start(&it, c, v, "template", TEMPLATE_KEYS);
  while (iter_next(&it, &key, &kn, &vn)) {
    int i = 0;
    while (strcmp(TEMPLATE_KEYS[i], key))
      i++;
    int rc = get_str(c, vn, key, &parts[i]);
    if (rc == BAD)
      ok = 0;
    else if (i < 3 && rc == GOT && !strstr(parts[i], "{content}")) {
      at(c, vn, "template \"%s\" must contain \"{content}\"", key);
      ok = 0;
    }
  }
  for (int i = 0; i < 4; i++) {
    if (!parts[i]) {
      at(c, v, "template is missing \"%s\"", TEMPLATE_KEYS[i]);
      ok = 0;
    }
  }
  if (ok) {
    set_str(&p->tmpl.system, parts[0]);
    set_str(&p->tmpl.user, parts[1]);
    set_str(&p->tmpl.assistant, parts[2]);
    set_str(&p->tmpl.assistant_start, parts[3]);
    set_str(&p->template_name, xstrdup("custom"));
  } else {
    for (int i = 0; i < 4; i++)
      free(parts[i]);
  }
}

/* Overrides the keys given in a `forcing` block on top of *p (already the default policy). */
static void parse_forcing(ctx_t *c, yaml_node_t *v, pd_policy_t *p) {
  iter_t it, sub;
  const char *key, *skey;
  yaml_node_t *kn, *vn, *skn, *svn, *min_node = NULL;
  int e;
  iter_start(&it, c, v, "forcing", FORCING_KEYS);
  while (iter_next(&it, &key, &kn, &vn)) {
    if (!strcmp(key, "mode")) {
      if (get_enum(c, vn, key, MODE_NAMES, &e) == GOT)
        p->mode = (pd_mode_t)e;
    } else if (!strcmp(key, "rounds")) {
      get_int(c, vn, key, 0, MAX_ROUNDS, &p->rounds);
    } else if (!strcmp(key, "think_budget")) {
      get_int(c, vn, key, 1, INT_MAX, &p->think_budget);
    } else if (!strcmp(key, "answer_budget")) {
      get_int(c, vn, key, 1, INT_MAX, &p->answer_budget);
    } else if (!strcmp(key, "min_think_tokens")) {
      get_int(c, vn, key, 0, INT_MAX, &p->min_think_tokens);
      min_node = vn;
    } else if (!strcmp(key, "max_think_tokens")) {
      get_int(c, vn, key, 0, INT_MAX, &p->max_think_tokens);
    } else if (!strcmp(key, "prompts")) {
      iter_start(&sub, c, vn, "prompts", PROMPT_KEYS);
      while (iter_next(&sub, &skey, &skn, &svn)) {
        char **dst = !strcmp(skey, "think")      ? &p->prompts.think
                     : !strcmp(skey, "wait")     ? &p->prompts.wait
                     : !strcmp(skey, "continue") ? &p->prompts.cont
                                                 : &p->prompts.answer;
        get_str(c, svn, skey, dst);
      }
    } else if (!strcmp(key, "prefill")) {
      iter_start(&sub, c, vn, "prefill", PREFILL_KEYS);
      while (iter_next(&sub, &skey, &skn, &svn)) {
        if (!strcmp(skey, "dialect")) {
          if (get_enum(c, svn, skey, DIALECT_NAMES, &e) == GOT)
            p->prefill.dialect = (pd_dialect_t)e;
          continue;
        }
        char **dst = !strcmp(skey, "think_open")    ? &p->prefill.think_open
                     : !strcmp(skey, "think_close") ? &p->prefill.think_close
                     : !strcmp(skey, "wait")        ? &p->prefill.wait
                     : !strcmp(skey, "answer_open") ? &p->prefill.answer_open
                                                    : &p->prefill.length_cut;
        get_str(c, svn, skey, dst);
      }
    } else {
      parse_template(c, vn, p);
    }
  }
  if (p->min_think_tokens > 0 && p->max_think_tokens > 0 &&
      p->min_think_tokens > p->max_think_tokens)
    at(c, min_node ? min_node : v, "min_think_tokens (%d) is above max_think_tokens (%d)",
       p->min_think_tokens, p->max_think_tokens);
}

/* ---- upstreams ---- */

/* A day: a stall longer than that is no stall bound at all (0 says so), and this keeps the
 * backends' "last byte + stall" sums far from overflowing. */
#define STALL_TIMEOUT_MAX_MS 86400000L

static const char *const UPSTREAM_KEYS[] = {"name",
                                            "base_url",
                                            "api_key",
                                            "headers",
                                            "connect_timeout_ms",
                                            "timeout_ms",
                                            "stall_timeout_ms",
                                            "retries",
                                            "max_connections",
                                            "token_limit_param",
                                            "http2",
                                            "tls",
                                            NULL};

static void upstream_defaults(pd_upstream_cfg_t *u) {
  memset(u, 0, sizeof *u);
  u->connect_timeout_ms = 10000;
  u->timeout_ms = 600000;
  u->stall_timeout_ms = 120000;
  u->retries = 2;
  u->max_connections = 256;
  u->token_limit_param = xstrdup("max_tokens");
  u->tls_verify = 1;
}

static void upstream_free(pd_upstream_cfg_t *u) {
  free(u->name);
  free(u->base_url);
  free(u->api_key);
  for (size_t i = 0; i < u->nheaders; i++) {
    free(u->headers[i].name);
    free(u->headers[i].value);
  }
  free(u->headers);
  free(u->token_limit_param);
  free(u->tls_ca_file);
  free(u->tls_cert_file);
  free(u->tls_key_file);
}

static void parse_headers(ctx_t *c, yaml_node_t *v, pd_upstream_cfg_t *u) {
  iter_t it;
  const char *key;
  yaml_node_t *kn, *vn;
  if (iter_start(&it, c, v, "headers", NULL) != GOT)
    return;
  u->headers = xcalloc(v->data.mapping.pairs.top - v->data.mapping.pairs.start, sizeof *u->headers);
  while (iter_next(&it, &key, &kn, &vn)) {
    if (!token_valid(key)) {
      at(c, kn, "header name \"%s\" is not a valid HTTP header name", key);
      continue;
    }
    char *name = xstrdup(key);
    lower(name);
    int dup = 0;
    for (size_t i = 0; i < u->nheaders; i++)
      dup |= !strcmp(u->headers[i].name, name);
    if (dup) {
      at(c, kn, "header \"%s\" is given twice (header names are case-insensitive)", key);
      free(name);
      continue;
    }
    char *val = NULL;
    int rc = get_text(c, vn, key, &val);
    if (rc == ABSENT)
      val = xstrdup("");
    if (rc == BAD) {
      free(name);
      continue;
    }
    if (!header_value_valid(val)) {
      at(c, vn, "header \"%s\" must not contain a line break", key);
      free(name);
      free(val);
      continue;
    }
    u->headers[u->nheaders].name = name;
    u->headers[u->nheaders].value = val;
    u->nheaders++;
  }
}

/* ---- upstream tls ---- */

static const char *const TLS_KEYS[] = {"ca_file", "cert_file",   "key_file",
                                       "verify",  "server_name", NULL};

/* A file path from the tls block: relative ones are taken from the config file's folder (so a
 * reload from another working directory reads the same files); it must be readable now. */
static void get_tls_file(ctx_t *c, yaml_node_t *v, const char *key, char **dst) {
  char *path = NULL;
  if (get_nonempty(c, v, key, &path) != GOT)
    return;
  const char *slash = c->file ? strrchr(c->file, '/') : NULL;
  if (path[0] != '/' && slash) {
    char *full;
    if (asprintf(&full, "%.*s/%s", (int)(slash - c->file), c->file, path) < 0)
      oom();
    free(path);
    path = full;
  }
  struct stat st;
  if (access(path, R_OK) != 0 || stat(path, &st) != 0)
    at(c, v, "tls \"%s\": cannot read %s: %s", key, path, strerror(errno));
  else if (!S_ISREG(st.st_mode))
    at(c, v, "tls \"%s\": %s is not a file", key, path);
  set_str(dst, path);
}

static void parse_tls(ctx_t *c, yaml_node_t *v, pd_upstream_cfg_t *u) {
  iter_t it;
  const char *key;
  yaml_node_t *kn, *vn, *cert = NULL, *keyn = NULL;
  if (iter_start(&it, c, v, "tls", TLS_KEYS) != GOT)
    return;
  while (iter_next(&it, &key, &kn, &vn)) {
    if (!strcmp(key, "ca_file")) {
      get_tls_file(c, vn, key, &u->tls_ca_file);
    } else if (!strcmp(key, "cert_file")) {
      cert = kn;
      get_tls_file(c, vn, key, &u->tls_cert_file);
    } else if (!strcmp(key, "key_file")) {
      keyn = kn;
      get_tls_file(c, vn, key, &u->tls_key_file);
    } else if (!strcmp(key, "verify")) {
      get_bool(c, vn, key, &u->tls_verify);
    } else {
      at(c, kn,
         "tls \"server_name\" is not supported yet (the name checked is the base_url's host)");
    }
  }
  if (cert && !keyn)
    at(c, cert, "tls \"cert_file\" needs \"key_file\" (the client certificate's private key)");
  if (keyn && !cert)
    at(c, keyn, "tls \"key_file\" needs \"cert_file\" (the client certificate)");
}

static void parse_upstream(ctx_t *c, pd_config_t *cfg, size_t idx, yaml_node_t *v) {
  pd_upstream_cfg_t *u = &cfg->upstreams[idx];
  iter_t it;
  const char *key;
  yaml_node_t *kn, *vn;
  int e;
  upstream_defaults(u);
  int have_url = 0;
  yaml_node_t *http2_node = v;
  int rc = iter_start(&it, c, v, "an upstream", UPSTREAM_KEYS);
  if (rc == ABSENT)
    at(c, v, "an upstream must be a mapping with at least \"name\" and \"base_url\"");
  if (rc != GOT)
    return;
  while (iter_next(&it, &key, &kn, &vn)) {
    if (!strcmp(key, "name")) {
      if (get_nonempty(c, vn, key, &u->name) != GOT)
        continue;
      if (!name_valid(u->name)) {
        at(c, vn, "upstream name \"%s\" may only hold letters, digits, '_', '-' and '.'", u->name);
        continue;
      }
      for (size_t i = 0; i < idx; i++)
        if (cfg->upstreams[i].name && !strcmp(cfg->upstreams[i].name, u->name))
          at(c, vn, "duplicate upstream name \"%s\"", u->name);
    } else if (!strcmp(key, "base_url")) {
      if (get_nonempty(c, vn, key, &u->base_url) != GOT)
        continue;
      have_url = 1;
      const char *why = url_problem(u->base_url);
      if (why)
        at(c, vn, "\"base_url\" %s (got \"%s\")", why, u->base_url);
      strip_slashes(u->base_url);
    } else if (!strcmp(key, "api_key")) {
      if (get_str(c, vn, key, &u->api_key) != GOT)
        continue;
      /* ${OPENAI_API_KEY} with the variable unset: forward the client's key instead. */
      if (!*u->api_key)
        set_str(&u->api_key, NULL);
      else if (!header_value_valid(u->api_key))
        at(c, vn, "\"api_key\" must not contain a line break");
    } else if (!strcmp(key, "headers")) {
      parse_headers(c, vn, u);
    } else if (!strcmp(key, "connect_timeout_ms")) {
      get_long(c, vn, key, 0, LONG_MAX, &u->connect_timeout_ms);
    } else if (!strcmp(key, "timeout_ms")) {
      get_long(c, vn, key, 0, LONG_MAX, &u->timeout_ms);
    } else if (!strcmp(key, "stall_timeout_ms")) {
      get_long(c, vn, key, 0, STALL_TIMEOUT_MAX_MS, &u->stall_timeout_ms);
    } else if (!strcmp(key, "retries")) {
      get_int(c, vn, key, 0, INT_MAX, &u->retries);
    } else if (!strcmp(key, "max_connections")) {
      get_int(c, vn, key, 1, INT_MAX, &u->max_connections);
    } else if (!strcmp(key, "http2")) {
      get_bool(c, vn, key, &u->http2);
      http2_node = vn;
    } else if (!strcmp(key, "tls")) {
      parse_tls(c, vn, u);
    } else {
      if (get_enum(c, vn, key, LIMIT_PARAMS, &e) == GOT)
        set_str(&u->token_limit_param, xstrdup(LIMIT_PARAMS[e]));
    }
  }
  if (!u->name)
    at(c, v, "an upstream needs a \"name\"");
  if (!have_url)
    at(c, v, "upstream \"%s\" needs a \"base_url\"", u->name ? u->name : "?");
  if (!u->tls_verify)
    pd_log_warn(NULL,
                "upstream \"%s\": tls.verify is false: its certificate and host name are not "
                "checked, so anyone on the path can read and change its traffic, api_key included",
                u->name ? u->name : "?");
  if (u->http2 && u->base_url && strncasecmp(u->base_url, "http://", 7) != 0)
    at(c, http2_node,
       "\"http2: true\" is for http:// upstreams (an https:// one negotiates HTTP/2 "
       "itself); upstream \"%s\" has \"%s\"",
       u->name ? u->name : "?", u->base_url);
  else if (u->http2 && u->base_url && memchr(u->base_url + 7, '@', strcspn(u->base_url + 7, "/?#")))
    at(c, http2_node,
       "\"http2: true\" does not take credentials in the URL (upstream \"%s\"); "
       "send them with \"api_key\" or \"headers\"",
       u->name ? u->name : "?");
}

/* The upstream built when the file declares none (SPEC section 2). --upstream is applied
 * later, and then a bad environment variable does not matter. */
static void default_upstream(ctx_t *c, pd_upstream_cfg_t *u, const pd_cli_overrides_t *ov) {
  upstream_defaults(u);
  u->name = xstrdup("default");
  const char *url = "https://api.openai.com/v1", *var = NULL;
  const char *vars[] = {"PONDER_UPSTREAM", "OPENAI_BASE_URL"};
  for (int i = 0; i < 2 && !var; i++) {
    const char *e = getenv(vars[i]);
    if (e && *e) {
      url = e;
      var = vars[i];
    }
  }
  u->base_url = xstrdup(url);
  if (var && !(ov && ov->upstream)) {
    const char *why = url_problem(url);
    if (why)
      problem(c, -1, "$%s: the base URL %s (got \"%s\")", var, why, url);
  }
  strip_slashes(u->base_url);
  const char *key = getenv("OPENAI_API_KEY");
  if (key && *key) {
    if (!header_value_valid(key))
      problem(c, -1, "$OPENAI_API_KEY must not contain a line break");
    u->api_key = xstrdup(key);
  }
}

/* ---- routes ---- */

static const char *const ROUTE_KEYS[] = {
    "name",   "match",   "upstream", "model", "reasoning", "sticky", "allow_overrides",
    "effort", "forcing", "variants", NULL};
static const char *const MATCH_KEYS[] = {"path_prefix", "models", NULL};
static const char *const VARIANT_KEYS[] = {"name", "weight", "forcing", NULL};

static void route_free(pd_route_t *r) {
  free(r->name);
  free(r->path_prefix);
  for (size_t i = 0; i < r->nmodels; i++)
    free(r->models[i]);
  free(r->models);
  free(r->model);
  free(r->sticky_header);
  for (size_t i = 0; i < r->neffort; i++)
    free(r->effort[i].name);
  free(r->effort);
  for (size_t i = 0; i < r->nvariants; i++) {
    free(r->variants[i].name);
    policy_free(&r->variants[i].forcing);
  }
  free(r->variants);
}

/* One variant "default" of weight 1: for routes with a single policy or none. */
static pd_variant_t *single_variant(pd_route_t *r) {
  r->variants = xcalloc(1, sizeof *r->variants);
  r->nvariants = 1;
  r->total_weight = 1;
  r->variants[0].name = xstrdup("default");
  r->variants[0].weight = 1;
  policy_init(&r->variants[0].forcing);
  return &r->variants[0];
}

static void parse_match(ctx_t *c, pd_config_t *cfg, size_t idx, yaml_node_t *v) {
  pd_route_t *r = &cfg->routes[idx];
  iter_t it;
  const char *key;
  yaml_node_t *kn, *vn;
  if (iter_start(&it, c, v, "match", MATCH_KEYS) != GOT)
    return;
  r->has_match = 1;
  int gave_prefix = 0;
  while (iter_next(&it, &key, &kn, &vn)) {
    if (!strcmp(key, "path_prefix")) {
      gave_prefix = !is_null(vn);
      if (get_nonempty(c, vn, key, &r->path_prefix) != GOT)
        continue;
      if (r->path_prefix[0] != '/') {
        at(c, vn, "\"path_prefix\" must start with '/' (got \"%s\")", r->path_prefix);
        continue;
      }
      if (strpbrk(r->path_prefix, "?# \t")) {
        at(c, vn, "\"path_prefix\" must be a plain path (got \"%s\")", r->path_prefix);
        continue;
      }
      strip_slashes(r->path_prefix);
      if (!*r->path_prefix) {
        at(c, vn, "\"path_prefix\" must not be \"/\": the catch-all is a route without `match`");
        set_str(&r->path_prefix, NULL);
        continue;
      }
      for (size_t i = 0; i < idx; i++)
        if (cfg->routes[i].path_prefix && !strcmp(cfg->routes[i].path_prefix, r->path_prefix))
          at(c, vn, "route \"%s\" already has path_prefix \"%s\"",
             cfg->routes[i].name ? cfg->routes[i].name : "?", r->path_prefix);
    } else {
      yaml_node_item_t *items;
      size_t n;
      if (get_seq(c, vn, key, &items, &n) != GOT)
        continue;
      r->models = xcalloc(n, sizeof *r->models);
      for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = node(c, items[i]);
        char *m = NULL;
        int rc = get_nonempty(c, item, "models", &m);
        if (rc == GOT)
          r->models[r->nmodels++] = m;
        else if (rc == ABSENT)
          at(c, item, "\"models\" entries must not be empty");
      }
    }
  }
  if (!gave_prefix && r->nmodels == 0)
    at(c, v,
       "\"match\" needs a \"path_prefix\" or a non-empty \"models\" list (a route without "
       "`match` is the catch-all)");
}

static void parse_sticky(ctx_t *c, yaml_node_t *v, pd_route_t *r) {
  char *s;
  if (get_text(c, v, "sticky", &s) != GOT)
    return;
  if (!strcmp(s, "random")) {
    r->sticky = PD_STICKY_RANDOM;
  } else if (!strcmp(s, "body:user")) {
    r->sticky = PD_STICKY_BODY_USER;
  } else if (!strncmp(s, "header:", 7) && token_valid(s + 7)) {
    r->sticky = PD_STICKY_HEADER;
    set_str(&r->sticky_header, xstrdup(s + 7));
    lower(r->sticky_header);
  } else {
    at(c, v, "\"sticky\" must be header:NAME, body:user or random (got \"%s\")", s);
  }
  free(s);
}

static void parse_effort(ctx_t *c, yaml_node_t *v, pd_route_t *r) {
  iter_t it;
  const char *key;
  yaml_node_t *kn, *vn;
  if (iter_start(&it, c, v, "effort", NULL) != GOT)
    return;
  r->effort = xcalloc(v->data.mapping.pairs.top - v->data.mapping.pairs.start, sizeof *r->effort);
  while (iter_next(&it, &key, &kn, &vn)) {
    int rounds;
    if (!*key) {
      at(c, kn, "effort names must not be empty");
      continue;
    }
    int rc = get_int(c, vn, key, 0, MAX_ROUNDS, &rounds);
    if (rc == ABSENT)
      at(c, vn, "effort \"%s\" needs a number of rounds (0..%d)", key, MAX_ROUNDS);
    if (rc != GOT)
      continue;
    r->effort[r->neffort].name = xstrdup(key);
    r->effort[r->neffort].rounds = rounds;
    r->neffort++;
  }
}

static void parse_variants(ctx_t *c, yaml_node_t *v, pd_route_t *r) {
  yaml_node_item_t *items;
  size_t n;
  if (get_seq(c, v, "variants", &items, &n) != GOT)
    return;
  if (n == 0) {
    at(c, v, "\"variants\" must not be empty");
    return;
  }
  r->variants = xcalloc(n, sizeof *r->variants);
  r->nvariants = n;
  long long total = 0;
  for (size_t i = 0; i < n; i++) {
    pd_variant_t *var = &r->variants[i];
    yaml_node_t *vv = node(c, items[i]);
    iter_t it;
    const char *key;
    yaml_node_t *kn, *vn;
    var->weight = 1;
    policy_init(&var->forcing);
    int rc = iter_start(&it, c, vv, "a variant", VARIANT_KEYS);
    if (rc == ABSENT)
      at(c, vv, "a variant must be a mapping with at least a \"name\"");
    if (rc != GOT)
      continue;
    while (iter_next(&it, &key, &kn, &vn)) {
      if (!strcmp(key, "name")) {
        if (get_nonempty(c, vn, key, &var->name) != GOT)
          continue;
        if (!name_valid(var->name)) {
          at(c, vn, "variant name \"%s\" may only hold letters, digits, '_', '-' and '.'",
             var->name);
          continue;
        }
        for (size_t j = 0; j < i; j++)
          if (r->variants[j].name && !strcmp(r->variants[j].name, var->name))
            at(c, vn, "duplicate variant name \"%s\"", var->name);
      } else if (!strcmp(key, "weight")) {
        get_int(c, vn, key, 1, INT_MAX, &var->weight);
      } else {
        parse_forcing(c, vn, &var->forcing);
      }
    }
    if (!var->name)
      at(c, vv, "a variant needs a \"name\"");
    total += var->weight;
  }
  if (total > INT_MAX)
    at(c, v, "the variants' weights add up to more than %d", INT_MAX);
  else
    r->total_weight = (int)total;
}

static void parse_route(ctx_t *c, pd_config_t *cfg, size_t idx, yaml_node_t *v,
                        const pd_cli_overrides_t *ov) {
  pd_route_t *r = &cfg->routes[idx];
  iter_t it;
  const char *key;
  yaml_node_t *kn, *vn, *forcing = NULL, *forcing_k = NULL, *variants = NULL, *variants_k = NULL;
  int e;
  int rc = iter_start(&it, c, v, "a route", ROUTE_KEYS);
  if (rc == ABSENT)
    at(c, v, "a route must be a mapping with at least a \"name\"");
  if (rc != GOT)
    return;
  while (iter_next(&it, &key, &kn, &vn)) {
    if (!strcmp(key, "name")) {
      if (get_nonempty(c, vn, key, &r->name) != GOT)
        continue;
      if (!name_valid(r->name)) {
        at(c, vn, "route name \"%s\" may only hold letters, digits, '_', '-' and '.'", r->name);
        continue;
      }
      for (size_t i = 0; i < idx; i++)
        if (cfg->routes[i].name && !strcmp(cfg->routes[i].name, r->name))
          at(c, vn, "duplicate route name \"%s\"", r->name);
    } else if (!strcmp(key, "match")) {
      parse_match(c, cfg, idx, vn);
    } else if (!strcmp(key, "upstream")) {
      char *s = NULL;
      if (get_nonempty(c, vn, key, &s) != GOT)
        continue;
      size_t i = 0;
      while (i < cfg->nupstreams && !(cfg->upstreams[i].name && !strcmp(cfg->upstreams[i].name, s)))
        i++;
      if (i == cfg->nupstreams)
        at(c, vn, "unknown upstream \"%s\"", s);
      else
        r->upstream = i;
      free(s);
    } else if (!strcmp(key, "model")) {
      if (get_str(c, vn, key, &r->model) == GOT && !*r->model)
        set_str(&r->model, NULL); /* "" = the client's model, like an absent key */
    } else if (!strcmp(key, "reasoning")) {
      if (get_enum(c, vn, key, REASONING_NAMES, &e) == GOT)
        r->reasoning = (pd_reasoning_t)e;
    } else if (!strcmp(key, "sticky")) {
      parse_sticky(c, vn, r);
    } else if (!strcmp(key, "allow_overrides")) {
      get_bool(c, vn, key, &r->allow_overrides);
    } else if (!strcmp(key, "effort")) {
      parse_effort(c, vn, r);
    } else if (!strcmp(key, "forcing")) {
      if (!is_null(vn))
        forcing = vn, forcing_k = kn;
    } else if (!is_null(vn)) {
      variants = vn, variants_k = kn;
    }
  }
  if (!r->name)
    at(c, v, "a route needs a \"name\"");
  if (forcing && variants) {
    yaml_node_t *later = line_of(forcing_k) > line_of(variants_k) ? forcing_k : variants_k;
    at(c, later, "a route has either \"forcing\" or \"variants\", not both");
  }
  if (variants) {
    parse_variants(c, variants, r);
    if (r->nvariants == 0)
      single_variant(r); /* keep the "at least one variant" shape even on error paths */
  } else {
    pd_variant_t *var = single_variant(r);
    if (forcing)
      parse_forcing(c, forcing, &var->forcing);
    else if (ov && ov->rounds >= 0 && ov->rounds <= MAX_ROUNDS)
      var->forcing.rounds = ov->rounds;
  }
}

/* The catch-all route of a file without `routes` (SPEC section 3). */
static void default_route(pd_route_t *r, const pd_cli_overrides_t *ov) {
  memset(r, 0, sizeof *r);
  r->name = xstrdup("default");
  pd_variant_t *var = single_variant(r);
  if (ov && ov->rounds >= 0 && ov->rounds <= MAX_ROUNDS)
    var->forcing.rounds = ov->rounds;
}

/* ---- top level ---- */

static const char *const TOP_KEYS[] = {
    "listen", "workers", "shutdown_grace_ms", "limits", "log", "auth", "upstreams", "routes", NULL};
static const char *const LIMITS_KEYS[] = {
    "max_body_bytes",  "max_header_bytes",   "header_timeout_ms", "idle_timeout_ms",
    "max_connections", "max_upstream_calls", "max_reply_bytes",   NULL};
static const char *const LOG_KEYS[] = {"level", "access_log", NULL};
static const char *const AUTH_KEYS[] = {"keys", NULL};

static void parse_limits(ctx_t *c, yaml_node_t *v, pd_config_t *cfg) {
  iter_t it;
  const char *key;
  yaml_node_t *kn, *vn;
  iter_start(&it, c, v, "limits", LIMITS_KEYS);
  while (iter_next(&it, &key, &kn, &vn)) {
    if (!strcmp(key, "max_body_bytes"))
      get_long(c, vn, key, 1, LONG_MAX, &cfg->limits.max_body_bytes);
    else if (!strcmp(key, "max_header_bytes"))
      get_long(c, vn, key, 1, LONG_MAX, &cfg->limits.max_header_bytes);
    else if (!strcmp(key, "header_timeout_ms"))
      get_long(c, vn, key, 0, LONG_MAX, &cfg->limits.header_timeout_ms);
    else if (!strcmp(key, "idle_timeout_ms"))
      get_long(c, vn, key, 0, LONG_MAX, &cfg->limits.idle_timeout_ms);
    else if (!strcmp(key, "max_upstream_calls"))
      get_long(c, vn, key, 1, INT_MAX, &cfg->limits.max_upstream_calls);
    else if (!strcmp(key, "max_reply_bytes"))
      get_long(c, vn, key, 1024, LONG_MAX, &cfg->limits.max_reply_bytes);
    else
      get_long(c, vn, key, 1, LONG_MAX, &cfg->limits.max_connections);
  }
}

static void parse_log(ctx_t *c, yaml_node_t *v, pd_config_t *cfg) {
  iter_t it;
  const char *key;
  yaml_node_t *kn, *vn;
  int e;
  iter_start(&it, c, v, "log", LOG_KEYS);
  while (iter_next(&it, &key, &kn, &vn)) {
    if (!strcmp(key, "level")) {
      if (get_enum(c, vn, key, LEVEL_NAMES, &e) == GOT)
        cfg->log_level = (pd_log_level_t)e;
    } else {
      get_nonempty(c, vn, key, &cfg->access_log);
    }
  }
}

static void parse_auth(ctx_t *c, yaml_node_t *v, pd_config_t *cfg) {
  iter_t it;
  const char *key;
  yaml_node_t *kn, *vn;
  iter_start(&it, c, v, "auth", AUTH_KEYS);
  while (iter_next(&it, &key, &kn, &vn)) {
    yaml_node_item_t *items;
    size_t n;
    if (get_seq(c, vn, key, &items, &n) != GOT)
      continue;
    cfg->auth_keys = xcalloc(n, sizeof *cfg->auth_keys);
    for (size_t i = 0; i < n; i++) {
      yaml_node_t *item = node(c, items[i]);
      char *k = NULL;
      int rc = get_text(c, item, "keys", &k);
      /* An empty key (an unset ${VAR}) would silently open the proxy: refuse it. */
      if (rc == ABSENT || (rc == GOT && !*k))
        at(c, item, "auth key %zu is empty (an unset ${VAR}?)", i + 1);
      else if (rc == GOT && !header_value_valid(k))
        at(c, item, "auth key %zu must not contain a line break", i + 1);
      else if (rc == GOT) {
        cfg->auth_keys[cfg->nauth_keys++] = k;
        continue;
      }
      free(k);
    }
  }
}

static void parse_top(ctx_t *c, pd_config_t *cfg, yaml_node_t *root, const pd_cli_overrides_t *ov) {
  yaml_node_t *vals[8] = {0};
  iter_t it;
  const char *key;
  yaml_node_t *kn, *vn;
  if (root && iter_start(&it, c, root, "the top level", TOP_KEYS) == GOT) {
    while (iter_next(&it, &key, &kn, &vn)) {
      int i = 0;
      while (strcmp(TOP_KEYS[i], key))
        i++;
      vals[i] = vn;
    }
  }
  /* Sections in a fixed order: routes refer to upstreams wherever they sit in the file. */
  if (vals[0]) {
    char *s;
    if (get_text(c, vals[0], "listen", &s) == GOT) {
      char *host = NULL;
      const char *why = parse_listen(s, &host, &cfg->listen_port);
      if (why)
        at(c, vals[0], "\"listen\" %s (got \"%s\")", why, s);
      else
        set_str(&cfg->listen_host, host);
      free(s);
    }
  }
  get_int(c, vals[1], "workers", 0, MAX_WORKERS, &cfg->workers);
  get_long(c, vals[2], "shutdown_grace_ms", 0, LONG_MAX, &cfg->shutdown_grace_ms);
  parse_limits(c, vals[3], cfg);
  parse_log(c, vals[4], cfg);
  parse_auth(c, vals[5], cfg);

  yaml_node_item_t *items;
  size_t n = 0;
  if (get_seq(c, vals[6], "upstreams", &items, &n) == GOT && n > 0) {
    cfg->upstreams = xcalloc(n, sizeof *cfg->upstreams);
    cfg->nupstreams = n;
    for (size_t i = 0; i < n; i++)
      parse_upstream(c, cfg, i, node(c, items[i]));
  } else {
    cfg->upstreams = xcalloc(1, sizeof *cfg->upstreams);
    cfg->nupstreams = 1;
    default_upstream(c, &cfg->upstreams[0], ov);
  }

  n = 0;
  if (get_seq(c, vals[7], "routes", &items, &n) == GOT && n > 0) {
    cfg->routes = xcalloc(n, sizeof *cfg->routes);
    cfg->nroutes = n;
    const pd_route_t *catchall = NULL;
    for (size_t i = 0; i < n; i++) {
      yaml_node_t *rv = node(c, items[i]);
      parse_route(c, cfg, i, rv, ov);
      pd_route_t *r = &cfg->routes[i];
      if (r->has_match || !r->name || is_null(rv) || rv->type != YAML_MAPPING_NODE)
        continue;
      if (catchall)
        at(c, rv,
           "route \"%s\" has no `match` and would never be used: route \"%s\" is already the "
           "catch-all",
           r->name, catchall->name);
      else
        catchall = r;
    }
  } else {
    cfg->routes = xcalloc(1, sizeof *cfg->routes);
    cfg->nroutes = 1;
    default_route(&cfg->routes[0], ov);
  }
}

static void parser_problem(ctx_t *c, const yaml_parser_t *parser) {
  const char *what = parser->problem ? parser->problem : "cannot parse the file";
  int line = (int)parser->problem_mark.line + 1;
  if (parser->error == YAML_READER_ERROR)
    /* The reader reports offsets, not lines. */
    problem(c, 0, "%s at byte %zu", what, parser->problem_offset);
  else if (parser->context)
    problem(c, line, "YAML syntax error: %s (%s at line %d)", what, parser->context,
            (int)parser->context_mark.line + 1);
  else
    problem(c, line, "YAML syntax error: %s", what);
}

/* Reads the single document of a file; 0 with *root possibly NULL (an empty file). */
static int read_doc(ctx_t *c, const char *path, yaml_document_t *doc, int *have_doc) {
  *have_doc = 0;
  FILE *f = fopen(path, "rb");
  if (!f) {
    problem(c, 0, "cannot open: %s", strerror(errno));
    return -1;
  }
  struct stat st;
  if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
    problem(c, 0, "is a directory");
    fclose(f);
    return -1;
  }
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser))
    oom();
  yaml_parser_set_input_file(&parser, f);
  int rc = 0;
  if (!yaml_parser_load(&parser, doc)) {
    parser_problem(c, &parser);
    rc = -1;
  } else {
    *have_doc = 1;
    yaml_document_t extra;
    if (!yaml_document_get_root_node(doc)) {
      /* an empty file: every default applies */
    } else if (!yaml_parser_load(&parser, &extra)) {
      parser_problem(c, &parser);
    } else {
      yaml_node_t *r2 = yaml_document_get_root_node(&extra);
      if (r2)
        problem(c, line_of(r2), "a config file holds one YAML document, found a second one");
      yaml_document_delete(&extra);
    }
  }
  yaml_parser_delete(&parser);
  fclose(f);
  return rc;
}

static void config_free(pd_config_t *cfg) {
  free(cfg->path);
  free(cfg->listen_host);
  free(cfg->access_log);
  for (size_t i = 0; i < cfg->nauth_keys; i++)
    free(cfg->auth_keys[i]);
  free(cfg->auth_keys);
  for (size_t i = 0; i < cfg->nupstreams; i++)
    upstream_free(&cfg->upstreams[i]);
  free(cfg->upstreams);
  for (size_t i = 0; i < cfg->nroutes; i++)
    route_free(&cfg->routes[i]);
  free(cfg->routes);
  free(cfg);
}

static void apply_overrides(ctx_t *c, pd_config_t *cfg, const pd_cli_overrides_t *ov) {
  if (!ov)
    return;
  if (ov->listen) {
    char *host = NULL;
    const char *why = parse_listen(ov->listen, &host, &cfg->listen_port);
    if (why)
      problem(c, -1, "--listen %s (got \"%s\")", why, ov->listen);
    else
      set_str(&cfg->listen_host, host);
  }
  if (ov->upstream) {
    const char *why = url_problem(ov->upstream);
    if (why) {
      problem(c, -1, "--upstream %s (got \"%s\")", why, ov->upstream);
    } else {
      set_str(&cfg->upstreams[0].base_url, xstrdup(ov->upstream));
      strip_slashes(cfg->upstreams[0].base_url);
    }
  }
  if (ov->rounds > MAX_ROUNDS)
    problem(c, -1, "--rounds must be between 0 and %d (got %d)", MAX_ROUNDS, ov->rounds);
  if (ov->workers > MAX_WORKERS)
    problem(c, -1, "--workers must be between 0 and %d (got %d)", MAX_WORKERS, ov->workers);
  else if (ov->workers >= 0)
    cfg->workers = ov->workers;
  if (ov->log_level > PD_LOG_DEBUG)
    problem(c, -1, "--log-level must be error, warn, info or debug");
  else if (ov->log_level >= 0)
    cfg->log_level = (pd_log_level_t)ov->log_level;
}

int pd_config_load(const char *path, const pd_cli_overrides_t *ov, pd_config_t **out,
                   char **errors) {
  *out = NULL;
  if (errors)
    *errors = NULL;
  ctx_t c = {.file = path ? path : "ponder"};
  pd_config_t *cfg = xcalloc(1, sizeof *cfg);
  atomic_init(&cfg->refs, 1);
  cfg->path = xstrdup(path);
  cfg->listen_host = xstrdup("127.0.0.1");
  cfg->listen_port = 8080;
  cfg->workers = 1;
  cfg->shutdown_grace_ms = 30000;
  cfg->limits.max_body_bytes = 16777216;
  cfg->limits.max_header_bytes = 65536;
  cfg->limits.header_timeout_ms = 10000;
  cfg->limits.idle_timeout_ms = 60000;
  cfg->limits.max_connections = 10000;
  cfg->limits.max_upstream_calls = 256;
  cfg->limits.max_reply_bytes = 16777216;
  cfg->log_level = PD_LOG_INFO;
  cfg->access_log = xstrdup("-");

  yaml_document_t doc;
  int have_doc = 0;
  if (!path || read_doc(&c, path, &doc, &have_doc) == 0) {
    c.doc = have_doc ? &doc : NULL;
    parse_top(&c, cfg, have_doc ? yaml_document_get_root_node(&doc) : NULL, ov);
    apply_overrides(&c, cfg, ov);
  }
  if (have_doc)
    yaml_document_delete(&doc);

  if (cfg->workers == 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->workers = n < 1 ? 1 : n > MAX_WORKERS ? MAX_WORKERS : (int)n;
  }
  if (c.nprobs) {
    if (errors)
      *errors = join_problems(&c);
    free_problems(&c);
    config_free(cfg);
    return -1;
  }
  free_problems(&c);
  /* Every base_url was checked to parse (url_problem): keep its parts for the dispatch, which
   * joins every request's URL to them. */
  for (size_t i = 0; i < cfg->nupstreams; i++) {
    pd_upstream_cfg_t *u = &cfg->upstreams[i];
    if (u->base_url)
      pd_url_parse_base(u->base_url, strlen(u->base_url), &u->base);
  }
  *out = cfg;
  return 0;
}

int pd_config_warnings(const pd_config_t *cfg, void (*warn)(void *ud, const char *msg), void *ud) {
  int n = 0;
  if (!cfg || cfg->nauth_keys == 0)
    return 0;
  for (size_t i = 0; i < cfg->nupstreams; i++) {
    const pd_upstream_cfg_t *u = &cfg->upstreams[i];
    if (u->api_key)
      continue;
    char msg[512];
    snprintf(msg, sizeof msg,
             "auth.keys is set but upstream \"%.200s\" has no api_key: the client's "
             "Authorization header (ponder's own key) is forwarded to it; set its api_key",
             u->name ? u->name : "");
    n++;
    if (warn)
      warn(ud, msg);
  }
  return n;
}

pd_config_t *pd_config_ref(pd_config_t *cfg) {
  if (cfg)
    atomic_fetch_add(&cfg->refs, 1);
  return cfg;
}

void pd_config_unref(pd_config_t *cfg) {
  if (cfg && atomic_fetch_sub(&cfg->refs, 1) == 1)
    config_free(cfg);
}

/* ---- dump ---- */

/* A YAML double-quoted scalar: the only style where every byte sequence round-trips. */
static void put_str(FILE *f, const char *s) {
  if (!s) {
    fputs("null", f);
    return;
  }
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
    case '"':
      fputs("\\\"", f);
      break;
    case '\\':
      fputs("\\\\", f);
      break;
    case '\n':
      fputs("\\n", f);
      break;
    case '\t':
      fputs("\\t", f);
      break;
    case '\r':
      fputs("\\r", f);
      break;
    default:
      /* YAML reads NEL, LS and PS as line breaks even inside double quotes (folding them to a
       * space), so the dump writes their escapes and reloads to the same string. */
      if (*p < 0x20 || *p == 0x7f) {
        fprintf(f, "\\x%02X", *p);
      } else if (p[0] == 0xc2 && p[1] == 0x85) {
        fputs("\\N", f);
        p += 1;
      } else if (p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) {
        fputs(p[2] == 0xa8 ? "\\L" : "\\P", f);
        p += 2;
      } else {
        fputc(*p, f);
      }
    }
  }
  fputc('"', f);
}

static void put_key(FILE *f, int indent, const char *key) {
  fprintf(f, "%*s%s: ", indent, "", key);
}

static void put_kv_str(FILE *f, int indent, const char *key, const char *val) {
  put_key(f, indent, key);
  put_str(f, val);
  fputc('\n', f);
}

/* A base URL with its user:password@ part, if any, redacted. */
static void put_url(FILE *f, const char *url) {
  const char *host = strstr(url, "://");
  host = host ? host + 3 : url;
  size_t alen = strcspn(host, "/?#");
  const char *at_sign = NULL;
  for (const char *p = host; p < host + alen; p++)
    if (*p == '@')
      at_sign = p;
  if (!at_sign) {
    put_str(f, url);
    return;
  }
  char *red;
  if (asprintf(&red, "%.*s<redacted>%s", (int)(host - url), url, at_sign) < 0)
    oom();
  put_str(f, red);
  free(red);
}

static void dump_policy(FILE *f, int in, const pd_policy_t *p) {
  fprintf(f, "%*smode: %s\n", in, "", MODE_NAMES[p->mode]);
  fprintf(f, "%*srounds: %d\n", in, "", p->rounds);
  fprintf(f, "%*sthink_budget: %d\n", in, "", p->think_budget);
  fprintf(f, "%*sanswer_budget: %d\n", in, "", p->answer_budget);
  fprintf(f, "%*smin_think_tokens: %d\n", in, "", p->min_think_tokens);
  fprintf(f, "%*smax_think_tokens: %d\n", in, "", p->max_think_tokens);
  fprintf(f, "%*sprompts:\n", in, "");
  put_kv_str(f, in + 2, "think", p->prompts.think);
  put_kv_str(f, in + 2, "wait", p->prompts.wait);
  put_kv_str(f, in + 2, "continue", p->prompts.cont);
  put_kv_str(f, in + 2, "answer", p->prompts.answer);
  fprintf(f, "%*sprefill:\n", in, "");
  fprintf(f, "%*sdialect: %s\n", in + 2, "", DIALECT_NAMES[p->prefill.dialect]);
  put_kv_str(f, in + 2, "think_open", p->prefill.think_open);
  put_kv_str(f, in + 2, "think_close", p->prefill.think_close);
  put_kv_str(f, in + 2, "wait", p->prefill.wait);
  put_kv_str(f, in + 2, "answer_open", p->prefill.answer_open);
  put_kv_str(f, in + 2, "length_cut", p->prefill.length_cut);
  int chatml = p->template_name && !strcmp(p->template_name, "chatml") && p->tmpl.system &&
               !strcmp(p->tmpl.system, CHATML_SYSTEM) && p->tmpl.user &&
               !strcmp(p->tmpl.user, CHATML_USER) && p->tmpl.assistant &&
               !strcmp(p->tmpl.assistant, CHATML_ASSISTANT) && p->tmpl.assistant_start &&
               !strcmp(p->tmpl.assistant_start, CHATML_START);
  if (chatml) {
    fprintf(f, "%*stemplate: chatml\n", in, "");
  } else {
    fprintf(f, "%*stemplate:\n", in, "");
    put_kv_str(f, in + 2, "system", p->tmpl.system);
    put_kv_str(f, in + 2, "user", p->tmpl.user);
    put_kv_str(f, in + 2, "assistant", p->tmpl.assistant);
    put_kv_str(f, in + 2, "assistant_start", p->tmpl.assistant_start);
  }
}

static void dump_route(FILE *f, const pd_config_t *cfg, const pd_route_t *r) {
  fprintf(f, "  - name: ");
  put_str(f, r->name);
  fputc('\n', f);
  if (r->has_match) {
    fprintf(f, "    match:\n");
    if (r->path_prefix)
      put_kv_str(f, 6, "path_prefix", r->path_prefix);
    fprintf(f, "      models: [");
    for (size_t i = 0; i < r->nmodels; i++) {
      if (i)
        fputs(", ", f);
      put_str(f, r->models[i]);
    }
    fprintf(f, "]\n");
  } else {
    fprintf(f, "    # no match: the catch-all route\n");
  }
  put_kv_str(f, 4, "upstream",
             r->upstream < cfg->nupstreams ? cfg->upstreams[r->upstream].name : NULL);
  put_kv_str(f, 4, "model", r->model);
  fprintf(f, "    reasoning: %s\n", REASONING_NAMES[r->reasoning]);
  put_key(f, 4, "sticky");
  if (r->sticky == PD_STICKY_HEADER) {
    char *s;
    if (asprintf(&s, "header:%s", r->sticky_header ? r->sticky_header : "") < 0)
      oom();
    put_str(f, s);
    free(s);
  } else {
    put_str(f, r->sticky == PD_STICKY_BODY_USER ? "body:user" : "random");
  }
  fputc('\n', f);
  fprintf(f, "    allow_overrides: %s\n", r->allow_overrides ? "true" : "false");
  fprintf(f, "    effort: {");
  for (size_t i = 0; i < r->neffort; i++) {
    fputs(i ? ", " : "", f);
    put_str(f, r->effort[i].name);
    fprintf(f, ": %d", r->effort[i].rounds);
  }
  fprintf(f, "}\n");
  fprintf(f, "    variants:  # total weight %d\n", r->total_weight);
  for (size_t i = 0; i < r->nvariants; i++) {
    const pd_variant_t *v = &r->variants[i];
    fprintf(f, "      - name: ");
    put_str(f, v->name);
    fprintf(f, "\n        weight: %d\n        forcing:\n", v->weight);
    dump_policy(f, 10, &v->forcing);
  }
}

void pd_config_dump(const pd_config_t *cfg, FILE *f) {
  fprintf(f, "# ponder effective configuration (secrets redacted)\n");
  if (cfg->path) {
    fputs("# loaded from ", f);
    put_str(f, cfg->path);
    fputc('\n', f);
  }
  char *listen;
  const char *host = cfg->listen_host ? cfg->listen_host : "";
  if (asprintf(&listen, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, cfg->listen_port) < 0)
    oom();
  put_kv_str(f, 0, "listen", listen);
  free(listen);
  fprintf(f, "workers: %d\n", cfg->workers);
  fprintf(f, "shutdown_grace_ms: %ld\n", cfg->shutdown_grace_ms);
  fprintf(f, "limits:\n");
  fprintf(f, "  max_body_bytes: %ld\n", cfg->limits.max_body_bytes);
  fprintf(f, "  max_header_bytes: %ld\n", cfg->limits.max_header_bytes);
  fprintf(f, "  header_timeout_ms: %ld\n", cfg->limits.header_timeout_ms);
  fprintf(f, "  idle_timeout_ms: %ld\n", cfg->limits.idle_timeout_ms);
  fprintf(f, "  max_connections: %ld\n", cfg->limits.max_connections);
  fprintf(f, "  max_upstream_calls: %ld\n", cfg->limits.max_upstream_calls);
  fprintf(f, "  max_reply_bytes: %ld\n", cfg->limits.max_reply_bytes);
  fprintf(f, "log:\n  level: %s\n", LEVEL_NAMES[cfg->log_level]);
  put_kv_str(f, 2, "access_log", cfg->access_log);
  fprintf(f, "auth:\n  keys: [");
  for (size_t i = 0; i < cfg->nauth_keys; i++)
    fprintf(f, "%s\"<redacted>\"", i ? ", " : "");
  fprintf(f, "]\n");
  fprintf(f, "upstreams:\n");
  for (size_t i = 0; i < cfg->nupstreams; i++) {
    const pd_upstream_cfg_t *u = &cfg->upstreams[i];
    fprintf(f, "  - name: ");
    put_str(f, u->name);
    fprintf(f, "\n    base_url: ");
    put_url(f, u->base_url ? u->base_url : "");
    fputc('\n', f);
    put_kv_str(f, 4, "api_key", u->api_key ? "<redacted>" : NULL);
    fprintf(f, "    headers: {");
    for (size_t j = 0; j < u->nheaders; j++) {
      fputs(j ? ", " : "", f);
      put_str(f, u->headers[j].name);
      fputs(": \"<redacted>\"", f);
    }
    fprintf(f, "}\n");
    fprintf(f, "    connect_timeout_ms: %ld\n", u->connect_timeout_ms);
    fprintf(f, "    timeout_ms: %ld\n", u->timeout_ms);
    fprintf(f, "    stall_timeout_ms: %ld\n", u->stall_timeout_ms);
    fprintf(f, "    retries: %d\n", u->retries);
    fprintf(f, "    max_connections: %d\n", u->max_connections);
    fprintf(f, "    token_limit_param: %s\n", u->token_limit_param);
    fprintf(f, "    http2: %s\n", u->http2 ? "true" : "false");
    fprintf(f, "    tls:\n");
    put_kv_str(f, 6, "ca_file", u->tls_ca_file);
    put_kv_str(f, 6, "cert_file", u->tls_cert_file);
    put_kv_str(f, 6, "key_file", u->tls_key_file);
    fprintf(f, "      verify: %s\n", u->tls_verify ? "true" : "false");
  }
  fprintf(f, "routes:\n");
  for (size_t i = 0; i < cfg->nroutes; i++)
    dump_route(f, cfg, &cfg->routes[i]);
}
