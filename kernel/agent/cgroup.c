/* The containers' cgroups in the guest (cgroup v2, mounted by the agent at boot). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgroup.h"
#include "util.h"

#define CGROUP_ROOT "/sys/fs/cgroup"
#define POD_DIR CGROUP_ROOT "/pod" /* a pod's next containers, together */

void cgroup_dir(uint32_t stream, char *out, size_t size)
{
    if (stream == 1)
        snprintf(out, size, CGROUP_ROOT "/container");
    else
        snprintf(out, size, POD_DIR "/container-%u", stream);
}

/* Enables a controller ("+memory") in each cgroup above dir, from the root down. */
static int enable(const char *dir, const char *ctl)
{
    char up[PATH_MAX], path[PATH_MAX + 32];
    snprintf(up, sizeof up, "%s", dir);
    for (char *p = up + strlen(CGROUP_ROOT); p && *p; p = strchr(p + 1, '/')) {
        char c = *p;
        *p = 0;
        snprintf(path, sizeof path, "%s/cgroup.subtree_control", up);
        *p = c;
        if (write_file(path, ctl) < 0)
            return -1;
    }
    return 0;
}

/* Writes each knob in dir, its controller enabled above it. */
static int set_knobs(const char *dir, const struct kv *knobs, int n, struct error *e)
{
    char path[PATH_MAX], ctl[64];
    for (int i = 0; i < n; i++) {
        const char *knob = knobs[i].key, *dot = strchr(knob, '.');
        if (dot && dot - knob < (int)sizeof ctl - 1 && strncmp(knob, "cgroup.", 7)) {
            snprintf(ctl, sizeof ctl, "+%.*s", (int)(dot - knob), knob);
            if (enable(dir, ctl) < 0)
                return err_set(e, errno, "enable the %s controller in the guest", ctl + 1);
        }
        snprintf(path, sizeof path, "%s/%s", dir, knob);
        if (write_file(path, knobs[i].value) < 0)
            return err_set(e, errno, "guest cgroup: %s = %s", knob, knobs[i].value);
    }
    return 0;
}

/* Makes the container's cgroup and sets its knobs (linux.resources as the
 * host computed them), enabling the controllers they belong to. The cgroup is
 * made even without knobs, as runc gives every container one: `runv update`
 * may set limits later, on the processes already in it. */
int cgroup_prepare(const char *dir, struct spec *s, struct error *e)
{
    /* the controllers `runv update` sets, there from the start as under runc
     * (one by one: a kernel without one still has the others) */
    static const char *const controllers[] = {"+cpu", "+memory", "+pids"};
    if (mkdir_p(dir, 0755) < 0 && errno != EEXIST)
        return err_set(e, errno, "mkdir %s", dir);
    for (size_t i = 0; i < sizeof controllers / sizeof *controllers; i++)
        enable(dir, controllers[i]);
    return cgroup_update(dir, s, e);
}

/* Sets the knobs of the container's cgroup (made by cgroup_prepare), and
 * those of the pod's (POD_CGROUP). */
int cgroup_update(const char *dir, struct spec *s, struct error *e)
{
    if (set_knobs(dir, s->cgknobs, s->ncgknobs, e) < 0)
        return -1;
    if (s->npodknobs && mkdir(POD_DIR, 0755) < 0 && errno != EEXIST)
        return err_set(e, errno, "mkdir %s", POD_DIR);
    return set_knobs(POD_DIR, s->podknobs, s->npodknobs, e);
}

/* Moves pid into the container's cgroup (made by cgroup_prepare). */
int cgroup_enter(const char *dir, pid_t pid, struct error *e)
{
    char value[16], path[PATH_MAX];
    snprintf(value, sizeof value, "%d", pid);
    snprintf(path, sizeof path, "%s/cgroup.procs", dir);
    if (write_file(path, value) < 0)
        return err_set(e, errno, "move the container's init into its cgroup");
    return 0;
}

/* Moves the calling process into the cgroup of the container's init. */
int cgroup_join(pid_t init, struct error *e)
{
    char path[PATH_MAX + 32], line[PATH_MAX];
    snprintf(path, sizeof path, "/proc/%d/cgroup", init);
    int fd = open_regular(path, O_RDONLY);
    FILE *f = fd < 0 ? NULL : fdopen(fd, "re");
    if (!f)
        return errno == ENOENT ? err_setx(e, ESRCH, "the container's init has exited") : err_set(e, errno, "open %s", path);
    int rc = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (strncmp(line, "0::/", 4) || !line[4])
            continue; /* not v2, or the root: nothing to join */
        snprintf(path, sizeof path, CGROUP_ROOT "%s/cgroup.procs", line + 3);
        if (write_file(path, "0") < 0)
            rc = err_set(e, errno, "join the container's cgroup %s", line + 3);
    }
    fclose(f);
    return rc;
}

void cgroup_remove(const char *dir)
{
    rmdir(dir);
}
