/* The --check-config dump (pd_config_dump in config.h): the effective config as YAML, written
 * by walking the same schema tables the loader reads, so a key added there is dumped too.
 * Secrets (api keys, auth keys, header values, a URL's user:password@) are redacted. What the
 * typed output cannot say is written by the hooks in DUMPS, found by the row's hook id. */
#include "config/config.h"
#include "config/schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  FILE *f;
  const pd_config_t *cfg;
} out_t;

/* A row at indent in of the struct at base; dash: the first row of a list element. */
typedef void (*dump_fn)(out_t *o, const pd_schema_key_t *k, const char *base, int in, int dash);

static const dump_fn DUMPS[PD_HOOK_COUNT];

static void dump_block(out_t *o, const pd_schema_table_t *t, const char *base, int in, int dash);

/* A YAML double-quoted scalar: the only style where every byte sequence round-trips. */
static void put_str(FILE *f, const char *s) {
  if (!s) {
    fputs("null", f);
    return;
  }
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
    case '"':
      fputs("\\\"", f);
      break;
    case '\\':
      fputs("\\\\", f);
      break;
    case '\n':
      fputs("\\n", f);
      break;
    case '\t':
      fputs("\\t", f);
      break;
    case '\r':
      fputs("\\r", f);
      break;
    default:
      /* YAML reads NEL, LS and PS as line breaks even inside double quotes (folding them to a
       * space), so the dump writes their escapes and reloads to the same string. */
      if (*p < 0x20 || *p == 0x7f) {
        fprintf(f, "\\x%02X", *p);
      } else if (p[0] == 0xc2 && p[1] == 0x85) {
        fputs("\\N", f);
        p += 1;
      } else if (p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) {
        fputs(p[2] == 0xa8 ? "\\L" : "\\P", f);
        p += 2;
      } else {
        fputc(*p, f);
      }
    }
  }
  fputc('"', f);
}

/* "KEY: " at indent in, or "- KEY: " two columns left of it for a list element's first row. */
static void put_key(FILE *f, int in, int dash, const char *key) {
  if (dash)
    fprintf(f, "%*s- %s: ", in - 2, "", key);
  else
    fprintf(f, "%*s%s: ", in, "", key);
}

/* "KEY:" and a line break: a block follows. */
static void put_head(FILE *f, int in, int dash, const char *key) {
  if (dash)
    fprintf(f, "%*s- %s:\n", in - 2, "", key);
  else
    fprintf(f, "%*s%s:\n", in, "", key);
}

static void put_kv_str(FILE *f, int in, const char *key, const char *val) {
  put_key(f, in, 0, key);
  put_str(f, val);
  fputc('\n', f);
}

static void oom(void) {
  fputs("ponder: out of memory\n", stderr);
  abort();
}

static void dump_key(out_t *o, const pd_schema_key_t *k, const char *base, int in, int dash) {
  FILE *f = o->f;
  const char *field = base + k->off;
  if (DUMPS[k->hook]) {
    DUMPS[k->hook](o, k, base, in, dash);
    return;
  }
  switch (k->type) {
  case PD_SCHEMA_STR:
  case PD_SCHEMA_NONEMPTY: {
    const char *s = *(char *const *)field;
    put_key(f, in, dash, k->name);
    put_str(f, k->secret && s ? "<redacted>" : s);
    fputc('\n', f);
    break;
  }
  case PD_SCHEMA_INT:
    put_key(f, in, dash, k->name);
    fprintf(f, "%d\n", *(const int *)field);
    break;
  case PD_SCHEMA_LONG:
    put_key(f, in, dash, k->name);
    fprintf(f, "%ld\n", *(const long *)field);
    break;
  case PD_SCHEMA_BOOL:
    put_key(f, in, dash, k->name);
    fprintf(f, "%s\n", *(const int *)field ? "true" : "false");
    break;
  case PD_SCHEMA_ENUM:
    put_key(f, in, dash, k->name);
    fprintf(f, "%s\n", k->names[*(const int *)field]);
    break;
  case PD_SCHEMA_CHOICE:
    put_key(f, in, dash, k->name);
    fprintf(f, "%s\n", *(char *const *)field);
    break;
  case PD_SCHEMA_BLOCK:
    put_head(f, in, dash, k->name);
    dump_block(o, k->sub, field, in + 2, 0);
    break;
  case PD_SCHEMA_LIST: {
    const char *elems = *(char *const *)field;
    size_t n = *(const size_t *)(base + k->count_off);
    put_head(f, in, dash, k->name);
    for (size_t i = 0; i < n; i++)
      dump_block(o, k->sub, elems + i * k->elem_size, in + 4, 1);
    break;
  }
  default: /* MAP and CUSTOM rows all have a dump hook */
    break;
  }
}

