/* `ponder export` (SPEC section 11): graded samples (samples.jsonl) to fine-tuning JSONL, with
 * rejection sampling (--min-score, --best-per-item) and a variant filter. The training lines
 * use the variant's own policy (--config) so that they carry exactly the prompts and budgets
 * forcing sends; the prompt text is expanded by core/modes.c's pd_mode_subst, the one
 * expansion the forcing calls use. Owns the command line, the config it loads and the records
 * it keeps for --best-per-item. */
#include "eval/export.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/array.h"
#include "base/buf.h"
#include "base/json.h"
#include "core/modes.h"
#include "eval/eval.h"

static const char *const format_names[] = {"openai-think", "reasoning-field", "inline-think",
                                           "s1k"};

int pd_export_format(const char *name) {
  for (size_t i = 0; i < sizeof format_names / sizeof *format_names; i++)
    if (!strcmp(name, format_names[i]))
      return (int)i;
  return -1;
}

/* ---- the thinking's rounds ---- */

const char *pd_export_wait(const pd_policy_t *p) {
  const char *w = p->mode == PD_MODE_CHAT ? p->prompts.wait : p->prefill.wait;
  return w ? w : "";
}

/* Length of "\n" + wait + "\n" at p (n bytes left), wait's {think_budget} and {answer_budget}
 * matching 1 to 19 digits (the limit substituted there differs between rounds once
 * max_think_tokens is spent); 0 when it does not match. */
static size_t sep_at(const char *p, size_t n, const char *wait) {
  static const char tb[] = "{think_budget}", ab[] = "{answer_budget}";
  size_t i = 1;
  if (!n || p[0] != '\n')
    return 0;
  for (const char *t = wait; *t;) {
    size_t key = !strncmp(t, tb, sizeof tb - 1)   ? sizeof tb - 1
                 : !strncmp(t, ab, sizeof ab - 1) ? sizeof ab - 1
                                                  : 0;
    if (key) {
      size_t d = 0;
      while (i + d < n && d < 19 && p[i + d] >= '0' && p[i + d] <= '9')
        d++;
      if (!d)
        return 0;
      i += d;
      t += key;
    } else {
      if (i >= n || p[i] != *t)
        return 0;
      i++;
      t++;
    }
  }
  return i < n && p[i] == '\n' ? i + 1 : 0;
}

json_t *pd_export_segments(const char *reasoning, const char *wait) {
  json_t *out = json_array();
  size_t n = strlen(reasoning), start = 0, i = 0;
  if (!out || !n)
    return out;
  while (*wait && i < n) {
    const char *nl = memchr(reasoning + i, '\n', n - i);
    if (!nl)
      break;
    i = (size_t)(nl - reasoning);
    size_t len = sep_at(nl, n - i, wait);
    if (!len) {
      i++;
      continue;
    }
    if (json_array_append_new(out, json_stringn(reasoning + start, i - start)) < 0)
      goto fail;
    i += len;
    start = i;
  }
  if (json_array_append_new(out, json_stringn(reasoning + start, n - start)) < 0)
    goto fail;
  return out;
fail:
  json_decref(out);
  return NULL;
}

/* ---- one line ---- */

/* A new string: the concatenation of the pieces (NULL ends them). */
static json_t *cat(const char *a, ...) __attribute__((sentinel));
static json_t *cat(const char *a, ...) {
  pd_buf_t b = {0};
  va_list ap;
  int rc = pd_buf_reserve(&b, 1) ? 0 : -1;
  va_start(ap, a);
  for (const char *s = a; s && rc == 0; s = va_arg(ap, const char *))
    rc = pd_buf_appends(&b, s);
  va_end(ap);
  json_t *v = rc == 0 ? json_stringn(pd_buf_data(&b), b.len) : NULL;
  pd_buf_free(&b);
  return v;
}

