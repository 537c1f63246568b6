/* Unit tests for eval/summary.c: summary.json's shape and numbers, and summary.md. The
 * expected numbers were computed independently by tests/unit/eval/stats_ref.py (Python's
 * standard library; `stats_ref.py fixtures`), or by hand where the comment says so. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "eval/eval.h"

#define assert_close(a, b) assert_true(fabs((a) - (b)) < 1e-12)

static double num(const json_t *o, const char *path) {
  /* "a.b.0": a dotted path of keys and array indexes. */
  char buf[128];
  snprintf(buf, sizeof buf, "%s", path);
  const json_t *x = o;
  for (char *save, *k = strtok_r(buf, ".", &save); k; k = strtok_r(NULL, ".", &save))
    x = json_is_array(x) ? json_array_get(x, (size_t)atoi(k)) : json_object_get(x, k);
  if (!json_is_number(x))
    fail_msg("%s is not a number", path);
  return json_number_value(x);
}

/* 10 items, one sample each. base right on items 0 and 1; forced right on 0, 2, 3, 4, 5;
 * forced's item 9 is an error. */
static void test_binary(void **state) {
  (void)state;
  pd_eval_item_t items[10] = {0};
  pd_eval_sample_t s[20] = {0};
  const char *variants[] = {"base", "forced|6"};
  int base[10] = {1, 1, 0, 0, 0, 0, 0, 0, 0, 0}, forced[10] = {1, 0, 1, 1, 1, 1, 0, 0, 0, 0};
  for (int i = 0; i < 10; i++) {
    s[i] = (pd_eval_sample_t){.item = (size_t)i,
                              .variant = 0,
                              .score = base[i],
                              .prompt_tokens = 100,
                              .completion_tokens = 50 + i,
                              .upstream_calls = 1,
                              .latency_ms = 100 + 10 * i};
    s[10 + i] = (pd_eval_sample_t){.item = (size_t)i,
                                   .variant = 1,
                                   .score = forced[i],
                                   .prompt_tokens = 100 + i,
                                   .completion_tokens = 200 + 10 * i,
                                   .reasoning_tokens = 150 + 10 * i,
                                   .upstream_calls = 7,
                                   .latency_ms = 1000 + 100 * i};
  }
  s[19].error = "upstream 502";
  s[19].latency_ms = 99999; /* an error's latency is left out of the percentiles */
  pd_eval_run_t run = {.dataset = "aime.jsonl",
                       .grader = "default",
                       .seed = 42,
                       .per_item = 1,
                       .items = items,
                       .nitems = 10,
                       .variants = variants,
                       .nvariants = 2,
                       .samples = s,
                       .nsamples = 20,
                       .have_price = 1,
                       .price_in = 2.5,
                       .price_out = 10};
  json_t *sum = pd_eval_summary(&run);
  assert_non_null(sum);
  assert_string_equal(json_string_value(json_object_get(sum, "dataset")), "aime.jsonl");
  assert_int_equal(json_integer_value(json_object_get(sum, "items")), 10);
  assert_int_equal(json_integer_value(json_object_get(sum, "samples")), 1);
  assert_string_equal(json_string_value(json_object_get(sum, "grader")), "default");
  assert_int_equal(json_integer_value(json_object_get(sum, "seed")), 42);
  json_t *v0 = json_array_get(json_object_get(sum, "variants"), 0);
  json_t *v1 = json_array_get(json_object_get(sum, "variants"), 1);
  assert_int_equal(json_object_size(v0), 12);
  assert_string_equal(json_string_value(json_object_get(v0, "name")), "base");
  assert_close(num(v0, "accuracy"), 0.2);
  assert_close(num(v0, "ci95.0"), 0.05668215145437519); /* Wilson 2 of 10 */
  assert_close(num(v0, "ci95.1"), 0.5098375284633583);
  assert_true(json_is_null(json_object_get(v0, "diff")));
  assert_close(num(v0, "prompt_tokens"), 100);
  assert_close(num(v0, "completion_tokens"), 54.5);
  assert_close(num(v0, "reasoning_tokens"), 0);
  assert_close(num(v0, "upstream_calls"), 1);
  assert_close(num(v0, "latency_ms.p50"), 145);
  assert_close(num(v0, "latency_ms.p95"), 185.5);
  assert_close(num(v0, "errors"), 0);
  assert_close(num(v0, "cost_per_sample"), 0.000795);
  assert_close(num(v0, "cost_per_correct"), 0.003975);

  assert_close(num(v1, "accuracy"), 0.5);
  assert_close(num(v1, "ci95.0"), 0.236593090512564); /* Wilson 5 of 10 */
  assert_close(num(v1, "ci95.1"), 0.7634069094874361);
  assert_string_equal(json_string_value(json_object_get(json_object_get(v1, "diff"), "vs")),
                      "base");
  assert_close(num(v1, "diff.mean"), 0.3);
  assert_close(num(v1, "diff.ci95.0"), -0.1); /* bootstrap of the differences, seed 42 */
  assert_close(num(v1, "diff.ci95.1"), 0.7);
  /* By hand: b = 1 (item 1), c = 4 (items 2-5): 2 (1 + 5) / 2^5. */
  assert_close(num(v1, "diff.p_value"), 0.375);
  assert_close(num(v1, "prompt_tokens"), 104.5);
  assert_close(num(v1, "completion_tokens"), 245);
  assert_close(num(v1, "reasoning_tokens"), 195);
  assert_close(num(v1, "upstream_calls"), 7);
  assert_close(num(v1, "latency_ms.p50"), 1400);
  assert_close(num(v1, "latency_ms.p95"), 1760);
  assert_close(num(v1, "errors"), 1);
  assert_close(num(v1, "cost_per_sample"), 0.00271125);
  assert_close(num(v1, "cost_per_correct"), 0.0054225);

  char *md = pd_eval_summary_md(sum);
  assert_non_null(md);
  assert_non_null(strstr(md, "| variant | accuracy | 95% CI |"));
  assert_non_null(strstr(md, "| base | 20.0% | [5.7%, 51.0%] | – | – | – |"));
  assert_non_null(strstr(md,
                         "| forced\\|6 | 50.0% | [23.7%, 76.3%] | +30.0 pts | [-10.0, +70.0] pts | "
                         "0.375 |"));
  assert_non_null(strstr(
      md, "**aime.jsonl**: 10 items, 1 sample per item and variant, grader `default`, seed 42"));
  /* Header, separator, two rows. */
  int rows = 0;
  for (const char *p = md; (p = strstr(p, "\n|")); p++)
    rows++;
  assert_int_equal(rows, 4);
  free(md);
  json_decref(sum);
}

