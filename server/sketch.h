/*
 * sketch.h - a mergeable quantile sketch (DDSketch-style) for WOBSERVE, WSTATS and WQUANTILE.
 *
 * A sketch summarises a stream of finite doubles of any sign: their exact count, sum, min and
 * max, and a histogram with logarithmic bins from which a q-quantile is estimated within
 * TL_SKETCH_ALPHA (1%) relative error. Bin i of a magnitude store holds the values v with
 * gamma^(i-1) < |v| <= gamma^i, gamma = (1 + alpha) / (1 - alpha); a bin reports
 * gamma^i * (1 - alpha), which is within alpha of every value it holds. Positive values,
 * negative values (by magnitude) and zeros are kept apart.
 *
 * Quantiles: the q-quantile is the value of rank floor(q * (n - 1)) (0-based) in sorted order;
 * rank 0 answers the exact min and rank n - 1 the exact max, and every answer lies in
 * [min, max].
 *
 * Bounded size: each store holds at most TL_SKETCH_MAX_BINS consecutive bin indexes, 2048 bins
 * spanning a ratio of gamma^2048 (about 6e17, 17.8 decades). When a new value would widen a
 * store beyond that, the bins of its lowest values are folded into the lowest bin kept: in the
 * positive store the smallest magnitudes, in the negative store the largest (the most negative
 * values). So the upper quantiles always keep the 1% guarantee: every quantile whose value lies
 * within 17.8 decades of the largest positive value (or, with no positive values, of the
 * negative value closest to zero) is within 1%; a value folded away is reported as the lowest
 * bin kept (too high). Folding commutes with merging: merging sketches gives the sketch of the
 * union, bins and all.
 *
 * Merging: tl_sketch_merge, or tl_sketch_decode into a sketch that already holds values (a
 * window's buckets are read by decoding each into one accumulator).
 *
 * Encoding (version 1), every integer explicit, nothing copied from a struct:
 *
 *   byte     version (TL_SKETCH_VERSION)
 *   varint   count: the number of observations
 *   varint   zero count
 *   8 bytes  sum, IEEE-754 binary64 bits, little endian (may be +-inf or NaN after overflow)
 *   8 bytes  min, likewise (finite; 0 when count is 0)
 *   8 bytes  max, likewise (finite, >= min; 0 when count is 0)
 *   store    the positive values, by bin index i in [TL_SKETCH_MIN_INDEX, TL_SKETCH_MAX_INDEX]
 *   store    the negative values, by the negated bin index -i of their magnitude
 *   where a store is:
 *     varint   the number of non-empty bins, at most TL_SKETCH_MAX_BINS
 *     per bin, by increasing index:
 *       varint   the first bin's index zigzag-encoded; each later bin's index minus the
 *                previous one's, minus 1 (indexes strictly increase)
 *       varint   its count (>= 1)
 *
 * Varints are LEB128 (7 bits a byte, least significant first, at most 10 bytes). A decoder
 * checks the version, every varint's length and range, the indexes (within the doubles' range,
 * increasing, spanning at most TL_SKETCH_MAX_BINS), that the counts add up to count, min and
 * max, and that nothing trails: any failure is TL_ECORRUPT and leaves the sketch unchanged.
 */
#ifndef TL_SKETCH_H
#define TL_SKETCH_H

#include <stddef.h>
#include <stdint.h>

struct tl_buf;

#define TL_SKETCH_ALPHA    0.01 /* relative accuracy of a quantile */
#define TL_SKETCH_MAX_BINS 2048 /* consecutive bin indexes per store (positive, negative) */
#define TL_SKETCH_VERSION  1
/* Bin indexes of every finite double's magnitude, from the smallest subnormal (about
 * 4.9e-324) to DBL_MAX, with alpha 0.01. */
#define TL_SKETCH_MIN_INDEX (-37300)
#define TL_SKETCH_MAX_INDEX 35600
/* The longest encoding: the header, then two full stores of 10-byte varints. */
#define TL_SKETCH_MAX_ENCODED_BYTES (1 + 10 + 10 + 24 + 2 * (10 + TL_SKETCH_MAX_BINS * 20))

/* The bins of one sign: counts[k] is the count of bin index offset + k, for k < len (the
 * negative store's indexes are the negated indexes of the magnitudes). */
struct tl_sketch_store {
    uint64_t *counts; /* heap, cap entries; NULL while empty */
    int32_t offset;
    uint32_t len, cap;
    uint64_t total; /* the sum of counts */
};

struct tl_sketch {
    struct tl_sketch_store pos, neg;
    uint64_t zero_count;
    uint64_t count;
    double sum, min, max; /* min and max are 0 while count is 0 */
};

/* An empty sketch (no allocation). */
void tl_sketch_init(struct tl_sketch *s);
/* Releases the bins; the sketch is empty again and may be reused. */
void tl_sketch_free(struct tl_sketch *s);

/* Adds one observation. 0, -EINVAL for a value that is not finite, or -ENOMEM (the sketch is
 * unchanged on failure). */
int tl_sketch_add(struct tl_sketch *s, double value);
/* Adds every observation of src to dst (another sketch). 0 or -ENOMEM (dst may then hold part of
 * src's bins, but its count, sum, min and max are not updated: free it). */
int tl_sketch_merge(struct tl_sketch *dst, const struct tl_sketch *src);

/* Appends the encoding of s to out. 0 or -ENOMEM (out is then as it was). */
int tl_sketch_encode(const struct tl_sketch *s, struct tl_buf *out);
/* Merges the sketch encoded in bytes[0..len) into s (an empty sketch to just decode it).
 * 0, TL_ECORRUPT (s is unchanged) or -ENOMEM (as for tl_sketch_merge). */
int tl_sketch_decode(struct tl_sketch *s, const void *bytes, size_t len);

/* The q-quantile (0 <= q <= 1) as described above; NaN when s is empty or q is out of range. */
double tl_sketch_quantile(const struct tl_sketch *s, double q);
uint64_t tl_sketch_count(const struct tl_sketch *s);
double tl_sketch_sum(const struct tl_sketch *s);
double tl_sketch_min(const struct tl_sketch *s); /* NaN when empty */
double tl_sketch_max(const struct tl_sketch *s); /* NaN when empty */

#endif
