/* Unit tests for eval/grader.c: every grader type, templates, judge bodies and the parsing of
 * judge replies, multi's calculate_output, load-time errors, and the built-in judge. The
 * fuzzy_match values were computed independently in Python (an LCS dynamic programme over
 * code points: 2 LCS / (|a| + |b|)), and kitten/sitting by hand (LCS "ittn": 8/13). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "eval/eval.h"
#include "eval/grader.h"

#define assert_close(a, b) assert_true(fabs((a) - (b)) < 1e-12)

static pd_eval_item_t item;

static void item_init(void) {
  item.obj = json_pack("{s:s,s:i,s:s,s:[i,i]}", "Problem", "What is 6*7?", "Answer", 42, "city",
                       "Paris", "list", 1, 2);
  item.question = "What is 6*7?";
  item.reference = "42";
  item.id = "1";
}

static pd_grader_t *load(const char *json) {
  char *err = NULL;
  pd_grader_t *g = pd_grader_parse(json, strlen(json), "t.json", &err);
  if (!g)
    fail_msg("load failed: %s", err);
  return g;
}

static void load_error(const char *json, const char *want) {
  char *err = NULL;
  pd_grader_t *g = pd_grader_parse(json, strlen(json), "t.json", &err);
  assert_null(g);
  assert_non_null(err);
  if (!strstr(err, want))
    fail_msg("error \"%s\" does not contain \"%s\"", err, want);
  free(err);
}

/* Grades a sample with no judge calls (or with the given replies); returns the score. */
static double grade(const pd_grader_t *g, const char *output, const char *final,
                    const char *const *replies, json_t **scores, char **error) {
  pd_grade_input_t in = {&item, output, "thinking...", final};
  pd_grade_t *gr = pd_grade_begin(g, &in);
  assert_non_null(gr);
  for (size_t i = 0; i < pd_grade_njudge(gr); i++)
    pd_grade_judge_reply(gr, i, replies ? replies[i] : NULL, "HTTP 500");
  double s = pd_grade_finish(gr, scores, error);
  pd_grade_free(gr);
  return s;
}

static void test_default(void **state) {
  (void)state;
  char *err = NULL;
  pd_grader_t *g = pd_grader_get(NULL, &err);
  assert_non_null(g);
  assert_string_equal(pd_grader_name(g), "default");
  assert_false(pd_grader_uses_judge(g));
  json_t *scores = NULL;
  assert_close(grade(g, "\\boxed{42}", "42", NULL, &scores, &err), 1);
  assert_null(err);
  assert_close(json_real_value(json_object_get(scores, "default")), 1);
  json_decref(scores);
  assert_close(grade(g, "41", "41", NULL, NULL, &err), 0);
  assert_null(err);
  /* An item without a reference: an error, not a silent 0 against "". */
  item.reference = NULL;
  assert_close(grade(g, "41", "41", NULL, NULL, &err), 0);
  assert_non_null(strstr(err, "no reference"));
  free(err);
  item.reference = "42";
  pd_grader_free(g);
  g = pd_grader_get("default", &err);
  assert_non_null(g);
  pd_grader_free(g);
}

