/* The forcing engine: a pure state machine, no I/O (SPEC section 5).
 *
 * One engine runs one chain (one choice). The exchange asks it for the next upstream call,
 * performs the call, and feeds back the reply (a whole JSON body, or streamed chunks followed by
 * an end-of-call). While it is fed, the engine emits what the client should see (thinking text,
 * answer text, tool-call deltas, the finish reason) through a callback; at the end it reports the
 * accumulated result. It never sees sockets, libuv or libcurl. Modes differ only in how a call's
 * request is built and how a reply extends the transcript (a table of functions in modes.c). */
#ifndef PD_ENGINE_H
#define PD_ENGINE_H

#include <jansson.h>
#include <stddef.h>

#include "config/config.h"

typedef struct pd_engine pd_engine_t;

typedef struct pd_engine_opts {
  const pd_policy_t *policy;     /* borrowed; must outlive the engine */
  int rounds;                    /* effective R after effort/overrides (policy->rounds otherwise) */
  const char *upstream_model;    /* model to send upstream (already mapped); borrowed */
  const char *token_limit_param; /* "max_tokens" | "max_completion_tokens"; borrowed */
  int stream;                    /* build streamed upstream calls (stream + include_usage) */
  long max_think_bytes; /* > 0: thinking this chain may accumulate (limits.max_reply_bytes) */
  int relay_answer;     /* the answer's text is relayed as it streams: not kept (result "") */
} pd_engine_opts_t;

/* Returned by the pd_engine_on_* feeders when the chain's thinking would exceed
 * max_think_bytes (the exchange then fails with 502; nothing of the piece was kept). */
#define PD_ENGINE_ETOOLARGE (-2)

/* Returned by pd_engine_on_call_end when the streamed call ended before it was complete: it
 * carried neither a finish_reason nor `data: [DONE]` (the exchange then fails with 502: a cut
 * reply must not pass for a whole one). */
#define PD_ENGINE_EINCOMPLETE (-3)

/* One upstream call the engine wants made. */
typedef struct pd_call {
  const char *path; /* relative to the upstream base_url: "/chat/completions" or "/completions" */
  char *body;       /* JSON text (NUL-terminated), malloc'd: the caller owns and frees it */
  size_t body_len;
  int is_answer; /* 1 for the final answer call */
  int index;     /* 1-based call number within this chain */
} pd_call_t;

typedef enum {
  PD_OUT_THINK = 0,  /* text: thinking (incl. the "\n" + wait + "\n" separator between rounds) */
  PD_OUT_CONTENT,    /* text: answer content */
  PD_OUT_TOOL_CALLS, /* json: an OpenAI delta.tool_calls array (streamed) */
  PD_OUT_FINISH      /* text: the answer's finish_reason */
} pd_out_kind_t;

typedef struct pd_out {
  pd_out_kind_t kind;
  const char *text; /* valid only during the callback */
  size_t len;
  json_t *json; /* borrowed, valid only during the callback */
} pd_out_t;

typedef void (*pd_emit_fn)(void *ud, const pd_out_t *out);

typedef struct pd_usage {
  long prompt_tokens;
  long completion_tokens;
  long reasoning_tokens; /* completion tokens of the thinking calls (+ upstream reasoning) */
} pd_usage_t;

/* The accumulated outcome of a chain, valid until pd_engine_free. */
typedef struct pd_result {
  const char *content; /* answer text (NUL-terminated; "" when none) */
  size_t content_len;
  const char *reasoning; /* thinking segments joined with "\n" + wait + "\n" */
  size_t reasoning_len;
  json_t *tool_calls;        /* borrowed array, or NULL */
  const char *finish_reason; /* the answer call's ("stop" when a complete reply named none), or
                                NULL before the answer call ended */
  pd_usage_t usage;          /* summed over every call of the chain */
  int think_calls;           /* thinking calls actually made */
  int calls;                 /* all upstream calls made */
} pd_result_t;

/* Checks that a client request can be forced. Returns 0, or -1 with *msg (static string) and
 * *param (static, or NULL) describing the 400 invalid_request_error. */
int pd_engine_validate(const json_t *request, const char **msg, const char **param);

