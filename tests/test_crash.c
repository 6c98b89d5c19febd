/*
 * test_crash.c - kill -9 under load never loses an acknowledged increment.
 *
 * Each round forks a child that opens the database with fsync = TL_FSYNC_ALWAYS and
 * increments random keys from NTHREADS threads (two of them take the sequence number and wait
 * with tl_db_wait, for TL_WAIT_DURABLE and TL_WAIT_WRITTEN; a small memtable and a thread calling
 * tl_db_flush and tl_db_compact_range make flushes and compactions happen). Before each
 * tl_db_incr a thread writes an "intent" (thread, key, delta) to a pipe, and after the call
 * returned success an "ack": so the parent knows every acknowledged increment and, per thread,
 * the at most one increment in flight. The parent SIGKILLs the child 20-300 ms after it opened
 * the database (every fifth round: after the fork, so that some kills land during recovery),
 * drains the pipe, and has a fresh child reopen the database and read every key. Exactly: for
 * each key, value - (value after the previous round + acknowledged deltas) must be the sum of
 * a subset of the deltas in flight on that key, and a key with an acknowledged increment must
 * exist as an integer. The next round continues on the same directory, so recovery repeats.
 *
 * The parent process never calls the engine (an io_uring and threads must not cross a fork):
 * the io_uring probe, the load and the verification each run in a child.
 *
 * Usage: test_crash [seed [rounds]]; the seed also comes from $TALLY_SEED, else from the time.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tallystore.h"
#include "testutil.h"

#define NKEYS          4000
#define NTHREADS       4
#define DEFAULT_ROUNDS 40
#define MIN_ROUNDS     20
#define TIME_BUDGET_MS 50000
#define KEY_CAP        64

enum msg_kind { MSG_OPENED = 1, MSG_INTENT = 2, MSG_ACK = 3 };

/* 16 bytes: written with one write(2), so atomic on a pipe. */
struct msg {
    uint8_t kind;
    uint8_t thread;
    uint16_t pad;
    uint32_t key;
    int64_t delta;
};

/* What the verifying child reports, in a shared mapping. */
struct verify {
    int status; /* 1 when filled in */
    char err[512];
    int32_t found[NKEYS]; /* tl_db_get's return */
    int32_t type[NKEYS];
    int64_t value[NKEYS];
    uint64_t files;
    uint64_t last_seq;
};

static uint64_t seed;
static char *dir;

