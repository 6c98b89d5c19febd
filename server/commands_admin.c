/*
 * commands_admin.c - TALLY, Tally's own administration commands, which tallyctl uses:
 *
 *   TALLY COMPACT [LEVEL n] [RANGE from to]   starts a manual compaction in a background thread
 *                                             and answers its id at once
 *   TALLY COMPACT STATUS                      the last compaction's id, state, level, bytes done
 *                                             and total, time taken, error
 *   TALLY CHECKPOINT dest                     a consistent copy of the database in dest
 *   TALLY HELP
 *
 * One compaction started here runs at a time. Its thread calls the engine's
 * tl_db_compact_range_progress or tl_db_compact_level, whose progress callback (run on the
 * engine's compaction thread) stores the bytes done and the total in atomics that STATUS reads.
 * RANGE's keys are user keys of the client's database, turned into engine keys here; without
 * RANGE every key of every database is compacted. The engine must not be closed while the
 * thread runs: tl_admin_shutdown waits for it.
 *
 * CHECKPOINT runs on the worker that received it (the engine flushes the memtables, then links
 * the tables), so that worker's other clients wait for it; dest is a path on the server's
 * machine, absolute and not yet existing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "server.h"

#define TL_ADMIN_ERROR_BYTES 512
#define TL_ADMIN_SHOW_BYTES  128 /* of a path in an error reply */

enum compaction_state { COMPACTION_NONE, COMPACTION_RUNNING, COMPACTION_DONE, COMPACTION_FAILED };
static const char *const state_names[] = {"none", "running", "done", "failed"};

/* What a compaction thread is to do; the keys are engine keys, owned. */
struct compaction_job {
    int level; /* -1: every level, to the bottom */
    char *begin, *end;
    size_t blen, elen;
    bool has_range;
};

/* The last compaction started by TALLY COMPACT. Fields other than the atomics are under lock. */
static struct {
    pthread_mutex_t lock;
    uint64_t id; /* 0 until the first one */
    enum compaction_state state;
    int level;
    int64_t started_ms, finished_ms;
    char error[TL_ADMIN_ERROR_BYTES];
    bool joinable; /* a thread was started and not yet joined */
    pthread_t thread;
    _Atomic uint64_t done_bytes, total_bytes;
} compaction = {.lock = PTHREAD_MUTEX_INITIALIZER, .level = -1};

static void compaction_progress(void *arg, uint64_t done_bytes, uint64_t total_bytes)
{
    atomic_store(&compaction.total_bytes, total_bytes);
    atomic_store(&compaction.done_bytes, done_bytes);
}

static void job_free(struct compaction_job *job)
{
    free(job->begin);
    free(job->end);
    free(job);
}

static void *compaction_main(void *arg)
{
    struct compaction_job *job = arg;
    tl_db *db = tl_srv->db;
    const void *b = job->has_range ? job->begin : NULL;
    const void *e = job->has_range ? job->end : NULL;
    int rc = job->level < 0 ? tl_db_compact_range_progress(db, b, job->blen, e, job->elen,
                                                           compaction_progress, NULL)
                            : tl_db_compact_level(db, job->level, b, job->blen, e, job->elen,
                                                  compaction_progress, NULL);
    pthread_mutex_lock(&compaction.lock);
    compaction.finished_ms = tl_now_ms();
    if (rc < 0) {
        compaction.state = COMPACTION_FAILED;
        snprintf(compaction.error, sizeof compaction.error, "%s",
                 tl_last_error()[0] ? tl_last_error() : tl_strerror(rc));
        tl_log(TL_LOG_WARNING, "Compaction %" PRIu64 " failed: %s", compaction.id,
               compaction.error);
    } else {
        compaction.state = COMPACTION_DONE;
        tl_log(TL_LOG_NOTICE, "Compaction %" PRIu64 " done in %.3f seconds", compaction.id,
               (double)(compaction.finished_ms - compaction.started_ms) / 1000.0);
    }
    pthread_mutex_unlock(&compaction.lock);
    job_free(job);
    return NULL;
}

/* Copies the engine key of user key (key, len) of the client's database into *out. */
static int engine_key_copy(struct tl_client *c, const char *key, size_t len, char **out,
                           size_t *out_len)
{
    struct tl_dbkey k;
    int rc = tl_dbkey_make(&k, c->db, key, len);
    if (rc == 0) {
        *out = malloc(k.len ? k.len : 1);
        if (!*out)
            rc = -ENOMEM;
        else
            memcpy(*out, k.p, k.len);
        *out_len = k.len;
    }
    tl_dbkey_free(&k);
    return rc;
}

