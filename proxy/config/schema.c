/* The config schema's tables (schema.h): every key of SPEC section 3 as one row with its
 * type, bounds, default, secrecy, the field it lands in and README's description of it; and
 * the table walks every consumer shares (lookup with did-you-mean, defaults, string copies). */
#include "config/schema.h"
#include "config/config.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(pd_mode_t) == sizeof(int) && sizeof(pd_dialect_t) == sizeof(int) &&
                   sizeof(pd_reasoning_t) == sizeof(int) && sizeof(pd_log_level_t) == sizeof(int) &&
                   sizeof(pd_reasoning_field_t) == sizeof(int),
               "ENUM rows store an int");

const char *const pd_schema_mode_names[] = {"chat", "prefill", "completions", NULL};
const char *const pd_schema_dialect_names[] = {"vllm", "deepseek", "mistral", "llamacpp", NULL};
const char *const pd_schema_reasoning_names[] = {"field", "inline", "hidden", NULL};
static const char *const RFIELD_NAMES[] = {"reasoning_content", "reasoning", "both", NULL};
const char *const pd_schema_level_names[] = {"error", "warn", "info", "debug", NULL};
static const char *const LIMIT_PARAMS[] = {"max_tokens", "max_completion_tokens", NULL};

const char *const pd_schema_chatml[4] = {
    "<|im_start|>system\n{content}<|im_end|>\n",
    "<|im_start|>user\n{content}<|im_end|>\n",
    "<|im_start|>assistant\n{content}<|im_end|>\n",
    "<|im_start|>assistant\n",
};

#define N(keys) (sizeof keys / sizeof keys[0])
#define AT(type, field) .off = offsetof(type, field)

/* ---- the top level (pd_config_t) ---- */

#define CFG(field) AT(pd_config_t, field)
#define LIM(key, lo, d, docs)                                                                      \
  {                                                                                                \
    .name = #key, .type = PD_SCHEMA_LONG, CFG(limits.key), .min = lo, .max = LONG_MAX, .def = d,   \
    .doc = docs                                                                                    \
  }

static const pd_schema_key_t TOP[] = {
    {.name = "listen",
     .type = PD_SCHEMA_CUSTOM,
     .def = "127.0.0.1:8080",
     .hook = PD_HOOK_LISTEN,
     .doc = "`HOST:PORT` (`[::1]:8080` for IPv6; port 0 picks a free port)"},
    {.name = "workers",
     .type = PD_SCHEMA_INT,
     CFG(workers),
     .min = 0,
     .max = PD_SCHEMA_MAX_WORKERS,
     .def = "1",
     .doc = "event-loop threads sharing the port (SO_REUSEPORT); `0` = one per core"},
    {.name = "shutdown_grace_ms",
     .type = PD_SCHEMA_LONG,
     CFG(shutdown_grace_ms),
     .min = 0,
     .max = LONG_MAX,
     .def = "30000",
     .doc = "on SIGTERM/SIGINT, in-flight requests may finish this long"},
    {.name = "limits", .type = PD_SCHEMA_BLOCK, .sub = &pd_schema_limits},
    {.name = "log", .type = PD_SCHEMA_BLOCK, .sub = &pd_schema_log},
    {.name = "auth", .type = PD_SCHEMA_BLOCK, .sub = &pd_schema_auth},
    {.name = "feedback", .type = PD_SCHEMA_BLOCK, .sub = &pd_schema_feedback},
    {.name = "upstreams",
     .type = PD_SCHEMA_LIST,
     CFG(upstreams),
     .sub = &pd_schema_upstream,
     .count_off = offsetof(pd_config_t, nupstreams),
     .elem_size = sizeof(pd_upstream_cfg_t),
     .hook = PD_HOOK_UPSTREAMS},
    {.name = "routes",
     .type = PD_SCHEMA_LIST,
     CFG(routes),
     .sub = &pd_schema_route,
     .count_off = offsetof(pd_config_t, nroutes),
     .elem_size = sizeof(pd_route_t),
     .hook = PD_HOOK_ROUTES},
};
const pd_schema_table_t pd_schema_top = {"the top level", "", TOP, N(TOP), 0, 1};

