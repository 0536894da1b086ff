/* Shared by the unit tests of encrypted archives (include after cmocka.h): a fresh directory and two archive keys
 * made in it; an archive opened with a key or failing the test. */
#ifndef VMSNAP_TEST_KEYTEST_H
#define VMSNAP_TEST_KEYTEST_H

#include "archive/archive.h"
#include "crypt/crypt.h"

#include <stdlib.h>
#include <unistd.h>

/* dir is a mkdtemp template; the key files are removed again (the keys stay in k1, k2). */
static inline int keytest_setup(char *dir, struct cr_key *k1, struct cr_key *k2)
{
    if (!mkdtemp(dir))
        return -1;
    vs_err e = { 0 };
    VS_AUTOFREE char *p1 = vs_xasprintf("%s/k1.key", dir), *p2 = vs_xasprintf("%s/k2.key", dir);
    if (cr_init(&e) < 0 || cr_key_generate(p1, k1, &e) < 0 || cr_key_generate(p2, k2, &e) < 0)
        return -1;
    unlink(p1);
    unlink(p2);
    return 0;
}

static inline struct arc *open_key(const char *path, const struct cr_key *k)
{
    struct arc_open_opts oo = { .key = k };
    struct arc *a = NULL;
    vs_err e = { 0 };
    if (arc_open(path, &oo, &a, &e) < 0)
        fail_msg("%s", e.msg);
    return a;
}

#endif
