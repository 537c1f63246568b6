/* The generic reader of the config loader: one YAML mapping against one schema table. It
 * reports unknown keys (with a did-you-mean), repeated keys and keys that are not strings,
 * reads each typed row into its field, and hands every other row, and the whole mapping once
 * read, to the loader's hooks (config.c), found by id in the context's hook tables. */
#ifndef PD_CONFIG_READ_H
#define PD_CONFIG_READ_H

#include "config/config.h"
#include "config/schema.h"
#include "config/value.h"
#include "config/yaml.h"

typedef struct pd_read_ctx pd_read_ctx_t;

/* The key and value nodes of one mapping, by row index (NULL: not in the file). */
typedef struct pd_read_seen {
  const pd_yaml_node_t *k[PD_SCHEMA_MAX_KEYS], *v[PD_SCHEMA_MAX_KEYS];
} pd_read_seen_t;

/* A row's hook: the reader of a LIST, MAP or CUSTOM row, or a check after a typed row was
 * read (base: the struct of the row's table). */
typedef void (*pd_read_hook_fn)(pd_read_ctx_t *c, const pd_schema_key_t *key,
                                const pd_yaml_node_t *kn, const pd_yaml_node_t *vn, char *base);
/* A table's post hook: after every key of the mapping map was read. */
typedef void (*pd_read_post_fn)(pd_read_ctx_t *c, const pd_schema_table_t *t,
                                const pd_read_seen_t *s, const pd_yaml_node_t *map, char *base);

struct pd_read_ctx {
  pd_value_ctx_t v;             /* the problems */
  const pd_read_hook_fn *hooks; /* PD_HOOK_COUNT entries, by pd_schema_hook_t */
  const pd_read_post_fn *posts;
  pd_config_t *cfg;
  const pd_cli_overrides_t *ov;
  size_t idx;        /* the upstream or route being read */
  pd_route_t *route; /* the route whose variants are read */
  size_t vidx;       /* the variant being read */
};

/* Walks a mapping's keys: pd_read_iter_start is GOT when v is a mapping, ABSENT when null,
 * BAD (reported) otherwise; pd_read_iter_next yields each key that is not a repeat and, with
 * a table, is known (*key its row; NULL without one), 0 at the end. */
typedef struct pd_read_iter {
  pd_read_ctx_t *c;
  const pd_yaml_node_t *map;
  size_t i;
  const char *what;
  const pd_schema_table_t *known;
} pd_read_iter_t;

int pd_read_iter_start(pd_read_iter_t *it, pd_read_ctx_t *c, const pd_yaml_node_t *v,
                       const char *what, const pd_schema_table_t *known);
int pd_read_iter_next(pd_read_iter_t *it, const pd_schema_key_t **key, const pd_yaml_node_t **kn,
                      const pd_yaml_node_t **vn);

/* Reads the mapping v into the struct at base with table t: in the file's order (the table's
 * when t->in_order, every row then, present or not). Returns GOT, ABSENT or BAD (reported);
 * the post hook runs when v was a mapping. */
int pd_read_block(pd_read_ctx_t *c, const pd_schema_table_t *t, const pd_yaml_node_t *v,
                  char *base);

/* The index of the row of t named name, which must exist. */
size_t pd_read_row(const pd_schema_table_t *t, const char *name);

#endif
