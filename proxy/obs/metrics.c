/* Per-worker metric stores, the Prometheus renderer and the feedback store. See metrics.h.
 *
 * A store is a small chained hash table of series keyed by their label strings. Each worker
 * writes only its own store (under the store's mutex, uncontended except while /metrics or a
 * feedback lookup reads it); the renderer merges every store into a private table and prints it
 * family by family in a stable (sorted) order. */
#include "obs/metrics.h"

#include "base/buf.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"

/* ---- histogram buckets ---- */

/* Whole client requests: LLM latencies from 100 ms to 10 min. */
static const double req_bounds[] = {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};
/* Upstream calls: the same plus fast failures and cache hits. */
static const double up_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                   2.5,   5,    10,    30,   60,  120,  300, 600};
#define NREQ_BOUNDS (sizeof req_bounds / sizeof *req_bounds)
#define NUP_BOUNDS (sizeof up_bounds / sizeof *up_bounds)
#define MAX_BOUNDS NUP_BOUNDS

enum { KIND_RV = 0, KIND_UP = 1 }; /* route/variant series, upstream series */
enum { TOK_PROMPT = 0, TOK_COMPLETION, TOK_REASONING, NTOK };
static const char *const tok_names[NTOK] = {"prompt", "completion", "reasoning"};

typedef struct code_count {
  char code[16];
  uint64_t n;
} code_count_t;

typedef struct series {
  struct series *next;
  uint64_t hash;
  int kind;
  char *a;                       /* route or upstream */
  char *b;                       /* variant ("" for upstream series); same allocation as a */
  uint64_t hist[MAX_BOUNDS + 1]; /* per bucket, not cumulative; last = +Inf */
  double sum;
  uint64_t count;
  code_count_t *codes;
  size_t ncodes, capcodes;
  uint64_t tokens[NTOK];
  uint64_t think_rounds;
  uint64_t fb_n;
  double fb_sum;
} series_t;

typedef struct table {
  series_t **b;
  size_t nb, n;
} table_t;

struct pd_metrics {
  pthread_mutex_t mu;
  table_t t;
  int64_t inflight;
  uint64_t disconnects;
};

static uint64_t hash_key(int kind, const char *a, const char *b) {
  uint64_t h = 14695981039346656037ULL;
  h = (h ^ (unsigned char)kind) * 1099511628211ULL;
  for (const unsigned char *p = (const unsigned char *)a; *p; p++)
    h = (h ^ *p) * 1099511628211ULL;
  h = (h ^ 0xff) * 1099511628211ULL; /* separator that cannot occur in a NUL-terminated string */
  for (const unsigned char *p = (const unsigned char *)b; *p; p++)
    h = (h ^ *p) * 1099511628211ULL;
  return h ^ (h >> 29);
}

static void table_free(table_t *t) {
  for (size_t i = 0; i < t->nb; i++) {
    series_t *s = t->b[i];
    while (s) {
      series_t *next = s->next;
      free(s->codes);
      free(s->a);
      free(s);
      s = next;
    }
  }
  free(t->b);
  memset(t, 0, sizeof *t);
}

static int table_grow(table_t *t) {
  size_t nb = t->nb ? t->nb * 2 : 16;
  series_t **b = calloc(nb, sizeof *b);
  if (!b)
    return -1;
  for (size_t i = 0; i < t->nb; i++) {
    series_t *s = t->b[i];
    while (s) {
      series_t *next = s->next;
      s->next = b[s->hash & (nb - 1)];
      b[s->hash & (nb - 1)] = s;
      s = next;
    }
  }
  free(t->b);
  t->b = b;
  t->nb = nb;
  return 0;
}

