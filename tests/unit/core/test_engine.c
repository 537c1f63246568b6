/* Unit tests of the forcing engine: feed recorded replies, assert the exact upstream bodies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/engine.h"
#include "core/openai.h"

#define MAXCALLS 16

/* ---- helpers ---- */

/* Parses JSON written with single quotes (test data never needs an apostrophe). */
static json_t *J(const char *text) {
  char *s = strdup(text);
  for (char *p = s; *p; p++)
    if (*p == '\'')
      *p = '"';
  json_error_t err;
  json_t *v = json_loads(s, JSON_DECODE_ANY, &err);
  if (!v)
    fail_msg("bad test JSON (%s): %s", err.text, s);
  free(s);
  return v;
}

static void assert_json(const json_t *got, const char *want_text) {
  json_t *want = J(want_text);
  if (!json_equal(got, want)) {
    char *g = json_dumps(got, JSON_SORT_KEYS | JSON_ENCODE_ANY);
    char *w = json_dumps(want, JSON_SORT_KEYS | JSON_ENCODE_ANY);
    print_error("got:  %s\nwant: %s\n", g ? g : "NULL", w);
    free(g);
    free(w);
    json_decref(want);
    fail();
  }
  json_decref(want);
}

static pd_policy_t policy(pd_mode_t mode, int rounds) {
  pd_policy_t p;
  memset(&p, 0, sizeof p);
  p.mode = mode;
  p.rounds = rounds;
  p.think_budget = 100;
  p.answer_budget = 50;
  p.prompts.think = "Think for up to {think_budget} tokens.";
  p.prompts.wait = "Wait? Did I make a mistake?";
  p.prompts.cont = "Continue your thinking. Think for up to {think_budget} tokens.";
  p.prompts.answer = "Now answer in under {answer_budget} tokens!!!";
  p.prefill.dialect = PD_DIALECT_VLLM;
  p.prefill.think_open = "<think>\n";
  p.prefill.think_close = "</think>";
  p.prefill.wait = "Wait";
  p.prefill.answer_open = "\n\n";
  p.prefill.length_cut = "\nFinal Answer:";
  p.tmpl.system = "<|im_start|>system\n{content}<|im_end|>\n";
  p.tmpl.user = "<|im_start|>user\n{content}<|im_end|>\n";
  p.tmpl.assistant = "<|im_start|>assistant\n{content}<|im_end|>\n";
  p.tmpl.assistant_start = "<|im_start|>assistant\n";
  p.template_name = "chatml";
  return p;
}

/* What a chain did: the calls' bodies and paths, and every output. */
typedef struct run {
  json_t *bodies[MAXCALLS];
  const char *paths[MAXCALLS];
  int answers[MAXCALLS];
  int n;
  char log[8192];    /* each output: "T:text|" etc */
  char merged[8192]; /* adjacent THINK/CONTENT outputs merged (stream-independent) */
  int last_kind;
  pd_result_t res;
} run_t;

static void cat(char *dst, const char *s, size_t n) {
  size_t len = strlen(dst);
  assert_true(len + n < 8192);
  memcpy(dst + len, s, n);
  dst[len + n] = '\0';
}

static void on_out(void *ud, const pd_out_t *o) {
  run_t *r = ud;
  static const char *const tags[] = {"T:", "C:", "X:", "F:"};
  char *dumped = NULL;
  const char *text = o->text;
  size_t len = o->len;
  if (o->kind == PD_OUT_TOOL_CALLS) {
    assert_non_null(o->json);
    dumped = json_dumps(o->json, JSON_SORT_KEYS | JSON_COMPACT);
    for (char *p = dumped; *p; p++)
      if (*p == '"')
        *p = '\'';
    text = dumped;
    len = strlen(dumped);
  }
  cat(r->log, tags[o->kind], 2);
  cat(r->log, text, len);
  cat(r->log, "|", 1);
  if (!(r->last_kind == (int)o->kind + 1 && o->kind <= PD_OUT_CONTENT)) {
    if (r->merged[0])
      cat(r->merged, "|", 1);
    cat(r->merged, tags[o->kind], 2);
  }
  cat(r->merged, text, len);
  r->last_kind = (int)o->kind + 1;
  free(dumped);
}

/* Every test runs twice (see main): replies and chunks as trees (pd_engine_on_response,
 * pd_engine_on_chunk), then as the proxy feeds them, read in one pass from their text
 * (pd_engine_on_response_read, pd_engine_on_chunk_read), written with
 * \u escapes for everything beyond ASCII so the reader's decoding is exercised too. A chunk the
 * reader does not take (not one object) goes the tree way, as in app/forced.c. */
static int read_chunks;

/* delta 1: ch is a stream chunk, 0: a whole reply. */
static int feed(pd_engine_t *e, const json_t *ch, int delta, pd_emit_fn emit, void *ud) {
  int (*tree)(pd_engine_t *, const json_t *, pd_emit_fn, void *) =
      delta ? pd_engine_on_chunk : pd_engine_on_response;
  int (*read)(pd_engine_t *, const pd_openai_msg_t *, pd_emit_fn, void *) =
      delta ? pd_engine_on_chunk_read : pd_engine_on_response_read;
  if (!read_chunks || !pd_engine_reads_one_pass(e))
    return tree(e, ch, emit, ud);
  char *text = json_dumps(ch, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_ENCODE_ANY);
  assert_non_null(text);
  pd_openai_msg_t m;
  int rc = pd_openai_read_reply(text, strlen(text), delta, &m) ? read(e, &m, emit, ud)
                                                               : tree(e, ch, emit, ud);
  free(text);
  return rc;
}

static int feed_chunk(pd_engine_t *e, const json_t *ch, pd_emit_fn emit, void *ud) {
  return feed(e, ch, 1, emit, ud);
}

static int feed_response(pd_engine_t *e, const json_t *reply, pd_emit_fn emit, void *ud) {
  return feed(e, reply, 0, emit, ud);
}

/* Splits a whole reply into the chunks a streaming server would send, one character a delta. */
static void feed_streamed(pd_engine_t *e, const json_t *reply, run_t *r, int completions) {
  const json_t *choice = json_array_get(json_object_get(reply, "choices"), 0);
  const json_t *msg = json_object_get(choice, "message");
  json_t *ch;
  if (!completions) {
    ch = J(
        "{'object':'chat.completion.chunk','choices':[{'index':0,'delta':{'role':'assistant'}}]}");
    assert_int_equal(feed_chunk(e, ch, on_out, r), 0);
    json_decref(ch);
  }
  static const char *const keys[] = {"reasoning_content", "reasoning", "content", "text"};
  for (int k = 0; k < 4; k++) {
    const json_t *v = json_object_get(k == 3 ? choice : msg, keys[k]);
    const char *s = json_string_value(v);
    for (size_t i = 0; s && s[i]; i++) {
      if (completions)
        ch = json_pack("{s:[{s:i,s:s#}]}", "choices", "index", 0, "text", s + i, (int)1);
      else
        ch = json_pack("{s:[{s:i,s:{s:s#}}]}", "choices", "index", 0, "delta", keys[k], s + i,
                       (int)1);
      assert_int_equal(feed_chunk(e, ch, on_out, r), 0);
      json_decref(ch);
    }
  }
  const json_t *tools = json_object_get(msg, "tool_calls");
  if (tools) {
    json_t *arr = json_deep_copy(tools);
    size_t i;
    json_t *tc;
    json_array_foreach(arr, i, tc) json_object_set_new(tc, "index", json_integer((json_int_t)i));
    ch = json_pack("{s:[{s:i,s:{s:o}}]}", "choices", "index", 0, "delta", "tool_calls", arr);
    assert_int_equal(feed_chunk(e, ch, on_out, r), 0);
    json_decref(ch);
  }
  ch = json_pack("{s:[{s:i,s:{},s:O?}]}", "choices", "index", 0, "delta", "finish_reason",
                 json_object_get(choice, "finish_reason"));
  assert_int_equal(feed_chunk(e, ch, on_out, r), 0);
  json_decref(ch);
  const json_t *usage = json_object_get(reply, "usage");
  if (usage) {
    ch = json_pack("{s:[],s:O}", "choices", "usage", usage);
    assert_int_equal(feed_chunk(e, ch, on_out, r), 0);
    json_decref(ch);
  }
  /* The stream ends as OpenAI's does: data: [DONE], then the end of the body. */
  pd_engine_on_done_marker(e);
  assert_int_equal(pd_engine_on_call_end(e, on_out, r), 0);
}

