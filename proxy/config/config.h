/* ponder configuration: the YAML/JSON schema of SPEC section 3, parsed and validated.
 *
 * A pd_config_t is immutable once loaded and shared by every worker thread; it is
 * reference counted so that a SIGHUP reload can swap it while in-flight requests keep
 * the one they started with. The keys, their defaults and bounds are rows of schema.c;
 * loading is config.c (with read.c, value.c and yaml.c, the only file that includes yaml.h),
 * the --check-config dump config_dump.c. */
#ifndef PD_CONFIG_H
#define PD_CONFIG_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>

#include "base/log.h"
#include "base/url.h"

typedef enum { PD_MODE_CHAT = 0, PD_MODE_PREFILL, PD_MODE_COMPLETIONS } pd_mode_t;
typedef enum {
  PD_DIALECT_VLLM = 0,
  PD_DIALECT_DEEPSEEK,
  PD_DIALECT_MISTRAL,
  PD_DIALECT_LLAMACPP
} pd_dialect_t;
typedef enum { PD_REASONING_FIELD = 0, PD_REASONING_INLINE, PD_REASONING_HIDDEN } pd_reasoning_t;
/* The name of the thinking field in chat completions messages and deltas (reasoning_field). */
typedef enum {
  PD_RFIELD_REASONING_CONTENT = 0, /* DeepSeek's name, and vLLM's before it renamed it */
  PD_RFIELD_REASONING,             /* vLLM's and OpenRouter's */
  PD_RFIELD_BOTH                   /* both, with the same text */
} pd_reasoning_field_t;
typedef enum { PD_STICKY_RANDOM = 0, PD_STICKY_HEADER, PD_STICKY_BODY_USER } pd_sticky_t;

/* A forcing policy (SPEC section 3 "Forcing policy"). Every string is owned by the config. */
typedef struct pd_policy {
  pd_mode_t mode;
  int rounds;           /* thinking calls; 0 = plain proxy */
  int think_budget;     /* max tokens of one thinking call */
  int answer_budget;    /* max tokens of the answer call unless the client set a limit */
  int min_think_tokens; /* > 0: keep forcing until this many thinking tokens (rounds = cap) */
  int max_think_tokens; /* > 0: total thinking cap */
  struct {
    char *think, *wait, *cont, *answer; /* "continue" in YAML; may contain {think_budget} etc */
  } prompts;
  struct {
    pd_dialect_t dialect;
    char *think_open, *think_close, *wait, *answer_open, *length_cut;
  } prefill;
  /* completions mode prompt template. Each of system/user/assistant holds "{content}" where
   * the message text goes; assistant_start opens the assistant turn being generated.
   * "chatml" is expanded into these four strings; template_name keeps what the user wrote
   * ("chatml" or "custom") for --check-config. */
  struct {
    char *system, *user, *assistant, *assistant_start;
  } tmpl;
  char *template_name;
} pd_policy_t;

typedef struct pd_variant {
  char *name; /* "default" for a route with a single forcing policy */
  int weight; /* relative integer > 0 */
  pd_policy_t forcing;
} pd_variant_t;

typedef struct pd_kv {
  char *name; /* header names are stored lower-case */
  char *value;
} pd_kv_t;

typedef struct pd_effort {
  char *name; /* reasoning_effort value, e.g. "low" */
  int rounds;
} pd_effort_t;

typedef struct pd_upstream_cfg {
  char *name;
  char *base_url;     /* without a trailing slash */
  pd_url_base_t base; /* base_url's parts (pointing into it), set by pd_config_load */
  char *api_key;      /* NULL when absent: the client's Authorization is forwarded */
  pd_kv_t *headers;
  size_t nheaders;
  long connect_timeout_ms;
  long timeout_ms; /* 0 = none */
  /* No byte from the upstream for this long during an attempt (not counting time ponder itself
   * paused the transfer): the call fails as a timeout. 0 = none. */
  long stall_timeout_ms;
  int retries;
  int max_connections;
  long max_connection_requests; /* calls per connection; 0 = no limit */
  long max_connection_age_ms;   /* a connection takes no new call past this age; 0 = none */
  char *token_limit_param;      /* "max_tokens" or "max_completion_tokens" */
  int http2; /* HTTP/2: https://, offered by ALPN (default on); http://, h2c (default off) */
  /* tls: for https:// upstreams. Paths are checked readable at load, relative ones resolved
   * against the config file's folder; NULL when not set. */
  char *tls_ca_file;   /* trust this CA bundle (PEM) instead of the system store */
  char *tls_cert_file; /* client certificate (mTLS); set together with tls_key_file */
  char *tls_key_file;
  int tls_verify;        /* 0: no certificate or host name check (warned at load) */
  char *tls_server_name; /* SNI and the name checked, when not the base_url's host; NULL */
  /* An HTTP proxy (http://host:port) for this upstream; NULL: $https_proxy / $http_proxy /
   * $no_proxy, read the way curl reads them, decide. */
  char *proxy;
} pd_upstream_cfg_t;

