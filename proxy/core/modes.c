/* The forcing modes: how each upstream call's body is built and how a thinking reply extends
 * the transcript (SPEC section 5). engine.c decides when to call what; this file only knows
 * the wire shapes of chat, prefill and completions. */
#include "core/modes.h"

#include <stdlib.h>
#include <string.h>

#include "core/openai.h"

/* ---- shared helpers ---- */

static const char *str(const char *s) {
  return s ? s : "";
}

/* Appends tmpl with "{think_budget}" and "{answer_budget}" replaced by the given limits. */
static int append_subst(pd_buf_t *t, const char *tmpl, long think, long answer) {
  static const char tb[] = "{think_budget}", ab[] = "{answer_budget}";
  const char *p = str(tmpl);
  while (*p) {
    const char *brace = strchr(p, '{');
    if (!brace)
      return pd_buf_appends(t, p);
    if (pd_buf_append(t, p, (size_t)(brace - p)) < 0)
      return -1;
    char num[32];
    if (!strncmp(brace, tb, sizeof tb - 1)) {
      int n = snprintf(num, sizeof num, "%ld", think);
      if (pd_buf_append(t, num, (size_t)n) < 0)
        return -1;
      p = brace + sizeof tb - 1;
    } else if (!strncmp(brace, ab, sizeof ab - 1)) {
      int n = snprintf(num, sizeof num, "%ld", answer);
      if (pd_buf_append(t, num, (size_t)n) < 0)
        return -1;
      p = brace + sizeof ab - 1;
    } else {
      if (pd_buf_append(t, "{", 1) < 0)
        return -1;
      p = brace + 1;
    }
  }
  return 0;
}

/* The prompt expansion every mode sends, for the callers that must write the same text
 * (export's training lines). */
int pd_mode_subst(pd_buf_t *t, const char *tmpl, long think, long answer) {
  return append_subst(t, tmpl, think, answer);
}

/* Appends tmpl with every "{content}" replaced by content. */
static int append_with_content(pd_buf_t *t, const char *tmpl, const char *content, size_t n) {
  static const char key[] = "{content}";
  const char *p = str(tmpl);
  const char *hit;
  while ((hit = strstr(p, key))) {
    if (pd_buf_append(t, p, (size_t)(hit - p)) < 0 || pd_buf_append(t, content, n) < 0)
      return -1;
    p = hit + sizeof key - 1;
  }
  return pd_buf_appends(t, p);
}

/* A message's text: string content, or the text parts of array content concatenated. */
static int append_message_text(pd_buf_t *t, const json_t *msg) {
  const json_t *content = json_object_get(msg, "content");
  if (json_is_string(content))
    return pd_buf_append(t, json_string_value(content), json_string_length(content));
  if (json_is_array(content)) {
    size_t i;
    const json_t *part;
    json_array_foreach(content, i, part) {
      const json_t *text = json_object_get(part, "text");
      if (json_is_string(text) &&
          pd_buf_append(t, json_string_value(text), json_string_length(text)) < 0)
        return -1;
    }
  }
  return 0;
}

static json_t *text_json(const pd_buf_t *t) {
  return json_stringn(pd_buf_str(t), t->len);
}

static int set_text(json_t *obj, const char *key, const pd_buf_t *t) {
  json_t *v = text_json(t);
  return v ? json_object_set_new(obj, key, v) : -1;
}

static json_t *message(const char *role, const pd_buf_t *content) {
  json_t *m = json_object();
  if (!m || json_object_set_new(m, "role", json_string(role)) < 0 ||
      set_text(m, "content", content) < 0) {
    json_decref(m);
    return NULL;
  }
  return m;
}

static int set_stream(json_t *b, int stream) {
  if (!stream) {
    json_object_del(b, "stream");
    json_object_del(b, "stream_options");
    return 0;
  }
  json_t *opts = json_pack("{s:b}", "include_usage", 1);
  if (!opts || json_object_set_new(b, "stream", json_true()) < 0)
    return json_decref(opts), -1;
  return json_object_set_new(b, "stream_options", opts);
}

