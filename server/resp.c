/*
 * resp.c - the Redis protocol: parsing requests and encoding replies.
 *
 * Requests come in two forms, as in Redis:
 *   - multibulk (RESP2): "*<n>\r\n" then n times "$<len>\r\n<len bytes>\r\n";
 *   - inline, for telnet users: a line ending in "\n" (or "\r\n") split on blanks, with
 *     "..." (backslash escapes, \xHH) and '...' (only \' is special) quoting.
 *
 * The parser keeps no state between calls: tl_parse_request looks at what has been received
 * and either returns one whole request, asks for more bytes, or rejects the input with the
 * text Redis 7 sends. A multibulk request is read in two walks over its headers: the first
 * checks every length and that all the bytes are there, without allocating; the second copies
 * the arguments into one allocation sized exactly from the first walk. So a length field never
 * allocates anything before its bytes have arrived, and every request costs one malloc.
 *
 * Where Redis's behaviour depends on how the bytes were split across reads (a header line or
 * an inline line over the limit is accepted by Redis when its end arrives in the same read),
 * Tally decides on the line's length alone, so the result never depends on the split.
 *
 * Replies append to c->out in the client's protocol (c->resp: 2 or 3). Small replies are
 * built on the stack and appended with one call. When an append fails for lack of memory the
 * client is marked closing and later replies are dropped, so a half-written reply is never
 * followed by more output.
 */
#include "server.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Redis's limits for a client that has not authenticated yet (requirepass set): larger
 * requests are refused before any of their bytes are buffered (CVE-2021-32675). */
#define TL_UNAUTH_MAX_MULTIBULK 10
#define TL_UNAUTH_MAX_BULK      16384

/* string2ll accepts at most 20 characters ("-9223372036854775808"). */
#define TL_LL_MAX_CHARS 20

/* Replies up to this size are assembled on the stack and appended in one call. */
#define TL_REPLY_STACK_BYTES 512

/* Longest decimal text of an int64 plus sign. */
#define TL_INT_TEXT_BYTES 21

/* ---- small helpers ---------------------------------------------------------------------- */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/*
 * Parses a length the way Redis's string2ll does: an optional '-', then digits with no
 * leading zero (a lone "0" is fine), no '+', no spaces, and the value must fit in 64 bits.
 */
static bool parse_ll(const char *p, size_t n, long long *out)
{
    if (n == 0 || n > TL_LL_MAX_CHARS)
        return false;
    if (n == 1 && p[0] == '0') {
        *out = 0;
        return true;
    }
    bool neg = false;
    size_t i = 0;
    if (p[0] == '-') {
        neg = true;
        i = 1;
        if (n == 1)
            return false;
    }
    if (p[i] < '1' || p[i] > '9')
        return false;
    unsigned long long v = 0;
    for (; i < n; i++) {
        unsigned d = (unsigned char)p[i] - '0';
        if (d > 9)
            return false;
        if (v > (~0ull - d) / 10)
            return false;
        v = v * 10 + d;
    }
    if (neg) {
        if (v > (unsigned long long)LLONG_MAX + 1)
            return false;
        *out = v == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)v;
    } else {
        if (v > (unsigned long long)LLONG_MAX)
            return false;
        *out = (long long)v;
    }
    return true;
}

/*
 * Finds the character c that ends a header or inline line starting at p, with avail bytes
 * received. A line longer than limit bytes (not counting its end) is too long whatever the
 * split of the bytes. Returns 1 and the line length in *n, 0 when more bytes are needed, -1
 * when the line is over the limit.
 */
static int find_line_end(const char *p, size_t avail, long long limit, char c, size_t *n)
{
    size_t lim = limit < 0 ? 0 : (size_t)limit;
    size_t scan = avail;
    if (lim < SIZE_MAX && scan > lim + 1)
        scan = lim + 1;
    const char *e = memchr(p, c, scan);
    if (e) {
        *n = (size_t)(e - p);
        return 1;
    }
    return avail > lim ? -1 : 0;
}

