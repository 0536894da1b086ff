/* cli: vmsnap sign — add an Ed25519 signature of an archive to ARCHIVE.sig (the archive itself is not touched). */
#include "cli/cli.h"
#include "archive/archive.h"
#include "crypt/crypt.h"
#include "objstore/objstore.h"

#include <errno.h>
#include <getopt.h>
#include <string.h>

int cmd_sign(int argc, char **argv)
{
    static const struct option opts[] = { { "key", required_argument, NULL, 'k' }, { NULL, 0, NULL, 0 } };
    const char *key = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "k:", opts, NULL)) != -1) {
        if (c != 'k')
            return cli_usage("sign", "bad arguments");
        key = optarg;
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
    uint8_t header[CR_ARC_HEADER_BYTES], digest[CR_DIGEST_BYTES];
    if (cli_source_pread(src, header, sizeof header, 0, &e) < 0 ||
        cr_digest(cli_source_pread, src, src->size, digest, &e) < 0 || arc_check_unchanged(a, &e) < 0)
        return cli_fail_err(&e);
    struct cr_sig s;
    cr_sign(&k, header, src->size, digest, &s);
    /* Read, add, write whole: a local file is renamed into place, an object appears only complete. */
    struct cr_sigfile f = { 0 };
    int r = cli_sig_load(path, &f, &e);
    if ((r < 0 && r != -ENOENT) || cr_sigfile_put(&f, &s, sig_path, &e) < 0 || cli_sig_store(path, &f, &e) < 0) {
        cr_sigfile_clear(&f);
        return cli_fail_err(&e);
    }
    size_t n = f.n;
    cr_sigfile_clear(&f);
    printf("%s: signed by key %s (%s holds %zu signature%s)\n", path, k.id, sig_path, n, n == 1 ? "" : "s");
    return CLI_OK;
}
