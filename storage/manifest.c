/*
 * manifest.c - the manifest (format in manifest.h): version edits, the state they add up to,
 * and switching CURRENT from one manifest file to the next.
 *
 * State. The manifest keeps the net result of every edit: the live files (an unordered array,
 * with an open-addressing index from file number to position, so a deletion costs O(1)), the
 * log number, the next file number and the last sequence number. An edit's deletions apply
 * before its additions, so one edit can move a file from one level to another. The three
 * numbers only ever grow: an edit that carries a smaller one than the state leaves it as is.
 *
 * Checking. tl_manifest_log checks an edit before writing it (levels in range, every deleted
 * file live at that level, no added file already live unless the edit deletes it, nothing
 * named twice) and fails with -EINVAL without writing; replay applies the same checks and calls
 * a violation corruption. Copies of the added files and room in the arrays are taken before
 * the write, so once the record is on disk applying it cannot fail.
 *
 * Files. At every open a fresh manifest is written holding one snapshot edit, CURRENT is
 * switched to it, and older MANIFEST-* files are removed. This drops any torn last record, and
 * bounds the log. The new manifest's number is taken from the state's next file number (a new
 * database gets MANIFEST-000001, so its first free file number is 2), and the snapshot records
 * the bump. File numbers are unique per kind of file, not across kinds: the engine may have
 * handed out that number to a table or WAL segment it has not logged yet, which is harmless
 * since the names differ (NNNNNN.sst, NNNNNN.wal, MANIFEST-NNNNNN).
 *
 * Rolling. Before an append, if the file has reached roll_at, a new manifest with a snapshot
 * is written first and made current, and the old file removed; the edit then goes to the new
 * file. roll_at is TL_MANIFEST_ROLL_BYTES, or twice the snapshot if that is larger, so a state
 * whose snapshot alone passes the bound does not roll at every edit. If the roll fails before
 * CURRENT is renamed, nothing has changed and the edit is not logged.
 *
 * Failures. A failed append (a write error, a short write, a failed fdatasync) leaves the file
 * ending in a torn record or in one whose durability is unknown; the state in memory does not
 * take the edit. Nothing more is ever appended to that file: the next tl_manifest_log first
 * switches to a new file holding a snapshot of the state without the failed edit, so a record
 * is never written after a torn one, and once the switch is done the failed edit is in no file
 * CURRENT can name (until then, recovery from the old file may or may not see it; the engine
 * keeps the tables such an edit adds, tl_db_log_edit_locked). A switch that fails after the
 * rename of CURRENT leaves both files and is done again at the next edit, with a new number
 * (the file CURRENT may name is never truncated). Each failure is reported to the caller; the
 * manifest itself never stops.
 *
 * CURRENT is replaced by writing CURRENT.tmp, syncing it, renaming it over CURRENT and syncing
 * the directory. Every read, write and sync of these files goes through uring_io.
 *
 * Calls on one manifest must be serialized by the caller (the engine holds its mutex).
 */
#include "manifest.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coding.h"
#include "crc32c.h"
#include "error.h"
#include "uring_io.h"

#define MAN_HEADER_BYTES 16 /* magic 8, version 4, masked CRC 4 */
#define MAN_FRAME_BYTES  8  /* masked CRC 4, payload length 4 */
#define MAN_NAME_PREFIX  "MANIFEST-"
#define MAN_NAME_BYTES   32
#define MAN_PATH_BYTES   PATH_MAX
#define MAN_WHY_BYTES    256
/* A manifest file larger than this is refused rather than read into memory: rolling keeps
 * real ones near TL_MANIFEST_ROLL_BYTES or twice a snapshot. */
#define MAN_MAX_FILE_BYTES (1ull << 30)
/* A record's payload is at most this long (a snapshot of a very large database). */
#define MAN_MAX_PAYLOAD (UINT32_MAX)
/* CURRENT holds one line: "MANIFEST-" and up to 20 digits and a newline. */
#define MAN_CURRENT_MAX_BYTES 64
#define MAN_MAX_NUMBER_DIGITS 20
#define MAN_INDEX_MIN_SLOTS   16
#define MAN_EDIT_MIN_CAP      4

enum man_tag {
    TAG_LOG_NUMBER = 1,
    TAG_NEXT_FILE = 2,
    TAG_LAST_SEQ = 3,
    TAG_ADD_FILE = 4,
    TAG_DELETE_FILE = 5,
};

/* ---- Edits ---- */

void tl_edit_init(struct tl_version_edit *e)
{
    memset(e, 0, sizeof *e);
}

int tl_file_meta_copy(struct tl_file_meta *dst, const struct tl_file_meta *src)
{
    uint8_t *s = NULL, *l = NULL;
    if (src->smallest_len && !(s = malloc(src->smallest_len)))
        goto nomem;
    if (src->largest_len && !(l = malloc(src->largest_len)))
        goto nomem;
    if (s)
        memcpy(s, src->smallest, src->smallest_len);
    if (l)
        memcpy(l, src->largest, src->largest_len);
    *dst = *src;
    dst->smallest = s;
    dst->largest = l;
    return 0;

nomem:
    free(s);
    return tl_error(-ENOMEM, "out of memory copying the keys of table %06" PRIu64, src->number);
}

