#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

static int vset(struct error *e, int no, int with_errno, const char *fmt, va_list ap)
{
    int n = vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    if (n < 0)
        n = 0;
    if (with_errno && (size_t)n < sizeof e->msg)
        snprintf(e->msg + n, sizeof e->msg - n, ": %s", strerror(no));
    e->no = no;
    return -1;
}

int err_set(struct error *e, int no, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset(e, no, 1, fmt, ap);
    va_end(ap);
    return -1;
}

int err_setx(struct error *e, int no, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset(e, no, 0, fmt, ap);
    va_end(ap);
    return -1;
}
