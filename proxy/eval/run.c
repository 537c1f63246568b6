/* The requests of `ponder eval`: see run.h. Owns the run's upstream client, its jobs (one per
 * request in flight or queued) and the grades of the samples awaiting judge replies; fills the
 * caller's samples. Everything runs on the caller's loop. */
#include "eval/run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/json.h"
#include "upstream/upstream.h"

/* The largest reply body read (a forced reply holds every round's thinking; ponder's own
 * limit for one chain is max_reply_bytes, 16 MiB by default). */
#define MAX_REPLY (64L << 20)
/* The most of an error message kept in a sample (an upstream's text is semi-trusted). */
#define MAX_ERR 300

typedef struct grading {
  pd_grade_t *gr;
  size_t pending; /* judge replies still to come */
} grading_t;

typedef struct job {
  pd_run_t *run;
  struct job *next; /* the judge queue */
  size_t idx;       /* the sample */
  int judge;        /* 1: judge call judge_i of sample idx */
  size_t judge_i;
  pd_xfer_t *x;
  pd_buf_t body;
  int status;
  int rounds; /* x-ponder-rounds, -1 when absent */
  uint64_t t0;
} job_t;

struct pd_run {
  uv_loop_t *loop;
  const pd_run_opts_t *o;
  pd_eval_sample_t *samples;
  size_t total, next, done, errors, inflight, items_done;
  pd_upstream_t *up;
  char **item_body; /* per item: the request body */
  size_t *item_len;
  const char ***hdrs;      /* per variant: the header lines (NULL-terminated) */
  const char **judge_hdrs; /* the judge calls' header lines */
  char **owned;            /* the header strings built here */
  size_t nowned;
  grading_t *grading; /* per sample */
  size_t *item_left;  /* per item: samples not finished */
  double *score_sum;  /* per variant */
  size_t *count;
  job_t *jq_head, *jq_tail; /* judge calls waiting for a slot */
  void (*on_done)(void *ud);
  void *ud;
  int closing;
  uv_timer_t later; /* the client is closed from here, never inside one of its callbacks */
};

void pd_run_sample_clear(pd_eval_sample_t *s) {
  free(s->reasoning);
  free(s->output_text);
  free(s->final_answer);
  free(s->error);
  json_decref(s->scores);
  size_t item = s->item, variant = s->variant;
  int sample = s->sample;
  memset(s, 0, sizeof *s);
  s->item = item;
  s->variant = variant;
  s->sample = sample;
}

static long int_member(const json_t *o, const char *k) {
  json_t *v = json_object_get(o, k);
  return json_is_integer(v) && json_integer_value(v) >= 0 ? (long)json_integer_value(v) : 0;
}

int pd_run_read_reply(const char *body, size_t len, pd_eval_sample_t *s, const char **why) {
  json_t *root = pd_json_load(body, len, NULL);
  if (!root) {
    *why = "the reply is not JSON";
    return -1;
  }
  json_t *ch = json_array_get(json_object_get(root, "choices"), 0);
  json_t *msg = json_object_get(ch, "message");
  if (!json_is_object(msg)) {
    json_decref(root);
    *why = "the reply has no choices[0].message";
    return -1;
  }
  json_t *content = json_object_get(msg, "content");
  json_t *rc = json_object_get(msg, "reasoning_content");
  if (!json_is_string(rc))
    rc = json_object_get(msg, "reasoning");
  const char *text = json_is_string(content) ? json_string_value(content) : "";
  size_t tlen = json_is_string(content) ? json_string_length(content) : 0;
  if (json_is_string(rc)) {
    s->reasoning = strndup(json_string_value(rc), json_string_length(rc));
  } else if (tlen >= 7 && memcmp(text, "<think>", 7) == 0) {
    /* reasoning: inline: "<think>\n" + thinking + "\n</think>\n\n" + answer */
    const char *close = strstr(text, "</think>");
    if (close) {
      const char *a = text + 7, *b = close;
      if (a < b && *a == '\n')
        a++;
      if (b > a && b[-1] == '\n')
        b--;
      s->reasoning = strndup(a, (size_t)(b - a));
      const char *rest = close + 8;
      while (*rest == '\n')
        rest++;
      tlen -= (size_t)(rest - text);
      text = rest;
    }
  }
  s->output_text = strndup(text, tlen);
  if (!s->reasoning)
    s->reasoning = strdup("");
  json_t *u = json_object_get(root, "usage");
  s->prompt_tokens = int_member(u, "prompt_tokens");
  s->completion_tokens = int_member(u, "completion_tokens");
  s->reasoning_tokens =
      int_member(json_object_get(u, "completion_tokens_details"), "reasoning_tokens");
  json_decref(root);
  if (!s->output_text || !s->reasoning) {
    *why = "out of memory";
    return -1;
  }
  return 0;
}

