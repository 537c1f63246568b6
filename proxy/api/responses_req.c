/* The Responses API's request side (SPEC section 10): a Responses request body translated into
 * the chat-completions request the engine and the upstream take (instructions, input items,
 * tools, tool_choice, text.format, limits, reasoning), with the OpenAI-shaped 400s of what a
 * stateless proxy cannot serve, and the fields the response object echoes. Earlier thinking is
 * dropped here. Pure: it owns the trees it builds. */
#include "api/responses.h"

#include "api/api.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/utf8.h"
#include "core/openai.h"

/* Appends a string literal (its length known at compile time). */
#define LIT(b, s) pd_buf_append(b, s, sizeof s - 1)

/* ---- request translation -------------------------------------------------------------------- */

#define STATELESS_MSG "ponder is stateless: send the whole conversation in input"

static int bad(pd_responses_error_t *err, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int bad(pd_responses_error_t *err, const char *param, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->message, sizeof err->message, fmt, ap);
  va_end(ap);
  snprintf(err->param, sizeof err->param, "%s", param ? param : "");
  return -1;
}

/* A member that is absent or null (null counts as absent, as in the OpenAI API). */
static const json_t *opt(const json_t *o, const char *key) {
  const json_t *v = json_object_get(o, key);
  return v && !json_is_null(v) ? v : NULL;
}

/* {k1: v1, k2: v2} taking the references v1 and v2 (k2 NULL: one member); NULL when one is
 * NULL or memory runs out, everything released. json_pack parses its format on every call:
 * the members every request builds go through here. */
static json_t *obj_new(const char *k1, json_t *v1, const char *k2, json_t *v2) {
  json_t *o = json_object();
  if (!o || !v1 || (k2 && !v2)) {
    json_decref(o);
    json_decref(v1);
    json_decref(v2);
    return NULL;
  }
  if (json_object_set_new_nocheck(o, k1, v1) < 0) {
    json_decref(o);
    json_decref(v2);
    return NULL;
  }
  if (k2 && json_object_set_new_nocheck(o, k2, v2) < 0) {
    json_decref(o);
    return NULL;
  }
  return o;
}

/* Quoted client text in messages is cut to this many bytes (pd_openai_error repairs a cut
 * character). */
#define QUOTE 64

/* Sets key to a new reference of v (v borrowed); -2 when out of memory. */
static int set_ref(json_t *o, const char *key, const json_t *v) {
  return json_object_set(o, key, (json_t *)v) < 0 ? -2 : 0;
}

static int set_new(json_t *o, const char *key, json_t *v) {
  return v && json_object_set_new(o, key, v) == 0 ? 0 : -2;
}

static const char *type_of(const json_t *o) {
  return json_string_value(json_object_get(o, "type"));
}

/* One content part of a user, system or tool message -> its chat part. */
static int user_part(const json_t *part, size_t i, json_t **outp, pd_responses_error_t *err) {
  *outp = NULL;
  const char *t = type_of(part);
  if (!json_is_object(part) || !t)
    return bad(err, "input",
               "Invalid value for 'input[%zu].content': each content part must be an object "
               "with a string 'type'.",
               i);
  if (!strcmp(t, "input_text") || !strcmp(t, "output_text") || !strcmp(t, "text")) {
    const json_t *text = json_object_get(part, "text");
    if (!json_is_string(text))
      return bad(err, "input",
                 "Invalid type for 'input[%zu].content': a text part needs a string "
                 "'text'.",
                 i);
    *outp = obj_new("type", json_string_nocheck("text"), "text", json_incref((json_t *)text));
    return *outp ? 0 : -2;
  }
  if (!strcmp(t, "input_image")) {
    const json_t *url = opt(part, "image_url"), *detail = opt(part, "detail");
    if (!json_is_string(url))
      return bad(err, "input",
                 "An input_image in 'input[%zu].content' needs an 'image_url' (a URL or a data "
                 "URL): file ids name stored files, and %s.",
                 i, STATELESS_MSG);
    json_t *img = json_pack("{s:O}", "url", url);
    if (img && json_is_string(detail) && json_object_set(img, "detail", (json_t *)detail) < 0) {
      json_decref(img);
      img = NULL;
    }
    *outp = img ? json_pack("{s:s,s:o}", "type", "image_url", "image_url", img) : NULL;
    return *outp ? 0 : -2;
  }
  if (!strcmp(t, "input_file")) {
    json_t *file = json_object();
    static const char *const keys[] = {"file_data", "file_id", "filename"};
    for (size_t k = 0; file && k < 3; k++) {
      const json_t *v = opt(part, keys[k]);
      if (json_is_string(v) && json_object_set(file, keys[k], (json_t *)v) < 0) {
        json_decref(file);
        file = NULL;
      }
    }
    *outp = file ? json_pack("{s:s,s:o}", "type", "file", "file", file) : NULL;
    return *outp ? 0 : -2;
  }
  if (!strcmp(t, "input_audio")) {
    const json_t *a = opt(part, "input_audio");
    if (!json_is_object(a))
      return bad(err, "input",
                 "An input_audio in 'input[%zu].content' needs an 'input_audio' "
                 "object.",
                 i);
    *outp = json_pack("{s:s,s:O}", "type", "input_audio", "input_audio", a);
    return *outp ? 0 : -2;
  }
  return bad(err, "input", "Unsupported content part type '%.*s' in 'input[%zu].content'.", QUOTE,
             t, i);
}

/* A user/system/tool content (string, or parts) -> chat content. */
static int user_content(const json_t *content, size_t i, json_t **outp, pd_responses_error_t *err) {
  *outp = NULL;
  if (json_is_string(content)) {
    *outp = json_incref((json_t *)content);
    return 0;
  }
  if (!json_is_array(content))
    return bad(err, "input",
               "Invalid type for 'input[%zu].content': expected a string or an array of content "
               "parts.",
               i);
  json_t *parts = json_array();
  if (!parts)
    return -2;
  size_t k;
  const json_t *p;
  json_array_foreach(content, k, p) {
    json_t *cp;
    int rc = user_part(p, i, &cp, err);
    if (rc < 0 || json_array_append_new(parts, cp) < 0) {
      json_decref(parts);
      return rc < 0 ? rc : -2;
    }
  }
  *outp = parts;
  return 0;
}

