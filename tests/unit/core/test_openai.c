#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "../../lib/reply_cut.h"
#include "core/openai.h"

static json_t *parse(const pd_buf_t *b) {
  json_error_t e;
  json_t *j = json_loadb(pd_buf_data(b), b->len, 0, &e);
  assert_non_null(j);
  return j;
}

static void test_error_shape(void **state) {
  (void)state;
  pd_buf_t b;
  pd_buf_init(&b);
  pd_openai_error(&b, "bad \"thing\"", "invalid_request_error", "messages", NULL);
  json_t *j = parse(&b);
  json_t *e = json_object_get(j, "error");
  assert_string_equal(json_string_value(json_object_get(e, "message")), "bad \"thing\"");
  assert_string_equal(json_string_value(json_object_get(e, "type")), "invalid_request_error");
  assert_string_equal(json_string_value(json_object_get(e, "param")), "messages");
  assert_true(json_is_null(json_object_get(e, "code")));
  assert_true(pd_openai_is_error(j));
  json_decref(j);
  pd_buf_free(&b);
}

static void test_completion_field_and_usage(void **state) {
  (void)state;
  pd_result_t r[2];
  memset(r, 0, sizeof r);
  r[0].content = "42";
  r[0].content_len = 2;
  r[0].reasoning = "think";
  r[0].reasoning_len = 5;
  r[0].finish_reason = "stop";
  r[0].usage = (pd_usage_t){10, 5, 3};
  r[1].content = "";
  r[1].finish_reason = "length";
  r[1].usage = (pd_usage_t){1, 2, 0};
  pd_buf_t b;
  pd_buf_init(&b);
  assert_int_equal(pd_openai_completion(&b, "chatcmpl-x", 7, "m", PD_REASONING_FIELD, r, 2), 0);
  json_t *j = parse(&b);
  assert_string_equal(json_string_value(json_object_get(j, "object")), "chat.completion");
  json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
  json_t *m0 = json_object_get(c0, "message");
  assert_string_equal(json_string_value(json_object_get(m0, "content")), "42");
  assert_string_equal(json_string_value(json_object_get(m0, "reasoning_content")), "think");
  json_t *c1 = json_array_get(json_object_get(j, "choices"), 1);
  assert_int_equal(json_integer_value(json_object_get(c1, "index")), 1);
  assert_string_equal(json_string_value(json_object_get(c1, "finish_reason")), "length");
  assert_null(json_object_get(json_object_get(c1, "message"), "reasoning_content"));
  json_t *u = json_object_get(j, "usage");
  assert_int_equal(json_integer_value(json_object_get(u, "prompt_tokens")), 11);
  assert_int_equal(json_integer_value(json_object_get(u, "completion_tokens")), 7);
  assert_int_equal(json_integer_value(json_object_get(u, "total_tokens")), 18);
  assert_int_equal(json_integer_value(json_object_get(
                       json_object_get(u, "completion_tokens_details"), "reasoning_tokens")),
                   3);
  json_decref(j);
  pd_buf_free(&b);
}

static void test_completion_inline_and_hidden(void **state) {
  (void)state;
  pd_result_t r;
  memset(&r, 0, sizeof r);
  r.content = "A";
  r.content_len = 1;
  r.reasoning = "T";
  r.reasoning_len = 1;
  pd_buf_t b;
  pd_buf_init(&b);
  pd_openai_completion(&b, "id", 1, "m", PD_REASONING_INLINE, &r, 1);
  json_t *j = parse(&b);
  json_t *m = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "message");
  assert_string_equal(json_string_value(json_object_get(m, "content")),
                      "<think>\nT\n</think>\n\nA");
  json_decref(j);
  pd_buf_reset(&b);
  pd_openai_completion(&b, "id", 1, "m", PD_REASONING_HIDDEN, &r, 1);
  j = parse(&b);
  m = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "message");
  assert_string_equal(json_string_value(json_object_get(m, "content")), "A");
  assert_null(json_object_get(m, "reasoning_content"));
  json_decref(j);
  pd_buf_free(&b);
}

