/*
 * format.c - commands into RESP multibulk requests: "*<argc>\r\n" then "$<len>\r\n<bytes>\r\n"
 * per argument.
 *
 * A format string is split into arguments at spaces. Each conversion adds to the argument it
 * stands in, so "key:%s" is one argument and an empty %s or %b still makes an argument:
 *   %s   a NUL-terminated string
 *   %b   a pointer and a size_t: bytes, NULs allowed
 *   %lld a long long
 *   %%   a percent sign
 * Anything else after % is refused, with the format quoted, rather than guessed at.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Arguments in one formatted command, a bound against a runaway format. */
#define FORMAT_MAX_ARGS (1 << 20)

/* Where one argument sits in the argument bytes. */
struct arg_span {
    size_t off, len;
};

static int append_header(struct tlc_buf *out, char kind, size_t n)
{
    char head[32];
    int w = snprintf(head, sizeof head, "%c%zu\r\n", kind, n);
    return tlc_buf_append(out, head, (size_t)w);
}

static int append_arg(struct tlc_buf *out, const void *p, size_t n)
{
    if (append_header(out, '$', n) != 0 || tlc_buf_append(out, p, n) != 0 ||
        tlc_buf_append(out, "\r\n", 2) != 0)
        return TALLY_ERR_NOMEM;
    return 0;
}

int tlc_format_argv_into(struct tlc_buf *out, int argc, const char *const *argv,
                         const size_t *argvlen)
{
    size_t start = out->len;
    if (argc <= 0)
        return TALLY_ERR_ARG;
    size_t need = 16;
    for (int i = 0; i < argc; i++)
        need += 32 + (argvlen ? argvlen[i] : strlen(argv[i]));
    if (tlc_buf_reserve(out, need) != 0)
        return TALLY_ERR_NOMEM;
    int rc = append_header(out, '*', (size_t)argc);
    for (int i = 0; i < argc && rc == 0; i++)
        rc = append_arg(out, argv[i], argvlen ? argvlen[i] : strlen(argv[i]));
    if (rc != 0)
        out->len = start;
    return rc;
}

TLC_PRINTF(3, 4) static int format_error(char *errbuf, size_t errcap, const char *msg, ...)
{
    if (errbuf && errcap) {
        va_list ap;
        va_start(ap, msg);
        vsnprintf(errbuf, errcap, msg, ap);
        va_end(ap);
    }
    return TALLY_ERR_ARG;
}

int tlc_vformat_into(struct tlc_buf *out, char *errbuf, size_t errcap, const char *fmt, va_list ap)
{
    struct tlc_buf bytes = {0}, spans = {0};
    struct arg_span cur = {0, 0};
    bool in_arg = false;
    int rc = 0;
    char quoted[TLC_QUOTE_BYTES + 16];

    if (!fmt)
        return format_error(errbuf, errcap, "format: NULL");
    for (const char *p = fmt; *p && rc == 0; p++) {
        if (*p == ' ') {
            if (in_arg) {
                cur.len = bytes.len - cur.off;
                rc = tlc_buf_append(&spans, &cur, sizeof cur);
                in_arg = false;
            }
            continue;
        }
        if (!in_arg) {
            cur.off = bytes.len;
            in_arg = true;
        }
        if (*p != '%') {
            rc = tlc_buf_append(&bytes, p, 1);
            continue;
        }
        p++;
        if (*p == 's') {
            const char *s = va_arg(ap, const char *);
            if (!s) {
                rc = format_error(errbuf, errcap, "format %s: NULL for %%s",
                                  tlc_quote(quoted, sizeof quoted, fmt, strlen(fmt)));
                break;
            }
            rc = tlc_buf_append(&bytes, s, strlen(s));
        } else if (*p == 'b') {
            const void *b = va_arg(ap, const void *);
            size_t n = va_arg(ap, size_t);
            if (!b && n) {
                rc = format_error(errbuf, errcap, "format %s: NULL with %zu bytes for %%b",
                                  tlc_quote(quoted, sizeof quoted, fmt, strlen(fmt)), n);
                break;
            }
            rc = tlc_buf_append(&bytes, b, n);
        } else if (p[0] == 'l' && p[1] == 'l' && p[2] == 'd') {
            char num[32];
            int w = snprintf(num, sizeof num, "%lld", va_arg(ap, long long));
            rc = tlc_buf_append(&bytes, num, (size_t)w);
            p += 2;
        } else if (*p == '%') {
            rc = tlc_buf_append(&bytes, "%", 1);
        } else {
            rc = format_error(errbuf, errcap,
                              "format %s: unsupported conversion at byte %zu (use %%s, %%b, "
                              "%%lld or %%%%)",
                              tlc_quote(quoted, sizeof quoted, fmt, strlen(fmt)),
                              (size_t)(p - fmt) - 1);
            break;
        }
        if (spans.len / sizeof cur >= FORMAT_MAX_ARGS)
            rc = format_error(errbuf, errcap, "format: more than %d arguments", FORMAT_MAX_ARGS);
    }
    if (rc == 0 && in_arg) {
        cur.len = bytes.len - cur.off;
        rc = tlc_buf_append(&spans, &cur, sizeof cur);
    }
    size_t argc = spans.len / sizeof cur;
    if (rc == 0 && argc == 0)
        rc = format_error(errbuf, errcap, "format %s: no command in it",
                          tlc_quote(quoted, sizeof quoted, fmt, strlen(fmt)));
    if (rc == 0) {
        size_t start = out->len;
        const struct arg_span *sp = (const struct arg_span *)spans.p;
        rc = append_header(out, '*', argc);
        for (size_t i = 0; i < argc && rc == 0; i++)
            rc = append_arg(out, bytes.p + sp[i].off, sp[i].len);
        if (rc != 0)
            out->len = start;
    }
    if (rc == TALLY_ERR_NOMEM && errbuf && errcap)
        snprintf(errbuf, errcap, "out of memory formatting a command");
    tlc_buf_free(&bytes);
    tlc_buf_free(&spans);
    return rc;
}

int tally_vformat_command(char **out, size_t *len, char *errbuf, size_t errcap, const char *fmt,
                          va_list ap)
{
    struct tlc_buf b = {0};
    int rc = tlc_vformat_into(&b, errbuf, errcap, fmt, ap);
    *out = rc == 0 ? b.p : NULL;
    *len = rc == 0 ? b.len : 0;
    if (rc != 0)
        tlc_buf_free(&b);
    return rc;
}

int tally_format_command(char **out, size_t *len, char *errbuf, size_t errcap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = tally_vformat_command(out, len, errbuf, errcap, fmt, ap);
    va_end(ap);
    return rc;
}

int tally_format_command_argv(char **out, size_t *len, int argc, const char *const *argv,
                              const size_t *argvlen)
{
    struct tlc_buf b = {0};
    int rc = tlc_format_argv_into(&b, argc, argv, argvlen);
    *out = rc == 0 ? b.p : NULL;
    *len = rc == 0 ? b.len : 0;
    if (rc != 0)
        tlc_buf_free(&b);
    return rc;
}