/* Finds or creates the series; NULL on allocation failure (the sample is then dropped). */
static series_t *table_get(table_t *t, int kind, const char *a, const char *b) {
  if (!a)
    a = "";
  if (!b)
    b = "";
  uint64_t h = hash_key(kind, a, b);
  if (t->nb) {
    for (series_t *s = t->b[h & (t->nb - 1)]; s; s = s->next)
      if (s->hash == h && s->kind == kind && strcmp(s->a, a) == 0 && strcmp(s->b, b) == 0)
        return s;
  }
  if (t->n >= t->nb && table_grow(t) < 0)
    return NULL;
  series_t *s = calloc(1, sizeof *s);
  size_t la = strlen(a), lb = strlen(b);
  char *key = malloc(la + lb + 2);
  if (!s || !key) {
    free(s);
    free(key);
    return NULL;
  }
  memcpy(key, a, la + 1);
  memcpy(key + la + 1, b, lb + 1);
  s->a = key;
  s->b = key + la + 1;
  s->kind = kind;
  s->hash = h;
  s->next = t->b[h & (t->nb - 1)];
  t->b[h & (t->nb - 1)] = s;
  t->n++;
  return s;
}

static void series_add_code(series_t *s, const char *code, uint64_t n) {
  for (size_t i = 0; i < s->ncodes; i++) {
    if (strcmp(s->codes[i].code, code) == 0) {
      s->codes[i].n += n;
      return;
    }
  }
  if (s->ncodes == s->capcodes) {
    size_t cap = s->capcodes ? s->capcodes * 2 : 4;
    code_count_t *c = realloc(s->codes, cap * sizeof *c);
    if (!c)
      return;
    s->codes = c;
    s->capcodes = cap;
  }
  code_count_t *c = &s->codes[s->ncodes++];
  size_t len = strlen(code);
  if (len >= sizeof c->code)
    len = sizeof c->code - 1;
  memcpy(c->code, code, len);
  c->code[len] = '\0';
  c->n = n;
}

static void observe(series_t *s, const double *bounds, size_t nbounds, double v) {
  if (!(v >= 0)) /* negative or NaN */
    v = 0;
  size_t i = 0;
  while (i < nbounds && v > bounds[i])
    i++;
  s->hist[i]++;
  s->sum += v;
  s->count++;
}

/* ---- the store ---- */

pd_metrics_t *pd_metrics_new(void) {
  pd_metrics_t *m = calloc(1, sizeof *m);
  if (!m)
    return NULL;
  if (pthread_mutex_init(&m->mu, NULL) != 0) {
    free(m);
    return NULL;
  }
  return m;
}

void pd_metrics_free(pd_metrics_t *m) {
  if (!m)
    return;
  table_free(&m->t);
  pthread_mutex_destroy(&m->mu);
  free(m);
}

static uint64_t nonneg(long v) {
  return v > 0 ? (uint64_t)v : 0;
}

void pd_metrics_request(pd_metrics_t *m, const char *route, const char *variant, int status,
                        double seconds, const pd_usage_t *usage, int think_rounds) {
  if (!m)
    return;
  char code[24];
  code[pd_buf_fmt_long(code, status)] = '\0';
  pthread_mutex_lock(&m->mu);
  series_t *s = table_get(&m->t, KIND_RV, route, variant);
  if (s) {
    series_add_code(s, code, 1);
    observe(s, req_bounds, NREQ_BOUNDS, seconds);
    if (usage) {
      s->tokens[TOK_PROMPT] += nonneg(usage->prompt_tokens);
      s->tokens[TOK_COMPLETION] += nonneg(usage->completion_tokens);
      s->tokens[TOK_REASONING] += nonneg(usage->reasoning_tokens);
    }
    if (think_rounds > 0)
      s->think_rounds += (uint64_t)think_rounds;
  }
  pthread_mutex_unlock(&m->mu);
}

void pd_metrics_upstream(pd_metrics_t *m, const char *upstream, const char *code, double seconds) {
  if (!m)
    return;
  pthread_mutex_lock(&m->mu);
  series_t *s = table_get(&m->t, KIND_UP, upstream, "");
  if (s) {
    series_add_code(s, code && *code ? code : "error", 1);
    observe(s, up_bounds, NUP_BOUNDS, seconds);
  }
  pthread_mutex_unlock(&m->mu);
}

