/* Unit tests of proxy/config/ (config.c and the schema it reads): schema, defaults, errors with
 * lines, ${VAR}, JSON, CLI overrides, reference counting and the redacted dump. Fixtures:
 * $PONDER_TEST_DATA. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config.h"

static const pd_cli_overrides_t NO_OV = {NULL, NULL, -1, -1, -1};

/* Variables the loader reads: every test starts without them. */
static const char *const ENV_VARS[] = {"PONDER_UPSTREAM", "OPENAI_BASE_URL", "OPENAI_API_KEY",
                                       "PD_T_HOST",       "PD_T_PORT",       "PD_T_WORKERS",
                                       "PD_T_URL",        "PD_T_UNSET",      "PD_T_MODEL",
                                       "PD_T_AUTH_KEY",   "PD_T_EMPTY",      "PD_T_X"};

static int setup(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof ENV_VARS / sizeof *ENV_VARS; i++)
    unsetenv(ENV_VARS[i]);
  return 0;
}

static char *data_path(const char *name) {
  const char *dir = getenv("PONDER_TEST_DATA");
  char *p;
  assert_non_null(dir);
  assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
  return p;
}

/* Writes text to a fresh temporary file; caller unlinks and frees the path. */
static char *write_tmp(const char *text) {
  char *path = strdup("/tmp/ponder-test-config-XXXXXX");
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  FILE *f = fdopen(fd, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  return path;
}

static pd_config_t *load_file(const char *path, const pd_cli_overrides_t *ov) {
  pd_config_t *cfg = NULL;
  char *errors = NULL;
  int rc = pd_config_load(path, ov, &cfg, &errors);
  if (rc != 0)
    fail_msg("unexpected errors loading %s:\n%s", path ? path : "(defaults)", errors);
  assert_null(errors);
  assert_non_null(cfg);
  return cfg;
}

static pd_config_t *load_data(const char *name, const pd_cli_overrides_t *ov) {
  char *path = data_path(name);
  pd_config_t *cfg = load_file(path, ov);
  free(path);
  return cfg;
}

static pd_config_t *load_text(const char *text, const pd_cli_overrides_t *ov) {
  char *path = write_tmp(text);
  pd_config_t *cfg = load_file(path, ov);
  unlink(path);
  free(path);
  return cfg;
}

/* Loads a file that must fail; returns its errors with every "PATH:" written as "F:". */
static char *errors_of_file(const char *path, const pd_cli_overrides_t *ov) {
  pd_config_t *cfg = (pd_config_t *)1;
  char *errors = NULL;
  assert_int_equal(pd_config_load(path, ov, &cfg, &errors), -1);
  assert_null(cfg);
  assert_non_null(errors);
  size_t plen = path ? strlen(path) : 0;
  char *out = calloc(1, strlen(errors) + 1);
  const char *p = errors;
  char *o = out;
  while (*p) {
    if (plen && !strncmp(p, path, plen) && p[plen] == ':') {
      *o++ = 'F';
      p += plen;
    } else {
      *o++ = *p++;
    }
  }
  free(errors);
  return out;
}

static char *errors_of(const char *text, const pd_cli_overrides_t *ov) {
  char *path = write_tmp(text);
  char *e = errors_of_file(path, ov);
  unlink(path);
  free(path);
  return e;
}

static void assert_errors(const char *text, const char *expected) {
  char *e = errors_of(text, &NO_OV);
  assert_string_equal(e, expected);
  free(e);
}

static void assert_default_policy(const pd_policy_t *p, int rounds) {
  pd_policy_t d;
  pd_config_policy_defaults(&d);
  assert_int_equal(p->mode, PD_MODE_CHAT);
  assert_int_equal(p->rounds, rounds);
  assert_int_equal(p->think_budget, 8192);
  assert_int_equal(p->answer_budget, 2048);
  assert_int_equal(p->min_think_tokens, 0);
  assert_int_equal(p->max_think_tokens, 0);
  assert_string_equal(p->prompts.think, d.prompts.think);
  assert_string_equal(p->prompts.wait, d.prompts.wait);
  assert_string_equal(p->prompts.cont, d.prompts.cont);
  assert_string_equal(p->prompts.answer, d.prompts.answer);
  assert_int_equal(p->prefill.dialect, PD_DIALECT_VLLM);
  assert_string_equal(p->prefill.think_open, "<think>\n");
  assert_string_equal(p->prefill.think_close, "</think>");
  assert_string_equal(p->prefill.wait, "Wait");
  assert_string_equal(p->prefill.answer_open, "\n\n");
  assert_string_equal(p->prefill.length_cut, "\nFinal Answer:");
  assert_string_equal(p->template_name, "chatml");
  assert_string_equal(p->tmpl.system, "<|im_start|>system\n{content}<|im_end|>\n");
  assert_string_equal(p->tmpl.user, "<|im_start|>user\n{content}<|im_end|>\n");
  assert_string_equal(p->tmpl.assistant, "<|im_start|>assistant\n{content}<|im_end|>\n");
  assert_string_equal(p->tmpl.assistant_start, "<|im_start|>assistant\n");
}

static void assert_default_upstream_fields(const pd_upstream_cfg_t *u) {
  assert_int_equal(u->connect_timeout_ms, 10000);
  assert_int_equal(u->timeout_ms, 600000);
  assert_int_equal(u->stall_timeout_ms, 120000);
  assert_int_equal(u->retries, 2);
  assert_int_equal(u->max_connections, 256);
  assert_string_equal(u->token_limit_param, "max_tokens");
  assert_int_equal(u->nheaders, 0);
}

/* ---- defaults ---- */

static void test_policy_defaults(void **state) {
  (void)state;
  pd_policy_t p;
  pd_config_policy_defaults(&p);
  assert_default_policy(&p, 2);
  /* SPEC section 3, verbatim */
  assert_string_equal(p.prompts.think, "Think for up to {think_budget} tokens.");
  assert_string_equal(p.prompts.wait, "Wait? Did I make a mistake?");
  assert_string_equal(p.prompts.cont,
                      "Continue your thinking where you left off, correcting any mistakes if "
                      "there is any. Think for up to {think_budget} tokens.");
  assert_string_equal(p.prompts.answer,
                      "Now provide the final answer. Respond in under {answer_budget} tokens!!!");
}

static void test_log_level_parse(void **state) {
  (void)state;
  assert_int_equal(pd_log_level_parse("error"), PD_LOG_ERROR);
  assert_int_equal(pd_log_level_parse("warn"), PD_LOG_WARN);
  assert_int_equal(pd_log_level_parse("info"), PD_LOG_INFO);
  assert_int_equal(pd_log_level_parse("debug"), PD_LOG_DEBUG);
  assert_int_equal(pd_log_level_parse("verbose"), -1);
  assert_int_equal(pd_log_level_parse("INFO"), -1);
  assert_int_equal(pd_log_level_parse(NULL), -1);
}

static void test_builtin_defaults(void **state) {
  (void)state;
  pd_config_t *cfg = load_file(NULL, &NO_OV);
  assert_null(cfg->path);
  assert_string_equal(cfg->listen_host, "127.0.0.1");
  assert_int_equal(cfg->listen_port, 8080);
  assert_int_equal(cfg->workers, 1);
  assert_int_equal(cfg->shutdown_grace_ms, 30000);
  assert_int_equal(cfg->limits.max_body_bytes, 16777216);
  assert_int_equal(cfg->limits.max_header_bytes, 65536);
  assert_int_equal(cfg->limits.header_timeout_ms, 10000);
  assert_int_equal(cfg->limits.idle_timeout_ms, 60000);
  assert_int_equal(cfg->limits.max_connections, 10000);
  assert_int_equal(cfg->limits.max_upstream_calls, 256);
  assert_int_equal(cfg->limits.max_reply_bytes, 16777216);
  assert_int_equal(cfg->log_level, PD_LOG_INFO);
  assert_string_equal(cfg->access_log, "-");
  assert_int_equal(cfg->nauth_keys, 0);
  assert_int_equal(cfg->nupstreams, 1);
  assert_string_equal(cfg->upstreams[0].name, "default");
  assert_string_equal(cfg->upstreams[0].base_url, "https://api.openai.com/v1");
  assert_null(cfg->upstreams[0].api_key);
  assert_default_upstream_fields(&cfg->upstreams[0]);
  assert_int_equal(cfg->nroutes, 1);
  const pd_route_t *r = &cfg->routes[0];
  assert_string_equal(r->name, "default");
  assert_int_equal(r->has_match, 0);
  assert_null(r->path_prefix);
  assert_int_equal(r->nmodels, 0);
  assert_int_equal(r->upstream, 0);
  assert_null(r->model);
  assert_int_equal(r->reasoning, PD_REASONING_FIELD);
  assert_int_equal(r->sticky, PD_STICKY_RANDOM);
  assert_null(r->sticky_header);
  assert_int_equal(r->allow_overrides, 0);
  assert_int_equal(r->neffort, 0);
  assert_int_equal(r->nvariants, 1);
  assert_int_equal(r->total_weight, 1);
  assert_string_equal(r->variants[0].name, "default");
  assert_int_equal(r->variants[0].weight, 1);
  assert_default_policy(&r->variants[0].forcing, 2);
  pd_config_unref(cfg);
}

static void test_default_upstream_env(void **state) {
  (void)state;
  setenv("OPENAI_BASE_URL", "http://openai-base:1/v1/", 1);
  pd_config_t *cfg = load_file(NULL, &NO_OV);
  assert_string_equal(cfg->upstreams[0].base_url, "http://openai-base:1/v1");
  pd_config_unref(cfg);

  setenv("PONDER_UPSTREAM", "http://ponder-up:2/v1", 1);
  setenv("OPENAI_API_KEY", "sk-env", 1);
  cfg = load_file(NULL, &NO_OV);
  assert_string_equal(cfg->upstreams[0].base_url, "http://ponder-up:2/v1");
  assert_string_equal(cfg->upstreams[0].api_key, "sk-env");
  pd_config_unref(cfg);

  /* empty variables count as unset */
  setenv("PONDER_UPSTREAM", "", 1);
  setenv("OPENAI_API_KEY", "", 1);
  cfg = load_file(NULL, &NO_OV);
  assert_string_equal(cfg->upstreams[0].base_url, "http://openai-base:1/v1");
  assert_null(cfg->upstreams[0].api_key);
  pd_config_unref(cfg);

  /* --upstream beats the environment */
  pd_cli_overrides_t ov = NO_OV;
  ov.upstream = "https://cli:3/v1//";
  cfg = load_file(NULL, &ov);
  assert_string_equal(cfg->upstreams[0].base_url, "https://cli:3/v1");
  pd_config_unref(cfg);

  /* a bad variable is an error, unless --upstream replaces it anyway */
  setenv("PONDER_UPSTREAM", "localhost:8000", 1);
  char *e = errors_of_file(NULL, &NO_OV);
  assert_string_equal(e, "$PONDER_UPSTREAM: the base URL must start with http:// or https:// "
                         "(got \"localhost:8000\")");
  free(e);
  cfg = load_file(NULL, &ov);
  assert_string_equal(cfg->upstreams[0].base_url, "https://cli:3/v1");
  pd_config_unref(cfg);

  /* the built-in upstream is also used by a file that declares no upstreams */
  setenv("PONDER_UPSTREAM", "http://from-env/v1", 1);
  cfg = load_text("routes:\n  - name: r\n    upstream: default\n", &NO_OV);
  assert_int_equal(cfg->nupstreams, 1);
  assert_string_equal(cfg->upstreams[0].base_url, "http://from-env/v1");
  pd_config_unref(cfg);
}

static void test_overrides_without_file(void **state) {
  (void)state;
  pd_cli_overrides_t ov = {"0.0.0.0:9999", "http://up:1", 5, 3, PD_LOG_DEBUG};
  pd_config_t *cfg = load_file(NULL, &ov);
  assert_string_equal(cfg->listen_host, "0.0.0.0");
  assert_int_equal(cfg->listen_port, 9999);
  assert_string_equal(cfg->upstreams[0].base_url, "http://up:1");
  assert_int_equal(cfg->workers, 3);
  assert_int_equal(cfg->log_level, PD_LOG_DEBUG);
  assert_default_policy(&cfg->routes[0].variants[0].forcing, 5);
  pd_config_unref(cfg);

  /* ov may be NULL; rounds 0 is a valid override (plain proxy) */
  cfg = load_file(NULL, NULL);
  assert_int_equal(cfg->routes[0].variants[0].forcing.rounds, 2);
  pd_config_unref(cfg);
  ov = NO_OV;
  ov.rounds = 0;
  cfg = load_file(NULL, &ov);
  assert_int_equal(cfg->routes[0].variants[0].forcing.rounds, 0);
  pd_config_unref(cfg);
}

static void test_overrides_with_file(void **state) {
  (void)state;
  pd_cli_overrides_t ov = {"[::1]:0", "https://replaced/v1", 7, 2, PD_LOG_ERROR};
  pd_config_t *cfg = load_data("config_full.yaml", &ov);
  assert_string_equal(cfg->listen_host, "::1");
  assert_int_equal(cfg->listen_port, 0);
  assert_int_equal(cfg->workers, 2);
  assert_int_equal(cfg->log_level, PD_LOG_ERROR);
  /* --upstream replaces the first declared upstream only */
  assert_string_equal(cfg->upstreams[0].base_url, "https://replaced/v1");
  assert_string_equal(cfg->upstreams[0].name, "openai");
  assert_string_equal(cfg->upstreams[1].base_url, "http://127.0.0.1:8000/v1");
  /* --rounds only reaches routes with neither forcing nor variants */
  assert_int_equal(cfg->routes[0].variants[0].forcing.rounds, 6);
  assert_int_equal(cfg->routes[1].variants[0].forcing.rounds, 0);
  assert_int_equal(cfg->routes[1].variants[1].forcing.rounds, 4);
  assert_default_policy(&cfg->routes[2].variants[0].forcing, 7);
  pd_config_unref(cfg);
}

static void test_bad_overrides(void **state) {
  (void)state;
  pd_cli_overrides_t ov = {"8080", "ftp://x", 33, 5000, 9};
  char *e = errors_of_file(NULL, &ov);
  assert_string_equal(e, "--listen must be HOST:PORT (got \"8080\")\n"
                         "--upstream must start with http:// or https:// (got \"ftp://x\")\n"
                         "--rounds must be between 0 and 32 (got 33)\n"
                         "--workers must be between 0 and 1024 (got 5000)\n"
                         "--log-level must be error, warn, info or debug");
  free(e);
}

static void test_workers_zero_is_cores(void **state) {
  (void)state;
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  pd_config_t *cfg = load_text("workers: 0\n", &NO_OV);
  assert_int_equal(cfg->workers, cores < 1 ? 1 : cores);
  pd_config_unref(cfg);
  pd_cli_overrides_t ov = NO_OV;
  ov.workers = 0;
  cfg = load_text("workers: 4\n", &ov);
  assert_int_equal(cfg->workers, cores < 1 ? 1 : cores);
  pd_config_unref(cfg);
}

/* ---- the schema ---- */

static void check_full(const pd_config_t *cfg) {
  assert_string_equal(cfg->listen_host, "0.0.0.0");
  assert_int_equal(cfg->listen_port, 9090);
  assert_int_equal(cfg->workers, 3);
  assert_int_equal(cfg->shutdown_grace_ms, 5000);
  assert_int_equal(cfg->limits.max_body_bytes, 1048576);
  assert_int_equal(cfg->limits.max_header_bytes, 8192);
  assert_int_equal(cfg->limits.header_timeout_ms, 2000);
  assert_int_equal(cfg->limits.idle_timeout_ms, 3000);
  assert_int_equal(cfg->limits.max_connections, 50);
  assert_int_equal(cfg->log_level, PD_LOG_DEBUG);
  assert_string_equal(cfg->access_log, "/tmp/ponder-access.log");
  assert_int_equal(cfg->nauth_keys, 0);

  assert_int_equal(cfg->nupstreams, 2);
  const pd_upstream_cfg_t *u = &cfg->upstreams[0];
  assert_string_equal(u->name, "openai");
  assert_string_equal(u->base_url, "https://api.openai.com/v1");
  assert_null(u->api_key);
  assert_int_equal(u->nheaders, 2);
  assert_string_equal(u->headers[0].name, "x-org-tag");
  assert_string_equal(u->headers[0].value, "team-a");
  assert_string_equal(u->headers[1].name, "x-trace");
  assert_string_equal(u->headers[1].value, "1");
  assert_int_equal(u->connect_timeout_ms, 1500);
  assert_int_equal(u->timeout_ms, 0);
  assert_int_equal(u->retries, 5);
  assert_int_equal(u->max_connections, 8);
  assert_string_equal(u->token_limit_param, "max_completion_tokens");
  assert_int_equal(u->http2, 1); /* https:// without http2: HTTP/2 offered by ALPN */
  assert_string_equal(cfg->upstreams[1].name, "local");
  assert_default_upstream_fields(&cfg->upstreams[1]);
  assert_int_equal(cfg->upstreams[1].http2, 1);

  assert_int_equal(cfg->nroutes, 3);
  const pd_route_t *r = &cfg->routes[0];
  assert_string_equal(r->name, "math");
  assert_int_equal(r->has_match, 1);
  assert_string_equal(r->path_prefix, "/math");
  assert_int_equal(r->nmodels, 2);
  assert_string_equal(r->models[0], "gpt-4o-think");
  assert_string_equal(r->models[1], "o-mini-think");
  assert_int_equal(r->upstream, 0);
  assert_string_equal(r->model, "gpt-4o");
  assert_int_equal(r->reasoning, PD_REASONING_INLINE);
  assert_int_equal(r->sticky, PD_STICKY_HEADER);
  assert_string_equal(r->sticky_header, "x-user-id");
  assert_int_equal(r->allow_overrides, 1);
  assert_int_equal(r->neffort, 3);
  assert_string_equal(r->effort[0].name, "low");
  assert_int_equal(r->effort[0].rounds, 1);
  assert_string_equal(r->effort[2].name, "high");
  assert_int_equal(r->effort[2].rounds, 6);
  assert_int_equal(r->nvariants, 1);
  assert_int_equal(r->total_weight, 1);
  assert_string_equal(r->variants[0].name, "default");
  const pd_policy_t *p = &r->variants[0].forcing;
  assert_int_equal(p->mode, PD_MODE_PREFILL);
  assert_int_equal(p->rounds, 6);
  assert_int_equal(p->think_budget, 1000);
  assert_int_equal(p->answer_budget, 500);
  assert_int_equal(p->min_think_tokens, 100);
  assert_int_equal(p->max_think_tokens, 5000);
  assert_string_equal(p->prompts.think, "T {think_budget}");
  assert_string_equal(p->prompts.wait, "W?");
  assert_string_equal(p->prompts.cont, "C {think_budget}");
  assert_string_equal(p->prompts.answer, "A {answer_budget}");
  assert_int_equal(p->prefill.dialect, PD_DIALECT_DEEPSEEK);
  assert_string_equal(p->prefill.think_open, "<reason>\n");
  assert_string_equal(p->prefill.think_close, "</reason>");
  assert_string_equal(p->prefill.wait, "Hmm");
  assert_string_equal(p->prefill.answer_open, "\n");
  assert_string_equal(p->prefill.length_cut, "\nAnswer:");
  assert_string_equal(p->template_name, "custom");
  assert_string_equal(p->tmpl.system, "S:{content}\n");
  assert_string_equal(p->tmpl.user, "U:{content}\n");
  assert_string_equal(p->tmpl.assistant, "A:{content}\n");
  assert_string_equal(p->tmpl.assistant_start, "A:");

  r = &cfg->routes[1];
  assert_string_equal(r->name, "ab");
  assert_null(r->path_prefix);
  assert_int_equal(r->nmodels, 1);
  assert_int_equal(r->upstream, 1);
  assert_null(r->model);
  assert_int_equal(r->reasoning, PD_REASONING_HIDDEN);
  assert_int_equal(r->sticky, PD_STICKY_BODY_USER);
  assert_int_equal(r->nvariants, 2);
  assert_int_equal(r->total_weight, 4);
  assert_string_equal(r->variants[0].name, "control");
  assert_int_equal(r->variants[0].weight, 3);
  assert_int_equal(r->variants[0].forcing.rounds, 0);
  assert_string_equal(r->variants[1].name, "deep");
  assert_int_equal(r->variants[1].weight, 1);
  assert_int_equal(r->variants[1].forcing.rounds, 4);
  assert_int_equal(r->variants[1].forcing.mode, PD_MODE_COMPLETIONS);
  assert_int_equal(r->variants[1].forcing.think_budget, 8192);

  r = &cfg->routes[2];
  assert_string_equal(r->name, "rest");
  assert_int_equal(r->has_match, 0);
  assert_int_equal(r->upstream, 0);
  assert_default_policy(&r->variants[0].forcing, 2);
}

/* http2's default follows the scheme: offered by ALPN on https://, off (no h2c) on http://;
 * "http2: false" on https:// offers HTTP/1.1 only. --upstream's URL decides for the first. */
static void test_http2_default_by_scheme(void **state) {
  (void)state;
  pd_config_t *cfg = load_text("upstreams:\n"
                               "  - {name: a, base_url: \"https://a.example/v1\"}\n"
                               "  - {name: b, base_url: \"https://b.example/v1\", http2: false}\n"
                               "  - {name: c, base_url: \"https://c.example/v1\", http2: true}\n"
                               "  - {name: d, base_url: \"http://127.0.0.1:1/v1\"}\n"
                               "  - {name: e, base_url: \"http://127.0.0.1:2/v1\", http2: true}\n",
                               &NO_OV);
  int want[] = {1, 0, 1, 0, 1};
  assert_int_equal(cfg->nupstreams, 5);
  for (int i = 0; i < 5; i++)
    assert_int_equal(cfg->upstreams[i].http2, want[i]);
  pd_config_unref(cfg);
  pd_cli_overrides_t ov = NO_OV;
  ov.upstream = "https://cli:3/v1";
  cfg = load_text("upstreams: [{name: a, base_url: \"http://127.0.0.1:1/v1\"}]\n", &ov);
  assert_int_equal(cfg->upstreams[0].http2, 1);
  pd_config_unref(cfg);
  cfg =
      load_text("upstreams: [{name: a, base_url: \"http://127.0.0.1:1/v1\", http2: false}]\n", &ov);
  assert_int_equal(cfg->upstreams[0].http2, 0);
  pd_config_unref(cfg);
  cfg = load_file(NULL, &NO_OV);
  assert_int_equal(cfg->upstreams[0].http2,
                   strncmp(cfg->upstreams[0].base_url, "https://", 8) == 0);
  pd_config_unref(cfg);
}

static void test_full_yaml(void **state) {
  (void)state;
  pd_config_t *cfg = load_data("config_full.yaml", &NO_OV);
  assert_non_null(strstr(cfg->path, "config_full.yaml"));
  check_full(cfg);
  pd_config_unref(cfg);
}

static void test_json(void **state) {
  (void)state;
  pd_config_t *cfg = load_data("config_full.json", &NO_OV);
  assert_string_equal(cfg->listen_host, "::1");
  assert_int_equal(cfg->listen_port, 7000);
  assert_int_equal(cfg->workers, 2);
  assert_int_equal(cfg->shutdown_grace_ms, 100);
  assert_int_equal(cfg->limits.max_body_bytes, 1000);
  assert_int_equal(cfg->limits.max_connections, 5);
  assert_int_equal(cfg->log_level, PD_LOG_WARN);
  assert_string_equal(cfg->access_log, "off");
  assert_int_equal(cfg->nupstreams, 1);
  assert_string_equal(cfg->upstreams[0].name, "vllm");
  assert_int_equal(cfg->upstreams[0].retries, 0);
  assert_int_equal(cfg->nroutes, 2);
  const pd_route_t *r = &cfg->routes[0];
  assert_string_equal(r->path_prefix, "/r1");
  assert_string_equal(r->models[0], "m1");
  assert_int_equal(r->neffort, 1);
  const pd_policy_t *p = &r->variants[0].forcing;
  assert_int_equal(p->mode, PD_MODE_PREFILL);
  assert_int_equal(p->rounds, 3);
  assert_string_equal(p->prompts.wait, "Wait!\nReally?");
  assert_int_equal(p->prefill.dialect, PD_DIALECT_LLAMACPP);
  r = &cfg->routes[1];
  assert_int_equal(r->nvariants, 2);
  assert_int_equal(r->total_weight, 3);
  assert_int_equal(r->variants[0].forcing.rounds, 1);
  assert_default_policy(&r->variants[1].forcing, 2);
  pd_config_unref(cfg);

  /* JSON errors carry lines too */
  assert_errors("{\"workers\": 1,\n \"listen\": 5,\n \"bogus\": true}\n",
                "F:2: \"listen\" must be HOST:PORT (got \"5\")\n"
                "F:3: unknown key \"bogus\" in the top level");
}

static void test_forcing_overrides_keys_individually(void **state) {
  (void)state;
  pd_config_t *cfg = load_text("routes:\n"
                               "  - name: r\n"
                               "    forcing:\n"
                               "      think_budget: 100\n"
                               "      prompts: {wait: \"Hmm?\"}\n"
                               "      prefill: {think_close: \"</t>\", dialect: mistral}\n",
                               &NO_OV);
  pd_policy_t d;
  pd_config_policy_defaults(&d);
  const pd_policy_t *p = &cfg->routes[0].variants[0].forcing;
  assert_int_equal(p->rounds, 2);
  assert_int_equal(p->think_budget, 100);
  assert_int_equal(p->answer_budget, 2048);
  assert_string_equal(p->prompts.wait, "Hmm?");
  assert_string_equal(p->prompts.think, d.prompts.think);
  assert_string_equal(p->prompts.cont, d.prompts.cont);
  assert_string_equal(p->prompts.answer, d.prompts.answer);
  assert_int_equal(p->prefill.dialect, PD_DIALECT_MISTRAL);
  assert_string_equal(p->prefill.think_close, "</t>");
  assert_string_equal(p->prefill.think_open, "<think>\n");
  assert_string_equal(p->template_name, "chatml");
  pd_config_unref(cfg);
}

static void test_null_values_mean_defaults(void **state) {
  (void)state;
  pd_config_t *cfg = load_text("listen:\n"
                               "workers: ~\n"
                               "limits: null\n"
                               "upstreams: []\n"
                               "routes:\n"
                               "  - name: r\n"
                               "    model: \"\"\n"
                               "    forcing:\n"
                               "      prefill: {length_cut: \"\", wait: }\n",
                               &NO_OV);
  assert_int_equal(cfg->listen_port, 8080);
  assert_int_equal(cfg->workers, 1);
  assert_int_equal(cfg->limits.max_body_bytes, 16777216);
  assert_string_equal(cfg->upstreams[0].name, "default");
  assert_null(cfg->routes[0].model);
  /* a quoted empty string is a value; an empty plain one is absent */
  assert_string_equal(cfg->routes[0].variants[0].forcing.prefill.length_cut, "");
  assert_string_equal(cfg->routes[0].variants[0].forcing.prefill.wait, "Wait");
  pd_config_unref(cfg);
}

static void test_listen_forms(void **state) {
  (void)state;
  pd_config_t *cfg = load_text("listen: \"[::]:65535\"\n", &NO_OV);
  assert_string_equal(cfg->listen_host, "::");
  assert_int_equal(cfg->listen_port, 65535);
  pd_config_unref(cfg);
  cfg = load_text("listen: localhost:0\n", &NO_OV);
  assert_string_equal(cfg->listen_host, "localhost");
  assert_int_equal(cfg->listen_port, 0);
  pd_config_unref(cfg);
  assert_errors("listen: \":80\"\n", "F:1: \"listen\" must be HOST:PORT with a non-empty HOST "
                                     "(0.0.0.0 for every interface) (got \":80\")");
  assert_errors("listen: h:65536\n", "F:1: \"listen\" has a PORT above 65535 (got \"h:65536\")");
  assert_errors("listen: h:http\n",
                "F:1: \"listen\" must be HOST:PORT with a numeric PORT (got \"h:http\")");
  assert_errors("listen: \"::1:80\"\n", "F:1: \"listen\" must be HOST:PORT (write an IPv6 "
                                        "address as [ADDR]:PORT) (got \"::1:80\")");
}

static void test_normalisation(void **state) {
  (void)state;
  pd_config_t *cfg = load_text("upstreams:\n"
                               "  - {name: u, base_url: \"HTTP://Host:1/v1///\",\n"
                               "     headers: {X-A: \"1\", Authorization: \"Basic x\"}}\n"
                               "routes:\n"
                               "  - name: r\n"
                               "    match: {path_prefix: /a/b//}\n"
                               "    sticky: header:X-Tenant\n",
                               &NO_OV);
  assert_string_equal(cfg->upstreams[0].base_url, "HTTP://Host:1/v1");
  assert_string_equal(cfg->upstreams[0].headers[0].name, "x-a");
  assert_string_equal(cfg->upstreams[0].headers[1].name, "authorization");
  assert_string_equal(cfg->upstreams[0].headers[1].value, "Basic x");
  assert_string_equal(cfg->routes[0].path_prefix, "/a/b");
  assert_string_equal(cfg->routes[0].sticky_header, "x-tenant");
  assert_int_equal(cfg->routes[0].has_match, 1);
  pd_config_unref(cfg);
}

static void test_custom_template(void **state) {
  (void)state;
  pd_config_t *cfg = load_text("routes:\n"
                               "  - name: r\n"
                               "    forcing:\n"
                               "      mode: completions\n"
                               "      template:\n"
                               "        system: \"[S]{content}\"\n"
                               "        user: \"[U]{content}\"\n"
                               "        assistant: \"[A]{content}\"\n"
                               "        assistant_start: \"\"\n",
                               &NO_OV);
  const pd_policy_t *p = &cfg->routes[0].variants[0].forcing;
  assert_int_equal(p->mode, PD_MODE_COMPLETIONS);
  assert_string_equal(p->template_name, "custom");
  assert_string_equal(p->tmpl.system, "[S]{content}");
  assert_string_equal(p->tmpl.assistant_start, "");
  pd_config_unref(cfg);

  assert_errors("routes:\n"
                "  - name: r\n"
                "    forcing:\n"
                "      template:\n"
                "        system: \"{content}\"\n"
                "        user: \"no placeholder\"\n"
                "        extra: x\n",
                "F:5: template is missing \"assistant\"\n"
                "F:5: template is missing \"assistant_start\"\n"
                "F:6: template \"user\" must contain \"{content}\"\n"
                "F:7: unknown key \"extra\" in template");
  assert_errors("routes:\n  - name: r\n    forcing: {template: [chatml]}\n",
                "F:3: \"template\" must be \"chatml\" or a mapping of system, user, assistant "
                "and assistant_start, not a list");
}

/* ---- ${VAR} ---- */

static void test_env_substitution(void **state) {
  (void)state;
  setenv("PD_T_PORT", "8123", 1);
  pd_config_t *cfg = load_data("config_env.yaml", &NO_OV);
  assert_string_equal(cfg->listen_host, "127.0.0.2");
  assert_int_equal(cfg->listen_port, 8123);
  assert_int_equal(cfg->workers, 2);
  /* a default holding another ${...} */
  assert_string_equal(cfg->upstreams[0].base_url, "http://localhost:8000/v1");
  /* an unset variable without default is "", and an empty api_key is no api_key */
  assert_null(cfg->upstreams[0].api_key);
  assert_string_equal(cfg->upstreams[0].headers[0].value, "a-8123-b--c");
  assert_string_equal(cfg->routes[0].model, "fallback-model");
  assert_string_equal(cfg->routes[0].variants[0].forcing.prompts.think,
                      "Budget: {think_budget}; 8123");
  pd_config_unref(cfg);

  setenv("PD_T_HOST", "10.1.1.1", 1);
  setenv("PD_T_WORKERS", "6", 1);
  setenv("PD_T_UNSET", "sk-now-set", 1);
  setenv("PD_T_MODEL", "", 1); /* empty: the default applies, as in sh */
  cfg = load_data("config_env.yaml", &NO_OV);
  assert_string_equal(cfg->listen_host, "10.1.1.1");
  assert_int_equal(cfg->workers, 6);
  assert_string_equal(cfg->upstreams[0].base_url, "http://10.1.1.1:8000/v1");
  assert_string_equal(cfg->upstreams[0].api_key, "sk-now-set");
  assert_string_equal(cfg->routes[0].model, "fallback-model");
  pd_config_unref(cfg);

  /* values are interpreted after substitution */
  setenv("PD_T_WORKERS", "many", 1);
  char *path = data_path("config_env.yaml");
  char *e = errors_of_file(path, &NO_OV);
  assert_string_equal(e, "F:2: \"workers\" must be an integer (got \"many\")");
  free(e);
  free(path);

  /* keys and literal dollars are left alone */
  setenv("PD_T_X", "ignored", 1);
  cfg = load_text("routes:\n  - name: r\n    effort: {low: 1}\n    forcing:\n"
                  "      prompts: {wait: \"costs $5, $ {x} and $\"}\n",
                  &NO_OV);
  assert_string_equal(cfg->routes[0].variants[0].forcing.prompts.wait, "costs $5, $ {x} and $");
  pd_config_unref(cfg);
}

static void test_env_errors(void **state) {
  (void)state;
  assert_errors("listen: 127.0.0.1:8080\n"
                "log:\n"
                "  access_log: ${PD_T_X\n"
                "routes:\n"
                "  - name: r\n"
                "    model: ${PD_T_X:default}\n"
                "    upstream: ${}\n"
                "    sticky: ${1A}\n",
                "F:3: \"access_log\": unterminated ${\n"
                "F:6: \"model\": bad ${...}: expected ${NAME} or ${NAME:-default}\n"
                "F:7: \"upstream\": bad ${...}: expected ${NAME} or ${NAME:-default}\n"
                "F:8: \"sticky\": bad ${...}: expected ${NAME} or ${NAME:-default}");
  setenv("PD_T_X", "\xff\xfe", 1);
  assert_errors("log: {access_log: \"${PD_T_X}\"}\n",
                "F:1: \"access_log\" is not valid UTF-8 after ${...} substitution");
  setenv("PD_T_X", "a\r\nInjected: 1", 1);
  assert_errors("upstreams:\n  - name: u\n    base_url: http://u\n"
                "    api_key: ${PD_T_X}\n    headers: {x-h: \"${PD_T_X}\"}\n",
                "F:4: \"api_key\" must not contain a line break\n"
                "F:5: header \"x-h\" must not contain a line break");
}

/* ---- errors ---- */

static void test_error_fixture(void **state) {
  (void)state;
  char *path = data_path("config_errors.yaml");
  char *e = errors_of_file(path, &NO_OV);
  assert_string_equal(
      e, "F:1: \"listen\" must be HOST:PORT (got \"localhost\")\n"
         "F:2: \"workers\" must not be negative (got -1)\n"
         "F:3: \"shutdown_grace_ms\" must be an integer (got \"soon\")\n"
         "F:4: unknown key \"limitz\" in the top level (did you mean \"limits\"?)\n"
         "F:6: \"max_body_bytes\" must be at least 1 (got 0)\n"
         "F:8: \"level\" must be error, warn, info or debug (got \"verbose\")\n"
         "F:10: auth key 1 is empty (an unset ${VAR}?)\n"
         "F:13: \"base_url\" must start with http:// or https:// (got \"ftp://example.com\")\n"
         "F:14: \"retries\" must be an integer, not a list\n"
         "F:15: \"token_limit_param\" must be max_tokens or max_completion_tokens (got "
         "\"max_length\")\n"
         "F:16: header name \"bad header\" is not a valid HTTP header name\n"
         "F:17: duplicate upstream name \"a\"\n"
         "F:19: an upstream needs a \"name\"\n"
         "F:22: unknown upstream \"nope\"\n"
         "F:23: \"reasoning\" must be field, inline or hidden (got \"loud\")\n"
         "F:24: \"sticky\" must be header:NAME, body:user or random (got \"cookie:x\")\n"
         "F:25: \"allow_overrides\" must be true or false (got \"maybe\")\n"
         "F:26: \"low\" must be between 0 and 32 (got 33)\n"
         "F:27: \"path_prefix\" must start with '/' (got \"math\")\n"
         "F:29: \"mode\" must be chat, prefill or completions (got \"turbo\")\n"
         "F:30: \"rounds\" must be between 0 and 32 (got 40)\n"
         "F:31: \"think_budget\" must be at least 1 (got -5)\n"
         "F:32: \"template\" must be \"chatml\" or a mapping of system, user, assistant and "
         "assistant_start (got \"jinja\")\n"
         "F:33: duplicate route name \"r1\"\n"
         "F:34: \"path_prefix\" must not be \"/\": the catch-all is a route without `match`\n"
         "F:36: a route has either \"forcing\" or \"variants\", not both\n"
         "F:37: \"weight\" must be at least 1 (got 0)\n"
         "F:38: duplicate variant name \"v\"\n"
         "F:38: unknown key \"roundz\" in forcing (did you mean \"rounds\"?)\n"
         "F:40: \"match\" needs a \"path_prefix\" or a non-empty \"models\" list (a route without "
         "`match` is the catch-all)\n"
         "F:42: route \"c2\" has no `match` and would never be used: route \"c1\" is already the "
         "catch-all\n"
         "F:46: template \"system\" must contain \"{content}\"\n"
         "F:46: template is missing \"assistant_start\"\n"
         "F:47: min_think_tokens (10) is above max_think_tokens (5)");
  free(e);
  free(path);
}

static void test_work_limits(void **state) {
  (void)state;
  pd_config_t *cfg = load_text("limits: {max_upstream_calls: 7, max_reply_bytes: 4096}\n", &NO_OV);
  assert_int_equal(cfg->limits.max_upstream_calls, 7);
  assert_int_equal(cfg->limits.max_reply_bytes, 4096);
  char *dump = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&dump, &len);
  pd_config_dump(cfg, f);
  fclose(f);
  assert_non_null(strstr(dump, "\n  max_upstream_calls: 7\n"));
  assert_non_null(strstr(dump, "\n  max_reply_bytes: 4096\n"));
  free(dump);
  pd_config_unref(cfg);
  assert_errors("limits:\n"
                "  max_upstream_calls: 0\n"
                "  max_reply_bytes: 10\n",
                "F:2: \"max_upstream_calls\" must be at least 1 (got 0)\n"
                "F:3: \"max_reply_bytes\" must be at least 1024 (got 10)");
  char *e = errors_of("limits: {max_upstream_calls: many, max_reply_bytes: 99999999999999999999}\n",
                      &NO_OV);
  assert_non_null(strstr(e, "max_upstream_calls"));
  assert_non_null(strstr(e, "max_reply_bytes"));
  free(e);
}

