/* Fuzz target: base/json.c's one tokenizer and everything built on it, differential against
 * jansson's json_loadb (flags 0), whose verdict each of them states as its contract:
 *  - the tokenizer ends with PD_JSON_END exactly when json_loadb accepts the text;
 *  - pd_json_load gives json_loadb's verdict and the same tree;
 *  - pd_openai_load_reply (core/openai.c) gives json_loadb's verdict and the reply cut down to the
 *    members the forcing engine reads (tests/lib/reply_cut.h), or for an array the whole tree;
 *  - pd_openai_check_reply says 1 or 2 exactly for the objects jansson accepts, 2 exactly when
 *    its tree has a top-level "error"; its "usage" span parses to jansson's top-level "usage";
 *  - pd_openai_remodel: the reply with the client's model name put back parses, has that name,
 *    and is otherwise jansson's tree;
 *  - pd_openai_read_reply (both as a reply and as a chunk) accepts exactly the objects jansson
 *    accepts and finds in them what the engine reads of jansson's tree (engine.c: choices[0],
 *    its message or delta's content, reasoning_content, reasoning and tool_calls, its
 *    finish_reason, the usage's integers, an error object with a string message);
 *  - pd_json_write of jansson's tree is byte for byte json_dumps(JSON_COMPACT);
 *  - the engine fed the text as a stream chunk or a whole reply read in one pass
 *    (pd_engine_on_chunk_read, pd_engine_on_response_read, as app/forced.c feeds them) emits,
 *    refuses and accounts exactly as when fed the tree, on a forced thinking call and on an
 *    unforced answer call.
 * Any difference aborts, so libFuzzer keeps the input. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/json_gen.h"
#include "../lib/reply_cut.h"
#include "base/json.h"
#include "core/engine.h"
#include "core/openai.h"

/* What an engine emitted: "kind:text|" per output, tool calls as their compact JSON. */
static void log_out(void *ud, const pd_out_t *o) {
  pd_buf_t *b = ud;
  char kind = (char)('0' + o->kind);
  pd_buf_append(b, &kind, 1);
  if (o->kind == PD_OUT_TOOL_CALLS) {
    if (!o->json || pd_json_write(b, o->json) < 0)
      abort();
  } else {
    pd_buf_append(b, o->text, o->len);
  }
  pd_buf_appends(b, "|");
}

static pd_engine_t *chunk_engine(const pd_policy_t *p, int rounds) {
  json_t *req = json_pack("{s:[{s:s,s:s}]}", "messages", "role", "user", "content", "Q");
  pd_engine_opts_t o = {p, rounds, "m", "max_tokens", 1, 0, 0};
  pd_engine_t *e = pd_engine_new(&o, req);
  json_decref(req);
  pd_call_t call;
  if (!e || pd_engine_next(e, &call) != 1)
    abort();
  free(call.body);
  return e;
}

/* delta 1: b as a stream chunk, 0: as a whole reply. */
static void check_engine_feed(const char *b, size_t n, const json_t *tree, int delta) {
  pd_openai_msg_t m;
  if (!pd_openai_read_reply(b, n, delta, &m))
    return; /* not one object: app/forced.c feeds it as a tree */
  pd_policy_t p;
  memset(&p, 0, sizeof p);
  p.mode = PD_MODE_CHAT;
  p.rounds = 1;
  p.think_budget = 100;
  p.answer_budget = 50;
  p.prompts.think = p.prompts.wait = p.prompts.cont = p.prompts.answer = "x";
  for (int rounds = 0; rounds < 2; rounds++) {
    pd_engine_t *ea = chunk_engine(&p, rounds), *eb = chunk_engine(&p, rounds);
    pd_buf_t la, lb;
    pd_buf_init(&la);
    pd_buf_init(&lb);
    int ra = delta ? pd_engine_on_chunk(ea, tree, log_out, &la)
                   : pd_engine_on_response(ea, tree, log_out, &la);
    int rb = delta ? pd_engine_on_chunk_read(eb, &m, log_out, &lb)
                   : pd_engine_on_response_read(eb, &m, log_out, &lb);
    if (ra != rb || la.len != lb.len || memcmp(pd_buf_str(&la), pd_buf_str(&lb), la.len) != 0)
      abort();
    if (ra == 0 && delta) {
      pd_engine_on_done_marker(ea);
      pd_engine_on_done_marker(eb);
      if (pd_engine_on_call_end(ea, log_out, &la) != pd_engine_on_call_end(eb, log_out, &lb))
        abort();
      pd_result_t x, y;
      pd_engine_result(ea, &x);
      pd_engine_result(eb, &y);
      if (la.len != lb.len || memcmp(pd_buf_str(&la), pd_buf_str(&lb), la.len) != 0 ||
          x.usage.prompt_tokens != y.usage.prompt_tokens ||
          x.usage.completion_tokens != y.usage.completion_tokens ||
          x.usage.reasoning_tokens != y.usage.reasoning_tokens)
        abort();
    }
    if (ra == 0 && !delta) {
      pd_result_t x, y;
      pd_engine_result(ea, &x);
      pd_engine_result(eb, &y);
      if (!x.tool_calls != !y.tool_calls ||
          (x.tool_calls && !json_equal(x.tool_calls, y.tool_calls)) ||
          x.usage.completion_tokens != y.usage.completion_tokens ||
          x.usage.reasoning_tokens != y.usage.reasoning_tokens)
        abort();
    }
    pd_buf_free(&la);
    pd_buf_free(&lb);
    pd_engine_free(ea);
    pd_engine_free(eb);
  }
}

