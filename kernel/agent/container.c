/* The container's filesystem and identity, set up by its init before START. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "container.h"
#include "proto.h"
#include "util.h"

#define ROOTFS_DIR "/rootfs" /* the container's root in the agent's namespace */

#define P9_OPTS "trans=virtio,version=9p2000.L,msize=262144,cache=mmap"

/* ---- 9p shares, mounted in the agent's namespace ---- */

int mount_shares(struct spec *s, struct error *e)
{
    /* Read-write even for a read-only root: the container's view of it is
     * made read-only later, after its mount points have been created. */
    mkdir(ROOTFS_DIR, 0755);
    if (mount(RUNV_SHARE_ROOT_TAG, ROOTFS_DIR, "9p", 0, P9_OPTS) < 0)
        return err_set(e, errno, "mount the 9p share \"%s\" on %s", RUNV_SHARE_ROOT_TAG, ROOTFS_DIR);
    for (int i = 0; i < s->nshares; i++) {
        if (mkdir_p(s->shares[i].value, 0755) < 0 || mount(s->shares[i].key, s->shares[i].value, "9p", 0, P9_OPTS) < 0) {
            err_set(e, errno, "mount the 9p share \"%s\" on %s", s->shares[i].key, s->shares[i].value);
            umount_shares(s);
            return -1;
        }
    }
    return 0;
}

void umount_shares(struct spec *s)
{
    for (int i = 0; i < s->nshares; i++)
        umount2(s->shares[i].value, MNT_DETACH);
    umount2(ROOTFS_DIR, MNT_DETACH);
}

/* ---- paths inside the rootfs ---- */

/* root + path with the symlinks in path resolved inside root (like
 * securejoin): a link to /x or to ../../x cannot leave the rootfs. */
static int resolve(const char *root, const char *path, char *out, size_t size)
{
    char rest[PATH_MAX], cur[PATH_MAX] = "", link[PATH_MAX], tmp[2 * PATH_MAX + 2];
    int links = 0;
    snprintf(rest, sizeof rest, "%s", path);
    for (char *r = rest; *r;) {
        while (*r == '/')
            r++;
        size_t n = strcspn(r, "/");
        if (!n)
            break;
        size_t cl = strlen(cur);
        if ((n == 1 && r[0] == '.') || (n == 2 && r[0] == '.' && r[1] == '.')) {
            if (n == 2 && cl)
                *strrchr(cur, '/') = 0;
            r += n;
            continue;
        }
        if (cl + n + 2 > sizeof cur)
            return errno = ENAMETOOLONG, -1;
        cur[cl] = '/';
        memcpy(cur + cl + 1, r, n);
        cur[cl + 1 + n] = 0;
        r += n;
        snprintf(tmp, sizeof tmp, "%s%s", root, cur);
        ssize_t ln = readlink(tmp, link, sizeof link - 1);
        if (ln < 0)
            continue; /* not a symlink, or missing: taken literally */
        if (++links > 40)
            return errno = ELOOP, -1;
        link[ln] = 0;
        cur[link[0] == '/' ? 0 : cl] = 0;
        if (snprintf(tmp, sizeof tmp, "%s/%s", link, r) >= (int)sizeof rest)
            return errno = ENAMETOOLONG, -1;
        memcpy(rest, tmp, strlen(tmp) + 1);
        r = rest;
    }
    if (snprintf(out, size, "%s%s", root, cur) >= (int)size)
        return errno = ENAMETOOLONG, -1;
    return 0;
}

static int same_path(const char *a, const char *b)
{
    for (;;) {
        while (*a == '/' && (a[1] == '/' || !a[1]))
            a++;
        while (*b == '/' && (b[1] == '/' || !b[1]))
            b++;
        if (*a != *b)
            return 0;
        if (!*a)
            return 1;
        a++, b++;
    }
}

static int has_mount(struct spec *s, const char *dest)
{
    for (int i = 0; i < s->nmounts; i++)
        if (same_path(s->mounts[i].dest, dest))
            return 1;
    return 0;
}

/* ---- mounts ---- */

