/*
 * db.c - opening and recovering a database, the write path, point reads, and the flush thread.
 *
 * Write path (every write function goes through write_key):
 *   1. take the key's stripe lock, so writes of one key are applied and logged in one order;
 *   2. enter the active memtable (writer count) and find the key's cell; a key new to this
 *      memtable gets a cell holding its current value from the older layers (one lookup), so an
 *      increment can answer the new value without reading the disk again;
 *   3. decide the record (MERGE for an increment of a live integer, PUT, DELETE, EXPIRE);
 *   4. append it to the WAL, then publish the new value in the cell;
 *   5. leave, and wait for the WAL when the fsync mode asks for it.
 * A full memtable is frozen (switch_memtable) and the write retried on the next one.
 *
 * Recovery replays the WAL segments the manifest still needs into memtables without reading
 * older layers (cells hold deltas), writes them out as level-0 tables, and records those tables
 * and a new WAL segment in one manifest edit.
 *
 * I/O errors do not stop the database. A failed WAL write or sync fails the writes that wait
 * for it and refuses new ones until the WAL repairs itself (wal.c); a failed flush is retried
 * after a delay (TL_BG_RETRY_MIN_MS, doubling to TL_BG_RETRY_MAX_MS) with the frozen memtable
 * kept, and the partial table deleted; writes fail only when they would have to wait for it
 * (every frozen memtable slot taken). A table whose manifest edit failed is kept until a later
 * edit is logged (tl_db_log_edit_locked): the edit may be on disk. Only a state where the
 * manifest and memory may disagree (a logged table that could not be installed) sets
 * bg_error, which stops writes until a restart.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "coding.h"
#include "db_impl.h"
#include "error.h"
#include "hash.h"
#include "uring_io.h"

#define TL_PATH_MAX 4096

static void *flush_thread_main(void *arg);

void tl_options_init(struct tl_options *o)
{
    memset(o, 0, sizeof *o);
    o->fsync = TL_FSYNC_EVERYSEC;
    o->memtable_bytes = 64u << 20;
    o->max_immutable_memtables = 2;
    o->block_size_bytes = 4096;
    o->block_cache_bytes = 64u << 20;
    o->bloom_bits_per_key = 10;
    o->l0_compaction_trigger = 4;
    o->l0_slowdown_trigger = 12;
    o->l0_stop_trigger = 20;
    o->level1_bytes = 64u << 20;
    o->level_multiplier = 10;
    o->target_file_bytes = 64u << 20;
    o->num_levels = 7;
    o->compression = TL_COMPRESS_LZ4;
    o->bottom_compression = TL_COMPRESS_LZ4;
    o->bottom_levels = 1;
    o->zstd_level = 3;
    o->background_compaction = true;
    o->max_value_bytes = 16u << 20;
}

int64_t tl_db_now_ms(const struct tl_db *db)
{
    if (db->opt.clock_ms)
        return db->opt.clock_ms(db->opt.clock_arg);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int check_options(const struct tl_options *o)
{
    if (o->num_levels < 2 || o->num_levels > TL_MAX_LEVELS)
        return tl_error(-EINVAL, "num_levels is %d: it must be between 2 and %d", o->num_levels,
                        TL_MAX_LEVELS);
    if (o->max_immutable_memtables < 1 || o->max_immutable_memtables > TL_MAX_IMMUTABLE)
        return tl_error(-EINVAL, "max_immutable_memtables is %d: it must be between 1 and %d",
                        o->max_immutable_memtables, TL_MAX_IMMUTABLE);
    if (o->memtable_bytes < 64 * 1024 || o->memtable_bytes > (3ull << 30))
        return tl_error(-EINVAL, "memtable_bytes is %zu: it must be between 64 KiB and 3 GiB",
                        o->memtable_bytes);
    if (o->block_size_bytes < 256 || o->block_size_bytes > (4u << 20))
        return tl_error(-EINVAL, "block_size_bytes is %zu: it must be between 256 and 4 MiB",
                        o->block_size_bytes);
    if (o->l0_compaction_trigger < 1 || o->l0_slowdown_trigger < o->l0_compaction_trigger ||
        o->l0_stop_trigger < o->l0_slowdown_trigger)
        return tl_error(-EINVAL,
                        "L0 triggers must satisfy 1 <= compaction (%d) <= slowdown "
                        "(%d) <= stop (%d)",
                        o->l0_compaction_trigger, o->l0_slowdown_trigger, o->l0_stop_trigger);
    if (o->l0_stop_trigger > TL_MAX_L0_STOP_TRIGGER)
        return tl_error(-EINVAL, "l0_stop_trigger is %d: the largest allowed is %d",
                        o->l0_stop_trigger, TL_MAX_L0_STOP_TRIGGER);
    if (o->max_value_bytes > TL_MAX_VALUE_BYTES)
        return tl_error(-EINVAL, "max_value_bytes is %zu: the largest allowed is %u (16 MiB)",
                        o->max_value_bytes, TL_MAX_VALUE_BYTES);
    if (o->memtable_bytes < o->max_value_bytes + TL_MAX_KEY_BYTES + 4096)
        return tl_error(-EINVAL,
                        "memtable_bytes (%zu) must exceed max_value_bytes (%zu) plus the "
                        "largest key (%d): one value must fit in a memtable",
                        o->memtable_bytes, o->max_value_bytes, TL_MAX_KEY_BYTES);
    return 0;
}

/* ---- writers entering the active memtable ------------------------------------------------ */

/* Enters the active memtable (it cannot be switched out, nor later reset, until writer_exit),
 * or returns NULL while a switch is in progress. Readers of the active table enter it too. */
static struct tl_memtable *try_enter_active(struct tl_db *db)
{
    struct tl_memtable *m = atomic_load(&db->active);
    atomic_fetch_add(&m->writers, 1);
    if (!atomic_load(&m->frozen) && atomic_load(&db->active) == m)
        return m;
    atomic_fetch_sub(&m->writers, 1);
    return NULL;
}

static struct tl_memtable *writer_enter(struct tl_db *db)
{
    struct tl_memtable *m;
    while (!(m = try_enter_active(db)))
        sched_yield(); /* a switch is in progress: it ends once in-flight writers leave */
    return m;
}

static void writer_exit(struct tl_memtable *m)
{
    atomic_fetch_sub(&m->writers, 1);
}

/* A memtable from the pool that no version refers to, or a new one (db->mutex held). */
static struct tl_memtable *pool_take_locked(struct tl_db *db)
{
    struct tl_memtable *active = atomic_load(&db->active);
    for (int i = 0; i < db->n_pool; i++) {
        struct tl_memtable *m = db->pool[i];
        if (m != active && m->refs == 0 && atomic_load(&m->entries) == 0)
            return m;
    }
    if (db->n_pool == TL_MEMTABLE_POOL)
        return NULL;
    struct tl_memtable *m = tl_memtable_new(db->opt.memtable_bytes);
    if (m)
        db->pool[db->n_pool++] = m;
    return m;
}

/*
 * Freezes m (if it is still the active memtable) and makes a fresh one active. Waits, without
 * holding the mutex, for the writers inside m to leave before rolling the WAL, so every record
 * of m lands in m's segment. Waits first while too many frozen memtables await flushing.
 */
static int switch_memtable(struct tl_db *db, struct tl_memtable *m)
{
    pthread_mutex_lock(&db->mutex);
    for (;;) {
        if (db->bg_error) {
            int rc = db->bg_error;
            pthread_mutex_unlock(&db->mutex);
            return rc;
        }
        if (atomic_load(&db->active) != m || db->switching) {
            pthread_mutex_unlock(&db->mutex);
            return 0; /* another writer is switching or has switched */
        }
        if (db->current->n_imm < db->opt.max_immutable_memtables)
            break;
        if (db->stopping) {
            pthread_mutex_unlock(&db->mutex);
            return tl_error(TL_ECLOSED,
                            "%s is closing: the memtable is full and no flush will "
                            "run",
                            db->dir);
        }
        if (db->flush_failure.error) {
            /* Waiting would outlast the caller's patience on a full or failing disk. */
            int rc = tl_error(db->flush_failure.error,
                              "%s: the memtable is full and %d frozen ones wait for a flush, which "
                              "failed (%s); writes fail until a retry succeeds",
                              db->dir, db->current->n_imm, db->flush_failure.msg);
            pthread_mutex_unlock(&db->mutex);
            return rc;
        }
        atomic_fetch_add(&db->stall_stops, 1);
        pthread_cond_wait(&db->done_cond, &db->mutex);
    }
    struct tl_memtable *next = pool_take_locked(db);
    if (!next) {
        pthread_mutex_unlock(&db->mutex);
        return tl_error(-ENOMEM, "out of memory for a new memtable of %zu bytes (memtable_bytes)",
                        db->opt.memtable_bytes);
    }
    db->switching = true;
    uint64_t number = db->next_file++;
    atomic_store(&m->frozen, 1);
    pthread_mutex_unlock(&db->mutex);

    while (atomic_load(&m->writers) > 0)
        sched_yield();

    int rc = tl_wal_roll(db->wal, number);
    pthread_mutex_lock(&db->mutex);
    db->switching = false;
    if (rc < 0) {
        /* The WAL is broken: m stays active, the write fails, and a later one switches. */
        atomic_store(&m->frozen, 0);
        pthread_cond_broadcast(&db->done_cond);
        pthread_mutex_unlock(&db->mutex);
        return rc;
    }
    m->last_seq = tl_wal_next_seq(db->wal) - 1;
    next->wal_number = number;
    struct tl_version *v = tl_version_clone(db->current);
    if (!v) {
        /* m stays active (its records go on into the new segment, which its flush covers): a
         * frozen active table would keep every writer waiting in writer_enter. */
        atomic_store(&m->frozen, 0);
        pthread_cond_broadcast(&db->done_cond);
        pthread_mutex_unlock(&db->mutex);
        return tl_error(-ENOMEM, "out of memory switching memtables");
    }
    /* m moves from active to the newest frozen memtable; the clone's reference carries over. */
    memmove(&v->imm[1], &v->imm[0], sizeof(v->imm[0]) * (size_t)v->n_imm);
    v->imm[0] = m;
    v->n_imm++;
    v->active = next;
    next->refs++;
    atomic_store(&db->active, next);
    tl_version_install(db, v);
    pthread_cond_broadcast(&db->bg_cond);
    pthread_cond_broadcast(&db->done_cond);
    pthread_mutex_unlock(&db->mutex);
    return 0;
}

