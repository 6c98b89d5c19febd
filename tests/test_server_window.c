/*
 * test_server_window.c - the windowed commands through tallyd, with hiredis:
 * - WINCRBY (AT, POLICY, GET), WGET, WRANGE on bucket-aligned times, exact;
 * - types: TYPE names, SCAN TYPE, WRONGTYPE both ways and across Tally's own types, DBSIZE
 *   counting a series as one key, DEL then a new series that does not see the old buckets;
 * - policies: default, the config file's, WPOLICY SET/GET/LIST, errors that name the bad part,
 *   a series keeping its policy when the name is redefined, stored policies after a restart;
 * - WOBSERVE/WSTATS/WQUANTILE: uniform, heavy-tailed and shifting distributions (the median
 *   moves 10x half way through), every quantile within 1% of the exact one for the window, the
 *   old distribution gone once the window has slid past it;
 * - WPFADD/WPFCOUNT per window within 2%;
 * - limits: writes older than the longest retention, bad windows, bad quantiles;
 * - data kept across a restart.
 * TALLY_SEED replays the random parts.
 */
#define _GNU_SOURCE
#include <hiredis/hiredis.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "server_harness.h"
#include "testutil.h"

#define MIN_MS  60000LL
#define HOUR_MS 3600000LL
#define DAY_MS  86400000LL

static redisContext *g_c;

static redisReply *cmd(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(g_c, fmt, ap);
    va_end(ap);
    if (!r) {
        fprintf(stderr, "connection error: %s (command %s)\n", g_c->errstr, fmt);
        exit(1);
    }
    return r;
}

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                            \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        exit(1);                                                                                   \
    } while (0)

static void expect_int(long long want, redisReply *r, const char *what)
{
    if (r->type != REDIS_REPLY_INTEGER || r->integer != want)
        FAIL("%s: want %lld, got type %d int %lld str %s", what, want, r->type, r->integer,
             r->str ? r->str : "");
    freeReplyObject(r);
}

static void expect_error(const char *prefix, const char *contains, redisReply *r, const char *what)
{
    if (r->type != REDIS_REPLY_ERROR || strncmp(r->str, prefix, strlen(prefix)) != 0 ||
        (contains && !strstr(r->str, contains)))
        FAIL("%s: want an error '%s...%s', got type %d '%s'", what, prefix,
             contains ? contains : "", r->type, r->str ? r->str : "");
    freeReplyObject(r);
}

static void expect_status(const char *want, redisReply *r, const char *what)
{
    if (r->type != REDIS_REPLY_STATUS || strcmp(r->str, want) != 0)
        FAIL("%s: want +%s, got type %d '%s'", what, want, r->type, r->str ? r->str : "");
    freeReplyObject(r);
}

/* An array of integers. */
static void expect_ints(redisReply *r, const long long *want, size_t n, const char *what)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != n)
        FAIL("%s: want an array of %zu, got type %d (%zu elements) %s", what, n, r->type,
             r->elements, r->str ? r->str : "");
    for (size_t i = 0; i < n; i++)
        if (r->element[i]->type != REDIS_REPLY_INTEGER || r->element[i]->integer != want[i])
            FAIL("%s: element %zu is %lld, want %lld", what, i, r->element[i]->integer, want[i]);
    freeReplyObject(r);
}

