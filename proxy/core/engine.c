/* The forcing engine (SPEC section 5): decides the rounds, feeds replies to the mode's table
 * (modes.c), emits what the client sees and accounts usage. No I/O. */
#include "core/engine.h"

#include <stdlib.h>
#include <string.h>

#include "core/modes.h"
#include "core/openai.h"

typedef enum { ST_THINK, ST_ANSWER, ST_WAITING, ST_DONE } state_t;

/* What one upstream call has delivered so far. */
typedef struct call_acc {
  int answer;         /* this is the answer call */
  int streamed;       /* fed by chunks */
  pd_buf_t content;   /* message.content / delta.content / text */
  pd_buf_t reasoning; /* reasoning_content or reasoning */
  char *finish;       /* last finish_reason seen (non-empty) */
  int done_marker;    /* the stream's [DONE] arrived */
  int has_usage;
  long prompt, completion, reasoning_tokens; /* reasoning_tokens -1 when absent */
  long text_chunks;                          /* chunks that carried text */
} call_acc_t;

struct pd_engine {
  pd_chain_t c;
  const pd_mode_ops_t *ops;
  int plain; /* unforced: one call with the client's body */
  state_t state;
  call_acc_t cur;
  int calls;
  long think_tokens;
  pd_buf_t content, reasoning; /* what was emitted as CONTENT / THINK */
  json_t *tool_calls;
  char *finish;
  pd_usage_t usage;
  long max_think_bytes;
  int relay_answer;
};

static const char *str(const char *s) {
  return s ? s : "";
}

static const char *last_role(const json_t *request) {
  const json_t *msgs = json_object_get(request, "messages");
  size_t n = json_array_size(msgs);
  if (n == 0)
    return NULL;
  return json_string_value(json_object_get(json_array_get(msgs, n - 1), "role"));
}

/* Limit of the next thinking call: think_budget, or what is left of max_think_tokens. */
static long next_limit(const pd_engine_t *e) {
  const pd_policy_t *p = e->c.policy;
  long limit = p->think_budget;
  if (p->max_think_tokens > 0 && p->max_think_tokens - e->think_tokens < limit)
    limit = p->max_think_tokens - e->think_tokens;
  return limit;
}

/* Checks the client's body before anything is forced (OpenAI-style 400 messages). */
int pd_engine_validate(const json_t *request, const char **msg, const char **param) {
  *param = NULL;
  if (!json_is_object(request)) {
    *msg = "The request body must be a JSON object.";
    return -1;
  }
  const json_t *msgs = json_object_get(request, "messages");
  if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
    *msg = "'messages' must be a non-empty array";
    *param = "messages";
    return -1;
  }
  size_t i;
  const json_t *m;
  json_array_foreach(msgs, i, m) {
    *param = "messages";
    if (!json_is_object(m)) {
      *msg = "Invalid type for 'messages': each message must be an object.";
      return -1;
    }
    if (!json_is_string(json_object_get(m, "role"))) {
      *msg = "Invalid value for 'messages': each message must have a string 'role'.";
      return -1;
    }
    const json_t *content = json_object_get(m, "content");
    if (content && !json_is_string(content) && !json_is_array(content) && !json_is_null(content)) {
      *msg = "Invalid type for 'messages': a message's content must be a string, an array or null.";
      return -1;
    }
  }
  /* Optional fields: null counts as absent, as in the OpenAI API. */
  static const struct {
    const char *name;
    int type; /* json_type, or -1 for "number" */
    const char *msg;
  } fields[] = {
      {"model", JSON_STRING, "Invalid type for 'model': expected a string."},
      {"n", JSON_INTEGER, "Invalid type for 'n': expected an integer."},
      {"max_tokens", JSON_INTEGER, "Invalid type for 'max_tokens': expected an integer."},
      {"max_completion_tokens", JSON_INTEGER,
       "Invalid type for 'max_completion_tokens': expected an integer."},
      {"stream", JSON_TRUE, "Invalid type for 'stream': expected a boolean."},
      {"temperature", -1, "Invalid type for 'temperature': expected a number."},
      {"top_p", -1, "Invalid type for 'top_p': expected a number."},
      {"tools", JSON_ARRAY, "Invalid type for 'tools': expected an array."},
      {"stream_options", JSON_OBJECT, "Invalid type for 'stream_options': expected an object."},
  };
  for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++) {
    const json_t *v = json_object_get(request, fields[f].name);
    if (!v || json_is_null(v))
      continue;
    int ok = fields[f].type == -1          ? json_is_number(v)
             : fields[f].type == JSON_TRUE ? json_is_boolean(v)
                                           : (int)json_typeof(v) == fields[f].type;
    if (!ok) {
      *msg = fields[f].msg;
      *param = fields[f].name;
      return -1;
    }
  }
  const json_t *n = json_object_get(request, "n");
  if (json_is_integer(n) && (json_integer_value(n) < 1 || json_integer_value(n) > 128)) {
    *msg = "Invalid value for 'n': expected an integer between 1 and 128.";
    *param = "n";
    return -1;
  }
  static const char *const limits[] = {"max_tokens", "max_completion_tokens"};
  static const char *const limit_msgs[] = {
      "Invalid value for 'max_tokens': expected an integer of at least 1.",
      "Invalid value for 'max_completion_tokens': expected an integer of at least 1."};
  for (int k = 0; k < 2; k++) {
    const json_t *v = json_object_get(request, limits[k]);
    if (json_is_integer(v) && json_integer_value(v) < 1) {
      *msg = limit_msgs[k];
      *param = limits[k];
      return -1;
    }
  }
  const json_t *stop = json_object_get(request, "stop");
  int stop_ok = !stop || json_is_null(stop) || json_is_string(stop);
  if (json_is_array(stop)) {
    const json_t *s;
    stop_ok = 1;
    json_array_foreach(stop, i, s) stop_ok = stop_ok && json_is_string(s);
  }
  if (!stop_ok) {
    *msg = "Invalid type for 'stop': expected a string or an array of strings.";
    *param = "stop";
    return -1;
  }
  *msg = NULL;
  *param = NULL;
  return 0;
}

