/* Fuzz target: the config loader pd_config_load (proxy/config/) on arbitrary YAML/JSON bytes,
 * and the --check-config dump of every config that loads. The loader reads a path, so each input
 * goes into an anonymous memory file (memfd) opened as /proc/self/fd/N: nothing is left on disk,
 * even after a crash. Checks: no crash, no leak (ASan), a failed load reports at least one
 * problem, and a loaded config dumps to a text that loads again into a config with the same
 * dump (what --check-config prints can be used as the config). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config/config.h"

static int mfd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  mfd = memfd_create("ponder-fuzz-config", MFD_CLOEXEC);
  if (mfd < 0)
    abort();
  snprintf(path, sizeof path, "/proc/self/fd/%d", mfd);
  return 0;
}

static void put(const void *data, size_t size) {
  if (ftruncate(mfd, 0) != 0 || pwrite(mfd, data, size, 0) != (ssize_t)size)
    abort();
}

/* The --check-config text of cfg (caller frees). */
static char *dump(const pd_config_t *cfg, size_t *len) {
  char *text = NULL;
  FILE *f = open_memstream(&text, len);
  if (!f)
    abort();
  pd_config_dump(cfg, f);
  if (fclose(f) != 0 || *len == 0)
    abort();
  return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  put(data, size);
  pd_cli_overrides_t ov = {.rounds = -1, .workers = -1, .log_level = -1};
  pd_config_t *cfg = NULL;
  char *errors = NULL;
  int rc = pd_config_load(path, &ov, &cfg, &errors);
  if (rc < 0) {
    if (cfg || !errors || !*errors)
      abort();
    free(errors);
    return 0;
  }
  if (rc != 0 || !cfg || errors)
    abort();
  size_t len;
  char *text = dump(cfg, &len);
  pd_config_unref(cfg);
  /* The dump is a config itself: it loads (from the same path, so even its "loaded from" line
   * is the same) into a config that dumps to the same text. */
  put(text, len);
  if (pd_config_load(path, &ov, &cfg, &errors) != 0)
    abort();
  size_t len2;
  char *text2 = dump(cfg, &len2);
  if (len2 != len || memcmp(text, text2, len) != 0)
    abort();
  free(text2);
  free(text);
  pd_config_unref(cfg);
  return 0;
}
