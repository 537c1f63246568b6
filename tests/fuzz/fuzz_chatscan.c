/* Fuzz target: the chat request scan pd_chat_scan_body (proxy/api/chat_scan.c), differential
 * against the jansson path it stands in for (json_loadb, then pd_engine_validate and a string
 * "model").
 *  - Sound: whatever it accepts, jansson accepts and validates, with the same model, user,
 *    stream and include_usage, no "ponder" or "reasoning_effort" key, and no earlier thinking
 *    the tree path would remove (pd_api_strip_history changes nothing: the bytes go as they are).
 *  - Complete: the tokenizer under it has jansson's verdict, so the one thing the scan may
 *    leave to the jansson path is a body with a backslash (an escaped key, model or user), or
 *    one that may hold earlier thinking ("<think>", a "reasoning" key); any other body jansson
 *    accepts and validates is accepted.
 * Any difference aborts, so libFuzzer keeps the input. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/chat_scan.h"
#include "core/engine.h"

static int same_str(const json_t *s, const char *p, size_t n) {
  return json_string_length(s) == n && memcmp(json_string_value(s), p, n) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *b = (const char *)data;
  pd_chat_scan_t cr;
  memset(&cr, 0, sizeof cr);
  int got = pd_chat_scan_body(b, size, &cr);
  json_t *j = json_loadb(b, size, 0, NULL);
  const char *msg, *param;
  int valid = j && json_is_object(j) && pd_engine_validate(j, &msg, &param) == 0 &&
              json_is_string(json_object_get(j, "model")) && !json_object_get(j, "ponder") &&
              !json_object_get(j, "reasoning_effort");
  if (got == 1) {
    if (!valid)
      abort();
    if (!same_str(json_object_get(j, "model"), cr.model, cr.model_len))
      abort();
    if (cr.stream != json_is_true(json_object_get(j, "stream")))
      abort();
    if (cr.include_usage !=
        json_is_true(json_object_get(json_object_get(j, "stream_options"), "include_usage")))
      abort();
    json_t *user = json_object_get(j, "user");
    if (json_is_string(user) ? !cr.user || !same_str(user, cr.user, cr.user_len) : !!cr.user)
      abort();
    json_t *msgs = json_deep_copy(json_object_get(j, "messages"));
    if (pd_api_strip_history(msgs) != 0)
      abort();
    json_decref(msgs);
  } else if (got != 0) {
    abort();
  } else if (valid && !memchr(b, '\\', size) && !memmem(b, size, "<think>", 7) &&
             !memmem(b, size, "\"reasoning", 10)) {
    abort(); /* fell back where the contract does not allow it */
  }
  json_decref(j);
  return 0;
}
