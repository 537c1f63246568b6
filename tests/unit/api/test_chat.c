/* Unit tests for api/chat.c and api/api.c: the registry finds Chat Completions by its path; the
 * chat table reads a request's options (and refuses what cannot be forced), and its writers
 * write exactly the core/openai.h shapes for each display mode, the inline <think> block opened
 * once and closed before the answer, the finish or the stream's end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/api.h"
#include "../../lib/api_test.h"

static void test_registry(void **state) {
  (void)state;
  assert_ptr_equal(pd_api_find("/chat/completions", 17), &pd_chat_api);
  assert_null(pd_api_find("/chat/completions/", 18));
  assert_null(pd_api_find("/chat/completion", 16));
  assert_null(pd_api_find("/models", 7));
  assert_null(pd_api_find("", 0));
  assert_string_equal(pd_chat_api.id_prefix, "chatcmpl-");
  assert_true(pd_chat_api.relay);
  assert_ptr_equal(pd_chat_api.scan, pd_chat_scan_body);
}

static void test_request_options(void **state) {
  (void)state;
  json_t *body = J("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                   "\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
  json_t *before = body;
  pd_api_req_t q;
  pd_api_resp_t r0 = {0};
  assert_int_equal(pd_chat_api.request(&body, &q, &r0), 0);
  assert_ptr_equal(body, before); /* chat's request is the engine's: no translation */
  assert_true(q.stream);
  assert_true(q.include_usage);
  assert_true(q.verbatim);
  assert_null(q.rounds_param);
  assert_null(q.effort_param);
  json_decref(body);

  body = J("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
           "\"ponder\":{\"rounds\":2},\"reasoning_effort\":\"low\"}");
  assert_int_equal(pd_chat_api.request(&body, &q, &r0), 0);
  assert_false(q.stream);
  assert_false(q.include_usage);
  assert_false(q.verbatim);
  assert_string_equal(q.rounds_param, "ponder.rounds");
  assert_string_equal(q.effort_param, "reasoning_effort");
  json_decref(body);

  /* "ponder" without rounds still changes the bytes (the router removes it). */
  body = J("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
           "\"ponder\":{\"variant\":\"a\"}}");
  assert_int_equal(pd_chat_api.request(&body, &q, &r0), 0);
  assert_false(q.verbatim);
  assert_null(q.rounds_param);
  json_decref(body);
}

