/* objstore: the client — endpoint, region and credentials by the AWS conventions, a pool of curl handles with
 * kept-alive connections, and one request with retries. */
#include "objstore/objstore_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#define CREDS_MAX (1u << 20)

static char *env_nonempty(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? vs_xstrdup(v) : NULL;
}

/* ~/.aws/credentials (or AWS_SHARED_CREDENTIALS_FILE), profile AWS_PROFILE or "default". A missing file is no
 * error; an unreadable or malformed one is. */
static int load_file_creds(struct os_creds *out, vs_err *e)
{
    const char *home = getenv("HOME");
    VS_AUTOFREE char *path = env_nonempty("AWS_SHARED_CREDENTIALS_FILE");
    if (!path && home)
        path = vs_xasprintf("%s/.aws/credentials", home);
    const char *profile = getenv("AWS_PROFILE") && *getenv("AWS_PROFILE") ? getenv("AWS_PROFILE") : "default";
    if (!path)
        return 0;
    VS_AUTOCLOSE int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : vs_err_sys(e, errno, "cannot read the credentials file '%s'", path);
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > CREDS_MAX)
        return vs_err_set(e, EINVAL, "credentials file '%s': expected a regular file under 1 MiB", path);
    VS_AUTOFREE char *buf = vs_xmalloc((size_t)st.st_size + 1);
    ssize_t n = vs_read_full(fd, buf, (size_t)st.st_size);
    if (n < 0)
        return vs_err_sys(e, (int)-n, "reading the credentials file '%s'", path);
    int r = os_parse_credentials(buf, (size_t)n, profile, path, out, e);
    memset(buf, 0, (size_t)n);
    if (r < 0)
        return r;
    if (getenv("AWS_PROFILE") && *getenv("AWS_PROFILE") && !out->access_key && !out->secret_key)
        return vs_err_set(e, ENOENT, "credentials file '%s' has no profile [%s] (AWS_PROFILE)", path, profile);
    return 0;
}

static int load_creds(struct os_client *c, vs_err *e)
{
    c->creds.access_key = env_nonempty("AWS_ACCESS_KEY_ID");
    c->creds.secret_key = env_nonempty("AWS_SECRET_ACCESS_KEY");
    if (c->creds.access_key || c->creds.secret_key) {
        if (!c->creds.access_key || !c->creds.secret_key)
            return vs_err_set(e, EINVAL, "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together");
        c->creds.session_token = env_nonempty("AWS_SESSION_TOKEN");
        return 0;
    }
    int r = load_file_creds(&c->creds, e);
    if (r < 0)
        return r;
    if (!c->creds.access_key || !c->creds.secret_key)
        return vs_err_set(e, ENOKEY, "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or both "
                          "keys in a profile of ~/.aws/credentials (AWS_PROFILE, default 'default')");
    return 0;
}

