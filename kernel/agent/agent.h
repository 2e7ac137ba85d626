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
void init_exited(void);

/* ---- stdio.c ---- */
struct outstream { int fd, ended, eos, watched; uint32_t unacked; };
struct io {
    struct outstream out[2]; /* stdout, stderr */
    int in_fd, in_watched, in_closing, pty;
    char *inbuf;
    size_t inlen, incap;
};
struct proc;
void io_init(struct io *io);
int io_pipes(struct io *io, int child[3], struct error *e);
void io_set_pty(struct proc *p, int master);
void io_start(struct proc *p);
void io_event(struct proc *p, int role, uint32_t events);
void io_stdin(struct proc *p, const uint8_t *buf, size_t len);
void io_ack(struct proc *p, uint32_t which, uint32_t n);
void io_winsize(struct proc *p, uint16_t rows, uint16_t cols);
int io_drain(struct proc *p);
void io_close(struct io *io);
int pty_open(int *master, int *slave, char *slave_path, size_t size, struct error *e);

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
void proc_finish(struct proc *p);
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
