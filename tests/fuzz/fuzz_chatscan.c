/* Fuzz target: the allocation-free chat request scanner pd_chat_req_scan (proxy/openai.c),
 * differential against the jansson path it stands in for (json_loadb, then pd_engine_validate
 * and a string "model").
 *  - Sound: whatever it accepts, jansson accepts and validates, with the same model, user,
 *    stream and include_usage, and no "ponder" or "reasoning_effort" key.
 *  - Not needlessly unsure: a body jansson accepts and validates with none of the things the
 *    contract lets it fall back on (any backslash, long digit runs, exponents, nesting over 64)
 *    is accepted.
 * Any difference aborts, so libFuzzer keeps the input. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/json_depth.h"
#include "core/engine.h"
#include "core/openai.h"

/* Whether the text has none of what the scanner may be unsure of: a backslash anywhere, a run
 * of 18 or more digits, or an exponent (a digit or '.' followed by e/E, strings included). A NUL
 * byte is excluded too: jansson 2.14 drops one that follows a number or a literal
 * ({"stream":false\0,...}), which the scanner rightly rejects. */
static int plain_text(const char *b, size_t n) {
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    char c = b[i];
    if (c == '\\' || c == '\0')
      return 0;
    if ((c == 'e' || c == 'E') && i > 0 &&
        ((b[i - 1] >= '0' && b[i - 1] <= '9') || b[i - 1] == '.'))
      return 0;
    run = c >= '0' && c <= '9' ? run + 1 : 0;
    if (run >= 18)
      return 0;
  }
  return 1;
}

static int same_str(const json_t *s, const char *p, size_t n) {
  return json_string_length(s) == n && memcmp(json_string_value(s), p, n) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *b = (const char *)data;
  pd_chat_req_t cr;
  memset(&cr, 0, sizeof cr);
  int got = pd_chat_req_scan(b, size, &cr);
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
  } else if (got != 0) {
    abort();
  } else if (valid && plain_text(b, size) && depth(j) <= 64) {
    abort(); /* fell back where the contract does not allow it to be unsure */
  }
  json_decref(j);
  return 0;
}
