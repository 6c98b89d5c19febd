/*
 * test_sst.c - SSTables end to end (storage/sst_builder.c, storage/sst_reader.c): tables of
 * 100k keys of every entry kind, with and without expiry and with a 100 KiB value, for each of
 * NONE, LZ4 and ZSTD; exact lookups of every present key and of absent keys before, between and
 * after them; full scans and seeks with and without the cache; exact props; incompressible
 * blocks stored uncompressed; batched reads over two tables; corruption (a flipped byte in a
 * data block, the index or the footer, a truncated file) reported as TL_ECORRUPT naming the
 * file and offset; and the builder's failure paths, which leave no file behind.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block_cache.h"
#include "coding.h"
#include "compress.h"
#include "hash.h"
#include "record.h"
#include "sst.h"
#include "testutil.h"

#define N_ENTRIES   100000
#define N_KINDS     7
#define BIG_INDEX   49994 /* a PUT_BYTES entry (49994 % 7 == 0) */
#define BIG_BYTES   (100 * 1024)
#define EXPIRE_BASE 1700000000000ll
#define BLOCK_BYTES 4096
#define BLOOM_BITS  10
#define ZSTD_LEVEL  3
#define CACHE_BYTES (64u << 20)
#define VALUE_MAX   (BIG_BYTES + TL_RECORD_HEADER_MAX)
#define PATH_BYTES  4200

static char *tmpdir;
static uint8_t big_value[BIG_BYTES];

/* Present keys are the even numbers; odd ones fall between them. */
static size_t key_of(int n, char *buf)
{
    return (size_t)snprintf(buf, 32, "key%08d", n);
}

/* The record of entry i: the kind cycles through seven shapes. */
static void record_of(int i, struct tl_record *r)
{
    memset(r, 0, sizeof *r);
    switch (i % N_KINDS) {
    case 0:
        r->kind = TL_KIND_PUT_BYTES;
        if (i == BIG_INDEX) {
            r->bytes = big_value;
            r->len = BIG_BYTES;
        } else {
            static __thread char text[32];
            r->len = (size_t)snprintf(text, sizeof text, "bytes-%d", i);
            r->bytes = (const uint8_t *)text;
        }
        if (i % 3 == 0) {
            r->has_expiry = true;
            r->expire_ms = EXPIRE_BASE + 3 * i;
        }
        break;
    case 1:
        r->kind = TL_KIND_PUT_INT;
        r->i = (int64_t)i * 3 - 100000;
        break;
    case 2:
        r->kind = TL_KIND_MERGE_INT;
        r->i = i % 2 ? -i : i;
        break;
    case 3:
        r->kind = TL_KIND_DELETE;
        break;
    case 4:
        r->kind = TL_KIND_PUT_INT;
        r->i = INT64_MAX - i;
        r->has_expiry = true;
        r->expire_ms = EXPIRE_BASE + i;
        break;
    case 5:
        r->kind = TL_KIND_MERGE_INT;
        r->i = 5;
        r->has_expiry = true;
        r->expire_ms = EXPIRE_BASE + 2 * i;
        break;
    case 6:
        r->kind = TL_KIND_EXPIRE;
        r->has_expiry = true;
        r->expire_ms = EXPIRE_BASE + i;
        break;
    }
}

static size_t value_of(int i, uint8_t *out)
{
    struct tl_record r;
    record_of(i, &r);
    CHECK(tl_record_encoded_len(&r) <= VALUE_MAX);
    return tl_record_encode(&r, out);
}

