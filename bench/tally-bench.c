/*
 * tally-bench.c - the engine benchmark: libtallystore against RocksDB, side by side.
 *
 * Workloads (each is a fixed sequence of key ids generated before the clock starts, so every
 * engine runs exactly the same operations):
 *   incr-random   increments by 1 of keys drawn uniformly from N keys
 *   incr-zipf     increments by 1 of Zipf-distributed keys (exponent --zipf; hot keys are
 *                 scattered over the key space, not adjacent)
 *   read-present  point reads of keys that exist, each value checked against the expected count
 *   read-absent   point reads of keys that do not exist but sort between ones that do
 *                 ("ctr:%010d~"), so only the Bloom filter can answer them cheaply
 * Keys are "ctr:%010d". Engines run one workload each in turn (the order alternates between
 * workloads) against their own directory, all open for the whole run:
 *   tally         tl_db_incr / tl_db_get, fsync everysec (the default)
 *   rocksdb       a uint64 add merge operator (written here); the WAL is on, writes are not
 *                 synced (sync = 0) and a thread syncs the WAL once a second, as everysec does;
 *                 LZ4 at every level; sizes matched to Tally's defaults (64 MiB memtable,
 *                 4 KiB blocks, 64 MiB block cache, 10-bit Bloom)
 *   rocksdb-rmw   Get then Put of the incremented value (what an INCR that returns the value
 *                 costs without a merge operator), increments only, in a directory of its own
 * After the increment workloads each engine is flushed and fully compacted; the benchmark then
 * reports bytes on disk per distinct counter and write amplification. Latency is measured per
 * operation with CLOCK_MONOTONIC into a log-linear histogram (32 sub-buckets per power of two,
 * so a percentile is within about 3% of the true value).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* nftw's FTW_PHYS, strtok_r */
#endif
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_ROCKSDB
#include <rocksdb/c.h>
#endif

#include "tallystore.h"

#define KEY_PREFIX    "ctr:"
#define KEY_DIGITS    10
#define KEY_BYTES_MAX (sizeof KEY_PREFIX - 1 + KEY_DIGITS + 1)
#define ABSENT_SUFFIX '~'
#define MAX_KEYS      1000000000ull /* ids must fit "%010d" and a uint32_t */
#define MAX_OPS       1000000000ull
#define MAX_THREADS   64
#define MAX_ROWS      32
#define DEFAULT_KEYS  1000000
#define DEFAULT_OPS   2000000
#define SMALL_KEYS    100000
#define SMALL_OPS     200000
#define DEFAULT_ZIPF  0.99
#define DEFAULT_SEED  42
/* Latency histogram: values below HIST_SUB ns are exact, above it HIST_SUB buckets per power of
 * two. */
#define HIST_SUB_BITS 5
#define HIST_SUB      (1u << HIST_SUB_BITS)
#define HIST_BUCKETS  (HIST_SUB + (64 - HIST_SUB_BITS) * HIST_SUB)
/* Waiting for background flushes and compactions between workloads. */
#define SETTLE_POLL_MS    100
#define SETTLE_QUIET_MS   1000
#define SETTLE_MAX_MS     600000
#define WAL_SYNC_EVERY_MS 1000
/* RocksDB settings matched to Tally's defaults (tallystore.h). */
#define RDB_MEMTABLE_BYTES (64u << 20)
#define RDB_MEMTABLES      3 /* one active + two frozen, as max_immutable_memtables = 2 */
#define RDB_BLOCK_BYTES    4096
#define RDB_CACHE_BYTES    (64u << 20)
#define RDB_BLOOM_BITS     10
#define RDB_L1_BYTES       (64ull << 20)
#define RDB_FILE_BYTES     (64ull << 20)
#define RDB_LEVELS         7
#define RDB_BG_JOBS        2
/* rocksdb::BottommostLevelCompaction::kForceOptimized (options.h): the C API takes the number. */
#define RDB_BOTTOMMOST_FORCE_OPTIMIZED 3

enum workload { W_INCR_RANDOM, W_INCR_ZIPF, W_READ_PRESENT, W_READ_ABSENT, W_COUNT };
static const char *const workload_names[W_COUNT] = {"incr-random", "incr-zipf", "read-present",
                                                    "read-absent"};

enum engine_kind { E_TALLY, E_ROCKSDB, E_ROCKSDB_RMW, E_COUNT };
static const char *const engine_names[E_COUNT] = {"tally", "rocksdb", "rocksdb-rmw"};

struct hist {
    uint64_t count;
    uint64_t buckets[HIST_BUCKETS];
};

struct engine {
    enum engine_kind kind;
    char dir[PATH_MAX];
    tl_db *tdb;
    bool wait_written; /* tally: wait until each record is in the kernel (--tally-wait-written) */
#ifdef HAVE_ROCKSDB
    rocksdb_t *rdb;
    rocksdb_options_t *ropts;
    rocksdb_writeoptions_t *wopts;
    rocksdb_readoptions_t *readopts;
    rocksdb_cache_t *cache;
    rocksdb_block_based_table_options_t *table_opts;
    pthread_t syncer;
    bool syncer_running;
    pthread_mutex_t stop_lock;
    pthread_cond_t stop_cond;
    bool stop;
#endif
    /* Figures of the full compaction. */
    bool compacted;
    double wamp_before;
    double wamp_after;
    uint64_t written_before; /* SSTable bytes written by flushes and compactions */
    uint64_t written_after;
    double compact_s;
    uint64_t disk_bytes;
};

/* The operations of one workload: key ids, read as absent keys when absent is set. */
struct plan {
    enum workload w;
    uint32_t *ids;
    size_t n;
    bool write;
    bool absent;
};

struct row {
    const char *workload;
    const char *engine;
    double ops_per_s;
    double p50_us, p99_us, p999_us;
    uint64_t wrong; /* reads whose value was not the expected count */
};

struct config {
    uint64_t keys;
    uint64_t ops;
    int threads;
    uint64_t seed;
    double zipf;
    const char *dir;
    bool tally_wait_written;
    bool workloads[W_COUNT];
    bool engines[E_COUNT];
};

