/* Spawning, credentials and reaping of the container's processes. */
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
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"

struct proc *procs, *init_proc;
static struct stat init_mntns; /* processes in this mount namespace are the container's */

/* Messages on the socket between the agent and a child it is setting up. */
enum { CH_READY = 1, CH_ERROR, CH_PID, CH_PTY, CH_START, CH_GO };
struct chanmsg { int32_t kind, err, pid; char msg[488]; };
#define STALL_CHECK_MS 1000 /* how often collect() looks for a stopped child */

static int setup_terminal(int chan, int console, struct error *e);
static _Noreturn void exec_process(struct spec *s, int chan);

/* ---- the process table ---- */

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
    if (p == init_proc)
        init_proc = NULL;
    free(p);
}

/* ---- the socket to a child being set up ---- */

static int chan_send(int sock, int kind, int err, int pid, const char *msg, int fd)
{
    struct chanmsg m = {.kind = kind, .err = err, .pid = pid};
    union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } c;
    struct iovec iov = {.iov_base = &m, .iov_len = sizeof m};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (msg)
        snprintf(m.msg, sizeof m.msg, "%s", msg);
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

static int chan_recv(int sock, struct chanmsg *m, int *fd)
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
    m->msg[sizeof m->msg - 1] = 0;
    return (int)n;
}

static _Noreturn void child_fail(int chan, const struct error *e)
{
    chan_send(chan, CH_ERROR, e->no, 0, e->msg, -1);
    _exit(127);
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
        if (m.kind == CH_PID)
            p->pid = m.pid;
        else if (m.kind == CH_PTY && fd >= 0 && p->io.pty < 0)
            io_set_pty(&p->io, fd), fd = -1;
        else if (m.kind == CH_ERROR && !failed)
            failed = err_setx(e, m.err, "%s", m.msg);
        else if (m.kind == CH_READY && until_ready)
            return failed;
        if (fd >= 0)
            close(fd), fd = -1;
    }
    if (!failed && until_ready)
        return err_setx(e, EIO, "the container's init exited during setup");
    return failed;
}

/* ---- limits that need privileges outside a user namespace ---- */

/* rlimits and oom_score_adj of pid (0: this process). Raising a hard limit or
 * lowering oom_score_adj takes privileges over the initial user namespace, so
 * the agent applies them before the process enters its user namespace; the
 * process sets the same values again later, which needs none. */
static int apply_limits(pid_t pid, struct spec *s, struct error *e)
{
    for (int i = 0; i < s->nrlimits; i++) {
        struct rlimit rl = {.rlim_cur = s->rlimits[i].soft, .rlim_max = s->rlimits[i].hard};
        if (prlimit(pid, s->rlimits[i].res, &rl, NULL) < 0)
            return err_set(e, errno, "setrlimit %u", s->rlimits[i].res);
    }
    if (s->has_oom) {
        char path[64], value[16], now[16] = "";
        snprintf(path, sizeof path, pid ? "/proc/%d/oom_score_adj" : "/proc/self/oom_score_adj", pid);
        snprintf(value, sizeof value, "%d\n", s->oom);
        int fd = open_regular(path, O_RDONLY);
        if (fd >= 0) {
            (void)!read(fd, now, sizeof now - 1);
            close(fd);
        }
        /* already set (by the agent, before a user namespace made the file the agent's) */
        if (strcmp(now, value) && write_file(path, value) < 0)
            return err_set(e, errno, "write %s", path);
    }
    return 0;
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
            child_fail(chan, &e);
        }
        setgroups(0, NULL);
    }
    /* a cgroup namespace is made now, so that its root is the container's cgroup */
    if ((s->nsflags & CLONE_NEWCGROUP) && unshare(CLONE_NEWCGROUP) < 0) {
        err_set(&e, errno, "unshare the cgroup namespace");
        child_fail(chan, &e);
    }
    if (container_setup(s, &e) < 0 || (s->terminal && setup_terminal(chan, 1, &e) < 0) || lookup_exe(s, &e) < 0)
        child_fail(chan, &e);
    chan_send(chan, CH_READY, 0, 0, NULL, -1);
    if (chan_recv(chan, &m, NULL) <= 0 || m.kind != CH_START)
        _exit(1);
    exec_process(s, chan);
}