static void dump_block(out_t *o, const pd_schema_table_t *t, const char *base, int in, int dash) {
  for (size_t i = 0; i < t->nkeys; i++)
    dump_key(o, &t->keys[i], base, in, dash && i == 0);
}

/* ---- hooks ---- */

static void dump_listen(out_t *o, const pd_schema_key_t *k, const char *base, int in, int dash) {
  (void)dash;
  const pd_config_t *cfg = (const pd_config_t *)base;
  char *listen;
  const char *host = cfg->listen_host ? cfg->listen_host : "";
  if (asprintf(&listen, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, cfg->listen_port) < 0)
    oom();
  put_kv_str(o->f, in, k->name, listen);
  free(listen);
}

static void dump_auth_keys(out_t *o, const pd_schema_key_t *k, const char *base, int in, int dash) {
  const pd_config_t *cfg = (const pd_config_t *)base;
  put_key(o->f, in, dash, k->name);
  fputc('[', o->f);
  for (size_t i = 0; i < cfg->nauth_keys; i++)
    fprintf(o->f, "%s\"<redacted>\"", i ? ", " : "");
  fprintf(o->f, "]\n");
}

/* A base URL with its user:password@ part, if any, redacted. */
static void dump_base_url(out_t *o, const pd_schema_key_t *k, const char *base, int in, int dash) {
  const char *url = ((const pd_upstream_cfg_t *)base)->base_url;
  url = url ? url : "";
  put_key(o->f, in, dash, k->name);
  const char *host = strstr(url, "://");
  host = host ? host + 3 : url;
  size_t alen = strcspn(host, "/?#");
  const char *at_sign = NULL;
  for (const char *p = host; p < host + alen; p++)
    if (*p == '@')
      at_sign = p;
  if (!at_sign) {
    put_str(o->f, url);
  } else {
    char *red;
    if (asprintf(&red, "%.*s<redacted>%s", (int)(host - url), url, at_sign) < 0)
      oom();
    put_str(o->f, red);
    free(red);
  }
  fputc('\n', o->f);
}

static void dump_headers(out_t *o, const pd_schema_key_t *k, const char *base, int in, int dash) {
  const pd_upstream_cfg_t *u = (const pd_upstream_cfg_t *)base;
  put_key(o->f, in, dash, k->name);
  fputc('{', o->f);
  for (size_t j = 0; j < u->nheaders; j++) {
    fputs(j ? ", " : "", o->f);
    put_str(o->f, u->headers[j].name);
    fputs(": \"<redacted>\"", o->f);
  }
  fprintf(o->f, "}\n");
}

static void dump_match(out_t *o, const pd_schema_key_t *k, const char *base, int in, int dash) {
  const pd_route_t *r = (const pd_route_t *)base;
  if (!r->has_match) {
    fprintf(o->f, "%*s# no match: the catch-all route\n", in, "");
    return;
  }
  put_head(o->f, in, dash, k->name);
  if (r->path_prefix)
    put_kv_str(o->f, in + 2, "path_prefix", r->path_prefix);
  fprintf(o->f, "%*smodels: [", in + 2, "");
  for (size_t i = 0; i < r->nmodels; i++) {
    if (i)
      fputs(", ", o->f);
    put_str(o->f, r->models[i]);
  }
  fprintf(o->f, "]\n");
}

