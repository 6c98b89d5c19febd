/*
 * fault.h - fault injection at the storage I/O seam (uring_io.c), for tests only.
 *
 * Compiled in only when TL_FAULT_INJECTION is defined: storage/libtallystore-faults.a and
 * server/tallyd-faults are built from the same sources with that define, for `make check`;
 * the installed library and tallyd carry none of it (the hooks below are empty inlines there).
 *
 * A rule makes the writes, or the syncs, of one kind of file fail:
 *     file   wal (NNNNNN.wal), sst (NNNNNN.sst), manifest (MANIFEST-NNNNNN, CURRENT)
 *     kind   eio      a write fails with EIO and writes nothing
 *            enospc   a write fails with ENOSPC and writes nothing
 *            short    half of the write reaches the file, then the rest fails with ENOSPC
 *                     (a torn record is left where the write began)
 *            sync     an fdatasync or fsync (or the one after a write) fails with EIO
 *                     after the write itself succeeded
 *     when   skip the first `skip` eligible calls, then fail the next `count` (0: until
 *            cleared): "fail the next N" is skip 0 count N, "fail after N successes" is
 *            skip N, "fail until cleared" is count 0.
 * Each file kind has one write rule (eio, enospc or short) and one sync rule. The kind of file
 * is found from the name behind the descriptor (/proc/self/fd), so callers need no change.
 * Directory syncs are never failed.
 *
 * Text form (tl_fault_apply, the server's control file): "FILE KIND [skip N] [count N]",
 * "clear FILE" or "clear". Counts of injected faults per file and kind are kept for the
 * figures a test prints (tl_fault_report).
 */
#ifndef TL_FAULT_H
#define TL_FAULT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum tl_fault_file { TL_FAULT_WAL, TL_FAULT_SST, TL_FAULT_MANIFEST, TL_FAULT_FILES };
enum tl_fault_kind { TL_FAULT_EIO, TL_FAULT_ENOSPC, TL_FAULT_SHORT, TL_FAULT_SYNC, TL_FAULT_KINDS };

#ifdef TL_FAULT_INJECTION

/* Sets the rule of file for kind (replacing its write or sync rule). */
void tl_fault_set(enum tl_fault_file file, enum tl_fault_kind kind, uint64_t skip, uint64_t count);
/* Clears both rules of one file kind, or of every kind. */
void tl_fault_clear(enum tl_fault_file file);
void tl_fault_clear_all(void);
/* Faults injected so far of file and kind. */
uint64_t tl_fault_injected(enum tl_fault_file file, enum tl_fault_kind kind);
/* Applies one line of the text form; -EINVAL (message set) if it does not parse. */
int tl_fault_apply(const char *line);
/* Prints the figures: one line per file kind with the count of each fault kind. */
void tl_fault_report(FILE *out, const char *who);

/* The seam, called by uring_io.c. Before a write of len bytes at off to fd: 0 to go on, or a
 * negated errno to fail it (a short write has then written part of buf itself). */
int tl_fault_write(int fd, const void *buf, size_t len, uint64_t off);
/* Before an fdatasync or fsync of fd: 0 to go on, or a negated errno to fail it. */
int tl_fault_sync(int fd);

#else

static inline int tl_fault_write(int fd, const void *buf, size_t len, uint64_t off)
{
    (void)fd, (void)buf, (void)len, (void)off;
    return 0;
}

static inline int tl_fault_sync(int fd)
{
    (void)fd;
    return 0;
}

#endif

#endif
