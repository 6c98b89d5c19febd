/*
 * sketch.c - the mergeable quantile sketch of sketch.h (DDSketch-style: logarithmic bins with
 * relative accuracy alpha, positive and negative stores, a zero count, exact count, sum, min
 * and max), its byte encoding and its bounded size.
 *
 * Each store is a dense window of counts over consecutive bin indexes [offset, offset + len),
 * at most TL_SKETCH_MAX_BINS wide. Adding an index outside the window widens it; when the
 * window would pass the maximum, the lowest indexes are folded into the lowest index kept
 * (the highest index seen always stays). The negative store holds a value v under the index
 * -bin_index(-v), so that in both stores a higher index is a higher value: folding the lowest
 * indexes always gives up the lowest values, and the upper quantiles stay accurate. The format
 * is described in sketch.h.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"
#include "sketch.h"

#define VARINT_MAX_BYTES 10
/* The index range of each store (the negative store's indexes are negated). */
#define POS_LO TL_SKETCH_MIN_INDEX
#define POS_HI TL_SKETCH_MAX_INDEX
#define NEG_LO (-TL_SKETCH_MAX_INDEX)
#define NEG_HI (-TL_SKETCH_MIN_INDEX)

/* log(gamma), gamma = (1 + alpha) / (1 - alpha). */
static double log_gamma(void)
{
    return log1p(2 * TL_SKETCH_ALPHA / (1 - TL_SKETCH_ALPHA));
}

/* The bin index of a magnitude m > 0: the least i with m <= gamma^i. */
static int32_t bin_index(double m)
{
    double i = ceil(log(m) / log_gamma());
    if (i < TL_SKETCH_MIN_INDEX)
        return TL_SKETCH_MIN_INDEX;
    if (i > TL_SKETCH_MAX_INDEX)
        return TL_SKETCH_MAX_INDEX;
    return (int32_t)i;
}

/* What bin i reports: gamma^i * (1 - alpha), within alpha of each magnitude in the bin. */
static double bin_value(int32_t i)
{
    return exp(i * log_gamma()) * (1 - TL_SKETCH_ALPHA);
}

/* ---- stores ---------------------------------------------------------------------------------- */

static void store_free(struct tl_sketch_store *st)
{
    free(st->counts);
    memset(st, 0, sizeof *st);
}

/* Adds n at bin index i, widening the window, and folding its lowest bins when it would pass
 * TL_SKETCH_MAX_BINS. 0 or -ENOMEM (st unchanged). */
static int store_add(struct tl_sketch_store *st, int32_t i, uint64_t n)
{
    int64_t lo = st->len ? (i < st->offset ? i : st->offset) : i;
    int64_t hi = st->len ? st->offset + (int64_t)st->len - 1 : i;
    if (i > hi)
        hi = i;
    if (hi - lo + 1 > TL_SKETCH_MAX_BINS)
        lo = hi - TL_SKETCH_MAX_BINS + 1;
    if (i < lo)
        i = (int32_t)lo; /* folded into the lowest bin kept */
    uint32_t width = (uint32_t)(hi - lo + 1);
    if (width > st->cap) {
        uint32_t cap = st->cap ? st->cap : 16;
        while (cap < width)
            cap *= 2;
        if (cap > TL_SKETCH_MAX_BINS)
            cap = TL_SKETCH_MAX_BINS;
        uint64_t *p = realloc(st->counts, cap * sizeof *p);
        if (!p)
            return -ENOMEM;
        st->counts = p;
        st->cap = cap;
    }
    if (st->len && lo != st->offset) {
        /* The window moves: fold the bins below lo into lo, then shift the rest up or down. */
        uint32_t drop = lo > st->offset ? (uint32_t)(lo - st->offset) : 0;
        uint64_t folded = 0;
        for (uint32_t k = 0; k < drop && k < st->len; k++)
            folded += st->counts[k];
        uint32_t keep = drop < st->len ? st->len - drop : 0;
        uint32_t shift = lo < st->offset ? (uint32_t)(st->offset - lo) : 0;
        memmove(st->counts + shift, st->counts + drop, keep * sizeof *st->counts);
        memset(st->counts, 0, shift * sizeof *st->counts);
        memset(st->counts + shift + keep, 0, (width - shift - keep) * sizeof *st->counts);
        st->counts[0] += folded;
    } else if (width > st->len) {
        memset(st->counts + st->len, 0, (width - st->len) * sizeof *st->counts);
    }
    st->offset = (int32_t)lo;
    st->len = width;
    st->counts[i - lo] += n;
    st->total += n;
    return 0;
}

