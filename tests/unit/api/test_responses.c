/* Unit tests of the Responses API front door (proxy/api/responses.c): the request translation
 * (every mapping and every 400), the response object in each display mode, and the event
 * stream (order, sequence numbers, the .added/.delta/.done of each item, completed,
 * incomplete, failed); and the api.h table over them (responses_api.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/responses.h"
#include "../../lib/api_test.h"
#define DIFF_FAIL(why) fail_msg("fast path: %s", why)
#include "../../lib/responses_diff.h"

/* The echo parts of a translated request as one JSON object (caller decrefs). */
static json_t *echo_of(const pd_responses_req_t *r) {
  pd_buf_t b;
  pd_buf_init(&b);
  pd_buf_appends(&b, "{");
  /* The parts in order, without the head's leading comma; each part starts with one. */
  const char *e = pd_buf_data(&r->echo);
  assert_true(r->echo_head > 0 && e[0] == ',' && e[r->echo_head] == ',');
  assert_true(r->echo_head + r->echo_mid < r->echo.len && e[r->echo_head + r->echo_mid] == ',');
  pd_buf_append(&b, e + 1, r->echo.len - 1);
  pd_buf_appends(&b, "}");
  json_t *j = json_loadb(pd_buf_data(&b), b.len, 0, NULL);
  if (!j)
    fail_msg("echo is not JSON: %.*s", (int)b.len, pd_buf_data(&b));
  pd_buf_free(&b);
  return j;
}

/* Translates text; expects success and returns the chat request (caller decrefs). */
static json_t *chat_of(const char *text, pd_responses_req_t *out) {
  json_t *body = J(text);
  pd_responses_error_t err;
  int rc = pd_responses_req_translate(body, "max_completion_tokens", out, &err);
  if (rc != 0)
    fail_msg("translate failed: %s (param %s)", err.message, err.param);
  json_decref(body);
  return json_incref(out->chat);
}

/* Expects a 400 naming param, with msg_part in the message. */
static void expect_400(const char *text, const char *param, const char *msg_part) {
  json_t *body = J(text);
  pd_responses_req_t out;
  pd_responses_error_t err;
  assert_int_equal(pd_responses_req_translate(body, NULL, &out, &err), -1);
  assert_null(out.chat);
  assert_string_equal(err.param, param);
  if (msg_part && !strstr(err.message, msg_part))
    fail_msg("message '%s' lacks '%s'", err.message, msg_part);
  json_decref(body);
}

/* ---- translation ---- */

static void test_string_input_and_instructions(void **state) {
  (void)state;
  pd_responses_req_t r;
  json_t *c = chat_of("{\"model\":\"m\",\"instructions\":\"be brief\",\"input\":\"hi\"}", &r);
  assert_json_eq(c, "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},"
                    "{\"role\":\"user\",\"content\":\"hi\"}]}");
  assert_int_equal(r.stream, 0);
  assert_int_equal(r.summary, 0);
  json_t *e = echo_of(&r);
  assert_json_eq(e, "{\"instructions\":\"be brief\",\"max_output_tokens\":null,"
                    "\"parallel_tool_calls\":true,\"previous_response_id\":null,\"reasoning\":{"
                    "\"effort\":null,\"summary\":null},\"store\":false,\"temperature\":null,"
                    "\"text\":{\"format\":{\"type\":\"text\"}},\"tool_choice\":\"auto\","
                    "\"tools\":[],\"top_p\":null,\"truncation\":\"disabled\",\"user\":null,"
                    "\"metadata\":{}}");
  json_decref(e);
  json_decref(c);
  pd_responses_req_free(&r);
}

static void test_items(void **state) {
  (void)state;
  pd_responses_req_t r;
  json_t *c = chat_of(
      "{\"model\":\"m\",\"input\":["
      "{\"role\":\"developer\",\"content\":\"rules\"},"
      "{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":"
      "\"look\"},{\"type\":\"input_image\",\"image_url\":\"data:x\",\"detail\":\"low\"}]},"
      "{\"type\":\"reasoning\",\"id\":\"rs_1\",\"summary\":[{\"type\":\"summary_text\",\"text\":"
      "\"old thoughts\"}]},"
      "{\"type\":\"message\",\"role\":\"assistant\",\"id\":\"msg_1\",\"status\":\"completed\","
      "\"content\":[{\"type\":\"output_text\",\"text\":\"<think>\\nold\\n</think>\\n\\nI will "
      "call\",\"annotations\":[]}]},"
      "{\"type\":\"function_call\",\"id\":\"fc_1\",\"call_id\":\"call_a\",\"name\":\"f\","
      "\"arguments\":\"{}\"},"
      "{\"type\":\"function_call\",\"call_id\":\"call_b\",\"name\":\"g\",\"arguments\":"
      "\"{\\\"x\\\":1}\"},"
      "{\"type\":\"function_call_output\",\"call_id\":\"call_a\",\"output\":\"1\"},"
      "{\"type\":\"function_call_output\",\"call_id\":\"call_b\",\"output\":[{\"type\":"
      "\"input_text\",\"text\":\"2\"}]}"
      "]}",
      &r);
  assert_json_eq(
      json_object_get(c, "messages"),
      "[{\"role\":\"system\",\"content\":\"rules\"},"
      "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"look\"},{\"type\":"
      "\"image_url\",\"image_url\":{\"url\":\"data:x\",\"detail\":\"low\"}}]},"
      "{\"role\":\"assistant\",\"content\":\"I will call\",\"tool_calls\":["
      "{\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":"
      "\"{}\"}},"
      "{\"id\":\"call_b\",\"type\":\"function\",\"function\":{\"name\":\"g\",\"arguments\":"
      "\"{\\\"x\\\":1}\"}}]},"
      "{\"role\":\"tool\",\"tool_call_id\":\"call_a\",\"content\":\"1\"},"
      "{\"role\":\"tool\",\"tool_call_id\":\"call_b\",\"content\":[{\"type\":\"text\",\"text\":"
      "\"2\"}]}]");
  json_decref(c);
  pd_responses_req_free(&r);
}

static void test_calls_without_text_and_think_kept_inside(void **state) {
  (void)state;
  pd_responses_req_t r;
  /* Calls after a tool message start a new assistant message; a <think> not at the start and
   * one never closed are the client's text and stay. */
  json_t *c =
      chat_of("{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":\"q\"},"
              "{\"type\":\"function_call\",\"call_id\":\"c1\",\"name\":\"f\",\"arguments\":\"{}\"},"
              "{\"type\":\"function_call_output\",\"call_id\":\"c1\",\"output\":\"r\"},"
              "{\"type\":\"function_call\",\"call_id\":\"c2\",\"name\":\"f\",\"arguments\":\"{}\"},"
              "{\"role\":\"assistant\",\"content\":\"a <think>x</think>\"},"
              "{\"role\":\"assistant\",\"content\":\"<think>open\"},"
              "{\"role\":\"assistant\",\"content\":\"<think>t</think>\\n\\n\\nkept\"}]}",
              &r);
  json_t *m = json_object_get(c, "messages");
  assert_int_equal(json_array_size(m), 7);
  assert_json_eq(json_array_get(m, 1),
                 "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\","
                 "\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}");
  assert_string_equal(json_string_value(json_object_get(json_array_get(m, 3), "role")),
                      "assistant");
  assert_string_equal(json_string_value(json_object_get(json_array_get(m, 4), "content")),
                      "a <think>x</think>");
  assert_string_equal(json_string_value(json_object_get(json_array_get(m, 5), "content")),
                      "<think>open");
  assert_string_equal(json_string_value(json_object_get(json_array_get(m, 6), "content")),
                      "\nkept");
  json_decref(c);
  pd_responses_req_free(&r);
}

static void test_fields(void **state) {
  (void)state;
  pd_responses_req_t r;
  json_t *c = chat_of(
      "{\"model\":\"m\",\"input\":\"q\",\"stream\":true,\"max_output_tokens\":50,"
      "\"temperature\":0.5,\"top_p\":1,\"user\":\"u\",\"metadata\":{\"k\":\"v\"},"
      "\"safety_identifier\":\"s\",\"seed\":7,\"service_tier\":\"auto\",\"prompt_cache_key\":"
      "\"pk\",\"top_logprobs\":2,\"store\":true,\"include\":[\"reasoning.encrypted_content\"],"
      "\"truncation\":\"auto\",\"unknown_field\":1,\"ponder\":{\"rounds\":2},"
      "\"reasoning\":{\"effort\":\"high\",\"summary\":\"auto\"},"
      "\"parallel_tool_calls\":false,\"tool_choice\":{\"type\":\"function\",\"name\":\"f\"},"
      "\"tools\":[{\"type\":\"function\",\"name\":\"f\",\"description\":\"d\",\"parameters\":"
      "{\"type\":\"object\"},\"strict\":true}],"
      "\"text\":{\"format\":{\"type\":\"json_schema\",\"name\":\"S\",\"schema\":{\"type\":"
      "\"object\"},\"strict\":true,\"description\":\"dd\"},\"verbosity\":\"low\"}}",
      &r);
  assert_json_eq(
      c, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"q\"}],"
         "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"description\":\"d\","
         "\"parameters\":{\"type\":\"object\"},\"strict\":true}}],"
         "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"f\"}},"
         "\"parallel_tool_calls\":false,\"verbosity\":\"low\","
         "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"S\","
         "\"schema\":{\"type\":\"object\"},\"strict\":true,\"description\":\"dd\"}},"
         "\"max_completion_tokens\":50,\"reasoning_effort\":\"high\",\"temperature\":0.5,"
         "\"top_p\":1,\"user\":\"u\",\"metadata\":{\"k\":\"v\"},\"safety_identifier\":\"s\","
         "\"seed\":7,\"service_tier\":\"auto\",\"prompt_cache_key\":\"pk\",\"top_logprobs\":2,"
         "\"logprobs\":true,\"ponder\":{\"rounds\":2},\"stream\":true}");
  assert_int_equal(r.stream, 1);
  assert_int_equal(r.summary, 1);
  json_t *e = echo_of(&r);
  assert_json_eq(json_object_get(e, "reasoning"), "{\"effort\":\"high\",\"summary\":\"auto\"}");
  assert_json_eq(json_object_get(e, "tool_choice"), "{\"type\":\"function\",\"name\":\"f\"}");
  assert_int_equal(json_integer_value(json_object_get(e, "max_output_tokens")), 50);
  json_decref(e);
  json_decref(c);
  pd_responses_req_free(&r);
}

