/* HELLO: a new host meets a guest restored from a template (docs/protocol.md).
 * The guest slept since the template was saved, and every VM restored from that
 * template starts with the same kernel random state: take the host's wall clock
 * and fresh entropy, then say READY again. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "port.h"
#include "restore.h"
#include "util.h"

/* <linux/random.h>, which musl does not ship */
#define RNDADDENTROPY 0x40085203 /* _IOW('R', 0x03, int[2]) */
#define RNDRESEEDCRNG 0x5207     /* _IO('R', 0x07) */
#define SEED_MAX 256

static void reseed(const uint8_t *p, uint32_t len)
{
    struct {
        int entropy_count, buf_size;
        uint8_t buf[SEED_MAX];
    } r;
    if (len > SEED_MAX)
        len = SEED_MAX;
    r.entropy_count = len * 8;
    r.buf_size = len;
    memcpy(r.buf, p, len);
    int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ioctl(fd, RNDADDENTROPY, &r) < 0 || ioctl(fd, RNDRESEEDCRNG) < 0)
        logmsg("reseeding the random pool: %s", strerror(errno));
    if (fd >= 0)
        close(fd);
}

void restore_hello(const uint8_t *p, uint32_t len)
{
    if (len >= 8) {
        uint64_t ns = get_u64(p);
        struct timespec ts = {.tv_sec = ns / 1000000000u, .tv_nsec = ns % 1000000000u};
        if (clock_settime(CLOCK_REALTIME, &ts) < 0)
            logmsg("setting the clock: %s", strerror(errno));
    }
    if (len > 8)
        reseed(p + 8, len - 8);
    send_ready();
}
