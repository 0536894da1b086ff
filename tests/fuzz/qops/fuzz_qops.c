/* libFuzzer target: input is JSON [query-block reply, query-status reply, query-migrate reply] (any of them may be
 * missing or of the wrong type, as a misbehaving QEMU could send). Nothing may crash, leak or read out of bounds. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "qops/qops.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *in = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (!in)
        return 0;
    json_t *qb = json_is_array(in) ? json_array_get(in, 0) : in;

    struct qops_nodes nodes;
    qops_nodes_parse(qb, &nodes);
    json_decref(qops_nodes_json(&nodes));
    free(qops_nodes_text(&nodes));
    static const enum qops_internal_op ops[] = { QOPS_SAVE, QOPS_LOAD, QOPS_DELETE };
    for (size_t i = 0; i < 3; i++) {
        struct qops_internal_opts o = { 0 };
        const char *devs[1];
        if (nodes.n) {
            devs[0] = nodes.v[0].node;
            o.devices = i == 1 ? devs : NULL;
            o.n_devices = i == 1;
            o.vmstate = i == 2 ? nodes.v[nodes.n - 1].node : NULL;
        }
        struct qops_strv sel = { 0 };
        const char *vm;
        vs_err e;
        const char *tag = nodes.n && nodes.v[0].n_snaps ? nodes.v[0].snaps[0].tag : "t";
        qops_internal_plan(&nodes, "fuzz", ops[i], tag, &o, &sel, &vm, &e);
        qops_strv_free(&sel);
    }
    qops_nodes_free(&nodes);

    json_t *doc = qops_status_build(json_array_get(in, 1), json_array_get(in, 2));
    free(qops_status_text(doc));
    json_decref(doc);
    json_decref(in);
    return 0;
}
