/* `ponder eval` (SPEC section 11): the command line, the target (the config served in-process on
 * a loopback port, or a base URL), the run (eval/run.c) with its progress line on stderr, and
 * the outputs in DIR: samples.jsonl, summary.json, summary.md (also printed) and report.html.
 * Owns the dataset, the grader, the samples and, with --config, the in-process server. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "app/serve.h"
#include "base/array.h"
#include "base/buf.h"
#include "base/json.h"
#include "base/log.h"
#include "base/url.h"
#include "core/router.h"
#include "eval/dataset.h"
#include "eval/eval.h"
#include "eval/run.h"

static const char eval_usage[] =
    "usage: ponder eval --dataset FILE.jsonl (--config FILE [--route NAME] | --url BASE_URL)\n"
    "                   [--variants A,B,...] [--grader FILE.json | --grader judge]\n"
    "                   [--judge-route NAME] [--samples K] [--concurrency N] [--limit N]\n"
    "                   [--seed S] [--price IN,OUT] [--out DIR] [--model NAME]\n"
    "                   [--input-field F] [--reference-field F]\n"
    "\n"
    "Runs every dataset item through each variant (the config served in-process, or a base\n"
    "URL), grades the answers and writes DIR/samples.jsonl, summary.json, summary.md and\n"
    "report.html (DIR defaults to ./ponder-eval-<time>).\n"
    "\n"
    "  --dataset FILE      JSONL, one item a line (question/problem/Problem/prompt/input,\n"
    "                      answer/Answer/reference/label, or messages; id)\n"
    "  --config FILE       serve this config in-process and send every item to it per variant\n"
    "  --route NAME        the route to evaluate (default: the first with variants, else the\n"
    "                      first)\n"
    "  --url BASE_URL      any OpenAI-compatible base URL (\".../v1\"): one variant, named\n"
    "                      after the URL's host\n"
    "  --variants A,B      the route's variants to run, in this order (default: all)\n"
    "  --grader G          a grader file (OpenAI grader object), \"judge\" (the seed's LLM\n"
    "                      judge) or \"default\" (string_check eq of the final answer)\n"
    "  --judge-route NAME  the route judges are called through, forcing off (default: the\n"
    "                      evaluated route)\n"
    "  --samples K         requests per item and variant (default 1)\n"
    "  --concurrency N     requests in flight (default 8)\n"
    "  --limit N           the first N items only\n"
    "  --seed S            the bootstrap's seed (default 0)\n"
    "  --price IN,OUT      dollars per million prompt and completion tokens\n"
    "  --out DIR           the output folder\n"
    "  --model NAME        the model the requests name (default: the route's first\n"
    "                      match.models entry, else its model, else gpt-4o)\n"
    "  --input-field F     the question's field\n"
    "  --reference-field F the reference's field\n";

typedef struct eval_opts {
  const char *dataset, *config, *route, *url, *variants, *grader, *judge_route, *out, *model;
  const char *input_field, *reference_field;
  long samples, concurrency, limit;
  uint64_t seed;
  int have_price;
  double price_in, price_out;
} eval_opts_t;

static int usage_error(const char *fmt, const char *arg) {
  fputs("ponder eval: ", stderr);
  fprintf(stderr, fmt, arg);
  fputs("\n(see ponder eval --help)\n", stderr);
  return 2;
}

static int parse_long(const char *s, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi)
    return -1;
  *out = v;
  return 0;
}

static int parse_price(const char *s, double *in, double *out) {
  char *end;
  errno = 0;
  *in = strtod(s, &end);
  if (errno || end == s || *end != ',' || !isfinite(*in) || *in < 0)
    return -1;
  const char *p = end + 1;
  *out = strtod(p, &end);
  if (errno || end == p || *end || !isfinite(*out) || *out < 0)
    return -1;
  return 0;
}

/* ---- progress ------------------------------------------------------------------------------ */

typedef struct progress {
  uv_timer_t timer;
  pd_run_t *run;
  const char *const *variants;
  size_t nvariants, nitems;
  int tty;
  uint64_t t0, last_plain;
  size_t last_done;
} progress_t;

