/*
 * uring_io.c - file I/O through a per-thread io_uring, and the writes and syncs that do better
 * without it.
 *
 * Each thread gets its own ring on first use, kept in thread-local storage and torn down by a
 * pthread key destructor when the thread exits. Reads go through it: a call queues its requests
 * (a whole batch at once, up to TL_URING_DEPTH at a time), submits them with one
 * io_uring_submit_and_wait, and reaps every completion before it returns; short transfers are
 * resubmitted for the rest. A read from the page cache completes inside the submission.
 *
 * A single write or sync that its caller waits for (tl_io_pwrite, tl_io_fdatasync, tl_io_fsync,
 * tl_io_sync_dir) is the system call, made in the calling thread. io_uring runs every fsync,
 * and every buffered write on a file system that cannot complete one without blocking (ext4
 * here: a write with RWF_NOWAIT fails with EAGAIN), in one of its worker threads while the
 * caller sleeps on the ring: the same work plus two thread switches, and nothing done
 * meanwhile. Measured on 2 CPUs with tallyd (--io-threads 1, 50 clients, INCR over 1M keys,
 * alternating runs of one build with and without): unpipelined, 58k -> 69k requests/s under
 * fsync always and 163k -> 168k under everysec; with 32 requests in flight, 1.62M -> 1.83M
 * under everysec.
 */
#include "uring_io.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
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

/*
 * Runs a batch of reads to completion. reqs[i].res counts bytes already read for request i; a
 * short read is resubmitted for the rest until end of file (a read of 0 bytes).
 */
static int read_batch(struct tl_io_req *reqs, size_t n)
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
            io_uring_prep_read(sqe, r->fd, (char *)r->buf + done, (unsigned)(r->len - done),
                               r->off + done);
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
                if (cqe->res == 0)
                    continue; /* end of file */
                again[n_again++] = i;
            }
        }
        io_uring_cq_advance(ring, seen);
    }
    free(again);
    if (first_err)
        return tl_error(first_err, "read failed: %s", strerror(-first_err));
    return 0;
}

int tl_io_pread_batch(struct tl_io_req *reqs, size_t n)
{
    return read_batch(reqs, n);
}

int64_t tl_io_pread(int fd, void *buf, size_t len, uint64_t off)
{
    struct tl_io_req r = {.fd = fd, .buf = buf, .len = len, .off = off};
    int rc = read_batch(&r, 1);
    return rc < 0 ? rc : r.res;
}

/* fdatasync (datasync) or fsync of fd: 0 or a negated errno. */
static int sync_fd(int fd, bool datasync)
{
    int rc;
    do
        rc = (datasync ? fdatasync(fd) : fsync(fd)) < 0 ? -errno : 0;
    while (rc == -EINTR);
    return rc;
}

/* An fdatasync (datasync) or a full fsync of fd; the test build's rule for fd's file may fail
 * it first. */
static int sync_file(int fd, bool datasync, const char *what)
{
    int rc = tl_fault_sync(fd);
    if (rc == 0)
        rc = sync_fd(fd, datasync);
    if (rc < 0)
        return tl_error(rc, "%s failed: %s", what, strerror(-rc));
    return 0;
}

int tl_io_fdatasync(int fd)
{
    return sync_file(fd, true, "fdatasync");
}

int tl_io_fsync(int fd)
{
    return sync_file(fd, false, "fsync");
}

int tl_io_pwrite(int fd, const void *buf, size_t len, uint64_t off, bool sync)
{
    /* The test build's faults (fault.h): a failed write writes nothing (or, short, part of
     * buf); a failed sync comes after a write that succeeded. */
    int rc = tl_fault_write(fd, buf, len, off);
    if (rc < 0)
        return tl_error(rc, "write of %zu bytes at offset %llu failed: %s", len,
                        (unsigned long long)off, strerror(-rc));
    const char *p = buf;
    size_t done = 0;
    while (done < len) {
        ssize_t n = pwrite(fd, p + done, len - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return tl_error(-errno, "write of %zu bytes at offset %llu failed with %zu written: %s",
                            len, (unsigned long long)off, done, strerror(errno));
        if (n == 0)
            return tl_error(-EIO,
                            "write of %zu bytes at offset %llu made no progress with %zu written",
                            len, (unsigned long long)off, done);
        done += (size_t)n;
    }
    if (!sync)
        return 0;
    rc = tl_fault_sync(fd);
    if (rc == 0)
        rc = sync_fd(fd, true);
    if (rc < 0)
        return tl_error(rc, "fdatasync after a write of %zu bytes at offset %llu failed: %s", len,
                        (unsigned long long)off, strerror(-rc));
    return 0;
}

int tl_io_sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return tl_error(-errno, "cannot open directory %s to sync it: %s", dir, strerror(errno));
    int rc = sync_fd(fd, false);
    close(fd);
    if (rc < 0)
        return tl_error(rc, "cannot sync directory %s: %s", dir, strerror(-rc));
    return 0;
}