static struct row rows[MAX_ROWS];
static int nrows;
/* expected[id]: the increments every engine has received for key id (the same for all). */
static uint32_t *expected;

/* ------------------------------------------------------------------------------------------ */
/* Small helpers */

static _Noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("tally-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* splitmix64: small, fast and good enough to draw keys. */
static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t *state, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)rng_next(state) * n) >> 64);
}

static double rng_unit(uint64_t *state)
{
    return (double)(rng_next(state) >> 11) * 0x1.0p-53;
}

/* "ctr:%010u", plus ABSENT_SUFFIX for a key that is never written. Returns the length. */
static size_t format_key(char *buf, uint32_t id, bool absent)
{
    memcpy(buf, KEY_PREFIX, sizeof KEY_PREFIX - 1);
    char *d = buf + sizeof KEY_PREFIX - 1;
    for (int i = KEY_DIGITS - 1; i >= 0; i--) {
        d[i] = (char)('0' + id % 10);
        id /= 10;
    }
    size_t len = sizeof KEY_PREFIX - 1 + KEY_DIGITS;
    if (absent)
        buf[len++] = ABSENT_SUFFIX;
    return len;
}

static void put_le64(char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (char)(v >> (8 * i));
}

static uint64_t get_le64(const char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)(unsigned char)p[i] << (8 * i);
    return v;
}

/* ------------------------------------------------------------------------------------------ */
/* Latency histogram */

static unsigned hist_index(uint64_t v)
{
    if (v < HIST_SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned group = msb - HIST_SUB_BITS;
    unsigned sub = (unsigned)(v >> group) - HIST_SUB;
    return HIST_SUB + group * HIST_SUB + sub;
}

/* The middle of bucket i, in ns. */
static double hist_value(unsigned i)
{
    if (i < HIST_SUB)
        return i;
    unsigned group = (i - HIST_SUB) / HIST_SUB, sub = (i - HIST_SUB) % HIST_SUB;
    double width = ldexp(1.0, (int)group);
    return (HIST_SUB + sub) * width + (width - 1) / 2;
}

static void hist_add(struct hist *h, uint64_t v)
{
    h->buckets[hist_index(v)]++;
    h->count++;
}

static void hist_merge(struct hist *into, const struct hist *h)
{
    into->count += h->count;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        into->buckets[i] += h->buckets[i];
}

static double hist_percentile_us(const struct hist *h, double p)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = (uint64_t)ceil(p * (double)h->count), seen = 0;
    if (rank < 1)
        rank = 1;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank)
            return hist_value(i) / 1000.0;
    }
    return hist_value(HIST_BUCKETS - 1) / 1000.0;
}

/* ------------------------------------------------------------------------------------------ */
/* Zipf sampling by rejection-inversion (W. Hörmann and G. Derflinger, "Rejection-inversion to
 * generate variates from monotone discrete distributions", 1996): constant time per draw, no
 * table, any exponent s > 0. P(rank k) is proportional to k^-s for k in 1..n. */

struct zipf {
    double s;
    double n;
    double h_x1; /* H(1.5) - 1 */
    double h_n;  /* H(n + 0.5) */
    double cut;  /* draws with k - x <= cut are accepted without evaluating H */
};

/* log1p(x)/x and expm1(x)/x, continuous at 0. */
static double log1p_over_x(double x)
{
    return fabs(x) > 1e-8 ? log1p(x) / x : 1 - x / 2 + x * x / 3;
}

static double expm1_over_x(double x)
{
    return fabs(x) > 1e-8 ? expm1(x) / x : 1 + x / 2 + x * x / 6;
}

/* H(x) = integral of t^-s from 1 to x, (x^(1-s) - 1) / (1 - s), written so that s = 1 works. */
static double zipf_H(const struct zipf *z, double x)
{
    double lx = log(x);
    return expm1_over_x((1 - z->s) * lx) * lx;
}

static double zipf_H_inv(const struct zipf *z, double y)
{
    double t = y * (1 - z->s);
    if (t < -1)
        t = -1; /* rounding at the far end of the range */
    return exp(log1p_over_x(t) * y);
}

static double zipf_h(const struct zipf *z, double x)
{
    return exp(-z->s * log(x));
}

static void zipf_init(struct zipf *z, double s, uint64_t n)
{
    z->s = s;
    z->n = (double)n;
    z->h_x1 = zipf_H(z, 1.5) - 1;
    z->h_n = zipf_H(z, z->n + 0.5);
    z->cut = 2 - zipf_H_inv(z, zipf_H(z, 2.5) - zipf_h(z, 2));
}

