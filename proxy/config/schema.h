/* The config schema (SPEC section 3) as tables: each key is one row, read by the loader
 * (config.c: parsing, defaults, the unknown-key check and its did-you-mean), by the
 * --check-config dump (config_dump.c) and by the test that holds README's configuration
 * table to it. A mapping in the file is a table; a list of mappings is a row whose sub table
 * describes one element.
 *
 * What is not a plain typed value (a list, a free-form map, a key checked against others) is a
 * row with a hook: an id into the loader's and the dump's own function tables. */
#ifndef PD_CONFIG_SCHEMA_H
#define PD_CONFIG_SCHEMA_H

#include <stddef.h>

typedef enum {
  PD_SCHEMA_STR,      /* char *: a string, "" allowed */
  PD_SCHEMA_NONEMPTY, /* char *: a string that must not be empty */
  PD_SCHEMA_INT,      /* int within [min, max] */
  PD_SCHEMA_LONG,     /* long within [min, max] */
  PD_SCHEMA_BOOL,     /* int 0 / 1; true|yes|on, false|no|off */
  PD_SCHEMA_ENUM,     /* an int-sized enum: the index in names */
  PD_SCHEMA_CHOICE,   /* char *: one of names, stored as that name */
  PD_SCHEMA_BLOCK,    /* a mapping read with sub, into the same struct at off */
  PD_SCHEMA_LIST,     /* a list of mappings, each read with sub (hook) */
  PD_SCHEMA_MAP,      /* a mapping of free names to values (hook) */
  PD_SCHEMA_CUSTOM    /* anything else (hook) */
} pd_schema_type_t;

/* Hook ids: what a row's hook does in the loader (a reader for LIST, MAP and CUSTOM rows, a
 * check after a value was read for the others) and in the dump (instead of the typed
 * output). A table's post hook runs after all the keys of one mapping were read. */
typedef enum {
  PD_HOOK_NONE = 0,
  PD_HOOK_LISTEN,
  PD_HOOK_AUTH_KEYS,
  PD_HOOK_UPSTREAMS,
  PD_HOOK_ROUTES,
  PD_HOOK_UPSTREAM_NAME,
  PD_HOOK_BASE_URL,
  PD_HOOK_API_KEY,
  PD_HOOK_HEADERS,
  PD_HOOK_TLS_FILE,
  PD_HOOK_SERVER_NAME,
  PD_HOOK_PROXY,
  PD_HOOK_ROUTE_NAME,
  PD_HOOK_MATCH,
  PD_HOOK_PATH_PREFIX,
  PD_HOOK_MODELS,
  PD_HOOK_ROUTE_UPSTREAM,
  PD_HOOK_MODEL,
  PD_HOOK_STICKY,
  PD_HOOK_EFFORT,
  PD_HOOK_FORCING,
  PD_HOOK_VARIANTS,
  PD_HOOK_VARIANT_NAME,
  PD_HOOK_TEMPLATE,
  PD_HOOK_CONTENT,
  PD_HOOK_POST_UPSTREAM,
  PD_HOOK_POST_TLS,
  PD_HOOK_POST_ROUTE,
  PD_HOOK_POST_MATCH,
  PD_HOOK_POST_VARIANT,
  PD_HOOK_POST_FORCING,
  PD_HOOK_COUNT
} pd_schema_hook_t;

struct pd_schema_table;

typedef struct pd_schema_key {
  const char *name; /* the key as written in the file */
  pd_schema_type_t type;
  size_t off;    /* where the value lands, from the start of the table's struct */
  long min, max; /* INT and LONG bounds */
  /* The default as written in YAML, applied before the file is read (NULL: zero / none).
   * shown, when set, is README's default column instead of `def`. */
  const char *def;
  const char *shown;
  int secret;                        /* redacted in the dump */
  const char *const *names;          /* ENUM and CHOICE values, NULL-terminated */
  const struct pd_schema_table *sub; /* BLOCK, LIST (one element) and some CUSTOM rows */
  size_t count_off, elem_size;       /* LIST: where the element count lands, element size */
  pd_schema_hook_t hook;
  const char *doc; /* README's meaning column; NULL: no README row of its own */
} pd_schema_key_t;

typedef struct pd_schema_table {
  const char *what; /* names the mapping in messages: "limits", "an upstream" */
  const char *path; /* README's prefix for its keys: "limits.", "upstreams[]." */
  const pd_schema_key_t *keys;
  size_t nkeys;
  pd_schema_hook_t post;
  int in_order; /* keys are read in the table's order, not the file's (the top level: routes
                 * name upstreams wherever they sit) */
} pd_schema_table_t;

#define PD_SCHEMA_MAX_KEYS 16 /* keys of the largest table */
#define PD_SCHEMA_MAX_ROUNDS 32
#define PD_SCHEMA_MAX_WORKERS 1024

extern const pd_schema_table_t pd_schema_top, pd_schema_limits, pd_schema_log, pd_schema_auth,
    pd_schema_feedback, pd_schema_upstream, pd_schema_tls, pd_schema_route, pd_schema_match,
    pd_schema_variant, pd_schema_policy, pd_schema_prompts, pd_schema_prefill, pd_schema_template;

/* The names of the ENUM rows, for callers that print them. */
extern const char *const pd_schema_mode_names[], *const pd_schema_dialect_names[],
                                                     *const pd_schema_reasoning_names[],
                                                         *const pd_schema_level_names[];

/* The "chatml" template: system, user, assistant, assistant_start. */
extern const char *const pd_schema_chatml[4];

/* The key named name in t, or NULL; then *hint is the closest key (fewer than 3 edits
 * away, the first in the table on a tie) or NULL. */
const pd_schema_key_t *pd_schema_find(const pd_schema_table_t *t, const char *name,
                                      const char **hint);

/* Sets every typed row of t (BLOCK rows included, recursively) that has a default into the
 * struct at base. Strings are heap copies when heap is set, else the table's own static text
 * (the struct must then not be freed with pd_schema_free_strings). */
void pd_schema_defaults(const pd_schema_table_t *t, void *base, int heap);
/* Frees every string of t's typed rows at base. */
void pd_schema_free_strings(const pd_schema_table_t *t, void *base);

#endif
