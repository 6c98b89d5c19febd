/*
 * test_memtable.c - the memtable's hash table and cells: insert and find, the table filling
 * up (entries and arena), byte values, concurrent inserts of the same and different keys from
 * 4 threads (every key exactly once), readers never seeing a torn cell while a writer changes
 * it, short byte values rewritten in place (no new arena space; readers copying them never see
 * a mix of two values, though the writer changes the very bytes they read; long values and a
 * change of length take new space), and sorted collection (collect in batches, sort when
 * frozen).
 */
#include <pthread.h>

#include "hash.h"
#include "memtable.h"
#include "testutil.h"

static struct tl_cell *insert_int(struct tl_memtable *m, const char *key, int64_t v)
{
    struct tl_cell_snap s = {.state = TL_CELL_INT, .dirty = true, .ival = v};
    bool inserted;
    return tl_memtable_insert(m, key, strlen(key), tl_hash64(key, strlen(key)), &s, &inserted);
}

static void test_basic(void)
{
    struct tl_memtable *m = tl_memtable_new(1 << 20);
    CHECK(m);
    CHECK(insert_int(m, "a", 1));
    CHECK(insert_int(m, "b", 2));
    struct tl_cell *c = tl_memtable_find(m, "a", 1, tl_hash64("a", 1));
    CHECK(c);
    struct tl_cell_snap s;
    tl_cell_read(m, c, &s);
    CHECK_EQ_INT(s.state, TL_CELL_INT);
    CHECK_EQ_INT(s.ival, 1);
    CHECK(!tl_memtable_find(m, "c", 1, tl_hash64("c", 1)));
    /* A byte value, then a replacement. */
    struct tl_cell_snap b = {.state = TL_CELL_BYTES,
                             .dirty = true,
                             .bytes = (const uint8_t *)"hello",
                             .len = 5,
                             .expire_ms = 77};
    CHECK(tl_cell_write(m, c, &b));
    tl_cell_read(m, c, &s);
    CHECK_EQ_INT(s.state, TL_CELL_BYTES);
    CHECK_EQ_INT(s.len, 5);
    CHECK(memcmp(s.bytes, "hello", 5) == 0);
    CHECK_EQ_INT(s.expire_ms, 77);
    /* Inserting an existing key returns the existing cell. */
    bool inserted = true;
    struct tl_cell_snap i = {.state = TL_CELL_INT};
    CHECK(tl_memtable_insert(m, "a", 1, tl_hash64("a", 1), &i, &inserted) == c);
    CHECK(!inserted);
    CHECK_EQ_INT(atomic_load(&m->entries), 2);
    tl_memtable_reset(m);
    CHECK_EQ_INT(atomic_load(&m->entries), 0);
    CHECK(!tl_memtable_find(m, "a", 1, tl_hash64("a", 1)));
    tl_memtable_free(m);
}

static void test_full(void)
{
    struct tl_memtable *m = tl_memtable_new(64 * 1024);
    char key[32];
    int n = 0;
    for (;; n++) {
        snprintf(key, sizeof key, "key%06d", n);
        if (!insert_int(m, key, n))
            break;
    }
    CHECK(n > 100);
    CHECK(tl_memtable_full(m));
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "key%06d", i);
        struct tl_cell *c = tl_memtable_find(m, key, strlen(key), tl_hash64(key, strlen(key)));
        CHECK(c);
        struct tl_cell_snap s;
        tl_cell_read(m, c, &s);
        CHECK_EQ_INT(s.ival, i);
    }
    /* A byte value that does not fit is refused without changing the cell. */
    snprintf(key, sizeof key, "key%06d", 0);
    struct tl_cell *c = tl_memtable_find(m, key, strlen(key), tl_hash64(key, strlen(key)));
    static uint8_t big[128 * 1024];
    struct tl_cell_snap b = {.state = TL_CELL_BYTES, .bytes = big, .len = sizeof big};
    CHECK(!tl_cell_write(m, c, &b));
    struct tl_cell_snap s;
    tl_cell_read(m, c, &s);
    CHECK_EQ_INT(s.state, TL_CELL_INT);
    tl_memtable_free(m);
}

/* Prefetch hints for every key of a full table (cells up to the arena's end, byte values),
 * for keys it lacks and for random hashes: they leave every value as it was (and, under ASan,
 * read nothing outside the table). */
