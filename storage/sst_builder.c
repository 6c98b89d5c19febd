/*
 * sst_builder.c - writing an SSTable (the file format is described at the top of sst.h).
 *
 * Entries go into a data block until it reaches block_size_bytes; the block is then compressed
 * (or kept as is when compression saves less than 1/8), given its trailer and appended to a
 * write buffer, and its last key goes into the index. The write buffer is written out
 * whenever it holds SST_WRITE_BATCH_BYTES, so the file is written in large sequential
 * requests.
 *
 * Finishing appends the filter (built from the tl_hash64 of every key, gathered as entries
 * were added), the props block, the index block and the footer, writes the rest followed by an
 * fdatasync, and syncs the directory so that the new name survives a crash. Any failure
 * removes the file: a half-written table is never left behind to be mistaken for a whole one.
 *
 * Every value is decoded with tl_record_decode to count deletes, merges and expiring entries;
 * the median expiry is what compaction uses to find files whose keys have mostly expired.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bloom.h"
#include "coding.h"
#include "grow.h"
#include "compress.h"
#include "crc32c.h"
#include "error.h"
#include "hash.h"
#include "sst.h"
#include "uring_io.h"

/* The write buffer is written out once it holds this much. */
#define SST_WRITE_BATCH_BYTES (1u << 20)
#define SST_FILE_MODE         0644
/* Room for an index entry's value: two varints. */
#define SST_HANDLE_MAX_BYTES (2 * TL_VARINT64_MAX_BYTES)
/* Room for the three varints that head a block entry, and the block's restart count, used to
 * keep a block under TL_SST_MAX_BLOCK_BYTES. */
#define SST_ENTRY_OVERHEAD_BYTES (3 * TL_VARINT64_MAX_BYTES + 8)
/* First sizes of the growing arrays. */
#define SST_INITIAL_HASHES 1024
#define SST_INITIAL_KEY    64
/* Largest message kept when an error is rewrapped with the file name. */
#define SST_ERRMSG_BYTES 512
/* Footer layout (sst.h): three (u64 offset, u32 size) handles, then version and magic. */
#define FOOTER_HANDLE_BYTES 12
#define FOOTER_SIZE_AT      8 /* within a handle */
#define FOOTER_VERSION_AT   36
#define FOOTER_MAGIC_AT     40
_Static_assert(FOOTER_MAGIC_AT + 8 == TL_SST_FOOTER_BYTES, "footer layout of sst.h");

struct tl_sst_builder {
    char *path;
    int fd;
    struct tl_sst_builder_options o;
    int status; /* the first failure; every later call returns it */

    struct tl_block_builder data;
    struct tl_block_builder index;

    uint8_t *wbuf; /* blocks not yet written, starting at file offset woff */
    size_t wlen, wcap;
    uint64_t woff;

    uint64_t *hashes; /* tl_hash64 of every key, for the filter */
    size_t n_hashes, cap_hashes;
    int64_t *expiries; /* expire_ms of every entry that carries one */
    size_t n_expiries, cap_expiries;

    uint8_t *last_key;
    size_t last_len, last_cap;
    struct tl_sst_props props; /* smallest is set at the first entry */
};

/* Remembers the first failure and returns it. */
static int fail(struct tl_sst_builder *b, int rc)
{
    if (!b->status)
        b->status = rc;
    return rc;
}

static int nomem(struct tl_sst_builder *b, const char *what)
{
    return fail(b, tl_error(-ENOMEM, "%s: out of memory for the %s of a new table", b->path, what));
}

/* Prefixes the message left by a failed I/O call with the file being written. */
static int io_failed(struct tl_sst_builder *b, int rc)
{
    char msg[SST_ERRMSG_BYTES];
    snprintf(msg, sizeof msg, "%s", tl_last_error());
    return fail(b, tl_error(rc,
                            "%s: writing the table failed: %s (check the disk for space "
                            "and errors)",
                            b->path, msg));
}

static uint32_t block_crc(const uint8_t *data, size_t len, uint8_t type)
{
    return tl_crc32c_mask(tl_crc32c_extend(tl_crc32c(data, len), &type, 1));
}

