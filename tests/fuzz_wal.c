/*
 * fuzz_wal.c - libFuzzer target for WAL replay (tl_wal_replay in storage/wal.c), including the
 * classification of a bad record as a torn tail or as corruption.
 *
 * The input is the bytes of segment 000007.wal. It is written to a scratch file and replayed as
 * an older segment (a torn tail is corruption, nothing is written), then as the last segment
 * (a torn tail is cut off), then, if that succeeded, once more as an older segment. Then the
 * same again with the header and record checksums recomputed (see fuzz_storage.h), so that
 * mutations reach the decoding of record bodies.
 *
 * Besides crashes, sanitizer reports and leaks, the target checks the promises of wal.h:
 * sequence numbers handed to the callback increase by one; a failure returns a negative code
 * with a message; a segment that replays as an older one replays the same as the last one and
 * is not cut; one that fails as an older segment but not as the last was cut, after the same
 * records; and a segment once cut replays whole, as an older segment, to the same records.
 *
 * Build: see tests/test_fuzz_wal.sh (clang -fsanitize=fuzzer,address,undefined with the
 * sources of storage/).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_storage.h"
#include "record.h"
#include "wal.h"

static char segment_path[FUZZ_PATH_BYTES];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_setup("fuzz-wal");
    fuzz_path(segment_path, "000007.wal");
    return 0;
}

/* The record CRC covers the length field too; a body holds at least a sequence number, a key
 * length and a kind. */
static const struct fuzz_framing framing = {
    .header_bytes = TL_WAL_HEADER_BYTES, .crc_covers_length = true, .min_len = 8 + 1 + 1};

static bool repair(uint8_t *f, size_t size)
{
    return fuzz_repair_framed(&framing, f, size);
}

struct replay {
    size_t n;
    uint64_t last_seq;
    uint32_t crc; /* of every key and value, to compare replays */
};

static int on_record(void *arg, uint64_t seq, const uint8_t *key, size_t klen,
                     const struct tl_record *r)
{
    struct replay *p = arg;
    fuzz_check(p->n == 0 || seq == p->last_seq + 1, "sequence numbers increase by one");
    fuzz_check(klen <= TL_MAX_KEY_BYTES, "a key is within the limit");
    fuzz_check(r->kind >= TL_KIND_PUT_INT && r->kind <= TL_KIND_PUT_TYPED, "a known kind");
    p->crc = tl_crc32c_extend(p->crc, key, klen);
    if (tl_kind_has_bytes(r->kind))
        p->crc = tl_crc32c_extend(p->crc, r->bytes, r->len);
    p->crc = tl_crc32c_extend(p->crc, &r->i, sizeof r->i);
    p->n++;
    p->last_seq = seq;
    return 0;
}

static int replay(bool is_last, struct replay *p)
{
    uint64_t last = 0;
    memset(p, 0, sizeof *p);
    int rc = tl_wal_replay(segment_path, is_last, on_record, p, &last);
    if (rc < 0)
        fuzz_check_error(rc, "replay fails with a negative code");
    fuzz_check(rc <= 0, "replay returns 0 or an error when the callback does");
    fuzz_check(last == (p->n ? p->last_seq : 0), "last_seq is the last record's");
    return rc;
}

static bool same(const struct replay *a, const struct replay *b)
{
    return a->n == b->n && a->crc == b->crc && a->last_seq == b->last_seq;
}

static void replay_segment(const uint8_t *data, size_t size)
{
    struct replay older, last, again;
    struct stat st;
    fuzz_write_file(segment_path, data, size);
    int rc_older = replay(false, &older);
    fuzz_check(stat(segment_path, &st) == 0 && (size_t)st.st_size == size,
               "an older segment is never cut");
    int rc_last = replay(true, &last);
    fuzz_check(stat(segment_path, &st) == 0 && (size_t)st.st_size <= size,
               "the last segment is only ever cut");
    size_t cut = (size_t)st.st_size;
    if (rc_older == 0)
        fuzz_check(rc_last == 0 && same(&older, &last) && cut == size,
                   "a segment that replays as an older one replays the same as the last one");
    if (rc_older < 0 && rc_last == 0)
        fuzz_check(cut < size && same(&older, &last),
                   "a segment whose only fault is a torn tail is cut after the same records");
    if (rc_last == 0) {
        fuzz_check(replay(false, &again) == 0 && same(&last, &again),
                   "a segment once cut replays whole to the same records");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_as_is_and_repaired(data, size, repair, replay_segment);
    return 0;
}
