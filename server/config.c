/*
 * config.c - tallyd's settings: one table holds every field of struct tl_config with its name,
 * type, default, limits, whether CONFIG SET may change it while the server runs, and a line
 * of description. Defaults, the config file, --name value options, CONFIG GET/SET and
 * `tallyd --help` all read that table, so a setting is described once.
 *
 * Names are Redis's where Redis has the setting (port, bind, maxclients, proto-max-bulk-len,
 * ...); Tally's own settings follow the same style. Values:
 *   sizes     a number of bytes, optionally with Redis's units, case-insensitive:
 *             1k = 1000, 1kb = 1024, 1m = 1000000, 1mb = 1048576, 1g, 1gb;
 *   booleans  yes or no;
 *   choices   one of the listed words (fsync always|everysec|no).
 * client-output-buffer-limit is one number of bytes here (the limit of every client), not
 * Redis's "class hard soft seconds" form; 0 means no limit.
 *
 * CONFIG GET patterns are matched case-insensitively by tl_glob_match (glob.c).
 * The config file has redis.conf's syntax: "name value" lines, # comments, values in double
 * quotes (with \n \r \t \b \a \\ \" \xHH escapes) or single quotes. CONFIG GET also answers a
 * few Redis settings that clients ask for and that have a fixed meaning here: save (""),
 * appendonly ("yes": Tally always writes its WAL), appendfsync (the fsync setting), maxmemory
 * ("0") and maxmemory-policy ("noeviction") as INFO memory reports them, notify-keyspace-events
 * ("": no notifications) and cluster-enabled ("no").
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server.h"

/* Bounds of the parser: the longest line of a config file, the words on one line. */
#define TL_CONFIG_LINE_MAX  (64 * 1024)
#define TL_CONFIG_MAX_WORDS 64
/* The most io-threads (Redis's limit as well). */
#define TL_CONFIG_MAX_IO_THREADS 128
/* The largest value text CONFIG GET produces (a string setting is at most 4096 bytes). */
#define TL_CONFIG_VALUE_MAX 4200

enum cfg_type {
    CFG_STRING, /* char array */
    CFG_INT,    /* int */
    CFG_LLONG,  /* long long, a plain number */
    CFG_SIZE,   /* long long, a number of bytes with optional units */
    CFG_BOOL,   /* bool, yes/no */
    CFG_ENUM,   /* an int-sized enum, one of a list of words */
};

struct cfg_word {
    const char *name;
    int value;
};

struct cfg_setting {
    const char *name;
    const char *alias; /* another accepted name, or NULL */
    enum cfg_type type;
    size_t offset, size;          /* of the field in struct tl_config */
    const char *def;              /* the default, as it would be written in the file */
    long long min, max;           /* for numbers */
    const struct cfg_word *words; /* for CFG_ENUM, ending with a NULL name */
    bool mutable_;
    const char *desc;
};

static const struct cfg_word fsync_words[] = {
    {"always", TL_FSYNC_ALWAYS},
    {"everysec", TL_FSYNC_EVERYSEC},
    {"no", TL_FSYNC_NO},
    {NULL, 0},
};

static const struct cfg_word compression_words[] = {
    {"none", TL_COMPRESS_NONE},
    {"lz4", TL_COMPRESS_LZ4},
    {"zstd", TL_COMPRESS_ZSTD},
    {NULL, 0},
};

static const struct cfg_word loglevel_words[] = {
    {"debug", TL_LOG_DEBUG},
    {"verbose", TL_LOG_VERBOSE},
    {"notice", TL_LOG_NOTICE},
    {"warning", TL_LOG_WARNING},
    {NULL, 0},
};

#define FIELD(f) offsetof(struct tl_config, f), sizeof(((struct tl_config *)0)->f)
#define KIB      1024LL
#define MIB      (1024LL * KIB)
#define GIB      (1024LL * MIB)

