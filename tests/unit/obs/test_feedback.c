/* Unit tests for obs/feedback.c: the feedback store (records, lookups across stores,
 * eviction, threads) and its keyed hash (SipHash-2-4 reference vectors); and for
 * obs/feedback_token.c: tokens issued and verified (known tokens computed independently, with
 * Python's hmac module; forged, altered, truncated, expired, future, other-secret ones). */
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
#include "obs/feedback_token.h"

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

/* ---- feedback tokens ---- */

#define T0 1700000000
#define PACKED_ID "req_00112233445566778899aabbccddeeff"
/* Python: payload = kind + issued (5 bytes) + len+route + len+variant + id (16 bytes packed, or
 * len+text); token = urlsafe_b64encode(payload + hmac.new(secret, payload, sha256).digest())
 * without "=". */
#define TOKEN_PACKED                                                                               \
  "AgBlU_EABG1hdGgEZGVlcAARIjNEVWZ3iJmqu8zd7v-YuxD1eT0SfL7GYi7VXooLuWh4pAG7D5iPq90Oq6Izkw"
#define TOKEN_TEXT                                                                                 \
  "AQBlU_EAB2RlZmF1bHQHZGVmYXVsdAtjbGllbnQtaWQtNw1qNY_1tveItB5q6w6nVmq1K81F-HtBx014sprOrt1o"

static int verify(const char *secret, const char *tok, int64_t now, long max_age,
                  pd_feedback_claim_t *c) {
  return pd_feedback_token_verify(secret, tok, strlen(tok), now, max_age, c);
}

static void test_token_known(void **state) {
  (void)state;
  char tok[PD_FEEDBACK_TOKEN_MAX];
  int n = pd_feedback_token_issue("s3cret", "math", "deep", PACKED_ID, T0, tok, sizeof tok);
  assert_int_equal(n, (int)strlen(TOKEN_PACKED));
  assert_string_equal(tok, TOKEN_PACKED);
  n = pd_feedback_token_issue("s3cret", "default", "default", "client-id-7", T0, tok, sizeof tok);
  assert_int_equal(n, (int)strlen(TOKEN_TEXT));
  assert_string_equal(tok, TOKEN_TEXT);
  /* Every header-safe: base64url only, no padding. */
  assert_int_equal(strspn(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
                   strlen(tok));

  pd_feedback_claim_t c;
  assert_int_equal(verify("s3cret", TOKEN_PACKED, T0 + 10, 604800, &c), 0);
  assert_string_equal(c.route, "math");
  assert_string_equal(c.variant, "deep");
  assert_string_equal(c.request_id, PACKED_ID);
  assert_true(c.issued == T0);
  assert_int_equal(verify("s3cret", TOKEN_TEXT, T0, 604800, &c), 0);
  assert_string_equal(c.route, "default");
  assert_string_equal(c.request_id, "client-id-7");
}

static void test_token_round_trip(void **state) {
  (void)state;
  char tok[PD_FEEDBACK_TOKEN_MAX], name[PD_FEEDBACK_TOKEN_NAME_MAX + 2],
      id[PD_FEEDBACK_TOKEN_ID_MAX + 2];
  pd_feedback_claim_t c;
  /* Ids that look packed but are not (upper case hex, one digit short) stay text. */
  const char *ids[] = {PACKED_ID, "req_00112233445566778899AABBCCDDEEFF",
                       "req_00112233445566778899aabbccddeef", "x",
                       "req_zz112233445566778899aabbccddeeff"};
  for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
    assert_true(pd_feedback_token_issue("k", "r", "v", ids[i], T0, tok, sizeof tok) > 0);
    assert_int_equal(verify("k", tok, T0, 1, &c), 0);
    assert_string_equal(c.request_id, ids[i]);
  }
  /* The longest names and id fit the documented buffer; one more byte is refused. */
  memset(name, 'n', PD_FEEDBACK_TOKEN_NAME_MAX);
  name[PD_FEEDBACK_TOKEN_NAME_MAX] = '\0';
  memset(id, 'i', PD_FEEDBACK_TOKEN_ID_MAX);
  id[PD_FEEDBACK_TOKEN_ID_MAX] = '\0';
  int n = pd_feedback_token_issue("k", name, name, id, T0, tok, sizeof tok);
  assert_true(n > 0 && n < PD_FEEDBACK_TOKEN_MAX);
  assert_int_equal(verify("k", tok, T0, 1, &c), 0);
  assert_string_equal(c.variant, name);
  assert_string_equal(c.request_id, id);
  /* Too small a buffer: -1 and an empty string. */
  assert_int_equal(pd_feedback_token_issue("k", name, name, id, T0, tok, 100), -1);
  assert_string_equal(tok, "");
  strcat(name, "n");
  strcat(id, "i");
  assert_int_equal(pd_feedback_token_issue("k", name, "v", "id", T0, tok, sizeof tok), -1);
  assert_int_equal(pd_feedback_token_issue("k", "r", name, "id", T0, tok, sizeof tok), -1);
  assert_int_equal(pd_feedback_token_issue("k", "r", "v", id, T0, tok, sizeof tok), -1);
  assert_int_equal(pd_feedback_token_issue("k", "", "v", "id", T0, tok, sizeof tok), -1);
  assert_int_equal(pd_feedback_token_issue("k", "r", "v", "", T0, tok, sizeof tok), -1);
  assert_int_equal(pd_feedback_token_issue("k", NULL, "v", "id", T0, tok, sizeof tok), -1);
  assert_int_equal(pd_feedback_token_issue("k", "r", "v", "id", -1, tok, sizeof tok), -1);
}