/* rounds > 0 and the last message is from the user. */
int pd_engine_should_force(const json_t *request, int rounds) {
  return rounds > 0 && !strcmp(str(last_role(request)), "user");
}

/* One chain; an unforced request becomes a single plain call. */
pd_engine_t *pd_engine_new(const pd_engine_opts_t *opts, json_t *request) {
  pd_engine_t *e = calloc(1, sizeof *e);
  if (!e)
    return NULL;
  const pd_policy_t *p = opts->policy;
  e->c.policy = p;
  e->c.rounds = opts->rounds;
  e->c.stream = opts->stream;
  e->max_think_bytes = opts->max_think_bytes;
  e->relay_answer = opts->relay_answer;
  e->c.request = json_incref(request);
  e->c.upstream_model = strdup(str(opts->upstream_model));
  e->c.limit_param = strdup(opts->token_limit_param ? opts->token_limit_param : "max_tokens");
  e->c.segments = json_array();
  e->c.limits = calloc(opts->rounds > 0 ? (size_t)opts->rounds : 1, sizeof(long));
  if (!e->c.upstream_model || !e->c.limit_param || !e->c.segments || !e->c.limits) {
    pd_engine_free(e);
    return NULL;
  }
  const json_t *mct = json_object_get(request, "max_completion_tokens");
  const json_t *mt = json_object_get(request, "max_tokens");
  e->c.answer_limit = json_is_integer(mct)  ? json_integer_value(mct)
                      : json_is_integer(mt) ? json_integer_value(mt)
                                            : p->answer_budget;
  e->ops = pd_mode_ops(p->mode);
  e->plain = !pd_engine_should_force(request, opts->rounds);
  e->c.limits[0] = next_limit(e);
  e->state = e->plain ? ST_ANSWER : ST_THINK;
  return e;
}

static void acc_reset(call_acc_t *a) {
  pd_buf_free(&a->content);
  pd_buf_free(&a->reasoning);
  free(a->finish);
  memset(a, 0, sizeof *a);
  a->reasoning_tokens = -1;
}

/* Frees the engine and everything it owns. */
void pd_engine_free(pd_engine_t *e) {
  if (!e)
    return;
  acc_reset(&e->cur);
  json_decref(e->c.request);
  json_decref(e->c.segments);
  free(e->c.upstream_model);
  free(e->c.limit_param);
  free(e->c.limits);
  pd_buf_free(&e->c.transcript);
  pd_mode_chain_free_text(&e->c);
  pd_buf_free(&e->content);
  pd_buf_free(&e->reasoning);
  json_decref(e->tool_calls);
  free(e->finish);
  free(e);
}

