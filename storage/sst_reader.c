/*
 * sst_reader.c - reading SSTables (the file format is described at the top of sst.h): opening
 * a table, point lookups through the block cache, batched block reads, the iterator, and
 * tl_sst_verify.
 *
 * Opening reads the footer, then the filter, props and index blocks in one io_uring batch,
 * checks each one's CRC and keeps them in memory; the index is decoded into a sorted array so
 * that finding a block is a binary search without touching a block.
 *
 * Data blocks are read on demand. tl_sst_cached_block looks one block up in the cache only;
 * tl_sst_read_blocks looks every requested block up in the cache (but those its caller has
 * looked up already) and submits all the misses, of any number of tables, as one batch of
 * reads; each block
 * read is checked against its CRC, decompressed and inserted into the cache. A reference
 * (struct tl_block_ref) either holds a cache entry or, for blocks that bypass the cache (the
 * iterator without fill_cache, tl_sst_verify, a table opened without a cache), owns the block's
 * memory itself.
 *
 * Nothing read from the file is trusted: every offset and size is checked against the file
 * before it is used, and a failure returns TL_ECORRUPT with a message naming the file and the
 * offset of the bad block.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bloom.h"
#include "coding.h"
#include "compress.h"
#include "crc32c.h"
#include "error.h"
#include "hash.h"
#include "sst.h"
#include "uring_io.h"

/* An iterator that bypasses the cache reads this many blocks, or this many bytes (but at least
 * one block), in each batch. tl_sst_verify reads the same way. */
#define SST_READAHEAD_BLOCKS 16
#define SST_READAHEAD_BYTES  (1u << 20)
/* Largest message kept when an error is rewrapped with the file name. */
#define SST_ERRMSG_BYTES 512
#define SST_DOING_BYTES  64
/* First size of the decoded index array; it doubles from there. */
#define SST_INITIAL_INDEX 64
/* Footer layout (sst.h): three (u64 offset, u32 size) handles, then version and magic. */
#define FOOTER_HANDLE_BYTES 12
#define FOOTER_SIZE_AT      8 /* within a handle */
#define FOOTER_VERSION_AT   36
#define FOOTER_MAGIC_AT     40
_Static_assert(FOOTER_MAGIC_AT + 8 == TL_SST_FOOTER_BYTES, "footer layout of sst.h");
/* The advice every corruption message ends with. */
#define SST_ADVICE "run tallyctl verify on it and restore the file from a backup or replica"

/* The metadata blocks the footer points to, in file order. */
enum { META_FILTER, META_PROPS, META_INDEX, META_COUNT };
static const char *const meta_names[META_COUNT] = {"filter", "props", "index"};

struct index_entry {
    const uint8_t *key; /* the block's last key, in index_keys */
    size_t key_off;     /* of key in index_keys (which moves while the index is decoded) */
    size_t klen;
    struct tl_block_handle h;
};

struct tl_sst {
    char *path;
    uint64_t number;
    int fd;
    uint64_t file_size;
    uint64_t data_end; /* data blocks lie in [0, data_end) */
    struct tl_block_handle meta[META_COUNT];
    struct tl_block_cache *cache;
    struct tl_sst_props props;
    uint8_t *filter; /* NULL when the table has none */
    size_t filter_len;
    struct index_entry *index;
    size_t n_blocks;
    uint8_t *index_keys;
    /* For find_index: the bytes every index key starts with (index_skip of them, those of
     * the first), and per block the next 8 bytes of its key as a big-endian word. */
    size_t index_skip;
    uint64_t *index_words;
};

static uint32_t block_crc(const uint8_t *data, size_t len, uint8_t type)
{
    return tl_crc32c_mask(tl_crc32c_extend(tl_crc32c(data, len), &type, 1));
}

/* Prefixes the message a failed call left with the file (and what was being done). */
static int rewrap(int rc, const char *path, const char *doing, uint64_t off)
{
    char msg[SST_ERRMSG_BYTES];
    snprintf(msg, sizeof msg, "%s", tl_last_error());
    if (rc == TL_ECORRUPT)
        return tl_error(rc, "%s: %s at offset %llu: %s; " SST_ADVICE, path, doing,
                        (unsigned long long)off, msg);
    return tl_error(rc, "%s: %s at offset %llu: %s", path, doing, (unsigned long long)off, msg);
}

static int malformed(const struct tl_sst *t, const char *what, uint64_t off)
{
    return tl_error(TL_ECORRUPT,
                    "%s: %s block at offset %llu is malformed although its checksum matches; "
                    "the table was written wrongly: " SST_ADVICE,
                    t->path, what, (unsigned long long)off);
}

/* Whether a data block handle lies inside the data area. */
static bool handle_ok(const struct tl_sst *t, const struct tl_block_handle *h)
{
    return h->size <= TL_SST_MAX_BLOCK_BYTES && h->offset <= t->data_end &&
           h->size + TL_SST_TRAILER_BYTES <= t->data_end - h->offset;
}

/* Checks the trailer of a block read into buf (size bytes and the trailer) and decompresses it.
 * Always takes buf: on success *out is buf itself or a new buffer that replaces it. */