/* "HTTP 500: message" from an error reply (its error.message, bounded), else "HTTP 500". */
static char *http_error(int status, const pd_buf_t *body) {
  pd_buf_t b;
  pd_buf_init(&b);
  json_t *root = body->len ? pd_json_load(pd_buf_data(body), body->len, NULL) : NULL;
  json_t *m = json_object_get(json_object_get(root, "error"), "message");
  if (json_is_string(m))
    pd_buf_appendf(&b, "HTTP %d: %.*s", status, MAX_ERR, json_string_value(m));
  else
    pd_buf_appendf(&b, "HTTP %d", status);
  json_decref(root);
  return pd_buf_steal(&b, NULL);
}

static void check_done(pd_run_t *r);
static void pump(pd_run_t *r);

static void sample_done(pd_run_t *r, size_t idx) {
  pd_eval_sample_t *s = &r->samples[idx];
  if (!s->output_text)
    s->output_text = strdup("");
  if (!s->reasoning)
    s->reasoning = strdup("");
  if (!s->final_answer)
    s->final_answer = strdup("");
  r->done++;
  if (s->error)
    r->errors++;
  r->score_sum[s->variant] += s->score;
  r->count[s->variant]++;
  if (--r->item_left[s->item] == 0)
    r->items_done++;
}

static void grade_finish(pd_run_t *r, size_t idx) {
  pd_eval_sample_t *s = &r->samples[idx];
  grading_t *g = &r->grading[idx];
  char *err = NULL;
  json_t *scores = NULL;
  double score = pd_grade_finish(g->gr, &scores, &err);
  pd_grade_free(g->gr);
  g->gr = NULL;
  s->score = err ? 0 : score;
  s->scores = scores;
  s->error = err;
  sample_done(r, idx);
}

static int start_job(pd_run_t *r, job_t *j);

/* A sample's reply was read: its grade starts, with its judge calls queued. */
static void grade_begin(pd_run_t *r, size_t idx) {
  pd_eval_sample_t *s = &r->samples[idx];
  s->final_answer = pd_eval_final_answer(s->output_text);
  pd_grade_input_t in = {.item = &r->o->items[s->item],
                         .output_text = s->output_text,
                         .reasoning_text = s->reasoning,
                         .final_answer = s->final_answer ? s->final_answer : ""};
  grading_t *g = &r->grading[idx];
  g->gr = pd_grade_begin(r->o->grader, &in);
  if (!g->gr) {
    s->error = strdup("grading failed: out of memory");
    sample_done(r, idx);
    return;
  }
  size_t n = pd_grade_njudge(g->gr);
  if (n == 0) {
    grade_finish(r, idx);
    return;
  }
  g->pending = n;
  for (size_t i = 0; i < n; i++) {
    job_t *j = calloc(1, sizeof *j);
    if (!j) {
      pd_grade_judge_reply(g->gr, i, NULL, "out of memory");
      if (--g->pending == 0)
        grade_finish(r, idx);
      continue;
    }
    j->run = r;
    j->idx = idx;
    j->judge = 1;
    j->judge_i = i;
    if (r->jq_tail)
      r->jq_tail->next = j;
    else
      r->jq_head = j;
    r->jq_tail = j;
  }
}