/* The client's body with model, n, ponder and stream settings as every chat call has them. */
static json_t *base_body(const pd_chain_t *c) {
  /* A shallow copy: only top-level keys change, and "messages" is replaced, never edited. */
  json_t *b = json_copy(c->request);
  if (!b)
    return NULL;
  json_object_del(b, "n");
  json_object_del(b, "ponder");
  if (json_object_set_new(b, "model", json_string(c->upstream_model)) < 0 ||
      set_stream(b, c->stream) < 0) {
    json_decref(b);
    return NULL;
  }
  return b;
}

/* Thinking calls carry the sampling fields but none of the client's answer-shaping ones. */
static const char *const answer_shaping[] = {
    "tools",      "tool_choice",          "parallel_tool_calls",
    "functions",  "function_call",        "response_format",
    "logprobs",   "top_logprobs",         "stop",
    "max_tokens", "max_completion_tokens"};
#define N_ANSWER_SHAPING (sizeof answer_shaping / sizeof answer_shaping[0])

static int strip_for_thinking(json_t *b, const pd_chain_t *c, long limit) {
  for (size_t i = 0; i < N_ANSWER_SHAPING; i++)
    json_object_del(b, answer_shaping[i]);
  return json_object_set_new(b, c->limit_param, json_integer(limit));
}

/* The answer call keeps the client's own limit; without one it gets answer_budget. */
static int answer_limit(json_t *b, const pd_chain_t *c) {
  json_t *mt = json_object_get(b, "max_tokens");
  json_t *mct = json_object_get(b, "max_completion_tokens");
  int has_mt = json_is_integer(mt), has_mct = json_is_integer(mct);
  if (!has_mt)
    json_object_del(b, "max_tokens"); /* an explicit null */
  if (!has_mct)
    json_object_del(b, "max_completion_tokens");
  if (has_mt || has_mct)
    return 0;
  return json_object_set_new(b, c->limit_param, json_integer(c->policy->answer_budget));
}

/* ---- chat mode ---- */

/* M': the client's messages with "\n\n" + think appended to the last user message. */
static json_t *chat_mprime(const pd_chain_t *c) {
  /* Shallow copies of the array and of the one message that changes: the client's messages
   * are shared, never edited. */
  json_t *msgs = json_copy(json_object_get(c->request, "messages"));
  if (!msgs)
    return NULL;
  size_t i = json_array_size(msgs);
  json_t *last = NULL;
  while (i-- > 0) {
    json_t *m = json_array_get(msgs, i);
    if (!strcmp(str(json_string_value(json_object_get(m, "role"))), "user")) {
      last = json_copy(m);
      if (!last || json_array_set_new(msgs, i, last) < 0) {
        json_decref(msgs);
        return NULL;
      }
      break;
    }
  }
  if (!last)
    return msgs;
  pd_buf_t think = {0};
  json_t *content = json_object_get(last, "content");
  int rc;
  if (json_is_string(content)) {
    rc = pd_buf_append(&think, json_string_value(content), json_string_length(content)) < 0 ||
                 pd_buf_appends(&think, "\n\n") < 0 ||
                 append_subst(&think, c->policy->prompts.think, c->limits[0], c->answer_limit) < 0
             ? -1
             : set_text(last, "content", &think);
  } else if (json_is_array(content)) {
    json_t *part = NULL, *parts = json_copy(content);
    rc =
        !parts || json_object_set_new(last, "content", parts) < 0 ||
                pd_buf_appends(&think, "\n\n") < 0 ||
                append_subst(&think, c->policy->prompts.think, c->limits[0], c->answer_limit) < 0 ||
                !(part = json_pack("{s:s,s:o}", "type", "text", "text", text_json(&think)))
            ? -1
            : json_array_append_new(parts, part);
  } else {
    rc = append_subst(&think, c->policy->prompts.think, c->limits[0], c->answer_limit) < 0
             ? -1
             : set_text(last, "content", &think);
  }
  pd_buf_free(&think);
  if (rc < 0) {
    json_decref(msgs);
    return NULL;
  }
  return msgs;
}

