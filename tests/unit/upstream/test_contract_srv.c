/* The scripted loopback upstreams of the contract suite (see test_contract_srv.h): one poll(2)
 * loop in a thread per server, every connection's bytes parsed just far enough to count
 * requests (HTTP/1.1 heads and Content-Length bodies; h2 frames up to END_STREAM). */
#include "test_contract_srv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct tconn {
  int fd;
  char in[65536];
  size_t inlen;
  int preface; /* h2: the client's connection preface was read */
  int drip;    /* dripping: 1, with the h2 stream in drip_sid */
  uint32_t drip_sid;
  long next_drip;
} tconn_t;

static long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static int listen_on(int backlog, int *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, backlog) != 0 ||
      getsockname(fd, (struct sockaddr *)&a, &al) != 0) {
    close(fd);
    return -1;
  }
  *port = ntohs(a.sin_port);
  return fd;
}

static void put(tconn_t *c, const void *p, size_t n) {
  const char *b = p;
  while (n > 0 && c->fd >= 0) {
    ssize_t w = send(c->fd, b, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return; /* the client went away: its read side sees that */
    b += w;
    n -= (size_t)w;
  }
}

static void drop(tconn_t *c, int reset) {
  if (c->fd < 0)
    return;
  if (reset) {
    struct linger l = {1, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  close(c->fd);
  c->fd = -1;
  c->drip = 0;
}

/* ---- HTTP/1.1 ---------------------------------------------------------------------------- */

static const char PARTIAL[] = "{\"partial\":";

static void h1_act(ts_server_t *s, tconn_t *c, const ts_step_t *st) {
  char head[512];
  switch (st->act) {
  case TS_RESP: {
    const char *body = st->body ? st->body : "";
    char extra[64] = "";
    if (st->retry_after_ms >= 0)
      snprintf(extra, sizeof extra, "Retry-After-Ms: %d\r\n", st->retry_after_ms);
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "%s\r\n",
                     st->status, strlen(body), extra);
    if (st->split_ms > 0) {
      put(c, head, (size_t)n);
      usleep((useconds_t)st->split_ms * 1000);
      put(c, body, strlen(body));
    } else { /* one write: the head and body arrive in one read */
      char all[4096];
      int m = snprintf(all, sizeof all, "%s%s", head, body);
      put(c, all, (size_t)m);
    }
    break;
  }
  case TS_SILENT:
    break;
  case TS_HEAD_SILENT:
  case TS_RESET_STREAM:
  case TS_RESET_CONN: {
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n"
                     "\r\n%s",
                     PARTIAL);
    put(c, head, (size_t)n);
    if (st->act != TS_HEAD_SILENT) {
      usleep(20000); /* the bytes reach the client before the reset does */
      drop(c, 1);
    }
    break;
  }
  case TS_DRIP: {
    static const char h[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                            "Transfer-Encoding: chunked\r\n\r\n";
    put(c, h, sizeof h - 1);
    c->drip = 1;
    c->next_drip = now_ms();
    break;
  }
  case TS_REFUSE:
    drop(c, 0);
    break;
  }
  (void)s;
}

/* Consumes whole requests from c->in; returns -1 when the connection was dropped. */
static void h1_read(ts_server_t *s, tconn_t *c) {
  for (;;) {
    char *end = memmem(c->in, c->inlen, "\r\n\r\n", 4);
    if (!end)
      return;
    size_t hlen = (size_t)(end - c->in) + 4;
    size_t blen = 0;
    for (char *p = c->in; p < end; p++)
      if ((p == c->in || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0)
        blen = strtoul(p + 15, NULL, 10);
    if (c->inlen < hlen + blen)
      return;
    memmove(c->in, c->in + hlen + blen, c->inlen - hlen - blen);
    c->inlen -= hlen + blen;
    int k = atomic_fetch_add(&s->requests, 1);
    h1_act(s, c, &s->steps[k < s->nsteps ? k : s->nsteps - 1]);
    if (c->fd < 0)
      return;
  }
}

/* ---- h2c ------------------------------------------------------------------------------------ */

enum { F_DATA = 0, F_HEADERS = 1, F_RST = 3, F_SETTINGS = 4, F_PING = 6 };

static void frame(tconn_t *c, int type, int flags, uint32_t sid, const void *p, size_t n) {
  unsigned char h[9] = {
      (unsigned char)(n >> 16),   (unsigned char)(n >> 8),   (unsigned char)n,
      (unsigned char)type,        (unsigned char)flags,      (unsigned char)(sid >> 24),
      (unsigned char)(sid >> 16), (unsigned char)(sid >> 8), (unsigned char)sid};
  put(c, h, 9);
  if (n)
    put(c, p, n);
}

/* A literal header field without indexing, new name (names lower-case, values < 127 bytes). */
static size_t hpack_lit(unsigned char *w, const char *name, const char *value) {
  size_t nl = strlen(name), vl = strlen(value), k = 0;
  w[k++] = 0x00;
  w[k++] = (unsigned char)nl;
  memcpy(w + k, name, nl);
  k += nl;
  w[k++] = (unsigned char)vl;
  memcpy(w + k, value, vl);
  return k + vl;
}

static void h2_head(tconn_t *c, uint32_t sid, int status, const char *ctype, long clen,
                    int retry_after_ms, int end) {
  unsigned char b[512];
  char v[32];
  size_t k = 0;
  snprintf(v, sizeof v, "%d", status);
  b[k++] = 0x08; /* literal without indexing, name :status (static index 8) */
  b[k++] = (unsigned char)strlen(v);
  memcpy(b + k, v, strlen(v));
  k += strlen(v);
  k += hpack_lit(b + k, "content-type", ctype);
  if (clen >= 0) {
    snprintf(v, sizeof v, "%ld", clen);
    k += hpack_lit(b + k, "content-length", v);
  }
  if (retry_after_ms >= 0) {
    snprintf(v, sizeof v, "%d", retry_after_ms);
    k += hpack_lit(b + k, "retry-after-ms", v);
  }
  frame(c, F_HEADERS, 0x4 | (end ? 0x1 : 0), sid, b, k);
}

static void rst(tconn_t *c, uint32_t sid, uint32_t code) {
  unsigned char p[4] = {(unsigned char)(code >> 24), (unsigned char)(code >> 16),
                        (unsigned char)(code >> 8), (unsigned char)code};
  frame(c, F_RST, 0, sid, p, 4);
}

static void h2_act(tconn_t *c, uint32_t sid, const ts_step_t *st) {
  switch (st->act) {
  case TS_RESP: {
    const char *body = st->body ? st->body : "";
    size_t n = strlen(body);
    h2_head(c, sid, st->status, "application/json", (long)n, st->retry_after_ms, n == 0);
    if (n && st->split_ms > 0)
      usleep((useconds_t)st->split_ms * 1000);
    if (n)
      frame(c, F_DATA, 0x1, sid, body, n);
    break;
  }
  case TS_SILENT:
    break;
  case TS_HEAD_SILENT:
  case TS_RESET_STREAM:
  case TS_RESET_CONN:
    h2_head(c, sid, 200, "application/json", 1000, -1, 0);
    frame(c, F_DATA, 0, sid, PARTIAL, sizeof PARTIAL - 1);
    if (st->act == TS_RESET_STREAM) {
      usleep(20000);
      rst(c, sid, 0x2); /* INTERNAL_ERROR */
    } else if (st->act == TS_RESET_CONN) {
      usleep(20000);
      drop(c, 1);
    }
    break;
  case TS_DRIP:
    h2_head(c, sid, 200, "text/plain", -1, -1, 0);
    c->drip = 1;
    c->drip_sid = sid;
    c->next_drip = now_ms();
    break;
  case TS_REFUSE:
    rst(c, sid, 0x7); /* REFUSED_STREAM */
    break;
  }
}

static void h2_read(ts_server_t *s, tconn_t *c) {
  static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  size_t off = 0;
  if (!c->preface) {
    if (c->inlen < 24)
      return;
    if (memcmp(c->in, preface, 24) != 0) {
      drop(c, 0);
      return;
    }
    c->preface = 1;
    off = 24;
  }
  while (c->fd >= 0 && c->inlen - off >= 9) {
    const unsigned char *h = (const unsigned char *)c->in + off;
    size_t len = ((size_t)h[0] << 16) | ((size_t)h[1] << 8) | h[2];
    if (c->inlen - off < 9 + len)
      break;
    int type = h[3], flags = h[4];
    uint32_t sid =
        (((uint32_t)h[5] & 0x7f) << 24) | ((uint32_t)h[6] << 16) | ((uint32_t)h[7] << 8) | h[8];
    if (type == F_SETTINGS && !(flags & 0x1))
      frame(c, F_SETTINGS, 0x1, 0, NULL, 0);
    else if (type == F_PING && !(flags & 0x1) && len == 8)
      frame(c, F_PING, 0x1, 0, h + 9, 8);
    else if ((type == F_HEADERS || type == F_DATA) && (flags & 0x1) && sid) {
      int k = atomic_fetch_add(&s->requests, 1);
      h2_act(c, sid, &s->steps[k < s->nsteps ? k : s->nsteps - 1]);
    }
    off += 9 + len;
  }
  if (c->fd >= 0) {
    memmove(c->in, c->in + off, c->inlen - off);
    c->inlen -= off;
  }
}

/* ---- the thread ------------------------------------------------------------------------------ */

static void *serve(void *arg) {
  ts_server_t *s = arg;
  tconn_t *conns = calloc(TS_MAX_CONNS, sizeof *conns);
  for (int i = 0; i < TS_MAX_CONNS; i++)
    conns[i].fd = -1;
  while (!atomic_load(&s->stop)) {
    struct pollfd pf[TS_MAX_CONNS + 1];
    int map[TS_MAX_CONNS + 1], n = 0;
    pf[n].fd = s->lfd;
    pf[n].events = POLLIN;
    map[n++] = -1;
    for (int i = 0; i < TS_MAX_CONNS; i++)
      if (conns[i].fd >= 0) {
        pf[n].fd = conns[i].fd;
        pf[n].events = POLLIN;
        map[n++] = i;
      }
    int r = poll(pf, (nfds_t)n, 5);
    long now = now_ms();
    for (int i = 0; i < TS_MAX_CONNS; i++) {
      tconn_t *c = &conns[i];
      if (c->fd >= 0 && c->drip && now >= c->next_drip) {
        if (s->h2)
          frame(c, F_DATA, 0, c->drip_sid, "x", 1);
        else
          put(c, "1\r\nx\r\n", 6);
        c->next_drip = now + s->drip_ms;
      }
    }
    if (r <= 0)
      continue;
    for (int j = 0; j < n; j++) {
      if (!(pf[j].revents & (POLLIN | POLLHUP | POLLERR)))
        continue;
      if (map[j] < 0) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
          continue;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        int slot = -1;
        for (int i = 0; i < TS_MAX_CONNS && slot < 0; i++)
          if (conns[i].fd < 0)
            slot = i;
        if (slot < 0) {
          close(fd);
          continue;
        }
        memset(&conns[slot], 0, sizeof conns[slot]);
        conns[slot].fd = fd;
        atomic_fetch_add(&s->conns, 1);
        if (s->h2)
          frame(&conns[slot], F_SETTINGS, 0, 0, NULL, 0);
        continue;
      }
      tconn_t *c = &conns[map[j]];
      if (c->fd < 0)
        continue;
      ssize_t got = recv(c->fd, c->in + c->inlen, sizeof c->in - c->inlen, 0);
      if (got <= 0) {
        drop(c, 0);
        continue;
      }
      c->inlen += (size_t)got;
      if (s->h2)
        h2_read(s, c);
      else
        h1_read(s, c);
      if (c->fd >= 0 && c->inlen == sizeof c->in)
        drop(c, 0); /* more than any test sends unanswered */
    }
  }
  for (int i = 0; i < TS_MAX_CONNS; i++)
    drop(&conns[i], 0);
  free(conns);
  return NULL;
}

int ts_server_start(ts_server_t *s) {
  atomic_store(&s->requests, 0);
  atomic_store(&s->conns, 0);
  atomic_store(&s->stop, 0);
  if (s->drip_ms <= 0)
    s->drip_ms = 50;
  s->lfd = listen_on(64, &s->port);
  if (s->lfd < 0)
    return -1;
  if (pthread_create(&s->th, NULL, serve, s) != 0) {
    close(s->lfd);
    return -1;
  }
  return 0;
}

void ts_server_stop(ts_server_t *s) {
  atomic_store(&s->stop, 1);
  pthread_join(s->th, NULL);
  close(s->lfd);
}

int ts_blackhole_start(ts_blackhole_t *b) {
  b->lfd = listen_on(0, &b->port);
  if (b->lfd < 0)
    return -1;
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                          .sin_port = htons((uint16_t)b->port)};
  for (int i = 0; i < 3; i++) {
    b->fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (b->fill[i] >= 0)
      (void)connect(b->fill[i], (struct sockaddr *)&a, sizeof a);
  }
  usleep(50000); /* the first fills the queue; the others wait in SYN_SENT */
  return 0;
}

void ts_blackhole_stop(ts_blackhole_t *b) {
  for (int i = 0; i < 3; i++)
    if (b->fill[i] >= 0)
      close(b->fill[i]);
  close(b->lfd);
}
