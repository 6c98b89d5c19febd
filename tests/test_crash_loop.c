/*
 * test_crash_loop.c - tallyd killed with SIGKILL again and again under pipelined load, with
 * `fsync always`: after each restart every acknowledged write is there, and nothing counted twice.
 *
 * One cycle: start tallyd on the same data directory (--fsync always, a 1 MiB memtable so that
 * flushes and level-0 compactions happen every few hundred milliseconds), check what the
 * previous cycle left, then put it under load from NTHREADS connections (libtally, BATCH
 * commands pipelined at a time) and SIGKILL it at a moment chosen in one of three ways: after
 * a random delay, while a frozen memtable waits for or is in its flush (INFO storage shows
 * memtables >= 2), or while level 0 holds enough tables for a compaction to be due or running.
 *
 * Each connection logs every command before it sends it, and marks it acknowledged with the
 * value its reply returned. Its commands, in a random mix:
 * - INCRBY on keys of its own, and WINCRBY (AT a fixed time, so one bucket per resolution) on a
 *   windowed key of its own. A key's deltas grow strictly over the whole run (16 i + 1..16 for
 *   its i-th increment), and the reply must be exactly the previous value plus the deltas so
 *   far. After the restart the value must be the previous value plus the first m deltas of
 *   this cycle, for some m between the acknowledged ones and all those sent: acknowledged
 *   increments are all there, and an increment counted twice (from this cycle or any earlier
 *   one) lands strictly between two such sums, since every older delta is smaller than the
 *   next one sent. The window's 1m, 1h and 1d buckets are each checked so, and must agree: a
 *   WINCRBY is one record (its series' head), so none in flight may be found in some only.
 * - INCR on keys shared by all connections: the replies of one life are distinct, and after
 *   the restart previous + acknowledged <= value <= previous + sent, and value >= every reply.
 * - SET of 1000-byte values (which fill the memtable) into slots of its own: each slot holds
 *   exactly the value of its last acknowledged SET or of a later one in flight.
 * A failure prints the seed, the cycle, the key and the numbers, and keeps the directory.
 *
 * Usage: test_crash_loop [kills] (default 10, or $TALLY_CRASH_KILLS); the seed is $TALLY_SEED
 * or the time. tests/crash-loop.sh runs the long version. The last line is the summary.
 * Every WINCRBY is AT the minute the run started, so a run must end within the default
 * policy's finest retention (3 h, roughly 10,000 kills) for that bucket to keep being written.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server_harness.h"
#include "tally.h"
#include "testutil.h"

#define DEFAULT_KILLS       10
#define MAX_KILLS           100000
#define NTHREADS            4
#define OWNED_KEYS          8
#define SHARED_KEYS         4
#define FILL_SLOTS          1024
#define FILL_BYTES          1000
#define BATCH               32
#define KEY_CAP             48
#define CMD_TIMEOUT_MS      20000
#define MIN_ACKED_BEFORE    200   /* acknowledged commands before the kill timer starts */
#define PROGRESS_WAIT_MS    10000 /* ... which must come within this */
#define KILL_RANDOM_MAX_MS  400
#define KILL_EVENT_MAX_MS   3000 /* the longest wait for a flush or a compaction */
#define L0_COMPACTION_FILES 4    /* the engine's l0_compaction_trigger default */
#define INFO_POLL_US        2000
#define ALARM_BASE_S        120
#define ALARM_PER_KILL_S    10
#define N_RES               3

static const char *const res_names[N_RES] = {"1m", "1h", "1d"};

enum op_kind { OP_INCRBY, OP_INCR, OP_WINCRBY, OP_SET, N_KINDS };
static const char *const kind_names[N_KINDS] = {"INCRBY", "INCR", "WINCRBY", "SET"};

