/*
 * uring_io.c - file I/O through a per-thread io_uring.
 *
 * Each thread gets its own ring on first use, kept in thread-local storage and torn down by a
 * pthread key destructor when the thread exits. A call queues its requests (a whole batch at
 * once, up to TL_URING_DEPTH at a time), submits them with one io_uring_submit_and_wait, and
 * reaps every completion before it returns; short transfers are resubmitted for the rest.
 */
#include "uring_io.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "fault.h"

struct thread_ring {
    struct io_uring ring;
};

static pthread_key_t ring_key;
static pthread_once_t ring_key_once = PTHREAD_ONCE_INIT;
static __thread struct thread_ring *thread_ring;

static void ring_destroy(void *p)
{
    struct thread_ring *tr = p;
    io_uring_queue_exit(&tr->ring);
    free(tr);
}

static void ring_key_init(void)
{
    pthread_key_create(&ring_key, ring_destroy);
}

static int explain_setup_failure(int err)
{
    const char *why;
    if (err == -EPERM || err == -EACCES)
        why = "io_uring is forbidden here: check the kernel.io_uring_disabled sysctl "
              "(set it to 0: sysctl -w kernel.io_uring_disabled=0) or the container's seccomp "
              "profile (allow io_uring_setup, io_uring_enter and io_uring_register)";
    else if (err == -ENOSYS)
        why = "this kernel has no io_uring: Tally needs Linux 5.19 or newer with io_uring "
              "enabled (CONFIG_IO_URING)";
    else if (err == -ENOMEM)
        why = "the kernel refused memory for the ring: raise the locked-memory limit "
              "(ulimit -l) or free memory";
    else
        why = "io_uring_queue_init failed";
    return tl_error(TL_ENOURING, "cannot set up io_uring (%s): %s", strerror(-err), why);
}

struct io_uring *tl_uring_thread(void)
{
    if (thread_ring)
        return &thread_ring->ring;
    pthread_once(&ring_key_once, ring_key_init);
    struct thread_ring *tr = calloc(1, sizeof *tr);
    if (!tr) {
        tl_error(-ENOMEM, "out of memory for an io_uring");
        return NULL;
    }
    int rc = io_uring_queue_init(TL_URING_DEPTH, &tr->ring, 0);
    if (rc < 0) {
        free(tr);
        explain_setup_failure(rc);
        return NULL;
    }
    thread_ring = tr;
    pthread_setspecific(ring_key, tr);
    return &tr->ring;
}

int tl_uring_probe(void)
{
    struct io_uring ring;
    int rc = io_uring_queue_init(2, &ring, 0);
    if (rc < 0)
        return explain_setup_failure(rc);
    io_uring_queue_exit(&ring);
    return 0;
}

/* -1 not probed yet, 0 writes may complete inline, 1 writes go to io_uring's workers at once. */
static _Atomic int async_writes = -1;

void tl_io_probe_writes(int fd)
{
    int expected = -1;
    struct io_uring *ring = tl_uring_thread();
    if (!ring || atomic_load(&async_writes) != -1)
        return;
    static const char byte = 0;
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    io_uring_prep_write(sqe, fd, &byte, 1, 0);
    sqe->rw_flags = RWF_NOWAIT;
    io_uring_sqe_set_data64(sqe, 0);
    if (io_uring_submit_and_wait(ring, 1) < 0)
        return;
    struct io_uring_cqe *cqe;
    if (io_uring_wait_cqe(ring, &cqe) < 0)
        return;
    int res = cqe->res;
    io_uring_cqe_seen(ring, cqe);
    atomic_compare_exchange_strong(&async_writes, &expected,
                                   res == -EAGAIN || res == -EOPNOTSUPP ? 1 : 0);
}

static inline void write_flags(struct io_uring_sqe *sqe)
{
    if (atomic_load_explicit(&async_writes, memory_order_relaxed) == 1)
        sqe->flags |= IOSQE_ASYNC;
}

enum io_op { IO_READ, IO_WRITE };

/*
 * Runs a batch of reads or writes to completion. done[i] counts bytes already transferred for
 * request i; a short write is resubmitted for the rest, a short read only until end of file
 * (a read of 0 bytes).
 */
