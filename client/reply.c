/*
 * reply.c - what every libtally file uses: freeing replies, the names of reply types and
 * error codes, the growable byte buffer, and the quoting of keys in error messages.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void tally_reply_free(tally_reply *reply)
{
    if (!reply)
        return;
    /* Depth is bounded by the reader's max_depth, so recursion is bounded too. */
    for (size_t i = 0; i < reply->elements; i++)
        tally_reply_free(reply->element[i]);
    free(reply->element);
    tally_reply_free(reply->attribute);
    free(reply->str);
    free(reply);
}

const char *tally_reply_type_name(enum tally_reply_type type)
{
    switch (type) {
    case TALLY_REPLY_STRING:
        return "string";
    case TALLY_REPLY_STATUS:
        return "status";
    case TALLY_REPLY_ERROR:
        return "error";
    case TALLY_REPLY_INTEGER:
        return "integer";
    case TALLY_REPLY_NIL:
        return "nil";
    case TALLY_REPLY_ARRAY:
        return "array";
    case TALLY_REPLY_MAP:
        return "map";
    case TALLY_REPLY_SET:
        return "set";
    case TALLY_REPLY_DOUBLE:
        return "double";
    case TALLY_REPLY_BOOL:
        return "boolean";
    case TALLY_REPLY_VERBATIM:
        return "verbatim string";
    case TALLY_REPLY_BIGNUM:
        return "big number";
    case TALLY_REPLY_PUSH:
        return "push";
    }
    return "unknown";
}

const char *tally_strerror(int code)
{
    switch (code) {
    case TALLY_OK:
        return "success";
    case TALLY_ERR_IO:
        return "input/output error on the connection";
    case TALLY_ERR_EOF:
        return "the server closed the connection";
    case TALLY_ERR_TIMEOUT:
        return "timed out";
    case TALLY_ERR_PROTOCOL:
        return "protocol error in the server's reply";
    case TALLY_ERR_REPLY:
        return "the server answered with an error";
    case TALLY_ERR_TYPE:
        return "unexpected reply type";
    case TALLY_ERR_NOMEM:
        return "out of memory";
    case TALLY_ERR_ARG:
        return "invalid argument";
    case TALLY_ERR_RESOLVE:
        return "host name not resolved";
    case TALLY_ERR_CLOSED:
        return "the connection is closed";
    }
    return "unknown error code";
}

int tlc_buf_reserve(struct tlc_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return 0;
    if (extra > SIZE_MAX / 2 - b->len)
        return TALLY_ERR_NOMEM;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return TALLY_ERR_NOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

int tlc_buf_append(struct tlc_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (tlc_buf_reserve(b, n) != 0)
        return TALLY_ERR_NOMEM;
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

void tlc_buf_free(struct tlc_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

char *tlc_quote(char *out, size_t cap, const void *p, size_t n)
{
    const unsigned char *s = p;
    size_t o = 0;
    if (cap < 8) {
        if (cap)
            out[0] = 0;
        return out;
    }
    out[o++] = '"';
    for (size_t i = 0; i < n; i++) {
        char esc[5];
        int w;
        if (s[i] == '"' || s[i] == '\\')
            w = snprintf(esc, sizeof esc, "\\%c", s[i]);
        else if (s[i] < 0x20 || s[i] >= 0x7f)
            w = snprintf(esc, sizeof esc, "\\x%02x", s[i]);
        else
            w = snprintf(esc, sizeof esc, "%c", s[i]);
        /* Room for this, the closing quote, "..." and the NUL. */
        if (i >= TLC_QUOTE_BYTES || o + (size_t)w + 5 > cap) {
            memcpy(out + o, "\"...", 5);
            return out;
        }
        memcpy(out + o, esc, (size_t)w);
        o += (size_t)w;
    }
    out[o++] = '"';
    out[o] = 0;
    return out;
}