/* A call's body text, which must be one strict JSON object; the text is freed. */
static json_t *call_body(pd_call_t *call) {
  json_error_t err;
  json_t *j = json_loadb(call->body, call->body_len, 0, &err);
  if (!json_is_object(j))
    fail_msg("call body is not a JSON object (%s): %.*s", err.text, (int)call->body_len,
             call->body);
  assert_int_equal(strlen(call->body), call->body_len);
  free(call->body);
  return j;
}

/* Runs a chain to its end, answering call k with replies[k] (streamed when asked). */
static void drive(pd_engine_t *e, json_t **replies, int nreplies, int streamed, run_t *r) {
  memset(r, 0, sizeof *r);
  pd_call_t call;
  int rc;
  while ((rc = pd_engine_next(e, &call)) == 1) {
    assert_true(r->n < nreplies);
    assert_int_equal(call.index, r->n + 1);
    r->bodies[r->n] = call_body(&call);
    r->paths[r->n] = call.path;
    r->answers[r->n] = call.is_answer;
    if (streamed)
      feed_streamed(e, replies[r->n], r, !strcmp(call.path, "/completions"));
    else
      assert_int_equal(feed_response(e, replies[r->n], on_out, r), 0);
    r->n++;
  }
  assert_int_equal(rc, 0);
  assert_int_equal(r->n, nreplies);
  pd_engine_result(e, &r->res);
}

static void run_free(run_t *r) {
  for (int i = 0; i < r->n; i++)
    json_decref(r->bodies[i]);
}

static json_t *chat_reply(const char *content, const char *finish, long prompt, long completion) {
  json_t *r =
      json_pack("{s:s,s:[{s:i,s:{s:s,s:s},s:s?}]}", "object", "chat.completion", "choices", "index",
                0, "message", "role", "assistant", "content", content, "finish_reason", finish);
  if (prompt >= 0)
    json_object_set_new(r, "usage",
                        json_pack("{s:I,s:I,s:I}", "prompt_tokens", (json_int_t)prompt,
                                  "completion_tokens", (json_int_t)completion, "total_tokens",
                                  (json_int_t)(prompt + completion)));
  return r;
}

static json_t *text_reply(const char *text, const char *finish, long prompt, long completion) {
  return json_pack("{s:s,s:[{s:i,s:s,s:s}],s:{s:I,s:I}}", "object", "text_completion", "choices",
                   "index", 0, "text", text, "finish_reason", finish, "usage", "prompt_tokens",
                   (json_int_t)prompt, "completion_tokens", (json_int_t)completion);
}

static pd_engine_t *engine(const pd_policy_t *p, int rounds, const char *req, int stream,
                           const char *limit_param) {
  pd_engine_opts_t o = {p, rounds, "up-model", limit_param, stream, 0, 0};
  json_t *request = J(req);
  pd_engine_t *e = pd_engine_new(&o, request);
  json_decref(request);
  assert_non_null(e);
  return e;
}

static void free_replies(json_t **replies, int n) {
  for (int i = 0; i < n; i++)
    json_decref(replies[i]);
}

/* ---- chat mode ---- */

static void chat_one_round(void **state) {
  (void)state;
  pd_policy_t p = policy(PD_MODE_CHAT, 1);
  pd_engine_t *e = engine(&p, 1,
                          "{'model':'think-model','messages':[{'role':'system','content':'Be "
                          "brief.'},{'role':'user','content':'Q'}],'temperature':0.5,'n':1,"
                          "'ponder':{'rounds':1}}",
                          0, "max_tokens");
  json_t *replies[] = {chat_reply("S1", "stop", 5, 10), chat_reply("A", "stop", 20, 3)};
  run_t r;
  drive(e, replies, 2, 0, &r);
  assert_string_equal(r.paths[0], "/chat/completions");
  assert_string_equal(r.paths[1], "/chat/completions");
  assert_int_equal(r.answers[0], 0);
  assert_int_equal(r.answers[1], 1);
  assert_json(r.bodies[0], "{'model':'up-model','temperature':0.5,'max_tokens':100,'messages':["
                           "{'role':'system','content':'Be brief.'},"
                           "{'role':'user','content':'Q\\n\\nThink for up to 100 tokens.'}]}");
  assert_json(r.bodies[1], "{'model':'up-model','temperature':0.5,'max_tokens':50,'messages':["
                           "{'role':'system','content':'Be brief.'},"
                           "{'role':'user','content':'Q\\n\\nThink for up to 100 tokens.'},"
                           "{'role':'assistant','content':'S1'},"
                           "{'role':'user','content':'Now answer in under 50 tokens!!!'}]}");
  assert_string_equal(r.res.content, "A");
  assert_string_equal(r.res.reasoning, "S1");
  assert_string_equal(r.res.finish_reason, "stop");
  assert_null(r.res.tool_calls);
  assert_int_equal(r.res.think_calls, 1);
  assert_int_equal(r.res.calls, 2);
  assert_int_equal(r.res.usage.prompt_tokens, 25);
  assert_int_equal(r.res.usage.completion_tokens, 13);
  assert_int_equal(r.res.usage.reasoning_tokens, 10);
  assert_string_equal(r.log, "T:S1|C:A|F:stop|");
  pd_call_t call;
  assert_int_equal(pd_engine_next(e, &call), 0);
  run_free(&r);
  free_replies(replies, 2);
  pd_engine_free(e);
}

static void chat_two_rounds_array_content(void **state) {
  (void)state;
  pd_policy_t p = policy(PD_MODE_CHAT, 2);
  pd_engine_t *e = engine(&p, 2,
                          "{'model':'m','messages':[{'role':'user','content':[{'type':'text',"
                          "'text':'Q'},{'type':'image_url','image_url':{'url':'u'}}]}]}",
                          0, "max_tokens");
  json_t *replies[] = {chat_reply("S1", "stop", 1, 10), chat_reply("S2", "stop", 1, 10),
                       chat_reply("A", "stop", 1, 1)};
  run_t r;
  drive(e, replies, 3, 0, &r);
  const char *mprime = "{'role':'user','content':[{'type':'text','text':'Q'},{'type':'image_url',"
                       "'image_url':{'url':'u'}},{'type':'text','text':'\\n\\nThink for up to "
                       "100 tokens.'}]}";
  char want[2048];
  snprintf(want, sizeof want, "[%s]", mprime);
  assert_json(json_object_get(r.bodies[0], "messages"), want);
  snprintf(want, sizeof want,
           "[%s,{'role':'assistant','content':'S1\\nWait? Did I make a mistake?'},"
           "{'role':'user','content':'Continue your thinking. Think for up to 100 tokens.'}]",
           mprime);
  assert_json(json_object_get(r.bodies[1], "messages"), want);
  assert_json(json_object_get(r.bodies[1], "max_tokens"), "100");
  snprintf(want, sizeof want,
           "[%s,{'role':'assistant','content':'S1\\nWait? Did I make a mistake?'},"
           "{'role':'user','content':'Continue your thinking. Think for up to 100 tokens.'},"
           "{'role':'assistant','content':'S2'},"
           "{'role':'user','content':'Now answer in under 50 tokens!!!'}]",
           mprime);
  assert_json(json_object_get(r.bodies[2], "messages"), want);
  assert_string_equal(r.log, "T:S1|T:\nWait? Did I make a mistake?\n|T:S2|C:A|F:stop|");
  assert_string_equal(r.res.reasoning, "S1\nWait? Did I make a mistake?\nS2");
  assert_int_equal(r.res.think_calls, 2);
  run_free(&r);
  free_replies(replies, 3);
  pd_engine_free(e);
}

