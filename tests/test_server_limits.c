/*
 * test_server_limits.c - nothing a client sends harms tallyd or its data.
 *
 * Over raw sockets, against a tallyd started with a 1 MiB client-output-buffer-limit:
 * - protocol errors get Redis's text and a close: a bulk length over proto-max-bulk-len or
 *   negative or not a number ("invalid bulk length"), an array count over the limit or not a
 *   number ("invalid multibulk length"), a missing '$' ("expected '$', got 'x'"), an inline
 *   request over inline-max-size ("too big inline request"), unbalanced quotes; headers that
 *   never end get a protocol error and a close; INFO errorstats and total_error_replies count a
 *   protocol error;
 * - what Redis accepts works: empty arrays, inline commands with quotes, a request sent one
 *   byte at a time, a request completed after another client was served;
 * - 1 MiB of random bytes (several seeds), half-sent requests followed by a close, a bulk
 *   without its CRLF, LF-only frames: the server may answer errors or close, but stays up;
 * - a client that never reads while asking for a 512 KiB value thousands of times is
 *   disconnected at the output limit, and another client is served meanwhile;
 * - 1,000 connections held open at once, each PING and INCR of a shared key: the INCR replies
 *   are exactly 1..1000 and every connection still answers afterwards (RLIMIT_NOFILE is raised
 *   first; the test ends in SKIP (77) after the other checks if it cannot be);
 * - 4 threads x 100 connections, each incrementing shared keys: exact totals.
 * After each case a fresh client's PING works and a known key still has its value.
 * Not tested: protected mode, which needs a non-loopback address.
 *
 * Environment: TALLYD (else server/tallyd, ../server/tallyd); TALLY_TEST_SERVER=redis runs the
 * same checks against redis-server, to check the test itself.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "server_harness.h"
#include "testutil.h"

#define TEST_ALARM_S       300
#define OUTPUT_LIMIT       "1mb"
#define BIG_VALUE_BYTES    (512 * 1024)
#define SLOW_READER_GETS   4000
#define SLOW_READER_MAX_MS 20000
#define GARBAGE_BYTES      (1 << 20)
#define GARBAGE_SEEDS      4
#define EXCHANGE_MAX_MS    20000
#define CLOSE_WAIT_MS      5000
#define QUIET_MS           1000
#define SURVIVE_QUIET_MS   300 /* when any answer will do */
#define INLINE_TOO_LONG    70000
#define HEADER_TOO_LONG    70000
#define MANY_CONNS         1000
#define NOFILE_WANTED      (2 * MANY_CONNS + 256)
#define THREADS            4
#define CONNS_PER_THREAD   100
#define ROUNDS_PER_CONN    50
#define KNOWN_KEY          "known"
#define KNOWN_VALUE        "value-123"

/* ---- checks --------------------------------------------------------------------------------- */

static int n_passed, n_failed;
static int g_port;
static bool g_redis;
static const char *g_case = ""; /* the case being run, for messages */

