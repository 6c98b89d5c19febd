/*
 * test_server_faults.c - tallyd under injected I/O faults, through hiredis.
 *
 * Runs server/tallyd-faults (TALLYD_FAULTS; the test build of tallyd, linked with the fault
 * library) and sets its faults at run time through the control file named by
 * TALLY_FAULT_CONTROL (server/debug_fault.c). For each fault kind (eio, enospc, short, sync)
 * against the WAL, under --fsync always and everysec, and for faults against tables and the
 * manifest (flushes of 1 MiB memtables):
 * - the write in flight when the fault strikes is never answered with success unless it was
 *   stored (its reply is held until the WAL is repaired, then it is acknowledged);
 * - while the fault lasts, INCR, SET and WINCRBY answer an error, and GET answers the value
 *   acknowledged before;
 * - once the fault is cleared, writes succeed again on the same server;
 * - after kill -9 and a restart (of the plain tallyd), every acknowledged write is there and
 *   `tallyctl verify --dir` passes (when TALLYCTL is set).
 * It ends with the figures: faults injected per file and kind (from the server's status file),
 * errors answered, writes acknowledged.
 */
#define _GNU_SOURCE
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "server_harness.h"
#include "testutil.h"

#define TEST_ALARM_S     240
#define REPLY_TIMEOUT_S  10
#define STATUS_WAIT_MS   5000
#define RESUME_WAIT_MS   5000
#define KEYS             16
#define WARM_WRITES      50
#define FILL_VALUE_BYTES 4096
#define FILL_BATCH       64
#define FILL_MAX         20000
#define PATH_BYTES       4400

static char control_path[PATH_BYTES];
static unsigned long long control_gen;
static long long counts_before[3][4];
static long long injected_total[3][4]; /* summed over the tallyd-faults runs */
/* Figures. */
static unsigned long long errors_answered, writes_acked, held_then_acked;

/* The acknowledged increments of each counter key, and those whose outcome is unknown. */
static long long acked[KEYS], maybe[KEYS];
/* The SET keys acknowledged (fill%06d with a known value), for the restart check. */
static int fills_acked;

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static redisContext *connect_to(int port)
{
    struct timeval tv = {.tv_sec = REPLY_TIMEOUT_S};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    CHECK(c && !c->err && redisSetTimeout(c, tv) == REDIS_OK);
    return c;
}

/* A command's reply; a lost connection ends the test. */
static redisReply *checked_reply(void *reply)
{
    CHECK(reply != NULL);
    return reply;
}
#define CMD(c, ...) checked_reply(redisCommand((c), __VA_ARGS__))

/* Replaces the control file with rules (lines, may be "") and waits until tallyd-faults has
 * applied them; reads the injected counts from its status into counts (may be NULL). */
static void control(const char *rules, long long counts[3][4])
{
    char tmp[PATH_BYTES + 8], status[PATH_BYTES + 8], buf[8192];
    snprintf(tmp, sizeof tmp, "%s.tmp", control_path);
    snprintf(status, sizeof status, "%s.status", control_path);
    FILE *f = fopen(tmp, "w");
    CHECK(f != NULL);
    fprintf(f, "%llu\n%s\n", ++control_gen, rules);
    CHECK(fclose(f) == 0);
    CHECK(rename(tmp, control_path) == 0);
    int64_t deadline = now_ms() + STATUS_WAIT_MS;
    for (;;) {
        f = fopen(status, "r");
        size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f)
            fclose(f);
        buf[n] = '\0';
        unsigned long long gen;
        if (sscanf(buf, "gen %llu", &gen) == 1 && gen == control_gen)
            break;
        if (now_ms() > deadline) {
            fprintf(stderr, "tallyd-faults did not apply control generation %llu in %d ms\n",
                    control_gen, STATUS_WAIT_MS);
            exit(1);
        }
        usleep(1000);
    }
    if (strstr(buf, "\nerror ")) {
        fprintf(stderr, "tallyd-faults rejected a rule:\n%s", buf);
        exit(1);
    }
    if (!counts)
        return;
    static const char *files[] = {"wal", "sst", "manifest"};
    static const char *kinds[] = {"eio", "enospc", "short", "sync"};
    for (int fi = 0; fi < 3; fi++)
        for (int k = 0; k < 4; k++) {
            char pat[64];
            snprintf(pat, sizeof pat, "\n%s %s ", files[fi], kinds[k]);
            const char *p = strstr(buf, pat);
            counts[fi][k] = p ? atoll(p + strlen(pat)) : 0;
        }
}

