/* The OpenAI Responses API as a front door (SPEC section 10): pure, no I/O.
 *
 * Owns three things and nothing else:
 *  - the request translation: a Responses body -> the chat-completions request the engine (and
 *    its plain, unforced call) takes, with the OpenAI-shaped 400s of section 10;
 *  - the response object built from the engine's result (stream false), or at rounds 0 from
 *    the upstream's own chat.completion, read in one pass without a tree;
 *  - the event stream writer: a state machine fed the engine's outputs one by one, appending
 *    `event: TYPE\ndata: {...}\n\n` events with sequence numbers to a pd_buf_t.
 * It never sees the upstream, the exchange or sockets: the exchange runs one engine chain on the
 * translated request (plain when not forced, so rounds 0 is one translated call too) and hands
 * the outputs here, or for an unforced non-streamed request hands over the one call's reply. */
#ifndef PD_RESPONSES_H
#define PD_RESPONSES_H

#include <jansson.h>
#include <stdint.h>

#include "base/buf.h"
#include "config/config.h"
#include "core/engine.h"

#include "api/chat_scan.h"

/* ---- request translation -------------------------------------------------------------------- */

/* A translated request, owned (pd_responses_req_free). */
typedef struct pd_responses_req {
  json_t *chat; /* the chat-completions body: model, messages, tools, ... as the engine takes it */
  /* What the response object repeats, defaults filled in, as JSON members each with its
   * leading comma, written once at translation (a stream repeats the object in three events),
   * in the object's order: head: instructions, max_output_tokens; mid: parallel_tool_calls,
   * previous_response_id (null), reasoning, store (false), temperature, text, tool_choice,
   * tools, top_p, truncation ("disabled"); tail: user, metadata. One buffer: head is its first
   * echo_head bytes, mid the echo_mid bytes after them, tail the rest. */
  pd_buf_t echo;
  size_t echo_head, echo_mid;
  int stream;  /* "stream": true */
  int summary; /* reasoning.summary asked for: thinking comes as summary parts too */
} pd_responses_req_t;

/* A 400 invalid_request_error: the message (may quote, cut, what the client sent) and the param
 * ("" for none). Written by pd_responses_req_translate; the caller makes the OpenAI error of it. */
typedef struct pd_responses_error {
  char message[320];
  char param[64];
} pd_responses_error_t;

/* Translates a Responses request body. `limit_param` names the chat token limit the upstream
 * takes ("max_tokens" or "max_completion_tokens"; NULL: "max_tokens") for max_output_tokens.
 * Earlier thinking is dropped (reasoning items, and a leading <think> block of assistant text:
 * SPEC section 5). Returns 0 with *out filled (free with pd_responses_req_free), -1 with *err
 * filled for a 400 (nothing to free), or -2 when out of memory. `body` is only read, and the
 * chat tree shares (holds references to) parts of it: do not change body afterwards. */
int pd_responses_req_translate(const json_t *body, const char *limit_param, pd_responses_req_t *out,
                               pd_responses_error_t *err);
void pd_responses_req_free(pd_responses_req_t *r);

/* The rounds-0 fast path, one pass of base/json.h's tokenizer over the client's bytes for the
 * requests most clients send (no tree). pd_responses_req_scan returns 1 when b is such a body:
 * one pd_responses_req_translate takes, with an unescaped string "model" (out->model), an
 * unescaped "user" when it is a string (out->user), no "ponder" and no "reasoning" (so the
 * router reads only "user"), and "stream" absent or false (a stream runs the engine); 0
 * otherwise (the tree path decides, with its 400s). It allocates only to decode text. */
int pd_responses_req_scan(const char *b, size_t n, pd_chat_scan_t *out);
/* For a body pd_responses_req_scan took: appends to chat the upstream chat completions body
 * the tree path sends at rounds 0 (pd_responses_req_translate's tree without "stream" and with
 * "model" set to model: app/relay.c), byte for byte, and fills *out (echo; chat NULL)
 * as the translation does. Returns 0, 1 for a body it does not take (nothing kept), or -2 when
 * out of memory. */
