/* Fuzz target: eval/samples.c's samples.jsonl line parser and what export builds from a line
 * it accepts (eval/export.c): every training format under the built-in policy and under one
 * whose wait text carries a budget, and the thinking split. Checks: an accepted line has its
 * required fields; the split's segments are pieces of the reasoning in order (their lengths
 * never exceed it); with an empty wait text the split is the whole text. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eval/export.h"
#include "eval/samples.h"

static void check_split(const char *text, const char *wait) {
  json_t *segs = pd_export_segments(text, wait);
  if (!segs)
    return; /* out of memory */
  size_t i, total = 0, n = strlen(text);
  const char *at = text;
  json_t *s;
  json_array_foreach(segs, i, s) {
    const char *seg = json_string_value(s);
    size_t len = json_string_length(s);
    const char *found = len ? strstr(at, seg) : at;
    if (!found)
      abort();
    at = found + len;
    total += len;
  }
  if (total > n || (n && json_array_size(segs) == 0) || (!n && json_array_size(segs) != 0))
    abort();
  if (!*wait && n &&
      (json_array_size(segs) != 1 || strcmp(json_string_value(json_array_get(segs, 0)), text)))
    abort();
  json_decref(segs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pd_samples_rec_t r;
  char msg[PD_SAMPLES_MSG];
  if (pd_samples_parse((const char *)data, size, &r, msg) < 0) {
    if (!msg[0])
      abort();
    return 0;
  }
  if (!r.item_id || !r.variant || !*r.variant || !r.question || !r.reasoning || !r.output_text)
    abort();
  pd_policy_t p[2];
  pd_config_policy_defaults(&p[0]);
  pd_config_policy_defaults(&p[1]);
  p[1].prompts.wait = "\nWait {think_budget}";
  p[1].prompts.think = "{think_budget}{answer_budget}{";
  p[1].max_think_tokens = 7;
  for (int k = 0; k < 2; k++)
    for (int f = PD_EXPORT_OPENAI_THINK; f <= PD_EXPORT_S1K; f++) {
      json_t *v = pd_export_line((pd_export_format_t)f, &r, &p[k], f & 1);
      char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
      free(text);
      json_decref(v);
    }
  check_split(r.reasoning, "W");
  check_split(r.reasoning, "");
  check_split(r.reasoning, "{think_budget}");
  check_split(r.reasoning, pd_export_wait(&p[1]));
  pd_samples_rec_free(&r);
  return 0;
}
