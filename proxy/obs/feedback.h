/* The A/B feedback store (SPEC section 7): which route and variant served each of a worker's
 * last requests, so a later feedback call can credit them. Each worker thread owns one
 * pd_feedback_store_t and is its only writer; lookups from other threads go through the
 * store's mutex. Owns the keyed hash of request ids (SipHash-2-4). */
#ifndef PD_FEEDBACK_H
#define PD_FEEDBACK_H

#include <stddef.h>
#include <stdint.h>

/* Remembers which route/variant served each of the last `capacity` requests of one worker
 * (SPEC: 100,000): a ring with a hash index, the oldest entry evicted first. */
typedef struct pd_feedback_store pd_feedback_store_t;

#define PD_FEEDBACK_CAPACITY 100000

/* Creates a store for capacity entries (0 = PD_FEEDBACK_CAPACITY); NULL on failure. */
pd_feedback_store_t *pd_feedback_store_new(size_t capacity);
/* Frees a store and every entry it holds; NULL is a no-op. */
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
