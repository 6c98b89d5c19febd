/*
 * test_sketch.c - the quantile sketch of server/sketch.c: accuracy, merging, encoding, bounds.
 *
 * Checks, against exact quantiles computed by sorting (the value of rank floor(q * (n - 1))):
 * - uniform, heavy-tailed (Pareto, lognormal) and shifting (the median moves 10x half way)
 *   streams, split over many sketches (time buckets) that are encoded, then merged by decoding
 *   each into one accumulator: every q in QS within 1% relative error, count, min and max exact,
 *   sum close;
 * - negative values and zeros (a symmetric stream with a tenth of exact zeros);
 * - the encoding's round trip (every field and bin back, bit for bit);
 * - merge == union: tl_sketch_merge of two sketches, and decoding both into one, equal the
 *   sketch of all the values, including when the bounded store folds its lowest bins;
 * - bounded size: 1,000,000 values spread log-uniformly over 1e-9 .. 1e18 (27 decades) keep at
 *   most TL_SKETCH_MAX_BINS bins and a bounded encoding, with the upper quantiles within 1%;
 * - corrupt input: every truncation, every single-byte change, crafted bad fields and random
 *   bytes are rejected (or decode to a consistent sketch), and a failed decode changes nothing;
 * - NaN and infinities are refused; an empty sketch answers NaN.
 *
 * The random streams come from a seed, printed; TALLY_SEED replays one.
 */
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server.h"
#include "sketch.h"
#include "testutil.h"

#define STREAM_VALUES  200000
#define STREAM_BUCKETS 100
#define WIDE_VALUES    1000000
#define GARBAGE_TRIES  20000
/* The guarantee is alpha; the bin of a value exactly on a bin edge depends on log()'s last
 * bit, which can add a relative 1e-15 or so. */
#define TOLERANCE (TL_SKETCH_ALPHA * (1 + 1e-9))

static const double QS[] = {0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1};
#define N_QS (sizeof QS / sizeof QS[0])

static uint64_t rng;

/* Uniform in (0, 1). */
static double uniform01(void)
{
    return ((double)(test_rand(&rng) >> 11) + 0.5) / 9007199254740992.0;
}