/* One command sent (or about to be) in this cycle. */
struct op {
    uint8_t kind;
    bool acked;
    uint16_t key;  /* owned key, shared key or fill slot */
    int64_t arg;   /* the delta, or the fill number */
    int64_t reply; /* INCR: the value its reply returned */
};

/* A connection's keys: what the previous check found, and this cycle's log. */
struct conn_model {
    int index;
    int64_t owned_base[OWNED_KEYS]; /* value found by the last check */
    int64_t owned_next[OWNED_KEYS]; /* increments sent on the key over the run */
    int64_t win_base[N_RES]; /* per resolution: a WINCRBY in flight may be torn (see below) */
    int64_t win_next;
    int64_t fill_found[FILL_SLOTS]; /* fill number the slot held at the last check; -1: none */
    int64_t fill_next;
    struct op *ops;
    size_t n_ops, cap_ops;
    uint64_t rng;
    int port;
    long bad;                   /* replies that were wrong during the load */
    char why[512];              /* the first of them */
    atomic_long *acked_counter; /* shared: acknowledged commands in this life */
};

static uint64_t seed;
static int64_t window_at_ms;             /* the AT of every WINCRBY */
static int64_t shared_base[SHARED_KEYS]; /* value found by the last check */
static struct conn_model models[NTHREADS];
static long long totals_acked[N_KINDS], total_inflight, total_inflight_applied;
static long kills_random, kills_flush, kills_compaction;
static long long lives_flushes, lives_compactions;
/* WINCRBYs in flight at a kill found in some resolutions' buckets and not in others: a
 * failure, since a WINCRBY is one record (its series' head). */
static long long torn_wincrby;

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void __attribute__((noreturn, format(printf, 3, 4)))
fail(int cycle, const char *dir, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "FAIL seed=%" PRIu64 " cycle=%d: ", seed, cycle);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nthe server's directory and logs are kept in %s\n", dir);
    printf("crash loop: FAILED in cycle %d (seed %" PRIu64 ")\n", cycle, seed);
    exit(1);
}

static void owned_key(char *buf, int t, int k)
{
    snprintf(buf, KEY_CAP, "cl:own:%d:%d", t, k);
}
static void window_key(char *buf, int t)
{
    snprintf(buf, KEY_CAP, "cl:win:%d", t);
}
static void shared_key(char *buf, int k)
{
    snprintf(buf, KEY_CAP, "cl:shared:%d", k);
}
static void fill_key(char *buf, int t, int slot)
{
    snprintf(buf, KEY_CAP, "cl:fill:%d:%d", t, slot);
}
/* The value of fill number n of connection t: its numbers, then padding. */
static void fill_value(char *buf, int t, int64_t n)
{
    int len = snprintf(buf, FILL_BYTES + 1, "fill:%d:%" PRId64 ":", t, n);
    memset(buf + len, 'a' + (int)(n % 26), FILL_BYTES - (size_t)len);
}

/* The i-th delta of a key: strictly increasing in i (see the top of the file). */
static int64_t delta_of(int64_t i, uint64_t *rng)
{
    return 16 * i + 1 + (int64_t)(test_rand(rng) % 16);
}

static tally_ctx *connect_to(int port)
{
    struct tally_options o = {.host = "127.0.0.1",
                              .port = port,
                              .connect_timeout_ms = 5000,
                              .command_timeout_ms = CMD_TIMEOUT_MS};
    tally_ctx *ctx = tally_connect_with(&o);
    if (ctx && tally_errcode(ctx) != 0) {
        tally_free(ctx);
        return NULL;
    }
    return ctx;
}

/* ---- the load: one thread per connection ---------------------------------------------------- */

static struct op *log_op(struct conn_model *m)
{
    if (m->n_ops == m->cap_ops) {
        m->cap_ops = m->cap_ops ? 2 * m->cap_ops : 4096;
        m->ops = realloc(m->ops, m->cap_ops * sizeof *m->ops);
        if (!m->ops)
            exit(1);
    }
    struct op *o = &m->ops[m->n_ops++];
    memset(o, 0, sizeof *o);
    return o;
}

