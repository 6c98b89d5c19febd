/*
 * test_window.c - windowed series in the engine (storage/window.c) and typed values:
 * - durations and policies: parsing, canonical text, an error naming the bad part;
 * - the window plan: spans that join without gaps or overlaps;
 * - the head's state encodings: V2 round trips random states (none, no previous bucket, a
 *   previous bucket far back, negative values) and is shorter than V1, which still decodes;
 *   malformed bytes are refused;
 * - typed values: stored, read back with their tag, refused by incr, kept by flush, reopen and
 *   compaction;
 * - the model: random events over 30 simulated days written with their own time (AT), against
 *   a brute-force list of every event; random sliding windows, each answer within the documented
 *   bound and exact where the window's start is a multiple of the resolution used there, with
 *   flushes, compactions and restarts in between;
 * - retention: after compaction, buckets past their retention are gone (engine statistics), and
 *   once a series has not been written for longer than its policy keeps anything, it takes no
 *   space at all;
 * - the head's buckets: writes that fail between storing the previous bucket and updating the
 *   head (as a crash there would) leave every sum exact; two threads writing one series, with
 *   buckets rolling over and late writes between them, lose and double nothing.
 * TALLY_SEED replays a run.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "coding.h"
#include "testutil.h"

#define MIN_MS  60000LL
#define HOUR_MS 3600000LL
#define DAY_MS  86400000LL

static int64_t g_now;

static int64_t clock_fn(void *arg)
{
    (void)arg;
    return g_now;
}

static tl_db *open_db(const char *dir)
{
    struct tl_options o;
    tl_options_init(&o);
    o.clock_ms = clock_fn;
    o.memtable_bytes = 4u << 20; /* small: many flushes */
    o.max_value_bytes = 1u << 20;
    o.background_compaction = true;
    tl_db *db;
    CHECK_OK(tl_db_open(dir, &o, &db));
    return db;
}

