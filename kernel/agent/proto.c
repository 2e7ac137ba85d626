/* Frames on the virtio port, and the records of CREATE and EXEC. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

/* ---- records ---- */

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

void spec_free(struct spec *s)
{
    while (s->arena) {
        struct arena *next = s->arena->next;
        free(s->arena);
        s->arena = next;
    }
}

int spec_parse(struct spec *s, const uint8_t *p, size_t len, struct error *e)
{
    int count[64] = {0};
    size_t off;

    memset(s, 0, sizeof *s);
    s->umask = -1;
    s->cwd = "/";
    s->nsflags = 0x00020000; /* CLONE_NEWNS */
    for (off = 0; off < len;) {
        if (len - off < 8)
            return err_setx(e, EINVAL, "truncated record header");
        uint32_t tag = get_u32(p + off), rl = get_u32(p + off + 4);
        if (rl > len - off - 8)
            return err_setx(e, EINVAL, "truncated record (tag %u)", tag);
        if (tag < 64)
            count[tag]++;
        off += 8 + (size_t)rl;
    }
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
#undef ARR
    for (off = 0; off < len;) {
        uint32_t tag = get_u32(p + off), rl = get_u32(p + off + 4);
        const uint8_t *v = p + off + 8;
        off += 8 + (size_t)rl;
        static const uint8_t minlen[] = {
            [TAG_UID] = 4, [TAG_GID] = 4, [TAG_ADDGID] = 4, [TAG_ROOT_READONLY] = 4, [TAG_MOUNT] = 8,
            [TAG_TERMINAL] = 4, [TAG_UMASK] = 4, [TAG_RLIMIT] = 20, [TAG_CAPS] = 40,
            [TAG_NO_NEW_PRIVS] = 4, [TAG_OOM_SCORE_ADJ] = 4, [TAG_DEVICE] = 24,
            [TAG_ROOT_PROPAGATION] = 4, [TAG_NAMESPACES] = 4, [TAG_SECCOMP_FLAGS] = 4,
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
        case TAG_NAMESPACES: s->nsflags = get_u32(v) | 0x00020000; break;
        case TAG_SECCOMP_FLAGS: s->seccomp_flags = get_u32(v); break;
        case TAG_MOUNT: {
            struct mountrec *m = &s->mounts[s->nmounts++];
            char *str[4];
            m->flags = get_u32(v);
            m->prop = get_u32(v + 4);
            cstrs(s, v + 8, rl - 8, str, 4);
            m->type = str[0], m->source = str[1], m->dest = str[2], m->data = str[3];
            break;
        }
        case TAG_RLIMIT: {
            struct rlim *r = &s->rlimits[s->nrlimits++];
            r->res = get_u32(v), r->soft = get_u64(v + 4), r->hard = get_u64(v + 12);
            break;
        }
        case TAG_CAPS:
            s->has_caps = 1;
            for (int i = 0; i < 5; i++)
                s->caps[i] = get_u64(v + 8 * i);
            break;
        case TAG_SECCOMP:
            if (rl % 8)
                return err_setx(e, EINVAL, "seccomp program of %u bytes is not a whole number of instructions", rl);
            s->seccomp = amalloc(&s->arena, rl);
            memcpy(s->seccomp, v, rl);
            s->seccomp_len = rl;
            break;
        case TAG_MASKED_PATH: s->masked[s->nmasked++] = astr(s, v, rl); break;
        case TAG_READONLY_PATH: s->readonly[s->nreadonly++] = astr(s, v, rl); break;
        case TAG_SYSCTL: {
            char *kv[2];
            cstrs(s, v, rl, kv, 2);
            s->sysctls[s->nsysctls++] = (struct kv){kv[0], kv[1]};
            break;
        }
        case TAG_CGROUP: {
            char *kv[2];
            cstrs(s, v, rl, kv, 2);
            if (!*kv[0] || strchr(kv[0], '/'))
                return err_setx(e, EINVAL, "bad cgroup knob \"%s\"", kv[0]);
            s->cgknobs[s->ncgknobs++] = (struct kv){kv[0], kv[1]};
            break;
        }
        case TAG_SHARE: {
            char *kv[2];
            cstrs(s, v, rl, kv, 2);
            s->shares[s->nshares++] = (struct kv){kv[0], kv[1]};
            break;
        }
        case TAG_UID_MAP:
        case TAG_GID_MAP: {
            int which = tag == TAG_GID_MAP;
            if (rl % 12 || !rl)
                return err_setx(e, EINVAL, "record %u is not a list of (container, host, size)", tag);
            s->idmap[which] = amalloc(&s->arena, rl);
            for (uint32_t i = 0; i < rl / 4; i++)
                s->idmap[which][i] = get_u32(v + 4 * i);
            s->nidmap[which] = rl / 12;
            break;
        }
        case TAG_DEVICE: {
            struct device *d = &s->devices[s->ndevices++];
            d->type = get_u32(v), d->major = get_u32(v + 4), d->minor = get_u32(v + 8);
            d->mode = get_u32(v + 12), d->uid = get_u32(v + 16), d->gid = get_u32(v + 20);
            cstrs(s, v + 24, rl - 24, &d->path, 1);
            break;
        }
        default: break; /* unknown: skipped */
        }
    }
    if (!*s->cwd)
        s->cwd = "/";
    return 0;
}

