/* summary.json and summary.md of a finished `ponder eval` run (SPEC section 11): per variant
 * the accuracy with its 95% interval, the paired difference to the first variant, tokens,
 * upstream calls, latency percentiles, errors and costs. Pure: reads the run, returns new
 * objects; the statistics themselves are stats.c's. */
#include "eval/eval.h"
#include "eval/stats.h"

#include "base/buf.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One variant's per-item view: item_sum[i] / item_n[i] is item i's mean score. */
typedef struct per_variant {
  double *item_sum;
  long *item_n;
  size_t present; /* items with at least one sample */
  int binary;     /* every present item has one sample, scored 0 or 1 */
  double *means;  /* present items' means, in item order */
} per_variant_t;

static json_t *num_or_null(int ok, double v) {
  return ok && isfinite(v) ? json_real(v) : json_null();
}

static json_t *pair(double lo, double hi) {
  return json_pack("[ff]", lo, hi);
}

/* The accuracy interval: Wilson for one binary sample per item, else the bootstrap. */
static json_t *accuracy_ci(const per_variant_t *pv, uint64_t seed) {
  double lo, hi;
  if (!pv->present)
    return json_null();
  if (pv->binary) {
    double k = 0;
    for (size_t i = 0; i < pv->present; i++)
      k += pv->means[i];
    pd_stats_wilson(k, (double)pv->present, PD_STATS_Z95, &lo, &hi);
  } else if (pd_stats_bootstrap(pv->means, pv->present, seed, PD_STATS_RESAMPLES, &lo, &hi)) {
    return NULL;
  }
  return pair(lo, hi);
}

/* The paired difference of variant v to the baseline b over the items both have. */
static json_t *paired_diff(const per_variant_t *b, const per_variant_t *v, size_t nitems,
                           const char *vs, uint64_t seed) {
  double *d = malloc((nitems ? nitems : 1) * sizeof *d);
  if (!d)
    return NULL;
  size_t n = 0;
  long only_b = 0, only_v = 0; /* discordant pairs: baseline right and v wrong, and back */
  double sum = 0;
  for (size_t i = 0; i < nitems; i++) {
    if (!b->item_n[i] || !v->item_n[i])
      continue;
    double mb = b->item_sum[i] / (double)b->item_n[i];
    double mv = v->item_sum[i] / (double)v->item_n[i];
    d[n++] = mv - mb;
    sum += mv - mb;
    only_b += mb == 1 && mv == 0;
    only_v += mb == 0 && mv == 1;
  }
  json_t *o = json_object();
  json_object_set_new(o, "vs", json_string(vs));
  if (!n) {
    json_object_set_new(o, "mean", json_null());
    json_object_set_new(o, "ci95", json_null());
    json_object_set_new(o, "p_value", json_null());
    free(d);
    return o;
  }
  double lo, hi;
  if (pd_stats_bootstrap(d, n, seed, PD_STATS_RESAMPLES, &lo, &hi)) {
    free(d);
    json_decref(o);
    return NULL;
  }
  free(d);
  json_object_set_new(o, "mean", json_real(sum / (double)n));
  json_object_set_new(o, "ci95", pair(lo, hi));
  json_object_set_new(o, "p_value",
                      b->binary && v->binary ? json_real(pd_stats_mcnemar(only_b, only_v))
                                             : json_null());
  return o;
}

/* The per-sample means, latency percentiles, errors and costs of variant v. */
static void sample_stats(const pd_eval_run_t *run, size_t v, json_t *o) {
  double pt = 0, ct = 0, rt = 0, calls = 0, score = 0;
  size_t ns = 0, nlat = 0;
  long errors = 0;
  double *lat = malloc((run->nsamples ? run->nsamples : 1) * sizeof *lat);
  for (size_t s = 0; s < run->nsamples; s++) {
    const pd_eval_sample_t *x = &run->samples[s];
    if (x->variant != v)
      continue;
    ns++;
    pt += (double)x->prompt_tokens;
    ct += (double)x->completion_tokens;
    rt += (double)x->reasoning_tokens;
    calls += x->upstream_calls;
    score += x->score;
    if (x->error)
      errors++;
    else if (lat)
      lat[nlat++] = x->latency_ms;
  }
  double dn = (double)ns;
  json_object_set_new(o, "prompt_tokens", num_or_null(ns > 0, pt / dn));
  json_object_set_new(o, "completion_tokens", num_or_null(ns > 0, ct / dn));
  json_object_set_new(o, "reasoning_tokens", num_or_null(ns > 0, rt / dn));
  json_object_set_new(o, "upstream_calls", num_or_null(ns > 0, calls / dn));
  json_t *l = json_object();
  if (lat)
    pd_stats_sort(lat, nlat);
  json_object_set_new(l, "p50",
                      num_or_null(nlat > 0, nlat ? pd_stats_quantile(lat, nlat, 0.5) : 0));
  json_object_set_new(l, "p95",
                      num_or_null(nlat > 0, nlat ? pd_stats_quantile(lat, nlat, 0.95) : 0));
  json_object_set_new(o, "latency_ms", l);
  json_object_set_new(o, "errors", json_integer(errors));
  double cost = (pt * run->price_in + ct * run->price_out) / 1e6;
  json_object_set_new(o, "cost_per_sample", num_or_null(run->have_price && ns > 0, cost / dn));
  json_object_set_new(o, "cost_per_correct",
                      num_or_null(run->have_price && score > 0, cost / score));
  free(lat);
}