static void check_write(const json_t *v) {
  char *want = json_dumps(v, JSON_COMPACT);
  if (!want)
    abort();
  pd_buf_t b;
  pd_buf_init(&b);
  if (pd_json_write(&b, v) != 0 || b.len != strlen(want) || memcmp(pd_buf_data(&b), want, b.len))
    abort();
  pd_buf_free(&b);
  free(want);
}

/* A text the reader found equals the tree's member: both absent (or not a string), or the
 * same bytes once decoded. */
static void check_text(const pd_openai_text_t *t, const json_t *want) {
  if (!json_is_string(want) != !t->s)
    abort();
  pd_buf_t sc;
  pd_buf_init(&sc);
  const char *s;
  size_t n;
  if (pd_openai_text(t, &sc, &s, &n) < 0)
    abort();
  if (json_is_string(want) &&
      (n != json_string_length(want) || memcmp(s, json_string_value(want), n) != 0))
    abort();
  pd_buf_free(&sc);
}

static void check_int(int has, long long got, const json_t *want) {
  if (has != json_is_integer(want) || (has && got != json_integer_value(want)))
    abort();
}

/* m's usage members are those of jansson's usage value u (absent, or not an object: none). */
static void check_usage(const pd_openai_msg_t *m, const json_t *u) {
  u = json_is_object(u) ? u : NULL;
  if (m->has_usage != !!u)
    abort();
  check_int(m->has_prompt, m->prompt_tokens, json_object_get(u, "prompt_tokens"));
  check_int(m->has_completion, m->completion_tokens, json_object_get(u, "completion_tokens"));
  check_int(m->has_reasoning, m->reasoning_tokens,
            json_object_get(json_object_get(u, "completion_tokens_details"), "reasoning_tokens"));
}

static void check_read(const char *b, size_t n, const json_t *full) {
  for (int delta = 0; delta < 2; delta++) {
    pd_openai_msg_t m;
    int ok = pd_openai_read_reply(b, n, delta, &m);
    if (ok != json_is_object(full))
      abort();
    if (!ok)
      continue;
    const json_t *choice = json_array_get(json_object_get(full, "choices"), 0);
    if (m.choice != json_is_object(choice))
      abort();
    const json_t *src = json_object_get(choice, delta ? "delta" : "message");
    check_text(&m.content, json_object_get(src, "content"));
    check_text(&m.reasoning_content, json_object_get(src, "reasoning_content"));
    check_text(&m.reasoning, json_object_get(src, "reasoning"));
    check_text(&m.finish_reason, json_object_get(choice, "finish_reason"));
    const json_t *tc = json_object_get(src, "tool_calls");
    if (!json_is_array(tc) != !m.tool_calls)
      abort();
    if (m.tool_calls) {
      json_t *got = json_loadb(m.tool_calls, m.tool_calls_len, 0, NULL);
      if (!got || !json_equal(got, tc))
        abort();
      json_decref(got);
    }
    check_usage(&m, json_object_get(full, "usage"));
    if (m.error != pd_openai_is_error(full))
      abort();
  }
}

static void check_remodel(const char *b, size_t n, const json_t *full) {
  pd_openai_reply_t r;
  int rc = pd_openai_check_reply(b, n, &r);
  if (rc != (json_object_get(full, "error") ? 2 : 1))
    abort();
  if (!json_object_get(full, "model") != !r.model)
    abort();
  pd_buf_t out;
  pd_buf_init(&out);
  if (pd_openai_remodel(&out, b, n, &r, "client") != 0)
    abort();
  json_t *j = json_loadb(pd_buf_data(&out), out.len, 0, NULL);
  if (!j)
    abort();
  json_t *want = json_deep_copy(full);
  if (r.model)
    json_object_set_new(want, "model", json_string("client"));
  if (!json_equal(j, want))
    abort();
  json_decref(want);
  json_decref(j);
  pd_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *b = (const char *)data;
  json_error_t err;
  json_t *full = json_loadb(b, size, 0, NULL);
  json_t *whole = pd_json_load(b, size, &err);
  json_t *reply = pd_openai_load_reply(b, size);
  pd_openai_reply_t r;
  int check = pd_openai_check_reply(b, size, &r);
  pd_openai_msg_t m;
  if (scan_accepts(b, size) != !!full)
    abort();
  if (!full) {
    if (whole || reply || check || pd_openai_read_reply(b, size, 0, &m) ||
        pd_openai_read_reply(b, size, 1, &m))
      abort(); /* accepted what jansson rejects */
    return 0;
  }
  check_read(b, size, full);
  if (!whole || !json_equal(whole, full))
    abort();
  if (!reply)
    abort(); /* rejected what jansson accepts */
  json_t *cut = json_is_object(full) ? cut_reply(full) : json_incref(full);
  if (!json_equal(reply, cut))
    abort();
  check_engine_feed(b, size, reply, 1); /* the tree app/forced.c gives the engine */
  check_engine_feed(b, size, reply, 0);
  if (check != (!json_is_object(full) ? 0 : json_object_get(full, "error") ? 2 : 1))
    abort();
  /* The "usage" span pd_openai_check_reply finds parses to jansson's top-level "usage". */
  if (check) {
    json_t *want = json_object_get(full, "usage");
    json_t *got = r.usage ? json_loadb(r.usage, r.usage_len, JSON_DECODE_ANY, NULL) : NULL;
    if (!want != !got || (got && !json_equal(got, want)))
      abort();
    json_decref(got);
    /* ... and reads as that value's counts (the relay's pass-through accounting). */
    pd_openai_msg_t um;
    if (r.usage && pd_openai_read_usage(r.usage, r.usage_len, &um) != json_is_object(want))
      abort();
    if (r.usage)
      check_usage(&um, want);
    check_remodel(b, size, full);
  }
  check_write(full);
  json_decref(cut);
  json_decref(reply);
  json_decref(whole);
  json_decref(full);
  return 0;
}