/* stall_timeout_ms: an integer from 0 (no stall bound) to a day, dumped, each upstream its own. */
static void test_stall_timeout(void **state) {
  (void)state;
  pd_config_t *cfg = load_text("upstreams:\n"
                               "  - {name: a, base_url: \"http://127.0.0.1:1/v1\", "
                               "stall_timeout_ms: 0}\n"
                               "  - {name: b, base_url: \"http://127.0.0.1:2/v1\", "
                               "stall_timeout_ms: 86400000}\n"
                               "  - {name: c, base_url: \"http://127.0.0.1:3/v1\"}\n",
                               &NO_OV);
  assert_int_equal(cfg->nupstreams, 3);
  assert_int_equal(cfg->upstreams[0].stall_timeout_ms, 0);
  assert_int_equal(cfg->upstreams[1].stall_timeout_ms, 86400000);
  assert_int_equal(cfg->upstreams[2].stall_timeout_ms, 120000);
  char *dump = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&dump, &len);
  pd_config_dump(cfg, f);
  fclose(f);
  /* Beside timeout_ms, as it is read. */
  assert_non_null(strstr(dump, "\n    timeout_ms: 600000\n    stall_timeout_ms: 0\n"));
  assert_non_null(strstr(dump, "\n    stall_timeout_ms: 86400000\n"));
  assert_non_null(strstr(dump, "\n    stall_timeout_ms: 120000\n"));
  free(dump);
  pd_config_unref(cfg);
  assert_errors("upstreams:\n"
                "  - name: a\n"
                "    base_url: http://127.0.0.1:1/v1\n"
                "    stall_timeout_ms: -1\n"
                "  - name: b\n"
                "    base_url: http://127.0.0.1:2/v1\n"
                "    stall_timeout_ms: 86400001\n"
                "  - name: c\n"
                "    base_url: http://127.0.0.1:3/v1\n"
                "    stall_timeout_ms: 1.5\n"
                "  - name: d\n"
                "    base_url: http://127.0.0.1:4/v1\n"
                "    stall_timeout_ms: [1]\n",
                "F:4: \"stall_timeout_ms\" must not be negative (got -1)\n"
                "F:7: \"stall_timeout_ms\" must be between 0 and 86400000 (got 86400001)\n"
                "F:10: \"stall_timeout_ms\" must be an integer (got \"1.5\")\n"
                "F:13: \"stall_timeout_ms\" must be an integer, not a list");
}

