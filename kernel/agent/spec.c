/* CREATE and EXEC records into a struct spec (spec.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "records.h"
#include "spec.h"
#include "util.h"

#define CLONE_NEWNS 0x00020000 /* <sched.h>'s, which needs more than this file wants */

struct arena {
    struct arena *next;
    size_t used, cap;
    char data[];
};

static void *amalloc(struct arena **a, size_t n)
{
    n = (n + 7) & ~(size_t)7;
    if (!*a || (*a)->used + n > (*a)->cap) {
        size_t cap = n > 4096 ? n : 4096;
        struct arena *c = malloc(sizeof *c + cap);
        if (!c)
            power_off("out of memory");
        c->next = *a;
        c->used = 0;
        c->cap = cap;
        *a = c;
    }
    void *p = (*a)->data + (*a)->used;
    (*a)->used += n;
    memset(p, 0, n);
    return p;
}

static char *astr(struct spec *s, const uint8_t *v, size_t n)
{
    char *p = amalloc(&s->arena, n + 1);
    memcpy(p, v, n);
    return p;
}

/* Splits v into k strings, each NUL-terminated but a missing NUL at the end is tolerated. */
static void cstrs(struct spec *s, const uint8_t *v, size_t n, char **out, int k)
{
    for (int i = 0; i < k; i++) {
        const uint8_t *z = memchr(v, 0, n);
        size_t l = z ? (size_t)(z - v) : n;
        out[i] = astr(s, v, l);
        v += z ? l + 1 : l;
        n -= z ? l + 1 : l;
    }
}

static struct kv kv(struct spec *s, const uint8_t *v, uint32_t rl)
{
    char *str[2];
    cstrs(s, v, rl, str, 2);
    return (struct kv){str[0], str[1]};
}

void spec_free(struct spec *s)
{
    while (s->arena) {
        struct arena *next = s->arena->next;
        free(s->arena);
        s->arena = next;
    }
}

/* The arrays of the repeated records, sized by a first pass. */
static void alloc_lists(struct spec *s, const uint8_t *p, size_t len)
{
    int count[64] = {0};
    struct rec_iter it = rec_iter(p, len);
    uint32_t tag, rl;
    const uint8_t *v;
    while (rec_next(&it, &tag, &v, &rl) > 0)
        if (tag < 64)
            count[tag]++;
#define ARR(field, tag, extra) s->field = amalloc(&s->arena, (count[tag] + (extra)) * sizeof *s->field)
    ARR(argv, TAG_ARG, 1);
    ARR(envp, TAG_ENV, 2); /* room for a HOME= the agent may add */
    ARR(gids, TAG_ADDGID, 0);
    ARR(mounts, TAG_MOUNT, 0);
    ARR(rlimits, TAG_RLIMIT, 0);
    ARR(masked, TAG_MASKED_PATH, 0);
    ARR(readonly, TAG_READONLY_PATH, 0);
    ARR(sysctls, TAG_SYSCTL, 0);
    ARR(devices, TAG_DEVICE, 0);
    ARR(shares, TAG_SHARE, 0);
    ARR(cgknobs, TAG_CGROUP, 0);
    ARR(podknobs, TAG_POD_CGROUP, 0);
#undef ARR
}

static void add_mount(struct spec *s, const uint8_t *v, uint32_t rl)
{
    struct mountrec *m = &s->mounts[s->nmounts++];
    char *str[4];
    m->flags = get_u32(v);
    m->prop = get_u32(v + 4);
    cstrs(s, v + 8, rl - 8, str, 4);
    m->type = str[0], m->source = str[1], m->dest = str[2], m->data = str[3];
}

static void add_device(struct spec *s, const uint8_t *v, uint32_t rl)
{
    struct device *d = &s->devices[s->ndevices++];
    d->type = get_u32(v), d->major = get_u32(v + 4), d->minor = get_u32(v + 8);
    d->mode = get_u32(v + 12), d->uid = get_u32(v + 16), d->gid = get_u32(v + 20);
    cstrs(s, v + 24, rl - 24, &d->path, 1);
}

static int set_seccomp(struct spec *s, const uint8_t *v, uint32_t rl, struct error *e)
{
    if (rl % 8)
        return err_setx(e, EINVAL, "seccomp program of %u bytes is not a whole number of instructions", rl);
    s->seccomp = amalloc(&s->arena, rl);
    memcpy(s->seccomp, v, rl);
    s->seccomp_len = rl;
    return 0;
}

static int add_cgroup_knob(struct spec *s, uint32_t tag, const uint8_t *v, uint32_t rl, struct error *e)
{
    struct kv k = kv(s, v, rl);
    if (!*k.key || strchr(k.key, '/'))
        return err_setx(e, EINVAL, "bad cgroup knob \"%s\"", k.key);
    if (tag == TAG_POD_CGROUP)
        s->podknobs[s->npodknobs++] = k;
    else
        s->cgknobs[s->ncgknobs++] = k;
    return 0;
}

