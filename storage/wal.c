/*
 * wal.c - the write-ahead log (format in wal.h): appends, the commit thread, and replay.
 *
 * Appending. tl_wal_append takes the WAL mutex for a few dozen instructions: it assigns the next
 * sequence number and encodes the record straight into the active buffer, leaving the CRC field
 * zero. The commit thread fills in the CRCs just before it writes the buffer, so checksumming a
 * large value never happens inside the critical section. There are two buffers: while the commit
 * thread writes one, appenders fill the other. Appenders wait when the active buffer holds
 * TL_WAL_BUFFER_BYTES or more (bounded memory); a record larger than the room left grows the
 * buffer to fit, and the commit thread shrinks an oversized buffer back after writing it.
 * An appender signals the commit thread only when the thread is idle (commit_idle) and either
 * sleeps without a deadline, or the mode is ALWAYS, or the buffer is large: outside ALWAYS the
 * thread writes what nobody waits for TL_WAL_WRITE_DELAY_US after it was appended, and a waiter
 * writes for itself, so a stream of appends costs no futex wake per record.
 *
 * Group commit. The commit thread loops: wait for work, swap buffers, write the whole buffer at
 * the segment's end with one tl_io_pwrite. Under TL_FSYNC_ALWAYS the write is followed by an
 * fdatasync, so one write and one sync serve every record that arrived while the previous write
 * was in flight. Under TL_FSYNC_EVERYSEC the write carries the sync when TL_WAL_SYNC_INTERVAL_MS
 * has passed since the last one; when appends stop, the thread wakes on a timer to sync what is
 * left. Under TL_FSYNC_NO nothing is synced except at a roll and at close. After each write the
 * thread publishes written_seq and durable_seq and wakes tl_wal_wait callers (only if any wait).
 * durable_seq means "as durable as the fsync mode makes it": under TL_FSYNC_NO it follows
 * written_seq; otherwise it is the last record covered by a completed fdatasync.
 *
 * Committing in the waiter's thread. A caller of tl_wal_wait for WRITTEN (or DURABLE under
 * ALWAYS) does not hand over to the commit thread and wait for it to come back: it takes the
 * committer's turn itself (commit_turn_locked) and writes the whole buffer, for every appender
 * so far. One thread commits at a time (committing, turn_cv); others wait for the turn and find
 * their records written. The commit thread still writes whatever nobody waits for, and keeps
 * the everysec timer: a waiter never pays for the timer's sync.
 *
 * Rolling. tl_wal_roll puts a roll marker in the active buffer: the number of the new segment and
 * the offset where its records start. When the commit thread takes a buffer with a marker, it
 * writes the part before the marker to the old segment with a sync (whatever the mode, so a
 * crash never leaves a torn segment that is not the last), closes it, and only then creates the
 * new segment. A buffer holds at most one marker: a second roll waits for the buffer swap.
 *
 * Segment creation. The file is created with O_CREAT | O_EXCL. If it exists and is empty (what
 * recovery leaves of a segment whose header was torn) it is reused; if it holds data the open
 * fails with EEXIST rather than overwrite records. The header is written and synced, and the
 * directory synced, before any record is written, so a segment that exists after a crash always
 * has a whole header unless it is empty or the last one.
 *
 * Errors: the WAL breaks, then repairs itself. A failed write (EIO, ENOSPC, a short write that
 * left part of a record in the file) or a failed fdatasync breaks the WAL: the error (segment
 * path, offset, errno text) is kept, appends, rolls and syncs fail with it at once, and waits
 * for records not yet written (or durable) fail with it. Nothing appended is dropped: the
 * records were applied to the memtable when appended, so they must reach the log. The buffer
 * whose write failed stays pending, and the commit thread tries a repair every
 * TL_WAL_RETRY_MIN_MS, backing off to TL_WAL_RETRY_MAX_MS; once one succeeds the pending
 * buffer is written and appends are taken again, without a restart.
 *
 * The repair, and why it is safe after a failed fsync ("fsyncgate": after a failed fsync the
 * kernel may have dropped the dirty pages, or marked them clean, and a second fsync then
 * reports success without writing them). The commit thread keeps a copy of every byte it has
 * written to the segment since the last fdatasync that succeeded (`unsynced`, the file range
 * [synced_off, seg_off)); at most TL_WAL_UNSYNCED_MAX_BYTES, since a write that would pass that
 * bound carries a sync, in every fsync mode. A repair writes that copy again at synced_off,
 * cuts the file at its end with ftruncate (dropping a torn record or half a failed write), and
 * runs a full fsync (the size too). Every page whose state the failed call left unknown is
 * thus written again from memory and made durable by a sync that succeeded afterwards; no
 * record is torn in the middle of the segment, and the segment stays one run of whole records.
 * Then the pending buffer is written from where it stopped (a roll marker in it is honoured:
 * the old segment is finished first, and the new segment created, again if its creation
 * failed). The rewrite keeps the old bytes in place rather than truncating first, so a kill -9
 * during a repair loses no record that was written. A waiter told that its record failed may
 * still see it stored later (the outcome of a failed write is unknown to its caller, as with a
 * timeout); a record is never reported written or durable before it is.
 *
 * Replay reads the segment in chunks (a chunk grows to hold one record at most, and a record is
 * bounded by WAL_MAX_BODY_BYTES), checks each record and classifies the first bad one: a record
 * that runs past the end of the file, or a bad one after which no valid record starts at the
 * position its length points to, is a torn tail; a bad record followed by a valid one is
 * corruption. A header of zeros (crc and length 0) is a zero-filled tail and counts as torn.
 */
#include "wal.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "coding.h"
#include "crc32c.h"
#include "error.h"
#include "grow.h"
#include "uring_io.h"

/* Largest encoded entry value a record may carry: a 16 MiB byte value plus its header. Appends
 * above it fail with TL_ETOOBIG, and replay treats a longer length field as damage. */
#define WAL_MAX_VALUE_BYTES (TL_MAX_VALUE_BYTES + TL_RECORD_HEADER_MAX)
/* Bounds of a record's length field N (sequence number, key length, key, value). */
#define WAL_MIN_BODY_BYTES (8 + 1 + 1)
#define WAL_MAX_BODY_BYTES (8 + TL_VARINT64_MAX_BYTES + TL_MAX_KEY_BYTES + WAL_MAX_VALUE_BYTES)
/* Bytes before the body: the CRC and length fields. */
#define WAL_FRAME_BYTES 8
/* A buffer starts this large, and is shrunk back to it after writing when it has grown past
 * WAL_BUFFER_KEEP_BYTES (a huge record made it grow). */
