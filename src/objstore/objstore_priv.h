/* objstore internals shared by client.c (configuration, handles, one request with retries), object.c (reads)
 * and upload.c (multipart uploads). */
#ifndef VMSNAP_OBJSTORE_PRIV_H
#define VMSNAP_OBJSTORE_PRIV_H

#include "objstore/objstore.h"

#include <curl/curl.h>
#include <pthread.h>

struct os_client {
    enum os_scheme scheme;
    char *endpoint;            /* custom endpoint (path-style), without a trailing slash, or NULL */
    char *region;
    char *sigv4;               /* "aws:amz:REGION:s3", NULL for anonymous http(s) */
    struct os_creds creds;
    double deadline_s;         /* retries of one request stop after this */
    uint64_t max_rate;         /* bytes/s per upload transfer, 0: unlimited */
    pthread_mutex_t mu;        /* guards the pool */
    CURL **pool;               /* idle handles: each keeps its connection alive */
    size_t npool, cap;
};

/* One HTTP request and what came back. */
struct os_req {
    const char *method;        /* GET HEAD PUT POST DELETE */
    char *url;                 /* owned */
    char range[64];            /* "" or "bytes=A-B" */
    const char *if_match;      /* ETag or NULL */
    const void *body;          /* PUT/POST payload (may be empty, never chunked: RGW wants a length) */
    size_t body_len;
    bool has_body;
    void *out;                 /* a GET's payload goes here (out_cap bytes), else into small */
    size_t out_cap;
    /* results */
    CURL *h;
    long status;
    size_t out_len;
    bool overflow;             /* more bytes than expected */
    char etag[160];
    uint64_t content_length, range_total;
    bool have_length, have_total;
    char small[8192];          /* small replies and error bodies (truncated) */
    size_t small_len;
    struct curl_slist *hdrs;
    char errbuf[CURL_ERROR_SIZE];
};

CURL *os__handle_get(struct os_client *c);
void os__handle_put(struct os_client *c, CURL *h);
/* Set up q on handle h (reset first). */
void os__req_setup(struct os_client *c, struct os_req *q, CURL *h);
void os__req_clear(struct os_req *q);   /* headers list, url */
/* After a transfer: 0 success (2xx), 1 worth retrying (transport error, 5xx, 429, 408), or -errno with the
 * store's words in e. loc names the object in messages. */
int os__req_result(struct os_client *c, struct os_req *q, CURLcode cc, const char *loc, vs_err *e);
/* Perform once: os__req_result's answer. */
int os__req_once(struct os_client *c, struct os_req *q, const char *loc, vs_err *e);
/* Perform with retries and backoff until the client's deadline. */
int os__req_run(struct os_client *c, struct os_req *q, const char *loc, vs_err *e);
/* URL of the object at loc (s3:// through the endpoint, path-style; http(s):// as is), with query appended
 * ("" or "?a=b&c=d", parameters sorted and with '=': RGW does not canonicalise them for SigV4). */
char *os__url(struct os_client *c, const char *loc, const char *query, vs_err *e);
char *os__escape(const char *s, bool keep_slash);
/* The last transient failure's message, saying how many attempts were made since t0, how long they took and the
 * deadline; its code. */
int os__gave_up(struct os_client *c, vs_err *e, double t0, unsigned attempts);
/* Sleep before retry n (0-based): 50 ms doubling, at most 1 s. */
void os__backoff(unsigned n);

#endif