static long long now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void test_counters(void)
{
    /* Times on bucket boundaries within the last three hours, so every resolution holds them. */
    long long base = (now_ms() - 2 * HOUR_MS) / HOUR_MS * HOUR_MS;
    expect_int(5, cmd("WINCRBY c 5 AT %lld", base), "first increment");
    expect_int(8, cmd("WINCRBY c 3 AT %lld", base + 30000), "same minute");
    expect_int(1, cmd("WINCRBY c 1 AT %lld", base + MIN_MS), "next minute");
    expect_int(10, cmd("WINCRBY c 10 AT %lld", base + 59 * MIN_MS), "end of the hour");
    long long t = base + 59 * MIN_MS + 1000;
    /* Windows ending at t: 1m holds the last bucket, 2m misses base+58m (empty), 1h all. */
    long long want1[] = {10, 10, 19, 19};
    expect_ints(cmd("WGET c 1m 2m 1h 1d AT %lld", t), want1, 4, "WGET AT");
    long long want2[] = {11, 20};
    expect_ints(cmd("WINCRBY c 1 AT %lld GET 1m 3h", t), want2, 2, "WINCRBY GET");
    long long want3[] = {base, 8, base + MIN_MS, 1, base + 59 * MIN_MS, 11};
    expect_ints(cmd("WRANGE c %lld %lld", base, base + HOUR_MS - 1), want3, 6, "WRANGE");
    long long want4[] = {base, 20};
    expect_ints(cmd("WRANGE c %lld %lld RES 1h", base, base + HOUR_MS - 1), want4, 2,
                "WRANGE RES 1h");
    expect_error("ERR the series has no resolution of 5m", "1m:3h,1h:8d,1d:400d",
                 cmd("WRANGE c 0 1 RES 5m"), "WRANGE bad RES");
    long long zeros[] = {0, 0};
    expect_ints(cmd("WGET missing 1m 1h"), zeros, 2, "WGET of a missing key");
    expect_int(-3, cmd("WINCRBY neg -3"), "negative delta");

    /* Limits and bad arguments. */
    expect_error("ERR timestamp", "longest retention (400d", cmd("WINCRBY c 1 AT 1000"), "too old");
    expect_error("ERR timestamp", "longest retention (400d", cmd("WINCRBY never 1 AT 1000"),
                 "too old for a new series");
    expect_int(0, cmd("EXISTS never"), "a refused write creates no series");
    expect_error("ERR invalid window 'xyz'", NULL, cmd("WGET c xyz"), "bad window");
    expect_error("ERR invalid window '0s'", NULL, cmd("WGET c 0s"), "zero window");
    expect_error("ERR value is not an integer", NULL, cmd("WINCRBY c abc"), "bad delta");
    expect_error("ERR AT needs", NULL, cmd("WINCRBY c 1 AT -5"), "bad AT");
    expect_error("ERR syntax error", NULL, cmd("WINCRBY c 1 FOO 1"), "unknown option");
    expect_error("ERR GET takes", NULL, cmd("WINCRBY c 1 GET"), "GET without windows");
    expect_error("ERR no window policy named 'nope'", "WPOLICY LIST",
                 cmd("WINCRBY fresh 1 POLICY nope"), "unknown policy");
    expect_error("ERR wrong number of arguments", NULL, cmd("WINCRBY c"), "arity");
}

/* A series' key: its automatic expiry renewed by later writes, a user's PERSIST kept; the
 * head's buckets hidden by WRANGE once past retention, as stored ones are; a late write that
 * would overflow its bucket refused before anything is merged. */