/* Checks that val is entry i's value, byte for byte and decoded. */
static void check_value(int i, const uint8_t *val, size_t vlen)
{
    uint8_t want[VALUE_MAX];
    size_t wlen = value_of(i, want);
    CHECK_EQ_INT(vlen, wlen);
    CHECK(memcmp(val, want, vlen) == 0);
    struct tl_record got, exp;
    record_of(i, &exp);
    CHECK_OK(tl_record_decode(val, vlen, &got));
    CHECK_EQ_INT(got.kind, exp.kind);
    CHECK_EQ_INT(got.has_expiry, exp.has_expiry);
    CHECK_EQ_INT(got.expire_ms, exp.expire_ms);
    if (exp.kind == TL_KIND_PUT_INT || exp.kind == TL_KIND_MERGE_INT)
        CHECK_EQ_INT(got.i, exp.i);
    if (exp.kind == TL_KIND_PUT_BYTES) {
        CHECK_EQ_INT(got.len, exp.len);
        CHECK(memcmp(got.bytes, exp.bytes, exp.len) == 0);
    }
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The props a table of the N_ENTRIES entries must have, worked out independently. */
static void expected_props(struct tl_sst_props *p)
{
    memset(p, 0, sizeof *p);
    int64_t *exp = malloc(N_ENTRIES * sizeof *exp);
    CHECK(exp != NULL);
    size_t n_exp = 0;
    uint8_t v[VALUE_MAX];
    for (int i = 0; i < N_ENTRIES; i++) {
        struct tl_record r;
        record_of(i, &r);
        p->entries++;
        p->raw_key_bytes += 11;
        p->raw_value_bytes += value_of(i, v);
        p->deletes += r.kind == TL_KIND_DELETE;
        p->merges += r.kind == TL_KIND_MERGE_INT || r.kind == TL_KIND_EXPIRE;
        if (r.has_expiry)
            exp[n_exp++] = r.expire_ms;
    }
    p->expiring_entries = n_exp;
    qsort(exp, n_exp, sizeof *exp, cmp_i64);
    p->expire_p50_ms = exp[(n_exp - 1) / 2];
    free(exp);
}

static void path_of(const char *name, char *buf)
{
    snprintf(buf, PATH_BYTES, "%s/%s", tmpdir, name);
}

static struct tl_sst_builder_options options(enum tl_compression c, int bloom_bits)
{
    return (struct tl_sst_builder_options){.block_size_bytes = BLOCK_BYTES,
                                           .bloom_bits_per_key = bloom_bits,
                                           .compression = c,
                                           .zstd_level = ZSTD_LEVEL};
}

/* Builds the table of the first n entries. */
static void build_table(const char *path, enum tl_compression c, int bloom_bits, int n,
                        struct tl_sst_props *props)
{
    struct tl_sst_builder *b;
    struct tl_sst_builder_options o = options(c, bloom_bits);
    CHECK_OK(tl_sst_builder_new(path, &o, &b));
    char k[32];
    uint8_t *v = malloc(VALUE_MAX);
    CHECK(v != NULL);
    for (int i = 0; i < n; i++) {
        size_t klen = key_of(2 * i, k);
        size_t vlen = value_of(i, v);
        CHECK_OK(tl_sst_builder_add(b, k, klen, v, vlen));
        CHECK_EQ_INT(tl_sst_builder_entries(b), i + 1);
    }
    uint64_t approx = tl_sst_builder_size(b);
    CHECK_OK(tl_sst_builder_finish(b, props));
    struct stat st;
    CHECK(stat(path, &st) == 0);
    CHECK_EQ_INT(props->file_size, st.st_size);
    CHECK_EQ_INT(st.st_mode & 0777, 0644);
    /* The running estimate is close to the result. */
    CHECK(approx > props->file_size / 2 && approx < props->file_size * 2);
    free(v);
}

static void check_props(const struct tl_sst_props *got, const struct tl_sst_props *want)
{
    CHECK_EQ_INT(got->entries, want->entries);
    CHECK_EQ_INT(got->raw_key_bytes, want->raw_key_bytes);
    CHECK_EQ_INT(got->raw_value_bytes, want->raw_value_bytes);
    CHECK_EQ_INT(got->deletes, want->deletes);
    CHECK_EQ_INT(got->merges, want->merges);
    CHECK_EQ_INT(got->expiring_entries, want->expiring_entries);
    CHECK_EQ_INT(got->expire_p50_ms, want->expire_p50_ms);
    CHECK_EQ_INT(got->smallest_len, 11);
    CHECK(memcmp(got->smallest, "key00000000", 11) == 0);
    CHECK_EQ_INT(got->largest_len, 11);
    CHECK(memcmp(got->largest, "key00199998", 11) == 0);
}

/* The compression type byte in the trailer of the block holding key n. */
static int stored_type(struct tl_sst *t, int n)
{
    char k[32];
    struct tl_block_handle h;
    CHECK(tl_sst_find_block(t, k, key_of(n, k), &h));
    int fd = open(tl_sst_path(t), O_RDONLY);
    CHECK(fd >= 0);
    uint8_t type;
    CHECK(pread(fd, &type, 1, (off_t)(h.offset + h.size)) == 1);
    close(fd);
    return type;
}

static void check_lookups(struct tl_sst *t)
{
    char k[32];
    struct tl_block_ref ref;
    const uint8_t *val;
    size_t vlen;
    for (int i = 0; i < N_ENTRIES; i++) {
        size_t klen = key_of(2 * i, k);
        CHECK_EQ_INT(tl_sst_get(t, k, klen, tl_hash64(k, klen), &ref, &val, &vlen), 1);
        check_value(i, val, vlen);
        tl_block_ref_release(&ref);
    }
    /* Between every pair of keys: the filter turns most away; search the rest. */
    for (int i = 0; i < N_ENTRIES; i++) {
        size_t klen = key_of(2 * i + 1, k);
        CHECK_EQ_INT(tl_sst_get(t, k, klen, tl_hash64(k, klen), &ref, &val, &vlen), 0);
    }
    /* The same without the filter, through find_block, read_blocks and block_get. */
    for (int i = 0; i < N_ENTRIES; i += 37) {
        size_t klen = key_of(2 * i + 1, k);
        struct tl_block_handle h;
        CHECK(tl_sst_find_block(t, k, klen, &h));
        CHECK_OK(tl_sst_read_blocks(&t, &h, 1, &ref, 0));
        CHECK_EQ_INT(tl_sst_block_get(&ref, k, klen, &val, &vlen), 0);
        tl_block_ref_release(&ref);
    }
    /* Before the first key, and past the last. */
    static const char *const before[] = {"", "a", "key", "key0000000", "j"};
    for (size_t i = 0; i < sizeof before / sizeof before[0]; i++) {
        size_t klen = strlen(before[i]);
        struct tl_block_handle h;
        CHECK(tl_sst_find_block(t, before[i], klen, &h));
        CHECK_EQ_INT(h.offset, 0);
        CHECK_EQ_INT(tl_sst_get(t, before[i], klen, tl_hash64(before[i], klen), &ref, &val, &vlen),
                     0);
        CHECK_OK(tl_sst_read_blocks(&t, &h, 1, &ref, 0));
        CHECK_EQ_INT(tl_sst_block_get(&ref, before[i], klen, &val, &vlen), 0);
        tl_block_ref_release(&ref);
    }
    static const char *const after[] = {"key00199999", "key002", "l", "zzz"};
    for (size_t i = 0; i < sizeof after / sizeof after[0]; i++) {
        size_t klen = strlen(after[i]);
        struct tl_block_handle h;
        CHECK(!tl_sst_find_block(t, after[i], klen, &h));
        CHECK_EQ_INT(tl_sst_get(t, after[i], klen, tl_hash64(after[i], klen), &ref, &val, &vlen),
                     0);
    }
}

static void check_scan(struct tl_sst *t, bool fill_cache)
{
    struct tl_sst_iter *it;
    CHECK_OK(tl_sst_iter_new(t, fill_cache, &it));
    CHECK(!tl_sst_iter_valid(it));
    char k[32];
    size_t klen, vlen;
    int n = 0;
    CHECK_OK(tl_sst_iter_seek(it, NULL, 0));
    while (tl_sst_iter_valid(it)) {
        const uint8_t *key = tl_sst_iter_key(it, &klen);
        CHECK_EQ_INT(klen, key_of(2 * n, k));
        CHECK(memcmp(key, k, klen) == 0);
        const uint8_t *val = tl_sst_iter_value(it, &vlen);
        check_value(n, val, vlen);
        n++;
        CHECK_OK(tl_sst_iter_next(it));
    }
    CHECK_EQ_INT(n, N_ENTRIES);
    CHECK_OK(tl_sst_iter_next(it)); /* at the end: stays invalid */
    CHECK(!tl_sst_iter_valid(it));

    /* Seeks: to each present key, between keys (lands on the next), backwards too. */
    for (int i = N_ENTRIES - 1; i >= 0; i -= 997) {
        CHECK_OK(tl_sst_iter_seek(it, k, key_of(2 * i, k)));
        CHECK(tl_sst_iter_valid(it));
        const uint8_t *key = tl_sst_iter_key(it, &klen);
        CHECK(klen == 11 && memcmp(key, k, 11) == 0);
        const uint8_t *val = tl_sst_iter_value(it, &vlen);
        check_value(i, val, vlen);

        CHECK_OK(tl_sst_iter_seek(it, k, key_of(2 * i - 1, k)));
        CHECK(tl_sst_iter_valid(it));
        key_of(2 * i, k);
        key = tl_sst_iter_key(it, &klen);
        CHECK(klen == 11 && memcmp(key, k, 11) == 0);
        /* A few steps on from a seek, across block boundaries. */
        for (int j = 1; j <= 40 && i + j < N_ENTRIES; j++) {
            CHECK_OK(tl_sst_iter_next(it));
            CHECK(tl_sst_iter_valid(it));
            key = tl_sst_iter_key(it, &klen);
            key_of(2 * (i + j), k);
            CHECK(klen == 11 && memcmp(key, k, 11) == 0);
            val = tl_sst_iter_value(it, &vlen);
            check_value(i + j, val, vlen);
        }
    }
    CHECK_OK(tl_sst_iter_seek(it, "a", 1));
    CHECK(tl_sst_iter_valid(it));
    CHECK(memcmp(tl_sst_iter_key(it, &klen), "key00000000", 11) == 0);
    CHECK_OK(tl_sst_iter_seek(it, "key00199998", 11));
    CHECK(tl_sst_iter_valid(it));
    CHECK_OK(tl_sst_iter_next(it));
    CHECK(!tl_sst_iter_valid(it));
    CHECK_OK(tl_sst_iter_seek(it, "key00199999", 11));
    CHECK(!tl_sst_iter_valid(it));
    CHECK_OK(tl_sst_iter_seek(it, "zzz", 3));
    CHECK(!tl_sst_iter_valid(it));
    tl_sst_iter_free(it);
}

struct progress {
    int calls;
    uint64_t last_done, total;
    bool monotonic;
};

static void on_progress(void *arg, uint64_t done, uint64_t total)
{
    struct progress *p = arg;
    if (done < p->last_done)
        p->monotonic = false;
    p->calls++;
    p->last_done = done;
    p->total = total;
}

/* The 100k-entry table for one codec; returns its data_bytes. */
static uint64_t test_sst_table_of_all_kinds(enum tl_compression c, const char *name)
{
    char path[PATH_BYTES];
    path_of(name, path);
    struct tl_sst_props built, want;
    build_table(path, c, BLOOM_BITS, N_ENTRIES, &built);
    expected_props(&want);
    check_props(&built, &want);
    CHECK(built.data_blocks > N_ENTRIES * 11 / BLOCK_BYTES);

    struct tl_block_cache *cache = tl_block_cache_new(CACHE_BYTES);
    CHECK(cache != NULL);
    struct tl_sst *t;
    CHECK_OK(tl_sst_open(path, 7, cache, &t));
    CHECK_EQ_INT(tl_sst_number(t), 7);
    CHECK(strcmp(tl_sst_path(t), path) == 0);
    const struct tl_sst_props *p = tl_sst_get_props(t);
    check_props(p, &want);
    CHECK_EQ_INT(p->data_blocks, built.data_blocks);
    CHECK_EQ_INT(p->data_bytes, built.data_bytes);
    CHECK_EQ_INT(p->file_size, built.file_size);
    /* Blocks of short repetitive entries compress; the type byte says how. */
    CHECK_EQ_INT(stored_type(t, 0), c);
    if (c != TL_COMPRESS_NONE)
        CHECK(p->data_bytes < (p->raw_key_bytes + p->raw_value_bytes) / 2);

    check_lookups(t);
    check_scan(t, true);
    check_scan(t, false);

    struct progress pr = {.monotonic = true};
    CHECK_OK(tl_sst_verify(path, on_progress, &pr));
    CHECK_EQ_INT(pr.calls, p->data_blocks + 1);
    CHECK_EQ_INT(pr.last_done, p->file_size);
    CHECK_EQ_INT(pr.total, p->file_size);
    CHECK(pr.monotonic);

    uint64_t data_bytes = p->data_bytes;
    tl_sst_close(t);
    tl_block_cache_free(cache);
    tl_sst_props_free(&built);
    printf("%s: %llu blocks, %llu data bytes, file %llu bytes\n", tl_compression_name(c),
           (unsigned long long)built.data_blocks, (unsigned long long)data_bytes,
           (unsigned long long)built.file_size);
    return data_bytes;
}

/* Entries of random bytes do not compress: every block is stored with type NONE, so the tables
 * of every codec are byte for byte the same size. */
static void test_sst_incompressible_stored_raw(void)
{
    enum { N = 3000, VLEN = 300 };
    uint64_t data_bytes[3], file_size[3];
    for (int c = 0; c < 3; c++) {
        char path[PATH_BYTES], name[32];
        snprintf(name, sizeof name, "random-%d.sst", c);
        path_of(name, path);
        struct tl_sst_builder *b;
        struct tl_sst_builder_options o = options((enum tl_compression)c, BLOOM_BITS);
        CHECK_OK(tl_sst_builder_new(path, &o, &b));
        uint64_t seed = 99;
        uint8_t v[VLEN + 1];
        char k[32];
        for (int i = 0; i < N; i++) {
            v[0] = TL_KIND_PUT_BYTES;
            for (int j = 1; j <= VLEN; j++)
                v[j] = (uint8_t)test_rand(&seed);
            CHECK_OK(tl_sst_builder_add(b, k, key_of(i, k), v, sizeof v));
        }
        struct tl_sst_props p;
        CHECK_OK(tl_sst_builder_finish(b, &p));
        CHECK_EQ_INT(p.raw_value_bytes, N * (VLEN + 1));
        /* Stored raw: the values, the keys less their shared prefixes, and block overhead. */
        CHECK(p.data_bytes > p.raw_value_bytes);
        CHECK(p.data_bytes < (p.raw_key_bytes + p.raw_value_bytes) * 11 / 10);
        data_bytes[c] = p.data_bytes;
        file_size[c] = p.file_size;

        struct tl_sst *t;
        CHECK_OK(tl_sst_open(path, 1, NULL, &t));
        for (int i = 0; i < N; i += 500)
            CHECK_EQ_INT(stored_type(t, i), TL_COMPRESS_NONE);
        tl_sst_close(t);
        CHECK_OK(tl_sst_verify(path, NULL, NULL));
        tl_sst_props_free(&p);
    }
    CHECK_EQ_INT(data_bytes[1], data_bytes[0]);
    CHECK_EQ_INT(data_bytes[2], data_bytes[0]);
    CHECK_EQ_INT(file_size[1], file_size[0]);
    CHECK_EQ_INT(file_size[2], file_size[0]);
}

/* One block looked up alone (tl_sst_cached_block), and a batch told that its first block
 * missed already. Then four blocks of two tables in one call: the first time all miss the
 * cache (one batch), the second time all hit. Both tables have a block at offset 0: the cache
 * tells them apart. */
static void test_sst_read_blocks_two_tables(void)
{
    char pa[PATH_BYTES], pb[PATH_BYTES];
    path_of("all-lz4.sst", pa);
    path_of("all-zstd.sst", pb);
    struct tl_block_cache *cache = tl_block_cache_new(CACHE_BYTES);
    CHECK(cache != NULL);
    struct tl_sst *a, *b;
    CHECK_OK(tl_sst_open(pa, 1, cache, &a));
    CHECK_OK(tl_sst_open(pb, 2, cache, &b));

    /* A scan that bypasses the cache leaves it untouched. */
    struct tl_sst_iter *it;
    CHECK_OK(tl_sst_iter_new(a, false, &it));
    int n = 0;
    CHECK_OK(tl_sst_iter_seek(it, NULL, 0));
    for (; tl_sst_iter_valid(it); n++)
        CHECK_OK(tl_sst_iter_next(it));
    CHECK_EQ_INT(n, N_ENTRIES);
    tl_sst_iter_free(it);
    uint64_t hits, misses, bytes;
    tl_block_cache_stats(cache, &hits, &misses, &bytes);
    CHECK_EQ_INT(hits, 0);
    CHECK_EQ_INT(misses, 0);
    CHECK_EQ_INT(bytes, 0);

    static const int entry[4] = {0, 0, 70001, 99999};
    struct tl_sst *tables[4] = {a, b, a, b};
    struct tl_block_handle h[4];
    char k[4][32];
    size_t klen[4];
    for (int i = 0; i < 4; i++) {
        klen[i] = key_of(2 * entry[i], k[i]);
        CHECK(tl_sst_find_block(tables[i], k[i], klen[i], &h[i]));
    }
    CHECK_EQ_INT(h[0].offset, 0);
    CHECK_EQ_INT(h[1].offset, 0);

    /* One block alone: a miss, counted once (the batch after it is told that its first block
     * missed, and looks up only the second, b's), then, once read, a hit. */
    struct tl_block_ref one;
    CHECK_EQ_INT(tl_sst_cached_block(a, &h[0], &one), 0);
    CHECK(one.data == NULL && one.cached == NULL);
    tl_block_cache_stats(cache, &hits, &misses, NULL);
    CHECK_EQ_INT(hits, 0);
    CHECK_EQ_INT(misses, 1);
    struct tl_block_ref pair[2];
    CHECK_OK(tl_sst_read_blocks(tables, h, 2, pair, 1));
    tl_block_cache_stats(cache, &hits, &misses, NULL);
    CHECK_EQ_INT(hits, 0);
    CHECK_EQ_INT(misses, 2);
    for (int i = 0; i < 2; i++)
        tl_block_ref_release(&pair[i]);
    CHECK_EQ_INT(tl_sst_cached_block(a, &h[0], &one), 1);
    CHECK(one.table == a && one.cached != NULL && one.offset == h[0].offset);
    {
        const uint8_t *val;
        size_t vlen;
        CHECK_EQ_INT(tl_sst_block_get(&one, k[0], klen[0], &val, &vlen), 1);
        check_value(entry[0], val, vlen);
    }
    tl_block_ref_release(&one);
    tl_block_cache_stats(cache, &hits, &misses, NULL);
    CHECK_EQ_INT(hits, 1);
    CHECK_EQ_INT(misses, 2);
    /* A handle outside the data area is damage, not a miss. */
    struct tl_block_handle bad = {.offset = h[0].offset + (1ull << 40), .size = h[0].size};
    CHECK_EQ_INT(tl_sst_cached_block(a, &bad, &one), TL_ECORRUPT);
    CHECK(strstr(tl_last_error(), "outside the data area") != NULL);
    CHECK(one.data == NULL && one.cached == NULL);
    /* The rounds below start from a cache without the blocks. */
    tl_sst_close(a);
    tl_sst_close(b);
    tl_block_cache_free(cache);
    CHECK((cache = tl_block_cache_new(CACHE_BYTES)) != NULL);
    CHECK_OK(tl_sst_open(pa, 1, cache, &a));
    CHECK_OK(tl_sst_open(pb, 2, cache, &b));
    tables[0] = tables[2] = a;
    tables[1] = tables[3] = b;

    for (int round = 0; round < 2; round++) {
        uint64_t hits0, misses0, hits1, misses1;
        tl_block_cache_stats(cache, &hits0, &misses0, NULL);
        struct tl_block_ref refs[4];
        CHECK_OK(tl_sst_read_blocks(tables, h, 4, refs, 0));
        tl_block_cache_stats(cache, &hits1, &misses1, NULL);
        CHECK_EQ_INT(hits1 - hits0, round == 0 ? 0 : 4);
        CHECK_EQ_INT(misses1 - misses0, round == 0 ? 4 : 0);
        for (int i = 0; i < 4; i++) {
            const uint8_t *val;
            size_t vlen;
            CHECK(refs[i].table == tables[i]);
            CHECK_EQ_INT(refs[i].offset, h[i].offset);
            CHECK_EQ_INT(tl_sst_block_get(&refs[i], k[i], klen[i], &val, &vlen), 1);
            check_value(entry[i], val, vlen);
            tl_block_ref_release(&refs[i]);
        }
    }
    /* More blocks than a read keeps on the stack (16), of both tables, the first told missed:
     * every other one is looked up (and missed) once, and all are read and cached. */
    enum { MANY = 20 };
    struct tl_sst *mt[MANY];
    struct tl_block_handle mh[MANY];
    struct tl_block_ref mr[MANY];
    char mk[MANY][32];
    size_t mkl[MANY];
    int me[MANY];
    for (int i = 0; i < MANY; i++) {
        me[i] = 1000 + i * 4000;
        mt[i] = i % 2 ? b : a;
        mkl[i] = key_of(2 * me[i], mk[i]);
        CHECK(tl_sst_find_block(mt[i], mk[i], mkl[i], &mh[i]));
    }
    uint64_t hits2, misses2;
    CHECK_EQ_INT(tl_sst_cached_block(mt[0], &mh[0], &mr[0]), 0);
    tl_block_cache_stats(cache, &hits, &misses, NULL);
    CHECK_OK(tl_sst_read_blocks(mt, mh, MANY, mr, 1));
    tl_block_cache_stats(cache, &hits2, &misses2, NULL);
    CHECK_EQ_INT(hits2 - hits, 0);
    CHECK_EQ_INT(misses2 - misses, MANY - 1);
    for (int i = 0; i < MANY; i++) {
        const uint8_t *val;
        size_t vlen;
        CHECK(mr[i].cached != NULL);
        CHECK_EQ_INT(tl_sst_block_get(&mr[i], mk[i], mkl[i], &val, &vlen), 1);
        check_value(me[i], val, vlen);
        tl_block_ref_release(&mr[i]);
    }
    for (int i = 0; i < MANY; i++) {
        CHECK_EQ_INT(tl_sst_cached_block(mt[i], &mh[i], &mr[i]), 1);
        tl_block_ref_release(&mr[i]);
    }
    /* No blocks: nothing to do. */
    CHECK_OK(tl_sst_read_blocks(tables, h, 0, NULL, 0));
    tl_sst_close(a);
    tl_sst_close(b);
    tl_block_cache_free(cache);
}

struct reader_arg {
    struct tl_sst *t;
    int first;
    int64_t found;
};

static void *reader_thread(void *p)
{
    struct reader_arg *a = p;
    char k[32];
    struct tl_block_ref ref;
    const uint8_t *val;
    size_t vlen;
    for (int i = a->first; i < N_ENTRIES; i += 3) {
        size_t klen = key_of(2 * i, k);
        if (tl_sst_get(a->t, k, klen, tl_hash64(k, klen), &ref, &val, &vlen) != 1)
            return NULL;
        check_value(i, val, vlen);
        tl_block_ref_release(&ref);
        a->found++;
    }
    return NULL;
}

/* Several threads, each with its own ring, read one table through a small shared cache that
 * evicts all the time. */
static void test_sst_concurrent_reads(void)
{
    enum { THREADS = 6 };
    char path[PATH_BYTES];
    path_of("all-lz4.sst", path);
    struct tl_block_cache *cache = tl_block_cache_new(256 * 1024);
    CHECK(cache != NULL);
    struct tl_sst *t;
    CHECK_OK(tl_sst_open(path, 3, cache, &t));
    pthread_t th[THREADS];
    struct reader_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (struct reader_arg){.t = t, .first = i % 3};
        CHECK(pthread_create(&th[i], NULL, reader_thread, &args[i]) == 0);
    }
    for (int i = 0; i < THREADS; i++) {
        CHECK(pthread_join(th[i], NULL) == 0);
        CHECK_EQ_INT(args[i].found, (N_ENTRIES - args[i].first + 2) / 3);
    }
    tl_sst_close(t);
    tl_block_cache_free(cache);
}