static void chat_six_rounds(void **state) {
  (void)state;
  pd_policy_t p = policy(PD_MODE_CHAT, 6);
  pd_engine_t *e = engine(&p, 6,
                          "{'messages':[{'role':'system','content':'s'},{'role':'user',"
                          "'content':'Q'}]}",
                          0, "max_tokens");
  json_t *replies[7];
  for (int i = 0; i < 7; i++) {
    char s[8];
    snprintf(s, sizeof s, "%s%d", i < 6 ? "S" : "A", i + 1);
    replies[i] = chat_reply(s, "stop", 1, 10);
  }
  run_t r;
  drive(e, replies, 7, 0, &r);
  for (int k = 0; k < 6; k++) {
    const json_t *msgs = json_object_get(r.bodies[k], "messages");
    assert_int_equal(json_array_size(msgs), 2 + 2 * k);
    for (int j = 0; j < k; j++) {
      char want[256];
      snprintf(want, sizeof want,
               "[{'role':'assistant','content':'S%d\\nWait? Did I make a mistake?'},{'role':"
               "'user','content':'Continue your thinking. Think for up to 100 tokens.'}]",
               j + 1);
      json_t *pair = json_array();
      json_array_append(pair, json_array_get(msgs, (size_t)(2 + 2 * j)));
      json_array_append(pair, json_array_get(msgs, (size_t)(3 + 2 * j)));
      assert_json(pair, want);
      json_decref(pair);
    }
  }
  const json_t *last = json_object_get(r.bodies[6], "messages");
  assert_int_equal(json_array_size(last), 2 + 2 * 5 + 2);
  assert_json(json_array_get(last, 12), "{'role':'assistant','content':'S6'}");
  assert_json(json_array_get(last, 13),
              "{'role':'user','content':'Now answer in under 50 tokens!!!'}");
  assert_int_equal(r.res.think_calls, 6);
  assert_int_equal(r.res.calls, 7);
  assert_int_equal(r.res.usage.reasoning_tokens, 60);
  run_free(&r);
  free_replies(replies, 7);
  pd_engine_free(e);
}

static void chat_null_content(void **state) {
  (void)state;
  pd_policy_t p = policy(PD_MODE_CHAT, 1);
  pd_engine_t *e = engine(&p, 1, "{'messages':[{'role':'user','content':null}]}", 0, "max_tokens");
  pd_call_t call;
  assert_int_equal(pd_engine_next(e, &call), 1);
  json_t *body = call_body(&call);
  assert_json(json_object_get(body, "messages"),
              "[{'role':'user','content':'Think for up to 100 tokens.'}]");
  json_decref(body);
  /* Asking again before the reply is misuse: -1 and no body. */
  assert_int_equal(pd_engine_next(e, &call), -1);
  assert_null(call.body);
  pd_engine_free(e);
}

static void min_think_tokens(void **state) {
  (void)state;
  /* 10 tokens a call, 25 wanted: three thinking calls although R = 6. */
  pd_policy_t p = policy(PD_MODE_CHAT, 6);
  p.min_think_tokens = 25;
  pd_engine_t *e = engine(&p, 6, "{'messages':[{'role':'user','content':'Q'}]}", 0, "max_tokens");
  json_t *replies[] = {chat_reply("a", "stop", 1, 10), chat_reply("b", "stop", 1, 10),
                       chat_reply("c", "stop", 1, 10), chat_reply("A", "stop", 1, 1)};
  run_t r;
  drive(e, replies, 4, 0, &r);
  assert_int_equal(r.res.think_calls, 3);
  assert_int_equal(r.answers[3], 1);
  run_free(&r);
  pd_engine_free(e);
  /* Capped at R: two calls, though 1000 tokens are wanted. */
  p.min_think_tokens = 1000;
  e = engine(&p, 2, "{'messages':[{'role':'user','content':'Q'}]}", 0, "max_tokens");
  json_decref(replies[2]);
  replies[2] = chat_reply("A", "stop", 1, 1);
  drive(e, replies, 3, 0, &r);
  assert_int_equal(r.res.think_calls, 2);
  run_free(&r);
  free_replies(replies, 4);
  pd_engine_free(e);
}

static void max_think_tokens(void **state) {
  (void)state;
  pd_policy_t p = policy(PD_MODE_CHAT, 6);
  p.max_think_tokens = 250;
  pd_engine_t *e = engine(&p, 6, "{'messages':[{'role':'user','content':'Q'}]}", 0, "max_tokens");
  json_t *replies[] = {chat_reply("a", "length", 1, 100), chat_reply("b", "length", 1, 100),
                       chat_reply("c", "length", 1, 50), chat_reply("A", "stop", 1, 1)};
  run_t r;
  drive(e, replies, 4, 0, &r);
  assert_json(json_object_get(r.bodies[0], "max_tokens"), "100");
  assert_json(json_object_get(r.bodies[1], "max_tokens"), "100");
  assert_json(json_object_get(r.bodies[2], "max_tokens"), "50");
  /* The continue prompt asked for the limit of the call it prompted. */
  assert_json(json_array_get(json_object_get(r.bodies[2], "messages"), 4),
              "{'role':'user','content':'Continue your thinking. Think for up to 50 tokens.'}");
  assert_json(json_array_get(json_object_get(r.bodies[2], "messages"), 2),
              "{'role':'user','content':'Continue your thinking. Think for up to 100 tokens.'}");
  assert_json(json_object_get(r.bodies[3], "max_tokens"), "50");
  assert_int_equal(r.res.think_calls, 3);
  assert_int_equal(r.res.usage.reasoning_tokens, 250);
  run_free(&r);
  free_replies(replies, 4);
  pd_engine_free(e);
  /* A cap below think_budget shrinks the first call and its prompt too. */
  p.max_think_tokens = 30;
  e = engine(&p, 6, "{'messages':[{'role':'user','content':'Q'}]}", 0, "max_tokens");
  json_t *r2[] = {chat_reply("a", "length", 1, 30), chat_reply("A", "stop", 1, 1)};
  drive(e, r2, 2, 0, &r);
  assert_json(r.bodies[0], "{'model':'up-model','max_tokens':30,'messages':[{'role':'user',"
                           "'content':'Q\\n\\nThink for up to 30 tokens.'}]}");
  run_free(&r);
  free_replies(r2, 2);
  pd_engine_free(e);
}

static void field_rules(void **state) {
  (void)state;
  pd_policy_t p = policy(PD_MODE_CHAT, 1);
  const char *req =
      "{'model':'x','messages':[{'role':'user','content':'Q'}],'tools':[{'type':'function',"
      "'function':{'name':'f'}}],'tool_choice':'auto','parallel_tool_calls':true,"
      "'functions':[],'function_call':'auto','response_format':{'type':'json_object'},"
      "'logprobs':true,'top_logprobs':2,'stop':['END'],'max_tokens':300,'n':1,"
      "'ponder':{'rounds':1},'stream':false,'stream_options':{'include_usage':false},"
      "'seed':7,'user':'u1','top_p':0.9}";
  pd_engine_t *e = engine(&p, 1, req, 0, "max_completion_tokens");
  json_t *replies[] = {chat_reply("S", "stop", 1, 1), chat_reply("A", "stop", 1, 1)};
  run_t r;
  drive(e, replies, 2, 0, &r);
  assert_json(r.bodies[0], "{'model':'up-model','seed':7,'user':'u1','top_p':0.9,"
                           "'max_completion_tokens':100,'messages':[{'role':'user','content':"
                           "'Q\\n\\nThink for up to 100 tokens.'}]}");
  assert_json(r.bodies[1],
              "{'model':'up-model','tools':[{'type':'function','function':{'name':'f'}}],"
              "'tool_choice':'auto','parallel_tool_calls':true,'functions':[],'function_call':"
              "'auto','response_format':{'type':'json_object'},'logprobs':true,'top_logprobs':2,"
              "'stop':['END'],'max_tokens':300,'seed':7,'user':'u1','top_p':0.9,'messages':["
              "{'role':'user','content':'Q\\n\\nThink for up to 100 tokens.'},"
              "{'role':'assistant','content':'S'},"
              "{'role':'user','content':'Now answer in under 300 tokens!!!'}]}");
  run_free(&r);
  free_replies(replies, 2);
  pd_engine_free(e);
  /* Streamed chains: stream and include_usage on every call. */
  e = engine(&p, 1, "{'messages':[{'role':'user','content':'Q'}],'max_completion_tokens':9}", 1,
             "max_tokens");
  pd_call_t call;
  assert_int_equal(pd_engine_next(e, &call), 1);
  json_t *body = call_body(&call);
  assert_json(body, "{'model':'up-model','stream':true,'stream_options':{'include_usage':"
                    "true},'max_tokens':100,'messages':[{'role':'user','content':"
                    "'Q\\n\\nThink for up to 100 tokens.'}]}");
  json_decref(body);
  pd_engine_free(e);
}

static void usage_sums(void **state) {
  (void)state;
  pd_policy_t p = policy(PD_MODE_CHAT, 2);
  pd_engine_t *e = engine(&p, 2, "{'messages':[{'role':'user','content':'Q'}]}", 0, "max_tokens");
  json_t *replies[] = {chat_reply("abcdefgh", "stop", -1, 0), chat_reply("S2", "stop", 7, 11),
                       J("{'choices':[{'message':{'content':'A'},'finish_reason':'stop'}],"
                         "'usage':{'prompt_tokens':30,'completion_tokens':9,"
                         "'completion_tokens_details':{'reasoning_tokens':4}}}")};
  run_t r;
  drive(e, replies, 3, 0, &r);
  /* The first call has no usage: (8 + 3) / 4 = 2 completion tokens, 0 prompt. */
  assert_int_equal(r.res.usage.prompt_tokens, 37);
  assert_int_equal(r.res.usage.completion_tokens, 2 + 11 + 9);
  assert_int_equal(r.res.usage.reasoning_tokens, 2 + 11 + 4);
  run_free(&r);
  free_replies(replies, 3);
  pd_engine_free(e);
}

