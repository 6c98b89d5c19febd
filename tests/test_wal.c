/*
 * test_wal.c - the write-ahead log: concurrent appends under each fsync mode replayed exactly,
 * group commit, tl_wal_wait, rolling across segments, torn tails cut, corruption reported with
 * file and offset, and a failed write stopping the WAL.
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "coding.h"
#include "crc32c.h"
#include "testutil.h"
#include "wal.h"

#define N_THREADS          4
#define N_RECORDS          100000
#define PER_THREAD         (N_RECORDS / N_THREADS)
#define MAX_TEST_KEY       512
#define MAX_TEST_VALUE     256
#define ALWAYS_WAIT_EVERY  16 /* under ALWAYS a thread waits for durability every this many */
#define WRITTEN_WAIT_EVERY 64
#define BASE_EXPIRE_MS     1700000000000ll

/* ---- Deterministic records: record i of thread t ---- */

struct gen {
    uint8_t key[MAX_TEST_KEY];
    size_t klen;
    uint8_t val[MAX_TEST_VALUE];
    struct tl_record r;
};

static void gen_record(int t, uint32_t i, struct gen *g)
{
    g->klen = (size_t)snprintf((char *)g->key, sizeof g->key, "t%d:%07u", t, i);
    if (i % 97 == 0) { /* a few long keys */
        for (size_t j = g->klen; j < 300; j++)
            g->key[j] = (uint8_t)('a' + (j + i) % 26);
        g->klen = 300;
    }
    memset(&g->r, 0, sizeof g->r);
    switch (i % 5) {
    case 0:
        g->r.kind = TL_KIND_PUT_INT;
        g->r.i = (int64_t)t * 1000000007ll * (i % 2 ? -1 : 1) + i;
        g->r.has_expiry = i % 3 == 0;
        g->r.expire_ms = g->r.has_expiry ? BASE_EXPIRE_MS + i : 0;
        break;
    case 1:
        g->r.kind = TL_KIND_MERGE_INT;
        g->r.i = -(int64_t)i;
        break;
    case 2:
        g->r.kind = TL_KIND_PUT_BYTES;
        g->r.len = i % 200;
        for (size_t j = 0; j < g->r.len; j++)
            g->val[j] = (uint8_t)(t * 31 + i + j);
        g->r.bytes = g->val;
        break;
    case 3:
        g->r.kind = TL_KIND_DELETE;
        break;
    default:
        g->r.kind = TL_KIND_EXPIRE;
        g->r.has_expiry = true;
        g->r.expire_ms = BASE_EXPIRE_MS + 7 * i;
        break;
    }
}

static bool same_record(const struct tl_record *a, const struct tl_record *b)
{
    if (a->kind != b->kind || a->has_expiry != b->has_expiry)
        return false;
    if (a->has_expiry && a->expire_ms != b->expire_ms)
        return false;
    if ((a->kind == TL_KIND_PUT_INT || a->kind == TL_KIND_MERGE_INT) && a->i != b->i)
        return false;
    if (a->kind == TL_KIND_PUT_BYTES &&
        (a->len != b->len || (a->len && memcmp(a->bytes, b->bytes, a->len) != 0)))
        return false;
    return true;
}

/* ---- Concurrent appends, replay checks ---- */

/* who[seq - first_seq] = thread << 32 | index, filled by the appenders. */
struct run {
    struct tl_wal *w;
    enum tl_fsync_mode mode;
    uint64_t first_seq;
    uint64_t *who;
    size_t n;
};

struct worker {
    struct run *run;
    int t;
};

static void *append_worker(void *arg)
{
    struct worker *wk = arg;
    struct run *run = wk->run;
    struct gen g;
    uint64_t prev = 0;
    for (uint32_t i = 0; i < PER_THREAD; i++) {
        gen_record(wk->t, i, &g);
        uint64_t seq;
        CHECK_OK(tl_wal_append(run->w, g.key, g.klen, &g.r, &seq));
        CHECK(seq > prev);
        CHECK(seq >= run->first_seq && seq < run->first_seq + run->n);
        prev = seq;
        run->who[seq - run->first_seq] = (uint64_t)wk->t << 32 | i;
        if (run->mode == TL_FSYNC_ALWAYS && i % ALWAYS_WAIT_EVERY == ALWAYS_WAIT_EVERY - 1) {
            CHECK_OK(tl_wal_wait(run->w, seq, TL_WAIT_DURABLE));
            CHECK(tl_wal_durable_seq(run->w) >= seq);
        } else if (i % WRITTEN_WAIT_EVERY == WRITTEN_WAIT_EVERY - 1) {
            CHECK_OK(tl_wal_wait(run->w, seq, TL_WAIT_WRITTEN));
            CHECK(tl_wal_written_seq(run->w) >= seq);
        }
    }
    return NULL;
}