/* An assistant content (string, or text/refusal parts) -> one string, without earlier thinking. */
static int assistant_content(const json_t *content, size_t i, json_t **outp,
                             pd_responses_error_t *err) {
  *outp = NULL;
  pd_buf_t b;
  pd_buf_init(&b);
  int rc = 0;
  if (json_is_string(content)) {
    rc = pd_buf_append(&b, json_string_value(content), json_string_length(content));
  } else if (json_is_array(content)) {
    size_t k;
    const json_t *p;
    json_array_foreach(content, k, p) {
      const char *t = type_of(p);
      const json_t *text = NULL;
      if (t && (!strcmp(t, "output_text") || !strcmp(t, "input_text") || !strcmp(t, "text")))
        text = json_object_get(p, "text");
      else if (t && !strcmp(t, "refusal"))
        text = json_object_get(p, "refusal");
      else if (!t || !json_is_object(p)) {
        pd_buf_free(&b);
        return bad(err, "input",
                   "Invalid value for 'input[%zu].content': each content part must be an object "
                   "with a string 'type'.",
                   i);
      } else {
        pd_buf_free(&b);
        return bad(err, "input",
                   "Unsupported content part type '%.*s' in an assistant message "
                   "('input[%zu].content').",
                   QUOTE, t, i);
      }
      if (!json_is_string(text)) {
        pd_buf_free(&b);
        return bad(err, "input",
                   "Invalid type for 'input[%zu].content': a text part needs a string 'text'.", i);
      }
      rc |= pd_buf_append(&b, json_string_value(text), json_string_length(text));
    }
  } else if (content && !json_is_null(content)) {
    pd_buf_free(&b);
    return bad(err, "input",
               "Invalid type for 'input[%zu].content': expected a string or an array of content "
               "parts.",
               i);
  }
  const char *s = b.len ? pd_buf_data(&b) : "";
  size_t n = b.len;
  pd_api_strip_think(&s, &n);
  *outp = rc ? NULL : json_stringn(s, n);
  pd_buf_free(&b);
  return *outp ? 0 : -2;
}

/* The last message when it is an assistant one that ponder built (a function_call joins it). */
static json_t *open_assistant(json_t *msgs) {
  size_t n = json_array_size(msgs);
  json_t *m = n ? json_array_get(msgs, n - 1) : NULL;
  const char *role = json_string_value(json_object_get(m, "role"));
  return role && !strcmp(role, "assistant") ? m : NULL;
}

static int message_item(json_t *msgs, const json_t *item, size_t i, pd_responses_error_t *err) {
  const char *role = json_string_value(json_object_get(item, "role"));
  if (!role)
    return bad(err, "input", "Invalid value for 'input[%zu]': a message needs a string 'role'.", i);
  int assistant = !strcmp(role, "assistant");
  if (!assistant && strcmp(role, "user") && strcmp(role, "system") && strcmp(role, "developer"))
    return bad(err, "input",
               "Invalid value for 'input[%zu].role': '%.*s'. Supported values are: 'user', "
               "'system', 'developer' and 'assistant'.",
               i, QUOTE, role);
  const json_t *content = json_object_get(item, "content");
  json_t *c;
  int rc = assistant ? assistant_content(content, i, &c, err) : user_content(content, i, &c, err);
  if (rc < 0)
    return rc;
  json_t *m =
      obj_new("role", json_string(!strcmp(role, "developer") ? "system" : role), "content", c);
  return m && json_array_append_new(msgs, m) == 0 ? 0 : -2;
}

static int function_call_item(json_t *msgs, const json_t *item, size_t i,
                              pd_responses_error_t *err) {
  const json_t *call_id = json_object_get(item, "call_id"), *name = json_object_get(item, "name");
  const json_t *args = json_object_get(item, "arguments");
  if (!json_is_string(call_id) || !json_is_string(name) || !json_is_string(args))
    return bad(err, "input",
               "Invalid value for 'input[%zu]': a function_call needs string 'call_id', 'name' "
               "and 'arguments'.",
               i);
  json_t *tc = json_pack("{s:O,s:s,s:{s:O,s:O}}", "id", call_id, "type", "function", "function",
                         "name", name, "arguments", args);
  if (!tc)
    return -2;
  /* An assistant turn that said something and called tools is one chat message: the calls join
   * the assistant message (or calls) just before them. */
  json_t *m = open_assistant(msgs);
  if (!m) {
    m = json_pack("{s:s,s:n}", "role", "assistant", "content");
    if (!m || json_array_append_new(msgs, m) < 0) {
      json_decref(tc);
      return -2;
    }
  }
  json_t *calls = json_object_get(m, "tool_calls");
  if (!calls) {
    calls = json_array();
    if (!calls || json_object_set_new(m, "tool_calls", calls) < 0) {
      json_decref(tc);
      return -2;
    }
  }
  return json_array_append_new(calls, tc) == 0 ? 0 : -2;
}

static int function_output_item(json_t *msgs, const json_t *item, size_t i,
                                pd_responses_error_t *err) {
  const json_t *call_id = json_object_get(item, "call_id"),
               *output = json_object_get(item, "output");
  if (!json_is_string(call_id))
    return bad(err, "input",
               "Invalid value for 'input[%zu]': a function_call_output needs a string 'call_id'.",
               i);
  if (!json_is_string(output) && !json_is_array(output))
    return bad(err, "input",
               "Invalid type for 'input[%zu].output': expected a string or an array of content "
               "parts.",
               i);
  json_t *c;
  int rc = user_content(output, i, &c, err);
  if (rc < 0)
    return rc;
  json_t *m = json_pack("{s:s,s:O,s:o}", "role", "tool", "tool_call_id", call_id, "content", c);
  return m && json_array_append_new(msgs, m) == 0 ? 0 : -2;
}

static int input_items(json_t *msgs, const json_t *input, pd_responses_error_t *err) {
  if (json_is_string(input)) {
    json_t *m =
        obj_new("role", json_string_nocheck("user"), "content", json_incref((json_t *)input));
    return m && json_array_append_new(msgs, m) == 0 ? 0 : -2;
  }
  if (!json_is_array(input))
    return bad(err, "input",
               "Invalid type for 'input': expected a string or an array of input items.");
  size_t i;
  const json_t *item;
  json_array_foreach(input, i, item) {
    if (!json_is_object(item))
      return bad(err, "input", "Invalid type for 'input[%zu]': expected an object.", i);
    const json_t *tj = json_object_get(item, "type");
    if (tj && !json_is_string(tj))
      return bad(err, "input", "Invalid type for 'input[%zu].type': expected a string.", i);
    const char *t = tj ? json_string_value(tj) : "message";
    int rc;
    if (!strcmp(t, "message"))
      rc = message_item(msgs, item, i, err);
    else if (!strcmp(t, "function_call"))
      rc = function_call_item(msgs, item, i, err);
    else if (!strcmp(t, "function_call_output"))
      rc = function_output_item(msgs, item, i, err);
    else if (!strcmp(t, "reasoning"))
      rc = 0; /* earlier thinking is not sent upstream (SPEC section 5) */
    else
      rc = bad(err, "input",
               "Unsupported input item type '%.*s' (input[%zu]): ponder takes message, "
               "function_call, function_call_output and reasoning items.",
               QUOTE, t, i);
    if (rc < 0)
      return rc;
  }
  return 0;
}