/* Waits until the fault of file fi and kind k has fired (its injected count went up). */
static void wait_injected(int fi, int k, const char *what)
{
    int64_t deadline = now_ms() + STATUS_WAIT_MS;
    long long counts[3][4];
    for (;;) {
        control("", counts);
        if (counts[fi][k] > counts_before[fi][k])
            break;
        if (now_ms() > deadline) {
            fprintf(stderr, "%s: the fault never fired\n", what);
            exit(1);
        }
        usleep(2000);
    }
    memcpy(counts_before, counts, sizeof counts);
    usleep(20000); /* the WAL marks itself broken right after the failed call */
}

static void expect_error(redisReply *r, const char *what)
{
    if (r->type != REDIS_REPLY_ERROR) {
        fprintf(stderr, "%s under a fault answered type %d (%s), expected an error\n", what,
                r->type, r->type == REDIS_REPLY_STATUS ? r->str : "");
        exit(1);
    }
    errors_answered++;
}

static void check_get(redisContext *c, int key, const char *when)
{
    redisReply *r = CMD(c, "GET ctr%d", key);
    long long have = r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
    if (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL) {
        fprintf(stderr, "GET ctr%d %s answered type %d\n", key, when, r->type);
        exit(1);
    }
    if (have < acked[key] || have > acked[key] + maybe[key]) {
        fprintf(stderr, "GET ctr%d %s: %lld, expected %lld acknowledged (+ up to %lld)\n", key,
                when, have, acked[key], maybe[key]);
        exit(1);
    }
    freeReplyObject(r);
}

/* INCR ctrN; true if acknowledged. */
static bool incr(redisContext *c, int key)
{
    redisReply *r = CMD(c, "INCR ctr%d", key);
    bool ok = r->type == REDIS_REPLY_INTEGER;
    if (ok) {
        acked[key]++;
        writes_acked++;
    } else {
        maybe[key]++;
    }
    freeReplyObject(r);
    return ok;
}

static void writes_resume(redisContext *c, const char *what)
{
    int64_t deadline = now_ms() + RESUME_WAIT_MS;
    while (!incr(c, 0)) {
        if (now_ms() > deadline) {
            fprintf(stderr, "%s: writes did not resume %d ms after the fault was cleared\n", what,
                    RESUME_WAIT_MS);
            exit(1);
        }
        usleep(5000);
    }
}

/* While the fault lasts: INCR, SET and WINCRBY answer an error; GET answers what was
 * acknowledged. */
static void writes_fail_reads_work(redisContext *c, const char *what)
{
    char label[256];
    redisReply *r = CMD(c, "INCR ctr1");
    maybe[1]++;
    snprintf(label, sizeof label, "%s: INCR", what);
    expect_error(r, label);
    freeReplyObject(r);
    r = CMD(c, "SET str%d value", (int)control_gen);
    snprintf(label, sizeof label, "%s: SET", what);
    expect_error(r, label);
    freeReplyObject(r);
    r = CMD(c, "WINCRBY win 1");
    snprintf(label, sizeof label, "%s: WINCRBY", what);
    expect_error(r, label);
    freeReplyObject(r);
    for (int k = 0; k < KEYS; k++)
        check_get(c, k, what);
}

/*
 * A WAL fault until cleared. Connection a sends an INCR that meets the fault and reads its
 * reply only after the fault is cleared: held, then acknowledged once the WAL is repaired (it
 * was stored). Connection b meanwhile sees errors for every write and values for reads.
 */