static void count_warning(void *ud, const char *msg) {
  int *n = ud;
  (*n)++;
  assert_non_null(strstr(msg, "has no api_key"));
  assert_null(strstr(msg, "proxy-key-1"));
  assert_null(strstr(msg, "sk-up"));
}

static void test_forwarded_key_warning(void **state) {
  (void)state;
  int n = 0;
  /* auth.keys and an upstream without api_key: the client's Authorization is ponder's key. */
  pd_config_t *cfg = load_text("auth: {keys: [proxy-key-1]}\n"
                               "upstreams:\n"
                               "  - {name: a, base_url: \"http://a/v1\", api_key: sk-up}\n"
                               "  - {name: b, base_url: \"http://b/v1\"}\n"
                               "  - {name: c, base_url: \"http://c/v1\"}\n",
                               &NO_OV);
  assert_int_equal(pd_config_warnings(cfg, count_warning, &n), 2);
  assert_int_equal(n, 2);
  assert_int_equal(pd_config_warnings(cfg, NULL, NULL), 2);
  pd_config_unref(cfg);
  /* Without auth.keys the client's own key is meant for the upstream. */
  cfg = load_text("upstreams:\n  - {name: b, base_url: \"http://b/v1\"}\n", &NO_OV);
  assert_int_equal(pd_config_warnings(cfg, count_warning, &n), 0);
  pd_config_unref(cfg);
  cfg = load_text("auth: {keys: [k]}\n"
                  "upstreams:\n  - {name: a, base_url: \"http://a/v1\", api_key: sk-up}\n",
                  &NO_OV);
  assert_int_equal(pd_config_warnings(cfg, count_warning, &n), 0);
  pd_config_unref(cfg);
  assert_int_equal(n, 2);
}

