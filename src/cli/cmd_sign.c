/* cli: vmsnap sign — add an Ed25519 signature of an archive to ARCHIVE.sig, with the chunk table it binds in
 * ARCHIVE.sums (the archive itself is not touched). */
#include "cli/cli.h"
#include "archive/archive.h"
#include "crypt/crypt.h"
#include "objstore/objstore.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/file.h>

/* The table of the archive's bytes: in the chunk size of a table already beside it that describes this archive
 * (signers of the same bytes share one), else chunk. The file is replaced only when it differs. */
static int put_sums(const char *path, struct arc_source *src, const uint8_t uuid[16], uint32_t chunk,
                    struct cr_sums *out, vs_err *e)
{
    VS_AUTOFREE char *loc = cli_sums_path(path), *old = NULL;
    size_t old_len = 0;
    struct cr_sums have = { 0 };
    int r = cli_side_load(loc, "chunk table", CR_SUMS_MAX_BYTES, &old, &old_len, e);
    if (r < 0 && r != -ENOENT)
        return r;
    if (r == 0 && cr_sums_parse((const uint8_t *)old, old_len, loc, &have, e) == 0 && !memcmp(have.uuid, uuid, 16) &&
        have.file_size == src->size)
        chunk = have.chunk_size;
    cr_sums_clear(&have);
    if ((r = cr_sums_compute(cli_source_pread, src, uuid, src->size, chunk, out, e)) < 0)
        return r;
    size_t len;
    VS_AUTOFREE uint8_t *file = cr_sums_format(out, &len);
    if (old && old_len == len && !memcmp(old, file, len))
        return 0;
    if ((r = cli_side_store(loc, "chunk table", file, len, e)) < 0)
        cr_sums_clear(out);
    return r;
}

/* Signers of one local archive take turns at its .sig (read, add, rename): a lock on the archive file itself,
 * which every signer opens anyway and which outlives no one (closing the fd unlocks). */
static int lock_archive(const char *path, int *fd, vs_err *e)
{
    *fd = -1;
    if (os_is_remote(path))
        return 0;   /* an object store has no lock: the last of two signers at once wins (docs/FORMAT.md) */
    int f = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (f < 0)
        return vs_err_sys(e, errno, "cannot open archive '%s'", path);
    while (flock(f, LOCK_EX) < 0)
        if (errno != EINTR) {
            int err = errno;
            close(f);
            return vs_err_sys(e, err, "locking %s against other signers", path);
        }
    *fd = f;
    return 0;
}

int cmd_sign(int argc, char **argv)
{
    static const struct option opts[] = { { "key", required_argument, NULL, 'k' },
                                          { "chunk-size", required_argument, NULL, 'c' },
                                          { NULL, 0, NULL, 0 } };
    const char *key = NULL;
    uint64_t chunk = CR_SUMS_DEFAULT_CHUNK;
    int c;
    while ((c = getopt_long(argc, argv, "k:", opts, NULL)) != -1) {
        if (c == 'k')
            key = optarg;
        else if (c != 'c' || vs_parse_size(optarg, &chunk) < 0 || !cr_sums_chunk_size_ok(chunk))
            return cli_usage("sign", c == 'c' ? "--chunk-size: expected a power of two from 64K to 16M"
                                              : "bad arguments");
    }
    if (!key || optind != argc - 1)
        return cli_usage("sign", "expected ARCHIVE --key SIGNING.key");
    const char *path = argv[optind];
    vs_err e = { 0 };
    VS_AUTOFREE char *sig_path = cli_sig_path(path);
    if (os_scheme_of(path) == OS_HTTP)
        return cli_fail("%s: http(s) locations are read-only: sign the archive where it can be written", path);
    CR_SIGNKEY_AUTOWIPE struct cr_signkey k = { 0 };
    if (cr_signkey_load(key, &k, &e) < 0)
        return cli_fail_err(&e);
    /* Opening checks the header and directory: a signature vouches for an archive vmsnap can read. Parents are
     * signed on their own. */
    struct arc_open_opts oo = { .no_parent = true };
    struct cr_key akey CR_KEY_AUTOWIPE = { 0 };   /* an encrypted archive's key: --key names the signing key here */
    if (cli_key(NULL, CLI_KEY_ENV, &akey, &oo.key, &e) < 0)
        return cli_fail_err(&e);
    ARC_AUTOCLOSE struct arc *a = NULL;
    if (arc_open(path, &oo, &a, &e) < 0) {
        if (!oo.key && strstr(e.msg, "is encrypted"))
            return cli_fail("%s is encrypted: give its archive key in $%s to sign it (--key names the signing key)",
                            path, CLI_KEY_ENV);
        return cli_fail_err(&e);
    }
    struct arc_source *src = arc_get_source(a);
    uint8_t header[CR_ARC_HEADER_BYTES];
    struct cr_sums sums = { 0 };
    VS_AUTOCLOSE int lock = -1;
    if (cli_source_pread(src, header, sizeof header, 0, &e) < 0 || lock_archive(path, &lock, &e) < 0 ||
        put_sums(path, src, arc_uuid(a), (uint32_t)chunk, &sums, &e) < 0 || arc_check_unchanged(a, &e) < 0) {
        cr_sums_clear(&sums);
        return cli_fail_err(&e);
    }
    struct cr_sig s;
    cr_sign_sums(&k, header, &sums, &s);
    cr_sums_clear(&sums);
    /* Read, add, write whole: a local file is renamed into place, an object appears only complete. */
    struct cr_sigfile f = { 0 };
    int r = cli_sig_load(path, &f, &e);
#ifdef VS_TEST_FAULTS
    const char *delay = getenv("VMSNAP_TEST_SIGN_DELAY_MS");   /* tests: two signers inside the same window */
    if (delay && *delay)
        nanosleep(&(struct timespec){ 0, VS_MAX(0L, VS_MIN(strtol(delay, NULL, 10), 999L)) * 1000000 }, NULL);
#endif
    if ((r < 0 && r != -ENOENT) || cr_sigfile_put(&f, &s, sig_path, &e) < 0 || cli_sig_store(path, &f, &e) < 0) {
        cr_sigfile_clear(&f);
        return cli_fail_err(&e);
    }
    size_t n = f.n;
    cr_sigfile_clear(&f);
    printf("%s: signed by key %s (%s holds %zu signature%s)\n", path, k.id, sig_path, n, n == 1 ? "" : "s");
    return CLI_OK;
}
