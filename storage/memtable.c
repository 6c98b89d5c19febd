/*
 * memtable.c - the concurrent hash table of cells (see memtable.h).
 *
 * The arena and the slot array are anonymous mappings, so pages are zero and only touched
 * pages cost memory. Arena offsets are 8-byte aligned; offset 0 is reserved to mean "empty".
 * A byte value lives in the arena as [u32 length][bytes]; a new value takes new arena space and
 * the old one is left behind until the table is dropped, except that a short one is overwritten
 * by a new value of its length (memtable.h): values longer than TL_CELL_INPLACE_MAX are
 * immutable once published, so a reader holding their offset still reads whole bytes.
 */
#include "memtable.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "coding.h"

#define ARENA_ALIGN 8
#define SLOT_EMPTY  0ull

_Static_assert(sizeof(struct tl_cell) == 32, "a cell is 32 bytes before its key");

static inline uint64_t slot_word(uint64_t hash, uint32_t off)
{
    return (hash & 0xffffffff00000000ull) | off;
}

static void *map_zeroed(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

struct tl_memtable *tl_memtable_new(size_t arena_bytes)
{
    if (arena_bytes < 4096)
        arena_bytes = 4096;
    if (arena_bytes > UINT32_MAX - 8)
        arena_bytes = UINT32_MAX - 8; /* offsets are 32 bits */
    struct tl_memtable *m = NULL;
    if (posix_memalign((void **)&m, TL_MEMTABLE_LINE, sizeof *m) != 0)
        return NULL;
    memset(m, 0, sizeof *m);
    uint64_t want = arena_bytes / TL_MEMTABLE_BYTES_PER_SLOT;
    uint64_t slots = 64;
    while (slots < want)
        slots <<= 1;
    m->mask = slots - 1;
    m->max_entries = slots * TL_MEMTABLE_MAX_LOAD_NUM / TL_MEMTABLE_MAX_LOAD_DEN;
    m->slots = map_zeroed(slots * sizeof(uint64_t));
    m->arena = map_zeroed(arena_bytes);
    m->arena_bytes = arena_bytes;
    if (!m->slots || !m->arena) {
        tl_memtable_free(m);
        return NULL;
    }
    atomic_init(&m->arena_used, ARENA_ALIGN);
    return m;
}

void tl_memtable_free(struct tl_memtable *m)
{
    if (!m)
        return;
    if (m->slots)
        munmap((void *)m->slots, (m->mask + 1) * sizeof(uint64_t));
    if (m->arena)
        munmap(m->arena, m->arena_bytes);
    free(m->sorted);
    free(m);
}

void tl_memtable_reset(struct tl_memtable *m)
{
    /* Give the pages back rather than writing zeros over them. */
    madvise((void *)m->slots, (m->mask + 1) * sizeof(uint64_t), MADV_DONTNEED);
    madvise(m->arena, m->arena_bytes, MADV_DONTNEED);
    atomic_store(&m->arena_used, ARENA_ALIGN);
    atomic_store(&m->entries, 0);
    atomic_store(&m->frozen, 0);
    free(m->sorted);
    m->sorted = NULL;
    m->n_sorted = 0;
    m->wal_number = 0;
    m->last_seq = 0;
}

/* Claims size bytes of arena; 0 when there is no room. */
static uint32_t arena_alloc(struct tl_memtable *m, size_t size)
{
    size = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    uint64_t off = atomic_fetch_add(&m->arena_used, size);
    if (off + size > m->arena_bytes)
        return 0;
    return (uint32_t)off;
}

static inline struct tl_cell *cell_at(const struct tl_memtable *m, uint32_t off)
{
    return (struct tl_cell *)(m->arena + off);
}

bool tl_memtable_full(const struct tl_memtable *m)
{
    return atomic_load(&m->entries) >= m->max_entries ||
           atomic_load(&m->arena_used) >= m->arena_bytes;
}

size_t tl_memtable_bytes_used(const struct tl_memtable *m)
{
    uint64_t used = atomic_load(&m->arena_used);
    return used > m->arena_bytes ? m->arena_bytes : used;
}

struct tl_cell *tl_memtable_find(struct tl_memtable *m, const void *key, size_t klen, uint64_t hash)
{
    uint64_t tag = hash & 0xffffffff00000000ull;
    for (uint64_t i = hash & m->mask, n = 0; n <= m->mask; i = (i + 1) & m->mask, n++) {
        uint64_t w = atomic_load_explicit(&m->slots[i], memory_order_acquire);
        if (w == SLOT_EMPTY)
            return NULL;
        if ((w & 0xffffffff00000000ull) != tag)
            continue;
        struct tl_cell *c = cell_at(m, (uint32_t)w);
        if (c->klen == klen && memcmp(c->key, key, klen) == 0)
            return c;
    }
    return NULL;
}

/* Slots a prefetch looks at before giving up: a probe sequence is usually one or two long. */
#define PREFETCH_PROBES 4

void tl_memtable_prefetch(const struct tl_memtable *m, uint64_t hash, int stage)
{
    uint64_t i = hash & m->mask;
    if (stage == 0) {
        __builtin_prefetch((const void *)&m->slots[i]);
        return;
    }
    uint64_t tag = hash & 0xffffffff00000000ull;
    for (int n = 0; n < PREFETCH_PROBES; n++, i = (i + 1) & m->mask) {
        uint64_t w = atomic_load_explicit(&m->slots[i], memory_order_relaxed);
        if (w == SLOT_EMPTY)
            return;
        if ((w & 0xffffffff00000000ull) != tag)
            continue;
        uint32_t off = (uint32_t)w;
        if (off > m->arena_bytes - sizeof(struct tl_cell))
            return;
        const struct tl_cell *c = cell_at(m, off);
        if (stage == 1) {
            /* The header and a short key: up to two lines. */
            __builtin_prefetch(c);
            __builtin_prefetch((const uint8_t *)c + sizeof *c + 16);
            return;
        }
        uint32_t b = atomic_load_explicit(&c->bytes_off, memory_order_relaxed);
        if (b != 0 && b < m->arena_bytes)
            __builtin_prefetch(m->arena + b); /* an address: never read here */
        return;
    }
}

/* Publishes s's value fields; bytes_off already holds the value's arena offset if any. */
static void cell_store(struct tl_cell *c, const struct tl_cell_snap *s, uint32_t bytes_off)
{
    atomic_store_explicit(&c->state, s->state, memory_order_relaxed);
    atomic_store_explicit(&c->dirty, s->dirty, memory_order_relaxed);
    atomic_store_explicit(&c->has_expiry, s->has_expiry, memory_order_relaxed);
    atomic_store_explicit(&c->tag, s->tag, memory_order_relaxed);
    atomic_store_explicit(&c->ival, s->ival, memory_order_relaxed);
    atomic_store_explicit(&c->expire_ms, s->expire_ms, memory_order_relaxed);
    atomic_store_explicit(&c->bytes_off, bytes_off, memory_order_release);
}

uint32_t tl_memtable_store_bytes(struct tl_memtable *m, const void *bytes, uint32_t len)
{
    uint32_t off = arena_alloc(m, 4 + (size_t)len);
    if (!off)
        return 0;
    tl_put_u32(m->arena + off, len);
    if (len)
        memcpy(m->arena + off + 4, bytes, len);
    return off;
}

static uint32_t store_bytes(struct tl_memtable *m, const struct tl_cell_snap *s)
{
    return tl_memtable_store_bytes(m, s->bytes, s->len);
}

struct tl_cell *tl_memtable_insert(struct tl_memtable *m, const void *key, size_t klen,
                                   uint64_t hash, const struct tl_cell_snap *init, bool *inserted)
{
    *inserted = false;
    if (atomic_load(&m->entries) >= m->max_entries)
        return NULL;
    uint32_t boff = 0;
    if (tl_cell_has_bytes(init->state) && !(boff = store_bytes(m, init)))
        return NULL;
    uint32_t off = arena_alloc(m, sizeof(struct tl_cell) + klen);
    if (!off)
        return NULL;
    struct tl_cell *c = cell_at(m, off);
    c->klen = (uint32_t)klen;
    memcpy(c->key, key, klen);
    atomic_init(&c->version, 0);
    cell_store(c, init, boff);

    uint64_t tag = hash & 0xffffffff00000000ull, word = slot_word(hash, off);
    for (uint64_t i = hash & m->mask, n = 0; n <= m->mask; i = (i + 1) & m->mask, n++) {
        uint64_t w = atomic_load_explicit(&m->slots[i], memory_order_acquire);
        while (w == SLOT_EMPTY) {
            if (atomic_compare_exchange_weak_explicit(&m->slots[i], &w, word, memory_order_acq_rel,
                                                      memory_order_acquire)) {
                atomic_fetch_add(&m->entries, 1);
                *inserted = true;
                return c;
            }
        }
        if ((w & 0xffffffff00000000ull) != tag)
            continue;
        struct tl_cell *o = cell_at(m, (uint32_t)w);
        if (o->klen == klen && memcmp(o->key, key, klen) == 0)
            return o; /* another writer got here first; our arena space is abandoned */
    }
    return NULL;
}

/* The arena words of a byte value, loaded or stored one at a time with atomic builtins: a short
 * value may be rewritten while a reader copies it (the sequence lock then sends the reader
 * round again), and word atomics keep that a well-defined race. Offsets are 8-byte aligned. */
static inline uint64_t *arena_words(const struct tl_memtable *m, uint32_t off)
{
    return (uint64_t *)(void *)(m->arena + off);
}

static uint32_t copied_len(const struct tl_cell_snap *s)
{
    return tl_get_u32((const uint8_t *)s->copy);
}

/* Arena words that [u32 length][bytes] of a len-byte value spans. */
static inline uint32_t value_words(uint32_t len)
{
    return (4 + len + 7) / 8;
}

void tl_cell_read(const struct tl_memtable *m, const struct tl_cell *c, struct tl_cell_snap *out)
{
    struct tl_cell *mc = (struct tl_cell *)c;
    for (;;) {
        uint32_t v1 = atomic_load_explicit(&mc->version, memory_order_acquire);
        if (v1 & 1)
            continue;
        out->state = atomic_load_explicit(&mc->state, memory_order_relaxed);
        out->dirty = atomic_load_explicit(&mc->dirty, memory_order_relaxed);
        out->has_expiry = atomic_load_explicit(&mc->has_expiry, memory_order_relaxed);
        out->tag = atomic_load_explicit(&mc->tag, memory_order_relaxed);
        out->ival = atomic_load_explicit(&mc->ival, memory_order_relaxed);
        out->expire_ms = atomic_load_explicit(&mc->expire_ms, memory_order_relaxed);
        uint32_t boff = atomic_load_explicit(&mc->bytes_off, memory_order_acquire);
        bool bytes = tl_cell_has_bytes(out->state) && boff;
        if (bytes) {
            /* The first word holds the length: short values are copied whole. */
            const uint64_t *w = arena_words(m, boff);
            out->copy[0] = __atomic_load_n(&w[0], __ATOMIC_RELAXED);
            uint32_t len = copied_len(out);
            if (len <= TL_CELL_INPLACE_MAX)
                for (uint32_t i = 1; i < value_words(len); i++)
                    out->copy[i] = __atomic_load_n(&w[i], __ATOMIC_RELAXED);
        }
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&mc->version, memory_order_relaxed) != v1)
            continue;
        if (bytes) {
            out->len = copied_len(out);
            out->bytes = out->len <= TL_CELL_INPLACE_MAX ? (const uint8_t *)out->copy + 4
                                                         : m->arena + boff + 4;
        } else {
            out->len = 0;
            out->bytes = NULL;
        }
        return;
    }
}