static void test_lifetime(void)
{
    long long t = now_ms();
    expect_int(1, cmd("WINCRBY life 1 POLICY fromconf AT %lld", t - 30 * MIN_MS), "old write");
    redisReply *ttl = cmd("TTL life");
    if (ttl->integer > 31 * 60 + 5 || ttl->integer < 30 * 60)
        FAIL("TTL after a write 30 minutes old: %lld, want about 31 minutes", ttl->integer);
    freeReplyObject(ttl);
    expect_int(1, cmd("WINCRBY life 1"), "write now");
    ttl = cmd("TTL life");
    if (ttl->integer < 60 * 60)
        FAIL("a write now did not renew the automatic expiry: TTL %lld", ttl->integer);
    freeReplyObject(ttl);
    expect_int(1, cmd("PERSIST life"), "PERSIST");
    expect_int(2, cmd("WINCRBY life 1"), "write after PERSIST");
    expect_int(-1, cmd("TTL life"), "PERSIST kept by a write");

    /* Two 1 s buckets one second from the end of the 1 m retention, in the head. */
    t = now_ms() / 1000 * 1000;
    expect_int(1, cmd("WINCRBY edge 1 POLICY fromconf AT %lld", t - 59000), "edge bucket");
    expect_int(1, cmd("WINCRBY edge 1 AT %lld", t - 58000), "next edge bucket");
    long long want[] = {t - 59000, 1, t - 58000, 1};
    expect_ints(cmd("WRANGE edge %lld %lld RES 1s", t - 120000, t), want, 4, "held buckets");
    usleep(2500 * 1000);
    expect_ints(cmd("WRANGE edge %lld %lld RES 1s", t - 120000, t), NULL, 0,
                "the head's buckets past retention");
    redisReply *r = cmd("WRANGE edge %lld %lld RES 1m", t - 120000, t);
    if (r->type != REDIS_REPLY_ARRAY || (r->elements != 2 && r->elements != 4))
        FAIL("the 1m buckets should still hold both writes");
    freeReplyObject(r);

    long long b = (now_ms() - HOUR_MS) / HOUR_MS * HOUR_MS;
    expect_int(INT64_MAX, cmd("WINCRBY big %lld AT %lld", (long long)INT64_MAX, b), "max");
    expect_int(-1, cmd("WINCRBY big -1 AT %lld", b + MIN_MS), "next minute");
    expect_error("ERR increment or decrement would overflow", NULL, cmd("WINCRBY big 1 AT %lld", b),
                 "late write past int64");
    long long after[] = {b, INT64_MAX, b + MIN_MS, -1};
    expect_ints(cmd("WRANGE big %lld %lld", b, b + 2 * MIN_MS - 1), after, 4,
                "the refused late write merged nothing");

    /* A write to the head whose new minute bucket fits but whose hour bucket would overflow:
     * refused whole, no resolution changed. */
    expect_int(INT64_MAX, cmd("WINCRBY hov %lld AT %lld", (long long)INT64_MAX, b), "max");
    expect_error("ERR increment or decrement would overflow", NULL,
                 cmd("WINCRBY hov 1 AT %lld", b + MIN_MS), "hour bucket past int64");
    long long held[] = {b, INT64_MAX};
    expect_ints(cmd("WRANGE hov %lld %lld", b, b + 2 * MIN_MS - 1), held, 2,
                "the refused write left no new minute bucket");
    expect_ints(cmd("WRANGE hov %lld %lld RES 1h", b, b + HOUR_MS - 1), held, 2,
                "the refused write left the hour bucket as it was");
}

/* Every new series draws a generation that keys its stored buckets: many series created
 * together (pipelined, on one worker thread) must not share one, or their stored buckets would
 * be one another's. Three writes a minute apart push each series' first minute out of its head
 * into a stored bucket, which WRANGE then reads back. */
static void test_generations(void)
{
    enum { N = 3000 };
    long long b = (now_ms() - HOUR_MS) / MIN_MS * MIN_MS;
    for (int step = 0; step < 3; step++) {
        for (int i = 0; i < N; i++)
            redisAppendCommand(g_c, "WINCRBY gen:%d %d AT %lld", i, step == 0 ? i + 1 : 1,
                               b + step * MIN_MS);
        for (int i = 0; i < N; i++) {
            void *rv;
            if (redisGetReply(g_c, &rv) != REDIS_OK)
                FAIL("pipeline: %s", g_c->errstr);
            expect_int(step == 0 ? i + 1 : 1, rv, "a pipelined write of a new series");
        }
    }
    for (int i = 0; i < N; i++)
        redisAppendCommand(g_c, "WRANGE gen:%d %lld %lld", i, b, b + MIN_MS - 1);
    for (int i = 0; i < N; i++) {
        void *rv;
        if (redisGetReply(g_c, &rv) != REDIS_OK)
            FAIL("pipeline: %s", g_c->errstr);
        long long want[] = {b, i + 1};
        expect_ints(rv, want, 2, "a series' stored bucket holds its own writes only");
    }
    for (int i = 0; i < N; i++)
        redisAppendCommand(g_c, "DEL gen:%d", i);
    for (int i = 0; i < N; i++) {
        void *rv;
        if (redisGetReply(g_c, &rv) != REDIS_OK)
            FAIL("pipeline: %s", g_c->errstr);
        expect_int(1, rv, "DEL of a series");
    }
}