void tl_file_meta_free(struct tl_file_meta *m)
{
    free(m->smallest);
    free(m->largest);
    m->smallest = m->largest = NULL;
    m->smallest_len = m->largest_len = 0;
}

/* Makes room for one more element in an array of *cap elements of size each. */
static int grow(void **arr, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : MAN_EDIT_MIN_CAP;
    void *p = realloc(*arr, c * size);
    if (!p)
        return tl_error(-ENOMEM, "out of memory growing a version edit to %zu entries", c);
    *arr = p;
    *cap = c;
    return 0;
}

int tl_edit_add_file(struct tl_version_edit *e, const struct tl_file_meta *meta)
{
    int rc = grow((void **)&e->added, &e->cap_added, e->n_added, sizeof *e->added);
    if (rc < 0)
        return rc;
    rc = tl_file_meta_copy(&e->added[e->n_added], meta);
    if (rc < 0)
        return rc;
    e->n_added++;
    return 0;
}

int tl_edit_delete_file(struct tl_version_edit *e, int level, uint64_t number)
{
    int rc = grow((void **)&e->deleted, &e->cap_deleted, e->n_deleted, sizeof *e->deleted);
    if (rc < 0)
        return rc;
    e->deleted[e->n_deleted++] = (struct tl_file_ref){.level = level, .number = number};
    return 0;
}

void tl_edit_free(struct tl_version_edit *e)
{
    for (size_t i = 0; i < e->n_added; i++)
        tl_file_meta_free(&e->added[i]);
    free(e->added);
    free(e->deleted);
    tl_edit_init(e);
}

/* ---- Encoding ---- */

static size_t meta_encoded_len(const struct tl_file_meta *m)
{
    return tl_varint_len(TAG_ADD_FILE) + tl_varint_len((uint64_t)m->level) +
           tl_varint_len(m->number) + tl_varint_len(m->size_bytes) + tl_varint_len(m->entries) +
           tl_varint_len(m->raw_bytes) + tl_varint_len(m->smallest_len) + m->smallest_len +
           tl_varint_len(m->largest_len) + m->largest_len + tl_varint_len(m->expiring_entries) +
           tl_varint_len((uint64_t)m->expire_p50_ms);
}

static size_t edit_encoded_len(const struct tl_version_edit *e)
{
    size_t n = 0;
    if (e->has_log_number)
        n += 1 + tl_varint_len(e->log_number);
    if (e->has_next_file)
        n += 1 + tl_varint_len(e->next_file_number);
    if (e->has_last_seq)
        n += 1 + tl_varint_len(e->last_seq);
    for (size_t i = 0; i < e->n_deleted; i++)
        n += 1 + tl_varint_len((uint64_t)e->deleted[i].level) + tl_varint_len(e->deleted[i].number);
    for (size_t i = 0; i < e->n_added; i++)
        n += meta_encoded_len(&e->added[i]);
    return n;
}

static uint8_t *put_bytes(uint8_t *p, const uint8_t *b, size_t len)
{
    p += tl_put_varint(p, len);
    if (len)
        memcpy(p, b, len);
    return p + len;
}

/* Tags are below 128: one byte each. Deletions are written before additions, the order in
 * which they apply. */
static size_t edit_encode(const struct tl_version_edit *e, uint8_t *out)
{
    uint8_t *p = out;
    if (e->has_log_number) {
        *p++ = TAG_LOG_NUMBER;
        p += tl_put_varint(p, e->log_number);
    }
    if (e->has_next_file) {
        *p++ = TAG_NEXT_FILE;
        p += tl_put_varint(p, e->next_file_number);
    }
    if (e->has_last_seq) {
        *p++ = TAG_LAST_SEQ;
        p += tl_put_varint(p, e->last_seq);
    }
    for (size_t i = 0; i < e->n_deleted; i++) {
        *p++ = TAG_DELETE_FILE;
        p += tl_put_varint(p, (uint64_t)e->deleted[i].level);
        p += tl_put_varint(p, e->deleted[i].number);
    }
    for (size_t i = 0; i < e->n_added; i++) {
        const struct tl_file_meta *m = &e->added[i];
        *p++ = TAG_ADD_FILE;
        p += tl_put_varint(p, (uint64_t)m->level);
        p += tl_put_varint(p, m->number);
        p += tl_put_varint(p, m->size_bytes);
        p += tl_put_varint(p, m->entries);
        p += tl_put_varint(p, m->raw_bytes);
        p = put_bytes(p, m->smallest, m->smallest_len);
        p = put_bytes(p, m->largest, m->largest_len);
        p += tl_put_varint(p, m->expiring_entries);
        p += tl_put_varint(p, (uint64_t)m->expire_p50_ms);
    }
    return (size_t)(p - out);
}

/* Builds the framed record for e (with room for a file header in front when header is set).
 * *out is malloc'd; *len is its total length. */