/* ---- the port ---- */

static int port = -1;
static uint8_t rbuf[2 * (RUNV_HEADER_SIZE + RUNV_MAX_PAYLOAD)];
static size_t rlen;
static uint8_t sbuf[RUNV_HEADER_SIZE + RUNV_MAX_PAYLOAD];

void port_init(int fd) { port = fd; rlen = 0; }
int port_fd(void) { return port; }

static int known_type(uint32_t t)
{
    return (t >= MSG_CREATE && t <= MSG_HELLO) || (t >= MSG_READY && t <= MSG_EXIT) || t == MSG_ACK;
}

int port_read(void)
{
    for (int i = 0; i < 16; i++) {
        ssize_t n = read(port, rbuf + rlen, sizeof rbuf - rlen);
        if (n == 0)
            return 0;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return 1;
            power_off("reading the host port failed");
        }
        rlen += n;
        size_t off = 0;
        while (rlen - off >= RUNV_HEADER_SIZE) {
            uint32_t type = get_u32(rbuf + off), stream = get_u32(rbuf + off + 4), len = get_u32(rbuf + off + 8);
            if (len > RUNV_MAX_PAYLOAD || !known_type(type)) {
                logmsg("protocol error: frame type %u, %u bytes", type, len);
                power_off("protocol error");
            }
            if (rlen - off < RUNV_HEADER_SIZE + len)
                break;
            dispatch(type, stream, rbuf + off + RUNV_HEADER_SIZE, len);
            off += RUNV_HEADER_SIZE + len;
        }
        memmove(rbuf, rbuf + off, rlen - off);
        rlen -= off;
    }
    return 1;
}

void send_frame(uint32_t type, uint32_t stream, const void *data, size_t len)
{
    put_u32(sbuf, type);
    put_u32(sbuf + 4, stream);
    put_u32(sbuf + 8, len);
    if (len)
        memcpy(sbuf + RUNV_HEADER_SIZE, data, len);
    const uint8_t *q = sbuf;
    size_t n = RUNV_HEADER_SIZE + len;
    while (n) {
        ssize_t w = write(port, q, n);
        if (w > 0) {
            q += w, n -= w;
        } else if (w < 0 && errno == EAGAIN) {
            /* The host is slow or not connected (then poll says only POLLHUP). */
            struct pollfd pfd = {.fd = port, .events = POLLOUT};
            if (poll(&pfd, 1, 1000) > 0 && !(pfd.revents & POLLOUT))
                usleep(10000);
        } else if (w < 0 && errno != EINTR) {
            power_off("writing to the host port failed");
        }
    }
}

void send_ok(uint32_t stream, const void *data, size_t len) { send_frame(MSG_OK, stream, data, len); }

void send_ok_u32(uint32_t stream, uint32_t v)
{
    uint8_t b[4];
    put_u32(b, v);
    send_ok(stream, b, 4);
}

void send_error(uint32_t stream, const struct error *e)
{
    uint8_t b[4 + sizeof e->msg];
    size_t n = strnlen(e->msg, sizeof e->msg);
    put_u32(b, e->no);
    memcpy(b + 4, e->msg, n);
    if (debug)
        logmsg("stream %u: error %d: %s", stream, e->no, e->msg);
    send_frame(MSG_ERROR, stream, b, 4 + n);
}

void send_ready(void)
{
    static const char name[] = "runv-agent";
    uint8_t b[4 + sizeof name - 1];
    put_u32(b, RUNV_PROTO_VERSION);
    memcpy(b + 4, name, sizeof name - 1);
    send_frame(MSG_READY, 0, b, sizeof b);
}
