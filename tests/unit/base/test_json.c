/* Tests of base/json.c: the tokenizer's verdict against jansson's json_loadb (fixed cases for
 * each of its rules and quirks, then mutations), the member spans and replacement, the loader
 * and the writer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/json_gen.h"
#include "base/json.h"

static int jansson_accepts(const char *b, size_t n) {
  json_t *j = json_loadb(b, n, 0, NULL);
  json_decref(j);
  return j != NULL;
}

/* Every reader agrees with json_loadb on b: the tokenizer, pd_json_load (same tree), and
 * pd_json_check_members (for objects). */
static void check_verdict(const char *b, size_t n) {
  json_t *want = json_loadb(b, n, 0, NULL);
  if (scan_accepts(b, n) != !!want)
    fail_msg("tokenizer says %d, jansson %d: %.*s", !want, !!want, (int)n, b);
  json_t *got = pd_json_load(b, n, NULL);
  if (!want != !got || (want && !json_equal(want, got)))
    fail_msg("pd_json_load differs from json_loadb for: %.*s", (int)n, b);
  pd_json_member_t m[1] = {{"a", 1, NULL, 0, 0}};
  if (pd_json_check_members(b, n, m, 1) != (want && json_is_object(want)))
    fail_msg("pd_json_check_members differs from json_loadb for: %.*s", (int)n, b);
  json_decref(want);
  json_decref(got);
}

/* The relay's verdict through the member check (as core/openai.c's pd_openai_check_reply gives
 * it): 1 for an object jansson accepts, 2 for one with a top-level "error", 0 otherwise; with
 * the top-level "usage" value's span (the last, as jansson keeps) in *usage when asked. */
static int check_reply(const char *b, size_t n, const char **usage, size_t *usage_len) {
  pd_json_member_t m[2] = {{"error", 5, NULL, 0, 0}, {"usage", 5, NULL, 0, 0}};
  if (!pd_json_check_members(b, n, m, 2))
    return 0;
  if (usage) {
    *usage = m[1].value;
    *usage_len = m[1].len;
  }
  return m[0].count ? 2 : 1;
}

static int check_object(const char *b, size_t n) {
  return check_reply(b, n, NULL, NULL);
}