static int block_decode(const char *path, const char *what, uint64_t off, uint8_t *buf, size_t size,
                        uint8_t **out, size_t *out_len)
{
    uint8_t type = buf[size];
    uint32_t crc = tl_get_u32(buf + size + 1);
    if (block_crc(buf, size, type) != crc) {
        free(buf);
        return tl_error(TL_ECORRUPT,
                        "%s: %s block at offset %llu (%zu bytes) fails its checksum: the file is "
                        "corrupt; " SST_ADVICE,
                        path, what, (unsigned long long)off, size);
    }
    if (type == TL_COMPRESS_NONE) {
        *out = buf;
        *out_len = size;
        return 0;
    }
    if (type != TL_COMPRESS_LZ4 && type != TL_COMPRESS_ZSTD) {
        free(buf);
        return tl_error(TL_ECORRUPT,
                        "%s: %s block at offset %llu has unknown compression type %u; " SST_ADVICE,
                        path, what, (unsigned long long)off, type);
    }
    int rc =
        tl_decompress((enum tl_compression)type, buf, size, TL_SST_MAX_BLOCK_BYTES, out, out_len);
    free(buf);
    if (rc < 0) {
        char doing[SST_DOING_BYTES];
        snprintf(doing, sizeof doing, "decompressing the %s block", what);
        return rewrap(rc, path, doing, off);
    }
    return 0;
}

void tl_block_ref_release(struct tl_block_ref *r)
{
    if (r->cached)
        tl_block_cache_release(r->table->cache, r->cached);
    else
        free((void *)r->data);
    memset(r, 0, sizeof *r);
}

static bool ref_held(const struct tl_block_ref *r)
{
    return r->cached || r->data;
}

/* TL_ECORRUPT, naming the file, unless handle h lies inside t's data area. */
static int check_handle(const struct tl_sst *t, const struct tl_block_handle *h)
{
    if (handle_ok(t, h))
        return 0;
    return tl_error(TL_ECORRUPT,
                    "%s: data block at offset %llu (%llu bytes) lies outside the data area, "
                    "which ends at %llu; " SST_ADVICE,
                    t->path, (unsigned long long)h->offset, (unsigned long long)h->size,
                    (unsigned long long)t->data_end);
}

int tl_sst_cached_block(struct tl_sst *t, const struct tl_block_handle *h, struct tl_block_ref *ref)
{
    memset(ref, 0, sizeof *ref);
    int rc = check_handle(t, h);
    if (rc < 0)
        return rc;
    struct tl_cached_block *cb =
        t->cache ? tl_block_cache_lookup(t->cache, t->number, h->offset) : NULL;
    if (!cb)
        return 0;
    ref->table = t;
    ref->offset = h->offset;
    ref->cached = cb;
    ref->data = tl_cached_block_data(cb, &ref->size);
    return 1;
}

/* Requests a read of up to this many blocks keeps on the stack. */
#define READ_BLOCKS_STACK 16

/* Reads n data blocks; with use_cache, through the tables' caches, except that the first
 * `missed` blocks were looked up already (and missed: they are read without another lookup,
 * which would count a second miss). One batch of reads serves every block not in a cache. */
static int read_blocks(struct tl_sst **tables, const struct tl_block_handle *handles, size_t n,
                       struct tl_block_ref *refs, bool use_cache, size_t missed)
{
    struct tl_io_req reqs_stack[READ_BLOCKS_STACK], *reqs = reqs_stack;
    size_t which_stack[READ_BLOCKS_STACK], *which = which_stack, m = 0;
    int rc = 0;

    if (n == 0)
        return 0;
    memset(refs, 0, n * sizeof *refs);
    if (n > READ_BLOCKS_STACK) {
        reqs = calloc(n, sizeof *reqs);
        which = calloc(n, sizeof *which);
        if (!reqs || !which) {
            rc = tl_error(-ENOMEM, "out of memory to read %zu blocks", n);
            goto fail;
        }
    } else {
        memset(reqs, 0, n * sizeof *reqs);
    }
    for (size_t i = 0; i < n; i++) {
        struct tl_sst *t = tables[i];
        const struct tl_block_handle *h = &handles[i];
        rc = use_cache && i >= missed ? tl_sst_cached_block(t, h, &refs[i]) : check_handle(t, h);
        if (rc < 0)
            goto fail;
        if (rc == 1)
            continue; /* a hit */
        refs[i].table = t;
        refs[i].offset = h->offset;
        size_t len = (size_t)h->size + TL_SST_TRAILER_BYTES;
        reqs[m].buf = malloc(len);
        if (!reqs[m].buf) {
            rc = tl_error(-ENOMEM, "%s: out of memory for a block of %zu bytes", t->path, len);
            goto fail;
        }
        reqs[m].fd = t->fd;
        reqs[m].len = len;
        reqs[m].off = h->offset;
        which[m++] = i;
    }
    if (m == 0)
        goto done;