/* Builds the next call; returns 1, 0 when done, or -1 on allocation failure or misuse. */
int pd_engine_next(pd_engine_t *e, pd_call_t *call) {
  call->body = NULL;
  call->body_len = 0;
  if (e->state == ST_DONE)
    return 0;
  if (e->state == ST_WAITING)
    return -1;
  int answer = e->state == ST_ANSWER;
  pd_buf_t b;
  pd_buf_init(&b);
  int rc = e->plain ? pd_mode_plain_body(&e->c, &b)
           : answer ? e->ops->answer_body(&e->c, &b)
                    : e->ops->think_body(&e->c, &b);
  char *body = rc == 0 ? pd_buf_steal(&b, &call->body_len) : NULL;
  if (!body) {
    pd_buf_free(&b);
    return -1;
  }
  acc_reset(&e->cur);
  e->cur.answer = answer;
  if (!answer)
    e->c.think_calls++;
  e->calls++;
  e->state = ST_WAITING;
  call->path = e->plain ? "/chat/completions" : e->ops->path;
  call->body = body;
  call->is_answer = answer;
  call->index = e->calls;
  return 1;
}

/* Emits one output and keeps the text for pd_engine_result. */
static int out(pd_engine_t *e, pd_out_kind_t kind, const char *text, size_t len, json_t *json,
               pd_emit_fn emit, void *ud) {
  /* The chain's thinking is held until the end (and in prefill mode resent on every call):
   * bounded, whatever an upstream that ignores its token limit sends. */
  if (kind == PD_OUT_THINK && e->max_think_bytes > 0 &&
      (long)(e->reasoning.len + len) > e->max_think_bytes)
    return PD_ENGINE_ETOOLARGE;
  if (kind == PD_OUT_THINK && pd_buf_append(&e->reasoning, text, len) < 0)
    return -1;
  /* A relayed answer is not held: a streamed answer may be longer than any memory bound. */
  if (kind == PD_OUT_CONTENT && !e->relay_answer && pd_buf_append(&e->content, text, len) < 0)
    return -1;
  if (emit) {
    pd_out_t o = {kind, text, len, json};
    emit(ud, &o);
  }
  return 0;
}

/* Takes in one piece of a reply, its reasoning and its content (either may be empty). Emits as
 * the call's role dictates. */
static int take_text(pd_engine_t *e, const char *r, size_t rlen, const char *s, size_t clen,
                     pd_emit_fn emit, void *ud) {
  call_acc_t *a = &e->cur;
  int rc;
  if (rlen) {
    if ((rc = out(e, PD_OUT_THINK, r, rlen, NULL, emit, ud)) < 0)
      return rc;
    if (pd_buf_append(&a->reasoning, r, rlen) < 0)
      return -1;
  }
  if (clen) {
    if ((rc = out(e, a->answer ? PD_OUT_CONTENT : PD_OUT_THINK, s, clen, NULL, emit, ud)) < 0)
      return rc;
    if (!(a->answer && e->relay_answer) && pd_buf_append(&a->content, s, clen) < 0)
      return -1;
  }
  if (rlen || clen)
    a->text_chunks++;
  return 0;
}

/* The same from a tree: `src` is a message (non-streamed) or a delta (streamed), or NULL with
 * `text` for completions. The reasoning is reasoning_content, else reasoning. */
static int take(pd_engine_t *e, const json_t *src, const json_t *text, pd_emit_fn emit, void *ud) {
  const json_t *reasoning = json_object_get(src, "reasoning_content");
  if (!json_is_string(reasoning))
    reasoning = json_object_get(src, "reasoning");
  const json_t *content = e->ops->text_reply && !e->plain ? text : json_object_get(src, "content");
  return take_text(e, json_string_value(reasoning), json_string_length(reasoning),
                   json_string_value(content), json_string_length(content), emit, ud);
}

/* A finish_reason of n bytes (f NULL: none). An empty one names no reason: it neither completes
 * a stream nor hides an earlier one. */
static int take_finish_text(call_acc_t *a, const char *f, size_t n) {
  if (!f || !n)
    return 0;
  free(a->finish);
  a->finish = strndup(f, n);
  return a->finish ? 0 : -1;
}

