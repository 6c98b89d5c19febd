/*
 * test_block_cache.c - unit tests of the block cache: exact hit and miss counts, LRU eviction
 * order within a shard, admission of a block on its second insert into a full shard, the byte
 * bound, handles that outlive eviction, capacity 0, and lookups and inserts from several
 * threads at once (meant to be run under -fsanitize=thread and -fsanitize=address as well).
 *
 * The tests know neither the per-entry overhead nor the shard of a key: they measure the first
 * (the bytes figure after one insert) and find keys that share a shard by experiment, in a cache
 * whose shards hold one entry each.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "block_cache.h"
#include "testutil.h"

#define BLOCK_BYTES           1000
#define SHARD_PROBE_MAX_TRIES 100000
#define SAME_SHARD_KEYS       5
#define BOUND_INSERTS         5000
#define BOUND_MAX_BLOCK_BYTES 4096
#define THREADS               4
#define THREAD_OPS            200000
#define THREAD_KEYS           4096

/* A malloc'd block whose bytes are derived from its key, so a reader can tell it got the right
 * one. */
static uint8_t *make_block(uint64_t file, uint64_t offset, size_t size)
{
    uint8_t *d = malloc(size ? size : 1);
    CHECK(d != NULL);
    for (size_t i = 0; i < size; i++)
        d[i] = (uint8_t)(file * 31 + offset * 7 + i);
    return d;
}

static int block_matches(const struct tl_cached_block *b, uint64_t file, uint64_t offset,
                         size_t size)
{
    size_t got;
    const uint8_t *d = tl_cached_block_data(b, &got);
    if (got != size)
        return 0;
    for (size_t i = 0; i < size; i++)
        if (d[i] != (uint8_t)(file * 31 + offset * 7 + i))
            return 0;
    return 1;
}

static void put(struct tl_block_cache *c, uint64_t file, uint64_t offset, size_t size)
{
    struct tl_cached_block *b =
        tl_block_cache_insert(c, file, offset, make_block(file, offset, size), size);
    CHECK(b != NULL);
    CHECK(block_matches(b, file, offset, size));
    tl_block_cache_release(c, b);
}

/* 1 if (file, offset) is cached; the lookup counts as a hit or a miss. */
static int present(struct tl_block_cache *c, uint64_t file, uint64_t offset)
{
    struct tl_cached_block *b = tl_block_cache_lookup(c, file, offset);
    if (!b)
        return 0;
    tl_block_cache_release(c, b);
    return 1;
}

static uint64_t cache_bytes(struct tl_block_cache *c)
{
    uint64_t h, m, bytes;
    tl_block_cache_stats(c, &h, &m, &bytes);
    return bytes;
}

/* What one entry of size bytes is charged: measured in an empty cache. */
static uint64_t entry_charge(size_t size)
{
    struct tl_block_cache *c = tl_block_cache_new(1 << 20);
    CHECK(c != NULL);
    put(c, 1, 0, size);
    uint64_t charge = cache_bytes(c);
    tl_block_cache_free(c);
    CHECK(charge >= size);
    return charge;
}

/* Fills offsets[0..n) with block offsets of file 1 that fall in one shard, offsets[0] = 0.
 * In a cache whose every shard holds exactly one entry, inserting a key evicts key 0 exactly
 * when both are in the same shard. */
static void same_shard_offsets(uint64_t charge, uint64_t *offsets, int n)
{
    struct tl_block_cache *c = tl_block_cache_new(charge * TL_BLOCK_CACHE_SHARDS);
    CHECK(c != NULL);
    int found = 0;
    offsets[found++] = 0;
    put(c, 1, 0, BLOCK_BYTES);
    for (uint64_t off = 1; found < n && off < SHARD_PROBE_MAX_TRIES; off++) {
        put(c, 1, off, BLOCK_BYTES);
        if (!present(c, 1, 0)) {
            offsets[found++] = off;
            put(c, 1, 0, BLOCK_BYTES);
        }
    }
    CHECK_EQ_INT(found, n);
    tl_block_cache_free(c);
}

static void test_hits_and_misses_are_counted_exactly(void)
{
    struct tl_block_cache *c = tl_block_cache_new(1 << 20);
    CHECK(c != NULL);
    uint64_t hits, misses, bytes;

    tl_block_cache_stats(c, &hits, &misses, &bytes);
    CHECK_EQ_INT(hits, 0);
    CHECK_EQ_INT(misses, 0);
    CHECK_EQ_INT(bytes, 0);

    CHECK(!present(c, 7, 4096));
    CHECK(!present(c, 7, 8192));
    put(c, 7, 4096, BLOCK_BYTES); /* an insert is neither a hit nor a miss */
    CHECK(present(c, 7, 4096));
    CHECK(present(c, 7, 4096));
    CHECK(!present(c, 7, 8192));
    CHECK(!present(c, 8, 4096)); /* same offset, other file */

    struct tl_cached_block *b = tl_block_cache_lookup(c, 7, 4096);
    CHECK(b != NULL);
    CHECK(block_matches(b, 7, 4096, BLOCK_BYTES));
    tl_block_cache_release(c, b);

    tl_block_cache_stats(c, &hits, &misses, &bytes);
    CHECK_EQ_INT(hits, 3);
    CHECK_EQ_INT(misses, 4);
    CHECK_EQ_INT(bytes, entry_charge(BLOCK_BYTES));
    tl_block_cache_free(c);
}