static int set_idmap(struct spec *s, uint32_t tag, const uint8_t *v, uint32_t rl, struct error *e)
{
    int which = tag == TAG_GID_MAP;
    if (rl % 12 || !rl)
        return err_setx(e, EINVAL, "record %u is not a list of (container, host, size)", tag);
    s->idmap[which] = amalloc(&s->arena, rl);
    for (uint32_t i = 0; i < rl / 4; i++)
        s->idmap[which][i] = get_u32(v + 4 * i);
    s->nidmap[which] = rl / 12;
    return 0;
}

/* One record into s; unknown tags are skipped. */
static int add_record(struct spec *s, uint32_t tag, const uint8_t *v, uint32_t rl, struct error *e)
{
    static const uint8_t minlen[] = {
        [TAG_UID] = 4, [TAG_GID] = 4, [TAG_ADDGID] = 4, [TAG_ROOT_READONLY] = 4, [TAG_MOUNT] = 8,
        [TAG_TERMINAL] = 4, [TAG_UMASK] = 4, [TAG_RLIMIT] = 20, [TAG_CAPS] = 40,
        [TAG_NO_NEW_PRIVS] = 4, [TAG_OOM_SCORE_ADJ] = 4, [TAG_DEVICE] = 24,
        [TAG_ROOT_PROPAGATION] = 4, [TAG_NAMESPACES] = 4, [TAG_SECCOMP_FLAGS] = 4,
        [TAG_JOIN_NAMESPACES] = 4, [TAG_CONTAINER] = 4,
    };
    if (tag < sizeof minlen && rl < minlen[tag])
        return err_setx(e, EINVAL, "record %u is too short (%u bytes)", tag, rl);
    switch (tag) {
    case TAG_ARG: s->argv[s->nargv++] = astr(s, v, rl); break;
    case TAG_ENV: s->envp[s->nenv++] = astr(s, v, rl); break;
    case TAG_CWD: s->cwd = astr(s, v, rl); break;
    case TAG_UID: s->uid = get_u32(v); break;
    case TAG_GID: s->gid = get_u32(v); break;
    case TAG_ADDGID: s->gids[s->ngids++] = get_u32(v); break;
    case TAG_HOSTNAME: s->hostname = astr(s, v, rl); break;
    case TAG_DOMAINNAME: s->domainname = astr(s, v, rl); break;
    case TAG_ROOT_READONLY: s->root_ro = get_u32(v) != 0; break;
    case TAG_TERMINAL: s->terminal = get_u32(v) != 0; break;
    case TAG_UMASK: s->umask = get_u32(v) & 0777; break;
    case TAG_NO_NEW_PRIVS: s->nnp = get_u32(v) != 0; break;
    case TAG_OOM_SCORE_ADJ: s->has_oom = 1; s->oom = (int32_t)get_u32(v); break;
    case TAG_ROOT_PROPAGATION: s->rootprop = get_u32(v); break;
    case TAG_NAMESPACES: s->nsflags = get_u32(v) | CLONE_NEWNS; break;
    case TAG_SECCOMP_FLAGS: s->seccomp_flags = get_u32(v); break;
    case TAG_JOIN_NAMESPACES: s->joinflags = get_u32(v) & ~CLONE_NEWNS; break;
    case TAG_CONTAINER: s->container = get_u32(v); break;
    case TAG_ROOT_DIR: s->root_dir = astr(s, v, rl); break;
    case TAG_MOUNT: add_mount(s, v, rl); break;
    case TAG_RLIMIT:
        s->rlimits[s->nrlimits++] = (struct rlim){get_u32(v), get_u64(v + 4), get_u64(v + 12)};
        break;
    case TAG_CAPS:
        s->has_caps = 1;
        for (int i = 0; i < 5; i++)
            s->caps[i] = get_u64(v + 8 * i);
        break;
    case TAG_SECCOMP: return set_seccomp(s, v, rl, e);
    case TAG_MASKED_PATH: s->masked[s->nmasked++] = astr(s, v, rl); break;
    case TAG_READONLY_PATH: s->readonly[s->nreadonly++] = astr(s, v, rl); break;
    case TAG_SYSCTL: s->sysctls[s->nsysctls++] = kv(s, v, rl); break;
    case TAG_CGROUP:
    case TAG_POD_CGROUP: return add_cgroup_knob(s, tag, v, rl, e);
    case TAG_SHARE: s->shares[s->nshares++] = kv(s, v, rl); break;
    case TAG_UID_MAP:
    case TAG_GID_MAP: return set_idmap(s, tag, v, rl, e);
    case TAG_DEVICE: add_device(s, v, rl); break;
    default: break;
    }
    return 0;
}

int spec_parse(struct spec *s, const uint8_t *p, size_t len, struct error *e)
{
    memset(s, 0, sizeof *s);
    s->umask = -1;
    s->cwd = "/";
    s->nsflags = CLONE_NEWNS;
    if (rec_check(p, len, e) < 0)
        return -1;
    alloc_lists(s, p, len);

    struct rec_iter it = rec_iter(p, len);
    uint32_t tag, rl;
    const uint8_t *v;
    while (rec_next(&it, &tag, &v, &rl) > 0)
        if (add_record(s, tag, v, rl, e) < 0)
            return -1;
    if (!*s->cwd)
        s->cwd = "/";
    return 0;
}