static void fmt_dur(char *out, size_t n, double s) {
  if (!isfinite(s) || s < 0)
    snprintf(out, n, "?");
  else if (s >= 3600)
    snprintf(out, n, "%d:%02d:%02d", (int)(s / 3600), (int)fmod(s / 60, 60), (int)fmod(s, 60));
  else
    snprintf(out, n, "%d:%02d", (int)(s / 60), (int)fmod(s, 60));
}

static void progress_line(progress_t *p, int final) {
  pd_run_progress_t pr;
  pd_run_progress(p->run, &pr);
  double el = (double)(uv_hrtime() - p->t0) / 1e9;
  double rate = el > 0 ? (double)pr.done / el : 0;
  char eta[32];
  fmt_dur(eta, sizeof eta, rate > 0 ? (double)(pr.total - pr.done) / rate : NAN);
  pd_buf_t b;
  pd_buf_init(&b);
  pd_buf_appendf(&b, "eval: %zu/%zu items (%zu/%zu samples), %.1f/s, ETA %s", pr.items_done,
                 p->nitems, pr.done, pr.total, rate, final ? "0:00" : eta);
  for (size_t v = 0; v < p->nvariants; v++) {
    if (pr.count[v])
      pd_buf_appendf(&b, " | %s %.1f%%", p->variants[v],
                     100.0 * pr.score_sum[v] / (double)pr.count[v]);
    else
      pd_buf_appendf(&b, " | %s -", p->variants[v]);
  }
  if (pr.errors)
    pd_buf_appendf(&b, " | %zu error%s", pr.errors, pr.errors == 1 ? "" : "s");
  if (p->tty)
    fprintf(stderr, "\r\033[K%s%s", pd_buf_str(&b), final ? "\n" : "");
  else
    fprintf(stderr, "%s\n", pd_buf_str(&b));
  fflush(stderr);
  pd_buf_free(&b);
  p->last_done = pr.done;
}

static void on_progress(uv_timer_t *t) {
  progress_t *p = t->data;
  if (!p->tty) {
    uint64_t now = uv_hrtime();
    if (now - p->last_plain < 5000000000ULL)
      return;
    p->last_plain = now;
  }
  progress_line(p, 0);
}

/* ---- the in-process server ---------------------------------------------------------------- */

typedef struct served {
  pd_serve_t serve;
  uv_async_t stopped;
  int started;
} served_t;

static void on_worker_stopped(uv_async_t *a) {
  (void)a;
}

static void warn_stderr(void *ud, const char *msg) {
  fprintf(stderr, "%s: warning: %s\n", (const char *)ud, msg);
}

/* The route --route names, else the first with variants, else the first. */
static const pd_route_t *pick_route(const pd_config_t *cfg, const char *name) {
  for (size_t i = 0; i < cfg->nroutes; i++)
    if (name ? strcmp(cfg->routes[i].name, name) == 0 : cfg->routes[i].nvariants > 1)
      return &cfg->routes[i];
  return name ? NULL : &cfg->routes[0];
}

/* The chat completions URL of a route on the in-process server. */
static char *route_url(int port, const pd_route_t *r) {
  pd_buf_t b;
  pd_buf_init(&b);
  pd_buf_appendf(&b, "http://127.0.0.1:%d%s/v1/chat/completions", port,
                 r->path_prefix ? r->path_prefix : "");
  return pd_buf_steal(&b, NULL);
}

/* Whether a request for `model` on route r's URL lands on r. */
static int addresses(const pd_config_t *cfg, const pd_route_t *r, const char *model) {
  pd_buf_t b;
  pd_buf_init(&b);
  pd_buf_appendf(&b, "%s/v1/chat/completions", r->path_prefix ? r->path_prefix : "");
  const pd_route_t *got = pd_router_match(cfg, pd_buf_str(&b), b.len, model, NULL);
  pd_buf_free(&b);
  return got == r;
}

/* ---- outputs ------------------------------------------------------------------------------- */

static json_t *str_or_null(const char *s) {
  return s ? json_string(s) : json_null();
}

