/*
 * test_server.c - tallyd's commands, end to end through hiredis.
 *
 * Starts tallyd on a free loopback port with a temporary --dir and checks, with exact values:
 * - strings: GET and SET with every option (EX PX EXAT PXAT NX XX KEEPTTL GET), SETNX, SETEX,
 *   PSETEX, GETSET, GETDEL, GETEX, MGET, MSET, MSETNX, INCR/DECR/INCRBY/DECRBY, INCRBYFLOAT,
 *   APPEND, STRLEN, binary-safe keys and values, and their error replies;
 * - INCREX: increments, bounds, SATURATE, the type's limits, EX/PX/EXAT/PXAT/PERSIST and ENX;
 * - keys: DEL, UNLINK, EXISTS, TYPE, EXPIRE/PEXPIRE/EXPIREAT/PEXPIREAT with NX XX GT LT, TTL,
 *   PTTL, EXPIRETIME, PEXPIRETIME, PERSIST, KEYS with glob patterns, DBSIZE, FLUSHALL,
 *   FLUSHDB, and SCAN (MATCH, COUNT, TYPE): a full iteration over 10,000 keys returns every key
 *   (at least once, Redis's guarantee) and nothing else;
 * - connection: PING, ECHO, HELLO 2/3 (RESP3's map, null and double, read over a raw socket
 *   since Debian's hiredis 0.14 predates RESP3), AUTH against a second server started with
 *   --requirepass, CLIENT ID/SETNAME/GETNAME/LIST/INFO/KILL, SELECT, RESET, QUIT;
 * - server: INFO and its sections, CONFIG GET/SET, COMMAND COUNT/INFO/DOCS/LIST, TIME, SLOWLOG;
 * - databases: SELECT, keys of one database invisible from another (GET EXISTS KEYS SCAN
 *   DBSIZE), keys starting with byte 0xFF in database 0, FLUSHDB of one database, INFO keyspace;
 * - pipelining of 10,000 commands; MULTI/EXEC atomicity against a concurrent reader (it only
 *   ever sees multiples of 1000), and MSET's (a reader of both keys never sees them differ);
 *   expiry of a 50 ms TTL (polled, at most 1 s); a restart after SIGTERM keeps every value and
 *   TTL, in database 3 too; kill -9 under --fsync always loses no acknowledged INCR;
 * - HyperLogLog: PFADD/PFCOUNT/PFMERGE with Redis's exact bytes for a small HLL (sparse, then
 *   its cached count) and WRONGTYPE; PFCOUNT within 2% of 1,000, 100,000 and 10,000,000
 *   distinct elements sent in pipelined PFADD batches.
 *
 * Each failed check prints its line, the command, what was expected and what came back; the
 * test goes on and ends with "N passed, M failed". A lost connection ends it at once.
 *
 * Environment: TALLYD (else server/tallyd, ../server/tallyd); TALLY_TEST_SERVER=redis runs the
 * same checks against redis-server (Tally's own commands are skipped there), to check the test.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "server_harness.h"
#include "testutil.h"

#define REPLY_TIMEOUT_S 10
#define TEST_ALARM_S    300
#define PIPELINE_N      10000
#define SCAN_KEYS       10000
#define SCAN_MAX_CALLS  100000
#define MULTI_ROUNDS    30
#define MULTI_BATCH     1000
#define EXPIRY_POLL_MS  1000
#define CRASH_ROUNDS    3
#define CRASH_KEYS      4
#define CRASH_BATCH     32
#define CRASH_MIN_ACKED 2000
#define CRASH_WAIT_MS   10000
#define BIG_VALUE_BYTES (1 << 20)

/* ---- checks that report and go on ----------------------------------------------------------- */

static int n_passed, n_failed;
static char last_cmd[512]; /* the request being checked, as redis-cli would show it */
static int g_port;         /* the main server */
static bool g_redis;       /* running against redis-server: skip Tally's own commands */