uint32_t tl_cell_inplace_off(const struct tl_memtable *m, struct tl_cell *c,
                             const struct tl_cell_snap *s)
{
    if (!tl_cell_has_bytes(s->state) || s->len > TL_CELL_INPLACE_MAX)
        return 0;
    /* Only c's writer changes these: plain loads see its own last stores. */
    uint8_t state = atomic_load_explicit(&c->state, memory_order_relaxed);
    uint32_t boff = atomic_load_explicit(&c->bytes_off, memory_order_relaxed);
    if (!tl_cell_has_bytes(state) || !boff || tl_get_u32(m->arena + boff) != s->len)
        return 0;
    return boff;
}

/* The sequence lock's writer side: publishes s in c, first writing n words over dst (an
 * in-place value; n 0 for none). Out of line, as tl_cell_publish was: GCC's ThreadSanitizer
 * build (-Wtsan, an error with --enable-werror) rejects the fence once it is inlined. */
__attribute__((noinline)) static void cell_publish_words(struct tl_cell *c,
                                                         const struct tl_cell_snap *s,
                                                         uint32_t boff, uint64_t *dst,
                                                         const uint64_t *words, uint32_t n)
{
    uint32_t v = atomic_load_explicit(&c->version, memory_order_relaxed);
    atomic_store_explicit(&c->version, v + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    for (uint32_t i = 0; i < n; i++)
        __atomic_store_n(&dst[i], words[i], __ATOMIC_RELAXED);
    cell_store(c, s, boff);
    atomic_store_explicit(&c->version, v + 2, memory_order_release);
}

void tl_cell_rewrite(struct tl_memtable *m, struct tl_cell *c, const struct tl_cell_snap *s,
                     uint32_t boff)
{
    uint64_t words[TL_CELL_INPLACE_WORDS] = {0};
    tl_put_u32((uint8_t *)words, s->len);
    memcpy((uint8_t *)words + 4, s->bytes, s->len);
    cell_publish_words(c, s, boff, arena_words(m, boff), words, value_words(s->len));
}

bool tl_cell_write(struct tl_memtable *m, struct tl_cell *c, const struct tl_cell_snap *s)
{
    uint32_t boff = tl_cell_inplace_off(m, c, s);
    if (boff) {
        tl_cell_rewrite(m, c, s, boff);
        return true;
    }
    if (tl_cell_has_bytes(s->state) && !(boff = store_bytes(m, s)))
        return false;
    tl_cell_publish(c, s, boff);
    return true;
}

void tl_cell_publish(struct tl_cell *c, const struct tl_cell_snap *s, uint32_t boff)
{
    cell_publish_words(c, s, boff, NULL, NULL, 0);
}

void tl_cell_snap_to_record(const struct tl_cell_snap *s, struct tl_record *r)
{
    memset(r, 0, sizeof *r);
    switch (s->state) {
    case TL_CELL_INT:
        r->kind = TL_KIND_PUT_INT;
        r->i = s->ival;
        r->has_expiry = s->expire_ms != 0;
        r->expire_ms = s->expire_ms;
        break;
    case TL_CELL_BYTES:
    case TL_CELL_TYPED:
        r->kind = s->state == TL_CELL_TYPED ? TL_KIND_PUT_TYPED : TL_KIND_PUT_BYTES;
        r->tag = s->tag;
        r->bytes = s->bytes;
        r->len = s->len;
        r->has_expiry = s->expire_ms != 0;
        r->expire_ms = s->expire_ms;
        break;
    case TL_CELL_MERGE:
        r->kind = TL_KIND_MERGE_INT;
        r->i = s->ival;
        r->has_expiry = s->has_expiry;
        r->expire_ms = s->expire_ms;
        break;
    case TL_CELL_EXPIRE:
        r->kind = TL_KIND_EXPIRE;
        r->has_expiry = true;
        r->expire_ms = s->expire_ms;
        break;
    default: /* ABSENT and DELETED: nothing older counts */
        r->kind = TL_KIND_DELETE;
    }
}

void tl_record_to_cell_snap(const struct tl_record *r, struct tl_cell_snap *s)
{
    memset(s, 0, sizeof *s);
    s->dirty = true;
    s->expire_ms = r->has_expiry ? r->expire_ms : 0;
    switch (r->kind) {
    case TL_KIND_PUT_INT:
        s->state = TL_CELL_INT;
        s->ival = r->i;
        break;
    case TL_KIND_PUT_BYTES:
    case TL_KIND_PUT_TYPED:
        s->state = r->kind == TL_KIND_PUT_TYPED ? TL_CELL_TYPED : TL_CELL_BYTES;
        s->tag = r->tag;
        s->bytes = r->bytes;
        s->len = (uint32_t)r->len;
        break;
    case TL_KIND_MERGE_INT:
        s->state = TL_CELL_MERGE;
        s->ival = r->i;
        s->has_expiry = r->has_expiry;
        break;
    case TL_KIND_EXPIRE:
        s->state = TL_CELL_EXPIRE;
        s->has_expiry = true;
        break;
    default:
        s->state = TL_CELL_DELETED;
    }
}

static int cell_cmp(const void *a, const void *b)
{
    const struct tl_cell *x = *(struct tl_cell *const *)a, *y = *(struct tl_cell *const *)b;
    return tl_key_cmp(x->key, x->klen, y->key, y->klen);
}

/* A cell to sort, with the first 16 bytes of its key as two big-endian numbers (zero-padded):
 * most comparisons end on them without touching the cell, which is a cache miss away. */
struct sort_ent {
    uint64_t hi, lo;
    struct tl_cell *c;
};

static inline bool ent_less(const struct sort_ent *x, const struct sort_ent *y)
{
    if (x->hi != y->hi)
        return x->hi < y->hi;
    if (x->lo != y->lo)
        return x->lo < y->lo;
    return tl_key_cmp(x->c->key, x->c->klen, y->c->key, y->c->klen) < 0;
}

static inline void ent_swap(struct sort_ent *a, struct sort_ent *b)
{
    struct sort_ent t = *a;
    *a = *b;
    *b = t;
}

static void ent_sift_down(struct sort_ent *a, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, big = i;
        if (l < n && ent_less(&a[big], &a[l]))
            big = l;
        if (l + 1 < n && ent_less(&a[big], &a[l + 1]))
            big = l + 1;
        if (big == i)
            return;
        ent_swap(&a[i], &a[big]);
        i = big;
    }
}