static void per_variant_free(per_variant_t *pv, size_t n) {
  for (size_t v = 0; pv && v < n; v++) {
    free(pv[v].item_sum);
    free(pv[v].item_n);
    free(pv[v].means);
  }
  free(pv);
}

/* Groups the samples by variant and item. */
static per_variant_t *group(const pd_eval_run_t *run) {
  size_t ni = run->nitems ? run->nitems : 1;
  per_variant_t *pv = calloc(run->nvariants ? run->nvariants : 1, sizeof *pv);
  if (!pv)
    return NULL;
  for (size_t v = 0; v < run->nvariants; v++) {
    pv[v].item_sum = calloc(ni, sizeof(double));
    pv[v].item_n = calloc(ni, sizeof(long));
    pv[v].means = calloc(ni, sizeof(double));
    pv[v].binary = 1;
    if (!pv[v].item_sum || !pv[v].item_n || !pv[v].means) {
      per_variant_free(pv, run->nvariants);
      return NULL;
    }
  }
  for (size_t s = 0; s < run->nsamples; s++) {
    const pd_eval_sample_t *x = &run->samples[s];
    if (x->variant >= run->nvariants || x->item >= run->nitems)
      continue;
    per_variant_t *p = &pv[x->variant];
    p->item_sum[x->item] += x->score;
    p->item_n[x->item]++;
    if (x->score != 0 && x->score != 1)
      p->binary = 0;
  }
  for (size_t v = 0; v < run->nvariants; v++) {
    per_variant_t *p = &pv[v];
    for (size_t i = 0; i < run->nitems; i++) {
      if (!p->item_n[i])
        continue;
      if (p->item_n[i] != 1)
        p->binary = 0;
      p->means[p->present++] = p->item_sum[i] / (double)p->item_n[i];
    }
    if (!p->present)
      p->binary = 0;
  }
  return pv;
}

json_t *pd_eval_summary(const pd_eval_run_t *run) {
  per_variant_t *pv = group(run);
  if (!pv)
    return NULL;
  json_t *variants = json_array();
  json_t *root = json_pack("{s:s?,s:I,s:i,s:s?,s:I,s:o}", "dataset", run->dataset, "items",
                           (json_int_t)run->nitems, "samples", run->per_item, "grader", run->grader,
                           "seed", (json_int_t)run->seed, "variants", variants);
  if (!root)
    goto fail;
  for (size_t v = 0; v < run->nvariants; v++) {
    per_variant_t *p = &pv[v];
    double acc = 0;
    for (size_t i = 0; i < p->present; i++)
      acc += p->means[i];
    json_t *o = json_object();
    json_array_append_new(variants, o);
    json_object_set_new(o, "name", json_string(run->variants[v]));
    json_object_set_new(o, "accuracy", num_or_null(p->present > 0, acc / (double)p->present));
    json_t *ci = accuracy_ci(p, run->seed);
    json_t *diff =
        v == 0 ? json_null() : paired_diff(&pv[0], p, run->nitems, run->variants[0], run->seed);
    if (!ci || !diff) {
      json_decref(ci);
      json_decref(diff);
      goto fail;
    }
    json_object_set_new(o, "ci95", ci);
    json_object_set_new(o, "diff", diff);
    sample_stats(run, v, o);
  }
  per_variant_free(pv, run->nvariants);
  return root;
fail:
  json_decref(root);
  per_variant_free(pv, run->nvariants);
  return NULL;
}

