/*
 * test_faults.c - the engine under injected I/O faults (storage/fault.h, linked against
 * libtallystore-faults.a).
 *
 * For every fault kind (EIO, ENOSPC, a short write, a failed fsync) against every kind of file
 * (WAL, SSTable, manifest), and for "fail the next N", "fail after N successes" and "fail until
 * cleared", it checks:
 * - the write that meets the fault returns an error (the errno of the fault), never success;
 * - while the fault lasts, reads return what was acknowledged (plus, at most, what failed);
 * - once the fault clears, writes succeed again without reopening the database;
 * - flushes and compactions that failed are retried, keep their inputs and leave no partial or
 *   unreferenced table behind;
 * - after closing, every WAL segment but the last replays without a torn record, every table
 *   verifies, `tallyctl verify --dir` passes (when TALLYCTL is set), and a reopened database
 *   holds every acknowledged write: a counter is at least the sum of its acknowledged
 *   increments and at most that plus the increments that answered an error (a failed write's
 *   outcome is unknown to its caller, never a false success).
 * It ends by printing the figures: faults injected per file and kind, errors answered, WAL
 * repairs, and flush and compaction failures retried.
 */
#include <dirent.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include "db_impl.h"
#include "fault.h"
#include "testutil.h"
#include "wal.h"

#define KEYS            64
#define BULK_KEYS       40000
#define WARM_WRITES     200
#define BROKEN_WRITES   20
#define RESUME_WAIT_MS  5000
#define THREADS         4
#define THREAD_WRITES   3000
#define SMALL_MEMTABLE  (128u << 10)
#define SMALL_VALUE_MAX 4096
#define PATH_BYTES      4200

/* What the database must hold: per key, the acknowledged increments and those that failed. */
struct model {
    int64_t acked[BULK_KEYS];
    int64_t maybe[BULK_KEYS];
};

static struct model model;
static const char *kind_text[TL_FAULT_KINDS] = {"eio", "enospc", "short", "sync"};
static const char *file_text[TL_FAULT_FILES] = {"wal", "sst", "manifest"};

/* Figures, printed at the end. */
static uint64_t errors_answered, writes_acked, wal_failures, wal_repairs, flush_failures,
    compaction_failures, scenarios;

static int errno_of(enum tl_fault_kind k)
{
    return k == TL_FAULT_EIO || k == TL_FAULT_SYNC ? -EIO : -ENOSPC;
}

static void key_of(int i, char *buf, size_t cap)
{
    snprintf(buf, cap, "key%06d", i);
}

static tl_db *open_db(const char *dir, enum tl_fsync_mode mode, bool small)
{
    struct tl_options o;
    tl_options_init(&o);
    o.fsync = mode;
    o.block_cache_bytes = 1 << 20;
    if (small) {
        o.memtable_bytes = SMALL_MEMTABLE;
        o.max_value_bytes = SMALL_VALUE_MAX;
        o.max_immutable_memtables = 2;
        o.background_compaction = false; /* the compaction test runs its own */
    }
    tl_db *db;
    CHECK_OK(tl_db_open(dir, &o, &db));
    return db;
}

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* One increment of key i, acknowledged as tallyd acknowledges it: once its WAL record is on
 * disk (always) or in the kernel (everysec). Returns 0 or the error; updates the model. */
static int incr(tl_db *db, int i, enum tl_fsync_mode mode, struct model *m)
{
    char key[32];
    key_of(i, key, sizeof key);
    int64_t result;
    uint64_t seq;
    int rc = tl_db_incr(db, key, strlen(key), 1, &result, &seq);
    if (rc == 0)
        rc = tl_db_wait(db, seq, mode == TL_FSYNC_ALWAYS ? TL_WAIT_DURABLE : TL_WAIT_WRITTEN);
    if (rc == 0) {
        m->acked[i]++;
        __atomic_fetch_add(&writes_acked, 1, __ATOMIC_RELAXED);
    } else {
        m->maybe[i]++;
        __atomic_fetch_add(&errors_answered, 1, __ATOMIC_RELAXED);
    }
    return rc;
}

