/* The container's cgroup in the guest (cgroup.c). */
#ifndef RUNV_CGROUP_H
#define RUNV_CGROUP_H

#include <sys/types.h>

#include "error.h"
#include "spec.h"

/* Makes the container's cgroup (always) and sets its knobs (CGROUP records). */
int cgroup_prepare(struct spec *s, struct error *e);
/* Sets the knobs of the container's cgroup: UPDATE. */
int cgroup_update(struct spec *s, struct error *e);
/* Moves pid into it. */
int cgroup_enter(pid_t pid, struct error *e);
/* Moves the calling process into the cgroup of the container's init. */
int cgroup_join(pid_t init, struct error *e);
void cgroup_remove(void);

#endif
