/* Unit tests for eval/dataset.c: SPEC section 11's field rules (question and reference fields in
 * their order, --input-field and --reference-field, `messages` items, ids), numbers printed as
 * text, and every refusal reported as "FILE:LINE: message" with the right line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "eval/dataset.h"

typedef struct parsed {
  pd_eval_item_t *items;
  size_t n;
  char *err;
  int rc;
} parsed_t;

static parsed_t parse_opts(const char *text, const pd_dataset_opts_t *o) {
  parsed_t p = {0};
  p.rc = pd_dataset_parse("d.jsonl", text, strlen(text), o, &p.items, &p.n, &p.err);
  return p;
}

static parsed_t parse(const char *text) {
  return parse_opts(text, NULL);
}

static void done(parsed_t *p) {
  pd_dataset_free(p->items, p->n);
  free(p->err);
}

static void assert_error(const char *text, const pd_dataset_opts_t *o, const char *want) {
  parsed_t p = parse_opts(text, o);
  assert_int_equal(p.rc, -1);
  assert_null(p.items);
  assert_non_null(p.err);
  if (strncmp(p.err, want, strlen(want)) != 0)
    fail_msg("error \"%s\" does not start with \"%s\"", p.err, want);
  done(&p);
}

static void question_fields_in_order(void **state) {
  (void)state;
  parsed_t p = parse("{\"input\":\"i\",\"prompt\":\"pr\",\"Problem\":\"P\",\"problem\":\"p\","
                     "\"question\":\"q\"}\n"
                     "{\"input\":\"i\",\"prompt\":\"pr\",\"Problem\":\"P\",\"problem\":\"p\"}\n"
                     "{\"input\":\"i\",\"prompt\":\"pr\",\"Problem\":\"P\"}\n"
                     "{\"input\":\"i\",\"prompt\":\"pr\"}\n"
                     "{\"input\":\"i\"}\n"
                     "{\"question\":null,\"input\":\"i2\"}\n");
  assert_int_equal(p.rc, 0);
  assert_int_equal(p.n, 6);
  const char *want[] = {"q", "p", "P", "pr", "i", "i2"};
  for (size_t i = 0; i < 6; i++) {
    assert_string_equal(p.items[i].question, want[i]);
    assert_null(p.items[i].messages);
    assert_null(p.items[i].reference);
    assert_int_equal(p.items[i].line, (long)i + 1);
  }
  done(&p);
}

static void reference_fields_and_numbers(void **state) {
  (void)state;
  parsed_t p = parse("{\"q\":1,\"question\":\"a\",\"label\":\"l\",\"reference\":\"r\","
                     "\"Answer\":\"A\",\"answer\":\"x\"}\n"
                     "{\"question\":\"a\",\"label\":\"l\",\"reference\":\"r\",\"Answer\":204}\n"
                     "{\"question\":\"a\",\"label\":\"l\",\"reference\":0.1}\n"
                     "{\"question\":\"a\",\"label\":-7}\n"
                     "{\"question\":\"a\",\"answer\":true}\n"
                     "{\"question\":\"a\",\"answer\":1e300}\n");
  assert_int_equal(p.rc, 0);
  const char *want[] = {"x", "204", "0.1", "-7", "true", "1e+300"};
  for (size_t i = 0; i < 6; i++)
    assert_string_equal(p.items[i].reference, want[i]);
  done(&p);
}

static void explicit_fields(void **state) {
  (void)state;
  pd_dataset_opts_t o = {.input_field = "Problem", .reference_field = "Solution"};
  parsed_t p = parse_opts("{\"question\":\"not this\",\"Problem\":\"P\",\"answer\":\"no\","
                          "\"Solution\":42}\n",
                          &o);
  assert_int_equal(p.rc, 0);
  assert_string_equal(p.items[0].question, "P");
  assert_string_equal(p.items[0].reference, "42");
  done(&p);
  assert_error("{\"Problem\":\"P\",\"Solution\":1}\n{\"question\":\"q\",\"Solution\":1}\n", &o,
               "d.jsonl:2: no field 'Problem' (--input-field)");
  assert_error("{\"Problem\":\"P\"}\n", &o, "d.jsonl:1: no field 'Solution' (--reference-field)");
}

static void messages_items(void **state) {
  (void)state;
  parsed_t p = parse("{\"messages\":[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\","
                     "\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}],\"question\":\"q\","
                     "\"answer\":\"5\"}\n");
  assert_int_equal(p.rc, 0);
  assert_null(p.items[0].question);
  assert_non_null(p.items[0].messages);
  assert_int_equal(json_array_size(p.items[0].messages), 2);
  assert_ptr_equal(p.items[0].messages, json_object_get(p.items[0].obj, "messages"));
  assert_string_equal(p.items[0].reference, "5");
  done(&p);
  assert_error("{\"messages\":[]}\n", NULL, "d.jsonl:1: 'messages' must be a non-empty array");
  assert_error("{\"messages\":\"hi\"}\n", NULL, "d.jsonl:1: 'messages' must be a non-empty array");
  assert_error("{\"messages\":[{\"content\":\"x\"}]}\n", NULL,
               "d.jsonl:1: every message in 'messages' must be an object with a string 'role'");
  assert_error("{\"messages\":[1]}\n", NULL, "d.jsonl:1: every message");
  assert_error("{\"messages\":[{\"role\":\"user\",\"content\":5}]}\n", NULL,
               "d.jsonl:1: a message's 'content' must be");
}

static void ids(void **state) {
  (void)state;
  parsed_t p = parse("{\"id\":\"a-1\",\"question\":\"q\"}\n"
                     "\n"
                     "   \n"
                     "{\"id\":17,\"question\":\"q\"}\r\n"
                     "{\"question\":\"q\"}\n"
                     "{\"id\":null,\"question\":\"q\"}");
  assert_int_equal(p.rc, 0);
  assert_int_equal(p.n, 4);
  assert_string_equal(p.items[0].id, "a-1");
  assert_string_equal(p.items[1].id, "17");
  assert_int_equal(p.items[1].line, 4);
  assert_string_equal(p.items[2].id, "5"); /* its line, blank lines counted */
  assert_string_equal(p.items[3].id, "6");
  done(&p);
  assert_error("{\"id\":\"x\",\"question\":\"q\"}\n{\"id\":\"y\",\"question\":\"q\"}\n"
               "{\"id\":\"x\",\"question\":\"q\"}\n",
               NULL, "d.jsonl:3: duplicate id 'x' (first on line 1)");
  /* A line-number id and an explicit one collide too. */
  assert_error("{\"id\":2,\"question\":\"q\"}\n{\"question\":\"q\"}\n", NULL,
               "d.jsonl:2: duplicate id '2' (first on line 1)");
  assert_error("{\"id\":1.5,\"question\":\"q\"}\n", NULL,
               "d.jsonl:1: 'id' must be a string or an integer");
  assert_error("{\"id\":\"\",\"question\":\"q\"}\n", NULL, "d.jsonl:1: 'id' must be 1 to 256");
  char big[400];
  snprintf(big, sizeof big, "{\"id\":\"%0300d\",\"question\":\"q\"}\n", 0);
  assert_error(big, NULL, "d.jsonl:1: 'id' must be 1 to 256");
}

