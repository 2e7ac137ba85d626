/* A process's stdio: pipes or a pty in the guest, STDIN/STDOUT/STDERR frames
 * on the port, with the per-stream window of docs/protocol.md (procio.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "port.h"
#include "procio.h"
#include "proto.h"
#include "util.h"

void io_init(struct io *io, uint32_t stream)
{
    memset(io, 0, sizeof *io);
    io->stream = stream;
    io->out[0].fd = io->out[1].fd = io->in_fd = io->pty = -1;
}

static void nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

int io_pipes(struct io *io, int child[3], struct error *e)
{
    int fds[3][2];
    for (int i = 0; i < 3; i++) {
        if (pipe2(fds[i], O_CLOEXEC) < 0) {
            err_set(e, errno, "pipe");
            while (i--)
                close(fds[i][0]), close(fds[i][1]);
            return -1;
        }
    }
    child[0] = fds[0][0], io->in_fd = fds[0][1];
    child[1] = fds[1][1], io->out[0].fd = fds[1][0];
    child[2] = fds[2][1], io->out[1].fd = fds[2][0];
    nonblock(io->in_fd), nonblock(io->out[0].fd), nonblock(io->out[1].fd);
    return 0;
}

/* The master serves stdin and stdout through separate fds, so that epoll
 * can watch the two directions independently. */
void io_set_pty(struct io *io, int master)
{
    nonblock(master);
    io->pty = master;
    io->out[0].fd = fcntl(master, F_DUPFD_CLOEXEC, 3);
    io->in_fd = fcntl(master, F_DUPFD_CLOEXEC, 3);
    io->out[1].ended = 1; /* no stderr; its end of stream goes out at exit */
}

int pty_open(int *master, int *slave, char *path, size_t size, struct error *e)
{
    unsigned n, unlock = 0;
    int m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0)
        return err_set(e, errno, "open /dev/ptmx");
    if (ioctl(m, TIOCSPTLCK, &unlock) < 0 || ioctl(m, TIOCGPTN, &n) < 0) {
        err_set(e, errno, "unlock pty");
        close(m);
        return -1;
    }
    snprintf(path, size, "/dev/pts/%u", n);
    int s = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (s < 0)
        s = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (s < 0) {
        err_set(e, errno, "open %s", path);
        close(m);
        return -1;
    }
    *master = m, *slave = s;
    return 0;
}

static void send_ack(struct io *io, uint32_t which, size_t n)
{
    uint32_t b[2] = {which, (uint32_t)n};
    send_frame(MSG_ACK, io->stream, b, sizeof b);
}

static void out_end(struct io *io, int i)
{
    struct outstream *o = &io->out[i];
    o->ended = 1;
    if (o->fd >= 0) {
        ep_set(o->fd, 0, 0, &o->watched);
        close(o->fd);
        o->fd = -1;
    }
    if (!o->eos) {
        send_frame(MSG_STDOUT + i, io->stream, NULL, 0);
        o->eos = 1;
    }
}

/* Forwards output i while the window allows: one read, or (drain) until the pipe is empty. */
static void out_read(struct io *io, int i, int drain)
{
    static char buf[RUNV_MAX_PAYLOAD];
    struct outstream *o = &io->out[i];

    while (o->fd >= 0 && o->unacked < RUNV_WINDOW) {
        size_t want = RUNV_WINDOW - o->unacked;
        ssize_t n = read(o->fd, buf, want < sizeof buf ? want : sizeof buf);
        if (n > 0) {
            send_frame(MSG_STDOUT + i, io->stream, buf, n);
            o->unacked += n;
            if (!drain)
                break;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN && !drain) {
            break;
        } else {
            out_end(io, i); /* EOF, EIO from a pty without slave, or empty while draining */
        }
    }
    if (o->fd >= 0)
        ep_set(o->fd, KEY_IO(io->stream, i + 1), o->unacked < RUNV_WINDOW ? EPOLLIN : 0, &o->watched);
}

