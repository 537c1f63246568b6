/* samples.jsonl, read back (see eval/samples.h): the per-line parser with its type checks, the
 * bounded line reader, and the item index. Owns nothing beyond the records it hands out. */
#include "eval/samples.h"

#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"

/* ---- one line ---- */

/* A text field: a string, or absent/null ("" or NULL per `null_is`). -1 for any other type. */
static int text_field(const json_t *o, const char *key, const char *null_is, const char **out) {
  const json_t *v = json_object_get(o, key);
  if (!v || json_is_null(v)) {
    *out = null_is;
    return 0;
  }
  if (!json_is_string(v))
    return -1;
  *out = json_string_value(v);
  return 0;
}

/* A count: a non-negative integer below 2^53, or absent/null (0). */
static int count_field(const json_t *o, const char *key, long *out) {
  const json_t *v = json_object_get(o, key);
  *out = 0;
  if (!v || json_is_null(v))
    return 0;
  if (!json_is_integer(v) || json_integer_value(v) < 0 ||
      json_integer_value(v) > ((json_int_t)1 << 53))
    return -1;
  *out = (long)json_integer_value(v);
  return 0;
}

static int int_field(const json_t *o, const char *key, int *out) {
  long v;
  if (count_field(o, key, &v) < 0 || v > 1000000000L)
    return -1;
  *out = (int)v;
  return 0;
}

/* The text of a message's content: a string, or its text parts concatenated. */
static char *content_text(const json_t *content) {
  if (json_is_string(content))
    return strdup(json_string_value(content));
  pd_buf_t b = {0};
  size_t i;
  const json_t *part;
  if (pd_buf_reserve(&b, 1) == NULL)
    return NULL;
  json_array_foreach(content, i, part) {
    const char *t = json_string_value(json_object_get(part, "text"));
    if (t && pd_buf_appends(&b, t) < 0) {
      pd_buf_free(&b);
      return NULL;
    }
  }
  return pd_buf_steal(&b, NULL);
}

/* input: the question string, or a chat messages array (objects with a string role). */
static int parse_input(pd_samples_rec_t *r, const char **msg) {
  const json_t *in = json_object_get(r->obj, "input");
  r->input = in;
  if (!in || json_is_null(in)) {
    r->input = NULL;
    r->question = strdup("");
  } else if (json_is_string(in)) {
    r->question = strdup(json_string_value(in));
  } else if (json_is_array(in) && json_array_size(in) > 0) {
    size_t i;
    const json_t *m, *last_user = NULL;
    json_array_foreach(in, i, m) {
      const json_t *c = json_object_get(m, "content");
      if (!json_is_object(m) || !json_is_string(json_object_get(m, "role")) ||
          !(json_is_string(c) || json_is_array(c) || json_is_null(c))) {
        *msg = "\"input\" must be a string or an array of chat messages";
        return -1;
      }
      if (!strcmp(json_string_value(json_object_get(m, "role")), "user"))
        last_user = m;
    }
    r->question = last_user ? content_text(json_object_get(last_user, "content")) : strdup("");
  } else {
    *msg = "\"input\" must be a string or an array of chat messages";
    return -1;
  }
  if (!r->question) {
    *msg = "out of memory";
    return -1;
  }
  return 0;
}

/* A string, or a number printed into *printed (malloc'd); NULL for anything else or when out
 * of memory (*oom set). */
static const char *id_text(const json_t *v, char **printed, int *oom) {
  char buf[32];
  if (json_is_string(v))
    return json_string_value(v);
  if (json_is_integer(v))
    snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
  else if (json_is_real(v))
    snprintf(buf, sizeof buf, "%.17g", json_real_value(v));
  else
    return NULL;
  if (!(*printed = strdup(buf)))
    *oom = 1;
  return *printed;
}