static void copy_file(const char *from, const char *to)
{
    char cmd[2 * PATH_BYTES + 16];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
    CHECK(system(cmd) == 0);
}

static void flip_byte(const char *path, uint64_t off)
{
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    uint8_t c;
    CHECK(pread(fd, &c, 1, (off_t)off) == 1);
    c ^= 0x5a;
    CHECK(pwrite(fd, &c, 1, (off_t)off) == 1);
    close(fd);
}

/* The last error names the file and the offset. */
static void check_error_names(const char *path, uint64_t off)
{
    char want[64];
    snprintf(want, sizeof want, "offset %llu", (unsigned long long)off);
    if (!strstr(tl_last_error(), path) || !strstr(tl_last_error(), want)) {
        fprintf(stderr, "error does not name %s and %s: %s\n", path, want, tl_last_error());
        exit(1);
    }
}

static uint64_t footer_u64(const char *path, int at)
{
    struct stat st;
    CHECK(stat(path, &st) == 0);
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    uint8_t b[8];
    CHECK(pread(fd, b, 8, st.st_size - TL_SST_FOOTER_BYTES + at) == 8);
    close(fd);
    return tl_get_u64(b);
}

static void test_sst_corrupt_data_block(void)
{
    enum { N = 5000, VICTIM = 2500 };
    char path[PATH_BYTES], good[PATH_BYTES];
    path_of("corrupt-data.sst", path);
    path_of("good-small.sst", good);
    struct tl_sst_props p;
    build_table(path, TL_COMPRESS_LZ4, BLOOM_BITS, N, &p);
    tl_sst_props_free(&p);
    build_table(good, TL_COMPRESS_LZ4, BLOOM_BITS, N, &p);
    tl_sst_props_free(&p);

    char k[32];
    size_t klen = key_of(2 * VICTIM, k);
    struct tl_sst *t;
    CHECK_OK(tl_sst_open(path, 1, NULL, &t));
    struct tl_block_handle h;
    CHECK(tl_sst_find_block(t, k, klen, &h));
    /* Entries before the victim's block: what a scan returns before the error. */
    int before = 0;
    for (;; before++) {
        struct tl_block_handle hb;
        klen = key_of(2 * before, k);
        CHECK(tl_sst_find_block(t, k, klen, &hb));
        if (hb.offset == h.offset)
            break;
    }
    CHECK(before > 0);
    uint64_t meta_bytes = tl_sst_get_props(t)->file_size - footer_u64(path, 0);
    tl_sst_close(t);
    flip_byte(path, h.offset + h.size / 2);
    klen = key_of(2 * VICTIM, k);

    /* The metadata is intact: the table opens, and the bad block is found when read. */
    struct tl_block_cache *cache = tl_block_cache_new(CACHE_BYTES);
    CHECK(cache != NULL);
    CHECK_OK(tl_sst_open(path, 1, cache, &t));
    struct tl_block_ref ref;
    const uint8_t *val;
    size_t vlen;
    CHECK_EQ_INT(tl_sst_get(t, k, klen, tl_hash64(k, klen), &ref, &val, &vlen), TL_ECORRUPT);
    check_error_names(path, h.offset);
    CHECK(strstr(tl_last_error(), "checksum") != NULL);
    CHECK(strstr(tl_last_error(), "tallyctl verify") != NULL);
    CHECK(ref.data == NULL && ref.cached == NULL);
    /* Other blocks still read. */
    klen = key_of(0, k);
    CHECK_EQ_INT(tl_sst_get(t, k, klen, tl_hash64(k, klen), &ref, &val, &vlen), 1);
    tl_block_ref_release(&ref);

    /* A batch holding the bad block and good ones of another table fails as a whole. */
    struct tl_sst *g;
    CHECK_OK(tl_sst_open(good, 2, cache, &g));
    struct tl_sst *tables[3] = {g, t, g};
    struct tl_block_handle hs[3];
    CHECK(tl_sst_find_block(g, k, klen, &hs[0]));
    hs[1] = h;
    klen = key_of(2 * (N - 1), k);
    CHECK(tl_sst_find_block(g, k, klen, &hs[2]));
    struct tl_block_ref refs[3];
    CHECK_EQ_INT(tl_sst_read_blocks(tables, hs, 3, refs, 0), TL_ECORRUPT);
    check_error_names(path, h.offset);
    for (int i = 0; i < 3; i++)
        CHECK(refs[i].data == NULL && refs[i].cached == NULL);
    tl_sst_close(g);

    /* Scans stop with the error, with and without the cache. */
    for (int fill = 0; fill < 2; fill++) {
        struct tl_sst_iter *it;
        CHECK_OK(tl_sst_iter_new(t, fill, &it));
        int rc = tl_sst_iter_seek(it, NULL, 0), n = 0;
        while (rc == 0 && tl_sst_iter_valid(it)) {
            n++;
            rc = tl_sst_iter_next(it);
        }
        CHECK_EQ_INT(rc, TL_ECORRUPT);
        check_error_names(path, h.offset);
        CHECK_EQ_INT(n, before);
        CHECK(!tl_sst_iter_valid(it));
        CHECK_EQ_INT(tl_sst_iter_next(it), TL_ECORRUPT); /* the error sticks */
        tl_sst_iter_free(it);
        /* Seeking right into the bad block fails too. */
        CHECK_OK(tl_sst_iter_new(t, fill, &it));
        klen = key_of(2 * VICTIM, k);
        CHECK_EQ_INT(tl_sst_iter_seek(it, k, klen), TL_ECORRUPT);
        tl_sst_iter_free(it);
    }
    tl_sst_close(t);
    tl_block_cache_free(cache);

    struct progress pr = {.monotonic = true};
    CHECK_EQ_INT(tl_sst_verify(path, on_progress, &pr), TL_ECORRUPT);
    check_error_names(path, h.offset);
    CHECK(pr.calls >= 1);
    CHECK(pr.last_done >= meta_bytes && pr.last_done <= meta_bytes + h.offset);
    CHECK_OK(tl_sst_verify(good, NULL, NULL));

    /* A flipped compression type byte in the trailer is caught by the checksum too. */
    char typ[PATH_BYTES];
    path_of("corrupt-type.sst", typ);
    copy_file(good, typ);
    flip_byte(typ, hs[0].offset + hs[0].size);
    CHECK_EQ_INT(tl_sst_verify(typ, NULL, NULL), TL_ECORRUPT);
    check_error_names(typ, hs[0].offset);
}