/* Key i reads as the model allows: between the acknowledged count and that plus the failed. */
static void check_key(tl_db *db, int i, const struct model *m)
{
    char key[32];
    key_of(i, key, sizeof key);
    struct tl_val v;
    int found = tl_db_get(db, key, strlen(key), &v);
    CHECK(found >= 0);
    int64_t have = found ? v.i : 0;
    if (found)
        CHECK_EQ_INT(v.type, TL_VAL_INT);
    tl_val_clear(&v);
    if (have < m->acked[i] || have > m->acked[i] + m->maybe[i]) {
        fprintf(stderr, "%s: %lld, expected %lld acknowledged (+ up to %lld failed)\n", key,
                (long long)have, (long long)m->acked[i], (long long)m->maybe[i]);
        exit(1);
    }
}

static void check_keys(tl_db *db, int n, const struct model *m)
{
    for (int i = 0; i < n; i++)
        check_key(db, i, m);
}

/* Increments until one succeeds, for at most RESUME_WAIT_MS: writes resume once the fault
 * has cleared, without reopening. */
static void writes_resume(tl_db *db, int i, enum tl_fsync_mode mode)
{
    int64_t deadline = now_ms() + RESUME_WAIT_MS;
    int rc;
    while ((rc = incr(db, i, mode, &model)) < 0) {
        if (now_ms() > deadline) {
            fprintf(stderr, "writes did not resume %d ms after the fault cleared: %s\n",
                    RESUME_WAIT_MS, tl_last_error());
            exit(1);
        }
        usleep(2000);
    }
}

static bool has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Tables in dir, by name; the caller frees. */
static size_t list_files(const char *dir, const char *suffix, char ***out)
{
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    size_t n = 0, cap = 16;
    char **names = malloc(cap * sizeof *names);
    CHECK(names != NULL);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!has_suffix(de->d_name, suffix))
            continue;
        if (n == cap) {
            cap *= 2;
            names = realloc(names, cap * sizeof *names);
            CHECK(names != NULL);
        }
        names[n++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    *out = names;
    return n;
}

static void free_list(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Every .sst file in the directory is a live table: no partial output or orphan is left.
 * Waits for the background threads to be idle first. */
static void check_no_stray_tables(tl_db *db, const char *dir)
{
    pthread_mutex_lock(&db->mutex);
    while (db->flushing || db->compacting)
        pthread_cond_wait(&db->done_cond, &db->mutex);
    size_t live = 0;
    for (int l = 0; l < TL_MAX_LEVELS; l++)
        live += db->current->n_files[l];
    size_t orphans = db->n_orphans;
    char **names;
    size_t n = list_files(dir, ".sst", &names);
    pthread_mutex_unlock(&db->mutex);
    if (n != live + orphans) {
        fprintf(stderr, "%s holds %zu tables, but %zu are live and %zu kept as orphans\n", dir, n,
                live, orphans);
        exit(1);
    }
    free_list(names, n);
}

static int count_record(void *arg, uint64_t seq, const uint8_t *key, size_t klen,
                        const struct tl_record *r)
{
    (void)seq, (void)key, (void)klen, (void)r;
    (*(uint64_t *)arg)++;
    return 0;
}

/* The files of a closed database: every WAL segment but the newest replays whole (a torn or
 * bad record anywhere is an error), every table verifies, and tallyctl verify agrees. */
static void check_files(const char *dir)
{
    char **names;
    size_t n = list_files(dir, ".wal", &names);
    char path[PATH_BYTES];
    for (size_t i = 0; i + 1 < n; i++) {
        uint64_t records = 0, last = 0;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        CHECK_OK(tl_wal_replay(path, false, count_record, &records, &last));
    }
    free_list(names, n);
    n = list_files(dir, ".sst", &names);
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        CHECK_OK(tl_sst_verify(path, NULL, NULL));
    }
    free_list(names, n);
    const char *tallyctl = getenv("TALLYCTL");
    if (tallyctl && *tallyctl) {
        char cmd[2 * PATH_BYTES];
        snprintf(cmd, sizeof cmd, "'%s' verify --dir '%s' >/dev/null 2>&1", tallyctl, dir);
        if (system(cmd) != 0) {
            fprintf(stderr, "tallyctl verify --dir %s failed:\n", dir);
            snprintf(cmd, sizeof cmd, "'%s' verify --dir '%s' >&2", tallyctl, dir);
            if (system(cmd) == 0)
                fprintf(stderr, "(and passed when run again)\n");
            exit(1);
        }
    }
}