static int chat_tools(json_t *chat, const json_t *tools, pd_responses_error_t *err) {
  if (!json_is_array(tools))
    return bad(err, "tools", "Invalid type for 'tools': expected an array.");
  json_t *out = json_array();
  if (!out)
    return -2;
  size_t i;
  const json_t *t;
  json_array_foreach(tools, i, t) {
    const char *type = type_of(t);
    if (!json_is_object(t) || !type) {
      json_decref(out);
      return bad(err, "tools",
                 "Invalid value for 'tools[%zu]': each tool must be an object with a string "
                 "'type'.",
                 i);
    }
    if (strcmp(type, "function")) {
      json_decref(out);
      return bad(err, "tools",
                 "Built-in tools are not supported: '%.*s' (tools[%zu]). ponder serves function "
                 "tools only; the upstream runs no tools of its own.",
                 QUOTE, type, i);
    }
    const json_t *name = json_object_get(t, "name");
    if (!json_is_string(name)) {
      json_decref(out);
      return bad(err, "tools",
                 "Invalid value for 'tools[%zu]': a function tool needs a string "
                 "'name'.",
                 i);
    }
    json_t *fn = json_pack("{s:O}", "name", name);
    static const char *const keys[] = {"description", "parameters", "strict"};
    for (size_t k = 0; fn && k < 3; k++) {
      const json_t *v = opt(t, keys[k]);
      if (v && json_object_set(fn, keys[k], (json_t *)v) < 0) {
        json_decref(fn);
        fn = NULL;
      }
    }
    json_t *ct = fn ? json_pack("{s:s,s:o}", "type", "function", "function", fn) : NULL;
    if (!ct || json_array_append_new(out, ct) < 0) {
      json_decref(out);
      return -2;
    }
  }
  if (json_array_size(out) == 0) {
    json_decref(out);
    return 0;
  }
  return set_new(chat, "tools", out);
}

static int chat_tool_choice(json_t *chat, const json_t *tc, pd_responses_error_t *err) {
  if (json_is_string(tc)) {
    const char *s = json_string_value(tc);
    if (strcmp(s, "none") && strcmp(s, "auto") && strcmp(s, "required"))
      return bad(err, "tool_choice",
                 "Invalid value for 'tool_choice': '%.*s'. Supported values are: 'none', 'auto', "
                 "'required', or a function.",
                 QUOTE, s);
    return set_ref(chat, "tool_choice", tc);
  }
  const char *type = type_of(tc);
  if (!json_is_object(tc) || !type)
    return bad(err, "tool_choice",
               "Invalid type for 'tool_choice': expected a string or an object with a 'type'.");
  if (!strcmp(type, "function")) {
    const json_t *name = json_object_get(tc, "name");
    if (!json_is_string(name))
      return bad(err, "tool_choice",
                 "Invalid value for 'tool_choice': a function choice needs a "
                 "string 'name'.");
    return set_new(chat, "tool_choice",
                   json_pack("{s:s,s:{s:O}}", "type", "function", "function", "name", name));
  }
  if (!strcmp(type, "allowed_tools")) {
    const json_t *mode = json_object_get(tc, "mode"), *tools = json_object_get(tc, "tools");
    if (!json_is_string(mode) || !json_is_array(tools))
      return bad(err, "tool_choice",
                 "Invalid value for 'tool_choice': allowed_tools needs a string 'mode' and an "
                 "array 'tools'.");
    json_t *list = json_array();
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t) {
      const char *tt = type_of(t);
      const json_t *name = json_object_get(t, "name");
      if (!tt || strcmp(tt, "function") || !json_is_string(name)) {
        json_decref(list);
        return bad(err, "tool_choice",
                   "Invalid value for 'tool_choice.tools[%zu]': only function tools with a "
                   "string 'name' can be allowed.",
                   i);
      }
      json_t *e = json_pack("{s:s,s:{s:O}}", "type", "function", "function", "name", name);
      if (!list || !e || json_array_append_new(list, e) < 0) {
        json_decref(list);
        return -2;
      }
    }
    return set_new(chat, "tool_choice",
                   list ? json_pack("{s:s,s:{s:O,s:o}}", "type", "allowed_tools", "allowed_tools",
                                    "mode", mode, "tools", list)
                        : NULL);
  }
  return bad(err, "tool_choice",
             "Unsupported tool_choice type '%.*s': ponder serves function tools only.", QUOTE,
             type);
}

static int chat_text(json_t *chat, const json_t *text, pd_responses_error_t *err) {
  if (!json_is_object(text))
    return bad(err, "text", "Invalid type for 'text': expected an object.");
  const json_t *verbosity = opt(text, "verbosity");
  if (verbosity && !json_is_string(verbosity))
    return bad(err, "text.verbosity", "Invalid type for 'text.verbosity': expected a string.");
  if (verbosity && set_ref(chat, "verbosity", verbosity) < 0)
    return -2;
  const json_t *f = opt(text, "format");
  if (!f)
    return 0;
  const char *type = type_of(f);
  if (!json_is_object(f) || !type)
    return bad(err, "text.format",
               "Invalid type for 'text.format': expected an object with a string 'type'.");
  if (!strcmp(type, "text"))
    return 0; /* the default: nothing to ask of the upstream */
  if (!strcmp(type, "json_object"))
    return set_new(chat, "response_format", json_pack("{s:s}", "type", "json_object"));
  if (strcmp(type, "json_schema"))
    return bad(err, "text.format.type",
               "Invalid value for 'text.format.type': '%.*s'. Supported values are: 'text', "
               "'json_object' and 'json_schema'.",
               QUOTE, type);
  const json_t *name = json_object_get(f, "name"), *schema = json_object_get(f, "schema");
  if (!json_is_string(name))
    return bad(err, "text.format.name", "Missing required parameter: 'text.format.name'.");
  if (!json_is_object(schema))
    return bad(err, "text.format.schema",
               "Invalid type for 'text.format.schema': expected a JSON schema object.");
  json_t *js = json_pack("{s:O,s:O}", "name", name, "schema", schema);
  static const char *const keys[] = {"strict", "description"};
  for (size_t k = 0; js && k < 2; k++) {
    const json_t *v = opt(f, keys[k]);
    if (v && json_object_set(js, keys[k], (json_t *)v) < 0) {
      json_decref(js);
      js = NULL;
    }
  }
  return set_new(chat, "response_format",
                 js ? json_pack("{s:s,s:o}", "type", "json_schema", "json_schema", js) : NULL);
}

/* The top-level members ponder reads, each found once by one pass over the body (a tree's keys
 * are unique): F_* indexes fields[] and the pass's table of values. */
enum {
  F_MODEL,
  F_INSTRUCTIONS,
  F_MOT,
  F_TEMPERATURE,
  F_TOP_P,
  F_USER,
  F_SAFETY,
  F_METADATA,
  F_STREAM,
  F_STORE,
  F_BACKGROUND,
  F_PTC,
  F_INCLUDE,
  F_REASONING,
  F_INPUT,
  F_TOOLS,
  F_TOOL_CHOICE,
  F_TEXT,
  F_PREVIOUS,
  F_CONVERSATION,
  F_TOP_LOGPROBS,
  F_SEED,
  F_SERVICE_TIER,
  F_CACHE_KEY,
  F_CACHE_RETENTION,
  F_FREQUENCY,
  F_PRESENCE,
  F_LOGIT_BIAS,
  F_STOP,
  F_PONDER,
  F_COUNT
};