static void test_token_forged_altered_truncated(void **state) {
  (void)state;
  pd_feedback_claim_t c;
  const char *good = TOKEN_PACKED;
  size_t len = strlen(good);
  char tok[PD_FEEDBACK_TOKEN_MAX];
  /* Every character replaced by every other one of the alphabet (and a few outside it). */
  const char *alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/. ";
  for (size_t i = 0; i < len; i++) {
    for (const char *a = alpha; *a; a++) {
      if (*a == good[i])
        continue;
      memcpy(tok, good, len + 1);
      tok[i] = *a;
      assert_int_equal(verify("s3cret", tok, T0, 604800, &c), PD_FEEDBACK_TOKEN_EBAD);
    }
  }
  /* Every truncation, and extensions. */
  for (size_t k = 0; k < len; k++)
    assert_int_equal(pd_feedback_token_verify("s3cret", good, k, T0, 604800, &c),
                     PD_FEEDBACK_TOKEN_EBAD);
  snprintf(tok, sizeof tok, "%sA", good);
  assert_int_equal(verify("s3cret", tok, T0, 604800, &c), PD_FEEDBACK_TOKEN_EBAD);
  snprintf(tok, sizeof tok, "%sAA", good);
  assert_int_equal(verify("s3cret", tok, T0, 604800, &c), PD_FEEDBACK_TOKEN_EBAD);
  snprintf(tok, sizeof tok, "%s==", good);
  assert_int_equal(verify("s3cret", tok, T0, 604800, &c), PD_FEEDBACK_TOKEN_EBAD);
  /* A NUL inside the given length. */
  memcpy(tok, good, len + 1);
  tok[10] = '\0';
  assert_int_equal(pd_feedback_token_verify("s3cret", tok, len, T0, 604800, &c),
                   PD_FEEDBACK_TOKEN_EBAD);
  /* Forged: the same payload with a made-up MAC, garbage, too long. */
  assert_int_equal(verify("s3cret", "AAAA", T0, 604800, &c), PD_FEEDBACK_TOKEN_EBAD);
  assert_int_equal(verify("s3cret", "", T0, 604800, &c), PD_FEEDBACK_TOKEN_EBAD);
  memset(tok, 'A', sizeof tok - 1);
  tok[sizeof tok - 1] = '\0';
  assert_int_equal(verify("s3cret", tok, T0, 604800, &c), PD_FEEDBACK_TOKEN_EBAD);
  assert_int_equal(pd_feedback_token_verify("s3cret", NULL, 0, T0, 604800, &c),
                   PD_FEEDBACK_TOKEN_EBAD);
}