static void test_unknown_and_duplicate_keys(void **state) {
  (void)state;
  assert_errors("listen: 127.0.0.1:1\n"
                "listen: 127.0.0.1:2\n"
                "limits: {max_body: 1, zzzzzzzz: 2}\n"
                "upstreams:\n"
                "  - {name: u, base_url: \"http://u\", apikey: k}\n"
                "routes:\n"
                "  - name: r\n"
                "    mach: {models: [a]}\n"
                "    forcing:\n"
                "      prompts: {contnue: x}\n"
                "      prefill: {dialekt: vllm}\n"
                "    effort: {low: 1, low: 2}\n",
                "F:2: duplicate key \"listen\" in the top level\n"
                "F:3: unknown key \"max_body\" in limits\n"
                "F:3: unknown key \"zzzzzzzz\" in limits\n"
                "F:5: unknown key \"apikey\" in an upstream (did you mean \"api_key\"?)\n"
                "F:8: unknown key \"mach\" in a route (did you mean \"match\"?)\n"
                "F:10: unknown key \"contnue\" in prompts (did you mean \"continue\"?)\n"
                "F:11: unknown key \"dialekt\" in prefill (did you mean \"dialect\"?)\n"
                "F:12: duplicate key \"low\" in effort");
}

static void test_type_errors(void **state) {
  (void)state;
  assert_errors("- a\n- b\n", "F:1: the top level must be a mapping, not a list");
  assert_errors("just a string\n", "F:1: the top level must be a mapping, not a scalar");
  assert_errors("limits: [1]\n"
                "log: text\n"
                "auth: {keys: sk-single}\n"
                "upstreams: {name: u}\n"
                "routes:\n"
                "  - just-a-name\n"
                "  - name: [x]\n"
                "    match: {models: a}\n"
                "    effort: [low]\n"
                "    variants: {name: v}\n"
                "  - name: z\n"
                "    match: {models: [m]}\n"
                "    variants: []\n"
                "    forcing: \n"
                "  - name: y\n"
                "    match: {models: [~], path_prefix: /y}\n"
                "    variants: [~, {weight: 2}]\n",
                "F:1: limits must be a mapping, not a list\n"
                "F:2: log must be a mapping, not a scalar\n"
                "F:3: \"keys\" must be a list, not a scalar\n"
                "F:4: \"upstreams\" must be a list, not a mapping\n"
                "F:6: a route must be a mapping, not a scalar\n"
                "F:7: \"name\" must be a string, not a list\n"
                "F:7: a route needs a \"name\"\n"
                "F:8: \"models\" must be a list, not a scalar\n"
                "F:8: \"match\" needs a \"path_prefix\" or a non-empty \"models\" list (a route "
                "without `match` is the catch-all)\n"
                "F:9: effort must be a mapping, not a list\n"
                "F:10: \"variants\" must be a list, not a mapping\n"
                "F:13: \"variants\" must not be empty\n"
                "F:16: \"models\" entries must not be empty\n"
                "F:17: a variant must be a mapping with at least a \"name\"\n"
                "F:17: a variant needs a \"name\"");
}

