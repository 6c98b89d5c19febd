/*
 * test_hll_accuracy.c - PFCOUNT's accuracy in a live tallyd, through hiredis.
 *
 * Checks that PFCOUNT is within 2% of the true number of distinct elements:
 * - of one key holding 1,000, 100,000 and 10,000,000 distinct elements (the sparse encoding,
 *   the dense one, and far past the registers' count);
 * - of several keys at once, which counts their union: three keys of 300,000 elements
 *   overlapping by half, plus one disjoint key (750,000 + 200,000 distinct); and two small
 *   sparse keys with a common part. The union of three keys counts exactly as one key holding
 *   all of their elements.
 * The element sets are fixed and the hash is Redis's, so the counts are too: redis-server gives
 * the same ones (TALLY_TEST_SERVER=redis), each within 2% (about 2.5 standard errors).
 * Each element is sent once, in PFADD commands of BATCH elements, with up to WINDOW commands
 * in flight on one connection (pipelining), so 10,000,000 elements cost 500 round trips.
 * Element i is the 9 bytes 'e' and i little endian, the same in every key.
 *
 * Environment: TALLYD (the binary); TALLY_TEST_SERVER=redis runs the same checks against
 * redis-server, to check the test itself.
 */
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server_harness.h"
#include "testutil.h"

#define TEST_ALARM_S    300
#define REPLY_TIMEOUT_S 60
#define BATCH           20000 /* elements per PFADD */
#define WINDOW          8     /* PFADD commands sent and not yet answered */
#define ELEMENT_BYTES   9
#define MAX_ERROR       0.02

static int n_failed;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads one reply, which must be an integer (PFADD's 0 or 1). */
static void read_pfadd_reply(redisContext *c, const char *key)
{
    redisReply *r;
    if (redisGetReply(c, (void **)&r) != REDIS_OK) {
        fprintf(stderr, "FAIL: PFADD %s: connection error %s\n", key, c->errstr);
        exit(1);
    }
    if (r->type != REDIS_REPLY_INTEGER) {
        fprintf(stderr, "FAIL: PFADD %s answered type %d '%s', expected an integer\n", key, r->type,
                r->str ? r->str : "");
        exit(1);
    }
    freeReplyObject(r);
}

/* PFADD key with the elements [from, to), pipelined. */
static void add_range(redisContext *c, const char *key, uint64_t from, uint64_t to)
{
    static const char *argv[BATCH + 2];
    static size_t lens[BATCH + 2];
    static char elements[BATCH][ELEMENT_BYTES]; /* hiredis copies each command at once */
    argv[0] = "PFADD";
    lens[0] = 5;
    argv[1] = key;
    lens[1] = strlen(key);
    int in_flight = 0;
    for (uint64_t i = from; i < to;) {
        if (in_flight == WINDOW) {
            read_pfadd_reply(c, key);
            in_flight--;
        }
        int n = 0;
        for (; n < BATCH && i < to; n++, i++) {
            char *e = elements[n];
            e[0] = 'e';
            for (int b = 0; b < 8; b++)
                e[1 + b] = (char)(i >> (8 * b));
            argv[n + 2] = e;
            lens[n + 2] = ELEMENT_BYTES;
        }
        if (redisAppendCommandArgv(c, n + 2, argv, lens) != REDIS_OK) {
            fprintf(stderr, "FAIL: PFADD %s: cannot format: %s\n", key, c->errstr);
            exit(1);
        }
        in_flight++;
    }
    while (in_flight-- > 0)
        read_pfadd_reply(c, key);
}

/* PFCOUNT of the keys (space-separated); exits on a connection error. */
static redisReply *pfcount_reply(redisContext *c, const char *keys)
{
    char words[256];
    const char *argv[16] = {"PFCOUNT"};
    int argc = 1;
    snprintf(words, sizeof words, "%s", keys);
    for (char *save = NULL, *w = strtok_r(words, " ", &save); w && argc < 16;
         w = strtok_r(NULL, " ", &save))
        argv[argc++] = w;
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    if (!r) {
        fprintf(stderr, "FAIL: PFCOUNT %s: connection error %s\n", keys, c->errstr);
        exit(1);
    }
    return r;
}

static long long pfcount(redisContext *c, const char *keys)
{
    redisReply *r = pfcount_reply(c, keys);
    long long n = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    return n;
}

/* PFCOUNT of the keys (space-separated) against the true count. */
static void expect_count(redisContext *c, const char *keys, uint64_t want, int64_t since_ms)
{
    redisReply *r = pfcount_reply(c, keys);
    long long got = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    double err = ((double)got - (double)want) / (double)want;
    printf("PFCOUNT %s: %lld of %" PRIu64 " distinct (error %+.3f%%, %" PRId64 " ms)\n", keys, got,
           want, 100 * err, mono_ms() - since_ms);
    if (r->type != REDIS_REPLY_INTEGER || err > MAX_ERROR || err < -MAX_ERROR) {
        printf("FAIL: PFCOUNT %s answered %lld (type %d %s), more than 2%% from %" PRIu64 "\n",
               keys, got, r->type, r->str ? r->str : "", want);
        n_failed++;
    }
    freeReplyObject(r);
}

static void test_single_keys(redisContext *c)
{
    static const uint64_t sizes[] = {1000, 100000, 10000000};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        char key[32];
        snprintf(key, sizeof key, "hll:%" PRIu64, sizes[k]);
        int64_t t0 = mono_ms();
        add_range(c, key, 0, sizes[k]);
        expect_count(c, key, sizes[k], t0);
    }
}