/* A policy prompt with its budgets, as a new JSON string. */
static json_t *prompt(const char *tmpl, long think, long answer) {
  pd_buf_t b = {0};
  json_t *v = pd_buf_reserve(&b, 1) && pd_mode_subst(&b, tmpl, think, answer) == 0
                  ? json_stringn(pd_buf_data(&b), b.len)
                  : NULL;
  pd_buf_free(&b);
  return v;
}

static json_t *message(const char *role, json_t *content) {
  return content ? json_pack("{s:s,s:o}", "role", role, "content", content) : NULL;
}

/* The conversation the sample answered: its messages, or one user message. */
static json_t *conversation(const pd_samples_rec_t *r) {
  if (json_is_array(r->input))
    return json_copy((json_t *)r->input);
  json_t *m = message("user", json_string(r->question));
  return m ? json_pack("[o]", m) : NULL;
}

/* openai-think's conversation: the seed's system message unless the input has one of its own,
 * and the think prompt after the last user message's text, as the forcing's M' has it. */
static json_t *think_conversation(const pd_samples_rec_t *r, const pd_policy_t *p) {
  long first = p->think_budget;
  if (p->max_think_tokens > 0 && p->max_think_tokens < first)
    first = p->max_think_tokens;
  json_t *think = prompt(p->prompts.think, first, p->answer_budget);
  json_t *msgs = conversation(r);
  if (!think || !msgs)
    goto fail;
  const char *role0 = json_string_value(json_object_get(json_array_get(msgs, 0), "role"));
  if (!role0 || (strcmp(role0, "system") && strcmp(role0, "developer"))) {
    json_t *sys = message("system", json_string("You are a helpful AI assistant."));
    if (!sys || json_array_insert_new(msgs, 0, sys) < 0)
      goto fail;
  }
  size_t i = json_array_size(msgs);
  while (i-- > 0) {
    json_t *m = json_array_get(msgs, i);
    if (strcmp(json_string_value(json_object_get(m, "role")), "user"))
      continue;
    json_t *last = json_copy(m), *c = json_object_get(m, "content"), *nc = NULL;
    if (!last || json_array_set_new(msgs, i, last) < 0)
      goto fail;
    if (json_is_string(c)) {
      nc = cat(json_string_value(c), "\n\n", json_string_value(think), NULL);
    } else if (json_is_array(c)) {
      json_t *part = cat("\n\n", json_string_value(think), NULL);
      nc = json_copy(c);
      if (!part || !nc ||
          json_array_append_new(nc, json_pack("{s:s,s:o}", "type", "text", "text", part)) < 0) {
        json_decref(nc);
        nc = NULL;
      }
    } else {
      nc = json_incref(think);
    }
    if (!nc || json_object_set_new(last, "content", nc) < 0)
      goto fail;
    break;
  }
  json_decref(think);
  return msgs;
fail:
  json_decref(think);
  json_decref(msgs);
  return NULL;
}

static int append(json_t *arr, json_t *v) {
  return v ? json_array_append_new(arr, v) : -1;
}

static json_t *metadata(const pd_samples_rec_t *r) {
  json_t *id = json_object_get(r->obj, "item_id");
  return json_pack("{s:O,s:s,s:i,s:f,s:i,s:I}", "item_id", id, "variant", r->variant, "sample",
                   r->sample, "score", r->score, "rounds", r->rounds, "reasoning_tokens",
                   (json_int_t)r->reasoning_tokens);
}

