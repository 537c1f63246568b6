/* The client-API seam: one const table per client API (Chat Completions in chat.c; others
 * beside it) that the exchange (app/) calls for everything that depends on which API the
 * client spoke: reading the request body into the engine's request, the relay fast path's
 * scan, and writing the engine's outputs as that API's objects and events. The exchange, the
 * engine and the upstream side never learn which API it is: they hold a `const pd_api_t *`.
 *
 * Pure: no I/O, no libuv; the writers append to buffers the exchange owns and sends. The
 * registry (pd_api_find) is the one list of APIs; the dispatch decision looks requests up in it.
 * Owns nothing beyond the tables. */
#ifndef PD_API_H
#define PD_API_H

#include <jansson.h>
#include <stddef.h>

#include "base/buf.h"
#include "config/config.h"
#include "core/engine.h"
#include "api/chat_scan.h"
#include "core/openai.h"

/* Storage an API keeps per response or per choice (its stream's bookkeeping: which parts are
 * open, sequence numbers...). Embedded in the exchange, zeroed before first use, so an API
 * needs no allocation of its own; an API checks with a static assertion that its state fits. */
#define PD_API_STATE_BYTES 64
typedef union pd_api_state {
  void *align_ptr;
  long long align_ll;
  double align_d;
  unsigned char bytes[PD_API_STATE_BYTES];
} pd_api_state_t;

/* One response as the writers see it. The exchange fills it once the response is decided
 * (before the first writer runs) and keeps it until the request ends. */
typedef struct pd_api_resp {
  char id[48];                          /* the response's id (api->id_prefix + random) */
  long created;                         /* unix seconds */
  const char *model;                    /* the model name the client asked for (borrowed) */
  pd_reasoning_t reasoning;             /* the route's display mode: field, inline or hidden */
  pd_reasoning_field_t reasoning_field; /* the route's name for the field display's thinking,
                                           where the API's objects have no reasoning of their
                                           own (chat messages and deltas) */
  int n;                                /* choices (the engine runs one chain per choice) */
  int include_usage;                    /* the client asked for usage in the stream */
  const char *limit_param; /* the upstream's token limit parameter (borrowed; set before
                              request(): an API whose request names a limit maps it to this) */
  long max_held;           /* > 0: bound on what a writer may hold for one response (the text
                              its later events repeat): limits.max_reply_bytes */
  pd_api_state_t state;    /* the API's own */
} pd_api_resp_t;

/* One choice of a response (one engine chain). */
typedef struct pd_api_choice {
  int index;
  pd_api_state_t state; /* the API's own */
} pd_api_choice_t;

/* What an API reads of the client's request for the exchange. */
typedef struct pd_api_req {
  int stream;               /* the response is streamed */
  int include_usage;        /* a streamed response ends with the usage */
  int verbatim;             /* unforced, the client's own bytes are the request to relay (nothing in
                               them is ponder's to remove) */
  const char *rounds_param; /* the rounds override as the client named it, or NULL when absent */
  const char *effort_param; /* the reasoning effort as the client named it, or NULL */
  /* A 400 invalid_request_error when request() fails: message and param (may be NULL), static
   * or in msgbuf and parambuf. */
  const char *msg, *param;
  char msgbuf[320];
  char parambuf[64];
} pd_api_req_t;

/* A writer's result when what it holds for the response would pass pd_api_resp_t.max_held. */
#define PD_API_ETOOLARGE (-2)
/* plain_final's result for an upstream reply that is not a chat completion ponder can read. */
#define PD_API_EUNREADABLE (-3)

