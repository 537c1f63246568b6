/* Serving a config: see serve.h. Owns the listening sockets until each worker takes its own,
 * and the pd_app_t the workers share. */
#include "app/serve.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"

/* Binds a listening socket; SO_REUSEPORT lets every worker bind its own on the same port.
 * The first one (`first`) binds without it, so the bind fails with EADDRINUSE when any other
 * socket holds the port (another ponder's too: the kernel lets SO_REUSEPORT sockets of one user
 * share a port only when both sides set it). It sets SO_REUSEPORT between bind and listen, so
 * the workers' sockets that follow join its group. */
static int bind_listener(const char *host, int port, int first, int *fd_out, int *port_out) {
  char portstr[16];
  snprintf(portstr, sizeof portstr, "%d", port);
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  int rc = getaddrinfo(host, portstr, &hints, &res);
  if (rc != 0) {
    fprintf(stderr, "ponder: cannot resolve listen address %s: %s\n", host, gai_strerror(rc));
    return -1;
  }
  int fd = -1;
  for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
      continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (!first)
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
        (!first || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) == 0) &&
        listen(fd, 4096) == 0)
      break;
    rc = errno;
    close(fd);
    fd = -1;
    errno = rc;
  }
  freeaddrinfo(res);
  if (fd < 0) {
    fprintf(stderr, "ponder: cannot listen on %s:%d: %s\n", host, port, strerror(errno));
    return -1;
  }
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  getsockname(fd, (struct sockaddr *)&ss, &sl);
  *port_out = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
  *fd_out = fd;
  return 0;
}

int pd_serve_start(pd_serve_t *s, pd_config_t *cfg, uv_async_t *stopped) {
  memset(s, 0, sizeof *s);
  int port = 0, fd0 = -1;
  if (bind_listener(cfg->listen_host, cfg->listen_port, 1, &fd0, &port) < 0)
    return PD_SERVE_EBIND;
  s->port = port;
  size_t n = (size_t)(cfg->workers > 0 ? cfg->workers : 1);
  /* From here on, log lines and access-log lines leave through the writer thread. */
  int lrc = pd_log_start();
  if (lrc < 0)
    fprintf(stderr, "ponder: log writer not started (%s): logging blocks\n", strerror(-lrc));
  pd_app_t *app = &s->app;
  app->nworkers = n;
  app->workers = calloc(n, sizeof *app->workers);
  app->metrics = calloc(n, sizeof *app->metrics);
  app->feedback = calloc(n, sizeof *app->feedback);
  if (!app->workers || !app->metrics || !app->feedback) {
    fprintf(stderr, "ponder: out of memory\n");
    return PD_SERVE_EWORKER;
  }
  app->stopped = stopped;
  atomic_init(&app->nstopped, 0);
  app->access_log = pd_access_log_open(cfg->access_log);
  if (!app->access_log) {
    fprintf(stderr, "ponder: cannot open access log %s: %s\n", cfg->access_log, strerror(errno));
    return PD_SERVE_EACCESS_LOG;
  }
  for (size_t i = 0; i < n; i++) {
    pd_worker_t *w = &app->workers[i];
    w->id = (int)i;
    w->app = app;
    w->cfg = pd_config_ref(cfg);
    atomic_init(&w->next_cfg, NULL);
    atomic_init(&w->stop_req, 0);
    app->metrics[i] = w->metrics = pd_metrics_new();
    app->feedback[i] = w->feedback = pd_feedback_store_new(PD_FEEDBACK_CAPACITY);
    if (i == 0) {
      w->fd = fd0;
    } else if (bind_listener(cfg->listen_host, port, 0, &w->fd, &port) < 0) {
      return PD_SERVE_EBIND;
    }
  }
  for (size_t i = 0; i < n; i++) {
    int rc = pd_worker_start(&app->workers[i]);
    if (rc < 0) {
      fprintf(stderr, "ponder: cannot start worker %zu: %s\n", i, uv_strerror(rc));
      return PD_SERVE_EWORKER;
    }
  }
  return 0;
}

void pd_serve_stop(pd_serve_t *s, int abort) {
  for (size_t i = 0; i < s->app.nworkers; i++)
    pd_worker_stop(&s->app.workers[i], abort);
}

void pd_serve_reload(pd_serve_t *s, pd_config_t *cfg) {
  for (size_t i = 0; i < s->app.nworkers; i++)
    pd_worker_reload(&s->app.workers[i], pd_config_ref(cfg));
  pd_config_unref(cfg);
}

void pd_serve_join(pd_serve_t *s) {
  pd_app_t *app = &s->app;
  for (size_t i = 0; i < app->nworkers; i++)
    pd_worker_join(&app->workers[i]);
  for (size_t i = 0; i < app->nworkers; i++) {
    pd_metrics_free(app->metrics[i]);
    pd_feedback_store_free(app->feedback[i]);
  }
}

void pd_serve_close(pd_serve_t *s) {
  pd_app_t *app = &s->app;
  pd_log_stop(2000); /* the queued log lines, unless stderr or the log file is stalled */
  pd_access_log_close(app->access_log);
  free(app->workers);
  free(app->metrics);
  free(app->feedback);
  memset(s, 0, sizeof *s);
}
