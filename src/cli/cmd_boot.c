/* cli: "vmsnap boot" — boot or resume a VM from an archive (the work is vm_host_run in src/vm/host.c). */
#include "cli/cli.h"
#include "crypt/crypt.h"
#include "objstore/objstore.h"
#include "vm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <string.h>
#include <sys/wait.h>

struct boot_ui {
    bool json, detach;
    int fd;    /* detached: the pipe to the waiting parent */
    char *refused;   /* the allow-list's whole message, longer than a vs_err holds */
    struct cli_trust *trust;
    json_t *signed_by;   /* with trusted keys: [{archive, key-id, key-file}] of the chain, as checked */
};

static char *absolute(const char *p)
{
    if (p[0] == '/' || !strcmp(p, "stdio"))
        return vs_xstrdup(p);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        return vs_xstrdup(p);
    return vs_xasprintf("%s/%s", cwd, p);
}

static json_t *cache_json(const struct arc_cache_stats *c)
{
    if (!c)
        return json_null();
    return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "hits", (json_int_t)c->hits, "hit-bytes", (json_int_t)c->hit_bytes,
                     "misses", (json_int_t)c->misses, "source-reads", (json_int_t)c->source_reads, "source-bytes",
                     (json_int_t)c->source_bytes, "stored", (json_int_t)c->stored, "bad", (json_int_t)c->bad);
}

static json_t *info_json(const struct vm_host_info *i)
{
    json_t *j = json_pack("{s:o,s:o,s:o,s:o,s:o,s:i,s:i,s:b,s:f,s:b,s:s?,s:s?,s:s?,s:s?,s:s?}", "qmp", cli_json_text(i->qmp),
                          "console", cli_json_text(i->console), "overlay", cli_json_text(i->overlay), "rundir",
                          cli_json_text(i->rundir), "control", cli_json_text(i->control), "qemu-pid", (int)i->qemu_pid,
                          "boot-pid", (int)i->boot_pid, "resumed", i->resumed, "start-to-running",
                          i->start_to_running_s, "lazy", i->lazy, "memory-note", i->memory_note, "generation-id",
                          i->generation_id, "trusted", i->trusted, "disks-note", i->disks_note,
                          "replay-notes", i->replay_notes);
    if (i->clone_id)
        json_object_set_new(j, "clone-id", json_string(i->clone_id));
    json_t *macs = json_array();
    for (size_t k = 0; k < i->n_macs; k++)
        json_array_append_new(macs, json_string(i->macs[k]));
    json_object_set_new(j, "macs", macs);
    if (i->lazy) {
        json_object_set_new(j, "memory-file", cli_json_text(i->memory_file));
        json_object_set_new(j, "page-server-pid", json_integer(i->page_server_pid));
    }
    json_object_set_new(j, "cache", cache_json(i->cache));
    if (i->record_ws_s)
        json_object_set_new(j, "record-ws", json_pack("{s:f,s:o}", "seconds", i->record_ws_s, "file",
                                                      cli_json_text(i->ws_file)));
    if (i->ws_ranges)
        json_object_set_new(j, "working-set", json_pack("{s:I,s:I,s:I}", "ranges", (json_int_t)i->ws_ranges, "pages",
                                                        (json_int_t)i->ws_pages, "bytes",
                                                        (json_int_t)(i->ws_pages * 4096)));
    if (i->ws_note)
        json_object_set_new(j, "ws-note", cli_json_text(i->ws_note));
    return j;
}

