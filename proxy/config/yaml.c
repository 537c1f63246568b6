/* The YAML walker (yaml.h): libyaml's document loader, its problems as "line: message", and
 * the conversion of its node graph into pd_yaml_node_t. The only file that includes yaml.h. */
#include "config/yaml.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

struct pd_yaml_doc {
  pd_yaml_node_t *nodes; /* libyaml node id i is nodes[i - 1] */
  size_t n;
  pd_yaml_node_t **kids; /* every node's kids, one block */
  pd_yaml_node_t *root;
};

/* Allocation failures while loading a config are fatal: there is nothing sensible to serve. */
static void *must(void *p) {
  if (!p) {
    fputs("ponder: out of memory\n", stderr);
    abort();
  }
  return p;
}

static __attribute__((format(printf, 2, 3))) void say(char **msg, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (vasprintf(msg, fmt, ap) < 0)
    must(NULL);
  va_end(ap);
}

static void parser_problem(const yaml_parser_t *parser, int *line, char **msg) {
  const char *what = parser->problem ? parser->problem : "cannot parse the file";
  *line = (int)parser->problem_mark.line + 1;
  if (parser->error == YAML_READER_ERROR) {
    /* The reader reports offsets, not lines. */
    *line = 0;
    say(msg, "%s at byte %zu", what, parser->problem_offset);
  } else if (parser->context) {
    say(msg, "YAML syntax error: %s (%s at line %d)", what, parser->context,
        (int)parser->context_mark.line + 1);
  } else {
    say(msg, "YAML syntax error: %s", what);
  }
}

static pd_yaml_node_t *node_of(pd_yaml_doc_t *d, int id) {
  return id >= 1 && (size_t)id <= d->n ? &d->nodes[id - 1] : NULL;
}

/* The node graph as pd_yaml_node_t, ids kept as pointers (aliases stay shared). */
static pd_yaml_doc_t *convert(yaml_document_t *doc) {
  pd_yaml_doc_t *d = must(calloc(1, sizeof *d));
  d->n = (size_t)(doc->nodes.top - doc->nodes.start);
  d->nodes = must(calloc(d->n ? d->n : 1, sizeof *d->nodes));
  size_t nkids = 0;
  for (yaml_node_t *y = doc->nodes.start; y < doc->nodes.top; y++) {
    if (y->type == YAML_MAPPING_NODE)
      nkids += 2 * (size_t)(y->data.mapping.pairs.top - y->data.mapping.pairs.start);
    else if (y->type == YAML_SEQUENCE_NODE)
      nkids += (size_t)(y->data.sequence.items.top - y->data.sequence.items.start);
  }
  d->kids = must(calloc(nkids ? nkids : 1, sizeof *d->kids));
  pd_yaml_node_t **k = d->kids;
  for (size_t i = 0; i < d->n; i++) {
    yaml_node_t *y = &doc->nodes.start[i];
    pd_yaml_node_t *n = &d->nodes[i];
    n->line = (int)y->start_mark.line + 1;
    n->kids = k;
    if (y->type == YAML_MAPPING_NODE) {
      n->kind = PD_YAML_MAP;
      for (yaml_node_pair_t *p = y->data.mapping.pairs.start; p < y->data.mapping.pairs.top; p++) {
        *k++ = node_of(d, p->key);
        *k++ = node_of(d, p->value);
      }
    } else if (y->type == YAML_SEQUENCE_NODE) {
      n->kind = PD_YAML_SEQ;
      for (yaml_node_item_t *it = y->data.sequence.items.start; it < y->data.sequence.items.top;
           it++)
        *k++ = node_of(d, *it);
    } else {
      n->kind = PD_YAML_SCALAR;
      n->plain = y->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
      n->len = y->data.scalar.length;
      n->text = must(malloc(n->len + 1));
      memcpy(n->text, y->data.scalar.value, n->len);
      n->text[n->len] = '\0';
    }
    n->nkids = (size_t)(k - n->kids);
  }
  d->root = node_of(d, 1);
  return d;
}

int pd_yaml_read(const char *path, pd_yaml_doc_t **out, int *line, char **msg) {
  *out = NULL;
  *line = 0;
  *msg = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) {
    say(msg, "cannot open: %s", strerror(errno));
    return -1;
  }
  struct stat st;
  if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
    say(msg, "is a directory");
    fclose(f);
    return -1;
  }
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser))
    must(NULL);
  yaml_parser_set_input_file(&parser, f);
  yaml_document_t doc;
  int rc = 0;
  if (!yaml_parser_load(&parser, &doc)) {
    parser_problem(&parser, line, msg);
    rc = -1;
  } else {
    yaml_document_t extra;
    if (!yaml_document_get_root_node(&doc)) {
      /* an empty file: every default applies */
    } else if (!yaml_parser_load(&parser, &extra)) {
      parser_problem(&parser, line, msg);
    } else {
      yaml_node_t *r2 = yaml_document_get_root_node(&extra);
      if (r2) {
        *line = (int)r2->start_mark.line + 1;
        say(msg, "a config file holds one YAML document, found a second one");
      }
      yaml_document_delete(&extra);
    }
    *out = convert(&doc);
    yaml_document_delete(&doc);
  }
  yaml_parser_delete(&parser);
  fclose(f);
  return rc;
}

const pd_yaml_node_t *pd_yaml_root(const pd_yaml_doc_t *doc) {
  return doc ? doc->root : NULL;
}

int pd_yaml_is_null(const pd_yaml_node_t *n) {
  if (!n)
    return 1;
  if (n->kind != PD_YAML_SCALAR || !n->plain)
    return 0;
  const char *v = n->text;
  return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL");
}

const char *pd_yaml_kind_name(const pd_yaml_node_t *n) {
  return n->kind == PD_YAML_MAP ? "a mapping" : n->kind == PD_YAML_SEQ ? "a list" : "a scalar";
}

void pd_yaml_free(pd_yaml_doc_t *doc) {
  if (!doc)
    return;
  for (size_t i = 0; i < doc->n; i++)
    free(doc->nodes[i].text);
  free(doc->nodes);
  free(doc->kids);
  free(doc);
}