static int take_finish(call_acc_t *a, const json_t *choice) {
  const json_t *f = json_object_get(choice, "finish_reason");
  return take_finish_text(a, json_string_value(f), json_string_length(f));
}

/* A usage object's counts: prompt_tokens (0 when not an integer), completion_tokens (has_ct:
 * it is one) and completion_tokens_details.reasoning_tokens (has_rt). */
static void take_usage_counts(call_acc_t *a, long long prompt, int has_ct, long long ct, int has_rt,
                              long long rt) {
  a->prompt = (long)prompt;
  a->has_usage = has_ct;
  a->completion = (long)ct;
  a->reasoning_tokens = has_rt ? (long)rt : -1;
}

static void take_usage(call_acc_t *a, const json_t *usage) {
  if (!json_is_object(usage))
    return;
  const json_t *ct = json_object_get(usage, "completion_tokens");
  const json_t *rt =
      json_object_get(json_object_get(usage, "completion_tokens_details"), "reasoning_tokens");
  take_usage_counts(a, json_integer_value(json_object_get(usage, "prompt_tokens")),
                    json_is_integer(ct), json_integer_value(ct), json_is_integer(rt),
                    json_integer_value(rt));
}

/* The answer call's tool calls as a streamed delta would carry them: each with its "index". */
static json_t *indexed_tool_calls(const json_t *tool_calls) {
  json_t *arr = json_array();
  size_t i;
  const json_t *tc;
  json_array_foreach(tool_calls, i, tc) {
    json_t *copy = json_is_object(tc) ? json_deep_copy(tc) : NULL;
    if (!copy || json_object_set_new(copy, "index", json_integer((json_int_t)i)) < 0 ||
        json_array_append_new(arr, copy) < 0) {
      json_decref(copy);
      json_decref(arr);
      return NULL;
    }
  }
  return arr;
}

/* Ends the call in flight: accounts usage, lets the mode extend the transcript and decides the
 * next step (SPEC section 5's continue rule). */
static int finish_call(pd_engine_t *e, pd_emit_fn emit, void *ud) {
  call_acc_t *a = &e->cur;
  pd_chain_t *c = &e->c;
  const pd_policy_t *p = c->policy;
  /* Without usage the call's completion tokens are estimated: ~4 bytes a token for a whole
   * reply, one token per text-carrying chunk for a streamed one (servers send about one token a
   * chunk); its prompt tokens count as 0. */
  long completion = a->has_usage  ? a->completion
                    : a->streamed ? a->text_chunks
                                  : (long)((a->content.len + a->reasoning.len + 3) / 4);
  e->usage.prompt_tokens += a->prompt;
  e->usage.completion_tokens += completion;
  /* Only a complete call gets here (pd_engine_on_call_end checks a stream): a whole reply or a
   * stream ended by [DONE] that named no reason stopped by itself. */
  const char *finish = a->finish ? a->finish : "stop";

  if (a->answer) {
    if (a->reasoning_tokens > 0)
      e->usage.reasoning_tokens += a->reasoning_tokens;
    free(e->finish);
    if (!(e->finish = strdup(finish)))
      return -1;
    e->state = ST_DONE;
    return out(e, PD_OUT_FINISH, e->finish, strlen(e->finish), NULL, emit, ud);
  }

  e->usage.reasoning_tokens += completion;
  e->think_tokens += completion;
  /* s_k: the reply's content, or its reasoning when a reasoning model left content empty. */
  const pd_buf_t *s = a->content.len ? &a->content : &a->reasoning;
  if (e->ops->add_reply(c, pd_buf_str(s), s->len) < 0)
    return -1;
  int is_length = !strcmp(finish, "length");
  int spent = p->max_think_tokens > 0 && e->think_tokens >= p->max_think_tokens;
  int more = !spent && (p->min_think_tokens > 0
                            ? e->think_tokens < p->min_think_tokens && c->think_calls < c->rounds
                            : c->think_calls < c->rounds);
  c->last_length = is_length;
  if (!more) {
    c->cut = spent || is_length;
    e->state = ST_ANSWER;
    return 0;
  }
  c->limits[c->think_calls] = next_limit(e);
  pd_buf_t wait = {0};
  int rc = e->ops->next_round(c, finish, &wait);
  if (rc == 0 && wait.len) {
    pd_buf_t sep = {0};
    rc = pd_buf_appends(&sep, "\n") < 0 || pd_buf_append(&sep, pd_buf_data(&wait), wait.len) < 0 ||
                 pd_buf_appends(&sep, "\n") < 0
             ? -1
             : out(e, PD_OUT_THINK, pd_buf_data(&sep), sep.len, NULL, emit, ud);
    pd_buf_free(&sep);
  }
  pd_buf_free(&wait);
  e->state = ST_THINK;
  return rc;
}

