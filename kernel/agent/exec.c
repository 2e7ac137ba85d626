/* The last steps of a new container process, in the child, once it is in
 * the container: its terminal, limits, credentials and seccomp filter, in
 * runc's order; then execve. Errors go to the agent over the channel. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "chan.h"
#include "exec.h"
#include "procio.h"
#include "util.h"

/* rlimits and oom_score_adj of pid (0: this process). Raising a hard limit or
 * lowering oom_score_adj takes privileges over the initial user namespace, so
 * the agent applies them before the process enters its user namespace; the
 * process sets the same values again later, which needs none. */
int apply_limits(pid_t pid, struct spec *s, struct error *e)
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

int child_terminal(int chan, int console, struct error *e)
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
    if (chan_send(chan, CH_PTY, 0, master) < 0)
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

/* cwd, or 1 if that must wait for the user (EACCES as root: retry as the
 * user, who may have access, as runc does). */
static int enter_cwd(struct spec *s, struct error *e)
{
    if (chdir(s->cwd) == 0)
        return 0;
    return errno == EACCES ? 1 : err_set(e, errno, "chdir to cwd \"%s\"", s->cwd);
}

static int drop_bounding(struct spec *s, struct error *e)
{
    for (int cap = 0; cap < 64; cap++) {
        if (!(s->caps[0] >> cap & 1) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
            if (errno == EINVAL)
                break; /* past the kernel's last capability */
            return err_set(e, errno, "drop capability %d from the bounding set", cap);
        }
    }
    prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0);
    return 0;
}

/* The bounding set, groups, gid and uid, then the capabilities the user keeps. */
static int become_user(struct spec *s, int chdir_later, struct error *e)
{
    if (s->has_caps && drop_bounding(s, e) < 0)
        return -1;
    if (setgroups(s->ngids, (gid_t *)s->gids) < 0)
        return err_set(e, errno, "setgroups");
    if (setgid(s->gid) < 0)
        return err_set(e, errno, "setgid %u", s->gid);
    if (setuid(s->uid) < 0)
        return err_set(e, errno, "setuid %u", s->uid);
    if (chdir_later && chdir(s->cwd) < 0)
        return err_set(e, errno, "chdir to cwd \"%s\"", s->cwd);
    if (!s->has_caps)
        return 0;
    prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
    return set_caps(s, e);
}

_Noreturn void exec_process(struct spec *s, int chan)
{
    struct error e = {0};
    /* without no_new_privs a filter takes CAP_SYS_ADMIN: install it before the user changes */
    int seccomp_first = s->seccomp && !s->nnp;

    if (apply_limits(0, s, &e) < 0)
        chan_fail(chan, &e);
    umask(s->umask >= 0 ? s->umask : 022);
    ensure_home(s);
    if (s->uid || s->gid)
        chown_stdio(s);
    int chdir_later = enter_cwd(s, &e);
    if (chdir_later < 0 || (seccomp_first && install_seccomp(s, &e) < 0) || become_user(s, chdir_later, &e) < 0)
        chan_fail(chan, &e);
    if (s->nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        err_set(&e, errno, "set no_new_privs");
        chan_fail(chan, &e);
    }
    if (s->seccomp && !seccomp_first && install_seccomp(s, &e) < 0)
        chan_fail(chan, &e);
    execve(s->exe, s->argv, s->envp);
    err_set(&e, errno, "exec \"%s\"", s->exe);
    chan_fail(chan, &e);
}