static const pd_schema_key_t LIMITS[] = {
    LIM(max_body_bytes, 1, "16777216", "larger request bodies get 413"),
    LIM(max_header_bytes, 1, "65536", "larger request heads get 431"),
    LIM(header_timeout_ms, 0, "10000",
        "a request head must arrive within this (else 408, then close)"),
    LIM(idle_timeout_ms, 0, "60000",
        "idle keep-alive connections are closed; also bounds a stalled request body, "
        "and a client that takes no bytes of its response for this long"),
    LIM(max_connections, 1, "10000",
        "concurrent client connections (split evenly over workers); above it: 503 and "
        "close"),
    {.name = "max_upstream_calls",
     .type = PD_SCHEMA_LONG,
     CFG(limits.max_upstream_calls),
     .min = 1,
     .max = INT_MAX,
     .def = "256",
     .doc = "upstream calls one client request may cause: `n` × (rounds + 1), rounds after "
            "overrides and `effort` (with `min_think_tokens`, the rounds cap). Checked "
            "before any call; above it: 400 `invalid_request_error` naming the limit "
            "(param `n`, `x-ponder-rounds`, `ponder.rounds` or `reasoning_effort`). A "
            "rounds-0 request is one call"},
    LIM(max_reply_bytes, 1024, "16777216",
        "the largest upstream reply ponder holds whole (a non-streamed reply, a "
        "rounds-0 chat reply it checks, the model list), and the most thinking one "
        "chain may accumulate over all its calls, streamed or not. Above it: 502 "
        "`upstream_error`, or, once a stream has started, the stream's error event. "
        "Streamed answers are relayed with backpressure, not held, so they are not cut "
        "by it. Minimum 1024"),
};
const pd_schema_table_t pd_schema_limits = {"limits", "limits.", LIMITS, N(LIMITS), 0, 0};

static const pd_schema_key_t LOG[] = {
    {.name = "level",
     .type = PD_SCHEMA_ENUM,
     CFG(log_level),
     .def = "info",
     .names = pd_schema_level_names,
     .doc = "`error`, `warn`, `info`, `debug`"},
    {.name = "access_log",
     .type = PD_SCHEMA_NONEMPTY,
     CFG(access_log),
     .def = "-",
     .shown = "`\"-\"`",
     .doc = "`\"-\"` = stderr, a file path (appended), or `\"off\"`: one JSON line per "
            "request"},
};
const pd_schema_table_t pd_schema_log = {"log", "log.", LOG, N(LOG), 0, 0};

static const pd_schema_key_t AUTH[] = {
    {.name = "keys",
     .type = PD_SCHEMA_CUSTOM,
     .secret = 1,
     .shown = "`[]`",
     .hook = PD_HOOK_AUTH_KEYS,
     .doc = "when non-empty, clients must send `Authorization: Bearer <one of them>` "
            "(compared in constant time)"},
};
const pd_schema_table_t pd_schema_auth = {"auth", "auth.", AUTH, N(AUTH), 0, 0};

static const pd_schema_key_t FEEDBACK[] = {
    {.name = "secret",
     .type = PD_SCHEMA_STR,
     CFG(feedback.secret),
     .shown = "random per process",
     .secret = 1,
     .doc = "HMAC-SHA256 key of the `x-ponder-feedback-token` every chat and responses reply "
            "carries; give every replica the same one (e.g. `${PONDER_FEEDBACK_SECRET}`, 32 "
            "random bytes or more) and any of them accepts a token another issued, also after "
            "restarts. Unset or empty: a random key per process, so its tokens are accepted "
            "by that process only. Changing it refuses every token issued before (403)"},
    {.name = "max_age_s",
     .type = PD_SCHEMA_LONG,
     CFG(feedback.max_age_s),
     .min = 1,
     .max = LONG_MAX,
     .def = "604800",
     .doc = "feedback tokens older than this many seconds are refused (403); so is one issued "
            "more than 60 s in the future (replicas' clocks may differ that much)"},
};
const pd_schema_table_t pd_schema_feedback = {"feedback", "feedback.", FEEDBACK, N(FEEDBACK), 0, 0};

/* ---- upstreams[] (pd_upstream_cfg_t) ---- */