#define WAL_BUFFER_INITIAL_BYTES (256u << 10)
#define WAL_BUFFER_KEEP_BYTES    (2 * TL_WAL_BUFFER_BYTES)
/* Replay reads the file in chunks of this size (or one record, if larger). */
#define WAL_REPLAY_CHUNK_BYTES (1u << 20)
#define WAL_MSG_BYTES          1024
#define WAL_PATH_BYTES         PATH_MAX

struct wal_buf {
    uint8_t *data;
    size_t len, cap;
    uint64_t last_seq; /* sequence number of the last record in data; 0 if none */
    bool has_roll;     /* records from roll_off on go to segment roll_number */
    uint64_t roll_number;
    size_t roll_off;
    uint64_t roll_seq;            /* the last sequence number of the old segment */
    struct timespec first_append; /* when the first record of data was appended */
    size_t done;                  /* bytes of data already written (a failed write resumes) */
};

struct tl_wal {
    char *dir;
    enum tl_fsync_mode mode;

    pthread_mutex_t mu;
    pthread_cond_t commit_cv; /* the commit thread waits for work (CLOCK_MONOTONIC) */
    pthread_cond_t space_cv;  /* appenders and rollers wait for a buffer swap */
    pthread_cond_t done_cv;   /* tl_wal_wait and tl_wal_sync wait for progress */
    pthread_cond_t turn_cv;   /* a committer finished: another may take its turn */

    /* Under mu. */
    struct wal_buf bufs[2];
    struct wal_buf *active; /* the buffer appenders fill; the other is the commit thread's */
    uint64_t next_seq;
    uint64_t last_number; /* the newest segment number (opened or rolled to) */
    bool commit_idle;     /* the commit thread waits on commit_cv */
    bool commit_untimed;  /* ... with no deadline: an append must wake it to arm its timer */
    bool committing;      /* a thread (the commit thread or a waiter) is writing a buffer */
    int space_waiters;
    int done_waiters;
    uint64_t sync_target; /* tl_wal_sync wants synced_seq >= this */
    uint64_t synced_seq;  /* last record covered by a completed fdatasync */
    bool closing;
    bool close_tried; /* closing while broken: the last repair was tried */
    int broken;       /* 0, or the error of the failed write or sync, until a repair */
    char broken_msg[WAL_MSG_BYTES];
    struct wal_buf *pending;  /* the buffer whose write failed: finished before any other */
    struct timespec retry_at; /* the next repair, while broken */
    long retry_ms;            /* the delay before the next repair after this one fails */

    /* Written under mu by the commit thread; read without it. */
    _Atomic uint64_t written_seq;
    _Atomic uint64_t durable_seq;
    _Atomic uint64_t bytes_written;
    _Atomic uint64_t syncs;
    _Atomic uint64_t failures, repairs;
    /* Called after each publish (tl_wal_set_notify). */
    void (*_Atomic notify)(void *arg);
    void *_Atomic notify_arg;

    /* The commit thread's own (tl_wal_open sets them up before starting it). */
    int fd; /* -1 between a roll's closing of the old segment and creating the new one */
    uint64_t seg_off;
    uint64_t synced_off; /* the segment is durable up to here */
    uint8_t *unsynced;   /* a copy of the segment's bytes [synced_off, seg_off) */
    size_t unsynced_len, unsynced_cap;
    char seg_path[WAL_PATH_BYTES];
    struct timespec last_sync;
    pthread_t thread;
};

void tl_wal_path(char *buf, size_t cap, const char *dir, uint64_t number)
{
    snprintf(buf, cap, "%s/%06" PRIu64 ".wal", dir, number);
}

static int64_t elapsed_ms(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)(now.tv_sec - since->tv_sec) * 1000 + (now.tv_nsec - since->tv_nsec) / 1000000;
}

static void encode_header(uint8_t *h, uint64_t number)
{
    memcpy(h, TL_WAL_MAGIC, 8);
    tl_put_u32(h + 8, TL_WAL_VERSION);
    tl_put_u64(h + 12, number);
    tl_put_u32(h + 20, tl_crc32c_mask(tl_crc32c(h, 20)));
}

/* Creates segment `number` in dir, writes and syncs its header and syncs the directory. */
static int segment_create(const char *dir, uint64_t number, char *path, size_t cap, int *fd_out)
{
    tl_wal_path(path, cap, dir, number);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno == EEXIST) {
        struct stat st;
        fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size != 0) {
            close(fd);
            return tl_error(-EEXIST,
                            "%s: WAL segment already exists and holds %lld bytes; refusing to "
                            "overwrite it: replay it first or move it away",
                            path, (long long)st.st_size);
        }
    }
    if (fd < 0)
        return tl_error(-errno, "%s: cannot create WAL segment: %s", path, strerror(errno));

    uint8_t h[TL_WAL_HEADER_BYTES];
    encode_header(h, number);
    int rc = tl_io_pwrite(fd, h, sizeof h, 0, true);
    if (rc < 0) {
        rc = tl_error(rc, "%s: cannot write WAL segment header: %s; check the disk", path,
                      strerror(-rc));
        goto fail;
    }
    rc = tl_io_sync_dir(dir);
    if (rc < 0) {
        rc = tl_error(rc, "%s: cannot sync the directory after creating WAL segment: %s", path,
                      strerror(-rc));
        goto fail;
    }
    *fd_out = fd;
    return 0;

fail:
    close(fd);
    unlink(path);
    return rc;
}

/* ---- Commit thread ---- */

/* Stores the CRC of every record in [p, p + n): they were left zero by the appenders. */
static void fill_crcs(uint8_t *p, size_t n)
{
    size_t off = 0;
    while (off < n) {
        uint32_t len = tl_get_u32(p + off + 4);
        tl_put_u32(p + off, tl_crc32c_mask(tl_crc32c(p + off + 4, 4 + (size_t)len)));
        off += WAL_FRAME_BYTES + len;
    }
    /* Appenders wrote whole records: the walk ends exactly at the end. */
    assert(off == n);
}

/* Publishes progress, holding mu: every record up to written is in the kernel, and with synced
 * on disk too. */