static int parse_fields(pd_samples_rec_t *r, const char **msg) {
  const json_t *o = r->obj, *v;
#define BAD(m)                                                                                     \
  do {                                                                                             \
    *msg = (m);                                                                                    \
    return -1;                                                                                     \
  } while (0)
  if (!json_is_object(o))
    BAD("a sample must be a JSON object");
  const json_t *id = json_object_get(o, "item_id");
  int oom = 0;
  if (json_is_real(id) || !(r->item_id = id_text(id, &r->printed_[0], &oom)))
    BAD(oom ? "out of memory" : "\"item_id\" must be a string or an integer");
  if (!json_is_string(json_object_get(o, "variant")) ||
      !*(r->variant = json_string_value(json_object_get(o, "variant"))))
    BAD("\"variant\" must be a non-empty string");
  if (int_field(o, "sample", &r->sample) < 0)
    BAD("\"sample\" must be a non-negative integer");
  v = json_object_get(o, "reference");
  if (v && !json_is_null(v) && !(r->reference = id_text(v, &r->printed_[1], &oom)))
    BAD(oom ? "out of memory" : "\"reference\" must be a string, a number or null");
  if (text_field(o, "reasoning", "", &r->reasoning) < 0)
    BAD("\"reasoning\" must be a string or null");
  if (text_field(o, "output_text", "", &r->output_text) < 0)
    BAD("\"output_text\" must be a string or null");
  if (text_field(o, "final_answer", "", &r->final_answer) < 0)
    BAD("\"final_answer\" must be a string or null");
  if (text_field(o, "error", NULL, &r->error) < 0)
    BAD("\"error\" must be a string or null");
  v = json_object_get(o, "score");
  if (json_is_number(v) && isfinite(json_number_value(v)))
    r->score = json_number_value(v);
  else if (r->error && (!v || json_is_null(v)))
    r->score = 0;
  else
    BAD("\"score\" must be a number (null only with an error)");
  v = json_object_get(o, "scores");
  if (v && !json_is_null(v) && !json_is_object(v))
    BAD("\"scores\" must be an object or null");
  v = json_object_get(o, "usage");
  if (v && !json_is_null(v)) {
    const json_t *d = json_object_get(v, "completion_tokens_details");
    long rt = 0;
    if (!json_is_object(v) || count_field(v, "prompt_tokens", &r->prompt_tokens) < 0 ||
        count_field(v, "completion_tokens", &r->completion_tokens) < 0 ||
        count_field(v, "reasoning_tokens", &r->reasoning_tokens) < 0 ||
        (d && !json_is_null(d) &&
         (!json_is_object(d) || count_field(d, "reasoning_tokens", &rt) < 0)))
      BAD("\"usage\" must be an object of token counts");
    /* Both shapes are read: the flat one and chat completions' completion_tokens_details. */
    if (!json_object_get(v, "reasoning_tokens") ||
        json_is_null(json_object_get(v, "reasoning_tokens")))
      r->reasoning_tokens = rt;
  }
  if (int_field(o, "rounds", &r->rounds) < 0)
    BAD("\"rounds\" must be a non-negative integer");
  if (int_field(o, "upstream_calls", &r->upstream_calls) < 0)
    BAD("\"upstream_calls\" must be a non-negative integer");
  v = json_object_get(o, "latency_ms");
  if (v && !json_is_null(v)) {
    if (!json_is_number(v) || !(json_number_value(v) >= 0) || !isfinite(json_number_value(v)))
      BAD("\"latency_ms\" must be a non-negative number");
    r->latency_ms = json_number_value(v);
  }
#undef BAD
  return parse_input(r, msg);
}

int pd_samples_parse(const char *b, size_t n, pd_samples_rec_t *rec, char *msg) {
  json_error_t e;
  const char *why = NULL;
  memset(rec, 0, sizeof *rec);
  if (n > PD_SAMPLES_MAX_LINE) {
    snprintf(msg, PD_SAMPLES_MSG, "line longer than 64 MiB");
    return -1;
  }
  rec->obj = json_loadb(b, n, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &e);
  if (!rec->obj) {
    snprintf(msg, PD_SAMPLES_MSG, "not valid JSON: %.160s (column %d)", e.text, e.column);
    return -1;
  }
  if (parse_fields(rec, &why) < 0) {
    snprintf(msg, PD_SAMPLES_MSG, "%s", why);
    pd_samples_rec_free(rec);
    return -1;
  }
  return 0;
}

void pd_samples_rec_free(pd_samples_rec_t *rec) {
  json_decref(rec->obj);
  free(rec->question);
  free(rec->printed_[0]);
  free(rec->printed_[1]);
  memset(rec, 0, sizeof *rec);
}

/* ---- the file ---- */

struct pd_samples_file {
  FILE *f;
  int own; /* fclose at the end (not stdin) */
  char *path;
  long line;
  pd_buf_t buf; /* read but not yet consumed */
  int eof;
};

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...) {
  pd_buf_t b = {0};
  va_list ap;
  va_start(ap, f);
  int rc = pd_buf_appendv(&b, f, ap);
  va_end(ap);
  if (rc < 0) {
    pd_buf_free(&b);
    return strdup("out of memory");
  }
  return pd_buf_steal(&b, NULL);
}

pd_samples_file_t *pd_samples_open(const char *path, char **err) {
  pd_samples_file_t *s = calloc(1, sizeof *s);
  if (!s || !(s->path = strdup(strcmp(path, "-") ? path : "stdin"))) {
    free(s);
    *err = strdup("out of memory");
    return NULL;
  }
  if (!strcmp(path, "-")) {
    s->f = stdin;
  } else if (!(s->f = fopen(path, "rb"))) {
    *err = fmt("%s: %s", path, strerror(errno));
    free(s->path);
    free(s);
    return NULL;
  } else {
    s->own = 1;
  }
  return s;
}

