/*
 * server.h - tallyd's shared types: the server, its workers and clients, the command table and
 * the reply functions every command uses.
 *
 * Threads (DESIGN.md section 3): io-threads workers, each with its own io_uring ring and
 * listening socket (SO_REUSEPORT); a client belongs to the worker that accepted it and all of
 * its commands run there, against the shared engine. No command blocks its worker except on the
 * engine's short locks; under fsync always a client's replies are held (not the worker) until
 * the WAL says its writes are durable.
 *
 * Files: main.c (start, signals), config.c (settings), log.c, net.c (the io_uring loop),
 * resp.c (request parsing, reply encoding), glob.c (KEYS/SCAN/CONFIG GET patterns), keyspace.c
 * (SELECT's databases: the engine key of a (database, key)), commands.c (table, dispatch,
 * MULTI/EXEC), commands_string.c, commands_hll.c, commands_keys.c, commands_server.c, info.c
 * (INFO), commands_introspect.c (COMMAND), commands_admin.c (TALLY: tallyctl's commands),
 * commands_throttle.c (CL.THROTTLE) with throttle.c (GCRA), sketch.c (the quantile sketch).
 */
#ifndef TL_SERVER_H
#define TL_SERVER_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tallystore.h"

/* ---- growable byte buffers ---------------------------------------------------------------- */

