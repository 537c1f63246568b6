/* UTF-8 well-formedness (RFC 3629): one check for every module. */
#ifndef PD_UTF8_H
#define PD_UTF8_H

#include <stddef.h>

/* Length of the well-formed UTF-8 sequence at p (n bytes available, p[0] >= 0x80), or 0 for
 * an invalid one (overlong forms, UTF-16 surrogates and values above U+10FFFF included). */
size_t pd_utf8_seq(const unsigned char *p, size_t n);

#endif
