/* The Responses API's answer side (SPEC section 10): the response object built from the
 * engine's results, and the event stream writer fed the engine's outputs (every .added / .delta /
 * .done event with sequence numbers, response.completed / .incomplete / .failed). The request
 * side is responses_req.c. Pure: it owns the buffers it builds. */
#include "api/responses.h"

#include "api/api.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/array.h"
#include "base/utf8.h"
#include "core/openai.h"

/* Appends a string literal (its length known at compile time). */
#define LIT(b, s) pd_buf_append(b, s, sizeof s - 1)

/* ---- the response object and its events ----------------------------------------------------- */

typedef enum { IT_REASONING = 0, IT_MESSAGE, IT_CALL } item_kind_t;

typedef struct item {
  item_kind_t kind;
  char id[40];
  int open;           /* added, not yet done */
  const char *status; /* once done: "completed" or "incomplete" */
  long tc_index;      /* IT_CALL: the upstream's tool call index */
  pd_buf_t text;      /* reasoning text, message text, or call arguments */
  pd_buf_t name;      /* IT_CALL */
  pd_buf_t call_id;   /* IT_CALL */
} item_t;

struct pd_responses {
  /* The id and the model as JSON strings, quotes included: encoded once, since a stream repeats
   * the response object in three events. One allocation: id then model. */
  char *names;
  size_t id_len, model_len;
  long created_at;
  pd_reasoning_t display;
  const pd_responses_req_t *req;
  uint64_t (*rnd)(void *);
  void *rnd_ud;
  long max_held, held;
  long seq;
  int started, ended;
  int think_open, think_closed; /* inline display: the <think> block in the message text */
  int open_idx;                 /* the item whose events are being written, or -1 */
  item_t *items;
  size_t nitems, cap;
  char *finish;
  uint64_t counter; /* ids without a random source */
};

pd_responses_t *pd_responses_new(const pd_responses_opts_t *o) {
  pd_responses_t *w = calloc(1, sizeof *w);
  if (!w)
    return NULL;
  const char *id = o->id ? o->id : "resp_", *model = o->model ? o->model : "";
  pd_buf_t names;
  pd_buf_init(&names);
  int rc = pd_buf_append_json_str(&names, id, strlen(id));
  w->id_len = names.len;
  rc |= pd_buf_append_json_str(&names, model, strlen(model));
  w->model_len = names.len - w->id_len;
  if (rc || !(w->names = pd_buf_steal(&names, NULL))) {
    pd_buf_free(&names);
    pd_responses_free(w);
    return NULL;
  }
  w->created_at = o->created_at;
  w->display = o->display;
  w->req = o->req;
  w->rnd = o->rnd;
  w->rnd_ud = o->rnd_ud;
  w->max_held = o->max_held;
  w->open_idx = -1;
  return w;
}

void pd_responses_free(pd_responses_t *w) {
  if (!w)
    return;
  for (size_t i = 0; i < w->nitems; i++) {
    pd_buf_free(&w->items[i].text);
    pd_buf_free(&w->items[i].name);
    pd_buf_free(&w->items[i].call_id);
  }
  free(w->items);
  free(w->names);
  free(w->finish);
  free(w);
}

long pd_responses_seq(const pd_responses_t *w) {
  return w->seq;
}

/* Counts in ids when no random source was given (tests). */
static uint64_t no_rnd(void *ud) {
  return ++*(uint64_t *)ud;
}

static void new_id(pd_responses_t *w, char *out, const char *prefix) {
  if (w->rnd)
    pd_openai_new_id(out, prefix, w->rnd, w->rnd_ud);
  else
    pd_openai_new_id(out, prefix, no_rnd, &w->counter);
}

/* An item's id as a JSON string: a prefix and pd_openai_new_id's letters and digits, nothing
 * to escape. */
static int put_item_id(pd_buf_t *b, const item_t *it) {
  size_t n = strlen(it->id);
  char *p = pd_buf_reserve(b, n + 2);
  if (!p)
    return -1;
  p[0] = '"';
  memcpy(p + 1, it->id, n);
  p[n + 1] = '"';
  pd_buf_commit(b, n + 2);
  return 0;
}