int proc_create_init(struct proc *p, struct spec *s, struct error *e)
{
    int sv[2], stdio[3] = {-1, -1, -1};
    char path[64];

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return err_set(e, errno, "socketpair");
    if (!s->terminal && io_pipes(&p->io, stdio, e) < 0) {
        close(sv[0]), close(sv[1]);
        return -1;
    }
    if (cgroup_prepare(s, e) < 0) {
        close(sv[0]), close(sv[1]);
        for (int i = 0; i < 3; i++)
            if (stdio[i] >= 0)
                close(stdio[i]);
        return -1;
    }
    /* fork semantics (no new stack), with the namespaces created on the way
     * (but the cgroup namespace: the child makes it once in its cgroup) */
    pid_t pid = syscall(SYS_clone, (unsigned long)(s->nsflags & ~CLONE_NEWCGROUP) | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0) {
        close(sv[0]);
        init_child(s, sv[1], stdio);
    }
    int saved = errno;
    close(sv[1]);
    for (int i = 0; i < 3; i++)
        if (stdio[i] >= 0)
            close(stdio[i]);
    p->chan = sv[0];
    if (pid < 0)
        return err_set(e, saved, "clone the container's init (flags %#x)", s->nsflags);
    p->pid = pid;
    if (((s->nsflags & CLONE_NEWUSER) && (write_id_maps(pid, s, e) < 0 || apply_limits(pid, s, e) < 0)) ||
        (s->ncgknobs && cgroup_enter(pid, e) < 0)) {
        kill(pid, SIGKILL);
        return -1; /* the child is reaped as an unknown pid */
    }
    chan_send(p->chan, CH_GO, 0, 0, NULL, -1);
    if (collect(p, 0, 1, e) < 0)
        return -1;
    snprintf(path, sizeof path, "/proc/%d/ns/mnt", pid);
    if (stat(path, &init_mntns) < 0)
        return err_set(e, errno, "stat %s", path);
    init_proc = p;
    io_start(&p->io);
    return 0;
}

int proc_start_init(struct proc *p, struct error *e)
{
    if (p->chan < 0)
        return err_setx(e, EINVAL, "the container has been started already");
    if (p->exited || chan_send(p->chan, CH_START, 0, 0, NULL, -1) < 0)
        return err_setx(e, ESRCH, "the container's init has exited");
    int rc = collect(p, 0, 0, e);
    close(p->chan);
    p->chan = -1;
    return rc;
}

/* ---- EXEC ---- */