static int run_batch(enum io_op op, struct tl_io_req *reqs, size_t n)
{
    struct io_uring *ring = tl_uring_thread();
    if (!ring)
        return TL_ENOURING;
    int first_err = 0;
    for (size_t i = 0; i < n; i++)
        reqs[i].res = 0;

    size_t next = 0;     /* next request not yet queued for the first time */
    size_t inflight = 0; /* queued and not completed */
    /* Requests needing a resubmission (short transfer) are queued again from here. */
    size_t *again = malloc(sizeof(size_t) * (n ? n : 1));
    size_t n_again = 0;
    if (!again)
        return tl_error(-ENOMEM, "out of memory for an I/O batch of %zu requests", n);

    while (next < n || inflight > 0 || n_again > 0) {
        while ((n_again > 0 || next < n) && inflight < TL_URING_DEPTH) {
            size_t i = n_again > 0 ? again[--n_again] : next++;
            struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
            if (!sqe) {
                /* Cannot happen while inflight < depth, but never lose a request. */
                again[n_again++] = i;
                break;
            }
            struct tl_io_req *r = &reqs[i];
            size_t done = (size_t)r->res;
            if (op == IO_READ)
                io_uring_prep_read(sqe, r->fd, (char *)r->buf + done, (unsigned)(r->len - done),
                                   r->off + done);
            else {
                io_uring_prep_write(sqe, r->fd, (char *)r->buf + done, (unsigned)(r->len - done),
                                    r->off + done);
                write_flags(sqe);
            }
            io_uring_sqe_set_data64(sqe, i);
            inflight++;
        }
        int rc = io_uring_submit_and_wait(ring, 1);
        if (rc < 0 && rc != -EINTR) {
            /* The ring itself failed: the requests in flight are lost to us. */
            free(again);
            return tl_error(rc, "io_uring_submit_and_wait: %s", strerror(-rc));
        }
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(ring, head, cqe)
        {
            seen++;
            size_t i = (size_t)io_uring_cqe_get_data64(cqe);
            struct tl_io_req *r = &reqs[i];
            inflight--;
            if (cqe->res < 0) {
                if (cqe->res == -EINTR || cqe->res == -EAGAIN) {
                    again[n_again++] = i;
                    continue;
                }
                r->res = cqe->res;
                if (!first_err)
                    first_err = cqe->res;
                continue;
            }
            r->res += cqe->res;
            if ((size_t)r->res < r->len) {
                if (cqe->res == 0) {
                    if (op == IO_WRITE && !first_err)
                        first_err = -EIO; /* a write that makes no progress */
                    continue;
                }
                again[n_again++] = i;
            }
        }
        io_uring_cq_advance(ring, seen);
    }
    free(again);
    if (first_err)
        return tl_error(first_err, "%s failed: %s", op == IO_READ ? "read" : "write",
                        strerror(-first_err));
    return 0;
}

int tl_io_pread_batch(struct tl_io_req *reqs, size_t n)
{
    return run_batch(IO_READ, reqs, n);
}

int tl_io_pwrite_batch(struct tl_io_req *reqs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int frc = tl_fault_write(reqs[i].fd, reqs[i].buf, reqs[i].len, reqs[i].off);
        if (frc < 0)
            return tl_error(frc, "write of %zu bytes at offset %llu failed: %s", reqs[i].len,
                            (unsigned long long)reqs[i].off, strerror(-frc));
    }
    int rc = run_batch(IO_WRITE, reqs, n);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < n; i++)
        if ((size_t)reqs[i].res != reqs[i].len)
            return tl_error(-EIO, "short write: %lld of %zu bytes", (long long)reqs[i].res,
                            reqs[i].len);
    return 0;
}

int64_t tl_io_pread(int fd, void *buf, size_t len, uint64_t off)
{
    struct tl_io_req r = {.fd = fd, .buf = buf, .len = len, .off = off};
    int rc = run_batch(IO_READ, &r, 1);
    return rc < 0 ? rc : r.res;
}

/* Runs one request or a linked pair and returns the first failure. */
static int submit_and_reap(struct io_uring *ring, unsigned count)
{
    int rc = io_uring_submit_and_wait(ring, count);
    if (rc < 0)
        return tl_error(rc, "io_uring_submit_and_wait: %s", strerror(-rc));
    int written = 0, err = 0, cancelled = 0;
    for (unsigned k = 0; k < count; k++) {
        struct io_uring_cqe *cqe;
        rc = io_uring_wait_cqe(ring, &cqe);
        if (rc < 0)
            return tl_error(rc, "io_uring_wait_cqe: %s", strerror(-rc));
        int res = cqe->res;
        uint64_t tag = io_uring_cqe_get_data64(cqe);
        io_uring_cqe_seen(ring, cqe);
        /* tag 0: the write (res = bytes written); tag 1: the fsync (res = 0). A fsync cancelled
         * because its linked write was short is not an error of its own. */
        if (res == -ECANCELED && tag == 1)
            cancelled = 1;
        else if (res < 0 && !err)
            err = res;
        else if (tag == 0 && res >= 0)
            written = res;
    }
    if (err)
        return err;
    return cancelled && written == 0 ? -ECANCELED : written;
}

