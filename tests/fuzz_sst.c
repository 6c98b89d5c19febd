/*
 * fuzz_sst.c - libFuzzer target for the SSTable reader (storage/sst_reader.c and the block,
 * bloom, compression and record decoders behind it).
 *
 * The input is the bytes of a table file. It is written to a scratch file and read the way the
 * engine and tallyctl read tables: tl_sst_verify, then tl_sst_open with a small block cache,
 * a full scan with and without the cache, a seek and a point lookup of every key the scan met
 * (up to FUZZ_MAX_KEYS), and a lookup of a key taken from the input. Then the same again with
 * every block checksum recomputed (see fuzz_storage.h), so that mutations reach the parsers
 * behind the checksums.
 *
 * Besides crashes, sanitizer reports and leaks, the target checks what the reader promises:
 * a failure returns a negative code with a message, and a table that tl_sst_verify passes
 * reads back whole: both scans agree, end without error after exactly the props' entry count
 * in strictly increasing key order with values that decode, and every key seeks and looks up
 * to the value the scan saw.
 *
 * Build: see tests/test_fuzz_sst.sh (clang -fsanitize=fuzzer,address,undefined with the
 * sources of storage/).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "block.h"
#include "block_cache.h"
#include "coding.h"
#include "compress.h"
#include "fuzz_storage.h"
#include "hash.h"
#include "record.h"
#include "sst.h"

/* Keys remembered from a scan for lookups. */
#define FUZZ_MAX_KEYS 64
/* A block cache smaller than a few blocks, so that eviction runs too. */
#define FUZZ_CACHE_BYTES (16u << 10)
/* Index entries whose data blocks get their checksum repaired. */
#define FUZZ_MAX_REPAIRS 4096
/* Footer layout (sst.h): three (u64 offset, u32 size) handles. */
#define FOOTER_HANDLE_BYTES 12
#define FOOTER_SIZE_AT      8
#define FOOTER_INDEX        2
#define FOOTER_HANDLES      3

static char table_path[FUZZ_PATH_BYTES];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_setup("fuzz-sst");
    fuzz_path(table_path, "000007.sst");
    return 0;
}

/* ---- Repairing checksums ---- */

/* Recomputes the trailer checksum of the block of size bytes at off, if it lies in [0, end). */
static bool repair_block(uint8_t *f, uint64_t end, uint64_t off, uint64_t size)
{
    if (size > TL_SST_MAX_BLOCK_BYTES || off > end || size + TL_SST_TRAILER_BYTES > end - off)
        return false;
    tl_put_u32(f + off + size + 1, fuzz_masked_crc(f + off, (size_t)size + 1));
    return true;
}

/* Repairs the checksum of every data block the index names. */
static void repair_data_blocks(uint8_t *f, uint64_t end, uint64_t off, uint64_t size)
{
    if (size > TL_SST_MAX_BLOCK_BYTES || off > end || size + TL_SST_TRAILER_BYTES > end - off)
        return;
    uint8_t type = f[off + size], *index = f + off;
    size_t len = (size_t)size;
    uint8_t *plain = NULL;
    if (type != TL_COMPRESS_NONE) {
        if (tl_decompress((enum tl_compression)type, f + off, len, TL_SST_MAX_BLOCK_BYTES, &plain,
                          &len) < 0)
            return;
        index = plain;
    }
    struct tl_block_iter it;
    if (tl_block_iter_init(&it, index, len) == 0) {
        size_t n = 0;
        for (tl_block_iter_first(&it); tl_block_iter_valid(&it) && n < FUZZ_MAX_REPAIRS;
             tl_block_iter_next(&it), n++) {
            uint64_t boff, bsize;
            size_t a = tl_get_varint(it.val, it.val + it.vlen, &boff);
            if (a && tl_get_varint(it.val + a, it.val + it.vlen, &bsize))
                repair_block(f, end, boff, bsize);
        }
    }
    tl_block_iter_free(&it);
    free(plain);
}