static int mount_one(struct mountrec *m, struct error *e)
{
    char dst[PATH_MAX];
    struct stat st;
    int bind = (m->flags & MS_BIND) || !strcmp(m->type, "bind");
    const char *what = *m->source ? m->source : m->type;

    if (resolve(ROOTFS_DIR, m->dest, dst, sizeof dst) < 0)
        return err_set(e, errno, "mount \"%s\" on \"%s\"", what, m->dest);
    if (bind && stat(m->source, &st) < 0)
        return err_set(e, errno, "mount \"%s\" on \"%s\": stat the source", what, m->dest);
    if (bind && !S_ISDIR(st.st_mode)) {
        char *slash = strrchr(dst, '/');
        *slash = 0;
        mkdir_p(dst, 0755);
        *slash = '/';
        make_mountpoint_file(dst, 0644);
    } else if (mkdir_p(dst, 0755) < 0) {
        return err_set(e, errno, "mount \"%s\" on \"%s\": create the mount point", what, m->dest);
    }
    int rc;
    if (bind) {
        rc = mount(m->source, dst, NULL, MS_BIND | (m->flags & MS_REC), NULL);
        /* a bind mount ignores the other flags: they take a remount, as in runc */
        if (rc == 0 && (m->flags & ~(MS_BIND | MS_REC | MS_REMOUNT | MS_SILENT)))
            rc = mount(NULL, dst, NULL, (m->flags & ~MS_REC) | MS_BIND | MS_REMOUNT, NULL);
    } else {
        /* cgroup v1 hierarchies are not set up in the guest: "cgroup" is cgroup2 */
        int cg = !strcmp(m->type, "cgroup") || !strcmp(m->type, "cgroup2");
        rc = mount(m->source, dst, cg ? "cgroup2" : m->type, m->flags & ~MS_REMOUNT, cg || !*m->data ? NULL : m->data);
        const char *guest = !strcmp(m->type, "sysfs") ? "/sys" : cg ? "/sys/fs/cgroup" : NULL;
        if (rc < 0 && errno == EPERM && guest) {
            /* In a user namespace, sysfs needs a network namespace of its own and
             * cgroup2 a cgroup namespace: bind the guest's instead, as runc does. */
            rc = mount(guest, dst, NULL, MS_BIND | MS_REC, NULL);
            if (rc == 0)
                rc = mount(NULL, dst, NULL, (m->flags & ~(MS_REC | MS_REMOUNT)) | MS_BIND | MS_REMOUNT, NULL);
        }
    }
    for (unsigned long bit = MS_UNBINDABLE; rc == 0 && bit <= MS_SHARED; bit <<= 1)
        if (m->prop & bit)
            rc = mount(NULL, dst, NULL, bit | (m->prop & MS_REC), NULL);
    return rc < 0 ? err_set(e, errno, "mount \"%s\" on \"%s\"", what, m->dest) : 0;
}

static int mount_default(struct spec *s, const char *type, const char *dest, unsigned long flags,
                         const char *data, struct error *e)
{
    struct mountrec m = {.flags = flags, .type = (char *)type, .source = (char *)type,
                         .dest = (char *)dest, .data = (char *)data};
    return has_mount(s, dest) ? 0 : mount_one(&m, e);
}