static void test_sst_corrupt_metadata_and_truncation(void)
{
    char good[PATH_BYTES], bad[PATH_BYTES];
    path_of("good-small.sst", good);
    path_of("bad-meta.sst", bad);
    struct stat st;
    CHECK(stat(good, &st) == 0);
    uint64_t size = (uint64_t)st.st_size;
    struct tl_sst *t;

    /* A byte of the index block: its checksum fails at open. */
    uint64_t index_off = footer_u64(good, 24);
    copy_file(good, bad);
    flip_byte(bad, index_off + 3);
    CHECK_EQ_INT(tl_sst_open(bad, 1, NULL, &t), TL_ECORRUPT);
    check_error_names(bad, index_off);
    CHECK(strstr(tl_last_error(), "index") != NULL);
    CHECK_EQ_INT(tl_sst_verify(bad, NULL, NULL), TL_ECORRUPT);
    unlink(bad);

    /* The props and filter blocks likewise. */
    uint64_t props_off = footer_u64(good, 12);
    copy_file(good, bad);
    flip_byte(bad, props_off);
    CHECK_EQ_INT(tl_sst_open(bad, 1, NULL, &t), TL_ECORRUPT);
    check_error_names(bad, props_off);
    unlink(bad);
    uint64_t filter_off = footer_u64(good, 0);
    copy_file(good, bad);
    flip_byte(bad, filter_off + 100);
    CHECK_EQ_INT(tl_sst_open(bad, 1, NULL, &t), TL_ECORRUPT);
    check_error_names(bad, filter_off);
    unlink(bad);

    /* The magic: not an SSTable. */
    copy_file(good, bad);
    flip_byte(bad, size - 1);
    CHECK_EQ_INT(tl_sst_open(bad, 1, NULL, &t), TL_ECORRUPT);
    check_error_names(bad, size - TL_SST_FOOTER_BYTES);
    CHECK(strstr(tl_last_error(), "not a Tally SSTable") != NULL);
    unlink(bad);

    /* The version. */
    copy_file(good, bad);
    flip_byte(bad, size - TL_SST_FOOTER_BYTES + 36);
    CHECK_EQ_INT(tl_sst_open(bad, 1, NULL, &t), TL_ECORRUPT);
    CHECK(strstr(tl_last_error(), "format version") != NULL);
    unlink(bad);

    /* An index offset pointing past the end of the file. */
    copy_file(good, bad);
    flip_byte(bad, size - TL_SST_FOOTER_BYTES + 24 + 5);
    CHECK_EQ_INT(tl_sst_open(bad, 1, NULL, &t), TL_ECORRUPT);
    CHECK(strstr(tl_last_error(), "outside the file") != NULL);
    check_error_names(bad, size - TL_SST_FOOTER_BYTES);
    unlink(bad);

    /* Truncated: to half, by one byte, and to less than a footer. */
    static const double cut[] = {0.5, -1, 20, 0};
    for (size_t i = 0; i < sizeof cut / sizeof cut[0]; i++) {
        uint64_t len = cut[i] < 0 ? size - 1 : cut[i] < 1 ? (uint64_t)(size * cut[i]) : 20;
        if (cut[i] == 0)
            len = 0;
        copy_file(good, bad);
        CHECK(truncate(bad, (off_t)len) == 0);
        CHECK_EQ_INT(tl_sst_open(bad, 1, NULL, &t), TL_ECORRUPT);
        CHECK(strstr(tl_last_error(), bad) != NULL);
        CHECK(strstr(tl_last_error(), "truncated") != NULL);
        if (len >= TL_SST_FOOTER_BYTES) {
            check_error_names(bad, len - TL_SST_FOOTER_BYTES);
            CHECK(strstr(tl_last_error(), "not a Tally SSTable") != NULL);
        } else {
            CHECK(strstr(tl_last_error(), "too short") != NULL);
        }
        CHECK_EQ_INT(tl_sst_verify(bad, NULL, NULL), TL_ECORRUPT);
        unlink(bad);
    }

    /* A file that is missing altogether is an errno, not corruption. */
    CHECK_EQ_INT(tl_sst_open(bad, 1, NULL, &t), -ENOENT);
    CHECK(strstr(tl_last_error(), bad) != NULL);
}