#define UP(field) AT(pd_upstream_cfg_t, field)

static const pd_schema_key_t UPSTREAM[] = {
    {.name = "name",
     .type = PD_SCHEMA_NONEMPTY,
     UP(name),
     .shown = "required",
     .hook = PD_HOOK_UPSTREAM_NAME,
     .doc = "referenced by routes; appears in metrics"},
    {.name = "base_url",
     .type = PD_SCHEMA_NONEMPTY,
     UP(base_url),
     .shown = "required",
     .hook = PD_HOOK_BASE_URL,
     .doc = "`http(s)://HOST[:PORT][/PATH][?QUERY]`. Forced calls go to its path + "
            "`/chat/completions` (or `/completions`); pass-through requests to its path + "
            "what follows `[prefix]/v1` in the client's path, with one `/` at the join "
            "(see [Security](#security)). A base URL without a path "
            "(`https://api.deepseek.com`) has the path `/`. A query in it "
            "(`?api-version=...`) is kept and the client's query follows after `&`. The "
            "port must be 1..65535; the URL must be ASCII, with no fragment and no "
            "backslash (else a config error)"},
    {.name = "api_key",
     .type = PD_SCHEMA_STR,
     UP(api_key),
     .shown = "none",
     .secret = 1,
     .hook = PD_HOOK_API_KEY,
     .doc = "sent as `Authorization: Bearer`; when absent the client's `Authorization` is "
            "forwarded"},
    {.name = "headers",
     .type = PD_SCHEMA_MAP,
     .shown = "`{}`",
     .secret = 1,
     .hook = PD_HOOK_HEADERS,
     .doc = "extra headers sent upstream (values are secrets: redacted in `--check-config`)"},
    {.name = "connect_timeout_ms",
     .type = PD_SCHEMA_LONG,
     UP(connect_timeout_ms),
     .min = 0,
     .max = LONG_MAX,
     .def = "10000",
     .doc = "per connection attempt"},
    {.name = "timeout_ms",
     .type = PD_SCHEMA_LONG,
     UP(timeout_ms),
     .min = 0,
     .max = LONG_MAX,
     .def = "600000",
     .doc = "the whole upstream call, every attempt, backoff and `Retry-After` wait "
            "included; `0` = none; on expiry: 504 `upstream_timeout`"},
    /* A day: a stall longer than that is no stall bound at all (0 says so), and this keeps the
     * backends' "last byte + stall" sums far from overflowing. */
    {.name = "stall_timeout_ms",
     .type = PD_SCHEMA_LONG,
     UP(stall_timeout_ms),
     .min = 0,
     .max = 86400000L,
     .def = "120000",
     .doc = "no byte from the upstream for this long during an attempt (connect to first "
            "byte included; time ponder holds the transfer paused for a slow client does "
            "not count): 504 `upstream_timeout` (\"no data from the upstream for N ms\"), "
            "or the stream's error event once the response started; `0` = none"},
    {.name = "retries",
     .type = PD_SCHEMA_INT,
     UP(retries),
     .min = 0,
     .max = INT_MAX,
     .def = "2",
     .doc = "retries on connect errors, 429 and 5xx while nothing of that call reached the "
            "client; `Retry-After` honoured (capped at 30 s), else exponential backoff; a "
            "retry is made only if it can start before `timeout_ms` runs out (else the "
            "error already received goes to the client)"},
    {.name = "max_connections",
     .type = PD_SCHEMA_INT,
     UP(max_connections),
     .min = 1,
     .max = INT_MAX,
     .def = "256",
     .doc = "concurrent connections to the upstream per worker (further calls queue)"},
    {.name = "max_connection_requests",
     .type = PD_SCHEMA_LONG,
     UP(max_connection_requests),
     .min = 0,
     .max = LONG_MAX,
     .def = "0",
     .doc = "calls one upstream connection takes before it is closed (HTTP/2: it takes no new "
            "stream and closes once its streams are done); `0` = no limit; not with "
            "PONDER_UPSTREAM_CLIENT=curl"},
    {.name = "max_connection_age_ms",
     .type = PD_SCHEMA_LONG,
     UP(max_connection_age_ms),
     .min = 0,
     .max = 86400000L * 365,
     .def = "0",
     .doc = "an upstream connection older than this (from its connect) takes no new call and "
            "is closed once idle, e.g. for a load balancer behind one name to see new "
            "connections; `0` = none"},
    {.name = "token_limit_param",
     .type = PD_SCHEMA_CHOICE,
     UP(token_limit_param),
     .def = "max_tokens",
     .names = LIMIT_PARAMS,
     .doc = "or `max_completion_tokens`: the field ponder uses when it sets a limit"},
    {.name = "http2",
     .type = PD_SCHEMA_BOOL,
     UP(http2),
     .shown = "`true` for `https://`, `false` for `http://`",
     .doc = "HTTP/2. `https://`: offered by ALPN beside HTTP/1.1, and spoken when the server "
            "chooses it; `false` offers HTTP/1.1 only. `http://`: `true` speaks HTTP/2 "
            "without TLS (h2c, prior knowledge), for servers that speak h2c only. Over "
            "HTTP/2, calls are multiplexed as streams over few connections (as many streams "
            "per connection as the server allows, up to `max_connections` connections)"},
    {.name = "tls", .type = PD_SCHEMA_BLOCK, .sub = &pd_schema_tls},
    {.name = "proxy",
     .type = PD_SCHEMA_NONEMPTY,
     UP(proxy),
     .shown = "none",
     .hook = PD_HOOK_PROXY,
     .doc = "an HTTP proxy `http://HOST:PORT` for this upstream (CONNECT tunnels "
            "`https://` ones); when absent, `https_proxy`, `http_proxy` and `no_proxy` "
            "decide, as curl reads them. Another scheme, a missing port, a path, a query "
            "or `user:password@` is a config error"},
};
const pd_schema_table_t pd_schema_upstream = {"an upstream", "upstreams[].",        UPSTREAM,
                                              N(UPSTREAM),   PD_HOOK_POST_UPSTREAM, 0};