static void wal_fault(int port, int kind, const char *kind_name, const char *mode)
{
    char what[128], rule[64];
    snprintf(what, sizeof what, "wal %s (fsync %s)", kind_name, mode);
    redisContext *a = connect_to(port), *b = connect_to(port);
    for (int i = 0; i < WARM_WRITES; i++)
        CHECK(incr(b, i % KEYS));
    snprintf(rule, sizeof rule, "wal %s", kind_name);
    control(rule, counts_before);
    /* Under everysec a sync fault strikes the commit thread's sync, within a second. */
    bool held = !(kind == 3 && strcmp(mode, "everysec") == 0);
    if (held) {
        int done = 0;
        CHECK(redisAppendCommand(a, "INCR ctr2") == REDIS_OK);
        CHECK(redisBufferWrite(a, &done) == REDIS_OK);
        maybe[2]++; /* applied in memory, not yet acknowledged */
    }
    wait_injected(0, kind, what);
    writes_fail_reads_work(b, what);
    control("clear", NULL);
    if (held) {
        void *reply = NULL;
        if (redisGetReply(a, &reply) != REDIS_OK) {
            fprintf(stderr, "%s: the held INCR lost its connection: %s\n", what, a->errstr);
            exit(1);
        }
        redisReply *r = reply;
        if (r->type == REDIS_REPLY_INTEGER) {
            maybe[2]--;
            acked[2]++;
            held_then_acked++;
        } else {
            errors_answered++;
        }
        freeReplyObject(r);
    }
    writes_resume(b, what);
    for (int i = 0; i < WARM_WRITES; i++)
        CHECK(incr(b, i % KEYS));
    for (int k = 0; k < KEYS; k++)
        check_get(b, k, what);
    redisFree(a);
    redisFree(b);
    printf("test_server_faults: %s passed\n", what);
}

/* SETs of FILL_VALUE_BYTES values, pipelined, until one answers an error (the flushes fail and
 * every frozen memtable slot is taken). Returns the number acknowledged. */
static int fill_until_error(redisContext *c, const char *what)
{
    static char value[FILL_VALUE_BYTES];
    memset(value, 'v', sizeof value);
    while (fills_acked < FILL_MAX) {
        for (int i = 0; i < FILL_BATCH; i++)
            redisAppendCommand(c, "SET fill%06d %b", fills_acked + i, value, sizeof value);
        bool failed = false;
        int ok = 0;
        for (int i = 0; i < FILL_BATCH; i++) {
            void *reply;
            CHECK(redisGetReply(c, &reply) == REDIS_OK);
            redisReply *r = reply;
            if (r->type == REDIS_REPLY_ERROR)
                failed = true;
            else if (!failed)
                ok++; /* acknowledged, in order, before the first error */
            freeReplyObject(r);
        }
        fills_acked += ok;
        writes_acked += (unsigned long long)ok;
        if (failed) {
            errors_answered++;
            return fills_acked;
        }
    }
    fprintf(stderr, "%s: %d SETs of %d bytes succeeded while every flush failed\n", what, FILL_MAX,
            FILL_VALUE_BYTES);
    exit(1);
}

/* A table or manifest fault until cleared: flushes fail, writes go on until the frozen
 * memtables are full, then answer errors; reads go on; clearing lets writes resume. */
static void flush_fault(int port, const char *rule, const char *what)
{
    redisContext *c = connect_to(port);
    control(rule, counts_before);
    fill_until_error(c, what);
    writes_fail_reads_work(c, what);
    control("clear", NULL);
    writes_resume(c, what);
    redisFree(c);
    printf("test_server_faults: %s passed\n", what);
}