static void test_prefetch(void)
{
    struct tl_memtable *m = tl_memtable_new(64 * 1024);
    char key[32], val[40];
    int n = 0;
    for (;; n++) {
        snprintf(key, sizeof key, "key%06d", n);
        snprintf(val, sizeof val, "value-%d", n * 7);
        struct tl_cell_snap s = {.state = TL_CELL_BYTES,
                                 .dirty = true,
                                 .bytes = (const uint8_t *)val,
                                 .len = (uint32_t)strlen(val)};
        bool inserted;
        if (!tl_memtable_insert(m, key, strlen(key), tl_hash64(key, strlen(key)), &s, &inserted))
            break;
    }
    CHECK(n > 100);
    uint64_t rng = 42;
    for (int stage = 0; stage < 3; stage++) {
        for (int i = 0; i < n + 100; i++) {
            snprintf(key, sizeof key, "key%06d", i);
            tl_memtable_prefetch(m, tl_hash64(key, strlen(key)), stage);
        }
        for (int i = 0; i < 10000; i++)
            tl_memtable_prefetch(m, test_rand(&rng), stage);
    }
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "key%06d", i);
        snprintf(val, sizeof val, "value-%d", i * 7);
        struct tl_cell *c = tl_memtable_find(m, key, strlen(key), tl_hash64(key, strlen(key)));
        CHECK(c);
        struct tl_cell_snap s;
        tl_cell_read(m, c, &s);
        CHECK_EQ_INT(s.state, TL_CELL_BYTES);
        CHECK(s.len == strlen(val) && memcmp(s.bytes, val, s.len) == 0);
    }
    tl_memtable_free(m);
}

#define THREADS         4
#define KEYS_PER_THREAD 20000
#define SHARED_KEYS     5000

struct worker {
    struct tl_memtable *m;
    int id;
    int inserted_shared;
};

static void *insert_worker(void *arg)
{
    struct worker *w = arg;
    char key[32];
    for (int i = 0; i < KEYS_PER_THREAD; i++) {
        snprintf(key, sizeof key, "t%d-%d", w->id, i);
        CHECK(insert_int(w->m, key, i));
        if (i < SHARED_KEYS) {
            snprintf(key, sizeof key, "shared-%d", i);
            struct tl_cell_snap s = {.state = TL_CELL_INT, .ival = i};
            bool inserted;
            CHECK(tl_memtable_insert(w->m, key, strlen(key), tl_hash64(key, strlen(key)), &s,
                                     &inserted));
            w->inserted_shared += inserted;
        }
    }
    return NULL;
}

/* Sorted order of m->sorted: strictly increasing keys, n of them. */
static void check_sorted(const struct tl_memtable *m, size_t n)
{
    CHECK_EQ_INT(m->n_sorted, n);
    for (size_t i = 1; i < m->n_sorted; i++) {
        struct tl_cell *a = m->sorted[i - 1], *b = m->sorted[i];
        size_t k = a->klen < b->klen ? a->klen : b->klen;
        int c = memcmp(a->key, b->key, k);
        CHECK(c < 0 || (c == 0 && a->klen < b->klen));
    }
}

static void test_concurrent_insert(void)
{
    struct tl_memtable *m = tl_memtable_new(64 << 20);
    pthread_t t[THREADS];
    struct worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.m = m, .id = i};
        pthread_create(&t[i], NULL, insert_worker, &w[i]);
    }
    int shared = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        shared += w[i].inserted_shared;
    }
    CHECK_EQ_INT(shared, SHARED_KEYS); /* each shared key claimed by exactly one thread */
    CHECK_EQ_INT(atomic_load(&m->entries), THREADS * KEYS_PER_THREAD + SHARED_KEYS);
    CHECK_OK(tl_memtable_sort(m));
    check_sorted(m, THREADS * KEYS_PER_THREAD + SHARED_KEYS);
    tl_memtable_free(m);
}

/* A writer flips a cell between two consistent states; readers must see one or the other. */
struct flip {
    struct tl_memtable *m;
    struct tl_cell *c;
    _Atomic int stop;
    _Atomic long writes;
};

/* Reads the reader makes while the writer flips the cell. */
#define FLIP_READS 300000

