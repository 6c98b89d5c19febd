/*
 * cmdstats.c - statistics of each command: calls, time spent, calls refused before they ran,
 * calls that answered an error, and a histogram of latencies; shown by INFO commandstats and
 * latencystats and by LATENCY HISTOGRAM, as Redis 7 shows them, and zeroed by CONFIG RESETSTAT.
 *
 * Each thread that runs commands counts into a table of its own, one entry per command slot
 * (tl_command_stat_id), so that a command costs a few plain stores and no locked instruction.
 * Every counter has one writer; readers add up all the tables with relaxed loads, so a reading
 * may miss the calls of the last microseconds. Tables are registered on a thread's first command
 * and kept for the life of the process (threads that run commands live as long as the server).
 * A reset cannot zero counters that other threads write: it records the current sums as a
 * baseline, and readers report the sums less the baseline.
 *
 * The histogram has a bucket per power of two of microseconds: a call of d us lands in the
 * bucket of the least 2^b >= d (up to 1 us in the first). LATENCY HISTOGRAM shows, as Redis
 * does, for each bucket that holds calls, the number of calls up to that bound; latencystats'
 * percentiles are read from the buckets by linear interpolation inside the bucket where the
 * rank falls, so they are exact to within a factor of two at worst.
 *
 * Error replies are counted by their code (ERR, WRONGTYPE, EXECABORT, ...) for INFO errorstats
 * and total_error_replies, as Redis 7 counts them: every error a client is sent, a command's,
 * a refusal's, one inside EXEC's reply or a protocol error. Errors are rare beside commands, so
 * they take a mutex rather than per-thread tables.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

struct stats_table {
    struct tl_cmdstat *s; /* tl_command_stat_count() entries */
    struct stats_table *next;
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct stats_table *tables;  /* under reg_lock (read without it: entries only prepend) */
static struct tl_cmdstat *baseline; /* under reg_lock */
static _Thread_local struct stats_table *mine;

static struct tl_cmdstat *my_table(void)
{
    if (mine)
        return mine->s;
    size_t n = tl_command_stat_count();
    struct stats_table *t = calloc(1, sizeof *t);
    struct tl_cmdstat *s = calloc(n ? n : 1, sizeof *s);
    if (!t || !s) {
        free(t);
        free(s);
        return NULL; /* out of memory: this thread's calls go uncounted */
    }
    t->s = s;
    pthread_mutex_lock(&reg_lock);
    t->next = tables;
    __atomic_store_n(&tables, t, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&reg_lock);
    mine = t;
    return s;
}

/* One writer per counter: a load and a store, atomic for the readers. */
static inline void bump(uint64_t *p, uint64_t v)
{
    __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}

static int bucket_of(int64_t us)
{
    if (us <= 1)
        return 0;
    int b = 64 - __builtin_clzll((unsigned long long)(us - 1)); /* least b with 2^b >= us */
    return b < TL_CMDSTAT_BUCKETS ? b : TL_CMDSTAT_BUCKETS - 1;
}

void tl_cmdstat_call(int id, int64_t us, bool failed)
{
    struct tl_cmdstat *s = id >= 0 ? my_table() : NULL;
    if (!s)
        return;
    s += id;
    if (us < 0)
        us = 0;
    bump(&s->calls, 1);
    bump(&s->usec, (uint64_t)us);
    bump(&s->hist[bucket_of(us)], 1);
    if (failed)
        bump(&s->failed, 1);
}

void tl_cmdstat_rejected(int id)
{
    struct tl_cmdstat *s = id >= 0 ? my_table() : NULL;
    if (s)
        bump(&s[id].rejected, 1);
}

/* Adds entry id of every table into *out. */
static void sum_tables(int id, struct tl_cmdstat *out)
{
    memset(out, 0, sizeof *out);
    for (struct stats_table *t = __atomic_load_n(&tables, __ATOMIC_ACQUIRE); t; t = t->next) {
        const uint64_t *src = (const uint64_t *)&t->s[id];
        uint64_t *dst = (uint64_t *)out;
        for (size_t k = 0; k < sizeof *out / sizeof(uint64_t); k++)
            dst[k] += __atomic_load_n(&src[k], __ATOMIC_RELAXED);
    }
}

