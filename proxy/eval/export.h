/* `ponder export`'s pure parts (SPEC section 11): one graded sample as one fine-tuning line in
 * each format, and the thinking split back into its rounds. pd_export_main (eval/eval.h) is
 * the command around them. */
#ifndef PD_EXPORT_H
#define PD_EXPORT_H

#include <jansson.h>

#include "config/config.h"
#include "eval/samples.h"

typedef enum {
  PD_EXPORT_OPENAI_THINK = 0, /* the seed's five-message chat format */
  PD_EXPORT_REASONING_FIELD,  /* assistant {content, reasoning} */
  PD_EXPORT_INLINE_THINK,     /* assistant content "<think>\n...\n</think>\n\n" + answer */
  PD_EXPORT_S1K               /* {question, thinking_trajectories, attempt, reference} */
} pd_export_format_t;

/* The format named `name` ("openai-think", ...), or -1. */
int pd_export_format(const char *name);

/* The training line of sample r in `format`: policy p gives the prompts and budgets
 * (openai-think) and the wait text between rounds (s1k); with_metadata adds "metadata".
 * Returns a new object, or NULL when out of memory. r and p stay the caller's. */
json_t *pd_export_line(pd_export_format_t format, const pd_samples_rec_t *r, const pd_policy_t *p,
                       int with_metadata);

/* The thinking segments of a reasoning text: ponder shows a forced chain's thinking as the
 * segments joined by "\n" + wait + "\n", with wait the policy's wait prompt (chat mode, its
 * {think_budget}/{answer_budget} already substituted: they match any run of digits here) or
 * prefill.wait (prefill and completions modes). Returns a new array of strings (empty for an
 * empty text; one element when wait is empty or never found), or NULL when out of memory. */
json_t *pd_export_segments(const char *reasoning, const char *wait);

/* The wait text between rounds under policy p (see pd_export_segments). */
const char *pd_export_wait(const pd_policy_t *p);

#endif
