/* Grader objects (SPEC section 11; OpenAI's grader objects as in reinforcement fine-tuning):
 * string_check, text_similarity (fuzzy_match), score_model, label_model and multi, their
 * templates, and the grading of one sample. Pure: a grade asks its caller for the judge
 * calls (request bodies) and takes their replies back, so nothing here does I/O except
 * pd_grader_get reading a grader file. A grader owns its strings, sub-graders and JSON; a
 * grade owns its judge bodies and results.
 *
 * Everything that can be checked is checked at load time (types, metrics, operations, keys,
 * template fields, expression names), each error naming the file and the member path. At
 * grade time the inputs (dataset items, answers, judge replies) are untrusted: every scan is
 * linear or bounded (fuzzy_match cuts its inputs), and the tree's depth is bounded at load. */
#include "eval/eval.h"
#include "eval/answer.h"
#include "eval/expr.h"
#include "eval/grader.h"

#include "base/buf.h"
#include "base/utf8.h"

#include "judge_json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FILE (1 << 20)   /* a grader file */
#define MAX_NEST 4           /* multi inside multi */
#define MAX_SUBS 32          /* graders of one multi */
#define MAX_MESSAGES 64      /* a judge's input messages */
#define MAX_LABELS 32        /* a label_model's labels */
#define MAX_LABEL_LEN 128    /* one label */
#define MAX_REPLY (64 << 10) /* the part of a judge reply that is read */

enum { K_STRING, K_SIMILARITY, K_SCORE, K_LABEL, K_MULTI };
enum { OP_EQ, OP_NE, OP_LIKE, OP_ILIKE };

struct pd_grader {
  const struct kind *kind;
  char *name;
  size_t index; /* pre-order position in the root's tree */
  size_t nodes; /* nodes in this subtree, itself included */
  /* string_check, text_similarity */
  char *input, *reference;
  int op;
  int has_threshold;
  double threshold;
  /* score_model, label_model */
  char *model;
  json_t *messages; /* [{role, content}], contents checked templates */
  json_t *sampling; /* object or NULL */
  double lo, hi;
  char **labels, **passing;
  size_t nlabels, npassing;
  /* multi */
  pd_grader_t **subs;
  char **keys;
  size_t nsubs;
  pd_expr_t *expr;
};

/* What loading is doing: where in the file, for the error message. */
typedef struct load {
  const char *origin;
  char *err;
} load_t;

/* One type: its member names (NULL-terminated) and how to read the rest. */
typedef struct kind {
  const char *type;
  int id;
  const char *const *keys;
  int (*parse)(load_t *l, const char *path, json_t *o, pd_grader_t *g, int depth);
} kind_t;

