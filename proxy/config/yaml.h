/* The YAML walker: reads one YAML (or JSON) document with libyaml into a tree of plain nodes
 * that carry their line numbers, so the rest of the config module never sees yaml.h.
 *
 * The tree owns copies of every scalar. Aliases stay shared: a node reached through an alias
 * is the anchored node itself (no copy), so a hostile file cannot multiply its size; readers
 * bound their own depth by the schema they walk. */
#ifndef PD_CONFIG_YAML_H
#define PD_CONFIG_YAML_H

#include <stddef.h>

typedef enum { PD_YAML_SCALAR = 0, PD_YAML_MAP, PD_YAML_SEQ } pd_yaml_kind_t;

typedef struct pd_yaml_node {
  pd_yaml_kind_t kind;
  int line;   /* 1-based line of the node's first character */
  int plain;  /* a scalar written without quotes (only those can mean null) */
  char *text; /* scalar: the value, NUL-terminated; it may hold a NUL before len */
  size_t len; /* scalar: bytes of text */
  /* map: key, value, key, value, ... (2 x pairs entries); seq: the items. Entries may be NULL
   * when libyaml left a reference empty. */
  struct pd_yaml_node **kids;
  size_t nkids;
} pd_yaml_node_t;

typedef struct pd_yaml_doc pd_yaml_doc_t;

/* Reads the single document of the file at path. Returns 0 with *doc set (its root may be
 * NULL: an empty file) or -1 with *doc NULL. Either way *msg may hold one problem (heap,
 * caller frees) at *line (> 0 a line, 0 the file itself): with 0 returned it is a second
 * document, or a syntax error after the first. */
int pd_yaml_read(const char *path, pd_yaml_doc_t **doc, int *line, char **msg);

/* The document's root node, NULL for an empty file. */
const pd_yaml_node_t *pd_yaml_root(const pd_yaml_doc_t *doc);

/* A plain empty, "~" or "null" scalar (or no node at all): the key counts as absent. */
int pd_yaml_is_null(const pd_yaml_node_t *n);

/* "a mapping", "a list" or "a scalar", for messages. */
const char *pd_yaml_kind_name(const pd_yaml_node_t *n);

void pd_yaml_free(pd_yaml_doc_t *doc);

#endif
