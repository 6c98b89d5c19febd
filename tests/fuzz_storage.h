/*
 * fuzz_storage.h - what the libFuzzer targets of the on-disk readers share (fuzz_sst.c,
 * fuzz_wal.c, fuzz_manifest.c): a scratch directory made once per process under $TMPDIR and
 * removed at exit, writing an input into a file there, the check that stops the run, and the
 * repair of the checksums of a mutated file (the SSTable's blocks are repaired in fuzz_sst.c;
 * the framed records of the WAL and the manifest here).
 *
 * The readers check a CRC32C before they parse anything behind it, so a mutated file almost
 * never gets past its checksums. Each target therefore runs every input twice: as it is (the
 * checksum and torn-tail paths) and with its checksums recomputed by the target, which walks
 * the format the way the reader does (the parsers behind the checksums).
 */
#ifndef TL_FUZZ_STORAGE_H
#define TL_FUZZ_STORAGE_H

#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coding.h"
#include "crc32c.h"
#include "tallystore.h"
#include "uring_io.h"

#define FUZZ_PATH_BYTES 4096
#define FUZZ_SKIP       77

/* The scratch directory of this process. */
static char fuzz_dir[FUZZ_PATH_BYTES];

static inline void fuzz_check(bool cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "fuzz check failed: %s (last error: %s)\n", what, tl_last_error());
        abort();
    }
}

/* A failing call must return a negative code and leave a message saying why. */
static inline void fuzz_check_error(int rc, const char *what)
{
    fuzz_check(rc < 0, what);
    fuzz_check(tl_last_error()[0] != '\0', "a failure leaves a message");
}

static inline void fuzz_remove_dir(void)
{
    char cmd[FUZZ_PATH_BYTES + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_dir);
    if (fuzz_dir[0] && system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", fuzz_dir);
}

/* Makes the scratch directory (removed at exit); exits 77 where io_uring cannot be used. */
static inline void fuzz_setup(const char *name)
{
    if (tl_uring_probe() != 0) {
        fprintf(stderr, "SKIP: %s\n", tl_last_error());
        exit(FUZZ_SKIP);
    }
    const char *base = getenv("TMPDIR");
    snprintf(fuzz_dir, sizeof fuzz_dir, "%s/tally-%s-XXXXXX", base && *base ? base : "/tmp", name);
    if (!mkdtemp(fuzz_dir)) {
        perror(fuzz_dir);
        exit(1);
    }
    atexit(fuzz_remove_dir);
}

/* path = the scratch directory / name. */
static inline void fuzz_path(char *path, const char *name)
{
    snprintf(path, FUZZ_PATH_BYTES, "%s/%s", fuzz_dir, name);
}

/* Replaces the file at path with size bytes of data. */
static inline void fuzz_write_file(const char *path, const uint8_t *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    fuzz_check(fd >= 0, "create a scratch file");
    size_t done = 0;
    while (done < size) {
        ssize_t n = write(fd, data + done, size - done);
        fuzz_check(n > 0, "write a scratch file");
        done += (size_t)n;
    }
    close(fd);
}

/* The stored (masked) CRC32C of len bytes. */
static inline uint32_t fuzz_masked_crc(const uint8_t *p, size_t len)
{
    return tl_crc32c_mask(tl_crc32c(p, len));
}

/* A malloc'd copy of the input, for a target to repair. */
static inline uint8_t *fuzz_copy(const uint8_t *data, size_t size)
{
    uint8_t *p = malloc(size ? size : 1);
    fuzz_check(p != NULL, "copy the input");
    if (size)
        memcpy(p, data, size);
    return p;
}

/* The files of the WAL and of the manifest: a header whose last 4 bytes are the masked CRC32C
 * of the rest, then records framed by a masked CRC32C and a length (little-endian u32s). */
struct fuzz_framing {
    size_t header_bytes;
    bool crc_covers_length; /* the record CRC covers the length field, not only the body */
    uint32_t min_len;       /* a shorter length field is not a record */
};

/* Recomputes the header checksum and those of the records the lengths lead to; false if the
 * input is too short to hold a header. */
static inline bool fuzz_repair_framed(const struct fuzz_framing *fr, uint8_t *f, size_t size)
{
    const size_t crc_bytes = 4, frame_bytes = 8;
    if (size < fr->header_bytes)
        return false;
    size_t crc_at = fr->header_bytes - crc_bytes;
    tl_put_u32(f + crc_at, fuzz_masked_crc(f, crc_at));
    size_t off = fr->header_bytes;
    while (size - off >= frame_bytes) {
        uint32_t len = tl_get_u32(f + off + crc_bytes);
        if (len < fr->min_len || len > size - off - frame_bytes)
            break;
        tl_put_u32(f + off, fr->crc_covers_length
                                ? fuzz_masked_crc(f + off + crc_bytes, crc_bytes + (size_t)len)
                                : fuzz_masked_crc(f + off + frame_bytes, len));
        off += frame_bytes + len;
    }
    return true;
}

/* Runs read_fn over the input as it is, then over a copy that repair_fn changed, if it did. */
static inline void fuzz_as_is_and_repaired(const uint8_t *data, size_t size,
                                           bool (*repair_fn)(uint8_t *f, size_t size),
                                           void (*read_fn)(const uint8_t *data, size_t size))
{
    read_fn(data, size);
    uint8_t *fixed = fuzz_copy(data, size);
    if (repair_fn(fixed, size) && memcmp(fixed, data, size) != 0)
        read_fn(fixed, size);
    free(fixed);
}

#endif