/* Adds the database's failure figures to the totals. */
static void collect(tl_db *db)
{
    uint64_t failures, repairs;
    bool broken;
    tl_wal_fault_stats(db->wal, &failures, &repairs, &broken);
    wal_failures += failures;
    wal_repairs += repairs;
    pthread_mutex_lock(&db->mutex);
    flush_failures += db->flush_failure.count;
    compaction_failures += db->compaction_failure.count;
    pthread_mutex_unlock(&db->mutex);
}

/* A fresh directory, model and database for one scenario. */
static tl_db *scenario_start(const char *name, enum tl_fsync_mode mode, bool small, char **dir)
{
    *dir = test_tmpdir(name);
    memset(&model, 0, sizeof model);
    return open_db(*dir, mode, small);
}

/* Ends a scenario: checks the n keys, closes, checks the files, reopens and checks the keys
 * against the model again, and removes the directory. */
static void scenario_end(tl_db *db, char *dir, enum tl_fsync_mode mode, bool small, int n)
{
    check_keys(db, n, &model);
    collect(db);
    CHECK_OK(tl_db_close(db));
    check_files(dir);
    db = open_db(dir, mode, small);
    check_keys(db, n, &model);
    CHECK_OK(tl_db_close(db));
    scenarios++;
    test_rmdir(dir);
    free(dir);
}

/*
 * A WAL fault against acknowledged increments. count 0 is "until cleared" (cleared by the
 * test), else "the next count"; skip lets that many writes through first.
 */
static void test_wal_fault(enum tl_fault_kind kind, enum tl_fsync_mode mode, uint64_t skip,
                           uint64_t count)
{
    char *dir;
    tl_db *db = scenario_start("faults-wal", mode, false, &dir);
    for (int i = 0; i < WARM_WRITES; i++)
        CHECK_OK(incr(db, i % KEYS, mode, &model));

    uint64_t before = tl_fault_injected(TL_FAULT_WAL, kind);
    tl_fault_set(TL_FAULT_WAL, kind, skip, count);
    int rc = 0, i = 0;
    /* Under everysec a sync fault is met by the commit thread's sync: wait for durability. */
    bool sync_everysec = kind == TL_FAULT_SYNC && mode != TL_FSYNC_ALWAYS;
    for (; i < (int)skip + 1 && rc == 0; i++) {
        rc = incr(db, i % KEYS, mode, &model);
        if (rc == 0 && sync_everysec)
            rc = tl_db_wait(db, tl_db_written_seq(db), TL_WAIT_DURABLE);
    }
    if (sync_everysec) {
        /* The commit thread's timed sync meets the fault. A waiter sees the error only if it
         * waits at that moment (a repair may have made the records durable first): either
         * way the fault fires and the records end up durable. */
        CHECK(rc == 0 || rc == -EIO);
        int64_t deadline = now_ms() + RESUME_WAIT_MS;
        while (tl_fault_injected(TL_FAULT_WAL, kind) == before && now_ms() < deadline)
            usleep(1000);
    } else if (rc == 0 && count > 0 && i == (int)skip + 1) {
        /* A passing fault, and a repair (10 ms later) finished before this thread looked:
         * the write is stored, so success is the true answer. Until cleared, never. */
    } else if (rc != errno_of(kind)) {
        fprintf(stderr, "wal %s skip %llu: write %d answered %d (%s), expected %d\n",
                kind_text[kind], (unsigned long long)skip, i, rc, rc ? tl_last_error() : "",
                errno_of(kind));
        exit(1);
    } else {
        CHECK(strstr(tl_last_error(), ".wal") != NULL);
    }
    CHECK_EQ_INT(i, (int)skip + 1);
    CHECK(tl_fault_injected(TL_FAULT_WAL, kind) > before);
    if (count == 0) {
        /* Until cleared: every write fails at once, reads go on. */
        for (int k = 0; k < BROKEN_WRITES; k++)
            CHECK(incr(db, k % KEYS, mode, &model) < 0);
        check_keys(db, KEYS, &model);
        tl_fault_clear(TL_FAULT_WAL);
    }
    writes_resume(db, 0, mode);
    for (int k = 0; k < WARM_WRITES; k++)
        CHECK_OK(incr(db, k % KEYS, mode, &model));
    scenario_end(db, dir, mode, false, KEYS);
}

/* A fault that outlasts the database: closed while the WAL is broken, reopened once the fault
 * is gone. What was acknowledged is there; a torn record left by the fault is cut. */
