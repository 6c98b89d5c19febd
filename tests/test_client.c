/*
 * test_client.c - libtally against a live tallyd (started on a free port by server_harness.c).
 *
 * Checks, with exact values:
 * - connecting: refused, unresolvable host, missing Unix socket (each message names what
 *   failed), a Unix socket served by the test itself, a connect timeout against a listener
 *   whose queue is full;
 * - tally_command's formats (%s %b %lld %%), tally_command_argv, error replies as replies;
 * - the helpers: tally_incrby, tally_get_int (missing key, non-integer value), tally_pfadd,
 *   tally_pfcount over several keys, tally_wincrby (AT, POLICY, GET windows), tally_wget,
 *   tally_throttle, tally_wquantile (values, and an empty window giving NAN);
 * - errors: INCRBY on "abc" (ERR value is not an integer...), WRONGTYPE from WINCRBY,
 *   CL.THROTTLE and PFADD on a string key, bad arguments refused by the library and by the
 *   server, misuse (a reply with nothing appended, a command while pipelined replies wait);
 * - pipelining 1,000,000 INCR, every reply checked;
 * - RESP3: the connect option and a HELLO 3 sent by hand (map, null, double), the helpers
 *   over RESP3;
 * - command timeouts against a listener that never answers and against a stopped (SIGSTOP)
 *   tallyd, the connection closed after them;
 * - reconnect after tallyd is restarted on the same port, with the data kept;
 * - binary keys with NUL bytes.
 * Each failed check prints its line and goes on; the test ends with "N passed, M failed".
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "server_harness.h"
#include "tally.h"
#include "testutil.h"

#define TEST_ALARM_S      600
#define PIPELINE_COMMANDS 1000000
#define TIMEOUT_MS        300
#define RESTART_WAIT_MS   15000

static int passed, failed;

static void expect_at(bool ok, int line, const char *what, tally_ctx *ctx)
{
    if (ok) {
        passed++;
        return;
    }
    failed++;
    fprintf(stderr, "test_client.c:%d: expected %s", line, what);
    if (ctx)
        fprintf(stderr, " (last error %d: %s)", tally_errcode(ctx), tally_errstr(ctx));
    fprintf(stderr, "\n");
}
#define EXPECT(cond)          expect_at((cond), __LINE__, #cond, NULL)
#define EXPECT_CTX(ctx, cond) expect_at((cond), __LINE__, #cond, (ctx))
/* A call that must succeed (return 0). */
#define EXPECT_OK(ctx, call) expect_at((call) == 0, __LINE__, #call " == 0", (ctx))

/* A failure that must carry this code and a message containing this text. */
static void expect_err_at(int rc, int code, const char *text, int line, const char *call,
                          tally_ctx *ctx)
{
    if (rc == code && tally_errcode(ctx) == code && strstr(tally_errstr(ctx), text)) {
        passed++;
        return;
    }
    failed++;
    fprintf(stderr, "test_client.c:%d: expected %s to fail with %d and '%s'; got %d: %s\n", line,
            call, code, text, rc, tally_errstr(ctx));
}
#define EXPECT_ERR(ctx, call, code, text)                                                          \
    expect_err_at((call), (code), (text), __LINE__, #call, (ctx))

/* Milliseconds on a clock: CLOCK_REALTIME for AT arguments, CLOCK_MONOTONIC for durations. */
static long long clock_ms(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
#define now_ms()  clock_ms(CLOCK_REALTIME)
#define mono_ms() clock_ms(CLOCK_MONOTONIC)

static tally_ctx *connect_port(int port, int resp)
{
    struct tally_options o = {.host = "127.0.0.1",
                              .port = port,
                              .connect_timeout_ms = 5000,
                              .command_timeout_ms = 30000,
                              .resp = resp};
    tally_ctx *ctx = tally_connect_with(&o);
    if (!ctx || tally_errcode(ctx) != 0) {
        fprintf(stderr, "connect to port %d: %s\n", port, ctx ? tally_errstr(ctx) : "no memory");
        exit(1);
    }
    return ctx;
}

/* Whether the reply is the expected status or string text. */
static bool reply_is(const tally_reply *r, enum tally_reply_type t, const char *text)
{
    return r && r->type == t && r->len == strlen(text) && memcmp(r->str, text, r->len) == 0;
}

/* A loopback listener that accepts nothing and answers nothing; returns its fd, port in *port. */
static int silent_listener(int backlog, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, backlog) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) < 0) {
        perror("silent listener");
        exit(1);
    }
    *port = ntohs(a.sin_port);
    return fd;
}