static void fail_at(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail_at(int line, const char *fmt, ...)
{
    va_list ap;
    n_failed++;
    printf("FAIL line %d: %s\n  ", line, g_case);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

#define CHECK_TRUE(cond, ...)                                                                      \
    do {                                                                                           \
        if (cond)                                                                                  \
            n_passed++;                                                                            \
        else                                                                                       \
            fail_at(__LINE__, __VA_ARGS__);                                                        \
    } while (0)

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sends a command of C-string arguments on c and returns one reply (in c->buf, valid until
 * conn_consume) or -1. */
static long request(struct conn *c, const char **reply, const char *why_buf[1], ...)
{
    char *argv[8];
    size_t lens[8];
    int argc = 0;
    va_list ap;
    va_start(ap, why_buf);
    for (char *a; argc < 8 && (a = va_arg(ap, char *)) != NULL; argc++) {
        argv[argc] = a;
        lens[argc] = strlen(a);
    }
    va_end(ap);
    if (conn_send_cmd(c, argc, argv, lens) < 0) {
        why_buf[0] = strerror(errno);
        return -1;
    }
    return conn_read_reply(c, reply, why_buf);
}

/* Sends args and checks the reply is exactly want. */
static bool request_is(int line, struct conn *c, const char *want, ...)
{
    char *argv[8];
    size_t lens[8];
    int argc = 0;
    va_list ap;
    va_start(ap, want);
    for (char *a; argc < 8 && (a = va_arg(ap, char *)) != NULL; argc++) {
        argv[argc] = a;
        lens[argc] = strlen(a);
    }
    va_end(ap);
    const char *r = NULL, *why = "";
    long n = -1;
    if (conn_send_cmd(c, argc, argv, lens) == 0)
        n = conn_read_reply(c, &r, &why);
    else
        why = strerror(errno);
    bool ok = n == (long)strlen(want) && memcmp(r, want, (size_t)n) == 0;
    if (ok) {
        n_passed++;
    } else {
        char g[400], w[200];
        if (n >= 0)
            escape_into(g, sizeof g, r, (size_t)n < 100 ? (size_t)n : 100);
        else
            snprintf(g, sizeof g, "(%s)", why);
        escape_into(w, sizeof w, want, strlen(want));
        fail_at(line, "%s: expected \"%s\", got \"%s\"", argv[0], w, g);
    }
    if (n >= 0)
        conn_consume(c, (size_t)n);
    return ok;
}
#define REQUEST_IS(c, want, ...) request_is(__LINE__, (c), (want), __VA_ARGS__, (char *)NULL)

/* The server still answers a fresh client, and the known key is intact. */
static void check_healthy(int line)
{
    struct conn c;
    if (conn_open(&c, g_port) < 0) {
        fail_at(line, "after this case, a fresh client cannot connect: %s", strerror(errno));
        printf("%d passed, %d failed\n", n_passed, n_failed);
        exit(1);
    }
    bool ok = request_is(line, &c, "+PONG\r\n", "PING", (char *)NULL) &&
              request_is(line, &c, "$9\r\n" KNOWN_VALUE "\r\n", "GET", KNOWN_KEY, (char *)NULL);
    conn_close(&c);
    if (!ok) {
        printf("the server is unhealthy after \"%s\": stopping\n", g_case);
        printf("%d passed, %d failed\n", n_passed, n_failed);
        exit(1);
    }
}
#define CHECK_HEALTHY() check_healthy(__LINE__)

/* ---- sending raw bytes ---------------------------------------------------------------------- */

struct exchange {
    char *in; /* the first bytes received (up to in_cap) */
    size_t in_len, in_cap;
    size_t in_total; /* every byte received */
    size_t sent;
    bool closed;      /* the server closed (EOF or reset) */
    bool send_failed; /* the server closed before taking everything */
};

static void exchange_recv(int fd, struct exchange *ex)
{
    char tmp[65536];
    for (;;) {
        ssize_t r = recv(fd, tmp, sizeof tmp, MSG_DONTWAIT);
        if (r > 0) {
            size_t keep = ex->in_cap - ex->in_len < (size_t)r ? ex->in_cap - ex->in_len : (size_t)r;
            memcpy(ex->in + ex->in_len, tmp, keep);
            ex->in_len += keep;
            ex->in_total += (size_t)r;
            continue;
        }
        if (r == 0 || (errno != EAGAIN && errno != EINTR))
            ex->closed = true;
        return;
    }
}

/* Sends data (reading replies meanwhile, so neither side blocks), then reads until the server
 * closes or has been quiet for quiet_ms. Everything is bounded by EXCHANGE_MAX_MS. */
static void exchange_on(int fd, const char *data, size_t n, int quiet_ms, struct exchange *ex)
{
    memset(ex, 0, sizeof *ex);
    ex->in_cap = 1 << 16;
    ex->in = calloc(1, ex->in_cap + 1);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    long long start = mono_ms(), last_activity = start;
    while (!ex->closed && mono_ms() - start < EXCHANGE_MAX_MS) {
        bool sending = ex->sent < n;
        struct pollfd p = {.fd = fd, .events = POLLIN | (sending ? POLLOUT : 0)};
        int pr = poll(&p, 1, 50);
        if (pr > 0 && (p.revents & POLLOUT) && sending) {
            ssize_t w = send(fd, data + ex->sent, n - ex->sent, MSG_NOSIGNAL);
            if (w > 0) {
                ex->sent += (size_t)w;
                last_activity = mono_ms();
            } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                ex->send_failed = true;
                ex->closed = true;
            }
        }
        if (pr > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR))) {
            size_t before = ex->in_total;
            exchange_recv(fd, ex);
            if (ex->in_total != before)
                last_activity = mono_ms();
        }
        if (!sending && mono_ms() - last_activity >= quiet_ms)
            break;
    }
}

static void exchange(const char *data, size_t n, int quiet_ms, struct exchange *ex)
{
    struct conn c;
    if (conn_open(&c, g_port) < 0) {
        fail_at(__LINE__, "cannot connect: %s", strerror(errno));
        exit(1);
    }
    exchange_on(c.fd, data, n, quiet_ms, ex);
    conn_close(&c);
}