static void test_types(void)
{
    expect_status("OK", cmd("SET str hello"), "SET");
    expect_int(1, cmd("WINCRBY w 1"), "WINCRBY");
    expect_status("OK", cmd("WOBSERVE o 1.5"), "WOBSERVE");
    expect_int(1, cmd("WPFADD h a b"), "WPFADD");
    expect_status("window", cmd("TYPE w"), "TYPE window");
    expect_status("window-sketch", cmd("TYPE o"), "TYPE sketch");
    expect_status("window-hll", cmd("TYPE h"), "TYPE hll");
    expect_status("string", cmd("TYPE str"), "TYPE string");
    static const char wt[] = "WRONGTYPE Operation against a key holding the wrong kind of value";
    const char *string_cmds[] = {"GET w",      "INCR w",        "INCRBYFLOAT w 1", "APPEND w x",
                                 "STRLEN w",   "GETDEL w",      "GETEX w",         "SET w x GET",
                                 "PFADD w a",  "PFCOUNT w",     "INCREX w",        "DECRBY w 2",
                                 "GETSET w x", "GETRANGE w 0 1"};
    for (size_t i = 0; i < sizeof string_cmds / sizeof string_cmds[0]; i++) {
        redisReply *r = cmd(string_cmds[i]);
        /* GETRANGE may not exist; every other must answer WRONGTYPE. */
        if (r->type == REDIS_REPLY_ERROR && strstr(r->str, "unknown command")) {
            freeReplyObject(r);
            continue;
        }
        expect_error(wt, NULL, r, string_cmds[i]);
    }
    const char *window_cmds[] = {"WINCRBY str 1",  "WGET str 1m",    "WRANGE str 0 1",
                                 "WOBSERVE w 1",   "WSTATS w 1m",    "WQUANTILE h 1m 0.5",
                                 "WPFADD o x",     "WPFCOUNT w 1m",  "WINCRBY o 1",
                                 "WOBSERVE str 1", "WPFCOUNT str 1h"};
    for (size_t i = 0; i < sizeof window_cmds / sizeof window_cmds[0]; i++)
        expect_error(wt, NULL, cmd(window_cmds[i]), window_cmds[i]);
    /* MGET reads another type as missing, as Redis does. */
    redisReply *r = cmd("MGET str w");
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[1]->type != REDIS_REPLY_NIL)
        FAIL("MGET of a series should give nil");
    freeReplyObject(r);
    /* SET replaces any type, as in Redis. */
    expect_int(1, cmd("WINCRBY replaced 1"), "series to replace");
    expect_status("OK", cmd("SET replaced v"), "SET over a series");
    expect_status("string", cmd("TYPE replaced"), "replaced type");

    /* SCAN TYPE and the key count see one key per series. */
    r = cmd("SCAN 0 TYPE window COUNT 1000");
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2)
        FAIL("SCAN reply");
    bool saw_w = false;
    for (size_t i = 0; i < r->element[1]->elements; i++) {
        const char *k = r->element[1]->element[i]->str;
        if (strcmp(k, "w") == 0)
            saw_w = true;
        if (strcmp(k, "str") == 0 || strcmp(k, "o") == 0)
            FAIL("SCAN TYPE window returned %s", k);
    }
    if (!saw_w)
        FAIL("SCAN TYPE window missed w");
    freeReplyObject(r);
    r = cmd("SCAN 0 TYPE window-sketch");
    if (r->element[1]->elements != 1 || strcmp(r->element[1]->element[0]->str, "o") != 0)
        FAIL("SCAN TYPE window-sketch");
    freeReplyObject(r);
    expect_int(1, cmd("EXISTS w"), "EXISTS series");

    /* DEL, then a new series under the name starts from nothing. */
    expect_int(1, cmd("DEL w"), "DEL series");
    expect_int(0, cmd("EXISTS w"), "EXISTS after DEL");
    expect_int(1, cmd("WINCRBY w 1"), "new series after DEL");
    long long one[] = {1};
    expect_ints(cmd("WGET w 1h"), one, 1, "new series sees no old buckets");

    /* EXPIRE and TTL on a series: a user's expiry is kept by later writes. */
    redisReply *ttl = cmd("TTL w");
    if (ttl->type != REDIS_REPLY_INTEGER || ttl->integer < 400LL * 86400)
        FAIL("a series' automatic TTL should cover its retention, got %lld", ttl->integer);
    freeReplyObject(ttl);
    expect_int(1, cmd("EXPIRE w 100"), "EXPIRE series");
    expect_int(2, cmd("WINCRBY w 1"), "write after EXPIRE");
    ttl = cmd("TTL w");
    if (ttl->integer > 100 || ttl->integer < 90)
        FAIL("a user's EXPIRE was not kept by a write: TTL %lld", ttl->integer);
    freeReplyObject(ttl);

    r = cmd("INFO types");
    if (r->type != REDIS_REPLY_STRING || !strstr(r->str, "keys_window_sketch:1\r\n") ||
        !strstr(r->str, "keys_window_hll:1\r\n") || !strstr(r->str, "window_policies:"))
        FAIL("INFO types does not count the series: %s", r->str ? r->str : "?");
    freeReplyObject(r);
    r = cmd("DBSIZE");
    long long keys = r->integer;
    freeReplyObject(r);
    /* str w o h replaced neg c fresh?: count exactly what this test made. */
    r = cmd("KEYS *");
    if ((long long)r->elements != keys)
        FAIL("DBSIZE %lld but KEYS lists %zu: buckets must not count as keys", keys, r->elements);
    freeReplyObject(r);
}