static void publish_locked(struct tl_wal *w, uint64_t written, bool synced)
{
    atomic_store_explicit(&w->written_seq, written, memory_order_release);
    if (synced) {
        w->synced_seq = written;
        /* Under mu: the commit thread reads it to time the everysec sync, and a waiter in
         * its own turn may have been the one that synced. */
        clock_gettime(CLOCK_MONOTONIC, &w->last_sync);
    }
    uint64_t durable = w->mode == TL_FSYNC_NO ? written : w->synced_seq;
    atomic_store_explicit(&w->durable_seq, durable, memory_order_release);
    if (w->done_waiters)
        pthread_cond_broadcast(&w->done_cv);
    void (*notify)(void *) = atomic_load_explicit(&w->notify, memory_order_acquire);
    if (notify)
        notify(atomic_load_explicit(&w->notify_arg, memory_order_relaxed));
}

void tl_wal_set_notify(struct tl_wal *w, void (*fn)(void *arg), void *arg)
{
    atomic_store_explicit(&w->notify_arg, arg, memory_order_relaxed);
    atomic_store_explicit(&w->notify, fn, memory_order_release);
}

static void publish(struct tl_wal *w, uint64_t written, bool synced)
{
    pthread_mutex_lock(&w->mu);
    publish_locked(w, written, synced);
    pthread_mutex_unlock(&w->mu);
}

/* Room in the unsynced copy for n more bytes; false if memory runs out (the write then syncs). */
static bool unsynced_reserve(struct tl_wal *w, size_t n)
{
    return tl_grow((void **)&w->unsynced, &w->unsynced_cap, w->unsynced_len + n, 1,
                   WAL_BUFFER_INITIAL_BYTES) == 0;
}

/* The segment is durable up to seg_off: the copy is no longer needed. */
static void mark_synced(struct tl_wal *w)
{
    w->synced_off = w->seg_off;
    w->unsynced_len = 0;
    if (w->unsynced_cap > WAL_BUFFER_KEEP_BYTES) {
        free(w->unsynced);
        w->unsynced = NULL;
        w->unsynced_cap = 0;
    }
}

/* Writes [p, p + n) at the end of the current segment, then an fdatasync if sync. With
 * n == 0 and sync, syncs what earlier writes left unsynced. Bytes written without a sync are
 * kept in the unsynced copy, for a repair. On failure nothing moves: seg_off, synced_off and
 * the copy still describe the segment as it was before the call. The synced_seq read here is
 * only ever written by the committing thread. */
static int write_part(struct tl_wal *w, uint8_t *p, size_t n, bool sync)
{
    int rc;
    if (n == 0) {
        if (!sync || w->synced_seq == atomic_load(&w->written_seq))
            return 0;
        rc = tl_io_fdatasync(w->fd);
        if (rc < 0)
            return tl_error(rc,
                            "%s: fdatasync failed: %s; WAL writes are refused until a repair "
                            "(rewrite and sync from offset %" PRIu64 ") succeeds",
                            w->seg_path, strerror(-rc), w->synced_off);
    } else {
        fill_crcs(p, n);
        if (!sync && (w->unsynced_len + n > TL_WAL_UNSYNCED_MAX_BYTES || !unsynced_reserve(w, n)))
            sync = true; /* the copy is full: make it unnecessary */
        rc = tl_io_pwrite(w->fd, p, n, w->seg_off, sync);
        if (rc < 0)
            return tl_error(rc,
                            "%s: write%s of %zu bytes at offset %" PRIu64 " failed: %s; WAL "
                            "writes are refused until the segment can be written again (check "
                            "the disk: space, I/O errors)",
                            w->seg_path, sync ? " and fdatasync" : "", n, w->seg_off,
                            strerror(-rc));
        if (!sync) {
            memcpy(w->unsynced + w->unsynced_len, p, n);
            w->unsynced_len += n;
        }
        w->seg_off += n;
        atomic_fetch_add_explicit(&w->bytes_written, n, memory_order_relaxed);
    }
    if (sync) {
        mark_synced(w);
        atomic_fetch_add_explicit(&w->syncs, 1, memory_order_relaxed);
    }
    return 0;
}

/*
 * Repairs the current segment after a failed write or sync (see the top of the file): writes
 * the unsynced copy again at synced_off, cuts the file after it, and fsyncs. Between a roll's
 * closing of the old segment and the creation of the new one there is no segment to repair.
 */
static int wal_repair(struct tl_wal *w)
{
    if (w->fd < 0)
        return 0;
    int rc = 0;
    if (w->unsynced_len > 0)
        rc = tl_io_pwrite(w->fd, w->unsynced, w->unsynced_len, w->synced_off, false);
    if (rc < 0)
        return tl_error(rc,
                        "%s: repair: rewriting %zu unsynced bytes at offset %" PRIu64 " failed: %s",
                        w->seg_path, w->unsynced_len, w->synced_off, strerror(-rc));
    uint64_t end = w->synced_off + w->unsynced_len;
    if (ftruncate(w->fd, (off_t)end) < 0)
        return tl_error(-errno, "%s: repair: cannot cut the segment at offset %" PRIu64 ": %s",
                        w->seg_path, end, strerror(errno));
    rc = tl_io_fsync(w->fd);
    if (rc < 0)
        return tl_error(rc, "%s: repair: fsync after rewriting up to offset %" PRIu64 " failed: %s",
                        w->seg_path, end, strerror(-rc));
    w->seg_off = end;
    mark_synced(w);
    atomic_fetch_add_explicit(&w->syncs, 1, memory_order_relaxed);
    return 0;
}

/* Writes one buffer taken from the appenders, handling its roll marker, from b->done on (a
 * buffer whose write failed is resumed where it stopped). */
static int commit_buffer(struct tl_wal *w, struct wal_buf *b, bool force_sync, bool timer_sync)
{
    int rc;
    if (b->has_roll) {
        /* The old segment is finished and synced before the new one exists. */
        if (w->fd >= 0) {
            rc = write_part(w, b->data + b->done, b->roll_off - b->done, true);
            if (rc < 0)
                return rc;
            b->done = b->roll_off;
            publish(w, b->roll_seq, true);
            close(w->fd);
            w->fd = -1;
        }
        rc = segment_create(w->dir, b->roll_number, w->seg_path, sizeof w->seg_path, &w->fd);
        if (rc < 0)
            return rc;
        w->seg_off = TL_WAL_HEADER_BYTES;
        mark_synced(w);
        b->has_roll = false;
    }
    bool sync = force_sync || w->mode == TL_FSYNC_ALWAYS ||
                (timer_sync && w->mode == TL_FSYNC_EVERYSEC &&
                 elapsed_ms(&w->last_sync) >= TL_WAL_SYNC_INTERVAL_MS);
    size_t n = b->len - b->done;
    rc = write_part(w, b->data + b->done, n, sync);
    if (rc < 0)
        return rc;
    b->done = b->len;
    uint64_t written = n > 0 ? b->last_seq : atomic_load(&w->written_seq);
    publish(w, written, sync);
    return 0;
}

