/* Tests of api/chat_scan.c: pd_chat_scan_body against the jansson path it stands in for
 * (json_loadb, pd_engine_validate, a string "model"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/json_gen.h"
#include "api/api.h"
#include "api/chat_scan.h"
#include "base/json.h"
#include "core/engine.h"
/* pd_chat_scan_body must only accept what the jansson path accepts, with the same values. */
static void check_scan_agrees(const char *b, size_t n) {
  pd_chat_scan_t cr;
  if (pd_chat_scan_body(b, n, &cr) != 1)
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
  /* What the fast path relays as it is holds no earlier thinking the tree path would remove. */
  json_t *msgs = json_deep_copy(json_object_get(j, "messages"));
  assert_int_equal(pd_api_strip_history(msgs), 0);
  json_decref(msgs);
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
  pd_chat_scan_t cr;
  check_scan_agrees(b, strlen(b));
  return pd_chat_scan_body(b, strlen(b), &cr);
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
  pd_chat_scan_t cr;
  assert_int_equal(pd_chat_scan_body(good[1], strlen(good[1]), &cr), 1);
  assert_int_equal(cr.stream, 1);
  assert_int_equal(cr.include_usage, 1);
  assert_int_equal(cr.model_len, 3);
  assert_memory_equal(cr.model, "gpt", 3);
  assert_int_equal(cr.user_len, 2);
  assert_int_equal(pd_chat_scan_body(good[2], strlen(good[2]), &cr), 1);
  assert_memory_equal(cr.model, "m2", 2);
  assert_null(cr.user);
  assert_int_equal(pd_chat_scan_body(good[3], strlen(good[3]), &cr), 1);
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
  /* Deeper than the 64 levels this scan used to give up at: jansson reads it, so it is read. */
  assert_int_equal(pd_chat_scan_body(deep, n, &cr), 1);
  check_scan_agrees(deep, n);

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

/* SPEC section 5 on the fast path: a body that may hold earlier thinking goes to the tree path
 * (which removes it); plain history and a <think> that is not leading stay on the fast path. */
static void test_scan_earlier_thinking(void **state) {
  (void)state;
#define M(x) "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"q\"}," x "]}"
  static const char *const tree[] = {
      M("{\"role\":\"assistant\",\"content\":\"a\",\"reasoning_content\":\"t\"}"),
      M("{\"reasoning\":\"t\",\"role\":\"assistant\",\"content\":\"a\"}"),
      M("{\"role\":\"assistant\",\"content\":\"<think>\\nt\\n</think>\\n\\na\"}"),
      M("{\"role\":\"assistant\",\"content\":\"\\u003cthink>t</think>a\"}"),
      M("{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"<think>t</"
        "think>a\"}]}"),
      M("{\"role\":\"\\u0061ssistant\",\"content\":\"<think>t</think>a\"}"),
      M("{\"role\":\"assistant\",\"content\":\"<think>x</think>\",\"content\":\"a\"}"),
  };
  for (size_t i = 0; i < sizeof tree / sizeof *tree; i++)
    if (scan(tree[i]) != 0)
      fail_msg("fast path for a body with earlier thinking: %s", tree[i]);
  static const char *const fast[] = {
      M("{\"role\":\"assistant\",\"content\":\"a <think>x</think>\"}"),
      M("{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"a\"}]}"),
      M("{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c\"}]}"),
      M("{\"role\":\"tool\",\"content\":\"<think>x</think>\",\"tool_call_id\":\"c\"}"),
      M("{\"role\":\"user\",\"content\":\"<think>mine</think>\",\"reasoning\":\"r\"}"),
  };
  for (size_t i = 0; i < sizeof fast / sizeof *fast; i++)
    if (scan(fast[i]) != 1)
      fail_msg("tree path for a body without earlier thinking: %s", fast[i]);
#undef M
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_chat_req_scan),
                                     cmocka_unit_test(test_scan_earlier_thinking)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