static void test_value_errors(void **state) {
  (void)state;
  assert_errors("upstreams:\n"
                "  - name: \"bad name\"\n"
                "    base_url: \"https://\"\n"
                "    max_connections: 0\n"
                "    connect_timeout_ms: 1.5\n"
                "  - name: u2\n"
                "routes:\n"
                "  - name: r\n"
                "    sticky: \"header:\"\n"
                "    match: {path_prefix: \"/a?b\"}\n"
                "  - name: s\n"
                "    sticky: \"header:bad name\"\n"
                "    match: {path_prefix: /s, models: [\"\"]}\n"
                "    upstream: u2\n"
                "    effort: {low: }\n"
                "  - name: t\n"
                "    match: {path_prefix: /s/}\n"
                "    allow_overrides: yes\n"
                "    variants:\n"
                "      - {name: a, weight: 2147483647}\n"
                "      - {name: b, weight: 1}\n",
                "F:2: upstream name \"bad name\" may only hold letters, digits, '_', '-' and '.'\n"
                "F:3: \"base_url\" has no host (got \"https://\")\n"
                "F:4: \"max_connections\" must be at least 1 (got 0)\n"
                "F:5: \"connect_timeout_ms\" must be an integer (got \"1.5\")\n"
                "F:6: upstream \"u2\" needs a \"base_url\"\n"
                "F:9: \"sticky\" must be header:NAME, body:user or random (got \"header:\")\n"
                "F:10: \"path_prefix\" must be a plain path (got \"/a?b\")\n"
                "F:12: \"sticky\" must be header:NAME, body:user or random (got \"header:bad "
                "name\")\n"
                "F:13: \"models\" must not be empty\n"
                "F:15: effort \"low\" needs a number of rounds (0..32)\n"
                "F:17: route \"s\" already has path_prefix \"/s\"\n"
                "F:20: the variants' weights add up to more than 2147483647");
  assert_errors("upstreams:\n"
                "  - name: b\n"
                "    base_url: http://127.0.0.1:8000/v1\n"
                "    http2: yes please\n"
                "  - name: c\n"
                "    base_url: http://user:pw@127.0.0.1:8000/v1\n"
                "    http2: true\n",
                "F:4: \"http2\" must be true or false (got \"yes please\")\n"
                "F:7: \"http2: true\" does not take credentials in the URL (upstream \"c\"); send "
                "them with \"api_key\" or \"headers\"");
  assert_errors("auth:\n  keys: [good, \"${PD_T_UNSET}\", ~]\n",
                "F:2: auth key 2 is empty (an unset ${VAR}?)\n"
                "F:2: auth key 3 is empty (an unset ${VAR}?)");
  assert_errors("workers: 1025\nshutdown_grace_ms: 99999999999999999999999\n",
                "F:1: \"workers\" must be between 0 and 1024 (got 1025)\n"
                "F:2: \"shutdown_grace_ms\" is too large (got 99999999999999999999999)");
}

static void test_syntax_errors(void **state) {
  (void)state;
  char *path = data_path("config_syntax.yaml");
  char *e = errors_of_file(path, &NO_OV);
  assert_string_equal(e, "F:5: YAML syntax error: did not find expected ',' or '}' (while "
                         "parsing a flow mapping at line 4)");
  free(e);
  free(path);
  assert_errors("workers: 1\n---\nworkers: 2\n",
                "F:3: a config file holds one YAML document, found a second one");
  assert_errors("listen: [\n", "F:2: YAML syntax error: did not find expected node content "
                               "(while parsing a flow node at line 2)");
}

