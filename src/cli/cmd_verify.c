/* cli: vmsnap verify — check every byte of an archive and its parent chain, and its signatures. */
#include "cli/cli.h"
#include "archive/archive.h"
#include "crypt/crypt.h"

#include <getopt.h>

struct vstate { struct cli_progress prog; unsigned shown; };

static void on_problem(void *opaque, const struct arc_problem *p)
{
    struct vstate *v = opaque;
    if (v->prog.on && v->prog.last > 0)
        fputc('\n', stderr);
    v->prog.last = 0;
    fprintf(stderr, "vmsnap: %s\n", p->msg);
    v->shown++;
}

/* Who signed each archive of the chain. */
static void on_signed(void *opaque, const char *archive, const char *key_id, const char *key_file)
{
    if (*(bool *)opaque || !key_id)   /* unsigned, with no trusted keys asked for: nothing to say */
        return;
    if (key_file)
        printf("%s: signed by key %s (trusted: %s)\n", archive, key_id, key_file);
    else
        printf("%s: signed by key %s (valid; not checked against trusted keys)\n", archive, key_id);
}

static void on_note(void *opaque, const char *msg)
{
    (void)opaque;
    fprintf(stderr, "vmsnap: note: %s: not checked as a signature\n", msg);
}

static void on_progress(void *opaque, uint64_t done, uint64_t total)
{
    struct vstate *v = opaque;
    v->prog.total = total;
    cli_progress_update(&v->prog, done);
}

int cmd_verify(int argc, char **argv)
{
    static const struct option opts[] = {
        { "quiet", no_argument, NULL, 'q' },
        { "key", required_argument, NULL, 'K' },
        { "trusted-keys", required_argument, NULL, CLI_OPT_TRUSTED_KEYS },
        { NULL, 0, NULL, 0 },
    };
    bool quiet = false;
    const char *keyfile = NULL, *trusted_keys = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "q", opts, NULL)) != -1) {
        switch (c) {
        case 'q': quiet = true; break;
        case 'K': keyfile = optarg; break;
        case CLI_OPT_TRUSTED_KEYS: trusted_keys = optarg; break;
        default: return cli_usage("verify", "bad arguments");
        }
    }
    if (optind != argc - 1)
        return cli_usage("verify", "expected one ARCHIVE");
    const char *path = argv[optind];
    vs_err e = { 0 };
    struct cr_key key CR_KEY_AUTOWIPE = { 0 };
    struct arc_open_opts ao = { 0 };
    if (cli_key(keyfile, CLI_KEY_ENV, &key, &ao.key, &e) < 0)
        return cli_fail_err(&e);
    CLI_TRUST_AUTOCLEAR struct cli_trust trust = { .any = true, .signed_by = on_signed, .note = on_note,
                                                .opaque = &quiet };
    if (cli_trust_load(trusted_keys, &trust, &e) < 0)
        return cli_fail_err(&e);
    ARC_AUTOCLOSE struct arc *a = NULL;
    if (cli_open_trusted(path, &ao, &trust, &a, &e) < 0)
        return cli_fail("%s", e.msg);
    struct vstate v = { 0 };
    cli_progress_init(&v.prog, cli_progress_enabled(quiet), "verify", 0);
    struct arc_verify_opts vo = { .problem = on_problem, .progress = on_progress, .opaque = &v };
    int n = arc_verify(a, &vo, &e);
    cli_progress_done(&v.prog);
    if (n < 0)
        return cli_fail("%s", e.msg);
    if (n > 0)
        return cli_fail("%s: %d problem%s found", path, n, n == 1 ? "" : "s");
    if (!quiet)
        printf("%s: ok (%u streams checked%s)\n", path, arc_stream_count(a), arc_parent(a) ? ", with parent chain" : "");
    return CLI_OK;
}