/* a + b, saturating (used for the byte counts a partial request still needs). */
static size_t add_sat(size_t a, size_t b)
{
    return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

/* ---- multibulk requests ------------------------------------------------------------------ */

/*
 * Walks the argument headers of a multibulk request whose count line has been read; pos is
 * the offset of the first "$". On success stores the total argument bytes in *bytes and the
 * request's end in *end. Returns a TL_PARSE_* result; on NEED_MORE, *end holds the least
 * number of bytes the request needs.
 */
static int scan_multibulk(const char *buf, size_t len, size_t pos, long long argc,
                          const struct tl_parse_limits *lim, size_t *bytes, size_t *end, char *err,
                          size_t errlen)
{
    size_t total = 0;
    for (long long i = 0; i < argc; i++) {
        size_t n;
        int r = find_line_end(buf + pos, len - pos, lim->inline_max_size, '\r', &n);
        if (r < 0) {
            set_err(err, errlen, "ERR Protocol error: too big bulk count string");
            return TL_PARSE_ERROR;
        }
        /* The byte after '\r' is taken to be '\n' without looking, as Redis does. */
        if (r == 0 || n + 1 >= len - pos) {
            *end = add_sat(pos, r == 0 ? len - pos + 1 : n + 2);
            return TL_PARSE_NEED_MORE;
        }
        if (buf[pos] != '$') {
            set_err(err, errlen, "ERR Protocol error: expected '$', got '%c'", buf[pos]);
            return TL_PARSE_ERROR;
        }
        long long bl;
        if (!parse_ll(buf + pos + 1, n - 1, &bl) || bl < 0 || bl > lim->max_bulk_len) {
            set_err(err, errlen, "ERR Protocol error: invalid bulk length");
            return TL_PARSE_ERROR;
        }
        if (lim->unauthenticated && bl > TL_UNAUTH_MAX_BULK) {
            set_err(err, errlen, "ERR Protocol error: unauthenticated bulk length");
            return TL_PARSE_ERROR;
        }
        pos += n + 2;
        /* The two bytes after the data are skipped unread, as Redis does. */
        size_t need = (size_t)bl;
        if (len - pos < need || len - pos - need < 2) {
            *end = add_sat(add_sat(pos, need), 2 + (size_t)(argc - i - 1) * 6);
            return TL_PARSE_NEED_MORE;
        }
        pos += need + 2;
        total += need;
    }
    *bytes = total;
    *end = pos;
    return TL_PARSE_OK;
}

/*
 * Lays out argc arguments and their bytes in one allocation: the argv pointers, then the
 * lengths, then each argument followed by a NUL. tl_args_free releases it with one free().
 */
static int args_alloc(struct tl_args *a, size_t argc, size_t bytes)
{
    size_t head = argc * (sizeof(char *) + sizeof(size_t));
    char *block = malloc(head + bytes + argc);
    if (!block)
        return -1;
    a->argc = (int)argc;
    a->argv = (char **)block;
    a->len = (size_t *)(block + argc * sizeof(char *));
    return 0;
}

static char *args_data(struct tl_args *a)
{
    return (char *)a->argv + (size_t)a->argc * (sizeof(char *) + sizeof(size_t));
}

static int parse_multibulk(const char *buf, size_t len, const struct tl_parse_limits *lim,
                           struct tl_args *args, size_t *consumed, char *err, size_t errlen)
{
    size_t n;
    int r = find_line_end(buf, len, lim->inline_max_size, '\r', &n);
    if (r < 0) {
        set_err(err, errlen, "ERR Protocol error: too big mbulk count string");
        return TL_PARSE_ERROR;
    }
    if (r == 0 || n + 1 >= len) {
        *consumed = r == 0 ? len + 1 : n + 2;
        return TL_PARSE_NEED_MORE;
    }
    long long argc;
    if (!parse_ll(buf + 1, n - 1, &argc) || argc > INT_MAX || argc > lim->max_multibulk_len) {
        set_err(err, errlen, "ERR Protocol error: invalid multibulk length");
        return TL_PARSE_ERROR;
    }
    if (argc <= 0) { /* "*0" and "*-1" are skipped, as Redis does */
        *consumed = n + 2;
        return TL_PARSE_OK;
    }
    if (lim->unauthenticated && argc > TL_UNAUTH_MAX_MULTIBULK) {
        set_err(err, errlen, "ERR Protocol error: unauthenticated multibulk length");
        return TL_PARSE_ERROR;
    }

    size_t bytes, end;
    r = scan_multibulk(buf, len, n + 2, argc, lim, &bytes, &end, err, errlen);
    if (r != TL_PARSE_OK) {
        if (r == TL_PARSE_NEED_MORE)
            *consumed = end;
        return r;
    }
    if (args_alloc(args, (size_t)argc, bytes) != 0) {
        set_err(err, errlen, "ERR out of memory reading a request");
        return TL_PARSE_ERROR;
    }

    /* Second walk: every header was checked above, so only the lengths are read again. */
    char *dst = args_data(args);
    size_t pos = n + 2;
    for (int i = 0; i < args->argc; i++) {
        const char *p = buf + pos + 1;
        size_t bl = 0;
        while (*p != '\r')
            bl = bl * 10 + (size_t)(*p++ - '0');
        pos = (size_t)(p - buf) + 2;
        memcpy(dst, buf + pos, bl);
        dst[bl] = '\0';
        args->argv[i] = dst;
        args->len[i] = bl;
        dst += bl + 1;
        pos += bl + 2;
    }
    *consumed = end;
    return TL_PARSE_OK;
}

/* ---- inline requests --------------------------------------------------------------------- */

/* The blanks that separate arguments and may follow a closing quote (C's isspace). */
static inline bool is_blank(unsigned char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

static inline int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * Splits an inline line into arguments with Redis's rules (its sdssplitargs behaviour):
 * blanks separate arguments; outside quotes only space, tab, CR and LF end an argument, and a
 * quote opens a quoted part that continues the same argument; inside "..." the escapes \n \r
 * \t \b \a \xHH and \<any> are decoded; inside '...' only \' is; a closing quote must be
 * followed by a blank or the end of the line.
 *
 * With a NULL out it only counts: *argc arguments of *bytes bytes in all. With out, it also
 * stores each argument (NUL-terminated) at out and fills a's argv and len. Returns -1 on an
 * unterminated quote or a closing quote followed by something else.
 */
static int split_inline(const char *p, size_t n, int *argc, size_t *bytes, char *out,
                        struct tl_args *a)
{
    size_t i = 0, total = 0;
    int count = 0;
    for (;;) {
        while (i < n && is_blank((unsigned char)p[i]))
            i++;
        if (i == n)
            break;
        char *start = out;
        size_t alen = 0;
        enum { PLAIN, DOUBLE_QUOTED, SINGLE_QUOTED } state = PLAIN;
        for (bool done = false; !done;) {
            if (i == n) {
                if (state != PLAIN)
                    return -1;
                break;
            }
            unsigned char ch = (unsigned char)p[i];
            int emit = -1;
            if (state == DOUBLE_QUOTED) {
                int h1, h2;
                if (ch == '\\' && i + 3 < n && p[i + 1] == 'x' &&
                    (h1 = hex_value((unsigned char)p[i + 2])) >= 0 &&
                    (h2 = hex_value((unsigned char)p[i + 3])) >= 0) {
                    emit = h1 * 16 + h2;
                    i += 3;
                } else if (ch == '\\' && i + 1 < n) {
                    i++;
                    switch (p[i]) {
                    case 'n':
                        emit = '\n';
                        break;
                    case 'r':
                        emit = '\r';
                        break;
                    case 't':
                        emit = '\t';
                        break;
                    case 'b':
                        emit = '\b';
                        break;
                    case 'a':
                        emit = '\a';
                        break;
                    default:
                        emit = (unsigned char)p[i];
                        break;
                    }
                } else if (ch == '"') {
                    if (i + 1 < n && !is_blank((unsigned char)p[i + 1]))
                        return -1;
                    done = true;
                } else {
                    emit = ch;
                }
            } else if (state == SINGLE_QUOTED) {
                if (ch == '\\' && i + 1 < n && p[i + 1] == '\'') {
                    emit = '\'';
                    i++;
                } else if (ch == '\'') {
                    if (i + 1 < n && !is_blank((unsigned char)p[i + 1]))
                        return -1;
                    done = true;
                } else {
                    emit = ch;
                }
            } else {
                switch (ch) {
                case ' ':
                case '\n':
                case '\r':
                case '\t':
                    done = true;
                    break;
                case '"':
                    state = DOUBLE_QUOTED;
                    break;
                case '\'':
                    state = SINGLE_QUOTED;
                    break;
                default:
                    emit = ch;
                    break;
                }
            }
            if (emit >= 0) {
                if (out)
                    *out++ = (char)emit;
                alen++;
            }
            i++;
        }
        if (out) {
            *out++ = '\0';
            a->argv[count] = start;
            a->len[count] = alen;
        }
        total += alen;
        count++;
    }
    *argc = count;
    *bytes = total;
    return 0;
}

static int parse_inline(const char *buf, size_t len, const struct tl_parse_limits *lim,
                        struct tl_args *args, size_t *consumed, char *err, size_t errlen)
{
    size_t n;
    int r = find_line_end(buf, len, lim->inline_max_size, '\n', &n);
    if (r < 0) {
        set_err(err, errlen, "ERR Protocol error: too big inline request");
        return TL_PARSE_ERROR;
    }
    if (r == 0) {
        *consumed = len + 1;
        return TL_PARSE_NEED_MORE;
    }
    size_t line = n;
    if (line > 0 && buf[line - 1] == '\r')
        line--;
    /* Redis reads the line as a C string: a NUL ends it. */
    const char *nul = memchr(buf, '\0', line);
    if (nul)
        line = (size_t)(nul - buf);

    int argc;
    size_t bytes;
    if (split_inline(buf, line, &argc, &bytes, NULL, NULL) != 0) {
        set_err(err, errlen, "ERR Protocol error: unbalanced quotes in request");
        return TL_PARSE_ERROR;
    }
    if (argc > 0) {
        if (args_alloc(args, (size_t)argc, bytes) != 0) {
            set_err(err, errlen, "ERR out of memory reading a request");
            return TL_PARSE_ERROR;
        }
        split_inline(buf, line, &argc, &bytes, args_data(args), args);
    }
    *consumed = n + 1;
    return TL_PARSE_OK;
}

int tl_parse_request(const char *buf, size_t len, const struct tl_parse_limits *lim,
                     struct tl_args *args, size_t *consumed, char *err, size_t errlen)
{
    args->argc = 0;
    args->argv = NULL;
    args->len = NULL;
    *consumed = 0;
    if (err && errlen)
        err[0] = '\0';
    if (len == 0) {
        *consumed = 1;
        return TL_PARSE_NEED_MORE;
    }
    int r = buf[0] == '*' ? parse_multibulk(buf, len, lim, args, consumed, err, errlen)
                          : parse_inline(buf, len, lim, args, consumed, err, errlen);
    if (r == TL_PARSE_ERROR)
        *consumed = 0;
    return r;
}

/* Reads "<digits>\r\n" at buf[*at], below len; returns false if it is not there whole. */
static bool peek_count(const char *buf, size_t len, size_t *at, size_t *v)
{
    size_t i = *at, n = 0;
    while (i < len && buf[i] >= '0' && buf[i] <= '9' && i - *at < 10)
        n = n * 10 + (size_t)(buf[i++] - '0');
    if (i == *at || i + 1 >= len || buf[i] != '\r' || buf[i + 1] != '\n')
        return false;
    *v = n;
    *at = i + 2;
    return true;
}

size_t tl_peek_request(const char *buf, size_t len, const char **key, size_t *klen)
{
    size_t at = 1, argc, n;
    *key = NULL;
    *klen = 0;
    if (len == 0 || buf[0] != '*' || !peek_count(buf, len, &at, &argc) || argc == 0 ||
        argc > TL_PEEK_MAX_ARGS)
        return 0;
    for (size_t i = 0; i < argc; i++) {
        if (at >= len || buf[at] != '$')
            return 0;
        at++;
        if (!peek_count(buf, len, &at, &n) || n > len || len - at < n + 2)
            return 0;
        if (i == 1) {
            *key = buf + at;
            *klen = n;
        }
        at += n + 2;
    }
    return at;
}

void tl_args_free(struct tl_args *args)
{
    free(args->argv); /* one block holds the pointers, the lengths and the bytes */
    args->argv = NULL;
    args->len = NULL;
    args->argc = 0;
}

/* ---- replies ----------------------------------------------------------------------------- */

static inline void out_append(struct tl_client *c, const void *p, size_t n)
{
    if (c->closing)
        return;
    if (tl_buf_append(&c->out, p, n) != 0)
        c->closing = true;
}

/* Writes v's decimal text ending at end; returns where it starts. */
static char *format_u64_back(char *end, uint64_t v)
{
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return end;
}

/* Writes prefix, v and "\r\n" into buf (at least TL_INT_TEXT_BYTES + 3); returns the length. */
static size_t format_header(char *buf, char prefix, int64_t v)
{
    char tmp[TL_INT_TEXT_BYTES];
    char *end = tmp + sizeof tmp;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    char *s = format_u64_back(end, u);
    if (v < 0)
        *--s = '-';
    size_t n = (size_t)(end - s);
    buf[0] = prefix;
    memcpy(buf + 1, s, n);
    buf[n + 1] = '\r';
    buf[n + 2] = '\n';
    return n + 3;
}

static void reply_header(struct tl_client *c, char prefix, int64_t v)
{
    char buf[TL_INT_TEXT_BYTES + 3];
    out_append(c, buf, format_header(buf, prefix, v));
}

/* Appends prefix, text with CR and LF turned into spaces, and "\r\n". */
static void reply_line(struct tl_client *c, char prefix, const char *text)
{
    size_t n = strlen(text);
    char stack[TL_REPLY_STACK_BYTES];
    if (n + 3 <= sizeof stack) {
        stack[0] = prefix;
        for (size_t i = 0; i < n; i++) {
            char ch = text[i];
            stack[i + 1] = (ch == '\r' || ch == '\n') ? ' ' : ch;
        }
        stack[n + 1] = '\r';
        stack[n + 2] = '\n';
        out_append(c, stack, n + 3);
        return;
    }
    if (c->closing)
        return;
    size_t at = c->out.len;
    out_append(c, &prefix, 1);
    out_append(c, text, n);
    out_append(c, "\r\n", 2);
    if (c->closing)
        return;
    for (size_t i = at + 1; i < at + 1 + n; i++)
        if (c->out.data[i] == '\r' || c->out.data[i] == '\n')
            c->out.data[i] = ' ';
}

void tl_reply_ok(struct tl_client *c)
{
    out_append(c, "+OK\r\n", 5);
}

void tl_reply_status(struct tl_client *c, const char *s)
{
    reply_line(c, '+', s);
}

void tl_reply_error(struct tl_client *c, const char *text)
{
    reply_line(c, '-', text);
}

void tl_reply_errorf(struct tl_client *c, const char *fmt, ...)
{
    char stack[TL_REPLY_STACK_BYTES];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(stack, sizeof stack, fmt, ap);
    va_end(ap);
    if (n < 0) {
        tl_reply_error(c, "ERR could not format the error");
        return;
    }
    if ((size_t)n < sizeof stack) {
        tl_reply_error(c, stack);
        return;
    }
    char *heap = malloc((size_t)n + 1);
    if (!heap) {
        c->closing = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(heap, (size_t)n + 1, fmt, ap);
    va_end(ap);
    tl_reply_error(c, heap);
    free(heap);
}

void tl_reply_int(struct tl_client *c, int64_t v)
{
    reply_header(c, ':', v);
}

void tl_reply_bulk(struct tl_client *c, const void *p, size_t n)
{
    char stack[TL_REPLY_STACK_BYTES];
    size_t h = format_header(stack, '$', (int64_t)n);
    if (h + n + 2 <= sizeof stack) {
        memcpy(stack + h, p, n);
        stack[h + n] = '\r';
        stack[h + n + 1] = '\n';
        out_append(c, stack, h + n + 2);
        return;
    }
    out_append(c, stack, h);
    out_append(c, p, n);
    out_append(c, "\r\n", 2);
}

void tl_reply_cstr(struct tl_client *c, const char *s)
{
    tl_reply_bulk(c, s, strlen(s));
}

void tl_reply_null(struct tl_client *c)
{
    if (c->resp >= 3)
        out_append(c, "_\r\n", 3);
    else
        out_append(c, "$-1\r\n", 5);
}

void tl_reply_null_array(struct tl_client *c)
{
    if (c->resp >= 3)
        out_append(c, "_\r\n", 3);
    else
        out_append(c, "*-1\r\n", 5);
}

void tl_reply_array(struct tl_client *c, size_t n)
{
    reply_header(c, '*', (int64_t)n);
}

void tl_reply_map(struct tl_client *c, size_t n)
{
    if (c->resp >= 3)
        reply_header(c, '%', (int64_t)n);
    else
        reply_header(c, '*', (int64_t)(2 * n));
}

void tl_reply_set(struct tl_client *c, size_t n)
{
    reply_header(c, c->resp >= 3 ? '~' : '*', (int64_t)n);
}

void tl_reply_double(struct tl_client *c, double d)
{
    /* Redis 7.0 prints doubles with %.17g; infinities and NaN have fixed spellings. */
    char text[32];
    int n;
    if (isnan(d))
        n = snprintf(text, sizeof text, "nan");
    else if (isinf(d))
        n = snprintf(text, sizeof text, "%s", d > 0 ? "inf" : "-inf");
    else
        n = snprintf(text, sizeof text, "%.17g", d);
    tl_reply_double_text(c, text, (size_t)n);
}

void tl_reply_double_text(struct tl_client *c, const char *text, size_t len)
{
    if (c->resp < 3) {
        tl_reply_bulk(c, text, len);
        return;
    }
    char stack[TL_REPLY_STACK_BYTES];
    if (len + 3 <= sizeof stack) {
        stack[0] = ',';
        memcpy(stack + 1, text, len);
        stack[len + 1] = '\r';
        stack[len + 2] = '\n';
        out_append(c, stack, len + 3);
        return;
    }
    /* INCRBYFLOAT's text of a huge value has thousands of digits (TL_FLOAT_BUF). */
    out_append(c, ",", 1);
    out_append(c, text, len);
    out_append(c, "\r\n", 2);
}

void tl_reply_bool(struct tl_client *c, bool b)
{
    if (c->resp >= 3)
        out_append(c, b ? "#t\r\n" : "#f\r\n", 4);
    else
        out_append(c, b ? ":1\r\n" : ":0\r\n", 4);
}

void tl_reply_verbatim(struct tl_client *c, const char *p, size_t n)
{
    if (c->resp < 3) {
        tl_reply_bulk(c, p, n);
        return;
    }
    char head[TL_INT_TEXT_BYTES + 3 + 4];
    size_t h = format_header(head, '=', (int64_t)(n + 4));
    memcpy(head + h, "txt:", 4);
    out_append(c, head, h + 4);
    out_append(c, p, n);
    out_append(c, "\r\n", 2);
}

void tl_reply_val(struct tl_client *c, const struct tl_val *v)
{
    if (v->type == TL_VAL_INT) {
        char tmp[TL_INT_TEXT_BYTES];
        char *end = tmp + sizeof tmp;
        uint64_t u = v->i < 0 ? (uint64_t)0 - (uint64_t)v->i : (uint64_t)v->i;
        char *s = format_u64_back(end, u);
        if (v->i < 0)
            *--s = '-';
        tl_reply_bulk(c, s, (size_t)(end - s));
    } else {
        tl_reply_bulk(c, v->bytes, v->len);
    }
}