/* Writers wait here while L0 has too many files: slowed first, then stopped. */
static int throttle_l0(struct tl_db *db)
{
    if ((int)atomic_load(&db->l0_files) < db->opt.l0_slowdown_trigger)
        return 0;
    pthread_mutex_lock(&db->mutex);
    size_t n = db->current->n_files[0];
    if ((int)n >= db->opt.l0_stop_trigger) {
        atomic_fetch_add(&db->stall_stops, 1);
        while ((int)db->current->n_files[0] >= db->opt.l0_stop_trigger && !db->bg_error &&
               !db->compaction_failure.error && !db->stopping)
            pthread_cond_wait(&db->done_cond, &db->mutex);
        int rc = db->bg_error;
        if (!rc && (int)db->current->n_files[0] >= db->opt.l0_stop_trigger &&
            db->compaction_failure.error)
            rc = tl_error(db->compaction_failure.error,
                          "%s: level 0 holds %zu tables (the stop trigger is %d) and the "
                          "compaction that would merge them failed (%s); writes fail until a "
                          "retry succeeds",
                          db->dir, db->current->n_files[0], db->opt.l0_stop_trigger,
                          db->compaction_failure.msg);
        pthread_mutex_unlock(&db->mutex);
        return rc;
    }
    pthread_mutex_unlock(&db->mutex);
    if ((int)n >= db->opt.l0_slowdown_trigger) {
        atomic_fetch_add(&db->stall_slowdowns, 1);
        usleep(TL_SLOWDOWN_US);
    }
    return 0;
}

/* ---- reads ------------------------------------------------------------------------------ */

/* The SSTable candidates for a key, in the order they must be folded (newest first): L0 holds
 * at most TL_MAX_L0_STOP_TRIGGER files, plus those that frozen memtables (TL_MAX_IMMUTABLE)
 * add while writers wait, and each deeper level one. */
#define TL_MAX_CANDIDATES 64
_Static_assert(TL_MAX_L0_STOP_TRIGGER + TL_MAX_IMMUTABLE + 2 + TL_MAX_LEVELS <= TL_MAX_CANDIDATES,
               "a read's candidate tables must fit TL_MAX_CANDIDATES");

/* Folds key's record in the block ref holds, if it has one, into f: 1 once f holds a whole
 * value, 0 if the walk must go on, or an error naming the table. */
static int fold_block(struct tl_fold *f, const struct tl_block_ref *ref, const void *key,
                      size_t klen)
{
    const uint8_t *val;
    size_t vlen;
    int found = tl_sst_block_get(ref, key, klen, &val, &vlen);
    if (found <= 0)
        return found;
    struct tl_record r;
    if (tl_record_decode(val, vlen, &r) < 0)
        return tl_error(TL_ECORRUPT,
                        "%s: an entry of the block at offset %llu does not decode; run tallyctl "
                        "verify on the data directory",
                        tl_sst_path(ref->table), (unsigned long long)ref->offset);
    return tl_fold_add(f, &r) ? 1 : 0;
}

int tl_db_fold_older(struct tl_db *db, struct tl_version *v, bool skip_active, const void *key,
                     size_t klen, uint64_t hash, struct tl_fold *f)
{
    /* Memtable cells, newest first: the active one (unless skipped), then the frozen ones. */
    for (int i = skip_active ? 0 : -1; i < v->n_imm; i++) {
        struct tl_memtable *m = i < 0 ? v->active : v->imm[i];
        struct tl_cell *c = m ? tl_memtable_find(m, key, klen, hash) : NULL;
        if (!c)
            continue;
        struct tl_cell_snap s;
        struct tl_record r;
        tl_cell_read(m, c, &s);
        if (tl_cell_is_placeholder(&s))
            continue;
        tl_cell_snap_to_record(&s, &r);
        if (tl_fold_add(f, &r))
            return tl_fold_own_bytes(f);
    }

    /* Every table whose range holds key may hold a record of it: none is left out (the
     * guard makes sure they fit). They are visited newest first. While their blocks are in the
     * cache, each is searched as it comes, and the walk stops at the first whole value (a
     * counter written in several tables is found in the newest, the others not searched).
     * From the first block the cache lacks, that block and the remaining candidates are read
     * as one batch, whose misses go to the disk together. */
    if (v->n_files[0] + TL_MAX_LEVELS > TL_MAX_CANDIDATES)
        return tl_error(-EOVERFLOW,
                        "%s: level 0 holds %zu tables, more than a read can look at (%d); "
                        "retry once compaction has merged them",
                        db->dir, v->n_files[0], TL_MAX_CANDIDATES - TL_MAX_LEVELS);
    struct tl_sst *tables[TL_MAX_CANDIDATES];
    struct tl_block_handle handles[TL_MAX_CANDIDATES];
    struct tl_block_ref refs[TL_MAX_CANDIDATES];
    size_t n = 0, held = 0;  /* candidates; of them, blocks held in refs (all searched) */
    size_t batch = SIZE_MAX; /* the first candidate whose block the cache lacked */
    bool whole = false;
    int rc = 0;
    for (int l = 0; l < db->opt.num_levels && !whole; l++) {
        size_t count = l == 0 ? v->n_files[0] : 1;
        ssize_t at = 0;
        if (l > 0 && (at = tl_level_find(v, l, key, klen)) < 0)
            continue;
        for (size_t i = 0; i < count && !whole; i++) {
            struct tl_table *t = v->levels[l][l == 0 ? (ssize_t)i : at];
            if (l == 0 && (tl_key_cmp(key, klen, t->meta.smallest, t->meta.smallest_len) < 0 ||
                           tl_key_cmp(key, klen, t->meta.largest, t->meta.largest_len) > 0))
                continue;
            if (!tl_sst_may_contain(t->sst, hash) ||
                !tl_sst_find_block(t->sst, key, klen, &handles[n]))
                continue;
            tables[n] = t->sst;
            if (batch != SIZE_MAX) {
                n++;
                continue;
            }
            if ((rc = tl_sst_cached_block(t->sst, &handles[n], &refs[n])) < 0)
                goto out;
            if (rc == 0) {
                batch = n++;
                continue;
            }
            held = ++n;
            if ((rc = fold_block(f, &refs[n - 1], key, klen)) < 0)
                goto out;
            whole = rc == 1;
        }
    }
    if (batch != SIZE_MAX) {
        if ((rc = tl_sst_read_blocks(tables + batch, handles + batch, n - batch, refs + batch, 1)) <
            0)
            goto out;
        held = n;
        for (size_t i = batch; i < n; i++) {
            if ((rc = fold_block(f, &refs[i], key, klen)) < 0)
                goto out;
            if (rc == 1)
                break;
        }
    }
    /* A byte value must outlive the block it was found in. */
    rc = tl_fold_own_bytes(f);
out:
    for (size_t i = 0; i < held; i++)
        tl_block_ref_release(&refs[i]);
    return rc;
}

/* The value folded into f as tl_db_get answers it: 1 with *out, 0 when absent or expired, or
 * an error. */
static int fold_to_val(struct tl_db *db, const struct tl_fold *f, size_t klen, struct tl_val *out)
{
    struct tl_record r;
    if (tl_fold_result(f, true, tl_db_now_ms(db), &r) < 0)
        return tl_error(TL_ECORRUPT,
                        "an increment is stored over a byte value for a key of %zu "
                        "bytes; run tallyctl verify on %s",
                        klen, db->dir);
    return tl_record_to_val(&r, out);
}

/* The key's value when the active memtable's cell holds all of it (the fold says it is whole,
 * as tl_db_fold_older would): true with tl_db_get's result in *result and *out, false when the
 * other layers must be read. No version is taken (no lock); a switch in progress sends the read
 * to the other layers rather than wait. */
static bool get_active(struct tl_db *db, const void *key, size_t klen, uint64_t hash,
                       struct tl_val *out, int *result)
{
    struct tl_memtable *m = try_enter_active(db);
    if (!m)
        return false;
    bool whole = false;
    struct tl_cell *c = tl_memtable_find(m, key, klen, hash);
    if (c) {
        struct tl_cell_snap s;
        struct tl_record r;
        struct tl_fold f;
        tl_cell_read(m, c, &s);
        tl_cell_snap_to_record(&s, &r);
        tl_fold_init(&f);
        whole = !tl_cell_is_placeholder(&s) && tl_fold_add(&f, &r);
        if (whole) /* converted while inside: a byte value may lie in the table */
            *result = fold_to_val(db, &f, klen, out);
        tl_fold_free(&f);
    }
    writer_exit(m);
    return whole;
}

int tl_db_get(tl_db *db, const void *key, size_t klen, struct tl_val *out)
{
    return tl_db_get_hashed(db, key, klen, tl_hash64(key, klen), out);
}