int pd_responses_req_write(const char *b, size_t n, const char *model, const char *limit_param,
                           pd_buf_t *chat, pd_responses_req_t *out);

/* ---- response object and event stream ------------------------------------------------------- */

/* Returned by pd_responses_emit when the text the writer holds would pass opts.max_held (the
 * exchange then fails the stream: pd_responses_fail). */
#define PD_RESPONSES_ETOOLARGE (-2)

typedef struct pd_responses_opts {
  const char *id;    /* "resp_..." (copied) */
  long created_at;   /* unix seconds */
  const char *model; /* the client's model name (copied) */
  pd_reasoning_t display;
  const pd_responses_req_t *req; /* echo and summary; borrowed, must outlive the writer */
  uint64_t (*rnd)(void *ud);     /* random words for item ids (rs_, msg_, fc_, call_); NULL:
                                    a counter (tests) */
  void *rnd_ud;
  long max_held; /* > 0: bound on the text a stream writer holds for its .done events and the
                    final response (thinking, answer and arguments together) */
} pd_responses_opts_t;

typedef struct pd_responses pd_responses_t;

/* A writer for one response (stream or not). Returns NULL when out of memory. */
pd_responses_t *pd_responses_new(const pd_responses_opts_t *opts);
void pd_responses_free(pd_responses_t *w);

/* stream false: appends the whole response object built from the chain's result (its content,
 * reasoning, tool calls, finish reason and usage). Returns 0 or -1. */
int pd_responses_body(pd_responses_t *w, pd_buf_t *out, const pd_result_t *res);

/* Returned by pd_responses_from_reply for a reply that is not a chat completion ponder can read
 * (the exchange answers 502). */
#define PD_RESPONSES_EUNREADABLE (-3)

/* stream false, unforced: appends the response object made straight from the upstream's own
 * chat.completion (the one plain translated call, no engine), read in one pass as the engine
 * reads a reply: choices[0].message's content, reasoning (reasoning_content, else reasoning)
 * and tool_calls, the finish reason, the usage. *usage gets the call's usage as the engine
 * counts it (completion tokens estimated from the text when the reply has none). Returns 0, -1
 * when out of memory, or PD_RESPONSES_EUNREADABLE when reply is not JSON or has no object
 * choices[0]. */
int pd_responses_from_reply(pd_responses_t *w, pd_buf_t *out, const char *reply, size_t len,
                            pd_usage_t *usage);

/* stream true, in this order:
 *  pd_responses_start once when the stream head goes out: response.created, response.in_progress;
 *  pd_responses_emit for every engine output (pd_emit_fn's outputs, in the order given);
 *  then pd_responses_end (the chain is done: response.completed or response.incomplete with the
 *  summed usage), or pd_responses_fail (a failure after the start: response.failed).
 * Each appends whole events to out and returns 0, -1 when out of memory, or (emit)
 * PD_RESPONSES_ETOOLARGE. After end or fail every call is a no-op. start is implied by the first
 * emit, end or fail when it was not called. */
int pd_responses_start(pd_responses_t *w, pd_buf_t *out);
int pd_responses_emit(pd_responses_t *w, pd_buf_t *out, const pd_out_t *o);
int pd_responses_end(pd_responses_t *w, pd_buf_t *out, const pd_usage_t *usage);
/* message, type and code as for pd_openai_chunk_error; the failed response's error is
 * {code: code (else type), message}. */
int pd_responses_fail(pd_responses_t *w, pd_buf_t *out, const char *message, const char *type,
                      const char *code);
/* pd_responses_fail with the code and message of an upstream's OpenAI error body (as the chat
 * stream relays it); a body that is not one gives the fallback message, type and code. */
int pd_responses_fail_body(pd_responses_t *w, pd_buf_t *out, const char *body, size_t len,
                           const char *message, const char *type, const char *code);

/* Events written so far (the next sequence_number). */
long pd_responses_seq(const pd_responses_t *w);

#endif
