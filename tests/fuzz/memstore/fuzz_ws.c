/* libFuzzer target: arbitrary bytes as a working-set record (docs/FORMAT.md, "Working set"), what boot reads from an
 * archive before its prefetch trusts the ranges. Checked: memory safety, and that a record that parses is within
 * its bounds and canonical: encoding it again gives exactly the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "memstore/memstore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mst_ws ws;
    if (mst_ws_parse(data, size, &ws, NULL) < 0)
        return 0;
    uint64_t pages = 0;
    for (size_t i = 0; i < ws.n; i++) {
        const struct mst_ws_entry *x = &ws.entries[i];
        if (x->stream >= ws.nstreams || x->off % MST_PAGE_SIZE || !x->pages ||
            x->off + (uint64_t)x->pages * MST_PAGE_SIZE > ws.streams[x->stream].size)
            abort();
        pages += x->pages;
    }
    uint8_t *again = NULL;
    size_t len = 0;
    if (pages != ws.pages || mst_ws_encode(&ws, &again, &len, NULL) < 0 || len != size || memcmp(again, data, size))
        abort();
    free(again);
    mst_ws_free(&ws);
    return 0;
}
