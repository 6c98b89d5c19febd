/*
 * live.c - tallyctl's subcommands that act on a database: stats, compact and checkpoint on a
 * running tallyd (through INFO storage and the TALLY command, see server/commands_admin.c), and
 * compact --dir, which opens a stopped server's directory with the engine itself.
 *
 * compact --wait polls TALLY COMPACT STATUS every CTL_POLL_MS and draws its bytes done against
 * the total; the server runs the compaction whether or not anyone watches.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tallyctl.h"
#include "tallystore.h"

#define CTL_POLL_MS      200
#define CTL_INFO_FIELDS  64
#define CTL_MAX_KEY_ARGS 2

/* ---- INFO storage ------------------------------------------------------------------------- */

struct info_field {
    const char *name, *value;
};

struct info {
    struct ctl_reply reply; /* its text is cut into the fields in place */
    struct info_field f[CTL_INFO_FIELDS];
    size_t n;
};

static const char *info_get(const struct info *in, const char *name)
{
    for (size_t i = 0; i < in->n; i++)
        if (strcmp(in->f[i].name, name) == 0)
            return in->f[i].value;
    return NULL;
}

static unsigned long long info_u64(const struct info *in, const char *name)
{
    const char *v = info_get(in, name);
    return v ? strtoull(v, NULL, 10) : 0;
}

/* "files=2,bytes=..." -> the number after "key=". */
static unsigned long long level_field(const char *line, const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = line; p && *p; p = strchr(p, ',')) {
        if (*p == ',')
            p++;
        if (strncmp(p, key, kl) == 0 && p[kl] == '=')
            return strtoull(p + kl + 1, NULL, 10);
    }
    return 0;
}

static int info_load(struct ctl_conn *c, struct info *in)
{
    memset(in, 0, sizeof *in);
    const char *argv[] = {"INFO", "storage"};
    if (ctl_command(c, &in->reply, 2, argv) < 0) {
        fprintf(stderr, "tallyctl: %s\n", c->err);
        return -1;
    }
    if (in->reply.type != CTL_REPLY_BULK) {
        fprintf(stderr, "tallyctl: %s: INFO storage failed: %s\n", c->where,
                in->reply.str ? in->reply.str : "not a bulk reply");
        return -1;
    }
    for (char *line = strtok(in->reply.str, "\r\n"); line && in->n < CTL_INFO_FIELDS;
         line = strtok(NULL, "\r\n")) {
        char *colon = strchr(line, ':');
        if (line[0] == '#' || !colon)
            continue;
        *colon = '\0';
        in->f[in->n].name = line;
        in->f[in->n++].value = colon + 1;
    }
    if (!info_get(in, "levels")) {
        const char *err = info_get(in, "storage_error");
        fprintf(stderr, "tallyctl: %s: INFO storage has no levels field%s%s (is it tallyd?)\n",
                c->where, err ? ": " : "", err ? err : "");
        return -1;
    }
    return 0;
}

static int connect_or_report(struct ctl_conn *c, const struct ctl_opts *o)
{
    if (ctl_connect(c, o) == 0)
        return 0;
    fprintf(stderr, "tallyctl: %s\n", c->err);
    ctl_close(c);
    return -1;
}