/* After kill -9 and a restart of the plain tallyd: every acknowledged write is there. */
static void check_after_restart(struct test_server *s, const char *plain_tallyd)
{
    srv_stop_with(s, SIGKILL);
    setenv("TALLYD", plain_tallyd, 1);
    srv_start(s);
    redisContext *c = connect_to(s->port);
    for (int k = 0; k < KEYS; k++)
        check_get(c, k, "after kill -9 and restart");
    for (int i = 0; i < fills_acked; i++) {
        redisReply *r = CMD(c, "STRLEN fill%06d", i);
        if (r->type != REDIS_REPLY_INTEGER || r->integer != FILL_VALUE_BYTES) {
            fprintf(stderr, "fill%06d: acknowledged, missing after restart\n", i);
            exit(1);
        }
        freeReplyObject(r);
    }
    redisFree(c);
    srv_stop_with(s, SIGTERM);
    const char *tallyctl = getenv("TALLYCTL");
    if (tallyctl && *tallyctl) {
        char command[2 * PATH_BYTES];
        snprintf(command, sizeof command, "'%s' verify --dir '%s' >/dev/null 2>&1", tallyctl,
                 s->dir);
        if (system(command) != 0) {
            fprintf(stderr, "tallyctl verify --dir %s failed after the faults\n", s->dir);
            exit(1);
        }
    }
}

static void run_server(const char *tmp, const char *mode, const char *plain_tallyd)
{
    struct test_server s;
    char name[64];
    snprintf(name, sizeof name, "faults-%s", mode);
    srv_init(&s, tmp, name);
    srv_add_opt(&s, "fsync", mode);
    srv_add_opt(&s, "memtable-bytes", "1mb");
    srv_add_opt(&s, "max-value-bytes", "64kb");
    srv_add_opt(&s, "io-threads", "2");
    memset(acked, 0, sizeof acked);
    memset(maybe, 0, sizeof maybe);
    fills_acked = 0;
    srv_start(&s);
    static const char *kinds[] = {"eio", "enospc", "short", "sync"};
    for (int k = 0; k < 4; k++)
        wal_fault(s.port, k, kinds[k], mode);
    if (strcmp(mode, "always") == 0) {
        flush_fault(s.port, "sst enospc", "sst enospc (flush)");
        flush_fault(s.port, "sst short", "sst short (flush)");
        flush_fault(s.port, "manifest sync", "manifest sync (flush)");
    }
    long long counts[3][4];
    control("", counts);
    for (int f = 0; f < 3; f++)
        for (int k = 0; k < 4; k++)
            injected_total[f][k] += counts[f][k];
    check_after_restart(&s, plain_tallyd);
    setenv("TALLYD", getenv("TALLYD_FAULTS"), 1);
}

int main(void)
{
    const char *faults = getenv("TALLYD_FAULTS");
    const char *plain = getenv("TALLYD");
    if (srv_is_redis()) {
        printf("SKIP: fault injection needs tallyd-faults\n");
        return TEST_SKIP;
    }
    if (!faults || !*faults || access(faults, X_OK) != 0 || !plain || !*plain) {
        fprintf(stderr, "set TALLYD_FAULTS (server/tallyd-faults) and TALLYD (server/tallyd)\n");
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    srv_setup(TEST_ALARM_S);
    char *tmp = test_tmpdir("server-faults");
    char plain_copy[PATH_BYTES];
    snprintf(plain_copy, sizeof plain_copy, "%s", plain);
    snprintf(control_path, sizeof control_path, "%s/fault-control", tmp);
    setenv("TALLY_FAULT_CONTROL", control_path, 1);
    setenv("TALLYD", faults, 1);

    run_server(tmp, "always", plain_copy);
    run_server(tmp, "everysec", plain_copy);

    static const char *files[] = {"wal", "sst", "manifest"};
    long long all = 0;
    for (int f = 0; f < 3; f++) {
        printf("test_server_faults: faults injected into %-8s files: eio %lld enospc %lld short "
               "%lld sync %lld\n",
               files[f], injected_total[f][0], injected_total[f][1], injected_total[f][2],
               injected_total[f][3]);
        for (int k = 0; k < 4; k++)
            all += injected_total[f][k];
    }
    printf("test_server_faults: faults injected in all: %lld\n", all);
    printf("test_server_faults: writes acknowledged %llu, errors answered %llu, writes held "
           "through a fault then acknowledged %llu\n",
           writes_acked, errors_answered, held_then_acked);
    test_rmdir(tmp);
    free(tmp);
    return 0;
}
