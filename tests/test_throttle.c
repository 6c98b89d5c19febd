/*
 * test_throttle.c - CL.THROTTLE: the GCRA core of server/throttle.c, then the command in a live
 * tallyd through hiredis.
 *
 * The core, with injected time in nanoseconds, against a reference written another way: a
 * token bucket holding up to (max_burst + 1) * T nanoseconds of credit, refilled one
 * nanosecond per nanosecond, that an action of quantity q takes q * T from. Checked: every
 * field of every step, for redis-cell's published example, a burst and its refill, quantity
 * above 1 and above the limit, quantity 0, rates above 1,000 per second (5,000/s: T exactly
 * 0.2 ms; 10,000/s), long idle periods, and random sequences (seeded; the seed is printed and
 * TALLY_SEED replays it) in which the state is dropped once its expiry passes, as the engine
 * does. Also the reply's rounding to seconds and every bound of tl_throttle_check_limit.
 *
 * The command: the reply's shape and values, a burst being limited with its retry time,
 * quantity, WRONGTYPE against a string key, an error naming the argument for each bad one,
 * the state surviving a restart, and the key disappearing once the limiter is idle.
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "server.h"
#include "server_harness.h"
#include "testutil.h"
#include "throttle.h"

#define TEST_ALARM_S  120
#define RANDOM_LIMITS 300
#define RANDOM_STEPS  400
/* The longest tolerance of a random limit (19.5 hours): 400 steps of up to 50 times it stay
 * below TL_THROTTLE_MAX_TIME_NS. */
#define RANDOM_MAX_TAU_NS (INT64_C(1) << 46)
#define REPLY_TIMEOUT_S   10
#define EXPIRY_POLL_MS    2000
#define NS_PER_MS         INT64_C(1000000)
#define S                 TL_THROTTLE_NS_PER_S
#define START_NS          (INT64_C(1700000000) * S)

/* Reports a failed check and ends the test (the seed was printed first: TALLY_SEED replays). */
#define FAIL(...) (fprintf(stderr, "FAIL: " __VA_ARGS__), fputc('\n', stderr), exit(1))

/* ---- the reference: a token bucket --------------------------------------------------------- */

struct bucket {
    int64_t t, capacity_ns; /* capacity: (max_burst + 1) * T of credit */
    int64_t credit_ns, at_ns;
};

static void bucket_init(struct bucket *b, const struct tl_throttle_limit *l, int64_t now)
{
    b->t = l->period_ns / l->count_per_period;
    b->capacity_ns = b->t * (l->max_burst + 1);
    b->credit_ns = b->capacity_ns;
    b->at_ns = now;
}

/* What the reference expects of an action of quantity q at now. */
static void bucket_take(struct bucket *b, int64_t q, int64_t now, struct tl_throttle_result *r)
{
    if (now > b->at_ns) {
        int64_t refill = now - b->at_ns;
        b->credit_ns =
            refill >= b->capacity_ns - b->credit_ns ? b->capacity_ns : b->credit_ns + refill;
        b->at_ns = now;
    }
    memset(r, 0, sizeof *r);
    r->limit = b->capacity_ns / b->t;
    int64_t need = q > r->limit ? -1 : q * b->t; /* -1: more than the bucket holds */
    if (need >= 0 && need <= b->credit_ns) {
        b->credit_ns -= need;
        r->limited = false;
        r->retry_after_ns = -1;
    } else {
        r->limited = true;
        r->retry_after_ns = need < 0 ? -1 : need - b->credit_ns;
    }
    r->remaining = b->credit_ns / b->t;
    r->reset_after_ns = b->capacity_ns - b->credit_ns;
}

/* The core under test, with its state as the engine would keep it: the TAT, dropped once its
 * expiry (the TAT rounded up to the millisecond) has passed. */
struct limiter {
    bool have;
    int64_t tat_ns, expire_ms;
};

static void limiter_step(struct limiter *st, const struct tl_throttle_limit *l, int64_t q,
                         int64_t now, struct tl_throttle_result *r)
{
    if (st->have && now / NS_PER_MS > st->expire_ms)
        st->have = false; /* a key is gone once the clock is past its expiry */
    tl_throttle_step(l, q, st->have, st->tat_ns, now, r);
    if (r->store) {
        st->have = true;
        st->tat_ns = r->new_tat_ns;
        st->expire_ms = (r->new_tat_ns + NS_PER_MS - 1) / NS_PER_MS;
    }
}

