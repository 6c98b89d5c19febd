/*
 * test_db.c - the engine's API contract beyond the model test: error codes and their messages
 * (overflow, not an integer, not a float, oversized key and value, bad options), float
 * increments kept as Redis keeps them, read-modify-write through tl_db_update, sequence numbers
 * and waiting under fsync always, and a checkpoint: copying the live file list of an open
 * database gives a database with the same contents.
 */
#include <fcntl.h>
#include <sys/stat.h>

#include "testutil.h"

static void test_errors(tl_db *db)
{
    int64_t v;
    CHECK_OK(tl_db_put_int(db, "max", 3, INT64_MAX, 0, NULL));
    CHECK_EQ_INT(tl_db_incr(db, "max", 3, 1, &v, NULL), TL_EOVERFLOW);
    CHECK(strstr(tl_last_error(), "overflow"));
    CHECK_OK(tl_db_incr(db, "max", 3, 0, &v, NULL));
    CHECK_EQ_INT(v, INT64_MAX);
    CHECK_OK(tl_db_put(db, "text", 4, "abc", 3, 0, NULL));
    CHECK_EQ_INT(tl_db_incr(db, "text", 4, 1, &v, NULL), TL_ENOTINT);
    long double f;
    CHECK_EQ_INT(tl_db_incr_float(db, "text", 4, 1.5L, &f, NULL), TL_ENOTFLOAT);
    /* The stored value is judged before the delta, as Redis does. */
    CHECK_EQ_INT(tl_db_incr_float(db, "text", 4, 1.0L / 0.0L, &f, NULL), TL_ENOTFLOAT);
    static char big[TL_MAX_KEY_BYTES + 1];
    CHECK_EQ_INT(tl_db_incr(db, big, sizeof big, 1, &v, NULL), TL_ETOOBIG);
    CHECK(strstr(tl_last_error(), "65536"));
    struct tl_val val;
    CHECK_EQ_INT(tl_db_get(db, big, sizeof big, &val), TL_ETOOBIG);
    char *huge = calloc(1, 5000);
    CHECK_EQ_INT(tl_db_put(db, "huge", 4, huge, 5000, 0, NULL), TL_ETOOBIG);
    CHECK(strstr(tl_last_error(), "max_value_bytes"));
    free(huge);
    /* Canonical integers are stored as integers; other text stays text. */
    CHECK_OK(tl_db_put(db, "n", 1, "-42", 3, 0, NULL));
    CHECK_EQ_INT(tl_db_get(db, "n", 1, &val), 1);
    CHECK_EQ_INT(val.type, TL_VAL_INT);
    CHECK_EQ_INT(val.i, -42);
    CHECK_OK(tl_db_put(db, "z", 1, "007", 3, 0, NULL));
    CHECK_EQ_INT(tl_db_get(db, "z", 1, &val), 1);
    CHECK_EQ_INT(val.type, TL_VAL_BYTES);
    CHECK(val.len == 3 && memcmp(val.bytes, "007", 3) == 0);
    tl_val_clear(&val);
}

static void test_float(tl_db *db)
{
    long double r;
    struct tl_val v;
    CHECK_OK(tl_db_put(db, "f", 1, "10.50", 5, 0, NULL));
    CHECK_OK(tl_db_incr_float(db, "f", 1, 0.1L, &r, NULL));
    CHECK_EQ_INT(tl_db_get(db, "f", 1, &v), 1);
    CHECK(v.type == TL_VAL_BYTES && strcmp(v.bytes, "10.6") == 0);
    tl_val_clear(&v);
    /* 5.0e3 + 200 is 5200, an integer again: INCR works on it afterwards. */
    CHECK_OK(tl_db_put(db, "g", 1, "5.0e3", 5, 0, NULL));
    CHECK_OK(tl_db_incr_float(db, "g", 1, 200.0L, &r, NULL));
    int64_t i;
    CHECK_OK(tl_db_incr(db, "g", 1, 1, &i, NULL));
    CHECK_EQ_INT(i, 5201);
    CHECK_EQ_INT(tl_db_incr_float(db, "g", 1, 1.0L / 0.0L, &r, NULL), TL_ENANINF);
}

/* SETNX: store arg's value only when the key is absent. */
static int setnx(void *arg, const struct tl_val *cur, int found, struct tl_val *next)
{
    if (found)
        return TL_UPDATE_KEEP;
    next->type = TL_VAL_BYTES;
    next->bytes = arg;
    next->len = strlen(arg);
    return TL_UPDATE_PUT;
}

