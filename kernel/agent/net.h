/* Guest NICs (net.c). */
#ifndef RUNV_NET_H
#define RUNV_NET_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* At boot. */
void net_lo_up(void);
/* NETIF: the NIC with the given MAC (or name) renamed, MTU, up, its addresses and routes. */
int net_configure(const uint8_t *p, size_t len, struct error *e);

#endif