/* A malformed request gets exactly want and then a close. */
static void expect_protocol_error(int line, const char *name, const char *data, size_t n,
                                  const char *want, bool exact)
{
    struct exchange ex;
    g_case = name;
    exchange(data, n, CLOSE_WAIT_MS, &ex);
    size_t wl = strlen(want);
    bool text_ok = exact ? ex.in_len == wl && memcmp(ex.in, want, wl) == 0
                         : ex.in_len >= wl && memcmp(ex.in, want, wl) == 0;
    char g[400], w[200];
    escape_into(g, sizeof g, ex.in, ex.in_len < 150 ? ex.in_len : 150);
    escape_into(w, sizeof w, want, wl);
    if (text_ok && ex.closed)
        n_passed++;
    else
        fail_at(line, "expected \"%s\"%s then a close; got \"%s\"%s", w, exact ? "" : "...", g,
                ex.closed ? " and a close" : ", and the connection stayed open");
    free(ex.in);
    check_healthy(line);
}
#define EXPECT_PROTO_ERR(name, data, want)                                                         \
    expect_protocol_error(__LINE__, (name), (data), strlen(data), (want), true)
#define EXPECT_PROTO_ERR_PREFIX(name, data, n, want)                                               \
    expect_protocol_error(__LINE__, (name), (data), (n), (want), false)

/* A request that Redis accepts gets exactly want and the connection stays open. */
static void expect_replies(int line, const char *name, const char *data, const char *want)
{
    struct exchange ex;
    g_case = name;
    exchange(data, strlen(data), QUIET_MS, &ex);
    size_t wl = strlen(want);
    char g[400], w[300];
    escape_into(g, sizeof g, ex.in, ex.in_len < 150 ? ex.in_len : 150);
    escape_into(w, sizeof w, want, wl);
    CHECK_TRUE(ex.in_len == wl && memcmp(ex.in, want, wl) == 0 && !ex.closed,
               "expected \"%s\" with the connection open; got \"%s\"%s", w, g,
               ex.closed ? " and a close" : "");
    free(ex.in);
    check_healthy(line);
}
#define EXPECT_REPLIES(name, data, want) expect_replies(__LINE__, (name), (data), (want))

/* Anything may come back (errors, a close), but the server must survive. */
static void send_survives(int line, const char *name, const char *data, size_t n)
{
    struct exchange ex;
    g_case = name;
    exchange(data, n, SURVIVE_QUIET_MS, &ex);
    printf("%s: sent %zu of %zu bytes, received %zu, %s\n", name, ex.sent, n, ex.in_total,
           ex.closed ? "closed by the server" : "left open");
    free(ex.in);
    check_healthy(line);
}
#define SEND_SURVIVES(name, data, n) send_survives(__LINE__, (name), (data), (n))

/* ---- the cases ------------------------------------------------------------------------------ */

static void test_protocol_errors(void)
{
    EXPECT_PROTO_ERR("bulk length over proto-max-bulk-len", "*1\r\n$536870913\r\n",
                     "-ERR Protocol error: invalid bulk length\r\n");
    EXPECT_PROTO_ERR("bulk length 2^63", "*2\r\n$3\r\nGET\r\n$9223372036854775808\r\n",
                     "-ERR Protocol error: invalid bulk length\r\n");
    EXPECT_PROTO_ERR("negative bulk length", "*1\r\n$-5\r\n",
                     "-ERR Protocol error: invalid bulk length\r\n");
    EXPECT_PROTO_ERR("bulk length not a number", "*1\r\n$x\r\n",
                     "-ERR Protocol error: invalid bulk length\r\n");
    EXPECT_PROTO_ERR("array count over INT_MAX", "*2147483648\r\n",
                     "-ERR Protocol error: invalid multibulk length\r\n");
    if (!g_redis) /* Redis 7.0 accepts up to INT_MAX; this tallyd runs with 1048576 */
        EXPECT_PROTO_ERR("array count over max-multibulk-len", "*1048577\r\n",
                         "-ERR Protocol error: invalid multibulk length\r\n");
    EXPECT_PROTO_ERR("array count not a number", "*abc\r\n",
                     "-ERR Protocol error: invalid multibulk length\r\n");
    EXPECT_PROTO_ERR("missing '$'", "*1\r\nx\r\n",
                     "-ERR Protocol error: expected '$', got 'x'\r\n");
    EXPECT_PROTO_ERR("replies before a protocol error",
                     "*1\r\n$4\r\nPING\r\nPING\r\n*1\r\n$4\r\nPING\r\n*1\r\n:1\r\n",
                     "+PONG\r\n+PONG\r\n+PONG\r\n-ERR Protocol error: expected '$', got ':'\r\n");
    EXPECT_PROTO_ERR("unbalanced quotes", "SET \"a b\r\n",
                     "-ERR Protocol error: unbalanced quotes in request\r\n");

    static char big[HEADER_TOO_LONG + 16];
    memset(big, 'A', INLINE_TOO_LONG);
    EXPECT_PROTO_ERR_PREFIX("inline request over inline-max-size", big, INLINE_TOO_LONG,
                            "-ERR Protocol error: too big inline request\r\n");
    big[0] = '*';
    memset(big + 1, '1', HEADER_TOO_LONG - 1);
    EXPECT_PROTO_ERR_PREFIX("array header without CRLF", big, HEADER_TOO_LONG,
                            "-ERR Protocol error:");
    memcpy(big, "*1\r\n$", 5);
    EXPECT_PROTO_ERR_PREFIX("bulk header without CRLF", big, HEADER_TOO_LONG,
                            "-ERR Protocol error:");
}

