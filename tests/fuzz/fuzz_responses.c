/* Fuzz target: the Responses request translation (proxy/api/responses.c) on arbitrary bytes.
 *  - Never crashes, leaks or reads out of bounds; a 400 always has a message.
 *  - A translated request is one the engine takes: pd_engine_validate passes (the exchange does
 *    not run it again), with a string model and a non-empty message list.
 *  - The response object and a short event stream built on it are valid JSON text.
 *  - A JSON array instead drives the stream writer with arbitrary outputs (writer_run).
 *  - The bytes as an upstream's reply at rounds 0 (pd_responses_from_reply, reply_run): a
 *    response object that parses, exactly for the replies the engine reads.
 *  - The rounds-0 fast path (pd_responses_req_scan, pd_responses_req_write) against the tree
 *    path (tests/lib/responses_diff.h): a body the scan takes is one the translation takes, with
 *    the same model, user and stream, and the fast writer's upstream body and echo are the tree
 *    path's byte for byte; a body it leaves is left by the writer too.
 * Any violation aborts, so libFuzzer keeps the input. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/responses.h"
#include "core/engine.h"
#include "../lib/responses_diff.h"

static uint64_t rnd(void *ud) {
  return ++*(uint64_t *)ud;
}

static void check_json(const pd_buf_t *b) {
  json_t *j = json_loadb(pd_buf_data(b), b->len, 0, NULL);
  if (!j)
    abort();
  json_decref(j);
}

/* Every data line of the stream parses. */
static void check_events(const pd_buf_t *b) {
  const char *p = pd_buf_data(b), *e = p + b->len;
  while (p < e) {
    const char *d = strstr(p, "\ndata: ");
    const char *end = d ? strstr(d, "\n\n") : NULL;
    if (!d || !end)
      abort();
    json_t *j = json_loadb(d + 7, (size_t)(end - d - 7), 0, NULL);
    if (!j)
      abort();
    json_decref(j);
    p = end + 2;
  }
}

/* An array drives the stream writer with what a semi-trusted upstream can make the engine
 * emit: ["t", text] thinking, ["c", text] content, ["tc", delta.tool_calls] (any JSON),
 * ["f", reason] finish, ["fail", message]; then the end. Every event must parse. */
static void writer_run(const json_t *steps, size_t size) {
  json_t *b0 = json_loads(size % 2 ? "{\"model\":\"m\",\"input\":\"q\",\"reasoning\":{"
                                     "\"summary\":\"auto\"}}"
                                   : "{\"model\":\"m\",\"input\":\"q\"}",
                          0, NULL);
  pd_responses_req_t req;
  pd_responses_error_t err;
  if (pd_responses_req_translate(b0, NULL, &req, &err) < 0)
    abort();
  json_decref(b0);
  uint64_t ctr = 0;
  pd_responses_opts_t o = {"resp_x", 1,   "m",  (pd_reasoning_t)(size % 3),
                           &req,     rnd, &ctr, size % 7 ? 0 : 512};
  pd_responses_t *w = pd_responses_new(&o);
  pd_buf_t b;
  pd_buf_init(&b);
  size_t i;
  const json_t *st;
  int failed = 0;
  json_array_foreach(steps, i, st) {
    const char *k = json_string_value(json_array_get(st, 0));
    const json_t *v = json_array_get(st, 1);
    if (!k)
      continue;
    pd_out_t out = {PD_OUT_THINK, json_string_value(v), json_string_length(v), NULL};
    if (!strcmp(k, "c"))
      out.kind = PD_OUT_CONTENT;
    else if (!strcmp(k, "f"))
      out.kind = PD_OUT_FINISH;
    else if (!strcmp(k, "tc")) {
      out.kind = PD_OUT_TOOL_CALLS;
      out.json = (json_t *)v;
    } else if (!strcmp(k, "fail")) {
      pd_responses_fail(w, &b, out.text, "upstream_error", NULL);
      failed = 1;
      continue;
    } else if (strcmp(k, "t"))
      continue;
    if (out.kind != PD_OUT_TOOL_CALLS && !out.text)
      continue;
    int rc = pd_responses_emit(w, &b, &out);
    if (rc == PD_RESPONSES_ETOOLARGE) {
      pd_responses_fail(w, &b, "too large", "upstream_error", NULL);
      failed = 1;
    } else if (rc < 0) {
      abort();
    }
  }
  pd_usage_t u = {1, 2, 1};
  /* The end may pass the bound too (inline display's closing "</think>"): the exchange then
   * fails the response, as after an emit. */
  int end = pd_responses_end(w, &b, &u);
  if (end == PD_RESPONSES_ETOOLARGE)
    pd_responses_fail(w, &b, "too large", "upstream_error", NULL);
  else if (end < 0)
    abort();
  (void)failed;
  check_events(&b);
  pd_responses_free(w);
  pd_buf_free(&b);
  pd_responses_req_free(&req);
}

