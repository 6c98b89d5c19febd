/*
 * info.c - the INFO command: the "# Section" text Redis 7.0 prints (server, clients, memory,
 * persistence, stats, replication, cpu, modules, commandstats, errorstats, latencystats, cluster,
 * keyspace), with the same field names, and Tally's own storage section (the LSM tree's
 * statistics).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "server.h"

#define TL_OPS_SAMPLE_MIN_MS 100 /* INFO's ops/sec: shortest interval worth measuring */
#define TL_INFO_MAX_SECTIONS 16

/* ---- INFO ------------------------------------------------------------------------------------ */

/* Bytes as Redis's *_human fields show them: 1.12M, 200B. */
static void human_bytes(char *out, size_t cap, uint64_t n)
{
    static const char units[] = "KMGTPE";
    double d = (double)n;
    if (n < 1024) {
        snprintf(out, cap, "%" PRIu64 "B", n);
        return;
    }
    int u = -1;
    while (d >= 1024 && u < (int)sizeof units - 2) {
        d /= 1024;
        u++;
    }
    snprintf(out, cap, "%.2f%c", d, units[u]);
}

/* What several sections share, gathered once per INFO. */
struct info_ctx {
    int64_t now_ms;
    struct tl_stats st;
    int st_rc; /* 1: not read yet */
};

static const struct tl_stats *info_stats(struct info_ctx *x)
{
    if (x->st_rc == 1)
        x->st_rc = tl_srv->db ? tl_db_stats(tl_srv->db, &x->st) : -EINVAL;
    return x->st_rc == 0 ? &x->st : NULL;
}

static void info_server(struct tl_buf *b, struct info_ctx *x)
{
    struct utsname u;
    char exe[4096] = "";
    if (uname(&u) != 0)
        memset(&u, 0, sizeof u);
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = '\0';
    int64_t up_s = (x->now_ms - tl_srv->start_ms) / 1000;
    struct timeval tv;
    gettimeofday(&tv, NULL);

    tl_buf_printf(b, "redis_version:%s\r\n", TL_REDIS_COMPAT_VERSION);
    tl_buf_printf(b, "tally_version:%s\r\n", TL_VERSION_STRING);
    tl_buf_printf(b, "redis_git_sha1:00000000\r\nredis_git_dirty:0\r\n");
    tl_buf_printf(b, "redis_mode:standalone\r\n");
    tl_buf_printf(b, "os:%s %s %s\r\n", u.sysname, u.release, u.machine);
    tl_buf_printf(b, "arch_bits:%zu\r\n", sizeof(void *) * 8);
    tl_buf_printf(b, "monotonic_clock:POSIX clock_gettime\r\n");
    tl_buf_printf(b, "multiplexing_api:io_uring\r\n");
    tl_buf_printf(b, "atomicvar_api:c11-builtin\r\n");
#ifdef __GNUC__
    tl_buf_printf(b, "gcc_version:%d.%d.%d\r\n", __GNUC__, __GNUC_MINOR__, __GNUC_PATCHLEVEL__);
#endif
    tl_buf_printf(b, "process_id:%ld\r\n", (long)getpid());
    tl_buf_printf(b, "process_supervised:no\r\n");
    tl_buf_printf(b, "run_id:%s\r\n", tl_srv->run_id);
    pthread_mutex_lock(&tl_srv->cfg_lock);
    int port = tl_srv->cfg.port;
    pthread_mutex_unlock(&tl_srv->cfg_lock);
    tl_buf_printf(b, "tcp_port:%d\r\n", port);
    tl_buf_printf(b, "server_time_usec:%lld\r\n",
                  (long long)tv.tv_sec * 1000000 + (long long)tv.tv_usec);
    tl_buf_printf(b, "uptime_in_seconds:%" PRId64 "\r\n", up_s);
    tl_buf_printf(b, "uptime_in_days:%" PRId64 "\r\n", up_s / 86400);
    tl_buf_printf(b, "executable:%s\r\n", exe);
    tl_buf_printf(b, "config_file:%s\r\n", tl_srv->config_file);
    tl_buf_printf(b, "io_threads_active:%d\r\n", tl_srv->n_workers);
}

