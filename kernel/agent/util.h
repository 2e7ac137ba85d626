/* What every layer of the agent uses: the log, powering off, epoll
 * registration, little-endian integers, and files that never block. */
#ifndef RUNV_UTIL_H
#define RUNV_UTIL_H

#include <stdint.h>
#include <sys/types.h>

/* ---- the log, and the end ---- */

extern int debug;    /* runv.debug on the kernel command line */
extern int in_agent; /* 0 in a child on its way to become a container process */

void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* In the agent: powers the VM off (why, if any, is logged). In a child: _exit(127). */
_Noreturn void power_off(const char *why);

/* ---- epoll ---- */

/* epoll keys: the agent's own are below 256; a process's fds use stream << 8 | role
 * (role: 0 stdin, 1 stdout, 2 stderr), and stream 0 is never a process's
 * (dispatch.c), so the two cannot meet. */
enum { KEY_PORT = 1, KEY_SIGNALFD = 2 };
#define KEY_IO(stream, role) ((uint64_t)(stream) << 8 | (role))

extern int epfd;
/* Watches fd for events under key (0 events: not at all); *registered tracks it. */
void ep_set(int fd, uint64_t key, uint32_t events, int *registered);

/* ---- little-endian integers ---- */

static inline uint32_t get_u32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static inline uint64_t get_u64(const uint8_t *p) { return get_u32(p) | (uint64_t)get_u32(p + 4) << 32; }
static inline void put_u32(uint8_t *p, uint32_t v) { p[0] = v, p[1] = v >> 8, p[2] = v >> 16, p[3] = v >> 24; }

/* ---- files (a container can put a FIFO where a file is expected) ---- */

/* Opens a regular file without ever blocking: anything else fails with ENXIO. */
int open_regular(const char *path, int flags);
/* Writes value to an existing regular file (0 or -1 and errno). */
int write_file(const char *path, const char *value);
/* Creates an empty file to mount on, never opening what is there already. */
void make_mountpoint_file(const char *path, mode_t mode);
/* mkdir -p (0 or -1 and errno). */
int mkdir_p(const char *path, mode_t mode);

#endif