static size_t key_of(int k, char *buf)
{
    return (size_t)snprintf(buf, KEY_CAP, "crash-test-counter:%06d:some-padding", k);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void options(struct tl_options *o, enum tl_fsync_mode fsync)
{
    tl_options_init(o);
    o->fsync = fsync;
    /* The engine wants room for the largest key and value in one memtable. */
    o->memtable_bytes = 96 << 10;
    o->max_value_bytes = 1024;
    o->block_cache_bytes = 1 << 20;
    o->level1_bytes = 256 << 10;
    o->target_file_bytes = 64 << 10;
    o->level_multiplier = 4;
}

/* ---- the loaded child ---- */

static tl_db *child_db;
static int child_fd;

static void send_msg(const struct msg *m)
{
    ssize_t n = write(child_fd, m, sizeof *m);
    if (n != (ssize_t)sizeof *m)
        _exit(6);
}

struct child_thread {
    int index;
    uint64_t rng;
};

static void *child_incr_main(void *p)
{
    struct child_thread *ct = p;
    char key[KEY_CAP];
    for (;;) {
        uint64_t r = test_rand(&ct->rng);
        int k = (int)(r % NKEYS);
        int64_t delta = 1 + (int64_t)((r >> 32) % 1000);
        if (((r >> 20) & 7) == 0)
            delta = -delta;
        struct msg m = {
            .kind = MSG_INTENT, .thread = (uint8_t)ct->index, .key = (uint32_t)k, .delta = delta};
        send_msg(&m);
        int64_t result;
        uint64_t seq = 0;
        /* Threads 1 and 3 take the sequence number and wait themselves: until the record is
         * on disk (1) or in the kernel (3), either of which survives kill -9. */
        bool own_wait = ct->index % 2 == 1;
        int rc = tl_db_incr(child_db, key, key_of(k, key), delta, &result, own_wait ? &seq : NULL);
        if (rc == 0 && own_wait)
            rc = tl_db_wait(child_db, seq, ct->index == 1 ? TL_WAIT_DURABLE : TL_WAIT_WRITTEN);
        if (rc != 0) {
            fprintf(stderr, "child thread %d: tl_db_incr(%s, %" PRId64 ") returned %d %s: %s\n",
                    ct->index, key, delta, rc, tl_strerror(rc), tl_last_error());
            _exit(4);
        }
        m.kind = MSG_ACK;
        send_msg(&m);
    }
    return NULL;
}

static void *child_maint_main(void *p)
{
    uint64_t rng = *(uint64_t *)p;
    for (;;) {
        struct timespec ts = {0, (long)(10 + test_rand(&rng) % 40) * 1000 * 1000};
        nanosleep(&ts, NULL);
        int rc = test_rand(&rng) % 5 == 0 ? tl_db_compact_range(child_db, NULL, 0, NULL, 0)
                                          : tl_db_flush(child_db);
        if (rc != 0) {
            fprintf(stderr, "child: flush/compact returned %d %s: %s\n", rc, tl_strerror(rc),
                    tl_last_error());
            _exit(5);
        }
    }
    return NULL;
}

static void __attribute__((noreturn)) child_load(int fd, uint64_t rng)
{
    child_fd = fd;
    struct tl_options o;
    options(&o, TL_FSYNC_ALWAYS);
    int rc = tl_db_open(dir, &o, &child_db);
    if (rc != 0) {
        fprintf(stderr, "child: tl_db_open(%s) returned %d %s: %s\n", dir, rc, tl_strerror(rc),
                tl_last_error());
        _exit(3);
    }
    struct msg m = {.kind = MSG_OPENED};
    send_msg(&m);
    static struct child_thread cts[NTHREADS];
    pthread_t tids[NTHREADS + 1];
    for (int t = 0; t < NTHREADS; t++) {
        cts[t].index = t;
        cts[t].rng = test_rand(&rng);
        if (pthread_create(&tids[t], NULL, child_incr_main, &cts[t]) != 0)
            _exit(7);
    }
    static uint64_t mrng;
    mrng = test_rand(&rng);
    if (pthread_create(&tids[NTHREADS], NULL, child_maint_main, &mrng) != 0)
        _exit(7);
    for (;;)
        pause();
}

/* ---- the verifying child ---- */

static void __attribute__((noreturn)) child_verify(struct verify *v)
{
    struct tl_options o;
    options(&o, TL_FSYNC_EVERYSEC);
    tl_db *db;
    int rc = tl_db_open(dir, &o, &db);
    if (rc != 0) {
        snprintf(v->err, sizeof v->err, "tl_db_open returned %d %s: %s", rc, tl_strerror(rc),
                 tl_last_error());
        _exit(1);
    }
    char key[KEY_CAP];
    for (int k = 0; k < NKEYS; k++) {
        struct tl_val val = {0};
        rc = tl_db_get(db, key, key_of(k, key), &val);
        if (rc < 0) {
            snprintf(v->err, sizeof v->err, "tl_db_get(%s) returned %d %s: %s", key, rc,
                     tl_strerror(rc), tl_last_error());
            _exit(1);
        }
        v->found[k] = rc;
        v->type[k] = (int32_t)val.type;
        v->value[k] = val.i;
        tl_val_clear(&val);
    }
    struct tl_stats st;
    if (tl_db_stats(db, &st) == 0) {
        for (int l = 0; l < st.num_levels && l < TL_MAX_LEVELS; l++)
            v->files += st.levels[l].files;
        v->last_seq = st.last_seq;
    }
    rc = tl_db_close(db);
    if (rc != 0) {
        snprintf(v->err, sizeof v->err, "tl_db_close returned %d %s: %s", rc, tl_strerror(rc),
                 tl_last_error());
        _exit(1);
    }
    v->status = 1;
    _exit(0);
}

/* ---- the parent ---- */

static int64_t base[NKEYS];  /* each key's value after the previous round */
static bool exists[NKEYS];   /* the key has had an acknowledged increment */
static int64_t acked[NKEYS]; /* acknowledged deltas this round */
static struct msg pending[NTHREADS];
static bool pending_valid[NTHREADS];

static void __attribute__((noreturn, format(printf, 2, 3))) fail(int round, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "FAIL seed=%" PRIu64 " round=%d: ", seed, round);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    exit(1);
}