static void upstream_reasoning(void **state) {
  (void)state;
  pd_policy_t p = policy(PD_MODE_CHAT, 2);
  pd_engine_t *e = engine(&p, 2, "{'messages':[{'role':'user','content':'Q'}]}", 0, "max_tokens");
  json_t *replies[] = {
      J("{'choices':[{'message':{'content':'','reasoning_content':'R1'},'finish_reason':'stop'}],"
        "'usage':{'prompt_tokens':1,'completion_tokens':5}}"),
      J("{'choices':[{'message':{'content':'C2','reasoning_content':'R2'},'finish_reason':"
        "'stop'}],'usage':{'prompt_tokens':1,'completion_tokens':5}}"),
      J("{'choices':[{'message':{'content':'A','reasoning':'RA'},'finish_reason':'stop'}],"
        "'usage':{'prompt_tokens':1,'completion_tokens':5}}")};
  run_t r;
  drive(e, replies, 3, 0, &r);
  assert_json(json_array_get(json_object_get(r.bodies[1], "messages"), 1),
              "{'role':'assistant','content':'R1\\nWait? Did I make a mistake?'}");
  assert_json(json_array_get(json_object_get(r.bodies[2], "messages"), 3),
              "{'role':'assistant','content':'C2'}");
  assert_string_equal(r.log, "T:R1|T:\nWait? Did I make a mistake?\n|T:R2|T:C2|T:RA|C:A|F:stop|");
  assert_string_equal(r.res.content, "A");
  run_free(&r);
  free_replies(replies, 3);
  pd_engine_free(e);
}

static void tool_calls_answer(void **state) {
  (void)state;
  pd_policy_t p = policy(PD_MODE_CHAT, 1);
  const char *tc = "[{'id':'call_1','type':'function','function':{'name':'f','arguments':'{}'}}]";
  char reply[512];
  snprintf(reply, sizeof reply,
           "{'choices':[{'message':{'role':'assistant','content':null,'tool_calls':%s},"
           "'finish_reason':'tool_calls'}],'usage':{'prompt_tokens':1,'completion_tokens':2}}",
           tc);
  for (int streamed = 0; streamed < 2; streamed++) {
    pd_engine_t *e = engine(&p, 1, "{'messages':[{'role':'user','content':'Q'}],'tools':[]}",
                            streamed, "max_tokens");
    json_t *replies[] = {chat_reply("S", "stop", 1, 1), J(reply)};
    run_t r;
    drive(e, replies, 2, streamed, &r);
    assert_string_equal(r.merged, "T:S|X:[{'function':{'arguments':'{}','name':'f'},'id':"
                                  "'call_1','index':0,'type':'function'}]|F:tool_calls");
    assert_string_equal(r.res.finish_reason, "tool_calls");
    assert_string_equal(r.res.content, "");
    if (streamed)
      assert_null(r.res.tool_calls);
    else
      assert_json(r.res.tool_calls, tc);
    run_free(&r);
    free_replies(replies, 2);
    pd_engine_free(e);
  }
}

/* ---- prefill mode ---- */

static void prefill_dialects(void **state) {
  (void)state;
  static const struct {
    pd_dialect_t d;
    const char *body_flags; /* in the body */
    const char *msg_flag;   /* on the prefix message */
  } cases[] = {
      {PD_DIALECT_VLLM, ",'continue_final_message':true,'add_generation_prompt':false", ""},
      {PD_DIALECT_DEEPSEEK, "", ",'prefix':true"},
      {PD_DIALECT_MISTRAL, "", ",'prefix':true"},
      {PD_DIALECT_LLAMACPP, "", ""},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    pd_policy_t p = policy(PD_MODE_PREFILL, 2);
    p.prefill.dialect = cases[i].d;
    pd_engine_t *e = engine(&p, 2,
                            "{'messages':[{'role':'user','content':'Q'}],'stop':'X',"
                            "'temperature':0}",
                            0, "max_tokens");
    json_t *replies[] = {chat_reply("abc", "stop", 1, 10), chat_reply("def", "stop", 1, 10),
                         chat_reply("42", "stop", 1, 2)};
    run_t r;
    drive(e, replies, 3, 0, &r);
    char want[1024];
    snprintf(want, sizeof want,
             "{'model':'up-model','temperature':0,'max_tokens':100,'stop':['</think>']%s,"
             "'messages':[{'role':'user','content':'Q'},{'role':'assistant','content':"
             "'<think>\\n'%s}]}",
             cases[i].body_flags, cases[i].msg_flag);
    assert_json(r.bodies[0], want);
    snprintf(want, sizeof want,
             "{'model':'up-model','temperature':0,'max_tokens':100,'stop':['</think>']%s,"
             "'messages':[{'role':'user','content':'Q'},{'role':'assistant','content':"
             "'<think>\\nabcWait'%s}]}",
             cases[i].body_flags, cases[i].msg_flag);
    assert_json(r.bodies[1], want);
    snprintf(want, sizeof want,
             "{'model':'up-model','temperature':0,'max_tokens':50,'stop':'X'%s,"
             "'messages':[{'role':'user','content':'Q'},{'role':'assistant','content':"
             "'<think>\\nabcWaitdef</think>\\n\\n'%s}]}",
             cases[i].body_flags, cases[i].msg_flag);
    assert_json(r.bodies[2], want);
    assert_string_equal(r.log, "T:abc|T:\nWait\n|T:def|C:42|F:stop|");
    assert_string_equal(r.res.reasoning, "abc\nWait\ndef");
    run_free(&r);
    free_replies(replies, 3);
    pd_engine_free(e);
  }
}

static void prefill_ignore_eot_and_length_cut(void **state) {
  (void)state;
  pd_policy_t p = policy(PD_MODE_PREFILL, 3);
  pd_engine_t *e = engine(&p, 3, "{'messages':[{'role':'user','content':'Q'}]}", 0, "max_tokens");
  json_t *replies[] = {chat_reply("abc", "length", 1, 100), chat_reply("def", "stop", 1, 10),
                       chat_reply("ghi", "length", 1, 100), chat_reply("42", "stop", 1, 2)};
  run_t r;
  drive(e, replies, 4, 0, &r);
  const char *prefixes[] = {"<think>\n", "<think>\nabc", "<think>\nabcdefWait",
                            "<think>\nabcdefWaitghi\n</think>\nFinal Answer:\n\n"};
  for (int k = 0; k < 4; k++) {
    const json_t *msgs = json_object_get(r.bodies[k], "messages");
    assert_int_equal(json_array_size(msgs), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 1), "content")),
                        prefixes[k]);
  }
  assert_null(json_object_get(r.bodies[3], "stop"));
  assert_string_equal(r.log, "T:abc|T:def|T:\nWait\n|T:ghi|C:42|F:stop|");
  run_free(&r);
  free_replies(replies, 4);
  pd_engine_free(e);
}

static void prefill_cut_by_max_think(void **state) {
  (void)state;
  /* Spent max_think_tokens with a clean stop: length_cut but no extra "\n". */
  pd_policy_t p = policy(PD_MODE_PREFILL, 4);
  p.max_think_tokens = 20;
  pd_engine_t *e = engine(&p, 4, "{'messages':[{'role':'user','content':'Q'}]}", 0, "max_tokens");
  json_t *replies[] = {chat_reply("abc", "stop", 1, 20), chat_reply("42", "stop", 1, 2)};
  run_t r;
  drive(e, replies, 2, 0, &r);
  assert_json(json_object_get(r.bodies[0], "max_tokens"), "20");
  assert_json(json_array_get(json_object_get(r.bodies[1], "messages"), 1),
              "{'role':'assistant','content':'<think>\\nabc</think>\\nFinal Answer:\\n\\n'}");
  run_free(&r);
  free_replies(replies, 2);
  pd_engine_free(e);
  /* A length cut whose text already ends in a newline gets none added; a natural end after R
   * calls is not a cut. */
  p.max_think_tokens = 0;
  e = engine(&p, 1, "{'messages':[{'role':'user','content':'Q'}]}", 0, "max_tokens");
  json_t *r2[] = {chat_reply("abc\n", "length", 1, 100), chat_reply("42", "stop", 1, 2)};
  drive(e, r2, 2, 0, &r);
  assert_json(json_array_get(json_object_get(r.bodies[1], "messages"), 1),
              "{'role':'assistant','content':'<think>\\nabc\\n</think>\\nFinal Answer:\\n\\n'}");
  run_free(&r);
  free_replies(r2, 2);
  pd_engine_free(e);
  e = engine(&p, 1, "{'messages':[{'role':'user','content':'Q'}]}", 0, "max_tokens");
  json_t *r3[] = {chat_reply("abc", "stop", 1, 10), chat_reply("42", "stop", 1, 2)};
  drive(e, r3, 2, 0, &r);
  assert_json(json_array_get(json_object_get(r.bodies[1], "messages"), 1),
              "{'role':'assistant','content':'<think>\\nabc</think>\\n\\n'}");
  run_free(&r);
  free_replies(r3, 2);
  pd_engine_free(e);
}

