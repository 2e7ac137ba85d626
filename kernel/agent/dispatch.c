/* One handler per host request. A request's handler sends its OK reply; when
 * it fails, dispatch sends ERROR with the errno and message it set. */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <string.h>

#include "cgroup.h"
#include "container.h"
#include "dispatch.h"
#include "net.h"
#include "port.h"
#include "process.h"
#include "proto.h"
#include "restore.h"
#include "spec.h"
#include "util.h"

static int parse_process(struct spec *s, const struct frame *f, struct error *e)
{
    if (spec_parse(s, f->data, f->len, e) < 0)
        return -1;
    return s->nargv ? 0 : err_setx(e, EINVAL, "process.args must not be empty");
}

/* A container and its init on the request's stream. The first one mounts the
 * shares (its rootfs, its binds', the pod's); a pod's next one has its root
 * on the pod share already. Undone on failure. */
static int create_ctr(struct spec *s, uint32_t stream, struct error *e)
{
    if (!s->root_dir && mount_shares(s, e) < 0)
        return -1;
    struct ctr *c = ctr_create(stream, s, e);
    if (!c) {
        if (!s->root_dir)
            umount_shares(s);
        return -1;
    }
    send_ok_u32(stream, c->init->pid);
    return 0;
}

static int check_create(const struct frame *f, struct spec *s, struct error *e)
{
    if (f->stream == 0)
        return err_setx(e, EINVAL, "CREATE on stream 0");
    if (proc_find(f->stream))
        return err_setx(e, EEXIST, "stream %u is in use", f->stream);
    if ((f->stream == INIT_STREAM) != !s->root_dir)
        return err_setx(e, EINVAL, f->stream == INIT_STREAM ? "the first container has no root directory"
                                                           : "a pod's next container needs a root directory");
    if (s->root_dir && !(s->nsflags & CLONE_NEWNS))
        return err_setx(e, EINVAL, "a pod's next container needs a mount namespace");
    return 0;
}

static int do_create(const struct frame *f, struct error *e)
{
    struct spec s = {0};
    int rc;

    if (f->stream != INIT_STREAM && !ctr_find(INIT_STREAM))
        return err_setx(e, EINVAL, "CREATE on stream %u: the first container's init is stream %u", f->stream, INIT_STREAM);
    if (ctr_find(f->stream))
        return err_setx(e, EEXIST, "the container has been created already");
    rc = parse_process(&s, f, e) < 0 || check_create(f, &s, e) < 0 ? -1 : create_ctr(&s, f->stream, e);
    spec_free(&s);
    return rc;
}

/* The container a request names by its init's stream, running. */
static struct ctr *running_ctr(uint32_t stream, struct error *e)
{
    struct ctr *c = ctr_find(stream);
    if (!c || !c->init || c->init->exited) {
        err_setx(e, ESRCH, "the container is not running");
        return NULL;
    }
    return c;
}

static int exec_in(struct ctr *c, struct spec *s, uint32_t stream, struct error *e)
{
    struct proc *pr = proc_new(stream);
    if (proc_exec(pr, c, s, e) < 0) {
        proc_remove(pr);
        return -1;
    }
    send_ok_u32(stream, pr->pid);
    return 0;
}

static int do_exec(const struct frame *f, struct error *e)
{
    struct spec s = {0};
    struct proc *pr = proc_find(f->stream);
    struct ctr *c;
    int rc = -1;

    if (f->stream <= INIT_STREAM)
        return err_setx(e, EINVAL, "EXEC on stream %u: streams 0 and %u are reserved", f->stream, INIT_STREAM);
    if (pr && (!pr->done || ctr_find(f->stream)))
        return err_setx(e, EEXIST, "stream %u is in use", f->stream);
    if (pr)
        proc_remove(pr);
    if (parse_process(&s, f, e) == 0 && (c = running_ctr(s.container ? s.container : INIT_STREAM, e)))
        rc = exec_in(c, &s, f->stream, e);
    spec_free(&s);
    return rc;
}

static int do_start(const struct frame *f, struct error *e)
{
    struct ctr *c = ctr_find(f->stream);
    if (!c || !c->init)
        return err_setx(e, ESRCH, "no container init on stream %u", f->stream);
    if (proc_start_init(c->init, e) < 0)
        return -1;
    send_ok(f->stream, NULL, 0);
    return 0;
}

