/* The container's processes: the table by stream, spawning them (CREATE,
 * START, EXEC), reaping them, and EXIT once their output is through. */
#ifndef RUNV_PROCESS_H
#define RUNV_PROCESS_H

#include <stdint.h>
#include <sys/types.h>

#include "error.h"
#include "spec.h"
#include "procio.h"

#define INIT_STREAM 1 /* the container's init; EXEC streams are above it */

struct proc {
    struct proc *next;
    uint32_t stream;
    pid_t pid;
    int chan; /* socket to the child until START (init) */
    int exited, status, done; /* reaped, its wait status, EXIT sent */
    struct io io;
};
extern struct proc *init_proc;

struct proc *proc_find(uint32_t stream);
struct proc *proc_new(uint32_t stream);
void proc_remove(struct proc *p);

/* CREATE: the container's init, set up and waiting for START. */
int proc_create_init(struct proc *p, struct spec *s, struct error *e);
int proc_start_init(struct proc *p, struct error *e);
/* The container's seccomp filter from CREATE, for the EXECs that bring none. */
void proc_keep_seccomp(const struct spec *s);
/* EXEC: a process in the container of init. */
int proc_exec(struct proc *p, pid_t init, struct spec *s, struct error *e);

/* The agent's loop: SIGCHLD, an epoll event on a process's stdio. */
void proc_reap(void);
void proc_io_event(uint32_t stream, int role);
/* ACK from the host: an exited process may be done now. */
void proc_ack(struct proc *p, uint32_t which, uint32_t n);
/* The container's init exited and its EXIT is sent. */
int proc_init_done(void);
/* The pids in the container's mount namespace, at most max. */
int container_pids(pid_t *out, int max);

#endif