static void fail_at(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail_at(int line, const char *fmt, ...)
{
    va_list ap;
    n_failed++;
    printf("FAIL line %d: %s\n  ", line, last_cmd);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

static void pass(void)
{
    n_passed++;
}

/* The request as text: each argument quoted, from hiredis's RESP encoding of it. */
static void describe_request(const char *resp, size_t len, char *out, size_t cap)
{
    size_t o = 0, pos = 0;
    out[0] = 0;
    const char *nl = memchr(resp, '\n', len);
    if (!nl)
        return;
    pos = (size_t)(nl - resp) + 1;
    while (pos < len && o + 16 < cap) {
        long n = strtol(resp + pos + 1, NULL, 10);
        nl = memchr(resp + pos, '\n', len - pos);
        if (!nl || n < 0)
            break;
        pos = (size_t)(nl - resp) + 1;
        char arg[200];
        escape_into(arg, sizeof arg, resp + pos, (size_t)n < 150 ? (size_t)n : 150);
        o += (size_t)snprintf(out + o, cap - o, "%s\"%s\"", o ? " " : "", arg);
        pos += (size_t)n + 2;
    }
}

static void describe_reply(const redisReply *r, char *out, size_t cap)
{
    char s[300];
    if (!r) {
        snprintf(out, cap, "(no reply)");
        return;
    }
    switch (r->type) {
    case REDIS_REPLY_STRING:
        escape_into(s, sizeof s, r->str, r->len);
        snprintf(out, cap, "\"%s\"", s);
        break;
    case REDIS_REPLY_INTEGER:
        snprintf(out, cap, "(integer) %lld", r->integer);
        break;
    case REDIS_REPLY_NIL:
        snprintf(out, cap, "(nil)");
        break;
    case REDIS_REPLY_STATUS:
        escape_into(s, sizeof s, r->str, r->len);
        snprintf(out, cap, "(status) %s", s);
        break;
    case REDIS_REPLY_ERROR:
        escape_into(s, sizeof s, r->str, r->len);
        snprintf(out, cap, "(error) %s", s);
        break;
    case REDIS_REPLY_ARRAY: {
        size_t o = (size_t)snprintf(out, cap, "(array of %zu)", r->elements);
        for (size_t i = 0; i < r->elements && i < 6 && o + 40 < cap; i++) {
            describe_reply(r->element[i], s, sizeof s);
            o += (size_t)snprintf(out + o, cap - o, "%s%s", i ? ", " : " ", s);
        }
        if (r->elements > 6 && o + 8 < cap)
            snprintf(out + o, cap - o, ", ...");
        break;
    }
    default:
        snprintf(out, cap, "(type %d)", r->type);
    }
}

static redisContext *connect_port(int port)
{
    struct timeval tv = {.tv_sec = REPLY_TIMEOUT_S};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c || c->err) {
        fprintf(stderr, "cannot connect to 127.0.0.1:%d: %s\n", port, c ? c->errstr : "oom");
        exit(1);
    }
    redisSetTimeout(c, tv);
    return c;
}

/* Sends one command (hiredis's format) and returns its reply; NULL with *err on a connection
 * error. */
static redisReply *vcmd_try(redisContext *c, const char *fmt, va_list ap)
{
    char *resp;
    int len = redisvFormatCommand(&resp, fmt, ap);
    if (len < 0) {
        fprintf(stderr, "bad command format %s\n", fmt);
        exit(1);
    }
    describe_request(resp, (size_t)len, last_cmd, sizeof last_cmd);
    redisAppendFormattedCommand(c, resp, (size_t)len);
    redisFreeCommand(resp);
    void *r = NULL;
    if (redisGetReply(c, &r) != REDIS_OK)
        return NULL;
    return r;
}

static redisReply *cmd_try(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = vcmd_try(c, fmt, ap);
    va_end(ap);
    return r;
}

/* As cmd_try, but a lost connection ends the test: the server probably died. */
static redisReply *cmd_at(int line, redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = vcmd_try(c, fmt, ap);
    va_end(ap);
    if (!r) {
        printf("FAIL line %d: %s\n  connection error: %s (did the server die?)\n", line, last_cmd,
               c->errstr);
        printf("%d passed, %d failed\n", n_passed, n_failed + 1);
        exit(1);
    }
    return r;
}
#define CMD(c, ...) cmd_at(__LINE__, (c), __VA_ARGS__)

static void expect_int(int line, redisReply *r, long long v)
{
    char got[600];
    if (r->type == REDIS_REPLY_INTEGER && r->integer == v) {
        pass();
    } else {
        describe_reply(r, got, sizeof got);
        fail_at(line, "expected (integer) %lld, got %s", v, got);
    }
    freeReplyObject(r);
}
#define EXPECT_INT(r, v) expect_int(__LINE__, (r), (v))

static void expect_range(int line, redisReply *r, long long lo, long long hi)
{
    char got[600];
    if (r->type == REDIS_REPLY_INTEGER && r->integer >= lo && r->integer <= hi) {
        pass();
    } else {
        describe_reply(r, got, sizeof got);
        fail_at(line, "expected an integer in [%lld, %lld], got %s", lo, hi, got);
    }
    freeReplyObject(r);
}
#define EXPECT_RANGE(r, lo, hi) expect_range(__LINE__, (r), (lo), (hi))

static void expect_strn(int line, redisReply *r, const char *s, size_t n)
{
    char got[600], want[300];
    if (r->type == REDIS_REPLY_STRING && r->len == n && memcmp(r->str, s, n) == 0) {
        pass();
    } else {
        describe_reply(r, got, sizeof got);
        escape_into(want, sizeof want, s, n);
        fail_at(line, "expected \"%s\", got %s", want, got);
    }
    freeReplyObject(r);
}
#define EXPECT_STR(r, s) expect_strn(__LINE__, (r), (s), strlen(s))

static void expect_status(int line, redisReply *r, const char *s)
{
    char got[600];
    if (r->type == REDIS_REPLY_STATUS && strcmp(r->str, s) == 0) {
        pass();
    } else {
        describe_reply(r, got, sizeof got);
        fail_at(line, "expected (status) %s, got %s", s, got);
    }
    freeReplyObject(r);
}
#define EXPECT_OK(r)        expect_status(__LINE__, (r), "OK")
#define EXPECT_STATUS(r, s) expect_status(__LINE__, (r), (s))

static void expect_nil(int line, redisReply *r)
{
    char got[600];
    if (r->type == REDIS_REPLY_NIL) {
        pass();
    } else {
        describe_reply(r, got, sizeof got);
        fail_at(line, "expected (nil), got %s", got);
    }
    freeReplyObject(r);
}
#define EXPECT_NIL(r) expect_nil(__LINE__, (r))

/* An error reply: exactly text, or starting with text when prefix. */
static void expect_err(int line, redisReply *r, const char *text, bool prefix)
{
    char got[600];
    if (r->type == REDIS_REPLY_ERROR &&
        (prefix ? strncmp(r->str, text, strlen(text)) == 0 : strcmp(r->str, text) == 0)) {
        pass();
    } else {
        describe_reply(r, got, sizeof got);
        fail_at(line, "expected (error) %s%s, got %s", text, prefix ? "..." : "", got);
    }
    freeReplyObject(r);
}
#define EXPECT_ERR(r, s)        expect_err(__LINE__, (r), (s), false)
#define EXPECT_ERR_PREFIX(r, s) expect_err(__LINE__, (r), (s), true)

/* An array of bulk strings and nils, written as "a,b,(nil)"; sorted first when sorted. */
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void expect_list(int line, redisReply *r, const char *want, bool sorted)
{
    char got[600], joined[4096];
    size_t o = 0;
    bool ok = r->type == REDIS_REPLY_ARRAY;
    if (ok) {
        char **items = calloc(r->elements + 1, sizeof *items);
        for (size_t i = 0; i < r->elements; i++) {
            redisReply *e = r->element[i];
            if (e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS)
                items[i] = strndup(e->str, e->len);
            else if (e->type == REDIS_REPLY_NIL)
                items[i] = strdup("(nil)");
            else if (e->type == REDIS_REPLY_INTEGER)
                asprintf(&items[i], "(integer) %lld", e->integer);
            else
                items[i] = strdup("(other)");
        }
        if (sorted)
            qsort(items, r->elements, sizeof *items, cmp_str);
        joined[0] = 0;
        for (size_t i = 0; i < r->elements; i++) {
            if (o + strlen(items[i]) + 2 < sizeof joined)
                o +=
                    (size_t)snprintf(joined + o, sizeof joined - o, "%s%s", i ? "," : "", items[i]);
            free(items[i]);
        }
        free(items);
        ok = strcmp(joined, want) == 0;
    }
    if (ok) {
        pass();
    } else {
        describe_reply(r, got, sizeof got);
        fail_at(line, "expected [%s]%s, got %s", want, sorted ? " (any order)" : "", got);
    }
    freeReplyObject(r);
}
#define EXPECT_LIST(r, s)        expect_list(__LINE__, (r), (s), false)
#define EXPECT_SORTED_LIST(r, s) expect_list(__LINE__, (r), (s), true)

#define CHECK_TRUE(cond, ...)                                                                      \
    do {                                                                                           \
        if (cond)                                                                                  \
            pass();                                                                                \
        else                                                                                       \
            fail_at(__LINE__, __VA_ARGS__);                                                        \
    } while (0)

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static redisContext *fresh(void)
{
    redisContext *c = connect_port(g_port);
    EXPECT_OK(CMD(c, "FLUSHALL"));
    return c;
}

/* ---- RESP3 over a raw socket (hiredis 0.14 cannot parse it) --------------------------------- */

/* Sends argv (C strings, NULL-terminated) and returns one reply's bytes in a malloc'd copy. */
static char *raw_cmd(struct conn *c, size_t *n, ...)
{
    char *argv[32];
    size_t lens[32];
    int argc = 0;
    va_list ap;
    va_start(ap, n);
    for (char *a; argc < 32 && (a = va_arg(ap, char *)) != NULL; argc++) {
        argv[argc] = a;
        lens[argc] = strlen(a);
    }
    va_end(ap);
    char req[300];
    size_t o = 0;
    for (int i = 0; i < argc && o + 40 < sizeof req; i++)
        o += (size_t)snprintf(req + o, sizeof req - o, "%s\"%.100s\"", i ? " " : "", argv[i]);
    snprintf(last_cmd, sizeof last_cmd, "%s (raw)", req);
    const char *r, *why = "";
    long len;
    if (conn_send_cmd(c, argc, argv, lens) < 0 || (len = conn_read_reply(c, &r, &why)) < 0) {
        printf("FAIL: %s\n  %s\n", last_cmd, why);
        printf("%d passed, %d failed\n", n_passed, n_failed + 1);
        exit(1);
    }
    char *copy = malloc((size_t)len + 1);
    memcpy(copy, r, (size_t)len);
    copy[len] = 0;
    *n = (size_t)len;
    conn_consume(c, (size_t)len);
    return copy;
}

static void expect_raw(int line, char *got, size_t n, const char *want, bool prefix)
{
    size_t wl = strlen(want);
    if (prefix ? (n >= wl && memcmp(got, want, wl) == 0) : (n == wl && memcmp(got, want, n) == 0)) {
        pass();
    } else {
        char g[600], w[300];
        escape_into(g, sizeof g, got, n);
        escape_into(w, sizeof w, want, wl);
        fail_at(line, "expected \"%s\"%s, got \"%s\"", w, prefix ? "..." : "", g);
    }
    free(got);
}
#define RAW_EQ(c, want, ...)                                                                       \
    do {                                                                                           \
        size_t _n;                                                                                 \
        char *_g = raw_cmd((c), &_n, __VA_ARGS__, (char *)NULL);                                   \
        expect_raw(__LINE__, _g, _n, (want), false);                                               \
    } while (0)
#define RAW_PREFIX(c, want, ...)                                                                   \
    do {                                                                                           \
        size_t _n;                                                                                 \
        char *_g = raw_cmd((c), &_n, __VA_ARGS__, (char *)NULL);                                   \
        expect_raw(__LINE__, _g, _n, (want), true);                                                \
    } while (0)

/* ---- strings -------------------------------------------------------------------------------- */

static void test_get_set(void)
{
    redisContext *c = fresh();
    long long t = now_ms();
    EXPECT_OK(CMD(c, "SET k v"));
    EXPECT_STR(CMD(c, "GET k"), "v");
    EXPECT_NIL(CMD(c, "GET missing"));
    EXPECT_NIL(CMD(c, "SET k v2 NX"));
    EXPECT_STR(CMD(c, "GET k"), "v");
    EXPECT_OK(CMD(c, "SET k v3 XX"));
    EXPECT_STR(CMD(c, "GET k"), "v3");
    EXPECT_NIL(CMD(c, "SET nk v XX"));
    EXPECT_INT(CMD(c, "EXISTS nk"), 0);
    EXPECT_OK(CMD(c, "SET nk v NX"));
    EXPECT_STR(CMD(c, "SET k v4 GET"), "v3");
    EXPECT_NIL(CMD(c, "SET gk v GET"));
    EXPECT_STR(CMD(c, "GET gk"), "v");
    EXPECT_OK(CMD(c, "set lower case"));
    EXPECT_STR(CMD(c, "get lower"), "case");

    EXPECT_OK(CMD(c, "SET k v EX 100"));
    EXPECT_RANGE(CMD(c, "TTL k"), 99, 100);
    EXPECT_OK(CMD(c, "SET k v PX 100000"));
    EXPECT_RANGE(CMD(c, "PTTL k"), 98000, 100000);
    EXPECT_OK(CMD(c, "SET k v EXAT %lld", t / 1000 + 200));
    EXPECT_RANGE(CMD(c, "TTL k"), 198, 200);
    EXPECT_OK(CMD(c, "SET k v PXAT %lld", t + 300000));
    EXPECT_RANGE(CMD(c, "PTTL k"), 298000, 300000);
    EXPECT_RANGE(CMD(c, "PEXPIRETIME k"), t + 300000, t + 300000);
    EXPECT_OK(CMD(c, "SET k v2 KEEPTTL"));
    EXPECT_RANGE(CMD(c, "PTTL k"), 298000, 300000);
    EXPECT_STR(CMD(c, "GET k"), "v2");
    EXPECT_OK(CMD(c, "SET k v3"));
    EXPECT_INT(CMD(c, "TTL k"), -1);
    EXPECT_OK(CMD(c, "SET k v ex 100 xx"));
    EXPECT_RANGE(CMD(c, "TTL k"), 99, 100);
    EXPECT_STR(CMD(c, "SET k v5 XX KEEPTTL GET"), "v");
    EXPECT_RANGE(CMD(c, "TTL k"), 99, 100);

    EXPECT_ERR(CMD(c, "SET k v NX XX"), "ERR syntax error");
    EXPECT_ERR(CMD(c, "SET k v EX 10 PX 100"), "ERR syntax error");
    EXPECT_ERR(CMD(c, "SET k v EX 10 KEEPTTL"), "ERR syntax error");
    EXPECT_ERR(CMD(c, "SET k v EX"), "ERR syntax error");
    EXPECT_ERR(CMD(c, "SET k v FOO"), "ERR syntax error");
    EXPECT_ERR(CMD(c, "SET k v EX 0"), "ERR invalid expire time in 'set' command");
    EXPECT_ERR(CMD(c, "SET k v PX -5"), "ERR invalid expire time in 'set' command");
    EXPECT_ERR(CMD(c, "SET k v EX abc"), "ERR value is not an integer or out of range");
    EXPECT_ERR(CMD(c, "SET k"), "ERR wrong number of arguments for 'set' command");
    EXPECT_ERR(CMD(c, "GET"), "ERR wrong number of arguments for 'get' command");
    EXPECT_ERR(CMD(c, "GET a b"), "ERR wrong number of arguments for 'get' command");
    EXPECT_STR(CMD(c, "GET k"), "v5");

    /* Binary-safe keys and values, the empty value, and a 1 MiB value. */
    static const char bkey[] = "k\0\r\n ey", bval[] = "\0\r\n\xff value";
    EXPECT_OK(CMD(c, "SET %b %b", bkey, sizeof bkey - 1, bval, sizeof bval - 1));
    expect_strn(__LINE__, CMD(c, "GET %b", bkey, sizeof bkey - 1), bval, sizeof bval - 1);
    EXPECT_OK(CMD(c, "SET empty %b", "", (size_t)0));
    EXPECT_STR(CMD(c, "GET empty"), "");
    EXPECT_INT(CMD(c, "STRLEN empty"), 0);
    char *big = malloc(BIG_VALUE_BYTES);
    uint64_t seed = 42;
    for (size_t i = 0; i < BIG_VALUE_BYTES; i++)
        big[i] = (char)test_rand(&seed);
    EXPECT_OK(CMD(c, "SET big %b", big, (size_t)BIG_VALUE_BYTES));
    expect_strn(__LINE__, CMD(c, "GET big"), big, BIG_VALUE_BYTES);
    EXPECT_INT(CMD(c, "STRLEN big"), BIG_VALUE_BYTES);
    free(big);
    redisFree(c);
}

static void test_string_commands(void)
{
    redisContext *c = fresh();
    long long t = now_ms();
    EXPECT_OK(CMD(c, "SET k v"));
    EXPECT_INT(CMD(c, "SETNX k x"), 0);
    EXPECT_INT(CMD(c, "SETNX sn x"), 1);
    EXPECT_STR(CMD(c, "GET sn"), "x");
    EXPECT_ERR(CMD(c, "SETNX sn"), "ERR wrong number of arguments for 'setnx' command");

    EXPECT_OK(CMD(c, "SETEX se 100 v"));
    EXPECT_RANGE(CMD(c, "TTL se"), 99, 100);
    EXPECT_STR(CMD(c, "GET se"), "v");
    EXPECT_ERR(CMD(c, "SETEX se 0 v"), "ERR invalid expire time in 'setex' command");
    EXPECT_ERR(CMD(c, "SETEX se abc v"), "ERR value is not an integer or out of range");
    EXPECT_OK(CMD(c, "PSETEX pse 100000 v"));
    EXPECT_RANGE(CMD(c, "PTTL pse"), 98000, 100000);
    EXPECT_ERR(CMD(c, "PSETEX pse 0 v"), "ERR invalid expire time in 'psetex' command");

    EXPECT_STR(CMD(c, "GETSET k new"), "v");
    EXPECT_NIL(CMD(c, "GETSET gs x"));
    EXPECT_STR(CMD(c, "GET gs"), "x");
    EXPECT_OK(CMD(c, "SET t v EX 100"));
    EXPECT_STR(CMD(c, "GETSET t w"), "v");
    EXPECT_INT(CMD(c, "TTL t"), -1);

    EXPECT_STR(CMD(c, "GETDEL k"), "new");
    EXPECT_NIL(CMD(c, "GETDEL k"));
    EXPECT_INT(CMD(c, "EXISTS k"), 0);

    EXPECT_OK(CMD(c, "SET ge v"));
    EXPECT_STR(CMD(c, "GETEX ge"), "v");
    EXPECT_INT(CMD(c, "TTL ge"), -1);
    EXPECT_STR(CMD(c, "GETEX ge EX 100"), "v");
    EXPECT_RANGE(CMD(c, "TTL ge"), 99, 100);
    EXPECT_STR(CMD(c, "GETEX ge PX 200000"), "v");
    EXPECT_RANGE(CMD(c, "PTTL ge"), 198000, 200000);
    EXPECT_STR(CMD(c, "GETEX ge EXAT %lld", t / 1000 + 300), "v");
    EXPECT_RANGE(CMD(c, "TTL ge"), 298, 300);
    EXPECT_STR(CMD(c, "GETEX ge PXAT %lld", t + 400000), "v");
    EXPECT_RANGE(CMD(c, "PEXPIRETIME ge"), t + 400000, t + 400000);
    EXPECT_STR(CMD(c, "GETEX ge PERSIST"), "v");
    EXPECT_INT(CMD(c, "TTL ge"), -1);
    EXPECT_NIL(CMD(c, "GETEX nothing"));
    EXPECT_NIL(CMD(c, "GETEX nothing EX 10"));
    EXPECT_INT(CMD(c, "EXISTS nothing"), 0);
    EXPECT_ERR(CMD(c, "GETEX ge EX -5"), "ERR invalid expire time in 'getex' command");
    EXPECT_ERR(CMD(c, "GETEX ge EX 10 PX 10"), "ERR syntax error");
    EXPECT_ERR(CMD(c, "GETEX ge FOO"), "ERR syntax error");

    EXPECT_OK(CMD(c, "MSET a 1 b 2 c 3"));
    EXPECT_LIST(CMD(c, "MGET a b nope c"), "1,2,(nil),3");
    EXPECT_ERR(CMD(c, "MSET a 1 b"), "ERR wrong number of arguments for 'mset' command");
    EXPECT_ERR(CMD(c, "MGET"), "ERR wrong number of arguments for 'mget' command");
    EXPECT_INT(CMD(c, "MSETNX a 9 z 2"), 0);
    EXPECT_INT(CMD(c, "EXISTS z"), 0);
    EXPECT_STR(CMD(c, "GET a"), "1");
    EXPECT_INT(CMD(c, "MSETNX y 1 z 2"), 1);
    EXPECT_LIST(CMD(c, "MGET y z"), "1,2");
    EXPECT_ERR(CMD(c, "MSETNX y"), "ERR wrong number of arguments for 'msetnx' command");

    EXPECT_INT(CMD(c, "APPEND ap hel"), 3);
    EXPECT_INT(CMD(c, "APPEND ap lo"), 5);
    EXPECT_STR(CMD(c, "GET ap"), "hello");
    EXPECT_INT(CMD(c, "STRLEN ap"), 5);
    EXPECT_INT(CMD(c, "STRLEN nope"), 0);
    EXPECT_INT(CMD(c, "INCRBY n 10"), 10);
    EXPECT_INT(CMD(c, "STRLEN n"), 2);
    EXPECT_INT(CMD(c, "APPEND n 5"), 3);
    EXPECT_INT(CMD(c, "INCR n"), 106);
    EXPECT_STR(CMD(c, "GET n"), "106");
    EXPECT_ERR(CMD(c, "APPEND ap"), "ERR wrong number of arguments for 'append' command");
    EXPECT_ERR(CMD(c, "STRLEN"), "ERR wrong number of arguments for 'strlen' command");
    redisFree(c);
}

static void test_incr_family(void)
{
    redisContext *c = fresh();
    EXPECT_INT(CMD(c, "INCR i"), 1);
    EXPECT_INT(CMD(c, "INCR i"), 2);
    EXPECT_INT(CMD(c, "DECR i"), 1);
    EXPECT_INT(CMD(c, "DECR fresh"), -1);
    EXPECT_INT(CMD(c, "INCRBY i 10"), 11);
    EXPECT_INT(CMD(c, "INCRBY i -20"), -9);
    EXPECT_INT(CMD(c, "DECRBY i 5"), -14);
    EXPECT_INT(CMD(c, "DECRBY i -4"), -10);
    EXPECT_STR(CMD(c, "GET i"), "-10");
    EXPECT_OK(CMD(c, "SET s 41"));
    EXPECT_INT(CMD(c, "INCR s"), 42);
    EXPECT_OK(CMD(c, "SET max 9223372036854775807"));
    EXPECT_ERR(CMD(c, "INCR max"), "ERR increment or decrement would overflow");
    EXPECT_ERR(CMD(c, "INCRBY max 1"), "ERR increment or decrement would overflow");
    EXPECT_STR(CMD(c, "GET max"), "9223372036854775807");
    EXPECT_OK(CMD(c, "SET min -9223372036854775808"));
    EXPECT_ERR(CMD(c, "DECR min"), "ERR increment or decrement would overflow");
    EXPECT_ERR(CMD(c, "DECRBY x -9223372036854775808"), "ERR decrement would overflow");
    EXPECT_ERR(CMD(c, "INCRBY i abc"), "ERR value is not an integer or out of range");
    EXPECT_ERR(CMD(c, "INCRBY i 1.5"), "ERR value is not an integer or out of range");
    EXPECT_ERR(CMD(c, "INCRBY i 99999999999999999999"),
               "ERR value is not an integer or out of range");
    EXPECT_OK(CMD(c, "SET str hello"));
    EXPECT_ERR(CMD(c, "INCR str"), "ERR value is not an integer or out of range");
    EXPECT_ERR(CMD(c, "DECR str"), "ERR value is not an integer or out of range");
    EXPECT_STR(CMD(c, "GET str"), "hello");
    EXPECT_ERR(CMD(c, "INCR"), "ERR wrong number of arguments for 'incr' command");
    EXPECT_ERR(CMD(c, "INCRBY i"), "ERR wrong number of arguments for 'incrby' command");
    EXPECT_ERR(CMD(c, "DECRBY i 1 2"), "ERR wrong number of arguments for 'decrby' command");

    /* INCRBYFLOAT answers a bulk string in Redis's shortest form, in both protocols. */
    EXPECT_STR(CMD(c, "INCRBYFLOAT f 10.5"), "10.5");
    EXPECT_STR(CMD(c, "INCRBYFLOAT f 0.1"), "10.6");
    EXPECT_STR(CMD(c, "INCRBYFLOAT f -5"), "5.6");
    EXPECT_STR(CMD(c, "INCRBYFLOAT f2 5.0e3"), "5000");
    EXPECT_STR(CMD(c, "GET f"), "5.6");
    EXPECT_STR(CMD(c, "INCRBYFLOAT i 1.5"), "-8.5");
    EXPECT_STR(CMD(c, "INCRBYFLOAT s 0.5"), "42.5");
    EXPECT_OK(CMD(c, "SET whole 3.0"));
    EXPECT_STR(CMD(c, "INCRBYFLOAT whole 1"), "4");
    EXPECT_ERR(CMD(c, "INCRBYFLOAT f abc"), "ERR value is not a valid float");
    EXPECT_ERR(CMD(c, "INCRBYFLOAT str 1"), "ERR value is not a valid float");
    EXPECT_ERR(CMD(c, "INCRBYFLOAT f inf"), "ERR increment would produce NaN or Infinity");
    /* As Redis: the stored value is read first, so a value that is no float answers that,
     * whatever the increment. */
    EXPECT_ERR(CMD(c, "INCRBYFLOAT str inf"), "ERR value is not a valid float");
    EXPECT_ERR(CMD(c, "INCRBYFLOAT str -inf"), "ERR value is not a valid float");
    EXPECT_ERR(CMD(c, "INCR f"), "ERR value is not an integer or out of range");
    EXPECT_STR(CMD(c, "GET f"), "5.6");
    redisFree(c);
}

static void test_increx(void)
{
    if (g_redis) {
        printf("skipped against redis-server: INCREX (Redis 8.8)\n");
        return;
    }
    redisContext *c = fresh();
    EXPECT_LIST(CMD(c, "INCREX x"), "(integer) 1,(integer) 1");
    EXPECT_LIST(CMD(c, "INCREX x BYINT 5"), "(integer) 6,(integer) 5");
    EXPECT_LIST(CMD(c, "INCREX x BYINT -10"), "(integer) -4,(integer) -10");
    EXPECT_STR(CMD(c, "GET x"), "-4");

    /* Bounds: a result outside is not applied, and answers [current, 0]. */
    EXPECT_OK(CMD(c, "SET b 99"));
    EXPECT_LIST(CMD(c, "INCREX b BYINT 5 UBOUND 100"), "(integer) 99,(integer) 0");
    EXPECT_STR(CMD(c, "GET b"), "99");
    EXPECT_LIST(CMD(c, "INCREX b BYINT 1 UBOUND 100"), "(integer) 100,(integer) 1");
    EXPECT_LIST(CMD(c, "INCREX b BYINT -101 LBOUND 0"), "(integer) 100,(integer) 0");
    EXPECT_LIST(CMD(c, "INCREX b BYINT -100 LBOUND 0 UBOUND 100"), "(integer) 0,(integer) -100");
    EXPECT_OK(CMD(c, "SET b 99"));
    EXPECT_LIST(CMD(c, "INCREX b BYINT 5 UBOUND 100 SATURATE"), "(integer) 100,(integer) 1");
    EXPECT_LIST(CMD(c, "INCREX b BYINT 5 UBOUND 100 SATURATE"), "(integer) 100,(integer) 0");
    EXPECT_LIST(CMD(c, "INCREX b BYINT -500 LBOUND -10 SATURATE"), "(integer) -10,(integer) -110");
    EXPECT_STR(CMD(c, "GET b"), "-10");
    /* A rejected increment on a missing key does not create it. */
    EXPECT_LIST(CMD(c, "INCREX nk BYINT 5 UBOUND 3"), "(integer) 0,(integer) 0");
    EXPECT_INT(CMD(c, "EXISTS nk"), 0);
    /* The type's own limits. */
    EXPECT_OK(CMD(c, "SET big 9223372036854775806"));
    EXPECT_LIST(CMD(c, "INCREX big BYINT 5"), "(integer) 9223372036854775806,(integer) 0");
    EXPECT_LIST(CMD(c, "INCREX big BYINT 5 SATURATE"), "(integer) 9223372036854775807,(integer) 1");

    /* Expiry options; a rejected step leaves the TTL alone; ENX only sets a missing one. */
    EXPECT_LIST(CMD(c, "INCREX e EX 100"), "(integer) 1,(integer) 1");
    EXPECT_RANGE(CMD(c, "TTL e"), 99, 100);
    EXPECT_LIST(CMD(c, "INCREX e EX 10 ENX"), "(integer) 2,(integer) 1");
    EXPECT_RANGE(CMD(c, "TTL e"), 99, 100);
    EXPECT_LIST(CMD(c, "INCREX e BYINT 5 UBOUND 3 EX 10"), "(integer) 2,(integer) 0");
    EXPECT_RANGE(CMD(c, "TTL e"), 99, 100);
    EXPECT_LIST(CMD(c, "INCREX e PX 200000"), "(integer) 3,(integer) 1");
    EXPECT_RANGE(CMD(c, "PTTL e"), 198000, 200000);
    long long t = now_ms();
    EXPECT_LIST(CMD(c, "INCREX e PXAT %lld", t + 300000), "(integer) 4,(integer) 1");
    EXPECT_RANGE(CMD(c, "PEXPIRETIME e"), t + 300000, t + 300000);
    EXPECT_LIST(CMD(c, "INCREX e EXAT %lld", t / 1000 + 400), "(integer) 5,(integer) 1");
    EXPECT_RANGE(CMD(c, "EXPIRETIME e"), t / 1000 + 400, t / 1000 + 400);
    EXPECT_LIST(CMD(c, "INCREX e PERSIST"), "(integer) 6,(integer) 1");
    EXPECT_INT(CMD(c, "TTL e"), -1);
    EXPECT_LIST(CMD(c, "INCREX e EX 10 ENX"), "(integer) 7,(integer) 1");
    EXPECT_RANGE(CMD(c, "TTL e"), 9, 10);
    EXPECT_LIST(CMD(c, "INCREX e"), "(integer) 8,(integer) 1");
    EXPECT_RANGE(CMD(c, "TTL e"), 9, 10);

    /* BYFLOAT answers bulk strings in RESP2 (doubles in RESP3: see test_resp3). */
    EXPECT_LIST(CMD(c, "INCREX fl BYFLOAT 1.5"), "1.5,1.5");
    EXPECT_LIST(CMD(c, "INCREX fl BYFLOAT 0.5 UBOUND 1.75 SATURATE"), "1.75,0.25");

    /* Redis 8.8's exact texts for these are not recorded here: only the class is checked. */
    EXPECT_ERR_PREFIX(CMD(c, "INCREX x BYINT abc"), "ERR");
    EXPECT_ERR_PREFIX(CMD(c, "INCREX x BYFLOAT abc"), "ERR");
    EXPECT_ERR(CMD(c, "INCREX x FOO"), "ERR syntax error");
    EXPECT_ERR_PREFIX(CMD(c, "INCREX x EX 10 PX 10"), "ERR");
    EXPECT_ERR_PREFIX(CMD(c, "INCREX x BYINT 1 BYFLOAT 1"), "ERR");
    EXPECT_ERR_PREFIX(CMD(c, "INCREX x EX 0"), "ERR invalid expire time");
    EXPECT_OK(CMD(c, "SET str hello"));
    EXPECT_ERR_PREFIX(CMD(c, "INCREX str"), "ERR");
    EXPECT_ERR(CMD(c, "INCREX"), "ERR wrong number of arguments for 'increx' command");
    EXPECT_STR(CMD(c, "GET x"), "-4");
    redisFree(c);
}

/* ---- keys ----------------------------------------------------------------------------------- */

static void test_keys_basic(void)
{
    redisContext *c = fresh();
    EXPECT_OK(CMD(c, "SET a 1"));
    EXPECT_OK(CMD(c, "SET b 2"));
    EXPECT_INT(CMD(c, "EXISTS a"), 1);
    EXPECT_INT(CMD(c, "EXISTS a b c a"), 3);
    EXPECT_INT(CMD(c, "DEL a c"), 1);
    EXPECT_INT(CMD(c, "DEL a"), 0);
    EXPECT_INT(CMD(c, "UNLINK b nope"), 1);
    EXPECT_STATUS(CMD(c, "TYPE b"), "none");
    EXPECT_OK(CMD(c, "SET c 3"));
    EXPECT_STATUS(CMD(c, "TYPE c"), "string");
    EXPECT_INT(CMD(c, "INCR n"), 1);
    EXPECT_STATUS(CMD(c, "TYPE n"), "string");
    EXPECT_INT(CMD(c, "DBSIZE"), 2);
    EXPECT_ERR(CMD(c, "DEL"), "ERR wrong number of arguments for 'del' command");
    EXPECT_ERR(CMD(c, "EXISTS"), "ERR wrong number of arguments for 'exists' command");
    EXPECT_ERR(CMD(c, "TYPE"), "ERR wrong number of arguments for 'type' command");
    EXPECT_OK(CMD(c, "FLUSHDB"));
    EXPECT_INT(CMD(c, "DBSIZE"), 0);
    EXPECT_OK(CMD(c, "MSET a 1 b 2 c 3"));
    EXPECT_OK(CMD(c, "FLUSHALL"));
    EXPECT_INT(CMD(c, "DBSIZE"), 0);
    EXPECT_NIL(CMD(c, "GET a"));

    /* KEYS with glob patterns. */
    EXPECT_OK(CMD(c, "MSET hello 1 hallo 1 hxllo 1 hllo 1 heeello 1 h*llo 1 other 1"));
    EXPECT_SORTED_LIST(CMD(c, "KEYS h?llo"), "h*llo,hallo,hello,hxllo");
    EXPECT_SORTED_LIST(CMD(c, "KEYS h*llo"), "h*llo,hallo,heeello,hello,hllo,hxllo");
    EXPECT_SORTED_LIST(CMD(c, "KEYS h[ae]llo"), "hallo,hello");
    EXPECT_SORTED_LIST(CMD(c, "KEYS h[^e]llo"), "h*llo,hallo,hxllo");
    EXPECT_SORTED_LIST(CMD(c, "KEYS h[a-b]llo"), "hallo");
    EXPECT_SORTED_LIST(CMD(c, "KEYS h\\*llo"), "h*llo");
    EXPECT_SORTED_LIST(CMD(c, "KEYS nomatch*"), "");
    EXPECT_SORTED_LIST(CMD(c, "KEYS *"), "h*llo,hallo,heeello,hello,hllo,hxllo,other");
    EXPECT_INT(CMD(c, "DBSIZE"), 7);
    redisFree(c);
}

static void test_expire_family(void)
{
    redisContext *c = fresh();
    long long t = now_ms();
    EXPECT_OK(CMD(c, "SET c 3"));
    EXPECT_INT(CMD(c, "TTL c"), -1);
    EXPECT_INT(CMD(c, "PTTL c"), -1);
    EXPECT_INT(CMD(c, "EXPIRETIME c"), -1);
    EXPECT_INT(CMD(c, "PEXPIRETIME c"), -1);
    EXPECT_INT(CMD(c, "TTL missing"), -2);
    EXPECT_INT(CMD(c, "PTTL missing"), -2);
    EXPECT_INT(CMD(c, "EXPIRETIME missing"), -2);
    EXPECT_INT(CMD(c, "PEXPIRETIME missing"), -2);

    EXPECT_INT(CMD(c, "EXPIRE c 100"), 1);
    EXPECT_RANGE(CMD(c, "TTL c"), 99, 100);
    EXPECT_RANGE(CMD(c, "PTTL c"), 98000, 100000);
    EXPECT_RANGE(CMD(c, "EXPIRETIME c"), t / 1000 + 99, t / 1000 + 102);
    EXPECT_RANGE(CMD(c, "PEXPIRETIME c"), t + 99000, t + 102000);
    EXPECT_INT(CMD(c, "PEXPIRE c 200000"), 1);
    EXPECT_RANGE(CMD(c, "PTTL c"), 198000, 200000);
    EXPECT_INT(CMD(c, "EXPIREAT c %lld", t / 1000 + 300), 1);
    EXPECT_INT(CMD(c, "EXPIRETIME c"), t / 1000 + 300);
    EXPECT_INT(CMD(c, "PEXPIREAT c %lld", t + 400000), 1);
    EXPECT_INT(CMD(c, "PEXPIRETIME c"), t + 400000);
    /* The furthest expiry PEXPIREAT takes: seconds are rounded as Redis rounds them. */
    EXPECT_INT(CMD(c, "PEXPIREAT c 9223372036854775807"), 1);
    EXPECT_INT(CMD(c, "PEXPIRETIME c"), INT64_MAX);
    EXPECT_INT(CMD(c, "EXPIRETIME c"), 9223372036854776LL);
    EXPECT_RANGE(CMD(c, "TTL c"), (INT64_MAX - t) / 1000 - 100, (INT64_MAX - t) / 1000 + 1);
    EXPECT_INT(CMD(c, "PEXPIREAT c %lld", t + 400000), 1);
    EXPECT_INT(CMD(c, "EXPIRE nokey 10"), 0);
    EXPECT_INT(CMD(c, "PEXPIRE nokey 10"), 0);
    EXPECT_INT(CMD(c, "EXPIREAT nokey %lld", t / 1000 + 10), 0);
    EXPECT_INT(CMD(c, "PEXPIREAT nokey %lld", t + 10000), 0);
    EXPECT_INT(CMD(c, "EXISTS nokey"), 0);

    /* NX XX GT LT; a key without a TTL counts as an infinite TTL for GT and LT. */
    EXPECT_OK(CMD(c, "SET d 1"));
    EXPECT_INT(CMD(c, "EXPIRE d 100 XX"), 0);
    EXPECT_INT(CMD(c, "EXPIRE d 100 GT"), 0);
    EXPECT_INT(CMD(c, "TTL d"), -1);
    EXPECT_INT(CMD(c, "EXPIRE d 1000 NX"), 1);
    EXPECT_INT(CMD(c, "EXPIRE d 1000 NX"), 0);
    EXPECT_INT(CMD(c, "EXPIRE d 500 GT"), 0);
    EXPECT_INT(CMD(c, "EXPIRE d 2000 GT"), 1);
    EXPECT_INT(CMD(c, "EXPIRE d 3000 LT"), 0);
    EXPECT_INT(CMD(c, "EXPIRE d 100 LT"), 1);
    EXPECT_RANGE(CMD(c, "TTL d"), 99, 100);
    EXPECT_INT(CMD(c, "EXPIRE d 60 XX"), 1);
    EXPECT_RANGE(CMD(c, "TTL d"), 59, 60);
    EXPECT_INT(CMD(c, "PEXPIRE d 70000 gt"), 1);
    EXPECT_INT(CMD(c, "PEXPIRE d 80000 lt"), 0);
    EXPECT_INT(CMD(c, "EXPIREAT d %lld LT", t / 1000 + 50), 1);
    EXPECT_INT(CMD(c, "EXPIRETIME d"), t / 1000 + 50);
    EXPECT_INT(CMD(c, "PEXPIREAT d %lld GT", t + 40000), 0);
    EXPECT_INT(CMD(c, "PEXPIREAT d %lld NX", t + 90000), 0);
    EXPECT_INT(CMD(c, "PEXPIREAT d %lld XX", t + 90000), 1);
    EXPECT_INT(CMD(c, "PEXPIRETIME d"), t + 90000);
    EXPECT_OK(CMD(c, "SET e 1"));
    EXPECT_INT(CMD(c, "EXPIRE e 100 LT"), 1);

    EXPECT_ERR(CMD(c, "EXPIRE d 100 XX NX"),
               "ERR NX and XX, GT or LT options at the same time are not compatible");
    EXPECT_ERR(CMD(c, "EXPIRE d 100 NX GT"),
               "ERR NX and XX, GT or LT options at the same time are not compatible");
    EXPECT_ERR(CMD(c, "EXPIRE d 100 GT LT"),
               "ERR GT and LT options at the same time are not compatible");
    EXPECT_ERR(CMD(c, "EXPIRE d 100 FOO"), "ERR Unsupported option FOO");
    EXPECT_ERR(CMD(c, "EXPIRE d abc"), "ERR value is not an integer or out of range");
    EXPECT_ERR(CMD(c, "PEXPIREAT d 1.5"), "ERR value is not an integer or out of range");
    EXPECT_ERR(CMD(c, "EXPIRE d 9223372036854775807"),
               "ERR invalid expire time in 'expire' command");
    EXPECT_ERR(CMD(c, "PEXPIRE d 9223372036854775807"),
               "ERR invalid expire time in 'pexpire' command");
    EXPECT_ERR(CMD(c, "EXPIRE d"), "ERR wrong number of arguments for 'expire' command");
    EXPECT_ERR(CMD(c, "TTL"), "ERR wrong number of arguments for 'ttl' command");
    EXPECT_ERR(CMD(c, "PERSIST"), "ERR wrong number of arguments for 'persist' command");

    EXPECT_INT(CMD(c, "PERSIST d"), 1);
    EXPECT_INT(CMD(c, "PERSIST d"), 0);
    EXPECT_INT(CMD(c, "PERSIST missing"), 0);
    EXPECT_INT(CMD(c, "TTL d"), -1);
    EXPECT_STR(CMD(c, "GET d"), "1");

    /* A time in the past deletes the key. */
    EXPECT_INT(CMD(c, "EXPIRE d 0"), 1);
    EXPECT_INT(CMD(c, "EXISTS d"), 0);
    EXPECT_OK(CMD(c, "SET d 1"));
    EXPECT_INT(CMD(c, "PEXPIRE d -1"), 1);
    EXPECT_NIL(CMD(c, "GET d"));
    EXPECT_OK(CMD(c, "SET d 1"));
    EXPECT_INT(CMD(c, "EXPIREAT d 1"), 1);
    EXPECT_INT(CMD(c, "EXISTS d"), 0);
    EXPECT_INT(CMD(c, "TTL d"), -2);
    redisFree(c);
}

/* Iterates SCAN with the given options; counts how often each scan:N key came back in seen[]
 * and fails on a key outside that set. Returns the number of calls, or -1 on an error. */
static long scan_all(redisContext *c, const char *opts, int *seen, long *others)
{
    char cursor[64] = "0";
    long calls = 0;
    *others = 0;
    do {
        char fmt[128]; /* opts hold no '%' */
        snprintf(fmt, sizeof fmt, "SCAN %%s %s", opts);
        redisReply *r = CMD(c, fmt, cursor);
        calls++;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY) {
            char got[600];
            describe_reply(r, got, sizeof got);
            fail_at(__LINE__, "expected [cursor, [keys...]], got %s", got);
            freeReplyObject(r);
            return -1;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        redisReply *keys = r->element[1];
        for (size_t i = 0; i < keys->elements; i++) {
            const char *k = keys->element[i]->str;
            char *end;
            long n = -1;
            if (keys->element[i]->type == REDIS_REPLY_STRING && strncmp(k, "scan:", 5) == 0) {
                n = strtol(k + 5, &end, 10);
                if (*end || n < 0 || n >= SCAN_KEYS)
                    n = -1;
            }
            if (n >= 0)
                seen[n]++;
            else
                (*others)++;
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0 && calls < SCAN_MAX_CALLS);
    if (strcmp(cursor, "0") != 0) {
        fail_at(__LINE__, "SCAN did not return cursor 0 within %d calls", SCAN_MAX_CALLS);
        return -1;
    }
    return calls;
}

static void test_scan(void)
{
    redisContext *c = fresh();
    for (int i = 0; i < SCAN_KEYS; i++)
        redisAppendCommand(c, "SET scan:%d %d", i, i);
    redisAppendCommand(c, "SET other 1");
    snprintf(last_cmd, sizeof last_cmd, "SET scan:N N (pipelined x%d)", SCAN_KEYS);
    for (int i = 0; i <= SCAN_KEYS; i++) {
        void *r;
        if (redisGetReply(c, &r) != REDIS_OK) {
            fail_at(__LINE__, "connection error: %s", c->errstr);
            exit(1);
        }
        if (i == 0 || i == SCAN_KEYS)
            EXPECT_OK(r);
        else
            freeReplyObject(r);
    }
    EXPECT_INT(CMD(c, "DBSIZE"), SCAN_KEYS + 1);

    int *seen = calloc(SCAN_KEYS, sizeof *seen);
    long others, missing = 0, calls;
    calls = scan_all(c, "COUNT 100", seen, &others);
    for (int i = 0; i < SCAN_KEYS; i++)
        missing += seen[i] == 0;
    CHECK_TRUE(calls > 0 && missing == 0 && others == 1,
               "full SCAN COUNT 100 (%ld calls): %ld of %d keys never returned, %ld others "
               "(expected 1: \"other\")",
               calls, missing, SCAN_KEYS, others);

    /* MATCH: only matching keys, and every one of them. */
    memset(seen, 0, SCAN_KEYS * sizeof *seen);
    calls = scan_all(c, "MATCH scan:1* COUNT 1000", seen, &others);
    long wrong = 0;
    missing = 0;
    for (int i = 0; i < SCAN_KEYS; i++) {
        char k[32];
        snprintf(k, sizeof k, "scan:%d", i);
        bool match = fnmatch("scan:1*", k, 0) == 0;
        missing += match && seen[i] == 0;
        wrong += !match && seen[i] > 0;
    }
    CHECK_TRUE(calls > 0 && missing == 0 && wrong == 0 && others == 0,
               "SCAN MATCH scan:1*: %ld matching keys missing, %ld keys that do not match, "
               "%ld others",
               missing, wrong, others);

    /* The default COUNT, and TYPE. */
    memset(seen, 0, SCAN_KEYS * sizeof *seen);
    calls = scan_all(c, "", seen, &others);
    missing = 0;
    for (int i = 0; i < SCAN_KEYS; i++)
        missing += seen[i] == 0;
    CHECK_TRUE(calls > 0 && missing == 0 && others == 1, "plain SCAN: %ld keys missing", missing);
    memset(seen, 0, SCAN_KEYS * sizeof *seen);
    calls = scan_all(c, "TYPE string COUNT 500", seen, &others);
    missing = 0;
    for (int i = 0; i < SCAN_KEYS; i++)
        missing += seen[i] == 0;
    CHECK_TRUE(calls > 0 && missing == 0 && others == 1, "SCAN TYPE string: %ld keys missing",
               missing);
    memset(seen, 0, SCAN_KEYS * sizeof *seen);
    calls = scan_all(c, "TYPE hash COUNT 500", seen, &others);
    long any = others;
    for (int i = 0; i < SCAN_KEYS; i++)
        any += seen[i];
    CHECK_TRUE(calls > 0 && any == 0, "SCAN TYPE hash returned %ld keys", any);
    free(seen);

    EXPECT_ERR(CMD(c, "SCAN abc"), "ERR invalid cursor");
    /* Cursors read as Redis reads them (strtoul): "-1" is the largest cursor, and the scan ends
     * there (Redis may still answer the keys of the bucket it masks to; Tally answers none); an
     * empty cursor or "+0" starts a scan; a leading space, a lone sign or 2^64 is no cursor. */
    redisReply *r = CMD(c, "SCAN -1");
    CHECK_TRUE(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                   strcmp(r->element[0]->str, "0") == 0 &&
                   (g_redis || r->element[1]->elements == 0),
               "SCAN -1 did not answer cursor 0 and no keys");
    freeReplyObject(r);
    EXPECT_ERR(CMD(c, "SCAN -1 COUNT 0"), "ERR syntax error");
    for (int k = 0; k < 2; k++) {
        r = k == 0 ? CMD(c, "SCAN %s COUNT 1000", "") : CMD(c, "SCAN +0 COUNT 1000");
        CHECK_TRUE(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                       r->element[1]->elements > 0,
                   "SCAN with cursor %s did not start a scan", k == 0 ? "''" : "+0");
        freeReplyObject(r);
    }
    EXPECT_ERR(CMD(c, "SCAN %s", " 1"), "ERR invalid cursor");
    EXPECT_ERR(CMD(c, "SCAN -"), "ERR invalid cursor");
    EXPECT_ERR(CMD(c, "SCAN 18446744073709551616"), "ERR invalid cursor");
    EXPECT_ERR(CMD(c, "SCAN 0 COUNT 0"), "ERR syntax error");
    EXPECT_ERR(CMD(c, "SCAN 0 COUNT abc"), "ERR value is not an integer or out of range");
    EXPECT_ERR(CMD(c, "SCAN 0 FOO"), "ERR syntax error");
    EXPECT_ERR(CMD(c, "SCAN"), "ERR wrong number of arguments for 'scan' command");
    EXPECT_OK(CMD(c, "FLUSHALL"));
    EXPECT_INT(CMD(c, "DBSIZE"), 0);
    r = CMD(c, "SCAN 0");
    CHECK_TRUE(r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                   r->element[1]->type == REDIS_REPLY_ARRAY && r->element[1]->elements == 0,
               "SCAN of an empty database returned keys");
    freeReplyObject(r);
    redisFree(c);
}

/* ---- connection ----------------------------------------------------------------------------- */

static long long client_id(redisContext *c)
{
    redisReply *r = CMD(c, "CLIENT ID");
    long long id = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    CHECK_TRUE(id > 0, "CLIENT ID is not a positive integer");
    freeReplyObject(r);
    return id;
}

/* CLIENT REPLY: OFF answers nothing, errors neither, until ON; SKIP drops the next reply; RESET
 * turns OFF off (but a SKIP in force still drops RESET's reply, as in Redis). Inside EXEC they
 * answer +OK, so that EXEC's array stays whole, and take effect after it. The commands without
 * replies are only appended, then a command that answers reads the first reply waiting. */
static void test_client_reply(void)
{
    redisContext *c = fresh();
    redisAppendCommand(c, "CLIENT REPLY OFF");
    redisAppendCommand(c, "SET cr 1");
    redisAppendCommand(c, "INCR cr");
    redisAppendCommand(c, "NOSUCHCOMMAND");
    EXPECT_OK(CMD(c, "CLIENT REPLY ON"));
    EXPECT_STR(CMD(c, "GET cr"), "2");
    redisAppendCommand(c, "CLIENT REPLY SKIP");
    redisAppendCommand(c, "INCR cr");
    EXPECT_STR(CMD(c, "GET cr"), "3");
    EXPECT_ERR(CMD(c, "CLIENT REPLY MAYBE"), "ERR syntax error");
    EXPECT_ERR(CMD(c, "CLIENT REPLY"), "ERR wrong number of arguments for 'client|reply' command");
    redisAppendCommand(c, "CLIENT REPLY OFF");
    EXPECT_STATUS(CMD(c, "RESET"), "RESET");
    redisAppendCommand(c, "CLIENT REPLY SKIP");
    redisAppendCommand(c, "RESET");
    EXPECT_STATUS(CMD(c, "PING"), "PONG");

    if (g_redis) { /* Redis sends EXEC's array short of these elements: a broken reply */
        redisFree(c);
        return;
    }
    EXPECT_OK(CMD(c, "MULTI"));
    EXPECT_STATUS(CMD(c, "CLIENT REPLY SKIP"), "QUEUED");
    EXPECT_STATUS(CMD(c, "INCR cr"), "QUEUED");
    redisReply *r = CMD(c, "EXEC");
    CHECK_TRUE(r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                   r->element[0]->type == REDIS_REPLY_STATUS && r->element[1]->integer == 4,
               "EXEC with CLIENT REPLY SKIP inside did not answer [OK, 4]");
    freeReplyObject(r);
    redisAppendCommand(c, "INCR cr"); /* the command after EXEC is skipped */
    EXPECT_STR(CMD(c, "GET cr"), "5");
    EXPECT_OK(CMD(c, "MULTI"));
    EXPECT_STATUS(CMD(c, "CLIENT REPLY OFF"), "QUEUED");
    r = CMD(c, "EXEC");
    CHECK_TRUE(r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
                   r->element[0]->type == REDIS_REPLY_STATUS,
               "EXEC with CLIENT REPLY OFF inside did not answer [OK]");
    freeReplyObject(r);
    redisAppendCommand(c, "INCR cr");
    EXPECT_OK(CMD(c, "CLIENT REPLY ON"));
    EXPECT_STR(CMD(c, "GET cr"), "6");
    redisFree(c);

    /* Under OFF a protocol error closes the connection without a word, as in Redis. */
    struct conn raw;
    if (conn_open(&raw, g_port) < 0) {
        CHECK_TRUE(false, "cannot connect: %s", strerror(errno));
        return;
    }
    static const char bad[] = "CLIENT REPLY OFF\r\n*1\r\n$x\r\n";
    conn_send(&raw, bad, sizeof bad - 1);
    const char *got, *why = "";
    long n = conn_read_reply(&raw, &got, &why);
    CHECK_TRUE(n < 0 && raw.len == 0, "a protocol error under CLIENT REPLY OFF was answered");
    conn_close(&raw);
}

static void test_connection(void)
{
    redisContext *c = fresh();
    EXPECT_STATUS(CMD(c, "PING"), "PONG");
    EXPECT_STR(CMD(c, "PING hello"), "hello");
    EXPECT_ERR(CMD(c, "PING a b"), "ERR wrong number of arguments for 'ping' command");
    EXPECT_STR(CMD(c, "ECHO hi"), "hi");
    expect_strn(__LINE__, CMD(c, "ECHO %b", "a\0b", (size_t)3), "a\0b", 3);
    EXPECT_ERR(CMD(c, "ECHO"), "ERR wrong number of arguments for 'echo' command");
    EXPECT_ERR(CMD(c, "NOSUCHCOMMAND a b"),
               "ERR unknown command 'NOSUCHCOMMAND', with args beginning with: 'a' 'b' ");
    EXPECT_OK(CMD(c, "SELECT 0"));
    EXPECT_ERR(CMD(c, "SELECT abc"), "ERR value is not an integer or out of range");
    EXPECT_ERR(CMD(c, "AUTH x"),
               "ERR AUTH <password> called without any password configured for the default "
               "user. Are you sure your configuration is correct?");

    /* HELLO 2 is a flat array of pairs. */
    redisReply *r = CMD(c, "HELLO 2");
    bool ok = r->type == REDIS_REPLY_ARRAY && r->elements >= 14 && r->elements % 2 == 0;
    long long proto = -1, hello_id = -1;
    for (size_t i = 0; ok && i + 1 < r->elements; i += 2) {
        if (r->element[i]->type != REDIS_REPLY_STRING)
            continue;
        if (strcmp(r->element[i]->str, "proto") == 0)
            proto = r->element[i + 1]->integer;
        if (strcmp(r->element[i]->str, "id") == 0)
            hello_id = r->element[i + 1]->integer;
    }
    freeReplyObject(r);
    long long id = client_id(c);
    CHECK_TRUE(ok && proto == 2 && hello_id == id,
               "HELLO 2: expected an array of pairs with proto 2 and id %lld, got proto %lld, "
               "id %lld",
               id, proto, hello_id);
    EXPECT_ERR(CMD(c, "HELLO 4"), "NOPROTO unsupported protocol version");
    EXPECT_ERR(CMD(c, "HELLO abc"), "ERR Protocol version is not an integer or out of range");

    /* CLIENT. */
    redisContext *other = connect_port(g_port);
    long long other_id = client_id(other);
    CHECK_TRUE(other_id != id, "two connections have the same CLIENT ID %lld", id);
    EXPECT_NIL(CMD(c, "CLIENT GETNAME"));
    EXPECT_OK(CMD(c, "CLIENT SETNAME me"));
    EXPECT_STR(CMD(c, "CLIENT GETNAME"), "me");
    EXPECT_ERR(CMD(c, "CLIENT SETNAME %s", "has space"),
               "ERR Client names cannot contain spaces, newlines or special characters.");
    EXPECT_ERR(CMD(c, "CLIENT SETNAME"),
               "ERR wrong number of arguments for 'client|setname' command");
    EXPECT_OK(CMD(other, "CLIENT SETNAME victim"));
    r = CMD(c, "CLIENT LIST");
    char want_me[64], want_other[64];
    snprintf(want_me, sizeof want_me, "id=%lld ", id);
    snprintf(want_other, sizeof want_other, "id=%lld ", other_id);
    CHECK_TRUE(r->type == REDIS_REPLY_STRING && strstr(r->str, want_me) &&
                   strstr(r->str, want_other) && strstr(r->str, " name=me ") &&
                   strstr(r->str, " name=victim ") && strstr(r->str, "addr=127.0.0.1:"),
               "CLIENT LIST lacks id=%lld, id=%lld, their names or addr=: %.400s", id, other_id,
               r->type == REDIS_REPLY_STRING ? r->str : "(not a string)");
    freeReplyObject(r);
    r = CMD(c, "CLIENT INFO");
    CHECK_TRUE(r->type == REDIS_REPLY_STRING && strncmp(r->str, want_me, strlen(want_me)) == 0 &&
                   strstr(r->str, " name=me "),
               "CLIENT INFO: expected a line starting with id=%lld and with name=me, got %.300s",
               id, r->type == REDIS_REPLY_STRING ? r->str : "(not a string)");
    freeReplyObject(r);
    EXPECT_INT(CMD(c, "CLIENT KILL ID 999999999"), 0);
    EXPECT_ERR(CMD(c, "CLIENT KILL ID abc"), "ERR client-id should be greater than 0");
    EXPECT_ERR_PREFIX(CMD(c, "CLIENT FOO"), "ERR unknown subcommand 'FOO'.");
    EXPECT_INT(CMD(c, "CLIENT KILL ID %lld", other_id), 1);
    r = cmd_try(other, "PING");
    CHECK_TRUE(r == NULL, "the killed client still got a reply to PING");
    if (r)
        freeReplyObject(r);
    redisFree(other);

    /* CLIENT KILL addr:port, the old form. */
    other = connect_port(g_port);
    EXPECT_STATUS(CMD(other, "PING"), "PONG");
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    getsockname(other->fd, (struct sockaddr *)&a, &alen);
    EXPECT_OK(CMD(c, "CLIENT KILL 127.0.0.1:%d", ntohs(a.sin_port)));
    r = cmd_try(other, "PING");
    CHECK_TRUE(r == NULL, "the client killed by address still got a reply to PING");
    if (r)
        freeReplyObject(r);
    redisFree(other);
    EXPECT_ERR(CMD(c, "CLIENT KILL 127.0.0.1:1"), "ERR No such client");

    /* RESET drops the name and goes back to RESP2; QUIT answers OK and closes. */
    EXPECT_STATUS(CMD(c, "RESET"), "RESET");
    EXPECT_NIL(CMD(c, "CLIENT GETNAME"));
    EXPECT_OK(CMD(c, "QUIT"));
    r = cmd_try(c, "PING");
    CHECK_TRUE(r == NULL, "PING after QUIT got a reply");
    if (r)
        freeReplyObject(r);
    redisFree(c);
}

static void test_resp3(void)
{
    struct conn c;
    if (conn_open(&c, g_port) < 0) {
        fail_at(__LINE__, "cannot connect");
        return;
    }
    size_t n;
    char *hello = raw_cmd(&c, &n, "HELLO", "3", (char *)NULL);
    CHECK_TRUE(n > 4 && hello[0] == '%' && memmem(hello, n, "$5\r\nproto\r\n:3\r\n", 15) &&
                   memmem(hello, n, "$2\r\nid\r\n:", 9) &&
                   memmem(hello, n, "$6\r\nserver\r\n", 12) &&
                   memmem(hello, n, "$7\r\nversion\r\n", 13) &&
                   memmem(hello, n, "$4\r\nmode\r\n", 10) && memmem(hello, n, "$4\r\nrole\r\n", 10),
               "HELLO 3: expected a map with server, version, proto 3, id, mode and role, got "
               "%.300s",
               hello);
    free(hello);
    RAW_EQ(&c, "_\r\n", "GET", "missing");
    RAW_EQ(&c, "+OK\r\n", "SET", "k", "v");
    RAW_EQ(&c, "*3\r\n$1\r\nv\r\n_\r\n$1\r\nv\r\n", "MGET", "k", "nope", "k");
    RAW_EQ(&c, "_\r\n", "SET", "k", "v2", "NX");
    RAW_EQ(&c, "$4\r\n10.5\r\n", "INCRBYFLOAT", "f", "10.5");
    RAW_EQ(&c, ":1\r\n", "INCR", "i");
    RAW_PREFIX(&c, "%1\r\n$10\r\nappendonly\r\n$", "CONFIG", "GET", "appendonly");
    RAW_PREFIX(&c, "%", "COMMAND", "DOCS", "get");
    RAW_PREFIX(&c, "=", "CLIENT", "INFO");
    RAW_EQ(&c, "-ERR wrong number of arguments for 'get' command\r\n", "GET");
    if (!g_redis) {
        /* INCREX BYFLOAT answers doubles in RESP3. */
        RAW_EQ(&c, "*2\r\n,1.5\r\n,1.5\r\n", "INCREX", "d", "BYFLOAT", "1.5");
        RAW_EQ(&c, "*2\r\n:2\r\n:1\r\n", "INCREX", "i");
        /* The same text as INCRBYFLOAT, not a C double's 17 digits (1.6000000000000001). */
        RAW_EQ(&c, "*2\r\n,1.6\r\n,0.1\r\n", "INCREX", "d", "BYFLOAT", "0.1");
    }
    RAW_PREFIX(&c, "*", "HELLO", "2");
    RAW_EQ(&c, "$-1\r\n", "GET", "missing");
    conn_close(&c);
}

static void test_auth(const char *tmp)
{
    struct test_server s;
    srv_init(&s, tmp, "auth");
    srv_add_opt(&s, "requirepass", "s3cret");
    srv_start(&s);
    redisContext *c = connect_port(s.port);
    EXPECT_ERR(CMD(c, "PING"), "NOAUTH Authentication required.");
    EXPECT_ERR(CMD(c, "GET k"), "NOAUTH Authentication required.");
    EXPECT_ERR(CMD(c, "AUTH wrong"),
               "WRONGPASS invalid username-password pair or user is disabled.");
    EXPECT_ERR(CMD(c, "AUTH default wrong"),
               "WRONGPASS invalid username-password pair or user is disabled.");
    EXPECT_ERR_PREFIX(CMD(c, "HELLO 2"), "NOAUTH HELLO must be called with the client already "
                                         "authenticated");
    EXPECT_ERR(CMD(c, "SET k v"), "NOAUTH Authentication required.");
    EXPECT_OK(CMD(c, "AUTH s3cret"));
    EXPECT_STATUS(CMD(c, "PING"), "PONG");
    EXPECT_OK(CMD(c, "SET k v"));
    EXPECT_ERR(CMD(c, "AUTH a b c"), "ERR syntax error");
    redisFree(c);

    c = connect_port(s.port);
    EXPECT_OK(CMD(c, "AUTH default s3cret"));
    EXPECT_STR(CMD(c, "GET k"), "v");
    redisFree(c);

    c = connect_port(s.port);
    redisReply *r = CMD(c, "HELLO 2 AUTH default s3cret SETNAME named");
    CHECK_TRUE(r->type == REDIS_REPLY_ARRAY && r->elements >= 14,
               "HELLO 2 AUTH ... did not answer its array");
    freeReplyObject(r);
    EXPECT_STR(CMD(c, "CLIENT GETNAME"), "named");
    EXPECT_STR(CMD(c, "GET k"), "v");
    redisFree(c);

    c = connect_port(s.port);
    EXPECT_ERR(CMD(c, "HELLO 2 AUTH default wrong"),
               "WRONGPASS invalid username-password pair or user is disabled.");
    EXPECT_ERR(CMD(c, "GET k"), "NOAUTH Authentication required.");
    redisFree(c);

    struct conn rc;
    if (conn_open(&rc, s.port) == 0) {
        RAW_PREFIX(&rc, "%", "HELLO", "3", "AUTH", "default", "s3cret");
        RAW_EQ(&rc, "$1\r\nv\r\n", "GET", "k");
        conn_close(&rc);
    }
    srv_stop_with(&s, SIGTERM);
}

/* ---- server --------------------------------------------------------------------------------- */

/* Checks that INFO section's text holds each of the NULL-terminated lines (or line starts). */
static void expect_info_lines(int line, redisContext *c, const char *section, const char **want)
{
    redisReply *r = cmd_at(line, c, "INFO %s", section);
    for (; *want; want++)
        if (!(r->type == REDIS_REPLY_STRING && strstr(r->str, *want)))
            fail_at(line, "INFO %s lacks \"%s\": %.600s", section, *want,
                    r->type == REDIS_REPLY_STRING ? r->str : "(not a string)");
        else
            pass();
    freeReplyObject(r);
}

/* MEMORY USAGE: an estimate that grows with the value, nil for a missing key, Redis's errors
 * (redis-cli --memkeys reads it). */
static void test_memory_usage(void)
{
    redisContext *c = fresh();
    EXPECT_OK(CMD(c, "SET mu 1"));
    EXPECT_RANGE(CMD(c, "MEMORY USAGE mu"), 32, 100);
    EXPECT_RANGE(CMD(c, "MEMORY usage mu SAMPLES 5"), 32, 100);
    static char big[1001];
    memset(big, 'x', 1000);
    EXPECT_OK(CMD(c, "SET mu %s", big));
    EXPECT_RANGE(CMD(c, "MEMORY USAGE mu"), 1000, 1100);
    EXPECT_NIL(CMD(c, "MEMORY USAGE nosuchkey"));
    EXPECT_ERR(CMD(c, "MEMORY USAGE mu SAMPLES x"), "ERR value is not an integer or out of range");
    EXPECT_ERR(CMD(c, "MEMORY USAGE mu SAMPLES -1"), "ERR syntax error");
    EXPECT_ERR(CMD(c, "MEMORY USAGE mu FOO"), "ERR syntax error");
    EXPECT_ERR(CMD(c, "MEMORY USAGE"), "ERR wrong number of arguments for 'memory|usage' command");
    redisFree(c);
}

/* Whether text has a line that starts with prefix and holds want. */
static bool line_has(const char *text, const char *prefix, const char *want)
{
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        const char *end = strchr(l, '\n');
        size_t n = end ? (size_t)(end - l) : strlen(l);
        if (strncmp(l, prefix, strlen(prefix)) != 0)
            continue;
        const char *w = strstr(l, want);
        return w && w + strlen(want) <= l + n + 1;
    }
    return false;
}

/* INFO commandstats and latencystats and LATENCY HISTOGRAM count what ran since CONFIG
 * RESETSTAT: calls, calls refused before they ran, calls that answered an error, subcommands by
 * their full name, the commands inside EXEC; a second client (maybe on another worker) adds to
 * the same counts. */
static void test_cmdstats(void)
{
    redisContext *c = fresh(), *d = fresh();
    EXPECT_OK(CMD(c, "CONFIG RESETSTAT"));
    EXPECT_OK(CMD(c, "SET cs 1"));
    EXPECT_OK(CMD(d, "SET cs 2"));
    EXPECT_STR(CMD(c, "GET cs"), "2");
    EXPECT_ERR(CMD(c, "INCR"), "ERR wrong number of arguments for 'incr' command");
    EXPECT_ERR(CMD(c, "PFADD cs x"), "WRONGTYPE Key is not a valid HyperLogLog string value.");
    EXPECT_NIL(CMD(c, "CLIENT GETNAME"));
    EXPECT_OK(CMD(c, "MULTI"));
    EXPECT_STATUS(CMD(c, "INCR cs"), "QUEUED");
    EXPECT_STATUS(CMD(c, "SET cs 5"), "QUEUED");
    redisReply *r = CMD(c, "EXEC");
    CHECK_TRUE(r->type == REDIS_REPLY_ARRAY && r->elements == 2, "EXEC did not run two commands");
    freeReplyObject(r);
    const char *stats[] = {
        "cmdstat_set:calls=3,",
        "cmdstat_get:calls=1,",
        "cmdstat_client|getname:calls=1,",
        NULL,
    };
    expect_info_lines(__LINE__, c, "commandstats", stats);
    /* Whole lines where the refused and failed counts matter. */
    r = CMD(c, "INFO commandstats");
    const char *text = r->type == REDIS_REPLY_STRING ? r->str : "";
    CHECK_TRUE(line_has(text, "cmdstat_incr:calls=1,", "rejected_calls=1,failed_calls=0\r"),
               "INCR: not 1 call (in EXEC) and 1 refused (arity): %.500s", text);
    CHECK_TRUE(line_has(text, "cmdstat_pfadd:calls=1,", "rejected_calls=0,failed_calls=1\r"),
               "PFADD: not 1 call that failed (WRONGTYPE): %.500s", text);
    CHECK_TRUE(line_has(text, "cmdstat_exec:calls=1,", "rejected_calls=0,failed_calls=0\r"),
               "EXEC: not 1 call, neither refused nor failed: %.500s", text);
    freeReplyObject(r);
    const char *lat[] = {"latency_percentiles_usec_set:p50=", ",p99=", ",p99.9=", NULL};
    expect_info_lines(__LINE__, c, "latencystats", lat);
    const char *everything[] = {"# Commandstats\r\n", "# Latencystats\r\n", NULL};
    expect_info_lines(__LINE__, c, "all", everything);
    r = CMD(c, "INFO");
    CHECK_TRUE(r->type == REDIS_REPLY_STRING && !strstr(r->str, "cmdstat_"),
               "INFO without arguments shows commandstats, which Redis shows only when asked");
    freeReplyObject(r);

    /* LATENCY HISTOGRAM set: [set, [calls, 3, histogram_usec, [bound, calls up to it, ...]]]. */
    r = CMD(c, "LATENCY HISTOGRAM set nosuch");
    bool ok = r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
              r->element[0]->type == REDIS_REPLY_STRING && strcmp(r->element[0]->str, "set") == 0 &&
              r->element[1]->type == REDIS_REPLY_ARRAY && r->element[1]->elements == 4 &&
              r->element[1]->element[1]->integer == 3;
    if (ok) {
        redisReply *h = r->element[1]->element[3];
        long long prev_bound = 0, prev = 0;
        ok = h->type == REDIS_REPLY_ARRAY && h->elements >= 2 && h->elements % 2 == 0;
        for (size_t i = 0; ok && i < h->elements; i += 2) {
            long long bound = h->element[i]->integer, upto = h->element[i + 1]->integer;
            ok = bound > prev_bound && (bound & (bound - 1)) == 0 && upto > prev;
            prev_bound = bound;
            prev = upto;
        }
        ok = ok && prev == 3;
    }
    CHECK_TRUE(ok, "LATENCY HISTOGRAM set: not 3 calls in rising power-of-two buckets");
    freeReplyObject(r);
    r = CMD(c, "LATENCY HISTOGRAM client|getname");
    CHECK_TRUE(r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                   strcmp(r->element[0]->str, "client|getname") == 0,
               "LATENCY HISTOGRAM client|getname did not name the subcommand");
    freeReplyObject(r);
    r = CMD(c, "LATENCY HISTOGRAM client");
    CHECK_TRUE(r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                   strcmp(r->element[0]->str, "client|getname") == 0,
               "LATENCY HISTOGRAM client did not list its subcommands that ran");
    freeReplyObject(r);
    r = CMD(c, "LATENCY HISTOGRAM nosuch");
    CHECK_TRUE(r->type == REDIS_REPLY_ARRAY && r->elements == 0,
               "LATENCY HISTOGRAM of no command was not empty");
    freeReplyObject(r);

    EXPECT_OK(CMD(c, "CONFIG RESETSTAT"));
    r = CMD(c, "INFO commandstats");
    CHECK_TRUE(r->type == REDIS_REPLY_STRING && !strstr(r->str, "cmdstat_set:") &&
                   strstr(r->str, "cmdstat_config|resetstat:calls=1,"),
               "CONFIG RESETSTAT did not zero commandstats: %.300s",
               r->type == REDIS_REPLY_STRING ? r->str : "");
    freeReplyObject(r);
    redisFree(d);
    redisFree(c);
}

static void test_info(void)
{
    redisContext *c = fresh();
    EXPECT_OK(CMD(c, "MSET a 1 b 2 c 3"));
    EXPECT_OK(CMD(c, "SET e 1 EX 1000"));
    redisReply *r = CMD(c, "INFO");
    static const char *sections[] = {"# Server", "# Clients",     "# Memory", "# Persistence",
                                     "# Stats",  "# Replication", "# CPU",    "# Keyspace"};
    for (size_t i = 0; i < sizeof sections / sizeof *sections; i++)
        CHECK_TRUE(r->type == REDIS_REPLY_STRING && strstr(r->str, sections[i]),
                   "INFO lacks the section \"%s\"", sections[i]);
    CHECK_TRUE(r->type == REDIS_REPLY_STRING && strstr(r->str, "db0:keys=4,"),
               "INFO's keyspace lacks db0:keys=4,");
    freeReplyObject(r);
    const char *each[] = {"server",      "clients", "memory",   "persistence", "stats",
                          "replication", "cpu",     "keyspace", "storage"};
    for (size_t i = 0; i < sizeof each / sizeof *each; i++) {
        if (g_redis && strcmp(each[i], "storage") == 0)
            continue;
        r = CMD(c, "INFO %s", each[i]);
        char head[64];
        snprintf(head, sizeof head, "# %c%s\r\n", toupper((unsigned char)each[i][0]), each[i] + 1);
        if (strcmp(each[i], "cpu") == 0)
            snprintf(head, sizeof head, "# CPU\r\n");
        CHECK_TRUE(r->type == REDIS_REPLY_STRING && strncmp(r->str, head, strlen(head)) == 0 &&
                       r->len > strlen(head) + 4,
                   "INFO %s: expected the section \"%.*s\" with fields, got %.200s", each[i],
                   (int)strlen(head) - 2, head,
                   r->type == REDIS_REPLY_STRING ? r->str : "(not a string)");
        freeReplyObject(r);
    }
    char port[64];
    snprintf(port, sizeof port, "tcp_port:%d\r\n", g_port);
    r = CMD(c, "INFO server");
    CHECK_TRUE(r->type == REDIS_REPLY_STRING && strstr(r->str, "redis_version:") &&
                   strstr(r->str, port) && strstr(r->str, "uptime_in_seconds:"),
               "INFO server lacks redis_version, %.*s or uptime_in_seconds", (int)strlen(port) - 2,
               port);
    freeReplyObject(r);
    r = CMD(c, "INFO clients");
    CHECK_TRUE(r->type == REDIS_REPLY_STRING && strstr(r->str, "connected_clients:"),
               "INFO clients lacks connected_clients");
    freeReplyObject(r);
    r = CMD(c, "INFO stats");
    CHECK_TRUE(r->type == REDIS_REPLY_STRING && strstr(r->str, "total_commands_processed:") &&
                   strstr(r->str, "total_connections_received:"),
               "INFO stats lacks total_commands_processed or total_connections_received");
    freeReplyObject(r);
    r = CMD(c, "INFO nosuchsection");
    CHECK_TRUE(r->type == REDIS_REPLY_STRING && r->len == 0,
               "INFO nosuchsection: expected an empty string");
    freeReplyObject(r);
    redisFree(c);
}

static void test_config(void)
{
    redisContext *c = fresh();
    char port[16];
    snprintf(port, sizeof port, "%d", g_port);
    redisReply *r = CMD(c, "CONFIG GET port");
    CHECK_TRUE(r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                   strcmp(r->element[0]->str, "port") == 0 && strcmp(r->element[1]->str, port) == 0,
               "CONFIG GET port: expected [port, %s]", port);
    freeReplyObject(r);
    const char *pairs[] = {"save",        "appendonly",         "maxclients",
                           "requirepass", "proto-max-bulk-len", "slowlog-log-slower-than"};
    for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
        r = CMD(c, "CONFIG GET %s", pairs[i]);
        CHECK_TRUE(r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                       r->element[0]->type == REDIS_REPLY_STRING &&
                       strcmp(r->element[0]->str, pairs[i]) == 0 &&
                       r->element[1]->type == REDIS_REPLY_STRING,
                   "CONFIG GET %s: expected one name/value pair", pairs[i]);
        freeReplyObject(r);
    }
    r = CMD(c, "CONFIG GET *");
    CHECK_TRUE(r->type == REDIS_REPLY_ARRAY && r->elements >= 20 && r->elements % 2 == 0,
               "CONFIG GET *: expected at least 10 pairs");
    freeReplyObject(r);
    r = CMD(c, "CONFIG GET slowlog*");
    CHECK_TRUE(r->type == REDIS_REPLY_ARRAY && r->elements >= 4 && r->elements % 2 == 0,
               "CONFIG GET slowlog*: expected at least slowlog-log-slower-than and "
               "slowlog-max-len");
    freeReplyObject(r);
    EXPECT_LIST(CMD(c, "CONFIG GET nosuchparam"), "");
    EXPECT_OK(CMD(c, "CONFIG SET slowlog-log-slower-than 20000"));
    EXPECT_LIST(CMD(c, "CONFIG GET slowlog-log-slower-than"), "slowlog-log-slower-than,20000");
    EXPECT_OK(CMD(c, "CONFIG SET slowlog-log-slower-than 10000"));
    EXPECT_ERR_PREFIX(CMD(c, "CONFIG SET slowlog-log-slower-than abc"), "ERR");
    EXPECT_ERR(CMD(c, "CONFIG SET nosuchparam 1"),
               "ERR Unknown option or number of arguments for CONFIG SET - 'nosuchparam'");
    EXPECT_ERR(CMD(c, "CONFIG GET"), "ERR wrong number of arguments for 'config|get' command");
    EXPECT_ERR_PREFIX(CMD(c, "CONFIG FOO"), "ERR unknown subcommand 'FOO'.");
    redisFree(c);
}

