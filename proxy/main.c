/* ponder's main: the command line (--config, --check-config, ...), loading the config, serving
 * it (app/serve.c: the listening sockets, the state the workers share, the worker threads),
 * reloads and signals; `ponder eval` and `ponder export` go to eval/. Owns the main loop and the
 * config it last loaded; every request is served on a worker (app/worker.c, app/front.c).
 *
 * Signals (SPEC section 9) are taken by the main thread only: it blocks SIGTERM, SIGINT and
 * SIGHUP before any other thread exists, so every thread it starts inherits the block, and
 * unblocks them for itself once its handlers are in. Its handlers stay in until every worker
 * has ended; then it blocks the signals again and ignores them before closing the handles
 * (closing restores the default actions, which would kill the process), so no signal at any
 * moment after start-up ends it other than through the stop it asks for. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "app/serve.h"
#include "eval/eval.h"

static const char usage_text[] =
    "usage: ponder [--config FILE] [--listen HOST:PORT] [--upstream URL] [--rounds N]\n"
    "              [--workers N] [--log-level error|warn|info|debug] [--check-config]\n"
    "              [--version] [--help]\n"
    "       ponder eval --dataset FILE.jsonl (--config FILE | --url BASE_URL) [options]\n"
    "       ponder export --samples DIR/samples.jsonl --format FORMAT [options]\n"
    "\n"
    "An OpenAI-compatible reasoning proxy: every chat completion becomes a budget-forced\n"
    "exchange with the upstream model. Without --config, it proxies to --upstream, else\n"
    "$PONDER_UPSTREAM, else $OPENAI_BASE_URL, else https://api.openai.com/v1, with 2 rounds.\n"
    "\n"
    "  --config FILE       YAML (or JSON) configuration file\n"
    "  --listen HOST:PORT  address to listen on (default 127.0.0.1:8080)\n"
    "  --upstream URL      base URL of the default upstream (\".../v1\")\n"
    "  --rounds N          thinking rounds of the default policy (default 2)\n"
    "  --workers N         event-loop threads sharing the port (0 = one per core)\n"
    "  --log-level LEVEL   error, warn, info or debug\n"
    "  --check-config      validate, print the effective config (secrets redacted), exit\n"
    "  --version           print the version\n"
    "  --help              print this help\n"
    "\n"
    "Signals: SIGHUP reloads the config file; SIGTERM/SIGINT stop gracefully.\n";

typedef struct app_state {
  const char *config_path;
  pd_cli_overrides_t ov;
  pd_serve_t serve;
  uv_signal_t sig_term, sig_int, sig_hup;
  uv_async_t workers_stopped; /* a worker's loop ended (pd_app_t.stopped) */
  pd_config_t *cfg;           /* the main thread's own reference to the last loaded config */
  int stopping;               /* 0 serving, 1 draining, 2 aborting what is left */
  unsigned hup_ignored;       /* SIGHUPs ignored during the shutdown */
} app_state_t;

/* The signals the main loop handles; blocked in every other thread. */
static void handled_signals(sigset_t *set) {
  sigemptyset(set);
  sigaddset(set, SIGTERM);
  sigaddset(set, SIGINT);
  sigaddset(set, SIGHUP);
}

static int parse_int(const char *s, int *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < 0 || v > 1000000)
    return -1;
  *out = (int)v;
  return 0;
}

static void warn_stderr(void *ud, const char *msg) {
  fprintf(stderr, "%s: warning: %s\n", (const char *)ud, msg);
}

static void warn_log(void *ud, const char *msg) {
  (void)ud;
  pd_log_warn(NULL, "%s", msg);
}

/* After the last worker: the handlers go, and with them libuv's restoring of the default actions
 * must not open a window, so the signals are blocked and then ignored first. The process exits
 * with them pending, which is harmless. */