static int load_fail(load_t *l, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int load_fail(load_t *l, const char *path, const char *fmt, ...) {
  if (l->err)
    return -1;
  pd_buf_t b = {0};
  pd_buf_appendf(&b, "%s: ", l->origin ? l->origin : "grader");
  if (path && *path)
    pd_buf_appendf(&b, "%s: ", path);
  va_list ap;
  va_start(ap, fmt);
  pd_buf_appendv(&b, fmt, ap);
  va_end(ap);
  l->err = pd_buf_steal(&b, NULL);
  return -1;
}

/* path + "." + key, for messages; malloc'd. */
static char *subpath(const char *path, const char *key) {
  pd_buf_t b = {0};
  if (path && *path)
    pd_buf_appendf(&b, "%s.%s", path, key);
  else
    pd_buf_appends(&b, key);
  return pd_buf_steal(&b, NULL);
}

/* ---- templates ------------------------------------------------------------------------- */

enum { F_ITEM, F_REFERENCE, F_QUESTION, F_OUTPUT, F_REASONING, F_FINAL };

/* The placeholder "{{ NAME }}" whose inside is s[0..n): its field, and for F_ITEM the field
 * name in *fname and *flen. -1 for an unknown one. */
static int field_of(const char *s, size_t n, const char **fname, size_t *flen) {
  while (n && (*s == ' ' || *s == '\t'))
    s++, n--;
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
    n--;
#define IS(lit) (n == sizeof lit - 1 && memcmp(s, lit, n) == 0)
  if (IS("item.reference"))
    return F_REFERENCE;
  if (IS("item.question"))
    return F_QUESTION;
  if (IS("sample.output_text"))
    return F_OUTPUT;
  if (IS("sample.reasoning_text"))
    return F_REASONING;
  if (IS("sample.final_answer"))
    return F_FINAL;
#undef IS
  if (n > 5 && memcmp(s, "item.", 5) == 0) {
    for (size_t i = 5; i < n; i++)
      if (s[i] == ' ' || s[i] == '\t' || s[i] == '{' || s[i] == '}')
        return -1;
    *fname = s + 5;
    *flen = n - 5;
    return F_ITEM;
  }
  return -1;
}

/* Checks every placeholder of a template at load time. */
static int check_template(load_t *l, const char *path, const char *t) {
  for (const char *p = t; (p = strstr(p, "{{"));) {
    const char *e = strstr(p + 2, "}}");
    if (!e)
      return load_fail(l, path, "unclosed '{{'");
    const char *f;
    size_t fl;
    if (field_of(p + 2, (size_t)(e - p - 2), &f, &fl) < 0)
      return load_fail(l, path,
                       "unknown template field '{{%.*s}}' (item.FIELD, item.reference, "
                       "item.question, sample.output_text, sample.reasoning_text, "
                       "sample.final_answer are known)",
                       (int)(e - p - 2 > 80 ? 80 : e - p - 2), p + 2);
    p = e + 2;
  }
  return 0;
}

/* Renders t into out for one sample: one pass, so a value's own braces are never expanded.
 * Returns 0, or -1 with a malloc'd reason in *why (a field the item lacks). */
static int render(const char *t, const pd_grade_input_t *in, pd_buf_t *out, char **why) {
  const char *p = t;
  for (const char *o; (o = strstr(p, "{{"));) {
    const char *e = strstr(o + 2, "}}");
    pd_buf_append(out, p, (size_t)(o - p));
    const char *fname = NULL, *v = NULL;
    size_t flen = 0;
    int f = field_of(o + 2, (size_t)(e - o - 2), &fname, &flen);
    const pd_eval_item_t *it = in->item;
    switch (f) {
    case F_REFERENCE:
      v = it ? it->reference : NULL;
      break;
    case F_QUESTION:
      v = it ? it->question : NULL;
      break;
    case F_OUTPUT:
      v = in->output_text ? in->output_text : "";
      break;
    case F_REASONING:
      v = in->reasoning_text ? in->reasoning_text : "";
      break;
    case F_FINAL:
      v = in->final_answer ? in->final_answer : "";
      break;
    default: {
      char key[512];
      const json_t *x = NULL;
      if (flen < sizeof key && it && it->obj) {
        memcpy(key, fname, flen);
        key[flen] = 0;
        x = json_object_get(it->obj, key);
      }
      if (json_is_string(x)) {
        pd_buf_append(out, json_string_value(x), json_string_length(x));
      } else if (x && !json_is_null(x)) {
        char *j = json_dumps(x, JSON_ENCODE_ANY | JSON_COMPACT);
        pd_buf_appends(out, j);
        free(j);
      } else {
        pd_buf_t m = {0};
        pd_buf_appendf(&m, "the item has no field '%.*s'", (int)(flen > 80 ? 80 : flen), fname);
        *why = pd_buf_steal(&m, NULL);
        return -1;
      }
      p = e + 2;
      continue;
    }
    }
    if (!v) {
      *why = strdup(f == F_REFERENCE ? "the item has no reference" : "the item has no question");
      return -1;
    }
    pd_buf_appends(out, v);
    p = e + 2;
  }
  pd_buf_appends(out, p);
  return 0;
}

/* ---- loading --------------------------------------------------------------------------- */

static int check_keys(load_t *l, const char *path, json_t *o, const char *const *keys) {
  const char *k;
  json_t *v;
  json_object_foreach(o, k, v) {
    int known = !strcmp(k, "type") || !strcmp(k, "name");
    for (size_t i = 0; !known && keys[i]; i++)
      known = !strcmp(k, keys[i]);
    if (!known) {
      char *p = subpath(path, k);
      load_fail(l, p, "unknown member");
      free(p);
      return -1;
    }
  }
  (void)v;
  return 0;
}

/* A required (or optional: *out stays NULL) string member, copied. */
static int get_string(load_t *l, const char *path, json_t *o, const char *key, int required,
                      int is_template, char **out) {
  json_t *v = json_object_get(o, key);
  char *p = subpath(path, key);
  int rc = 0;
  if (!v) {
    if (required)
      rc = load_fail(l, p, "missing");
  } else if (!json_is_string(v)) {
    rc = load_fail(l, p, "must be a string");
  } else if (strlen(json_string_value(v)) != json_string_length(v)) {
    rc = load_fail(l, p, "must not contain NUL");
  } else if (is_template && check_template(l, p, json_string_value(v))) {
    rc = -1;
  } else if (!(*out = strdup(json_string_value(v)))) {
    rc = load_fail(l, p, "out of memory");
  }
  free(p);
  return rc;
}

static int parse_pair(load_t *l, const char *path, json_t *o, pd_grader_t *g) {
  if (get_string(l, path, o, "input", 1, 1, &g->input) ||
      get_string(l, path, o, "reference", 1, 1, &g->reference))
    return -1;
  return 0;
}

static int parse_string_check(load_t *l, const char *path, json_t *o, pd_grader_t *g, int depth) {
  (void)depth;
  static const char *const ops[] = {"eq", "ne", "like", "ilike"};
  char *op = NULL;
  if (parse_pair(l, path, o, g) || get_string(l, path, o, "operation", 1, 0, &op))
    return -1;
  g->op = -1;
  for (int i = 0; i < 4; i++)
    if (!strcmp(op, ops[i]))
      g->op = i;
  int rc = 0;
  if (g->op < 0) {
    char *p = subpath(path, "operation");
    rc = load_fail(l, p, "unknown operation '%.40s' (eq, ne, like, ilike are known)", op);
    free(p);
  }
  free(op);
  return rc;
}

static int parse_similarity(load_t *l, const char *path, json_t *o, pd_grader_t *g, int depth) {
  (void)depth;
  char *metric = NULL;
  if (parse_pair(l, path, o, g) || get_string(l, path, o, "evaluation_metric", 1, 0, &metric))
    return -1;
  int rc = 0;
  if (strcmp(metric, "fuzzy_match") != 0) {
    char *p = subpath(path, "evaluation_metric");
    rc = load_fail(l, p, "evaluation_metric '%.40s' is not supported (fuzzy_match is)", metric);
    free(p);
  }
  free(metric);
  json_t *t = json_object_get(o, "pass_threshold");
  if (!rc && t) {
    char *p = subpath(path, "pass_threshold");
    if (!json_is_number(t) || !(json_number_value(t) >= 0 && json_number_value(t) <= 1))
      rc = load_fail(l, p, "must be a number in [0, 1]");
    free(p);
    g->has_threshold = 1;
    g->threshold = json_number_value(t);
  }
  return rc;
}

/* The judge graders' common members: model, input messages, sampling_params. */
static int parse_judge(load_t *l, const char *path, json_t *o, pd_grader_t *g) {
  if (get_string(l, path, o, "model", 0, 0, &g->model))
    return -1;
  if (!g->model && !(g->model = strdup("gpt-4o-2024-08-06")))
    return load_fail(l, path, "out of memory");
  char *p = subpath(path, "input");
  json_t *in = json_object_get(o, "input");
  int rc = 0;
  if (!json_is_array(in) || !json_array_size(in) || json_array_size(in) > MAX_MESSAGES) {
    rc = load_fail(l, p, "must be an array of 1 to %d messages", MAX_MESSAGES);
    goto out;
  }
  g->messages = json_array();
  size_t i;
  json_t *m;
  json_array_foreach(in, i, m) {
    char idx[32];
    snprintf(idx, sizeof idx, "%zu", i);
    char *mp = subpath(p, idx);
    char *role = NULL, *content = NULL;
    static const char *const mkeys[] = {"role", "content", NULL};
    json_t *ty = json_object_get(m, "type");
    if (!json_is_object(m)) {
      rc = load_fail(l, mp, "must be an object {role, content}");
    } else if (ty && !(json_is_string(ty) && !strcmp(json_string_value(ty), "message"))) {
      rc = load_fail(l, mp, "type must be \"message\"");
    } else if (check_keys(l, mp, m, mkeys) || get_string(l, mp, m, "role", 1, 0, &role) ||
               get_string(l, mp, m, "content", 1, 1, &content)) {
      rc = -1;
    } else if (strcmp(role, "system") && strcmp(role, "developer") && strcmp(role, "user") &&
               strcmp(role, "assistant")) {
      char *rp = subpath(mp, "role");
      rc = load_fail(l, rp, "unknown role '%.40s' (system, developer, user, assistant)", role);
      free(rp);
    } else {
      json_array_append_new(g->messages, json_pack("{s:s,s:s}", "role", role, "content", content));
    }
    free(role);
    free(content);
    free(mp);
    if (rc)
      goto out;
  }
  json_t *sp = json_object_get(o, "sampling_params");
  if (sp) {
    free(p);
    p = subpath(path, "sampling_params");
    if (!json_is_object(sp)) {
      rc = load_fail(l, p, "must be an object");
      goto out;
    }
    static const char *const reserved[] = {"model",  "messages",       "response_format",
                                           "stream", "stream_options", "n"};
    for (size_t r = 0; r < sizeof reserved / sizeof *reserved; r++)
      if (json_object_get(sp, reserved[r])) {
        rc = load_fail(l, p, "'%s' is set by the grader and may not be given", reserved[r]);
        goto out;
      }
    g->sampling = json_deep_copy(sp);
  }
out:
  free(p);
  return rc;
}

static int parse_score(load_t *l, const char *path, json_t *o, pd_grader_t *g, int depth) {
  (void)depth;
  if (parse_judge(l, path, o, g))
    return -1;
  g->lo = 0;
  g->hi = 1;
  json_t *r = json_object_get(o, "range");
  if (r) {
    char *p = subpath(path, "range");
    int ok = json_is_array(r) && json_array_size(r) == 2 && json_is_number(json_array_get(r, 0)) &&
             json_is_number(json_array_get(r, 1));
    if (ok) {
      g->lo = json_number_value(json_array_get(r, 0));
      g->hi = json_number_value(json_array_get(r, 1));
      ok = isfinite(g->lo) && isfinite(g->hi) && g->lo < g->hi;
    }
    int rc = ok ? 0 : load_fail(l, p, "must be [lo, hi] with lo < hi");
    free(p);
    return rc;
  }
  return 0;
}

/* A non-empty array of distinct labels; with `of`, each must be one of of[0..nof). */
static int get_labels(load_t *l, const char *path, json_t *o, const char *key, char ***out,
                      size_t *n, char **of, size_t nof) {
  char *p = subpath(path, key);
  json_t *a = json_object_get(o, key);
  int rc = 0;
  if (!json_is_array(a) || !json_array_size(a) || json_array_size(a) > MAX_LABELS) {
    rc = load_fail(l, p, "must be an array of 1 to %d strings", MAX_LABELS);
    goto out;
  }
  *out = calloc(json_array_size(a), sizeof **out);
  if (!*out) {
    rc = load_fail(l, p, "out of memory");
    goto out;
  }
  size_t i;
  json_t *v;
  json_array_foreach(a, i, v) {
    const char *s = json_string_value(v);
    if (!s || !*s || strlen(s) > MAX_LABEL_LEN || strlen(s) != json_string_length(v)) {
      rc = load_fail(l, p, "element %zu must be a label of 1 to %d bytes", i, MAX_LABEL_LEN);
      goto out;
    }
    for (size_t j = 0; j < *n; j++)
      if (!strcmp((*out)[j], s)) {
        rc = load_fail(l, p, "'%s' is listed twice", s);
        goto out;
      }
    int found = !of;
    for (size_t j = 0; j < nof && !found; j++)
      found = !strcmp(of[j], s);
    if (!found) {
      rc = load_fail(l, p, "'%s' is not one of labels", s);
      goto out;
    }
    (*out)[(*n)++] = strdup(s);
  }
out:
  free(p);
  return rc;
}

static int parse_label(load_t *l, const char *path, json_t *o, pd_grader_t *g, int depth) {
  (void)depth;
  if (parse_judge(l, path, o, g) ||
      get_labels(l, path, o, "labels", &g->labels, &g->nlabels, NULL, 0) ||
      get_labels(l, path, o, "passing_labels", &g->passing, &g->npassing, g->labels, g->nlabels))
    return -1;
  return 0;
}

static pd_grader_t *parse_object(load_t *l, const char *path, json_t *o, int depth,
                                 const char *default_name);

static int is_identifier(const char *s) {
  if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
    return 0;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_' ||
          (*s >= '0' && *s <= '9')))
      return 0;
  return 1;
}