struct tl_buf {
    char *data;
    size_t len, cap;
};
/* Appends n bytes; returns 0 or -ENOMEM. */
int tl_buf_append(struct tl_buf *b, const void *p, size_t n);
int tl_buf_printf(struct tl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drops the first n bytes. */
void tl_buf_consume(struct tl_buf *b, size_t n);
void tl_buf_free(struct tl_buf *b);

/* ---- configuration (config.c) ------------------------------------------------------------- */

/* Every setting, its default and its limits are in config.c's table; `tallyd --help` prints
 * them. Values here are the ones in force. */
/* A window policy of the config file: window-policy NAME SPEC (commands_window.c). */
#define TL_POLICY_NAME_MAX        64
#define TL_CONFIG_POLICIES_MAX    64
#define TL_CONFIG_POLICY_SPEC_MAX 256
struct tl_config_policy {
    char name[TL_POLICY_NAME_MAX + 1];
    char spec[TL_CONFIG_POLICY_SPEC_MAX];
};

struct tl_config {
    char bind[256];                       /* "127.0.0.1" */
    int port;                             /* 6380 */
    char dir[4096];                       /* "./data" */
    char logfile[4096];                   /* "" = stderr */
    int loglevel;                         /* enum tl_log_level */
    int io_threads;                       /* 0 = number of CPUs */
    char requirepass[512];                /* "" = none */
    bool protected_mode;                  /* true */
    enum tl_fsync_mode fsync;             /* everysec */
    int maxclients;                       /* 10000 */
    long long proto_max_bulk_len;         /* 512 MiB, as Redis */
    long long max_multibulk_len;          /* INT_MAX arguments, as Redis 7 */
    long long inline_max_size;            /* 64 KiB */
    long long client_query_buffer_limit;  /* 1 GiB, as Redis */
    long long client_output_buffer_limit; /* 256 MiB: a client over it is disconnected */
    long long max_value_bytes;   /* 16 MiB (proto-max-bulk-len caps requests; this caps values) */
    long long memtable_bytes;    /* 64 MiB */
    long long block_cache_bytes; /* 64 MiB */
    long long block_size_bytes;  /* 4 KiB */
    int compression;             /* enum tl_compression of the upper levels; lz4 */
    int bottom_compression;      /* of the bottom level; lz4 */
    int timeout_s;               /* idle client timeout, 0 = never */
    long long slowlog_log_slower_than; /* microseconds, 10000 */
    int slowlog_max_len;               /* 128 */
    int scan_cursors;                  /* SCAN cursors kept; 10000 */
    int databases;                     /* SELECT 0 .. databases - 1; 16 */
    struct tl_config_policy window_policies[TL_CONFIG_POLICIES_MAX];
    int n_window_policies;
};

/* Fills c with defaults. */
void tl_config_defaults(struct tl_config *c);
/* Reads a redis.conf-style file ("name value" lines, # comments, quoted values). Errors name
 * the file, line and setting. Returns 0 or -1 with a message in err. */
int tl_config_load_file(struct tl_config *c, const char *path, char *err, size_t errlen);
/* Sets one setting by name (as in the file or CONFIG SET). Returns 0 or -1 with err. */
int tl_config_set(struct tl_config *c, const char *name, const char *value, char *err,
                  size_t errlen);
/* Calls fn for each setting whose name matches the glob pattern, with its value as text. */
void tl_config_each(const struct tl_config *c, const char *pattern,
                    void (*fn)(void *arg, const char *name, const char *value), void *arg);
/* Whether a setting can change while the server runs (CONFIG SET). */
bool tl_config_is_mutable(const char *name);
void tl_config_print_help(FILE *out);

/* ---- logging (log.c) ------------------------------------------------------------------------ */

enum tl_log_level { TL_LOG_DEBUG, TL_LOG_VERBOSE, TL_LOG_NOTICE, TL_LOG_WARNING };
void tl_log_open(const char *path, int level);
void tl_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- glob patterns (glob.c) -------------------------------------------------------------------
 */

/* Whether subject s matches the glob pattern (KEYS, SCAN MATCH, CONFIG GET): ? * [set] [^set]
 * [a-z] and \x escapes, over bytes with explicit lengths; nocase folds ASCII letters. */
bool tl_glob_match(const char *pat, size_t plen, const char *s, size_t slen, bool nocase);

/* ---- logical databases (keyspace.c) -----------------------------------------------------------
 */

/* SELECT's databases share the engine's one key space. keyspace.c alone knows how a (database,
 * user key) becomes an engine key (its header describes the encoding): every command builds
 * its engine keys with tl_dbkey_make(c->db, ...) and walks a database with tl_dbiter_*. Each
 * database is one contiguous range of engine keys, ordered as its user keys. */
/* The prefix holds the database number in one byte; 0xFF is kept for the server's internal
 * keys (the buckets of windowed series), which sort after every database. */
#define TL_DATABASES_MAX      255
#define TL_INTERNAL_PREFIX    "\xFF\xFF"
#define TL_DBKEY_PREFIX_BYTES 2
/* The longest key a client may use, the same in every database. */
#define TL_MAX_USER_KEY_BYTES (TL_MAX_KEY_BYTES - TL_DBKEY_PREFIX_BYTES)
/* A key is over TL_MAX_USER_KEY_BYTES (the server's own code, beyond the engine's TL_E*). */
#define TL_EKEYTOOLONG (-4101)

/* Key types beyond Redis's string, stored as typed engine values (TL_VAL_TYPED) under these
 * tags. A command for one type that meets a key of another answers TL_WRONGTYPE_ERR; the
 * engine's incr answers TL_EWRONGTYPE on a typed value, which tl_reply_engine_error turns into
 * the same text. The tag values are on disk: never renumber them. */
enum tl_type_tag {
    TL_TAG_WINDOW = 1,   /* WINCRBY series (TYPE "window") */
    TL_TAG_WSKETCH = 2,  /* WOBSERVE series ("window-sketch") */
    TL_TAG_WHLL = 3,     /* WPFADD series ("window-hll") */
    TL_TAG_THROTTLE = 4, /* CL.THROTTLE state ("ratelimit") */
};
#define TL_WRONGTYPE_ERR "WRONGTYPE Operation against a key holding the wrong kind of value"
/* The name TYPE and SCAN ... TYPE use for a value: "string", "window", ... */
const char *tl_type_name(const struct tl_val *v);

struct tl_client;

/* The engine calls commands make, on the client's database. Each returns what the engine call
 * returns, or tl_dbkey_make's error; writes raise c->wait_seq to their record's sequence number
 * so the reply waits for the WAL (net.c). existed may be NULL. */
int tl_key_get(struct tl_client *c, const char *key, size_t klen, struct tl_val *v);
/* tl_key_get of n keys into vals[0..n) (each cleared first: an absent key keeps type 0), their
 * memtable lookups prefetched together so that their cache misses overlap. Returns 0 or the
 * first error. */
int tl_keys_get(struct tl_client *c, char *const *keys, const size_t *lens, size_t n,
                struct tl_val *vals);
int tl_key_put(struct tl_client *c, const char *key, size_t klen, const char *val, size_t vlen,
               int64_t expire_ms);
/* tl_key_get for a command of Redis's string type: TL_EWRONGTYPE when the key holds a typed
 * value (v is then empty). */
int tl_key_get_string(struct tl_client *c, const char *key, size_t klen, struct tl_val *v);
/* For a string command's update callback: TL_EWRONGTYPE when cur is a typed value, which the
 * callback returns so that tl_key_update fails with it. */
static inline int tl_check_string(int found, const struct tl_val *cur)
{
    return found && cur->type == TL_VAL_TYPED ? TL_EWRONGTYPE : 0;
}
int tl_key_delete(struct tl_client *c, const char *key, size_t klen, bool *existed);
int tl_key_update(struct tl_client *c, const char *key, size_t klen, tl_update_fn fn, void *arg);
/* Raises c->wait_seq to seq. */
void tl_note_seq(struct tl_client *c, uint64_t seq);
/* Counts a read for INFO's keyspace_hits / keyspace_misses. */
void tl_count_lookup(bool hit);
/* The hash tl_db_prefetch takes for key in the client's database; false when the key makes no
 * engine key (empty, or too long), which is then not prefetched. */
bool tl_key_prefetch_hash(struct tl_client *c, const char *key, size_t klen, uint64_t *hash);
/* Engine keys up to this long are built on the stack. */
#define TL_DBKEY_INLINE_BYTES 128

struct tl_dbkey {
    const char *p; /* the engine key: the user key itself, inline_buf or heap */
    size_t len;
    char *heap; /* owned; for a key too long for inline_buf */
    char inline_buf[TL_DBKEY_INLINE_BYTES];
};
/* Builds the engine key of key in database db (0 <= db < TL_DATABASES_MAX). Returns 0,
 * TL_EKEYTOOLONG or -ENOMEM; release with tl_dbkey_free either way. */
int tl_dbkey_make(struct tl_dbkey *k, int db, const char *key, size_t len);
void tl_dbkey_free(struct tl_dbkey *k);
/* The database an engine key belongs to, -1 if none, TL_DATABASES_MAX for an internal key
 * (see keyspace.c). */
int tl_dbkey_db(const char *ekey, size_t elen);
/* Whether engine key ekey is in database db; if so, *key and *klen are its user key (a pointer
 * into ekey). */
bool tl_dbkey_user(int db, const char *ekey, size_t elen, const char **key, size_t *klen);
/* Database db's engine keys are [lo, hi); hi_len 0 means no upper bound (the last database). */
struct tl_dbrange {
    char lo[TL_DBKEY_PREFIX_BYTES], hi[TL_DBKEY_PREFIX_BYTES];
    size_t lo_len, hi_len;
};
void tl_dbkey_range(int db, struct tl_dbrange *r);

/* A walk of database db in user key order: tl_dbiter_seek positions it at the first user key
 * >= key; tl_dbiter_key returns 1 with the user key under the iterator (skipping engine keys of
 * no database), 0 once past db's keys, or a negative engine error. tl_iter_next moves on. */
int tl_dbiter_seek(tl_iter *it, int db, const char *key, size_t len);
int tl_dbiter_key(tl_iter *it, int db, const char **key, size_t *klen);
/* The keys of database db (DBSIZE); of every database in one walk (INFO keyspace), with those
 * that have an expiry and the sum of their times to live at now_ms. O(keys). */
struct tl_keyspace_counts {
    uint64_t keys, expires;
    double ttl_ms_sum; /* a double: 10^8 keys of far-off expiries overflow 64 bits */
};
int tl_keyspace_count(tl_db *engine, int db, uint64_t *count);
int tl_keyspace_count_all(tl_db *engine, int64_t now_ms,
                          struct tl_keyspace_counts counts[TL_DATABASES_MAX]);
/* Drops every key of every database (FLUSHALL) and keeps the stored window policies. */
int tl_keyspace_drop_all(tl_db *engine);
/* Calls fn with the iterator on each key of every database, in engine order; fn returns 0 to
 * go on or a negative code to stop with it. */
int tl_keyspace_walk(tl_db *engine, int (*fn)(void *arg, int db, tl_iter *it), void *arg);
/* Deletes every key of database db (FLUSHDB), raising *seq to the last delete's WAL sequence.
 * When no other database has keys it drops everything at once (tl_db_drop_all) instead; the
 * caller must exclude other commands so that none writes between that check and the drop. */
int tl_keyspace_flush(tl_db *engine, int db, uint64_t *seq);

/* ---- clients -------------------------------------------------------------------------------- */

/* One argument of a request: bytes and length (not NUL-terminated in general; the parser
 * does put a NUL after each, so argv[i] can be read as a C string when it has no NUL inside). */
struct tl_args {
    int argc;
    char **argv;
    size_t *len;
};

struct tl_queued_cmd; /* a command queued by MULTI (commands.c) */

struct tl_client {
    uint64_t id;
    int fd;
    struct tl_worker *worker;
    int resp; /* protocol version: 2 or 3 */
    int db;   /* SELECTed database: 0 at connect and after RESET */
    bool authenticated;
    char name[256];           /* CLIENT SETNAME */
    char addr[64], laddr[64]; /* "ip:port" */
    bool local;               /* connected from a loopback address */
    int64_t created_ms, last_cmd_ms;
    char last_cmd[32];                 /* its name for CLIENT LIST, cut */
    const struct tl_command *last_def; /* the command last_cmd names */
    int last_stat;                     /* its statistics slot */

    struct tl_buf query;    /* bytes received and not yet parsed */
    struct tl_buf out;      /* encoded replies not yet handed to the kernel */
    uint64_t wait_seq;      /* replies wait until the WAL has this sequence number */
    bool close_after_reply; /* QUIT, a protocol error */
    bool closing;
    /* CLIENT REPLY: OFF drops every reply; SKIP (reply_skip_next) drops the next command's
     * (reply_skip, while it runs). tl_dispatch drops them, judging by the state before the
     * command, as Redis judges each reply by the state it is added in. */
    bool reply_off, reply_skip_next, reply_skip;

    /* MULTI */
    bool in_multi;
    bool multi_failed; /* a queued command was rejected: EXEC answers EXECABORT */
    bool in_exec;      /* EXEC is running the queued commands: each must add one reply */
    struct tl_queued_cmd *queued;
    struct tl_watched *watched; /* WATCH: keys whose write makes EXEC fail */
    size_t n_watched, cap_watched;
    size_t n_queued, cap_queued;

    /* net.c's own fields */
    void *net;
};

/* ---- replies (resp.c): append to c->out in the client's protocol ------------------------------
 */

void tl_reply_ok(struct tl_client *c);                    /* +OK */
void tl_reply_status(struct tl_client *c, const char *s); /* +s */
/* An error: text is the whole line after '-', such as "ERR syntax error" or
 * "WRONGTYPE Operation against a key holding the wrong kind of value". */
void tl_reply_error(struct tl_client *c, const char *text);
void tl_reply_errorf(struct tl_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void tl_reply_int(struct tl_client *c, int64_t v);
void tl_reply_bulk(struct tl_client *c, const void *p, size_t n);
void tl_reply_cstr(struct tl_client *c, const char *s); /* bulk of a C string */
void tl_reply_null(struct tl_client *c);                /* $-1, or _ in RESP3 */
void tl_reply_null_array(struct tl_client *c);          /* *-1, or _ in RESP3 */
void tl_reply_array(struct tl_client *c, size_t n);     /* header; n elements follow */
void tl_reply_map(struct tl_client *c, size_t n);       /* %n, or *2n in RESP2 */
void tl_reply_set(struct tl_client *c, size_t n);       /* ~n, or *n in RESP2 */
void tl_reply_double(struct tl_client *c, double d);    /* ,d, or a bulk in RESP2 */
/* A double already formatted (INCRBYFLOAT's text): ,text in RESP3, a bulk of text in RESP2. */
void tl_reply_double_text(struct tl_client *c, const char *text, size_t len);
void tl_reply_bool(struct tl_client *c, bool b);                      /* #t/#f, or :1/:0 in RESP2 */
void tl_reply_verbatim(struct tl_client *c, const char *p, size_t n); /* =txt:, or a bulk */
/* An engine value as Redis shows a string: an integer as its decimal text. */
void tl_reply_val(struct tl_client *c, const struct tl_val *v);

/* ---- request parsing (resp.c) ---------------------------------------------------------------- */

enum tl_parse_result {
    TL_PARSE_OK = 0, /* one request parsed into *args; *consumed bytes used */
    TL_PARSE_NEED_MORE = 1,
    TL_PARSE_ERROR = 2, /* malformed: err holds Redis's text; the connection is closed */
};
struct tl_parse_limits {
    long long max_bulk_len;
    long long max_multibulk_len;
    long long inline_max_size;
    /* The client has not authenticated (requirepass is set): as Redis 7, more than 10
     * arguments or an argument over 16384 bytes is refused before it is buffered. */
    bool unauthenticated;
};
/* Parses one request (RESP multibulk, or an inline command line) from buf. args' arrays are
 * malloc'd (free with tl_args_free); each argument is copied and NUL-terminated. An empty
 * line or "*0" yields argc 0 (skip it). On TL_PARSE_ERROR, err holds the whole error line
 * after '-', ready for tl_reply_error ("ERR Protocol error: invalid bulk length"). On
 * TL_PARSE_NEED_MORE, *consumed is a lower bound (> len) of the bytes the request needs: a
 * caller may wait until that many are buffered before calling again. */
int tl_parse_request(const char *buf, size_t len, const struct tl_parse_limits *lim,
                     struct tl_args *args, size_t *consumed, char *err, size_t errlen);
void tl_args_free(struct tl_args *args);
/* Looks at the multibulk request at the start of buf without parsing it: returns its length
 * in bytes and points *key at its second argument (the key of most commands; *klen 0 if it has
 * one argument), or returns 0 when the request is incomplete, inline, malformed or has more
 * than TL_PEEK_MAX_ARGS arguments. Only a hint (net.c prefetches keys with it): the request is
 * parsed by tl_parse_request when its turn comes. */
#define TL_PEEK_MAX_ARGS 16
size_t tl_peek_request(const char *buf, size_t len, const char **key, size_t *klen);

/* ---- the command table (commands.c) ---------------------------------------------------------- */

enum tl_cmd_flags {
    TL_CMD_WRITE = 1 << 0,
    TL_CMD_READONLY = 1 << 1,
    TL_CMD_ADMIN = 1 << 2,
    TL_CMD_FAST = 1 << 3,
    TL_CMD_NOAUTH = 1 << 4,  /* allowed before AUTH (AUTH, HELLO, QUIT, ...) */
    TL_CMD_NOMULTI = 1 << 5, /* runs at once inside MULTI (EXEC, DISCARD, MULTI, QUIT, ...) */
    TL_CMD_LOADING = 1 << 6,
    TL_CMD_STALE = 1 << 7,
    TL_CMD_NOSCRIPT = 1 << 8,
    TL_CMD_PUBSUB = 1 << 9,
    /* Runs with every other client's commands excluded, as EXEC runs (a multi-key write that
     * must be atomic: MSET, MSETNX, FLUSHDB). Not shown by COMMAND: Redis has no such flag. */
    TL_CMD_EXCLUSIVE = 1 << 10,
    /* Refused inside MULTI, and the transaction with it (Redis's no_multi: SHUTDOWN, SAVE). */
    TL_CMD_DENY_MULTI = 1 << 11,
};

typedef void (*tl_cmd_fn)(struct tl_client *c, struct tl_args *a);

struct tl_command {
    const char *name; /* lower case, as COMMAND shows it */
    int arity;        /* Redis's rule: n exact, -n at least n (the name counts) */
    unsigned flags;
    int first_key, last_key, key_step; /* key positions as COMMAND INFO shows them */
    tl_cmd_fn fn;
    const char *group;   /* "string", "generic", "connection", "server", "transactions", ... */
    const char *since;   /* Redis version the command appeared in */
    const char *summary; /* one line, for COMMAND DOCS */
    const char *complexity;
    const char *args_doc; /* the arguments as redis-cli's hints show them, e.g. "key value" */
    const struct tl_command *subcommands; /* NULL-terminated, for CONFIG, CLIENT, COMMAND... */
};

/* The tables of each group, each ending with an entry whose name is NULL. */
extern const struct tl_command tl_commands_string[];
extern const struct tl_command tl_commands_keys[];
extern const struct tl_command tl_commands_hll[]; /* PFADD, PFCOUNT, PFMERGE (commands_hll.c) */
/* WINCRBY, WGET, WRANGE, WOBSERVE, WSTATS, WQUANTILE, WPFADD, WPFCOUNT, WPOLICY */
extern const struct tl_command tl_commands_window[];
extern const struct tl_command tl_commands_throttle[]; /* CL.THROTTLE (commands_throttle.c) */
extern const struct tl_command tl_commands_admin[];    /* TALLY (commands_admin.c) */
extern const struct tl_command tl_commands_server[];
extern const struct tl_command tl_commands_info[];         /* INFO (info.c) */
extern const struct tl_command tl_commands_introspect[];   /* COMMAND (commands_introspect.c) */
extern const struct tl_command tl_commands_transactions[]; /* MULTI, EXEC, DISCARD (commands.c) */
extern const struct tl_command tl_commands_latency[];      /* LATENCY HISTOGRAM (cmdstats.c) */

/* ---- per-command statistics (cmdstats.c) --------------------------------------------------- */

/* Latency buckets: up to 1 us, up to 2 us, up to 4 us, ... up to 2^(TL_CMDSTAT_BUCKETS-1) us. */
#define TL_CMDSTAT_BUCKETS 40
struct tl_cmdstat {
    uint64_t calls, usec, rejected, failed;
    uint64_t hist[TL_CMDSTAT_BUCKETS];
};
/* Statistics slots: one per command and per subcommand, numbered when commands.c builds its
 * index. tl_command_stat_id is -1 for a command outside the tables; tl_command_stat_find takes
 * a name as LATENCY HISTOGRAM does ("get", "client|list", any case). */
size_t tl_command_stat_count(void);
int tl_command_stat_id(const struct tl_command *cmd);
int tl_command_stat_find(const char *name, size_t len);
void tl_command_stat_name(int id, char *buf, size_t cap); /* "get", "client|list" */
int tl_command_stat_parent(int id); /* the slot of id's command when id is a subcommand, else -1 */
#define TL_CMD_FULL_NAME_BYTES 130  /* room for any such name */
/* A call that ran for us microseconds (failed: it answered an error), or one refused before it
 * ran (wrong arity, not authenticated, a full MULTI queue). Thread-safe and cheap. */
void tl_cmdstat_call(int id, int64_t us, bool failed);
void tl_cmdstat_rejected(int id);
/* What slot id counted since the last tl_cmdstat_reset, over every thread. */
void tl_cmdstat_get(int id, struct tl_cmdstat *out);
void tl_cmdstat_reset(void);
/* The p-th percentile (0..100) of the latencies in s, in microseconds (see cmdstats.c). */
double tl_cmdstat_percentile(const struct tl_cmdstat *s, double p);

/* Error replies, by code, as INFO errorstats and total_error_replies show them (cmdstats.c).
 * tl_errorstat_count takes an error reply as sent ("-CODE text\r\n", len bytes); its code is
 * what comes before the first space in the first 32 bytes, else ERR (Redis's rule). At most
 * TL_ERRORSTAT_CODES codes are listed; errors of codes past those count in the total only.
 * tl_cmdstat_reset zeroes these too. tl_errorstat_list fills up to cap entries in byte order
 * of the code and returns how many there are. */
#define TL_ERRORSTAT_CODES      128 /* as Redis's ERROR_STATS_NUMBER */
#define TL_ERRORSTAT_CODE_BYTES 32
struct tl_errorstat {
    char code[TL_ERRORSTAT_CODE_BYTES]; /* NUL-terminated */
    uint64_t count;
};
void tl_errorstat_count(const char *reply, size_t len);
uint64_t tl_errorstat_total(void);
size_t tl_errorstat_list(struct tl_errorstat *out, size_t cap);

/* HyperLogLog values (commands_hll.c), shared with WPFADD/WPFCOUNT's buckets. An add is a
 * tl_update_fn adding the elements argv[from..to) to a value (absent: a new HLL); it can run
 * once per bucket. A union takes the register-wise maximum of values and estimates it. */
struct tl_hll_add;
struct tl_hll_add *tl_hll_add_new(const struct tl_args *a, int from, int to);
int tl_hll_add_update(void *op, const struct tl_val *cur, int found, struct tl_val *next);
bool tl_hll_add_changed(const struct tl_hll_add *op);   /* the last update changed a register */
bool tl_hll_add_bad_value(const struct tl_hll_add *op); /* the last update met a non-HLL value */
void tl_hll_add_free(struct tl_hll_add *op);
struct tl_hll_union;
struct tl_hll_union *tl_hll_union_new(void);
int tl_hll_union_add(struct tl_hll_union *u, const struct tl_val *v); /* -1: not an HLL */
uint64_t tl_hll_union_count(const struct tl_hll_union *u);
void tl_hll_union_free(struct tl_hll_union *u);
uint64_t tl_hll_estimate(const uint8_t *registers);

/* Window policies (commands_window.c): defines "default", the config file's and the stored
 * ones (WPOLICY SET). Returns 0 or -1 with a message in err. */
int tl_window_init(tl_db *db, const struct tl_config *cfg, char *err, size_t errlen);
bool tl_policy_name_ok(const char *name, size_t len);
size_t tl_window_policy_count(void);
/* Stores again the policies WPOLICY SET defined, after FLUSHALL dropped every engine key:
 * policies are not keys, and outlive it. */
int tl_window_policies_restore(tl_db *db);

/* Looks up a command by name, case-insensitive. */
const struct tl_command *tl_command_lookup(const char *name, size_t len);
/* Calls fn for every command (top level). */
void tl_command_each(void (*fn)(void *arg, const struct tl_command *cmd), void *arg);
size_t tl_command_count(void);

/* Runs one request: auth check, lookup, arity, MULTI queueing, then the handler. clock_us
 * (NULL: none) carries the clock from one request to the next of a batch: when it holds a
 * time, that is the request's start (the clock was read as the one before ended, so the parse
 * of this request counts in its slow-log time), and on return it holds the time read as this
 * one ended (for its statistics). A batch starts it at 0, and must not carry it across a
 * wait. */
void tl_dispatch(struct tl_client *c, struct tl_args *a, int64_t *clock_us);
/* Drops the client's MULTI state and queued commands (RESET; net.c when it frees a client). */
void tl_multi_discard(struct tl_client *c);
/* FLUSHALL (db -1) and FLUSHDB (both run alone) call it before they empty (done false): every
 * client's watched keys of those databases that exist now, or were written since WATCH, make
 * its EXEC fail, as in Redis (missing ones do not); and after (done true), to stamp the others
 * again in the memtable the flush may have switched to. */
void tl_watch_flushing(int db, bool done);

/* Errors every command shares, with Redis's exact text. */
void tl_reply_wrong_arity(struct tl_client *c, const char *cmd_name);
void tl_reply_syntax_error(struct tl_client *c);
/* The reply for a failed engine call (overflow, not an integer, ...) or TL_EKEYTOOLONG, chosen
 * by the code: Redis's text when there is one, else "ERR <tl_last_error()>". */
void tl_reply_engine_error(struct tl_client *c, int rc);

/* Parsing arguments as Redis does: "value is not an integer or out of range" on failure
 * (these reply the error themselves and return false). */
bool tl_arg_int(struct tl_client *c, const char *s, size_t len, int64_t *out);
bool tl_arg_float(struct tl_client *c, const char *s, size_t len, long double *out);
bool tl_arg_eq(const char *s, size_t len, const char *word); /* case-insensitive */

/* ---- helpers the command files share (commands_server.c) ------------------------------------ */

/* The Redis version Tally answers as (HELLO, INFO): clients gate features on it (redis-cli uses
 * COMMAND DOCS from 7.0 on). Tally's own version goes in tally_version fields beside it. */
#define TL_REDIS_COMPAT_VERSION  "7.0.0"
#define TL_SUBCOMMAND_NAME_BYTES 64 /* "parent|sub" */

/* Runs the subcommand argv[1] of parent from its table, with Redis's errors for an unknown
 * subcommand and a wrong number of arguments ('client|setname'). */
void tl_run_subcommand(struct tl_client *c, struct tl_args *a, const char *parent,
                       const struct tl_command *subs);
/* Replies a HELP text: the first line names the command, then subcommands and explanations. */
void tl_reply_help(struct tl_client *c, const char *cmd, const char *const *lines);
/* Copies len bytes of src to dst in ASCII lower case, NUL-terminated, cut to fit cap. */
void tl_lower_copy(char *dst, size_t cap, const char *src, size_t len);

/* ---- the server ----------------------------------------------------------------------------- */

struct tl_slowlog_entry {
    uint64_t id;
    int64_t time_s;
    int64_t duration_us;
    int argc;
    char **argv; /* up to TL_SLOWLOG_MAX_ARGS, each up to 128 bytes */
    size_t *len;
    char addr[64];
    char name[256];
};
#define TL_SLOWLOG_MAX_ARGS 32

struct tl_server {
    struct tl_config cfg;
    pthread_mutex_t cfg_lock; /* CONFIG SET against readers of mutable settings */
    tl_db *db;
    int64_t start_ms;
    char run_id[41];
    int n_workers;
    struct tl_worker **workers;
    _Atomic bool shutting_down;

    /* MULTI/EXEC atomicity. EXEC holds exec_lock exclusive while it runs. An ordinary command
     * only marks a flag of its thread (cheaper than a shared rwlock on every command) and
     * takes exec_lock shared just to wait when an EXEC is pending; see commands.c. */
    pthread_rwlock_t exec_lock;

    /* Every client, for CLIENT LIST/KILL and INFO clients. */
    pthread_mutex_t clients_lock;
    struct tl_client **clients;
    size_t n_clients, cap_clients;
    _Atomic uint64_t next_client_id;

    /* SCAN cursors: cursor number -> the last key returned (commands_keys.c). */
    pthread_mutex_t scan_lock;
    void *scan_cursors;

    /* SLOWLOG, under slowlog_lock. A ring of slowlog_cap entries (commands.c allocates it at
     * the first entry, and resizes it to slowlog_max_len, keeping the newest, at the next entry
     * after a change): slowlog_head is where the next entry goes, the newest is at
     * head - 1 and the i-th newest at (head - 1 - i) mod cap, for i < slowlog_len. An entry's
     * argv, len and bytes are one allocation: free(e->argv) releases them (SLOWLOG RESET). */
    pthread_mutex_t slowlog_lock;
    struct tl_slowlog_entry *slowlog;
    size_t slowlog_len, slowlog_head, slowlog_cap;
    uint64_t slowlog_next_id;

    /* Statistics for INFO. */
    _Atomic uint64_t total_connections, rejected_connections, total_commands;
    _Atomic uint64_t net_input_bytes, net_output_bytes;
    _Atomic uint64_t expired_keys, keyspace_hits, keyspace_misses;
    _Atomic uint64_t output_limit_disconnections, protocol_errors;

    char config_file[4096]; /* the --config file as given (main.c); "" if none. INFO shows it */
};

extern struct tl_server *tl_srv;

/* Unix time in ms. While a thread runs a command, the time the command started: one command
 * sees one time (as in Redis, a key cannot expire half way through it), and the clock is read
 * once per command rather than at every step. */
int64_t tl_now_ms(void);
/* Sets the calling thread's command time (unix microseconds; 0: none, the clock is read). */
void tl_command_time_set(int64_t us);
/* Unix time in ms from the clock, always: for timing something a command does. */
int64_t tl_clock_ms(void);

/* Asks the main thread to stop the server as SIGTERM does (SHUTDOWN); returns at once and may
 * be called from any thread (main.c). */
void tl_server_request_shutdown(void);

/* Waits for a compaction that TALLY COMPACT started to end (commands_admin.c). The engine must
 * not be closed while one runs: call tl_db_stop (which makes it end at once), then this, then
 * tl_db_close. */
void tl_admin_shutdown(void);

/* Registry (commands_server.c uses it for CLIENT LIST/KILL). */
void tl_client_register(struct tl_client *c);
void tl_client_unregister(struct tl_client *c);
/* Asks the client's worker to close it after its pending replies (thread-safe). */
void tl_client_kill(struct tl_client *c);

/* net.c */
int tl_net_start(struct tl_server *s); /* binds, starts the workers */
void tl_net_stop(struct tl_server *s); /* stops accepting, closes clients, joins workers */

#endif