/* type: the JSON type a non-null value must have (-1 a number, JSON_TRUE a boolean, JSON_NULL
 * any); pass: chat completions has the field too, and it is passed on as in chat. */
static const struct field {
  const char *name;
  size_t len; /* of name */
  int type;
  const char *want;
  int pass;
} fields[F_COUNT] = {
#define FIELD(name, ...)                                                                           \
  { name, sizeof name - 1, __VA_ARGS__ }
    [F_MODEL] = FIELD("model", JSON_STRING, "a string", 0),
    [F_INSTRUCTIONS] = FIELD("instructions", JSON_STRING, "a string", 0),
    [F_MOT] = FIELD("max_output_tokens", JSON_INTEGER, "an integer", 0),
    [F_TEMPERATURE] = FIELD("temperature", -1, "a number", 1),
    [F_TOP_P] = FIELD("top_p", -1, "a number", 1),
    [F_USER] = FIELD("user", JSON_STRING, "a string", 1),
    [F_SAFETY] = FIELD("safety_identifier", JSON_STRING, "a string", 1),
    [F_METADATA] = FIELD("metadata", JSON_OBJECT, "an object", 1),
    [F_STREAM] = FIELD("stream", JSON_TRUE, "a boolean", 1),
    [F_STORE] = FIELD("store", JSON_TRUE, "a boolean", 0),
    [F_BACKGROUND] = FIELD("background", JSON_TRUE, "a boolean", 0),
    [F_PTC] = FIELD("parallel_tool_calls", JSON_TRUE, "a boolean", 0),
    [F_INCLUDE] = FIELD("include", JSON_ARRAY, "an array", 0),
    [F_REASONING] = FIELD("reasoning", JSON_OBJECT, "an object", 0),
    [F_INPUT] = FIELD("input", JSON_NULL, NULL, 0),
    [F_TOOLS] = FIELD("tools", JSON_NULL, NULL, 0),
    [F_TOOL_CHOICE] = FIELD("tool_choice", JSON_NULL, NULL, 0),
    [F_TEXT] = FIELD("text", JSON_NULL, NULL, 0),
    [F_PREVIOUS] = FIELD("previous_response_id", JSON_NULL, NULL, 0),
    [F_CONVERSATION] = FIELD("conversation", JSON_NULL, NULL, 0),
    [F_TOP_LOGPROBS] = FIELD("top_logprobs", JSON_NULL, NULL, 1),
    [F_SEED] = FIELD("seed", JSON_NULL, NULL, 1),
    [F_SERVICE_TIER] = FIELD("service_tier", JSON_NULL, NULL, 1),
    [F_CACHE_KEY] = FIELD("prompt_cache_key", JSON_NULL, NULL, 1),
    [F_CACHE_RETENTION] = FIELD("prompt_cache_retention", JSON_NULL, NULL, 1),
    [F_FREQUENCY] = FIELD("frequency_penalty", JSON_NULL, NULL, 1),
    [F_PRESENCE] = FIELD("presence_penalty", JSON_NULL, NULL, 1),
    [F_LOGIT_BIAS] = FIELD("logit_bias", JSON_NULL, NULL, 1),
    [F_STOP] = FIELD("stop", JSON_NULL, NULL, 1),
    [F_PONDER] = FIELD("ponder", JSON_NULL, NULL, 1),
#undef FIELD
};

/* The field named key, or -1: the first byte and the length pick the candidates. */
static int field_of(const char *key) {
  size_t n = strlen(key);
  for (int f = 0; f < F_COUNT; f++)
    if (fields[f].len == n && fields[f].name[0] == key[0] && !strcmp(fields[f].name, key))
      return f;
  return -1;
}

/* What one pass over the body found: each field's value (NULL when absent or null: null counts
 * as absent, as in the OpenAI API), the first member of a wrong type (in the body's order), and
 * the fields to pass on, in the body's order. */
typedef struct members {
  const json_t *v[F_COUNT];
  int bad_type; /* a field index, or -1 */
  const char *pass_key[F_COUNT];
  const json_t *pass_val[F_COUNT];
  int npass;
} members_t;

static void read_members(const json_t *body, members_t *m) {
  memset(m->v, 0, sizeof m->v);
  m->bad_type = -1;
  m->npass = 0;
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)body, key, v) {
    int f = field_of(key);
    if (f < 0 || json_is_null(v))
      continue;
    m->v[f] = v;
    int t = fields[f].type;
    int ok = t == JSON_NULL   ? 1
             : t == -1        ? json_is_number(v)
             : t == JSON_TRUE ? json_is_boolean(v)
                              : (int)json_typeof(v) == t;
    if (!ok && m->bad_type < 0)
      m->bad_type = f;
    if (fields[f].pass) {
      m->pass_key[m->npass] = key;
      m->pass_val[m->npass++] = v;
    }
  }
}

/* `head` (the member's ,"key": as a literal), then v as compact JSON, else the literal dflt. */
#define ECHO(b, head, v, dflt) (LIT(b, head) | ((v) ? pd_json_write(b, v) : LIT(b, dflt)))