static void test_tool_choice_forms_and_formats(void **state) {
  (void)state;
  pd_responses_req_t r;
  json_t *c = chat_of("{\"model\":\"m\",\"input\":\"q\",\"tool_choice\":\"required\","
                      "\"tools\":[{\"type\":\"function\",\"name\":\"f\"}],"
                      "\"text\":{\"format\":{\"type\":\"json_object\"}}}",
                      &r);
  assert_string_equal(json_string_value(json_object_get(c, "tool_choice")), "required");
  assert_json_eq(json_object_get(c, "response_format"), "{\"type\":\"json_object\"}");
  json_decref(c);
  pd_responses_req_free(&r);
  c = chat_of("{\"model\":\"m\",\"input\":\"q\",\"tool_choice\":{\"type\":\"allowed_tools\","
              "\"mode\":\"auto\",\"tools\":[{\"type\":\"function\",\"name\":\"f\"}]},"
              "\"tools\":[{\"type\":\"function\",\"name\":\"f\"}],"
              "\"text\":{\"format\":{\"type\":\"text\"}}}",
              &r);
  assert_json_eq(json_object_get(c, "tool_choice"),
                 "{\"type\":\"allowed_tools\",\"allowed_tools\":{\"mode\":\"auto\",\"tools\":"
                 "[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}}");
  assert_null(json_object_get(c, "response_format"));
  json_decref(c);
  pd_responses_req_free(&r);
  /* Without tools, tool_choice and parallel_tool_calls are not sent (a chat upstream refuses
   * them); an empty tools array sends no tools. */
  c = chat_of("{\"model\":\"m\",\"input\":\"q\",\"tool_choice\":\"none\",\"tools\":[],"
              "\"parallel_tool_calls\":true,\"max_output_tokens\":null}",
              &r);
  assert_null(json_object_get(c, "tool_choice"));
  assert_null(json_object_get(c, "parallel_tool_calls"));
  assert_null(json_object_get(c, "tools"));
  json_decref(c);
  pd_responses_req_free(&r);
  /* The default token limit name. */
  json_t *body = J("{\"model\":\"m\",\"input\":\"q\",\"max_output_tokens\":9}");
  pd_responses_error_t err;
  assert_int_equal(pd_responses_req_translate(body, NULL, &r, &err), 0);
  assert_int_equal(json_integer_value(json_object_get(r.chat, "max_tokens")), 9);
  pd_responses_req_free(&r);
  json_decref(body);
}

static void test_errors(void **state) {
  (void)state;
  const char *st = "ponder is stateless: send the whole conversation in input";
  expect_400("[]", "", "JSON object");
  expect_400("{\"model\":\"m\",\"input\":\"q\",\"previous_response_id\":\"resp_1\"}",
             "previous_response_id", st);
  expect_400("{\"model\":\"m\",\"input\":\"q\",\"conversation\":\"conv_1\"}", "conversation", st);
  expect_400("{\"model\":\"m\",\"input\":\"q\",\"background\":true}", "background", st);
  expect_400("{\"model\":\"m\",\"input\":\"q\",\"background\":1}", "background", "boolean");
  expect_400("{\"input\":\"q\"}", "model", "model");
  expect_400("{\"model\":1,\"input\":\"q\"}", "model", "string");
  expect_400("{\"model\":\"m\"}", "input", "Missing required parameter: 'input'");
  expect_400("{\"model\":\"m\",\"input\":[]}", "input", "Missing");
  expect_400("{\"model\":\"m\",\"input\":[{\"type\":\"reasoning\",\"summary\":[]}]}", "input",
             "Missing");
  expect_400("{\"model\":\"m\",\"input\":5}", "input", "string or an array");
  expect_400("{\"model\":\"m\",\"input\":[5]}", "input", "input[0]");
  expect_400("{\"model\":\"m\",\"input\":[{\"type\":\"item_reference\",\"id\":\"msg_1\"}]}",
             "input", "'item_reference'");
  expect_400("{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":\"a\"},"
             "{\"type\":\"web_search_call\"}]}",
             "input", "'web_search_call' (input[1])");
  expect_400("{\"model\":\"m\",\"input\":[{\"type\":7}]}", "input", "input[0].type");
  expect_400("{\"model\":\"m\",\"input\":[{\"content\":\"x\"}]}", "input", "role");
  expect_400("{\"model\":\"m\",\"input\":[{\"role\":\"tool\",\"content\":\"x\"}]}", "input",
             "'tool'");
  expect_400("{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":5}]}", "input", "content");
  expect_400("{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":"
             "\"input_video\"}]}]}",
             "input", "'input_video'");
  expect_400("{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":"
             "\"input_text\",\"text\":1}]}]}",
             "input", "text");
  expect_400("{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":"
             "\"input_image\",\"file_id\":\"file_1\"}]}]}",
             "input", "stateless");
  expect_400("{\"model\":\"m\",\"input\":[{\"role\":\"assistant\",\"content\":[{\"type\":"
             "\"input_image\",\"image_url\":\"x\"}]}]}",
             "input", "assistant");
  expect_400("{\"model\":\"m\",\"input\":[{\"type\":\"function_call\",\"name\":\"f\","
             "\"arguments\":\"{}\"}]}",
             "input", "call_id");
  expect_400("{\"model\":\"m\",\"input\":[{\"type\":\"function_call_output\",\"call_id\":\"c\"}]}",
             "input", "output");
  expect_400("{\"model\":\"m\",\"input\":\"q\",\"tools\":{}}", "tools", "array");
  expect_400("{\"model\":\"m\",\"input\":\"q\",\"tools\":[{\"type\":\"web_search\"}]}", "tools",
             "'web_search'");
  expect_400("{\"model\":\"m\",\"input\":\"q\",\"tools\":[{\"type\":\"function\",\"name\":\"f\"},"
             "{\"type\":\"mcp\",\"server_label\":\"x\"}]}",
             "tools", "'mcp' (tools[1])");
  expect_400("{\"model\":\"m\",\"input\":\"q\",\"tools\":[{\"type\":\"function\"}]}", "tools",
             "name");
  expect_400("{\"model\":\"m\",\"input\":\"q\",\"tools\":[\"f\"]}", "tools", "tools[0]");
  expect_400("{\"model\":\"m\",\"input\":\"q\",\"tool_choice\":\"sometimes\"}", "tool_choice",
             "'sometimes'");
  expect_400("{\"model\":\"m\",\"input\":\"q\",\"tool_choice\":{\"type\":\"web_search_preview\"}}",
             "tool_choice", "'web_search_preview'");
  expect_400("{\"model\":\"m\",\"input\":\"q\",\"tool_choice\":{\"type\":\"function\"}}",
             "tool_choice", "name");
  expect_400("{\"model\":\"m\",\"input\":\"q\",\"tool_choice\":3}", "tool_choice", "type");
  expect_400("{\"model\":\"m\",\"input\":\"q\",\"text\":\"json\"}", "text", "object");
  expect_400("{\"model\":\"m\",\"input\":\"q\",\"text\":{\"format\":\"json\"}}", "text.format",
             "object");
  expect_400("{\"model\":\"m\",\"input\":\"q\",\"text\":{\"format\":{\"type\":\"yaml\"}}}",
             "text.format.type", "'yaml'");
  expect_400("{\"model\":\"m\",\"input\":\"q\",\"text\":{\"format\":{\"type\":\"json_schema\","
             "\"schema\":{}}}}",
             "text.format.name", "name");
  expect_400("{\"model\":\"m\",\"input\":\"q\",\"text\":{\"format\":{\"type\":\"json_schema\","
             "\"name\":\"n\"}}}",
             "text.format.schema", "schema");
  expect_400("{\"model\":\"m\",\"input\":\"q\",\"text\":{\"verbosity\":1}}", "text.verbosity",
             "string");
  expect_400("{\"model\":\"m\",\"input\":\"q\",\"max_output_tokens\":\"5\"}", "max_output_tokens",
             "integer");
  expect_400("{\"model\":\"m\",\"input\":\"q\",\"max_output_tokens\":0}", "max_output_tokens",
             "at least 1");
  expect_400("{\"model\":\"m\",\"input\":\"q\",\"temperature\":\"hot\"}", "temperature", "number");
  expect_400("{\"model\":\"m\",\"input\":\"q\",\"top_p\":[]}", "top_p", "number");
  expect_400("{\"model\":\"m\",\"input\":\"q\",\"stream\":\"yes\"}", "stream", "boolean");
  expect_400("{\"model\":\"m\",\"input\":\"q\",\"store\":1}", "store", "boolean");
  expect_400("{\"model\":\"m\",\"input\":\"q\",\"include\":\"x\"}", "include", "array");
  expect_400("{\"model\":\"m\",\"input\":\"q\",\"user\":5}", "user", "string");
  expect_400("{\"model\":\"m\",\"input\":\"q\",\"metadata\":[]}", "metadata", "object");
  expect_400("{\"model\":\"m\",\"input\":\"q\",\"instructions\":[]}", "instructions", "string");
  expect_400("{\"model\":\"m\",\"input\":\"q\",\"parallel_tool_calls\":\"no\"}",
             "parallel_tool_calls", "boolean");
  expect_400("{\"model\":\"m\",\"input\":\"q\",\"reasoning\":\"high\"}", "reasoning", "object");
  expect_400("{\"model\":\"m\",\"input\":\"q\",\"reasoning\":{\"effort\":3}}", "reasoning.effort",
             "string");
  expect_400("{\"model\":\"m\",\"input\":\"q\",\"reasoning\":{\"summary\":\"long\"}}",
             "reasoning.summary", "auto");
  /* A long type name is quoted cut. */
  char big[600];
  snprintf(big, sizeof big, "{\"model\":\"m\",\"input\":[{\"type\":\"%0400d\"}]}", 0);
  expect_400(big, "input", "0000");
  /* Nulls count as absent, and stateless fields set to null or false are fine. */
  pd_responses_req_t r;
  json_t *c = chat_of("{\"model\":\"m\",\"input\":\"q\",\"previous_response_id\":null,"
                      "\"conversation\":null,\"background\":false,\"tools\":null,\"text\":null,"
                      "\"reasoning\":null,\"instructions\":null,\"store\":false}",
                      &r);
  assert_int_equal(json_array_size(json_object_get(c, "messages")), 1);
  json_decref(c);
  pd_responses_req_free(&r);
}

