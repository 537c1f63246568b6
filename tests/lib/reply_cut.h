/* Test support shared by tests/unit/core/test_openai.c and tests/fuzz/fuzz_json.c: the tree that
 * pd_openai_load_reply must build for a reply, computed from jansson's whole tree by the rules in
 * proxy/openai.h (choices[0] with its message/delta content, reasoning and tool_calls, text and
 * finish_reason; usage; error). Static functions: include it from one file of each program. */
#ifndef PD_TEST_REPLY_CUT_H
#define PD_TEST_REPLY_CUT_H

#include <jansson.h>
#include <stddef.h>

static json_t *keep_members(const json_t *o, const char *const *keys,
                            json_t *(*sub)(const json_t *), size_t nsub) {
  json_t *out = json_object();
  for (size_t i = 0; keys[i]; i++) {
    json_t *v = json_object_get(o, keys[i]);
    if (v)
      json_object_set_new(out, keys[i], i < nsub && sub ? sub(v) : json_deep_copy(v));
  }
  return out;
}

static json_t *cut_message(const json_t *v) {
  static const char *const keys[] = {"content", "reasoning_content", "reasoning", "tool_calls",
                                     NULL};
  return json_is_object(v) ? keep_members(v, keys, NULL, 0) : json_deep_copy(v);
}

static json_t *cut_choice(const json_t *v) {
  static const char *const keys[] = {"message", "delta", "text", "finish_reason", NULL};
  return json_is_object(v) ? keep_members(v, keys, cut_message, 2) : json_deep_copy(v);
}

static json_t *cut_choices(const json_t *v) {
  if (!json_is_array(v))
    return json_deep_copy(v);
  json_t *a = json_array();
  if (json_array_size(v) > 0)
    json_array_append_new(a, cut_choice(json_array_get(v, 0)));
  return a;
}

static json_t *cut_reply(const json_t *full) {
  static const char *const keys[] = {"choices", "usage", "error", NULL};
  return keep_members(full, keys, cut_choices, 1);
}

#endif