static int store_merge(struct tl_sketch_store *dst, const struct tl_sketch_store *src)
{
    if (src->len == 0)
        return 0;
    /* The highest bin first, so the window takes its final top at once. */
    for (uint32_t k = src->len; k-- > 0;) {
        if (src->counts[k] == 0)
            continue;
        int rc = store_add(dst, src->offset + (int32_t)k, src->counts[k]);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- the sketch ------------------------------------------------------------------------------ */

void tl_sketch_init(struct tl_sketch *s)
{
    memset(s, 0, sizeof *s);
}

void tl_sketch_free(struct tl_sketch *s)
{
    store_free(&s->pos);
    store_free(&s->neg);
    tl_sketch_init(s);
}

/* Folds count, sum, min and max of another sketch (or one value) into s. */
static void sketch_note(struct tl_sketch *s, uint64_t count, double sum, double min, double max)
{
    if (count == 0)
        return;
    if (s->count == 0 || min < s->min)
        s->min = min;
    if (s->count == 0 || max > s->max)
        s->max = max;
    s->count += count;
    s->sum += sum;
}

int tl_sketch_add(struct tl_sketch *s, double value)
{
    if (!isfinite(value))
        return -EINVAL;
    if (value > 0) {
        int rc = store_add(&s->pos, bin_index(value), 1);
        if (rc < 0)
            return rc;
    } else if (value < 0) {
        int rc = store_add(&s->neg, -bin_index(-value), 1);
        if (rc < 0)
            return rc;
    } else {
        s->zero_count++;
        value = 0; /* -0.0 counts as 0 */
    }
    sketch_note(s, 1, value, value, value);
    return 0;
}

int tl_sketch_merge(struct tl_sketch *dst, const struct tl_sketch *src)
{
    int rc = store_merge(&dst->pos, &src->pos);
    if (rc == 0)
        rc = store_merge(&dst->neg, &src->neg);
    if (rc < 0)
        return rc;
    dst->zero_count += src->zero_count;
    sketch_note(dst, src->count, src->sum, src->min, src->max);
    return 0;
}

uint64_t tl_sketch_count(const struct tl_sketch *s)
{
    return s->count;
}

double tl_sketch_sum(const struct tl_sketch *s)
{
    return s->sum;
}

double tl_sketch_min(const struct tl_sketch *s)
{
    return s->count ? s->min : NAN;
}

double tl_sketch_max(const struct tl_sketch *s)
{
    return s->count ? s->max : NAN;
}

/* The bin index of store st holding its rank-th value (0-based, lowest index first). */
static int32_t store_find(const struct tl_sketch_store *st, uint64_t rank)
{
    uint64_t seen = 0;
    for (uint32_t k = 0; k < st->len; k++) {
        seen += st->counts[k];
        if (seen > rank)
            return st->offset + (int32_t)k;
    }
    return st->offset + (int32_t)st->len - 1; /* not reached: rank < st->total */
}

double tl_sketch_quantile(const struct tl_sketch *s, double q)
{
    if (s->count == 0 || !(q >= 0 && q <= 1))
        return NAN;
    uint64_t rank = (uint64_t)floor(q * (double)(s->count - 1));
    if (rank >= s->count - 1)
        return s->max;
    if (rank == 0)
        return s->min;
    double v;
    /* Sorted order: the negative store (its indexes are negated magnitudes), zeros, then the
     * positive store. */
    if (rank < s->neg.total) {
        v = -bin_value(-store_find(&s->neg, rank));
    } else if (rank < s->neg.total + s->zero_count) {
        v = 0;
    } else {
        v = bin_value(store_find(&s->pos, rank - s->neg.total - s->zero_count));
    }
    return v < s->min ? s->min : v > s->max ? s->max : v;
}

/* ---- encoding -------------------------------------------------------------------------------- */

static int put_varint(struct tl_buf *out, uint64_t v)
{
    uint8_t b[VARINT_MAX_BYTES];
    size_t n = 0;
    do {
        b[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            b[n] |= 0x80;
        n++;
    } while (v);
    return tl_buf_append(out, b, n);
}

static int put_double(struct tl_buf *out, double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    uint8_t b[8];
    for (int k = 0; k < 8; k++)
        b[k] = (uint8_t)(bits >> (8 * k));
    return tl_buf_append(out, b, sizeof b);
}

static uint64_t zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static int64_t unzigzag(uint64_t v)
{
    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

static int put_store(struct tl_buf *out, const struct tl_sketch_store *st)
{
    uint64_t bins = 0;
    for (uint32_t k = 0; k < st->len; k++)
        bins += st->counts[k] != 0;
    int rc = put_varint(out, bins);
    int64_t prev = 0;
    bool first = true;
    for (uint32_t k = 0; rc == 0 && k < st->len; k++) {
        if (st->counts[k] == 0)
            continue;
        int64_t i = st->offset + (int64_t)k;
        rc = put_varint(out, first ? zigzag(i) : (uint64_t)(i - prev - 1));
        if (rc == 0)
            rc = put_varint(out, st->counts[k]);
        prev = i;
        first = false;
    }
    return rc;
}

int tl_sketch_encode(const struct tl_sketch *s, struct tl_buf *out)
{
    size_t start = out->len;
    uint8_t version = TL_SKETCH_VERSION;
    int rc = tl_buf_append(out, &version, 1);
    if (rc == 0)
        rc = put_varint(out, s->count);
    if (rc == 0)
        rc = put_varint(out, s->zero_count);
    if (rc == 0)
        rc = put_double(out, s->sum);
    if (rc == 0)
        rc = put_double(out, s->min);
    if (rc == 0)
        rc = put_double(out, s->max);
    if (rc == 0)
        rc = put_store(out, &s->pos);
    if (rc == 0)
        rc = put_store(out, &s->neg);
    if (rc < 0)
        out->len = start;
    return rc;
}

/* ---- decoding -------------------------------------------------------------------------------- */

struct reader {
    const uint8_t *p, *end;
};

static bool get_varint(struct reader *r, uint64_t *v)
{
    uint64_t x = 0;
    for (int n = 0; n < VARINT_MAX_BYTES && r->p < r->end; n++) {
        uint8_t b = *r->p++;
        if (n == VARINT_MAX_BYTES - 1 && b > 1)
            return false; /* more than 64 bits */
        x |= (uint64_t)(b & 0x7f) << (7 * n);
        if (!(b & 0x80)) {
            *v = x;
            return true;
        }
    }
    return false;
}

static bool get_double(struct reader *r, double *d)
{
    if (r->end - r->p < 8)
        return false;
    uint64_t bits = 0;
    for (int k = 0; k < 8; k++)
        bits |= (uint64_t)r->p[k] << (8 * k);
    r->p += 8;
    memcpy(d, &bits, sizeof *d);
    return true;
}

/* Reads one store, whose indexes lie in [lo, hi]. With st NULL it only checks it and adds its
 * counts to *total; else it adds its bins to st. Returns 0, TL_ECORRUPT or -ENOMEM. */
static int get_store(struct reader *r, int64_t lo, int64_t hi, struct tl_sketch_store *st,
                     uint64_t *total)
{
    uint64_t bins, delta, n;
    if (!get_varint(r, &bins) || bins > TL_SKETCH_MAX_BINS)
        return TL_ECORRUPT;
    int64_t first = 0, i = 0;
    for (uint64_t b = 0; b < bins; b++) {
        if (!get_varint(r, &delta))
            return TL_ECORRUPT;
        if (b == 0) {
            i = first = unzigzag(delta);
            if (i < lo || i > hi)
                return TL_ECORRUPT;
        } else {
            if (delta >= TL_SKETCH_MAX_BINS)
                return TL_ECORRUPT;
            i += (int64_t)delta + 1;
            if (i - first >= TL_SKETCH_MAX_BINS || i > hi)
                return TL_ECORRUPT;
        }
        if (!get_varint(r, &n) || n == 0)
            return TL_ECORRUPT;
        if (!st) {
            if (n > UINT64_MAX - *total)
                return TL_ECORRUPT;
            *total += n;
            continue;
        }
        int rc = store_add(st, (int32_t)i, n);
        if (rc < 0)
            return rc;
    }
    return 0;
}

struct header {
    uint64_t count, zeros;
    double sum, min, max;
};

static bool get_header(struct reader *r, struct header *h)
{
    if (r->p == r->end || *r->p++ != TL_SKETCH_VERSION)
        return false;
    return get_varint(r, &h->count) && get_varint(r, &h->zeros) && get_double(r, &h->sum) &&
           get_double(r, &h->min) && get_double(r, &h->max);
}

/* Checks the whole encoding without changing anything. */
static int check_encoding(const uint8_t *p, size_t len, struct header *h)
{
    struct reader r = {p, p + len};
    if (!get_header(&r, h))
        return TL_ECORRUPT;
    uint64_t pos = 0, neg = 0;
    if (get_store(&r, POS_LO, POS_HI, NULL, &pos) < 0 ||
        get_store(&r, NEG_LO, NEG_HI, NULL, &neg) < 0 || r.p != r.end)
        return TL_ECORRUPT;
    if (pos > UINT64_MAX - neg || pos + neg > UINT64_MAX - h->zeros ||
        pos + neg + h->zeros != h->count)
        return TL_ECORRUPT;
    if (h->count == 0)
        return h->min == 0 && h->max == 0 ? 0 : TL_ECORRUPT;
    if (!isfinite(h->min) || !isfinite(h->max) || h->min > h->max)
        return TL_ECORRUPT;
    /* The extremes must agree with the signs present. */
    if ((neg > 0) != (h->min < 0) || (pos > 0) != (h->max > 0))
        return TL_ECORRUPT;
    return 0;
}

int tl_sketch_decode(struct tl_sketch *s, const void *bytes, size_t len)
{
    struct header h;
    int rc = check_encoding(bytes, len, &h);
    if (rc < 0)
        return rc;
    if (h.count > UINT64_MAX - s->count)
        return TL_ECORRUPT;
    struct reader r = {bytes, (const uint8_t *)bytes + len};
    get_header(&r, &h);
    rc = get_store(&r, POS_LO, POS_HI, &s->pos, NULL);
    if (rc == 0)
        rc = get_store(&r, NEG_LO, NEG_HI, &s->neg, NULL);
    if (rc < 0)
        return rc;
    s->zero_count += h.zeros;
    sketch_note(s, h.count, h.sum, h.min, h.max);
    return 0;
}