static void test_sst_builder_failures_leave_no_file(void)
{
    char path[PATH_BYTES];
    path_of("fail.sst", path);
    struct tl_sst_builder *b;
    struct tl_sst_builder_options o = options(TL_COMPRESS_LZ4, BLOOM_BITS);
    uint8_t v[VALUE_MAX];
    size_t vlen = value_of(1, v);

    /* Out of order keys: the add fails, so does finish, and the file is gone. */
    CHECK_OK(tl_sst_builder_new(path, &o, &b));
    CHECK_OK(tl_sst_builder_add(b, "b", 1, v, vlen));
    CHECK_EQ_INT(tl_sst_builder_add(b, "a", 1, v, vlen), -EINVAL);
    CHECK_EQ_INT(tl_sst_builder_add(b, "c", 1, v, vlen), -EINVAL);
    CHECK_EQ_INT(tl_sst_builder_finish(b, NULL), -EINVAL);
    CHECK(access(path, F_OK) != 0 && errno == ENOENT);

    /* A duplicate key is out of order too. */
    CHECK_OK(tl_sst_builder_new(path, &o, &b));
    CHECK_OK(tl_sst_builder_add(b, "b", 1, v, vlen));
    CHECK_EQ_INT(tl_sst_builder_add(b, "b", 1, v, vlen), -EINVAL);
    tl_sst_builder_abandon(b);
    CHECK(access(path, F_OK) != 0);

    /* A value that is not an entry value. */
    CHECK_OK(tl_sst_builder_new(path, &o, &b));
    const uint8_t junk[] = {0x7f, 1, 2};
    CHECK_EQ_INT(tl_sst_builder_add(b, "a", 1, junk, sizeof junk), TL_ECORRUPT);
    CHECK(strstr(tl_last_error(), path) != NULL);
    CHECK_EQ_INT(tl_sst_builder_finish(b, NULL), TL_ECORRUPT);
    CHECK(access(path, F_OK) != 0);

    /* Abandoning a builder with data removes the file. */
    CHECK_OK(tl_sst_builder_new(path, &o, &b));
    CHECK_OK(tl_sst_builder_add(b, "a", 1, v, vlen));
    tl_sst_builder_abandon(b);
    CHECK(access(path, F_OK) != 0);

    /* An existing file is never overwritten. */
    int fd = open(path, O_CREAT | O_WRONLY, 0644);
    CHECK(fd >= 0);
    CHECK(write(fd, "keep", 4) == 4);
    close(fd);
    CHECK_EQ_INT(tl_sst_builder_new(path, &o, &b), -EEXIST);
    CHECK(strstr(tl_last_error(), path) != NULL);
    struct stat st;
    CHECK(stat(path, &st) == 0 && st.st_size == 4);
    unlink(path);
}