static json_t *sample_json(const pd_eval_run_t *run, const pd_eval_sample_t *s) {
  const pd_eval_item_t *it = &run->items[s->item];
  json_t *o = json_object();
  json_object_set_new(o, "item_id", json_string(it->id));
  json_object_set_new(o, "variant", json_string(run->variants[s->variant]));
  json_object_set_new(o, "sample", json_integer(s->sample));
  json_object_set_new(o, "input",
                      it->messages ? json_incref(it->messages) : str_or_null(it->question));
  json_object_set_new(o, "reference", str_or_null(it->reference));
  json_object_set_new(o, "reasoning", json_string(s->reasoning ? s->reasoning : ""));
  json_object_set_new(o, "output_text", json_string(s->output_text ? s->output_text : ""));
  json_object_set_new(o, "final_answer", json_string(s->final_answer ? s->final_answer : ""));
  json_object_set_new(o, "score", json_real(s->score));
  json_object_set_new(o, "scores", s->scores ? json_incref(s->scores) : json_null());
  json_t *u = json_object();
  json_object_set_new(u, "prompt_tokens", json_integer(s->prompt_tokens));
  json_object_set_new(u, "completion_tokens", json_integer(s->completion_tokens));
  json_object_set_new(u, "reasoning_tokens", json_integer(s->reasoning_tokens));
  json_object_set_new(o, "usage", u);
  json_object_set_new(o, "rounds", json_integer(s->rounds));
  json_object_set_new(o, "upstream_calls", json_integer(s->upstream_calls));
  json_object_set_new(o, "latency_ms", json_real(round(s->latency_ms * 1000) / 1000));
  json_object_set_new(o, "error", str_or_null(s->error));
  return o;
}

static char *join_path(const char *dir, const char *name) {
  pd_buf_t b;
  pd_buf_init(&b);
  pd_buf_appendf(&b, "%s/%s", dir, name);
  return pd_buf_steal(&b, NULL);
}

static int write_samples(const char *path, const pd_eval_run_t *run) {
  FILE *f = fopen(path, "w");
  if (!f)
    return -1;
  int rc = 0;
  for (size_t i = 0; i < run->nsamples && rc == 0; i++) {
    json_t *o = sample_json(run, &run->samples[i]);
    /* 15 digits: a latency of 157.841 ms reads 157.841, not 157.84100000000001. */
    if (!o || json_dumpf(o, f, JSON_COMPACT | JSON_REAL_PRECISION(15)) < 0 || fputc('\n', f) < 0)
      rc = -1;
    json_decref(o);
  }
  if (fclose(f) != 0)
    rc = -1;
  return rc;
}

static int write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f)
    return -1;
  size_t n = strlen(text);
  int rc = fwrite(text, 1, n, f) == n ? 0 : -1;
  if (fclose(f) != 0)
    rc = -1;
  return rc;
}

/* mkdir -p */
static int make_dir(const char *path) {
  char *p = strdup(path);
  if (!p)
    return -1;
  for (char *s = p + 1; *s; s++) {
    if (*s != '/')
      continue;
    *s = 0;
    if (mkdir(p, 0777) < 0 && errno != EEXIST) {
      free(p);
      return -1;
    }
    *s = '/';
  }
  int rc = mkdir(p, 0777) < 0 && errno != EEXIST ? -1 : 0;
  free(p);
  return rc;
}

/* ---- the run ------------------------------------------------------------------------------- */

typedef struct ctx {
  eval_opts_t o;
  pd_eval_item_t *items;
  size_t nitems;
  pd_grader_t *grader;
  pd_config_t *cfg;
  served_t srv;
  const char **variants;
  size_t nvariants;
  char **owned; /* strings owned here */
  size_t nowned, capowned;
  pd_eval_sample_t *samples;
  pd_run_opts_t ro;
  const char *headers[4];
  uv_loop_t loop;
  progress_t prog;
  int finished;
} ctx_t;

static char *keep(ctx_t *c, char *s) {
  if (!s)
    return NULL;
  if (c->nowned == c->capowned) {
    char **no = pd_array_grow(c->owned, &c->capowned, sizeof *no, 16);
    if (!no) {
      free(s);
      return NULL;
    }
    c->owned = no;
  }
  return c->owned[c->nowned++] = s;
}

static char *fmt_keep(ctx_t *c, const char *fmt, const char *a) {
  pd_buf_t b;
  pd_buf_init(&b);
  pd_buf_appendf(&b, fmt, a);
  return keep(c, pd_buf_steal(&b, NULL));
}

static void on_run_done(void *ud) {
  ctx_t *c = ud;
  c->finished = 1;
  uv_timer_stop(&c->prog.timer);
}