typedef struct pd_api {
  const char *name;      /* for logs: "chat.completions" */
  const char *path;      /* the path after [prefix]/v1 it serves ("/chat/completions") */
  const char *id_prefix; /* of response ids ("chatcmpl-"; the id holds 24 random characters) */
  /* Unforced requests are relayed upstream as the client sent them (with the route's model
   * and the router's removals) and the reply relayed back: the upstream speaks this API. When
   * 0, an unforced request runs through the engine like a forced one with no thinking round
   * (a non-streamed one through plain_final instead, when the API has it). */
  int relay;

  /* The relay fast path: reads a body without building a tree. Returns 1 when the request is
   * valid for this API and unforced it goes upstream byte for byte (no key ponder removes or
   * rewrites), filling *out; 0 when unsure (the tree path then decides). NULL: no fast path. */
  int (*scan)(const char *body, size_t len, pd_chat_scan_t *out);

  /* Turns the client's parsed body (*body, an object; owned by the caller) into the engine's
   * request, a chat completions request tree, replacing *body when it translates (the old
   * tree released), and reads the request's options into *out (every field: the exchange does
   * not clear it). r is the response being prepared (model, display, limit_param and max_held
   * set; id and created not yet): an API may keep what its writers need of the request in r->state,
   * released by release(). Returns 0, or -1 for a 400 with out->msg and out->param. Runs before the
   * router, which then reads the engine's request (ponder, reasoning_effort, user). */
  int (*request)(json_t **body, pd_api_req_t *out, pd_api_resp_t *r);
  /* Releases what request() or the writers kept in r->state; runs once when the exchange is
   * freed, whether or not request() ran or succeeded. NULL: nothing to release. */
  void (*release)(pd_api_resp_t *r);

  /* The translated relay of an API that does not relay (relay 0): an unforced, non-streamed
   * request goes upstream as one plain chat completions call of request()'s tree (the engine's
   * plain call, without the engine) and the upstream's whole chat.completion reply (len bytes,
   * status 2xx) becomes this API's response here, in one pass over its bytes; *usage gets the
   * call's usage as the engine counts it. Returns 0 with the response appended to out, -1 when
   * memory runs out, or PD_API_EUNREADABLE (the exchange answers 502). NULL: such requests run
   * through the engine like forced ones. */
  int (*plain_final)(pd_buf_t *out, pd_api_resp_t *r, const char *reply, size_t len,
                     pd_usage_t *usage);
  /* The translated relay's fast path (with scan and plain_final): for a body scan took, not
   * streamed and unforced, appends to out the chat completions body that request()'s tree
   * would go upstream as (app/relay.c), "model" set to model, written in one pass over the
   * client's bytes, and keeps in r->state what the writers need, as request() does. Returns 0,
   * 1 when the tree path must decide (nothing kept), or -1 when memory runs out. NULL: none. */
  int (*plain_body)(const char *body, size_t len, const char *model, pd_buf_t *out,
                    pd_api_resp_t *r);

  /* The writers: each appends to out and returns 0, -1 when memory runs out, or
   * PD_API_ETOOLARGE when what it holds would pass r->max_held (the exchange then fails the
   * response: 502 before it started, the error event after). */
  /* The whole response of a non-streamed request from the chains' results. */
  int (*final)(pd_buf_t *out, pd_api_resp_t *r, const pd_result_t *results, size_t n);
  /* The stream's opening, once, before any delta. */
  int (*stream_start)(pd_buf_t *out, pd_api_resp_t *r);
  /* One engine output (thinking, answer text, tool calls, the answer call's end) of choice c
   * as the stream's events, in the route's display mode. Never called with empty text. */
  int (*delta)(pd_buf_t *out, pd_api_resp_t *r, pd_api_choice_t *c, const pd_out_t *o);
  /* Choice c is complete: its answer ended with `reason`. */
  int (*finish)(pd_buf_t *out, pd_api_resp_t *r, pd_api_choice_t *c, const char *reason);
  /* The stream's end after every choice finished: the usage (summed over every call) when the
   * client asked for it, and the end marker. */
  int (*stream_end)(pd_buf_t *out, pd_api_resp_t *r, const pd_usage_t *usage);
  /* The error event for a failure after the stream started (the connection closes after it):
   * the upstream's own error object when `upstream` is non-NULL (JSON text, ulen bytes), else
   * one built from message, type and code. */
  int (*error_event)(pd_buf_t *out, pd_api_resp_t *r, const char *upstream, size_t ulen,
                     const char *message, const char *type, const char *code);
} pd_api_t;

/* Chat Completions (chat.c). */
extern const pd_api_t pd_chat_api;
/* The Responses API (responses_api.c, over responses.c). */
extern const pd_api_t pd_responses_api;

/* The API serving `rest` (the path after [prefix]/v1, not NUL-terminated), or NULL. The
 * returned table is static. */
const pd_api_t *pd_api_find(const char *rest, size_t len);

/* OpenAI's SSE error event `data: {"error":...}\n\n`: the upstream's error object compacted when
 * upstream is non-NULL (JSON text, ulen bytes; "{}" when it does not parse), else one built from
 * message, type and code. For APIs whose stream reports errors that way, and for streams
 * relayed without an API. */
int pd_api_sse_error(pd_buf_t *out, const char *upstream, size_t ulen, const char *message,
                     const char *type, const char *code);

/* Earlier thinking is never sent upstream (SPEC section 5). pd_api_strip_think moves *s and
 * *n past a leading "<think>" ... "</think>" block and up to two newlines after it (as the inline
 * display writes it); text without a closed leading block is left as it is. */
void pd_api_strip_think(const char **s, size_t *n);

/* Removes the earlier thinking from a chat messages array in place: the `reasoning_content` and
 * `reasoning` members of assistant messages, and a leading <think> block of their text (a
 * string content, or the first text part). Returns the number of messages changed, or -1 when
 * memory ran out. Anything that is not an array of objects is left alone (validation is the
 * engine's). */
int pd_api_strip_history(json_t *messages);

#endif