static void compaction_status(struct tl_client *c)
{
    pthread_mutex_lock(&compaction.lock);
    int64_t end_ms = compaction.state == COMPACTION_RUNNING ? tl_now_ms() : compaction.finished_ms;
    tl_reply_map(c, 7);
    tl_reply_cstr(c, "id");
    tl_reply_int(c, (int64_t)compaction.id);
    tl_reply_cstr(c, "state");
    tl_reply_cstr(c, state_names[compaction.state]);
    tl_reply_cstr(c, "level");
    tl_reply_int(c, compaction.level);
    tl_reply_cstr(c, "done_bytes");
    tl_reply_int(c, (int64_t)atomic_load(&compaction.done_bytes));
    tl_reply_cstr(c, "total_bytes");
    tl_reply_int(c, (int64_t)atomic_load(&compaction.total_bytes));
    tl_reply_cstr(c, "elapsed_ms");
    tl_reply_int(c, compaction.id ? end_ms - compaction.started_ms : 0);
    tl_reply_cstr(c, "error");
    tl_reply_cstr(c, compaction.error);
    pthread_mutex_unlock(&compaction.lock);
}

/* TALLY COMPACT [LEVEL n] [RANGE from to] | TALLY COMPACT STATUS */
static void tally_compact(struct tl_client *c, struct tl_args *a)
{
    if (a->argc == 3 && tl_arg_eq(a->argv[2], a->len[2], "STATUS")) {
        compaction_status(c);
        return;
    }
    struct compaction_job *job = calloc(1, sizeof *job);
    if (!job) {
        tl_reply_error(c, "ERR out of memory starting a compaction");
        return;
    }
    job->level = -1;
    for (int i = 2; i < a->argc; i++) {
        int64_t level;
        if (tl_arg_eq(a->argv[i], a->len[i], "LEVEL") && i + 1 < a->argc) {
            if (!tl_parse_int(a->argv[i + 1], a->len[i + 1], &level) || level < 0 ||
                level >= TL_MAX_LEVELS) {
                tl_reply_errorf(c, "ERR LEVEL must be an integer from 0 to %d", TL_MAX_LEVELS - 1);
                goto fail;
            }
            job->level = (int)level;
            i++;
        } else if (tl_arg_eq(a->argv[i], a->len[i], "RANGE") && i + 2 < a->argc &&
                   !job->has_range) {
            int rc = engine_key_copy(c, a->argv[i + 1], a->len[i + 1], &job->begin, &job->blen);
            if (rc == 0)
                rc = engine_key_copy(c, a->argv[i + 2], a->len[i + 2], &job->end, &job->elen);
            if (rc < 0) {
                tl_reply_engine_error(c, rc);
                goto fail;
            }
            job->has_range = true;
            i += 2;
        } else {
            tl_reply_syntax_error(c);
            goto fail;
        }
    }

    pthread_mutex_lock(&compaction.lock);
    if (compaction.state == COMPACTION_RUNNING) {
        tl_reply_errorf(c,
                        "ERR compaction %" PRIu64 " is still running; TALLY COMPACT STATUS "
                        "shows its progress",
                        compaction.id);
        pthread_mutex_unlock(&compaction.lock);
        goto fail;
    }
    if (compaction.joinable) {
        pthread_join(compaction.thread, NULL); /* it has finished: state is not RUNNING */
        compaction.joinable = false;
    }
    atomic_store(&compaction.done_bytes, 0);
    atomic_store(&compaction.total_bytes, 0);
    int level = job->level; /* the thread owns job from pthread_create on */
    compaction.level = level;
    compaction.started_ms = tl_now_ms();
    compaction.finished_ms = 0;
    compaction.error[0] = '\0';
    int rc = pthread_create(&compaction.thread, NULL, compaction_main, job);
    if (rc != 0) {
        pthread_mutex_unlock(&compaction.lock);
        tl_reply_errorf(c, "ERR cannot start a compaction thread: %s", strerror(rc));
        goto fail;
    }
    compaction.joinable = true;
    compaction.state = COMPACTION_RUNNING;
    uint64_t id = ++compaction.id;
    pthread_mutex_unlock(&compaction.lock);
    if (level < 0)
        tl_log(TL_LOG_NOTICE, "Compaction %" PRIu64 " of every level started by %s", id, c->addr);
    else
        tl_log(TL_LOG_NOTICE, "Compaction %" PRIu64 " of level %d started by %s", id, level,
               c->addr);
    tl_reply_int(c, (int64_t)id);
    return;
fail:
    job_free(job);
}