static int parse_multi(load_t *l, const char *path, json_t *o, pd_grader_t *g, int depth) {
  char *p = subpath(path, "graders");
  json_t *gs = json_object_get(o, "graders");
  int rc = 0;
  if (depth >= MAX_NEST) {
    rc = load_fail(l, path, "multi graders nested deeper than %d", MAX_NEST);
    goto out;
  }
  if (!json_is_object(gs) || !json_object_size(gs) || json_object_size(gs) > MAX_SUBS) {
    rc = load_fail(l, p, "must be an object of 1 to %d graders", MAX_SUBS);
    goto out;
  }
  g->subs = calloc(json_object_size(gs), sizeof *g->subs);
  g->keys = calloc(json_object_size(gs), sizeof *g->keys);
  if (!g->subs || !g->keys) {
    rc = load_fail(l, p, "out of memory");
    goto out;
  }
  const char *k;
  json_t *v;
  json_object_foreach(gs, k, v) {
    char *kp = subpath(p, k);
    if (!is_identifier(k)) {
      rc = load_fail(l, kp,
                     "a grader's name must be an identifier ([A-Za-z_][A-Za-z0-9_]*) "
                     "for calculate_output");
    } else {
      g->keys[g->nsubs] = strdup(k);
      if (!(g->subs[g->nsubs] = parse_object(l, kp, v, depth + 1, k)))
        rc = -1;
      g->nsubs++;
    }
    free(kp);
    if (rc)
      goto out;
  }
  char *expr = NULL;
  if (get_string(l, path, o, "calculate_output", 1, 0, &expr)) {
    rc = -1;
    goto out;
  }
  char *why = NULL;
  g->expr = pd_expr_parse(expr, strlen(expr), (const char *const *)g->keys, g->nsubs, &why);
  if (!g->expr) {
    char *ep = subpath(path, "calculate_output");
    rc = load_fail(l, ep, "%s", why ? why : "out of memory");
    free(ep);
  }
  free(why);
  free(expr);
out:
  free(p);
  return rc;
}