static int translate(const json_t *body, const char *limit_param, pd_responses_req_t *out,
                     pd_responses_error_t *err) {
  json_t *chat = out->chat;
  members_t mb;
  read_members(body, &mb);
  const json_t *const *f = mb.v;
  if (f[F_PREVIOUS])
    return bad(err, "previous_response_id", STATELESS_MSG);
  if (f[F_CONVERSATION])
    return bad(err, "conversation", STATELESS_MSG);
  if (mb.bad_type >= 0)
    return bad(err, fields[mb.bad_type].name, "Invalid type for '%s': expected %s.",
               fields[mb.bad_type].name, fields[mb.bad_type].want);
  if (json_is_true(f[F_BACKGROUND]))
    return bad(err, "background", STATELESS_MSG);
  const json_t *model = f[F_MODEL];
  if (!model)
    return bad(err, "model", "You must provide a model parameter.");
  const json_t *mot = f[F_MOT];
  if (mot && json_integer_value(mot) < 1)
    return bad(err, "max_output_tokens",
               "Invalid value for 'max_output_tokens': expected an integer of at least 1.");
  const json_t *reasoning = f[F_REASONING];
  const json_t *effort = reasoning ? opt(reasoning, "effort") : NULL;
  const json_t *summary = reasoning ? opt(reasoning, "summary") : NULL;
  if (!summary && reasoning)
    summary = opt(reasoning, "generate_summary"); /* its older name */
  if (effort && !json_is_string(effort))
    return bad(err, "reasoning.effort", "Invalid type for 'reasoning.effort': expected a string.");
  if (summary) {
    const char *s = json_string_value(summary);
    if (!s || (strcmp(s, "auto") && strcmp(s, "concise") && strcmp(s, "detailed")))
      return bad(err, "reasoning.summary",
                 "Invalid value for 'reasoning.summary'. Supported values are: 'auto', 'concise' "
                 "and 'detailed'.");
    out->summary = 1;
  }
  out->stream = json_is_true(f[F_STREAM]);

  int rc;
  if ((rc = set_ref(chat, "model", model)) < 0)
    return rc;
  json_t *msgs = json_array();
  if ((rc = set_new(chat, "messages", msgs)) < 0)
    return rc;
  const json_t *instructions = f[F_INSTRUCTIONS];
  if (instructions && json_string_length(instructions) > 0) {
    json_t *m = obj_new("role", json_string_nocheck("system"), "content",
                        json_incref((json_t *)instructions));
    if (!m || json_array_append_new(msgs, m) < 0)
      return -2;
  }
  const json_t *input = f[F_INPUT];
  if (input && (rc = input_items(msgs, input, err)) < 0)
    return rc;
  if (json_array_size(msgs) == 0)
    return bad(err, "input", "Missing required parameter: 'input'.");

  const json_t *tools = f[F_TOOLS];
  if (tools && (rc = chat_tools(chat, tools, err)) < 0)
    return rc;
  const json_t *tc = f[F_TOOL_CHOICE], *ptc = f[F_PTC];
  if (tc) {
    json_t *tc_chat = json_object();
    if (!tc_chat)
      return -2;
    rc = chat_tool_choice(tc_chat, tc, err);
    /* Without tools a chat upstream refuses tool_choice and parallel_tool_calls. */
    const json_t *choice = json_object_get(tc_chat, "tool_choice");
    if (rc == 0 && choice && json_object_get(chat, "tools") &&
        json_object_set(chat, "tool_choice", (json_t *)choice) < 0)
      rc = -2;
    json_decref(tc_chat);
    if (rc < 0)
      return rc;
  }
  if (ptc && json_object_get(chat, "tools") &&
      json_object_set(chat, "parallel_tool_calls", (json_t *)ptc) < 0)
    return -2;
  const json_t *text = f[F_TEXT];
  if (text && (rc = chat_text(chat, text, err)) < 0)
    return rc;
  if (mot && (rc = set_ref(chat, limit_param ? limit_param : "max_tokens", mot)) < 0)
    return rc;
  if (effort && (rc = set_ref(chat, "reasoning_effort", effort)) < 0)
    return rc;
  /* Of what is passed on, only "stop" has a shape the engine checks (pd_engine_validate): it
   * is checked here the same way, so that every translated request is one the engine takes. */
  const json_t *stop = f[F_STOP];
  int stop_ok = !stop || json_is_string(stop) || json_is_array(stop);
  for (size_t i = 0; stop_ok && json_is_array(stop) && i < json_array_size(stop); i++)
    stop_ok = json_is_string(json_array_get(stop, i));
  if (!stop_ok)
    return bad(err, "stop", "Invalid type for 'stop': expected a string or an array of strings.");
  for (int i = 0; i < mb.npass; i++)
    if ((rc = set_ref(chat, mb.pass_key[i], mb.pass_val[i])) < 0)
      return rc;
  /* A chat upstream returns top_logprobs only with logprobs on. */
  if (json_integer_value(f[F_TOP_LOGPROBS]) > 0 &&
      (rc = set_new(chat, "logprobs", json_true())) < 0)
    return rc;

  /* What the response object repeats, as JSON text written once (a stream repeats the object
   * in three events). */
  pd_buf_t *h = &out->echo, *m = h, *t = h;
  rc = pd_buf_reserve(h, 512) ? 0 : -1;
  rc |= ECHO(h, ",\"instructions\":", instructions, "null");
  rc |= ECHO(h, ",\"max_output_tokens\":", mot, "null");
  out->echo_head = h->len;
  rc |= ECHO(m, ",\"parallel_tool_calls\":", ptc, "true");
  rc |= ECHO(m, ",\"previous_response_id\":null,\"reasoning\":{\"effort\":", effort, "null");
  rc |= ECHO(m, ",\"summary\":", summary, "null");
  rc |= LIT(m, "},\"store\":false");
  rc |= ECHO(m, ",\"temperature\":", f[F_TEMPERATURE], "null");
  rc |= ECHO(m, ",\"text\":", text, "{\"format\":{\"type\":\"text\"}}");
  rc |= ECHO(m, ",\"tool_choice\":", tc, "\"auto\"");
  rc |= ECHO(m, ",\"tools\":", tools, "[]");
  rc |= ECHO(m, ",\"top_p\":", f[F_TOP_P], "null");
  rc |= LIT(m, ",\"truncation\":\"disabled\"");
  out->echo_mid = m->len - out->echo_head;
  rc |= ECHO(t, ",\"user\":", f[F_USER], "null");
  rc |= ECHO(t, ",\"metadata\":", f[F_METADATA], "{}");
  if (rc)
    return -2;
  return 0;
}

int pd_responses_req_translate(const json_t *body, const char *limit_param, pd_responses_req_t *out,
                               pd_responses_error_t *err) {
  memset(out, 0, sizeof *out);
  err->message[0] = err->param[0] = '\0';
  if (!json_is_object(body))
    return bad(err, NULL, "The request body must be a JSON object.");
  out->chat = json_object();
  int rc = out->chat ? translate(body, limit_param, out, err) : -2;
  if (rc < 0) {
    pd_responses_req_free(out);
    if (rc == -2)
      snprintf(err->message, sizeof err->message, "Out of memory.");
  }
  return rc;
}

void pd_responses_req_free(pd_responses_req_t *r) {
  if (!r)
    return;
  json_decref(r->chat);
  r->chat = NULL;
  pd_buf_free(&r->echo);
  pd_buf_init(&r->echo);
  r->echo_head = r->echo_mid = 0;
}

/* ---- the rounds-0 fast path: the upstream body written from the client's bytes ---------------
 *
 * One pass of base/json.h's tokenizer over the body, for the requests most clients send: it
 * handles what it can write byte for byte as the tree path would (translate, then the relay's
 * removals of "stream" and "ponder" and the route's model: app/relay.c) and gives up (returns
 * 1: the tree path then decides, with its own 400s) on everything else: "stream" true (a
 * stream runs the engine), a top-level key that is
 * escaped or given twice, "ponder", "reasoning", "text", non-empty "tools", a "tool_choice"
 * object, function_call and function_call_output items, content parts other than text, an
 * assistant message without a string or parts content, objects with escaped or repeated keys
 * inside passed-on values, and every request the tree path refuses. */

/* Room for the content parts of one message item (more: the tree path). */
#define FAST_PARTS 16
/* Nesting of a passed-on value (metadata, logit_bias, ...) the fast path copies. */
#define FAST_DEPTH 32

typedef struct fast {
  pd_json_scan_t s;
  pd_buf_t *msgs, *pass; /* NULL: only check */
  pd_buf_t tmp;          /* decoded text */
  size_t nmsgs;
} fast_t;

static int raw_eq(const pd_json_tok_t *t, const char *s, size_t n) {
  return t->len == n && memcmp(t->s, s, n) == 0;
}
#define RAW_IS(t, lit) raw_eq(t, lit, sizeof lit - 1)

/* The field named by the raw key bytes, or -1. */
static int field_of_raw(const pd_json_tok_t *k) {
  for (int f = 0; f < F_COUNT; f++)
    if (fields[f].len == k->len && fields[f].name[0] == k->s[0] &&
        !memcmp(fields[f].name, k->s, k->len))
      return f;
  return -1;
}