static void test_unions(redisContext *c)
{
    int64_t t0 = mono_ms();
    /* a: [0, 300k), b: [150k, 450k), c: [300k, 600k) plus [0, 150k) again: 750k together. */
    add_range(c, "union:a", 0, 300000);
    add_range(c, "union:b", 150000, 450000);
    add_range(c, "union:c", 450000, 750000);
    add_range(c, "union:c", 0, 150000);
    add_range(c, "union:d", 5000000, 5200000);
    expect_count(c, "union:a union:b union:c", 750000, t0);
    expect_count(c, "union:a union:b union:c union:d", 950000, t0);
    expect_count(c, "union:a union:c", 600000, t0);
    /* The union's registers are those of one key holding every element: the same count. */
    add_range(c, "union:all", 0, 750000);
    long long all = pfcount(c, "union:all"), three = pfcount(c, "union:c union:b union:a");
    if (all != three) {
        printf("FAIL: PFCOUNT of the union of three keys is %lld, of one key with all their "
               "elements %lld\n",
               three, all);
        n_failed++;
    }
    /* Two sparse keys sharing 200 of their 700 elements each. */
    t0 = mono_ms();
    add_range(c, "small:a", 0, 700);
    add_range(c, "small:b", 500, 1200);
    expect_count(c, "small:a small:b", 1200, t0);
    /* A missing key adds nothing to the union. */
    expect_count(c, "small:a missing small:b", 1200, t0);
}

int main(void)
{
    bool redis = srv_is_redis();
    if (!redis)
        test_require_uring();
    srv_setup(TEST_ALARM_S);
    char *tmp = test_tmpdir("hll-accuracy");
    struct test_server srv;
    srv_init(&srv, tmp, "main");
    srv_start(&srv);
    printf("testing %s on port %d\n", srv_binary(), srv.port);
    struct timeval tv = {.tv_sec = REPLY_TIMEOUT_S};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", srv.port, tv);
    if (!c || c->err) {
        fprintf(stderr, "FAIL: cannot connect to port %d: %s\n", srv.port,
                c ? c->errstr : "out of memory");
        return 1;
    }
    redisSetTimeout(c, tv);
    test_single_keys(c);
    test_unions(c);
    redisFree(c);
    srv_stop_with(&srv, SIGTERM);
    if (n_failed == 0)
        test_rmdir(tmp);
    else
        printf("the server's directory and log are kept in %s\n", tmp);
    free(tmp);
    printf("test_hll_accuracy: %s\n", n_failed ? "FAILED" : "all checks passed");
    return n_failed ? 1 : 0;
}
