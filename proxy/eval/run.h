/* The requests of `ponder eval`: every item K times per variant against a chat completions
 * endpoint, on a libuv loop through ponder's own upstream client (upstream/upstream.h), at most
 * `concurrency` requests in flight; a failed request is retried per `retries` (connect errors,
 * 429, 5xx), then recorded as an error sample with score 0. Each reply is read (answer,
 * thinking, usage, x-ponder-rounds) and graded; the judge calls a grader asks for are made
 * through the judge endpoint with forcing off, within the same in-flight bound. */
#ifndef PD_RUN_H
#define PD_RUN_H

#include <stddef.h>
#include <uv.h>

#include "eval/eval.h"

typedef struct pd_run_opts {
  const char *url;       /* the chat completions URL the samples go to */
  const char *judge_url; /* the chat completions URL of the judge calls */
  const char *model;     /* "model" of every sample request */
  /* Judge calls: the "model" to send instead of the grader's (NULL: the grader's), and
   * whether to send "X-Ponder-Rounds: 0" (forcing off; a ponder route that allows it). */
  const char *judge_model;
  int judge_rounds0;
  const char *const *headers; /* NULL-terminated "Name: value" lines sent on every request */
  const pd_eval_item_t *items;
  size_t nitems;
  const char *const *variants;
  size_t nvariants;
  int set_variant; /* send "X-Ponder-Variant: NAME" per variant */
  int per_item;    /* K */
  int concurrency; /* N >= 1 */
  int retries;
  long timeout_ms; /* one request, its retries included; 0 = none */
  const pd_grader_t *grader;
} pd_run_opts_t;

typedef struct pd_run pd_run_t;

/* What the progress line shows; counts are of finished samples. */
typedef struct pd_run_progress {
  size_t done, total, errors;
  size_t items_done;       /* items whose every sample (all variants) finished */
  const double *score_sum; /* per variant */
  const size_t *count;     /* per variant */
} pd_run_progress_t;

/* Creates a run on loop; samples (nitems * nvariants * per_item, caller-owned) is filled in as
 * samples finish: index (item * nvariants + variant) * per_item + sample. o and everything it
 * points to must outlive the run. */
pd_run_t *pd_run_new(uv_loop_t *loop, const pd_run_opts_t *o, pd_eval_sample_t *samples);
/* Starts sending; on_done runs on the loop once every sample finished and the upstream client
 * closed. Returns 0 or a negative errno. */
int pd_run_start(pd_run_t *r, void (*on_done)(void *ud), void *ud);
void pd_run_progress(const pd_run_t *r, pd_run_progress_t *out);
/* After on_done. */
void pd_run_free(pd_run_t *r);

/* A reply of a chat completions endpoint read into a sample: output_text (content; with an
 * inline "<think>...</think>" prefix split off), reasoning (reasoning_content or reasoning),
 * usage. Returns 0, or -1 with a reason in *why (static) when the body is not a chat
 * completion. Pure; exposed for tests. */
int pd_run_read_reply(const char *body, size_t len, pd_eval_sample_t *s, const char **why);

/* Frees what a sample owns and zeroes it. */
void pd_run_sample_clear(pd_eval_sample_t *s);

#endif