static void judge_outcome(pd_run_t *r, size_t idx, size_t i, const char *content, const char *err) {
  grading_t *g = &r->grading[idx];
  pd_grade_judge_reply(g->gr, i, content, err);
  if (--g->pending == 0)
    grade_finish(r, idx);
}

/* The end of a request: its outcome goes to its sample (or its sample's grade). */
static void job_end(job_t *j, int result, const char *errmsg) {
  pd_run_t *r = j->run;
  pd_eval_sample_t *s = &r->samples[j->idx];
  char *err = NULL;
  if (result != PD_XFER_OK) {
    pd_buf_t b;
    pd_buf_init(&b);
    pd_buf_appendf(&b, "%.*s", MAX_ERR, errmsg && *errmsg ? errmsg : "request failed");
    err = pd_buf_steal(&b, NULL);
  } else if (j->status != 200) {
    err = http_error(j->status, &j->body);
  }
  if (j->judge) {
    json_t *root = NULL;
    const char *content = NULL;
    if (!err) {
      root = pd_json_load(pd_buf_data(&j->body), j->body.len, NULL);
      json_t *c = json_object_get(
          json_object_get(json_array_get(json_object_get(root, "choices"), 0), "message"),
          "content");
      if (json_is_string(c))
        content = json_string_value(c);
    }
    char *why = NULL;
    if (!content) {
      pd_buf_t b;
      pd_buf_init(&b);
      pd_buf_appendf(&b, "judge call failed: %s", err ? err : "no choices[0].message.content");
      why = pd_buf_steal(&b, NULL);
    }
    judge_outcome(r, j->idx, j->judge_i, content, why);
    free(why);
    json_decref(root);
    free(err);
    return;
  }
  s->latency_ms = (double)(uv_hrtime() - j->t0) / 1e6;
  s->rounds = j->rounds > 0 ? j->rounds : 0;
  s->upstream_calls = s->rounds + 1;
  const char *why = NULL;
  if (!err && pd_run_read_reply(pd_buf_data(&j->body), j->body.len, s, &why) < 0)
    err = strdup(why);
  if (err) {
    free(s->output_text);
    free(s->reasoning);
    s->output_text = s->reasoning = NULL;
    s->score = 0;
    s->error = err;
    sample_done(r, j->idx);
    return;
  }
  grade_begin(r, j->idx);
}

static void on_head(void *ud, const pd_xfer_head_t *h) {
  job_t *j = ud;
  j->status = h->status;
  for (size_t i = 0; i < h->nheaders; i++)
    if (strcmp(h->headers[2 * i], "x-ponder-rounds") == 0)
      j->rounds = atoi(h->headers[2 * i + 1]);
}

static int on_data(void *ud, const char *p, size_t n) {
  job_t *j = ud;
  if (j->body.len + n > (size_t)MAX_REPLY || pd_buf_append(&j->body, p, n) < 0)
    return -1;
  return 0;
}

static void job_free(job_t *j) {
  pd_buf_free(&j->body);
  free(j);
}

static void on_done(void *ud, int result, const char *errmsg) {
  job_t *j = ud;
  pd_run_t *r = j->run;
  r->inflight--;
  if (result == PD_XFER_OK && j->body.len >= (size_t)MAX_REPLY)
    result = PD_XFER_EOTHER, errmsg = "reply over 64 MiB";
  job_end(j, result, errmsg);
  job_free(j);
  pump(r);
  check_done(r);
}

static const pd_xfer_cbs_t cbs = {on_head, on_data, on_done};

/* Starts j's request; 0, or -1 when it could not start (then j's outcome is recorded and j is
 * freed). */