static void expect_result(const char *what, int step, const struct tl_throttle_result *got,
                          const struct tl_throttle_result *want)
{
    if (got->limited != want->limited || got->limit != want->limit ||
        got->remaining != want->remaining || got->retry_after_ns != want->retry_after_ns ||
        got->reset_after_ns != want->reset_after_ns)
        FAIL("%s, step %d: got limited %d limit %" PRId64 " remaining %" PRId64 " retry %" PRId64
             " ns reset %" PRId64 " ns; the bucket says %d %" PRId64 " %" PRId64 " %" PRId64
             " ns %" PRId64 " ns",
             what, step, got->limited, got->limit, got->remaining, got->retry_after_ns,
             got->reset_after_ns, want->limited, want->limit, want->remaining, want->retry_after_ns,
             want->reset_after_ns);
}

/* Runs actions (quantity, time offset from START_NS) through both and compares each step. */
struct action {
    int64_t q, at_ns;
};

static void run_both(const char *what, const struct tl_throttle_limit *l, const struct action *a,
                     int n, const struct tl_throttle_result *expect)
{
    char err[256];
    if (tl_throttle_check_limit(l, err, sizeof err) < 0)
        FAIL("%s: the limit is refused: %s", what, err);
    struct bucket b;
    struct limiter st = {0};
    bucket_init(&b, l, START_NS + a[0].at_ns);
    for (int i = 0; i < n; i++) {
        struct tl_throttle_result got, want;
        limiter_step(&st, l, a[i].q, START_NS + a[i].at_ns, &got);
        bucket_take(&b, a[i].q, START_NS + a[i].at_ns, &want);
        expect_result(what, i, &got, &want);
        if (expect)
            expect_result(what, i, &got, &expect[i]);
    }
}

#define RES(lim, limit, rem, retry, reset)                                                         \
    {                                                                                              \
        lim, limit, rem, retry, reset, false, 0                                                    \
    }

/* The example of redis-cell's README, and a burst of 5 at 1 per second with its refill. */
static void test_known_sequences(void)
{
    struct tl_throttle_limit readme = {15, 30, 60 * S};
    struct action a1[] = {{1, 0}};
    struct tl_throttle_result r1[] = {RES(false, 16, 15, -1, 2 * S)};
    run_both("redis-cell's example", &readme, a1, 1, r1);

    struct tl_throttle_limit five = {4, 1, 1 * S};
    struct action a2[] = {
        {6, 0},
        {1, 0},
        {1, 0},
        {1, 0},
        {1, 0},
        {1, 0},
        {1, 0},
        {1, 3000 * NS_PER_MS},
        {1, 3100 * NS_PER_MS},
        {1, 4000 * NS_PER_MS},
        {1, 8000 * NS_PER_MS},
        {1, 9500 * NS_PER_MS},
        {0, 9500 * NS_PER_MS},
        {2, 9500 * NS_PER_MS},
        {5, 9500 * NS_PER_MS},
    };
    struct tl_throttle_result r2[] = {
        RES(true, 5, 5, -1, 0), /* more than the limit: never allowed */
        RES(false, 5, 4, -1, 1 * S), RES(false, 5, 3, -1, 2 * S),
        RES(false, 5, 2, -1, 3 * S), RES(false, 5, 1, -1, 4 * S),
        RES(false, 5, 0, -1, 5 * S), RES(true, 5, 0, 1 * S, 5 * S),
        RES(false, 5, 2, -1, 3 * S), RES(false, 5, 1, -1, 3900 * NS_PER_MS),
        RES(false, 5, 1, -1, 4 * S), RES(false, 5, 4, -1, 1 * S),
        RES(false, 5, 4, -1, 1 * S), RES(false, 5, 4, -1, 1 * S), /* quantity 0: a look */
        RES(false, 5, 2, -1, 3 * S), RES(true, 5, 2, 3 * S, 3 * S),
    };
    run_both("a burst of 5 at 1/s", &five, a2, (int)(sizeof a2 / sizeof a2[0]), r2);
}

