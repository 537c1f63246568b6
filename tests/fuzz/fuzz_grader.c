/* Fuzz target: the grader object parser pd_grader_parse (proxy/eval/grader.c) and, for every
 * grader that loads, the grading of one sample: the input is GRADER_JSON, then a line "--",
 * then bytes used as the sample's answer text and as every judge reply (untrusted in
 * production: dataset items, answers, judge replies). Also the final-answer rules on that
 * text. Checks: no crash, no leak (ASan); a failed load has a message; a grade's score is in
 * [0, 1], its judge bodies are JSON objects, its scores an object, an error a non-empty text. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  const char *sep = memmem(s, size, "\n--\n", 4);
  size_t glen = sep ? (size_t)(sep - s) : size;
  char *text = sep ? strndup(sep + 4, size - glen - 4) : strdup("");
  char *err = NULL;
  pd_grader_t *g = pd_grader_parse(s, glen, "fuzz", &err);
  char *final = pd_eval_final_answer(text);
  if (!final)
    abort();
  if (!g) {
    if (!err || !*err)
      abort();
    free(err);
    free(final);
    free(text);
    return 0;
  }
  if (err)
    abort();
  json_t *obj = json_pack("{s:s,s:i}", "Problem", "q", "n", 7);
  pd_eval_item_t item = {.id = "1", .line = 1, .obj = obj, .question = "q", .reference = "42"};
  pd_grade_input_t in = {&item, text, text, final};
  pd_grade_t *gr = pd_grade_begin(g, &in);
  if (!gr)
    abort();
  for (size_t i = 0; i < pd_grade_njudge(gr); i++) {
    const char *body = pd_grade_judge_body(gr, i);
    json_t *b = json_loads(body, 0, NULL);
    if (!json_is_object(b))
      abort();
    json_decref(b);
    pd_grade_judge_reply(gr, i, i % 2 ? NULL : text, "failed");
  }
  json_t *scores = NULL;
  char *why = NULL;
  double score = pd_grade_finish(gr, &scores, &why);
  if (!(score >= 0 && score <= 1) || !json_is_object(scores) || (why && !*why))
    abort();
  if (why && score != 0)
    abort();
  json_decref(scores);
  free(why);
  pd_grade_free(gr);
  pd_grader_free(g);
  json_decref(obj);
  free(final);
  free(text);
  return 0;
}
