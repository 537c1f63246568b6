/* The A/B feedback store (SPEC section 7): which route and variant served each of a worker's
 * last requests, as a ring of entries with a chained hash index keyed by SipHash-2-4 of the
 * request id under a per-process random key. One store per worker thread, written by that
 * worker only; lookups from any thread take each store's mutex. See obs/feedback.h. */
#include "obs/feedback.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* ---- feedback store ---- */

#define FB_NONE UINT32_MAX

typedef struct fb_entry {
  char *data; /* "id\0route\0variant\0", NULL when the slot is empty */
  char *route, *variant;
  uint64_t hash;
  uint64_t stamp; /* monotonic ns: the newest entry wins across stores */
  uint32_t next;  /* next slot in the same hash chain */
} fb_entry_t;

struct pd_feedback_store {
  pthread_mutex_t mu;
  fb_entry_t *ring;
  size_t cap, head, count;
  uint32_t *buckets;
  size_t nbuckets; /* power of two >= cap */
};

/* ---- SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast short-input PRF", 2012) ---- */

static uint64_t rotl(uint64_t x, int b) {
  return (x << b) | (x >> (64 - b));
}

static uint64_t load_le64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

#define SIPROUND                                                                                   \
  do {                                                                                             \
    v0 += v1;                                                                                      \
    v1 = rotl(v1, 13);                                                                             \
    v1 ^= v0;                                                                                      \
    v0 = rotl(v0, 32);                                                                             \
    v2 += v3;                                                                                      \
    v3 = rotl(v3, 16);                                                                             \
    v3 ^= v2;                                                                                      \
    v0 += v3;                                                                                      \
    v3 = rotl(v3, 21);                                                                             \
    v3 ^= v0;                                                                                      \
    v2 += v1;                                                                                      \
    v1 = rotl(v1, 17);                                                                             \
    v1 ^= v2;                                                                                      \
    v2 = rotl(v2, 32);                                                                             \
  } while (0)

uint64_t pd_feedback_siphash(const unsigned char key[16], const void *data, size_t len) {
  const unsigned char *p = data;
  uint64_t k0 = load_le64(key), k1 = load_le64(key + 8);
  uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
  uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t m = load_le64(p + i);
    v3 ^= m;
    SIPROUND;
    SIPROUND;
    v0 ^= m;
  }
  /* The last block: the 0..7 remaining bytes, and the length's low byte in the top byte. */
  uint64_t b = (uint64_t)(len & 0xff) << 56;
  for (size_t k = 0; i + k < len; k++)
    b |= (uint64_t)p[i + k] << (8 * k);
  v3 ^= b;
  SIPROUND;
  SIPROUND;
  v0 ^= b;
  v2 ^= 0xff;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

/* The process's key for request ids: clients choose the ids, so an unkeyed hash would let one
 * client fill a single chain (every lookup under the store's mutex walking it). */
static unsigned char fb_key[16];
static pthread_once_t fb_key_once = PTHREAD_ONCE_INIT;

static void fb_key_init(void) {
  size_t got = 0;
  while (got < sizeof fb_key) {
    ssize_t n = getrandom(fb_key + got, sizeof fb_key - got, 0);
    if (n <= 0)
      break;
    got += (size_t)n;
  }
  if (got < sizeof fb_key) { /* no getrandom: the clock and addresses are better than nothing */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t a = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)getpid();
    uint64_t b = (uint64_t)(uintptr_t)&ts ^ (uint64_t)(uintptr_t)&fb_key;
    memcpy(fb_key, &a, 8);
    memcpy(fb_key + 8, &b, 8);
  }
}

void pd_feedback_set_key(const unsigned char key[16]) {
  pthread_once(&fb_key_once, fb_key_init);
  memcpy(fb_key, key, sizeof fb_key);
}

uint64_t pd_feedback_hash(const char *request_id) {
  pthread_once(&fb_key_once, fb_key_init);
  return pd_feedback_siphash(fb_key, request_id, strlen(request_id));
}

