/*
 * connection.c - a synchronous connection to a server: connect (TCP or Unix socket) with a
 * timeout, HELLO 3 and AUTH at connect, sending buffered commands, reading replies with a
 * timeout, pipelining, reconnect, and the context's error code and message.
 *
 * The socket is non-blocking; every wait is a poll() bounded by the connect or command timeout,
 * so a server that stops answering costs at most one timeout per call. While sending, replies
 * that arrive are read too, so a long pipeline cannot deadlock against a server that stops
 * reading until its replies are taken.
 *
 * An error on the connection itself (I/O, end of stream, timeout, protocol error) closes it:
 * after a timeout the reply may still come, so the stream's position is no longer known.
 * Further calls fail with TALLY_ERR_CLOSED until tally_reconnect.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* Bytes read from the socket at a time. */
#define CONN_READ_BYTES (64 * 1024)
/* Appended commands are sent once this many bytes wait, so a pipeline's buffer stays bounded. */
#define CONN_SEND_AT_BYTES (1024 * 1024)
/* The longest host name or socket path a message names in full. */
#define CONN_ENDPOINT_BYTES 300

struct tally_ctx {
    int fd;
    int err;
    char errstr[TLC_ERRSTR_BYTES];
    struct tally_options opts; /* its strings point to the copies below */
    char *host, *unix_path, *username, *password;
    char endpoint[CONN_ENDPOINT_BYTES]; /* "127.0.0.1:6380" or "unix:/path", for messages */
    tally_reader *reader;
    struct tlc_buf out; /* commands not yet sent */
    size_t sent;        /* bytes of out already sent */
    size_t pending;     /* replies owed for commands appended */
};

int tlc_fail(tally_ctx *ctx, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->errstr, sizeof ctx->errstr, fmt, ap);
    va_end(ap);
    ctx->err = code;
    return code;
}

void tlc_clear_error(tally_ctx *ctx)
{
    ctx->err = 0;
    ctx->errstr[0] = 0;
}

int tally_errcode(const tally_ctx *ctx)
{
    return ctx->err;
}

const char *tally_errstr(const tally_ctx *ctx)
{
    return ctx->errstr;
}

int tally_fd(const tally_ctx *ctx)
{
    return ctx->fd;
}

tally_reader *tally_ctx_reader(tally_ctx *ctx)
{
    return ctx->reader;
}

size_t tally_pending_replies(const tally_ctx *ctx)
{
    return ctx->pending;
}

int tally_set_command_timeout(tally_ctx *ctx, int timeout_ms)
{
    tlc_clear_error(ctx);
    if (timeout_ms < 0)
        return tlc_fail(ctx, TALLY_ERR_ARG, "command timeout of %d ms for %s: must be >= 0",
                        timeout_ms, ctx->endpoint);
    ctx->opts.command_timeout_ms = timeout_ms;
    return 0;
}

/* Closes the socket and forgets what was owed on it; the reader starts afresh (keeping its
 * limits). */
static void conn_close(tally_ctx *ctx)
{
    if (ctx->fd >= 0)
        close(ctx->fd);
    ctx->fd = -1;
    ctx->out.len = 0;
    ctx->sent = 0;
    ctx->pending = 0;
    if (ctx->reader)
        tlc_reader_reset(ctx->reader);
}

/* Fails and closes the connection (its stream position is lost). */
TLC_PRINTF(3, 4) static int conn_fail_close(tally_ctx *ctx, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->errstr, sizeof ctx->errstr, fmt, ap);
    va_end(ap);
    ctx->err = code;
    conn_close(ctx);
    return code;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for events on fd for at most timeout_ms (0: no limit), through signals. Returns the
 * revents, 0 on timeout, or -1 with errno. */