/* INFO section's reply contains want (the connection's reply is consumed). */
static bool info_has(struct conn *c, const char *section, const char *want)
{
    const char *r = NULL, *why = "";
    long n = request(c, &r, &why, "INFO", section, (char *)NULL);
    if (n < 0)
        return false;
    bool found = memmem(r, (size_t)n, want, strlen(want)) != NULL;
    conn_consume(c, (size_t)n);
    return found;
}

/* A protocol error is an error reply like any other: INFO errorstats and total_error_replies
 * count it, as Redis 7.0 does (before, tallyd had no errorstats section at all). */
static void test_protocol_error_stats(void)
{
    struct conn c;
    conn_open(&c, g_port);
    g_case = "errorstats";
    REQUEST_IS(&c, "+OK\r\n", "CONFIG", "RESETSTAT");
    EXPECT_PROTO_ERR("bulk length not a number, counted", "*1\r\n$x\r\n",
                     "-ERR Protocol error: invalid bulk length\r\n");
    g_case = "errorstats";
    CHECK_TRUE(info_has(&c, "errorstats", "# Errorstats\r\nerrorstat_ERR:count=1\r\n"),
               "INFO errorstats does not count the protocol error as one ERR");
    CHECK_TRUE(info_has(&c, "stats", "\r\ntotal_error_replies:1\r\n"),
               "INFO stats does not count the protocol error in total_error_replies");
    conn_close(&c);
}

static void test_accepted_forms(void)
{
    EXPECT_REPLIES("empty and negative arrays are skipped", "*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n",
                   "+PONG\r\n");
    EXPECT_REPLIES("inline commands", "PING\r\nSET inl \"a b\"\r\nGET inl\r\necho 'x y'\n",
                   "+PONG\r\n+OK\r\n$3\r\na b\r\n$3\r\nx y\r\n");
    EXPECT_REPLIES("empty inline lines", "\r\n\r\nPING\r\n", "+PONG\r\n");
    EXPECT_REPLIES("inline and multibulk mixed", "PING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\nPING\n",
                   "+PONG\r\n$2\r\nhi\r\n+PONG\r\n");

    /* One byte at a time. */
    g_case = "a request sent one byte at a time";
    struct conn c;
    conn_open(&c, g_port);
    const char *req = "*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n";
    for (const char *p = req; *p; p++) {
        conn_send(&c, p, 1);
        usleep(1000);
    }
    const char *r, *why;
    long n = conn_read_reply(&c, &r, &why);
    CHECK_TRUE(n == 11 && memcmp(r, "$5\r\nhello\r\n", 11) == 0, "expected \"$5\\r\\nhello\"");
    conn_close(&c);

    /* Half a request waits while another client is served, then completes. */
    g_case = "a half-sent request completed later";
    conn_open(&c, g_port);
    static const char first_part[] = "*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$10\r\nabc";
    conn_send(&c, first_part, sizeof first_part - 1);
    usleep(50000);
    CHECK_HEALTHY();
    conn_send(&c, "defghij\r\n", 9);
    n = conn_read_reply(&c, &r, &why);
    CHECK_TRUE(n == 5 && memcmp(r, "+OK\r\n", 5) == 0, "expected +OK once the rest arrived");
    conn_consume(&c, n > 0 ? (size_t)n : 0);
    REQUEST_IS(&c, "$10\r\nabcdefghij\r\n", "GET", "half");
    conn_close(&c);
}

