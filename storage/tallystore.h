/*
 * tallystore.h - the public interface of libtallystore, Tally's LSM storage engine.
 *
 * A database is a directory. Keys are byte strings (up to TL_MAX_KEY_BYTES); a value is a
 * 64-bit integer or a byte string, with an optional expiry time. Integers are counters:
 * tl_db_incr() adds to them atomically without a read-modify-write on disk.
 *
 * Every function that can fail returns 0 (or a documented positive result) on success and a
 * negative code on failure: a negated errno or one of the TL_E* codes below. The failing call
 * also leaves a message for the calling thread, naming the file, key or limit involved, that
 * tl_last_error() returns until the thread's next failing call.
 *
 * Thread safety: every tl_db_* function may be called from any number of threads at once.
 * An iterator belongs to one thread.
 */
#ifndef TALLYSTORE_H
#define TALLYSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TL_MAX_KEY_BYTES   65536
#define TL_MAX_VALUE_BYTES (16u << 20) /* the largest max_value_bytes */
#define TL_MAX_LEVELS      7
/* The most L0 files an l0_stop_trigger may allow: a read looks at each table whose range
 * holds its key, and at most 64 of them at once. */
#define TL_MAX_L0_STOP_TRIGGER 40
#define TL_VERSION_STRING      "0.1.0"

/* Error codes beyond errno. */
#define TL_ECORRUPT   (-4001) /* a checksum or format check failed on disk */
#define TL_ENOTINT    (-4002) /* the value is not an integer or out of range */
#define TL_ENOTFLOAT  (-4003) /* the value is not a valid float */
#define TL_EOVERFLOW  (-4004) /* increment or decrement would overflow */
#define TL_ENANINF    (-4005) /* increment would produce NaN or Infinity */
#define TL_ENOURING   (-4006) /* io_uring cannot be set up on this machine */
#define TL_ELOCKED    (-4007) /* another process has the data directory open */
#define TL_ETOOBIG    (-4008) /* a key or value is over its limit */
#define TL_ECLOSED    (-4009) /* the database is closing or stopped after a fatal I/O error */
#define TL_EWRONGTYPE (-4010) /* an integer or string operation met a typed value */

/* Text for a code: "checksum mismatch", "Operation not permitted", ... */
const char *tl_strerror(int code);
/* The detailed message of this thread's last failing call ("" if none). */
const char *tl_last_error(void);

enum tl_fsync_mode {
    TL_FSYNC_NO = 0,       /* the WAL is written, never synced by Tally */
    TL_FSYNC_EVERYSEC = 1, /* the WAL is written at once and synced once a second */
    TL_FSYNC_ALWAYS = 2,   /* a write returns only after its WAL record is on disk */
};

enum tl_compression {
    TL_COMPRESS_NONE = 0,
    TL_COMPRESS_LZ4 = 1,
    TL_COMPRESS_ZSTD = 2,
};

struct tl_options {
    enum tl_fsync_mode fsync;    /* default TL_FSYNC_EVERYSEC */
    size_t memtable_bytes;       /* arena of one memtable; default 64 MiB */
    int max_immutable_memtables; /* frozen memtables waiting for flush before writers wait; 2 */
    size_t block_size_bytes;     /* data block size before compression; 4096 */
    size_t block_cache_bytes;    /* decompressed block cache; 64 MiB */
    int bloom_bits_per_key;      /* 10; 0 disables the filter */
    int l0_compaction_trigger;   /* L0 files that start a compaction; 4 */
    int l0_slowdown_trigger;     /* L0 files at which each write is delayed 1 ms; 12 */
    int l0_stop_trigger;         /* L0 files at which writes wait for compaction; 20, at most
                                  * TL_MAX_L0_STOP_TRIGGER */
    uint64_t level1_bytes;       /* target size of L1; each level below is x multiplier; 64 MiB */
    int level_multiplier;        /* 10 */
    uint64_t target_file_bytes;  /* size at which compaction output is split; 64 MiB */
    int num_levels;              /* 2..TL_MAX_LEVELS; 7 */
    enum tl_compression compression;        /* upper levels; default LZ4 */
    enum tl_compression bottom_compression; /* the bottom_levels deepest levels; LZ4 (Zstd
                                             * makes tables ~15% smaller, but lookups that
                                             * miss the block cache take ~2x as long) */
    int bottom_levels;                      /* how many of the deepest levels holding data use
                                             * bottom_compression; 1 */
    int zstd_level;                         /* 3 */
    bool background_compaction;             /* run compactions on their own; default true */
    size_t max_value_bytes;                 /* largest byte value accepted; 16 MiB at most and by
                                             * default; memtable_bytes must exceed it plus 64 KiB */
    /* Time source in unix milliseconds, for expiry; NULL means the real clock. Tests use it
     * to move time without sleeping. */
    int64_t (*clock_ms)(void *arg);
    void *clock_arg;
};