static void info_clients(struct tl_buf *b, struct info_ctx *x)
{
    pthread_mutex_lock(&tl_srv->clients_lock);
    size_t n = tl_srv->n_clients;
    pthread_mutex_unlock(&tl_srv->clients_lock);
    pthread_mutex_lock(&tl_srv->cfg_lock);
    int maxclients = tl_srv->cfg.maxclients;
    pthread_mutex_unlock(&tl_srv->cfg_lock);
    tl_buf_printf(b, "connected_clients:%zu\r\n", n);
    tl_buf_printf(b, "cluster_connections:0\r\n");
    tl_buf_printf(b, "maxclients:%d\r\n", maxclients);
    tl_buf_printf(b, "blocked_clients:0\r\n");
    tl_buf_printf(b, "tracking_clients:0\r\n");
    tl_buf_printf(b, "clients_in_timeout_table:0\r\n");
}

/* Resident set size from /proc/self/statm (0 if it cannot be read). */
static uint64_t rss_bytes(void)
{
    unsigned long long pages_total = 0, pages_rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return 0;
    if (fscanf(f, "%llu %llu", &pages_total, &pages_rss) != 2)
        pages_rss = 0;
    fclose(f);
    return (uint64_t)pages_rss * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void info_memory(struct tl_buf *b, struct info_ctx *x)
{
    char h[32];
    struct mallinfo2 mi = mallinfo2();
    uint64_t used = (uint64_t)mi.uordblks + (uint64_t)mi.hblkhd;
    uint64_t rss = rss_bytes();
    uint64_t sys = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);

    tl_buf_printf(b, "used_memory:%" PRIu64 "\r\n", used);
    human_bytes(h, sizeof h, used);
    tl_buf_printf(b, "used_memory_human:%s\r\n", h);
    tl_buf_printf(b, "used_memory_rss:%" PRIu64 "\r\n", rss);
    human_bytes(h, sizeof h, rss);
    tl_buf_printf(b, "used_memory_rss_human:%s\r\n", h);
    tl_buf_printf(b, "total_system_memory:%" PRIu64 "\r\n", sys);
    human_bytes(h, sizeof h, sys);
    tl_buf_printf(b, "total_system_memory_human:%s\r\n", h);
    tl_buf_printf(b, "maxmemory:0\r\nmaxmemory_human:0B\r\nmaxmemory_policy:noeviction\r\n");
    tl_buf_printf(b, "mem_allocator:libc\r\n");
    const struct tl_stats *st = info_stats(x);
    if (st) {
        tl_buf_printf(b, "memtable_bytes:%" PRIu64 "\r\n", st->memtable_bytes);
        tl_buf_printf(b, "block_cache_bytes:%" PRIu64 "\r\n", st->block_cache_bytes);
    }
}

static const char *fsync_name(enum tl_fsync_mode m)
{
    switch (m) {
    case TL_FSYNC_NO:
        return "no";
    case TL_FSYNC_ALWAYS:
        return "always";
    case TL_FSYNC_EVERYSEC:
    default:
        return "everysec";
    }
}

/* Tally has no RDB snapshots: every write is in the WAL, so it reports itself as an AOF server
 * that never rewrites and whose "last save" is its start. */
static void info_persistence(struct tl_buf *b, struct info_ctx *x)
{
    pthread_mutex_lock(&tl_srv->cfg_lock);
    enum tl_fsync_mode fs = tl_srv->cfg.fsync;
    pthread_mutex_unlock(&tl_srv->cfg_lock);
    tl_buf_printf(b, "loading:0\r\nasync_loading:0\r\n");
    tl_buf_printf(b, "rdb_changes_since_last_save:0\r\nrdb_bgsave_in_progress:0\r\n");
    tl_buf_printf(b, "rdb_last_save_time:%" PRId64 "\r\n", tl_srv->start_ms / 1000);
    tl_buf_printf(b, "rdb_last_bgsave_status:ok\r\n");
    tl_buf_printf(b, "aof_enabled:1\r\naof_rewrite_in_progress:0\r\naof_rewrite_scheduled:0\r\n");
    tl_buf_printf(b, "aof_last_write_status:ok\r\n");
    tl_buf_printf(b, "wal_fsync:%s\r\n", fsync_name(fs));
    const struct tl_stats *st = info_stats(x);
    if (st) {
        tl_buf_printf(b, "wal_bytes:%" PRIu64 "\r\n", st->wal_bytes);
        tl_buf_printf(b, "wal_syncs:%" PRIu64 "\r\n", st->wal_syncs);
        tl_buf_printf(b, "last_seq:%" PRIu64 "\r\n", st->last_seq);
    }
    if (tl_srv->db) {
        tl_buf_printf(b, "written_seq:%" PRIu64 "\r\n", tl_db_written_seq(tl_srv->db));
        tl_buf_printf(b, "durable_seq:%" PRIu64 "\r\n", tl_db_durable_seq(tl_srv->db));
    }
}

