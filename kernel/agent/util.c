/* What every layer of the agent uses (util.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

int debug, in_agent = 1, epfd = -1;

void logmsg(const char *fmt, ...)
{
    char buf[640];
    int n = snprintf(buf, sizeof buf, "runv-agent: ");
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(buf + n, sizeof buf - n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof buf - 2)
        n = sizeof buf - 2;
    buf[n++] = '\n';
    (void)!write(2, buf, n);
}

_Noreturn void power_off(const char *why)
{
    if (!in_agent)
        _exit(127);
    if (why)
        logmsg("%s; powering off", why);
    sync();
    reboot(RB_AUTOBOOT);
    _exit(1); /* the kernel panics, and panic=-1 reboots */
}

void ep_set(int fd, uint64_t key, uint32_t events, int *registered)
{
    struct epoll_event ev = {.events = events, .data.u64 = key};
    if (events && !*registered) {
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
            *registered = 1;
    } else if (events) {
        epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
    } else if (*registered) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, fd, &ev);
        *registered = 0;
    }
}

/* A FIFO fails with ENXIO instead of waiting for its other end. */
int open_regular(const char *path, int flags)
{
    struct stat st;
    int fd = open(path, flags | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return errno = ENXIO, -1;
    }
    return fd;
}

int write_file(const char *path, const char *value)
{
    int fd = open_regular(path, O_WRONLY | O_TRUNC | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, value, strlen(value));
    int saved = errno;
    close(fd);
    return n < 0 ? (errno = saved, -1) : 0;
}

/* Never opens what is there already (a FIFO, a device, a symlink): the mount
 * covers whatever it is, or fails. */
void make_mountpoint_file(const char *path, mode_t mode)
{
    int fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, mode);
    if (fd >= 0)
        close(fd);
}

int mkdir_p(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return errno = ENAMETOOLONG, -1;
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = 0;
            mkdir(buf, mode);
            *p = '/';
        }
    }
    return mkdir(buf, mode) < 0 && errno != EEXIST ? -1 : 0;
}