/* ---- completions mode ---- */

static void completions_chatml(void **state) {
  (void)state;
  pd_policy_t p = policy(PD_MODE_COMPLETIONS, 2);
  const char *req = "{'model':'m','messages':[{'role':'system','content':'S'},{'role':'user',"
                    "'content':[{'type':'text','text':'Q1'},{'type':'text','text':'Q2'}]}],"
                    "'temperature':0.2,'top_k':5,'stop':'X','tools':[],'max_tokens':77,"
                    "'response_format':{'type':'text'},'n':1}";
  for (int streamed = 0; streamed < 2; streamed++) {
    pd_engine_t *e = engine(&p, 2, req, streamed, "max_completion_tokens");
    json_t *replies[] = {text_reply("abc", "stop", 3, 10), text_reply("def", "length", 3, 100),
                         text_reply("42", "stop", 3, 2)};
    run_t r;
    drive(e, replies, 3, streamed, &r);
    const char *stream = streamed ? ",'stream':true,'stream_options':{'include_usage':true}" : "";
    const char *head = "<|im_start|>system\\nS<|im_end|>\\n<|im_start|>user\\nQ1Q2<|im_end|>\\n"
                       "<|im_start|>assistant\\n<think>\\n";
    char want[1024];
    snprintf(want, sizeof want,
             "{'model':'up-model','prompt':'%s','max_tokens':100,'temperature':0.2,'top_k':5,"
             "'stop':['</think>']%s}",
             head, stream);
    assert_json(r.bodies[0], want);
    snprintf(want, sizeof want,
             "{'model':'up-model','prompt':'%sabcWait','max_tokens':100,'temperature':0.2,"
             "'top_k':5,'stop':['</think>']%s}",
             head, stream);
    assert_json(r.bodies[1], want);
    snprintf(want, sizeof want,
             "{'model':'up-model','prompt':'%sabcWaitdef\\n</think>\\nFinal Answer:\\n\\n',"
             "'max_tokens':77,'temperature':0.2,'top_k':5,'stop':'X'%s}",
             head, stream);
    assert_json(r.bodies[2], want);
    for (int k = 0; k < 3; k++)
      assert_string_equal(r.paths[k], "/completions");
    assert_string_equal(r.merged, "T:abc\nWait\ndef|C:42|F:stop");
    assert_string_equal(r.res.content, "42");
    assert_int_equal(r.res.usage.prompt_tokens, 9);
    assert_int_equal(r.res.usage.reasoning_tokens, 110);
    run_free(&r);
    free_replies(replies, 3);
    pd_engine_free(e);
  }
}

static void completions_custom_template(void **state) {
  (void)state;
  pd_policy_t p = policy(PD_MODE_COMPLETIONS, 1);
  p.tmpl.system = "S:{content}\n";
  p.tmpl.user = "U:{content}\n";
  p.tmpl.assistant = "A:{content}/{content}\n";
  p.tmpl.assistant_start = "A:";
  p.template_name = "custom";
  pd_engine_t *e = engine(&p, 1,
                          "{'messages':[{'role':'developer','content':'d'},{'role':'system',"
                          "'content':'s'},{'role':'user','content':'u'},{'role':'assistant',"
                          "'content':'a'},{'role':'tool','content':'t'},{'role':'user',"
                          "'content':'q'}]}",
                          0, "max_tokens");
  pd_call_t call;
  assert_int_equal(pd_engine_next(e, &call), 1);
  json_t *body = call_body(&call);
  assert_json(body, "{'model':'up-model','prompt':'S:d\\nS:s\\nU:u\\nA:a/a\\nU:t\\nU:q\\n"
                    "A:<think>\\n','max_tokens':100,'stop':['</think>']}");
  json_decref(body);
  pd_engine_free(e);
}

/* ---- streaming ---- */

static void streaming_matches_whole(void **state) {
  (void)state;
  for (int mode = PD_MODE_CHAT; mode <= PD_MODE_PREFILL; mode++) {
    pd_policy_t p = policy((pd_mode_t)mode, 2);
    run_t runs[2];
    for (int streamed = 0; streamed < 2; streamed++) {
      pd_engine_t *e =
          engine(&p, 2, "{'messages':[{'role':'user','content':'Q'}]}", streamed, "max_tokens");
      json_t *replies[] = {
          J("{'choices':[{'message':{'content':'ab','reasoning_content':'rr'},'finish_reason':"
            "'stop'}],'usage':{'prompt_tokens':4,'completion_tokens':6}}"),
          chat_reply("cd", "length", 4, 100), chat_reply("Answer", "stop", 9, 3)};
      drive(e, replies, 3, streamed, &runs[streamed]);
      /* Bodies differ only in the stream settings. */
      for (int k = 0; k < 3; k++) {
        json_t *b = json_deep_copy(runs[streamed].bodies[k]);
        if (streamed) {
          assert_json(json_object_get(b, "stream"), "true");
          assert_json(json_object_get(b, "stream_options"), "{'include_usage':true}");
          json_object_del(b, "stream");
          json_object_del(b, "stream_options");
          assert_true(json_equal(b, runs[0].bodies[k]));
        }
        json_decref(b);
      }
      free_replies(replies, 3);
      runs[streamed].res.content = strdup(runs[streamed].res.content);
      runs[streamed].res.reasoning = strdup(runs[streamed].res.reasoning);
      pd_engine_free(e);
    }
    assert_string_equal(runs[0].merged, runs[1].merged);
    assert_string_equal(runs[0].res.content, runs[1].res.content);
    assert_string_equal(runs[0].res.reasoning, runs[1].res.reasoning);
    assert_memory_equal(&runs[0].res.usage, &runs[1].res.usage, sizeof(pd_usage_t));
    assert_int_equal(runs[1].res.calls, 3);
    assert_int_equal(runs[1].res.usage.completion_tokens, 109);
    if (mode == PD_MODE_CHAT)
      assert_string_equal(runs[1].merged,
                          "T:rrab\nWait? Did I make a mistake?\ncd|C:Answer|F:stop");
    else
      assert_string_equal(runs[1].merged, "T:rrab\nWait\ncd|C:Answer|F:stop");
    for (int s = 0; s < 2; s++) {
      free((char *)runs[s].res.content);
      free((char *)runs[s].res.reasoning);
      run_free(&runs[s]);
    }
  }
}

static void streaming_without_usage(void **state) {
  (void)state;
  pd_policy_t p = policy(PD_MODE_CHAT, 1);
  pd_engine_t *e = engine(&p, 1, "{'messages':[{'role':'user','content':'Q'}]}", 1, "max_tokens");
  json_t *replies[] = {chat_reply("abcde", "stop", -1, 0), chat_reply("xy", NULL, -1, 0)};
  json_object_del(json_array_get(json_object_get(replies[1], "choices"), 0), "finish_reason");
  run_t r;
  drive(e, replies, 2, 1, &r);
  /* One token per text-carrying chunk. */
  assert_int_equal(r.res.usage.completion_tokens, 7);
  assert_int_equal(r.res.usage.reasoning_tokens, 5);
  assert_int_equal(r.res.usage.prompt_tokens, 0);
  assert_string_equal(r.res.finish_reason, "stop");
  /* An error event mid-stream and a stray end-of-call. */
  json_t *err = J("{'error':{'message':'boom'}}");
  assert_int_equal(feed_chunk(e, err, on_out, &r), -1);
  assert_int_equal(pd_engine_on_call_end(e, on_out, &r), 0);
  json_decref(err);
  run_free(&r);
  free_replies(replies, 2);
  pd_engine_free(e);
}