static void test_sst_empty_and_unfiltered_tables(void)
{
    char path[PATH_BYTES];
    path_of("empty.sst", path);
    struct tl_sst_builder *b;
    struct tl_sst_builder_options o = options(TL_COMPRESS_ZSTD, BLOOM_BITS);
    CHECK_OK(tl_sst_builder_new(path, &o, &b));
    struct tl_sst_props p;
    CHECK_OK(tl_sst_builder_finish(b, &p));
    CHECK_EQ_INT(p.entries, 0);
    CHECK_EQ_INT(p.data_blocks, 0);
    CHECK_EQ_INT(p.expire_p50_ms, 0);
    tl_sst_props_free(&p);
    struct tl_sst *t;
    CHECK_OK(tl_sst_open(path, 1, NULL, &t));
    CHECK_EQ_INT(tl_sst_get_props(t)->entries, 0);
    CHECK_EQ_INT(tl_sst_get_props(t)->smallest_len, 0);
    struct tl_block_ref ref;
    const uint8_t *val;
    size_t vlen;
    CHECK_EQ_INT(tl_sst_get(t, "a", 1, tl_hash64("a", 1), &ref, &val, &vlen), 0);
    struct tl_block_handle h;
    CHECK(!tl_sst_find_block(t, "", 0, &h));
    struct tl_sst_iter *it;
    CHECK_OK(tl_sst_iter_new(t, false, &it));
    CHECK_OK(tl_sst_iter_seek(it, NULL, 0));
    CHECK(!tl_sst_iter_valid(it));
    tl_sst_iter_free(it);
    tl_sst_close(t);
    struct progress pr = {.monotonic = true};
    CHECK_OK(tl_sst_verify(path, on_progress, &pr));
    CHECK_EQ_INT(pr.calls, 1);

    /* bloom_bits_per_key 0: no filter block; every key may be present; lookups still work. */
    path_of("nofilter.sst", path);
    build_table(path, TL_COMPRESS_LZ4, 0, 2000, &p);
    tl_sst_props_free(&p);
    CHECK_EQ_INT(footer_u64(path, 8) & 0xffffffffu, 0);
    CHECK_OK(tl_sst_open(path, 1, NULL, &t));
    CHECK(tl_sst_may_contain(t, tl_hash64("nothing", 7)));
    char k[32];
    size_t klen = key_of(2 * 1234, k);
    CHECK_EQ_INT(tl_sst_get(t, k, klen, tl_hash64(k, klen), &ref, &val, &vlen), 1);
    check_value(1234, val, vlen);
    tl_block_ref_release(&ref);
    klen = key_of(2 * 1234 + 1, k);
    CHECK_EQ_INT(tl_sst_get(t, k, klen, tl_hash64(k, klen), &ref, &val, &vlen), 0);
    tl_sst_close(t);
    CHECK_OK(tl_sst_verify(path, NULL, NULL));
}

