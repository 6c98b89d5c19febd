/*
 * reader.c - the reply reader: RESP2 and RESP3 bytes in, tally_reply trees out.
 *
 * Bytes are appended to a buffer (tally_reader_feed) in any split. tally_reader_get_reply
 * parses item by item from the last complete item: a scalar (a line, or a length line and its
 * payload) is parsed whole or not at all, so only the open aggregates are state: a stack of
 * frames, each the aggregate being filled and how many elements it still needs. A large array
 * that arrives in many pieces is therefore parsed once, not again from its start; a long line
 * still incomplete is searched for its end only in the bytes that are new.
 *
 * RESP3 attributes (|) are parsed as maps and attached to the value that follows them at the
 * same level (tally_reply.attribute). Streamed strings and aggregates ($?, *?) are not
 * supported: Tally and Redis never send them; they are a protocol error.
 *
 * Limits (each a protocol error naming the limit): max_depth aggregates inside aggregates,
 * max_bulk_len bytes in a string (bulk or simple line), max_elements in an aggregate. Element
 * arrays grow as elements arrive, so a header announcing 2^32 elements allocates nothing yet.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Consumed bytes are moved out of the buffer once they are this many and more than half. */
#define READER_COMPACT_BYTES (64 * 1024)
/* The first element array of an aggregate; it doubles as elements arrive. */
#define READER_FIRST_ELEMENTS 8
/* The longest text of a double (",") or big number we parse into a C string. */
#define READER_MAX_NUMBER_TEXT 4096

struct reader_frame {
    tally_reply *agg; /* the aggregate being filled */
    size_t want;      /* elements it holds when complete (a map's keys and values) */
    size_t cap;       /* slots allocated in agg->element */
    bool is_attr;     /* an attribute map: once complete, it goes to the next value */
};

struct tally_reader {
    struct tlc_buf in;
    size_t pos;              /* the first byte not yet part of a complete item */
    size_t scanned;          /* bytes after pos already searched for the end of a line */
    unsigned long long base; /* bytes consumed before in.p[0], for messages */
    int depth;               /* open aggregates */
    struct reader_frame stack[TALLY_READER_MAX_DEPTH];
    tally_reply *attr[TALLY_READER_MAX_DEPTH + 1]; /* an attribute waiting, per depth */
    int max_depth;
    long long max_bulk_len, max_elements;
    int err;
    char errstr[TLC_ERRSTR_BYTES];
};

/* What parsing one item gave. */
enum item_kind {
    ITEM_NEED_MORE,
    ITEM_VALUE,     /* a complete value: a scalar or an empty aggregate */
    ITEM_ATTRIBUTE, /* a complete (empty) attribute map */
    ITEM_OPENED,    /* an aggregate header: a frame was pushed */
    ITEM_ERROR,
};

tally_reader *tally_reader_new(void)
{
    tally_reader *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->max_depth = TALLY_READER_MAX_DEPTH;
    r->max_bulk_len = TALLY_READER_MAX_BULK;
    r->max_elements = TALLY_READER_MAX_ELEMENTS;
    return r;
}

void tally_reader_set_limits(tally_reader *r, int max_depth, long long max_bulk_len,
                             long long max_elements)
{
    if (max_depth > 0)
        r->max_depth = max_depth < TALLY_READER_MAX_DEPTH ? max_depth : TALLY_READER_MAX_DEPTH;
    if (max_bulk_len > 0)
        r->max_bulk_len = max_bulk_len;
    if (max_elements > 0)
        r->max_elements = max_elements;
}

static void reader_drop_state(tally_reader *r)
{
    for (int d = 0; d < r->depth; d++)
        tally_reply_free(r->stack[d].agg);
    for (int d = 0; d <= TALLY_READER_MAX_DEPTH; d++) {
        tally_reply_free(r->attr[d]);
        r->attr[d] = NULL;
    }
    r->depth = 0;
}

void tlc_reader_reset(tally_reader *r)
{
    reader_drop_state(r);
    r->base += r->in.len;
    r->in.len = r->pos = r->scanned = 0;
    r->err = 0;
    r->errstr[0] = 0;
}

void tally_reader_free(tally_reader *r)
{
    if (!r)
        return;
    reader_drop_state(r);
    tlc_buf_free(&r->in);
    free(r);
}

