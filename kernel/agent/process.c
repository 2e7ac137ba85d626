/* The container's processes: the table, spawning them (the child's last steps
 * are exec.c's), reaping them and their EXIT (process.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgroup.h"
#include "chan.h"
#include "container.h"
#include "exec.h"
#include "port.h"
#include "process.h"
#include "proto.h"
#include "util.h"

static struct proc *procs;
static struct ctr *ctrs;

#define STALL_CHECK_MS 1000 /* how often collect() looks for a stopped child */

/* ---- the tables ---- */

struct ctr *ctr_find(uint32_t stream)
{
    struct ctr *c = ctrs;
    while (c && c->stream != stream)
        c = c->next;
    return c;
}

static struct ctr *ctr_of(struct proc *init)
{
    struct ctr *c = ctrs;
    while (c && c->init != init)
        c = c->next;
    return c;
}

struct proc *proc_find(uint32_t stream)
{
    struct proc *p = procs;
    while (p && p->stream != stream)
        p = p->next;
    return p;
}

struct proc *proc_new(uint32_t stream)
{
    struct proc *p = calloc(1, sizeof *p);
    if (!p)
        power_off("out of memory");
    p->stream = stream;
    p->chan = -1;
    io_init(&p->io, stream);
    p->next = procs;
    procs = p;
    return p;
}

void proc_remove(struct proc *p)
{
    struct proc **pp = &procs;
    while (*pp && *pp != p)
        pp = &(*pp)->next;
    if (*pp)
        *pp = p->next;
    io_close(&p->io);
    if (p->chan >= 0)
        close(p->chan);
    struct ctr *c = ctr_of(p);
    if (c)
        c->init = NULL;
    free(p);
}

