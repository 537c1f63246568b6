/* The statistics of `ponder eval`'s summary (SPEC section 11), pure and exactly specified so
 * that anyone can recompute them: Wilson's score interval, a seeded percentile bootstrap of a
 * mean, McNemar's exact test, and percentiles. The definitions are in stats.c's comments and
 * the README ("Statistics"). Owns nothing. */
#ifndef PD_STATS_H
#define PD_STATS_H

#include <stddef.h>
#include <stdint.h>

/* The normal quantile of a 95% two-sided interval. */
#define PD_STATS_Z95 1.959963984540054
/* Bootstrap resamples. */
#define PD_STATS_RESAMPLES 2000

/* splitmix64: the bootstrap's generator (state advanced by the golden gamma, then mixed). */
typedef struct pd_stats_rng {
  uint64_t state;
} pd_stats_rng_t;
void pd_stats_rng_seed(pd_stats_rng_t *r, uint64_t seed);
uint64_t pd_stats_rng_next(pd_stats_rng_t *r);
/* A uniform index in [0, n): the high 64 bits of next * n (n > 0). */
size_t pd_stats_rng_index(pd_stats_rng_t *r, size_t n);

/* Wilson's score interval for k successes of n (n > 0) at normal quantile z; k = 0 gives
 * lo = 0 and k = n gives hi = 1 exactly. */
void pd_stats_wilson(double k, double n, double z, double *lo, double *hi);

/* The q-quantile (0 <= q <= 1) of n sorted values (n > 0), by linear interpolation between
 * closest ranks: h = (n - 1) q, x[floor h] + (h - floor h) (x[floor h + 1] - x[floor h])
 * (Hyndman and Fan's type 7; Python's statistics.quantiles(method="inclusive")). */
double pd_stats_quantile(const double *sorted, size_t n, double q);

/* Sorts n doubles ascending in place. */
void pd_stats_sort(double *x, size_t n);

/* The 95% percentile bootstrap interval of the mean of x[0..n) (n > 0): a generator seeded
 * with seed; for each of `resamples` resamples, n indices drawn in turn with
 * pd_stats_rng_index and their values summed in draw order, divided by n; the resample means
 * sorted; lo and hi their 0.025 and 0.975 quantiles (pd_stats_quantile). Returns 0, or -1
 * when out of memory. */
int pd_stats_bootstrap(const double *x, size_t n, uint64_t seed, int resamples, double *lo,
                       double *hi);

/* McNemar's exact two-sided p-value for b and c discordant pairs: min(1, 2 P(X <= min(b, c)))
 * for X ~ Binomial(b + c, 1/2); 1 when b + c = 0. */
double pd_stats_mcnemar(long b, long c);

#endif