static int start_job(pd_run_t *r, job_t *j) {
  const pd_run_opts_t *o = r->o;
  pd_eval_sample_t *s = &r->samples[j->idx];
  pd_xfer_opts_t xo;
  memset(&xo, 0, sizeof xo);
  xo.method = "POST";
  xo.connect_timeout_ms = 10000;
  xo.timeout_ms = o->timeout_ms;
  xo.retries = o->retries;
  j->rounds = -1;
  if (j->judge) {
    const char *jb = pd_grade_judge_body(r->grading[j->idx].gr, j->judge_i);
    pd_buf_t b;
    pd_buf_init(&b);
    if (o->judge_model) {
      pd_buf_t m;
      pd_buf_init(&m);
      pd_buf_append_json_str(&m, o->judge_model, strlen(o->judge_model));
      if (pd_json_replace_members(&b, jb, strlen(jb), "model", 5, pd_buf_data(&m), m.len) < 0)
        pd_buf_appends(&b, jb);
      pd_buf_free(&m);
    } else {
      pd_buf_appends(&b, jb);
    }
    xo.body = pd_buf_steal(&b, &xo.body_len);
    xo.url = o->judge_url;
    xo.headers = r->judge_hdrs;
  } else {
    size_t n = r->item_len[s->item];
    xo.body = malloc(n + 1);
    if (xo.body)
      memcpy(xo.body, r->item_body[s->item], n + 1);
    xo.body_len = n;
    xo.url = o->url;
    xo.headers = r->hdrs[s->variant];
  }
  j->t0 = uv_hrtime();
  j->x = xo.body ? pd_xfer_start(r->up, &xo, &cbs, j) : NULL;
  if (!j->x) { /* the body was taken, even by a start that failed */
    job_end(j, PD_XFER_EOTHER, "could not start the request");
    job_free(j);
    return -1;
  }
  r->inflight++;
  return 0;
}

static void pump(pd_run_t *r) {
  while (r->inflight < (size_t)r->o->concurrency && !r->closing) {
    job_t *j = r->jq_head;
    if (j) {
      r->jq_head = j->next;
      if (!r->jq_head)
        r->jq_tail = NULL;
      j->next = NULL;
    } else if (r->next < r->total) {
      j = calloc(1, sizeof *j);
      if (!j)
        break;
      j->run = r;
      j->idx = r->next++;
    } else {
      break;
    }
    start_job(r, j);
  }
}

static void on_later_closed(uv_handle_t *h) {
  pd_run_t *r = h->data;
  if (r->on_done)
    r->on_done(r->ud);
}

static void on_closed(void *ud) {
  pd_run_t *r = ud;
  uv_close((uv_handle_t *)&r->later, on_later_closed);
}

static void on_later(uv_timer_t *t) {
  pd_run_t *r = t->data;
  pd_upstream_close(r->up, on_closed, r);
}

static void check_done(pd_run_t *r) {
  if (r->done == r->total && r->inflight == 0 && !r->closing) {
    r->closing = 1;
    uv_timer_start(&r->later, on_later, 0, 0);
  }
}

static char *own(pd_run_t *r, const char *fmt, const char *v) {
  pd_buf_t b;
  pd_buf_init(&b);
  pd_buf_appendf(&b, fmt, v);
  char *s = pd_buf_steal(&b, NULL);
  r->owned[r->nowned++] = s;
  return s;
}

/* The request body of an item: {"model", "messages"}: its conversation, or its question as
 * one user message. */
static char *item_body(const char *model, const pd_eval_item_t *it, size_t *len) {
  pd_buf_t b;
  pd_buf_init(&b);
  pd_buf_appends(&b, "{\"model\":");
  pd_buf_append_json_str(&b, model, strlen(model));
  pd_buf_appends(&b, ",\"messages\":");
  if (it->messages) {
    pd_json_write(&b, it->messages);
  } else {
    pd_buf_appends(&b, "[{\"role\":\"user\",\"content\":");
    pd_buf_append_json_str(&b, it->question, strlen(it->question));
    pd_buf_appends(&b, "}]");
  }
  pd_buf_appends(&b, "}");
  return pd_buf_steal(&b, len);
}