/* Commands per second between this INFO and the previous one (at least TL_OPS_SAMPLE_MIN_MS
 * apart; the first INFO averages since the start). Simple, and exact for a monitor that polls. */
static uint64_t ops_per_sec(int64_t now_ms)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static int64_t sample_ms;
    static uint64_t sample_count, rate;
    uint64_t total = atomic_load(&tl_srv->total_commands);

    pthread_mutex_lock(&lock);
    if (sample_ms == 0 || total < sample_count) {
        int64_t span = now_ms - tl_srv->start_ms;
        rate = span > 0 ? total * 1000 / (uint64_t)span : 0;
        sample_ms = now_ms;
        sample_count = total;
    } else if (now_ms - sample_ms >= TL_OPS_SAMPLE_MIN_MS) {
        rate = (total - sample_count) * 1000 / (uint64_t)(now_ms - sample_ms);
        sample_ms = now_ms;
        sample_count = total;
    }
    uint64_t r = rate;
    pthread_mutex_unlock(&lock);
    return r;
}

static void info_stats_section(struct tl_buf *b, struct info_ctx *x)
{
    struct tl_server *s = tl_srv;
    tl_buf_printf(b, "total_connections_received:%" PRIu64 "\r\n",
                  atomic_load(&s->total_connections));
    tl_buf_printf(b, "total_commands_processed:%" PRIu64 "\r\n", atomic_load(&s->total_commands));
    tl_buf_printf(b, "instantaneous_ops_per_sec:%" PRIu64 "\r\n", ops_per_sec(x->now_ms));
    tl_buf_printf(b, "total_net_input_bytes:%" PRIu64 "\r\n", atomic_load(&s->net_input_bytes));
    tl_buf_printf(b, "total_net_output_bytes:%" PRIu64 "\r\n", atomic_load(&s->net_output_bytes));
    tl_buf_printf(b, "rejected_connections:%" PRIu64 "\r\n", atomic_load(&s->rejected_connections));
    tl_buf_printf(b, "expired_keys:%" PRIu64 "\r\n", atomic_load(&s->expired_keys));
    tl_buf_printf(b, "evicted_keys:0\r\nevicted_clients:0\r\n");
    tl_buf_printf(b, "keyspace_hits:%" PRIu64 "\r\n", atomic_load(&s->keyspace_hits));
    tl_buf_printf(b, "keyspace_misses:%" PRIu64 "\r\n", atomic_load(&s->keyspace_misses));
    tl_buf_printf(b, "pubsub_channels:0\r\npubsub_patterns:0\r\n");
    tl_buf_printf(b, "client_output_buffer_limit_disconnections:%" PRIu64 "\r\n",
                  atomic_load(&s->output_limit_disconnections));
    tl_buf_printf(b, "protocol_errors:%" PRIu64 "\r\n", atomic_load(&s->protocol_errors));
    tl_buf_printf(b, "unexpected_error_replies:0\r\ntotal_error_replies:%" PRIu64 "\r\n",
                  tl_errorstat_total());
}

static void info_replication(struct tl_buf *b, struct info_ctx *x)
{
    tl_buf_printf(b, "role:master\r\nconnected_slaves:0\r\nmaster_failover_state:no-failover\r\n");
    tl_buf_printf(b, "master_replid:%s\r\n", tl_srv->run_id);
    tl_buf_printf(b, "master_replid2:0000000000000000000000000000000000000000\r\n");
    tl_buf_printf(b, "master_repl_offset:0\r\nsecond_repl_offset:-1\r\n");
    tl_buf_printf(b, "repl_backlog_active:0\r\nrepl_backlog_size:0\r\n");
    tl_buf_printf(b, "repl_backlog_first_byte_offset:0\r\nrepl_backlog_histlen:0\r\n");
}

