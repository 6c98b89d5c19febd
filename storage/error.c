/*
 * error.c - error codes and the per-thread detailed message of the last failure.
 */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define TL_ERRMSG_BYTES 1024

static __thread char last_error[TL_ERRMSG_BYTES];

int tl_error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return code;
}

void tl_error_clear(void)
{
    last_error[0] = '\0';
}

const char *tl_last_error(void)
{
    return last_error;
}

const char *tl_strerror(int code)
{
    switch (code) {
    case 0:
        return "success";
    case TL_ECORRUPT:
        return "data corruption detected";
    case TL_ENOTINT:
        return "value is not an integer or out of range";
    case TL_ENOTFLOAT:
        return "value is not a valid float";
    case TL_EOVERFLOW:
        return "increment or decrement would overflow";
    case TL_ENANINF:
        return "increment would produce NaN or Infinity";
    case TL_ENOURING:
        return "io_uring is not available";
    case TL_ELOCKED:
        return "data directory is locked by another process";
    case TL_ETOOBIG:
        return "key or value too large";
    case TL_ECLOSED:
        return "database is closed or stopped after an I/O error";
    case TL_EWRONGTYPE:
        return "the key holds a typed value";
    }
    if (code < 0 && code > -4000)
        return strerror(-code);
    return "unknown error";
}
