/* The last steps of a new container process, in the child (exec.c). */
#ifndef RUNV_EXEC_H
#define RUNV_EXEC_H

#include <sys/types.h>

#include "error.h"
#include "spec.h"

/* rlimits and oom_score_adj of pid (0: this process). */
int apply_limits(pid_t pid, struct spec *s, struct error *e);
/* A pty as the controlling terminal and stdio, its master sent over chan
 * (console: also bind it on /dev/console). */
int child_terminal(int chan, int console, struct error *e);
/* Applies the process records and execs; on failure tells chan and exits. */
_Noreturn void exec_process(struct spec *s, int chan);

#endif
