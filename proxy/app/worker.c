/* Worker threads: see worker.h. Each worker owns its loop, its server and upstream clients,
 * its metrics and feedback stores and its random generator; it takes config reloads and stop
 * requests from the main thread through one async handle, and ends by closing the server, then
 * the upstream clients, then its own handles, in that order. Requests go to app/front.c. */
#include "app/worker.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "app/front.h"
#include "base/log.h"

uint64_t pd_worker_rand(pd_worker_t *w) {
  /* xorshift64*: per worker, so no shared state between threads. */
  uint64_t x = w->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  w->rng = x;
  return x * 0x2545F4914F6CDD1DULL;
}

void pd_worker_server_opts(const pd_config_t *cfg, size_t nworkers, pd_server_opts_t *o) {
  o->max_body_bytes = cfg->limits.max_body_bytes;
  o->max_header_bytes = cfg->limits.max_header_bytes;
  o->header_timeout_ms = cfg->limits.header_timeout_ms;
  o->idle_timeout_ms = cfg->limits.idle_timeout_ms;
  /* The connection limit is process-wide; each worker takes its share. */
  long n = (long)(nworkers ? nworkers : 1);
  o->max_connections = (cfg->limits.max_connections + n - 1) / n;
}

static int max_upstream_connections(const pd_config_t *cfg) {
  int m = 0;
  for (size_t i = 0; i < cfg->nupstreams; i++)
    if (cfg->upstreams[i].max_connections > m)
      m = cfg->upstreams[i].max_connections;
  return m;
}

static void on_async_closed(uv_handle_t *h) {
  (void)h;
}

static void on_upstream_closed(void *ud) {
  pd_worker_t *w = ud;
  /* Under the lock, so the main thread never sends on a closed handle. */
  uv_mutex_lock(&w->async_lock);
  w->async_closed = 1;
  uv_close((uv_handle_t *)&w->async, on_async_closed);
  uv_mutex_unlock(&w->async_lock);
  uv_close((uv_handle_t *)&w->grace_timer, NULL);
}

static void on_server_closed(void *ud) {
  pd_worker_t *w = ud;
  pd_upstream_close(w->up, on_upstream_closed, w);
}

static void on_grace(uv_timer_t *t) {
  pd_worker_t *w = t->data;
  pd_log_warn(NULL, "worker %d: shutdown grace period over, aborting %zu request(s)", w->id,
              pd_server_inflight(w->server));
  pd_server_stop(w->server, 1, on_server_closed, w);
}

static void on_async(uv_async_t *a) {
  pd_worker_t *w = a->data;
  pd_config_t *next = atomic_exchange(&w->next_cfg, NULL);
  if (next) {
    pd_config_t *old = w->cfg;
    w->cfg = next;
    pd_server_opts_t o;
    pd_worker_server_opts(next, w->app->nworkers, &o);
    pd_server_set_opts(w->server, &o);
    pd_config_unref(old); /* in-flight requests hold their own reference */
  }
  int req = atomic_load(&w->stop_req);
  if (req && !w->stopping) {
    w->stopping = req;
    if (w->cfg->shutdown_grace_ms > 0 && req == 1) {
      uv_timer_start(&w->grace_timer, on_grace, (uint64_t)w->cfg->shutdown_grace_ms, 0);
      uv_unref((uv_handle_t *)&w->grace_timer);
    }
    pd_server_stop(w->server, req == 2 || w->cfg->shutdown_grace_ms <= 0, on_server_closed, w);
  } else if (req == 2 && w->stopping == 1) {
    /* A second stop signal during the drain: what is left is aborted now, not at the deadline.
     * pd_server_stop again closes every connection; on_closed was registered the first time. */
    w->stopping = 2;
    uv_timer_stop(&w->grace_timer);
    if (pd_server_inflight(w->server))
      pd_log_warn(NULL, "worker %d: stop requested again, aborting %zu request(s)", w->id,
                  pd_server_inflight(w->server));
    pd_server_stop(w->server, 1, on_server_closed, w);
  }
}

static void run(void *arg) {
  pd_worker_t *w = arg;
  uv_run(&w->loop, UV_RUN_DEFAULT);
  pd_config_t *next = atomic_exchange(&w->next_cfg, NULL);
  if (next)
    pd_config_unref(next);
  /* The main thread keeps its signal handlers until every worker has reported here. */
  atomic_fetch_add(&w->app->nstopped, 1);
  uv_async_send(w->app->stopped);
}

int pd_worker_start(pd_worker_t *w) {
  int rc;
  if (getrandom(&w->rng, sizeof w->rng, 0) != sizeof w->rng || w->rng == 0)
    w->rng = uv_hrtime() ^ ((uint64_t)(w->id + 1) << 32) ^ 0x9E3779B97F4A7C15ULL;
  if ((rc = uv_loop_init(&w->loop)) < 0)
    return rc;
  if ((rc = uv_mutex_init(&w->async_lock)) < 0)
    goto fail_async;
  if ((rc = uv_async_init(&w->loop, &w->async, on_async)) < 0)
    goto fail_async;
  w->async.data = w;
  uv_timer_init(&w->loop, &w->grace_timer);
  w->grace_timer.data = w;
  w->up = pd_upstream_new(&w->loop, max_upstream_connections(w->cfg));
  if (!w->up) {
    rc = UV_ENOMEM;
    goto fail_up;
  }
  pd_server_opts_t o;
  pd_worker_server_opts(w->cfg, w->app->nworkers, &o);
  w->server = pd_server_start(&w->loop, w->fd, &o, pd_front_dispatch, w);
  if (!w->server) {
    rc = UV_EINVAL;
    goto fail_server;
  }
  pd_server_set_head_check(w->server, pd_front_check_head);
  if ((rc = uv_thread_create(&w->thread, run, w)) < 0)
    goto fail_server;
  return 0;
fail_server:
fail_up:
fail_async:
  return rc;
}

/* Wakes the worker's loop unless it has closed its async handle; returns 0 when woken. */
static int wake(pd_worker_t *w) {
  uv_mutex_lock(&w->async_lock);
  int closed = w->async_closed;
  if (!closed)
    uv_async_send(&w->async);
  uv_mutex_unlock(&w->async_lock);
  return closed ? -1 : 0;
}

void pd_worker_reload(pd_worker_t *w, pd_config_t *cfg) {
  pd_config_t *old = atomic_exchange(&w->next_cfg, cfg);
  if (old)
    pd_config_unref(old);
  if (wake(w) < 0) {
    /* The loop is gone and will not take it; run() or this frees what is left. */
    old = atomic_exchange(&w->next_cfg, NULL);
    if (old)
      pd_config_unref(old);
  }
}

void pd_worker_stop(pd_worker_t *w, int abort) {
  int want = abort ? 2 : 1, cur = atomic_load(&w->stop_req);
  while (cur < want && !atomic_compare_exchange_weak(&w->stop_req, &cur, want))
    ;
  wake(w);
}

void pd_worker_join(pd_worker_t *w) {
  uv_thread_join(&w->thread);
  uv_mutex_destroy(&w->async_lock);
  uv_loop_close(&w->loop);
  pd_server_free(w->server);
  pd_upstream_free(w->up);
  pd_config_unref(w->cfg);
}
