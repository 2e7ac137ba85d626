/* HELLO, from a new host after a restore from a template (restore.c). */
#ifndef RUNV_RESTORE_H
#define RUNV_RESTORE_H

#include <stdint.h>

/* Sets the clock, reseeds the random pool and says READY. */
void restore_hello(const uint8_t *p, uint32_t len);

#endif