/* The bytes as the upstream's reply to a rounds-0 call (pd_responses_from_reply): a response
 * object that parses exactly when jansson reads them as an object with an object choices[0];
 * nothing written otherwise. */
static void reply_run(const char *b, size_t size, const json_t *tree) {
  json_t *b0 =
      json_loads("{\"model\":\"m\",\"input\":\"q\",\"reasoning\":{\"summary\":\"auto\"}}", 0, NULL);
  pd_responses_req_t req;
  pd_responses_error_t err;
  if (pd_responses_req_translate(b0, NULL, &req, &err) < 0)
    abort();
  json_decref(b0);
  uint64_t ctr = 0;
  pd_responses_opts_t o = {"resp_x", 1, "m", (pd_reasoning_t)(size % 3), &req, rnd, &ctr, 0};
  pd_responses_t *w = pd_responses_new(&o);
  pd_buf_t out;
  pd_buf_init(&out);
  pd_usage_t u;
  int rc = pd_responses_from_reply(w, &out, b, size, &u);
  int readable = json_is_object(json_array_get(json_object_get(tree, "choices"), 0));
  if (readable ? rc != 0 : rc != PD_RESPONSES_EUNREADABLE || out.len)
    abort();
  if (rc == 0)
    check_json(&out);
  pd_buf_free(&out);
  pd_responses_free(w);
  pd_responses_req_free(&req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  diff_fast((const char *)data, size, size % 3 ? NULL : "route-model",
            size % 2 ? "max_tokens" : "max_completion_tokens");
  json_t *body = json_loadb((const char *)data, size, 0, NULL);
  reply_run((const char *)data, size, json_is_object(body) ? body : NULL);
  if (!body)
    return 0;
  if (json_is_array(body)) {
    writer_run(body, size);
    json_decref(body);
    return 0;
  }
  pd_responses_req_t req;
  pd_responses_error_t err;
  int rc = pd_responses_req_translate(body, size % 2 ? "max_tokens" : "max_completion_tokens", &req,
                                      &err);
  if (rc == -1 && (!err.message[0] || req.chat || req.echo.len))
    abort();
  if (rc == 0) {
    const char *msg, *param;
    if (pd_engine_validate(req.chat, &msg, &param) < 0)
      abort();
    if (!json_is_string(json_object_get(req.chat, "model")) ||
        json_array_size(json_object_get(req.chat, "messages")) == 0)
      abort();
    uint64_t ctr = 0;
    pd_responses_opts_t o = {"resp_x", 1, "m", (pd_reasoning_t)(size % 3), &req, rnd, &ctr, 0};
    pd_responses_t *w = pd_responses_new(&o);
    pd_buf_t b;
    pd_buf_init(&b);
    json_t *calls =
        json_pack("[{s:s,s:{s:s,s:s}}]", "id", "c", "function", "name", "f", "arguments", "{}");
    pd_result_t r = {"answer",  6, "thinking", 8, calls, size % 5 ? "stop" : "length",
                     {1, 2, 1}, 1, 2};
    if (!w || pd_responses_body(w, &b, &r) < 0)
      abort();
    check_json(&b);
    pd_responses_free(w);
    pd_buf_reset(&b);
    w = pd_responses_new(&o);
    pd_out_t outs[] = {{PD_OUT_THINK, "t", 1, NULL},
                       {PD_OUT_CONTENT, "c", 1, NULL},
                       {PD_OUT_TOOL_CALLS, NULL, 0, calls},
                       {PD_OUT_FINISH, "stop", 4, NULL}};
    for (size_t i = 0; i < 4; i++)
      if (pd_responses_emit(w, &b, &outs[i]) < 0)
        abort();
    pd_usage_t u = {1, 2, 1};
    if (pd_responses_end(w, &b, &u) < 0)
      abort();
    check_events(&b);
    pd_responses_free(w);
    pd_buf_free(&b);
    json_decref(calls);
    pd_responses_req_free(&req);
  }
  json_decref(body);
  return 0;
}