static void test_command(void)
{
    redisContext *c = fresh();
    redisReply *r = CMD(c, "COMMAND COUNT");
    long long count = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    CHECK_TRUE(count >= 50, "COMMAND COUNT: expected at least 50 commands, got %lld", count);
    freeReplyObject(r);
    r = CMD(c, "COMMAND");
    CHECK_TRUE(r->type == REDIS_REPLY_ARRAY && (long long)r->elements == count,
               "COMMAND: expected %lld entries", count);
    freeReplyObject(r);

    r = CMD(c, "COMMAND INFO get incr nosuchcommand");
    bool ok = r->type == REDIS_REPLY_ARRAY && r->elements == 3;
    if (ok) {
        redisReply *g = r->element[0], *i = r->element[1];
        ok = g->type == REDIS_REPLY_ARRAY && g->elements >= 6 &&
             strcmp(g->element[0]->str, "get") == 0 && g->element[1]->integer == 2 &&
             g->element[2]->type == REDIS_REPLY_ARRAY && g->element[3]->integer == 1 &&
             g->element[4]->integer == 1 && g->element[5]->integer == 1 &&
             i->type == REDIS_REPLY_ARRAY && strcmp(i->element[0]->str, "incr") == 0 &&
             i->element[1]->integer == 2 && r->element[2]->type == REDIS_REPLY_NIL;
    }
    CHECK_TRUE(ok, "COMMAND INFO get incr nosuchcommand: expected [[get, 2, [flags], 1, 1, 1, "
                   "...], [incr, 2, ...], nil]");
    freeReplyObject(r);
    r = CMD(c, "COMMAND INFO mset");
    ok = r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
         r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements >= 6 &&
         r->element[0]->element[1]->integer == -3 && r->element[0]->element[3]->integer == 1 &&
         r->element[0]->element[4]->integer == -1 && r->element[0]->element[5]->integer == 2;
    CHECK_TRUE(ok, "COMMAND INFO mset: expected arity -3, keys 1, -1, step 2");
    freeReplyObject(r);

    r = CMD(c, "COMMAND DOCS get");
    ok = r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
         r->element[0]->type == REDIS_REPLY_STRING && strcmp(r->element[0]->str, "get") == 0 &&
         r->element[1]->type == REDIS_REPLY_ARRAY && r->element[1]->elements >= 4;
    bool summary = false;
    for (size_t i = 0; ok && i < r->element[1]->elements; i += 2)
        if (r->element[1]->element[i]->type == REDIS_REPLY_STRING &&
            strcmp(r->element[1]->element[i]->str, "summary") == 0)
            summary = true;
    CHECK_TRUE(ok && summary, "COMMAND DOCS get: expected [get, [summary, ..., ...]]");
    freeReplyObject(r);
    /* All the docs nest deeper than hiredis 0.14 reads: count them over a raw socket. */
    struct conn rc;
    if (conn_open(&rc, g_port) == 0) {
        char want[32];
        snprintf(want, sizeof want, "*%lld\r\n", 2 * count);
        RAW_PREFIX(&rc, want, "COMMAND", "DOCS");
        conn_close(&rc);
    }

    r = CMD(c, "COMMAND LIST");
    bool has_incr = false, has_get = false, has_scan = false;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        has_incr |= strcmp(r->element[i]->str, "incr") == 0;
        has_get |= strcmp(r->element[i]->str, "get") == 0;
        has_scan |= strcmp(r->element[i]->str, "scan") == 0;
    }
    CHECK_TRUE(has_incr && has_get && has_scan, "COMMAND LIST lacks incr, get or scan");
    freeReplyObject(r);
    EXPECT_ERR(CMD(c, "COMMAND COUNT extra"),
               "ERR wrong number of arguments for 'command|count' command");
    EXPECT_ERR_PREFIX(CMD(c, "COMMAND FOO"), "ERR unknown subcommand 'FOO'.");

    /* TIME, DBSIZE, SLOWLOG. */
    r = CMD(c, "TIME");
    long long t = now_ms() / 1000;
    ok = r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
         llabs(atoll(r->element[0]->str) - t) <= 2 && atoll(r->element[1]->str) < 1000000;
    CHECK_TRUE(ok, "TIME: expected [seconds near %lld, microseconds]", t);
    freeReplyObject(r);
    EXPECT_INT(CMD(c, "DBSIZE"), 0);
    EXPECT_OK(CMD(c, "SLOWLOG RESET"));
    EXPECT_INT(CMD(c, "SLOWLOG LEN"), 0);
    r = CMD(c, "SLOWLOG GET");
    CHECK_TRUE(r->type == REDIS_REPLY_ARRAY, "SLOWLOG GET: expected an array");
    freeReplyObject(r);
    redisFree(c);
}

