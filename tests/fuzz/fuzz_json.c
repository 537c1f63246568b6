/* Fuzz target: the JSON readers of proxy/openai.c, differential against jansson's json_loadb
 * (flags 0), which is the contract each of them states in openai.h:
 *  - pd_json_load gives json_loadb's verdict and the same tree;
 *  - pd_json_load_reply gives json_loadb's verdict, and either the reply cut down to the members
 *    the forcing engine reads or (its json_loadb fallback) the whole tree;
 *  - pd_json_check_object accepts every object jansson accepts within its 64 levels, and says 2
 *    only when jansson's tree has a top-level "error"; pd_json_check_reply's "usage" span parses
 *    to jansson's top-level "usage";
 *  - pd_json_write of jansson's tree is byte for byte json_dumps(JSON_COMPACT).
 * Any difference aborts, so libFuzzer keeps the input. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/json_depth.h"
#include "../lib/reply_cut.h"
#include "core/openai.h"

static void check_write(const json_t *v) {
  char *want = json_dumps(v, JSON_COMPACT);
  if (!want)
    abort();
  pd_buf_t b;
  pd_buf_init(&b);
  if (pd_json_write(&b, v) != 0 || b.len != strlen(want) || memcmp(pd_buf_data(&b), want, b.len))
    abort();
  pd_buf_free(&b);
  free(want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *b = (const char *)data;
  json_error_t err;
  json_t *full = json_loadb(b, size, 0, NULL);
  json_t *whole = pd_json_load(b, size, &err);
  json_t *reply = pd_json_load_reply(b, size);
  int check = pd_json_check_object(b, size);
  if (!full) {
    if (whole || reply)
      abort(); /* accepted what jansson rejects */
    return 0;
  }
  if (!whole || !json_equal(whole, full))
    abort();
  if (!reply)
    abort(); /* rejected what jansson accepts */
  json_t *cut = json_is_object(full) ? cut_reply(full) : NULL;
  if (!(cut && json_equal(reply, cut)) && !json_equal(reply, full))
    abort();
  /* jansson 2.14 drops a NUL byte that follows a number or a literal ({"a":5\0}: its lexer
   * takes the pushed-back NUL for the end of its look-ahead buffer); the check rejects it. */
  if (json_is_object(full) && depth(full) <= 64 && !memchr(b, 0, size) && check == 0)
    abort();
  if (!json_is_object(full) && check != 0)
    abort();
  if (check == 2 && !json_object_get(full, "error"))
    abort();
  /* The "usage" span pd_json_check_reply finds parses to jansson's top-level "usage". */
  const char *u = NULL;
  size_t ulen = 0;
  if (pd_json_check_reply(b, size, &u, &ulen) != check)
    abort();
  if (check) {
    json_t *want = json_object_get(full, "usage");
    json_t *got = u ? json_loadb(u, ulen, JSON_DECODE_ANY, NULL) : NULL;
    if (!want != !got || (got && !json_equal(got, want)))
      abort();
    json_decref(got);
  }
  check_write(full);
  json_decref(cut);
  json_decref(reply);
  json_decref(whole);
  json_decref(full);
  return 0;
}