static void run_appenders(struct run *run)
{
    pthread_t th[N_THREADS];
    struct worker wk[N_THREADS];
    for (int t = 0; t < N_THREADS; t++) {
        wk[t] = (struct worker){.run = run, .t = t};
        CHECK(pthread_create(&th[t], NULL, append_worker, &wk[t]) == 0);
    }
    for (int t = 0; t < N_THREADS; t++)
        pthread_join(th[t], NULL);
}

struct check {
    const uint64_t *who;
    uint64_t first_seq;
    size_t n;
    uint64_t expect_seq;
    size_t count;
    uint8_t *seen;
};

static int check_fn(void *arg, uint64_t seq, const uint8_t *key, size_t klen,
                    const struct tl_record *r)
{
    struct check *c = arg;
    CHECK_EQ_INT(seq, c->expect_seq);
    c->expect_seq++;
    CHECK(seq - c->first_seq < c->n);
    uint64_t id = c->who[seq - c->first_seq];
    int t = (int)(id >> 32);
    uint32_t i = (uint32_t)id;
    size_t slot = (size_t)t * PER_THREAD + i;
    CHECK(!c->seen[slot]);
    c->seen[slot] = 1;
    struct gen g;
    gen_record(t, i, &g);
    CHECK_EQ_INT(klen, g.klen);
    CHECK(memcmp(key, g.key, klen) == 0);
    CHECK(same_record(r, &g.r));
    c->count++;
    return 0;
}

static void check_init(struct check *c, const uint64_t *who, uint64_t first_seq, size_t n)
{
    *c = (struct check){.who = who, .first_seq = first_seq, .n = n, .expect_seq = first_seq};
    c->seen = calloc(n, 1);
    CHECK(c->seen);
}

static void check_done(struct check *c)
{
    CHECK_EQ_INT(c->count, c->n);
    for (size_t k = 0; k < c->n; k++)
        CHECK(c->seen[k]);
    free(c->seen);
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    CHECK(stat(path, &st) == 0);
    return (uint64_t)st.st_size;
}

static void test_concurrent_appends_replay_exactly(enum tl_fsync_mode mode)
{
    char *dir = test_tmpdir("wal-modes");
    struct run run = {.mode = mode, .first_seq = 1, .n = N_RECORDS};
    run.who = calloc(N_RECORDS, sizeof *run.who);
    CHECK(run.who);
    CHECK_OK(tl_wal_open(dir, 1, 1, mode, &run.w));
    CHECK_EQ_INT(tl_wal_next_seq(run.w), 1);
    run_appenders(&run);
    CHECK_EQ_INT(tl_wal_next_seq(run.w), N_RECORDS + 1);

    uint64_t bytes, syncs;
    CHECK_OK(tl_wal_sync(run.w));
    CHECK_EQ_INT(tl_wal_written_seq(run.w), N_RECORDS);
    CHECK_EQ_INT(tl_wal_durable_seq(run.w), N_RECORDS);
    tl_wal_stats(run.w, &bytes, &syncs);
    if (mode == TL_FSYNC_ALWAYS) {
        /* Group commit: one write and one sync serve every record that arrived meanwhile. */
        fprintf(stderr, "  ALWAYS: %d records, %llu syncs\n", N_RECORDS, (unsigned long long)syncs);
        CHECK(syncs >= 1);
        CHECK(syncs * 10 < N_RECORDS);
    }
    if (mode == TL_FSYNC_NO)
        CHECK_EQ_INT(syncs, 1); /* only the tl_wal_sync above */
    CHECK_OK(tl_wal_close(run.w));

    char path[4200];
    tl_wal_path(path, sizeof path, dir, 1);
    CHECK_EQ_INT(file_size(path), bytes + TL_WAL_HEADER_BYTES);
    struct check c;
    check_init(&c, run.who, 1, N_RECORDS);
    uint64_t last = 0;
    CHECK_OK(tl_wal_replay(path, true, check_fn, &c, &last));
    CHECK_EQ_INT(last, N_RECORDS);
    check_done(&c);
    CHECK_EQ_INT(file_size(path), bytes + TL_WAL_HEADER_BYTES); /* nothing cut */

    free(run.who);
    test_rmdir(dir);
    free(dir);
}

/* ---- tl_wal_wait and the published sequence numbers ---- */

struct collect {
    uint64_t seqs[64];
    int64_t vals[64];
    size_t n;
};

