/* Test support for the JSON unit tests (tests/unit/base/test_json.c, core/test_openai.c,
 * api/test_chat_scan.c) and tests/fuzz/fuzz_json.c: the tokenizer's verdict, a xorshift
 * generator, random jansson values with the strings that trip JSON writers and readers, and
 * random byte edits of a JSON text. Static functions:
 * include it from one file of each program. */
#ifndef PD_TEST_JSON_GEN_H
#define PD_TEST_JSON_GEN_H

#include <jansson.h>
#include <stdint.h>
#include <string.h>

#include "base/json.h"

/* The tokenizer's verdict on b: whether its tokens end with PD_JSON_END (the one scanner's
 * answer, which every test compares with json_loadb's). */
__attribute__((unused)) static int scan_accepts(const char *b, size_t n) {
  pd_json_scan_t s;
  pd_json_tok_t t;
  pd_json_scan_init(&s, b, n);
  int type;
  while ((type = pd_json_next(&s, &t)) > 0)
    ;
  return type == PD_JSON_END;
}

/* Copies src into buf (cap bytes) and applies `edits` random one-byte edits (replace, insert
 * or delete a byte from a JSON-ish alphabet), drawing from the xorshift state *x. Returns the
 * new length. */
__attribute__((unused)) static size_t mutate(char *buf, size_t cap, const char *src, int edits,
                                             uint64_t *x) {
  static const char alphabet[] = "{}[]\":,\\u0019eE.-+tnfl \t\n\x01\x7f\x80\xC3\xA9\xED\xF4\xFF"
                                 "\0"
                                 "09abdD8";
  size_t len = strlen(src);
  memcpy(buf, src, len);
  for (int k = 0; k < edits; k++) {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    size_t pos = (size_t)(*x % len);
    char ch = alphabet[(*x >> 32) % (sizeof alphabet - 1)];
    int op = (int)((*x >> 48) % 3);
    if (op == 0) {
      buf[pos] = ch;
    } else if (op == 1 && len + 1 < cap) {
      memmove(buf + pos + 1, buf + pos, len - pos);
      buf[pos] = ch;
      len++;
    } else if (len > 1) {
      memmove(buf + pos, buf + pos + 1, len - pos - 1);
      len--;
    }
  }
  return len;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
__attribute__((unused)) static uint64_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

__attribute__((unused)) static json_t *random_string(void) {
  static const char *const pieces[] = {"a",
                                       "Z",
                                       " ",
                                       "\"",
                                       "\\",
                                       "/",
                                       "\n",
                                       "\r",
                                       "\t",
                                       "\b",
                                       "\f",
                                       "\x01",
                                       "\x1f",
                                       "\x7f",
                                       "\xc3\xa9",
                                       "\xe2\x80\xa8",
                                       "\xf0\x9f\x98\x80",
                                       "<think>",
                                       "Wait"};
  char buf[256];
  size_t n = 0, k = rnd() % 24;
  for (size_t i = 0; i < k; i++) {
    const char *p = pieces[rnd() % (sizeof pieces / sizeof *pieces)];
    size_t l = strlen(p);
    memcpy(buf + n, p, l);
    n += l;
  }
  if (rnd() % 8 == 0)
    buf[n++] = '\0'; /* an embedded NUL (\u0000 in JSON) */
  return json_stringn(buf, n);
}

__attribute__((unused)) static json_t *random_value(int depth) {
  int kind = (int)(rnd() % (depth > 4 ? 6 : 8));
  switch (kind) {
  case 0:
    return json_null();
  case 1:
    return json_boolean(rnd() % 2);
  case 2:
    return json_integer((json_int_t)(rnd() % 2 ? rnd() : -(rnd() % 100000)));
  case 3:
    return json_real((double)(int64_t)rnd() / (double)(1 + rnd() % 1000000));
  case 4:
  case 5:
    return random_string();
  case 6: {
    json_t *a = json_array();
    for (size_t i = rnd() % 5; i > 0; i--)
      json_array_append_new(a, random_value(depth + 1));
    return a;
  }
  default: {
    json_t *o = json_object();
    for (size_t i = rnd() % 5; i > 0; i--) {
      json_t *k = random_string();
      json_object_setn_new(o, json_string_value(k), json_string_length(k), random_value(depth + 1));
      json_decref(k);
    }
    return o;
  }
  }
}

#endif