static int record_build(const struct tl_version_edit *e, bool header, uint8_t **out, size_t *len)
{
    size_t payload = edit_encoded_len(e);
    if (payload > MAN_MAX_PAYLOAD)
        return tl_error(-EFBIG, "a manifest edit of %zu bytes is too large to record", payload);
    size_t front = header ? MAN_HEADER_BYTES : 0;
    uint8_t *buf = malloc(front + MAN_FRAME_BYTES + payload);
    if (!buf)
        return tl_error(-ENOMEM, "out of memory encoding a manifest edit of %zu bytes", payload);
    if (header) {
        memcpy(buf, TL_MANIFEST_MAGIC, 8);
        tl_put_u32(buf + 8, TL_MANIFEST_VERSION);
        tl_put_u32(buf + 12, tl_crc32c_mask(tl_crc32c(buf, 12)));
    }
    uint8_t *rec = buf + front;
    size_t n = edit_encode(e, rec + MAN_FRAME_BYTES);
    /* The length computed and the bytes written agree, or the record would be unreadable. */
    assert(n == payload);
    (void)n;
    tl_put_u32(rec, tl_crc32c_mask(tl_crc32c(rec + MAN_FRAME_BYTES, payload)));
    tl_put_u32(rec + 4, (uint32_t)payload);
    *out = buf;
    *len = front + MAN_FRAME_BYTES + payload;
    return 0;
}

/* ---- Decoding ---- */

struct cursor {
    const uint8_t *p, *end;
    bool bad;
};

static uint64_t get_varint(struct cursor *c)
{
    uint64_t v = 0;
    if (c->bad)
        return 0;
    size_t n = tl_get_varint(c->p, c->end, &v);
    if (!n) {
        c->bad = true;
        return 0;
    }
    c->p += n;
    return v;
}

static const uint8_t *get_key(struct cursor *c, size_t *len)
{
    uint64_t n = get_varint(c);
    if (c->bad || n > TL_MAX_KEY_BYTES || n > (uint64_t)(c->end - c->p)) {
        c->bad = true;
        return NULL;
    }
    const uint8_t *k = c->p;
    c->p += n;
    *len = (size_t)n;
    return k;
}

static int get_level(struct cursor *c)
{
    uint64_t level = get_varint(c);
    if (level >= TL_MAX_LEVELS)
        c->bad = true;
    return c->bad ? 0 : (int)level;
}

/* Decodes one payload into e (initialized here). Returns 0, 1 if the payload is malformed, or
 * -ENOMEM. */
static int edit_decode(const uint8_t *p, size_t len, struct tl_version_edit *e)
{
    struct cursor c = {.p = p, .end = p + len};
    tl_edit_init(e);
    while (c.p < c.end && !c.bad) {
        uint64_t tag = get_varint(&c);
        int rc = 0;
        switch (tag) {
        case TAG_LOG_NUMBER:
            e->log_number = get_varint(&c);
            e->has_log_number = true;
            break;
        case TAG_NEXT_FILE:
            e->next_file_number = get_varint(&c);
            e->has_next_file = true;
            break;
        case TAG_LAST_SEQ:
            e->last_seq = get_varint(&c);
            e->has_last_seq = true;
            break;
        case TAG_ADD_FILE: {
            struct tl_file_meta m = {0};
            m.level = get_level(&c);
            m.number = get_varint(&c);
            m.size_bytes = get_varint(&c);
            m.entries = get_varint(&c);
            m.raw_bytes = get_varint(&c);
            /* The keys point into the payload; tl_edit_add_file copies them. */
            m.smallest = (uint8_t *)get_key(&c, &m.smallest_len);
            m.largest = (uint8_t *)get_key(&c, &m.largest_len);
            m.expiring_entries = get_varint(&c);
            m.expire_p50_ms = (int64_t)get_varint(&c);
            if (!c.bad)
                rc = tl_edit_add_file(e, &m);
            break;
        }
        case TAG_DELETE_FILE: {
            int level = get_level(&c);
            uint64_t number = get_varint(&c);
            if (!c.bad)
                rc = tl_edit_delete_file(e, level, number);
            break;
        }
        default:
            c.bad = true;
        }
        if (rc < 0) {
            tl_edit_free(e);
            return rc;
        }
    }
    if (c.bad) {
        tl_edit_free(e);
        return 1;
    }
    return 0;
}

/* ---- The live-file index: file number -> position in state.added ---- */

#define SLOT_EMPTY SIZE_MAX

struct file_slot {
    uint64_t number;
    size_t pos; /* SLOT_EMPTY if unused */
};

struct file_index {
    struct file_slot *slots;
    size_t cap; /* a power of two; at most half full */
    size_t count;
};

static size_t slot_home(uint64_t number, size_t cap)
{
    uint64_t h = number * 0x9e3779b97f4a7c15ull;
    return (size_t)(h ^ (h >> 29)) & (cap - 1);
}