_Static_assert(sizeof(enum tl_fsync_mode) == sizeof(int), "enum settings are stored as int");
_Static_assert(sizeof(enum tl_compression) == sizeof(int), "enum settings are stored as int");

static const struct cfg_setting settings[] = {
    {"bind", NULL, CFG_STRING, FIELD(bind), "127.0.0.1", 0, 0, NULL, false,
     "addresses to listen on, separated by spaces (* for every IPv4 address, :: for IPv6)"},
    {"port", NULL, CFG_INT, FIELD(port), "6380", 0, 65535, NULL, false,
     "TCP port to listen on; 0 picks a free port, shown in the log at start"},
    {"dir", NULL, CFG_STRING, FIELD(dir), "./data", 0, 0, NULL, false,
     "data directory (created if missing)"},
    {"logfile", NULL, CFG_STRING, FIELD(logfile), "", 0, 0, NULL, false,
     "log file; empty logs to standard error"},
    {"loglevel", NULL, CFG_ENUM, FIELD(loglevel), "notice", 0, 0, loglevel_words, true,
     "least important messages logged"},
    {"io-threads", NULL, CFG_INT, FIELD(io_threads), "0", 0, TL_CONFIG_MAX_IO_THREADS, NULL, false,
     "network worker threads, each with its own io_uring ring; 0 = one per CPU"},
    {"requirepass", NULL, CFG_STRING, FIELD(requirepass), "", 0, 0, NULL, true,
     "password clients must give with AUTH; empty = none"},
    {"protected-mode", NULL, CFG_BOOL, FIELD(protected_mode), "yes", 0, 0, NULL, true,
     "without requirepass, refuse clients that are not on the loopback interface"},
    {"fsync", "appendfsync", CFG_ENUM, FIELD(fsync), "everysec", 0, 0, fsync_words, false,
     "a write is acknowledged once its WAL record is: always = on disk; everysec = written "
     "(synced each second); no = written"},
    {"maxclients", NULL, CFG_INT, FIELD(maxclients), "10000", 1, 1000000, NULL, true,
     "most clients connected at once; more are refused with an error"},
    {"proto-max-bulk-len", NULL, CFG_SIZE, FIELD(proto_max_bulk_len), "512mb", 1 * MIB, LLONG_MAX,
     NULL, true, "longest bulk string a request may carry"},
    {"max-multibulk-len", NULL, CFG_LLONG, FIELD(max_multibulk_len), "2147483647", 1, INT_MAX, NULL,
     true, "most arguments in one request"},
    {"inline-max-size", NULL, CFG_SIZE, FIELD(inline_max_size), "64kb", 1 * KIB, 1 * GIB, NULL,
     true, "longest inline (telnet-style) request line"},
    {"client-query-buffer-limit", NULL, CFG_SIZE, FIELD(client_query_buffer_limit), "1gb", 1 * MIB,
     LLONG_MAX, NULL, true,
     "most unparsed request bytes held for one client; a client over it is disconnected"},
    {"client-output-buffer-limit", NULL, CFG_SIZE, FIELD(client_output_buffer_limit), "256mb", 0,
     LLONG_MAX, NULL, true,
     "most reply bytes held for one client (one number, not Redis's class form; 0 = no limit); "
     "a client over it is disconnected"},
    {"max-value-bytes", NULL, CFG_SIZE, FIELD(max_value_bytes), "16mb", 1, TL_MAX_VALUE_BYTES, NULL,
     false, "largest string value stored"},
    {"memtable-bytes", NULL, CFG_SIZE, FIELD(memtable_bytes), "64mb", 1 * MIB, 64 * GIB, NULL,
     false, "size of one memtable (must exceed max-value-bytes + 64kb)"},
    {"block-cache-bytes", NULL, CFG_SIZE, FIELD(block_cache_bytes), "64mb", 0, 1024 * GIB, NULL,
     false, "cache of decompressed table blocks (INFO storage shows its hit ratio)"},
    {"block-size-bytes", NULL, CFG_SIZE, FIELD(block_size_bytes), "4kb", 256, 4 * MIB, NULL, false,
     "data block size of new tables before compression: smaller blocks make a read that misses "
     "the block cache decompress less, for a larger index in memory and less compression"},
    {"compression", NULL, CFG_ENUM, FIELD(compression), "lz4", 0, 0, compression_words, false,
     "compression of table blocks above the bottom level: none, lz4 or zstd"},
    {"bottom-compression", NULL, CFG_ENUM, FIELD(bottom_compression), "lz4", 0, 0,
     compression_words, false,
     "compression of the bottom level's table blocks (most of the data): zstd makes them about "
     "15% smaller, lz4 makes reads that miss the block cache about twice as fast"},
    {"timeout", NULL, CFG_INT, FIELD(timeout_s), "0", 0, INT_MAX, NULL, true,
     "close a client idle for this many seconds; 0 = never"},
    {"slowlog-log-slower-than", NULL, CFG_LLONG, FIELD(slowlog_log_slower_than), "10000", -1,
     LLONG_MAX, NULL, true,
     "log commands slower than this many microseconds in SLOWLOG; 0 = all, -1 = none"},
    {"slowlog-max-len", NULL, CFG_INT, FIELD(slowlog_max_len), "128", 0, 1000000, NULL, true,
     "entries kept in SLOWLOG"},
    {"scan-cursors", NULL, CFG_INT, FIELD(scan_cursors), "10000", 1, 10000000, NULL, false,
     "SCAN cursors remembered at once; the oldest is forgotten first"},
    /* Immutable: a client's SELECTed database must stay valid while it is connected. */
    {"databases", NULL, CFG_INT, FIELD(databases), "16", 1, TL_DATABASES_MAX, NULL, false,
     "logical databases: SELECT takes 0 to databases-1 (all share one engine, each a key range)"},
};
#define N_SETTINGS (sizeof(settings) / sizeof(settings[0]))