/* ---- pipelining, transactions, expiry ------------------------------------------------------- */

static void test_pipeline(void)
{
    redisContext *c = fresh();
    for (int i = 0; i < PIPELINE_N; i++) {
        if (i % 2 == 0)
            redisAppendCommand(c, "INCR pipe");
        else
            redisAppendCommand(c, "GET pipe");
    }
    snprintf(last_cmd, sizeof last_cmd, "INCR pipe / GET pipe, %d pipelined", PIPELINE_N);
    int wrong = 0;
    for (int i = 0; i < PIPELINE_N; i++) {
        redisReply *r;
        if (redisGetReply(c, (void **)&r) != REDIS_OK) {
            fail_at(__LINE__, "reply %d: connection error %s", i, c->errstr);
            exit(1);
        }
        long long want = i / 2 + 1;
        bool ok = i % 2 == 0 ? r->type == REDIS_REPLY_INTEGER && r->integer == want
                             : r->type == REDIS_REPLY_STRING && atoll(r->str) == want;
        if (!ok && wrong++ < 5) {
            char got[300];
            describe_reply(r, got, sizeof got);
            fail_at(__LINE__, "reply %d: expected %lld, got %s", i, want, got);
        }
        freeReplyObject(r);
    }
    CHECK_TRUE(wrong == 0, "%d of %d pipelined replies were wrong", wrong, PIPELINE_N);
    EXPECT_STR(CMD(c, "GET pipe"), "5000");
    redisFree(c);
}

