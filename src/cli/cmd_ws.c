/* cli: "vmsnap ws save" — a recorded working set (boot --record-ws) stored with the snapshot it was recorded on:
 * a thin archive over the booted one, every stream of it by reference plus the stream "working-set". */
#include "cli/cli.h"
#include "crypt/crypt.h"
#include "memstore/memstore.h"
#include "vm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <string.h>

/* The run directory's recording, parsed. */
static int load_recording(const char *dir, struct mst_ws *ws, vs_err *e)
{
    VS_AUTOFREE char *path = vs_xasprintf("%s/%s", dir, VM_WS_FILE);
    VS_AUTOCLOSE int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT)
        return vs_err_set(e, ENOENT, "no working set recorded in %s (boot with --record-ws SECONDS: it is written "
                          "once they are over)", dir);
    if (fd < 0)
        return vs_err_sys(e, errno, "opening %s", path);
    VS_AUTOFREE uint8_t *buf = vs_xmalloc(MST_WS_MAX_BYTES + 1);
    ssize_t n = vs_read_full(fd, buf, MST_WS_MAX_BYTES + 1);
    if (n < 0)
        return vs_err_sys(e, (int)-n, "reading %s", path);
    if (n > MST_WS_MAX_BYTES)
        return vs_err_set(e, EFBIG, "%s is larger than a working set may be (%u bytes)", path, MST_WS_MAX_BYTES);
    int r = mst_ws_parse(buf, (size_t)n, ws, e);
    return r < 0 ? vs_err_prefix(e, "%s", path) : 0;
}

/* Every stream of the parent by reference (the config copied: only arc_writer_add writes one), none of its data
 * read; then the working set. */
static int write_child(struct arc *parent, struct arc_writer *w, const uint8_t *ws, size_t len, vs_err *e)
{
    for (unsigned i = 0; i < arc_stream_count(parent); i++) {
        struct arc_stream_info si;
        int r = arc_stream_get(parent, i, &si);
        if (r < 0 || si.kind == ARC_KIND_METADATA || !strcmp(si.name, MST_WS_STREAM))
            continue;
        if (si.kind == ARC_KIND_CONFIG) {
            VS_AUTOFREE char *buf = NULL;
            size_t n = 0;
            if ((r = arc_read_config(parent, &buf, &n, e)) < 0 || (r = arc_writer_add(w, si.kind, si.name, buf, n, e)) < 0)
                return r;
            continue;
        }
        if ((r = arc_writer_begin(w, si.kind, si.name, si.size, e)) < 0 || (r = arc_writer_end(w, e)) < 0)
            return r;
    }
    if (mst_is_paged(parent))
        arc_writer_holds_memory(w);   /* it references guest memory: 0600 like its parent */
    return arc_writer_add(w, ARC_KIND_OTHER, MST_WS_STREAM, ws, len, e);
}

static int ws_save(int argc, char **argv)
{
    static const struct option opts[] = {
        { "qmp", required_argument, NULL, 'q' }, { "output", required_argument, NULL, 'o' },
        { "key", required_argument, NULL, 'K' }, { "json", no_argument, NULL, 'j' },
        { "message", required_argument, NULL, 'm' }, { NULL, 0, NULL, 0 },
    };
    const char *qmp = NULL, *out = NULL, *keyfile = NULL, *message = NULL;
    bool json = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:m:", opts, NULL)) != -1) {
        switch (c) {
        case 'q': qmp = optarg; break;
        case 'o': out = optarg; break;
        case 'K': keyfile = optarg; break;
        case 'j': json = true; break;
        case 'm': message = optarg; break;
        default: return cli_usage("ws", "bad option");
        }
    }
    if (!out || (qmp ? optind != argc : optind != argc - 1))
        return cli_usage("ws", "expected ws save (--qmp PATH | RUNDIR) -o OUT.vmsnap");
    vs_err e = { 0 };
    struct vm_state st VM_STATE_AUTOFREE = { 0 };
    if (qmp) {
        int r = vm_state_find(qmp, &st, &e);
        if (r == -ENOENT)
            return cli_fail("%s is not the QMP socket of a VM started by 'vmsnap boot'", qmp);
        if (r < 0)
            return cli_fail_err(&e);
    } else if (vm_state_load(argv[optind], &st, &e) < 0) {
        return cli_fail("%s: not the run directory of a running 'vmsnap boot' (%s)", argv[optind], e.msg);
    }
    struct mst_ws ws MST_WS_AUTOFREE = { 0 };
    if (load_recording(st.dir, &ws, &e) < 0)
        return cli_fail_err(&e);
    struct cr_key key CR_KEY_AUTOWIPE = { 0 };
    const struct cr_key *kp = NULL;
    if (cli_key(keyfile, CLI_KEY_ENV, &key, &kp, &e) < 0)
        return cli_fail_err(&e);
    ARC_AUTOCLOSE struct arc *parent = NULL;
    struct arc_open_opts ao = { .key = kp };
    if (arc_open(st.archive, &ao, &parent, &e) < 0)
        return cli_fail_err(&e);
    if (mst_ws_check_archive(parent, &ws, &e) < 0)
        return cli_fail("the working set in %s does not fit archive %s: %s", st.dir, st.archive, e.msg);
    VS_AUTOFREE uint8_t *buf = NULL;
    size_t len = 0;
    if (mst_ws_encode(&ws, &buf, &len, &e) < 0)
        return cli_fail_err(&e);
    struct arc_writer_opts wo;
    arc_writer_opts_init(&wo);
    wo.parent = parent;
    wo.thin = true;   /* sealed with the parent's key when it is encrypted */
    wo.message = message;
    ARC_WRITER_AUTOABORT struct arc_writer *w = NULL;
    if (arc_writer_create(out, &wo, &w, &e) < 0 || write_child(parent, w, buf, len, &e) < 0 ||
        arc_writer_finish(VS_STEAL(w), &e) < 0)
        return cli_fail_err(&e);
    if (json) {
        json_t *j = json_pack("{s:o,s:o,s:I,s:I,s:I}", "output", cli_json_text(out), "parent",
                              cli_json_text(st.archive), "ranges", (json_int_t)ws.n, "pages", (json_int_t)ws.pages,
                              "bytes", (json_int_t)(ws.pages * MST_PAGE_SIZE));
        char *d = json_dumps(j, JSON_COMPACT);
        printf("%s\n", d);
        free(d);
        json_decref(j);
    } else {
        printf("%s: working set of %" PRIu64 " pages (%zu ranges) over %s\n", out, ws.pages, ws.n, st.archive);
    }
    return CLI_OK;
}

int cmd_ws(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage("ws", "expected a subcommand: save");
    if (!strcmp(argv[1], "save"))
        return ws_save(argc - 1, argv + 1);
    return cli_usage("ws", "unknown subcommand '%s' (expected save)", argv[1]);
}
