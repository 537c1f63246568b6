/* The forcing modes (SPEC section 5): one small table of functions per mode saying how an
 * upstream call's body is built and how a thinking reply extends the transcript. Private to the
 * forcing engine (core/engine.c drives the rounds; modes.c knows the wire shapes). Exports
 * pd_mode_*; the growable text the modes build is base/buf.h's pd_buf_t. */
#ifndef PD_MODES_H
#define PD_MODES_H

#include <jansson.h>
#include <stddef.h>

#include "base/buf.h"
#include "config/config.h"

/* The state of one chain that the modes read (and, through add_reply/next_round, extend).
 * Owned by the engine. */
typedef struct pd_chain {
  const pd_policy_t *policy;
  int rounds;           /* R: the most thinking calls */
  char *upstream_model; /* owned copy */
  char *limit_param;    /* owned copy: "max_tokens" | "max_completion_tokens" */
  int stream;           /* build streamed calls */
  json_t *request;      /* the client's body (a reference) */
  long *limits;         /* limits[k]: token limit of thinking call k + 1 (rounds entries) */
  long answer_limit;    /* the client's max_completion_tokens/max_tokens, else answer_budget */
  int think_calls;      /* thinking calls made so far */
  json_t *segments;     /* chat: s_1..s_k as JSON strings */
  pd_buf_t transcript;  /* prefill/completions: the replies and waits, verbatim */
  int last_length;      /* the last thinking call ended with finish_reason "length" */
  int cut;              /* thinking was cut at a budget */
  /* chat: the body text every call repeats, built on first use (pd_mode_chain_free_text frees it)
   */
  pd_buf_t think_head; /* a thinking call's body up to and including M' */
  pd_buf_t mprime;     /* M' as JSON array elements */
  pd_buf_t pairs;      /* ",{assistant},{user}" for the first npairs thinking calls */
  int think_head_ok, mprime_ok, npairs;
} pd_chain_t;

typedef struct pd_mode_ops {
  const char *path; /* upstream path relative to base_url */
  int text_reply;   /* replies carry choices[0].text (completions) rather than message/delta */
  /* Appends the JSON body of thinking call c->think_calls + 1 (limit c->limits[c->think_calls])
   * to out. Returns 0, or -1 on allocation failure. */
  int (*think_body)(pd_chain_t *c, pd_buf_t *out);
  /* The same for the answer call (after c->think_calls thinking calls). */
  int (*answer_body)(pd_chain_t *c, pd_buf_t *out);
  /* Records the reply s_k of the thinking call that just ended. Returns 0 or -1. */
  int (*add_reply)(pd_chain_t *c, const char *s, size_t n);
  /* Another thinking call follows one that ended with finish_reason `finish` (never NULL). Fills
   * *sep with the wait text to display between the rounds (left empty: display nothing).
   * c->limits[c->think_calls] already holds the next call's limit. Returns 0 or -1. */
  int (*next_round)(pd_chain_t *c, const char *finish, pd_buf_t *sep);
} pd_mode_ops_t;

/* The table of a mode. */
const pd_mode_ops_t *pd_mode_ops(pd_mode_t mode);

/* Appends the body of the single call of an unforced chain (rounds 0, or the last message not
 * from the user): the client's body with only model, n, ponder and stream settings changed. */
int pd_mode_plain_body(pd_chain_t *c, pd_buf_t *out);

/* Appends tmpl (a policy prompt) to t with "{think_budget}" and "{answer_budget}" replaced by
 * think and answer, exactly as the forcing calls send it. Returns 0, or -1 when out of memory. */
int pd_mode_subst(pd_buf_t *t, const char *tmpl, long think, long answer);

/* Frees the cached body text of a chain. */
void pd_mode_chain_free_text(pd_chain_t *c);

#endif