static double normal01(void)
{
    return sqrt(-2 * log(uniform01())) * cos(2 * M_PI * uniform01());
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Reports a failed check and ends the test (the seed was printed first: TALLY_SEED replays). */
#define FAIL(...) (fprintf(stderr, "FAIL: " __VA_ARGS__), fputc('\n', stderr), exit(1))

static void encode_or_die(const struct tl_sketch *s, struct tl_buf *out)
{
    out->len = 0;
    CHECK_OK(tl_sketch_encode(s, out));
    CHECK(out->len <= TL_SKETCH_MAX_ENCODED_BYTES);
}

/* Checks s's quantiles in QS[from..] against the sorted values v[0..n). */
static void check_quantiles(const char *name, const struct tl_sketch *s, double *v, size_t n,
                            size_t from)
{
    qsort(v, n, sizeof *v, cmp_double);
    if (tl_sketch_count(s) != n || tl_sketch_min(s) != v[0] || tl_sketch_max(s) != v[n - 1])
        FAIL("%s: count %" PRIu64 " min %.17g max %.17g, expected %zu %.17g %.17g", name,
             tl_sketch_count(s), tl_sketch_min(s), tl_sketch_max(s), n, v[0], v[n - 1]);
    for (size_t k = from; k < N_QS; k++) {
        double exact = v[(size_t)floor(QS[k] * (double)(n - 1))];
        double got = tl_sketch_quantile(s, QS[k]);
        double err = exact == 0 ? fabs(got) : fabs(got - exact) / fabs(exact);
        if (!(exact == 0 ? got == 0 : err <= TOLERANCE))
            FAIL("%s: quantile %g = %.17g, exact %.17g (relative error %.5f)", name, QS[k], got,
                 exact, err);
    }
}

/* Splits v[0..n) into STREAM_BUCKETS consecutive sketches (time buckets), encodes each, then
 * decodes them all into one accumulator, and also merges them with tl_sketch_merge; checks
 * both. */
static void check_stream(const char *name, double *v, size_t n)
{
    struct tl_sketch acc, merged, bucket;
    struct tl_buf enc = {0};
    tl_sketch_init(&acc);
    tl_sketch_init(&merged);
    double sum = 0;
    for (size_t b = 0; b < STREAM_BUCKETS; b++) {
        tl_sketch_init(&bucket);
        for (size_t i = b * n / STREAM_BUCKETS; i < (b + 1) * n / STREAM_BUCKETS; i++) {
            CHECK_OK(tl_sketch_add(&bucket, v[i]));
            sum += v[i];
        }
        encode_or_die(&bucket, &enc);
        CHECK_OK(tl_sketch_decode(&acc, enc.data, enc.len));
        CHECK_OK(tl_sketch_merge(&merged, &bucket));
        tl_sketch_free(&bucket);
    }
    if (fabs(tl_sketch_sum(&acc) - sum) > 1e-9 * fabs(sum) + 1e-9)
        FAIL("%s: sum %.17g, expected %.17g", name, tl_sketch_sum(&acc), sum);
    check_quantiles(name, &merged, v, n, 0);
    check_quantiles(name, &acc, v, n, 0);
    encode_or_die(&acc, &enc);
    printf("%-12s %zu values in %d buckets: p50 %.6g p99 %.6g p99.9 %.6g, %zu bytes encoded\n",
           name, n, STREAM_BUCKETS, tl_sketch_quantile(&acc, 0.5), tl_sketch_quantile(&acc, 0.99),
           tl_sketch_quantile(&acc, 0.999), enc.len);
    tl_sketch_free(&acc);
    tl_sketch_free(&merged);
    tl_buf_free(&enc);
}

static void test_distributions(void)
{
    double *v = malloc(STREAM_VALUES * sizeof *v);
    CHECK(v != NULL);
    for (size_t i = 0; i < STREAM_VALUES; i++)
        v[i] = 1000 * uniform01();
    check_stream("uniform", v, STREAM_VALUES);
    for (size_t i = 0; i < STREAM_VALUES; i++)
        v[i] = 1 / pow(uniform01(), 1 / 1.1); /* Pareto, alpha 1.1: a very long tail */
    check_stream("pareto", v, STREAM_VALUES);
    for (size_t i = 0; i < STREAM_VALUES; i++)
        v[i] = exp(3 + 2 * normal01());
    check_stream("lognormal", v, STREAM_VALUES);
    /* The median moves from 10 to 100 half way through the buckets. */
    for (size_t i = 0; i < STREAM_VALUES; i++)
        v[i] = (i < STREAM_VALUES / 2 ? 10 : 100) * exp(0.5 * normal01());
    check_stream("shifting", v, STREAM_VALUES);
    /* Negatives, positives and a tenth of exact zeros, some of them -0.0. */
    for (size_t i = 0; i < STREAM_VALUES; i++) {
        uint64_t r = test_rand(&rng) % 20;
        v[i] = r == 0 ? 0.0 : r == 1 ? -0.0 : 50 * normal01() * exp(normal01());
    }
    check_stream("signed", v, STREAM_VALUES);
    for (size_t i = 0; i < STREAM_VALUES; i++)
        v[i] = -exp(5 * normal01());
    check_stream("negative", v, STREAM_VALUES);
    free(v);
}

/* Whether two sketches hold the same bins, count, zeros, min and max (sum: see sum_close). */
static bool same_store(const struct tl_sketch_store *a, const struct tl_sketch_store *b)
{
    if (a->total != b->total)
        return false;
    /* Compare the non-empty bins by index: the windows may differ in their empty edges. */
    uint32_t i = 0, j = 0;
    for (;;) {
        while (i < a->len && a->counts[i] == 0)
            i++;
        while (j < b->len && b->counts[j] == 0)
            j++;
        if (i == a->len || j == b->len)
            return i == a->len && j == b->len;
        if (a->offset + (int64_t)i != b->offset + (int64_t)j || a->counts[i] != b->counts[j])
            return false;
        i++;
        j++;
    }
}

static void expect_same(const char *name, const struct tl_sketch *a, const struct tl_sketch *b,
                        bool exact_sum)
{
    bool sum_ok = exact_sum ? memcmp(&a->sum, &b->sum, sizeof a->sum) == 0
                            : fabs(a->sum - b->sum) <= 1e-9 * fabs(b->sum);
    if (!same_store(&a->pos, &b->pos) || !same_store(&a->neg, &b->neg) ||
        a->zero_count != b->zero_count || a->count != b->count || a->min != b->min ||
        a->max != b->max || !sum_ok)
        FAIL("%s: sketches differ (count %" PRIu64 "/%" PRIu64 ", bins %u/%u, %u/%u)", name,
             a->count, b->count, a->pos.len, b->pos.len, a->neg.len, b->neg.len);
}

static void test_round_trip(void)
{
    struct tl_sketch s, back;
    struct tl_buf enc = {0};
    tl_sketch_init(&s);
    tl_sketch_init(&back);
    encode_or_die(&s, &enc); /* the empty sketch */
    CHECK_OK(tl_sketch_decode(&back, enc.data, enc.len));
    expect_same("empty round trip", &back, &s, true);
    CHECK(isnan(tl_sketch_quantile(&back, 0.5)) && isnan(tl_sketch_min(&back)));
    static const double fixed[] = {DBL_MAX, -DBL_MAX, DBL_MIN, -DBL_MIN, 5e-324, 0, 1, -1, 1e300};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        CHECK_OK(tl_sketch_add(&s, fixed[i]));
    for (int i = 0; i < 10000; i++)
        CHECK_OK(tl_sketch_add(&s, (double)(test_rand(&rng) % 2000) - 1000.5));
    encode_or_die(&s, &enc);
    CHECK_OK(tl_sketch_decode(&back, enc.data, enc.len));
    expect_same("round trip", &back, &s, true);
    CHECK_EQ_INT(tl_sketch_quantile(&back, 0) == -DBL_MAX, 1);
    CHECK_EQ_INT(tl_sketch_quantile(&back, 1) == DBL_MAX, 1);
    /* Refused values change nothing. */
    CHECK_EQ_INT(tl_sketch_add(&s, NAN), -EINVAL);
    CHECK_EQ_INT(tl_sketch_add(&s, INFINITY), -EINVAL);
    CHECK_EQ_INT(tl_sketch_add(&s, -INFINITY), -EINVAL);
    expect_same("after refused values", &back, &s, true);
    CHECK(isnan(tl_sketch_quantile(&s, -0.1)) && isnan(tl_sketch_quantile(&s, 1.5)) &&
          isnan(tl_sketch_quantile(&s, NAN)));
    tl_sketch_free(&s);
    tl_sketch_free(&back);
    tl_buf_free(&enc);
}

/* Fills a sketch with n values log-uniform over [10^lo, 10^hi), negated when neg. */
static void fill_log_uniform(struct tl_sketch *s, double *v, size_t n, double lo, double hi,
                             bool neg)
{
    for (size_t i = 0; i < n; i++) {
        double x = pow(10, lo + (hi - lo) * uniform01());
        if (neg)
            x = -x;
        if (v)
            v[i] = x;
        CHECK_OK(tl_sketch_add(s, x));
    }
}

static void test_merge_is_union(void)
{
    struct tl_buf enc = {0};
    /* Two ranges apart by more than the store's span, so the merge must fold bins. */
    static const double ranges[][2] = {{-9, 3}, {10, 18}, {0, 4}, {-2, 1}};
    for (int fold = 0; fold < 2; fold++) {
        struct tl_sketch a, b, all, merged, decoded;
        tl_sketch_init(&a);
        tl_sketch_init(&b);
        tl_sketch_init(&all);
        tl_sketch_init(&merged);
        tl_sketch_init(&decoded);
        const double *ra = ranges[2 * fold], *rb = ranges[2 * fold + 1];
        uint64_t saved = rng;
        fill_log_uniform(&a, NULL, 50000, ra[0], ra[1], false);
        fill_log_uniform(&a, NULL, 5000, ra[0], ra[1], true);
        fill_log_uniform(&b, NULL, 70000, rb[0], rb[1], false);
        fill_log_uniform(&b, NULL, 100, rb[0], rb[1], true);
        rng = saved; /* the same values again, into one sketch */
        fill_log_uniform(&all, NULL, 50000, ra[0], ra[1], false);
        fill_log_uniform(&all, NULL, 5000, ra[0], ra[1], true);
        fill_log_uniform(&all, NULL, 70000, rb[0], rb[1], false);
        fill_log_uniform(&all, NULL, 100, rb[0], rb[1], true);
        for (int k = 0; k < 1000; k++) {
            CHECK_OK(tl_sketch_add(&a, 0));
            CHECK_OK(tl_sketch_add(&all, 0));
        }
        CHECK_OK(tl_sketch_merge(&merged, &a));
        CHECK_OK(tl_sketch_merge(&merged, &b));
        expect_same(fold ? "merge, no folding" : "merge with folding", &merged, &all, false);
        encode_or_die(&b, &enc); /* b first this time: the order must not matter */
        CHECK_OK(tl_sketch_decode(&decoded, enc.data, enc.len));
        encode_or_die(&a, &enc);
        CHECK_OK(tl_sketch_decode(&decoded, enc.data, enc.len));
        expect_same(fold ? "decode, no folding" : "decode with folding", &decoded, &all, false);
        if (fold == 0 && all.pos.len != TL_SKETCH_MAX_BINS)
            FAIL("the union over 27 decades should fill the store: %u bins", all.pos.len);
        tl_sketch_free(&a);
        tl_sketch_free(&b);
        tl_sketch_free(&all);
        tl_sketch_free(&merged);
        tl_sketch_free(&decoded);
    }
    tl_buf_free(&enc);
}

static void test_bounded_size(void)
{
    double *v = malloc(WIDE_VALUES * sizeof *v);
    CHECK(v != NULL);
    for (int neg = 0; neg < 2; neg++) {
        struct tl_sketch s;
        struct tl_buf enc = {0};
        tl_sketch_init(&s);
        fill_log_uniform(&s, v, WIDE_VALUES, -9, 18, neg);
        encode_or_die(&s, &enc);
        const struct tl_sketch_store *st = neg ? &s.neg : &s.pos;
        printf("1,000,000 values over %s1e-9..%s1e18: %u bins, %zu bytes encoded (bound %d)\n",
               neg ? "-" : "", neg ? "-" : "", st->len, enc.len, TL_SKETCH_MAX_ENCODED_BYTES);
        if (st->len > TL_SKETCH_MAX_BINS || enc.len > 4 * TL_SKETCH_MAX_BINS + 64)
            FAIL("%u bins and %zu bytes for 1,000,000 values", st->len, enc.len);
        /* The store keeps 17.8 decades at the top of the values: the quantiles from the median
         * up (10^4.5 and more; -10^4.5 and more) are in it; the lowest ones are folded, but
         * q = 0 is the exact min (check_quantiles checks min and max). */
        check_quantiles(neg ? "wide negative" : "wide", &s, v, WIDE_VALUES, 4);
        if (tl_sketch_quantile(&s, 0) != v[0])
            FAIL("wide: quantile 0 = %.17g, min %.17g", tl_sketch_quantile(&s, 0), v[0]);
        tl_sketch_free(&s);
        tl_buf_free(&enc);
    }
    free(v);
}

/* A decode of bad bytes must fail, or (a changed byte can make another valid encoding) give a
 * consistent sketch; either way no crash, and a failure leaves the target as it was. */
static void expect_rejected_or_consistent(const char *what, const uint8_t *p, size_t len,
                                          bool must_fail)
{
    struct tl_sketch s, before;
    tl_sketch_init(&s);
    tl_sketch_init(&before);
    CHECK_OK(tl_sketch_add(&s, 42));
    CHECK_OK(tl_sketch_add(&before, 42));
    int rc = tl_sketch_decode(&s, p, len);
    if (rc == 0 && must_fail)
        FAIL("%s: accepted (%zu bytes)", what, len);
    if (rc != 0 && rc != TL_ECORRUPT)
        FAIL("%s: decode returned %d, expected TL_ECORRUPT", what, rc);
    if (rc != 0)
        expect_same(what, &s, &before, true);
    else if (s.count != s.zero_count + s.pos.total + s.neg.total || !(s.min <= s.max))
        FAIL("%s: accepted into an inconsistent sketch", what);
    tl_sketch_free(&s);
    tl_sketch_free(&before);
}

/* The encoding of a sketch whose fields are written by hand: version, count, zeros, sum, min,
 * max, then the raw store bytes. */
static size_t craft(uint8_t *out, int version, uint64_t count, uint64_t zeros, double min,
                    double max, const uint8_t *stores, size_t slen)
{
    struct tl_buf b = {0};
    uint8_t ver = (uint8_t)version;
    CHECK_OK(tl_buf_append(&b, &ver, 1));
    uint64_t ints[2] = {count, zeros};
    for (int k = 0; k < 2; k++) {
        uint64_t x = ints[k];
        do {
            uint8_t byte = (uint8_t)((x & 0x7f) | (x >= 0x80 ? 0x80 : 0));
            CHECK_OK(tl_buf_append(&b, &byte, 1));
            x >>= 7;
        } while (x);
    }
    double d[3] = {0, min, max};
    for (int k = 0; k < 3; k++) {
        uint64_t bits;
        memcpy(&bits, &d[k], 8);
        for (int j = 0; j < 8; j++) {
            uint8_t byte = (uint8_t)(bits >> (8 * j));
            CHECK_OK(tl_buf_append(&b, &byte, 1));
        }
    }
    CHECK_OK(tl_buf_append(&b, stores, slen));
    memcpy(out, b.data, b.len);
    size_t n = b.len;
    tl_buf_free(&b);
    return n;
}

static void test_corrupt(void)
{
    struct tl_sketch s;
    struct tl_buf enc = {0};
    tl_sketch_init(&s);
    fill_log_uniform(&s, NULL, 3000, -3, 6, false);
    fill_log_uniform(&s, NULL, 300, -1, 2, true);
    CHECK_OK(tl_sketch_add(&s, 0));
    encode_or_die(&s, &enc);
    const uint8_t *good = (const uint8_t *)enc.data;
    for (size_t len = 0; len < enc.len; len++)
        expect_rejected_or_consistent("truncated", good, len, true);
    uint8_t *bad = malloc(enc.len + 1);
    CHECK(bad != NULL);
    memcpy(bad, good, enc.len);
    bad[enc.len] = 0;
    expect_rejected_or_consistent("a trailing byte", bad, enc.len + 1, true);
    static const uint8_t flips[] = {0x01, 0x80, 0xff, 0x40};
    for (size_t i = 0; i < enc.len; i++) {
        for (size_t f = 0; f < sizeof flips; f++) {
            memcpy(bad, good, enc.len);
            bad[i] ^= flips[f];
            /* A changed sum, min, max or bin index can make another valid encoding. */
            expect_rejected_or_consistent("a changed byte", bad, enc.len, false);
        }
    }
    free(bad);

    uint8_t buf[128];
    size_t n;
    static const uint8_t one_bin[] = {1, 0x02, 5, 0};       /* bin 1: 5 values; no negatives */
    static const uint8_t low_bin[] = {1, 0x82, 0x01, 1, 0}; /* bin 65 */
    n = craft(buf, 1, 5, 0, 1.0, 1.02, one_bin, sizeof one_bin);
    expect_rejected_or_consistent("a valid crafted sketch", buf, n, false);
    CHECK_OK(tl_sketch_decode(&s, buf, n));
    n = craft(buf, 2, 5, 0, 1.0, 1.02, one_bin, sizeof one_bin);
    expect_rejected_or_consistent("an unknown version", buf, n, true);
    n = craft(buf, 1, 6, 0, 1.0, 1.02, one_bin, sizeof one_bin);
    expect_rejected_or_consistent("a count the bins do not add up to", buf, n, true);
    n = craft(buf, 1, 5, 0, 1.02, 1.0, one_bin, sizeof one_bin);
    expect_rejected_or_consistent("min over max", buf, n, true);
    n = craft(buf, 1, 5, 0, NAN, 1.0, one_bin, sizeof one_bin);
    expect_rejected_or_consistent("a NaN min", buf, n, true);
    n = craft(buf, 1, 5, 0, -1.0, 1.0, one_bin, sizeof one_bin);
    expect_rejected_or_consistent("a negative min without negative values", buf, n, true);
    n = craft(buf, 1, 1, 0, 1.0, 1.0, low_bin, sizeof low_bin);
    expect_rejected_or_consistent("a plausible other bin", buf, n, false);
    static const uint8_t zero_count[] = {1, 0x02, 0, 0};
    n = craft(buf, 1, 0, 0, 0, 0, zero_count, sizeof zero_count);
    expect_rejected_or_consistent("a bin counting 0", buf, n, true);
    static const uint8_t far_index[] = {1, 0xff, 0xff, 0x03, 1, 0}; /* zigzag 65535: -32768.. */
    n = craft(buf, 1, 1, 0, 1.0, 1.0, far_index, sizeof far_index);
    expect_rejected_or_consistent("an index far from the value", buf, n, false);
    static const uint8_t huge_index[] = {1, 0xfe, 0xff, 0xff, 0xff, 0x0f, 1, 0}; /* 2^31 - 1 */
    n = craft(buf, 1, 1, 0, 1.0, 1.0, huge_index, sizeof huge_index);
    expect_rejected_or_consistent("an index beyond any double", buf, n, true);
    static const uint8_t wide[] = {2, 0x00, 1, 0xff, 0x0f, 1, 0}; /* bins 0 and 2048 */
    n = craft(buf, 1, 2, 0, 1.0, 2.0, wide, sizeof wide);
    expect_rejected_or_consistent("bins wider than the store", buf, n, true);
    static const uint8_t many[] = {0x81, 0x10, 0}; /* 2049 bins */
    n = craft(buf, 1, 0, 0, 0, 0, many, sizeof many);
    expect_rejected_or_consistent("too many bins", buf, n, true);
    static const uint8_t long_varint[] = {1,    0x02, 0x80, 0x80, 0x80, 0x80, 0x80,
                                          0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0};
    n = craft(buf, 1, 1, 0, 1.0, 1.0, long_varint, sizeof long_varint);
    expect_rejected_or_consistent("an 11-byte varint", buf, n, true);
    static const uint8_t overflow[] = {2,    0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                       0xff, 0xff, 0xff, 0x01, 0,    0x02, 0};
    n = craft(buf, 1, 1, 0, 1.0, 1.1, overflow, sizeof overflow);
    expect_rejected_or_consistent("counts adding past 2^64", buf, n, true);

    for (int t = 0; t < GARBAGE_TRIES; t++) {
        uint8_t junk[64];
        size_t len = test_rand(&rng) % sizeof junk;
        for (size_t i = 0; i < len; i++)
            junk[i] = (uint8_t)test_rand(&rng);
        if (len)
            junk[0] = TL_SKETCH_VERSION; /* get past the version byte most of the time */
        expect_rejected_or_consistent("random bytes", junk, len, false);
    }
    tl_sketch_free(&s);
    tl_buf_free(&enc);
}

int main(void)
{
    const char *env = getenv("TALLY_SEED");
    uint64_t seed = env && *env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
    printf("seed %" PRIu64 "\n", seed);
    fflush(stdout);
    rng = seed;
    test_distributions();
    test_round_trip();
    test_merge_is_union();
    test_bounded_size();
    test_corrupt();
    printf("test_sketch: all checks passed (seed %" PRIu64 ")\n", seed);
    return 0;
}