static void test_tool_calls_content_null(void **state) {
  (void)state;
  pd_result_t r;
  memset(&r, 0, sizeof r);
  r.content = "";
  r.finish_reason = "tool_calls";
  r.tool_calls = json_loads("[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"f\","
                            "\"arguments\":\"{}\"}}]",
                            0, NULL);
  pd_buf_t b;
  pd_buf_init(&b);
  pd_openai_completion(&b, "id", 1, "m", PD_REASONING_FIELD, &r, 1);
  json_t *j = parse(&b);
  json_t *m = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "message");
  assert_true(json_is_null(json_object_get(m, "content")));
  assert_int_equal(json_array_size(json_object_get(m, "tool_calls")), 1);
  json_decref(j);
  json_decref(r.tool_calls);
  pd_buf_free(&b);
}

static void test_chunks(void **state) {
  (void)state;
  pd_chunk_ctx_t c = {"chatcmpl-1", 5, "model-a"};
  pd_buf_t b;
  pd_buf_init(&b);
  pd_openai_chunk_text(&b, &c, 1, "reasoning_content", "hm", 2);
  assert_memory_equal(pd_buf_data(&b), "data: ", 6);
  assert_memory_equal(pd_buf_data(&b) + b.len - 2, "\n\n", 2);
  json_t *j = json_loadb(pd_buf_data(&b) + 6, b.len - 8, 0, NULL);
  assert_non_null(j);
  assert_string_equal(json_string_value(json_object_get(j, "object")), "chat.completion.chunk");
  assert_string_equal(json_string_value(json_object_get(j, "model")), "model-a");
  json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
  assert_int_equal(json_integer_value(json_object_get(ch, "index")), 1);
  assert_string_equal(
      json_string_value(json_object_get(json_object_get(ch, "delta"), "reasoning_content")), "hm");
  json_decref(j);
  pd_buf_reset(&b);
  pd_usage_t u = {3, 4, 2};
  pd_openai_chunk_usage(&b, &c, &u);
  j = json_loadb(pd_buf_data(&b) + 6, b.len - 8, 0, NULL);
  assert_int_equal(json_array_size(json_object_get(j, "choices")), 0);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "usage"), "total_tokens")),
                   7);
  json_decref(j);
  pd_buf_free(&b);
}

static uint64_t counter(void *ud) {
  return ++*(uint64_t *)ud * 0x9E3779B97F4A7C15ULL;
}

static void test_ids(void **state) {
  (void)state;
  char a[48], b[48];
  uint64_t n = 0;
  pd_openai_new_id(a, "chatcmpl-", counter, &n);
  pd_openai_new_id(b, "chatcmpl-", counter, &n);
  assert_int_equal(strlen(a), 33);
  assert_memory_equal(a, "chatcmpl-", 9);
  assert_string_not_equal(a, b);
}

