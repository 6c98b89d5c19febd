/*
 * record.h - the entry value: what one layer (WAL record, memtable cell, SSTable entry) says
 * about one key, and folding the layers of a key from newest to oldest into its value.
 *
 * Encoding of an entry value, shared by the WAL, SSTables and compaction:
 *
 *     byte 0    kind (low 7 bits: enum tl_kind) | 0x80 if an expiry follows
 *     varint64  expire_ms (unix ms; 0 = no expiry)          -- only with the 0x80 flag
 *     payload   PUT_INT, MERGE_INT: zigzag varint64
 *               PUT_BYTES: the remaining bytes of the value
 *               PUT_TYPED: the type tag (one byte, 1..255), then the remaining bytes
 *               DELETE, EXPIRE: nothing
 *
 * Meaning of each kind, newest first:
 *   PUT_INT / PUT_BYTES / PUT_TYPED
 *                        the key's whole value; its expiry is the flag's (none without it).
 *                        A typed value (TL_VAL_TYPED) is bytes under a caller's type tag.
 *   MERGE_INT            add delta to what older layers hold (absent counts as 0); with the
 *                        flag, also set the expiry; without, keep the older expiry.
 *   DELETE               the key does not exist (a tombstone).
 *   EXPIRE               set the expiry of the value older layers hold (flag always present).
 * A window bucket is a counter whose MERGE_INT records carry the bucket's expiry (the end of its
 * retention), so compaction drops it like any expired key: it needs no kind of its own.
 */
#ifndef TL_RECORD_H
#define TL_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tallystore.h"

enum tl_kind {
    TL_KIND_PUT_INT = 1,
    TL_KIND_PUT_BYTES = 2,
    TL_KIND_MERGE_INT = 3,
    TL_KIND_DELETE = 4,
    TL_KIND_EXPIRE = 5,
    TL_KIND_PUT_TYPED = 6,
};

#define TL_KIND_FLAG_EXPIRY 0x80
#define TL_KIND_MASK        0x7f
/* An encoded value without its bytes payload is at most this long. */
#define TL_RECORD_HEADER_MAX (1 + 10 + 10)

/* A decoded entry value. bytes points into the buffer it was decoded from. */
struct tl_record {
    uint8_t kind;
    bool has_expiry;
    int64_t expire_ms; /* meaningful when has_expiry; 0 means "no expiry" */
    int64_t i;         /* PUT_INT value or MERGE_INT delta */
    uint8_t tag;       /* PUT_TYPED's type tag */
    const uint8_t *bytes;
    size_t len;
};

static inline bool tl_kind_is_final(uint8_t kind)
{
    return kind == TL_KIND_PUT_INT || kind == TL_KIND_PUT_BYTES || kind == TL_KIND_PUT_TYPED ||
           kind == TL_KIND_DELETE;
}

/* Kinds whose value is bytes (r->bytes, r->len). */
static inline bool tl_kind_has_bytes(uint8_t kind)
{
    return kind == TL_KIND_PUT_BYTES || kind == TL_KIND_PUT_TYPED;
}

/* As Redis does, a key is expired once the clock is past its expiry time. */
static inline bool tl_expired(int64_t expire_ms, int64_t now_ms)
{
    return expire_ms != 0 && now_ms > expire_ms;
}

/* Bytes tl_record_encode will write for r. */
size_t tl_record_encoded_len(const struct tl_record *r);
/* Writes r at out (room for tl_record_encoded_len bytes); returns the length. */
size_t tl_record_encode(const struct tl_record *r, uint8_t *out);
/* Decodes [p, p+len). Returns 0, or TL_ECORRUPT for an unknown kind or truncated input. */
int tl_record_decode(const uint8_t *p, size_t len, struct tl_record *r);

/*
 * Folding: feed a key's records newest first with tl_fold_add until it returns true (a final
 * record was reached) or the layers run out, then read the result.
 */
struct tl_fold {
    bool any;         /* a record was added */
    bool done;        /* a PUT or DELETE was reached */
    bool have_expiry; /* the newest expiry seen above the base */
    int64_t expire_ms;
    uint64_t delta; /* sum of MERGE deltas above the base, wrapping (see record.c) */
    bool have_merge;
    struct tl_record base; /* the final record, when done */
    uint8_t *owned;        /* a copy of base's bytes that the fold owns (tl_fold_free) */
};

void tl_fold_init(struct tl_fold *f);
void tl_fold_free(struct tl_fold *f);
/* Copies base's bytes (when done with a byte value) into memory the fold owns, so the result
 * outlives the layer it was read from. Returns 0 or -ENOMEM. */
int tl_fold_own_bytes(struct tl_fold *f);
/* Adds the next older record. Returns true once the fold needs no older records. */
bool tl_fold_add(struct tl_fold *f, const struct tl_record *older);

/* The folded result as one record that can replace all the folded ones: a PUT or DELETE when
 * the fold is done, or reached the bottom (bottom = no older layers exist), else a MERGE_INT or
 * EXPIRE that still needs older layers. With now_ms > 0, a result whose expiry has passed
 * (tl_expired) becomes DELETE: the key is gone whatever older layers hold. Returns TL_ENOTINT when
 * a merge sits on a byte value (never written by the engine: the data is corrupt). */
int tl_fold_result(const struct tl_fold *f, bool bottom, int64_t now_ms, struct tl_record *out);

/* A record that is final (PUT or DELETE) as a tl_val; bytes are copied. Returns 1 if the key
 * exists, 0 for DELETE, or -ENOMEM. */
int tl_record_to_val(const struct tl_record *r, struct tl_val *out);

#endif