/* 5,000 and 10,000 per second: T is 200 us and 100 us, not rounded to milliseconds. */
static void test_high_rates(void)
{
    struct tl_throttle_limit l5k = {0, 5000, 1 * S};
    CHECK_EQ_INT(tl_throttle_interval_ns(&l5k), 200000);
    struct tl_throttle_limit l10k = {9, 10000, 1 * S};
    CHECK_EQ_INT(tl_throttle_interval_ns(&l10k), 100000);
    /* At exactly the rate, one action every 100 us, nothing is ever limited, for 1 s. */
    struct limiter st = {0};
    int limited = 0;
    for (int i = 0; i < 10000; i++) {
        struct tl_throttle_result r;
        limiter_step(&st, &l10k, 1, START_NS + i * INT64_C(100000), &r);
        limited += r.limited;
    }
    CHECK_EQ_INT(limited, 0);
    /* 1% faster: after the burst of 10 is used up, one action in about a hundred is limited. */
    st.have = false;
    limited = 0;
    for (int i = 0; i < 100000; i++) {
        struct tl_throttle_result r;
        limiter_step(&st, &l10k, 1, START_NS + i * INT64_C(99000), &r);
        limited += r.limited;
    }
    if (limited < 980 || limited > 1000)
        FAIL("10,000/s offered 10,101/s for 9.9 s: %d limited, expected about 990", limited);
    /* At 5,000/s with no burst, an action 199.999 us after the last is limited, with a retry
     * of 1 ns; at 200 us it is allowed. */
    struct action a[] = {{1, 0}, {1, 199999}, {1, 200000}, {1, 400000}};
    struct tl_throttle_result r[] = {
        RES(false, 1, 0, -1, 200000),
        RES(true, 1, 0, 1, 1),
        RES(false, 1, 0, -1, 200000),
        RES(false, 1, 0, -1, 200000),
    };
    run_both("5,000/s", &l5k, a, 4, r);
}

static int64_t rand_range(uint64_t *rng, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(test_rand(rng) % (uint64_t)(hi - lo + 1));
}

static void test_random(uint64_t seed)
{
    uint64_t rng = seed;
    for (int k = 0; k < RANDOM_LIMITS; k++) {
        struct tl_throttle_limit l = {
            .max_burst = rand_range(&rng, 0, k % 3 ? 20 : 2000),
            .count_per_period = rand_range(&rng, 1, k % 2 ? 20 : 50000),
            .period_ns = rand_range(&rng, 1, k % 4 ? 10 : 3600) * S,
        };
        int64_t t = l.period_ns / l.count_per_period;
        if (t * (l.max_burst + 1) > RANDOM_MAX_TAU_NS)
            l.max_burst = RANDOM_MAX_TAU_NS / t - 1;
        int64_t tau = t * (l.max_burst + 1);
        struct action a[RANDOM_STEPS];
        int64_t now = 0;
        for (int i = 0; i < RANDOM_STEPS; i++) {
            switch (test_rand(&rng) % 6) {
            case 0: /* at once */
                break;
            case 1: /* about one interval */
                now += rand_range(&rng, t / 2, 2 * t);
                break;
            case 2: /* up to a few nanoseconds, to find off-by-one edges */
                now += rand_range(&rng, 0, 3);
                break;
            case 3: /* a long idle period: past the tolerance, often by far */
                now += rand_range(&rng, tau, 50 * tau);
                break;
            default: /* anything up to the tolerance */
                now += rand_range(&rng, 0, tau);
                break;
            }
            a[i].at_ns = now;
            uint64_t pick = test_rand(&rng) % 10;
            a[i].q = pick < 6 ? 1 : pick < 9 ? rand_range(&rng, 0, l.max_burst + 3) : 0;
        }
        char what[128];
        snprintf(what, sizeof what,
                 "random limit %d (burst %" PRId64 ", %" PRId64 " per %" PRId64 " s)", k,
                 l.max_burst, l.count_per_period, l.period_ns / S);
        run_both(what, &l, a, RANDOM_STEPS, NULL);
    }
}