static void test_wal_fault_at_close(enum tl_fault_kind kind)
{
    char *dir;
    tl_db *db = scenario_start("faults-close", TL_FSYNC_ALWAYS, false, &dir);
    for (int i = 0; i < WARM_WRITES; i++)
        CHECK_OK(incr(db, i % KEYS, TL_FSYNC_ALWAYS, &model));
    tl_fault_set(TL_FAULT_WAL, kind, 0, 0);
    CHECK_EQ_INT(incr(db, 0, TL_FSYNC_ALWAYS, &model), errno_of(kind));
    collect(db);
    CHECK(tl_db_close(db) < 0); /* the last repair fails too */
    tl_fault_clear(TL_FAULT_WAL);
    db = open_db(dir, TL_FSYNC_ALWAYS, false);
    check_keys(db, KEYS, &model);
    CHECK_OK(incr(db, 1, TL_FSYNC_ALWAYS, &model));
    scenario_end(db, dir, TL_FSYNC_ALWAYS, false, KEYS);
}

/* Bulk writes of distinct keys into small memtables, so that flushes run; stops at the first
 * error when stop_at_error. Returns the number of keys written (tried). */
static int bulk_writes(tl_db *db, int from, int to, bool stop_at_error)
{
    int i;
    for (i = from; i < to; i++) {
        int rc = incr(db, i, TL_FSYNC_EVERYSEC, &model);
        if (rc < 0 && stop_at_error)
            return i + 1;
        CHECK(stop_at_error || rc == 0);
    }
    return i;
}

/* An SSTable fault until cleared: flushes fail and are retried, writes go on until every
 * frozen memtable slot is taken, then fail; reads go on; no partial table is left; once
 * cleared, the flushes succeed and writes resume. */
static void test_sst_fault(enum tl_fault_kind kind)
{
    char *dir;
    tl_db *db = scenario_start("faults-sst", TL_FSYNC_EVERYSEC, true, &dir);
    int n = bulk_writes(db, 0, 2000, false);
    CHECK_OK(tl_db_flush(db));
    tl_fault_set(TL_FAULT_SST, kind, 0, 0);
    int stop = bulk_writes(db, n, BULK_KEYS / 2, true);
    if (stop >= BULK_KEYS / 2) {
        fprintf(stderr, "sst %s: %d writes succeeded while every flush failed\n", kind_text[kind],
                stop - n);
        exit(1);
    }
    CHECK(strstr(tl_last_error(), ".sst") != NULL);
    CHECK(tl_fault_injected(TL_FAULT_SST, kind) > 0);
    check_keys(db, stop, &model);
    check_no_stray_tables(db, dir);
    tl_fault_clear(TL_FAULT_SST);
    writes_resume(db, stop, TL_FSYNC_EVERYSEC);
    n = bulk_writes(db, stop + 1, stop + 3000, false);
    CHECK_OK(tl_db_flush(db));
    check_no_stray_tables(db, dir);
    scenario_end(db, dir, TL_FSYNC_EVERYSEC, true, n);
}

static size_t count_files(const char *dir, const char *suffix)
{
    char **names;
    size_t n = list_files(dir, suffix, &names);
    free_list(names, n);
    return n;
}

static tl_db *open_with(const char *dir, size_t memtable_bytes, int max_immutable)
{
    struct tl_options o;
    tl_options_init(&o);
    o.fsync = TL_FSYNC_EVERYSEC;
    o.block_cache_bytes = 1 << 20;
    o.memtable_bytes = memtable_bytes;
    o.max_value_bytes = SMALL_VALUE_MAX;
    o.max_immutable_memtables = max_immutable;
    o.background_compaction = false;
    tl_db *db;
    CHECK_OK(tl_db_open(dir, &o, &db));
    return db;
}

/*
 * A restart on a disk where no table can be written: recovery writes none (what it replays
 * waits in memtables for the flush thread), so the database opens, reads what was acknowledged,
 * takes writes while its memtables have room, and reopens again without counting anything
 * twice; once the fault clears, the flush writes the tables and the old segments go.
 */
