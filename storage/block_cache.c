/*
 * block_cache.c - a sharded LRU cache of decompressed SSTable blocks.
 *
 * The cache is TL_BLOCK_CACHE_SHARDS independent shards, each with its own mutex, chained hash
 * table and LRU list; a key (file number, block offset) is hashed once and the top bits pick the
 * shard, so threads reading different blocks rarely meet on a lock. Capacity is split evenly
 * over the shards. An entry is charged its data size plus BLOCK_CACHE_ENTRY_OVERHEAD_BYTES (its
 * header and hash slot), and a shard evicts from the cold end of its list until a new entry fits.
 *
 * Lifetime: every entry carries an atomic reference count. The cache holds one reference while
 * the entry is in the table, and each handle returned by lookup or insert holds one more.
 * Eviction removes the entry from the table and drops the cache's reference, so an entry that a
 * reader still holds stays valid and is freed when its last handle is released. Release never
 * takes a lock, nor touches the cache itself. An entry whose charge is larger than a shard (and
 * every entry when the capacity is 0) is never put in the table: its handle is its only
 * reference. The bytes figure of tl_block_cache_stats is the sum of the charges of the entries
 * in the table.
 *
 * Admission (tl_block_cache_admit_on_second_miss): once a shard is full, a new block enters it
 * only if it was inserted once before, not long ago; else the insert hands back an uncached
 * handle and remembers the block. The memory is a direct-mapped table of 32-bit tags, two
 * slots per block the shard holds, so "not long ago" is within about that many inserts. Reads
 * spread evenly over far more blocks than fit (100M counters against a 64 MiB cache hit
 * about 9% of the time) then stop evicting a block for one that is not read again, and a
 * block read twice in that window is cached as before. A shard with room admits everything.
 */
#include "block_cache.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

/* What an entry costs beyond its data: its header and its hash slot, rounded up. */
#define BLOCK_CACHE_ENTRY_OVERHEAD_BYTES (sizeof(struct tl_cached_block) + sizeof(void *))
/* Buckets of a shard's table when it is created; it doubles when it holds more entries than
 * buckets, so a chain stays short. The number of entries is bounded by the shard's capacity
 * divided by the per-entry overhead, which bounds the table too. */
#define BLOCK_CACHE_INITIAL_BUCKETS 64
#define BLOCK_CACHE_CACHE_LINE      64
/* Admission slots of a shard at the least (see admit). */
#define BLOCK_CACHE_MIN_ADMISSION_SLOTS 64

struct tl_cached_block {
    uint64_t file;
    uint64_t offset;
    uint64_t hash;
    uint8_t *data;
    size_t size;
    size_t charge;
    atomic_uint_fast32_t refs;
    /* The fields below belong to the shard and are read or written under its lock. */
    bool in_cache;
    struct tl_cached_block *hash_next;
    struct tl_cached_block *lru_prev; /* towards the most recently used end */
    struct tl_cached_block *lru_next; /* towards the least recently used end */
};

struct shard {
    pthread_mutex_t lock;
    size_t capacity;
    atomic_size_t usage; /* written under lock; read without it by tl_block_cache_stats */
    struct tl_cached_block **buckets;
    size_t nbuckets; /* a power of two */
    size_t count;
    /* LRU list: head is the most recently used entry, tail the next to be evicted. */
    struct tl_cached_block *head;
    struct tl_cached_block *tail;
    atomic_uint_fast64_t hits;
    atomic_uint_fast64_t misses;
    uint32_t *seen; /* admission tags (0: empty), or NULL to admit every block */
    size_t nseen;   /* a power of two */
} __attribute__((aligned(BLOCK_CACHE_CACHE_LINE)));

struct tl_block_cache {
    struct shard shards[TL_BLOCK_CACHE_SHARDS];
};

/* A 64-bit mix of both halves of the key (the splitmix64 finalizer). */
static uint64_t key_hash(uint64_t file, uint64_t offset)
{
    uint64_t z = file * 0x9e3779b97f4a7c15ull ^ offset;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static struct shard *shard_of(struct tl_block_cache *c, uint64_t hash)
{
    _Static_assert((TL_BLOCK_CACHE_SHARDS & (TL_BLOCK_CACHE_SHARDS - 1)) == 0,
                   "TL_BLOCK_CACHE_SHARDS must be a power of two");
    /* The top bits pick the shard, the bottom bits the bucket, so the two are independent. */
    return &c->shards[(hash >> 32) & (TL_BLOCK_CACHE_SHARDS - 1)];
}

static void entry_unref(struct tl_cached_block *e)
{
    if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1) {
        free(e->data);
        free(e);
    }
}