/* Writes out the write buffer; with sync, an fdatasync follows the write. */
static int flush_writes(struct tl_sst_builder *b, bool sync)
{
    if (b->wlen == 0 && !sync)
        return 0;
    int rc =
        b->wlen ? tl_io_pwrite(b->fd, b->wbuf, b->wlen, b->woff, sync) : tl_io_fdatasync(b->fd);
    if (rc < 0)
        return io_failed(b, rc);
    b->woff += b->wlen;
    b->wlen = 0;
    return 0;
}

/* Appends a block (compressed with type if that pays) and its trailer to the write buffer.
 * h receives where it goes in the file. */
static int emit_block(struct tl_sst_builder *b, const uint8_t *raw, size_t len,
                      enum tl_compression type, struct tl_block_handle *h)
{
    size_t bound = tl_compress_bound(type, len);
    if (bound < len)
        bound = len;
    if (tl_grow((void **)&b->wbuf, &b->wcap, b->wlen + bound + TL_SST_TRAILER_BYTES, 1,
                SST_WRITE_BATCH_BYTES) < 0)
        return nomem(b, "write buffer");
    uint8_t *dst = b->wbuf + b->wlen;
    size_t stored = len;
    if (type != TL_COMPRESS_NONE) {
        int rc = tl_compress(type, b->o.zstd_level, raw, len, dst, &stored);
        if (rc < 0)
            return fail(b, rc);
        /* Keep it only if it saves at least an eighth. */
        if (stored >= len || (len - stored) * 8 < len)
            type = TL_COMPRESS_NONE;
    }
    if (type == TL_COMPRESS_NONE) {
        stored = len;
        if (len)
            memcpy(dst, raw, len);
    }
    dst[stored] = (uint8_t)type;
    tl_put_u32(dst + stored + 1, block_crc(dst, stored, (uint8_t)type));

    h->offset = b->woff + b->wlen;
    h->size = stored;
    b->wlen += stored + TL_SST_TRAILER_BYTES;
    if (b->wlen >= SST_WRITE_BATCH_BYTES)
        return flush_writes(b, false);
    return 0;
}

/* Finishes the current data block, writes it and indexes it under its last key. */
static int flush_data_block(struct tl_sst_builder *b)
{
    size_t len;
    const uint8_t *raw = tl_block_finish(&b->data, &len);
    if (!raw)
        return nomem(b, "data block");
    struct tl_block_handle h;
    int rc = emit_block(b, raw, len, b->o.compression, &h);
    if (rc < 0)
        return rc;
    uint8_t v[SST_HANDLE_MAX_BYTES];
    size_t vlen = tl_put_varint(v, h.offset);
    vlen += tl_put_varint(v + vlen, h.size);
    if (tl_block_add(&b->index, b->last_key, b->last_len, v, vlen) < 0)
        return nomem(b, "index");
    b->props.data_blocks++;
    b->props.data_bytes += h.size;
    tl_block_builder_reset(&b->data);
    return 0;
}

int tl_sst_builder_new(const char *path, const struct tl_sst_builder_options *o,
                       struct tl_sst_builder **out)
{
    struct tl_sst_builder *b = calloc(1, sizeof *b);
    if (!b)
        return tl_error(-ENOMEM, "%s: out of memory for a table builder", path);
    b->fd = -1;
    b->o = *o;
    if (b->o.block_size_bytes == 0)
        b->o.block_size_bytes = 1;
    if (b->o.block_size_bytes > TL_SST_MAX_BLOCK_BYTES / 2)
        b->o.block_size_bytes = TL_SST_MAX_BLOCK_BYTES / 2;
    tl_block_builder_init(&b->data, TL_BLOCK_RESTART_INTERVAL);
    tl_block_builder_init(&b->index, TL_BLOCK_RESTART_INTERVAL);
    int rc;
    if (o->compression != TL_COMPRESS_NONE && o->compression != TL_COMPRESS_LZ4 &&
        o->compression != TL_COMPRESS_ZSTD) {
        rc = tl_error(-EINVAL, "%s: unknown compression type %d for a new table", path,
                      (int)o->compression);
        goto fail;
    }
    b->path = strdup(path);
    if (!b->path) {
        rc = tl_error(-ENOMEM, "%s: out of memory for a table builder", path);
        goto fail;
    }
    b->fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, SST_FILE_MODE);
    if (b->fd < 0) {
        rc = tl_error(-errno, "%s: cannot create the table: %s", path, strerror(errno));
        goto fail;
    }
    *out = b;
    return 0;
fail:
    free(b->path);
    tl_block_builder_free(&b->data);
    tl_block_builder_free(&b->index);
    free(b);
    return rc;
}

