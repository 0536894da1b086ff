/* crypt: what the component's files share and nobody else uses. */
#ifndef VMSNAP_CRYPT_PRIV_H
#define VMSNAP_CRYPT_PRIV_H

#include "crypt/crypt.h"

/* Read a small file the user named (a key, a .sig): a regular file (a FIFO or device is refused without blocking
 * on it), with no group/other access when secret, named "<what> <path>" in messages. Up to cap bytes go to buf
 * and *len says how many: cap means the file may be longer, which the caller refuses in its own words. */
int cr__read_small(const char *path, const char *what, bool secret, char *buf, size_t cap, size_t *len, vs_err *e);

#endif