/* Fills *o with the defaults above. */
void tl_options_init(struct tl_options *o);

typedef struct tl_db tl_db;

/* Opens (creating if missing) the database in dir, replaying its WAL. The directory is locked
 * against a second process: TL_ELOCKED. TL_ENOURING if io_uring cannot be set up.
 * The engine writes files with pwrite(2) in the calling thread and in its own threads: a
 * program under a file size limit (ulimit -f) should ignore SIGXFSZ, so that a write past the
 * limit fails with EFBIG (a WAL write error, reported) instead of ending the process. */
int tl_db_open(const char *dir, const struct tl_options *o, tl_db **out);
/* The first half of tl_db_close, for a caller with threads of its own inside the database: the
 * background work stops, and a manual compaction or flush that waits, or starts later, returns
 * TL_ECLOSED at once. Reads and writes still work until tl_db_close, which must follow. */
void tl_db_stop(tl_db *db);
/* Syncs the WAL, stops the background threads and frees everything. The memtable is not
 * flushed: its records are in the WAL and are replayed at the next open. */
int tl_db_close(tl_db *db);

enum tl_val_type {
    TL_VAL_INT = 1,
    TL_VAL_BYTES = 2,
    /* Bytes with a type tag (1..255) chosen by the caller: a value that integer and string
     * operations must not touch. tl_db_incr and tl_db_incr_float answer TL_EWRONGTYPE on it.
     * The server stores windowed series and rate-limit states this way. */
    TL_VAL_TYPED = 3,
};

/* A value read from the database. bytes is owned by the tl_val: release it with
 * tl_val_clear(). An integer value has no bytes. expire_ms is 0 when the key has no expiry.
 * tag is the type tag of a TL_VAL_TYPED value (0 for the other types). */
struct tl_val {
    enum tl_val_type type;
    int64_t i;
    char *bytes;
    size_t len;
    int64_t expire_ms;
    uint8_t tag;
};
void tl_val_clear(struct tl_val *v);

/* Sequence numbers: every write gets the next one. A write function stores its record's
 * sequence number in *seq when seq is not NULL. Under TL_FSYNC_ALWAYS a write returns only
 * once its record is durable unless seq is not NULL: then the caller decides when to wait,
 * with tl_db_wait(), so that a server can hold a reply without blocking its thread.
 * Under EVERYSEC and NO a write returns once its record is in the WAL's buffer; the commit
 * thread hands it to the kernel within TL_WAL_WRITE_DELAY_US (1 ms) or sooner (group commit).
 * A caller that must survive kill -9 of its own process, as tallyd's replies do, waits with
 * tl_db_wait(db, seq, TL_WAIT_WRITTEN) before acknowledging. */
enum tl_wait {
    TL_WAIT_WRITTEN = 1, /* the record is in the kernel (survives kill -9 of the process) */
    TL_WAIT_DURABLE = 2, /* the record is on disk (survives power loss, given fsync) */
};
int tl_db_wait(tl_db *db, uint64_t seq, enum tl_wait what);
uint64_t tl_db_written_seq(tl_db *db);
uint64_t tl_db_durable_seq(tl_db *db);

/* A hint that a key is about to be read or written, for callers that know their next keys (a
 * pipeline of requests): starts loading, without waiting, the active memtable's part of the
 * key's lookup. Hash the key once with tl_db_prefetch_hash, then give that hash the stages in
 * order, a few other operations apart, so each stage finds what the one before brought into
 * the cache: TL_PREFETCH_SLOT (the hash slot), TL_PREFETCH_CELL (the key's cell, found through
 * the slot), TL_PREFETCH_VALUE (a byte value's bytes, found through the cell). A stage whose
 * data is not cached yet waits for it; a stale or wrong hint costs time, never a wrong answer.
 * Safe from any thread while the database is open. */