/* ---- response object and events ---- */

static uint64_t counter_rnd(void *ud) {
  return ++*(uint64_t *)ud;
}

typedef struct fixture {
  pd_responses_req_t req;
  uint64_t ctr;
  pd_responses_t *w;
  pd_buf_t out;
} fixture_t;

static void fx_init(fixture_t *f, const char *body, pd_reasoning_t display, long max_held) {
  memset(f, 0, sizeof *f);
  json_t *b = J(body);
  pd_responses_error_t err;
  assert_int_equal(pd_responses_req_translate(b, NULL, &f->req, &err), 0);
  json_decref(b);
  pd_responses_opts_t o = {"resp_test", 100,         "client-model", display,
                           &f->req,     counter_rnd, &f->ctr,        max_held};
  f->w = pd_responses_new(&o);
  assert_non_null(f->w);
  pd_buf_init(&f->out);
}

static void fx_free(fixture_t *f) {
  pd_responses_free(f->w);
  pd_responses_req_free(&f->req);
  pd_buf_free(&f->out);
}

static json_t *body_of(fixture_t *f, const pd_result_t *r) {
  assert_int_equal(pd_responses_body(f->w, &f->out, r), 0);
  json_error_t e;
  json_t *j = json_loadb(pd_buf_data(&f->out), f->out.len, 0, &e);
  if (!j)
    fail_msg("not JSON: %s", pd_buf_data(&f->out));
  return j;
}

static pd_result_t result(const char *content, const char *reasoning, json_t *calls,
                          const char *finish) {
  pd_result_t r;
  memset(&r, 0, sizeof r);
  r.content = content;
  r.content_len = strlen(content);
  r.reasoning = reasoning;
  r.reasoning_len = strlen(reasoning);
  r.tool_calls = calls;
  r.finish_reason = finish;
  r.usage = (pd_usage_t){10, 30, 20};
  return r;
}

static void test_body_field(void **state) {
  (void)state;
  fixture_t f;
  fx_init(&f, "{\"model\":\"m\",\"input\":\"q\",\"instructions\":\"sys\",\"temperature\":0.2}",
          PD_REASONING_FIELD, 0);
  pd_result_t r = result("42", "step one\nWait\nstep two", NULL, "stop");
  json_t *j = body_of(&f, &r);
  assert_string_equal(json_string_value(json_object_get(j, "id")), "resp_test");
  assert_string_equal(json_string_value(json_object_get(j, "object")), "response");
  assert_string_equal(json_string_value(json_object_get(j, "status")), "completed");
  assert_string_equal(json_string_value(json_object_get(j, "model")), "client-model");
  assert_int_equal(json_integer_value(json_object_get(j, "created_at")), 100);
  assert_true(json_integer_value(json_object_get(j, "completed_at")) >= 100);
  assert_true(json_is_null(json_object_get(j, "error")));
  assert_true(json_is_null(json_object_get(j, "incomplete_details")));
  assert_true(json_is_null(json_object_get(j, "previous_response_id")));
  assert_true(json_is_false(json_object_get(j, "store")));
  assert_string_equal(json_string_value(json_object_get(j, "instructions")), "sys");
  assert_string_equal(json_string_value(json_object_get(j, "truncation")), "disabled");
  assert_true(json_real_value(json_object_get(j, "temperature")) == 0.2);
  json_t *out = json_object_get(j, "output");
  assert_int_equal(json_array_size(out), 2);
  json_t *rs = json_array_get(out, 0);
  assert_string_equal(json_string_value(json_object_get(rs, "type")), "reasoning");
  assert_int_equal(strncmp(json_string_value(json_object_get(rs, "id")), "rs_", 3), 0);
  assert_json_eq(json_object_get(rs, "content"),
                 "[{\"type\":\"reasoning_text\",\"text\":\"step one\\nWait\\nstep two\"}]");
  assert_json_eq(json_object_get(rs, "summary"), "[]");
  assert_string_equal(json_string_value(json_object_get(rs, "status")), "completed");
  json_t *msg = json_array_get(out, 1);
  assert_string_equal(json_string_value(json_object_get(msg, "type")), "message");
  assert_int_equal(strncmp(json_string_value(json_object_get(msg, "id")), "msg_", 4), 0);
  assert_string_equal(json_string_value(json_object_get(msg, "role")), "assistant");
  assert_string_equal(json_string_value(json_object_get(msg, "status")), "completed");
  assert_json_eq(json_object_get(msg, "content"),
                 "[{\"type\":\"output_text\",\"text\":\"42\",\"annotations\":[],\"logprobs\":[]}]");
  assert_json_eq(json_object_get(j, "usage"),
                 "{\"input_tokens\":10,\"input_tokens_details\":{\"cached_tokens\":0},"
                 "\"output_tokens\":30,\"output_tokens_details\":{\"reasoning_tokens\":20},"
                 "\"total_tokens\":40}");
  json_decref(j);
  fx_free(&f);
}

static void test_body_summary_inline_hidden(void **state) {
  (void)state;
  fixture_t f;
  fx_init(&f, "{\"model\":\"m\",\"input\":\"q\",\"reasoning\":{\"summary\":\"concise\"}}",
          PD_REASONING_FIELD, 0);
  pd_result_t r = result("42", "thought", NULL, "stop");
  json_t *j = body_of(&f, &r);
  json_t *rs = json_array_get(json_object_get(j, "output"), 0);
  assert_json_eq(json_object_get(rs, "summary"),
                 "[{\"type\":\"summary_text\",\"text\":\"thought\"}]");
  assert_json_eq(json_object_get(rs, "content"),
                 "[{\"type\":\"reasoning_text\",\"text\":\"thought\"}]");
  json_decref(j);
  fx_free(&f);

  fx_init(&f, "{\"model\":\"m\",\"input\":\"q\"}", PD_REASONING_INLINE, 0);
  j = body_of(&f, &r);
  json_t *out = json_object_get(j, "output");
  assert_int_equal(json_array_size(out), 1);
  json_t *part = json_array_get(json_object_get(json_array_get(out, 0), "content"), 0);
  assert_string_equal(json_string_value(json_object_get(part, "text")),
                      "<think>\nthought\n</think>\n\n42");
  json_decref(j);
  fx_free(&f);

  fx_init(&f, "{\"model\":\"m\",\"input\":\"q\"}", PD_REASONING_HIDDEN, 0);
  j = body_of(&f, &r);
  out = json_object_get(j, "output");
  assert_int_equal(json_array_size(out), 1);
  assert_string_equal(json_string_value(json_object_get(json_array_get(out, 0), "type")),
                      "message");
  json_decref(j);
  fx_free(&f);

  /* No thinking at all (rounds 0): inline writes no empty <think> block, field no item. */
  fx_init(&f, "{\"model\":\"m\",\"input\":\"q\"}", PD_REASONING_INLINE, 0);
  pd_result_t r0 = result("plain", "", NULL, "stop");
  j = body_of(&f, &r0);
  part = json_array_get(json_object_get(json_array_get(json_object_get(j, "output"), 0), "content"),
                        0);
  assert_string_equal(json_string_value(json_object_get(part, "text")), "plain");
  json_decref(j);
  fx_free(&f);
  fx_init(&f, "{\"model\":\"m\",\"input\":\"q\"}", PD_REASONING_FIELD, 0);
  j = body_of(&f, &r0);
  assert_int_equal(json_array_size(json_object_get(j, "output")), 1);
  json_decref(j);
  fx_free(&f);
}

static void test_body_tool_calls_and_incomplete(void **state) {
  (void)state;
  fixture_t f;
  fx_init(&f,
          "{\"model\":\"m\",\"input\":\"q\",\"tools\":[{\"type\":\"function\",\"name\":\"f\"}]}",
          PD_REASONING_FIELD, 0);
  json_t *calls = J("[{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"f\","
                    "\"arguments\":\"{\\\"a\\\":1}\"}},{\"type\":\"function\",\"function\":{"
                    "\"name\":\"g\",\"arguments\":\"{}\"}}]");
  pd_result_t r = result("", "why", calls, "tool_calls");
  json_t *j = body_of(&f, &r);
  json_t *out = json_object_get(j, "output");
  assert_int_equal(json_array_size(out), 3); /* reasoning, no message (only calls), 2 calls */
  json_t *c0 = json_array_get(out, 1), *c1 = json_array_get(out, 2);
  assert_string_equal(json_string_value(json_object_get(c0, "type")), "function_call");
  assert_int_equal(strncmp(json_string_value(json_object_get(c0, "id")), "fc_", 3), 0);
  assert_string_equal(json_string_value(json_object_get(c0, "call_id")), "call_1");
  assert_string_equal(json_string_value(json_object_get(c0, "name")), "f");
  assert_string_equal(json_string_value(json_object_get(c0, "arguments")), "{\"a\":1}");
  assert_string_equal(json_string_value(json_object_get(c0, "status")), "completed");
  assert_int_equal(strncmp(json_string_value(json_object_get(c1, "call_id")), "call_", 5), 0);
  assert_string_equal(json_string_value(json_object_get(j, "status")), "completed");
  json_decref(j);
  json_decref(calls);
  fx_free(&f);

  fx_init(&f, "{\"model\":\"m\",\"input\":\"q\",\"max_output_tokens\":5}", PD_REASONING_FIELD, 0);
  pd_result_t r2 = result("cut sho", "", NULL, "length");
  j = body_of(&f, &r2);
  assert_string_equal(json_string_value(json_object_get(j, "status")), "incomplete");
  assert_json_eq(json_object_get(j, "incomplete_details"), "{\"reason\":\"max_output_tokens\"}");
  assert_int_equal(json_integer_value(json_object_get(j, "max_output_tokens")), 5);
  json_t *msg = json_array_get(json_object_get(j, "output"), 0);
  assert_string_equal(json_string_value(json_object_get(msg, "status")), "incomplete");
  json_decref(j);
  fx_free(&f);
}

