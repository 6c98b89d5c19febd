/*
 * compress.h - block compression with LZ4 and Zstd.
 *
 * A compressed payload is a varint of the uncompressed length followed by the codec's output,
 * so that decompression knows how much room it needs.
 */
#ifndef TL_COMPRESS_H
#define TL_COMPRESS_H

#include <stddef.h>
#include <stdint.h>

#include "tallystore.h"

/* The largest payload tl_compress can write for len bytes. */
size_t tl_compress_bound(enum tl_compression type, size_t len);
/* Compresses src into dst (room for tl_compress_bound); *out_len gets the payload length. */
int tl_compress(enum tl_compression type, int zstd_level, const uint8_t *src, size_t len,
                uint8_t *dst, size_t *out_len);
/* Decompresses a payload into a malloc'd buffer. TL_ECORRUPT if it is malformed or its length
 * is over max_len. */
int tl_decompress(enum tl_compression type, const uint8_t *src, size_t len, size_t max_len,
                  uint8_t **out, size_t *out_len);
const char *tl_compression_name(enum tl_compression type);

#endif