int tl_db_get_hashed(tl_db *db, const void *key, size_t klen, uint64_t hash, struct tl_val *out)
{
    memset(out, 0, sizeof *out);
    if (klen > TL_MAX_KEY_BYTES)
        return tl_error(TL_ETOOBIG, "key of %zu bytes is over the limit of %d bytes", klen,
                        TL_MAX_KEY_BYTES);
    int result;
    if (get_active(db, key, klen, hash, out, &result))
        return result;
    struct tl_version *v = tl_version_acquire(db);
    struct tl_fold f;
    tl_fold_init(&f);
    int rc = tl_db_fold_older(db, v, false, key, klen, hash, &f);
    if (rc == 0)
        rc = fold_to_val(db, &f, klen, out);
    tl_fold_free(&f);
    tl_version_release(db, v);
    return rc;
}

/* The active memtable's WAL number (unique to each time a table becomes active) and the key's
 * cell version there (a sequence lock: every write of the cell moves it by 2). A cell that only
 * caches the older layers' value (inserted at version 0 by a write that then changed nothing,
 * such as GETEX of a missing key) counts as no cell, so that such a lookup is no write. */
#define STAMP_NO_TABLE (~0ull << 33) /* the active table could not be entered */

uint64_t tl_db_write_stamp(tl_db *db, const void *key, size_t klen)
{
    uint64_t hash = tl_hash64(key, klen);
    /* As a reader enters: a switch in progress (or one that failed, leaving the table frozen)
     * gives a stamp that matches no table, so that the caller compares values instead. */
    struct tl_memtable *m = try_enter_active(db); /* the table cannot switch while inside */
    if (!m)
        return STAMP_NO_TABLE;
    struct tl_cell *cell = klen <= TL_MAX_KEY_BYTES ? tl_memtable_find(m, key, klen, hash) : NULL;
    uint64_t v = cell ? atomic_load_explicit(&cell->version, memory_order_acquire) : 0;
    uint64_t stamp = m->wal_number << 33 | v;
    writer_exit(m);
    return stamp;
}

bool tl_db_stamps_same_table(uint64_t a, uint64_t b)
{
    return a >> 33 == b >> 33 && a >> 33 != STAMP_NO_TABLE >> 33;
}

uint64_t tl_db_prefetch_hash(const void *key, size_t klen)
{
    return tl_hash64(key, klen);
}

static inline pthread_mutex_t *stripe_of(struct tl_db *db, uint64_t hash)
{
    return &db->stripes[(hash >> 7) & (TL_WRITE_STRIPES - 1)];
}

void tl_db_prefetch(tl_db *db, uint64_t hash, enum tl_prefetch_stage stage)
{
    /* The active table without entering it as a writer: a table is reset, never freed, while
     * the engine is open, so a stale one costs a wasted load at worst. */
    struct tl_memtable *m = atomic_load_explicit(&db->active, memory_order_acquire);
    if (m)
        tl_memtable_prefetch(m, hash, (int)stage);
    /* A write locks the key's stripe: its line too, with the cell. For reading: a GET takes no
     * stripe, and a line no other core holds arrives exclusive anyway. */
    if (stage == TL_PREFETCH_CELL)
        __builtin_prefetch(stripe_of(db, hash));
}

/* ---- writes ----------------------------------------------------------------------------- */

/* Decides what to log given the key's current value (PUT_INT, PUT_BYTES, or DELETE when the
 * key does not exist). Returns 1 with *log filled, 0 for no change, or a negative error. */
typedef int (*decide_fn)(void *arg, const struct tl_record *cur, struct tl_record *log);

/*
 * The current value held in cell c of active memtable m as a final record; resolves a cell
 * rebuilt from the WAL (MERGE/EXPIRE) against the older layers. *fold keeps any copied bytes.
 * A blind caller (tl_db_merge_expire) takes what the memtable says, partial or not, and for a
 * key the memtable lacks gets a new cell that knows nothing (MERGE of 0): no older layer is read.
 * cur's bytes may point into *held, which the caller keeps meanwhile.
 */
static int current_value(struct tl_db *db, struct tl_memtable *m, const void *key, size_t klen,
                         uint64_t hash, bool blind, struct tl_cell **cellp, struct tl_fold *fold,
                         struct tl_cell_snap *held, struct tl_record *cur, bool *full)
{
    struct tl_cell *c = tl_memtable_find(m, key, klen, hash);
    int rc = 0;
    bool placeholder = false;
    tl_fold_init(fold);
    *full = false;
    if (c) {
        tl_cell_read(m, c, held);
        tl_cell_snap_to_record(held, cur);
        placeholder = !blind && tl_cell_is_placeholder(held);
        if (!placeholder) {
            if (blind || (held->state != TL_CELL_MERGE && held->state != TL_CELL_EXPIRE)) {
                *cellp = c;
                return 0;
            }
            tl_fold_add(fold, cur);
        }
    } else if (blind) {
        struct tl_cell_snap s = {.state = TL_CELL_MERGE};
        bool inserted;
        if (!(c = tl_memtable_insert(m, key, klen, hash, &s, &inserted))) {
            *full = true;
            return 0;
        }
        tl_cell_read(m, c, held); /* another writer's cell, if it got there first */
        tl_cell_snap_to_record(held, cur);
        *cellp = c;
        return 0;
    }
    struct tl_version *v = tl_version_acquire(db);
    rc = tl_db_fold_older(db, v, true, key, klen, hash, fold);
    tl_version_release(db, v);
    if (rc < 0)
        return rc;
    /* The folded value without the expiry check: the cell keeps the stored truth. */
    if (tl_fold_result(fold, true, 0, cur) < 0)
        return tl_error(TL_ECORRUPT,
                        "an increment is stored over a byte value for a key of %zu "
                        "bytes; run tallyctl verify on %s",
                        klen, db->dir);
    struct tl_cell_snap s;
    tl_record_to_cell_snap(cur, &s);
    if (c && placeholder) {
        /* A failed blind merge's cell: now a cache of the older layers, as an insert makes. */
        s.dirty = false;
        if (s.state == TL_CELL_DELETED)
            s.state = TL_CELL_ABSENT;
    }
    if (c) {
        /* Resolved, still dirty: the WAL has its records, the flush must write the result. */
        if (!tl_cell_write(m, c, &s)) {
            *full = true;
            return 0;
        }
        *cellp = c;
        return 0;
    }
    s.dirty = false;
    if (s.state == TL_CELL_DELETED)
        s.state = TL_CELL_ABSENT;
    bool inserted;
    c = tl_memtable_insert(m, key, klen, hash, &s, &inserted);
    if (!c) {
        *full = true;
        return 0;
    }
    *cellp = c;
    return 0;
}

/* Writes one key: decide() sees its current value and says what to log. blind: see
 * current_value; decide then may see a partial MERGE or EXPIRE record. */
static int write_key_ex(struct tl_db *db, const void *key, size_t klen, bool blind,
                        decide_fn decide, void *arg, uint64_t *seq_out)
{
    if (klen > TL_MAX_KEY_BYTES)
        return tl_error(TL_ETOOBIG, "key of %zu bytes is over the limit of %d bytes", klen,
                        TL_MAX_KEY_BYTES);
    if (db->bg_error)
        return tl_error(TL_ECLOSED,
                        "%s: writes are stopped: the manifest and memory may disagree after "
                        "an earlier error (%s); restart to recover from the WAL",
                        db->dir, tl_strerror(db->bg_error));
    int rc = throttle_l0(db);
    if (rc < 0)
        return rc;
    uint64_t hash = tl_hash64(key, klen);
    pthread_mutex_t *stripe = stripe_of(db, hash);
    uint64_t seq = 0;
    bool logged = false, decided = false;
    struct tl_record log;

    pthread_mutex_lock(stripe);
    for (;;) {
        struct tl_memtable *m = writer_enter(db);
        struct tl_cell *cell = NULL;
        struct tl_fold fold;
        struct tl_cell_snap held;
        struct tl_record cur;
        bool full;
        rc = current_value(db, m, key, klen, hash, blind, &cell, &fold, &held, &cur, &full);
        if (rc < 0 || full) {
            tl_fold_free(&fold);
            writer_exit(m);
            if (rc < 0)
                break;
            if ((rc = switch_memtable(db, m)) < 0)
                break;
            continue;
        }
        struct tl_record live = cur;
        if (live.kind != TL_KIND_DELETE && live.has_expiry &&
            tl_expired(live.expire_ms, tl_db_now_ms(db)))
            live.kind = TL_KIND_DELETE;
        /* The decision is taken once: a retry after a memtable switch sees the same value
         * (this key's writers wait on the stripe lock) and reuses it. */
        if (!decided) {
            memset(&log, 0, sizeof log);
            tl_error_clear();
            rc = decide(arg, &live, &log);
            decided = true;
            if (rc < 0) {
                /* A callback that failed without a message of its own gets the code's text,
                 * never an earlier failure's message (which named another key). */
                char why[256];
                snprintf(why, sizeof why, "%s",
                         *tl_last_error() ? tl_last_error() : tl_strerror(rc));
                rc = tl_error(rc, "key '%.*s%s': %s", (int)(klen > 64 ? 64 : klen),
                              (const char *)key, klen > 64 ? "..." : "", why);
            }
            if (rc <= 0) {
                tl_fold_free(&fold);
                writer_exit(m);
                break;
            }
        }
        /* The new value: the logged record over the live one. */
        struct tl_fold next;
        struct tl_record nr;
        tl_fold_init(&next);
        tl_fold_add(&next, &log);
        tl_fold_add(&next, &live);
        tl_fold_result(&next, tl_kind_is_final(live.kind), 0, &nr);
        struct tl_cell_snap s;
        tl_record_to_cell_snap(&nr, &s);
        /* A short value of the old one's length overwrites it in place; else it takes new
         * arena space. */
        uint32_t boff = tl_cell_inplace_off(m, cell, &s);
        bool inplace = boff != 0;
        if (!inplace && tl_cell_has_bytes(s.state) &&
            !(boff = tl_memtable_store_bytes(m, s.bytes, s.len))) {
            tl_fold_free(&fold);
            writer_exit(m);
            if ((rc = switch_memtable(db, m)) < 0)
                break;
            continue;
        }
        rc = tl_wal_append(db->wal, key, klen, &log, &seq);
        if (rc == 0) {
            if (inplace)
                tl_cell_rewrite(m, cell, &s, boff);
            else
                tl_cell_publish(cell, &s, boff);
            logged = true;
        }
        tl_fold_free(&fold);
        writer_exit(m);
        if (rc == 0)
            rc = 1;
        break;
    }
    pthread_mutex_unlock(stripe);
    if (rc < 0)
        return rc;
    if (seq_out)
        *seq_out = logged ? seq : tl_wal_next_seq(db->wal) - 1;
    else if (logged && db->opt.fsync == TL_FSYNC_ALWAYS)
        return tl_wal_wait(db->wal, seq, TL_WAIT_DURABLE);
    return 0;
}