/* ---- HyperLogLog ---------------------------------------------------------------------------- */

/* Redis's bytes for PFADD hll a b c: sparse, cache not valid, three VAL opcodes between ZEROs
 * and XZEROs; after PFCOUNT the header caches 3. Recorded from redis-server 7.0. */
static const char HLL_ABC[] = "HYLL\x01\0\0\0\0\0\0\0\0\0\0\x80"
                              "\x60\xf3\x80\x50\xb1\x84\x4b\xfb\x80\x42\x5a";
static const char HLL_ABC_COUNTED[] = "HYLL\x01\0\0\0\x03\0\0\0\0\0\0\0"
                                      "\x60\xf3\x80\x50\xb1\x84\x4b\xfb\x80\x42\x5a";
static const char HLL_EMPTY[] = "HYLL\x01\0\0\0\0\0\0\0\0\0\0\x80\x7f\xff";

static void test_hll_bytes(void)
{
    redisContext *c = fresh();
    EXPECT_INT(CMD(c, "PFADD hll a b c"), 1);
    expect_strn(__LINE__, CMD(c, "GET hll"), HLL_ABC, sizeof HLL_ABC - 1);
    EXPECT_INT(CMD(c, "PFCOUNT hll"), 3);
    expect_strn(__LINE__, CMD(c, "GET hll"), HLL_ABC_COUNTED, sizeof HLL_ABC_COUNTED - 1);
    EXPECT_INT(CMD(c, "PFADD empty"), 1);
    expect_strn(__LINE__, CMD(c, "GET empty"), HLL_EMPTY, sizeof HLL_EMPTY - 1);
    EXPECT_OK(CMD(c, "SET hll2 %b", HLL_ABC, sizeof HLL_ABC - 1)); /* a copy is an HLL too */
    EXPECT_INT(CMD(c, "PFCOUNT hll2 empty"), 3);
    EXPECT_OK(CMD(c, "SET notint 12"));
    EXPECT_ERR(CMD(c, "PFCOUNT notint"), "WRONGTYPE Key is not a valid HyperLogLog string value.");
    EXPECT_ERR(CMD(c, "PFMERGE hll notint"),
               "WRONGTYPE Key is not a valid HyperLogLog string value.");
    /* As Redis, PFMERGE reads its destination first, then the sources in order, each checked
     * and merged before the next is looked at: the first bad key names the error. */
    EXPECT_INT(CMD(c, "APPEND hll2 junk"), (long long)sizeof HLL_ABC - 1 + 4);
    EXPECT_ERR(CMD(c, "PFMERGE hll2 notint"), "INVALIDOBJ Corrupted HLL object detected");
    EXPECT_ERR(CMD(c, "PFMERGE notint hll2"),
               "WRONGTYPE Key is not a valid HyperLogLog string value.");
    EXPECT_ERR(CMD(c, "PFMERGE hll hll2 notint"), "INVALIDOBJ Corrupted HLL object detected");
    redisFree(c);
}