/* ---- body text ----
 * Bodies go out as JSON text. Chat mode keeps the parts that every call repeats as text in the
 * chain (the client's members, M', the pairs so far), so a call costs one copy and the new pair;
 * the other modes build a tree and write it. */

static int put_str(pd_buf_t *b, const char *s, size_t n) {
  return pd_buf_append_json_str(b, s, n);
}

/* "key": */
static int put_key(pd_buf_t *b, const char *key) {
  return put_str(b, key, strlen(key)) < 0 || pd_buf_append(b, ":", 1) < 0 ? -1 : 0;
}

static int put_tree(pd_buf_t *b, json_t *v) {
  int rc = v ? pd_json_write(b, v) : -1;
  json_decref(v);
  return rc;
}

static int in_list(const char *key, const char *const *list, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!strcmp(key, list[i]))
      return 1;
  return 0;
}

/* "{" + the client's members as base_body leaves them (for a thinking call also without the
 * answer-shaping ones; for the answer call without a null max_tokens/max_completion_tokens),
 * then model and the stream settings, then "messages":[ and M'. */
static int put_head(pd_buf_t *b, pd_chain_t *c, int thinking) {
  static const char *const replaced[] = {"n",      "ponder",         "model",
                                         "stream", "stream_options", "messages"};
  const char *key;
  json_t *v;
  if (pd_buf_append(b, "{", 1) < 0)
    return -1;
  json_object_foreach(c->request, key, v) {
    if (in_list(key, replaced, sizeof replaced / sizeof *replaced) ||
        (thinking && in_list(key, answer_shaping, N_ANSWER_SHAPING)))
      continue;
    if (!thinking && !json_is_integer(v) &&
        (!strcmp(key, "max_tokens") || !strcmp(key, "max_completion_tokens")))
      continue;
    if (put_key(b, key) < 0 || pd_json_write(b, v) < 0 || pd_buf_append(b, ",", 1) < 0)
      return -1;
  }
  if (put_key(b, "model") < 0 || put_str(b, c->upstream_model, strlen(c->upstream_model)) < 0)
    return -1;
  if (c->stream &&
      pd_buf_appends(b, ",\"stream\":true,\"stream_options\":{\"include_usage\":true}") < 0)
    return -1;
  if (pd_buf_appends(b, ",\"messages\":[") < 0)
    return -1;
  if (!c->mprime_ok) {
    /* M' once per chain: the client's messages with the think prompt on the last user one. */
    json_t *msgs = chat_mprime(c);
    size_t i;
    json_t *m;
    if (!msgs)
      return -1;
    json_array_foreach(msgs, i, m) {
      if ((i && pd_buf_append(&c->mprime, ",", 1) < 0) || pd_json_write(&c->mprime, m) < 0) {
        json_decref(msgs);
        return -1;
      }
    }
    json_decref(msgs);
    c->mprime_ok = 1;
  }
  return pd_buf_append(b, pd_buf_data(&c->mprime), c->mprime.len);
}

/* {"role":role,"content":text} after a comma. */
static int put_message(pd_buf_t *b, const char *role, const char *text, size_t n) {
  return pd_buf_appends(b, ",{\"role\":\"") < 0 || pd_buf_appends(b, role) < 0 ||
                 pd_buf_appends(b, "\",\"content\":") < 0 || put_str(b, text, n) < 0 ||
                 pd_buf_append(b, "}", 1) < 0
             ? -1
             : 0;
}

/* Extends the cached pairs to `upto`: for each thinking call j, assistant s_j + "\n" + wait and
 * user continue. The pair after call j prompts call j + 1, so it is substituted with that call's
 * limit (known once call j + 1 is built). */