static void test_policies(void)
{
    redisReply *r = cmd("WPOLICY GET default");
    if (r->type != REDIS_REPLY_STRING || strcmp(r->str, "1m:3h,1h:8d,1d:400d") != 0)
        FAIL("default policy: %s", r->str ? r->str : "?");
    freeReplyObject(r);
    r = cmd("WPOLICY GET fromconf");
    if (r->type != REDIS_REPLY_STRING || strcmp(r->str, "1s:1m,1m:1h") != 0)
        FAIL("config file policy: %s", r->str ? r->str : "(nil)");
    freeReplyObject(r);
    expect_status("OK", cmd("WPOLICY SET fast 10s:10m,1m:2h"), "WPOLICY SET");
    expect_error("ERR invalid window policy: pair 2 ('1m:5m')",
                 "longer than the previous pair's 10m", cmd("WPOLICY SET bad 10s:10m,1m:5m"),
                 "bad spec");
    expect_error("ERR invalid policy name", NULL, cmd("WPOLICY SET %s 1m:1h", "a b"), "bad name");
    r = cmd("WPOLICY GET nope");
    if (r->type != REDIS_REPLY_NIL)
        FAIL("WPOLICY GET of an unknown name should be nil");
    freeReplyObject(r);
    long long t = now_ms() / MIN_MS * MIN_MS;
    expect_int(4, cmd("WINCRBY pf 4 POLICY fast AT %lld", t), "series with a named policy");
    /* Redefine the name: the series keeps what it was created with. */
    expect_status("OK", cmd("WPOLICY SET fast 1m:1h"), "redefine");
    long long want[] = {t, 4};
    expect_ints(cmd("WRANGE pf %lld %lld RES 10s", t, t), want, 2, "series keeps its policy");
    r = cmd("WPOLICY LIST");
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 6)
        FAIL("WPOLICY LIST");
    bool fast = false;
    for (size_t i = 0; i + 1 < r->elements; i += 2)
        if (strcmp(r->element[i]->str, "fast") == 0 && strcmp(r->element[i + 1]->str, "1m:1h") == 0)
            fast = true;
    if (!fast)
        FAIL("WPOLICY LIST lacks fast 1m:1h");
    freeReplyObject(r);
}