static int write_key(struct tl_db *db, const void *key, size_t klen, decide_fn decide, void *arg,
                     uint64_t *seq_out)
{
    return write_key_ex(db, key, klen, false, decide, arg, seq_out);
}

struct incr_arg {
    int64_t delta;
    int64_t result;
    bool set_expiry; /* tl_db_incr_expire */
    int64_t expire_ms;
};

static int decide_incr(void *arg, const struct tl_record *cur, struct tl_record *log)
{
    struct incr_arg *a = arg;
    int64_t old = 0;
    if (cur->kind == TL_KIND_PUT_TYPED) {
        return tl_error(TL_EWRONGTYPE, "the key holds a typed value (tag %u), not an integer",
                        cur->tag);
    } else if (cur->kind == TL_KIND_PUT_BYTES) {
        if (!tl_parse_int((const char *)cur->bytes, cur->len, &old))
            return tl_error(TL_ENOTINT, "value is not an integer or out of range");
    } else if (cur->kind == TL_KIND_PUT_INT) {
        old = cur->i;
    }
    if ((a->delta > 0 && old > INT64_MAX - a->delta) ||
        (a->delta < 0 && old < INT64_MIN - a->delta))
        return tl_error(TL_EOVERFLOW, "increment or decrement would overflow");
    a->result = old + a->delta;
    if (cur->kind == TL_KIND_PUT_INT) {
        log->kind = TL_KIND_MERGE_INT;
        log->i = a->delta;
        log->has_expiry = a->set_expiry;
        log->expire_ms = a->expire_ms;
    } else {
        /* A fresh (or expired, or text) value: the increment's result replaces it. */
        log->kind = TL_KIND_PUT_INT;
        log->i = a->result;
        if (cur->kind == TL_KIND_PUT_BYTES && cur->has_expiry) {
            log->has_expiry = true;
            log->expire_ms = cur->expire_ms;
        }
        if (a->set_expiry) {
            log->has_expiry = a->expire_ms != 0;
            log->expire_ms = a->expire_ms;
        }
    }
    return 1;
}

static int run_incr(tl_db *db, const void *key, size_t klen, struct incr_arg *a, int64_t *result,
                    uint64_t *seq)
{
    int rc = write_key(db, key, klen, decide_incr, a, seq);
    if (rc == 0 && result)
        *result = a->result;
    return rc;
}

int tl_db_incr(tl_db *db, const void *key, size_t klen, int64_t delta, int64_t *result,
               uint64_t *seq)
{
    struct incr_arg a = {.delta = delta};
    return run_incr(db, key, klen, &a, result, seq);
}

int tl_db_incr_expire(tl_db *db, const void *key, size_t klen, int64_t delta, int64_t expire_ms,
                      int64_t *result, uint64_t *seq)
{
    struct incr_arg a = {.delta = delta, .set_expiry = true, .expire_ms = expire_ms};
    return run_incr(db, key, klen, &a, result, seq);
}

struct merge_arg {
    int64_t delta;
    int64_t expire_ms;
};

static int decide_merge(void *arg, const struct tl_record *cur, struct tl_record *log)
{
    const struct merge_arg *a = arg;
    if (tl_kind_has_bytes(cur->kind))
        return tl_error(TL_ENOTINT, "value is not an integer or out of range");
    if (cur->kind == TL_KIND_PUT_INT && ((a->delta > 0 && cur->i > INT64_MAX - a->delta) ||
                                         (a->delta < 0 && cur->i < INT64_MIN - a->delta)))
        return tl_error(TL_EOVERFLOW, "increment or decrement would overflow");
    log->kind = TL_KIND_MERGE_INT;
    log->i = a->delta;
    log->has_expiry = true;
    log->expire_ms = a->expire_ms;
    return 1;
}

int tl_db_merge_expire(tl_db *db, const void *key, size_t klen, int64_t delta, int64_t expire_ms,
                       uint64_t *seq)
{
    struct merge_arg a = {delta, expire_ms};
    return write_key_ex(db, key, klen, true, decide_merge, &a, seq);
}

/* A PUT of bytes, stored as an integer when the bytes are a canonical one. */
static void put_record(const void *val, size_t vlen, int64_t expire_ms, struct tl_record *r)
{
    int64_t iv;
    memset(r, 0, sizeof *r);
    if (tl_parse_int(val, vlen, &iv)) {
        r->kind = TL_KIND_PUT_INT;
        r->i = iv;
    } else {
        r->kind = TL_KIND_PUT_BYTES;
        r->bytes = val;
        r->len = vlen;
    }
    r->has_expiry = expire_ms != 0;
    r->expire_ms = expire_ms;
}

struct float_arg {
    long double delta;
    long double result;
    char text[TL_FLOAT_BUF];
};

static int decide_incr_float(void *arg, const struct tl_record *cur, struct tl_record *log)
{
    struct float_arg *a = arg;
    long double old = 0;
    if (cur->kind == TL_KIND_PUT_TYPED) {
        return tl_error(TL_EWRONGTYPE, "the key holds a typed value (tag %u), not a number",
                        cur->tag);
    } else if (cur->kind == TL_KIND_PUT_INT) {
        old = (long double)cur->i;
    } else if (cur->kind == TL_KIND_PUT_BYTES) {
        if (!tl_parse_float((const char *)cur->bytes, cur->len, &old))
            return tl_error(TL_ENOTFLOAT, "value is not a valid float");
    }
    long double r = old + a->delta;
    if (isnan(r) || isinf(r))
        return tl_error(TL_ENANINF, "increment would produce NaN or Infinity");
    size_t len = tl_format_float(r, a->text, sizeof a->text);
    if (len == 0)
        return tl_error(TL_ETOOBIG, "the result of the increment is too long to store as text");
    a->result = r;
    /* Stored as its text (an integer when it is one), so it reads back exactly as returned. */
    put_record(a->text, len, cur->kind != TL_KIND_DELETE && cur->has_expiry ? cur->expire_ms : 0,
               log);
    return 1;
}

int tl_db_incr_float(tl_db *db, const void *key, size_t klen, long double delta,
                     long double *result, uint64_t *seq)
{
    /* An infinite or NaN delta is refused by decide_incr_float, once the stored value is
     * known to be a number (as Redis: "not a valid float" comes first). */
    struct float_arg *a = malloc(sizeof *a);
    if (!a)
        return tl_error(-ENOMEM, "out of memory");
    a->delta = delta;
    int rc = write_key(db, key, klen, decide_incr_float, a, seq);
    if (rc == 0 && result)
        *result = a->result;
    free(a);
    return rc;
}

struct put_arg {
    struct tl_record rec;
};

/* A PUT of a typed value, checked against the value limit. */
static int typed_record(const struct tl_db *db, uint8_t tag, const void *val, size_t vlen,
                        int64_t expire_ms, struct tl_record *r)
{
    if (tag == 0)
        return tl_error(-EINVAL, "type tag 0 is not a type: use 1..255");
    if (vlen > db->opt.max_value_bytes)
        return tl_error(TL_ETOOBIG,
                        "value of %zu bytes is over the limit of %zu bytes "
                        "(max_value_bytes)",
                        vlen, db->opt.max_value_bytes);
    memset(r, 0, sizeof *r);
    r->kind = TL_KIND_PUT_TYPED;
    r->tag = tag;
    r->bytes = val;
    r->len = vlen;
    r->has_expiry = expire_ms != 0;
    r->expire_ms = expire_ms;
    return 0;
}

static int decide_put(void *arg, const struct tl_record *cur, struct tl_record *log)
{
    *log = ((struct put_arg *)arg)->rec;
    return 1;
}

int tl_db_put(tl_db *db, const void *key, size_t klen, const void *val, size_t vlen,
              int64_t expire_ms, uint64_t *seq)
{
    if (vlen > db->opt.max_value_bytes)
        return tl_error(TL_ETOOBIG,
                        "value of %zu bytes is over the limit of %zu bytes "
                        "(max_value_bytes)",
                        vlen, db->opt.max_value_bytes);
    struct put_arg a;
    put_record(val, vlen, expire_ms, &a.rec);
    return write_key(db, key, klen, decide_put, &a, seq);
}

int tl_db_put_typed(tl_db *db, const void *key, size_t klen, uint8_t tag, const void *val,
                    size_t vlen, int64_t expire_ms, uint64_t *seq)
{
    struct put_arg a;
    int rc = typed_record(db, tag, val, vlen, expire_ms, &a.rec);
    if (rc < 0)
        return rc;
    return write_key(db, key, klen, decide_put, &a, seq);
}

int tl_db_put_int(tl_db *db, const void *key, size_t klen, int64_t v, int64_t expire_ms,
                  uint64_t *seq)
{
    struct put_arg a;
    memset(&a, 0, sizeof a);
    a.rec.kind = TL_KIND_PUT_INT;
    a.rec.i = v;
    a.rec.has_expiry = expire_ms != 0;
    a.rec.expire_ms = expire_ms;
    return write_key(db, key, klen, decide_put, &a, seq);
}

