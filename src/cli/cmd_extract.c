/* cli: vmsnap extract — one stream out, byte for byte, zero blocks as holes; written to a temp name and renamed. */
#include "cli/cli.h"
#include "archive/archive.h"
#include "crypt/crypt.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <libgen.h>
#include <string.h>
#include <sys/stat.h>

static void on_progress(void *opaque, uint64_t done) { cli_progress_update(opaque, done); }

int cmd_extract(int argc, char **argv)
{
    static const struct option opts[] = {
        { "disk", required_argument, NULL, 'd' }, { "memory", no_argument, NULL, 'M' },
        { "config", no_argument, NULL, 'C' }, { "output", required_argument, NULL, 'o' },
        { "quiet", no_argument, NULL, 'q' }, { "key", required_argument, NULL, 'K' },
        { "trusted-keys", required_argument, NULL, CLI_OPT_TRUSTED_KEYS }, { NULL, 0, NULL, 0 },
    };
    const char *out = NULL, *keyfile = NULL, *trusted_keys = NULL;
    int disk = -1, which = 0;
    bool quiet = false;
    int c;
    while ((c = getopt_long(argc, argv, "o:q", opts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'd':
        {
            errno = 0;
            long n = strtol(optarg, &end, 10);   /* no (int) cut first: 4294967296 is not disk 0 */
            if (!*optarg || *end || errno || n < 0 || n > INT_MAX)
                return cli_usage("extract", "bad --disk '%s' (a number from 0)", optarg);
            disk = (int)n;
            which++;
            break;
        }
        case 'M': which++; break;
        case 'C': which++; break;
        case 'o': out = optarg; break;
        case 'q': quiet = true; break;
        case 'K': keyfile = optarg; break;
        case CLI_OPT_TRUSTED_KEYS: trusted_keys = optarg; break;
        default: return cli_usage("extract", "bad arguments");
        }
        if (c == 'M' || c == 'C')
            disk = c == 'M' ? -2 : -3;
    }
    if (optind != argc - 1)
        return cli_usage("extract", "expected one ARCHIVE");
    if (which != 1)
        return cli_usage("extract", "choose exactly one of --disk N, --memory, --config");
    if (!out)
        return cli_usage("extract", "missing -o FILE");
    const char *path = argv[optind];
    vs_err e = { 0 };
    struct cr_key key CR_KEY_AUTOWIPE = { 0 };
    struct arc_open_opts ao = { 0 };
    CLI_TRUST_AUTOCLEAR struct cli_trust trust = { 0 };
    if (cli_key(keyfile, CLI_KEY_ENV, &key, &ao.key, &e) < 0 || cli_trust_load(trusted_keys, &trust, &e) < 0)
        return cli_fail_err(&e);
    ARC_AUTOCLOSE struct arc *a = NULL;
    if (cli_open_trusted(path, &ao, &trust, &a, &e) < 0)
        return cli_fail("%s", e.msg);
    int s = disk >= 0 ? arc_find_disk(a, disk)
                      : arc_find_stream(a, disk == -2 ? ARC_KIND_MEMORY : ARC_KIND_CONFIG, NULL);
    if (s < 0)
        return disk >= 0 ? cli_fail("%s: no disk %d (disks count from 0)", path, disk)
                         : cli_fail("%s: no %s stream", path, disk == -2 ? "memory" : "config");
    struct arc_stream_info si;
    arc_stream_get(a, (unsigned)s, &si);

    VS_AUTOFREE char *copy = vs_xstrdup(out), *copy2 = vs_xstrdup(out);
    VS_AUTOFREE char *tmp = vs_xasprintf("%s/.%s.XXXXXX", dirname(copy), basename(copy2));
    /* Guest memory holds secrets: 0600 whatever the umask (like dump); anything else is a new file like any other. */
    VS_AUTOCLOSE int fd = vs_mkstemp_mode(tmp, si.kind == ARC_KIND_MEMORY ? 0600 : 0666);
    if (fd < 0)
        return cli_fail("cannot create a temporary file beside '%s': %s", out, strerror(errno));
    struct cli_progress prog;
    cli_progress_init(&prog, cli_progress_enabled(quiet), "extract", si.size);
    int r = arc_extract_fd(a, (unsigned)s, fd, on_progress, &prog, &e);
    cli_progress_done(&prog);
    if (r >= 0 && fsync(fd) < 0)
        r = vs_err_sys(&e, errno, "syncing '%s'", out);
    if (r >= 0 && rename(tmp, out) < 0)
        r = vs_err_sys(&e, errno, "renaming the output to '%s'", out);
    if (r < 0) {
        unlink(tmp);
        return cli_fail("%s", e.msg);
    }
    vs_fsync_dir_of(out, NULL);
    return CLI_OK;
}
