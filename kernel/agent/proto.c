/* Frames on the virtio port. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

/* ---- the port ---- */

static int port = -1;
static uint8_t rbuf[2 * (RUNV_HEADER_SIZE + RUNV_MAX_PAYLOAD)];
static size_t rlen;
static uint8_t sbuf[RUNV_HEADER_SIZE + RUNV_MAX_PAYLOAD];

void port_init(int fd) { port = fd; rlen = 0; }
int port_fd(void) { return port; }

static int known_type(uint32_t t)
{
    return (t >= MSG_CREATE && t <= MSG_HELLO) || (t >= MSG_READY && t <= MSG_EXIT) || t == MSG_ACK;
}

int port_read(void)
{
    for (int i = 0; i < 16; i++) {
        ssize_t n = read(port, rbuf + rlen, sizeof rbuf - rlen);
        if (n == 0)
            return 0;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return 1;
            power_off("reading the host port failed");
        }
        rlen += n;
        size_t off = 0;
        while (rlen - off >= RUNV_HEADER_SIZE) {
            uint32_t type = get_u32(rbuf + off), stream = get_u32(rbuf + off + 4), len = get_u32(rbuf + off + 8);
            if (len > RUNV_MAX_PAYLOAD || !known_type(type)) {
                logmsg("protocol error: frame type %u, %u bytes", type, len);
                power_off("protocol error");
            }
            if (rlen - off < RUNV_HEADER_SIZE + len)
                break;
            dispatch(type, stream, rbuf + off + RUNV_HEADER_SIZE, len);
            off += RUNV_HEADER_SIZE + len;
        }
        memmove(rbuf, rbuf + off, rlen - off);
        rlen -= off;
    }
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
