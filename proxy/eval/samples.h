/* The samples.jsonl reader (SPEC section 11): one graded sample a line, as `ponder eval`
 * writes it, read back by `ponder export` and report.html. The lines are untrusted input (a
 * file anyone may have edited or produced): every line is bounded, every known field's type is
 * checked, unknown fields are ignored. Also a small string index (item id -> position) that
 * both readers use to group samples by item. Exports pd_samples_*. */
#ifndef PD_SAMPLES_H
#define PD_SAMPLES_H

#include <jansson.h>
#include <stddef.h>

/* The longest line accepted: a sample carries a whole chain's thinking, which
 * limits.max_reply_bytes (16 MiB by default) bounds per chain, plus the answer. */
#define PD_SAMPLES_MAX_LINE ((size_t)64 << 20)

/* One samples.jsonl line. Strings point into obj or into the record's own storage and are valid
 * until pd_samples_rec_free; absent or null texts are "" (error: NULL). */
typedef struct pd_samples_rec {
  json_t *obj;         /* the line as parsed (one reference) */
  long line;           /* 1-based line number */
  const char *item_id; /* the item's id as text (an integer id is printed) */
  const char *variant;
  int sample;
  const json_t *input;   /* the string or chat messages array sent (borrowed from obj) */
  char *question;        /* input's text: the string, or the last user message's text parts */
  const char *reference; /* NULL when absent or null; a number is printed */
  const char *reasoning, *output_text, *final_answer;
  const char *error; /* NULL when the sample succeeded */
  double score;      /* a finite number; 0 when null and error is set */
  long prompt_tokens, completion_tokens, reasoning_tokens; /* from usage; 0 when absent */
  int rounds, upstream_calls;                              /* 0 when absent */
  double latency_ms;
  char *printed_[2]; /* item_id / reference printed from a number (the record may be moved) */
} pd_samples_rec_t;

/* Parses one line (n bytes, no newline) into *rec. Returns 0, or -1 with the reason in msg
 * (PD_SAMPLES_MSG bytes; the caller prefixes FILE:LINE); on failure *rec holds nothing to
 * free. */
#define PD_SAMPLES_MSG 256
int pd_samples_parse(const char *b, size_t n, pd_samples_rec_t *rec, char *msg);
/* Releases what a parsed record holds (safe on a zeroed record). */
void pd_samples_rec_free(pd_samples_rec_t *rec);

/* A samples.jsonl file read line by line; blank lines are skipped, a trailing "\r" dropped. */
typedef struct pd_samples_file pd_samples_file_t;
/* Opens path ("-": standard input). NULL with a malloc'd reason in *err. */
pd_samples_file_t *pd_samples_open(const char *path, char **err);
/* The next record: 1 (rec filled, caller frees it), 0 at the end, -1 with a malloc'd
 * "FILE:LINE: message" in *err (a bad line, a line over PD_SAMPLES_MAX_LINE, a read error). */
int pd_samples_next(pd_samples_file_t *f, pd_samples_rec_t *rec, char **err);
void pd_samples_close(pd_samples_file_t *f);

/* A string -> index map (open addressing); keys are copied. */
typedef struct pd_samples_index {
  char **keys;
  size_t *vals;
  size_t cap, n;
} pd_samples_index_t;
/* The index stored for key, or (size_t)-1. */
size_t pd_samples_index_get(const pd_samples_index_t *ix, const char *key);
/* Stores key -> val (replacing an existing one). Returns 0, or -1 when out of memory. */
int pd_samples_index_put(pd_samples_index_t *ix, const char *key, size_t val);
void pd_samples_index_free(pd_samples_index_t *ix);

#endif