int os_client_new(const char *loc, struct os_client **out, vs_err *e)
{
    enum os_scheme sch = os_scheme_of(loc);
    if (sch == OS_LOCAL)
        return vs_err_set(e, EINVAL, "'%s' is not an s3:// or http(s):// location", loc);
    curl_global_init(CURL_GLOBAL_DEFAULT);   /* thread-safe and reference-counted in the curl we need */
    struct os_client *c = vs_xcalloc(1, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    c->scheme = sch;
    c->deadline_s = 30;
    const char *dl = getenv("VMSNAP_S3_DEADLINE");
    if (dl && *dl) {
        char *end;
        double v = strtod(dl, &end);
        if (*end || !(v >= 0 && v <= 86400)) {
            os_client_free(c);
            return vs_err_set(e, EINVAL, "VMSNAP_S3_DEADLINE='%s': expected seconds between 0 and 86400", dl);
        }
        c->deadline_s = v;
    }
    const char *mr = getenv("VMSNAP_S3_MAX_RATE");
    if (mr && *mr && vs_parse_size(mr, &c->max_rate) < 0) {
        os_client_free(c);
        return vs_err_set(e, EINVAL, "VMSNAP_S3_MAX_RATE='%s': expected bytes per second (K, M, G suffixes)", mr);
    }
    if (sch == OS_S3) {
        c->region = env_nonempty("AWS_REGION");
        if (!c->region)
            c->region = env_nonempty("AWS_DEFAULT_REGION");
        if (!c->region)
            c->region = vs_xstrdup("us-east-1");
        c->endpoint = env_nonempty("AWS_ENDPOINT_URL_S3");
        if (!c->endpoint)
            c->endpoint = env_nonempty("AWS_ENDPOINT_URL");
        if (c->endpoint) {
            if (os_scheme_of(c->endpoint) != OS_HTTP || strpbrk(c->endpoint, "?# ")) {
                int r = vs_err_set(e, EINVAL, "endpoint '%s' (AWS_ENDPOINT_URL[_S3]): expected http(s)://HOST[:PORT]",
                                   c->endpoint);
                os_client_free(c);
                return r;
            }
            size_t n = strlen(c->endpoint);
            while (n && c->endpoint[n - 1] == '/')
                c->endpoint[--n] = 0;
        }
        for (const char *p = c->region; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-')) {
                int r = vs_err_set(e, EINVAL, "region '%s': expected lowercase letters, digits and '-'", c->region);
                os_client_free(c);
                return r;
            }
        c->sigv4 = vs_xasprintf("aws:amz:%s:s3", c->region);
        int r = load_creds(c, e);
        if (r < 0) {
            os_client_free(c);
            return r;
        }
    }
    *out = c;
    return 0;
}

void os_client_free(struct os_client *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->npool; i++)
        curl_easy_cleanup(c->pool[i]);
    free(c->pool);
    pthread_mutex_destroy(&c->mu);
    os_creds_free(&c->creds);
    free(c->endpoint);
    free(c->region);
    free(c->sigv4);
    free(c);
}

CURL *os__handle_get(struct os_client *c)
{
    pthread_mutex_lock(&c->mu);
    CURL *h = c->npool ? c->pool[--c->npool] : NULL;
    pthread_mutex_unlock(&c->mu);
    if (!h && !(h = curl_easy_init()))
        abort();
    return h;
}