/* ---- quantiles ---------------------------------------------------------------------------- */

static uint64_t g_rs;

static double uniform01(void)
{
    return ((double)(test_rand(&g_rs) >> 11) + 0.5) / 9007199254740992.0;
}

static double normal(void)
{
    return sqrt(-2 * log(uniform01())) * cos(2 * M_PI * uniform01());
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Checks WQUANTILE of key over [start, end] (start on a minute) against the values observed at
 * times in it. */
static void check_quantiles(const char *key, const double *vals, const long long *times, size_t n,
                            long long start, long long end, const char *what)
{
    double *in = malloc(n * sizeof *in);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (times[i] >= start && times[i] <= end)
            in[m++] = vals[i];
    if (m < 100)
        FAIL("%s: only %zu values in the window", what, m);
    qsort(in, m, sizeof *in, cmp_double);
    static const double qs[] = {0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1};
    size_t nq = sizeof qs / sizeof qs[0];
    redisReply *r = cmd("WQUANTILE %s %lldms 0 0.01 0.1 0.25 0.5 0.75 0.9 0.99 0.999 1 AT %lld",
                        key, end - start, end);
    if (r->type != REDIS_REPLY_ARRAY || r->elements != nq)
        FAIL("%s: WQUANTILE reply type %d %s", what, r->type, r->str ? r->str : "");
    for (size_t i = 0; i < nq; i++) {
        double exact = in[(size_t)floor(qs[i] * (double)(m - 1))];
        double got = strtod(r->element[i]->str, NULL);
        if (fabs(got - exact) > 0.01 * fabs(exact) + 1e-12)
            FAIL("%s: q=%g got %.17g, exact %.17g (%zu values)", what, qs[i], got, exact, m);
    }
    freeReplyObject(r);
    r = cmd("WSTATS %s %lldms AT %lld", key, end - start, end);
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 5 || r->element[0]->integer != (long long)m)
        FAIL("%s: WSTATS count %lld, want %zu", what, r->element[0]->integer, m);
    double sum = 0;
    for (size_t i = 0; i < m; i++)
        sum += in[i];
    double got_sum = strtod(r->element[1]->str, NULL);
    if (fabs(got_sum - sum) > 1e-9 * fabs(sum) || strtod(r->element[2]->str, NULL) != in[0] ||
        strtod(r->element[3]->str, NULL) != in[m - 1])
        FAIL("%s: WSTATS sum/min/max %s %s %s, want %.17g %.17g %.17g", what, r->element[1]->str,
             r->element[2]->str, r->element[3]->str, sum, in[0], in[m - 1]);
    freeReplyObject(r);
    free(in);
}

