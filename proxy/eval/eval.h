/* The types the evaluation modules share (SPEC section 11): a dataset item, one graded sample,
 * a finished run, and the entry points between the modules:
 *   eval.c, dataset.c, run.c   `ponder eval`: the command line, the dataset, the requests
 *   grader.c, answer.c, expr.c graders (OpenAI grader objects), the final-answer rules, the
 *                              `multi` grader's expressions; pure, no I/O
 *   stats.c, summary.c         intervals and tests; summary.json and summary.md
 *   report.c                   report.html
 *   export.c                   `ponder export`
 * Everything here is pure except eval.c/run.c (the requests) and the file writers. */
#ifndef PD_EVAL_H
#define PD_EVAL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* One dataset line. All strings are owned by the item. */
typedef struct pd_eval_item {
  char *id;        /* the item's "id" as text (a number is printed), else its line number */
  long line;       /* 1-based line in the dataset file */
  json_t *obj;     /* the item as it is (one reference): {{item.FIELD}} reads it */
  char *question;  /* the question found by the dataset rules; NULL for a `messages` item */
  char *reference; /* the reference as text (a number is printed); NULL when absent */
  json_t *messages; /* borrowed from obj: the chat messages, or NULL */
} pd_eval_item_t;

/* One sample: one request of one item to one variant, graded. Strings are owned (NULL when
 * absent). */
typedef struct pd_eval_sample {
  size_t item;    /* index into pd_eval_run_t.items */
  size_t variant; /* index into pd_eval_run_t.variants */
  int sample;     /* 0 .. per_item-1 */
  char *reasoning;
  char *output_text;
  char *final_answer;
  double score;  /* in [0, 1]; 0 for an error */
  json_t *scores; /* {grader name: score} (one reference), or NULL */
  long prompt_tokens, completion_tokens, reasoning_tokens;
  int rounds, upstream_calls;
  double latency_ms;
  char *error; /* NULL when the request and its grading succeeded */
} pd_eval_sample_t;

/* A finished run, as the summary reads it. */
typedef struct pd_eval_run {
  const char *dataset;     /* the dataset path as given */
  const char *grader;      /* the grader's name, for summary.json's "grader" */
  uint64_t seed;           /* --seed: the bootstrap's generator */
  int per_item;            /* --samples K */
  const pd_eval_item_t *items;
  size_t nitems;
  const char *const *variants; /* in the order run; the first is the baseline of `diff` */
  size_t nvariants;
  const pd_eval_sample_t *samples; /* any order */
  size_t nsamples;
  int have_price;          /* --price given */
  double price_in, price_out; /* per million prompt / completion tokens */
} pd_eval_run_t;

/* `ponder eval ARGS` (argv[0] is "eval"): returns the process's exit code. */
int pd_eval_main(int argc, char **argv);
/* `ponder export ARGS` (argv[0] is "export"): returns the process's exit code. */
int pd_export_main(int argc, char **argv);

#endif