static void print_info(json_t *i, bool json, FILE *f)
{
    const char *trusted = json_string_value(json_object_get(i, "trusted"));
    if (trusted)
        fprintf(stderr, "vmsnap: %s\n", trusted);
    const char *notes[] = { "memory-note", "disks-note", "replay-notes", "ws-note" };
    for (size_t k = 0; k < VS_ARRAY_SIZE(notes); k++) {
        const char *note = json_string_value(json_object_get(i, notes[k]));
        if (note)
            fprintf(stderr, "vmsnap: note: %s\n", note);
    }
    if (json) {
        char *s = json_dumps(i, JSON_COMPACT);
        fprintf(f, "%s\n", s);
        free(s);
        fflush(f);
        return;
    }
    bool resumed = json_is_true(json_object_get(i, "resumed"));
    fprintf(f, "vm %s in %.3f s (QEMU start included)%s\n", resumed ? "resumed and running" : "booted",
            json_number_value(json_object_get(i, "start-to-running")),
            json_is_true(json_object_get(i, "lazy")) ? ", memory served on demand from the archive" : "");
    fprintf(f, "  qmp:      %s\n", json_string_value(json_object_get(i, "qmp")));
    fprintf(f, "  console:  %s\n", json_string_value(json_object_get(i, "console")));
    const char *ov = json_string_value(json_object_get(i, "overlay"));
    fprintf(f, "  overlay:  %s\n", ov ? ov : "temporary (removed when the VM ends)");
    fprintf(f, "  run dir:  %s\n", json_string_value(json_object_get(i, "rundir")));
    json_t *c = json_object_get(i, "cache");
    if (json_is_object(c))
        fprintf(f, "  cache:    %lld hits (%lld bytes), %lld bytes from the source until running\n",
                (long long)json_integer_value(json_object_get(c, "hits")),
                (long long)json_integer_value(json_object_get(c, "hit-bytes")),
                (long long)json_integer_value(json_object_get(c, "source-bytes")));
    size_t k;
    json_t *s;
    json_array_foreach(json_object_get(i, "signed-by"), k, s)
        fprintf(f, "  signed:   %s by key %s (%s)\n", json_string_value(json_object_get(s, "archive")),
                json_string_value(json_object_get(s, "key-id")), json_string_value(json_object_get(s, "key-file")));
    json_t *rec = json_object_get(i, "record-ws");
    if (rec)
        fprintf(f, "  working set: recording %g s once running, then written to %s\n",
                json_number_value(json_object_get(rec, "seconds")), json_string_value(json_object_get(rec, "file")));
    json_t *ws = json_object_get(i, "working-set");
    if (ws)
        fprintf(f, "  working set: %lld pages in %lld ranges, fetched first by the prefetch\n",
                (long long)json_integer_value(json_object_get(ws, "pages")),
                (long long)json_integer_value(json_object_get(ws, "ranges")));
    const char *genid = json_string_value(json_object_get(i, "generation-id"));
    if (genid)
        fprintf(f, "  vm generation id: %s (new at every boot and resume)\n", genid);
    json_t *macs = json_object_get(i, "macs");
    for (size_t m = 0; m < json_array_size(macs); m++)
        fprintf(f, "  nic %zu mac: %s (derived from clone id %s)\n", m, json_string_value(json_array_get(macs, m)),
                json_string_value(json_object_get(i, "clone-id")));
    fprintf(f, "  snapshot: vmsnap snap --qmp %s -o FILE.vmsnap\n", json_string_value(json_object_get(i, "qmp")));
    fprintf(f, "  stop:     vmsnap qmp %s quit   (or kill %lld)\n", json_string_value(json_object_get(i, "qmp")),
            (long long)json_integer_value(json_object_get(i, "qemu-pid")));
    fflush(f);
}

static void on_ready(void *opaque, const struct vm_host_info *info)
{
    struct boot_ui *ui = opaque;
    if (!info)
        return;   /* the error is reported by the caller */
    json_t *j = info_json(info);
    if (ui->signed_by)
        json_object_set(j, "signed-by", ui->signed_by);
    if (ui->detach) {
        char *s = json_dumps(j, JSON_COMPACT);
        dprintf(ui->fd, "OK %s\n", s);
        free(s);
        close(ui->fd);
        ui->fd = -1;
    } else {
        print_info(j, ui->json, ui->json ? stdout : stderr);
    }
    json_decref(j);
}

static void on_refused(void *opaque, const char *msg)
{
    struct boot_ui *ui = opaque;
    free(ui->refused);
    ui->refused = vs_xstrdup(msg);
}

static void on_log(void *opaque, const char *msg)
{
    (void)opaque;
    fprintf(stderr, "vmsnap: %s\n", msg);
}

static void on_signed(void *opaque, const char *archive, const char *key_id, const char *key_file)
{
    struct boot_ui *ui = opaque;
    json_array_append_new(ui->signed_by, json_pack("{s:o,s:s,s:o}", "archive", cli_json_text(archive), "key-id",
                                                   key_id, "key-file", cli_json_text(key_file)));
}

static int check_archive(void *opaque, struct arc *a, vs_err *e)
{
    struct boot_ui *ui = opaque;
    return cli_trust_check(ui->trust, a, e);
}

