/* One handler per host request (dispatch.c). */
#ifndef RUNV_DISPATCH_H
#define RUNV_DISPATCH_H

#include "port.h"

/* Handles f; requests get their OK or ERROR reply here. */
void dispatch(const struct frame *f);

#endif