/* A string token as pd_json_write writes its decoded text. */
static int put_str(fast_t *x, pd_buf_t *out, const pd_json_tok_t *t) {
  if (!t->esc) {
    char *w = pd_buf_reserve(out, t->len + 2);
    if (!w)
      return -2;
    w[0] = '"';
    memcpy(w + 1, t->s, t->len);
    w[t->len + 1] = '"';
    pd_buf_commit(out, t->len + 2);
    return 0;
  }
  pd_buf_reset(&x->tmp);
  char *d = pd_buf_reserve(&x->tmp, t->len);
  if (!d)
    return -2;
  size_t n = pd_json_unescape(t->s, t->len, d);
  return pd_buf_append_json_str(out, d, n) < 0 ? -2 : 0;
}

/* A scalar token as pd_json_write writes the value jansson makes of it. */
static int put_scalar(fast_t *x, pd_buf_t *out, const pd_json_tok_t *t) {
  switch (t->type) {
  case PD_JSON_STRING:
    return put_str(x, out, t);
  case PD_JSON_INTEGER:
    return pd_buf_append_long(out, (long)t->ival) < 0 ? -2 : 0;
  case PD_JSON_REAL: {
    double d;
    if (pd_json_real(t, &d) < 0)
      return -2;
    json_t *j = json_real(d);
    int rc = j && pd_json_write(out, j) == 0 ? 0 : -2;
    json_decref(j);
    return rc;
  }
  case PD_JSON_TRUE:
    return LIT(out, "true") < 0 ? -2 : 0;
  case PD_JSON_FALSE:
    return LIT(out, "false") < 0 ? -2 : 0;
  default:
    return LIT(out, "null") < 0 ? -2 : 0;
  }
}

/* The value t begins, copied as pd_json_write writes its tree (out NULL: only read). 1 when an
 * object in it has an escaped or repeated key (jansson keeps the first place and the last
 * value: the tree path writes that), or it nests deeper than FAST_DEPTH; -1 refused. */
static int put_value(fast_t *x, pd_buf_t *out, const pd_json_tok_t *t, int depth) {
  if (t->type != PD_JSON_OBJECT && t->type != PD_JSON_ARRAY)
    return t->type == PD_JSON_ERROR ? -1 : out ? put_scalar(x, out, t) : 0;
  if (depth >= FAST_DEPTH)
    return 1;
  int obj = t->type == PD_JSON_OBJECT;
  if (out && pd_buf_append(out, obj ? "{" : "[", 1) < 0)
    return -2;
  pd_json_tok_t keys[FAST_PARTS];
  size_t n = 0;
  for (;; n++) {
    pd_json_tok_t k, v;
    int type = pd_json_next(&x->s, &k);
    if (type == PD_JSON_OBJECT_END || type == PD_JSON_ARRAY_END)
      break;
    if (type == PD_JSON_ERROR)
      return -1;
    if (obj) {
      if (k.esc || n >= FAST_PARTS)
        return 1;
      for (size_t i = 0; i < n; i++)
        if (raw_eq(&keys[i], k.s, k.len))
          return 1;
      keys[n] = k;
      if (out && ((n && pd_buf_append(out, ",", 1) < 0) || put_str(x, out, &k) < 0 ||
                  pd_buf_append(out, ":", 1) < 0))
        return -2;
      pd_json_next(&x->s, &v);
    } else {
      v = k;
      if (out && n && pd_buf_append(out, ",", 1) < 0)
        return -2;
    }
    int rc = put_value(x, out, &v, depth + 1);
    if (rc)
      return rc;
  }
  return out && pd_buf_append(out, obj ? "}" : "]", 1) < 0 ? -2 : 0;
}

/* One message item as the tree path reads it: the last role, type and content. */
typedef struct fitem {
  pd_json_tok_t role, type, content;
  int has_role, has_type, has_content;
  size_t nparts;
  pd_json_tok_t text[FAST_PARTS]; /* a parts content: each part's text */
} fitem_t;

/* A content array (its '[' read): every part a text part ({"type": input_text, output_text or
 * text, "text": a string}, other members ignored as the tree path does). 1 otherwise. */
static int fast_parts(fast_t *x, fitem_t *it) {
  pd_json_tok_t t, k, v;
  for (;;) {
    int type = pd_json_next(&x->s, &t);
    if (type == PD_JSON_ARRAY_END)
      return 0;
    if (type != PD_JSON_OBJECT || it->nparts >= FAST_PARTS)
      return type == PD_JSON_ERROR ? -1 : 1;
    int has_t = 0, has_x = 0, ok_t = 0;
    for (;;) {
      type = pd_json_next(&x->s, &k);
      if (type == PD_JSON_OBJECT_END)
        break;
      if (type != PD_JSON_KEY)
        return -1;
      if (k.esc)
        return 1;
      pd_json_next(&x->s, &v);
      if (pd_json_skip(&x->s, &v) < 0)
        return -1;
      if (RAW_IS(&k, "type")) {
        if (has_t++)
          return 1;
        ok_t = v.type == PD_JSON_STRING &&
               (RAW_IS(&v, "input_text") || RAW_IS(&v, "output_text") || RAW_IS(&v, "text"));
      } else if (RAW_IS(&k, "text")) {
        if (has_x++ || v.type != PD_JSON_STRING)
          return 1;
        it->text[it->nparts] = v;
      }
    }
    if (!ok_t || !has_x)
      return 1;
    it->nparts++;
  }
}

/* One input item (its '{' read) into *it. 1 when it is not one the fast path writes. */
static int fast_item(fast_t *x, fitem_t *it) {
  pd_json_tok_t k, v;
  memset(it, 0, offsetof(fitem_t, text));
  for (;;) {
    int type = pd_json_next(&x->s, &k);
    if (type == PD_JSON_OBJECT_END)
      return 0;
    if (type != PD_JSON_KEY)
      return -1;
    if (k.esc)
      return 1;
    pd_json_next(&x->s, &v);
    if (RAW_IS(&k, "content")) {
      if (it->has_content++)
        return 1;
      it->content = v;
      if (v.type == PD_JSON_ARRAY) {
        int rc = fast_parts(x, it);
        if (rc)
          return rc;
        continue;
      }
      if (v.type != PD_JSON_STRING)
        return v.type == PD_JSON_ERROR ? -1 : 1;
      continue;
    }
    if (pd_json_skip(&x->s, &v) < 0)
      return -1;
    if (RAW_IS(&k, "role")) {
      if (it->has_role++ || v.type != PD_JSON_STRING || v.esc)
        return 1;
      it->role = v;
    } else if (RAW_IS(&k, "type")) {
      if (it->has_type++ || v.type != PD_JSON_STRING || v.esc)
        return 1;
      it->type = v;
    }
  }
}