/* ---- connecting ---------------------------------------------------------------------------- */

/* Serves one connection on a Unix socket: answers +PONG to whatever comes first. */
static void *unix_pong(void *arg)
{
    int lfd = *(int *)arg;
    int c = accept(lfd, NULL, NULL);
    char buf[256];
    if (c >= 0 && read(c, buf, sizeof buf) > 0 && write(c, "+PONG\r\n", 7) == 7)
        while (read(c, buf, sizeof buf) > 0)
            ;
    if (c >= 0)
        close(c);
    return NULL;
}

static void test_connect(const char *tmp)
{
    int port;
    int fd = silent_listener(1, &port);
    close(fd); /* now nothing listens there */
    tally_ctx *ctx = tally_connect("127.0.0.1", port);
    char want[128];
    snprintf(want, sizeof want, "connect to 127.0.0.1:%d: Connection refused", port);
    EXPECT_CTX(ctx, tally_errcode(ctx) == TALLY_ERR_IO && strcmp(tally_errstr(ctx), want) == 0);
    EXPECT(tally_fd(ctx) == -1);
    EXPECT_ERR(ctx, tally_get_int(ctx, "k", 1, NULL, NULL), TALLY_ERR_CLOSED,
               "call tally_reconnect");
    EXPECT_ERR(ctx, tally_reconnect(ctx), TALLY_ERR_IO, want);
    tally_free(ctx);

    ctx = tally_connect("no-such-host.invalid", 6380);
    EXPECT_CTX(ctx, tally_errcode(ctx) == TALLY_ERR_RESOLVE &&
                        strstr(tally_errstr(ctx), "connect to no-such-host.invalid:6380: "));
    tally_free(ctx);

    ctx = tally_connect_unix("/nonexistent/tally.sock");
    EXPECT_CTX(ctx, tally_errcode(ctx) == TALLY_ERR_IO &&
                        strcmp(tally_errstr(ctx), "connect to unix:/nonexistent/tally.sock: No "
                                                  "such file or directory") == 0);
    tally_free(ctx);

    struct tally_options bad = {.host = "127.0.0.1", .port = 6380, .resp = 4};
    ctx = tally_connect_with(&bad);
    EXPECT_CTX(ctx, tally_errcode(ctx) == TALLY_ERR_ARG && strstr(tally_errstr(ctx), "protocol 4"));
    tally_free(ctx);

    /* A Unix socket served here. */
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s/pong.sock", tmp);
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 4) < 0) {
        perror(sa.sun_path);
        exit(1);
    }
    pthread_t th;
    pthread_create(&th, NULL, unix_pong, &lfd);
    ctx = tally_connect_unix(sa.sun_path);
    EXPECT_CTX(ctx, tally_errcode(ctx) == 0);
    tally_reply *r = tally_command(ctx, "PING");
    EXPECT_CTX(ctx, reply_is(r, TALLY_REPLY_STATUS, "PONG"));
    tally_reply_free(r);
    tally_free(ctx);
    pthread_join(th, NULL);
    close(lfd);

    /* A connect timeout: a listener whose accept queue is full drops further handshakes. */
    lfd = silent_listener(0, &port);
    int fillers[4];
    for (int i = 0; i < 4; i++) {
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (connect(fillers[i], (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS)
            perror("filler connect");
    }
    struct tally_options o = {.host = "127.0.0.1", .port = port, .connect_timeout_ms = TIMEOUT_MS};
    long long t0 = mono_ms();
    ctx = tally_connect_with(&o);
    long long took = mono_ms() - t0;
    snprintf(want, sizeof want, "connect to 127.0.0.1:%d: timed out after %d ms", port, TIMEOUT_MS);
    EXPECT_CTX(ctx,
               tally_errcode(ctx) == TALLY_ERR_TIMEOUT && strcmp(tally_errstr(ctx), want) == 0);
    EXPECT(took >= TIMEOUT_MS - 10 && took < 5 * TIMEOUT_MS);
    tally_free(ctx);
    for (int i = 0; i < 4; i++)
        close(fillers[i]);
    close(lfd);
}

/* ---- commands and helpers ------------------------------------------------------------------ */

static void test_commands(tally_ctx *ctx)
{
    tally_reply *r = tally_command(ctx, "SET %s %b", "greeting", "hi\0there", (size_t)8);
    EXPECT_CTX(ctx, reply_is(r, TALLY_REPLY_STATUS, "OK"));
    tally_reply_free(r);
    r = tally_command(ctx, "GET greeting");
    EXPECT_CTX(ctx, r && r->type == TALLY_REPLY_STRING && r->len == 8 &&
                        memcmp(r->str, "hi\0there", 8) == 0);
    tally_reply_free(r);
    r = tally_command(ctx, "SET pct:%lld 100%%", 7LL);
    tally_reply_free(r);
    r = tally_command(ctx, "GET pct:7");
    EXPECT_CTX(ctx, reply_is(r, TALLY_REPLY_STRING, "100%"));
    tally_reply_free(r);
    const char *argv[] = {"ECHO", "two words"};
    r = tally_command_argv(ctx, 2, argv, NULL);
    EXPECT_CTX(ctx, reply_is(r, TALLY_REPLY_STRING, "two words"));
    tally_reply_free(r);
    r = tally_command(ctx, "NOSUCHCOMMAND x");
    EXPECT_CTX(ctx, r && r->type == TALLY_REPLY_ERROR &&
                        strncmp(r->str, "ERR unknown command", 19) == 0);
    EXPECT(tally_errcode(ctx) == 0);
    tally_reply_free(r);
    r = tally_command(ctx, "GET %d", 5);
    EXPECT_CTX(ctx, r == NULL && tally_errcode(ctx) == TALLY_ERR_ARG &&
                        strstr(tally_errstr(ctx), "unsupported conversion"));
    /* The connection stays usable after a refused format. */
    r = tally_command(ctx, "PING");
    EXPECT_CTX(ctx, reply_is(r, TALLY_REPLY_STATUS, "PONG"));
    tally_reply_free(r);

    /* Misuse: no reply owed; a one-shot command while pipelined replies wait. */
    EXPECT_ERR(ctx, tally_get_reply(ctx, &r), TALLY_ERR_ARG, "no command waits");
    EXPECT_OK(ctx, tally_append_command(ctx, "PING"));
    EXPECT(tally_pending_replies(ctx) == 1);
    EXPECT(tally_command(ctx, "PING") == NULL && tally_errcode(ctx) == TALLY_ERR_ARG);
    EXPECT_ERR(ctx, tally_incrby(ctx, "k", 1, 1, NULL), TALLY_ERR_ARG, "still wait");
    EXPECT_OK(ctx, tally_get_reply(ctx, &r));
    EXPECT_CTX(ctx, reply_is(r, TALLY_REPLY_STATUS, "PONG"));
    tally_reply_free(r);
}

static void test_counters(tally_ctx *ctx)
{
    int64_t v = -1;
    bool found = true;
    EXPECT_OK(ctx, tally_get_int(ctx, "c:missing", 9, &v, &found));
    EXPECT(v == 0 && !found);
    EXPECT_OK(ctx, tally_incrby(ctx, "c:1", 3, 5, &v));
    EXPECT(v == 5);
    EXPECT_OK(ctx, tally_incrby(ctx, "c:1", 3, -12, &v));
    EXPECT(v == -7);
    EXPECT_OK(ctx, tally_get_int(ctx, "c:1", 3, &v, &found));
    EXPECT(v == -7 && found);
    EXPECT_OK(ctx, tally_incrby(ctx, "c:1", 3, INT64_MAX - 100, &v));
    EXPECT_ERR(ctx, tally_incrby(ctx, "c:1", 3, 1000, &v), TALLY_ERR_REPLY,
               "ERR increment or decrement would overflow (INCRBY key \"c:1\")");

    tally_reply_free(tally_command(ctx, "SET s:abc abc"));
    EXPECT_ERR(ctx, tally_incrby(ctx, "s:abc", 5, 1, &v), TALLY_ERR_REPLY,
               "ERR value is not an integer or out of range (INCRBY key \"s:abc\")");
    EXPECT_ERR(ctx, tally_get_int(ctx, "s:abc", 5, &v, &found), TALLY_ERR_TYPE,
               "GET key \"s:abc\": the value is not an integer");
    EXPECT(!found && v == 0);

    /* Binary keys: a NUL in the middle makes distinct keys. */
    EXPECT_OK(ctx, tally_incrby(ctx, "b\0x", 3, 10, &v));
    EXPECT_OK(ctx, tally_incrby(ctx, "b\0y", 3, 20, &v));
    EXPECT_OK(ctx, tally_incrby(ctx, "b", 1, 30, &v));
    EXPECT_OK(ctx, tally_get_int(ctx, "b\0x", 3, &v, &found));
    EXPECT(v == 10 && found);
    EXPECT_OK(ctx, tally_get_int(ctx, "b\0y", 3, &v, &found));
    EXPECT(v == 20 && found);
    tally_reply *r = tally_command(ctx, "GET %b", "b\0y", (size_t)3);
    EXPECT_CTX(ctx, reply_is(r, TALLY_REPLY_STRING, "20"));
    tally_reply_free(r);
    /* A binary key is quoted in messages. */
    EXPECT_ERR(ctx, tally_incrby(ctx, "s:abc", 5, 1, NULL), TALLY_ERR_REPLY, "s:abc");
    tally_reply_free(tally_command(ctx, "SET %b abc", "n\0\xff", (size_t)3));
    EXPECT_ERR(ctx, tally_incrby(ctx, "n\0\xff", 3, 1, NULL), TALLY_ERR_REPLY,
               "(INCRBY key \"n\\x00\\xff\")");
    EXPECT_ERR(ctx, tally_incrby(ctx, NULL, 3, 1, NULL), TALLY_ERR_ARG, "NULL key");
}

static void test_hll(tally_ctx *ctx)
{
    const void *el[] = {"a", "b", "c\0d", "c\0e"};
    const size_t lens[] = {1, 1, 3, 3};
    bool changed = false;
    int64_t n = -1;
    EXPECT_OK(ctx, tally_pfadd(ctx, "h:1", 3, 4, el, lens, &changed));
    EXPECT(changed);
    EXPECT_OK(ctx, tally_pfadd(ctx, "h:1", 3, 2, el, lens, &changed));
    EXPECT(!changed);
    const void *el2[] = {"x", "a"};
    EXPECT_OK(ctx, tally_pfadd(ctx, "h:2", 3, 2, el2, NULL, &changed));
    EXPECT_OK(ctx, tally_pfcount(ctx, 1, (const void *[]){"h:1"}, NULL, &n));
    EXPECT(n == 4);
    EXPECT_OK(ctx, tally_pfcount(ctx, 2, (const void *[]){"h:1", "h:2"}, NULL, &n));
    EXPECT(n == 5);
    EXPECT_OK(ctx, tally_pfcount(ctx, 1, (const void *[]){"h:none"}, NULL, &n));
    EXPECT(n == 0);
    EXPECT_ERR(ctx, tally_pfadd(ctx, "s:abc", 5, 1, el, NULL, &changed), TALLY_ERR_REPLY,
               "WRONGTYPE");
    EXPECT_ERR(ctx, tally_pfcount(ctx, 0, NULL, NULL, &n), TALLY_ERR_ARG, "no key given");
    EXPECT_ERR(ctx, tally_pfadd(ctx, "h:1", 3, 2, NULL, NULL, &changed), TALLY_ERR_ARG,
               "the list is NULL");
}

/* WINCRBY, WGET, WQUANTILE (the window commands: server/commands_window.c). */
static void test_windows(tally_ctx *ctx)
{
    /* Half an hour ago, on a minute boundary, so that windows start on bucket boundaries. */
    int64_t t0 = (now_ms() / 60000) * 60000 - 30 * 60000;
    int64_t out[4] = {0};
    EXPECT_OK(ctx, tally_wincrby(ctx, "w:1", 3, 5, t0, NULL, 0, NULL, out));
    EXPECT(out[0] == 5);
    const char *w2[] = {"1m", "1h"};
    EXPECT_OK(ctx, tally_wincrby(ctx, "w:1", 3, 3, t0 + 1000, NULL, 2, w2, out));
    EXPECT(out[0] == 8 && out[1] == 8);
    const char *w3[] = {"1m", "1h", "900"};
    EXPECT_OK(ctx, tally_wincrby(ctx, "w:1", 3, 2, t0 + 20 * 60000, "default", 3, w3, out));
    EXPECT(out[0] == 2 && out[1] == 10 && out[2] == 2);
    const char *w4[] = {"1m", "1h", "15m", "1d"};
    EXPECT_OK(ctx, tally_wget(ctx, "w:1", 3, 4, w4, t0 + 20 * 60000, out));
    EXPECT(out[0] == 2 && out[1] == 10 && out[2] == 2 && out[3] == 10);
    EXPECT_OK(ctx, tally_wget(ctx, "w:1", 3, 1, (const char *[]){"1h"}, TALLY_NOW, out));
    EXPECT(out[0] == 10);
    EXPECT_OK(ctx, tally_wget(ctx, "w:none", 6, 2, w2, TALLY_NOW, out));
    EXPECT(out[0] == 0 && out[1] == 0);
    /* A binary key. */
    EXPECT_OK(ctx, tally_wincrby(ctx, "w\0b", 3, 7, TALLY_NOW, NULL, 1, w2, out));
    EXPECT(out[0] == 7);
    EXPECT_OK(ctx, tally_wget(ctx, "w", 1, 1, w2, TALLY_NOW, out));
    EXPECT(out[0] == 0);

    EXPECT_ERR(ctx, tally_wincrby(ctx, "s:abc", 5, 1, TALLY_NOW, NULL, 0, NULL, out),
               TALLY_ERR_REPLY, "WRONGTYPE");
    EXPECT(strstr(tally_errstr(ctx), "(WINCRBY key \"s:abc\")") != NULL);
    EXPECT_ERR(ctx, tally_wget(ctx, "s:abc", 5, 1, w2, TALLY_NOW, out), TALLY_ERR_REPLY,
               "WRONGTYPE");
    EXPECT_ERR(ctx,
               tally_wincrby(ctx, "w:1", 3, 1, TALLY_NOW, NULL, 1, (const char *[]){"5x"}, out),
               TALLY_ERR_REPLY, "ERR");
    EXPECT_ERR(ctx, tally_wincrby(ctx, "w:1", 3, 1, TALLY_NOW, "no-such-policy", 0, NULL, out),
               TALLY_ERR_REPLY, "ERR");
    EXPECT_ERR(ctx, tally_wget(ctx, "w:1", 3, 0, NULL, TALLY_NOW, out), TALLY_ERR_ARG,
               "no window given");
    EXPECT_ERR(ctx, tally_wget(ctx, "w:1", 3, 2, (const char *[]){"1m", ""}, TALLY_NOW, out),
               TALLY_ERR_ARG, "window 1 is empty");

    /* Quantiles of 1..100 observed now: within the sketch's 1% (plus a rank's width). */
    for (int i = 1; i <= 100; i++)
        EXPECT_OK(ctx, tally_append_command(ctx, "WOBSERVE q:1 %lld", (long long)i));
    for (int i = 1; i <= 100; i++) {
        tally_reply *r = NULL;
        EXPECT_OK(ctx, tally_get_reply(ctx, &r));
        EXPECT_CTX(ctx, r && r->type != TALLY_REPLY_ERROR);
        tally_reply_free(r);
    }
    double qs[] = {0.5, 0.99, 0};
    double vals[3];
    bool present[3];
    EXPECT_OK(ctx, tally_wquantile(ctx, "q:1", 3, "1h", 3, qs, vals, present));
    EXPECT(present[0] && vals[0] >= 49 && vals[0] <= 52);
    EXPECT(present[1] && vals[1] >= 97 && vals[1] <= 101);
    EXPECT(present[2] && vals[2] >= 0.98 && vals[2] <= 1.02);
    /* An empty window: observed two days ago, asked about the last minute. */
    tally_reply_free(
        tally_command(ctx, "WOBSERVE q:old 5 AT %lld", (long long)(now_ms() - 2 * 86400000LL)));
    EXPECT_OK(ctx, tally_wquantile(ctx, "q:old", 5, "1m", 1, qs, vals, present));
    EXPECT(!present[0] && isnan(vals[0]));
    EXPECT_ERR(ctx, tally_wquantile(ctx, "s:abc", 5, "1h", 1, qs, vals, present), TALLY_ERR_REPLY,
               "WRONGTYPE");
    EXPECT_ERR(ctx, tally_wquantile(ctx, "q:1", 3, "1h", 1, (double[]){1.5}, vals, present),
               TALLY_ERR_REPLY, "ERR");
    EXPECT_ERR(ctx, tally_wquantile(ctx, "q:1", 3, "", 1, qs, vals, present), TALLY_ERR_ARG,
               "no window given");
}

/* CL.THROTTLE (server/commands_throttle.c). */
static void test_throttle(tally_ctx *ctx)
{
    struct tally_throttle_result t;
    /* A burst of 2 (so a limit of 3) and 1 per minute. */
    for (int i = 0; i < 3; i++) {
        memset(&t, 0x55, sizeof t);
        EXPECT_OK(ctx, tally_throttle(ctx, "t:1", 3, 2, 1, 60, 1, &t));
        EXPECT(!t.limited && t.limit == 3 && t.remaining == 2 - i && t.retry_after_s == -1);
        EXPECT(t.reset_after_s >= 60 * i && t.reset_after_s <= 60 * (i + 1));
    }
    EXPECT_OK(ctx, tally_throttle(ctx, "t:1", 3, 2, 1, 60, 1, &t));
    EXPECT(t.limited && t.limit == 3 && t.remaining == 0);
    EXPECT(t.retry_after_s >= 1 && t.retry_after_s <= 60);
    EXPECT(t.reset_after_s >= 120 && t.reset_after_s <= 180);
    /* A quantity larger than the burst is always refused. */
    EXPECT_OK(ctx, tally_throttle(ctx, "t:2", 3, 2, 1, 60, 5, &t));
    EXPECT(t.limited && t.remaining == 3);
    EXPECT_ERR(ctx, tally_throttle(ctx, "s:abc", 5, 2, 1, 60, 1, &t), TALLY_ERR_REPLY, "WRONGTYPE");
    EXPECT_ERR(ctx, tally_throttle(ctx, "t:3", 3, 2, 1, 0, 1, &t), TALLY_ERR_REPLY,
               "ERR CL.THROTTLE period");
}

/* ---- pipelining ---------------------------------------------------------------------------- */

static void test_pipeline(tally_ctx *ctx)
{
    long long t0 = mono_ms();
    for (int i = 0; i < PIPELINE_COMMANDS; i++) {
        if (tally_append_command(ctx, "INCR %s", "pipe") != 0) {
            EXPECT_CTX(ctx, !"append");
            return;
        }
    }
    long bad = 0;
    for (long i = 1; i <= PIPELINE_COMMANDS; i++) {
        tally_reply *r;
        if (tally_get_reply(ctx, &r) != 0) {
            fprintf(stderr, "pipeline: reply %ld: %s\n", i, tally_errstr(ctx));
            failed++;
            return;
        }
        if (r->type != TALLY_REPLY_INTEGER || r->integer != i) {
            if (bad++ < 5)
                fprintf(stderr, "pipeline: reply %ld is %s %lld\n", i,
                        tally_reply_type_name(r->type), r->integer);
        }
        tally_reply_free(r);
    }
    EXPECT(bad == 0);
    EXPECT(tally_pending_replies(ctx) == 0);
    int64_t v;
    bool found;
    EXPECT_OK(ctx, tally_get_int(ctx, "pipe", 4, &v, &found));
    EXPECT(v == PIPELINE_COMMANDS);
    printf("pipelined %d INCR in %lld ms\n", PIPELINE_COMMANDS, mono_ms() - t0);
}

/* ---- RESP3 --------------------------------------------------------------------------------- */

static void test_resp3(int port)
{
    /* HELLO 3 sent by hand: the reply is a map, and later replies are RESP3. */
    tally_ctx *ctx = connect_port(port, 2);
    tally_reply *r = tally_command(ctx, "HELLO 3");
    EXPECT_CTX(ctx, r && r->type == TALLY_REPLY_MAP && r->elements >= 2 && r->elements % 2 == 0);
    bool proto3 = false;
    for (size_t i = 0; r && r->type == TALLY_REPLY_MAP && i + 1 < r->elements; i += 2)
        if (reply_is(r->element[i], TALLY_REPLY_STRING, "proto") &&
            r->element[i + 1]->type == TALLY_REPLY_INTEGER && r->element[i + 1]->integer == 3)
            proto3 = true;
    EXPECT(proto3);
    tally_reply_free(r);
    r = tally_command(ctx, "GET r3:missing");
    EXPECT_CTX(ctx, r && r->type == TALLY_REPLY_NIL);
    tally_reply_free(r);
    int64_t v;
    bool found = true;
    EXPECT_OK(ctx, tally_get_int(ctx, "r3:missing", 10, &v, &found));
    EXPECT(!found);
    tally_free(ctx);

    /* The connect option. */
    ctx = connect_port(port, 3);
    r = tally_command(ctx, "CONFIG GET maxclients");
    EXPECT_CTX(ctx, r && r->type == TALLY_REPLY_MAP && r->elements == 2);
    tally_reply_free(r);
    EXPECT_OK(ctx, tally_incrby(ctx, "r3:c", 4, 41, &v));
    EXPECT_OK(ctx, tally_incrby(ctx, "r3:c", 4, 1, &v));
    EXPECT(v == 42);
    EXPECT_OK(ctx, tally_get_int(ctx, "r3:c", 4, &v, &found));
    EXPECT(v == 42 && found);
    const char *w[] = {"1h"};
    EXPECT_OK(ctx, tally_wincrby(ctx, "r3:w", 4, 4, TALLY_NOW, NULL, 1, w, &v));
    EXPECT(v == 4);
    /* Doubles: WQUANTILE answers RESP3 doubles, and nulls for an empty window. */
    tally_reply_free(tally_command(ctx, "WOBSERVE r3:q 12.5"));
    r = tally_command(ctx, "WQUANTILE r3:q 1h 0.5");
    EXPECT_CTX(ctx, r && r->type == TALLY_REPLY_ARRAY && r->elements == 1 &&
                        r->element[0]->type == TALLY_REPLY_DOUBLE &&
                        fabs(r->element[0]->dval - 12.5) <= 0.25);
    tally_reply_free(r);
    r = tally_command(ctx, "WQUANTILE r3:none 1h 0.5");
    EXPECT_CTX(ctx, r && r->type == TALLY_REPLY_ARRAY && r->elements == 1 &&
                        r->element[0]->type == TALLY_REPLY_NIL);
    tally_reply_free(r);
    double q = 0.5, val;
    bool present;
    EXPECT_OK(ctx, tally_wquantile(ctx, "r3:q", 4, "1h", 1, &q, &val, &present));
    EXPECT(present && fabs(val - 12.5) <= 0.25);
    tally_free(ctx);
}

/* ---- timeouts ------------------------------------------------------------------------------ */

static void test_timeouts(struct test_server *s)
{
    /* A listener that never answers: the connect succeeds (the kernel completes it). */
    int port;
    int lfd = silent_listener(16, &port);
    struct tally_options o = {.host = "127.0.0.1", .port = port, .command_timeout_ms = TIMEOUT_MS};
    tally_ctx *ctx = tally_connect_with(&o);
    EXPECT_CTX(ctx, tally_errcode(ctx) == 0);
    long long t0 = mono_ms();
    tally_reply *r = tally_command(ctx, "PING");
    long long took = mono_ms() - t0;
    char want[128];
    snprintf(want, sizeof want, "read from 127.0.0.1:%d: no reply within %d ms", port, TIMEOUT_MS);
    EXPECT_CTX(ctx, r == NULL && tally_errcode(ctx) == TALLY_ERR_TIMEOUT &&
                        strcmp(tally_errstr(ctx), want) == 0);
    EXPECT(took >= TIMEOUT_MS - 10 && took < 5 * TIMEOUT_MS);
    /* The connection is closed after a timeout. */
    EXPECT(tally_fd(ctx) == -1);
    EXPECT_ERR(ctx, tally_append_command(ctx, "PING"), TALLY_ERR_CLOSED, "call tally_reconnect");
    tally_free(ctx);
    close(lfd);

    /* A stopped tallyd. */
    ctx = connect_port(s->port, 2);
    EXPECT_OK(ctx, tally_set_command_timeout(ctx, TIMEOUT_MS));
    kill(s->pid, SIGSTOP);
    int st;
    waitpid(s->pid, &st, WUNTRACED); /* until every thread of it has stopped */
    int64_t v;
    bool found;
    t0 = mono_ms();
    EXPECT_ERR(ctx, tally_get_int(ctx, "stopped", 7, &v, &found), TALLY_ERR_TIMEOUT,
               "no reply within");
    took = mono_ms() - t0;
    EXPECT(took >= TIMEOUT_MS - 10 && took < 5 * TIMEOUT_MS);
    kill(s->pid, SIGCONT);
    EXPECT_OK(ctx, tally_reconnect(ctx));
    EXPECT_OK(ctx, tally_set_command_timeout(ctx, 30000));
    EXPECT_OK(ctx, tally_incrby(ctx, "stopped", 7, 1, &v));
    EXPECT(v == 1);
    tally_free(ctx);
}

/* ---- reconnect after a restart ------------------------------------------------------------- */

/* Starts tallyd on a given port and data directory (the harness always picks a new port). */
static pid_t start_tallyd_on(int port, const char *dir, const char *log)
{
    char portbuf[16];
    snprintf(portbuf, sizeof portbuf, "%d", port);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (!freopen(log, "w", stderr) || dup2(2, 1) < 0)
            _exit(126);
        execlp(srv_binary(), srv_binary(), "--port", portbuf, "--dir", dir, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static pid_t restarted_pid;

static void kill_restarted(void)
{
    if (restarted_pid > 0) {
        kill(restarted_pid, SIGKILL);
        waitpid(restarted_pid, NULL, 0);
    }
}

static void test_reconnect(struct test_server *s)
{
    tally_ctx *ctx = connect_port(s->port, 3);
    int64_t v;
    bool found;
    EXPECT_OK(ctx, tally_incrby(ctx, "survivor", 8, 99, &v));
    int port = s->port;
    EXPECT(srv_stop_with(s, SIGTERM) == 0);
    /* The server is gone: the next call fails on the connection and closes it. */
    int rc = tally_incrby(ctx, "survivor", 8, 1, &v);
    EXPECT_CTX(ctx, (rc == TALLY_ERR_EOF || rc == TALLY_ERR_IO) && tally_fd(ctx) == -1);
    EXPECT_ERR(ctx, tally_reconnect(ctx), TALLY_ERR_IO, "Connection refused");

    char log[4300];
    snprintf(log, sizeof log, "%s.restart.log", s->dir);
    restarted_pid = start_tallyd_on(port, s->dir, log);
    atexit(kill_restarted);
    long long t0 = mono_ms();
    while (tally_reconnect(ctx) != 0 && mono_ms() - t0 < RESTART_WAIT_MS)
        usleep(20000);
    EXPECT_CTX(ctx, tally_errcode(ctx) == 0);
    /* Retried until the server has loaded its data (it may answer LOADING first). */
    rc = -1;
    for (t0 = mono_ms(); rc != 0 && mono_ms() - t0 < RESTART_WAIT_MS; usleep(20000))
        rc = tally_get_int(ctx, "survivor", 8, &v, &found);
    EXPECT_CTX(ctx, rc == 0 && found && v == 99);
    /* HELLO 3 was repeated at reconnect. */
    tally_reply *r = tally_command(ctx, "CONFIG GET maxclients");
    EXPECT_CTX(ctx, r && r->type == TALLY_REPLY_MAP);
    tally_reply_free(r);
    tally_free(ctx);
    kill(restarted_pid, SIGTERM);
    waitpid(restarted_pid, NULL, 0);
    restarted_pid = 0;
}

int main(void)
{
    srv_setup(TEST_ALARM_S);
    char *tmp = test_tmpdir("client");
    struct test_server s;
    srv_init(&s, tmp, "tallyd");
    srv_start(&s);

    test_connect(tmp);
    tally_ctx *ctx = connect_port(s.port, 2);
    test_commands(ctx);
    test_counters(ctx);
    test_hll(ctx);
    test_pipeline(ctx);
    test_windows(ctx);
    test_throttle(ctx);
    tally_free(ctx);
    test_resp3(s.port);
    test_timeouts(&s);
    test_reconnect(&s);

    test_rmdir(tmp);
    free(tmp);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