static const char *const string_keys[] = {"input", "reference", "operation", NULL};
static const char *const similarity_keys[] = {"input", "reference", "evaluation_metric",
                                              "pass_threshold", NULL};
static const char *const score_keys[] = {"model", "input", "range", "sampling_params", NULL};
static const char *const label_keys[] = {"model",          "input",           "labels",
                                         "passing_labels", "sampling_params", NULL};
static const char *const multi_keys[] = {"graders", "calculate_output", NULL};
static const kind_t kinds[] = {
    {"string_check", K_STRING, string_keys, parse_string_check},
    {"text_similarity", K_SIMILARITY, similarity_keys, parse_similarity},
    {"score_model", K_SCORE, score_keys, parse_score},
    {"label_model", K_LABEL, label_keys, parse_label},
    {"multi", K_MULTI, multi_keys, parse_multi},
};

static pd_grader_t *parse_object(load_t *l, const char *path, json_t *o, int depth,
                                 const char *default_name) {
  if (!json_is_object(o)) {
    load_fail(l, path, "a grader must be an object");
    return NULL;
  }
  const char *type = json_string_value(json_object_get(o, "type"));
  const kind_t *k = NULL;
  for (size_t i = 0; type && i < sizeof kinds / sizeof *kinds; i++)
    if (!strcmp(type, kinds[i].type))
      k = &kinds[i];
  if (!k) {
    char *p = subpath(path, "type");
    if (type)
      load_fail(l, p,
                "unknown type '%.40s' (string_check, text_similarity, score_model, "
                "label_model, multi are known)",
                type);
    else
      load_fail(l, p, "missing (a string)");
    free(p);
    return NULL;
  }
  pd_grader_t *g = calloc(1, sizeof *g);
  if (!g) {
    load_fail(l, path, "out of memory");
    return NULL;
  }
  g->kind = k;
  if (check_keys(l, path, o, k->keys) ||
      get_string(l, path, o, "name", !default_name, 0, &g->name) ||
      k->parse(l, path, o, g, depth)) {
    pd_grader_free(g);
    return NULL;
  }
  if (!g->name && !(g->name = strdup(default_name))) {
    pd_grader_free(g);
    return NULL;
  }
  return g;
}