void tl_cmdstat_get(int id, struct tl_cmdstat *out)
{
    sum_tables(id, out);
    pthread_mutex_lock(&reg_lock);
    if (baseline) {
        const uint64_t *base = (const uint64_t *)&baseline[id];
        uint64_t *dst = (uint64_t *)out;
        for (size_t k = 0; k < sizeof *out / sizeof(uint64_t); k++)
            dst[k] = dst[k] > base[k] ? dst[k] - base[k] : 0;
    }
    pthread_mutex_unlock(&reg_lock);
}

/* ---- error replies by code -------------------------------------------------------------- */

static pthread_mutex_t err_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tl_errorstat err_codes[TL_ERRORSTAT_CODES]; /* under err_lock, n_err_codes used */
static size_t n_err_codes;
static uint64_t err_total;

void tl_errorstat_count(const char *reply, size_t len)
{
    /* reply is "-CODE text\r\n": Redis looks for the space in the first 32 bytes */
    const char *code = "ERR";
    size_t code_len = 3;
    const char *space =
        memchr(reply, ' ', len < TL_ERRORSTAT_CODE_BYTES ? len : TL_ERRORSTAT_CODE_BYTES);
    if (len > 0 && reply[0] == '-' && space && space > reply + 1) {
        code = reply + 1;
        code_len = (size_t)(space - code);
    }
    pthread_mutex_lock(&err_lock);
    err_total++;
    size_t i = 0;
    while (i < n_err_codes && !(strlen(err_codes[i].code) == code_len &&
                                memcmp(err_codes[i].code, code, code_len) == 0))
        i++;
    if (i == n_err_codes && n_err_codes < TL_ERRORSTAT_CODES) {
        memcpy(err_codes[i].code, code, code_len); /* code_len < TL_ERRORSTAT_CODE_BYTES */
        err_codes[i].code[code_len] = '\0';
        err_codes[i].count = 0;
        n_err_codes++;
    }
    if (i < n_err_codes)
        err_codes[i].count++;
    pthread_mutex_unlock(&err_lock);
}

uint64_t tl_errorstat_total(void)
{
    pthread_mutex_lock(&err_lock);
    uint64_t n = err_total;
    pthread_mutex_unlock(&err_lock);
    return n;
}

static int errorstat_cmp(const void *a, const void *b)
{
    return strcmp(((const struct tl_errorstat *)a)->code, ((const struct tl_errorstat *)b)->code);
}

size_t tl_errorstat_list(struct tl_errorstat *out, size_t cap)
{
    pthread_mutex_lock(&err_lock);
    size_t n = n_err_codes;
    memcpy(out, err_codes, (n < cap ? n : cap) * sizeof *out);
    pthread_mutex_unlock(&err_lock);
    if (n > cap)
        n = cap;
    qsort(out, n, sizeof *out, errorstat_cmp);
    return n;
}

static void errorstat_reset(void)
{
    pthread_mutex_lock(&err_lock);
    n_err_codes = 0;
    err_total = 0;
    pthread_mutex_unlock(&err_lock);
}

void tl_cmdstat_reset(void)
{
    size_t n = tl_command_stat_count();
    struct tl_cmdstat *base = calloc(n ? n : 1, sizeof *base);
    if (!base)
        return;
    /* Summed under the lock: two resets at once install their baselines in the order they
     * summed them, so an older one never replaces a newer. */
    pthread_mutex_lock(&reg_lock);
    for (size_t id = 0; id < n; id++)
        sum_tables((int)id, &base[id]);
    free(baseline);
    baseline = base;
    pthread_mutex_unlock(&reg_lock);
    errorstat_reset();
}

double tl_cmdstat_percentile(const struct tl_cmdstat *s, double p)
{
    uint64_t total = 0;
    for (int b = 0; b < TL_CMDSTAT_BUCKETS; b++)
        total += s->hist[b];
    if (total == 0)
        return 0;
    double rank = ceil(p / 100.0 * (double)total);
    if (rank < 1)
        rank = 1;
    uint64_t below = 0;
    for (int b = 0; b < TL_CMDSTAT_BUCKETS; b++) {
        uint64_t n = s->hist[b];
        if (n && (double)(below + n) >= rank) {
            double lo = b == 0 ? 0 : ldexp(1, b - 1), hi = ldexp(1, b);
            return lo + (hi - lo) * (rank - (double)below) / (double)n;
        }
        below += n;
    }
    return ldexp(1, TL_CMDSTAT_BUCKETS - 1);
}