/* ---- helpers -------------------------------------------------------------------------------- */

static const struct cfg_setting *find_setting(const char *name)
{
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const struct cfg_setting *s = &settings[i];
        if (strcasecmp(name, s->name) == 0 || (s->alias && strcasecmp(name, s->alias) == 0))
            return s;
    }
    return NULL;
}

/* Parses a whole signed decimal number; false on junk or overflow. */
static bool parse_ll(const char *s, size_t len, long long *out)
{
    if (len == 0 || len > 30)
        return false;
    char tmp[32];
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    if (!(isdigit((unsigned char)tmp[0]) || tmp[0] == '-' || tmp[0] == '+'))
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(tmp, &end, 10);
    if (errno || end == tmp || *end != '\0')
        return false;
    *out = v;
    return true;
}

/* A number of bytes with Redis's units (memtoll): k kb m mb g gb, case-insensitive. */
static bool parse_size(const char *s, long long *out)
{
    static const struct {
        const char *unit;
        long long mul;
    } units[] = {
        {"kb", 1024LL},
        {"k", 1000LL},
        {"mb", 1024LL * 1024},
        {"m", 1000LL * 1000},
        {"gb", 1024LL * 1024 * 1024},
        {"g", 1000LL * 1000 * 1000},
        {"b", 1},
    };
    size_t len = strlen(s);
    long long mul = 1;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        size_t ul = strlen(units[i].unit);
        if (len > ul && strcasecmp(s + len - ul, units[i].unit) == 0 &&
            isdigit((unsigned char)s[len - ul - 1])) {
            mul = units[i].mul;
            len -= ul;
            break;
        }
    }
    long long v;
    if (!parse_ll(s, len, &v))
        return false;
    if (v > 0 ? v > LLONG_MAX / mul : v < LLONG_MIN / mul)
        return false;
    *out = v * mul;
    return true;
}

