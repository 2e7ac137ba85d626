/* The container's cgroup in the guest (cgroup.c). */
#ifndef RUNV_CGROUP_H
#define RUNV_CGROUP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"
#include "spec.h"

/* The cgroup directory of the container whose init is on `stream`. */
void cgroup_dir(uint32_t stream, char *out, size_t size);
/* Makes the container's cgroup (always) and sets its knobs (CGROUP records). */
int cgroup_prepare(const char *dir, struct spec *s, struct error *e);
/* Sets the knobs of the container's cgroup: UPDATE. */
int cgroup_update(const char *dir, struct spec *s, struct error *e);
/* Moves pid into it. */
int cgroup_enter(const char *dir, pid_t pid, struct error *e);
/* Moves the calling process into the cgroup of the container's init. */
int cgroup_join(pid_t init, struct error *e);
void cgroup_remove(const char *dir);

#endif
