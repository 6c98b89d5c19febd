/*
 * hash.h - the 64-bit key hash used by the memtable (slot and stripe choice) and, through its
 * high half, by the Bloom filters. Stored in Bloom filters on disk, so it must never change
 * for format version 1.
 */
#ifndef TL_HASH_H
#define TL_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint64_t tl_hash_mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

/* Reads 8-byte words, folding each in with a multiply; the tail is read byte by byte. */
static inline uint64_t tl_hash64(const void *key, size_t len)
{
    const uint8_t *p = key;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (len * 0x100000001b3ull);
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ tl_hash_mix(w)) * 0x9e3779b97f4a7c15ull;
        p += 8;
        len -= 8;
    }
    uint64_t t = 0;
    for (size_t i = 0; i < len; i++)
        t |= (uint64_t)p[i] << (8 * i);
    h = (h ^ tl_hash_mix(t ^ 0x5bd1e995u)) * 0x9e3779b97f4a7c15ull;
    return tl_hash_mix(h);
}

#endif