    rc = tl_io_pread_batch(reqs, m);
    if (rc < 0) {
        size_t k = 0;
        while (k + 1 < m && reqs[k].res >= 0)
            k++;
        rc = rewrap(rc, tables[which[k]]->path, "reading a data block", reqs[k].off);
        goto fail;
    }
    for (size_t k = 0; k < m; k++) {
        size_t i = which[k];
        struct tl_sst *t = tables[i];
        if ((size_t)reqs[k].res != reqs[k].len) {
            rc = tl_error(TL_ECORRUPT,
                          "%s: data block at offset %llu ends past the end of the file (read "
                          "%lld of %zu bytes): the file was truncated; " SST_ADVICE,
                          t->path, (unsigned long long)reqs[k].off, (long long)reqs[k].res,
                          reqs[k].len);
            goto fail;
        }
        uint8_t *data;
        size_t size;
        rc = block_decode(t->path, "data", reqs[k].off, reqs[k].buf,
                          reqs[k].len - TL_SST_TRAILER_BYTES, &data, &size);
        reqs[k].buf = NULL;
        if (rc < 0)
            goto fail;
        if (use_cache && t->cache) {
            struct tl_cached_block *cb =
                tl_block_cache_insert(t->cache, t->number, refs[i].offset, data, size);
            if (!cb) {
                rc = tl_error(-ENOMEM, "%s: out of memory caching the block at offset %llu",
                              t->path, (unsigned long long)refs[i].offset);
                goto fail;
            }
            refs[i].cached = cb;
            refs[i].data = tl_cached_block_data(cb, &refs[i].size);
        } else {
            refs[i].data = data;
            refs[i].size = size;
        }
    }
done:
    if (reqs != reqs_stack)
        free(reqs);
    if (which != which_stack)
        free(which);
    return 0;
fail:
    if (reqs)
        for (size_t k = 0; k < m; k++)
            free(reqs[k].buf);
    for (size_t i = 0; i < n; i++)
        if (ref_held(&refs[i]))
            tl_block_ref_release(&refs[i]);
    if (reqs != reqs_stack)
        free(reqs);
    if (which != which_stack)
        free(which);
    return rc;
}

int tl_sst_read_blocks(struct tl_sst **tables, const struct tl_block_handle *handles, size_t n,
                       struct tl_block_ref *refs, size_t missed)
{
    return read_blocks(tables, handles, n, refs, true, missed);
}

/* The sorted keys all start with what the first and the last share. */
static int index_words_build(struct tl_sst *t)
{
    const struct index_entry *first = &t->index[0], *last = &t->index[t->n_blocks - 1];
    size_t skip = 0, n = first->klen < last->klen ? first->klen : last->klen;
    while (skip < n && first->key[skip] == last->key[skip])
        skip++;
    t->index_words = malloc(t->n_blocks * sizeof *t->index_words);
    if (!t->index_words)
        return tl_error(-ENOMEM, "%s: out of memory for the index", t->path);
    for (size_t i = 0; i < t->n_blocks; i++)
        t->index_words[i] = tl_key_word(t->index[i].key, t->index[i].klen, skip);
    t->index_skip = skip;
    return 0;
}

/* Decodes the index block into t->index, checking every handle and the order of the keys. */
static int parse_index(struct tl_sst *t, const uint8_t *data, size_t len)
{
    uint64_t off = t->meta[META_INDEX].offset;
    struct tl_block_iter it;
    size_t cap = 0, used = 0, keys_cap = len + 1;
    int rc = 0;

    t->index_keys = malloc(keys_cap);
    if (!t->index_keys)
        return tl_error(-ENOMEM, "%s: out of memory for the index", t->path);
    if (tl_block_iter_init(&it, data, len) < 0)
        return malformed(t, "index", off);
    for (tl_block_iter_first(&it); tl_block_iter_valid(&it); tl_block_iter_next(&it)) {
        const uint8_t *p = it.val, *end = it.val + it.vlen;
        struct tl_block_handle h;
        size_t a = tl_get_varint(p, end, &h.offset), b = 0;
        if (a)
            b = tl_get_varint(p + a, end, &h.size);
        if (!a || !b || p + a + b != end || !handle_ok(t, &h)) {
            rc = tl_error(TL_ECORRUPT,
                          "%s: index block at offset %llu holds a bad handle for data block "
                          "%zu; " SST_ADVICE,
                          t->path, (unsigned long long)off, t->n_blocks);
            goto out;
        }
        if (t->n_blocks > 0) {
            const struct index_entry *prev = &t->index[t->n_blocks - 1];
            if (tl_key_cmp(t->index_keys + prev->key_off, prev->klen, it.key, it.klen) >= 0) {
                rc = tl_error(TL_ECORRUPT,
                              "%s: index block at offset %llu has keys out of order at entry "
                              "%zu; " SST_ADVICE,
                              t->path, (unsigned long long)off, t->n_blocks);
                goto out;
            }
        }
        if (t->n_blocks == cap) {
            size_t ncap = cap ? cap * 2 : SST_INITIAL_INDEX;
            struct index_entry *ni = realloc(t->index, ncap * sizeof *ni);
            if (!ni) {
                rc = tl_error(-ENOMEM, "%s: out of memory for the index", t->path);
                goto out;
            }
            t->index = ni;
            cap = ncap;
        }
        /* Prefix compression makes the whole keys larger than the block: grow the key
         * arena, and keep offsets into it until it stops moving. */
        if (used + it.klen > keys_cap) {
            size_t ncap = keys_cap;
            while (ncap < used + it.klen)
                ncap *= 2;
            uint8_t *nk = realloc(t->index_keys, ncap);
            if (!nk) {
                rc = tl_error(-ENOMEM, "%s: out of memory for the index", t->path);
                goto out;
            }
            t->index_keys = nk;
            keys_cap = ncap;
        }
        if (it.klen)
            memcpy(t->index_keys + used, it.key, it.klen);
        t->index[t->n_blocks++] = (struct index_entry){.key_off = used, .klen = it.klen, .h = h};
        used += it.klen;
    }
    if (it.status)
        rc = it.status == TL_ECORRUPT
                 ? malformed(t, "index", off)
                 : tl_error(it.status, "%s: out of memory for the index", t->path);
    for (size_t i = 0; i < t->n_blocks; i++)
        t->index[i].key = t->index_keys + t->index[i].key_off;
    if (rc == 0 && t->n_blocks > 0)
        rc = index_words_build(t);
out:
    tl_block_iter_free(&it);
    return rc;
}