static void close_fds(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

/* The socket to a new child, and its stdio pipes unless it gets a terminal. */
static int child_fds(struct proc *p, const struct spec *s, int sv[2], int stdio[3], struct error *e)
{
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return err_set(e, errno, "socketpair");
    if (!s->terminal && io_pipes(&p->io, stdio, e) < 0) {
        close_fds(sv, 2);
        return -1;
    }
    return 0;
}

/* After the fork, in the agent: the child's ends closed, the socket kept. */
static void keep_agent_ends(struct proc *p, int sv[2], int stdio[3])
{
    close(sv[1]);
    close_fds(stdio, 3);
    p->chan = sv[0];
}

/* What every child needs before it becomes a container process. */
static void child_common(int stdio[3])
{
    sigset_t none;
    in_agent = 0;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    if (stdio)
        for (int i = 0; i < 3; i++)
            dup2(stdio[i], i);
}

/* 1 if pid is stopped or traced (/proc/pid/stat's state T or t). */
static int is_stopped(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = pid > 0 ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    char *paren = strrchr(buf, ')');
    return paren && paren[1] == ' ' && (paren[2] == 'T' || paren[2] == 't');
}

/* The exec helper has sent its child's pid and only exits now. It is in the
 * container's cgroup: reap it before the child goes on (GO), so that the child
 * never sees it counted there (pids.current). */
static void release_exec(struct proc *p, pid_t helper)
{
    if (helper > 0) {
        kill(helper, SIGKILL);
        while (waitpid(helper, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    if (chan_send(p->chan, CH_GO, 0, -1) < 0)
        kill(p->pid, SIGKILL); /* it would wait for GO forever */
}

/* Reads the child's messages: its pid (EXEC), its pty, until READY (CREATE) or EOF.
 * The child (or the exec helper) is in the container's pid namespace before it
 * execs: the container may stop or trace it there, and then it would never write
 * again. A child found stopped before it is done is killed, and that is the error. */
static int collect(struct proc *p, pid_t helper, int until_ready, struct error *e)
{
    struct chanmsg m;
    int fd = -1, failed = 0;
    for (;;) {
        struct pollfd pfd = {.fd = p->chan, .events = POLLIN};
        if (poll(&pfd, 1, STALL_CHECK_MS) == 0) {
            if (is_stopped(p->pid) || is_stopped(helper)) {
                if (p->pid > 0)
                    kill(p->pid, SIGKILL);
                if (helper > 0)
                    kill(helper, SIGKILL);
                if (!failed)
                    failed = err_setx(e, EIO, "the process was stopped or traced before it ran (by the container?)");
            }
            continue;
        }
        int n = chan_recv(p->chan, &m, &fd);
        if (n <= 0)
            break;
        if (m.kind == CH_PID) {
            p->pid = m.pid;
            release_exec(p, helper);
            helper = 0; /* reaped: its pid may be anyone's now */
        }
        else if (m.kind == CH_PTY && fd >= 0 && p->io.pty < 0)
            io_set_pty(&p->io, fd), fd = -1;
        else if (m.kind == CH_ERROR && !failed)
            *e = m.err, failed = -1;
        else if (m.kind == CH_READY && until_ready)
            return failed;
        if (fd >= 0)
            close(fd), fd = -1;
    }
    if (!failed && until_ready)
        return err_setx(e, EIO, "the container's init exited during setup");
    return failed;
}

/* /proc/pid/uid_map and gid_map of a new user namespace, from the agent. */
static int write_id_maps(pid_t pid, struct spec *s, struct error *e)
{
    static const char *names[] = {"uid_map", "gid_map"};
    for (int k = 0; k < 2; k++) {
        char path[64], buf[4096];
        size_t n = 0;
        if (!s->nidmap[k])
            return err_setx(e, EINVAL, "a user namespace needs a %s", k ? "gid mapping" : "uid mapping");
        for (int i = 0; i < s->nidmap[k] && n < sizeof buf; i++) {
            uint32_t *m = s->idmap[k] + 3 * i;
            n += snprintf(buf + n, sizeof buf - n, "%u %u %u\n", m[0], m[1], m[2]);
        }
        if (n >= sizeof buf)
            return err_setx(e, E2BIG, "the %s is too long", names[k]);
        snprintf(path, sizeof path, "/proc/%d/%s", pid, names[k]);
        if (write_file(path, buf) < 0)
            return err_set(e, errno, "write %s", names[k]);
    }
    return 0;
}

/* ---- CREATE and START ---- */

static _Noreturn void init_child(struct spec *s, int chan, int stdio[3])
{
    struct error e = {0};
    struct chanmsg m;

    child_common(s->terminal ? NULL : stdio);
    setsid();
    /* wait for the agent: the user namespace mapped, the cgroup joined */
    if (chan_recv(chan, &m, NULL) <= 0 || m.kind != CH_GO)
        _exit(1);
    if (s->nsflags & CLONE_NEWUSER) { /* be the new user namespace's root */
        if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0) {
            err_set(&e, errno, "become root in the user namespace (is uid and gid 0 mapped?)");
            chan_fail(chan, &e);
        }
        setgroups(0, NULL);
    }
    /* a cgroup namespace is made now, so that its root is the container's cgroup */
    if ((s->nsflags & CLONE_NEWCGROUP) && unshare(CLONE_NEWCGROUP) < 0) {
        err_set(&e, errno, "unshare the cgroup namespace");
        chan_fail(chan, &e);
    }
    if (container_setup(s, &e) < 0 || (s->terminal && child_terminal(chan, 1, &e) < 0) || lookup_exe(s, &e) < 0)
        chan_fail(chan, &e);
    chan_send(chan, CH_READY, 0, -1);
    if (chan_recv(chan, &m, NULL) <= 0 || m.kind != CH_START)
        _exit(1);
    exec_process(s, chan);
}

/* Before GO, from the agent: a new user namespace's id maps and the limits
 * that need privileges outside it; the container's cgroup. */
static int prepare_init(pid_t pid, struct ctr *c, struct spec *s, struct error *e)
{
    if ((s->nsflags & CLONE_NEWUSER) && (write_id_maps(pid, s, e) < 0 || apply_limits(pid, s, e) < 0))
        return -1;
    return cgroup_enter(c->cgroup, pid, e);
}

/* A pod's next container: a helper joins the namespaces of the pod's first
 * init, then clones the init as the agent's child (CLONE_PARENT) in the new
 * ones; the helper sends its pid and is reaped. */
static pid_t spawn_in_pod(struct proc *p, struct spec *s, int sv[2], int stdio[3], struct error *e)
{
    static const struct { int flag; const char *name; } joins[] = {
        {CLONE_NEWUSER, "user"}, {CLONE_NEWIPC, "ipc"}, {CLONE_NEWUTS, "uts"}, {CLONE_NEWNET, "net"},
        {CLONE_NEWPID, "pid"}, {CLONE_NEWCGROUP, "cgroup"},
    };
    struct ctr *pod = ctr_find(INIT_STREAM);
    struct chanmsg m;
    int fd = -1;

    if (!pod || !pod->init || pod->init->exited)
        return err_setx(e, ESRCH, "the pod's first container is not running");
    pid_t helper = fork();
    if (helper == 0) {
        struct error ce = {0};
        close(sv[0]);
        for (size_t i = 0; i < sizeof joins / sizeof *joins; i++) {
            char path[64];
            if (!(s->joinflags & joins[i].flag))
                continue;
            snprintf(path, sizeof path, "/proc/%d/ns/%s", pod->init->pid, joins[i].name);
            int ns = open(path, O_RDONLY | O_CLOEXEC);
            if (ns < 0 || setns(ns, joins[i].flag) < 0) {
                err_set(&ce, errno, "join the pod's %s namespace", joins[i].name);
                chan_fail(sv[1], &ce);
            }
            close(ns);
        }
        pid_t pid = syscall(SYS_clone, CLONE_PARENT | (unsigned long)(s->nsflags & ~CLONE_NEWCGROUP) | SIGCHLD, 0, 0, 0, 0);
        if (pid == 0)
            init_child(s, sv[1], stdio);
        if (pid < 0) {
            err_set(&ce, errno, "clone the container's init (flags %#x)", s->nsflags);
            chan_fail(sv[1], &ce);
        }
        chan_send(sv[1], CH_PID, pid, -1);
        _exit(0);
    }
    int saved = errno;
    keep_agent_ends(p, sv, stdio);
    if (helper < 0)
        return err_set(e, saved, "fork");
    int n = chan_recv(p->chan, &m, &fd);
    if (fd >= 0)
        close(fd);
    while (waitpid(helper, NULL, 0) < 0 && errno == EINTR)
        ;
    if (n > 0 && m.kind == CH_ERROR)
        return *e = m.err, -1;
    if (n <= 0 || m.kind != CH_PID)
        return err_setx(e, EIO, "the helper that creates the container died");
    return m.pid;
}

static int create_init(struct proc *p, struct ctr *c, struct spec *s, struct error *e)
{
    int sv[2], stdio[3] = {-1, -1, -1};
    char path[64];
    pid_t pid;

    if (child_fds(p, s, sv, stdio, e) < 0)
        return -1;
    if (cgroup_prepare(c->cgroup, s, e) < 0) {
        close_fds(sv, 2), close_fds(stdio, 3);
        return -1;
    }
    if (s->root_dir) {
        if ((pid = spawn_in_pod(p, s, sv, stdio, e)) < 0)
            return -1;
    } else {
        /* fork semantics (no new stack), with the namespaces created on the way
         * (but the cgroup namespace: the child makes it once in its cgroup) */
        pid = syscall(SYS_clone, (unsigned long)(s->nsflags & ~CLONE_NEWCGROUP) | SIGCHLD, 0, 0, 0, 0);
        if (pid == 0) {
            close(sv[0]);
            init_child(s, sv[1], stdio);
        }
        int saved = errno;
        keep_agent_ends(p, sv, stdio);
        if (pid < 0)
            return err_set(e, saved, "clone the container's init (flags %#x)", s->nsflags);
    }
    p->pid = pid;
    if (prepare_init(pid, c, s, e) < 0) {
        kill(pid, SIGKILL);
        return -1; /* the child is reaped as an unknown pid */
    }
    chan_send(p->chan, CH_GO, 0, -1);
    if (collect(p, 0, 1, e) < 0)
        return -1;
    snprintf(path, sizeof path, "/proc/%d/ns/mnt", pid);
    if (stat(path, &c->mntns) < 0)
        return err_set(e, errno, "stat %s", path);
    return 0;
}

struct ctr *ctr_create(uint32_t stream, struct spec *s, struct error *e)
{
    struct ctr *c = calloc(1, sizeof *c);
    if (!c)
        power_off("out of memory");
    c->stream = stream;
    cgroup_dir(stream, c->cgroup, sizeof c->cgroup);
    struct proc *p = proc_new(stream);
    if (create_init(p, c, s, e) < 0) {
        proc_remove(p);
        cgroup_remove(c->cgroup);
        free(c);
        return NULL;
    }
    if (s->seccomp && (c->seccomp = malloc(s->seccomp_len))) {
        memcpy(c->seccomp, s->seccomp, s->seccomp_len);
        c->seccomp_len = s->seccomp_len;
        c->seccomp_flags = s->seccomp_flags;
    }
    c->init = p;
    c->next = ctrs;
    ctrs = c;
    io_start(&p->io);
    return c;
}

int proc_start_init(struct proc *p, struct error *e)
{
    if (p->chan < 0)
        return err_setx(e, EINVAL, "the container has been started already");
    if (p->exited || chan_send(p->chan, CH_START, 0, -1) < 0)
        return err_setx(e, ESRCH, "the container's init has exited");
    int rc = collect(p, 0, 0, e);
    close(p->chan);
    p->chan = -1;
    return rc;
}

/* ---- EXEC ---- */

/* Joins the namespaces and the root of the container's init. */
static int enter_container(pid_t init, struct error *e)
{
    /* user first: the others belong to it when it is new; mnt last */
    static const char *ns[] = {"user", "ipc", "uts", "net", "pid", "cgroup", "mnt"};
    enum { NNS = sizeof ns / sizeof *ns };
    int fds[NNS], root;
    char path[64];

    for (int i = 0; i < NNS; i++) {
        struct stat mine, theirs;
        snprintf(path, sizeof path, "/proc/%d/ns/%s", init, ns[i]);
        if ((fds[i] = open(path, O_RDONLY | O_CLOEXEC)) < 0)
            return errno == ENOENT ? err_setx(e, ESRCH, "the container's init has exited") : err_set(e, errno, "open %s", path);
        snprintf(path, sizeof path, "/proc/self/ns/%s", ns[i]);
        if (fstat(fds[i], &theirs) == 0 && stat(path, &mine) == 0 && mine.st_ino == theirs.st_ino)
            close(fds[i]), fds[i] = -1;
    }
    snprintf(path, sizeof path, "/proc/%d/root", init);
    if ((root = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return err_set(e, errno, "open %s", path);
    for (int i = 0; i < NNS; i++)
        if (fds[i] >= 0 && setns(fds[i], 0) < 0)
            return err_set(e, errno, "join the container's %s namespace", ns[i]);
    if (fchdir(root) < 0 || chroot(".") < 0 || chdir("/") < 0)
        return err_set(e, errno, "enter the container's root");
    return 0;
}

static _Noreturn void exec_child(pid_t init, struct spec *s, int chan, int stdio[3])
{
    struct error e = {0};

    child_common(s->terminal ? NULL : stdio);
    /* limits and cgroup while still privileged */
    if (apply_limits(0, s, &e) < 0 || cgroup_join(init, &e) < 0 || enter_container(init, &e) < 0)
        chan_fail(chan, &e);
    /* A new pid namespace takes effect for children only: fork once more,
     * as a child of the agent, so that the agent reaps it. */
    pid_t pid = syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
    if (pid < 0) {
        err_set(&e, errno, "fork in the container");
        chan_fail(chan, &e);
    }
    if (pid > 0) {
        chan_send(chan, CH_PID, pid, -1);
        _exit(0);
    }
    struct chanmsg m;
    if (chan_recv(chan, &m, NULL) <= 0 || m.kind != CH_GO)
        _exit(1);
    setsid();
    if ((s->terminal && child_terminal(chan, 0, &e) < 0) || lookup_exe(s, &e) < 0)
        chan_fail(chan, &e);
    exec_process(s, chan);
}

/* The container's seccomp filter, from CREATE, goes to exec'd processes too, as in runc. */
int proc_exec(struct proc *p, struct ctr *c, struct spec *s, struct error *e)
{
    int sv[2], stdio[3] = {-1, -1, -1};
    pid_t init = c->init->pid;

    if (!s->seccomp && c->seccomp) {
        s->seccomp = c->seccomp;
        s->seccomp_len = c->seccomp_len;
        s->seccomp_flags = c->seccomp_flags;
    }
    if (child_fds(p, s, sv, stdio, e) < 0)
        return -1;
    pid_t helper = fork();
    if (helper == 0) {
        close(sv[0]);
        exec_child(init, s, sv[1], stdio);
    }
    int saved = errno;
    keep_agent_ends(p, sv, stdio);
    if (helper < 0)
        return err_set(e, saved, "fork");
    int rc = collect(p, helper, 0, e);
    close(p->chan);
    p->chan = -1;
    if (rc < 0)
        return -1;
    if (!p->pid)
        return err_setx(e, EIO, "the exec helper died");
    io_start(&p->io);
    return 0;
}

/* ---- exit ---- */

/* Once EXIT is sent an EXEC's process is gone from the table (its stream may be
 * used again); the init's stays, for START and SIGNAL to answer ESRCH. Callers
 * must not touch p after this. */
static void proc_finish(struct proc *p)
{
    if (!p->exited || p->done || !io_drain(&p->io))
        return;
    int32_t status = p->status;
    send_frame(MSG_EXIT, p->stream, &status, 4);
    p->done = 1;
    io_close(&p->io);
    if (debug)
        logmsg("stream %u: pid %d exited with status %#x", p->stream, p->pid, p->status);
    if (!ctr_of(p))
        proc_remove(p); /* the host learnt all there is: an EXEC's slot is freed */
}

/* The host took output: an exited process may be done now. */
void proc_ack(struct proc *p, uint32_t which, uint32_t n)
{
    io_ack(&p->io, which, n);
    if (p->exited)
        proc_finish(p);
}

void proc_io_event(uint32_t stream, int role)
{
    struct proc *p = proc_find(stream);
    if (p)
        io_event(&p->io, role);
}

/* The first container's init exited and the host has its EXIT. */
int proc_init_done(void)
{
    struct ctr *pod = ctr_find(INIT_STREAM);
    return pod && pod->init && pod->init->done;
}

/* A pod's next container is over: whatever its init left goes (in a pid
 * namespace of its own the kernel has done so already). */
static void ctr_over(struct ctr *c)
{
    static pid_t pids[16384];
    int n = container_pids(c, pids, 16384);
    for (int i = 0; i < n; i++)
        kill(pids[i], SIGKILL);
}

void proc_reap(void)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        struct proc *p = procs;
        while (p && (p->pid != pid || p->exited))
            p = p->next;
        if (!p)
            continue; /* an orphan, an exec helper, or a process the host never learnt of */
        p->exited = 1;
        p->status = status;
        struct ctr *c = ctr_of(p);
        if (c && c->stream == INIT_STREAM)
            kill(-1, SIGKILL); /* the (pod's first) container is over: everything else goes */
        else if (c)
            ctr_over(c);
        proc_finish(p);
    }
}

int container_pids(struct ctr *c, pid_t *out, int max)
{
    int n = 0;
    struct dirent *de;
    if (!c)
        return 0;
    DIR *d = opendir("/proc");
    while (d && n < max && (de = readdir(d))) {
        char path[64];
        struct stat st;
        pid_t pid = atoi(de->d_name);
        if (pid <= 1)
            continue;
        snprintf(path, sizeof path, "/proc/%d/ns/mnt", pid);
        if (stat(path, &st) == 0 && st.st_ino == c->mntns.st_ino && st.st_dev == c->mntns.st_dev)
            out[n++] = pid;
    }
    if (d)
        closedir(d);
    return n;
}