/* Two samples per item: the bootstrap, and no McNemar; no price: null costs. */
static void test_bootstrap_no_price(void **state) {
  (void)state;
  pd_eval_item_t items[4] = {0};
  double k2[4][2] = {{1, 0}, {1, 1}, {0, 0}, {0.5, 1}};
  pd_eval_sample_t s[16] = {0};
  size_t n = 0;
  for (int v = 0; v < 2; v++)
    for (int i = 0; i < 4; i++)
      for (int j = 0; j < 2; j++)
        s[n++] = (pd_eval_sample_t){.item = (size_t)i,
                                    .variant = (size_t)v,
                                    .sample = j,
                                    .score = v ? 1 : k2[i][j],
                                    .latency_ms = 10};
  const char *variants[] = {"a", "b"};
  pd_eval_run_t run = {.dataset = "d",
                       .grader = "g",
                       .seed = 5,
                       .per_item = 2,
                       .items = items,
                       .nitems = 4,
                       .variants = variants,
                       .nvariants = 2,
                       .samples = s,
                       .nsamples = n};
  json_t *sum = pd_eval_summary(&run);
  json_t *v0 = json_array_get(json_object_get(sum, "variants"), 0);
  json_t *v1 = json_array_get(json_object_get(sum, "variants"), 1);
  assert_close(num(v0, "accuracy"), 0.5625);
  assert_close(num(v0, "ci95.0"), 0.1875); /* bootstrap of [0.5, 1, 0, 0.75], seed 5 */
  assert_close(num(v0, "ci95.1"), 0.875);
  assert_close(num(v1, "accuracy"), 1);
  assert_close(num(v1, "diff.mean"), 0.4375);
  assert_true(json_is_null(json_object_get(json_object_get(v1, "diff"), "p_value")));
  assert_true(json_is_null(json_object_get(v0, "cost_per_sample")));
  assert_true(json_is_null(json_object_get(v0, "cost_per_correct")));
  json_decref(sum);
}

/* A variant with no samples, and a priced variant that scored nothing. */
static void test_empty(void **state) {
  (void)state;
  pd_eval_item_t items[2] = {0};
  pd_eval_sample_t s[2] = {{.item = 0, .variant = 0, .score = 0, .prompt_tokens = 10},
                           {.item = 1, .variant = 0, .score = 0, .prompt_tokens = 10}};
  const char *variants[] = {"a", "b"};
  pd_eval_run_t run = {.dataset = "d",
                       .grader = "g",
                       .per_item = 1,
                       .items = items,
                       .nitems = 2,
                       .variants = variants,
                       .nvariants = 2,
                       .samples = s,
                       .nsamples = 2,
                       .have_price = 1,
                       .price_in = 1,
                       .price_out = 1};
  json_t *sum = pd_eval_summary(&run);
  json_t *v0 = json_array_get(json_object_get(sum, "variants"), 0);
  json_t *v1 = json_array_get(json_object_get(sum, "variants"), 1);
  assert_close(num(v0, "ci95.0"), 0);
  assert_close(num(v0, "cost_per_sample"), 1e-5);
  assert_true(json_is_null(json_object_get(v0, "cost_per_correct")));
  assert_true(json_is_null(json_object_get(v1, "accuracy")));
  assert_true(json_is_null(json_object_get(v1, "ci95")));
  assert_true(json_is_null(json_object_get(json_object_get(v1, "diff"), "mean")));
  assert_true(json_is_null(json_object_get(json_object_get(v1, "latency_ms"), "p50")));
  char *md = pd_eval_summary_md(sum);
  assert_non_null(strstr(md, "| b | – | – |"));
  free(md);
  json_decref(sum);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_binary),
      cmocka_unit_test(test_bootstrap_no_price),
      cmocka_unit_test(test_empty),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