void tl_admin_shutdown(void)
{
    pthread_mutex_lock(&compaction.lock);
    bool joinable = compaction.joinable;
    compaction.joinable = false;
    pthread_mutex_unlock(&compaction.lock);
    if (joinable)
        pthread_join(compaction.thread, NULL);
}

/* TALLY CHECKPOINT dest */
static void tally_checkpoint(struct tl_client *c, struct tl_args *a)
{
    const char *dest = a->argv[2];
    size_t len = a->len[2];
    struct stat st;
    if (memchr(dest, '\0', len)) {
        tl_reply_error(c, "ERR checkpoint destination contains a NUL byte");
        return;
    }
    if (len >= PATH_MAX) {
        tl_reply_errorf(c, "ERR checkpoint destination is longer than the limit of %d bytes",
                        PATH_MAX - 1);
        return;
    }
    if (dest[0] != '/') {
        tl_reply_errorf(c,
                        "ERR checkpoint destination '%.*s' is not an absolute path (it is a path "
                        "on the server's machine)",
                        TL_ADMIN_SHOW_BYTES, dest);
        return;
    }
    if (lstat(dest, &st) == 0) {
        tl_reply_errorf(c, "ERR checkpoint destination '%.*s' already exists; name a new directory",
                        TL_ADMIN_SHOW_BYTES, dest);
        return;
    }
    int64_t t0 = tl_clock_ms();
    int rc = tl_db_checkpoint(tl_srv->db, dest, NULL, NULL);
    if (rc < 0) {
        const char *why = tl_last_error()[0] ? tl_last_error() : tl_strerror(rc);
        tl_log(TL_LOG_WARNING, "Checkpoint to %s failed: %s", dest, why);
        tl_reply_errorf(c, "ERR checkpoint to '%.*s' failed: %s", TL_ADMIN_SHOW_BYTES, dest, why);
        return;
    }
    tl_log(TL_LOG_NOTICE, "Checkpoint written to %s in %.3f seconds", dest,
           (double)(tl_clock_ms() - t0) / 1000.0);
    tl_reply_ok(c);
}

static void tally_help(struct tl_client *c, struct tl_args *a)
{
    static const char *const lines[] = {
        "COMPACT [LEVEL <n>] [RANGE <from> <to>]",
        "    Starts a compaction in the background: every level down to the bottom, or only",
        "    level <n> into the next; only the keys from <from> to <to> of this database, or",
        "    all. Answers the compaction's id.",
        "COMPACT STATUS",
        "    The last compaction's id, state (running, done, failed), level, bytes done and",
        "    total, time taken in ms, and error.",
        "CHECKPOINT <dest>",
        "    Writes a consistent copy of the database to the new directory <dest> (an",
        "    absolute path on the server's machine); tallyd --dir <dest> opens it.",
        NULL,
    };
    tl_reply_help(c, "TALLY", lines);
}

static const struct tl_command tally_subcommands[] = {
    {"compact", -2, TL_CMD_ADMIN | TL_CMD_NOSCRIPT, 0, 0, 0, tally_compact, "server", "0.1.0",
     "Starts a manual compaction in the background, or reports its progress.",
     "O(N) where N is the number of bytes in the tables compacted",
     "[LEVEL level] [RANGE from to] | STATUS", NULL},
    {"checkpoint", 3, TL_CMD_ADMIN | TL_CMD_NOSCRIPT, 0, 0, 0, tally_checkpoint, "server", "0.1.0",
     "Writes a consistent copy of the database into a new directory.",
     "O(N) where N is the number of tables", "dest", NULL},
    {"help", 2, TL_CMD_LOADING | TL_CMD_STALE, 0, 0, 0, tally_help, "server", "0.1.0",
     "Returns helpful text about the different subcommands.", "O(1)", "", NULL},
    {NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL},
};

static void cmd_tally(struct tl_client *c, struct tl_args *a)
{
    tl_run_subcommand(c, a, "tally", tally_subcommands);
}

const struct tl_command tl_commands_admin[] = {
    {"tally", -2, TL_CMD_ADMIN, 0, 0, 0, cmd_tally, "server", "0.1.0",
     "A container for Tally's administration commands (tallyctl uses them).",
     "Depends on subcommand.", "", tally_subcommands},
    {NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL},
};
