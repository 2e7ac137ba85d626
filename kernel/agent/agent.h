/* runv guest agent: shared declarations. */
#ifndef RUNV_AGENT_H
#define RUNV_AGENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"
#include "proto.h"
#include "util.h"

#define ROOTFS_DIR "/rootfs"

#include "records.h"
#include "spec.h"

#include "port.h"

/* ---- dispatch.c ---- */
void dispatch(const struct frame *f);

/* ---- restore.c ---- */
void do_hello(const uint8_t *p, uint32_t len);

/* ---- main.c ---- */
#define INIT_STREAM 1 /* the container's init; EXEC streams are above it */

#include "stdio.h"

/* ---- process.c ---- */
struct proc {
    struct proc *next;
    uint32_t stream;
    pid_t pid;
    int chan; /* socket to the child until START (init) */
    int exited, status, done; /* reaped, its wait status, EXIT sent */
    struct io io;
};
extern struct proc *procs, *init_proc;
struct proc *proc_find(uint32_t stream);
struct proc *proc_new(uint32_t stream);
void proc_remove(struct proc *p);
int proc_create_init(struct proc *p, struct spec *s, struct error *e);
int proc_start_init(struct proc *p, struct error *e);
int proc_exec(struct proc *p, pid_t init, struct spec *s, struct error *e);
void container_seccomp_keep(const struct spec *s);
void proc_reap(void);
void proc_ack(struct proc *p, uint32_t which, uint32_t n);
void proc_io_event(uint32_t stream, int role);
int proc_init_done(void);
int container_pids(pid_t *out, int max);

/* ---- net.c ---- */
void net_lo_up(void);
int net_configure(const uint8_t *p, size_t len, struct error *e);

/* ---- container.c ---- */
int mount_shares(struct spec *s, struct error *e);
int cgroup_prepare(struct spec *s, struct error *e);
int cgroup_enter(pid_t pid, struct error *e);
int cgroup_join(pid_t init, struct error *e);
void cgroup_remove(void);
void umount_shares(struct spec *s);
/* in the child, before execve: */
int container_setup(struct spec *s, struct error *e);
int lookup_exe(struct spec *s, struct error *e);

#endif
