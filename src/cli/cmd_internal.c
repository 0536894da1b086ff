/* cli: "vmsnap internal save|load|delete|list" — QEMU's own (qcow2) snapshots, driven over QMP. */
#include "cli/qops-cli.h"

#include <getopt.h>

static void split_devices(char *list, const char ***out, size_t *n)
{
    *n = 0;
    *out = vs_xcalloc(strlen(list) / 2 + 2, sizeof **out);
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save))
        (*out)[(*n)++] = t;
}

static int do_list(struct qmp *q, bool json)
{
    vs_err e = { 0 };
    struct qops_nodes nodes __attribute__((cleanup(qops_nodes_free))) = { 0 };
    if (qops_nodes_query(q, &nodes, &e) < 0)
        return cli_fail_err(&e);
    if (json)
        return qops_cli_print_json(qops_nodes_json(&nodes));
    VS_AUTOFREE char *text = qops_nodes_text(&nodes);
    fputs(text, stdout);
    return CLI_OK;
}

int cmd_internal(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "qmp", required_argument, NULL, 'q' },     { "vmstate", required_argument, NULL, 'v' },
        { "devices", required_argument, NULL, 'd' }, { "hmp", no_argument, NULL, 'H' },
        { "timeout", required_argument, NULL, 't' }, { "json", no_argument, NULL, 'j' },
        { NULL, 0, NULL, 0 },
    };
    if (argc < 2)
        return cli_usage("internal", "internal needs a subcommand: save, load, delete or list");
    const char *sub = argv[1];
    enum qops_internal_op op;
    bool list = false;
    if (!strcmp(sub, "save"))
        op = QOPS_SAVE;
    else if (!strcmp(sub, "load"))
        op = QOPS_LOAD;
    else if (!strcmp(sub, "delete"))
        op = QOPS_DELETE;
    else if (!strcmp(sub, "list"))
        list = true, op = QOPS_SAVE;
    else
        return cli_usage("internal", "unknown internal subcommand '%s' (expected save, load, delete or list)", sub);

    const char *qmp_path = NULL;
    VS_AUTOFREE char *devlist = NULL;
    VS_AUTOFREE const char **devices = NULL;
    struct qops_internal_opts o = { 0 };
    bool json = false;
    int c;
    argc--, argv++;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'q': qmp_path = optarg; break;
        case 'v': o.vmstate = optarg; break;
        case 'd': free(devlist); devlist = vs_xstrdup(optarg); break;
        case 'H': o.force_hmp = true; break;
        case 'j': json = true; break;
        case 't':
            if (!qops_cli_seconds(optarg, &o.timeout_s))
                return cli_usage("internal", "--timeout needs a positive number of seconds, not '%s'", optarg);
            break;
        default: return cli_usage("internal", "bad option");
        }
    }
    if (!qmp_path)
        return cli_usage("internal", "internal %s needs --qmp PATH", sub);
    if (list && (optind != argc || o.vmstate || devlist || o.force_hmp))
        return cli_usage("internal", "internal list takes only --qmp and --json");
    if (!list && optind != argc - 1)
        return cli_usage("internal", "internal %s needs exactly one TAG", sub);
    if (op == QOPS_DELETE && o.vmstate)
        return cli_usage("internal", "internal delete takes no --vmstate");
    if (devlist) {
        split_devices(devlist, &devices, &o.n_devices);
        if (!o.n_devices)
            return cli_usage("internal", "--devices needs at least one node name");
        o.devices = devices;
    }

    vs_err e = { 0 };
    struct qmp *q QMP_AUTOCLOSE = NULL;
    if (qops_cli_connect(qmp_path, &q, &e) < 0)
        return cli_fail_err(&e);
    if (list)
        return do_list(q, json);

    const char *tag = argv[optind];
    struct qops_internal_result res;
    if (qops_internal(q, op, tag, &o, &res, &e) < 0)
        return cli_fail_err(&e);
    static const char *const done[] = { "saved", "loaded", "deleted" };
    if (json) {
        return qops_cli_print_json(qops_cli_runstate_json(json_pack("{s:s, s:s, s:s, s:I, s:s, s:f}", "op", sub,
            "tag", tag, "vmstate", res.vmstate, "devices", (json_int_t)res.n_devices, "method",
            res.used_hmp ? "hmp" : "job", "seconds", res.seconds), &res.run));
    }
    printf("%s internal snapshot '%s' on %zu disk%s%s%s%s in %.2f s%s\n", done[op], tag, res.n_devices,
           res.n_devices == 1 ? "" : "s", res.vmstate[0] ? " (VM state on node '" : "", res.vmstate,
           res.vmstate[0] ? "')" : "", res.seconds, res.used_hmp ? " via HMP" : "");
    return CLI_OK;
}