/* ---- streams ---- */

/* The events of a stream, parsed: checks the framing (event line = data.type), that sequence
 * numbers count from 0, and that there is no [DONE]. Returns an array of the data objects. */
static json_t *events(const pd_buf_t *b) {
  json_t *arr = json_array();
  const char *p = b->len ? pd_buf_data(b) : "", *e = p + b->len;
  long seq = 0;
  assert_null(strstr(p, "[DONE]"));
  while (p < e) {
    if (*p == ':') { /* a comment line */
      p = strstr(p, "\n\n") + 2;
      continue;
    }
    assert_int_equal(strncmp(p, "event: ", 7), 0);
    const char *nl = strchr(p, '\n');
    char type[96];
    snprintf(type, sizeof type, "%.*s", (int)(nl - p - 7), p + 7);
    p = nl + 1;
    assert_int_equal(strncmp(p, "data: ", 6), 0);
    const char *end = strstr(p, "\n\n");
    assert_non_null(end);
    json_error_t err;
    json_t *d = json_loadb(p + 6, (size_t)(end - p - 6), 0, &err);
    if (!d)
      fail_msg("bad data: %.*s", (int)(end - p), p);
    assert_string_equal(json_string_value(json_object_get(d, "type")), type);
    assert_int_equal(json_integer_value(json_object_get(d, "sequence_number")), seq++);
    json_array_append_new(arr, d);
    p = end + 2;
  }
  return arr;
}

static const char *ev_type(const json_t *evs, size_t i) {
  return json_string_value(json_object_get(json_array_get(evs, i), "type"));
}

static void assert_types(const json_t *evs, const char *const *want, size_t n) {
  for (size_t i = 0; i < n || i < json_array_size(evs); i++) {
    const char *got = i < json_array_size(evs) ? ev_type(evs, i) : "(end)";
    const char *w = i < n ? want[i] : "(end)";
    if (strcmp(got, w))
      fail_msg("event %zu: got %s, want %s", i, got, w);
  }
}

static void emit(fixture_t *f, pd_out_kind_t kind, const char *text) {
  pd_out_t o = api_out(kind, text);
  assert_int_equal(pd_responses_emit(f->w, &f->out, &o), 0);
}

static void emit_calls(fixture_t *f, const char *json) {
  json_t *j = J(json);
  pd_out_t o = {PD_OUT_TOOL_CALLS, NULL, 0, j};
  assert_int_equal(pd_responses_emit(f->w, &f->out, &o), 0);
  json_decref(j);
}

static const pd_usage_t usage = {10, 30, 20};

static void test_stream_field(void **state) {
  (void)state;
  fixture_t f;
  fx_init(&f, "{\"model\":\"m\",\"input\":\"q\",\"stream\":true}", PD_REASONING_FIELD, 0);
  assert_int_equal(pd_responses_start(f.w, &f.out), 0);
  assert_int_equal(pd_responses_start(f.w, &f.out), 0); /* once */
  emit(&f, PD_OUT_THINK, "a");
  emit(&f, PD_OUT_THINK, "\nWait\n");
  emit(&f, PD_OUT_THINK, "b");
  emit(&f, PD_OUT_CONTENT, "4");
  emit(&f, PD_OUT_CONTENT, "");
  emit(&f, PD_OUT_CONTENT, "2");
  emit(&f, PD_OUT_FINISH, "stop");
  assert_int_equal(pd_responses_end(f.w, &f.out, &usage), 0);
  size_t before = f.out.len;
  emit(&f, PD_OUT_CONTENT, "late"); /* after the end: nothing */
  assert_int_equal(pd_responses_end(f.w, &f.out, &usage), 0);
  assert_int_equal(f.out.len, before);
  json_t *evs = events(&f.out);
  static const char *const want[] = {"response.created",
                                     "response.in_progress",
                                     "response.output_item.added",
                                     "response.content_part.added",
                                     "response.reasoning_text.delta",
                                     "response.reasoning_text.delta",
                                     "response.reasoning_text.delta",
                                     "response.reasoning_text.done",
                                     "response.content_part.done",
                                     "response.output_item.done",
                                     "response.output_item.added",
                                     "response.content_part.added",
                                     "response.output_text.delta",
                                     "response.output_text.delta",
                                     "response.output_text.done",
                                     "response.content_part.done",
                                     "response.output_item.done",
                                     "response.completed"};
  assert_types(evs, want, sizeof want / sizeof *want);
  json_t *created = json_object_get(json_array_get(evs, 0), "response");
  assert_string_equal(json_string_value(json_object_get(created, "status")), "in_progress");
  assert_json_eq(json_object_get(created, "output"), "[]");
  assert_true(json_is_null(json_object_get(created, "usage")));
  json_t *added = json_array_get(evs, 2);
  assert_int_equal(json_integer_value(json_object_get(added, "output_index")), 0);
  json_t *rs = json_object_get(added, "item");
  assert_string_equal(json_string_value(json_object_get(rs, "status")), "in_progress");
  const char *rs_id = json_string_value(json_object_get(rs, "id"));
  json_t *d = json_array_get(evs, 5);
  assert_string_equal(json_string_value(json_object_get(d, "item_id")), rs_id);
  assert_int_equal(json_integer_value(json_object_get(d, "content_index")), 0);
  assert_string_equal(json_string_value(json_object_get(d, "delta")), "\nWait\n");
  assert_string_equal(json_string_value(json_object_get(json_array_get(evs, 7), "text")),
                      "a\nWait\nb");
  json_t *msg_delta = json_array_get(evs, 12);
  assert_int_equal(json_integer_value(json_object_get(msg_delta, "output_index")), 1);
  assert_json_eq(json_object_get(msg_delta, "logprobs"), "[]");
  assert_string_equal(json_string_value(json_object_get(json_array_get(evs, 14), "text")), "42");
  json_t *done = json_object_get(json_array_get(evs, 16), "item");
  assert_string_equal(json_string_value(json_object_get(done, "status")), "completed");
  json_t *fin = json_object_get(json_array_get(evs, 17), "response");
  assert_string_equal(json_string_value(json_object_get(fin, "status")), "completed");
  assert_int_equal(json_array_size(json_object_get(fin, "output")), 2);
  assert_int_equal(
      json_integer_value(json_object_get(json_object_get(fin, "usage"), "total_tokens")), 40);
  assert_string_equal(
      json_string_value(json_object_get(
          json_array_get(
              json_object_get(json_array_get(json_object_get(fin, "output"), 1), "content"), 0),
          "text")),
      "42");
  assert_int_equal(pd_responses_seq(f.w), 18);
  json_decref(evs);
  fx_free(&f);
}

static void test_stream_summary(void **state) {
  (void)state;
  fixture_t f;
  fx_init(&f, "{\"model\":\"m\",\"input\":\"q\",\"reasoning\":{\"summary\":\"auto\"}}",
          PD_REASONING_FIELD, 0);
  emit(&f, PD_OUT_THINK, "t"); /* start implied */
  emit(&f, PD_OUT_CONTENT, "x");
  emit(&f, PD_OUT_FINISH, "stop");
  assert_int_equal(pd_responses_end(f.w, &f.out, &usage), 0);
  json_t *evs = events(&f.out);
  static const char *const want[] = {"response.created",
                                     "response.in_progress",
                                     "response.output_item.added",
                                     "response.reasoning_summary_part.added",
                                     "response.reasoning_summary_text.delta",
                                     "response.reasoning_summary_text.done",
                                     "response.reasoning_summary_part.done",
                                     "response.output_item.done",
                                     "response.output_item.added",
                                     "response.content_part.added",
                                     "response.output_text.delta",
                                     "response.output_text.done",
                                     "response.content_part.done",
                                     "response.output_item.done",
                                     "response.completed"};
  assert_types(evs, want, sizeof want / sizeof *want);
  json_t *pa = json_array_get(evs, 3);
  assert_int_equal(json_integer_value(json_object_get(pa, "summary_index")), 0);
  assert_json_eq(json_object_get(pa, "part"), "{\"type\":\"summary_text\",\"text\":\"\"}");
  assert_json_eq(json_object_get(json_array_get(evs, 6), "part"),
                 "{\"type\":\"summary_text\",\"text\":\"t\"}");
  json_t *item = json_object_get(json_array_get(evs, 7), "item");
  assert_json_eq(json_object_get(item, "summary"), "[{\"type\":\"summary_text\",\"text\":\"t\"}]");
  json_decref(evs);
  fx_free(&f);
}

static void test_stream_inline_and_hidden(void **state) {
  (void)state;
  fixture_t f;
  fx_init(&f, "{\"model\":\"m\",\"input\":\"q\"}", PD_REASONING_INLINE, 0);
  emit(&f, PD_OUT_THINK, "t");
  emit(&f, PD_OUT_CONTENT, "x");
  emit(&f, PD_OUT_FINISH, "stop");
  assert_int_equal(pd_responses_end(f.w, &f.out, &usage), 0);
  json_t *evs = events(&f.out);
  static const char *const want[] = {"response.created",           "response.in_progress",
                                     "response.output_item.added", "response.content_part.added",
                                     "response.output_text.delta", "response.output_text.delta",
                                     "response.output_text.delta", "response.output_text.delta",
                                     "response.output_text.done",  "response.content_part.done",
                                     "response.output_item.done",  "response.completed"};
  assert_types(evs, want, sizeof want / sizeof *want);
  assert_string_equal(json_string_value(json_object_get(json_array_get(evs, 8), "text")),
                      "<think>\nt\n</think>\n\nx");
  json_decref(evs);
  fx_free(&f);

  fx_init(&f, "{\"model\":\"m\",\"input\":\"q\"}", PD_REASONING_HIDDEN, 0);
  emit(&f, PD_OUT_THINK, "t");
  emit(&f, PD_OUT_CONTENT, "x");
  emit(&f, PD_OUT_FINISH, "stop");
  pd_buf_appends(&f.out, ": keep-alive\n\n"); /* the exchange's comment lines are fine */
  assert_int_equal(pd_responses_end(f.w, &f.out, &usage), 0);
  evs = events(&f.out);
  static const char *const want2[] = {"response.created",           "response.in_progress",
                                      "response.output_item.added", "response.content_part.added",
                                      "response.output_text.delta", "response.output_text.done",
                                      "response.content_part.done", "response.output_item.done",
                                      "response.completed"};
  assert_types(evs, want2, sizeof want2 / sizeof *want2);
  json_decref(evs);
  fx_free(&f);
}

