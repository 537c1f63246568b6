/* OpenAI JSON shapes: error objects, the final chat.completion, stream chunks. The one place
 * that knows these formats on the way out to the client. */
#ifndef PD_OPENAI_H
#define PD_OPENAI_H

#include <jansson.h>
#include <stdint.h>

#include "base/buf.h"
#include "config/config.h"
#include "core/engine.h"

/* Appends {"error":{"message":...,"type":...,"param":...,"code":...}}; param/code may be NULL. */
int pd_openai_error(pd_buf_t *b, const char *message, const char *type, const char *param,
                    const char *code);

/* Checks without allocating that b is one well-formed JSON object (RFC 8259 syntax, nesting
 * at most 64 deep). Returns 1 for an object, 2 for an object with a top-level "error" key, and
 * 0 otherwise. Used on the relay fast path, where building a jansson tree would cost more than
 * the rest of the request. */
int pd_json_check_object(const char *b, size_t n);
/* pd_json_check_object that also finds the top-level "usage" member's value (the last one, as
 * jansson keeps): *usage points into b (NULL when there is none), *usage_len its length, so a
 * relayed reply's token counts are read without a second pass over the whole reply. */
int pd_json_check_reply(const char *b, size_t n, const char **usage, size_t *usage_len);

/* Appends v as compact JSON, byte for byte what json_dumps(v, JSON_COMPACT) writes (keys in
 * insertion order, UTF-8 kept, control characters escaped as jansson does) at a fraction of its
 * cost: the forced path serialises every upstream request body with it. Returns 0, or -1 when
 * out of memory or nested deeper than PD_JSON_WRITE_MAX_DEPTH (twice what jansson's parser
 * accepts, so any tree built from a parsed body fits). */
#define PD_JSON_WRITE_MAX_DEPTH 4096
int pd_json_write(pd_buf_t *out, const json_t *v);

/* What the relay fast path needs from a chat request body, read without building a tree. */
typedef struct pd_chat_req {
  const char *model; /* the "model" string's bytes (not NUL-terminated) */
  size_t model_len;
  const char *user; /* "user" when it is a string, else NULL */
  size_t user_len;
  int stream;        /* "stream" is true */
  int include_usage; /* "stream_options" is an object whose "include_usage" is true */
} pd_chat_req_t;

/* Reads a chat request body in one pass without allocating. Returns 1 when b is one JSON
 * object that json_loadb(b, n, 0) accepts and pd_engine_validate passes, with a string
 * "model", no "ponder" and no "reasoning_effort" key, and no escapes in "model", in "user" (a
 * string) or in any key at the top level, of a message or of "stream_options"; out is then
 * filled (duplicate keys: the last counts, as in jansson). Returns 0 otherwise, also where it is
 * unsure (huge numbers, nesting over 64): the caller then takes the jansson path. */
int pd_chat_req_scan(const char *b, size_t n, pd_chat_req_t *out);

/* json_loadb(b, n, 0, err) at a quarter of its cost for the common case: a JSON object is read
 * with the rules of pd_chat_req_scan and built directly; anything those are unsure of (escaped
 * keys, integers over 18 digits, nesting over 64) and every other text goes to json_loadb, which
 * also fills err then. */
json_t *pd_json_load(const char *b, size_t n, json_error_t *err);

/* Parses an upstream chat/completions reply or stream chunk, accepting and rejecting exactly
 * what json_loadb(b, n, 0) does, but building only what the forcing engine and the error check
 * read: "choices" with its element 0 only, and of that "message" and "delta" (their "content",
 * "reasoning_content", "reasoning" and "tool_calls"), "text" and "finish_reason"; "usage";
 * "error". Other members are checked and left out. A member of another type than expected is
 * kept whole. Returns a new reference, or NULL where json_loadb would fail. */
json_t *pd_json_load_reply(const char *b, size_t n);

/* Whether a parsed upstream body is an OpenAI error object ({"error": {"message": ...}}). */
int pd_openai_is_error(const json_t *body);

/* Fills out with a new id "chatcmpl-" + 24 random alphanumerics (out must hold 34 bytes). */
void pd_openai_new_id(char *out, const char *prefix, uint64_t (*rnd)(void *), void *ud);

/* The final chat.completion for n chains; appended to b. */
int pd_openai_completion(pd_buf_t *b, const char *id, long created, const char *model,
                         pd_reasoning_t reasoning, const pd_result_t *results, size_t n);
/* pd_openai_completion with the field display's thinking under each name of rfields
 * (NULL-terminated, static names; NULL: "reasoning_content" alone). */
int pd_openai_completion_named(pd_buf_t *b, const char *id, long created, const char *model,
                               pd_reasoning_t reasoning, const char *const *rfields,
                               const pd_result_t *results, size_t n);

/* Stream chunk helpers: each appends one whole SSE event "data: {...}\n\n". */
typedef struct pd_chunk_ctx {
  const char *id;
  long created;
  const char *model;
} pd_chunk_ctx_t;

/* A delta with the same text under each name of fields (NULL-terminated; static names such
 * as "reasoning_content" and "reasoning"), in one chunk. */
int pd_openai_chunk_texts(pd_buf_t *b, const pd_chunk_ctx_t *c, int index,
                          const char *const *fields, const char *text, size_t len);

/* A delta with one text field: field is "content", "reasoning_content" or "role". */
int pd_openai_chunk_text(pd_buf_t *b, const pd_chunk_ctx_t *c, int index, const char *field,
                         const char *text, size_t len);
/* A delta carrying a tool_calls array. */
int pd_openai_chunk_tool_calls(pd_buf_t *b, const pd_chunk_ctx_t *c, int index,
                               const json_t *tool_calls);
/* An empty delta with finish_reason. */
int pd_openai_chunk_finish(pd_buf_t *b, const pd_chunk_ctx_t *c, int index, const char *reason);
/* The include_usage chunk: "choices": [] and the summed usage. */
int pd_openai_chunk_usage(pd_buf_t *b, const pd_chunk_ctx_t *c, const pd_usage_t *u);
/* The error event for failures after the stream started. */
int pd_openai_chunk_error(pd_buf_t *b, const char *message, const char *type, const char *code);

/* Usage object {"prompt_tokens",...,"completion_tokens_details":{"reasoning_tokens"}} */
int pd_openai_usage(pd_buf_t *b, const pd_usage_t *u);

#endif