/* Picks the variants: --variants (in its order; each must be the route's) or all. */
static int pick_variants(ctx_t *c, const pd_route_t *r) {
  c->variants = calloc(r->nvariants + 1, sizeof *c->variants);
  if (!c->variants)
    return -1;
  if (!c->o.variants) {
    for (size_t i = 0; i < r->nvariants; i++)
      c->variants[c->nvariants++] = r->variants[i].name;
    return 0;
  }
  char *list = keep(c, strdup(c->o.variants));
  if (!list)
    return -1;
  for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok;
       tok = strtok_r(NULL, ",", &save)) {
    int vi = pd_router_find_variant(r, tok, strlen(tok));
    if (vi < 0) {
      fprintf(stderr, "ponder eval: route '%s' has no variant '%s'\n", r->name, tok);
      return -2;
    }
    for (size_t k = 0; k < c->nvariants; k++)
      if (strcmp(c->variants[k], tok) == 0) {
        fprintf(stderr, "ponder eval: variant '%s' named twice in --variants\n", tok);
        return -2;
      }
    if (c->nvariants == r->nvariants)
      return -2;
    c->variants[c->nvariants++] = r->variants[vi].name;
  }
  if (c->nvariants == 0) {
    fprintf(stderr, "ponder eval: --variants names no variant\n");
    return -2;
  }
  return 0;
}

/* --config: load, adjust the in-process copy, serve it, and point the run at it. Returns 0, or
 * the exit code. */
static int setup_config(ctx_t *c) {
  pd_cli_overrides_t ov = {.listen = "127.0.0.1:0", .rounds = -1, .workers = -1, .log_level = -1};
  char *errors = NULL;
  if (pd_config_load(c->o.config, &ov, &c->cfg, &errors) < 0) {
    fprintf(stderr, "%s\n", errors ? errors : "ponder eval: invalid configuration");
    free(errors);
    return 1;
  }
  pd_config_t *cfg = c->cfg;
  pd_config_warnings(cfg, warn_stderr, (void *)c->o.config);
  const pd_route_t *route = pick_route(cfg, c->o.route);
  if (!route)
    return usage_error("the config has no route '%s'", c->o.route);
  const pd_route_t *jroute = c->o.judge_route ? pick_route(cfg, c->o.judge_route) : route;
  if (!jroute)
    return usage_error("the config has no route '%s' (--judge-route)", c->o.judge_route);
  int rc = pick_variants(c, route);
  if (rc == -1)
    return 1;
  if (rc < 0)
    return 2;
  const char *model = c->o.model;
  if (!model)
    model = route->nmodels ? route->models[0] : route->model ? route->model : "gpt-4o";
  if (!addresses(cfg, route, model)) {
    fprintf(stderr,
            "ponder eval: a request for model '%s' does not reach route '%s' of %s: pass "
            "--model with one of the route's match.models\n",
            model, route->name, c->o.config);
    return 2;
  }
  /* The operator's own run: overrides are allowed on the in-process copy, whatever the file
   * says; its access log is off (the run writes its own record) and it logs warnings only. */
  for (size_t i = 0; i < cfg->nroutes; i++)
    cfg->routes[i].allow_overrides = 1;
  free(cfg->access_log);
  cfg->access_log = strdup("off");
  if (cfg->log_level > PD_LOG_WARN)
    cfg->log_level = PD_LOG_WARN;
  pd_log_level_current = cfg->log_level;
  if (!cfg->access_log)
    return 1;
  uv_async_init(&c->loop, &c->srv.stopped, on_worker_stopped);
  uv_unref((uv_handle_t *)&c->srv.stopped);
  if (pd_serve_start(&c->srv.serve, cfg, &c->srv.stopped) < 0)
    return 1;
  c->srv.started = 1;
  c->ro.url = keep(c, route_url(c->srv.serve.port, route));
  c->ro.judge_url = keep(c, route_url(c->srv.serve.port, jroute));
  c->ro.model = model;
  c->ro.judge_model = jroute->path_prefix || !jroute->nmodels ? NULL : jroute->models[0];
  c->ro.judge_rounds0 = 1;
  c->ro.set_variant = 1;
  /* The in-process server already retries each upstream call per the upstream's `retries`
   * (before any byte reaches eval); retrying again here would multiply the attempts and re-run
   * whole forced chains. */
  c->ro.retries = 0;
  c->ro.timeout_ms = 0; /* the server enforces its upstreams' timeouts */
  size_t nh = 0;
  if (cfg->nauth_keys)
    c->headers[nh++] = fmt_keep(c, "Authorization: Bearer %s", cfg->auth_keys[0]);
  else if (getenv("OPENAI_API_KEY") && *getenv("OPENAI_API_KEY"))
    c->headers[nh++] = fmt_keep(c, "Authorization: Bearer %s", getenv("OPENAI_API_KEY"));
  c->headers[nh] = NULL;
  return 0;
}

