/* Unit tests for eval/samples.c and eval/export.c's pure parts: the samples.jsonl line checks,
 * the bounded line reader, the item index, the thinking split at the wait text, and the
 * training lines where the node suite cannot reach (max_think_tokens, array content). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eval/export.h"
#include "eval/samples.h"

static int parse(const char *line, pd_samples_rec_t *r, char *msg) {
  return pd_samples_parse(line, strlen(line), r, msg);
}

static void test_parse_fields(void **state) {
  (void)state;
  pd_samples_rec_t r;
  char msg[PD_SAMPLES_MSG];
  assert_int_equal(parse("{\"item_id\":7,\"variant\":\"v\",\"sample\":2,\"input\":\"q?\","
                         "\"reference\":42,\"score\":0.5,\"usage\":{\"prompt_tokens\":3,"
                         "\"completion_tokens\":4,\"completion_tokens_details\":"
                         "{\"reasoning_tokens\":2}},\"rounds\":3,\"upstream_calls\":4,"
                         "\"latency_ms\":1.5,\"future_field\":[1]}",
                         &r, msg),
                   0);
  assert_string_equal(r.item_id, "7");
  assert_string_equal(r.variant, "v");
  assert_int_equal(r.sample, 2);
  assert_string_equal(r.question, "q?");
  assert_string_equal(r.reference, "42");
  assert_true(r.score == 0.5);
  assert_int_equal(r.prompt_tokens, 3);
  assert_int_equal(r.completion_tokens, 4);
  assert_int_equal(r.reasoning_tokens, 2);
  assert_int_equal(r.rounds, 3);
  assert_int_equal(r.upstream_calls, 4);
  assert_string_equal(r.reasoning, "");
  assert_null(r.error);
  /* The record may be moved (export keeps them in an array): nothing points into it. */
  pd_samples_rec_t moved = r;
  memset(&r, 0xa5, sizeof r);
  assert_string_equal(moved.item_id, "7");
  assert_string_equal(moved.reference, "42");
  pd_samples_rec_free(&moved);

  /* A failed sample may have a null score; a real reference is printed; the last user message of
   * a messages input gives the question, its text parts joined. */
  assert_int_equal(
      parse("{\"item_id\":\"a\",\"variant\":\"v\",\"score\":null,\"error\":\"boom\","
            "\"reference\":0.25,\"input\":[{\"role\":\"user\",\"content\":\"x\"},"
            "{\"role\":\"assistant\",\"content\":null},{\"role\":\"user\","
            "\"content\":[{\"type\":\"text\",\"text\":\"p1 \"},{\"type\":\"image_url\"},"
            "{\"type\":\"text\",\"text\":\"p2\"}]}]}",
            &r, msg),
      0);
  assert_true(r.score == 0);
  assert_string_equal(r.error, "boom");
  assert_string_equal(r.reference, "0.25");
  assert_string_equal(r.question, "p1 p2");
  pd_samples_rec_free(&r);
}