static size_t index_find(const struct file_index *ix, uint64_t number)
{
    if (!ix->cap)
        return SLOT_EMPTY;
    for (size_t i = slot_home(number, ix->cap);; i = (i + 1) & (ix->cap - 1)) {
        if (ix->slots[i].pos == SLOT_EMPTY)
            return SLOT_EMPTY;
        if (ix->slots[i].number == number)
            return i;
    }
}

static void index_put(struct file_index *ix, uint64_t number, size_t pos)
{
    size_t i = slot_home(number, ix->cap);
    while (ix->slots[i].pos != SLOT_EMPTY)
        i = (i + 1) & (ix->cap - 1);
    ix->slots[i] = (struct file_slot){.number = number, .pos = pos};
    ix->count++;
}

/* Makes room for more entries without passing half full. */
static int index_reserve(struct file_index *ix, size_t more)
{
    size_t need = ix->count + more;
    if (need <= ix->cap / 2)
        return 0;
    size_t cap = ix->cap ? ix->cap : MAN_INDEX_MIN_SLOTS;
    while (cap / 2 < need)
        cap *= 2;
    struct file_slot *slots = malloc(cap * sizeof *slots);
    if (!slots)
        return tl_error(-ENOMEM, "out of memory indexing %zu live tables", need);
    for (size_t i = 0; i < cap; i++)
        slots[i].pos = SLOT_EMPTY;
    struct file_index grown = {.slots = slots, .cap = cap};
    for (size_t i = 0; i < ix->cap; i++)
        if (ix->slots[i].pos != SLOT_EMPTY)
            index_put(&grown, ix->slots[i].number, ix->slots[i].pos);
    free(ix->slots);
    *ix = grown;
    return 0;
}

/* Removes slot i, shifting back the entries of its probe run that may no longer be reached. */
static void index_remove(struct file_index *ix, size_t i)
{
    size_t mask = ix->cap - 1;
    for (size_t j = (i + 1) & mask; ix->slots[j].pos != SLOT_EMPTY; j = (j + 1) & mask) {
        size_t k = slot_home(ix->slots[j].number, ix->cap);
        /* The entry at j stays if its home lies cyclically in (i, j]. */
        bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            ix->slots[i] = ix->slots[j];
            i = j;
        }
    }
    ix->slots[i].pos = SLOT_EMPTY;
    ix->count--;
}

/* ---- The manifest ---- */

struct tl_manifest {
    char *dir;
    char name[MAN_NAME_BYTES];
    char path[MAN_PATH_BYTES];
    uint64_t number;
    int fd;
    uint64_t size;                /* the end of the file, where the next record goes */
    uint64_t roll_at;             /* roll before appending once size reaches this */
    bool needs_switch;            /* an append failed: the next edit goes to a new file */
    struct tl_version_edit state; /* live files in added, unordered */
    struct file_index index;
};

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Checks e against the state (see the top of the file). Returns 0 if it may be applied, 1 with
 * the reason in why if not, or -ENOMEM. */
static int edit_check(const struct tl_manifest *m, const struct tl_version_edit *e, char *why,
                      size_t cap)
{
    int rc = 1;
    uint64_t *dels = malloc((e->n_deleted + 1) * sizeof *dels);
    uint64_t *adds = malloc((e->n_added + 1) * sizeof *adds);
    if (!dels || !adds) {
        rc = tl_error(-ENOMEM, "out of memory checking a manifest edit");
        goto out;
    }
    for (size_t i = 0; i < e->n_deleted; i++) {
        const struct tl_file_ref *d = &e->deleted[i];
        size_t slot = index_find(&m->index, d->number);
        if (d->level < 0 || d->level >= TL_MAX_LEVELS || slot == SLOT_EMPTY ||
            m->state.added[m->index.slots[slot].pos].level != d->level) {
            snprintf(why, cap, "deletes table %06" PRIu64 " from level %d, where it is not",
                     d->number, d->level);
            goto out;
        }
        dels[i] = d->number;
    }
    for (size_t i = 0; i < e->n_added; i++) {
        const struct tl_file_meta *a = &e->added[i];
        if (a->level < 0 || a->level >= TL_MAX_LEVELS) {
            snprintf(why, cap, "adds table %06" PRIu64 " to level %d, which does not exist",
                     a->number, a->level);
            goto out;
        }
        adds[i] = a->number;
    }
    qsort(dels, e->n_deleted, sizeof *dels, cmp_u64);
    qsort(adds, e->n_added, sizeof *adds, cmp_u64);
    for (size_t i = 1; i < e->n_deleted; i++)
        if (dels[i] == dels[i - 1]) {
            snprintf(why, cap, "deletes table %06" PRIu64 " twice", dels[i]);
            goto out;
        }
    for (size_t i = 0; i < e->n_added; i++) {
        if (i > 0 && adds[i] == adds[i - 1]) {
            snprintf(why, cap, "adds table %06" PRIu64 " twice", adds[i]);
            goto out;
        }
        if (index_find(&m->index, adds[i]) != SLOT_EMPTY &&
            !bsearch(&adds[i], dels, e->n_deleted, sizeof *dels, cmp_u64)) {
            snprintf(why, cap, "adds table %06" PRIu64 ", which is already live", adds[i]);
            goto out;
        }
    }
    rc = 0;
out:
    free(dels);
    free(adds);
    return rc;
}