static void words_list(const struct cfg_word *w, const char *sep, char *buf, size_t cap)
{
    size_t off = 0;
    buf[0] = '\0';
    for (; w->name; w++) {
        int n = snprintf(buf + off, cap - off, "%s%s", off ? sep : "", w->name);
        if (n < 0 || (size_t)n >= cap - off)
            break;
        off += (size_t)n;
    }
}

/* The value of a setting as CONFIG GET shows it: numbers in plain bytes or units. */
static void value_text(const struct tl_config *c, const struct cfg_setting *s, char *buf,
                       size_t cap)
{
    const char *field = (const char *)c + s->offset;
    switch (s->type) {
    case CFG_STRING:
        snprintf(buf, cap, "%s", field);
        break;
    case CFG_INT:
        snprintf(buf, cap, "%d", *(const int *)field);
        break;
    case CFG_LLONG:
    case CFG_SIZE:
        snprintf(buf, cap, "%lld", *(const long long *)field);
        break;
    case CFG_BOOL:
        snprintf(buf, cap, "%s", *(const bool *)field ? "yes" : "no");
        break;
    case CFG_ENUM: {
        int v = *(const int *)field;
        buf[0] = '\0';
        for (const struct cfg_word *w = s->words; w->name; w++) {
            if (w->value == v) {
                snprintf(buf, cap, "%s", w->name);
                break;
            }
        }
        break;
    }
    }
}

/* Sets one setting from text; the error names the setting and what it allows. */
static int set_value(struct tl_config *c, const struct cfg_setting *s, const char *value, char *err,
                     size_t errlen)
{
    char *field = (char *)c + s->offset;
    long long v = 0;
    switch (s->type) {
    case CFG_STRING:
        if (strlen(value) >= s->size) {
            snprintf(err, errlen, "'%s': the value is longer than %zu bytes", s->name, s->size - 1);
            return -1;
        }
        snprintf(field, s->size, "%s", value);
        return 0;
    case CFG_BOOL:
        if (strcasecmp(value, "yes") == 0) {
            *(bool *)field = true;
        } else if (strcasecmp(value, "no") == 0) {
            *(bool *)field = false;
        } else {
            snprintf(err, errlen, "'%s': '%s' is not yes or no", s->name, value);
            return -1;
        }
        return 0;
    case CFG_ENUM:
        for (const struct cfg_word *w = s->words; w->name; w++) {
            if (strcasecmp(value, w->name) == 0) {
                *(int *)field = w->value;
                return 0;
            }
        }
        char list[256];
        words_list(s->words, ", ", list, sizeof(list));
        snprintf(err, errlen, "'%s': '%s' is not one of %s", s->name, value, list);
        return -1;
    case CFG_INT:
    case CFG_LLONG:
        if (!parse_ll(value, strlen(value), &v)) {
            snprintf(err, errlen, "'%s': '%s' is not a whole number", s->name, value);
            return -1;
        }
        break;
    case CFG_SIZE:
        if (!parse_size(value, &v)) {
            snprintf(err, errlen,
                     "'%s': '%s' is not a size (a number of bytes, optionally followed by "
                     "k, kb, m, mb, g or gb)",
                     s->name, value);
            return -1;
        }
        break;
    }
    if (v < s->min || v > s->max) {
        snprintf(err, errlen, "'%s': %s is out of range: allowed %lld to %lld", s->name, value,
                 s->min, s->max);
        return -1;
    }
    if (s->type == CFG_INT)
        *(int *)field = (int)v;
    else
        *(long long *)field = v;
    return 0;
}

/* ---- the interface -------------------------------------------------------------------------- */

void tl_config_defaults(struct tl_config *c)
{
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < N_SETTINGS; i++) {
        char err[256];
        int rc = set_value(c, &settings[i], settings[i].def, err, sizeof(err));
        /* The table's defaults are checked by the same code as user input. */
        if (rc != 0) {
            fprintf(stderr, "tallyd: bad default in config.c: %s\n", err);
            abort();
        }
    }
}

