/* The containers and their processes: the tables by stream, spawning them
 * (CREATE, START, EXEC), reaping them, and EXIT once their output is through.
 * A VM holds one container, or a pod's: the first (stream 1) holds the pod's
 * namespaces, and each next one is created on a stream of its own. */
#ifndef RUNV_PROCESS_H
#define RUNV_PROCESS_H

#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "error.h"
#include "spec.h"
#include "procio.h"

#define INIT_STREAM 1 /* the (first) container's init; other streams are above it */

struct proc {
    struct proc *next;
    uint32_t stream;
    pid_t pid;
    int chan; /* socket to the child until START (init) */
    int exited, status, done; /* reaped, its wait status, EXIT sent */
    struct io io;
};

/* A container: its init, what finds its processes (the init's mount
 * namespace), its guest cgroup, and the seccomp filter its EXECs inherit. */
struct ctr {
    struct ctr *next;
    uint32_t stream; /* its init's */
    struct proc *init;
    struct stat mntns;
    char cgroup[64];
    void *seccomp;
    size_t seccomp_len;
    uint32_t seccomp_flags;
};

/* The container whose init is on `stream`, or NULL. */
struct ctr *ctr_find(uint32_t stream);

struct proc *proc_find(uint32_t stream);
struct proc *proc_new(uint32_t stream);
void proc_remove(struct proc *p);

/* CREATE: a container and its init on `stream`, set up and waiting for START.
 * A pod's next container joins the namespaces of the first one's init named
 * in s->joinflags. */
struct ctr *ctr_create(uint32_t stream, struct spec *s, struct error *e);
int proc_start_init(struct proc *p, struct error *e);
/* EXEC: a process in container c. */
int proc_exec(struct proc *p, struct ctr *c, struct spec *s, struct error *e);

/* The agent's loop: SIGCHLD, an epoll event on a process's stdio. */
void proc_reap(void);
void proc_io_event(uint32_t stream, int role);
/* ACK from the host: an exited process may be done now. */
void proc_ack(struct proc *p, uint32_t which, uint32_t n);
/* The first container's init exited and its EXIT is sent: the VM is done. */
int proc_init_done(void);
/* The pids in container c's mount namespace, at most max. */
int container_pids(struct ctr *c, pid_t *out, int max);

#endif