static struct timespec time_after(const struct timespec *from, long us)
{
    struct timespec t = *from;
    t.tv_sec += us / 1000000;
    t.tv_nsec += (us % 1000000) * 1000;
    if (t.tv_nsec >= 1000000000) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000;
    }
    return t;
}

static bool time_before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* Whether appended records should be written now rather than left for a waiter to write. */
static bool write_due(const struct tl_wal *w, const struct wal_buf *a)
{
    if (a->len == 0)
        return false;
    if (w->mode == TL_FSYNC_ALWAYS || w->closing || a->len >= TL_WAL_EAGER_BYTES)
        return true;
    return elapsed_ms(&a->first_append) * 1000 >= TL_WAL_WRITE_DELAY_US;
}

/* Waits, holding mu, until the commit thread has something to do. Returns false when it should
 * exit: closing with everything written and synced, or closing while broken after one last
 * repair was tried. */
static bool commit_wait_locked(struct tl_wal *w)
{
    for (;;) {
        struct wal_buf *a = w->active;
        bool unsynced = w->synced_seq < atomic_load(&w->written_seq);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (w->broken) {
            if (w->closing && w->close_tried)
                return false;
            if (w->closing || !time_before(&now, &w->retry_at)) {
                w->close_tried = w->closing;
                return true; /* a repair */
            }
        } else {
            if (write_due(w, a) || a->has_roll || w->sync_target > w->synced_seq)
                return true;
            if (w->closing)
                return unsynced; /* one more turn to sync, then exit */
            if (w->mode == TL_FSYNC_EVERYSEC && unsynced &&
                elapsed_ms(&w->last_sync) >= TL_WAL_SYNC_INTERVAL_MS)
                return true;
        }
        w->commit_idle = true;
        bool timed = false;
        struct timespec deadline = {0};
        if (w->broken) {
            deadline = w->retry_at;
            timed = true;
        }
        if (!w->broken && w->mode == TL_FSYNC_EVERYSEC && unsynced) {
            deadline = time_after(&w->last_sync, TL_WAL_SYNC_INTERVAL_MS * 1000L);
            timed = true;
        }
        if (!w->broken && a->len > 0) {
            struct timespec due = time_after(&a->first_append, TL_WAL_WRITE_DELAY_US);
            if (!timed || time_before(&due, &deadline))
                deadline = due;
            timed = true;
        }
        w->commit_untimed = !timed;
        if (timed)
            pthread_cond_timedwait(&w->commit_cv, &w->mu, &deadline);
        else
            pthread_cond_wait(&w->commit_cv, &w->mu);
        w->commit_idle = false;
        w->commit_untimed = false;
    }
}

/* Empties a buffer that was written in full, shrinking one that a huge record made grow. */
static void buffer_reset(struct wal_buf *b)
{
    b->len = 0;
    b->done = 0;
    b->last_seq = 0;
    b->has_roll = false;
    if (b->cap > WAL_BUFFER_KEEP_BYTES) {
        uint8_t *small = realloc(b->data, WAL_BUFFER_INITIAL_BYTES);
        if (small) {
            b->data = small;
            b->cap = WAL_BUFFER_INITIAL_BYTES;
        }
    }
}

/* Holding mu: a write or sync failed with rc. Keeps b to be finished after a repair, and
 * schedules the repair. */
static void break_locked(struct tl_wal *w, struct wal_buf *b, int rc)
{
    w->pending = b;
    if (!w->broken) {
        w->retry_ms = TL_WAL_RETRY_MIN_MS;
        atomic_fetch_add_explicit(&w->failures, 1, memory_order_relaxed);
        fprintf(stderr, "tally: WAL write failed, writes are refused until it is repaired: %s\n",
                tl_last_error());
    } else if (w->retry_ms < TL_WAL_RETRY_MAX_MS) {
        w->retry_ms = w->retry_ms * 2 < TL_WAL_RETRY_MAX_MS ? w->retry_ms * 2 : TL_WAL_RETRY_MAX_MS;
    }
    w->broken = rc;
    snprintf(w->broken_msg, sizeof w->broken_msg, "%s", tl_last_error());
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    w->retry_at = time_after(&now, w->retry_ms * 1000L);
    pthread_cond_broadcast(&w->space_cv);
    pthread_cond_broadcast(&w->done_cv);
}

/*
 * One committer's turn, holding mu on entry and on return: takes the appenders' buffer and
 * writes it (and syncs, as force_sync, the mode and, with timer_sync, the everysec timer say).
 * Only one thread commits at a time (committing), so the other buffer is always free to swap.
 * While broken, the turn is a repair: the segment first, then the pending buffer; the active
 * buffer waits for the next turn.
 */
static void commit_turn_locked(struct tl_wal *w, bool force_sync, bool timer_sync)
{
    w->committing = true;
    bool repair = w->broken != 0;
    struct wal_buf *b = w->pending;
    if (!b) {
        b = w->active;
        w->active = b == &w->bufs[0] ? &w->bufs[1] : &w->bufs[0];
        if (w->space_waiters)
            pthread_cond_broadcast(&w->space_cv);
    }
    pthread_mutex_unlock(&w->mu);

    int rc = repair ? wal_repair(w) : 0;
    if (rc == 0 && repair)
        publish(w, atomic_load(&w->written_seq), true);
    if (rc == 0)
        rc = commit_buffer(w, b, force_sync || repair, timer_sync);
    if (rc == 0)
        buffer_reset(b);

    pthread_mutex_lock(&w->mu);
    if (rc < 0) {
        break_locked(w, b, rc);
    } else {
        w->pending = NULL;
        if (repair) {
            w->broken = 0;
            atomic_fetch_add_explicit(&w->repairs, 1, memory_order_relaxed);
            fprintf(stderr, "tally: WAL repaired (%s): writes are accepted again\n", w->seg_path);
            pthread_cond_broadcast(&w->space_cv);
        }
    }
    w->committing = false;
    pthread_cond_broadcast(&w->turn_cv);
    /* After a waiter's turn, a commit thread asleep without a deadline looks again: it owns
     * the everysec timer for what the waiter wrote without syncing. */
    if (w->commit_idle && w->commit_untimed) {
        w->commit_idle = false;
        pthread_cond_signal(&w->commit_cv);
    }
}