void pd_metrics_inflight(pd_metrics_t *m, int delta) {
  if (!m)
    return;
  pthread_mutex_lock(&m->mu);
  m->inflight += delta;
  pthread_mutex_unlock(&m->mu);
}

void pd_metrics_client_disconnect(pd_metrics_t *m) {
  if (!m)
    return;
  pthread_mutex_lock(&m->mu);
  m->disconnects++;
  pthread_mutex_unlock(&m->mu);
}

void pd_metrics_feedback(pd_metrics_t *m, const char *route, const char *variant, double score) {
  if (!m || !isfinite(score))
    return;
  pthread_mutex_lock(&m->mu);
  series_t *s = table_get(&m->t, KIND_RV, route, variant);
  if (s) {
    s->fb_n++;
    s->fb_sum += score;
  }
  pthread_mutex_unlock(&m->mu);
}

/* ---- rendering ---- */

typedef struct out {
  char *p;
  size_t len, cap;
  int oom;
} out_t;

static int out_reserve(out_t *o, size_t n) {
  if (o->oom)
    return -1;
  if (o->len + n + 1 <= o->cap)
    return 0;
  size_t cap = o->cap ? o->cap : 4096;
  while (cap < o->len + n + 1)
    cap *= 2;
  char *p = realloc(o->p, cap);
  if (!p) {
    o->oom = 1;
    return -1;
  }
  o->p = p;
  o->cap = cap;
  return 0;
}

static void out_puts(out_t *o, const char *s, size_t n) {
  if (out_reserve(o, n) < 0)
    return;
  memcpy(o->p + o->len, s, n);
  o->len += n;
  o->p[o->len] = '\0';
}