/* The devices and links every container has (OCI "Default Devices"). */
static int populate_dev(struct spec *s, struct error *e)
{
    static const struct { const char *name; unsigned maj, min; } devs[] = {
        {"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
    };
    static const char *links[][2] = {
        {"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"},
        {"stderr", "/proc/self/fd/2"}, {"ptmx", "pts/ptmx"},
    };
    char dev[PATH_MAX], path[PATH_MAX + 16], host[32];

    if (resolve(ROOTFS_DIR, "/dev", dev, sizeof dev) < 0)
        return err_set(e, errno, "resolve /dev");
    for (size_t i = 0; i < sizeof devs / sizeof *devs; i++) {
        snprintf(path, sizeof path, "%s/%s", dev, devs[i].name);
        if (mknod(path, S_IFCHR | 0666, makedev(devs[i].maj, devs[i].min)) == 0 || errno == EEXIST)
            continue;
        /* no mknod here (a bind-mounted /dev?): bind the agent's node instead */
        make_mountpoint_file(path, 0666);
        snprintf(host, sizeof host, "/dev/%s", devs[i].name);
        if (mount(host, path, NULL, MS_BIND, NULL) < 0)
            return err_set(e, errno, "create /dev/%s", devs[i].name);
    }
    for (size_t i = 0; i < sizeof links / sizeof *links; i++) {
        snprintf(path, sizeof path, "%s/%s", dev, links[i][0]);
        (void)!symlink(links[i][1], path);
    }
    if (!has_mount(s, "/dev/pts")) {
        snprintf(path, sizeof path, "%s/pts", dev);
        mkdir(path, 0755);
        if (mount("devpts", path, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620") < 0)
            return err_set(e, errno, "mount \"devpts\" on \"/dev/pts\"");
    }
    if (!has_mount(s, "/dev/shm")) {
        snprintf(path, sizeof path, "%s/shm", dev);
        if (mkdir(path, 01777) == 0)
            chmod(path, 01777);
    }
    return 0;
}

/* Makes path a read-only mount, keeping its other per-mount flags. */
static int remount_ro(const char *path)
{
    struct statvfs sv;
    unsigned long flags = MS_BIND | MS_REMOUNT | MS_RDONLY;
    if (statvfs(path, &sv) == 0) {
        static const unsigned long map[][2] = {
            {ST_NOSUID, MS_NOSUID}, {ST_NODEV, MS_NODEV}, {ST_NOEXEC, MS_NOEXEC},
            {ST_NOATIME, MS_NOATIME}, {ST_NODIRATIME, MS_NODIRATIME}, {ST_RELATIME, MS_RELATIME},
        };
        for (size_t i = 0; i < sizeof map / sizeof *map; i++)
            if (sv.f_flag & map[i][0])
                flags |= map[i][1];
    }
    return mount(NULL, path, NULL, flags, NULL);
}

/* linux.devices, under ROOTFS_DIR. In a user namespace mknod is not allowed:
 * the guest's own node for the same device is bind-mounted instead, as runc
 * binds the host's. */
static int make_devices(struct spec *s, struct error *e)
{
    for (int i = 0; i < s->ndevices; i++) {
        struct device *d = &s->devices[i];
        char path[PATH_MAX];
        struct stat st;
        mode_t type = d->type == 'b' ? S_IFBLK : d->type == 'p' ? S_IFIFO : S_IFCHR;
        mode_t perm = d->mode & 07777 ? d->mode & 07777 : 0666;
        dev_t dev = makedev(d->major, d->minor);
        if (resolve(ROOTFS_DIR, d->path, path, sizeof path) < 0)
            return err_set(e, errno, "device %s", d->path);
        char *slash = strrchr(path, '/');
        *slash = 0;
        mkdir_p(path, 0755);
        *slash = '/';
        unlink(path);
        if (mknod(path, type | perm, dev) == 0) {
            if (chown(path, d->uid, d->gid) < 0)
                return err_set(e, errno, "chown %s", d->path);
            continue;
        }
        if (errno != EPERM || type == S_IFIFO || stat(d->path, &st) < 0 ||
            (st.st_mode & S_IFMT) != type || st.st_rdev != dev)
            return err_set(e, errno, "mknod %s", d->path);
        make_mountpoint_file(path, 0644);
        if (mount(d->path, path, NULL, MS_BIND, NULL) < 0)
            return err_set(e, errno, "bind the device %s", d->path);
    }
    return 0;
}

/* The rootfs and its mounts and devices, under ROOTFS_DIR, moved to / at the end. */
static int build_root(struct spec *s, struct error *e)
{
    if (mount(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL) < 0)
        return err_set(e, errno, "make / a slave mount");
    /* A pod's next container: its root, on the pod share, takes the place of
     * the first one's (in this mount namespace alone). */
    if (s->root_dir && mount(s->root_dir, ROOTFS_DIR, NULL, MS_BIND | MS_REC, NULL) < 0)
        return err_set(e, errno, "bind the container's root %s", s->root_dir);
    /* In a new user namespace the mounts inherited from the agent are locked
     * and cannot be moved: the container's root is a bind mount of its own. */
    if ((s->nsflags & CLONE_NEWUSER) && mount(ROOTFS_DIR, ROOTFS_DIR, NULL, MS_BIND | MS_REC, NULL) < 0)
        return err_set(e, errno, "bind the rootfs on itself");
    if (mount_default(s, "proc", "/proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "", e) < 0 ||
        mount_default(s, "sysfs", "/sys", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, "", e) < 0 ||
        mount_default(s, "tmpfs", "/dev", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k", e) < 0)
        return -1;
    for (int i = 0; i < s->nmounts; i++)
        if (mount_one(&s->mounts[i], e) < 0)
            return -1;
    if (populate_dev(s, e) < 0 || make_devices(s, e) < 0)
        return -1;
    /* pivot_root cannot leave the initramfs: move the rootfs over / instead */
    if (chdir(ROOTFS_DIR) < 0 || mount(ROOTFS_DIR, "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0 || chdir("/") < 0)
        return err_set(e, errno, "move the rootfs to /");
    if (s->rootprop && mount(NULL, "/", NULL, s->rootprop, NULL) < 0)
        return err_set(e, errno, "set the propagation of / to %#x", s->rootprop);
    return 0;
}

static int set_sysctls(struct spec *s, struct error *e)
{
    for (int i = 0; i < s->nsysctls; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "/proc/sys/%s", s->sysctls[i].key);
        for (char *p = path + 10; *p; p++)
            if (*p == '.')
                *p = '/';
        if (write_file(path, s->sysctls[i].value) < 0)
            return err_set(e, errno, "sysctl \"%s\"", s->sysctls[i].key);
    }
    return 0;
}

/* linux.readonlyPaths and linux.maskedPaths; the ones missing are skipped. */
static int protect_paths(struct spec *s, struct error *e)
{
    for (int i = 0; i < s->nreadonly; i++) {
        const char *p = s->readonly[i];
        if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) < 0 || remount_ro(p) < 0) {
            if (errno == ENOENT)
                continue;
            return err_set(e, errno, "make \"%s\" read-only", p);
        }
    }
    for (int i = 0; i < s->nmasked; i++) {
        const char *p = s->masked[i];
        struct stat st;
        if (stat(p, &st) < 0) {
            if (errno == ENOENT)
                continue;
            return err_set(e, errno, "mask \"%s\"", p);
        }
        int rc = S_ISDIR(st.st_mode) ? mount("tmpfs", p, "tmpfs", MS_RDONLY, NULL)
                                     : mount("/dev/null", p, NULL, MS_BIND, NULL);
        if (rc < 0)
            return err_set(e, errno, "mask \"%s\"", p);
    }
    return 0;
}

int container_setup(struct spec *s, struct error *e)
{
    umask(0);
    if (build_root(s, e) < 0)
        return -1;
    if (s->hostname && sethostname(s->hostname, strlen(s->hostname)) < 0)
        return err_set(e, errno, "sethostname \"%s\"", s->hostname);
    if (s->domainname && setdomainname(s->domainname, strlen(s->domainname)) < 0)
        return err_set(e, errno, "setdomainname \"%s\"", s->domainname);
    if (set_sysctls(s, e) < 0 || protect_paths(s, e) < 0)
        return -1;
    if (s->root_ro && remount_ro("/") < 0)
        return err_set(e, errno, "make the root read-only");
    return 0;
}

/* ARG[0] against $PATH of the process's environment, as Go's exec.LookPath. */
int lookup_exe(struct spec *s, struct error *e)
{
    const char *a0 = s->argv[0], *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    char cand[PATH_MAX];
    struct stat st;

    if (strchr(a0, '/')) {
        if (a0[0] == '/')
            snprintf(cand, sizeof cand, "%s", a0);
        else
            snprintf(cand, sizeof cand, "%s/%s", s->cwd, a0);
        if (stat(cand, &st) < 0)
            return err_set(e, errno, "exec: \"%s\"", a0);
        s->exe = (char *)a0;
        return 0;
    }
    for (int i = 0; i < s->nenv; i++)
        if (!strncmp(s->envp[i], "PATH=", 5))
            path = s->envp[i] + 5;
    for (const char *p = path;; p += strcspn(p, ":") + 1) {
        int n = (int)strcspn(p, ":");
        snprintf(cand, sizeof cand, "%.*s/%s", n ? n : 1, n ? p : ".", a0);
        if (stat(cand, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111)) {
            s->exe = strdup(cand);
            return s->exe ? 0 : err_set(e, ENOMEM, "exec");
        }
        if (!p[n])
            break;
    }
    return err_setx(e, ENOENT, "exec: \"%s\": executable file not found in $PATH", a0);
}
