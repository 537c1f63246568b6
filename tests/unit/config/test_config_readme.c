/* README's configuration table against the schema (proxy/config/schema.c), both ways: every
 * schema row with a description has a README row with the same key, default and meaning, and
 * every README row is a key of the schema. A failure names the key that differs. README.md is
 * found from $PONDER_TEST_DATA (tests/unit/data). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config/schema.h"

typedef struct {
  char *key, *def, *doc;
  int used;
} row_t;

typedef struct {
  row_t *rows;
  size_t n, cap;
} rows_t;

static void add(rows_t *r, char *key, char *def, char *doc) {
  if (r->n == r->cap) {
    r->cap = r->cap ? r->cap * 2 : 64;
    r->rows = realloc(r->rows, r->cap * sizeof *r->rows);
    assert_non_null(r->rows);
  }
  r->rows[r->n++] = (row_t){key, def, doc, 0};
}

static void rows_free(rows_t *r) {
  for (size_t i = 0; i < r->n; i++) {
    free(r->rows[i].key);
    free(r->rows[i].def);
    free(r->rows[i].doc);
  }
  free(r->rows);
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f)
    fail_msg("cannot open %s", path);
  assert_int_equal(fseek(f, 0, SEEK_END), 0);
  long len = ftell(f);
  assert_true(len > 0);
  rewind(f);
  char *text = malloc((size_t)len + 1);
  assert_non_null(text);
  assert_int_equal(fread(text, 1, (size_t)len, f), (size_t)len);
  text[len] = '\0';
  fclose(f);
  return text;
}

/* The rows of the table in README's "## Configuration reference" section: "| `KEY` | DEFAULT
 * | MEANING |". */
static void readme_rows(rows_t *out) {
  const char *dir = getenv("PONDER_TEST_DATA");
  assert_non_null(dir);
  char *path;
  assert_true(asprintf(&path, "%s/../../../README.md", dir) > 0);
  char *text = slurp(path);
  free(path);
  char *sec = strstr(text, "\n## Configuration reference\n");
  if (!sec)
    fail_msg("README.md has no \"## Configuration reference\" section");
  sec += 2;
  char *end = strstr(sec, "\n## ");
  if (end)
    *end = '\0';
  for (char *line = sec; line && *line;) {
    char *nl = strchr(line, '\n');
    if (nl)
      *nl = '\0';
    if (!strncmp(line, "| `", 3)) {
      size_t len = strlen(line);
      if (len < 6 || strcmp(line + len - 2, " |"))
        fail_msg("README row does not end with \" |\": %s", line);
      line[len - 2] = '\0';
      char *key = line + 2, *def = strstr(key, " | "), *doc = def ? strstr(def + 3, " | ") : NULL;
      if (!def || !doc)
        fail_msg("README row does not have three cells: %s", line);
      *def = '\0';
      *doc = '\0';
      size_t klen = strlen(key);
      if (klen < 3 || key[klen - 1] != '`' || strchr(key + 1, '`') != key + klen - 1)
        fail_msg("README row's key is not one `key`: %s", key);
      add(out, strndup(key + 1, klen - 2), strdup(def + 3), strdup(doc + 3));
    }
    line = nl ? nl + 1 : NULL;
  }
  free(text);
}

/* README's default cell for a row: `shown` as written, else the default in backticks (a
 * string with a line break as a YAML double-quoted scalar), else "none". */
static char *default_cell(const pd_schema_key_t *k) {
  if (k->shown)
    return strdup(k->shown);
  if (!k->def)
    return strdup("none");
  char *out = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&out, &len);
  int quote = strchr(k->def, '\n') != NULL;
  fputs(quote ? "`\"" : "`", m);
  for (const char *p = k->def; *p; p++) {
    if (quote && *p == '\n')
      fputs("\\n", m);
    else if (quote && (*p == '"' || *p == '\\'))
      fprintf(m, "\\%c", *p);
    else
      fputc(*p, m);
  }
  fputs(quote ? "\"`" : "`", m);
  fclose(m);
  return out;
}