enum tl_prefetch_stage {
    TL_PREFETCH_SLOT = 0,
    TL_PREFETCH_CELL = 1,
    TL_PREFETCH_VALUE = 2,
};
uint64_t tl_db_prefetch_hash(const void *key, size_t klen);
void tl_db_prefetch(tl_db *db, uint64_t hash, enum tl_prefetch_stage stage);

/* Reads key. Returns 1 and fills *out when it exists, 0 when it does not or has expired: as in
 * Redis, a key is expired once the clock is past its expire_ms (at expire_ms it still exists). */
int tl_db_get(tl_db *db, const void *key, size_t klen, struct tl_val *out);
/* tl_db_get with the key's hash computed already: hash must be tl_db_prefetch_hash(key, klen)
 * (a caller that prefetched the key does not hash it twice). */
int tl_db_get_hashed(tl_db *db, const void *key, size_t klen, uint64_t hash, struct tl_val *out);

/* A stamp of key's writes, for optimistic concurrency (the server's WATCH): two equal stamps
 * taken at two moments mean that nothing wrote key in between; different ones, that something
 * may have. Every write that changes key and FLUSHALL change it, a write that changes nothing
 * does not; a memtable switch (every memtable_bytes of writes) changes it for every key. Expiry
 * does not: an expiry is a time, not a write. */
uint64_t tl_db_write_stamp(tl_db *db, const void *key, size_t klen);
/* Whether two stamps were taken while the same memtable was active: if so, and they differ, the
 * key was written in between; if not, the stamps say nothing (a stamp taken while a memtable
 * switch was under way matches no table, not even its own). */
bool tl_db_stamps_same_table(uint64_t a, uint64_t b);

/* Adds delta to the integer at key (a missing key counts as 0) and stores the result in
 * *result. TL_ENOTINT if the value is not an integer; TL_EOVERFLOW if the result would not
 * fit in 64 bits (nothing is changed). The expiry is kept. */
int tl_db_incr(tl_db *db, const void *key, size_t klen, int64_t delta, int64_t *result,
               uint64_t *seq);

/* tl_db_incr that also sets the key's expiry to expire_ms (absolute unix ms; 0 removes it):
 * a window bucket's increments carry the end of its retention this way. */
int tl_db_incr_expire(tl_db *db, const void *key, size_t klen, int64_t delta, int64_t expire_ms,
                      int64_t *result, uint64_t *seq);

/* Adds delta to the integer at key and sets its expiry, without reading what older layers hold
 * when the memtable does not know the key: a blind merge, for counters whose value the caller
 * does not need (the coarser buckets of a window). The overflow check is made only against a
 * value the memtable knows; otherwise a sum past int64 wraps when the layers are folded.
 * Only for keys that never hold anything but merges of this kind, each with the same expiry
 * (a window bucket's): a merge over a byte value, or with a later expiry over a value that has
 * expired on disk, is not checked and would read wrongly. */
int tl_db_merge_expire(tl_db *db, const void *key, size_t klen, int64_t delta, int64_t expire_ms,
                       uint64_t *seq);

/* Adds delta to the number at key, in long double precision as Redis's INCRBYFLOAT does, and
 * stores the result as its shortest exact text (tl_format_float). TL_ENOTFLOAT if the value is
 * not a number, TL_ENANINF if the result is not finite. */
int tl_db_incr_float(tl_db *db, const void *key, size_t klen, long double delta,
                     long double *result, uint64_t *seq);

/* Stores a byte value (one that reads as a canonical integer is stored as an integer).
 * expire_ms: absolute unix ms, 0 for none. */
int tl_db_put(tl_db *db, const void *key, size_t klen, const void *val, size_t vlen,
              int64_t expire_ms, uint64_t *seq);
int tl_db_put_int(tl_db *db, const void *key, size_t klen, int64_t v, int64_t expire_ms,
                  uint64_t *seq);

/* Stores a typed value: bytes under a type tag (1..255), see TL_VAL_TYPED. */
int tl_db_put_typed(tl_db *db, const void *key, size_t klen, uint8_t tag, const void *val,
                    size_t vlen, int64_t expire_ms, uint64_t *seq);