static void test_json_check(void **state) {
  (void)state;
  static const struct {
    const char *json;
    int want;
  } cases[] = {
      {"{}", 1},
      {" {\"a\" : [1, -2.5e+3, true, false, null, {\"b\": []}], \"c\": \"x\\n\\u00e9\\\"\"} ", 1},
      {"{\"id\":\"chatcmpl-1\",\"choices\":[{\"message\":{\"content\":\"hi\"}}]}", 1},
      {"{\"error\":{\"message\":\"no\"}}", 2},
      {"{\"a\":{\"error\":1}}", 1},
      {"[]", 0},
      {"", 0},
      {"{not json", 0},
      {"{\"a\":1,}", 0},
      {"{\"a\" 1}", 0},
      {"{\"a\":01}", 0},
      {"{\"a\":1} x", 0},
      {"{\"a\":\"\\q\"}", 0},
      {"{\"a\":\"\x01\"}", 0},
      {"{\"a\":[1 2]}", 0},
      {"{\"a\":tru}", 0},
      {"{\"a\":1", 0},
      {"{\"a\":-}", 0},
      {"{\"a\":1.}", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int got = check_object(cases[i].json, strlen(cases[i].json));
    if (got != cases[i].want)
      fail_msg("case %zu (%s): got %d, want %d", i, cases[i].json, got, cases[i].want);
  }
  /* Nesting: jansson's limit, not a smaller one of ours (this was refused at 64 levels). */
  char deep[300];
  size_t n = 0;
  deep[n++] = '{';
  deep[n++] = '"';
  deep[n++] = 'a';
  deep[n++] = '"';
  deep[n++] = ':';
  for (int i = 0; i < 100; i++)
    deep[n++] = '[';
  for (int i = 0; i < 100; i++)
    deep[n++] = ']';
  deep[n++] = '}';
  assert_int_equal(check_object(deep, n), 1);
  assert_true(jansson_accepts(deep, n));
}

/* check_reply finds the top-level "usage" value (the last, as jansson keeps it), never
 * one nested deeper, whatever its type. */
static void test_check_reply_usage(void **state) {
  (void)state;
  static const struct {
    const char *json, *usage;
  } cases[] = {
      {"{\"id\":\"x\",\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":{\"a\":[1]}}}",
       "{\"prompt_tokens\":3,\"completion_tokens\":{\"a\":[1]}}"},
      {"{\"usage\": {} ,\"x\":1}", "{}"},
      {"{\"usage\":null}", "null"},
      {"{\"usage\":[1,2]}", "[1,2]"},
      {"{\"usage\":1,\"usage\":{\"b\":2}}", "{\"b\":2}"},
      {"{\"choices\":[{\"usage\":{\"p\":1}}],\"x\":{\"usage\":2}}", NULL},
      {"{}", NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *u = (const char *)1;
    size_t ulen = 99;
    assert_int_equal(check_reply(cases[i].json, strlen(cases[i].json), &u, &ulen), 1);
    if (!cases[i].usage) {
      assert_null(u);
      assert_int_equal(ulen, 0);
    } else {
      assert_non_null(u);
      if (ulen != strlen(cases[i].usage) || memcmp(u, cases[i].usage, ulen))
        fail_msg("case %zu: usage \"%.*s\", want \"%s\"", i, (int)ulen, u, cases[i].usage);
    }
  }
}
/* pd_json_write against json_dumps(JSON_COMPACT): fixed cases, then random trees. */
static void expect_same(const json_t *v) {
  char *want = json_dumps(v, JSON_COMPACT);
  assert_non_null(want);
  pd_buf_t b;
  pd_buf_init(&b);
  assert_int_equal(pd_json_write(&b, v), 0);
  assert_int_equal(b.len, strlen(want));
  assert_memory_equal(pd_buf_data(&b), want, b.len);
  pd_buf_free(&b);
  free(want);
}

static void test_json_write(void **state) {
  (void)state;
  const char *const docs[] = {
      "{}",
      "[]",
      "{\"a\":[1,-2,3.5,1e300,-0.0,0.1,true,false,null,\"\"]}",
      ("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\\n\\\"y\\\\\"}],"
       "\"temperature\":0.7,\"max_tokens\":9223372036854775807,\"n\":-9223372036854775808}"),
      "{\"k\\u0001z\":\"a\\u0000b\\u001f\\u007f\\u2028\\ud83d\\ude00/\"}",
  };
  for (size_t i = 0; i < sizeof docs / sizeof *docs; i++) {
    json_error_t err;
    json_t *v = json_loads(docs[i], JSON_ALLOW_NUL, &err);
    assert_non_null(v);
    expect_same(v);
    json_decref(v);
  }
  /* As deep as jansson's parser allows: 2048 levels. */
  json_t *deep = json_array(), *inner = deep;
  for (int d = 1; d < 2048; d++) {
    json_t *next = json_array();
    json_array_append_new(inner, next);
    inner = next;
  }
  json_array_append_new(inner, json_string("bottom"));
  json_t *root = json_pack("{s:o}", "deep", deep);
  expect_same(root);
  json_decref(root);
  for (int i = 0; i < 3000; i++) {
    json_t *v = random_value(0);
    json_t *root = json_object();
    json_object_set_new(root, "v", v);
    expect_same(root);
    json_decref(root);
  }
}

/* Each rule of jansson's reader, and its quirks, with the verdict json_loadb gives (asserted
 * here too, so a different jansson shows up as such). */
static void test_verdict_rules(void **state) {
  (void)state;
  static const struct {
    const char *json;
    size_t len; /* 0: strlen */
    int want;
  } cases[] = {
      /* top level: an object or an array only, blanks around it */
      {"[]", 0, 1},
      {" \t\r\n{} \n", 0, 1},
      {"\"s\"", 0, 0},
      {"1", 0, 0},
      {"null", 0, 0},
      {"{}{}", 0, 0},
      {"\xEF\xBB\xBF{}", 0, 0},
      {"\f{}", 0, 0},
      /* NUL: refused in strings and as a token; one NUL right after a number or a literal is
       * dropped by jansson's look-ahead */
      {"{\"a\":5\0}", 8, 1},
      {"[1\0,2]", 6, 1},
      {"[true\0]", 7, 1},
      {"[false\0,null\0]", 14, 1},
      {"[1.5e3\0]", 8, 1},
      {"[1\0\0]", 5, 0},
      {"[1 \0]", 5, 0},
      {"[1\0 2]", 6, 0},
      {"[\"\0\"]", 5, 0},
      {"[]\0", 3, 0},
      {"{\"a\"\0:1}", 8, 0},
      {"[\"\\u0000\"]", 0, 0},
      {"{\"\\u0000\":1}", 0, 0},
      /* escapes and surrogates */
      {"[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"]", 0, 1},
      {"[\"\\u00e9\\uFFFF\\uD83D\\uDE00\"]", 0, 1},
      {"[\"\\ud800\"]", 0, 0},
      {"[\"\\udc00\"]", 0, 0},
      {"[\"\\ud800\\u0041\"]", 0, 0},
      {"[\"\\ud800\\ud800\"]", 0, 0},
      {"[\"\\ud800x\"]", 0, 0},
      {"[\"\\u12\"]", 0, 0},
      {"[\"\\u12g4\"]", 0, 0},
      {"[\"\\a\"]", 0, 0},
      {"[\"\\", 0, 0},
      {"[\"\t\"]", 0, 0},
      {"[\"\x7f\"]", 0, 1},
      /* UTF-8 (RFC 3629, as pd_utf8_seq checks it) */
      {"[\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF\"]", 0, 1},
      {"[\"\xC0\xAF\"]", 0, 0},
      {"[\"\xE0\x80\xAF\"]", 0, 0},
      {"[\"\xED\xA0\x80\"]", 0, 0},
      {"[\"\xF4\x90\x80\x80\"]", 0, 0},
      {"[\"\xF5\x80\x80\x80\"]", 0, 0},
      {"[\"\x80\"]", 0, 0},
      {"[\"\xC3\"]", 0, 0},
      {"[\"\xC3", 0, 0},
      {"[\xC3\xA9]", 0, 0},
      /* numbers */
      {"[0,-0,-0.0,0e0,0E+1,1e-1,123.456e-789]", 0, 1},
      {"[9223372036854775807,-9223372036854775808]", 0, 1},
      {"[9223372036854775808]", 0, 0},
      {"[-9223372036854775809]", 0, 0},
      {"[00000000000000000001]", 0, 0},
      {"[12345678901234567890]", 0, 0},
      {"[1.7976931348623157e308,-1.7976931348623157e308]", 0, 1},
      {"[17976931348623157e292]", 0, 1},
      {"[1.7976931348623158e308]", 0, 1},
      {"[1.7976931348623159e308]", 0, 0},
      {"[1.8e308]", 0, 0},
      {"[1e309]", 0, 0},
      {"[0.00001e313]", 0, 1},
      {"[0.00002e313]", 0, 0},
      {"[-0.000018e313]", 0, 0},
      {"[0.000017e313]", 0, 1},
      {"[0.00001e312]", 0, 1},
      {"[1e99999999999999999999999]", 0, 0},
      {"[1e-99999999999999999999999]", 0, 1},
      {"[0e99999999999999999999999]", 0, 1},
      {"[0.0e400]", 0, 1},
      {"[01]", 0, 0},
      {"[-]", 0, 0},
      {"[+1]", 0, 0},
      {"[.5]", 0, 0},
      {"[1.]", 0, 0},
      {"[1.e5]", 0, 0},
      {"[1e]", 0, 0},
      {"[1e+]", 0, 0},
      {"[-a]", 0, 0},
      {"[1x]", 0, 0},
      /* literals and structure */
      {"[true,false,null]", 0, 1},
      {"[tru]", 0, 0},
      {"[truex]", 0, 0},
      {"[True]", 0, 0},
      {"[nul]", 0, 0},
      {"[1,]", 0, 0},
      {"[,1]", 0, 0},
      {"{\"a\":1,}", 0, 0},
      {"{,}", 0, 0},
      {"{\"a\"}", 0, 0},
      {"{\"a\":}", 0, 0},
      {"{1:2}", 0, 0},
      {"{\"a\":1]", 0, 0},
      {"[1}", 0, 0},
      {"{\"a\":1,\"a\":2}", 0, 1},
      {"[", 0, 0},
      {"", 0, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const char *b = cases[i].json;
    size_t n = cases[i].len ? cases[i].len : strlen(b);
    if (jansson_accepts(b, n) != cases[i].want)
      fail_msg("case %zu (%s): jansson's verdict is not %d", i, b, cases[i].want);
    if (scan_accepts(b, n) != cases[i].want)
      fail_msg("case %zu (%s): the tokenizer's verdict is not %d", i, b, cases[i].want);
    check_verdict(b, n);
  }
}

/* The depth limit: a value inside 2048 containers (itself included) passes, one more does
 * not, for containers and scalars alike. */
static void test_verdict_depth(void **state) {
  (void)state;
  static const struct {
    int arrays;
    const char *inner;
    int want;
  } cases[] = {
      {2048, "", 1},   {2049, "", 0},      {2047, "1", 1},    {2048, "1", 0}, {2047, "{}", 1},
      {2048, "{}", 0}, {2047, "\"s\"", 1}, {2048, "true", 0}, {5000, "", 0},
  };
  char *buf = malloc(2 * 5000 + 16);
  assert_non_null(buf);
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    size_t n = 0, il = strlen(cases[i].inner);
    for (int d = 0; d < cases[i].arrays; d++)
      buf[n++] = '[';
    memcpy(buf + n, cases[i].inner, il);
    n += il;
    for (int d = 0; d < cases[i].arrays; d++)
      buf[n++] = ']';
    if (jansson_accepts(buf, n) != cases[i].want || scan_accepts(buf, n) != cases[i].want)
      fail_msg("case %zu: %d arrays around \"%s\"", i, cases[i].arrays, cases[i].inner);
    check_verdict(buf, n);
  }
  free(buf);
  /* Objects count the same way: {"a":{"a":...{}}} */
  char *big = malloc(6 * 2048 + 16);
  assert_non_null(big);
  size_t n = 0;
  for (int d = 0; d < 2047; d++) {
    memcpy(big + n, "{\"a\":", 5);
    n += 5;
  }
  memcpy(big + n, "{}", 2);
  n += 2;
  for (int d = 0; d < 2047; d++)
    big[n++] = '}';
  assert_int_equal(check_object(big, n), 1);
  check_verdict(big, n);
  memmove(big + 5, big, n);
  memcpy(big, "{\"a\":", 5);
  n += 5;
  big[n++] = '}';
  assert_int_equal(check_object(big, n), 0);
  check_verdict(big, n);
  free(big);
}

/* The regression behind the relay's remap: the relay's check let through replies jansson
 * refuses (so the remap's json_loadb failed and the upstream's model name went out), and
 * refused replies jansson reads (nested over 64). The verdict is now jansson's. */
static void test_check_is_janssons(void **state) {
  (void)state;
  static const char *const cases[] = {
      "{\"model\":\"up\",\"choices\":[],\"x\":\"\xFF\"}",
      "{\"model\":\"up\",\"x\":\"\xED\xA0\x80\"}",
      "{\"model\":\"up\",\"x\":\"\\u0000\"}",
      "{\"model\":\"up\",\"x\":\"\\ud800\"}",
      "{\"model\":\"up\",\"x\":\"\\udc00\\ud800\"}",
      "{\"model\":\"up\",\"x\":1e400}",
      "{\"model\":\"up\",\"x\":99999999999999999999}",
      "{\"model\":\"up\",\"x\":-9223372036854775809}",
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    size_t n = strlen(cases[i]);
    assert_false(jansson_accepts(cases[i], n));
    if (check_object(cases[i], n) != 0)
      fail_msg("case %zu passes the check, jansson refuses it: %s", i, cases[i]);
  }
  /* 65 levels: jansson reads it. */
  char deep[200];
  size_t n = (size_t)snprintf(deep, sizeof deep, "{\"model\":\"up\",\"x\":");
  for (int i = 0; i < 65; i++)
    deep[n++] = '[';
  for (int i = 0; i < 65; i++)
    deep[n++] = ']';
  deep[n++] = '}';
  assert_true(jansson_accepts(deep, n));
  assert_int_equal(check_object(deep, n), 1);
  /* {"a":5\0}: jansson reads it, so the check does too. */
  assert_true(jansson_accepts("{\"model\":5\0}", 12));
  assert_int_equal(check_object("{\"model\":5\0}", 12), 1);
}

/* Member spans: the last of each name at the top level, escaped keys matched decoded. */
static void test_check_members(void **state) {
  (void)state;
  const char *b = "{\"model\" : \"a\", \"x\":{\"model\":\"no\"},\"mod\\u0065l\":[1, {}] ,"
                  "\"usage\":5\0,\"error\":null}";
  size_t n = strlen(b) + 1 + strlen(",\"error\":null}");
  pd_json_member_t m[3] = {
      {"model", 5, NULL, 0, 0}, {"usage", 5, NULL, 0, 0}, {"absent", 6, NULL, 0, 0}};
  assert_int_equal(pd_json_check_members(b, n, m, 3), 1);
  assert_int_equal(m[0].count, 2);
  assert_int_equal(m[0].len, 7);
  assert_memory_equal(m[0].value, "[1, {}]", 7);
  assert_int_equal(m[1].count, 1);
  assert_int_equal(m[1].len, 1);
  assert_memory_equal(m[1].value, "5", 1);
  assert_int_equal(m[2].count, 0);
  assert_null(m[2].value);
  assert_int_equal(check_object(b, n), 2);
  assert_int_equal(check_object("{\"\\u0065rror\":1}", 16), 2);
  assert_int_equal(pd_json_check_members("[]", 2, m, 3), 0);

  /* Replacement: every top-level "model", nothing nested, the rest byte for byte. */
  pd_buf_t out;
  pd_buf_init(&out);
  assert_int_equal(pd_json_replace_members(&out, b, n, "model", 5, "\"c\"", 3), 2);
  const char *want = "{\"model\" : \"c\", \"x\":{\"model\":\"no\"},\"mod\\u0065l\":\"c\" ,"
                     "\"usage\":5\0,\"error\":null}";
  assert_int_equal(out.len, n - 4);
  assert_memory_equal(pd_buf_data(&out), want, n - 4);
  pd_buf_reset(&out);
  pd_buf_appends(&out, "keep");
  assert_int_equal(pd_json_replace_members(&out, "{\"model\":\"a\"", 12, "model", 5, "1", 1), -1);
  assert_int_equal(out.len, 4);
  assert_string_equal(pd_buf_data(&out), "keep");
  pd_buf_free(&out);
}

/* Tokens: types, raw bytes, escapes and values. */
static void test_tokens(void **state) {
  (void)state;
  const char *b = "{\"k\\n\":[\"v\",-12,2.5e1,true,false,null,{}]}";
  static const int want[] = {
      PD_JSON_OBJECT,     PD_JSON_KEY,       PD_JSON_ARRAY,      PD_JSON_STRING, PD_JSON_INTEGER,
      PD_JSON_REAL,       PD_JSON_TRUE,      PD_JSON_FALSE,      PD_JSON_NULL,   PD_JSON_OBJECT,
      PD_JSON_OBJECT_END, PD_JSON_ARRAY_END, PD_JSON_OBJECT_END, PD_JSON_END,    PD_JSON_END};
  pd_json_scan_t s;
  pd_json_tok_t t;
  pd_json_scan_init(&s, b, strlen(b));
  for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
    assert_int_equal(pd_json_next(&s, &t), want[i]);
    if (i == 1) {
      assert_int_equal(t.len, 3);
      assert_true(t.esc);
      assert_true(pd_json_tok_is(&t, "k\n", 2));
      char dec[3];
      assert_int_equal(pd_json_unescape(t.s, t.len, dec), 2);
    }
    if (i == 4)
      assert_int_equal(t.ival, -12);
    if (i == 5) {
      double v;
      assert_int_equal(pd_json_real(&t, &v), 0);
      assert_true(v == 25.0);
    }
  }
  pd_json_scan_init(&s, "{\"a\" 1}", 7);
  assert_int_equal(pd_json_next(&s, &t), PD_JSON_OBJECT);
  assert_int_equal(pd_json_next(&s, &t), PD_JSON_ERROR);
  assert_int_equal(pd_json_next(&s, &t), PD_JSON_ERROR);
}

/* pd_json_load on what is not JSON: NULL, and jansson's own message in err. */
static void test_load_errors(void **state) {
  (void)state;
  json_error_t err, want;
  memset(&err, 0, sizeof err);
  assert_null(pd_json_load("{\"a\":tru}", 9, &err));
  assert_null(json_loadb("{\"a\":tru}", 9, 0, &want));
  assert_string_equal(err.text, want.text);
  assert_int_equal(err.line, want.line);
  assert_int_equal(err.column, want.column);
  json_t *j = pd_json_load("[1.5, \"\\u00e9\", {\"k\\\"\":[]}]", 27, &err);
  assert_non_null(j);
  json_decref(j);
}

/* Random byte edits of JSON texts: every reader agrees with json_loadb on each. */
static void test_verdict_mutations(void **state) {
  (void)state;
  static const char *const docs[] = {
      "{\"id\":\"chatcmpl-1\",\"model\":\"m\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
      "\"assistant\",\"content\":\"Hi \\\"x\\\" \\u00e9\\ud83d\\ude00\\n\\/\"},\"finish_reason\":"
      "\"stop\"}],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":5}}",
      "[1, -0, 2.5e-3, 1E+2, 9223372036854775807, true, false, null, \"caf\xC3\xA9\", [], {}]",
      "{\"a\":[[[{\"b\":\"\\u0041\\t\"}]]],\"c\":1.7976931348623157e308,\"d\":123456789012345678}",
      "{\"k\\u00e9y\":\"\xF0\x9F\x98\x80\",\"n\":-9223372036854775808, \"x\" : { } }",
  };
  uint64_t x = 0x243F6A8885A308D3ULL;
  char buf[600];
  for (int iter = 0; iter < 200000; iter++) {
    size_t len =
        mutate(buf, sizeof buf, docs[iter % (sizeof docs / sizeof *docs)], 1 + iter % 4, &x);
    check_verdict(buf, len);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_json_check),
                                     cmocka_unit_test(test_check_reply_usage),
                                     cmocka_unit_test(test_verdict_rules),
                                     cmocka_unit_test(test_verdict_depth),
                                     cmocka_unit_test(test_check_is_janssons),
                                     cmocka_unit_test(test_check_members),
                                     cmocka_unit_test(test_tokens),
                                     cmocka_unit_test(test_load_errors),
                                     cmocka_unit_test(test_verdict_mutations),
                                     cmocka_unit_test(test_json_write)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