static void test_stream_tool_calls(void **state) {
  (void)state;
  fixture_t f;
  fx_init(&f, "{\"model\":\"m\",\"input\":\"q\"}", PD_REASONING_FIELD, 0);
  emit(&f, PD_OUT_THINK, "t");
  emit(&f, PD_OUT_CONTENT, "let me");
  emit_calls(&f, "[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":"
                 "\"f\",\"arguments\":\"\"}}]");
  emit_calls(&f, "[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\"\"}}]");
  emit_calls(&f, "[{\"index\":0,\"function\":{\"arguments\":\":1}\"}}]");
  emit_calls(&f, "[{\"index\":1,\"id\":\"call_2\",\"function\":{\"name\":\"g\",\"arguments\":"
                 "\"{}\"}}]");
  emit(&f, PD_OUT_FINISH, "tool_calls");
  assert_int_equal(pd_responses_end(f.w, &f.out, &usage), 0);
  json_t *evs = events(&f.out);
  static const char *const want[] = {"response.created",
                                     "response.in_progress",
                                     "response.output_item.added",
                                     "response.content_part.added",
                                     "response.reasoning_text.delta",
                                     "response.reasoning_text.done",
                                     "response.content_part.done",
                                     "response.output_item.done",
                                     "response.output_item.added",
                                     "response.content_part.added",
                                     "response.output_text.delta",
                                     "response.output_text.done",
                                     "response.content_part.done",
                                     "response.output_item.done",
                                     "response.output_item.added",
                                     "response.function_call_arguments.delta",
                                     "response.function_call_arguments.delta",
                                     "response.function_call_arguments.done",
                                     "response.output_item.done",
                                     "response.output_item.added",
                                     "response.function_call_arguments.delta",
                                     "response.function_call_arguments.done",
                                     "response.output_item.done",
                                     "response.completed"};
  assert_types(evs, want, sizeof want / sizeof *want);
  json_t *added = json_object_get(json_array_get(evs, 14), "item");
  assert_string_equal(json_string_value(json_object_get(added, "type")), "function_call");
  assert_string_equal(json_string_value(json_object_get(added, "call_id")), "call_1");
  assert_string_equal(json_string_value(json_object_get(added, "name")), "f");
  assert_string_equal(json_string_value(json_object_get(added, "arguments")), "");
  assert_int_equal(json_integer_value(json_object_get(json_array_get(evs, 14), "output_index")), 2);
  json_t *ad = json_array_get(evs, 17);
  assert_string_equal(json_string_value(json_object_get(ad, "arguments")), "{\"a\":1}");
  assert_string_equal(json_string_value(json_object_get(ad, "name")), "f");
  json_t *fin = json_object_get(json_array_get(evs, 23), "response");
  json_t *out = json_object_get(fin, "output");
  assert_int_equal(json_array_size(out), 4);
  assert_string_equal(json_string_value(json_object_get(json_array_get(out, 3), "call_id")),
                      "call_2");
  assert_string_equal(json_string_value(json_object_get(json_array_get(out, 3), "arguments")),
                      "{}");
  json_decref(evs);
  fx_free(&f);
}

static void test_stream_incomplete(void **state) {
  (void)state;
  fixture_t f;
  fx_init(&f, "{\"model\":\"m\",\"input\":\"q\",\"max_output_tokens\":3}", PD_REASONING_FIELD, 0);
  emit(&f, PD_OUT_CONTENT, "abc");
  emit(&f, PD_OUT_FINISH, "length");
  assert_int_equal(pd_responses_end(f.w, &f.out, &usage), 0);
  json_t *evs = events(&f.out);
  size_t n = json_array_size(evs);
  assert_string_equal(ev_type(evs, n - 1), "response.incomplete");
  json_t *resp = json_object_get(json_array_get(evs, n - 1), "response");
  assert_string_equal(json_string_value(json_object_get(resp, "status")), "incomplete");
  assert_json_eq(json_object_get(resp, "incomplete_details"), "{\"reason\":\"max_output_tokens\"}");
  json_t *item = json_object_get(json_array_get(evs, n - 2), "item");
  assert_string_equal(json_string_value(json_object_get(item, "status")), "incomplete");
  json_decref(evs);
  fx_free(&f);
}

static void test_stream_failed(void **state) {
  (void)state;
  fixture_t f;
  fx_init(&f, "{\"model\":\"m\",\"input\":\"q\"}", PD_REASONING_FIELD, 0);
  emit(&f, PD_OUT_THINK, "t");
  assert_int_equal(pd_responses_fail(f.w, &f.out, "The upstream broke \xff off.", "upstream_error",
                                     "upstream_error"),
                   0);
  assert_int_equal(pd_responses_end(f.w, &f.out, &usage), 0); /* no-op after fail */
  json_t *evs = events(&f.out);
  size_t n = json_array_size(evs);
  assert_string_equal(ev_type(evs, n - 1), "response.failed");
  assert_string_equal(ev_type(evs, n - 2), "response.reasoning_text.delta");
  json_t *resp = json_object_get(json_array_get(evs, n - 1), "response");
  assert_string_equal(json_string_value(json_object_get(resp, "status")), "failed");
  assert_json_eq(
      json_object_get(resp, "error"),
      "{\"code\":\"upstream_error\",\"message\":\"The upstream broke \xef\xbf\xbd off.\"}");
  json_t *item = json_array_get(json_object_get(resp, "output"), 0);
  assert_string_equal(json_string_value(json_object_get(item, "status")), "incomplete");
  json_decref(evs);
  fx_free(&f);

  /* Before anything was emitted, and from an upstream's error body. */
  fx_init(&f, "{\"model\":\"m\",\"input\":\"q\"}", PD_REASONING_FIELD, 0);
  const char *body = "{\"error\":{\"message\":\"slow down\",\"type\":\"requests\",\"code\":"
                     "\"rate_limit_exceeded\"}}";
  assert_int_equal(pd_responses_fail_body(f.w, &f.out, body, strlen(body), "fallback",
                                          "upstream_error", "upstream_error"),
                   0);
  evs = events(&f.out);
  assert_int_equal(json_array_size(evs), 3);
  resp = json_object_get(json_array_get(evs, 2), "response");
  assert_json_eq(json_object_get(resp, "error"),
                 "{\"code\":\"rate_limit_exceeded\",\"message\":\"slow down\"}");
  json_decref(evs);
  fx_free(&f);

  fx_init(&f, "{\"model\":\"m\",\"input\":\"q\"}", PD_REASONING_FIELD, 0);
  assert_int_equal(
      pd_responses_fail_body(f.w, &f.out, "nope", 4, "fallback", "upstream_error", NULL), 0);
  evs = events(&f.out);
  resp = json_object_get(json_array_get(evs, 2), "response");
  assert_json_eq(json_object_get(resp, "error"),
                 "{\"code\":\"upstream_error\",\"message\":\"fallback\"}");
  json_decref(evs);
  fx_free(&f);
}

static void test_stream_held_bound(void **state) {
  (void)state;
  fixture_t f;
  /* An item counts 64 bytes besides its text. */
  fx_init(&f, "{\"model\":\"m\",\"input\":\"q\"}", PD_REASONING_FIELD, 64 + 8);
  emit(&f, PD_OUT_CONTENT, "12345");
  pd_out_t o = {PD_OUT_CONTENT, "6789", 4, NULL};
  assert_int_equal(pd_responses_emit(f.w, &f.out, &o), PD_RESPONSES_ETOOLARGE);
  assert_int_equal(pd_responses_fail(f.w, &f.out, "too large", "upstream_error", NULL), 0);
  json_t *evs = events(&f.out);
  assert_string_equal(ev_type(evs, json_array_size(evs) - 1), "response.failed");
  json_decref(evs);
  fx_free(&f);

  /* Endless new tool call indices with nothing in them are bounded too. */
  fx_init(&f, "{\"model\":\"m\",\"input\":\"q\"}", PD_REASONING_FIELD, 10000);
  int rc = 0, k;
  for (k = 0; k < 1000 && rc == 0; k++) {
    char buf[64];
    snprintf(buf, sizeof buf, "[{\"index\":%d,\"id\":\"c\"}]", k);
    json_t *j = J(buf);
    pd_out_t t = {PD_OUT_TOOL_CALLS, NULL, 0, j};
    rc = pd_responses_emit(f.w, &f.out, &t);
    json_decref(j);
  }
  assert_int_equal(rc, PD_RESPONSES_ETOOLARGE);
  assert_true(k < 200);
  fx_free(&f);

  /* Inline display: the closing "</think>" written at the end is held text too. Filling the
   * bound with thinking leaves no room for it: end says the response is too large (it used to
   * say -1, which the exchange reports as out of memory), and the API table maps it. */
  fx_init(&f, "{\"model\":\"m\",\"input\":\"q\"}", PD_REASONING_INLINE, 64 + 8 + 20);
  emit(&f, PD_OUT_THINK, "0123456789ab");
  pd_usage_t u = {1, 2, 0};
  assert_int_equal(pd_responses_end(f.w, &f.out, &u), PD_RESPONSES_ETOOLARGE);
  fx_free(&f);
}

