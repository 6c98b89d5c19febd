/*
 * bloom.h - the Bloom filter of an SSTable: one filter for the whole file, about
 * bits_per_key bits a key, probed from the key's tl_hash64.
 *
 * Filter bytes, format 2 (written since 2026-11): blocks of 64 bytes, a key's k bits all in one
 * of them (bloom.c says how they are chosen), then one byte: 0x80 | k. Format 1 (written
 * before, still read): a bit array of whole bytes (at least 64 bits) probed by double hashing
 * over all of it, then one byte: k. A filter whose k is 0 or over 30, or a format 2 filter
 * that is not whole blocks, is treated as "may contain" for every key, so that a future format
 * is read safely (and format 2 filters are safe in builds that only know format 1).
 */
#ifndef TL_BLOOM_H
#define TL_BLOOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Builds the filter of n keys given their tl_hash64 values. *out is malloc'd. */
int tl_bloom_build(const uint64_t *hashes, size_t n, int bits_per_key, uint8_t **out, size_t *len);
bool tl_bloom_may_contain(const uint8_t *filter, size_t len, uint64_t hash);

#endif