/* ---- summary.md ----------------------------------------------------------------------------- */

/* A table cell's text: '|' escaped, line breaks as spaces (names come from config files). */
static void cell(pd_buf_t *b, const char *s) {
  for (; s && *s; s++) {
    if (*s == '|')
      pd_buf_appends(b, "\\|");
    else if (*s == '\n' || *s == '\r')
      pd_buf_appends(b, " ");
    else
      pd_buf_append(b, s, 1);
  }
}

static int real_of(const json_t *o, const char *key, double *v) {
  const json_t *x = json_object_get(o, key);
  if (!json_is_number(x))
    return 0;
  *v = json_number_value(x);
  return 1;
}

/* A number cell: fmt of the value scaled by `scale`, or "–" when absent. */
static void num_cell(pd_buf_t *b, const json_t *o, const char *key, const char *fmt, double scale) {
  double v;
  pd_buf_appends(b, " ");
  if (real_of(o, key, &v))
    pd_buf_appendf(b, fmt, v * scale);
  else
    pd_buf_appends(b, "–");
  pd_buf_appends(b, " |");
}

static void ci_cell(pd_buf_t *b, const json_t *ci, const char *fmt) {
  pd_buf_appends(b, " ");
  if (json_is_array(ci) && json_array_size(ci) == 2 && json_is_number(json_array_get(ci, 0)) &&
      json_is_number(json_array_get(ci, 1))) {
    pd_buf_appendf(b, fmt, 100 * json_number_value(json_array_get(ci, 0)),
                   100 * json_number_value(json_array_get(ci, 1)));
  } else {
    pd_buf_appends(b, "–");
  }
  pd_buf_appends(b, " |");
}

char *pd_eval_summary_md(const json_t *summary) {
  pd_buf_t b = {0};
  const json_t *vs = json_object_get(summary, "variants");
  pd_buf_appends(&b, "**");
  cell(&b, json_string_value(json_object_get(summary, "dataset")));
  long long k = (long long)json_integer_value(json_object_get(summary, "samples"));
  pd_buf_appendf(&b, "**: %lld items, %lld sample%s per item and variant, grader `",
                 (long long)json_integer_value(json_object_get(summary, "items")), k,
                 k == 1 ? "" : "s");
  cell(&b, json_string_value(json_object_get(summary, "grader")));
  pd_buf_appendf(&b, "`, seed %llu\n\n",
                 (unsigned long long)json_integer_value(json_object_get(summary, "seed")));
  pd_buf_appends(&b, "| variant | accuracy | 95% CI | Δ vs first | Δ 95% CI | McNemar p | "
                     "prompt tok | completion tok | reasoning tok | upstream calls | p50 ms | "
                     "p95 ms | errors | cost/sample | cost/correct |\n");
  pd_buf_appends(&b, "|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  size_t i;
  const json_t *v;
  json_array_foreach(vs, i, v) {
    const json_t *diff = json_object_get(v, "diff");
    pd_buf_appends(&b, "| ");
    cell(&b, json_string_value(json_object_get(v, "name")));
    pd_buf_appends(&b, " |");
    num_cell(&b, v, "accuracy", "%.1f%%", 100);
    ci_cell(&b, json_object_get(v, "ci95"), "[%.1f%%, %.1f%%]");
    num_cell(&b, diff, "mean", "%+.1f pts", 100);
    ci_cell(&b, json_object_get(diff, "ci95"), "[%+.1f, %+.1f] pts");
    num_cell(&b, diff, "p_value", "%.3g", 1);
    num_cell(&b, v, "prompt_tokens", "%.1f", 1);
    num_cell(&b, v, "completion_tokens", "%.1f", 1);
    num_cell(&b, v, "reasoning_tokens", "%.1f", 1);
    num_cell(&b, v, "upstream_calls", "%.2f", 1);
    num_cell(&b, json_object_get(v, "latency_ms"), "p50", "%.0f", 1);
    num_cell(&b, json_object_get(v, "latency_ms"), "p95", "%.0f", 1);
    num_cell(&b, v, "errors", "%.0f", 1);
    num_cell(&b, v, "cost_per_sample", "$%.4g", 1);
    num_cell(&b, v, "cost_per_correct", "$%.4g", 1);
    pd_buf_appends(&b, "\n");
  }
  return pd_buf_steal(&b, NULL);
}