/* The end of a whole reply, its texts, finish and usage taken: the answer's tool calls
 * (`tools`, the message's member) are kept and emitted, then the call ends. */
static int end_response(pd_engine_t *e, const json_t *tools, pd_emit_fn emit, void *ud) {
  call_acc_t *a = &e->cur;
  if (a->answer && json_is_array(tools) && json_array_size(tools) > 0) {
    json_t *indexed = indexed_tool_calls(tools);
    if (!indexed)
      return -1;
    json_decref(e->tool_calls);
    e->tool_calls = json_deep_copy(tools);
    int rc = e->tool_calls ? out(e, PD_OUT_TOOL_CALLS, NULL, 0, indexed, emit, ud) : -1;
    json_decref(indexed);
    if (rc < 0)
      return -1;
  }
  return finish_call(e, emit, ud);
}

/* Feeds a whole reply of the call in flight; -1 when it is not a completion. */
int pd_engine_on_response(pd_engine_t *e, const json_t *reply, pd_emit_fn emit, void *ud) {
  if (e->state != ST_WAITING)
    return -1;
  const json_t *choice = json_array_get(json_object_get(reply, "choices"), 0);
  if (!json_is_object(choice))
    return -1;
  call_acc_t *a = &e->cur;
  const json_t *msg = json_object_get(choice, "message");
  int rc = take(e, msg, json_object_get(choice, "text"), emit, ud);
  if (rc < 0)
    return rc;
  if (take_finish(a, choice) < 0)
    return -1;
  take_usage(a, json_object_get(reply, "usage"));
  return end_response(e, json_object_get(msg, "tool_calls"), emit, ud);
}

/* Feeds one streamed chunk; -1 when no call is in flight or the chunk is an error. */
int pd_engine_on_chunk(pd_engine_t *e, const json_t *chunk, pd_emit_fn emit, void *ud) {
  if (e->state != ST_WAITING || !json_is_object(chunk) ||
      json_is_object(json_object_get(chunk, "error")))
    return -1;
  call_acc_t *a = &e->cur;
  a->streamed = 1;
  const json_t *choice = json_array_get(json_object_get(chunk, "choices"), 0);
  if (json_is_object(choice)) {
    const json_t *delta = json_object_get(choice, "delta");
    int rc = take(e, delta, json_object_get(choice, "text"), emit, ud);
    if (rc < 0)
      return rc;
    if (take_finish(a, choice) < 0)
      return -1;
    json_t *tools = json_object_get(delta, "tool_calls");
    if (a->answer && json_is_array(tools) && json_array_size(tools) > 0 &&
        out(e, PD_OUT_TOOL_CALLS, NULL, 0, tools, emit, ud) < 0)
      return -1;
  }
  take_usage(a, json_object_get(chunk, "usage"));
  return 0;
}

/* ---- the one-pass feeders: a reply or chunk read by pd_openai_read_reply, no tree ---- */

int pd_engine_reads_one_pass(const pd_engine_t *e) {
  return !(e->ops->text_reply && !e->plain);
}

/* m's choices[0] texts (decoded where they hold escapes, each in its own buffer) and finish
 * reason, as take and take_finish take them from a tree. */
static int take_read(pd_engine_t *e, const pd_openai_msg_t *m, pd_emit_fn emit, void *ud) {
  pd_buf_t sr, sc, sf;
  pd_buf_init(&sr);
  pd_buf_init(&sc);
  pd_buf_init(&sf);
  const pd_openai_text_t *rt = m->reasoning_content.s ? &m->reasoning_content : &m->reasoning;
  const char *r, *c, *f;
  size_t rlen, clen, flen;
  int rc = pd_openai_text(rt, &sr, &r, &rlen) | pd_openai_text(&m->content, &sc, &c, &clen) |
           pd_openai_text(&m->finish_reason, &sf, &f, &flen);
  if (rc == 0)
    rc = take_text(e, r, rlen, c, clen, emit, ud);
  if (rc == 0 && take_finish_text(&e->cur, m->finish_reason.s ? f : NULL, flen) < 0)
    rc = -1;
  pd_buf_free(&sr);
  pd_buf_free(&sc);
  pd_buf_free(&sf);
  return rc;
}