/* Numeric properties, by name. */
struct prop_field {
    const char *name;
    size_t offset; /* of a uint64_t in struct tl_sst_props */
};
static const struct prop_field prop_fields[] = {
    {"data_blocks", offsetof(struct tl_sst_props, data_blocks)},
    {"data_bytes", offsetof(struct tl_sst_props, data_bytes)},
    {"deletes", offsetof(struct tl_sst_props, deletes)},
    {"entries", offsetof(struct tl_sst_props, entries)},
    {"expiring_entries", offsetof(struct tl_sst_props, expiring_entries)},
    {"merges", offsetof(struct tl_sst_props, merges)},
    {"raw_key_bytes", offsetof(struct tl_sst_props, raw_key_bytes)},
    {"raw_value_bytes", offsetof(struct tl_sst_props, raw_value_bytes)},
};

static bool name_is(const struct tl_block_iter *it, const char *name)
{
    return tl_key_cmp(it->key, it->klen, name, strlen(name)) == 0;
}

/* Copies a key property; returns false when out of memory. */
static bool copy_bytes(const struct tl_block_iter *it, uint8_t **dst, size_t *len)
{
    free(*dst);
    *dst = malloc(it->vlen ? it->vlen : 1);
    if (!*dst)
        return false;
    if (it->vlen)
        memcpy(*dst, it->val, it->vlen);
    *len = it->vlen;
    return true;
}

/* Decodes the props block. Names this build does not know are skipped, for later versions. */
static int parse_props(struct tl_sst *t, const uint8_t *data, size_t len)
{
    uint64_t off = t->meta[META_PROPS].offset;
    struct tl_sst_props *p = &t->props;
    struct tl_block_iter it;
    int rc = 0;

    if (tl_block_iter_init(&it, data, len) < 0)
        return malformed(t, "props", off);
    for (tl_block_iter_first(&it); tl_block_iter_valid(&it); tl_block_iter_next(&it)) {
        if (name_is(&it, "smallest") || name_is(&it, "largest")) {
            bool small = name_is(&it, "smallest");
            if (!copy_bytes(&it, small ? &p->smallest : &p->largest,
                            small ? &p->smallest_len : &p->largest_len)) {
                rc = tl_error(-ENOMEM, "%s: out of memory for the table's properties", t->path);
                goto out;
            }
            continue;
        }
        uint64_t v = 0;
        const uint8_t *end = it.val + it.vlen;
        size_t n = tl_get_varint(it.val, end, &v);
        bool numeric = name_is(&it, "expire_p50_ms");
        if (numeric)
            p->expire_p50_ms = (int64_t)v;
        for (size_t i = 0; i < sizeof prop_fields / sizeof prop_fields[0]; i++) {
            if (name_is(&it, prop_fields[i].name)) {
                *(uint64_t *)((uint8_t *)p + prop_fields[i].offset) = v;
                numeric = true;
            }
        }
        if (numeric && (!n || it.val + n != end)) {
            rc = malformed(t, "props", off);
            goto out;
        }
    }
    if (it.status)
        rc = it.status == TL_ECORRUPT
                 ? malformed(t, "props", off)
                 : tl_error(it.status, "%s: out of memory for the props", t->path);
out:
    tl_block_iter_free(&it);
    return rc;
}

/* Reads and checks the footer, filling t->meta and t->data_end. */
static int read_footer(struct tl_sst *t)
{
    uint8_t f[TL_SST_FOOTER_BYTES];
    if (t->file_size < TL_SST_FOOTER_BYTES)
        return tl_error(TL_ECORRUPT,
                        "%s: the file is %llu bytes, too short to hold the %d-byte footer at "
                        "offset 0: it is truncated or not a Tally SSTable; " SST_ADVICE,
                        t->path, (unsigned long long)t->file_size, TL_SST_FOOTER_BYTES);
    uint64_t foff = t->file_size - TL_SST_FOOTER_BYTES;
    int64_t n = tl_io_pread(t->fd, f, sizeof f, foff);
    if (n < 0)
        return rewrap((int)n, t->path, "reading the footer", foff);
    if (n != TL_SST_FOOTER_BYTES)
        return tl_error(TL_ECORRUPT, "%s: short read of the footer at offset %llu; " SST_ADVICE,
                        t->path, (unsigned long long)foff);
    uint64_t magic = tl_get_u64(f + FOOTER_MAGIC_AT);
    if (magic != TL_SST_MAGIC)
        return tl_error(TL_ECORRUPT,
                        "%s: no SSTable footer at offset %llu (magic 0x%016llx, expected "
                        "0x%016llx): the file is not a Tally SSTable, or it is truncated; "
                        "run tallyctl verify on it",
                        t->path, (unsigned long long)foff, (unsigned long long)magic,
                        (unsigned long long)TL_SST_MAGIC);
    uint32_t version = tl_get_u32(f + FOOTER_VERSION_AT);
    if (version != TL_SST_VERSION)
        return tl_error(TL_ECORRUPT,
                        "%s: format version %u in the footer at offset %llu; this build reads "
                        "version %d: open it with the Tally version that wrote it",
                        t->path, version, (unsigned long long)foff, TL_SST_VERSION);
    for (int i = 0; i < META_COUNT; i++) {
        t->meta[i].offset = tl_get_u64(f + FOOTER_HANDLE_BYTES * i);
        t->meta[i].size = tl_get_u32(f + FOOTER_HANDLE_BYTES * i + FOOTER_SIZE_AT);
    }
    t->data_end = foff;
    for (int i = 0; i < META_COUNT; i++) {
        const struct tl_block_handle *h = &t->meta[i];
        if (i == META_FILTER && h->size == 0)
            continue;
        if (h->size > TL_SST_MAX_BLOCK_BYTES || h->offset > foff ||
            h->size + TL_SST_TRAILER_BYTES > foff - h->offset)
            return tl_error(TL_ECORRUPT,
                            "%s: the footer at offset %llu places the %s block at offset %llu "
                            "(%llu bytes), outside the file of %llu bytes: it is truncated or "
                            "corrupt; " SST_ADVICE,
                            t->path, (unsigned long long)foff, meta_names[i],
                            (unsigned long long)h->offset, (unsigned long long)h->size,
                            (unsigned long long)t->file_size);
        if (h->offset < t->data_end)
            t->data_end = h->offset;
    }
    return 0;
}