/* Deletes key; *existed (may be NULL) tells whether it was there. */
int tl_db_delete(tl_db *db, const void *key, size_t klen, bool *existed, uint64_t *seq);

/* Sets the expiry of an existing key (expire_ms 0 removes it). *existed is false, and nothing
 * is written, when the key does not exist. */
int tl_db_set_expiry(tl_db *db, const void *key, size_t klen, int64_t expire_ms, bool *existed,
                     uint64_t *seq);

/* A read-modify-write of one key, atomic with respect to every other write of that key.
 * fn is called exactly once with the current value (found = 0 when absent; cur is then zeroed) and
 * decides what to store in *next. It returns one of enum tl_update_action, or a negative code
 * which tl_db_update returns unchanged. cur is valid only during the call. */
enum tl_update_action {
    TL_UPDATE_KEEP = 0,   /* change nothing */
    TL_UPDATE_PUT = 1,    /* store *next (type, tag, value and expire_ms) */
    TL_UPDATE_DELETE = 2, /* delete the key */
    TL_UPDATE_EXPIRE = 3, /* keep the value, set the expiry to next->expire_ms */
};
typedef int (*tl_update_fn)(void *arg, const struct tl_val *cur, int found, struct tl_val *next);
int tl_db_update(tl_db *db, const void *key, size_t klen, tl_update_fn fn, void *arg,
                 uint64_t *seq);

/* Calls fn (from the WAL commit thread) each time the written or durable sequence number
 * advances. fn must be quick and must not call into the database: a server uses it to wake the
 * thread that holds replies waiting for durability. Set it before writing. */
void tl_db_set_commit_notify(tl_db *db, void (*fn)(void *arg), void *arg);

/* Removes every key (FLUSHALL): the memtables and tables are dropped and the WAL rolled, in one
 * manifest edit. Writes that run concurrently land before or after the drop. */
int tl_db_drop_all(tl_db *db);

/* The number of keys that exist now (DBSIZE), counted with an iterator: O(keys). */
int tl_db_count_keys(tl_db *db, uint64_t *count);

/* Freezes the active memtable and waits until every frozen memtable is in an SSTable. */
int tl_db_flush(tl_db *db);

/* Compacts every file overlapping [begin, end] (NULL = unbounded) down to the bottom level,
 * folding increments and dropping deleted, shadowed and expired entries. Blocks until done. */
int tl_db_compact_range(tl_db *db, const void *begin, size_t blen, const void *end, size_t elen);

/* Progress of a long call: bytes done so far and the total. */
typedef void (*tl_progress_fn)(void *arg, uint64_t done_bytes, uint64_t total_bytes);
/* tl_db_compact_range, calling progress (may be NULL) from the compaction thread as it goes:
 * with 0 and the total input bytes once the inputs are chosen, then with the input bytes merged
 * so far (estimated from the entries merged), and with the total at the end. */
int tl_db_compact_range_progress(tl_db *db, const void *begin, size_t blen, const void *end,
                                 size_t elen, tl_progress_fn progress, void *arg);
/* Compacts only the files of level that overlap [begin, end] (NULL = unbounded), widened until
 * no file of the level straddles its edges, with the overlapping files of level + 1, into level
 * + 1; the deepest level is compacted into itself. -EINVAL for a level outside 0 ..
 * num_levels - 1. Progress as above. Blocks until done. */
int tl_db_compact_level(tl_db *db, int level, const void *begin, size_t blen, const void *end,
                        size_t elen, tl_progress_fn progress, void *arg);

/* Writes a consistent copy of the database as of now into dest (which must not exist): the
 * memtables are flushed, the live SSTables hard-linked (copied across file systems), and a
 * manifest of exactly those tables written. The copy opens as a database of its own.
 * progress (may be NULL) is called after each table with the bytes done and the total. */
int tl_db_checkpoint(tl_db *db, const char *dest, tl_progress_fn progress, void *arg);

/* The live SSTables and the WAL segments not yet flushed, as names relative to the directory
 * (all immutable, or appended to only). Every write made before the call is in them (the WAL is
 * written first). They are not deleted until tl_db_release_files(), so a backup tool may copy
 * them while the database runs. Free with tl_db_free_file_list(). */
