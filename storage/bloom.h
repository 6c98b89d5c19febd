/*
 * bloom.h - the Bloom filter of an SSTable: one filter for the whole file, about
 * bits_per_key bits a key, probed with double hashing from the key's tl_hash64.
 *
 * Filter bytes: the bit array (a whole number of bytes, at least 64 bits), then one byte with
 * the number of probes k. A filter whose k is over 30 is treated as "may contain" for every
 * key, so that a future format with other probes is read safely.
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