static void *commit_main(void *arg)
{
    struct tl_wal *w = arg;
    pthread_mutex_lock(&w->mu);
    while (commit_wait_locked(w)) {
        if (w->committing) {
            /* A waiter is writing in its own thread; look again when it is done. */
            pthread_cond_wait(&w->turn_cv, &w->mu);
            continue;
        }
        commit_turn_locked(w, w->closing || w->sync_target > w->synced_seq, true);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* ---- Public interface ---- */

/* The error an operation returns while the WAL is broken or closing; holding mu. */
static int stopped_error_locked(struct tl_wal *w)
{
    if (w->broken)
        return tl_error(w->broken,
                        "the WAL cannot be written (%s); writes are refused until a repair "
                        "succeeds (tried every %d to %d ms)",
                        w->broken_msg, TL_WAL_RETRY_MIN_MS, TL_WAL_RETRY_MAX_MS);
    return tl_error(TL_ECLOSED, "WAL in %s is closing: no more records are accepted", w->dir);
}

int tl_wal_open(const char *dir, uint64_t number, uint64_t next_seq, enum tl_fsync_mode mode,
                struct tl_wal **out)
{
    int rc;
    *out = NULL;
    if (next_seq == 0)
        return tl_error(-EINVAL, "tl_wal_open: sequence numbers start at 1, not 0");
    struct tl_wal *w = calloc(1, sizeof *w);
    if (!w)
        return tl_error(-ENOMEM, "out of memory opening the WAL in %s", dir);
    w->fd = -1;
    w->mode = mode;
    w->next_seq = next_seq;
    w->last_number = number;
    w->synced_seq = next_seq - 1;
    atomic_init(&w->written_seq, next_seq - 1);
    atomic_init(&w->durable_seq, next_seq - 1);
    atomic_init(&w->bytes_written, 0);
    atomic_init(&w->syncs, 0);
    atomic_init(&w->failures, 0);
    atomic_init(&w->repairs, 0);
    w->active = &w->bufs[0];
    w->dir = strdup(dir);
    if (!w->dir)
        goto nomem;
    for (int i = 0; i < 2; i++) {
        w->bufs[i].data = malloc(WAL_BUFFER_INITIAL_BYTES);
        if (!w->bufs[i].data)
            goto nomem;
        w->bufs[i].cap = WAL_BUFFER_INITIAL_BYTES;
    }

    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->commit_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&w->space_cv, NULL);
    pthread_cond_init(&w->done_cv, NULL);
    pthread_cond_init(&w->turn_cv, NULL);
    pthread_mutex_init(&w->mu, NULL);

    rc = segment_create(dir, number, w->seg_path, sizeof w->seg_path, &w->fd);
    if (rc < 0)
        goto fail_sync;
    w->seg_off = w->synced_off = TL_WAL_HEADER_BYTES;
    clock_gettime(CLOCK_MONOTONIC, &w->last_sync);

    rc = pthread_create(&w->thread, NULL, commit_main, w);
    if (rc != 0) {
        rc = tl_error(-rc, "cannot start the WAL commit thread: %s", strerror(rc));
        close(w->fd);
        unlink(w->seg_path);
        goto fail_sync;
    }
    *out = w;
    return 0;

nomem:
    rc = tl_error(-ENOMEM, "out of memory opening the WAL in %s", dir);
    goto fail;
fail_sync:
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->commit_cv);
    pthread_cond_destroy(&w->space_cv);
    pthread_cond_destroy(&w->done_cv);
    pthread_cond_destroy(&w->turn_cv);
fail:
    free(w->bufs[0].data);
    free(w->bufs[1].data);
    free(w->unsynced);
    free(w->dir);
    free(w);
    return rc;
}

int tl_wal_append(struct tl_wal *w, const void *key, size_t klen, const struct tl_record *r,
                  uint64_t *seq)
{
    if (klen > TL_MAX_KEY_BYTES)
        return tl_error(TL_ETOOBIG, "key of %zu bytes is over the limit of %d bytes", klen,
                        TL_MAX_KEY_BYTES);
    size_t vlen = tl_record_encoded_len(r);
    if (vlen > WAL_MAX_VALUE_BYTES)
        return tl_error(TL_ETOOBIG,
                        "value of %zu bytes is over the WAL's limit of %u bytes a record", vlen,
                        (unsigned)WAL_MAX_VALUE_BYTES);
    size_t body = 8 + tl_varint_len(klen) + klen + vlen;
    size_t total = WAL_FRAME_BYTES + body;

    pthread_mutex_lock(&w->mu);
    while (!w->broken && !w->closing && w->active->len >= TL_WAL_BUFFER_BYTES) {
        w->space_waiters++;
        pthread_cond_wait(&w->space_cv, &w->mu);
        w->space_waiters--;
    }
    if (w->broken || w->closing) {
        int rc = stopped_error_locked(w);
        pthread_mutex_unlock(&w->mu);
        return rc;
    }
    struct wal_buf *b = w->active;
    if (b->cap - b->len < total) {
        /* Bounded: len < TL_WAL_BUFFER_BYTES here and total <= one maximal record. */
        size_t cap = b->cap * 2 > b->len + total ? b->cap * 2 : b->len + total;
        uint8_t *data = realloc(b->data, cap);
        if (!data) {
            pthread_mutex_unlock(&w->mu);
            return tl_error(-ENOMEM, "out of memory growing the WAL buffer to %zu bytes", cap);
        }
        b->data = data;
        b->cap = cap;
    }
    uint64_t s = w->next_seq++;
    uint8_t *p = b->data + b->len;
    tl_put_u32(p, 0); /* the commit thread fills in the CRC */
    tl_put_u32(p + 4, (uint32_t)body);
    tl_put_u64(p + 8, s);
    p += TL_WAL_RECORD_HEADER;
    p += tl_put_varint(p, klen);
    if (klen)
        memcpy(p, key, klen);
    p += klen;
    p += tl_record_encode(r, p);
    if (b->len == 0)
        clock_gettime(CLOCK_MONOTONIC, &b->first_append);
    b->len += total;
    b->last_seq = s;
    /* Outside ALWAYS nobody waits for the commit thread to write soon: a waiter writes for
     * itself, so the thread is woken only for a large buffer (else its timer comes round). */
    if (w->commit_idle &&
        (w->commit_untimed || w->mode == TL_FSYNC_ALWAYS || b->len >= TL_WAL_EAGER_BYTES)) {
        w->commit_idle = false;
        pthread_cond_signal(&w->commit_cv);
    }
    pthread_mutex_unlock(&w->mu);
    if (seq)
        *seq = s;
    return 0;
}