static void test_json_check(void **state) {
  (void)state;
  static const struct {
    const char *json;
    int want;
  } cases[] = {
      {"{}", 1},
      {" {\"a\" : [1, -2.5e+3, true, false, null, {\"b\": []}], \"c\": \"x\\n\\u00e9\\\"\"} ", 1},
      {"{\"id\":\"chatcmpl-1\",\"choices\":[{\"message\":{\"content\":\"hi\"}}]}", 1},
      {"{\"error\":{\"message\":\"no\"}}", 2},
      {"{\"a\":{\"error\":1}}", 1},
      {"[]", 0},
      {"", 0},
      {"{not json", 0},
      {"{\"a\":1,}", 0},
      {"{\"a\" 1}", 0},
      {"{\"a\":01}", 0},
      {"{\"a\":1} x", 0},
      {"{\"a\":\"\\q\"}", 0},
      {"{\"a\":\"\x01\"}", 0},
      {"{\"a\":[1 2]}", 0},
      {"{\"a\":tru}", 0},
      {"{\"a\":1", 0},
      {"{\"a\":-}", 0},
      {"{\"a\":1.}", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int got = pd_json_check_object(cases[i].json, strlen(cases[i].json));
    if (got != cases[i].want)
      fail_msg("case %zu (%s): got %d, want %d", i, cases[i].json, got, cases[i].want);
  }
  /* Nesting deeper than 64 is refused rather than recursed into. */
  char deep[300];
  size_t n = 0;
  deep[n++] = '{';
  deep[n++] = '"';
  deep[n++] = 'a';
  deep[n++] = '"';
  deep[n++] = ':';
  for (int i = 0; i < 100; i++)
    deep[n++] = '[';
  for (int i = 0; i < 100; i++)
    deep[n++] = ']';
  deep[n++] = '}';
  assert_int_equal(pd_json_check_object(deep, n), 0);
}

/* pd_json_check_reply finds the top-level "usage" value (the last, as jansson keeps it), never
 * one nested deeper, whatever its type. */
static void test_check_reply_usage(void **state) {
  (void)state;
  static const struct {
    const char *json, *usage;
  } cases[] = {
      {"{\"id\":\"x\",\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":{\"a\":[1]}}}",
       "{\"prompt_tokens\":3,\"completion_tokens\":{\"a\":[1]}}"},
      {"{\"usage\": {} ,\"x\":1}", "{}"},
      {"{\"usage\":null}", "null"},
      {"{\"usage\":[1,2]}", "[1,2]"},
      {"{\"usage\":1,\"usage\":{\"b\":2}}", "{\"b\":2}"},
      {"{\"choices\":[{\"usage\":{\"p\":1}}],\"x\":{\"usage\":2}}", NULL},
      {"{}", NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *u = (const char *)1;
    size_t ulen = 99;
    assert_int_equal(pd_json_check_reply(cases[i].json, strlen(cases[i].json), &u, &ulen), 1);
    if (!cases[i].usage) {
      assert_null(u);
      assert_int_equal(ulen, 0);
    } else {
      assert_non_null(u);
      if (ulen != strlen(cases[i].usage) || memcmp(u, cases[i].usage, ulen))
        fail_msg("case %zu: usage \"%.*s\", want \"%s\"", i, (int)ulen, u, cases[i].usage);
    }
  }
}

/* Copies src into buf (cap bytes) and applies `edits` random one-byte edits (replace, insert
 * or delete a byte from a JSON-ish alphabet), drawing from the xorshift state *x. Returns the
 * new length. */
static size_t mutate(char *buf, size_t cap, const char *src, int edits, uint64_t *x) {
  static const char alphabet[] = "{}[]\":,\\u0019eE.-+tnfl \t\n\x01\x7f\x80\xC3\xA9\xED\xF4\xFF"
                                 "abdD8";
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

/* pd_chat_req_scan must only accept what the jansson path accepts, with the same values. */
static void check_scan_agrees(const char *b, size_t n) {
  pd_chat_req_t cr;
  if (pd_chat_req_scan(b, n, &cr) != 1)
    return;
  json_t *j = json_loadb(b, n, 0, NULL);
  if (!j)
    fail_msg("scan accepted what jansson rejects: %.*s", (int)n, b);
  assert_true(json_is_object(j));
  const char *msg, *param;
  if (pd_engine_validate(j, &msg, &param) != 0)
    fail_msg("scan accepted an invalid request (%s): %.*s", msg, (int)n, b);
  json_t *model = json_object_get(j, "model");
  assert_true(json_is_string(model));
  assert_int_equal(json_string_length(model), cr.model_len);
  assert_memory_equal(json_string_value(model), cr.model, cr.model_len);
  assert_null(json_object_get(j, "ponder"));
  assert_null(json_object_get(j, "reasoning_effort"));
  assert_int_equal(cr.stream, json_is_true(json_object_get(j, "stream")));
  assert_int_equal(cr.include_usage, json_is_true(json_object_get(
                                         json_object_get(j, "stream_options"), "include_usage")));
  json_t *user = json_object_get(j, "user");
  if (json_is_string(user)) {
    assert_non_null(cr.user);
    assert_int_equal(json_string_length(user), cr.user_len);
    assert_memory_equal(json_string_value(user), cr.user, cr.user_len);
  } else {
    assert_null(cr.user);
  }
  json_decref(j);
}

/* pd_json_load gives json_loadb's verdict and tree. */
static void check_load_same(const char *b, size_t n) {
  json_t *want = json_loadb(b, n, 0, NULL);
  json_t *got = pd_json_load(b, n, NULL);
  if (!want != !got || (want && !json_equal(want, got)))
    fail_msg("pd_json_load differs from json_loadb for: %.*s", (int)n, b);
  json_decref(want);
  json_decref(got);
}

static int scan(const char *b) {
  pd_chat_req_t cr;
  check_scan_agrees(b, strlen(b));
  return pd_chat_req_scan(b, strlen(b), &cr);
}

static void test_chat_req_scan(void **state) {
  (void)state;
  static const char *const good[] = {
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
      " {\"messages\":[{\"role\":\"user\",\"content\":null},{\"role\":\"assistant\",\"content\":[]}"
      "],"
      "\"model\":\"gpt\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"n\":2,"
      "\"temperature\":0.5e-3,\"top_p\":1,\"max_tokens\":5,\"stop\":[\"a\",\"b\"],\"user\":\"u1\","
      "\"tools\":[{\"x\":[1,2,{\"y\":null}]}],\"other\":\"caf\xC3\xA9 \\u00e9 \\ud83d\\ude00\"} \n",
      "{\"model\":\"m\",\"model\":\"m2\",\"messages\":[{\"role\":1,\"role\":\"user\"}],\"stream\":"
      "null,"
      "\"stop\":\"x\",\"n\":null,\"user\":5}",
      "{\"messages\":5,\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"stream\":false,"
      "\"stream_options\":{\"include_usage\":true,\"include_usage\":false}}",
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"x\":-0,\"y\":123456789012345678,"
      "\"z\":1.5E+299,\"w\":1e-99999}",
  };
  for (size_t i = 0; i < sizeof good / sizeof *good; i++)
    if (scan(good[i]) != 1)
      fail_msg("not accepted: %s", good[i]);
  pd_chat_req_t cr;
  assert_int_equal(pd_chat_req_scan(good[1], strlen(good[1]), &cr), 1);
  assert_int_equal(cr.stream, 1);
  assert_int_equal(cr.include_usage, 1);
  assert_int_equal(cr.model_len, 3);
  assert_memory_equal(cr.model, "gpt", 3);
  assert_int_equal(cr.user_len, 2);
  assert_int_equal(pd_chat_req_scan(good[2], strlen(good[2]), &cr), 1);
  assert_memory_equal(cr.model, "m2", 2);
  assert_null(cr.user);
  assert_int_equal(pd_chat_req_scan(good[3], strlen(good[3]), &cr), 1);
  assert_int_equal(cr.include_usage, 0);

  static const char *const bad[] = {
      "",
      "[]",
      "{\"model\":\"m\",\"messages\":[]}",
      "{\"model\":\"m\"}",
      "{\"messages\":[{\"role\":\"user\"}]}",
      "{\"model\":null,\"messages\":[{\"role\":\"user\"}]}",
      "{\"model\":\"m\",\"messages\":[{\"content\":\"x\"}]}",
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":5}]}",
      "{\"model\":\"m\",\"messages\":[1]}",
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"n\":0}",
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"n\":129}",
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"n\":1.0}",
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"max_tokens\":0}",
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"max_completion_tokens\":\"5\"}",
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"stream\":1}",
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"temperature\":\"1\"}",
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"tools\":{}}",
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"stream_options\":[]}",
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"stop\":[\"a\",1]}",
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"ponder\":null}",
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"reasoning_effort\":\"low\"}",
      "{\"model\":\"m\\u0031\",\"messages\":[{\"role\":\"user\"}]}",
      "{\"mod\\u0065l\":\"m\",\"messages\":[{\"role\":\"user\"}]}",
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"user\":\"a\\nb\"}",
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"x\":\"\\u0000\"}",
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"x\":\"\\ud83d\"}",
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"x\":\"\\ude00\"}",
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"x\":\"\\ud83d\\u0041\"}",
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"x\":\"\xC0\xAF\"}",
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"x\":\"\xED\xA0\x80\"}",
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"x\":\"\xF4\x90\x80\x80\"}",
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"x\":\"\xC3\"}",
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"x\":\"a\tb\"}",
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"x\":\"\\x\"}",
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"x\":9223372036854775808}",
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"x\":1e400}",
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"x\":01}",
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"x\":1.}",
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"x\":truex}",
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],}",
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]} x",
      "\xEF\xBB\xBF{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    if (scan(bad[i]) != 0)
      fail_msg("accepted: %s", bad[i]);
  char deep[300];
  size_t n = (size_t)snprintf(deep, sizeof deep,
                              "{\"model\":\"m\",\"messages\":[{\"role\":\"u\"}],\"x\":");
  for (int i = 0; i < 70; i++)
    deep[n++] = '[';
  for (int i = 0; i < 70; i++)
    deep[n++] = ']';
  deep[n++] = '}';
  assert_int_equal(pd_chat_req_scan(deep, n, &cr), 0);

  /* Mutations of accepted bodies: whatever the scan accepts, jansson reads the same way. */
  uint64_t x = 0x9E3779B97F4A7C15ULL;
  char buf[600];
  for (int iter = 0; iter < 200000; iter++) {
    size_t len =
        mutate(buf, sizeof buf, good[iter % (sizeof good / sizeof *good)], 1 + iter % 3, &x);
    check_scan_agrees(buf, len);
    check_load_same(buf, len);
  }
}

/* pd_json_write against json_dumps(JSON_COMPACT): fixed cases, then random trees. */
static void expect_same(const json_t *v) {
  char *want = json_dumps(v, JSON_COMPACT);
  assert_non_null(want);
  pd_buf_t b;
  pd_buf_init(&b);
  assert_int_equal(pd_json_write(&b, v), 0);
  assert_int_equal(b.len, strlen(want));
  assert_memory_equal(pd_buf_data(&b), want, b.len);
  pd_buf_free(&b);
  free(want);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static json_t *random_string(void) {
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

static json_t *random_value(int depth) {
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

static void test_json_write(void **state) {
  (void)state;
  const char *const docs[] = {
      "{}",
      "[]",
      "{\"a\":[1,-2,3.5,1e300,-0.0,0.1,true,false,null,\"\"]}",
      ("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\\n\\\"y\\\\\"}],"
       "\"temperature\":0.7,\"max_tokens\":9223372036854775807,\"n\":-9223372036854775808}"),
      "{\"k\\u0001z\":\"a\\u0000b\\u001f\\u007f\\u2028\\ud83d\\ude00/\"}",
  };
  for (size_t i = 0; i < sizeof docs / sizeof *docs; i++) {
    json_error_t err;
    json_t *v = json_loads(docs[i], JSON_ALLOW_NUL, &err);
    assert_non_null(v);
    expect_same(v);
    json_decref(v);
  }
  /* As deep as jansson's parser allows: 2048 levels. */
  json_t *deep = json_array(), *inner = deep;
  for (int d = 1; d < 2048; d++) {
    json_t *next = json_array();
    json_array_append_new(inner, next);
    inner = next;
  }
  json_array_append_new(inner, json_string("bottom"));
  json_t *root = json_pack("{s:o}", "deep", deep);
  expect_same(root);
  json_decref(root);
  for (int i = 0; i < 3000; i++) {
    json_t *v = random_value(0);
    json_t *root = json_object();
    json_object_set_new(root, "v", v);
    expect_same(root);
    json_decref(root);
  }
}

/* pd_json_load_reply against json_loadb: the same verdict, and the same values for every member
 * it keeps. The expected tree is jansson's, cut down by the rules in openai.h (cut_reply in
 * tests/lib/reply_cut.h). pd_json_load must give jansson's tree itself. */
static int reply_fast; /* loads that took the cut-down (fast) path */

static void check_reply_load(const char *b, size_t n) {
  json_t *full = json_loadb(b, n, 0, NULL);
  json_t *got = pd_json_load_reply(b, n);
  json_t *whole = pd_json_load(b, n, NULL);
  if (!full) {
    if (got || whole)
      fail_msg("accepted what jansson rejects: %.*s", (int)n, b);
    return;
  }
  if (!whole || !json_equal(whole, full))
    fail_msg("pd_json_load differs from json_loadb for: %.*s", (int)n, b);
  json_decref(whole);
  if (!got)
    fail_msg("rejected what jansson accepts: %.*s", (int)n, b);
  json_t *cut = json_is_object(full) ? cut_reply(full) : NULL;
  if (cut && json_equal(got, cut))
    reply_fast++;
  else if (!json_equal(got, full)) /* the json_loadb fallback keeps everything */
    fail_msg("different values for: %.*s", (int)n, b);
  json_decref(cut);
  json_decref(full);
  json_decref(got);
}

static void test_json_load_reply(void **state) {
  (void)state;
  static const char *const docs[] = {
      "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"m\","
      "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hi \\\"x\\\" "
      "\\u00e9\\ud83d\\ude00\\n\\/\"},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
      "\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":5,\"total_tokens\":15,"
      "\"completion_tokens_details\":{\"reasoning_tokens\":2}}}",
      "{\"choices\":[{\"delta\":{\"reasoning_content\":\"r\",\"tool_calls\":[{\"index\":0,"
      "\"function\":{\"arguments\":\"{}\",\"x\":1.5e-3}}]},\"finish_reason\":null},{\"delta\":{}}],"
      "\"usage\":null}",
      "{\"choices\":[{\"text\":\"t\",\"index\":0,\"finish_reason\":\"length\"}],\"usage\":{}}",
      "{\"error\":{\"message\":\"bad\",\"type\":\"x\",\"param\":null,\"code\":429}}",
      " {\"choices\":5,\"usage\":[1,2],\"choices\":[7,{\"message\":1}]} ",
      "{\"choices\":[],\"x\":[[[{}]]],\"y\":-0,\"z\":1E+2}",
      "{\"choices\":[{\"message\":{\"content\":\"a\",\"content\":null}}]}",
      "{\"ch\\u006fices\":[{\"message\":{\"content\":\"a\"}}]}",
      "[{\"choices\":[]}]",
      "{\"choices\":[{\"message\":{\"content\":\"\\u0000\"}}]}",
      "{\"choices\":[{\"message\":{\"content\":\"a\"}}]} x",
      "{\"usage\":{\"prompt_tokens\":99999999999999999999}}",
      "{\"usage\":{\"prompt_tokens\":1e400}}",
  };
  for (size_t i = 0; i < sizeof docs / sizeof *docs; i++)
    check_reply_load(docs[i], strlen(docs[i]));
  json_t *j = pd_json_load_reply(docs[0], strlen(docs[0]));
  assert_non_null(j);
  assert_null(json_object_get(j, "id")); /* cut down: the fast path */
  assert_string_equal(
      json_string_value(json_object_get(
          json_object_get(json_array_get(json_object_get(j, "choices"), 0), "message"), "content")),
      "Hi \"x\" \xC3\xA9\xF0\x9F\x98\x80\n/");
  json_decref(j);

  /* Random values in a reply's places. */
  reply_fast = 0;
  for (int i = 0; i < 3000; i++) {
    json_t *msg = json_pack("{s:o,s:o,s:o}", "content", random_value(3), "tool_calls",
                            random_value(2), "role", random_value(3));
    if (rnd() % 4 == 0) {
      json_decref(msg);
      msg = random_value(1);
    }
    json_t *choice = json_pack("{s:o,s:o,s:o}", "message", msg, "finish_reason", random_value(3),
                               "index", random_value(3));
    json_t *root = json_pack("{s:[o,o],s:o,s:o}", "choices", choice, random_value(1), "usage",
                             random_value(1), "id", random_value(1));
    char *s = json_dumps(root, JSON_COMPACT);
    check_reply_load(s, strlen(s));
    free(s);
    json_decref(root);
  }
  /* Strings with NUL make jansson reject about half, and escaped keys send others to the
   * fallback; this many (584 when written) took the fast path. */
  assert_true(reply_fast > 300);

  /* Byte mutations of the fixed replies. */
  char buf[600];
  for (int iter = 0; iter < 100000; iter++) {
    size_t len = mutate(buf, sizeof buf, docs[iter % 7], 1 + iter % 3, &rng_state);
    check_reply_load(buf, len);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_error_shape),
                                     cmocka_unit_test(test_completion_field_and_usage),
                                     cmocka_unit_test(test_completion_inline_and_hidden),
                                     cmocka_unit_test(test_tool_calls_content_null),
                                     cmocka_unit_test(test_chunks),
                                     cmocka_unit_test(test_ids),
                                     cmocka_unit_test(test_json_check),
                                     cmocka_unit_test(test_check_reply_usage),
                                     cmocka_unit_test(test_chat_req_scan),
                                     cmocka_unit_test(test_json_write),
                                     cmocka_unit_test(test_json_load_reply)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
