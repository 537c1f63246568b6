/* The chat request scan: what the relay fast path needs from a /v1/chat/completions body, read
 * with base/json.h's tokenizer without building a tree. A shape of the chat client API on top
 * of the one JSON scanner. */
#ifndef PD_CHAT_SCAN_H
#define PD_CHAT_SCAN_H

#include <stddef.h>

/* What the relay fast path needs from a chat request body. */
typedef struct pd_chat_scan {
  const char *model; /* the "model" string's bytes (not NUL-terminated) */
  size_t model_len;
  const char *user; /* "user" when it is a string, else NULL */
  size_t user_len;
  int stream;        /* "stream" is true */
  int include_usage; /* "stream_options" is an object whose "include_usage" is true */
} pd_chat_scan_t;

/* Reads a chat request body in one pass without allocating. Returns 1 when b is one JSON
 * object that json_loadb(b, n, 0) accepts and pd_engine_validate passes, with a string
 * "model", no "ponder" and no "reasoning_effort" key, and no escapes in "model", in "user" (a
 * string) or in any key at the top level, of a message or of "stream_options", and no earlier
 * thinking the tree path would remove (an assistant message with "reasoning_content" or
 * "reasoning", or whose content or a content part's text starts with "<think>" or with an
 * escape: SPEC section 5); out is then
 * filled (pointers into b; duplicate keys: the last counts, as in jansson). Returns 0 otherwise;
 * for a body with such escapes that jansson accepts, the caller takes the jansson path. */
int pd_chat_scan_body(const char *b, size_t n, pd_chat_scan_t *out);

#endif