static void dump_route_upstream(out_t *o, const pd_schema_key_t *k, const char *base, int in,
                                int dash) {
  (void)dash;
  const pd_route_t *r = (const pd_route_t *)base;
  put_kv_str(o->f, in, k->name,
             r->upstream < o->cfg->nupstreams ? o->cfg->upstreams[r->upstream].name : NULL);
}

static void dump_sticky(out_t *o, const pd_schema_key_t *k, const char *base, int in, int dash) {
  const pd_route_t *r = (const pd_route_t *)base;
  put_key(o->f, in, dash, k->name);
  if (r->sticky == PD_STICKY_HEADER) {
    char *s;
    if (asprintf(&s, "header:%s", r->sticky_header ? r->sticky_header : "") < 0)
      oom();
    put_str(o->f, s);
    free(s);
  } else {
    put_str(o->f, r->sticky == PD_STICKY_BODY_USER ? "body:user" : "random");
  }
  fputc('\n', o->f);
}

static void dump_effort(out_t *o, const pd_schema_key_t *k, const char *base, int in, int dash) {
  const pd_route_t *r = (const pd_route_t *)base;
  put_key(o->f, in, dash, k->name);
  fputc('{', o->f);
  for (size_t i = 0; i < r->neffort; i++) {
    fputs(i ? ", " : "", o->f);
    put_str(o->f, r->effort[i].name);
    fprintf(o->f, ": %d", r->effort[i].rounds);
  }
  fprintf(o->f, "}\n");
}

/* A route's single policy is its variant "default": dumped with the variants. */
static void dump_nothing(out_t *o, const pd_schema_key_t *k, const char *base, int in, int dash) {
  (void)o, (void)k, (void)base, (void)in, (void)dash;
}

static void dump_variants(out_t *o, const pd_schema_key_t *k, const char *base, int in, int dash) {
  (void)dash;
  const pd_route_t *r = (const pd_route_t *)base;
  fprintf(o->f, "%*s%s:  # total weight %d\n", in, "", k->name, r->total_weight);
  for (size_t i = 0; i < r->nvariants; i++)
    dump_block(o, k->sub, (const char *)&r->variants[i], in + 4, 1);
}

static void dump_template(out_t *o, const pd_schema_key_t *k, const char *base, int in, int dash) {
  const pd_policy_t *p = (const pd_policy_t *)base;
  const char *const *ml = pd_schema_chatml;
  int chatml = p->template_name && !strcmp(p->template_name, "chatml") && p->tmpl.system &&
               !strcmp(p->tmpl.system, ml[0]) && p->tmpl.user && !strcmp(p->tmpl.user, ml[1]) &&
               p->tmpl.assistant && !strcmp(p->tmpl.assistant, ml[2]) && p->tmpl.assistant_start &&
               !strcmp(p->tmpl.assistant_start, ml[3]);
  if (chatml) {
    put_key(o->f, in, dash, k->name);
    fprintf(o->f, "chatml\n");
  } else {
    put_head(o->f, in, dash, k->name);
    dump_block(o, k->sub, base, in + 2, 0);
  }
}

static const dump_fn DUMPS[PD_HOOK_COUNT] = {
    [PD_HOOK_LISTEN] = dump_listen,     [PD_HOOK_AUTH_KEYS] = dump_auth_keys,
    [PD_HOOK_BASE_URL] = dump_base_url, [PD_HOOK_HEADERS] = dump_headers,
    [PD_HOOK_MATCH] = dump_match,       [PD_HOOK_ROUTE_UPSTREAM] = dump_route_upstream,
    [PD_HOOK_STICKY] = dump_sticky,     [PD_HOOK_EFFORT] = dump_effort,
    [PD_HOOK_FORCING] = dump_nothing,   [PD_HOOK_VARIANTS] = dump_variants,
    [PD_HOOK_TEMPLATE] = dump_template,
};

void pd_config_dump(const pd_config_t *cfg, FILE *f) {
  out_t o = {f, cfg};
  fprintf(f, "# ponder effective configuration (secrets redacted)\n");
  if (cfg->path) {
    fputs("# loaded from ", f);
    put_str(f, cfg->path);
    fputc('\n', f);
  }
  dump_block(&o, &pd_schema_top, (const char *)cfg, 0, 0);
}
