/* cli: "vmsnap serve" — serve an archive's disk over NBD on a Unix socket with a copy-on-write overlay. */
#include "cli/cli.h"
#include "crypt/crypt.h"
#include "nbd/nbd.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>

/* Why reads fail (a store gone, a damaged block): the client only gets EIO. */
static void on_log(void *opaque, const char *msg)
{
    (void)opaque;
    fprintf(stderr, "vmsnap: %s\n", msg);
}

struct base_src { bool raw; const struct cr_key *key; struct cli_trust *trust; };

static int open_base(void *opaque, const char *path, unsigned disk, struct nbd_base **out, vs_err *e)
{
    const struct base_src *bs = opaque;
    if (bs->raw) {
        if (disk)
            return vs_err_set(e, EINVAL, "a raw image has only disk 0");
        return nbd_base_open_raw(path, out, e);
    }
    return nbd_base_open_archive_checked(path, disk, bs->key, cli_trust_wrap, cli_trust_check, bs->trust, out,
                                         e);
}

int cmd_serve(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "socket", required_argument, NULL, 's' }, { "disk", required_argument, NULL, 'd' },
        { "overlay", required_argument, NULL, 'o' }, { "read-only", no_argument, NULL, 'r' },
        { "raw", no_argument, NULL, 'R' }, { "control", required_argument, NULL, 'c' },
        { "threads", required_argument, NULL, 't' }, { "key", required_argument, NULL, 'K' },
        { "trusted-keys", required_argument, NULL, CLI_OPT_TRUSTED_KEYS },
        { NULL, 0, NULL, 0 },
    };
    const char *sock = NULL, *overlay = NULL, *control = NULL, *keyfile = NULL, *trusted_keys = NULL;
    unsigned long disk = 0, threads = 0;
    bool ro = false, raw = false;
    int c;
    char *end;
    while ((c = getopt_long(argc, argv, "s:d:o:rRc:t:", longopts, NULL)) != -1) {
        switch (c) {
        case 's': sock = optarg; break;
        case 'o': overlay = optarg; break;
        case 'c': control = optarg; break;
        case 'r': ro = true; break;
        case 'R': raw = true; break;
        case 'K': keyfile = optarg; break;
        case CLI_OPT_TRUSTED_KEYS: trusted_keys = optarg; break;
        case 'd':
            errno = 0;
            disk = strtoul(optarg, &end, 10);
            if (errno || *end || !*optarg || optarg[0] == '-' || disk > 65535)
                return cli_usage("serve", "--disk wants a disk index (0, 1, ...), not '%s'", optarg);
            break;
        case 't':
            errno = 0;
            threads = strtoul(optarg, &end, 10);
            if (errno || *end || threads < 1 || threads > 64)
                return cli_usage("serve", "--threads wants 1..64, not '%s'", optarg);
            break;
        default:
            return cli_usage("serve", "unknown option");
        }
    }
    if (optind + 1 != argc)
        return cli_usage("serve", optind == argc ? "missing ARCHIVE" : "too many arguments");
    if (!sock)
        return cli_usage("serve", "missing --socket PATH");
    const char *archive = argv[optind];
    vs_err e = { 0 };
    CLI_TRUST_AUTOCLEAR struct cli_trust trust = { 0 };
    if (cli_trust_load(trusted_keys, &trust, &e) < 0)
        return cli_fail_err(&e);
    if (raw && trust.kr)
        return cli_usage("serve", "--raw serves an image that carries no signature: drop --trusted-keys");

    /* Signals are taken by sigwait() below, never by a handler in a server thread. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct cr_key key CR_KEY_AUTOWIPE = { 0 };
    struct base_src bsrc = { .raw = raw, .trust = &trust };
    if (cli_key(keyfile, CLI_KEY_ENV, &key, &bsrc.key, &e) < 0)
        return cli_fail_err(&e);
    struct nbd_base *base = NULL;
    if (open_base(&bsrc, archive, (unsigned)disk, &base, &e) < 0)
        return cli_fail_err(&e);
    unsigned flags = overlay ? NBD_OVL_CREATE : NBD_OVL_TEMP;
    if (ro)
        flags |= NBD_OVL_READONLY;
    NBD_OVERLAY_AUTOCLOSE struct nbd_overlay *o = NULL;
    if (nbd_overlay_open(overlay, base, flags, &o, &e) < 0) {
        nbd_base_close(base);
        return cli_fail_err(&e);
    }
    struct nbd_server_opts so = { .threads = (unsigned)threads, .description = archive, .log = on_log };
    NBD_SERVER_AUTOFREE struct nbd_server *srv = NULL;
    if (nbd_server_new(o, &so, &srv, &e) < 0 || nbd_server_listen_unix(srv, sock, &e) < 0)
        return cli_fail_err(&e);
    struct nbd_control *ctl = NULL;
    if (control && nbd_control_start(o, control, open_base, &bsrc, &ctl, &e) < 0)
        return cli_fail_err(&e);

    int sig;
    sigwait(&set, &sig);
    nbd_control_stop(ctl);
    if (nbd_server_stop(srv, &e) < 0)
        return cli_fail_err(&e);
    return CLI_OK;
}