/* Counts what the props need to know about an entry value. */
static int account_value(struct tl_sst_builder *b, const uint8_t *val, size_t vlen)
{
    struct tl_record r;
    if (tl_record_decode(val, vlen, &r) < 0)
        return fail(b, tl_error(TL_ECORRUPT,
                                "%s: entry %llu has a value of %zu bytes that is not a valid "
                                "entry value (record.h); the input of this table is corrupt",
                                b->path, (unsigned long long)b->props.entries, vlen));
    if (r.kind == TL_KIND_DELETE)
        b->props.deletes++;
    else if (r.kind == TL_KIND_MERGE_INT || r.kind == TL_KIND_EXPIRE)
        b->props.merges++;
    /* A flag with expire_ms 0 removes an expiry: the entry does not expire. */
    if (r.has_expiry && r.expire_ms != 0) {
        if (tl_grow((void **)&b->expiries, &b->cap_expiries, b->n_expiries + 1, sizeof *b->expiries,
                    SST_INITIAL_HASHES) < 0)
            return nomem(b, "expiry list");
        b->expiries[b->n_expiries++] = r.expire_ms;
        b->props.expiring_entries++;
    }
    return 0;
}

int tl_sst_builder_add(struct tl_sst_builder *b, const void *key, size_t klen, const uint8_t *val,
                       size_t vlen)
{
    int rc;
    if (b->status)
        return b->status;
    if (klen > TL_MAX_KEY_BYTES)
        return fail(b, tl_error(TL_ETOOBIG, "%s: a key of %zu bytes is over the limit of %d",
                                b->path, klen, TL_MAX_KEY_BYTES));
    if (vlen > TL_SST_MAX_BLOCK_BYTES - SST_ENTRY_OVERHEAD_BYTES - klen)
        return fail(b, tl_error(TL_ETOOBIG,
                                "%s: a value of %zu bytes does not fit in a block of at most %u",
                                b->path, vlen, TL_SST_MAX_BLOCK_BYTES));
    if (b->props.entries > 0 && tl_key_cmp(b->last_key, b->last_len, key, klen) >= 0)
        return fail(b, tl_error(-EINVAL,
                                "%s: keys added out of order at entry %llu (a bug in the caller)",
                                b->path, (unsigned long long)b->props.entries));
    if ((rc = account_value(b, val, vlen)) < 0)
        return rc;

    /* A block never grows past what a reader accepts. */
    size_t entry = klen + vlen + SST_ENTRY_OVERHEAD_BYTES;
    if (!tl_block_empty(&b->data) &&
        tl_block_size_estimate(&b->data) + entry > TL_SST_MAX_BLOCK_BYTES &&
        (rc = flush_data_block(b)) < 0)
        return rc;

    if (tl_block_add(&b->data, key, klen, val, vlen) < 0)
        return nomem(b, "data block");
    if (b->o.bloom_bits_per_key > 0) {
        if (tl_grow((void **)&b->hashes, &b->cap_hashes, b->n_hashes + 1, sizeof *b->hashes,
                    SST_INITIAL_HASHES) < 0)
            return nomem(b, "filter");
        b->hashes[b->n_hashes++] = tl_hash64(key, klen);
    }
    if (tl_grow((void **)&b->last_key, &b->last_cap, klen ? klen : 1, 1, SST_INITIAL_KEY) < 0)
        return nomem(b, "last key");
    if (klen)
        memcpy(b->last_key, key, klen);
    b->last_len = klen;
    if (b->props.entries == 0) {
        b->props.smallest = malloc(klen ? klen : 1);
        if (!b->props.smallest)
            return nomem(b, "smallest key");
        if (klen)
            memcpy(b->props.smallest, key, klen);
        b->props.smallest_len = klen;
    }
    b->props.entries++;
    b->props.raw_key_bytes += klen;
    b->props.raw_value_bytes += vlen;

    if (tl_block_size_estimate(&b->data) >= b->o.block_size_bytes)
        return flush_data_block(b);
    return 0;
}

uint64_t tl_sst_builder_size(const struct tl_sst_builder *b)
{
    uint64_t n = b->woff + b->wlen + TL_SST_FOOTER_BYTES;
    if (!tl_block_empty(&b->data))
        n += tl_block_size_estimate(&b->data) + TL_SST_TRAILER_BYTES;
    n += tl_block_size_estimate(&b->index) + TL_SST_TRAILER_BYTES;
    if (b->o.bloom_bits_per_key > 0)
        n += (uint64_t)b->n_hashes * (uint64_t)b->o.bloom_bits_per_key / 8;
    return n;
}