/* --url: one variant named after the host. Returns 0, or the exit code. */
static int setup_url(ctx_t *c) {
  pd_url_base_t b;
  if (pd_url_parse_base(c->o.url, strlen(c->o.url), &b) < 0)
    return usage_error("--url must be an http:// or https:// base URL (got '%s')", c->o.url);
  if (c->o.variants || c->o.route || c->o.judge_route)
    return usage_error("%s", "--variants, --route and --judge-route need --config");
  pd_buf_t u;
  pd_buf_init(&u);
  /* The base path without its trailing '/', then /chat/completions (pd_url_join's rule). */
  if (pd_url_join(&b, "/chat/completions", 17, NULL, 0, &u) < 0) {
    pd_buf_free(&u);
    return usage_error("--url cannot be joined with /chat/completions (got '%s')", c->o.url);
  }
  c->ro.url = c->ro.judge_url = keep(c, pd_buf_steal(&u, NULL));
  c->variants = calloc(2, sizeof *c->variants);
  char *host = keep(c, strndup(b.host, b.host_len));
  if (!c->variants || !host || !c->ro.url)
    return 1;
  c->variants[0] = host;
  c->nvariants = 1;
  c->ro.model = c->o.model ? c->o.model : "gpt-4o";
  c->ro.retries = 2;
  c->ro.timeout_ms = 30L * 60 * 1000;
  size_t nh = 0;
  if (getenv("OPENAI_API_KEY") && *getenv("OPENAI_API_KEY"))
    c->headers[nh++] = fmt_keep(c, "Authorization: Bearer %s", getenv("OPENAI_API_KEY"));
  c->headers[nh] = NULL;
  return 0;
}