/* A stream and the non-streamed body of the same outputs agree on the final response. */
static void test_stream_matches_body(void **state) {
  (void)state;
  pd_reasoning_t modes[] = {PD_REASONING_FIELD, PD_REASONING_INLINE, PD_REASONING_HIDDEN};
  for (int m = 0; m < 3; m++) {
    fixture_t s, b;
    fx_init(&s, "{\"model\":\"m\",\"input\":\"q\"}", modes[m], 0);
    fx_init(&b, "{\"model\":\"m\",\"input\":\"q\"}", modes[m], 0);
    emit(&s, PD_OUT_THINK, "th");
    emit(&s, PD_OUT_THINK, "ink");
    emit(&s, PD_OUT_CONTENT, "an");
    emit(&s, PD_OUT_CONTENT, "swer");
    emit_calls(&s,
               "[{\"index\":0,\"id\":\"c\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]");
    emit(&s, PD_OUT_FINISH, "tool_calls");
    assert_int_equal(pd_responses_end(s.w, &s.out, &usage), 0);
    json_t *evs = events(&s.out);
    json_t *fin = json_object_get(json_array_get(evs, json_array_size(evs) - 1), "response");
    json_t *calls = J("[{\"id\":\"c\",\"type\":\"function\",\"function\":{\"name\":\"f\","
                      "\"arguments\":\"{}\"}}]");
    pd_result_t r = result("answer", "think", calls, "tool_calls");
    json_t *whole = body_of(&b, &r);
    json_t *a = json_object_get(fin, "output"), *c = json_object_get(whole, "output");
    assert_int_equal(json_array_size(a), json_array_size(c));
    for (size_t i = 0; i < json_array_size(a); i++) {
      json_t *x = json_deep_copy(json_array_get(a, i)), *y = json_deep_copy(json_array_get(c, i));
      json_object_del(x, "id");
      json_object_del(y, "id");
      assert_true(json_equal(x, y));
      json_decref(x);
      json_decref(y);
    }
    assert_true(json_equal(json_object_get(fin, "usage"), json_object_get(whole, "usage")));
    json_decref(whole);
    json_decref(calls);
    json_decref(evs);
    fx_free(&s);
    fx_free(&b);
  }
}

/* ---- rounds 0: the plain call's reply read straight into the response ---- */

/* reply through pd_responses_from_reply, and through the engine's plain call (the path it
 * replaces) into pd_responses_body: the same bytes, the same usage, the same refusals. */
static void check_from_reply(const char *reply, pd_reasoning_t display, int want_rc) {
  fixture_t a, b;
  const char *req = "{\"model\":\"m\",\"input\":\"q\",\"reasoning\":{\"summary\":\"auto\"}}";
  fx_init(&a, req, display, 0);
  fx_init(&b, req, display, 0);
  pd_usage_t u;
  int rc = pd_responses_from_reply(a.w, &a.out, reply, strlen(reply), &u);
  if (rc != want_rc)
    fail_msg("rc %d, want %d for %s", rc, want_rc, reply);

  pd_policy_t pol;
  memset(&pol, 0, sizeof pol);
  pd_engine_opts_t o = {&pol, 0, "m", "max_tokens", 0, 0, 0};
  pd_engine_t *e = pd_engine_new(&o, b.req.chat);
  assert_non_null(e);
  pd_call_t call;
  assert_int_equal(pd_engine_next(e, &call), 1);
  free(call.body);
  json_t *j = pd_openai_load_reply(reply, strlen(reply));
  int erc = j ? pd_engine_on_response(e, j, NULL, NULL) : -1;
  json_decref(j);
  if (want_rc == PD_RESPONSES_EUNREADABLE) {
    assert_true(erc < 0);
    assert_int_equal(a.out.len, 0);
  } else {
    assert_int_equal(erc, 0);
    pd_result_t res;
    pd_engine_result(e, &res);
    assert_int_equal(pd_responses_body(b.w, &b.out, &res), 0);
    /* The ids come from the same counter; completed_at may tick between the two. */
    json_t *ja = J(pd_buf_data(&a.out)), *jb = J(pd_buf_data(&b.out));
    json_object_del(ja, "completed_at");
    json_object_del(jb, "completed_at");
    char *sa = json_dumps(ja, JSON_COMPACT), *sb = json_dumps(jb, JSON_COMPACT);
    if (strcmp(sa, sb))
      fail_msg("from_reply:\n%s\nengine:\n%s", sa, sb);
    free(sa);
    free(sb);
    json_decref(ja);
    json_decref(jb);
    assert_int_equal(u.prompt_tokens, res.usage.prompt_tokens);
    assert_int_equal(u.completion_tokens, res.usage.completion_tokens);
    assert_int_equal(u.reasoning_tokens, res.usage.reasoning_tokens);
  }
  pd_engine_free(e);
  fx_free(&a);
  fx_free(&b);
}

static void test_from_reply(void **state) {
  (void)state;
  static const char *const same[] = {
      /* thinking, escapes, tool calls, a cut answer, usage with reasoning tokens */
      "{\"id\":\"x\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":"
      "\"It is \\\"4\\\"\\n\\u00e9 \\ud83c\\udf89\",\"reasoning_content\":\"two \\\\ two\","
      "\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"add\","
      "\"arguments\":\"{\\\"a\\\":1}\"}},{\"type\":\"function\",\"function\":{}}]},"
      "\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":9,"
      "\"completion_tokens_details\":{\"reasoning_tokens\":4}}}",
      /* vLLM's "reasoning"; a non-string reasoning_content does not hide it */
      "{\"choices\":[{\"message\":{\"reasoning_content\":null,\"reasoning\":\"r\",\"content\":"
      "\"c\"}}]}",
      /* tool calls only: no message item; an empty list and a non-array are no calls */
      "{\"choices\":[{\"message\":{\"content\":null,\"tool_calls\":[{\"id\":\"c\",\"function\":{"
      "\"name\":\"f\",\"arguments\":\"{}\"}}]},\"finish_reason\":\"tool_calls\"}]}",
      "{\"choices\":[{\"message\":{\"content\":\"x\",\"tool_calls\":[]}}]}",
      "{\"choices\":[{\"message\":{\"content\":\"x\",\"tool_calls\":{\"a\":1}}}]}",
      /* repeated and escaped keys: the last, decoded */
      "{\"choices\":[{\"message\":{\"content\":\"a\"}}],\"choices\":[{\"message\":{\"content\":"
      "\"b\",\"c\\u006fntent\":\"c\"},\"message\":{\"content\":\"d\"},\"finish_reason\":7}],"
      "\"usage\":{\"prompt_tokens\":1},\"usage\":{\"completion_tokens\":2.5}}",
      /* usage that is not an object, negative reasoning tokens, no usage at all */
      "{\"choices\":[{\"message\":{\"content\":\"abcdefg\"}}],\"usage\":[1]}",
      "{\"choices\":[{\"message\":{\"content\":\"abc\"}}],\"usage\":{\"prompt_tokens\":2,"
      "\"completion_tokens\":3,\"completion_tokens_details\":{\"reasoning_tokens\":-1}}}",
      "{\"choices\":[{\"message\":5,\"finish_reason\":\"\"}]}",
      "{\"choices\":[{}],\"error\":{\"message\":\"but choices too\"}}",
  };
  for (size_t i = 0; i < sizeof same / sizeof *same; i++)
    for (int d = 0; d < 3; d++)
      check_from_reply(same[i], (pd_reasoning_t)d, 0);
  static const char *const refused[] = {
      "",
      "[]",
      "{\"choices\":[]}",
      "{\"choices\":[1]}",
      "{\"choices\":{}}",
      "{\"error\":{\"message\":\"no\"}}",
      "{\"choices\":[{}]",
      "{\"choices\":[{}]} x",
      "{\"choices\":[{\"message\":{\"content\":\"\\ud800\"}}]}",
  };
  for (size_t i = 0; i < sizeof refused / sizeof *refused; i++)
    check_from_reply(refused[i], PD_REASONING_FIELD, PD_RESPONSES_EUNREADABLE);
}

/* The table: registered for /responses, never relayed; request() translates in place, keeps
 * what the writers need in the response's state until release(), and its 400s name the param. */