uint64_t tl_sst_builder_entries(const struct tl_sst_builder *b)
{
    return b->props.entries;
}

/* The k-th smallest of v[0..n) (k < n), in linear expected time: v is reordered. */
static int64_t select_kth(int64_t *v, size_t n, size_t k)
{
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        int64_t pivot = v[lo + (hi - lo) / 2];
        size_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot)
                i++;
            while (v[j] > pivot)
                j--;
            if (i <= j) {
                int64_t t = v[i];
                v[i] = v[j];
                v[j] = t;
                i++;
                if (j == 0)
                    break;
                j--;
            }
        }
        /* v[lo..j] <= pivot <= v[i..hi], and anything between equals the pivot. */
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return v[k];
    }
    return v[k];
}

/* Adds a numeric property to the props block. */
static int prop_u64(struct tl_block_builder *pb, const char *name, uint64_t v)
{
    uint8_t buf[TL_VARINT64_MAX_BYTES];
    return tl_block_add(pb, name, strlen(name), buf, tl_put_varint(buf, v));
}

/* Builds the props block. The names must be added in sorted order; the reader looks each one
 * up by name and ignores names it does not know. */
static int build_props(struct tl_block_builder *pb, const struct tl_sst_props *p)
{
    int rc = 0;
    rc = rc ? rc : prop_u64(pb, "data_blocks", p->data_blocks);
    rc = rc ? rc : prop_u64(pb, "data_bytes", p->data_bytes);
    rc = rc ? rc : prop_u64(pb, "deletes", p->deletes);
    rc = rc ? rc : prop_u64(pb, "entries", p->entries);
    rc = rc ? rc : prop_u64(pb, "expire_p50_ms", (uint64_t)p->expire_p50_ms);
    rc = rc ? rc : prop_u64(pb, "expiring_entries", p->expiring_entries);
    rc = rc ? rc : tl_block_add(pb, "largest", strlen("largest"), p->largest, p->largest_len);
    rc = rc ? rc : prop_u64(pb, "merges", p->merges);
    rc = rc ? rc : prop_u64(pb, "raw_key_bytes", p->raw_key_bytes);
    rc = rc ? rc : prop_u64(pb, "raw_value_bytes", p->raw_value_bytes);
    rc = rc ? rc : tl_block_add(pb, "smallest", strlen("smallest"), p->smallest, p->smallest_len);
    return rc;
}

static void free_builder(struct tl_sst_builder *b)
{
    tl_block_builder_free(&b->data);
    tl_block_builder_free(&b->index);
    tl_sst_props_free(&b->props);
    free(b->wbuf);
    free(b->hashes);
    free(b->expiries);
    free(b->last_key);
    free(b->path);
    free(b);
}

/* Syncs the directory holding path, so that the file's name is durable too. */
static int sync_parent(const char *path)
{
    char *dir = strdup(path);
    if (!dir)
        return -ENOMEM;
    char *slash = strrchr(dir, '/');
    int rc;
    if (!slash)
        rc = tl_io_sync_dir(".");
    else if (slash == dir)
        rc = tl_io_sync_dir("/");
    else {
        *slash = '\0';
        rc = tl_io_sync_dir(dir);
    }
    free(dir);
    return rc;
}