static void test_garbage(void)
{
    static const char bulk_start[] = "*3\r\n$3\r\nSET\r\n$5\r\nknown\r\n$";
    char *data = malloc(GARBAGE_BYTES);
    for (uint64_t seed = 1; seed <= GARBAGE_SEEDS; seed++) {
        uint64_t st = seed;
        for (size_t i = 0; i < GARBAGE_BYTES; i += 8) {
            uint64_t v = test_rand(&st);
            memcpy(data + i, &v, 8);
        }
        if (seed == 2)
            data[0] = '*'; /* one run through the multibulk parser's first header */
        if (seed == 3)
            memcpy(data, bulk_start, sizeof bulk_start - 1); /* and a bulk header */
        char name[64];
        snprintf(name, sizeof name, "1 MiB of random bytes, seed %d", (int)seed);
        SEND_SURVIVES(name, data, GARBAGE_BYTES);
    }
    free(data);

    static const char *halves[] = {
        "*3\r\n$3\r\nSET\r\n$5\r\nknown\r\n$10\r\nabc",
        "*3\r\n$3\r\nSET\r\n$5\r\nknown\r\n",
        "*3\r\n$3\r\nSET\r\n$5\r\nkno",
        "*3\r\n$3\r\nSE",
        "*3\r\n",
        "*",
        "SET known oth",
        "*2\r\n$4\r\nECHO\r\n$1048576\r\nabc",
    };
    for (size_t i = 0; i < sizeof halves / sizeof *halves; i++) {
        char name[128];
        snprintf(name, sizeof name, "half-sent request %zu, then a close", i);
        SEND_SURVIVES(name, halves[i], strlen(halves[i]));
    }
    SEND_SURVIVES("a bulk without its CRLF", "*1\r\n$4\r\nPINGxx*1\r\n$4\r\nPING\r\n",
                  strlen("*1\r\n$4\r\nPINGxx*1\r\n$4\r\nPING\r\n"));
    SEND_SURVIVES("LF-only multibulk", "*1\n$4\nPING\n", strlen("*1\n$4\nPING\n"));
    SEND_SURVIVES("a NUL in an inline command", "PI\0NG\r\n", 7);
    SEND_SURVIVES("RESP3 types as requests", "%1\r\n+a\r\n+b\r\n_\r\n,1.5\r\n#t\r\n", 25);
}

/* A client that never reads while asking for a large value again and again. */
static void test_slow_reader(void)
{
    g_case = "a client that never reads its replies";
    struct conn c;
    conn_open(&c, g_port);
    char *val = malloc(BIG_VALUE_BYTES + 1);
    memset(val, 'v', BIG_VALUE_BYTES);
    val[BIG_VALUE_BYTES] = 0;
    REQUEST_IS(&c, "+OK\r\n", "SET", "bigval", val);
    free(val);
    conn_close(&c);

    size_t one = strlen("*2\r\n$3\r\nGET\r\n$6\r\nbigval\r\n");
    char *reqs = malloc(one * SLOW_READER_GETS);
    for (int i = 0; i < SLOW_READER_GETS; i++)
        memcpy(reqs + (size_t)i * one, "*2\r\n$3\r\nGET\r\n$6\r\nbigval\r\n", one);
    struct conn slow;
    conn_open(&slow, g_port);
    int small = 64 * 1024; /* a small receive buffer, so the replies pile up in the server */
    setsockopt(slow.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    fcntl(slow.fd, F_SETFL, fcntl(slow.fd, F_GETFL) | O_NONBLOCK);
    size_t sent = 0;
    long long start = mono_ms();
    bool send_failed = false;
    while (sent < one * SLOW_READER_GETS && mono_ms() - start < SLOW_READER_MAX_MS) {
        ssize_t w = send(slow.fd, reqs + sent, one * SLOW_READER_GETS - sent, MSG_NOSIGNAL);
        if (w > 0) {
            sent += (size_t)w;
        } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
            send_failed = true;
            break;
        } else {
            struct pollfd p = {.fd = slow.fd, .events = POLLOUT};
            poll(&p, 1, 50);
        }
    }
    free(reqs);
    /* Meanwhile the server answers others. */
    usleep(200000);
    CHECK_HEALTHY();

    /* Now read: the replies must end with a close long before all of them came back. */
    size_t total = 0, full = (size_t)SLOW_READER_GETS * (BIG_VALUE_BYTES + 16);
    bool closed = send_failed;
    char *buf = malloc(1 << 20);
    start = mono_ms();
    while (!closed && total < full && mono_ms() - start < SLOW_READER_MAX_MS) {
        ssize_t r = recv(slow.fd, buf, 1 << 20, 0);
        if (r > 0) {
            total += (size_t)r;
        } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
            closed = true;
        } else {
            struct pollfd p = {.fd = slow.fd, .events = POLLIN};
            poll(&p, 1, 50);
        }
    }
    free(buf);
    conn_close(&slow);
    printf("slow reader: sent %zu of %zu request bytes, then read %zu of %zu reply bytes before "
           "the close\n",
           sent, one * SLOW_READER_GETS, total, full);
    CHECK_TRUE(closed && total < full / 4,
               "expected a disconnect at the %s output limit: read %zu of %zu bytes, %s",
               OUTPUT_LIMIT, total, full, closed ? "then a close" : "and no close");
    if (!g_redis) { /* Redis 7.0 does not count these; tallyd does, as Redis 7.2 does */
        struct conn ic;
        const char *r, *why;
        conn_open(&ic, g_port);
        long n = request(&ic, &r, &why, "INFO", "stats", (char *)NULL);
        const char *field = "client_output_buffer_limit_disconnections:";
        const char *f = n > 0 ? memmem(r, (size_t)n, field, strlen(field)) : NULL;
        long count = f ? atol(f + strlen(field)) : -1;
        CHECK_TRUE(count >= 1, "INFO stats: %s is %ld, expected at least 1", field, count);
        conn_close(&ic);
    }
    CHECK_HEALTHY();
}