static void test_rounding_and_bounds(void)
{
    CHECK_EQ_INT(tl_throttle_reply_seconds(-1), -1);
    CHECK_EQ_INT(tl_throttle_reply_seconds(0), 0);
    CHECK_EQ_INT(tl_throttle_reply_seconds(999999), 0); /* under 1 ms: down, as redis-cell */
    CHECK_EQ_INT(tl_throttle_reply_seconds(1000000), 1);
    CHECK_EQ_INT(tl_throttle_reply_seconds(S), 1);
    CHECK_EQ_INT(tl_throttle_reply_seconds(S + 999999), 1);
    CHECK_EQ_INT(tl_throttle_reply_seconds(S + 1000000), 2);
    CHECK_EQ_INT(tl_throttle_reply_seconds(60 * S - 1), 60);

    char err[256];
    struct {
        struct tl_throttle_limit l;
        const char *names; /* what the message must name */
    } bad[] = {
        {{-1, 1, S}, "max_burst"},
        {{0, 0, S}, "count_per_period"},
        {{0, -5, S}, "count_per_period"},
        {{0, 1, 0}, "period"},
        {{0, 1, TL_THROTTLE_MAX_SPAN_NS + 1}, "period"},
        {{0, 2000000001, 2 * S}, "count_per_period"}, /* under 1 ns each */
        {{INT64_MAX - 1, 1, S}, "max_burst"},         /* a burst of 292 years */
        {{TL_THROTTLE_MAX_SPAN_NS, 1000000000, S}, "max_burst"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        if (tl_throttle_check_limit(&bad[i].l, err, sizeof err) != -EINVAL ||
            strstr(err, bad[i].names) == NULL)
            FAIL("bad limit %zu accepted or not named (%s): '%s'", i, bad[i].names, err);
    }
    /* The largest accepted ones do not overflow. */
    struct tl_throttle_limit big = {TL_THROTTLE_MAX_SPAN_NS / S - 2, 1, S};
    CHECK_OK(tl_throttle_check_limit(&big, err, sizeof err));
    struct tl_throttle_result r;
    tl_throttle_step(&big, big.max_burst + 1, false, 0, TL_THROTTLE_MAX_TIME_NS, &r);
    CHECK(!r.limited && r.remaining == 0 && r.new_tat_ns > TL_THROTTLE_MAX_TIME_NS);
    tl_throttle_step(&big, 1, true, r.new_tat_ns, TL_THROTTLE_MAX_TIME_NS, &r);
    CHECK(r.limited && r.retry_after_ns == S);
    tl_throttle_step(&big, INT64_MAX, true, INT64_MAX, 0, &r);
    CHECK(r.limited && r.retry_after_ns == -1 && r.remaining == 0);
}

/* ---- the command, in a live tallyd ---------------------------------------------------------- */

static redisContext *connect_port(int port)
{
    struct timeval tv = {.tv_sec = REPLY_TIMEOUT_S};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c || c->err)
        FAIL("cannot connect to 127.0.0.1:%d: %s", port, c ? c->errstr : "out of memory");
    redisSetTimeout(c, tv);
    return c;
}

static redisReply *cmd(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (!r)
        FAIL("'%s': connection error %s", fmt, c->errstr);
    return r;
}

/* Expects a five-integer reply; a value of SKIP is not compared. */
#define SKIP INT64_MIN
static void expect_throttle(redisContext *c, const char *request, int64_t limited, int64_t limit,
                            int64_t remaining, int64_t retry, int64_t reset)
{
    redisReply *r = cmd(c, request);
    int64_t want[5] = {limited, limit, remaining, retry, reset};
    bool ok = r->type == REDIS_REPLY_ARRAY && r->elements == 5;
    for (size_t i = 0; ok && i < 5; i++)
        ok = r->element[i]->type == REDIS_REPLY_INTEGER &&
             (want[i] == SKIP || r->element[i]->integer == want[i]);
    if (!ok) {
        char got[256] = "";
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 5)
            for (size_t i = 0; i < 5; i++)
                snprintf(got + strlen(got), sizeof got - strlen(got), "%lld ",
                         r->element[i]->type == REDIS_REPLY_INTEGER ? r->element[i]->integer
                                                                    : -999);
        else
            snprintf(got, sizeof got, "type %d %s", r->type, r->str ? r->str : "");
        FAIL("%s: got [%s], expected [%" PRId64 " %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64
             "] (%" PRId64 " = any)",
             request, got, limited, limit, remaining, retry, reset, SKIP);
    }
    freeReplyObject(r);
}

