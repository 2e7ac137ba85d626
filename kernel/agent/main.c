/* runv guest agent: PID 1 of the VM.  Sets up the guest, finds the host's
 * virtio port and serves docs/protocol.md over it from one epoll loop. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dispatch.h"
#include "net.h"
#include "port.h"
#include "process.h"
#include "proto.h"
#include "util.h"

#define SHUTDOWN_WAIT_MS 3000

static long long deadline; /* when to power off after the init's EXIT; 0 = none */
static int sigfd = -1, sig_watched, port_watched, hung_up;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static void try_mount(const char *src, const char *dst, const char *type, unsigned long flags, const char *data)
{
    mkdir(dst, 0755);
    if (mount(src, dst, type, flags, data) < 0 && errno != EBUSY)
        logmsg("mount %s on %s: %s", type, dst, strerror(errno));
}

static void setup_guest(void)
{
    try_mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    try_mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    try_mount("cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    try_mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
    try_mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "ptmxmode=0666,mode=0620");
    try_mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
    /* Without /dev/console in the initramfs the kernel gave us no stdio. */
    if (fcntl(0, F_GETFD) < 0) {
        int fd = open("/dev/null", O_RDWR);
        if (fd > 0)
            dup2(fd, 0), close(fd);
    }
    for (int i = 1; i <= 2; i++) {
        if (fcntl(i, F_GETFD) < 0) {
            int fd = open("/dev/console", O_WRONLY | O_NOCTTY);
            if (fd >= 0 && fd != i)
                dup2(fd, i), close(fd);
        }
    }
    char cmdline[1024] = "";
    int fd = open("/proc/cmdline", O_RDONLY);
    if (fd >= 0) {
        ssize_t n = read(fd, cmdline, sizeof cmdline - 1);
        cmdline[n > 0 ? n : 0] = 0;
        close(fd);
    }
    debug = strstr(cmdline, "runv.debug") != NULL;
    if (strstr(cmdline, "runv.probe=1")) {
        /* The host is checking that the guest boots at all (accelerator probe, benchmark floor). */
        dprintf(2, "runv-probe-ok\n");
        reboot(RB_AUTOBOOT);
    }
    net_lo_up();
}

static int open_port(void)
{
    for (int tries = 0; tries < 1000; tries++) {
        DIR *d = opendir("/sys/class/virtio-ports");
        struct dirent *de;
        while (d && (de = readdir(d))) {
            char path[300], name[64] = "";
            if (de->d_name[0] == '.')
                continue;
            snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", de->d_name);
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd < 0)
                continue;
            ssize_t n = read(fd, name, sizeof name - 1);
            close(fd);
            name[n > 0 ? n : 0] = 0;
            name[strcspn(name, "\n")] = 0;
            if (strcmp(name, RUNV_PORT_NAME))
                continue;
            snprintf(path, sizeof path, "/dev/%s", de->d_name);
            fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
            if (fd >= 0) {
                closedir(d);
                return fd;
            }
        }
        if (d)
            closedir(d);
        usleep(10000);
    }
    power_off("virtio port " RUNV_PORT_NAME " not found");
}

/* Dispatches what the host sent, in a few reads at most so that a busy host
 * does not starve the containers' stdio; 0 if the host hung up. */
static int serve_host(void)
{
    struct frame f;
    for (int i = 0; i < 16; i++) {
        int rc = port_read();
        if (rc <= 0)
            return rc == 0;
        while (port_frame(&f))
            dispatch(&f);
    }
    return 1;
}

/* The port, SIGCHLD as a signalfd, and READY to the host. */
static void start_loop(void)
{
    sigset_t mask;
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (sigfd < 0 || epfd < 0)
        power_off("signalfd/epoll failed");
    port_init(open_port());
    ep_set(sigfd, KEY_SIGNALFD, EPOLLIN, &sig_watched);
    send_ready();
    ep_set(port_fd(), KEY_PORT, EPOLLIN, &port_watched);
    if (debug)
        logmsg("ready");
}

/* How long to wait: a while for a new host after a hang-up; and the VM powers
 * off a while after the init's EXIT if the host does not say SHUTDOWN. */
static int next_timeout(void)
{
    int timeout = hung_up ? 100 : -1;
    if (!deadline && proc_init_done())
        deadline = now_ms() + SHUTDOWN_WAIT_MS;
    if (deadline) {
        long long left = deadline - now_ms();
        if (left <= 0)
            power_off(debug ? "no SHUTDOWN from the host" : NULL);
        if (timeout < 0 || left < timeout)
            timeout = (int)left;
    }
    return timeout;
}

static void on_event(uint64_t key)
{
    if (key == KEY_PORT) {
        if (!serve_host()) {
            /* The host hung up: wait for a new one (it gets READY again). */
            if (debug)
                logmsg("host hung up");
            ep_set(port_fd(), KEY_PORT, 0, &port_watched);
            hung_up = 1;
        }
    } else if (key == KEY_SIGNALFD) {
        struct signalfd_siginfo si;
        while (read(sigfd, &si, sizeof si) > 0)
            ;
        proc_reap();
    } else if (key >= 256) {
        proc_io_event(key >> 8, key & 0xff);
    }
}

/* After a hang-up: a new host is there once the port stops saying POLLHUP. */
static void look_for_host(void)
{
    struct pollfd pfd = {.fd = port_fd(), .events = POLLIN};
    if (poll(&pfd, 1, 0) >= 0 && !(pfd.revents & POLLHUP)) {
        hung_up = 0;
        port_init(port_fd());
        send_ready();
        ep_set(port_fd(), KEY_PORT, EPOLLIN, &port_watched);
    }
}

int main(void)
{
    setup_guest();
    start_loop();
    for (;;) {
        struct epoll_event evs[32];
        int n = epoll_wait(epfd, evs, 32, next_timeout());
        if (n < 0 && errno != EINTR)
            power_off("epoll_wait failed");
        for (int i = 0; i < n; i++)
            on_event(evs[i].data.u64);
        if (hung_up)
            look_for_host();
    }
}