static int collect_fn(void *arg, uint64_t seq, const uint8_t *key, size_t klen,
                      const struct tl_record *r)
{
    struct collect *c = arg;
    (void)key;
    (void)klen;
    CHECK(c->n < 64);
    c->seqs[c->n] = seq;
    c->vals[c->n] = r->i;
    c->n++;
    return 0;
}

static void append_int(struct tl_wal *w, const char *key, int64_t v, uint64_t *seq)
{
    struct tl_record r = {.kind = TL_KIND_PUT_INT, .i = v};
    CHECK_OK(tl_wal_append(w, key, strlen(key), &r, seq));
}

static void test_wait_semantics(void)
{
    char *dir = test_tmpdir("wal-wait");
    char path[4200];
    struct tl_wal *w;
    uint64_t seq, syncs;

    /* A WAL that starts at sequence 1000. */
    CHECK_OK(tl_wal_open(dir, 7, 1000, TL_FSYNC_ALWAYS, &w));
    CHECK_EQ_INT(tl_wal_next_seq(w), 1000);
    CHECK_EQ_INT(tl_wal_written_seq(w), 999);
    CHECK_EQ_INT(tl_wal_durable_seq(w), 999);
    CHECK_OK(tl_wal_wait(w, 999, TL_WAIT_DURABLE)); /* already there */
    CHECK_OK(tl_wal_wait(w, 0, TL_WAIT_WRITTEN));
    CHECK_EQ_INT(tl_wal_wait(w, 1000, TL_WAIT_WRITTEN), -EINVAL); /* not assigned yet */
    CHECK(strstr(tl_last_error(), "1000") != NULL);
    append_int(w, "a", 1, &seq);
    CHECK_EQ_INT(seq, 1000);
    CHECK_OK(tl_wal_wait(w, seq, TL_WAIT_DURABLE));
    CHECK_EQ_INT(tl_wal_durable_seq(w), 1000);
    CHECK_EQ_INT(tl_wal_written_seq(w), 1000);
    tl_wal_stats(w, NULL, &syncs);
    CHECK_EQ_INT(syncs, 1); /* the one write carried its sync */
    tl_wal_path(path, sizeof path, dir, 7);
    CHECK(file_size(path) > TL_WAL_HEADER_BYTES);
    CHECK_EQ_INT(tl_wal_wait(w, seq, (enum tl_wait)9), -EINVAL);
    CHECK_OK(tl_wal_close(w));
    struct collect c = {0};
    uint64_t last = 0;
    CHECK_OK(tl_wal_replay(path, true, collect_fn, &c, &last));
    CHECK_EQ_INT(c.n, 1);
    CHECK_EQ_INT(c.seqs[0], 1000);
    CHECK_EQ_INT(c.vals[0], 1);
    CHECK_EQ_INT(last, 1000);

    /* NO: durable follows written; tl_wal_sync still really syncs. */
    CHECK_OK(tl_wal_open(dir, 8, 1, TL_FSYNC_NO, &w));
    append_int(w, "b", 2, &seq);
    CHECK_OK(tl_wal_wait(w, seq, TL_WAIT_WRITTEN));
    CHECK_EQ_INT(tl_wal_durable_seq(w), tl_wal_written_seq(w));
    CHECK_OK(tl_wal_wait(w, seq, TL_WAIT_DURABLE));
    tl_wal_stats(w, NULL, &syncs);
    CHECK_EQ_INT(syncs, 0);
    CHECK_OK(tl_wal_sync(w));
    tl_wal_stats(w, NULL, &syncs);
    CHECK_EQ_INT(syncs, 1);
    CHECK_OK(tl_wal_sync(w)); /* nothing new: no sync */
    tl_wal_stats(w, NULL, &syncs);
    CHECK_EQ_INT(syncs, 1);
    CHECK_OK(tl_wal_close(w));

    /* EVERYSEC: written at once; durable at the next sync, which the timer brings about
     * TL_WAL_SYNC_INTERVAL_MS after the last one (here: the open) with no further appends. */
    CHECK_OK(tl_wal_open(dir, 9, 1, TL_FSYNC_EVERYSEC, &w));
    append_int(w, "c", 3, &seq);
    CHECK_OK(tl_wal_wait(w, seq, TL_WAIT_WRITTEN));
    CHECK_OK(tl_wal_wait(w, seq, TL_WAIT_DURABLE));
    CHECK_EQ_INT(tl_wal_durable_seq(w), 1);
    tl_wal_stats(w, NULL, &syncs);
    CHECK_EQ_INT(syncs, 1); /* one sync, by the write or the timer */
    /* tl_wal_sync does not wait for the timer. */
    append_int(w, "d", 4, &seq);
    append_int(w, "e", 5, &seq);
    CHECK_OK(tl_wal_sync(w));
    CHECK_EQ_INT(tl_wal_durable_seq(w), 3);
    tl_wal_stats(w, NULL, &syncs);
    CHECK_EQ_INT(syncs, 2);
    CHECK_OK(tl_wal_close(w));

    test_rmdir(dir);
    free(dir);
}

