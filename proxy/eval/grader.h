/* grader.c's private surface for its tests and fuzz target: the built-in judge's text and the
 * fuzzy_match similarity. */
#ifndef PD_GRADER_H
#define PD_GRADER_H

#include <stddef.h>

/* config/graders/judge.json as compiled in (NUL-terminated, static). */
const char *pd_grader_judge_text(void);

/* fuzzy_match: 2 LCS(a, b) / (|a| + |b|) over the Unicode code points of a and b (a byte that
 * is not well-formed UTF-8 counts as one unit of its own), 1 when both are empty; that is
 * rapidfuzz's fuzz.ratio / 100 (its normalized Indel similarity). Each side is cut to its
 * first PD_GRADER_FUZZY_MAX code points, which bounds the cost of one comparison. */
#define PD_GRADER_FUZZY_MAX 4096
double pd_grader_fuzzy_ratio(const char *a, size_t alen, const char *b, size_t blen);

#endif