typedef struct pd_route {
  char *name;
  int has_match;     /* a `match` block was given (routes without one are catch-alls) */
  char *path_prefix; /* NULL when not set; stored without a trailing slash */
  char **models;
  size_t nmodels;
  size_t upstream; /* index into pd_config_t.upstreams */
  char *model;     /* model sent upstream; NULL = the client's */
  pd_reasoning_t reasoning;
  pd_reasoning_field_t reasoning_field;
  pd_sticky_t sticky;
  char *sticky_header; /* lower-case header name when sticky == PD_STICKY_HEADER */
  int allow_overrides;
  pd_effort_t *effort;
  size_t neffort;
  pd_variant_t *variants; /* always >= 1 */
  size_t nvariants;
  int total_weight;
} pd_route_t;

typedef struct pd_config {
  atomic_int refs;
  char *path; /* NULL when built from defaults only */
  char *listen_host;
  int listen_port;
  int workers; /* resolved: 0 in the file becomes the number of cores */
  long shutdown_grace_ms;
  struct {
    long max_body_bytes, max_header_bytes, header_timeout_ms, idle_timeout_ms, max_connections;
    long max_upstream_calls; /* upstream calls one client request may cause: n x (rounds + 1) */
    long max_reply_bytes;    /* one upstream reply, or one chain's accumulated thinking */
  } limits;
  pd_log_level_t log_level;
  char *access_log; /* "-" = stderr, "off", or a path */
  char **auth_keys;
  size_t nauth_keys;
  struct {
    char *secret;   /* HMAC key of feedback tokens (a secret); NULL or "": random per process */
    long max_age_s; /* tokens older than this are refused */
  } feedback;
  pd_upstream_cfg_t *upstreams; /* always >= 1 */
  size_t nupstreams;
  pd_route_t *routes; /* always >= 1 */
  size_t nroutes;
} pd_config_t;

/* Command-line values that override the file. NULL / -1 = not given. */
typedef struct pd_cli_overrides {
  const char *listen;   /* HOST:PORT */
  const char *upstream; /* base URL of the default upstream */
  int rounds;           /* rounds of the default policy */
  int workers;
  int log_level; /* pd_log_level_t or -1 */
} pd_cli_overrides_t;

/* Loads and validates a config. `path` may be NULL (built-in defaults, SPEC section 2).
 * On success returns 0 and *out holds a config with one reference (caller unrefs).
 * On failure returns -1, *out is NULL and *errors holds every problem, one per line, as
 * "file:line: message" (caller frees). Environment variables are read at load time. */
int pd_config_load(const char *path, const pd_cli_overrides_t *ov, pd_config_t **out,
                   char **errors);

/* Writes the effective config as YAML with secrets (api keys, auth keys, upstream header
 * values) replaced by "<redacted>". */
void pd_config_dump(const pd_config_t *cfg, FILE *f);

/* Calls warn once per configuration that is valid but unsafe, with a one-line message (no
 * secrets): today, auth.keys set while an upstream has no api_key, so the client's
 * Authorization (ponder's own key) would be forwarded to that upstream. Returns the number of
 * warnings. */
int pd_config_warnings(const pd_config_t *cfg, void (*warn)(void *ud, const char *msg), void *ud);

/* Fills a policy with SPEC's built-in defaults (strings are static: do not free them through
 * pd_config_unref; used by tests and by the default route). */
void pd_config_policy_defaults(pd_policy_t *p);

pd_config_t *pd_config_ref(pd_config_t *cfg);
void pd_config_unref(pd_config_t *cfg);

#endif