static void test_insert_of_cached_block_returns_the_cached_copy(void)
{
    struct tl_block_cache *c = tl_block_cache_new(1 << 20);
    CHECK(c != NULL);
    put(c, 3, 0, BLOCK_BYTES);
    uint64_t before = cache_bytes(c);

    /* A second copy with other contents: it is freed and the first one handed back. */
    uint8_t *other = calloc(1, BLOCK_BYTES / 2);
    CHECK(other != NULL);
    struct tl_cached_block *b = tl_block_cache_insert(c, 3, 0, other, BLOCK_BYTES / 2);
    CHECK(b != NULL);
    CHECK(block_matches(b, 3, 0, BLOCK_BYTES));
    tl_block_cache_release(c, b);
    CHECK_EQ_INT(cache_bytes(c), before);
    tl_block_cache_free(c);
}

/* A cache whose every shard holds exactly three entries of BLOCK_BYTES, with keys k[] of one
 * shard, k0 k1 k2 inserted (oldest first); admission on if asked. */
static struct tl_block_cache *three_in_a_shard(bool admission, uint64_t *charge, uint64_t *k)
{
    *charge = entry_charge(BLOCK_BYTES);
    same_shard_offsets(*charge, k, SAME_SHARD_KEYS);
    struct tl_block_cache *c = tl_block_cache_new(3 * *charge * TL_BLOCK_CACHE_SHARDS);
    CHECK(c != NULL);
    if (admission)
        CHECK_OK(tl_block_cache_admit_on_second_miss(c, BLOCK_BYTES));
    for (int i = 0; i < 3; i++)
        put(c, 1, k[i], BLOCK_BYTES);
    CHECK_EQ_INT(cache_bytes(c), 3 * *charge);
    return c;
}

static void test_eviction_is_least_recently_used_first(void)
{
    uint64_t charge, k[SAME_SHARD_KEYS];
    struct tl_block_cache *c = three_in_a_shard(false, &charge, k);

    /* A lookup makes k0 the most recent: the order, oldest first, is k1 k2 k0. */
    CHECK(present(c, 1, k[0]));
    put(c, 1, k[3], BLOCK_BYTES); /* evicts k1 -> k2 k0 k3 */
    CHECK_EQ_INT(cache_bytes(c), 3 * charge);
    CHECK(!present(c, 1, k[1]));

    /* An insert of a cached key also refreshes it: k2 becomes the most recent. */
    struct tl_cached_block *b = tl_block_cache_insert(c, 1, k[2], make_block(1, k[2], 8), 8);
    CHECK(b != NULL);
    CHECK(block_matches(b, 1, k[2], BLOCK_BYTES));
    tl_block_cache_release(c, b); /* k0 k3 k2 */

    put(c, 1, k[4], BLOCK_BYTES); /* evicts k0 -> k3 k2 k4 */
    CHECK(!present(c, 1, k[0]));
    CHECK(present(c, 1, k[3]));   /* k2 k4 k3 */
    put(c, 1, k[1], BLOCK_BYTES); /* evicts k2 -> k4 k3 k1 */
    CHECK(!present(c, 1, k[2]));
    CHECK(present(c, 1, k[4]));
    CHECK(present(c, 1, k[3]));
    CHECK(present(c, 1, k[1]));
    CHECK_EQ_INT(cache_bytes(c), 3 * charge);

    /* A block twice as large makes room for itself by evicting the two oldest: k4 and k3. */
    put(c, 1, k[0], 2 * BLOCK_BYTES); /* k1 k0 */
    CHECK(!present(c, 1, k[4]));
    CHECK(!present(c, 1, k[3]));
    CHECK(present(c, 1, k[1]));
    CHECK(present(c, 1, k[0]));
    CHECK_EQ_INT(cache_bytes(c), entry_charge(BLOCK_BYTES) + entry_charge(2 * BLOCK_BYTES));
    tl_block_cache_free(c);
}

/* With admission on, a full shard takes a block on its second insert only; the first gets a
 * handle of its own, and evicts nothing. */