int tl_sst_builder_finish(struct tl_sst_builder *b, struct tl_sst_props *props)
{
    struct tl_block_builder pb;
    tl_block_builder_init(&pb, TL_BLOCK_RESTART_INTERVAL);
    uint8_t *filter = NULL;
    size_t filter_len = 0, len;
    const uint8_t *raw;
    struct tl_block_handle fh = {0}, ph, ih;
    int rc;

    if ((rc = b->status) < 0)
        goto fail;
    if (!tl_block_empty(&b->data) && (rc = flush_data_block(b)) < 0)
        goto fail;

    if (b->o.bloom_bits_per_key > 0) {
        rc = tl_bloom_build(b->hashes, b->n_hashes, b->o.bloom_bits_per_key, &filter, &filter_len);
        if (rc < 0) {
            rc = tl_error(rc, "%s: cannot build the filter of %zu keys at %d bits a key", b->path,
                          b->n_hashes, b->o.bloom_bits_per_key);
            goto fail;
        }
        if (filter_len > TL_SST_MAX_BLOCK_BYTES) {
            rc = fail(b, tl_error(TL_ETOOBIG,
                                  "%s: the filter of %zu keys is over the block limit of %u "
                                  "bytes; write smaller tables",
                                  b->path, b->n_hashes, TL_SST_MAX_BLOCK_BYTES));
            goto fail;
        }
        if ((rc = emit_block(b, filter, filter_len, TL_COMPRESS_NONE, &fh)) < 0)
            goto fail;
    } else {
        fh.offset = b->woff + b->wlen;
    }

    /* The median expiry: the lower middle one of an even count. */
    if (b->n_expiries > 0) {
        b->props.expire_p50_ms = select_kth(b->expiries, b->n_expiries, (b->n_expiries - 1) / 2);
    }
    b->props.largest = malloc(b->last_len ? b->last_len : 1);
    if (!b->props.largest) {
        rc = nomem(b, "largest key");
        goto fail;
    }
    if (b->last_len)
        memcpy(b->props.largest, b->last_key, b->last_len);
    b->props.largest_len = b->last_len;
    if (build_props(&pb, &b->props) < 0 || !(raw = tl_block_finish(&pb, &len))) {
        rc = nomem(b, "props block");
        goto fail;
    }
    if ((rc = emit_block(b, raw, len, TL_COMPRESS_NONE, &ph)) < 0)
        goto fail;
    if (!(raw = tl_block_finish(&b->index, &len))) {
        rc = nomem(b, "index block");
        goto fail;
    }
    if (len > TL_SST_MAX_BLOCK_BYTES) {
        rc = fail(b, tl_error(TL_ETOOBIG,
                              "%s: the index of %llu blocks is over the block limit of %u bytes; "
                              "write smaller tables or larger blocks",
                              b->path, (unsigned long long)b->props.data_blocks,
                              TL_SST_MAX_BLOCK_BYTES));
        goto fail;
    }
    if ((rc = emit_block(b, raw, len, TL_COMPRESS_NONE, &ih)) < 0)
        goto fail;

    if (tl_grow((void **)&b->wbuf, &b->wcap, b->wlen + TL_SST_FOOTER_BYTES, 1,
                SST_WRITE_BATCH_BYTES) < 0) {
        rc = nomem(b, "footer");
        goto fail;
    }
    uint8_t *f = b->wbuf + b->wlen;
    fh.size = filter_len;
    const struct tl_block_handle *meta[] = {&fh, &ph, &ih}; /* footer order */
    for (size_t i = 0; i < sizeof meta / sizeof meta[0]; i++) {
        tl_put_u64(f + i * FOOTER_HANDLE_BYTES, meta[i]->offset);
        tl_put_u32(f + i * FOOTER_HANDLE_BYTES + FOOTER_SIZE_AT, (uint32_t)meta[i]->size);
    }
    tl_put_u32(f + FOOTER_VERSION_AT, TL_SST_VERSION);
    tl_put_u64(f + FOOTER_MAGIC_AT, TL_SST_MAGIC);
    b->wlen += TL_SST_FOOTER_BYTES;
    b->props.file_size = b->woff + b->wlen;

    if ((rc = flush_writes(b, true)) < 0)
        goto fail;
    rc = close(b->fd);
    b->fd = -1;
    if (rc < 0) {
        rc = tl_error(-errno, "%s: closing the new table failed: %s", b->path, strerror(errno));
        goto fail;
    }
    if ((rc = sync_parent(b->path)) < 0) {
        rc = io_failed(b, rc);
        goto fail;
    }

    if (props) {
        *props = b->props;
        memset(&b->props, 0, sizeof b->props);
    }
    free(filter);
    tl_block_builder_free(&pb);
    free_builder(b);
    return 0;
fail:
    free(filter);
    tl_block_builder_free(&pb);
    tl_sst_builder_abandon(b);
    return rc;
}

void tl_sst_builder_abandon(struct tl_sst_builder *b)
{
    if (b->fd >= 0)
        close(b->fd);
    unlink(b->path);
    free_builder(b);
}

void tl_sst_props_free(struct tl_sst_props *p)
{
    free(p->smallest);
    free(p->largest);
    p->smallest = p->largest = NULL;
    p->smallest_len = p->largest_len = 0;
}