const char *tally_reader_error(const tally_reader *r)
{
    return r->errstr;
}

size_t tally_reader_pending(const tally_reader *r)
{
    return r->in.len - r->pos;
}

int tally_reader_feed(tally_reader *r, const void *data, size_t len)
{
    if (r->err)
        return r->err;
    if (r->pos == r->in.len) {
        r->base += r->pos;
        r->in.len = r->pos = 0;
    } else if (r->pos >= READER_COMPACT_BYTES && r->pos > r->in.len / 2) {
        memmove(r->in.p, r->in.p + r->pos, r->in.len - r->pos);
        r->base += r->pos;
        r->in.len -= r->pos;
        r->pos = 0;
    }
    return tlc_buf_append(&r->in, data, len);
}

TLC_PRINTF(3, 4) static enum item_kind reader_fail(tally_reader *r, size_t at, const char *fmt, ...)
{
    char what[TLC_ERRSTR_BYTES - 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(r->errstr, sizeof r->errstr, "protocol error: %s at byte %llu of the replies", what,
             r->base + at);
    r->err = TALLY_ERR_PROTOCOL;
    return ITEM_ERROR;
}

static enum item_kind reader_oom(tally_reader *r)
{
    snprintf(r->errstr, sizeof r->errstr, "out of memory while reading a reply");
    r->err = TALLY_ERR_NOMEM;
    return ITEM_ERROR;
}

/* Parses p[0..n) as a whole signed decimal integer (no sign on zero-length, no spaces). */
static bool parse_ll(const char *p, size_t n, long long *out)
{
    bool neg = n > 0 && p[0] == '-';
    size_t i = neg ? 1 : 0;
    unsigned long long v = 0;
    unsigned long long limit =
        neg ? (unsigned long long)LLONG_MAX + 1 : (unsigned long long)LLONG_MAX;
    if (i == n)
        return false;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (limit - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = neg ? (long long)(0 - v) : (long long)v;
    return true;
}

static tally_reply *reply_new(enum tally_reply_type type)
{
    tally_reply *rep = calloc(1, sizeof *rep);
    if (rep)
        rep->type = type;
    return rep;
}

/* A reply holding a copy of p[0..n) (NUL-terminated). */
static tally_reply *reply_with_text(enum tally_reply_type type, const char *p, size_t n)
{
    tally_reply *rep = reply_new(type);
    if (!rep)
        return NULL;
    rep->str = malloc(n + 1);
    if (!rep->str) {
        free(rep);
        return NULL;
    }
    memcpy(rep->str, p, n);
    rep->str[n] = 0;
    rep->len = n;
    return rep;
}

/* A double's text as RESP3 allows it: a decimal or exponent form, inf, -inf, nan. */
static bool parse_double(const char *p, size_t n, double *out)
{
    char text[64];
    if (n == 0 || n >= sizeof text)
        return false;
    memcpy(text, p, n);
    text[n] = 0;
    if (strcmp(text, "inf") == 0 || strcmp(text, "+inf") == 0) {
        *out = INFINITY;
        return true;
    }
    if (strcmp(text, "-inf") == 0) {
        *out = -INFINITY;
        return true;
    }
    if (strcmp(text, "nan") == 0 || strcmp(text, "-nan") == 0) {
        *out = NAN;
        return true;
    }
    /* strtod would take spaces, hex and "infinity": refuse what RESP does not write. */
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789+-.eE", text[i]))
            return false;
    char *end;
    errno = 0;
    *out = strtod(text, &end);
    return end == text + n && errno != EINVAL;
}

/* The length after a string or aggregate type byte: -1 (null) only where nil_ok. False after
 * failing with a message that names what (string, aggregate). */
static bool reader_length(tally_reader *r, size_t at, const char *body, size_t blen, bool nil_ok,
                          const char *what, long long *n)
{
    if (blen == 1 && body[0] == '?') {
        reader_fail(r, at, "a streamed %s, which libtally does not support", what);
        return false;
    }
    if (!parse_ll(body, blen, n) || *n < -1 || (*n == -1 && !nil_ok)) {
        reader_fail(r, at, "invalid %s length '%.*s'", what, (int)(blen > 40 ? 40 : blen), body);
        return false;
    }
    return true;
}

/* An aggregate header with count elements (count >= 1): pushes a frame. */
static enum item_kind reader_open(tally_reader *r, enum tally_reply_type type, long long count,
                                  bool is_attr, size_t at)
{
    if (r->depth >= r->max_depth)
        return reader_fail(r, at, "replies nested deeper than the limit of %d", r->max_depth);
    tally_reply *agg = reply_new(type);
    if (!agg)
        return reader_oom(r);
    struct reader_frame *f = &r->stack[r->depth++];
    f->agg = agg;
    f->want = (type == TALLY_REPLY_MAP ? 2 : 1) * (size_t)count;
    f->cap = 0;
    f->is_attr = is_attr;
    return ITEM_OPENED;
}

/* Parses the item at r->pos. A value is returned in *out; the position moves past the item only
 * when it is complete. */
static enum item_kind reader_item(tally_reader *r, tally_reply **out)
{
    const char *buf = r->in.p + r->pos;
    size_t avail = r->in.len - r->pos;
    size_t at = r->pos;
    const char *nl = avail > r->scanned ? memchr(buf + r->scanned, '\n', avail - r->scanned) : NULL;
    if (!nl) {
        r->scanned = avail;
        if ((long long)avail > r->max_bulk_len + 32)
            return reader_fail(r, at, "a line longer than the limit of %lld bytes",
                               r->max_bulk_len);
        return ITEM_NEED_MORE;
    }
    size_t line = (size_t)(nl - buf);           /* bytes before the \n */
    if ((long long)line > r->max_bulk_len + 32) /* the same verdict as when it was incomplete */
        return reader_fail(r, at, "a line longer than the limit of %lld bytes", r->max_bulk_len);
    if (line < 1 || buf[line - 1] != '\r')
        return reader_fail(r, at, "a line that does not end with CRLF");
    if (line < 2)
        return reader_fail(r, at, "an empty line where a reply type byte was expected");
    char type = buf[0];
    const char *body = buf + 1;
    size_t blen = line - 2; /* between the type byte and the CR */
    size_t used = line + 1;
    tally_reply *rep = NULL;
    long long n = 0;

    switch (type) {
    case '+':
    case '-':
        rep = reply_with_text(type == '+' ? TALLY_REPLY_STATUS : TALLY_REPLY_ERROR, body, blen);
        break;
    case ':':
        if (!parse_ll(body, blen, &n))
            return reader_fail(r, at, "invalid integer '%.*s'", (int)(blen > 40 ? 40 : blen), body);
        rep = reply_new(TALLY_REPLY_INTEGER);
        if (rep)
            rep->integer = n;
        break;
    case '_':
        if (blen != 0)
            return reader_fail(r, at, "a null with text after '_'");
        rep = reply_new(TALLY_REPLY_NIL);
        break;
    case '#':
        if (blen != 1 || (body[0] != 't' && body[0] != 'f'))
            return reader_fail(r, at, "a boolean that is not #t or #f");
        rep = reply_new(TALLY_REPLY_BOOL);
        if (rep)
            rep->integer = body[0] == 't';
        break;
    case ',': {
        double d;
        if (!parse_double(body, blen, &d))
            return reader_fail(r, at, "invalid double '%.*s'", (int)(blen > 40 ? 40 : blen), body);
        rep = reply_with_text(TALLY_REPLY_DOUBLE, body, blen);
        if (rep)
            rep->dval = d;
        break;
    }
    case '(': {
        size_t i = blen > 0 && (body[0] == '-' || body[0] == '+') ? 1 : 0;
        if (i == blen || blen > READER_MAX_NUMBER_TEXT)
            return reader_fail(r, at, "invalid big number");
        for (; i < blen; i++)
            if (body[i] < '0' || body[i] > '9')
                return reader_fail(r, at, "invalid big number");
        rep = reply_with_text(TALLY_REPLY_BIGNUM, body, blen);
        break;
    }
    case '$':
    case '!':
    case '=': {
        if (!reader_length(r, at, body, blen, type == '$', "bulk", &n))
            return ITEM_ERROR;
        if (n == -1) {
            rep = reply_new(TALLY_REPLY_NIL);
            break;
        }
        if (n > r->max_bulk_len)
            return reader_fail(r, at, "a string of %lld bytes, over the limit of %lld bytes", n,
                               r->max_bulk_len);
        if (avail - used < (size_t)n + 2)
            return ITEM_NEED_MORE; /* r->scanned stays: the line end is known */
        const char *data = buf + used;
        if (data[n] != '\r' || data[n + 1] != '\n')
            return reader_fail(r, at, "a string of %lld bytes not followed by CRLF", n);
        if (type == '=') {
            if (n < 4 || data[3] != ':')
                return reader_fail(r, at, "a verbatim string without its 'xxx:' format");
            rep = reply_with_text(TALLY_REPLY_VERBATIM, data + 4, (size_t)n - 4);
            if (rep)
                memcpy(rep->vtype, data, 3);
        } else {
            rep = reply_with_text(type == '$' ? TALLY_REPLY_STRING : TALLY_REPLY_ERROR, data,
                                  (size_t)n);
        }
        used += (size_t)n + 2;
        break;
    }
    case '*':
    case '%':
    case '~':
    case '>':
    case '|': {
        if (!reader_length(r, at, body, blen, type == '*', "aggregate", &n))
            return ITEM_ERROR;
        if (n > r->max_elements)
            return reader_fail(r, at, "an aggregate of %lld elements, over the limit of %lld", n,
                               r->max_elements);
        enum tally_reply_type t = type == '*'   ? TALLY_REPLY_ARRAY
                                  : type == '~' ? TALLY_REPLY_SET
                                  : type == '>' ? TALLY_REPLY_PUSH
                                                : TALLY_REPLY_MAP;
        r->pos += used;
        r->scanned = 0;
        if (n > 0)
            return reader_open(r, t, n, type == '|', at);
        *out = reply_new(n == -1 ? TALLY_REPLY_NIL : t);
        if (!*out)
            return reader_oom(r);
        return type == '|' ? ITEM_ATTRIBUTE : ITEM_VALUE;
    }
    default:
        return reader_fail(r, at, "unknown reply type byte 0x%02x", (unsigned char)type);
    }
    if (!rep)
        return reader_oom(r);
    r->pos += used;
    r->scanned = 0;
    *out = rep;
    return ITEM_VALUE;
}

/* Keeps an attribute for the next value at the current depth (a second one replaces it). */
static void reader_keep_attr(tally_reader *r, tally_reply *attr)
{
    tally_reply_free(r->attr[r->depth]);
    r->attr[r->depth] = attr;
}

/* Places a complete value: into the open aggregate, closing the aggregates it completes.
 * Returns true when a top-level reply is ready in *value. */
static bool reader_place(tally_reader *r, tally_reply **value)
{
    tally_reply *v = *value;
    for (;;) {
        if (r->attr[r->depth]) {
            v->attribute = r->attr[r->depth];
            r->attr[r->depth] = NULL;
        }
        if (r->depth == 0) {
            *value = v;
            return true;
        }
        struct reader_frame *f = &r->stack[r->depth - 1];
        tally_reply *agg = f->agg;
        if (agg->elements == f->cap) {
            size_t cap = f->cap ? f->cap * 2 : READER_FIRST_ELEMENTS;
            if (cap > f->want)
                cap = f->want;
            tally_reply **el = realloc(agg->element, cap * sizeof *el);
            if (!el) {
                tally_reply_free(v);
                reader_oom(r);
                return false;
            }
            agg->element = el;
            f->cap = cap;
        }
        agg->element[agg->elements++] = v;
        if (agg->elements < f->want)
            return false;
        bool is_attr = f->is_attr;
        r->depth--;
        v = agg;
        if (is_attr) {
            reader_keep_attr(r, v);
            return false;
        }
    }
}

int tally_reader_get_reply(tally_reader *r, tally_reply **reply)
{
    *reply = NULL;
    while (!r->err) {
        tally_reply *v = NULL;
        switch (reader_item(r, &v)) {
        case ITEM_NEED_MORE:
            return 0;
        case ITEM_ERROR:
        case ITEM_OPENED:
            break;
        case ITEM_ATTRIBUTE:
            reader_keep_attr(r, v);
            break;
        case ITEM_VALUE:
            if (reader_place(r, &v)) {
                *reply = v;
                return 0;
            }
            break;
        }
    }
    reader_drop_state(r);
    return r->err;
}
