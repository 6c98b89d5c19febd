/*
 * block.c - building and searching sorted key/value blocks (the format is in block.h).
 *
 * The builder appends prefix-compressed entries to one growing buffer and remembers the offset
 * of every restart entry (shared = 0); finishing appends the restart array and its count.
 *
 * The iterator treats the contents as untrusted: every varint, length and restart offset is
 * checked against the entries area before use, and a malformed entry sets status to
 * TL_ECORRUPT and leaves the iterator invalid. Blocks normally come from a checksummed file, so
 * this is what stands between a bug or a bad disk and an out-of-bounds read.
 */
#include "block.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "coding.h"
#include "grow.h"
#include "tallystore.h"

/* Every block ends with the count of restarts, a 4-byte little-endian integer. */
#define BLOCK_COUNT_BYTES   4
#define BLOCK_RESTART_BYTES 4
/* Sizes of the first allocations; buffers double from there. */
#define BLOCK_INITIAL_BYTES    256
#define BLOCK_INITIAL_RESTARTS 16
#define BLOCK_INITIAL_KEY      64
/* Three varints head each entry. */
#define BLOCK_ENTRY_HEADER_MAX (3 * TL_VARINT64_MAX_BYTES)

void tl_block_builder_init(struct tl_block_builder *b, int restart_interval)
{
    memset(b, 0, sizeof *b);
    b->restart_interval = restart_interval > 0 ? restart_interval : TL_BLOCK_RESTART_INTERVAL;
}

void tl_block_builder_free(struct tl_block_builder *b)
{
    free(b->buf);
    free(b->restarts);
    free(b->last_key);
    memset(b, 0, sizeof *b);
}

void tl_block_builder_reset(struct tl_block_builder *b)
{
    b->len = 0;
    b->n_restarts = 0;
    b->counter = 0;
    b->last_len = 0;
    b->entries = 0;
}

bool tl_block_empty(const struct tl_block_builder *b)
{
    return b->entries == 0;
}

size_t tl_block_size_estimate(const struct tl_block_builder *b)
{
    return b->len + b->n_restarts * BLOCK_RESTART_BYTES + BLOCK_COUNT_BYTES;
}

int tl_block_add(struct tl_block_builder *b, const void *key, size_t klen, const void *val,
                 size_t vlen)
{
    assert(b->entries == 0 || tl_key_cmp(b->last_key, b->last_len, key, klen) < 0);
    bool restart = b->entries == 0 || b->counter >= b->restart_interval;
    size_t shared = 0;
    if (!restart) {
        size_t max = klen < b->last_len ? klen : b->last_len;
        const uint8_t *k = key;
        while (shared < max && k[shared] == b->last_key[shared])
            shared++;
    }
    size_t unshared = klen - shared;

    if (tl_grow((void **)&b->buf, &b->cap, b->len + BLOCK_ENTRY_HEADER_MAX + unshared + vlen, 1,
                BLOCK_INITIAL_BYTES) < 0)
        return -ENOMEM;
    if (restart && tl_grow((void **)&b->restarts, &b->cap_restarts, b->n_restarts + 1,
                           sizeof *b->restarts, BLOCK_INITIAL_RESTARTS) < 0)
        return -ENOMEM;
    if (tl_grow((void **)&b->last_key, &b->last_cap, klen, 1, BLOCK_INITIAL_KEY) < 0)
        return -ENOMEM;

    if (restart) {
        b->restarts[b->n_restarts++] = (uint32_t)b->len;
        b->counter = 0;
    }
    uint8_t *p = b->buf + b->len;
    p += tl_put_varint(p, shared);
    p += tl_put_varint(p, unshared);
    p += tl_put_varint(p, vlen);
    memcpy(p, (const uint8_t *)key + shared, unshared);
    p += unshared;
    if (vlen)
        memcpy(p, val, vlen);
    p += vlen;
    b->len = (size_t)(p - b->buf);

    if (unshared)
        memcpy(b->last_key + shared, (const uint8_t *)key + shared, unshared);
    b->last_len = klen;
    b->counter++;
    b->entries++;
    return 0;
}