/* APPEND-like: cur's bytes followed by arg's. */
static int append(void *arg, const struct tl_val *cur, int found, struct tl_val *next)
{
    static char buf[256];
    size_t n = 0;
    if (found && cur->type == TL_VAL_BYTES) {
        memcpy(buf, cur->bytes, cur->len);
        n = cur->len;
    }
    n += (size_t)snprintf(buf + n, sizeof buf - n, "%s", (const char *)arg);
    next->type = TL_VAL_BYTES;
    next->bytes = buf;
    next->len = n;
    next->expire_ms = found ? cur->expire_ms : 0;
    return TL_UPDATE_PUT;
}

/* Fails without setting a message of its own. */
static int fail_quietly(void *arg, const struct tl_val *cur, int found, struct tl_val *next)
{
    (void)arg, (void)cur, (void)found, (void)next;
    return -EINVAL;
}

/* A failed update names its own key once, and never carries an earlier failure's message. */
static void check_update_error(tl_db *db)
{
    CHECK_EQ_INT(tl_db_incr(db, "text", 4, 1, &(int64_t){0}, NULL), TL_ENOTINT);
    CHECK(strstr(tl_last_error(), "'text'") != NULL);
    CHECK_EQ_INT(tl_db_update(db, "other", 5, fail_quietly, NULL, NULL), -EINVAL);
    const char *e = tl_last_error();
    CHECK(strstr(e, "key 'other': ") == e);
    CHECK(strstr(e, "text") == NULL);
    CHECK(strstr(e + 1, "key '") == NULL);
    CHECK(strstr(e, strerror(EINVAL)) != NULL);
    CHECK_EQ_INT(tl_db_update(db, "other", 5, fail_quietly, NULL, NULL), -EINVAL);
    CHECK(strstr(tl_last_error() + 1, "key '") == NULL); /* no stacking on a repeat either */
}

static void test_update(tl_db *db)
{
    check_update_error(db);
    struct tl_val v;
    CHECK_OK(tl_db_update(db, "u", 1, setnx, "first", NULL));
    CHECK_OK(tl_db_update(db, "u", 1, setnx, "second", NULL));
    CHECK_EQ_INT(tl_db_get(db, "u", 1, &v), 1);
    CHECK(v.len == 5 && memcmp(v.bytes, "first", 5) == 0);
    tl_val_clear(&v);
    CHECK_OK(tl_db_update(db, "u", 1, append, "+more", NULL));
    CHECK_EQ_INT(tl_db_get(db, "u", 1, &v), 1);
    CHECK(v.len == 10 && memcmp(v.bytes, "first+more", 10) == 0);
    tl_val_clear(&v);
}

/* FLUSHALL: keys in memtables and in tables are gone, the count is 0, writes go on, and the
 * drop survives a restart (the dropped WAL records are not replayed). */
/* tl_db_write_stamp: the same while nothing writes the key (reads, writes of other keys, a
 * write that changes nothing), different after each write of it and after a drop. */
static void test_write_stamp(tl_db *db)
{
    uint64_t s0 = tl_db_write_stamp(db, "ws", 2), s;
    CHECK(tl_db_write_stamp(db, "ws", 2) == s0);
    CHECK_OK(tl_db_put(db, "ws-other", 8, "x", 1, 0, NULL));
    struct tl_val v;
    CHECK_EQ_INT(tl_db_get(db, "ws", 2, &v), 0);
    CHECK(tl_db_write_stamp(db, "ws", 2) == s0);
    CHECK_OK(tl_db_put(db, "ws", 2, "a", 1, 0, NULL)); /* created */
    CHECK((s = tl_db_write_stamp(db, "ws", 2)) != s0);
    CHECK(tl_db_write_stamp(db, "ws", 2) == s);
    CHECK_OK(tl_db_put(db, "ws", 2, "b", 1, 0, NULL)); /* rewritten in place, same length */
    CHECK(tl_db_write_stamp(db, "ws", 2) != s);
    s = tl_db_write_stamp(db, "ws", 2);
    bool existed;
    CHECK_OK(tl_db_delete(db, "ws", 2, &existed, NULL));
    CHECK(existed && tl_db_write_stamp(db, "ws", 2) != s);
    /* A key only in a table: a write that changes nothing (SETNX of an existing key) makes the
     * memtable cache its value, and is no write. */
    CHECK_OK(tl_db_put(db, "wt", 2, "a", 1, 0, NULL));
    CHECK_OK(tl_db_flush(db));
    s = tl_db_write_stamp(db, "wt", 2);
    CHECK_OK(tl_db_update(db, "wt", 2, setnx, "b", NULL));
    CHECK(tl_db_write_stamp(db, "wt", 2) == s);
    CHECK_OK(tl_db_update(db, "wt2", 3, setnx, "b", NULL)); /* created: a write */
    s = tl_db_write_stamp(db, "ws", 2);
    CHECK_OK(tl_db_drop_all(db));
    CHECK(tl_db_write_stamp(db, "ws", 2) != s);
}

