/* The socket between the agent and a child it sets up (chan.h). */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "chan.h"

static int send_msg(int sock, const struct chanmsg *m, int fd)
{
    union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } c;
    struct iovec iov = {.iov_base = (void *)m, .iov_len = sizeof *m};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        mh.msg_control = c.buf;
        mh.msg_controllen = sizeof c.buf;
        struct cmsghdr *h = CMSG_FIRSTHDR(&mh);
        h->cmsg_level = SOL_SOCKET;
        h->cmsg_type = SCM_RIGHTS;
        h->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(h), &fd, sizeof fd);
    }
    return sendmsg(sock, &mh, MSG_NOSIGNAL) < 0 ? -1 : 0;
}

int chan_send(int sock, int kind, int pid, int fd)
{
    struct chanmsg m = {.kind = kind, .pid = pid};
    return send_msg(sock, &m, fd);
}

_Noreturn void chan_fail(int sock, const struct error *e)
{
    struct chanmsg m = {.kind = CH_ERROR, .err = *e};
    send_msg(sock, &m, -1);
    _exit(127);
}

int chan_recv(int sock, struct chanmsg *m, int *fd)
{
    union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } c;
    struct iovec iov = {.iov_base = m, .iov_len = sizeof *m};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf, .msg_controllen = sizeof c.buf};
    ssize_t n;
    memset(m, 0, sizeof *m);
    do
        n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    struct cmsghdr *h = n > 0 ? CMSG_FIRSTHDR(&mh) : NULL;
    if (h && h->cmsg_type == SCM_RIGHTS) {
        int got;
        memcpy(&got, CMSG_DATA(h), sizeof got);
        if (fd)
            *fd = got;
        else
            close(got);
    }
    m->err.msg[sizeof m->err.msg - 1] = 0;
    return (int)n;
}