static const pd_schema_key_t TLS[] = {
    {.name = "ca_file",
     .type = PD_SCHEMA_NONEMPTY,
     UP(tls_ca_file),
     .shown = "system store",
     .hook = PD_HOOK_TLS_FILE,
     .doc = "PEM CA bundle trusted for this `https://` upstream instead of the system store"},
    {.name = "cert_file",
     .type = PD_SCHEMA_NONEMPTY,
     UP(tls_cert_file),
     .shown = "none",
     .hook = PD_HOOK_TLS_FILE,
     .doc = "client certificate (PEM) for mutual TLS; needs `key_file`"},
    {.name = "key_file",
     .type = PD_SCHEMA_NONEMPTY,
     UP(tls_key_file),
     .shown = "none",
     .hook = PD_HOOK_TLS_FILE,
     .doc = "the client certificate's private key (PEM); needs `cert_file`"},
    {.name = "verify",
     .type = PD_SCHEMA_BOOL,
     UP(tls_verify),
     .def = "true",
     .doc = "`false`: no certificate or host-name check (warned at start-up and on every "
            "reload)"},
    {.name = "server_name",
     .type = PD_SCHEMA_NONEMPTY,
     UP(tls_server_name),
     .shown = "base URL's host",
     .hook = PD_HOOK_SERVER_NAME,
     .doc = "the name sent as SNI and checked against the certificate when it is not the "
            "base URL's host (an upstream reached by IP address, or through a name of its "
            "own); letters, digits, `-` and `.`"},
};
const pd_schema_table_t pd_schema_tls = {"tls",  "upstreams[].tls.", TLS,
                                         N(TLS), PD_HOOK_POST_TLS,   0};

/* ---- routes[] (pd_route_t) ---- */

#define RT(field) AT(pd_route_t, field)

