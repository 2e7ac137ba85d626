/* Frames on the virtio port to the host (port.h). */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "port.h"
#include "proto.h"
#include "util.h"

static int port = -1;
static uint8_t rbuf[2 * (RUNV_HEADER_SIZE + RUNV_MAX_PAYLOAD)];
static size_t rlen, roff; /* bytes in rbuf; of which handed out as frames */
static uint8_t sbuf[RUNV_HEADER_SIZE + RUNV_MAX_PAYLOAD];

void port_init(int fd) { port = fd; rlen = roff = 0; }
int port_fd(void) { return port; }

static int known_type(uint32_t t)
{
    return (t >= MSG_CREATE && t <= MSG_UPDATE) || (t >= MSG_READY && t <= MSG_EXIT) || t == MSG_ACK;
}

int port_read(void)
{
    /* What is left is less than a frame (port_frame took the whole ones): room for one more. */
    memmove(rbuf, rbuf + roff, rlen - roff);
    rlen -= roff;
    roff = 0;
    for (;;) {
        ssize_t n = read(port, rbuf + rlen, sizeof rbuf - rlen);
        if (n > 0) {
            rlen += n;
            return 1;
        }
        if (n == 0)
            return -1;
        if (errno == EAGAIN)
            return 0;
        if (errno != EINTR)
            power_off("reading the host port failed");
    }
}

int port_frame(struct frame *f)
{
    const uint8_t *h = rbuf + roff;
    if (rlen - roff < RUNV_HEADER_SIZE)
        return 0;
    f->type = get_u32(h), f->stream = get_u32(h + 4), f->len = get_u32(h + 8);
    if (f->len > RUNV_MAX_PAYLOAD || !known_type(f->type)) {
        logmsg("protocol error: frame type %u, %u bytes", f->type, f->len);
        power_off("protocol error");
    }
    if (rlen - roff < RUNV_HEADER_SIZE + f->len)
        return 0;
    f->data = h + RUNV_HEADER_SIZE;
    roff += RUNV_HEADER_SIZE + f->len;
    return 1;
}

void send_frame(uint32_t type, uint32_t stream, const void *data, size_t len)
{
    put_u32(sbuf, type);
    put_u32(sbuf + 4, stream);
    put_u32(sbuf + 8, len);
    if (len)
        memcpy(sbuf + RUNV_HEADER_SIZE, data, len);
    const uint8_t *q = sbuf;
    size_t n = RUNV_HEADER_SIZE + len;
    while (n) {
        ssize_t w = write(port, q, n);
        if (w > 0) {
            q += w, n -= w;
        } else if (w < 0 && errno == EAGAIN) {
            /* The host is slow or not connected (then poll says only POLLHUP). */
            struct pollfd pfd = {.fd = port, .events = POLLOUT};
            if (poll(&pfd, 1, 1000) > 0 && !(pfd.revents & POLLOUT))
                usleep(10000);
        } else if (w < 0 && errno != EINTR) {
            power_off("writing to the host port failed");
        }
    }
}

void send_ok(uint32_t stream, const void *data, size_t len) { send_frame(MSG_OK, stream, data, len); }

void send_ok_u32(uint32_t stream, uint32_t v)
{
    uint8_t b[4];
    put_u32(b, v);
    send_ok(stream, b, 4);
}

void send_error(uint32_t stream, const struct error *e)
{
    uint8_t b[4 + sizeof e->msg];
    size_t n = strnlen(e->msg, sizeof e->msg);
    put_u32(b, e->no);
    memcpy(b + 4, e->msg, n);
    if (debug)
        logmsg("stream %u: error %d: %s", stream, e->no, e->msg);
    send_frame(MSG_ERROR, stream, b, 4 + n);
}

void send_ready(void)
{
    static const char name[] = "runv-agent";
    uint8_t b[4 + sizeof name - 1];
    put_u32(b, RUNV_PROTO_VERSION);
    memcpy(b + 4, name, sizeof name - 1);
    send_frame(MSG_READY, 0, b, sizeof b);
}