/* ---- Rolling ---- */

struct roller {
    struct tl_wal *w;
    uint64_t first_number;
    int rolls;
};

static void *roll_worker(void *arg)
{
    struct roller *rl = arg;
    for (int k = 1; k <= rl->rolls; k++) {
        CHECK_OK(tl_wal_roll(rl->w, rl->first_number + (uint64_t)k));
        usleep(2000);
    }
    return NULL;
}

static void replay_segments(const char *dir, uint64_t first, uint64_t last_number,
                            tl_wal_replay_fn fn, void *arg, uint64_t *last_seq)
{
    char path[4200];
    for (uint64_t n = first; n <= last_number; n++) {
        tl_wal_path(path, sizeof path, dir, n);
        CHECK_OK(tl_wal_replay(path, n == last_number, fn, arg, last_seq));
    }
}

static void test_roll_across_segments(void)
{
    char *dir = test_tmpdir("wal-roll");
    struct tl_wal *w;
    uint64_t seq, syncs;
    char path[4200];

    /* Deterministic: 10 records, roll, 10 records, roll with nothing, roll, 5 records. */
    CHECK_OK(tl_wal_open(dir, 1, 1, TL_FSYNC_NO, &w));
    for (int i = 0; i < 10; i++)
        append_int(w, "k", i, &seq);
    CHECK_OK(tl_wal_roll(w, 2));
    CHECK_EQ_INT(tl_wal_roll(w, 2), -EINVAL); /* numbers only go up */
    for (int i = 10; i < 20; i++)
        append_int(w, "k", i, &seq);
    CHECK_OK(tl_wal_roll(w, 3));
    CHECK_OK(tl_wal_roll(w, 5));
    for (int i = 20; i < 25; i++)
        append_int(w, "k", i, &seq);
    CHECK_OK(tl_wal_close(w));

    struct collect c = {0};
    uint64_t last = 0;
    uint64_t numbers[] = {1, 2, 3, 5};
    for (size_t k = 0; k < 4; k++) {
        size_t before = c.n;
        tl_wal_path(path, sizeof path, dir, numbers[k]);
        CHECK_OK(tl_wal_replay(path, k == 3, collect_fn, &c, &last));
        CHECK_EQ_INT(c.n - before, k == 0 ? 10 : k == 1 ? 10 : k == 2 ? 0 : 5);
    }
    CHECK_EQ_INT(c.n, 25);
    for (size_t k = 0; k < 25; k++) {
        CHECK_EQ_INT(c.seqs[k], k + 1);
        CHECK_EQ_INT(c.vals[k], (int64_t)k);
    }
    CHECK_EQ_INT(last, 25);
    tl_wal_path(path, sizeof path, dir, 3);
    CHECK_EQ_INT(file_size(path), TL_WAL_HEADER_BYTES); /* an empty segment is whole */
    tl_wal_path(path, sizeof path, dir, 4);
    CHECK(access(path, F_OK) != 0);

    /* Under NO, a roll always syncs the old segment: a roll after data, and close. */
    CHECK_OK(tl_wal_open(dir, 10, 1, TL_FSYNC_NO, &w));
    for (int i = 0; i < 10; i++)
        append_int(w, "k", i, &seq);
    CHECK_OK(tl_wal_roll(w, 11));
    for (int i = 0; i < 10; i++)
        append_int(w, "k", i, &seq);
    CHECK_OK(tl_wal_wait(w, seq, TL_WAIT_WRITTEN));
    tl_wal_stats(w, NULL, &syncs);
    CHECK_EQ_INT(syncs, 1);
    CHECK_OK(tl_wal_close(w));

    /* Concurrent: 4 appender threads while another thread rolls 20 times. */
    struct run run = {.mode = TL_FSYNC_EVERYSEC, .first_seq = 1, .n = N_RECORDS};
    run.who = calloc(N_RECORDS, sizeof *run.who);
    CHECK(run.who);
    CHECK_OK(tl_wal_open(dir, 100, 1, TL_FSYNC_EVERYSEC, &run.w));
    struct roller rl = {.w = run.w, .first_number = 100, .rolls = 20};
    pthread_t rt;
    CHECK(pthread_create(&rt, NULL, roll_worker, &rl) == 0);
    run_appenders(&run);
    pthread_join(rt, NULL);
    CHECK_OK(tl_wal_close(run.w));
    struct check ck;
    check_init(&ck, run.who, 1, N_RECORDS);
    last = 0;
    replay_segments(dir, 100, 120, check_fn, &ck, &last);
    CHECK_EQ_INT(last, N_RECORDS);
    check_done(&ck);
    free(run.who);

    test_rmdir(dir);
    free(dir);
}

