/* cli: vmsnap cp — copy archives between local files and object stores. */
#include "cli/cli.h"
#include "archive/archive.h"
#include "crypt/crypt.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>

struct cpstate { bool json, quiet; json_t *list; uint64_t total; int sig_r; vs_err sig_e; };

static volatile int interrupted;
static void on_signal(int sig) { (void)sig; interrupted = 1; }

/* An archive's signatures and chunk table travel with it, once it is verified at dst: parsed strictly, written
 * whole, the table first (a signature never arrives before what it binds). */
static int copy_sig(const char *src, const char *dst, vs_err *e)
{
    VS_AUTOFREE char *ss = cli_sums_path(src), *ds = cli_sums_path(dst), *buf = NULL;
    size_t len = 0;
    struct cr_sums t = { 0 };
    int r = cli_side_load(ss, "chunk table", CR_SUMS_MAX_BYTES, &buf, &len, e);
    if (r == 0 && (r = cr_sums_parse((const uint8_t *)buf, len, ss, &t, e)) == 0)
        r = cli_side_store(ds, "chunk table", buf, len, e);
    cr_sums_clear(&t);
    if (r < 0 && r != -ENOENT)
        return r;
    struct cr_sigfile f;
    r = cli_sig_load(src, &f, e);
    if (r == -ENOENT)
        return 0;
    if (r == 0)
        r = cli_sig_store(dst, &f, e);
    cr_sigfile_clear(&f);
    return r;
}

static void on_copied(void *opaque, const struct arc_copied *a)
{
    struct cpstate *c = opaque;
    /* an archive written anew is another archive: its source's signatures do not sign it */
    if (!a->key_id && c->sig_r == 0 && (c->sig_r = copy_sig(a->src, a->dst, &c->sig_e)) < 0)
        vs_err_prefix(&c->sig_e, "%s copied, but not its signatures", a->dst);
    c->total += a->bytes;
    if (c->json) {
        json_t *j = json_pack("{s:o,s:o,s:I,s:b}", "src", cli_json_text(a->src), "dst", cli_json_text(a->dst),
                              "bytes", (json_int_t)a->bytes, "skipped", a->skipped);
        json_object_set_new(j, "key_id", a->key_id ? json_string(a->key_id) : json_null());
        json_object_set_new(j, "from_key_id", a->from_key_id ? json_string(a->from_key_id) : json_null());
        json_array_append_new(c->list, j);
    } else if (c->quiet) {
    } else if (a->skipped) {
        printf("%s -> %s: already there\n", a->src, a->dst);
    } else if (a->from_key_id) {
        printf("%s -> %s: re-encrypted (key %s, was key %s), %" PRIu64 " bytes, verified\n", a->src, a->dst,
               a->key_id, a->from_key_id, a->bytes);
    } else {
        printf("%s -> %s: %s%s%s%" PRIu64 " bytes, verified\n", a->src, a->dst,
               a->key_id ? "encrypted with key " : "", a->key_id ? a->key_id : "", a->key_id ? ", " : "", a->bytes);
    }
}

int cmd_cp(int argc, char **argv)
{
    static const struct option opts[] = { { "with-parents", no_argument, NULL, 'p' },
                                          { "json", no_argument, NULL, 'j' },
                                          { "quiet", no_argument, NULL, 'q' },
                                          { "key", required_argument, NULL, 'K' },
                                          { "encrypt", required_argument, NULL, 'E' },
                                          { "cipher", required_argument, NULL, 'X' },
                                          { "trusted-keys", required_argument, NULL, CLI_OPT_TRUSTED_KEYS },
                                          { NULL, 0, NULL, 0 } };
    const char *keyfile = NULL, *encrypt = NULL, *trusted_keys = NULL;
    struct cpstate c = { 0 };
    struct arc_copy_opts o = { .copied = on_copied, .opaque = &c };
    int ch;
    while ((ch = getopt_long(argc, argv, "q", opts, NULL)) != -1) {
        switch (ch) {
        case 'p': o.with_parents = true; break;
        case 'j': c.json = true; break;
        case 'q': c.quiet = true; break;
        case 'K': keyfile = optarg; break;
        case 'E': encrypt = optarg; break;
        case 'X': o.cipher = optarg; break;
        case CLI_OPT_TRUSTED_KEYS: trusted_keys = optarg; break;
        default: return cli_usage("cp", "bad arguments");
        }
    }
    if (optind != argc - 2)
        return cli_usage("cp", "expected SRC and DST");
    vs_err e = { 0 };
    if (o.cipher && !encrypt)
        return cli_usage("cp", "--cipher goes with --encrypt KEYFILE");
    if (o.cipher && cli_cipher_opt("cp", o.cipher))
        return CLI_USAGE;
    struct sigaction sa = { .sa_handler = on_signal };   /* stop cleanly: the upload is aborted, no temp file */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    o.cancel = &interrupted;
    struct cr_key key CR_KEY_AUTOWIPE = { 0 }, ekey CR_KEY_AUTOWIPE = { 0 };
    if (cli_key(keyfile, CLI_KEY_ENV, &key, &o.key, &e) < 0 || cli_key(encrypt, NULL, &ekey, &o.encrypt, &e) < 0)
        return cli_fail_err(&e);
    /* With trusted keys the source chain is checked first, and each byte copied through its chunk table. */
    CLI_TRUST_AUTOCLEAR struct cli_trust trust = { 0 };
    if (cli_trust_load(trusted_keys, &trust, &e) < 0)
        return cli_fail_err(&e);
    if (trust.kr) {
        struct arc_open_opts ao = { .key = o.key };
        ARC_AUTOCLOSE struct arc *a = NULL;
        if (cli_open_trusted(argv[optind], &ao, &trust, &a, &e) < 0)
            return cli_fail_err(&e);
        o.wrap = cli_trust_wrap;
        o.wrap_opaque = &trust;
    }
    c.list = json_array();
    int r = arc_copy(argv[optind], argv[optind + 1], &o, &e);
    if (r < 0 || c.sig_r < 0) {
        json_decref(c.list);
        return cli_fail_err(r < 0 ? &e : &c.sig_e);
    }
    if (c.json) {
        json_t *j = json_pack("{s:o,s:I}", "copied", c.list, "bytes", (json_int_t)c.total);
        json_dumpf(j, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
        putchar('\n');
        json_decref(j);
    } else {
        json_decref(c.list);
    }
    return CLI_OK;
}