static void test_quantiles(void)
{
    /* Two hours of observations, one a second, ending a little before now. */
    enum { N = 7200 };
    long long end = now_ms() / MIN_MS * MIN_MS - 1;
    long long start = end + 1 - N * 1000LL;
    static double vals[3][N];
    static long long times[N];
    const char *keys[3] = {"q:uniform", "q:pareto", "q:shift"};
    for (int i = 0; i < N; i++) {
        times[i] = start + i * 1000LL;
        vals[0][i] = 1 + 999 * uniform01();
        vals[1][i] = pow(uniform01(), -1 / 1.2); /* Pareto, alpha 1.2 */
        double median = i < N / 2 ? 100 : 1000;  /* the median moves 10x half way */
        vals[2][i] = median * exp(0.5 * normal());
    }
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < N; i += 400) {
            for (int j = i; j < i + 400; j++) {
                char v[40];
                snprintf(v, sizeof v, "%.17g", vals[k][j]);
                redisAppendCommand(g_c, "WOBSERVE %s %s AT %lld", keys[k], v, times[j]);
            }
            for (int j = i; j < i + 400; j++) {
                void *rv;
                if (redisGetReply(g_c, &rv) != REDIS_OK)
                    FAIL("pipeline: %s", g_c->errstr);
                redisReply *r = rv;
                if (r->type != REDIS_REPLY_STATUS)
                    FAIL("WOBSERVE %s value %.17g at %lld: %s", keys[k], vals[k][j], times[j],
                         r->str ? r->str : "?");
                freeReplyObject(r);
            }
        }
    }
    /* Windows on minute boundaries: whole windows, the last half hour, the first hour. */
    for (int k = 0; k < 3; k++) {
        check_quantiles(keys[k], vals[k], times, N, start, end, keys[k]);
        check_quantiles(keys[k], vals[k], times, N, end + 1 - 30 * MIN_MS, end, keys[k]);
        check_quantiles(keys[k], vals[k], times, N, start, start + HOUR_MS - 1, keys[k]);
    }
    /* The shifting distribution: the last half hour holds only the new one (median ~1000). */
    redisReply *r = cmd("WQUANTILE q:shift 30m 0.5 AT %lld", end);
    double med = strtod(r->element[0]->str, NULL);
    if (med < 700 || med > 1400)
        FAIL("after the shift the median should be near 1000, got %g", med);
    freeReplyObject(r);
    /* An empty window: nils; a bad quantile: an error. */
    r = cmd("WQUANTILE q:uniform 1m 0.5 AT %lld", start - HOUR_MS);
    if (r->type != REDIS_REPLY_ARRAY || r->element[0]->type != REDIS_REPLY_NIL)
        FAIL("WQUANTILE of an empty window should be nil");
    freeReplyObject(r);
    expect_error("ERR quantile '1.5'", NULL, cmd("WQUANTILE q:uniform 1m 1.5"), "bad quantile");
    expect_error("ERR the observation is not a finite double", NULL, cmd("WOBSERVE q:x inf"),
                 "infinite observation");
}

static void test_distinct(void)
{
    long long end = now_ms() / MIN_MS * MIN_MS - 1;
    long long start = end + 1 - HOUR_MS;
    /* 20,000 distinct elements over the hour, in batches of 100. */
    for (int i = 0; i < 20000; i += 100) {
        long long at = start + (long long)i * (HOUR_MS / 20000);
        char *argv[104];
        size_t lens[104];
        char bufs[100][24];
        argv[0] = "WPFADD";
        argv[1] = "d";
        for (int j = 0; j < 100; j++) {
            snprintf(bufs[j], sizeof bufs[j], "user:%d", i + j);
            argv[2 + j] = bufs[j];
        }
        char atbuf[32];
        snprintf(atbuf, sizeof atbuf, "%lld", at);
        argv[102] = "AT";
        argv[103] = atbuf;
        for (int j = 0; j < 104; j++)
            lens[j] = strlen(argv[j]);
        redisReply *r = redisCommandArgv(g_c, 104, (const char **)argv, lens);
        if (!r || r->type != REDIS_REPLY_INTEGER)
            FAIL("WPFADD: %s", r && r->str ? r->str : "?");
        freeReplyObject(r);
    }
    static const long long windows[] = {60, 10, 30, 1}; /* minutes, on minute boundaries */
    for (size_t w = 0; w < sizeof windows / sizeof windows[0]; w++) {
        long long from = end + 1 - windows[w] * MIN_MS;
        double want = 0;
        for (int i = 0; i < 20000; i += 100)
            if (start + (long long)i * (HOUR_MS / 20000) >= from)
                want += 100;
        redisReply *r = cmd("WPFCOUNT d %lldm AT %lld", windows[w], end);
        double got = (double)r->integer;
        if (r->type != REDIS_REPLY_INTEGER || fabs(got - want) > 0.02 * want)
            FAIL("WPFCOUNT %lldm: %lld, want about %.0f", windows[w], r->integer, want);
        freeReplyObject(r);
    }
    expect_int(0, cmd("WPFCOUNT nothing 1h"), "WPFCOUNT of a missing key");
    expect_int(0, cmd("WPFADD d user:19950 AT %lld", end), "WPFADD of an element already there");
    expect_int(1, cmd("WPFADD d user:19950"), "WPFADD into a new bucket");
}