static void test_api_table(void **state) {
  (void)state;
  assert_ptr_equal(pd_api_find("/responses", 10), &pd_responses_api);
  assert_string_equal(pd_responses_api.id_prefix, "resp_");
  assert_false(pd_responses_api.relay);
  /* the rounds-0 fast path: the scan and the body written from the client's bytes */
  assert_ptr_equal(pd_responses_api.scan, pd_responses_req_scan);
  assert_non_null(pd_responses_api.plain_final);
  assert_non_null(pd_responses_api.plain_body);
  {
    pd_api_resp_t fr = api_resp("", PD_REASONING_FIELD, 1, 0);
    fr.limit_param = "max_completion_tokens";
    static const char fb[] = "{\"model\":\"m\",\"input\":\"hi\",\"max_output_tokens\":9}";
    pd_buf_t up;
    pd_buf_init(&up);
    assert_int_equal(pd_responses_api.plain_body(fb, sizeof fb - 1, "up", &up, &fr), 0);
    assert_string_equal(pd_buf_str(&up), "{\"model\":\"up\",\"messages\":[{\"role\":\"user\","
                                         "\"content\":\"hi\"}],\"max_completion_tokens\":9}");
    static const char reply[] = "{\"choices\":[{\"message\":{\"content\":\"yo\"},"
                                "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":1,"
                                "\"completion_tokens\":2}}";
    pd_buf_t out;
    pd_buf_init(&out);
    pd_usage_t u = {0};
    assert_int_equal(pd_responses_api.plain_final(&out, &fr, reply, sizeof reply - 1, &u), 0);
    json_t *o = json_loadb(pd_buf_data(&out), out.len, 0, NULL);
    assert_non_null(o);
    assert_int_equal(json_integer_value(json_object_get(o, "max_output_tokens")), 9);
    json_decref(o);
    pd_responses_api.release(&fr);
    pd_buf_free(&out);
    pd_buf_reset(&up);
    /* a body it leaves to the tree path: nothing kept */
    static const char tb[] = "{\"model\":\"m\",\"input\":\"hi\",\"ponder\":{}}";
    pd_api_resp_t tr = api_resp("", PD_REASONING_FIELD, 1, 0);
    assert_int_equal(pd_responses_api.plain_body(tb, sizeof tb - 1, "up", &up, &tr), 1);
    pd_responses_api.release(&tr);
    pd_buf_free(&up);
  }

  pd_api_resp_t r = api_resp("", PD_REASONING_FIELD, 1, 0);
  r.limit_param = "max_completion_tokens";
  pd_api_req_t q;
  json_t *body = J("{\"model\":\"m\",\"input\":\"hi\",\"stream\":true,\"max_output_tokens\":9,"
                   "\"ponder\":{\"rounds\":1},\"reasoning\":{\"effort\":\"low\"}}");
  assert_int_equal(pd_responses_api.request(&body, &q, &r), 0);
  assert_true(q.stream);
  assert_false(q.verbatim);
  assert_string_equal(q.rounds_param, "ponder.rounds");
  assert_string_equal(q.effort_param, "reasoning.effort");
  assert_string_equal(json_string_value(json_object_get(
                          json_array_get(json_object_get(body, "messages"), 0), "content")),
                      "hi");
  assert_int_equal(json_integer_value(json_object_get(body, "max_completion_tokens")), 9);
  assert_string_equal(json_string_value(json_object_get(body, "reasoning_effort")), "low");

  /* The writers run on the kept request: the stream opens with the response's id. */
  snprintf(r.id, sizeof r.id, "resp_abc");
  r.model = "m";
  pd_buf_t out;
  pd_buf_init(&out);
  assert_int_equal(pd_responses_api.stream_start(&out, &r), 0);
  pd_out_t a = {PD_OUT_CONTENT, "42", 2, NULL};
  assert_int_equal(pd_responses_api.delta(&out, &r, NULL, &a), 0);
  assert_int_equal(pd_responses_api.finish(&out, &r, NULL, "stop"), 0);
  pd_usage_t u = {3, 4, 0};
  assert_int_equal(pd_responses_api.stream_end(&out, &r, &u), 0);
  assert_non_null(strstr(pd_buf_data(&out), "event: response.created"));
  assert_non_null(strstr(pd_buf_data(&out), "\"id\":\"resp_abc\""));
  assert_non_null(strstr(pd_buf_data(&out), "event: response.completed"));
  assert_null(strstr(pd_buf_data(&out), "[DONE]"));
  pd_buf_free(&out);
  pd_responses_api.release(&r);
  pd_responses_api.release(&r); /* idempotent */
  json_decref(body);

  body = J("{\"model\":\"m\",\"input\":\"hi\",\"previous_response_id\":\"resp_1\"}");
  memset(&r, 0, sizeof r);
  assert_int_equal(pd_responses_api.request(&body, &q, &r), -1);
  assert_string_equal(q.param, "previous_response_id");
  assert_non_null(strstr(q.msg, "stateless"));
  pd_responses_api.release(&r);
  json_decref(body);

  /* What the engine checks of a chat request holds for the translation: "stop", passed on, is
   * refused as chat refuses it. */
  static const char *const bad_stops[] = {"{\"model\":\"m\",\"input\":\"hi\",\"stop\":7}",
                                          "{\"model\":\"m\",\"input\":\"hi\",\"stop\":[\"a\",1]}"};
  for (size_t i = 0; i < 2; i++) {
    body = J(bad_stops[i]);
    memset(&r, 0, sizeof r);
    assert_int_equal(pd_responses_api.request(&body, &q, &r), -1);
    assert_string_equal(q.param, "stop");
    assert_string_equal(q.msg,
                        "Invalid type for 'stop': expected a string or an array of strings.");
    pd_responses_api.release(&r);
    json_decref(body);
  }
  body = J("{\"model\":\"m\",\"input\":\"hi\",\"stop\":[\"a\",\"b\"]}");
  memset(&r, 0, sizeof r);
  assert_int_equal(pd_responses_api.request(&body, &q, &r), 0);
  assert_true(json_is_array(json_object_get(body, "stop")));
  pd_responses_api.release(&r);
  json_decref(body);
}

/* ---- the rounds-0 fast path against the tree path ---- */

static int diff_s(const char *text) {
  int a = diff_fast(text, strlen(text), NULL, NULL);
  int b = diff_fast(text, strlen(text), "route-model", "max_completion_tokens");
  assert_int_equal(a, b);
  return a;
}

static void test_fast_hand(void **state) {
  (void)state;
  /* taken by the fast path */
  static const char *const fast[] = {
      "{\"model\":\"m\",\"input\":\"hi\"}",
      "{\"input\":\"hi\",\"model\":\"m\"}",
      " { \"model\" : \"m\" , \"input\" : \"a\\n\\\"b\\\" \\u00e9\\/\\ud83d\\ude00\" } ",
      "{\"model\":\"m\",\"instructions\":\"be brief\",\"input\":\"hi\"}",
      "{\"model\":\"m\",\"input\":\"hi\",\"instructions\":\"later\"}",
      "{\"model\":\"m\",\"instructions\":\"only\"}",
      "{\"model\":\"m\",\"instructions\":\"only\",\"input\":[]}",
      "{\"model\":\"m\",\"instructions\":\"\",\"input\":\"x\"}",
      "{\"model\":\"m\",\"input\":\"hi\",\"max_output_tokens\":100,\"temperature\":0.7,"
      "\"top_p\":1,\"user\":\"u1\",\"metadata\":{\"a\":\"b\",\"n\":[1,2.5,-0,1e2,true,null]},"
      "\"store\":false,\"stream\":false,\"background\":false,\"parallel_tool_calls\":false,"
      "\"include\":[],\"tools\":[],\"tool_choice\":\"auto\"}",
      "{\"model\":\"m\",\"input\":\"hi\",\"seed\":7,\"stop\":[\"a\",\"\\n\"],\"top_logprobs\":2,"
      "\"logit_bias\":{\"1\":-1},\"frequency_penalty\":0.5,\"presence_penalty\":-1E-3,"
      "\"service_tier\":\"auto\",\"prompt_cache_key\":\"k\",\"safety_identifier\":\"s\"}",
      "{\"model\":\"m\",\"input\":\"hi\",\"stop\":\"x\",\"top_logprobs\":0}",
      "{\"model\":\"m\",\"input\":\"hi\",\"temperature\":null,\"tools\":null,\"ponder\":null,"
      "\"reasoning\":null,\"text\":null,\"previous_response_id\":null}",
      "{\"model\":\"m\",\"input\":\"hi\",\"unknown\":{\"x\":[1,{\"y\":2}]},\"unknown\":3}",
      "{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":\"q\"}]}",
      "{\"model\":\"m\",\"input\":[{\"type\":\"message\",\"role\":\"developer\",\"content\":\"d\"},"
      "{\"role\":\"system\",\"content\":\"s\"},{\"content\":\"u\",\"role\":\"user\",\"id\":\"x\"}]"
      "}",
      "{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_text\","
      "\"text\":\"a\"},{\"text\":\"b\\t\",\"type\":\"text\"},{\"type\":\"output_text\",\"text\":"
      "\"\"}]}]}",
      "{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":[]}]}",
      "{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\","
      "\"content\":\"<think>old</think>\\n\\nanswer\"},{\"role\":\"user\",\"content\":\"q2\"}]}",
      "{\"model\":\"m\",\"input\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\","
      "\"text\":\"<think>a\"},{\"type\":\"output_text\",\"text\":\"b</think>c\"}]},"
      "{\"role\":\"user\",\"content\":\"q\"}]}",
      "{\"model\":\"m\",\"input\":[{\"role\":\"assistant\",\"content\":\"\\u003cthink>x</"
      "think>y\"},"
      "{\"role\":\"user\",\"content\":\"q\"}]}",
      "{\"model\":\"m\",\"input\":[{\"type\":\"reasoning\",\"id\":\"rs_1\",\"summary\":[{\"type\":"
      "\"summary_text\",\"text\":\"t\"}]},{\"role\":\"user\",\"content\":\"q\"}]}",
      "{\"model\":\"m\",\"instructions\":\"i\",\"input\":[{\"type\":\"reasoning\"}]}",
      "{\"model\":\"m\",\"input\":\"x\",\"metadata\":{}}",
      "{\"model\":\"m\",\"input\":\"x\",\"user\":\"\",\"temperature\":2,\"top_p\":0.0}",
      "{\"model\":\"m\",\"input\":\"x\"}\0",
  };
  for (size_t i = 0; i < sizeof fast / sizeof *fast; i++)
    if (diff_s(fast[i]) != DIFF_FAST)
      fail_msg("not taken: %s", fast[i]);
  /* the tree path decides: what it refuses, and what the fast path leaves to it */
  static const char *const tree[] = {
      "",
      "[]",
      "{\"model\":\"m\",\"input\":\"hi\"",
      "{\"model\":\"m\",\"input\":\"hi\"}x",
      "{\"input\":\"hi\"}",
      "{\"model\":1,\"input\":\"hi\"}",
      "{\"model\":\"m\\u0031\",\"input\":\"hi\"}",
      "{\"mod\\u0065l\":\"m\",\"input\":\"hi\"}",
      "{\"model\":\"m\",\"model\":\"n\",\"input\":\"hi\"}",
      "{\"model\":\"m\"}",
      "{\"model\":\"m\",\"input\":[]}",
      "{\"model\":\"m\",\"input\":7}",
      "{\"model\":\"m\",\"input\":\"hi\",\"max_output_tokens\":0}",
      "{\"model\":\"m\",\"input\":\"hi\",\"max_output_tokens\":1.5}",
      "{\"model\":\"m\",\"input\":\"hi\",\"temperature\":\"hot\"}",
      "{\"model\":\"m\",\"input\":\"hi\",\"user\":\"a\\u0062\"}",
      "{\"model\":\"m\",\"input\":\"hi\",\"user\":5}",
      "{\"model\":\"m\",\"input\":\"hi\",\"stream\":1}",
      "{\"model\":\"m\",\"input\":\"hi\",\"stream\":true}",
      "{\"stream\":true,\"model\":\"m\",\"input\":\"hi\"}",
      "{\"model\":\"m\",\"input\":\"hi\",\"background\":true}",
      "{\"model\":\"m\",\"input\":\"hi\",\"metadata\":[]}",
      "{\"model\":\"m\",\"input\":\"hi\",\"metadata\":{\"a\":1,\"a\":2}}",
      "{\"model\":\"m\",\"input\":\"hi\",\"metadata\":{\"\\u0061\":1}}",
      "{\"model\":\"m\",\"input\":\"hi\",\"include\":{}}",
      "{\"model\":\"m\",\"input\":\"hi\",\"ponder\":{\"rounds\":0}}",
      "{\"model\":\"m\",\"input\":\"hi\",\"reasoning\":{\"effort\":\"low\"}}",
      "{\"model\":\"m\",\"input\":\"hi\",\"text\":{\"format\":{\"type\":\"text\"}}}",
      "{\"model\":\"m\",\"input\":\"hi\",\"tools\":[{\"type\":\"function\",\"name\":\"f\"}]}",
      "{\"model\":\"m\",\"input\":\"hi\",\"tool_choice\":\"maybe\"}",
      "{\"model\":\"m\",\"input\":\"hi\",\"tool_choice\":{\"type\":\"function\",\"name\":\"f\"}}",
      "{\"model\":\"m\",\"input\":\"hi\",\"previous_response_id\":\"resp_1\"}",
      "{\"model\":\"m\",\"input\":\"hi\",\"conversation\":\"c\"}",
      "{\"model\":\"m\",\"input\":\"hi\",\"stop\":[1]}",
      "{\"model\":\"m\",\"input\":\"hi\",\"stop\":{}}",
      "{\"model\":\"m\",\"input\":[\"hi\"]}",
      "{\"model\":\"m\",\"input\":[{\"role\":\"tool\",\"content\":\"x\"}]}",
      "{\"model\":\"m\",\"input\":[{\"role\":\"user\"}]}",
      "{\"model\":\"m\",\"input\":[{\"content\":\"x\"}]}",
      "{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":\"x\",\"role\":\"user\"}]}",
      "{\"model\":\"m\",\"input\":[{\"r\\u006fle\":\"user\",\"content\":\"x\"}]}",
      "{\"model\":\"m\",\"input\":[{\"role\":\"assistant\",\"content\":null}]}",
      "{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_image\","
      "\"image_url\":\"http://x\"}]}]}",
      "{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_text\"}]}]}",
      "{\"model\":\"m\",\"input\":[{\"type\":\"function_call\",\"call_id\":\"c\",\"name\":\"f\","
      "\"arguments\":\"{}\"}]}",
      "{\"model\":\"m\",\"input\":[{\"type\":\"function_call_output\",\"call_id\":\"c\","
      "\"output\":\"r\"}]}",
      "{\"model\":\"m\",\"input\":[{\"type\":\"web_search_call\"}]}",
      "{\"model\":\"m\",\"input\":[{\"type\":7,\"role\":\"user\",\"content\":\"x\"}]}",
  };
  for (size_t i = 0; i < sizeof tree / sizeof *tree; i++)
    if (diff_s(tree[i]) != DIFF_TREE)
      fail_msg("taken: %s", tree[i]);
}