/* ---- LATENCY HISTOGRAM ---------------------------------------------------------------------- */

static void reply_histogram(struct tl_client *c, int id)
{
    struct tl_cmdstat s;
    tl_cmdstat_get(id, &s);
    char name[TL_CMD_FULL_NAME_BYTES];
    tl_command_stat_name(id, name, sizeof name);
    tl_reply_cstr(c, name);
    tl_reply_map(c, 2);
    tl_reply_cstr(c, "calls");
    tl_reply_int(c, (int64_t)s.calls);
    tl_reply_cstr(c, "histogram_usec");
    size_t used = 0;
    for (int b = 0; b < TL_CMDSTAT_BUCKETS; b++)
        used += s.hist[b] != 0;
    tl_reply_map(c, used);
    uint64_t upto = 0;
    for (int b = 0; b < TL_CMDSTAT_BUCKETS; b++) {
        if (!s.hist[b])
            continue;
        upto += s.hist[b];
        tl_reply_int(c, (int64_t)1 << b);
        tl_reply_int(c, (int64_t)upto);
    }
}

static bool has_calls(int id)
{
    struct tl_cmdstat s;
    tl_cmdstat_get(id, &s);
    return s.calls > 0;
}

/* LATENCY HISTOGRAM [command ...]: every command that ran, or those named ("client|list" for a
 * subcommand, "client" for every subcommand of CLIENT that ran); names that are no command, or
 * whose command never ran, are left out. */
static void latency_histogram(struct tl_client *c, struct tl_args *a)
{
    size_t n = tl_command_stat_count();
    int rounds = a->argc == 2 ? 1 : a->argc - 2; /* one for all, else one per name */
    int *ids = malloc((n * (size_t)rounds + 1) * sizeof *ids);
    if (!ids) {
        tl_reply_error(c, "ERR out of memory");
        return;
    }
    size_t k = 0;
    for (int r = 0; r < rounds; r++) {
        int named = -1; /* -1: every command */
        if (a->argc > 2 && (named = tl_command_stat_find(a->argv[2 + r], a->len[2 + r])) < 0)
            continue;
        for (size_t id = 0; id < n; id++)
            if ((named < 0 || (int)id == named || tl_command_stat_parent((int)id) == named) &&
                has_calls((int)id))
                ids[k++] = (int)id;
    }
    tl_reply_map(c, k);
    for (size_t i = 0; i < k; i++)
        reply_histogram(c, ids[i]);
    free(ids);
}

static void latency_help(struct tl_client *c, struct tl_args *a)
{
    (void)a;
    static const char *const lines[] = {
        "HISTOGRAM [<command> ...]",
        "    The latency histogram of the commands named (all that ran if none), in buckets of",
        "    powers of two of microseconds: for each bucket, the calls that took up to its",
        "    bound. CONFIG RESETSTAT zeroes them.",
        NULL,
    };
    tl_reply_help(c, "LATENCY", lines);
}

static const struct tl_command latency_subcommands[] = {
    {"histogram", -2, TL_CMD_ADMIN | TL_CMD_NOSCRIPT | TL_CMD_LOADING | TL_CMD_STALE, 0, 0, 0,
     latency_histogram, "server", "7.0.0",
     "Returns the cumulative distribution of latencies of a subset or all commands.",
     "O(N) where N is the number of commands with latency information being retrieved.",
     "[command [command ...]]", NULL},
    {"help", 2, TL_CMD_LOADING | TL_CMD_STALE, 0, 0, 0, latency_help, "server", "2.8.13",
     "Returns helpful text about the different subcommands.", "O(1)", "", NULL},
    {NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL},
};

static void cmd_latency(struct tl_client *c, struct tl_args *a)
{
    tl_run_subcommand(c, a, "latency", latency_subcommands);
}

const struct tl_command tl_commands_latency[] = {
    {"latency", -2, 0, 0, 0, 0, cmd_latency, "server", "2.8.13",
     "A container for latency diagnostics commands.", "Depends on subcommand.", "",
     latency_subcommands},
    {NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL},
};
