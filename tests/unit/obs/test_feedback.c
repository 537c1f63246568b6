/* Unit tests for obs/feedback.c: the feedback store (records, lookups across stores,
 * eviction, threads) and its keyed hash (SipHash-2-4 reference vectors). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include <cmocka.h>

#include "obs/feedback.h"

/* ---- feedback store ---- */

static void test_feedback_basic(void **state) {
  (void)state;
  pd_feedback_store_t *a = pd_feedback_store_new(16), *b = pd_feedback_store_new(16);
  pd_feedback_store_t *st[2] = {a, b};
  char r[32], v[32];
  pd_feedback_remember(a, "req-1", "math", "deep");
  pd_feedback_remember(b, "req-2", "code", "control");
  assert_int_equal(pd_feedback_lookup(st, 2, "req-1", r, sizeof r, v, sizeof v), 0);
  assert_string_equal(r, "math");
  assert_string_equal(v, "deep");
  assert_int_equal(pd_feedback_lookup(st, 2, "req-2", r, sizeof r, v, sizeof v), 0);
  assert_string_equal(r, "code");
  assert_string_equal(v, "control");
  assert_int_equal(pd_feedback_lookup(st, 2, "req-3", r, sizeof r, v, sizeof v), -1);
  assert_int_equal(pd_feedback_lookup(st, 2, "", r, sizeof r, v, sizeof v), -1);
  assert_int_equal(pd_feedback_lookup(st, 1, "req-2", r, sizeof r, v, sizeof v), -1);
  /* The newest record of an id wins, within a store and across stores. */
  pd_feedback_remember(a, "dup", "r1", "v1");
  pd_feedback_remember(a, "dup", "r2", "v2");
  assert_int_equal(pd_feedback_lookup(st, 2, "dup", r, sizeof r, v, sizeof v), 0);
  assert_string_equal(r, "r2");
  pd_feedback_remember(b, "dup", "r3", "v3");
  assert_int_equal(pd_feedback_lookup(st, 2, "dup", r, sizeof r, v, sizeof v), 0);
  assert_string_equal(r, "r3");
  assert_string_equal(v, "v3");
  /* Truncation to the buffers, always terminated. */
  char r4[4], v2[2];
  assert_int_equal(pd_feedback_lookup(st, 2, "req-1", r4, sizeof r4, v2, sizeof v2), 0);
  assert_string_equal(r4, "mat");
  assert_string_equal(v2, "d");
  /* NULL pieces. */
  pd_feedback_remember(a, NULL, "x", "y");
  pd_feedback_remember(a, "nul", NULL, NULL);
  assert_int_equal(pd_feedback_lookup(st, 2, "nul", r, sizeof r, v, sizeof v), 0);
  assert_string_equal(r, "");
  pd_feedback_store_free(a);
  pd_feedback_store_free(b);
  pd_feedback_store_free(NULL);
}

static void test_feedback_eviction(void **state) {
  (void)state;
  enum { CAP = 8 };
  pd_feedback_store_t *s = pd_feedback_store_new(CAP);
  char id[32], r[32], v[32];
  for (int i = 0; i < 20; i++) {
    snprintf(id, sizeof id, "id-%d", i);
    snprintf(r, sizeof r, "route-%d", i);
    pd_feedback_remember(s, id, r, "v");
    assert_int_equal(pd_feedback_store_size(s), i + 1 < CAP ? i + 1 : CAP);
  }
  for (int i = 0; i < 20; i++) {
    snprintf(id, sizeof id, "id-%d", i);
    int rc = pd_feedback_lookup(&s, 1, id, r, sizeof r, v, sizeof v);
    if (i < 20 - CAP) {
      assert_int_equal(rc, -1); /* the oldest were evicted */
    } else {
      assert_int_equal(rc, 0);
      char want[32];
      snprintf(want, sizeof want, "route-%d", i);
      assert_string_equal(r, want);
    }
  }
  /* Memory stays bounded: 100x the capacity still holds CAP entries (ASan checks the frees). */
  for (int i = 0; i < 100 * CAP; i++) {
    snprintf(id, sizeof id, "x-%d", i % 13); /* duplicates too */
    pd_feedback_remember(s, id, "r", "v");
  }
  assert_int_equal(pd_feedback_store_size(s), CAP);
  assert_int_equal(pd_feedback_lookup(&s, 1, "id-19", r, sizeof r, v, sizeof v), -1);
  pd_feedback_store_free(s);

  /* The default capacity is SPEC's 100,000. */
  s = pd_feedback_store_new(0);
  for (int i = 0; i < 100001; i++) {
    snprintf(id, sizeof id, "%d", i);
    pd_feedback_remember(s, id, "r", "v");
  }
  assert_int_equal(pd_feedback_store_size(s), 100000);
  assert_int_equal(pd_feedback_lookup(&s, 1, "0", r, sizeof r, v, sizeof v), -1);
  assert_int_equal(pd_feedback_lookup(&s, 1, "1", r, sizeof r, v, sizeof v), 0);
  assert_int_equal(pd_feedback_lookup(&s, 1, "100000", r, sizeof r, v, sizeof v), 0);
  pd_feedback_store_free(s);
}