static const pd_schema_key_t ROUTE[] = {
    {.name = "name",
     .type = PD_SCHEMA_NONEMPTY,
     RT(name),
     .shown = "required",
     .hook = PD_HOOK_ROUTE_NAME,
     .doc = "unique; in headers, logs and metrics"},
    {.name = "match", .type = PD_SCHEMA_BLOCK, .sub = &pd_schema_match, .hook = PD_HOOK_MATCH},
    {.name = "upstream",
     .type = PD_SCHEMA_CUSTOM,
     .shown = "first upstream",
     .hook = PD_HOOK_ROUTE_UPSTREAM,
     .doc = "which upstream"},
    {.name = "model",
     .type = PD_SCHEMA_STR,
     RT(model),
     .shown = "client's model",
     .hook = PD_HOOK_MODEL,
     .doc = "model name sent upstream"},
    {.name = "reasoning",
     .type = PD_SCHEMA_ENUM,
     RT(reasoning),
     .def = "field",
     .names = pd_schema_reasoning_names,
     .doc = "`field`, `inline` or `hidden`"},
    {.name = "reasoning_field",
     .type = PD_SCHEMA_ENUM,
     RT(reasoning_field),
     .def = "reasoning_content",
     .names = RFIELD_NAMES,
     .doc = "the thinking's field name in chat completions messages and deltas with `reasoning: "
            "field`: `reasoning_content`, `reasoning` or `both`"},
    {.name = "sticky",
     .type = PD_SCHEMA_CUSTOM,
     .def = "random",
     .hook = PD_HOOK_STICKY,
     .doc = "`header:NAME`, `body:user` or `random`: the A/B assignment key"},
    {.name = "allow_overrides",
     .type = PD_SCHEMA_BOOL,
     RT(allow_overrides),
     .def = "false",
     .doc = "allow per-request rounds/variant overrides"},
    {.name = "effort",
     .type = PD_SCHEMA_MAP,
     .shown = "none",
     .hook = PD_HOOK_EFFORT,
     .doc = "map `reasoning_effort` value → rounds, e.g. `{low: 1, medium: 2, high: 6}`"},
    {.name = "forcing",
     .type = PD_SCHEMA_CUSTOM,
     .sub = &pd_schema_policy,
     .shown = "default policy",
     .hook = PD_HOOK_FORCING,
     .doc = "a single policy (the route's one variant is named `default`)"},
    {.name = "variants",
     .type = PD_SCHEMA_LIST,
     RT(variants),
     .sub = &pd_schema_variant,
     .count_off = offsetof(pd_route_t, nvariants),
     .elem_size = sizeof(pd_variant_t),
     .shown = "—",
     .hook = PD_HOOK_VARIANTS,
     .doc = "`{name, weight, forcing}`: an A/B experiment; weights are relative integers ≥ "
            "1"},
};
const pd_schema_table_t pd_schema_route = {"a route", "routes[].",        ROUTE,
                                           N(ROUTE),  PD_HOOK_POST_ROUTE, 0};

static const pd_schema_key_t MATCH[] = {
    {.name = "path_prefix",
     .type = PD_SCHEMA_NONEMPTY,
     RT(path_prefix),
     .shown = "none",
     .hook = PD_HOOK_PATH_PREFIX,
     .doc = "clients use base URL `http://host:port/PREFIX/v1`"},
    {.name = "models",
     .type = PD_SCHEMA_CUSTOM,
     .shown = "none",
     .hook = PD_HOOK_MODELS,
     .doc = "requested model names this route serves (also listed by `/v1/models`)"},
};
const pd_schema_table_t pd_schema_match = {"match",  "routes[].match.",  MATCH,
                                           N(MATCH), PD_HOOK_POST_MATCH, 0};

static const pd_schema_key_t VARIANT[] = {
    {.name = "name",
     .type = PD_SCHEMA_NONEMPTY,
     AT(pd_variant_t, name),
     .shown = "required",
     .hook = PD_HOOK_VARIANT_NAME,
     .doc = "unique within the route; in headers, logs and metrics"},
    {.name = "weight",
     .type = PD_SCHEMA_INT,
     AT(pd_variant_t, weight),
     .min = 1,
     .max = INT_MAX,
     .def = "1",
     .doc = "relative integer ≥ 1"},
    {.name = "forcing",
     .type = PD_SCHEMA_BLOCK,
     AT(pd_variant_t, forcing),
     .sub = &pd_schema_policy,
     .shown = "default policy",
     .doc = "the variant's policy (the `forcing.` keys below)"},
};
const pd_schema_table_t pd_schema_variant = {"a variant", "routes[].variants[].", VARIANT,
                                             N(VARIANT),  PD_HOOK_POST_VARIANT,   0};