/* ---- Large records ---- */

static int big_fn(void *arg, uint64_t seq, const uint8_t *key, size_t klen,
                  const struct tl_record *r)
{
    size_t *n = arg;
    (void)seq;
    CHECK_EQ_INT(klen, TL_MAX_KEY_BYTES);
    for (size_t j = 0; j < klen; j++)
        CHECK_EQ_INT(key[j], (uint8_t)(j * 7));
    CHECK_EQ_INT(r->kind, TL_KIND_PUT_BYTES);
    CHECK_EQ_INT(r->len, (*n + 1) * (5u << 20));
    for (size_t j = 0; j < r->len; j += 4093)
        CHECK_EQ_INT(r->bytes[j], (uint8_t)(j * 13 + *n));
    (*n)++;
    return 0;
}

static void test_large_records(void)
{
    char *dir = test_tmpdir("wal-large");
    struct tl_wal *w;
    uint64_t seq;
    size_t vmax = (16u << 20) + 64;
    uint8_t *key = malloc(TL_MAX_KEY_BYTES + 1), *val = malloc(vmax);
    CHECK(key && val);
    for (size_t j = 0; j <= TL_MAX_KEY_BYTES; j++)
        key[j] = (uint8_t)(j * 7);
    CHECK_OK(tl_wal_open(dir, 1, 1, TL_FSYNC_EVERYSEC, &w));
    /* Values of 5, 10 and 15 MiB: each larger than the 4 MiB buffer. */
    for (size_t n = 0; n < 3; n++) {
        struct tl_record r = {.kind = TL_KIND_PUT_BYTES, .bytes = val, .len = (n + 1) * (5u << 20)};
        for (size_t j = 0; j < r.len; j++)
            val[j] = (uint8_t)(j * 13 + n);
        CHECK_OK(tl_wal_append(w, key, TL_MAX_KEY_BYTES, &r, &seq));
    }
    struct tl_record small = {.kind = TL_KIND_PUT_INT, .i = 1};
    CHECK_EQ_INT(tl_wal_append(w, key, TL_MAX_KEY_BYTES + 1, &small, &seq), TL_ETOOBIG);
    struct tl_record huge = {.kind = TL_KIND_PUT_BYTES, .bytes = val, .len = (16u << 20) + 64};
    CHECK(huge.len <= vmax);
    CHECK_EQ_INT(tl_wal_append(w, "k", 1, &huge, &seq), TL_ETOOBIG);
    CHECK_EQ_INT(tl_wal_next_seq(w), 4);
    CHECK_OK(tl_wal_close(w));
    char path[4200];
    tl_wal_path(path, sizeof path, dir, 1);
    size_t n = 0;
    uint64_t last = 0;
    CHECK_OK(tl_wal_replay(path, true, big_fn, &n, &last));
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT(last, 3);
    free(key);
    free(val);
    test_rmdir(dir);
    free(dir);
}

/* ---- Torn tails and corruption ---- */

#define DAMAGE_RECORDS 50

static int count_fn(void *arg, uint64_t seq, const uint8_t *key, size_t klen,
                    const struct tl_record *r)
{
    uint64_t *n = arg;
    (void)key;
    (void)klen;
    CHECK_EQ_INT(seq, *n + 1);
    CHECK_EQ_INT(r->kind, TL_KIND_PUT_BYTES);
    CHECK_EQ_INT(r->len, 10 + seq);
    (*n)++;
    return 0;
}

/* Writes segment 1 with DAMAGE_RECORDS records of growing size; offs[k] gets record k's offset
 * and offs[DAMAGE_RECORDS] the end. */
static void write_damage_segment(const char *dir, char *path, size_t cap, uint64_t *offs)
{
    struct tl_wal *w;
    uint8_t val[128];
    memset(val, 'v', sizeof val);
    CHECK_OK(tl_wal_open(dir, 1, 1, TL_FSYNC_NO, &w));
    for (uint64_t s = 1; s <= DAMAGE_RECORDS; s++) {
        struct tl_record r = {.kind = TL_KIND_PUT_BYTES, .bytes = val, .len = 10 + s};
        uint64_t seq;
        CHECK_OK(tl_wal_append(w, "key", 3, &r, &seq));
        CHECK_EQ_INT(seq, s);
    }
    CHECK_OK(tl_wal_close(w));
    tl_wal_path(path, cap, dir, 1);
    /* Record k: frame 8 + seq 8 + klen 1 + key 3 + kind 1 + value. */
    offs[0] = TL_WAL_HEADER_BYTES;
    for (uint64_t k = 0; k < DAMAGE_RECORDS; k++)
        offs[k + 1] = offs[k] + 8 + 8 + 1 + 3 + 1 + 10 + (k + 1);
    CHECK_EQ_INT(file_size(path), offs[DAMAGE_RECORDS]);
}