json_t *pd_export_line(pd_export_format_t format, const pd_samples_rec_t *r, const pd_policy_t *p,
                       int with_metadata) {
  json_t *line = NULL, *msgs = NULL;
  switch (format) {
  case PD_EXPORT_OPENAI_THINK:
    msgs = think_conversation(r, p);
    if (!msgs ||
        append(msgs, message("assistant",
                             cat("<imstart>think\n", r->reasoning, "\n<imend>", NULL))) < 0 ||
        append(msgs,
               message("user", prompt(p->prompts.answer, p->think_budget, p->answer_budget))) < 0 ||
        append(msgs, message("assistant",
                             cat("<imstart>answer\n", r->output_text, "\n<imend>", NULL))) < 0)
      goto fail;
    line = json_pack("{s:o}", "messages", msgs);
    msgs = NULL;
    break;
  case PD_EXPORT_REASONING_FIELD:
  case PD_EXPORT_INLINE_THINK: {
    json_t *a = format == PD_EXPORT_REASONING_FIELD
                    ? json_pack("{s:s,s:s,s:s}", "role", "assistant", "content", r->output_text,
                                "reasoning", r->reasoning)
                    : message("assistant", cat("<think>\n", r->reasoning, "\n</think>\n\n",
                                               r->output_text, NULL));
    if (!(msgs = conversation(r)) || append(msgs, a) < 0)
      goto fail;
    line = json_pack("{s:o}", "messages", msgs);
    msgs = NULL;
    break;
  }
  case PD_EXPORT_S1K: {
    json_t *segs = pd_export_segments(r->reasoning, pd_export_wait(p));
    line = segs ? json_pack("{s:s,s:o,s:s,s:s?}", "question", r->question, "thinking_trajectories",
                            segs, "attempt", r->output_text, "reference", r->reference)
                : NULL;
    break;
  }
  }
  if (line && with_metadata && json_object_set_new(line, "metadata", metadata(r)) < 0)
    goto fail;
  return line;
fail:
  json_decref(msgs);
  json_decref(line);
  return NULL;
}

/* ---- the command ---- */

static const char usage_text[] =
    "usage: ponder export --samples DIR/samples.jsonl --format FORMAT [--config FILE]\n"
    "                     [--min-score S] [--variant NAME] [--best-per-item] [--with-metadata]\n"
    "                     [--out FILE]\n"
    "\n"
    "Writes fine-tuning JSONL (one line per kept sample) from the graded samples of\n"
    "`ponder eval`; samples that failed (an error) are never kept.\n"
    "\n"
    "  --format FORMAT  openai-think (the seed's chat format with the variant's prompts),\n"
    "                   reasoning-field, inline-think or s1k\n"
    "  --config FILE    the config the run used: each variant's prompts, budgets and wait\n"
    "                   text (default: the built-in policy)\n"
    "  --min-score S    keep samples scoring at least S\n"
    "  --variant NAME   keep one variant's samples\n"
    "  --best-per-item  keep one sample per item: the highest score, then the fewest\n"
    "                   reasoning tokens\n"
    "  --with-metadata  add metadata {item_id, variant, sample, score, rounds, reasoning_tokens}\n"
    "  --out FILE       write there (default: standard output)\n";

typedef struct export_opts {
  const char *samples, *config, *variant, *out;
  int format, best, meta, have_min;
  double min_score;
} export_opts_t;

typedef struct export_state {
  export_opts_t o;
  pd_config_t *cfg;
  pd_policy_t defaults;
  FILE *out;
  pd_buf_t line;
  pd_samples_index_t items; /* --best-per-item: item id -> index in kept */
  pd_samples_rec_t *kept;
  size_t nkept, capkept;
  long written;
} export_state_t;

/* The policy of variant `name`: the first route's variant of that name in the config, a
 * route's single policy for "default"; the built-in policy without --config. */
static const pd_policy_t *policy_of(export_state_t *st, const char *name) {
  if (!st->cfg)
    return &st->defaults;
  for (size_t i = 0; i < st->cfg->nroutes; i++) {
    const pd_route_t *r = &st->cfg->routes[i];
    for (size_t j = 0; j < r->nvariants; j++)
      if (!strcmp(r->variants[j].name, name))
        return &r->variants[j].forcing;
  }
  return NULL;
}

