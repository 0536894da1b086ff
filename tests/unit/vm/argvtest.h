/* Helpers of the unit tests that look into a built QEMU argv. */
#ifndef VMSNAP_TEST_ARGVTEST_H
#define VMSNAP_TEST_ARGVTEST_H

#include <string.h>

#include "vm/vm.h"

/* Index of the option opt followed by value val (NULL: any), or -1. */
static inline int find_pair(const struct vm_argv *a, const char *opt, const char *val)
{
    for (size_t i = 0; i + 1 < a->n; i++)
        if (!strcmp(a->v[i], opt) && (!val || !strcmp(a->v[i + 1], val)))
            return (int)i;
    return -1;
}

/* How many arguments contain s. */
static inline int count(const struct vm_argv *a, const char *s)
{
    int n = 0;
    for (size_t i = 0; i < a->n; i++)
        n += strstr(a->v[i], s) != NULL;
    return n;
}

#endif
