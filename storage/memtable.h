/*
 * memtable.h - the in-memory layer: a fixed-capacity open-addressing hash table of cells over
 * an arena, shared by every writer thread.
 *
 * A slot is one 64-bit atomic word: the high 32 bits of the key's hash and the arena offset of
 * its cell. Inserting a key claims an empty slot with a compare-and-swap; the table is never
 * resized: when it passes TL_MEMTABLE_MAX_LOAD or its arena is spent, inserts fail and the
 * engine freezes it and starts a new one.
 *
 * A cell's value fields are atomics read under a per-cell sequence lock: readers never block,
 * and retry if a writer changed the cell while they read it. Writers of one key are serialized
 * by the engine (a striped lock over keys), so a cell has one writer at a time.
 *
 * A byte value of at most TL_CELL_INPLACE_MAX bytes is overwritten in place when a new value of
 * the same length replaces it (tl_cell_rewrite): a windowed counter's head, rewritten by every
 * WINCRBY, then takes no new arena space. Readers therefore copy such values into their
 * snapshot under the sequence lock (word by word, with atomic loads); longer values are never
 * changed once published, and snapshots point at them in the arena.
 *
 * A cell either knows the key's whole value (INT, BYTES, DELETED, or ABSENT: nothing anywhere,
 * nothing written here) or, when it was rebuilt from the WAL without reading older layers, only
 * what this memtable adds (MERGE: a delta, EXPIRE: an expiry) - record.h's kinds, folded.
 */
#ifndef TL_MEMTABLE_H
#define TL_MEMTABLE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "record.h"

/* Slots in use, as a fraction of all slots, at which the table counts as full. */
#define TL_MEMTABLE_MAX_LOAD_NUM 3
#define TL_MEMTABLE_MAX_LOAD_DEN 4
/* Arena bytes per slot when sizing the slot array from the arena size. */
#define TL_MEMTABLE_BYTES_PER_SLOT 48

enum tl_cell_state {
    TL_CELL_ABSENT = 0, /* the key exists nowhere; nothing written here */
    TL_CELL_INT = 1,
    TL_CELL_BYTES = 2,
    TL_CELL_DELETED = 3,
    TL_CELL_MERGE = 4,  /* base unknown: ival is a delta */
    TL_CELL_EXPIRE = 5, /* base unknown: only the expiry is known */
    TL_CELL_TYPED = 6,  /* bytes under a type tag (TL_VAL_TYPED) */
};

/* States whose value is bytes in the arena. */
static inline bool tl_cell_has_bytes(uint8_t state)
{
    return state == TL_CELL_BYTES || state == TL_CELL_TYPED;
}

struct tl_cell {
    _Atomic uint32_t version; /* odd while a writer is changing the cell */
    _Atomic uint8_t state;
    _Atomic uint8_t dirty;      /* written in this memtable: the flush must write it */
    _Atomic uint8_t has_expiry; /* MERGE and EXPIRE: an expiry (maybe 0: persist) was set */
    _Atomic uint8_t tag;        /* TYPED: the type tag */
    _Atomic int64_t ival;
    _Atomic int64_t expire_ms;
    _Atomic uint32_t bytes_off; /* arena offset of [u32 length][bytes] for BYTES */
    uint32_t klen;
    uint8_t key[]; /* the hash is not kept: the slot word holds its high half */
};

/* Byte values this long or shorter may be rewritten in place (a multiple of 8, less 4), and
 * the arena words they span with their length. */
#define TL_CELL_INPLACE_MAX   124
#define TL_CELL_INPLACE_WORDS ((4 + TL_CELL_INPLACE_MAX) / 8)

/* A consistent copy of a cell's value fields. bytes points into copy (a value of at most
 * TL_CELL_INPLACE_MAX bytes: keep the snapshot while using them) or into the arena. */
struct tl_cell_snap {
    uint8_t state;
    bool dirty;
    bool has_expiry;
    uint8_t tag;
    int64_t ival;
    int64_t expire_ms;
    const uint8_t *bytes;
    uint32_t len;
    uint64_t copy[TL_CELL_INPLACE_WORDS]; /* [u32 length][bytes] as in the arena */
};

/* A cell that a blind merge (tl_db_merge_expire) inserted ahead of its WAL record: MERGE and
 * never dirty. Until the merge publishes it, it says nothing about the key, and if the merge
 * fails it stays that way: readers, iterators and the flush pass over it. */
static inline bool tl_cell_is_placeholder(const struct tl_cell_snap *s)
{
    return s->state == TL_CELL_MERGE && !s->dirty;
}

/* The fields that change while the table is in use each start a cache line of their own, so
 * that lookups, which read the first line, do not share a line that inserts or readers entering
 * the table write (tl_memtable_new allocates the table at this alignment). */