static void test_sst_fault_at_open(enum tl_fault_kind kind)
{
    char *dir;
    tl_db *db = scenario_start("faults-open", TL_FSYNC_EVERYSEC, true, &dir);
    tl_fault_set(TL_FAULT_SST, kind, 0, 0);
    int n = bulk_writes(db, 0, BULK_KEYS / 2, true); /* until the frozen memtables are full */
    CHECK(n < BULK_KEYS / 2);
    CHECK_OK(tl_db_close(db));
    CHECK_EQ_INT(count_files(dir, ".sst"), 0);
    /* Opens that write nothing leave no segment behind each (each opens a new one). */
    size_t segments = count_files(dir, ".wal");
    for (int round = 0; round < 3; round++) {
        CHECK_OK(tl_db_close(open_db(dir, TL_FSYNC_EVERYSEC, true)));
        CHECK(count_files(dir, ".wal") <= segments + 1);
    }
    for (int round = 0; round < 2; round++) {
        db = open_db(dir, TL_FSYNC_EVERYSEC, true);
        check_keys(db, n, &model);
        struct tl_stats st;
        CHECK_OK(tl_db_stats(db, &st));
        CHECK(st.memtables > 1); /* the replayed ones, frozen */
        /* The replay fills the memtables about as full as they were: a write may find room,
         * else it fails on the flush, naming the table. */
        if (incr(db, n++, TL_FSYNC_EVERYSEC, &model) < 0)
            CHECK(strstr(tl_last_error(), ".sst") != NULL);
        CHECK_OK(tl_db_close(db));
        CHECK_EQ_INT(count_files(dir, ".sst"), 0);
    }
    db = open_db(dir, TL_FSYNC_EVERYSEC, true);
    check_keys(db, n, &model);
    tl_fault_clear(TL_FAULT_SST);
    writes_resume(db, n++, TL_FSYNC_EVERYSEC);
    CHECK_OK(tl_db_flush(db));
    CHECK(count_files(dir, ".sst") > 0);
    CHECK(count_files(dir, ".wal") <= 1); /* the newest (made by its first write) */
    check_no_stray_tables(db, dir);
    scenario_end(db, dir, TL_FSYNC_EVERYSEC, true, n);
}

/* Recovery keeps the last segment behind a new one, so it syncs it first (records of it may be
 * in the page cache alone); a failed sync fails the open, and the next open has everything. */
static void test_wal_sync_at_open(void)
{
    char *dir;
    tl_db *db = scenario_start("faults-reopen-sync", TL_FSYNC_EVERYSEC, false, &dir);
    int n = bulk_writes(db, 0, KEYS, false);
    CHECK_OK(tl_db_close(db));
    struct tl_options o;
    tl_options_init(&o);
    tl_fault_set(TL_FAULT_WAL, TL_FAULT_SYNC, 0, 1);
    CHECK(tl_db_open(dir, &o, &db) == -EIO);
    CHECK(strstr(tl_last_error(), "after replaying it") != NULL);
    tl_fault_clear(TL_FAULT_WAL);
    db = open_db(dir, TL_FSYNC_EVERYSEC, false);
    scenario_end(db, dir, TL_FSYNC_EVERYSEC, false, n);
}

/*
 * A log longer than recovery holds: replayed into memtables 1.5 times the size, with one
 * frozen allowed, recovery writes the oldest one to a table, cutting a segment in the middle,
 * and holds the rest. SSTable writes then fail, so the held ones are (most likely) still in
 * memory at the close; the next recovery replays the segments they came from and must skip the
 * records already in the tables.
 */
static void test_recovery_split_segments(void)
{
    char *dir;
    tl_db *db = scenario_start("faults-split", TL_FSYNC_EVERYSEC, true, &dir);
    /* Keys already in tables: the increments below are logged as merges, which would count
     * twice if replayed twice (a first increment is logged as the value it sets). */
    int n = bulk_writes(db, 0, BULK_KEYS / 2, false);
    CHECK_OK(tl_db_flush(db));
    tl_fault_set(TL_FAULT_SST, TL_FAULT_EIO, 0, 0);
    n = bulk_writes(db, 0, n, true);
    CHECK_OK(tl_db_close(db));
    tl_fault_clear(TL_FAULT_SST);
    db = open_with(dir, SMALL_MEMTABLE * 3 / 2, 1);
    tl_fault_set(TL_FAULT_SST, TL_FAULT_EIO, 0, 0);
    CHECK(count_files(dir, ".sst") > 0);
    check_keys(db, n, &model);
    CHECK_OK(tl_db_close(db));
    tl_fault_clear(TL_FAULT_SST);
    db = open_db(dir, TL_FSYNC_EVERYSEC, true);
    check_keys(db, n, &model);
    CHECK_OK(tl_db_flush(db));
    scenario_end(db, dir, TL_FSYNC_EVERYSEC, true, n);
}