/* A rank in 1..n. */
static uint64_t zipf_next(const struct zipf *z, uint64_t *rng)
{
    for (;;) {
        double u = z->h_n + rng_unit(rng) * (z->h_x1 - z->h_n);
        double x = zipf_H_inv(z, u);
        double k = floor(x + 0.5);
        if (k < 1)
            k = 1;
        else if (k > z->n)
            k = z->n;
        if (k - x <= z->cut || u >= zipf_H(z, k + 0.5) - zipf_h(z, k))
            return (uint64_t)k;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Workload plans */

static void plan_make(struct plan *p, enum workload w, const struct config *cfg)
{
    p->w = w;
    p->n = cfg->ops;
    p->write = w == W_INCR_RANDOM || w == W_INCR_ZIPF;
    p->absent = w == W_READ_ABSENT;
    p->ids = malloc(p->n * sizeof *p->ids);
    if (!p->ids)
        die("out of memory for %zu operations", p->n);
    uint64_t rng = cfg->seed * 0x100000001b3ull + (uint64_t)w;

    if (w == W_INCR_RANDOM || w == W_READ_ABSENT) {
        for (size_t i = 0; i < p->n; i++)
            p->ids[i] = (uint32_t)rng_below(&rng, cfg->keys);
    } else if (w == W_INCR_ZIPF) {
        struct zipf z;
        zipf_init(&z, cfg->zipf, cfg->keys);
        /* rank -> id through a multiplication by a prime modulo the key count: a bijection
         * (the prime does not divide the count), so hot keys land all over the key space. */
        const uint64_t scatter = 2654435761ull;
        for (size_t i = 0; i < p->n; i++) {
            uint64_t rank = zipf_next(&z, &rng);
            p->ids[i] = (uint32_t)((rank - 1) * scatter % cfg->keys);
        }
    } else {
        /* read-present: uniform over the keys that hold a count. */
        uint32_t *present = malloc(cfg->keys * sizeof *present);
        if (!present)
            die("out of memory for %" PRIu64 " keys", cfg->keys);
        size_t npresent = 0;
        for (uint64_t id = 0; id < cfg->keys; id++)
            if (expected[id])
                present[npresent++] = (uint32_t)id;
        if (npresent == 0)
            die("read-present: no key holds a count");
        for (size_t i = 0; i < p->n; i++)
            p->ids[i] = present[rng_below(&rng, npresent)];
        free(present);
    }
}

/* What every engine will have after running p (identical for all: same operations). */
static void plan_account(const struct plan *p)
{
    if (!p->write)
        return;
    for (size_t i = 0; i < p->n; i++)
        expected[p->ids[i]]++;
}

static uint64_t distinct_counters(const struct config *cfg)
{
    uint64_t n = 0;
    for (uint64_t id = 0; id < cfg->keys; id++)
        n += expected[id] != 0;
    return n;
}

/* ------------------------------------------------------------------------------------------ */
/* RocksDB: the merge operator, opening, the once-a-second WAL sync */

#ifdef HAVE_ROCKSDB
/* Adds little-endian uint64 operands to the existing value (0 when there is none). A value or
 * operand that is not 8 bytes fails the merge, which RocksDB reports as corruption. */
static char *u64add_full_merge(void *state, const char *key, size_t klen, const char *existing,
                               size_t existing_len, const char *const *operands,
                               const size_t *operand_lens, int noperands, unsigned char *success,
                               size_t *new_len)
{
    (void)state, (void)key, (void)klen;
    *success = 0;
    uint64_t sum = 0;
    if (existing) {
        if (existing_len != 8)
            return NULL;
        sum = get_le64(existing);
    }
    for (int i = 0; i < noperands; i++) {
        if (operand_lens[i] != 8)
            return NULL;
        sum += get_le64(operands[i]);
    }
    char *out = malloc(8);
    if (!out)
        return NULL;
    put_le64(out, sum);
    *new_len = 8;
    *success = 1;
    return out;
}

/* Folds operands without the base: addition is associative, so this is the same sum. */
static char *u64add_partial_merge(void *state, const char *key, size_t klen,
                                  const char *const *operands, const size_t *operand_lens,
                                  int noperands, unsigned char *success, size_t *new_len)
{
    return u64add_full_merge(state, key, klen, NULL, 0, operands, operand_lens, noperands, success,
                             new_len);
}

static void u64add_delete_value(void *state, const char *value, size_t len)
{
    (void)state, (void)len;
    free((void *)value);
}

/* RocksDB calls the destructor unconditionally when the operator goes: it may not be NULL. */
static void u64add_destroy(void *state)
{
    (void)state;
}

static const char *u64add_name(void *state)
{
    (void)state;
    return "tally-bench.uint64add";
}

static void *rdb_syncer_main(void *arg)
{
    struct engine *e = arg;
    pthread_mutex_lock(&e->stop_lock);
    while (!e->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += WAL_SYNC_EVERY_MS / 1000;
        until.tv_nsec += (long)(WAL_SYNC_EVERY_MS % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&e->stop_cond, &e->stop_lock, &until);
        if (e->stop)
            break;
        pthread_mutex_unlock(&e->stop_lock);
        char *err = NULL;
        rocksdb_flush_wal(e->rdb, 1, &err);
        if (err) {
            fprintf(stderr, "tally-bench: rocksdb WAL sync: %s\n", err);
            rocksdb_free(err);
        }
        pthread_mutex_lock(&e->stop_lock);
    }
    pthread_mutex_unlock(&e->stop_lock);
    return NULL;
}

static void rdb_open(struct engine *e)
{
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(o, 1);
    rocksdb_options_set_error_if_exists(o, 1);
    rocksdb_options_set_merge_operator(
        o, rocksdb_mergeoperator_create(NULL, u64add_destroy, u64add_full_merge,
                                        u64add_partial_merge, u64add_delete_value, u64add_name));
    rocksdb_options_set_write_buffer_size(o, RDB_MEMTABLE_BYTES);
    rocksdb_options_set_max_write_buffer_number(o, RDB_MEMTABLES);
    rocksdb_options_set_level0_file_num_compaction_trigger(o, 4);
    rocksdb_options_set_level0_slowdown_writes_trigger(o, 12);
    rocksdb_options_set_level0_stop_writes_trigger(o, 20);
    rocksdb_options_set_max_bytes_for_level_base(o, RDB_L1_BYTES);
    rocksdb_options_set_max_bytes_for_level_multiplier(o, 10);
    rocksdb_options_set_target_file_size_base(o, RDB_FILE_BYTES);
    rocksdb_options_set_num_levels(o, RDB_LEVELS);
    rocksdb_options_set_max_background_jobs(o, RDB_BG_JOBS);
    rocksdb_options_set_compression(o, rocksdb_lz4_compression); /* every level, as Tally */
    rocksdb_options_enable_statistics(o); /* for flush and compaction bytes written */

    e->table_opts = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_size(e->table_opts, RDB_BLOCK_BYTES);
    e->cache = rocksdb_cache_create_lru(RDB_CACHE_BYTES);
    rocksdb_block_based_options_set_block_cache(e->table_opts, e->cache);
    /* The table options own the filter policy from here on. */
    rocksdb_block_based_options_set_filter_policy(
        e->table_opts, rocksdb_filterpolicy_create_bloom_full(RDB_BLOOM_BITS));
    rocksdb_options_set_block_based_table_factory(o, e->table_opts);

    char *err = NULL;
    e->rdb = rocksdb_open(o, e->dir, &err);
    if (err)
        die("rocksdb_open %s: %s", e->dir, err);
    e->ropts = o;
    e->wopts = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(e->wopts, 0);
    e->readopts = rocksdb_readoptions_create();

    pthread_mutex_init(&e->stop_lock, NULL);
    pthread_cond_init(&e->stop_cond, NULL);
    e->stop = false;
    if (pthread_create(&e->syncer, NULL, rdb_syncer_main, e) != 0)
        die("cannot start the RocksDB WAL sync thread");
    e->syncer_running = true;
}

static void rdb_close(struct engine *e)
{
    if (e->syncer_running) {
        pthread_mutex_lock(&e->stop_lock);
        e->stop = true;
        pthread_cond_signal(&e->stop_cond);
        pthread_mutex_unlock(&e->stop_lock);
        pthread_join(e->syncer, NULL);
        e->syncer_running = false;
        pthread_mutex_destroy(&e->stop_lock);
        pthread_cond_destroy(&e->stop_cond);
    }
    if (e->rdb)
        rocksdb_close(e->rdb);
    if (e->wopts)
        rocksdb_writeoptions_destroy(e->wopts);
    if (e->readopts)
        rocksdb_readoptions_destroy(e->readopts);
    if (e->ropts)
        rocksdb_options_destroy(e->ropts);
    if (e->table_opts)
        rocksdb_block_based_options_destroy(e->table_opts);
    if (e->cache)
        rocksdb_cache_destroy(e->cache);
    e->rdb = NULL;
}

/* A counter of RocksDB's statistics ("rocksdb.flush.write.bytes"), 0 if absent. */
static uint64_t rdb_ticker(struct engine *e, const char *name)
{
    char *s = rocksdb_options_statistics_get_string(e->ropts);
    uint64_t v = 0;
    if (!s)
        return 0;
    char pattern[128];
    snprintf(pattern, sizeof pattern, "%s COUNT : ", name);
    const char *p = strstr(s, pattern);
    if (p)
        v = strtoull(p + strlen(pattern), NULL, 10);
    rocksdb_free(s);
    return v;
}

/* (flush + compaction bytes written) / flush bytes written: Tally's definition. */
static double rdb_write_amplification(struct engine *e, uint64_t *written)
{
    uint64_t flush = rdb_ticker(e, "rocksdb.flush.write.bytes");
    uint64_t compact = rdb_ticker(e, "rocksdb.compact.write.bytes");
    *written = flush + compact;
    return flush ? (double)(flush + compact) / (double)flush : 0;
}

static bool rdb_busy(struct engine *e)
{
    static const char *const props[] = {"rocksdb.num-running-compactions",
                                        "rocksdb.num-running-flushes", "rocksdb.compaction-pending",
                                        "rocksdb.mem-table-flush-pending"};
    for (size_t i = 0; i < sizeof props / sizeof props[0]; i++) {
        uint64_t v = 0;
        if (rocksdb_property_int(e->rdb, props[i], &v) == 0 && v != 0)
            return true;
    }
    return false;
}
#endif /* HAVE_ROCKSDB */

/* ------------------------------------------------------------------------------------------ */
/* Engines */

static void engine_open(struct engine *e, enum engine_kind kind, const char *base,
                        const struct config *cfg)
{
    e->kind = kind;
    e->wait_written = cfg->tally_wait_written;
    if ((size_t)snprintf(e->dir, sizeof e->dir, "%s/%s", base, engine_names[kind]) >= sizeof e->dir)
        die("directory name too long: %s", base);
    struct stat st;
    if (stat(e->dir, &st) == 0)
        die("%s already exists: every run needs fresh databases", e->dir);
    if (kind == E_TALLY) {
        struct tl_options o;
        tl_options_init(&o);
        o.fsync = TL_FSYNC_EVERYSEC;
        int rc = tl_db_open(e->dir, &o, &e->tdb);
        if (rc < 0)
            die("tl_db_open %s: %s: %s", e->dir, tl_strerror(rc), tl_last_error());
        return;
    }
#ifdef HAVE_ROCKSDB
    rdb_open(e);
#else
    die("this tally-bench was built without RocksDB (librocksdb-dev, then ./configure)");
#endif
}

static void engine_close(struct engine *e)
{
    if (e->kind == E_TALLY) {
        if (e->tdb) {
            int rc = tl_db_close(e->tdb);
            if (rc < 0)
                fprintf(stderr, "tally-bench: tl_db_close: %s: %s\n", tl_strerror(rc),
                        tl_last_error());
        }
        e->tdb = NULL;
        return;
    }
#ifdef HAVE_ROCKSDB
    rdb_close(e);
#endif
}

/* One increment. 0 or a negative code (the message is printed). */
static int engine_incr(struct engine *e, const char *key, size_t klen)
{
    if (e->kind == E_TALLY) {
        int64_t v;
        uint64_t seq;
        int rc = tl_db_incr(e->tdb, key, klen, 1, &v, e->wait_written ? &seq : NULL);
        if (rc >= 0 && e->wait_written)
            rc = tl_db_wait(e->tdb, seq, TL_WAIT_WRITTEN);
        if (rc < 0)
            fprintf(stderr, "tally-bench: tl_db_incr %.*s: %s: %s\n", (int)klen, key,
                    tl_strerror(rc), tl_last_error());
        return rc < 0 ? rc : 0;
    }
#ifdef HAVE_ROCKSDB
    char *err = NULL;
    char val[8];
    if (e->kind == E_ROCKSDB) {
        put_le64(val, 1);
        rocksdb_merge(e->rdb, e->wopts, key, klen, val, sizeof val, &err);
    } else {
        size_t len = 0;
        char *cur = rocksdb_get(e->rdb, e->readopts, key, klen, &len, &err);
        uint64_t v = cur && len == 8 ? get_le64(cur) : 0;
        rocksdb_free(cur);
        if (!err) {
            put_le64(val, v + 1);
            rocksdb_put(e->rdb, e->wopts, key, klen, val, sizeof val, &err);
        }
    }
    if (err) {
        fprintf(stderr, "tally-bench: rocksdb write %.*s: %s\n", (int)klen, key, err);
        rocksdb_free(err);
        return -EIO;
    }
    return 0;
#else
    return -ENOTSUP;
#endif
}

/* One point read: 1 with *v when found, 0 when absent, a negative code on error. */
static int engine_get(struct engine *e, const char *key, size_t klen, int64_t *v)
{
    if (e->kind == E_TALLY) {
        struct tl_val val;
        int rc = tl_db_get(e->tdb, key, klen, &val);
        if (rc < 0) {
            fprintf(stderr, "tally-bench: tl_db_get %.*s: %s: %s\n", (int)klen, key,
                    tl_strerror(rc), tl_last_error());
            return rc;
        }
        if (rc == 1) {
            *v = val.type == TL_VAL_INT ? val.i : -1;
            tl_val_clear(&val);
        }
        return rc;
    }
#ifdef HAVE_ROCKSDB
    char *err = NULL;
    size_t len = 0;
    char *cur = rocksdb_get(e->rdb, e->readopts, key, klen, &len, &err);
    if (err) {
        fprintf(stderr, "tally-bench: rocksdb_get %.*s: %s\n", (int)klen, key, err);
        rocksdb_free(err);
        return -EIO;
    }
    if (!cur)
        return 0;
    *v = len == 8 ? (int64_t)get_le64(cur) : -1;
    rocksdb_free(cur);
    return 1;
#else
    return -ENOTSUP;
#endif
}

/* Waits (untimed) until the engine's background flushes and compactions are done, so that one
 * engine's leftover work does not run during the next measurement. */
static void engine_settle(struct engine *e)
{
    uint64_t waited = 0, quiet = 0;
    if (e->kind == E_TALLY) {
        struct tl_stats prev = {0};
        while (waited < SETTLE_MAX_MS && quiet < SETTLE_QUIET_MS) {
            struct tl_stats st;
            if (tl_db_stats(e->tdb, &st) < 0)
                return;
            bool same = st.flushes == prev.flushes && st.compactions == prev.compactions &&
                        st.compaction_bytes_written == prev.compaction_bytes_written;
            quiet = same && st.memtables <= 1 ? quiet + SETTLE_POLL_MS : 0;
            prev = st;
            sleep_ms(SETTLE_POLL_MS);
            waited += SETTLE_POLL_MS;
        }
        return;
    }
#ifdef HAVE_ROCKSDB
    while (waited < SETTLE_MAX_MS && rdb_busy(e)) {
        sleep_ms(SETTLE_POLL_MS);
        waited += SETTLE_POLL_MS;
    }
#endif
}

/* Write amplification, and in *written the SSTable bytes written so far (flushes and
 * compactions). */
static double engine_write_amplification(struct engine *e, uint64_t *written)
{
    *written = 0;
    if (e->kind == E_TALLY) {
        struct tl_stats st;
        int rc = tl_db_stats(e->tdb, &st);
        if (rc < 0)
            die("tl_db_stats: %s: %s", tl_strerror(rc), tl_last_error());
        *written = st.flush_bytes + st.compaction_bytes_written;
        return st.write_amplification;
    }
#ifdef HAVE_ROCKSDB
    return rdb_write_amplification(e, written);
#else
    return 0;
#endif
}

static void engine_full_compaction(struct engine *e)
{
    if (e->kind == E_TALLY) {
        int rc = tl_db_flush(e->tdb);
        if (rc < 0)
            die("tl_db_flush: %s: %s", tl_strerror(rc), tl_last_error());
        rc = tl_db_compact_range(e->tdb, NULL, 0, NULL, 0);
        if (rc < 0)
            die("tl_db_compact_range: %s: %s", tl_strerror(rc), tl_last_error());
        return;
    }
#ifdef HAVE_ROCKSDB
    char *err = NULL;
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(fo, 1);
    rocksdb_flush(e->rdb, fo, &err);
    rocksdb_flushoptions_destroy(fo);
    if (err)
        die("rocksdb_flush: %s", err);
    /* The default (kIfHaveCompactionFilter) may leave files in place by a trivial move, still
     * LZ4-compressed; Tally's full compaction rewrites everything into the bottom level. Force
     * the bottommost level to be rewritten too, once (kForceOptimized). */
    rocksdb_compactoptions_t *co = rocksdb_compactoptions_create();
    rocksdb_compactoptions_set_bottommost_level_compaction(co, RDB_BOTTOMMOST_FORCE_OPTIMIZED);
    rocksdb_compact_range_opt(e->rdb, co, NULL, 0, NULL, 0);
    rocksdb_compactoptions_destroy(co);
#endif
}

/* Bytes on disk: every regular file under the engine's directory except the write-ahead log
 * (Tally's NNNNNN.wal, RocksDB's NNNNNN.log) and RocksDB's text info log (LOG, LOG.old.*).
 * So: SSTables, manifests, CURRENT, RocksDB's OPTIONS files. */
static uint64_t disk_total;

static int disk_visit(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)ftw;
    if (type != FTW_F)
        return 0;
    const char *name = strrchr(path, '/');
    name = name ? name + 1 : path;
    size_t len = strlen(name);
    bool wal = (len > 4 && strcmp(name + len - 4, ".wal") == 0) ||
               (len > 4 && strcmp(name + len - 4, ".log") == 0);
    bool info_log = strncmp(name, "LOG", 3) == 0;
    if (!wal && !info_log)
        disk_total += (uint64_t)st->st_size;
    return 0;
}

static uint64_t disk_bytes(const char *dir)
{
    disk_total = 0;
    if (nftw(dir, disk_visit, 16, FTW_PHYS) != 0)
        die("cannot walk %s: %s", dir, strerror(errno));
    return disk_total;
}

/* ------------------------------------------------------------------------------------------ */
/* Running a workload */

struct worker {
    pthread_t thread;
    struct engine *engine;
    const struct plan *plan;
    size_t begin, end;
    pthread_barrier_t *start;
    struct hist hist;
    uint64_t wrong;
    uint64_t missing; /* present keys not found, absent keys found */
    int rc;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    const struct plan *p = w->plan;
    char key[KEY_BYTES_MAX];
    pthread_barrier_wait(w->start);
    uint64_t t0 = now_ns();
    for (size_t i = w->begin; i < w->end; i++) {
        uint32_t id = p->ids[i];
        size_t klen = format_key(key, id, p->absent);
        if (p->write) {
            w->rc = engine_incr(w->engine, key, klen);
        } else {
            int64_t v = 0;
            int found = engine_get(w->engine, key, klen, &v);
            if (found < 0)
                w->rc = found;
            else if (found != !p->absent)
                w->missing++;
            else if (found && v != (int64_t)expected[id])
                w->wrong++;
        }
        if (w->rc < 0)
            break;
        uint64_t t1 = now_ns();
        hist_add(&w->hist, t1 - t0);
        t0 = t1;
    }
    return NULL;
}

static void run(struct engine *e, const struct plan *p, const struct config *cfg, bool report)
{
    struct worker *w = calloc((size_t)cfg->threads, sizeof *w);
    struct hist *total = calloc(1, sizeof *total);
    pthread_barrier_t start;
    if (!w || !total)
        die("out of memory");
    pthread_barrier_init(&start, NULL, (unsigned)cfg->threads + 1);
    for (int i = 0; i < cfg->threads; i++) {
        w[i].engine = e;
        w[i].plan = p;
        w[i].begin = p->n * (size_t)i / (size_t)cfg->threads;
        w[i].end = p->n * (size_t)(i + 1) / (size_t)cfg->threads;
        w[i].start = &start;
        if (pthread_create(&w[i].thread, NULL, worker_main, &w[i]) != 0)
            die("cannot start worker thread %d", i);
    }
    pthread_barrier_wait(&start);
    uint64_t t0 = now_ns();
    uint64_t wrong = 0, missing = 0;
    for (int i = 0; i < cfg->threads; i++) {
        pthread_join(w[i].thread, NULL);
        if (w[i].rc < 0)
            die("%s on %s failed (see above)", workload_names[p->w], engine_names[e->kind]);
        hist_merge(total, &w[i].hist);
        wrong += w[i].wrong;
        missing += w[i].missing;
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    pthread_barrier_destroy(&start);

    if (report) {
        if (nrows == MAX_ROWS)
            die("too many result rows");
        rows[nrows++] = (struct row){
            .workload = workload_names[p->w],
            .engine = engine_names[e->kind],
            .ops_per_s = secs > 0 ? (double)p->n / secs : 0,
            .p50_us = hist_percentile_us(total, 0.50),
            .p99_us = hist_percentile_us(total, 0.99),
            .p999_us = hist_percentile_us(total, 0.999),
            .wrong = wrong + missing,
        };
        fprintf(stderr, "  %-12s %-12s %10.0f ops/s  (%.2f s)\n", workload_names[p->w],
                engine_names[e->kind], rows[nrows - 1].ops_per_s, secs);
        if (wrong || missing)
            fprintf(stderr,
                    "tally-bench: %s on %s: %" PRIu64 " reads had a wrong value, %" PRIu64
                    " the wrong presence\n",
                    workload_names[p->w], engine_names[e->kind], wrong, missing);
    }
    free(total);
    free(w);
}

/* ------------------------------------------------------------------------------------------ */
/* Options and output */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tally-bench [options]\n"
            "  --keys N        distinct keys (default %d)\n"
            "  --ops N         operations per workload (default %d)\n"
            "  --threads N     client threads (default 1, at most %d)\n"
            "  --dir PATH      where the databases go (default a fresh directory under /tmp,\n"
            "                  removed at the end; PATH is kept)\n"
            "  --workloads L   comma-separated: incr-random,incr-zipf,read-present,read-absent\n"
            "  --engines L     comma-separated: tally,rocksdb,rocksdb-rmw (default all built)\n"
            "  --seed N        seed of the key sequences (default %d)\n"
            "  --zipf S        Zipf exponent of incr-zipf (default %.2f)\n"
            "  --small         a quick run: %d keys, %d operations per workload\n"
            "  --tally-wait-written\n"
            "                  after each Tally increment, wait until its WAL record is in the\n"
            "                  kernel (what a RocksDB write with sync = 0 guarantees on return)\n",
            DEFAULT_KEYS, DEFAULT_OPS, MAX_THREADS, DEFAULT_SEED, DEFAULT_ZIPF, SMALL_KEYS,
            SMALL_OPS);
}