static int parse_args(int argc, char **argv, eval_opts_t *o) {
  static const struct option opts[] = {{"dataset", required_argument, 0, 'd'},
                                       {"config", required_argument, 0, 'c'},
                                       {"route", required_argument, 0, 'r'},
                                       {"url", required_argument, 0, 'u'},
                                       {"variants", required_argument, 0, 'v'},
                                       {"grader", required_argument, 0, 'g'},
                                       {"judge-route", required_argument, 0, 'j'},
                                       {"samples", required_argument, 0, 'k'},
                                       {"concurrency", required_argument, 0, 'n'},
                                       {"limit", required_argument, 0, 'l'},
                                       {"seed", required_argument, 0, 's'},
                                       {"price", required_argument, 0, 'p'},
                                       {"out", required_argument, 0, 'o'},
                                       {"model", required_argument, 0, 'm'},
                                       {"input-field", required_argument, 0, 'I'},
                                       {"reference-field", required_argument, 0, 'R'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  memset(o, 0, sizeof *o);
  o->samples = 1;
  o->concurrency = 8;
  optind = 1;
  opterr = 0;
  int ch;
  while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (ch) {
    case 'd':
      o->dataset = optarg;
      break;
    case 'c':
      o->config = optarg;
      break;
    case 'r':
      o->route = optarg;
      break;
    case 'u':
      o->url = optarg;
      break;
    case 'v':
      o->variants = optarg;
      break;
    case 'g':
      o->grader = optarg;
      break;
    case 'j':
      o->judge_route = optarg;
      break;
    case 'o':
      o->out = optarg;
      break;
    case 'm':
      o->model = optarg;
      break;
    case 'I':
      o->input_field = optarg;
      break;
    case 'R':
      o->reference_field = optarg;
      break;
    case 'k':
      if (parse_long(optarg, 1, 10000, &o->samples) < 0)
        return usage_error("--samples must be an integer from 1 to 10000 (got '%s')", optarg);
      break;
    case 'n':
      if (parse_long(optarg, 1, 4096, &o->concurrency) < 0)
        return usage_error("--concurrency must be an integer from 1 to 4096 (got '%s')", optarg);
      break;
    case 'l':
      if (parse_long(optarg, 1, PD_DATASET_MAX_ITEMS, &o->limit) < 0)
        return usage_error("--limit must be an integer from 1 to 1000000 (got '%s')", optarg);
      break;
    case 's': {
      char *end;
      errno = 0;
      unsigned long long s = strtoull(optarg, &end, 10);
      /* summary.json holds it as a JSON integer: at most 2^63 - 1, so it reads back the same. */
      if (errno || end == optarg || *end || optarg[0] == '-' || s > INT64_MAX)
        return usage_error("--seed must be an integer from 0 to 9223372036854775807 (got '%s')",
                           optarg);
      o->seed = s;
      break;
    }
    case 'p':
      if (parse_price(optarg, &o->price_in, &o->price_out) < 0)
        return usage_error("--price must be IN,OUT: two non-negative numbers (got '%s')", optarg);
      o->have_price = 1;
      break;
    case 'h':
      fputs(eval_usage, stdout);
      return -1;
    default:
      return usage_error("unknown or incomplete option '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc)
    return usage_error("unexpected argument '%s'", argv[optind]);
  if (!o->dataset)
    return usage_error("%s", "--dataset FILE.jsonl is required");
  if (!o->config == !o->url)
    return usage_error("%s", "exactly one of --config FILE and --url BASE_URL is required");
  if (o->input_field && !*o->input_field)
    return usage_error("%s", "--input-field must not be empty");
  if (o->reference_field && !*o->reference_field)
    return usage_error("%s", "--reference-field must not be empty");
  if (o->model && !*o->model)
    return usage_error("%s", "--model must not be empty");
  return 0;
}

static void ctx_free(ctx_t *c) {
  if (c->samples)
    for (size_t i = 0; i < c->nitems * c->nvariants * (size_t)c->o.samples; i++)
      pd_run_sample_clear(&c->samples[i]);
  free(c->samples);
  pd_dataset_free(c->items, c->nitems);
  if (c->grader)
    pd_grader_free(c->grader);
  for (size_t i = 0; i < c->nowned; i++)
    free(c->owned[i]);
  free(c->owned);
  free(c->variants);
}

static void close_handle(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

static int write_outputs(ctx_t *c, const pd_eval_run_t *run, const char *dir) {
  char *sp = join_path(dir, "samples.jsonl"), *jp = join_path(dir, "summary.json"),
       *mp = join_path(dir, "summary.md"), *hp = join_path(dir, "report.html");
  int rc = 1;
  json_t *summary = NULL;
  char *md = NULL;
  if (!sp || !jp || !mp || !hp)
    goto out;
  if (write_samples(sp, run) < 0) {
    fprintf(stderr, "ponder eval: cannot write %s: %s\n", sp, strerror(errno));
    goto out;
  }
  if (!(summary = pd_eval_summary(run))) {
    fprintf(stderr, "ponder eval: out of memory building the summary\n");
    goto out;
  }
  if (json_dump_file(summary, jp, JSON_INDENT(2) | JSON_REAL_PRECISION(17)) < 0) {
    fprintf(stderr, "ponder eval: cannot write %s\n", jp);
    goto out;
  }
  md = pd_eval_summary_md(summary);
  if (!md || write_text(mp, md) < 0) {
    fprintf(stderr, "ponder eval: cannot write %s\n", mp);
    goto out;
  }
  char *err = NULL;
  if (pd_eval_report_write(hp, summary, sp, &err) < 0) {
    fprintf(stderr, "ponder eval: cannot write %s: %s\n", hp, err ? err : "?");
    free(err);
    goto out;
  }
  fputs(md, stdout);
  fprintf(stderr, "ponder eval: wrote %s/{samples.jsonl,summary.json,summary.md,report.html}\n",
          dir);
  rc = 0;
out:
  (void)c;
  json_decref(summary);
  free(md);
  free(sp);
  free(jp);
  free(mp);
  free(hp);
  return rc;
}

int pd_eval_main(int argc, char **argv) {
  ctx_t ctx, *c = &ctx;
  memset(c, 0, sizeof *c);
  int rc = parse_args(argc, argv, &c->o);
  if (rc)
    return rc < 0 ? 0 : rc;
  signal(SIGPIPE, SIG_IGN);
  pd_dataset_opts_t dso = {.input_field = c->o.input_field,
                           .reference_field = c->o.reference_field,
                           .limit = (size_t)c->o.limit};
  char *err = NULL;
  if (pd_dataset_load(c->o.dataset, &dso, &c->items, &c->nitems, &err) < 0) {
    fprintf(stderr, "%s\n", err ? err : "ponder eval: cannot read the dataset");
    free(err);
    return 1;
  }
  if (!(c->grader = pd_grader_get(c->o.grader, &err))) {
    fprintf(stderr, "%s\n", err ? err : "ponder eval: cannot load the grader");
    free(err);
    ctx_free(c);
    return 2;
  }
  /* The output folder before any request: a run must not be lost to a path that cannot be
   * written. */
  char defdir[64];
  const char *dir = c->o.out;
  if (!dir) {
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(defdir, sizeof defdir, "ponder-eval-%Y%m%d-%H%M%S", &tm);
    dir = defdir;
  }
  if (make_dir(dir) < 0) {
    fprintf(stderr, "ponder eval: cannot create %s: %s\n", dir, strerror(errno));
    ctx_free(c);
    return 1;
  }
  if (uv_loop_init(&c->loop) < 0) {
    ctx_free(c);
    return 1;
  }
  rc = c->o.config ? setup_config(c) : setup_url(c);
  if (rc == 0) {
    c->ro.headers = c->headers;
    c->ro.items = c->items;
    c->ro.nitems = c->nitems;
    c->ro.variants = c->variants;
    c->ro.nvariants = c->nvariants;
    c->ro.per_item = (int)c->o.samples;
    c->ro.concurrency = (int)c->o.concurrency;
    c->ro.grader = c->grader;
    size_t total = c->nitems * c->nvariants * (size_t)c->o.samples;
    c->samples = calloc(total ? total : 1, sizeof *c->samples);
    pd_run_t *run = c->samples ? pd_run_new(&c->loop, &c->ro, c->samples) : NULL;
    if (!run) {
      fprintf(stderr, "ponder eval: out of memory\n");
      rc = 1;
    } else {
      fprintf(stderr, "ponder eval: %zu items x %zu variant%s x %ld sample%s against %s\n",
              c->nitems, c->nvariants, c->nvariants == 1 ? "" : "s", c->o.samples,
              c->o.samples == 1 ? "" : "s", c->ro.url);
      progress_t *p = &c->prog;
      p->run = run;
      p->variants = c->variants;
      p->nvariants = c->nvariants;
      p->nitems = c->nitems;
      p->tty = isatty(2);
      p->t0 = p->last_plain = uv_hrtime();
      uv_timer_init(&c->loop, &p->timer);
      p->timer.data = p;
      uv_timer_start(&p->timer, on_progress, 250, 250);
      pd_run_start(run, on_run_done, c);
      uv_run(&c->loop, UV_RUN_DEFAULT);
      progress_line(p, 1);
      pd_run_free(run);
    }
  }
  if (c->srv.started) {
    pd_serve_stop(&c->srv.serve, 1);
    pd_serve_join(&c->srv.serve);
    pd_serve_close(&c->srv.serve);
    c->srv.started = 0;
  }
  uv_walk(&c->loop, close_handle, NULL);
  uv_run(&c->loop, UV_RUN_DEFAULT);
  uv_loop_close(&c->loop);
  if (rc == 0 && c->finished) {
    pd_eval_run_t run = {.dataset = c->o.dataset,
                         .grader = pd_grader_name(c->grader),
                         .seed = c->o.seed,
                         .per_item = (int)c->o.samples,
                         .items = c->items,
                         .nitems = c->nitems,
                         .variants = c->variants,
                         .nvariants = c->nvariants,
                         .samples = c->samples,
                         .nsamples = c->nitems * c->nvariants * (size_t)c->o.samples,
                         .have_price = c->o.have_price,
                         .price_in = c->o.price_in,
                         .price_out = c->o.price_out};
    rc = write_outputs(c, &run, dir);
  } else if (rc == 0) {
    rc = 1;
  }
  pd_config_unref(c->cfg);
  ctx_free(c);
  return rc;
}
