/* OpenAI JSON shapes: error objects, the final chat.completion, stream chunks, usage and ids on
 * the way out to the client, and what ponder reads of an upstream's chat reply. The JSON
 * machinery (tokenizer, loaders, writer) is base/json.h; the chat request scan is
 * api/chat_scan.h. */
#ifndef PD_OPENAI_H
#define PD_OPENAI_H

#include <jansson.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/json.h"
#include "config/config.h"
#include "core/engine.h"

/* Appends {"error":{"message":...,"type":...,"param":...,"code":...}}; param/code may be NULL. */
int pd_openai_error(pd_buf_t *b, const char *message, const char *type, const char *param,
                    const char *code);

/* Parses an upstream chat/completions reply or stream chunk, accepting and rejecting exactly
 * what json_loadb(b, n, 0) does, but building only what the forcing engine and the error check
 * read: "choices" with its element 0 only, and of that "message" and "delta" (their "content",
 * "reasoning_content", "reasoning" and "tool_calls"), "text" and "finish_reason"; "usage";
 * "error". Other members are checked and left out. A member of another type than expected is
 * kept whole; a top-level array is built whole. Returns a new reference, or NULL where
 * json_loadb would fail. */
json_t *pd_openai_load_reply(const char *b, size_t n);

/* What the relay reads of a reply it passes through, found by pd_openai_check_reply's one pass
 * over it. The pointers are into the checked text. */
typedef struct pd_openai_reply {
  const char *usage; /* the top-level "usage" value (the last, as jansson keeps), or NULL */
  size_t usage_len;
  const char *model; /* the last top-level "model" value, or NULL */
  size_t model_len;
  size_t nmodel; /* how many top-level "model" members there are */
} pd_openai_reply_t;

/* Checks without building a tree that b is a JSON object json_loadb(b, n, 0) accepts (the one
 * tokenizer of base/json.h decides) and fills r. Returns 1 for such an object, 2 for one with a
 * top-level "error" member, 0 otherwise (r is then zeroed). */
int pd_openai_check_reply(const char *b, size_t n, pd_openai_reply_t *r);

/* Appends the reply b (checked by pd_openai_check_reply into r) to out with every top-level
 * "model" value replaced by the JSON string model; the other bytes are kept as they came.
 * Returns 0, or -1 when out of memory (out is then as it was). */
int pd_openai_remodel(pd_buf_t *out, const char *b, size_t n, const pd_openai_reply_t *r,
                      const char *model);

/* A string member as pd_openai_read_reply found it: the raw bytes between the quotes, into the
 * read text (decode with pd_openai_text when esc is set). s is NULL when the member is absent
 * or not a string. */
typedef struct pd_openai_text {
  const char *s;
  size_t len;
  int esc; /* the raw bytes hold a backslash escape */
} pd_openai_text_t;

/* What the forcing engine reads of a chat reply or stream chunk, found in one pass of the
 * tokenizer without building a tree: the members pd_openai_load_reply builds but choices[0].text
 * (which only the completions mode reads), with jansson's rules (the last of a repeated key
 * counts, escaped keys match decoded; a member of another type counts as absent). */
typedef struct pd_openai_msg {
  int choice; /* choices[0] is an object */
  /* Of choices[0].message (or .delta when read so): */
  pd_openai_text_t content, reasoning_content, reasoning;
  const char *tool_calls; /* the JSON text of a tool_calls array, or NULL */
  size_t tool_calls_len;
  pd_openai_text_t finish_reason; /* choices[0].finish_reason */
  /* Of the top-level usage object (0 and has_* 0 when absent or not an object): */
  int has_usage; /* the (last) top-level "usage" is an object */
  long long prompt_tokens, completion_tokens, reasoning_tokens;
  int has_prompt, has_completion, has_reasoning; /* the member is an integer */
  int error;        /* a top-level "error" object with a string "message" (pd_openai_is_error) */
  int error_object; /* the (last) top-level "error" is an object, with a message or not */
} pd_openai_msg_t;

/* Reads the reply (delta 0: a chat.completion's choices[0].message) or stream chunk (delta 1:
 * choices[0].delta) b into *m in one pass. Returns 1 when b is a JSON object json_loadb(b, n, 0)
 * accepts, 0 otherwise (*m is then unspecified). Allocates nothing; m points into b. */
int pd_openai_read_reply(const char *b, size_t n, int delta, pd_openai_msg_t *m);
/* Reads the usage value u (n bytes: pd_openai_check_reply's r.usage) into *m's usage members
 * (the rest zeroed), as pd_openai_read_reply reads a reply's. Returns 1 when u is an object,
 * 0 otherwise (has_usage and the counts then 0). Allocates nothing. */
int pd_openai_read_usage(const char *u, size_t n, pd_openai_msg_t *m);

/* The decoded bytes of t: t's own raw bytes when they hold no escape, else decoded into
 * scratch (appended; the result stays valid until scratch changes). Returns 0, or -1 when out
 * of memory. An absent text is "" (length 0). */
int pd_openai_text(const pd_openai_text_t *t, pd_buf_t *scratch, const char **s, size_t *n);

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
