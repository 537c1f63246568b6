/* Tests of core/openai.c: the OpenAI shapes ponder writes, the reply reader and the relay's
 * reply check and model remap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "../../lib/json_gen.h"
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

/* The relay's remap: the one check finds "model", and the rewrite puts the client's name in
 * its place (every top-level one), leaving the other bytes as they came. */
static void check_remodel(const char *b, size_t n, int want_models) {
  pd_openai_reply_t r;
  assert_int_equal(pd_openai_check_reply(b, n, &r), 1);
  assert_int_equal(r.nmodel, (size_t)want_models);
  pd_buf_t out;
  pd_buf_init(&out);
  assert_int_equal(pd_openai_remodel(&out, b, n, &r, "client \"m\""), 0);
  json_t *j = json_loadb(pd_buf_data(&out), out.len, 0, NULL);
  if (!j)
    fail_msg("remodel of %.*s is not JSON: %.*s", (int)n, b, (int)out.len, pd_buf_data(&out));
  if (want_models)
    assert_string_equal(json_string_value(json_object_get(j, "model")), "client \"m\"");
  /* Nothing else changed. */
  json_t *orig = json_loadb(b, n, 0, NULL);
  assert_non_null(orig);
  json_object_del(orig, "model");
  json_object_del(j, "model");
  assert_true(json_equal(orig, j));
  /* Each top-level "model" key in the text now has the client's name: a reader that keeps the
   * first sees it too. */
  const char *p = pd_buf_data(&out);
  assert_null(strstr(p, "\"up\""));
  json_decref(orig);
  json_decref(j);
  pd_buf_free(&out);
}

static void test_remodel(void **state) {
  (void)state;
  static const struct {
    const char *json;
    int models;
  } cases[] = {
      {"{\"id\":\"x\",\"model\":\"up\",\"choices\":[{\"message\":{\"content\":\"hi\"}}]}", 1},
      {" { \"model\" :\"up\" , \"usage\":{\"prompt_tokens\":1}} ", 1},
      {"{\"model\":\"up\",\"model\":\"up\",\"x\":{\"model\":\"keep\"}}", 2},
      {"{\"mod\\u0065l\":\"up\"}", 1},
      {"{\"model\":{\"name\":\"up\"},\"n\":1}", 1},
      {"{\"model\":5\0,\"n\":1}", 1},
      {"{\"choices\":[]}", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const char *b = cases[i].json;
    size_t n = strlen(b);
    if (i == 5)
      n += 1 + strlen(",\"n\":1}");
    check_remodel(b, n, cases[i].models);
  }
  /* A reply jansson refuses is refused by the check (the relay then sends a 502), so no reply
   * goes out with the upstream's name because the remap could not read it. */
  static const char *const bad[] = {
      "{\"model\":\"up\",\"x\":\"\xFF\"}",
      "{\"model\":\"up\",\"x\":\"\\ud800\"}",
      "{\"model\":\"up\",\"x\":\"\\u0000\"}",
      "{\"model\":\"up\",\"x\":1e400}",
      "{\"model\":\"up\",\"x\":12345678901234567890}",
      "{\"model\":\"up\"",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    pd_openai_reply_t r;
    assert_int_equal(pd_openai_check_reply(bad[i], strlen(bad[i]), &r), 0);
    assert_null(json_loadb(bad[i], strlen(bad[i]), 0, NULL));
  }
  pd_openai_reply_t r;
  const char *err = "{\"error\":{\"message\":\"x\"},\"model\":\"up\"}";
  assert_int_equal(pd_openai_check_reply(err, strlen(err), &r), 2);
  assert_int_equal(r.nmodel, 1);
}

/* pd_openai_load_reply against json_loadb: the same verdict, and the same values for every member
 * it keeps. The expected tree is jansson's, cut down by the rules in openai.h (cut_reply in
 * tests/lib/reply_cut.h). pd_json_load must give jansson's tree itself. */
static int reply_fast; /* loads that took the cut-down (fast) path */

static void check_reply_load(const char *b, size_t n) {
  json_t *full = json_loadb(b, n, 0, NULL);
  json_t *got = pd_openai_load_reply(b, n);
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
  else if (cut || !json_equal(got, full)) /* an object is always cut; an array is whole */
    fail_msg("different values for: %.*s", (int)n, b);
  json_decref(cut);
  json_decref(full);
  json_decref(got);
}

/* pd_openai_read_usage: the counts of a usage value as the pass-through relay takes them,
 * the same as jansson's tree gives (integers only, the last of a repeated key, details'
 * reasoning_tokens), and nothing from a value that is not one object. */
static void test_read_usage(void **state) {
  (void)state;
  pd_openai_msg_t m;
  const char *u = "{\"prompt_tokens\":9,\"completion_tokens\":8,\"total_tokens\":17,"
                  "\"completion_tokens_details\":{\"reasoning_tokens\":5}}";
  assert_int_equal(pd_openai_read_usage(u, strlen(u), &m), 1);
  assert_true(m.has_usage);
  assert_int_equal(m.prompt_tokens, 9);
  assert_int_equal(m.completion_tokens, 8);
  assert_int_equal(m.reasoning_tokens, 5);
  u = "{\"prompt_tokens\":1.5,\"completion_tokens\":\"8\",\"prompt_tokens\":3,"
      "\"completion_tokens_details\":{\"reasoning_tokens\":2},\"completion_tokens_details\":null}";
  assert_int_equal(pd_openai_read_usage(u, strlen(u), &m), 1);
  assert_int_equal(m.prompt_tokens, 3); /* the last one counts */
  assert_false(m.has_completion);
  assert_int_equal(m.completion_tokens, 0);
  assert_false(m.has_reasoning); /* the last details is null */
  assert_int_equal(m.reasoning_tokens, 0);
  const char *bad[] = {"null", "[1]", "7", "{\"prompt_tokens\":1} x", "{\"prompt_tokens\":1", ""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(pd_openai_read_usage(bad[i], strlen(bad[i]), &m), 0);
    assert_false(m.has_usage);
    assert_int_equal(m.prompt_tokens, 0);
  }
  /* A reply's usage read by pd_openai_read_reply sets has_usage the same way. */
  const char *r = "{\"choices\":[],\"usage\":{\"prompt_tokens\":4}}";
  assert_int_equal(pd_openai_read_reply(r, strlen(r), 0, &m), 1);
  assert_true(m.has_usage);
  assert_int_equal(m.prompt_tokens, 4);
  r = "{\"usage\":{\"prompt_tokens\":4},\"usage\":null}";
  assert_int_equal(pd_openai_read_reply(r, strlen(r), 0, &m), 1);
  assert_false(m.has_usage);
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
  json_t *j = pd_openai_load_reply(docs[0], strlen(docs[0]));
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
                                     cmocka_unit_test(test_remodel),
                                     cmocka_unit_test(test_json_load_reply),
                                     cmocka_unit_test(test_read_usage)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
