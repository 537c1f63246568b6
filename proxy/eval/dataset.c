/* The dataset of `ponder eval`: see dataset.h. Owns the items it returns; the field rules are
 * SPEC section 11's (question: question, problem, Problem, prompt, input; reference: answer,
 * Answer, reference, label; `messages` sent as the conversation; id: `id`, else the line). */
#include "eval/dataset.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/array.h"
#include "base/buf.h"
#include "base/json.h"
#include "eval/samples.h"

static const char *const question_fields[] = {"question", "problem", "Problem", "prompt", "input"};
static const char *const reference_fields[] = {"answer", "Answer", "reference", "label"};

char *pd_dataset_scalar_text(const json_t *v) {
  char tmp[64];
  switch (json_typeof(v)) {
  case JSON_STRING:
    return strndup(json_string_value(v), json_string_length(v));
  case JSON_INTEGER:
    snprintf(tmp, sizeof tmp, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    return strdup(tmp);
  case JSON_REAL: {
    double d = json_real_value(v);
    /* The shortest of 15..17 digits that reads back the same: 0.1 stays "0.1". */
    for (int prec = 15; prec <= 17; prec++) {
      snprintf(tmp, sizeof tmp, "%.*g", prec, d);
      if (strtod(tmp, NULL) == d)
        break;
    }
    return strdup(tmp);
  }
  case JSON_TRUE:
    return strdup("true");
  case JSON_FALSE:
    return strdup("false");
  default:
    return NULL;
  }
}

static void item_clear(pd_eval_item_t *it) {
  free(it->id);
  free(it->question);
  free(it->reference);
  json_decref(it->obj);
  memset(it, 0, sizeof *it);
}

void pd_dataset_free(pd_eval_item_t *items, size_t n) {
  if (!items)
    return;
  for (size_t i = 0; i < n; i++)
    item_clear(&items[i]);
  free(items);
}

static char *fmt_err(const char *name, long line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static char *fmt_err(const char *name, long line, const char *fmt, ...) {
  pd_buf_t b;
  pd_buf_init(&b);
  pd_buf_appendf(&b, "%s:%ld: ", name, line);
  va_list ap;
  va_start(ap, fmt);
  pd_buf_appendv(&b, fmt, ap);
  va_end(ap);
  return pd_buf_steal(&b, NULL);
}

/* A field name as it may appear in a message: dataset bytes are untrusted, so a name from the
 * command line is printed as it is but never more than 64 bytes of it. */
#define FIELD_FMT "'%.64s'"

static int check_messages(const json_t *m, const char **why) {
  if (!json_is_array(m) || json_array_size(m) == 0) {
    *why = "'messages' must be a non-empty array";
    return -1;
  }
  if (json_array_size(m) > PD_DATASET_MAX_MESSAGES) {
    *why = "'messages' has more than 4096 messages";
    return -1;
  }
  size_t i;
  json_t *msg;
  json_array_foreach(m, i, msg) {
    json_t *role = json_object_get(msg, "role");
    json_t *content = json_object_get(msg, "content");
    if (!json_is_object(msg) || !json_is_string(role) || json_string_length(role) == 0) {
      *why = "every message in 'messages' must be an object with a string 'role'";
      return -1;
    }
    if (content && !json_is_string(content) && !json_is_array(content) && !json_is_null(content)) {
      *why = "a message's 'content' must be a string, an array of parts or null";
      return -1;
    }
  }
  return 0;
}

/* The value of `field` when one is given (the command line's choice), else of the first field
 * of list present and not null; NULL when there is none. *fname gets the field's name. */
static json_t *pick_field(json_t *obj, const char *field, const char *const *list, size_t n,
                          const char **fname) {
  if (field)
    list = &field, n = 1;
  for (size_t i = 0; i < n; i++) {
    json_t *v = json_object_get(obj, list[i]);
    *fname = list[i];
    if (v && !json_is_null(v))
      return v;
  }
  return NULL;
}

/* Fills it from the parsed line; returns NULL or the message (malloc'd). */
static char *read_item(const char *name, long line, json_t *obj, const pd_dataset_opts_t *o,
                       pd_eval_item_t *it) {
  it->line = line;
  it->obj = obj;
  if (!json_is_object(obj))
    return fmt_err(name, line, "an item must be a JSON object");
  json_t *m = json_object_get(obj, "messages");
  if (m && !json_is_null(m)) {
    const char *why;
    if (check_messages(m, &why) < 0)
      return fmt_err(name, line, "%s", why);
    it->messages = m;
  } else {
    const char *qname;
    json_t *q = pick_field(obj, o ? o->input_field : NULL, question_fields,
                           sizeof question_fields / sizeof *question_fields, &qname);
    if (!q && o && o->input_field)
      return fmt_err(name, line, "no field " FIELD_FMT " (--input-field)", o->input_field);
    if (!q)
      return fmt_err(name, line,
                     "no question: none of the fields question, problem, Problem, prompt, "
                     "input, and no messages");
    if (!json_is_string(q) && !json_is_number(q))
      return fmt_err(name, line, "field " FIELD_FMT " must be a string", qname);
    if (!(it->question = pd_dataset_scalar_text(q)))
      return fmt_err(name, line, "out of memory");
    if (!it->question[0])
      return fmt_err(name, line, "field " FIELD_FMT " is empty", qname);
  }
  const char *rname;
  json_t *r = pick_field(obj, o ? o->reference_field : NULL, reference_fields,
                         sizeof reference_fields / sizeof *reference_fields, &rname);
  if (!r && o && o->reference_field)
    return fmt_err(name, line, "no field " FIELD_FMT " (--reference-field)", o->reference_field);
  if (r) {
    if (!json_is_string(r) && !json_is_number(r) && !json_is_boolean(r))
      return fmt_err(name, line, "field " FIELD_FMT " must be a string or a number", rname);
    if (!(it->reference = pd_dataset_scalar_text(r)))
      return fmt_err(name, line, "out of memory");
  }
  json_t *id = json_object_get(obj, "id");
  if (id && !json_is_null(id)) {
    if (!json_is_string(id) && !json_is_integer(id))
      return fmt_err(name, line, "'id' must be a string or an integer");
    if (json_is_string(id) &&
        (json_string_length(id) == 0 || json_string_length(id) > PD_DATASET_MAX_ID ||
         memchr(json_string_value(id), 0, json_string_length(id))))
      return fmt_err(name, line, "'id' must be 1 to %d bytes without NUL", PD_DATASET_MAX_ID);
    it->id = pd_dataset_scalar_text(id);
  } else {
    char tmp[24];
    snprintf(tmp, sizeof tmp, "%ld", line);
    it->id = strdup(tmp);
  }
  if (!it->id)
    return fmt_err(name, line, "out of memory");
  return NULL;
}

static int blank(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
      return 0;
  return 1;
}

int pd_dataset_parse(const char *name, const char *data, size_t len, const pd_dataset_opts_t *o,
                     pd_eval_item_t **items_out, size_t *nitems_out, char **err) {
  *items_out = NULL;
  *nitems_out = 0;
  *err = NULL;
  pd_eval_item_t *items = NULL;
  size_t n = 0, cap = 0;
  pd_samples_index_t ids = {0}; /* id -> item */
  const char *p = data, *end = data + len;
  long line = 0;
  size_t limit = o && o->limit ? o->limit : (size_t)-1;
  while (p < end && n < limit) {
    line++;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
    const char *lp = p;
    p = nl ? nl + 1 : end;
    if (ll > (size_t)PD_DATASET_MAX_LINE) {
      *err = fmt_err(name, line, "line longer than %ld bytes", PD_DATASET_MAX_LINE);
      goto fail;
    }
    if (blank(lp, ll))
      continue;
    if (n == PD_DATASET_MAX_ITEMS) {
      *err = fmt_err(name, line, "more than %d items", PD_DATASET_MAX_ITEMS);
      goto fail;
    }
    json_error_t je;
    json_t *obj = pd_json_load(lp, ll, &je);
    if (!obj) {
      *err = fmt_err(name, line, "invalid JSON: %s (column %d)", je.text, je.column);
      goto fail;
    }
    if (n == cap) {
      pd_eval_item_t *ni = pd_array_grow(items, &cap, sizeof *ni, 64);
      if (!ni) {
        json_decref(obj);
        *err = fmt_err(name, line, "out of memory");
        goto fail;
      }
      items = ni;
    }
    pd_eval_item_t *it = &items[n];
    memset(it, 0, sizeof *it);
    n++;
    if ((*err = read_item(name, line, obj, o, it)))
      goto fail;
    size_t dup = pd_samples_index_get(&ids, it->id);
    if (dup != (size_t)-1) {
      *err =
          fmt_err(name, line, "duplicate id '%.64s' (first on line %ld)", it->id, items[dup].line);
      goto fail;
    }
    if (pd_samples_index_put(&ids, it->id, n - 1) < 0) {
      *err = fmt_err(name, line, "out of memory");
      goto fail;
    }
  }
  pd_samples_index_free(&ids);
  if (n == 0) {
    *err = fmt_err(name, line ? line : 1, "no items in the dataset");
    free(items);
    return -1;
  }
  *items_out = items;
  *nitems_out = n;
  return 0;
fail:
  pd_samples_index_free(&ids);
  pd_dataset_free(items, n);
  return -1;
}

int pd_dataset_load(const char *path, const pd_dataset_opts_t *o, pd_eval_item_t **items,
                    size_t *nitems, char **err) {
  *items = NULL;
  *nitems = 0;
  FILE *f = fopen(path, "rb");
  if (!f) {
    pd_buf_t b;
    pd_buf_init(&b);
    pd_buf_appendf(&b, "%s: %s", path, strerror(errno));
    *err = pd_buf_steal(&b, NULL);
    return -1;
  }
  /* Read whole: a dataset is at most MAX_ITEMS lines of MAX_LINE bytes, and in practice small;
   * the bound that matters is per line, checked by the parser. */
  pd_buf_t b;
  pd_buf_init(&b);
  char chunk[65536];
  size_t got;
  int rc = 0;
  while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
    if (pd_buf_append(&b, chunk, got) < 0) {
      rc = -1;
      break;
    }
  if (ferror(f) || rc < 0) {
    pd_buf_t e;
    pd_buf_init(&e);
    pd_buf_appendf(&e, "%s: %s", path, rc < 0 ? "out of memory" : strerror(errno));
    *err = pd_buf_steal(&e, NULL);
    fclose(f);
    pd_buf_free(&b);
    return -1;
  }
  fclose(f);
  rc = pd_dataset_parse(path, pd_buf_str(&b), b.len, o, items, nitems, err);
  pd_buf_free(&b);
  return rc;
}