/* ---- a forcing policy (pd_policy_t) ---- */

#define POL(field) AT(pd_policy_t, field)
#define BUDGET(key, lo, d, docs)                                                                   \
  {                                                                                                \
    .name = #key, .type = PD_SCHEMA_INT, POL(key), .min = lo, .max = INT_MAX, .def = d,            \
    .doc = docs                                                                                    \
  }
#define TEXT(key, field, d, docs)                                                                  \
  { .name = key, .type = PD_SCHEMA_STR, POL(field), .def = d, .doc = docs }

static const pd_schema_key_t POLICY[] = {
    {.name = "mode",
     .type = PD_SCHEMA_ENUM,
     POL(mode),
     .def = "chat",
     .names = pd_schema_mode_names,
     .doc = "`chat`, `prefill` or `completions`"},
    {.name = "rounds",
     .type = PD_SCHEMA_INT,
     POL(rounds),
     .min = 0,
     .max = PD_SCHEMA_MAX_ROUNDS,
     .def = "2",
     .doc = "thinking calls (0..32); `0` = plain proxy"},
    BUDGET(think_budget, 1, "8192", "max tokens of one thinking call"),
    BUDGET(answer_budget, 1, "2048", "max tokens of the answer call unless the client set a limit"),
    BUDGET(min_think_tokens, 0, "0",
           "> 0: keep forcing until this many thinking tokens (rounds is the cap)"),
    BUDGET(max_think_tokens, 0, "0",
           "> 0: total thinking cap; each call gets min(think_budget, what is left)"),
    {.name = "prompts", .type = PD_SCHEMA_BLOCK, .sub = &pd_schema_prompts},
    {.name = "prefill", .type = PD_SCHEMA_BLOCK, .sub = &pd_schema_prefill},
    {.name = "template",
     .type = PD_SCHEMA_CUSTOM,
     .def = "chatml",
     .sub = &pd_schema_template,
     .hook = PD_HOOK_TEMPLATE,
     .doc = "completions mode: `chatml`, or `{system, user, assistant, assistant_start}` "
            "strings where `{content}` marks the message text"},
};
const pd_schema_table_t pd_schema_policy = {"forcing", "forcing.",           POLICY,
                                            N(POLICY), PD_HOOK_POST_FORCING, 0};

static const pd_schema_key_t PROMPTS[] = {
    TEXT("think", prompts.think, "Think for up to {think_budget} tokens.",
         "chat mode, appended to the last user message"),
    TEXT("wait", prompts.wait, "Wait? Did I make a mistake?",
         "chat mode, ends each earlier thinking turn"),
    TEXT("continue", prompts.cont,
         "Continue your thinking where you left off, correcting any mistakes if there is any. "
         "Think for up to {think_budget} tokens.",
         "chat mode"),
    TEXT("answer", prompts.answer,
         "Now provide the final answer. Respond in under {answer_budget} tokens!!!", "chat mode"),
};
const pd_schema_table_t pd_schema_prompts = {"prompts", "forcing.prompts.", PROMPTS, N(PROMPTS), 0,
                                             0};

static const pd_schema_key_t PREFILL[] = {
    {.name = "dialect",
     .type = PD_SCHEMA_ENUM,
     POL(prefill.dialect),
     .def = "vllm",
     .names = pd_schema_dialect_names,
     .doc = "`vllm`, `deepseek`, `mistral`, `llamacpp` (prefill mode)"},
    TEXT("think_open", prefill.think_open, "<think>\n", "prefill and completions modes"),
    {.name = "think_close",
     .type = PD_SCHEMA_STR,
     POL(prefill.think_close),
     .def = "</think>",
     .shown = "`\"</think>\"`",
     .doc = "the stop of thinking calls"},
    TEXT("wait", prefill.wait, "Wait", "appended when the model stops thinking too early"),
    TEXT("answer_open", prefill.answer_open, "\n\n", "after think_close, before the answer"),
    TEXT("length_cut", prefill.length_cut,
         "\nFinal Answer:", "after think_close when thinking was cut at a budget"),
};
const pd_schema_table_t pd_schema_prefill = {"prefill", "forcing.prefill.", PREFILL, N(PREFILL), 0,
                                             0};

