/* lvdisk: the XML documents vmsnap hands libvirt (domainbackup, domaincheckpoint). Disk and checkpoint names are
 * identifiers (checked when read); the one free-form value, the private directory's path, is escaped. */
#include "lvdisk/lvdisk-priv.h"

#include <string.h>

static void put_escaped(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '\'': fputs("&apos;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

char *lvd_backup_xml(const struct lvd_backup *b, const char *dir)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        VS_BUG("open_memstream");
    fputs("<domainbackup mode='pull'>\n  <server transport='unix' socket='", f);
    put_escaped(f, dir);
    fputs("/nbd.sock'/>\n  <disks>\n", f);
    for (size_t i = 0; i < b->n; i++) {
        const struct lvd_disk *k = &b->disks[i];
        if (!k->capture) {
            fprintf(f, "    <disk name='%s' backup='no'/>\n", k->name);
            continue;
        }
        fprintf(f, "    <disk name='%s' backup='yes' type='file' exportname='%s'", k->name, k->name);
        if (k->incremental)
            fprintf(f, " backupmode='incremental' incremental='%s' exportbitmap='backup-%s'", b->parent_checkpoint,
                    k->name);
        fputs(">\n      <driver type='qcow2'/>\n      <scratch file='", f);
        put_escaped(f, dir);
        fprintf(f, "/%s.scratch'/>\n    </disk>\n", k->name);
    }
    fputs("  </disks>\n</domainbackup>\n", f);
    fclose(f);
    return buf;
}

char *lvd_checkpoint_xml(const struct lvd_backup *b)
{
    bool any = false;
    for (size_t i = 0; i < b->n; i++)
        any |= b->disks[i].capture && b->disks[i].bitmap;
    if (!any || !b->checkpoint[0])
        return NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        VS_BUG("open_memstream");
    fprintf(f, "<domaincheckpoint>\n  <name>%s</name>\n  <disks>\n", b->checkpoint);
    for (size_t i = 0; i < b->n; i++) {
        const struct lvd_disk *k = &b->disks[i];
        fprintf(f, "    <disk name='%s' checkpoint='%s'/>\n", k->name, k->capture && k->bitmap ? "bitmap" : "no");
    }
    fputs("  </disks>\n</domaincheckpoint>\n", f);
    fclose(f);
    return buf;
}