const uint8_t *tl_block_finish(struct tl_block_builder *b, size_t *len)
{
    size_t need = tl_block_size_estimate(b);
    /* The builder's own buffer gets the trailer: it cannot fail for lack of room because the
     * entries reserved BLOCK_ENTRY_HEADER_MAX each, but an empty block may have no buffer. */
    if (tl_grow((void **)&b->buf, &b->cap, need, 1, BLOCK_INITIAL_BYTES) < 0)
        return NULL;
    uint8_t *p = b->buf + b->len;
    for (size_t i = 0; i < b->n_restarts; i++, p += BLOCK_RESTART_BYTES)
        tl_put_u32(p, b->restarts[i]);
    tl_put_u32(p, (uint32_t)b->n_restarts);
    *len = need;
    return b->buf;
}

/* Marks the iterator corrupt and invalid. */
static void iter_corrupt(struct tl_block_iter *it)
{
    it->status = TL_ECORRUPT;
    it->cur = it->size;
    it->next = it->size;
}

int tl_block_iter_init(struct tl_block_iter *it, const uint8_t *data, size_t size)
{
    memset(it, 0, offsetof(struct tl_block_iter, key_inline));
    it->key = it->key_inline;
    it->kcap = sizeof it->key_inline;
    it->data = data;
    if (size < BLOCK_COUNT_BYTES) {
        iter_corrupt(it);
        return TL_ECORRUPT;
    }
    uint32_t n = tl_get_u32(data + size - BLOCK_COUNT_BYTES);
    size_t room = (size - BLOCK_COUNT_BYTES) / BLOCK_RESTART_BYTES;
    if (n > room) {
        iter_corrupt(it);
        return TL_ECORRUPT;
    }
    it->size = size - BLOCK_COUNT_BYTES - (size_t)n * BLOCK_RESTART_BYTES;
    /* Entries without a restart point could not be searched. */
    if (n == 0 && it->size > 0) {
        it->size = 0;
        iter_corrupt(it);
        return TL_ECORRUPT;
    }
    it->n_restarts = n;
    it->restarts = data + it->size;
    it->cur = it->size;
    it->next = it->size;
    return 0;
}

void tl_block_iter_free(struct tl_block_iter *it)
{
    if (it->key != it->key_inline)
        free(it->key);
    it->key = it->key_inline;
    it->kcap = sizeof it->key_inline;
    it->klen = 0;
}

/* The header of the entry at off: its three lengths, and where its unshared key bytes start.
 * False when they do not fit the entries area, or the key would be longer than any writer
 * makes (sst_builder.c refuses one; without this bound, keys that each grow the last by a byte
 * would make the index's copies quadratic in its size). */
static bool entry_header(const struct tl_block_iter *it, size_t off, uint64_t *shared,
                         uint64_t *unshared, uint64_t *vlen, const uint8_t **key)
{
    const uint8_t *p = it->data + off, *end = it->data + it->size;
    size_t n;
    if (end - p >= 3 && (p[0] | p[1] | p[2]) < 0x80) {
        /* The usual entry: three lengths under 128, a byte each. */
        *shared = p[0];
        *unshared = p[1];
        *vlen = p[2];
        p += 3;
    } else {
        if (!(n = tl_get_varint(p, end, shared)))
            return false;
        p += n;
        if (!(n = tl_get_varint(p, end, unshared)))
            return false;
        p += n;
        if (!(n = tl_get_varint(p, end, vlen)))
            return false;
        p += n;
    }
    size_t left = (size_t)(end - p);
    if (*unshared > left || *vlen > left - *unshared || *shared > TL_MAX_KEY_BYTES ||
        *unshared > TL_MAX_KEY_BYTES - *shared)
        return false;
    *key = p;
    return true;
}

/* Decodes the entry at off, rebuilding the key from the previous one. Returns false (with
 * status set) when the entry is malformed. */
static bool decode_at(struct tl_block_iter *it, size_t off)
{
    uint64_t shared, unshared, vlen;
    const uint8_t *p;
    if (!entry_header(it, off, &shared, &unshared, &vlen, &p) || shared > it->klen)
        goto corrupt;
    size_t klen = (size_t)(shared + unshared);
    if (klen > it->kcap) {
        size_t cap = it->kcap;
        while (cap < klen)
            cap *= 2;
        bool inline_key = it->key == it->key_inline;
        uint8_t *k = realloc(inline_key ? NULL : it->key, cap);
        if (!k) {
            it->status = -ENOMEM;
            it->cur = it->next = it->size;
            return false;
        }
        if (inline_key)
            memcpy(k, it->key_inline, (size_t)shared);
        it->key = k;
        it->kcap = cap;
    }
    if (unshared)
        memcpy(it->key + shared, p, (size_t)unshared);
    it->klen = klen;
    it->val = p + unshared;
    it->vlen = (size_t)vlen;
    it->cur = off;
    it->next = (size_t)(it->val + vlen - it->data);
    return true;
corrupt:
    iter_corrupt(it);
    return false;
}