/* A new item at the end of output; returns its index or -1. */
static int new_item(pd_responses_t *w, item_kind_t kind) {
  if (w->nitems == w->cap) {
    item_t *n = pd_array_grow(w->items, &w->cap, sizeof *n, 4);
    if (!n)
      return -1;
    w->items = n;
  }
  item_t *it = &w->items[w->nitems];
  memset(it, 0, sizeof *it);
  it->kind = kind;
  pd_buf_init(&it->text);
  pd_buf_init(&it->name);
  pd_buf_init(&it->call_id);
  new_id(w, it->id, kind == IT_REASONING ? "rs_" : kind == IT_MESSAGE ? "msg_" : "fc_");
  return (int)w->nitems++;
}

static int str_or_null(pd_buf_t *b, const char *s) {
  return s ? pd_buf_append_json_str(b, s, strlen(s)) : LIT(b, "null");
}

/* A message that may quote what came from outside (an upstream's error, a transport error): each
 * byte that does not start well-formed UTF-8 becomes U+FFFD, so every event is valid JSON text. */
static int safe_text(pd_buf_t *b, const char *s) {
  pd_buf_t t;
  pd_buf_init(&t);
  size_t n = strlen(s), i = 0;
  int rc = 0;
  while (i < n) {
    size_t l = (unsigned char)s[i] < 0x80 ? 1 : pd_utf8_seq((const unsigned char *)s + i, n - i);
    rc |= l ? pd_buf_append(&t, s + i, l) : pd_buf_append(&t, "\xEF\xBF\xBD", 3);
    i += l ? l : 1;
  }
  rc |= pd_buf_append_json_str(b, t.len ? pd_buf_data(&t) : "", t.len);
  pd_buf_free(&t);
  return rc ? -1 : 0;
}

static int text_of(pd_buf_t *b, const pd_buf_t *t) {
  return pd_buf_append_json_str(b, t->len ? pd_buf_data(t) : "", t->len);
}

/* An item as JSON: as added (in progress, no text yet) or as it stands, with its status. */
static int item_json(const pd_responses_t *w, pd_buf_t *b, const item_t *it, int added) {
  const char *status = added ? "in_progress" : it->status ? it->status : "incomplete";
  int rc = LIT(b, "{\"id\":");
  rc |= put_item_id(b, it);
  switch (it->kind) {
  case IT_REASONING:
    rc |= LIT(b, ",\"type\":\"reasoning\",\"summary\":[");
    if (!added && w->req && w->req->summary) {
      rc |= LIT(b, "{\"type\":\"summary_text\",\"text\":");
      rc |= text_of(b, &it->text);
      rc |= LIT(b, "}");
    }
    rc |= LIT(b, "],\"content\":[");
    if (!added) {
      rc |= LIT(b, "{\"type\":\"reasoning_text\",\"text\":");
      rc |= text_of(b, &it->text);
      rc |= LIT(b, "}");
    }
    rc |= LIT(b, "],\"status\":");
    rc |= str_or_null(b, status);
    break;
  case IT_MESSAGE:
    rc |= LIT(b, ",\"type\":\"message\",\"status\":");
    rc |= str_or_null(b, status);
    rc |= LIT(b, ",\"role\":\"assistant\",\"content\":[");
    if (!added) {
      rc |= LIT(b, "{\"type\":\"output_text\",\"text\":");
      rc |= text_of(b, &it->text);
      rc |= LIT(b, ",\"annotations\":[],\"logprobs\":[]}");
    }
    rc |= LIT(b, "]");
    break;
  case IT_CALL:
    rc |= LIT(b, ",\"type\":\"function_call\",\"status\":");
    rc |= str_or_null(b, status);
    rc |= LIT(b, ",\"arguments\":");
    rc |= added ? LIT(b, "\"\"") : text_of(b, &it->text);
    rc |= LIT(b, ",\"call_id\":");
    rc |= text_of(b, &it->call_id);
    rc |= LIT(b, ",\"name\":");
    rc |= text_of(b, &it->name);
    break;
  }
  rc |= LIT(b, "}");
  return rc ? -1 : 0;
}