int tl_wal_roll(struct tl_wal *w, uint64_t number)
{
    int rc = 0;
    pthread_mutex_lock(&w->mu);
    if (number <= w->last_number) {
        rc = tl_error(-EINVAL, "tl_wal_roll: segment %" PRIu64 " is not after segment %" PRIu64,
                      number, w->last_number);
        goto out;
    }
    while (!w->broken && !w->closing && w->active->has_roll) {
        w->space_waiters++;
        pthread_cond_wait(&w->space_cv, &w->mu);
        w->space_waiters--;
    }
    if (w->broken || w->closing) {
        rc = stopped_error_locked(w);
        goto out;
    }
    struct wal_buf *b = w->active;
    b->has_roll = true;
    b->roll_number = number;
    b->roll_off = b->len;
    b->roll_seq = w->next_seq - 1;
    w->last_number = number;
    if (w->commit_idle) {
        w->commit_idle = false;
        pthread_cond_signal(&w->commit_cv);
    }
out:
    pthread_mutex_unlock(&w->mu);
    return rc;
}

int tl_wal_wait(struct tl_wal *w, uint64_t seq, enum tl_wait what)
{
    _Atomic uint64_t *progress;
    if (what == TL_WAIT_WRITTEN)
        progress = &w->written_seq;
    else if (what == TL_WAIT_DURABLE)
        progress = &w->durable_seq;
    else
        return tl_error(-EINVAL, "tl_wal_wait: unknown wait kind %d", (int)what);
    if (atomic_load_explicit(progress, memory_order_acquire) >= seq)
        return 0;

    int rc = 0;
    pthread_mutex_lock(&w->mu);
    if (seq >= w->next_seq) {
        rc = tl_error(-EINVAL,
                      "tl_wal_wait: sequence number %" PRIu64 " has not been assigned yet (the "
                      "next is %" PRIu64 ")",
                      seq, w->next_seq);
        goto out;
    }
    /* Written, or durable under ALWAYS: rather than hand over to the commit thread and wait
     * for it to come back (two thread switches), the waiter commits what is buffered itself,
     * for every appender so far; a waiter that finds another committing waits for its turn.
     * Durable under EVERYSEC waits for the commit thread's timer. */
    bool write_through = what == TL_WAIT_WRITTEN || w->mode == TL_FSYNC_ALWAYS;
    while (!w->broken && atomic_load(progress) < seq) {
        if (write_through && !w->committing) {
            commit_turn_locked(w, what == TL_WAIT_DURABLE, false);
            continue;
        }
        if (write_through) {
            pthread_cond_wait(&w->turn_cv, &w->mu);
            continue;
        }
        w->done_waiters++;
        pthread_cond_wait(&w->done_cv, &w->mu);
        w->done_waiters--;
    }
    if (atomic_load(progress) < seq)
        rc = stopped_error_locked(w);
out:
    pthread_mutex_unlock(&w->mu);
    return rc;
}

uint64_t tl_wal_written_seq(struct tl_wal *w)
{
    return atomic_load_explicit(&w->written_seq, memory_order_acquire);
}

uint64_t tl_wal_durable_seq(struct tl_wal *w)
{
    return atomic_load_explicit(&w->durable_seq, memory_order_acquire);
}

uint64_t tl_wal_next_seq(struct tl_wal *w)
{
    pthread_mutex_lock(&w->mu);
    uint64_t s = w->next_seq;
    pthread_mutex_unlock(&w->mu);
    return s;
}

int tl_wal_sync(struct tl_wal *w)
{
    int rc = 0;
    pthread_mutex_lock(&w->mu);
    uint64_t target = w->next_seq - 1;
    if (w->broken) {
        rc = stopped_error_locked(w);
        goto out;
    }
    if (w->synced_seq >= target)
        goto out;
    if (target > w->sync_target)
        w->sync_target = target;
    if (w->commit_idle) {
        w->commit_idle = false;
        pthread_cond_signal(&w->commit_cv);
    }
    while (!w->broken && w->synced_seq < target) {
        w->done_waiters++;
        pthread_cond_wait(&w->done_cv, &w->mu);
        w->done_waiters--;
    }
    if (w->synced_seq < target)
        rc = stopped_error_locked(w);
out:
    pthread_mutex_unlock(&w->mu);
    return rc;
}

void tl_wal_stats(struct tl_wal *w, uint64_t *bytes_written, uint64_t *syncs)
{
    if (bytes_written)
        *bytes_written = atomic_load_explicit(&w->bytes_written, memory_order_relaxed);
    if (syncs)
        *syncs = atomic_load_explicit(&w->syncs, memory_order_relaxed);
}

void tl_wal_fault_stats(struct tl_wal *w, uint64_t *failures, uint64_t *repairs, bool *broken)
{
    *failures = atomic_load_explicit(&w->failures, memory_order_relaxed);
    *repairs = atomic_load_explicit(&w->repairs, memory_order_relaxed);
    pthread_mutex_lock(&w->mu);
    *broken = w->broken != 0;
    pthread_mutex_unlock(&w->mu);
}

int tl_wal_close(struct tl_wal *w)
{
    pthread_mutex_lock(&w->mu);
    w->closing = true;
    pthread_cond_signal(&w->commit_cv);
    pthread_cond_broadcast(&w->space_cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);

    int rc = 0;
    if (w->broken)
        rc = tl_error(w->broken,
                      "%s: the WAL could not be repaired before closing (%s): records after "
                      "sequence number %" PRIu64 " were not written",
                      w->dir, w->broken_msg, atomic_load(&w->written_seq));
    if (w->fd >= 0)
        close(w->fd);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->commit_cv);
    pthread_cond_destroy(&w->space_cv);
    pthread_cond_destroy(&w->done_cv);
    pthread_cond_destroy(&w->turn_cv);
    free(w->bufs[0].data);
    free(w->bufs[1].data);
    free(w->unsynced);
    free(w->dir);
    free(w);
    return rc;
}

/* ---- Replay ---- */

/* A window of the file being replayed: buf holds the bytes [base, base + len). */
struct reader {
    int fd;
    const char *path;
    uint64_t size;
    uint8_t *buf;
    size_t cap;
    uint64_t base;
    size_t len;
};

