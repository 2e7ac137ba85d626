/* The socket between the agent and a child it is setting up as a container
 * process (SOCK_SEQPACKET): the child reports its pid (EXEC), its pty and
 * READY (CREATE) or an error; the agent says GO (the init: once its user
 * namespace is mapped; an EXEC's: once the helper is reaped) and START. */
#ifndef RUNV_CHAN_H
#define RUNV_CHAN_H

#include <stdint.h>

#include "error.h"

enum { CH_READY = 1, CH_ERROR, CH_PID, CH_PTY, CH_START, CH_GO };
struct chanmsg {
    int32_t kind, pid; /* pid: CH_PID's */
    struct error err;  /* CH_ERROR's */
};

/* A message of kind (with pid for CH_PID, and fd passed along unless -1); 0 or -1. */
int chan_send(int sock, int kind, int pid, int fd);
/* The next message into m, a passed fd into *fd (or closed if fd is NULL); the bytes read, 0 at EOF. */
int chan_recv(int sock, struct chanmsg *m, int *fd);
/* In the child: sends e as CH_ERROR and exits. */
_Noreturn void chan_fail(int sock, const struct error *e);

#endif