/* Part 0, 1 or 2 (head, mid, tail) of the request's echo, or fallback (a writer without a
 * request: tests). */
static int put(pd_buf_t *b, const pd_responses_t *w, int part, const char *fallback) {
  if (!w->req)
    return pd_buf_appends(b, fallback);
  const pd_responses_req_t *q = w->req;
  size_t off = part == 0 ? 0 : part == 1 ? q->echo_head : q->echo_head + q->echo_mid;
  size_t len = part == 0 ? q->echo_head : part == 1 ? q->echo_mid : q->echo.len - off;
  return len ? pd_buf_append(b, pd_buf_data(&q->echo) + off, len) : 0;
}

/* The reason a finished answer is incomplete, or NULL when it is complete. */
static const char *incomplete_reason(const char *finish) {
  if (!finish)
    return NULL;
  if (!strcmp(finish, "length"))
    return "max_output_tokens";
  if (!strcmp(finish, "content_filter"))
    return "content_filter";
  return NULL;
}

/* The response object. status "in_progress" writes no output and no usage; error_code/message
 * only for "failed". */
static int response_json(const pd_responses_t *w, pd_buf_t *b, const char *status,
                         const pd_usage_t *u, const char *error_code, const char *error_message) {
  int rc = LIT(b, "{\"id\":");
  rc |= pd_buf_append(b, w->names, w->id_len);
  rc |= LIT(b, ",\"object\":\"response\",\"created_at\":");
  rc |= pd_buf_append_long(b, w->created_at);
  rc |= LIT(b, ",\"status\":\"");
  rc |= pd_buf_appends(b, status);
  rc |= pd_buf_append(b, "\"", 1);
  rc |= LIT(b, ",\"background\":false,\"error\":");
  if (error_message) {
    rc |= LIT(b, "{\"code\":");
    rc |= str_or_null(b, error_code ? error_code : "server_error");
    rc |= LIT(b, ",\"message\":");
    rc |= safe_text(b, error_message);
    rc |= LIT(b, "}");
  } else {
    rc |= LIT(b, "null");
  }
  const char *why = !strcmp(status, "incomplete") ? incomplete_reason(w->finish) : NULL;
  rc |= LIT(b, ",\"incomplete_details\":");
  if (why)
    rc |= pd_buf_appendf(b, "{\"reason\":\"%s\"}", why);
  else
    rc |= LIT(b, "null");
  rc |= put(b, w, 0, ",\"instructions\":null,\"max_output_tokens\":null");
  rc |= LIT(b, ",\"model\":");
  rc |= pd_buf_append(b, w->names + w->id_len, w->model_len);
  rc |= LIT(b, ",\"output\":[");
  int in_progress = !strcmp(status, "in_progress");
  for (size_t i = 0; !in_progress && i < w->nitems; i++) {
    if (i)
      rc |= pd_buf_append(b, ",", 1);
    rc |= item_json(w, b, &w->items[i], 0);
  }
  rc |= LIT(b, "]");
  rc |= put(b, w, 1,
            ",\"parallel_tool_calls\":true,\"previous_response_id\":null,\"reasoning\":{"
            "\"effort\":null,\"summary\":null},\"store\":false,\"temperature\":null,\"text\":{"
            "\"format\":{\"type\":\"text\"}},\"tool_choice\":\"auto\",\"tools\":[],\"top_p\":"
            "null,\"truncation\":\"disabled\"");
  rc |= LIT(b, ",\"usage\":");
  if (u && !in_progress) {
    rc |= LIT(b, "{\"input_tokens\":");
    rc |= pd_buf_append_long(b, u->prompt_tokens);
    rc |= LIT(b, ",\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":");
    rc |= pd_buf_append_long(b, u->completion_tokens);
    rc |= LIT(b, ",\"output_tokens_details\":{\"reasoning_tokens\":");
    rc |= pd_buf_append_long(b, u->reasoning_tokens);
    rc |= LIT(b, "},\"total_tokens\":");
    rc |= pd_buf_append_long(b, u->prompt_tokens + u->completion_tokens);
    rc |= pd_buf_append(b, "}", 1);
  } else {
    rc |= LIT(b, "null");
  }
  rc |= put(b, w, 2, ",\"user\":null,\"metadata\":{}");
  rc |= LIT(b, ",\"completed_at\":");
  if (!strcmp(status, "completed") || !strcmp(status, "incomplete"))
    rc |= pd_buf_append_long(b, (long)time(NULL));
  else
    rc |= LIT(b, "null");
  rc |= LIT(b, "}");
  return rc ? -1 : 0;
}

int pd_responses_body(pd_responses_t *w, pd_buf_t *out, const pd_result_t *res) {
  const char *finish = res->finish_reason ? res->finish_reason : "stop";
  free(w->finish);
  if (!(w->finish = strdup(finish)))
    return -1;
  int rc = 0, k;
  if (w->display == PD_REASONING_FIELD && res->reasoning_len > 0) {
    if ((k = new_item(w, IT_REASONING)) < 0)
      return -1;
    rc |= pd_buf_append(&w->items[k].text, res->reasoning, res->reasoning_len);
  }
  pd_buf_t text;
  pd_buf_init(&text);
  if (w->display == PD_REASONING_INLINE && res->reasoning_len > 0) {
    rc |= LIT(&text, "<think>\n");
    rc |= pd_buf_append(&text, res->reasoning, res->reasoning_len);
    rc |= LIT(&text, "\n</think>\n\n");
  }
  if (res->content_len)
    rc |= pd_buf_append(&text, res->content, res->content_len);
  if (text.len) {
    if ((k = new_item(w, IT_MESSAGE)) < 0) {
      pd_buf_free(&text);
      return -1;
    }
    w->items[k].text = text; /* the item owns it now */
  } else {
    pd_buf_free(&text);
  }
  size_t i;
  const json_t *tc;
  json_array_foreach(res->tool_calls, i, tc) {
    const json_t *fn = json_object_get(tc, "function");
    const char *name = json_string_value(json_object_get(fn, "name"));
    const char *args = json_string_value(json_object_get(fn, "arguments"));
    const char *id = json_string_value(json_object_get(tc, "id"));
    if ((k = new_item(w, IT_CALL)) < 0)
      return -1;
    item_t *it = &w->items[k];
    char gen[40];
    if (!id) {
      new_id(w, gen, "call_");
      id = gen;
    }
    rc |= pd_buf_appends(&it->call_id, id);
    rc |= pd_buf_appends(&it->name, name ? name : "");
    rc |= pd_buf_appends(&it->text, args ? args : "");
  }
  const char *why = incomplete_reason(w->finish);
  for (i = 0; i < w->nitems; i++)
    w->items[i].status = why && i + 1 == w->nitems ? "incomplete" : "completed";
  if (rc)
    return -1;
  w->ended = 1;
  return response_json(w, out, why ? "incomplete" : "completed", &res->usage, NULL, NULL);
}

int pd_responses_from_reply(pd_responses_t *w, pd_buf_t *out, const char *reply, size_t len,
                            pd_usage_t *usage) {
  pd_openai_msg_t m;
  memset(usage, 0, sizeof *usage);
  if (!pd_openai_read_reply(reply, len, 0, &m) || !m.choice)
    return PD_RESPONSES_EUNREADABLE;
  /* Escaped texts are decoded each into its own buffer (the pointers must stay put). */
  pd_buf_t sc, sr, sf;
  pd_buf_init(&sc);
  pd_buf_init(&sr);
  pd_buf_init(&sf);
  pd_result_t res;
  memset(&res, 0, sizeof res);
  const pd_openai_text_t *rt = m.reasoning_content.s ? &m.reasoning_content : &m.reasoning;
  const char *finish;
  size_t flen;
  int rc = pd_openai_text(&m.content, &sc, &res.content, &res.content_len);
  rc |= pd_openai_text(rt, &sr, &res.reasoning, &res.reasoning_len);
  rc |= pd_openai_text(&m.finish_reason, &sf, &finish, &flen);
  /* The reason NUL-terminated: on the stack unless it is unusually long. */
  char small[32], *fin = NULL;
  if (!flen)
    finish = "stop", flen = 4;
  if (!rc && flen < sizeof small) {
    fin = memcpy(small, finish, flen);
    fin[flen] = '\0';
  } else if (!rc) {
    fin = strndup(finish, flen);
  }
  json_t *calls = m.tool_calls && !rc ? pd_json_load(m.tool_calls, m.tool_calls_len, NULL) : NULL;
  if (m.tool_calls && !calls)
    rc = -1; /* the span is one the reader accepted: only memory fails it */
  if (json_array_size(calls) > 0)
    res.tool_calls = calls;
  res.finish_reason = fin;
  /* The engine's accounting of a plain call (engine.c finish_call). */
  usage->prompt_tokens = (long)m.prompt_tokens;
  usage->completion_tokens = m.has_completion
                                 ? (long)m.completion_tokens
                                 : (long)((res.content_len + res.reasoning_len + 3) / 4);
  usage->reasoning_tokens =
      m.has_reasoning && m.reasoning_tokens > 0 ? (long)m.reasoning_tokens : 0;
  res.usage = *usage;
  res.calls = 1;
  if (!fin)
    rc = -1;
  /* The object is about 1 KiB besides the texts: one reservation, no growing by doubling. */
  if (rc == 0 && !pd_buf_reserve(out, 1280 + 2 * (res.content_len + res.reasoning_len) +
                                          (m.tool_calls ? 2 * m.tool_calls_len : 0)))
    rc = -1;
  if (rc == 0)
    rc = pd_responses_body(w, out, &res);
  json_decref(calls);
  if (fin != small)
    free(fin);
  pd_buf_free(&sc);
  pd_buf_free(&sr);
  pd_buf_free(&sf);
  return rc < 0 ? -1 : 0;
}

/* ---- events ---- */

/* "event: TYPE\ndata: {"type":TYPE,"sequence_number":N" (the caller adds members and ends it
 * with ev_end). */
static int ev_begin(pd_responses_t *w, pd_buf_t *b, const char *type) {
  /* Written piece by piece: every delta is one event, and printf costs more than the rest. */
  int rc = pd_buf_append(b, "event: ", 7);
  rc |= pd_buf_appends(b, type);
  rc |= LIT(b, "\ndata: {\"type\":\"");
  rc |= pd_buf_appends(b, type);
  rc |= LIT(b, "\",\"sequence_number\":");
  rc |= pd_buf_append_long(b, w->seq++);
  return rc ? -1 : 0;
}

static int ev_end(pd_buf_t *b) {
  return LIT(b, "}\n\n");
}

/* "item_id":...,"output_index":N */
static int ev_where(pd_buf_t *b, const item_t *it, int idx) {
  int rc = LIT(b, ",\"item_id\":");
  rc |= put_item_id(b, it);
  rc |= LIT(b, ",\"output_index\":");
  rc |= pd_buf_append_long(b, idx);
  return rc ? -1 : 0;
}

/* A response lifecycle event: {"type","sequence_number","response":{...}}. */
static int ev_response(pd_responses_t *w, pd_buf_t *b, const char *type, const char *status,
                       const pd_usage_t *u, const char *code, const char *message) {
  int rc = ev_begin(w, b, type);
  rc |= LIT(b, ",\"response\":");
  rc |= response_json(w, b, status, u, code, message);
  rc |= ev_end(b);
  return rc ? -1 : 0;
}

static int ev_item(pd_responses_t *w, pd_buf_t *b, const char *type, int idx, int added) {
  int rc = ev_begin(w, b, type);
  rc |= pd_buf_appendf(b, ",\"output_index\":%d,\"item\":", idx);
  rc |= item_json(w, b, &w->items[idx], added);
  rc |= ev_end(b);
  return rc ? -1 : 0;
}

/* A part event (content_part.* / reasoning_summary_part.*) with the part's text so far. */
static int ev_part(pd_responses_t *w, pd_buf_t *b, const char *type, int idx, const char *index_key,
                   const char *part_type, int with_text) {
  item_t *it = &w->items[idx];
  int rc = ev_begin(w, b, type);
  rc |= ev_where(b, it, idx);
  rc |= pd_buf_appendf(b, ",\"%s\":0,\"part\":{\"type\":\"%s\",\"text\":", index_key, part_type);
  rc |= with_text ? text_of(b, &it->text) : LIT(b, "\"\"");
  if (!strcmp(part_type, "output_text"))
    rc |= LIT(b, ",\"annotations\":[],\"logprobs\":[]");
  rc |= LIT(b, "}");
  rc |= ev_end(b);
  return rc ? -1 : 0;
}

/* A text delta or done event of an item: delta when text != NULL, else the whole text as
 * `done_key`. */
static int ev_text(pd_responses_t *w, pd_buf_t *b, const char *type, int idx, const char *index_key,
                   const char *text, size_t len, const char *done_key) {
  item_t *it = &w->items[idx];
  int rc = ev_begin(w, b, type);
  rc |= ev_where(b, it, idx);
  if (index_key) {
    rc |= pd_buf_append(b, ",\"", 2);
    rc |= pd_buf_appends(b, index_key);
    rc |= pd_buf_append(b, "\":0", 3);
  }
  if (text) {
    rc |= LIT(b, ",\"delta\":");
    rc |= pd_buf_append_json_str(b, text, len);
  } else {
    rc |= pd_buf_appendf(b, ",\"%s\":", done_key);
    rc |= text_of(b, &it->text);
    if (it->kind == IT_CALL) {
      rc |= LIT(b, ",\"name\":");
      rc |= text_of(b, &it->name);
    }
  }
  if (it->kind == IT_MESSAGE)
    rc |= LIT(b, ",\"logprobs\":[]");
  rc |= ev_end(b);
  return rc ? -1 : 0;
}

int pd_responses_start(pd_responses_t *w, pd_buf_t *out) {
  if (w->started || w->ended)
    return 0;
  w->started = 1;
  int rc = ev_response(w, out, "response.created", "in_progress", NULL, NULL, NULL);
  rc |= ev_response(w, out, "response.in_progress", "in_progress", NULL, NULL, NULL);
  return rc ? -1 : 0;
}

/* What an item counts against max_held, besides its text. */
#define ITEM_COST 64

/* Opens an item and writes its .added events. */
static int open_item(pd_responses_t *w, pd_buf_t *b, item_kind_t kind) {
  if (w->max_held > 0 && w->held + ITEM_COST > w->max_held)
    return PD_RESPONSES_ETOOLARGE;
  w->held += ITEM_COST;
  int idx = new_item(w, kind);
  if (idx < 0)
    return -1;
  w->items[idx].open = 1;
  w->open_idx = idx;
  int rc = ev_item(w, b, "response.output_item.added", idx, 1);
  if (kind == IT_REASONING && w->req && w->req->summary)
    rc |= ev_part(w, b, "response.reasoning_summary_part.added", idx, "summary_index",
                  "summary_text", 0);
  else if (kind == IT_REASONING)
    rc |= ev_part(w, b, "response.content_part.added", idx, "content_index", "reasoning_text", 0);
  else if (kind == IT_MESSAGE)
    rc |= ev_part(w, b, "response.content_part.added", idx, "content_index", "output_text", 0);
  return rc ? -1 : idx;
}

/* Writes the .done events of the open item (if any) with the given status. */
static int close_open(pd_responses_t *w, pd_buf_t *b, const char *status) {
  int idx = w->open_idx;
  if (idx < 0)
    return 0;
  item_t *it = &w->items[idx];
  it->open = 0;
  it->status = status;
  w->open_idx = -1;
  int rc = 0;
  switch (it->kind) {
  case IT_REASONING:
    if (w->req && w->req->summary) {
      rc |= ev_text(w, b, "response.reasoning_summary_text.done", idx, "summary_index", NULL, 0,
                    "text");
      rc |= ev_part(w, b, "response.reasoning_summary_part.done", idx, "summary_index",
                    "summary_text", 1);
    } else {
      rc |= ev_text(w, b, "response.reasoning_text.done", idx, "content_index", NULL, 0, "text");
      rc |= ev_part(w, b, "response.content_part.done", idx, "content_index", "reasoning_text", 1);
    }
    break;
  case IT_MESSAGE:
    rc |= ev_text(w, b, "response.output_text.done", idx, "content_index", NULL, 0, "text");
    rc |= ev_part(w, b, "response.content_part.done", idx, "content_index", "output_text", 1);
    break;
  case IT_CALL:
    rc |= ev_text(w, b, "response.function_call_arguments.done", idx, NULL, NULL, 0, "arguments");
    break;
  }
  rc |= ev_item(w, b, "response.output_item.done", idx, 0);
  return rc ? -1 : 0;
}

/* Keeps text for the .done events, within max_held. */
static int hold(pd_responses_t *w, pd_buf_t *t, const char *s, size_t n) {
  if (w->max_held > 0 && w->held + (long)n > w->max_held)
    return PD_RESPONSES_ETOOLARGE;
  w->held += (long)n;
  return pd_buf_append(t, s, n);
}

/* Appends text to the open message (opened if need be) and writes its delta. */
static int message_delta(pd_responses_t *w, pd_buf_t *b, const char *s, size_t n) {
  int idx = w->open_idx;
  if (idx < 0 || w->items[idx].kind != IT_MESSAGE) {
    if (close_open(w, b, "completed") < 0)
      return -1;
    if ((idx = open_item(w, b, IT_MESSAGE)) < 0)
      return idx;
  }
  int rc = hold(w, &w->items[idx].text, s, n);
  if (rc < 0)
    return rc;
  return ev_text(w, b, "response.output_text.delta", idx, "content_index", s, n, NULL);
}

/* Inline display: the end of the <think> block, once the answer starts. */
static int close_think(pd_responses_t *w, pd_buf_t *b) {
  if (!w->think_open || w->think_closed)
    return 0;
  w->think_closed = 1;
  return message_delta(w, b, "\n</think>\n\n", 11);
}

static int think(pd_responses_t *w, pd_buf_t *b, const char *s, size_t n) {
  if (n == 0 || w->display == PD_REASONING_HIDDEN)
    return 0;
  if (w->display == PD_REASONING_INLINE) {
    int rc;
    if (!w->think_open && !w->think_closed) {
      w->think_open = 1;
      if ((rc = message_delta(w, b, "<think>\n", 8)) < 0)
        return rc;
    }
    return message_delta(w, b, s, n);
  }
  int idx = w->open_idx;
  if (idx < 0 || w->items[idx].kind != IT_REASONING) {
    if (close_open(w, b, "completed") < 0)
      return -1;
    if ((idx = open_item(w, b, IT_REASONING)) < 0)
      return idx;
  }
  int rc = hold(w, &w->items[idx].text, s, n);
  if (rc < 0)
    return rc;
  if (w->req && w->req->summary)
    return ev_text(w, b, "response.reasoning_summary_text.delta", idx, "summary_index", s, n, NULL);
  return ev_text(w, b, "response.reasoning_text.delta", idx, "content_index", s, n, NULL);
}

/* One streamed delta.tool_calls array: a new index opens a function_call item (closing the one
 * before it, as calls stream one after another); arguments become deltas. */
static int tool_calls(pd_responses_t *w, pd_buf_t *b, const json_t *calls) {
  int rc = close_think(w, b);
  if (rc < 0)
    return rc;
  size_t k;
  const json_t *tc;
  json_array_foreach(calls, k, tc) {
    if (!json_is_object(tc))
      continue;
    const json_t *ij = json_object_get(tc, "index");
    long index = json_is_integer(ij) ? (long)json_integer_value(ij) : (long)k;
    const json_t *fn = json_object_get(tc, "function");
    const char *name = json_string_value(json_object_get(fn, "name"));
    const json_t *args = json_object_get(fn, "arguments");
    int idx = -1;
    for (size_t i = 0; i < w->nitems; i++)
      if (w->items[i].kind == IT_CALL && w->items[i].tc_index == index)
        idx = (int)i;
    if (idx < 0) {
      /* Each item costs its share of max_held too: an upstream sending endless new indices with
       * empty names and arguments is bounded as well. */
      if (w->max_held > 0 && w->held + ITEM_COST > w->max_held)
        return PD_RESPONSES_ETOOLARGE;
      w->held += ITEM_COST;
      if (close_open(w, b, "completed") < 0 || (idx = new_item(w, IT_CALL)) < 0)
        return -1;
      item_t *it = &w->items[idx];
      it->tc_index = index;
      const char *id = json_string_value(json_object_get(tc, "id"));
      char gen[40];
      if (!id) {
        new_id(w, gen, "call_");
        id = gen;
      }
      if ((rc = hold(w, &it->call_id, id, strlen(id))) < 0 ||
          (name && (rc = hold(w, &it->name, name, strlen(name))) < 0))
        return rc;
      it->open = 1;
      w->open_idx = idx;
      if (ev_item(w, b, "response.output_item.added", idx, 1) < 0)
        return -1;
    } else if (name && (rc = hold(w, &w->items[idx].name, name, strlen(name))) < 0) {
      return rc; /* a name sent in pieces (rare): the .done events carry it whole */
    }
    size_t n = json_string_length(args);
    if (!n)
      continue;
    if ((rc = hold(w, &w->items[idx].text, json_string_value(args), n)) < 0)
      return rc;
    /* A piece for a call already done (calls interleaved) is kept for the final response. */
    if (w->items[idx].open && ev_text(w, b, "response.function_call_arguments.delta", idx, NULL,
                                      json_string_value(args), n, NULL) < 0)
      return -1;
  }
  return 0;
}

int pd_responses_emit(pd_responses_t *w, pd_buf_t *out, const pd_out_t *o) {
  if (w->ended)
    return 0;
  if (pd_responses_start(w, out) < 0)
    return -1;
  int rc;
  switch (o->kind) {
  case PD_OUT_THINK:
    return think(w, out, o->text, o->len);
  case PD_OUT_CONTENT:
    if (o->len == 0)
      return 0;
    if ((rc = close_think(w, out)) < 0)
      return rc;
    return message_delta(w, out, o->text, o->len);
  case PD_OUT_TOOL_CALLS:
    return tool_calls(w, out, o->json);
  case PD_OUT_FINISH:
    if ((rc = close_think(w, out)) < 0)
      return rc;
    free(w->finish);
    if (!(w->finish = strndup(o->text ? o->text : "stop", o->text ? o->len : 4)))
      return -1;
    return close_open(w, out, incomplete_reason(w->finish) ? "incomplete" : "completed");
  }
  return 0;
}

int pd_responses_end(pd_responses_t *w, pd_buf_t *out, const pd_usage_t *usage) {
  if (w->ended)
    return 0;
  if (pd_responses_start(w, out) < 0)
    return -1;
  /* The closing "</think>" of inline display is held text too: over max_held it is the
   * response's size that failed, not memory. */
  int rc = close_think(w, out);
  if (rc < 0)
    return rc;
  if (close_open(w, out, "completed") < 0)
    return -1;
  w->ended = 1;
  const char *why = incomplete_reason(w->finish);
  return ev_response(w, out, why ? "response.incomplete" : "response.completed",
                     why ? "incomplete" : "completed", usage, NULL, NULL);
}

int pd_responses_fail(pd_responses_t *w, pd_buf_t *out, const char *message, const char *type,
                      const char *code) {
  if (w->ended)
    return 0;
  if (pd_responses_start(w, out) < 0)
    return -1;
  w->ended = 1;
  if (w->open_idx >= 0)
    w->items[w->open_idx].status = "incomplete";
  w->open_idx = -1;
  return ev_response(w, out, "response.failed", "failed", NULL, code ? code : type,
                     message ? message : "");
}

int pd_responses_fail_body(pd_responses_t *w, pd_buf_t *out, const char *body, size_t len,
                           const char *message, const char *type, const char *code) {
  json_t *j = body && len ? json_loadb(body, len, 0, NULL) : NULL;
  const json_t *e = json_object_get(j, "error");
  const char *m = json_string_value(json_object_get(e, "message"));
  const char *c = json_string_value(json_object_get(e, "code"));
  const char *t = json_string_value(json_object_get(e, "type"));
  int rc = m ? pd_responses_fail(w, out, m, t ? t : type, c ? c : (t ? NULL : code))
             : pd_responses_fail(w, out, message, type, code);
  json_decref(j);
  return rc;
}