int main(void)
{
    srv_setup(300);
    const char *env = getenv("TALLY_SEED");
    g_rs = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL);
    printf("seed %llu (TALLY_SEED replays)\n", (unsigned long long)g_rs);
    if (srv_is_redis()) {
        printf("SKIP: Tally's own commands\n");
        return 77;
    }
    char *tmp = test_tmpdir("srv-window");
    char conf[4200];
    snprintf(conf, sizeof conf, "%s/tally.conf", tmp);
    FILE *f = fopen(conf, "w");
    if (!f)
        FAIL("cannot write %s", conf);
    fprintf(f, "window-policy fromconf 1s:1m,1m:1h\n");
    fclose(f);
    struct test_server s;
    srv_init(&s, tmp, "data");
    srv_add_opt(&s, "config", conf);
    srv_start(&s);
    struct timeval tv = {.tv_sec = 10};
    g_c = redisConnectWithTimeout("127.0.0.1", s.port, tv);
    if (!g_c || g_c->err)
        FAIL("connect");
    redisSetTimeout(g_c, tv);

    test_counters();
    test_lifetime();
    test_generations();
    test_types();
    test_policies();
    test_quantiles();
    test_distinct();

    /* The policy table is bounded (1024): a SET past it is refused and stores nothing, so the
     * restart below still opens. */
    int refused = 0;
    for (int i = 0; i < 1030; i++)
        redisAppendCommand(g_c, "WPOLICY SET bulk%d 1m:1h", i);
    for (int i = 0; i < 1030; i++) {
        void *rv;
        if (redisGetReply(g_c, &rv) != REDIS_OK)
            FAIL("pipeline: %s", g_c->errstr);
        redisReply *r = rv;
        if (r->type == REDIS_REPLY_ERROR) {
            if (!strstr(r->str, "too many window policies (the limit is 1024)"))
                FAIL("WPOLICY SET past the limit: %s", r->str);
            refused++;
        }
        freeReplyObject(r);
    }
    if (refused < 6)
        FAIL("only %d of 1030 WPOLICY SETs were refused", refused);
    /* FLUSHALL drops every key, not the policies WPOLICY SET stored. */
    expect_status("OK", cmd("FLUSHALL"), "FLUSHALL");
    expect_int(0, cmd("EXISTS d"), "FLUSHALL dropped the series");
    /* A restart keeps the series, their policies and the stored policy definitions. */
    long long t = now_ms();
    expect_int(7, cmd("WINCRBY keep 7 AT %lld", t), "before restart");
    redisFree(g_c);
    srv_stop_with(&s, SIGTERM);
    srv_start(&s);
    g_c = redisConnectWithTimeout("127.0.0.1", s.port, tv);
    redisSetTimeout(g_c, tv);
    long long seven[] = {7};
    expect_ints(cmd("WGET keep 1h AT %lld", t), seven, 1, "after restart");
    redisReply *r = cmd("WPOLICY GET fast");
    if (r->type != REDIS_REPLY_STRING || strcmp(r->str, "1m:1h") != 0)
        FAIL("a stored policy was lost in the restart");
    freeReplyObject(r);
    expect_int(1, cmd("WINCRBY again 1 POLICY fast"), "a stored policy after FLUSHALL and restart");
    redisFree(g_c);
    srv_stop_with(&s, SIGTERM);
    test_rmdir(tmp);
    free(tmp);
    printf("test_server_window: ok\n");
    return 0;
}
