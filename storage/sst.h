/*
 * sst.h - SSTables: immutable sorted files of (key, entry value) pairs, one entry per key.
 *
 * File DIR/NNNNNN.sst:
 *     data blocks     block.h contents, each compressed or not, each followed by a
 *                     5-byte trailer: 1 byte compression type (enum tl_compression),
 *                     4 bytes masked CRC32C of the stored contents and the type byte
 *     filter block    bloom.h bytes, with the same trailer (never compressed)
 *     props block     a block.h block of named properties (see struct tl_sst_props), trailer
 *     index block     a block.h block: for each data block, key = the block's last key,
 *                     value = varint offset, varint stored size (without trailer); trailer
 *     footer          48 bytes, little-endian:
 *                       filter offset u64, filter size u32,
 *                       props offset u64, props size u32,
 *                       index offset u64, index size u32,
 *                       format version u32 (1),
 *                       magic u64 0x54414c4c59535354 ("TALLYSST")
 *                     sizes are stored sizes without the trailer; filter size 0 means the
 *                     table has no filter (bloom_bits_per_key 0) and no filter block
 * A block's compression is the table's setting unless compressing saves less than 1/8 of its
 * size; then it is stored with type NONE.
 */
#ifndef TL_SST_H
#define TL_SST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "block.h"
#include "block_cache.h"
#include "record.h"
#include "tallystore.h"

#define TL_SST_MAGIC         0x54414c4c59535354ull
#define TL_SST_VERSION       1
#define TL_SST_FOOTER_BYTES  48
#define TL_SST_TRAILER_BYTES 5
/* Largest block a reader accepts (a bigger size field is corruption). */
#define TL_SST_MAX_BLOCK_BYTES (64u << 20)

struct tl_sst_builder_options {
    size_t block_size_bytes;
    int bloom_bits_per_key;
    enum tl_compression compression;
    int zstd_level;
};

/* Properties of a table, computed by the builder and stored in the props block. */
struct tl_sst_props {
    uint64_t entries;
    uint64_t raw_key_bytes;
    uint64_t raw_value_bytes;
    uint64_t data_blocks;
    uint64_t data_bytes;       /* stored size of the data blocks */
    uint64_t deletes;          /* DELETE entries */
    uint64_t merges;           /* MERGE_INT and EXPIRE entries */
    uint64_t expiring_entries; /* entries with an expiry */
    int64_t expire_p50_ms;     /* median expiry among those; 0 if none */
    uint64_t file_size;
    uint8_t *smallest; /* malloc'd copies of the first and last keys */
    size_t smallest_len;
    uint8_t *largest;
    size_t largest_len;
};
void tl_sst_props_free(struct tl_sst_props *p);

struct tl_sst_builder;

/* Creates the file at path (it must not exist). Blocks are written through io_uring in
 * batches as they fill. */
int tl_sst_builder_new(const char *path, const struct tl_sst_builder_options *o,
                       struct tl_sst_builder **out);
/* val is an encoded entry value (record.h). Keys strictly increasing. */
int tl_sst_builder_add(struct tl_sst_builder *b, const void *key, size_t klen, const uint8_t *val,
                       size_t vlen);
/* Bytes the file will have if finished now (approximately). */
uint64_t tl_sst_builder_size(const struct tl_sst_builder *b);
uint64_t tl_sst_builder_entries(const struct tl_sst_builder *b);
/* Writes the filter, props, index and footer, syncs and closes the file, frees the builder.
 * props (may be NULL) receives the table's properties. On failure the file is removed. */
int tl_sst_builder_finish(struct tl_sst_builder *b, struct tl_sst_props *props);
/* Closes and removes the file, frees the builder. */
void tl_sst_builder_abandon(struct tl_sst_builder *b);

/* An open table: its footer, index, filter and props are held in memory; data blocks are read
 * through io_uring into the block cache. Thread-safe for reads. */
struct tl_sst;