__attribute__((format(printf, 2, 3))) static void out_printf(out_t *o, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char tmp[256];
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if ((size_t)n < sizeof tmp) {
    out_puts(o, tmp, (size_t)n);
    return;
  }
  if (out_reserve(o, (size_t)n) < 0)
    return;
  va_start(ap, fmt);
  vsnprintf(o->p + o->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  o->len += (size_t)n;
}

/* A label value per the text format: backslash, double quote and newline escaped. */
static void out_label(out_t *o, const char *name, const char *v, int first) {
  if (!first)
    out_puts(o, ",", 1);
  out_printf(o, "%s=\"", name);
  const char *run = v;
  for (const char *p = v; *p; p++) {
    const char *esc = *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : *p == '\n' ? "\\n" : NULL;
    if (esc) {
      out_puts(o, run, (size_t)(p - run));
      out_puts(o, esc, 2);
      run = p + 1;
    }
  }
  out_puts(o, run, strlen(run));
  out_puts(o, "\"", 1);
}

/* The shortest of %.15g / %.17g that reads back as the same double. */
static void out_double(out_t *o, double v) {
  char buf[40];
  if (isnan(v)) {
    out_puts(o, "NaN", 3);
    return;
  }
  if (isinf(v)) {
    out_puts(o, v > 0 ? "+Inf" : "-Inf", 4);
    return;
  }
  snprintf(buf, sizeof buf, "%.15g", v);
  if (strtod(buf, NULL) != v)
    snprintf(buf, sizeof buf, "%.17g", v);
  out_puts(o, buf, strlen(buf));
}

static void out_header(out_t *o, const char *name, const char *type, const char *help) {
  out_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{labels of s[,extra=...]} */
static void out_series_start(out_t *o, const char *name, const series_t *s, const char *xname,
                             const char *xval) {
  out_puts(o, name, strlen(name));
  out_puts(o, "{", 1);
  if (s->kind == KIND_RV) {
    out_label(o, "route", s->a, 1);
    out_label(o, "variant", s->b, 0);
  } else {
    out_label(o, "upstream", s->a, 1);
  }
  if (xname)
    out_label(o, xname, xval, 0);
  out_puts(o, "} ", 2);
}

static void out_u64_line(out_t *o, const char *name, const series_t *s, const char *xname,
                         const char *xval, uint64_t v) {
  out_series_start(o, name, s, xname, xval);
  out_printf(o, "%llu\n", (unsigned long long)v);
}

static void out_histogram(out_t *o, const char *name, const series_t *s, const double *bounds,
                          size_t nbounds) {
  char bucket[96], le[32];
  snprintf(bucket, sizeof bucket, "%s_bucket", name);
  uint64_t cum = 0;
  for (size_t i = 0; i <= nbounds; i++) {
    cum += s->hist[i];
    if (i < nbounds)
      snprintf(le, sizeof le, "%g", bounds[i]);
    else
      snprintf(le, sizeof le, "+Inf");
    out_u64_line(o, bucket, s, "le", le, cum);
  }
  snprintf(bucket, sizeof bucket, "%s_sum", name);
  out_series_start(o, bucket, s, NULL, NULL);
  out_double(o, s->sum);
  out_puts(o, "\n", 1);
  snprintf(bucket, sizeof bucket, "%s_count", name);
  out_u64_line(o, bucket, s, NULL, NULL, s->count);
}

static int cmp_series(const void *x, const void *y) {
  const series_t *a = *(series_t *const *)x, *b = *(series_t *const *)y;
  if (a->kind != b->kind)
    return a->kind - b->kind;
  int c = strcmp(a->a, b->a);
  return c ? c : strcmp(a->b, b->b);
}

static int cmp_code(const void *x, const void *y) {
  const code_count_t *a = x, *b = y;
  size_t la = strlen(a->code), lb = strlen(b->code);
  if (la != lb) /* numeric codes sort numerically, words after them */
    return la < lb ? -1 : 1;
  return strcmp(a->code, b->code);
}

static void merge_series(series_t *dst, const series_t *src) {
  for (size_t i = 0; i <= MAX_BOUNDS; i++)
    dst->hist[i] += src->hist[i];
  dst->sum += src->sum;
  dst->count += src->count;
  for (size_t i = 0; i < src->ncodes; i++)
    series_add_code(dst, src->codes[i].code, src->codes[i].n);
  for (size_t i = 0; i < NTOK; i++)
    dst->tokens[i] += src->tokens[i];
  dst->think_rounds += src->think_rounds;
  dst->fb_n += src->fb_n;
  dst->fb_sum += src->fb_sum;
}

char *pd_metrics_render(pd_metrics_t *const *stores, size_t n, size_t *len) {
  table_t agg = {0};
  int64_t inflight = 0;
  uint64_t disconnects = 0;
  int oom = 0;
  for (size_t i = 0; i < n; i++) {
    pd_metrics_t *m = stores[i];
    if (!m)
      continue;
    pthread_mutex_lock(&m->mu);
    for (size_t j = 0; j < m->t.nb; j++) {
      for (series_t *s = m->t.b[j]; s; s = s->next) {
        series_t *d = table_get(&agg, s->kind, s->a, s->b);
        if (d)
          merge_series(d, s);
        else
          oom = 1;
      }
    }
    inflight += m->inflight;
    disconnects += m->disconnects;
    pthread_mutex_unlock(&m->mu);
  }

  series_t **all = malloc((agg.n ? agg.n : 1) * sizeof *all);
  if (!all || oom) {
    free(all);
    table_free(&agg);
    return NULL;
  }
  size_t ns = 0;
  for (size_t j = 0; j < agg.nb; j++)
    for (series_t *s = agg.b[j]; s; s = s->next)
      all[ns++] = s;
  qsort(all, ns, sizeof *all, cmp_series);
  size_t nrv = 0;
  while (nrv < ns && all[nrv]->kind == KIND_RV)
    nrv++;
  for (size_t i = 0; i < ns; i++)
    if (all[i]->ncodes > 1)
      qsort(all[i]->codes, all[i]->ncodes, sizeof *all[i]->codes, cmp_code);

  out_t o = {0};
  out_reserve(&o, 0);

  out_header(&o, "ponder_requests_total", "counter",
             "Client requests by route, variant and HTTP status code.");
  for (size_t i = 0; i < nrv; i++)
    for (size_t c = 0; c < all[i]->ncodes; c++)
      out_u64_line(&o, "ponder_requests_total", all[i], "code", all[i]->codes[c].code,
                   all[i]->codes[c].n);

  out_header(&o, "ponder_request_duration_seconds", "histogram",
             "Client request duration in seconds, including every upstream call.");
  for (size_t i = 0; i < nrv; i++)
    if (all[i]->count)
      out_histogram(&o, "ponder_request_duration_seconds", all[i], req_bounds, NREQ_BOUNDS);

  out_header(&o, "ponder_tokens_total", "counter",
             "Tokens summed over every upstream call, by type (prompt, completion, reasoning).");
  for (size_t i = 0; i < nrv; i++)
    if (all[i]->count)
      for (size_t t = 0; t < NTOK; t++)
        out_u64_line(&o, "ponder_tokens_total", all[i], "type", tok_names[t], all[i]->tokens[t]);

  out_header(&o, "ponder_think_rounds_total", "counter", "Thinking calls made upstream.");
  for (size_t i = 0; i < nrv; i++)
    if (all[i]->count)
      out_u64_line(&o, "ponder_think_rounds_total", all[i], NULL, NULL, all[i]->think_rounds);

  out_header(&o, "ponder_feedback_total", "counter",
             "Feedback scores received for requests served by a route and variant.");
  for (size_t i = 0; i < nrv; i++)
    if (all[i]->fb_n)
      out_u64_line(&o, "ponder_feedback_total", all[i], NULL, NULL, all[i]->fb_n);

  /* A summary without quantiles, so that its sample is named ponder_feedback_score_sum. */
  out_header(&o, "ponder_feedback_score", "summary",
             "Feedback scores: ponder_feedback_score_sum is the sum of the scores.");
  for (size_t i = 0; i < nrv; i++) {
    if (!all[i]->fb_n)
      continue;
    out_series_start(&o, "ponder_feedback_score_sum", all[i], NULL, NULL);
    out_double(&o, all[i]->fb_sum);
    out_puts(&o, "\n", 1);
    out_u64_line(&o, "ponder_feedback_score_count", all[i], NULL, NULL, all[i]->fb_n);
  }

  out_header(&o, "ponder_upstream_requests_total", "counter",
             "Upstream calls by upstream and HTTP status code (or timeout, error).");
  for (size_t i = nrv; i < ns; i++)
    for (size_t c = 0; c < all[i]->ncodes; c++)
      out_u64_line(&o, "ponder_upstream_requests_total", all[i], "code", all[i]->codes[c].code,
                   all[i]->codes[c].n);

  out_header(&o, "ponder_upstream_duration_seconds", "histogram",
             "Upstream call duration in seconds.");
  for (size_t i = nrv; i < ns; i++)
    if (all[i]->count)
      out_histogram(&o, "ponder_upstream_duration_seconds", all[i], up_bounds, NUP_BOUNDS);

  out_header(&o, "ponder_inflight_requests", "gauge", "Client requests in progress.");
  out_printf(&o, "ponder_inflight_requests %lld\n", (long long)inflight);
  out_header(&o, "ponder_client_disconnects_total", "counter",
             "Clients that disconnected before their response was complete.");
  out_printf(&o, "ponder_client_disconnects_total %llu\n", (unsigned long long)disconnects);
  out_header(&o, "ponder_log_dropped_total", "counter",
             "Log and access-log lines dropped because the log writer fell behind.");
  out_printf(&o, "ponder_log_dropped_total %llu\n", (unsigned long long)pd_log_dropped());

  free(all);
  table_free(&agg);
  if (o.oom) {
    free(o.p);
    return NULL;
  }
  if (len)
    *len = o.len;
  return o.p;
}

/* ---- feedback store ---- */

#define FB_NONE UINT32_MAX

typedef struct fb_entry {
  char *data; /* "id\0route\0variant\0", NULL when the slot is empty */
  char *route, *variant;
  uint64_t hash;
  uint64_t stamp; /* monotonic ns: the newest entry wins across stores */
  uint32_t next;  /* next slot in the same hash chain */
} fb_entry_t;

struct pd_feedback_store {
  pthread_mutex_t mu;
  fb_entry_t *ring;
  size_t cap, head, count;
  uint32_t *buckets;
  size_t nbuckets; /* power of two >= cap */
};

/* ---- SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast short-input PRF", 2012) ---- */

static uint64_t rotl(uint64_t x, int b) {
  return (x << b) | (x >> (64 - b));
}

static uint64_t load_le64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

#define SIPROUND                                                                                   \
  do {                                                                                             \
    v0 += v1;                                                                                      \
    v1 = rotl(v1, 13);                                                                             \
    v1 ^= v0;                                                                                      \
    v0 = rotl(v0, 32);                                                                             \
    v2 += v3;                                                                                      \
    v3 = rotl(v3, 16);                                                                             \
    v3 ^= v2;                                                                                      \
    v0 += v3;                                                                                      \
    v3 = rotl(v3, 21);                                                                             \
    v3 ^= v0;                                                                                      \
    v2 += v1;                                                                                      \
    v1 = rotl(v1, 17);                                                                             \
    v1 ^= v2;                                                                                      \
    v2 = rotl(v2, 32);                                                                             \
  } while (0)

uint64_t pd_feedback_siphash(const unsigned char key[16], const void *data, size_t len) {
  const unsigned char *p = data;
  uint64_t k0 = load_le64(key), k1 = load_le64(key + 8);
  uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
  uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t m = load_le64(p + i);
    v3 ^= m;
    SIPROUND;
    SIPROUND;
    v0 ^= m;
  }
  /* The last block: the 0..7 remaining bytes, and the length's low byte in the top byte. */
  uint64_t b = (uint64_t)(len & 0xff) << 56;
  for (size_t k = 0; i + k < len; k++)
    b |= (uint64_t)p[i + k] << (8 * k);
  v3 ^= b;
  SIPROUND;
  SIPROUND;
  v0 ^= b;
  v2 ^= 0xff;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

/* The process's key for request ids: clients choose the ids, so an unkeyed hash would let one
 * client fill a single chain (every lookup under the store's mutex walking it). */
static unsigned char fb_key[16];
static pthread_once_t fb_key_once = PTHREAD_ONCE_INIT;

static void fb_key_init(void) {
  size_t got = 0;
  while (got < sizeof fb_key) {
    ssize_t n = getrandom(fb_key + got, sizeof fb_key - got, 0);
    if (n <= 0)
      break;
    got += (size_t)n;
  }
  if (got < sizeof fb_key) { /* no getrandom: the clock and addresses are better than nothing */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t a = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)getpid();
    uint64_t b = (uint64_t)(uintptr_t)&ts ^ (uint64_t)(uintptr_t)&fb_key;
    memcpy(fb_key, &a, 8);
    memcpy(fb_key + 8, &b, 8);
  }
}

void pd_feedback_set_key(const unsigned char key[16]) {
  pthread_once(&fb_key_once, fb_key_init);
  memcpy(fb_key, key, sizeof fb_key);
}

uint64_t pd_feedback_hash(const char *request_id) {
  pthread_once(&fb_key_once, fb_key_init);
  return pd_feedback_siphash(fb_key, request_id, strlen(request_id));
}

pd_feedback_store_t *pd_feedback_store_new(size_t capacity) {
  if (capacity == 0)
    capacity = PD_FEEDBACK_CAPACITY;
  if (capacity >= FB_NONE / 2)
    return NULL;
  pd_feedback_store_t *s = calloc(1, sizeof *s);
  if (!s)
    goto fail_alloc;
  s->cap = capacity;
  s->nbuckets = 1;
  while (s->nbuckets < capacity)
    s->nbuckets *= 2;
  s->ring = calloc(capacity, sizeof *s->ring);
  if (!s->ring)
    goto fail_ring;
  s->buckets = malloc(s->nbuckets * sizeof *s->buckets);
  if (!s->buckets)
    goto fail_buckets;
  for (size_t i = 0; i < s->nbuckets; i++)
    s->buckets[i] = FB_NONE;
  if (pthread_mutex_init(&s->mu, NULL) != 0)
    goto fail_mutex;
  return s;

fail_mutex:
  free(s->buckets);
fail_buckets:
  free(s->ring);
fail_ring:
  free(s);
fail_alloc:
  return NULL;
}

void pd_feedback_store_free(pd_feedback_store_t *s) {
  if (!s)
    return;
  for (size_t i = 0; i < s->cap; i++)
    free(s->ring[i].data);
  free(s->ring);
  free(s->buckets);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

static void fb_unlink(pd_feedback_store_t *s, uint32_t slot) {
  uint32_t *pp = &s->buckets[s->ring[slot].hash & (s->nbuckets - 1)];
  while (*pp != FB_NONE) {
    if (*pp == slot) {
      *pp = s->ring[slot].next;
      return;
    }
    pp = &s->ring[*pp].next;
  }
}

void pd_feedback_remember(pd_feedback_store_t *s, const char *request_id, const char *route,
                          const char *variant) {
  if (!s || !request_id || !*request_id)
    return;
  if (!route)
    route = "";
  if (!variant)
    variant = "";
  size_t li = strlen(request_id), lr = strlen(route), lv = strlen(variant);
  char *data = malloc(li + lr + lv + 3); /* built outside the lock */
  if (!data)
    return;
  memcpy(data, request_id, li + 1);
  memcpy(data + li + 1, route, lr + 1);
  memcpy(data + li + lr + 2, variant, lv + 1);
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t h = pd_feedback_hash(request_id);

  pthread_mutex_lock(&s->mu);
  uint32_t slot = (uint32_t)s->head;
  fb_entry_t *e = &s->ring[slot];
  char *old = e->data;
  if (old)
    fb_unlink(s, slot);
  else
    s->count++;
  e->data = data;
  e->route = data + li + 1;
  e->variant = data + li + lr + 2;
  e->hash = h;
  e->stamp = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
  uint32_t *bucket = &s->buckets[h & (s->nbuckets - 1)];
  e->next = *bucket;
  *bucket = slot; /* newest first in its chain */
  s->head = (s->head + 1) % s->cap;
  pthread_mutex_unlock(&s->mu);
  free(old);
}

static void copy_out(char *dst, size_t n, const char *src) {
  if (dst && n)
    snprintf(dst, n, "%s", src);
}

int pd_feedback_lookup(pd_feedback_store_t *const *stores, size_t n, const char *request_id,
                       char *route, size_t rlen, char *variant, size_t vlen) {
  if (!request_id || !*request_id)
    return -1;
  uint64_t h = pd_feedback_hash(request_id), best = 0;
  int found = 0;
  for (size_t i = 0; i < n; i++) {
    pd_feedback_store_t *s = stores[i];
    if (!s)
      continue;
    pthread_mutex_lock(&s->mu);
    for (uint32_t k = s->buckets[h & (s->nbuckets - 1)]; k != FB_NONE; k = s->ring[k].next) {
      const fb_entry_t *e = &s->ring[k];
      if (e->hash == h && strcmp(e->data, request_id) == 0) {
        if (!found || e->stamp >= best) {
          copy_out(route, rlen, e->route);
          copy_out(variant, vlen, e->variant);
          best = e->stamp;
          found = 1;
        }
        break; /* the first in the chain is this store's newest */
      }
    }
    pthread_mutex_unlock(&s->mu);
  }
  return found ? 0 : -1;
}

size_t pd_feedback_store_size(pd_feedback_store_t *s) {
  if (!s)
    return 0;
  pthread_mutex_lock(&s->mu);
  size_t n = s->count;
  pthread_mutex_unlock(&s->mu);
  return n;
}