static void expect_error(redisContext *c, const char *request, const char *want)
{
    redisReply *r = cmd(c, request);
    if (r->type != REDIS_REPLY_ERROR || strstr(r->str, want) == NULL)
        FAIL("%s: got type %d '%s', expected an error with '%s'", request, r->type,
             r->str ? r->str : "", want);
    freeReplyObject(r);
}

static long long expect_int(redisContext *c, const char *request)
{
    redisReply *r = cmd(c, request);
    if (r->type != REDIS_REPLY_INTEGER)
        FAIL("%s: got type %d '%s', expected an integer", request, r->type, r->str ? r->str : "");
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_command(redisContext *c)
{
    /* redis-cell's example: 30 per 60 s in bursts of 16. */
    expect_throttle(c, "CL.THROTTLE user123 15 30 60", 0, 16, 15, -1, 2);
    expect_throttle(c, "cl.throttle user123 15 30 60 1", 0, 16, 14, -1, 4);
    /* A burst of 5 at 1 per minute: the sixth is limited for a minute. */
    for (int i = 0; i < 5; i++)
        expect_throttle(c, "CL.THROTTLE burst 4 1 60", 0, 5, 4 - i, -1, 60 * (i + 1));
    expect_throttle(c, "CL.THROTTLE burst 4 1 60", 1, 5, 0, 60, 300);
    expect_throttle(c, "CL.THROTTLE burst 4 1 60 0", 0, 5, 0, -1, 300); /* a look */
    /* Quantity: 10 per second, burst 10. */
    expect_throttle(c, "CL.THROTTLE q 9 10 1 7", 0, 10, 3, -1, 1);
    expect_throttle(c, "CL.THROTTLE q 9 10 1 4", 1, 10, 3, 1, 1);
    expect_throttle(c, "CL.THROTTLE q 9 10 1 11", 1, 10, 3, -1, 1); /* over the limit: never */
    /* Quantity 0 on a new key creates nothing. */
    expect_throttle(c, "CL.THROTTLE peek 3 1 60 0", 0, 4, 4, -1, 0);
    if (expect_int(c, "EXISTS peek") != 0)
        FAIL("CL.THROTTLE with quantity 0 created its key");
    /* A limiter's key is an ordinary key with a TTL up to its TAT. */
    long long pttl = expect_int(c, "PTTL burst");
    if (pttl < 299000 || pttl > 300001) /* the TAT rounded up to the millisecond */
        FAIL("PTTL of a limiter 300 s from full: %lld", pttl);

    /* WRONGTYPE against a string (and an integer) key. */
    redisReply *r = cmd(c, "SET str hello");
    freeReplyObject(r);
    r = cmd(c, "SET num 12");
    freeReplyObject(r);
    expect_error(c, "CL.THROTTLE str 1 1 1", TL_WRONGTYPE_ERR);
    expect_error(c, "CL.THROTTLE num 1 1 1", TL_WRONGTYPE_ERR);

    /* Each bad argument is named. */
    expect_error(c, "CL.THROTTLE k x 1 1", "max_burst is not an integer");
    expect_error(c, "CL.THROTTLE k 1 1.5 1", "count_per_period is not an integer");
    expect_error(c, "CL.THROTTLE k 1 1 1s", "period is not an integer");
    expect_error(c, "CL.THROTTLE k 1 1 1 q", "quantity is not an integer");
    expect_error(c, "CL.THROTTLE k -1 1 1", "max_burst must be 0 or more (got -1)");
    expect_error(c, "CL.THROTTLE k 1 0 1", "count_per_period must be 1 or more (got 0)");
    expect_error(c, "CL.THROTTLE k 1 1 0", "period must be from 1 to");
    expect_error(c, "CL.THROTTLE k 1 1 -3", "(got -3)");
    expect_error(c, "CL.THROTTLE k 1 1 99999999999", "period must be from 1 to");
    expect_error(c, "CL.THROTTLE k 1 1 1 -2", "quantity must be 0 or more (got -2)");
    expect_error(c, "CL.THROTTLE k 1 2000000000 1", "more than one per nanosecond");
    expect_error(c, "CL.THROTTLE k 9000000000000000000 1 1", "max_burst");
    expect_error(c, "CL.THROTTLE k 1 1", "ERR wrong number of arguments for 'cl.throttle'");
    expect_error(c, "CL.THROTTLE k 1 1 1 1 1", "ERR wrong number of arguments for 'cl.throttle'");
    if (expect_int(c, "EXISTS k") != 0)
        FAIL("a refused CL.THROTTLE created its key");

    /* 20 per second, no burst: the key lives 50 ms, then the limiter is full again. */
    expect_throttle(c, "CL.THROTTLE idle 0 20 1", 0, 1, 0, -1, 1);
    pttl = expect_int(c, "PTTL idle");
    if (pttl < 0 || pttl > 51) /* the expiry is the TAT rounded up to the millisecond */
        FAIL("PTTL of a limiter 50 ms from full: %lld", pttl);
    int64_t start = mono_ms();
    while (expect_int(c, "EXISTS idle") != 0) {
        if (mono_ms() - start > EXPIRY_POLL_MS)
            FAIL("an idle limiter's key is still there after %d ms", EXPIRY_POLL_MS);
        struct timespec ts = {0, 5 * 1000000};
        nanosleep(&ts, NULL);
    }
    expect_throttle(c, "CL.THROTTLE idle 0 20 1", 0, 1, 0, -1, 1);
}

static void test_restart(const char *tmp)
{
    struct test_server s;
    srv_init(&s, tmp, "restart");
    srv_start(&s);
    redisContext *c = connect_port(s.port);
    for (int i = 0; i < 3; i++)
        expect_throttle(c, "CL.THROTTLE hourly 2 1 3600", 0, 3, 2 - i, -1, 3600 * (i + 1));
    redisFree(c);
    int st = srv_stop_with(&s, SIGTERM);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        FAIL("tallyd did not exit with status 0 on SIGTERM (wait status %d)", st);
    srv_start(&s);
    c = connect_port(s.port);
    /* The seconds are rounded up: 3600 s less the time the restart took. */
    expect_throttle(c, "CL.THROTTLE hourly 2 1 3600", 1, 3, 0, SKIP, SKIP);
    redisReply *r = cmd(c, "CL.THROTTLE hourly 2 1 3600 0");
    int64_t retry = r->element[3]->integer, reset = r->element[4]->integer;
    freeReplyObject(r);
    if (retry != -1 || reset < 10800 - 60 || reset > 10800)
        FAIL("after a restart: retry %" PRId64 " reset %" PRId64 ", expected -1 and about 10800",
             retry, reset);
    redisFree(c);
    srv_stop_with(&s, SIGTERM);
}

int main(void)
{
    const char *env = getenv("TALLY_SEED");
    uint64_t seed = env && *env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
    printf("seed %" PRIu64 "\n", seed);
    fflush(stdout);
    test_known_sequences();
    test_high_rates();
    test_rounding_and_bounds();
    test_random(seed);
    printf("GCRA core: %d random limits x %d steps agree with the token bucket\n", RANDOM_LIMITS,
           RANDOM_STEPS);
    fflush(stdout);

    if (srv_is_redis()) {
        printf("SKIP: CL.THROTTLE is not a redis-server command\n");
        return TEST_SKIP;
    }
    test_require_uring();
    srv_setup(TEST_ALARM_S);
    char *tmp = test_tmpdir("throttle");
    struct test_server srv;
    srv_init(&srv, tmp, "main");
    srv_start(&srv);
    redisContext *c = connect_port(srv.port);
    test_command(c);
    redisFree(c);
    srv_stop_with(&srv, SIGTERM);
    test_restart(tmp);
    test_rmdir(tmp);
    free(tmp);
    printf("test_throttle: all checks passed\n");
    return 0;
}