static void patch_file(const char *path, uint64_t off, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY);
    CHECK(fd >= 0);
    CHECK(pwrite(fd, data, len, (off_t)off) == (ssize_t)len);
    close(fd);
}

static void flip_byte(const char *path, uint64_t off)
{
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    uint8_t b;
    CHECK(pread(fd, &b, 1, (off_t)off) == 1);
    b ^= 0x5a;
    CHECK(pwrite(fd, &b, 1, (off_t)off) == 1);
    close(fd);
}

static void test_torn_tail_is_cut(void)
{
    char *dir = test_tmpdir("wal-torn");
    char path[4200];
    uint64_t offs[DAMAGE_RECORDS + 1], n, last;

    /* Cut in the middle of the last record: every earlier record, file cut at its start. */
    write_damage_segment(dir, path, sizeof path, offs);
    CHECK(truncate(path, (off_t)(offs[DAMAGE_RECORDS - 1] + 20)) == 0);
    n = 0;
    last = 0;
    CHECK_OK(tl_wal_replay(path, true, count_fn, &n, &last));
    CHECK_EQ_INT(n, DAMAGE_RECORDS - 1);
    CHECK_EQ_INT(last, DAMAGE_RECORDS - 1);
    CHECK_EQ_INT(file_size(path), offs[DAMAGE_RECORDS - 1]);
    n = 0; /* a second replay finds a clean file */
    CHECK_OK(tl_wal_replay(path, true, count_fn, &n, &last));
    CHECK_EQ_INT(n, DAMAGE_RECORDS - 1);
    CHECK_EQ_INT(file_size(path), offs[DAMAGE_RECORDS - 1]);
    /* Cut inside the 16-byte header of the last record. */
    CHECK(truncate(path, (off_t)(offs[DAMAGE_RECORDS - 2] + 5)) == 0);
    n = 0;
    CHECK_OK(tl_wal_replay(path, true, count_fn, &n, &last));
    CHECK_EQ_INT(n, DAMAGE_RECORDS - 2);
    CHECK_EQ_INT(file_size(path), offs[DAMAGE_RECORDS - 2]);
    unlink(path);

    /* Random bytes after the last record. */
    write_damage_segment(dir, path, sizeof path, offs);
    uint8_t junk[3000];
    uint64_t rs = 12345;
    for (size_t k = 0; k < sizeof junk; k++)
        junk[k] = (uint8_t)test_rand(&rs);
    patch_file(path, offs[DAMAGE_RECORDS], junk, sizeof junk);
    n = 0;
    last = 0;
    CHECK_OK(tl_wal_replay(path, true, count_fn, &n, &last));
    CHECK_EQ_INT(n, DAMAGE_RECORDS);
    CHECK_EQ_INT(last, DAMAGE_RECORDS);
    CHECK_EQ_INT(file_size(path), offs[DAMAGE_RECORDS]);

    /* A zero-filled tail (the file grew, the data never came). */
    uint8_t zeros[4096] = {0};
    patch_file(path, offs[DAMAGE_RECORDS], zeros, sizeof zeros);
    n = 0;
    CHECK_OK(tl_wal_replay(path, true, count_fn, &n, &last));
    CHECK_EQ_INT(n, DAMAGE_RECORDS);
    CHECK_EQ_INT(file_size(path), offs[DAMAGE_RECORDS]);

    /* The last record's checksum broken, nothing after it: torn, cut. */
    flip_byte(path, offs[DAMAGE_RECORDS - 1] + 30);
    n = 0;
    CHECK_OK(tl_wal_replay(path, true, count_fn, &n, &last));
    CHECK_EQ_INT(n, DAMAGE_RECORDS - 1);
    CHECK_EQ_INT(file_size(path), offs[DAMAGE_RECORDS - 1]);
    unlink(path);

    /* A torn header on the last segment: an empty segment, cut to nothing. */
    write_damage_segment(dir, path, sizeof path, offs);
    CHECK(truncate(path, 10) == 0);
    n = 0;
    last = 77;
    CHECK_OK(tl_wal_replay(path, true, count_fn, &n, &last));
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(last, 77); /* unchanged: no records */
    CHECK_EQ_INT(file_size(path), 0);
    CHECK_OK(tl_wal_replay(path, false, count_fn, &n, &last)); /* empty is fine anywhere */
    /* ... and the empty file can be reused as a new segment. */
    struct tl_wal *w;
    CHECK_OK(tl_wal_open(dir, 1, 1, TL_FSYNC_NO, &w));
    CHECK_OK(tl_wal_close(w));
    CHECK_EQ_INT(file_size(path), TL_WAL_HEADER_BYTES);
    /* ... but one holding data is not overwritten. */
    CHECK_EQ_INT(tl_wal_open(dir, 1, 1, TL_FSYNC_NO, &w), -EEXIST);
    CHECK(strstr(tl_last_error(), path) != NULL);

    test_rmdir(dir);
    free(dir);
}