static void test_full_shard_admits_on_the_second_insert(void)
{
    uint64_t charge, k[SAME_SHARD_KEYS];
    struct tl_block_cache *c = three_in_a_shard(true, &charge, k); /* admitted: there was room */
    put(c, 1, k[3], BLOCK_BYTES); /* full, first time: not cached, nothing evicted */
    CHECK(!present(c, 1, k[3]));
    CHECK(present(c, 1, k[0])); /* k0 k1 k2 by age, oldest first */
    CHECK(present(c, 1, k[1]));
    CHECK(present(c, 1, k[2]));
    CHECK_EQ_INT(cache_bytes(c), 3 * charge);
    put(c, 1, k[3], BLOCK_BYTES); /* second time: admitted, evicts k0 */
    CHECK(present(c, 1, k[3]));
    CHECK(!present(c, 1, k[0]));
    CHECK(present(c, 1, k[1]));
    CHECK(present(c, 1, k[2]));
    /* An uncached handle is valid until released. */
    struct tl_cached_block *b =
        tl_block_cache_insert(c, 1, k[4], make_block(1, k[4], BLOCK_BYTES), BLOCK_BYTES);
    CHECK(b != NULL);
    CHECK(!present(c, 1, k[4]));
    CHECK(block_matches(b, 1, k[4], BLOCK_BYTES));
    tl_block_cache_release(c, b);
    CHECK_EQ_INT(cache_bytes(c), 3 * charge);
    tl_block_cache_free(c);
}

static void test_bytes_never_exceed_capacity(void)
{
    const size_t capacity = 100 * 1024;
    struct tl_block_cache *c = tl_block_cache_new(capacity);
    CHECK(c != NULL);
    uint64_t rng = 42, max_bytes = 0;
    for (int i = 0; i < BOUND_INSERTS; i++) {
        /* A key may come back with another size: the cached copy wins, so no content check. */
        size_t size = 1 + test_rand(&rng) % BOUND_MAX_BLOCK_BYTES;
        uint64_t file = test_rand(&rng) % 16, offset = test_rand(&rng) % 1000 * 4096;
        struct tl_cached_block *b =
            tl_block_cache_insert(c, file, offset, make_block(file, offset, size), size);
        CHECK(b != NULL);
        tl_block_cache_release(c, b);
        uint64_t bytes = cache_bytes(c);
        CHECK(bytes <= capacity);
        if (bytes > max_bytes)
            max_bytes = bytes;
    }
    /* The cache is used, not just bounded: at least half full by the end. */
    CHECK(max_bytes >= capacity / 2);
    tl_block_cache_free(c);
}

static void test_held_entry_survives_eviction_until_released(void)
{
    uint64_t charge = entry_charge(BLOCK_BYTES);
    uint64_t k[2];
    same_shard_offsets(charge, k, 2);

    struct tl_block_cache *c = tl_block_cache_new(charge * TL_BLOCK_CACHE_SHARDS);
    CHECK(c != NULL);
    struct tl_cached_block *held =
        tl_block_cache_insert(c, 1, k[0], make_block(1, k[0], BLOCK_BYTES), BLOCK_BYTES);
    CHECK(held != NULL);
    struct tl_cached_block *held2 = tl_block_cache_lookup(c, 1, k[0]);
    CHECK(held2 == held);

    put(c, 1, k[1], BLOCK_BYTES); /* evicts k0 while two handles hold it */
    CHECK(!present(c, 1, k[0]));
    CHECK(present(c, 1, k[1]));
    CHECK_EQ_INT(cache_bytes(c), charge); /* an evicted entry is no longer counted */

    /* Still readable through both handles (AddressSanitizer would report a use after free). */
    CHECK(block_matches(held, 1, k[0], BLOCK_BYTES));
    tl_block_cache_release(c, held);
    CHECK(block_matches(held2, 1, k[0], BLOCK_BYTES));
    tl_block_cache_release(c, held2); /* freed here: LeakSanitizer checks it is */

    /* A handle may even outlive the cache. */
    struct tl_cached_block *last = tl_block_cache_lookup(c, 1, k[1]);
    CHECK(last != NULL);
    tl_block_cache_free(c);
    CHECK(block_matches(last, 1, k[1], BLOCK_BYTES));
    tl_block_cache_release(NULL, last);
}

static void test_capacity_zero_keeps_nothing(void)
{
    struct tl_block_cache *c = tl_block_cache_new(0);
    CHECK(c != NULL);
    struct tl_cached_block *b =
        tl_block_cache_insert(c, 2, 0, make_block(2, 0, BLOCK_BYTES), BLOCK_BYTES);
    CHECK(b != NULL);
    CHECK(block_matches(b, 2, 0, BLOCK_BYTES));
    CHECK(!present(c, 2, 0));
    CHECK_EQ_INT(cache_bytes(c), 0);
    tl_block_cache_release(c, b);
    CHECK(!present(c, 2, 0));

    uint64_t hits, misses, bytes;
    tl_block_cache_stats(c, &hits, &misses, &bytes);
    CHECK_EQ_INT(hits, 0);
    CHECK_EQ_INT(misses, 2);
    CHECK_EQ_INT(bytes, 0);
    tl_block_cache_free(c);
}