static void take_usage_read(call_acc_t *a, const pd_openai_msg_t *m) {
  if (m->has_usage)
    take_usage_counts(a, m->prompt_tokens, m->has_completion, m->completion_tokens,
                      m->has_reasoning, m->reasoning_tokens);
}

/* m's tool calls as a tree, parsed only for the answer call (the only one that relays them):
 * *tools NULL when there are none or it is a thinking call. -1 when out of memory. */
static int tools_read(const pd_engine_t *e, const pd_openai_msg_t *m, json_t **tools) {
  *tools = NULL;
  if (!e->cur.answer || !m->tool_calls)
    return 0;
  *tools = pd_json_load(m->tool_calls, m->tool_calls_len, NULL); /* a span the reader took */
  return *tools ? 0 : -1;
}

int pd_engine_on_response_read(pd_engine_t *e, const pd_openai_msg_t *m, pd_emit_fn emit,
                               void *ud) {
  if (e->state != ST_WAITING || !m->choice || !pd_engine_reads_one_pass(e))
    return -1;
  int rc = take_read(e, m, emit, ud);
  if (rc < 0)
    return rc;
  take_usage_read(&e->cur, m);
  json_t *tools;
  if (tools_read(e, m, &tools) < 0)
    return -1;
  rc = end_response(e, tools, emit, ud);
  json_decref(tools);
  return rc;
}

int pd_engine_on_chunk_read(pd_engine_t *e, const pd_openai_msg_t *m, pd_emit_fn emit, void *ud) {
  if (e->state != ST_WAITING || m->error_object || !pd_engine_reads_one_pass(e))
    return -1;
  call_acc_t *a = &e->cur;
  a->streamed = 1;
  if (m->choice) {
    int rc = take_read(e, m, emit, ud);
    if (rc < 0)
      return rc;
    json_t *tools;
    if (tools_read(e, m, &tools) < 0)
      return -1;
    rc = tools && json_array_size(tools) > 0 ? out(e, PD_OUT_TOOL_CALLS, NULL, 0, tools, emit, ud)
                                             : 0;
    json_decref(tools);
    if (rc < 0)
      return -1;
  }
  take_usage_read(a, m);
  return 0;
}

/* The [DONE] of the streamed call in flight. */
void pd_engine_on_done_marker(pd_engine_t *e) {
  if (e->state == ST_WAITING)
    e->cur.done_marker = 1;
}

/* Ends the streamed call in flight; a no-op when none is (e.g. after pd_engine_on_response).
 * A stream that simply stopped, with neither a finish_reason nor [DONE], was cut off: taking it
 * as complete would present a partial answer (or thinking) as whole. */
int pd_engine_on_call_end(pd_engine_t *e, pd_emit_fn emit, void *ud) {
  if (e->state != ST_WAITING)
    return 0;
  if (!e->cur.finish && !e->cur.done_marker)
    return PD_ENGINE_EINCOMPLETE;
  return finish_call(e, emit, ud);
}

/* The chain's outcome so far; pointers stay valid until pd_engine_free. */
void pd_engine_result(const pd_engine_t *e, pd_result_t *res) {
  res->content = pd_buf_str(&e->content);
  res->content_len = e->content.len;
  res->reasoning = pd_buf_str(&e->reasoning);
  res->reasoning_len = e->reasoning.len;
  res->tool_calls = e->tool_calls;
  res->finish_reason = e->finish;
  res->usage = e->usage;
  res->think_calls = e->c.think_calls;
  res->calls = e->calls;
}

long pd_engine_max_calls(int n, int rounds, int forced) {
  if (!forced || rounds <= 0)
    return 1;
  return (long)(n > 0 ? n : 1) * ((long)rounds + 1);
}

int pd_engine_resume_round(int n, int *next, int (*resume)(void *ud, int i), void *ud) {
  if (n <= 0)
    return 0;
  int start = *next >= 0 && *next < n ? *next : 0, resumed = 0;
  for (int k = 0; k < n; k++) {
    int i = (start + k) % n;
    resumed++;
    *next = (i + 1) % n;
    if (resume(ud, i))
      break;
  }
  return resumed;
}