static long read_int_reply(struct conn *c)
{
    const char *r, *why;
    long n = conn_read_reply(c, &r, &why);
    if (n < 0 || r[0] != ':')
        return -1;
    long v = atol(r + 1);
    conn_consume(c, (size_t)n);
    return v;
}

static bool raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return false;
    if (rl.rlim_cur >= NOFILE_WANTED)
        return true;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < NOFILE_WANTED)
        return false;
    rl.rlim_cur = NOFILE_WANTED;
    return setrlimit(RLIMIT_NOFILE, &rl) == 0;
}

static void test_many_connections(void)
{
    g_case = "1,000 connections held open";
    struct conn *cs = calloc(MANY_CONNS, sizeof *cs);
    int opened = 0;
    for (; opened < MANY_CONNS; opened++)
        if (conn_open(&cs[opened], g_port) < 0)
            break;
    CHECK_TRUE(opened == MANY_CONNS, "only %d connections opened: %s", opened, strerror(errno));
    static const char req[] = "*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nINCR\r\n$5\r\nconns\r\n";
    for (int i = 0; i < opened; i++)
        conn_send(&cs[i], req, sizeof req - 1);
    char *seen = calloc(MANY_CONNS + 1, 1);
    int bad = 0;
    for (int i = 0; i < opened; i++) {
        const char *r, *why = "";
        long n = conn_read_reply(&cs[i], &r, &why);
        bool pong = n == 7 && memcmp(r, "+PONG\r\n", 7) == 0;
        if (n > 0)
            conn_consume(&cs[i], (size_t)n);
        long v = pong ? read_int_reply(&cs[i]) : -1;
        if (v >= 1 && v <= MANY_CONNS && !seen[v])
            seen[v] = 1;
        else if (bad++ < 5)
            fail_at(__LINE__, "connection %d: PING/INCR answered %s, INCR %ld", i,
                    n < 0  ? why
                    : pong ? "+PONG"
                           : "not +PONG",
                    v);
    }
    CHECK_TRUE(bad == 0, "%d of %d connections answered wrongly", bad, opened);
    int missing = 0;
    for (int v = 1; v <= opened; v++)
        missing += !seen[v];
    CHECK_TRUE(missing == 0, "%d INCR results in 1..%d never came back", missing, opened);
    free(seen);

    /* Every connection is still served, and the server counts them. */
    bad = 0;
    for (int i = 0; i < opened; i++)
        conn_send(&cs[i], "*1\r\n$4\r\nPING\r\n", 14);
    for (int i = 0; i < opened; i++) {
        const char *r, *why;
        long n = conn_read_reply(&cs[i], &r, &why);
        if (n != 7 || memcmp(r, "+PONG\r\n", 7) != 0)
            bad++;
        else
            conn_consume(&cs[i], 7);
    }
    CHECK_TRUE(bad == 0, "%d of %d connections did not answer a second PING", bad, opened);
    if (opened > 0) {
        const char *r, *why;
        long n = request(&cs[0], &r, &why, "INFO", "clients", (char *)NULL);
        const char *cc = n > 0 ? memmem(r, (size_t)n, "connected_clients:", 18) : NULL;
        long clients = cc ? atol(cc + 18) : -1;
        CHECK_TRUE(clients >= MANY_CONNS, "INFO clients: connected_clients is %ld", clients);
        if (n > 0)
            conn_consume(&cs[0], (size_t)n);
        REQUEST_IS(&cs[0], "$4\r\n1000\r\n", "GET", "conns");
    }
    for (int i = 0; i < opened; i++)
        conn_close(&cs[i]);
    free(cs);
    printf("%d connections held open: PING and INCR answered on each\n", opened);
    CHECK_HEALTHY();
}

struct incr_thread {
    int t;
    long errors;
};