/* Handles complete messages in buf[0..*len), keeping a partial one. */
static void take_msgs(int round, char *buf, size_t *len, bool *opened, long *nacks)
{
    size_t off = 0;
    for (; off + sizeof(struct msg) <= *len; off += sizeof(struct msg)) {
        struct msg m;
        memcpy(&m, buf + off, sizeof m);
        if (m.kind == MSG_OPENED) {
            *opened = true;
            continue;
        }
        if (m.thread >= NTHREADS || m.key >= NKEYS)
            fail(round, "bad message from the child (kind %d thread %d key %u)", m.kind, m.thread,
                 m.key);
        if (m.kind == MSG_INTENT) {
            if (pending_valid[m.thread])
                fail(round, "thread %d sent two intents without an ack", m.thread);
            pending[m.thread] = m;
            pending_valid[m.thread] = true;
        } else if (m.kind == MSG_ACK) {
            struct msg *p = &pending[m.thread];
            if (!pending_valid[m.thread] || p->key != m.key || p->delta != m.delta)
                fail(round, "thread %d acknowledged an increment it did not announce", m.thread);
            pending_valid[m.thread] = false;
            acked[m.key] += m.delta;
            exists[m.key] = true;
            (*nacks)++;
        } else {
            fail(round, "bad message kind %d from the child", m.kind);
        }
    }
    memmove(buf, buf + off, *len - off);
    *len -= off;
}

static void check_round(int round, const struct verify *v, int64_t killed_after, const char *from,
                        long nacks, int64_t t_verify)
{
    int inflight = 0, applied = 0;
    for (int t = 0; t < NTHREADS; t++)
        inflight += pending_valid[t];
    for (int k = 0; k < NKEYS; k++) {
        if (v->found[k] != 0 && v->found[k] != 1)
            fail(round, "tl_db_get of key %d returned %d", k, v->found[k]);
        if (v->found[k] && v->type[k] != TL_VAL_INT)
            fail(round, "key %d has type %d, expected INT", k, v->type[k]);
        if (exists[k] && !v->found[k])
            fail(round,
                 "key %d is missing, but it had acknowledged increments (expected at "
                 "least %" PRId64 " + %" PRId64 ")",
                 k, base[k], acked[k]);
        int64_t val = v->found[k] ? v->value[k] : 0;
        int64_t diff = val - base[k] - acked[k];
        /* The deltas in flight on this key; diff must be the sum of a subset of them. */
        int64_t d[NTHREADS];
        int nd = 0;
        for (int t = 0; t < NTHREADS; t++) {
            if (pending_valid[t] && pending[t].key == (uint32_t)k)
                d[nd++] = pending[t].delta;
        }
        int match = -1;
        for (int mask = 0; mask < (1 << nd) && match < 0; mask++) {
            int64_t s = 0;
            for (int i = 0; i < nd; i++)
                s += mask & (1 << i) ? d[i] : 0;
            if (s == diff)
                match = mask;
        }
        if (match < 0) {
            char dl[200] = "";
            for (int i = 0; i < nd; i++)
                snprintf(dl + strlen(dl), sizeof dl - strlen(dl), " %" PRId64, d[i]);
            fail(round,
                 "key %d = %" PRId64 " (%s), expected previous %" PRId64 " + acknowledged %" PRId64
                 " = %" PRId64 " plus a subset of the in-flight deltas {%s }: off by %" PRId64,
                 k, val, v->found[k] ? "present" : "absent", base[k], acked[k], base[k] + acked[k],
                 dl, diff);
        }
        applied += __builtin_popcount((unsigned)match);
        base[k] = val;
        exists[k] = exists[k] || v->found[k];
        acked[k] = 0;
    }
    printf("round %2d: killed %3" PRId64 " ms after %-4s acked %6ld, in flight %d (applied %d), "
           "%3" PRIu64 " files, last seq %8" PRIu64 ", verified in %" PRId64 " ms: ok\n",
           round, killed_after, from, nacks, inflight, applied, v->files, v->last_seq, t_verify);
    fflush(stdout);
    for (int t = 0; t < NTHREADS; t++)
        pending_valid[t] = false;
}