int tl_db_live_files(tl_db *db, char ***paths, size_t *count);
void tl_db_free_file_list(char **paths, size_t count);
void tl_db_release_files(tl_db *db);

struct tl_level_stats {
    uint64_t files;
    uint64_t bytes;     /* on disk */
    uint64_t raw_bytes; /* keys and values before compression */
    uint64_t entries;
};

struct tl_stats {
    struct tl_level_stats levels[TL_MAX_LEVELS];
    int num_levels;
    uint64_t memtables;      /* active + frozen */
    uint64_t memtable_bytes; /* arena bytes in use */
    uint64_t memtable_entries;
    uint64_t wal_bytes; /* written to the WAL since open */
    uint64_t wal_syncs;
    uint64_t flushes;
    uint64_t flush_bytes; /* SSTable bytes written by flushes */
    uint64_t compactions;
    uint64_t compaction_bytes_read;
    uint64_t compaction_bytes_written;
    uint64_t entries_dropped;   /* shadowed, deleted or expired entries dropped by compaction */
    double write_amplification; /* (flush + compaction bytes written) / flush bytes written */
    uint64_t block_cache_hits;
    uint64_t block_cache_misses;
    uint64_t block_cache_bytes;
    uint64_t stall_slowdowns; /* writes delayed because L0 had too many files */
    uint64_t stall_stops;     /* writes that waited for compaction */
    uint64_t last_seq;
};
int tl_db_stats(tl_db *db, struct tl_stats *st);

/* A sorted iterator over live keys. It sees the files of the moment it was created and the
 * active memtable as it is when it reaches each key. */
typedef struct tl_iter tl_iter;
int tl_iter_new(tl_db *db, tl_iter **out);
/* Positions at the first key >= key (klen 0: the first key). */
int tl_iter_seek(tl_iter *it, const void *key, size_t klen);
bool tl_iter_valid(const tl_iter *it);
int tl_iter_next(tl_iter *it);
const void *tl_iter_key(const tl_iter *it, size_t *klen);
/* The current value; bytes are copied into *out. */
int tl_iter_value(const tl_iter *it, struct tl_val *out);
/* The current key's expiry (unix ms), or 0 when it has none; nothing is copied. */
int64_t tl_iter_expire_ms(const tl_iter *it);
void tl_iter_free(tl_iter *it);

/*
 * Windowed series. A policy is a list of (resolution, retention) pairs, finest first, such as
 * 1m:3h,1h:8d,1d:400d: each write lands in one bucket per resolution (the time slot of that
 * width holding it), and a bucket is kept for the retention of its resolution. A series is the
 * set of engine keys that start with a caller's prefix:
 *
 *     prefix | resolution index (1 byte) | bucket start (unix ms, 8 bytes big endian)
 *
 * so one series' buckets are contiguous and ordered by resolution, then time. Counter series
 * (tl_window_incr) keep their newest buckets in a head of the caller's and store older ones as
 * integers; other bucket values (sketches, HyperLogLogs) are written with tl_window_update.
 * Every bucket key carries its bucket's expiry (start + retention), and compaction drops it
 * once its retention has passed.
 *
 * Retention is measured against the database's clock (tl_options.clock_ms): at time now,
 * resolution i holds the buckets that start at or after now - retention_i.
 */
#define TL_WINDOW_MAX_RES      8
#define TL_WINDOW_SUFFIX_BYTES 9                  /* what a bucket key adds to its series' prefix */
#define TL_WINDOW_MAX_TIME_MS  ((int64_t)1 << 53) /* the latest timestamp accepted */

struct tl_window_res {
    int64_t width_ms;
    int64_t retention_ms;
};
struct tl_window_policy {
    int n;
    struct tl_window_res res[TL_WINDOW_MAX_RES];
};

/* Parses a duration: a positive integer with an optional suffix ms, s, m, h, d or w (a bare
 * number is seconds). Returns false for anything else, or above TL_WINDOW_MAX_TIME_MS. */
bool tl_duration_parse(const char *s, size_t len, int64_t *ms);
/* Writes a duration in its shortest exact form ("90s", "1h", "1500ms"); returns the length. */
size_t tl_duration_format(int64_t ms, char *buf, size_t cap);