static void info_cpu(struct tl_buf *b, struct info_ctx *x)
{
    struct rusage self = {0}, kids = {0};
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &kids);
    tl_buf_printf(b, "used_cpu_sys:%ld.%06ld\r\n", (long)self.ru_stime.tv_sec,
                  (long)self.ru_stime.tv_usec);
    tl_buf_printf(b, "used_cpu_user:%ld.%06ld\r\n", (long)self.ru_utime.tv_sec,
                  (long)self.ru_utime.tv_usec);
    tl_buf_printf(b, "used_cpu_sys_children:%ld.%06ld\r\n", (long)kids.ru_stime.tv_sec,
                  (long)kids.ru_stime.tv_usec);
    tl_buf_printf(b, "used_cpu_user_children:%ld.%06ld\r\n", (long)kids.ru_utime.tv_sec,
                  (long)kids.ru_utime.tv_usec);
}

static void info_modules(struct tl_buf *b, struct info_ctx *x) {}

static void info_cluster(struct tl_buf *b, struct info_ctx *x)
{
    tl_buf_printf(b, "cluster_enabled:0\r\n");
}

/* One line per database that has keys. Counting walks every key, once for all databases
 * (O(keys), as DBSIZE of every database at once): INFO keyspace, and INFO or INFO all, cost that
 * much. expires counts the keys with a time to live (windowed series have one of their own),
 * avg_ttl is their mean time to live in milliseconds (exact, where Redis estimates it). Keys of
 * a database at or past `databases` (left by a run with more) are shown too: they are stored. */
static void info_keyspace(struct tl_buf *b, struct info_ctx *x)
{
    struct tl_keyspace_counts counts[TL_DATABASES_MAX];
    if (!tl_srv->db || tl_keyspace_count_all(tl_srv->db, tl_now_ms(), counts) < 0)
        return;
    for (int db = 0; db < TL_DATABASES_MAX; db++) {
        const struct tl_keyspace_counts *c = &counts[db];
        if (c->keys > 0)
            tl_buf_printf(b, "db%d:keys=%" PRIu64 ",expires=%" PRIu64 ",avg_ttl=%" PRIu64 "\r\n",
                          db, c->keys, c->expires,
                          c->expires ? (uint64_t)(c->ttl_ms_sum / (double)c->expires) : 0);
    }
}

/* Tally's own section: the LSM tree (DESIGN.md section 2). */
static void info_storage(struct tl_buf *b, struct info_ctx *x)
{
    const struct tl_stats *st = info_stats(x);
    if (!st) {
        tl_buf_printf(b, "storage_error:%s\r\n", tl_srv->db ? tl_last_error() : "no database");
        return;
    }
    tl_buf_printf(b, "memtables:%" PRIu64 "\r\n", st->memtables);
    tl_buf_printf(b, "memtable_bytes:%" PRIu64 "\r\n", st->memtable_bytes);
    tl_buf_printf(b, "memtable_entries:%" PRIu64 "\r\n", st->memtable_entries);
    tl_buf_printf(b, "levels:%d\r\n", st->num_levels);
    for (int i = 0; i < st->num_levels && i < TL_MAX_LEVELS; i++) {
        const struct tl_level_stats *l = &st->levels[i];
        double ratio = l->bytes ? (double)l->raw_bytes / (double)l->bytes : 0.0;
        tl_buf_printf(b,
                      "level%d:files=%" PRIu64 ",bytes=%" PRIu64 ",raw_bytes=%" PRIu64
                      ",compression_ratio=%.2f,entries=%" PRIu64 "\r\n",
                      i, l->files, l->bytes, l->raw_bytes, ratio, l->entries);
    }
    tl_buf_printf(b, "flushes:%" PRIu64 "\r\n", st->flushes);
    tl_buf_printf(b, "flush_bytes:%" PRIu64 "\r\n", st->flush_bytes);
    tl_buf_printf(b, "compactions:%" PRIu64 "\r\n", st->compactions);
    tl_buf_printf(b, "compaction_bytes_read:%" PRIu64 "\r\n", st->compaction_bytes_read);
    tl_buf_printf(b, "compaction_bytes_written:%" PRIu64 "\r\n", st->compaction_bytes_written);
    tl_buf_printf(b, "entries_dropped:%" PRIu64 "\r\n", st->entries_dropped);
    tl_buf_printf(b, "write_amplification:%.2f\r\n", st->write_amplification);
    uint64_t lookups = st->block_cache_hits + st->block_cache_misses;
    tl_buf_printf(b, "block_cache_bytes:%" PRIu64 "\r\n", st->block_cache_bytes);
    tl_buf_printf(b, "block_cache_hits:%" PRIu64 "\r\n", st->block_cache_hits);
    tl_buf_printf(b, "block_cache_misses:%" PRIu64 "\r\n", st->block_cache_misses);
    tl_buf_printf(b, "block_cache_hit_ratio:%.4f\r\n",
                  lookups ? (double)st->block_cache_hits / (double)lookups : 0.0);
    tl_buf_printf(b, "stall_slowdowns:%" PRIu64 "\r\n", st->stall_slowdowns);
    tl_buf_printf(b, "stall_stops:%" PRIu64 "\r\n", st->stall_stops);
}