static int wrap_source(void *opaque, struct arc_source **src, vs_err *e)
{
    struct boot_ui *ui = opaque;
    return cli_trust_wrap(ui->trust, src, e);
}

/* The parent of a detached boot: wait for "OK {info}" or "ERR message" from the child. The info, or NULL and
 * the error in err. */
static json_t *wait_detached(int fd, pid_t child, char *err, size_t errlen)
{
    char buf[16384];
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len == sizeof buf - 1)
            break;
    }
    buf[len] = 0;
    close(fd);
    char *nl = strchr(buf, '\n');
    if (nl)
        *nl = 0;
    json_t *j = !strncmp(buf, "OK ", 3) ? json_loads(buf + 3, 0, NULL) : NULL;
    if (j)
        return j;
    int st;
    waitpid(child, &st, 0);
    snprintf(err, errlen, "%s", !strncmp(buf, "ERR ", 4) ? buf + 4
                                : "boot: the detached vmsnap process ended before the VM ran");
    return NULL;
}

/* Fork the detached boot host: in the parent *fd is the pipe its "OK"/"ERR" line comes on; the child never
 * returns. */
static int start_detached(struct vm_host_opts *ho, struct boot_ui *ui, pid_t *child, int *fd)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return cli_fail("pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return cli_fail("fork: %s", strerror(errno));
    if (pid > 0) {
        close(p[1]);
        *child = pid;
        *fd = p[0];
        return CLI_OK;
    }
    close(p[0]);
    ui->fd = p[1];
    setsid();
    int dn = open("/dev/null", O_RDWR);
    dup2(dn, 0);
    dup2(dn, 1);
    dup2(dn, 2);
    if (dn > 2)
        close(dn);
    ho->quiet_stdio = true;
    vs_err e = { 0 };
    int r = vm_host_run(ho, &e);
    if (ui->fd >= 0)   /* never became ready */
        dprintf(ui->fd, "ERR %s\n", ui->refused ? ui->refused : e.msg[0] ? e.msg : "boot failed");
    _exit(r < 0 ? CLI_FAIL : CLI_OK);
}

/* PATH with "{n}" replaced by the clone's index (--count). */
static char *clone_path(const char *path, unsigned i)
{
    if (!path)
        return NULL;
    const char *at = strstr(path, "{n}");
    return at ? vs_xasprintf("%.*s%u%s", (int)(at - path), path, i, at + 3) : vs_xstrdup(path);
}

/* --count N: N detached clones started at once; all run, or none is left running. */
static int boot_clones(struct vm_host_opts *ho, struct boot_ui *ui, unsigned count)
{
    double t0 = vs_now_s();
    VS_AUTOFREE pid_t *child = vs_xcalloc(count, sizeof *child);
    VS_AUTOFREE int *fd = vs_xcalloc(count, sizeof *fd);
    const char *qmp = ho->qmp, *console = ho->console, *overlay = ho->overlay;
    unsigned started = 0;
    int rc = CLI_OK;
    for (; started < count && rc == CLI_OK; started++) {
        VS_AUTOFREE char *q = clone_path(qmp, started), *c = clone_path(console, started),
                         *o = clone_path(overlay, started);
        ho->qmp = q;
        ho->console = c;
        ho->overlay = o;
        if ((rc = start_detached(ho, ui, &child[started], &fd[started])) != CLI_OK)
            break;
    }
    json_t *all = json_array();
    char err[16384] = "";
    for (unsigned i = 0; i < started; i++) {
        char one[16384];
        json_t *j = wait_detached(fd[i], child[i], one, sizeof one);
        if (j)
            json_array_append_new(all, j);
        else if (!err[0])
            snprintf(err, sizeof err, "clone %u: %.16000s", i, one);
    }
    if (err[0] || rc != CLI_OK) {
        /* The clones that run are stopped (SIGTERM: their boot hosts shut QEMU down and clean up). */
        for (size_t i = 0; i < json_array_size(all); i++)
            kill((pid_t)json_integer_value(json_object_get(json_array_get(all, i), "boot-pid")), SIGTERM);
        json_decref(all);
        return rc != CLI_OK ? rc : cli_fail("%s (the other clones were stopped)", err);
    }
    double dt = vs_now_s() - t0;
    if (ui->json) {
        json_t *out = json_pack("{s:o,s:f}", "clones", all, "all-running", dt);
        char *s = json_dumps(out, JSON_COMPACT);
        printf("%s\n", s);
        free(s);
        json_decref(out);
        return CLI_OK;
    }
    for (size_t i = 0; i < json_array_size(all); i++) {
        printf("clone %zu:\n", i);
        print_info(json_array_get(all, i), false, stdout);
    }
    printf("%u clones running in %.3f s (%.1f clones/s)\n", count, dt, count / dt);
    json_decref(all);
    return CLI_OK;
}

