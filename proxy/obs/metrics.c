/* Per-worker metric stores and the Prometheus renderer. See metrics.h.
 *
 * A store is a small chained hash table of series keyed by their label strings. Each worker
 * writes only its own store (under the store's mutex, uncontended except while /metrics or a
 * feedback lookup reads it); the renderer merges every store into a private table and prints it
 * family by family in a stable (sorted) order. */
#include "obs/metrics.h"

#include "base/array.h"
#include "base/buf.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    code_count_t *c = pd_array_grow(s->codes, &s->capcodes, sizeof *c, 4);
    if (!c)
      return;
    s->codes = c;
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

/* The text being rendered. The first allocation failure stops all output and the render
 * returns NULL, rather than a page with gaps in it. */
typedef struct out {
  pd_buf_t b;
  int oom;
} out_t;

static void out_puts(out_t *o, const char *s, size_t n) {
  if (!o->oom && pd_buf_append(&o->b, s, n) < 0)
    o->oom = 1;
}

__attribute__((format(printf, 2, 3))) static void out_printf(out_t *o, const char *fmt, ...) {
  if (o->oom)
    return;
  va_list ap;
  va_start(ap, fmt);
  if (pd_buf_appendv(&o->b, fmt, ap) < 0)
    o->oom = 1;
  va_end(ap);
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
  if (!pd_buf_reserve(&o.b, 4096))
    o.oom = 1;

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
    pd_buf_free(&o.b);
    return NULL;
  }
  return pd_buf_steal(&o.b, len);
}