static void run_round(int round, uint64_t *rng, struct verify *v)
{
    int p[2];
    if (pipe(p) != 0)
        fail(round, "pipe: %s", strerror(errno));
    bool from_fork = round % 5 == 4;
    int64_t delay = 20 + (int64_t)(test_rand(rng) % 281);
    uint64_t child_rng = test_rand(rng);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        fail(round, "fork: %s", strerror(errno));
    if (pid == 0) {
        close(p[0]);
        child_load(p[1], child_rng);
    }
    close(p[1]);

    static char buf[1 << 16];
    size_t len = 0;
    bool opened = false, killed = false;
    long nacks = 0;
    int64_t t0 = mono_ms(), t_open_deadline = t0 + 20000;
    int64_t killed_after = 0;
    for (;;) {
        int64_t now = mono_ms();
        if (!killed && (from_fork || opened) && now - t0 >= delay) {
            kill(pid, SIGKILL);
            killed = true;
            killed_after = now - t0;
        }
        if (!killed && !opened && now > t_open_deadline)
            fail(round, "the child did not open the database within 20 s");
        struct pollfd pfd = {.fd = p[0], .events = POLLIN};
        int timeout = killed ? -1 : (int)(t0 + delay - now > 0 ? t0 + delay - now : 0);
        if (!killed && !from_fork && !opened)
            timeout = 100;
        int rc = poll(&pfd, 1, timeout);
        if (rc < 0 && errno != EINTR)
            fail(round, "poll: %s", strerror(errno));
        if (rc <= 0)
            continue;
        ssize_t n = read(p[0], buf + len, sizeof buf - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fail(round, "read: %s", strerror(errno));
        }
        if (n == 0)
            break;
        len += (size_t)n;
        bool was_opened = opened;
        take_msgs(round, buf, &len, &opened, &nacks);
        if (!was_opened && opened && !from_fork)
            t0 = mono_ms();
    }
    close(p[0]);
    int status;
    if (waitpid(pid, &status, 0) != pid)
        fail(round, "waitpid: %s", strerror(errno));
    if (!killed || !WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
        fail(round,
             "the loaded child ended by itself (status 0x%x: exit %d) before the kill; "
             "see its message above",
             status, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    if (len != 0)
        fail(round, "%zu stray bytes left in the pipe", len);

    int64_t tv = mono_ms();
    memset(v, 0, sizeof *v);
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0)
        fail(round, "fork: %s", strerror(errno));
    if (pid == 0)
        child_verify(v);
    if (waitpid(pid, &status, 0) != pid)
        fail(round, "waitpid: %s", strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || v->status != 1)
        fail(round, "the verifying child failed (status 0x%x): %s", status, v->err);
    check_round(round, v, killed_after, from_fork ? "fork" : "open", nacks, mono_ms() - tv);
}

int main(int argc, char **argv)
{
    /* The probe runs in a child, so that this process never owns an io_uring. */
    pid_t pid = fork();
    if (pid == 0) {
        test_require_uring();
        _exit(0);
    }
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) {
        fprintf(stderr, "could not run the io_uring probe\n");
        return 1;
    }
    if (WEXITSTATUS(status) == TEST_SKIP)
        return TEST_SKIP;
    if (WEXITSTATUS(status) != 0)
        return 1;

    const char *env = getenv("TALLY_SEED");
    if (argc > 1)
        seed = strtoull(argv[1], NULL, 0);
    else if (env && *env)
        seed = strtoull(env, NULL, 0);
    else
        seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    int rounds = argc > 2 ? atoi(argv[2]) : DEFAULT_ROUNDS;
    printf("test_crash: seed=%" PRIu64 " rounds=%d\n", seed, rounds);
    fflush(stdout);

    dir = test_tmpdir("crash");
    struct verify *v =
        mmap(NULL, sizeof *v, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(v != MAP_FAILED);
    uint64_t rng = seed;
    int64_t start = mono_ms();
    int round;
    for (round = 0; round < rounds; round++) {
        if (round >= MIN_ROUNDS && mono_ms() - start > TIME_BUDGET_MS)
            break;
        run_round(round, &rng, v);
    }
    int64_t total = 0;
    long keys = 0;
    for (int k = 0; k < NKEYS; k++) {
        total += base[k];
        keys += exists[k];
    }
    printf("ok: seed=%" PRIu64 ", %d rounds in %" PRId64 " ms, %ld keys, sum of values %" PRId64
           "\n",
           seed, round, mono_ms() - start, keys, total);
    munmap(v, sizeof *v);
    test_rmdir(dir);
    free(dir);
    return 0;
}