static const char *const type_names[] = {"string", "window", "window-sketch", "window-hll",
                                         "ratelimit"};
#define N_TYPES (sizeof type_names / sizeof type_names[0])

static int count_type(void *arg, int db, tl_iter *it)
{
    (void)db;
    uint64_t *counts = arg;
    struct tl_val v;
    int rc = tl_iter_value(it, &v);
    if (rc < 0)
        return rc;
    const char *name = tl_type_name(&v);
    for (size_t i = 0; i < N_TYPES; i++)
        if (strcmp(name, type_names[i]) == 0)
            counts[i]++;
    tl_val_clear(&v);
    return 0;
}

/* Tally's key types: how many keys of each (a walk of every key and value, so only in INFO
 * types, all or everything), and the window policies defined. */
static void info_types(struct tl_buf *b, struct info_ctx *x)
{
    (void)x;
    static const char *const fields[N_TYPES] = {"keys_string", "keys_window", "keys_window_sketch",
                                                "keys_window_hll", "keys_ratelimit"};
    uint64_t counts[N_TYPES] = {0};
    if (!tl_srv->db || tl_keyspace_walk(tl_srv->db, count_type, counts) < 0)
        return;
    for (size_t i = 0; i < N_TYPES; i++)
        tl_buf_printf(b, "%s:%" PRIu64 "\r\n", fields[i], counts[i]);
    tl_buf_printf(b, "window_policies:%zu\r\n", tl_window_policy_count());
}

/* commandstats and latencystats: a line for each command that ran (or, for commandstats, was
 * refused) since the last CONFIG RESETSTAT, in Redis's form (cmdstats.c counts them). */
static void commandstat_line(struct tl_buf *b, const char *name, const struct tl_cmdstat *s)
{
    tl_buf_printf(b,
                  "cmdstat_%s:calls=%" PRIu64 ",usec=%" PRIu64 ",usec_per_call=%.2f,"
                  "rejected_calls=%" PRIu64 ",failed_calls=%" PRIu64 "\r\n",
                  name, s->calls, s->usec, s->calls ? (double)s->usec / (double)s->calls : 0.0,
                  s->rejected, s->failed);
}

static void latencystat_line(struct tl_buf *b, const char *name, const struct tl_cmdstat *s)
{
    if (s->calls)
        tl_buf_printf(b, "latency_percentiles_usec_%s:p50=%.3f,p99=%.3f,p99.9=%.3f\r\n", name,
                      tl_cmdstat_percentile(s, 50), tl_cmdstat_percentile(s, 99),
                      tl_cmdstat_percentile(s, 99.9));
}

static void each_cmdstat(struct tl_buf *b, void (*line)(struct tl_buf *b, const char *name,
                                                        const struct tl_cmdstat *s))
{
    char name[TL_CMD_FULL_NAME_BYTES];
    for (size_t id = 0; id < tl_command_stat_count(); id++) {
        struct tl_cmdstat s;
        tl_cmdstat_get((int)id, &s);
        if (!s.calls && !s.rejected)
            continue;
        tl_command_stat_name((int)id, name, sizeof name);
        line(b, name, &s);
    }
}

static void info_commandstats(struct tl_buf *b, struct info_ctx *x)
{
    (void)x;
    each_cmdstat(b, commandstat_line);
}

/* errorstats: a line for each error code sent since the last CONFIG RESETSTAT, in byte order
 * of the code, as Redis lists them. */