/* SIGNAL with all: every process of the container whose init is on the stream. */
static int signal_all(uint32_t stream, int signo, struct error *e)
{
    static pid_t pids[16384];
    int n = container_pids(ctr_find(stream), pids, 16384), sent = 0;
    for (int i = 0; i < n; i++)
        sent += kill(pids[i], signo) == 0;
    return sent ? 0 : err_setx(e, ESRCH, "no processes in the container");
}

static int signal_one(uint32_t stream, int signo, struct error *e)
{
    struct proc *pr = proc_find(stream);
    if (!pr || pr->exited)
        return err_setx(e, ESRCH, "process %u is not running", stream);
    if (kill(pr->pid, signo) < 0)
        return err_set(e, errno, "kill %d with signal %d", pr->pid, signo);
    return 0;
}

static int do_signal(const struct frame *f, struct error *e)
{
    if (f->len < 8)
        return err_setx(e, EINVAL, "bad SIGNAL payload");
    int signo = get_u32(f->data), all = get_u32(f->data + 4);
    if ((all ? signal_all(f->stream, signo, e) : signal_one(f->stream, signo, e)) < 0)
        return -1;
    send_ok(f->stream, NULL, 0);
    return 0;
}

static int do_ps(const struct frame *f)
{
    static pid_t pids[RUNV_MAX_PAYLOAD / 4];
    static uint8_t out[RUNV_MAX_PAYLOAD];
    int n = container_pids(ctr_find(f->stream), pids, RUNV_MAX_PAYLOAD / 4);
    for (int i = 0; i < n; i++)
        put_u32(out + 4 * i, pids[i]);
    send_ok(f->stream, out, 4 * (size_t)n);
    return 0;
}

static int do_netif(const struct frame *f, struct error *e)
{
    if (net_configure(f->data, f->len, e) < 0)
        return -1;
    send_ok(f->stream, NULL, 0);
    return 0;
}

/* New limits for the container's cgroup (`runv update`): CGROUP records only. */
static int do_update(const struct frame *f, struct error *e)
{
    struct spec s = {0};
    struct ctr *c = running_ctr(f->stream, e);
    int rc;

    if (!c)
        return -1;
    rc = spec_parse(&s, f->data, f->len, e) < 0 ? -1 : cgroup_update(c->cgroup, &s, e);
    spec_free(&s);
    if (rc == 0)
        send_ok(f->stream, NULL, 0);
    return rc;
}

/* STDIN, WINSIZE and ACK: stdio of a process, no reply. */
static void do_stdio(const struct frame *f)
{
    struct proc *pr = proc_find(f->stream);
    const uint8_t *p = f->data;
    if (!pr)
        return;
    if (f->type == MSG_STDIN)
        io_stdin(&pr->io, p, f->len);
    else if (f->type == MSG_WINSIZE && f->len >= 4)
        io_winsize(&pr->io, p[0] | p[1] << 8, p[2] | p[3] << 8);
    else if (f->type == MSG_ACK && f->len >= 8)
        proc_ack(pr, get_u32(p), get_u32(p + 4));
}

void dispatch(const struct frame *f)
{
    struct error e = {0};
    int rc = 0;

    if (debug && f->type != MSG_STDIN && f->type != MSG_ACK)
        logmsg("request %u on stream %u (%u bytes)", f->type, f->stream, f->len);
    switch (f->type) {
    case MSG_CREATE: rc = do_create(f, &e); break;
    case MSG_EXEC: rc = do_exec(f, &e); break;
    case MSG_START: rc = do_start(f, &e); break;
    case MSG_SIGNAL: rc = do_signal(f, &e); break;
    case MSG_PS: rc = do_ps(f); break;
    case MSG_NETIF: rc = do_netif(f, &e); break;
    case MSG_UPDATE: rc = do_update(f, &e); break;
    case MSG_STDIN:
    case MSG_WINSIZE:
    case MSG_ACK: do_stdio(f); break;
    case MSG_HELLO: restore_hello(f->data, f->len); break;
    case MSG_SHUTDOWN: power_off(NULL);
    default: break; /* guest -> host types: nothing to do */
    }
    if (rc < 0)
        send_error(f->stream, &e);
}