int tl_sst_open(const char *path, uint64_t number, struct tl_block_cache *cache,
                struct tl_sst **out);
void tl_sst_close(struct tl_sst *t);
const struct tl_sst_props *tl_sst_get_props(const struct tl_sst *t);
uint64_t tl_sst_number(const struct tl_sst *t);
const char *tl_sst_path(const struct tl_sst *t);

/* Where a data block is, from the index. */
struct tl_block_handle {
    uint64_t offset;
    uint64_t size; /* stored size, without the trailer */
};

/* A block held in the cache for as long as the caller needs it. */
struct tl_block_ref {
    struct tl_sst *table;
    struct tl_cached_block *cached;
    const uint8_t *data;
    size_t size;
    uint64_t offset; /* of the block in its file, for error messages */
};
void tl_block_ref_release(struct tl_block_ref *r);

/* The filter's verdict on a key with tl_hash64 hash (true without a filter). */
bool tl_sst_may_contain(const struct tl_sst *t, uint64_t hash);
/* The data block that would hold key; false if key is past the table's last key. */
bool tl_sst_find_block(const struct tl_sst *t, const void *key, size_t klen,
                       struct tl_block_handle *h);
/* Block h of t if the cache holds it: 1 with *ref holding it, 0 (a miss, counted in the
 * cache's statistics) with nothing held, or TL_ECORRUPT if h lies outside the table's data. */
int tl_sst_cached_block(struct tl_sst *t, const struct tl_block_handle *h,
                        struct tl_block_ref *ref);
/* Gets n blocks, possibly of different tables, from the cache or with one batch of reads (one
 * io_uring submission for all the misses), verifying each checksum and decompressing. The
 * first `missed` blocks are not looked up in the cache (tl_sst_cached_block just missed
 * them). refs[i] is filled for every i on success; on failure none is held. TL_ECORRUPT names
 * the file and offset of the bad block. */
int tl_sst_read_blocks(struct tl_sst **tables, const struct tl_block_handle *handles, size_t n,
                       struct tl_block_ref *refs, size_t missed);
/* Looks key up in a block read above: 1 and *val, *vlen pointing into the block if present,
 * 0 if not, TL_ECORRUPT. */
int tl_sst_block_get(const struct tl_block_ref *ref, const void *key, size_t klen,
                     const uint8_t **val, size_t *vlen);
/* Convenience for a single table: filter, index, block read and search. 1 found (ref holds the
 * block val points into; release it), 0 absent, < 0 error. */
int tl_sst_get(struct tl_sst *t, const void *key, size_t klen, uint64_t hash,
               struct tl_block_ref *ref, const uint8_t **val, size_t *vlen);

/* A forward iterator over a table. fill_cache false keeps a long scan (compaction) from
 * flushing the cache: its blocks are read ahead in batches through io_uring and not cached. */
struct tl_sst_iter;
int tl_sst_iter_new(struct tl_sst *t, bool fill_cache, struct tl_sst_iter **out);
/* Positions at the first key >= key (klen 0 with key NULL: the first key). */
int tl_sst_iter_seek(struct tl_sst_iter *it, const void *key, size_t klen);
int tl_sst_iter_next(struct tl_sst_iter *it);
bool tl_sst_iter_valid(const struct tl_sst_iter *it);
const uint8_t *tl_sst_iter_key(const struct tl_sst_iter *it, size_t *klen);
const uint8_t *tl_sst_iter_value(const struct tl_sst_iter *it, size_t *vlen);
void tl_sst_iter_free(struct tl_sst_iter *it);

/* Reads every block of the file at path and checks its checksum and format, calling progress
 * (may be NULL) after each block with the bytes checked so far and the file size. Returns 0 or
 * the first error (TL_ECORRUPT naming file and offset). */
typedef void (*tl_sst_progress_fn)(void *arg, uint64_t done_bytes, uint64_t total_bytes);
int tl_sst_verify(const char *path, tl_sst_progress_fn progress, void *arg);

#endif
