/* Fuzz target: the dataset reader of `ponder eval` (proxy/eval/dataset.c). The first byte picks
 * the options (--input-field, --reference-field, --limit); the rest is the dataset. Properties:
 * either the reader refuses with a message "d.jsonl:LINE: ..." naming a line the input has, or
 * every item has an id (unique, at most PD_DATASET_MAX_ID bytes), a line within the input, a
 * question or messages (not both), and a reference that is NULL or text; with a limit, no more
 * items than the limit. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  pd_dataset_opts_t o = {0};
  uint8_t sel = data[0];
  if (sel & 1)
    o.input_field = "Problem";
  if (sel & 2)
    o.reference_field = "Answer";
  if (sel & 4)
    o.limit = (size_t)(sel >> 3) + 1;
  const char *text = (const char *)data + 1;
  size_t n = size - 1;
  long lines = 1;
  for (size_t i = 0; i < n; i++)
    lines += text[i] == '\n';
  pd_eval_item_t *items = NULL;
  size_t nitems = 0;
  char *err = NULL;
  int rc = pd_dataset_parse("d.jsonl", text, n, &o, &items, &nitems, &err);
  if (rc < 0) {
    long line = 0;
    if (!err || sscanf(err, "d.jsonl:%ld:", &line) != 1 || line < 1 || line > lines)
      abort();
    free(err);
    return 0;
  }
  if (nitems == 0 || (o.limit && nitems > o.limit))
    abort();
  for (size_t i = 0; i < nitems; i++) {
    const pd_eval_item_t *it = &items[i];
    if (!it->id || !it->id[0] || strlen(it->id) > PD_DATASET_MAX_ID || it->line < 1 ||
        it->line > lines || !it->obj || !it->question == !it->messages)
      abort();
    if (i && it->line <= items[i - 1].line)
      abort();
    for (size_t j = 0; j < i; j++)
      if (strcmp(items[j].id, it->id) == 0)
        abort();
  }
  pd_dataset_free(items, nitems);
  return 0;
}