static void *incr_thread_main(void *arg)
{
    struct incr_thread *it = arg;
    struct conn cs[CONNS_PER_THREAD];
    for (int j = 0; j < CONNS_PER_THREAD; j++) {
        if (conn_open(&cs[j], g_port) < 0) {
            it->errors++;
            cs[j].fd = -1;
        }
    }
    for (int round = 0; round < ROUNDS_PER_CONN; round++) {
        for (int j = 0; j < CONNS_PER_THREAD; j++) {
            if (cs[j].fd < 0)
                continue;
            char key[32], delta[32], req[128];
            snprintf(key, sizeof key, "shared:%d", j % 4);
            snprintf(delta, sizeof delta, "%d", it->t * 100 + j + 1);
            int n = snprintf(req, sizeof req, "*3\r\n$6\r\nINCRBY\r\n$%zu\r\n%s\r\n$%zu\r\n%s\r\n",
                             strlen(key), key, strlen(delta), delta);
            if (conn_send(&cs[j], req, (size_t)n) < 0)
                it->errors++;
        }
        for (int j = 0; j < CONNS_PER_THREAD; j++)
            if (cs[j].fd >= 0 && read_int_reply(&cs[j]) < 0)
                it->errors++;
    }
    for (int j = 0; j < CONNS_PER_THREAD; j++)
        conn_close(&cs[j]);
    return NULL;
}

static void test_threads(void)
{
    g_case = "4 threads x 100 connections incrementing shared keys";
    pthread_t th[THREADS];
    struct incr_thread its[THREADS];
    for (int t = 0; t < THREADS; t++) {
        its[t] = (struct incr_thread){.t = t};
        pthread_create(&th[t], NULL, incr_thread_main, &its[t]);
    }
    long errors = 0;
    for (int t = 0; t < THREADS; t++) {
        pthread_join(th[t], NULL);
        errors += its[t].errors;
    }
    CHECK_TRUE(errors == 0, "%ld failed connections, sends or replies", errors);
    struct conn c;
    conn_open(&c, g_port);
    for (int k = 0; k < 4; k++) {
        long long want = 0;
        for (int t = 0; t < THREADS; t++)
            for (int j = k; j < CONNS_PER_THREAD; j += 4)
                want += (long long)ROUNDS_PER_CONN * (t * 100 + j + 1);
        char key[32], reply[64];
        snprintf(key, sizeof key, "shared:%d", k);
        char num[32];
        int nl = snprintf(num, sizeof num, "%lld", want);
        snprintf(reply, sizeof reply, "$%d\r\n%s\r\n", nl, num);
        REQUEST_IS(&c, reply, "GET", key);
    }
    conn_close(&c);
    printf("%d threads x %d connections x %d INCRBY: totals checked\n", THREADS, CONNS_PER_THREAD,
           ROUNDS_PER_CONN);
    CHECK_HEALTHY();
}

/* A data directory on a file size limit (ulimit -f): the write that crosses it fails with an
 * error reply, and tallyd stays up and keeps what it acknowledged. The engine writes in the
 * calling thread, where a write past the limit also raises SIGXFSZ, whose default action ends
 * the process: tallyd must ignore it. */
