/* qops: private declarations shared by the files of the component (not for other components). */
#ifndef VMSNAP_QOPS_PRIV_H
#define VMSNAP_QOPS_PRIV_H

#include "qops/qops.h"

/* common.c */
void qops_strv_add(struct qops_strv *s, const char *x);
const char *qops_json_str(const json_t *o, const char *key, const char *dflt);
int64_t qops_json_int(const json_t *o, const char *key, int64_t dflt);
double qops_json_num(const json_t *o, const char *key, double dflt);
/* A job id unique to this process: "vmsnap-WHAT-PID-RANDOM" (malloc'd). */
char *qops_job_id(const char *what);
/* Non-empty, no control characters, at most 127 bytes (what names it in the message). */
int qops_check_text(const char *what, const char *s, vs_err *e);

struct qops_deadline {
    double end;   /* 0: none */
};
void qops_deadline_init(struct qops_deadline *d, double timeout_s);
double qops_deadline_slice(const struct qops_deadline *d, double slice);

static inline void qops_json_decrefp(json_t **j) { json_decref(*j); }
#define QOPS_JSON_AUTODECREF __attribute__((cleanup(qops_json_decrefp)))

#endif
