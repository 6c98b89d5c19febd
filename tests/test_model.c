/*
 * test_model.c - model-based test of the engine through its public API.
 *
 * Runs at least 100,000 random operations (incr with deltas that overflow, incr_float, put of
 * bytes and of texts that read as integers, put_int, delete, set_expiry, get, update, time
 * moving forward through the clock hook) on 2,000 keys of varied lengths (long shared prefixes,
 * binary keys with \0, a few keys over the block size) and checks each one right after it
 * against a plain in-memory model: return code, returned value, *existed, and then the key's
 * exact type, value and expiry through tl_db_get. A small memtable and small levels make flushes
 * and compactions frequent; explicit flushes, whole and partial range compactions, close +
 * reopen, full iterator scans and seeks into the middle are mixed in and checked against the
 * model's sorted live keys. A key whose expiry is <= the fake clock is absent.
 *
 * Usage: test_model [seed [steps]]; the seed also comes from $TALLY_SEED, else from the time.
 * Every failure prints the seed, the step number and the operation; $TALLY_TRACE_KEY=<key id>
 * prints every operation on one key. The layout options (levels, block size, compression,
 * filters) are drawn from the seed too, so a seed replays exactly up to background timing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tallystore.h"
#include "testutil.h"

#define NKEYS         2000
#define DEFAULT_STEPS 150000
#define MAX_VALUE     (64u << 10)

struct mkey {
    unsigned char *k;
    size_t len;
};

/* The model of one key. A value written by incr_float is "loose": when its text reads as a
 * canonical integer the engine may keep it as bytes or as an integer (the header does not say),
 * so either is accepted. */
struct mval {
    bool present;
    bool is_int;
    bool loose;
    int64_t i;
    char *b;
    size_t len;
    int64_t expire_ms;
};

static struct mkey keys[NKEYS];
static struct mval model[NKEYS];
static int sorted_ids[NKEYS]; /* key ids in the engine's order (bytewise, shorter first) */
static uint64_t seed, rng;
static long step;
static char opdesc[600];
static int64_t now_ms = 1700000000000LL;
static tl_db *db;
static char *dir;
static struct tl_options opts;
static uint64_t last_seq;
static uint64_t engine_flushes, engine_compactions; /* summed over the opens */

static struct {
    long incr, incr_overflow, incr_notint, incr_float, float_err, put, put_int, del, expire, get,
        update, flush, compact, reopen, scan, seek, toobig;
} counts;

static void __attribute__((noreturn, format(printf, 1, 2))) fail(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "FAIL seed=%" PRIu64 " step=%ld op=%s:\n    ", seed, step, opdesc);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n    (tl_last_error: %s)\n", tl_last_error());
    exit(1);
}

static int64_t fake_clock(void *arg)
{
    (void)arg;
    return __atomic_load_n(&now_ms, __ATOMIC_RELAXED);
}

static int64_t now(void)
{
    return __atomic_load_n(&now_ms, __ATOMIC_RELAXED);
}

static uint64_t rnd(void)
{
    return test_rand(&rng);
}

static uint64_t below(uint64_t n)
{
    return rnd() % n;
}

/* Printable form of some bytes, cut at 48 characters. */
static const char *esc(const void *p, size_t len, char *buf, size_t cap)
{
    const unsigned char *s = p;
    size_t o = 0;
    for (size_t i = 0; i < len && o + 8 < cap; i++) {
        if (i == 48) {
            o += (size_t)snprintf(buf + o, cap - o, "...");
            break;
        }
        if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\\' && s[i] != '"')
            buf[o++] = (char)s[i];
        else
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", s[i]);
    }
    buf[o] = 0;
    return buf;
}

static const char *keydesc(int id)
{
    static char out[2][300];
    static int which;
    char e[256];
    which ^= 1;
    snprintf(out[which], sizeof out[which], "key#%d(len %zu \"%s\")", id, keys[id].len,
             esc(keys[id].k, keys[id].len, e, sizeof e));
    return out[which];
}

static const char *valdesc(const struct tl_val *v, char *buf, size_t cap)
{
    char e[256];
    if (v->type == TL_VAL_INT)
        snprintf(buf, cap, "INT %" PRId64 " expire %" PRId64, v->i, v->expire_ms);
    else if (v->type == TL_VAL_BYTES)
        snprintf(buf, cap, "BYTES len %zu \"%s\" expire %" PRId64, v->len,
                 esc(v->bytes, v->len, e, sizeof e), v->expire_ms);
    else
        snprintf(buf, cap, "type %d", (int)v->type);
    return buf;
}

static const char *modeldesc(int id, char *buf, size_t cap)
{
    char e[256];
    const struct mval *m = &model[id];
    if (!m->present)
        snprintf(buf, cap, "absent");
    else if (m->is_int)
        snprintf(buf, cap, "INT %" PRId64 " expire %" PRId64, m->i, m->expire_ms);
    else
        snprintf(buf, cap, "BYTES%s len %zu \"%s\" expire %" PRId64, m->loose ? "(float)" : "",
                 m->len, esc(m->b, m->len, e, sizeof e), m->expire_ms);
    return buf;
}

