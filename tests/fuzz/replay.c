/* Replays a fuzz target's corpus without libFuzzer (any compiler): each file named on the command line, or each
 * file of each directory named, goes once through LLVMFuzzerTestOneInput. The normal test run uses it so that
 * every committed seed (and every crash once added to a corpus) is exercised, under ASan in the sanitizer build. */
#include "util/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    VS_AUTOCLOSE int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        fprintf(stderr, "replay: cannot open '%s': %s\n", path, strerror(errno));
        return -1;
    }
    /* A buffer of exactly the input's size, as libFuzzer gives: ASan sees any read past its end. */
    size_t len = (size_t)st.st_size;
    VS_AUTOFREE uint8_t *buf = vs_xmalloc(len ? len : 1);
    if (vs_read_full(fd, buf, len) != (ssize_t)len) {
        fprintf(stderr, "replay: cannot read '%s'\n", path);
        return -1;
    }
    LLVMFuzzerTestOneInput(buf, len);
    return 0;
}

int main(int argc, char **argv)
{
    unsigned files = 0;
    for (int i = 1; i < argc; i++) {
        DIR *d = opendir(argv[i]);
        if (!d) {
            if (run_file(argv[i]) < 0)
                return 1;
            files++;
            continue;
        }
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.')
                continue;
            VS_AUTOFREE char *p = vs_xasprintf("%s/%s", argv[i], de->d_name);
            if (run_file(p) < 0) {
                closedir(d);
                return 1;
            }
            files++;
        }
        closedir(d);
    }
    if (!files) {
        fprintf(stderr, "replay: no inputs\n");
        return 1;
    }
    printf("replayed %u inputs\n", files);
    return 0;
}