/* The issue's accuracy check: PFCOUNT within 2% of n distinct elements, sent in pipelined
 * PFADD batches of HLL_BATCH elements, at most HLL_WINDOW batches unanswered. */
#define HLL_BATCH        10000
#define HLL_WINDOW       16
#define HLL_ELEMENT_SIZE 24
#define HLL_MAX_ERROR    0.02

static void hll_fill(redisContext *c, const char *key, long n)
{
    const char **argv = malloc((HLL_BATCH + 2) * sizeof *argv);
    size_t *lens = malloc((HLL_BATCH + 2) * sizeof *lens);
    char *text = malloc((size_t)HLL_BATCH * HLL_ELEMENT_SIZE);
    if (!argv || !lens || !text) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    argv[0] = "PFADD";
    lens[0] = 5;
    argv[1] = key;
    lens[1] = strlen(key);
    long sent = 0, pending = 0, bad = 0;
    snprintf(last_cmd, sizeof last_cmd, "PFADD %s <%d elements>, pipelined", key, HLL_BATCH);
    while (sent < n || pending > 0) {
        if (sent < n && pending < HLL_WINDOW) {
            int k = 0;
            for (; k < HLL_BATCH && sent < n; k++, sent++) {
                char *e = text + (size_t)k * HLL_ELEMENT_SIZE;
                lens[k + 2] = (size_t)snprintf(e, HLL_ELEMENT_SIZE, "element:%ld", sent);
                argv[k + 2] = e;
            }
            redisAppendCommandArgv(c, k + 2, argv, lens);
            pending++;
            continue;
        }
        redisReply *r;
        if (redisGetReply(c, (void **)&r) != REDIS_OK) {
            fail_at(__LINE__, "connection error %s", c->errstr);
            exit(1);
        }
        if (r->type != REDIS_REPLY_INTEGER)
            bad++;
        freeReplyObject(r);
        pending--;
    }
    CHECK_TRUE(bad == 0, "%ld PFADD batches answered other than an integer", bad);
    free(text);
    free(lens);
    free(argv);
}

static void test_hll_accuracy(void)
{
    static const long sizes[] = {1000, 100000, 10000000};
    redisContext *c = fresh();
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char key[32];
        snprintf(key, sizeof key, "hll:%ld", sizes[i]);
        long long t0 = mono_ms();
        hll_fill(c, key, sizes[i]);
        redisReply *r = CMD(c, "PFCOUNT %s", key);
        long long got = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
        freeReplyObject(r);
        double err = (double)(got - sizes[i]) / (double)sizes[i];
        printf("PFCOUNT of %ld distinct elements: %lld (error %+.3f%%, %lld ms)\n", sizes[i], got,
               err * 100, mono_ms() - t0);
        CHECK_TRUE(got >= 0 && err <= HLL_MAX_ERROR && err >= -HLL_MAX_ERROR,
                   "PFCOUNT %s = %lld, more than 2%% from %ld", key, got, sizes[i]);
    }
    redisFree(c);
}

/* ---- logical databases ---------------------------------------------------------------------- */

/* Every key of a full SCAN (COUNT count, MATCH match or every key), sorted and joined with ','
 * as EXPECT_SORTED_LIST shows them, bytes over 0x7e as \xHH. */
static void scan_joined(redisContext *c, const char *match, int count, char *out, size_t cap)
{
    char cursor[64] = "0";
    char **keys = NULL;
    size_t n = 0;
    long calls = 0;
    do {
        redisReply *r = match ? CMD(c, "SCAN %s COUNT %d MATCH %s", cursor, count, match)
                              : CMD(c, "SCAN %s COUNT %d", cursor, count);
        calls++;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            freeReplyObject(r);
            break;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        for (size_t i = 0; i < r->element[1]->elements; i++) {
            redisReply *k = r->element[1]->element[i];
            keys = realloc(keys, (n + 1) * sizeof *keys);
            keys[n] = malloc(4 * k->len + 16); /* escape_into's room: \xHH per byte, and 8 */
            escape_into(keys[n], 4 * k->len + 16, k->str, k->len);
            n++;
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0 && calls < SCAN_MAX_CALLS);
    qsort(keys, n, sizeof *keys, cmp_str);
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (o + strlen(keys[i]) + 2 < cap)
            o += (size_t)snprintf(out + o, cap - o, "%s%s", i ? "," : "", keys[i]);
        free(keys[i]);
    }
    free(keys);
}