static void bad_lines(void **state) {
  (void)state;
  assert_error("{\"question\":\"q\"}\n{\"question\":\n", NULL, "d.jsonl:2: invalid JSON: ");
  assert_error("[1,2]\n", NULL, "d.jsonl:1: an item must be a JSON object");
  assert_error("{\"answer\":\"5\"}\n", NULL,
               "d.jsonl:1: no question: none of the fields question, problem, Problem, prompt, "
               "input, and no messages");
  assert_error("{\"question\":[\"q\"]}\n", NULL, "d.jsonl:1: field 'question' must be a string");
  assert_error("{\"question\":\"\"}\n", NULL, "d.jsonl:1: field 'question' is empty");
  assert_error("{\"question\":\"q\",\"answer\":{}}\n", NULL,
               "d.jsonl:1: field 'answer' must be a string or a number");
  assert_error("", NULL, "d.jsonl:1: no items in the dataset");
  assert_error("\n\n", NULL, "d.jsonl:2: no items in the dataset");
  assert_error("{\"question\":\"a\\u0000b\"}\n", NULL, "d.jsonl:1: invalid JSON");
  assert_error("{\"question\":\"\xff\"}\n", NULL, "d.jsonl:1: invalid JSON");
  /* Refused before reading any further: the first bad line is the one reported. */
  assert_error("{\"question\":\"q\"}\nnot json\n{\"answer\":1}\n", NULL, "d.jsonl:2: invalid JSON");
}

static void long_line(void **state) {
  (void)state;
  size_t n = (size_t)PD_DATASET_MAX_LINE + 32;
  char *t = malloc(n + 1);
  assert_non_null(t);
  memset(t, ' ', n);
  memcpy(t, "{\"question\":\"q\"}\n{\"question\":\"", 30);
  t[n - 3] = '"';
  t[n - 2] = '}';
  t[n - 1] = '\n';
  t[n] = 0;
  parsed_t p = {0};
  p.rc = pd_dataset_parse("d.jsonl", t, n, NULL, &p.items, &p.n, &p.err);
  assert_int_equal(p.rc, -1);
  assert_non_null(strstr(p.err, "d.jsonl:2: line longer than"));
  done(&p);
  free(t);
}

static void limit(void **state) {
  (void)state;
  pd_dataset_opts_t o = {.limit = 2};
  /* Lines past the limit are not read, bad or not. */
  parsed_t p = parse_opts("{\"question\":\"a\"}\n\n{\"question\":\"b\"}\n{oops\n", &o);
  assert_int_equal(p.rc, 0);
  assert_int_equal(p.n, 2);
  assert_string_equal(p.items[1].question, "b");
  done(&p);
}

static void load_file(void **state) {
  (void)state;
  char path[] = "/tmp/test_dataset_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  FILE *f = fdopen(fd, "w");
  fputs("{\"Problem\":\"What is 2+3?\",\"Answer\":5}\n", f);
  fclose(f);
  pd_eval_item_t *items = NULL;
  size_t n = 0;
  char *err = NULL;
  assert_int_equal(pd_dataset_load(path, NULL, &items, &n, &err), 0);
  assert_int_equal(n, 1);
  assert_string_equal(items[0].question, "What is 2+3?");
  assert_string_equal(items[0].reference, "5");
  assert_string_equal(items[0].id, "1");
  pd_dataset_free(items, n);
  unlink(path);
  assert_int_equal(pd_dataset_load(path, NULL, &items, &n, &err), -1);
  assert_non_null(strstr(err, "No such file"));
  free(err);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(question_fields_in_order),
      cmocka_unit_test(reference_fields_and_numbers),
      cmocka_unit_test(explicit_fields),
      cmocka_unit_test(messages_items),
      cmocka_unit_test(ids),
      cmocka_unit_test(bad_lines),
      cmocka_unit_test(long_line),
      cmocka_unit_test(limit),
      cmocka_unit_test(load_file),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