/* Numbers the tree in pre-order (a grade keeps one result per node). */
static size_t number_nodes(pd_grader_t *g, size_t next) {
  g->index = next++;
  for (size_t i = 0; i < g->nsubs; i++)
    next = number_nodes(g->subs[i], next);
  g->nodes = next - g->index;
  return next;
}

pd_grader_t *pd_grader_parse(const char *text, size_t len, const char *origin, char **err) {
  load_t l = {.origin = origin};
  *err = NULL;
  if (len > MAX_FILE) {
    load_fail(&l, NULL, "larger than %d bytes", MAX_FILE);
    *err = l.err;
    return NULL;
  }
  json_error_t je;
  json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
  if (!o) {
    pd_buf_t b = {0};
    pd_buf_appendf(&b, "%s:%d:%d: %s", origin ? origin : "grader", je.line, je.column, je.text);
    *err = pd_buf_steal(&b, NULL);
    return NULL;
  }
  pd_grader_t *g = parse_object(&l, "", o, 0, NULL);
  json_decref(o);
  if (!g) {
    *err = l.err ? l.err : strdup("out of memory");
    return NULL;
  }
  number_nodes(g, 0);
  return g;
}

const char *pd_grader_judge_text(void) {
  return pd_grader_judge_json;
}

pd_grader_t *pd_grader_get(const char *name, char **err) {
  *err = NULL;
  if (!name || !strcmp(name, "default")) {
    static const char def[] = "{\"type\": \"string_check\", \"name\": \"default\", "
                              "\"input\": \"{{sample.final_answer}}\", "
                              "\"reference\": \"{{item.reference}}\", \"operation\": \"eq\"}";
    return pd_grader_parse(def, sizeof def - 1, "default", err);
  }
  if (!strcmp(name, "judge"))
    return pd_grader_parse(pd_grader_judge_json, strlen(pd_grader_judge_json),
                           "config/graders/judge.json (built in)", err);
  FILE *f = fopen(name, "rb");
  pd_buf_t b = {0};
  if (!f) {
    pd_buf_appendf(&b, "%s: %s", name, strerror(errno));
    *err = pd_buf_steal(&b, NULL);
    return NULL;
  }
  char chunk[8192];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0 && b.len <= MAX_FILE)
    pd_buf_append(&b, chunk, n);
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    pd_buf_free(&b);
    pd_buf_appendf(&b, "%s: read error", name);
    *err = pd_buf_steal(&b, NULL);
    return NULL;
  }
  pd_grader_t *g = pd_grader_parse(pd_buf_str(&b), b.len, name, err);
  pd_buf_free(&b);
  return g;
}

const char *pd_grader_name(const pd_grader_t *g) {
  return g->name;
}

int pd_grader_uses_judge(const pd_grader_t *g) {
  if (g->kind->id == K_SCORE || g->kind->id == K_LABEL)
    return 1;
  for (size_t i = 0; i < g->nsubs; i++)
    if (pd_grader_uses_judge(g->subs[i]))
      return 1;
  return 0;
}

static void free_list(char **v, size_t n) {
  for (size_t i = 0; v && i < n; i++)
    free(v[i]);
  free(v);
}

void pd_grader_free(pd_grader_t *g) {
  if (!g)
    return;
  free(g->name);
  free(g->input);
  free(g->reference);
  free(g->model);
  json_decref(g->messages);
  json_decref(g->sampling);
  free_list(g->labels, g->nlabels);
  free_list(g->passing, g->npassing);
  for (size_t i = 0; i < g->nsubs; i++)
    pd_grader_free(g->subs[i]);
  free(g->subs);
  free_list(g->keys, g->nsubs);
  pd_expr_free(g->expr);
  free(g);
}