int ctl_cmd_stats(const struct ctl_opts *o, int argc, char **argv)
{
    if (argc > 1)
        return ctl_usage_error("stats: unexpected argument '%s'", argv[1]);
    struct ctl_conn c;
    struct info in;
    if (connect_or_report(&c, o) < 0)
        return CTL_EXIT_FAIL;
    if (info_load(&c, &in) < 0) {
        ctl_reply_free(&in.reply);
        ctl_close(&c);
        return CTL_EXIT_FAIL;
    }
    char a[32], b[32], d[32];
    printf("storage of %s\n\n", c.where);
    printf("%-6s %7s %12s %12s %7s %14s\n", "level", "files", "bytes", "raw bytes", "ratio",
           "keys (est.)");
    int levels = (int)info_u64(&in, "levels");
    unsigned long long files = 0, bytes = 0, raw = 0, keys = 0;
    for (int l = 0; l < levels && l < TL_MAX_LEVELS; l++) {
        char name[16];
        snprintf(name, sizeof name, "level%d", l);
        const char *line = info_get(&in, name);
        if (!line)
            continue;
        unsigned long long lf = level_field(line, "files"), lb = level_field(line, "bytes");
        unsigned long long lr = level_field(line, "raw_bytes"), le = level_field(line, "entries");
        ctl_format_bytes(a, sizeof a, lb);
        ctl_format_bytes(b, sizeof b, lr);
        printf("L%-5d %7llu %12s %12s %7.2f %14llu\n", l, lf, a, b, lb ? (double)lr / lb : 0.0, le);
        files += lf;
        bytes += lb;
        raw += lr;
        keys += le;
    }
    ctl_format_bytes(a, sizeof a, bytes);
    ctl_format_bytes(b, sizeof b, raw);
    printf("%-6s %7llu %12s %12s %7.2f %14llu\n\n", "total", files, a, b,
           bytes ? (double)raw / bytes : 0.0, keys);

    ctl_format_bytes(a, sizeof a, info_u64(&in, "memtable_bytes"));
    printf("memtables:           %llu (active + frozen), %s, %llu entries\n",
           info_u64(&in, "memtables"), a, info_u64(&in, "memtable_entries"));
    ctl_format_bytes(a, sizeof a, info_u64(&in, "flush_bytes"));
    printf("flushes:             %llu, %s written\n", info_u64(&in, "flushes"), a);
    ctl_format_bytes(a, sizeof a, info_u64(&in, "compaction_bytes_read"));
    ctl_format_bytes(b, sizeof b, info_u64(&in, "compaction_bytes_written"));
    printf("compactions:         %llu, %s read, %s written, %llu entries dropped\n",
           info_u64(&in, "compactions"), a, b, info_u64(&in, "entries_dropped"));
    const char *wa = info_get(&in, "write_amplification");
    printf("write amplification: %s (bytes written by flushes and compactions / by flushes)\n",
           wa ? wa : "?");
    ctl_format_bytes(d, sizeof d, info_u64(&in, "block_cache_bytes"));
    const char *hr = info_get(&in, "block_cache_hit_ratio");
    printf("block cache:         %s cached, hit ratio %s (%llu hits, %llu misses)\n", d,
           hr ? hr : "?", info_u64(&in, "block_cache_hits"), info_u64(&in, "block_cache_misses"));
    printf("write stalls:        %llu slowed, %llu stopped (too many level-0 tables)\n",
           info_u64(&in, "stall_slowdowns"), info_u64(&in, "stall_stops"));
    ctl_reply_free(&in.reply);
    ctl_close(&c);
    return CTL_EXIT_OK;
}

/* ---- compact ------------------------------------------------------------------------------ */

struct compact_args {
    long long level; /* -1: every level */
    const char *from, *to;
    bool wait, status;
    const char *dir;
};

static int parse_compact(int argc, char **argv, struct compact_args *a)
{
    memset(a, 0, sizeof *a);
    a->level = -1;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (strcmp(s, "--level") == 0 && i + 1 < argc) {
            if (!ctl_parse_count("--level", argv[++i], TL_MAX_LEVELS - 1, &a->level))
                return CTL_EXIT_USAGE;
        } else if (strcmp(s, "--range") == 0 && i + 2 < argc) {
            a->from = argv[++i];
            a->to = argv[++i];
        } else if (strcmp(s, "--wait") == 0) {
            a->wait = true;
        } else if (strcmp(s, "--status") == 0) {
            a->status = true;
        } else if (strcmp(s, "--dir") == 0 && i + 1 < argc) {
            a->dir = argv[++i];
        } else {
            return ctl_usage_error("compact: unexpected argument '%s'%s", s,
                                   strcmp(s, "--range") == 0 ? " (--range FROM TO)" : "");
        }
    }
    if (a->status && (a->wait || a->from || a->level >= 0 || a->dir))
        return ctl_usage_error("compact --status takes no other option");
    if (a->dir && (a->from || a->wait))
        return ctl_usage_error("compact --dir takes only --level: it always waits, and keys in "
                               "a data directory carry the server's database prefix (use "
                               "--range on a live server)");
    return 0;
}

/* Reads TALLY COMPACT STATUS into the fields tallyctl uses. */
struct compact_status {
    long long id, done, total, elapsed_ms;
    char state[16];
    char error[512];
};