/* An assistant content's text, decoded, joined, without a leading <think> block. */
static int put_assistant(fast_t *x, const fitem_t *it) {
  pd_buf_t *b = &x->tmp;
  pd_buf_reset(b);
  size_t n = it->content.type == PD_JSON_STRING ? 1 : it->nparts;
  const pd_json_tok_t *t = it->content.type == PD_JSON_STRING ? &it->content : it->text;
  for (size_t i = 0; i < n; i++) {
    char *d = pd_buf_reserve(b, t[i].len);
    if (!d)
      return -2;
    if (!t[i].esc)
      memcpy(d, t[i].s, t[i].len);
    pd_buf_commit(b, t[i].esc ? pd_json_unescape(t[i].s, t[i].len, d) : t[i].len);
  }
  const char *s = b->len ? pd_buf_data(b) : "";
  size_t len = b->len;
  pd_api_strip_think(&s, &len);
  return pd_buf_append_json_str(x->msgs, s, len) < 0 ? -2 : 0;
}

/* A message item read into it, as a chat message (x->msgs set). */
static int put_message(fast_t *x, const fitem_t *it, int assistant) {
  pd_buf_t *m = x->msgs;
  int rc = LIT(m, ",{\"role\":") |
           (RAW_IS(&it->role, "developer") ? LIT(m, "\"system\"") : put_str(x, m, &it->role)) |
           LIT(m, ",\"content\":");
  if (rc)
    return -2;
  if (assistant)
    rc = put_assistant(x, it);
  else if (it->content.type == PD_JSON_STRING)
    rc = put_str(x, m, &it->content);
  else {
    rc = LIT(m, "[");
    for (size_t i = 0; !rc && i < it->nparts; i++)
      rc = (i ? LIT(m, ",{\"type\":\"text\",\"text\":") : LIT(m, "{\"type\":\"text\",\"text\":")) |
           put_str(x, m, &it->text[i]) | LIT(m, "}");
    rc |= LIT(m, "]");
  }
  return rc || LIT(m, "}") ? -2 : 0;
}

/* The "input" array (its '[' read). */
static int fast_input(fast_t *x) {
  pd_json_tok_t t;
  fitem_t it;
  for (;;) {
    int type = pd_json_next(&x->s, &t);
    if (type == PD_JSON_ARRAY_END)
      return 0;
    if (type != PD_JSON_OBJECT)
      return type == PD_JSON_ERROR ? -1 : 1;
    int rc = fast_item(x, &it);
    if (rc)
      return rc;
    if (it.has_type && RAW_IS(&it.type, "reasoning"))
      continue; /* earlier thinking is not sent upstream (SPEC section 5) */
    if (it.has_type && !RAW_IS(&it.type, "message"))
      return 1;
    if (!it.has_role || !it.has_content)
      return 1;
    int assistant = RAW_IS(&it.role, "assistant");
    if (!assistant && !RAW_IS(&it.role, "user") && !RAW_IS(&it.role, "system") &&
        !RAW_IS(&it.role, "developer"))
      return 1;
    if (x->msgs && (rc = put_message(x, &it, assistant)) < 0)
      return rc;
    x->nmsgs++;
  }
}

/* A member's value copied to x->pass as ,"key":value; *off and *len (when not NULL) get where
 * the value's text starts and its length. */
static int fast_pass(fast_t *x, const pd_json_tok_t *k, const pd_json_tok_t *v, size_t *off,
                     size_t *len) {
  pd_buf_t *p = x->pass;
  if (p && (LIT(p, ",") | put_str(x, p, k) | LIT(p, ":")))
    return -2;
  size_t start = p ? p->len : 0;
  int rc = put_value(x, p, v, 0);
  if (off && p) {
    *off = start;
    *len = p->len - start;
  }
  return rc;
}

/* What the body's pass found for the writer. */
typedef struct fres {
  pd_json_tok_t model, instructions, mot, tool_choice, ptc, user;
  size_t off[F_COUNT], len[F_COUNT]; /* temperature, top_p, user, metadata in x->pass */
  int seen[F_COUNT];
  int logprobs;
} fres_t;

/* The pass over b. 0: the fast path writes it (x->msgs and x->pass filled when set); 1: the
 * tree path decides; -2: out of memory. */
static int fast_run(fast_t *x, const char *b, size_t n, fres_t *r) {
  pd_json_tok_t k, v;
  memset(r, 0, sizeof *r);
  pd_json_scan_init(&x->s, b, n);
  if (pd_json_next(&x->s, &k) != PD_JSON_OBJECT)
    return 1;
  for (;;) {
    int type = pd_json_next(&x->s, &k);
    if (type == PD_JSON_OBJECT_END)
      break;
    if (type != PD_JSON_KEY || k.esc)
      return 1;
    int f = field_of_raw(&k);
    pd_json_next(&x->s, &v);
    if (f < 0 || v.type == PD_JSON_NULL) {
      if (pd_json_skip(&x->s, &v) < 0)
        return 1;
      if (f >= 0 && r->seen[f]++)
        return 1;
      continue;
    }
    if (r->seen[f]++)
      return 1;
    int t = v.type, rc = 0;
    int num = t == PD_JSON_INTEGER || t == PD_JSON_REAL,
        boolean = t == PD_JSON_TRUE || t == PD_JSON_FALSE;
    switch (f) {
    case F_MODEL:
      if (t != PD_JSON_STRING || v.esc)
        return 1;
      r->model = v;
      break;
    case F_INSTRUCTIONS:
      if (t != PD_JSON_STRING)
        return 1;
      r->instructions = v;
      break;
    case F_MOT:
      if (t != PD_JSON_INTEGER || v.ival < 1)
        return 1;
      r->mot = v;
      break;
    case F_TEMPERATURE:
    case F_TOP_P:
      if (!num)
        return 1;
      rc = fast_pass(x, &k, &v, &r->off[f], &r->len[f]);
      break;
    case F_USER:
    case F_SAFETY:
      if (t != PD_JSON_STRING || (f == F_USER && v.esc))
        return 1;
      if (f == F_USER)
        r->user = v;
      rc = fast_pass(x, &k, &v, &r->off[f], &r->len[f]);
      break;
    case F_METADATA:
      if (t != PD_JSON_OBJECT)
        return 1;
      rc = fast_pass(x, &k, &v, &r->off[f], &r->len[f]);
      break;
    case F_STREAM:
      /* A stream runs the engine from the tree: the pass stops at once. false is passed on,
       * then removed by the relay. */
      if (t != PD_JSON_FALSE)
        return 1;
      break;
    case F_STORE:
      if (!boolean)
        return 1;
      break;
    case F_BACKGROUND:
      if (t != PD_JSON_FALSE)
        return 1;
      break;
    case F_PTC:
      if (!boolean)
        return 1;
      r->ptc = v;
      break;
    case F_INCLUDE:
      if (t != PD_JSON_ARRAY)
        return 1;
      rc = pd_json_skip(&x->s, &v);
      break;
    case F_INPUT:
      if (t == PD_JSON_STRING) {
        if (x->msgs && (LIT(x->msgs, ",{\"role\":\"user\",\"content\":") | put_str(x, x->msgs, &v) |
                        LIT(x->msgs, "}")))
          return -2;
        x->nmsgs = 1;
      } else if (t == PD_JSON_ARRAY) {
        rc = fast_input(x);
      } else
        return 1;
      break;
    case F_TOOLS:
      if (t != PD_JSON_ARRAY || pd_json_next(&x->s, &v) != PD_JSON_ARRAY_END)
        return 1;
      break;
    case F_TOOL_CHOICE:
      if (t != PD_JSON_STRING || v.esc ||
          !(RAW_IS(&v, "none") || RAW_IS(&v, "auto") || RAW_IS(&v, "required")))
        return 1;
      r->tool_choice = v;
      break;
    case F_TOP_LOGPROBS:
      r->logprobs = t == PD_JSON_INTEGER && v.ival > 0;
      rc = fast_pass(x, &k, &v, NULL, NULL);
      break;
    case F_STOP:
      if (t == PD_JSON_ARRAY) {
        /* checked as the engine does: an array of strings */
        pd_json_scan_t save = x->s;
        pd_json_tok_t e;
        int et;
        while ((et = pd_json_next(&x->s, &e)) == PD_JSON_STRING)
          ;
        if (et != PD_JSON_ARRAY_END)
          return 1;
        x->s = save;
      } else if (t != PD_JSON_STRING)
        return 1;
      rc = fast_pass(x, &k, &v, NULL, NULL);
      break;
    case F_SEED:
    case F_SERVICE_TIER:
    case F_CACHE_KEY:
    case F_CACHE_RETENTION:
    case F_FREQUENCY:
    case F_PRESENCE:
    case F_LOGIT_BIAS:
      rc = fast_pass(x, &k, &v, NULL, NULL);
      break;
    default: /* reasoning, text, previous_response_id, conversation, ponder */
      return 1;
    }
    if (rc)
      return rc < -1 ? rc : 1;
  }
  if (pd_json_next(&x->s, &k) != PD_JSON_END)
    return 1;
  if (!r->seen[F_MODEL] || r->model.type != PD_JSON_STRING)
    return 1;
  if (x->nmsgs == 0 && !(r->instructions.type == PD_JSON_STRING && r->instructions.len > 0))
    return 1; /* no message: the tree path's 400 */
  return 0;
}