/* Starts the next call of e (which must be one) and feeds it the chunks of `chunks` (a JSON
 * array, single quotes); `done` then sends its [DONE]. Returns pd_engine_on_call_end's code. */
static int stream_call(pd_engine_t *e, const char *chunks, int done, run_t *r) {
  pd_call_t call;
  assert_int_equal(pd_engine_next(e, &call), 1);
  free(call.body);
  json_t *arr = J(chunks);
  size_t i;
  json_t *ch;
  json_array_foreach(arr, i, ch) assert_int_equal(feed_chunk(e, ch, on_out, r), 0);
  json_decref(arr);
  if (done)
    pd_engine_on_done_marker(e);
  return pd_engine_on_call_end(e, on_out, r);
}

/* A streamed call is complete once it carried a finish_reason or its [DONE]; one that simply
 * stopped was cut off and is refused, thinking or answer, with no finish made up. */
static void stream_cut_is_incomplete(void **state) {
  (void)state;
  pd_policy_t p = policy(PD_MODE_CHAT, 2);
  static const char *const text =
      "[{'choices':[{'index':0,'delta':{'role':'assistant'}}]},"
      "{'choices':[{'index':0,'delta':{'content':'ab'}}]},"
      "{'choices':[{'index':0,'delta':{'content':'cd'},'finish_reason':null}]}]";
  for (int cut = 0; cut < 3; cut++) { /* the call that breaks off: think1, think2, answer */
    pd_engine_t *e = engine(&p, 2, "{'messages':[{'role':'user','content':'Q'}]}", 1, "max_tokens");
    run_t r;
    memset(&r, 0, sizeof r);
    for (int k = 0; k < cut; k++)
      assert_int_equal(
          stream_call(e,
                      "[{'choices':[{'index':0,'delta':{'content':'s'},'finish_reason':'stop'}]}]",
                      1, &r),
          0);
    assert_int_equal(stream_call(e, text, 0, &r), PD_ENGINE_EINCOMPLETE);
    /* The chain still waits on the broken call: no next call, nothing finished. */
    pd_call_t call;
    assert_int_equal(pd_engine_next(e, &call), -1);
    assert_null(call.body);
    assert_null(strstr(r.log, "F:"));
    pd_result_t res;
    pd_engine_result(e, &res);
    assert_null(res.finish_reason);
    assert_int_equal(res.think_calls, cut < 2 ? cut + 1 : 2);
    assert_int_equal(res.calls, cut + 1);
    pd_engine_free(e);
  }

  /* An empty string is no finish_reason either; nor is an empty stream complete. */
  pd_engine_t *e = engine(&p, 1, "{'messages':[{'role':'user','content':'Q'}]}", 1, "max_tokens");
  run_t r;
  memset(&r, 0, sizeof r);
  assert_int_equal(
      stream_call(e, "[{'choices':[{'index':0,'delta':{'content':'ab'},'finish_reason':''}]}]", 0,
                  &r),
      PD_ENGINE_EINCOMPLETE);
  pd_engine_free(e);
  e = engine(&p, 1, "{'messages':[{'role':'user','content':'Q'}]}", 1, "max_tokens");
  assert_int_equal(stream_call(e, "[]", 0, &r), PD_ENGINE_EINCOMPLETE);
  pd_engine_free(e);
}

/* What completes a stream: a finish_reason without [DONE] (servers that omit it), [DONE]
 * without a finish_reason ("stop" then), both (OpenAI); a later empty finish_reason does not
 * hide an earlier one. A whole JSON reply without finish_reason is complete ("stop"). */
static void stream_complete_forms(void **state) {
  (void)state;
  pd_policy_t p = policy(PD_MODE_CHAT, 1);
  static const struct {
    const char *chunks;
    int done;
    const char *finish;
  } cases[] = {
      {"[{'choices':[{'index':0,'delta':{'content':'A'},'finish_reason':'length'}]}]", 0, "length"},
      {"[{'choices':[{'index':0,'delta':{'content':'A'}}]}]", 1, "stop"},
      {"[{'choices':[{'index':0,'delta':{'content':'A'},'finish_reason':'tool_calls'}]},"
       "{'choices':[],'usage':{'prompt_tokens':1,'completion_tokens':1}}]",
       1, "tool_calls"},
      {"[{'choices':[{'index':0,'delta':{'content':'A'},'finish_reason':'length'}]},"
       "{'choices':[{'index':0,'delta':{},'finish_reason':''}]}]",
       0, "length"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    pd_engine_t *e = engine(&p, 1, "{'messages':[{'role':'user','content':'Q'}]}", 1, "max_tokens");
    run_t r;
    memset(&r, 0, sizeof r);
    /* The thinking call ends the same ways. */
    assert_int_equal(stream_call(e, cases[i].chunks, cases[i].done, &r), 0);
    assert_int_equal(stream_call(e, cases[i].chunks, cases[i].done, &r), 0);
    pd_call_t call;
    assert_int_equal(pd_engine_next(e, &call), 0);
    pd_result_t res;
    pd_engine_result(e, &res);
    assert_string_equal(res.finish_reason, cases[i].finish);
    assert_non_null(strstr(r.log, "F:"));
    /* The stray [DONE] and end of a finished chain change nothing. */
    pd_engine_on_done_marker(e);
    assert_int_equal(pd_engine_on_call_end(e, on_out, &r), 0);
    pd_engine_free(e);
  }

  pd_engine_t *e = engine(&p, 1, "{'messages':[{'role':'user','content':'Q'}]}", 0, "max_tokens");
  json_t *replies[] = {chat_reply("S", NULL, -1, 0), chat_reply("A", NULL, -1, 0)};
  run_t r;
  drive(e, replies, 2, 0, &r);
  assert_string_equal(r.res.finish_reason, "stop");
  run_free(&r);
  free_replies(replies, 2);
  pd_engine_free(e);
}

static void bad_replies(void **state) {
  (void)state;
  pd_policy_t p = policy(PD_MODE_CHAT, 1);
  static const char *const bad[] = {"{'error':{'message':'x'}}", "{'choices':[]}",
                                    "{'choices':[1]}", "{'choices':{}}", "[]"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    pd_engine_t *e = engine(&p, 1, "{'messages':[{'role':'user','content':'Q'}]}", 0, "max_tokens");
    pd_call_t call;
    assert_int_equal(pd_engine_next(e, &call), 1);
    free(call.body);
    json_t *reply = J(bad[i]);
    assert_int_equal(feed_response(e, reply, on_out, NULL), -1);
    json_decref(reply);
    json_t *chunk = J("{'error':{'message':'x'}}");
    assert_int_equal(feed_chunk(e, chunk, NULL, NULL), -1);
    json_decref(chunk);
    pd_engine_free(e);
  }
}

/* The one-pass feeders against the tree, chunk by chunk and as whole replies, on texts the
 * shared tests do not write: escapes, "reasoning" beside an empty or absent "reasoning_content",
 * repeated keys, members of other types, error objects with and without a message, tool calls,
 * usage. Both engines (a forced thinking call, and an unforced answer call) must emit, refuse and
 * account the same. */
static void chunk_read_matches_tree(void **state) {
  (void)state;
  static const char *const chunks[] = {
      "{\"choices\":[{\"delta\":{\"content\":\"a\\u00e9\\n\\\"q\\\"\\ud83d\\ude00\"}}]}",
      "{\"choices\":[{\"delta\":{\"reasoning\":\"r1\"}}]}",
      "{\"choices\":[{\"delta\":{\"reasoning_content\":\"\",\"reasoning\":\"hidden\"}}]}",
      "{\"choices\":[{\"delta\":{\"reasoning_content\":7,\"reasoning\":\"r\\/2\"}}]}",
      "{\"choices\":[{\"delta\":{\"content\":\"x\",\"content\":\"y\"}}]}",
      "{\"choices\":[{\"delta\":{\"content\":null}}],\"usage\":null}",
      "{\"choices\":[{\"delta\":[1,2]}]}",
      "{\"choices\":[7,{\"delta\":{\"content\":\"second\"}}]}",
      "{\"choices\":{}}",
      "{\"choices\":[{\"delta\":{},\"finish_reason\":\"\"}]}",
      "{\"choices\":[{\"delta\":{},\"finish_reason\":\"len\\u0067th\"}]}",
      "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c\",\"function\":"
      "{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":1}\"}}]}}]}",
      "{\"choices\":[{\"delta\":{\"tool_calls\":[]}}]}",
      "{\"choices\":[{\"delta\":{\"tool_calls\":{\"not\":\"an array\"}}}]}",
      "{\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4.5,"
      "\"completion_tokens_details\":{\"reasoning_tokens\":\"2\"}}}",
      "{\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,"
      "\"completion_tokens_details\":{\"reasoning_tokens\":2},\"prompt_tokens\":5}}",
      "{\"error\":{\"message\":\"boom\"}}",
      "{\"error\":{\"code\":1}}",
      "{\"error\":\"text\",\"choices\":[{\"delta\":{\"content\":\"after\"}}]}",
  };
  pd_policy_t p = policy(PD_MODE_CHAT, 1);
  for (int plain = 0; plain < 2; plain++) {
    size_t nchunks = sizeof chunks / sizeof chunks[0];
    for (size_t i = 0; i < 2 * nchunks; i++) {
      const char *req = plain ? "{'messages':[{'role':'user','content':'Q'}],'ponder':{'rounds':0}}"
                              : "{'messages':[{'role':'user','content':'Q'}]}";
      pd_engine_t *a = engine(&p, plain ? 0 : 1, req, 1, "max_tokens");
      pd_engine_t *b = engine(&p, plain ? 0 : 1, req, 1, "max_tokens");
      pd_call_t call;
      assert_int_equal(pd_engine_next(a, &call), 1);
      free(call.body);
      assert_int_equal(pd_engine_next(b, &call), 1);
      free(call.body);
      assert_true(pd_engine_reads_one_pass(b));
      run_t ra, rb;
      memset(&ra, 0, sizeof ra);
      memset(&rb, 0, sizeof rb);
      /* The chunk as it is, then as a whole reply: its "delta"s renamed "message". */
      char text[512];
      snprintf(text, sizeof text, "%s", chunks[i % nchunks]);
      int whole = i >= nchunks;
      for (char *d = whole ? strstr(text, "\"delta\"") : NULL; d; d = strstr(d, "\"delta\""))
        memmove(d + 9, d + 7, strlen(d + 7) + 1), memcpy(d, "\"message\"", 9);
      json_t *tree = pd_openai_load_reply(text, strlen(text));
      assert_non_null(tree);
      pd_openai_msg_t m;
      assert_int_equal(pd_openai_read_reply(text, strlen(text), !whole, &m), 1);
      int rca = whole ? pd_engine_on_response(a, tree, on_out, &ra)
                      : pd_engine_on_chunk(a, tree, on_out, &ra);
      int rcb = whole ? pd_engine_on_response_read(b, &m, on_out, &rb)
                      : pd_engine_on_chunk_read(b, &m, on_out, &rb);
      json_decref(tree);
      if (rca != rcb || strcmp(ra.log, rb.log) != 0)
        fail_msg("chunk %zu (plain %d): tree %d '%s', read %d '%s'", i, plain, rca, ra.log, rcb,
                 rb.log);
      if (rca == 0 && !whole) {
        pd_engine_on_done_marker(a);
        pd_engine_on_done_marker(b);
        assert_int_equal(pd_engine_on_call_end(a, on_out, &ra),
                         pd_engine_on_call_end(b, on_out, &rb));
        assert_string_equal(ra.log, rb.log);
        pd_result_t x, y;
        pd_engine_result(a, &x);
        pd_engine_result(b, &y);
        assert_int_equal(x.usage.prompt_tokens, y.usage.prompt_tokens);
        assert_int_equal(x.usage.completion_tokens, y.usage.completion_tokens);
        assert_int_equal(x.usage.reasoning_tokens, y.usage.reasoning_tokens);
        assert_int_equal(x.reasoning_len, y.reasoning_len);
        assert_int_equal(x.content_len, y.content_len);
        assert_string_equal(x.finish_reason ? x.finish_reason : "-",
                            y.finish_reason ? y.finish_reason : "-");
      }
      if (rca == 0 && whole) { /* the call ended with the reply: the kept tool calls too */
        pd_result_t x, y;
        pd_engine_result(a, &x);
        pd_engine_result(b, &y);
        assert_true(json_equal(x.tool_calls, y.tool_calls) || (!x.tool_calls && !y.tool_calls));
        assert_int_equal(x.usage.completion_tokens, y.usage.completion_tokens);
        assert_int_equal(x.usage.reasoning_tokens, y.usage.reasoning_tokens);
        assert_string_equal(x.finish_reason ? x.finish_reason : "-",
                            y.finish_reason ? y.finish_reason : "-");
      }
      pd_engine_free(a);
      pd_engine_free(b);
    }
  }
}

