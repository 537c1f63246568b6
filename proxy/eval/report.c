/* report.html (SPEC section 11): one self-contained page from summary.json's object and
 * samples.jsonl: the summary table, an SVG chart of accuracy against mean reasoning tokens per
 * variant with 95% interval bars, and a per-item table whose rows open (<details>, no script)
 * onto each variant's answers and reasoning.
 *
 * Every sample text is untrusted (a model wrote it, or anyone who edited the file): all of it
 * is HTML-escaped, and a Content-Security-Policy of default-src 'none' keeps the page from
 * loading or running anything even if a byte slipped through. The page's size is bounded for
 * huge runs: texts are cut at fixed lengths with a marker, the texts together at a budget, and
 * the rows at a count, each with a note saying what was left out (samples.jsonl has it all).
 * Owns the per-item table it builds while reading the samples. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/array.h"
#include "base/buf.h"
#include "eval/eval.h"
#include "eval/samples.h"

/* The bounds (bytes unless said). */
enum {
  MAX_ITEMS = 5000,    /* rows of the per-item table */
  MAX_VARIANTS = 32,   /* columns of it */
  MAX_SHOWN = 8,       /* samples shown per item and variant */
  CAP_QUESTION = 4096, /* one question */
  CAP_REASONING = 32768,
  CAP_ANSWER = 8192,
  CAP_SHORT = 512, /* a reference, a final answer, an error */
};
#define TEXT_BUDGET ((size_t)12 << 20) /* every text of the per-item table together */

typedef struct text {
  char *s;     /* the kept head (NULL: none) */
  size_t more; /* bytes cut off */
} text_t;

typedef struct shown {
  int sample;
  double score;
  text_t final, answer, reasoning, error;
  int omitted; /* the text budget was spent: no texts */
} shown_t;

typedef struct cell {
  double sum;
  int n, nerr;
  shown_t shown[MAX_SHOWN];
  int nshown, hidden; /* hidden: samples past MAX_SHOWN */
} cell_t;

typedef struct row {
  char *id;
  text_t ref, question;
  cell_t *cells; /* nvariants */
} row_t;

typedef struct report {
  const json_t *summary;
  const char *names[MAX_VARIANTS];
  char *extra[MAX_VARIANTS]; /* names only the samples had (owned) */
  size_t nvariants;
  row_t *rows;
  size_t nrows, caprows;
  long more_items; /* items past MAX_ITEMS */
  pd_samples_index_t ix;
  size_t budget; /* text bytes left */
  int all_numeric;
  int oom; /* an append to out failed */
  pd_buf_t out;
} report_t;

/* The index's value for an item past MAX_ITEMS (counted, no row). */
#define NO_ROW ((size_t)-2)

/* ---- collecting ---- */

/* Keeps at most cap bytes of s (cut at a character boundary) against the budget. */
/* How much of s (n bytes) is kept under cap: cut at a character boundary. */
static size_t kept_len(const char *s, size_t n, size_t cap) {
  size_t k = n > cap ? cap : n;
  while (k < n && k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80)
    k--;
  return k;
}

static int keep(report_t *rp, text_t *t, const char *s, size_t cap) {
  size_t n = strlen(s), k = kept_len(s, n, cap);
  t->more = n - k;
  if (k > rp->budget)
    return -1;
  if (!(t->s = malloc(k + 1)))
    return -1;
  memcpy(t->s, s, k);
  t->s[k] = '\0';
  rp->budget -= k;
  return 0;
}

static void text_free(text_t *t) {
  free(t->s);
  t->s = NULL;
}

static size_t variant_of(report_t *rp, const char *name) {
  for (size_t i = 0; i < rp->nvariants; i++)
    if (!strcmp(rp->names[i], name))
      return i;
  if (rp->nvariants == MAX_VARIANTS || rp->nrows) /* columns are fixed once rows exist */
    return (size_t)-1;
  if (!(rp->extra[rp->nvariants] = strdup(name)))
    return (size_t)-1;
  rp->names[rp->nvariants] = rp->extra[rp->nvariants];
  return rp->nvariants++;
}

