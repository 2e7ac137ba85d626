/* The container's filesystem and identity (container.c). */
#ifndef RUNV_CONTAINER_H
#define RUNV_CONTAINER_H

#include "error.h"
#include "spec.h"

/* In the agent: the 9p shares (the rootfs and TAG_SHARE's) for CREATE, and their removal. */
int mount_shares(struct spec *s, struct error *e);
void umount_shares(struct spec *s);

/* In the container's init, in its new namespaces: builds its filesystem,
 * moves it to / and applies the container-wide settings (hostname, sysctls,
 * read-only and masked paths). */
int container_setup(struct spec *s, struct error *e);
/* In a child in the container: ARG[0] against $PATH, into s->exe. */
int lookup_exe(struct spec *s, struct error *e);

#endif
