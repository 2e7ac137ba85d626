/* Frames on the virtio port to the host (proto.h has what they mean). */
#ifndef RUNV_PORT_H
#define RUNV_PORT_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

struct frame {
    uint32_t type, stream, len;
    const uint8_t *data; /* len bytes, valid until the next port_read */
};

void port_init(int fd);
int port_fd(void);
/* One read from the host: 1 if something came, 0 if nothing is there now, -1 if the host hung up. */
int port_read(void);
/* The next whole frame read so far: 1 and f, or 0. A malformed one powers the VM off. */
int port_frame(struct frame *f);

void send_frame(uint32_t type, uint32_t stream, const void *data, size_t len);
void send_ok(uint32_t stream, const void *data, size_t len);
void send_ok_u32(uint32_t stream, uint32_t v);
void send_error(uint32_t stream, const struct error *e);
void send_ready(void);

#endif
