/* A CREATE or EXEC request, parsed from its records (proto.h). */
#ifndef RUNV_SPEC_H
#define RUNV_SPEC_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

struct arena;

struct mountrec {
    uint32_t flags, prop;
    char *type, *source, *dest, *data;
};
struct rlim { uint32_t res; uint64_t soft, hard; };
struct device { uint32_t type, major, minor, mode, uid, gid; char *path; };
struct kv { char *key, *value; };

/* Everything lives in one arena, freed by spec_free. */
struct spec {
    struct arena *arena;
    char **argv, **envp; /* NULL-terminated */
    int nargv, nenv;
    char *cwd, *hostname, *domainname, *exe;
    uint32_t uid, gid;
    uint32_t *gids;
    int ngids;
    int root_ro, terminal, nnp, has_oom, has_caps;
    int32_t oom;
    int umask; /* -1: unset */
    uint64_t caps[5]; /* bounding, effective, inheritable, permitted, ambient */
    struct rlim *rlimits;
    int nrlimits;
    void *seccomp;
    size_t seccomp_len;
    uint32_t seccomp_flags, rootprop, nsflags, joinflags, container;
    char *root_dir; /* a pod's next container: its root, on the pod share */
    struct mountrec *mounts;
    int nmounts;
    char **masked, **readonly;
    int nmasked, nreadonly;
    struct kv *sysctls, *shares; /* shares: key = 9p tag, value = guest dir */
    int nsysctls, nshares;
    struct kv *cgknobs, *podknobs; /* CGROUP, POD_CGROUP: knob, value */
    int ncgknobs, npodknobs;
    struct device *devices;
    int ndevices;
    uint32_t *idmap[2]; /* UID_MAP, GID_MAP: (container, host, size) triples */
    int nidmap[2];
};

int spec_parse(struct spec *s, const uint8_t *p, size_t len, struct error *e);
void spec_free(struct spec *s);

#endif