/* Offset of restart i, or size (with status set) if it points outside the entries. */
static size_t restart_offset(struct tl_block_iter *it, uint32_t i)
{
    uint32_t off = tl_get_u32(it->restarts + (size_t)i * BLOCK_RESTART_BYTES);
    if (off >= it->size) {
        iter_corrupt(it);
        return it->size;
    }
    return off;
}

/* Positions at the entry of restart i. A restart entry must not share a prefix. */
static bool seek_restart(struct tl_block_iter *it, uint32_t i)
{
    size_t off = restart_offset(it, i);
    if (it->status)
        return false;
    it->klen = 0; /* a restart entry with shared > 0 is then caught as corrupt */
    return decode_at(it, off);
}

/* The key of restart i, read where it lies (a restart entry shares no prefix), for the binary
 * search; false (status set) if the entry is malformed. */
static bool restart_key(struct tl_block_iter *it, uint32_t i, const uint8_t **key, size_t *klen)
{
    size_t off = restart_offset(it, i);
    if (it->status)
        return false;
    uint64_t shared, unshared, vlen;
    if (!entry_header(it, off, &shared, &unshared, &vlen, key) || shared != 0) {
        iter_corrupt(it);
        return false;
    }
    *klen = (size_t)unshared;
    return true;
}

void tl_block_iter_first(struct tl_block_iter *it)
{
    if (it->status)
        return;
    if (it->n_restarts == 0) {
        it->cur = it->next = it->size;
        return;
    }
    seek_restart(it, 0);
}

void tl_block_iter_next(struct tl_block_iter *it)
{
    if (!tl_block_iter_valid(it))
        return;
    if (it->next >= it->size) {
        it->cur = it->size;
        return;
    }
    decode_at(it, it->next);
}

void tl_block_iter_seek(struct tl_block_iter *it, const void *key, size_t klen)
{
    if (it->status)
        return;
    if (it->n_restarts == 0) {
        it->cur = it->next = it->size;
        return;
    }
    /* Find the last restart whose key is < key: the target is at or after it. */
    uint32_t lo = 0, hi = it->n_restarts - 1;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo + 1) / 2;
        const uint8_t *rk;
        size_t rlen;
        if (!restart_key(it, mid, &rk, &rlen))
            return;
        if (tl_key_cmp(rk, rlen, key, klen) < 0)
            lo = mid;
        else
            hi = mid - 1;
    }
    if (!seek_restart(it, lo))
        return;
    while (tl_block_iter_valid(it) && tl_key_cmp(it->key, it->klen, key, klen) < 0)
        tl_block_iter_next(it);
}

int tl_block_check_restarts(const uint8_t *data, size_t size)
{
    struct tl_block_iter it;
    if (tl_block_iter_init(&it, data, size) < 0)
        return TL_ECORRUPT;
    /* Scanning starts at restart 0, so its first entry must be the block's first. */
    uint32_t r = 0;
    int rc = 0;
    tl_block_iter_first(&it);
    if (tl_block_iter_valid(&it) && it.cur != 0)
        rc = TL_ECORRUPT;
    for (; tl_block_iter_valid(&it) && rc == 0; tl_block_iter_next(&it)) {
        size_t due =
            r < it.n_restarts ? tl_get_u32(it.restarts + (size_t)r * BLOCK_RESTART_BYTES) : it.size;
        uint64_t shared = 0;
        if (due < it.cur)
            rc = TL_ECORRUPT; /* restart r points inside an entry, or restarts go backwards */
        if (due != it.cur)
            continue;
        /* decode_at read this varint already: it is whole. */
        tl_get_varint(it.data + it.cur, it.data + it.size, &shared);
        if (shared != 0)
            rc = TL_ECORRUPT;
        r++;
    }
    if (rc == 0 && it.status)
        rc = it.status;
    if (rc == 0 && r != it.n_restarts)
        rc = TL_ECORRUPT;
    tl_block_iter_free(&it);
    return rc;
}