int tl_config_set(struct tl_config *c, const char *name, const char *value, char *err,
                  size_t errlen)
{
    const struct cfg_setting *s = find_setting(name);
    if (!s) {
        snprintf(err, errlen, "unknown setting '%s' (tallyd --help lists them)", name);
        return -1;
    }
    if (set_value(c, s, value, err, errlen) != 0)
        return -1;
    /* The log level in force lives in log.c; change it there when the running server's
     * configuration changes (CONFIG SET loglevel). */
    if (s->offset == offsetof(struct tl_config, loglevel) && tl_srv && c == &tl_srv->cfg)
        tl_log_open(c->logfile, c->loglevel);
    return 0;
}

bool tl_config_is_mutable(const char *name)
{
    const struct cfg_setting *s = find_setting(name);
    return s && s->mutable_;
}

void tl_config_each(const struct tl_config *c, const char *pattern,
                    void (*fn)(void *arg, const char *name, const char *value), void *arg)
{
    char value[TL_CONFIG_VALUE_MAX];
    size_t plen = strlen(pattern);
    for (size_t i = 0; i < N_SETTINGS; i++) {
        if (tl_glob_match(pattern, plen, settings[i].name, strlen(settings[i].name), true)) {
            value_text(c, &settings[i], value, sizeof(value));
            fn(arg, settings[i].name, value);
        }
    }
    /* Redis settings that clients ask for (redis-benchmark asks for save and appendonly). */
    const char *fsync_text = "everysec";
    for (const struct cfg_word *w = fsync_words; w->name; w++) {
        if (w->value == (int)c->fsync)
            fsync_text = w->name;
    }
    const struct {
        const char *name, *value;
    } fixed[] = {
        {"save", ""},
        {"appendonly", "yes"},
        {"appendfsync", fsync_text},
        /* What INFO memory says: no memory limit, nothing evicted (the disk holds the keys). */
        {"maxmemory", "0"},
        {"maxmemory-policy", "noeviction"},
        {"notify-keyspace-events", ""},
        {"cluster-enabled", "no"},
    };
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        if (tl_glob_match(pattern, plen, fixed[i].name, strlen(fixed[i].name), true))
            fn(arg, fixed[i].name, fixed[i].value);
    }
}

/* Splits a config line into words as redis.conf does. Returns the number of words, or -1 with
 * err set on unbalanced quotes. Words are written NUL-terminated into out (the same size as
 * line, enough since unescaping only shortens). */
static int split_words(const char *line, char *out, char **words, int max_words, char *err,
                       size_t errlen)
{
    int n = 0;
    const char *p = line;
    char *o = out;
    for (;;) {
        while (*p && isspace((unsigned char)*p))
            p++;
        if (!*p)
            return n;
        if (n == max_words) {
            snprintf(err, errlen, "more than %d words on one line", max_words);
            return -1;
        }
        words[n++] = o;
        if (*p == '"') {
            p++;
            for (;;) {
                if (!*p) {
                    snprintf(err, errlen, "unbalanced quotes");
                    return -1;
                }
                if (*p == '"') {
                    p++;
                    break;
                }
                if (*p == '\\' && p[1]) {
                    p++;
                    char ch = *p;
                    if (ch == 'x' && isxdigit((unsigned char)p[1]) &&
                        isxdigit((unsigned char)p[2])) {
                        char hex[3] = {p[1], p[2], 0};
                        *o++ = (char)strtol(hex, NULL, 16);
                        p += 3;
                        continue;
                    }
                    switch (ch) {
                    case 'n':
                        ch = '\n';
                        break;
                    case 'r':
                        ch = '\r';
                        break;
                    case 't':
                        ch = '\t';
                        break;
                    case 'b':
                        ch = '\b';
                        break;
                    case 'a':
                        ch = '\a';
                        break;
                    default:
                        break;
                    }
                    *o++ = ch;
                    p++;
                    continue;
                }
                *o++ = *p++;
            }
            if (*p && !isspace((unsigned char)*p)) {
                snprintf(err, errlen, "closing quote must be followed by a space");
                return -1;
            }
        } else if (*p == '\'') {
            p++;
            for (;;) {
                if (!*p) {
                    snprintf(err, errlen, "unbalanced quotes");
                    return -1;
                }
                if (*p == '\\' && p[1] == '\'') {
                    *o++ = '\'';
                    p += 2;
                    continue;
                }
                if (*p == '\'') {
                    p++;
                    break;
                }
                *o++ = *p++;
            }
            if (*p && !isspace((unsigned char)*p)) {
                snprintf(err, errlen, "closing quote must be followed by a space");
                return -1;
            }
        } else {
            while (*p && !isspace((unsigned char)*p))
                *o++ = *p++;
        }
        *o++ = '\0';
    }
}