static int numeric(const char *s) {
  if (*s == '-')
    s++;
  if (!*s || strlen(s) > 15)
    return 0;
  for (; *s; s++)
    if (*s < '0' || *s > '9')
      return 0;
  return 1;
}

static row_t *row_for(report_t *rp, const pd_samples_rec_t *r) {
  size_t at = pd_samples_index_get(&rp->ix, r->item_id);
  if (at == NO_ROW)
    return NULL;
  if (at != (size_t)-1)
    return &rp->rows[at];
  if (rp->nrows == MAX_ITEMS) {
    rp->more_items++;
    if (pd_samples_index_put(&rp->ix, r->item_id, NO_ROW) < 0)
      rp->oom = 1;
    return NULL;
  }
  if (rp->nrows == rp->caprows) {
    row_t *rows = pd_array_grow(rp->rows, &rp->caprows, sizeof *rows, 64);
    if (!rows)
      return NULL;
    rp->rows = rows;
  }
  row_t *row = &rp->rows[rp->nrows];
  memset(row, 0, sizeof *row);
  if (!(row->cells = calloc(rp->nvariants ? rp->nvariants : 1, sizeof *row->cells)) ||
      !(row->id = strdup(r->item_id)) || pd_samples_index_put(&rp->ix, r->item_id, rp->nrows) < 0) {
    free(row->cells);
    free(row->id);
    rp->oom = 1;
    return NULL;
  }
  if (r->reference)
    keep(rp, &row->ref, r->reference, CAP_SHORT);
  keep(rp, &row->question, r->question, CAP_QUESTION);
  if (!numeric(r->item_id))
    rp->all_numeric = 0;
  rp->nrows++;
  return row;
}

static void add_sample(report_t *rp, const pd_samples_rec_t *r) {
  size_t v = variant_of(rp, r->variant);
  if (v == (size_t)-1)
    return;
  row_t *row = row_for(rp, r);
  if (!row)
    return;
  cell_t *c = &row->cells[v];
  c->sum += r->score;
  c->n++;
  c->nerr += r->error != NULL;
  if (c->nshown == MAX_SHOWN) {
    c->hidden++;
    return;
  }
  /* Shown in sample order. */
  int at = c->nshown;
  while (at > 0 && c->shown[at - 1].sample > r->sample)
    at--;
  memmove(&c->shown[at + 1], &c->shown[at], (size_t)(c->nshown - at) * sizeof *c->shown);
  c->nshown++;
  shown_t *s = &c->shown[at];
  memset(s, 0, sizeof *s);
  s->sample = r->sample;
  s->score = r->score;
  /* All of a sample's texts or none of them. */
  const char *err = r->error ? r->error : "";
  size_t need = kept_len(r->final_answer, strlen(r->final_answer), CAP_SHORT) +
                kept_len(r->output_text, strlen(r->output_text), CAP_ANSWER) +
                kept_len(r->reasoning, strlen(r->reasoning), CAP_REASONING) +
                kept_len(err, strlen(err), CAP_SHORT);
  if (need > rp->budget || keep(rp, &s->final, r->final_answer, CAP_SHORT) < 0 ||
      keep(rp, &s->answer, r->output_text, CAP_ANSWER) < 0 ||
      keep(rp, &s->reasoning, r->reasoning, CAP_REASONING) < 0 ||
      (r->error && keep(rp, &s->error, r->error, CAP_SHORT) < 0)) {
    text_free(&s->final);
    text_free(&s->answer);
    text_free(&s->reasoning);
    text_free(&s->error);
    s->omitted = 1;
  }
}

static int by_numeric_id(const void *a, const void *b) {
  long long x = atoll(((const row_t *)a)->id), y = atoll(((const row_t *)b)->id);
  return (x > y) - (x < y);
}

/* ---- writing ---- */