typedef struct fb_arg {
  pd_feedback_store_t **st;
  int self, n;
} fb_arg_t;

static void *fb_worker(void *p) {
  fb_arg_t *a = p;
  char id[32], r[32], v[32];
  for (int i = 0; i < a->n; i++) {
    snprintf(id, sizeof id, "w%d-%d", a->self, i);
    pd_feedback_remember(a->st[a->self], id, "route", "var");
    snprintf(id, sizeof id, "w%d-%d", (a->self + 1) % 4, i / 2);
    pd_feedback_lookup(a->st, 4, id, r, sizeof r, v, sizeof v);
  }
  return NULL;
}

static void test_feedback_concurrent(void **state) {
  (void)state;
  pd_feedback_store_t *st[4];
  pthread_t th[4];
  fb_arg_t args[4];
  for (int i = 0; i < 4; i++)
    st[i] = pd_feedback_store_new(1000);
  for (int i = 0; i < 4; i++) {
    args[i] = (fb_arg_t){st, i, 5000};
    assert_int_equal(pthread_create(&th[i], NULL, fb_worker, &args[i]), 0);
  }
  for (int i = 0; i < 4; i++)
    pthread_join(th[i], NULL);
  char r[32], v[32];
  assert_int_equal(pd_feedback_lookup(st, 4, "w3-4999", r, sizeof r, v, sizeof v), 0);
  assert_int_equal(pd_feedback_lookup(st, 4, "w3-3999", r, sizeof r, v, sizeof v), -1);
  for (int i = 0; i < 4; i++)
    pd_feedback_store_free(st[i]);
}

/* ---- keyed hash of the feedback store ---- */

static void test_siphash_vectors(void **state) {
  (void)state;
  unsigned char key[16], msg[64];
  for (int i = 0; i < 16; i++)
    key[i] = (unsigned char)i;
  for (int i = 0; i < 64; i++)
    msg[i] = (unsigned char)i;
  /* The reference vectors of the SipHash paper (appendix A) and its test suite: key 00..0f,
   * messages 00 01 .. (len-1). */
  assert_true(pd_feedback_siphash(key, msg, 0) == 0x726fdb47dd0e0e31ULL);
  assert_true(pd_feedback_siphash(key, msg, 1) == 0x74f839c593dc67fdULL);
  assert_true(pd_feedback_siphash(key, msg, 7) == 0xab0200f58b01d137ULL);
  assert_true(pd_feedback_siphash(key, msg, 8) == 0x93f5f5799a932462ULL);
  assert_true(pd_feedback_siphash(key, msg, 15) == 0xa129ca6149be45e5ULL);
  assert_true(pd_feedback_siphash(key, msg, 63) == 0x958a324ceb064572ULL);
}

static void test_feedback_hash_is_keyed(void **state) {
  (void)state;
  unsigned char k1[16] = {1}, k2[16] = {2};
  pd_feedback_set_key(k1);
  uint64_t h1 = pd_feedback_hash("client-chosen-id");
  assert_true(h1 == pd_feedback_siphash(k1, "client-chosen-id", 16));
  pd_feedback_set_key(k2);
  uint64_t h2 = pd_feedback_hash("client-chosen-id");
  assert_true(h1 != h2);
  assert_true(h2 == pd_feedback_siphash(k2, "client-chosen-id", 16));
  /* Lookups work under the key in force, across many ids (chains and evictions included). */
  pd_feedback_store_t *s = pd_feedback_store_new(64);
  pd_feedback_store_t *st[1] = {s};
  char id[32], r[32], v[32];
  for (int i = 0; i < 200; i++) {
    snprintf(id, sizeof id, "id-%d", i);
    pd_feedback_remember(s, id, "route", i % 2 ? "odd" : "even");
  }
  for (int i = 0; i < 200; i++) {
    snprintf(id, sizeof id, "id-%d", i);
    int rc = pd_feedback_lookup(st, 1, id, r, sizeof r, v, sizeof v);
    if (i < 200 - 64) {
      assert_int_equal(rc, -1);
    } else {
      assert_int_equal(rc, 0);
      assert_string_equal(v, i % 2 ? "odd" : "even");
    }
  }
  pd_feedback_store_free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_feedback_basic),         cmocka_unit_test(test_feedback_eviction),
      cmocka_unit_test(test_feedback_concurrent),    cmocka_unit_test(test_siphash_vectors),
      cmocka_unit_test(test_feedback_hash_is_keyed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