/* ---- fuzzy_match ----------------------------------------------------------------------- */

/* Code points of s (at most PD_GRADER_FUZZY_MAX); a malformed byte is a unit above U+10FFFF. */
static size_t code_points(const char *s, size_t n, unsigned *out) {
  const unsigned char *p = (const unsigned char *)s;
  size_t k = 0;
  for (size_t i = 0; i < n && k < PD_GRADER_FUZZY_MAX;) {
    if (p[i] < 0x80) {
      out[k++] = p[i++];
      continue;
    }
    size_t l = pd_utf8_seq(p + i, n - i);
    if (!l) {
      out[k++] = 0x110000u + p[i++];
      continue;
    }
    unsigned c = p[i] & (l == 2 ? 0x1f : l == 3 ? 0x0f : 0x07);
    for (size_t j = 1; j < l; j++)
      c = (c << 6) | (p[i + j] & 0x3f);
    out[k++] = c;
    i += l;
  }
  return k;
}

double pd_grader_fuzzy_ratio(const char *a, size_t alen, const char *b, size_t blen) {
  unsigned *x = malloc(2 * PD_GRADER_FUZZY_MAX * sizeof *x);
  unsigned short *row = malloc(2 * (PD_GRADER_FUZZY_MAX + 1) * sizeof *row);
  if (!x || !row) {
    free(x);
    free(row);
    return 0;
  }
  unsigned *y = x + PD_GRADER_FUZZY_MAX;
  size_t n = code_points(a, alen, x), m = code_points(b, blen, y);
  double r = 1;
  if (n + m) {
    /* LCS by the classic dynamic programme, two rows of m + 1. */
    unsigned short *prev = row, *cur = row + PD_GRADER_FUZZY_MAX + 1;
    memset(prev, 0, (m + 1) * sizeof *prev);
    for (size_t i = 0; i < n; i++) {
      cur[0] = 0;
      for (size_t j = 0; j < m; j++)
        cur[j + 1] = x[i] == y[j] ? (unsigned short)(prev[j] + 1)
                                  : (prev[j + 1] > cur[j] ? prev[j + 1] : cur[j]);
      unsigned short *t = prev;
      prev = cur;
      cur = t;
    }
    r = 2.0 * prev[m] / (double)(n + m);
  }
  free(x);
  free(row);
  return r;
}

/* ---- grading --------------------------------------------------------------------------- */

struct pd_grade {
  const pd_grader_t *root;
  const pd_grader_t **node; /* by pre-order index */
  double *score;
  char **error; /* malloc'd, per node */
  size_t nnodes;
  size_t njudge;
  size_t *judge_node; /* the node of each judge call */
  char **body;
  char **reply; /* copies of the replies' contents, or NULL */
};

static void node_fail(pd_grade_t *gr, const pd_grader_t *g, const char *why) {
  if (gr->error[g->index])
    return;
  pd_buf_t b = {0};
  pd_buf_appendf(&b, "grader %s: %s", g->name, why);
  gr->error[g->index] = pd_buf_steal(&b, NULL);
}

/* ASCII case-folds a rendered text in place (ilike), so that glibc's linear strstr does the
 * search: both sides may be long and come from untrusted data. */
static void fold(pd_buf_t *b) {
  char *p = b->base ? b->base + b->off : NULL;
  for (size_t i = 0; p && i < b->len; i++)
    if (p[i] >= 'A' && p[i] <= 'Z')
      p[i] = (char)(p[i] - 'A' + 'a');
}

static const char *const fmt_score =
    "{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"score\",\"strict\":true,\"schema\":"
    "{\"type\":\"object\",\"properties\":{\"result\":{\"type\":\"number\"}},\"required\":"
    "[\"result\"],\"additionalProperties\":false}}}";

/* The judge call's body for a score_model or label_model node; NULL with *why on a render
 * error. */
static char *judge_body(const pd_grader_t *g, const pd_grade_input_t *in, char **why) {
  json_t *msgs = json_array();
  size_t i;
  json_t *m;
  json_array_foreach(g->messages, i, m) {
    pd_buf_t c = {0};
    if (render(json_string_value(json_object_get(m, "content")), in, &c, why)) {
      pd_buf_free(&c);
      json_decref(msgs);
      return NULL;
    }
    json_t *cs = json_stringn_nocheck(pd_buf_str(&c), c.len);
    pd_buf_free(&c);
    json_array_append_new(
        msgs, json_pack("{s:O,s:o}", "role", json_object_get(m, "role"), "content", cs));
  }
  json_t *body = json_pack("{s:s,s:o}", "model", g->model, "messages", msgs);
  if (g->sampling)
    json_object_update(body, g->sampling);
  json_t *rf;
  if (g->kind->id == K_SCORE) {
    rf = json_loads(fmt_score, 0, NULL);
  } else {
    json_t *labels = json_array();
    for (size_t k = 0; k < g->nlabels; k++)
      json_array_append_new(labels, json_string(g->labels[k]));
    rf = json_pack("{s:s,s:{s:s,s:b,s:{s:s,s:{s:{s:s,s:o}},s:[s],s:b}}}", "type", "json_schema",
                   "json_schema", "name", "label", "strict", 1, "schema", "type", "object",
                   "properties", "label", "type", "string", "enum", labels, "required", "label",
                   "additionalProperties", 0);
  }
  json_object_set_new(body, "response_format", rf);
  char *s = json_dumps(body, JSON_COMPACT);
  json_decref(body);
  if (!s)
    *why = strdup("out of memory");
  return s;
}