/* Bodies built from pieces that each path reads differently: every top-level member the
 * translation knows, with values of every type (escapes, reals, nulls, repeats), and input
 * items of every shape. */
static uint64_t gen_x = 88172645463325252ull;
static unsigned gen(unsigned n) {
  gen_x ^= gen_x << 13;
  gen_x ^= gen_x >> 7;
  gen_x ^= gen_x << 17;
  return (unsigned)(gen_x % n);
}
#define PICK(a) (a)[gen(sizeof(a) / sizeof *(a))]

static void gen_body(pd_buf_t *b) {
  static const char *const strs[] = {
      "\"\"",          "\"x\"",    "\"a\\nb\"", "\"\\u00e9\\/\"", "\"<think>t</think>\\n\\nz\"",
      "\"\\\"q\\\"\"", "\"auto\"", "\"none\"",  "\"\\u0000\"",    "\"\xc3\xa9\""};
  static const char *const vals[] = {"null",
                                     "true",
                                     "false",
                                     "0",
                                     "-0",
                                     "7",
                                     "1.5",
                                     "1e400",
                                     "2E-3",
                                     "[]",
                                     "{}",
                                     "[\"a\",\"b\"]",
                                     "[1,\"a\"]",
                                     "{\"k\":[1,{\"j\":null}]}",
                                     "{\"k\":1,\"k\":2}",
                                     "{\"\\u006b\":1}",
                                     "-12345678901234567890"};
  static const char *const keys[] = {"model",
                                     "instructions",
                                     "max_output_tokens",
                                     "temperature",
                                     "top_p",
                                     "user",
                                     "safety_identifier",
                                     "metadata",
                                     "stream",
                                     "store",
                                     "background",
                                     "parallel_tool_calls",
                                     "include",
                                     "reasoning",
                                     "input",
                                     "input",
                                     "input",
                                     "tools",
                                     "tool_choice",
                                     "text",
                                     "previous_response_id",
                                     "conversation",
                                     "top_logprobs",
                                     "seed",
                                     "service_tier",
                                     "prompt_cache_key",
                                     "prompt_cache_retention",
                                     "frequency_penalty",
                                     "presence_penalty",
                                     "logit_bias",
                                     "stop",
                                     "ponder",
                                     "other",
                                     "mod\\u0065l"};
  static const char *const roles[] = {
      "\"user\"",       "\"system\"", "\"developer\"", "\"assistant\"", "\"tool\"",
      "\"us\\u0065r\"", "1"};
  static const char *const types[] = {"\"message\"",    "\"reasoning\"", "\"function_call\"",
                                      "\"input_text\"", "\"message\"",   "null"};
  static const char *const ptypes[] = {"\"input_text\"", "\"output_text\"", "\"text\"",
                                       "\"refusal\"",    "\"input_image\"", "\"te\\u0078t\""};
  pd_buf_appends(b, "{\"model\":\"m\"");
  unsigned nm = gen(6);
  for (unsigned i = 0; i < nm; i++) {
    const char *k = PICK(keys);
    pd_buf_appendf(b, ",\"%s\":", k);
    if (!strcmp(k, "input") && gen(4)) {
      if (gen(4) == 0) {
        pd_buf_appends(b, PICK(strs));
        continue;
      }
      pd_buf_appends(b, "[");
      unsigned ni = gen(4);
      for (unsigned j = 0; j < ni; j++) {
        pd_buf_appends(b, j ? ",{" : "{");
        int first = 1;
        unsigned nk = gen(5);
        for (unsigned q = 0; q < nk; q++) {
          pd_buf_appends(b, first ? "" : ",");
          first = 0;
          switch (gen(5)) {
          case 0:
            pd_buf_appendf(b, "\"type\":%s", PICK(types));
            break;
          case 1:
          case 2:
            pd_buf_appendf(b, "\"role\":%s", PICK(roles));
            break;
          case 3:
            pd_buf_appendf(b, "\"content\":%s", gen(3) ? PICK(strs) : PICK(vals));
            break;
          default: {
            pd_buf_appends(b, "\"content\":[");
            unsigned np = gen(4);
            for (unsigned z = 0; z < np; z++)
              pd_buf_appendf(b, "%s{\"type\":%s,\"text\":%s%s}", z ? "," : "", PICK(ptypes),
                             gen(5) ? PICK(strs) : PICK(vals), gen(4) ? "" : ",\"id\":1");
            pd_buf_appends(b, "]");
          }
          }
        }
        pd_buf_appends(b, "}");
      }
      pd_buf_appends(b, "]");
    } else {
      pd_buf_appends(b, gen(2) ? PICK(strs) : PICK(vals));
    }
  }
  if (gen(3))
    pd_buf_appends(b, ",\"input\":\"q\"");
  pd_buf_appends(b, "}");
}

static void test_fast_generated(void **state) {
  (void)state;
  int taken = 0, n = 30000;
  pd_buf_t b;
  pd_buf_init(&b);
  for (int i = 0; i < n; i++) {
    pd_buf_reset(&b);
    gen_body(&b);
    /* the body as built, and cut short, and with a byte changed */
    taken += diff_s(pd_buf_str(&b)) == DIFF_FAST;
    size_t len = b.len;
    diff_fast(pd_buf_data(&b), gen((unsigned)len), NULL, NULL);
    char *c = (char *)pd_buf_data(&b);
    c[gen((unsigned)len)] = "{}[]\",:\\ax0"[gen(11)];
    diff_fast(c, len, "r", NULL);
  }
  pd_buf_free(&b);
  print_message("fast path took %d of %d\n", taken, n);
  /* both paths are exercised */
  if (taken < n / 20 || taken > n - n / 20)
    fail_msg("fast path took %d of %d", taken, n);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_string_input_and_instructions),
      cmocka_unit_test(test_items),
      cmocka_unit_test(test_calls_without_text_and_think_kept_inside),
      cmocka_unit_test(test_fields),
      cmocka_unit_test(test_tool_choice_forms_and_formats),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_body_field),
      cmocka_unit_test(test_body_summary_inline_hidden),
      cmocka_unit_test(test_body_tool_calls_and_incomplete),
      cmocka_unit_test(test_stream_field),
      cmocka_unit_test(test_stream_summary),
      cmocka_unit_test(test_stream_inline_and_hidden),
      cmocka_unit_test(test_stream_tool_calls),
      cmocka_unit_test(test_stream_incomplete),
      cmocka_unit_test(test_stream_failed),
      cmocka_unit_test(test_stream_held_bound),
      cmocka_unit_test(test_stream_matches_body),
      cmocka_unit_test(test_from_reply),
      cmocka_unit_test(test_api_table),
      cmocka_unit_test(test_fast_hand),
      cmocka_unit_test(test_fast_generated),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
