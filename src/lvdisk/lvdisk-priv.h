/* lvdisk: what its files share. */
#ifndef VMSNAP_LVDISK_PRIV_H
#define VMSNAP_LVDISK_PRIV_H

#include "lvdisk/lvdisk.h"

/* job.c: libvirt's API on the domain behind q (qmp_libvirt_domain). */
int lvd__domain_xml(struct qmp *q, char **xml, vs_err *e);
/* 1 if the domain has checkpoint name, 0 if not. */
int lvd__checkpoint_exists(struct qmp *q, const char *name, vs_err *e);

#endif