static void test_block_larger_than_a_shard_is_not_cached(void)
{
    uint64_t charge = entry_charge(BLOCK_BYTES);
    struct tl_block_cache *c = tl_block_cache_new(2 * charge * TL_BLOCK_CACHE_SHARDS);
    CHECK(c != NULL);
    put(c, 5, 0, BLOCK_BYTES);
    struct tl_cached_block *big =
        tl_block_cache_insert(c, 5, 4096, make_block(5, 4096, 3 * BLOCK_BYTES), 3 * BLOCK_BYTES);
    CHECK(big != NULL);
    CHECK(block_matches(big, 5, 4096, 3 * BLOCK_BYTES));
    tl_block_cache_release(c, big);
    CHECK(!present(c, 5, 4096));
    CHECK(present(c, 5, 0)); /* and it evicted nothing */
    CHECK_EQ_INT(cache_bytes(c), charge);
    tl_block_cache_free(c);
}

struct worker {
    pthread_t thread;
    struct tl_block_cache *cache;
    uint64_t seed;
    uint64_t lookups;
    uint64_t hits;
    int bad; /* blocks whose contents did not match their key */
};

/* Read-through use as an SSTable reader does it: look up, on a miss build the block and insert
 * it, check the contents, hold the handle for a while (up to a few at once), release. */
static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct tl_cached_block *held[4] = {0};
    uint64_t held_key[4] = {0};
    for (int i = 0; i < THREAD_OPS; i++) {
        uint64_t key = test_rand(&w->seed) % THREAD_KEYS;
        uint64_t file = key % 8, offset = key / 8 * 4096;
        size_t size = 64 + key % 512;
        struct tl_cached_block *b = tl_block_cache_lookup(w->cache, file, offset);
        w->lookups++;
        if (b) {
            w->hits++;
        } else {
            b = tl_block_cache_insert(w->cache, file, offset, make_block(file, offset, size), size);
            if (!b) {
                w->bad++;
                continue;
            }
        }
        if (!block_matches(b, file, offset, size))
            w->bad++;
        int slot = i % 4;
        if (held[slot]) {
            uint64_t hk = held_key[slot];
            if (!block_matches(held[slot], hk % 8, hk / 8 * 4096, 64 + hk % 512))
                w->bad++;
            tl_block_cache_release(w->cache, held[slot]);
        }
        held[slot] = b;
        held_key[slot] = key;
    }
    for (int i = 0; i < 4; i++)
        tl_block_cache_release(w->cache, held[i]);
    return NULL;
}

static void test_concurrent_lookups_and_inserts_from_four_threads(bool admission)
{
    /* Room for about half the keys, so that eviction (or refusal) runs all the time. */
    const size_t capacity = THREAD_KEYS / 2 * (64 + 256 + entry_charge(0));
    struct tl_block_cache *c = tl_block_cache_new(capacity);
    CHECK(c != NULL);
    if (admission)
        CHECK_OK(tl_block_cache_admit_on_second_miss(c, 160));
    struct worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.cache = c, .seed = 1000 + (uint64_t)i};
        CHECK_EQ_INT(pthread_create(&w[i].thread, NULL, worker_main, &w[i]), 0);
    }
    uint64_t lookups = 0, hits = 0;
    for (int i = 0; i < THREADS; i++) {
        CHECK_EQ_INT(pthread_join(w[i].thread, NULL), 0);
        CHECK_EQ_INT(w[i].bad, 0);
        lookups += w[i].lookups;
        hits += w[i].hits;
    }
    uint64_t h, m, bytes;
    tl_block_cache_stats(c, &h, &m, &bytes);
    CHECK_EQ_INT(lookups, (uint64_t)THREADS * THREAD_OPS);
    CHECK_EQ_INT(h, hits);
    CHECK_EQ_INT(m, lookups - hits);
    CHECK(hits > 0 && hits < lookups);
    CHECK(bytes <= capacity);
    tl_block_cache_free(c);
}

int main(void)
{
    test_hits_and_misses_are_counted_exactly();
    test_insert_of_cached_block_returns_the_cached_copy();
    test_eviction_is_least_recently_used_first();
    test_full_shard_admits_on_the_second_insert();
    test_bytes_never_exceed_capacity();
    test_held_entry_survives_eviction_until_released();
    test_capacity_zero_keeps_nothing();
    test_block_larger_than_a_shard_is_not_cached();
    test_concurrent_lookups_and_inserts_from_four_threads(false);
    test_concurrent_lookups_and_inserts_from_four_threads(true);
    printf("test_block_cache: all tests passed\n");
    return 0;
}
