/* A test driver for report.c: `eval_report_write SUMMARY.json SAMPLES.jsonl OUT.html` writes the
 * report that `ponder eval` writes at the end of a run, from files written by hand (the report
 * test renders it in a browser). Exit 0, or 1 with the reason on stderr. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "eval/eval.h"

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: eval_report_write SUMMARY.json SAMPLES.jsonl OUT.html\n");
    return 2;
  }
  json_error_t e;
  json_t *summary = json_load_file(argv[1], 0, &e);
  if (!summary) {
    fprintf(stderr, "%s:%d: %s\n", argv[1], e.line, e.text);
    return 1;
  }
  char *err = NULL;
  int rc = pd_eval_report_write(argv[3], summary, argv[2], &err);
  if (rc < 0)
    fprintf(stderr, "%s\n", err);
  free(err);
  json_decref(summary);
  return rc < 0 ? 1 : 0;
}