/* Takes everything applying e needs: room in the state and the index, and copies of the added
 * files (*copies, NULL when there are none). After this, edit_apply cannot fail. */
static int edit_prepare(struct tl_manifest *m, const struct tl_version_edit *e,
                        struct tl_file_meta **copies)
{
    *copies = NULL;
    size_t need = m->state.n_added + e->n_added;
    if (need > m->state.cap_added) {
        size_t cap = m->state.cap_added ? m->state.cap_added : MAN_EDIT_MIN_CAP;
        while (cap < need)
            cap *= 2;
        struct tl_file_meta *a = realloc(m->state.added, cap * sizeof *a);
        if (!a)
            return tl_error(-ENOMEM, "out of memory for %zu live tables", need);
        m->state.added = a;
        m->state.cap_added = cap;
    }
    int rc = index_reserve(&m->index, e->n_added);
    if (rc < 0)
        return rc;
    if (!e->n_added)
        return 0;
    struct tl_file_meta *c = calloc(e->n_added, sizeof *c);
    if (!c)
        return tl_error(-ENOMEM, "out of memory copying %zu tables", e->n_added);
    for (size_t i = 0; i < e->n_added; i++) {
        rc = tl_file_meta_copy(&c[i], &e->added[i]);
        if (rc < 0) {
            for (size_t j = 0; j < i; j++)
                tl_file_meta_free(&c[j]);
            free(c);
            return rc;
        }
    }
    *copies = c;
    return 0;
}

static void copies_free(struct tl_file_meta *copies, size_t n)
{
    for (size_t i = 0; copies && i < n; i++)
        tl_file_meta_free(&copies[i]);
    free(copies);
}

/* Applies a checked and prepared edit; the copies move into the state. */
static void edit_apply(struct tl_manifest *m, const struct tl_version_edit *e,
                       struct tl_file_meta *copies)
{
    struct tl_version_edit *s = &m->state;
    if (e->has_log_number && e->log_number > s->log_number)
        s->log_number = e->log_number;
    if (e->has_next_file && e->next_file_number > s->next_file_number)
        s->next_file_number = e->next_file_number;
    if (e->has_last_seq && e->last_seq > s->last_seq)
        s->last_seq = e->last_seq;
    for (size_t i = 0; i < e->n_deleted; i++) {
        size_t slot = index_find(&m->index, e->deleted[i].number);
        size_t pos = m->index.slots[slot].pos;
        tl_file_meta_free(&s->added[pos]);
        index_remove(&m->index, slot);
        size_t last = s->n_added - 1;
        if (pos != last) {
            s->added[pos] = s->added[last];
            m->index.slots[index_find(&m->index, s->added[pos].number)].pos = pos;
        }
        s->n_added--;
    }
    for (size_t i = 0; i < e->n_added; i++) {
        s->added[s->n_added] = copies[i];
        index_put(&m->index, copies[i].number, s->n_added);
        s->n_added++;
    }
    free(copies);
}

/* ---- Reading a manifest file ---- */

/* Reads the whole file at path into *buf. */
static int read_whole(const char *path, uint8_t **buf, uint64_t *size)
{
    *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return tl_error(-errno, "%s: cannot open manifest: %s", path, strerror(errno));
    int rc = 0;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        rc = tl_error(-errno, "%s: cannot stat manifest: %s", path, strerror(errno));
        goto out;
    }
    if ((uint64_t)st.st_size > MAN_MAX_FILE_BYTES) {
        rc = tl_error(TL_ECORRUPT,
                      "%s: manifest of %lld bytes is over the limit of %llu bytes: it is not a "
                      "manifest this engine wrote; restore from a backup",
                      path, (long long)st.st_size, (unsigned long long)MAN_MAX_FILE_BYTES);
        goto out;
    }
    *size = (uint64_t)st.st_size;
    *buf = malloc(*size ? *size : 1);
    if (!*buf) {
        rc = tl_error(-ENOMEM, "%s: out of memory reading %" PRIu64 " bytes", path, *size);
        goto out;
    }
    int64_t got = tl_io_pread(fd, *buf, *size, 0);
    if (got < 0) {
        rc = tl_error((int)got, "%s: read failed: %s", path, strerror((int)-got));
    } else if ((uint64_t)got != *size) {
        rc = tl_error(-EIO,
                      "%s: short read (%lld of %" PRIu64 " bytes): the file changed while "
                      "being read",
                      path, (long long)got, *size);
    }
    if (rc < 0) {
        free(*buf);
        *buf = NULL;
    }
out:
    close(fd);
    return rc;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

/* Calls fn for every edit of the manifest in buf. A torn last record (one that runs past the
 * end, or a bad one followed only by zeros) ends the file quietly; any other bad record is
 * corruption. */