static void load_bad(struct conn_model *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void load_bad(struct conn_model *m, const char *fmt, ...)
{
    if (m->bad++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(m->why, sizeof m->why, fmt, ap);
        va_end(ap);
    }
}

/* Appends one random command to the pipeline and logs it. */
static int append_random(tally_ctx *ctx, struct conn_model *m, char *fill)
{
    char key[KEY_CAP];
    struct op *o = log_op(m);
    uint64_t r = test_rand(&m->rng) % 100;
    if (r < 55) {
        o->kind = OP_INCRBY;
        o->key = (uint16_t)(test_rand(&m->rng) % OWNED_KEYS);
        o->arg = delta_of(m->owned_next[o->key]++, &m->rng);
        owned_key(key, m->index, o->key);
        return tally_append_command(ctx, "INCRBY %s %lld", key, (long long)o->arg);
    }
    if (r < 70) {
        o->kind = OP_INCR;
        o->key = (uint16_t)(test_rand(&m->rng) % SHARED_KEYS);
        shared_key(key, o->key);
        return tally_append_command(ctx, "INCR %s", key);
    }
    if (r < 80) {
        o->kind = OP_WINCRBY;
        o->arg = delta_of(m->win_next++, &m->rng);
        window_key(key, m->index);
        return tally_append_command(ctx, "WINCRBY %s %lld AT %lld", key, (long long)o->arg,
                                    (long long)window_at_ms);
    }
    o->kind = OP_SET;
    o->arg = m->fill_next++;
    o->key = (uint16_t)(o->arg % FILL_SLOTS);
    fill_key(key, m->index, o->key);
    fill_value(fill, m->index, o->arg);
    return tally_append_command(ctx, "SET %s %b", key, fill, (size_t)FILL_BYTES);
}

/* Checks one reply against the model while the server runs; expected[] are the running values
 * of the connection's own keys. */
static void check_reply(struct conn_model *m, struct op *o, const tally_reply *r,
                        int64_t *own_expected, int64_t *win_expected)
{
    if (o->kind == OP_SET) {
        if (r->type != TALLY_REPLY_STATUS || strcmp(r->str, "OK") != 0)
            load_bad(m, "SET of fill %" PRId64 " answered %s %s", o->arg,
                     tally_reply_type_name(r->type), r->str ? r->str : "");
        return;
    }
    if (r->type != TALLY_REPLY_INTEGER) {
        load_bad(m, "%s answered %s %s", kind_names[o->kind], tally_reply_type_name(r->type),
                 r->str ? r->str : "");
        return;
    }
    o->reply = r->integer;
    if (o->kind == OP_INCRBY) {
        own_expected[o->key] += o->arg;
        if (r->integer != own_expected[o->key])
            load_bad(m, "INCRBY cl:own:%d:%d %" PRId64 " answered %lld, expected %" PRId64,
                     m->index, o->key, o->arg, r->integer, own_expected[o->key]);
    } else if (o->kind == OP_WINCRBY) {
        *win_expected += o->arg;
        if (r->integer != *win_expected)
            load_bad(m, "WINCRBY cl:win:%d %" PRId64 " answered %lld, expected %" PRId64, m->index,
                     o->arg, r->integer, *win_expected);
    } else if (r->integer <= shared_base[o->key]) {
        load_bad(m,
                 "INCR cl:shared:%d answered %lld, not above its value %" PRId64
                 " at the start of this life",
                 o->key, r->integer, shared_base[o->key]);
    }
}

/* Pipelines batches until the connection dies with the server. */
static void *load_main(void *arg)
{
    struct conn_model *m = arg;
    char *fill = malloc(FILL_BYTES + 1);
    int64_t own_expected[OWNED_KEYS];
    int64_t win_expected = m->win_base[0]; /* the reply is the finest bucket's value */
    memcpy(own_expected, m->owned_base, sizeof own_expected);
    tally_ctx *ctx = connect_to(m->port);
    if (!fill || !ctx) /* the server may already be dead: then nothing is sent */
        goto out;
    for (;;) {
        size_t first = m->n_ops;
        for (int i = 0; i < BATCH; i++)
            if (append_random(ctx, m, fill) != 0)
                goto out;
        for (size_t i = first; i < m->n_ops; i++) {
            tally_reply *r;
            if (tally_get_reply(ctx, &r) != 0)
                goto out; /* the server died: the rest are in flight */
            m->ops[i].acked = true;
            check_reply(m, &m->ops[i], r, own_expected, &win_expected);
            tally_reply_free(r);
            atomic_fetch_add(m->acked_counter, 1);
        }
    }
out:
    tally_free(ctx);
    free(fill);
    return NULL;
}

/* ---- the checks after a restart ------------------------------------------------------------- */

/* A command's reply; exits on a failed connection. */
static tally_reply *command(tally_ctx *ctx, int cycle, const char *dir, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tally_reply *r = tally_vcommand(ctx, fmt, ap);
    va_end(ap);
    if (!r)
        fail(cycle, dir, "%s failed: %s", fmt, tally_errstr(ctx));
    return r;
}

/* An integer value read with GET: 0 when missing. */
static int64_t get_int(tally_ctx *ctx, int cycle, const char *dir, const char *key)
{
    tally_reply *r = command(ctx, cycle, dir, "GET %s", key);
    int64_t v = 0;
    if (r->type == TALLY_REPLY_STRING)
        v = strtoll(r->str, NULL, 10);
    else if (r->type != TALLY_REPLY_NIL)
        fail(cycle, dir, "GET %s answered %s %s", key, tally_reply_type_name(r->type),
             r->str ? r->str : "");
    tally_reply_free(r);
    return v;
}

/* The value of the window's bucket at window_at_ms in resolution res: 0 when there is none. */
static int64_t window_bucket(tally_ctx *ctx, int cycle, const char *dir, const char *key,
                             const char *res)
{
    tally_reply *r =
        command(ctx, cycle, dir, "WRANGE %s 0 %lld RES %s", key, (long long)window_at_ms, res);
    int64_t v = 0;
    if (r->type != TALLY_REPLY_ARRAY || (r->elements != 0 && r->elements != 2))
        fail(cycle, dir, "WRANGE %s RES %s answered %s of %zu elements, expected one bucket", key,
             res, tally_reply_type_name(r->type), r->elements);
    if (r->elements == 2) {
        const tally_reply *e = r->element[1];
        v = e->type == TALLY_REPLY_INTEGER  ? e->integer
            : e->type == TALLY_REPLY_STRING ? strtoll(e->str, NULL, 10)
                                            : -1;
    }
    tally_reply_free(r);
    return v;
}

/* The value after the restart must be base plus the first m of this cycle's deltas on the key,
 * with acked <= m <= all: returns m - acked (the increments in flight that were applied). */
static long check_prefix(int cycle, const char *dir, const char *what, int64_t base, int64_t found,
                         const struct conn_model *m, int kind, int key)
{
    int64_t sum = base;
    long n = 0, acked = 0;
    bool matched = found == base;
    long matched_at = 0;
    for (size_t i = 0; i < m->n_ops; i++) {
        const struct op *o = &m->ops[i];
        if (o->kind != kind || (kind == OP_INCRBY && o->key != key))
            continue;
        sum += o->arg;
        n++;
        acked += o->acked;
        if (sum == found && !matched) {
            matched = true;
            matched_at = n;
        }
    }
    if (!matched || matched_at < acked) {
        int64_t acked_sum = base;
        long k = 0;
        for (size_t i = 0; i < m->n_ops && k < acked; i++) {
            const struct op *o = &m->ops[i];
            if (o->kind == kind && (kind != OP_INCRBY || o->key == key)) {
                acked_sum += o->arg;
                k++;
            }
        }
        fail(cycle, dir,
             "%s = %" PRId64 " after the restart: expected the previous value %" PRId64
             " plus the first m of this cycle's %ld increments, with %ld (acknowledged, giving "
             "%" PRId64 ") <= m <= %ld (giving %" PRId64 ")%s",
             what, found, base, n, acked, acked_sum, n, sum,
             found < acked_sum ? ": acknowledged increments are missing"
             : found > sum     ? ": more than was ever sent (counted twice?)"
                               : ": no such sum (an increment counted twice or lost?)");
    }
    return matched_at - acked;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void check_shared(tally_ctx *ctx, int cycle, const char *dir)
{
    char key[KEY_CAP];
    for (int k = 0; k < SHARED_KEYS; k++) {
        shared_key(key, k);
        int64_t found = get_int(ctx, cycle, dir, key);
        long sent = 0, acked = 0;
        for (int t = 0; t < NTHREADS; t++)
            for (size_t i = 0; i < models[t].n_ops; i++)
                if (models[t].ops[i].kind == OP_INCR && models[t].ops[i].key == k) {
                    sent++;
                    acked += models[t].ops[i].acked;
                }
        int64_t *replies = malloc(((size_t)acked + 1) * sizeof *replies);
        long n = 0;
        for (int t = 0; t < NTHREADS; t++)
            for (size_t i = 0; i < models[t].n_ops; i++) {
                const struct op *o = &models[t].ops[i];
                if (o->kind == OP_INCR && o->key == k && o->acked)
                    replies[n++] = o->reply;
            }
        qsort(replies, (size_t)n, sizeof *replies, cmp_i64);
        for (long i = 1; i < n; i++)
            if (replies[i] == replies[i - 1])
                fail(cycle, dir, "two acknowledged INCR %s answered the same value %" PRId64, key,
                     replies[i]);
        if (found < shared_base[k] + acked || found > shared_base[k] + sent)
            fail(cycle, dir,
                 "%s = %" PRId64 " after the restart: expected %" PRId64 " + between %ld "
                 "(acknowledged) and %ld (sent) INCRs",
                 key, found, shared_base[k], acked, sent);
        if (n > 0 && found < replies[n - 1])
            fail(cycle, dir,
                 "%s = %" PRId64 " after the restart, but an INCR had answered %" PRId64, key,
                 found, replies[n - 1]);
        total_inflight_applied += found - shared_base[k] - acked;
        shared_base[k] = found;
        free(replies);
    }
}

/* Each slot written this cycle holds its last acknowledged value or a later one in flight. */
static void check_fills(tally_ctx *ctx, int cycle, const char *dir, struct conn_model *m)
{
    static bool touched[FILL_SLOTS];
    char key[KEY_CAP], *want = malloc(FILL_BYTES + 1);
    memset(touched, 0, sizeof touched);
    for (size_t i = 0; i < m->n_ops; i++)
        if (m->ops[i].kind == OP_SET)
            touched[m->ops[i].key] = true;
    for (int slot = 0; slot < FILL_SLOTS; slot++) {
        if (!touched[slot])
            continue;
        int64_t last_acked = m->fill_found[slot];
        for (size_t i = 0; i < m->n_ops; i++)
            if (m->ops[i].kind == OP_SET && m->ops[i].key == slot && m->ops[i].acked)
                last_acked = m->ops[i].arg;
        fill_key(key, m->index, slot);
        tally_reply *r = command(ctx, cycle, dir, "GET %s", key);
        int64_t got = -1;
        if (r->type == TALLY_REPLY_STRING && sscanf(r->str, "fill:%*d:%" SCNd64 ":", &got) == 1) {
            fill_value(want, m->index, got);
            if (r->len != FILL_BYTES || memcmp(r->str, want, FILL_BYTES) != 0)
                fail(cycle, dir, "%s holds %zu bytes that are not fill %" PRId64 "'s", key, r->len,
                     got);
        } else if (r->type != TALLY_REPLY_NIL) {
            fail(cycle, dir, "GET %s answered %s", key, tally_reply_type_name(r->type));
        }
        tally_reply_free(r);
        bool allowed = got == last_acked;
        for (size_t i = 0; i < m->n_ops && !allowed; i++) {
            const struct op *o = &m->ops[i];
            allowed = o->kind == OP_SET && o->key == slot && !o->acked && o->arg == got &&
                      got > last_acked;
        }
        if (!allowed)
            fail(cycle, dir,
                 "%s holds fill %" PRId64 " (-1: none) after the restart; the last acknowledged "
                 "SET wrote fill %" PRId64,
                 key, got, last_acked);
        if (got != last_acked)
            total_inflight_applied++;
        m->fill_found[slot] = got;
    }
    free(want);
}

/* Checks what the previous cycle left, then resets the logs for the next one. */
static void check_cycle(int port, int cycle, const char *dir)
{
    tally_ctx *ctx = connect_to(port);
    if (!ctx)
        fail(cycle, dir, "cannot connect to the restarted server on port %d", port);
    char key[KEY_CAP];
    for (int t = 0; t < NTHREADS; t++) {
        struct conn_model *m = &models[t];
        if (m->bad)
            fail(cycle, dir, "connection %d had %ld wrong replies under load; the first: %s", t,
                 m->bad, m->why);
        for (size_t i = 0; i < m->n_ops; i++) {
            if (m->ops[i].acked)
                totals_acked[m->ops[i].kind]++;
            else
                total_inflight++;
        }
        for (int k = 0; k < OWNED_KEYS; k++) {
            owned_key(key, t, k);
            int64_t found = get_int(ctx, cycle, dir, key);
            total_inflight_applied +=
                check_prefix(cycle, dir, key, m->owned_base[k], found, m, OP_INCRBY, k);
            m->owned_base[k] = found;
        }
        /* Each resolution's bucket on its own: every acknowledged WINCRBY, none twice. */
        window_key(key, t);
        long finest_applied = 0;
        for (int i = 0; i < N_RES; i++) {
            char what[KEY_CAP + 16];
            snprintf(what, sizeof what, "%s (%s bucket)", key, res_names[i]);
            int64_t w = window_bucket(ctx, cycle, dir, key, res_names[i]);
            long applied = check_prefix(cycle, dir, what, m->win_base[i], w, m, OP_WINCRBY, 0);
            if (i == 0)
                finest_applied = applied;
            else
                torn_wincrby += labs(applied - finest_applied);
            m->win_base[i] = w;
        }
        total_inflight_applied += finest_applied;
        check_fills(ctx, cycle, dir, m);
    }
    check_shared(ctx, cycle, dir);
    tally_free(ctx);
    for (int t = 0; t < NTHREADS; t++) {
        models[t].n_ops = 0;
        models[t].bad = 0;
    }
}

/* ---- killing ------------------------------------------------------------------------------- */

/* A number from INFO storage's text, or -1. */
static long long info_field(const char *info, const char *field)
{
    const char *p = strstr(info, field);
    return p ? atoll(p + strlen(field)) : -1;
}

enum kill_moment { KILL_RANDOM, KILL_AT_FLUSH, KILL_AT_COMPACTION, N_MOMENTS };
static const char *const moment_names[N_MOMENTS] = {"after a random delay", "during a flush",
                                                    "with a compaction due or running"};

/* Waits for the moment chosen and returns which one came (a flush or compaction that does not
 * come within KILL_EVENT_MAX_MS falls back to random). Records the life's flushes and
 * compactions as INFO last showed them. */
static enum kill_moment wait_for_moment(tally_ctx *ctx, enum kill_moment want, long delay_ms,
                                        int cycle, const char *dir)
{
    long long start = mono_ms(), flushes = 0, compactions = 0;
    enum kill_moment got = KILL_RANDOM;
    for (;;) {
        tally_reply *r = tally_command(ctx, "INFO storage");
        if (!r || r->type != TALLY_REPLY_STRING)
            fail(cycle, dir, "INFO storage failed under load: %s",
                 r ? tally_reply_type_name(r->type) : tally_errstr(ctx));
        long long memtables = info_field(r->str, "memtables:");
        long long l0 = info_field(r->str, "level0:files=");
        flushes = info_field(r->str, "flushes:");
        compactions = info_field(r->str, "compactions:");
        tally_reply_free(r);
        long long waited = mono_ms() - start;
        if (want == KILL_AT_FLUSH && memtables >= 2) {
            got = KILL_AT_FLUSH;
            break;
        }
        if (want == KILL_AT_COMPACTION && l0 >= L0_COMPACTION_FILES) {
            got = KILL_AT_COMPACTION;
            break;
        }
        if (want == KILL_RANDOM ? waited >= delay_ms : waited >= KILL_EVENT_MAX_MS)
            break;
        usleep(INFO_POLL_US);
    }
    lives_flushes += flushes;
    lives_compactions += compactions;
    return got;
}

int main(int argc, char **argv)
{
    long kills = DEFAULT_KILLS;
    const char *e = getenv("TALLY_CRASH_KILLS");
    if (argc > 1)
        kills = strtol(argv[1], NULL, 10);
    else if (e && *e)
        kills = strtol(e, NULL, 10);
    if (kills < 1 || kills > MAX_KILLS) {
        fprintf(stderr, "usage: test_crash_loop [kills: 1..%d]\n", MAX_KILLS);
        return 2;
    }
    const char *s_env = getenv("TALLY_SEED");
    seed = s_env && *s_env ? strtoull(s_env, NULL, 10) : (uint64_t)time(NULL);
    uint64_t rng = seed;
    test_require_uring();
    srv_setup((unsigned)(ALARM_BASE_S + ALARM_PER_KILL_S * kills));
    printf("crash loop: %ld kills, seed %" PRIu64 " (TALLY_SEED to replay)\n", kills, seed);
    fflush(stdout);

    /* Every WINCRBY lands in one bucket of each resolution: the middle of the current minute. */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    window_at_ms = ((int64_t)now.tv_sec / 60) * 60000 + 30000;

    char *tmp = test_tmpdir("crash-loop");
    struct test_server s;
    srv_init(&s, tmp, "data");
    srv_add_opt(&s, "fsync", "always");
    srv_add_opt(&s, "memtable-bytes", "1mb");
    srv_add_opt(&s, "max-value-bytes", "64kb");
    srv_add_opt(&s, "io-threads", "2");

    atomic_long acked_in_life;
    for (int t = 0; t < NTHREADS; t++) {
        models[t].index = t;
        models[t].acked_counter = &acked_in_life;
        for (int i = 0; i < FILL_SLOTS; i++)
            models[t].fill_found[i] = -1;
    }
    long long started = mono_ms(), restart_ms_sum = 0, restart_ms_max = 0;
    for (int cycle = 0; cycle <= kills; cycle++) {
        long long t_start = mono_ms();
        srv_start(&s); /* after a kill: recovery, then the first PING answered */
        long long restart_ms = mono_ms() - t_start;
        if (cycle > 0) {
            restart_ms_sum += restart_ms;
            restart_ms_max = restart_ms > restart_ms_max ? restart_ms : restart_ms_max;
        }
        if (cycle > 0)
            check_cycle(s.port, cycle, s.dir);
        if (cycle == kills)
            break;

        atomic_store(&acked_in_life, 0);
        pthread_t th[NTHREADS];
        for (int t = 0; t < NTHREADS; t++) {
            models[t].port = s.port;
            models[t].rng = test_rand(&rng);
            if (pthread_create(&th[t], NULL, load_main, &models[t]) != 0)
                fail(cycle, tmp, "pthread_create failed");
        }
        tally_ctx *mon = connect_to(s.port);
        if (!mon)
            fail(cycle, tmp, "cannot connect to the server on port %d", s.port);
        long long t0 = mono_ms();
        while (atomic_load(&acked_in_life) < MIN_ACKED_BEFORE && mono_ms() - t0 < PROGRESS_WAIT_MS)
            usleep(1000);
        if (atomic_load(&acked_in_life) < MIN_ACKED_BEFORE)
            fail(cycle, tmp, "only %ld commands acknowledged in %d ms", atomic_load(&acked_in_life),
                 PROGRESS_WAIT_MS);
        enum kill_moment want = (enum kill_moment)(test_rand(&rng) % N_MOMENTS);
        long delay_ms = (long)(test_rand(&rng) % KILL_RANDOM_MAX_MS);
        enum kill_moment got = wait_for_moment(mon, want, delay_ms, cycle, tmp);
        srv_stop_with(&s, SIGKILL);
        tally_free(mon);
        for (int t = 0; t < NTHREADS; t++)
            pthread_join(th[t], NULL);
        kills_random += got == KILL_RANDOM;
        kills_flush += got == KILL_AT_FLUSH;
        kills_compaction += got == KILL_AT_COMPACTION;
        long inflight = 0;
        for (int t = 0; t < NTHREADS; t++)
            for (size_t i = 0; i < models[t].n_ops; i++)
                inflight += !models[t].ops[i].acked;
        printf("cycle %d: killed %s after %ld acknowledged commands, %ld in flight\n", cycle + 1,
               moment_names[got], atomic_load(&acked_in_life), inflight);
        fflush(stdout);
    }
    srv_stop_with(&s, SIGTERM);

    long long acked = 0;
    for (int k = 0; k < N_KINDS; k++)
        acked += totals_acked[k];
    printf("crash loop: %ld kills (%ld %s, %ld %s, %ld %s) in %.1f s; the killed lives ran %lld "
           "flushes and %lld compactions\n",
           kills, kills_random, moment_names[KILL_RANDOM], kills_flush, moment_names[KILL_AT_FLUSH],
           kills_compaction, moment_names[KILL_AT_COMPACTION], (double)(mono_ms() - started) / 1e3,
           lives_flushes, lives_compactions);
    printf("crash loop: %lld acknowledged commands (INCRBY %lld, INCR %lld, WINCRBY %lld, SET "
           "%lld), all found after the restarts; %lld in flight at the kills, of which %lld "
           "applied, none twice\n",
           acked, totals_acked[OP_INCRBY], totals_acked[OP_INCR], totals_acked[OP_WINCRBY],
           totals_acked[OP_SET], total_inflight, total_inflight_applied);
    printf("crash loop: a restart after a kill took %.0f ms on average, at most %lld ms, until "
           "tallyd answered PING (polled every 10 ms)\n",
           (double)restart_ms_sum / (double)kills, restart_ms_max);
    printf("crash loop: %lld WINCRBYs in flight at a kill were applied to some resolutions' "
           "buckets and not others\n",
           torn_wincrby);
    if (torn_wincrby != 0) {
        fprintf(stderr, "crash loop: FAIL (seed %" PRIu64 "): a WINCRBY must be all or nothing\n",
                seed);
        return 1;
    }
    printf("crash loop: PASS (seed %" PRIu64 ")\n", seed);
    for (int t = 0; t < NTHREADS; t++)
        free(models[t].ops);
    if (getenv("TALLY_KEEP_TMP") == NULL)
        test_rmdir(tmp);
    free(tmp);
    return 0;
}