static uint64_t parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max || s[0] == '-')
        die("%s: expected an integer in [%" PRIu64 ", %" PRIu64 "], got \"%s\"", opt, min, max, s);
    return v;
}

static void parse_list(const char *opt, const char *s, const char *const *names, int n,
                       bool *chosen)
{
    char *copy = strdup(s);
    if (!copy)
        die("out of memory");
    memset(chosen, 0, (size_t)n * sizeof *chosen);
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int i = 0;
        while (i < n && strcmp(tok, names[i]) != 0)
            i++;
        if (i == n)
            die("%s: unknown name \"%s\"", opt, tok);
        chosen[i] = true;
    }
    free(copy);
}

static void parse_args(int argc, char **argv, struct config *cfg)
{
    enum {
        O_KEYS = 1,
        O_OPS,
        O_THREADS,
        O_DIR,
        O_WORKLOADS,
        O_ENGINES,
        O_SEED,
        O_ZIPF,
        O_SMALL,
        O_WAIT_WRITTEN
    };
    static const struct option longopts[] = {
        {"keys", required_argument, NULL, O_KEYS},
        {"ops", required_argument, NULL, O_OPS},
        {"threads", required_argument, NULL, O_THREADS},
        {"dir", required_argument, NULL, O_DIR},
        {"workloads", required_argument, NULL, O_WORKLOADS},
        {"engines", required_argument, NULL, O_ENGINES},
        {"seed", required_argument, NULL, O_SEED},
        {"zipf", required_argument, NULL, O_ZIPF},
        {"small", no_argument, NULL, O_SMALL},
        {"tally-wait-written", no_argument, NULL, O_WAIT_WRITTEN},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool keys_set = false, ops_set = false, small = false;
    *cfg = (struct config){.keys = DEFAULT_KEYS,
                           .ops = DEFAULT_OPS,
                           .threads = 1,
                           .seed = DEFAULT_SEED,
                           .zipf = DEFAULT_ZIPF};
    for (int w = 0; w < W_COUNT; w++)
        cfg->workloads[w] = true;
    cfg->engines[E_TALLY] = true;
#ifdef HAVE_ROCKSDB
    cfg->engines[E_ROCKSDB] = cfg->engines[E_ROCKSDB_RMW] = true;
#endif
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case O_KEYS:
            cfg->keys = parse_u64("--keys", optarg, 1, MAX_KEYS);
            keys_set = true;
            break;
        case O_OPS:
            cfg->ops = parse_u64("--ops", optarg, 1, MAX_OPS);
            ops_set = true;
            break;
        case O_THREADS:
            cfg->threads = (int)parse_u64("--threads", optarg, 1, MAX_THREADS);
            break;
        case O_DIR:
            cfg->dir = optarg;
            break;
        case O_WORKLOADS:
            parse_list("--workloads", optarg, workload_names, W_COUNT, cfg->workloads);
            break;
        case O_ENGINES:
            parse_list("--engines", optarg, engine_names, E_COUNT, cfg->engines);
            break;
        case O_SEED:
            cfg->seed = parse_u64("--seed", optarg, 0, UINT64_MAX);
            break;
        case O_ZIPF: {
            char *end;
            cfg->zipf = strtod(optarg, &end);
            if (end == optarg || *end || !(cfg->zipf > 0 && cfg->zipf <= 10))
                die("--zipf: expected a number in (0, 10], got \"%s\"", optarg);
            break;
        }
        case O_SMALL:
            small = true;
            break;
        case O_WAIT_WRITTEN:
            cfg->tally_wait_written = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            exit(2);
        }
    }
    if (optind < argc)
        die("unexpected argument \"%s\" (see --help)", argv[optind]);
    /* --small sets what was not given explicitly, whatever the order of the options. */
    if (small && !keys_set)
        cfg->keys = SMALL_KEYS;
    if (small && !ops_set)
        cfg->ops = SMALL_OPS;