static int chat_pairs(pd_chain_t *c, int upto) {
  const pd_policy_t *p = c->policy;
  pd_chain_t *k = c;
  for (int j = k->npairs; j < upto; j++) {
    pd_buf_t a = {0}, u = {0};
    json_t *seg = json_array_get(c->segments, (size_t)j);
    long limit = c->limits[j + 1];
    int rc = pd_buf_append(&a, str(json_string_value(seg)), json_string_length(seg)) < 0 ||
                     pd_buf_appends(&a, "\n") < 0 ||
                     append_subst(&a, p->prompts.wait, limit, c->answer_limit) < 0 ||
                     append_subst(&u, p->prompts.cont, limit, c->answer_limit) < 0 ||
                     put_message(&k->pairs, "assistant", pd_buf_str(&a), a.len) < 0 ||
                     put_message(&k->pairs, "user", pd_buf_str(&u), u.len) < 0
                 ? -1
                 : 0;
    pd_buf_free(&a);
    pd_buf_free(&u);
    if (rc < 0)
      return -1;
    k->npairs = j + 1;
  }
  return k->npairs == upto ? 0 : -1;
}

static int chat_think_body(pd_chain_t *c, pd_buf_t *b) {
  pd_chain_t *k = c;
  if (!k->think_head_ok) {
    if (put_head(&k->think_head, c, 1) < 0)
      return -1;
    k->think_head_ok = 1;
  }
  if (chat_pairs(c, c->think_calls) < 0 ||
      !pd_buf_reserve(b, k->think_head.len + k->pairs.len + 48) ||
      pd_buf_append(b, pd_buf_data(&k->think_head), k->think_head.len) < 0 ||
      pd_buf_append(b, pd_buf_data(&k->pairs), k->pairs.len) < 0 || pd_buf_append(b, "],", 2) < 0 ||
      put_key(b, c->limit_param) < 0 || pd_buf_append_long(b, c->limits[c->think_calls]) < 0 ||
      pd_buf_append(b, "}", 1) < 0)
    return -1;
  return 0;
}

/* The answer call keeps the client's own limit; without one it gets answer_budget. */
static int chat_answer_body(pd_chain_t *c, pd_buf_t *b) {
  int n = c->think_calls;
  pd_buf_t ask = {0};
  json_t *seg = json_array_get(c->segments, (size_t)(n - 1));
  int has_limit = json_is_integer(json_object_get(c->request, "max_tokens")) ||
                  json_is_integer(json_object_get(c->request, "max_completion_tokens"));
  int rc = put_head(b, c, 0) < 0 || chat_pairs(c, n > 0 ? n - 1 : 0) < 0 ||
                   pd_buf_append(b, pd_buf_data(&c->pairs), c->pairs.len) < 0 ||
                   put_message(b, "assistant", str(json_string_value(seg)),
                               json_string_length(seg)) < 0 ||
                   append_subst(&ask, c->policy->prompts.answer, c->policy->think_budget,
                                c->answer_limit) < 0 ||
                   put_message(b, "user", pd_buf_str(&ask), ask.len) < 0 ||
                   pd_buf_append(b, "]", 1) < 0 ||
                   (!has_limit && (pd_buf_append(b, ",", 1) < 0 || put_key(b, c->limit_param) < 0 ||
                                   pd_buf_append_long(b, c->policy->answer_budget) < 0)) ||
                   pd_buf_append(b, "}", 1) < 0
               ? -1
               : 0;
  pd_buf_free(&ask);
  return rc;
}

static int chat_add_reply(pd_chain_t *c, const char *s, size_t n) {
  json_t *v = json_stringn(s, n);
  return v ? json_array_append_new(c->segments, v) : -1;
}

static int chat_next_round(pd_chain_t *c, const char *finish, pd_buf_t *sep) {
  (void)finish;
  return append_subst(sep, c->policy->prompts.wait, c->limits[c->think_calls], c->answer_limit);
}

