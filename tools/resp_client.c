/*
 * resp_client.c - the little RESP2 client tallyctl needs: connect (with AUTH), send a command
 * as a multibulk, read one reply into a tree. Blocking sockets with a timeout; replies are
 * bounded in size and depth so that a wrong server cannot make tallyctl allocate without end.
 * (tallyctl does not use libtally: the tool and the library are built independently.)
 */
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "tallyctl.h"

#define CTL_IO_TIMEOUT_S     120 /* a checkpoint answers once the copy is written */
#define CTL_REPLY_MAX_DEPTH  8
#define CTL_REPLY_MAX_BULK   (64LL << 20)
#define CTL_REPLY_MAX_ARRAY  (1LL << 20)
#define CTL_READ_CHUNK_BYTES 16384
#define CTL_LINE_MAX_BYTES   (64 << 10)

static int fail(struct ctl_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct ctl_conn *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(c->err, sizeof c->err, "%s: ", c->where);
    vsnprintf(c->err + n, sizeof c->err - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

int ctl_connect(struct ctl_conn *c, const struct ctl_opts *o)
{
    memset(c, 0, sizeof *c);
    c->fd = -1;
    snprintf(c->where, sizeof c->where, "%s:%d", o->host, o->port);
    char port[16];
    snprintf(port, sizeof port, "%d", o->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int rc = getaddrinfo(o->host, port, &hints, &res);
    if (rc != 0)
        return fail(c, "cannot resolve the host: %s", gai_strerror(rc));
    int err = 0;
    for (struct addrinfo *ai = res; ai && c->fd < 0; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        struct timeval tv = {.tv_sec = CTL_IO_TIMEOUT_S};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            c->fd = fd;
        } else {
            err = errno;
            close(fd);
        }
    }
    freeaddrinfo(res);
    if (c->fd < 0)
        return fail(c, "cannot connect: %s (is tallyd running there? -h and -p name the server)",
                    strerror(err));
    if (o->password) {
        struct ctl_reply r;
        const char *argv[] = {"AUTH", o->password};
        if (ctl_command(c, &r, 2, argv) < 0)
            return -1;
        bool ok = r.type == CTL_REPLY_STATUS;
        if (!ok)
            fail(c, "AUTH refused: %s", r.str ? r.str : "unexpected reply");
        ctl_reply_free(&r);
        if (!ok)
            return -1;
    }
    return 0;
}

void ctl_close(struct ctl_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
}

static int send_all(struct ctl_conn *c, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return fail(c, "sending a command: %s", strerror(errno));
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Makes at least need bytes available at c->buf + c->pos, reading as needed. */
static int fill(struct ctl_conn *c, size_t need)
{
    while (c->len - c->pos < need) {
        if (c->pos > 0) {
            memmove(c->buf, c->buf + c->pos, c->len - c->pos);
            c->len -= c->pos;
            c->pos = 0;
        }
        size_t want = need + CTL_READ_CHUNK_BYTES;
        if (c->cap < want) {
            char *nb = realloc(c->buf, want);
            if (!nb)
                return fail(c, "out of memory for a reply of %zu bytes", need);
            c->buf = nb;
            c->cap = want;
        }
        ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return fail(c, "no reply within %d s", CTL_IO_TIMEOUT_S);
        if (r < 0)
            return fail(c, "reading a reply: %s", strerror(errno));
        if (r == 0)
            return fail(c, "the server closed the connection");
        c->len += (size_t)r;
    }
    return 0;
}

/* Reads one CRLF-terminated line; *line (NUL-terminated, CRLF cut) points into c->buf. */
static int read_line(struct ctl_conn *c, char **line, size_t *n)
{
    for (size_t scanned = 0;;) {
        char *start = c->buf ? c->buf + c->pos : NULL;
        size_t avail = c->len - c->pos;
        for (size_t i = scanned; i + 1 < avail; i++) {
            if (start[i] == '\r' && start[i + 1] == '\n') {
                start[i] = '\0';
                *line = start;
                *n = i;
                c->pos += i + 2;
                return 0;
            }
        }
        if (avail > CTL_LINE_MAX_BYTES)
            return fail(c, "a reply line is longer than %d bytes", CTL_LINE_MAX_BYTES);
        scanned = avail ? avail - 1 : 0;
        if (fill(c, avail + 1) < 0)
            return -1;
    }
}

static int parse_len(struct ctl_conn *c, const char *s, long long max, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < -1 || v > max)
        return fail(c, "malformed reply: bad length '%.32s' (limit %lld)", s, max);
    *out = v;
    return 0;
}

static int read_reply(struct ctl_conn *c, struct ctl_reply *r, int depth)
{
    memset(r, 0, sizeof *r);
    if (depth > CTL_REPLY_MAX_DEPTH)
        return fail(c, "malformed reply: nested deeper than %d", CTL_REPLY_MAX_DEPTH);
    char *line = NULL;
    size_t n = 0;
    if (read_line(c, &line, &n) < 0)
        return -1;
    if (n == 0)
        return fail(c, "malformed reply: an empty line");
    long long len = 0;
    if (line[0] == '$' || line[0] == '*') {
        long long max = line[0] == '$' ? CTL_REPLY_MAX_BULK : CTL_REPLY_MAX_ARRAY;
        if (parse_len(c, line + 1, max, &len) < 0)
            return -1;
        if (len < 0) { /* $-1 and *-1: RESP2's nulls */
            r->type = CTL_REPLY_NIL;
            return 0;
        }
    }
    switch (line[0]) {
    case '+':
    case '-':
        r->type = line[0] == '+' ? CTL_REPLY_STATUS : CTL_REPLY_ERROR;
        r->str = strdup(line + 1);
        r->len = n - 1;
        return r->str ? 0 : fail(c, "out of memory");
    case ':': {
        char *end;
        errno = 0;
        r->type = CTL_REPLY_INT;
        r->integer = strtoll(line + 1, &end, 10);
        if (errno || end == line + 1 || *end)
            return fail(c, "malformed reply: bad integer '%.32s'", line + 1);
        return 0;
    }
    case '$':
        if (fill(c, (size_t)len + 2) < 0)
            return -1;
        r->type = CTL_REPLY_BULK;
        r->str = malloc((size_t)len + 1);
        if (!r->str)
            return fail(c, "out of memory for a reply of %lld bytes", len);
        memcpy(r->str, c->buf + c->pos, (size_t)len);
        r->str[len] = '\0';
        r->len = (size_t)len;
        c->pos += (size_t)len + 2;
        return 0;
    case '*':
        r->type = CTL_REPLY_ARRAY;
        r->elem = calloc(len ? (size_t)len : 1, sizeof *r->elem);
        if (!r->elem)
            return fail(c, "out of memory for an array of %lld replies", len);
        for (r->n = 0; r->n < (size_t)len; r->n++)
            if (read_reply(c, &r->elem[r->n], depth + 1) < 0) {
                r->n++;
                return -1;
            }
        return 0;
    default:
        return fail(c,
                    "malformed reply: unexpected type byte '%c' (is this a Redis-protocol server?)",
                    line[0]);
    }
}

int ctl_command(struct ctl_conn *c, struct ctl_reply *r, int argc, const char *const *argv)
{
    memset(r, 0, sizeof *r);
    size_t total = 32;
    for (int i = 0; i < argc; i++)
        total += strlen(argv[i]) + 32;
    char *msg = malloc(total), *p = msg;
    if (!msg)
        return fail(c, "out of memory for a command of %zu bytes", total);
    p += sprintf(p, "*%d\r\n", argc);
    for (int i = 0; i < argc; i++) {
        size_t n = strlen(argv[i]);
        p += sprintf(p, "$%zu\r\n", n);
        memcpy(p, argv[i], n);
        p += n;
        *p++ = '\r';
        *p++ = '\n';
    }
    int rc = send_all(c, msg, (size_t)(p - msg));
    free(msg);
    if (rc == 0 && (rc = read_reply(c, r, 0)) < 0)
        ctl_reply_free(r);
    return rc;
}

void ctl_reply_free(struct ctl_reply *r)
{
    for (size_t i = 0; i < r->n; i++)
        ctl_reply_free(&r->elem[i]);
    free(r->elem);
    free(r->str);
    memset(r, 0, sizeof *r);
}

const struct ctl_reply *ctl_reply_field(const struct ctl_reply *r, const char *name)
{
    if (r->type != CTL_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < r->n; i += 2)
        if (r->elem[i].str && strcmp(r->elem[i].str, name) == 0)
            return &r->elem[i + 1];
    return NULL;
}
