/*
 * compress.c - block compression with LZ4 and Zstd (payload format in compress.h).
 *
 * Type NONE is the identity: its payload is the bytes themselves, with no length prefix, so a
 * block stored uncompressed is read without a copy through the codec.
 *
 * Zstd contexts are costly to create for every 4 KiB block, so each thread keeps one
 * compression and one decompression context, freed by a thread-specific-data destructor when
 * the thread exits. LZ4 needs no state.
 *
 * Decompression input is untrusted: the declared length is checked against max_len before any
 * allocation, and the codec must produce exactly that many bytes.
 */
#include "compress.h"

#include <errno.h>
#include <lz4.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "coding.h"
#include "error.h"

struct zstd_ctx {
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
};

static pthread_key_t zstd_key;
static pthread_once_t zstd_once = PTHREAD_ONCE_INIT;
static int zstd_key_ok;

static void zstd_ctx_free(void *p)
{
    struct zstd_ctx *z = p;
    ZSTD_freeCCtx(z->cctx);
    ZSTD_freeDCtx(z->dctx);
    free(z);
}

static void zstd_key_init(void)
{
    zstd_key_ok = pthread_key_create(&zstd_key, zstd_ctx_free) == 0;
}

/* The calling thread's Zstd contexts, or NULL when out of memory. */
static struct zstd_ctx *zstd_thread(void)
{
    pthread_once(&zstd_once, zstd_key_init);
    if (!zstd_key_ok)
        return NULL;
    struct zstd_ctx *z = pthread_getspecific(zstd_key);
    if (z)
        return z;
    z = calloc(1, sizeof *z);
    if (!z)
        return NULL;
    z->cctx = ZSTD_createCCtx();
    z->dctx = ZSTD_createDCtx();
    if (!z->cctx || !z->dctx || pthread_setspecific(zstd_key, z) != 0) {
        zstd_ctx_free(z);
        return NULL;
    }
    return z;
}

const char *tl_compression_name(enum tl_compression type)
{
    switch (type) {
    case TL_COMPRESS_NONE:
        return "none";
    case TL_COMPRESS_LZ4:
        return "lz4";
    case TL_COMPRESS_ZSTD:
        return "zstd";
    }
    return "unknown";
}

size_t tl_compress_bound(enum tl_compression type, size_t len)
{
    switch (type) {
    case TL_COMPRESS_NONE:
        return len;
    case TL_COMPRESS_LZ4:
        if (len > LZ4_MAX_INPUT_SIZE)
            return 0;
        return tl_varint_len(len) + (size_t)LZ4_compressBound((int)len);
    case TL_COMPRESS_ZSTD:
        return tl_varint_len(len) + ZSTD_compressBound(len);
    }
    return 0;
}

int tl_compress(enum tl_compression type, int zstd_level, const uint8_t *src, size_t len,
                uint8_t *dst, size_t *out_len)
{
    size_t head;
    switch (type) {
    case TL_COMPRESS_NONE:
        if (len)
            memcpy(dst, src, len);
        *out_len = len;
        return 0;
    case TL_COMPRESS_LZ4: {
        if (len > LZ4_MAX_INPUT_SIZE)
            return tl_error(-EINVAL, "lz4: a block of %zu bytes is over the codec's limit", len);
        head = tl_put_varint(dst, len);
        int cap = LZ4_compressBound((int)len);
        int n = LZ4_compress_default((const char *)src, (char *)dst + head, (int)len, cap);
        if (n <= 0)
            return tl_error(-EINVAL, "lz4: compressing a block of %zu bytes failed", len);
        *out_len = head + (size_t)n;
        return 0;
    }
    case TL_COMPRESS_ZSTD: {
        struct zstd_ctx *z = zstd_thread();
        if (!z)
            return tl_error(-ENOMEM, "zstd: cannot allocate a compression context");
        head = tl_put_varint(dst, len);
        size_t n =
            ZSTD_compressCCtx(z->cctx, dst + head, ZSTD_compressBound(len), src, len, zstd_level);
        if (ZSTD_isError(n))
            return tl_error(-EINVAL, "zstd: compressing a block of %zu bytes at level %d: %s", len,
                            zstd_level, ZSTD_getErrorName(n));
        *out_len = head + n;
        return 0;
    }
    }
    return tl_error(-EINVAL, "unknown compression type %d", (int)type);
}

int tl_decompress(enum tl_compression type, const uint8_t *src, size_t len, size_t max_len,
                  uint8_t **out, size_t *out_len)
{
    uint8_t *buf = NULL;
    uint64_t raw = len;
    size_t head = 0;
    int rc;

    if (type != TL_COMPRESS_NONE) {
        head = tl_get_varint(src, src + len, &raw);
        if (!head) {
            rc = tl_error(TL_ECORRUPT, "%s payload of %zu bytes has no valid length prefix",
                          tl_compression_name(type), len);
            goto fail;
        }
    }
    if (raw > max_len) {
        rc = tl_error(TL_ECORRUPT, "%s payload declares %llu bytes, over the limit of %zu",
                      tl_compression_name(type), (unsigned long long)raw, max_len);
        goto fail;
    }
    /* One spare byte so that an empty block still gets a distinct allocation. */
    buf = malloc((size_t)raw + 1);
    if (!buf) {
        rc = tl_error(-ENOMEM, "cannot allocate %llu bytes to decompress a block",
                      (unsigned long long)raw);
        goto fail;
    }

    switch (type) {
    case TL_COMPRESS_NONE:
        if (len)
            memcpy(buf, src, len);
        break;
    case TL_COMPRESS_LZ4: {
        if (raw > LZ4_MAX_INPUT_SIZE || len - head > LZ4_MAX_INPUT_SIZE) {
            rc = tl_error(TL_ECORRUPT, "lz4 payload of %zu bytes is over the codec's limit", len);
            goto fail;
        }
        int n =
            LZ4_decompress_safe((const char *)src + head, (char *)buf, (int)(len - head), (int)raw);
        if (n < 0 || (uint64_t)n != raw) {
            rc = tl_error(TL_ECORRUPT, "lz4 payload of %zu bytes does not decompress to %llu bytes",
                          len, (unsigned long long)raw);
            goto fail;
        }
        break;
    }
    case TL_COMPRESS_ZSTD: {
        struct zstd_ctx *z = zstd_thread();
        if (!z) {
            rc = tl_error(-ENOMEM, "zstd: cannot allocate a decompression context");
            goto fail;
        }
        size_t n = ZSTD_decompressDCtx(z->dctx, buf, (size_t)raw, src + head, len - head);
        if (ZSTD_isError(n) || n != raw) {
            rc = tl_error(TL_ECORRUPT,
                          "zstd payload of %zu bytes does not decompress to %llu "
                          "bytes (%s)",
                          len, (unsigned long long)raw,
                          ZSTD_isError(n) ? ZSTD_getErrorName(n) : "wrong length");
            goto fail;
        }
        break;
    }
    default:
        rc = tl_error(TL_ECORRUPT, "unknown compression type %d", (int)type);
        goto fail;
    }
    *out = buf;
    *out_len = (size_t)raw;
    return 0;
fail:
    free(buf);
    return rc;
}
