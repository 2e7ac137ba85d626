/* Records, the payload of CREATE, EXEC and NETIF (proto.h): u32 tag | u32 len | len bytes.
 * Every reader walks them with this iterator:
 *
 *     struct rec_iter it = rec_iter(p, len);
 *     while (rec_next(&it, &tag, &data, &rl) > 0) ...
 */
#ifndef RUNV_RECORDS_H
#define RUNV_RECORDS_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

struct rec_iter {
    const uint8_t *p;
    size_t len, off;
};

static inline struct rec_iter rec_iter(const uint8_t *p, size_t len) { return (struct rec_iter){p, len, 0}; }

/* 1: the next record's tag, data and length; 0: the end; -1: what is left is not a whole record. */
int rec_next(struct rec_iter *it, uint32_t *tag, const uint8_t **data, uint32_t *len);
/* 0 if p is a whole number of records, else -1 and e says what is truncated. */
int rec_check(const uint8_t *p, size_t len, struct error *e);

#endif