/* Points *out at the n bytes at off (n <= the largest record), reading them if needed. Returns
 * 1 if they run past the end of the file, 0 on success, or a read error. The pointer stays
 * valid until the next call. */
static int reader_get(struct reader *rd, uint64_t off, size_t n, const uint8_t **out)
{
    if (off > rd->size || n > rd->size - off)
        return 1;
    if (off >= rd->base && off + n <= rd->base + rd->len) {
        *out = rd->buf + (off - rd->base);
        return 0;
    }
    size_t want = n > WAL_REPLAY_CHUNK_BYTES ? n : WAL_REPLAY_CHUNK_BYTES;
    if (want > rd->size - off)
        want = (size_t)(rd->size - off);
    if (want > rd->cap) {
        uint8_t *b = realloc(rd->buf, want);
        if (!b)
            return tl_error(-ENOMEM, "%s: out of memory reading %zu bytes at offset %" PRIu64,
                            rd->path, want, off);
        rd->buf = b;
        rd->cap = want;
    }
    rd->len = 0;
    int64_t got = tl_io_pread(rd->fd, rd->buf, want, off);
    if (got < 0)
        return tl_error((int)got, "%s: read at offset %" PRIu64 " failed: %s", rd->path, off,
                        strerror((int)-got));
    if ((uint64_t)got < n)
        return tl_error(-EIO, "%s: file shrank during replay (short read at offset %" PRIu64 ")",
                        rd->path, off);
    rd->base = off;
    rd->len = (size_t)got;
    *out = rd->buf;
    return 0;
}

enum rec_state {
    REC_OK,
    REC_PAST_EOF, /* the header or body runs past the end of the file */
    REC_ZERO,     /* a header of zeros: a zero-filled tail */
    REC_BAD,      /* bad length or checksum */
};

/* Examines the record at off. On REC_OK, *rec points at it (frame included) and *body_len is
 * its length field; on REC_BAD, *body_len is the length field as read. Returns the state, or a
 * negative read error. */
static int record_at(struct reader *rd, uint64_t off, const uint8_t **rec, uint32_t *body_len)
{
    const uint8_t *p;
    int rc = reader_get(rd, off, TL_WAL_RECORD_HEADER, &p);
    if (rc)
        return rc < 0 ? rc : REC_PAST_EOF;
    uint32_t crc = tl_get_u32(p);
    uint32_t len = tl_get_u32(p + 4);
    *body_len = len;
    if (crc == 0 && len == 0)
        return REC_ZERO;
    if (len < WAL_MIN_BODY_BYTES || len > WAL_MAX_BODY_BYTES)
        return REC_BAD;
    rc = reader_get(rd, off, WAL_FRAME_BYTES + (size_t)len, &p);
    if (rc)
        return rc < 0 ? rc : REC_PAST_EOF;
    if (tl_crc32c_unmask(crc) != tl_crc32c(p + 4, 4 + (size_t)len))
        return REC_BAD;
    *rec = p;
    return REC_OK;
}

/* The segment number in a path ending in "NNNNNN.wal", or false if it has no such name. */
static bool number_from_path(const char *path, uint64_t *number)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (n < 5 || strcmp(base + n - 4, ".wal") != 0)
        return false;
    uint64_t v = 0;
    for (const char *c = base; c < base + n - 4; c++) {
        if (*c < '0' || *c > '9' || v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(*c - '0');
    }
    *number = v;
    return true;
}

/* Cuts the last segment's torn tail at off and syncs the cut, so that once a newer segment
 * exists this one never looks torn. */
static int cut_tail(struct reader *rd, uint64_t off)
{
    if (ftruncate(rd->fd, (off_t)off) < 0)
        return tl_error(-errno, "%s: cannot cut the torn tail at offset %" PRIu64 ": %s", rd->path,
                        off, strerror(errno));
    int rc = tl_io_fdatasync(rd->fd);
    if (rc < 0)
        return tl_error(rc, "%s: cannot sync after cutting the torn tail at offset %" PRIu64 ": %s",
                        rd->path, off, strerror(-rc));
    return 0;
}

static int check_header(struct reader *rd, bool is_last)
{
    if (rd->size < TL_WAL_HEADER_BYTES) {
        /* Nothing was ever written after a torn header: an empty last segment. */
        if (is_last)
            return cut_tail(rd, 0);
        return tl_error(TL_ECORRUPT,
                        "%s: WAL segment of %" PRIu64 " bytes is shorter than its header but is "
                        "not the last segment: it is damaged; restore from a backup",
                        rd->path, rd->size);
    }
    const uint8_t *h;
    int rc = reader_get(rd, 0, TL_WAL_HEADER_BYTES, &h);
    if (rc)
        return rc < 0 ? rc : TL_ECORRUPT;
    if (memcmp(h, TL_WAL_MAGIC, 8) != 0 || tl_crc32c_unmask(tl_get_u32(h + 20)) != tl_crc32c(h, 20))
        return tl_error(TL_ECORRUPT,
                        "%s: bad WAL segment header at offset 0 (magic or checksum): the file is "
                        "not a Tally WAL segment or is damaged; restore from a backup",
                        rd->path);
    uint32_t version = tl_get_u32(h + 8);
    if (version != TL_WAL_VERSION)
        return tl_error(TL_ECORRUPT,
                        "%s: WAL format version %u at offset 8 is not supported (this build "
                        "reads version %d): use a matching version of Tally",
                        rd->path, version, TL_WAL_VERSION);
    uint64_t number = tl_get_u64(h + 12), named = 0;
    if (number_from_path(rd->path, &named) && named != number)
        return tl_error(TL_ECORRUPT,
                        "%s: header at offset 12 says segment %" PRIu64 " but the file name says "
                        "%" PRIu64 ": the file was renamed or damaged; restore it",
                        rd->path, number, named);
    return 0;
}

