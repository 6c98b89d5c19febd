/*
 * value.c - the text forms of values: canonical integers (a byte value that reads as one is
 * stored as an integer, and reads back as the same bytes), and floats as INCRBYFLOAT keeps
 * them (long double arithmetic, printed with 17 decimals and trailing zeros removed).
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tallystore.h"

/* The longest text tl_parse_float accepts, as Redis's MAX_LONG_DOUBLE_CHARS. */
#define TL_FLOAT_TEXT_MAX 5120

void tl_val_clear(struct tl_val *v)
{
    free(v->bytes);
    v->bytes = NULL;
    v->len = 0;
}

bool tl_parse_int(const char *s, size_t len, int64_t *out)
{
    if (len == 0 || len > 20)
        return false;
    if (len == 1 && s[0] == '0') {
        *out = 0;
        return true;
    }
    size_t i = 0;
    bool neg = false;
    if (s[0] == '-') {
        neg = true;
        i = 1;
        if (len == 1)
            return false;
    }
    if (s[i] < '1' || s[i] > '9')
        return false;
    uint64_t v = 0;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    if (neg) {
        if (v > (uint64_t)INT64_MAX + 1)
            return false;
        *out = (int64_t)(0 - v);
    } else {
        if (v > (uint64_t)INT64_MAX)
            return false;
        *out = (int64_t)v;
    }
    return true;
}

bool tl_parse_float(const char *s, size_t len, long double *out)
{
    char buf[TL_FLOAT_TEXT_MAX + 1];
    if (len == 0 || len >= sizeof buf)
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (isspace((unsigned char)buf[0]))
        return false;
    char *end;
    errno = 0;
    long double v = strtold(buf, &end);
    if (*end != '\0' || isnan(v))
        return false;
    if (errno == ERANGE && (v == HUGE_VALL || v == -HUGE_VALL || v == 0))
        return false;
    *out = v;
    return true;
}

size_t tl_format_float(long double v, char *buf, size_t cap)
{
    if (isinf(v))
        return (size_t)snprintf(buf, cap, "%s", v > 0 ? "inf" : "-inf");
    int n = snprintf(buf, cap, "%.17Lf", v);
    if (n < 0 || (size_t)n >= cap)
        return 0;
    size_t len = (size_t)n;
    if (strchr(buf, '.')) {
        while (len > 0 && buf[len - 1] == '0')
            len--;
        if (len > 0 && buf[len - 1] == '.')
            len--;
    }
    if (len == 2 && buf[0] == '-' && buf[1] == '0') {
        buf[0] = '0';
        len = 1;
    }
    buf[len] = '\0';
    return len;
}
