/* cli: helpers shared by the commands over src/qops (internal, dump, status, dirty-rate). */
#ifndef VMSNAP_CLI_QOPS_CLI_H
#define VMSNAP_CLI_QOPS_CLI_H

#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "qmp/qmp.h"
#include "qops/qops.h"

/* Connect to the user's --qmp socket; VMSNAP_QMP_DEBUG=1 logs the traffic to stderr. */
static inline int qops_cli_connect(const char *path, struct qmp **q, vs_err *e)
{
    const char *dbg = getenv("VMSNAP_QMP_DEBUG");
    struct qmp_opts o = { .debug = dbg && !strcmp(dbg, "1") };
    return qmp_connect(path, &o, q, e);
}

/* Print a JSON document as the one thing on stdout. */
static inline int qops_cli_print_json(json_t *doc)
{
    int r = json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
    fputc('\n', stdout);
    json_decref(doc);
    return r < 0 || fflush(stdout) ? cli_fail("writing JSON to stdout failed") : CLI_OK;
}

/* Add to doc how the operation left the VM's run state, with the keys and meanings of `snap --json`:
 * resumed-by (qemu, vmsnap or left-paused-as-found), state-before, state-after (query-status). */
static inline json_t *qops_cli_runstate_json(json_t *doc, const struct qops_runstate *rs)
{
    json_object_set_new(doc, "resumed-by", json_string(qmp_resumed_by_name(rs->resumed_by)));
    json_object_set_new(doc, "state-before", json_string(rs->status));
    json_object_set_new(doc, "state-after", json_string(rs->status_after));
    return doc;
}

/* Parse seconds ("1.5"); false if not a positive number. */
static inline bool qops_cli_seconds(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v > 0) || v > 1e9)
        return false;
    *out = v;
    return true;
}

#endif