#ifndef HAVE_ROCKSDB
    if (cfg->engines[E_ROCKSDB] || cfg->engines[E_ROCKSDB_RMW])
        die("this tally-bench was built without RocksDB (install librocksdb-dev, rerun "
            "./configure)");
#endif
}

static void print_results(const struct config *cfg, struct engine *engines)
{
    printf("\n%" PRIu64 " keys, %" PRIu64 " ops per workload, %d thread(s), seed %" PRIu64
           ", zipf %.2f\n",
           cfg->keys, cfg->ops, cfg->threads, cfg->seed, cfg->zipf);
    printf("WAL: tally fsync everysec%s; rocksdb sync=0, WAL synced every %d ms\n",
           cfg->tally_wait_written ? ", each increment waits until its record is written" : "",
           WAL_SYNC_EVERY_MS);
    printf("\n%-13s %-12s %12s %9s %9s %9s\n", "workload", "engine", "ops/s", "p50 us", "p99 us",
           "p999 us");
    for (int i = 0; i < nrows; i++) {
        printf("%-13s %-12s %12.0f %9.2f %9.2f %9.2f%s\n", rows[i].workload, rows[i].engine,
               rows[i].ops_per_s, rows[i].p50_us, rows[i].p99_us, rows[i].p999_us,
               rows[i].wrong ? "  (WRONG RESULTS)" : "");
    }

    uint64_t counters = distinct_counters(cfg);
    bool any = false;
    for (int k = 0; k < E_COUNT; k++)
        any |= engines[k].compacted;
    if (any) {
        printf("\nafter a flush and a full compaction (%" PRIu64 " distinct counters):\n",
               counters);
        printf("%-12s %12s %14s %12s %12s %12s %12s %10s\n", "engine", "disk bytes",
               "bytes/counter", "wamp (incr)", "wamp (+full)", "MB (incr)", "MB (+full)",
               "compact s");
        for (int k = 0; k < E_COUNT; k++) {
            struct engine *e = &engines[k];
            if (!e->compacted)
                continue;
            char before[32] = "-", after[32] = "-"; /* "-": nothing flushed yet */
            if (e->wamp_before > 0)
                snprintf(before, sizeof before, "%.2f", e->wamp_before);
            if (e->wamp_after > 0)
                snprintf(after, sizeof after, "%.2f", e->wamp_after);
            printf("%-12s %12" PRIu64 " %14.2f %12s %12s %12.1f %12.1f %10.2f\n", engine_names[k],
                   e->disk_bytes, counters ? (double)e->disk_bytes / (double)counters : 0, before,
                   after, (double)e->written_before / 1e6, (double)e->written_after / 1e6,
                   e->compact_s);
        }
        printf("disk bytes: SSTables, manifests, CURRENT and OPTIONS files; not the WAL (.wal, "
               ".log) nor RocksDB's info LOG\n");
        printf("wamp: (flush + compaction bytes written) / flush bytes written; Tally: "
               "tl_stats.write_amplification, RocksDB: rocksdb.flush.write.bytes and "
               "rocksdb.compact.write.bytes; (incr) before the full compaction, (+full) after\n");
        printf("MB: SSTable bytes written by flushes and compactions (10^6 bytes), the "
               "same two counters; the WAL is not counted\n");
    }

    bool header = false;
    for (int i = 0; i < nrows; i++) {
        if (strcmp(rows[i].engine, "tally") != 0)
            continue;
        for (int j = 0; j < nrows; j++) {
            if (j == i || strcmp(rows[j].workload, rows[i].workload) != 0 || rows[j].ops_per_s <= 0)
                continue;
            if (!header) {
                printf("\nops/s ratios (above 1: Tally is faster):\n");
                header = true;
            }
            printf("tally/%s %s: %.2fx\n", rows[j].engine, rows[i].workload,
                   rows[i].ops_per_s / rows[j].ops_per_s);
        }
    }
    if (engines[E_TALLY].compacted && engines[E_ROCKSDB].compacted &&
        engines[E_ROCKSDB].disk_bytes) {
        printf("tally/rocksdb bytes per counter: %.2fx\n",
               (double)engines[E_TALLY].disk_bytes / (double)engines[E_ROCKSDB].disk_bytes);
    }
}