static int wait_fd(int fd, short events, int timeout_ms)
{
    long long deadline = timeout_ms > 0 ? now_ms() + timeout_ms : 0;
    struct pollfd p = {.fd = fd, .events = events};
    for (;;) {
        int wait = -1;
        if (deadline) {
            long long left = deadline - now_ms();
            if (left <= 0)
                return 0;
            wait = (int)left;
        }
        int rc = poll(&p, 1, wait);
        if (rc > 0)
            return p.revents;
        if (rc == 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

/* Connects fd to sa within timeout_ms. 0, or an errno value (ETIMEDOUT on timeout). */
static int connect_fd(int fd, const struct sockaddr *sa, socklen_t salen, int timeout_ms)
{
    if (connect(fd, sa, salen) == 0)
        return 0;
    if (errno != EINPROGRESS && errno != EINTR)
        return errno;
    int ev = wait_fd(fd, POLLOUT, timeout_ms);
    if (ev == 0)
        return ETIMEDOUT;
    if (ev < 0)
        return errno;
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
        return errno;
    return soerr;
}

static int connect_error(tally_ctx *ctx, int e)
{
    if (e == ETIMEDOUT)
        return tlc_fail(ctx, TALLY_ERR_TIMEOUT, "connect to %s: timed out after %d ms",
                        ctx->endpoint, ctx->opts.connect_timeout_ms);
    return tlc_fail(ctx, TALLY_ERR_IO, "connect to %s: %s", ctx->endpoint, strerror(e));
}

static int connect_unix(tally_ctx *ctx)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(ctx->unix_path) >= sizeof sa.sun_path)
        return tlc_fail(ctx, TALLY_ERR_ARG, "connect to %s: the path is longer than %zu bytes",
                        ctx->endpoint, sizeof sa.sun_path - 1);
    strcpy(sa.sun_path, ctx->unix_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return tlc_fail(ctx, TALLY_ERR_IO, "connect to %s: socket: %s", ctx->endpoint,
                        strerror(errno));
    int e = connect_fd(fd, (struct sockaddr *)&sa, sizeof sa, ctx->opts.connect_timeout_ms);
    if (e) {
        close(fd);
        return connect_error(ctx, e);
    }
    ctx->fd = fd;
    return 0;
}

/* Tries each address of the host in turn, within one connect timeout for all of them. */
static int connect_tcp(tally_ctx *ctx)
{
    char port[16];
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    snprintf(port, sizeof port, "%d", ctx->opts.port);
    int g = getaddrinfo(ctx->host, port, &hints, &ai);
    if (g != 0)
        return tlc_fail(ctx, TALLY_ERR_RESOLVE, "connect to %s: cannot resolve host: %s",
                        ctx->endpoint, g == EAI_SYSTEM ? strerror(errno) : gai_strerror(g));
    long long start = now_ms();
    int e = ECONNREFUSED;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        int left = 0;
        if (ctx->opts.connect_timeout_ms > 0) {
            long long l = ctx->opts.connect_timeout_ms - (now_ms() - start);
            if (l <= 0) {
                e = ETIMEDOUT;
                break;
            }
            left = (int)l;
        }
        int fd =
            socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            e = errno;
            continue;
        }
        e = connect_fd(fd, a->ai_addr, a->ai_addrlen, left);
        if (e == 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
            ctx->fd = fd;
            break;
        }
        close(fd);
    }
    freeaddrinfo(ai);
    return e ? connect_error(ctx, e) : 0;
}

/* Sends one command and checks that the reply is not an error: HELLO and AUTH at connect. */
static int conn_handshake_command(tally_ctx *ctx, int argc, const char **argv, const char *what)
{
    tally_reply *rep = tally_command_argv(ctx, argc, argv, NULL);
    if (!rep)
        return ctx->err;
    int rc = 0;
    if (rep->type == TALLY_REPLY_ERROR) {
        rc = tlc_fail(ctx, TALLY_ERR_REPLY, "%s to %s: %s", what, ctx->endpoint, rep->str);
        conn_close(ctx);
    }
    tally_reply_free(rep);
    return rc;
}

static int conn_open(tally_ctx *ctx)
{
    tlc_clear_error(ctx);
    conn_close(ctx);
    if (!ctx->reader && !(ctx->reader = tally_reader_new()))
        return tlc_fail(ctx, TALLY_ERR_NOMEM, "connect to %s: out of memory", ctx->endpoint);
    int rc = ctx->unix_path ? connect_unix(ctx) : connect_tcp(ctx);
    if (rc != 0)
        return rc;
    const char *argv[7];
    int argc = 0;
    if (ctx->opts.resp == 3) {
        argv[argc++] = "HELLO";
        argv[argc++] = "3";
        if (ctx->password) {
            argv[argc++] = "AUTH";
            argv[argc++] = ctx->username ? ctx->username : "default";
            argv[argc++] = ctx->password;
        }
        return conn_handshake_command(ctx, argc, argv, "HELLO 3");
    }
    if (ctx->password) {
        argv[argc++] = "AUTH";
        if (ctx->username)
            argv[argc++] = ctx->username;
        argv[argc++] = ctx->password;
        return conn_handshake_command(ctx, argc, argv, "AUTH");
    }
    return 0;
}

static char *dup_or_null(const char *s, bool *oom)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *oom = true;
    return d;
}