/* Decodes a record body (the part after the frame) and hands it to fn. */
static int replay_record(struct reader *rd, uint64_t off, const uint8_t *body, uint32_t len,
                         uint64_t *expect_seq, tl_wal_replay_fn fn, void *arg)
{
    const uint8_t *end = body + len;
    uint64_t seq = tl_get_u64(body);
    const uint8_t *p = body + 8;
    uint64_t klen;
    size_t n = tl_get_varint(p, end, &klen);
    if (!n || klen > TL_MAX_KEY_BYTES || klen > (uint64_t)(end - p - n))
        return tl_error(TL_ECORRUPT,
                        "%s: record at offset %" PRIu64 " has a valid checksum but a bad key "
                        "length: the segment was written by a faulty build or damaged; restore "
                        "from a backup",
                        rd->path, off);
    p += n;
    struct tl_record r;
    if (tl_record_decode(p + klen, (size_t)(end - p - klen), &r) != 0)
        return tl_error(TL_ECORRUPT,
                        "%s: record at offset %" PRIu64 " has a valid checksum but a bad value "
                        "encoding: the segment was written by a faulty build or damaged; "
                        "restore from a backup",
                        rd->path, off);
    if (*expect_seq && seq != *expect_seq)
        return tl_error(TL_ECORRUPT,
                        "%s: record at offset %" PRIu64 " has sequence number %" PRIu64
                        " where %" PRIu64 " was expected: the segment is damaged; restore from a "
                        "backup",
                        rd->path, off, seq, *expect_seq);
    /* expect_seq 0 means "none yet": a sequence number that would wrap to it is damage. */
    if (seq == UINT64_MAX)
        return tl_error(TL_ECORRUPT,
                        "%s: record at offset %" PRIu64 " has sequence number %" PRIu64
                        ", past the last one an engine hands out: the segment is damaged; "
                        "restore from a backup",
                        rd->path, off, seq);
    *expect_seq = seq + 1;
    return fn(arg, seq, p, (size_t)klen, &r);
}

/*
 * Looks for a valid record anywhere after a bad one, so that damage in the middle of a segment
 * (a flipped length byte, say, that makes a record seem to run past the end) is not taken for a
 * torn tail. Candidates are filtered by their sequence number (it must follow the last good
 * one closely) before their checksum is computed. Returns 1 and *found, 0, or an error.
 */
#define WAL_RESYNC_SEQ_WINDOW 4096
static int valid_record_after(struct reader *rd, uint64_t from, uint64_t expect_seq,
                              uint64_t *found)
{
    for (uint64_t o = from; o + TL_WAL_RECORD_HEADER <= rd->size; o++) {
        const uint8_t *p;
        int rc = reader_get(rd, o, TL_WAL_RECORD_HEADER, &p);
        if (rc)
            return rc < 0 ? rc : 0;
        uint64_t seq = tl_get_u64(p + 8);
        if (expect_seq && (seq < expect_seq || seq - expect_seq > WAL_RESYNC_SEQ_WINDOW))
            continue;
        if (tl_get_u32(p + 4) < WAL_MIN_BODY_BYTES)
            continue;
        const uint8_t *rec;
        uint32_t len;
        int state = record_at(rd, o, &rec, &len);
        if (state < 0)
            return state;
        if (state == REC_OK) {
            *found = o;
            return 1;
        }
    }
    return 0;
}

int tl_wal_replay(const char *path, bool is_last, tl_wal_replay_fn fn, void *arg,
                  uint64_t *last_seq)
{
    struct reader rd = {.fd = -1, .path = path};
    int rc;
    rd.fd = open(path, (is_last ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (rd.fd < 0)
        return tl_error(-errno, "%s: cannot open WAL segment: %s", path, strerror(errno));
    struct stat st;
    if (fstat(rd.fd, &st) < 0) {
        rc = tl_error(-errno, "%s: cannot stat WAL segment: %s", path, strerror(errno));
        goto out;
    }
    rd.size = (uint64_t)st.st_size;
    if (rd.size == 0) {
        rc = 0; /* created, header never written: no records */
        goto out;
    }
    rc = check_header(&rd, is_last);
    if (rc < 0 || rd.size < TL_WAL_HEADER_BYTES)
        goto out;

    uint64_t off = TL_WAL_HEADER_BYTES;
    uint64_t expect_seq = 0;
    while (off < rd.size) {
        const uint8_t *rec;
        uint32_t len;
        int state = record_at(&rd, off, &rec, &len);
        if (state < 0) {
            rc = state;
            goto out;
        }
        if (state == REC_OK) {
            rc = replay_record(&rd, off, rec + WAL_FRAME_BYTES, len, &expect_seq, fn, arg);
            if (rc != 0)
                goto out;
            *last_seq = expect_seq - 1;
            off += WAL_FRAME_BYTES + len;
            continue;
        }
        /* A bad record: corruption if a valid record starts where its length points. */
        if (state == REC_ZERO || state == REC_BAD) {
            uint64_t next =
                off + (state == REC_ZERO ? TL_WAL_RECORD_HEADER : WAL_FRAME_BYTES + (uint64_t)len);
            const uint8_t *unused;
            uint32_t next_len;
            int next_state = record_at(&rd, next, &unused, &next_len);
            if (next_state < 0) {
                rc = next_state;
                goto out;
            }
            if (next_state == REC_OK) {
                rc = tl_error(TL_ECORRUPT,
                              "%s: bad record checksum at offset %" PRIu64 " with a valid "
                              "record after it at offset %" PRIu64 ": the segment is damaged, "
                              "not torn; restore from a backup (records before offset %" PRIu64
                              " are intact)",
                              path, off, next, off);
                goto out;
            }
        }
        /* Not torn either if a valid record starts anywhere further on. */
        uint64_t later = 0;
        int found = valid_record_after(&rd, off + 1, expect_seq, &later);
        if (found < 0) {
            rc = found;
            goto out;
        }
        if (found) {
            rc = tl_error(TL_ECORRUPT,
                          "%s: bad record at offset %" PRIu64 " with a valid record after it "
                          "at offset %" PRIu64 ": the segment is damaged, not torn; restore "
                          "from a backup (records before offset %" PRIu64 " are intact)",
                          path, off, later, off);
            goto out;
        }
        /* A torn tail. */
        if (!is_last) {
            rc = tl_error(TL_ECORRUPT,
                          "%s: torn record at offset %" PRIu64 " in a WAL segment that is not "
                          "the last one (it was synced whole before the next was created): the "
                          "segment is damaged; restore from a backup",
                          path, off);
            goto out;
        }
        rc = cut_tail(&rd, off);
        goto out;
    }
    /* The last segment stops being the last (a new one follows it) while records of it may be
     * in the page cache alone, written by a process that died: they are made durable first, as
     * a roll syncs the segment it leaves. */
    rc = 0;
    if (is_last && (rc = tl_io_fdatasync(rd.fd)) < 0)
        rc = tl_error(rc, "%s: cannot sync the WAL segment after replaying it: %s", path,
                      strerror(-rc));

out:
    free(rd.buf);
    close(rd.fd);
    return rc;
}