/* Recomputes every checksum the footer and index lead to; false if nothing could be found. */
static bool repair(uint8_t *f, size_t size)
{
    if (size < TL_SST_FOOTER_BYTES)
        return false;
    uint64_t foot = size - TL_SST_FOOTER_BYTES;
    uint64_t off[FOOTER_HANDLES], len[FOOTER_HANDLES];
    for (int i = 0; i < FOOTER_HANDLES; i++) {
        off[i] = tl_get_u64(f + foot + FOOTER_HANDLE_BYTES * i);
        len[i] = tl_get_u32(f + foot + FOOTER_HANDLE_BYTES * i + FOOTER_SIZE_AT);
    }
    /* Data blocks first: the index is read as it is before its own checksum changes. */
    repair_data_blocks(f, foot, off[FOOTER_INDEX], len[FOOTER_INDEX]);
    bool any = false;
    for (int i = 0; i < FOOTER_HANDLES; i++)
        any |= repair_block(f, foot, off[i], len[i]);
    return any;
}

/* ---- Reading ---- */

struct scan {
    size_t n;
    int status;
    bool ordered;  /* keys strictly increasing */
    bool decoded;  /* every value decodes */
    uint64_t crc;  /* of every key and value, to compare scans */
    size_t n_keys; /* remembered, up to FUZZ_MAX_KEYS */
    uint8_t *key[FUZZ_MAX_KEYS];
    size_t klen[FUZZ_MAX_KEYS];
    uint8_t *val[FUZZ_MAX_KEYS];
    size_t vlen[FUZZ_MAX_KEYS];
    uint8_t *prev;
    size_t prev_len;
};

static void scan_free(struct scan *s)
{
    for (size_t i = 0; i < s->n_keys; i++) {
        free(s->key[i]);
        free(s->val[i]);
    }
    free(s->prev);
}

static void scan_entry(struct scan *s, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen)
{
    struct tl_record r;
    if (s->n > 0 && tl_key_cmp(s->prev, s->prev_len, k, klen) >= 0)
        s->ordered = false;
    if (tl_record_decode(v, vlen, &r) < 0)
        s->decoded = false;
    s->crc = tl_crc32c_extend((uint32_t)s->crc, k, klen);
    s->crc = tl_crc32c_extend((uint32_t)s->crc, v, vlen);
    free(s->prev);
    s->prev = fuzz_copy(k, klen);
    s->prev_len = klen;
    if (s->n_keys < FUZZ_MAX_KEYS) {
        s->key[s->n_keys] = fuzz_copy(k, klen);
        s->klen[s->n_keys] = klen;
        s->val[s->n_keys] = fuzz_copy(v, vlen);
        s->vlen[s->n_keys] = vlen;
        s->n_keys++;
    }
    s->n++;
}

static void scan_table(struct tl_sst *t, bool fill_cache, struct scan *s)
{
    struct tl_sst_iter *it;
    memset(s, 0, sizeof *s);
    s->ordered = s->decoded = true;
    fuzz_check(tl_sst_iter_new(t, fill_cache, &it) == 0, "an iterator is created");
    int rc = tl_sst_iter_seek(it, NULL, 0);
    while (rc == 0 && tl_sst_iter_valid(it)) {
        size_t klen, vlen;
        const uint8_t *k = tl_sst_iter_key(it, &klen);
        const uint8_t *v = tl_sst_iter_value(it, &vlen);
        scan_entry(s, k, klen, v, vlen);
        rc = tl_sst_iter_next(it);
    }
    if (rc < 0) {
        fuzz_check_error(rc, "a scan fails with a negative code");
        fuzz_check(!tl_sst_iter_valid(it), "an iterator is invalid after an error");
    }
    s->status = rc;
    tl_sst_iter_free(it);
}

