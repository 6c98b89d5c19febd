/*
 * db_impl.h - the engine's private state, shared by db.c (open, recovery, reads and writes,
 * flush), version.c (versions and tables), compaction.c and iterator.c.
 *
 * A version is an immutable picture of the layers: the active memtable, the frozen memtables
 * waiting for flush (newest first) and the SSTables of each level. Readers take a reference to
 * the current version under db->mutex and read without the lock; every change (a memtable
 * switch, a flush, a compaction) builds a new version and swaps it in under the mutex. A table
 * or memtable stays alive while any version refers to it.
 *
 * Writers do not take db->mutex: they enter the active memtable by raising its writer count
 * (tl_db_writer_enter), and a switch waits for that count to drain after marking the memtable
 * frozen. Memtables are recycled through a pool and never freed while the database is open, so
 * a writer holding a stale pointer still points at a memtable (it sees frozen, or that it is no
 * longer active, and retries).
 */
#ifndef TL_DB_IMPL_H
#define TL_DB_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "block_cache.h"
#include "manifest.h"
#include "memtable.h"
#include "record.h"
#include "sst.h"
#include "tallystore.h"
#include "wal.h"

/* Striped locks serializing the writers of one key: a power of two. */
#define TL_WRITE_STRIPES 4096
/* Memtables in the pool: the active one, the frozen ones, and one being recycled. */
#define TL_MAX_IMMUTABLE 8
#define TL_MEMTABLE_POOL (TL_MAX_IMMUTABLE + 2)
/* How long a write waits at the L0 slowdown trigger. */
#define TL_SLOWDOWN_US 1000
/* The compaction thread looks for expired files at least this often. */
#define TL_COMPACTION_TICK_MS 1000
/* A failed flush or compaction is tried again after this long, the delay doubling up to the
 * second bound while it keeps failing (a full or failing disk). */
#define TL_BG_RETRY_MIN_MS 20
#define TL_BG_RETRY_MAX_MS 1000
#define TL_BG_MSG_BYTES    512

/* An open SSTable in a level. refs and obsolete are guarded by db->mutex. */
struct tl_table {
    struct tl_file_meta meta;
    struct tl_sst *sst;
    int refs;
    bool obsolete; /* removed from the live set: the file is deleted at the last unref */
};

struct tl_version {
    int refs; /* guarded by db->mutex */
    struct tl_memtable *active;
    struct tl_memtable *imm[TL_MAX_IMMUTABLE]; /* newest first */
    int n_imm;
    /* L0: newest first (descending file number). L1 and below: sorted by smallest key,
     * not overlapping. */
    struct tl_table **levels[TL_MAX_LEVELS];
    size_t n_files[TL_MAX_LEVELS];
};

struct tl_db {
    char *dir;
    struct tl_options opt;
    int lock_fd;

    pthread_mutex_t mutex;
    pthread_cond_t bg_cond;   /* wakes the flush and compaction threads */
    pthread_cond_t done_cond; /* signalled when a flush or compaction finishes */

    _Atomic(struct tl_memtable *) active;
    struct tl_version *current;
    struct tl_memtable *pool[TL_MEMTABLE_POOL];
    int n_pool;
    bool switching; /* a memtable switch is in progress */

    struct tl_wal *wal;
    struct tl_manifest *manifest;
    struct tl_block_cache *cache;
    uint64_t next_file;  /* guarded by mutex */
    uint64_t log_number; /* oldest WAL segment still needed */

    pthread_mutex_t stripes[TL_WRITE_STRIPES];

    pthread_t flush_thread, compaction_thread;
    bool threads_started;
    _Atomic bool stopping;
    /* The first error that left memory and the manifest disagreeing (a table logged but not
     * installed): writes fail with it until a restart. I/O errors do not set it. */
    _Atomic int bg_error;
    /* The last flush or compaction failure, 0 once one succeeds (guarded by mutex): retried
     * after a delay; writes that must wait for a flush (too many frozen memtables) or a
     * compaction (the L0 stop trigger) fail with it rather than wait. */
    struct tl_bg_failure {
        int error;
        char msg[TL_BG_MSG_BYTES];
        uint64_t count; /* failures so far */
        long delay_ms;  /* before the next try */
        struct timespec retry_at;
    } flush_failure, compaction_failure;
    /* Tables written whose manifest edit failed: the edit may be on disk in the old manifest,
     * so they are kept until a later edit is logged (which rewrites the manifest without it). */
    uint64_t *orphans;
    size_t n_orphans, cap_orphans;
    _Atomic size_t l0_files; /* files in L0 of the current version, for a lock-free peek */
    bool flushing;
    bool compacting;
    bool dropping; /* tl_db_drop_all in progress: no flush or compaction starts */
    /* A manual compaction request: compaction.c runs it and sets manual_done. */
    bool manual_pending, manual_running;
    int manual_result;
    uint8_t *manual_begin, *manual_end;
    size_t manual_blen, manual_elen;
    bool manual_has_begin, manual_has_end;
    uint64_t manual_generation, manual_finished;
    int manual_level;               /* -1: every level */
    tl_progress_fn manual_progress; /* may be NULL */
    void *manual_progress_arg;
    int manual_callers; /* threads inside a manual compaction call */

