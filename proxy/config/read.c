/* The generic reader (read.h): iterating a mapping's keys with the unknown, repeated and
 * non-string key checks, and one typed read per schema row. */
#include "config/read.h"

#include <string.h>

#define GOT PD_VALUE_GOT
#define ABSENT PD_VALUE_ABSENT
#define BAD PD_VALUE_BAD

size_t pd_read_row(const pd_schema_table_t *t, const char *name) {
  size_t i = 0;
  while (strcmp(t->keys[i].name, name))
    i++;
  return i;
}

int pd_read_iter_start(pd_read_iter_t *it, pd_read_ctx_t *c, const pd_yaml_node_t *v,
                       const char *what, const pd_schema_table_t *known) {
  memset(it, 0, sizeof *it);
  if (pd_yaml_is_null(v))
    return ABSENT;
  if (v->kind != PD_YAML_MAP) {
    pd_value_at(&c->v, v, "%s must be a mapping, not %s", what, pd_yaml_kind_name(v));
    return BAD;
  }
  it->c = c;
  it->map = v;
  it->what = what;
  it->known = known;
  return GOT;
}

int pd_read_iter_next(pd_read_iter_t *it, const pd_schema_key_t **key, const pd_yaml_node_t **kn,
                      const pd_yaml_node_t **vn) {
  if (!it->map)
    return 0;
  pd_value_ctx_t *V = &it->c->v;
  while (it->i < it->map->nkids) {
    size_t pair = it->i;
    const pd_yaml_node_t *k = it->map->kids[pair], *v = it->map->kids[pair + 1];
    it->i += 2;
    if (!k || k->kind != PD_YAML_SCALAR) {
      pd_value_at(V, k, "keys in %s must be strings", it->what);
      continue;
    }
    const char *name = k->text;
    int dup = 0;
    for (size_t q = 0; q < pair; q += 2) {
      const pd_yaml_node_t *qk = it->map->kids[q];
      if (qk && qk->kind == PD_YAML_SCALAR && !strcmp(qk->text, name))
        dup = 1;
    }
    if (dup) {
      pd_value_at(V, k, "duplicate key \"%s\" in %s", name, it->what);
      continue;
    }
    *key = NULL;
    if (it->known) {
      const char *hint;
      *key = pd_schema_find(it->known, name, &hint);
      if (!*key) {
        if (hint)
          pd_value_at(V, k, "unknown key \"%s\" in %s (did you mean \"%s\"?)", name, it->what,
                      hint);
        else
          pd_value_at(V, k, "unknown key \"%s\" in %s", name, it->what);
        continue;
      }
    }
    *kn = k;
    *vn = v;
    return 1;
  }
  return 0;
}

static void read_key(pd_read_ctx_t *c, const pd_schema_key_t *k, const pd_yaml_node_t *kn,
                     const pd_yaml_node_t *vn, char *base) {
  char *field = base + k->off;
  pd_value_ctx_t *V = &c->v;
  int rc, e;
  switch (k->type) {
  case PD_SCHEMA_STR:
    rc = pd_value_str(V, vn, k->name, (char **)field);
    break;
  case PD_SCHEMA_NONEMPTY:
    rc = pd_value_nonempty(V, vn, k->name, (char **)field);
    break;
  case PD_SCHEMA_INT:
    rc = pd_value_int(V, vn, k->name, (int)k->min, (int)k->max, (int *)field);
    break;
  case PD_SCHEMA_LONG:
    rc = pd_value_long(V, vn, k->name, k->min, k->max, (long *)field);
    break;
  case PD_SCHEMA_BOOL:
    rc = pd_value_bool(V, vn, k->name, (int *)field);
    break;
  case PD_SCHEMA_ENUM:
  case PD_SCHEMA_CHOICE:
    rc = pd_value_enum(V, vn, k->name, k->names, &e);
    if (rc == GOT && k->type == PD_SCHEMA_ENUM)
      *(int *)field = e;
    else if (rc == GOT)
      pd_value_set((char **)field, pd_value_xstrdup(k->names[e]));
    break;
  case PD_SCHEMA_BLOCK:
    rc = pd_read_block(c, k->sub, vn, field);
    break;
  default: /* LIST, MAP, CUSTOM: the hook reads it all */
    c->hooks[k->hook](c, k, kn, vn, base);
    return;
  }
  if (rc == GOT && c->hooks[k->hook])
    c->hooks[k->hook](c, k, kn, vn, base);
}

int pd_read_block(pd_read_ctx_t *c, const pd_schema_table_t *t, const pd_yaml_node_t *v,
                  char *base) {
  pd_read_iter_t it;
  pd_read_seen_t s = {0};
  const pd_schema_key_t *key;
  const pd_yaml_node_t *kn, *vn;
  int rc = pd_read_iter_start(&it, c, v, t->what, t);
  while (pd_read_iter_next(&it, &key, &kn, &vn)) {
    size_t i = (size_t)(key - t->keys);
    s.k[i] = kn;
    s.v[i] = vn;
    if (!t->in_order)
      read_key(c, key, kn, vn, base);
  }
  for (size_t i = 0; t->in_order && i < t->nkeys; i++)
    read_key(c, &t->keys[i], s.k[i], s.v[i], base);
  if (rc == GOT && c->posts[t->post])
    c->posts[t->post](c, t, &s, v, base);
  return rc;
}