/* ---- prefill and completions modes ---- */

/* The assistant text the next call continues: think_open + transcript, and for the answer call
 * the closing of the thinking as SPEC section 5 orders it. */
static int build_prefix(const pd_chain_t *c, int answer, pd_buf_t *out) {
  const pd_policy_t *p = c->policy;
  if (pd_buf_appends(out, p->prefill.think_open) < 0 ||
      pd_buf_append(out, pd_buf_str(&c->transcript), c->transcript.len) < 0)
    return -1;
  if (!answer)
    return 0;
  if (c->last_length && (out->len == 0 || pd_buf_data(out)[out->len - 1] != '\n') &&
      pd_buf_appends(out, "\n") < 0)
    return -1;
  if (pd_buf_appends(out, p->prefill.think_close) < 0 ||
      (c->cut && pd_buf_appends(out, p->prefill.length_cut) < 0) ||
      pd_buf_appends(out, p->prefill.answer_open) < 0)
    return -1;
  return 0;
}

/* M + the assistant prefix, marked for continuation as the dialect wants. */
static int prefill_messages(json_t *b, const pd_chain_t *c, int answer) {
  pd_buf_t prefix = {0};
  json_t *msgs = json_copy(json_object_get(c->request, "messages")); /* only appended to */
  json_t *m = NULL;
  pd_dialect_t d = c->policy->prefill.dialect;
  int rc = !msgs || build_prefix(c, answer, &prefix) < 0 || !(m = message("assistant", &prefix)) ||
                   ((d == PD_DIALECT_DEEPSEEK || d == PD_DIALECT_MISTRAL) &&
                    json_object_set_new(m, "prefix", json_true()) < 0) ||
                   json_array_append(msgs, m) < 0 ||
                   (d == PD_DIALECT_VLLM &&
                    (json_object_set_new(b, "continue_final_message", json_true()) < 0 ||
                     json_object_set_new(b, "add_generation_prompt", json_false()) < 0)) ||
                   json_object_set(b, "messages", msgs) < 0
               ? -1
               : 0;
  json_decref(m);
  json_decref(msgs);
  pd_buf_free(&prefix);
  return rc;
}

static int stop_think_close(json_t *b, const pd_policy_t *p) {
  json_t *stop = json_pack("[s]", str(p->prefill.think_close));
  return stop ? json_object_set_new(b, "stop", stop) : -1;
}

static int prefill_think_body(pd_chain_t *c, pd_buf_t *out) {
  json_t *b = base_body(c);
  if (!b || strip_for_thinking(b, c, c->limits[c->think_calls]) < 0 ||
      stop_think_close(b, c->policy) < 0 || prefill_messages(b, c, 0) < 0) {
    json_decref(b);
    return -1;
  }
  return put_tree(out, b);
}

static int prefill_answer_body(pd_chain_t *c, pd_buf_t *out) {
  json_t *b = base_body(c);
  if (!b || answer_limit(b, c) < 0 || prefill_messages(b, c, 1) < 0) {
    json_decref(b);
    return -1;
  }
  return put_tree(out, b);
}

static int transcript_add_reply(pd_chain_t *c, const char *s, size_t n) {
  return pd_buf_append(&c->transcript, s, n);
}

/* s1's "ignore end-of-thinking": a model that stopped by itself gets `wait` appended; one cut by
 * its token limit is mid-thought and simply continues. */
static int transcript_next_round(pd_chain_t *c, const char *finish, pd_buf_t *sep) {
  if (!strcmp(finish, "length"))
    return 0;
  const char *wait = str(c->policy->prefill.wait);
  if (pd_buf_appends(&c->transcript, wait) < 0)
    return -1;
  return pd_buf_appends(sep, wait);
}

