/*
 * wal.h - the write-ahead log: numbered segment files of checksummed records, written by one
 * commit thread with group commit through io_uring.
 *
 * Segment file DIR/NNNNNN.wal (number in decimal, 6 digits at least):
 *
 *     header   8 bytes  magic "TALLYWAL"
 *              4 bytes  format version (1), little-endian
 *              8 bytes  segment number, little-endian
 *              4 bytes  masked CRC32C of the 20 bytes above
 *     records, each:
 *              4 bytes  masked CRC32C of everything after this field (length included)
 *              4 bytes  length N of what follows, little-endian
 *              8 bytes  sequence number, little-endian
 *              varint   key length, then the key
 *              rest     the entry value (record.h)
 *
 * Sequence numbers increase by one per record across segments (replication will tail the WAL
 * from a sequence number). A record whose bytes run past the end of the file, or a bad record
 * with nothing valid anywhere after it, is a torn tail: recovery cuts the file there. A bad
 * record followed by a valid one is corruption and is reported with the file and offset.
 * The key and record given to a replay callback are valid only during the call.
 */
#ifndef TL_WAL_H
#define TL_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "record.h"
#include "tallystore.h"

#define TL_WAL_MAGIC         "TALLYWAL"
#define TL_WAL_VERSION       1
#define TL_WAL_HEADER_BYTES  24
#define TL_WAL_RECORD_HEADER 16
/* Appenders wait when this much is waiting for the commit thread. */
#define TL_WAL_BUFFER_BYTES (4u << 20)
/* Outside ALWAYS, records nobody waits for are written at the latest this long after the first
 * of them was appended, or at once when this many bytes are waiting. */
#define TL_WAL_WRITE_DELAY_US 1000
#define TL_WAL_EAGER_BYTES    (256u << 10)
/* everysec: the interval between syncs. */
#define TL_WAL_SYNC_INTERVAL_MS 1000
/* After a failed write or sync, repairs are tried this often, the delay doubling from the
 * first to the second bound while they fail (wal.c explains the repair). */
#define TL_WAL_RETRY_MIN_MS 10
#define TL_WAL_RETRY_MAX_MS 250
/* The commit thread keeps a copy of what it wrote since the last sync, for a repair; a write
 * that would make the copy larger than this carries a sync, in every fsync mode. */
#define TL_WAL_UNSYNCED_MAX_BYTES (16u << 20)

struct tl_wal;

/* Formats DIR/NNNNNN.wal into buf. */
void tl_wal_path(char *buf, size_t cap, const char *dir, uint64_t number);

/* Creates segment `number` in dir and starts the commit thread. The first record appended gets
 * sequence number next_seq. */
int tl_wal_open(const char *dir, uint64_t number, uint64_t next_seq, enum tl_fsync_mode mode,
                struct tl_wal **out);

/* Appends one record; stores its sequence number in *seq. Thread-safe. The caller that needs
 * the record in the kernel or on disk waits with tl_wal_wait. While the WAL is broken by a
 * failed write or sync (until the commit thread repairs it), fails at once with that error
 * (a negated errno; the message names the file) and appends nothing; TL_ECLOSED once closing. */
int tl_wal_append(struct tl_wal *w, const void *key, size_t klen, const struct tl_record *r,
                  uint64_t *seq);

/* Records appended after this call go to a new segment `number`; the commit thread writes and
 * syncs the old segment completely before the first write to the new one. */
int tl_wal_roll(struct tl_wal *w, uint64_t number);

/* Waits until every record up to seq is written (or durable). Fails with the WAL's error if it
 * is broken before then: the records are kept and written after the repair, so a failed wait
 * means "not known written", not "lost". */
int tl_wal_wait(struct tl_wal *w, uint64_t seq, enum tl_wait what);
uint64_t tl_wal_written_seq(struct tl_wal *w);
uint64_t tl_wal_durable_seq(struct tl_wal *w);
/* The sequence number the next append will get. */
uint64_t tl_wal_next_seq(struct tl_wal *w);

/* Calls fn(arg) from the commit thread after each advance of the written or durable sequence
 * number (with the WAL's lock held: fn must be quick and must not call into the WAL). */
void tl_wal_set_notify(struct tl_wal *w, void (*fn)(void *arg), void *arg);

/* Writes and syncs everything appended so far, and waits. */
int tl_wal_sync(struct tl_wal *w);

void tl_wal_stats(struct tl_wal *w, uint64_t *bytes_written, uint64_t *syncs);
/* Failed writes or syncs that broke the WAL, repairs that ended it, and whether it is broken. */
void tl_wal_fault_stats(struct tl_wal *w, uint64_t *failures, uint64_t *repairs, bool *broken);

/* Writes and syncs everything, stops the commit thread, closes the segment. While broken, one
 * last repair is tried; if it fails, the error is returned (what was not written is lost). */
int tl_wal_close(struct tl_wal *w);

/* Recovery: calls fn for each record of the segment at path, in order. With is_last, a torn
 * tail is cut off (the file is truncated after the last whole record) and the segment is synced,
 * since recovery keeps it behind a new one; otherwise a torn tail is corruption. fn's non-zero
 * return stops the replay and is returned. *last_seq gets the last record's sequence number
 * (unchanged if there are none). */
typedef int (*tl_wal_replay_fn)(void *arg, uint64_t seq, const uint8_t *key, size_t klen,
                                const struct tl_record *r);
int tl_wal_replay(const char *path, bool is_last, tl_wal_replay_fn fn, void *arg,
                  uint64_t *last_seq);

#endif