/* A manifest fault while a flush logs its table: the flush fails (the table is kept, since the
 * edit may be on disk), is retried to a new manifest file, and the kept table is deleted. With
 * count 0 the fault lasts until cleared and writes fail once the frozen memtables are full. */
static void test_manifest_fault(enum tl_fault_kind kind, uint64_t count)
{
    char *dir;
    tl_db *db = scenario_start("faults-manifest", TL_FSYNC_EVERYSEC, true, &dir);
    int n = bulk_writes(db, 0, 1500, false);
    tl_fault_set(TL_FAULT_MANIFEST, kind, 0, count);
    int rc = tl_db_flush(db);
    CHECK_EQ_INT(rc, errno_of(kind));
    CHECK(strstr(tl_last_error(), "MANIFEST") != NULL);
    check_keys(db, n, &model);
    if (count == 0) {
        int stop = bulk_writes(db, n, BULK_KEYS / 2, true);
        CHECK(stop < BULK_KEYS / 2);
        check_keys(db, stop, &model);
        tl_fault_clear(TL_FAULT_MANIFEST);
        writes_resume(db, stop, TL_FSYNC_EVERYSEC);
        n = stop + 1;
    }
    CHECK_OK(tl_db_flush(db));
    n = bulk_writes(db, n, n + 1500, false);
    CHECK_OK(tl_db_flush(db));
    check_no_stray_tables(db, dir);
    pthread_mutex_lock(&db->mutex);
    CHECK_EQ_INT(db->n_orphans, 0);
    pthread_mutex_unlock(&db->mutex);
    scenario_end(db, dir, TL_FSYNC_EVERYSEC, true, n);
}

/* A compaction that meets a fault fails and keeps its inputs; the next one succeeds. */
static void test_compaction_fault(enum tl_fault_kind kind)
{
    char *dir;
    tl_db *db = scenario_start("faults-compact", TL_FSYNC_EVERYSEC, true, &dir);
    int n = 0;
    for (int round = 0; round < 3; round++) {
        n = bulk_writes(db, n, n + 800, false);
        CHECK_OK(tl_db_flush(db));
    }
    tl_fault_set(TL_FAULT_SST, kind, 0, 1);
    CHECK_EQ_INT(tl_db_compact_range(db, NULL, 0, NULL, 0), errno_of(kind));
    compaction_failures++;
    check_no_stray_tables(db, dir);
    check_keys(db, n, &model);
    CHECK_OK(tl_db_compact_range(db, NULL, 0, NULL, 0));
    check_no_stray_tables(db, dir);
    scenario_end(db, dir, TL_FSYNC_EVERYSEC, true, n);
}

/* Writers on several threads while short writes strike the WAL again and again: every thread
 * sees errors and successes, and every acknowledged increment survives. */
struct writer {
    tl_db *db;
    int first_key;
    struct model *m;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    for (int k = 0; k < THREAD_WRITES; k++) {
        if (incr(w->db, w->first_key + k % 8, TL_FSYNC_ALWAYS, w->m) < 0)
            usleep(500);
    }
    return NULL;
}