/* Heapsort: the fallback that bounds the quicksort below at O(n log n) whatever the keys. */
static void ent_heapsort(struct sort_ent *a, size_t n)
{
    for (size_t i = n / 2; i-- > 0;)
        ent_sift_down(a, n, i);
    for (size_t end = n; end-- > 1;) {
        ent_swap(&a[0], &a[end]);
        ent_sift_down(a, end, 0);
    }
}

/*
 * Sorts in place (introsort): quicksort with a median-of-three pivot, recursing into the
 * smaller part, heapsort once the depth passes `depth`, insertion sort for short runs. Keys in
 * a memtable are distinct. In place matters: the flush sorts a whole memtable's cells, and
 * qsort's merge sort took a second array as large as the first (about 40 MB for a 64 MiB
 * memtable of counters) and called the comparison through a pointer.
 */
static void ent_sort(struct sort_ent *a, size_t n, int depth)
{
    while (n > 16) {
        if (depth-- == 0) {
            ent_heapsort(a, n);
            return;
        }
        size_t mid = n / 2;
        if (ent_less(&a[mid], &a[0]))
            ent_swap(&a[mid], &a[0]);
        if (ent_less(&a[n - 1], &a[0]))
            ent_swap(&a[n - 1], &a[0]);
        if (ent_less(&a[n - 1], &a[mid]))
            ent_swap(&a[n - 1], &a[mid]);
        /* a[0] <= pivot <= a[n - 1]: both ends are sentinels for the scans. */
        struct sort_ent pivot = a[mid];
        size_t i = 0, j = n - 1;
        for (;;) {
            do
                i++;
            while (ent_less(&a[i], &pivot));
            do
                j--;
            while (ent_less(&pivot, &a[j]));
            if (i >= j)
                break;
            ent_swap(&a[i], &a[j]);
        }
        /* [0, j] <= pivot <= [j + 1, n) */
        size_t left = j + 1;
        if (left < n - left) {
            ent_sort(a, left, depth);
            a += left;
            n -= left;
        } else {
            ent_sort(a + left, n - left, depth);
            n = left;
        }
    }
    for (size_t i = 1; i < n; i++) {
        struct sort_ent t = a[i];
        size_t j = i;
        for (; j > 0 && ent_less(&t, &a[j - 1]); j--)
            a[j] = a[j - 1];
        a[j] = t;
    }
}