static void unforced_plain_call(void **state) {
  (void)state;
  pd_policy_t p = policy(PD_MODE_PREFILL, 2);
  /* The last message is a tool result: one plain call, messages untouched. */
  pd_engine_t *e = engine(&p, 2,
                          "{'model':'m','messages':[{'role':'user','content':'Q'},{'role':'tool',"
                          "'tool_call_id':'c','content':'r'}],'tools':[],'ponder':{}}",
                          0, "max_tokens");
  json_t *replies[] = {chat_reply("done", "stop", 2, 3)};
  run_t r;
  drive(e, replies, 1, 0, &r);
  assert_string_equal(r.paths[0], "/chat/completions");
  assert_int_equal(r.answers[0], 1);
  assert_json(r.bodies[0], "{'model':'up-model','messages':[{'role':'user','content':'Q'},"
                           "{'role':'tool','tool_call_id':'c','content':'r'}],'tools':[]}");
  assert_string_equal(r.log, "C:done|F:stop|");
  assert_int_equal(r.res.think_calls, 0);
  assert_int_equal(r.res.usage.reasoning_tokens, 0);
  run_free(&r);
  free_replies(replies, 1);
  pd_engine_free(e);
}

/* ---- validation ---- */

static void validate_errors(void **state) {
  (void)state;
  static const struct {
    const char *req;
    const char *param; /* NULL: valid */
    const char *msg;
  } cases[] = {
      {"{'messages':[{'role':'user','content':'hi'}],'model':'m','n':2,'max_tokens':5,"
       "'stream':true,'temperature':1,'top_p':1.0,'stop':['a','b'],'tools':[],"
       "'stream_options':{},'max_completion_tokens':null}",
       NULL, NULL},
      {"{'messages':[{'role':'user'},{'role':'assistant','content':null,'tool_calls':[]}],"
       "'stop':'x'}",
       NULL, NULL},
      {"[]", NULL, "The request body must be a JSON object."},
      {"{}", "messages", "'messages' must be a non-empty array"},
      {"{'messages':[]}", "messages", "'messages' must be a non-empty array"},
      {"{'messages':'hi'}", "messages", "'messages' must be a non-empty array"},
      {"{'messages':[1]}", "messages", NULL},
      {"{'messages':[{'content':'x'}]}", "messages", NULL},
      {"{'messages':[{'role':'user','content':5}]}", "messages", NULL},
      {"{'messages':[{'role':'user'}],'model':3}", "model",
       "Invalid type for 'model': expected a string."},
      {"{'messages':[{'role':'user'}],'n':'2'}", "n", "Invalid type for 'n': expected an integer."},
      {"{'messages':[{'role':'user'}],'n':1.5}", "n", "Invalid type for 'n': expected an integer."},
      {"{'messages':[{'role':'user'}],'n':0}", "n", NULL},
      {"{'messages':[{'role':'user'}],'n':129}", "n", NULL},
      {"{'messages':[{'role':'user'}],'max_tokens':0}", "max_tokens", NULL},
      {"{'messages':[{'role':'user'}],'max_completion_tokens':'9'}", "max_completion_tokens", NULL},
      {"{'messages':[{'role':'user'}],'stream':1}", "stream",
       "Invalid type for 'stream': expected a boolean."},
      {"{'messages':[{'role':'user'}],'temperature':'hot'}", "temperature", NULL},
      {"{'messages':[{'role':'user'}],'top_p':[]}", "top_p", NULL},
      {"{'messages':[{'role':'user'}],'stop':['a',1]}", "stop", NULL},
      {"{'messages':[{'role':'user'}],'stop':3}", "stop", NULL},
      {"{'messages':[{'role':'user'}],'tools':{}}", "tools", NULL},
      {"{'messages':[{'role':'user'}],'stream_options':true}", "stream_options", NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    json_t *req = J(cases[i].req);
    const char *msg = "unset", *param = "unset";
    int rc = pd_engine_validate(req, &msg, &param);
    json_decref(req);
    int want_ok = !cases[i].param && !cases[i].msg;
    if (rc != (want_ok ? 0 : -1))
      fail_msg("case %zu (%s): rc %d", i, cases[i].req, rc);
    if (want_ok)
      continue;
    assert_non_null(msg);
    if (cases[i].msg)
      assert_string_equal(msg, cases[i].msg);
    if (cases[i].param)
      assert_string_equal(param, cases[i].param);
    else
      assert_null(param);
  }
}

static void should_force(void **state) {
  (void)state;
  json_t *user = J("{'messages':[{'role':'system','content':'s'},{'role':'user','content':'q'}]}");
  json_t *tool = J("{'messages':[{'role':'user','content':'q'},{'role':'tool','content':'r'}]}");
  json_t *empty = J("{'messages':[]}");
  assert_true(pd_engine_should_force(user, 1));
  assert_false(pd_engine_should_force(user, 0));
  assert_false(pd_engine_should_force(tool, 2));
  assert_false(pd_engine_should_force(empty, 2));
  json_decref(user);
  json_decref(tool);
  json_decref(empty);
}

/* ---- bounds ---- */

static pd_engine_t *engine_opts(const pd_policy_t *p, int rounds, int stream, long max_think,
                                int relay) {
  pd_engine_opts_t o = {p, rounds, "up-model", "max_tokens", stream, max_think, relay};
  json_t *request = J("{'messages':[{'role':'user','content':'Q'}]}");
  pd_engine_t *e = pd_engine_new(&o, request);
  json_decref(request);
  assert_non_null(e);
  return e;
}

static void thinking_is_bounded(void **state) {
  (void)state;
  pd_policy_t p = policy(PD_MODE_CHAT, 3);
  char big[601];
  memset(big, 's', 600);
  big[600] = '\0';
  /* Whole replies: two thinking replies of 600 bytes fit in 1,500 (with the separator), the
   * third does not. */
  pd_engine_t *e = engine_opts(&p, 3, 0, 1500, 0);
  pd_call_t call;
  run_t r;
  memset(&r, 0, sizeof r);
  for (int k = 0; k < 2; k++) {
    assert_int_equal(pd_engine_next(e, &call), 1);
    free(call.body);
    json_t *reply = chat_reply(big, "stop", 1, 1);
    assert_int_equal(feed_response(e, reply, on_out, &r), 0);
    json_decref(reply);
  }
  assert_int_equal(pd_engine_next(e, &call), 1);
  free(call.body);
  json_t *reply = chat_reply(big, "stop", 1, 1);
  assert_int_equal(feed_response(e, reply, on_out, &r), PD_ENGINE_ETOOLARGE);
  json_decref(reply);
  pd_result_t res;
  pd_engine_result(e, &res);
  assert_true(res.reasoning_len <= 1500);
  pd_engine_free(e);

  /* Streamed: the chunk that would cross the bound is refused, and nothing of it is kept. */
  e = engine_opts(&p, 3, 1, 100, 0);
  assert_int_equal(pd_engine_next(e, &call), 1);
  free(call.body);
  json_t *ch = J("{'choices':[{'index':0,'delta':{'reasoning_content':'0123456789'}}]}");
  int rc = 0, fed = 0;
  while ((rc = feed_chunk(e, ch, on_out, &r)) == 0)
    fed++;
  json_decref(ch);
  assert_int_equal(rc, PD_ENGINE_ETOOLARGE);
  assert_int_equal(fed, 10);
  pd_engine_result(e, &res);
  assert_int_equal(res.reasoning_len, 100);
  pd_engine_free(e);

  /* 0 = no bound (the unit tests' default). */
  e = engine_opts(&p, 1, 1, 0, 0);
  assert_int_equal(pd_engine_next(e, &call), 1);
  free(call.body);
  ch = J("{'choices':[{'index':0,'delta':{'content':'0123456789'}}]}");
  for (int i = 0; i < 1000; i++)
    assert_int_equal(feed_chunk(e, ch, NULL, NULL), 0);
  json_decref(ch);
  pd_engine_free(e);
}

static void relayed_answer_is_not_kept(void **state) {
  (void)state;
  pd_policy_t p = policy(PD_MODE_CHAT, 1);
  pd_engine_t *e = engine_opts(&p, 1, 1, 64, 1);
  json_t *replies[] = {chat_reply("think", "stop", 1, 1), chat_reply("the answer", "stop", 1, 1)};
  run_t r;
  drive(e, replies, 2, 1, &r);
  /* Emitted as it came, not held: the answer is not bounded by max_think_bytes either. */
  assert_non_null(strstr(r.merged, "C:the answer"));
  assert_string_equal(r.res.content, "");
  assert_string_equal(r.res.reasoning, "think");
  assert_string_equal(r.res.finish_reason, "stop");
  run_free(&r);
  free_replies(replies, 2);
  pd_engine_free(e);
}

static void max_calls(void **state) {
  (void)state;
  assert_int_equal(pd_engine_max_calls(128, 32, 1), 4224);
  assert_int_equal(pd_engine_max_calls(1, 2, 1), 3);
  assert_int_equal(pd_engine_max_calls(128, 0, 1), 1);
  assert_int_equal(pd_engine_max_calls(128, 32, 0), 1);
  assert_int_equal(pd_engine_max_calls(0, 2, 1), 3);
}

/* A fake set of producers: resuming producer i makes it deliver deliver[i] bytes into a queue
 * whose watermark is `high`. */
typedef struct prod {
  int deliver[8];
  int queued, high;
  int order[64], norder;
} prod_t;

static int prod_resume(void *ud, int i) {
  prod_t *p = ud;
  p->order[p->norder++] = i;
  p->queued += p->deliver[i];
  return p->queued > p->high;
}

static void resume_round_stops_at_pressure(void **state) {
  (void)state;
  prod_t p = {.deliver = {10, 100, 10, 10}, .high = 50};
  int next = 0;
  /* Producer 1's delivery raises pressure: 2 and 3 stay paused. */
  assert_int_equal(pd_engine_resume_round(4, &next, prod_resume, &p), 2);
  assert_int_equal(p.norder, 2);
  assert_int_equal(p.order[0], 0);
  assert_int_equal(p.order[1], 1);
  assert_int_equal(next, 2);
  /* The next drain starts after it: nobody is starved. */
  p.queued = 0;
  p.deliver[2] = 100;
  assert_int_equal(pd_engine_resume_round(4, &next, prod_resume, &p), 1);
  assert_int_equal(p.order[2], 2);
  assert_int_equal(next, 3);
  /* No pressure: each producer once, in turn from next. */
  p.queued = 0;
  p.high = 1000;
  assert_int_equal(pd_engine_resume_round(4, &next, prod_resume, &p), 4);
  assert_int_equal(p.order[3], 3);
  assert_int_equal(p.order[4], 0);
  assert_int_equal(p.order[5], 1);
  assert_int_equal(p.order[6], 2);
  assert_int_equal(next, 3);
  assert_int_equal(pd_engine_resume_round(0, &next, prod_resume, &p), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(chat_one_round),
      cmocka_unit_test(chat_two_rounds_array_content),
      cmocka_unit_test(chat_six_rounds),
      cmocka_unit_test(chat_null_content),
      cmocka_unit_test(min_think_tokens),
      cmocka_unit_test(max_think_tokens),
      cmocka_unit_test(field_rules),
      cmocka_unit_test(usage_sums),
      cmocka_unit_test(upstream_reasoning),
      cmocka_unit_test(tool_calls_answer),
      cmocka_unit_test(prefill_dialects),
      cmocka_unit_test(prefill_ignore_eot_and_length_cut),
      cmocka_unit_test(prefill_cut_by_max_think),
      cmocka_unit_test(completions_chatml),
      cmocka_unit_test(completions_custom_template),
      cmocka_unit_test(streaming_matches_whole),
      cmocka_unit_test(streaming_without_usage),
      cmocka_unit_test(bad_replies),
      cmocka_unit_test(unforced_plain_call),
      cmocka_unit_test(chunk_read_matches_tree),
      cmocka_unit_test(validate_errors),
      cmocka_unit_test(should_force),
      cmocka_unit_test(thinking_is_bounded),
      cmocka_unit_test(relayed_answer_is_not_kept),
      cmocka_unit_test(stream_cut_is_incomplete),
      cmocka_unit_test(stream_complete_forms),
      cmocka_unit_test(max_calls),
      cmocka_unit_test(resume_round_stops_at_pressure),
  };
  int failed = cmocka_run_group_tests_name("chunks as trees", tests, NULL, NULL);
  read_chunks = 1;
  return failed + cmocka_run_group_tests_name("chunks read in one pass", tests, NULL, NULL);
}
