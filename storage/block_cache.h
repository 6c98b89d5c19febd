/*
 * block_cache.h - a sharded LRU cache of decompressed SSTable blocks, keyed by file number
 * and block offset, bounded in bytes. Entries are reference counted: an entry evicted while a
 * reader holds it is freed when the reader releases it.
 */
#ifndef TL_BLOCK_CACHE_H
#define TL_BLOCK_CACHE_H

#include <stddef.h>
#include <stdint.h>

#define TL_BLOCK_CACHE_SHARDS 16

struct tl_block_cache;
struct tl_cached_block;

/* capacity 0 keeps nothing: every insert hands back a handle freed at its release. */
struct tl_block_cache *tl_block_cache_new(size_t capacity_bytes);
void tl_block_cache_free(struct tl_block_cache *c);

/* A handle with a reference, or NULL when absent. */
struct tl_cached_block *tl_block_cache_lookup(struct tl_block_cache *c, uint64_t file,
                                              uint64_t offset);
/* Takes ownership of data (malloc'd). If the block is already cached, data is freed and the
 * cached one returned. Returns a handle with a reference, or NULL on allocation failure
 * (data is then freed). */
struct tl_cached_block *tl_block_cache_insert(struct tl_block_cache *c, uint64_t file,
                                              uint64_t offset, uint8_t *data, size_t size);
/* From now on a block that would evict others enters only on its second insert within a
 * while (about twice as many inserts as blocks of typical_block_bytes fit); the first gets an
 * uncached handle. Call before the cache is shared. The memory of the first inserts (4 bytes
 * for each of those inserts, rounded up to a power of two a shard; 128 KiB for 64 MiB of 4 KiB
 * blocks) is outside the capacity. -ENOMEM (message set) on failure, leaving every shard
 * admitting everything or some of them remembering. */
int tl_block_cache_admit_on_second_miss(struct tl_block_cache *c, size_t typical_block_bytes);
void tl_block_cache_release(struct tl_block_cache *c, struct tl_cached_block *b);
const uint8_t *tl_cached_block_data(const struct tl_cached_block *b, size_t *size);

void tl_block_cache_stats(struct tl_block_cache *c, uint64_t *hits, uint64_t *misses,
                          uint64_t *bytes);

#endif