/* render(template, M): each message through its role's template. */
static int render_prompt(const pd_chain_t *c, pd_buf_t *out) {
  const pd_policy_t *p = c->policy;
  const json_t *msgs = json_object_get(c->request, "messages");
  size_t i;
  const json_t *m;
  json_array_foreach(msgs, i, m) {
    const char *role = str(json_string_value(json_object_get(m, "role")));
    const char *tmpl = p->tmpl.user;
    if (!strcmp(role, "system") || !strcmp(role, "developer"))
      tmpl = p->tmpl.system;
    else if (!strcmp(role, "assistant"))
      tmpl = p->tmpl.assistant;
    pd_buf_t text = {0};
    int rc = append_message_text(&text, m) < 0 ||
                     append_with_content(out, tmpl, pd_buf_str(&text), text.len) < 0
                 ? -1
                 : 0;
    pd_buf_free(&text);
    if (rc < 0)
      return -1;
  }
  return pd_buf_appends(out, p->tmpl.assistant_start);
}

static json_t *completions_body(const pd_chain_t *c, int answer) {
  static const char *const sampling[] = {
      "temperature", "top_p", "seed",  "frequency_penalty", "presence_penalty", "logit_bias",
      "user",        "top_k", "min_p", "repetition_penalty"};
  pd_buf_t prompt = {0};
  json_t *b = json_object();
  long limit = answer ? c->answer_limit : c->limits[c->think_calls];
  int rc = !b || json_object_set_new(b, "model", json_string(c->upstream_model)) < 0 ||
                   render_prompt(c, &prompt) < 0 || build_prefix(c, answer, &prompt) < 0 ||
                   set_text(b, "prompt", &prompt) < 0 ||
                   json_object_set_new(b, "max_tokens", json_integer(limit)) < 0
               ? -1
               : 0;
  pd_buf_free(&prompt);
  for (size_t i = 0; rc == 0 && i < sizeof sampling / sizeof sampling[0]; i++) {
    json_t *v = json_object_get(c->request, sampling[i]);
    if (v && !json_is_null(v))
      rc = json_object_set_new(b, sampling[i], json_deep_copy(v));
  }
  if (rc == 0) {
    json_t *stop = json_object_get(c->request, "stop");
    if (!answer)
      rc = stop_think_close(b, c->policy);
    else if (stop && !json_is_null(stop))
      rc = json_object_set_new(b, "stop", json_deep_copy(stop));
  }
  if (rc < 0 || set_stream(b, c->stream) < 0) {
    json_decref(b);
    return NULL;
  }
  return b;
}

static int completions_think_body(pd_chain_t *c, pd_buf_t *out) {
  return put_tree(out, completions_body(c, 0));
}

static int completions_answer_body(pd_chain_t *c, pd_buf_t *out) {
  return put_tree(out, completions_body(c, 1));
}

/* ---- the table ---- */

static const pd_mode_ops_t modes[] = {
    [PD_MODE_CHAT] = {"/chat/completions", 0, chat_think_body, chat_answer_body, chat_add_reply,
                      chat_next_round},
    [PD_MODE_PREFILL] = {"/chat/completions", 0, prefill_think_body, prefill_answer_body,
                         transcript_add_reply, transcript_next_round},
    [PD_MODE_COMPLETIONS] = {"/completions", 1, completions_think_body, completions_answer_body,
                             transcript_add_reply, transcript_next_round},
};

/* Returns the function table of `mode` (chat for an unknown value). */
const pd_mode_ops_t *pd_mode_ops(pd_mode_t mode) {
  if ((unsigned)mode >= sizeof modes / sizeof modes[0])
    return &modes[PD_MODE_CHAT];
  return &modes[mode];
}

/* The unforced call: the client's body as it is, apart from model, n, ponder and streaming. */
int pd_mode_plain_body(pd_chain_t *c, pd_buf_t *out) {
  return put_tree(out, base_body(c));
}

void pd_mode_chain_free_text(pd_chain_t *c) {
  pd_buf_free(&c->think_head);
  pd_buf_free(&c->mprime);
  pd_buf_free(&c->pairs);
}