/* window-policy NAME SPEC: checked here, defined when the server starts (commands_window.c). */
static int config_window_policy(struct tl_config *c, int n, char **words, char *why, size_t len)
{
    if (n != 3) {
        snprintf(why, len,
                 "'window-policy' takes a name and a spec, such as "
                 "window-policy fraud 1m:3h,1h:8d");
        return -1;
    }
    if (!tl_policy_name_ok(words[1], strlen(words[1]))) {
        snprintf(why, len,
                 "window-policy: invalid name '%.64s': 1 to %d letters, digits or _ - . :",
                 words[1], TL_POLICY_NAME_MAX);
        return -1;
    }
    struct tl_window_policy p;
    char perr[256];
    if (tl_window_policy_parse(words[2], strlen(words[2]), &p, perr, sizeof perr) < 0) {
        snprintf(why, len, "window-policy %.64s: %s", words[1], perr);
        return -1;
    }
    int i;
    for (i = 0; i < c->n_window_policies; i++)
        if (strcmp(c->window_policies[i].name, words[1]) == 0)
            break;
    if (i == TL_CONFIG_POLICIES_MAX) {
        snprintf(why, len, "more than %d window-policy lines", TL_CONFIG_POLICIES_MAX);
        return -1;
    }
    if (i == c->n_window_policies)
        c->n_window_policies++;
    snprintf(c->window_policies[i].name, sizeof c->window_policies[i].name, "%s", words[1]);
    tl_window_policy_format(&p, c->window_policies[i].spec, sizeof c->window_policies[i].spec);
    return 0;
}

int tl_config_load_file(struct tl_config *c, const char *path, char *err, size_t errlen)
{
    int rc = -1;
    char *line = NULL, *words_buf = NULL;
    size_t line_cap = 0;
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    int lineno = 0;
    ssize_t len;
    while ((len = getline(&line, &line_cap, f)) >= 0) {
        lineno++;
        if (len > TL_CONFIG_LINE_MAX) {
            snprintf(err, errlen, "%s:%d: line longer than %d bytes", path, lineno,
                     TL_CONFIG_LINE_MAX);
            goto cleanup;
        }
        char *words[TL_CONFIG_MAX_WORDS];
        char why[512];
        free(words_buf);
        words_buf = malloc((size_t)len + 1);
        if (!words_buf) {
            snprintf(err, errlen, "%s:%d: out of memory", path, lineno);
            goto cleanup;
        }
        const char *start = line;
        while (isspace((unsigned char)*start))
            start++;
        if (*start == '#' || *start == '\0')
            continue;
        int n = split_words(start, words_buf, words, TL_CONFIG_MAX_WORDS, why, sizeof(why));
        if (n < 0) {
            snprintf(err, errlen, "%s:%d: %s", path, lineno, why);
            goto cleanup;
        }
        if (n == 0)
            continue;
        if (strcasecmp(words[0], "window-policy") == 0) {
            if (config_window_policy(c, n, words, why, sizeof why) < 0) {
                snprintf(err, errlen, "%s:%d: %s", path, lineno, why);
                goto cleanup;
            }
            continue;
        }
        const struct cfg_setting *s = find_setting(words[0]);
        if (!s) {
            snprintf(err, errlen, "%s:%d: unknown setting '%s' (tallyd --help lists them)", path,
                     lineno, words[0]);
            goto cleanup;
        }
        /* One value; bind alone takes several addresses, as in redis.conf. */
        char joined[sizeof(c->bind)];
        const char *value = n >= 2 ? words[1] : NULL;
        if (n > 2 && s->offset == offsetof(struct tl_config, bind)) {
            size_t off = 0;
            for (int i = 1; i < n; i++) {
                int w = snprintf(joined + off, sizeof(joined) - off, "%s%s", i > 1 ? " " : "",
                                 words[i]);
                if (w < 0 || (size_t)w >= sizeof(joined) - off) {
                    snprintf(err, errlen, "%s:%d: 'bind': too many addresses", path, lineno);
                    goto cleanup;
                }
                off += (size_t)w;
            }
            value = joined;
        } else if (n != 2) {
            snprintf(err, errlen, "%s:%d: '%s' takes exactly one value", path, lineno, s->name);
            goto cleanup;
        }
        if (tl_config_set(c, words[0], value, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "%s:%d: %s", path, lineno, why);
            goto cleanup;
        }
    }
    if (ferror(f)) {
        snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
        goto cleanup;
    }
    rc = 0;
cleanup:
    free(line);
    free(words_buf);
    fclose(f);
    return rc;
}