static int emit(export_state_t *st, const pd_samples_rec_t *r) {
  const pd_policy_t *p = policy_of(st, r->variant);
  if (!p) {
    fprintf(stderr,
            "ponder export: %s:%ld: variant \"%s\" is not in %s (choose the variants to export "
            "with --variant)\n",
            st->o.samples, r->line, r->variant, st->o.config);
    return -1;
  }
  json_t *v = pd_export_line(st->o.format, r, p, st->o.meta);
  pd_buf_reset(&st->line);
  int rc = v && pd_json_write(&st->line, v) == 0 && pd_buf_append(&st->line, "\n", 1) == 0 ? 0 : -1;
  json_decref(v);
  if (rc < 0) {
    fprintf(stderr, "ponder export: out of memory\n");
    return -1;
  }
  if (fwrite(pd_buf_data(&st->line), 1, st->line.len, st->out) != st->line.len) {
    fprintf(stderr, "ponder export: %s: %s\n", st->o.out ? st->o.out : "stdout", strerror(errno));
    return -1;
  }
  st->written++;
  return 0;
}

/* --best-per-item: r replaces the item's kept sample when it scores higher, or the same with
 * fewer reasoning tokens (the first one stays on a tie). Takes r's contents. */
static int keep_best(export_state_t *st, pd_samples_rec_t *r) {
  size_t at = pd_samples_index_get(&st->items, r->item_id);
  if (at != (size_t)-1) {
    pd_samples_rec_t *k = &st->kept[at];
    if (r->score > k->score ||
        (r->score == k->score && r->reasoning_tokens < k->reasoning_tokens)) {
      pd_samples_rec_free(k);
      *k = *r;
    } else {
      pd_samples_rec_free(r);
    }
    memset(r, 0, sizeof *r);
    return 0;
  }
  if (st->nkept == st->capkept) {
    pd_samples_rec_t *k = pd_array_grow(st->kept, &st->capkept, sizeof *k, 64);
    if (!k)
      return -1;
    st->kept = k;
  }
  if (pd_samples_index_put(&st->items, r->item_id, st->nkept) < 0)
    return -1;
  st->kept[st->nkept++] = *r;
  memset(r, 0, sizeof *r);
  return 0;
}

static int parse_args(int argc, char **argv, export_opts_t *o) {
  static const struct option opts[] = {
      {"samples", required_argument, 0, 's'}, {"format", required_argument, 0, 'f'},
      {"config", required_argument, 0, 'c'},  {"min-score", required_argument, 0, 'm'},
      {"variant", required_argument, 0, 'v'}, {"best-per-item", no_argument, 0, 'b'},
      {"with-metadata", no_argument, 0, 'M'}, {"out", required_argument, 0, 'o'},
      {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
  const char *format = NULL;
  int c;
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case 's':
      o->samples = optarg;
      break;
    case 'f':
      format = optarg;
      break;
    case 'c':
      o->config = optarg;
      break;
    case 'm': {
      char *end;
      errno = 0;
      o->min_score = strtod(optarg, &end);
      if (errno || end == optarg || *end || !isfinite(o->min_score)) {
        fprintf(stderr, "ponder export: --min-score wants a number (got \"%s\")\n", optarg);
        return 2;
      }
      o->have_min = 1;
      break;
    }
    case 'v':
      o->variant = optarg;
      break;
    case 'b':
      o->best = 1;
      break;
    case 'M':
      o->meta = 1;
      break;
    case 'o':
      o->out = optarg;
      break;
    case 'h':
      fputs(usage_text, stdout);
      return 0;
    default:
      fprintf(stderr, "ponder export: unknown or incomplete option '%s'\n%s", argv[optind - 1],
              usage_text);
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "ponder export: unexpected argument '%s'\n", argv[optind]);
    return 2;
  }
  if (!o->samples || !format) {
    fprintf(stderr, "ponder export: --samples and --format are required\n%s", usage_text);
    return 2;
  }
  if ((o->format = pd_export_format(format)) < 0) {
    fprintf(stderr,
            "ponder export: unknown --format \"%s\" (openai-think, reasoning-field, "
            "inline-think or s1k)\n",
            format);
    return 2;
  }
  return -1;
}