static int remove_visit(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st, (void)type, (void)ftw;
    if (remove(path) != 0)
        fprintf(stderr, "tally-bench: cannot remove %s: %s\n", path, strerror(errno));
    return 0;
}

/* ------------------------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    struct config cfg;
    parse_args(argc, argv, &cfg);

    char base[PATH_MAX];
    bool remove_base = false;
    if (cfg.dir) {
        if (mkdir(cfg.dir, 0755) != 0 && errno != EEXIST)
            die("cannot create %s: %s", cfg.dir, strerror(errno));
        snprintf(base, sizeof base, "%s", cfg.dir);
    } else {
        snprintf(base, sizeof base, "/tmp/tally-bench-XXXXXX");
        if (!mkdtemp(base))
            die("cannot create a directory under /tmp: %s", strerror(errno));
        remove_base = true;
    }

    expected = calloc(cfg.keys, sizeof *expected);
    if (!expected)
        die("out of memory for %" PRIu64 " keys", cfg.keys);

    fprintf(stderr,
            "tally-bench: %" PRIu64 " keys, %" PRIu64
            " ops per workload, %d thread(s), seed %" PRIu64 ", zipf %.2f, in %s\n",
            cfg.keys, cfg.ops, cfg.threads, cfg.seed, cfg.zipf, base);

    struct engine engines[E_COUNT];
    memset(engines, 0, sizeof engines);
    enum engine_kind order[E_COUNT];
    int nengines = 0;
    for (int k = 0; k < E_COUNT; k++) {
        if (!cfg.engines[k])
            continue;
        engine_open(&engines[k], (enum engine_kind)k, base, &cfg);
        order[nengines++] = (enum engine_kind)k;
    }
    if (nengines == 0)
        die("no engine chosen");

    /* Increments, then the full compaction, then reads: reads see the compacted files. */
    int turn = 0;
    bool wrote = false;
    for (int w = W_INCR_RANDOM; w <= W_INCR_ZIPF; w++) {
        if (!cfg.workloads[w])
            continue;
        struct plan p;
        plan_make(&p, (enum workload)w, &cfg);
        for (int i = 0; i < nengines; i++) {
            /* Every other workload runs the engines in reverse order, so that neither always
             * goes first. */
            struct engine *e = &engines[order[turn % 2 ? nengines - 1 - i : i]];
            run(e, &p, &cfg, true);
            engine_settle(e);
        }
        plan_account(&p);
        free(p.ids);
        turn++;
        wrote = true;
    }

    bool reads = cfg.workloads[W_READ_PRESENT] || cfg.workloads[W_READ_ABSENT];
    if (!wrote && reads) {
        /* Nothing to read yet: one increment of every key, not reported. */
        struct plan load = {.w = W_INCR_RANDOM, .n = cfg.keys, .write = true};
        load.ids = malloc(load.n * sizeof *load.ids);
        if (!load.ids)
            die("out of memory");
        for (size_t i = 0; i < load.n; i++)
            load.ids[i] = (uint32_t)i;
        fprintf(stderr, "  loading %" PRIu64 " keys\n", cfg.keys);
        for (int i = 0; i < nengines; i++)
            if (order[i] != E_ROCKSDB_RMW)
                run(&engines[order[i]], &load, &cfg, false);
        plan_account(&load);
        free(load.ids);
        wrote = true;
    }

    if (wrote) {
        for (int i = 0; i < nengines; i++) {
            struct engine *e = &engines[order[i]];
            if (e->kind == E_ROCKSDB_RMW)
                continue; /* a reference for write cost only */
            engine_settle(e);
            e->wamp_before = engine_write_amplification(e, &e->written_before);
            uint64_t t0 = now_ns();
            engine_full_compaction(e);
            e->compact_s = (double)(now_ns() - t0) / 1e9;
            engine_settle(e);
            e->wamp_after = engine_write_amplification(e, &e->written_after);
            e->disk_bytes = disk_bytes(e->dir);
            e->compacted = true;
            fprintf(stderr, "  compacted %-12s in %.2f s\n", engine_names[e->kind], e->compact_s);
        }
    }

    for (int w = W_READ_PRESENT; w <= W_READ_ABSENT; w++) {
        if (!cfg.workloads[w])
            continue;
        struct plan p;
        plan_make(&p, (enum workload)w, &cfg);
        for (int i = 0; i < nengines; i++) {
            struct engine *e = &engines[order[turn % 2 ? nengines - 1 - i : i]];
            if (e->kind != E_ROCKSDB_RMW)
                run(e, &p, &cfg, true);
        }
        free(p.ids);
        turn++;
    }

    print_results(&cfg, engines);

    for (int i = 0; i < nengines; i++)
        engine_close(&engines[order[i]]);
    free(expected);
    if (remove_base)
        nftw(base, remove_visit, 16, FTW_DEPTH | FTW_PHYS);

    int wrong = 0;
    for (int i = 0; i < nrows; i++)
        wrong |= rows[i].wrong != 0;
    return wrong ? 1 : 0;
}