#define TL_MEMTABLE_LINE 64

struct tl_memtable {
    _Atomic uint64_t *slots;
    uint64_t mask;
    uint8_t *arena;
    size_t arena_bytes;
    uint64_t max_entries;
    _Alignas(TL_MEMTABLE_LINE) _Atomic uint64_t arena_used;
    _Atomic uint64_t entries;
    /* Engine bookkeeping (db.c): writers inside (readers of the active table enter it too),
     * frozen flag, references from versions. */
    _Alignas(TL_MEMTABLE_LINE) _Atomic int64_t writers;
    _Atomic int frozen;
    int refs;                /* guarded by the engine's mutex */
    uint64_t wal_number;     /* oldest WAL segment holding records of this memtable */
    uint64_t last_seq;       /* set when frozen: no record of it is newer */
    struct tl_cell **sorted; /* set by tl_memtable_sort once frozen */
    size_t n_sorted;
};

/* A table whose arena holds arena_bytes (cells, keys and byte values). NULL if out of memory. */
struct tl_memtable *tl_memtable_new(size_t arena_bytes);
void tl_memtable_free(struct tl_memtable *m);
/* Empties the table for reuse (no thread may be using it). */
void tl_memtable_reset(struct tl_memtable *m);

struct tl_cell *tl_memtable_find(struct tl_memtable *m, const void *key, size_t klen,
                                 uint64_t hash);
/* Loads into the cache, without waiting, stage 0: the slot where key hash's probe starts;
 * 1: its cell (read through the slot); 2: the cell's byte value (read through the cell).
 * Reads the table without the engine's protection: it may be stale, never unsafe (tables are
 * reset, not freed, while the engine is open; a prefetch never faults). */
void tl_memtable_prefetch(const struct tl_memtable *m, uint64_t hash, int stage);
/* Inserts a cell for key holding *init (bytes copied into the arena). Returns the cell (an
 * existing one if another thread inserted the key first: *inserted tells), or NULL when the
 * table is full. */
struct tl_cell *tl_memtable_insert(struct tl_memtable *m, const void *key, size_t klen,
                                   uint64_t hash, const struct tl_cell_snap *init, bool *inserted);

void tl_cell_read(const struct tl_memtable *m, const struct tl_cell *c, struct tl_cell_snap *out);
/* Copies a byte value into the arena ahead of tl_cell_publish; returns its offset, or 0 when
 * there is no room. */
uint32_t tl_memtable_store_bytes(struct tl_memtable *m, const void *bytes, uint32_t len);
/* Publishes s in c, with a byte value already stored at bytes_off (0 for other states). */
void tl_cell_publish(struct tl_cell *c, const struct tl_cell_snap *s, uint32_t bytes_off);
/* Stores s in c: a short byte value of the old one's length over it in place, other byte
 * values copied into the arena. Returns false, changing nothing, when the arena has no room
 * (the table is then full). One writer per cell at a time. */
bool tl_cell_write(struct tl_memtable *m, struct tl_cell *c, const struct tl_cell_snap *s);
/* The arena offset of c's byte value when a new value s can overwrite it in place (both of one
 * length, at most TL_CELL_INPLACE_MAX); else 0. Only c's writer may ask. */
uint32_t tl_cell_inplace_off(const struct tl_memtable *m, struct tl_cell *c,
                             const struct tl_cell_snap *s);
/* Publishes s in c, writing its bytes over the value at boff (from tl_cell_inplace_off). */
void tl_cell_rewrite(struct tl_memtable *m, struct tl_cell *c, const struct tl_cell_snap *s,
                     uint32_t boff);

/* The cell's layer as a record (for folding and flushing). bytes point into the arena. */
void tl_cell_snap_to_record(const struct tl_cell_snap *s, struct tl_record *r);
/* A record (final, or partial: MERGE/EXPIRE) as a cell state; bytes still point at r's. */
void tl_record_to_cell_snap(const struct tl_record *r, struct tl_cell_snap *s);

bool tl_memtable_full(const struct tl_memtable *m);
size_t tl_memtable_bytes_used(const struct tl_memtable *m);

/* Sorts the cells of a frozen table by key into m->sorted. */
int tl_memtable_sort(struct tl_memtable *m);
/* The same with the quicksort's depth bound given: past it the sort is a heapsort (0: at once).
 * For tests of both paths; tl_memtable_sort uses 2 log2(n) + 2. */
int tl_memtable_sort_depth(struct tl_memtable *m, int depth);
/* The (at most max) smallest keys after (key, klen) - or at/after it with inclusive - in key
 * order, from a table that may be changing; returns how many were stored in out. */
size_t tl_memtable_collect(struct tl_memtable *m, const void *key, size_t klen, bool inclusive,
                           struct tl_cell **out, size_t max);

#endif