static int decide_delete(void *arg, const struct tl_record *cur, struct tl_record *log)
{
    bool *existed = arg;
    *existed = cur->kind != TL_KIND_DELETE;
    if (!*existed)
        return 0;
    log->kind = TL_KIND_DELETE;
    return 1;
}

int tl_db_delete(tl_db *db, const void *key, size_t klen, bool *existed, uint64_t *seq)
{
    bool e = false;
    int rc = write_key(db, key, klen, decide_delete, &e, seq);
    if (existed)
        *existed = e;
    return rc;
}

struct expiry_arg {
    int64_t expire_ms;
    bool existed;
};

static int decide_expiry(void *arg, const struct tl_record *cur, struct tl_record *log)
{
    struct expiry_arg *a = arg;
    a->existed = cur->kind != TL_KIND_DELETE;
    if (!a->existed)
        return 0;
    log->kind = TL_KIND_EXPIRE;
    log->has_expiry = true;
    log->expire_ms = a->expire_ms;
    return 1;
}

int tl_db_set_expiry(tl_db *db, const void *key, size_t klen, int64_t expire_ms, bool *existed,
                     uint64_t *seq)
{
    struct expiry_arg a = {.expire_ms = expire_ms};
    int rc = write_key(db, key, klen, decide_expiry, &a, seq);
    if (existed)
        *existed = a.existed;
    return rc;
}

struct update_arg {
    const struct tl_db *db;
    tl_update_fn fn;
    void *arg;
    size_t max_value_bytes;
    struct tl_val next;
};

static int decide_update(void *arg, const struct tl_record *cur, struct tl_record *log)
{
    struct update_arg *a = arg;
    struct tl_val v;
    memset(&v, 0, sizeof v);
    int found = cur->kind != TL_KIND_DELETE;
    if (found) {
        v.type = cur->kind == TL_KIND_PUT_INT     ? TL_VAL_INT
                 : cur->kind == TL_KIND_PUT_TYPED ? TL_VAL_TYPED
                                                  : TL_VAL_BYTES;
        v.tag = cur->tag;
        v.i = cur->i;
        v.bytes = (char *)cur->bytes;
        v.len = cur->len;
        v.expire_ms = cur->has_expiry ? cur->expire_ms : 0;
    }
    memset(&a->next, 0, sizeof a->next);
    int action = a->fn(a->arg, &v, found, &a->next);
    switch (action) {
    case TL_UPDATE_KEEP:
        return 0;
    case TL_UPDATE_PUT:
        if (a->next.type == TL_VAL_INT) {
            memset(log, 0, sizeof *log);
            log->kind = TL_KIND_PUT_INT;
            log->i = a->next.i;
            log->has_expiry = a->next.expire_ms != 0;
            log->expire_ms = a->next.expire_ms;
        } else if (a->next.type == TL_VAL_TYPED) {
            int rc = typed_record(a->db, a->next.tag, a->next.bytes, a->next.len, a->next.expire_ms,
                                  log);
            if (rc < 0)
                return rc;
        } else {
            if (a->next.len > a->max_value_bytes)
                return tl_error(TL_ETOOBIG,
                                "value of %zu bytes is over the limit of %zu bytes "
                                "(max_value_bytes)",
                                a->next.len, a->max_value_bytes);
            put_record(a->next.bytes, a->next.len, a->next.expire_ms, log);
        }
        return 1;
    case TL_UPDATE_DELETE:
        if (!found)
            return 0;
        log->kind = TL_KIND_DELETE;
        return 1;
    case TL_UPDATE_EXPIRE:
        if (!found)
            return 0;
        log->kind = TL_KIND_EXPIRE;
        log->has_expiry = true;
        log->expire_ms = a->next.expire_ms;
        return 1;
    }
    return action < 0 ? action : tl_error(-EINVAL, "update callback returned %d", action);
}

int tl_db_update(tl_db *db, const void *key, size_t klen, tl_update_fn fn, void *arg, uint64_t *seq)
{
    struct update_arg a = {
        .db = db, .fn = fn, .arg = arg, .max_value_bytes = db->opt.max_value_bytes};
    return write_key(db, key, klen, decide_update, &a, seq);
}

int tl_db_wait(tl_db *db, uint64_t seq, enum tl_wait what)
{
    return tl_wal_wait(db->wal, seq, what);
}

uint64_t tl_db_written_seq(tl_db *db)
{
    return tl_wal_written_seq(db->wal);
}

uint64_t tl_db_durable_seq(tl_db *db)
{
    return tl_wal_durable_seq(db->wal);
}

/* ---- background failures and the manifest --------------------------------------------- */

