/* The dataset of `ponder eval` (SPEC section 11): JSONL, one item a line, read into
 * pd_eval_item_t (eval.h). Every byte of a dataset is untrusted: lines, fields, ids and the
 * number of items are bounded, and a bad line is reported as "FILE:LINE: message" before any
 * request is sent. Pure: no I/O except pd_dataset_load reading the file. */
#ifndef PD_DATASET_H
#define PD_DATASET_H

#include <stddef.h>

#include "eval/eval.h"

#define PD_DATASET_MAX_LINE (16L << 20) /* bytes of one line (ponder's default body limit) */
#define PD_DATASET_MAX_ITEMS 1000000    /* items in one dataset */
#define PD_DATASET_MAX_ID 256           /* bytes of an item's id */
#define PD_DATASET_MAX_MESSAGES 4096    /* messages of one `messages` item */

typedef struct pd_dataset_opts {
  const char *input_field;     /* --input-field: the question's field instead of SPEC's list */
  const char *reference_field; /* --reference-field: the reference's field instead of the list */
  size_t limit;                /* --limit: read only the first `limit` items (0 = all) */
} pd_dataset_opts_t;

/* Reads the n bytes at data, named `name` in messages. On success returns 0 with *items (an
 * array of *nitems, caller frees with pd_dataset_free). On a bad line returns -1 and *err holds
 * "NAME:LINE: message" (malloc'd; NULL only when out of memory). Blank lines are skipped;
 * a dataset without items is an error. */
int pd_dataset_parse(const char *name, const char *data, size_t len, const pd_dataset_opts_t *o,
                     pd_eval_item_t **items, size_t *nitems, char **err);
/* pd_dataset_parse of the file at path (read whole, at most PD_DATASET_MAX_ITEMS lines of
 * PD_DATASET_MAX_LINE bytes). */
int pd_dataset_load(const char *path, const pd_dataset_opts_t *o, pd_eval_item_t **items,
                    size_t *nitems, char **err);
/* Frees n items and the array. */
void pd_dataset_free(pd_eval_item_t *items, size_t n);

/* A JSON scalar as text: a string as it is, an integer printed, a real in the shortest form
 * that reads back the same, true/false. NULL for other values (or out of memory). */
char *pd_dataset_scalar_text(const json_t *v);

#endif