static void test_token_age(void **state) {
  (void)state;
  pd_feedback_claim_t c;
  assert_int_equal(verify("s3cret", TOKEN_PACKED, T0 + 604800, 604800, &c), 0);
  assert_int_equal(verify("s3cret", TOKEN_PACKED, T0 + 604801, 604800, &c),
                   PD_FEEDBACK_TOKEN_EEXPIRED);
  assert_int_equal(verify("s3cret", TOKEN_PACKED, T0 + 11, 10, &c), PD_FEEDBACK_TOKEN_EEXPIRED);
  /* From the future: within the skew accepted, beyond it refused. */
  assert_int_equal(verify("s3cret", TOKEN_PACKED, T0 - PD_FEEDBACK_TOKEN_SKEW_S, 10, &c), 0);
  assert_int_equal(verify("s3cret", TOKEN_PACKED, T0 - PD_FEEDBACK_TOKEN_SKEW_S - 1, 10, &c),
                   PD_FEEDBACK_TOKEN_EFUTURE);
  assert_int_equal(verify("s3cret", TOKEN_PACKED, 0, 604800, &c), PD_FEEDBACK_TOKEN_EFUTURE);
}

static void test_token_other_secret(void **state) {
  (void)state;
  pd_feedback_claim_t c;
  char tok[PD_FEEDBACK_TOKEN_MAX], tok2[PD_FEEDBACK_TOKEN_MAX];
  assert_int_equal(verify("s3creT", TOKEN_PACKED, T0, 604800, &c), PD_FEEDBACK_TOKEN_EBAD);
  assert_int_equal(verify("s3cret ", TOKEN_PACKED, T0, 604800, &c), PD_FEEDBACK_TOKEN_EBAD);
  assert_int_equal(verify(NULL, TOKEN_PACKED, T0, 604800, &c), PD_FEEDBACK_TOKEN_EBAD);
  /* Re-keying back and forth in one thread (a reload) keeps each secret's tokens apart. */
  assert_true(pd_feedback_token_issue("one", "r", "v", "id", T0, tok, sizeof tok) > 0);
  assert_true(pd_feedback_token_issue("two", "r", "v", "id", T0, tok2, sizeof tok2) > 0);
  assert_string_not_equal(tok, tok2);
  assert_int_equal(verify("one", tok, T0, 10, &c), 0);
  assert_int_equal(verify("two", tok, T0, 10, &c), PD_FEEDBACK_TOKEN_EBAD);
  assert_int_equal(verify("two", tok2, T0, 10, &c), 0);
  assert_int_equal(verify("one", tok2, T0, 10, &c), PD_FEEDBACK_TOKEN_EBAD);
  /* No secret: the process's random key, the same for NULL and "", not any configured one. */
  assert_true(pd_feedback_token_issue(NULL, "r", "v", "id", T0, tok, sizeof tok) > 0);
  assert_int_equal(verify("", tok, T0, 10, &c), 0);
  assert_int_equal(verify(NULL, tok, T0, 10, &c), 0);
  assert_int_equal(verify("one", tok, T0, 10, &c), PD_FEEDBACK_TOKEN_EBAD);
}

/* Another thread shares the process key and keys its own state. */
static void *other_thread(void *arg) {
  const char *tok = arg;
  pd_feedback_claim_t c;
  char mine[PD_FEEDBACK_TOKEN_MAX];
  intptr_t ok =
      verify(NULL, tok, T0, 10, &c) == 0 && verify("s3cret", TOKEN_PACKED, T0, 604800, &c) == 0 &&
      pd_feedback_token_issue("s3cret", "math", "deep", PACKED_ID, T0, mine, sizeof mine) > 0 &&
      strcmp(mine, TOKEN_PACKED) == 0;
  return (void *)ok;
}