tally_ctx *tally_connect_with(const struct tally_options *opts)
{
    tally_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return NULL;
    ctx->fd = -1;
    struct tally_options o = opts ? *opts : (struct tally_options){0};
    bool oom = false;
    ctx->unix_path = dup_or_null(o.unix_path, &oom);
    ctx->host = dup_or_null(o.host ? o.host : "127.0.0.1", &oom);
    ctx->username = dup_or_null(o.username, &oom);
    ctx->password = dup_or_null(o.password, &oom);
    ctx->opts = o;
    if (ctx->opts.port == 0)
        ctx->opts.port = TALLY_DEFAULT_PORT;
    if (oom) {
        tally_free(ctx);
        return NULL;
    }
    if (ctx->unix_path)
        snprintf(ctx->endpoint, sizeof ctx->endpoint, "unix:%s", ctx->unix_path);
    else if (strchr(ctx->host, ':'))
        snprintf(ctx->endpoint, sizeof ctx->endpoint, "[%s]:%d", ctx->host, ctx->opts.port);
    else
        snprintf(ctx->endpoint, sizeof ctx->endpoint, "%s:%d", ctx->host, ctx->opts.port);
    if (ctx->opts.port < 0 || ctx->opts.port > 65535)
        tlc_fail(ctx, TALLY_ERR_ARG, "connect to %s: port out of range 1..65535", ctx->endpoint);
    else if (o.connect_timeout_ms < 0 || o.command_timeout_ms < 0)
        tlc_fail(ctx, TALLY_ERR_ARG, "connect to %s: a timeout is negative", ctx->endpoint);
    else if (o.resp != 0 && o.resp != 2 && o.resp != 3)
        tlc_fail(ctx, TALLY_ERR_ARG, "connect to %s: protocol %d: must be 2 or 3", ctx->endpoint,
                 o.resp);
    else
        conn_open(ctx);
    return ctx;
}

tally_ctx *tally_connect(const char *host, int port)
{
    struct tally_options o = {.host = host, .port = port};
    return tally_connect_with(&o);
}

tally_ctx *tally_connect_unix(const char *path)
{
    struct tally_options o = {.unix_path = path};
    return tally_connect_with(&o);
}

int tally_reconnect(tally_ctx *ctx)
{
    return conn_open(ctx);
}

void tally_free(tally_ctx *ctx)
{
    if (!ctx)
        return;
    conn_close(ctx);
    tally_reader_free(ctx->reader);
    tlc_buf_free(&ctx->out);
    free(ctx->host);
    free(ctx->unix_path);
    free(ctx->username);
    free(ctx->password);
    free(ctx);
}

/* Reads what the socket has into the reader. 1 when bytes came, 0 when none were ready, or a
 * negative code (the connection is then closed). */
static int conn_read_some(tally_ctx *ctx)
{
    char buf[CONN_READ_BYTES];
    for (;;) {
        ssize_t n = recv(ctx->fd, buf, sizeof buf, 0);
        if (n > 0) {
            if (tally_reader_feed(ctx->reader, buf, (size_t)n) != 0)
                return conn_fail_close(ctx, TALLY_ERR_NOMEM, "read from %s: out of memory",
                                       ctx->endpoint);
            return 1;
        }
        if (n == 0)
            return conn_fail_close(ctx, TALLY_ERR_EOF,
                                   "read from %s: the server closed the connection", ctx->endpoint);
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        if (errno != EINTR)
            return conn_fail_close(ctx, TALLY_ERR_IO, "read from %s: %s", ctx->endpoint,
                                   strerror(errno));
    }
}