static void test_durations_and_policies(void)
{
    int64_t ms;
    CHECK(tl_duration_parse("90", 2, &ms) && ms == 90000);
    CHECK(tl_duration_parse("1500ms", 6, &ms) && ms == 1500);
    CHECK(tl_duration_parse("3h", 2, &ms) && ms == 3 * HOUR_MS);
    CHECK(tl_duration_parse("2w", 2, &ms) && ms == 14 * DAY_MS);
    CHECK(!tl_duration_parse("0s", 2, &ms));
    CHECK(!tl_duration_parse("-1s", 3, &ms));
    CHECK(!tl_duration_parse("1x", 2, &ms));
    CHECK(!tl_duration_parse("h", 1, &ms));
    CHECK(!tl_duration_parse("99999999999999999999", 20, &ms));
    char buf[64];
    tl_duration_format(90000, buf, sizeof buf);
    CHECK(strcmp(buf, "90s") == 0);
    tl_duration_format(DAY_MS * 400, buf, sizeof buf);
    CHECK(strcmp(buf, "400d") == 0);

    struct tl_window_policy p;
    char err[256];
    const char *spec = "1m:3h,1h:8d,1d:400d";
    CHECK_OK(tl_window_policy_parse(spec, strlen(spec), &p, err, sizeof err));
    CHECK_EQ_INT(p.n, 3);
    CHECK_EQ_INT(p.res[1].width_ms, HOUR_MS);
    CHECK_EQ_INT(p.res[2].retention_ms, 400 * DAY_MS);
    tl_window_policy_format(&p, buf, sizeof buf);
    CHECK(strcmp(buf, spec) == 0);
    const char *spec2 = "60s:180m,3600:8d";
    CHECK_OK(tl_window_policy_parse(spec2, strlen(spec2), &p, err, sizeof err));
    tl_window_policy_format(&p, buf, sizeof buf);
    CHECK(strcmp(buf, "1m:3h,1h:8d") == 0);

    static const struct {
        const char *spec, *part, *why;
    } bad[] = {
        {"", "", "empty"},
        {"1m", "pair 1 ('1m')", "RESOLUTION:RETENTION"},
        {"1m:3h,1x:8d", "pair 2 ('1x:8d')", "resolution '1x'"},
        {"1m:3h,1h:", "pair 2 ('1h:')", "retention ''"},
        {"1h:1m", "pair 1 ('1h:1m')", "shorter than the resolution"},
        {"1m:3h,90s:8d", "pair 2 ('90s:8d')", "multiple of the previous pair's 1m"},
        {"1m:3h,1h:2h", "pair 2 ('1h:2h')", "longer than the previous pair's 3h"},
        {"1ms:1d", "pair 1 ('1ms:1d')", "buckets"},
        {"1s:1m,2s:2m,4s:4m,8s:8m,16s:16m,32s:32m,64s:64m,128s:128m,256s:256m", "more than 8",
         "pairs"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        CHECK_EQ_INT(tl_window_policy_parse(bad[i].spec, strlen(bad[i].spec), &p, err, sizeof err),
                     -EINVAL);
        if (!strstr(err, bad[i].part) || !strstr(err, bad[i].why)) {
            fprintf(stderr, "policy '%s': message '%s' lacks '%s' or '%s'\n", bad[i].spec, err,
                    bad[i].part, bad[i].why);
            exit(1);
        }
    }
}

static void check_plans(const char *spec);

/* The spans of every plan join: each one ends where the previous (newer) one starts. */
static void test_plan(void)
{
    /* The default, and one whose middle resolution is passed over for windows reaching past
     * it (its retention is shorter than the next resolution's width). */
    static const char *const specs[] = {"1m:3h,1h:8d,1d:400d", "1m:1h,1h:2h,1d:30d"};
    for (size_t sp = 0; sp < sizeof specs / sizeof specs[0]; sp++)
        check_plans(specs[sp]);
}

static void check_plans(const char *spec)
{
    struct tl_window_policy p;
    char err[256];
    CHECK_OK(tl_window_policy_parse(spec, strlen(spec), &p, err, sizeof err));
    uint64_t rs = 7;
    for (int i = 0; i < 100000; i++) {
        int64_t now = 1700000000000LL + (int64_t)(test_rand(&rs) % (30 * DAY_MS));
        int64_t end = now - (int64_t)(test_rand(&rs) % (10 * DAY_MS));
        int64_t w = 1 + (int64_t)(test_rand(&rs) % (420 * DAY_MS));
        struct tl_window_span s[TL_WINDOW_MAX_RES];
        int n = tl_window_plan(&p, now, end, w, s);
        CHECK(n >= 0 && n <= 3);
        for (int k = 0; k < n; k++) {
            int64_t width = p.res[s[k].res].width_ms;
            CHECK(s[k].from_ms < s[k].to_ms);
            CHECK(s[k].from_ms % width == 0);
            CHECK(s[k].from_ms >= end - w);
            CHECK(s[k].from_ms >= now - p.res[s[k].res].retention_ms);
            /* The newest span reaches the bucket holding end; each coarser one ends on its own
             * bucket boundary exactly where the finer one begins: no time counted twice. */
            if (k == 0)
                CHECK(s[k].to_ms == end + 1 ||
                      (s[k].to_ms > end && s[k].to_ms % width == 0 && s[k].to_ms - width <= end));
            else
                CHECK(s[k].to_ms == s[k - 1].from_ms && s[k].res > s[k - 1].res &&
                      s[k].to_ms % width == 0);
        }
    }
}

static bool live_equal(const struct tl_window_live *a, const struct tl_window_live *b, int n)
{
    for (int i = 0; i < n; i++)
        if (a->start[i] != b->start[i] || a->value[i] != b->value[i] ||
            a->prev_start[i] != b->prev_start[i] || a->prev_value[i] != b->prev_value[i])
            return false;
    return true;
}

/* Writes l in format V1 (as heads of version 2 hold it). */
static size_t live_encode_v1(const struct tl_window_live *l, const struct tl_window_policy *p,
                             uint8_t *out)
{
    size_t n = 0;
    for (int i = 0; i < p->n; i++) {
        int64_t w = p->res[i].width_ms;
        n += tl_put_varint(out + n, l->start[i] < 0 ? 0 : (uint64_t)(l->start[i] / w) + 1);
        n += tl_put_varint(out + n, tl_zigzag(l->value[i]));
        n +=
            tl_put_varint(out + n, l->prev_start[i] < 0 ? 0 : (uint64_t)(l->prev_start[i] / w) + 1);
        n += tl_put_varint(out + n, tl_zigzag(l->prev_value[i]));
    }
    return n;
}

static void test_live_formats(uint64_t seed)
{
    struct tl_window_policy p;
    char why[128];
    CHECK_OK(tl_window_policy_parse("1m:3h,1h:8d,1d:400d", 19, &p, why, sizeof why));
    uint64_t rng = seed | 1;
    size_t v1_bytes = 0, v2_bytes = 0;
    const int64_t now = 1795000000000LL;
    for (int round = 0; round < 10000; round++) {
        struct tl_window_live l, back;
        tl_window_live_init(&l);
        for (int i = 0; i < p.n; i++) {
            int64_t w = p.res[i].width_ms;
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            unsigned r = (unsigned)(rng >> 33);
            if (r % 7 == 0)
                continue; /* no bucket at all */
            l.start[i] = (now / w - (int64_t)(r % 5)) * w;
            l.value[i] = (r % 3 == 0) ? -(int64_t)(r % 1000) : (int64_t)(r % 100000);
            if (r % 4 != 0) {
                int64_t back_w = 1 + (int64_t)((r >> 8) % (r % 8 == 1 ? 100000 : 3));
                if (back_w * w > l.start[i])
                    back_w = 1;
                l.prev_start[i] = l.start[i] - back_w * w;
                l.prev_value[i] = (int64_t)(r >> 12) % 5000 - 100;
            }
        }
        uint8_t buf[TL_WINDOW_LIVE_MAX_BYTES];
        size_t n = tl_window_live_encode(&l, &p, buf);
        CHECK(n > 0 && n <= sizeof buf);
        CHECK(tl_window_live_decode(buf, buf + n, &p, TL_WINDOW_LIVE_V2, &back) == n);
        CHECK(live_equal(&l, &back, p.n));
        for (size_t cut = 0; cut < n; cut++) /* every truncation is refused or reads less */
            CHECK(tl_window_live_decode(buf, buf + cut, &p, TL_WINDOW_LIVE_V2, &back) == 0);
        v2_bytes += n;
        uint8_t old[TL_WINDOW_LIVE_MAX_BYTES];
        size_t m = live_encode_v1(&l, &p, old);
        CHECK(tl_window_live_decode(old, old + m, &p, TL_WINDOW_LIVE_V1, &back) == m);
        CHECK(live_equal(&l, &back, p.n));
        v1_bytes += m;
    }
    CHECK(v2_bytes * 10 < v1_bytes * 8); /* at least a fifth smaller */
    /* A previous bucket before time 0 is malformed. */
    uint8_t bad[8];
    size_t n = tl_put_varint(bad, 3); /* start 2 widths */
    n += tl_put_varint(bad + n, 2);   /* value 1 */
    n += tl_put_varint(bad + n, 4);   /* 4 widths older: before 0 */
    n += tl_put_varint(bad + n, 2);
    struct tl_window_policy one = {.n = 1, .res = {{MIN_MS, HOUR_MS}}};
    struct tl_window_live back;
    CHECK(tl_window_live_decode(bad, bad + n, &one, TL_WINDOW_LIVE_V2, &back) == 0);
    bad[2] = 2; /* 2 widths older: start 0 */
    CHECK(tl_window_live_decode(bad, bad + n, &one, TL_WINDOW_LIVE_V2, &back) == n);
    CHECK(back.start[0] == 2 * MIN_MS && back.prev_start[0] == 0 && back.prev_value[0] == 1);
}

static void test_typed_values(const char *dir)
{
    tl_db *db = open_db(dir);
    CHECK_OK(tl_db_put_typed(db, "t", 1, 7, "abc", 3, 0, NULL));
    CHECK_OK(tl_db_put(db, "s", 1, "xyz", 3, 0, NULL));
    int64_t r;
    CHECK_EQ_INT(tl_db_incr(db, "t", 1, 1, &r, NULL), TL_EWRONGTYPE);
    long double f;
    CHECK_EQ_INT(tl_db_incr_float(db, "t", 1, 1.5, &f, NULL), TL_EWRONGTYPE);
    CHECK_EQ_INT(tl_db_put_typed(db, "t", 1, 0, "abc", 3, 0, NULL), -EINVAL);
    for (int round = 0; round < 3; round++) {
        struct tl_val v;
        CHECK_EQ_INT(tl_db_get(db, "t", 1, &v), 1);
        CHECK_EQ_INT(v.type, TL_VAL_TYPED);
        CHECK_EQ_INT(v.tag, 7);
        CHECK(v.len == 3 && memcmp(v.bytes, "abc", 3) == 0);
        tl_val_clear(&v);
        CHECK_EQ_INT(tl_db_get(db, "s", 1, &v), 1);
        CHECK_EQ_INT(v.type, TL_VAL_BYTES);
        CHECK_EQ_INT(v.tag, 0);
        tl_val_clear(&v);
        if (round == 0) {
            CHECK_OK(tl_db_close(db)); /* from the WAL */
            db = open_db(dir);
        } else if (round == 1) {
            CHECK_OK(tl_db_flush(db)); /* from an SSTable, then compacted */
            CHECK_OK(tl_db_compact_range(db, NULL, 0, NULL, 0));
        }
    }
    CHECK_OK(tl_db_close(db));
}

/* A test's counter series: its head, at "head:<prefix>", holds the head's buckets and nothing
 * else (the policy is the test's). fail: one encode in this many fails (0: none), as a crash
 * between the store of a previous bucket and the head's update would. */
#define TEST_TAG 9
struct test_series {
    char prefix[32], head[40];
    const struct tl_window_policy *p;
    unsigned fail;
    uint64_t rs;
};

/* One write's own state: the series its decode fills and the write changes, and the encoded
 * head (two threads writing one series each have theirs). */
struct ts_call {
    struct test_series *t;
    struct tl_window_series s;
    uint8_t buf[TL_WINDOW_LIVE_MAX_BYTES];
};

static void ts_init(struct test_series *t, const char *prefix, const struct tl_window_policy *p)
{
    memset(t, 0, sizeof *t);
    snprintf(t->prefix, sizeof t->prefix, "%s", prefix);
    snprintf(t->head, sizeof t->head, "head:%s", prefix);
    t->p = p;
    t->rs = 42;
}

/* Decodes cur into out. */
static int ts_decode_into(struct test_series *t, const struct tl_val *cur, int found,
                          struct tl_window_series *out)
{
    out->prefix = t->prefix;
    out->plen = strlen(t->prefix);
    out->p = *t->p;
    tl_window_live_init(&out->live);
    if (!found)
        return 0;
    if (cur->type != TL_VAL_TYPED || cur->tag != TEST_TAG)
        return TL_EWRONGTYPE;
    const uint8_t *b = (const uint8_t *)cur->bytes;
    return tl_window_live_decode(b, b + cur->len, t->p, TL_WINDOW_LIVE_V2, &out->live) == cur->len
               ? 0
               : TL_ECORRUPT;
}

static int ts_decode(void *arg, const struct tl_val *cur, int found, struct tl_window_series **out)
{
    struct ts_call *call = arg;
    *out = &call->s;
    return ts_decode_into(call->t, cur, found, &call->s);
}

static int ts_encode(void *arg, const struct tl_window_series *s, int64_t at_ms,
                     struct tl_val *next)
{
    struct ts_call *call = arg;
    struct test_series *t = call->t;
    if (t->fail && test_rand(&t->rs) % t->fail == 0)
        return -EIO;
    const struct tl_window_res *last = &t->p->res[t->p->n - 1];
    next->type = TL_VAL_TYPED;
    next->tag = TEST_TAG;
    next->bytes = (char *)call->buf;
    next->len = tl_window_live_encode(&s->live, t->p, call->buf);
    next->expire_ms = (at_ms > g_now ? at_ms : g_now) + last->retention_ms + last->width_ms;
    return 0;
}

static int ts_incr(tl_db *db, struct test_series *t, int64_t at, int64_t delta, int64_t *finest)
{
    struct ts_call call = {.t = t};
    struct tl_window_head h = {t->head, strlen(t->head), ts_decode, ts_encode, &call};
    return tl_window_incr(db, &h, at, delta, finest, NULL);
}

/* The series as its head now says. */
static void ts_read(tl_db *db, struct test_series *t, struct tl_window_series *s)
{
    struct tl_val v;
    int rc = tl_db_get(db, t->head, strlen(t->head), &v);
    CHECK(rc >= 0);
    CHECK_OK(ts_decode_into(t, &v, rc, s));
    tl_val_clear(&v);
}

struct event {
    int64_t t, delta;
};

#define SERIES 6

struct model {
    struct event *ev[SERIES];
    size_t n[SERIES], cap[SERIES];
};

static void model_add(struct model *m, int s, int64_t t, int64_t d)
{
    if (m->n[s] == m->cap[s]) {
        m->cap[s] = m->cap[s] ? 2 * m->cap[s] : 1024;
        m->ev[s] = realloc(m->ev[s], m->cap[s] * sizeof *m->ev[s]);
        CHECK(m->ev[s] != NULL);
    }
    m->ev[s][m->n[s]++] = (struct event){t, d};
}

/* The sum of series s's events with times in [from, to]. */
static int64_t model_sum(const struct model *m, int s, int64_t from, int64_t to)
{
    int64_t sum = 0;
    for (size_t i = 0; i < m->n[s]; i++)
        if (m->ev[s][i].t >= from && m->ev[s][i].t <= to)
            sum += m->ev[s][i].delta;
    return sum;
}

static void prefix_of(int s, char *p)
{
    snprintf(p, 16, "series:%d|", s);
}

static void ts_of(int s, const struct tl_window_policy *p, struct test_series *t)
{
    char prefix[16];
    prefix_of(s, prefix);
    ts_init(t, prefix, p);
}

static uint64_t stats_entries(tl_db *db)
{
    struct tl_stats st;
    CHECK_OK(tl_db_stats(db, &st));
    uint64_t n = 0;
    for (int l = 0; l < st.num_levels; l++)
        n += st.levels[l].entries;
    return n;
}

/* Checks one window query of series s against the model. Returns whether it was exact. */
static bool check_window(tl_db *db, const struct model *m, const struct tl_window_policy *p, int s,
                         int64_t end, int64_t w)
{
    struct test_series t;
    struct tl_window_series ws;
    ts_of(s, p, &t);
    ts_read(db, &t, &ws);
    int64_t got;
    CHECK_OK(tl_window_sum(db, &ws, end, w, &got));
    int64_t start = end - w;
    /* The finest resolution holding the window's start is the one used at its old edge. */
    int edge = -1;
    for (int i = 0; i < p->n && edge < 0; i++)
        if (start >= g_now - p->res[i].retention_ms)
            edge = i;
    CHECK(edge >= 0);
    int64_t ew = p->res[edge].width_ms;
    int64_t exact = model_sum(m, s, start, end);
    int64_t edge_loss = model_sum(m, s, start, start + ew - 1);
    /* A window ending in the past may take in the rest of the bucket holding its end. */
    int64_t near_gain = end < g_now ? model_sum(m, s, end + 1, end + p->res[p->n - 1].width_ms) : 0;
    bool aligned = start % ew == 0 && end == g_now;
    if (got > exact + near_gain || got < exact - edge_loss || (aligned && got != exact)) {
        fprintf(stderr,
                "series %d window %" PRId64 " ms ending %" PRId64 " (now %" PRId64 "): got %" PRId64
                ", exact %" PRId64 ", allowed loss %" PRId64 " gain %" PRId64
                " (edge resolution %d)\n",
                s, w, end, g_now, got, exact, edge_loss, near_gain, edge);
        exit(1);
    }
    return aligned;
}

static void test_model(const char *dir, uint64_t seed)
{
    struct tl_window_policy p;
    char err[256];
    const char *spec = "1m:3h,1h:8d,1d:400d";
    CHECK_OK(tl_window_policy_parse(spec, strlen(spec), &p, err, sizeof err));
    struct model m;
    memset(&m, 0, sizeof m);
    uint64_t rs = seed;
    g_now = 1700000000000LL + 12345; /* not on a bucket boundary */
    int64_t t0 = g_now;
    tl_db *db = open_db(dir);
    const int steps = 200000;
    int queries = 0, exact_queries = 0, failed = 0;
    struct test_series ts[SERIES];
    for (int s = 0; s < SERIES; s++) {
        ts_of(s, &p, &ts[s]);
        ts[s].fail = 50;
        ts[s].rs = seed + (uint64_t)s;
    }
    for (int i = 0; i < steps; i++) {
        g_now += (int64_t)(test_rand(&rs) % (2 * 30 * DAY_MS / steps)); /* 30 days in all */
        int s = (int)(test_rand(&rs) % SERIES);
        /* Mostly now, sometimes late: up to an hour, a day, or nine days behind. */
        int64_t lag = 0;
        switch (test_rand(&rs) % 8) {
        case 0:
            lag = (int64_t)(test_rand(&rs) % HOUR_MS);
            break;
        case 1:
            lag = (int64_t)(test_rand(&rs) % DAY_MS);
            break;
        case 2:
            lag = (int64_t)(test_rand(&rs) % (9 * DAY_MS));
            break;
        }
        int64_t at = g_now - lag;
        int64_t d = 1 + (int64_t)(test_rand(&rs) % 100);
        int64_t finest;
        int rc = ts_incr(db, &ts[s], at, d, &finest);
        if (rc == -EIO) {
            failed++; /* nothing counted: the model leaves it out too */
            continue;
        }
        CHECK_OK(rc);
        model_add(&m, s, at, d);
        /* The reply is the whole finest bucket written. */
        for (int r = 0; r < p.n; r++) {
            int64_t start = at - at % p.res[r].width_ms;
            if (start >= g_now - p.res[r].retention_ms) {
                CHECK_EQ_INT(finest, model_sum(&m, s, start, start + p.res[r].width_ms - 1));
                break;
            }
        }
        if (i % 50 == 0) {
            /* Windows ending now: bucket multiples and arbitrary lengths. */
            static const int64_t lens[] = {MIN_MS, 5 * MIN_MS, HOUR_MS,    3 * HOUR_MS,
                                           DAY_MS, 7 * DAY_MS, 30 * DAY_MS};
            int64_t w = lens[test_rand(&rs) % (sizeof lens / sizeof lens[0])];
            if (test_rand(&rs) % 2)
                w = 1 + (int64_t)(test_rand(&rs) % (40 * DAY_MS));
            if (test_rand(&rs) % 2) {
                /* Start the window on a bucket of the resolution it reaches: exact. */
                int64_t start = g_now - w;
                for (int r = 0; r < p.n; r++) {
                    if (start >= g_now - p.res[r].retention_ms || r == p.n - 1) {
                        int64_t rw = p.res[r].width_ms;
                        start = (start / rw + 1) * rw;
                        break;
                    }
                }
                w = g_now - start;
            }
            if (w > 0) {
                exact_queries += check_window(db, &m, &p, s, g_now, w);
                queries++;
            }
            int64_t end = g_now - (int64_t)(test_rand(&rs) % (2 * DAY_MS));
            check_window(db, &m, &p, s, end, 1 + (int64_t)(test_rand(&rs) % (5 * DAY_MS)));
            queries++;
        }
        if (i % 7000 == 6999)
            CHECK_OK(tl_db_flush(db));
        if (i % 20000 == 19999)
            CHECK_OK(tl_db_compact_range(db, NULL, 0, NULL, 0));
        if (i % 15000 == 14999) {
            CHECK_OK(tl_db_close(db));
            db = open_db(dir);
        }
    }
    printf("model: %d events over %.1f days (%d failed at the head), %d window queries (%d "
           "exact)\n",
           steps, (double)(g_now - t0) / DAY_MS, failed, queries, exact_queries);
    CHECK(exact_queries > 50);
    CHECK(failed > 100);

    /* Retention: what a full compaction keeps is at most the buckets each resolution holds. */
    CHECK_OK(tl_db_flush(db));
    CHECK_OK(tl_db_compact_range(db, NULL, 0, NULL, 0));
    uint64_t written = 0;
    for (int s = 0; s < SERIES; s++)
        written += m.n[s];
    uint64_t held_max = 0;
    for (int r = 0; r < p.n; r++) {
        int64_t span = g_now - t0 + 9 * DAY_MS;
        int64_t keep = p.res[r].retention_ms < span ? p.res[r].retention_ms : span;
        held_max += (uint64_t)(keep / p.res[r].width_ms + 2);
    }
    /* A bucket is at most two keys (its value and its late writes), and a series has a head. */
    held_max = (2 * held_max + 1) * SERIES;
    uint64_t on_disk = stats_entries(db);
    printf("retention: %" PRIu64 " events written, %" PRIu64 " buckets on disk (at most %" PRIu64
           ")\n",
           written, on_disk, held_max);
    CHECK(on_disk > 0 && on_disk <= held_max);

    /* A series no longer written: gone once the longest retention has passed. */
    g_now += p.res[p.n - 1].retention_ms + p.res[p.n - 1].width_ms + DAY_MS; /* and its head */
    CHECK_OK(tl_db_compact_range(db, NULL, 0, NULL, 0));
    CHECK_EQ_INT(stats_entries(db), 0);
    uint64_t keys;
    CHECK_OK(tl_db_count_keys(db, &keys));
    CHECK_EQ_INT(keys, 0);
    /* And a write older than the longest retention is refused, naming it. */
    struct test_series x;
    ts_init(&x, "x", &p);
    CHECK_EQ_INT(ts_incr(db, &x, g_now - 401 * DAY_MS, 1, NULL), -ERANGE);
    CHECK(strstr(tl_last_error(), "400d") != NULL);
    CHECK_OK(tl_db_close(db));
    for (int s = 0; s < SERIES; s++)
        free(m.ev[s]);
}

/* Two threads write one series, each event of 1 into the next second's bucket by a shared
 * counter, so that both keep rolling the newest bucket over under each other, or arrive late
 * for it: every second's bucket must end up holding exactly 1. */
#define PER_BUCKET 1
#define BUCKETS    1500 /* per thread */
struct writer {
    tl_db *db;
    struct test_series *t;
    int64_t base;
    _Atomic int64_t *tick;
    pthread_barrier_t *go;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    pthread_barrier_wait(w->go);
    for (int b = 0; b < BUCKETS; b++) {
        int64_t t = atomic_fetch_add(w->tick, 1);
        CHECK_OK(ts_incr(w->db, w->t, w->base + t * 1000 + t % 7, 1, NULL));
    }
    return NULL;
}

struct bucket_check {
    int64_t expect_start, step, expect_value, total;
};

static int check_bucket(void *arg, int res, int64_t start, const struct tl_val *v)
{
    (void)res;
    struct bucket_check *b = arg;
    if (v->type != TL_VAL_INT || (b->expect_value && v->i != b->expect_value) ||
        (b->step && start != b->expect_start)) {
        fprintf(stderr, "bucket %" PRId64 " (expected %" PRId64 "): %" PRId64 "\n", start,
                b->expect_start, v->i);
        exit(1);
    }
    b->expect_start += b->step;
    b->total += v->i;
    return 0;
}

static void test_concurrent(const char *dir)
{
    struct tl_window_policy p;
    char err[256];
    CHECK_OK(tl_window_policy_parse("1s:1h,1m:1d", 11, &p, err, sizeof err));
    g_now = 1700000000000LL - 1700000000000LL % HOUR_MS + 2 * HOUR_MS;
    tl_db *db = open_db(dir);
    const int rounds = 10;
    for (int round = 0; round < rounds; round++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "both%d|", round);
        struct test_series t;
        ts_init(&t, prefix, &p);
        struct writer w[2];
        pthread_t th[2];
        int64_t base = g_now - HOUR_MS;
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, 2);
        _Atomic int64_t tick = 0;
        for (int i = 0; i < 2; i++) {
            w[i] = (struct writer){db, &t, base, &tick, &go};
            CHECK(pthread_create(&th[i], NULL, writer_main, &w[i]) == 0);
        }
        for (int i = 0; i < 2; i++)
            pthread_join(th[i], NULL);
        pthread_barrier_destroy(&go);
        struct tl_window_series s;
        ts_read(db, &t, &s);
        const int64_t total = 2 * BUCKETS * PER_BUCKET;
        struct bucket_check second = {base, 1000, PER_BUCKET, 0};
        CHECK_OK(
            tl_window_range(db, s.prefix, s.plen, &s.live, 0, base, g_now, check_bucket, &second));
        CHECK_EQ_INT(second.total, total);
        struct bucket_check minute = {base, 0, 0, 0};
        CHECK_OK(
            tl_window_range(db, s.prefix, s.plen, &s.live, 1, base, g_now, check_bucket, &minute));
        CHECK_EQ_INT(minute.total, total);
        int64_t sum;
        CHECK_OK(tl_window_sum(db, &s, g_now, HOUR_MS, &sum));
        CHECK_EQ_INT(sum, total);
    }
    printf("concurrent: %d rounds of 2 threads, %d writes each into one series, every bucket "
           "exact\n",
           rounds, BUCKETS * PER_BUCKET);
    CHECK_OK(tl_db_close(db));
}

int main(void)
{
    test_require_uring();
    const char *env = getenv("TALLY_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL);
    printf("seed %" PRIu64 " (TALLY_SEED replays)\n", seed);
    test_durations_and_policies();
    test_plan();
    test_live_formats(seed);
    char *dir = test_tmpdir("window");
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/typed", dir);
    test_typed_values(sub);
    snprintf(sub, sizeof sub, "%s/model", dir);
    test_model(sub, seed);
    snprintf(sub, sizeof sub, "%s/concurrent", dir);
    test_concurrent(sub);
    test_rmdir(dir);
    free(dir);
    printf("ok\n");
    return 0;
}