int tl_memtable_sort(struct tl_memtable *m)
{
    int depth = 2;
    for (uint64_t x = atomic_load(&m->entries); x > 1; x >>= 1)
        depth += 2;
    return tl_memtable_sort_depth(m, depth);
}

int tl_memtable_sort_depth(struct tl_memtable *m, int depth)
{
    uint64_t n = atomic_load(&m->entries);
    struct sort_ent *e = malloc(sizeof *e * (n ? n : 1));
    if (!e)
        return -ENOMEM;
    size_t k = 0;
    for (uint64_t i = 0; i <= m->mask && k < n; i++) {
        uint64_t w = atomic_load(&m->slots[i]);
        if (w == SLOT_EMPTY)
            continue;
        struct tl_cell *c = cell_at(m, (uint32_t)w);
        e[k++] =
            (struct sort_ent){tl_key_word(c->key, c->klen, 0), tl_key_word(c->key, c->klen, 8), c};
    }
    ent_sort(e, k, depth);
    /* The cell pointers, packed into the front of the same array: entry i is read before
     * v[i] (at or before it in memory) is written. */
    struct tl_cell **v = (struct tl_cell **)(void *)e;
    for (size_t i = 0; i < k; i++)
        v[i] = e[i].c;
    struct tl_cell **shrunk = realloc(v, sizeof *v * (k ? k : 1));
    free(m->sorted);
    m->sorted = shrunk ? shrunk : v;
    m->n_sorted = k;
    return 0;
}

