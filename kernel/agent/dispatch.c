/* One handler per host request. */
#include <errno.h>
#include <signal.h>
#include <string.h>

#include "agent.h"

static void reply(uint32_t stream, int rc, const struct error *e)
{
    if (rc < 0)
        send_error(stream, e);
    else
        send_ok(stream, NULL, 0);
}

static int check_args(const struct spec *s, struct error *e)
{
    return s->nargv ? 0 : err_setx(e, EINVAL, "process.args must not be empty");
}

static void do_create(uint32_t stream, const uint8_t *p, uint32_t len)
{
    struct error e = {0};
    struct spec s = {0};
    struct proc *pr;

    if (stream != INIT_STREAM) {
        err_setx(&e, EINVAL, "CREATE on stream %u: the container's init is stream %u", stream, INIT_STREAM);
        goto fail;
    }
    if (init_proc) {
        err_setx(&e, EEXIST, "the container has been created already");
        goto fail;
    }
    if (spec_parse(&s, p, len, &e) < 0 || check_args(&s, &e) < 0 || mount_shares(&s, &e) < 0)
        goto fail;
    pr = proc_new(stream);
    if (proc_create_init(pr, &s, &e) < 0) {
        proc_remove(pr);
        umount_shares(&s);
        cgroup_remove();
        goto fail;
    }
    container_seccomp_keep(&s);
    send_ok_u32(stream, pr->pid);
    spec_free(&s);
    return;
fail:
    spec_free(&s);
    send_error(stream, &e);
}

static void do_exec(uint32_t stream, const uint8_t *p, uint32_t len)
{
    struct error e = {0};
    struct spec s = {0};
    struct proc *pr = proc_find(stream), *init = init_proc;

    if (stream <= INIT_STREAM) {
        err_setx(&e, EINVAL, "EXEC on stream %u: streams 0 and %u are reserved", stream, INIT_STREAM);
        goto fail;
    }
    if (pr && (!pr->done || pr == init)) {
        err_setx(&e, EEXIST, "stream %u is in use", stream);
        goto fail;
    }
    if (pr)
        proc_remove(pr);
    if (!init || init->exited) {
        err_setx(&e, ESRCH, "the container is not running");
        goto fail;
    }
    if (spec_parse(&s, p, len, &e) < 0 || check_args(&s, &e) < 0)
        goto fail;
    pr = proc_new(stream);
    if (proc_exec(pr, init->pid, &s, &e) < 0) {
        proc_remove(pr);
        goto fail;
    }
    send_ok_u32(stream, pr->pid);
    spec_free(&s);
    return;
fail:
    spec_free(&s);
    send_error(stream, &e);
}

static int do_signal(uint32_t stream, const uint8_t *p, uint32_t len, struct error *e)
{
    if (len < 8)
        return err_setx(e, EINVAL, "bad SIGNAL payload");
    int signo = get_u32(p), all = get_u32(p + 4);
    if (all) {
        static pid_t pids[16384];
        int n = container_pids(pids, 16384), sent = 0;
        for (int i = 0; i < n; i++)
            sent += kill(pids[i], signo) == 0;
        return sent ? 0 : err_setx(e, ESRCH, "no processes in the container");
    }
    struct proc *pr = proc_find(stream);
    if (!pr || pr->exited)
        return err_setx(e, ESRCH, "process %u is not running", stream);
    if (kill(pr->pid, signo) < 0)
        return err_set(e, errno, "kill %d with signal %d", pr->pid, signo);
    return 0;
}

static void do_ps(uint32_t stream)
{
    static pid_t pids[RUNV_MAX_PAYLOAD / 4];
    static uint8_t out[RUNV_MAX_PAYLOAD];
    int n = container_pids(pids, RUNV_MAX_PAYLOAD / 4);
    for (int i = 0; i < n; i++) {
        uint32_t v = pids[i];
        memcpy(out + 4 * i, &v, 4); /* x86: already little-endian */
    }
    send_ok(stream, out, 4 * (size_t)n);
}

void dispatch(const struct frame *f)
{
    uint32_t type = f->type, stream = f->stream, len = f->len;
    const uint8_t *p = f->data;
    struct error e = {0};
    struct proc *pr = type != MSG_CREATE && type != MSG_EXEC ? proc_find(stream) : NULL;

    if (debug && type != MSG_STDIN && type != MSG_ACK)
        logmsg("request %u on stream %u (%u bytes)", type, stream, len);
    switch (type) {
    case MSG_CREATE: do_create(stream, p, len); break;
    case MSG_EXEC: do_exec(stream, p, len); break;
    case MSG_START:
        if (pr && pr != init_proc)
            pr = NULL;
        if (!pr)
            err_setx(&e, ESRCH, "no container init on stream %u", stream);
        reply(stream, pr ? proc_start_init(pr, &e) : -1, &e);
        break;
    case MSG_SIGNAL: reply(stream, do_signal(stream, p, len, &e), &e); break;
    case MSG_PS: do_ps(stream); break;
    case MSG_STDIN:
        if (pr)
            io_stdin(&pr->io, p, len);
        break;
    case MSG_WINSIZE:
        if (pr && len >= 4)
            io_winsize(&pr->io, p[0] | p[1] << 8, p[2] | p[3] << 8);
        break;
    case MSG_ACK:
        if (pr && len >= 8)
            proc_ack(pr, get_u32(p), get_u32(p + 4));
        break;
    case MSG_SHUTDOWN: power_off(NULL);
    case MSG_NETIF: reply(stream, net_configure(p, len, &e), &e); break;
    case MSG_HELLO: do_hello(p, len); break;
    default: break; /* guest -> host types: nothing to do */
    }
}
