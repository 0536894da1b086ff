/* libFuzzer target: arbitrary bytes as libvirt's live domain XML (virDomainGetXMLDesc), through the scanner that
 * finds the disks, then through the backup and checkpoint documents built from what it found. Checked: memory
 * safety, and that whatever the scanner accepts is a plain identifier (it ends up in XML vmsnap writes). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lvdisk/lvdisk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_ident(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    if (n == 0 || n == cap || s[0] == '-' ||
        strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != n)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *xml = vs_xmalloc(size + 1);   /* the scanner takes a C string, as libvirt returns it */
    memcpy(xml, data, size);
    xml[size] = 0;
    struct lvd_disk *d = NULL;
    size_t n = 0;
    vs_err e = { 0 };
    if (lvd_parse_domain_xml(xml, &d, &n, &e) < 0) {
        if (d || n || !e.msg[0])
            abort();
        free(xml);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        check_ident(d[i].name, sizeof d[i].name);
        check_ident(d[i].device, sizeof d[i].device);
        d[i].capture = !d[i].readonly;
        d[i].bitmap = d[i].incremental = i % 2 == 0;
    }
    struct lvd_backup b = { .n = n, .disks = d, .checkpoint = "vmsnap-c", .parent_checkpoint = "vmsnap-p" };
    free(lvd_backup_xml(&b, "/t"));
    free(lvd_checkpoint_xml(&b));
    free(d);
    free(xml);
    return 0;
}