    int pinned; /* tl_db_live_files in force: no file is deleted */
    char **pending_deletes;
    size_t n_pending_deletes, cap_pending_deletes;
    uint64_t level_pointer_len[TL_MAX_LEVELS];
    uint8_t *level_pointer[TL_MAX_LEVELS]; /* round-robin compaction position per level */

    /* Statistics. */
    _Atomic uint64_t flushes, flush_bytes;
    _Atomic uint64_t compactions, compaction_read, compaction_written, entries_dropped;
    _Atomic uint64_t stall_slowdowns, stall_stops;
};

int64_t tl_db_now_ms(const struct tl_db *db);

/* version.c */
struct tl_version *tl_version_new(void);
/* A copy of v's contents with fresh references (the caller then edits it). */
struct tl_version *tl_version_clone(const struct tl_version *v);
/* Installs v as current (db->mutex held): the old current loses the db's reference. */
void tl_version_install(struct tl_db *db, struct tl_version *v);
/* Takes a reference to the current version (locks db->mutex). */
struct tl_version *tl_version_acquire(struct tl_db *db);
void tl_version_release(struct tl_db *db, struct tl_version *v);
/* With db->mutex held. */
void tl_version_unref_locked(struct tl_db *db, struct tl_version *v);
/* Applies a manifest edit's file changes to v (tables opened for added files). */
int tl_version_apply(struct tl_db *db, struct tl_version *v, const struct tl_version_edit *e);
/* Opens an SSTable of the live set. */
int tl_table_open(struct tl_db *db, const struct tl_file_meta *meta, struct tl_table **out);
void tl_table_unref_locked(struct tl_db *db, struct tl_table *t);
/* Index of the file of level (>= 1) that may hold key, or -1. */
ssize_t tl_level_find(const struct tl_version *v, int level, const void *key, size_t klen);
uint64_t tl_level_bytes(const struct tl_version *v, int level);
void tl_sst_file_path(char *buf, size_t cap, const char *dir, uint64_t number);
/* Deletes a file now, or later if files are pinned by a checkpoint (db->mutex held). */
void tl_db_delete_file_locked(struct tl_db *db, const char *path);
/* Logs e to the manifest (db->mutex held). On failure the tables e adds are kept as orphans;
 * on success the orphans of earlier failures are deleted. */
int tl_db_log_edit_locked(struct tl_db *db, const struct tl_version_edit *e);
/* A flush or compaction failed with rc (db->mutex held): keeps the message, schedules the
 * retry, and wakes writers waiting on it. Success clears it. */
void tl_bg_failed_locked(struct tl_db *db, struct tl_bg_failure *f, const char *what, int rc);
void tl_bg_succeeded_locked(struct tl_bg_failure *f);
/* Whether the retry of a failed flush or compaction is due (db->mutex held). */
bool tl_bg_retry_due(const struct tl_bg_failure *f);
/* Hands the allocator's free pages back to the system: called by the background threads after
 * a flush or compaction, whose buffers (sorting, building, merging) would otherwise stay
 * resident as free memory in the threads' malloc arenas. */
void tl_release_free_memory(void);

/* Folds the key's records from the layers of v older than `from`: the frozen memtables
 * (skip_active) and the SSTables. Stops once the fold is done. */
int tl_db_fold_older(struct tl_db *db, struct tl_version *v, bool skip_active, const void *key,
                     size_t klen, uint64_t hash, struct tl_fold *f);

/* compaction.c */
void *tl_compaction_thread(void *arg);
/* Output compression for a level given the deepest level that holds data. */
enum tl_compression tl_level_compression(const struct tl_db *db, int level, int deepest);

/* A source for merging: an SSTable, a level of them, or a memtable, moving forward in key
 * order. Used by compaction and by tl_iter. */
struct tl_source {
    int (*seek)(struct tl_source *s, const void *key, size_t klen);
    int (*next)(struct tl_source *s);
    bool (*valid)(struct tl_source *s);
    const uint8_t *(*key)(struct tl_source *s, size_t *klen);
    /* The current entry as a record; bytes valid until the source moves. */
    int (*record)(struct tl_source *s, struct tl_record *r);
    void (*free)(struct tl_source *s);
};
struct tl_source *tl_source_table(struct tl_table *t, bool fill_cache);
struct tl_source *tl_source_level(struct tl_table **tables, size_t n, bool fill_cache);
struct tl_source *tl_source_memtable(struct tl_memtable *m, bool frozen);

/* Merges sources ordered newest first: each step yields the smallest key and the fold of every
 * source's record for it. */
struct tl_merger {
    struct tl_source **src;
    size_t n;
    bool *at_key; /* which sources sit at the current key */
    const uint8_t *key;
    size_t klen;
    bool valid;
    int status;
    struct tl_fold fold;
};
int tl_merger_init(struct tl_merger *mg, struct tl_source **src, size_t n);
int tl_merger_seek(struct tl_merger *mg, const void *key, size_t klen);
/* Moves past the current key. */
int tl_merger_next(struct tl_merger *mg);
void tl_merger_free(struct tl_merger *mg); /* frees the sources too */

#endif
