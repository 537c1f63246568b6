/* Reading one config value: the list of problems (each "file:line: message"), ${VAR}
 * substitution, the scalar types of the schema (string, integer, boolean, enum, list) and the
 * small validators several keys share (names, header tokens, URLs, HOST:PORT).
 *
 * Every reader takes the YAML node, the key's name for its messages, and reports into a
 * pd_value_ctx_t; it returns PD_VALUE_GOT (the value is stored), PD_VALUE_ABSENT (null: the
 * default applies) or PD_VALUE_BAD (reported). Strings handed out are heap-owned by the
 * caller. Allocation failure aborts: a config that cannot be built cannot be served. */
#ifndef PD_CONFIG_VALUE_H
#define PD_CONFIG_VALUE_H

#include <stddef.h>

#include "config/yaml.h"

#define PD_PRINTF(a, b) __attribute__((format(printf, a, b)))

enum { PD_VALUE_BAD = -1, PD_VALUE_ABSENT = 0, PD_VALUE_GOT = 1 };

typedef struct pd_value_problem {
  int line; /* > 0: a line of the file; 0: the file itself; < 0: not about the file */
  char *msg;
} pd_value_problem_t;

typedef struct pd_value_ctx {
  const char *file; /* the config's path (or "ponder"): the prefix of every problem */
  pd_value_problem_t *probs;
  size_t nprobs, cap, dropped;
} pd_value_ctx_t;

/* Allocation helpers that abort on failure (pd_value_xstrdup(NULL) is NULL). */
void *pd_value_xcalloc(size_t n, size_t size);
char *pd_value_xstrdup(const char *s);
char *pd_value_xstrndup(const char *s, size_t n);
/* Frees *dst and stores owned there. */
void pd_value_set(char **dst, char *owned);

void pd_value_problem(pd_value_ctx_t *c, int line, const char *fmt, ...) PD_PRINTF(3, 4);
/* A problem at the node's first line (the file itself when n is NULL). */
void pd_value_at(pd_value_ctx_t *c, const pd_yaml_node_t *n, const char *fmt, ...) PD_PRINTF(3, 4);
/* Every problem, sorted by line (stable), one per line; caller frees. */
char *pd_value_join(pd_value_ctx_t *c);
void pd_value_ctx_free(pd_value_ctx_t *c);

/* Expands ${VAR} and ${VAR:-default} (the default also when VAR is empty, as in sh; defaults
 * may themselves hold ${...}). Returns a heap string, or NULL with *why set. */
char *pd_value_expand(const char *s, const char **why);

/* The substituted text of a scalar; kind names what was expected ("a string"). */
int pd_value_scalar(pd_value_ctx_t *c, const pd_yaml_node_t *v, const char *key, const char *kind,
                    char **out);
int pd_value_text(pd_value_ctx_t *c, const pd_yaml_node_t *v, const char *key, char **out);
/* A string replacing *dst (owned by the caller); _nonempty refuses "". */
int pd_value_str(pd_value_ctx_t *c, const pd_yaml_node_t *v, const char *key, char **dst);
int pd_value_nonempty(pd_value_ctx_t *c, const pd_yaml_node_t *v, const char *key, char **dst);
int pd_value_long(pd_value_ctx_t *c, const pd_yaml_node_t *v, const char *key, long min, long max,
                  long *dst);
int pd_value_int(pd_value_ctx_t *c, const pd_yaml_node_t *v, const char *key, int min, int max,
                 int *dst);
int pd_value_bool(pd_value_ctx_t *c, const pd_yaml_node_t *v, const char *key, int *dst);
/* One of names (NULL-terminated); *dst is its index. */
int pd_value_enum(pd_value_ctx_t *c, const pd_yaml_node_t *v, const char *key,
                  const char *const *names, int *dst);
/* A list: GOT when v is a sequence (its items are v->kids). */
int pd_value_seq(pd_value_ctx_t *c, const pd_yaml_node_t *v, const char *key);

/* Route, variant and upstream names end up in headers, log lines and metric labels: letters,
 * digits, '_', '-' and '.'. */
int pd_value_name_ok(const char *s);
/* RFC 9110 token characters (header field names). */
int pd_value_token_ok(const char *s);
/* Header values (and api keys, which become one) must not smuggle in another header. */
int pd_value_header_ok(const char *s);
void pd_value_lower(char *s);
/* Trailing slashes go, so that base_url + "/chat/completions" has exactly one. */
void pd_value_strip_slashes(char *s);
/* NULL when s is an acceptable upstream base URL, else why not (static text). */
const char *pd_value_url_problem(const char *s);
/* NULL when s is http://HOST:PORT (a trailing '/' allowed), else why not (static text). */
const char *pd_value_proxy_problem(const char *s);
/* "HOST:PORT" or "[V6]:PORT": NULL and *host (heap, without brackets) and *port set, or why
 * not (static text). */
const char *pd_value_listen(const char *s, char **host, int *port);

#endif