/* An fdatasync (IORING_FSYNC_DATASYNC) or a full fsync (0) of fd; with faults, the test
 * build's rule for fd's file may fail it first. */
static int sync_file(int fd, unsigned flags, bool faults, const char *what)
{
    int rc = faults ? tl_fault_sync(fd) : 0;
    if (rc < 0)
        return tl_error(rc, "%s failed: %s", what, strerror(-rc));
    struct io_uring *ring = tl_uring_thread();
    if (!ring)
        return TL_ENOURING;
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    io_uring_prep_fsync(sqe, fd, flags);
    io_uring_sqe_set_data64(sqe, 1);
    rc = submit_and_reap(ring, 1);
    if (rc < 0)
        return tl_error(rc, "%s failed: %s", what, strerror(-rc));
    return 0;
}

int tl_io_fdatasync(int fd)
{
    return sync_file(fd, IORING_FSYNC_DATASYNC, true, "fdatasync");
}

int tl_io_fsync(int fd)
{
    return sync_file(fd, 0, true, "fsync");
}

static int pwrite_all(struct io_uring *ring, int fd, const void *buf, size_t len, uint64_t off,
                      bool sync);

int tl_io_pwrite(int fd, const void *buf, size_t len, uint64_t off, bool sync)
{
    /* The test build's faults (fault.h): a failed write writes nothing (or, short, part of
     * buf); a failed sync comes after a write that succeeded. */
    int rc = tl_fault_write(fd, buf, len, off);
    if (rc < 0)
        return tl_error(rc, "write of %zu bytes at offset %llu failed: %s", len,
                        (unsigned long long)off, strerror(-rc));
    int sync_fault = sync ? tl_fault_sync(fd) : 0;
    struct io_uring *ring = tl_uring_thread();
    if (!ring)
        return TL_ENOURING;
    rc = pwrite_all(ring, fd, buf, len, off, sync && !sync_fault);
    if (rc == 0 && sync_fault)
        rc = tl_error(sync_fault, "fdatasync after a write of %zu bytes at offset %llu failed: %s",
                      len, (unsigned long long)off, strerror(-sync_fault));
    return rc;
}

static int pwrite_all(struct io_uring *ring, int fd, const void *buf, size_t len, uint64_t off,
                      bool sync)
{
    const char *p = buf;
    while (len > 0) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
        io_uring_prep_write(sqe, fd, p, (unsigned)(len > (1u << 30) ? (1u << 30) : len), off);
        write_flags(sqe);
        io_uring_sqe_set_data64(sqe, 0);
        unsigned count = 1;
        if (sync) {
            /* The fsync runs only if the write completes in full; a short write breaks the
             * link and the fsync is cancelled, then retried below with the rest. */
            sqe->flags |= IOSQE_IO_LINK;
            struct io_uring_sqe *fs = io_uring_get_sqe(ring);
            io_uring_prep_fsync(fs, fd, IORING_FSYNC_DATASYNC);
            io_uring_sqe_set_data64(fs, 1);
            count = 2;
        }
        int res = submit_and_reap(ring, count);
        if (res == -ECANCELED)
            res = 0; /* the fsync was cancelled by a short write: go round again */
        if (res < 0)
            return tl_error(res, "write of %zu bytes at offset %llu failed: %s", len,
                            (unsigned long long)off, strerror(-res));
        if (res == 0)
            return tl_error(-EIO, "write at offset %llu made no progress", (unsigned long long)off);
        if ((size_t)res == len)
            return 0;
        p += res;
        off += (uint64_t)res;
        len -= (size_t)res;
    }
    /* tl_io_pwrite consulted the sync fault already. */
    return sync ? sync_file(fd, IORING_FSYNC_DATASYNC, false, "fdatasync") : 0;
}

int tl_io_sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return tl_error(-errno, "cannot open directory %s to sync it: %s", dir, strerror(errno));
    struct io_uring *ring = tl_uring_thread();
    int rc;
    if (!ring) {
        rc = TL_ENOURING;
    } else {
        struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
        io_uring_prep_fsync(sqe, fd, 0);
        io_uring_sqe_set_data64(sqe, 1);
        rc = submit_and_reap(ring, 1);
        if (rc < 0)
            rc = tl_error(rc, "cannot sync directory %s: %s", dir, strerror(-rc));
    }
    close(fd);
    return rc;
}