static struct timespec realtime_after_ms(long ms)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t); /* bg_cond and done_cond use the default clock */
    t.tv_sec += ms / 1000;
    t.tv_nsec += (ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

void tl_bg_failed_locked(struct tl_db *db, struct tl_bg_failure *f, const char *what, int rc)
{
    if (!f->error)
        fprintf(stderr, "tally: %s in %s failed, retrying: %s\n", what, db->dir, tl_last_error());
    f->delay_ms = !f->error                              ? TL_BG_RETRY_MIN_MS
                  : f->delay_ms * 2 > TL_BG_RETRY_MAX_MS ? TL_BG_RETRY_MAX_MS
                                                         : f->delay_ms * 2;
    f->error = rc;
    f->count++;
    snprintf(f->msg, sizeof f->msg, "%s: %s", what, tl_last_error());
    f->retry_at = realtime_after_ms(f->delay_ms);
    pthread_cond_broadcast(&db->done_cond);
}

void tl_bg_succeeded_locked(struct tl_bg_failure *f)
{
    f->error = 0;
    f->delay_ms = 0;
}

void tl_release_free_memory(void)
{
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

bool tl_bg_retry_due(const struct tl_bg_failure *f)
{
    if (!f->error)
        return true;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return now.tv_sec > f->retry_at.tv_sec ||
           (now.tv_sec == f->retry_at.tv_sec && now.tv_nsec >= f->retry_at.tv_nsec);
}

int tl_db_log_edit_locked(struct tl_db *db, const struct tl_version_edit *e)
{
    int rc = tl_manifest_log(db->manifest, e);
    char path[TL_PATH_MAX];
    if (rc < 0) {
        for (size_t i = 0; i < e->n_added; i++) {
            if (db->n_orphans == db->cap_orphans) {
                size_t cap = db->cap_orphans ? db->cap_orphans * 2 : 16;
                uint64_t *p = realloc(db->orphans, cap * sizeof *p);
                if (!p)
                    break; /* the file stays until the next open removes it */
                db->orphans = p;
                db->cap_orphans = cap;
            }
            db->orphans[db->n_orphans++] = e->added[i].number;
        }
        return rc;
    }
    /* The manifest was rewritten without the failed edits before this one was logged. */
    for (size_t i = 0; i < db->n_orphans; i++) {
        tl_sst_file_path(path, sizeof path, db->dir, db->orphans[i]);
        tl_db_delete_file_locked(db, path);
    }
    db->n_orphans = 0;
    return 0;
}

/* ---- flushing memtables to level-0 tables ----------------------------------------------- */

/* Writes m's written cells as a new table; meta->number is 0 when there was nothing to write. */
static int write_memtable(struct tl_db *db, struct tl_memtable *m, uint64_t number,
                          struct tl_file_meta *meta)
{
    memset(meta, 0, sizeof *meta);
    int rc = tl_memtable_sort(m);
    if (rc < 0)
        return tl_error(rc, "out of memory sorting a memtable of %llu entries",
                        (unsigned long long)atomic_load(&m->entries));
    char path[TL_PATH_MAX];
    tl_sst_file_path(path, sizeof path, db->dir, number);
    struct tl_sst_builder *b = NULL;
    struct tl_sst_builder_options bo = {
        .block_size_bytes = db->opt.block_size_bytes,
        .bloom_bits_per_key = db->opt.bloom_bits_per_key,
        .compression = db->opt.compression,
        .zstd_level = db->opt.zstd_level,
    };
    uint8_t *buf = NULL;
    size_t cap = 0;
    for (size_t i = 0; i < m->n_sorted; i++) {
        struct tl_cell *c = m->sorted[i];
        struct tl_cell_snap s;
        struct tl_record r;
        tl_cell_read(m, c, &s);
        if (!s.dirty)
            continue;
        tl_cell_snap_to_record(&s, &r);
        size_t need = tl_record_encoded_len(&r);
        if (need > cap) {
            uint8_t *nb = realloc(buf, need);
            if (!nb) {
                rc = tl_error(-ENOMEM, "out of memory flushing a value of %zu bytes", need);
                goto fail;
            }
            buf = nb;
            cap = need;
        }
        size_t len = tl_record_encode(&r, buf);
        if (!b && (rc = tl_sst_builder_new(path, &bo, &b)) < 0)
            goto fail;
        if ((rc = tl_sst_builder_add(b, c->key, c->klen, buf, len)) < 0)
            goto fail;
    }
    free(buf);
    buf = NULL;
    if (!b)
        return 0;
    struct tl_sst_props props;
    rc = tl_sst_builder_finish(b, &props);
    b = NULL;
    if (rc < 0)
        goto fail;
    meta->level = 0;
    meta->number = number;
    meta->size_bytes = props.file_size;
    meta->entries = props.entries;
    meta->raw_bytes = props.raw_key_bytes + props.raw_value_bytes;
    meta->smallest = props.smallest;
    meta->smallest_len = props.smallest_len;
    meta->largest = props.largest;
    meta->largest_len = props.largest_len;
    meta->expiring_entries = props.expiring_entries;
    meta->expire_p50_ms = props.expire_p50_ms;
    props.smallest = props.largest = NULL;
    tl_sst_props_free(&props);
    atomic_fetch_add(&db->flushes, 1);
    atomic_fetch_add(&db->flush_bytes, meta->size_bytes);
    return 0;
fail:
    free(buf);
    if (b)
        tl_sst_builder_abandon(b);
    return rc;
}

/* Flushes the oldest frozen memtable and installs the result. Called by the flush thread only
 * (db->flushing set), without db->mutex. */
static int flush_oldest(struct tl_db *db)
{
    pthread_mutex_lock(&db->mutex);
    struct tl_version *v = db->current;
    if (v->n_imm == 0) {
        pthread_mutex_unlock(&db->mutex);
        return 0;
    }
    struct tl_memtable *m = v->imm[v->n_imm - 1];
    m->refs++;
    uint64_t number = db->next_file++;
    pthread_mutex_unlock(&db->mutex);

    struct tl_file_meta meta;
    bool logged = false; /* the edit is in the manifest: memory must follow */
    int rc = write_memtable(db, m, number, &meta);

    pthread_mutex_lock(&db->mutex);
    if (rc < 0)
        goto out;
    struct tl_version_edit e;
    tl_edit_init(&e);
    if (meta.number && (rc = tl_edit_add_file(&e, &meta)) < 0) {
        char path[TL_PATH_MAX];
        tl_sst_file_path(path, sizeof path, db->dir, meta.number);
        tl_db_delete_file_locked(db, path); /* never logged */
        goto out_edit;
    }
    /* The oldest segment still needed is that of the next memtable to flush. */
    struct tl_version *cur = db->current;
    uint64_t log_number =
        cur->n_imm >= 2 ? cur->imm[cur->n_imm - 2]->wal_number : cur->active->wal_number;
    e.has_log_number = true;
    e.log_number = log_number;
    e.has_next_file = true;
    e.next_file_number = db->next_file;
    e.has_last_seq = true;
    e.last_seq = m->last_seq;
    rc = tl_db_log_edit_locked(db, &e);
    if (rc < 0)
        goto out_edit;
    logged = true;
    struct tl_version *nv = tl_version_clone(cur);
    if (!nv) {
        rc = tl_error(-ENOMEM, "out of memory installing a flushed table");
        goto out_edit;
    }
    /* Drop m (the oldest) from the frozen list. */
    nv->n_imm--;
    m->refs--; /* the clone's reference */
    if ((rc = tl_version_apply(db, nv, &e)) < 0) {
        tl_version_unref_locked(db, nv);
        goto out_edit;
    }
    tl_version_install(db, nv);
    uint64_t old_log = db->log_number;
    db->log_number = log_number;
    for (uint64_t n = old_log; n < log_number; n++) {
        char path[TL_PATH_MAX];
        tl_wal_path(path, sizeof path, db->dir, n);
        if (access(path, F_OK) == 0)
            tl_db_delete_file_locked(db, path);
    }
out_edit:
    tl_edit_free(&e);
out:
    tl_file_meta_free(&meta);
    m->refs--;
    if (m->refs == 0 && m != atomic_load(&db->active))
        tl_memtable_reset(m);
    if (rc < 0 && logged && !db->bg_error) {
        db->bg_error = rc;
        fprintf(stderr,
                "tally: %06llu.sst is in the manifest but could not be installed, writes "
                "stopped until a restart: %s\n",
                (unsigned long long)number, tl_last_error());
    } else if (rc < 0) {
        char what[64];
        snprintf(what, sizeof what, "flush of a memtable to %06llu.sst",
                 (unsigned long long)number);
        tl_bg_failed_locked(db, &db->flush_failure, what, rc);
    } else {
        tl_bg_succeeded_locked(&db->flush_failure);
    }
    pthread_cond_broadcast(&db->done_cond);
    pthread_cond_broadcast(&db->bg_cond);
    pthread_mutex_unlock(&db->mutex);
    return rc;
}

static void *flush_thread_main(void *arg)
{
    struct tl_db *db = arg;
    pthread_mutex_lock(&db->mutex);
    for (;;) {
        while (!db->stopping && !db->bg_error &&
               (db->current->n_imm == 0 || db->dropping || !tl_bg_retry_due(&db->flush_failure))) {
            if (db->flush_failure.error && db->current->n_imm > 0 && !db->dropping)
                pthread_cond_timedwait(&db->bg_cond, &db->mutex, &db->flush_failure.retry_at);
            else
                pthread_cond_wait(&db->bg_cond, &db->mutex);
        }
        if (db->stopping || db->bg_error)
            break;
        db->flushing = true;
        pthread_mutex_unlock(&db->mutex);
        flush_oldest(db);
        tl_release_free_memory();
        pthread_mutex_lock(&db->mutex);
        db->flushing = false;
        pthread_cond_broadcast(&db->done_cond);
    }
    pthread_mutex_unlock(&db->mutex);
    return NULL;
}

int tl_db_flush(tl_db *db)
{
    struct tl_memtable *m = atomic_load(&db->active);
    if (atomic_load(&m->entries) > 0) {
        int rc = switch_memtable(db, m);
        if (rc < 0)
            return rc;
    }
    pthread_mutex_lock(&db->mutex);
    uint64_t failures = db->flush_failure.count;
    while (db->current->n_imm > 0 && !db->bg_error && !db->stopping &&
           db->flush_failure.count == failures)
        pthread_cond_wait(&db->done_cond, &db->mutex);
    int rc = db->bg_error;
    if (rc == 0 && db->flush_failure.count != failures && db->current->n_imm > 0)
        rc = tl_error(db->flush_failure.error, "%s: flush failed (%s); it is retried later",
                      db->dir, db->flush_failure.msg);
    if (rc == 0 && db->current->n_imm > 0)
        rc = tl_error(TL_ECLOSED, "%s is closing: the flush did not finish", db->dir);
    pthread_mutex_unlock(&db->mutex);
    return rc;
}

void tl_db_set_commit_notify(tl_db *db, void (*fn)(void *arg), void *arg)
{
    tl_wal_set_notify(db->wal, fn, arg);
}

int tl_db_count_keys(tl_db *db, uint64_t *count)
{
    tl_iter *it;
    int rc = tl_iter_new(db, &it);
    if (rc < 0)
        return rc;
    uint64_t n = 0;
    for (rc = tl_iter_seek(it, NULL, 0); rc == 0 && tl_iter_valid(it); rc = tl_iter_next(it))
        n++;
    tl_iter_free(it);
    if (rc == 0)
        *count = n;
    return rc;
}

/*
 * Drops every memtable and table. Flushes and compactions are held off meanwhile (a flush
 * finishing after the drop would bring dropped data back); the active memtable is frozen and
 * drained like at a switch, the WAL rolled, and one manifest edit removes every table and moves
 * the replay start past the old segments.
 */
int tl_db_drop_all(tl_db *db)
{
    pthread_mutex_lock(&db->mutex);
    while ((db->dropping || db->switching) && !db->bg_error)
        pthread_cond_wait(&db->done_cond, &db->mutex);
    db->dropping = true;
    while ((db->flushing || db->compacting) && !db->bg_error)
        pthread_cond_wait(&db->done_cond, &db->mutex);
    int rc = db->bg_error;
    struct tl_memtable *m = atomic_load(&db->active);
    struct tl_memtable *next = rc ? NULL : pool_take_locked(db);
    if (!rc && !next)
        rc = tl_error(-ENOMEM, "out of memory for a new memtable of %zu bytes (memtable_bytes)",
                      db->opt.memtable_bytes);
    if (rc < 0)
        goto out;
    db->switching = true;
    uint64_t number = db->next_file++;
    atomic_store(&m->frozen, 1);
    pthread_mutex_unlock(&db->mutex);
    while (atomic_load(&m->writers) > 0)
        sched_yield();
    rc = tl_wal_roll(db->wal, number);
    pthread_mutex_lock(&db->mutex);
    db->switching = false;
    if (rc < 0) {
        atomic_store(&m->frozen, 0);
        goto out;
    }
    struct tl_version_edit e;
    tl_edit_init(&e);
    struct tl_version *cur = db->current;
    for (int l = 0; l < TL_MAX_LEVELS && rc == 0; l++)
        for (size_t i = 0; i < cur->n_files[l] && rc == 0; i++)
            rc = tl_edit_delete_file(&e, l, cur->levels[l][i]->meta.number);
    e.has_log_number = true;
    e.log_number = number;
    e.has_next_file = true;
    e.next_file_number = db->next_file;
    e.has_last_seq = true;
    e.last_seq = tl_wal_next_seq(db->wal) - 1;
    bool logged = false;
    if (rc == 0)
        rc = tl_db_log_edit_locked(db, &e);
    logged = rc == 0;
    struct tl_version *nv = rc == 0 ? tl_version_clone(cur) : NULL;
    if (rc == 0 && !nv)
        rc = tl_error(-ENOMEM, "out of memory dropping every key");
    if (rc == 0) {
        /* The edit is on disk: from here the drop happens in memory whatever else fails. */
        for (int i = 0; i < nv->n_imm; i++)
            nv->imm[i]->refs--;
        nv->n_imm = 0;
        nv->active->refs--;
        nv->active = next;
        next->refs++;
        next->wal_number = number;
        tl_version_apply(db, nv, &e);
        atomic_store(&db->active, next);
        tl_version_install(db, nv);
        for (uint64_t n = db->log_number; n < number; n++) {
            char path[TL_PATH_MAX];
            tl_wal_path(path, sizeof path, db->dir, n);
            if (access(path, F_OK) == 0)
                tl_db_delete_file_locked(db, path);
        }
        db->log_number = number;
    } else if (logged) {
        if (!db->bg_error)
            db->bg_error = rc; /* the manifest holds the edit, memory does not: stop writing */
    } else {
        /* Not logged (or, after a failed append, maybe in the old manifest until the next
         * edit rewrites it): the drop did not happen; m takes writes again. */
        atomic_store(&m->frozen, 0);
    }
    tl_edit_free(&e);
out:
    db->dropping = false;
    pthread_cond_broadcast(&db->done_cond);
    pthread_cond_broadcast(&db->bg_cond);
    pthread_mutex_unlock(&db->mutex);
    return rc;
}

/* ---- open, recovery and close ----------------------------------------------------------- */

/*
 * Recovery replays the WAL into memtables and leaves them as a running engine would: the last
 * one active, the full ones before it frozen for the flush thread. Opening writes no table, so
 * it needs no free space and a restart takes as long as reading the log. Only a log holding more
 * than the max_immutable_memtables + 1 memtables a running engine fills makes recovery write the
 * oldest to tables itself. A memtable's wal_number is the segment of its first record; the edit
 * recovery logs names the oldest memtable's as log_number and, as last_seq, the last record in
 * a table, and replay skips records up to the manifest's last_seq, so that a segment shared by a
 * table and a memtable is never counted twice.
 */
struct replay_state {
    struct tl_db *db;
    struct tl_memtable *m;                      /* records go here */
    struct tl_memtable *held[TL_MAX_IMMUTABLE]; /* full ones for the flush thread, oldest first */
    int n_held;
    struct tl_version_edit *edit; /* tables written during recovery */
    uint64_t segment;             /* the segment being replayed */
    uint64_t skip_through;        /* records up to this one are in tables already */
    uint64_t flushed_seq;         /* the last record in the tables recovery wrote, or as above */
    uint64_t last_seq;
    uint64_t records; /* replayed or skipped */
};

static int recovery_flush(struct replay_state *rs, struct tl_memtable *m)
{
    struct tl_db *db = rs->db;
    struct tl_file_meta meta;
    int rc = write_memtable(db, m, db->next_file++, &meta);
    if (rc < 0)
        return rc;
    if (meta.number)
        rc = tl_edit_add_file(rs->edit, &meta);
    tl_file_meta_free(&meta);
    rs->flushed_seq = m->last_seq;
    return rc;
}

/* Freezes the memtable records go into and gives records an empty one. Past
 * max_immutable_memtables frozen, the oldest is written to a table first and reused. Every
 * memtable is in the pool, which frees them if recovery fails. */
static int hold_memtable(struct replay_state *rs)
{
    struct tl_db *db = rs->db;
    struct tl_memtable *spare;
    if (rs->n_held == db->opt.max_immutable_memtables) {
        int rc = recovery_flush(rs, rs->held[0]);
        if (rc < 0)
            return rc;
        spare = rs->held[0];
        tl_memtable_reset(spare);
        memmove(&rs->held[0], &rs->held[1], sizeof(rs->held[0]) * (size_t)--rs->n_held);
    } else {
        pthread_mutex_lock(&db->mutex);
        spare = pool_take_locked(db);
        pthread_mutex_unlock(&db->mutex);
        if (!spare)
            return tl_error(-ENOMEM, "out of memory for a memtable of %zu bytes (memtable_bytes)",
                            db->opt.memtable_bytes);
    }
    atomic_store(&rs->m->frozen, 1);
    rs->m->refs = 1; /* pool_take_locked passes it over from now */
    rs->held[rs->n_held++] = rs->m;
    rs->m = spare;
    return 0;
}

/* Applies one WAL record over what the memtable holds for its key, without older layers. */
static int replay_record(void *arg, uint64_t seq, const uint8_t *key, size_t klen,
                         const struct tl_record *r)
{
    struct replay_state *rs = arg;
    rs->last_seq = seq;
    rs->records++;
    if (seq <= rs->skip_through)
        return 0;
    uint64_t hash = tl_hash64(key, klen);
    for (int attempt = 0; attempt < 2; attempt++) {
        struct tl_memtable *m = rs->m;
        struct tl_cell *c = tl_memtable_find(m, key, klen, hash);
        struct tl_fold f;
        struct tl_record combined, older;
        struct tl_cell_snap held; /* older's bytes may point into it */
        tl_fold_init(&f);
        tl_fold_add(&f, r);
        if (c) {
            tl_cell_read(m, c, &held);
            tl_cell_snap_to_record(&held, &older);
            tl_fold_add(&f, &older);
        }
        if (tl_fold_result(&f, false, 0, &combined) < 0)
            return tl_error(TL_ECORRUPT, "WAL record %llu increments a byte value",
                            (unsigned long long)seq);
        struct tl_cell_snap s;
        tl_record_to_cell_snap(&combined, &s);
        if (atomic_load(&m->entries) == 0)
            m->wal_number = rs->segment;
        bool ok;
        if (c) {
            ok = tl_cell_write(m, c, &s);
        } else {
            bool inserted;
            ok = tl_memtable_insert(m, key, klen, hash, &s, &inserted) != NULL;
        }
        if (ok) {
            m->last_seq = seq;
            return 0;
        }
        if (atomic_load(&m->entries) == 0)
            break; /* an empty memtable cannot take it */
        int rc = hold_memtable(rs);
        if (rc < 0)
            return rc;
    }
    return tl_error(TL_ETOOBIG,
                    "WAL record %llu does not fit in an empty memtable of %zu bytes; "
                    "raise memtable_bytes",
                    (unsigned long long)seq, rs->db->opt.memtable_bytes);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Numbers of the files in dir with the given suffix (".wal", ".sst"), sorted. */
static int list_numbered(const char *dir, const char *suffix, uint64_t **out, size_t *n)
{
    DIR *d = opendir(dir);
    if (!d)
        return tl_error(-errno, "cannot list %s: %s", dir, strerror(errno));
    size_t cap = 16, k = 0;
    uint64_t *v = malloc(cap * sizeof *v);
    struct dirent *e;
    size_t slen = strlen(suffix);
    while (v && (e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len <= slen || strcmp(e->d_name + len - slen, suffix) != 0)
            continue;
        char *end;
        unsigned long long num = strtoull(e->d_name, &end, 10);
        if (end != e->d_name + len - slen)
            continue;
        if (k == cap) {
            uint64_t *nv = realloc(v, (cap *= 2) * sizeof *v);
            if (!nv) {
                free(v);
                v = NULL;
                break;
            }
            v = nv;
        }
        v[k++] = num;
    }
    closedir(d);
    if (!v)
        return tl_error(-ENOMEM, "out of memory listing %s", dir);
    qsort(v, k, sizeof *v, cmp_u64);
    *out = v;
    *n = k;
    return 0;
}

static int recover(struct tl_db *db, struct tl_version_edit *state)
{
    struct tl_version_edit edit;
    tl_edit_init(&edit);
    struct replay_state rs = {.db = db, .edit = &edit};
    uint64_t *wals = NULL;
    size_t n_wals = 0;
    int rc = list_numbered(db->dir, ".wal", &wals, &n_wals);
    if (rc < 0)
        goto out;
    rs.m = db->pool[0]; /* the active memtable, empty */
    rs.last_seq = rs.skip_through = rs.flushed_seq = state->last_seq;
    /* New files are numbered past every segment here, replayed or not. */
    if (n_wals && wals[n_wals - 1] >= db->next_file)
        db->next_file = wals[n_wals - 1] + 1;
    size_t first = 0;
    while (first < n_wals && wals[first] < state->log_number)
        first++;
    for (size_t i = first; i < n_wals; i++) {
        char path[TL_PATH_MAX];
        tl_wal_path(path, sizeof path, db->dir, wals[i]);
        uint64_t last = rs.last_seq, records = rs.records;
        rs.segment = wals[i];
        rc = tl_wal_replay(path, i + 1 == n_wals, replay_record, &rs, &last);
        if (rc < 0)
            goto out;
        if (last > rs.last_seq)
            rs.last_seq = last;
        /* A segment without records (opened, never written: restarts while flushes fail would
         * pile them up) is needed by nobody. */
        if (rs.records == records)
            unlink(path);
    }

    /* One edit: the tables recovery wrote, the oldest segment a memtable needs (or a new one),
     * and a new WAL segment for the writes to come. */
    uint64_t wal_number = db->next_file++;
    bool tail = atomic_load(&rs.m->entries) > 0;
    if (!tail)
        rs.m->wal_number = wal_number;
    uint64_t log_number = rs.n_held ? rs.held[0]->wal_number : rs.m->wal_number;
    edit.has_log_number = true;
    edit.log_number = log_number;
    edit.has_next_file = true;
    edit.next_file_number = db->next_file;
    edit.has_last_seq = true;
    edit.last_seq = rs.n_held || tail ? rs.flushed_seq : rs.last_seq;
    if ((rc = tl_manifest_log(db->manifest, &edit)) < 0)
        goto out;
    pthread_mutex_lock(&db->mutex);
    rc = tl_version_apply(db, db->current, &edit);
    if (rc == 0) {
        /* The replay's last memtable is the active one, the full ones the frozen ones. */
        struct tl_version *v = db->current;
        for (int i = 0; i < db->n_pool; i++)
            db->pool[i]->refs = 0;
        for (int i = 0; i < rs.n_held; i++) {
            v->imm[i] = rs.held[rs.n_held - 1 - i]; /* newest first */
            v->imm[i]->refs = 1;
        }
        v->n_imm = rs.n_held;
        v->active = rs.m;
        rs.m->refs = 1;
        atomic_store(&rs.m->frozen, 0);
        atomic_store(&db->active, rs.m);
        db->log_number = log_number;
    }
    pthread_mutex_unlock(&db->mutex);
    if (rc < 0)
        goto out;
    rc = tl_wal_open(db->dir, wal_number, rs.last_seq + 1, db->opt.fsync, &db->wal);
    if (rc < 0)
        goto out;
    /* Segments before the oldest a memtable needs are in tables. */
    for (size_t i = 0; i < n_wals && wals[i] < log_number; i++) {
        char path[TL_PATH_MAX];
        tl_wal_path(path, sizeof path, db->dir, wals[i]);
        unlink(path);
    }
out:
    free(wals);
    tl_edit_free(&edit);
    return rc;
}

/* Removes tables that no manifest entry names (left by a crash during a flush or compaction). */
static void remove_orphans(struct tl_db *db)
{
    uint64_t *ssts;
    size_t n;
    if (list_numbered(db->dir, ".sst", &ssts, &n) < 0)
        return;
    for (size_t i = 0; i < n; i++) {
        bool live = false;
        for (int l = 0; l < TL_MAX_LEVELS && !live; l++)
            for (size_t k = 0; k < db->current->n_files[l] && !live; k++)
                live = db->current->levels[l][k]->meta.number == ssts[i];
        if (!live) {
            char path[TL_PATH_MAX];
            tl_sst_file_path(path, sizeof path, db->dir, ssts[i]);
            unlink(path);
        }
    }
    free(ssts);
}

static int lock_dir(struct tl_db *db)
{
    char path[TL_PATH_MAX];
    snprintf(path, sizeof path, "%s/LOCK", db->dir);
    db->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (db->lock_fd < 0)
        return tl_error(-errno, "cannot create %s: %s", path, strerror(errno));
    if (flock(db->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        close(db->lock_fd);
        db->lock_fd = -1;
        if (e == EWOULDBLOCK)
            return tl_error(TL_ELOCKED,
                            "%s is in use by another process (it holds %s); stop that "
                            "process or use another directory",
                            db->dir, path);
        return tl_error(-e, "cannot lock %s: %s", path, strerror(e));
    }
    return 0;
}

static void db_free(struct tl_db *db)
{
    if (db->current) {
        pthread_mutex_lock(&db->mutex);
        tl_version_unref_locked(db, db->current);
        db->current = NULL;
        pthread_mutex_unlock(&db->mutex);
    }
    for (int i = 0; i < db->n_pool; i++)
        tl_memtable_free(db->pool[i]);
    if (db->manifest)
        tl_manifest_close(db->manifest);
    if (db->cache)
        tl_block_cache_free(db->cache);
    for (size_t i = 0; i < db->n_pending_deletes; i++)
        free(db->pending_deletes[i]);
    free(db->pending_deletes);
    free(db->orphans);
    for (int l = 0; l < TL_MAX_LEVELS; l++)
        free(db->level_pointer[l]);
    free(db->manual_begin);
    free(db->manual_end);
    for (int i = 0; i < TL_WRITE_STRIPES; i++)
        pthread_mutex_destroy(&db->stripes[i]);
    pthread_mutex_destroy(&db->mutex);
    pthread_cond_destroy(&db->bg_cond);
    pthread_cond_destroy(&db->done_cond);
    if (db->lock_fd >= 0)
        close(db->lock_fd);
    free(db->dir);
    free(db);
}

int tl_db_open(const char *dir, const struct tl_options *o, tl_db **out)
{
    struct tl_options defaults;
    if (!o) {
        tl_options_init(&defaults);
        o = &defaults;
    }
    int rc = check_options(o);
    if (rc < 0)
        return rc;
    if ((rc = tl_uring_probe()) < 0)
        return rc;
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return tl_error(-errno, "cannot create the data directory %s: %s", dir, strerror(errno));
    struct tl_db *db = calloc(1, sizeof *db);
    if (!db)
        return tl_error(-ENOMEM, "out of memory opening %s", dir);
    db->lock_fd = -1;
    db->opt = *o;
    db->dir = strdup(dir);
    pthread_mutex_init(&db->mutex, NULL);
    pthread_cond_init(&db->bg_cond, NULL);
    pthread_cond_init(&db->done_cond, NULL);
    for (int i = 0; i < TL_WRITE_STRIPES; i++)
        pthread_mutex_init(&db->stripes[i], NULL);
    struct tl_version_edit state;
    tl_edit_init(&state);
    if (!db->dir) {
        rc = tl_error(-ENOMEM, "out of memory opening %s", dir);
        goto fail;
    }
    if ((rc = lock_dir(db)) < 0)
        goto fail;
    db->cache = tl_block_cache_new(o->block_cache_bytes);
    if (!db->cache) {
        rc = tl_error(-ENOMEM, "out of memory for the block cache");
        goto fail;
    }
    /* Random point reads over far more blocks than fit would otherwise evict a block for each
     * one read once. */
    if ((rc = tl_block_cache_admit_on_second_miss(db->cache, o->block_size_bytes)) < 0)
        goto fail;
    if ((rc = tl_manifest_open(dir, &db->manifest, &state)) < 0)
        goto fail;
    db->next_file = state.next_file_number > 2 ? state.next_file_number : 2;
    db->current = tl_version_new();
    struct tl_memtable *active = tl_memtable_new(o->memtable_bytes);
    if (!db->current || !active) {
        tl_memtable_free(active);
        rc = tl_error(-ENOMEM, "out of memory for a memtable of %zu bytes (memtable_bytes)",
                      o->memtable_bytes);
        goto fail;
    }
    db->pool[db->n_pool++] = active;
    db->current->refs = 1;
    db->current->active = active;
    active->refs = 1;
    atomic_store(&db->active, active);
    /* The live tables first, then the WAL on top of them. */
    pthread_mutex_lock(&db->mutex);
    struct tl_version_edit live = state;
    live.n_deleted = 0;
    rc = tl_version_apply(db, db->current, &live);
    pthread_mutex_unlock(&db->mutex);
    if (rc < 0)
        goto fail;
    remove_orphans(db);
    if ((rc = recover(db, &state)) < 0)
        goto fail;
    tl_edit_free(&state);

    if (pthread_create(&db->flush_thread, NULL, flush_thread_main, db) != 0 ||
        pthread_create(&db->compaction_thread, NULL, tl_compaction_thread, db) != 0) {
        rc = tl_error(-EAGAIN, "cannot start the background threads of %s", dir);
        pthread_mutex_lock(&db->mutex);
        db->stopping = true;
        pthread_cond_broadcast(&db->bg_cond);
        pthread_mutex_unlock(&db->mutex);
        pthread_join(db->flush_thread, NULL);
        tl_wal_close(db->wal);
        db_free(db);
        return rc;
    }
    db->threads_started = true;
    *out = db;
    return 0;
fail:
    tl_edit_free(&state);
    if (db->wal)
        tl_wal_close(db->wal);
    db_free(db);
    return rc;
}

void tl_db_stop(tl_db *db)
{
    pthread_mutex_lock(&db->mutex);
    db->stopping = true;
    pthread_cond_broadcast(&db->bg_cond);
    pthread_cond_broadcast(&db->done_cond);
    pthread_mutex_unlock(&db->mutex);
}

int tl_db_close(tl_db *db)
{
    if (!db)
        return 0;
    tl_db_stop(db);
    if (db->threads_started) {
        pthread_join(db->flush_thread, NULL);
        pthread_join(db->compaction_thread, NULL);
    }
    /* A manual compaction's caller (another thread) wakes on stopping and leaves. */
    pthread_mutex_lock(&db->mutex);
    while (db->manual_callers > 0)
        pthread_cond_wait(&db->done_cond, &db->mutex);
    pthread_mutex_unlock(&db->mutex);
    int rc = tl_wal_close(db->wal);
    db_free(db);
    return rc;
}

/* ---- statistics ------------------------------------------------------------------------ */

int tl_db_stats(tl_db *db, struct tl_stats *st)
{
    memset(st, 0, sizeof *st);
    pthread_mutex_lock(&db->mutex);
    struct tl_version *v = db->current;
    st->num_levels = db->opt.num_levels;
    for (int l = 0; l < db->opt.num_levels; l++) {
        st->levels[l].files = v->n_files[l];
        for (size_t i = 0; i < v->n_files[l]; i++) {
            const struct tl_file_meta *m = &v->levels[l][i]->meta;
            st->levels[l].bytes += m->size_bytes;
            st->levels[l].raw_bytes += m->raw_bytes;
            st->levels[l].entries += m->entries;
        }
    }
    st->memtables = 1 + (uint64_t)v->n_imm;
    st->memtable_bytes = tl_memtable_bytes_used(v->active);
    st->memtable_entries = atomic_load(&v->active->entries);
    for (int i = 0; i < v->n_imm; i++) {
        st->memtable_bytes += tl_memtable_bytes_used(v->imm[i]);
        st->memtable_entries += atomic_load(&v->imm[i]->entries);
    }
    pthread_mutex_unlock(&db->mutex);
    tl_wal_stats(db->wal, &st->wal_bytes, &st->wal_syncs);
    st->flushes = atomic_load(&db->flushes);
    st->flush_bytes = atomic_load(&db->flush_bytes);
    st->compactions = atomic_load(&db->compactions);
    st->compaction_bytes_read = atomic_load(&db->compaction_read);
    st->compaction_bytes_written = atomic_load(&db->compaction_written);
    st->entries_dropped = atomic_load(&db->entries_dropped);
    st->write_amplification =
        st->flush_bytes
            ? (double)(st->flush_bytes + st->compaction_bytes_written) / (double)st->flush_bytes
            : 0.0;
    tl_block_cache_stats(db->cache, &st->block_cache_hits, &st->block_cache_misses,
                         &st->block_cache_bytes);
    st->stall_slowdowns = atomic_load(&db->stall_slowdowns);
    st->stall_stops = atomic_load(&db->stall_stops);
    st->last_seq = tl_wal_next_seq(db->wal) - 1;
    return 0;
}