static void test_token_threads(void **state) {
  (void)state;
  char tok[PD_FEEDBACK_TOKEN_MAX];
  assert_true(pd_feedback_token_issue(NULL, "r", "v", PACKED_ID, T0, tok, sizeof tok) > 0);
  pthread_t t[4];
  for (int i = 0; i < 4; i++)
    assert_int_equal(pthread_create(&t[i], NULL, other_thread, tok), 0);
  for (int i = 0; i < 4; i++) {
    void *ok;
    assert_int_equal(pthread_join(t[i], &ok), 0);
    assert_true(ok == (void *)1);
  }
}

static void test_feedback_body(void **state) {
  (void)state;
  pd_feedback_body_t b;
  struct {
    const char *body, *bad;
  } bad[] = {
      {"", NULL},
      {"[1]", NULL},
      {"{\"token\": 1, \"score\": 1}", "token"},
      {"{\"token\": null, \"score\": 1}", "token"},
      {"{\"score\": 1}", "request_id"},
      {"{\"request_id\": 7, \"score\": 1}", "request_id"},
      {"{\"token\": \"t\"}", "score"},
      {"{\"token\": \"t\", \"score\": null}", "score"},
      {"{\"token\": \"t\", \"score\": \"1\"}", "score"},
      {"{\"token\": \"t\", \"score\": 1e999}", NULL},
      {"{\"token\": \"t\", \"score\": -1e400}", NULL},
      {"{\"token\": \"t\", \"score\": NaN}", NULL},
      {"{\"request_id\": \"r\", \"score\": Infinity}", NULL},
      {"{\"request_id\": \"r\", \"score\": true}", "score"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(pd_feedback_token_body_read(bad[i].body, strlen(bad[i].body), &b), -1);
    if (bad[i].bad)
      assert_string_equal(b.bad, bad[i].bad);
    else
      assert_null(b.bad);
    pd_feedback_token_body_free(&b);
  }
  /* jansson refuses \u0000 in strings: no token with a NUL gets through. */
  const char *j = "{\"token\": \"a\\u0000b\", \"score\": 1}";
  assert_int_equal(pd_feedback_token_body_read(j, strlen(j), &b), -1);
  pd_feedback_token_body_free(&b);
  j = "{\"request_id\": \"r-1\", \"token\": \"abc\", \"score\": -2.5}";
  assert_int_equal(pd_feedback_token_body_read(j, strlen(j), &b), 0);
  assert_int_equal(b.token_len, 3);
  assert_memory_equal(b.token, "abc", 3);
  assert_null(b.request_id); /* a token wins */
  assert_true(b.score == -2.5);
  pd_feedback_token_body_free(&b);
  j = "{\"request_id\": \"r-1\", \"score\": 3}";
  assert_int_equal(pd_feedback_token_body_read(j, strlen(j), &b), 0);
  assert_null(b.token);
  assert_string_equal(b.request_id, "r-1");
  assert_true(b.score == 3);
  pd_feedback_token_body_free(&b);
  pd_feedback_token_body_free(&b); /* twice is harmless */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_feedback_basic),
      cmocka_unit_test(test_feedback_eviction),
      cmocka_unit_test(test_feedback_concurrent),
      cmocka_unit_test(test_siphash_vectors),
      cmocka_unit_test(test_feedback_hash_is_keyed),
      cmocka_unit_test(test_token_known),
      cmocka_unit_test(test_token_round_trip),
      cmocka_unit_test(test_token_forged_altered_truncated),
      cmocka_unit_test(test_token_age),
      cmocka_unit_test(test_token_other_secret),
      cmocka_unit_test(test_token_threads),
      cmocka_unit_test(test_feedback_body),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