static void close_signals(app_state_t *st) {
  sigset_t set;
  handled_signals(&set);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  uv_close((uv_handle_t *)&st->sig_term, NULL);
  uv_close((uv_handle_t *)&st->sig_int, NULL);
  uv_close((uv_handle_t *)&st->sig_hup, NULL);
  signal(SIGTERM, SIG_IGN);
  signal(SIGINT, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
}

static void on_workers_stopped(uv_async_t *a) {
  app_state_t *st = a->data;
  if (atomic_load(&st->serve.app.nstopped) == st->serve.app.nworkers &&
      !uv_is_closing((uv_handle_t *)&st->sig_term))
    close_signals(st);
}

static void on_stop_signal(uv_signal_t *h, int signum) {
  app_state_t *st = h->data;
  const char *name = signum == SIGTERM ? "SIGTERM" : "SIGINT";
  if (st->stopping == 0) {
    st->stopping = 1;
    pd_log_info(NULL, "received %s: stopping (in-flight requests may finish)", name);
  } else if (st->stopping == 1) {
    st->stopping = 2;
    pd_log_warn(NULL, "received %s during the shutdown: aborting the requests left", name);
  } else {
    return;
  }
  pd_serve_stop(&st->serve, st->stopping == 2);
}

static void on_hup(uv_signal_t *h, int signum) {
  (void)signum;
  app_state_t *st = h->data;
  if (st->stopping) {
    if (!st->hup_ignored++) /* once: a storm must not flood the log */
      pd_log_info(NULL, "SIGHUP during the shutdown: ignored");
    return;
  }
  if (!st->config_path) {
    pd_log_warn(NULL, "SIGHUP: no --config file to reload");
    return;
  }
  pd_config_t *cfg = NULL;
  char *errors = NULL;
  if (pd_config_load(st->config_path, &st->ov, &cfg, &errors) < 0) {
    pd_log_error(NULL, "reload failed, keeping the running config:\n%s", errors ? errors : "");
    free(errors);
    return;
  }
  pd_config_t *cur = st->cfg;
  if (strcmp(cur->listen_host, cfg->listen_host) != 0 || cur->listen_port != cfg->listen_port)
    pd_log_warn(NULL, "reload: a new listen address takes effect only after a restart");
  pd_log_level_current = cfg->log_level;
  pd_config_warnings(cfg, warn_log, NULL);
  pd_serve_reload(&st->serve, pd_config_ref(cfg));
  st->cfg = cfg;
  pd_config_unref(cur);
  pd_log_info(NULL, "reloaded %s", st->config_path);
}

int main(int argc, char **argv) {
  /* Subcommands: their own command lines, in eval/. */
  if (argc > 1 && strcmp(argv[1], "eval") == 0)
    return pd_eval_main(argc - 1, argv + 1);
  if (argc > 1 && strcmp(argv[1], "export") == 0)
    return pd_export_main(argc - 1, argv + 1);
  static const struct option opts[] = {
      {"config", required_argument, 0, 'c'},   {"listen", required_argument, 0, 'l'},
      {"upstream", required_argument, 0, 'u'}, {"rounds", required_argument, 0, 'r'},
      {"workers", required_argument, 0, 'w'},  {"log-level", required_argument, 0, 'L'},
      {"check-config", no_argument, 0, 'C'},   {"version", no_argument, 0, 'V'},
      {"help", no_argument, 0, 'h'},           {0, 0, 0, 0}};
  app_state_t st;
  memset(&st, 0, sizeof st);
  st.ov.rounds = -1;
  st.ov.workers = -1;
  st.ov.log_level = -1;
  int check = 0, c;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case 'c':
      st.config_path = optarg;
      break;
    case 'l':
      st.ov.listen = optarg;
      break;
    case 'u':
      st.ov.upstream = optarg;
      break;
    case 'r':
      if (parse_int(optarg, &st.ov.rounds) < 0 || st.ov.rounds > 32) {
        fprintf(stderr, "ponder: --rounds must be an integer from 0 to 32\n");
        return 1;
      }
      break;
    case 'w':
      if (parse_int(optarg, &st.ov.workers) < 0 || st.ov.workers > 1024) {
        fprintf(stderr, "ponder: --workers must be an integer from 0 to 1024\n");
        return 1;
      }
      break;
    case 'L':
      if ((st.ov.log_level = pd_log_level_parse(optarg)) < 0) {
        fprintf(stderr, "ponder: --log-level must be error, warn, info or debug\n");
        return 1;
      }
      break;
    case 'C':
      check = 1;
      break;
    case 'V':
      printf("ponder %s\n", PONDER_VERSION);
      return 0;
    case 'h':
      fputs(usage_text, stdout);
      return 0;
    default:
      fputs(usage_text, stderr);
      return 1;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "ponder: unexpected argument '%s'\n", argv[optind]);
    fputs(usage_text, stderr);
    return 1;
  }
  pd_config_t *cfg = NULL;
  char *errors = NULL;
  if (pd_config_load(st.config_path, &st.ov, &cfg, &errors) < 0) {
    fprintf(stderr, "%s\n", errors ? errors : "ponder: invalid configuration");
    free(errors);
    return 1;
  }
  if (check) {
    pd_config_warnings(cfg, warn_stderr, (void *)(st.config_path ? st.config_path : "ponder"));
    pd_config_dump(cfg, stdout);
    pd_config_unref(cfg);
    return 0;
  }
  pd_log_level_current = cfg->log_level;
  pd_config_warnings(cfg, warn_log, NULL);
  signal(SIGPIPE, SIG_IGN);
  /* Signal handlers go in before anything listens, so an early SIGTERM is a clean stop. The
   * signals stay blocked until every thread is started (they inherit the mask), and a signal
   * that comes meanwhile waits for the handlers. */
  sigset_t handled, saved_mask;
  handled_signals(&handled);
  pthread_sigmask(SIG_BLOCK, &handled, &saved_mask);
  uv_loop_t *loop = uv_default_loop();
  uv_async_init(loop, &st.workers_stopped, on_workers_stopped);
  st.workers_stopped.data = &st;
  uv_unref((uv_handle_t *)&st.workers_stopped); /* the signal handles keep the loop running */
  uv_signal_init(loop, &st.sig_term);
  uv_signal_init(loop, &st.sig_int);
  uv_signal_init(loop, &st.sig_hup);
  st.sig_term.data = st.sig_int.data = st.sig_hup.data = &st;
  uv_signal_start(&st.sig_term, on_stop_signal, SIGTERM);
  uv_signal_start(&st.sig_int, on_stop_signal, SIGINT);
  uv_signal_start(&st.sig_hup, on_hup, SIGHUP);

  int src = pd_serve_start(&st.serve, cfg, &st.workers_stopped);
  if (src < 0) {
    pd_config_unref(cfg);
    return src == PD_SERVE_EACCESS_LOG ? 1 : 2;
  }
  size_t n = st.serve.app.nworkers;
  int port = st.serve.port;
  st.cfg = cfg;
  pthread_sigmask(SIG_SETMASK, &saved_mask, NULL);
  fprintf(stderr, "ponder %s listening on %s:%d with %zu worker%s\n", PONDER_VERSION,
          cfg->listen_host, port, n, n == 1 ? "" : "s");

  /* Runs until every worker has stopped and close_signals ran. */
  uv_run(loop, UV_RUN_DEFAULT);
  pd_serve_join(&st.serve);
  /* Closed only now: a worker may still have been inside uv_async_send before the join. */
  uv_close((uv_handle_t *)&st.workers_stopped, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  pd_log_info(NULL, "stopped");
  pd_serve_close(&st.serve);
  pd_config_unref(st.cfg);
  return 0;
}