/* Keys for the index search: "k" alone, "kS", then blocks of "kSAMEWORD%06d" (the index words
 * after the common "k" all equal "SAMEWORD"), "kSAMEWORDS", "kTAIL%06d" and a last "kz". */
#define INDEX_GROUP 3000
static size_t index_key(int i, char *buf)
{
    /* buf holds 24 bytes (struct key_list) */
    if (i == 0)
        return (size_t)snprintf(buf, 24, "k");
    if (i == 1)
        return (size_t)snprintf(buf, 24, "kS");
    i -= 2;
    if (i < INDEX_GROUP)
        return (size_t)snprintf(buf, 24, "kSAMEWORD%06d", 2 * i);
    if (i == INDEX_GROUP)
        return (size_t)snprintf(buf, 24, "kSAMEWORDS");
    i -= INDEX_GROUP + 1;
    if (i < INDEX_GROUP)
        return (size_t)snprintf(buf, 24, "kTAIL%06d", 2 * i);
    return (size_t)snprintf(buf, 24, "kz");
}

/* The keys of an index test, in order. */
struct key_list {
    char (*key)[24];
    size_t *len;
    int n;
};

/* A seek lands on the smallest key >= the one sought, found here by a walk over the keys. */
static void check_seek(struct tl_sst *t, const struct key_list *keys, const char *q, size_t qlen)
{
    int expect = -1;
    for (int i = 0; i < keys->n && expect < 0; i++)
        if (tl_key_cmp(keys->key[i], keys->len[i], q, qlen) >= 0)
            expect = i;
    struct tl_sst_iter *it;
    CHECK_OK(tl_sst_iter_new(t, false, &it));
    CHECK_OK(tl_sst_iter_seek(it, q, qlen));
    if (expect < 0) {
        CHECK(!tl_sst_iter_valid(it));
    } else {
        CHECK(tl_sst_iter_valid(it));
        size_t glen;
        const uint8_t *got = tl_sst_iter_key(it, &glen);
        if (glen != keys->len[expect] || memcmp(got, keys->key[expect], glen) != 0) {
            fprintf(stderr,
                    "seek to a key of %zu bytes found the wrong key (%zu bytes), "
                    "expected key %d\n",
                    qlen, glen, expect);
            exit(1);
        }
    }
    tl_sst_iter_free(it);
}