static void test_file_errors(void **state) {
  (void)state;
  char *e = errors_of_file("/nonexistent/ponder.yaml", &NO_OV);
  assert_string_equal(e, "F: cannot open: No such file or directory");
  free(e);
  e = errors_of_file("/tmp", &NO_OV);
  assert_string_equal(e, "F: is a directory");
  free(e);
  /* errors may be NULL when the caller only wants the status */
  pd_config_t *cfg = (pd_config_t *)1;
  assert_int_equal(pd_config_load("/nonexistent/ponder.yaml", &NO_OV, &cfg, NULL), -1);
  assert_null(cfg);
}

static void test_empty_file(void **state) {
  (void)state;
  pd_config_t *cfg = load_data("config_empty.yaml", &NO_OV);
  assert_non_null(cfg->path);
  assert_int_equal(cfg->listen_port, 8080);
  assert_int_equal(cfg->nroutes, 1);
  assert_default_policy(&cfg->routes[0].variants[0].forcing, 2);
  pd_config_unref(cfg);
  cfg = load_text("# only a comment\n", &NO_OV);
  assert_string_equal(cfg->upstreams[0].name, "default");
  pd_config_unref(cfg);
}

static void test_too_many_errors_are_capped(void **state) {
  (void)state;
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  for (int i = 0; i < 300; i++)
    fprintf(f, "bad%d: 1\n", i);
  fclose(f);
  char *e = errors_of(text, &NO_OV);
  size_t lines = 1;
  for (const char *p = e; *p; p++)
    lines += *p == '\n';
  assert_int_equal(lines, 201);
  assert_non_null(strstr(e, "F: ... and 100 more problems"));
  free(e);
  free(text);
}

/* ---- lifetime ---- */

static void test_refcount(void **state) {
  (void)state;
  pd_config_t *cfg = load_data("config_full.yaml", &NO_OV);
  assert_int_equal(atomic_load(&cfg->refs), 1);
  assert_ptr_equal(pd_config_ref(cfg), cfg);
  assert_ptr_equal(pd_config_ref(cfg), cfg);
  assert_int_equal(atomic_load(&cfg->refs), 3);
  pd_config_unref(cfg);
  pd_config_unref(cfg);
  assert_int_equal(atomic_load(&cfg->refs), 1);
  check_full(cfg);      /* still alive and intact */
  pd_config_unref(cfg); /* freed: LSan reports any leak */
  assert_null(pd_config_ref(NULL));
  pd_config_unref(NULL);
}

/* ---- dump ---- */

static char *dump_to_file(const pd_config_t *cfg) {
  char *path = strdup("/tmp/ponder-test-dump-XXXXXX");
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  FILE *f = fdopen(fd, "w");
  assert_non_null(f);
  pd_config_dump(cfg, f);
  fclose(f);
  return path;
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  char *buf = NULL;
  size_t cap = 0, len = 0, n;
  do {
    cap += 4096;
    buf = realloc(buf, cap + 1);
    n = fread(buf + len, 1, cap - len, f);
    len += n;
  } while (n > 0);
  buf[len] = '\0';
  fclose(f);
  return buf;
}

static void assert_str_or_null_equal(const char *a, const char *b) {
  if (!a || !b)
    assert_ptr_equal(a, b);
  else
    assert_string_equal(a, b);
}

static void assert_policy_equal(const pd_policy_t *a, const pd_policy_t *b) {
  assert_int_equal(a->mode, b->mode);
  assert_int_equal(a->rounds, b->rounds);
  assert_int_equal(a->think_budget, b->think_budget);
  assert_int_equal(a->answer_budget, b->answer_budget);
  assert_int_equal(a->min_think_tokens, b->min_think_tokens);
  assert_int_equal(a->max_think_tokens, b->max_think_tokens);
  assert_string_equal(a->prompts.think, b->prompts.think);
  assert_string_equal(a->prompts.wait, b->prompts.wait);
  assert_string_equal(a->prompts.cont, b->prompts.cont);
  assert_string_equal(a->prompts.answer, b->prompts.answer);
  assert_int_equal(a->prefill.dialect, b->prefill.dialect);
  assert_string_equal(a->prefill.think_open, b->prefill.think_open);
  assert_string_equal(a->prefill.think_close, b->prefill.think_close);
  assert_string_equal(a->prefill.wait, b->prefill.wait);
  assert_string_equal(a->prefill.answer_open, b->prefill.answer_open);
  assert_string_equal(a->prefill.length_cut, b->prefill.length_cut);
  assert_string_equal(a->tmpl.system, b->tmpl.system);
  assert_string_equal(a->tmpl.user, b->tmpl.user);
  assert_string_equal(a->tmpl.assistant, b->tmpl.assistant);
  assert_string_equal(a->tmpl.assistant_start, b->tmpl.assistant_start);
  assert_string_equal(a->template_name, b->template_name);
}

/* Everything but the path and the secrets, which a dump redacts. */
static void assert_config_equal(const pd_config_t *a, const pd_config_t *b) {
  assert_string_equal(a->listen_host, b->listen_host);
  assert_int_equal(a->listen_port, b->listen_port);
  assert_int_equal(a->workers, b->workers);
  assert_int_equal(a->shutdown_grace_ms, b->shutdown_grace_ms);
  assert_memory_equal(&a->limits, &b->limits, sizeof a->limits);
  assert_int_equal(a->log_level, b->log_level);
  assert_string_equal(a->access_log, b->access_log);
  assert_int_equal(a->nauth_keys, b->nauth_keys);
  assert_int_equal(a->nupstreams, b->nupstreams);
  for (size_t i = 0; i < a->nupstreams; i++) {
    const pd_upstream_cfg_t *x = &a->upstreams[i], *y = &b->upstreams[i];
    assert_string_equal(x->name, y->name);
    assert_int_equal(!x->api_key, !y->api_key);
    assert_int_equal(x->nheaders, y->nheaders);
    for (size_t j = 0; j < x->nheaders; j++)
      assert_string_equal(x->headers[j].name, y->headers[j].name);
    assert_int_equal(x->connect_timeout_ms, y->connect_timeout_ms);
    assert_int_equal(x->timeout_ms, y->timeout_ms);
    assert_int_equal(x->stall_timeout_ms, y->stall_timeout_ms);
    assert_int_equal(x->retries, y->retries);
    assert_int_equal(x->max_connections, y->max_connections);
    assert_string_equal(x->token_limit_param, y->token_limit_param);
    assert_int_equal(x->http2, y->http2);
    assert_int_equal(x->tls_verify, y->tls_verify);
    assert_str_or_null_equal(x->tls_ca_file, y->tls_ca_file);
    assert_str_or_null_equal(x->tls_server_name, y->tls_server_name);
    assert_str_or_null_equal(x->proxy, y->proxy);
  }
  assert_int_equal(a->nroutes, b->nroutes);
  for (size_t i = 0; i < a->nroutes; i++) {
    const pd_route_t *x = &a->routes[i], *y = &b->routes[i];
    assert_string_equal(x->name, y->name);
    assert_int_equal(x->has_match, y->has_match);
    assert_str_or_null_equal(x->path_prefix, y->path_prefix);
    assert_int_equal(x->nmodels, y->nmodels);
    for (size_t j = 0; j < x->nmodels; j++)
      assert_string_equal(x->models[j], y->models[j]);
    assert_int_equal(x->upstream, y->upstream);
    assert_str_or_null_equal(x->model, y->model);
    assert_int_equal(x->reasoning, y->reasoning);
    assert_int_equal(x->sticky, y->sticky);
    assert_str_or_null_equal(x->sticky_header, y->sticky_header);
    assert_int_equal(x->allow_overrides, y->allow_overrides);
    assert_int_equal(x->neffort, y->neffort);
    for (size_t j = 0; j < x->neffort; j++) {
      assert_string_equal(x->effort[j].name, y->effort[j].name);
      assert_int_equal(x->effort[j].rounds, y->effort[j].rounds);
    }
    assert_int_equal(x->nvariants, y->nvariants);
    assert_int_equal(x->total_weight, y->total_weight);
    for (size_t j = 0; j < x->nvariants; j++) {
      assert_string_equal(x->variants[j].name, y->variants[j].name);
      assert_int_equal(x->variants[j].weight, y->variants[j].weight);
      assert_policy_equal(&x->variants[j].forcing, &y->variants[j].forcing);
    }
  }
}

/* Loads a dump of cfg back and checks that it is the same config. */
static void assert_dump_roundtrips(const pd_config_t *cfg) {
  char *path = dump_to_file(cfg);
  pd_config_t *again = load_file(path, &NO_OV);
  assert_config_equal(cfg, again);
  for (size_t i = 0; i < cfg->nupstreams; i++)
    if (!strchr(cfg->upstreams[i].base_url, '@'))
      assert_string_equal(cfg->upstreams[i].base_url, again->upstreams[i].base_url);
  pd_config_unref(again);
  unlink(path);
  free(path);
}