pd_grade_t *pd_grade_begin(const pd_grader_t *root, const pd_grade_input_t *in) {
  pd_grade_t *gr = calloc(1, sizeof *gr);
  if (!gr)
    return NULL;
  size_t n = root->nodes;
  gr->root = root;
  gr->nnodes = n;
  gr->node = calloc(n, sizeof *gr->node);
  gr->score = calloc(n, sizeof *gr->score);
  gr->error = calloc(n, sizeof *gr->error);
  gr->judge_node = calloc(n, sizeof *gr->judge_node);
  gr->body = calloc(n, sizeof *gr->body);
  gr->reply = calloc(n, sizeof *gr->reply);
  if (!gr->node || !gr->score || !gr->error || !gr->judge_node || !gr->body || !gr->reply) {
    pd_grade_free(gr);
    return NULL;
  }
  /* Pre-order walk with an explicit stack (depth is bounded at load; this keeps it so). */
  const pd_grader_t *stack[(MAX_NEST + 1) * MAX_SUBS];
  size_t sp = 0;
  stack[sp++] = root;
  while (sp) {
    const pd_grader_t *g = stack[--sp];
    gr->node[g->index] = g;
    for (size_t i = g->nsubs; i-- > 0;)
      stack[sp++] = g->subs[i];
    char *why = NULL;
    pd_buf_t a = {0}, b = {0};
    switch (g->kind->id) {
    case K_STRING:
    case K_SIMILARITY:
      if (render(g->input, in, &a, &why) || render(g->reference, in, &b, &why))
        break;
      if (g->kind->id == K_SIMILARITY) {
        double r = pd_grader_fuzzy_ratio(pd_buf_str(&a), a.len, pd_buf_str(&b), b.len);
        gr->score[g->index] = g->has_threshold ? (r >= g->threshold ? 1 : 0) : r;
      } else if (g->op == OP_EQ || g->op == OP_NE) {
        int eq = a.len == b.len && memcmp(pd_buf_str(&a), pd_buf_str(&b), a.len) == 0;
        gr->score[g->index] = (g->op == OP_EQ) == eq;
      } else {
        if (g->op == OP_ILIKE) {
          fold(&a);
          fold(&b);
        }
        gr->score[g->index] = strstr(pd_buf_str(&a), pd_buf_str(&b)) != NULL;
      }
      break;
    case K_SCORE:
    case K_LABEL: {
      char *body = judge_body(g, in, &why);
      if (body) {
        gr->judge_node[gr->njudge] = g->index;
        gr->body[gr->njudge++] = body;
      }
      break;
    }
    default:
      break;
    }
    pd_buf_free(&a);
    pd_buf_free(&b);
    if (why)
      node_fail(gr, g, why);
    free(why);
  }
  return gr;
}

size_t pd_grade_njudge(const pd_grade_t *gr) {
  return gr->njudge;
}

const char *pd_grade_judge_body(const pd_grade_t *gr, size_t i) {
  return i < gr->njudge ? gr->body[i] : NULL;
}

void pd_grade_judge_reply(pd_grade_t *gr, size_t i, const char *content, const char *err) {
  if (i >= gr->njudge)
    return;
  const pd_grader_t *g = gr->node[gr->judge_node[i]];
  if (!content) {
    pd_buf_t b = {0};
    pd_buf_appendf(&b, "the judge call failed: %s", err ? err : "no reply");
    node_fail(gr, g, pd_buf_str(&b));
    pd_buf_free(&b);
    return;
  }
  free(gr->reply[i]);
  size_t n = strlen(content);
  gr->reply[i] = strndup(content, n > MAX_REPLY ? MAX_REPLY : n);
}

static int is_word_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         (unsigned char)c >= 0x80;
}

/* The label a free-text reply names: the one found earliest as a whole word (ASCII
 * case-insensitive; the longer one at the same place), or -1. */
static int find_label(const pd_grader_t *g, const char *s) {
  for (size_t i = 0; s[i]; i++) {
    if (i > 0 && is_word_char(s[i - 1]))
      continue;
    int best = -1;
    size_t best_len = 0;
    for (size_t k = 0; k < g->nlabels; k++) {
      const char *l = g->labels[k];
      size_t n = strlen(l), j = 0;
      while (j < n && s[i + j]) {
        char a = s[i + j], b = l[j];
        if (a >= 'A' && a <= 'Z')
          a = (char)(a - 'A' + 'a');
        if (b >= 'A' && b <= 'Z')
          b = (char)(b - 'A' + 'a');
        if (a != b)
          break;
        j++;
      }
      if (j == n && !is_word_char(s[i + n]) && n > best_len) {
        best = (int)k;
        best_len = n;
      }
    }
    if (best >= 0)
      return best;
  }
  return -1;
}