/* Seeks to and looks up remembered key i; with whole (the table verified), both must find it. */
static void lookup(struct tl_sst *t, const struct scan *s, size_t i, bool whole)
{
    struct tl_sst_iter *it;
    fuzz_check(tl_sst_iter_new(t, true, &it) == 0, "an iterator is created");
    int rc = tl_sst_iter_seek(it, s->key[i], s->klen[i]);
    size_t klen = 0;
    const uint8_t *k = tl_sst_iter_valid(it) ? tl_sst_iter_key(it, &klen) : NULL;
    if (whole)
        fuzz_check(rc == 0 && k && tl_key_cmp(k, klen, s->key[i], s->klen[i]) == 0,
                   "a verified table seeks to each of its keys");
    else if (rc < 0)
        fuzz_check_error(rc, "a seek fails with a negative code");
    tl_sst_iter_free(it);

    struct tl_block_ref ref;
    const uint8_t *v;
    size_t vlen;
    rc = tl_sst_get(t, s->key[i], s->klen[i], tl_hash64(s->key[i], s->klen[i]), &ref, &v, &vlen);
    if (rc < 0)
        fuzz_check_error(rc, "a lookup fails with a negative code");
    if (whole)
        fuzz_check(rc == 1 && vlen == s->vlen[i] && tl_key_cmp(v, vlen, s->val[i], vlen) == 0,
                   "a verified table looks each key up to the value its scan saw");
    if (rc == 1)
        tl_block_ref_release(&ref);
}

struct progress {
    uint64_t done, total;
    bool monotonic;
};

static void on_progress(void *arg, uint64_t done, uint64_t total)
{
    struct progress *p = arg;
    if (done < p->done || done > total || (p->total && total != p->total))
        p->monotonic = false;
    p->done = done;
    p->total = total;
}

static void read_table(const uint8_t *data, size_t size)
{
    fuzz_write_file(table_path, data, size);
    struct progress pr = {.monotonic = true};
    int verified = tl_sst_verify(table_path, on_progress, &pr);
    if (verified < 0)
        fuzz_check_error(verified, "verify fails with a negative code");
    fuzz_check(pr.monotonic, "verify's progress only grows, up to the file size");
    bool whole = verified == 0;

    struct tl_block_cache *cache = tl_block_cache_new(FUZZ_CACHE_BYTES);
    fuzz_check(cache != NULL, "a block cache is created");
    struct tl_sst *t;
    int rc = tl_sst_open(table_path, 7, cache, &t);
    if (rc < 0) {
        fuzz_check_error(rc, "open fails with a negative code");
        fuzz_check(!whole, "a table that verifies opens");
        tl_block_cache_free(cache);
        return;
    }
    const struct tl_sst_props *props = tl_sst_get_props(t);
    fuzz_check(props->file_size == size, "the props hold the file size");

    struct scan direct, cached;
    scan_table(t, false, &direct);
    scan_table(t, true, &cached);
    fuzz_check(direct.n == cached.n && direct.crc == cached.crc &&
                   (direct.status < 0) == (cached.status < 0),
               "scans with and without the cache agree");
    if (whole)
        fuzz_check(direct.status == 0 && direct.n == props->entries && direct.ordered &&
                       direct.decoded,
                   "a verified table scans whole, in order, to the props' entry count");
    for (size_t i = 0; i < direct.n_keys; i++)
        lookup(t, &direct, i, whole);

    /* A key from the input, most likely absent. */
    size_t klen = size < 8 ? size : 8;
    struct tl_block_ref ref;
    const uint8_t *v;
    size_t vlen;
    rc = tl_sst_get(t, data, klen, tl_hash64(data, klen), &ref, &v, &vlen);
    if (rc < 0)
        fuzz_check_error(rc, "a lookup fails with a negative code");
    if (rc == 1)
        tl_block_ref_release(&ref);

    scan_free(&direct);
    scan_free(&cached);
    tl_sst_close(t);
    tl_block_cache_free(cache);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_as_is_and_repaired(data, size, repair, read_table);
    return 0;
}