/* A max-heap on key of the best `max` candidates seen so far. */
static void heap_sift_down(struct tl_cell **h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, big = i;
        if (l < n && cell_cmp(&h[l], &h[big]) > 0)
            big = l;
        if (r < n && cell_cmp(&h[r], &h[big]) > 0)
            big = r;
        if (big == i)
            return;
        struct tl_cell *t = h[i];
        h[i] = h[big];
        h[big] = t;
        i = big;
    }
}

static void heap_sift_up(struct tl_cell **h, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (cell_cmp(&h[i], &h[p]) <= 0)
            return;
        struct tl_cell *t = h[i];
        h[i] = h[p];
        h[p] = t;
        i = p;
    }
}

size_t tl_memtable_collect(struct tl_memtable *m, const void *key, size_t klen, bool inclusive,
                           struct tl_cell **out, size_t max)
{
    size_t n = 0;
    if (max == 0)
        return 0;
    for (uint64_t i = 0; i <= m->mask; i++) {
        uint64_t w = atomic_load_explicit(&m->slots[i], memory_order_acquire);
        if (w == SLOT_EMPTY)
            continue;
        struct tl_cell *c = cell_at(m, (uint32_t)w);
        if (key) {
            int cmp = tl_key_cmp(c->key, c->klen, key, klen);
            if (cmp < 0 || (cmp == 0 && !inclusive))
                continue;
        }
        if (n < max) {
            out[n] = c;
            heap_sift_up(out, n++);
        } else if (cell_cmp(&c, &out[0]) < 0) {
            out[0] = c;
            heap_sift_down(out, n, 0);
        }
    }
    qsort(out, n, sizeof *out, cell_cmp);
    return n;
}
