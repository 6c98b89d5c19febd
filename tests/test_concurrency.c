/*
 * test_concurrency.c - concurrent increments lose nothing while memtables switch and flush.
 *
 * Four threads call tl_db_incr on shared keys (every thread) and private keys (one thread
 * each) for at most RUN_MS milliseconds or MAX_OPS operations each, whichever comes first (a
 * bound on the run time, not a timed assertion). Each thread counts its own increments exactly
 * per key; on a private key the returned result and a tl_db_get must equal the thread's own
 * running total. A fifth thread calls tl_db_flush and tl_db_compact_range (whole and partial)
 * meanwhile, and the memtable is small, so memtables are frozen and flushed many times. At the
 * end every key must hold exactly the sum of all threads' increments (through tl_db_get and a
 * full iterator scan), before and after close + reopen. Every increment is preceded by a
 * tl_db_prefetch hint for its key (stages in turn). Then tl_db_drop_all runs 20 times while
 * two threads read shared keys and one increments them (drop_phase). Meant to run clean under
 * -fsanitize=thread too.
 *
 * Usage: test_concurrency [seed]; the seed also comes from $TALLY_SEED, else from the time.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tallystore.h"
#include "testutil.h"

#define NTHREADS 4
#define NSHARED  64
#define NPRIVATE 3000 /* per thread */
#define NKEYS    (NSHARED + NTHREADS * NPRIVATE)
#define RUN_MS   3000
#define MAX_OPS  1000000
#define KEY_CAP  64

static uint64_t seed;
static tl_db *db;
static char *dir;
static atomic_bool stop;
static atomic_int workers_done;

struct worker {
    pthread_t tid;
    int index;
    uint64_t rng;
    int64_t *counts; /* per key: the sum of this thread's acknowledged increments */
    bool *touched;
    long ops, gets;
    char err[512]; /* set on failure */
};

static struct worker workers[NTHREADS];
static long flushes, compactions;
static char bg_err[512];

static size_t key_of(int k, char *buf)
{
    if (k < NSHARED)
        return (size_t)snprintf(buf, KEY_CAP, "shared:%d", k);
    int t = (k - NSHARED) / NPRIVATE, j = (k - NSHARED) % NPRIVATE;
    /* Long-ish keys so that inserts fill the small memtable quickly. */
    return (size_t)snprintf(buf, KEY_CAP, "private:thread%d:key%05d:padding-padding", t, j);
}

