/* cli: "vmsnap dump" — crash-analysis dump of guest memory (dump-guest-memory) into a file. */
#include "cli/qops-cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <sys/stat.h>

static void show_progress(void *opaque, uint64_t done, uint64_t total)
{
    (void)opaque;
    if (total)
        fprintf(stderr, "\rdumping guest memory: %3d%%", (int)(done * 100 / total));
}

/* Create a temporary file next to path (same filesystem, so the final rename is atomic). */
static int open_temp(const char *path, char **tmp_out, vs_err *e)
{
    VS_AUTOFREE char *copy = vs_xstrdup(path);
    char *dir = dirname(copy);
    char *tmp = vs_xasprintf("%s/.vmsnap-dump-XXXXXX", dir);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        int r = vs_err_sys(e, errno, "cannot create a file in '%s' for the dump", dir);
        free(tmp);
        return r;
    }
    fchmod(fd, 0600);   /* guest memory holds secrets */
    *tmp_out = tmp;
    return fd;
}

int cmd_dump(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "qmp", required_argument, NULL, 'q' },     { "output", required_argument, NULL, 'o' },
        { "format", required_argument, NULL, 'f' },  { "paging", no_argument, NULL, 'p' },
        { "timeout", required_argument, NULL, 't' }, { "json", no_argument, NULL, 'j' },
        { "quiet", no_argument, NULL, 'Q' },         { NULL, 0, NULL, 0 },
    };
    const char *qmp_path = NULL, *out = NULL;
    struct qops_dump_opts o = { .format = "elf" };
    bool json = false, quiet = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:", longopts, NULL)) != -1) {
        switch (c) {
        case 'q': qmp_path = optarg; break;
        case 'o': out = optarg; break;
        case 'f': o.format = optarg; break;
        case 'p': o.paging = true; break;
        case 'j': json = true; break;
        case 'Q': quiet = true; break;
        case 't':
            if (!qops_cli_seconds(optarg, &o.timeout_s))
                return cli_usage("dump", "--timeout needs a positive number of seconds, not '%s'", optarg);
            break;
        default: return cli_usage("dump", "bad option");
        }
    }
    if (optind != argc)
        return cli_usage("dump", "unexpected argument '%s'", argv[optind]);
    if (!qmp_path || !out)
        return cli_usage("dump", "dump needs --qmp PATH and -o FILE");
    if (o.paging && strcmp(o.format, "elf"))
        return cli_usage("dump", "--paging works only with --format elf, not '%s'", o.format);
    bool progress = cli_progress_enabled(quiet);
    if (progress)
        o.progress = show_progress;

    vs_err e = { 0 };
    struct qmp *q QMP_AUTOCLOSE = NULL;
    if (qops_cli_connect(qmp_path, &q, &e) < 0)
        return cli_fail_err(&e);
    VS_AUTOFREE char *tmp = NULL;
    VS_AUTOCLOSE int fd = open_temp(out, &tmp, &e);
    if (fd < 0)
        return cli_fail_err(&e);
    struct qops_dump_result res;
    int r = qops_dump(q, fd, &o, &res, &e);
    if (progress)
        fputc('\n', stderr);
    if (r >= 0 && fsync(fd) < 0)
        r = vs_err_sys(&e, errno, "fsync of the dump for '%s'", out);
    if (r >= 0 && rename(tmp, out) < 0)
        r = vs_err_sys(&e, errno, "cannot rename the dump to '%s'", out);
    if (r < 0) {
        unlink(tmp);
        return cli_fail_err(&e);
    }
    if (vs_fsync_dir_of(out, &e) < 0)
        return cli_fail_err(&e);
    struct stat st;
    off_t size = fstat(fd, &st) == 0 ? st.st_size : -1;
    if (json)
        return qops_cli_print_json(qops_cli_runstate_json(json_pack("{s:o, s:s, s:b, s:I, s:I, s:f}", "file",
            cli_json_text(out), "format", o.format, "paging", o.paging, "memory", (json_int_t)res.total, "size",
            (json_int_t)size, "seconds", res.seconds), &res.run));
    char m[32], s[32];
    printf("dumped %s of guest memory to '%s' (%s, %s) in %.2f s\n", vs_fmt_size(res.total, m, sizeof m), out,
           o.format, vs_fmt_size(size > 0 ? (uint64_t)size : 0, s, sizeof s), res.seconds);
    return CLI_OK;
}
