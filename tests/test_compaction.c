/*
 * test_compaction.c - what compaction does to the data, seen through the engine's statistics:
 * increments replayed from the WAL (stored as merges) fold into one value per key; overwritten
 * and deleted entries are dropped; expired keys disappear from disk at a manual compaction and,
 * without one, through the compaction thread's expiry schedule; L0 stays bounded under a
 * stream of flushes; write amplification is reported.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "testutil.h"

static _Atomic int64_t fake_now = 1700000000000;

static int64_t clock_fn(void *arg)
{
    (void)arg;
    return atomic_load(&fake_now);
}

static void options(struct tl_options *o)
{
    tl_options_init(o);
    o->memtable_bytes = 1 << 20;
    o->max_value_bytes = 4096;
    o->clock_ms = clock_fn;
    o->level1_bytes = 256 * 1024;
    o->target_file_bytes = 128 * 1024;
}

static uint64_t total_entries(tl_db *db, uint64_t *files)
{
    struct tl_stats st;
    CHECK_OK(tl_db_stats(db, &st));
    uint64_t e = 0, f = 0;
    for (int l = 0; l < st.num_levels; l++) {
        e += st.levels[l].entries;
        f += st.levels[l].files;
    }
    if (files)
        *files = f;
    return e;
}

static int key_of(char *buf, int i)
{
    return snprintf(buf, 32, "key:%06d", i);
}

#define KEYS   1000
#define ROUNDS 5

static void test_fold_merges(void)
{
    char *dir = test_tmpdir("compaction-fold");
    struct tl_options o;
    options(&o);
    o.background_compaction = false;
    tl_db *db;
    char k[32];
    /* Each round's increments reach the tables through WAL replay, as merge entries: recovery
     * leaves what it replayed to the flush thread, which tl_db_flush waits for. */
    for (int r = 0; r < ROUNDS; r++) {
        CHECK_OK(tl_db_open(dir, &o, &db));
        CHECK_OK(tl_db_flush(db));
        for (int i = 0; i < KEYS; i++)
            CHECK_OK(tl_db_incr(db, k, key_of(k, i), i + 1, NULL, NULL));
        CHECK_OK(tl_db_close(db));
    }
    CHECK_OK(tl_db_open(dir, &o, &db));
    CHECK_OK(tl_db_flush(db));
    CHECK_EQ_INT(total_entries(db, NULL), KEYS * ROUNDS);
    CHECK_OK(tl_db_compact_range(db, NULL, 0, NULL, 0));
    CHECK_EQ_INT(total_entries(db, NULL), KEYS);
    struct tl_stats st;
    CHECK_OK(tl_db_stats(db, &st));
    CHECK_EQ_INT(st.entries_dropped, KEYS * (ROUNDS - 1));
    CHECK_EQ_INT(st.levels[st.num_levels - 1].entries, KEYS);
    CHECK(st.compaction_bytes_written > 0);
    for (int i = 0; i < KEYS; i++) {
        struct tl_val v;
        CHECK_EQ_INT(tl_db_get(db, k, key_of(k, i), &v), 1);
        CHECK_EQ_INT(v.type, TL_VAL_INT);
        CHECK_EQ_INT(v.i, (int64_t)(i + 1) * ROUNDS);
    }
    /* Deletes: half the keys go, and a bottom-level compaction keeps no tombstone. */
    for (int i = 0; i < KEYS; i += 2) {
        bool existed;
        CHECK_OK(tl_db_delete(db, k, key_of(k, i), &existed, NULL));
        CHECK(existed);
    }
    CHECK_OK(tl_db_compact_range(db, NULL, 0, NULL, 0));
    CHECK_EQ_INT(total_entries(db, NULL), KEYS / 2);
    /* A sub-range compaction touches only the tables that overlap it, and keeps values. */
    CHECK_OK(tl_db_incr(db, "key:000001", 10, 1, NULL, NULL));
    CHECK_OK(tl_db_compact_range(db, "key:000000", 10, "key:000002", 10));
    struct tl_val v;
    CHECK_EQ_INT(tl_db_get(db, "key:000001", 10, &v), 1);
    CHECK_EQ_INT(v.i, 2 * ROUNDS + 1);
    CHECK_EQ_INT(total_entries(db, NULL), KEYS / 2);
    CHECK_OK(tl_db_close(db));
    test_rmdir(dir);
    free(dir);
}