/* The index of the key named (k, kl), or -1. */
static int key_index(const char *k, size_t kl)
{
    char buf[KEY_CAP], key[KEY_CAP];
    int t, j, n = -1;
    if (kl >= KEY_CAP)
        return -1;
    memcpy(buf, k, kl);
    buf[kl] = 0;
    if (sscanf(buf, "shared:%d%n", &j, &n) == 1 && n == (int)kl && j >= 0 && j < NSHARED)
        n = j;
    else if (sscanf(buf, "private:thread%d:key%d", &t, &j) == 2 && t >= 0 && t < NTHREADS &&
             j >= 0 && j < NPRIVATE)
        n = NSHARED + t * NPRIVATE + j;
    else
        return -1;
    size_t len = key_of(n, key);
    return len == kl && memcmp(key, k, kl) == 0 ? n : -1;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *worker_main(void *p)
{
    struct worker *w = p;
    int64_t deadline = now_ms() + RUN_MS;
    char key[KEY_CAP];
    for (long op = 0; op < MAX_OPS && !atomic_load(&stop); op++) {
        if ((op & 255) == 0 && now_ms() > deadline)
            break;
        uint64_t r = test_rand(&w->rng);
        bool shared = (r & 3) == 0;
        int k = shared ? (int)((r >> 8) % NSHARED)
                       : NSHARED + w->index * NPRIVATE + (int)((r >> 8) % NPRIVATE);
        size_t kl = key_of(k, key);
        if (!shared && ((r >> 40) & 15) == 0) {
            /* Read back a private key: nobody else writes it. */
            struct tl_val v = {0};
            int rc = tl_db_get(db, key, kl, &v);
            w->gets++;
            bool ok =
                w->touched[k] ? rc == 1 && v.type == TL_VAL_INT && v.i == w->counts[k] : rc == 0;
            if (!ok) {
                snprintf(w->err, sizeof w->err,
                         "thread %d op %ld: tl_db_get(%s) returned %d type %d value %" PRId64
                         ", expected %s %" PRId64 " (%s)",
                         w->index, op, key, rc, (int)v.type, v.i, w->touched[k] ? "INT" : "absent",
                         w->counts[k], tl_last_error());
                tl_val_clear(&v);
                break;
            }
            tl_val_clear(&v);
            continue;
        }
        int64_t delta = (int64_t)((r >> 32) % 21) - 5;
        if (delta == 0)
            delta = 7;
        int64_t result = 0;
        /* A prefetch hint on the way, racing the other writers and the memtable switches: it
         * must neither change a value nor read outside what the engine owns (run under TSan
         * and ASan). */
        tl_db_prefetch(db, tl_db_prefetch_hash(key, kl), (enum tl_prefetch_stage)(op % 3));
        int rc = tl_db_incr(db, key, kl, delta, &result, NULL);
        if (rc != 0) {
            snprintf(w->err, sizeof w->err,
                     "thread %d op %ld: tl_db_incr(%s, %" PRId64 ") returned %d %s: %s", w->index,
                     op, key, delta, rc, tl_strerror(rc), tl_last_error());
            break;
        }
        w->counts[k] += delta;
        w->touched[k] = true;
        w->ops++;
        if (!shared && result != w->counts[k]) {
            snprintf(w->err, sizeof w->err,
                     "thread %d op %ld: tl_db_incr(%s, %" PRId64 ") returned %" PRId64
                     ", but this thread alone writes the key and its total is %" PRId64,
                     w->index, op, key, delta, result, w->counts[k]);
            break;
        }
    }
    if (w->err[0])
        atomic_store(&stop, true);
    atomic_fetch_add(&workers_done, 1);
    return NULL;
}

static void *maintenance_main(void *p)
{
    uint64_t rng = *(uint64_t *)p;
    char a[KEY_CAP], b[KEY_CAP];
    while (atomic_load(&workers_done) < NTHREADS) {
        uint64_t r = test_rand(&rng);
        int rc;
        if (r % 4 != 0) {
            rc = tl_db_flush(db);
            flushes++;
        } else if (r % 16 == 0) {
            rc = tl_db_compact_range(db, NULL, 0, NULL, 0);
            compactions++;
        } else {
            int x = (int)((r >> 8) % NKEYS), y = (int)((r >> 24) % NKEYS);
            size_t al = key_of(x, a), bl = key_of(y, b);
            int c = memcmp(a, b, al < bl ? al : bl);
            if (c > 0 || (c == 0 && al > bl))
                rc = tl_db_compact_range(db, b, bl, a, al);
            else
                rc = tl_db_compact_range(db, a, al, b, bl);
            compactions++;
        }
        if (rc != 0) {
            snprintf(bg_err, sizeof bg_err, "maintenance thread: flush/compact returned %d %s: %s",
                     rc, tl_strerror(rc), tl_last_error());
            atomic_store(&stop, true);
            break;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* Every key holds exactly the sum of all threads' increments; untouched keys are absent. */
static void check_totals(const char *when)
{
    char key[KEY_CAP];
    long present = 0;
    for (int k = 0; k < NKEYS; k++) {
        int64_t total = 0;
        bool touched = false;
        for (int t = 0; t < NTHREADS; t++) {
            total += workers[t].counts[k];
            touched |= workers[t].touched[k];
        }
        size_t kl = key_of(k, key);
        struct tl_val v = {0};
        int rc = tl_db_get(db, key, kl, &v);
        if (rc < 0 || rc != (int)touched || (touched && (v.type != TL_VAL_INT || v.i != total))) {
            fprintf(stderr,
                    "FAIL seed=%" PRIu64 " %s: tl_db_get(%s) returned %d type %d value %" PRId64
                    ", expected %s %" PRId64 " (last error: %s)\n",
                    seed, when, key, rc, (int)v.type, v.i, touched ? "INT" : "absent", total,
                    tl_last_error());
            exit(1);
        }
        present += touched;
        tl_val_clear(&v);
    }

    /* The same through a full scan: every key it returns is a touched key with its total. */
    tl_iter *it = NULL;
    CHECK_OK(tl_iter_new(db, &it));
    CHECK_OK(tl_iter_seek(it, "", 0));
    long scanned = 0;
    char prev[KEY_CAP];
    size_t prev_len = 0;
    while (tl_iter_valid(it)) {
        size_t kl = 0;
        const char *k = tl_iter_key(it, &kl);
        int c = memcmp(prev, k, prev_len < kl ? prev_len : kl);
        if (scanned > 0 && (c > 0 || (c == 0 && prev_len >= kl))) {
            fprintf(stderr, "FAIL seed=%" PRIu64 " %s: scan returned \"%.*s\" after \"%.*s\"\n",
                    seed, when, (int)kl, k, (int)prev_len, prev);
            exit(1);
        }
        if (kl <= KEY_CAP) {
            memcpy(prev, k, kl);
            prev_len = kl;
        }
        int found = key_index(k, kl);
        int64_t total = 0;
        bool touched = false;
        for (int t = 0; found >= 0 && t < NTHREADS; t++) {
            total += workers[t].counts[found];
            touched |= workers[t].touched[found];
        }
        struct tl_val v = {0};
        CHECK_OK(tl_iter_value(it, &v));
        if (found < 0 || !touched || v.type != TL_VAL_INT || v.i != total) {
            fprintf(stderr,
                    "FAIL seed=%" PRIu64 " %s: scan found key \"%.*s\" type %d value %" PRId64
                    ", expected %s %" PRId64 "\n",
                    seed, when, (int)kl, k, (int)v.type, v.i,
                    found < 0 || !touched ? "no such key" : "INT", total);
            exit(1);
        }
        tl_val_clear(&v);
        scanned++;
        CHECK_OK(tl_iter_next(it));
    }
    tl_iter_free(it);
    if (scanned != present) {
        fprintf(stderr, "FAIL seed=%" PRIu64 " %s: scan saw %ld keys, expected %ld\n", seed, when,
                scanned, present);
        exit(1);
    }
    printf("%s: %ld keys exact\n", when, present);
}

/* Phase two: tl_db_drop_all (FLUSHALL) while threads read and write shared keys. A read takes
 * the active memtable without a version when it can, entering it as writers do, and a drop
 * waits for those inside: every read must answer a whole counter or nothing, never more than
 * was ever added, and never fail. */
#define DROP_READERS 2
#define DROP_ROUNDS  20
static atomic_long drop_added[NSHARED]; /* every increment ever made to the key, all positive */
static char drop_err[DROP_READERS + 1][512];

static void *drop_writer_main(void *p)
{
    uint64_t rng = *(uint64_t *)p;
    char key[KEY_CAP];
    while (!atomic_load(&stop)) {
        int k = (int)(test_rand(&rng) % NSHARED);
        size_t kl = key_of(k, key);
        atomic_fetch_add(&drop_added[k], 1); /* before: a reader may see the increment at once */
        int64_t result;
        int rc = tl_db_incr(db, key, kl, 1, &result, NULL);
        if (rc != 0) {
            snprintf(drop_err[DROP_READERS], sizeof drop_err[0],
                     "drop phase: tl_db_incr(%s) returned %d %s: %s", key, rc, tl_strerror(rc),
                     tl_last_error());
            break;
        }
    }
    return NULL;
}

static void *drop_reader_main(void *p)
{
    int index = (int)(intptr_t)p;
    uint64_t rng = seed + (uint64_t)index + 1;
    char key[KEY_CAP];
    while (!atomic_load(&stop)) {
        int k = (int)(test_rand(&rng) % NSHARED);
        size_t kl = key_of(k, key);
        struct tl_val v = {0};
        int rc = tl_db_get(db, key, kl, &v);
        long most = atomic_load(&drop_added[k]);
        bool ok = rc == 0 || (rc == 1 && v.type == TL_VAL_INT && v.i >= 1 && v.i <= most);
        if (!ok) {
            snprintf(drop_err[index], sizeof drop_err[0],
                     "drop phase: tl_db_get(%s) returned %d type %d value %" PRId64
                     ", expected nothing or a counter from 1 to %ld (%s)",
                     key, rc, (int)v.type, v.i, most, tl_last_error());
            tl_val_clear(&v);
            break;
        }
        tl_val_clear(&v);
    }
    return NULL;
}

static void drop_phase(void)
{
    CHECK_OK(tl_db_drop_all(db)); /* from empty: a key holds only what this phase added */
    atomic_store(&stop, false);
    pthread_t readers[DROP_READERS], writer;
    uint64_t wrng = seed ^ 0x5eed;
    CHECK(pthread_create(&writer, NULL, drop_writer_main, &wrng) == 0);
    for (int i = 0; i < DROP_READERS; i++)
        CHECK(pthread_create(&readers[i], NULL, drop_reader_main, (void *)(intptr_t)i) == 0);
    for (int round = 0; round < DROP_ROUNDS; round++) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
        int rc = tl_db_drop_all(db);
        if (rc != 0) {
            fprintf(stderr, "FAIL seed=%" PRIu64 " drop phase: tl_db_drop_all returned %d: %s\n",
                    seed, rc, tl_last_error());
            exit(1);
        }
    }
    atomic_store(&stop, true);
    pthread_join(writer, NULL);
    for (int i = 0; i < DROP_READERS; i++)
        pthread_join(readers[i], NULL);
    for (int i = 0; i <= DROP_READERS; i++) {
        if (drop_err[i][0]) {
            fprintf(stderr, "FAIL seed=%" PRIu64 " %s\n", seed, drop_err[i]);
            exit(1);
        }
    }
    printf("drop phase: %d drops while %d threads read and one wrote\n", DROP_ROUNDS, DROP_READERS);
}

int main(int argc, char **argv)
{
    test_require_uring();
    const char *env = getenv("TALLY_SEED");
    if (argc > 1)
        seed = strtoull(argv[1], NULL, 0);
    else if (env && *env)
        seed = strtoull(env, NULL, 0);
    else
        seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    printf("test_concurrency: seed=%" PRIu64 "\n", seed);
    fflush(stdout);

    dir = test_tmpdir("concurrency");
    struct tl_options o;
    tl_options_init(&o);
    /* The engine wants room for the largest key and value in one memtable. */
    o.memtable_bytes = 96 << 10;
    o.max_value_bytes = 1024;
    o.block_cache_bytes = 1 << 20;
    o.level1_bytes = 512 << 10;
    o.target_file_bytes = 128 << 10;
    o.level_multiplier = 4;
    CHECK_OK(tl_db_open(dir, &o, &db));

    uint64_t rng = seed;
    for (int t = 0; t < NTHREADS; t++) {
        workers[t].index = t;
        workers[t].rng = test_rand(&rng);
        workers[t].counts = calloc(NKEYS, sizeof(int64_t));
        workers[t].touched = calloc(NKEYS, sizeof(bool));
        CHECK(workers[t].counts && workers[t].touched);
    }
    uint64_t mrng = test_rand(&rng);
    pthread_t maint;
    for (int t = 0; t < NTHREADS; t++)
        CHECK(pthread_create(&workers[t].tid, NULL, worker_main, &workers[t]) == 0);
    CHECK(pthread_create(&maint, NULL, maintenance_main, &mrng) == 0);
    for (int t = 0; t < NTHREADS; t++)
        pthread_join(workers[t].tid, NULL);
    pthread_join(maint, NULL);

    int failed = 0;
    for (int t = 0; t < NTHREADS; t++) {
        if (workers[t].err[0]) {
            fprintf(stderr, "FAIL seed=%" PRIu64 " %s\n", seed, workers[t].err);
            failed = 1;
        }
    }
    if (bg_err[0]) {
        fprintf(stderr, "FAIL seed=%" PRIu64 " %s\n", seed, bg_err);
        failed = 1;
    }
    if (failed)
        return 1;

    long ops = 0, gets = 0;
    for (int t = 0; t < NTHREADS; t++) {
        ops += workers[t].ops;
        gets += workers[t].gets;
    }
    struct tl_stats st;
    CHECK_OK(tl_db_stats(db, &st));
    printf("%ld increments, %ld gets; %ld flush and %ld compact calls; engine: %" PRIu64
           " flushes, %" PRIu64 " compactions\n",
           ops, gets, flushes, compactions, st.flushes, st.compactions);

    check_totals("before reopen");
    CHECK_OK(tl_db_close(db));
    CHECK_OK(tl_db_open(dir, &o, &db));
    check_totals("after reopen");
    CHECK_OK(tl_db_flush(db));
    CHECK_OK(tl_db_compact_range(db, NULL, 0, NULL, 0));
    check_totals("after a full compaction");
    drop_phase();
    CHECK_OK(tl_db_close(db));

    test_rmdir(dir);
    free(dir);
    for (int t = 0; t < NTHREADS; t++) {
        free(workers[t].counts);
        free(workers[t].touched);
    }
    printf("ok: seed=%" PRIu64 "\n", seed);
    return 0;
}
