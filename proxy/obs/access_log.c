/* Access log: JSON lines built with snprintf and a small escaper (no jansson on this path). */
#include "obs/access_log.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/utf8.h"
#include "base/log.h"

struct pd_access_log {
  int fd;      /* -1 = off */
  int owns_fd; /* close on pd_access_log_close (not stderr) */
};

pd_access_log_t *pd_access_log_open(const char *target) {
  if (!target) {
    errno = EINVAL;
    return NULL;
  }
  pd_access_log_t *l = calloc(1, sizeof *l);
  if (!l)
    return NULL;
  if (strcmp(target, "off") == 0) {
    l->fd = -1;
  } else if (strcmp(target, "-") == 0) {
    l->fd = STDERR_FILENO;
  } else {
    l->fd = open(target, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (l->fd < 0) {
      int err = errno;
      free(l);
      errno = err;
      return NULL;
    }
    l->owns_fd = 1;
  }
  return l;
}

void pd_access_log_close(pd_access_log_t *l) {
  if (!l)
    return;
  /* The writer thread may still write queued lines to fd: it is closed only once they are out
   * (a file on a disk that never answers stays open until the process exits). */
  if (l->owns_fd && pd_log_stop(2000) == 0)
    close(l->fd);
  free(l);
}

/* A writer that counts what does not fit, like snprintf. */
typedef struct w {
  char *buf;
  size_t size, len;
} w_t;

static void w_put(w_t *w, const char *s, size_t n) {
  if (w->len < w->size) {
    size_t room = w->size - w->len;
    memcpy(w->buf + w->len, s, n < room ? n : room);
  }
  w->len += n;
}

static void w_puts(w_t *w, const char *s) {
  w_put(w, s, strlen(s));
}

/* A JSON string literal (or null); invalid UTF-8 bytes become U+FFFD. */
static void w_json_str(w_t *w, const char *s) {
  if (!s) {
    w_puts(w, "null");
    return;
  }
  const unsigned char *p = (const unsigned char *)s;
  size_t n = strlen(s);
  w_put(w, "\"", 1);
  size_t run = 0, i = 0;
  while (i < n) {
    unsigned char c = p[i];
    const char *esc = NULL;
    char hex[8];
    if (c == '"')
      esc = "\\\"";
    else if (c == '\\')
      esc = "\\\\";
    else if (c == '\n')
      esc = "\\n";
    else if (c == '\r')
      esc = "\\r";
    else if (c == '\t')
      esc = "\\t";
    else if (c < 0x20 || c == 0x7f) {
      snprintf(hex, sizeof hex, "\\u%04x", c);
      esc = hex;
    } else if (c >= 0x80) {
      size_t len = pd_utf8_seq(p + i, n - i);
      if (len) {
        i += len;
        continue; /* part of the plain run */
      }
      esc = "\\ufffd";
    } else {
      i++;
      continue;
    }
    w_put(w, s + run, i - run);
    w_puts(w, esc);
    i++;
    run = i;
  }
  w_put(w, s + run, n - run);
  w_put(w, "\"", 1);
}

static void format_line(w_t *w, const pd_access_entry_t *e, const char *ts) {
  char num[64];
  w_puts(w, "{\"ts\":\"");
  w_puts(w, ts);
  w_puts(w, "\",\"request_id\":");
  w_json_str(w, e->request_id);
  w_puts(w, ",\"method\":");
  w_json_str(w, e->method);
  w_puts(w, ",\"path\":");
  w_json_str(w, e->path);
  w_puts(w, ",\"route\":");
  w_json_str(w, e->route);
  w_puts(w, ",\"variant\":");
  w_json_str(w, e->variant);
  double ms = isfinite(e->duration_ms) && e->duration_ms > 0 ? e->duration_ms : 0;
  snprintf(num, sizeof num, ",\"rounds\":%d,\"upstream_calls\":%d,\"status\":%d", e->rounds,
           e->upstream_calls, e->status);
  w_puts(w, num);
  snprintf(num, sizeof num, ",\"duration_ms\":%.3f,\"stream\":%s", ms,
           e->stream ? "true" : "false");
  w_puts(w, num);
  snprintf(num, sizeof num, ",\"prompt_tokens\":%ld", e->prompt_tokens);
  w_puts(w, num);
  snprintf(num, sizeof num, ",\"completion_tokens\":%ld", e->completion_tokens);
  w_puts(w, num);
  snprintf(num, sizeof num, ",\"reasoning_tokens\":%ld}\n", e->reasoning_tokens);
  w_puts(w, num);
}

static void now_iso(char ts[32]) {
  struct timespec now;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &now);
  gmtime_r(&now.tv_sec, &tm);
  size_t n = strftime(ts, 32, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(ts + n, 32 - n, ".%03dZ", (int)(now.tv_nsec / 1000000));
}

size_t pd_access_log_format(const pd_access_entry_t *e, char *buf, size_t size) {
  char ts[32];
  now_iso(ts);
  w_t w = {buf, size, 0};
  format_line(&w, e, ts);
  if (size)
    buf[w.len < size ? w.len : size - 1] = '\0';
  return w.len;
}

int pd_access_log_write(pd_access_log_t *l, const pd_access_entry_t *e) {
  if (!l || l->fd < 0 || !e)
    return 0;
  char ts[32], stack[2048];
  now_iso(ts);
  w_t w = {stack, sizeof stack, 0};
  format_line(&w, e, ts);
  char *line = stack, *heap = NULL;
  size_t len = w.len;
  if (len > sizeof stack) {
    heap = malloc(len);
    if (!heap)
      return -1;
    w = (w_t){heap, len, 0};
    format_line(&w, e, ts);
    line = heap;
  }
  /* Queued for the log writer thread: a loop thread never blocks on the descriptor. */
  int rc = pd_log_enqueue(l->fd, line, len);
  free(heap);
  return rc;
}
