/* The one reader of records (records.h). */
#include <errno.h>

#include "records.h"
#include "util.h"

int rec_next(struct rec_iter *it, uint32_t *tag, const uint8_t **data, uint32_t *len)
{
    size_t left = it->len - it->off;
    if (!left)
        return 0;
    if (left < 8)
        return -1;
    const uint8_t *h = it->p + it->off;
    uint32_t rl = get_u32(h + 4);
    if (rl > left - 8)
        return -1;
    *tag = get_u32(h);
    *data = h + 8;
    *len = rl;
    it->off += 8 + (size_t)rl;
    return 1;
}

int rec_check(const uint8_t *p, size_t len, struct error *e)
{
    struct rec_iter it = rec_iter(p, len);
    uint32_t tag, rl;
    const uint8_t *v;
    int rc;
    while ((rc = rec_next(&it, &tag, &v, &rl)) > 0)
        ;
    if (!rc)
        return 0;
    if (len - it.off < 8)
        return err_setx(e, EINVAL, "truncated record header");
    return err_setx(e, EINVAL, "truncated record (tag %u)", get_u32(p + it.off));
}