static void test_expiry(void)
{
    char *dir = test_tmpdir("compaction-expiry");
    struct tl_options o;
    options(&o);
    tl_db *db;
    CHECK_OK(tl_db_open(dir, &o, &db));
    char k[32];
    int64_t t0 = atomic_load(&fake_now);
    /* KEYS keys expire in 10 s; KEYS/10 never do. */
    for (int i = 0; i < KEYS; i++)
        CHECK_OK(tl_db_put(db, k, key_of(k, i), "v", 1, t0 + 10000, NULL));
    for (int i = KEYS; i < KEYS + KEYS / 10; i++)
        CHECK_OK(tl_db_put_int(db, k, key_of(k, i), i, 0, NULL));
    CHECK_OK(tl_db_compact_range(db, NULL, 0, NULL, 0));
    CHECK_EQ_INT(total_entries(db, NULL), KEYS + KEYS / 10);
    /* Past the expiry: reads miss at once; the compaction thread's schedule drops them. */
    atomic_store(&fake_now, t0 + 20000);
    struct tl_val v;
    CHECK_EQ_INT(tl_db_get(db, "key:000005", 10, &v), 0);
    uint64_t entries = 0;
    for (int waited_ms = 0; waited_ms < 10000; waited_ms += 50) {
        entries = total_entries(db, NULL);
        if (entries == KEYS / 10)
            break;
        usleep(50 * 1000);
    }
    CHECK_EQ_INT(entries, KEYS / 10);
    CHECK_EQ_INT(tl_db_get(db, "key:001005", 10, &v), 1);
    CHECK_EQ_INT(v.i, 1005);
    /* Everything expires: a manual compaction leaves no table at all. */
    for (int i = KEYS; i < KEYS + KEYS / 10; i++) {
        bool existed;
        CHECK_OK(tl_db_set_expiry(db, k, key_of(k, i), t0 + 25000, &existed, NULL));
        CHECK(existed);
    }
    atomic_store(&fake_now, t0 + 30000);
    CHECK_OK(tl_db_compact_range(db, NULL, 0, NULL, 0));
    uint64_t files;
    CHECK_EQ_INT(total_entries(db, &files), 0);
    CHECK_EQ_INT(files, 0);
    CHECK_OK(tl_db_close(db));
    test_rmdir(dir);
    free(dir);
}

static void test_l0_bounded(void)
{
    char *dir = test_tmpdir("compaction-l0");
    struct tl_options o;
    options(&o);
    o.l0_compaction_trigger = 2;
    o.l0_slowdown_trigger = 3;
    o.l0_stop_trigger = 4;
    tl_db *db;
    CHECK_OK(tl_db_open(dir, &o, &db));
    char k[32];
    uint64_t max_l0 = 0;
    for (int r = 0; r < 30; r++) {
        for (int i = 0; i < 2000; i++)
            CHECK_OK(tl_db_incr(db, k, key_of(k, (i * 31 + r * 17) % 20000), 1, NULL, NULL));
        CHECK_OK(tl_db_flush(db));
        struct tl_stats st;
        CHECK_OK(tl_db_stats(db, &st));
        if (st.levels[0].files > max_l0)
            max_l0 = st.levels[0].files;
    }
    CHECK(max_l0 <= 4);
    struct tl_stats st;
    CHECK_OK(tl_db_stats(db, &st));
    CHECK(st.compactions > 0);
    CHECK(st.write_amplification >= 1.0);
    /* Exact totals after all of it. */
    int64_t sum = 0;
    for (int i = 0; i < 20000; i++) {
        struct tl_val v;
        int rc = tl_db_get(db, k, key_of(k, i), &v);
        CHECK(rc >= 0);
        if (rc)
            sum += v.i;
    }
    CHECK_EQ_INT(sum, 30 * 2000);
    CHECK_OK(tl_db_close(db));
    test_rmdir(dir);
    free(dir);
}

int main(void)
{
    test_require_uring();
    test_fold_merges();
    test_expiry();
    test_l0_bounded();
    printf("test_compaction: ok\n");
    return 0;
}
