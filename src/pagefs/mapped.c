/* pagefs: which pages of the page files a process has mapped (/proc/PID/maps and /proc/PID/pagemap). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "pagefs/pagefs.h"

#define PM_PRESENT (1ull << 63)
#define PM_SWAPPED (1ull << 62)
#define PM_BATCH 4096u                 /* pagemap entries read at once */

/* Set in map the file pages of [lo, hi) (a mapping of the file from file offset off) that pid has present or
 * swapped out. */
static int mark_mapped(int pm, uint64_t lo, uint64_t hi, uint64_t off, uint64_t *map, uint64_t pages, vs_err *e)
{
    uint64_t ent[PM_BATCH];
    for (uint64_t va = lo; va < hi;) {
        size_t k = (size_t)VS_MIN((uint64_t)PM_BATCH, (hi - va) / PF_PAGE_SIZE);
        ssize_t n = vs_pread_full(pm, ent, k * sizeof *ent, (off_t)(va / PF_PAGE_SIZE * sizeof *ent));
        if (n != (ssize_t)(k * sizeof *ent))
            return vs_err_sys(e, n < 0 ? errno : EIO, "reading the page map of %#" PRIx64 "-%#" PRIx64, lo, hi);
        for (size_t j = 0; j < k; j++) {
            uint64_t p = (off + va - lo) / PF_PAGE_SIZE + j;
            if ((ent[j] & (PM_PRESENT | PM_SWAPPED)) && p < pages)
                map[p / 64] |= 1ull << (p % 64);
        }
        va += k * PF_PAGE_SIZE;
    }
    return 0;
}

int pf_mapped(int pid, const char *dir, const struct pf_file *files, unsigned n, uint64_t ***out, vs_err *e)
{
    struct stat st;
    if (stat(dir, &st) < 0)
        return vs_err_sys(e, errno, "page files %s", dir);
    char mpath[64], ppath[64];
    snprintf(mpath, sizeof mpath, "/proc/%d/maps", pid);
    snprintf(ppath, sizeof ppath, "/proc/%d/pagemap", pid);
    VS_AUTOFCLOSE FILE *maps = fopen(mpath, "re");
    VS_AUTOCLOSE int pm = maps ? open(ppath, O_RDONLY | O_CLOEXEC) : -1;
    if (pm < 0)
        return vs_err_sys(e, errno, "%s (the pages of %s that process %d maps)", maps ? ppath : mpath, dir, pid);
    uint64_t **m = vs_xcalloc(n ? n : 1, sizeof *m);
    for (unsigned i = 0; i < n; i++)
        m[i] = vs_xcalloc(VS_DIV_ROUND_UP(files[i].size, PF_PAGE_SIZE) / 64 + 1, sizeof(uint64_t));
    VS_AUTOFREE char *line = NULL;
    size_t cap = 0;
    int r = 0;
    while (r == 0 && getline(&line, &cap, maps) > 0) {
        uint64_t lo, hi, off, ino;
        unsigned maj, mnr;
        if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %*s %" SCNx64 " %x:%x %" SCNu64, &lo, &hi, &off, &maj, &mnr,
                   &ino) != 6 || maj != major(st.st_dev) || mnr != minor(st.st_dev) || ino < 2 || ino - 2 >= n)
            continue;   /* not one of our files (inode 2+i is file i) */
        unsigned i = (unsigned)(ino - 2);
        r = mark_mapped(pm, lo, hi, off, m[i], VS_DIV_ROUND_UP(files[i].size, PF_PAGE_SIZE), e);
    }
    if (r < 0) {
        pf_mapped_free(m, n);
        return vs_err_prefix(e, "process %d", pid);
    }
    *out = m;
    return 0;
}

void pf_mapped_free(uint64_t **maps, unsigned n)
{
    for (unsigned i = 0; maps && i < n; i++)
        free(maps[i]);
    free(maps);
}