static void lru_unlink(struct shard *s, struct tl_cached_block *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        s->head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        s->tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(struct shard *s, struct tl_cached_block *e)
{
    e->lru_prev = NULL;
    e->lru_next = s->head;
    if (s->head)
        s->head->lru_prev = e;
    else
        s->tail = e;
    s->head = e;
}

static struct tl_cached_block **bucket_slot(struct shard *s, uint64_t hash, uint64_t file,
                                            uint64_t offset)
{
    struct tl_cached_block **p = &s->buckets[hash & (s->nbuckets - 1)];
    while (*p && ((*p)->file != file || (*p)->offset != offset))
        p = &(*p)->hash_next;
    return p;
}

/* Doubles the table. On allocation failure the table keeps its size: chains grow longer but
 * the cache stays correct. */
static void shard_grow(struct shard *s)
{
    size_t n = s->nbuckets * 2;
    struct tl_cached_block **b = calloc(n, sizeof *b);
    if (!b)
        return;
    for (size_t i = 0; i < s->nbuckets; i++) {
        struct tl_cached_block *e = s->buckets[i];
        while (e) {
            struct tl_cached_block *next = e->hash_next;
            struct tl_cached_block **slot = &b[e->hash & (n - 1)];
            e->hash_next = *slot;
            *slot = e;
            e = next;
        }
    }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = n;
}

/* Removes e from the table and the list; the caller then drops the cache's reference. */
static void shard_remove(struct shard *s, struct tl_cached_block *e)
{
    struct tl_cached_block **p = bucket_slot(s, e->hash, e->file, e->offset);
    assert(*p == e && e->in_cache);
    *p = e->hash_next;
    e->hash_next = NULL;
    lru_unlink(s, e);
    e->in_cache = false;
    s->count--;
    atomic_store_explicit(&s->usage,
                          atomic_load_explicit(&s->usage, memory_order_relaxed) - e->charge,
                          memory_order_relaxed);
}

struct tl_block_cache *tl_block_cache_new(size_t capacity_bytes)
{
    /* The shards are cache-line aligned (so that their locks do not share a line): calloc
     * does not promise that alignment. */
    struct tl_block_cache *c = NULL;
    if (posix_memalign((void **)&c, BLOCK_CACHE_CACHE_LINE, sizeof *c) != 0) {
        tl_error(-ENOMEM, "block cache: out of memory");
        return NULL;
    }
    memset(c, 0, sizeof *c);
    int initialized = 0;
    for (int i = 0; i < TL_BLOCK_CACHE_SHARDS; i++) {
        struct shard *s = &c->shards[i];
        /* The remainder goes to the first shards, so the shards add up to the capacity. */
        s->capacity = capacity_bytes / TL_BLOCK_CACHE_SHARDS +
                      ((size_t)i < capacity_bytes % TL_BLOCK_CACHE_SHARDS ? 1 : 0);
        s->nbuckets = BLOCK_CACHE_INITIAL_BUCKETS;
        s->buckets = calloc(s->nbuckets, sizeof *s->buckets);
        if (!s->buckets)
            goto fail;
        if (pthread_mutex_init(&s->lock, NULL) != 0) {
            free(s->buckets);
            goto fail;
        }
        initialized++;
    }
    return c;

fail:
    for (int i = 0; i < initialized; i++) {
        pthread_mutex_destroy(&c->shards[i].lock);
        free(c->shards[i].buckets);
    }
    free(c);
    tl_error(-ENOMEM, "block cache: out of memory");
    return NULL;
}

void tl_block_cache_free(struct tl_block_cache *c)
{
    if (!c)
        return;
    for (int i = 0; i < TL_BLOCK_CACHE_SHARDS; i++) {
        struct shard *s = &c->shards[i];
        struct tl_cached_block *e = s->head;
        while (e) {
            struct tl_cached_block *next = e->lru_next;
            e->in_cache = false;
            /* A handle still held outlives the cache: release does not touch the cache. */
            entry_unref(e);
            e = next;
        }
        pthread_mutex_destroy(&s->lock);
        free(s->buckets);
        free(s->seen);
    }
    free(c);
}

struct tl_cached_block *tl_block_cache_lookup(struct tl_block_cache *c, uint64_t file,
                                              uint64_t offset)
{
    uint64_t hash = key_hash(file, offset);
    struct shard *s = shard_of(c, hash);

    pthread_mutex_lock(&s->lock);
    struct tl_cached_block *e = *bucket_slot(s, hash, file, offset);
    if (e) {
        /* The cache's own reference keeps refs above 0, so taking one more is safe. */
        atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
        if (s->head != e) {
            lru_unlink(s, e);
            lru_push_front(s, e);
        }
    }
    pthread_mutex_unlock(&s->lock);

    atomic_fetch_add_explicit(e ? &s->hits : &s->misses, 1, memory_order_relaxed);
    return e;
}

/* Whether a block that must evict to fit may enter (s->lock held): when it was seen not long
 * ago. The slot comes from the bits above the shard's, the tag from the low half. */
static bool admit(struct shard *s, uint64_t hash, size_t charge)
{
    if (!s->seen || atomic_load_explicit(&s->usage, memory_order_relaxed) + charge <= s->capacity)
        return true;
    uint32_t *slot = &s->seen[(hash >> 36) & (s->nseen - 1)];
    uint32_t tag = (uint32_t)hash | 1;
    if (*slot == tag) {
        *slot = 0;
        return true;
    }
    *slot = tag;
    return false;
}

int tl_block_cache_admit_on_second_miss(struct tl_block_cache *c, size_t typical_block_bytes)
{
    for (int i = 0; i < TL_BLOCK_CACHE_SHARDS; i++) {
        struct shard *s = &c->shards[i];
        size_t blocks = s->capacity / (typical_block_bytes + BLOCK_CACHE_ENTRY_OVERHEAD_BYTES);
        size_t n = BLOCK_CACHE_MIN_ADMISSION_SLOTS;
        while (n < 2 * blocks && n < (SIZE_MAX >> 36))
            n <<= 1;
        uint32_t *seen = calloc(n, sizeof *seen);
        if (!seen)
            return tl_error(-ENOMEM, "block cache: out of memory for %zu admission slots", n);
        pthread_mutex_lock(&s->lock);
        free(s->seen);
        s->seen = seen;
        s->nseen = n;
        pthread_mutex_unlock(&s->lock);
    }
    return 0;
}

struct tl_cached_block *tl_block_cache_insert(struct tl_block_cache *c, uint64_t file,
                                              uint64_t offset, uint8_t *data, size_t size)
{
    uint64_t hash = key_hash(file, offset);
    struct shard *s = shard_of(c, hash);
    struct tl_cached_block *evicted = NULL;

    struct tl_cached_block *e = malloc(sizeof *e);
    if (!e) {
        free(data);
        tl_error(-ENOMEM, "block cache: out of memory for a block of %zu bytes", size);
        return NULL;
    }
    e->file = file;
    e->offset = offset;
    e->hash = hash;
    e->data = data;
    e->size = size;
    e->charge = size + BLOCK_CACHE_ENTRY_OVERHEAD_BYTES;
    atomic_init(&e->refs, 1); /* the caller's handle */
    e->in_cache = false;
    e->hash_next = e->lru_prev = e->lru_next = NULL;

    pthread_mutex_lock(&s->lock);
    struct tl_cached_block **slot = bucket_slot(s, hash, file, offset);
    if (*slot) {
        /* Another reader inserted the same block first: share its copy. */
        struct tl_cached_block *old = *slot;
        atomic_fetch_add_explicit(&old->refs, 1, memory_order_relaxed);
        if (s->head != old) {
            lru_unlink(s, old);
            lru_push_front(s, old);
        }
        pthread_mutex_unlock(&s->lock);
        free(data);
        free(e);
        return old;
    }
    if (e->charge > s->capacity || !admit(s, hash, e->charge)) {
        /* It would not fit even in an empty shard, or it is not admitted: the handle is its
         * only reference. */
        pthread_mutex_unlock(&s->lock);
        return e;
    }
    /* Evicted entries are chained through hash_next and unreferenced after the lock is let go,
     * so that freeing memory does not lengthen the critical section. */
    while (atomic_load_explicit(&s->usage, memory_order_relaxed) + e->charge > s->capacity) {
        struct tl_cached_block *victim = s->tail;
        assert(victim);
        shard_remove(s, victim);
        victim->hash_next = evicted;
        evicted = victim;
    }
    atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed); /* the cache's reference */
    e->in_cache = true;
    slot = bucket_slot(s, hash, file, offset); /* the removals may have changed the chain */
    e->hash_next = *slot;
    *slot = e;
    lru_push_front(s, e);
    s->count++;
    atomic_store_explicit(&s->usage,
                          atomic_load_explicit(&s->usage, memory_order_relaxed) + e->charge,
                          memory_order_relaxed);
    if (s->count > s->nbuckets)
        shard_grow(s);
    pthread_mutex_unlock(&s->lock);

    while (evicted) {
        struct tl_cached_block *next = evicted->hash_next;
        evicted->hash_next = NULL;
        entry_unref(evicted);
        evicted = next;
    }
    return e;
}

void tl_block_cache_release(struct tl_block_cache *c, struct tl_cached_block *b)
{
    (void)c;
    if (b)
        entry_unref(b);
}

const uint8_t *tl_cached_block_data(const struct tl_cached_block *b, size_t *size)
{
    if (size)
        *size = b->size;
    return b->data;
}

void tl_block_cache_stats(struct tl_block_cache *c, uint64_t *hits, uint64_t *misses,
                          uint64_t *bytes)
{
    uint64_t h = 0, m = 0, u = 0;
    for (int i = 0; i < TL_BLOCK_CACHE_SHARDS; i++) {
        struct shard *s = &c->shards[i];
        h += atomic_load_explicit(&s->hits, memory_order_relaxed);
        m += atomic_load_explicit(&s->misses, memory_order_relaxed);
        u += atomic_load_explicit(&s->usage, memory_order_relaxed);
    }
    if (hits)
        *hits = h;
    if (misses)
        *misses = m;
    if (bytes)
        *bytes = u;
}