static void test_corruption_is_reported(void)
{
    char *dir = test_tmpdir("wal-corrupt");
    char path[4200], want[4300];
    uint64_t offs[DAMAGE_RECORDS + 1], n, last;

    /* A flipped byte in the value of record 25 of 50: corruption, for a last segment too, and
     * nothing is cut. */
    write_damage_segment(dir, path, sizeof path, offs);
    uint64_t bad = offs[24];
    flip_byte(path, bad + 25);
    for (int is_last = 0; is_last < 2; is_last++) {
        n = 0;
        last = 0;
        CHECK_EQ_INT(tl_wal_replay(path, is_last, count_fn, &n, &last), TL_ECORRUPT);
        CHECK(strstr(tl_last_error(), path) != NULL);
        snprintf(want, sizeof want, "offset %llu ", (unsigned long long)bad);
        CHECK(strstr(tl_last_error(), want) != NULL);
        CHECK_EQ_INT(n, 24); /* the records before it were delivered */
        CHECK_EQ_INT(last, 24);
        CHECK_EQ_INT(file_size(path), offs[DAMAGE_RECORDS]);
    }
    unlink(path);

    /* A torn tail in a segment that is not the last: corruption, file untouched. */
    write_damage_segment(dir, path, sizeof path, offs);
    CHECK(truncate(path, (off_t)(offs[DAMAGE_RECORDS - 1] + 20)) == 0);
    n = 0;
    CHECK_EQ_INT(tl_wal_replay(path, false, count_fn, &n, &last), TL_ECORRUPT);
    CHECK(strstr(tl_last_error(), path) != NULL);
    snprintf(want, sizeof want, "offset %llu ", (unsigned long long)offs[DAMAGE_RECORDS - 1]);
    CHECK(strstr(tl_last_error(), want) != NULL);
    CHECK_EQ_INT(file_size(path), offs[DAMAGE_RECORDS - 1] + 20);
    unlink(path);

    /* A bad header. */
    write_damage_segment(dir, path, sizeof path, offs);
    flip_byte(path, 3);
    CHECK_EQ_INT(tl_wal_replay(path, true, count_fn, &n, &last), TL_ECORRUPT);
    CHECK(strstr(tl_last_error(), path) != NULL);
    CHECK(strstr(tl_last_error(), "offset 0") != NULL);
    flip_byte(path, 3);
    /* A header that names another segment (the file was renamed). */
    char other[4200];
    tl_wal_path(other, sizeof other, dir, 2);
    CHECK(rename(path, other) == 0);
    CHECK_EQ_INT(tl_wal_replay(other, true, count_fn, &n, &last), TL_ECORRUPT);
    CHECK(strstr(tl_last_error(), other) != NULL);
    CHECK(rename(other, path) == 0);
    /* A sequence number that skips: a valid checksum but a broken order. */
    uint8_t rec[256];
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    size_t len = (size_t)(offs[11] - offs[10]);
    CHECK(pread(fd, rec, len, (off_t)offs[10]) == (ssize_t)len);
    close(fd);
    tl_put_u64(rec + 8, 99);
    tl_put_u32(rec, tl_crc32c_mask(tl_crc32c(rec + 8, len - 8)));
    patch_file(path, offs[10], rec, len);
    n = 0;
    CHECK_EQ_INT(tl_wal_replay(path, true, count_fn, &n, &last), TL_ECORRUPT);
    snprintf(want, sizeof want, "offset %llu ", (unsigned long long)offs[10]);
    CHECK(strstr(tl_last_error(), want) != NULL);
    CHECK_EQ_INT(n, 10);

    /* A missing file. */
    CHECK_EQ_INT(tl_wal_replay("/nonexistent/000001.wal", true, count_fn, &n, &last), -ENOENT);

    test_rmdir(dir);
    free(dir);
}