pd_feedback_store_t *pd_feedback_store_new(size_t capacity) {
  if (capacity == 0)
    capacity = PD_FEEDBACK_CAPACITY;
  if (capacity >= FB_NONE / 2)
    return NULL;
  pd_feedback_store_t *s = calloc(1, sizeof *s);
  if (!s)
    goto fail_alloc;
  s->cap = capacity;
  s->nbuckets = 1;
  while (s->nbuckets < capacity)
    s->nbuckets *= 2;
  s->ring = calloc(capacity, sizeof *s->ring);
  if (!s->ring)
    goto fail_ring;
  s->buckets = malloc(s->nbuckets * sizeof *s->buckets);
  if (!s->buckets)
    goto fail_buckets;
  for (size_t i = 0; i < s->nbuckets; i++)
    s->buckets[i] = FB_NONE;
  if (pthread_mutex_init(&s->mu, NULL) != 0)
    goto fail_mutex;
  return s;

fail_mutex:
  free(s->buckets);
fail_buckets:
  free(s->ring);
fail_ring:
  free(s);
fail_alloc:
  return NULL;
}

void pd_feedback_store_free(pd_feedback_store_t *s) {
  if (!s)
    return;
  for (size_t i = 0; i < s->cap; i++)
    free(s->ring[i].data);
  free(s->ring);
  free(s->buckets);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

static void fb_unlink(pd_feedback_store_t *s, uint32_t slot) {
  uint32_t *pp = &s->buckets[s->ring[slot].hash & (s->nbuckets - 1)];
  while (*pp != FB_NONE) {
    if (*pp == slot) {
      *pp = s->ring[slot].next;
      return;
    }
    pp = &s->ring[*pp].next;
  }
}

void pd_feedback_remember(pd_feedback_store_t *s, const char *request_id, const char *route,
                          const char *variant) {
  if (!s || !request_id || !*request_id)
    return;
  if (!route)
    route = "";
  if (!variant)
    variant = "";
  size_t li = strlen(request_id), lr = strlen(route), lv = strlen(variant);
  char *data = malloc(li + lr + lv + 3); /* built outside the lock */
  if (!data)
    return;
  memcpy(data, request_id, li + 1);
  memcpy(data + li + 1, route, lr + 1);
  memcpy(data + li + lr + 2, variant, lv + 1);
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t h = pd_feedback_hash(request_id);

  pthread_mutex_lock(&s->mu);
  uint32_t slot = (uint32_t)s->head;
  fb_entry_t *e = &s->ring[slot];
  char *old = e->data;
  if (old)
    fb_unlink(s, slot);
  else
    s->count++;
  e->data = data;
  e->route = data + li + 1;
  e->variant = data + li + lr + 2;
  e->hash = h;
  e->stamp = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
  uint32_t *bucket = &s->buckets[h & (s->nbuckets - 1)];
  e->next = *bucket;
  *bucket = slot; /* newest first in its chain */
  s->head = (s->head + 1) % s->cap;
  pthread_mutex_unlock(&s->mu);
  free(old);
}

static void copy_out(char *dst, size_t n, const char *src) {
  if (dst && n)
    snprintf(dst, n, "%s", src);
}

int pd_feedback_lookup(pd_feedback_store_t *const *stores, size_t n, const char *request_id,
                       char *route, size_t rlen, char *variant, size_t vlen) {
  if (!request_id || !*request_id)
    return -1;
  uint64_t h = pd_feedback_hash(request_id), best = 0;
  int found = 0;
  for (size_t i = 0; i < n; i++) {
    pd_feedback_store_t *s = stores[i];
    if (!s)
      continue;
    pthread_mutex_lock(&s->mu);
    for (uint32_t k = s->buckets[h & (s->nbuckets - 1)]; k != FB_NONE; k = s->ring[k].next) {
      const fb_entry_t *e = &s->ring[k];
      if (e->hash == h && strcmp(e->data, request_id) == 0) {
        if (!found || e->stamp >= best) {
          copy_out(route, rlen, e->route);
          copy_out(variant, vlen, e->variant);
          best = e->stamp;
          found = 1;
        }
        break; /* the first in the chain is this store's newest */
      }
    }
    pthread_mutex_unlock(&s->mu);
  }
  return found ? 0 : -1;
}

size_t pd_feedback_store_size(pd_feedback_store_t *s) {
  if (!s)
    return 0;
  pthread_mutex_lock(&s->mu);
  size_t n = s->count;
  pthread_mutex_unlock(&s->mu);
  return n;
}