static void test_dump_roundtrip(void **state) {
  (void)state;
  pd_config_t *cfg = load_data("config_full.yaml", &NO_OV);
  assert_dump_roundtrips(cfg);
  pd_config_unref(cfg);
  cfg = load_data("config_full.json", &NO_OV);
  assert_dump_roundtrips(cfg);
  pd_config_unref(cfg);
  pd_cli_overrides_t ov = {"[::1]:1234", "http://x/v1", 9, 2, PD_LOG_WARN};
  cfg = load_file(NULL, &ov);
  assert_dump_roundtrips(cfg);
  pd_config_unref(cfg);
  /* awkward strings: quotes, backslashes, control characters, UTF-8, YAML indicators */
  cfg = load_text("routes:\n"
                  "  - name: r\n"
                  "    model: \"- [x]: {y} # z\"\n"
                  "    forcing:\n"
                  "      prompts:\n"
                  "        think: \"say \\\"hi\\\"\\\\ \\t\\r\\x01\\x7f\\n\\nnext\"\n"
                  "        wait: \"Attends \xc3\xa9t\xc3\xa9 \xe2\x80\x94 \xf0\x9f\xa4\x94\"\n"
                  "        answer: \"'single' & *star ! %pct @at `tick`\"\n",
                  &NO_OV);
  assert_string_equal(cfg->routes[0].variants[0].forcing.prompts.think,
                      "say \"hi\"\\ \t\r\x01\x7f\n\nnext");
  assert_dump_roundtrips(cfg);
  pd_config_unref(cfg);
  /* YAML's other line breaks (NEL, LS, PS: \N \L \P) fold to a space when written raw inside
   * double quotes: the dump must escape them (found by fuzz_config). */
  cfg = load_text("routes:\n"
                  "  - name: r\n"
                  "    forcing: {prompts: {wait: \"a\\Nb\\Lc\\Pd\"}}\n",
                  &NO_OV);
  assert_string_equal(cfg->routes[0].variants[0].forcing.prompts.wait, "a\xc2\x85"
                                                                       "b\xe2\x80\xa8"
                                                                       "c\xe2\x80\xa9"
                                                                       "d");
  assert_dump_roundtrips(cfg);
  pd_config_unref(cfg);
}

/* The tls block of an upstream: files checked at load, relative to the config file's folder,
 * a certificate only with its key. */
static void test_upstream_tls(void **state) {
  (void)state;
  char *ca = write_tmp("-----BEGIN CERTIFICATE-----\n");
  char *crt = write_tmp("cert\n"), *key = write_tmp("key\n");
  char *text;
  assert_true(asprintf(&text,
                       "upstreams:\n"
                       "  - name: a\n"
                       "    base_url: https://a.example/v1\n"
                       "    tls: {ca_file: %s, cert_file: %s, key_file: %s}\n"
                       "  - name: b\n"
                       "    base_url: https://b.example/v1\n"
                       "    tls: {verify: false}\n"
                       "  - name: c\n"
                       "    base_url: https://c.example/v1\n",
                       ca, crt, key) > 0);
  pd_config_t *cfg = load_text(text, &NO_OV);
  free(text);
  assert_string_equal(cfg->upstreams[0].tls_ca_file, ca);
  assert_string_equal(cfg->upstreams[0].tls_cert_file, crt);
  assert_string_equal(cfg->upstreams[0].tls_key_file, key);
  assert_int_equal(cfg->upstreams[0].tls_verify, 1);
  assert_int_equal(cfg->upstreams[1].tls_verify, 0);
  assert_null(cfg->upstreams[1].tls_ca_file);
  assert_null(cfg->upstreams[2].tls_ca_file);
  assert_null(cfg->upstreams[2].tls_cert_file);
  assert_int_equal(cfg->upstreams[2].tls_verify, 1);
  pd_config_unref(cfg);

  /* A relative path is the config file's neighbour (both live in /tmp here). */
  assert_true(
      asprintf(&text, "upstreams:\n  - {name: a, base_url: \"https://a/v1\", tls: {ca_file: %s}}\n",
               strrchr(ca, '/') + 1) > 0);
  cfg = load_text(text, &NO_OV);
  free(text);
  assert_string_equal(cfg->upstreams[0].tls_ca_file, ca);
  pd_config_unref(cfg);

  assert_errors("upstreams:\n"
                "  - name: a\n"
                "    base_url: https://a/v1\n"
                "    tls:\n"
                "      ca_file: /nonexistent/ca.pem\n"
                "      server_name: api.internal\n"
                "      verify: maybe\n"
                "      sni: x\n",
                "F:5: tls \"ca_file\": cannot read /nonexistent/ca.pem: No such file or directory\n"
                "F:7: \"verify\" must be true or false (got \"maybe\")\n"
                "F:8: unknown key \"sni\" in tls");
  assert_true(asprintf(&text,
                       "upstreams:\n"
                       "  - name: a\n"
                       "    base_url: https://a/v1\n"
                       "    tls:\n"
                       "      cert_file: %s\n"
                       "  - name: b\n"
                       "    base_url: https://b/v1\n"
                       "    tls:\n"
                       "      key_file: %s\n"
                       "  - name: c\n"
                       "    base_url: https://c/v1\n"
                       "    tls: {ca_file: /tmp, cert_file: \"\"}\n",
                       crt, key) > 0);
  assert_errors(text, "F:5: tls \"cert_file\" needs \"key_file\" (the client certificate's private "
                      "key)\n"
                      "F:9: tls \"key_file\" needs \"cert_file\" (the client certificate)\n"
                      "F:12: tls \"ca_file\": /tmp is not a file\n"
                      "F:12: \"cert_file\" must not be empty\n"
                      "F:12: tls \"cert_file\" needs \"key_file\" (the client certificate's "
                      "private key)");
  free(text);
  unlink(ca);
  unlink(crt);
  unlink(key);
  free(ca);
  free(crt);
  free(key);
}

/* tls.server_name (the name sent as SNI and checked, instead of the base_url's host) and the
 * per-upstream HTTP proxy: read, validated with a message naming the key, dumped, freed. */
static void test_server_name_and_proxy(void **state) {
  (void)state;
  pd_config_t *cfg = load_text("upstreams:\n"
                               "  - name: a\n"
                               "    base_url: https://10.0.0.7/v1\n"
                               "    tls: {server_name: api.internal}\n"
                               "    proxy: http://proxy.corp:3128\n"
                               "  - name: b\n"
                               "    base_url: https://b.example/v1\n"
                               "    proxy: HTTP://127.0.0.1:8888/\n"
                               "  - name: c\n"
                               "    base_url: https://c.example/v1\n"
                               "    tls: {server_name: ~}\n"
                               "    proxy: null\n",
                               &NO_OV);
  assert_string_equal(cfg->upstreams[0].tls_server_name, "api.internal");
  assert_string_equal(cfg->upstreams[0].proxy, "http://proxy.corp:3128");
  assert_null(cfg->upstreams[1].tls_server_name);
  assert_string_equal(cfg->upstreams[1].proxy, "HTTP://127.0.0.1:8888");
  assert_null(cfg->upstreams[2].tls_server_name);
  assert_null(cfg->upstreams[2].proxy);
  char *path = dump_to_file(cfg);
  char *text = slurp(path);
  assert_non_null(strstr(text, "\n      verify: true\n      server_name: \"api.internal\"\n"
                               "    proxy: \"http://proxy.corp:3128\"\n"));
  assert_non_null(strstr(text, "\n      server_name: null\n    proxy: null\n"));
  free(text);
  unlink(path);
  free(path);
  assert_dump_roundtrips(cfg);
  pd_config_unref(cfg);

  assert_errors("upstreams:\n"
                "  - name: a\n"
                "    base_url: https://a/v1\n"
                "    tls: {server_name: \"\"}\n"
                "    proxy: https://p:3128\n"
                "  - name: b\n"
                "    base_url: https://b/v1\n"
                "    tls: {server_name: \"api internal\"}\n"
                "    proxy: socks5://p:1080\n"
                "  - name: c\n"
                "    base_url: https://c/v1\n"
                "    tls: {server_name: [a]}\n"
                "    proxy: http://p\n"
                "  - name: d\n"
                "    base_url: https://d/v1\n"
                "    proxy: http://p:3128/path\n"
                "  - name: e\n"
                "    base_url: https://e/v1\n"
                "    proxy: http://user:hunter2@p:3128\n"
                "  - name: f\n"
                "    base_url: https://f/v1\n"
                "    proxy: http://p:99999\n"
                "  - name: g\n"
                "    base_url: https://g/v1\n"
                "    proxy: \"\"\n"
                "  - name: h\n"
                "    base_url: https://h/v1\n"
                "    proxy: http://p:3128?x=1\n"
                "    prxy: http://p:1\n",
                "F:4: \"server_name\" must not be empty\n"
                "F:5: \"proxy\" must start with http:// (an HTTP proxy: http://HOST:PORT) (got "
                "\"https://p:3128\")\n"
                "F:8: tls \"server_name\" must be a host name of letters, digits, '-' and '.' (got "
                "\"api internal\")\n"
                "F:9: \"proxy\" must start with http:// (an HTTP proxy: http://HOST:PORT) (got "
                "\"socks5://p:1080\")\n"
                "F:12: \"server_name\" must be a string, not a list\n"
                "F:13: \"proxy\" needs a port: http://HOST:PORT (got \"http://p\")\n"
                "F:16: \"proxy\" must be http://HOST:PORT without a path or a query (got "
                "\"http://p:3128/path\")\n"
                "F:19: \"proxy\" must not hold user:password@ (proxy credentials are not "
                "supported)\n"
                "F:22: \"proxy\" must be http://HOST:PORT with a port of 1..65535, ASCII only (got "
                "\"http://p:99999\")\n"
                "F:25: \"proxy\" must not be empty\n"
                "F:28: \"proxy\" must be http://HOST:PORT without a path or a query (got "
                "\"http://p:3128?x=1\")\n"
                "F:29: unknown key \"prxy\" in an upstream (did you mean \"proxy\"?)");
}