static _Noreturn void exec_child(pid_t init, struct spec *s, int chan, int stdio[3])
{
    /* user first: the others belong to it when it is new; mnt last */
    static const char *ns[] = {"user", "ipc", "uts", "net", "pid", "cgroup", "mnt"};
    enum { NNS = sizeof ns / sizeof *ns };
    int fds[NNS], root;
    char path[64];
    struct error e = {0};

    child_common(s->terminal ? NULL : stdio);
    if (apply_limits(0, s, &e) < 0 || cgroup_join(init, &e) < 0) /* while still privileged */
        child_fail(chan, &e);
    for (int i = 0; i < NNS; i++) {
        struct stat mine, theirs;
        snprintf(path, sizeof path, "/proc/%d/ns/%s", init, ns[i]);
        if ((fds[i] = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
            if (errno == ENOENT)
                err_setx(&e, ESRCH, "the container's init has exited");
            else
                err_set(&e, errno, "open %s", path);
            child_fail(chan, &e);
        }
        snprintf(path, sizeof path, "/proc/self/ns/%s", ns[i]);
        if (fstat(fds[i], &theirs) == 0 && stat(path, &mine) == 0 && mine.st_ino == theirs.st_ino)
            close(fds[i]), fds[i] = -1;
    }
    snprintf(path, sizeof path, "/proc/%d/root", init);
    if ((root = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        err_set(&e, errno, "open %s", path);
        child_fail(chan, &e);
    }
    for (int i = 0; i < NNS; i++) {
        if (fds[i] >= 0 && setns(fds[i], 0) < 0) {
            err_set(&e, errno, "join the container's %s namespace", ns[i]);
            child_fail(chan, &e);
        }
    }
    if (fchdir(root) < 0 || chroot(".") < 0 || chdir("/") < 0) {
        err_set(&e, errno, "enter the container's root");
        child_fail(chan, &e);
    }
    /* A new pid namespace takes effect for children only: fork once more,
     * as a child of the agent, so that the agent reaps it. */
    pid_t pid = syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
    if (pid < 0) {
        err_set(&e, errno, "fork in the container");
        child_fail(chan, &e);
    }
    if (pid > 0) {
        chan_send(chan, CH_PID, 0, pid, NULL, -1);
        _exit(0);
    }
    setsid();
    if ((s->terminal && setup_terminal(chan, 0, &e) < 0) || lookup_exe(s, &e) < 0)
        child_fail(chan, &e);
    exec_process(s, chan);
}

/* The container's seccomp filter, from CREATE: exec'd processes get it too, as in runc. */
static void *cseccomp;
static size_t cseccomp_len;
static uint32_t cseccomp_flags;

void container_seccomp_keep(const struct spec *s)
{
    free(cseccomp);
    cseccomp = NULL;
    cseccomp_len = 0;
    if (s->seccomp && (cseccomp = malloc(s->seccomp_len))) {
        memcpy(cseccomp, s->seccomp, s->seccomp_len);
        cseccomp_len = s->seccomp_len;
        cseccomp_flags = s->seccomp_flags;
    }
}

int proc_exec(struct proc *p, pid_t init, struct spec *s, struct error *e)
{
    int sv[2], stdio[3] = {-1, -1, -1};

    if (!s->seccomp && cseccomp) {
        s->seccomp = cseccomp;
        s->seccomp_len = cseccomp_len;
        s->seccomp_flags = cseccomp_flags;
    }

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return err_set(e, errno, "socketpair");
    if (!s->terminal && io_pipes(&p->io, stdio, e) < 0) {
        close(sv[0]), close(sv[1]);
        return -1;
    }
    pid_t helper = fork();
    if (helper == 0) {
        close(sv[0]);
        exec_child(init, s, sv[1], stdio);
    }
    int saved = errno;
    close(sv[1]);
    for (int i = 0; i < 3; i++)
        if (stdio[i] >= 0)
            close(stdio[i]);
    p->chan = sv[0];
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

/* ---- in the child: terminal, credentials, exec ---- */

static int setup_terminal(int chan, int console, struct error *e)
{
    int master, slave;
    char path[64];
    if (pty_open(&master, &slave, path, sizeof path, e) < 0)
        return -1;
    if (console) {
        make_mountpoint_file("/dev/console", 0600);
        if (mount(path, "/dev/console", NULL, MS_BIND, NULL) < 0)
            return err_set(e, errno, "bind %s on /dev/console", path);
    }
    if (chan_send(chan, CH_PTY, 0, 0, NULL, master) < 0)
        return err_set(e, errno, "send the pty master");
    close(master);
    if (ioctl(slave, TIOCSCTTY, 0) < 0)
        return err_set(e, errno, "make %s the controlling terminal", path);
    for (int i = 0; i < 3; i++)
        dup2(slave, i);
    if (slave > 2)
        close(slave);
    return 0;
}

/* HOME from the container's /etc/passwd when the environment has none, as runc does. */
static void ensure_home(struct spec *s)
{
    const char *home = "/";
    char line[512];
    for (int i = 0; i < s->nenv; i++)
        if (!strncmp(s->envp[i], "HOME=", 5))
            return;
    /* the container's own file: a FIFO there must not hold the exec (nor the agent) */
    int fd = open_regular("/etc/passwd", O_RDONLY);
    FILE *f = fd < 0 ? NULL : fdopen(fd, "re");
    while (f && fgets(line, sizeof line, f)) {
        char *field[7] = {0}, *q = line;
        for (int i = 0; i < 7 && q; i++) {
            field[i] = q;
            if ((q = strchr(q, ':')))
                *q++ = 0;
        }
        if (field[5] && strtoul(field[2], NULL, 10) == s->uid && *field[2]) {
            field[5][strcspn(field[5], "\n")] = 0;
            home = field[5];
            break;
        }
    }
    char *env = malloc(strlen(home) + 6);
    if (env) {
        sprintf(env, "HOME=%s", home);
        s->envp[s->nenv++] = env;
        s->envp[s->nenv] = NULL;
    }
    if (f)
        fclose(f);
}

/* The process's stdio pipes and pty belong to root; give them to the user so
 * that it can reopen /dev/stdout and friends. */
static void chown_stdio(struct spec *s)
{
    struct stat st;
    for (int fd = 0; fd < 3; fd++)
        if (fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || (S_ISCHR(st.st_mode) && major(st.st_rdev) >= 136 && major(st.st_rdev) <= 143)))
            (void)!fchown(fd, s->uid, s->gid);
}

static int install_seccomp(struct spec *s, struct error *e)
{
    struct { unsigned short len; void *filter; } prog = {s->seccomp_len / 8, s->seccomp};
    long rc = syscall(SYS_seccomp, 1 /* SECCOMP_SET_MODE_FILTER */, s->seccomp_flags, &prog);
    if (rc < 0 && errno == ENOSYS && !s->seccomp_flags)
        rc = prctl(PR_SET_SECCOMP, 2 /* SECCOMP_MODE_FILTER */, &prog, 0, 0);
    return rc < 0 ? err_set(e, errno, "install the seccomp filter") : 0;
}

static int set_caps(struct spec *s, struct error *e)
{
    struct { uint32_t version; int pid; } hdr = {0x20080522 /* _LINUX_CAPABILITY_VERSION_3 */, 0};
    struct { uint32_t effective, permitted, inheritable; } data[2];
    for (int i = 0; i < 2; i++) {
        data[i].effective = s->caps[1] >> (32 * i);
        data[i].inheritable = s->caps[2] >> (32 * i);
        data[i].permitted = s->caps[3] >> (32 * i);
    }
    if (syscall(SYS_capset, &hdr, data) < 0)
        return err_set(e, errno, "capset");
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    /* As runc: an ambient capability that is not also permitted and inheritable
     * cannot be raised, and that is not an error. */
    for (int cap = 0; cap < 64; cap++)
        if (s->caps[4] >> cap & 1)
            prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0);
    return 0;
}

/* Applies the process records (runc's order) and execs; never returns. */
static _Noreturn void exec_process(struct spec *s, int chan)
{
    struct error e = {0};
    int chdir_later = 0, seccomp_done = 0;

    if (apply_limits(0, s, &e) < 0)
        goto fail;
    umask(s->umask >= 0 ? s->umask : 022);
    ensure_home(s);
    if (s->uid || s->gid)
        chown_stdio(s);
    if (chdir(s->cwd) < 0) {
        if (errno != EACCES) {
            err_set(&e, errno, "chdir to cwd \"%s\"", s->cwd);
            goto fail;
        }
        chdir_later = 1; /* as runc: retry as the user, who may have access */
    }
    if (s->seccomp && !s->nnp) { /* without no_new_privs it needs CAP_SYS_ADMIN: before the drop */
        if (install_seccomp(s, &e) < 0)
            goto fail;
        seccomp_done = 1;
    }
    if (s->has_caps) {
        for (int cap = 0; cap < 64; cap++) {
            if (!(s->caps[0] >> cap & 1) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
                if (errno == EINVAL)
                    break; /* past the kernel's last capability */
                err_set(&e, errno, "drop capability %d from the bounding set", cap);
                goto fail;
            }
        }
        prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0);
    }
    if (setgroups(s->ngids, (gid_t *)s->gids) < 0) {
        err_set(&e, errno, "setgroups");
        goto fail;
    }
    if (setgid(s->gid) < 0) {
        err_set(&e, errno, "setgid %u", s->gid);
        goto fail;
    }
    if (setuid(s->uid) < 0) {
        err_set(&e, errno, "setuid %u", s->uid);
        goto fail;
    }
    if (chdir_later && chdir(s->cwd) < 0) {
        err_set(&e, errno, "chdir to cwd \"%s\"", s->cwd);
        goto fail;
    }
    if (s->has_caps) {
        prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
        if (set_caps(s, &e) < 0)
            goto fail;
    }
    if (s->nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        err_set(&e, errno, "set no_new_privs");
        goto fail;
    }
    if (s->seccomp && !seccomp_done && install_seccomp(s, &e) < 0)
        goto fail;
    execve(s->exe, s->argv, s->envp);
    err_set(&e, errno, "exec \"%s\"", s->exe);
fail:
    child_fail(chan, &e);
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
    if (p != init_proc)
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

/* The container's init exited and the host has its EXIT. */
int proc_init_done(void) { return init_proc && init_proc->done; }

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
        if (p == init_proc)
            kill(-1, SIGKILL); /* the container is over: everything else goes */
        proc_finish(p);
    }
}

int container_pids(pid_t *out, int max)
{
    int n = 0;
    DIR *d = opendir("/proc");
    struct dirent *de;
    if (!init_proc)
        return 0;
    while (d && n < max && (de = readdir(d))) {
        char path[64];
        struct stat st;
        pid_t pid = atoi(de->d_name);
        if (pid <= 1)
            continue;
        snprintf(path, sizeof path, "/proc/%d/ns/mnt", pid);
        if (stat(path, &st) == 0 && st.st_ino == init_mntns.st_ino && st.st_dev == init_mntns.st_dev)
            out[n++] = pid;
    }
    if (d)
        closedir(d);
    return n;
}