static int read_status(struct ctl_conn *c, struct compact_status *s)
{
    struct ctl_reply r;
    const char *argv[] = {"TALLY", "COMPACT", "STATUS"};
    if (ctl_command(c, &r, 3, argv) < 0) {
        fprintf(stderr, "tallyctl: %s\n", c->err);
        return -1;
    }
    const struct ctl_reply *id = ctl_reply_field(&r, "id"), *st = ctl_reply_field(&r, "state");
    const struct ctl_reply *done = ctl_reply_field(&r, "done_bytes");
    const struct ctl_reply *total = ctl_reply_field(&r, "total_bytes");
    const struct ctl_reply *el = ctl_reply_field(&r, "elapsed_ms");
    const struct ctl_reply *err = ctl_reply_field(&r, "error");
    if (!id || !st || !st->str || !done || !total || !el) {
        fprintf(stderr, "tallyctl: %s: unexpected reply to TALLY COMPACT STATUS: %s\n", c->where,
                r.str ? r.str : "fields missing");
        ctl_reply_free(&r);
        return -1;
    }
    s->id = id->integer;
    s->done = done->integer;
    s->total = total->integer;
    s->elapsed_ms = el->integer;
    snprintf(s->state, sizeof s->state, "%s", st->str);
    snprintf(s->error, sizeof s->error, "%s", err && err->str ? err->str : "");
    ctl_reply_free(&r);
    return 0;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static int wait_compaction(struct ctl_conn *c, long long id)
{
    struct ctl_progress bar;
    ctl_progress_init(&bar, "compact");
    struct compact_status s;
    for (;;) {
        if (read_status(c, &s) < 0)
            return CTL_EXIT_FAIL;
        if (s.id != id) {
            ctl_progress_end(&bar);
            fprintf(stderr,
                    "tallyctl: %s: the server reports compaction %lld, not %lld (was it "
                    "restarted?)\n",
                    c->where, s.id, id);
            return CTL_EXIT_FAIL;
        }
        ctl_progress_update(&bar, (uint64_t)s.done, (uint64_t)s.total);
        if (strcmp(s.state, "running") != 0)
            break;
        sleep_ms(CTL_POLL_MS);
    }
    ctl_progress_end(&bar);
    if (strcmp(s.state, "done") != 0) {
        fprintf(stderr, "tallyctl: %s: compaction %lld %s: %s\n", c->where, id, s.state, s.error);
        return CTL_EXIT_FAIL;
    }
    char b[32];
    ctl_format_bytes(b, sizeof b, (uint64_t)s.total);
    if (s.total == 0)
        printf("compaction %lld done: no table to compact\n", id);
    else
        printf("compaction %lld done: %s of tables compacted in %.3f s\n", id, b,
               (double)s.elapsed_ms / 1000.0);
    return CTL_EXIT_OK;
}

static int compact_offline(const struct compact_args *a)
{
    if (!ctl_is_data_dir(a->dir))
        return CTL_EXIT_FAIL;
    struct tl_options o;
    tl_options_init(&o);
    o.background_compaction = false; /* only the compaction asked for */
    tl_db *db;
    int rc = tl_db_open(a->dir, &o, &db);
    if (rc < 0) {
        fprintf(stderr, "tallyctl: cannot open the database in %s: %s%s\n", a->dir,
                tl_last_error()[0] ? tl_last_error() : tl_strerror(rc),
                rc == TL_ELOCKED ? " (is tallyd running on it? then compact without --dir)" : "");
        return CTL_EXIT_FAIL;
    }
    struct ctl_progress bar;
    ctl_progress_init(&bar, "compact");
    rc = a->level < 0
             ? tl_db_compact_range_progress(db, NULL, 0, NULL, 0, ctl_progress_cb, &bar)
             : tl_db_compact_level(db, (int)a->level, NULL, 0, NULL, 0, ctl_progress_cb, &bar);
    ctl_progress_end(&bar);
    if (rc < 0)
        fprintf(stderr, "tallyctl: compacting %s failed: %s\n", a->dir,
                tl_last_error()[0] ? tl_last_error() : tl_strerror(rc));
    int crc = tl_db_close(db);
    if (crc < 0 && rc == 0) {
        fprintf(stderr, "tallyctl: closing %s failed: %s\n", a->dir, tl_last_error());
        rc = crc;
    }
    if (rc < 0)
        return CTL_EXIT_FAIL;
    printf("compacted %s\n", a->dir);
    return CTL_EXIT_OK;
}

int ctl_cmd_compact(const struct ctl_opts *o, int argc, char **argv)
{
    struct compact_args a;
    int rc = parse_compact(argc, argv, &a);
    if (rc != 0)
        return rc;
    if (a.dir)
        return compact_offline(&a);
    struct ctl_conn c;
    if (connect_or_report(&c, o) < 0)
        return CTL_EXIT_FAIL;
    if (a.status) {
        struct compact_status s;
        rc = read_status(&c, &s) < 0 ? CTL_EXIT_FAIL : CTL_EXIT_OK;
        if (rc == CTL_EXIT_OK)
            printf("compaction %lld: %s, %lld of %lld bytes, %lld ms%s%s\n", s.id, s.state, s.done,
                   s.total, s.elapsed_ms, s.error[0] ? ", error: " : "", s.error);
        ctl_close(&c);
        return rc;
    }
    char level[24];
    const char *args[8] = {"TALLY", "COMPACT"};
    int n = 2;
    if (a.level >= 0) {
        snprintf(level, sizeof level, "%lld", a.level);
        args[n++] = "LEVEL";
        args[n++] = level;
    }
    if (a.from) {
        args[n++] = "RANGE";
        args[n++] = a.from;
        args[n++] = a.to;
    }
    struct ctl_reply r;
    if (ctl_command(&c, &r, n, args) < 0) {
        fprintf(stderr, "tallyctl: %s\n", c.err);
        ctl_close(&c);
        return CTL_EXIT_FAIL;
    }
    if (r.type != CTL_REPLY_INT) {
        fprintf(stderr, "tallyctl: %s: the server did not start the compaction: %s\n", c.where,
                r.str ? r.str : "unexpected reply");
        ctl_reply_free(&r);
        ctl_close(&c);
        return CTL_EXIT_FAIL;
    }
    long long id = r.integer;
    ctl_reply_free(&r);
    if (a.wait) {
        rc = wait_compaction(&c, id);
    } else {
        printf("compaction %lld started on %s; tallyctl compact --status shows its progress\n", id,
               c.where);
        rc = CTL_EXIT_OK;
    }
    ctl_close(&c);
    return rc;
}

/* ---- checkpoint --------------------------------------------------------------------------- */

int ctl_cmd_checkpoint(const struct ctl_opts *o, int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-' || argv[1][0] == '\0')
        return ctl_usage_error("checkpoint needs one destination: checkpoint DEST");
    /* A relative DEST is taken from here: the server resolves only absolute paths. */
    char dest[CTL_PATH_BYTES], cwd[CTL_PATH_BYTES];
    if (argv[1][0] == '/') {
        snprintf(dest, sizeof dest, "%s", argv[1]);
    } else if (!getcwd(cwd, sizeof cwd)) {
        fprintf(stderr, "tallyctl: cannot make '%s' absolute: %s\n", argv[1], strerror(errno));
        return CTL_EXIT_FAIL;
    } else if ((size_t)snprintf(dest, sizeof dest, "%s/%s", cwd, argv[1]) >= sizeof dest) {
        fprintf(stderr, "tallyctl: the path %s/%s is longer than %d bytes\n", cwd, argv[1],
                CTL_PATH_BYTES - 1);
        return CTL_EXIT_FAIL;
    }
    struct ctl_conn c;
    if (connect_or_report(&c, o) < 0)
        return CTL_EXIT_FAIL;
    struct ctl_reply r;
    const char *args[] = {"TALLY", "CHECKPOINT", dest};
    int rc = CTL_EXIT_FAIL;
    if (ctl_command(&c, &r, 3, args) < 0) {
        fprintf(stderr, "tallyctl: %s\n", c.err);
    } else if (r.type != CTL_REPLY_STATUS) {
        fprintf(stderr, "tallyctl: %s: %s\n", c.where, r.str ? r.str : "unexpected reply");
    } else {
        printf("checkpoint of %s written to %s (tallyd --dir %s opens it)\n", c.where, dest, dest);
        rc = CTL_EXIT_OK;
    }
    ctl_reply_free(&r);
    ctl_close(&c);
    return rc;
}