/* Builds a table of the keys with blocks of 128 bytes, and checks every key's get and seek, a
 * byte past each key, each key less its last byte, and the extra queries. */
static void check_index_search(const char *name, const struct key_list *keys,
                               const char *const *extra, const size_t *extra_len, size_t n_extra)
{
    char path[PATH_BYTES];
    path_of(name, path);
    struct tl_sst_builder *b;
    struct tl_sst_builder_options o = options(TL_COMPRESS_LZ4, 0);
    o.block_size_bytes = 128;
    CHECK_OK(tl_sst_builder_new(path, &o, &b));
    uint8_t v[VALUE_MAX];
    size_t vlen = value_of(1, v);
    for (int i = 0; i < keys->n; i++)
        CHECK_OK(tl_sst_builder_add(b, keys->key[i], keys->len[i], v, vlen));
    struct tl_sst_props p;
    CHECK_OK(tl_sst_builder_finish(b, &p));
    CHECK(p.data_blocks > 100);
    tl_sst_props_free(&p);
    struct tl_sst *t;
    CHECK_OK(tl_sst_open(path, 1, NULL, &t));
    struct tl_block_ref ref;
    const uint8_t *val;
    char q[32];
    for (int i = 0; i < keys->n; i++) {
        size_t klen = keys->len[i];
        memcpy(q, keys->key[i], klen);
        CHECK_EQ_INT(tl_sst_get(t, q, klen, tl_hash64(q, klen), &ref, &val, &vlen), 1);
        tl_block_ref_release(&ref);
        check_seek(t, keys, q, klen);
        q[klen] = 0; /* just past the key: the next key, or absent */
        bool next_is_key = i + 1 < keys->n && keys->len[i + 1] == klen + 1 &&
                           memcmp(keys->key[i + 1], q, klen + 1) == 0;
        int found = tl_sst_get(t, q, klen + 1, tl_hash64(q, klen + 1), &ref, &val, &vlen);
        CHECK_EQ_INT(found, next_is_key ? 1 : 0);
        if (found > 0)
            tl_block_ref_release(&ref);
        check_seek(t, keys, q, klen + 1);
        if (klen > 1)
            check_seek(t, keys, q, klen - 1);
    }
    for (size_t i = 0; i < n_extra; i++)
        check_seek(t, keys, extra[i], extra_len[i]);
    tl_sst_close(t);
}

static struct key_list key_list_new(int n)
{
    struct key_list k = {malloc((size_t)n * sizeof *k.key), malloc((size_t)n * sizeof *k.len), n};
    CHECK(k.key && k.len);
    return k;
}

static void key_list_free(struct key_list *k)
{
    free(k->key);
    free(k->len);
}

/* The index search: keys shorter than the common prefix ("k") and the word after it, long runs
 * of blocks whose words are equal, and keys sought outside the table. */
static void test_sst_index_search(void)
{
    struct key_list keys = key_list_new(2 * INDEX_GROUP + 4);
    for (int i = 0; i < keys.n; i++)
        keys.len[i] = index_key(i, keys.key[i]);
    static const char *const extra[] = {
        "a",          "j~",    "kA",    "kSAMEWORC", "kSAMEWORD", "kSAMEWORE", "kSAMEWORD999999",
        "kSAMEWORDT", "kTAIL", "kTAIM", "ky",        "kz0",       "l",         "\xff"};
    size_t extra_len[sizeof extra / sizeof extra[0]];
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++)
        extra_len[i] = strlen(extra[i]);
    check_index_search("index.sst", &keys, extra, extra_len, sizeof extra / sizeof extra[0]);
    key_list_free(&keys);
}

/* Binary keys behind a longer common prefix ("pppS"): zero bytes inside and at the end, so that
 * words padded with zeros tie with real zeros, and queries shorter than the prefix. */
static void test_sst_index_binary_keys(void)
{
    struct key_list keys = key_list_new(3002);
    memcpy(keys.key[0], "pppS", 4);
    keys.len[0] = 4;
    memcpy(keys.key[1], "pppS\0", 5);
    keys.len[1] = 5;
    for (int i = 1; i <= 3000; i++) {
        char *k = keys.key[i + 1];
        memcpy(k, "pppS", 4);
        k[4] = (char)(i >> 8);
        k[5] = (char)(i & 0xff);
        memset(k + 6, 0, (size_t)(i % 3));
        keys.len[i + 1] = 6 + (size_t)(i % 3);
    }
    static const char *const extra[] = {"",
                                        "p",
                                        "pp",
                                        "ppp",
                                        "pppR",
                                        "pppS\0\0\0",
                                        "pppS\0\0\0\0\0\0\0\0\0",
                                        "pppS\x0b\xb8\0\0\0",
                                        "pppS\xff",
                                        "pppT",
                                        "\0"};
    static const size_t extra_len[] = {0, 1, 2, 3, 4, 7, 13, 9, 5, 4, 1};
    check_index_search("index-binary.sst", &keys, extra, extra_len, sizeof extra / sizeof extra[0]);
    key_list_free(&keys);
}

int main(void)
{
    test_require_uring();
    tmpdir = test_tmpdir("sst");
    for (size_t i = 0; i < BIG_BYTES; i++)
        big_value[i] = (uint8_t)("0123456789abcdef"[(i * 31) % 16] ^ (i / 1000));

    uint64_t none = test_sst_table_of_all_kinds(TL_COMPRESS_NONE, "all-none.sst");
    uint64_t lz4 = test_sst_table_of_all_kinds(TL_COMPRESS_LZ4, "all-lz4.sst");
    uint64_t zstd = test_sst_table_of_all_kinds(TL_COMPRESS_ZSTD, "all-zstd.sst");
    CHECK(lz4 < none && zstd < lz4);

    test_sst_incompressible_stored_raw();
    test_sst_read_blocks_two_tables();
    test_sst_concurrent_reads();
    test_sst_corrupt_data_block();
    test_sst_corrupt_metadata_and_truncation();
    test_sst_builder_failures_leave_no_file();
    test_sst_empty_and_unfiltered_tables();
    test_sst_index_search();
    test_sst_index_binary_keys();

    test_rmdir(tmpdir);
    free(tmpdir);
    printf("test_sst: ok\n");
    return 0;
}
