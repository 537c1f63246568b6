#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

_Atomic pd_log_level_t pd_log_level_current = PD_LOG_INFO;

static const char *level_names[] = {"error", "warn", "info", "debug"};

void pd_log_write(pd_log_level_t lvl, const char *reqid, const char *fmt, ...) {
  char line[2048];
  struct timeval tv;
  struct tm tm;
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s ", tm.tm_year + 1900,
                   tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                   (int)(tv.tv_usec / 1000), level_names[lvl]);
  if (reqid && n < (int)sizeof line)
    n += snprintf(line + n, sizeof line - n, "[%s] ", reqid);
  if (n < (int)sizeof line) {
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof line - n, fmt, ap);
    va_end(ap);
  }
  if (n >= (int)sizeof line - 1)
    n = (int)sizeof line - 2;
  line[n++] = '\n';
  /* One write per line so lines from several workers never interleave. */
  ssize_t w = write(STDERR_FILENO, line, (size_t)n);
  (void)w;
}
