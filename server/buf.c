/*
 * buf.c - growable byte buffers (struct tl_buf), used for each client's query and reply bytes.
 *
 * A buffer is a malloc'd array that at least doubles when it grows, so appending n bytes costs
 * O(n) amortized. tl_buf_consume moves the rest to the front: callers that drop many small
 * pieces (the request parser) drop them all at once after a batch, not one by one.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

/* The first allocation of a buffer; small replies and requests fit without a second one. */
#define TL_BUF_MIN_CAP 256
/* tl_buf_printf formats into the stack first; longer text is formatted a second time. */
#define TL_BUF_PRINTF_STACK 512

/* Makes room for need more bytes. */
static int buf_reserve(struct tl_buf *b, size_t need)
{
    if (need <= b->cap - b->len)
        return 0;
    if (need > SIZE_MAX / 2 - b->len)
        return -ENOMEM;
    size_t cap = b->cap ? b->cap : TL_BUF_MIN_CAP;
    while (cap < b->len + need)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int tl_buf_append(struct tl_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    int rc = buf_reserve(b, n);
    if (rc < 0)
        return rc;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int tl_buf_printf(struct tl_buf *b, const char *fmt, ...)
{
    char stack[TL_BUF_PRINTF_STACK];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(stack, sizeof(stack), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    if ((size_t)n < sizeof(stack))
        return tl_buf_append(b, stack, (size_t)n);

    /* Too long for the stack: format straight into the buffer (+1 for vsnprintf's NUL). */
    int rc = buf_reserve(b, (size_t)n + 1);
    if (rc < 0)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void tl_buf_consume(struct tl_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

void tl_buf_free(struct tl_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