#define EXPECT_SCAN(c, match, count, want)                                                         \
    do {                                                                                           \
        char _got[4096];                                                                           \
        scan_joined((c), (match), (count), _got, sizeof _got);                                     \
        CHECK_TRUE(strcmp(_got, (want)) == 0, "SCAN: expected [%s], got [%s]", (want), _got);      \
    } while (0)

static void test_databases(void)
{
    redisContext *c = fresh(); /* FLUSHALL: every database */
    redisContext *d = connect_port(g_port);
    EXPECT_OK(CMD(d, "SELECT 1"));
    EXPECT_OK(CMD(c, "SET k zero"));
    EXPECT_OK(CMD(d, "SET k one"));
    EXPECT_OK(CMD(d, "SET only1 x"));
    EXPECT_STR(CMD(c, "GET k"), "zero");
    EXPECT_STR(CMD(d, "GET k"), "one");
    EXPECT_NIL(CMD(c, "GET only1"));
    EXPECT_INT(CMD(c, "EXISTS only1 k"), 1);
    EXPECT_INT(CMD(d, "EXISTS only1 k"), 2);
    EXPECT_SORTED_LIST(CMD(c, "KEYS *"), "k");
    EXPECT_SORTED_LIST(CMD(d, "KEYS *"), "k,only1");
    EXPECT_SORTED_LIST(CMD(d, "KEYS o*"), "only1");
    EXPECT_INT(CMD(c, "DBSIZE"), 1);
    EXPECT_INT(CMD(d, "DBSIZE"), 2);
    EXPECT_SCAN(c, NULL, 1, "k");
    EXPECT_SCAN(d, NULL, 1, "k,only1");
    EXPECT_SCAN(d, "o*", 10, "only1");
    EXPECT_INT(CMD(d, "INCR n"), 1);
    EXPECT_INT(CMD(c, "INCR n"), 1);
    EXPECT_INT(CMD(d, "DEL n"), 1);
    EXPECT_STR(CMD(c, "GET n"), "1");

    /* Keys that start with 0xFF (the byte that prefixes other databases' keys) stay in db 0,
     * and sort after the others there. */
    /* (Octal escapes: "\xff\x01abc" would read as one hex escape.) */
    EXPECT_OK(CMD(c, "SET %b ff", "\377", (size_t)1));
    EXPECT_OK(CMD(c, "SET %b esc", "\377\001abc", (size_t)5));
    EXPECT_OK(CMD(c, "SET %b esc0", "\377\000x", (size_t)3));
    EXPECT_STR(CMD(c, "GET %b", "\377", (size_t)1), "ff");
    EXPECT_STR(CMD(c, "GET %b", "\377\001abc", (size_t)5), "esc");
    EXPECT_STR(CMD(c, "GET %b", "\377\000x", (size_t)3), "esc0");
    EXPECT_NIL(CMD(d, "GET abc"));
    EXPECT_NIL(CMD(d, "GET %b", "\377\001abc", (size_t)5));
    EXPECT_INT(CMD(c, "DBSIZE"), 5);
    EXPECT_INT(CMD(d, "DBSIZE"), 2);
    EXPECT_SCAN(c, NULL, 1, "\\xff,\\xff\\x00x,\\xff\\x01abc,k,n");
    EXPECT_SCAN(c, "\377*", 1, "\\xff,\\xff\\x00x,\\xff\\x01abc");
    EXPECT_SCAN(d, NULL, 1, "k,only1");
    EXPECT_SORTED_LIST(CMD(c, "KEYS %b", "\377\001*", (size_t)3), "\377\001abc");
    EXPECT_SORTED_LIST(CMD(c, "KEYS [kn]"), "k,n");
    EXPECT_SORTED_LIST(CMD(d, "KEYS *"), "k,only1");
    redisReply *r = CMD(c, "INFO keyspace");
    CHECK_TRUE(r->type == REDIS_REPLY_STRING && strstr(r->str, "db0:keys=5,expires=0") &&
                   strstr(r->str, "db1:keys=2,expires=0") && !strstr(r->str, "db2:"),
               "INFO keyspace: expected db0:keys=5 and db1:keys=2, got %.300s",
               r->type == REDIS_REPLY_STRING ? r->str : "(not a string)");
    freeReplyObject(r);
    /* Keys with a time to live are counted, with their mean time to live in ms. */
    EXPECT_INT(CMD(c, "EXPIRE k 100"), 1);
    EXPECT_INT(CMD(c, "PEXPIRE n 50000"), 1);
    r = CMD(c, "INFO keyspace");
    const char *line = r->type == REDIS_REPLY_STRING ? strstr(r->str, "db0:") : NULL;
    unsigned long long keys = 0, expires = 0, avg = 0;
    CHECK_TRUE(line &&
                   sscanf(line, "db0:keys=%llu,expires=%llu,avg_ttl=%llu", &keys, &expires, &avg) ==
                       3 &&
                   keys == 5 && expires == 2 && avg > 70000 && avg <= 75000 &&
                   strstr(r->str, "db1:keys=2,expires=0,avg_ttl=0"),
               "INFO keyspace: expected db0:keys=5,expires=2,avg_ttl about 75000, got %.300s",
               r->type == REDIS_REPLY_STRING ? r->str : "(not a string)");
    freeReplyObject(r);
    EXPECT_INT(CMD(c, "PERSIST k"), 1);
    EXPECT_INT(CMD(c, "PERSIST n"), 1);
    r = CMD(d, "CLIENT INFO");
    CHECK_TRUE(r->type == REDIS_REPLY_STRING && strstr(r->str, " db=1 "),
               "CLIENT INFO after SELECT 1 lacks db=1: %.300s",
               r->type == REDIS_REPLY_STRING ? r->str : "(not a string)");
    freeReplyObject(r);

    /* FLUSHDB empties only the selected database: db 1's by deleting its keys, as other
     * databases have keys; db 0's the same way while db 2 has keys. */
    EXPECT_OK(CMD(d, "FLUSHDB"));
    EXPECT_INT(CMD(d, "DBSIZE"), 0);
    EXPECT_INT(CMD(c, "DBSIZE"), 5);
    EXPECT_STR(CMD(c, "GET k"), "zero");
    for (int i = 0; i < 3000; i++)
        redisAppendCommand(d, "SET many:%d %d", i, i);
    for (int i = 0; i < 3000; i++) {
        void *rr;
        if (redisGetReply(d, &rr) != REDIS_OK)
            exit(1);
        freeReplyObject(rr);
    }
    EXPECT_OK(CMD(d, "SELECT 2"));
    EXPECT_OK(CMD(d, "SET two 2"));
    EXPECT_OK(CMD(d, "SELECT 1"));
    EXPECT_INT(CMD(d, "DBSIZE"), 3000);
    EXPECT_OK(CMD(d, "FLUSHDB"));
    EXPECT_INT(CMD(d, "DBSIZE"), 0);
    EXPECT_SORTED_LIST(CMD(d, "KEYS *"), "");
    EXPECT_OK(CMD(c, "FLUSHDB"));
    EXPECT_INT(CMD(c, "DBSIZE"), 0);
    EXPECT_OK(CMD(d, "SELECT 2"));
    EXPECT_STR(CMD(d, "GET two"), "2");
    EXPECT_INT(CMD(d, "DBSIZE"), 1);

    /* The index: 0 to databases - 1 (16 by default). SELECT inside MULTI changes the database
     * of the commands after it. */
    EXPECT_OK(CMD(d, "SELECT 15"));
    EXPECT_ERR(CMD(d, "SELECT 16"), "ERR DB index is out of range");
    EXPECT_ERR(CMD(d, "SELECT -1"), "ERR DB index is out of range");
    EXPECT_ERR(CMD(d, "SELECT 1.5"), "ERR value is not an integer or out of range");
    EXPECT_OK(CMD(d, "MULTI"));
    EXPECT_STATUS(CMD(d, "SELECT 2"), "QUEUED");
    EXPECT_STATUS(CMD(d, "GET two"), "QUEUED");
    EXPECT_LIST(CMD(d, "EXEC"), "OK,2");
    EXPECT_STR(CMD(d, "GET two"), "2");
    EXPECT_STATUS(CMD(d, "RESET"), "RESET");
    EXPECT_NIL(CMD(d, "GET two"));
    EXPECT_OK(CMD(c, "FLUSHALL"));
    EXPECT_OK(CMD(d, "SELECT 2"));
    EXPECT_INT(CMD(d, "DBSIZE"), 0);
    redisFree(d);
    redisFree(c);
}

/* A second client reading MGET ma mb while MSET writes both: it must never see them differ. */
struct mset_reader {
    int port;
    atomic_bool done;
    long reads, bad;
};

static void *mset_reader_main(void *arg)
{
    struct mset_reader *m = arg;
    redisContext *c = connect_port(m->port);
    while (!atomic_load(&m->done) && m->reads < 1000000) {
        redisReply *r = redisCommand(c, "MGET ma mb");
        if (!r)
            break;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != r->element[1]->type ||
            (r->element[0]->type == REDIS_REPLY_STRING &&
             strcmp(r->element[0]->str, r->element[1]->str) != 0))
            m->bad++;
        m->reads++;
        freeReplyObject(r);
    }
    redisFree(c);
    return NULL;
}

static void test_mset_atomic(void)
{
    redisContext *c = fresh();
    struct mset_reader m = {.port = g_port};
    pthread_t th;
    pthread_create(&th, NULL, mset_reader_main, &m);
    for (int round = 0; round < MULTI_ROUNDS; round++) {
        for (int i = 0; i < MULTI_BATCH; i++)
            redisAppendCommand(c, "MSET ma %d mb %d", round * MULTI_BATCH + i,
                               round * MULTI_BATCH + i);
        for (int i = 0; i < MULTI_BATCH; i++) {
            void *r;
            if (redisGetReply(c, &r) != REDIS_OK)
                exit(1);
            freeReplyObject(r);
        }
    }
    atomic_store(&m.done, true);
    pthread_join(th, NULL);
    snprintf(last_cmd, sizeof last_cmd, "MGET ma mb from a second client during MSET ma i mb i");
    CHECK_TRUE(m.bad == 0 && m.reads > 0, "the reader saw ma != mb %ld times in %ld reads", m.bad,
               m.reads);
    printf("mset: %ld concurrent reads during %d MSETs\n", m.reads, MULTI_ROUNDS * MULTI_BATCH);
    redisFree(c);
}

struct multi_reader {
    int port;
    atomic_bool done;
    long reads, bad;
    long long bad_value;
};

static void *multi_reader_main(void *arg)
{
    struct multi_reader *m = arg;
    redisContext *c = connect_port(m->port);
    while (!atomic_load(&m->done) && m->reads < 1000000) {
        redisReply *r = redisCommand(c, "GET mk");
        if (!r)
            break;
        long long v = r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
        if (r->type != REDIS_REPLY_NIL && (r->type != REDIS_REPLY_STRING || v % MULTI_BATCH)) {
            if (m->bad++ == 0)
                m->bad_value = v;
        }
        m->reads++;
        freeReplyObject(r);
    }
    redisFree(c);
    return NULL;
}

/* EXEC's reply when it ran n commands. */
static void expect_exec_ran(int line, redisReply *r, size_t n)
{
    if (r->type == REDIS_REPLY_ARRAY && r->elements == n)
        pass();
    else
        fail_at(line, "EXEC: expected %zu replies, got type %d", n, r->type);
    freeReplyObject(r);
}

/* One optimistic increment of key by c, as redis-py's transaction helper makes it: WATCH and
 * GET, then MULTI, SET and EXEC, which answers false when EXEC failed (the key was written
 * meanwhile). */
static void optimistic_incr_start(redisContext *c, const char *key, long long *seen)
{
    redisReply *r = CMD(c, "WATCH %s", key);
    freeReplyObject(r);
    r = CMD(c, "GET %s", key);
    *seen = r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
    freeReplyObject(r);
}

static bool optimistic_incr_end(redisContext *c, const char *key, long long seen)
{
    redisReply *r = CMD(c, "MULTI");
    freeReplyObject(r);
    r = CMD(c, "SET %s %lld", key, seen + 1);
    freeReplyObject(r);
    r = CMD(c, "EXEC");
    bool ran = r->type == REDIS_REPLY_ARRAY;
    freeReplyObject(r);
    return ran;
}

/* WATCH: EXEC fails (nil) once a watched key was written since WATCH, by another client or by
 * this one, created, flushed, or has expired; a read or a SET NX that changed nothing is no
 * write; UNWATCH, DISCARD and EXEC forget the keys; WATCH inside MULTI is refused without
 * dooming the transaction. Two clients making optimistic increments in turn lose none. */
