/*
 * crc32c.h - CRC-32C (Castagnoli), the checksum of every WAL record, manifest record and
 * SSTable block. Uses the SSE4.2 instruction where the CPU has it.
 */
#ifndef TL_CRC32C_H
#define TL_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends crc (0 to start) over data. */
uint32_t tl_crc32c_extend(uint32_t crc, const void *data, size_t len);

static inline uint32_t tl_crc32c(const void *data, size_t len)
{
    return tl_crc32c_extend(0, data, len);
}

/* Stored checksums are masked (rotated and offset, as LevelDB does) so that a CRC of data
 * that itself holds CRCs does not degenerate. */
static inline uint32_t tl_crc32c_mask(uint32_t crc)
{
    return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

static inline uint32_t tl_crc32c_unmask(uint32_t masked)
{
    uint32_t rot = masked - 0xa282ead8u;
    return (rot >> 17) | (rot << 15);
}

#endif