int cmd_boot(int argc, char **argv)
{
    static const struct option opts[] = {
        { "overlay", required_argument, NULL, 'o' }, { "ram", required_argument, NULL, 'm' },
        { "cpus", required_argument, NULL, 'c' },    { "qmp", required_argument, NULL, 'q' },
        { "console", required_argument, NULL, 'C' }, { "accel", required_argument, NULL, 'a' },
        { "detach", no_argument, NULL, 'd' },        { "json", no_argument, NULL, 'j' },
        { "eager", no_argument, NULL, 'E' },         { "prefetch", required_argument, NULL, 'P' },
        { "qemu", required_argument, NULL, 'Q' },        { "trust-archive", no_argument, NULL, 'T' },
        { "cache-size", required_argument, NULL, 'S' }, { "key", required_argument, NULL, 'K' },
        { "trusted-keys", required_argument, NULL, CLI_OPT_TRUSTED_KEYS },
        { "count", required_argument, NULL, 'N' },       { "keep-mac", no_argument, NULL, 'W' },
        { "record-ws", required_argument, NULL, 'R' },
        { NULL, 0, NULL, 0 },
    };
    /* Everything after "--" goes to QEMU untouched. */
    int nopt = argc;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--")) {
            nopt = i;
            break;
        }
    struct vm_host_opts ho = { .errlog_fd = -1 };
    struct boot_ui ui = { .fd = -1 };
    VS_AUTOFREE char *overlay = NULL, *qmp = NULL, *console = NULL, *archive = NULL;
    const char *accel = "auto", *keyfile = NULL, *trusted_keys = NULL;
    unsigned count = 0;   /* 0: no --count (one VM, foreground unless --detach) */
    optind = 1;
    int c;
    while ((c = getopt_long(nopt, argv, "o:m:c:q:C:a:dj", opts, NULL)) != -1) {
        switch (c) {
        case 'o': free(overlay); overlay = absolute(optarg); break;
        case 'm': {
            /* A plain number is MiB, as for QEMU's -m: scaled (without wrapping) before the 1 MiB minimum. */
            bool mib = strspn(optarg, "0123456789") == strlen(optarg);
            if (vs_parse_size(optarg, &ho.ram) < 0 || (mib && ho.ram > (UINT64_MAX >> 20)) ||
                (mib ? ho.ram << 20 : ho.ram) < (1u << 20))
                return cli_usage("boot", "--ram: expected a size like 256M or 1G, got '%s'", optarg);
            if (mib)
                ho.ram <<= 20;
            break;
        }
        case 'c': {
            char *end;
            unsigned long n = strtoul(optarg, &end, 10);
            if (*end || n == 0 || n > 1024)
                return cli_usage("boot", "--cpus: expected a number from 1 to 1024, got '%s'", optarg);
            ho.cpus = (unsigned)n;
            break;
        }
        case 'q': free(qmp); qmp = absolute(optarg); break;
        case 'C': free(console); console = absolute(optarg); break;
        case 'a':
            if (strcmp(optarg, "auto") && strcmp(optarg, "kvm") && strcmp(optarg, "tcg"))
                return cli_usage("boot", "--accel: expected auto, kvm or tcg, got '%s'", optarg);
            accel = optarg;
            break;
        case 'd': ui.detach = true; break;
        case 'j': ui.json = true; break;
        case 'E': ho.eager = true; break;
        case 'Q': ho.qemu = optarg; break;
        case 'T': ho.trust_archive = true; break;
        case 'K': keyfile = optarg; break;
        case CLI_OPT_TRUSTED_KEYS: trusted_keys = optarg; break;
        case 'W': ho.keep_mac = true; break;
        case 'R': {
            char *end;
            double secs = strtod(optarg, &end);
            if (*end || !optarg[0] || !(secs > 0 && secs <= 86400))
                return cli_usage("boot", "--record-ws: expected seconds from 0 to 86400 (not 0), got '%s'", optarg);
            ho.record_ws_s = secs;
            break;
        }
        case 'N': {
            char *end;
            unsigned long n = strtoul(optarg, &end, 10);
            if (*end || !optarg[0] || n == 0 || n > 1000)
                return cli_usage("boot", "--count: expected a number from 1 to 1000, got '%s'", optarg);
            count = (unsigned)n;
            break;
        }
        case 'P':
            if (strcmp(optarg, "none") && strcmp(optarg, "background") && strcmp(optarg, "all"))
                return cli_usage("boot", "--prefetch: expected none, background or all, got '%s'", optarg);
            ho.no_prefetch = !strcmp(optarg, "none");
            ho.prefetch_all = !strcmp(optarg, "all");
            break;
        case 'S': {
            uint64_t size;
            if (vs_parse_size(optarg, &size) < 0 || !size)
                return cli_usage("boot", "--cache-size: expected a size like 512M or 8G, got '%s'", optarg);
            /* Every archive handle of the process (the boot's, each disk's) reads the bound from there. */
            setenv("VMSNAP_CACHE_SIZE", optarg, 1);
            break;
        }
        default: return cli_usage("boot", "bad option");
        }
    }
    if (ho.record_ws_s && ho.eager)
        return cli_usage("boot", "--record-ws records what a lazily resumed VM reads: it cannot go with --eager");
    if (optind != nopt - 1)
        return cli_usage("boot", "expected one ARCHIVE (then optionally -- EXTRA-QEMU-ARGS)");
    archive = os_is_remote(argv[optind]) ? vs_xstrdup(argv[optind]) : absolute(argv[optind]);
    if (!os_is_remote(archive) && access(archive, R_OK) < 0)
        return cli_fail("archive %s: %s", archive, strerror(errno));
    struct cr_key key CR_KEY_AUTOWIPE = { 0 };
    vs_err ke = { 0 };
    if (cli_key(keyfile, CLI_KEY_ENV, &key, &ho.key, &ke) < 0)   /* before detaching: a bad key fails here */
        return cli_fail_err(&ke);
    if (count) {
        const char *paths[] = { qmp, console, overlay }, *names[] = { "--qmp", "--console", "--overlay" };
        for (int i = 0; i < 3; i++)
            if (count > 1 && paths[i] && !strstr(paths[i], "{n}"))
                return cli_usage("boot", "%s: with --count, a path containing {n} (replaced by the clone's index)",
                                 names[i]);
        ui.detach = true;
    }
    if (ui.detach && console && !strcmp(console, "stdio"))
        return cli_usage("boot", "--console stdio needs the foreground (no --detach)");
    vs_err e = { 0 };
    CLI_TRUST_AUTOCLEAR struct cli_trust trust = { 0 };
    if (cli_trust_load(trusted_keys, &trust, &e) < 0)
        return cli_fail_err(&e);
    ui.trust = &trust;
    trust.signed_by = on_signed;
    trust.opaque = &ui;
    CLI_JSON_AUTODECREF json_t *signed_by = ui.signed_by = trust.kr ? json_array() : NULL;
    ho.check_archive = check_archive;
    ho.wrap_source = wrap_source;
    ho.archive = archive;
    ho.overlay = overlay;
    ho.qmp = qmp;
    ho.console = console;
    ho.accel = accel;
    ho.extra = nopt < argc ? argv + nopt + 1 : NULL;
    ho.n_extra = nopt < argc ? (size_t)(argc - nopt - 1) : 0;
    ho.ready = on_ready;
    ho.log = on_log;
    ho.refused = on_refused;
    ho.opaque = &ui;
    if (count)
        return boot_clones(&ho, &ui, count);
    if (ui.detach) {
        pid_t child;
        int fd, rc = start_detached(&ho, &ui, &child, &fd);
        if (rc != CLI_OK)
            return rc;
        char err[16384];
        json_t *j = wait_detached(fd, child, err, sizeof err);
        if (!j)
            return cli_fail("%s", err);
        print_info(j, ui.json, stdout);
        json_decref(j);
        return CLI_OK;
    }
    int r = vm_host_run(&ho, &e);
    VS_AUTOFREE char *refused = ui.refused;
    if (r < 0 && refused)
        return cli_fail("%s", refused);
    return r < 0 ? cli_fail_err(&e) : CLI_OK;
}