/* The members of the response object's echo (as translate writes them) from what the pass
 * found. */
static int fast_echo(fast_t *x, const fres_t *r, pd_responses_req_t *out) {
  pd_buf_t *h = &out->echo;
  const char *p = x->pass ? pd_buf_data(x->pass) : "";
#define PASSED(h, head, f, dflt)                                                                   \
  (LIT(h, head) | (r->len[f] ? pd_buf_append(h, p + r->off[f], r->len[f]) : LIT(h, dflt)))
  int rc = pd_buf_reserve(h, 512) ? 0 : -1;
  rc |= LIT(h, ",\"instructions\":");
  rc |= r->instructions.type == PD_JSON_STRING ? put_str(x, h, &r->instructions) : LIT(h, "null");
  rc |= LIT(h, ",\"max_output_tokens\":");
  rc |= r->mot.type == PD_JSON_INTEGER ? pd_buf_append_long(h, (long)r->mot.ival) : LIT(h, "null");
  out->echo_head = h->len;
  rc |= LIT(h, ",\"parallel_tool_calls\":");
  rc |= r->ptc.type == PD_JSON_FALSE ? LIT(h, "false") : LIT(h, "true");
  rc |= LIT(h, ",\"previous_response_id\":null,\"reasoning\":{\"effort\":null,\"summary\":null},"
               "\"store\":false");
  rc |= PASSED(h, ",\"temperature\":", F_TEMPERATURE, "null");
  rc |= LIT(h, ",\"text\":{\"format\":{\"type\":\"text\"}},\"tool_choice\":");
  rc |= r->tool_choice.type == PD_JSON_STRING ? put_str(x, h, &r->tool_choice) : LIT(h, "\"auto\"");
  rc |= LIT(h, ",\"tools\":[]");
  rc |= PASSED(h, ",\"top_p\":", F_TOP_P, "null");
  rc |= LIT(h, ",\"truncation\":\"disabled\"");
  out->echo_mid = h->len - out->echo_head;
  rc |= PASSED(h, ",\"user\":", F_USER, "null");
  rc |= PASSED(h, ",\"metadata\":", F_METADATA, "{}");
#undef PASSED
  return rc ? -2 : 0;
}

int pd_responses_req_scan(const char *b, size_t n, pd_chat_scan_t *out) {
  fast_t x;
  fres_t r;
  memset(&x, 0, sizeof x);
  pd_buf_init(&x.tmp);
  int rc = fast_run(&x, b, n, &r);
  pd_buf_free(&x.tmp);
  if (rc)
    return 0;
  memset(out, 0, sizeof *out);
  out->model = r.model.s;
  out->model_len = r.model.len;
  if (r.user.type == PD_JSON_STRING) {
    out->user = r.user.s;
    out->user_len = r.user.len;
  }
  return 1;
}

int pd_responses_req_write(const char *b, size_t n, const char *model, const char *limit_param,
                           pd_buf_t *chat, pd_responses_req_t *out) {
  memset(out, 0, sizeof *out);
  fast_t x;
  fres_t r;
  memset(&x, 0, sizeof x);
  pd_buf_t msgs, pass;
  pd_buf_init(&msgs);
  pd_buf_init(&pass);
  pd_buf_init(&x.tmp);
  x.msgs = &msgs;
  x.pass = &pass;
  int rc = fast_run(&x, b, n, &r);
  if (rc == 0) {
    pd_buf_t *c = chat;
    int instr = r.instructions.type == PD_JSON_STRING && r.instructions.len > 0;
    rc = pd_buf_reserve(c, 64 + msgs.len + pass.len + strlen(model)) ? 0 : -1;
    rc |= LIT(c, "{\"model\":") | pd_buf_append_json_str(c, model, strlen(model)) |
          LIT(c, ",\"messages\":[");
    if (instr)
      rc |= LIT(c, "{\"role\":\"system\",\"content\":") | put_str(&x, c, &r.instructions) |
            LIT(c, "}") | pd_buf_append(c, pd_buf_data(&msgs), msgs.len);
    else
      rc |= pd_buf_append(c, pd_buf_data(&msgs) + 1, msgs.len - 1);
    rc |= LIT(c, "]");
    if (r.mot.type == PD_JSON_INTEGER)
      rc |= LIT(c, ",\"") | pd_buf_appends(c, limit_param ? limit_param : "max_tokens") |
            LIT(c, "\":") | pd_buf_append_long(c, (long)r.mot.ival);
    if (pass.len)
      rc |= pd_buf_append(c, pd_buf_data(&pass), pass.len);
    if (r.logprobs)
      rc |= LIT(c, ",\"logprobs\":true");
    rc |= LIT(c, "}");
    rc = rc ? -2 : fast_echo(&x, &r, out);
  }
  pd_buf_free(&msgs);
  pd_buf_free(&pass);
  pd_buf_free(&x.tmp);
  if (rc)
    pd_responses_req_free(out);
  return rc;
}