void os__handle_put(struct os_client *c, CURL *h)
{
    pthread_mutex_lock(&c->mu);
    if (c->npool < 16) {
        if (c->npool == c->cap) {
            c->cap = c->cap ? 2 * c->cap : 8;
            c->pool = vs_xrealloc(c->pool, c->cap * sizeof *c->pool);
        }
        c->pool[c->npool++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    if (h)
        curl_easy_cleanup(h);
}

char *os__escape(const char *s, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = vs_xmalloc(3 * strlen(s) + 1), *o = out;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
            *p == '_' || *p == '.' || *p == '~' || (keep_slash && *p == '/')) {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = 0;
    return out;
}

char *os__url(struct os_client *c, const char *loc, const char *query, vs_err *e)
{
    if (c->scheme == OS_HTTP)
        return vs_xstrdup(loc);
    VS_AUTOFREE char *bucket = NULL, *key = NULL;
    if (os_s3_split(loc, &bucket, &key, e) < 0)
        return NULL;
    VS_AUTOFREE char *ekey = os__escape(key, true);
    if (c->endpoint)
        return vs_xasprintf("%s/%s/%s%s", c->endpoint, bucket, ekey, query);
    if (strchr(bucket, '.'))   /* dotted names break the TLS wildcard of virtual-hosted style */
        return vs_xasprintf("https://s3.%s.amazonaws.com/%s/%s%s", c->region, bucket, ekey, query);
    return vs_xasprintf("https://%s.s3.%s.amazonaws.com/%s%s", bucket, c->region, ekey, query);
}

static size_t on_header(char *buf, size_t size, size_t n, void *opaque)
{
    struct os_req *q = opaque;
    size_t len = size * n;
    char line[512];
    size_t l = VS_MIN(len, sizeof line - 1);
    memcpy(line, buf, l);
    line[l] = 0;
    line[strcspn(line, "\r\n")] = 0;
    if (!strncasecmp(line, "HTTP/", 5)) {   /* a new response (after a redirect or 100): forget the last one */
        q->etag[0] = 0;
        q->have_length = q->have_total = false;
    } else if (!strncasecmp(line, "etag:", 5)) {
        const char *v = line + 5 + strspn(line + 5, " \t");
        snprintf(q->etag, sizeof q->etag, "%s", v);
    } else if (!strncasecmp(line, "content-length:", 15)) {
        char *end;
        q->content_length = strtoull(line + 15, &end, 10);
        q->have_length = end != line + 15;
    } else if (!strncasecmp(line, "content-range:", 14)) {
        const char *slash = strchr(line, '/');
        char *end;
        if (slash && slash[1] != '*') {
            q->range_total = strtoull(slash + 1, &end, 10);
            q->have_total = end != slash + 1 && !*end;
        }
    }
    return len;
}

static size_t on_data(char *buf, size_t size, size_t n, void *opaque)
{
    struct os_req *q = opaque;
    size_t len = size * n;
    long st = 0;
    curl_easy_getinfo(q->h, CURLINFO_RESPONSE_CODE, &st);
    if (q->out && st >= 200 && st < 300) {
        if (len > q->out_cap - q->out_len) {
            q->overflow = true;
            return 0;   /* more than asked for: stop */
        }
        memcpy((char *)q->out + q->out_len, buf, len);
        q->out_len += len;
        return len;
    }
    size_t k = VS_MIN(len, sizeof q->small - 1 - q->small_len);
    memcpy(q->small + q->small_len, buf, k);
    q->small_len += k;
    q->small[q->small_len] = 0;
    return len;   /* an error body or a small reply: the rest is dropped */
}

void os__req_clear(struct os_req *q)
{
    curl_slist_free_all(q->hdrs);
    q->hdrs = NULL;
}

void os__req_setup(struct os_client *c, struct os_req *q, CURL *h)
{
    curl_easy_reset(h);
    os__req_clear(q);
    q->h = h;
    q->status = 0;
    q->out_len = q->small_len = 0;
    q->small[0] = q->etag[0] = q->errbuf[0] = 0;
    q->overflow = q->have_length = q->have_total = false;
    curl_easy_setopt(h, CURLOPT_URL, q->url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500   /* 7.85: the string form; the bitmask is deprecated there */
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");   /* redirects too: never file:// or others */
#else
    curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);   /* a stalled store is a failure after 15 s */
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 15L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, q->errbuf);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, q);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, q);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "vmsnap/" VMSNAP_VERSION);
    if (getenv("VMSNAP_S3_TRACE"))   /* curl's own trace on stderr, for debugging a store */
        curl_easy_setopt(h, CURLOPT_VERBOSE, 1L);
    if (c->scheme == OS_HTTP)
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L), curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
    if (!strcmp(q->method, "HEAD"))
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    else if (strcmp(q->method, "GET"))
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, q->method);
    if (q->has_body) {
        /* a body of known length (RGW refuses chunked uploads with 411) */
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, q->body_len ? q->body : "");
        q->hdrs = curl_slist_append(q->hdrs, "Content-Type: application/octet-stream");
        if (c->max_rate)
            curl_easy_setopt(h, CURLOPT_MAX_SEND_SPEED_LARGE, (curl_off_t)c->max_rate);
    }
    if (q->range[0])
        curl_easy_setopt(h, CURLOPT_RANGE, q->range + 6);   /* past "bytes=" */
    if (q->if_match) {
        char hb[200];
        snprintf(hb, sizeof hb, "If-Match: %s", q->if_match);
        q->hdrs = curl_slist_append(q->hdrs, hb);
    }
    if (c->sigv4) {
        curl_easy_setopt(h, CURLOPT_AWS_SIGV4, c->sigv4);
        curl_easy_setopt(h, CURLOPT_USERNAME, c->creds.access_key);
        curl_easy_setopt(h, CURLOPT_PASSWORD, c->creds.secret_key);
        /* signed as such: RGW answers SignatureDoesNotMatch without it */
        q->hdrs = curl_slist_append(q->hdrs, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
        if (c->creds.session_token) {
            VS_AUTOFREE char *t = vs_xasprintf("x-amz-security-token: %s", c->creds.session_token);
            q->hdrs = curl_slist_append(q->hdrs, t);
        }
    }
    if (q->hdrs)
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, q->hdrs);
}

