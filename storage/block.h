/*
 * block.h - building and searching sorted key/value blocks (data and index blocks).
 *
 * Block contents (before compression):
 *     entries, each: varint shared (bytes shared with the previous key),
 *                    varint unshared, varint value length,
 *                    the unshared key bytes, the value bytes
 *     restart array: 4-byte little-endian offsets of the entries whose shared is 0, one every
 *                    restart_interval entries (the first entry is always one)
 *     4 bytes: number of restarts, little-endian
 * Seeking binary-searches the restart points, then scans forward.
 */
#ifndef TL_BLOCK_H
#define TL_BLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TL_BLOCK_RESTART_INTERVAL 16

struct tl_block_builder {
    uint8_t *buf;
    size_t len, cap;
    uint32_t *restarts;
    size_t n_restarts, cap_restarts;
    int restart_interval;
    int counter; /* entries since the last restart */
    uint8_t *last_key;
    size_t last_len, last_cap;
    size_t entries;
};

void tl_block_builder_init(struct tl_block_builder *b, int restart_interval);
void tl_block_builder_free(struct tl_block_builder *b);
/* Empties the builder for the next block, keeping its memory. */
void tl_block_builder_reset(struct tl_block_builder *b);
/* Keys must be added in strictly increasing order. Returns 0 or -ENOMEM. */
int tl_block_add(struct tl_block_builder *b, const void *key, size_t klen, const void *val,
                 size_t vlen);
/* The size the block will have when finished. */
size_t tl_block_size_estimate(const struct tl_block_builder *b);
bool tl_block_empty(const struct tl_block_builder *b);
/* Appends the restart array; returns the finished contents (valid until reset or free). */
const uint8_t *tl_block_finish(struct tl_block_builder *b, size_t *len);

/* Keys up to this long are rebuilt inside the iterator, without an allocation. */
#define TL_BLOCK_KEY_INLINE 64

/* An iterator over finished contents. It does not copy the block: keep it alive meanwhile.
 * It points into itself (key_inline): do not copy an initialized iterator. */
struct tl_block_iter {
    const uint8_t *data;
    size_t size; /* of the entries area */
    uint32_t n_restarts;
    const uint8_t *restarts;
    size_t cur;   /* offset of the current entry; size when not valid */
    size_t next;  /* offset of the entry after it */
    uint8_t *key; /* the current key, rebuilt from the shared prefix: in key_inline, or
                   * malloc'd once a key is longer */
    size_t klen, kcap;
    const uint8_t *val;
    size_t vlen;
    int status;                              /* 0, or TL_ECORRUPT once a malformed entry was met */
    uint8_t key_inline[TL_BLOCK_KEY_INLINE]; /* last: init clears what comes before it */
};

/* Returns 0 or TL_ECORRUPT when the restart array does not fit the contents. */
int tl_block_iter_init(struct tl_block_iter *it, const uint8_t *data, size_t size);
void tl_block_iter_free(struct tl_block_iter *it);
void tl_block_iter_first(struct tl_block_iter *it);
/* Positions at the first entry whose key is >= key (not valid if there is none). */
void tl_block_iter_seek(struct tl_block_iter *it, const void *key, size_t klen);
void tl_block_iter_next(struct tl_block_iter *it);
static inline bool tl_block_iter_valid(const struct tl_block_iter *it)
{
    return it->status == 0 && it->cur < it->size;
}

/* Checks what seeking relies on and a scan does not see: restart 0 is the first entry, and
 * every restart offset is the start of an entry that shares no prefix, in increasing order.
 * Returns 0, TL_ECORRUPT, or -ENOMEM. */
int tl_block_check_restarts(const uint8_t *data, size_t size);

#endif
