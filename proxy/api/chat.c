/* Chat Completions as a client API (POST [prefix]/v1/chat/completions): its request is the
 * engine's request as it is, and the engine's outputs become chat.completion objects and
 * chat.completion.chunk events (core/openai.h writes the shapes). Owns the chat-specific
 * request checks (and the removal of earlier thinking from the messages) and the per-choice display
 * state of the inline mode (the <think> block). */
#include <string.h>

#include "api/api.h"

/* Per choice: the inline display's <think> block. */
typedef struct chat_choice {
  int think_open, think_closed;
} chat_choice_t;
_Static_assert(sizeof(chat_choice_t) <= PD_API_STATE_BYTES, "chat choice state fits");

/* The names the field display writes the thinking under (reasoning_field, SPEC section 6). */
static const char *const *rfields(const pd_api_resp_t *r) {
  static const char *const content[] = {"reasoning_content", NULL},
                           *const reasoning[] = {"reasoning", NULL},
                           *const both[] = {"reasoning_content", "reasoning", NULL};
  return r->reasoning_field == PD_RFIELD_REASONING ? reasoning
         : r->reasoning_field == PD_RFIELD_BOTH    ? both
                                                   : content;
}

static pd_chunk_ctx_t ctx(const pd_api_resp_t *r) {
  pd_chunk_ctx_t c = {r->id, r->created, r->model};
  return c;
}

/* Validates the request (what the engine needs, and a model) and reads its options. */
static int chat_request(json_t **bodyp, pd_api_req_t *out, pd_api_resp_t *r) {
  (void)r;
  json_t *body = *bodyp;
  memset(out, 0, offsetof(pd_api_req_t, msgbuf));
  const char *msg = NULL, *param = NULL;
  if (pd_engine_validate(body, &msg, &param) < 0 ||
      (!json_is_string(json_object_get(body, "model")) &&
       (msg = "You must provide a model parameter.", param = "model"))) {
    out->msg = msg;
    out->param = param;
    return -1;
  }
  /* Earlier thinking is not part of the conversation (SPEC section 5), at every rounds. */
  int stripped = pd_api_strip_history(json_object_get(body, "messages"));
  if (stripped < 0) {
    out->msg = "Out of memory.";
    return -1;
  }
  json_t *ponder = json_object_get(body, "ponder");
  json_t *effort = json_object_get(body, "reasoning_effort");
  /* Both keys are the router's: it removes or rewrites them, so the bytes no longer match. */
  out->verbatim = !ponder && !effort && !stripped;
  out->rounds_param = json_object_get(ponder, "rounds") ? "ponder.rounds" : NULL;
  out->effort_param = effort ? "reasoning_effort" : NULL;
  out->stream = json_is_true(json_object_get(body, "stream"));
  out->include_usage =
      json_is_true(json_object_get(json_object_get(body, "stream_options"), "include_usage"));
  return 0;
}

static int chat_final(pd_buf_t *out, pd_api_resp_t *r, const pd_result_t *results, size_t n) {
  return pd_openai_completion_named(out, r->id, r->created, r->model, r->reasoning, rfields(r),
                                    results, n);
}

/* One role chunk per choice. */
static int chat_stream_start(pd_buf_t *out, pd_api_resp_t *r) {
  pd_chunk_ctx_t c = ctx(r);
  int rc = 0;
  for (int i = 0; i < r->n; i++)
    rc |= pd_openai_chunk_text(out, &c, i, "role", "", 0);
  return rc;
}

static int close_think(pd_buf_t *out, const pd_chunk_ctx_t *c, pd_api_choice_t *ch) {
  chat_choice_t *s = (chat_choice_t *)ch->state.bytes;
  if (!s->think_open || s->think_closed)
    return 0;
  s->think_closed = 1;
  return pd_openai_chunk_text(out, c, ch->index, "content", "\n</think>\n\n", 11);
}

static int delta_think(pd_buf_t *out, pd_api_resp_t *r, pd_api_choice_t *ch, const pd_out_t *o) {
  pd_chunk_ctx_t c = ctx(r);
  if (r->reasoning == PD_REASONING_HIDDEN)
    return 0;
  if (r->reasoning == PD_REASONING_FIELD)
    return pd_openai_chunk_texts(out, &c, ch->index, rfields(r), o->text, o->len);
  chat_choice_t *s = (chat_choice_t *)ch->state.bytes;
  int rc = 0;
  if (!s->think_open) {
    s->think_open = 1;
    rc |= pd_openai_chunk_text(out, &c, ch->index, "content", "<think>\n", 8);
  }
  return rc | pd_openai_chunk_text(out, &c, ch->index, "content", o->text, o->len);
}

static int delta_content(pd_buf_t *out, pd_api_resp_t *r, pd_api_choice_t *ch, const pd_out_t *o) {
  pd_chunk_ctx_t c = ctx(r);
  int rc = close_think(out, &c, ch);
  return rc | pd_openai_chunk_text(out, &c, ch->index, "content", o->text, o->len);
}

static int delta_tool_calls(pd_buf_t *out, pd_api_resp_t *r, pd_api_choice_t *ch,
                            const pd_out_t *o) {
  pd_chunk_ctx_t c = ctx(r);
  int rc = close_think(out, &c, ch);
  return rc | pd_openai_chunk_tool_calls(out, &c, ch->index, o->json);
}

/* The answer call ended; its finish chunk is written when the choice is done (chat_finish). */
static int delta_end(pd_buf_t *out, pd_api_resp_t *r, pd_api_choice_t *ch, const pd_out_t *o) {
  (void)o;
  pd_chunk_ctx_t c = ctx(r);
  return close_think(out, &c, ch);
}

static int (*const deltas[])(pd_buf_t *, pd_api_resp_t *, pd_api_choice_t *, const pd_out_t *) = {
    [PD_OUT_THINK] = delta_think,
    [PD_OUT_CONTENT] = delta_content,
    [PD_OUT_TOOL_CALLS] = delta_tool_calls,
    [PD_OUT_FINISH] = delta_end,
};

static int chat_delta(pd_buf_t *out, pd_api_resp_t *r, pd_api_choice_t *ch, const pd_out_t *o) {
  return deltas[o->kind](out, r, ch, o);
}

static int chat_finish(pd_buf_t *out, pd_api_resp_t *r, pd_api_choice_t *ch, const char *reason) {
  pd_chunk_ctx_t c = ctx(r);
  int rc = close_think(out, &c, ch);
  return rc | pd_openai_chunk_finish(out, &c, ch->index, reason);
}

static int chat_stream_end(pd_buf_t *out, pd_api_resp_t *r, const pd_usage_t *usage) {
  int rc = 0;
  if (r->include_usage) {
    pd_chunk_ctx_t c = ctx(r);
    rc |= pd_openai_chunk_usage(out, &c, usage);
  }
  return rc | pd_buf_appends(out, "data: [DONE]\n\n");
}

static int chat_error_event(pd_buf_t *out, pd_api_resp_t *r, const char *upstream, size_t ulen,
                            const char *message, const char *type, const char *code) {
  (void)r;
  return pd_api_sse_error(out, upstream, ulen, message, type, code);
}

const pd_api_t pd_chat_api = {
    .name = "chat.completions",
    .path = "/chat/completions",
    .id_prefix = "chatcmpl-",
    .relay = 1,
    .scan = pd_chat_scan_body,
    .request = chat_request,
    .final = chat_final,
    .stream_start = chat_stream_start,
    .delta = chat_delta,
    .finish = chat_finish,
    .stream_end = chat_stream_end,
    .error_event = chat_error_event,
};
