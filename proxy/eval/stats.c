/* The statistics of `ponder eval`'s summary: see stats.h for each definition. Pure; every
 * number here is recomputable from the definitions alone (the unit tests carry values computed
 * independently with Python's standard library). */
#include "eval/stats.h"

#include <math.h>
#include <stdlib.h>

void pd_stats_rng_seed(pd_stats_rng_t *r, uint64_t seed) {
  r->state = seed;
}

uint64_t pd_stats_rng_next(pd_stats_rng_t *r) {
  uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

size_t pd_stats_rng_index(pd_stats_rng_t *r, size_t n) {
  /* Multiply-shift (no rejection): the bias is below n / 2^64, far under the bootstrap's own
   * noise, and the rule stays one line to reproduce. */
  return (size_t)(((unsigned __int128)pd_stats_rng_next(r) * (unsigned __int128)n) >> 64);
}

void pd_stats_wilson(double k, double n, double z, double *lo, double *hi) {
  double p = k / n, z2 = z * z;
  double denom = 1 + z2 / n;
  double center = (p + z2 / (2 * n)) / denom;
  double half = z * sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom;
  *lo = k <= 0 ? 0 : center - half;
  *hi = k >= n ? 1 : center + half;
  if (*lo < 0)
    *lo = 0;
  if (*hi > 1)
    *hi = 1;
}

double pd_stats_quantile(const double *x, size_t n, double q) {
  double h = (double)(n - 1) * q;
  size_t i = (size_t)floor(h);
  if (i + 1 >= n)
    return x[n - 1];
  return x[i] + (h - (double)i) * (x[i + 1] - x[i]);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

void pd_stats_sort(double *x, size_t n) {
  if (n > 1)
    qsort(x, n, sizeof *x, cmp_double);
}

int pd_stats_bootstrap(const double *x, size_t n, uint64_t seed, int resamples, double *lo,
                       double *hi) {
  double *means = malloc((size_t)resamples * sizeof *means);
  if (!means)
    return -1;
  pd_stats_rng_t r;
  pd_stats_rng_seed(&r, seed);
  for (int b = 0; b < resamples; b++) {
    double sum = 0;
    for (size_t i = 0; i < n; i++)
      sum += x[pd_stats_rng_index(&r, n)];
    means[b] = sum / (double)n;
  }
  pd_stats_sort(means, (size_t)resamples);
  *lo = pd_stats_quantile(means, (size_t)resamples, 0.025);
  *hi = pd_stats_quantile(means, (size_t)resamples, 0.975);
  free(means);
  return 0;
}

double pd_stats_mcnemar(long b, long c) {
  long m = b + c, k = b < c ? b : c;
  if (m <= 0)
    return 1;
  double sum = 0;
  if (m <= 1000) {
    /* Term by term from 2^-m (a normal double for m <= 1022): exact for small m. */
    double t = ldexp(1.0, (int)-m);
    for (long i = 0; i <= k; i++) {
      sum += t;
      t = t * (double)(m - i) / (double)(i + 1);
    }
  } else {
    /* In log space: 2^-m underflows past m = 1074. */
    double lm = lgamma((double)m + 1), l2 = (double)m * log(2.0);
    for (long i = 0; i <= k; i++)
      sum += exp(lm - lgamma((double)i + 1) - lgamma((double)(m - i) + 1) - l2);
  }
  double p = 2 * sum;
  return p > 1 ? 1 : p;
}