/* Reads the filter, props and index blocks in one batch and decodes them. */
static int read_meta(struct tl_sst *t)
{
    struct tl_io_req reqs[META_COUNT];
    int which[META_COUNT], m = 0, rc = 0;
    memset(reqs, 0, sizeof reqs);
    for (int i = 0; i < META_COUNT; i++) {
        if (i == META_FILTER && t->meta[i].size == 0)
            continue;
        size_t len = (size_t)t->meta[i].size + TL_SST_TRAILER_BYTES;
        reqs[m] = (struct tl_io_req){
            .fd = t->fd, .buf = malloc(len), .len = len, .off = t->meta[i].offset};
        which[m] = i;
        if (!reqs[m++].buf) {
            rc = tl_error(-ENOMEM, "%s: out of memory for the %s block", t->path, meta_names[i]);
            goto out;
        }
    }
    if ((rc = tl_io_pread_batch(reqs, (size_t)m)) < 0) {
        rc = rewrap(rc, t->path, "reading the metadata blocks", t->data_end);
        goto out;
    }
    for (int k = 0; k < m; k++) {
        int i = which[k];
        uint8_t *data;
        size_t size;
        if ((size_t)reqs[k].res != reqs[k].len) {
            rc = tl_error(TL_ECORRUPT, "%s: short read of the %s block at offset %llu; " SST_ADVICE,
                          t->path, meta_names[i], (unsigned long long)reqs[k].off);
            goto out;
        }
        rc = block_decode(t->path, meta_names[i], reqs[k].off, reqs[k].buf,
                          reqs[k].len - TL_SST_TRAILER_BYTES, &data, &size);
        reqs[k].buf = NULL;
        if (rc < 0)
            goto out;
        if (i == META_FILTER) {
            t->filter = data;
            t->filter_len = size;
            continue;
        }
        rc = i == META_PROPS ? parse_props(t, data, size) : parse_index(t, data, size);
        free(data);
        if (rc < 0)
            goto out;
    }
    if (t->props.data_blocks != t->n_blocks)
        rc = tl_error(
            TL_ECORRUPT,
            "%s: the index at offset %llu lists %zu data blocks, the props %llu; " SST_ADVICE,
            t->path, (unsigned long long)t->meta[META_INDEX].offset, t->n_blocks,
            (unsigned long long)t->props.data_blocks);
out:
    for (int k = 0; k < m; k++)
        free(reqs[k].buf);
    return rc;
}

int tl_sst_open(const char *path, uint64_t number, struct tl_block_cache *cache,
                struct tl_sst **out)
{
    struct tl_sst *t = calloc(1, sizeof *t);
    int rc;
    if (!t)
        return tl_error(-ENOMEM, "%s: out of memory to open the table", path);
    t->fd = -1;
    t->number = number;
    t->cache = cache;
    if (!(t->path = strdup(path))) {
        rc = tl_error(-ENOMEM, "%s: out of memory to open the table", path);
        goto fail;
    }
    t->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (t->fd < 0) {
        rc = tl_error(-errno, "%s: cannot open the table: %s", path, strerror(errno));
        goto fail;
    }
    struct stat st;
    if (fstat(t->fd, &st) < 0) {
        rc = tl_error(-errno, "%s: cannot stat the table: %s", path, strerror(errno));
        goto fail;
    }
    t->file_size = (uint64_t)st.st_size;
    if ((rc = read_footer(t)) < 0 || (rc = read_meta(t)) < 0)
        goto fail;
    t->props.file_size = t->file_size;
    *out = t;
    return 0;
fail:
    tl_sst_close(t);
    return rc;
}

void tl_sst_close(struct tl_sst *t)
{
    if (!t)
        return;
    if (t->fd >= 0)
        close(t->fd);
    tl_sst_props_free(&t->props);
    free(t->filter);
    free(t->index);
    free(t->index_keys);
    free(t->index_words);
    free(t->path);
    free(t);
}

const struct tl_sst_props *tl_sst_get_props(const struct tl_sst *t)
{
    return &t->props;
}

uint64_t tl_sst_number(const struct tl_sst *t)
{
    return t->number;
}

const char *tl_sst_path(const struct tl_sst *t)
{
    return t->path;
}

