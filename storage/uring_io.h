/*
 * uring_io.h - synchronous and batched file I/O: reads and batches through io_uring, single
 * writes and syncs through the system calls (uring_io.c says why).
 *
 * Each thread that reads from disk owns a ring: tl_uring_thread() creates the calling thread's
 * ring on first use (destroyed when the thread exits). The functions below wait for their
 * completions, retrying short reads and writes. Errors are negated errnos. Opening, renaming
 * and unlinking files use the ordinary system calls.
 */
#ifndef TL_URING_IO_H
#define TL_URING_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct io_uring;

/* Entries of each thread's ring: also the largest batch submitted at once. */
#define TL_URING_DEPTH 64

/* 0 if io_uring can be set up here, else TL_ENOURING with a message that says why (the
 * kernel.io_uring_disabled sysctl, a seccomp profile, an old kernel) and how to fix it. */
int tl_uring_probe(void);

/* The calling thread's ring, or NULL (with tl_last_error set) if it cannot be created. */
struct io_uring *tl_uring_thread(void);

/* Reads up to len bytes at off; returns the number read (less than len only at end of file). */
int64_t tl_io_pread(int fd, void *buf, size_t len, uint64_t off);
/* Writes all of buf at off (pwrite(2) in the calling thread); with sync, then fdatasync(2). */
int tl_io_pwrite(int fd, const void *buf, size_t len, uint64_t off, bool sync);
int tl_io_fdatasync(int fd);
/* A full fsync: also the file's size after an ftruncate that shrank it. */
int tl_io_fsync(int fd);

/* One request of a batch. res: bytes transferred, or a negated errno. */
struct tl_io_req {
    int fd;
    void *buf;
    size_t len;
    uint64_t off;
    int64_t res;
};
/* Submits every request at once (in chunks of TL_URING_DEPTH) and waits for all. Short reads at
 * end of file are not errors (res says how many bytes came). Returns 0 when every request
 * completed in full, else the first failure. */
int tl_io_pread_batch(struct tl_io_req *reqs, size_t n);

/* Syncs a directory (after creating, renaming or removing files in it). */
int tl_io_sync_dir(const char *dir);

#endif