static void *flip_writer(void *arg)
{
    struct flip *f = arg;
    for (long i = 0; !atomic_load(&f->stop); i++) {
        struct tl_cell_snap s;
        if (i % 2)
            s = (struct tl_cell_snap){.state = TL_CELL_INT, .ival = 1, .expire_ms = 1};
        else
            s = (struct tl_cell_snap){
                .state = TL_CELL_BYTES, .bytes = (const uint8_t *)"xy", .len = 2, .expire_ms = 2};
        if (!tl_cell_write(f->m, f->c, &s))
            break; /* arena spent: the reader still finishes its reads */
        atomic_fetch_add(&f->writes, 1);
    }
    return NULL;
}

static void test_seqlock(void)
{
    struct tl_memtable *m = tl_memtable_new(64 << 20);
    struct tl_cell_snap first = {.state = TL_CELL_INT, .ival = 1, .expire_ms = 1};
    bool inserted;
    struct flip f = {.m = m,
                     .c = tl_memtable_insert(m, "k", 1, tl_hash64("k", 1), &first, &inserted)};
    pthread_t t;
    pthread_create(&t, NULL, flip_writer, &f);
    long reads = 0;
    while (atomic_load(&f.writes) == 0)
        ; /* start reading once the writer runs */
    for (; reads < FLIP_READS; reads++) {
        struct tl_cell_snap s;
        tl_cell_read(m, f.c, &s);
        if (s.state == TL_CELL_INT)
            CHECK(s.ival == 1 && s.expire_ms == 1);
        else
            CHECK(s.state == TL_CELL_BYTES && s.len == 2 && memcmp(s.bytes, "xy", 2) == 0 &&
                  s.expire_ms == 2);
    }
    atomic_store(&f.stop, 1);
    pthread_join(t, NULL);
    CHECK(atomic_load(&f.writes) > 0);
    tl_memtable_free(m);
}

struct rewriter {
    struct tl_memtable *m;
    struct tl_cell *c;
    uint32_t len;
    _Atomic int stop;
    _Atomic long writes;
};

/* Rewrites c in place with values whose bytes all equal the round's number, and whose expiry
 * equals it too. */
static void *rewrite_writer(void *arg)
{
    struct rewriter *r = arg;
    uint8_t v[TL_CELL_INPLACE_MAX];
    for (long i = 1; !atomic_load(&r->stop); i++) {
        memset(v, (int)(i & 0xff), r->len);
        struct tl_cell_snap s = {.state = TL_CELL_TYPED,
                                 .dirty = true,
                                 .tag = 9,
                                 .expire_ms = i & 0xff,
                                 .bytes = v,
                                 .len = r->len};
        uint32_t boff = tl_cell_inplace_off(r->m, r->c, &s);
        CHECK(boff != 0);
        tl_cell_rewrite(r->m, r->c, &s, boff);
        atomic_fetch_add(&r->writes, 1);
    }
    return NULL;
}

static void test_inplace(void)
{
    struct tl_memtable *m = tl_memtable_new(8 << 20);
    uint8_t big[TL_CELL_INPLACE_MAX + 1];
    memset(big, 7, sizeof big);
    struct tl_cell_snap s = {.state = TL_CELL_TYPED, .tag = 9, .bytes = big, .len = 60};
    bool inserted;
    struct rewriter r = {
        .m = m, .len = 60, .c = tl_memtable_insert(m, "k", 1, tl_hash64("k", 1), &s, &inserted)};
    CHECK(r.c && inserted);
    /* Another length, or a value over the limit, cannot go in place. */
    struct tl_cell_snap other = s;
    other.len = 61;
    CHECK(tl_cell_inplace_off(m, r.c, &other) == 0);
    other.len = TL_CELL_INPLACE_MAX + 1;
    CHECK(tl_cell_inplace_off(m, r.c, &other) == 0);
    struct tl_cell_snap integer = {.state = TL_CELL_INT, .ival = 5};
    CHECK(tl_cell_inplace_off(m, r.c, &integer) == 0);
    size_t used = tl_memtable_bytes_used(m);

    pthread_t t;
    pthread_create(&t, NULL, rewrite_writer, &r);
    while (atomic_load(&r.writes) == 0)
        ; /* start reading once the writer runs */
    for (long reads = 0; reads < FLIP_READS; reads++) {
        struct tl_cell_snap got;
        tl_cell_read(m, r.c, &got);
        CHECK(got.state == TL_CELL_TYPED && got.tag == 9 && got.len == 60);
        uint8_t b = got.bytes[0];
        for (uint32_t i = 1; i < got.len; i++)
            CHECK(got.bytes[i] == b); /* one value's bytes, not a mix */
        if (atomic_load(&r.writes) > 1)
            CHECK(got.expire_ms == b); /* and that value's own expiry */
    }
    atomic_store(&r.stop, 1);
    pthread_join(t, NULL);
    CHECK(atomic_load(&r.writes) > 0);
    CHECK_EQ_INT(tl_memtable_bytes_used(m), used); /* no arena spent on rewrites */

    /* A long value is never rewritten: a new one of its length takes new space. */
    struct tl_cell_snap l = {.state = TL_CELL_BYTES, .bytes = big, .len = sizeof big};
    CHECK(tl_cell_write(m, r.c, &l));
    CHECK(tl_cell_inplace_off(m, r.c, &l) == 0);
    used = tl_memtable_bytes_used(m);
    CHECK(tl_cell_write(m, r.c, &l));
    CHECK(tl_memtable_bytes_used(m) > used);
    struct tl_cell_snap got;
    tl_cell_read(m, r.c, &got);
    CHECK(got.len == sizeof big && memcmp(got.bytes, big, sizeof big) == 0);
    tl_memtable_free(m);
}