static void test_request_refused(void **state) {
  (void)state;
  json_t *body = J("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
  pd_api_req_t q;
  pd_api_resp_t r0 = {0};
  assert_int_equal(pd_chat_api.request(&body, &q, &r0), -1);
  assert_string_equal(q.msg, "You must provide a model parameter.");
  assert_string_equal(q.param, "model");
  json_decref(body);

  /* What the engine cannot force is the engine's 400, word for word. */
  body = J("{\"model\":\"m\",\"messages\":\"no\"}");
  const char *msg = NULL, *param = NULL;
  assert_int_equal(pd_engine_validate(body, &msg, &param), -1);
  assert_int_equal(pd_chat_api.request(&body, &q, &r0), -1);
  assert_string_equal(q.msg, msg);
  if (param)
    assert_string_equal(q.param, param);
  else
    assert_null(q.param);
  json_decref(body);
}

static void test_stream_start(void **state) {
  (void)state;
  pd_api_resp_t r = api_resp("chatcmpl-abc", PD_REASONING_FIELD, 2, 0);
  pd_chunk_ctx_t c = {r.id, r.created, r.model};
  pd_buf_t got, want;
  pd_buf_init(&got);
  pd_buf_init(&want);
  assert_int_equal(pd_chat_api.stream_start(&got, &r), 0);
  pd_openai_chunk_text(&want, &c, 0, "role", "", 0);
  pd_openai_chunk_text(&want, &c, 1, "role", "", 0);
  assert_buf_equal(&got, &want);
  pd_buf_free(&got);
  pd_buf_free(&want);
}

static void test_inline_think_block(void **state) {
  (void)state;
  pd_api_resp_t r = api_resp("chatcmpl-abc", PD_REASONING_INLINE, 1, 0);
  pd_chunk_ctx_t c = {r.id, r.created, r.model};
  pd_api_choice_t ch;
  memset(&ch, 0, sizeof ch);
  pd_buf_t got, want;
  pd_buf_init(&got);
  pd_buf_init(&want);
  pd_out_t t1 = api_out(PD_OUT_THINK, "one"), t2 = api_out(PD_OUT_THINK, "two");
  pd_out_t a = api_out(PD_OUT_CONTENT, "answer"), a2 = api_out(PD_OUT_CONTENT, "more");
  pd_out_t end = api_out(PD_OUT_FINISH, "stop");
  pd_chat_api.delta(&got, &r, &ch, &t1);
  pd_chat_api.delta(&got, &r, &ch, &t2);
  pd_chat_api.delta(&got, &r, &ch, &a);
  pd_chat_api.delta(&got, &r, &ch, &a2);
  pd_chat_api.delta(&got, &r, &ch, &end);
  pd_chat_api.finish(&got, &r, &ch, "stop");
  pd_openai_chunk_text(&want, &c, 0, "content", "<think>\n", 8);
  pd_openai_chunk_text(&want, &c, 0, "content", "one", 3);
  pd_openai_chunk_text(&want, &c, 0, "content", "two", 3);
  pd_openai_chunk_text(&want, &c, 0, "content", "\n</think>\n\n", 11);
  pd_openai_chunk_text(&want, &c, 0, "content", "answer", 6);
  pd_openai_chunk_text(&want, &c, 0, "content", "more", 4);
  pd_openai_chunk_finish(&want, &c, 0, "stop");
  assert_buf_equal(&got, &want);
  pd_buf_free(&got);
  pd_buf_free(&want);
}

/* A choice that finishes while its <think> block is open (tool calls or no answer text) closes
 * it in the finish; tool calls close it first. */
static void test_inline_closed_by_finish_and_tools(void **state) {
  (void)state;
  pd_api_resp_t r = api_resp("chatcmpl-abc", PD_REASONING_INLINE, 2, 0);
  pd_chunk_ctx_t c = {r.id, r.created, r.model};
  pd_api_choice_t ch0, ch1;
  memset(&ch0, 0, sizeof ch0);
  memset(&ch1, 0, sizeof ch1);
  ch1.index = 1;
  pd_buf_t got, want;
  pd_buf_init(&got);
  pd_buf_init(&want);
  pd_out_t t = api_out(PD_OUT_THINK, "x");
  json_t *calls = J("[{\"index\":0,\"id\":\"c1\",\"type\":\"function\"}]");
  pd_out_t tc = {PD_OUT_TOOL_CALLS, NULL, 0, calls};
  pd_chat_api.delta(&got, &r, &ch0, &t);
  pd_chat_api.finish(&got, &r, &ch0, "length");
  pd_chat_api.delta(&got, &r, &ch1, &t);
  pd_chat_api.delta(&got, &r, &ch1, &tc);
  pd_chat_api.finish(&got, &r, &ch1, "tool_calls");
  pd_openai_chunk_text(&want, &c, 0, "content", "<think>\n", 8);
  pd_openai_chunk_text(&want, &c, 0, "content", "x", 1);
  pd_openai_chunk_text(&want, &c, 0, "content", "\n</think>\n\n", 11);
  pd_openai_chunk_finish(&want, &c, 0, "length");
  pd_openai_chunk_text(&want, &c, 1, "content", "<think>\n", 8);
  pd_openai_chunk_text(&want, &c, 1, "content", "x", 1);
  pd_openai_chunk_text(&want, &c, 1, "content", "\n</think>\n\n", 11);
  pd_openai_chunk_tool_calls(&want, &c, 1, calls);
  pd_openai_chunk_finish(&want, &c, 1, "tool_calls");
  assert_buf_equal(&got, &want);
  json_decref(calls);
  pd_buf_free(&got);
  pd_buf_free(&want);
}

static void test_field_and_hidden(void **state) {
  (void)state;
  pd_api_resp_t r = api_resp("chatcmpl-abc", PD_REASONING_FIELD, 1, 0);
  pd_chunk_ctx_t c = {r.id, r.created, r.model};
  pd_api_choice_t ch;
  memset(&ch, 0, sizeof ch);
  pd_buf_t got, want;
  pd_buf_init(&got);
  pd_buf_init(&want);
  pd_out_t t = api_out(PD_OUT_THINK, "hmm"), a = api_out(PD_OUT_CONTENT, "ok");
  pd_chat_api.delta(&got, &r, &ch, &t);
  pd_chat_api.delta(&got, &r, &ch, &a);
  pd_openai_chunk_text(&want, &c, 0, "reasoning_content", "hmm", 3);
  pd_openai_chunk_text(&want, &c, 0, "content", "ok", 2);
  assert_buf_equal(&got, &want);

  /* Hidden: the thinking is not written at all, the answer is. */
  r.reasoning = PD_REASONING_HIDDEN;
  memset(&ch, 0, sizeof ch);
  pd_buf_reset(&got);
  pd_buf_reset(&want);
  pd_chat_api.delta(&got, &r, &ch, &t);
  assert_int_equal(got.len, 0);
  pd_chat_api.delta(&got, &r, &ch, &a);
  pd_openai_chunk_text(&want, &c, 0, "content", "ok", 2);
  assert_buf_equal(&got, &want);
  pd_buf_free(&got);
  pd_buf_free(&want);
}

static void test_stream_end(void **state) {
  (void)state;
  pd_usage_t u = {10, 20, 5};
  pd_buf_t got, want;
  pd_buf_init(&got);
  pd_buf_init(&want);
  pd_api_resp_t r = api_resp("chatcmpl-abc", PD_REASONING_FIELD, 1, 0);
  pd_chat_api.stream_end(&got, &r, &u);
  assert_int_equal(got.len, 14);
  assert_memory_equal(pd_buf_data(&got), "data: [DONE]\n\n", 14);

  r.include_usage = 1;
  pd_chunk_ctx_t c = {r.id, r.created, r.model};
  pd_buf_reset(&got);
  pd_chat_api.stream_end(&got, &r, &u);
  pd_openai_chunk_usage(&want, &c, &u);
  pd_buf_appends(&want, "data: [DONE]\n\n");
  assert_buf_equal(&got, &want);
  pd_buf_free(&got);
  pd_buf_free(&want);
}

static void test_final(void **state) {
  (void)state;
  pd_result_t res;
  memset(&res, 0, sizeof res);
  res.content = "answer";
  res.content_len = 6;
  res.reasoning = "thought";
  res.reasoning_len = 7;
  res.finish_reason = "stop";
  res.usage.prompt_tokens = 3;
  pd_buf_t got, want;
  pd_buf_init(&got);
  pd_buf_init(&want);
  pd_api_resp_t r = api_resp("chatcmpl-abc", PD_REASONING_INLINE, 1, 0);
  assert_int_equal(pd_chat_api.final(&got, &r, &res, 1), 0);
  pd_openai_completion(&want, r.id, r.created, r.model, r.reasoning, &res, 1);
  assert_buf_equal(&got, &want);
  pd_buf_free(&got);
  pd_buf_free(&want);
}

static void test_error_event(void **state) {
  (void)state;
  pd_api_resp_t r = api_resp("chatcmpl-abc", PD_REASONING_FIELD, 1, 0);
  pd_buf_t got, want;
  pd_buf_init(&got);
  pd_buf_init(&want);
  const char *up = "{ \"error\" : { \"message\" : \"quota\" } }";
  pd_chat_api.error_event(&got, &r, up, strlen(up), "m", "t", "c");
  const char *compact = "data: {\"error\":{\"message\":\"quota\"}}\n\n";
  assert_int_equal(got.len, strlen(compact));
  assert_memory_equal(pd_buf_data(&got), compact, got.len);

  pd_buf_reset(&got);
  pd_chat_api.error_event(&got, &r, "not json", 8, "m", "t", "c");
  assert_int_equal(got.len, 10);
  assert_memory_equal(pd_buf_data(&got), "data: {}\n\n", 10);

  pd_buf_reset(&got);
  pd_chat_api.error_event(&got, &r, NULL, 0, "broke", "upstream_error", "upstream_error");
  pd_openai_chunk_error(&want, "broke", "upstream_error", "upstream_error");
  assert_buf_equal(&got, &want);
  pd_buf_free(&got);
  pd_buf_free(&want);
}

/* SPEC section 5: an earlier assistant message's thinking fields and leading inline block go,
 * its answer stays; other roles and a block that is not leading or not closed are kept. */
static void test_strip_history(void **state) {
  (void)state;
  json_t *m = J(
      "[{\"role\":\"user\",\"content\":\"<think>u</think>q\",\"reasoning\":\"r\"},"
      "{\"role\":\"assistant\",\"content\":\"<think>\\nold\\n</think>\\n\\nA1\","
      "\"reasoning_content\":\"old\",\"reasoning\":\"old\"},"
      "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"<think>x</think>A2\"}]},"
      "{\"role\":\"assistant\",\"content\":\"A3 <think>kept</think>\"},"
      "{\"role\":\"assistant\",\"content\":\"<think>unclosed\"},"
      "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[]}]");
  assert_int_equal(pd_api_strip_history(m), 2);
  char *s = json_dumps(m, JSON_COMPACT);
  assert_string_equal(s,
                      "[{\"role\":\"user\",\"content\":\"<think>u</think>q\",\"reasoning\":\"r\"},"
                      "{\"role\":\"assistant\",\"content\":\"A1\"},"
                      "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"A2\"}]},"
                      "{\"role\":\"assistant\",\"content\":\"A3 <think>kept</think>\"},"
                      "{\"role\":\"assistant\",\"content\":\"<think>unclosed\"},"
                      "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[]}]");
  free(s);
  assert_int_equal(pd_api_strip_history(m), 0); /* nothing left to strip */
  json_decref(m);
  assert_int_equal(pd_api_strip_history(NULL), 0);

  /* Through the chat table: stripped, and then the bytes are no longer the client's. */
  json_t *body = J("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},"
                   "{\"role\":\"assistant\",\"content\":\"b\",\"reasoning_content\":\"t\"},"
                   "{\"role\":\"user\",\"content\":\"c\"}]}");
  pd_api_req_t q;
  pd_api_resp_t r0 = {0};
  assert_int_equal(pd_chat_api.request(&body, &q, &r0), 0);
  assert_false(q.verbatim);
  assert_null(
      json_object_get(json_array_get(json_object_get(body, "messages"), 1), "reasoning_content"));
  json_decref(body);
}

/* reasoning_field (SPEC section 6): the field display's thinking under the route's name(s), in
 * messages and in deltas; `both` writes the two names in one delta with the same text. */
static void test_reasoning_field(void **state) {
  (void)state;
  pd_api_resp_t r = api_resp("chatcmpl-abc", PD_REASONING_FIELD, 1, 0);
  pd_api_choice_t ch;
  memset(&ch, 0, sizeof ch);
  pd_buf_t got;
  pd_buf_init(&got);
  pd_out_t t = api_out(PD_OUT_THINK, "hmm");
  r.reasoning_field = PD_RFIELD_REASONING;
  pd_chat_api.delta(&got, &r, &ch, &t);
  assert_non_null(strstr(pd_buf_data(&got), "\"delta\":{\"reasoning\":\"hmm\"}"));
  pd_buf_reset(&got);
  r.reasoning_field = PD_RFIELD_BOTH;
  pd_chat_api.delta(&got, &r, &ch, &t);
  assert_non_null(
      strstr(pd_buf_data(&got), "\"delta\":{\"reasoning_content\":\"hmm\",\"reasoning\":\"hmm\"}"));
  assert_null(strstr(strstr(pd_buf_data(&got), "data: ") + 1, "data: ")); /* one chunk */

  pd_result_t res;
  memset(&res, 0, sizeof res);
  res.content = "answer";
  res.content_len = 6;
  res.reasoning = "thought";
  res.reasoning_len = 7;
  res.finish_reason = "stop";
  pd_buf_reset(&got);
  r.reasoning_field = PD_RFIELD_REASONING;
  assert_int_equal(pd_chat_api.final(&got, &r, &res, 1), 0);
  json_t *j = json_loadb(pd_buf_data(&got), got.len, 0, NULL);
  json_t *m = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "message");
  assert_string_equal(json_string_value(json_object_get(m, "reasoning")), "thought");
  assert_null(json_object_get(m, "reasoning_content"));
  json_decref(j);
  pd_buf_reset(&got);
  r.reasoning_field = PD_RFIELD_BOTH;
  assert_int_equal(pd_chat_api.final(&got, &r, &res, 1), 0);
  j = json_loadb(pd_buf_data(&got), got.len, 0, NULL);
  m = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "message");
  assert_string_equal(json_string_value(json_object_get(m, "reasoning")), "thought");
  assert_string_equal(json_string_value(json_object_get(m, "reasoning_content")), "thought");
  json_decref(j);
  pd_buf_free(&got);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_registry),
      cmocka_unit_test(test_request_options),
      cmocka_unit_test(test_request_refused),
      cmocka_unit_test(test_stream_start),
      cmocka_unit_test(test_inline_think_block),
      cmocka_unit_test(test_inline_closed_by_finish_and_tools),
      cmocka_unit_test(test_field_and_hidden),
      cmocka_unit_test(test_stream_end),
      cmocka_unit_test(test_final),
      cmocka_unit_test(test_error_event),
      cmocka_unit_test(test_strip_history),
      cmocka_unit_test(test_reasoning_field),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