static void test_drop_all(tl_db *db)
{
    char k[32];
    for (int i = 0; i < 3000; i++)
        CHECK_OK(tl_db_incr(db, k, (size_t)snprintf(k, sizeof k, "d%04d", i), 1, NULL, NULL));
    CHECK_OK(tl_db_flush(db));
    for (int i = 3000; i < 4000; i++)
        CHECK_OK(tl_db_incr(db, k, (size_t)snprintf(k, sizeof k, "d%04d", i), 1, NULL, NULL));
    uint64_t n;
    CHECK_OK(tl_db_count_keys(db, &n));
    CHECK(n >= 4000);
    CHECK_OK(tl_db_drop_all(db));
    CHECK_OK(tl_db_count_keys(db, &n));
    CHECK_EQ_INT(n, 0);
    struct tl_stats st;
    CHECK_OK(tl_db_stats(db, &st));
    for (int l = 0; l < st.num_levels; l++)
        CHECK_EQ_INT(st.levels[l].files, 0);
    CHECK_OK(tl_db_incr(db, "after", 5, 7, NULL, NULL));
    CHECK_OK(tl_db_count_keys(db, &n));
    CHECK_EQ_INT(n, 1);
}

static void test_durability(const char *dir)
{
    struct tl_options o;
    tl_options_init(&o);
    o.fsync = TL_FSYNC_ALWAYS;
    o.memtable_bytes = 1 << 20;
    o.max_value_bytes = 1024;
    tl_db *db;
    CHECK_OK(tl_db_open(dir, &o, &db));
    uint64_t before = tl_db_durable_seq(db);
    /* Without seq the call returns durable; with seq the caller waits. */
    CHECK_OK(tl_db_incr(db, "d", 1, 1, NULL, NULL));
    CHECK(tl_db_durable_seq(db) > before);
    uint64_t seq = 0;
    CHECK_OK(tl_db_incr(db, "d", 1, 1, NULL, &seq));
    CHECK(seq > before);
    CHECK_OK(tl_db_wait(db, seq, TL_WAIT_DURABLE));
    CHECK(tl_db_durable_seq(db) >= seq);
    CHECK(tl_db_written_seq(db) >= seq);
    CHECK_OK(tl_db_close(db));
}

static void progress(void *arg, uint64_t done, uint64_t total)
{
    uint64_t *last = arg;
    CHECK(done > *last && done <= total);
    *last = done;
}

static void test_checkpoint(const char *dir, const char *dest)
{
    struct tl_options o;
    tl_options_init(&o);
    o.memtable_bytes = 256 * 1024;
    o.max_value_bytes = 1024;
    tl_db *db;
    CHECK_OK(tl_db_open(dir, &o, &db));
    char k[32];
    for (int i = 0; i < 20000; i++)
        CHECK_OK(
            tl_db_incr(db, k, (size_t)snprintf(k, sizeof k, "c%05d", i % 5000), 1, NULL, NULL));
    CHECK_OK(tl_db_flush(db));
    CHECK_OK(tl_db_incr(db, "c00001", 6, 0, NULL, NULL));
    /* The live file list names tables and WAL segments, and pins them. */
    char **files;
    size_t n;
    CHECK_OK(tl_db_live_files(db, &files, &n));
    CHECK(n >= 2);
    size_t ssts = 0, wals = 0;
    for (size_t i = 0; i < n; i++) {
        ssts += strstr(files[i], ".sst") != NULL;
        wals += strstr(files[i], ".wal") != NULL;
    }
    CHECK(ssts >= 1 && wals >= 1);
    CHECK_OK(tl_db_compact_range(db, NULL, 0, NULL, 0));
    for (size_t i = 0; i < n; i++) {
        char path[9000];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        CHECK(access(path, F_OK) == 0); /* compacted away, but pinned */
    }
    tl_db_free_file_list(files, n);
    tl_db_release_files(db);
    /* A checkpoint, then more writes that the copy must not see. */
    uint64_t last = 0;
    CHECK_OK(tl_db_checkpoint(db, dest, progress, &last));
    CHECK(last > 0);
    CHECK_EQ_INT(tl_db_checkpoint(db, dest, NULL, NULL), -EEXIST);
    CHECK(strstr(tl_last_error(), dest));
    CHECK_OK(tl_db_incr(db, "c00000", 6, 100, NULL, NULL));
    CHECK_OK(tl_db_close(db));
    tl_db *copy;
    CHECK_OK(tl_db_open(dest, &o, &copy));
    for (int i = 0; i < 5000; i++) {
        struct tl_val v;
        CHECK_EQ_INT(tl_db_get(copy, k, (size_t)snprintf(k, sizeof k, "c%05d", i), &v), 1);
        CHECK_EQ_INT(v.i, 4);
    }
    CHECK_OK(tl_db_close(copy));
}