static void in_close(struct io *io)
{
    if (io->in_fd < 0)
        return;
    ep_set(io->in_fd, 0, 0, &io->in_watched);
    if (io->pty >= 0) {
        /* A pty has no end of input; a canonical-mode reader takes VEOF as one. */
        struct termios t;
        if (tcgetattr(io->pty, &t) == 0 && (t.c_lflag & ICANON))
            (void)!write(io->in_fd, &t.c_cc[VEOF], 1);
    }
    close(io->in_fd);
    io->in_fd = -1;
}

static void stdin_flush(struct io *io)
{
    while (io->inlen && io->in_fd >= 0) {
        ssize_t n = write(io->in_fd, io->inbuf, io->inlen);
        if (n > 0) {
            memmove(io->inbuf, io->inbuf + n, io->inlen - n);
            io->inlen -= n;
            send_ack(io, 0, n);
        } else if (n < 0 && errno == EAGAIN) {
            ep_set(io->in_fd, KEY_IO(io->stream, 0), EPOLLOUT, &io->in_watched);
            return;
        } else if (!(n < 0 && errno == EINTR)) {
            in_close(io); /* EPIPE: nobody reads any more */
        }
    }
    if (io->inlen) {
        send_ack(io, 0, io->inlen); /* dropped, but keep the host's window moving */
        io->inlen = 0;
    }
    if (io->in_fd >= 0)
        ep_set(io->in_fd, 0, 0, &io->in_watched);
    if (io->in_closing)
        in_close(io);
}

void io_stdin(struct io *io, const uint8_t *buf, size_t len)
{
    if (!len) {
        io->in_closing = 1;
    } else {
        if (io->inlen + len > io->incap) {
            size_t cap = io->incap ? io->incap : 65536;
            while (cap < io->inlen + len)
                cap *= 2;
            char *nb = realloc(io->inbuf, cap);
            if (!nb)
                power_off("out of memory");
            io->inbuf = nb, io->incap = cap;
        }
        memcpy(io->inbuf + io->inlen, buf, len);
        io->inlen += len;
    }
    if (!io->in_watched) /* else the next EPOLLOUT writes it */
        stdin_flush(io);
}

void io_start(struct io *io)
{
    for (int i = 0; i < 2; i++)
        if (io->out[i].fd >= 0)
            ep_set(io->out[i].fd, KEY_IO(io->stream, i + 1), EPOLLIN, &io->out[i].watched);
}

void io_event(struct io *io, int role)
{
    if (role == 0)
        stdin_flush(io);
    else if (role <= 2)
        out_read(io, role - 1, 0);
}

void io_ack(struct io *io, uint32_t which, uint32_t n)
{
    if (which < 1 || which > 2)
        return;
    struct outstream *o = &io->out[which - 1];
    o->unacked = n > o->unacked ? 0 : o->unacked - n;
    if (o->fd >= 0)
        ep_set(o->fd, KEY_IO(io->stream, which), EPOLLIN, &o->watched);
}

void io_winsize(struct io *io, uint16_t rows, uint16_t cols)
{
    struct winsize ws = {.ws_row = rows, .ws_col = cols};
    if (io->pty >= 0)
        ioctl(io->pty, TIOCSWINSZ, &ws);
}

int io_drain(struct io *io)
{
    for (int i = 0; i < 2; i++)
        if (!io->out[i].ended)
            out_read(io, i, 1);
    if (!io->out[0].ended || !io->out[1].ended)
        return 0;
    for (int i = 0; i < 2; i++)
        out_end(io, i);
    return 1;
}

void io_close(struct io *io)
{
    for (int i = 0; i < 2; i++) {
        if (io->out[i].fd >= 0) {
            ep_set(io->out[i].fd, 0, 0, &io->out[i].watched);
            close(io->out[i].fd);
            io->out[i].fd = -1;
        }
    }
    if (io->in_fd >= 0) {
        ep_set(io->in_fd, 0, 0, &io->in_watched);
        close(io->in_fd);
        io->in_fd = -1;
    }
    if (io->pty >= 0)
        close(io->pty), io->pty = -1;
    free(io->inbuf);
    io->inbuf = NULL;
    io->inlen = io->incap = 0;
}