/* The store's own words: "Code: Message" from an S3 error body, or the first line of another body. */
static void store_words(const struct os_req *q, char *out, size_t cap)
{
    VS_AUTOFREE char *code = os_xml_text(q->small, q->small_len, "Code");
    VS_AUTOFREE char *msg = os_xml_text(q->small, q->small_len, "Message");
    if (code) {
        VS_AUTOFREE char *c = vs_text_escape(code), *m = msg && *msg ? vs_text_escape(msg) : NULL;
        snprintf(out, cap, "%s%s%s", c, m ? ": " : "", m ? m : "");
        return;
    }
    VS_AUTOFREE char *first = strndup(q->small, strcspn(q->small, "\r\n"));
    VS_AUTOFREE char *esc = first ? vs_text_escape(first) : NULL;
    snprintf(out, cap, "%.200s", esc && *esc ? esc : "(no explanation in the reply)");
}

int os__req_result(struct os_client *c, struct os_req *q, CURLcode cc, const char *loc, vs_err *e)
{
    curl_easy_getinfo(q->h, CURLINFO_RESPONSE_CODE, &q->status);
    if (cc == CURLE_WRITE_ERROR && q->overflow)
        return vs_err_set(e, EIO, "%s: the store sent more bytes than asked for (%s %s)", loc, q->method,
                          q->range[0] ? q->range : "");
    if (cc != CURLE_OK) {
        vs_err_set(e, EIO, "%s: no answer from the store (%s): %s", loc, c->endpoint ? c->endpoint : q->url,
                   q->errbuf[0] ? q->errbuf : curl_easy_strerror(cc));
        return 1;
    }
    if (q->status >= 200 && q->status < 300)
        return 0;
    char words[400];
    store_words(q, words, sizeof words);
    int code = q->status == 404 ? ENOENT : q->status == 403 || q->status == 401 ? EACCES
             : q->status == 412 ? ESTALE : EIO;
    if (!strcmp(q->method, "HEAD") && q->status == 404)
        vs_err_set(e, ENOENT, "%s: no such object (HTTP 404)", loc);
    else if (!strcmp(q->method, "HEAD") && (q->status == 403 || q->status == 401))
        vs_err_set(e, EACCES, "%s: access denied by the store (HTTP %ld): check the credentials and region", loc,
                   q->status);
    else
        vs_err_set(e, code, "%s: the store refused %s (HTTP %ld): %s", loc, q->method, q->status, words);
    return q->status >= 500 || q->status == 429 || q->status == 408 ? 1 : -code;
}

int os__gave_up(struct os_client *c, vs_err *e, double t0, unsigned attempts)
{
    char tail[128];
    int n = snprintf(tail, sizeof tail, " (gave up after %u attempts in %.1f s: deadline %g s, VMSNAP_S3_DEADLINE)",
                     attempts, vs_now_s() - t0, c->deadline_s);
    /* a message too long for both loses its end to the tail */
    if (e && n > 0 && (size_t)n < sizeof e->msg)
        snprintf(e->msg + VS_MIN(strlen(e->msg), sizeof e->msg - 1 - (size_t)n), (size_t)n + 1, "%s", tail);
    return e && e->code ? e->code : -EIO;
}

void os__backoff(unsigned n)
{
    double s = VS_MIN(0.05 * (double)(1u << VS_MIN(n, 10u)), 1.0);
    struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

int os__req_once(struct os_client *c, struct os_req *q, const char *loc, vs_err *e)
{
    CURL *h = os__handle_get(c);
    os__req_setup(c, q, h);
    CURLcode cc = curl_easy_perform(h);
    int r = os__req_result(c, q, cc, loc, e);
    os__req_clear(q);
    os__handle_put(c, h);
    q->h = NULL;
    return r;
}

int os__req_run(struct os_client *c, struct os_req *q, const char *loc, vs_err *e)
{
    double t0 = vs_now_s();
    for (unsigned n = 0;; n++) {
        int r = os__req_once(c, q, loc, e);
        if (r <= 0)
            return r;
        if (vs_now_s() - t0 >= c->deadline_s)
            return os__gave_up(c, e, t0, n + 1);
        os__backoff(n);
    }
}