/* The reply as a JSON object: the whole text, else the span from its first '{' to its last
 * '}' (a judge that wraps its JSON in a code fence or a sentence still answered in JSON). */
static json_t *reply_json(const char *reply) {
  json_t *j = json_loads(reply, 0, NULL);
  if (json_is_object(j))
    return j;
  json_decref(j);
  const char *b = strchr(reply, '{'), *e = strrchr(reply, '}');
  if (!b || !e || e < b)
    return NULL;
  j = json_loadb(b, (size_t)(e - b + 1), 0, NULL);
  if (json_is_object(j))
    return j;
  json_decref(j);
  return NULL;
}

/* A judge node's score from its reply. */
static void judge_score(pd_grade_t *gr, const pd_grader_t *g, const char *reply) {
  double *out = &gr->score[g->index];
  json_t *j = reply_json(reply);
  if (g->kind->id == K_SCORE) {
    json_t *r = json_object_get(j, "result");
    double v = NAN;
    if (json_is_number(r)) {
      v = json_number_value(r);
    } else {
      size_t b, n;
      char buf[64];
      if (pd_answer_last_number(reply, strlen(reply), 1, &b, &n) && n < sizeof buf) {
        /* Separators are not part of a number strtod reads. */
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
          if (reply[b + i] != ',')
            buf[k++] = reply[b + i];
        buf[k] = 0;
        v = strtod(buf, NULL);
      }
    }
    if (!isfinite(v)) {
      node_fail(gr, g, "the judge's reply has no number (want {\"result\": <number>})");
    } else {
      v = v < g->lo ? g->lo : v > g->hi ? g->hi : v;
      *out = (v - g->lo) / (g->hi - g->lo);
    }
  } else {
    const char *label = json_string_value(json_object_get(j, "label"));
    int k = -1;
    for (size_t i = 0; label && i < g->nlabels && k < 0; i++)
      if (!strcmp(label, g->labels[i]))
        k = (int)i;
    if (k < 0)
      k = find_label(g, reply);
    if (k < 0) {
      node_fail(gr, g, "the judge's reply names none of the labels");
    } else {
      *out = 0;
      for (size_t i = 0; i < g->npassing; i++)
        if (!strcmp(g->passing[i], g->labels[k]))
          *out = 1;
    }
  }
  json_decref(j);
}

double pd_grade_finish(pd_grade_t *gr, json_t **scores, char **error) {
  for (size_t i = 0; i < gr->njudge; i++) {
    const pd_grader_t *g = gr->node[gr->judge_node[i]];
    if (gr->error[g->index])
      continue;
    if (!gr->reply[i])
      node_fail(gr, g, "the judge call was not answered");
    else
      judge_score(gr, g, gr->reply[i]);
  }
  /* Children come after their parent in pre-order: a reverse walk finishes them first. */
  for (size_t i = gr->nnodes; i-- > 0;) {
    const pd_grader_t *g = gr->node[i];
    if (g->kind->id != K_MULTI || gr->error[i])
      continue;
    double v[MAX_SUBS];
    for (size_t k = 0; k < g->nsubs; k++) {
      size_t c = g->subs[k]->index;
      if (gr->error[c] && !gr->error[i])
        gr->error[i] = strdup(gr->error[c]);
      v[k] = gr->score[c];
    }
    double r;
    if (gr->error[i])
      continue;
    if (pd_expr_eval(g->expr, v, &r))
      node_fail(gr, g, "calculate_output is not finite (a division by zero?)");
    else
      gr->score[i] = r < 0 ? 0 : r > 1 ? 1 : r;
  }
  size_t root = gr->root->index;
  double s = gr->error[root] ? 0 : gr->score[root];
  if (scores) {
    json_t *o = json_object();
    for (size_t i = 0; i < gr->nnodes; i++) {
      const pd_grader_t *g = gr->node[i];
      for (size_t k = 0; k < g->nsubs; k++) {
        size_t c = g->subs[k]->index;
        json_object_set_new(o, g->keys[k], json_real(gr->error[c] ? 0 : gr->score[c]));
      }
    }
    json_object_set_new(o, gr->root->name, json_real(s));
    *scores = o;
  }
  if (error)
    *error = gr->error[root] ? strdup(gr->error[root]) : NULL;
  return s;
}

void pd_grade_free(pd_grade_t *gr) {
  if (!gr)
    return;
  for (size_t i = 0; gr->error && i < gr->nnodes; i++)
    free(gr->error[i]);
  for (size_t i = 0; gr->body && i < gr->njudge; i++) {
    free(gr->body[i]);
    free(gr->reply[i]);
  }
  free(gr->node);
  free(gr->score);
  free(gr->error);
  free(gr->judge_node);
  free(gr->body);
  free(gr->reply);
  free(gr);
}