/* Redis's string2ll, written here independently of the engine: no sign but '-', no leading
 * zeros, no spaces, "-0" rejected, must fit in int64. */
static bool model_parse_int(const char *s, size_t len, int64_t *out)
{
    if (len == 0 || len > 20)
        return false;
    if (len == 1 && s[0] == '0') {
        *out = 0;
        return true;
    }
    bool neg = false;
    size_t i = 0;
    if (s[0] == '-') {
        neg = true;
        i = 1;
        if (len == 1)
            return false;
    }
    if (s[i] < '1' || s[i] > '9')
        return false;
    uint64_t v = 0;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        if (v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (neg) {
        if (v > (uint64_t)INT64_MAX + 1)
            return false;
        *out = (int64_t)(0 - v);
    } else {
        if (v > (uint64_t)INT64_MAX)
            return false;
        *out = (int64_t)v;
    }
    return true;
}

/* A key is absent once the clock is past its expiry time (expire_ms < now), as Redis's
 * lookups decide it and as tallystore.h's tl_expired documents. */
static bool live(int id)
{
    const struct mval *m = &model[id];
    if (!m->present || m->expire_ms == 0)
        return m->present;
    return m->expire_ms >= now();
}

static void mclear(int id)
{
    free(model[id].b);
    memset(&model[id], 0, sizeof model[id]);
}

static void mset_int(int id, int64_t v, int64_t expire_ms)
{
    mclear(id);
    model[id].present = true;
    model[id].is_int = true;
    model[id].i = v;
    model[id].expire_ms = expire_ms;
}

/* Bytes as tl_db_put stores them: a canonical integer text becomes an integer. */
static void mset_bytes(int id, const void *b, size_t len, int64_t expire_ms, bool loose)
{
    int64_t v;
    if (!loose && model_parse_int(b, len, &v)) {
        mset_int(id, v, expire_ms);
        return;
    }
    mclear(id);
    model[id].present = true;
    model[id].loose = loose;
    model[id].b = malloc(len + 1);
    if (!model[id].b)
        abort();
    if (len)
        memcpy(model[id].b, b, len);
    model[id].b[len] = 0;
    model[id].len = len;
    model[id].expire_ms = expire_ms;
}

/* Does the engine's value match the model of a live key? */
static bool val_matches(int id, const struct tl_val *v)
{
    const struct mval *m = &model[id];
    if (v->expire_ms != m->expire_ms)
        return false;
    if (m->is_int)
        return v->type == TL_VAL_INT && v->i == m->i;
    if (v->type == TL_VAL_BYTES)
        return v->len == m->len && (m->len == 0 || memcmp(v->bytes, m->b, m->len) == 0);
    int64_t x;
    return v->type == TL_VAL_INT && m->loose && model_parse_int(m->b, m->len, &x) && x == v->i;
}

static void check_val(int id, const struct tl_val *v, const char *what)
{
    if (!val_matches(id, v)) {
        char a[400], b[400];
        fail("%s %s: engine has %s, model has %s", what, keydesc(id), valdesc(v, a, sizeof a),
             modeldesc(id, b, sizeof b));
    }
}

/* $TALLY_TRACE_KEY=<key id>: print every operation checked on that key, to replay a failure. */
static int trace_id = -1;

static void check_get(int id, const char *what)
{
    if (id == trace_id) {
        char b[400];
        printf("trace step %ld now %" PRId64 ": %s -> model %s\n", step, now(), opdesc,
               modeldesc(id, b, sizeof b));
    }
    struct tl_val v = {0};
    int rc = tl_db_get(db, keys[id].k, keys[id].len, &v);
    if (rc < 0)
        fail("%s tl_db_get %s failed: %d %s", what, keydesc(id), rc, tl_strerror(rc));
    if (!live(id)) {
        if (rc != 0) {
            char a[400], b[400];
            fail("%s tl_db_get %s returned %d (%s), model has it absent (%s, now %" PRId64 ")",
                 what, keydesc(id), rc, valdesc(&v, a, sizeof a), modeldesc(id, b, sizeof b),
                 now());
        }
        tl_val_clear(&v);
        return;
    }
    if (rc != 1) {
        char b[400];
        fail("%s tl_db_get %s returned %d (absent), model has %s (now %" PRId64 ")", what,
             keydesc(id), rc, modeldesc(id, b, sizeof b), now());
    }
    check_val(id, &v, what);
    tl_val_clear(&v);
}

static void check_all(const char *what)
{
    for (int id = 0; id < NKEYS; id++)
        check_get(id, what);
}

static void expect_rc(int rc, int want, const char *call)
{
    if (rc != want)
        fail("%s returned %d (%s), expected %d (%s)", call, rc, tl_strerror(rc), want,
             tl_strerror(want));
}

static void check_seq(uint64_t seq, const char *call)
{
    if (seq <= last_seq)
        fail("%s gave sequence number %" PRIu64 ", not above the previous write's %" PRIu64, call,
             seq, last_seq);
    last_seq = seq;
}

/* ---- keys ---- */

static int keycmp(const void *a, size_t alen, const void *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

static int idcmp(const void *a, const void *b)
{
    const struct mkey *x = &keys[*(const int *)a], *y = &keys[*(const int *)b];
    return keycmp(x->k, x->len, y->k, y->len);
}

static void gen_keys(void)
{
    static const char alnum[] = "abcdefghijklmnopqrstuvwxyz0123456789:_/-";
    char prefixes[3][300];
    size_t plens[3] = {100, 200, 280};
    for (int p = 0; p < 3; p++) {
        for (size_t i = 0; i < plens[p]; i++)
            prefixes[p][i] = alnum[(i * 7 + (size_t)p) % (sizeof alnum - 1)];
    }
    unsigned char buf[12000];
    for (int id = 0; id < NKEYS; id++) {
        size_t len;
    again:
        len = 0;
        uint64_t kind = below(100);
        if (id < 3) {
            /* Keys longer than a data block. */
            len = 5000 + (size_t)below(6000);
            memcpy(buf, prefixes[0], plens[0]);
            for (size_t i = plens[0]; i < len; i++)
                buf[i] = (unsigned char)alnum[below(sizeof alnum - 1)];
        } else if (kind < 40) {
            len = (size_t)snprintf((char *)buf, sizeof buf, "user:%" PRIu64, below(100000));
        } else if (kind < 60) {
            int p = (int)below(3);
            memcpy(buf, prefixes[p], plens[p]);
            len = plens[p];
            size_t extra = (size_t)below(9);
            for (size_t i = 0; i < extra; i++)
                buf[len++] = (unsigned char)alnum[below(sizeof alnum - 1)];
        } else if (kind < 80) {
            len = 1 + (size_t)below(24);
            for (size_t i = 0; i < len; i++) {
                uint64_t r = below(4);
                buf[i] = r == 0 ? 0 : r == 1 ? 0xff : r == 2 ? 1 : (unsigned char)rnd();
            }
        } else if (kind < 97) {
            len = 20 + (size_t)below(100);
            for (size_t i = 0; i < len; i++)
                buf[i] = (unsigned char)(0x20 + below(95));
        } else {
            len = 400 + (size_t)below(1200);
            memcpy(buf, prefixes[1], plens[1]);
            for (size_t i = plens[1]; i < len; i++)
                buf[i] = (unsigned char)alnum[below(sizeof alnum - 1)];
        }
        for (int j = 0; j < id; j++) {
            if (keys[j].len == len && memcmp(keys[j].k, buf, len) == 0)
                goto again;
        }
        keys[id].k = malloc(len);
        if (!keys[id].k)
            abort();
        memcpy(keys[id].k, buf, len);
        keys[id].len = len;
    }
    for (int i = 0; i < NKEYS; i++)
        sorted_ids[i] = i;
    qsort(sorted_ids, NKEYS, sizeof sorted_ids[0], idcmp);
}

/* Position in sorted_ids of the first key >= (k, len). */
static int lower_bound(const void *k, size_t len)
{
    int lo = 0, hi = NKEYS;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        const struct mkey *m = &keys[sorted_ids[mid]];
        if (keycmp(m->k, m->len, k, len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The id of the key equal to (k, len), or -1. */
static int find_id(const void *k, size_t len)
{
    int pos = lower_bound(k, len);
    if (pos < NKEYS) {
        const struct mkey *m = &keys[sorted_ids[pos]];
        if (keycmp(m->k, m->len, k, len) == 0)
            return sorted_ids[pos];
    }
    return -1;
}

/* ---- random values ---- */

static int64_t rand_int(void)
{
    switch (below(10)) {
    case 0:
        return INT64_MAX - (int64_t)below(3);
    case 1:
        return INT64_MIN + (int64_t)below(3);
    case 2:
        return (int64_t)rnd();
    case 3:
        return (int64_t)(rnd() >> 20) - (int64_t)(1ll << 43);
    default:
        return (int64_t)below(2001) - 1000;
    }
}

static int64_t rand_delta(void)
{
    switch (below(20)) {
    case 0:
        return INT64_MAX;
    case 1:
        return INT64_MIN;
    case 2:
        return (int64_t)(1ull << 62);
    case 3:
        return -(int64_t)(1ull << 62);
    case 4:
        return (int64_t)(rnd() >> 1) - (int64_t)(rnd() >> 1);
    default:
        return (int64_t)below(201) - 100;
    }
}

static int64_t rand_expiry(void)
{
    uint64_t r = below(100);
    if (r < 65)
        return 0;
    if (r < 90)
        return now() + 1 + (int64_t)below(20000);
    if (r < 95)
        return now() - (int64_t)below(5000);
    return now();
}

/* A value for tl_db_put; *len gets its length. Points into a static buffer. */
static const char *rand_bytes(size_t *len)
{
    static char buf[MAX_VALUE + 1];
    static const char *odd[] = {"0123",
                                "-0",
                                " 1",
                                "+5",
                                "1 ",
                                "12a",
                                "",
                                "-",
                                "00",
                                "1.5",
                                "9223372036854775808",
                                "-9223372036854775809",
                                "0x10",
                                "1e3",
                                "99999999999999999999999"};
    uint64_t r = below(100);
    if (r < 25) {
        *len = (size_t)snprintf(buf, sizeof buf, "%" PRId64, rand_int());
    } else if (r < 40) {
        const char *s = odd[below(sizeof odd / sizeof odd[0])];
        *len = strlen(s);
        memcpy(buf, s, *len);
    } else if (r < 45) {
        /* A float text, so that incr_float parses it and incr does not. */
        *len =
            (size_t)snprintf(buf, sizeof buf, "%.3f", (double)((int64_t)below(20001) - 10000) / 7);
    } else if (r < 88) {
        *len = (size_t)below(201);
        for (size_t i = 0; i < *len; i++)
            buf[i] = (char)rnd();
    } else if (r < 98) {
        *len = 200 + (size_t)below(2800);
        for (size_t i = 0; i < *len; i++)
            buf[i] = (char)('a' + below(26));
    } else {
        *len = 10000 + (size_t)below(30000);
        for (size_t i = 0; i < *len; i++)
            buf[i] = (char)rnd();
    }
    return buf;
}

/* ---- operations ---- */

static void op_incr(int id)
{
    int64_t delta = rand_delta();
    snprintf(opdesc, sizeof opdesc, "tl_db_incr(%s, %" PRId64 ")", keydesc(id), delta);
    int64_t cur = 0, want = 0;
    int want_rc = 0;
    if (live(id)) {
        if (model[id].is_int)
            cur = model[id].i;
        else if (!model_parse_int(model[id].b, model[id].len, &cur))
            want_rc = TL_ENOTINT;
    }
    if (want_rc == 0 && __builtin_add_overflow(cur, delta, &want))
        want_rc = TL_EOVERFLOW;
    int64_t result = 0x5a5a5a5a;
    uint64_t seq = 0;
    bool with_seq = below(2);
    int rc = tl_db_incr(db, keys[id].k, keys[id].len, delta, &result, with_seq ? &seq : NULL);
    expect_rc(rc, want_rc, "tl_db_incr");
    if (want_rc == TL_ENOTINT)
        counts.incr_notint++;
    else if (want_rc == TL_EOVERFLOW)
        counts.incr_overflow++;
    else {
        counts.incr++;
        if (result != want)
            fail("tl_db_incr result %" PRId64 ", expected %" PRId64, result, want);
        if (with_seq)
            check_seq(seq, "tl_db_incr");
        mset_int(id, want, live(id) ? model[id].expire_ms : 0);
    }
    check_get(id, "after incr:");
}

static long double rand_float_delta(void)
{
    switch (below(20)) {
    case 0:
        return (long double)((int64_t)below(2001) - 1000);
    case 1:
        return ((long double)((int64_t)below(2001) - 1000)) * 1e30L;
    case 2:
        return 1.0L / (long double)(1 + below(1000));
    default:
        if (below(2000) == 0)
            return LDBL_MAX / 1.5L;
        if (below(2))
            return (long double)((int64_t)below(20001) - 10000) / 100.0L;
        return (long double)((int64_t)below(2001) - 1000) / 8.0L;
    }
}

static void op_incr_float(int id)
{
    long double delta = rand_float_delta();
    char dtext[TL_FLOAT_BUF];
    tl_format_float(delta, dtext, sizeof dtext);
    snprintf(opdesc, sizeof opdesc, "tl_db_incr_float(%s, %.80s)", keydesc(id), dtext);
    long double cur = 0;
    int want_rc = 0;
    if (live(id)) {
        if (model[id].is_int)
            cur = (long double)model[id].i;
        else if (!tl_parse_float(model[id].b, model[id].len, &cur))
            want_rc = TL_ENOTFLOAT;
    }
    long double sum = cur + delta;
    if (want_rc == 0 && !isfinite(sum))
        want_rc = TL_ENANINF;
    long double result = -12345.0L;
    uint64_t seq = 0;
    int rc = tl_db_incr_float(db, keys[id].k, keys[id].len, delta, &result, &seq);
    expect_rc(rc, want_rc, "tl_db_incr_float");
    if (want_rc) {
        counts.float_err++;
    } else {
        counts.incr_float++;
        char want[TL_FLOAT_BUF], got[TL_FLOAT_BUF];
        size_t wl = tl_format_float(sum, want, sizeof want);
        size_t gl = tl_format_float(result, got, sizeof got);
        if (wl != gl || memcmp(want, got, wl) != 0)
            fail("tl_db_incr_float result formats as \"%.100s\", expected \"%.100s\"", got, want);
        check_seq(seq, "tl_db_incr_float");
        mset_bytes(id, want, wl, live(id) ? model[id].expire_ms : 0, true);
    }
    check_get(id, "after incr_float:");
}

static void op_put(int id)
{
    size_t len;
    const char *val = rand_bytes(&len);
    int64_t exp = rand_expiry();
    char e[256];
    snprintf(opdesc, sizeof opdesc,
             "tl_db_put(%s, len %zu \"%s\", expire %" PRId64 ", now %" PRId64 ")", keydesc(id), len,
             esc(val, len, e, sizeof e), exp, now());
    uint64_t seq = 0;
    bool with_seq = below(2);
    int rc = tl_db_put(db, keys[id].k, keys[id].len, val, len, exp, with_seq ? &seq : NULL);
    expect_rc(rc, 0, "tl_db_put");
    if (with_seq)
        check_seq(seq, "tl_db_put");
    counts.put++;
    mset_bytes(id, val, len, exp, false);
    check_get(id, "after put:");
}

static void op_put_int(int id)
{
    int64_t v = rand_int();
    int64_t exp = rand_expiry();
    snprintf(opdesc, sizeof opdesc,
             "tl_db_put_int(%s, %" PRId64 ", expire %" PRId64 ", now %" PRId64 ")", keydesc(id), v,
             exp, now());
    uint64_t seq = 0;
    int rc = tl_db_put_int(db, keys[id].k, keys[id].len, v, exp, &seq);
    expect_rc(rc, 0, "tl_db_put_int");
    check_seq(seq, "tl_db_put_int");
    counts.put_int++;
    mset_int(id, v, exp);
    check_get(id, "after put_int:");
}

static void op_delete(int id)
{
    snprintf(opdesc, sizeof opdesc, "tl_db_delete(%s)", keydesc(id));
    bool existed = !live(id);
    bool ask = below(5) != 0;
    int rc = tl_db_delete(db, keys[id].k, keys[id].len, ask ? &existed : NULL, NULL);
    expect_rc(rc, 0, "tl_db_delete");
    if (ask && existed != live(id))
        fail("tl_db_delete *existed = %d, model says %d", existed, live(id));
    counts.del++;
    mclear(id);
    check_get(id, "after delete:");
}

static void op_set_expiry(int id)
{
    int64_t exp;
    uint64_t r = below(10);
    if (r < 3)
        exp = 0;
    else if (r < 8)
        exp = now() + 1 + (int64_t)below(30000);
    else if (r < 9)
        exp = now() - (int64_t)below(10000);
    else
        exp = now();
    snprintf(opdesc, sizeof opdesc, "tl_db_set_expiry(%s, %" PRId64 ", now %" PRId64 ")",
             keydesc(id), exp, now());
    bool existed = !live(id);
    int rc = tl_db_set_expiry(db, keys[id].k, keys[id].len, exp, &existed, NULL);
    expect_rc(rc, 0, "tl_db_set_expiry");
    if (existed != live(id))
        fail("tl_db_set_expiry *existed = %d, model says %d", existed, live(id));
    counts.expire++;
    if (live(id))
        model[id].expire_ms = exp;
    check_get(id, "after set_expiry:");
}

/* ---- tl_db_update ---- */

enum upd_mode { UPD_SETNX_INT, UPD_SETNX_BYTES, UPD_GETDEL, UPD_EXPIRE, UPD_DOUBLE, UPD_ERROR };
static const char *upd_names[] = {"setnx-int", "setnx-bytes", "getdel",
                                  "expire",    "double",      "error"};

struct upd_arg {
    enum upd_mode mode;
    int id;
    int calls;
    int64_t ival;
    int64_t exp;
    char bytes[64];
    size_t blen;
};

/* The integer a value reads as (an INT, or bytes with canonical integer text). */
static bool val_as_int(const struct tl_val *v, int64_t *out)
{
    if (v->type == TL_VAL_INT) {
        *out = v->i;
        return true;
    }
    return model_parse_int(v->bytes, v->len, out);
}

static int upd_fn(void *arg, const struct tl_val *cur, int found, struct tl_val *next)
{
    struct upd_arg *a = arg;
    a->calls++;
    if (found != (int)live(a->id)) {
        char b[400];
        fail("update callback got found = %d, model has %s", found, modeldesc(a->id, b, sizeof b));
    }
    if (found)
        check_val(a->id, cur, "update callback cur of");
    int64_t x;
    switch (a->mode) {
    case UPD_SETNX_INT:
        if (found)
            return TL_UPDATE_KEEP;
        next->type = TL_VAL_INT;
        next->i = a->ival;
        next->bytes = NULL;
        next->len = 0;
        next->expire_ms = a->exp;
        return TL_UPDATE_PUT;
    case UPD_SETNX_BYTES:
        if (found)
            return TL_UPDATE_KEEP;
        next->type = TL_VAL_BYTES;
        next->i = 0;
        next->bytes = a->bytes;
        next->len = a->blen;
        next->expire_ms = a->exp;
        return TL_UPDATE_PUT;
    case UPD_GETDEL:
        return found ? TL_UPDATE_DELETE : TL_UPDATE_KEEP;
    case UPD_EXPIRE:
        if (!found)
            return TL_UPDATE_KEEP;
        next->expire_ms = a->exp;
        return TL_UPDATE_EXPIRE;
    case UPD_DOUBLE:
        if (!found)
            return TL_UPDATE_KEEP;
        if (val_as_int(cur, &x)) {
            if (__builtin_mul_overflow(x, 2, &x))
                return TL_UPDATE_KEEP;
            next->type = TL_VAL_INT;
            next->i = x;
            next->bytes = NULL;
            next->len = 0;
        } else {
            size_t n = cur->len < 20 ? cur->len : 20;
            memcpy(a->bytes, "u:", 2);
            memcpy(a->bytes + 2, cur->bytes, n);
            a->blen = 2 + n;
            next->type = TL_VAL_BYTES;
            next->i = 0;
            next->bytes = a->bytes;
            next->len = a->blen;
        }
        next->expire_ms = cur->expire_ms;
        return TL_UPDATE_PUT;
    case UPD_ERROR:
        return -EINVAL;
    }
    return TL_UPDATE_KEEP;
}

static void op_update(int id)
{
    struct upd_arg a = {.mode = (enum upd_mode)below(6), .id = id};
    a.ival = rand_int();
    a.exp = below(3) ? 0 : now() + 1 + (int64_t)below(20000);
    if (a.mode == UPD_EXPIRE)
        a.exp = below(4) ? now() + 1 + (int64_t)below(20000) : below(2) ? 0 : now() - 1;
    a.blen = 2 + (size_t)below(40);
    memcpy(a.bytes, "u:", 2);
    for (size_t i = 2; i < a.blen; i++)
        a.bytes[i] = (char)rnd();
    snprintf(opdesc, sizeof opdesc, "tl_db_update(%s, %s, ival %" PRId64 ", exp %" PRId64 ")",
             keydesc(id), upd_names[a.mode], a.ival, a.exp);

    /* What the model expects, computed before the call from the model alone. */
    bool was_live = live(id);
    int want_rc = a.mode == UPD_ERROR ? -EINVAL : 0;
    int rc = tl_db_update(db, keys[id].k, keys[id].len, upd_fn, &a, NULL);
    expect_rc(rc, want_rc, "tl_db_update");
    if (a.calls != 1)
        fail("tl_db_update called the callback %d times, expected once", a.calls);
    counts.update++;
    int64_t x;
    switch (a.mode) {
    case UPD_SETNX_INT:
        if (!was_live)
            mset_int(id, a.ival, a.exp);
        break;
    case UPD_SETNX_BYTES:
        if (!was_live)
            mset_bytes(id, a.bytes, a.blen, a.exp, true);
        break;
    case UPD_GETDEL:
        if (was_live)
            mclear(id);
        break;
    case UPD_EXPIRE:
        if (was_live)
            model[id].expire_ms = a.exp;
        break;
    case UPD_DOUBLE:
        if (!was_live)
            break;
        if (model[id].is_int || model_parse_int(model[id].b, model[id].len, &x)) {
            x = model[id].is_int ? model[id].i : x;
            if (!__builtin_mul_overflow(x, 2, &x))
                mset_int(id, x, model[id].expire_ms);
        } else {
            mset_bytes(id, a.bytes, a.blen, model[id].expire_ms, true);
        }
        break;
    case UPD_ERROR:
        break;
    }
    check_get(id, "after update:");
}

static void op_toobig(int id)
{
    counts.toobig++;
    if (below(3) == 0) {
        size_t len = TL_MAX_KEY_BYTES + 1;
        char *k = calloc(1, len);
        if (!k)
            abort();
        snprintf(opdesc, sizeof opdesc, "tl_db_put_int(key of %zu bytes)", len);
        expect_rc(tl_db_put_int(db, k, len, 1, 0, NULL), TL_ETOOBIG, "tl_db_put_int");
        int64_t r;
        expect_rc(tl_db_incr(db, k, len, 1, &r, NULL), TL_ETOOBIG, "tl_db_incr");
        free(k);
        return;
    }
    static char big[MAX_VALUE + 1];
    memset(big, 'z', sizeof big);
    bool over = below(2);
    size_t len = over ? MAX_VALUE + 1 : MAX_VALUE;
    snprintf(opdesc, sizeof opdesc, "tl_db_put(%s, value of %zu bytes, max_value_bytes %u)",
             keydesc(id), len, MAX_VALUE);
    int rc = tl_db_put(db, keys[id].k, keys[id].len, big, len, 0, NULL);
    expect_rc(rc, over ? TL_ETOOBIG : 0, "tl_db_put");
    if (!over)
        mset_bytes(id, big, len, 0, false);
    check_get(id, "after put of a big value:");
}

/* ---- whole-database operations ---- */

static void add_stats(void)
{
    struct tl_stats st;
    expect_rc(tl_db_stats(db, &st), 0, "tl_db_stats");
    engine_flushes += st.flushes;
    engine_compactions += st.compactions;
}

static void do_reopen(void)
{
    snprintf(opdesc, sizeof opdesc, "close + reopen");
    add_stats();
    int rc = tl_db_close(db);
    db = NULL;
    expect_rc(rc, 0, "tl_db_close");
    rc = tl_db_open(dir, &opts, &db);
    expect_rc(rc, 0, "tl_db_open");
    counts.reopen++;
    check_all("after reopen:");
}

static void do_flush(void)
{
    snprintf(opdesc, sizeof opdesc, "tl_db_flush");
    expect_rc(tl_db_flush(db), 0, "tl_db_flush");
    counts.flush++;
}

static void do_compact(void)
{
    counts.compact++;
    if (below(3) == 0) {
        snprintf(opdesc, sizeof opdesc, "tl_db_compact_range(NULL, NULL) now %" PRId64, now());
        expect_rc(tl_db_compact_range(db, NULL, 0, NULL, 0), 0, "tl_db_compact_range");
    } else {
        int a = (int)below(NKEYS), b = (int)below(NKEYS);
        if (a > b) {
            int t = a;
            a = b;
            b = t;
        }
        const struct mkey *ka = &keys[sorted_ids[a]], *kb = &keys[sorted_ids[b]];
        bool open_begin = below(6) == 0, open_end = below(6) == 0;
        snprintf(opdesc, sizeof opdesc,
                 "tl_db_compact_range(%s, %s) (sorted positions %d..%d) now %" PRId64,
                 open_begin ? "NULL" : keydesc(sorted_ids[a]),
                 open_end ? "NULL" : keydesc(sorted_ids[b]), a, b, now());
        int rc = tl_db_compact_range(db, open_begin ? NULL : ka->k, open_begin ? 0 : ka->len,
                                     open_end ? NULL : kb->k, open_end ? 0 : kb->len);
        expect_rc(rc, 0, "tl_db_compact_range");
    }
    check_all("after compaction:");
}

/* Checks the iterator from sorted position pos (the first key >= the seek target) for at most
 * limit live keys (-1: to the end). */
static void check_iter_from(tl_iter *it, int pos, int limit, const char *what)
{
    int seen = 0;
    for (; pos < NKEYS && (limit < 0 || seen < limit); pos++) {
        int id = sorted_ids[pos];
        if (!live(id))
            continue;
        if (!tl_iter_valid(it))
            fail("%s: iterator ended (or failed) before %s, which the model has live (last error "
                 "above)",
                 what, keydesc(id));
        size_t kl = 0;
        const void *k = tl_iter_key(it, &kl);
        if (keycmp(k, kl, keys[id].k, keys[id].len) != 0) {
            char e[256];
            int other = find_id(k, kl);
            if (other < 0)
                fail("%s: iterator at unknown key (len %zu \"%s\"), expected %s", what, kl,
                     esc(k, kl, e, sizeof e), keydesc(id));
            char b[400];
            if (keycmp(k, kl, keys[id].k, keys[id].len) < 0)
                fail("%s: iterator at %s, which the model has %s (expected %s next)", what,
                     keydesc(other), modeldesc(other, b, sizeof b), keydesc(id));
            fail("%s: iterator skipped %s (model: %s); it is at %s", what, keydesc(id),
                 modeldesc(id, b, sizeof b), keydesc(other));
        }
        struct tl_val v = {0};
        int rc = tl_iter_value(it, &v);
        if (rc < 0)
            fail("%s: tl_iter_value at %s failed: %d %s", what, keydesc(id), rc, tl_strerror(rc));
        check_val(id, &v, what);
        tl_val_clear(&v);
        seen++;
        rc = tl_iter_next(it);
        if (rc < 0)
            fail("%s: tl_iter_next after %s failed: %d %s", what, keydesc(id), rc, tl_strerror(rc));
    }
    if (limit < 0 && tl_iter_valid(it)) {
        size_t kl = 0;
        const void *k = tl_iter_key(it, &kl);
        int other = find_id(k, kl);
        char e[256], b[400];
        if (other < 0)
            fail("%s: iterator has an extra unknown key (len %zu \"%s\") at the end", what, kl,
                 esc(k, kl, e, sizeof e));
        fail("%s: iterator has %s after the model's last live key; model: %s", what, keydesc(other),
             modeldesc(other, b, sizeof b));
    }
}

static void do_scan(void)
{
    snprintf(opdesc, sizeof opdesc, "full iterator scan (now %" PRId64 ")", now());
    counts.scan++;
    tl_iter *it = NULL;
    expect_rc(tl_iter_new(db, &it), 0, "tl_iter_new");
    expect_rc(tl_iter_seek(it, "", 0), 0, "tl_iter_seek(\"\")");
    check_iter_from(it, 0, -1, "full scan");
    tl_iter_free(it);
}

static void do_seek(void)
{
    unsigned char target[12000];
    size_t tlen;
    int id = (int)below(NKEYS);
    memcpy(target, keys[id].k, keys[id].len);
    tlen = keys[id].len;
    uint64_t r = below(4);
    const char *how = "an existing key";
    if (r == 1) {
        target[tlen++] = 0; /* just after the key */
        how = "key + \\0";
    } else if (r == 2 && tlen > 1) {
        tlen = 1 + (size_t)below(tlen - 1); /* a prefix */
        how = "a prefix of a key";
    } else if (r == 3) {
        tlen = 1 + (size_t)below(8);
        for (size_t i = 0; i < tlen; i++)
            target[i] = (unsigned char)rnd();
        how = "random bytes";
    }
    char e[256];
    snprintf(opdesc, sizeof opdesc, "tl_iter_seek(%s: len %zu \"%s\") and next", how, tlen,
             esc(target, tlen, e, sizeof e));
    counts.seek++;
    tl_iter *it = NULL;
    expect_rc(tl_iter_new(db, &it), 0, "tl_iter_new");
    expect_rc(tl_iter_seek(it, target, tlen), 0, "tl_iter_seek");
    check_iter_from(it, lower_bound(target, tlen), 1 + (int)below(30), "seek");
    tl_iter_free(it);
}

static void advance_time(void)
{
    int64_t d = below(20) == 0 ? 30000 + (int64_t)below(60000) : 1 + (int64_t)below(3000);
    snprintf(opdesc, sizeof opdesc, "clock += %" PRId64 " ms", d);
    __atomic_store_n(&now_ms, now() + d, __ATOMIC_RELAXED);
}

int main(int argc, char **argv)
{
    test_require_uring();
    const char *env = getenv("TALLY_SEED");
    if (argc > 1)
        seed = strtoull(argv[1], NULL, 0);
    else if (env && *env)
        seed = strtoull(env, NULL, 0);
    else
        seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    long steps = argc > 2 ? strtol(argv[2], NULL, 0) : DEFAULT_STEPS;
    printf("test_model: seed=%" PRIu64 " steps=%ld\n", seed, steps);
    fflush(stdout);
    rng = seed;
    const char *trace = getenv("TALLY_TRACE_KEY");
    if (trace && *trace)
        trace_id = atoi(trace);

    gen_keys();
    dir = test_tmpdir("model");
    tl_options_init(&opts);
    opts.memtable_bytes = 256 << 10;
    opts.block_cache_bytes = 1 << 20;
    opts.level1_bytes = 1 << 20;
    opts.target_file_bytes = 256 << 10;
    opts.level_multiplier = 4;
    opts.max_value_bytes = MAX_VALUE;
    opts.clock_ms = fake_clock;
    opts.clock_arg = NULL;
    /* Layouts that vary with the seed: levels, compression, block size, filters. */
    static const size_t block_sizes[] = {256, 1024, 4096};
    static const enum tl_compression comps[] = {TL_COMPRESS_NONE, TL_COMPRESS_LZ4,
                                                TL_COMPRESS_ZSTD};
    opts.num_levels = 2 + (int)below(TL_MAX_LEVELS - 1);
    opts.block_size_bytes = block_sizes[below(3)];
    opts.compression = comps[below(3)];
    opts.bottom_compression = comps[below(3)];
    opts.bottom_levels = 1 + (int)below(2);
    opts.bloom_bits_per_key = below(4) == 0 ? 0 : 10;
    printf("options: num_levels %d, block_size_bytes %zu, compression %d, bottom_compression %d, "
           "bottom_levels %d, bloom_bits_per_key %d\n",
           opts.num_levels, opts.block_size_bytes, (int)opts.compression,
           (int)opts.bottom_compression, opts.bottom_levels, opts.bloom_bits_per_key);
    fflush(stdout);
    snprintf(opdesc, sizeof opdesc, "tl_db_open");
    expect_rc(tl_db_open(dir, &opts, &db), 0, "tl_db_open");

    for (step = 1; step <= steps; step++) {
        if (below(1500) == 0)
            do_flush();
        if (below(3000) == 0)
            do_compact();
        if (below(10000) == 0)
            do_reopen();
        if (below(4000) == 0)
            do_scan();
        if (below(300) == 0)
            do_seek();
        /* A small working set at times, so that one key sees many operations in a row. */
        int id = below(4) == 0 ? (int)below(20) : (int)below(NKEYS);
        uint64_t r = below(1000);
        if (r < 200)
            op_incr(id);
        else if (r < 260)
            op_incr_float(id);
        else if (r < 410)
            op_put(id);
        else if (r < 470)
            op_put_int(id);
        else if (r < 540)
            op_delete(id);
        else if (r < 600)
            op_set_expiry(id);
        else if (r < 760) {
            snprintf(opdesc, sizeof opdesc, "tl_db_get(%s)", keydesc(id));
            counts.get++;
            check_get(id, "get:");
        } else if (r < 830)
            op_update(id);
        else if (r < 833)
            op_toobig(id);
        else if (r < 860)
            advance_time();
        else
            op_incr(id);
    }

    /* Every whole-database operation at least once at the end. */
    do_scan();
    do_flush();
    do_scan();
    do_reopen();
    do_scan();
    snprintf(opdesc, sizeof opdesc, "final tl_db_compact_range(NULL, NULL)");
    expect_rc(tl_db_compact_range(db, NULL, 0, NULL, 0), 0, "tl_db_compact_range");
    check_all("after the final compaction:");
    do_scan();
    advance_time();
    do_scan();
    do_reopen();
    do_scan();

    add_stats();
    snprintf(opdesc, sizeof opdesc, "tl_db_close");
    expect_rc(tl_db_close(db), 0, "tl_db_close");
    printf("ok: seed=%" PRIu64 " steps=%ld: incr %ld (overflow %ld, not int %ld), incr_float %ld "
           "(errors %ld), put %ld, put_int %ld, delete %ld, set_expiry %ld, get %ld, update %ld, "
           "too big %ld; flush %ld, compact %ld, reopen %ld, scan %ld, seek %ld; engine: flushes "
           "%" PRIu64 " compactions %" PRIu64 "\n",
           seed, steps, counts.incr, counts.incr_overflow, counts.incr_notint, counts.incr_float,
           counts.float_err, counts.put, counts.put_int, counts.del, counts.expire, counts.get,
           counts.update, counts.toobig, counts.flush, counts.compact, counts.reopen, counts.scan,
           counts.seek, engine_flushes, engine_compactions);
    test_rmdir(dir);
    free(dir);
    for (int i = 0; i < NKEYS; i++) {
        free(keys[i].k);
        mclear(i);
    }
    return 0;
}