static void info_errorstats(struct tl_buf *b, struct info_ctx *x)
{
    (void)x;
    struct tl_errorstat e[TL_ERRORSTAT_CODES];
    size_t n = tl_errorstat_list(e, TL_ERRORSTAT_CODES);
    for (size_t i = 0; i < n; i++)
        tl_buf_printf(b, "errorstat_%s:count=%" PRIu64 "\r\n", e[i].code, e[i].count);
}

static void info_latencystats(struct tl_buf *b, struct info_ctx *x)
{
    (void)x;
    each_cmdstat(b, latencystat_line);
}

struct info_section {
    const char *name;  /* as INFO's argument */
    const char *title; /* as its "# Title" line */
    bool in_default;
    void (*fn)(struct tl_buf *b, struct info_ctx *x);
};

/* In the order INFO prints them, whatever the order of the arguments (as Redis). */
static const struct info_section info_sections[] = {
    {"server", "Server", true, info_server},
    {"clients", "Clients", true, info_clients},
    {"memory", "Memory", true, info_memory},
    {"persistence", "Persistence", true, info_persistence},
    {"stats", "Stats", true, info_stats_section},
    {"replication", "Replication", true, info_replication},
    {"cpu", "CPU", true, info_cpu},
    {"modules", "Modules", true, info_modules},
    {"commandstats", "Commandstats", false, info_commandstats},
    {"errorstats", "Errorstats", true, info_errorstats},
    {"latencystats", "Latencystats", false, info_latencystats},
    {"cluster", "Cluster", true, info_cluster},
    {"keyspace", "Keyspace", true, info_keyspace},
    {"storage", "Storage", true, info_storage},
    {"types", "Types", false, info_types},
};
#define TL_N_INFO_SECTIONS (sizeof info_sections / sizeof info_sections[0])
_Static_assert(TL_N_INFO_SECTIONS <= TL_INFO_MAX_SECTIONS, "raise TL_INFO_MAX_SECTIONS");

/* Marks the sections INFO's arguments ask for: none means "default"; "all" and "everything"
 * mean every section; unknown names select nothing. */
static void info_select(const struct tl_args *a, int first, bool *want)
{
    memset(want, 0, sizeof(bool) * TL_N_INFO_SECTIONS);
    if (a->argc <= first) {
        for (size_t s = 0; s < TL_N_INFO_SECTIONS; s++)
            want[s] = info_sections[s].in_default;
        return;
    }
    for (int i = first; i < a->argc; i++) {
        bool all = tl_arg_eq(a->argv[i], a->len[i], "all") ||
                   tl_arg_eq(a->argv[i], a->len[i], "everything");
        bool dflt = tl_arg_eq(a->argv[i], a->len[i], "default");
        for (size_t s = 0; s < TL_N_INFO_SECTIONS; s++)
            if (all || (dflt && info_sections[s].in_default) ||
                tl_arg_eq(a->argv[i], a->len[i], info_sections[s].name))
                want[s] = true;
    }
}

/* Builds INFO's text for the selected sections: "# Title" and "field:value" lines, sections
 * separated by an empty line. */
static void info_render(struct tl_buf *b, const bool *want, int64_t now_ms)
{
    struct info_ctx x = {.now_ms = now_ms, .st_rc = 1};
    bool first = true;
    for (size_t s = 0; s < TL_N_INFO_SECTIONS; s++) {
        if (!want[s])
            continue;
        if (!first)
            tl_buf_printf(b, "\r\n");
        first = false;
        tl_buf_printf(b, "# %s\r\n", info_sections[s].title);
        info_sections[s].fn(b, &x);
    }
}

static void cmd_info(struct tl_client *c, struct tl_args *a)
{
    bool want[TL_INFO_MAX_SECTIONS];
    struct tl_buf b = {0};
    info_select(a, 1, want);
    info_render(&b, want, tl_now_ms());
    tl_reply_verbatim(c, b.data ? b.data : "", b.len);
    tl_buf_free(&b);
}

/* ---- the table ------------------------------------------------------------------------------- */

const struct tl_command tl_commands_info[] = {
    {"info", -1, TL_CMD_LOADING | TL_CMD_STALE, 0, 0, 0, cmd_info, "server", "1.0.0",
     "Returns information and statistics about the server.",
     "O(1), and O(keys) for the keyspace section", "[section [section ...]]", NULL},
    {NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL},
};