/* The next line's bytes in s->buf up to a newline (or the end), at most the bound plus one. */
static int fill_line(pd_samples_file_t *s, size_t *len, int *found) {
  size_t scanned = 0;
  for (;;) {
    const char *d = pd_buf_data(&s->buf);
    const char *nl = s->buf.len > scanned ? memchr(d + scanned, '\n', s->buf.len - scanned) : NULL;
    if (nl) {
      *len = (size_t)(nl - d);
      *found = 1;
      return 0;
    }
    scanned = s->buf.len;
    if (s->eof || scanned > PD_SAMPLES_MAX_LINE) {
      *len = scanned;
      *found = 0;
      return 0;
    }
    char *w = pd_buf_reserve(&s->buf, 1 << 16);
    if (!w)
      return -1;
    size_t got = fread(w, 1, 1 << 16, s->f);
    pd_buf_commit(&s->buf, got);
    if (got == 0) {
      if (ferror(s->f))
        return -2;
      s->eof = 1;
    }
  }
}

static int blank(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
      return 0;
  return 1;
}

int pd_samples_next(pd_samples_file_t *s, pd_samples_rec_t *rec, char **err) {
  for (;;) {
    size_t len;
    int found, rc = fill_line(s, &len, &found);
    if (rc == -1) {
      *err = strdup("out of memory");
      return -1;
    }
    if (rc == -2) {
      *err = fmt("%s:%ld: %s", s->path, s->line + 1, strerror(errno));
      return -1;
    }
    if (!found && len == 0)
      return 0;
    s->line++;
    if (len > PD_SAMPLES_MAX_LINE) {
      *err = fmt("%s:%ld: line longer than 64 MiB", s->path, s->line);
      return -1;
    }
    const char *p = pd_buf_data(&s->buf);
    size_t n = len;
    if (n && p[n - 1] == '\r')
      n--;
    int empty = blank(p, n);
    if (!empty) {
      char msg[PD_SAMPLES_MSG];
      if (pd_samples_parse(p, n, rec, msg) < 0) {
        *err = fmt("%s:%ld: %s", s->path, s->line, msg);
        return -1;
      }
      rec->line = s->line;
    }
    pd_buf_consume(&s->buf, len + (found ? 1 : 0));
    if (!empty)
      return 1;
  }
}

void pd_samples_close(pd_samples_file_t *s) {
  if (!s)
    return;
  if (s->own)
    fclose(s->f);
  pd_buf_free(&s->buf);
  free(s->path);
  free(s);
}

/* ---- the index ---- */

static size_t hash(const char *k) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *k; k++)
    h = (h ^ (unsigned char)*k) * 1099511628211ull;
  return (size_t)h;
}

size_t pd_samples_index_get(const pd_samples_index_t *ix, const char *key) {
  if (!ix->cap)
    return (size_t)-1;
  for (size_t i = hash(key) & (ix->cap - 1);; i = (i + 1) & (ix->cap - 1)) {
    if (!ix->keys[i])
      return (size_t)-1;
    if (!strcmp(ix->keys[i], key))
      return ix->vals[i];
  }
}

static int grow(pd_samples_index_t *ix) {
  size_t cap = ix->cap ? ix->cap * 2 : 64;
  char **keys = calloc(cap, sizeof *keys);
  size_t *vals = calloc(cap, sizeof *vals);
  if (!keys || !vals) {
    free(keys);
    free(vals);
    return -1;
  }
  for (size_t j = 0; j < ix->cap; j++) {
    if (!ix->keys[j])
      continue;
    size_t i = hash(ix->keys[j]) & (cap - 1);
    while (keys[i])
      i = (i + 1) & (cap - 1);
    keys[i] = ix->keys[j];
    vals[i] = ix->vals[j];
  }
  free(ix->keys);
  free(ix->vals);
  ix->keys = keys;
  ix->vals = vals;
  ix->cap = cap;
  return 0;
}

int pd_samples_index_put(pd_samples_index_t *ix, const char *key, size_t val) {
  /* At most half full, so a probe always ends at an empty slot. */
  if ((ix->n + 1) * 2 > ix->cap && grow(ix) < 0)
    return -1;
  size_t i = hash(key) & (ix->cap - 1);
  while (ix->keys[i] && strcmp(ix->keys[i], key))
    i = (i + 1) & (ix->cap - 1);
  if (!ix->keys[i]) {
    if (!(ix->keys[i] = strdup(key)))
      return -1;
    ix->n++;
  }
  ix->vals[i] = val;
  return 0;
}

void pd_samples_index_free(pd_samples_index_t *ix) {
  for (size_t i = 0; i < ix->cap; i++)
    free(ix->keys[i]);
  free(ix->keys);
  free(ix->vals);
  memset(ix, 0, sizeof *ix);
}