static void test_parse_refuses(void **state) {
  (void)state;
  static const struct {
    const char *line, *why;
  } bad[] = {
      {"", "not valid JSON"},
      {"{\"item_id\":1,\"variant\":\"v\",\"score\":1} x", "not valid JSON"},
      {"\"text\"", "a sample must be a JSON object"},
      {"{\"variant\":\"v\",\"score\":1}", "\"item_id\""},
      {"{\"item_id\":1.5,\"variant\":\"v\",\"score\":1}", "\"item_id\""},
      {"{\"item_id\":1,\"variant\":\"\",\"score\":1}", "\"variant\""},
      {"{\"item_id\":1,\"variant\":\"v\",\"sample\":-1,\"score\":1}", "\"sample\""},
      {"{\"item_id\":1,\"variant\":\"v\",\"sample\":10000000000,\"score\":1}", "\"sample\""},
      {"{\"item_id\":1,\"variant\":\"v\"}", "\"score\""},
      {"{\"item_id\":1,\"variant\":\"v\",\"score\":null}", "\"score\""},
      {"{\"item_id\":1,\"variant\":\"v\",\"score\":1,\"reasoning\":3}", "\"reasoning\""},
      {"{\"item_id\":1,\"variant\":\"v\",\"score\":1,\"output_text\":{}}", "\"output_text\""},
      {"{\"item_id\":1,\"variant\":\"v\",\"score\":1,\"error\":false}", "\"error\""},
      {"{\"item_id\":1,\"variant\":\"v\",\"score\":1,\"reference\":[]}", "\"reference\""},
      {"{\"item_id\":1,\"variant\":\"v\",\"score\":1,\"usage\":[]}", "\"usage\""},
      {"{\"item_id\":1,\"variant\":\"v\",\"score\":1,\"usage\":{\"completion_tokens_details\":"
       "{\"reasoning_tokens\":1.5}}}",
       "\"usage\""},
      {"{\"item_id\":1,\"variant\":\"v\",\"score\":1,\"rounds\":\"2\"}", "\"rounds\""},
      {"{\"item_id\":1,\"variant\":\"v\",\"score\":1,\"latency_ms\":-1}", "\"latency_ms\""},
      {"{\"item_id\":1,\"variant\":\"v\",\"score\":1,\"input\":[]}", "\"input\""},
      {"{\"item_id\":1,\"variant\":\"v\",\"score\":1,\"input\":[{\"role\":1}]}", "\"input\""},
      {"{\"item_id\":1,\"variant\":\"v\",\"score\":1,\"input\":\"\\u0000\"}", "not valid JSON"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    pd_samples_rec_t r;
    char msg[PD_SAMPLES_MSG] = "";
    if (parse(bad[i].line, &r, msg) != -1 || !strstr(msg, bad[i].why))
      fail_msg("line %zu (%s): got \"%s\"", i, bad[i].line, msg);
  }
}

/* A file of the given text. The caller unlinks it. */
static char *temp_file(const char *text, size_t n) {
  char *path = strdup("/tmp/ponder-samples-XXXXXX");
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  FILE *f = fdopen(fd, "wb");
  assert_int_equal(fwrite(text, 1, n, f), n);
  fclose(f);
  return path;
}

static void test_reader(void **state) {
  (void)state;
  const char text[] = "{\"item_id\":1,\"variant\":\"a\",\"score\":1}\r\n\n  \r\n"
                      "{\"item_id\":2,\"variant\":\"a\",\"score\":0}\n"
                      "{\"item_id\":3,\"variant\":\"a\",\"score\":\"x\"}"; /* no final newline */
  char *path = temp_file(text, sizeof text - 1), *err = NULL;
  pd_samples_file_t *f = pd_samples_open(path, &err);
  pd_samples_rec_t r;
  assert_non_null(f);
  assert_int_equal(pd_samples_next(f, &r, &err), 1);
  assert_int_equal(r.line, 1);
  assert_string_equal(r.item_id, "1");
  pd_samples_rec_free(&r);
  assert_int_equal(pd_samples_next(f, &r, &err), 1);
  assert_int_equal(r.line, 4);
  pd_samples_rec_free(&r);
  assert_int_equal(pd_samples_next(f, &r, &err), -1);
  char want[256];
  snprintf(want, sizeof want, "%s:5: \"score\" must be a number (null only with an error)", path);
  assert_string_equal(err, want);
  free(err);
  pd_samples_close(f);
  unlink(path);
  free(path);

  assert_null(pd_samples_open("/nonexistent/samples.jsonl", &err));
  assert_string_equal(err, "/nonexistent/samples.jsonl: No such file or directory");
  free(err);
}

static void test_reader_line_bound(void **state) {
  (void)state;
  /* One line just over the bound: refused by its length, without reading on to its end. */
  size_t n = PD_SAMPLES_MAX_LINE + 2;
  char *text = malloc(n);
  memset(text, 'x', n);
  text[n - 1] = '\n';
  char *path = temp_file(text, n), *err = NULL;
  free(text);
  pd_samples_file_t *f = pd_samples_open(path, &err);
  pd_samples_rec_t r;
  assert_int_equal(pd_samples_next(f, &r, &err), -1);
  assert_non_null(strstr(err, ":1: line longer than 64 MiB"));
  free(err);
  pd_samples_close(f);
  unlink(path);
  free(path);
}

static void test_index(void **state) {
  (void)state;
  pd_samples_index_t ix = {0};
  char key[32];
  assert_int_equal(pd_samples_index_get(&ix, "x"), (size_t)-1);
  for (size_t i = 0; i < 1000; i++) {
    snprintf(key, sizeof key, "item-%zu", i);
    assert_int_equal(pd_samples_index_put(&ix, key, i), 0);
  }
  assert_int_equal(pd_samples_index_put(&ix, "item-7", 70), 0);
  assert_int_equal(ix.n, 1000);
  for (size_t i = 0; i < 1000; i++) {
    snprintf(key, sizeof key, "item-%zu", i);
    assert_int_equal(pd_samples_index_get(&ix, key), i == 7 ? 70 : i);
  }
  assert_int_equal(pd_samples_index_get(&ix, "item-1000"), (size_t)-1);
  pd_samples_index_free(&ix);
}

/* The segments as "a|b|c". */
static void check_split(const char *text, const char *wait, const char *want) {
  json_t *segs = pd_export_segments(text, wait);
  char got[256] = "";
  size_t i;
  json_t *s;
  assert_non_null(segs);
  json_array_foreach(segs, i, s) {
    if (i)
      strcat(got, "|");
    strcat(got, json_string_value(s));
  }
  if (strcmp(got, want) || (!*text && json_array_size(segs)))
    fail_msg("split of \"%s\" at \"%s\": got \"%s\", want \"%s\"", text, wait, got, want);
  json_decref(segs);
}

static void test_segments(void **state) {
  (void)state;
  check_split("", "W", "");
  check_split("abc", "W", "abc");
  check_split("a\nW\nb\nW\nc", "W", "a|b|c");
  check_split("a W b\nW b", "W", "a W b\nW b"); /* the wait text only counts on its own line */
  check_split("a\n\nW\nb", "W", "a\n|b");
  check_split("\nW\nb", "W", "|b");
  check_split("a\nW\n", "W", "a|");
  check_split("a\nW\n\nW\nb", "W", "a||b");
  check_split("a\nW\nb", "", "a\nW\nb");
  /* Substituted budgets match any digits (the limit differs once max_think_tokens is spent). */
  check_split("a\nW 512 left\nb\nW 37 left\nc", "W {think_budget} left", "a|b|c");
  check_split("a\nW  left\nb", "W {think_budget} left", "a\nW  left\nb");
  check_split("a\nW 1 of 2\nb", "W {think_budget} of {answer_budget}", "a|b");
  check_split("a\nW {x}\nb", "W {x}", "a|b"); /* other braces are literal */
  check_split("a\nW 12345678901234567890 left\nb", "W {think_budget} left",
              "a\nW 12345678901234567890 left\nb"); /* not a number a budget can be */
}

static json_t *line_of(pd_export_format_t fmt, const char *sample, const pd_policy_t *p) {
  pd_samples_rec_t r;
  char msg[PD_SAMPLES_MSG];
  assert_int_equal(parse(sample, &r, msg), 0);
  json_t *v = pd_export_line(fmt, &r, p, 0);
  pd_samples_rec_free(&r);
  assert_non_null(v);
  return v;
}

static void test_openai_think_budgets(void **state) {
  (void)state;
  pd_policy_t p;
  pd_config_policy_defaults(&p);
  p.think_budget = 1000;
  p.max_think_tokens = 300; /* the first call's limit: what forcing substitutes there */
  p.answer_budget = 50;
  p.prompts.think = "T{think_budget}/{answer_budget}";
  p.prompts.answer = "A{think_budget}/{answer_budget}";
  json_t *v = line_of(PD_EXPORT_OPENAI_THINK,
                      "{\"item_id\":1,\"variant\":\"v\",\"score\":1,\"reasoning\":\"r\","
                      "\"output_text\":\"o\",\"input\":[{\"role\":\"developer\",\"content\":\"d\"},"
                      "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"q\"}]}]}",
                      &p);
  char *text = json_dumps(v, JSON_COMPACT);
  assert_string_equal(
      text, "{\"messages\":[{\"role\":\"developer\",\"content\":\"d\"},{\"role\":\"user\","
            "\"content\":[{\"type\":\"text\",\"text\":\"q\"},{\"type\":\"text\",\"text\":"
            "\"\\n\\nT300/50\"}]},{\"role\":\"assistant\",\"content\":\"<imstart>think\\nr\\n"
            "<imend>\"},{\"role\":\"user\",\"content\":\"A1000/50\"},{\"role\":\"assistant\","
            "\"content\":\"<imstart>answer\\no\\n<imend>\"}]}");
  free(text);
  json_decref(v);

  /* s1k in prefill mode splits at prefill.wait; a missing reference is null. */
  p.mode = PD_MODE_PREFILL;
  p.prefill.wait = "Wait";
  v = line_of(PD_EXPORT_S1K,
              "{\"item_id\":1,\"variant\":\"v\",\"score\":1,\"reasoning\":\"a\\nWait\\nb\","
              "\"output_text\":\"o\",\"input\":\"q\"}",
              &p);
  text = json_dumps(v, JSON_COMPACT);
  assert_string_equal(text, "{\"question\":\"q\",\"thinking_trajectories\":[\"a\",\"b\"],"
                            "\"attempt\":\"o\",\"reference\":null}");
  free(text);
  json_decref(v);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_fields),
      cmocka_unit_test(test_parse_refuses),
      cmocka_unit_test(test_reader),
      cmocka_unit_test(test_reader_line_bound),
      cmocka_unit_test(test_index),
      cmocka_unit_test(test_segments),
      cmocka_unit_test(test_openai_think_budgets),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
