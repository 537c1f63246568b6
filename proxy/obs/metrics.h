/* Metrics (SPEC section 8): per-worker stores of counters and histograms, and the Prometheus
 * text renderer. The A/B feedback store is obs/feedback.h.
 *
 * Each worker thread owns one pd_metrics_t and is the only writer of it; readers on other
 * threads (the /metrics renderer) go through the store's own mutex, which the owner takes
 * uncontended in the hot path. Series are keyed by
 * their label strings (not by route index), so they survive config reloads. */
#ifndef PD_METRICS_H
#define PD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "core/engine.h"

typedef struct pd_metrics pd_metrics_t;

/* Creates an empty store; NULL on allocation failure. Free with pd_metrics_free. */
pd_metrics_t *pd_metrics_new(void);
/* Frees a store and its series; NULL is a no-op. */
void pd_metrics_free(pd_metrics_t *m);

/* Counts one finished client request: ponder_requests_total{route,variant,code},
 * ponder_request_duration_seconds, ponder_tokens_total (when usage is non-NULL) and
 * ponder_think_rounds_total. route/variant NULL are recorded as "". */
void pd_metrics_request(pd_metrics_t *m, const char *route, const char *variant, int status,
                        double seconds, const pd_usage_t *usage, int think_rounds);

/* Counts one upstream call; code is the HTTP status ("200", "502") or "timeout" / "error". */
void pd_metrics_upstream(pd_metrics_t *m, const char *upstream, const char *code, double seconds);

/* Adds delta to ponder_inflight_requests (the gauge is the sum over all stores). */
void pd_metrics_inflight(pd_metrics_t *m, int delta);

/* Counts one client that went away before its response was complete. */
void pd_metrics_client_disconnect(pd_metrics_t *m);

/* Counts one feedback score for the route/variant that served the request. */
void pd_metrics_feedback(pd_metrics_t *m, const char *route, const char *variant, double score);

/* Renders the Prometheus text format (with # HELP and # TYPE) summed over n stores, plus the
 * process-wide ponder_log_dropped_total (log.h). Any
 * worker thread may call it. Returns a malloc'd NUL-terminated string (caller frees) and its
 * length in *len (len may be NULL), or NULL on allocation failure. */
char *pd_metrics_render(pd_metrics_t *const *stores, size_t n, size_t *len);

#endif
