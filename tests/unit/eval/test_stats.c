/* Unit tests for eval/stats.c. Every expected value was computed independently with Python's
 * standard library by tests/unit/eval/stats_ref.py (`stats_ref.py fixtures`: each definition
 * of stats.h written again from the definition, statistics.quantiles(method="inclusive") for
 * the percentiles, fractions for McNemar), or by hand where the comment says so. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>

#include <cmocka.h>

#include "eval/stats.h"

#define assert_close(a, b) assert_true(fabs((a) - (b)) < 1e-12)

static void test_splitmix64(void **state) {
  (void)state;
  /* splitmix64's published first outputs for seed 0. */
  pd_stats_rng_t r;
  pd_stats_rng_seed(&r, 0);
  assert_true(pd_stats_rng_next(&r) == 0xE220A8397B1DCDAFull);
  assert_true(pd_stats_rng_next(&r) == 0x6E789E6AA1B965F4ull);
  assert_true(pd_stats_rng_next(&r) == 0x06C45D188009454Full);
  /* index = high 64 bits of next * n: 0xE220A8397B1DCDAF * 10 >> 64 = 8 (by hand: 0xE2.. /
   * 2^64 = 0.8833...). */
  pd_stats_rng_seed(&r, 0);
  assert_int_equal(pd_stats_rng_index(&r, 10), 8);
}

static void test_wilson(void **state) {
  (void)state;
  double lo, hi;
  /* k = 0: lo is 0 exactly, hi = z^2 / (n + z^2). */
  pd_stats_wilson(0, 10, PD_STATS_Z95, &lo, &hi);
  assert_true(lo == 0);
  assert_close(hi, 0.2775327998628892);
  /* k = n: hi is 1 exactly. */
  pd_stats_wilson(10, 10, PD_STATS_Z95, &lo, &hi);
  assert_close(lo, 0.7224672001371107);
  assert_true(hi == 1);
  pd_stats_wilson(6, 20, PD_STATS_Z95, &lo, &hi);
  assert_close(lo, 0.1454772448676043);
  assert_close(hi, 0.5189728183535235);
}

static void test_quantile(void **state) {
  (void)state;
  double x[] = {1, 2, 3, 4, 10};
  assert_close(pd_stats_quantile(x, 5, 0.5), 3);
  /* h = 4 * 0.95 = 3.8: 4 + 0.8 * (10 - 4) = 8.8 (by hand). */
  assert_close(pd_stats_quantile(x, 5, 0.95), 8.8);
  assert_close(pd_stats_quantile(x, 5, 0), 1);
  assert_close(pd_stats_quantile(x, 5, 1), 10);
  assert_close(pd_stats_quantile(x, 1, 0.95), 1);
}

static void test_bootstrap(void **state) {
  (void)state;
  double lo, hi;
  double a[] = {1, 0, 0.5, 1, 0.25, 0, 1, 1, 0.75, 0};
  assert_int_equal(pd_stats_bootstrap(a, 10, 42, PD_STATS_RESAMPLES, &lo, &hi), 0);
  assert_close(lo, 0.275);
  assert_close(hi, 0.825);
  double b[] = {0.1, 0.7, 0.3, 0.95, 0.2, 0.6, 0.45, 0.8, 0.05, 0.5, 0.33};
  assert_int_equal(pd_stats_bootstrap(b, 11, 7, PD_STATS_RESAMPLES, &lo, &hi), 0);
  assert_close(lo, 0.2890909090909091);
  assert_close(hi, 0.6145454545454545);
  /* One item: every resample is that item. */
  assert_int_equal(pd_stats_bootstrap(b, 1, 7, PD_STATS_RESAMPLES, &lo, &hi), 0);
  assert_close(lo, 0.1);
  assert_close(hi, 0.1);
}

static void test_mcnemar(void **state) {
  (void)state;
  /* By hand: b = 1, c = 5: 2 (C(6,0) + C(6,1)) / 2^6 = 14/64. */
  assert_close(pd_stats_mcnemar(1, 5), 0.21875);
  assert_close(pd_stats_mcnemar(5, 1), 0.21875);
  /* 2 / 2^5. */
  assert_close(pd_stats_mcnemar(0, 5), 0.0625);
  /* 2 (1 + 12 + 66) / 2^12. */
  assert_close(pd_stats_mcnemar(2, 10), 158.0 / 4096);
  /* Balanced: capped at 1; no discordant pair: 1. */
  assert_close(pd_stats_mcnemar(3, 3), 1);
  assert_close(pd_stats_mcnemar(0, 0), 1);
  /* Large counts go through log space: 2 P(X <= 500) for X ~ Bin(1100, 1/2), by Python's
   * fractions (exact). */
  assert_true(fabs(pd_stats_mcnemar(500, 600) - 0.0028195449914364275) < 1e-9);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_splitmix64), cmocka_unit_test(test_wilson),
      cmocka_unit_test(test_quantile),   cmocka_unit_test(test_bootstrap),
      cmocka_unit_test(test_mcnemar),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