static int run(export_state_t *st) {
  char *err = NULL;
  pd_samples_file_t *f = pd_samples_open(st->o.samples, &err);
  if (!f) {
    fprintf(stderr, "ponder export: %s\n", err);
    free(err);
    return 1;
  }
  pd_samples_rec_t r;
  int rc, status = 0;
  while ((rc = pd_samples_next(f, &r, &err)) == 1) {
    int keep = !r.error && (!st->o.variant || !strcmp(r.variant, st->o.variant)) &&
               (!st->o.have_min || r.score >= st->o.min_score);
    if (!keep) {
      pd_samples_rec_free(&r);
    } else if (st->o.best) {
      if (keep_best(st, &r) < 0) {
        pd_samples_rec_free(&r);
        fprintf(stderr, "ponder export: out of memory\n");
        status = 1;
        break;
      }
    } else {
      status = emit(st, &r) < 0;
      pd_samples_rec_free(&r);
      if (status)
        break;
    }
  }
  if (rc < 0) {
    fprintf(stderr, "ponder export: %s\n", err);
    free(err);
    status = 1;
  }
  pd_samples_close(f);
  for (size_t i = 0; i < st->nkept && !status; i++)
    status = emit(st, &st->kept[i]) < 0;
  return status;
}

/* `ponder export ARGS`: 0 when every kept sample was written, 1 on a bad samples line, an
 * unknown variant or a write error (the message on stderr), 2 on a usage error. */
int pd_export_main(int argc, char **argv) {
  export_state_t st;
  memset(&st, 0, sizeof st);
  int rc = parse_args(argc, argv, &st.o);
  if (rc >= 0)
    return rc;
  pd_config_policy_defaults(&st.defaults);
  if (st.o.config) {
    char *errors = NULL;
    if (pd_config_load(st.o.config, NULL, &st.cfg, &errors) < 0) {
      fprintf(stderr, "%s", errors ? errors : "ponder export: cannot load the config\n");
      free(errors);
      return 1;
    }
  }
  /* --out is written beside its place and renamed there once complete, so a bad line or a
   * full disk never leaves half a training file under the name a trainer reads. */
  char *tmp = NULL;
  st.out = stdout;
  if (st.o.out) {
    size_t n = strlen(st.o.out);
    int fd = -1;
    if ((tmp = malloc(n + 8))) {
      memcpy(tmp, st.o.out, n);
      memcpy(tmp + n, ".XXXXXX", 8);
      fd = mkstemp(tmp);
    }
    if (fd < 0 || !(st.out = fdopen(fd, "wb"))) {
      fprintf(stderr, "ponder export: %s: %s\n", st.o.out, tmp ? strerror(errno) : "out of memory");
      if (fd >= 0) {
        close(fd);
        unlink(tmp);
      }
      free(tmp);
      pd_config_unref(st.cfg);
      return 1;
    }
  }
  rc = run(&st);
  if (fflush(st.out) != 0 || ferror(st.out)) {
    if (!rc)
      fprintf(stderr, "ponder export: %s: %s\n", st.o.out ? st.o.out : "stdout", strerror(errno));
    rc = 1;
  }
  if (st.o.out) {
    if (fclose(st.out) != 0 && !rc) {
      fprintf(stderr, "ponder export: %s: %s\n", st.o.out, strerror(errno));
      rc = 1;
    }
    if (!rc && rename(tmp, st.o.out) != 0) {
      fprintf(stderr, "ponder export: %s: %s\n", st.o.out, strerror(errno));
      rc = 1;
    }
    if (rc)
      unlink(tmp);
    free(tmp);
  }
  if (!rc)
    fprintf(stderr, "ponder export: %ld line%s written\n", st.written, st.written == 1 ? "" : "s");
  for (size_t i = 0; i < st.nkept; i++)
    pd_samples_rec_free(&st.kept[i]);
  free(st.kept);
  pd_samples_index_free(&st.items);
  pd_buf_free(&st.line);
  pd_config_unref(st.cfg);
  return rc;
}
