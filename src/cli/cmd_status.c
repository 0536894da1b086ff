/* cli: "vmsnap status" — run state and migration progress, once or until the migration ends. */
#include "cli/qops-cli.h"

#include "vm/vm.h"

#include <getopt.h>
#include <signal.h>
#include <time.h>

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* A VM started by `vmsnap boot`: its working-set report (recording, prefetch) from its run directory. */
static void add_working_set(const char *path, json_t *doc)
{
    struct vm_state st VM_STATE_AUTOFREE = { 0 };
    if (vm_state_find(path, &st, NULL) < 0)
        return;
    VS_AUTOFREE char *report = vs_xasprintf("%s/%s", st.dir, VM_WS_REPORT);
    json_t *ws = json_load_file(report, 0, NULL);
    if (json_is_object(ws))
        json_object_set_new(doc, "working-set", ws);
    else
        json_decref(ws);
}

static void print_working_set(json_t *ws)
{
    json_t *rec = json_object_get(ws, "recorded"), *pf = json_object_get(ws, "prefetch");
    if (rec)
        printf("working set: %lld pages (%lld ranges) recorded in %s\n",
               (long long)json_integer_value(json_object_get(rec, "pages")),
               (long long)json_integer_value(json_object_get(rec, "ranges")),
               json_string_value(json_object_get(rec, "file")));
    if (pf)
        printf("working set: %lld bytes prefetched first, in %.3f s\n",
               (long long)json_integer_value(json_object_get(pf, "bytes")),
               json_number_value(json_object_get(pf, "seconds")));
    if (json_object_get(ws, "error"))
        printf("working set: %s\n", json_string_value(json_object_get(ws, "error")));
}

/* One poll: connect, query, disconnect — the user's socket is free between polls. */
static int poll_once(const char *path, json_t **doc, vs_err *e)
{
    struct qmp *q QMP_AUTOCLOSE = NULL;
    int r = qops_cli_connect(path, &q, e);
    if (r == 0 && (r = qops_status(q, doc, e)) == 0)
        add_working_set(path, *doc);
    return r;
}

static void sleep_s(double s)
{
    struct timespec ts = { .tv_sec = (time_t)s, .tv_nsec = (long)((s - (time_t)s) * 1e9) };
    nanosleep(&ts, NULL);   /* SIGINT cuts it short */
}

int cmd_status(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "qmp", required_argument, NULL, 'q' },      { "watch", no_argument, NULL, 'w' },
        { "interval", required_argument, NULL, 'i' }, { "json", no_argument, NULL, 'j' },
        { NULL, 0, NULL, 0 },
    };
    const char *qmp_path = NULL;
    bool watch = false, json = false;
    double interval = 1.0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'q': qmp_path = optarg; break;
        case 'w': watch = true; break;
        case 'j': json = true; break;
        case 'i':
            if (!qops_cli_seconds(optarg, &interval))
                return cli_usage("status", "--interval needs a positive number of seconds, not '%s'", optarg);
            break;
        default: return cli_usage("status", "bad option");
        }
    }
    if (optind != argc)
        return cli_usage("status", "unexpected argument '%s'", argv[optind]);
    if (!qmp_path)
        return cli_usage("status", "status needs --qmp PATH");

    vs_err e = { 0 };
    json_t *doc = NULL;
    if (poll_once(qmp_path, &doc, &e) < 0)
        return cli_fail_err(&e);
    if (!watch) {
        if (json)
            return qops_cli_print_json(doc);
        VS_AUTOFREE char *text = qops_status_text(doc);
        fputs(text, stdout);
        print_working_set(json_object_get(doc, "working-set"));
        json_decref(doc);
        return CLI_OK;
    }

    /* --watch: until the migration is no longer active, or Ctrl-C. With --json, one document at the end
     * holding the last state and every sample taken. */
    struct sigaction sa = { .sa_handler = on_sigint };
    sigaction(SIGINT, &sa, NULL);
    json_t *samples = json_array();
    double t0 = vs_now_s();
    for (;;) {
        json_t *m = json_object_get(doc, "migration");
        if (json) {
            json_t *s = json_pack("{s:f, s:s, s:s}", "time", vs_now_s() - t0, "status",
                                  json_string_value(json_object_get(doc, "status")), "migration",
                                  json_string_value(json_object_get(m, "status")));
            json_object_set(s, "transferred", json_object_get(m, "transferred"));
            json_object_set(s, "remaining", json_object_get(m, "remaining"));
            json_array_append_new(samples, s);
        } else {
            VS_AUTOFREE char *text = qops_status_text(doc);
            printf("--- %.1f s\n%s", vs_now_s() - t0, text);
            fflush(stdout);
        }
        if (!json_is_true(json_object_get(m, "active")) || interrupted)
            break;
        sleep_s(interval);
        if (interrupted)
            break;
        json_t *next = NULL;
        if (poll_once(qmp_path, &next, &e) < 0) {
            json_decref(doc);
            json_decref(samples);
            return cli_fail_err(&e);
        }
        json_decref(doc);
        doc = next;
    }
    if (json) {
        json_object_set_new(doc, "samples", samples);
        return qops_cli_print_json(doc);
    }
    json_decref(samples);
    json_decref(doc);
    return CLI_OK;
}
