/*
 * coding.h - explicit little-endian fixed-width and varint encodings used by every on-disk
 * format. Nothing on disk is a copied C struct.
 *
 * Varints are LEB128: 7 bits a byte, low bits first, high bit set on every byte but the last.
 * Signed values are zigzag-mapped first so that small negatives stay short.
 */
#ifndef TL_CODING_H
#define TL_CODING_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define TL_VARINT64_MAX_BYTES 10

static inline void tl_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline void tl_put_u64(uint8_t *p, uint64_t v)
{
    tl_put_u32(p, (uint32_t)v);
    tl_put_u32(p + 4, (uint32_t)(v >> 32));
}

static inline uint32_t tl_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t tl_get_u64(const uint8_t *p)
{
    return (uint64_t)tl_get_u32(p) | (uint64_t)tl_get_u32(p + 4) << 32;
}

/* Writes v at p; returns the number of bytes written (1..10). */
/* Big endian, for keys that must sort by the number. */
static inline void tl_put_u64_be(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static inline uint64_t tl_get_u64_be(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static inline size_t tl_put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

static inline size_t tl_varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Reads a varint from [p, end). Returns the bytes consumed, or 0 if the input is truncated or
 * longer than 10 bytes (corrupt). */
static inline size_t tl_get_varint(const uint8_t *p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;
    for (size_t i = 0; i < TL_VARINT64_MAX_BYTES && p + i < end; i++) {
        uint64_t b = p[i];
        r |= (b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *v = r;
            return i + 1;
        }
    }
    return 0;
}

static inline uint64_t tl_zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static inline int64_t tl_unzigzag(uint64_t v)
{
    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

/* The 8 bytes of k from off as a big-endian word, bytes past len taken as 0. Keys that agree
 * before off compare as their words do, unless the words are equal (zero padding ties "a" with
 * "a\0"): sorting and searching on words touches whole keys only on a tie. */
static inline uint64_t tl_key_word(const uint8_t *k, size_t len, size_t off)
{
    uint8_t b[8] = {0};
    if (off < len)
        memcpy(b, k + off, len - off < 8 ? len - off : 8);
    return tl_get_u64_be(b);
}

/* Lexicographic byte comparison, shorter first on a common prefix. */
static inline int tl_key_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

#endif