/* Parses a policy spec "RES:RET[,RES:RET...]". The rules: 1 to TL_WINDOW_MAX_RES pairs; each
 * retention at least its resolution; resolutions increasing, each a multiple of the one before;
 * retentions increasing. On failure returns -EINVAL and writes into err what is wrong and in
 * which part ("pair 2 (1h:2h): the retention must be longer than the previous pair's 3h"). */
int tl_window_policy_parse(const char *spec, size_t len, struct tl_window_policy *p, char *err,
                           size_t errlen);
/* The canonical text of a policy; returns its length. */
size_t tl_window_policy_format(const struct tl_window_policy *p, char *buf, size_t cap);

/*
 * Counter series keep their newest bucket of each resolution, and the one before it, in a
 * head: one value of the caller's (a typed value at a key of its choosing, holding whatever
 * else the caller keeps about the series). A write is then one update of the head, one WAL
 * record, whatever the number of resolutions:
 *   - a write into the newest bucket of a resolution adds to the head;
 *   - a write into a newer bucket makes it the newest: the newest becomes the previous one, and
 *     the previous one is stored first under its bucket key, as a PUT of its final value (the
 *     previous bucket never changes again, so storing it twice is harmless: a crash between the
 *     two writes loses nothing and counts nothing twice);
 *   - a write into an older bucket (a late write, with AT) is merged into the bucket's late key,
 *     the bucket key followed by TL_WINDOW_LATE_BYTE, after the head's update.
 * A bucket's value is its late key's plus, for the newest and previous buckets, the head's
 * (their bucket keys, when present, hold the same value and are passed over), or else its
 * bucket key's. Visits and sums take the head's state and do this.
 */
#define TL_WINDOW_LATE_BYTE 0x01
/* The head's state: start -1 means none. legacy: a head written before heads kept buckets,
 * whose buckets are all merged in place (every write is treated as late). */
struct tl_window_live {
    int64_t start[TL_WINDOW_MAX_RES], value[TL_WINDOW_MAX_RES];
    int64_t prev_start[TL_WINDOW_MAX_RES], prev_value[TL_WINDOW_MAX_RES];
    bool legacy;
};
/* Bytes tl_window_live_encode writes at most. */
#define TL_WINDOW_LIVE_MAX_BYTES (TL_WINDOW_MAX_RES * 4 * 10)
void tl_window_live_init(struct tl_window_live *l);
/* Encodings of the state. Per resolution, starts in units of its width plus one (0: none),
 * values zigzag varints:
 *   V1  start, value, previous start, previous value
 *   V2  start; when there is one: value, then how many widths the previous bucket is older
 *       (0: none) and, when there is one, its value. A counter's state is then 7 bytes or so
 *       a resolution where V1 took about 10. */
enum tl_window_live_format { TL_WINDOW_LIVE_V1 = 1, TL_WINDOW_LIVE_V2 = 2 };
/* Encodes the state of a series with policy p, as TL_WINDOW_LIVE_V2. */
size_t tl_window_live_encode(const struct tl_window_live *l, const struct tl_window_policy *p,
                             uint8_t *out);
/* Decodes what tl_window_live_encode wrote in format f; returns the bytes read, 0 if they are
 * not valid. */
size_t tl_window_live_decode(const uint8_t *in, const uint8_t *end,
                             const struct tl_window_policy *p, enum tl_window_live_format f,
                             struct tl_window_live *l);

/* A counter series as its head describes it. prefix points into the caller's memory. */
struct tl_window_series {
    const void *prefix;
    size_t plen;
    struct tl_window_policy p;
    struct tl_window_live live;
};
/* Where and how a counter series' head is kept. decode reads the head's value (found 0: none
 * yet, a new series) into a series of the caller's, setting every field of it (nothing is
 * zeroed beforehand, and a retried update decodes again into the same series), points *s at
 * it and returns 0 or an error; the write then changes that series' live state in place (no copy of
 * it is made; it must be the call's own, not shared with a concurrent write of the same head), and
 * encode makes the head's new value around it (type, tag, bytes, expiry) for a write at at_ms
 * and returns 0 or an error. Both run under the head key's update (tl_db_update), once or more
 * often (see tl_window_incr). */