/* Whether a request should be forced at all: rounds > 0 and the last message is from the user. */
int pd_engine_should_force(const json_t *request, int rounds);

/* Creates an engine for one chain. `request` is the client's body (the `ponder` field already
 * removed); the engine takes its own reference. Returns NULL on allocation failure. */
pd_engine_t *pd_engine_new(const pd_engine_opts_t *opts, json_t *request);
/* Frees the engine, its reference to the request and everything it accumulated. */
void pd_engine_free(pd_engine_t *e);

/* Returns 1 and fills *call with the next upstream call, 0 when the chain is done, or -1 when
 * the body could not be built (out of memory) or a reply is still awaited; call->body is NULL
 * unless 1 is returned. Must not be called again until the current call's reply has been fed. */
int pd_engine_next(pd_engine_t *e, pd_call_t *call);

/* Feeds the whole (non-streamed) reply of the current call. Returns 0, -1 when the reply is
 * not a valid chat/completions response (the exchange then fails with 502), or
 * PD_ENGINE_ETOOLARGE. */
int pd_engine_on_response(pd_engine_t *e, const json_t *reply, pd_emit_fn emit, void *ud);

/* Feeds one streamed chunk (the parsed JSON of one SSE `data:` line) of the current call.
 * Returns 0, -1, or PD_ENGINE_ETOOLARGE as pd_engine_on_response. */
int pd_engine_on_chunk(pd_engine_t *e, const json_t *chunk, pd_emit_fn emit, void *ud);
/* Whether the engine can take its replies and chunks read in one pass (the _read feeders):
 * every mode but the completions dialect's forced calls, whose replies carry choices[0].text. */
int pd_engine_reads_one_pass(const pd_engine_t *e);
/* The same as pd_engine_on_response and pd_engine_on_chunk for a reply or chunk read by
 * pd_openai_read_reply(b, n, 0 or 1, m) (which returned 1), without a tree: the same outputs,
 * usage and errors. -1 also when the engine does not read so (pd_engine_reads_one_pass). */
struct pd_openai_msg;
int pd_engine_on_response_read(pd_engine_t *e, const struct pd_openai_msg *m, pd_emit_fn emit,
                               void *ud);
int pd_engine_on_chunk_read(pd_engine_t *e, const struct pd_openai_msg *m, pd_emit_fn emit,
                            void *ud);

/* Marks the current streamed call's `data: [DONE]` as seen: its stream is complete even if no
 * chunk carried a finish_reason (some servers send none). A no-op when no call is in flight. */
void pd_engine_on_done_marker(pd_engine_t *e);

/* Ends the current streamed call at the end of its body. A streamed call is complete once it
 * carried a finish_reason (a non-empty string; OpenAI sends it, then [DONE]) or its [DONE]
 * (servers that omit the finish_reason); one without either broke off: PD_ENGINE_EINCOMPLETE,
 * nothing of the call is accounted and the chain stays waiting. Else 0, or -1 as
 * pd_engine_on_response. A no-op (0) when no call is in flight. */
int pd_engine_on_call_end(pd_engine_t *e, pd_emit_fn emit, void *ud);

/* Fills *out with the chain's outcome so far; its strings stay the engine's, valid until
 * pd_engine_free. */
void pd_engine_result(const pd_engine_t *e, pd_result_t *out);

/* The number of upstream calls a request may cause at most: n chains of `rounds` thinking calls
 * (with min_think_tokens, rounds is the cap) and one answer call each; 1 for an unforced
 * request (rounds 0, or `forced` 0), whatever n (the upstream makes the n choices). */
long pd_engine_max_calls(int n, int rounds, int forced);

/* Resumes paused producers in turn while the consumer keeps up: resume(ud, i) resumes producer
 * i (it may deliver at once) and returns 1 when the consumer is above its watermark again
 * afterwards. Starts at *next and goes round the n producers once, stopping after the first
 * that re-raised pressure; *next becomes the one after the last resumed, so that the next
 * drain starts where this one stopped and no producer is starved. Returns the number resumed. */
int pd_engine_resume_round(int n, int *next, int (*resume)(void *ud, int i), void *ud);

#endif