/* A custom template: its four strings are read aside, then installed together or not at all
 * (config.c, read_template). Not README rows: forcing.template describes them. */
static const pd_schema_key_t TEMPLATE[] = {
    {.name = "system", .type = PD_SCHEMA_STR, POL(tmpl.system), .hook = PD_HOOK_CONTENT},
    {.name = "user", .type = PD_SCHEMA_STR, POL(tmpl.user), .hook = PD_HOOK_CONTENT},
    {.name = "assistant", .type = PD_SCHEMA_STR, POL(tmpl.assistant), .hook = PD_HOOK_CONTENT},
    {.name = "assistant_start", .type = PD_SCHEMA_STR, POL(tmpl.assistant_start)},
};
const pd_schema_table_t pd_schema_template = {
    "template", "forcing.template.", TEMPLATE, N(TEMPLATE), 0, 0};

/* ---- walks ---- */

static int edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 40 || lb > 40)
    return 99;
  int d[41][41];
  for (size_t i = 0; i <= la; i++)
    d[i][0] = (int)i;
  for (size_t j = 0; j <= lb; j++)
    d[0][j] = (int)j;
  for (size_t i = 1; i <= la; i++) {
    for (size_t j = 1; j <= lb; j++) {
      int m = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
      if (d[i - 1][j] + 1 < m)
        m = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < m)
        m = d[i][j - 1] + 1;
      d[i][j] = m;
    }
  }
  return d[la][lb];
}

const pd_schema_key_t *pd_schema_find(const pd_schema_table_t *t, const char *name,
                                      const char **hint) {
  int best = 3;
  *hint = NULL;
  for (size_t i = 0; i < t->nkeys; i++) {
    if (!strcmp(t->keys[i].name, name))
      return &t->keys[i];
    int d = edit_distance(t->keys[i].name, name);
    if (d < best) {
      best = d;
      *hint = t->keys[i].name;
    }
  }
  return NULL;
}

static int is_string(const pd_schema_key_t *k) {
  return k->type == PD_SCHEMA_STR || k->type == PD_SCHEMA_NONEMPTY || k->type == PD_SCHEMA_CHOICE;
}

static char *must_dup(const char *s) {
  char *d = s ? strdup(s) : NULL;
  if (s && !d) {
    fputs("ponder: out of memory\n", stderr);
    abort();
  }
  return d;
}

void pd_schema_defaults(const pd_schema_table_t *t, void *base, int heap) {
  for (size_t i = 0; i < t->nkeys; i++) {
    const pd_schema_key_t *k = &t->keys[i];
    char *field = (char *)base + k->off;
    if (k->type == PD_SCHEMA_BLOCK) {
      pd_schema_defaults(k->sub, field, heap);
      continue;
    }
    if (!k->def)
      continue;
    switch (k->type) {
    case PD_SCHEMA_INT:
      *(int *)field = (int)strtol(k->def, NULL, 10);
      break;
    case PD_SCHEMA_LONG:
      *(long *)field = strtol(k->def, NULL, 10);
      break;
    case PD_SCHEMA_BOOL:
      *(int *)field = !strcmp(k->def, "true");
      break;
    case PD_SCHEMA_ENUM:
      for (int e = 0; k->names[e]; e++)
        if (!strcmp(k->names[e], k->def))
          *(int *)field = e;
      break;
    case PD_SCHEMA_STR:
    case PD_SCHEMA_NONEMPTY:
    case PD_SCHEMA_CHOICE:
      *(char **)field = heap ? must_dup(k->def) : (char *)k->def;
      break;
    default: /* hooks set their own */
      break;
    }
  }
}

void pd_schema_free_strings(const pd_schema_table_t *t, void *base) {
  for (size_t i = 0; i < t->nkeys; i++) {
    const pd_schema_key_t *k = &t->keys[i];
    char *field = (char *)base + k->off;
    if (k->type == PD_SCHEMA_BLOCK) {
      pd_schema_free_strings(k->sub, field);
    } else if (is_string(k)) {
      free(*(char **)field);
      *(char **)field = NULL;
    }
  }
}