/* Reopening leaves the replayed log in the memtable, as the running engine had it: a value
 * overwritten again and again with one of its length (in place while running) takes no more
 * room in replay, so no table is written at the open. */
static void test_reopen_in_place(const char *dir)
{
    struct tl_options o;
    tl_options_init(&o);
    o.memtable_bytes = 256 * 1024;
    o.max_value_bytes = 1024;
    o.max_immutable_memtables = 1;
    tl_db *db;
    CHECK_OK(tl_db_open(dir, &o, &db));
    char v[64];
    for (int i = 0; i < 20000; i++) {
        snprintf(v, sizeof v, "%063d", i);
        CHECK_OK(tl_db_put(db, "same", 4, v, 63, 0, NULL));
    }
    struct tl_stats st;
    CHECK_OK(tl_db_stats(db, &st));
    CHECK_EQ_INT(st.flushes, 0);
    CHECK_OK(tl_db_close(db));
    CHECK_OK(tl_db_open(dir, &o, &db));
    CHECK_OK(tl_db_stats(db, &st));
    CHECK_EQ_INT(st.levels[0].files, 0);
    CHECK_EQ_INT(st.memtables, 1);
    struct tl_val got;
    CHECK_EQ_INT(tl_db_get(db, "same", 4, &got), 1);
    CHECK_EQ_INT(got.len, 63);
    CHECK(memcmp(got.bytes, v, 63) == 0);
    tl_val_clear(&got);
    CHECK_OK(tl_db_close(db));
}

int main(void)
{
    test_require_uring();
    char *dir = test_tmpdir("db");
    struct tl_options o;
    tl_options_init(&o);
    o.memtable_bytes = 64 * 1024;
    CHECK_EQ_INT(tl_db_open(dir, &o, NULL), -EINVAL); /* one value must fit a memtable */
    CHECK(strstr(tl_last_error(), "max_value_bytes"));
    o.memtable_bytes = 256 * 1024;
    o.max_value_bytes = 4096;
    o.num_levels = 9;
    CHECK_EQ_INT(tl_db_open(dir, &o, NULL), -EINVAL);
    CHECK(strstr(tl_last_error(), "num_levels"));
    o.num_levels = 7;
    o.l0_stop_trigger = TL_MAX_L0_STOP_TRIGGER + 1; /* more L0 tables than a read looks at */
    CHECK_EQ_INT(tl_db_open(dir, &o, NULL), -EINVAL);
    CHECK(strstr(tl_last_error(), "l0_stop_trigger"));
    o.l0_stop_trigger = TL_MAX_L0_STOP_TRIGGER;
    tl_db *db;
    CHECK_OK(tl_db_open(dir, &o, &db));
    test_errors(db);
    test_float(db);
    test_update(db);
    test_write_stamp(db);
    test_drop_all(db);
    CHECK_OK(tl_db_close(db));
    CHECK_OK(tl_db_open(dir, &o, &db));
    uint64_t keys;
    CHECK_OK(tl_db_count_keys(db, &keys));
    CHECK_EQ_INT(keys, 1);
    struct tl_val after;
    CHECK_EQ_INT(tl_db_get(db, "after", 5, &after), 1);
    CHECK_EQ_INT(after.i, 7);
    CHECK_OK(tl_db_close(db));
    test_rmdir(dir);
    free(dir);

    dir = test_tmpdir("db-durable");
    test_durability(dir);
    test_rmdir(dir);
    free(dir);

    dir = test_tmpdir("db-in-place");
    test_reopen_in_place(dir);
    test_rmdir(dir);
    free(dir);

    dir = test_tmpdir("db-checkpoint");
    char dest[4200];
    snprintf(dest, sizeof dest, "%s/copy", dir);
    char src[4200];
    snprintf(src, sizeof src, "%s/db", dir);
    test_checkpoint(src, dest);
    test_rmdir(dir);
    free(dir);
    printf("test_db: ok\n");
    return 0;
}