static void test_string_check(void **state) {
  (void)state;
  char *err = NULL;
  static const char *const cases[][4] = {
      /* operation, input, final answer, want */
      {"eq", "{{sample.final_answer}}", "Paris", "1"},
      {"eq", "{{sample.final_answer}}", "paris", "0"},
      {"ne", "{{sample.final_answer}}", "paris", "1"},
      {"like", "{{sample.output_text}}", "x", "1"}, /* output "It is Paris." */
      {"like", "{{sample.final_answer}}", "paris!", "0"},
      {"ilike", "{{sample.final_answer}}", "PARIS!", "1"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char json[512];
    snprintf(json, sizeof json,
             "{\"type\":\"string_check\",\"name\":\"s\",\"input\":\"%s\","
             "\"reference\":\"{{ item.city }}\",\"operation\":\"%s\"}",
             cases[i][1], cases[i][0]);
    pd_grader_t *g = load(json);
    double s = grade(g, "It is Paris.", cases[i][2], NULL, NULL, &err);
    assert_null(err);
    if (s != atof(cases[i][3]))
      fail_msg("case %zu: score %g", i, s);
    pd_grader_free(g);
  }
  /* item.FIELD of a number and an array: their JSON text; item.question and reasoning. */
  pd_grader_t *g = load("{\"type\":\"string_check\",\"name\":\"s\",\"input\":\"{{item.Answer}}"
                        "{{item.list}}|{{item.question}}|{{sample.reasoning_text}}\","
                        "\"reference\":\"42[1,2]|What is 6*7?|thinking...\",\"operation\":\"eq\"}");
  assert_close(grade(g, "", "", NULL, NULL, &err), 1);
  pd_grader_free(g);
  /* A field the item lacks is the sample's error. */
  g = load("{\"type\":\"string_check\",\"name\":\"s\",\"input\":\"{{item.nope}}\","
           "\"reference\":\"x\",\"operation\":\"ne\"}");
  assert_close(grade(g, "", "", NULL, NULL, &err), 0);
  assert_non_null(strstr(err, "no field 'nope'"));
  free(err);
  pd_grader_free(g);
  /* A value's braces are not expanded again. */
  g = load("{\"type\":\"string_check\",\"name\":\"s\",\"input\":\"{{sample.final_answer}}\","
           "\"reference\":\"{{item.reference}}\",\"operation\":\"eq\"}");
  assert_close(grade(g, "", "{{item.reference}}", NULL, NULL, &err), 0);
  pd_grader_free(g);
}

static void test_fuzzy(void **state) {
  (void)state;
  static const struct {
    const char *a, *b;
    double want;
  } cases[] = {
      {"kitten", "sitting", 0.6153846153846154},
      {"h\xc3\xa9llo w\xc3\xb6rld", "hello world", 0.8181818181818182},
      {"The answer is 42", "answer: 42", 0.6923076923076923},
      {"abc", "", 0.0},
      {"", "", 1.0},
      {"Paris", "paris", 0.8},
      {"1/2", "\\frac{1}{2}", 0.2857142857142857},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
    assert_close(
        pd_grader_fuzzy_ratio(cases[i].a, strlen(cases[i].a), cases[i].b, strlen(cases[i].b)),
        cases[i].want);
  /* Malformed UTF-8 bytes count one each. */
  assert_close(pd_grader_fuzzy_ratio("\xff\xfe", 2, "\xff", 1), 2.0 / 3);
  /* Long inputs are cut to PD_GRADER_FUZZY_MAX code points each. */
  size_t n = 3 * PD_GRADER_FUZZY_MAX;
  char *a = malloc(n), *b = malloc(n);
  memset(a, 'a', n);
  memset(b, 'a', n);
  b[n - 1] = 'b';
  assert_close(pd_grader_fuzzy_ratio(a, n, b, n), 1);
  free(a);
  free(b);

  char *err = NULL;
  pd_grader_t *g = load("{\"type\":\"text_similarity\",\"name\":\"f\",\"input\":"
                        "\"{{sample.final_answer}}\",\"reference\":\"sitting\","
                        "\"evaluation_metric\":\"fuzzy_match\"}");
  assert_close(grade(g, "", "kitten", NULL, NULL, &err), 0.6153846153846154);
  pd_grader_free(g);
  g = load("{\"type\":\"text_similarity\",\"name\":\"f\",\"input\":\"{{sample.final_answer}}\","
           "\"reference\":\"sitting\",\"evaluation_metric\":\"fuzzy_match\","
           "\"pass_threshold\":0.6}");
  assert_close(grade(g, "", "kitten", NULL, NULL, &err), 1);
  assert_close(grade(g, "", "kit", NULL, NULL, &err), 0);
  pd_grader_free(g);
}

static const char score_json[] =
    "{\"type\":\"score_model\",\"name\":\"sc\",\"model\":\"judge-1\",\"input\":["
    "{\"role\":\"system\",\"content\":\"Score 0-10.\"},"
    "{\"role\":\"user\",\"type\":\"message\",\"content\":\"Q: {{item.question}} A: "
    "{{sample.output_text}}\"}],"
    "\"range\":[0,10],\"sampling_params\":{\"temperature\":0,\"seed\":1}}";

static void test_score_model(void **state) {
  (void)state;
  pd_grader_t *g = load(score_json);
  assert_true(pd_grader_uses_judge(g));
  pd_grade_input_t in = {&item, "it is \"42\"", "", "42"};
  pd_grade_t *gr = pd_grade_begin(g, &in);
  assert_int_equal(pd_grade_njudge(gr), 1);
  json_t *body = json_loads(pd_grade_judge_body(gr, 0), 0, NULL);
  assert_non_null(body);
  assert_string_equal(json_string_value(json_object_get(body, "model")), "judge-1");
  assert_null(json_object_get(body, "stream"));
  assert_int_equal(json_integer_value(json_object_get(body, "seed")), 1);
  json_t *m1 = json_array_get(json_object_get(body, "messages"), 1);
  assert_string_equal(json_string_value(json_object_get(m1, "role")), "user");
  assert_string_equal(json_string_value(json_object_get(m1, "content")),
                      "Q: What is 6*7? A: it is \"42\"");
  json_t *rf = json_object_get(body, "response_format");
  assert_string_equal(json_string_value(json_object_get(rf, "type")), "json_schema");
  json_t *schema = json_object_get(json_object_get(rf, "json_schema"), "schema");
  assert_string_equal(
      json_string_value(json_object_get(
          json_object_get(json_object_get(schema, "properties"), "result"), "type")),
      "number");
  json_decref(body);
  pd_grade_free(gr);

  static const struct {
    const char *reply;
    double want;
    const char *error;
  } cases[] = {
      {"{\"result\": 7}", 0.7, NULL},
      {"{\"result\": 15}", 1, NULL},                        /* clamped to the range */
      {"{\"result\": -2.5}", 0, NULL},                      /* clamped */
      {"I would say 3 points, final score: 6.", 0.6, NULL}, /* the last number */
      {"{\"score\": 5}", 0.5, NULL},                        /* not the shape: last number */
      {"```json\n{\"result\": 4}\n```", 0.4, NULL},         /* fenced JSON */
      {"Between 2 and 9: {\"result\": 3} (out of 10)", 0.3, NULL},
      {"score 1e1", 1, NULL},
      {"no idea", 0, "has no number"},
      {NULL, 0, "judge call failed: HTTP 500"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char *err = NULL;
    json_t *scores = NULL;
    const char *replies[] = {cases[i].reply};
    double s = grade(g, "x", "x", replies, &scores, &err);
    if (fabs(s - cases[i].want) > 1e-12)
      fail_msg("reply %zu: score %g", i, s);
    if (cases[i].error) {
      assert_non_null(err);
      assert_non_null(strstr(err, cases[i].error));
      assert_non_null(strstr(err, "grader sc:"));
    } else {
      assert_null(err);
    }
    assert_close(json_real_value(json_object_get(scores, "sc")), cases[i].want);
    free(err);
    json_decref(scores);
  }
  pd_grader_free(g);
}

static void test_judge_builtin(void **state) {
  (void)state;
  /* The built-in judge is config/graders/judge.json byte for byte. */
  const char *dir = getenv("PONDER_TEST_DATA");
  assert_non_null(dir);
  char path[4096];
  snprintf(path, sizeof path, "%s/../../../config/graders/judge.json", dir);
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  static char file[1 << 16];
  size_t n = fread(file, 1, sizeof file - 1, f);
  fclose(f);
  file[n] = 0;
  assert_string_equal(pd_grader_judge_text(), file);

  char *err = NULL;
  pd_grader_t *g = pd_grader_get("judge", &err);
  assert_non_null(g);
  assert_string_equal(pd_grader_name(g), "judge");
  assert_true(pd_grader_uses_judge(g));
  pd_grade_input_t in = {&item, "\\boxed{42}", "", "42"};
  pd_grade_t *gr = pd_grade_begin(g, &in);
  json_t *body = json_loads(pd_grade_judge_body(gr, 0), 0, NULL);
  assert_string_equal(json_string_value(json_object_get(body, "model")), "gpt-4o-2024-08-06");
  json_t *m = json_array_get(json_object_get(body, "messages"), 0);
  assert_string_equal(
      json_string_value(json_object_get(m, "content")),
      "YOU ARE A LLM JUDGE DETERMINING IF THE FOLLOWING MODEL GENERATED ANSWER IS THE SAME AS "
      "THE CORRECT ANSWER\nModel's Answer: 42\nCorrect Answer: 42\nYour task:\n1. State the "
      "model's predicted answer (answer only).\n2. State the ground truth (answer only).\n3. "
      "Determine if the model's final answer is correct (ignore formatting differences, etc.).");
  json_t *en = json_object_get(
      json_object_get(
          json_object_get(json_object_get(json_object_get(json_object_get(body, "response_format"),
                                                          "json_schema"),
                                          "schema"),
                          "properties"),
          "label"),
      "enum");
  assert_int_equal(json_array_size(en), 2);
  assert_string_equal(json_string_value(json_array_get(en, 0)), "correct");
  json_decref(body);
  pd_grade_free(gr);

  static const struct {
    const char *reply;
    double want;
  } cases[] = {
      {"{\"label\": \"correct\"}", 1},
      {"{\"label\": \"incorrect\"}", 0},
      {"1. 42\n2. 42\n3. Correct.", 1},
      {"The final answer is incorrect; it is not correct.", 0}, /* the earliest label */
      {"{\"label\": \"maybe\"} so: incorrect", 0},
      {"incorrectly formatted but correct", 1}, /* whole words only */
      {"It looks correct, but no.\n```json\n{\"label\": \"incorrect\"}\n```", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const char *replies[] = {cases[i].reply};
    double s = grade(g, "x", "42", replies, NULL, &err);
    assert_null(err);
    if (s != cases[i].want)
      fail_msg("reply %zu: score %g", i, s);
  }
  const char *replies[] = {"I cannot tell."};
  assert_close(grade(g, "x", "42", replies, NULL, &err), 0);
  assert_non_null(strstr(err, "none of the labels"));
  free(err);
  pd_grader_free(g);
}

static void test_multi(void **state) {
  (void)state;
  char *err = NULL;
  pd_grader_t *g =
      load("{\"type\":\"multi\",\"name\":\"m\",\"graders\":{"
           "\"exact\":{\"type\":\"string_check\",\"name\":\"exact\",\"input\":"
           "\"{{sample.final_answer}}\",\"reference\":\"{{item.reference}}\",\"operation\":\"eq\"},"
           "\"near\":{\"type\":\"text_similarity\",\"input\":\"{{sample.final_answer}}\","
           "\"reference\":\"sitting\",\"evaluation_metric\":\"fuzzy_match\"}},"
           "\"calculate_output\":\"0.5 * exact + 0.5 * near\"}");
  assert_false(pd_grader_uses_judge(g));
  json_t *scores = NULL;
  assert_close(grade(g, "", "kitten", NULL, &scores, &err), 0.5 * 0.6153846153846154);
  assert_null(err);
  assert_close(json_real_value(json_object_get(scores, "exact")), 0);
  assert_close(json_real_value(json_object_get(scores, "near")), 0.6153846153846154);
  assert_close(json_real_value(json_object_get(scores, "m")), 0.5 * 0.6153846153846154);
  json_decref(scores);
  pd_grader_free(g);

  /* A judge inside, min/max and a clamp to [0, 1]. */
  g = load("{\"type\":\"multi\",\"name\":\"m\",\"graders\":{"
           "\"a\":{\"type\":\"string_check\",\"input\":\"{{sample.final_answer}}\","
           "\"reference\":\"{{item.reference}}\",\"operation\":\"eq\"},"
           "\"j\":{\"type\":\"label_model\",\"input\":[{\"role\":\"user\",\"content\":"
           "\"{{sample.output_text}}\"}],\"labels\":[\"yes\",\"no\"],"
           "\"passing_labels\":[\"yes\"]}},"
           "\"calculate_output\":\"max(a, j) + 2 * min(a, j, 1)\"}");
  assert_true(pd_grader_uses_judge(g));
  const char *yes[] = {"{\"label\":\"yes\"}"}, *no[] = {"no"};
  assert_close(grade(g, "o", "42", yes, NULL, &err), 1); /* 1 + 2, clamped */
  assert_close(grade(g, "o", "41", yes, NULL, &err), 1); /* max 1 + 2 * 0 */
  assert_close(grade(g, "o", "41", no, NULL, &err), 0);
  assert_null(err);
  /* A failed judge makes the multi's grading an error. */
  assert_close(grade(g, "o", "42", NULL, &scores, &err), 0);
  assert_non_null(strstr(err, "grader j: the judge call failed"));
  free(err);
  json_decref(scores);
  pd_grader_free(g);

  /* Division by zero. */
  g = load("{\"type\":\"multi\",\"name\":\"m\",\"graders\":{\"a\":{\"type\":\"string_check\","
           "\"input\":\"x\",\"reference\":\"y\",\"operation\":\"eq\"}},"
           "\"calculate_output\":\"1 / a\"}");
  assert_close(grade(g, "", "", NULL, NULL, &err), 0);
  assert_non_null(strstr(err, "not finite"));
  free(err);
  pd_grader_free(g);
}

static void test_load_errors(void **state) {
  (void)state;
  load_error("{\"type\":\"regex\",\"name\":\"x\"}", "t.json: type: unknown type 'regex'");
  load_error("{\"name\":\"x\"}", "t.json: type: missing");
  load_error("[1]", "t.json: a grader must be an object");
  load_error("{\"type\":", "t.json:1:");
  load_error("{\"type\":\"string_check\",\"name\":\"s\",\"input\":\"a\",\"reference\":\"b\","
             "\"operation\":\"regex\"}",
             "t.json: operation: unknown operation 'regex'");
  load_error("{\"type\":\"text_similarity\",\"name\":\"s\",\"input\":\"a\",\"reference\":\"b\","
             "\"evaluation_metric\":\"bleu\"}",
             "evaluation_metric: evaluation_metric 'bleu' is not supported");
  load_error("{\"type\":\"text_similarity\",\"name\":\"s\",\"input\":\"a\",\"reference\":\"b\","
             "\"evaluation_metric\":\"fuzzy_match\",\"pass_threshold\":2}",
             "pass_threshold: must be a number in [0, 1]");
  load_error("{\"type\":\"string_check\",\"name\":\"s\",\"input\":\"{{sample.answer}}\","
             "\"reference\":\"b\",\"operation\":\"eq\"}",
             "t.json: input: unknown template field '{{sample.answer}}'");
  load_error("{\"type\":\"string_check\",\"name\":\"s\",\"input\":\"{{item.x\","
             "\"reference\":\"b\",\"operation\":\"eq\"}",
             "input: unclosed '{{'");
  load_error("{\"type\":\"string_check\",\"name\":\"s\",\"input\":\"a\",\"reference\":\"b\","
             "\"operation\":\"eq\",\"pass_treshold\":1}",
             "t.json: pass_treshold: unknown member");
  load_error("{\"type\":\"string_check\",\"input\":\"a\",\"reference\":\"b\","
             "\"operation\":\"eq\"}",
             "t.json: name: missing");
  load_error("{\"type\":\"label_model\",\"name\":\"l\",\"input\":[{\"role\":\"user\","
             "\"content\":\"x\"}],\"labels\":[\"a\",\"b\"],\"passing_labels\":[\"c\"]}",
             "passing_labels: 'c' is not one of labels");
  load_error("{\"type\":\"label_model\",\"name\":\"l\",\"input\":[{\"role\":\"robot\","
             "\"content\":\"x\"}],\"labels\":[\"a\"],\"passing_labels\":[\"a\"]}",
             "input.0.role: unknown role 'robot'");
  load_error("{\"type\":\"score_model\",\"name\":\"l\",\"input\":[{\"role\":\"user\","
             "\"content\":\"{{sample.x}}\"}]}",
             "input.0.content: unknown template field");
  load_error("{\"type\":\"score_model\",\"name\":\"l\",\"input\":[{\"role\":\"user\","
             "\"content\":\"x\"}],\"range\":[1,1]}",
             "range: must be [lo, hi]");
  load_error("{\"type\":\"score_model\",\"name\":\"l\",\"input\":[{\"role\":\"user\","
             "\"content\":\"x\"}],\"sampling_params\":{\"stream\":true}}",
             "sampling_params: 'stream' is set by the grader");
  load_error("{\"type\":\"multi\",\"name\":\"m\",\"graders\":{\"a\":{\"type\":\"string_check\","
             "\"input\":\"x\",\"reference\":\"y\",\"operation\":\"eq\"}},"
             "\"calculate_output\":\"a + b\"}",
             "t.json: calculate_output: at offset 4: unknown name 'b'");
  load_error("{\"type\":\"multi\",\"name\":\"m\",\"graders\":{\"a\":{\"type\":\"string_check\","
             "\"input\":\"x\",\"reference\":\"y\",\"operation\":\"nope\"}},"
             "\"calculate_output\":\"a\"}",
             "t.json: graders.a.operation: unknown operation 'nope'");
  load_error("{\"type\":\"multi\",\"name\":\"m\",\"graders\":{\"a-b\":{\"type\":\"string_check\","
             "\"input\":\"x\",\"reference\":\"y\",\"operation\":\"eq\"}},"
             "\"calculate_output\":\"1\"}",
             "graders.a-b: a grader's name must be an identifier");
  /* Nesting is bounded. */
  char deep[4096] = "";
  for (int i = 0; i < 6; i++)
    strcat(deep,
           "{\"type\":\"multi\",\"name\":\"m\",\"calculate_output\":\"a\",\"graders\":{\"a\":");
  strcat(deep,
         "{\"type\":\"string_check\",\"input\":\"x\",\"reference\":\"y\",\"operation\":\"eq\"}");
  for (int i = 0; i < 6; i++)
    strcat(deep, "}}");
  load_error(deep, "nested deeper than 4");
  char *err = NULL;
  assert_null(pd_grader_get("/nonexistent/grader.json", &err));
  assert_non_null(strstr(err, "/nonexistent/grader.json: "));
  free(err);
}

static void test_file(void **state) {
  (void)state;
  char path[] = "/tmp/pd_grader_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  FILE *f = fdopen(fd, "w");
  fputs(score_json, f);
  fclose(f);
  char *err = NULL;
  pd_grader_t *g = pd_grader_get(path, &err);
  remove(path);
  assert_non_null(g);
  assert_string_equal(pd_grader_name(g), "sc");
  pd_grader_free(g);
}

/* The example graders shipped in config/graders/ load. */
static void test_shipped(void **state) {
  (void)state;
  static const char *const names[] = {"fuzzy.json", "score.json", "multi.json"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/../../../config/graders/%s", getenv("PONDER_TEST_DATA"),
             names[i]);
    char *err = NULL;
    pd_grader_t *g = pd_grader_get(path, &err);
    if (!g)
      fail_msg("%s", err);
    pd_grader_free(g);
  }
}

int main(void) {
  item_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_default),       cmocka_unit_test(test_string_check),
      cmocka_unit_test(test_fuzzy),         cmocka_unit_test(test_score_model),
      cmocka_unit_test(test_judge_builtin), cmocka_unit_test(test_multi),
      cmocka_unit_test(test_load_errors),   cmocka_unit_test(test_file),
      cmocka_unit_test(test_shipped),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  json_decref(item.obj);
  return rc;
}
