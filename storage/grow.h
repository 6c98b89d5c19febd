/*
 * grow.h - growing an array by doubling, shared by the builders.
 */
#ifndef TL_GROW_H
#define TL_GROW_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

/* Grows *buf (of capacity *cap elements of size elem) to hold at least need elements, starting
 * from initial. Returns 0 or -ENOMEM (then *buf is unchanged). */
static inline int tl_grow(void **buf, size_t *cap, size_t need, size_t elem, size_t initial)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : initial;
    while (n < need) {
        if (n > SIZE_MAX / 2 / elem)
            return -ENOMEM;
        n *= 2;
    }
    void *p = realloc(*buf, n * elem);
    if (!p)
        return -ENOMEM;
    *buf = p;
    *cap = n;
    return 0;
}

#endif
