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
  char *id;         /* the item's "id" as text (a number is printed), else its line number */
  long line;        /* 1-based line in the dataset file */
  json_t *obj;      /* the item as it is (one reference): {{item.FIELD}} reads it */
  char *question;   /* the question found by the dataset rules; NULL for a `messages` item */
  char *reference;  /* the reference as text (a number is printed); NULL when absent */
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
  double score;   /* in [0, 1]; 0 for an error */
  json_t *scores; /* {grader name: score} (one reference), or NULL */
  long prompt_tokens, completion_tokens, reasoning_tokens;
  int rounds, upstream_calls;
  double latency_ms;
  char *error; /* NULL when the request and its grading succeeded */
} pd_eval_sample_t;

/* A finished run, as the summary reads it. */
typedef struct pd_eval_run {
  const char *dataset; /* the dataset path as given */
  const char *grader;  /* the grader's name, for summary.json's "grader" */
  uint64_t seed;       /* --seed: the bootstrap's generator */
  int per_item;        /* --samples K */
  const pd_eval_item_t *items;
  size_t nitems;
  const char *const *variants; /* in the order run; the first is the baseline of `diff` */
  size_t nvariants;
  const pd_eval_sample_t *samples; /* any order */
  size_t nsamples;
  int have_price;             /* --price given */
  double price_in, price_out; /* per million prompt / completion tokens */
} pd_eval_run_t;

/* `ponder eval ARGS` (argv[0] is "eval"): returns the process's exit code. */
int pd_eval_main(int argc, char **argv);
/* `ponder export ARGS` (argv[0] is "export"): returns the process's exit code. */
int pd_export_main(int argc, char **argv);

/* ---- answer.c ---------------------------------------------------------------------------- */
/* SPEC's final answer of an answer text: the content of the last \boxed{...}, else the text
 * after the last "Answer:" or "Final Answer:", else the last number; trimmed, surrounding `$`,
 * a trailing period and thousands separators removed. Returns a new string ("" when nothing
 * was found); NULL only when out of memory. */
char *pd_eval_final_answer(const char *answer_text);

/* ---- grader.c: grader objects (pure: judge calls are made by the caller) ------------------ */
typedef struct pd_grader pd_grader_t;
/* Parses one grader object from JSON text; unknown types, metrics, operations or template
 * fields are errors. `origin` (a file name) starts the message put in *err (malloc'd). */
pd_grader_t *pd_grader_parse(const char *text, size_t len, const char *origin, char **err);
/* A grader by name: NULL or "default" (string_check eq of {{sample.final_answer}} and
 * {{item.reference}}), "judge" (config/graders/judge.json, built in), else a file path. */
pd_grader_t *pd_grader_get(const char *name_or_path, char **err);
const char *pd_grader_name(const pd_grader_t *g);
int pd_grader_uses_judge(const pd_grader_t *g); /* score_model or label_model inside */
void pd_grader_free(pd_grader_t *g);

/* Grading one sample. The grade asks for 0..n judge calls, all known at begin; the caller
 * makes them (in any order, concurrently) and hands each reply back, then finishes. */
typedef struct pd_grade_input {
  const pd_eval_item_t *item;
  const char *output_text;    /* the answer ("" when none) */
  const char *reasoning_text; /* the thinking ("" when none) */
  const char *final_answer;   /* pd_eval_final_answer(output_text) */
} pd_grade_input_t;
typedef struct pd_grade pd_grade_t;
pd_grade_t *pd_grade_begin(const pd_grader_t *g, const pd_grade_input_t *in);
size_t pd_grade_njudge(const pd_grade_t *gr);
/* The i-th judge call: a Chat Completions request body (model, messages, response_format,
 * the grader's sampling_params; never "stream"), NUL-terminated, owned by the grade. */
const char *pd_grade_judge_body(const pd_grade_t *gr, size_t i);
/* The i-th judge call's outcome: the reply's choices[0].message.content, or content NULL and
 * why in err when the call failed. */
void pd_grade_judge_reply(pd_grade_t *gr, size_t i, const char *content, const char *err);
/* After every reply: the score in [0, 1]; *scores gets {grader name: score} (a new reference);
 * *error a malloc'd reason when the grading could not score (then the score is 0), else NULL. */
double pd_grade_finish(pd_grade_t *gr, json_t **scores, char **error);
void pd_grade_free(pd_grade_t *gr);

/* ---- summary.c ----------------------------------------------------------------------------- */
/* summary.json's object (SPEC section 11's shape) for a finished run; NULL when out of memory. */
json_t *pd_eval_summary(const pd_eval_run_t *run);
/* summary.md: the summary as a Markdown table (what `ponder eval` prints); malloc'd. */
char *pd_eval_summary_md(const json_t *summary);

/* ---- report.c ------------------------------------------------------------------------------ */
/* Writes report.html at `path` from the summary and the samples.jsonl at `samples_path`: one
 * self-contained page. Returns 0, or -1 with a malloc'd reason in *err. */
int pd_eval_report_write(const char *path, const json_t *summary, const char *samples_path,
                         char **err);

#endif
