/* libFuzzer target: a whole NBD session (handshake, options, requests) read from the fuzz input, replies
 * thrown away. Also feeds every 28-byte window to the request decoder/validator on its own. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "nbd/internal.h"
#include "nbd/nbd.h"

#define DISK (1u << 20)

static struct nbd_server *srv;
static int null_fd;

static void init(void)
{
    char img[] = "/tmp/vmsnap-fuzz-nbd.XXXXXX";
    int fd = mkstemp(img);
    if (fd < 0 || ftruncate(fd, DISK) < 0 || vs_pwrite_full(fd, "some data", 9, 4096) < 0)
        abort();
    close(fd);
    struct nbd_base *b;
    struct nbd_overlay *o;
    if (nbd_base_open_raw(img, &b, NULL) < 0 || nbd_overlay_open(NULL, b, NBD_OVL_TEMP, &o, NULL) < 0)
        abort();
    unlink(img); /* the base keeps its descriptor */
    struct nbd_server_opts so = { .threads = 1 };
    if (nbd_server_new(o, &so, &srv, NULL) < 0)
        abort();
    null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!srv)
        init();
    struct nbd_caps caps = { .size = DISK, .eflags = 0x0fff, .structured = size & 1, .meta_allocation = size & 2 };
    for (size_t i = 0; i + 28 <= size; i += 28) {
        struct nbd_request rq;
        bool fatal;
        const char *why;
        if (nbd_request_decode(data + i, &rq) == 0)
            (void)nbd_request_check(&caps, &rq, &fatal, &why);
    }
    int in = memfd_create("fuzz-in", MFD_CLOEXEC);
    if (in < 0 || vs_write_full(in, data, size) < 0 || lseek(in, 0, SEEK_SET) != 0)
        abort();
    nbd_server_serve_fds(srv, in, null_fd, NULL);
    close(in);
    return 0;
}