static void test_concurrent_writers_under_faults(void)
{
    char *dir;
    tl_db *db = scenario_start("faults-threads", TL_FSYNC_ALWAYS, true, &dir);
    pthread_t th[THREADS];
    struct writer w[THREADS];
    for (int t = 0; t < THREADS; t++) {
        w[t] = (struct writer){.db = db, .first_key = t * 8, .m = &model};
        CHECK(pthread_create(&th[t], NULL, writer_main, &w[t]) == 0);
    }
    /* Every 50th WAL write is cut short, three times in a row each time. */
    for (int round = 0; round < 10; round++) {
        tl_fault_set(TL_FAULT_WAL, round % 2 ? TL_FAULT_SHORT : TL_FAULT_SYNC, 50, 3);
        usleep(20000);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    tl_fault_clear_all();
    writes_resume(db, 0, TL_FSYNC_ALWAYS);
    scenario_end(db, dir, TL_FSYNC_ALWAYS, true, THREADS * 8);
}

/* A blind merge (a window's coarser bucket) refused by a broken WAL leaves no key behind: not
 * to reads, not to an iterator, not to a later write, not after a flush and a reopen. */
static void test_refused_blind_merge(void)
{
    char *dir = test_tmpdir("faults-blind");
    tl_db *db = open_db(dir, TL_FSYNC_ALWAYS, false);
    tl_fault_set(TL_FAULT_WAL, TL_FAULT_EIO, 0, 0);
    CHECK(tl_db_put_int(db, "other", 5, 1, 0, NULL) < 0); /* breaks the WAL */
    CHECK(tl_db_merge_expire(db, "blind", 5, 5, INT64_C(1) << 50, NULL) < 0);
    struct tl_val v;
    CHECK_EQ_INT(tl_db_get(db, "blind", 5, &v), 0);
    tl_fault_clear(TL_FAULT_WAL);
    int64_t deadline = now_ms() + RESUME_WAIT_MS;
    while (tl_db_put_int(db, "other", 5, 2, 0, NULL) < 0 && now_ms() < deadline)
        usleep(10000);
    bool existed = true;
    CHECK_OK(tl_db_set_expiry(db, "blind", 5, 0, &existed, NULL));
    CHECK(!existed);
    for (int round = 0; round < 2; round++) {
        CHECK_EQ_INT(tl_db_get(db, "blind", 5, &v), 0);
        uint64_t keys;
        CHECK_OK(tl_db_count_keys(db, &keys));
        CHECK_EQ_INT(keys, 1); /* "other" alone */
        CHECK_OK(tl_db_flush(db));
        CHECK_OK(tl_db_close(db));
        db = open_db(dir, TL_FSYNC_ALWAYS, false);
    }
    CHECK_OK(tl_db_close(db));
    test_rmdir(dir);
    free(dir);
    scenarios++;
}

int main(void)
{
    test_require_uring();
    setvbuf(stdout, NULL, _IOLBF, 0);
    static const enum tl_fault_kind kinds[] = {TL_FAULT_EIO, TL_FAULT_ENOSPC, TL_FAULT_SHORT,
                                               TL_FAULT_SYNC};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        enum tl_fault_kind kind = kinds[k];
        test_wal_fault(kind, TL_FSYNC_ALWAYS, 0, 1); /* the next one */
        test_wal_fault(kind, TL_FSYNC_ALWAYS, 0, 0); /* until cleared */
        test_wal_fault(kind, TL_FSYNC_ALWAYS, 7, 2); /* after 7 successes, the next two */
        test_wal_fault_at_close(kind);
        test_sst_fault(kind);
        test_sst_fault_at_open(kind);
        test_compaction_fault(kind);
        printf("test_faults: %s: wal, sst and compaction scenarios passed\n", kind_text[kind]);
    }
    /* everysec: a write acknowledged as written, then a failed fsync: rewritten, never lost. */
    test_wal_fault(TL_FAULT_SYNC, TL_FSYNC_EVERYSEC, 0, 1);
    test_wal_fault(TL_FAULT_EIO, TL_FSYNC_EVERYSEC, 0, 0);
    test_wal_fault(TL_FAULT_SHORT, TL_FSYNC_EVERYSEC, 3, 0);
    test_manifest_fault(TL_FAULT_EIO, 1);
    test_manifest_fault(TL_FAULT_SHORT, 1);
    test_manifest_fault(TL_FAULT_SYNC, 1);
    test_manifest_fault(TL_FAULT_ENOSPC, 0);
    test_concurrent_writers_under_faults();
    test_refused_blind_merge();
    test_wal_sync_at_open();
    test_recovery_split_segments();

    printf("test_faults: %llu scenarios passed\n", (unsigned long long)scenarios);
    tl_fault_report(stdout, "test_faults");
    printf("test_faults: writes acknowledged %llu, errors answered %llu\n",
           (unsigned long long)writes_acked, (unsigned long long)errors_answered);
    printf("test_faults: WAL failures %llu, WAL repairs %llu, flush failures %llu, compaction "
           "failures %llu\n",
           (unsigned long long)wal_failures, (unsigned long long)wal_repairs,
           (unsigned long long)flush_failures, (unsigned long long)compaction_failures);
    for (int f = 0; f < TL_FAULT_FILES; f++)
        for (int k = 0; k < TL_FAULT_KINDS; k++)
            if (tl_fault_injected((enum tl_fault_file)f, (enum tl_fault_kind)k) == 0) {
                fprintf(stderr, "no %s fault was injected into %s files\n", kind_text[k],
                        file_text[f]);
                exit(1);
            }
    return 0;
}