#define FSIZE_LIMIT_BYTES (512 * 1024)
#define FSIZE_VALUE_BYTES 20000
#define FSIZE_MAX_WRITES  200
static void test_file_size_limit(const char *tmp)
{
    g_case = "a write past the file size limit (RLIMIT_FSIZE)";
    struct rlimit old, lim;
    if (getrlimit(RLIMIT_FSIZE, &old) < 0 ||
        (old.rlim_max != RLIM_INFINITY && old.rlim_max < FSIZE_LIMIT_BYTES)) {
        printf("skipped: file size limit (RLIMIT_FSIZE cannot be set to %d)\n", FSIZE_LIMIT_BYTES);
        return;
    }
    struct test_server fs;
    srv_init(&fs, tmp, "fsize");
    srv_add_opt(&fs, "fsync", "always");
    lim = old;
    lim.rlim_cur = FSIZE_LIMIT_BYTES;
    CHECK_TRUE(setrlimit(RLIMIT_FSIZE, &lim) == 0, "setrlimit: %s", strerror(errno));
    srv_start(&fs); /* the server inherits the limit */
    setrlimit(RLIMIT_FSIZE, &old);

    struct conn c;
    conn_open(&c, fs.port);
    /* The write that crosses the limit is applied but never durable: its reply is held (and the
     * client closed after a while), so wait for each reply a second at most. */
    struct timeval tv = {.tv_sec = 1};
    setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char *value = malloc(FSIZE_VALUE_BYTES + 1);
    memset(value, 'v', FSIZE_VALUE_BYTES);
    value[FSIZE_VALUE_BYTES] = '\0';
    int acked = 0;
    bool stopped = false;
    for (int i = 0; i < FSIZE_MAX_WRITES && !stopped; i++) {
        char key[32];
        snprintf(key, sizeof key, "big:%d", i);
        const char *r = NULL, *why[1] = {""};
        long n = request(&c, &r, why, "SET", key, value, (char *)NULL);
        if (n >= 5 && memcmp(r, "+OK\r\n", 5) == 0)
            acked++;
        else
            stopped = true; /* an error, or a reply held */
        if (n > 0)
            conn_consume(&c, (size_t)n);
    }
    CHECK_TRUE(stopped, "%d SETs of %d bytes under a limit of %d bytes were all acknowledged",
               FSIZE_MAX_WRITES, FSIZE_VALUE_BYTES, FSIZE_LIMIT_BYTES);
    conn_close(&c);
    /* Still up, refusing writes with an error that says why. */
    CHECK_TRUE(conn_open(&c, fs.port) == 0, "tallyd is gone after the failed write: %s",
               strerror(errno));
    const char *r = NULL, *why[1] = {""};
    char error[200] = "";
    long n = request(&c, &r, why, "SET", "small", "1", (char *)NULL);
    if (n > 0)
        escape_into(error, sizeof error, r, (size_t)n < 150 ? (size_t)n : 150);
    else
        snprintf(error, sizeof error, "no reply (%s)", why[0]);
    printf("file size limit %d bytes: %d SETs of %d bytes acknowledged; a SET then: %s\n",
           FSIZE_LIMIT_BYTES, acked, FSIZE_VALUE_BYTES, error);
    CHECK_TRUE(error[0] == '-' && strstr(error, "File too large") != NULL,
               "a write past the limit does not answer an error saying what went wrong (EFBIG): "
               "%s",
               error);
    if (n > 0)
        conn_consume(&c, (size_t)n);
    if (acked > 0) {
        n = request(&c, &r, why, "STRLEN", "big:0", (char *)NULL);
        char want[32];
        snprintf(want, sizeof want, ":%d\r\n", FSIZE_VALUE_BYTES);
        CHECK_TRUE(n == (long)strlen(want) && memcmp(r, want, (size_t)n) == 0,
                   "an acknowledged SET is not readable after the failed write (%s)",
                   n < 0 ? why[0] : "wrong reply");
    }
    conn_close(&c);
    free(value);
    int st = srv_stop_with(&fs, SIGKILL);
    CHECK_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
               "tallyd ended before it was stopped (wait status %d: signal %d)", st,
               WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

int main(void)
{
    g_redis = srv_is_redis();
    if (!g_redis)
        test_require_uring();
    bool nofile_ok = raise_nofile(); /* before the server starts: it inherits the limit */
    srv_setup(TEST_ALARM_S);
    char *tmp = test_tmpdir("limits");
    struct test_server srv;
    srv_init(&srv, tmp, "data");
    srv_add_opt(&srv, "client-output-buffer-limit", OUTPUT_LIMIT);
    if (!srv_is_redis()) /* below the default (INT_MAX, as Redis 7), to test the limit */
        srv_add_opt(&srv, "max-multibulk-len", "1048576");
    srv_start(&srv);
    g_port = srv.port;
    printf("testing %s on port %d\n", srv_binary(), g_port);
    fflush(stdout);

    struct conn c;
    conn_open(&c, g_port);
    g_case = "setup";
    REQUEST_IS(&c, "+OK\r\n", "SET", KNOWN_KEY, KNOWN_VALUE);
    conn_close(&c);

    test_protocol_errors();
    test_protocol_error_stats();
    test_accepted_forms();
    test_garbage();
    test_slow_reader();
    test_threads();
    if (nofile_ok)
        test_many_connections();
    else
        printf("skipped: 1,000 connections (RLIMIT_NOFILE cannot be raised to %d)\n",
               NOFILE_WANTED);
    printf("skipped: protected mode (needs a non-loopback address to connect from)\n");
    if (!g_redis)
        test_file_size_limit(tmp);

    int st = srv_stop_with(&srv, SIGTERM);
    g_case = "SIGTERM";
    CHECK_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0,
               "the server did not exit with status 0 (wait status %d)", st);
    if (n_failed == 0 && getenv("TALLY_KEEP_TMP") == NULL)
        test_rmdir(tmp);
    else
        printf("the server's directories and logs are kept in %s\n", tmp);
    free(tmp);
    printf("%d passed, %d failed\n", n_passed, n_failed);
    if (n_failed)
        return 1;
    return nofile_ok ? 0 : TEST_SKIP;
}