/* A callback's non-zero return stops the replay and is returned. */
static int stop_fn(void *arg, uint64_t seq, const uint8_t *key, size_t klen,
                   const struct tl_record *r)
{
    (void)arg;
    (void)key;
    (void)klen;
    (void)r;
    return seq == 5 ? 42 : 0;
}

static void test_callback_stops_replay(void)
{
    char *dir = test_tmpdir("wal-stop");
    char path[4200];
    uint64_t offs[DAMAGE_RECORDS + 1], last = 0;
    write_damage_segment(dir, path, sizeof path, offs);
    CHECK_EQ_INT(tl_wal_replay(path, true, stop_fn, NULL, &last), 42);
    CHECK_EQ_INT(last, 4);
    test_rmdir(dir);
    free(dir);
}

/* ---- A failed write breaks the WAL until it repairs itself ---- */

static int any_fn(void *arg, uint64_t seq, const uint8_t *key, size_t klen,
                  const struct tl_record *r)
{
    uint64_t *n = arg;
    (void)key;
    (void)klen;
    (void)r;
    CHECK_EQ_INT(seq, *n + 1);
    (*n)++;
    return 0;
}

static void test_write_error_breaks_until_repaired(void)
{
    char *dir = test_tmpdir("wal-fail");
    char path[4200];
    struct tl_wal *w;
    uint64_t seq = 0;
    struct rlimit old, lim;
    CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
    signal(SIGXFSZ, SIG_IGN);

    CHECK_OK(tl_wal_open(dir, 1, 1, TL_FSYNC_ALWAYS, &w));
    tl_wal_path(path, sizeof path, dir, 1);
    /* Files may not grow past 64 KiB: the write that would cross it fails with EFBIG. */
    lim = old;
    lim.rlim_cur = 64 << 10;
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    uint8_t val[1000];
    memset(val, 'x', sizeof val);
    struct tl_record r = {.kind = TL_KIND_PUT_BYTES, .bytes = val, .len = sizeof val};
    int rc = 0;
    for (int i = 0; i < 200 && rc == 0; i++) {
        rc = tl_wal_append(w, "key", 3, &r, &seq);
        if (rc == 0)
            rc = tl_wal_wait(w, seq, TL_WAIT_DURABLE);
    }
    CHECK_EQ_INT(rc, -EFBIG);
    CHECK(strstr(tl_last_error(), path) != NULL);
    CHECK(strstr(tl_last_error(), strerror(EFBIG)) != NULL);
    /* While broken (the limit still holds, so every repair fails): appends, waits, rolls and
     * syncs all fail, naming the segment. */
    CHECK_EQ_INT(tl_wal_append(w, "key", 3, &r, &seq), -EFBIG);
    CHECK(strstr(tl_last_error(), path) != NULL);
    uint64_t failed_seq = tl_wal_next_seq(w) - 1;
    CHECK_EQ_INT(tl_wal_wait(w, failed_seq, TL_WAIT_WRITTEN), -EFBIG);
    CHECK_EQ_INT(tl_wal_roll(w, 2), -EFBIG);
    CHECK_EQ_INT(tl_wal_sync(w), -EFBIG);
    /* Lifted: a repair succeeds, the record whose write failed is written, appends resume. */
    CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
    for (int i = 0; i < 5000 && (rc = tl_wal_append(w, "key", 3, &r, &seq)) < 0; i++)
        usleep(1000);
    CHECK_OK(rc);
    CHECK_OK(tl_wal_wait(w, seq, TL_WAIT_DURABLE));
    CHECK(tl_wal_durable_seq(w) > failed_seq);
    CHECK_OK(tl_wal_close(w));
    /* Every record replays, in order, the failed one too: no torn record in the middle. */
    uint64_t n = 0, last = 0;
    CHECK_OK(tl_wal_replay(path, true, any_fn, &n, &last));
    CHECK_EQ_INT(n, last);
    CHECK_EQ_INT(last, seq);
    signal(SIGXFSZ, SIG_DFL);
    test_rmdir(dir);
    free(dir);
}

int main(void)
{
    test_require_uring();
    test_wait_semantics();
    test_torn_tail_is_cut();
    test_corruption_is_reported();
    test_callback_stops_replay();
    test_large_records();
    test_write_error_breaks_until_repaired();
    test_roll_across_segments();
    test_concurrent_appends_replay_exactly(TL_FSYNC_NO);
    test_concurrent_appends_replay_exactly(TL_FSYNC_EVERYSEC);
    test_concurrent_appends_replay_exactly(TL_FSYNC_ALWAYS);
    return 0;
}