static int manifest_parse(const char *path, const uint8_t *buf, uint64_t size,
                          tl_manifest_edit_fn fn, void *arg)
{
    if (size < MAN_HEADER_BYTES)
        return tl_error(TL_ECORRUPT,
                        "%s: %" PRIu64 " bytes is too short for a manifest header at offset 0: "
                        "the file is damaged; restore from a backup",
                        path, size);
    if (memcmp(buf, TL_MANIFEST_MAGIC, 8) != 0 ||
        tl_crc32c_unmask(tl_get_u32(buf + 12)) != tl_crc32c(buf, 12))
        return tl_error(TL_ECORRUPT,
                        "%s: bad manifest header at offset 0 (magic or checksum): the file is not "
                        "a Tally manifest or is damaged; restore from a backup",
                        path);
    uint32_t version = tl_get_u32(buf + 8);
    if (version != TL_MANIFEST_VERSION)
        return tl_error(TL_ECORRUPT,
                        "%s: manifest format version %u at offset 8 is not supported (this build "
                        "reads version %d): use a matching version of Tally",
                        path, version, TL_MANIFEST_VERSION);

    uint64_t off = MAN_HEADER_BYTES;
    while (off < size) {
        uint64_t left = size - off;
        if (left < MAN_FRAME_BYTES)
            break; /* torn inside the frame */
        uint32_t crc = tl_get_u32(buf + off);
        uint32_t len = tl_get_u32(buf + off + 4);
        if (len > left - MAN_FRAME_BYTES)
            break; /* torn: the record runs past the end */
        const uint8_t *payload = buf + off + MAN_FRAME_BYTES;
        uint64_t next = off + MAN_FRAME_BYTES + len;
        if (tl_crc32c_unmask(crc) != tl_crc32c(payload, len)) {
            if (all_zero(buf + next, (size_t)(size - next)))
                break; /* torn: the last record (or a zero-filled tail) */
            return tl_error(TL_ECORRUPT,
                            "%s: bad record checksum at offset %" PRIu64 " with %" PRIu64
                            " bytes after it: the manifest is damaged, not torn; restore from "
                            "a backup",
                            path, off, size - next);
        }
        struct tl_version_edit e;
        int rc = edit_decode(payload, len, &e);
        if (rc < 0)
            return rc;
        if (rc > 0)
            return tl_error(TL_ECORRUPT,
                            "%s: record at offset %" PRIu64 " has a valid checksum but is not a "
                            "well-formed version edit: written by a faulty build or damaged; "
                            "restore from a backup",
                            path, off);
        rc = fn(arg, off, &e);
        tl_edit_free(&e);
        if (rc != 0)
            return rc;
        off = next;
    }
    return 0;
}

int tl_manifest_read(const char *path, tl_manifest_edit_fn fn, void *arg)
{
    uint8_t *buf;
    uint64_t size;
    int rc = read_whole(path, &buf, &size);
    if (rc < 0)
        return rc;
    rc = manifest_parse(path, buf, size, fn, arg);
    free(buf);
    return rc;
}

struct replay {
    struct tl_manifest *m;
    const char *path;
};

static int replay_edit(void *arg, uint64_t off, const struct tl_version_edit *e)
{
    struct replay *r = arg;
    char why[MAN_WHY_BYTES];
    int rc = edit_check(r->m, e, why, sizeof why);
    if (rc < 0)
        return rc;
    if (rc > 0)
        return tl_error(TL_ECORRUPT,
                        "%s: the edit at offset %" PRIu64 " %s: the manifest does not describe "
                        "a consistent database; restore from a backup",
                        r->path, off, why);
    struct tl_file_meta *copies;
    rc = edit_prepare(r->m, e, &copies);
    if (rc < 0)
        return rc;
    edit_apply(r->m, e, copies);
    return 0;
}

/* ---- CURRENT ---- */