/* Sends every buffered byte, reading replies meanwhile. 0 or a negative code. */
static int conn_flush(tally_ctx *ctx)
{
    while (ctx->sent < ctx->out.len) {
        ssize_t n = send(ctx->fd, ctx->out.p + ctx->sent, ctx->out.len - ctx->sent, MSG_NOSIGNAL);
        if (n > 0) {
            ctx->sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return conn_fail_close(ctx, TALLY_ERR_IO, "send to %s: %s", ctx->endpoint,
                                   strerror(errno));
        int ev = wait_fd(ctx->fd, POLLIN | POLLOUT, ctx->opts.command_timeout_ms);
        if (ev == 0)
            return conn_fail_close(ctx, TALLY_ERR_TIMEOUT,
                                   "send to %s: the server took no bytes for %d ms", ctx->endpoint,
                                   ctx->opts.command_timeout_ms);
        if (ev < 0)
            return conn_fail_close(ctx, TALLY_ERR_IO, "send to %s: poll: %s", ctx->endpoint,
                                   strerror(errno));
        if (ev & (POLLIN | POLLHUP | POLLERR)) {
            int rc = conn_read_some(ctx);
            if (rc < 0)
                return rc;
        }
    }
    ctx->out.len = ctx->sent = 0;
    return 0;
}

/* Checks that the context can take a command. */
static int conn_ready(tally_ctx *ctx)
{
    tlc_clear_error(ctx);
    if (ctx->fd < 0)
        return tlc_fail(ctx, TALLY_ERR_CLOSED,
                        "not connected to %s (closed by an earlier error): call tally_reconnect",
                        ctx->endpoint);
    return 0;
}

/* Counts an appended command; sends once enough bytes wait. */
static int conn_appended(tally_ctx *ctx)
{
    ctx->pending++;
    if (ctx->out.len - ctx->sent >= CONN_SEND_AT_BYTES)
        return conn_flush(ctx);
    return 0;
}

int tally_append_vcommand(tally_ctx *ctx, const char *fmt, va_list ap)
{
    int rc = conn_ready(ctx);
    if (rc != 0)
        return rc;
    char why[TLC_ERRSTR_BYTES - 64];
    rc = tlc_vformat_into(&ctx->out, why, sizeof why, fmt, ap);
    if (rc != 0)
        return tlc_fail(ctx, rc, "command for %s: %s", ctx->endpoint, why);
    return conn_appended(ctx);
}

int tally_append_command(tally_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = tally_append_vcommand(ctx, fmt, ap);
    va_end(ap);
    return rc;
}

int tally_append_command_argv(tally_ctx *ctx, int argc, const char *const *argv,
                              const size_t *argvlen)
{
    int rc = conn_ready(ctx);
    if (rc != 0)
        return rc;
    if (argc <= 0 || !argv)
        return tlc_fail(ctx, TALLY_ERR_ARG, "command for %s: %d arguments: need at least one",
                        ctx->endpoint, argc);
    for (int i = 0; i < argc; i++)
        if (!argv[i] && (!argvlen || argvlen[i]))
            return tlc_fail(ctx, TALLY_ERR_ARG, "command for %s: argument %d is NULL",
                            ctx->endpoint, i);
    rc = tlc_format_argv_into(&ctx->out, argc, argv, argvlen);
    if (rc != 0)
        return tlc_fail(ctx, rc, "command for %s: out of memory", ctx->endpoint);
    return conn_appended(ctx);
}

int tally_get_reply(tally_ctx *ctx, tally_reply **reply)
{
    *reply = NULL;
    int rc = conn_ready(ctx);
    if (rc != 0)
        return rc;
    if (ctx->pending == 0)
        return tlc_fail(ctx, TALLY_ERR_ARG,
                        "reply from %s: no command waits for one (append a command first)",
                        ctx->endpoint);
    if ((rc = conn_flush(ctx)) != 0)
        return rc;
    for (;;) {
        tally_reply *rep;
        rc = tally_reader_get_reply(ctx->reader, &rep);
        if (rc != 0)
            return conn_fail_close(ctx, rc, "reply from %s: %s", ctx->endpoint,
                                   tally_reader_error(ctx->reader));
        if (rep && rep->type == TALLY_REPLY_PUSH) {
            /* Out-of-band data (RESP3 push) answers no command; Tally sends none. */
            tally_reply_free(rep);
            continue;
        }
        if (rep) {
            ctx->pending--;
            *reply = rep;
            return 0;
        }
        int ev = wait_fd(ctx->fd, POLLIN, ctx->opts.command_timeout_ms);
        if (ev == 0)
            return conn_fail_close(ctx, TALLY_ERR_TIMEOUT, "read from %s: no reply within %d ms",
                                   ctx->endpoint, ctx->opts.command_timeout_ms);
        if (ev < 0)
            return conn_fail_close(ctx, TALLY_ERR_IO, "read from %s: poll: %s", ctx->endpoint,
                                   strerror(errno));
        if ((rc = conn_read_some(ctx)) < 0)
            return rc;
    }
}

/* One command already appended: its reply, or NULL with the error set. */
static tally_reply *conn_one_reply(tally_ctx *ctx)
{
    tally_reply *rep;
    tally_get_reply(ctx, &rep);
    return rep;
}

/* Refuses a one-shot command while pipelined replies are owed. */
static int conn_ready_single(tally_ctx *ctx)
{
    int rc = conn_ready(ctx);
    if (rc == 0 && ctx->pending > 0)
        rc = tlc_fail(ctx, TALLY_ERR_ARG,
                      "command for %s: %zu appended commands still wait for their replies "
                      "(take them with tally_get_reply first)",
                      ctx->endpoint, ctx->pending);
    return rc;
}

tally_reply *tally_vcommand(tally_ctx *ctx, const char *fmt, va_list ap)
{
    if (conn_ready_single(ctx) != 0 || tally_append_vcommand(ctx, fmt, ap) != 0)
        return NULL;
    return conn_one_reply(ctx);
}

tally_reply *tally_command(tally_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tally_reply *rep = tally_vcommand(ctx, fmt, ap);
    va_end(ap);
    return rep;
}

tally_reply *tally_command_argv(tally_ctx *ctx, int argc, const char *const *argv,
                                const size_t *argvlen)
{
    if (conn_ready_single(ctx) != 0 || tally_append_command_argv(ctx, argc, argv, argvlen) != 0)
        return NULL;
    return conn_one_reply(ctx);
}