static void test_dump_shows_every_key(void **state) {
  (void)state;
  pd_config_t *cfg = load_file(NULL, &NO_OV);
  char *path = dump_to_file(cfg);
  char *text = slurp(path);
  static const char *const keys[] = {"listen: \"127.0.0.1:8080\"\n",
                                     "workers: 1\n",
                                     "shutdown_grace_ms: 30000\n",
                                     "max_body_bytes: 16777216\n",
                                     "max_header_bytes: 65536\n",
                                     "header_timeout_ms: 10000\n",
                                     "idle_timeout_ms: 60000\n",
                                     "max_connections: 10000\n",
                                     "level: info\n",
                                     "access_log: \"-\"\n",
                                     "keys: []\n",
                                     "base_url: \"https://api.openai.com/v1\"\n",
                                     "api_key: null\n",
                                     "headers: {}\n",
                                     "connect_timeout_ms: 10000\n",
                                     "timeout_ms: 600000\n",
                                     "stall_timeout_ms: 120000\n",
                                     "retries: 2\n",
                                     "max_connections: 256\n",
                                     "token_limit_param: max_tokens\n",
                                     "http2: true\n",
                                     "    tls:\n      ca_file: null\n",
                                     "      cert_file: null\n      key_file: null\n",
                                     "      verify: true\n",
                                     "upstream: \"default\"\n",
                                     "model: null\n",
                                     "reasoning: field\n",
                                     "sticky: \"random\"\n",
                                     "allow_overrides: false\n",
                                     "effort: {}\n",
                                     "weight: 1\n",
                                     "mode: chat\n",
                                     "rounds: 2\n",
                                     "think_budget: 8192\n",
                                     "answer_budget: 2048\n",
                                     "min_think_tokens: 0\n",
                                     "max_think_tokens: 0\n",
                                     "think: \"Think for up to {think_budget} tokens.\"\n",
                                     "dialect: vllm\n",
                                     "think_open: \"<think>\\n\"\n",
                                     "length_cut: \"\\nFinal Answer:\"\n",
                                     "template: chatml\n"};
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
    if (!strstr(text, keys[i]))
      fail_msg("dump lacks %s in:\n%s", keys[i], text);
  free(text);
  unlink(path);
  free(path);
  pd_config_unref(cfg);
}

static void test_dump_redacts_secrets(void **state) {
  (void)state;
  setenv("PD_T_AUTH_KEY", "env-secret-4", 1);
  pd_config_t *cfg = load_data("config_secrets.yaml", &NO_OV);
  assert_int_equal(cfg->nauth_keys, 2);
  assert_string_equal(cfg->auth_keys[0], "sk-client-secret-1");
  assert_string_equal(cfg->auth_keys[1], "env-secret-4");
  assert_string_equal(cfg->upstreams[0].api_key, "sk-upstream-secret-2");
  assert_string_equal(cfg->upstreams[0].headers[0].value, "header-secret-3");
  char *path = dump_to_file(cfg);
  char *text = slurp(path);
  static const char *const secrets[] = {"sk-client-secret-1", "sk-upstream-secret-2",
                                        "header-secret-3",    "env-secret-4",
                                        "pa55word",           "user:"};
  for (size_t i = 0; i < sizeof secrets / sizeof *secrets; i++)
    if (strstr(text, secrets[i]))
      fail_msg("secret %s in dump:\n%s", secrets[i], text);
  assert_non_null(strstr(text, "keys: [\"<redacted>\", \"<redacted>\"]\n"));
  assert_non_null(strstr(text, "api_key: \"<redacted>\"\n"));
  assert_non_null(strstr(text, "headers: {\"x-api-token\": \"<redacted>\"}\n"));
  assert_non_null(strstr(text, "base_url: \"https://<redacted>@example.com/v1\"\n"));
  free(text);
  /* the redacted dump is still a valid config, equal but for the secrets */
  pd_config_t *again = load_file(path, &NO_OV);
  assert_config_equal(cfg, again);
  assert_string_equal(again->auth_keys[0], "<redacted>");
  assert_string_equal(again->upstreams[0].api_key, "<redacted>");
  pd_config_unref(again);
  unlink(path);
  free(path);
  pd_config_unref(cfg);
}

/* ---- the shipped examples ---- */

static void test_example_configs(void **state) {
  (void)state;
  char *dir = data_path("../../../config");
  DIR *d = opendir(dir);
  assert_non_null(d);
  struct dirent *ent;
  int n = 0;
  while ((ent = readdir(d))) {
    size_t len = strlen(ent->d_name);
    if (len < 5 ||
        (strcmp(ent->d_name + len - 5, ".yaml") && strcmp(ent->d_name + len - 5, ".json")))
      continue;
    char *path;
    assert_true(asprintf(&path, "%s/%s", dir, ent->d_name) > 0);
    pd_config_t *cfg = load_file(path, &NO_OV);
    assert_dump_roundtrips(cfg);
    pd_config_unref(cfg);
    free(path);
    n++;
  }
  closedir(d);
  free(dir);
  assert_true(n >= 5);

  /* spot checks of what the examples promise */
  pd_config_t *cfg = load_data("../../../config/ab-test.yaml", &NO_OV);
  const pd_route_t *r = &cfg->routes[0];
  assert_int_equal(r->sticky, PD_STICKY_HEADER);
  assert_string_equal(r->sticky_header, "x-user-id");
  assert_int_equal(r->allow_overrides, 1);
  assert_true(r->neffort > 0);
  assert_true(r->nvariants >= 2);
  assert_int_equal(cfg->nroutes, 2);
  pd_config_unref(cfg);
  setenv("OPENAI_API_KEY", "sk-test", 1);
  cfg = load_data("../../../config/gpt4o-6round.yaml", &NO_OV);
  assert_string_equal(cfg->upstreams[0].api_key, "sk-test");
  assert_int_equal(cfg->routes[0].variants[0].forcing.rounds, 6);
  assert_int_equal(cfg->routes[0].variants[0].forcing.mode, PD_MODE_CHAT);
  pd_config_unref(cfg);
  cfg = load_data("../../../config/vllm-prefill.yaml", &NO_OV);
  assert_string_equal(cfg->upstreams[0].base_url, "http://127.0.0.1:8000/v1");
  assert_int_equal(cfg->routes[0].variants[0].forcing.mode, PD_MODE_PREFILL);
  assert_int_equal(cfg->routes[0].variants[0].forcing.prefill.dialect, PD_DIALECT_VLLM);
  pd_config_unref(cfg);
  cfg = load_data("../../../config/s1-completions.yaml", &NO_OV);
  const pd_policy_t *p = &cfg->routes[0].variants[0].forcing;
  assert_int_equal(p->mode, PD_MODE_COMPLETIONS);
  assert_string_equal(p->template_name, "chatml");
  assert_true(p->min_think_tokens > 0 && p->max_think_tokens >= p->min_think_tokens);
  pd_config_unref(cfg);
}

/* reasoning_field (SPEC section 6): its default, each name, the dump, and a bad value. */
static void test_reasoning_field(void **state) {
  (void)state;
  pd_config_t *cfg =
      load_text("routes:\n"
                "  - {name: a}\n"
                "  - {name: b, match: {path_prefix: /b}, reasoning_field: reasoning}\n"
                "  - {name: c, match: {path_prefix: /c}, reasoning_field: both}\n"
                "  - {name: d, match: {path_prefix: /d}, reasoning_field: reasoning_content}\n",
                NULL);
  assert_int_equal(cfg->routes[0].reasoning_field, PD_RFIELD_REASONING_CONTENT);
  assert_int_equal(cfg->routes[1].reasoning_field, PD_RFIELD_REASONING);
  assert_int_equal(cfg->routes[2].reasoning_field, PD_RFIELD_BOTH);
  assert_int_equal(cfg->routes[3].reasoning_field, PD_RFIELD_REASONING_CONTENT);
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  pd_config_dump(cfg, f);
  fclose(f);
  assert_non_null(strstr(buf, "reasoning_field: both"));
  free(buf);
  pd_config_unref(cfg);

  char *path = write_tmp("routes:\n  - {name: a, reasoning_field: thoughts}\n");
  char *errs = errors_of_file(path, NULL);
  assert_non_null(strstr(errs, "\"reasoning_field\" must be reasoning_content, reasoning or both "
                               "(got \"thoughts\")"));
  free(errs);
  unlink(path);
  free(path);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_policy_defaults, setup),
      cmocka_unit_test_setup(test_log_level_parse, setup),
      cmocka_unit_test_setup(test_reasoning_field, setup),
      cmocka_unit_test_setup(test_builtin_defaults, setup),
      cmocka_unit_test_setup(test_default_upstream_env, setup),
      cmocka_unit_test_setup(test_overrides_without_file, setup),
      cmocka_unit_test_setup(test_overrides_with_file, setup),
      cmocka_unit_test_setup(test_bad_overrides, setup),
      cmocka_unit_test_setup(test_workers_zero_is_cores, setup),
      cmocka_unit_test_setup(test_http2_default_by_scheme, setup),
      cmocka_unit_test_setup(test_full_yaml, setup),
      cmocka_unit_test_setup(test_json, setup),
      cmocka_unit_test_setup(test_forcing_overrides_keys_individually, setup),
      cmocka_unit_test_setup(test_null_values_mean_defaults, setup),
      cmocka_unit_test_setup(test_listen_forms, setup),
      cmocka_unit_test_setup(test_normalisation, setup),
      cmocka_unit_test_setup(test_custom_template, setup),
      cmocka_unit_test_setup(test_env_substitution, setup),
      cmocka_unit_test_setup(test_env_errors, setup),
      cmocka_unit_test_setup(test_error_fixture, setup),
      cmocka_unit_test_setup(test_work_limits, setup),
      cmocka_unit_test_setup(test_forwarded_key_warning, setup),
      cmocka_unit_test_setup(test_unknown_and_duplicate_keys, setup),
      cmocka_unit_test_setup(test_type_errors, setup),
      cmocka_unit_test_setup(test_value_errors, setup),
      cmocka_unit_test_setup(test_syntax_errors, setup),
      cmocka_unit_test_setup(test_file_errors, setup),
      cmocka_unit_test_setup(test_empty_file, setup),
      cmocka_unit_test_setup(test_too_many_errors_are_capped, setup),
      cmocka_unit_test_setup(test_refcount, setup),
      cmocka_unit_test_setup(test_dump_roundtrip, setup),
      cmocka_unit_test_setup(test_upstream_tls, setup),
      cmocka_unit_test_setup(test_server_name_and_proxy, setup),
      cmocka_unit_test_setup(test_stall_timeout, setup),
      cmocka_unit_test_setup(test_dump_shows_every_key, setup),
      cmocka_unit_test_setup(test_dump_redacts_secrets, setup),
      cmocka_unit_test_setup(test_example_configs, setup),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