pd_run_t *pd_run_new(uv_loop_t *loop, const pd_run_opts_t *o, pd_eval_sample_t *samples) {
  pd_run_t *r = calloc(1, sizeof *r);
  if (!r)
    return NULL;
  r->loop = loop;
  r->o = o;
  r->samples = samples;
  r->total = o->nitems * o->nvariants * (size_t)o->per_item;
  size_t nh = 0;
  while (o->headers && o->headers[nh])
    nh++;
  r->item_body = calloc(o->nitems, sizeof *r->item_body);
  r->item_len = calloc(o->nitems, sizeof *r->item_len);
  r->item_left = calloc(o->nitems, sizeof *r->item_left);
  r->hdrs = calloc(o->nvariants, sizeof *r->hdrs);
  r->owned = calloc(o->nvariants + 1, sizeof *r->owned);
  r->grading = calloc(r->total ? r->total : 1, sizeof *r->grading);
  r->score_sum = calloc(o->nvariants, sizeof *r->score_sum);
  r->count = calloc(o->nvariants, sizeof *r->count);
  r->judge_hdrs = calloc(nh + 3, sizeof *r->judge_hdrs);
  if (!r->item_body || !r->item_len || !r->item_left || !r->hdrs || !r->owned || !r->grading ||
      !r->score_sum || !r->count || !r->judge_hdrs)
    goto fail;
  for (size_t i = 0; i < o->nitems; i++) {
    if (!(r->item_body[i] = item_body(o->model, &o->items[i], &r->item_len[i])))
      goto fail;
    r->item_left[i] = o->nvariants * (size_t)o->per_item;
  }
  for (size_t v = 0; v < o->nvariants; v++) {
    const char **h = calloc(nh + 4, sizeof *h);
    if (!(r->hdrs[v] = h))
      goto fail;
    size_t k = 0;
    h[k++] = "Content-Type: application/json";
    for (size_t i = 0; i < nh; i++)
      h[k++] = o->headers[i];
    if (o->set_variant && !(h[k++] = own(r, "X-Ponder-Variant: %s", o->variants[v])))
      goto fail;
  }
  size_t k = 0;
  r->judge_hdrs[k++] = "Content-Type: application/json";
  for (size_t i = 0; i < nh; i++)
    r->judge_hdrs[k++] = o->headers[i];
  if (o->judge_rounds0)
    r->judge_hdrs[k++] = "X-Ponder-Rounds: 0";
  for (size_t i = 0; i < r->total; i++) {
    pd_eval_sample_t *s = &samples[i];
    memset(s, 0, sizeof *s);
    s->sample = (int)(i % (size_t)o->per_item);
    s->variant = (i / (size_t)o->per_item) % o->nvariants;
    s->item = i / ((size_t)o->per_item * o->nvariants);
  }
  if (!(r->up = pd_upstream_new(loop, o->concurrency)))
    goto fail;
  uv_timer_init(loop, &r->later);
  r->later.data = r;
  return r;
fail:
  pd_run_free(r);
  return NULL;
}

int pd_run_start(pd_run_t *r, void (*on_done_cb)(void *ud), void *ud) {
  r->on_done = on_done_cb;
  r->ud = ud;
  pump(r);
  check_done(r);
  return 0;
}

void pd_run_progress(const pd_run_t *r, pd_run_progress_t *out) {
  out->done = r->done;
  out->total = r->total;
  out->errors = r->errors;
  out->items_done = r->items_done;
  out->score_sum = r->score_sum;
  out->count = r->count;
}

void pd_run_free(pd_run_t *r) {
  if (!r)
    return;
  if (r->up)
    pd_upstream_free(r->up);
  for (size_t i = 0; r->item_body && i < r->o->nitems; i++)
    free(r->item_body[i]);
  for (size_t v = 0; r->hdrs && v < r->o->nvariants; v++)
    free(r->hdrs[v]);
  for (size_t i = 0; i < r->nowned; i++)
    free(r->owned[i]);
  for (size_t i = 0; r->grading && i < r->total; i++)
    if (r->grading[i].gr)
      pd_grade_free(r->grading[i].gr);
  free(r->item_body);
  free(r->item_len);
  free(r->item_left);
  free(r->hdrs);
  free(r->owned);
  free(r->grading);
  free(r->score_sum);
  free(r->count);
  free(r->judge_hdrs);
  free(r);
}