/* A limit as it would be written in the file: 1gb rather than 1073741824. */
static void limit_text(const struct cfg_setting *s, long long v, char *buf, size_t cap)
{
    if (s->type == CFG_SIZE && v > 0 && v != LLONG_MAX) {
        if (v % GIB == 0) {
            snprintf(buf, cap, "%lldgb", v / GIB);
            return;
        }
        if (v % MIB == 0) {
            snprintf(buf, cap, "%lldmb", v / MIB);
            return;
        }
        if (v % KIB == 0) {
            snprintf(buf, cap, "%lldkb", v / KIB);
            return;
        }
    }
    if (v == LLONG_MAX || (s->type == CFG_INT && v == INT_MAX))
        snprintf(buf, cap, "any");
    else
        snprintf(buf, cap, "%lld", v);
}

void tl_config_print_help(FILE *out)
{
    fprintf(out, "Settings (file: \"name value\"; command line: --name value; [runtime]: "
                 "CONFIG SET can change it):\n");
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const struct cfg_setting *s = &settings[i];
        char allowed[256], lo[32], hi[32];
        switch (s->type) {
        case CFG_STRING:
            snprintf(allowed, sizeof(allowed), "text");
            break;
        case CFG_BOOL:
            snprintf(allowed, sizeof(allowed), "yes|no");
            break;
        case CFG_ENUM:
            words_list(s->words, "|", allowed, sizeof(allowed));
            break;
        default:
            limit_text(s, s->min, lo, sizeof(lo));
            limit_text(s, s->max, hi, sizeof(hi));
            snprintf(allowed, sizeof(allowed), "%s%s..%s", s->type == CFG_SIZE ? "size " : "", lo,
                     hi);
            break;
        }
        fprintf(out, "  %-27s <%s>  default: %s%s%s%s%s\n", s->name, allowed,
                s->def[0] ? s->def : "\"\"", s->alias ? "  (also " : "", s->alias ? s->alias : "",
                s->alias ? ")" : "", s->mutable_ ? "  [runtime]" : "");
        fprintf(out, "      %s\n", s->desc);
    }
    fprintf(out, "  %-27s <name> <spec>  (config file only, one line per policy)\n",
            "window-policy");
    fprintf(out, "      a named window policy, resolution:retention pairs finest first, such as "
                 "1m:3h,1h:8d,1d:400d; 'default' is that one unless redefined\n");
    fprintf(out, "Sizes take k kb m mb g gb (1k = 1000, 1kb = 1024), case-insensitive.\n");
}