static void test_collect(void)
{
    struct tl_memtable *m = tl_memtable_new(4 << 20);
    char key[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "k%04d", (i * 7919) % 1000);
        CHECK(insert_int(m, key, i));
    }
    struct tl_cell *out[100];
    size_t n = tl_memtable_collect(m, "k0500", 5, true, out, 100);
    CHECK_EQ_INT(n, 100);
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof key, "k%04zu", 500 + i);
        CHECK(out[i]->klen == 5 && memcmp(out[i]->key, key, 5) == 0);
    }
    n = tl_memtable_collect(m, "k0500", 5, false, out, 1);
    CHECK(n == 1 && memcmp(out[0]->key, "k0501", 5) == 0);
    n = tl_memtable_collect(m, "k0995", 5, false, out, 100);
    CHECK_EQ_INT(n, 4);
    n = tl_memtable_collect(m, NULL, 0, true, out, 3);
    CHECK(n == 3 && memcmp(out[0]->key, "k0000", 5) == 0 && memcmp(out[2]->key, "k0002", 5) == 0);
    tl_memtable_free(m);
}

/*
 * The flush's sort: keys that differ only past their first 16 bytes (the sort's cached words
 * tie), keys that are prefixes of one another, short keys, and the heapsort that bounds the
 * quicksort (depth 0: heapsort at once; depth 1: one partition, then heapsort).
 */
static void test_sort(void)
{
    enum { N = 20000 };
    for (int depth = -1; depth <= 1; depth++) {
        struct tl_memtable *m = tl_memtable_new(16 << 20);
        char key[64];
        size_t n = 0;
        for (int i = 0; i < N; i++) {
            int len;
            switch (i % 4) {
            case 0: /* shared 20-byte prefix, then digits */
                len = snprintf(key, sizeof key, "window:series:prefix%07d", i);
                break;
            case 1: /* short */
                len = snprintf(key, sizeof key, "%x", i);
                break;
            case 2: /* a run of one letter: each a prefix of the next */
                len = snprintf(key, sizeof key, "%.*s", 1 + i / 4 % 48,
                               "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz");
                break;
            default: /* differ in byte 16 only */
                len = snprintf(key, sizeof key, "0123456789abcdef%c%05d", 'a' + i % 26, i);
            }
            struct tl_cell_snap st = {.state = TL_CELL_INT, .ival = i};
            bool inserted;
            CHECK(tl_memtable_insert(m, key, (size_t)len, tl_hash64(key, (size_t)len), &st,
                                     &inserted));
            n += inserted;
        }
        CHECK_OK(depth < 0 ? tl_memtable_sort(m) : tl_memtable_sort_depth(m, depth));
        check_sorted(m, n);
        tl_memtable_free(m);
    }
}

int main(void)
{
    test_basic();
    test_full();
    test_prefetch();
    test_concurrent_insert();
    test_sort();
    test_seqlock();
    test_inplace();
    test_collect();
    printf("test_memtable: ok\n");
    return 0;
}