/* Every documented row reachable from t (each table once), as README would list it. */
static void schema_rows(const pd_schema_table_t *t, rows_t *out, const pd_schema_table_t **seen,
                        size_t *nseen) {
  for (size_t i = 0; i < *nseen; i++)
    if (seen[i] == t)
      return;
  assert_true(*nseen < 64);
  seen[(*nseen)++] = t;
  for (size_t i = 0; i < t->nkeys; i++) {
    const pd_schema_key_t *k = &t->keys[i];
    if (k->doc) {
      char *key;
      assert_true(
          asprintf(&key, "%s%s%s", t->path, k->name, k->type == PD_SCHEMA_LIST ? "[]" : "") > 0);
      add(out, key, default_cell(k), strdup(k->doc));
    }
    if (k->type == PD_SCHEMA_BLOCK || k->type == PD_SCHEMA_LIST)
      schema_rows(k->sub, out, seen, nseen);
  }
}

static row_t *find(rows_t *r, const char *key) {
  for (size_t i = 0; i < r->n; i++)
    if (!strcmp(r->rows[i].key, key))
      return &r->rows[i];
  return NULL;
}

static void test_readme_matches_schema(void **state) {
  (void)state;
  rows_t readme = {0}, schema = {0};
  const pd_schema_table_t *seen[64];
  size_t nseen = 0;
  readme_rows(&readme);
  schema_rows(&pd_schema_top, &schema, seen, &nseen);
  assert_true(readme.n > 0);
  int bad = 0;
  for (size_t i = 0; i < schema.n; i++) {
    const row_t *s = &schema.rows[i];
    row_t *r = find(&readme, s->key);
    if (!r) {
      print_error("key %s is in the schema but not in README's configuration table\n", s->key);
      bad++;
      continue;
    }
    if (r->used++) {
      print_error("key %s is listed twice in README's configuration table\n", s->key);
      bad++;
    }
    if (strcmp(r->def, s->def)) {
      print_error("key %s: README's default is \"%s\", the schema's \"%s\"\n", s->key, r->def,
                  s->def);
      bad++;
    }
    if (strcmp(r->doc, s->doc)) {
      print_error("key %s: README's meaning differs from the schema's doc:\n  README: %s\n  "
                  "schema: %s\n",
                  s->key, r->doc, s->doc);
      bad++;
    }
  }
  for (size_t i = 0; i < readme.n; i++) {
    if (!find(&schema, readme.rows[i].key)) {
      print_error("key %s is in README's configuration table but not in the schema\n",
                  readme.rows[i].key);
      bad++;
    }
  }
  rows_free(&readme);
  rows_free(&schema);
  if (bad)
    fail_msg("README's configuration table and the schema disagree on %d point(s), above", bad);
}

/* The check itself: a key missing on either side, or a different default, is caught. */
static void test_mismatches_are_named(void **state) {
  (void)state;
  const pd_schema_table_t *seen[64];
  size_t nseen = 0;
  rows_t schema = {0};
  schema_rows(&pd_schema_top, &schema, seen, &nseen);
  assert_non_null(find(&schema, "upstreams[].tls.server_name"));
  assert_non_null(find(&schema, "upstreams[].proxy"));
  assert_non_null(find(&schema, "routes[].variants[]"));
  assert_non_null(find(&schema, "forcing.prompts.continue"));
  assert_null(find(&schema, "upstreams[].tls"));
  assert_string_equal(find(&schema, "forcing.prefill.think_open")->def, "`\"<think>\\n\"`");
  assert_string_equal(find(&schema, "limits.max_body_bytes")->def, "`16777216`");
  rows_free(&schema);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_readme_matches_schema),
      cmocka_unit_test(test_mismatches_are_named),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