/* Reads DIR/CURRENT into name. Returns 0, 1 if there is no CURRENT, or an error. */
static int current_read(const char *dir, char *name, size_t cap, uint64_t *number)
{
    char path[MAN_PATH_BYTES];
    snprintf(path, sizeof path, "%s/CURRENT", dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        return 1;
    if (fd < 0)
        return tl_error(-errno, "%s: cannot open: %s", path, strerror(errno));
    char buf[MAN_CURRENT_MAX_BYTES + 1];
    int64_t got = tl_io_pread(fd, buf, MAN_CURRENT_MAX_BYTES, 0);
    close(fd);
    if (got < 0)
        return tl_error((int)got, "%s: read failed: %s", path, strerror((int)-got));
    buf[got] = 0;
    size_t plen = strlen(MAN_NAME_PREFIX);
    /* Past buf[got] the buffer holds nothing read: look for digits only within what was. */
    size_t digits = (size_t)got > plen ? strspn(buf + plen, "0123456789") : 0;
    bool ok = (size_t)got > plen && strncmp(buf, MAN_NAME_PREFIX, plen) == 0 && digits > 0 &&
              digits <= MAN_MAX_NUMBER_DIGITS && (size_t)got == plen + digits + 1 &&
              buf[plen + digits] == '\n' && plen + digits < cap;
    if (!ok)
        return tl_error(TL_ECORRUPT,
                        "%s: does not hold a manifest name (\"MANIFEST-NNNNNN\" and a newline) at "
                        "offset 0: restore it from a backup, or write the name of the newest "
                        "MANIFEST-* file of the directory into it",
                        path);
    memcpy(name, buf, plen + digits);
    name[plen + digits] = 0;
    *number = strtoull(buf + plen, NULL, 10);
    return 0;
}

/* Makes name current: CURRENT.tmp written and synced, renamed over CURRENT, directory synced.
 * *renamed tells whether CURRENT may have changed (set once the rename is done). */
static int current_write(const char *dir, const char *name, bool *renamed)
{
    char tmp[MAN_PATH_BYTES], cur[MAN_PATH_BYTES], line[MAN_NAME_BYTES + 1];
    *renamed = false;
    snprintf(tmp, sizeof tmp, "%s/CURRENT.tmp", dir);
    snprintf(cur, sizeof cur, "%s/CURRENT", dir);
    int n = snprintf(line, sizeof line, "%s\n", name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return tl_error(-errno, "%s: cannot create: %s", tmp, strerror(errno));
    int rc = tl_io_pwrite(fd, line, (size_t)n, 0, true);
    close(fd);
    if (rc < 0) {
        unlink(tmp);
        return tl_error(rc, "%s: cannot write and sync: %s", tmp, strerror(-rc));
    }
    if (rename(tmp, cur) < 0) {
        rc = tl_error(-errno, "cannot rename %s to %s: %s", tmp, cur, strerror(errno));
        unlink(tmp);
        return rc;
    }
    *renamed = true;
    rc = tl_io_sync_dir(dir);
    if (rc < 0)
        return tl_error(rc, "%s: cannot sync the directory after renaming CURRENT: %s", dir,
                        strerror(-rc));
    return 0;
}

/* ---- Switching to a new manifest file ---- */

/* Writes a new manifest file holding a snapshot of the state, makes it current and removes the
 * old file. Fails without changing anything unless CURRENT was renamed. */
static int manifest_switch(struct tl_manifest *m)
{
    uint64_t number = m->state.next_file_number;
    if (m->fd >= 0 && number <= m->number)
        number = m->number + 1;
    char name[MAN_NAME_BYTES], path[MAN_PATH_BYTES];
    snprintf(name, sizeof name, MAN_NAME_PREFIX "%06" PRIu64, number);
    snprintf(path, sizeof path, "%s/%s", m->dir, name);

    struct tl_version_edit snap = m->state;
    snap.has_log_number = snap.has_next_file = snap.has_last_seq = true;
    snap.next_file_number = number + 1;
    snap.deleted = NULL;
    snap.n_deleted = 0;
    uint8_t *buf;
    size_t len;
    int rc = record_build(&snap, true, &buf, &len);
    if (rc < 0)
        return rc;

    /* O_TRUNC: a file of this name can only be left by a switch that crashed before CURRENT
     * named it. */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = tl_error(-errno, "%s: cannot create manifest: %s", path, strerror(errno));
        free(buf);
        return rc;
    }
    rc = tl_io_pwrite(fd, buf, len, 0, true);
    free(buf);
    if (rc < 0) {
        rc = tl_error(rc, "%s: cannot write the manifest snapshot: %s", path, strerror(-rc));
        goto fail;
    }
    bool renamed;
    rc = current_write(m->dir, name, &renamed);
    if (rc < 0) {
        if (renamed) {
            /* CURRENT may name either file after a crash: keep both, and switch again at
             * the next edit to a file of a new number (this one must not be truncated). */
            close(fd);
            m->needs_switch = true;
            m->state.next_file_number = number + 1;
            return rc;
        }
        goto fail;
    }

    if (m->fd >= 0) {
        close(m->fd);
        /* The old file is no longer named by CURRENT; if the unlink fails it is only space,
         * and the next open removes it. */
        unlink(m->path);
    }
    m->fd = fd;
    m->number = number;
    memcpy(m->name, name, sizeof name);
    memcpy(m->path, path, sizeof path);
    m->size = len;
    m->roll_at = len * 2 > TL_MANIFEST_ROLL_BYTES ? len * 2 : TL_MANIFEST_ROLL_BYTES;
    m->state.next_file_number = number + 1;
    m->needs_switch = false;
    return 0;

fail:
    close(fd);
    unlink(path);
    return rc;
}

/* Removes MANIFEST-* files other than the current one, and a CURRENT.tmp left by a crash.
 * Best effort: a file that stays is only space, and is tried again at the next open. */
static void remove_stale(struct tl_manifest *m)
{
    DIR *d = opendir(m->dir);
    if (!d)
        return;
    struct dirent *de;
    char path[MAN_PATH_BYTES];
    while ((de = readdir(d))) {
        bool stale_manifest = strncmp(de->d_name, MAN_NAME_PREFIX, strlen(MAN_NAME_PREFIX)) == 0 &&
                              strcmp(de->d_name, m->name) != 0;
        if (stale_manifest || strcmp(de->d_name, "CURRENT.tmp") == 0) {
            snprintf(path, sizeof path, "%s/%s", m->dir, de->d_name);
            unlink(path);
        }
    }
    closedir(d);
}

static int cmp_level_number(const void *a, const void *b)
{
    const struct tl_file_meta *x = a, *y = b;
    if (x->level != y->level)
        return x->level < y->level ? -1 : 1;
    return x->number < y->number ? -1 : x->number > y->number;
}

/* Copies the state for the caller, files sorted by level, then number. */
static int state_copy_out(const struct tl_manifest *m, struct tl_version_edit *out)
{
    tl_edit_init(out);
    out->has_log_number = out->has_next_file = out->has_last_seq = true;
    out->log_number = m->state.log_number;
    out->next_file_number = m->state.next_file_number;
    out->last_seq = m->state.last_seq;
    for (size_t i = 0; i < m->state.n_added; i++) {
        int rc = tl_edit_add_file(out, &m->state.added[i]);
        if (rc < 0) {
            tl_edit_free(out);
            return rc;
        }
    }
    if (out->n_added > 1)
        qsort(out->added, out->n_added, sizeof *out->added, cmp_level_number);
    return 0;
}

int tl_manifest_open(const char *dir, struct tl_manifest **out, struct tl_version_edit *state)
{
    int rc;
    *out = NULL;
    tl_edit_init(state);
    struct tl_manifest *m = calloc(1, sizeof *m);
    if (!m)
        return tl_error(-ENOMEM, "out of memory opening the manifest in %s", dir);
    m->fd = -1;
    m->state.has_log_number = m->state.has_next_file = m->state.has_last_seq = true;
    m->state.next_file_number = 1; /* a new database: MANIFEST-000001, then 2 */
    m->dir = strdup(dir);
    if (!m->dir) {
        rc = tl_error(-ENOMEM, "out of memory opening the manifest in %s", dir);
        goto fail;
    }

    char old_name[MAN_NAME_BYTES];
    uint64_t old_number = 0;
    rc = current_read(dir, old_name, sizeof old_name, &old_number);
    if (rc < 0)
        goto fail;
    if (rc == 0) {
        char old_path[MAN_PATH_BYTES];
        snprintf(old_path, sizeof old_path, "%s/%s", dir, old_name);
        uint8_t *buf;
        uint64_t size;
        rc = read_whole(old_path, &buf, &size);
        if (rc == -ENOENT)
            rc = tl_error(TL_ECORRUPT,
                          "%s/CURRENT names %s, which does not exist: restore it from a backup, "
                          "or point CURRENT at the newest MANIFEST-* file of the directory",
                          dir, old_name);
        if (rc < 0)
            goto fail;
        struct replay r = {.m = m, .path = old_path};
        rc = manifest_parse(old_path, buf, size, replay_edit, &r);
        free(buf);
        if (rc < 0)
            goto fail;
        /* Never reuse the current file's name, even if its edits say otherwise. */
        if (m->state.next_file_number <= old_number)
            m->state.next_file_number = old_number + 1;
    }

    rc = manifest_switch(m);
    if (rc < 0)
        goto fail;
    remove_stale(m);
    rc = state_copy_out(m, state);
    if (rc < 0)
        goto fail;
    *out = m;
    return 0;

fail:
    tl_manifest_close(m);
    return rc;
}

int tl_manifest_log(struct tl_manifest *m, const struct tl_version_edit *edit)
{
    char why[MAN_WHY_BYTES];
    int rc = edit_check(m, edit, why, sizeof why);
    if (rc < 0)
        return rc;
    if (rc > 0)
        return tl_error(-EINVAL, "%s: refusing a version edit that %s; nothing was written",
                        m->path, why);
    if ((m->needs_switch || m->size >= m->roll_at) && (rc = manifest_switch(m)) < 0)
        return rc;

    struct tl_file_meta *copies;
    rc = edit_prepare(m, edit, &copies);
    if (rc < 0)
        return rc;
    uint8_t *rec;
    size_t len;
    rc = record_build(edit, false, &rec, &len);
    if (rc < 0) {
        copies_free(copies, edit->n_added);
        return rc;
    }
    rc = tl_io_pwrite(m->fd, rec, len, m->size, true);
    free(rec);
    if (rc < 0) {
        rc = tl_error(rc,
                      "%s: appending an edit at offset %" PRIu64 " failed: %s; the edit is not "
                      "applied, and the next one goes to a new manifest file",
                      m->path, m->size, strerror(-rc));
        m->needs_switch = true;
        copies_free(copies, edit->n_added);
        return rc;
    }
    m->size += len;
    edit_apply(m, edit, copies);
    return 0;
}

const char *tl_manifest_name(const struct tl_manifest *m)
{
    return m->name;
}

void tl_manifest_close(struct tl_manifest *m)
{
    if (!m)
        return;
    if (m->fd >= 0)
        close(m->fd);
    tl_edit_free(&m->state);
    free(m->index.slots);
    free(m->dir);
    free(m);
}