struct tl_window_head {
    const void *key;
    size_t klen;
    int (*decode)(void *arg, const struct tl_val *cur, int found, struct tl_window_series **s);
    int (*encode)(void *arg, const struct tl_window_series *s, int64_t at_ms, struct tl_val *next);
    void *arg;
};

/* Adds delta at at_ms to the counter series of head h, in every resolution that still holds
 * that time, and stores the new value of the finest bucket written in *finest (may be NULL).
 * The series that h's decode gave holds the head's state after the write when it succeeds.
 * -ERANGE when at_ms is older than the longest retention (nothing is written) or outside
 * 0..TL_WINDOW_MAX_TIME_MS; TL_EOVERFLOW when a bucket would leave int64 (nothing is written,
 * except, for a write late in some resolutions only, the head's). *seq gets the last record's
 * sequence number. */
int tl_window_incr(tl_db *db, const struct tl_window_head *h, int64_t at_ms, int64_t delta,
                   int64_t *finest, uint64_t *seq);

/* Applies fn (see tl_db_update) to the bucket holding at_ms in every resolution that holds that
 * time. A value fn puts gets the bucket's expiry (the end of its retention) whatever fn sets.
 * *res_index tells fn's arg which resolution each call is for. -ERANGE as tl_window_incr. */
int tl_window_update(tl_db *db, const void *prefix, size_t plen, const struct tl_window_policy *p,
                     int64_t at_ms, tl_update_fn fn, void *arg, int *res_index, uint64_t *seq);

/* The buckets that make up the sliding window of window_ms ending at end_ms: for each part of
 * the window, the finest resolution that still holds it. Buckets that start at or after
 * end_ms - window_ms and at or before end_ms count, so the sum misses at most the part of one
 * bucket, of the resolution used at the old edge, that lies before the window's start (none
 * when the start is a multiple of that resolution). A window longer than the longest retention
 * is cut to it. A span is a run of buckets of one resolution: starts in [from_ms, to_ms). */
struct tl_window_span {
    int res;
    int64_t from_ms, to_ms;
};
int tl_window_plan(const struct tl_window_policy *p, int64_t now_ms, int64_t end_ms,
                   int64_t window_ms, struct tl_window_span spans[TL_WINDOW_MAX_RES]);

/* Calls fn for every bucket of the window (tl_window_plan at the database's clock), oldest
 * first within each span. fn returns 0 to go on or a negative code to stop with it. */
typedef int (*tl_window_visit_fn)(void *arg, int res, int64_t start_ms, const struct tl_val *v);
int tl_window_visit(tl_db *db, const void *prefix, size_t plen, const struct tl_window_policy *p,
                    const struct tl_window_live *live, int64_t end_ms, int64_t window_ms,
                    tl_window_visit_fn fn, void *arg);
/* Calls fn for every bucket of resolution res with a start in [from_ms, to_ms), oldest first.
 * live: a counter series' head state (see tl_window_incr), NULL for other series. */
int tl_window_range(tl_db *db, const void *prefix, size_t plen, const struct tl_window_live *live,
                    int res, int64_t from_ms, int64_t to_ms, tl_window_visit_fn fn, void *arg);
/* The sum of a counter series' window (tl_window_visit); TL_ENOTINT on a bucket that is not an
 * integer, TL_EOVERFLOW if the sum leaves int64. */
int tl_window_sum(tl_db *db, const struct tl_window_series *s, int64_t end_ms, int64_t window_ms,
                  int64_t *sum);

/* Formats a long double the way Redis's INCRBYFLOAT does: up to 17 significant digits,
 * no exponent, no trailing zeros. Returns the length written (buf needs 5 + 4932 + 17 bytes
 * at most; TL_FLOAT_BUF is enough for every finite value). */
#define TL_FLOAT_BUF 5120
size_t tl_format_float(long double v, char *buf, size_t cap);
/* Parses a canonical int64 the way Redis's string2ll does ("-0", "+1", " 1", "01" are not). */
bool tl_parse_int(const char *s, size_t len, int64_t *out);
/* Parses a float the way Redis's INCRBYFLOAT does (no spaces, not NaN). */
bool tl_parse_float(const char *s, size_t len, long double *out);

#ifdef __cplusplus
}
#endif
#endif