/* HTML text or attribute value: the five special characters as entities, control characters
 * (other than tab and newlines) as U+FFFD. s is valid UTF-8 (jansson's strings are). */
static void esc(report_t *rp, const char *s) {
  pd_buf_t *b = &rp->out;
  int rc = 0;
  const char *run = s;
  for (; *s; s++) {
    const char *rep;
    unsigned char c = (unsigned char)*s;
    switch (c) {
    case '&':
      rep = "&amp;";
      break;
    case '<':
      rep = "&lt;";
      break;
    case '>':
      rep = "&gt;";
      break;
    case '"':
      rep = "&quot;";
      break;
    case '\'':
      rep = "&#39;";
      break;
    default:
      rep = (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f ? "\xEF\xBF\xBD" : NULL;
    }
    if (rep) {
      rc |= pd_buf_append(b, run, (size_t)(s - run)) | pd_buf_appends(b, rep);
      run = s + 1;
    }
  }
  if ((rc | pd_buf_append(b, run, (size_t)(s - run))) < 0)
    rp->oom = 1;
}

static void put(report_t *rp, const char *s) {
  if (pd_buf_appends(&rp->out, s) < 0)
    rp->oom = 1;
}

/* pd_buf_appendf on the page, noting a failure. */
#define PF(rp, ...)                                                                                \
  do {                                                                                             \
    if (pd_buf_appendf(&(rp)->out, __VA_ARGS__) < 0)                                               \
      (rp)->oom = 1;                                                                               \
  } while (0)

static void put_text(report_t *rp, const text_t *t) {
  if (t->s)
    esc(rp, t->s);
  if (t->more)
    PF(rp, "<span class=\"cut\"> [… %zu more bytes in samples.jsonl]</span>", t->more);
}

static int num(const json_t *o, const char *key, double *out) {
  const json_t *v = json_object_get(o, key);
  if (!json_is_number(v))
    return 0;
  *out = json_number_value(v);
  return isfinite(*out);
}

static const char *str_of(const json_t *o, const char *key) {
  return json_string_value(json_object_get(o, key));
}

/* A cell of the summary table: fmt applied to o[key] times scale, or a dash. */
static void cell_num(report_t *rp, const json_t *o, const char *key, const char *fmt,
                     double scale) {
  double d;
  put(rp, "<td>");
  if (num(o, key, &d))
    PF(rp, fmt, d * scale);
  else
    put(rp, "–");
  put(rp, "</td>");
}

static void interval(report_t *rp, const json_t *ci, double scale, const char *unit) {
  double lo, hi;
  if (json_array_size(ci) == 2 && json_is_number(json_array_get(ci, 0)) &&
      json_is_number(json_array_get(ci, 1)) &&
      isfinite(lo = json_number_value(json_array_get(ci, 0))) &&
      isfinite(hi = json_number_value(json_array_get(ci, 1))))
    PF(rp, "[%.1f, %.1f]%s", lo * scale, hi * scale, unit);
  else
    put(rp, "–");
}

static const char *const palette[] = {"#1f6fb4", "#d9480f", "#2b8a3e", "#862e9c",
                                      "#c92a2a", "#0b7285", "#e67700", "#5c940d"};

/* A cost in dollars with three significant digits and no exponent ("$0.0000123"). */
static void cost(report_t *rp, const json_t *o, const char *key) {
  double d;
  if (!num(o, key, &d)) {
    put(rp, "<td>–</td>");
    return;
  }
  int dec = d > 0 ? 2 - (int)floor(log10(d)) : 2;
  PF(rp, "<td>$%.*f</td>", dec < 2 ? 2 : dec > 12 ? 12 : dec, d);
}

static void summary_table(report_t *rp) {
  const json_t *vs = json_object_get(rp->summary, "variants");
  size_t i;
  const json_t *v;
  put(rp, "<div class=\"scroll\"><table class=\"summary\" id=\"summary\"><thead><tr>"
          "<th>variant</th><th>accuracy [95% interval]</th>"
          "<th>difference to the first [95%]</th><th>p (McNemar)</th>"
          "<th>prompt tokens</th><th>completion tokens</th><th>reasoning tokens</th>"
          "<th>upstream calls</th><th>latency p50 / p95</th><th>errors</th>"
          "<th>cost / sample</th><th>cost / correct</th></tr></thead><tbody>\n");
  json_array_foreach(vs, i, v) {
    const json_t *diff = json_object_get(v, "diff"), *lat = json_object_get(v, "latency_ms");
    double d, d2;
    PF(rp, "<tr><th><span class=\"key\" style=\"background:%s\"></span>", palette[i % 8]);
    esc(rp, str_of(v, "name") ? str_of(v, "name") : "?");
    put(rp, "</th><td>");
    if (num(v, "accuracy", &d))
      PF(rp, "%.1f%% ", d * 100);
    put(rp, "<small>");
    interval(rp, json_object_get(v, "ci95"), 100, "");
    put(rp, "</small></td><td>");
    if (json_is_object(diff) && num(diff, "mean", &d)) {
      PF(rp, "%+.1f pts <small>", d * 100);
      interval(rp, json_object_get(diff, "ci95"), 100, "");
      put(rp, "</small>");
    } else {
      put(rp, "–");
    }
    put(rp, "</td>");
    if (json_is_object(diff) && num(diff, "p_value", &d))
      PF(rp, "<td>%.3g</td>", d);
    else
      put(rp, "<td>–</td>");
    cell_num(rp, v, "prompt_tokens", "%.1f", 1);
    cell_num(rp, v, "completion_tokens", "%.1f", 1);
    cell_num(rp, v, "reasoning_tokens", "%.1f", 1);
    cell_num(rp, v, "upstream_calls", "%.2f", 1);
    if (num(lat, "p50", &d) && num(lat, "p95", &d2))
      PF(rp, "<td>%.0f / %.0f ms</td>", d, d2);
    else
      put(rp, "<td>–</td>");
    cell_num(rp, v, "errors", "%.0f", 1);
    cost(rp, v, "cost_per_sample");
    cost(rp, v, "cost_per_correct");
    put(rp, "</tr>\n");
  }
  put(rp, "</tbody></table></div>\n");
}

/* The smallest 1, 2 or 5 times a power of ten at least x. */
static double nice_ceil(double x) {
  if (!(x > 0))
    return 1;
  double p = pow(10, floor(log10(x)));
  for (int i = 0; i < 3; i++) {
    static const double m[] = {1, 2, 5};
    if (m[i] * p >= x)
      return m[i] * p;
  }
  return 10 * p;
}

static void chart(report_t *rp) {
  enum { W = 760, H = 420, L = 72, R = 140, T = 20, B = 60 };
  const json_t *vs = json_object_get(rp->summary, "variants");
  double xmax = 0, d, xs[MAX_VARIANTS];
  size_t i;
  const json_t *v;
  json_array_foreach(vs, i, v) {
    if (num(v, "reasoning_tokens", &d) && d > xmax)
      xmax = d;
  }
  xmax = nice_ceil(xmax * 1.05);
  const double pw = W - L - R, ph = H - T - B;
#define X(t) (L + (t) / xmax * pw)
#define Y(a) (T + (1 - (a)) * ph)
  PF(rp,
     "<svg id=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" "
     "width=\"%d\" height=\"%d\" role=\"img\" aria-label=\"accuracy against mean "
     "reasoning tokens per variant, with 95%% intervals\">\n",
     W, H, W, H);
  for (int k = 0; k <= 5; k++) {
    double a = k / 5.0, t = xmax * k / 5.0;
    PF(rp,
       "<line class=\"grid\" x1=\"%d\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>"
       "<text class=\"tick\" x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%d%%</text>\n"
       "<line class=\"grid\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%.1f\"/>"
       "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n",
       L, L + pw, Y(a), Y(a), L - 8, Y(a) + 4, k * 20, X(t), X(t), T, T + ph, X(t), T + ph + 18, t);
  }
  PF(rp,
     "<line class=\"axis\" x1=\"%d\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>"
     "<line class=\"axis\" x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%.1f\"/>\n"
     "<text class=\"label\" x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">mean reasoning "
     "tokens per sample</text>\n"
     "<text class=\"label\" transform=\"translate(18 %.1f) rotate(-90)\" "
     "text-anchor=\"middle\">accuracy (95%% interval)</text>\n",
     L, L + pw, T + ph, T + ph, L, L, T, T + ph, L + pw / 2, H - 14, T + ph / 2);
  json_array_foreach(vs, i, v) {
    double acc, tok = 0, lo, hi;
    const json_t *ci = json_object_get(v, "ci95");
    const char *name = str_of(v, "name") ? str_of(v, "name") : "?";
    if (!num(v, "accuracy", &acc))
      continue;
    num(v, "reasoning_tokens", &tok);
    lo = hi = acc;
    if (json_array_size(ci) == 2) {
      lo = json_number_value(json_array_get(ci, 0));
      hi = json_number_value(json_array_get(ci, 1));
      if (!isfinite(lo) || !isfinite(hi))
        lo = hi = acc;
    }
    lo = lo < 0 ? 0 : lo > 1 ? 1 : lo;
    hi = hi < 0 ? 0 : hi > 1 ? 1 : hi;
    acc = acc < 0 ? 0 : acc > 1 ? 1 : acc;
    tok = tok < 0 ? 0 : tok;
    double x = X(tok);
    /* Marks at (nearly) the same tokens, rounds 0 ones say, are set apart a little. */
    for (size_t j = 0; j < i && j < MAX_VARIANTS; j++)
      if (fabs(xs[j] - x) < 5)
        x += 9;
    if (i < MAX_VARIANTS)
      xs[i] = x;
    const char *col = palette[i % 8];
    put(rp, "<g class=\"mark\" data-variant=\"");
    esc(rp, name);
    put(rp, "\"><title>");
    esc(rp, name);
    PF(rp,
       ": accuracy %.1f%% [%.1f, %.1f], %.1f reasoning tokens</title>"
       "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
       "stroke-width=\"2\"/>"
       "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
       "stroke-width=\"2\"/>"
       "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
       "stroke-width=\"2\"/>"
       "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"6\" fill=\"%s\"/>"
       "<text class=\"name\" x=\"%.1f\" y=\"%.1f\" fill=\"%s\">",
       acc * 100, lo * 100, hi * 100, tok, x, x, Y(lo), Y(hi), col, x - 6, x + 6, Y(lo), Y(lo), col,
       x - 6, x + 6, Y(hi), Y(hi), col, x, Y(acc), col, x + 10, Y(acc) + 4, col);
    esc(rp, name);
    put(rp, "</text></g>\n");
  }
#undef X
#undef Y
  put(rp, "</svg>\n");
}

static const char *score_class(const cell_t *c) {
  if (!c->n)
    return "none";
  double m = c->sum / c->n;
  return c->nerr ? "err" : m >= 1 - 1e-9 ? "ok" : m <= 1e-9 ? "no" : "part";
}

/* The mean score of a cell (with the number of samples when more than one). */
static void put_score(report_t *rp, const cell_t *c) {
  if (!c->n) {
    put(rp, "–");
    return;
  }
  double m = c->sum / c->n;
  PF(rp, "<span title=\"mean score of %d sample%s%s\">", c->n, c->n == 1 ? "" : "s",
     c->nerr ? ", errors count 0" : "");
  if (c->n == 1 || m == floor(m))
    PF(rp, "%g", m);
  else
    PF(rp, "%.2f", m);
  if (c->n > 1)
    PF(rp, " <small>(%d)</small>", c->n);
  if (c->nerr)
    PF(rp, " <small>%d err</small>", c->nerr);
  put(rp, "</span>");
}

/* A text in a <pre>, or a note when there is none. */
static void put_pre(report_t *rp, const char *cls, const text_t *t) {
  if (!t->s || (!*t->s && !t->more)) {
    put(rp, "<p class=\"note\">none</p>");
    return;
  }
  PF(rp, "<pre class=\"%s\">", cls);
  put_text(rp, t);
  put(rp, "</pre>");
}

static void item_body(report_t *rp, const row_t *row) {
  put(rp, "<div class=\"ibody\"><p class=\"q\"><b>Question</b> ");
  put_text(rp, &row->question);
  put(rp, "</p><div class=\"cols\">");
  for (size_t v = 0; v < rp->nvariants; v++) {
    const cell_t *c = &row->cells[v];
    PF(rp, "<div class=\"col\" data-variant=\"");
    esc(rp, rp->names[v]);
    PF(rp, "\"><h4 style=\"border-color:%s\">", palette[v % 8]);
    esc(rp, rp->names[v]);
    put(rp, " <span class=\"sc ");
    put(rp, score_class(c));
    put(rp, "\">");
    put_score(rp, c);
    put(rp, "</span></h4>");
    if (!c->n)
      put(rp, "<p class=\"note\">no sample</p>");
    for (int k = 0; k < c->nshown; k++) {
      const shown_t *s = &c->shown[k];
      PF(rp, "<div class=\"smp\"><p class=\"meta\">sample %d · score %g", s->sample, s->score);
      if (s->omitted) {
        put(rp, "</p><p class=\"note\">texts left out: the report's text budget is spent "
                "(samples.jsonl has them)</p></div>");
        continue;
      }
      if (s->final.s && *s->final.s) {
        put(rp, " · final answer <code>");
        put_text(rp, &s->final);
        put(rp, "</code>");
      }
      put(rp, "</p>");
      if (s->error.s) {
        put(rp, "<p class=\"error\">error: ");
        put_text(rp, &s->error);
        put(rp, "</p>");
      }
      put(rp, "<h5>answer</h5>");
      put_pre(rp, "answer", &s->answer);
      put(rp, "<details class=\"reasoning\" open><summary>reasoning</summary>");
      put_pre(rp, "reasoning", &s->reasoning);
      put(rp, "</details></div>");
    }
    if (c->hidden)
      PF(rp, "<p class=\"note\">%d more samples in samples.jsonl</p>", c->hidden);
    put(rp, "</div>");
  }
  put(rp, "</div></div>");
}

static void item_table(report_t *rp) {
  PF(rp,
     "<section><h2>Per item</h2>\n<input type=\"checkbox\" id=\"onlydiff\">"
     "<label for=\"onlydiff\"> only items where the variants' scores differ</label>\n"
     "<div class=\"itable\" id=\"items\" role=\"table\" style=\"--nv:%zu\">\n"
     "<div class=\"ihead\" role=\"row\"><span role=\"columnheader\">item</span>"
     "<span role=\"columnheader\">reference</span>",
     rp->nvariants);
  for (size_t v = 0; v < rp->nvariants; v++) {
    put(rp, "<span role=\"columnheader\">");
    esc(rp, rp->names[v]);
    put(rp, "</span>");
  }
  put(rp, "</div>\n");
  for (size_t r = 0; r < rp->nrows; r++) {
    const row_t *row = &rp->rows[r];
    int differ = 0, first = 1;
    double m0 = 0;
    for (size_t v = 0; v < rp->nvariants; v++) {
      const cell_t *c = &row->cells[v];
      if (!c->n)
        continue;
      double m = c->sum / c->n;
      if (first)
        m0 = m, first = 0;
      else if (fabs(m - m0) > 1e-9)
        differ = 1;
    }
    PF(rp, "<details class=\"irow%s\" role=\"row\" data-item=\"", differ ? " differ" : "");
    esc(rp, row->id);
    put(rp, "\"><summary><span role=\"cell\" class=\"id\">");
    esc(rp, row->id);
    put(rp, "</span><span role=\"cell\" class=\"ref\">");
    put_text(rp, &row->ref);
    put(rp, "</span>");
    for (size_t v = 0; v < rp->nvariants; v++) {
      put(rp, "<span role=\"cell\" class=\"sc ");
      put(rp, score_class(&row->cells[v]));
      put(rp, "\">");
      put_score(rp, &row->cells[v]);
      put(rp, "</span>");
    }
    put(rp, "</summary>");
    item_body(rp, row);
    put(rp, "</details>\n");
  }
  put(rp, "</div>\n");
  if (rp->more_items)
    PF(rp,
       "<p class=\"note\">%ld more items are left out of this table (it shows the "
       "first %d); samples.jsonl has every sample.</p>\n",
       rp->more_items, MAX_ITEMS);
  put(rp, "</section>\n");
}

static const char style[] =
    "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#1b1b1f;"
    "background:#fff}h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}"
    ".sub{color:#555;margin:0 0 16px}table.summary{border-collapse:collapse;font-variant-numeric:"
    "tabular-nums}table.summary th,table.summary td{border-bottom:1px solid #ddd;padding:5px 9px;"
    "text-align:right}.scroll{overflow-x:auto}table.summary th:first-child{text-align:left}"
    "table.summary td,table.summary tbody th{white-space:nowrap}table.summary thead "
    "th{background:#f3f4f6;font-weight:600;font-size:12px;vertical-align:bottom}"
    ".key{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:6px}"
    "#chart{display:block;max-width:100%;height:auto}#chart .grid{stroke:#e5e7eb}"
    "#chart .axis{stroke:#333}#chart .tick{font-size:11px;fill:#555}#chart .label{font-size:13px;"
    "fill:#222}#chart .name{font-size:12px;font-weight:600}"
    ".itable{border:1px solid #ddd;border-radius:6px;margin-top:8px}"
    ".ihead,.irow>summary{display:grid;grid-template-columns:minmax(5em,1fr) minmax(6em,1.4fr) "
    "repeat(var(--nv),minmax(4.5em,.8fr));gap:8px;padding:5px 10px;align-items:center}"
    ".ihead{background:#f3f4f6;font-weight:600;font-size:12px}.irow{border-top:1px solid #eee}"
    ".irow>summary{cursor:pointer;list-style:none}.irow>summary::-webkit-details-marker{display:"
    "none}.irow>summary .id::before{content:'\\25B8  ';color:#888}.irow[open]>summary .id::before"
    "{content:'\\25BE  '}.irow>summary:hover{background:#fafafa}.ref,.id{overflow:hidden;"
    "text-overflow:ellipsis;white-space:nowrap}.sc{border-radius:4px;padding:1px 6px;"
    "text-align:center}.sc.ok{background:#d3f9d8}.sc.no{background:#ffe3e3}.sc.part{background:"
    "#fff3bf}.sc.err{background:#e9ecef;color:#c92a2a}#onlydiff:checked~.itable .irow:not(.differ)"
    "{display:none}.ibody{padding:6px 12px 14px;background:#fcfcfd}.q{white-space:pre-wrap}"
    ".cols{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:12px}"
    ".col{min-width:0}.col h4{margin:6px 0;border-bottom:3px solid;padding-bottom:2px}"
    ".smp{margin-bottom:10px}.meta{margin:2px 0;color:#555;font-size:12px}h5{margin:6px 0 2px;"
    "font-size:12px;color:#555}pre{white-space:pre-wrap;word-break:break-word;max-height:22em;"
    "overflow:auto;background:#f6f7f9;border:1px solid #e5e7eb;border-radius:4px;padding:6px 8px;"
    "margin:0;font:12px/1.4 ui-monospace,Menlo,Consolas,monospace}.reasoning>summary{font-size:"
    "12px;color:#555;cursor:pointer;margin-top:6px}.cut,.note{color:#888;font-style:italic}"
    ".error{color:#c92a2a}code{background:#f1f3f5;padding:0 3px;border-radius:3px}";

static void page(report_t *rp) {
  const json_t *s = rp->summary;
  const char *dataset = str_of(s, "dataset") ? str_of(s, "dataset") : "";
  double d;
  put(rp, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
          "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
          "style-src 'unsafe-inline'\">\n"
          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
          "<title>ponder eval: ");
  esc(rp, dataset);
  put(rp, "</title>\n<style>");
  put(rp, style);
  put(rp, "</style></head><body>\n<h1>ponder eval: ");
  esc(rp, dataset);
  put(rp, "</h1>\n<p class=\"sub\">");
  if (num(s, "items", &d))
    PF(rp, "%.0f items", d);
  if (num(s, "samples", &d))
    PF(rp, " · %.0f sample%s per item and variant", d, d == 1 ? "" : "s");
  if (str_of(s, "grader")) {
    put(rp, " · grader ");
    esc(rp, str_of(s, "grader"));
  }
  if (num(s, "seed", &d))
    PF(rp, " · seed %.0f", d);
  put(rp, "</p>\n<h2>Summary</h2>\n");
  summary_table(rp);
  put(rp, "<h2>Accuracy against thinking</h2>\n");
  chart(rp);
  item_table(rp);
  put(rp, "</body></html>\n");
}

static char *msg(const char *a, const char *b) {
  pd_buf_t m = {0};
  if (pd_buf_appendf(&m, "%s: %s", a, b) < 0) {
    pd_buf_free(&m);
    return strdup("out of memory");
  }
  return pd_buf_steal(&m, NULL);
}

static void report_free(report_t *rp) {
  for (size_t r = 0; r < rp->nrows; r++) {
    row_t *row = &rp->rows[r];
    free(row->id);
    text_free(&row->ref);
    text_free(&row->question);
    for (size_t v = 0; v < rp->nvariants; v++)
      for (int k = 0; k < row->cells[v].nshown; k++) {
        shown_t *s = &row->cells[v].shown[k];
        text_free(&s->final);
        text_free(&s->answer);
        text_free(&s->reasoning);
        text_free(&s->error);
      }
    free(row->cells);
  }
  free(rp->rows);
  for (size_t v = 0; v < MAX_VARIANTS; v++)
    free(rp->extra[v]);
  pd_samples_index_free(&rp->ix);
  pd_buf_free(&rp->out);
}

int pd_eval_report_write(const char *path, const json_t *summary, const char *samples_path,
                         char **err) {
  report_t rp;
  memset(&rp, 0, sizeof rp);
  rp.summary = summary;
  rp.budget = TEXT_BUDGET;
  rp.all_numeric = 1;
  *err = NULL;
  size_t i;
  const json_t *v;
  json_array_foreach(json_object_get(summary, "variants"), i, v) {
    if (rp.nvariants < MAX_VARIANTS && str_of(v, "name")) {
      rp.names[rp.nvariants++] = str_of(v, "name");
    }
  }
  pd_samples_file_t *f = pd_samples_open(samples_path, err);
  if (!f)
    return -1;
  pd_samples_rec_t r;
  int rc;
  while ((rc = pd_samples_next(f, &r, err)) == 1) {
    add_sample(&rp, &r);
    pd_samples_rec_free(&r);
  }
  pd_samples_close(f);
  if (rc < 0) {
    report_free(&rp);
    return -1;
  }
  if (rp.all_numeric && rp.nrows > 1) {
    qsort(rp.rows, rp.nrows, sizeof *rp.rows, by_numeric_id);
  }
  page(&rp);
  FILE *out = fopen(path, "wb");
  int ok = !rp.oom && out && fwrite(pd_buf_data(&rp.out), 1, rp.out.len, out) == rp.out.len;
  if (out && fclose(out) != 0)
    ok = 0;
  if (!ok)
    *err = msg(path, rp.oom ? "out of memory" : out ? "write failed" : "cannot create");
  report_free(&rp);
  return ok ? 0 : -1;
}
