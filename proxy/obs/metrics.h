/* Metrics (SPEC section 8) and the A/B feedback store (SPEC section 7).
 *
 * Each worker thread owns one pd_metrics_t and one pd_feedback_store_t and is the only writer
 * of them; readers on other threads (the /metrics renderer, a feedback lookup) go through the
 * store's own mutex, which the owner takes uncontended in the hot path. Series are keyed by
 * their label strings (not by route index), so they survive config reloads. */
#ifndef PD_METRICS_H
#define PD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "core/engine.h"

typedef struct pd_metrics pd_metrics_t;

/* Creates an empty store; NULL on allocation failure. Free with pd_metrics_free. */
pd_metrics_t *pd_metrics_new(void);
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

/* Remembers which route/variant served each of the last `capacity` requests of one worker
 * (SPEC: 100,000): a ring with a hash index, the oldest entry evicted first. */
typedef struct pd_feedback_store pd_feedback_store_t;

#define PD_FEEDBACK_CAPACITY 100000

/* Creates a store for capacity entries (0 = PD_FEEDBACK_CAPACITY); NULL on failure. */
pd_feedback_store_t *pd_feedback_store_new(size_t capacity);
void pd_feedback_store_free(pd_feedback_store_t *s);

/* Records request_id -> (route, variant), evicting the oldest entry when full. The strings are
 * copied. Ignored when request_id is NULL or empty. */
void pd_feedback_remember(pd_feedback_store_t *s, const char *request_id, const char *route,
                          const char *variant);

/* Looks request_id up in n stores (any thread); when found (the most recent entry if several
 * workers saw the id) copies route and variant into the buffers (truncated to fit, always
 * NUL-terminated) and returns 0, else returns -1. */
int pd_feedback_lookup(pd_feedback_store_t *const *stores, size_t n, const char *request_id,
                       char *route, size_t rlen, char *variant, size_t vlen);

/* SipHash-2-4 of data under a 16-byte key (the reference algorithm's output). */
uint64_t pd_feedback_siphash(const unsigned char key[16], const void *data, size_t len);

/* The stores' hash of a request id: SipHash-2-4 under a random per-process key, drawn on first
 * use, so that clients choosing ids cannot aim them at one chain. */
uint64_t pd_feedback_hash(const char *request_id);

/* Replaces the per-process key (tests only: call before any store holds entries). */
void pd_feedback_set_key(const unsigned char key[16]);

/* Number of entries held (for tests and debugging). */
size_t pd_feedback_store_size(pd_feedback_store_t *s);

#endif
