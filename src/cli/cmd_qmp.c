/* cli: "vmsnap qmp SOCKET COMMAND [JSON-ARGUMENTS] [--timeout SECONDS]" — one QMP command, its
 * "return" value printed as JSON. VMSNAP_QMP_DEBUG=1 logs the traffic to stderr. */
#include "cli/cli.h"
#include "qmp/qmp.h"

#include <errno.h>
#include <getopt.h>
#include <string.h>

int cmd_qmp(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "timeout", required_argument, NULL, 't' },
        { NULL, 0, NULL, 0 },
    };
    struct qmp_opts opts = { 0 };
    const char *dbg = getenv("VMSNAP_QMP_DEBUG");
    opts.debug = dbg && *dbg && strcmp(dbg, "0");
    int c;
    while ((c = getopt_long(argc, argv, "t:", longopts, NULL)) != -1) {
        switch (c) {
        case 't': {
            char *end;
            errno = 0;
            opts.timeout_s = strtod(optarg, &end);
            if (errno || end == optarg || *end || !(opts.timeout_s > 0) || opts.timeout_s > 1e6)
                return cli_usage("qmp", "--timeout wants a positive number of seconds, not '%s'", optarg);
            break;
        }
        default:
            return cli_usage("qmp", "unknown option");
        }
    }
    int n = argc - optind;
    if (n < 2 || n > 3)
        return cli_usage("qmp", n < 2 ? "qmp needs a SOCKET and a COMMAND" : "qmp takes at most one JSON-ARGUMENTS");
    const char *sock = argv[optind], *cmd = argv[optind + 1];
    json_t *args = NULL;
    if (n == 3) {
        json_error_t jerr;
        args = json_loads(argv[optind + 2], 0, &jerr);
        if (!args)
            return cli_usage("qmp", "JSON-ARGUMENTS is not valid JSON: %s (column %d)", jerr.text, jerr.column);
        if (!json_is_object(args)) {
            json_decref(args);
            return cli_usage("qmp", "JSON-ARGUMENTS must be a JSON object, like '{\"key\": \"value\"}'");
        }
    }

    vs_err e = { 0 };
    QMP_AUTOCLOSE struct qmp *q = NULL;
    json_t *ret = NULL;
    int r = qmp_connect(sock, &opts, &q, &e);
    if (r == 0)
        r = qmp_execute(q, cmd, args, &ret, &e);
    json_decref(args);
    if (r == -EREMOTEIO)
        return cli_fail("qmp '%s': %s: %s", cmd, qmp_error_class(q), qmp_error_desc(q));
    if (r < 0)
        return cli_fail_err(&e);
    char *text = json_dumps(ret, JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
    json_decref(ret);
    if (!text)
        return cli_fail("qmp '%s': cannot print the reply", cmd);
    puts(text);
    free(text);
    if (fflush(stdout) != 0)
        return cli_fail("qmp: writing to stdout: %s", strerror(errno));
    return CLI_OK;
}