static void test_watch(void)
{
    redisContext *a = fresh(), *b = connect_port(g_port);
    EXPECT_OK(CMD(a, "SET wk 1"));
    EXPECT_OK(CMD(a, "WATCH wk"));
    EXPECT_OK(CMD(b, "SET wk 2"));
    EXPECT_OK(CMD(a, "MULTI"));
    EXPECT_STATUS(CMD(a, "INCR wk"), "QUEUED");
    EXPECT_NIL(CMD(a, "EXEC"));
    EXPECT_STR(CMD(a, "GET wk"), "2");
    EXPECT_OK(CMD(a, "WATCH wk"));
    EXPECT_OK(CMD(a, "MULTI"));
    EXPECT_STATUS(CMD(a, "INCR wk"), "QUEUED");
    expect_exec_ran(__LINE__, CMD(a, "EXEC"), 1);
    EXPECT_OK(CMD(a, "WATCH wk"));
    EXPECT_OK(CMD(a, "SET wk 5")); /* its own write counts too */
    EXPECT_OK(CMD(a, "MULTI"));
    EXPECT_NIL(CMD(a, "EXEC"));
    EXPECT_OK(CMD(a, "MULTI"));
    EXPECT_ERR(CMD(a, "WATCH wk"), "ERR WATCH inside MULTI is not allowed");
    expect_exec_ran(__LINE__, CMD(a, "EXEC"), 0);
    EXPECT_OK(CMD(a, "WATCH wk"));
    EXPECT_OK(CMD(b, "SET wk 9"));
    EXPECT_OK(CMD(a, "UNWATCH"));
    EXPECT_OK(CMD(a, "MULTI"));
    expect_exec_ran(__LINE__, CMD(a, "EXEC"), 0);
    EXPECT_OK(CMD(a, "WATCH wnew"));
    EXPECT_OK(CMD(b, "SET wnew 1"));
    EXPECT_OK(CMD(a, "MULTI"));
    EXPECT_NIL(CMD(a, "EXEC"));
    EXPECT_OK(CMD(a, "WATCH wk"));
    EXPECT_OK(CMD(a, "MULTI"));
    EXPECT_OK(CMD(a, "DISCARD"));
    EXPECT_OK(CMD(b, "SET wk 3"));
    EXPECT_OK(CMD(a, "MULTI"));
    expect_exec_ran(__LINE__, CMD(a, "EXEC"), 0);
    EXPECT_OK(CMD(a, "WATCH wk"));
    EXPECT_STR(CMD(b, "GET wk"), "3");
    EXPECT_NIL(CMD(b, "SET wk other NX"));
    EXPECT_OK(CMD(a, "MULTI"));
    expect_exec_ran(__LINE__, CMD(a, "EXEC"), 0);
    EXPECT_OK(CMD(a, "SET we 1 PX 50"));
    EXPECT_OK(CMD(a, "WATCH we"));
    usleep(120 * 1000);
    EXPECT_OK(CMD(a, "MULTI"));
    EXPECT_NIL(CMD(a, "EXEC"));
    EXPECT_OK(CMD(a, "WATCH wk"));
    EXPECT_OK(CMD(b, "FLUSHALL"));
    EXPECT_OK(CMD(a, "MULTI"));
    EXPECT_NIL(CMD(a, "EXEC"));
    /* FLUSHALL counts for the keys it deletes and for those written since WATCH, not for keys
     * that were missing all along, as in Redis. */
    EXPECT_OK(CMD(a, "WATCH wmissing"));
    EXPECT_OK(CMD(b, "FLUSHALL"));
    EXPECT_OK(CMD(a, "MULTI"));
    expect_exec_ran(__LINE__, CMD(a, "EXEC"), 0);
    EXPECT_OK(CMD(a, "WATCH wlater")); /* missing at the flush, written and deleted after it */
    EXPECT_OK(CMD(b, "FLUSHALL"));
    EXPECT_OK(CMD(b, "SET wlater 1"));
    EXPECT_INT(CMD(b, "DEL wlater"), 1);
    EXPECT_OK(CMD(a, "MULTI"));
    EXPECT_NIL(CMD(a, "EXEC"));
    EXPECT_OK(CMD(a, "WATCH wgone"));
    EXPECT_OK(CMD(b, "SET wgone 1"));
    EXPECT_INT(CMD(b, "DEL wgone"), 1);
    EXPECT_OK(CMD(b, "FLUSHALL"));
    EXPECT_OK(CMD(a, "MULTI"));
    EXPECT_NIL(CMD(a, "EXEC"));
    if (!g_redis) {
        /* Across a memtable switch (TALLY CHECKPOINT flushes) the value decides. */
        char dir[] = "/tmp/tally-watch-XXXXXX";
        CHECK_TRUE(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
        EXPECT_OK(CMD(a, "SET wk 1"));
        EXPECT_OK(CMD(a, "WATCH wk"));
        EXPECT_OK(CMD(b, "TALLY CHECKPOINT %s/one", dir));
        EXPECT_OK(CMD(a, "MULTI"));
        expect_exec_ran(__LINE__, CMD(a, "EXEC"), 0);
        EXPECT_OK(CMD(a, "WATCH wk"));
        EXPECT_OK(CMD(b, "SET wk 2"));
        EXPECT_OK(CMD(b, "TALLY CHECKPOINT %s/two", dir));
        EXPECT_OK(CMD(a, "MULTI"));
        EXPECT_NIL(CMD(a, "EXEC"));
        static char big[5001]; /* over WATCH's 4 KiB: counted as changed across a switch */
        memset(big, 'b', 5000);
        EXPECT_OK(CMD(a, "SET wbig %s", big));
        EXPECT_OK(CMD(a, "WATCH wbig"));
        EXPECT_OK(CMD(b, "TALLY CHECKPOINT %s/three", dir));
        EXPECT_OK(CMD(a, "MULTI"));
        EXPECT_NIL(CMD(a, "EXEC"));
        test_rmdir(dir);
    }

    /* Interleaved: a and b both read the counter, a commits, b must fail and retry. */
    long long failed = 0;
    for (int i = 0; i < 100; i++) {
        long long sa, sb;
        optimistic_incr_start(a, "wc", &sa);
        optimistic_incr_start(b, "wc", &sb);
        CHECK_TRUE(optimistic_incr_end(a, "wc", sa), "a's EXEC failed with nothing in between");
        bool ok = optimistic_incr_end(b, "wc", sb);
        failed += !ok;
        while (!ok) {
            optimistic_incr_start(b, "wc", &sb);
            ok = optimistic_incr_end(b, "wc", sb);
        }
    }
    CHECK_TRUE(failed == 100, "b's EXEC after a's write ran %lld times of 100", 100 - failed);
    EXPECT_STR(CMD(a, "GET wc"), "200");
    redisFree(b);
    redisFree(a);
}

static void test_multi(void)
{
    redisContext *c = fresh();
    EXPECT_OK(CMD(c, "MULTI"));
    EXPECT_STATUS(CMD(c, "SET s 1"), "QUEUED");
    EXPECT_STATUS(CMD(c, "INCR s"), "QUEUED");
    EXPECT_LIST(CMD(c, "EXEC"), "OK,(integer) 2");
    EXPECT_OK(CMD(c, "MULTI"));
    EXPECT_STATUS(CMD(c, "INCR s"), "QUEUED");
    EXPECT_OK(CMD(c, "DISCARD"));
    EXPECT_STR(CMD(c, "GET s"), "2");
    EXPECT_ERR(CMD(c, "EXEC"), "ERR EXEC without MULTI");

    struct multi_reader m = {.port = g_port};
    pthread_t th;
    pthread_create(&th, NULL, multi_reader_main, &m);
    int bad_exec = 0;
    for (int round = 0; round < MULTI_ROUNDS; round++) {
        redisAppendCommand(c, "MULTI");
        for (int i = 0; i < MULTI_BATCH; i++)
            redisAppendCommand(c, "INCR mk");
        redisAppendCommand(c, "EXEC");
        snprintf(last_cmd, sizeof last_cmd, "MULTI; INCR mk x%d; EXEC (round %d)", MULTI_BATCH,
                 round);
        for (int i = 0; i < MULTI_BATCH + 2; i++) {
            redisReply *r;
            if (redisGetReply(c, (void **)&r) != REDIS_OK) {
                fail_at(__LINE__, "connection error %s", c->errstr);
                exit(1);
            }
            if (i == MULTI_BATCH + 1) {
                bool ok =
                    r->type == REDIS_REPLY_ARRAY && r->elements == MULTI_BATCH &&
                    r->element[MULTI_BATCH - 1]->type == REDIS_REPLY_INTEGER &&
                    r->element[MULTI_BATCH - 1]->integer == (long long)(round + 1) * MULTI_BATCH;
                if (!ok && bad_exec++ == 0) {
                    char got[600];
                    describe_reply(r, got, sizeof got);
                    fail_at(__LINE__, "EXEC: expected %d replies ending with %lld, got %s",
                            MULTI_BATCH, (long long)(round + 1) * MULTI_BATCH, got);
                }
            }
            freeReplyObject(r);
        }
    }
    atomic_store(&m.done, true);
    pthread_join(th, NULL);
    snprintf(last_cmd, sizeof last_cmd, "GET mk from a second client during the transactions");
    CHECK_TRUE(m.bad == 0 && m.reads > 0,
               "the reader saw %ld values that are not multiples of %d (first: %lld) in %ld "
               "reads",
               m.bad, MULTI_BATCH, m.bad_value, m.reads);
    printf("multi: %ld concurrent reads during %d transactions of %d INCRs\n", m.reads,
           MULTI_ROUNDS, MULTI_BATCH);
    EXPECT_STR(CMD(c, "GET mk"), "30000");
    redisFree(c);
}

static void test_expiry(void)
{
    redisContext *c = fresh();
    EXPECT_OK(CMD(c, "SET e v PX 50"));
    EXPECT_INT(CMD(c, "INCR e2"), 1);
    EXPECT_INT(CMD(c, "PEXPIRE e2 50"), 1);
    EXPECT_OK(CMD(c, "SET keep v"));
    long long start = mono_ms(), gone_e = -1, gone_e2 = -1;
    while (mono_ms() - start < EXPIRY_POLL_MS && (gone_e < 0 || gone_e2 < 0)) {
        redisReply *r = CMD(c, "GET e");
        if (r->type == REDIS_REPLY_NIL && gone_e < 0)
            gone_e = mono_ms() - start;
        freeReplyObject(r);
        r = CMD(c, "EXISTS e2");
        if (r->type == REDIS_REPLY_INTEGER && r->integer == 0 && gone_e2 < 0)
            gone_e2 = mono_ms() - start;
        freeReplyObject(r);
        usleep(5000);
    }
    snprintf(last_cmd, sizeof last_cmd, "SET e v PX 50 / PEXPIRE e2 50, then polling");
    CHECK_TRUE(gone_e >= 0 && gone_e2 >= 0, "still there after %d ms: e %s, e2 %s", EXPIRY_POLL_MS,
               gone_e < 0 ? "yes" : "no", gone_e2 < 0 ? "yes" : "no");
    EXPECT_INT(CMD(c, "TTL e"), -2);
    EXPECT_INT(CMD(c, "PTTL e2"), -2);
    EXPECT_STR(CMD(c, "GET keep"), "v");
    EXPECT_INT(CMD(c, "INCR e2"), 1);
    redisFree(c);
}

/* ---- durability ----------------------------------------------------------------------------- */

static void test_restart(const char *tmp)
{
    struct test_server s;
    srv_init(&s, tmp, "restart");
    srv_start(&s);
    redisContext *c = connect_port(s.port);
    EXPECT_OK(CMD(c, "SET str hello"));
    EXPECT_INT(CMD(c, "INCRBY cnt 41"), 41);
    EXPECT_INT(CMD(c, "INCR cnt"), 42);
    EXPECT_STR(CMD(c, "INCRBYFLOAT fl 2.5"), "2.5");
    EXPECT_OK(CMD(c, "SET ttl v EX 1000"));
    EXPECT_OK(CMD(c, "SET gone v"));
    EXPECT_INT(CMD(c, "DEL gone"), 1);
    EXPECT_INT(CMD(c, "APPEND ap abc"), 3);
    EXPECT_OK(CMD(c, "SELECT 3"));
    EXPECT_OK(CMD(c, "SET in3 three"));
    EXPECT_OK(CMD(c, "SELECT 0"));
    for (int i = 0; i < 1000; i++)
        redisAppendCommand(c, "INCRBY many:%d %d", i % 10, i);
    for (int i = 0; i < 1000; i++) {
        void *r;
        if (redisGetReply(c, &r) != REDIS_OK)
            exit(1);
        freeReplyObject(r);
    }
    redisFree(c);
    int st = srv_stop_with(&s, SIGTERM);
    snprintf(last_cmd, sizeof last_cmd, "SIGTERM");
    CHECK_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0,
               "the server did not exit with status 0 on SIGTERM (wait status %d)", st);

    srv_start(&s);
    c = connect_port(s.port);
    EXPECT_STR(CMD(c, "GET str"), "hello");
    EXPECT_STR(CMD(c, "GET cnt"), "42");
    EXPECT_INT(CMD(c, "INCR cnt"), 43);
    EXPECT_STR(CMD(c, "GET fl"), "2.5");
    EXPECT_RANGE(CMD(c, "TTL ttl"), 990, 1000);
    EXPECT_INT(CMD(c, "EXISTS gone"), 0);
    EXPECT_STR(CMD(c, "GET ap"), "abc");
    for (int k = 0; k < 10; k++) {
        long long want = 0;
        for (int i = k; i < 1000; i += 10)
            want += i;
        char ws[32];
        snprintf(ws, sizeof ws, "%lld", want);
        EXPECT_STR(CMD(c, "GET many:%d", k), ws);
    }
    EXPECT_INT(CMD(c, "DBSIZE"), 15);
    EXPECT_NIL(CMD(c, "GET in3"));
    EXPECT_OK(CMD(c, "SELECT 3"));
    EXPECT_STR(CMD(c, "GET in3"), "three");
    EXPECT_INT(CMD(c, "DBSIZE"), 1);
    redisFree(c);
    srv_stop_with(&s, SIGTERM);
}

struct crash_load {
    int port;
    atomic_long acked_total;
    long long acked[CRASH_KEYS], sent[CRASH_KEYS];
    long long bad_replies;
};

/* Pipelines INCRBYs in batches until the connection dies; counts what was acknowledged. */
static void *crash_load_main(void *arg)
{
    struct crash_load *L = arg;
    redisContext *c = connect_port(L->port);
    for (long round = 0; round < 1000000; round++) {
        for (int i = 0; i < CRASH_BATCH; i++) {
            int k = i % CRASH_KEYS;
            redisAppendCommand(c, "INCRBY crash:%d %d", k, k + 1);
            L->sent[k] += k + 1;
        }
        for (int i = 0; i < CRASH_BATCH; i++) {
            redisReply *r;
            if (redisGetReply(c, (void **)&r) != REDIS_OK)
                goto out;
            if (r->type == REDIS_REPLY_INTEGER) {
                L->acked[i % CRASH_KEYS] += i % CRASH_KEYS + 1;
                atomic_fetch_add(&L->acked_total, 1);
            } else {
                L->bad_replies++;
            }
            freeReplyObject(r);
        }
    }
out:
    redisFree(c);
    return NULL;
}

static long long get_ll(redisContext *c, const char *key)
{
    redisReply *r = CMD(c, "GET %s", key);
    long long v = r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
    if (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL) {
        char got[600];
        describe_reply(r, got, sizeof got);
        fail_at(__LINE__, "expected a value or nil, got %s", got);
    }
    freeReplyObject(r);
    return v;
}

/* kill -9 loses no acknowledged INCRBY: under always the reply waits for the fdatasync, under
 * everysec (the default) for the write to the kernel, which outlives the process. */
static void test_kill9(const char *tmp, const char *fsync)
{
    struct test_server s;
    char name[32];
    snprintf(name, sizeof name, "kill9-%s", fsync);
    srv_init(&s, tmp, name);
    srv_add_opt(&s, "fsync", fsync);
    srv_start(&s);
    for (int round = 0; round < CRASH_ROUNDS; round++) {
        redisContext *c = connect_port(s.port);
        long long base[CRASH_KEYS];
        char key[32];
        for (int k = 0; k < CRASH_KEYS; k++) {
            snprintf(key, sizeof key, "crash:%d", k);
            base[k] = get_ll(c, key);
        }
        redisFree(c);

        struct crash_load L = {.port = s.port};
        pthread_t th;
        pthread_create(&th, NULL, crash_load_main, &L);
        long long start = mono_ms();
        while (atomic_load(&L.acked_total) < CRASH_MIN_ACKED && mono_ms() - start < CRASH_WAIT_MS)
            usleep(1000);
        usleep(20000 * (unsigned)round);
        srv_stop_with(&s, SIGKILL);
        pthread_join(th, NULL);

        srv_start(&s);
        c = connect_port(s.port);
        snprintf(last_cmd, sizeof last_cmd, "kill -9 under fsync %s, round %d", fsync, round);
        CHECK_TRUE(L.bad_replies == 0, "%lld INCRBY replies were not integers", L.bad_replies);
        CHECK_TRUE(atomic_load(&L.acked_total) >= CRASH_MIN_ACKED,
                   "only %ld INCRBYs acknowledged in %d ms", atomic_load(&L.acked_total),
                   CRASH_WAIT_MS);
        for (int k = 0; k < CRASH_KEYS; k++) {
            snprintf(key, sizeof key, "crash:%d", k);
            long long v = get_ll(c, key) - base[k];
            CHECK_TRUE(v >= L.acked[k] && v <= L.sent[k],
                       "%s grew by %lld after the restart: acknowledged %lld, sent %lld", key, v,
                       L.acked[k], L.sent[k]);
        }
        printf("kill -9 (fsync %s) round %d: %ld INCRBYs acknowledged, all present\n", fsync, round,
               atomic_load(&L.acked_total));
        redisFree(c);
    }
    srv_stop_with(&s, SIGTERM);
}

int main(void)
{
    g_redis = srv_is_redis();
    if (!g_redis)
        test_require_uring();
    srv_setup(TEST_ALARM_S);
    char *tmp = test_tmpdir("server");
    struct test_server srv;
    srv_init(&srv, tmp, "main");
    srv_start(&srv);
    g_port = srv.port;
    printf("testing %s on port %d\n", srv_binary(), g_port);
    fflush(stdout);

    test_get_set();
    test_string_commands();
    test_incr_family();
    test_increx();
    test_keys_basic();
    test_expire_family();
    test_scan();
    test_connection();
    test_client_reply();
    test_resp3();
    test_info();
    test_cmdstats();
    test_memory_usage();
    test_config();
    test_command();
    test_pipeline();
    test_hll_bytes();
    test_hll_accuracy();
    test_multi();
    test_watch();
    test_databases();
    test_mset_atomic();
    test_expiry();
    srv_stop_with(&srv, SIGTERM);
    test_auth(tmp);
    test_restart(tmp);
    test_kill9(tmp, "always");
    test_kill9(tmp, "everysec");

    if (n_failed == 0 && getenv("TALLY_KEEP_TMP") == NULL)
        test_rmdir(tmp);
    else
        printf("the server's directories and logs are kept in %s\n", tmp);
    free(tmp);
    printf("%d passed, %d failed\n", n_passed, n_failed);
    return n_failed ? 1 : 0;
}