bool tl_sst_may_contain(const struct tl_sst *t, uint64_t hash)
{
    return !t->filter || tl_bloom_may_contain(t->filter, t->filter_len, hash);
}

/* The first of w[lo, hi) above q (upper) or at least q, else hi. */
static size_t word_bound(const uint64_t *w, size_t lo, size_t hi, uint64_t q, bool upper)
{
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (w[mid] < q || (upper && w[mid] == q))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The first block whose last key is >= key, or n_blocks. A key that starts as every index key
 * does is placed by its next 8 bytes among the words, which share cache lines, and compared
 * whole only among blocks whose word equals its own. */
static size_t find_index(const struct tl_sst *t, const void *key, size_t klen)
{
    size_t lo = 0, hi = t->n_blocks;
    size_t skip = t->index_skip;
    if (hi > 0 && klen >= skip && memcmp(key, t->index[0].key, skip) == 0) {
        uint64_t q = tl_key_word(key, klen, skip);
        lo = word_bound(t->index_words, 0, hi, q, false);
        hi = lo < hi && t->index_words[lo] == q ? word_bound(t->index_words, lo, hi, q, true) : lo;
    }
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (tl_key_cmp(t->index[mid].key, t->index[mid].klen, key, klen) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

bool tl_sst_find_block(const struct tl_sst *t, const void *key, size_t klen,
                       struct tl_block_handle *h)
{
    size_t i = find_index(t, key, klen);
    if (i >= t->n_blocks)
        return false;
    *h = t->index[i].h;
    return true;
}

int tl_sst_block_get(const struct tl_block_ref *ref, const void *key, size_t klen,
                     const uint8_t **val, size_t *vlen)
{
    struct tl_block_iter it;
    int rc = 0;
    if (tl_block_iter_init(&it, ref->data, ref->size) < 0)
        return malformed(ref->table, "data", ref->offset);
    tl_block_iter_seek(&it, key, klen);
    if (it.status) {
        rc = it.status == TL_ECORRUPT
                 ? malformed(ref->table, "data", ref->offset)
                 : tl_error(it.status, "%s: out of memory searching the block at offset %llu",
                            ref->table->path, (unsigned long long)ref->offset);
    } else if (tl_block_iter_valid(&it) && tl_key_cmp(it.key, it.klen, key, klen) == 0) {
        *val = it.val;
        *vlen = it.vlen;
        rc = 1;
    }
    tl_block_iter_free(&it);
    return rc;
}

int tl_sst_get(struct tl_sst *t, const void *key, size_t klen, uint64_t hash,
               struct tl_block_ref *ref, const uint8_t **val, size_t *vlen)
{
    struct tl_block_handle h;
    memset(ref, 0, sizeof *ref);
    if (!tl_sst_may_contain(t, hash) || !tl_sst_find_block(t, key, klen, &h))
        return 0;
    int rc = tl_sst_read_blocks(&t, &h, 1, ref, 0);
    if (rc < 0)
        return rc;
    rc = tl_sst_block_get(ref, key, klen, val, vlen);
    if (rc <= 0)
        tl_block_ref_release(ref);
    return rc;
}

/* Reads blocks first.. of t without the cache, as many as the read-ahead bounds allow. */
static int read_ahead(struct tl_sst *t, size_t first, struct tl_block_ref *refs, size_t *n)
{
    struct tl_sst *tables[SST_READAHEAD_BLOCKS];
    struct tl_block_handle handles[SST_READAHEAD_BLOCKS];
    uint64_t bytes = 0;
    size_t k = 0;
    while (first + k < t->n_blocks && k < SST_READAHEAD_BLOCKS) {
        const struct tl_block_handle *h = &t->index[first + k].h;
        if (k > 0 && bytes + h->size > SST_READAHEAD_BYTES)
            break;
        bytes += h->size + TL_SST_TRAILER_BYTES;
        tables[k] = t;
        handles[k++] = *h;
    }
    *n = k;
    return read_blocks(tables, handles, k, refs, false, 0);
}

struct tl_sst_iter {
    struct tl_sst *t;
    bool fill_cache;
    int status; /* the first error; the iterator stays invalid after it */
    size_t blk; /* the block under bi, or n_blocks */
    struct tl_block_ref ref;
    struct tl_block_iter bi;
    bool have_bi;
    /* Without fill_cache: blocks ra_first.. read ahead; a slot is zeroed once taken. */
    struct tl_block_ref ra[SST_READAHEAD_BLOCKS];
    size_t ra_first, ra_n;
};

int tl_sst_iter_new(struct tl_sst *t, bool fill_cache, struct tl_sst_iter **out)
{
    struct tl_sst_iter *it = calloc(1, sizeof *it);
    if (!it)
        return tl_error(-ENOMEM, "%s: out of memory for an iterator", t->path);
    it->t = t;
    it->fill_cache = fill_cache;
    it->blk = t->n_blocks;
    *out = it;
    return 0;
}

static void iter_drop_block(struct tl_sst_iter *it)
{
    if (it->have_bi)
        tl_block_iter_free(&it->bi);
    it->have_bi = false;
    if (ref_held(&it->ref))
        tl_block_ref_release(&it->ref);
    it->blk = it->t->n_blocks;
}

static void iter_drop_readahead(struct tl_sst_iter *it)
{
    for (size_t k = 0; k < it->ra_n; k++)
        if (ref_held(&it->ra[k]))
            tl_block_ref_release(&it->ra[k]);
    it->ra_n = 0;
}

/* Makes block idx the current one, its iterator not yet positioned. */
static int iter_load(struct tl_sst_iter *it, size_t idx)
{
    struct tl_sst *t = it->t;
    int rc;
    iter_drop_block(it);
    if (idx >= t->n_blocks)
        return 0;
    if (it->fill_cache) {
        rc = read_blocks(&t, &t->index[idx].h, 1, &it->ref, true, 0);
    } else {
        rc = 0;
        if (idx < it->ra_first || idx >= it->ra_first + it->ra_n ||
            !ref_held(&it->ra[idx - it->ra_first])) {
            iter_drop_readahead(it);
            it->ra_first = idx;
            rc = read_ahead(t, idx, it->ra, &it->ra_n);
            /* A bad block further on must not hide the good ones before it: read this one
             * alone, so the error comes when the scan reaches the bad block. */
            if (rc < 0 && it->ra_n > 1) {
                it->ra_n = 1;
                rc = read_blocks(&t, &t->index[idx].h, 1, it->ra, false, 0);
            }
            if (rc < 0)
                it->ra_n = 0;
        }
        if (rc == 0) {
            it->ref = it->ra[idx - it->ra_first];
            memset(&it->ra[idx - it->ra_first], 0, sizeof it->ref);
        }
    }
    if (rc < 0)
        return it->status = rc;
    it->blk = idx;
    if (tl_block_iter_init(&it->bi, it->ref.data, it->ref.size) < 0)
        return it->status = malformed(t, "data", it->ref.offset);
    it->have_bi = true;
    return 0;
}

/* Moves past the end of exhausted blocks to the next entry, if any. */
static int iter_settle(struct tl_sst_iter *it)
{
    while (it->have_bi) {
        if (it->bi.status) {
            it->status =
                it->bi.status == TL_ECORRUPT
                    ? malformed(it->t, "data", it->ref.offset)
                    : tl_error(it->bi.status, "%s: out of memory in an iterator", it->t->path);
            iter_drop_block(it);
            return it->status;
        }
        if (tl_block_iter_valid(&it->bi))
            return 0;
        size_t next = it->blk + 1;
        if (next >= it->t->n_blocks) {
            iter_drop_block(it);
            return 0;
        }
        int rc = iter_load(it, next);
        if (rc < 0)
            return rc;
        tl_block_iter_first(&it->bi);
    }
    return 0;
}

int tl_sst_iter_seek(struct tl_sst_iter *it, const void *key, size_t klen)
{
    if (it->status)
        return it->status;
    size_t idx = klen ? find_index(it->t, key, klen) : 0;
    int rc = iter_load(it, idx);
    if (rc < 0 || !it->have_bi)
        return rc;
    if (klen)
        tl_block_iter_seek(&it->bi, key, klen);
    else
        tl_block_iter_first(&it->bi);
    return iter_settle(it);
}

int tl_sst_iter_next(struct tl_sst_iter *it)
{
    if (it->status)
        return it->status;
    if (!tl_sst_iter_valid(it))
        return 0;
    tl_block_iter_next(&it->bi);
    return iter_settle(it);
}

bool tl_sst_iter_valid(const struct tl_sst_iter *it)
{
    return it->status == 0 && it->have_bi && tl_block_iter_valid(&it->bi);
}

const uint8_t *tl_sst_iter_key(const struct tl_sst_iter *it, size_t *klen)
{
    *klen = it->bi.klen;
    return it->bi.key;
}

const uint8_t *tl_sst_iter_value(const struct tl_sst_iter *it, size_t *vlen)
{
    *vlen = it->bi.vlen;
    return it->bi.val;
}

void tl_sst_iter_free(struct tl_sst_iter *it)
{
    if (!it)
        return;
    iter_drop_block(it);
    iter_drop_readahead(it);
    free(it);
}

/* State of tl_sst_verify across blocks. */
struct verify {
    struct tl_sst *t;
    uint64_t entries;
    uint8_t *prev; /* the last key seen */
    size_t prev_len, prev_cap;
    bool first_ok; /* the first key equals the props' smallest */
};

static int verify_fail(const struct tl_sst *t, uint64_t off, const char *what)
{
    return tl_error(TL_ECORRUPT, "%s: data block at offset %llu: %s; " SST_ADVICE, t->path,
                    (unsigned long long)off, what);
}

/* Checks every entry of a data block: keys in order, values that decode, keys the filter
 * admits, and the index key equal to the block's last key. */
static int verify_block(struct verify *v, size_t idx, const struct tl_block_ref *ref)
{
    struct tl_sst *t = v->t;
    const struct index_entry *e = &t->index[idx];
    struct tl_block_iter it;
    int rc = 0;
    if (tl_block_iter_init(&it, ref->data, ref->size) < 0)
        return verify_fail(t, e->h.offset, "its restart array does not fit the block");
    tl_block_iter_first(&it);
    if (!tl_block_iter_valid(&it) && !it.status) {
        rc = verify_fail(t, e->h.offset, "the block is empty");
        goto out;
    }
    for (; tl_block_iter_valid(&it); tl_block_iter_next(&it)) {
        struct tl_record r;
        if (v->entries > 0 && tl_key_cmp(v->prev, v->prev_len, it.key, it.klen) >= 0) {
            rc = verify_fail(t, e->h.offset, "keys are out of order");
            goto out;
        }
        if (tl_record_decode(it.val, it.vlen, &r) < 0) {
            rc = verify_fail(t, e->h.offset, "an entry value does not decode");
            goto out;
        }
        if (!tl_sst_may_contain(t, tl_hash64(it.key, it.klen))) {
            rc = tl_error(TL_ECORRUPT,
                          "%s: the filter block at offset %llu does not admit a key of the data "
                          "block at offset %llu; " SST_ADVICE,
                          t->path, (unsigned long long)t->meta[META_FILTER].offset,
                          (unsigned long long)e->h.offset);
            goto out;
        }
        if (it.klen > v->prev_cap) {
            uint8_t *p = realloc(v->prev, it.klen);
            if (!p) {
                rc = tl_error(-ENOMEM, "%s: out of memory verifying the table", t->path);
                goto out;
            }
            v->prev = p;
            v->prev_cap = it.klen;
        }
        if (it.klen)
            memcpy(v->prev, it.key, it.klen);
        v->prev_len = it.klen;
        if (v->entries++ == 0)
            v->first_ok =
                tl_key_cmp(t->props.smallest, t->props.smallest_len, it.key, it.klen) == 0;
    }
    if (it.status) {
        rc = it.status == TL_ECORRUPT ? verify_fail(t, e->h.offset, "an entry is malformed")
                                      : tl_error(it.status, "%s: out of memory", t->path);
        goto out;
    }
    /* The scan read every entry from restart 0; seeks and lookups go through the others. */
    if ((rc = tl_block_check_restarts(ref->data, ref->size)) < 0) {
        rc = rc == TL_ECORRUPT
                 ? verify_fail(t, e->h.offset, "its restart array does not point at its entries")
                 : tl_error(rc, "%s: out of memory verifying the table", t->path);
        goto out;
    }
    if (tl_key_cmp(v->prev, v->prev_len, e->key, e->klen) != 0)
        rc = verify_fail(t, e->h.offset, "its last key is not the one the index holds");
out:
    tl_block_iter_free(&it);
    return rc;
}

/* Checks that the metadata blocks follow the data and each other with no gap. */
static int verify_layout(const struct tl_sst *t)
{
    uint64_t pos = t->data_end;
    for (int i = 0; i < META_COUNT; i++) {
        const struct tl_block_handle *h = &t->meta[i];
        if (i == META_FILTER && h->size == 0)
            continue;
        if (h->offset != pos)
            return tl_error(
                TL_ECORRUPT, "%s: the %s block is at offset %llu, expected %llu; " SST_ADVICE,
                t->path, meta_names[i], (unsigned long long)h->offset, (unsigned long long)pos);
        pos += h->size + TL_SST_TRAILER_BYTES;
    }
    if (pos != t->file_size - TL_SST_FOOTER_BYTES)
        return tl_error(TL_ECORRUPT,
                        "%s: the index block ends at offset %llu, not at the footer; " SST_ADVICE,
                        t->path, (unsigned long long)pos);
    return 0;
}

int tl_sst_verify(const char *path, tl_sst_progress_fn progress, void *arg)
{
    struct verify v = {0};
    struct tl_block_ref refs[SST_READAHEAD_BLOCKS];
    size_t n = 0;
    int rc = tl_sst_open(path, 0, NULL, &v.t);
    if (rc < 0)
        return rc;
    struct tl_sst *t = v.t;
    uint64_t done = t->file_size - t->data_end, next_off = 0;
    if ((rc = verify_layout(t)) < 0)
        goto out;
    if (progress)
        progress(arg, done, t->file_size);

    for (size_t first = 0; first < t->n_blocks; first += n) {
        if ((rc = read_ahead(t, first, refs, &n)) < 0)
            goto out;
        for (size_t k = 0; k < n && rc == 0; k++) {
            const struct tl_block_handle *h = &t->index[first + k].h;
            if (h->offset != next_off)
                rc = verify_fail(t, h->offset, "it does not start where the previous block ends");
            else
                rc = verify_block(&v, first + k, &refs[k]);
            next_off = h->offset + h->size + TL_SST_TRAILER_BYTES;
            done += h->size + TL_SST_TRAILER_BYTES;
            if (rc == 0 && progress)
                progress(arg, done, t->file_size);
        }
        for (size_t k = 0; k < n; k++)
            tl_block_ref_release(&refs[k]);
        if (rc < 0)
            goto out;
    }
    if (next_off != t->data_end)
        rc = tl_error(
            TL_ECORRUPT,
            "%s: the data blocks end at offset %llu but the metadata starts at %llu; " SST_ADVICE,
            path, (unsigned long long)next_off, (unsigned long long)t->data_end);
    else if (v.entries != t->props.entries)
        rc = tl_error(TL_ECORRUPT,
                      "%s: the props block at offset %llu counts %llu entries, the data blocks "
                      "hold %llu; " SST_ADVICE,
                      path, (unsigned long long)t->meta[META_PROPS].offset,
                      (unsigned long long)t->props.entries, (unsigned long long)v.entries);
    else if (v.entries > 0 &&
             (tl_key_cmp(t->props.largest, t->props.largest_len, v.prev, v.prev_len) != 0 ||
              !v.first_ok))
        rc = tl_error(TL_ECORRUPT,
                      "%s: the props block at offset %llu gives the wrong smallest or largest "
                      "key; " SST_ADVICE,
                      path, (unsigned long long)t->meta[META_PROPS].offset);
out:
    free(v.prev);
    tl_sst_close(t);
    return rc;
}
